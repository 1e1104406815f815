//! Persistent reservations (SPC-4 5.13, PERSISTENT RESERVE IN 6.16, OUT 6.17), in
//! memory. The state machine is pure: it takes who asks and the parameter data and
//! returns the reply plus the unit attentions to establish, so persistence (APTPL) can
//! be added around it later.

use crate::cdb::{invalid_cdb, invalid_param, param_len_error, u32_at, u64_at, Fail, Outcome};
use crate::sense::{asc, Sense};

/// Reservation types (SPC-4 table 170).
pub(crate) mod kind {
    pub const WRITE_EXCLUSIVE: u8 = 1;
    pub const EXCLUSIVE_ACCESS: u8 = 3;
    pub const WRITE_EXCLUSIVE_RO: u8 = 5;
    pub const EXCLUSIVE_ACCESS_RO: u8 = 6;
    pub const WRITE_EXCLUSIVE_AR: u8 = 7;
    pub const EXCLUSIVE_ACCESS_AR: u8 = 8;
}

/// PERSISTENT RESERVE OUT service actions (SPC-4 table 171).
pub(crate) mod out_sa {
    pub const REGISTER: u8 = 0;
    pub const RESERVE: u8 = 1;
    pub const RELEASE: u8 = 2;
    pub const CLEAR: u8 = 3;
    pub const PREEMPT: u8 = 4;
    pub const PREEMPT_AND_ABORT: u8 = 5;
    pub const REGISTER_AND_IGNORE: u8 = 6;
}

fn valid_type(t: u8) -> bool {
    matches!(t, 1 | 3 | 5 | 6 | 7 | 8)
}
fn all_registrants(t: u8) -> bool {
    matches!(t, kind::WRITE_EXCLUSIVE_AR | kind::EXCLUSIVE_ACCESS_AR)
}
/// Registrants-only and all-registrants types: registered nexuses get access.
fn registrants_have_access(t: u8) -> bool {
    matches!(t, 5..=8)
}
fn exclusive_access(t: u8) -> bool {
    matches!(
        t,
        kind::EXCLUSIVE_ACCESS | kind::EXCLUSIVE_ACCESS_RO | kind::EXCLUSIVE_ACCESS_AR
    )
}

/// An I_T nexus as persistent reservations identify it: by port names, so a new
/// session of the same initiator port through the same target port is the same nexus
/// (SPC-4 5.13.7).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct PortPair {
    pub initiator_port: String,
    pub target_port: String,
}

#[derive(Debug, Clone)]
struct Registration {
    who: PortPair,
    key: u64,
    relative_port_id: u16,
}

#[derive(Debug, Clone)]
struct Reservation {
    /// The holder for types other than all-registrants.
    holder: PortPair,
    rtype: u8,
}

/// How a command uses the medium, for the conflict table (SPC-4 5.13.1, SBC-4 4.17).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Never conflicts with a persistent reservation.
    Allowed,
    /// Reads: conflict only under exclusive-access types.
    Read,
    /// Writes and state changes: conflict under every type.
    Write,
}

#[derive(Debug, Default)]
pub(crate) struct PrState {
    generation: u32,
    regs: Vec<Registration>,
    resv: Option<Reservation>,
}

/// Unit attentions a PERSISTENT RESERVE OUT asks for.
pub(crate) type PrUas = Vec<(PortPair, asc::Code)>;

impl PrState {
    fn reg(&self, who: &PortPair) -> Option<&Registration> {
        self.regs.iter().find(|r| &r.who == who)
    }

    fn is_holder(&self, who: &PortPair) -> bool {
        match &self.resv {
            None => false,
            Some(r) if all_registrants(r.rtype) => self.reg(who).is_some(),
            Some(r) => &r.holder == who,
        }
    }

    pub fn has_registrations(&self) -> bool {
        !self.regs.is_empty()
    }

    #[cfg(test)]
    pub fn is_reserved(&self) -> bool {
        self.resv.is_some()
    }

    /// SPC-4 table 57 for one command: does the reservation stop `who`?
    pub fn conflicts(&self, who: &PortPair, access: Access) -> bool {
        let Some(r) = &self.resv else {
            return false;
        };
        if access == Access::Allowed || self.is_holder(who) {
            return false;
        }
        if registrants_have_access(r.rtype) && self.reg(who).is_some() {
            return false;
        }
        match access {
            Access::Read => exclusive_access(r.rtype),
            _ => true,
        }
    }

