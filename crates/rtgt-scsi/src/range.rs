//! LBA range locks: what makes COMPARE AND WRITE, ORWRITE and WRITE ATOMIC atomic
//! against every other command touching the same blocks (SBC-4 4.29, 5.3), without a
//! lock that serialises all I/O of a logical unit.
//!
//! Ordinary reads and writes take their range *shared*: they run concurrently with each
//! other as before (SAM-5 lets SIMPLE tasks to the same blocks run in any order). The
//! read-modify-write and atomic commands take theirs *exclusive*, so no other command
//! sees or changes those blocks between their read and their write.

use parking_lot::Mutex;
use tokio::sync::Notify;

#[derive(Debug)]
struct Held {
    id: u64,
    start: u64,
    end: u64,
    exclusive: bool,
}

#[derive(Default)]
struct State {
    next: u64,
    held: Vec<Held>,
    /// Commands waiting for a range: a release wakes them only when there are some, so
    /// the common case (nothing ever conflicts) never touches the notifier.
    waiting: usize,
}

#[derive(Default)]
pub(crate) struct RangeLock {
    state: Mutex<State>,
    released: Notify,
}

/// Releases its range when dropped (also when the command's future is dropped).
pub(crate) struct RangeGuard<'a> {
    lock: &'a RangeLock,
    id: u64,
}

/// Counts a waiting command for as long as it waits (also if its future is dropped).
struct Waiting<'a>(&'a RangeLock);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.state.lock().waiting -= 1;
    }
}

impl RangeLock {
    /// Waits until `[lba, lba + blocks)` can be held (`exclusive` or shared), then holds
    /// it. A zero-length range still counts as one block so it is ordered too.
    pub async fn lock(&self, lba: u64, blocks: u64, exclusive: bool) -> RangeGuard<'_> {
        let (start, end) = (lba, lba.saturating_add(blocks.max(1)));
        if let Some(g) = self.try_hold(start, end, exclusive, true) {
            return g;
        }
        // Counted as waiting (by try_hold, under the lock) before registering for the
        // wake-up and looking again: a release in between either sees the count and
        // wakes us, or happened before the second look, which then succeeds.
        let _waiting = Waiting(self);
        loop {
            let notified = self.released.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(g) = self.try_hold(start, end, exclusive, false) {
                return g;
            }
            notified.await;
        }
    }

    /// Holds the range if nothing conflicts; otherwise, when `first`, counts the caller
    /// as waiting.
    fn try_hold(
        &self,
        start: u64,
        end: u64,
        exclusive: bool,
        first: bool,
    ) -> Option<RangeGuard<'_>> {
        let mut g = self.state.lock();
        let conflict = g
            .held
            .iter()
            .any(|h| h.start < end && start < h.end && (h.exclusive || exclusive));
        if conflict {
            if first {
                g.waiting += 1;
            }
            return None;
        }
        g.next += 1;
        let id = g.next;
        g.held.push(Held {
            id,
            start,
            end,
            exclusive,
        });
        Some(RangeGuard { lock: self, id })
    }
}

impl Drop for RangeGuard<'_> {
    fn drop(&mut self) {
        let wake = {
            let mut g = self.lock.state.lock();
            g.held.retain(|h| h.id != self.id);
            g.waiting > 0
        };
        if wake {
            self.lock.released.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn shared_ranges_overlap_exclusive_ones_wait() {
        let l = Arc::new(RangeLock::default());
        let a = l.lock(0, 8, false).await;
        let _b = l.lock(4, 8, false).await; // shared with shared: fine
        let _c = l.lock(100, 1, true).await; // disjoint: fine
        let l2 = l.clone();
        let waiter = tokio::spawn(async move {
            let _g = l2.lock(7, 1, true).await;
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        drop(a);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "still overlaps b");
        drop(_b);
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_wake_up_is_lost_and_a_dropped_waiter_stops_counting() {
        let l = Arc::new(RangeLock::default());
        let counter = Arc::new(parking_lot::Mutex::new(0u64));
        let mut tasks = Vec::new();
        for i in 0..8u64 {
            let (l, counter) = (l.clone(), counter.clone());
            tasks.push(tokio::spawn(async move {
                for _ in 0..500 {
                    let _g = l.lock(i % 3, 2, i % 2 == 0).await;
                    *counter.lock() += 1;
                    tokio::task::yield_now().await;
                }
            }));
        }
        for t in tasks {
            tokio::time::timeout(Duration::from_secs(20), t)
                .await
                .expect("a waiter was never woken")
                .unwrap();
        }
        assert_eq!(*counter.lock(), 4000);
        assert_eq!(l.state.lock().waiting, 0);
        // A waiter whose command is dropped while it waits is no longer counted.
        let g = l.lock(0, 1, true).await;
        let l2 = l.clone();
        let w = tokio::spawn(async move {
            let _ = l2.lock(0, 1, true).await;
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(l.state.lock().waiting, 1);
        w.abort();
        let _ = w.await;
        assert_eq!(l.state.lock().waiting, 0);
        drop(g);
        assert!(l.state.lock().held.is_empty());
    }
}
