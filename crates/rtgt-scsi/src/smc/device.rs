//! The media changer as a device type: what the SCSI core asks of it, and its
//! configuration with tgt's `--op update --params` syntax (elements, cartridges, and
//! data transfer elements that are drives of any device type that takes media).

use std::sync::OnceLock;

use super::inventory::{Change, Inventory};
use super::Changer;
use crate::cdb::Outcome;
use crate::device::{Ctx, DeviceServer};
use crate::inquiry::TYPE_CHANGER;
use crate::lu::Lu;
use crate::opcodes::{Features, Table};
use crate::params::LuParams;
use crate::sense::{asc, Sense};
use crate::spc::op;
use crate::target::ScsiTarget;
use crate::{LuConfig, LuInfo, ScsiError, ScsiResult};

/// Whether `--params` configure a changer's elements (rather than SCSI parameters).
fn is_changer_config(params: &[(String, String)]) -> bool {
    params
        .iter()
        .any(|(k, _)| matches!(k.trim(), "media_home" | "element_type"))
}

impl Changer {
    pub fn table(_: Features) -> &'static Table {
        static T: OnceLock<Table> = OnceLock::new();
        T.get_or_init(|| Table::build(&[super::opcodes::CHANGER]))
    }

    /// A changer with no elements: they come with `--op update --params` (its `-b`
    /// file is only recorded, as tgt's VTL script passes one).
    pub fn new_lu(lun: u64, cfg: LuConfig) -> Result<Lu, ScsiError> {
        let mut pairs = vec![
            ("product_id".into(), "VIRTUAL-CHANGER".into()),
            ("removable".into(), "0".into()),
        ];
        pairs.extend(cfg.params.iter().cloned());
        let params = LuParams::default().apply(&pairs)?;
        let path = if cfg.path.is_empty() || cfg.path.eq_ignore_ascii_case("none") {
            "None".into()
        } else {
            cfg.path
        };
        Ok(Lu::new(
            lun,
            Changer::default().into(),
            None,
            512,
            path,
            String::new(),
            params,
        ))
    }

    /// A media changer's commands (SMC-3).
    pub async fn execute(&self, ctx: &Ctx<'_>, _: &mut Vec<u8>) -> Outcome<ScsiResult> {
        if let Some(r) = ctx.shared_spc() {
            return r;
        }
        let (lu, cdb) = (ctx.lu, ctx.cdb);
        if let Some(s) = lu.medium_not_ready() {
            if !matches!(cdb[0], op::MODE_SENSE_6 | op::MODE_SENSE_10) {
                return Err(s.into());
            }
        }
        let drives = ctx.target.directory().drive_resolver();
        // A move is saved by the core (see `changes_saved_state`).
        super::execute(lu, self, drives, cdb).await
    }
}

impl DeviceServer for Changer {
    fn name(&self) -> &'static str {
        "changer"
    }

    fn peripheral_type(&self) -> u8 {
        TYPE_CHANGER
    }

    fn version_descriptor(&self) -> Option<u16> {
        Some(0x0480) // SMC-3
    }

    fn not_ready(&self, lu: &Lu) -> Option<Sense> {
        lu.medium_not_ready()
    }

    /// MOVE MEDIUM, EXCHANGE MEDIUM (SMC-3 6.6, 6.3): the changer's inventory and what
    /// a drive holds.
    fn changes_saved_state(&self, cdb: &[u8]) -> bool {
        matches!(cdb[0], 0xa5 | 0xa6)
    }

    fn fill_info(&self, _: &Lu, info: &mut LuInfo) {
        info.backing_store_type = "smc".into();
        info.media = super::describe(&self.inventory.lock());
    }

    /// tgt's changer syntax: elements, cartridges, drives. Every I_T nexus hears that
    /// the inventory may have changed (SMC-3: NOT READY TO READY CHANGE, MEDIUM MAY
    /// HAVE CHANGED).
    fn configure(
        &self,
        target: &ScsiTarget,
        lu: &Lu,
        params: &[(String, String)],
    ) -> Option<Result<(), ScsiError>> {
        if !is_changer_config(params) {
            return None;
        }
        let mut inv = self.inventory.lock();
        let mut next = Inventory {
            media_home: inv.media_home.clone(),
            elements: inv.elements.clone(),
        };
        let change = match next.configure(params) {
            Ok(c) => c,
            Err(e) => return Some(Err(ScsiError::BadParam(e))),
        };
        if let Change::Drive(tid, lun) = change {
            let found = target
                .directory()
                .drive_resolver()
                .and_then(|f| f(tid, lun))
                .is_some();
            if !found {
                return Some(Err(ScsiError::BadParam(format!(
                    "tid={tid},lun={lun}: no drive there that takes media (create it first with --device-type tape or --device-type cd)"
                ))));
            }
        }
        *inv = next;
        drop(inv);
        lu.ua
            .establish(target.nexus_ids(), asc::NOT_READY_TO_READY_CHANGE);
        Some(Ok(()))
    }

    fn setup_lines(&self) -> Option<Vec<String>> {
        Some(super::setup::lines(&self.inventory.lock()))
    }
}
