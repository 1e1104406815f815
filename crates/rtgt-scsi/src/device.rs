//! The device-type seam: what a device type (SBC disk, SSC tape, MMC drive, SMC changer,
//! the SCC controller at LUN 0, ...) adds to the SCSI core.
//!
//! The core (`target`, `lu`, `spc`, `inquiry`, `opcodes`) routes every command through
//! the checks SAM-5 and SPC-4 put before a device server runs it — unit attentions,
//! reservations, ALUA, readiness — and answers the SPC commands every device type shares
//! (INQUIRY, REPORT LUNS, REPORT SUPPORTED OPERATION CODES, ...). Everything that
//! differs by device type is asked of the LU's [`DeviceServer`]; its state lives in the
//! device module, inside the registry's [`crate::devices::Device`]. Dependencies run from
//! the device modules to the core, never back: the core names no device type.
//!
//! A device type also has three inherent functions the registry calls with static
//! dispatch: `async fn execute(&self, ctx: &Ctx<'_>, data: &mut Vec<u8>) ->
//! Outcome<ScsiResult>` (so the READ/WRITE path allocates no boxed future), `fn
//! table(f: Features) -> &'static Table` (its commands: one table drives dispatch and
//! REPORT SUPPORTED OPERATION CODES) and `fn new_lu(lun, LuConfig) -> Result<Lu,
//! ScsiError>`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::lu::Lu;
use crate::sense::Sense;
use crate::target::ScsiTarget;
use crate::tasks::TaskGuard;
use rtgt_backstore::BackingStore;

use crate::cdb::Outcome;
use crate::opcodes::Features;
use crate::spc::{self, op};
use crate::{ItNexus, LuInfo, ScsiCommand, ScsiError, ScsiResult};

/// What the core asks of a device type. Every method but the identity ones has the
/// answer of a device type that adds nothing.
pub(crate) trait DeviceServer: Send + Sync {
    /// The `--device-type` name (`show`, saved configurations).
    fn name(&self) -> &'static str;

    /// PERIPHERAL DEVICE TYPE (SPC-4 table 140).
    fn peripheral_type(&self) -> u8;

    /// The command set's VERSION DESCRIPTOR in standard INQUIRY data (SPC-4 table 143).
    fn version_descriptor(&self) -> Option<u16> {
        None
    }

    /// RMB in standard INQUIRY data: the medium is removable.
    fn removable(&self, lu: &Lu) -> bool {
        let _ = lu;
        false
    }

    /// PRODUCT IDENTIFICATION when the LU's `product_id` says nothing of its own.
    fn product(&self, product_id: &str) -> Option<&'static str> {
        let _ = product_id;
        None
    }

    /// Whether the LU takes part in ALUA (TPGS in INQUIRY, access states refuse its
    /// commands, SPC-4 5.16).
    fn alua(&self) -> bool {
        false
    }

    /// The VPD pages it has (SPC-4 7.8; 00h, 80h and 83h are every LU's).
    fn vpd_pages(&self) -> &'static [u8] {
        &[0x00, 0x80, 0x83]
    }

    /// Commands processed while a unit attention is pending, beyond SPC's own (SAM-5
    /// 5.14).
    fn ua_exempt(&self, opcode: u8) -> bool {
        let _ = opcode;
        false
    }

    /// The body of a VPD page of its own (one it lists in `vpd_pages` beyond SPC's).
    fn vpd_page(&self, lu: &Lu, page: u8) -> Option<Vec<u8>> {
        let _ = (lu, page);
        None
    }

    /// Whether the device server answers `opcode` (INQUIRY or REQUEST SENSE) itself
    /// instead of the core: a pass-through device forwards them to the real device.
    fn answers_itself(&self, opcode: u8) -> bool {
        let _ = opcode;
        false
    }

    /// Data-Out bytes the CDB asks for, so the transport can report residuals.
    fn data_out_len(&self, lu: &Lu, cdb: &[u8]) -> Option<u64> {
        let _ = (lu, cdb);
        None
    }

    /// Why the LU is not ready, for REQUEST SENSE and the commands that need a medium.
    fn not_ready(&self, lu: &Lu) -> Option<Sense> {
        let _ = lu;
        None
    }

    /// Whether a successful command changed state a saved configuration keeps (so
    /// `--save-config` writes at once; see `crate::saved_state`).
    fn changes_saved_state(&self, cdb: &[u8]) -> bool {
        let _ = cdb;
        false
    }

    /// A logical unit reset (SAM-5 6.3.3), beyond what every LU resets.
    fn reset(&self, lu: &Lu) {
        let _ = lu;
    }

    /// An I_T nexus is gone: forget what the device kept for it.
    fn nexus_loss(&self, lu: &Lu, nexus: u64) {
        let _ = (lu, nexus);
    }

    /// What `show` and a saved configuration say of the device (its medium, elements).
    fn fill_info(&self, lu: &Lu, info: &mut LuInfo) {
        let _ = (lu, info);
    }

    /// `--op update --params` the device type takes itself (a changer's elements);
    /// None: not one of its own, the core applies them as LU parameters.
    fn configure(
        &self,
        target: &ScsiTarget,
        lu: &Lu,
        params: &[(String, String)],
    ) -> Option<Result<(), ScsiError>> {
        let _ = (target, lu, params);
        None
    }

    /// The `--op update --params` lines that configure it again (a changer's inventory).
    fn setup_lines(&self) -> Option<Vec<String>> {
        None
    }

    /// The administrator loads a disc image into the drive (`Some((image, path))`) or
    /// takes it out (`None`): `rtgtadm --op update --params media=PATH`. None: the
    /// device has no such medium; `Err(())`: an initiator prevents its removal.
    fn change_disc(
        &self,
        lu: &Lu,
        image: Option<(Arc<dyn BackingStore>, String)>,
        force: bool,
        all: &[u64],
    ) -> Option<Result<(), ()>> {
        let _ = (lu, image, force, all);
        None
    }

    /// The removable-medium seam: a drive a media changer can load.
    fn medium_drive(&self) -> Option<&dyn MediumDrive> {
        None
    }
}

