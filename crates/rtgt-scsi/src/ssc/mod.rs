//! A sequential-access device (SSC-3): a tape drive whose cartridge is an image file.
//!
//! The drive's state (medium, position, block size, compression) sits behind one lock
//! and every command runs whole on the I/O pool, so the reactor never blocks on the
//! image file; an async FIFO lock in front of it keeps a LU's commands in arrival
//! order, as sequential access needs.

mod device;
pub mod medium;
mod mode;
mod opcodes;
pub(crate) mod rtgt_image;
pub(crate) mod tgt_image;

use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::cdb::{invalid_cdb_at, u16_at, u24_at, u32_at, u64_at, Fail, Outcome};
use crate::lu::Lu;
use crate::sense::{asc, key, Sense};
use crate::{status, ScsiResult};
use medium::{CartridgeType, Kind, Medium};

/// Largest block READ BLOCK LIMITS reports (24-bit field) and largest transfer one
/// command may ask for (the SCSI core keeps a command's data in memory).
pub(crate) const MAX_BLOCK: u32 = 0x00ff_ffff;
const MAX_TRANSFER: u64 = crate::inquiry::MAX_TRANSFER_BYTES;
/// Density code reported and accepted (LTO-3, SSC-3 annex / REPORT DENSITY SUPPORT).
pub(crate) const DENSITY: u8 = 0x44;

/// FILEMARK, EOM and ILI bits of the sense data (SSC-3 4.2).
const FILEMARK: u8 = 0x80;
const EOM: u8 = 0x40;
const ILI: u8 = 0x20;

pub(crate) struct TapeState {
    pub medium: Option<Medium>,
    /// The medium is threaded and ready: false after UNLOAD until LOAD (SSC-3 7.2).
    pub loaded: bool,
    /// Index of the logical object at the head; `records.len()` is end-of-data.
    pub pos: usize,
    /// Mode block descriptor BLOCK LENGTH: 0 = variable-block mode (SSC-3 8.3.3).
    pub block_len: u32,
    /// Data compression page DCE (SSC-3 8.3.2): accepted and reported; the image
    /// stores data uncompressed either way.
    pub compression: bool,
    /// BUFFERED MODE of the mode parameter header (SSC-3 8.3.1).
    pub buffered: u8,
    pub bytes_read: u64,
    pub bytes_written: u64,
}

/// A tape drive LU's device state.
pub(crate) struct TapeDrive {
    order: tokio::sync::Mutex<()>,
    pub state: Arc<Mutex<TapeState>>,
}

impl TapeDrive {
    pub fn new(medium: Option<Medium>) -> Self {
        Self {
            order: tokio::sync::Mutex::new(()),
            state: Arc::new(Mutex::new(TapeState {
                loaded: medium.is_some(),
                medium,
                pos: 0,
                block_len: 0,
                compression: false,
                buffered: 1,
                bytes_read: 0,
                bytes_written: 0,
            })),
        }
    }

    /// Puts a cartridge in the drive (a changer's MOVE MEDIUM, or rtgtadm): it is
    /// loaded and at beginning-of-partition.
    pub fn insert(&self, path: &Path, read_only: bool) -> std::io::Result<()> {
        let m = Medium::open(path, read_only)?;
        let mut st = self.state.lock();
        st.medium = Some(m);
        st.loaded = true;
        st.pos = 0;
        st.bytes_read = 0;
        st.bytes_written = 0;
        Ok(())
    }

    /// Takes the cartridge out, after making what was written durable.
    pub fn remove(&self) -> Option<std::path::PathBuf> {
        let mut st = self.state.lock();
        let m = st.medium.take()?;
        if let Err(e) = m.sync() {
            tracing::error!(path = %m.path.display(), "tape image sync on unload: {e}");
        }
        st.loaded = false;
        st.pos = 0;
        Some(m.path)
    }

    /// The loaded image's path and label, for `show`.
    pub fn describe(&self) -> Option<(String, medium::Label, medium::Format, u64)> {
        let st = self.state.lock();
        st.medium.as_ref().map(|m| {
            (
                m.path.display().to_string(),
                m.label.clone(),
                m.format,
                m.used(),
            )
        })
    }
}

/// What a command needs of the LU besides the drive.
struct Ctx {
    desc: bool,
    write_protected: bool,
    online: bool,
}

