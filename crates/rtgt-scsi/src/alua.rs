//! Asymmetric logical unit access (SPC-4 5.16): target port groups, their access
//! states, REPORT TARGET PORT GROUPS (6.36) and SET TARGET PORT GROUPS (6.44).
//!
//! For iSCSI each target portal group is one target port of the target (RFC 7143
//! §10.1.1.1: the target port name is `<target>,t,0x<TPGT>`), so rtgt makes each portal
//! group its own target port group: the TARGET PORT GROUP and the RELATIVE TARGET PORT
//! IDENTIFIER are both the TPGT. The states are the target's and apply to all its LUs.
//!
//! Several daemons may export one logical unit (gateways in front of one RBD image),
//! each with its own portal group tag. So that an initiator sees every path's state
//! from any gateway (SPC-4 6.36: REPORT TARGET PORT GROUPS reports all the LU's target
//! port groups), each gateway can be told the other gateways' groups and states
//! ("peers"): they are reported with this gateway's own groups, but SET TARGET PORT
//! GROUPS cannot change them here (they are another daemon's to change).

use std::collections::BTreeMap;

use crate::cdb::{invalid_cdb, invalid_param, param_len_error, u16_at, u32_at, Outcome};
use crate::sense::{asc, key, Sense};
use crate::spc::op;

/// Asymmetric access states (SPC-4 table 198) an administrator or SET TARGET PORT
/// GROUPS may set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AluaState {
    ActiveOptimized,
    ActiveNonOptimized,
    Standby,
    Unavailable,
}

impl AluaState {
    pub fn code(self) -> u8 {
        match self {
            Self::ActiveOptimized => 0x0,
            Self::ActiveNonOptimized => 0x1,
            Self::Standby => 0x2,
            Self::Unavailable => 0x3,
        }
    }
    fn from_code(c: u8) -> Option<Self> {
        Some(match c {
            0x0 => Self::ActiveOptimized,
            0x1 => Self::ActiveNonOptimized,
            0x2 => Self::Standby,
            0x3 => Self::Unavailable,
            _ => return None,
        })
    }
    /// The names rtgtadm takes and shows (`active`, `nonoptimized` and the spec's own
    /// words are accepted too).
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.to_ascii_lowercase().replace(['_', ' '], "-");
        Some(match s.as_str() {
            "active" | "active-optimized" | "active/optimized" | "optimized" | "ao" => {
                Self::ActiveOptimized
            }
            "active-non-optimized"
            | "active/non-optimized"
            | "non-optimized"
            | "nonoptimized"
            | "anonoptimized"
            | "ano" => Self::ActiveNonOptimized,
            "standby" => Self::Standby,
            "unavailable" => Self::Unavailable,
            _ => return None,
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            Self::ActiveOptimized => "active/optimized",
            Self::ActiveNonOptimized => "active/non-optimized",
            Self::Standby => "standby",
            Self::Unavailable => "unavailable",
        }
    }
}

/// Why a target port group's state last changed (REPORT TARGET PORT GROUPS STATUS CODE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Changed {
    Never = 0,
    /// By SET TARGET PORT GROUPS.
    Explicit = 1,
    /// By the target itself (here: the administrator, through rtgtadm).
    Implicit = 2,
}

#[derive(Debug, Clone, Copy)]
struct Group {
    state: AluaState,
    changed: Changed,
}

/// The target port groups of one target.
#[derive(Debug, Clone)]
pub(crate) struct PortGroups {
    groups: BTreeMap<u16, Group>,
    /// Other daemons' target port groups of the same LUs, as configured here.
    peers: BTreeMap<u16, Group>,
}

impl Default for PortGroups {
    /// One group, TPGT 1, the iSCSI default.
    fn default() -> Self {
        Self::new(&[1])
    }
}

impl PortGroups {
    pub fn new(ids: &[u16]) -> Self {
        let mut s = Self {
            groups: BTreeMap::new(),
            peers: BTreeMap::new(),
        };
        s.set_ids(ids);
        s
    }

