//! SPC-2 RESERVE / RELEASE (6 and 10) logical-unit reservations (SPC-2 7.21, 7.13).
//! A reservation belongs to one I_T nexus and ends on RELEASE, I_T nexus loss, logical
//! unit reset and hard reset (SPC-2 5.5.1).

use parking_lot::Mutex;

#[derive(Default)]
pub(crate) struct Spc2Reservation {
    holder: Mutex<Option<u64>>,
}

/// Result of RESERVE.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ReserveResult {
    Granted,
    Conflict,
}

impl Spc2Reservation {
    #[cfg(test)]
    pub fn holder(&self) -> Option<u64> {
        *self.holder.lock()
    }

    /// Does the reservation stop `nexus` from running a command that needs access?
    pub fn conflicts(&self, nexus: u64) -> bool {
        matches!(*self.holder.lock(), Some(h) if h != nexus)
    }

    /// RESERVE: the holder may reserve again (SPC-2 7.21.2: a reservation by the same
    /// initiator is superseded); anyone else conflicts.
    pub fn reserve(&self, nexus: u64) -> ReserveResult {
        let mut h = self.holder.lock();
        match *h {
            Some(other) if other != nexus => ReserveResult::Conflict,
            _ => {
                *h = Some(nexus);
                ReserveResult::Granted
            }
        }
    }

    /// RELEASE: only the holder's RELEASE ends the reservation; anyone else's is a
    /// no-op that still completes GOOD (SPC-2 7.13.1).
    pub fn release(&self, nexus: u64) {
        let mut h = self.holder.lock();
        if *h == Some(nexus) {
            *h = None;
        }
    }

    /// Ends the reservation whoever holds it (reset).
    pub fn clear(&self) {
        *self.holder.lock() = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_holder_releases() {
        let r = Spc2Reservation::default();
        assert_eq!(r.reserve(1), ReserveResult::Granted);
        assert_eq!(r.reserve(1), ReserveResult::Granted);
        assert_eq!(r.reserve(2), ReserveResult::Conflict);
        assert!(r.conflicts(2));
        assert!(!r.conflicts(1));
        r.release(2);
        assert_eq!(r.holder(), Some(1));
        r.release(1);
        assert_eq!(r.reserve(2), ReserveResult::Granted);
        r.clear();
        assert_eq!(r.holder(), None);
    }
}
