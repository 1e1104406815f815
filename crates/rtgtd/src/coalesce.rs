//! Wake-up coalescing for the reactors, as a NIC moderates its interrupts.
//!
//! A reactor that has just answered a burst of commands and found nothing more to do
//! would sleep in `epoll_wait` and be woken by the very next command, then run a whole
//! turn (a read, a vectored write, the TCP work of both) for the one or two commands that
//! arrived. When the initiator keeps a deep queue, a short nap first lets the commands
//! it sends meanwhile accumulate, so the next turn serves many at once: fewer system
//! calls, TCP segments, acknowledgments and wake-ups per command. A reactor whose last
//! burst was small (an initiator at queue depth 1, an idle one) never naps, so latency
//! at low depth is untouched; nor does one with a command waiting on its store (O_DIRECT,
//! the I/O pool, io_uring, Ceph), whose completion must not wait for the nap; a nap is
//! bounded by `--coalesce-us`.
//!
//! Whether a nap pays depends on who is the bottleneck, which the reactor can't see: it
//! made 4 KiB writes at queue depth 32 11% faster (qemu-img spends less per response when
//! they come in fewer segments) but cost a single deep-queued reader of the page cache a
//! quarter of its rate (the reader ran out of answered commands while the reactor
//! napped). So `--coalesce-us auto` ([`Mode::Adaptive`]) has each reactor measure it, as
//! an A/B of its own: a probe of [`PROBE`] without naps and one with them, then, if
//! napping served faster in two pairs in a row, naps for [`EXPLOIT`], then probes again.
//! `--coalesce-us N` naps N µs after every burst (the fixed policy), `--coalesce-us 0`
//! (the default) never.

use std::cell::Cell;
use std::time::{Duration, Instant};

thread_local! {
    /// Commands this reactor answered since it last went idle.
    static BURST: Cell<u32> = const { Cell::new(0) };
    /// Commands of this reactor waiting on their store.
    static WAITING: Cell<u32> = const { Cell::new(0) };
}

/// The reactor answered `n` commands (called from the connection loop).
pub fn answered(n: u32) {
    BURST.with(|b| b.set(b.get().saturating_add(n)));
}

/// A command of this reactor that waits on its store, until dropped (the command's
/// task holds it, on the reactor's thread).
pub struct Waiting(());

impl Waiting {
    pub fn start() -> Self {
        WAITING.with(|w| w.set(w.get().saturating_add(1)));
        Waiting(())
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        WAITING.with(|w| w.set(w.get().saturating_sub(1)));
    }
}

/// When a reactor naps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Never (`--coalesce-us 0`).
    Off,
    /// After every burst (`--coalesce-us N`).
    Fixed,
    /// After a burst while napping measures faster (`--coalesce-us auto`).
    Adaptive,
}

/// The policy: how long a nap is, when one is taken, and what counts as a burst.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    pub nap: Duration,
    pub min_burst: u32,
    pub mode: Mode,
}

/// Commands answered since the reactor was last idle that count as a burst: above queue
/// depth 1 and the occasional pair, below what a deep queue delivers per turn (4-5 at
/// queue depth 32 on loopback).
pub const MIN_BURST: u32 = 4;

/// The adaptive policy's nap: the length that paid in the fixed policy's A/B runs (30 µs
/// helped nothing, 60 µs was mixed).
pub const ADAPTIVE_NAP_US: u64 = 100;

impl Policy {
    /// `--coalesce-us`: none for `auto`, 0 for off, N for a fixed nap.
    pub fn new(us: Option<u64>) -> Self {
        let (mode, us) = match us {
            None => (Mode::Adaptive, ADAPTIVE_NAP_US),
            Some(0) => (Mode::Off, 0),
            Some(us) => (Mode::Fixed, us),
        };
        Self {
            nap: Duration::from_micros(us),
            min_burst: MIN_BURST,
            mode,
        }
    }

    /// Whether a burst of `burst` commands with `waiting` commands on their stores may be
    /// followed by a nap at all.
    fn eligible(&self, burst: u32, waiting: u32) -> bool {
        self.mode != Mode::Off && !self.nap.is_zero() && burst >= self.min_burst && waiting == 0
    }

    /// The fixed policy: how long to nap now, given the burst since the last idle and
    /// the commands waiting on their stores.
    pub fn nap_for(&self, burst: u32, waiting: u32) -> Option<Duration> {
        self.eligible(burst, waiting).then_some(self.nap)
    }

