//! The SCSI target device (SAM-5 4.6): its LUN map, the I_T nexuses that use it, and
//! the routing of each command through the checks SAM-5 and SPC-4 put before a device
//! server runs it (unit attentions, reservations, readiness).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::RwLock;

use crate::alua::{self, AluaState, PortGroups};
use crate::cdb::{self, invalid_cdb, invalid_cdb_at, invalid_opcode, Fail, Outcome};
use crate::device::Ctx;
use crate::inquiry;
use crate::lu::Lu;
use crate::opcodes::Features;
use crate::pr::{NexusSet, PortPair, PrState};
use crate::sense::{asc, Sense};
use crate::spc::{self, op};
use crate::tasks::{AbortAck, AbortHook, TaskGuard, TaskSet, TaskWait, TransportAbort};
use crate::{
    opcodes, status, ItNexus, LuConfig, LuInfo, ScsiCommand, ScsiError, ScsiResult, TmFunction,
};

// Removable media: creating store-less LUs (tape drives, changers), and the handle
// through which a changer moves media into drives. A child module, so it shares
// ScsiTarget's fields.
#[path = "target_media.rs"]
mod media;
pub use media::{DriveHandle, DriveResolver, MediaLuConfig};

/// Answer to a task management request (SAM-5 7.x service responses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TmResponse {
    FunctionComplete,
    FunctionRejected,
    IncorrectLun,
    TaskDoesNotExist,
}

/// Told the name of a target whose saved state an initiator changed.
pub type StateHook = Arc<dyn Fn(&str) + Send + Sync>;

/// Every logical unit of the daemon, found by its NAA designator: the copy manager's
/// view for EXTENDED COPY between any two LUs (SPC-4 5.17.4), across targets. One is
/// shared by all the [`ScsiTarget`]s of a daemon; entries die with their LU.
#[derive(Default)]
pub struct LuDirectory {
    lus: RwLock<Vec<(String, std::sync::Weak<Lu>)>>,
    /// Live I_T nexuses: id -> (target name, initiator name). EXTENDED COPY reaches an LU
    /// of another target only for an initiator logged in to that target, so a copy can't
    /// get past that target's ACL and CHAP.
    nexuses: RwLock<HashMap<u64, (String, String)>>,
    /// LUN masking: (target name, LUN) -> the initiators that may see it. Absent: all.
    masks: RwLock<HashMap<(String, u64), Vec<String>>>,
    /// Whether `masks` has any entry: most daemons mask nothing, and then a command's
    /// visibility check neither takes the daemon-wide lock nor builds the key.
    masked: std::sync::atomic::AtomicBool,
    /// How a media changer reaches a drive by (tid, LUN): the registry's hook,
    /// as the SCSI core knows no target ids.
    drives: RwLock<Option<DriveResolver>>,
    /// Told (with the target's name) when an initiator changed state a saved
    /// configuration keeps (see `crate::saved_state`).
    state_hook: RwLock<Option<StateHook>>,
}

impl LuDirectory {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Sets the hook told when an initiator changes saved state (see `state_hook`).
    pub fn set_state_hook(&self, f: StateHook) {
        *self.state_hook.write() = Some(f);
    }

    pub(crate) fn state_changed(&self, target: &str) {
        let hook = self.state_hook.read().clone();
        if let Some(h) = hook {
            h(target);
        }
    }

    /// Sets how media changers find drives (by target id and LUN).
    pub fn set_drive_resolver(&self, f: DriveResolver) {
        *self.drives.write() = Some(f);
    }

    pub(crate) fn drive_resolver(&self) -> Option<DriveResolver> {
        self.drives.read().clone()
    }

    fn insert(&self, target: &str, lu: &Arc<Lu>) {
        let mut v = self.lus.write();
        v.retain(|(_, w)| w.strong_count() > 0);
        v.push((target.to_string(), Arc::downgrade(lu)));
    }

    /// The LU whose NAA designator (VPD page 83h) is `naa`, if `initiator` may reach it:
    /// it has an I_T nexus on the LU's target and the LU isn't masked from it. The
    /// designator follows `scsi_id` changes, so it is computed at lookup.
    pub(crate) fn find_naa(&self, naa: u64, initiator: &str) -> Option<Arc<Lu>> {
        self.lus.read().iter().find_map(|(t, w)| {
            let lu = w.upgrade()?;
            (inquiry::naa(&lu, t) == naa && self.may_reach(t, lu.lun, initiator)).then_some(lu)
        })
    }

    fn may_reach(&self, target: &str, lun: u64, initiator: &str) -> bool {
        self.nexuses
            .read()
            .values()
            .any(|(t, i)| t == target && i.eq_ignore_ascii_case(initiator))
            && self.visible(target, lun, initiator)
    }

    fn nexus_up(&self, id: u64, target: &str, initiator: &str) {
        self.nexuses
            .write()
            .entry(id)
            .or_insert_with(|| (target.to_string(), initiator.to_string()));
    }

    fn nexus_down(&self, id: u64) {
        self.nexuses.write().remove(&id);
    }

    /// Changes the LUN masks, keeping [`LuDirectory::masked`] in step.
    fn edit_masks(&self, edit: impl FnOnce(&mut HashMap<(String, u64), Vec<String>>)) {
        let mut masks = self.masks.write();
        edit(&mut masks);
        self.masked
            .store(!masks.is_empty(), std::sync::atomic::Ordering::Release);
    }

    fn visible(&self, target: &str, lun: u64, initiator: &str) -> bool {
        lun == 0
            || !self.masked.load(std::sync::atomic::Ordering::Acquire)
            || self
                .masks
                .read()
                .get(&(target.to_string(), lun))
                .is_none_or(|names| names.iter().any(|n| n.eq_ignore_ascii_case(initiator)))
    }
}

/// What a task management function did: its response, the aborted tasks to wait for
/// before the response may be sent (SAM-5 7.1), and whether the issuing connection must
/// close after sending it (TARGET COLD RESET, RFC 7143 §11.5.1).
pub struct TmOutcome {
    pub response: TmResponse,
    pub wait: TaskWait,
    pub close: bool,
}

