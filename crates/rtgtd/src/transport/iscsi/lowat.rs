//! Batching by the socket's receive low-water mark (`SO_RCVLOWAT`, socket(7)).
//!
//! A connection that has answered everything it had sleeps in epoll, and the very next
//! command wakes it: at queue depth 32 on loopback a wake-up served about six reads,
//! or under four writes (a 4 KiB WRITE often woke it with only part of its PDU in).
//! A wake-up (a context switch each way, the epoll turn, a read, a vectored write) was
//! most of what a command cost. When the initiator keeps a deep queue, the commands
//! that will come back are known: every one it has outstanding and we have answered.
//! So the connection asks the kernel not to report the socket readable until half of
//! them have arrived, in bytes at the size commands have had: TCP then neither wakes
//! the reactor nor the reader for the first few (`tcp_data_ready` checks the mark),
//! and one turn serves many. Unlike a timed nap it wakes exactly when the batch is in,
//! so a reader that is itself the bottleneck never waits on the target.
//!
//! The initiator's depth is read off the wire, not guessed from rates: a command's
//! ExpStatSN (RFC 7143 §11.3.4) says which of our statuses it had seen when it sent
//! the command, so statuses sent and not yet seen plus commands not yet answered here
//! were all outstanding at once. At depth below [`MIN_DEPTH`] (queue depth 1, an idle
//! session) the mark stays at one byte: latency is untouched.
//!
//! If the initiator stops short (its application wants no more, a flush after a
//! burst), bytes below the mark would wait; a check [`FALLBACK`] after the last turn
//! lowers the mark again when bytes sat under it that long, and the connection then stops batching for
//! [`BACKOFF_MIN`], doubled for each stall in a row up to about a second: an initiator
//! that keeps stopping short is delayed about once a second, a busy one that was
//! merely descheduled now and then loses little batching.

use std::os::fd::AsRawFd;
use std::time::Duration;

use std::pin::Pin;

use tokio::net::tcp::OwnedReadHalf;
use tokio::time::{Instant, Sleep};

/// Below this many commands outstanding at the initiator the mark stays at one byte.
pub(super) const MIN_DEPTH: u32 = 8;
/// The largest mark, in bytes.
const MAX_MARK: usize = 64 * 1024;
/// Commands larger than this (a 64 KiB WRITE's immediate data) are not batched: reading
/// one while the rest of it arrives overlaps the copy with the sending, and held under a
/// mark they lost that (64 KiB writes at QD32: 0.77-0.88x the unbatched rate), while a
/// wake-up is a small part of what such a command costs.
const MAX_BATCHED_CMD: usize = 16 * 1024;
/// How long bytes may sit under the mark before it is lowered (tokio's timer wheel
/// has 1 ms resolution).
pub(super) const FALLBACK: Duration = Duration::from_millis(1);
/// How long a connection whose initiator stopped short under the mark stays unbatched:
/// this, doubled for each stall in a row, up to [`BACKOFF_MIN`] × 2^[`BACKOFF_MAX_SHIFT`]
/// (about 1 s).
pub(super) const BACKOFF_MIN: Duration = Duration::from_millis(4);
const BACKOFF_MAX_SHIFT: u32 = 8;

/// The per-connection state.
pub(super) struct Lowat {
    /// The deepest queue seen in this turn's commands (0: no command this turn).
    depth: u32,
    /// Commands and their bytes framed this turn.
    cmds: u32,
    bytes: usize,
    /// Bytes per command, as of the last turn with commands.
    per_cmd: usize,
    /// The initiator's queue depth, as of the last turns with commands.
    last_depth: u32,
    /// Commands the mark waits for (0: none).
    batch: usize,
    /// The mark the socket has now (1: the kernel's default).
    mark: usize,
    /// Batching is off until then (the initiator stopped short under the mark).
    off_until: Option<Instant>,
    /// The last stall, and how many came in a row.
    last_stall: Option<Instant>,
    strikes: u32,
    /// Checks whether bytes wait under the mark, while there is one.
    /// Fires when no turn ended for [`FALLBACK`] while a mark is set: each turn pushes
    /// it later (a later deadline costs tokio no wake-up; a ticking interval cost one
    /// eventfd write and one epoll return per tick).
    pub(super) check: Pin<Box<Sleep>>,
}

impl Lowat {
    pub(super) fn new() -> Self {
        let check = Box::pin(tokio::time::sleep(FALLBACK));
        Self {
            depth: 0,
            cmds: 0,
            bytes: 0,
            per_cmd: 0,
            last_depth: 0,
            batch: 0,
            mark: 1,
            off_until: None,
            last_stall: None,
            strikes: 0,
            check,
        }
    }

    /// Bytes read from the socket this turn.
    pub(super) fn read(&mut self, n: usize) {
        self.bytes += n;
    }