    /// Readies the reactor's thread for naps: Linux lets a normal thread's timers fire
    /// up to 50 µs late (timer slack), which would turn a 10 µs nap into 60. Nothing
    /// when coalescing is off.
    pub fn prepare_thread(&self) {
        if self.mode == Mode::Off || self.nap.is_zero() {
            return;
        }
        // SAFETY: PR_SET_TIMERSLACK takes the slack in nanoseconds and touches only the
        // calling thread; a failure leaves the default slack, which is harmless.
        unsafe {
            libc::prctl(libc::PR_SET_TIMERSLACK, 1000 as libc::c_ulong, 0, 0, 0);
        }
    }

    /// Runs on the reactor thread just before it goes idle (tokio's `on_thread_park`).
    pub fn before_idle(&self) {
        let burst = BURST.with(|b| b.replace(0));
        let waiting = WAITING.with(|w| w.get());
        let nap = match self.mode {
            Mode::Off => None,
            Mode::Fixed => self.nap_for(burst, waiting),
            Mode::Adaptive => ADAPT.with(|a| {
                let mut st = a.get();
                let nap = st.decide(self, burst, waiting, Instant::now());
                a.set(st);
                nap
            }),
        };
        if let Some(nap) = nap {
            std::thread::sleep(nap);
        }
    }
}

/// The adaptive policy's phases: a short probe of each choice, then the better one
/// for a while.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
enum Phase {
    /// Not started, or restarted after an idle gap.
    #[default]
    Idle,
    /// Measuring the serving rate without naps (`true`: with them).
    Probe(bool),
    /// Napping (`true`) or not, as the last probes said.
    Exploit(bool),
}

/// How long each probe measures.
const PROBE: Duration = Duration::from_millis(10);
/// How long the choice of the last probes holds before they run again: the worse choice
/// runs for at most PROBE in PROBE * 2 + EXPLOIT, under 4% of the time.
const EXPLOIT: Duration = Duration::from_millis(250);
/// How much faster the napping probe must serve, and in how many pairs of probes in a
/// row, before the reactor naps.
const NAP_MARGIN: f64 = 1.03;
const NAP_WINS: u8 = 2;
/// Fewer commands than this in a probe is not a load worth napping for.
const PROBE_MIN_COMMANDS: u64 = 64;

/// What the adaptive policy remembers on a reactor thread: it measures commands served
/// per second over a probe without naps and one with them (alternating which goes
/// first), naps for [`EXPLOIT`] if napping served faster (by [`NAP_MARGIN`], in
/// [`NAP_WINS`] pairs in a row), and probes again.
/// Whole probes, not single cycles, are compared because what a nap saves shows up
/// partly on the initiator's side (fewer, larger segments to take in), which only a
/// sustained rate reflects.
#[derive(Clone, Copy, Debug, Default)]
struct Adapt {
    phase: Phase,
    since: Option<Instant>,
    /// Commands answered since the phase began.
    commands: u64,
    /// The rate of the first probe of the pair, once measured.
    first: Option<f64>,
    /// Which probe goes first next time.
    nap_first: bool,
    /// Pairs of probes in a row in which napping served faster by [`NAP_MARGIN`].
    wins: u8,
}

impl Adapt {
    /// Counts the `burst` answered since the last idle, moves between phases, and says
    /// whether the reactor naps now.
    fn decide(&mut self, p: &Policy, burst: u32, waiting: u32, now: Instant) -> Option<Duration> {
        self.commands += u64::from(burst);
        let since = *self.since.get_or_insert(now);
        let elapsed = now.saturating_duration_since(since);
        let phase_len = match self.phase {
            Phase::Idle => Duration::ZERO,
            Phase::Probe(_) => PROBE,
            Phase::Exploit(_) => EXPLOIT,
        };
        if elapsed >= phase_len {
            let rate = self.commands as f64 / elapsed.as_secs_f64().max(1e-9);
            let loaded = self.commands >= PROBE_MIN_COMMANDS && elapsed < PROBE * 4;
            self.phase = match self.phase {
                Phase::Idle | Phase::Exploit(_) => {
                    self.first = None;
                    self.nap_first = !self.nap_first;
                    Phase::Probe(self.nap_first)
                }
                Phase::Probe(_) if !loaded => {
                    self.wins = 0;
                    Phase::Exploit(false)
                }
                Phase::Probe(nap) => match self.first.take() {
                    None => {
                        self.first = Some(rate);
                        Phase::Probe(!nap)
                    }
                    // `nap` is the second probe's choice. Napping must serve faster by
                    // a margin, in two pairs of probes in a row: on a loaded machine a
                    // 10 ms probe's rate is mostly whether the scheduler ran us, and a
                    // coin-flip choice measured 20% below never napping.
                    Some(first) => {
                        let (with, without) = if nap { (rate, first) } else { (first, rate) };
                        if with >= without * NAP_MARGIN {
                            self.wins = self.wins.saturating_add(1);
                        } else {
                            self.wins = 0;
                        }
                        Phase::Exploit(self.wins >= NAP_WINS)
                    }
                },
            };
            self.since = Some(now);
            self.commands = 0;
        }
        let napping = matches!(self.phase, Phase::Probe(true) | Phase::Exploit(true));
        (napping && p.eligible(burst, waiting)).then_some(p.nap)
    }
}

