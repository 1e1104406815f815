//! The SCSI target device: its LUN map and the routing of commands to logical units.
//! (Skeleton: the SCSI core issue fills in SPC/SBC behind this API.)

use std::collections::BTreeMap;

use parking_lot::RwLock;

use crate::sense::{key, Sense};
use crate::{
    status, ItNexus, LuConfig, LuInfo, ScsiCommand, ScsiError, ScsiResult, TmFunction,
};

/// Answer to a task management request (SAM-5 7.x service responses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TmResponse {
    FunctionComplete,
    FunctionRejected,
    IncorrectLun,
    TaskDoesNotExist,
}

pub struct ScsiTarget {
    name: String,
    luns: RwLock<BTreeMap<u64, LuConfig>>,
}

impl ScsiTarget {
    /// A target device named `name` (its iSCSI name), with LUN 0 as its controller.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            luns: RwLock::new(BTreeMap::new()),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn add_lu(&self, lun: u64, cfg: LuConfig) -> Result<(), ScsiError> {
        if lun == 0 {
            return Err(ScsiError::Lun0Reserved);
        }
        let mut luns = self.luns.write();
        if luns.contains_key(&lun) {
            return Err(ScsiError::LunExists(lun));
        }
        luns.insert(lun, cfg);
        Ok(())
    }

    pub fn remove_lu(&self, lun: u64) -> Result<(), ScsiError> {
        self.luns
            .write()
            .remove(&lun)
            .map(|_| ())
            .ok_or(ScsiError::NoSuchLun(lun))
    }

    /// Applies `--params` changes to an existing LU (`--op update --mode logicalunit`).
    pub fn update_lu(&self, lun: u64, _params: &[(String, String)]) -> Result<(), ScsiError> {
        if self.luns.read().contains_key(&lun) {
            Ok(())
        } else {
            Err(ScsiError::NoSuchLun(lun))
        }
    }

    pub fn lu_info(&self) -> Vec<LuInfo> {
        let mut v = vec![LuInfo {
            lun: 0,
            device_type: "controller".into(),
            online: true,
            backing_store_type: "null".into(),
            backing_store_path: "None".into(),
            ..Default::default()
        }];
        for (lun, cfg) in self.luns.read().iter() {
            v.push(LuInfo {
                lun: *lun,
                device_type: cfg.device_type.name().into(),
                size_bytes: cfg.store.size(),
                block_size: cfg.block_size,
                online: true,
                backing_store_type: cfg.store.kind().into(),
                backing_store_path: cfg.path.clone(),
                backing_store_flags: cfg.bsoflags.clone(),
                ..Default::default()
            });
        }
        v
    }

    pub async fn execute(&self, _cmd: ScsiCommand) -> ScsiResult {
        ScsiResult {
            status: status::CHECK_CONDITION,
            sense: Sense::new(key::ILLEGAL_REQUEST, 0x20, 0x00).to_fixed(),
            ..Default::default()
        }
    }

    /// The side effects of a task management function on SCSI state (unit attentions,
    /// reservations). Aborting in-flight tasks is the transport's part.
    pub fn task_management(&self, _nexus: &ItNexus, _func: TmFunction, _lun: u64) -> TmResponse {
        TmResponse::FunctionComplete
    }

    /// The I_T nexus is gone (session closed): release what it held (SPC-2 reservations).
    pub fn nexus_loss(&self, _nexus: &ItNexus) {}
}
