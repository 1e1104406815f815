//! `--op new --mode logicalunit --device-type pt --bstype sg|bsg -b NODE`: a real SCSI
//! device passed through (tgt's syntax). The node is checked and opened by the device
//! type (`rtgt_scsi`'s pt module): an sg node for bstype sg, a bsg node for bsg.

use std::sync::Arc;

use rtgt_scsi::{DeviceType, LuConfig};

use crate::control::Request;
use crate::error::AdmError;
use crate::mgmt::scsi_err;
use crate::params::parse_kv_list;
use crate::Target;

/// The backing store types of a pass-through LU.
pub(crate) fn is_pt_bstype(bstype: &str) -> bool {
    matches!(bstype, "sg" | "bsg")
}

pub(crate) fn new_lu(
    t: &Arc<Target>,
    tid: u32,
    lun: u64,
    req: &Request,
) -> Result<String, AdmError> {
    let bstype = req.bstype.as_deref().unwrap_or("");
    if !is_pt_bstype(bstype) {
        return Err(AdmError::invalid(format!(
            "device type pt needs --bstype sg (-b /dev/sgN) or --bstype bsg (-b /dev/bsg/H:C:T:L){}",
            if bstype.is_empty() {
                String::new()
            } else {
                format!(", not {bstype}")
            }
        )));
    }
    let path = req.backing_store.clone().unwrap_or_default();
    if path.is_empty() {
        return Err(AdmError::invalid(format!(
            "--backing-store (-b) is required for a pass-through LU: the {} node",
            if bstype == "bsg" {
                "/dev/bsg/H:C:T:L"
            } else {
                "/dev/sgN"
            }
        )));
    }
    if req.bsoflags.as_deref().is_some_and(|f| !f.is_empty()) {
        return Err(AdmError::invalid(
            "--bsoflags do not apply to a pass-through LU",
        ));
    }
    if req.bsopts.as_deref().is_some_and(|f| !f.is_empty()) {
        return Err(AdmError::invalid(
            "--bsopts do not apply to a pass-through LU",
        ));
    }
    let mut params = match req.params.as_deref() {
        Some(p) => parse_kv_list(p).map_err(AdmError::Invalid)?,
        None => Vec::new(),
    };
    params.retain(|(k, _)| k != "bstype");
    params.push(("bstype".into(), bstype.into()));
    let cfg = LuConfig {
        device_type: DeviceType::PassThrough,
        store: None,
        block_size: 512,
        path: path.clone(),
        bsoflags: String::new(),
        params,
    };
    t.scsi.add_lu(lun, cfg).map_err(|e| scsi_err(tid, e))?;
    tracing::info!(tid, lun, path, bstype, "pass-through logical unit created");
    Ok(String::new())
}