    /// Removes registrations matching `pred`; returns who was removed.
    fn remove_where(&mut self, pred: impl Fn(&Registration) -> bool) -> Vec<PortPair> {
        let mut gone = Vec::new();
        self.regs.retain(|r| {
            if pred(r) {
                gone.push(r.who.clone());
                false
            } else {
                true
            }
        });
        gone
    }

    /// A registrant left (unregistered or was preempted): SPC-4 5.13.11.2.3 releases a
    /// reservation it held; an all-registrants reservation ends with the last registrant.
    fn after_unregister(&mut self, who: &PortPair, uas: &mut PrUas) {
        let Some(r) = &self.resv else { return };
        let release = if all_registrants(r.rtype) {
            self.regs.is_empty()
        } else {
            &r.holder == who
        };
        if release {
            let rtype = r.rtype;
            self.resv = None;
            // Registrants-only types tell the remaining registrants (SPC-4 5.13.11.2.3).
            if matches!(rtype, kind::WRITE_EXCLUSIVE_RO | kind::EXCLUSIVE_ACCESS_RO) {
                for reg in &self.regs {
                    uas.push((reg.who.clone(), asc::RESERVATIONS_RELEASED));
                }
            }
        }
    }

    /// PERSISTENT RESERVE OUT (SPC-4 6.17). `cdb` is the whole CDB, `param` the
    /// parameter list (already cut to the CDB's PARAMETER LIST LENGTH).
    pub fn out(
        &mut self,
        who: &PortPair,
        relative_port_id: u16,
        cdb: &[u8],
        param: &[u8],
    ) -> Outcome<PrUas> {
        let sa = cdb[1] & 0x1f;
        let scope = cdb[2] >> 4;
        let rtype = cdb[2] & 0x0f;
        if sa > out_sa::REGISTER_AND_IGNORE {
            // REGISTER AND MOVE and beyond are not supported.
            return Err(invalid_cdb());
        }
        // SPC-4 6.17.3: the basic parameter list is 24 bytes.
        if param.len() != 24 {
            return Err(param_len_error());
        }
        let key = u64_at(param, 0);
        let sa_key = u64_at(param, 8);
        let flags = param[20];
        // SPEC_I_PT (bit 3), ALL_TG_PT (bit 2) and APTPL (bit 0) are not supported, as
        // REPORT CAPABILITIES says; the last two only matter for registering.
        let register = matches!(sa, out_sa::REGISTER | out_sa::REGISTER_AND_IGNORE);
        if flags & 0x08 != 0 || (register && flags & 0x05 != 0) {
            return Err(invalid_param());
        }
        let _ = u32_at(param, 16); // obsolete SCOPE-SPECIFIC ADDRESS
        let mut uas = PrUas::new();
        match sa {
            out_sa::REGISTER | out_sa::REGISTER_AND_IGNORE => {
                let existing = self.reg(who).map(|r| r.key);
                match existing {
                    None => {
                        // SPC-4 5.13.7: an unregistered nexus must give key 0 for REGISTER.
                        if sa == out_sa::REGISTER && key != 0 {
                            return Err(Fail::Conflict);
                        }
                        if sa_key != 0 {
                            self.regs.push(Registration {
                                who: who.clone(),
                                key: sa_key,
                                relative_port_id,
                            });
                        }
                    }
                    Some(k) => {
                        if sa == out_sa::REGISTER && key != k {
                            return Err(Fail::Conflict);
                        }
                        if sa_key == 0 {
                            self.remove_where(|r| &r.who == who);
                            self.after_unregister(who, &mut uas);
                        } else if let Some(r) = self.regs.iter_mut().find(|r| &r.who == who) {
                            r.key = sa_key;
                        }
                    }
                }
                self.generation = self.generation.wrapping_add(1);
            }
            out_sa::RESERVE => {
                self.check_key(who, key)?;
                Self::check_scope_type(scope, rtype)?;
                match &self.resv {
                    Some(r) => {
                        // SPC-4 5.13.9: the holder re-reserving with the same type is a
                        // no-op; anything else conflicts.
                        if !(self.is_holder(who) && r.rtype == rtype) {
                            return Err(Fail::Conflict);
                        }
                    }
                    None => {
                        self.resv = Some(Reservation {
                            holder: who.clone(),
                            rtype,
                        })
                    }
                }
            }
            out_sa::RELEASE => {
                self.check_key(who, key)?;
                let Some(r) = &self.resv else {
                    return Ok(uas);
                };
                if !self.is_holder(who) {
                    // SPC-4 5.13.10: a non-holder's RELEASE does nothing.
                    return Ok(uas);
                }
                if scope != 0 || r.rtype != rtype {
                    return Err(Fail::Check(Sense::illegal(
                        asc::INVALID_RELEASE_OF_PERSISTENT_RESERVATION,
                    )));
                }
                let rtype = r.rtype;
                self.resv = None;
                // SPC-4 5.13.10: releasing other than WE/EA tells the other registrants.
                if !matches!(rtype, kind::WRITE_EXCLUSIVE | kind::EXCLUSIVE_ACCESS) {
                    for reg in self.regs.iter().filter(|r| &r.who != who) {
                        uas.push((reg.who.clone(), asc::RESERVATIONS_RELEASED));
                    }
                }
            }
            out_sa::CLEAR => {
                self.check_key(who, key)?;
                // SPC-4 5.13.11: every other registrant learns of the preemption.
                for reg in self.regs.iter().filter(|r| &r.who != who) {
                    uas.push((reg.who.clone(), asc::RESERVATIONS_PREEMPTED));
                }
                self.regs.clear();
                self.resv = None;
                self.generation = self.generation.wrapping_add(1);
            }
            out_sa::PREEMPT | out_sa::PREEMPT_AND_ABORT => {
                self.check_key(who, key)?;
                uas = self.preempt(who, sa_key, scope, rtype)?;
                self.generation = self.generation.wrapping_add(1);
            }
            _ => return Err(invalid_cdb()),
        }
        Ok(uas)
    }

