//! vhost-user-scsi (virtio 1.2 §5.6 over QEMU's vhost-user protocol): a virtual machine's
//! virtio-scsi queues served straight from its memory, no network in between.
//!
//! - `socket`: each target's bound socket paths (`--lld vhost --op bind --params
//!   socket=PATH`), each listened on by a thread that serves one QEMU at a time;
//! - `backend`: the vhost-user device (rust-vmm's vhost-user-backend): features, queue
//!   count, guest memory, and the kicks of the control, event and request queues;
//! - `queue`: a request queue on a reactor: chains become `ScsiCommand`s through
//!   `exec::Commands`, completions are written back into the guest's buffers;
//! - `events`: the event queue, LUNs added, removed and resized as virtio-scsi events;
//! - `memory`: guest memory behind rtgt-virtio's checked `GuestMem`;
//! - `vring`: the vhost-user library's vring, which notifies a call notifier QEMU hands
//!   over at once (no notification lost in QEMU's unacknowledged notifier swap).
//!
//! The layouts (request, response, task management, events) are rtgt-virtio's, sans I/O.

mod backend;
mod events;
mod memory;
mod queue;
mod socket;
mod vring;

use std::sync::Arc;

use anyhow::Result;
use rtgt_target::Registry;
use tokio::task::JoinHandle;

use super::{Opened, Transport};
use crate::cli::Options;
use crate::daemon::{Daemon, Reactors};

/// The transport's `--lld` name.
pub const NAME: &str = "vhost";

struct Vhost;

/// Always there: it listens on the sockets targets are bound to, none until one is.
pub fn open(_opts: &Options) -> Result<Opened> {
    Ok(Some(Box::new(Vhost)))
}

impl Transport for Vhost {
    fn register(&self, _registry: &Registry) {}

    fn start(
        self: Box<Self>,
        daemon: &Arc<Daemon>,
        reactors: &Arc<Reactors>,
    ) -> Result<Vec<JoinHandle<()>>> {
        Ok(vec![socket::watch(daemon.clone(), reactors.clone())])
    }
}
