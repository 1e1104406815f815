//! The SCSI core: a SCSI target device with its logical units, as SAM-5 describes it.
//!
//! It knows nothing of iSCSI. A transport hands it an I_T nexus, a LUN, a CDB, the
//! Data-Out buffer and the initiator's expected Data-In length, and gets back a status,
//! sense data and Data-In. Common SPC behaviour (INQUIRY, REPORT LUNS, unit attentions,
//! reservations, sense) lives once; each device type adds its own commands.

use std::sync::Arc;

mod alua;
mod cdb;
mod controller;
mod device;
mod devices;
mod disk;
mod flush;
mod inquiry;
mod lu;
mod mmc;
mod mode;
mod opcodes;
mod params;
mod pr;
mod pt;
mod range;
mod reserve;
mod saved_state;
mod sbc;
mod scsi_handler;
pub mod sense;
mod shared_pr;
pub mod smc;
mod spc;
pub mod ssc;
pub mod stats;
mod store_error;
mod store_ready;
pub mod target;
pub mod tasks;
mod ua;
mod xcopy;

#[cfg(test)]
mod target_tests;

#[cfg(test)]
mod shared_tests;

#[cfg(test)]
mod cache_tests;

#[cfg(test)]
mod readonly_tests;

pub use alua::AluaState;
pub use devices::DeviceType;
pub use mmc::open_disc_image;
pub use params::{canonical_lu_params, default_lu_param};
pub use pt::canonical_params as pt_canonical_params;
pub use target::{DriveHandle, LuDirectory, MediaLuConfig, ScsiTarget, TmOutcome, TmResponse};
pub use tasks::{AbortAck, AbortHook, TaskGuard, TransportAbort};

/// SAM-5 status codes.
pub mod status {
    pub const GOOD: u8 = 0x00;
    pub const CHECK_CONDITION: u8 = 0x02;
    pub const CONDITION_MET: u8 = 0x04;
    pub const BUSY: u8 = 0x08;
    pub const RESERVATION_CONFLICT: u8 = 0x18;
    pub const TASK_SET_FULL: u8 = 0x28;
    pub const TASK_ABORTED: u8 = 0x40;
}

/// One I_T nexus: an initiator port talking to a target port (SAM-5 4.6.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItNexus {
    /// Unique for the life of the daemon; never reused.
    pub id: u64,
    /// The initiator's name (an iSCSI name for iSCSI).
    pub initiator_name: String,
    /// SCSI initiator port name: for iSCSI `<name>,i,0x<ISID hex>` (RFC 7143 §10.1.1.1 ff).
    pub initiator_port: String,
    /// SCSI target port name: for iSCSI `<target name>,t,0x<TPGT hex>`.
    pub target_port: String,
    /// RELATIVE TARGET PORT IDENTIFIER (SPC-4 7.8.6.x); 1-based.
    pub relative_port_id: u16,
    /// Target port group (the iSCSI TPGT).
    pub target_port_group: u16,
}

/// SAM-5 task attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TaskAttr {
    #[default]
    Simple,
    Ordered,
    HeadOfQueue,
    Aca,
}

/// A CDB. Those of up to 16 bytes (all but variable-length ones, SPC-4 4.2.3) are held
/// inline: a heap allocation per command was measurable on the I/O path.
pub type Cdb = smallvec::SmallVec<[u8; 16]>;

/// A command as the transport delivers it, with all Data-Out already received.
#[derive(Debug)]
pub struct ScsiCommand {
    pub nexus: Arc<ItNexus>,
    /// LUN number (decoded from the 8-byte SAM LUN with [`lun_from_sam`]).
    pub lun: u64,
    pub cdb: Cdb,
    pub data_out: Vec<u8>,
    /// The initiator's expected Data-In length (allocation / transfer size in bytes).
    pub expected_data_in: u32,
    pub attr: TaskAttr,
    /// Task tag, unique per I_T nexus while the task exists.
    pub tag: u64,
}

/// The outcome of a command.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ScsiResult {
    pub status: u8,
    /// Data-In; may be longer than the initiator asked for (the transport truncates and
    /// reports the overflow residual).
    pub data_in: Vec<u8>,
    /// Sense data bytes (fixed or descriptor format), empty when there is none.
    pub sense: Vec<u8>,
    /// For commands that carry Data-Out: how many bytes the CDB asks to transfer, so the
    /// transport can report residuals against its expected length (RFC 7143 §11.4.5).
    pub data_out_len: Option<u32>,
    /// The task was aborted (task management, PREEMPT AND ABORT): the transport must
    /// not answer it (SAM-5 5.6 with TAS=0).
    pub aborted: bool,
    /// How long the command ran, as the LU's statistics counted it; the transport's
    /// per-session statistics reuse it rather than read the clock twice more.
    pub elapsed: std::time::Duration,
}

impl ScsiResult {
    pub fn good() -> Self {
        Self::default()
    }
    pub fn with_data(data: Vec<u8>) -> Self {
        Self {
            data_in: data,
            ..Self::default()
        }
    }
}

