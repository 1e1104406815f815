//! The control socket server: one JSON request line in, one JSON response line out,
//! executed against the registry (the same one the iSCSI side reads).

use std::sync::Arc;

use rtgt_target::Registry;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::sync::Notify;

/// Largest request line accepted; anything longer is refused, not buffered.
const MAX_REQUEST: usize = 1 << 20;

pub async fn serve(listener: UnixListener, registry: Arc<Registry>, shutdown: Arc<Notify>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("control socket accept: {e}");
                continue;
            }
        };
        let registry = registry.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let (rd, mut wr) = stream.into_split();
            let mut rd = BufReader::new(rd).take(MAX_REQUEST as u64);
            let mut line = String::new();
            loop {
                line.clear();
                match rd.read_line(&mut line).await {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!("control socket read: {e}");
                        break;
                    }
                }
                let reg = registry.clone();
                let req = line.clone();
                // Configuration work (opening files) must not stall the reactor.
                let resp =
                    tokio::task::spawn_blocking(move || rtgt_target::handle_line(&reg, &req))
                        .await
                        .unwrap_or_else(|e| {
                            format!("{{\"code\":5,\"message\":\"internal error: {e}\"}}")
                        });
                let sent = wr.write_all(resp.as_bytes()).await.is_ok()
                    && wr.write_all(b"\n").await.is_ok()
                    && wr.flush().await.is_ok();
                if registry.shutdown_requested() {
                    shutdown.notify_one();
                }
                if !sent {
                    break;
                }
            }
        });
    }
}
