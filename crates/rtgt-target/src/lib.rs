//! One registry, one truth: the running configuration (targets, LUNs, ACLs, sessions) and
//! the control protocol that rtgtadm speaks to change and show it.
//! (Skeleton: the registry/rtgtadm work fills this in behind the same API.)

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use parking_lot::RwLock;
use rtgt_scsi::ScsiTarget;

pub mod control;

/// A connection of a session, as `show` lists it.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub cid: u16,
    pub peer: SocketAddr,
    pub local: SocketAddr,
}

/// A logged-in normal session, registered by the transport for `show` and forced close.
pub struct SessionInfo {
    pub sid: u64,
    pub initiator_name: String,
    pub initiator_alias: Option<String>,
    pub isid: [u8; 6],
    pub tsih: u16,
    pub connections: Vec<ConnInfo>,
    /// Closes the session (used by a forced target delete).
    pub close: Arc<dyn Fn() + Send + Sync>,
}

pub struct Target {
    pub tid: u32,
    pub name: String,
    pub scsi: Arc<ScsiTarget>,
    sessions: RwLock<Vec<SessionInfo>>,
}

impl Target {
    pub fn new(tid: u32, name: &str) -> Self {
        Self {
            tid,
            name: name.to_string(),
            scsi: Arc::new(ScsiTarget::new(name)),
            sessions: RwLock::new(Vec::new()),
        }
    }

    /// Whether an initiator at `addr` named `initiator_name` may log in (bound ACLs).
    pub fn allows(&self, _addr: IpAddr, _initiator_name: &str) -> bool {
        true
    }

    /// Per-target iSCSI parameter overrides set with `--op update --mode target
    /// --name KEY --value V`.
    pub fn iscsi_params(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    /// Whether the target accepts logins (`state` ready vs offline).
    pub fn online(&self) -> bool {
        true
    }

    pub fn add_session(&self, info: SessionInfo) {
        self.sessions.write().push(info);
    }

    pub fn remove_session(&self, sid: u64) {
        self.sessions.write().retain(|s| s.sid != sid);
    }
}

#[derive(Default)]
pub struct Registry {
    targets: RwLock<Vec<Arc<Target>>>,
    portals: RwLock<Vec<SocketAddr>>,
}

impl Registry {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The listening portals, for SendTargets and `show`.
    pub fn set_portals(&self, portals: Vec<SocketAddr>) {
        *self.portals.write() = portals;
    }

    pub fn portals(&self) -> Vec<SocketAddr> {
        self.portals.read().clone()
    }

    pub fn target_by_name(&self, name: &str) -> Option<Arc<Target>> {
        self.targets.read().iter().find(|t| t.name == name).cloned()
    }

    pub fn targets(&self) -> Vec<Arc<Target>> {
        self.targets.read().clone()
    }

    /// Executes one control request.
    pub fn handle(&self, _req: control::Request) -> control::Response {
        control::Response::error(22, "not implemented")
    }
}
