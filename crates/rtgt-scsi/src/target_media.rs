//! Removable media of a target: creating the LUs that have no block store (tape drives,
//! media changers), and the [`DriveHandle`] through which a changer moves media into
//! drives of any device type that takes them (the `MediumDrive` seam).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::ScsiTarget;
use crate::device::MediumDrive;
use crate::lu::Lu;
use crate::sense::Sense;
use crate::{inquiry, DeviceType, LuConfig, ScsiError};

/// What creating a tape drive (or a changer) takes: no block backing store, but an
/// optional cartridge image for a drive.
#[derive(Debug, Clone)]
pub struct MediaLuConfig {
    pub device_type: DeviceType,
    /// A drive's cartridge image, empty (or `None`) for an empty drive.
    pub path: String,
    pub params: Vec<(String, String)>,
}

impl ScsiTarget {
    /// Creates a LU with no block store: a tape drive, with the cartridge image
    /// `cfg.path` loaded if given, or a media changer.
    pub fn add_media_lu(&self, lun: u64, cfg: MediaLuConfig) -> Result<(), ScsiError> {
        self.add_lu(
            lun,
            LuConfig {
                device_type: cfg.device_type,
                store: None,
                block_size: 512,
                path: cfg.path,
                bsoflags: String::new(),
                params: cfg.params,
            },
        )
    }

    /// A LU's device configuration as the `--op update --params` lines that build it
    /// again (a changer's inventory; None: it has none).
    pub fn changer_setup(&self, lun: u64) -> Option<Vec<String>> {
        let lu = self.luns.read().get(&lun).cloned()?;
        lu.device.server().setup_lines()
    }

    /// A handle on LUN `lun` if it is a drive a changer can load (tape, cd/dvd).
    pub fn drive_handle(&self, lun: u64) -> Option<DriveHandle> {
        let lu = self.luns.read().get(&lun).cloned()?;
        lu.device.server().medium_drive()?;
        Some(DriveHandle {
            lu,
            nexuses: self.nexus_ids(),
            target: self.name.clone(),
        })
    }
}

/// Finds a drive that takes media (tape, cd/dvd) by (tid, LUN) across the daemon's
/// targets: the registry's hook, as the SCSI core knows no target ids.
pub type DriveResolver = Arc<dyn Fn(u32, u64) -> Option<DriveHandle> + Send + Sync>;

/// A drive as a media changer sees it: a place to load media into.
pub struct DriveHandle {
    lu: Arc<Lu>,
    /// The I_T nexuses of the drive's target, told of a medium change.
    nexuses: Vec<u64>,
    target: String,
}

impl DriveHandle {
    fn drive(&self) -> &dyn MediumDrive {
        self.lu
            .device
            .server()
            .medium_drive()
            .expect("checked when made")
    }

    /// Loads the medium whose image is `path` (blocking: runs on the I/O pool).
    pub fn load(&self, path: &Path) -> Result<(), String> {
        self.drive().load(&self.lu, path, &self.nexuses)
    }

    /// The image of the medium the drive holds, if any.
    pub fn medium(&self) -> Option<PathBuf> {
        self.drive().medium(&self.lu)
    }

    /// Takes the medium out; its image path. Err: removal is prevented.
    pub(crate) fn unload(&self) -> Result<Option<PathBuf>, Sense> {
        self.drive().unload(&self.lu, &self.nexuses)
    }

    /// The drive's unit serial number (its device identifier in READ ELEMENT STATUS).
    pub fn serial(&self) -> String {
        inquiry::serial(&self.lu, &self.target)
    }

    /// The vendor and product identification of the drive's INQUIRY data.
    pub fn vendor_product(&self) -> (String, String) {
        let p = self.lu.params.read();
        let server = self.lu.device.server();
        let product = server.product(&p.product_id).unwrap_or(&p.product_id);
        (p.vendor_id.clone(), product.to_string())
    }
}
