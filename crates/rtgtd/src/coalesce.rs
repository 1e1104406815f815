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

use std::cell::Cell;
use std::time::Duration;

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

/// The policy: nap for `nap` before sleeping when at least `min_burst` commands were
/// answered since the reactor last went idle.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    pub nap: Duration,
    pub min_burst: u32,
}

/// Commands answered since the reactor was last idle that count as a burst: above queue
/// depth 1 and the occasional pair, below what a deep queue delivers per turn (4-5 at
/// queue depth 32 on loopback).
pub const MIN_BURST: u32 = 4;

impl Policy {
    /// `--coalesce-us`.
    pub fn new(us: u64) -> Self {
        Self {
            nap: Duration::from_micros(us),
            min_burst: MIN_BURST,
        }
    }

    /// How long to nap now, given the burst since the last idle and the commands
    /// waiting on their stores.
    pub fn nap_for(&self, burst: u32, waiting: u32) -> Option<Duration> {
        (!self.nap.is_zero() && burst >= self.min_burst && waiting == 0).then_some(self.nap)
    }

    /// Readies the reactor's thread for naps: Linux lets a normal thread's timers fire
    /// up to 50 µs late (timer slack), which would turn a 10 µs nap into 60. Nothing
    /// when coalescing is off.
    pub fn prepare_thread(&self) {
        if self.nap.is_zero() {
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
        if let Some(nap) = self.nap_for(burst, WAITING.with(|w| w.get())) {
            std::thread::sleep(nap);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn naps_only_after_a_burst_and_only_when_enabled() {
        let p = Policy {
            nap: Duration::from_micros(10),
            min_burst: 4,
        };
        assert_eq!(p.nap_for(0, 0), None, "an idle reactor sleeps at once");
        assert_eq!(p.nap_for(1, 0), None, "queue depth 1 keeps its latency");
        assert_eq!(p.nap_for(3, 0), None);
        assert_eq!(p.nap_for(4, 0), Some(Duration::from_micros(10)));
        assert_eq!(
            p.nap_for(100, 1),
            None,
            "a completion from the store is not kept waiting"
        );
        let off = Policy {
            nap: Duration::ZERO,
            min_burst: 4,
        };
        assert_eq!(off.nap_for(1000, 0), None, "--coalesce-us 0 turns it off");
    }

    #[test]
    fn the_burst_is_counted_per_thread_and_reset_when_idle() {
        let p = Policy {
            nap: Duration::from_micros(1),
            min_burst: 4,
        };
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
