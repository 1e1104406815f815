//! SCSI pass-through (`--device-type pt`, bstype `sg` or `bsg`): a real SCSI device's
//! commands go to it through the sg driver's asynchronous write/read interface
//! ([`sgq`]) or the kernel's SG_IO on the I/O pool ([`sgio`]; bsg has only that), so a
//! reactor never waits on the device.
//!
//! Unlike tgt's pass-through, which forwards every CDB so that all initiators share one
//! reservation state and one set of unit attentions, rtgt keeps for itself what
//! belongs to its own LUN map and nexuses:
//! - REPORT LUNS (the core answers it from the LUN map) and rtgt's own unit attentions
//!   (the core reports them before a command reaches the device);
//! - SPC-2 RESERVE / RELEASE and PERSISTENT RESERVE IN / OUT are emulated per I_T
//!   nexus by default (`reservations=emulate`), so several initiators can share one
//!   library as SPC-4 5.13 describes; `reservations=passthrough` sends them on, where
//!   the device sees one initiator (rtgt) for everybody;
//! - INQUIRY goes to the device, and VPD page 83h gets rtgt's target port designators
//!   in place of the device's own port ones (its LU designators stay); a disk's VPD
//!   B0h says no more than the queue takes (MAXIMUM TRANSFER LENGTH);
//! - REQUEST SENSE reports rtgt's pending unit attention first, then asks the device;
//! - commands that run on the I/O pool (bsg's; sg's when its queue is full): all
//!   pass-through LUs together hold at most half of its threads ([`pool_share_limit`]): a tape's REWIND or ERASE can take hours,
//!   and the disks' I/O must still find a thread;
//! - a LOGICAL UNIT RESET resets the device (sg's SG_SCSI_RESET). ABORT TASK cannot
//!   take a command back from SG_IO; the command finishes and its result is dropped.
//!
//! A device that is gone (ENODEV / ENXIO, the host byte DID_NO_CONNECT /
//! DID_BAD_TARGET, or the device's own target answering ILLEGAL REQUEST, LOGICAL UNIT
//! NOT SUPPORTED because its LU was deleted there) makes the LU answer NOT READY, LOGICAL UNIT COMMUNICATION FAILURE
//! (SPC-4 table 49, 08h/00h) and INQUIRY with peripheral qualifier 001b ("not currently
//! connected", SPC-4 6.6.2); the LU's other commands, and every other LU, go on.

pub mod sgio;
pub mod sgq;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use tokio::sync::Semaphore;

use crate::cdb::{invalid_cdb, Outcome};
use crate::device::{Ctx, DeviceServer};
use crate::lu::Lu;
use crate::opcodes::{op, OpInfo, Table};
use crate::params::LuParams;
use crate::sense::{asc, key, Sense};
use crate::spc::{self, op as opc};
use crate::{status, LuConfig, LuInfo, ScsiError, ScsiResult};
use sgio::{Completion, Dir, SgIo};

/// LOGICAL UNIT COMMUNICATION FAILURE (SPC-4 table 49).
const LU_COMMUNICATION_FAILURE: asc::Code = (0x08, 0x00);
/// COMMAND TIMEOUT DURING PROCESSING (SPC-5 table 51).
const COMMAND_TIMEOUT_DURING_PROCESSING: asc::Code = (0x2e, 0x02);
/// Sense buffer handed to the driver (SPC-4 4.5.1: at most 252 bytes).
const SENSE_MAX: usize = 252;

const TYPE_DISK: u8 = 0x00;
const TYPE_TAPE: u8 = 0x01;
const TYPE_CHANGER: u8 = 0x08;

