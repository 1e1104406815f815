//! A graceful stop (SIGTERM, `--op delete --mode sys`): no new connections; every
//! logged-in connection gets an Asynchronous Message asking its initiator to log out
//! (RFC 7143 §11.9.1, AsyncEvent 1, Parameter3 = the seconds it has); commands in
//! flight finish and are answered; then what is left is closed, each connection
//! waiting (bounded) for its commands to end, every backing store is flushed, and
//! the daemon exits. Every wait is bounded, so a stop always ends.

use std::time::{Duration, Instant};

use crate::daemon::Daemon;

/// How long a closed connection waits for its commands in flight to end.
pub const DRAIN: Duration = Duration::from_secs(10);

async fn wait_sessions_gone(daemon: &Daemon, until: Instant) -> bool {
    loop {
        if daemon.sessions.lock().is_empty() {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn graceful(daemon: &Daemon, accepts: Vec<tokio::task::JoinHandle<()>>) {
    // Listeners close: new connections are refused. `abort` only asks; the listener is
    // closed when its task is dropped, so wait for that before any initiator is told to
    // log out (its connection may live on another reactor and answer first: a test
    // caught a connect succeeding after the Async Message).
    for a in &accepts {
        a.abort();
    }
    for a in accepts {
        let _ = a.await;
    }
    let secs = daemon.stop_timeout;
    let n = daemon.sessions.lock().len();
    if n > 0 {
        tracing::info!("stopping: asking {n} session(s) to log out within {secs} s");
    }
    let _ = daemon.stop.send(true);
    let until = Instant::now() + Duration::from_secs(u64::from(secs));
    if !wait_sessions_gone(daemon, until).await {
        let left: Vec<_> = daemon
            .sessions
            .lock()
            .values()
            .map(|h| h.close.clone())
            .collect();
        tracing::info!(
            "stopping: {} session(s) did not log out; closing them",
            left.len()
        );
        for c in left {
            c.notify_one();
        }
        wait_sessions_gone(daemon, Instant::now() + DRAIN + Duration::from_secs(1)).await;
    }
    // Durable before exit: a write answered GOOD with the write cache on is in the
    // page cache until flushed.
    for t in daemon.registry.targets() {
        for (lun, r) in t.scsi.flush_stores().await {
            if let Err(e) = r {
                tracing::error!(tid = t.tid, lun, "stopping: flush failed: {e}");
            }
        }
    }
    tracing::info!("stopped");
}
