//! Persistent reservations (SPC-4 5.13, PERSISTENT RESERVE IN 6.16, OUT 6.17).
//!
//! The state machine is pure: it takes who asks and the parameter data and returns the
//! unit attentions to establish and the I_T nexuses whose tasks PREEMPT AND ABORT ends;
//! the caller applies those and, when APTPL is in force, writes the state to its file
//! ([`PrState::persist`]) before the command completes (SPC-4 5.13.5).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cdb::{invalid_cdb, invalid_param, param_len_error, u16_at, u32_at, u64_at};
use crate::cdb::{Fail, Outcome};
use crate::sense::{asc, Sense};
use crate::ItNexus;

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
    pub const REGISTER_AND_MOVE: u8 = 7;
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
/// (SPC-4 5.13.7), also after a restart of the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct PortPair {
    pub initiator_port: String,
    pub target_port: String,
}

impl PortPair {
    pub fn of(n: &ItNexus) -> Self {
        Self {
            initiator_port: n.initiator_port.to_ascii_lowercase(),
            target_port: n.target_port.to_ascii_lowercase(),
        }
    }
}

/// The I_T nexuses one registration stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct NexusSet {
    /// An initiator port name (`<iSCSI name>,i,0x<ISID>`), or only the iSCSI name when
    /// the registration came from a TransportID of format 00b, which names the initiator
    /// device, so that all its ports match (SPC-4 7.6.4.6). Lower case.
    pub initiator: String,
    /// The target port; None for a registration made with ALL_TG_PT set, which applies
    /// through every target port (SPC-4 5.13.7).
    pub target_port: Option<String>,
}

impl NexusSet {
    fn one(who: &PortPair) -> Self {
        Self {
            initiator: who.initiator_port.clone(),
            target_port: Some(who.target_port.clone()),
        }
    }

    fn name_only(&self) -> bool {
        !self.initiator.contains(",i,0x")
    }

    pub fn matches(&self, who: &PortPair) -> bool {
        let port_ok = self
            .target_port
            .as_ref()
            .is_none_or(|t| *t == who.target_port);
        let init_ok = if self.name_only() {
            who.initiator_port
                .split(",i,0x")
                .next()
                .is_some_and(|n| n == self.initiator)
        } else {
            who.initiator_port == self.initiator
        };
        port_ok && init_ok
    }

    /// Whether some I_T nexus would be in both sets.
    fn overlaps(&self, other: &NexusSet) -> bool {
        let ports = match (&self.target_port, &other.target_port) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        let name = |s: &NexusSet| s.initiator.split(",i,0x").next().unwrap_or("").to_string();
        let inits = if self.name_only() || other.name_only() {
            name(self) == name(other)
        } else {
            self.initiator == other.initiator
        };
        ports && inits
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Registration {
    who: NexusSet,
    key: u64,
    /// The relative target port identifier it was made through (READ FULL STATUS).
    relative_port_id: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Reservation {
    /// The registration holding it, for types other than all-registrants (SPC-4 5.13.10):
    /// with ALL_TG_PT that is every I_T nexus of the registration.
    holder: NexusSet,
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

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PrState {
    generation: u32,
    regs: Vec<Registration>,
    resv: Option<Reservation>,
    /// Activate Persist Through Power Loss, from the last REGISTER-type service action
    /// (SPC-4 6.17.3 APTPL).
    aptpl: bool,
    /// Where the state is kept while APTPL is set; None when persistence is unavailable
    /// (REPORT CAPABILITIES then says PTPL_C=0 and APTPL=1 is refused).
    #[serde(skip)]
    file: Option<PathBuf>,
}

/// What a PERSISTENT RESERVE OUT asks of the caller.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct PrEffects {
    /// Unit attentions to establish, for every I_T nexus in the set.
    pub uas: Vec<(NexusSet, asc::Code)>,
    /// PREEMPT AND ABORT: the preempted I_T nexuses, whose tasks on this LU end
    /// (SPC-4 5.13.11.4.5).
    pub abort: Vec<NexusSet>,
}

/// The on-disk form of the state, with what identifies the LU for a reader.
#[derive(Serialize, Deserialize)]
struct StateFile {
    /// `rtgt persistent reservations`, so a stray file is recognised.
    format: String,
    version: u32,
    target: String,
    lun: u64,
    state: PrState,
}

const FILE_FORMAT: &str = "rtgt persistent reservations";

/// Resolves a RELATIVE TARGET PORT IDENTIFIER to the target port's name.
pub(crate) type PortResolver<'a> = &'a dyn Fn(u16) -> Option<String>;

impl PrState {
    /// A state that will be kept in `file` whenever APTPL is set.
    pub fn with_file(file: Option<PathBuf>) -> Self {
        Self {
            file,
            ..Self::default()
        }
    }

    /// Loads the state kept in `file` by an earlier run (APTPL), or an empty state if
    /// there is none.
    pub fn load(file: PathBuf, target: &str, lun: u64) -> Result<Self, String> {
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self::with_file(Some(file)))
            }
            Err(e) => return Err(format!("{}: {e}", file.display())),
        };
        let f: StateFile = serde_json::from_str(&text).map_err(|e| {
            format!(
                "{}: not a valid persistent reservation state file ({e}); move it away to \
                 start this LU without reservations",
                file.display()
            )
        })?;
        if f.format != FILE_FORMAT || f.version != 1 {
            return Err(format!(
                "{}: unknown state file format '{}' version {}",
                file.display(),
                f.format,
                f.version
            ));
        }
        tracing::info!(
            target,
            lun,
            registrations = f.state.regs.len(),
            reserved = f.state.resv.is_some(),
            "persistent reservations restored from {}",
            file.display()
        );
        Ok(Self {
            file: Some(file),
            ..f.state
        })
    }

