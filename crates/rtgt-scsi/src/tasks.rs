//! The task set (SAM-5 4.6.8, 8): every command the SCSI core has been handed and not
//! yet given back, across all I_T nexuses, so a task management function or PREEMPT AND
//! ABORT received on one nexus can abort tasks of another and wait until they are over.
//!
//! A task is registered by the transport *before* it starts executing ([`TaskSet::begin`]
//! returns a [`TaskGuard`]) and ends when the transport drops the guard, which it does
//! only after it has handed the outcome to its own queue. So once every aborted task's
//! guard is gone, none of them can touch the medium any more and none can race a task
//! management response out of the same connection (SAM-5 7.1: the function completes
//! after the tasks it aborts have been terminated).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use parking_lot::Mutex;
use rustc_hash::FxHashMap;
use tokio::sync::watch;

/// What the transport of one I_T nexus must drop of its own state when tasks are aborted
/// from elsewhere (a LUN reset, CLEAR TASK SET, hard reset or PREEMPT AND ABORT received
/// on another nexus): tasks still gathering Data-Out exist only in the transport.
#[derive(Debug)]
pub struct TransportAbort {
    /// The LUN whose tasks end; None for every LUN.
    pub lun: Option<u64>,
    /// Tasks that arrived at or after this instant are not affected.
    pub before: Instant,
    /// Drop the connection as well (TARGET COLD RESET, RFC 7143 §11.5.1).
    pub close: bool,
    /// Dropped by the transport once it has dropped the tasks: the function that
    /// aborted them completes only then (SAM-5 7.1), so a Data-Out that reaches the
    /// other connection after the response can never revive one of them.
    pub ack: AbortAck,
}

/// See [`TransportAbort::ack`]. A transport that is gone drops it with the request.
#[derive(Debug)]
pub struct AbortAck(#[allow(dead_code)] watch::Sender<bool>);

impl AbortAck {
    /// An acknowledgment and what waits for it.
    pub(crate) fn new() -> (AbortAck, watch::Receiver<bool>) {
        let (tx, rx) = watch::channel(false);
        (AbortAck(tx), rx)
    }
}

/// Called by the SCSI core with a [`TransportAbort`] for a nexus; must only queue the
/// request (it runs with no SCSI lock held, on whatever thread did the aborting).
pub type AbortHook = Arc<dyn Fn(TransportAbort) + Send + Sync>;

struct Slot {
    nexus: u64,
    tag: u64,
    lun: u64,
    aborted: AtomicBool,
    /// Says `true` once the task is aborted, for the rare command that waits on work
    /// which outlives it (SANITIZE). Both channels are made only when needed, under the
    /// task set's lock: nearly every task ends without anyone waiting on it, and two
    /// channels per command were a measurable share of the I/O path.
    abort_signal: OnceLock<watch::Sender<bool>>,
    /// Says `true` when the task is over; made by the first abort that waits for it.
    finished: OnceLock<watch::Sender<bool>>,
}

/// A registered task; dropping it ends the task.
pub struct TaskGuard {
    slot: Arc<Slot>,
    id: u64,
    set: Arc<TaskSetInner>,
}

impl TaskGuard {
    /// Whether a task management function (or PREEMPT AND ABORT) has aborted this task:
    /// its outcome must not reach the initiator (SAM-5 5.6, TAS=0).
    pub fn aborted(&self) -> bool {
        self.slot.aborted.load(Ordering::Acquire)
    }

    /// Completes when the task is aborted. Only for a command whose work goes on
    /// regardless (SBC-4 4.11.2: a sanitize operation outlives its SANITIZE command): it
    /// stops waiting for that work, so the abort completes at once. Anything that still
    /// touches the medium must not race this, or it would go on after the abort's
    /// response.
    pub async fn until_aborted(&self) {
        let mut rx = {
            // Under the lock an abort takes to set the flag, so it is either seen here
            // or sent on the channel made here.
            let _set = self.set.shard(self.slot.nexus).lock();
            if self.aborted() {
                return;
            }
            self.slot
                .abort_signal
                .get_or_init(|| watch::channel(false).0)
                .subscribe()
        };
        let _ = rx.wait_for(|a| *a).await;
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        {
            let mut tasks = self.set.shard(self.slot.nexus).lock();
            if let Some(slot) = tasks.live.remove(&self.id) {
                if tasks.spare.len() < SPARE_SLOTS {
                    tasks.spare.push(slot);
                }
            }
        }
        // An abort that waits made the channel while the slot was still in the set,
        // under the lock just taken, so it is visible here.
        if let Some(finished) = self.slot.finished.get() {
            let _ = finished.send(true);
        }
    }
}

/// Waits for aborted tasks to be over, and for the transports told of them to have
/// dropped theirs.
#[derive(Default)]
pub struct TaskWait {
    tasks: Vec<watch::Receiver<bool>>,
    acks: Vec<watch::Receiver<bool>>,
}

impl TaskWait {
    /// Number of tasks waited for.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }
    /// Whether there is nothing at all to wait for (no task, no acknowledgment).
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty() && self.acks.is_empty()
    }
    /// Both sets of tasks.
    pub fn join(mut self, other: TaskWait) -> TaskWait {
        self.tasks.extend(other.tasks);
        self.acks.extend(other.acks);
        self
    }
    /// Also waits for a transport to acknowledge a [`TransportAbort`].
    pub(crate) fn with_ack(mut self, rx: watch::Receiver<bool>) -> TaskWait {
        self.acks.push(rx);
        self
    }
    pub async fn wait(self) {
        for mut rx in self.tasks.into_iter().chain(self.acks) {
            // An error means the guard (and its sender) is gone: the task is over.
            let _ = rx.wait_for(|done| *done).await;
        }
    }
}

