//! Direct-access block device commands (SBC-4): capacity, reads, writes, verifies,
//! cache control, medium control.

use std::sync::Arc;

use crate::cdb::{
    byte, invalid_cdb, lba_out_of_range, u16_at, u24_at, u32_at, u64_at, Fail, Outcome,
};
use crate::inquiry::{MAX_TRANSFER_BYTES, MAX_WRITE_SAME_BYTES};
use crate::lu::Lu;
use crate::sense::{asc, key, Sense};
use crate::{status, ScsiResult};

/// WRITE SAME is written in chunks of at most this many bytes.
const WRITE_SAME_CHUNK: u64 = 1 << 20;

fn io_error(write: bool) -> Fail {
    if write {
        Fail::Check(Sense::of(key::MEDIUM_ERROR, asc::WRITE_ERROR))
    } else {
        Fail::Check(Sense::of(key::MEDIUM_ERROR, asc::UNRECOVERED_READ_ERROR))
    }
}

/// Where a media-access CDB points: LBA, number of blocks, and flag byte 1.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Span {
    pub lba: u64,
    pub blocks: u64,
}

/// Decodes LBA and TRANSFER LENGTH (or NUMBER OF LOGICAL BLOCKS, VERIFICATION LENGTH,
/// PREFETCH LENGTH) by CDB size (SBC-4 5.x CDB layouts).
pub(crate) fn span(cdb: &[u8]) -> Span {
    match cdb.len() {
        6 => {
            // READ (6) / WRITE (6): 21-bit LBA; TRANSFER LENGTH 0 means 256 blocks
            // (SBC-4 5.14).
            let n = u64::from(cdb[4]);
            Span {
                lba: u64::from(u24_at(cdb, 1) & 0x1f_ffff),
                blocks: if n == 0 { 256 } else { n },
            }
        }
        10 => Span {
            lba: u64::from(u32_at(cdb, 2)),
            blocks: u64::from(u16_at(cdb, 7)),
        },
        12 => Span {
            lba: u64::from(u32_at(cdb, 2)),
            blocks: u64::from(u32_at(cdb, 6)),
        },
        _ => Span {
            lba: u64_at(cdb, 2),
            blocks: u64::from(u32_at(cdb, 10)),
        },
    }
}

/// The CDB proper: the group code's length (the transport may pad the CDB).
pub(crate) fn trim(cdb: &[u8]) -> &[u8] {
    &cdb[..crate::cdb::cdb_len(cdb[0]).min(cdb.len())]
}

/// SBC-4 4.5: the LBA and the range it starts must lie within the medium.
fn check_range(lu: &Lu, s: Span) -> Outcome<()> {
    let n = lu.num_blocks();
    // A zero-length transfer at a valid LBA is fine (TRANSFER LENGTH 0 is not an error).
    if s.lba >= n || !matches!(s.lba.checked_add(s.blocks), Some(end) if end <= n) {
        return Err(lba_out_of_range());
    }
    Ok(())
}

/// MAXIMUM TRANSFER LENGTH from the Block Limits page (SBC-4 6.6.4).
fn check_transfer(lu: &Lu, s: Span) -> Outcome<()> {
    if s.blocks * u64::from(lu.block_size) > MAX_TRANSFER_BYTES {
        return Err(invalid_cdb());
    }
    Ok(())
}

/// RDPROTECT / WRPROTECT / VRPROTECT / ORPROTECT must be zero without protection
/// information (SBC-4 4.22.2).
fn check_protect(cdb: &[u8]) -> Outcome<()> {
    if cdb.len() > 6 && cdb[1] & 0xe0 != 0 {
        return Err(invalid_cdb());
    }
    Ok(())
}

fn check_writable(lu: &Lu) -> Outcome<()> {
    if lu.write_protected() {
        return Err(Sense::of(key::DATA_PROTECT, asc::WRITE_PROTECTED).into());
    }
    Ok(())
}

/// The first `len` bytes of Data-Out. Checked after the CDB so a bad CDB gets its own
/// sense; too little data means the transport delivered less than the CDB asks for
/// (SAM-5 5.4.3: terminate without transferring).
pub(crate) fn data_out(data: &[u8], len: usize) -> Outcome<&[u8]> {
    data.get(..len)
        .ok_or_else(|| Sense::illegal(asc::INVALID_FIELD_IN_INFORMATION_UNIT).into())
}

