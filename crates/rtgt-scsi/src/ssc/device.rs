//! The tape drive as a device type: what the SCSI core asks of it, and how a media
//! changer loads cartridges into it (the removable-medium seam).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::medium::Medium;
use super::TapeDrive;
use crate::cdb::Outcome;
use crate::device::{Ctx, DeviceServer, MediumDrive};
use crate::inquiry::TYPE_TAPE;
use crate::lu::Lu;
use crate::opcodes::{Features, Table};
use crate::params::LuParams;
use crate::sense::{asc, Sense};
use crate::{LuConfig, LuInfo, ScsiError, ScsiResult};

/// Decimal megabytes, rounded, as `show` prints sizes.
fn mb(bytes: u64) -> u64 {
    bytes.saturating_add(500_000) / 1_000_000
}

fn no_path(p: &str) -> bool {
    p.is_empty() || p.eq_ignore_ascii_case("none")
}

impl TapeDrive {
    pub fn table(_: Features) -> &'static Table {
        static T: OnceLock<Table> = OnceLock::new();
        T.get_or_init(|| Table::build(&[super::opcodes::TAPE]))
    }

    /// A tape drive, with the cartridge image `cfg.path` loaded if given.
    pub fn new_lu(lun: u64, cfg: LuConfig) -> Result<Lu, ScsiError> {
        let mut pairs = vec![
            ("product_id".into(), "VIRTUAL-TAPE".into()),
            ("removable".into(), "1".into()),
        ];
        pairs.extend(cfg.params.iter().cloned());
        let params = LuParams::default().apply(&pairs)?;
        let medium = if no_path(&cfg.path) {
            None
        } else {
            Some(
                Medium::open(Path::new(&cfg.path), params.readonly)
                    .map_err(|e| ScsiError::BadParam(format!("tape image {}: {e}", cfg.path)))?,
            )
        };
        let path = if no_path(&cfg.path) {
            "None".into()
        } else {
            cfg.path
        };
        Ok(Lu::new(
            lun,
            TapeDrive::new(medium).into(),
            None,
            512,
            path,
            String::new(),
            params,
        ))
    }

    /// A tape drive's commands (SSC-3), and the SPC ones it shares with a disk.
    #[allow(clippy::ptr_arg)] // the registry calls every device type alike; a disk takes the Vec
    pub async fn execute(&self, ctx: &Ctx<'_>, data: &mut Vec<u8>) -> Outcome<ScsiResult> {
        if let Some(r) = ctx.shared_spc() {
            return r;
        }
        super::execute(ctx.lu, self, ctx.cdb, data).await
    }
}

impl DeviceServer for TapeDrive {
    fn name(&self) -> &'static str {
        "tape"
    }

    fn peripheral_type(&self) -> u8 {
        TYPE_TAPE
    }

    fn version_descriptor(&self) -> Option<u16> {
        Some(0x0400) // SSC-3
    }

    /// A tape cartridge is always removable.
    fn removable(&self, _: &Lu) -> bool {
        true
    }

    fn data_out_len(&self, _: &Lu, cdb: &[u8]) -> Option<u64> {
        super::data_out_len(self, cdb)
    }

    fn not_ready(&self, lu: &Lu) -> Option<Sense> {
        super::request_sense_state(lu, self)
    }

    fn fill_info(&self, _: &Lu, info: &mut LuInfo) {
        info.backing_store_type = "ssc".into();
        match self.describe() {
            Some((path, label, format, used)) => {
                info.backing_store_path = path;
                info.size_bytes = label.capacity;
                info.media.push(format!(
                    "Cartridge: {} ({}, {} format), {} MB used of {} MB",
                    label.barcode,
                    label.kind.name(),
                    format.name(),
                    mb(used),
                    mb(label.capacity),
                ));
            }
            None => {
                info.backing_store_path = "None".into();
                info.size_bytes = 0;
                info.media.push("Cartridge: none".into());
            }
        }
    }

    fn medium_drive(&self) -> Option<&dyn MediumDrive> {
        Some(self)
    }
}

impl MediumDrive for TapeDrive {
    /// The drive goes online at beginning-of-partition (SSC-3 4.2.x).
    fn load(&self, lu: &Lu, path: &Path, all: &[u64]) -> Result<(), String> {
        // An offline drive counts as empty: tgt's VTL script creates drives with an
        // image and online=0 before the changer loads them.
        if self.describe().is_some() && lu.params.read().online {
            return Err("the drive already holds a cartridge".into());
        }
        self.remove();
        let ro = lu.params.read().readonly;
        self.insert(path, ro)
            .map_err(|e| format!("tape image {}: {e}", path.display()))?;
        lu.params.write().online = true;
        lu.ua
            .establish(all.iter().copied(), asc::NOT_READY_TO_READY_CHANGE);
        Ok(())
    }

    /// Flushes what was written, then takes the cartridge out.
    fn unload(&self, lu: &Lu, all: &[u64]) -> Result<Option<PathBuf>, Sense> {
        if lu.medium.lock().prevent_removal() {
            return Err(Sense::illegal(asc::MEDIUM_REMOVAL_PREVENTED));
        }
        let p = self.remove();
        if p.is_some() {
            lu.ua
                .establish(all.iter().copied(), asc::NOT_READY_TO_READY_CHANGE);
        }
        Ok(p)
    }
}
