//! The RDMA connection manager's side: listeners on the `--iser` portals (RDMA_PS_TCP,
//! so port 3260 of the TCP port space, RFC 7145 §5.1), and one event channel whose
//! events accept connections and tell them of disconnects.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::Arc;

use anyhow::{bail, Result};
use parking_lot::Mutex;
use rtgt_target::Registry;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::connection::{Conn, Timing};
use super::verbs::*;
use crate::daemon::{Daemon, Reactors};
use crate::transport::Transport;

/// The event channel and the listening ids (raw C objects, used from one task).
pub(super) struct Listener {
    channel: *mut rdma_event_channel,
    ids: Vec<(*mut rdma_cm_id, SocketAddr)>,
    timing: Timing,
    /// Each connection's registered buffer pool, bytes (0: registration per command).
    pool: usize,
}

// SAFETY: the channel and ids are only used by the task `start` spawns (and freed
// never: they live as long as the daemon).
unsafe impl Send for Listener {}

/// A connection's disconnect signal, by its CM id: the CM reports the peer's
/// disconnect (and the end of time-wait) on the listener's channel.
pub(super) type Gone = Arc<Mutex<HashMap<usize, Arc<Notify>>>>;

impl Listener {
    pub(super) fn open(portals: &[SocketAddr], timing: Timing, pool: usize) -> Result<Listener> {
        // SAFETY: plain librdmacm calls; every pointer passed is valid or checked.
        unsafe {
            let channel = rdma_create_event_channel();
            if channel.is_null() {
                return Err(last_error("rdma_create_event_channel"));
            }
            let mut l = Listener {
                channel,
                ids: Vec::new(),
                timing,
                pool,
            };
            for &p in portals {
                let mut id = std::ptr::null_mut();
                if rdma_create_id(
                    channel,
                    &mut id,
                    std::ptr::null_mut(),
                    rdma_port_space::RDMA_PS_TCP,
                ) != 0
                {
                    return Err(last_error("rdma_create_id"));
                }
                let mut sa = to_sockaddr(p);
                if rdma_bind_addr(id, &mut sa as *mut _ as *mut _) != 0 {
                    return Err(last_error(&format!("rdma_bind_addr {p}")));
                }
                if (*id).verbs.is_null() && !p.ip().is_unspecified() {
                    bail!("{p}: no RDMA device has this address");
                }
                if rdma_listen(id, 128) != 0 {
                    return Err(last_error(&format!("rdma_listen {p}")));
                }
                l.ids.push((id, p));
            }
            set_nonblocking((*channel).fd)?;
            Ok(l)
        }
    }
}

impl Transport for Listener {
    fn register(&self, _registry: &Registry) {}

    fn start(
        self: Box<Self>,
        daemon: &Arc<Daemon>,
        reactors: &Arc<Reactors>,
    ) -> Result<Vec<JoinHandle<()>>> {
        for (_, p) in &self.ids {
            tracing::info!(
                pool_mb = self.pool >> 20,
                "iSER portal {p} (RDMA CM), a registered buffer pool per connection"
            );
        }
        // SAFETY: the channel (and its fd) lives as long as the daemon.
        let fd = unsafe {
            AsyncFd::register_with_interest((*self.channel).fd as RawFd, Interest::READABLE)
        }
        .map_err(|_| anyhow::anyhow!("cannot wait on the RDMA CM event channel"))?;
        let (daemon, reactors) = (daemon.clone(), reactors.clone());
        let gone: Gone = Arc::default();
        let task = tokio::spawn(async move {
            let l = self;
            loop {
                let Ok(mut ready) = fd.readable().await else {
                    return;
                };
                ready.clear_ready();
                // SAFETY: the channel is non-blocking; each event is acknowledged once,
                // after its fields are read.
                unsafe {
                    loop {
                        let mut ev = std::ptr::null_mut();
                        if rdma_get_cm_event(l.channel, &mut ev) != 0 {
                            break;
                        }
                        let refused = l.event(&*ev, &daemon, &reactors, &gone);
                        rdma_ack_cm_event(ev);
                        if let Some(id) = refused {
                            // Only once its event is acknowledged (else this blocks).
                            rdma_destroy_id(id);
                        }
                    }
                }
            }
        });
        Ok(vec![task])
    }
}

impl Listener {
    /// Takes one event; Some(id): a refused connection's id, to destroy.
    ///
    /// # Safety
    /// `ev` is a live event of this channel.
    unsafe fn event(
        &self,
        ev: &rdma_cm_event,
        daemon: &Arc<Daemon>,
        reactors: &Reactors,
        gone: &Gone,
    ) -> Option<*mut rdma_cm_id> {
        use rdma_cm_event_type::*;
        let id = ev.id;
        tracing::debug!(
            event = ev.event,
            status = ev.status,
            id = id as usize,
            "iSER: CM event"
        );
        match ev.event {
            RDMA_CM_EVENT_CONNECT_REQUEST => {
                let param = ev.param.conn;
                let peer = from_sockaddr(rdma_get_peer_addr(&*id));
                let t0 = std::time::Instant::now();
                let accepted = Conn::accept(id, &param, self.pool);
                // The QP number too: the IB CM tells connections apart by it (a stale
                // connection is one whose remote QPN an older one still holds).
                let qpn = if (*id).qp.is_null() {
                    0
                } else {
                    (*(*id).qp).qp_num
                };
                tracing::debug!(%peer, id = id as usize, qpn, took = ?t0.elapsed(), ok = accepted.is_ok(), "iSER: accept");
                match accepted {
                    Ok(conn) => {
                        let signal = Arc::new(Notify::new());
                        gone.lock().insert(id as usize, signal.clone());
                        let (daemon, gone) = (daemon.clone(), gone.clone());
                        reactors.spawn(conn.serve(daemon, signal, gone, self.timing));
                    }
                    Err(e) => {
                        tracing::warn!(%peer, "iSER: refusing a connection: {e:#}");
                        rdma_reject(id, std::ptr::null(), 0);
                        return Some(id);
                    }
                }
            }
            RDMA_CM_EVENT_DISCONNECTED
            | RDMA_CM_EVENT_TIMEWAIT_EXIT
            | RDMA_CM_EVENT_DEVICE_REMOVAL
            | RDMA_CM_EVENT_CONNECT_ERROR
            | RDMA_CM_EVENT_UNREACHABLE
            | RDMA_CM_EVENT_REJECTED => {
                if let Some(s) = gone.lock().get(&(id as usize)) {
                    s.notify_one();
                }
            }
            _ => {}
        }
        None
    }
}