/// Linux host bytes (include/scsi/scsi_status.h) rtgt tells apart.
mod host {
    pub const DID_OK: u16 = 0x00;
    pub const DID_NO_CONNECT: u16 = 0x01;
    pub const DID_BUS_BUSY: u16 = 0x02;
    pub const DID_TIME_OUT: u16 = 0x03;
    pub const DID_BAD_TARGET: u16 = 0x04;
    pub const DID_ABORT: u16 = 0x05;
    pub const DID_RESET: u16 = 0x08;
    pub const DID_SOFT_ERROR: u16 = 0x0b;
    pub const DID_IMM_RETRY: u16 = 0x0c;
    pub const DID_REQUEUE: u16 = 0x0d;
    pub const DID_TRANSPORT_DISRUPTED: u16 = 0x0e;
}
/// Linux driver byte DRIVER_TIMEOUT.
const DRIVER_TIMEOUT: u16 = 0x06;

/// How RESERVE / RELEASE and PERSISTENT RESERVE IN / OUT are served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reservations {
    /// rtgt keeps them per I_T nexus (the default).
    Emulate,
    /// The device gets them; every initiator is the same one to it.
    Passthrough,
}

/// A pass-through LU's device.
pub(crate) struct PassThrough {
    dev: Arc<dyn SgIo>,
    /// The device's standard INQUIRY data, read when the LU was made.
    inquiry: Vec<u8>,
    /// A disk's logical block size (READ CAPACITY), 0 when unknown or not a disk.
    block_size: u32,
    /// Commands in flight at the device (`queue_depth=`).
    queue: Arc<Semaphore>,
    /// The queue's permits to take out of use as commands in flight finish, after
    /// `--op update queue_depth=` lowered the depth below what is in flight.
    queue_debt: AtomicUsize,
    timeout_ms: AtomicU32,
    reservations: Reservations,
    /// Its own parameters as given (for `show` and a dump), and the queue depth in
    /// force; `--op update` changes them.
    own: Mutex<(Own, usize)>,
    /// The device went away (ENODEV, DID_NO_CONNECT, ...).
    gone: AtomicBool,
}

/// The parameters of a pass-through LU beyond every LU's (`--params`).
const OWN_KEYS: &[&str] = &["reservations", "queue_depth", "timeout"];

/// A pass-through LU's own parameters.
#[derive(Clone)]
struct Own {
    reservations: Reservations,
    queue_depth: Option<usize>,
    timeout_s: Option<u32>,
}

impl Own {
    fn parse(pairs: &[(String, String)]) -> Result<Self, ScsiError> {
        let mut o = Own {
            reservations: Reservations::Emulate,
            queue_depth: None,
            timeout_s: None,
        };
        for (k, v) in pairs {
            let (k, v) = (k.trim(), v.trim());
            match k {
                "reservations" => {
                    o.reservations = match v {
                        "emulate" => Reservations::Emulate,
                        "passthrough" => Reservations::Passthrough,
                        _ => {
                            return Err(ScsiError::BadParam(format!(
                                "reservations={v}: use emulate or passthrough"
                            )))
                        }
                    }
                }
                "queue_depth" => {
                    let n: usize = num(k, v)?;
                    if !(1..=256).contains(&n) {
                        return Err(ScsiError::BadParam(format!(
                            "queue_depth={v}: use 1 to 256"
                        )));
                    }
                    o.queue_depth = Some(n);
                }
                "timeout" => {
                    let n: u32 = num(k, v)?;
                    if !(1..=4_000_000).contains(&n) {
                        return Err(ScsiError::BadParam(format!(
                            "timeout={v}: seconds, 1 to 4000000"
                        )));
                    }
                    o.timeout_s = Some(n);
                }
                _ => {}
            }
        }
        Ok(o)
    }

    /// As `show` reports them: given ones only, the default reservations left out.
    fn canonical(&self) -> Vec<(String, String)> {
        let mut v = Vec::new();
        if self.reservations == Reservations::Passthrough {
            v.push(("reservations".into(), "passthrough".into()));
        }
        if let Some(n) = self.queue_depth {
            v.push(("queue_depth".into(), n.to_string()));
        }
        if let Some(n) = self.timeout_s {
            v.push(("timeout".into(), n.to_string()));
        }
        v
    }
}

