//! One registry, one truth: the running configuration (targets, LUNs, ACLs, sessions) and
//! the control protocol that rtgtadm speaks to change and show it.
//!
//! The daemon shares one [`Registry`] between its threads. Configuration changes take a
//! write lock briefly; the lookups the login path makes ([`Registry::target_by_name`],
//! [`Target::allows`], [`Target::online`]) take read locks or read atomics only.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;
use rtgt_scsi::{LuDirectory, ScsiTarget};

pub mod acl;
pub mod atomic_file;
pub mod auth;
pub mod config;
pub mod control;
mod disc;
pub mod error;
mod media;
mod mgmt;
pub mod name;
pub mod params;
mod passthrough;
pub mod report;
mod show;

pub use acl::{Acl, AddressRule};
pub use auth::{Accounts, AuthBinding, DISCOVERY_TID};
pub use error::{errno, AdmError};
pub use name::validate_iscsi_name;
use rtgt_iscsi::chap::{ChapAlgorithm, ChapConfig};

/// A connection of a session, as `show` lists it.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub cid: u16,
    pub peer: SocketAddr,
    pub local: SocketAddr,
}

/// A logged-in normal session, registered by the transport for `show` and forced close.
#[derive(Clone)]
pub struct SessionInfo {
    pub sid: u64,
    pub initiator_name: String,
    pub initiator_alias: Option<String>,
    pub isid: [u8; 6],
    pub tsih: u16,
    pub connections: Vec<ConnInfo>,
    /// The transport (tgt's LLD) the session came in through: "iscsi", ...
    pub transport: &'static str,
    /// Closes the session (used by a forced target delete, `--mode conn --op delete` and
    /// a forced system delete). Called with no registry lock held; it may call
    /// [`Target::remove_session`].
    pub close: Arc<dyn Fn() + Send + Sync>,
}

impl std::fmt::Debug for SessionInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionInfo")
            .field("sid", &self.sid)
            .field("initiator_name", &self.initiator_name)
            .field("initiator_alias", &self.initiator_alias)
            .field("isid", &self.isid)
            .field("tsih", &self.tsih)
            .field("connections", &self.connections)
            .field("transport", &self.transport)
            .finish_non_exhaustive()
    }
}

/// A transport built into the daemon, as the registry shows it (tgt's low-level driver).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lld {
    /// What `--lld` calls it: "iscsi", "iser", "vhost".
    pub name: String,
    /// "ready", or why not (not started on this command line).
    pub state: String,
}

/// A target's administrative state (`--op update --mode target --name state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetState {
    Ready,
    Offline,
}

impl TargetState {
    pub fn name(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Offline => "offline",
        }
    }
}

pub struct Target {
    pub tid: u32,
    pub name: String,
    pub scsi: Arc<ScsiTarget>,
    sessions: RwLock<Vec<SessionInfo>>,
    acl: RwLock<Acl>,
    params: RwLock<Vec<(String, String)>>,
    ready: AtomicBool,
    /// Set once the target is deleted: a session that registers afterwards is closed.
    deleted: AtomicBool,
    /// The system state (`--mode sys --op update --name State`), shared with the registry.
    system_ready: Arc<AtomicBool>,
    /// CHAP accounts bound to this target (`--op bind --mode account`).
    auth: RwLock<AuthBinding>,
    /// CHAP algorithms this target allows; `None` follows the system setting.
    chap_algorithms: RwLock<Option<Vec<ChapAlgorithm>>>,
    /// Most sessions at once (`--name max_sessions`); 0 = no limit.
    max_sessions: AtomicU32,
    /// The registry's change count when a request last changed this target (see
    /// [`Registry::changes`]).
    changed: AtomicU64,
    /// Counters and negotiated keys of its sessions, by sid (see [`report`]).
    details: RwLock<std::collections::HashMap<u64, report::SessionDetails>>,
    /// vhost-user-scsi sockets serving this target (`--lld vhost --op bind --params
    /// socket=PATH`): each is one virtio-scsi controller of one virtual machine.
    vhost_sockets: RwLock<Vec<String>>,
}