/// The sense to report when the medium can't be used, if it can't (SSC-3 4.2.3).
fn not_ready(st: &TapeState, online: bool) -> Option<Sense> {
    match &st.medium {
        _ if !online => Some(Sense::of(key::NOT_READY, asc::MEDIUM_NOT_PRESENT)),
        None => Some(Sense::of(key::NOT_READY, asc::MEDIUM_NOT_PRESENT)),
        Some(_) if !st.loaded => Some(Sense::of(
            key::NOT_READY,
            asc::LU_NOT_READY_INITIALIZING_COMMAND_REQUIRED,
        )),
        Some(m) if m.label.kind == CartridgeType::Cleaning => {
            Some(Sense::of(key::NOT_READY, asc::CLEANING_CARTRIDGE_INSTALLED))
        }
        Some(_) => None,
    }
}

/// The sense REQUEST SENSE reports when no unit attention is pending.
pub(crate) fn request_sense_state(lu: &Lu, drive: &TapeDrive) -> Option<Sense> {
    not_ready(&drive.state.lock(), lu.params.read().online)
}

/// Runs a tape command on the I/O pool, in order with the LU's other tape commands.
pub(crate) async fn execute(
    lu: &Arc<Lu>,
    drive: &TapeDrive,
    cdb: &[u8],
    data: &[u8],
) -> Outcome<ScsiResult> {
    let _turn = drive.order.lock().await;
    let ctx = Ctx {
        desc: lu.descriptor_sense(),
        write_protected: lu.write_protected(),
        online: lu.params.read().online,
    };
    let state = drive.state.clone();
    let cdb = cdb.to_vec();
    let data = data.to_vec();
    let lu2 = lu.clone();
    rtgt_backstore::pool::run(move || {
        let mut st = state.lock();
        Ok(run(&lu2, &mut st, &ctx, &cdb, &data))
    })
    .await
    .unwrap_or_else(|e| {
        tracing::error!("tape command on the I/O pool: {e}");
        Err(Sense::of(key::HARDWARE_ERROR, asc::INTERNAL_TARGET_FAILURE).into())
    })
}

/// CHECK CONDITION with data (a short read returns what it read, SSC-3 4.2.4).
fn check(ctx: &Ctx, s: Sense, data: Vec<u8>) -> Outcome<ScsiResult> {
    Ok(ScsiResult {
        status: status::CHECK_CONDITION,
        sense: s.encode(ctx.desc),
        data_in: data,
        ..ScsiResult::default()
    })
}

fn medium_error(e: std::io::Error, what: &str) -> Fail {
    tracing::error!("tape image {what}: {e}");
    let code = if e.kind() == std::io::ErrorKind::InvalidData {
        asc::UNRECOVERED_READ_ERROR
    } else if what == "write" {
        asc::WRITE_ERROR
    } else {
        asc::UNRECOVERED_READ_ERROR
    };
    Sense::of(key::MEDIUM_ERROR, code).into()
}

/// A residue in the INFORMATION field: signed, as SSC-3 4.2.4 asks for an overlength
/// block (negative).
fn info(v: i64) -> u64 {
    v as u64
}

fn run(lu: &Lu, st: &mut TapeState, ctx: &Ctx, cdb: &[u8], data: &[u8]) -> Outcome<ScsiResult> {
    match cdb[0] {
        0x05 => Ok(ScsiResult::with_data(read_block_limits())),
        0x44 => report_density(st, cdb),
        0x1a | 0x5a => mode::sense(lu, st, ctx.write_protected, cdb),
        0x15 | 0x55 => {
            let len = if cdb[0] == 0x15 {
                usize::from(cdb[4])
            } else {
                usize::from(u16_at(cdb, 7))
            };
            let param = crate::cdb::data_out(data, len)?;
            mode::select(lu, st, cdb, param)?;
            Ok(ScsiResult::good())
        }
        0x4d => log_sense(st, cdb),
        0x1b => load_unload(lu, st, ctx, cdb),
        _ => {
            if let Some(s) = not_ready(st, ctx.online) {
                return Err(s.into());
            }
            medium_cmd(st, ctx, cdb, data)
        }
    }
}