thread_local! {
    static ADAPT: Cell<Adapt> = Cell::new(Adapt::default());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn naps_only_after_a_burst_and_only_when_enabled() {
        let p = Policy::new(Some(10));
        assert_eq!(p.mode, Mode::Fixed);
        assert_eq!(p.nap_for(0, 0), None, "an idle reactor sleeps at once");
        assert_eq!(p.nap_for(1, 0), None, "queue depth 1 keeps its latency");
        assert_eq!(p.nap_for(3, 0), None);
        assert_eq!(p.nap_for(4, 0), Some(Duration::from_micros(10)));
        assert_eq!(
            p.nap_for(100, 1),
            None,
            "a completion from the store is not kept waiting"
        );
        let off = Policy::new(Some(0));
        assert_eq!(off.mode, Mode::Off);
        assert_eq!(off.nap_for(1000, 0), None, "--coalesce-us 0 turns it off");
        let auto = Policy::new(None);
        assert_eq!(auto.mode, Mode::Adaptive);
        assert_eq!(auto.nap, Duration::from_micros(ADAPTIVE_NAP_US));
    }

    /// Simulates two seconds of a reactor under the adaptive policy, where a cycle
    /// serves `plain` commands in 100 µs without a nap and `napping` commands in 100 µs
    /// plus the nap with one; returns the share of the second second's cycles that
    /// began with a nap.
    fn naps_when(plain: u32, napping: u32, waiting: u32) -> f64 {
        let p = Policy::new(None);
        let mut a = Adapt::default();
        let t0 = Instant::now();
        let mut now = t0;
        let (mut cycles, mut napped) = (0, 0);
        let mut burst = plain;
        while now < t0 + Duration::from_secs(2) {
            let nap = a.decide(&p, burst, waiting, now);
            if now >= t0 + Duration::from_secs(1) {
                cycles += 1;
                napped += u32::from(nap.is_some());
            }
            now += Duration::from_micros(100) + nap.unwrap_or_default();
            burst = if nap.is_some() { napping } else { plain };
        }
        f64::from(napped) / f64::from(cycles)
    }

    #[test]
    fn adaptive_naps_only_while_napping_serves_as_fast() {
        // A nap of 100 µs that gathers 30 commands instead of 8: 150 vs 80 per 100 µs.
        let share = naps_when(8, 30, 0);
        assert!(share > 0.9, "naps but while probing without: {share}");
        // One that gathers 12: 60 per 100 µs against 80 (the initiator ran dry).
        let share = naps_when(8, 12, 0);
        assert!(share > 0.0 && share < 0.05, "only its probes nap: {share}");
        assert_eq!(naps_when(2, 2, 0), 0.0, "bursts below MIN_BURST never nap");
        assert_eq!(
            naps_when(8, 30, 1),
            0.0,
            "nor while a command waits on its store"
        );
    }

    #[test]
    fn a_light_load_is_not_napped_for() {
        let p = Policy::new(None);
        let mut a = Adapt::default();
        let t = Instant::now();
        // A burst of 4 every millisecond: under PROBE_MIN_COMMANDS per probe.
        for ms in 0..400 {
            let nap = a.decide(&p, 4, 0, t + Duration::from_millis(ms));
            if ms > 100 {
                assert!(
                    nap.is_none() || matches!(a.phase, Phase::Probe(true)),
                    "{ms}: {:?}",
                    a.phase
                );
            }
        }
        assert_ne!(a.phase, Phase::Exploit(true));
    }

    #[test]
    fn the_burst_is_counted_per_thread_and_reset_when_idle() {
        let p = Policy::new(Some(1));
        answered(3);
        answered(2);
        assert_eq!(BURST.with(|b| b.get()), 5);
        let w = Waiting::start();
        assert_eq!(WAITING.with(|w| w.get()), 1);
        drop(w);
        assert_eq!(WAITING.with(|w| w.get()), 0);
        std::thread::spawn(|| assert_eq!(BURST.with(|b| b.get()), 0))
            .join()
            .unwrap();
        p.before_idle();
        assert_eq!(BURST.with(|b| b.get()), 0);
    }
}
