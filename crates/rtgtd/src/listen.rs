//! Binding the portals and the control socket before detaching, so that a port in use
//! or an unwritable path is reported to the person who started rtgtd.

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

use anyhow::{anyhow, bail, Result};

pub fn bind_portal(addr: SocketAddr) -> Result<TcpListener> {
    match TcpListener::bind(addr) {
        Ok(l) => Ok(l),
        Err(e) if e.kind() == ErrorKind::AddrInUse => {
            bail!("portal {addr}: address already in use (another target on this port?)")
        }
        Err(e) if e.kind() == ErrorKind::AddrNotAvailable => {
            bail!("portal {addr}: no such local address")
        }
        Err(e) => Err(anyhow!("portal {addr}: {e}")),
    }
}

/// Binds the control socket, replacing a stale socket file but never a live daemon's.
pub fn bind_control(path: &Path) -> Result<UnixListener> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() && !dir.exists() {
            std::fs::create_dir_all(dir).map_err(|e| {
                anyhow!(
                    "control socket {}: cannot create {}: {e}",
                    path.display(),
                    dir.display()
                )
            })?;
            // The directory holds only control sockets: owner only.
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            bail!(
                "control socket {}: another rtgtd is listening there (use another -C port)",
                path.display()
            );
        }
        std::fs::remove_file(path).map_err(|e| {
            anyhow!(
                "control socket {}: cannot remove stale socket: {e}",
                path.display()
            )
        })?;
    }
    let l =
        UnixListener::bind(path).map_err(|e| anyhow!("control socket {}: {e}", path.display()))?;
    // Only the owner (root) may configure the daemon.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| anyhow!("control socket {}: {e}", path.display()))?;
    Ok(l)
}
