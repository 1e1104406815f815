//! Removable-medium devices of a target: tape drives (SSC-3), media changers (SMC-3),
//! and the [`TapeHandle`] through which a changer moves cartridges into drives.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::ScsiTarget;
use crate::cdb::Outcome;
use crate::lu::Lu;
use crate::opcodes::Features;
use crate::params::LuParams;
use crate::sense::asc;
use crate::spc::{self, op};
use crate::ssc::{self, medium::Medium, TapeDrive};
use crate::{inquiry, sbc, DeviceType, LuInfo, ScsiCommand, ScsiError, ScsiResult};

/// What creating a tape drive (or a changer) takes: no block backing store, but an
/// optional cartridge image for a drive.
#[derive(Debug, Clone)]
pub struct MediaLuConfig {
    pub device_type: DeviceType,
    /// A drive's cartridge image, empty (or `None`) for an empty drive.
    pub path: String,
    pub params: Vec<(String, String)>,
}

/// Defaults a removable-medium LU starts from, before `--params`.
fn defaults(t: DeviceType) -> Vec<(String, String)> {
    let product = match t {
        DeviceType::Tape => "VIRTUAL-TAPE",
        DeviceType::Changer => "VIRTUAL-CHANGER",
        _ => "VIRTUAL-DEVICE",
    };
    let removable = if t == DeviceType::Tape { "1" } else { "0" };
    vec![
        ("product_id".into(), product.into()),
        ("removable".into(), removable.into()),
    ]
}

fn no_path(p: &str) -> bool {
    p.is_empty() || p.eq_ignore_ascii_case("none")
}

impl ScsiTarget {
    /// Creates a tape drive LU, with the cartridge image `cfg.path` loaded if given.
    pub fn add_media_lu(&self, lun: u64, cfg: MediaLuConfig) -> Result<(), ScsiError> {
        if lun == 0 {
            return Err(ScsiError::Lun0Reserved);
        }
        if self.luns.read().contains_key(&lun) {
            return Err(ScsiError::LunExists(lun));
        }
        let mut pairs = defaults(cfg.device_type);
        pairs.extend(cfg.params.iter().cloned());
        let params = LuParams::default().apply(&pairs)?;
        let mut lu = Lu::new(
            lun,
            cfg.device_type,
            None,
            512,
            if no_path(&cfg.path) {
                "None".into()
            } else {
                cfg.path.clone()
            },
            String::new(),
            params,
        );
        match cfg.device_type {
            DeviceType::Tape => {
                let medium = if no_path(&cfg.path) {
                    None
                } else {
                    let ro = lu.params.read().readonly;
                    Some(Medium::open(Path::new(&cfg.path), ro).map_err(|e| {
                        ScsiError::BadParam(format!("tape image {}: {e}", cfg.path))
                    })?)
                };
                lu.tape = Some(Arc::new(TapeDrive::new(medium)));
            }
            DeviceType::Changer => {
                lu.changer = Some(Arc::new(crate::smc::Changer::default()));
            }
            other => {
                return Err(ScsiError::BadParam(format!(
                    "device type {} has no removable medium",
                    other.name()
                )))
            }
        }
        let lu = Arc::new(lu);
        {
            let mut luns = self.luns.write();
            if luns.contains_key(&lun) {
                return Err(ScsiError::LunExists(lun));
            }
            luns.insert(lun, lu.clone());
        }
        self.directory.insert(&self.name, &lu);
        self.luns_changed(Some(lun));
        Ok(())
    }

    /// The SPC-4 commands a tape drive or changer shares with every LU.
    fn media_common(&self, lu: &Lu, cmd: &ScsiCommand, cdb: &[u8]) -> Option<Outcome<ScsiResult>> {
        let nexus = &*cmd.nexus;
        Some(match cdb[0] {
            op::INQUIRY => inquiry::inquiry(lu, &self.name, nexus, cdb).map(ScsiResult::with_data),
            op::REPORT_LUNS => spc::report_luns(&self.lun_list(nexus), cdb),
            op::MAINTENANCE_IN => spc::maintenance_in(lu, Features::default(), cdb),
            op::RESERVE_6 | op::RESERVE_10 => spc::reserve(lu, nexus, cdb),
            op::RELEASE_6 | op::RELEASE_10 => spc::release(lu, nexus, cdb),
            op::PREVENT_ALLOW => sbc::prevent_allow_cmd(lu, nexus.id, cdb),
            _ => return None,
        })
    }