/// A pass-through LU's `--params` in the canonical form `show` reports (every LU's,
/// then its own), so a configuration can be compared with a running LU.
pub fn canonical_params(pairs: &[(String, String)]) -> Result<Vec<(String, String)>, ScsiError> {
    let rest: Vec<(String, String)> = pairs
        .iter()
        .filter(|(k, _)| !OWN_KEYS.contains(&k.trim()) && k != "bstype")
        .cloned()
        .collect();
    let mut v = crate::canonical_lu_params(&rest)?;
    v.extend(Own::parse(pairs)?.canonical());
    Ok(v)
}

/// The kernel's node, or in tests a fake registered under `fake:NAME`.
fn open_device(kind: &str, path: &str) -> Result<Arc<dyn SgIo>, String> {
    #[cfg(test)]
    if let Some(d) = tests::fake(path) {
        return Ok(d);
    }
    Ok(Arc::new(sgio::open(kind, path)?))
}

fn num<T: std::str::FromStr>(k: &str, v: &str) -> Result<T, ScsiError> {
    v.parse()
        .map_err(|_| ScsiError::BadParam(format!("{k}={v}: not a number")))
}

/// A command's place in its device's queue (`queue_depth=`). Given back when it ends,
/// unless an update lowered the depth, when it is taken out of use instead.
struct QueueSlot<'a>(&'a PassThrough);

impl<'a> QueueSlot<'a> {
    async fn take(pt: &'a PassThrough) -> Result<QueueSlot<'a>, Sense> {
        pt.queue
            .acquire()
            .await
            .map_err(|_| Sense::of(key::HARDWARE_ERROR, asc::INTERNAL_TARGET_FAILURE))?
            .forget();
        Ok(QueueSlot(pt))
    }
}

impl Drop for QueueSlot<'_> {
    fn drop(&mut self) {
        let paid = self
            .0
            .queue_debt
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| d.checked_sub(1))
            .is_ok();
        if !paid {
            self.0.queue.add_permits(1);
        }
    }
}

/// The I/O-pool threads all pass-through LUs together may hold: half the pool (at least
/// one), the rest is left to every other backing store.
pub fn pool_share_limit() -> usize {
    (rtgt_backstore::pool::pool().threads() / 2).max(1)
}

fn pool_share() -> &'static Semaphore {
    static SHARE: OnceLock<Semaphore> = OnceLock::new();
    SHARE.get_or_init(|| Semaphore::new(pool_share_limit()))
}

/// Runs one command synchronously (only while the LU is being made).
fn call(dev: &dyn SgIo, cdb: &[u8], len: usize) -> Option<Vec<u8>> {
    let mut data = vec![0u8; len];
    let mut sense = [0u8; SENSE_MAX];
    let c = dev
        .execute(cdb, Dir::FromDevice, &mut data, &mut sense, 30_000)
        .ok()?;
    if c.status != status::GOOD || c.host != host::DID_OK {
        return None;
    }
    data.truncate(transferred(len, c.resid));
    Some(data)
}

/// Bytes moved, from the driver's residual: a negative or oversized residual (a device
/// or driver that reports garbage) is taken as nothing known to be missing, resp.
/// nothing transferred.
fn transferred(len: usize, resid: i32) -> usize {
    match usize::try_from(resid) {
        Ok(r) if r <= len => len - r,
        Ok(_) => 0,
        Err(_) => len,
    }
}