    /// The port groups the daemon listens with; states of groups that stay are kept.
    /// A peer group that becomes this daemon's own is reported as its own from then on.
    pub fn set_ids(&mut self, ids: &[u16]) {
        self.groups.retain(|id, _| ids.contains(id));
        for &id in ids {
            self.groups.entry(id).or_insert(Group {
                state: AluaState::ActiveOptimized,
                changed: Changed::Never,
            });
        }
    }

    pub fn contains(&self, id: u16) -> bool {
        self.groups.contains_key(&id)
    }

    /// A group's state; an unknown group (a port not configured as a group) is active.
    pub fn state(&self, id: u16) -> AluaState {
        self.groups
            .get(&id)
            .map(|g| g.state)
            .unwrap_or(AluaState::ActiveOptimized)
    }

    /// Whether every group of this daemon is in an active state, in which [`refuse`]
    /// refuses nothing.
    pub fn all_active(&self) -> bool {
        self.groups.values().all(|g| {
            matches!(
                g.state,
                AluaState::ActiveOptimized | AluaState::ActiveNonOptimized
            )
        })
    }

    pub fn states(&self) -> Vec<(u16, AluaState)> {
        self.groups.iter().map(|(&id, g)| (id, g.state)).collect()
    }

    /// The other daemons' groups and their states.
    pub fn peer_states(&self) -> Vec<(u16, AluaState)> {
        self.peers.iter().map(|(&id, g)| (id, g.state)).collect()
    }

    /// Sets (Some) or forgets (None) the state of another daemon's target port group.
    /// Err when `id` is one of this daemon's own groups; Ok(whether what REPORT TARGET
    /// PORT GROUPS says changed).
    pub fn set_peer(&mut self, id: u16, state: Option<AluaState>) -> Result<bool, ()> {
        if self.groups.contains_key(&id) {
            return Err(());
        }
        Ok(match state {
            None => self.peers.remove(&id).is_some(),
            Some(state) => {
                let g = Group {
                    state,
                    changed: Changed::Implicit,
                };
                self.peers
                    .insert(id, g)
                    .is_none_or(|old| old.state != state)
            }
        })
    }

    /// An administrator's change (an implicit transition, SPC-4 5.16.2.2). Returns
    /// whether the state changed.
    pub fn set_implicit(&mut self, id: u16, state: AluaState) -> Option<bool> {
        let g = self.groups.get_mut(&id)?;
        let changed = g.state != state;
        if changed {
            g.state = state;
            g.changed = Changed::Implicit;
        }
        Some(changed)
    }

    /// REPORT TARGET PORT GROUPS (SPC-4 6.36): the full parameter data, in the length-only
    /// or the extended header format.
    pub fn report(&self, cdb: &[u8]) -> Outcome<Vec<u8>> {
        let extended = match cdb[1] >> 5 {
            0b000 => false,
            0b001 => true,
            _ => return Err(invalid_cdb()),
        };
        let mut descs = Vec::new();
        // Every group of the LU, this daemon's and its peers', in group order.
        let mut all: Vec<(u16, &Group)> = self.groups.iter().map(|(&i, g)| (i, g)).collect();
        all.extend(
            self.peers
                .iter()
                .filter(|(i, _)| !self.groups.contains_key(i))
                .map(|(&i, g)| (i, g)),
        );
        all.sort_by_key(|(i, _)| *i);
        for (id, g) in all {
            // PREF=0; ASYMMETRIC ACCESS STATE.
            descs.push(g.state.code());
            // T_SUP=0 (no transitioning), O_SUP=0, LBD_SUP=0; U_SUP, S_SUP, AN_SUP, AO_SUP.
            descs.push(0x0f);
            descs.extend_from_slice(&id.to_be_bytes());
            descs.push(0);
            descs.push(g.changed as u8);
            descs.push(0); // vendor specific
            descs.push(1); // TARGET PORT COUNT: one iSCSI target port per portal group
            descs.extend_from_slice(&[0, 0]); // obsolete
            descs.extend_from_slice(&id.to_be_bytes()); // RELATIVE TARGET PORT IDENTIFIER
        }
        let mut b = Vec::with_capacity(8 + descs.len());
        if extended {
            b.extend_from_slice(&((descs.len() + 4) as u32).to_be_bytes());
            b.push(0x10); // FORMAT TYPE 001b
            b.push(0); // IMPLICIT TRANSITION TIME: transitions are immediate
            b.extend_from_slice(&[0, 0]);
        } else {
            b.extend_from_slice(&(descs.len() as u32).to_be_bytes());
        }
        b.extend(descs);
        Ok(b)
    }

