//! The control socket server: one JSON request line in, one JSON response line out,
//! executed against the registry (the same one the iSCSI side reads).
//!
//! Only root, rtgtd's own user and (with `--control-group`) members of that group may
//! talk to it: the socket's mode says so, and each connection's peer credentials
//! (SO_PEERCRED) are checked again, so a socket made reachable by mistake still refuses.
//! Anything malformed (not JSON, not UTF-8, longer than [`MAX_REQUEST`]) gets an error
//! response, never a crash.

use std::sync::Arc;
use std::time::Duration;

use rtgt_target::Registry;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::sync::Notify;

/// Largest request line accepted; anything longer is refused, not buffered.
const MAX_REQUEST: usize = 1 << 20;
/// A client that sends nothing for this long is disconnected.
const IDLE: Duration = Duration::from_secs(60);

fn error_line(code: i32, message: &str) -> String {
    serde_json::to_string(&rtgt_target::control::Response::error(code, message))
        .unwrap_or_else(|_| format!("{{\"code\":{code},\"message\":\"error\"}}"))
}

/// Whether the peer may configure the daemon.
fn permitted(cred: &tokio::net::unix::UCred, group: Option<u32>) -> bool {
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if cred.uid() == 0 || cred.uid() == me {
        return true;
    }
    let Some(g) = group else {
        return false;
    };
    if cred.gid() == g {
        return true;
    }
    // Supplementary groups of the peer process.
    cred.pid()
        .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Groups:"))
                .map(|l| l.split_whitespace().skip(1).any(|x| x.parse() == Ok(g)))
        })
        .unwrap_or(false)
}

pub async fn serve(
    listener: UnixListener,
    registry: Arc<Registry>,
    shutdown: Arc<Notify>,
    group: Option<u32>,
) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("control socket accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let registry = registry.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let cred = stream.peer_cred().ok();
            let (rd, mut wr) = stream.into_split();
            if !cred.as_ref().is_some_and(|c| permitted(c, group)) {
                tracing::warn!(
                    uid = cred.as_ref().map(|c| c.uid()),
                    pid = cred.as_ref().and_then(|c| c.pid()),
                    "control socket: permission denied"
                );
                let line = error_line(
                    rtgt_target::errno::EPERM,
                    "permission denied: only root, rtgtd's user or its --control-group may configure rtgtd",
                );
                let _ = wr.write_all(format!("{line}\n").as_bytes()).await;
                return;
            }
            let mut rd = BufReader::new(rd);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                let mut limited = (&mut rd).take(MAX_REQUEST as u64 + 1);
                let read = limited.read_until(b'\n', &mut buf);
                match tokio::time::timeout(IDLE, read).await {
                    Err(_) | Ok(Ok(0)) => break,
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        tracing::debug!("control socket read: {e}");
                        break;
                    }
                }
                let resp = if buf.len() > MAX_REQUEST {
                    Err(error_line(
                        rtgt_target::errno::EINVAL,
                        "malformed control request: longer than 1 MiB",
                    ))
                } else {
                    match String::from_utf8(std::mem::take(&mut buf)) {
                        Ok(line) => Ok(line),
                        Err(_) => Err(error_line(
                            rtgt_target::errno::EINVAL,
                            "malformed control request: not UTF-8",
                        )),
                    }
                };
                let (resp, fatal) = match resp {
                    Err(e) => (e, true),
                    Ok(req) => {
                        let reg = registry.clone();
                        // Configuration work (opening files) must not stall the reactor.
                        let r = tokio::task::spawn_blocking(move || {
                            rtgt_target::handle_line(&reg, &req)
                        })
                        .await
                        .unwrap_or_else(|e| error_line(5, &format!("internal error: {e}")));
                        (r, false)
                    }
                };
                let sent = wr.write_all(resp.as_bytes()).await.is_ok()
                    && wr.write_all(b"\n").await.is_ok()
                    && wr.flush().await.is_ok();
                if registry.shutdown_requested() {
                    shutdown.notify_one();
                }
                if !sent || fatal {
                    break;
                }
            }
        });
    }
}
