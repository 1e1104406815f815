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
pub(crate) struct RangeLock {
    held: Mutex<(u64, Vec<Held>)>,
    released: Notify,
}

/// Releases its range when dropped (also when the command's future is dropped).
pub(crate) struct RangeGuard<'a> {
    lock: &'a RangeLock,
    id: u64,
}

impl RangeLock {
    /// Waits until `[lba, lba + blocks)` can be held (`exclusive` or shared), then holds
    /// it. A zero-length range still counts as one block so it is ordered too.
    pub async fn lock(&self, lba: u64, blocks: u64, exclusive: bool) -> RangeGuard<'_> {
        let (start, end) = (lba, lba.saturating_add(blocks.max(1)));
        loop {
            // Register for the wake-up before looking, so a release between the look
            // and the wait is not lost.
            let notified = self.released.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut g = self.held.lock();
                let conflict =
                    g.1.iter()
                        .any(|h| h.start < end && start < h.end && (h.exclusive || exclusive));
                if !conflict {
                    g.0 += 1;
                    let id = g.0;
                    g.1.push(Held {
                        id,
                        start,
                        end,
                        exclusive,
                    });
                    return RangeGuard { lock: self, id };
                }
            }
            notified.await;
        }
    }
}

impl Drop for RangeGuard<'_> {
    fn drop(&mut self) {
        self.lock.held.lock().1.retain(|h| h.id != self.id);
        self.lock.released.notify_waiters();
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
}