    /// SET TARGET PORT GROUPS (SPC-4 6.44): validates the whole list first, then applies
    /// it. Returns whether any state changed. Descriptors may name a target port group
    /// or a relative target port; here the two numbers are the same.
    pub fn set_explicit(&mut self, cdb: &[u8], param: &[u8]) -> Outcome<bool> {
        let len = u32_at(cdb, 6) as usize;
        if len == 0 {
            return Ok(false);
        }
        if len < 4 || !(len - 4).is_multiple_of(4) || param.len() < len {
            return Err(param_len_error());
        }
        let mut set = Vec::new();
        for d in param[4..len].chunks_exact(4) {
            let state = AluaState::from_code(d[0] & 0x0f).ok_or_else(invalid_param)?;
            let id = u16_at(d, 2);
            if !self.groups.contains_key(&id) {
                return Err(invalid_param());
            }
            set.push((id, state));
        }
        let mut changed = false;
        for (id, state) in set {
            let g = self.groups.get_mut(&id).expect("checked");
            changed |= g.state != state;
            g.state = state;
            g.changed = Changed::Explicit;
        }
        Ok(changed)
    }
}

/// SPC-4 5.16.2.4: what a target port in `state` refuses, with the sense to refuse it.
pub(crate) fn refuse(state: AluaState, cdb: &[u8]) -> Option<Sense> {
    let sa = cdb.get(1).map(|b| b & 0x1f);
    let tpg = |opc| cdb[0] == opc && sa == Some(0x0a);
    // In every state: INQUIRY, REPORT LUNS, REPORT / SET TARGET PORT GROUPS, REQUEST SENSE.
    let always = matches!(cdb[0], op::INQUIRY | op::REPORT_LUNS | op::REQUEST_SENSE)
        || tpg(op::MAINTENANCE_IN)
        || tpg(op::MAINTENANCE_OUT);
    match state {
        AluaState::ActiveOptimized | AluaState::ActiveNonOptimized => None,
        // 5.16.2.4.4: also LOG SELECT / SENSE, MODE SELECT / SENSE, RECEIVE / SEND
        // DIAGNOSTIC, PERSISTENT RESERVE IN / OUT, and the reports of supported
        // operation codes and task management functions.
        AluaState::Standby => {
            let allowed = always
                || matches!(
                    cdb[0],
                    0x4c | 0x4d
                        | op::MODE_SELECT_6
                        | op::MODE_SELECT_10
                        | op::MODE_SENSE_6
                        | op::MODE_SENSE_10
                        | 0x1c
                        | 0x1d
                        | op::PERSISTENT_RESERVE_IN
                        | op::PERSISTENT_RESERVE_OUT
                )
                || (cdb[0] == op::MAINTENANCE_IN && matches!(sa, Some(0x0c | 0x0d)));
            (!allowed).then(|| Sense::of(key::NOT_READY, asc::LU_NOT_ACCESSIBLE_STANDBY))
        }
        // 5.16.2.4.5
        AluaState::Unavailable => {
            (!always).then(|| Sense::of(key::NOT_READY, asc::LU_NOT_ACCESSIBLE_UNAVAILABLE))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_both_formats() {
        let mut g = PortGroups::new(&[1, 2]);
        g.set_implicit(2, AluaState::Standby);
        let b = g
            .report(&[0xa3, 0x0a, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0])
            .unwrap();
        assert_eq!(u32_at(&b, 0), 24);
        assert_eq!(&b[4..12], &[0x00, 0x0f, 0, 1, 0, 0, 0, 1]);
        assert_eq!(&b[12..16], &[0, 0, 0, 1]);
        assert_eq!(&b[16..24], &[0x02, 0x0f, 0, 2, 0, 2, 0, 1]);
        let b = g
            .report(&[0xa3, 0x2a, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0])
            .unwrap();
        assert_eq!(u32_at(&b, 0), 28);
        assert_eq!(b[4], 0x10);
        assert_eq!(
            g.report(&[0xa3, 0x4a, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]),
            Err(invalid_cdb())
        );
    }

    #[test]
    fn peers_are_reported_in_order_and_not_set_here() {
        let mut g = PortGroups::new(&[2]);
        assert_eq!(g.set_peer(1, Some(AluaState::ActiveOptimized)), Ok(true));
        assert_eq!(g.set_peer(3, Some(AluaState::Standby)), Ok(true));
        assert_eq!(g.set_peer(3, Some(AluaState::Standby)), Ok(false));
        assert_eq!(g.set_peer(2, Some(AluaState::Standby)), Err(()), "our own");
        g.set_implicit(2, AluaState::ActiveNonOptimized);
        let b = g
            .report(&[0xa3, 0x0a, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0])
            .unwrap();
        assert_eq!(u32_at(&b, 0), 36);
        let groups: Vec<(u8, u16, u16)> = b[4..]
            .chunks_exact(12)
            .map(|d| (d[0], u16_at(d, 2), u16_at(d, 10)))
            .collect();
        assert_eq!(groups, vec![(0x0, 1, 1), (0x1, 2, 2), (0x2, 3, 3)]);
        // SET TARGET PORT GROUPS cannot change another daemon's group.
        let cdb = [0xa4, 0x0a, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0];
        let p = [0, 0, 0, 0, 0x00, 0, 0, 3];
        assert_eq!(g.set_explicit(&cdb, &p), Err(invalid_param()));
        assert_eq!(g.set_peer(3, None), Ok(true));
        assert_eq!(g.peer_states(), vec![(1, AluaState::ActiveOptimized)]);
    }

    #[test]
    fn set_validates_everything_first() {
        let mut g = PortGroups::new(&[1, 2]);
        let cdb = [0xa4, 0x0a, 0, 0, 0, 0, 0, 0, 0, 12, 0, 0];
        let p = [0, 0, 0, 0, 0x02, 0, 0, 1, 0x01, 0, 0, 2];
        assert_eq!(g.set_explicit(&cdb, &p), Ok(true));
        assert_eq!(g.state(1), AluaState::Standby);
        assert_eq!(g.state(2), AluaState::ActiveNonOptimized);
        // Unknown group or a state one cannot set (transitioning): nothing changes.
        let bad = [0, 0, 0, 0, 0x00, 0, 0, 1, 0x00, 0, 0, 7];
        assert_eq!(g.set_explicit(&cdb, &bad), Err(invalid_param()));
        let bad = [0, 0, 0, 0, 0x00, 0, 0, 1, 0x0f, 0, 0, 2];
        assert_eq!(g.set_explicit(&cdb, &bad), Err(invalid_param()));
        assert_eq!(g.state(1), AluaState::Standby);
        let odd = [0xa4, 0x0a, 0, 0, 0, 0, 0, 0, 0, 6, 0, 0];
        assert_eq!(g.set_explicit(&odd, &p), Err(param_len_error()));
    }

    #[test]
    fn standby_and_unavailable_refuse_with_their_sense() {
        let read = [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0];
        let s = refuse(AluaState::Standby, &read).unwrap();
        assert_eq!((s.key, s.asc, s.ascq), (2, 0x04, 0x0b));
        let s = refuse(AluaState::Unavailable, &read).unwrap();
        assert_eq!((s.key, s.asc, s.ascq), (2, 0x04, 0x0c));
        assert!(refuse(AluaState::ActiveNonOptimized, &read).is_none());
        let pr_in = [0x5e, 0, 0, 0, 0, 0, 0, 0, 8, 0];
        assert!(refuse(AluaState::Standby, &pr_in).is_none());
        assert!(refuse(AluaState::Unavailable, &pr_in).is_some());
        let rtpg = [0xa3, 0x0a, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0];
        assert!(refuse(AluaState::Unavailable, &rtpg).is_none());
        assert!(refuse(AluaState::Standby, &[0, 0, 0, 0, 0, 0]).is_some());
    }
}