/// A drive that takes removable media a changer moves (SMC-3 data transfer element):
/// tape drives and CD/DVD drives. The changer knows media only as image files named by
/// their barcode in its `media_home`.
pub(crate) trait MediumDrive: Send + Sync {
    /// Loads the medium whose image is `path` (blocking: runs on the I/O pool). The
    /// drive becomes ready and the I_T nexuses `all` hear of it (SPC-4 table F.1: NOT
    /// READY TO READY CHANGE, MEDIUM MAY HAVE CHANGED).
    fn load(&self, lu: &Lu, path: &Path, all: &[u64]) -> Result<(), String>;

    /// The image of the medium the drive holds, if it holds one.
    fn medium(&self, lu: &Lu) -> Option<PathBuf>;

    /// Takes the medium out; the image path it came from. Refused (Err) while an
    /// initiator prevents medium removal (SMC-3 6.6).
    fn unload(&self, lu: &Lu, all: &[u64]) -> Result<Option<PathBuf>, Sense>;
}

/// Everything a device type's `execute` may use: the target (LUN map, nexuses, ALUA,
/// the daemon-wide directory), the LU, the command, and the task it runs as.
pub(crate) struct Ctx<'a> {
    pub target: &'a ScsiTarget,
    pub lu: &'a Arc<Lu>,
    pub cmd: &'a ScsiCommand,
    /// The CDB, cut to its opcode's length.
    pub cdb: &'a [u8],
    pub task: &'a TaskGuard,
}

impl Ctx<'_> {
    pub fn nexus(&self) -> &ItNexus {
        &self.cmd.nexus
    }

    /// REPORT SUPPORTED OPERATION CODES and TASK MANAGEMENT FUNCTIONS (SPC-4 6.35,
    /// 6.36), from the LU's own command table.
    pub fn maintenance_in(&self) -> Outcome<ScsiResult> {
        let table = self.lu.device.opcodes(Features {
            thin: self.lu.thin(),
        });
        spc::maintenance_in(table, self.cdb)
    }

    /// The SPC commands a removable-medium device (tape drive, changer) shares with a
    /// disk: REPORT SUPPORTED OPERATION CODES, SPC-2 RESERVE / RELEASE, and PREVENT
    /// ALLOW MEDIUM REMOVAL. None: not one of them.
    pub fn shared_spc(&self) -> Option<Outcome<ScsiResult>> {
        let (lu, cdb, nexus) = (self.lu, self.cdb, self.nexus());
        Some(match cdb[0] {
            op::MAINTENANCE_IN => self.maintenance_in(),
            op::RESERVE_6 | op::RESERVE_10 => spc::reserve(lu, nexus, cdb),
            op::RELEASE_6 | op::RELEASE_10 => spc::release(lu, nexus, cdb),
            op::PREVENT_ALLOW => spc::prevent_allow_cmd(lu, nexus.id, cdb),
            _ => return None,
        })
    }
}