    /// A tape drive's commands (SSC-3).
    pub(super) async fn tape(
        &self,
        lu: &Arc<Lu>,
        cmd: &ScsiCommand,
        cdb: &[u8],
        data: &[u8],
    ) -> Outcome<ScsiResult> {
        let drive = lu.tape.clone().expect("a tape LU has a drive");
        if cdb[0] == op::REQUEST_SENSE {
            let state = ssc::request_sense_state(lu, &drive);
            return spc::request_sense(Some(lu), &cmd.nexus, cdb, state);
        }
        if let Some(r) = self.media_common(lu, cmd, cdb) {
            return r;
        }
        ssc::execute(lu, &drive, cdb, data).await
    }

    /// A media changer's commands (SMC-3).
    pub(super) async fn changer(
        &self,
        lu: &Arc<Lu>,
        cmd: &ScsiCommand,
        cdb: &[u8],
        not_ready: Option<crate::sense::Sense>,
    ) -> Outcome<ScsiResult> {
        if cdb[0] == op::REQUEST_SENSE {
            return spc::request_sense(Some(lu), &cmd.nexus, cdb, not_ready);
        }
        if let Some(r) = self.media_common(lu, cmd, cdb) {
            return r;
        }
        if let Some(s) = not_ready {
            if !matches!(cdb[0], op::MODE_SENSE_6 | op::MODE_SENSE_10) {
                return Err(s.into());
            }
        }
        let changer = lu.changer.clone().expect("a changer LU has elements");
        let drives = self.directory.drives.read().clone();
        // A move is saved by `run` (see crate::saved_state).
        crate::smc::execute(lu, &changer, drives, cdb).await
    }

    /// `--op update --params` of tgt's changer syntax: elements, cartridges, drives.
    /// Every I_T nexus hears that the inventory may have changed (SMC-3 5.x: NOT
    /// READY TO READY CHANGE, MEDIUM MAY HAVE CHANGED).
    pub(super) fn configure_changer(
        &self,
        lu: &Lu,
        params: &[(String, String)],
    ) -> Result<(), ScsiError> {
        let changer = lu.changer.as_ref().expect("checked");
        let mut inv = changer.inventory.lock();
        let mut next = crate::smc::inventory::Inventory {
            media_home: inv.media_home.clone(),
            elements: inv.elements.clone(),
        };
        let change = next.configure(params).map_err(ScsiError::BadParam)?;
        if let crate::smc::inventory::Change::Drive(tid, lun) = change {
            let found = self
                .directory
                .drives
                .read()
                .as_ref()
                .and_then(|f| f(tid, lun))
                .is_some();
            if !found {
                return Err(ScsiError::BadParam(format!(
                    "tid={tid},lun={lun}: no tape drive there (create it first with --device-type tape)"
                )));
            }
        }
        *inv = next;
        drop(inv);
        lu.ua
            .establish(self.nexus_ids(), asc::NOT_READY_TO_READY_CHANGE);
        Ok(())
    }

    /// A changer's inventory as the `--params` lines that build it again (None: `lun`
    /// is not a changer).
    pub fn changer_setup(&self, lun: u64) -> Option<Vec<String>> {
        let lu = self.luns.read().get(&lun).cloned()?;
        let changer = lu.changer.as_ref()?;
        let lines = crate::smc::setup::lines(&changer.inventory.lock());
        Some(lines)
    }