/// The Data-Out a WRITE may use: at most what the CDB asks for, and when the transport
/// delivered less (iSCSI EDTL below the CDB's length), only the whole blocks it did
/// deliver; the transport reports the rest as an overflow residual (RFC 7143 §11.4.5.1).
fn whole_blocks<'a>(lu: &Lu, data: &'a [u8], len: usize) -> &'a [u8] {
    let bs = lu.block_size as usize;
    let n = len.min(data.len() / bs * bs);
    &data[..n]
}

fn byte_range(lu: &Lu, s: Span) -> (u64, usize) {
    let bs = u64::from(lu.block_size);
    (s.lba * bs, (s.blocks * bs) as usize)
}

fn store(lu: &Lu) -> &Arc<dyn rtgt_backstore::BackingStore> {
    lu.store.as_ref().expect("disk LU has a store")
}

async fn read(lu: &Lu, s: Span) -> Outcome<Vec<u8>> {
    let (off, len) = byte_range(lu, s);
    if len == 0 {
        return Ok(Vec::new());
    }
    store(lu)
        .read_at(vec![0u8; len], off)
        .await
        .map_err(|_| io_error(false))
}

/// Writes, durably when FUA asks or the write cache is off (SBC-4 5.40, 6.5.5: WCE=0
/// means GOOD only once the data is on the medium). A durable write is made durable on
/// its own (RWF_DSYNC), without flushing everything else the file holds.
async fn write(lu: &Lu, off: u64, data: Vec<u8>, fua: bool) -> Outcome<()> {
    if data.is_empty() {
        return Ok(());
    }
    let st = store(lu);
    if lu.durable_write(fua) {
        st.write_at_durable(data, off).await
    } else {
        st.write_at(data, off).await
    }
    .map_err(|_| io_error(true))?;
    Ok(())
}

/// READ CAPACITY (10) (SBC-4 5.16).
pub(crate) fn read_capacity10(lu: &Lu, cdb: &[u8]) -> Outcome<Vec<u8>> {
    // PMI is obsolete; with PMI zero the LBA field must be zero.
    if cdb[8] & 0x01 == 0 && u32_at(cdb, 2) != 0 {
        return Err(invalid_cdb());
    }
    let last = lu.num_blocks() - 1;
    // 0xFFFFFFFF tells the initiator to use READ CAPACITY (16).
    let last = u32::try_from(last).unwrap_or(u32::MAX);
    let mut b = last.to_be_bytes().to_vec();
    b.extend_from_slice(&lu.block_size.to_be_bytes());
    Ok(b)
}

/// READ CAPACITY (16) (SBC-4 5.17): no protection, not thin (LBPME = 0).
pub(crate) fn read_capacity16(lu: &Lu) -> Vec<u8> {
    let mut b = vec![0u8; 32];
    b[0..8].copy_from_slice(&(lu.num_blocks() - 1).to_be_bytes());
    b[8..12].copy_from_slice(&lu.block_size.to_be_bytes());
    // LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT (SBC-4 table 69); LBA 0 is aligned.
    b[13] = ((lu.physical_block_size / lu.block_size).trailing_zeros() as u8) & 0x0f;
    b
}

/// GET LBA STATUS (SBC-4 5.7): a fully provisioned LU has every block mapped.
pub(crate) fn get_lba_status(lu: &Lu, cdb: &[u8]) -> Outcome<Vec<u8>> {
    let lba = u64_at(cdb, 2);
    let n = lu.num_blocks();
    if lba >= n {
        return Err(lba_out_of_range());
    }
    let mut b = vec![0u8; 8];
    b[0..4].copy_from_slice(&20u32.to_be_bytes());
    b.extend_from_slice(&lba.to_be_bytes());
    let count = u32::try_from(n - lba).unwrap_or(u32::MAX);
    b.extend_from_slice(&count.to_be_bytes());
    b.push(0); // PROVISIONING STATUS: mapped
    b.extend_from_slice(&[0; 3]);
    Ok(b)
}

