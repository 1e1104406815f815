//! Raw SCSI commands at the handler: `-p call` (the SCSI kind: every CDB rtgtd does
//! not keep for itself comes here) and `-p excpt` (the block kind's exception path:
//! only CDBs whose opcode rtgtd does not know).
//!
//! With `-p call` rtgt-fileio is the device server, as fileio_tgt is with scst_user's
//! PARSE_CALL: it answers every CDB with a SCSI disk of its own, the SBC-4 emulation of
//! the `rtgt-scsi` crate running in this process over the file (an LU at LUN 1 of a
//! private target; rtgtd's REPORT LUNS, reservations, unit attentions and task
//! management stay rtgtd's). Both modes also answer the vendor-specific opcode
//! [`REPORT_HANDLER`], which rtgtd does not know, so a test can see a CDB reach the
//! handler raw.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use rtgt_scsi::{status, DeviceType, ItNexus, LuConfig, ScsiCommand, ScsiResult, ScsiTarget};

use crate::device::Modes;

/// Vendor-specific opcode (SPC-4 4.2.5.1: C0h..FFh) rtgt-fileio answers with its
/// identification: `rtgt-fileio <name> parse=<mode>`, NUL-free ASCII.
pub const REPORT_HANDLER: u8 = 0xc0;

/// Fixed-format sense ILLEGAL REQUEST with `asc` (SPC-4 4.5.3).
fn illegal_request(asc: u8) -> ScsiResult {
    let mut s = vec![0u8; 18];
    s[0] = 0x70;
    s[2] = 0x05;
    s[7] = 10;
    s[12] = asc;
    ScsiResult {
        status: status::CHECK_CONDITION,
        sense: s,
        ..ScsiResult::default()
    }
}

/// INVALID COMMAND OPERATION CODE (SPC-4 table 49: 20h/00h).
fn invalid_opcode() -> ScsiResult {
    illegal_request(0x20)
}

/// INVALID FIELD IN CDB (24h/00h).
pub fn invalid_field_in_cdb() -> ScsiResult {
    illegal_request(0x24)
}

/// A SCSI disk served in this process (`-p call`).
pub struct Emulated {
    target: ScsiTarget,
    rt: tokio::runtime::Runtime,
    nexuses: Mutex<HashMap<u64, Arc<ItNexus>>>,
    tags: AtomicU64,
}

const LUN: u64 = 1;

impl Emulated {
    pub fn open(
        name: &str,
        path: &Path,
        modes: Modes,
        block: u32,
        size: u64,
    ) -> Result<Self, String> {
        if block != 512 && block != 4096 {
            return Err(format!(
                "-p call: -b {block}: the SCSI disk takes 512 or 4096"
            ));
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let opts = rtgt_backstore::OpenOptions {
            path: path.to_path_buf(),
            direct: modes.direct,
            sync: modes.write_through,
            read_only: modes.read_only,
            size: modes.nullio.then_some(size),
            bsopts: Vec::new(),
            block_size: block,
        };
        let store = rtgt_backstore::open(if modes.nullio { "null" } else { "rdwr" }, &opts)
            .map_err(|e| e.to_string())?;
        let mut params = Vec::new();
        if modes.read_only {
            params.push(("readonly".to_string(), "1".to_string()));
        }
        if modes.nv_cache {
            params.push(("nv_cache".to_string(), "on".to_string()));
        }
        let target = ScsiTarget::new(&format!("rtgt-fileio:{name}"));
        target
            .add_lu(
                LUN,
                LuConfig {
                    device_type: DeviceType::Disk,
                    store: Some(store),
                    block_size: block,
                    path: path.display().to_string(),
                    bsoflags: String::new(),
                    params,
                },
            )
            .map_err(|e| e.to_string())?;
        Ok(Emulated {
            target,
            rt,
            nexuses: Mutex::new(HashMap::new()),
            tags: AtomicU64::new(0),
        })
    }

    /// rtgtd's I_T nexus `id` as this target knows it (its names are rtgtd's business:
    /// reservations, which need them, stay there).
    fn nexus(&self, id: u64) -> Arc<ItNexus> {
        self.nexuses
            .lock()
            .entry(id)
            .or_insert_with(|| {
                Arc::new(ItNexus {
                    id,
                    initiator_name: format!("rtgtd-nexus-{id}"),
                    initiator_port: format!("rtgtd-nexus-{id},i,0x0"),
                    target_port: "rtgt-fileio,t,0x1".into(),
                    relative_port_id: 1,
                    target_port_group: 1,
                })
            })
            .clone()
    }

    pub fn execute(&self, nexus: u64, cdb: &[u8], data_out: Vec<u8>, data_in: u32) -> ScsiResult {
        let cmd = ScsiCommand {
            nexus: self.nexus(nexus),
            lun: LUN,
            cdb: cdb.into(),
            data_out,
            expected_data_in: data_in,
            attr: Default::default(),
            tag: self.tags.fetch_add(1, Ordering::Relaxed),
        };
        self.rt.block_on(self.target.execute(cmd))
    }
}

/// Answers one raw CDB: [`REPORT_HANDLER`] here, the rest by the emulated disk
/// (`-p call`) or INVALID COMMAND OPERATION CODE (`-p excpt`: rtgtd already did all it
/// knows).
pub fn answer(
    emulated: Option<&Emulated>,
    ident: &str,
    nexus: u64,
    cdb: &[u8],
    data_out: Vec<u8>,
    data_in: u32,
) -> ScsiResult {
    match (cdb.first(), emulated) {
        (Some(&REPORT_HANDLER), _) => ScsiResult::with_data(ident.as_bytes().to_vec()),
        (Some(_), Some(e)) => e.execute(nexus, cdb, data_out, data_in),
        _ => invalid_opcode(),
    }
}
