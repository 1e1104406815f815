//! Transports: how initiators reach the SCSI core (tgt's low-level drivers, `--lld`).
//!
//! A transport is a [`Transport`], opened from rtgtd's command line through its line in
//! [`BUILT_IN`]. It owns its listeners (iSCSI portals; an RDMA listener; vhost-user
//! sockets), its connections and its protocol; for each session it logs in it builds
//! the I_T nexus with its port names and registers it through [`nexus::Nexus`], and
//! runs the session's commands through [`exec::Commands`]. Those two are what every
//! transport shares: the task set, completions, cross-nexus aborts, task management,
//! per-session counters, session limits, panic containment. The SCSI core knows no
//! transport.
//!
//! Dynamic dispatch ends here, at setup: a transport's connections run its own loop,
//! generic over the command future, with nothing boxed per command.

pub mod exec;
pub mod iscsi;
#[cfg(feature = "rdma")]
pub mod iser;
pub mod liveness;
pub mod nexus;
pub mod vhost;

use std::sync::Arc;

use anyhow::Result;
use rtgt_target::Registry;
use tokio::task::JoinHandle;

use crate::cli::Options;
use crate::daemon::{Daemon, Reactors};

/// A transport opened from the command line, or None when not asked for.
pub type Opened = Option<Box<dyn Transport>>;

/// A transport built into rtgtd: its `--lld` name and how it is opened.
pub struct Registration {
    /// What `rtgtadm --lld NAME`, `show`, stats and metrics call it.
    pub name: &'static str,
    /// Opens the transport from the command line (its own option, as tgtd's `--iscsi`
    /// and `--iser`), before rtgtd detaches, so that a port in use or a missing device is
    /// reported to whoever started it. `None`: not asked for on this command line.
    pub open: fn(&Options) -> Result<Opened>,
}

/// Every transport built into this rtgtd, one line each, in `show` order.
pub const BUILT_IN: &[Registration] = &[
    Registration {
        name: iscsi::NAME,
        open: iscsi::open,
    },
    #[cfg(feature = "rdma")]
    Registration {
        name: iser::NAME,
        open: iser::open,
    },
    Registration {
        name: vhost::NAME,
        open: vhost::open,
    },
];

/// What a transport provides to the daemon (its name is its [`Registration`]'s).
pub trait Transport: Send {
    /// Tells the registry what it listens on, before the configuration is loaded (iSCSI:
    /// its portal groups, which SendTargets, `show` and ALUA's target port groups use).
    fn register(&self, registry: &Registry);

    /// Starts serving, inside the runtime: accepts connections and deals them to the
    /// reactors (`Reactors::spawn`). Each session registers through
    /// [`nexus::Nexus::attach`], whose session limits, reinstatement, forced close and
    /// `show` entry are the daemon's. Returns its listener tasks.
    ///
    /// A graceful stop aborts those tasks first (no new session), then sets
    /// `Daemon::stop`: each session says goodbye its own way (iSCSI: an Asynchronous
    /// Message asking the initiator to log out) and lets its commands finish
    /// ([`exec::Commands::drain`]); sessions still there when the time is up are closed
    /// through their handles.
    fn start(
        self: Box<Self>,
        daemon: &Arc<Daemon>,
        reactors: &Arc<Reactors>,
    ) -> Result<Vec<JoinHandle<()>>>;

    /// Its state in `--mode lld --op show` once opened.
    fn state(&self) -> &'static str {
        "ready"
    }
}

/// A transport asked for that cannot run here (iSER without an RDMA device, or in a
/// build without it): it says so in one log line once logging is up (opening comes
/// before that), and the others serve as before.
pub struct Unavailable(pub String);

impl Transport for Unavailable {
    fn register(&self, _registry: &Registry) {}

    fn start(
        self: Box<Self>,
        _daemon: &Arc<Daemon>,
        _reactors: &Arc<Reactors>,
    ) -> Result<Vec<JoinHandle<()>>> {
        tracing::warn!("{}", self.0);
        Ok(Vec::new())
    }

    fn state(&self) -> &'static str {
        "unavailable"
    }
}

/// Opens every built-in transport the command line asks for. The registry learns which
/// are built in and which of them run (for `--lld`, `show` and metrics).
pub fn open_all(opts: &Options, registry: &Registry) -> Result<Vec<Box<dyn Transport>>> {
    let mut open = Vec::new();
    let mut llds = Vec::new();
    for r in BUILT_IN {
        let t = (r.open)(opts)?;
        llds.push(rtgt_target::Lld {
            name: r.name.into(),
            state: t.as_ref().map_or("not started", |t| t.state()).into(),
        });
        if let Some(t) = t {
            t.register(registry);
            open.push(t);
        }
    }
    #[cfg(not(feature = "rdma"))]
    if opts.iser_portals()?.is_some() {
        open.push(Box::new(Unavailable(
            "--iser: this rtgtd is built without the rdma feature; serving iSCSI over TCP only"
                .into(),
        )) as Box<dyn Transport>);
    }
    registry.set_llds(llds);
    Ok(open)
}
