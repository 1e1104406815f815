//! rtgt's device-handler protocol: a logical unit whose blocks are served by a
//! separate process (a "handler"), as SCST's scst_user or LIO's TCMU do, written from
//! docs/handler-protocol.md.
//!
//! - [`layout`]: the shared-memory layout of a queue (ring headers, entries, arena) and
//!   the encoding of entries; no I/O.
//! - [`wire`]: the handshake messages on the Unix socket; no I/O.
//! - [`shm`]: a mapped queue region, with the atomics of the ring indices.
//! - [`sys`]: memfd, eventfd, SCM_RIGHTS, peer credentials (thin libc wrappers).
//! - [`client`]: the handler's side: connect, handshake, take commands, complete them.
//! - [`cheader`]: the C header `bindings/c/rtgt_handler.h`, generated from the above.
//!
//! rtgtd's side is `rtgt_backstore::handler`, a backing store.

pub mod cheader;
pub mod client;
pub mod layout;
pub mod shm;
pub mod sys;
pub mod wire;

use std::path::{Path, PathBuf};

/// Where a handler socket is: `name` itself when it holds a `/`, else
/// `$RTGT_RUN_DIR/handlers/NAME.sock` (`/run/rtgt/handlers/NAME.sock` by default).
/// rtgtd (`-b`) and handlers (fileio_tgt's `name`) resolve names the same way.
pub fn socket_path(name: &Path) -> PathBuf {
    if name.as_os_str().to_string_lossy().contains('/') {
        return name.to_path_buf();
    }
    let run = std::env::var_os("RTGT_RUN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/rtgt"));
    run.join("handlers")
        .join(format!("{}.sock", name.display()))
}
