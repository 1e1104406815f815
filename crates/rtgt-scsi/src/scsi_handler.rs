//! `--device-type handler --bstype handler -b NAME`: a logical unit whose device server
//! is a separate process, a device handler of the SCSI kind (docs/handler-protocol.md;
//! rtgt's counterpart of tcmu-runner's `handle_cmd` and scst_user's PARSE_CALL). The
//! handler gets the raw CDB with its Data-Out and answers status, sense and Data-In.
//!
//! rtgtd keeps what belongs to its own LUN map, nexuses and ports, as LIO does for
//! TCMU (`passthrough_parse_cdb`):
//! - REPORT LUNS and unit attentions (the core, before a command reaches here);
//! - task management (the core; ABORT TASK of a forwarded command and LOGICAL UNIT
//!   RESET, from `Lu::reset`, are passed on to the handler);
//! - SPC-2 RESERVE / RELEASE and PERSISTENT RESERVE IN / OUT per I_T nexus, unless the
//!   handler said OWN_RESERVATIONS (LIO's PASSTHROUGH_PGR);
//! - ALUA: REPORT / SET TARGET PORT GROUPS and the access states;
//! - VPD page 83h's target port designators (the handler's LU designators stay), and a
//!   Block Limits page that promises no more than an arena slot carries.
//!
//! Until a handler first attaches the LU answers INQUIRY with peripheral qualifier
//! 001b (SPC-4 6.6.2: "not currently connected") and everything else with NOT READY,
//! LOGICAL UNIT COMMUNICATION FAILURE; afterwards commands wait for a handler up to the
//! store's `hold=` (see rtgt_backstore::handler).

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use rtgt_backstore::{BackingStore, CdbRequest, RawCdbs};

use crate::cdb::{invalid_cdb, Outcome};
use crate::device::{Ctx, DeviceServer};
use crate::lu::Lu;
use crate::opcodes::Table;
use crate::params::LuParams;
use crate::sense::{asc, key, Sense};
use crate::spc::{self, op};
use crate::store_error::LU_COMMUNICATION_FAILURE;
use crate::{status, LuConfig, ScsiError, ScsiResult};

const TYPE_DISK: u8 = 0x00;

/// A logical unit served by a SCSI-kind handler.
pub(crate) struct ScsiHandler {
    /// PERIPHERAL DEVICE TYPE from the handler's last standard INQUIRY data (a disk
    /// until one answered).
    ptype: AtomicU8,
}

impl ScsiHandler {
    pub fn table(f: crate::opcodes::Features) -> &'static Table {
        // Every opcode may mean something to the handler; REPORT SUPPORTED OPERATION
        // CODES goes to it.
        crate::pt::PassThrough::table(f)
    }

    pub fn new_lu(lun: u64, cfg: LuConfig) -> Result<Lu, ScsiError> {
        if cfg.block_size != 512 && cfg.block_size != 4096 {
            return Err(ScsiError::BadBlockSize(cfg.block_size));
        }
        let store = cfg
            .store
            .filter(|s| matches!(s.raw_cdbs(), RawCdbs::All { .. }))
            .ok_or_else(|| {
                ScsiError::BadParam(
                    "device type handler needs --bstype handler (a SCSI-kind device handler)"
                        .into(),
                )
            })?;
        let params = LuParams::default().apply(&cfg.params)?;
        Ok(Lu::new(
            lun,
            ScsiHandler {
                ptype: AtomicU8::new(TYPE_DISK),
            }
            .into(),
            Some(store),
            cfg.block_size,
            cfg.path,
            cfg.bsoflags,
            params,
        ))
    }

    fn store(lu: &Lu) -> &Arc<dyn BackingStore> {
        lu.store.as_ref().expect("a handler LU has its store")
    }

    fn unreachable() -> Sense {
        Sense::of(key::NOT_READY, LU_COMMUNICATION_FAILURE)
    }

    pub async fn execute(&self, ctx: &Ctx<'_>, data: &mut Vec<u8>) -> Outcome<ScsiResult> {
        let (lu, cdb, nexus) = (ctx.lu, ctx.cdb, ctx.nexus());
        let store = Self::store(lu);
        let own_reservations = matches!(
            store.raw_cdbs(),
            RawCdbs::All {
                own_reservations: true
            }
        );
        match cdb[0] {
            op::RESERVE_6 | op::RESERVE_10 if !own_reservations => {
                return spc::reserve(lu, nexus, cdb)
            }
            op::RELEASE_6 | op::RELEASE_10 if !own_reservations => {
                return spc::release(lu, nexus, cdb)
            }
            op::PERSISTENT_RESERVE_IN if !own_reservations => return spc::pr_in(lu, cdb),
            op::PERSISTENT_RESERVE_OUT if !own_reservations => {
                return ctx
                    .target
                    .persistent_reserve_out(lu, nexus, cdb, data)
                    .await
            }
            op::MAINTENANCE_IN if cdb[1] & 0x1f == 0x0a => {
                return ctx.target.report_target_port_groups(cdb)
            }
            op::MAINTENANCE_OUT if cdb[1] & 0x1f == 0x0a => {
                let len = crate::cdb::u32_at(cdb, 6) as usize;
                return ctx.target.set_target_port_groups(
                    nexus,
                    cdb,
                    crate::cdb::data_out(data, len)?,
                );
            }
            op::REQUEST_SENSE => {
                // rtgtd's own unit attention first (SPC-4 6.39), then the handler's.
                if let Some(s) = lu.ua.take(nexus.id) {
                    return Ok(ScsiResult::with_data(s.encode(cdb[1] & 0x01 != 0)));
                }
                if !store.ready() {
                    return spc::request_sense(Some(lu), nexus, cdb, Some(Self::unreachable()));
                }
            }
            op::INQUIRY if !store.ready() => {
                if cdb[1] & 0x01 != 0 {
                    return Err(Self::unreachable().into());
                }
                // SPC-4 6.6.2 table 139: qualifier 001b, the device type it would be.
                let mut d = crate::inquiry::not_present();
                d[0] = 0x20 | self.ptype.load(Ordering::Relaxed);
                return Ok(ScsiResult::with_data(d));
            }
            _ => {}
        }
        if !store.ready() {
            return Err(Self::unreachable().into());
        }
        let mut r = forward(store.as_ref(), ctx, data).await?;
        if cdb[0] == op::INQUIRY && r.status == status::GOOD {
            crate::pt::trim_inquiry(cdb, &mut r.data_in);
            if cdb[1] & 0x01 == 0 {
                if let Some(b) = r.data_in.first() {
                    self.ptype.store(b & 0x1f, Ordering::Relaxed);
                }
            } else {
                match cdb[2] {
                    0x83 => r.data_in = crate::pt::vpd83(ctx, &r.data_in),
                    0xb0 => self.clamp_block_limits(lu, &mut r.data_in),
                    _ => {}
                }
            }
        }
        Ok(r)
    }

    /// A disk's Block Limits (SBC-4 6.6.4): MAXIMUM TRANSFER LENGTH no larger than an
    /// arena slot carries, so initiators never send what rtgtd must refuse.
    fn clamp_block_limits(&self, lu: &Lu, page: &mut [u8]) {
        if self.ptype.load(Ordering::Relaxed) != TYPE_DISK || page.len() < 12 {
            return;
        }
        let limit = rtgt_backstore::handler::SLOT_SIZE / lu.block_size.max(1);
        let max = u32::from_be_bytes([page[8], page[9], page[10], page[11]]);
        if max == 0 || max > limit {
            page[8..12].copy_from_slice(&limit.to_be_bytes());
        }
        if page.len() >= 16 {
            let opt = u32::from_be_bytes([page[12], page[13], page[14], page[15]]);
            if opt > limit {
                page[12..16].copy_from_slice(&limit.to_be_bytes());
            }
        }
    }
}

