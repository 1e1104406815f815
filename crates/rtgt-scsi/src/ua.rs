//! Unit attention conditions, kept per logical unit per I_T nexus (SAM-5 5.14,
//! SPC-4 5.13 for the reservation ones).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;

use crate::sense::{asc, key, Sense};

/// SAM-5 5.14 lets a device server keep a limited queue; the oldest conditions are
/// the ones to keep, later duplicates are dropped.
const MAX_PENDING: usize = 8;

#[derive(Default)]
pub(crate) struct UaTable {
    /// Conditions pending for each I_T nexus id.
    pending: Mutex<HashMap<u64, VecDeque<(u8, u8)>>>,
    /// Number of nexuses with something pending: lets the I/O path skip the lock.
    count: AtomicUsize,
}

impl UaTable {
    /// Establishes `code` for each nexus in `nexuses`.
    pub fn establish(&self, nexuses: impl IntoIterator<Item = u64>, code: asc::Code) {
        let mut p = self.pending.lock();
        for id in nexuses {
            let q = p.entry(id).or_default();
            if q.is_empty() {
                self.count.fetch_add(1, Ordering::Relaxed);
            }
            if !q.contains(&code) && q.len() < MAX_PENDING {
                q.push_back(code);
            }
        }
    }

    /// Takes the oldest pending condition of `nexus`, as reporting it clears it.
    pub fn take(&self, nexus: u64) -> Option<Sense> {
        if self.count.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let mut p = self.pending.lock();
        let q = p.get_mut(&nexus)?;
        let code = q.pop_front();
        if q.is_empty() {
            p.remove(&nexus);
            self.count.fetch_sub(1, Ordering::Relaxed);
        }
        code.map(|c| Sense::of(key::UNIT_ATTENTION, c))
    }

    /// Forgets everything pending for a nexus that is gone.
    pub fn forget(&self, nexus: u64) {
        if self.pending.lock().remove(&nexus).is_some() {
            self.count.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// What is pending for a nexus, oldest first.
    #[cfg(test)]
    pub fn pending(&self, nexus: u64) -> Vec<(u8, u8)> {
        self.pending
            .lock()
            .get(&nexus)
            .map(|q| q.iter().copied().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_per_nexus_without_duplicates() {
        let t = UaTable::default();
        t.establish([1, 2], asc::BUS_DEVICE_RESET_FUNCTION_OCCURRED);
        t.establish([1], asc::MODE_PARAMETERS_CHANGED);
        t.establish([1], asc::BUS_DEVICE_RESET_FUNCTION_OCCURRED);
        assert_eq!(t.take(1), Some(Sense::new(key::UNIT_ATTENTION, 0x29, 0x03)));
        assert_eq!(t.take(1), Some(Sense::new(key::UNIT_ATTENTION, 0x2a, 0x01)));
        assert_eq!(t.take(1), None);
        assert_eq!(t.pending(2), vec![asc::BUS_DEVICE_RESET_FUNCTION_OCCURRED]);
        t.forget(2);
        assert_eq!(t.take(2), None);
        assert_eq!(t.count.load(Ordering::Relaxed), 0);
    }
}