    /// Keeps the state on disk when APTPL is set, removes the file when it is not. The
    /// file is replaced atomically (temporary file, fsync, rename, fsync of the
    /// directory), so a crash leaves either the old or the new state.
    pub fn persist(&self, target: &str, lun: u64) -> std::io::Result<()> {
        let Some(path) = &self.file else {
            return Ok(());
        };
        if !self.aptpl {
            return match std::fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            };
        }
        let body = StateFile {
            format: FILE_FORMAT.into(),
            version: 1,
            target: target.into(),
            lun,
            state: self.clone(),
        };
        let text = serde_json::to_string_pretty(&body).map_err(std::io::Error::other)?;
        write_atomically(path, text.as_bytes())
    }

    /// Takes another target's view of the state (shared_pr), keeping this process's
    /// APTPL file.
    pub fn replace_shared(&mut self, new: PrState) {
        let file = self.file.take();
        *self = Self { file, ..new };
    }

    fn reg(&self, who: &PortPair) -> Option<&Registration> {
        self.regs.iter().find(|r| r.who.matches(who))
    }

    fn is_holder(&self, who: &PortPair) -> bool {
        match &self.resv {
            None => false,
            Some(r) if all_registrants(r.rtype) => self.reg(who).is_some(),
            Some(r) => self.reg(who).is_some_and(|reg| reg.who == r.holder),
        }
    }

    pub fn has_registrations(&self) -> bool {
        !self.regs.is_empty()
    }

    #[cfg(test)]
    pub fn is_reserved(&self) -> bool {
        self.resv.is_some()
    }

    /// [`conflicts`](Self::conflicts) for a command of `nexus`. Most LUs hold no
    /// reservation, and then the nexus's port names (lower-cased copies) are not built:
    /// this runs for every command.
    pub fn conflicts_for(&self, nexus: &ItNexus, access: Access) -> bool {
        self.resv.is_some() && self.conflicts(&PortPair::of(nexus), access)
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
    fn remove_where(&mut self, pred: impl Fn(&Registration) -> bool) -> Vec<NexusSet> {
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

    /// A registration went away (unregistered or preempted): SPC-4 5.13.11.2.3 releases
    /// a reservation it held; an all-registrants reservation ends with the last registrant.
    fn after_unregister(&mut self, gone: &NexusSet, fx: &mut PrEffects) {
        let Some(r) = &self.resv else { return };
        let release = if all_registrants(r.rtype) {
            self.regs.is_empty()
        } else {
            r.holder == *gone
        };
        if release {
            let rtype = r.rtype;
            self.resv = None;
            // Registrants-only types tell the remaining registrants (SPC-4 5.13.11.2.3).
            if matches!(rtype, kind::WRITE_EXCLUSIVE_RO | kind::EXCLUSIVE_ACCESS_RO) {
                for reg in &self.regs {
                    fx.uas.push((reg.who.clone(), asc::RESERVATIONS_RELEASED));
                }
            }
        }
    }

    fn bump(&mut self) {
        self.generation = self.generation.wrapping_add(1);
    }

    /// PERSISTENT RESERVE OUT (SPC-4 6.17). `cdb` is the whole CDB, `param` the
    /// parameter list (already cut to the CDB's PARAMETER LIST LENGTH), `ports` resolves
    /// relative target port identifiers (REGISTER AND MOVE).
    pub fn out(
        &mut self,
        who: &PortPair,
        relative_port_id: u16,
        cdb: &[u8],
        param: &[u8],
        ports: PortResolver,
    ) -> Outcome<PrEffects> {
        let sa = cdb[1] & 0x1f;
        let scope = cdb[2] >> 4;
        let rtype = cdb[2] & 0x0f;
        if sa > out_sa::REGISTER_AND_MOVE {
            return Err(invalid_cdb());
        }
        if sa == out_sa::REGISTER_AND_MOVE {
            return self.register_and_move(who, param, ports);
        }
        // SPC-4 6.17.3: 24 bytes, plus the TransportID list when SPEC_I_PT is set.
        if param.len() < 24 {
            return Err(param_len_error());
        }
        let key = u64_at(param, 0);
        let sa_key = u64_at(param, 8);
        let flags = param[20];
        let spec_i_pt = flags & 0x08 != 0;
        let all_tg_pt = flags & 0x04 != 0;
        let aptpl = flags & 0x01 != 0;
        let register = matches!(sa, out_sa::REGISTER | out_sa::REGISTER_AND_IGNORE);
        // SPC-4 6.17.3: SPEC_I_PT is valid only for REGISTER.
        if spec_i_pt && sa != out_sa::REGISTER {
            return Err(invalid_param());
        }
        let expected_len = if spec_i_pt {
            if param.len() < 28 {
                return Err(param_len_error());
            }
            28 + u32_at(param, 24) as usize
        } else {
            24
        };
        if param.len() != expected_len {
            return Err(param_len_error());
        }
        // APTPL only means something to the REGISTER family; without a state file it
        // cannot be honoured (SPC-4 6.17.3, PTPL_C=0).
        if register && aptpl && self.file.is_none() {
            return Err(invalid_param());
        }
        let mut fx = PrEffects::default();
        match sa {
            out_sa::REGISTER | out_sa::REGISTER_AND_IGNORE => {
                let existing = self.reg(who).map(|r| r.key);
                match existing {
                    None => {
                        // SPC-4 5.13.7 / table 45: an unregistered nexus gives key 0.
                        if sa == out_sa::REGISTER && key != 0 {
                            return Err(Fail::Conflict);
                        }
                        if sa_key == 0 {
                            // Nothing to register: GOOD, nothing changes. A TransportID
                            // list with nothing to register them under is an error.
                            if spec_i_pt {
                                return Err(invalid_param());
                            }
                            return Ok(fx);
                        }
                        let mine = if all_tg_pt {
                            NexusSet {
                                initiator: who.initiator_port.clone(),
                                target_port: None,
                            }
                        } else {
                            NexusSet::one(who)
                        };
                        let mut new = vec![mine];
                        if spec_i_pt {
                            let list = &param[28..];
                            for tid in parse_transport_ids(list)? {
                                let set = NexusSet {
                                    initiator: tid,
                                    target_port: new[0].target_port.clone(),
                                };
                                if new[0].matches(&PortPair {
                                    initiator_port: set.initiator.clone(),
                                    target_port: who.target_port.clone(),
                                }) && !set.name_only()
                                {
                                    // The issuing nexus itself: registered once.
                                    continue;
                                }
                                // SPC-4 6.17.3: a TransportID naming a nexus that is
                                // already registered fails the whole command.
                                if self.regs.iter().any(|r| r.who.overlaps(&set))
                                    || new[1..].iter().any(|n| n.overlaps(&set))
                                {
                                    return Err(invalid_param());
                                }
                                new.push(set);
                            }
                        }
                        for w in new {
                            self.regs.push(Registration {
                                who: w,
                                key: sa_key,
                                relative_port_id,
                            });
                        }
                    }
                    Some(k) => {
                        if sa == out_sa::REGISTER && key != k {
                            return Err(Fail::Conflict);
                        }
                        // SPC-4 table 45: SPEC_I_PT on a registered nexus is refused.
                        if spec_i_pt {
                            return Err(invalid_cdb());
                        }
                        let mine = self.reg(who).map(|r| r.who.clone()).expect("registered");
                        if sa_key == 0 {
                            self.remove_where(|r| r.who == mine);
                            self.after_unregister(&mine, &mut fx);
                        } else if let Some(r) = self.regs.iter_mut().find(|r| r.who == mine) {
                            r.key = sa_key;
                        }
                    }
                }
                self.aptpl = aptpl;
                self.bump();
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
                        let holder = self.reg(who).map(|r| r.who.clone()).expect("checked");
                        self.resv = Some(Reservation { holder, rtype })
                    }
                }
            }
            out_sa::RELEASE => {
                self.check_key(who, key)?;
                let Some(r) = &self.resv else {
                    return Ok(fx);
                };
                if !self.is_holder(who) {
                    // SPC-4 5.13.11.2.2: a non-holder's RELEASE does nothing.
                    return Ok(fx);
                }
                if scope != 0 || r.rtype != rtype {
                    return Err(Fail::Check(Sense::illegal(
                        asc::INVALID_RELEASE_OF_PERSISTENT_RESERVATION,
                    )));
                }
                let rtype = r.rtype;
                self.resv = None;
                // SPC-4 5.13.11.2.2: releasing a registrants-only or all-registrants
                // reservation tells every other registrant.
                if !matches!(rtype, kind::WRITE_EXCLUSIVE | kind::EXCLUSIVE_ACCESS) {
                    for reg in self.regs.iter().filter(|r| !r.who.matches(who)) {
                        fx.uas.push((reg.who.clone(), asc::RESERVATIONS_RELEASED));
                    }
                }
            }
            out_sa::CLEAR => {
                self.check_key(who, key)?;
                // SPC-4 5.13.11.2.6: every other registrant learns of the preemption.
                for reg in self.regs.iter().filter(|r| !r.who.matches(who)) {
                    fx.uas.push((reg.who.clone(), asc::RESERVATIONS_PREEMPTED));
                }
                self.regs.clear();
                self.resv = None;
                self.bump();
            }
            out_sa::PREEMPT | out_sa::PREEMPT_AND_ABORT => {
                self.check_key(who, key)?;
                let gone = self.preempt(who, sa_key, scope, rtype, &mut fx)?;
                if sa == out_sa::PREEMPT_AND_ABORT {
                    fx.abort = gone;
                }
                self.bump();
            }
            _ => return Err(invalid_cdb()),
        }
        Ok(fx)
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

    /// PREEMPT and PREEMPT AND ABORT (SPC-4 5.13.11.4); returns the registrations removed.
    fn preempt(
        &mut self,
        who: &PortPair,
        sa_key: u64,
        scope: u8,
        rtype: u8,
        fx: &mut PrEffects,
    ) -> Outcome<Vec<NexusSet>> {
        let notify = |gone: &[NexusSet], fx: &mut PrEffects| {
            for g in gone.iter().filter(|g| !g.matches(who)) {
                fx.uas.push((g.clone(), asc::REGISTRATIONS_PREEMPTED));
            }
        };
        let mine = self.reg(who).map(|r| r.who.clone()).expect("key checked");
        let gone = match self.resv.clone() {
            None => {
                // 5.13.11.4.2: without a reservation only registrations go.
                if sa_key == 0 {
                    return Err(invalid_param());
                }
                let gone = self.remove_where(|r| r.key == sa_key);
                if gone.is_empty() {
                    return Err(Fail::Conflict);
                }
                notify(&gone, fx);
                gone
            }
            Some(r) if all_registrants(r.rtype) => {
                // 5.13.11.4.4
                if sa_key == 0 {
                    Self::check_scope_type(scope, rtype)?;
                    let gone = self.remove_where(|reg| reg.who != mine);
                    notify(&gone, fx);
                    self.resv = Some(Reservation {
                        holder: mine,
                        rtype,
                    });
                    gone
                } else {
                    let gone = self.remove_where(|reg| reg.key == sa_key);
                    if gone.is_empty() {
                        return Err(Fail::Conflict);
                    }
                    notify(&gone, fx);
                    if self.regs.is_empty() {
                        self.resv = None;
                    }
                    gone
                }
            }
            Some(r) => {
                let holder_key = self
                    .regs
                    .iter()
                    .find(|reg| reg.who == r.holder)
                    .map(|h| h.key);
                if Some(sa_key) == holder_key {
                    // 5.13.11.4.3: the holder is preempted; the preempting nexus takes
                    // over with the new type, keeping its own registration.
                    Self::check_scope_type(scope, rtype)?;
                    let gone = self.remove_where(|reg| reg.key == sa_key && reg.who != mine);
                    notify(&gone, fx);
                    if r.rtype != rtype {
                        for reg in self.regs.iter().filter(|reg| reg.who != mine) {
                            fx.uas.push((reg.who.clone(), asc::RESERVATIONS_RELEASED));
                        }
                    }
                    self.resv = Some(Reservation {
                        holder: mine,
                        rtype,
                    });
                    gone
                } else {
                    if sa_key == 0 {
                        return Err(invalid_param());
                    }
                    let gone = self.remove_where(|reg| reg.key == sa_key);
                    if gone.is_empty() {
                        return Err(Fail::Conflict);
                    }
                    notify(&gone, fx);
                    gone
                }
            }
        };
        Ok(gone)
    }

    /// REGISTER AND MOVE (SPC-4 5.13.8, 6.17.4): the holder hands its reservation to
    /// another I_T nexus, registering it first.
    fn register_and_move(
        &mut self,
        who: &PortPair,
        param: &[u8],
        ports: PortResolver,
    ) -> Outcome<PrEffects> {
        if param.len() < 24 {
            return Err(param_len_error());
        }
        let key = u64_at(param, 0);
        let sa_key = u64_at(param, 8);
        let unreg = param[17] & 0x02 != 0;
        let aptpl = param[17] & 0x01 != 0;
        let rel = u16_at(param, 18);
        let tid_len = u32_at(param, 20) as usize;
        if param.len() != 24 + tid_len {
            return Err(param_len_error());
        }
        // Only a registered holder of a reservation that is not all-registrants may
        // move it; anyone else meets a conflict.
        self.check_key(who, key)?;
        let Some(resv) = self.resv.clone() else {
            return Err(Fail::Conflict);
        };
        if all_registrants(resv.rtype) || !self.is_holder(who) {
            return Err(Fail::Conflict);
        }
        if sa_key == 0 || (aptpl && self.file.is_none()) {
            return Err(invalid_param());
        }
        let ids = parse_transport_ids(&param[24..])?;
        let [initiator] = ids.as_slice() else {
            return Err(invalid_param());
        };
        let Some(target_port) = ports(rel) else {
            return Err(invalid_param());
        };
        let dest = NexusSet {
            initiator: initiator.clone(),
            target_port: Some(target_port.to_ascii_lowercase()),
        };
        // Moving to the very I_T nexus that holds it is an error.
        if dest.matches(who) || dest.overlaps(&resv.holder) {
            return Err(invalid_param());
        }
        let dest_reg = match self.regs.iter().find(|r| r.who.overlaps(&dest)) {
            Some(r) => r.who.clone(),
            None => {
                self.regs.push(Registration {
                    who: dest.clone(),
                    key: sa_key,
                    relative_port_id: rel,
                });
                dest
            }
        };
        self.resv = Some(Reservation {
            holder: dest_reg,
            rtype: resv.rtype,
        });
        if unreg {
            // The source leaves; the reservation has moved, so nothing is released.
            let mine = resv.holder;
            self.remove_where(|r| r.who == mine);
        }
        self.aptpl = aptpl;
        self.bump();
        Ok(PrEffects::default())
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
                            self.regs
                                .iter()
                                .find(|reg| reg.who == r.holder)
                                .map(|h| h.key)
                                .unwrap_or(0)
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
                // (SPC-4 5.13.3). SIP_C=1 and ATP_C=1: SPEC_I_PT and ALL_TG_PT are
                // honoured. PTPL_C=1 when there is a state directory to persist into.
                b.push(0x08 | 0x04 | u8::from(self.file.is_some()));
                // TMV=1; ALLOW COMMANDS 011b: TEST UNIT READY passes WE and EA
                // reservations; MODE SENSE, READ ATTRIBUTE, READ BUFFER, RECEIVE COPY
                // RESULTS, RECEIVE DIAGNOSTIC RESULTS, REPORT SUPPORTED OPERATION CODES /
                // TASK MANAGEMENT FUNCTIONS and READ DEFECT DATA pass WE ones
                // (spc::pr_access); PTPL_A.
                b.push(0x80 | (0b011 << 4) | u8::from(self.aptpl));
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
                    let holder = match &self.resv {
                        Some(res) if all_registrants(res.rtype) => true,
                        Some(res) => res.holder == r.who,
                        None => false,
                    };
                    descs.extend_from_slice(&r.key.to_be_bytes());
                    descs.extend_from_slice(&[0; 4]);
                    // ALL_TG_PT: one descriptor stands for every target port.
                    descs.push((u8::from(r.who.target_port.is_none()) << 1) | u8::from(holder));
                    descs.push(match (&self.resv, holder) {
                        (Some(res), true) => res.rtype, // SCOPE 0 | TYPE
                        _ => 0,
                    });
                    descs.extend_from_slice(&[0; 4]);
                    descs.extend_from_slice(&r.relative_port_id.to_be_bytes());
                    let tid = transport_id(&r.who.initiator);
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

/// Writes `data` to `path` so that a crash leaves the old or the new content, never a
/// mix: a temporary file in the same directory, fsync, rename over, fsync the directory.
pub(crate) fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let r = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

/// An iSCSI TransportID (SPC-4 7.6.4.6) for a registration: FORMAT CODE 01b with the
/// initiator port name (`<name>,i,0x<ISID>`), or 00b with the iSCSI name alone; PROTOCOL
/// IDENTIFIER 5h; the name null-terminated and padded to a multiple of four bytes.
fn transport_id(initiator: &str) -> Vec<u8> {
    let mut name = initiator.as_bytes().to_vec();
    name.push(0);
    // At least 20 bytes of ADDITIONAL LENGTH (SPC-4 7.6.4.6).
    name.resize(name.len().next_multiple_of(4).max(20), 0);
    let fmt = if initiator.contains(",i,0x") {
        0x40
    } else {
        0x00
    };
    let mut b = vec![fmt | 0x05, 0];
    b.extend_from_slice(&(name.len() as u16).to_be_bytes());
    b.extend_from_slice(&name);
    b
}

/// Parses a list of iSCSI TransportIDs (SPC-4 7.6.4.6) into initiator names as
/// registrations keep them: `<name>,i,0x<isid>` for format 01b, `<name>` for 00b, lower
/// case. Another protocol, a bad format or a malformed name is INVALID FIELD IN
/// PARAMETER LIST.
fn parse_transport_ids(mut list: &[u8]) -> Outcome<Vec<String>> {
    let mut out = Vec::new();
    while !list.is_empty() {
        if list.len() < 4 {
            return Err(invalid_param());
        }
        let fmt = list[0] >> 6;
        let proto = list[0] & 0x0f;
        let len = usize::from(u16_at(list, 2));
        if proto != 5 || fmt > 1 || len < 20 || !len.is_multiple_of(4) || list.len() < 4 + len {
            return Err(invalid_param());
        }
        let body = &list[4..4 + len];
        let end = body
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(invalid_param)?;
        let name = std::str::from_utf8(&body[..end])
            .map_err(|_| invalid_param())?
            .to_ascii_lowercase();
        let ok = match fmt {
            0 => !name.is_empty() && !name.contains(','),
            _ => match name.split_once(",i,0x") {
                Some((n, isid)) => {
                    !n.is_empty() && isid.len() == 12 && isid.bytes().all(|c| c.is_ascii_hexdigit())
                }
                None => false,
            },
        };
        if !ok {
            return Err(invalid_param());
        }
        out.push(name);
        list = &list[4 + len..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(i: u8) -> PortPair {
        PortPair {
            initiator_port: format!("iqn.i{i},i,0x23d000000001"),
            target_port: "iqn.t,t,0x0001".into(),
        }
    }
    fn set(i: u8) -> NexusSet {
        NexusSet::one(&who(i))
    }
    fn ports(rel: u16) -> Option<String> {
        (rel == 1 || rel == 2).then(|| format!("iqn.t,t,0x{rel:04x}"))
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
    fn out(s: &mut PrState, w: u8, sa: u8, rtype: u8, key: u64, sa_key: u64) -> Outcome<Uas> {
        s.out(&who(w), 1, &cdb(sa, rtype), &param(key, sa_key), &ports)
            .map(|fx| fx.uas)
    }
    type Uas = Vec<(NexusSet, asc::Code)>;

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
            s.out(&who(1), 1, &cdb(0, 0), &[0; 20], &ports),
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
        assert_eq!(uas, vec![(set(2), asc::RESERVATIONS_RELEASED)]);
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
        assert_eq!(uas, vec![(set(1), asc::REGISTRATIONS_PREEMPTED)]);
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
        assert_eq!(uas, vec![(set(1), asc::RESERVATIONS_PREEMPTED)]);
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
        // SIP_C, ATP_C; no state file: PTPL_C=0. TMV, ALLOW COMMANDS 011b.
        assert_eq!(&caps[2..4], &[0x0c, 0xb0]);
        let fs = s.input(3).unwrap();
        assert_eq!(u64_at(&fs, 8), 0x1122);
        assert_eq!(fs[8 + 24], 0x45);
        for sa in 4..0x20 {
            assert_eq!(s.input(sa), Err(invalid_cdb()));
        }
    }

    fn tid(name: &str) -> Vec<u8> {
        transport_id(name)
    }
    fn on(i: u8, port: u16) -> PortPair {
        PortPair {
            initiator_port: format!("iqn.i{i},i,0x23d000000001"),
            target_port: format!("iqn.t,t,0x{port:04x}"),
        }
    }

    #[test]
    fn spec_i_pt_registers_the_listed_ports() {
        let mut s = PrState::default();
        let mut p = param(0, 0x77);
        p[20] = 0x08; // SPEC_I_PT
        let ids = [tid("iqn.i2,i,0x23d000000001"), tid("iqn.i3")].concat();
        p.extend_from_slice(&(ids.len() as u32).to_be_bytes());
        p.extend_from_slice(&ids);
        let mut c = cdb(0, 0);
        c[8] = p.len() as u8;
        s.out(&who(1), 1, &c, &p, &ports).unwrap();
        assert_eq!(s.keys(), vec![0x77, 0x77, 0x77]);
        assert!(s.reg(&who(2)).is_some());
        // Format 00b names the initiator device: any ISID matches.
        let other_isid = PortPair {
            initiator_port: "iqn.i3,i,0x400000000009".into(),
            target_port: who(1).target_port,
        };
        assert!(s.reg(&other_isid).is_some());
        // Not through another target port (no ALL_TG_PT).
        assert!(s.reg(&on(2, 2)).is_none());
        // Listing an already registered nexus fails the whole command, registering none.
        let mut p2 = param(0, 0x88);
        p2[20] = 0x08;
        let ids = [
            tid("iqn.i4,i,0x23d000000001"),
            tid("iqn.i2,i,0x23d000000001"),
        ]
        .concat();
        p2.extend_from_slice(&(ids.len() as u32).to_be_bytes());
        p2.extend_from_slice(&ids);
        assert_eq!(
            s.out(&who(5), 1, &c, &p2, &ports).map(|_| ()),
            Err(invalid_param())
        );
        assert_eq!(s.keys().len(), 3);
        // SPEC_I_PT from a registered nexus is INVALID FIELD IN CDB; the list length
        // must match the parameter list length; other protocols are refused.
        let mut again = p2.clone();
        again[..8].copy_from_slice(&0x77u64.to_be_bytes());
        assert_eq!(
            s.out(&who(1), 1, &c, &again, &ports).map(|_| ()),
            Err(invalid_cdb())
        );
        let mut short = p2.clone();
        short.truncate(p2.len() - 4);
        assert_eq!(
            s.out(&who(6), 1, &c, &short, &ports).map(|_| ()),
            Err(param_len_error())
        );
        let mut fc = p2.clone();
        fc[28] = 0x00; // FCP
        assert_eq!(
            s.out(&who(6), 1, &c, &fc, &ports).map(|_| ()),
            Err(invalid_param())
        );
        // SPEC_I_PT with another service action.
        let mut r = param(0x77, 0);
        r[20] = 0x08;
        assert_eq!(
            s.out(&who(1), 1, &cdb(1, 1), &r, &ports).map(|_| ()),
            Err(invalid_param())
        );
    }

    #[test]
    fn all_tg_pt_applies_through_every_port_and_holds_there() {
        let mut s = PrState::default();
        let mut p = param(0, 0x10);
        p[20] = 0x04; // ALL_TG_PT
        s.out(&on(1, 1), 1, &cdb(6, 0), &p, &ports).unwrap();
        assert!(s.reg(&on(1, 2)).is_some());
        s.out(
            &on(1, 2),
            2,
            &cdb(1, kind::EXCLUSIVE_ACCESS),
            &param(0x10, 0),
            &ports,
        )
        .unwrap();
        assert!(!s.conflicts(&on(1, 1), Access::Write));
        assert!(s.conflicts(&on(2, 1), Access::Read));
        let fs = s.input(3).unwrap();
        assert_eq!(fs[8 + 12], 0x03, "ALL_TG_PT and R_HOLDER");
        assert_eq!(fs[8 + 13], kind::EXCLUSIVE_ACCESS);
    }

    #[test]
    fn register_and_move_hands_the_reservation_over() {
        let mut s = PrState::default();
        out(&mut s, 1, 6, 0, 0, 1).unwrap();
        out(&mut s, 1, 1, kind::WRITE_EXCLUSIVE, 1, 0).unwrap();
        let mv = |key: u64, sa_key: u64, flags: u8, rel: u16, name: &str| {
            let id = tid(name);
            let mut p = vec![0u8; 24];
            p[..8].copy_from_slice(&key.to_be_bytes());
            p[8..16].copy_from_slice(&sa_key.to_be_bytes());
            p[17] = flags;
            p[18..20].copy_from_slice(&rel.to_be_bytes());
            p[20..24].copy_from_slice(&(id.len() as u32).to_be_bytes());
            p.extend_from_slice(&id);
            p
        };
        let c = cdb(7, 0);
        // A non-holder, an unknown port, a zero key, the holder itself: refused.
        out(&mut s, 3, 6, 0, 0, 3).unwrap();
        let gen = s.generation;
        let p = mv(3, 5, 0, 1, "iqn.i2,i,0x23d000000001");
        assert_eq!(s.out(&who(3), 1, &c, &p, &ports), Err(Fail::Conflict));
        let p = mv(1, 5, 0, 9, "iqn.i2,i,0x23d000000001");
        assert_eq!(s.out(&who(1), 1, &c, &p, &ports), Err(invalid_param()));
        let p = mv(1, 0, 0, 1, "iqn.i2,i,0x23d000000001");
        assert_eq!(s.out(&who(1), 1, &c, &p, &ports), Err(invalid_param()));
        let p = mv(1, 5, 0, 1, "iqn.i1,i,0x23d000000001");
        assert_eq!(s.out(&who(1), 1, &c, &p, &ports), Err(invalid_param()));
        assert_eq!(s.generation, gen);
        // Move to i2 through port 2, unregistering the source.
        let p = mv(1, 5, 0x02, 2, "iqn.i2,i,0x23d000000001");
        s.out(&who(1), 1, &c, &p, &ports).unwrap();
        assert_eq!(s.generation, gen + 1);
        assert!(s.reg(&who(1)).is_none(), "UNREG");
        assert!(s.is_holder(&on(2, 2)));
        assert!(!s.is_holder(&on(2, 1)));
        assert!(s.conflicts(&who(1), Access::Write));
        let rr = s.input(1).unwrap();
        assert_eq!(u64_at(&rr, 8), 5);
        assert_eq!(rr[21], kind::WRITE_EXCLUSIVE);
        // All-registrants reservations cannot be moved.
        let mut s = PrState::default();
        out(&mut s, 1, 6, 0, 0, 1).unwrap();
        out(&mut s, 1, 1, kind::WRITE_EXCLUSIVE_AR, 1, 0).unwrap();
        let p = mv(1, 5, 0, 1, "iqn.i2,i,0x23d000000001");
        assert_eq!(s.out(&who(1), 1, &c, &p, &ports), Err(Fail::Conflict));
    }

    #[test]
    fn aptpl_needs_a_file_and_persists_atomically() {
        let dir = std::env::temp_dir().join(format!("rtgt-pr-{}", std::process::id()));
        let file = dir.join("pr").join("lu.json");
        let mut s = PrState::default();
        let mut p = param(0, 0x42);
        p[20] = 0x01; // APTPL
        assert_eq!(
            s.out(&who(1), 1, &cdb(6, 0), &p, &ports).map(|_| ()),
            Err(invalid_param())
        );
        let mut s = PrState::with_file(Some(file.clone()));
        s.out(&who(1), 1, &cdb(6, 0), &p, &ports).unwrap();
        out(&mut s, 1, 1, kind::WRITE_EXCLUSIVE, 0x42, 0).unwrap();
        assert_eq!(s.input(2).unwrap()[2] & 0x01, 1, "PTPL_C");
        assert_eq!(s.input(2).unwrap()[3] & 0x01, 1, "PTPL_A");
        s.persist("iqn.t", 1).unwrap();
        let back = PrState::load(file.clone(), "iqn.t", 1).unwrap();
        assert_eq!(back, s);
        assert!(back.is_holder(&who(1)));
        // Registering again with APTPL=0 turns persistence off and drops the file.
        out(&mut s, 1, 6, 0, 0, 0x43).unwrap();
        s.persist("iqn.t", 1).unwrap();
        assert!(!file.exists());
        let fresh = PrState::load(file.clone(), "iqn.t", 1).unwrap();
        assert!(!fresh.has_registrations());
        std::fs::write(&file, "garbage").unwrap();
        assert!(PrState::load(file.clone(), "iqn.t", 1).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn transport_ids_parse_and_round_trip() {
        let ids = [tid("iqn.a,i,0x0123456789ab"), tid("iqn.b")].concat();
        assert_eq!(
            parse_transport_ids(&ids).unwrap(),
            vec!["iqn.a,i,0x0123456789ab".to_string(), "iqn.b".to_string()]
        );
        let mut bad = tid("iqn.a,i,0x0123");
        assert_eq!(parse_transport_ids(&bad), Err(invalid_param()));
        bad = tid("iqn.b");
        bad[3] = 3; // not a multiple of four
        assert_eq!(parse_transport_ids(&bad), Err(invalid_param()));
    }
}