/// Task management functions (SAM-5 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TmFunction {
    AbortTask,
    AbortTaskSet,
    ClearAca,
    ClearTaskSet,
    LogicalUnitReset,
    TargetWarmReset,
    TargetColdReset,
}

/// Everything needed to create a logical unit.
#[derive(Clone)]
pub struct LuConfig {
    pub device_type: DeviceType,
    /// The medium: a disk's blocks, a cd drive's disc; None for device types whose
    /// medium is their own (a tape drive's cartridge image is `path`) or who have none.
    pub store: Option<Arc<dyn rtgt_backstore::BackingStore>>,
    /// Logical block size: 512 or 4096.
    pub block_size: u32,
    /// Backing path as given, for `show`.
    pub path: String,
    /// `--bsoflags` as given, for `show`.
    pub bsoflags: String,
    /// `--params` key=value pairs (tgt's names: vendor_id, product_id, product_rev,
    /// scsi_id, scsi_sn, removable, readonly, online, sense_format, ...).
    pub params: Vec<(String, String)>,
}

/// What `rtgtadm --op show` prints about a LU.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LuInfo {
    pub lun: u64,
    pub device_type: String,
    pub scsi_id: String,
    pub scsi_sn: String,
    pub size_bytes: u64,
    pub block_size: u32,
    pub online: bool,
    pub removable: bool,
    pub prevent_removal: bool,
    pub readonly: bool,
    pub swp: bool,
    pub thin_provisioning: bool,
    pub backing_store_type: String,
    pub backing_store_path: String,
    pub backing_store_flags: String,
    /// The store's `--bsopts` (rbd), as a saved configuration gives them back.
    pub backing_store_opts: Option<String>,
    pub write_cache: bool,
    /// `nv_cache=1`: flushes are skipped.
    pub nv_cache: bool,
    pub physical_block_size: u32,
    /// The LU's parameters that differ from the defaults, canonical `key=value` pairs
    /// (what a saved configuration needs to create it again).
    pub params: Vec<(String, String)>,
    /// What the backing store has done (reads, writes, durable writes, flushes).
    pub io_stats: rtgt_backstore::IoStats,
    /// Device-specific lines for `show` (a tape drive's cartridge, a changer's
    /// elements).
    pub media: Vec<String>,
    /// A cd drive whose tray an initiator opened (START STOP UNIT, MMC-6 6.39): the
    /// disc on it is not loaded, and a saved configuration keeps the drive empty.
    pub tray_open: bool,
    /// The backing store's own values for metrics (a device handler's).
    pub store_metrics: Vec<rtgt_backstore::StoreMetric>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScsiError {
    #[error("logical unit {0} already exists")]
    LunExists(u64),
    #[error("logical unit {0} does not exist")]
    NoSuchLun(u64),
    #[error("LUN 0 is the target's controller and cannot be changed")]
    Lun0Reserved,
    #[error("bad block size {0}: use 512 or 4096")]
    BadBlockSize(u32),
    #[error("bad parameter {0}")]
    BadParam(String),
    #[error("no target port group {0}: the daemon's portal groups are set with --iscsi portal=IP:PORT,tpgt=N")]
    NoSuchPortGroup(u16),
    #[error("persistent reservation state: {0}")]
    PrState(String),
    #[error("logical unit {0}: an initiator prevents medium removal (PREVENT ALLOW MEDIUM REMOVAL) and was sent an eject request; unmount the disc on the initiator, or add force=1")]
    MediumRemovalPrevented(u64),
    /// A device node that can't be used (pass-through): the message says why.
    #[error("{0}")]
    Device(String),
    #[error("backing store size {size} is smaller than one {block_size}-byte block")]
    TooSmall { size: u64, block_size: u32 },
}

/// Decodes an 8-byte SAM LUN (SAM-5 4.7): peripheral (00b) and flat (01b) addressing of
/// the first level.
pub fn lun_from_sam(raw: [u8; 8]) -> u64 {
    match raw[0] >> 6 {
        0b00 => u64::from(raw[1]) | (u64::from(raw[0] & 0x3f) << 8),
        0b01 => (u64::from(raw[0] & 0x3f) << 8) | u64::from(raw[1]),
        _ => u64::MAX,
    }
}

/// Encodes a LUN number the way REPORT LUNS and the transport return it: peripheral
/// addressing below 256, flat space addressing up to 16383.
pub fn lun_to_sam(lun: u64) -> [u8; 8] {
    let mut out = [0u8; 8];
    if lun < 256 {
        out[1] = lun as u8;
    } else {
        out[0] = 0x40 | ((lun >> 8) as u8 & 0x3f);
        out[1] = lun as u8;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lun_roundtrip() {
        for lun in [0u64, 1, 255, 256, 16383] {
            assert_eq!(lun_from_sam(lun_to_sam(lun)), lun);
        }
    }
}