    fn check_key(&self, who: &PortPair, key: u64) -> Outcome<()> {
        match self.reg(who) {
            Some(r) if r.key == key => Ok(()),
            _ => Err(Fail::Conflict),
        }
    }

    fn check_scope_type(scope: u8, rtype: u8) -> Outcome<()> {
        if scope != 0 || !valid_type(rtype) {
            return Err(invalid_cdb());
        }
        Ok(())
    }

    /// PREEMPT (SPC-4 5.13.11.4).
    fn preempt(&mut self, who: &PortPair, sa_key: u64, scope: u8, rtype: u8) -> Outcome<PrUas> {
        let mut uas = PrUas::new();
        let notify = |gone: &[PortPair], uas: &mut PrUas| {
            for g in gone.iter().filter(|g| *g != who) {
                uas.push((g.clone(), asc::REGISTRATIONS_PREEMPTED));
            }
        };
        match self.resv.clone() {
            None => {
                // 5.13.11.4.2: without a reservation only registrations go.
                if sa_key == 0 {
                    return Err(invalid_param());
                }
                let gone = self.remove_where(|r| r.key == sa_key);
                if gone.is_empty() {
                    return Err(Fail::Conflict);
                }
                notify(&gone, &mut uas);
            }
            Some(r) if all_registrants(r.rtype) => {
                // 5.13.11.4.4
                if sa_key == 0 {
                    Self::check_scope_type(scope, rtype)?;
                    let gone = self.remove_where(|reg| &reg.who != who);
                    notify(&gone, &mut uas);
                    self.resv = Some(Reservation {
                        holder: who.clone(),
                        rtype,
                    });
                } else {
                    let gone = self.remove_where(|reg| reg.key == sa_key);
                    if gone.is_empty() {
                        return Err(Fail::Conflict);
                    }
                    notify(&gone, &mut uas);
                    if self.regs.is_empty() {
                        self.resv = None;
                    }
                }
            }
            Some(r) => {
                let holder_key = self.reg(&r.holder).map(|h| h.key);
                if Some(sa_key) == holder_key {
                    // 5.13.11.4.3: the holder is preempted; the preempting nexus takes
                    // over with the new type.
                    Self::check_scope_type(scope, rtype)?;
                    let gone = self.remove_where(|reg| reg.key == sa_key && &reg.who != who);
                    notify(&gone, &mut uas);
                    if r.rtype != rtype {
                        for reg in self.regs.iter().filter(|reg| &reg.who != who) {
                            uas.push((reg.who.clone(), asc::RESERVATIONS_RELEASED));
                        }
                    }
                    self.resv = Some(Reservation {
                        holder: who.clone(),
                        rtype,
                    });
                } else {
                    if sa_key == 0 {
                        return Err(invalid_param());
                    }
                    let gone = self.remove_where(|reg| reg.key == sa_key);
                    if gone.is_empty() {
                        return Err(Fail::Conflict);
                    }
                    notify(&gone, &mut uas);
                }
            }
        }
        Ok(uas)
    }