impl Target {
    /// A target with no LUNs but LUN 0, no ACL rules (nobody may log in until one is bound),
    /// state ready.
    pub fn new(tid: u32, name: &str) -> Self {
        Self::with_system_state(tid, name, Arc::new(AtomicBool::new(true)))
    }

    fn with_system_state(tid: u32, name: &str, system_ready: Arc<AtomicBool>) -> Self {
        Self::in_registry(tid, name, system_ready, LuDirectory::new(), None, &[1])
    }

    /// A target of a registry: its LUs join the daemon-wide `lus` directory (so EXTENDED
    /// COPY reaches the LUs of every target), persistent reservations with APTPL go under
    /// `state_dir`, and each of the daemon's portal group tags is one of its target port
    /// groups.
    fn in_registry(
        tid: u32,
        name: &str,
        system_ready: Arc<AtomicBool>,
        lus: Arc<LuDirectory>,
        state_dir: Option<PathBuf>,
        tpgts: &[u16],
    ) -> Self {
        let scsi = ScsiTarget::build(name, lus, state_dir);
        scsi.set_port_groups(tpgts);
        Self {
            tid,
            name: name.to_string(),
            scsi: Arc::new(scsi),
            sessions: RwLock::new(Vec::new()),
            acl: RwLock::new(Acl::default()),
            params: RwLock::new(Vec::new()),
            ready: AtomicBool::new(true),
            deleted: AtomicBool::new(false),
            system_ready,
            auth: RwLock::new(AuthBinding::default()),
            chap_algorithms: RwLock::new(None),
            max_sessions: AtomicU32::new(0),
            changed: AtomicU64::new(0),
            details: RwLock::new(std::collections::HashMap::new()),
            vhost_sockets: RwLock::new(Vec::new()),
        }
    }

    /// The vhost-user-scsi socket paths bound to this target.
    pub fn vhost_sockets(&self) -> Vec<String> {
        self.vhost_sockets.read().clone()
    }

    /// The registry's change count when a control request last changed this target.
    pub fn changed(&self) -> u64 {
        self.changed.load(Ordering::Acquire)
    }

    /// The CHAP accounts bound to this target.
    pub fn auth(&self) -> AuthBinding {
        self.auth.read().clone()
    }

    /// The CHAP algorithms this target allows, if set for it (else the system's apply).
    pub fn chap_algorithms(&self) -> Option<Vec<ChapAlgorithm>> {
        self.chap_algorithms.read().clone()
    }

    /// Most sessions at once; 0 = no limit.
    pub fn max_sessions(&self) -> u32 {
        self.max_sessions.load(Ordering::Acquire)
    }

    /// Whether an initiator at `addr` named `initiator_name` may log in: its address matches
    /// a bound `-I` rule or its name a bound `-Q` rule. As in tgt, a target with no rules
    /// admits nobody; `--op bind -I ALL` admits everyone.
    pub fn allows(&self, addr: IpAddr, initiator_name: &str) -> bool {
        self.acl.read().allows(addr, initiator_name)
    }

    /// The bound ACL rules.
    pub fn acl(&self) -> Acl {
        self.acl.read().clone()
    }

    /// Per-target iSCSI parameter overrides set with `--op update --mode target
    /// --name KEY --value V`, keys in RFC 7143 spelling, values normalized
    /// (numbers in decimal, `Yes`/`No`, `CRC32C,None`). Also tgt's `MaxQueueCmd`,
    /// `nop_interval` and `nop_count`.
    pub fn iscsi_params(&self) -> Vec<(String, String)> {
        self.params.read().clone()
    }