/// Sends a command to the store's device server as it is and maps what comes back: its
/// status, sense and Data-In exactly, or, when it reached no device server, the sense
/// that says why (NOT READY for a handler that is gone, so the initiator retries).
async fn forward(
    store: &dyn BackingStore,
    ctx: &Ctx<'_>,
    data: &mut Vec<u8>,
) -> Outcome<ScsiResult> {
    let data_in_len = if data.is_empty() {
        ctx.cmd.expected_data_in
    } else {
        0
    };
    let req = CdbRequest {
        cdb: ctx.cdb,
        nexus: ctx.nexus().id,
        data_out: data,
        data_in_len,
        abort: Some(Box::pin(ctx.task.until_aborted())),
    };
    let reply = match store.execute_cdb(req).await {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => return Err(invalid_cdb()),
        Err(e) => match e.raw_os_error() {
            Some(libc::ENOTCONN | libc::ETIMEDOUT | libc::ESHUTDOWN) => {
                return Err(crate::store_error::io_fail(false, &e))
            }
            _ => return Err(Sense::of(key::HARDWARE_ERROR, asc::INTERNAL_TARGET_FAILURE).into()),
        },
    };
    Ok(ScsiResult {
        status: reply.status,
        data_in: reply.data_in,
        sense: reply.sense,
        ..ScsiResult::default()
    })
}

/// An opcode rtgtd does not know, for a block handler that takes those
/// (`SCSI_EXCEPT`, rtgt-fileio `-p excpt`; scst_user's PARSE_EXCEPTION).
pub(crate) async fn forward_unknown(ctx: &Ctx<'_>, data: &mut Vec<u8>) -> Outcome<ScsiResult> {
    match ctx.lu.store.as_ref() {
        Some(store) => forward(store.as_ref(), ctx, data).await,
        None => Err(crate::cdb::invalid_opcode()),
    }
}

/// Whether the LU's store takes the opcodes rtgtd does not know.
pub(crate) fn takes_unknown(lu: &Lu) -> bool {
    lu.store
        .as_ref()
        .is_some_and(|s| s.raw_cdbs() == RawCdbs::Unknown)
}

impl DeviceServer for ScsiHandler {
    fn name(&self) -> &'static str {
        "handler"
    }

    fn peripheral_type(&self) -> u8 {
        self.ptype.load(Ordering::Relaxed)
    }

    /// rtgtd's ALUA states apply to the LU (SPC-4 5.16); the handler's INQUIRY says
    /// TPGS itself.
    fn alua(&self) -> bool {
        true
    }

    /// The handler answers INQUIRY and REQUEST SENSE (with rtgtd's additions above).
    fn answers_itself(&self, opcode: u8) -> bool {
        matches!(opcode, op::INQUIRY | op::REQUEST_SENSE)
    }

    /// Data-Out lengths of a disk's commands, for the transport's residuals.
    fn data_out_len(&self, lu: &Lu, cdb: &[u8]) -> Option<u64> {
        (self.peripheral_type() == TYPE_DISK)
            .then(|| crate::sbc::data_out_len(cdb, lu.block_size))
            .flatten()
    }
}
