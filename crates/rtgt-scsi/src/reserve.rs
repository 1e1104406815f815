//! SPC-2 RESERVE / RELEASE (6 and 10) logical-unit reservations (SPC-2 7.21, 7.13).
//! A reservation belongs to one I_T nexus and ends on RELEASE, I_T nexus loss, logical
//! unit reset and hard reset (SPC-2 5.5.1).
//!
//! The holder is named by its port pair (SAM-5 4.6.4: an I_T nexus is its initiator
//! port and target port) as well as by this process's nexus id, so that on a LU several
//! gateways export (shared_pr.rs) each gateway can tell a holder that logged in through
//! another target port from its own nexuses: the reservation is the LU's.

use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::{Mutex, MutexGuard};
use serde::{Deserialize, Serialize};

use crate::pr::PortPair;
use crate::ItNexus;

/// The I_T nexus holding the reservation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Spc2Holder {
    /// The nexus id in the process that granted it (ids are per process: only
    /// meaningful together with the port pair).
    pub nexus: u64,
    pub initiator_port: String,
    pub target_port: String,
}

impl Spc2Holder {
    fn of(n: &ItNexus) -> Self {
        let p = PortPair::of(n);
        Self {
            nexus: n.id,
            initiator_port: p.initiator_port,
            target_port: p.target_port,
        }
    }

    /// Whether `n` is the holding I_T nexus: the same port pair. Two nexuses with one
    /// port pair at once are not possible (RFC 7143 §6.3.5: a login with a live
    /// session's ISID reinstates it), so the pair is the nexus across processes.
    fn is(&self, n: &ItNexus) -> bool {
        let p = PortPair::of(n);
        self.initiator_port == p.initiator_port && self.target_port == p.target_port
    }

    /// Whether `n` is the holder exactly: the same port pair and the same nexus id, so
    /// the loss of an older nexus with the same port pair (a reinstated session)
    /// releases nothing its successor took.
    fn is_exactly(&self, n: &ItNexus) -> bool {
        self.nexus == n.id && self.is(n)
    }
}

#[derive(Default)]
pub(crate) struct Spc2Reservation {
    holder: Mutex<Option<Spc2Holder>>,
    /// Whether `holder` is Some, written under its lock: every command asks
    /// [`Spc2Reservation::conflicts`], and almost no LU is ever reserved, so the answer
    /// for an unreserved LU takes no lock. A command racing a RESERVE from another nexus
    /// may run either side of it, as it may with the lock (SAM-5 leaves their order open).
    held: AtomicBool,
    /// Holders of this process whose I_T nexus was lost while the release is still
    /// being published: a shared state read meanwhile that names one of them is stale
    /// (nexus ids are never reused), so the reservation stays released here.
    lost: Mutex<Vec<Spc2Holder>>,
}

/// Result of RESERVE.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ReserveResult {
    Granted,
    Conflict,
}

impl Spc2Reservation {
    pub fn holder(&self) -> Option<Spc2Holder> {
        self.holder.lock().clone()
    }

    /// Takes the holder the shared state names (shared_pr.rs), unless its nexus is
    /// lost here. Returns whether it was one lost here (the shared state is stale).
    pub fn set_holder(&self, h: Option<Spc2Holder>) -> bool {
        let stale = h.as_ref().is_some_and(|h| self.lost.lock().contains(h));
        self.set(&mut self.holder.lock(), if stale { None } else { h });
        stale
    }

    /// Notes that `h`'s nexus was lost and its release is being published.
    pub fn lost(&self, h: Spc2Holder) {
        self.lost.lock().push(h);
    }

    /// The release of `h` is published (or given up on): the shared state no longer
    /// names it.
    pub fn released(&self, h: &Spc2Holder) {
        self.lost.lock().retain(|x| x != h);
    }

    /// Does the reservation stop `nexus` from running a command that needs access?
    pub fn conflicts(&self, nexus: &ItNexus) -> bool {
        self.held.load(Ordering::Acquire) && matches!(&*self.holder.lock(), Some(h) if !h.is(nexus))
    }

    /// RESERVE: the holder may reserve again (SPC-2 7.21.2: a reservation by the same
    /// initiator is superseded); anyone else conflicts.
    pub fn reserve(&self, nexus: &ItNexus) -> ReserveResult {
        let mut h = self.holder.lock();
        match &*h {
            Some(other) if !other.is(nexus) => ReserveResult::Conflict,
            _ => {
                self.set(&mut h, Some(Spc2Holder::of(nexus)));
                ReserveResult::Granted
            }
        }
    }

    /// RELEASE: only the holder's RELEASE ends the reservation; anyone else's is a
    /// no-op that still completes GOOD (SPC-2 7.13.1).
    pub fn release(&self, nexus: &ItNexus) {
        let mut h = self.holder.lock();
        if h.as_ref().is_some_and(|h| h.is(nexus)) {
            self.set(&mut h, None);
        }
    }

    /// I_T nexus loss (SPC-2 5.5.1): ends the reservation if `nexus` itself holds it.
    /// Returns whether it did.
    pub fn release_lost(&self, nexus: &ItNexus) -> bool {
        let mut h = self.holder.lock();
        if h.as_ref().is_some_and(|h| h.is_exactly(nexus)) {
            self.set(&mut h, None);
            return true;
        }
        false
    }

    /// Ends the reservation whoever holds it (reset).
    pub fn clear(&self) {
        self.set(&mut self.holder.lock(), None);
    }

    /// Every change of the holder goes through here, under its lock, to keep `held` true.
    fn set(&self, guard: &mut MutexGuard<'_, Option<Spc2Holder>>, h: Option<Spc2Holder>) {
        self.held.store(h.is_some(), Ordering::Release);
        **guard = h;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(id: u64, isid: u8, tpgt: u8) -> ItNexus {
        ItNexus {
            id,
            initiator_name: "iqn.x:i".into(),
            initiator_port: format!("iqn.x:i,i,0x{isid:012x}"),
            target_port: format!("iqn.x:t,t,0x{tpgt:x}"),
            relative_port_id: tpgt.into(),
            target_port_group: tpgt.into(),
        }
    }

    #[test]
    fn only_holder_releases() {
        let r = Spc2Reservation::default();
        let (a, b) = (n(1, 1, 1), n(2, 2, 1));
        assert_eq!(r.reserve(&a), ReserveResult::Granted);
        assert_eq!(r.reserve(&a), ReserveResult::Granted);
        assert_eq!(r.reserve(&b), ReserveResult::Conflict);
        assert!(r.conflicts(&b));
        assert!(!r.conflicts(&a));
        r.release(&b);
        assert_eq!(r.holder().map(|h| h.nexus), Some(1));
        r.release(&a);
        assert_eq!(r.reserve(&b), ReserveResult::Granted);
        r.clear();
        assert_eq!(r.holder(), None);
    }

    #[test]
    fn the_port_pair_is_the_nexus() {
        let r = Spc2Reservation::default();
        // The same initiator port through another target port (another gateway) is
        // another I_T nexus: it conflicts.
        assert_eq!(r.reserve(&n(1, 1, 1)), ReserveResult::Granted);
        assert!(r.conflicts(&n(7, 1, 2)));
        assert_eq!(r.reserve(&n(7, 1, 2)), ReserveResult::Conflict);
        // The loss of an older nexus with the holder's port pair (a reinstated
        // session) releases nothing; the holder's own loss does.
        assert!(!r.release_lost(&n(9, 1, 1)));
        assert!(r.holder().is_some());
        assert!(r.release_lost(&n(1, 1, 1)));
        assert_eq!(r.holder(), None);
    }
}