    /// One override by key (case-insensitive).
    pub fn iscsi_param(&self, key: &str) -> Option<String> {
        self.params
            .read()
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.clone())
    }

    /// Where logins to this target are sent instead (RFC 7143 §11.13.5, status class 1),
    /// as set with `--name RedirectAddress` (and `RedirectPort`, `RedirectReason`):
    /// whether the move is permanent (01/02, else temporary 01/01) and the TargetAddress
    /// value (RFC 7143 §13.8: `address[:port][,tpgt]`, IPv6 in brackets).
    pub fn redirect(&self) -> Option<(bool, String)> {
        // `None` (there is no unset) turns the redirection off.
        let addr = self
            .iscsi_param("RedirectAddress")
            .filter(|a| !a.is_empty() && !a.eq_ignore_ascii_case("none"))?;
        let addr = match addr.parse::<std::net::Ipv6Addr>() {
            Ok(v6) => format!("[{v6}]"),
            Err(_) => addr,
        };
        let target_address = match self.iscsi_param("RedirectPort") {
            Some(port) => format!("{addr}:{port}"),
            None => addr,
        };
        let permanent = self
            .iscsi_param("RedirectReason")
            .is_some_and(|r| r.eq_ignore_ascii_case("Permanent"));
        Some((permanent, target_address))
    }

    /// Whether the target accepts logins: its state is ready and so is the system's.
    pub fn online(&self) -> bool {
        self.ready.load(Ordering::Acquire) && self.system_ready.load(Ordering::Acquire)
    }

    pub fn state(&self) -> TargetState {
        if self.ready.load(Ordering::Acquire) {
            TargetState::Ready
        } else {
            TargetState::Offline
        }
    }

    /// Registers a logged-in session. If the target has meanwhile been deleted, the
    /// session's `close` is called at once instead.
    pub fn add_session(&self, info: SessionInfo) {
        let mut sessions = self.sessions.write();
        if self.deleted.load(Ordering::Acquire) {
            drop(sessions);
            (info.close)();
            return;
        }
        sessions.retain(|s| s.sid != info.sid);
        sessions.push(info);
    }

    pub fn remove_session(&self, sid: u64) {
        self.sessions.write().retain(|s| s.sid != sid);
        self.details.write().remove(&sid);
    }

    /// Adds a connection to a registered session (multiple connections per session).
    pub fn add_connection(&self, sid: u64, conn: ConnInfo) {
        if let Some(s) = self.sessions.write().iter_mut().find(|s| s.sid == sid) {
            s.connections.retain(|c| c.cid != conn.cid);
            s.connections.push(conn);
        }
    }

    pub fn remove_connection(&self, sid: u64, cid: u16) {
        if let Some(s) = self.sessions.write().iter_mut().find(|s| s.sid == sid) {
            s.connections.retain(|c| c.cid != cid);
        }
    }

    /// A snapshot of the registered sessions.
    pub fn sessions(&self) -> Vec<SessionInfo> {
        self.sessions.read().clone()
    }

    pub fn session_count(&self) -> usize {
        self.sessions.read().len()
    }

    /// Marks the target deleted and takes its sessions, so they can be closed outside
    /// the lock. Refuses (returning the count) when sessions exist and `force` is false.
    fn retire(&self, force: bool) -> Result<Vec<SessionInfo>, usize> {
        let mut sessions = self.sessions.write();
        if !force && !sessions.is_empty() {
            return Err(sessions.len());
        }
        self.deleted.store(true, Ordering::Release);
        Ok(std::mem::take(&mut *sessions))
    }
}

/// Default for `auth_fail_limit`.
pub const DEFAULT_AUTH_FAIL_LIMIT: u32 = 5;

type Hook = Box<dyn Fn() + Send + Sync>;
type DebugHook = Box<dyn Fn(bool) + Send + Sync>;

