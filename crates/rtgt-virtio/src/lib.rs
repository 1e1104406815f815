//! virtio-scsi, sans I/O: the layouts of OASIS virtio 1.2 §5.6 ("SCSI Host Device") read
//! from and written into a descriptor chain, with guest memory behind a trait.
//!
//! Nothing here trusts the guest: a chain is a list of [`Seg`]ments the driver wrote,
//! each checked against guest memory ([`GuestMem`]) before a byte moves; a chain that is
//! too short, has its segments in the wrong order or direction, or points outside guest
//! memory becomes a [`ChainError`], and the transport answers it as the spec prescribes
//! (VIRTIO_SCSI_S_FAILURE when the response can be written, the device marked as
//! needing reset when not). No panic on any input: `fuzz/fuzz_targets/virtio.rs`.

pub mod chain;
pub mod ctrl;
pub mod event;
pub mod lun;
pub mod request;

pub use chain::{ChainError, GuestMem, Seg};
pub use lun::VirtioLun;

/// virtio-scsi feature bits (§5.6.3).
pub mod feature {
    /// A single request may carry both data-in and data-out.
    pub const INOUT: u64 = 1 << 0;
    /// Hot-plug events (TRANSPORT_RESET RESCAN / REMOVED) on the event queue.
    pub const HOTPLUG: u64 = 1 << 1;
    /// PARAM_CHANGE events (capacity changed, …).
    pub const CHANGE: u64 = 1 << 2;
}

/// The `response` byte of a request or task management reply (§5.6.6.1, §5.6.6.2).
pub mod response {
    pub const OK: u8 = 0;
    pub const OVERRUN: u8 = 1;
    pub const ABORTED: u8 = 2;
    pub const BAD_TARGET: u8 = 3;
    pub const RESET: u8 = 4;
    pub const BUSY: u8 = 5;
    pub const TRANSPORT_FAILURE: u8 = 6;
    pub const TARGET_FAILURE: u8 = 7;
    pub const NEXUS_FAILURE: u8 = 8;
    pub const FAILURE: u8 = 9;
    pub const FUNCTION_SUCCEEDED: u8 = 10;
    pub const FUNCTION_REJECTED: u8 = 11;
    pub const INCORRECT_LUN: u8 = 12;
}

/// The default CDB and sense sizes of the configuration space (§5.6.4); QEMU's
/// vhost-user-scsi refuses to let the driver change them, so they are fixed here.
pub const CDB_SIZE: usize = 32;
pub const SENSE_SIZE: usize = 96;