impl TmOutcome {
    fn now(response: TmResponse) -> Self {
        Self {
            response,
            wait: TaskWait::default(),
            close: false,
        }
    }
}

pub struct ScsiTarget {
    name: String,
    directory: Arc<LuDirectory>,
    /// LUN 0: always present (SPC-4 says LUN 0 shall answer INQUIRY and REPORT LUNS).
    controller: Arc<Lu>,
    luns: RwLock<BTreeMap<u64, Arc<Lu>>>,
    /// The I_T nexuses that have sent a command and not been lost: the set unit
    /// attentions are established for.
    nexuses: RwLock<HashMap<u64, Arc<ItNexus>>>,
    /// How to reach each nexus's transport when its tasks are aborted from elsewhere.
    hooks: RwLock<HashMap<u64, AbortHook>>,
    /// Every task handed to the core and not yet given back, across nexuses.
    tasks: TaskSet,
    /// Target port groups and their asymmetric access states (SPC-4 5.16).
    alua: RwLock<PortGroups>,
    /// Whether every group of `alua` is active (kept by [`ScsiTarget::edit_alua`]): then
    /// no command is refused for its port group's state, and the command path takes no
    /// lock to learn so (nearly every target never leaves the active states).
    alua_active: AtomicBool,
    /// Where state that outlives the daemon is kept (APTPL persistent reservations).
    state_dir: Option<PathBuf>,
}

impl ScsiTarget {
    /// A target device named `name` (its iSCSI name), with LUN 0 as its controller,
    /// with a directory of its own (EXTENDED COPY reaches only its own LUs).
    pub fn new(name: &str) -> Self {
        Self::build(name, LuDirectory::new(), None)
    }

    /// A target whose LUs join the daemon-wide `directory`, so EXTENDED COPY can reach
    /// the LUs of every target sharing it.
    pub fn with_directory(name: &str, directory: Arc<LuDirectory>) -> Self {
        Self::build(name, directory, None)
    }

    /// A target device that keeps persistent reservations with APTPL under
    /// `state_dir/pr/` (without one, REPORT CAPABILITIES says PTPL_C=0).
    pub fn with_state_dir(name: &str, state_dir: Option<PathBuf>) -> Self {
        Self::build(name, LuDirectory::new(), state_dir)
    }

    /// A target device with the daemon-wide LU directory and a state directory.
    pub fn build(name: &str, directory: Arc<LuDirectory>, state_dir: Option<PathBuf>) -> Self {
        Self {
            name: name.to_string(),
            directory,
            controller: Arc::new(crate::devices::new_lun0()),
            luns: RwLock::new(BTreeMap::new()),
            nexuses: RwLock::new(HashMap::new()),
            hooks: RwLock::new(HashMap::new()),
            tasks: TaskSet::default(),
            alua: RwLock::new(PortGroups::default()),
            alua_active: AtomicBool::new(true),
            state_dir,
        }
    }

    /// The target port groups: one per iSCSI portal group tag the daemon serves.
    pub fn set_port_groups(&self, tpgts: &[u16]) {
        self.edit_alua(|a| a.set_ids(tpgts));
    }

    /// Every change of the port groups goes through here, to keep `alua_active` true.
    fn edit_alua<R>(&self, edit: impl FnOnce(&mut PortGroups) -> R) -> R {
        let mut a = self.alua.write();
        let r = edit(&mut a);
        self.alua_active.store(a.all_active(), Ordering::Release);
        r
    }

    /// The target port groups and their asymmetric access states.
    pub fn alua_states(&self) -> Vec<(u16, AluaState)> {
        self.alua.read().states()
    }

    /// Sets a target port group's asymmetric access state from the administrator: an
    /// implicit transition, which every I_T nexus learns of through ASYMMETRIC ACCESS
    /// STATE CHANGED (SPC-4 5.16.2.2).
    pub fn set_alua_state(&self, tpg: u16, state: AluaState) -> Result<(), ScsiError> {
        let changed = self
            .edit_alua(|a| a.set_implicit(tpg, state))
            .ok_or(ScsiError::NoSuchPortGroup(tpg))?;
        if changed {
            tracing::info!(target = %self.name, tpg, state = state.name(), "ALUA state changed");
            let ids = self.nexus_ids();
            for lu in self.all_lus() {
                lu.ua
                    .establish(ids.iter().copied(), asc::ASYMMETRIC_ACCESS_STATE_CHANGED);
            }
        }
        Ok(())
    }

    /// Other daemons' target port groups of this target's LUs (gateways of one RBD
    /// image) and their states, as configured here.
    pub fn alua_peer_states(&self) -> Vec<(u16, AluaState)> {
        self.alua.read().peer_states()
    }

    /// Sets (Some) or forgets (None) the state another daemon's target port group
    /// `tpg` is reported in; every I_T nexus is told ASYMMETRIC ACCESS STATE CHANGED
    /// when what REPORT TARGET PORT GROUPS says changed (SPC-4 5.16.2.2).
    pub fn set_alua_peer(&self, tpg: u16, state: Option<AluaState>) -> Result<(), ScsiError> {
        let changed = self.edit_alua(|a| a.set_peer(tpg, state)).map_err(|()| {
            ScsiError::BadParam(format!(
                "alua_peer.{tpg}: portal group {tpg} is this daemon's own (use alua_state.{tpg})"
            ))
        })?;
        if changed {
            let ids = self.nexus_ids();
            for lu in self.all_lus() {
                lu.ua
                    .establish(ids.iter().copied(), asc::ASYMMETRIC_ACCESS_STATE_CHANGED);
            }
        }
        Ok(())
    }

    /// The target port name of a relative target port identifier (= the TPGT).
    pub(crate) fn target_port_name(&self, rel: u16) -> Option<String> {
        self.alua
            .read()
            .contains(rel)
            .then(|| format!("{},t,0x{rel:04x}", self.name))
    }

    /// Registers an I_T nexus of a logged-in session with the hook its transport takes
    /// aborts through (tasks aborted from another nexus, SAM-5 7).
    pub fn attach_nexus(&self, nexus: Arc<ItNexus>, hook: AbortHook) {
        self.directory
            .nexus_up(nexus.id, &self.name, &nexus.initiator_name);
        self.hooks.write().insert(nexus.id, hook);
        self.nexuses.write().entry(nexus.id).or_insert(nexus);
    }

