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
//!
//! rtgtd's side is `rtgt_backstore::handler`, a backing store.

pub mod client;
pub mod layout;
pub mod shm;
pub mod sys;
pub mod wire;