    /// A SCSI Command arrived: `unseen` of our statuses were not yet seen by the
    /// initiator when it sent it, `here` commands (this one included) are unanswered.
    pub(super) fn command(&mut self, unseen: u32, here: usize) {
        self.cmds += 1;
        // A status count past any sane window is an initiator's stale ExpStatSN.
        if unseen < 1 << 16 {
            let d = unseen.saturating_add(here.min(1 << 16) as u32);
            self.depth = self.depth.max(d);
        }
    }

    /// Whether a mark above one byte is set (the check timer runs only then).
    pub(super) fn marked(&self) -> bool {
        self.mark > 1
    }

    /// No turn for [`FALLBACK`] with the mark set. Bytes under the mark: the initiator
    /// stopped short: lower the mark (the kernel then reports the socket readable) and
    /// stop batching for a while. Nothing at all: the initiator is idle; the mark goes
    /// (an idle connection must not keep a timer) and its depth is measured afresh.
    /// Bytes at or over the mark are a batch whose readiness this check merely beat.
    pub(super) fn checked(&mut self, rd: &OwnedReadHalf) {
        let waiting = unread(rd).max(0) as usize;
        if waiting == 0 {
            self.last_depth = 0;
            self.batch = 0;
            self.set(rd, 1);
        } else if waiting < self.mark {
            let now = Instant::now();
            // Stalls in a row (each within a few off periods of the last) double the
            // off period; a scheduler hiccup of a busy initiator, now and then, costs
            // only the shortest.
            let again = self
                .last_stall
                .is_some_and(|t| now < t + BACKOFF_MIN * (4 << self.strikes));
            self.strikes = if again {
                (self.strikes + 1).min(BACKOFF_MAX_SHIFT)
            } else {
                0
            };
            self.last_stall = Some(now);
            self.off_until = Some(now + BACKOFF_MIN * (1 << self.strikes));
            self.set(rd, 1);
        } else {
            self.check.as_mut().reset(Instant::now() + FALLBACK);
        }
    }

    /// The turn's output is out; `unanswered` commands are still running here (on their
    /// store). Sets the mark for the wait that follows.
    pub(super) fn after_turn(&mut self, rd: &OwnedReadHalf, unanswered: usize) {
        if self.cmds > 0 {
            self.per_cmd = self.bytes / self.cmds as usize;
            // A slowly decaying maximum: an initiator that writes its queue out in
            // pieces shows a different depth in each turn; the mark follows the
            // queue it keeps, not each piece (and is not set again every turn).
            let decayed = self.last_depth - self.last_depth / 64;
            self.last_depth = self.depth.max(decayed);
        }
        self.depth = 0;
        self.cmds = 0;
        self.bytes = 0;
        let off = match self.off_until {
            Some(t) if Instant::now() < t => true,
            Some(_) => {
                self.off_until = None;
                false
            }
            None => false,
        };
        // The commands the initiator will send back for what we answered. None while a
        // command waits on its store: its completion wakes the connection anyway, and
        // commands held under a mark would not reach the store meanwhile (O_DIRECT
        // reads lose depth at the device).
        let owed = if unanswered == 0 { self.last_depth } else { 0 };
        let owed = owed as usize;
        self.batch =
            if off || self.last_depth < MIN_DEPTH || owed < 4 || self.per_cmd > MAX_BATCHED_CMD {
                0
            } else if (owed / 4..=owed * 7 / 8).contains(&self.batch) {
                // Close enough: a steady queue sets the mark once, not each turn.
                self.batch
            } else {
                // Half of them, rounded down to a power of two.
                1 << (owed / 2).ilog2()
            };
        let mark = (self.batch * self.per_cmd).clamp(1, MAX_MARK);
        self.set(rd, mark);
        if self.mark > 1 {
            self.check.as_mut().reset(Instant::now() + FALLBACK);
        }
    }

    fn set(&mut self, rd: &OwnedReadHalf, mark: usize) {
        if mark == self.mark {
            return;
        }
        let v = mark as libc::c_int;
        // SAFETY: a valid socket descriptor (owned by `rd`) and a c_int option value
        // of the size passed.
        let r = unsafe {
            libc::setsockopt(
                rd.as_ref().as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVLOWAT,
                (&v as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r == 0 {
            self.mark = mark;
        } else {
            // Not settable here: stay at the default, for good.
            self.mark = 1;
            self.off_until = Some(Instant::now() + Duration::from_secs(1 << 30));
        }
    }
}

/// Bytes received and not yet read (SIOCINQ, tcp(7)).
fn unread(rd: &OwnedReadHalf) -> libc::c_int {
    let mut n: libc::c_int = 0;
    // SAFETY: a valid socket descriptor and a c_int out-parameter, as FIONREAD takes.
    let r = unsafe { libc::ioctl(rd.as_ref().as_raw_fd(), libc::FIONREAD, &mut n) };
    if r == 0 {
        n
    } else {
        0
    }
}
