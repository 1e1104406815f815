//! `--op new --mode logicalunit` for the removable-medium device types: a tape drive
//! (`--device-type tape`, bstype `ssc`, `-b` the cartridge image or `None`) and a
//! media changer (`--device-type changer`; its `-b` file is only recorded, as tgt's
//! VTL script passes one; it is configured with `--op update --params`).

use std::sync::Arc;

use rtgt_scsi::{DeviceType, MediaLuConfig};

use crate::control::Request;
use crate::error::AdmError;
use crate::mgmt::scsi_err;
use crate::params::parse_kv_list;
use crate::Target;

pub(crate) fn new_lu(
    t: &Arc<Target>,
    tid: u32,
    lun: u64,
    device_type: DeviceType,
    req: &Request,
) -> Result<String, AdmError> {
    // tgt's backing store for tapes is `ssc`; a script that names none, or rdwr (as
    // tgt's own VTL script does), means the same.
    let bstype = req.bstype.as_deref().unwrap_or("");
    if !matches!(bstype, "" | "ssc" | "smc" | "rdwr") {
        return Err(AdmError::invalid(format!(
            "bstype {bstype} can't back a {} (use ssc)",
            device_type.name()
        )));
    }
    if req.bsoflags.as_deref().is_some_and(|f| !f.is_empty()) {
        return Err(AdmError::invalid(format!(
            "--bsoflags do not apply to a {}",
            device_type.name()
        )));
    }
    let params = match req.params.as_deref() {
        Some(p) => parse_kv_list(p).map_err(AdmError::Invalid)?,
        None => Vec::new(),
    };
    let path = req.backing_store.clone().unwrap_or_default();
    t.scsi
        .add_media_lu(
            lun,
            MediaLuConfig {
                device_type,
                path: path.clone(),
                params,
            },
        )
        .map_err(|e| scsi_err(tid, e))?;
    tracing::info!(
        tid,
        lun,
        path,
        device_type = device_type.name(),
        "logical unit created"
    );
    Ok(String::new())
}