/// READ (6/10/12/16) (SBC-4 5.11-5.14).
pub(crate) async fn read_cmd(lu: &Lu, cdb: &[u8]) -> Outcome<ScsiResult> {
    check_protect(cdb)?;
    let s = span(cdb);
    check_range(lu, s)?;
    check_transfer(lu, s)?;
    Ok(ScsiResult::with_data(read(lu, s).await?))
}

/// WRITE (6/10/12/16) (SBC-4 5.37-5.40).
pub(crate) async fn write_cmd(lu: &Lu, cdb: &[u8], data: &[u8]) -> Outcome<ScsiResult> {
    check_protect(cdb)?;
    let s = span(cdb);
    check_range(lu, s)?;
    check_transfer(lu, s)?;
    check_writable(lu)?;
    let fua = cdb.len() > 6 && cdb[1] & 0x08 != 0;
    let (off, len) = byte_range(lu, s);
    write(lu, off, whole_blocks(lu, data, len).to_vec(), fua).await?;
    Ok(ScsiResult::good())
}

/// Compares `want` with what the medium holds; MISCOMPARE with the offset of the first
/// differing byte in INFORMATION (SBC-4 5.31).
fn compare(have: &[u8], want: &[u8]) -> Outcome<()> {
    if let Some(i) = have.iter().zip(want).position(|(a, b)| a != b) {
        return Err(Sense::of(key::MISCOMPARE, asc::MISCOMPARE_DURING_VERIFY)
            .with_information(i as u64)
            .into());
    }
    Ok(())
}

/// The BYTCHK field of VERIFY (SBC-4 5.31): 00b medium verify, 01b compare the
/// Data-Out, 11b compare one block against every block; 10b is reserved.
pub(crate) fn bytchk(cdb: &[u8]) -> u8 {
    (cdb[1] >> 1) & 0x03
}

/// VERIFY (10/12/16).
pub(crate) async fn verify_cmd(lu: &Lu, cdb: &[u8], data: &[u8]) -> Outcome<ScsiResult> {
    check_protect(cdb)?;
    let chk = bytchk(cdb);
    if chk == 2 {
        return Err(invalid_cdb());
    }
    let s = span(cdb);
    check_range(lu, s)?;
    check_transfer(lu, s)?;
    let have = read(lu, s).await?;
    match chk {
        1 => compare(&have, data_out(data, have.len())?)?,
        3 => {
            let bs = lu.block_size as usize;
            let one = data_out(data, bs)?;
            for (i, blk) in have.chunks(bs).enumerate() {
                compare(blk, one).map_err(|f| match f {
                    Fail::Check(sense) => Fail::Check(
                        sense.with_information(sense.information.unwrap_or(0) + (i * bs) as u64),
                    ),
                    other => other,
                })?;
            }
        }
        _ => {}
    }
    Ok(ScsiResult::good())
}

/// WRITE AND VERIFY (10/12/16) (SBC-4 5.41-5.43): the data is written through, then
/// read back and compared when BYTCHK asks.
pub(crate) async fn write_verify_cmd(lu: &Lu, cdb: &[u8], data: &[u8]) -> Outcome<ScsiResult> {
    check_protect(cdb)?;
    let chk = bytchk(cdb);
    if chk > 1 {
        return Err(invalid_cdb());
    }
    let s = span(cdb);
    check_range(lu, s)?;
    check_transfer(lu, s)?;
    check_writable(lu)?;
    let (off, len) = byte_range(lu, s);
    // Verification means the medium: always write through.
    let data = whole_blocks(lu, data, len);
    write(lu, off, data.to_vec(), true).await?;
    if chk == 1 && !data.is_empty() {
        let span = Span {
            lba: s.lba,
            blocks: (data.len() / lu.block_size as usize) as u64,
        };
        let have = read(lu, span).await?;
        compare(&have, data)?;
    }
    Ok(ScsiResult::good())
}