impl PassThrough {
    pub fn table(_f: crate::opcodes::Features) -> &'static Table {
        // Every opcode goes to the device: the device's own command set is what
        // REPORT SUPPORTED OPERATION CODES (forwarded) tells.
        static ALL: OnceLock<Table> = OnceLock::new();
        ALL.get_or_init(|| {
            let ops: Vec<OpInfo> = (0..=255u8)
                .map(|o| {
                    let mut usage = vec![0xffu8; crate::cdb::cdb_len(o)];
                    usage[0] = o;
                    op(o, Box::leak(usage.into_boxed_slice()))
                })
                .collect();
            Table::build(&[Box::leak(ops.into_boxed_slice())])
        })
    }

    pub fn new_lu(lun: u64, cfg: LuConfig) -> Result<Lu, ScsiError> {
        let own = Own::parse(&cfg.params)?;
        let rest: Vec<(String, String)> = cfg
            .params
            .iter()
            .filter(|(k, _)| !OWN_KEYS.contains(&k.as_str()) && k != "bstype")
            .cloned()
            .collect();
        let kind = cfg
            .params
            .iter()
            .rev()
            .find(|(k, _)| k == "bstype")
            .map_or("sg", |(_, v)| v.as_str())
            .to_string();
        let (reservations, queue_depth, timeout_s) =
            (own.reservations, own.queue_depth, own.timeout_s);
        let params = LuParams::default().apply(&rest)?;
        let dev = open_device(&kind, &cfg.path).map_err(ScsiError::Device)?;
        // The device's identity: the type decides the defaults below, and a device
        // that goes away is still described by it (qualifier 001b).
        let inquiry = call(dev.as_ref(), &[0x12, 0, 0, 0, 96, 0], 96)
            .filter(|d| d.len() >= 5)
            .ok_or_else(|| {
                ScsiError::Device(format!("{}: the device does not answer INQUIRY", cfg.path))
            })?;
        let ptype = inquiry[0] & 0x1f;
        let block_size = if ptype == TYPE_DISK {
            // A first command may meet the device's own POWER ON unit attention.
            (0..3)
                .find_map(|_| call(dev.as_ref(), &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], 8))
                .filter(|d| d.len() == 8)
                .map(|d| u32::from_be_bytes([d[4], d[5], d[6], d[7]]))
                .unwrap_or(0)
        } else {
            0
        };
        // A tape or changer takes one command at a time, in order (SSC-3 and SMC-3
        // commands depend on the position the previous one left); tgt's timeouts: 30 s,
        // tapes 14000 s (an ERASE of a whole cartridge takes hours).
        let sequential = matches!(ptype, TYPE_TAPE | TYPE_CHANGER);
        let queue_depth = queue_depth.unwrap_or(if sequential { 1 } else { 8 });
        let timeout_s = timeout_s.unwrap_or(if sequential { 14_000 } else { 30 });
        let pt = PassThrough {
            dev,
            inquiry,
            block_size,
            queue: Arc::new(Semaphore::new(queue_depth)),
            queue_debt: AtomicUsize::new(0),
            timeout_ms: AtomicU32::new(timeout_s.saturating_mul(1000)),
            reservations,
            own: Mutex::new((own, queue_depth)),
            gone: AtomicBool::new(false),
        };
        tracing::info!(
            path = cfg.path,
            kind = pt.dev.kind(),
            ptype,
            max_transfer = pt.dev.max_transfer(),
            queue_depth,
            "pass-through device opened"
        );
        Ok(Lu::new(
            lun,
            pt.into(),
            None,
            if block_size == 4096 { 4096 } else { 512 },
            cfg.path,
            cfg.bsoflags,
            params,
        ))
    }

    fn gone_sense() -> Sense {
        Sense::of(key::NOT_READY, LU_COMMUNICATION_FAILURE)
    }

    pub async fn execute(&self, ctx: &Ctx<'_>, data: &mut Vec<u8>) -> Outcome<ScsiResult> {
        let (lu, cdb, nexus) = (ctx.lu, ctx.cdb, ctx.nexus());
        let emulate = self.reservations == Reservations::Emulate;
        match cdb[0] {
            opc::RESERVE_6 | opc::RESERVE_10 if emulate => return spc::reserve(lu, nexus, cdb),
            opc::RELEASE_6 | opc::RELEASE_10 if emulate => return spc::release(lu, nexus, cdb),
            opc::PERSISTENT_RESERVE_IN if emulate => return spc::pr_in(lu, cdb),
            opc::PERSISTENT_RESERVE_OUT if emulate => {
                return ctx
                    .target
                    .persistent_reserve_out(lu, nexus, cdb, data)
                    .await
            }
            opc::REQUEST_SENSE => {
                // rtgt's own unit attention first (SPC-4 6.39: a pending one is what
                // REQUEST SENSE reports), then what the device says.
                if let Some(s) = lu.ua.take(nexus.id) {
                    return Ok(ScsiResult::with_data(s.encode(cdb[1] & 0x01 != 0)));
                }
                if self.gone.load(Ordering::Acquire) {
                    return spc::request_sense(Some(lu), nexus, cdb, Some(Self::gone_sense()));
                }
            }
            opc::INQUIRY if self.gone.load(Ordering::Acquire) => {
                if cdb[1] & 0x01 != 0 {
                    return Err(Self::gone_sense().into());
                }
                // SPC-4 6.6.2 table 139: qualifier 001b, the device type it would be.
                let mut d = self.inquiry.clone();
                d[0] = 0x20 | (d[0] & 0x1f);
                return Ok(ScsiResult::with_data(d));
            }
            _ => {}
        }
        if self.gone.load(Ordering::Acquire) {
            return Err(Self::gone_sense().into());
        }
        let mut r = self.forward(ctx, data).await?;
        if cdb[0] == opc::INQUIRY && r.status == status::GOOD {
            trim_inquiry(cdb, &mut r.data_in);
        }
        if cdb[0] == opc::INQUIRY && cdb[1] & 0x01 != 0 && r.status == status::GOOD {
            match cdb[2] {
                0x83 => r.data_in = vpd83(ctx, &r.data_in),
                0xb0 => self.clamp_block_limits(&mut r.data_in),
                _ => {}
            }
        }
        Ok(r)
    }

    /// Sends the command to the device and maps what comes back.
    async fn forward(&self, ctx: &Ctx<'_>, data: &mut Vec<u8>) -> Outcome<ScsiResult> {
        let want_in = ctx.cmd.expected_data_in as usize;
        // The device's queue takes no more than this in one command (SBC-4 5.x READ /
        // WRITE: a TRANSFER LENGTH over the MAXIMUM TRANSFER LENGTH is INVALID FIELD IN
        // CDB; the same for any command whose transfer the queue can't carry). Checked
        // before any buffer is made: an initiator's expected length may be anything.
        if want_in.max(data.len()) > self.dev.max_transfer() as usize {
            return Err(invalid_cdb());
        }
        let (dir, buf) = if !data.is_empty() {
            (Dir::ToDevice, std::mem::take(data))
        } else if want_in > 0 {
            (Dir::FromDevice, vec![0u8; want_in])
        } else {
            (Dir::None, Vec::new())
        };
        let _permit = QueueSlot::take(self).await?;
        let timeout = self.timeout_ms.load(Ordering::Relaxed);
        let mut req = sgq::Request {
            cdb: ctx.cdb.to_vec(),
            dir,
            buf,
            sense: vec![0u8; SENSE_MAX],
            timeout_ms: timeout,
        };
        // sg: queued with write(), collected with read(); nothing waits meanwhile.
        if let Some(q) = self.dev.queue() {
            match q.submit(req) {
                Ok(done) => {
                    let d = done.await.map_err(|_| {
                        Sense::of(key::HARDWARE_ERROR, asc::INTERNAL_TARGET_FAILURE)
                    })?;
                    return self.finish(ctx, dir, d.buf, &d.sense, d.result);
                }
                Err(back) => req = back,
            }
        }
        // SG_IO holds a pool thread for the whole command, and a tape's REWIND or
        // ERASE takes minutes to hours: pass-through commands together never hold more
        // than their share of the pool, so the disks' I/O always finds a thread.
        let _share = pool_share()
            .acquire()
            .await
            .map_err(|_| Sense::of(key::HARDWARE_ERROR, asc::INTERNAL_TARGET_FAILURE))?;
        let dev = self.dev.clone();
        let ran = rtgt_backstore::pool::run(move || {
            let mut req = req;
            let r = dev.execute(
                &req.cdb,
                req.dir,
                &mut req.buf,
                &mut req.sense,
                req.timeout_ms,
            );
            Ok((r, req.buf, req.sense))
        })
        .await;
        let (r, buf, sense) = match ran {
            Ok(x) => x,
            Err(e) => {
                tracing::error!("pass-through command on the I/O pool: {e}");
                return Err(Sense::of(key::HARDWARE_ERROR, asc::INTERNAL_TARGET_FAILURE).into());
            }
        };
        self.finish(ctx, dir, buf, &sense, r)
    }

    /// The initiator's result of one ended command; notes a device that went away.
    fn finish(
        &self,
        ctx: &Ctx<'_>,
        dir: Dir,
        buf: Vec<u8>,
        sense: &[u8],
        r: std::io::Result<Completion>,
    ) -> Outcome<ScsiResult> {
        let (out, gone) = map_completion(dir, buf, sense, r);
        if gone && !self.gone.swap(true, Ordering::AcqRel) {
            tracing::error!(lun = ctx.lu.lun, "pass-through device is gone");
        }
        out
    }
}