fn medium_cmd(st: &mut TapeState, ctx: &Ctx, cdb: &[u8], data: &[u8]) -> Outcome<ScsiResult> {
    match cdb[0] {
        0x00 => Ok(ScsiResult::good()),
        0x01 => {
            st.pos = 0;
            sync(st)?;
            Ok(ScsiResult::good())
        }
        0x08 => read6(st, ctx, cdb),
        0x0a => write6(st, ctx, cdb, data),
        0x10 => write_filemarks(st, ctx, cdb),
        0x11 => space(st, ctx, cdb),
        0x19 => {
            // ERASE (SSC-3 7.3): from the current position to the end; LONG or not,
            // what follows is gone.
            writable(st, ctx)?;
            let pos = st.pos;
            let m = st.medium.as_mut().expect("ready");
            m.truncate(pos).map_err(|e| medium_error(e, "write"))?;
            Ok(ScsiResult::good())
        }
        0x2b | 0x92 => locate(st, ctx, cdb),
        0x34 => read_position(st, cdb),
        _ => Err(crate::cdb::invalid_opcode()),
    }
}

fn sync(st: &TapeState) -> Outcome<()> {
    if let Some(m) = &st.medium {
        m.sync().map_err(|e| medium_error(e, "write"))?;
    }
    Ok(())
}

/// READ BLOCK LIMITS (SSC-3 7.4): any block from 1 byte to 16 MiB - 1.
fn read_block_limits() -> Vec<u8> {
    let mut b = vec![0u8; 6];
    b[1..4].copy_from_slice(&MAX_BLOCK.to_be_bytes()[1..]);
    b[4..6].copy_from_slice(&1u16.to_be_bytes());
    b
}

/// LOAD UNLOAD (SSC-3 7.2): LOAD threads the cartridge and goes to beginning of
/// partition; UNLOAD rewinds and leaves it unthreaded, unless removal is prevented.
fn load_unload(lu: &Lu, st: &mut TapeState, ctx: &Ctx, cdb: &[u8]) -> Outcome<ScsiResult> {
    if cdb[4] & 0x04 != 0 {
        // EOT: position at end of partition before unloading; not supported.
        return Err(invalid_cdb_at(4, Some(2)));
    }
    let load = cdb[4] & 0x01 != 0;
    if st.medium.is_none() || !ctx.online {
        return Err(Sense::of(key::NOT_READY, asc::MEDIUM_NOT_PRESENT).into());
    }
    if !load {
        if lu.medium.lock().prevent_removal() {
            return Err(Sense::illegal(asc::MEDIUM_REMOVAL_PREVENTED).into());
        }
        sync(st)?;
        st.loaded = false;
    } else {
        st.loaded = true;
    }
    st.pos = 0;
    Ok(ScsiResult::good())
}

fn writable(st: &TapeState, ctx: &Ctx) -> Outcome<()> {
    let m = st.medium.as_ref().expect("ready");
    if ctx.write_protected || m.read_only {
        return Err(Sense::of(key::DATA_PROTECT, asc::WRITE_PROTECTED).into());
    }
    // WORM (SSC-3 4.2.11): data may be appended, never overwritten.
    if m.label.kind == CartridgeType::Worm && st.pos < m.records.len() {
        return Err(Sense::of(key::DATA_PROTECT, (0x30, 0x0c)).into());
    }
    Ok(())
}

/// READ (6) (SSC-3 7.5).
fn read6(st: &mut TapeState, ctx: &Ctx, cdb: &[u8]) -> Outcome<ScsiResult> {
    let fixed = cdb[1] & 0x01 != 0;
    let sili = cdb[1] & 0x02 != 0;
    let count = u24_at(cdb, 2);
    if fixed && sili {
        return Err(invalid_cdb_at(1, Some(1)));
    }
    if fixed && st.block_len == 0 {
        return Err(invalid_cdb_at(1, Some(0)));
    }
    let bytes = if fixed {
        u64::from(count) * u64::from(st.block_len)
    } else {
        u64::from(count)
    };
    if bytes > MAX_TRANSFER {
        return Err(invalid_cdb_at(2, None));
    }
    if count == 0 {
        return Ok(ScsiResult::good());
    }
    if fixed {
        read_fixed(st, ctx, count)
    } else {
        read_variable(st, ctx, count, sili)
    }
}

fn eod_sense(residue: i64) -> Sense {
    Sense::of(key::BLANK_CHECK, asc::END_OF_DATA_DETECTED).with_information(info(residue))
}