    /// Registers a task before it executes; the transport drops the guard after it has
    /// queued the task's outcome (see [`crate::tasks`]).
    pub fn begin_task(&self, nexus: &ItNexus, tag: u64, lun: u64) -> TaskGuard {
        self.tasks.begin(nexus.id, tag, lun)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The daemon-wide directory of LUs (EXTENDED COPY, changers reaching drives).
    pub(crate) fn directory(&self) -> &Arc<LuDirectory> {
        &self.directory
    }

    pub(crate) fn all_lus(&self) -> Vec<Arc<Lu>> {
        let mut v = vec![self.controller.clone()];
        v.extend(self.luns.read().values().cloned());
        v
    }

    pub(crate) fn nexus_ids(&self) -> Vec<u64> {
        self.nexuses.read().keys().copied().collect()
    }

    /// SPC-4 6.33: REPORTED LUNS DATA HAS CHANGED for every I_T nexus, on the LUs that
    /// remain.
    fn luns_changed(&self, except: Option<u64>) {
        let ids = self.nexus_ids();
        for lu in self.all_lus().into_iter().filter(|l| Some(l.lun) != except) {
            lu.ua
                .establish(ids.iter().copied(), asc::REPORTED_LUNS_DATA_HAS_CHANGED);
        }
    }

    pub fn add_lu(&self, lun: u64, cfg: LuConfig) -> Result<(), ScsiError> {
        if lun == 0 {
            return Err(ScsiError::Lun0Reserved);
        }
        if self.luns.read().contains_key(&lun) {
            return Err(ScsiError::LunExists(lun));
        }
        let lu = crate::devices::new_lu(lun, cfg)?;
        self.insert_lu(lun, lu)
    }

    /// Loads a disc into a cd LU's drive (`Some((image, path))`) or takes it out
    /// (`None`): what `rtgtadm --op update --params media=PATH` does. Every I_T nexus
    /// hears of it (GET EVENT STATUS NOTIFICATION, NOT READY TO READY CHANGE). While an
    /// initiator prevents medium removal a loaded disc stays unless `force`; the
    /// initiator is sent an eject request.
    pub fn change_medium(
        &self,
        lun: u64,
        image: Option<(Arc<dyn rtgt_backstore::BackingStore>, String)>,
        force: bool,
    ) -> Result<(), ScsiError> {
        let lu = self.lu(lun)?;
        let server = lu.device.server();
        match server.change_disc(&lu, image, force, &self.nexus_ids()) {
            Some(Ok(())) => Ok(()),
            Some(Err(())) => Err(ScsiError::MediumRemovalPrevented(lun)),
            None => Err(ScsiError::BadParam(format!(
                "LUN {lun} is a {} and has no removable disc (media= is for --device-type cd)",
                server.name()
            ))),
        }
    }

    fn insert_lu(&self, lun: u64, lu: Lu) -> Result<(), ScsiError> {
        let lu = Arc::new(lu);
        // Persistent reservations kept with APTPL by an earlier run, keyed by the LU's
        // NAA designator: the identity initiators know it by (SPC-4 5.13.5).
        if let Some(dir) = &self.state_dir {
            let naa = inquiry::naa(&lu, &self.name);
            let file = dir.join("pr").join(format!("naa.{naa:016x}.json"));
            *lu.pr.lock() = PrState::load(file, &self.name, lun).map_err(ScsiError::PrState)?;
        }
        {
            let mut luns = self.luns.write();
            if luns.contains_key(&lun) {
                return Err(ScsiError::LunExists(lun));
            }
            luns.insert(lun, lu.clone());
        }
        self.directory.insert(&self.name, &lu);
        // Outside the write lock (luns_changed reads the map). The new LU has no
        // history with any nexus; the others tell of it.
        self.luns_changed(Some(lun));
        Ok(())
    }

    pub fn remove_lu(&self, lun: u64) -> Result<(), ScsiError> {
        if lun == 0 {
            return Err(ScsiError::Lun0Reserved);
        }
        self.luns
            .write()
            .remove(&lun)
            .ok_or(ScsiError::NoSuchLun(lun))?;
        self.directory.edit_masks(|m| {
            m.remove(&(self.name.clone(), lun));
        });
        self.luns_changed(None);
        Ok(())
    }

    fn lu(&self, lun: u64) -> Result<Arc<Lu>, ScsiError> {
        if lun == 0 {
            return Err(ScsiError::Lun0Reserved);
        }
        self.luns
            .read()
            .get(&lun)
            .cloned()
            .ok_or(ScsiError::NoSuchLun(lun))
    }

    /// Online resize: the backing store becomes `bytes` long (whole blocks), and every
    /// I_T nexus gets CAPACITY DATA HAS CHANGED (SBC-4 4.6, SPC-4 table F.1).
    pub fn resize_lu(&self, lun: u64, bytes: u64) -> Result<(), ScsiError> {
        let lu = self.lu(lun)?;
        if lu.store.is_none() {
            return Err(ScsiError::BadParam(format!(
                "size=: LUN {lun} is a {}; its size is its medium's",
                lu.device.server().name()
            )));
        }
        let bs = u64::from(lu.block_size);
        if bytes < bs || !bytes.is_multiple_of(bs) {
            return Err(ScsiError::BadParam(format!(
                "size={bytes}: use a multiple of the {bs}-byte block size"
            )));
        }
        let store = lu.store.as_ref().expect("disk LU has a store");
        store
            .resize(bytes)
            .map_err(|e| ScsiError::BadParam(format!("size={bytes}: cannot resize: {e}")))?;
        self.check_capacity(&lu, None);
        Ok(())
    }

    /// Raises CAPACITY DATA HAS CHANGED on every nexus but `except` (which is being told
    /// the new capacity right now) when the store's size moved.
    pub(crate) fn check_capacity(&self, lu: &Lu, except: Option<u64>) {
        if lu.capacity_changed() {
            let ids = self
                .nexus_ids()
                .into_iter()
                .filter(|id| Some(*id) != except);
            lu.ua.establish(ids, asc::CAPACITY_DATA_HAS_CHANGED);
        }
    }

    /// Applies `--params` changes to an existing LU (`--op update --mode logicalunit`).
    /// `size=BYTES[K|M|G|T]` resizes it online.
    pub fn update_lu(&self, lun: u64, params: &[(String, String)]) -> Result<(), ScsiError> {
        let lu = self.lu(lun)?;
        if let Some(r) = lu.device.server().configure(self, &lu, params) {
            return r;
        }
        let (size, params): (Vec<_>, Vec<_>) = params
            .iter()
            .cloned()
            .partition(|(k, _)| k.trim() == "size");
        let size = match size.last() {
            Some((_, v)) => Some(parse_size(v.trim()).ok_or_else(|| {
                ScsiError::BadParam(format!("size={v}: use bytes with an optional K, M, G or T"))
            })?),
            None => None,
        };
        let params = &params[..];
        let next = lu.params.read().apply(params)?;
        if next.thin_provisioning && !lu.store.as_ref().is_some_and(|s| s.capabilities().unmap) {
            return Err(ScsiError::BadParam(
                "thin_provisioning=1: the backing store cannot release space".into(),
            ));
        }
        let given = |key: &str| params.iter().any(|(k, _)| k.trim() == key);
        let caps = lu
            .store
            .as_ref()
            .map(|s| s.capabilities())
            .unwrap_or_default();
        // tgtadm sets lbppbe / physical_blocksize with --op update after --op new.
        let physical = match &lu.store {
            Some(store)
                if given("physical_blocksize")
                    || given("physical_block_size")
                    || given("lbppbe") =>
            {
                let p = crate::lu::physical_block_size(&next, store.as_ref(), lu.block_size);
                crate::lu::check_physical(p, lu.block_size).map_err(ScsiError::BadParam)?;
                Some(p)
            }
            _ => None,
        };
        // A store opened O_RDONLY can't take writes; reopening it under a running LU
        // is not supported.
        if given("readonly") && !next.readonly && caps.read_only {
            return Err(ScsiError::BadParam(
                "readonly=0: the backing store was opened read-only (O_RDONLY); delete the logical unit and create it again without readonly=1".into(),
            ));
        }
        if given("write_cache") && next.write_cache && caps.sync {
            return Err(ScsiError::BadParam(
                "write_cache=on: the backing store is opened O_DSYNC (--bsoflags sync), so every write is written through".into(),
            ));
        }
        let mut mode_changed = false;
        {
            let mut mode = lu.mode.lock();
            if given("sense_format") {
                mode.d_sense = next.descriptor_sense;
            }
            if given("write_cache") && mode.wce != next.write_cache {
                mode.wce = next.write_cache;
                mode_changed = true;
            }
        }
        *lu.params.write() = next;
        if let Some(p) = physical {
            if lu
                .physical_block_size
                .swap(p, std::sync::atomic::Ordering::Relaxed)
                != p
            {
                // LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT is READ CAPACITY (16)
                // parameter data; when that changes, SBC-4 5.20.2 asks for the unit
                // attention SPC-4 names for it: CAPACITY DATA HAS CHANGED (2Ah/09h).
                lu.ua
                    .establish(self.nexus_ids(), asc::CAPACITY_DATA_HAS_CHANGED);
            }
        }
        if mode_changed {
            // SPC-4 7.5.3: the mode parameters changed other than by this nexus's MODE
            // SELECT; every I_T nexus hears of it.
            lu.ua
                .establish(self.nexus_ids(), asc::MODE_PARAMETERS_CHANGED);
        }
        if let Some(bytes) = size {
            self.resize_lu(lun, bytes)?;
        }
        Ok(())
    }

    pub fn lu_info(&self) -> Vec<LuInfo> {
        self.all_lus()
            .iter()
            .map(|lu| {
                let p = lu.params.read().clone();
                let mode = *lu.mode.lock();
                let medium = lu.medium.lock().clone();
                let controller = lu.lun == 0;
                let mut info = LuInfo {
                    lun: lu.lun,
                    device_type: lu.device.server().name().into(),
                    scsi_id: p
                        .scsi_id
                        .clone()
                        .unwrap_or_else(|| format!("{:016x}", inquiry::naa(lu, &self.name))),
                    scsi_sn: inquiry::serial(lu, &self.name),
                    size_bytes: lu.store.as_ref().map(|s| s.size()).unwrap_or(0),
                    block_size: lu.block_size,
                    online: p.online && medium.present,
                    removable: p.removable,
                    prevent_removal: medium.prevent_removal(),
                    readonly: lu.hard_readonly(),
                    swp: mode.swp,
                    thin_provisioning: p.thin_provisioning,
                    backing_store_type: lu
                        .store
                        .as_ref()
                        .map(|s| s.kind().to_string())
                        .unwrap_or_else(|| "null".into()),
                    backing_store_path: if controller {
                        "None".into()
                    } else {
                        lu.path.clone()
                    },
                    backing_store_flags: lu.bsoflags.clone(),
                    backing_store_opts: lu.store.as_ref().and_then(|s| s.bsopts()),
                    write_cache: !controller && mode.wce,
                    nv_cache: p.nv_cache,
                    physical_block_size: lu.physical_block_size(),
                    params: p.to_pairs(),
                    io_stats: lu.store.as_ref().map(|s| s.stats()).unwrap_or_default(),
                    media: lu
                        .store
                        .as_ref()
                        .map(|s| s.status_lines())
                        .unwrap_or_default(),
                    tray_open: false,
                    store_metrics: lu.store.as_ref().map(|s| s.metrics()).unwrap_or_default(),
                };
                lu.device.server().fill_info(lu, &mut info);
                info
            })
            .collect()
    }

    pub async fn execute(&self, cmd: ScsiCommand) -> ScsiResult {
        let task = self.begin_task(&cmd.nexus, cmd.tag, cmd.lun);
        let mut r = self.execute_task(cmd, &task).await;
        r.aborted |= task.aborted();
        r
    }

    /// Runs a command registered with [`begin_task`](Self::begin_task). A task aborted
    /// before it starts does not run; one aborted while it runs finishes what it does
    /// to the medium, and either way the result says `aborted` so the transport drops it.
    pub async fn execute_task(&self, mut cmd: ScsiCommand, task: &TaskGuard) -> ScsiResult {
        if task.aborted() {
            return ScsiResult {
                aborted: true,
                ..ScsiResult::default()
            };
        }
        let nexus = cmd.nexus.clone();
        if !self.nexuses.read().contains_key(&nexus.id) {
            // A nexus's first command gets no unit attention: nothing has happened to
            // it yet (and SAM-5 lets the power-on one be skipped for a new nexus).
            self.nexuses.write().insert(nexus.id, nexus.clone());
            self.directory
                .nexus_up(nexus.id, &self.name, &nexus.initiator_name);
        }
        if cmd.cdb.is_empty() {
            return finish(Err(invalid_opcode()), false, None);
        }
        let lu = if cmd.lun == 0 {
            Some(self.controller.clone())
        } else {
            self.luns.read().get(&cmd.lun).cloned()
        };
        // A masked LUN is, to this initiator, a LUN nobody configured.
        let lu = lu.filter(|_| self.visible(cmd.lun, &nexus.initiator_name));
        let Some(lu) = lu else {
            return finish(self.no_such_lu(&cmd), false, None);
        };
        let data_out_len = lu.device.server().data_out_len(&lu, &cmd.cdb);
        // The Data-Out travels on by value: a WRITE hands this very buffer to the store
        // instead of a copy of it.
        let mut data = std::mem::take(&mut cmd.data_out);
        let written = data.len() as u64;
        let (r, elapsed) = crate::stats::timed(self.run(&lu, &cmd, &mut data, task)).await;
        // The sense format is looked up (under the mode page lock) only for sense data.
        let descriptor = matches!(r, Err(Fail::Check(_))) && lu.descriptor_sense();
        let mut res = finish(r, descriptor, data_out_len);
        if let Some(n) = cdb::allocation_length(&cmd.cdb) {
            res.data_in.truncate(n);
        }
        res.aborted = task.aborted();
        res.elapsed = elapsed;
        lu.stats.record(
            res.data_in.len() as u64,
            if res.status == 0 { written } else { 0 },
            res.status != 0,
            res.elapsed,
        );
        res
    }

    /// A LUN nobody configured: INQUIRY says so with peripheral qualifier 011b, REPORT
    /// LUNS and REQUEST SENSE still work, anything else is LOGICAL UNIT NOT SUPPORTED
    /// (SPC-4 6.6.2, SAM-5 5.11).
    fn no_such_lu(&self, cmd: &ScsiCommand) -> Outcome<ScsiResult> {
        let cdb = &cmd.cdb;
        match cdb[0] {
            op::INQUIRY if cdb.len() >= 6 => {
                if cdb[1] & 0x03 != 0 || cdb[2] != 0 {
                    return Err(invalid_cdb());
                }
                Ok(ScsiResult::with_data(inquiry::not_present()))
            }
            op::REPORT_LUNS if cdb.len() >= 12 => spc::report_luns(&self.lun_list(&cmd.nexus), cdb),
            op::REQUEST_SENSE if cdb.len() >= 6 => spc::request_sense(None, &cmd.nexus, cdb, None),
            _ => Err(Sense::illegal(asc::LOGICAL_UNIT_NOT_SUPPORTED).into()),
        }
    }

    /// The LUNs `nexus` may see: LUN 0 and every LU not masked from it.
    pub(crate) fn lun_list(&self, nexus: &ItNexus) -> Vec<u64> {
        let mut v = vec![0];
        v.extend(
            self.luns
                .read()
                .keys()
                .copied()
                .filter(|&l| self.visible(l, &nexus.initiator_name)),
        );
        v
    }

    /// Whether LUN `lun` is visible to `initiator` (LUN masking; LUN 0 always is).
    /// LUN masks live in the daemon-wide directory, where EXTENDED COPY checks them too.
    pub fn visible(&self, lun: u64, initiator: &str) -> bool {
        self.directory.visible(&self.name, lun, initiator)
    }

    /// Drops this target's LUN masks (when the target is deleted, so a new target of the
    /// same name starts unmasked).
    pub fn forget_masks(&self) {
        self.directory
            .edit_masks(|m| m.retain(|(t, _), _| *t != self.name));
    }

    /// The initiators a LUN is restricted to (empty: visible to all).
    pub fn lun_initiators(&self, lun: u64) -> Vec<String> {
        self.directory
            .masks
            .read()
            .get(&(self.name.clone(), lun))
            .cloned()
            .unwrap_or_default()
    }

    /// Restricts LUN `lun` to `initiators` (empty: visible to all again). Every nexus is
    /// told REPORTED LUNS DATA HAS CHANGED (SPC-4 6.33).
    pub fn set_lun_initiators(&self, lun: u64, initiators: Vec<String>) -> Result<(), ScsiError> {
        if lun == 0 {
            return Err(ScsiError::Lun0Reserved);
        }
        if !self.luns.read().contains_key(&lun) {
            return Err(ScsiError::NoSuchLun(lun));
        }
        let key = (self.name.clone(), lun);
        self.directory.edit_masks(|m| {
            if initiators.is_empty() {
                m.remove(&key);
            } else {
                m.insert(key, initiators);
            }
        });
        self.luns_changed(None);
        Ok(())
    }

    async fn run(
        &self,
        lu: &Arc<Lu>,
        cmd: &ScsiCommand,
        data: &mut Vec<u8>,
        task: &TaskGuard,
    ) -> Outcome<ScsiResult> {
        let opcode = cmd.cdb[0];
        #[cfg(debug_assertions)]
        fault_injection::maybe_panic(opcode);
        let need = cdb::cdb_len(opcode);
        if cmd.cdb.len() < need {
            return Err(invalid_cdb());
        }
        let cdb = &cmd.cdb[..need];
        let nexus = &*cmd.nexus;
        let sa = opcodes::has_service_action(opcode).then(|| u16::from(cdb[1] & 0x1f));
        let server = lu.device.server();
        let table = lu.device.opcodes(Features { thin: lu.thin() });
        // An opcode rtgtd does not know goes to a block handler that asked for those
        // (scst_user's PARSE_EXCEPTION), after the checks below.
        let raw = !table.is_known(opcode) && crate::scsi_handler::takes_unknown(lu);
        if !table.is_known(opcode) && !raw {
            return Err(invalid_opcode());
        }
        if crate::store_ready::became_ready(lu) {
            self.check_capacity(lu, None);
        }
        // Reservation changes and resets made through other targets sharing the medium.
        let remote = crate::shared_pr::remote_events(lu);
        for (who, code) in remote.uas {
            lu.ua.establish(self.nexuses_in(&who), code);
        }
        if let Some(code) = remote.reset {
            self.remote_reset(lu, code, nexus.id, cmd.tag);
        }
        // SAM-5 5.14: a pending unit attention ends any other command.
        let ua_exempt = spc::ua_exempt(opcode) || server.ua_exempt(opcode);
        if !ua_exempt {
            if let Some(s) = lu.ua.take(nexus.id) {
                return Err(s.into());
            }
        }
        // An unknown service action of a known opcode (SPC-4 4.2.5.1): the field
        // pointer names the SERVICE ACTION field.
        if !raw && !table.is_supported(opcode, sa) {
            return Err(invalid_cdb_at(1, Some(4)));
        }
        cdb::check_control(cdb)?;
        // A target port group in standby or unavailable state refuses most commands
        // (SPC-4 5.16.2.4), before reservations are looked at.
        if server.alua() && !self.alua_active.load(Ordering::Acquire) {
            if let Some(s) = alua::refuse(self.alua.read().state(nexus.target_port_group), cdb) {
                return Err(s.into());
            }
        }
        if let Some(s) = crate::store_ready::refuse(lu, opcode) {
            return Err(s.into());
        }
        // SPC-2 reservations, then persistent ones (SPC-4 5.13.1), as the newest state
        // any target sharing the medium has published.
        crate::shared_pr::refresh(lu);
        if lu.spc2.conflicts(nexus) && !spc::spc2_allowed(opcode) {
            return Err(Fail::Conflict);
        }
        if lu.pr.lock().conflicts_for(nexus, spc::pr_access(cdb)) {
            return Err(Fail::Conflict);
        }
        // What every device type answers alike (SPC-4 6.6, 6.33, 6.39); the rest is
        // the device server's.
        let own = server.answers_itself(opcode);
        let r = match opcode {
            op::INQUIRY if !own => {
                inquiry::inquiry(lu, &self.name, nexus, cdb).map(ScsiResult::with_data)
            }
            op::REPORT_LUNS => spc::report_luns(&self.lun_list(nexus), cdb),
            op::REQUEST_SENSE if !own => {
                // In standby / unavailable the sense data says why (SPC-4 5.16.2.4).
                let alua = server
                    .alua()
                    .then(|| {
                        let state = self.alua.read().state(nexus.target_port_group);
                        alua::refuse(state, &[op::TEST_UNIT_READY, 0, 0, 0, 0, 0])
                    })
                    .flatten();
                spc::request_sense(Some(lu), nexus, cdb, alua.or_else(|| server.not_ready(lu)))
            }
            _ => {
                let ctx = Ctx {
                    target: self,
                    lu,
                    cmd,
                    cdb,
                    task,
                };
                if raw {
                    crate::scsi_handler::forward_unknown(&ctx, data).await
                } else {
                    lu.device.execute(&ctx, data).await
                }
            }
        };
        if r.is_ok() && (crate::saved_state::changes(cdb) || server.changes_saved_state(cdb)) {
            self.directory.state_changed(&self.name);
        }
        r
    }

    /// REPORT TARGET PORT GROUPS (SPC-4 6.36).
    pub(crate) fn report_target_port_groups(&self, cdb: &[u8]) -> Outcome<ScsiResult> {
        Ok(ScsiResult::with_data(self.alua.read().report(cdb)?))
    }

    /// SET TARGET PORT GROUPS (SPC-4 6.44): explicit ALUA.
    pub(crate) fn set_target_port_groups(
        &self,
        nexus: &ItNexus,
        cdb: &[u8],
        param: &[u8],
    ) -> Outcome<ScsiResult> {
        if self.edit_alua(|a| a.set_explicit(cdb, param))? {
            // SPC-4 5.16.2.3: the other I_T nexuses learn of an explicit change.
            let ids = self.nexus_ids().into_iter().filter(|id| *id != nexus.id);
            let ids: Vec<u64> = ids.collect();
            for lu in self.all_lus() {
                lu.ua
                    .establish(ids.iter().copied(), asc::ASYMMETRIC_ACCESS_STATE_CHANGED);
            }
        }
        Ok(ScsiResult::good())
    }

    /// PERSISTENT RESERVE OUT (SPC-4 6.16), with its unit attentions and PREEMPT AND
    /// ABORT's aborts, on a medium shared with other targets under their common lock.
    pub(crate) async fn persistent_reserve_out(
        &self,
        lu: &Arc<Lu>,
        nexus: &ItNexus,
        cdb: &[u8],
        data: &[u8],
    ) -> Outcome<ScsiResult> {
        let ports = |rel: u16| self.target_port_name(rel);
        // On a medium shared with other targets, under their common lock.
        let update = crate::shared_pr::begin(lu).await?;
        let fx = spc::pr_out(lu, nexus, cdb, data, &self.name, &ports);
        let event = crate::shared_pr::Event {
            uas: fx.as_ref().map(|f| f.uas.clone()).unwrap_or_default(),
            reset: None,
        };
        let fx = match (fx, crate::shared_pr::finish(lu, update, &event).await) {
            (Ok(fx), Ok(())) => fx,
            (Err(e), _) | (Ok(_), Err(e)) => return Err(e),
        };
        for (who, code) in fx.uas {
            let ids = self.nexuses_in(&who);
            lu.ua.establish(ids, code);
        }
        if !fx.abort.is_empty() {
            // PREEMPT AND ABORT ends the preempted nexuses' tasks on this LU
            // (SPC-4 5.13.11.4.5); with TAS=0 they end without a response.
            let victims: Vec<u64> = fx
                .abort
                .iter()
                .flat_map(|set| self.nexuses_in(set))
                .filter(|id| *id != nexus.id)
                .collect();
            let lun = lu.lun;
            let wait = self.abort_tasks(&victims, Some(lun), None);
            // The command completes after the aborted tasks have (SAM-5 5.6).
            wait.wait().await;
        }
        Ok(ScsiResult::good())
    }

    /// A reset of `lu` made through another target exporting its medium, applied to
    /// this target's nexuses at the first command that sees it (`current`, the nexus
    /// and tag of that command, which came after it): the LU resets, every task on it
    /// ends (SAM-5 6.3.3, TAS=0: without a response) and every nexus gets `code`.
    fn remote_reset(&self, lu: &Arc<Lu>, code: asc::Code, nexus: u64, tag: u64) {
        let spc2 = lu.spc2.holder();
        lu.reset();
        // The shared state already says who holds the SPC-2 reservation now.
        lu.spc2.set_holder(spc2);
        let ids = self.nexus_ids();
        let lun = lu.lun;
        // This nexus's other tasks on the LU end in the core (its transport is busy
        // running this command; tasks of it still gathering Data-Out run on).
        let _ = self
            .tasks
            .abort(|n, t, l| n == nexus && l == lun && t != tag);
        let others: Vec<u64> = ids.iter().copied().filter(|id| *id != nexus).collect();
        // Nobody waits: the initiators learn of the reset from the unit attention.
        let _ = self.abort_tasks(&others, Some(lun), None);
        lu.ua.establish(ids.iter().copied(), code);
    }

    /// The I_T nexuses a persistent reservation registration stands for.
    fn nexuses_in(&self, set: &NexusSet) -> Vec<u64> {
        self.nexuses
            .read()
            .values()
            .filter(|n| set.matches(&PortPair::of(n)))
            .map(|n| n.id)
            .collect()
    }

    /// Aborts the tasks of `victims` (on `lun`, or every LUN) in the core, and tells
    /// their transports to drop what they hold of them; `close` also drops their
    /// connections. Returns what to wait for.
    fn abort_tasks(&self, victims: &[u64], lun: Option<u64>, close: Option<bool>) -> TaskWait {
        let before = Instant::now();
        let mut wait = self
            .tasks
            .abort(|n, _, l| victims.contains(&n) && lun.is_none_or(|x| x == l));
        let hooks: Vec<AbortHook> = {
            let h = self.hooks.read();
            victims.iter().filter_map(|id| h.get(id).cloned()).collect()
        };
        for hook in hooks {
            let (ack, acked) = AbortAck::new();
            hook(TransportAbort {
                lun,
                before,
                close: close.unwrap_or(false),
                ack,
            });
            wait = wait.with_ack(acked);
        }
        wait
    }

    /// A task management function (SAM-5 7) received on `nexus`: aborts the tasks it
    /// covers, on every I_T nexus it covers, and establishes the unit attentions it
    /// prescribes. `tag` is the referenced task of ABORT TASK. The issuing transport has
    /// already dropped its own tasks the function covers; the others are told through
    /// their hooks.
    pub fn task_management(
        &self,
        nexus: &ItNexus,
        func: TmFunction,
        lun: u64,
        tag: Option<u64>,
    ) -> TmOutcome {
        // A task management request is a use of the target by this nexus.
        self.nexuses
            .write()
            .entry(nexus.id)
            .or_insert_with(|| Arc::new(nexus.clone()));
        let ids = self.nexus_ids();
        let others: Vec<u64> = ids.iter().copied().filter(|id| *id != nexus.id).collect();
        let lu = if lun == 0 {
            Some(self.controller.clone())
        } else {
            self.luns.read().get(&lun).cloned()
        };
        match func {
            TmFunction::TargetWarmReset | TmFunction::TargetColdReset => {
                // SAM-5 6.3.2 hard reset / power on: every task of every nexus ends, every
                // LU resets, and the unit attention says which (POWER ON OCCURRED for a
                // cold reset). A cold reset also ends every session (RFC 7143 §11.5.1).
                let cold = func == TmFunction::TargetColdReset;
                let mine = self.tasks.abort(|n, _, _| n == nexus.id);
                let theirs = self.abort_tasks(&others, None, Some(cold));
                let code = if cold {
                    asc::POWER_ON_OCCURRED
                } else {
                    asc::POWER_ON_RESET_OR_BUS_DEVICE_RESET
                };
                let mut wait = mine.join(theirs);
                for lu in self.all_lus() {
                    lu.reset();
                    lu.ua.establish(ids.iter().copied(), code);
                    // SAM-5 6.3.2: a hard reset resets every LU, which other targets
                    // exporting the medium must apply too.
                    if let Some(acked) = crate::shared_pr::publish_reset(&lu, code) {
                        wait = wait.with_ack(acked);
                    }
                }
                TmOutcome {
                    response: TmResponse::FunctionComplete,
                    wait,
                    close: cold,
                }
            }
            _ if lu.is_none() => TmOutcome::now(TmResponse::IncorrectLun),
            TmFunction::LogicalUnitReset => {
                // SAM-5 6.3.3: every task on the LU, from every nexus, ends; BUS DEVICE
                // RESET FUNCTION OCCURRED for every I_T nexus.
                let lu = lu.expect("checked above");
                let mine = self.tasks.abort(|n, _, l| n == nexus.id && l == lun);
                let theirs = self.abort_tasks(&others, Some(lun), None);
                lu.reset();
                let code = asc::BUS_DEVICE_RESET_FUNCTION_OCCURRED;
                lu.ua.establish(ids.iter().copied(), code);
                let mut wait = mine.join(theirs);
                // The LU's other targets (gateways of one medium) reset it for their
                // nexuses too; the function completes once they have the event.
                if let Some(acked) = crate::shared_pr::publish_reset(&lu, code) {
                    wait = wait.with_ack(acked);
                }
                TmOutcome {
                    response: TmResponse::FunctionComplete,
                    wait,
                    close: false,
                }
            }
            TmFunction::AbortTask => {
                let wait = match tag {
                    Some(tag) => self
                        .tasks
                        .abort(|n, t, l| n == nexus.id && t == tag && l == lun),
                    None => TaskWait::default(),
                };
                TmOutcome {
                    response: TmResponse::FunctionComplete,
                    wait,
                    close: false,
                }
            }
            // SAM-5 7.3: this nexus's tasks on the LU.
            TmFunction::AbortTaskSet => TmOutcome {
                response: TmResponse::FunctionComplete,
                wait: self.tasks.abort(|n, _, l| n == nexus.id && l == lun),
                close: false,
            },
            TmFunction::ClearTaskSet => {
                // SAM-5 7.4: the LU's whole task set, every nexus's (one shared task set);
                // with TAS=0 the other nexuses that lost tasks get COMMANDS CLEARED BY
                // ANOTHER INITIATOR.
                let lu = lu.expect("checked above");
                let mine = self.tasks.abort(|n, _, l| n == nexus.id && l == lun);
                let hit: Vec<u64> = others
                    .iter()
                    .copied()
                    .filter(|id| self.tasks.has(|n, _, l| n == *id && l == lun))
                    .collect();
                let theirs = self.abort_tasks(&others, Some(lun), None);
                lu.ua
                    .establish(hit, asc::COMMANDS_CLEARED_BY_ANOTHER_INITIATOR);
                TmOutcome {
                    response: TmResponse::FunctionComplete,
                    wait: mine.join(theirs),
                    close: false,
                }
            }
            // NACA is not supported, so there is never an ACA to clear.
            TmFunction::ClearAca => TmOutcome::now(TmResponse::FunctionRejected),
        }
    }

    /// I_T NEXUS RESET (SAM-5 7.6) received on `nexus`, for a transport whose nexus
    /// outlives the function (virtio-scsi's): the I_T nexus loss of SAM-5 6.3.4 without
    /// forgetting the nexus. Its tasks on every LU end, the SPC-2 reservations and
    /// medium removal preventions it holds go, what was pending for it is replaced by
    /// I_T NEXUS LOSS OCCURRED (29h/07h) on every LU. Returns what to wait for before
    /// the function's answer.
    pub fn it_nexus_reset(&self, nexus: &ItNexus) -> TaskWait {
        let wait = self.tasks.abort(|n, _, _| n == nexus.id);
        let wait = self.release_nexus(nexus, wait);
        for lu in self.all_lus() {
            lu.ua.establish([nexus.id], asc::I_T_NEXUS_LOSS_OCCURRED);
        }
        wait
    }

    /// The I_T nexus is gone (session closed): release what it held (SPC-2 reservations)
    /// and forget its pending unit attentions. Persistent reservations stay (SPC-4 5.13).
    /// Returns what to wait for before telling the initiator the nexus is gone (a
    /// Logout Response): the release's publication to the other targets of a shared
    /// medium, so a command the initiator sends through another gateway once it has the
    /// response never meets the reservation.
    pub fn nexus_loss(&self, nexus: &ItNexus) -> TaskWait {
        let wait = TaskWait::default();
        self.directory.nexus_down(nexus.id);
        self.nexuses.write().remove(&nexus.id);
        self.hooks.write().remove(&nexus.id);
        // SAM-5 6.3.4: the nexus's tasks end with it.
        let _ = self.tasks.abort(|n, _, _| n == nexus.id);
        self.release_nexus(nexus, wait)
    }

    /// What every LU holds for `nexus` goes (SAM-5 6.3.4): its pending unit attentions,
    /// its SPC-2 reservations and medium removal preventions. Adds to `wait` what the
    /// shared state must acknowledge first.
    fn release_nexus(&self, nexus: &ItNexus, mut wait: TaskWait) -> TaskWait {
        for lu in self.all_lus() {
            lu.ua.forget(nexus.id);
            // SPC-2 5.5.1, through the shared state on a medium other targets export.
            if let Some(acked) = crate::shared_pr::nexus_loss(&lu, nexus) {
                wait = wait.with_ack(acked);
            }
            // SBC-4 5.15: a prevention ends with the I_T nexus that made it.
            lu.medium.lock().preventing.remove(&nexus.id);
            lu.device.server().nexus_loss(&lu, nexus.id);
        }
        wait
    }
}

/// `1048576`, `512K`, `100M`, `2G`, `1T` (binary multiples, as tgtadm's sizes).
fn parse_size(v: &str) -> Option<u64> {
    let (num, mult) = match v.char_indices().last()? {
        (i, 'k' | 'K') => (&v[..i], 1u64 << 10),
        (i, 'm' | 'M') => (&v[..i], 1 << 20),
        (i, 'g' | 'G') => (&v[..i], 1 << 30),
        (i, 't' | 'T') => (&v[..i], 1 << 40),
        _ => (v, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

/// Turns a handler's outcome into the transport's result, with sense in the format
/// the control mode page asks for.
fn finish(r: Outcome<ScsiResult>, descriptor: bool, data_out_len: Option<u64>) -> ScsiResult {
    let mut res = match r {
        Ok(r) => r,
        Err(Fail::Conflict) => ScsiResult {
            status: status::RESERVATION_CONFLICT,
            ..ScsiResult::default()
        },
        Err(Fail::Check(s)) => ScsiResult {
            status: status::CHECK_CONDITION,
            sense: s.encode(descriptor),
            ..ScsiResult::default()
        },
    };
    res.data_out_len = data_out_len.map(|n| u32::try_from(n).unwrap_or(u32::MAX));
    res
}

/// Debug builds only (what `cargo test` runs): `RTGT_FAULT_PANIC_OPCODE=0xNN` makes every
/// command with that opcode panic, so tests can show that a bug in one command's code is
/// contained to that command. Release builds have no such switch.
#[cfg(debug_assertions)]
mod fault_injection {
    pub(super) fn maybe_panic(opcode: u8) {
        static OPCODE: std::sync::OnceLock<Option<u8>> = std::sync::OnceLock::new();
        let armed = OPCODE.get_or_init(|| {
            let v = std::env::var("RTGT_FAULT_PANIC_OPCODE").ok()?;
            u8::from_str_radix(v.trim_start_matches("0x"), 16).ok()
        });
        if *armed == Some(opcode) {
            panic!("fault injection: RTGT_FAULT_PANIC_OPCODE={opcode:#04x}");
        }
    }
}