    /// PERSISTENT RESERVE IN (SPC-4 6.16): the full parameter data; the caller
    /// truncates to the allocation length.
    pub fn input(&self, sa: u8) -> Outcome<Vec<u8>> {
        let mut b = Vec::new();
        match sa {
            // READ KEYS (6.16.2)
            0 => {
                b.extend_from_slice(&self.generation.to_be_bytes());
                b.extend_from_slice(&((self.regs.len() * 8) as u32).to_be_bytes());
                for r in &self.regs {
                    b.extend_from_slice(&r.key.to_be_bytes());
                }
            }
            // READ RESERVATION (6.16.3)
            1 => {
                b.extend_from_slice(&self.generation.to_be_bytes());
                match &self.resv {
                    None => b.extend_from_slice(&0u32.to_be_bytes()),
                    Some(r) => {
                        b.extend_from_slice(&16u32.to_be_bytes());
                        // An all-registrants reservation reports key zero (6.16.3.1).
                        let key = if all_registrants(r.rtype) {
                            0
                        } else {
                            self.reg(&r.holder).map(|h| h.key).unwrap_or(0)
                        };
                        b.extend_from_slice(&key.to_be_bytes());
                        b.extend_from_slice(&[0; 4]); // obsolete
                        b.push(0);
                        b.push(r.rtype); // SCOPE 0 (LU_SCOPE) | TYPE
                        b.extend_from_slice(&[0; 2]);
                    }
                }
            }
            // REPORT CAPABILITIES (6.16.4)
            2 => {
                b.extend_from_slice(&8u16.to_be_bytes());
                // CRH=0: RESERVE / RELEASE (6/10) conflict while registrations exist
                // (SPC-4 5.13.3); SIP_C, ATP_C, PTPL_C = 0.
                b.push(0x00);
                // TMV=1, ALLOW COMMANDS = 000b, PTPL_A = 0.
                b.push(0x80);
                // PERSISTENT RESERVATION TYPE MASK: WR_EX_AR, EX_AC_RO, WR_EX_RO, EX_AC,
                // WR_EX; EX_AC_AR.
                b.push(0x80 | 0x40 | 0x20 | 0x08 | 0x02);
                b.push(0x01);
                b.extend_from_slice(&[0; 2]);
            }
            // READ FULL STATUS (6.16.5)
            3 => {
                let mut descs = Vec::new();
                for r in &self.regs {
                    let holder = self.is_holder(&r.who);
                    descs.extend_from_slice(&r.key.to_be_bytes());
                    descs.extend_from_slice(&[0; 4]);
                    descs.push(u8::from(holder)); // R_HOLDER; ALL_TG_PT=0
                    descs.push(match (&self.resv, holder) {
                        (Some(res), true) => res.rtype,
                        _ => 0,
                    });
                    descs.extend_from_slice(&[0; 4]);
                    descs.extend_from_slice(&r.relative_port_id.to_be_bytes());
                    let tid = transport_id(&r.who.initiator_port);
                    descs.extend_from_slice(&(tid.len() as u32).to_be_bytes());
                    descs.extend_from_slice(&tid);
                }
                b.extend_from_slice(&self.generation.to_be_bytes());
                b.extend_from_slice(&(descs.len() as u32).to_be_bytes());
                b.extend_from_slice(&descs);
            }
            _ => return Err(invalid_cdb()),
        }
        Ok(b)
    }

    /// The registered keys, in registration order.
    #[cfg(test)]
    pub fn keys(&self) -> Vec<u64> {
        self.regs.iter().map(|r| r.key).collect()
    }
}