/// Slots kept for reuse per shard: one nexus's usual depth, a few KiB at most.
const SPARE_SLOTS: usize = 128;

/// The task set is split by I_T nexus, each part under its own lock: a command takes a
/// lock twice (begin, end), and with one lock per target, sessions of one target served
/// by different reactors bounced it between CPUs on every command. A function that
/// looks across nexuses (an abort) takes every part's lock, in order, so it sees the
/// set at one instant as before.
const SHARDS: usize = 8;

/// A shard on a cache line of its own, so two reactors' shards don't share one.
#[derive(Default)]
#[repr(align(128))]
struct Shard(Mutex<Tasks>);

#[derive(Default)]
struct Tasks {
    /// By a sequence number. FxHash: two lookups per command under this lock; the keys
    /// are ours, not an initiator's, so SipHash's flooding resistance buys nothing.
    live: FxHashMap<u64, Arc<Slot>>,
    /// Slots of ended tasks, for the next ones: a new Arc per command was one of the
    /// heap allocations on every READ and WRITE.
    spare: Vec<Arc<Slot>>,
}

#[derive(Default)]
struct TaskSetInner {
    next: AtomicU64,
    shards: [Shard; SHARDS],
}

impl TaskSetInner {
    fn shard(&self, nexus: u64) -> &Mutex<Tasks> {
        &self.shards[(nexus % SHARDS as u64) as usize].0
    }

    /// Every shard, locked in order (always the same order: no deadlock between two).
    fn lock_all(&self) -> Vec<parking_lot::MutexGuard<'_, Tasks>> {
        self.shards.iter().map(|s| s.0.lock()).collect()
    }
}

#[derive(Default, Clone)]
pub(crate) struct TaskSet(Arc<TaskSetInner>);