/// ORWRITE (16) (SBC-4 5.9), the simple (non-XDWRITE) form: each block becomes the
/// OR of its old contents and the Data-Out. Not atomic against concurrent writes to
/// the same blocks.
pub(crate) async fn orwrite_cmd(lu: &Lu, cdb: &[u8], data: &[u8]) -> Outcome<ScsiResult> {
    check_protect(cdb)?;
    let s = span(cdb);
    check_range(lu, s)?;
    check_transfer(lu, s)?;
    check_writable(lu)?;
    let fua = cdb[1] & 0x08 != 0;
    let data = data_out(data, byte_range(lu, s).1)?;
    let _rmw = lu.rmw.lock().await;
    let mut old = read(lu, s).await?;
    for (o, d) in old.iter_mut().zip(data) {
        *o |= *d;
    }
    let (off, _) = byte_range(lu, s);
    write(lu, off, old, fua).await?;
    Ok(ScsiResult::good())
}

/// Largest NUMBER OF LOGICAL BLOCKS for COMPARE AND WRITE (VPD B0 byte 5): the
/// one-byte CDB field's whole range, so no count is refused for size.
pub(crate) const MAX_COMPARE_AND_WRITE_BLOCKS: u8 = 255;

/// COMPARE AND WRITE (SBC-4 5.3): the Data-Out holds the compare blocks then the write
/// blocks; the write happens only if the medium equals the compare data, atomically
/// with respect to other read-modify-write commands of this LU.
pub(crate) async fn compare_and_write_cmd(lu: &Lu, cdb: &[u8], data: &[u8]) -> Outcome<ScsiResult> {
    check_protect(cdb)?;
    let s = Span {
        lba: u64_at(cdb, 2),
        blocks: u64::from(cdb[13]),
    };
    check_range(lu, s)?;
    check_writable(lu)?;
    let (off, len) = byte_range(lu, s);
    // The Data-Out must be exactly the compare and the write blocks: a count that
    // does not match what was sent (e.g. 256 blocks wrapped to 0 in the one-byte
    // field) is a CDB the initiator did not mean.
    if data.len() != 2 * len {
        return Err(invalid_cdb());
    }
    if s.blocks == 0 {
        return Ok(ScsiResult::good());
    }
    let both = data;
    let (want, new) = both.split_at(len);
    let fua = cdb[1] & 0x08 != 0;
    let _rmw = lu.rmw.lock().await;
    let have = read(lu, s).await?;
    compare(&have, want)?;
    write(lu, off, new.to_vec(), fua).await?;
    Ok(ScsiResult::good())
}

/// WRITE SAME (10/16) (SBC-4 5.44, 5.45).
pub(crate) async fn write_same_cmd(lu: &Lu, cdb: &[u8], data: &[u8]) -> Outcome<ScsiResult> {
    check_protect(cdb)?;
    // ANCHOR (bit 4) and UNMAP (bit 3) need thin provisioning, PBDATA / LBDATA are
    // obsolete and NDOB (bit 0 of the 16-byte form) is not supported.
    if cdb[1] & 0x1f != 0 {
        return Err(invalid_cdb());
    }
    let mut s = span(cdb);
    let n = lu.num_blocks();
    if s.lba >= n {
        return Err(lba_out_of_range());
    }
    let bs = u64::from(lu.block_size);
    if s.blocks == 0 {
        // NUMBER OF LOGICAL BLOCKS zero: through the last LBA (WSNZ is zero).
        s.blocks = n - s.lba;
    } else {
        check_range(lu, s)?;
    }
    // MAXIMUM WRITE SAME LENGTH (SBC-4 6.6.4).
    if s.blocks * bs > MAX_WRITE_SAME_BYTES {
        return Err(invalid_cdb());
    }
    check_writable(lu)?;
    let block = data_out(data, bs as usize)?;
    let chunk_blocks = (WRITE_SAME_CHUNK / bs).max(1);
    let mut lba = s.lba;
    let end = s.lba + s.blocks;
    let st = store(lu);
    while lba < end {
        let k = chunk_blocks.min(end - lba);
        let buf = block.repeat(k as usize);
        st.write_at(buf, lba * bs)
            .await
            .map_err(|_| io_error(true))?;
        lba += k;
    }
    if lu.durable_write(false) {
        st.flush_range(s.lba * bs, s.blocks * bs)
            .await
            .map_err(|_| io_error(true))?;
    }
    Ok(ScsiResult::good())
}