    /// A handle on tape drive `lun`, for a changer that moves cartridges into it.
    pub fn tape_handle(&self, lun: u64) -> Option<TapeHandle> {
        let lu = self.luns.read().get(&lun).cloned()?;
        lu.tape.as_ref()?;
        Some(TapeHandle {
            lu,
            nexuses: self.nexus_ids(),
            target: self.name.clone(),
        })
    }
}

/// A tape drive as a media changer sees it: a place to load cartridges into.
pub struct TapeHandle {
    lu: Arc<Lu>,
    /// The I_T nexuses of the drive's target, told of a medium change.
    nexuses: Vec<u64>,
    target: String,
}

/// Whether `--params` configure a changer's elements (rather than SCSI parameters).
pub(super) fn is_changer_config(params: &[(String, String)]) -> bool {
    params
        .iter()
        .any(|(k, _)| matches!(k.trim(), "media_home" | "element_type"))
}

impl TapeHandle {
    fn drive(&self) -> &TapeDrive {
        self.lu.tape.as_ref().expect("checked when made")
    }

    /// Loads the cartridge image at `path` (blocking: it indexes the image). The drive
    /// goes online and every I_T nexus hears NOT READY TO READY CHANGE, MEDIUM MAY
    /// HAVE CHANGED (SSC-3 4.2.x, SPC-4 table F.1).
    pub fn load(&self, path: &Path) -> Result<(), String> {
        // An offline drive counts as empty: tgt's VTL script creates drives with an
        // image and online=0 before the changer loads them.
        if self.drive().describe().is_some() && self.lu.params.read().online {
            return Err("the drive already holds a cartridge".into());
        }
        self.drive().remove();
        let ro = self.lu.params.read().readonly;
        self.drive()
            .insert(path, ro)
            .map_err(|e| format!("tape image {}: {e}", path.display()))?;
        self.lu.params.write().online = true;
        self.lu
            .ua
            .establish(self.nexuses.iter().copied(), asc::NOT_READY_TO_READY_CHANGE);
        Ok(())
    }

    /// Takes the cartridge out (after flushing what was written); its image path.
    pub fn unload(&self) -> Option<PathBuf> {
        let p = self.drive().remove()?;
        self.lu
            .ua
            .establish(self.nexuses.iter().copied(), asc::NOT_READY_TO_READY_CHANGE);
        Some(p)
    }

    /// An initiator has prevented medium removal (PREVENT ALLOW MEDIUM REMOVAL).
    pub fn removal_prevented(&self) -> bool {
        self.lu.medium.lock().prevent_removal()
    }

    /// The drive's unit serial number (its device identifier in READ ELEMENT STATUS).
    pub fn serial(&self) -> String {
        inquiry::serial(&self.lu, &self.target)
    }

    /// The vendor and product identification of the drive's INQUIRY data.
    pub fn vendor_product(&self) -> (String, String) {
        let p = self.lu.params.read();
        (p.vendor_id.clone(), p.product_id.clone())
    }
}

impl LuInfo {
    /// Fills in what `show` says of a tape drive's cartridge.
    pub(super) fn with_media(mut self, lu: &Lu) -> Self {
        if let Some(changer) = &lu.changer {
            self.backing_store_type = "smc".into();
            self.media = crate::smc::describe(&changer.inventory.lock());
        }
        if let Some(drive) = &lu.tape {
            self.backing_store_type = "ssc".into();
            match drive.describe() {
                Some((path, label, format, used)) => {
                    self.backing_store_path = path;
                    self.size_bytes = label.capacity;
                    self.media.push(format!(
                        "Cartridge: {} ({}, {} format), {} MB used of {} MB",
                        label.barcode,
                        label.kind.name(),
                        format.name(),
                        mb(used),
                        mb(label.capacity),
                    ));
                }
                None => {
                    self.backing_store_path = "None".into();
                    self.size_bytes = 0;
                    self.media.push("Cartridge: none".into());
                }
            }
        }
        self
    }
}

/// Decimal megabytes, rounded, as `show` prints sizes.
fn mb(bytes: u64) -> u64 {
    bytes.saturating_add(500_000) / 1_000_000
}