fn read_variable(st: &mut TapeState, ctx: &Ctx, len: u32, sili: bool) -> Outcome<ScsiResult> {
    let m = st.medium.as_ref().expect("ready");
    let Some(r) = m.records.get(st.pos).copied() else {
        return check(ctx, eod_sense(len.into()), Vec::new());
    };
    if r.kind == Kind::Filemark {
        st.pos += 1;
        let s = Sense::of(key::NO_SENSE, asc::FILEMARK_DETECTED)
            .with_stream(FILEMARK)
            .with_information(info(len.into()));
        return check(ctx, s, Vec::new());
    }
    let n = r.len.min(len) as usize;
    let mut buf = vec![0u8; n];
    m.read(st.pos, &mut buf)
        .map_err(|e| medium_error(e, "read"))?;
    st.pos += 1;
    st.bytes_read += n as u64;
    // SSC-3 4.2.4: a block of another length than asked is an incorrect-length
    // condition, INFORMATION = requested minus actual; SILI suppresses it for a short
    // block only.
    if r.len == len || (r.len < len && sili) {
        return Ok(ScsiResult::with_data(buf));
    }
    let s = Sense::of(key::NO_SENSE, asc::NO_ADDITIONAL_SENSE)
        .with_stream(ILI)
        .with_information(info(i64::from(len) - i64::from(r.len)));
    check(ctx, s, buf)
}

fn read_fixed(st: &mut TapeState, ctx: &Ctx, count: u32) -> Outcome<ScsiResult> {
    let bl = st.block_len as usize;
    let mut out = Vec::with_capacity(count as usize * bl);
    for done in 0..count {
        let residue = i64::from(count - done);
        let m = st.medium.as_ref().expect("ready");
        let Some(r) = m.records.get(st.pos).copied() else {
            return check(ctx, eod_sense(residue), out);
        };
        if r.kind == Kind::Filemark {
            st.pos += 1;
            let s = Sense::of(key::NO_SENSE, asc::FILEMARK_DETECTED)
                .with_stream(FILEMARK)
                .with_information(info(residue));
            return check(ctx, s, out);
        }
        if r.len as usize != bl {
            // SSC-3 4.2.4: an incorrect-length block ends a fixed read; the blocks
            // before it are transferred, position is after it.
            st.pos += 1;
            let s = Sense::of(key::NO_SENSE, asc::NO_ADDITIONAL_SENSE)
                .with_stream(ILI)
                .with_information(info(residue));
            return check(ctx, s, out);
        }
        let at = out.len();
        out.resize(at + bl, 0);
        m.read(st.pos, &mut out[at..])
            .map_err(|e| medium_error(e, "read"))?;
        st.pos += 1;
        st.bytes_read += bl as u64;
    }
    Ok(ScsiResult::with_data(out))
}

/// Early warning: the last 1/64 of the medium (at least 64 KiB) (SSC-3 4.2.5).
fn early_warning(capacity: u64) -> u64 {
    capacity.saturating_sub((capacity / 64).max(64 << 10))
}

/// Appends `recs` at the current position (which becomes end-of-data first,
/// SSC-3 4.2.7), with the end-of-medium handling of SSC-3 4.2.5: past the medium's
/// capacity nothing more is written (VOLUME OVERFLOW); past early warning the write
/// succeeds and reports EOM.
fn append(st: &mut TapeState, ctx: &Ctx, recs: &[(Kind, &[u8])], unit: u64) -> Outcome<ScsiResult> {
    writable(st, ctx)?;
    let pos = st.pos;
    let m = st.medium.as_mut().expect("ready");
    m.truncate(pos).map_err(|e| medium_error(e, "write"))?;
    let hdr = m.format.header_len();
    let cap = m.label.capacity;
    let mut fit = 0;
    let mut used = m.used();
    for (_, d) in recs {
        if used + hdr + d.len() as u64 > cap {
            break;
        }
        used += hdr + d.len() as u64;
        fit += 1;
    }
    m.append(&recs[..fit])
        .map_err(|e| medium_error(e, "write"))?;
    st.pos = m.records.len();
    let written: u64 = recs[..fit].iter().map(|(_, d)| d.len() as u64).sum();
    st.bytes_written += written;
    let m = st.medium.as_ref().expect("ready");
    if fit < recs.len() {
        let residue = (recs.len() - fit) as u64 * unit;
        let s = Sense::of(key::VOLUME_OVERFLOW, asc::END_OF_PARTITION_MEDIUM_DETECTED)
            .with_stream(EOM)
            .with_information(residue);
        return Err(s.into());
    }
    if m.used() > early_warning(cap) {
        let s = Sense::of(key::NO_SENSE, asc::END_OF_PARTITION_MEDIUM_DETECTED)
            .with_stream(EOM)
            .with_information(0);
        return check(ctx, s, Vec::new());
    }
    Ok(ScsiResult::good())
}