/// SYNCHRONIZE CACHE (10/16) (SBC-4 5.26, 5.27): the range is checked, then flushed
/// (NUMBER OF LOGICAL BLOCKS zero: through the last LBA). With `nv_cache=1` the cache
/// is trusted to be non-volatile and there is nothing to do.
pub(crate) async fn sync_cache_cmd(lu: &Lu, cdb: &[u8]) -> Outcome<ScsiResult> {
    let s = span(cdb);
    check_range(lu, s)?;
    if !lu.flush_needed() {
        return Ok(ScsiResult::good());
    }
    let st = store(lu);
    let bs = u64::from(lu.block_size);
    if s.blocks == 0 && s.lba == 0 {
        st.flush().await
    } else {
        let blocks = if s.blocks == 0 {
            lu.num_blocks() - s.lba
        } else {
            s.blocks
        };
        st.flush_range(s.lba * bs, blocks * bs).await
    }
    .map_err(|_| io_error(true))?;
    Ok(ScsiResult::good())
}

/// PRE-FETCH (10/16) (SBC-4 5.9, 5.10): CONDITION MET says the range will fit in the
/// cache, which holds for a file-backed LU (the page cache does the fetching).
pub(crate) fn prefetch_cmd(lu: &Lu, cdb: &[u8]) -> Outcome<ScsiResult> {
    let s = span(cdb);
    check_range(lu, s)?;
    Ok(ScsiResult {
        status: status::CONDITION_MET,
        ..ScsiResult::default()
    })
}

/// START STOP UNIT (SBC-4 5.25).
pub(crate) async fn start_stop_cmd(lu: &Lu, cdb: &[u8]) -> Outcome<ScsiResult> {
    let power_condition = cdb[4] >> 4;
    let no_flush = cdb[4] & 0x04 != 0;
    let loej = cdb[4] & 0x02 != 0;
    let start = cdb[4] & 0x01 != 0;
    if cdb[1] & 0xfe != 0 || cdb[4] & 0x08 != 0 {
        return Err(invalid_cdb());
    }
    // Stopping makes the cache durable first unless NO_FLUSH says not to.
    if !start && !no_flush && lu.flush_needed() {
        store(lu).flush().await.map_err(|_| io_error(true))?;
    }
    // With a POWER CONDITION other than START_VALID, START and LOEJ are ignored.
    if power_condition != 0 || !loej || !lu.params.read().removable {
        return Ok(ScsiResult::good());
    }
    let mut m = lu.medium.lock();
    if start {
        m.present = true;
    } else {
        if m.prevent_removal {
            return Err(Sense::illegal(asc::MEDIUM_REMOVAL_PREVENTED).into());
        }
        m.present = false;
    }
    Ok(ScsiResult::good())
}

/// PREVENT ALLOW MEDIUM REMOVAL (SBC-4 5.15).
pub(crate) fn prevent_allow_cmd(lu: &Lu, cdb: &[u8]) -> Outcome<ScsiResult> {
    let prevent = cdb[4] & 0x03;
    if prevent > 1 {
        return Err(invalid_cdb());
    }
    lu.medium.lock().prevent_removal = prevent == 1;
    Ok(ScsiResult::good())
}

/// Bytes of Data-Out the CDB asks for (SBC-4 / SPC-4 per command), so the caller can
/// check what arrived and the transport can compute residuals.
pub(crate) fn data_out_len(cdb: &[u8], block_size: u32) -> Option<u64> {
    let bs = u64::from(block_size);
    let blocks = || span(trim(cdb)).blocks * bs;
    match cdb[0] {
        0x0a | 0x2a | 0xaa | 0x8a | 0x2e | 0xae | 0x8e | 0x8b => Some(blocks()),
        0x2f | 0xaf | 0x8f => match bytchk(cdb) {
            1 => Some(blocks()),
            3 => Some(bs),
            _ => None,
        },
        0x41 | 0x93 => Some(bs),
        0x89 => Some(2 * u64::from(byte(cdb, 13)) * bs),
        0x15 => Some(u64::from(byte(cdb, 4))),
        0x55 => Some(u64::from(u16_at(cdb, 7))),
        0x5f => Some(u64::from(u32_at(cdb, 5))),
        _ => None,
    }
}