impl TaskSet {
    pub fn begin(&self, nexus: u64, tag: u64, lun: u64) -> TaskGuard {
        let id = self.0.next.fetch_add(1, Ordering::Relaxed);
        let fresh = Slot {
            nexus,
            tag,
            lun,
            aborted: AtomicBool::new(false),
            abort_signal: OnceLock::new(),
            finished: OnceLock::new(),
        };
        let mut tasks = self.0.shard(nexus).lock();
        // A spare is reusable once its last guard is gone (the guard drops its own
        // reference just after putting the slot back, so it may not be yet).
        let slot = match tasks.spare.pop() {
            Some(mut spare) => match Arc::get_mut(&mut spare) {
                Some(s) => {
                    *s = fresh;
                    spare
                }
                None => Arc::new(fresh),
            },
            None => Arc::new(fresh),
        };
        tasks.live.insert(id, slot.clone());
        drop(tasks);
        TaskGuard {
            slot,
            id,
            set: self.0.clone(),
        }
    }

    /// Aborts the tasks `pred(nexus, tag, lun)` selects; returns what to wait for.
    pub fn abort(&self, pred: impl Fn(u64, u64, u64) -> bool) -> TaskWait {
        let shards = self.0.lock_all();
        let mut wait = Vec::new();
        for s in shards.iter().flat_map(|t| t.live.values()) {
            if pred(s.nexus, s.tag, s.lun) {
                s.aborted.store(true, Ordering::Release);
                if let Some(signal) = s.abort_signal.get() {
                    signal.send_replace(true);
                }
                wait.push(
                    s.finished
                        .get_or_init(|| watch::channel(false).0)
                        .subscribe(),
                );
            }
        }
        TaskWait {
            tasks: wait,
            acks: Vec::new(),
        }
    }

    /// Whether some task matches `pred(nexus, tag, lun)`.
    pub fn has(&self, pred: impl Fn(u64, u64, u64) -> bool) -> bool {
        self.0
            .lock_all()
            .iter()
            .flat_map(|t| t.live.values())
            .any(|s| pred(s.nexus, s.tag, s.lun))
    }

    /// Number of tasks in the set (for tests).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.0.lock_all().iter().map(|t| t.live.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn abort_marks_and_waits_for_the_guard() {
        let set = TaskSet::default();
        let a = set.begin(1, 10, 1);
        let b = set.begin(2, 10, 2);
        let w = set.abort(|_, _, lun| lun == 1);
        assert_eq!(w.len(), 1);
        assert!(a.aborted());
        assert!(!b.aborted());
        let waiter = tokio::spawn(w.wait());
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(a);
        waiter.await.unwrap();
        assert_eq!(set.len(), 1);
        drop(b);
        assert_eq!(set.len(), 0);
    }

    #[test]
    fn an_ended_tasks_slot_is_reused_and_starts_clean() {
        let set = TaskSet::default();
        let a = set.begin(1, 10, 1);
        let first = Arc::as_ptr(&a.slot);
        let _ = set.abort(|_, _, _| true);
        assert!(a.aborted());
        drop(a);
        // Spare slots are kept per shard, that is per nexus.
        let b = set.begin(1, 11, 2);
        assert_eq!(Arc::as_ptr(&b.slot), first, "no new allocation");
        assert!(!b.aborted(), "the abort was the old task's");
        assert!(set.has(|n, t, l| (n, t, l) == (1, 11, 2)));
        assert!(!set.has(|_, t, _| t == 10));
        // A task still running keeps its slot: the next one gets another.
        let c = set.begin(1, 12, 3);
        assert_ne!(Arc::as_ptr(&c.slot), first);
        assert_eq!(set.len(), 2);
        // Another nexus's task lands in another shard, seen by aborts all the same.
        let d = set.begin(2, 12, 3);
        assert_eq!(set.abort(|_, t, _| t == 12).len(), 2);
        assert!(c.aborted() && d.aborted() && !b.aborted());
    }

    #[tokio::test]
    async fn until_aborted_wakes_on_abort_only() {
        let set = TaskSet::default();
        let a = set.begin(1, 10, 1);
        let timeout = std::time::Duration::from_millis(50);
        assert!(tokio::time::timeout(timeout, a.until_aborted())
            .await
            .is_err());
        let _ = set.abort(|_, _, _| true);
        tokio::time::timeout(timeout, a.until_aborted())
            .await
            .expect("aborted");
    }
}
