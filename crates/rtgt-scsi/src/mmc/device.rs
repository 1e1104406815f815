//! The CD/DVD drive as a device type: what the SCSI core asks of it, and how a media
//! changer or the administrator loads discs into it (the removable-medium seam: a
//! changer with cd drives is a DVD jukebox).

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rtgt_backstore::{BackingStore, OpenError, OpenOptions};

use super::{Drive, Medium, Nexuses, BLOCK};
use crate::cdb::Outcome;
use crate::device::{Ctx, DeviceServer, MediumDrive};
use crate::inquiry::TYPE_MMC;
use crate::lu::Lu;
use crate::opcodes::{Features, Table};
use crate::params::LuParams;
use crate::sense::{asc, Sense};
use crate::spc::op;
use crate::{LuConfig, LuInfo, ScsiError, ScsiResult};

/// Opens a disc image: an empty file is a blank DVD+R and is opened for writing; a
/// recorded one is only ever read, so it is opened read-only (an ISO the daemon may not
/// write is fine).
pub fn open_disc_image(
    bstype: &str,
    path: &str,
    sync: bool,
    direct: bool,
) -> Result<Arc<dyn BackingStore>, OpenError> {
    let meta = std::fs::metadata(path).map_err(|source| OpenError::Io {
        path: PathBuf::from(path),
        source,
    })?;
    let opts = OpenOptions {
        path: PathBuf::from(path),
        direct,
        sync,
        read_only: meta.len() > 0,
        size: None,
        bsopts: Vec::new(),
        block_size: 2048,
    };
    rtgt_backstore::open(bstype, &opts)
}

impl Drive {
    pub fn table(_: Features) -> &'static Table {
        static T: OnceLock<Table> = OnceLock::new();
        T.get_or_init(|| Table::build(&[super::opcodes::CD]))
    }

    /// A CD/DVD drive (MMC-6). Its disc is `cfg.store` unless `cfg.path` is empty or
    /// "None": a drive created without `-b` starts empty (tgt's jukebox drives do).
    pub fn new_lu(lun: u64, cfg: LuConfig) -> Result<Lu, ScsiError> {
        if cfg.block_size != BLOCK as u32 {
            return Err(ScsiError::BadParam(format!(
                "block size {}: a cd/dvd drive has 2048-byte blocks",
                cfg.block_size
            )));
        }
        let params = LuParams::default().apply(&cfg.params)?;
        let medium = match cfg.store {
            Some(store) if !cfg.path.is_empty() && cfg.path != "None" => {
                Some(Medium::from_image(store, cfg.path.clone()))
            }
            _ => None,
        };
        let present = medium.is_some();
        let mut lu = Lu::new(
            lun,
            Drive::new(medium).into(),
            None,
            cfg.block_size,
            cfg.path,
            cfg.bsoflags,
            params,
        );
        lu.medium.get_mut().present = present;
        Ok(lu)
    }

    /// A CD/DVD drive's commands: MMC's, in [`crate::mmc`].
    #[allow(clippy::ptr_arg)] // the registry calls every device type alike; a disk takes the Vec
    pub async fn execute(&self, ctx: &Ctx<'_>, data: &mut Vec<u8>) -> Outcome<ScsiResult> {
        if ctx.cdb[0] == op::MAINTENANCE_IN {
            return ctx.maintenance_in();
        }
        let nx = Nexuses {
            this: ctx.nexus(),
            all: ctx.target.nexus_ids(),
        };
        super::execute(ctx.lu, nx, ctx.cdb, data).await
    }
}

impl DeviceServer for Drive {
    fn name(&self) -> &'static str {
        "cd"
    }

    fn peripheral_type(&self) -> u8 {
        TYPE_MMC
    }

    fn version_descriptor(&self) -> Option<u16> {
        Some(0x04e0) // MMC-6
    }

    /// A CD/DVD drive's medium is always removable (MMC-6 4.1).
    fn removable(&self, _: &Lu) -> bool {
        true
    }

    /// A drive not named otherwise says what it is.
    fn product(&self, product_id: &str) -> Option<&'static str> {
        (product_id == "VIRTUAL-DISK").then_some("VIRTUAL-DVD")
    }

    fn ua_exempt(&self, opcode: u8) -> bool {
        super::ua_exempt(opcode)
    }

    fn data_out_len(&self, _: &Lu, cdb: &[u8]) -> Option<u64> {
        super::data_out_len(cdb)
    }

    fn not_ready(&self, lu: &Lu) -> Option<Sense> {
        super::not_ready(lu)
    }

    /// START STOP UNIT with LOEJ (MMC-6 6.39: eject or load the disc) and LOAD/UNLOAD
    /// MEDIUM (MMC-6 6.7): the disc the drive holds.
    fn changes_saved_state(&self, cdb: &[u8]) -> bool {
        match cdb[0] {
            0x1b => cdb[4] & 0x02 != 0,
            0xa6 => true,
            _ => false,
        }
    }

    fn nexus_loss(&self, _: &Lu, nexus: u64) {
        self.state.lock().forget(nexus);
    }

    fn fill_info(&self, lu: &Lu, info: &mut LuInfo) {
        if let Some(d) = super::info(lu) {
            d.fill(info);
        }
    }

    fn change_disc(
        &self,
        lu: &Lu,
        image: Option<(Arc<dyn BackingStore>, String)>,
        force: bool,
        all: &[u64],
    ) -> Option<Result<(), ()>> {
        let medium = image.map(|(store, path)| Medium::from_image(store, path));
        Some(super::change_medium(lu, medium, force, all).map_err(|_| ()))
    }

    fn medium_drive(&self) -> Option<&dyn MediumDrive> {
        Some(self)
    }
}

impl MediumDrive for Drive {
    /// The disc goes in and the drive is ready: GESN reports NEW MEDIA and every I_T
    /// nexus gets NOT READY TO READY CHANGE (MMC-6 6.8, F.2).
    fn load(&self, lu: &Lu, path: &Path, all: &[u64]) -> Result<(), String> {
        if self.state.lock().medium.is_some() {
            return Err("the drive already holds a disc".into());
        }
        let name = path.display().to_string();
        let store = open_disc_image("rdwr", &name, false, false)
            .map_err(|e| format!("disc image {name}: {e}"))?;
        super::change_medium(lu, Some(Medium::from_image(store, name)), false, all)
            .map_err(|_| "an initiator prevents medium removal".to_string())
    }

    fn medium(&self, _: &Lu) -> Option<PathBuf> {
        let s = self.state.lock();
        s.medium.as_ref().map(|m| PathBuf::from(&m.path))
    }

    /// Takes the disc out (GESN MEDIA REMOVAL), unless an initiator prevents it.
    fn unload(&self, lu: &Lu, all: &[u64]) -> Result<Option<PathBuf>, Sense> {
        if lu.medium.lock().prevent_removal() {
            return Err(Sense::illegal(asc::MEDIUM_REMOVAL_PREVENTED));
        }
        let path = self.state.lock().medium.as_ref().map(|m| m.path.clone());
        super::change_medium(lu, None, false, all)
            .map_err(|_| Sense::illegal(asc::MEDIUM_REMOVAL_PREVENTED))?;
        Ok(path.map(PathBuf::from))
    }
}