/// VPD 83h: the device's logical unit designators (association 00b) and rtgt's
/// target port and target device ones (SPC-4 7.8.6), not the device's own port's.
pub(crate) fn vpd83(ctx: &Ctx<'_>, page: &[u8]) -> Vec<u8> {
    if page.len() < 4 {
        return page.to_vec();
    }
    let end = (4 + usize::from(u16::from_be_bytes([page[2], page[3]]))).min(page.len());
    let mut body = Vec::new();
    let mut i = 4;
    while i + 4 <= end {
        let len = usize::from(page[i + 3]);
        let next = i + 4 + len;
        if next > end {
            break; // a descriptor running past the page: garbage, dropped
        }
        if (page[i + 1] >> 4) & 0x03 == 0 {
            body.extend_from_slice(&page[i..next]);
        }
        i = next;
    }
    crate::inquiry::port_designators(&mut body, ctx.target.name(), ctx.nexus());
    let mut out = vec![page[0], page[1]];
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend(body);
    out
}

impl PassThrough {
    /// A disk's Block Limits (SBC-4 6.6.4): MAXIMUM TRANSFER LENGTH no larger than the
    /// queue takes, so initiators never send what rtgt must refuse.
    fn clamp_block_limits(&self, page: &mut [u8]) {
        if self.inquiry[0] & 0x1f != TYPE_DISK || self.block_size == 0 || page.len() < 12 {
            return;
        }
        let limit = self.dev.max_transfer() / self.block_size;
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

/// INQUIRY data says its own length (SPC-4 6.6.2 ADDITIONAL LENGTH, 7.8.1 PAGE LENGTH):
/// no more is sent than that, whatever residual the driver reported. Some devices (QEMU's
/// scsi-generic over its iSCSI driver, for one) report none, so the whole allocation
/// length would go back padded with zeros.
pub(crate) fn trim_inquiry(cdb: &[u8], data: &mut Vec<u8>) {
    let own = if cdb[1] & 0x01 != 0 {
        (data.len() >= 4).then(|| 4 + usize::from(u16::from_be_bytes([data[2], data[3]])))
    } else {
        (data.len() >= 5).then(|| 5 + usize::from(data[4]))
    };
    if let Some(n) = own {
        data.truncate(n);
    }
}

/// What the initiator gets for one SG_IO: the device's status, sense and data exactly
/// (Data-In cut to what the device transferred), or, when the command did not reach an
/// end at the device, the sense that says why. The flag: the device is gone.
pub(crate) fn map_completion(
    dir: Dir,
    mut buf: Vec<u8>,
    sense: &[u8],
    r: std::io::Result<Completion>,
) -> (Outcome<ScsiResult>, bool) {
    let c = match r {
        Ok(c) => c,
        Err(e) => {
            return match e.raw_os_error() {
                Some(libc::ENODEV | libc::ENXIO) => (Err(PassThrough::gone_sense().into()), true),
                // The kernel refused the request's shape (too long for the queue, a
                // bad CDB length).
                Some(libc::EINVAL | libc::EOVERFLOW | libc::ENOMEM) => (Err(invalid_cdb()), false),
                _ => {
                    tracing::error!("pass-through SG_IO: {e}");
                    (
                        Err(Sense::of(key::HARDWARE_ERROR, asc::INTERNAL_TARGET_FAILURE).into()),
                        false,
                    )
                }
            };
        }
    };
    match c.host {
        host::DID_OK if c.driver & 0x0f != DRIVER_TIMEOUT => {}
        host::DID_NO_CONNECT | host::DID_BAD_TARGET => {
            return (Err(PassThrough::gone_sense().into()), true)
        }
        // The device did not answer within `timeout=` and the kernel aborted it.
        host::DID_OK | host::DID_TIME_OUT => {
            return (
                Err(Sense::of(key::ABORTED_COMMAND, COMMAND_TIMEOUT_DURING_PROCESSING).into()),
                false,
            )
        }
        // Transient conditions on the way to the device: SAM-5 5.3 BUSY, "reissue
        // the command later".
        host::DID_BUS_BUSY
        | host::DID_ABORT
        | host::DID_RESET
        | host::DID_SOFT_ERROR
        | host::DID_IMM_RETRY
        | host::DID_REQUEUE
        | host::DID_TRANSPORT_DISRUPTED => {
            return (
                Ok(ScsiResult {
                    status: status::BUSY,
                    ..ScsiResult::default()
                }),
                false,
            )
        }
        h => {
            tracing::warn!("pass-through: host status {h:#x}");
            return (
                Err(Sense::of(key::HARDWARE_ERROR, LU_COMMUNICATION_FAILURE).into()),
                false,
            );
        }
    }
    let data_in = if dir == Dir::FromDevice {
        let n = transferred(buf.len(), c.resid);
        buf.truncate(n);
        buf
    } else {
        Vec::new()
    };
    // Sense goes back with CHECK CONDITION (and the obsolete COMMAND TERMINATED) only;
    // the driver's count is cut to the buffer if it claims more.
    let sense = if matches!(c.status, status::CHECK_CONDITION | 0x22) {
        sense[..(c.sense_len as usize).min(sense.len())].to_vec()
    } else {
        Vec::new()
    };
    // The device's own target no longer has its LU (SPC-4 4.5.2 / SAM-5 5.11: ILLEGAL
    // REQUEST, LOGICAL UNIT NOT SUPPORTED for a LUN outside its map), as when a target
    // behind an iSCSI-attached device deletes it. rtgt's LU still exists in its own
    // map, so it says what it says for any vanished device.
    if !sense.is_empty() && sense_code(&sense) == Some((key::ILLEGAL_REQUEST, 0x25, 0x00)) {
        return (Err(PassThrough::gone_sense().into()), true);
    }
    (
        Ok(ScsiResult {
            status: c.status,
            data_in,
            sense,
            ..ScsiResult::default()
        }),
        false,
    )
}

/// Sense key, ASC and ASCQ of fixed (70h/71h) or descriptor (72h/73h) sense data
/// (SPC-4 4.5.2, 4.5.3); None when it is too short or of another format.
fn sense_code(s: &[u8]) -> Option<(u8, u8, u8)> {
    match s.first()? & 0x7f {
        0x70 | 0x71 if s.len() >= 14 => Some((s[2] & 0x0f, s[12], s[13])),
        0x72 | 0x73 if s.len() >= 4 => Some((s[1] & 0x0f, s[2], s[3])),
        _ => None,
    }
}

impl PassThrough {
    /// `--op update --params` of its own keys: `queue_depth=` and `timeout=` take
    /// effect for the commands that come next (a lower depth as commands in flight
    /// finish); `reservations=` is refused, as switching would drop or expose the
    /// reservations held. Every LU's parameters in the same update go to the core.
    fn update(
        &self,
        target: &crate::ScsiTarget,
        lu: &Lu,
        params: &[(String, String)],
    ) -> Result<(), ScsiError> {
        let next = {
            let own = self.own.lock();
            let mut given = own.0.canonical();
            given.extend(
                params
                    .iter()
                    .filter(|(k, _)| OWN_KEYS.contains(&k.trim()))
                    .cloned(),
            );
            Own::parse(&given)?
        };
        if next.reservations != self.reservations {
            return Err(ScsiError::BadParam(
                "reservations= can't change on a running logical unit (the reservations held \
                 would be dropped or handed to the device); delete the logical unit and \
                 create it again with the other mode"
                    .into(),
            ));
        }
        let rest: Vec<(String, String)> = params
            .iter()
            .filter(|(k, _)| !OWN_KEYS.contains(&k.trim()))
            .cloned()
            .collect();
        if !rest.is_empty() {
            target.update_lu(lu.lun, &rest)?;
        }
        let mut own = self.own.lock();
        if let Some(n) = next.timeout_s {
            self.timeout_ms
                .store(n.saturating_mul(1000), Ordering::Relaxed);
        }
        if let Some(depth) = next.queue_depth {
            let was = own.1;
            if depth > was {
                // Pay off a lowering not yet done before adding permits.
                let mut more = depth - was;
                while more > 0
                    && self
                        .queue_debt
                        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| d.checked_sub(1))
                        .is_ok()
                {
                    more -= 1;
                }
                self.queue.add_permits(more);
            } else if depth < was {
                let fewer = was - depth;
                let gone = self.queue.forget_permits(fewer);
                self.queue_debt.fetch_add(fewer - gone, Ordering::AcqRel);
            }
            own.1 = depth;
        }
        own.0 = next;
        tracing::info!(lun = lu.lun, params = ?own.0.canonical(), "pass-through parameters updated");
        Ok(())
    }
}

impl DeviceServer for PassThrough {
    fn configure(
        &self,
        target: &crate::ScsiTarget,
        lu: &Lu,
        params: &[(String, String)],
    ) -> Option<Result<(), ScsiError>> {
        params
            .iter()
            .any(|(k, _)| OWN_KEYS.contains(&k.trim()))
            .then(|| self.update(target, lu, params))
    }