/// An iSCSI TransportID (SPC-4 7.6.4.6) for an initiator port name of the form
/// `<name>,i,0x<ISID>`: FORMAT CODE 01b, PROTOCOL IDENTIFIER 5h, the name null-terminated
/// and padded to a multiple of four bytes.
fn transport_id(initiator_port: &str) -> Vec<u8> {
    let mut name = initiator_port.as_bytes().to_vec();
    name.push(0);
    name.resize(name.len().next_multiple_of(4), 0);
    let fmt = if initiator_port.contains(",i,0x") {
        0x40
    } else {
        0x00
    };
    let mut b = vec![fmt | 0x05, 0];
    b.extend_from_slice(&(name.len() as u16).to_be_bytes());
    b.extend_from_slice(&name);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(i: u8) -> PortPair {
        PortPair {
            initiator_port: format!("iqn.i{i},i,0x23d000000001"),
            target_port: "iqn.t,t,0x1".into(),
        }
    }
    fn param(key: u64, sa_key: u64) -> Vec<u8> {
        let mut p = vec![0u8; 24];
        p[..8].copy_from_slice(&key.to_be_bytes());
        p[8..16].copy_from_slice(&sa_key.to_be_bytes());
        p
    }
    fn cdb(sa: u8, rtype: u8) -> [u8; 10] {
        [0x5f, sa, rtype, 0, 0, 0, 0, 0, 24, 0]
    }
    fn out(s: &mut PrState, w: u8, sa: u8, rtype: u8, key: u64, sa_key: u64) -> Outcome<PrUas> {
        s.out(&who(w), 1, &cdb(sa, rtype), &param(key, sa_key))
    }

    #[test]
    fn register_rules() {
        let mut s = PrState::default();
        // Unregistered REGISTER with a non-zero key conflicts.
        assert_eq!(out(&mut s, 1, 0, 0, 5, 6), Err(Fail::Conflict));
        out(&mut s, 1, 0, 0, 0, 0xa).unwrap();
        assert_eq!(s.keys(), vec![0xa]);
        // Wrong current key conflicts; REGISTER AND IGNORE does not care.
        assert_eq!(out(&mut s, 1, 0, 0, 0xb, 0xc), Err(Fail::Conflict));
        out(&mut s, 1, 6, 0, 0xdead, 0xc).unwrap();
        assert_eq!(s.keys(), vec![0xc]);
        assert_eq!(s.generation, 2);
        out(&mut s, 1, 0, 0, 0xc, 0).unwrap();
        assert!(s.keys().is_empty());
        // Wrong parameter list length.
        assert_eq!(
            s.out(&who(1), 1, &cdb(0, 0), &[0; 20]),
            Err(param_len_error())
        );
    }

    #[test]
    fn conflict_matrix_samples() {
        // (type, registered-non-holder read, write, unregistered read, write) as in
        // SPC-4 table 57.
        let cases = [
            (kind::WRITE_EXCLUSIVE, true, false, true, false),
            (kind::EXCLUSIVE_ACCESS, false, false, false, false),
            (kind::WRITE_EXCLUSIVE_RO, true, true, true, false),
            (kind::EXCLUSIVE_ACCESS_RO, true, true, false, false),
            (kind::WRITE_EXCLUSIVE_AR, true, true, true, false),
            (kind::EXCLUSIVE_ACCESS_AR, true, true, false, false),
        ];
        for (t, rr, rw, ur, uw) in cases {
            let mut s = PrState::default();
            out(&mut s, 1, 6, 0, 0, 1).unwrap();
            out(&mut s, 2, 6, 0, 0, 2).unwrap();
            out(&mut s, 1, out_sa::RESERVE, t, 1, 0).unwrap();
            assert!(!s.conflicts(&who(1), Access::Write), "type {t}");
            assert_eq!(!s.conflicts(&who(2), Access::Read), rr, "type {t}");
            assert_eq!(!s.conflicts(&who(2), Access::Write), rw, "type {t}");
            assert_eq!(!s.conflicts(&who(3), Access::Read), ur, "type {t}");
            assert_eq!(!s.conflicts(&who(3), Access::Write), uw, "type {t}");
            assert!(!s.conflicts(&who(3), Access::Allowed));
        }
    }

    #[test]
    fn reserve_release_rules() {
        let mut s = PrState::default();
        out(&mut s, 1, 6, 0, 0, 1).unwrap();
        out(&mut s, 2, 6, 0, 0, 2).unwrap();
        // Bad type.
        assert_eq!(out(&mut s, 1, 1, 2, 1, 0), Err(invalid_cdb()));
        out(&mut s, 1, 1, kind::WRITE_EXCLUSIVE_RO, 1, 0).unwrap();
        // Someone else, or another type: conflict.
        assert_eq!(out(&mut s, 2, 1, 5, 2, 0), Err(Fail::Conflict));
        assert_eq!(out(&mut s, 1, 1, 3, 1, 0), Err(Fail::Conflict));
        // Generation does not move for RESERVE.
        assert_eq!(s.generation, 2);
        // Release with the wrong type.
        assert_eq!(
            out(&mut s, 1, 2, 3, 1, 0),
            Err(Fail::Check(Sense::illegal(
                asc::INVALID_RELEASE_OF_PERSISTENT_RESERVATION
            )))
        );
        // Non-holder release is a no-op.
        out(&mut s, 2, 2, 5, 2, 0).unwrap();
        assert!(s.is_reserved());
        let uas = out(&mut s, 1, 2, 5, 1, 0).unwrap();
        assert_eq!(uas, vec![(who(2), asc::RESERVATIONS_RELEASED)]);
        assert!(!s.is_reserved());
    }

    #[test]
    fn holder_unregistering_releases_unless_all_registrants() {
        let mut s = PrState::default();
        out(&mut s, 1, 6, 0, 0, 1).unwrap();
        out(&mut s, 2, 6, 0, 0, 2).unwrap();
        out(&mut s, 1, 1, kind::EXCLUSIVE_ACCESS, 1, 0).unwrap();
        out(&mut s, 1, 0, 0, 1, 0).unwrap();
        assert!(!s.is_reserved());

        let mut s = PrState::default();
        out(&mut s, 1, 6, 0, 0, 1).unwrap();
        out(&mut s, 2, 6, 0, 0, 2).unwrap();
        out(&mut s, 1, 1, kind::EXCLUSIVE_ACCESS_AR, 1, 0).unwrap();
        out(&mut s, 1, 0, 0, 1, 0).unwrap();
        assert!(s.is_reserved());
        // READ RESERVATION reports key 0 for all-registrants.
        let rr = s.input(1).unwrap();
        assert_eq!(u32_at(&rr, 4), 16);
        assert_eq!(u64_at(&rr, 8), 0);
        assert_eq!(rr[21], kind::EXCLUSIVE_ACCESS_AR);
        out(&mut s, 2, 2, kind::EXCLUSIVE_ACCESS_AR, 2, 0).unwrap();
        assert!(!s.is_reserved());
    }

    #[test]
    fn preempt_and_clear() {
        let mut s = PrState::default();
        out(&mut s, 1, 6, 0, 0, 1).unwrap();
        out(&mut s, 2, 6, 0, 0, 2).unwrap();
        let gen = s.generation;
        // Without a reservation, PREEMPT removes the matching registration.
        let uas = out(&mut s, 2, 4, 3, 2, 1).unwrap();
        assert_eq!(uas, vec![(who(1), asc::REGISTRATIONS_PREEMPTED)]);
        assert_eq!(s.keys(), vec![2]);
        assert_eq!(s.generation, gen + 1);
        // Nothing matches: conflict.
        assert_eq!(out(&mut s, 2, 4, 3, 2, 9), Err(Fail::Conflict));
        // Preempting the holder takes the reservation over.
        out(&mut s, 1, 6, 0, 0, 1).unwrap();
        out(&mut s, 1, 1, kind::WRITE_EXCLUSIVE, 1, 0).unwrap();
        out(&mut s, 2, 4, kind::EXCLUSIVE_ACCESS, 2, 1).unwrap();
        assert!(s.conflicts(&who(1), Access::Read));
        assert!(!s.conflicts(&who(2), Access::Write));
        // CLEAR drops everything and tells the others.
        out(&mut s, 1, 6, 0, 0, 7).unwrap();
        let uas = out(&mut s, 2, 3, 0, 2, 0).unwrap();
        assert_eq!(uas, vec![(who(1), asc::RESERVATIONS_PREEMPTED)]);
        assert!(s.keys().is_empty());
        assert!(!s.is_reserved());
        // Unregistered CLEAR conflicts.
        assert_eq!(out(&mut s, 2, 3, 0, 2, 0), Err(Fail::Conflict));
    }

    #[test]
    fn in_service_actions() {
        let mut s = PrState::default();
        out(&mut s, 1, 6, 0, 0, 0x1122).unwrap();
        let rk = s.input(0).unwrap();
        assert_eq!(u32_at(&rk, 0), 1);
        assert_eq!(u32_at(&rk, 4), 8);
        assert_eq!(u64_at(&rk, 8), 0x1122);
        let caps = s.input(2).unwrap();
        assert_eq!(caps.len(), 8);
        assert_eq!(&caps[4..6], &[0xea, 0x01]);
        let fs = s.input(3).unwrap();
        assert_eq!(u64_at(&fs, 8), 0x1122);
        assert_eq!(fs[8 + 24], 0x45);
        for sa in 4..0x20 {
            assert_eq!(s.input(sa), Err(invalid_cdb()));
        }
    }
}