/// WRITE (6) (SSC-3 7.7).
fn write6(st: &mut TapeState, ctx: &Ctx, cdb: &[u8], data: &[u8]) -> Outcome<ScsiResult> {
    let fixed = cdb[1] & 0x01 != 0;
    let count = u24_at(cdb, 2);
    if fixed && st.block_len == 0 {
        return Err(invalid_cdb_at(1, Some(0)));
    }
    let bytes = if fixed {
        u64::from(count) * u64::from(st.block_len)
    } else {
        u64::from(count)
    };
    if bytes > MAX_TRANSFER {
        return Err(invalid_cdb_at(2, None));
    }
    if count == 0 {
        return Ok(ScsiResult::good());
    }
    let data = crate::cdb::data_out(data, bytes as usize)?;
    if fixed {
        let recs: Vec<(Kind, &[u8])> = data
            .chunks(st.block_len as usize)
            .map(|c| (Kind::Data, c))
            .collect();
        append(st, ctx, &recs, 1)
    } else {
        append(st, ctx, &[(Kind::Data, data)], u64::from(count))
    }
}

/// WRITE FILEMARKS (6) (SSC-3 7.8); zero filemarks only empties the buffer.
fn write_filemarks(st: &mut TapeState, ctx: &Ctx, cdb: &[u8]) -> Outcome<ScsiResult> {
    if cdb[1] & 0x02 != 0 {
        // WSMK: setmarks are not supported.
        return Err(invalid_cdb_at(1, Some(1)));
    }
    let immed = cdb[1] & 0x01 != 0;
    let count = u24_at(cdb, 2) as usize;
    if count > 0 {
        let recs = vec![(Kind::Filemark, &[][..]); count];
        let r = append(st, ctx, &recs, 1)?;
        if r.status != status::GOOD {
            return Ok(r);
        }
    }
    if !immed {
        sync(st)?;
    }
    Ok(ScsiResult::good())
}

/// A 24-bit two's complement count (SPACE).
fn signed24(cdb: &[u8], at: usize) -> i64 {
    let v = u24_at(cdb, at) as i32;
    i64::from((v << 8) >> 8)
}

/// SPACE (6) (SSC-3 7.6): over blocks, filemarks, or to end-of-data.
fn space(st: &mut TapeState, ctx: &Ctx, cdb: &[u8]) -> Outcome<ScsiResult> {
    let code = cdb[1] & 0x0f;
    let count = signed24(cdb, 2);
    let recs: Vec<Kind> = st
        .medium
        .as_ref()
        .expect("ready")
        .records
        .iter()
        .map(|r| r.kind)
        .collect();
    let len = recs.len();
    let bop = |residue: i64| {
        Sense::of(key::NO_SENSE, asc::BEGINNING_OF_PARTITION_MEDIUM_DETECTED)
            .with_stream(EOM)
            .with_information(info(residue))
    };
    match code {
        // Logical blocks.
        0 => {
            let mut left = count;
            while left > 0 {
                match recs.get(st.pos) {
                    None => return check(ctx, eod_sense(left), Vec::new()),
                    Some(Kind::Filemark) => {
                        // Stops on the end-of-medium side of the filemark.
                        st.pos += 1;
                        let s = Sense::of(key::NO_SENSE, asc::FILEMARK_DETECTED)
                            .with_stream(FILEMARK)
                            .with_information(info(left));
                        return check(ctx, s, Vec::new());
                    }
                    Some(_) => {
                        st.pos += 1;
                        left -= 1;
                    }
                }
            }
            while left < 0 {
                if st.pos == 0 {
                    return check(ctx, bop(-left), Vec::new());
                }
                if recs[st.pos - 1] == Kind::Filemark {
                    // Stops on the beginning-of-medium side of the filemark.
                    st.pos -= 1;
                    let s = Sense::of(key::NO_SENSE, asc::FILEMARK_DETECTED)
                        .with_stream(FILEMARK)
                        .with_information(info(-left));
                    return check(ctx, s, Vec::new());
                }
                st.pos -= 1;
                left += 1;
            }
            Ok(ScsiResult::good())
        }
        // Filemarks: forward ends after the last one crossed, reverse before it.
        1 => {
            let mut left = count;
            while left > 0 {
                match recs.get(st.pos) {
                    None => return check(ctx, eod_sense(left), Vec::new()),
                    Some(k) => {
                        st.pos += 1;
                        if *k == Kind::Filemark {
                            left -= 1;
                        }
                    }
                }
            }
            while left < 0 {
                if st.pos == 0 {
                    return check(ctx, bop(-left), Vec::new());
                }
                st.pos -= 1;
                if recs[st.pos] == Kind::Filemark {
                    left += 1;
                }
            }
            Ok(ScsiResult::good())
        }
        // End of data.
        3 => {
            st.pos = len;
            Ok(ScsiResult::good())
        }
        // Sequential filemarks and setmarks are not supported.
        _ => Err(invalid_cdb_at(1, Some(3))),
    }
}

