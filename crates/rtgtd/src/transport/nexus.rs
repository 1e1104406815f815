//! A logged-in I_T nexus as the daemon keeps it, whatever the transport: registered with
//! its target (for `show`, the session limits and a forced close), with the SCSI core
//! (the hook that tells it of tasks aborted from another nexus), and with the daemon
//! (reinstatement, graceful stop); ended once, on logout, reset or loss.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rtgt_scsi::stats::IoCounters;
use rtgt_scsi::ItNexus;
use rtgt_target::{SessionInfo, Target};
use tokio::sync::{mpsc, watch, Notify};

use super::exec::Completion;
use crate::daemon::{Daemon, SessionHandle, SessionKey};

/// Which session limit a new session would pass (`max_sessions` of the target or of
/// the daemon), if any. `existing`: the login reinstates a session or adds a connection
/// to one, which makes no new session, so a full target still lets an initiator recover
/// its own session after a network failure.
pub fn limit_reached(daemon: &Daemon, t: &Target, existing: bool) -> Option<(&'static str, u32)> {
    if existing {
        return None;
    }
    let max = t.max_sessions();
    if max != 0 && t.session_count() >= max as usize {
        return Some(("target", max));
    }
    let max = daemon.registry.max_sessions();
    if max != 0 && daemon.registry.session_total() >= max as usize {
        return Some(("daemon", max));
    }
    None
}

/// What a transport knows of a session it has just logged in.
pub struct NewSession {
    pub target: Arc<Target>,
    /// Its I_T nexus, with the port names the transport gives them.
    pub it: ItNexus,
    /// For `show`; `close` is set by [`Nexus::attach`].
    pub info: SessionInfo,
    /// Negotiated keys per connection id, for `rtgtadm sessions`.
    pub keys: HashMap<u16, Vec<(String, String)>>,
    /// Who the initiator is, for log lines (an address, a socket path).
    pub peer: Arc<str>,
}

pub struct Nexus {
    daemon: Arc<Daemon>,
    target: Arc<Target>,
    it: Arc<ItNexus>,
    key: SessionKey,
    stats: Arc<IoCounters>,
    peer: Arc<str>,
    ended: bool,
    closed_tx: watch::Sender<bool>,
}

impl Nexus {
    /// Registers a session. A live session of the same initiator port on the same target
    /// is closed first (iSCSI session reinstatement, RFC 7143 §6.3.5: the same I_T
    /// nexus logging in again). Tasks aborted from another nexus arrive on
    /// `completions`; `close` is notified to end the session from outside (a forced
    /// target delete, `rtgtadm session close`, a stop).
    pub async fn attach(
        daemon: &Arc<Daemon>,
        s: NewSession,
        completions: mpsc::UnboundedSender<Completion>,
        close: Arc<Notify>,
    ) -> Nexus {
        let NewSession {
            target,
            it,
            mut info,
            keys,
            peer,
        } = s;
        let sid = it.id;
        let (closed_tx, closed_rx) = watch::channel(false);
        let key: SessionKey = (target.name.clone(), it.initiator_port.clone());
        let old = daemon.sessions.lock().insert(
            key.clone(),
            SessionHandle {
                id: sid,
                close: close.clone(),
                closed: closed_rx,
            },
        );
        if let Some(mut old) = old {
            tracing::info!(initiator = %it.initiator_name, "reinstating session");
            old.close.notify_one();
            let _ = tokio::time::timeout(Duration::from_secs(5), old.closed.wait_for(|c| *c)).await;
        }
        let it = Arc::new(it);
        target.scsi.attach_nexus(
            it.clone(),
            Arc::new(move |a| {
                let _ = completions.send(Completion::Abort(a));
            }),
        );
        info.close = Arc::new(move || close.notify_one());
        target.add_session(info);
        // This session's command counters (rtgtadm stats, --metrics): atomics, no lock.
        let stats = Arc::new(IoCounters::default());
        target.set_session_details(
            sid,
            rtgt_target::report::SessionDetails {
                stats: stats.clone(),
                keys,
            },
        );
        Nexus {
            daemon: daemon.clone(),
            target,
            it,
            key,
            stats,
            peer,
            ended: false,
            closed_tx,
        }
    }

    pub fn target(&self) -> &Arc<Target> {
        &self.target
    }

    pub fn it(&self) -> &Arc<ItNexus> {
        &self.it
    }

    pub fn stats(&self) -> &Arc<IoCounters> {
        &self.stats
    }

    pub fn peer(&self) -> &Arc<str> {
        &self.peer
    }

    /// The I_T nexus is lost (SAM-5 6.3.4: reservations, prevention, unit attentions
    /// end): once, here or when dropped. A transport ends it before the session's last
    /// answer goes out, so a command the initiator sends on another session once it
    /// has that answer never meets what this nexus held. Returns, when it ended it now,
    /// what to wait for before that answer (a release other gateways must hear of).
    pub fn end(&mut self) -> Option<rtgt_scsi::tasks::TaskWait> {
        if std::mem::replace(&mut self.ended, true) {
            return None;
        }
        Some(self.target.scsi.nexus_loss(&self.it))
    }
}

impl Drop for Nexus {
    fn drop(&mut self) {
        self.target.remove_session(self.it.id);
        let _ = self.end();
        let mut s = self.daemon.sessions.lock();
        if s.get(&self.key).is_some_and(|h| h.id == self.it.id) {
            s.remove(&self.key);
        }
        drop(s);
        let _ = self.closed_tx.send(true);
    }
}
