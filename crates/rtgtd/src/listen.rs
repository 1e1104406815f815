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

/// Resolves `--control-group` (a group name or number) to a gid.
pub fn resolve_group(g: &str) -> Result<u32> {
    if let Ok(n) = g.parse::<u32>() {
        return Ok(n);
    }
    let c = std::ffi::CString::new(g).map_err(|_| anyhow!("control group {g:?}: bad name"))?;
    // SAFETY: getgrnam with a valid C string; the result is read before any other call.
    let gr = unsafe { libc::getgrnam(c.as_ptr()) };
    if gr.is_null() {
        bail!("control group {g}: no such group");
    }
    // SAFETY: non-null result of getgrnam.
    Ok(unsafe { (*gr).gr_gid })
}

fn chown_group(path: &Path, gid: u32) -> Result<()> {
    std::os::unix::fs::chown(path, None, Some(gid)).map_err(|e| {
        anyhow!(
            "control socket {}: cannot give it to group {gid}: {e}",
            path.display()
        )
    })
}

/// Binds the control socket, replacing a stale socket file but never a live daemon's.
/// The socket is 0600 (root, or rtgtd's own user), or 0660 owned by `group` when one is
/// configured; the file mode is set before anyone can connect (umask at bind time).
pub fn bind_control(path: &Path, group: Option<u32>) -> Result<UnixListener> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() && !dir.exists() {
            std::fs::create_dir_all(dir).map_err(|e| {
                anyhow!(
                    "control socket {}: cannot create {}: {e}",
                    path.display(),
                    dir.display()
                )
            })?;
            // The directory holds only control sockets: owner only (and the group).
            let mode = if group.is_some() { 0o750 } else { 0o700 };
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode));
            if let Some(gid) = group {
                chown_group(dir, gid)?;
            }
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
    // No window in which the socket exists with looser permissions than intended.
    // SAFETY: umask only changes this process's file creation mask.
    let old = unsafe { libc::umask(0o177) };
    let l = UnixListener::bind(path);
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    let l = l.map_err(|e| anyhow!("control socket {}: {e}", path.display()))?;
    let mode = match group {
        Some(gid) => {
            chown_group(path, gid)?;
            0o660
        }
        None => 0o600,
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| anyhow!("control socket {}: {e}", path.display()))?;
    Ok(l)
}