/// LOCATE (10) / (16) (SSC-3 7.1, 6.2): to a logical object, or (16) to a logical
/// file or end-of-data. One partition only.
fn locate(st: &mut TapeState, ctx: &Ctx, cdb: &[u8]) -> Outcome<ScsiResult> {
    let (cp, partition, dest_type, id) = if cdb[0] == 0x2b {
        if cdb[1] & 0x04 != 0 {
            // BT: device-specific block addresses are the same as logical ones here.
        }
        (cdb[1] & 0x02 != 0, cdb[8], 0u8, u64::from(u32_at(cdb, 3)))
    } else {
        (
            cdb[1] & 0x02 != 0,
            cdb[3],
            (cdb[1] >> 3) & 0x03,
            u64_at(cdb, 4),
        )
    };
    if cp && partition != 0 {
        return Err(invalid_cdb_at(if cdb[0] == 0x2b { 8 } else { 3 }, None));
    }
    let recs = &st.medium.as_ref().expect("ready").records;
    let len = recs.len();
    let target = match dest_type {
        0 => id,
        // Logical file N starts after the Nth filemark.
        1 => {
            if id == 0 {
                0
            } else {
                match recs
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.kind == Kind::Filemark)
                    .nth(id as usize - 1)
                {
                    Some((i, _)) => i as u64 + 1,
                    None => u64::MAX,
                }
            }
        }
        3 => len as u64,
        _ => return Err(invalid_cdb_at(1, Some(4))),
    };
    if target > len as u64 {
        st.pos = len;
        return check(ctx, eod_sense(0), Vec::new());
    }
    st.pos = target as usize;
    Ok(ScsiResult::good())
}

/// READ POSITION (SSC-3 7.9): short form (00h, 01h) and long form (06h).
fn read_position(st: &TapeState, cdb: &[u8]) -> Outcome<ScsiResult> {
    let m = st.medium.as_ref().expect("ready");
    let pos = st.pos as u64;
    let bop = st.pos == 0;
    let eop = m.used() > early_warning(m.label.capacity) && st.pos == m.records.len();
    let flags = (u8::from(bop) << 7) | (u8::from(eop) << 6);
    match cdb[1] & 0x1f {
        0x00 | 0x01 => {
            let mut b = vec![0u8; 20];
            b[0] = flags;
            if pos > u64::from(u32::MAX) {
                b[0] |= 0x04; // BPEW: position unknown in 32 bits
            }
            b[4..8].copy_from_slice(&(pos as u32).to_be_bytes());
            b[8..12].copy_from_slice(&(pos as u32).to_be_bytes());
            Ok(ScsiResult::with_data(b))
        }
        0x06 => {
            let file = m.records[..st.pos]
                .iter()
                .filter(|r| r.kind == Kind::Filemark)
                .count() as u64;
            let mut b = vec![0u8; 32];
            b[0] = flags;
            b[8..16].copy_from_slice(&pos.to_be_bytes());
            b[16..24].copy_from_slice(&file.to_be_bytes());
            Ok(ScsiResult::with_data(b))
        }
        _ => Err(invalid_cdb_at(1, Some(4))),
    }
}