    fn name(&self) -> &'static str {
        "pt"
    }

    fn peripheral_type(&self) -> u8 {
        self.inquiry[0] & 0x1f
    }

    fn removable(&self, _lu: &Lu) -> bool {
        self.inquiry.get(1).is_some_and(|b| b & 0x80 != 0)
    }

    /// The device answers INQUIRY and REQUEST SENSE (with rtgt's additions above).
    fn answers_itself(&self, opcode: u8) -> bool {
        matches!(opcode, opc::INQUIRY | opc::REQUEST_SENSE)
    }

    /// SAM-5 6.3.3: a logical unit reset resets the device too (its own unit
    /// attention then reaches the initiators through it). On a thread of its own: a
    /// reset waits for the device and the caller is a reactor.
    fn reset(&self, _lu: &Lu) {
        let dev = self.dev.clone();
        let _ = std::thread::Builder::new()
            .name("pt-reset".into())
            .spawn(move || {
                if let Err(e) = dev.reset() {
                    tracing::warn!("pass-through device reset: {e}");
                }
            });
    }

    fn fill_info(&self, _lu: &Lu, info: &mut LuInfo) {
        info.backing_store_type = self.dev.kind().into();
        info.online = !self.gone.load(Ordering::Acquire);
        info.params.extend(self.own.lock().0.canonical());
    }
}