/// The running configuration.
pub struct Registry {
    /// Sorted by tid.
    targets: RwLock<Vec<Arc<Target>>>,
    /// Listening portals with their target portal group tags.
    portals: RwLock<Vec<(SocketAddr, u16)>>,
    /// The transports built into the daemon, as `--lld` names them, with their state.
    llds: RwLock<Vec<Lld>>,
    /// rtgtd's state directory (`--state-dir`): where LUs keep APTPL reservations.
    state_dir: RwLock<Option<PathBuf>>,
    /// The iSNS server rtgtd registers with (`--isns`), for the saved configuration.
    isns: RwLock<Option<String>>,
    /// What `rtgtd --version` says (version and cargo features), for `--mode system
    /// --op show` and `rtgtadm --version`.
    daemon_version: RwLock<Option<String>>,
    system_ready: Arc<AtomicBool>,
    /// Every LU of every target, by designator (the copy manager's view).
    lu_directory: Arc<LuDirectory>,
    debug: AtomicBool,
    /// CHAP accounts (`--mode account`).
    accounts: RwLock<Accounts>,
    /// Accounts bound to discovery sessions (`--op bind --mode account --tid 0`).
    discovery_auth: RwLock<AuthBinding>,
    /// CHAP algorithms allowed where a target sets none (`--mode sys --name chap_algorithms`).
    chap_algorithms: RwLock<Vec<ChapAlgorithm>>,
    /// Most normal sessions at once over all targets; 0 = no limit.
    max_sessions: AtomicU32,
    /// Failed authentications from one address within a minute before further logins from
    /// it are refused for a while; 0 = no limit.
    auth_fail_limit: AtomicU32,
    shutdown_requested: AtomicBool,
    shutdown_hook: RwLock<Option<Hook>>,
    debug_hook: RwLock<Option<DebugHook>>,
    /// Control requests that changed something, counted; see [`Registry::changes`].
    changes: AtomicU64,
    /// The change count of the last change not confined to one target (accounts,
    /// system settings, portals).
    global_changed: AtomicU64,
    /// What `config apply` remembers between runs (parsed sections, targets in step).
    config_cache: parking_lot::Mutex<config::ApplyCache>,
    /// Called after every successful change (rtgtd `--save-config`, iSNS).
    change_hooks: RwLock<Vec<Hook>>,
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            targets: RwLock::new(Vec::new()),
            portals: RwLock::new(Vec::new()),
            llds: RwLock::new(vec![Lld {
                name: "iscsi".into(),
                state: "ready".into(),
            }]),
            state_dir: RwLock::new(None),
            isns: RwLock::new(None),
            daemon_version: RwLock::new(None),
            system_ready: Arc::new(AtomicBool::new(true)),
            lu_directory: LuDirectory::new(),
            debug: AtomicBool::new(false),
            accounts: RwLock::new(Accounts::default()),
            discovery_auth: RwLock::new(AuthBinding::default()),
            chap_algorithms: RwLock::new(ChapAlgorithm::ALL.to_vec()),
            max_sessions: AtomicU32::new(0),
            auth_fail_limit: AtomicU32::new(DEFAULT_AUTH_FAIL_LIMIT),
            shutdown_requested: AtomicBool::new(false),
            shutdown_hook: RwLock::new(None),
            debug_hook: RwLock::new(None),
            changes: AtomicU64::new(0),
            global_changed: AtomicU64::new(0),
            config_cache: parking_lot::Mutex::new(config::ApplyCache::default()),
            change_hooks: RwLock::new(Vec::new()),
        }
    }
}

impl Registry {
    pub fn new() -> Arc<Self> {
        let reg = Arc::new(Self::default());
        // A media changer reaches the tape drives of any target by (tid, LUN): the SCSI
        // core asks the registry through this hook (weak, so no cycle).
        let weak = Arc::downgrade(&reg);
        reg.lu_directory
            .set_drive_resolver(Arc::new(move |tid, lun| {
                weak.upgrade()?.target_by_tid(tid)?.scsi.drive_handle(lun)
            }));
        // An initiator's MOVE MEDIUM changes what a saved configuration keeps.
        let weak = Arc::downgrade(&reg);
        reg.lu_directory.set_state_hook(Arc::new(move |name| {
            if let Some(reg) = weak.upgrade() {
                reg.note_state_change(name);
            }
        }));
        reg
    }

    /// The transports built into the daemon (tgt's LLDs), in `show` order: what
    /// `--lld NAME` may name. Without a call, iscsi alone.
    pub fn set_llds(&self, llds: Vec<Lld>) {
        *self.llds.write() = llds;
    }

    pub fn llds(&self) -> Vec<Lld> {
        self.llds.read().clone()
    }

    /// The listening portals, all in portal group 1.
    pub fn set_portals(&self, portals: Vec<SocketAddr>) {
        self.set_portal_groups(portals.into_iter().map(|a| (a, 1)).collect());
    }

    /// The listening portals with their target portal group tags, for SendTargets,
    /// `show` and ALUA: each tag is a target port group of every target.
    pub fn set_portal_groups(&self, portals: Vec<(SocketAddr, u16)>) {
        *self.portals.write() = portals;
        let tpgts = self.tpgts();
        for t in self.targets() {
            t.scsi.set_port_groups(&tpgts);
        }
    }