/// REPORT DENSITY SUPPORT (SSC-3 6.11): the one density rtgt writes.
fn report_density(st: &TapeState, cdb: &[u8]) -> Outcome<ScsiResult> {
    let media = cdb[1] & 0x01 != 0;
    if cdb[1] & 0x02 != 0 {
        // MEDIUM TYPE: medium type descriptors are not reported.
        return Err(invalid_cdb_at(1, Some(1)));
    }
    if media && st.medium.is_none() {
        return Err(Sense::of(key::NOT_READY, asc::MEDIUM_NOT_PRESENT).into());
    }
    let capacity = st
        .medium
        .as_ref()
        .map(|m| m.label.capacity)
        .unwrap_or(400_000_000_000);
    let mut d = vec![0u8; 52];
    d[0] = DENSITY;
    d[1] = DENSITY;
    d[2] = 0xa0; // WRTOK, DEFLT
    d[5..8].copy_from_slice(&[0x00, 0x2d, 0x6b]); // bits per mm
    d[8..10].copy_from_slice(&127u16.to_be_bytes()); // media width, 0.1 mm
    d[10..12].copy_from_slice(&704u16.to_be_bytes()); // tracks
    let mb = (capacity / 1_000_000).min(u64::from(u32::MAX)) as u32;
    d[12..16].copy_from_slice(&mb.to_be_bytes());
    d[16..24].copy_from_slice(b"LTO-CVE ");
    d[24..32].copy_from_slice(b"U-316   ");
    d[32..52].copy_from_slice(b"Ultrium 3/16T       ");
    let mut b = ((d.len() + 2) as u16).to_be_bytes().to_vec();
    b.extend_from_slice(&[0, 0]);
    b.extend(d);
    b.truncate(usize::from(u16_at(cdb, 7)));
    Ok(ScsiResult::with_data(b))
}

/// LOG SENSE (SPC-4 6.8): the supported pages list and the TapeAlert page (SSC-3
/// 8.2.3), with no alert raised. Parameter pointers and saved values are not kept.
fn log_sense(st: &TapeState, cdb: &[u8]) -> Outcome<ScsiResult> {
    if cdb[1] & 0x01 != 0 {
        // SP: saving parameters is not supported.
        return Err(invalid_cdb_at(1, Some(0)));
    }
    let page = cdb[2] & 0x3f;
    if cdb[3] != 0 {
        return Err(invalid_cdb_at(3, None));
    }
    let mut body = Vec::new();
    match page {
        0x00 => body.extend_from_slice(&[0x00, 0x0c, 0x2e]),
        // Sequential-access device page (SSC-3 8.2.2): bytes moved this load.
        0x0c => {
            for (code, v) in [
                (0u16, st.bytes_written),
                (1, st.bytes_written),
                (2, st.bytes_read),
                (3, st.bytes_read),
            ] {
                body.extend_from_slice(&code.to_be_bytes());
                body.extend_from_slice(&[0x40, 8]);
                body.extend_from_slice(&v.to_be_bytes());
            }
        }
        0x2e => {
            for flag in 1u16..=0x40 {
                body.extend_from_slice(&flag.to_be_bytes());
                body.extend_from_slice(&[0x01, 1, 0]);
            }
        }
        _ => return Err(invalid_cdb_at(2, Some(5))),
    }
    let mut b = vec![page, 0];
    b.extend_from_slice(&(body.len() as u16).to_be_bytes());
    b.extend(body);
    Ok(ScsiResult::with_data(b))
}

/// Data-Out bytes a tape command asks for, for the transport's residuals.
pub(crate) fn data_out_len(drive: &TapeDrive, cdb: &[u8]) -> Option<u64> {
    match cdb[0] {
        0x0a => {
            let n = u64::from(u24_at(cdb, 2));
            Some(if cdb[1] & 0x01 != 0 {
                n * u64::from(drive.state.lock().block_len)
            } else {
                n
            })
        }
        0x15 => Some(u64::from(cdb[4])),
        0x55 => Some(u64::from(u16_at(cdb, 7))),
        _ => None,
    }
}
