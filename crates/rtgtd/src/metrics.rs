//! `--metrics ADDR:PORT`: the command counters over HTTP in the OpenMetrics text
//! format (`GET /metrics`), for Prometheus and friends. A deliberately tiny HTTP/1.1
//! responder: one request per connection, headers bounded, nothing else served.

use std::sync::Arc;
use std::time::Duration;

use rtgt_target::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Longest request head read; a scraper's is a few hundred bytes.
const MAX_HEAD: usize = 8192;
const TIMEOUT: Duration = Duration::from_secs(10);

pub async fn serve(listener: TcpListener, registry: Arc<Registry>) {
    loop {
        let (mut stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("metrics accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let reg = registry.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(TIMEOUT, async {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = stream.read(&mut buf).await?;
                    if n == 0 || head.len() + n > MAX_HEAD {
                        return Ok(());
                    }
                    head.extend_from_slice(&buf[..n]);
                }
                let line = String::from_utf8_lossy(&head);
                let mut words = line.split_whitespace();
                let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
                let path = path.split('?').next().unwrap_or("");
                let (status, ctype, body) = match (method, path) {
                    ("GET" | "HEAD", "/metrics" | "/") => {
                        let reg = reg.clone();
                        let body = tokio::task::spawn_blocking(move || {
                            rtgt_target::report::metrics_text(&reg)
                        })
                        .await
                        .unwrap_or_default();
                        (
                            "200 OK",
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                            body,
                        )
                    }
                    ("GET" | "HEAD", _) => ("404 Not Found", "text/plain", "try /metrics\n".into()),
                    _ => ("405 Method Not Allowed", "text/plain", "GET only\n".into()),
                };
                let mut resp = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n",
                    body.len()
                )
                .into_bytes();
                if method != "HEAD" {
                    resp.extend_from_slice(body.as_bytes());
                }
                stream.write_all(&resp).await?;
                stream.shutdown().await
            })
            .await;
        });
    }
}