    pub fn portals(&self) -> Vec<SocketAddr> {
        self.portals.read().iter().map(|p| p.0).collect()
    }

    pub fn portal_groups(&self) -> Vec<(SocketAddr, u16)> {
        self.portals.read().clone()
    }

    /// The distinct portal group tags, ascending (1 when no portal is set).
    pub fn tpgts(&self) -> Vec<u16> {
        let mut v: Vec<u16> = self.portals.read().iter().map(|p| p.1).collect();
        if v.is_empty() {
            v.push(1);
        }
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Where targets created from now on keep state that outlives the daemon
    /// (persistent reservations with APTPL).
    pub fn set_state_dir(&self, dir: Option<PathBuf>) {
        *self.state_dir.write() = dir;
    }

    /// The iSNS server rtgtd registers with, as a configuration would name it.
    pub fn set_isns(&self, server: Option<String>) {
        *self.isns.write() = server;
    }

    /// rtgtd's version line (`0.1.0 (features: rbd)`), shown by `--mode system --op show`.
    pub fn set_daemon_version(&self, version: String) {
        *self.daemon_version.write() = Some(version);
    }

    pub fn daemon_version(&self) -> Option<String> {
        self.daemon_version.read().clone()
    }

    pub fn target_by_name(&self, name: &str) -> Option<Arc<Target>> {
        self.targets
            .read()
            .iter()
            .find(|t| t.name.eq_ignore_ascii_case(name))
            .cloned()
    }

    pub fn target_by_tid(&self, tid: u32) -> Option<Arc<Target>> {
        self.targets.read().iter().find(|t| t.tid == tid).cloned()
    }

    /// All targets, in tid order.
    pub fn targets(&self) -> Vec<Arc<Target>> {
        self.targets.read().clone()
    }

    /// Whether the system state is ready (`--mode sys --op update --name State`); when
    /// offline no target accepts logins.
    pub fn system_ready(&self) -> bool {
        self.system_ready.load(Ordering::Acquire)
    }

    /// The debug flag (`rtgtd -d`, `--mode sys --op update --name debug --value on`).
    pub fn debug(&self) -> bool {
        self.debug.load(Ordering::Acquire)
    }

    /// Sets the debug flag without calling the debug hook (for the daemon's `-d`).
    pub fn set_debug(&self, on: bool) {
        self.debug.store(on, Ordering::Release);
    }

    /// Called with the new value when rtgtadm changes the debug flag, so the daemon can
    /// change its log filter.
    pub fn set_debug_hook(&self, hook: Box<dyn Fn(bool) + Send + Sync>) {
        *self.debug_hook.write() = Some(hook);
    }

    /// Called once when rtgtadm asks the daemon to stop (`--op delete --mode system`),
    /// from the thread handling the request and before its response is sent: the hook
    /// should only signal (send on a channel, notify a task), and the daemon should send
    /// the response, then exit.
    pub fn set_shutdown_hook(&self, hook: Box<dyn Fn() + Send + Sync>) {
        *self.shutdown_hook.write() = Some(hook);
    }

    /// Whether `--op delete --mode system` has been accepted.
    pub fn shutdown_requested(&self) -> bool {
        self.shutdown_requested.load(Ordering::Acquire)
    }

    /// The CHAP settings for a login to `t`: `None` when no incoming account is bound to
    /// it (no authentication required).
    pub fn chap_for_target(&self, t: &Target) -> Option<ChapConfig> {
        let algs = t
            .chap_algorithms()
            .unwrap_or_else(|| self.chap_algorithms.read().clone());
        t.auth.read().chap_config(&self.accounts.read(), &algs)
    }

    /// The CHAP settings for a discovery session (accounts bound to tid 0).
    pub fn chap_for_discovery(&self) -> Option<ChapConfig> {
        let algs = self.chap_algorithms.read().clone();
        self.discovery_auth
            .read()
            .chap_config(&self.accounts.read(), &algs)
    }

    /// The CHAP algorithms allowed where a target sets none.
    pub fn chap_algorithms(&self) -> Vec<ChapAlgorithm> {
        self.chap_algorithms.read().clone()
    }

    /// Most normal sessions at once over all targets; 0 = no limit.
    pub fn max_sessions(&self) -> u32 {
        self.max_sessions.load(Ordering::Acquire)
    }

    /// Normal sessions logged in now, over all targets.
    pub fn session_total(&self) -> usize {
        self.targets.read().iter().map(|t| t.session_count()).sum()
    }

    /// Failed authentications per address and minute before that address is refused for a
    /// while; 0 = unlimited.
    pub fn auth_fail_limit(&self) -> u32 {
        self.auth_fail_limit.load(Ordering::Acquire)
    }

    /// Executes one control request.
    pub fn handle(&self, req: control::Request) -> control::Response {
        if req.mode == "config" {
            return config::handle(self, &req);
        }
        if req.mode == "report" {
            return report::handle(self, &req);
        }
        let resp = match mgmt::dispatch(self, &req) {
            Ok(message) => control::Response::ok(message),
            Err(e) => e.into(),
        };
        if resp.code == 0 && changes_something(&req) {
            self.note_change(&req);
        }
        resp
    }

    /// How many control requests have changed the configuration so far. A target
    /// remembers the count of its last change ([`Target::changed`]), so `config apply`
    /// can tell that a target is as it left it without reading it back.
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::Acquire)
    }

    /// The change count of the last change that may concern every target.
    pub fn global_changed(&self) -> u64 {
        self.global_changed.load(Ordering::Acquire)
    }

    fn note_change(&self, req: &control::Request) {
        let n = self.changes.fetch_add(1, Ordering::AcqRel) + 1;
        let mode = control::canonical_mode(&req.mode).unwrap_or("");
        let target = match (mode, req.tid) {
            ("target" | "logicalunit" | "account" | "connection", Some(tid)) if tid != 0 => {
                self.target_by_tid(tid)
            }
            _ => None,
        };
        match target {
            Some(t) => t.changed.store(n, Ordering::Release),
            // A deleted target leaves nothing behind to be out of step.
            None if mode == "target" && req.tid.is_some() => {}
            None => self.global_changed.store(n, Ordering::Release),
        }
        for hook in self.change_hooks.read().iter() {
            hook();
        }
    }

    /// State a saved configuration keeps was changed by an initiator on target `name`
    /// (not by a request): the target is no longer as `config apply` last left it, and
    /// `--save-config` writes it again.
    fn note_state_change(&self, name: &str) {
        let n = self.changes.fetch_add(1, Ordering::AcqRel) + 1;
        if let Some(t) = self.target_by_name(name) {
            t.changed.store(n, Ordering::Release);
        }
        // The drives moved into or out of may be another target's.
        self.global_changed.store(n, Ordering::Release);
        for hook in self.change_hooks.read().iter() {
            hook();
        }
    }

    /// Adds a hook called (from the thread that made it) after every successful change
    /// to the configuration, so the daemon can save it (`rtgtd --save-config`) or
    /// register it again (iSNS). A hook should only signal.
    pub fn add_change_hook(&self, hook: Box<dyn Fn() + Send + Sync>) {
        self.change_hooks.write().push(hook);
    }
}

/// Whether a successful `req` may have changed the configuration (anything but `show`).
fn changes_something(req: &control::Request) -> bool {
    !matches!(control::canonical_op(&req.op), Some("show") | None)
}

/// Parses one JSON [`control::Request`] line, executes it and returns the JSON
/// [`control::Response`] (without a trailing newline: the server adds it). A malformed
/// line gets an error response; a panic inside the request becomes an error response too.
pub fn handle_line(registry: &Registry, line: &str) -> String {
    let resp = match serde_json::from_str::<control::Request>(line.trim()) {
        Err(e) => control::Response::error(
            errno::EINVAL,
            format!("malformed control request: {e} (rtgtadm and rtgtd versions differ?)"),
        ),
        Ok(req) => {
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| registry.handle(req))) {
                Ok(r) => r,
                Err(_) => control::Response::error(
                    errno::EIO,
                    "internal error while handling the request (see rtgtd's log)",
                ),
            }
        }
    };
    serde_json::to_string(&resp).unwrap_or_else(|_| {
        // Serializing two plain fields cannot fail; keep the promise of a valid line anyway.
        r#"{"code":5,"message":"internal error: could not encode the response"}"#.to_string()
    })
}

#[cfg(test)]
mod tests;
