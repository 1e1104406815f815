//! The sockets: the registry says which path serves which target; a thread per path
//! listens and serves one QEMU at a time, again after each disconnect (QEMU's
//! `reconnect=` finds it there after a restart of either side).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use vhost::vhost_user::Listener;
use vhost_user_backend::VhostUserDaemon;
use vm_memory::{GuestMemoryAtomic, GuestMemoryMmap};

use super::backend::ScsiBackend;
use crate::daemon::{Daemon, Reactors};

/// A listening path and how to stop it.
struct Bound {
    tid: u32,
    stop: Arc<AtomicBool>,
}

/// Follows the registry: a path bound to a target is listened on, an unbound one closed.
pub fn watch(daemon: Arc<Daemon>, reactors: Arc<Reactors>) -> JoinHandle<()> {
    let changed = Arc::new(Notify::new());
    let c = changed.clone();
    daemon
        .registry
        .add_change_hook(Box::new(move || c.notify_one()));
    // The event queues follow the registry's changes (LUNs added, removed, resized).
    let (changes_tx, changes) = tokio::sync::watch::channel(0u64);
    daemon.registry.add_change_hook(Box::new(move || {
        changes_tx.send_modify(|n| *n += 1);
    }));
    let rt = tokio::runtime::Handle::current();
    tokio::spawn(async move {
        let mut bound: HashMap<String, Bound> = HashMap::new();
        loop {
            let want: HashMap<String, u32> = daemon
                .registry
                .targets()
                .iter()
                .flat_map(|t| t.vhost_sockets().into_iter().map(|p| (p, t.tid)))
                .collect();
            bound.retain(|path, b| {
                let keep = want.get(path) == Some(&b.tid);
                if !keep {
                    b.stop.store(true, Ordering::Release);
                    // Wakes the blocked accept; the thread sees the flag and ends.
                    let _ = std::os::unix::net::UnixStream::connect(path);
                }
                keep
            });
            for (path, tid) in want {
                if bound.contains_key(&path) {
                    continue;
                }
                let stop = Arc::new(AtomicBool::new(false));
                let (d, r, s, p, h, c) = (
                    daemon.clone(),
                    reactors.clone(),
                    stop.clone(),
                    path.clone(),
                    rt.clone(),
                    changes.clone(),
                );
                let spawned = std::thread::Builder::new()
                    .name("rtgt-vhost".into())
                    .spawn(move || serve(d, r, h, c, tid, &p, &s));
                match spawned {
                    Ok(_) => {
                        bound.insert(path, Bound { tid, stop });
                    }
                    Err(e) => tracing::error!(path, "vhost: no thread for the socket: {e}"),
                }
            }
            changed.notified().await;
        }
    })
}

/// Listens on `path` for target `tid`, one frontend at a time, until `stop`.
fn serve(
    daemon: Arc<Daemon>,
    reactors: Arc<Reactors>,
    rt: tokio::runtime::Handle,
    changes: tokio::sync::watch::Receiver<u64>,
    tid: u32,
    path: &str,
    stop: &AtomicBool,
) {
    let mut listener = match Listener::new(path, true) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(path, tid, "vhost: can't listen: {e}");
            return;
        }
    };
    tracing::info!(path, tid, "vhost-user-scsi socket");
    while !stop.load(Ordering::Acquire) {
        let backend = ScsiBackend::new(
            daemon.clone(),
            reactors.clone(),
            rt.clone(),
            tid,
            path,
            changes.clone(),
        );
        let mem = GuestMemoryAtomic::new(GuestMemoryMmap::new());
        let mut d = match VhostUserDaemon::new("rtgt-vhost".into(), backend.clone(), mem) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(path, "vhost: {e}");
                return;
            }
        };
        if let Err(e) = d.start(&mut listener) {
            tracing::warn!(path, "vhost: accept: {e}");
            std::thread::sleep(std::time::Duration::from_millis(100));
            continue;
        }
        if stop.load(Ordering::Acquire) {
            break;
        }
        backend.set_shutdown(d.shutdown_handle());
        tracing::info!(path, tid, "vhost: frontend connected");
        if let Err(e) = d.wait() {
            tracing::info!(path, "vhost: connection ended: {e}");
        }
        for h in d.get_epoll_handlers() {
            h.send_exit_event();
        }
        backend.disconnected();
        tracing::info!(path, tid, "vhost: frontend gone");
        // Stopping: QEMU's reconnect would only find a session that ends at once.
        if *daemon.stop.borrow() {
            break;
        }
    }
    let _ = std::fs::remove_file(path);
}
