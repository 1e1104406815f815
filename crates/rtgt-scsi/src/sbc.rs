//! Direct-access block device commands (SBC-4): capacity, reads, writes, verifies,
//! cache control, medium control.

use std::sync::Arc;

use std::sync::atomic::Ordering;

use crate::cdb::{
    byte, data_out, invalid_cdb, invalid_cdb_at, invalid_param_at, lba_out_of_range,
    param_len_error, u16_at, u24_at, u32_at, u64_at, Fail, Outcome,
};
use crate::inquiry::{
    MAX_ATOMIC_TRANSFER_BYTES, MAX_TRANSFER_BYTES, MAX_UNMAP_BLOCKS, MAX_UNMAP_DESCRIPTORS,
    MAX_WRITE_SAME_BYTES,
};
use crate::lu::Lu;
use crate::sense::{asc, key, Sense};
use crate::store_error::io_fail;
use crate::tasks::TaskGuard;
use crate::{status, ScsiResult};

/// WRITE SAME is written in chunks of at most this many bytes.
const WRITE_SAME_CHUNK: u64 = 1 << 20;

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
    // The store overwrites every byte, so a recycled buffer need not be zeroed first.
    store(lu)
        .read_at(rtgt_backstore::bufpool::take(len), off)
        .await
        .map_err(|e| io_fail(false, &e))
}

/// Writes, durably when FUA asks or the write cache is off (SBC-4 5.40, 6.5.5: WCE=0
/// means GOOD only once the data is on the medium). A durable write is made durable on
/// its own (RWF_DSYNC), without flushing everything else the file holds.
async fn write(lu: &Lu, off: u64, data: Vec<u8>, fua: bool) -> Outcome<()> {
    if data.is_empty() {
        return Ok(());
    }
    let st = store(lu);
    let buf = if lu.durable_write(fua) {
        st.write_at_durable(data, off).await
    } else {
        st.write_at(data, off).await
    }
    .map_err(|e| io_fail(true, &e))?;
    // For the transport's next Data-Out.
    rtgt_backstore::bufpool::give(buf);
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

/// Unmapped blocks read as zeroes (SBC-4 4.7.4.5 LBPRZ): a thin LU whose store
/// guarantees it.
pub(crate) fn lbprz(lu: &Lu) -> bool {
    lu.thin() && store(lu).capabilities().unmap_zeroes
}

/// READ CAPACITY (16) (SBC-4 5.17): no protection; LBPME for a thin LU, LBPRZ when
/// unmapped blocks really read as zeroes; LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT
/// from the physical block size.
pub(crate) fn read_capacity16(lu: &Lu) -> Vec<u8> {
    let mut b = vec![0u8; 32];
    b[0..8].copy_from_slice(&(lu.num_blocks() - 1).to_be_bytes());
    b[8..12].copy_from_slice(&lu.block_size.to_be_bytes());
    // LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT (SBC-4 table 69); LBA 0 is aligned.
    b[13] = ((lu.physical_block_size / lu.block_size).trailing_zeros() as u8) & 0x0f;
    if lu.thin() {
        b[14] = 0x80 | (u8::from(lbprz(lu)) << 6);
    }
    b
}

/// PROVISIONING STATUS values (SBC-4 table 43).
const MAPPED: u8 = 0;
const DEALLOCATED: u8 = 1;

/// GET LBA STATUS (SBC-4 5.8): from STARTING LBA, the runs of mapped and deallocated
/// blocks as the backing file holds them (SEEK_DATA / SEEK_HOLE). A fully
/// provisioned LU has every block mapped. A block only partly backed counts as mapped.
pub(crate) async fn get_lba_status(lu: &Lu, cdb: &[u8]) -> Outcome<Vec<u8>> {
    let lba = u64_at(cdb, 2);
    let alloc = u32_at(cdb, 10) as usize;
    let n = lu.num_blocks();
    if lba >= n {
        return Err(lba_out_of_range());
    }
    let bs = u64::from(lu.block_size);
    // As many descriptors as the allocation length holds (at least one), and a window
    // bounded so a huge fragmented file is not walked to its end.
    let max_desc = (alloc.saturating_sub(8) / 16).clamp(1, 1024);
    let window = (n - lba).min(u64::from(u32::MAX));
    let mut runs: Vec<(u64, u64, u8)> = Vec::new();
    if lu.thin() {
        let ext = store(lu)
            .allocation(lba * bs, window * bs)
            .await
            .map_err(|e| io_fail(false, &e))?;
        for e in ext {
            // Whole blocks: a partly allocated block is mapped, so data rounds outward
            // and holes inward.
            let (start, end) = if e.allocated {
                (e.offset / bs, (e.offset + e.len).div_ceil(bs))
            } else {
                (e.offset.div_ceil(bs), (e.offset + e.len) / bs)
            };
            let start = start.max(runs.last().map_or(lba, |r| r.0 + r.1));
            if end <= start {
                continue;
            }
            let status = if e.allocated { MAPPED } else { DEALLOCATED };
            match runs.last_mut() {
                Some(r) if r.2 == status => r.1 = end - r.0,
                _ => runs.push((start, end - start, status)),
            }
        }
        // Blocks a rounded hole left uncovered are mapped.
        let mut filled: Vec<(u64, u64, u8)> = Vec::new();
        let mut at = lba;
        for r in runs
            .into_iter()
            .chain(std::iter::once((lba + window, 0, MAPPED)))
        {
            if r.0 > at {
                match filled.last_mut() {
                    Some(f) if f.2 == MAPPED => f.1 += r.0 - at,
                    _ => filled.push((at, r.0 - at, MAPPED)),
                }
            }
            if r.1 > 0 {
                match filled.last_mut() {
                    Some(f) if f.2 == r.2 => f.1 += r.1,
                    _ => filled.push(r),
                }
            }
            at = r.0 + r.1;
        }
        runs = filled;
    } else {
        runs.push((lba, window, MAPPED));
    }
    let mut body = Vec::new();
    for (start, len, status) in runs.into_iter().take(max_desc) {
        body.extend_from_slice(&start.to_be_bytes());
        body.extend_from_slice(&(len.min(u64::from(u32::MAX)) as u32).to_be_bytes());
        body.push(status);
        body.extend_from_slice(&[0; 3]);
    }
    let mut b = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    b.extend_from_slice(&[0; 4]);
    b.extend(body);
    Ok(b)
}

/// READ (6/10/12/16) (SBC-4 5.11-5.14).
pub(crate) async fn read_cmd(lu: &Lu, cdb: &[u8]) -> Outcome<ScsiResult> {
    check_protect(cdb)?;
    let s = span(cdb);
    check_range(lu, s)?;
    check_transfer(lu, s)?;
    let _g = lu.range.lock(s.lba, s.blocks, false).await;
    Ok(ScsiResult::with_data(read(lu, s).await?))
}

/// WRITE (6/10/12/16) (SBC-4 5.37-5.40). Takes the Data-Out by value: the store gets this buffer, not a
/// copy (a 4 KiB write otherwise paid an allocation and a copy for nothing).
pub(crate) async fn write_cmd(lu: &Lu, cdb: &[u8], mut data: Vec<u8>) -> Outcome<ScsiResult> {
    check_protect(cdb)?;
    let s = span(cdb);
    check_range(lu, s)?;
    check_transfer(lu, s)?;
    check_writable(lu)?;
    let fua = cdb.len() > 6 && cdb[1] & 0x08 != 0;
    let (off, len) = byte_range(lu, s);
    let _g = lu.range.lock(s.lba, s.blocks, false).await;
    // Only whole blocks of what the CDB asks for (an overflowing Data-Out is cut).
    let keep = whole_blocks(lu, &data, len).len();
    data.truncate(keep);
    write(lu, off, data, fua).await?;
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
    let _g = lu.range.lock(s.lba, s.blocks, false).await;
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
    // Verification means the medium: always write through. The range is held
    // exclusively so the read-back sees this command's data.
    let data = whole_blocks(lu, data, len);
    let _g = lu.range.lock(s.lba, s.blocks, true).await;
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
/// OR of its old contents and the Data-Out, atomically (the range is held exclusively).
pub(crate) async fn orwrite_cmd(lu: &Lu, cdb: &[u8], data: &[u8]) -> Outcome<ScsiResult> {
    check_protect(cdb)?;
    let s = span(cdb);
    check_range(lu, s)?;
    check_transfer(lu, s)?;
    check_writable(lu)?;
    let fua = cdb[1] & 0x08 != 0;
    let data = data_out(data, byte_range(lu, s).1)?;
    let _g = lu.range.lock(s.lba, s.blocks, true).await;
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
/// with respect to every other command touching those blocks: the range is held
/// exclusively while plain reads and writes hold theirs shared.
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
    let _g = lu.range.lock(s.lba, s.blocks, true).await;
    // A store that compares and writes as one operation of its own (rbd: in the OSD)
    // makes it atomic for every target exporting the medium, not only this one.
    match store(lu)
        .compare_and_write(want.to_vec(), new.to_vec(), off)
        .await
    {
        Ok(None) => {
            if lu.durable_write(fua) {
                store(lu)
                    .flush_range(off, len as u64)
                    .await
                    .map_err(|e| io_fail(true, &e))?;
            }
            return Ok(ScsiResult::good());
        }
        // SBC-4 5.3: MISCOMPARE with the offset of the first differing byte.
        Ok(Some(at)) => {
            return Err(Sense::of(key::MISCOMPARE, asc::MISCOMPARE_DURING_VERIFY)
                .with_information(at)
                .into())
        }
        Err(e) if e.kind() == std::io::ErrorKind::Unsupported => {}
        Err(e) => return Err(io_fail(true, &e)),
    }
    let have = read(lu, s).await?;
    compare(&have, want)?;
    write(lu, off, new.to_vec(), fua).await?;
    Ok(ScsiResult::good())
}

/// WRITE SAME (10/16) (SBC-4 5.49, 5.50). On a thin LU with LBPRZ, UNMAP deallocates
/// the range, which then reads as zeroes whatever the Data-Out held (SBC-3 5.42: UNMAP
/// asks for the blocks to be unmapped; initiators such as libiscsi's tests rely on
/// it); NDOB (16 only) means a block of zeroes without Data-Out. ANCHOR is refused
/// (ANC_SUP is zero).
pub(crate) async fn write_same_cmd(lu: &Lu, cdb: &[u8], data: &[u8]) -> Outcome<ScsiResult> {
    check_protect(cdb)?;
    let thin = lu.thin();
    let sixteen = cdb[0] == 0x93;
    let unmap = cdb[1] & 0x08 != 0;
    let ndob = sixteen && cdb[1] & 0x01 != 0;
    // ANCHOR (bit 4): anchored state is not supported; PBDATA / LBDATA (bits 2, 1) are
    // obsolete; UNMAP and NDOB need a thin LU (the opcode table says the same).
    if cdb[1] & 0x10 != 0 {
        return Err(invalid_cdb_at(1, Some(4)));
    }
    if cdb[1] & 0x06 != 0 || (!sixteen && cdb[1] & 0x01 != 0) {
        return Err(invalid_cdb_at(1, Some(2)));
    }
    if !thin && (unmap || ndob) {
        return Err(invalid_cdb_at(1, Some(3)));
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
        return Err(invalid_cdb_at(if sixteen { 10 } else { 7 }, None));
    }
    check_writable(lu)?;
    let zero_block;
    let block = if ndob {
        zero_block = vec![0u8; bs as usize];
        &zero_block[..]
    } else {
        // Exactly one logical block of Data-Out: more or less is a transfer the CDB
        // does not describe.
        if data.len() > bs as usize {
            return Err(Sense::illegal(asc::INVALID_FIELD_IN_INFORMATION_UNIT).into());
        }
        data_out(data, bs as usize)?
    };
    let _g = lu.range.lock(s.lba, s.blocks, false).await;
    let st = store(lu);
    if unmap && lbprz(lu) {
        st.unmap(s.lba * bs, s.blocks * bs)
            .await
            .map_err(|e| io_fail(true, &e))?;
    } else if unmap && block.iter().all(|&b| b == 0) {
        // Deallocation asked for, blocks of zeroes promised, and unmapped blocks that
        // need not read as zeroes (LBPRZ=0): the store's own zeroing, which
        // deallocates what it can (rbd_write_zeroes; a small discard would not zero).
        st.write_zeroes(s.lba * bs, s.blocks * bs)
            .await
            .map_err(|e| io_fail(true, &e))?;
    } else if let Some(r) = write_same_native(st, block, s.lba * bs, s.blocks * bs).await {
        r.map_err(|e| io_fail(true, &e))?;
    } else {
        let chunk_blocks = (WRITE_SAME_CHUNK / bs).max(1);
        let mut lba = s.lba;
        let end = s.lba + s.blocks;
        while lba < end {
            let k = chunk_blocks.min(end - lba);
            let buf = block.repeat(k as usize);
            st.write_at(buf, lba * bs)
                .await
                .map_err(|e| io_fail(true, &e))?;
            lba += k;
        }
    }
    if lu.durable_write(false) {
        st.flush_range(s.lba * bs, s.blocks * bs)
            .await
            .map_err(|e| io_fail(true, &e))?;
    }
    Ok(ScsiResult::good())
}

/// WRITE SAME in one store request where the store has one (rbd_writesame); None
/// when it has not and the caller writes the pattern itself.
async fn write_same_native(
    st: &Arc<dyn rtgt_backstore::BackingStore>,
    block: &[u8],
    off: u64,
    len: u64,
) -> Option<std::io::Result<()>> {
    match st.write_same(block.to_vec(), off, len).await {
        Err(e) if e.kind() == std::io::ErrorKind::Unsupported => None,
        r => Some(r),
    }
}

/// UNMAP (SBC-4 5.32): the parameter list is checked whole before anything is
/// deallocated, so a bad descriptor unmaps nothing.
pub(crate) async fn unmap_cmd(lu: &Lu, cdb: &[u8], data: &[u8]) -> Outcome<ScsiResult> {
    // ANCHOR: anchored state is not supported (ANC_SUP zero).
    if cdb[1] & 0x01 != 0 {
        return Err(invalid_cdb_at(1, Some(0)));
    }
    check_writable(lu)?;
    let len = usize::from(u16_at(cdb, 7));
    // PARAMETER LIST LENGTH zero: nothing to do, not an error.
    if len == 0 {
        return Ok(ScsiResult::good());
    }
    let param = data_out(data, len)?;
    // Shorter than the header: PARAMETER LIST LENGTH ERROR (SBC-4 5.32.2).
    if len < 8 {
        return Err(param_len_error());
    }
    // UNMAP DATA LENGTH and UNMAP BLOCK DESCRIPTOR DATA LENGTH must fit what was sent.
    let data_len = usize::from(u16_at(param, 0));
    let bd_len = usize::from(u16_at(param, 2));
    if data_len + 2 > len || bd_len + 8 > len {
        return Err(param_len_error());
    }
    // A trailing partial descriptor is ignored (SBC-4 5.32.2).
    let descs: Vec<(u64, u64)> = param[8..8 + bd_len]
        .chunks_exact(16)
        .map(|d| (u64_at(d, 0), u64::from(u32_at(d, 8))))
        .collect();
    if descs.len() as u64 > u64::from(MAX_UNMAP_DESCRIPTORS) {
        return Err(invalid_param_at(2, None));
    }
    let n = lu.num_blocks();
    let mut total = 0u64;
    for (i, &(lba, blocks)) in descs.iter().enumerate() {
        // A zero-length descriptor is a no-op wherever it points at or below the end.
        if !matches!(lba.checked_add(blocks), Some(end) if end <= n) {
            return Err(lba_out_of_range());
        }
        total += blocks;
        if blocks > u64::from(MAX_UNMAP_BLOCKS) || total > u64::from(MAX_UNMAP_BLOCKS) {
            return Err(invalid_param_at((8 + 16 * i + 8) as u16, None));
        }
    }
    let bs = u64::from(lu.block_size);
    let st = store(lu);
    for (lba, blocks) in descs {
        if blocks == 0 {
            continue;
        }
        let _g = lu.range.lock(lba, blocks, false).await;
        st.unmap(lba * bs, blocks * bs)
            .await
            .map_err(|e| io_fail(true, &e))?;
    }
    Ok(ScsiResult::good())
}

/// WRITE ATOMIC (16) (SBC-4 5.48): one write that no other command sees half done, as
/// the range is held exclusively and readers hold theirs shared. Atomicity across a
/// power loss is what the backing file system gives a single pwrite.
pub(crate) async fn write_atomic_cmd(lu: &Lu, cdb: &[u8], data: &[u8]) -> Outcome<ScsiResult> {
    check_protect(cdb)?;
    let s = Span {
        lba: u64_at(cdb, 2),
        blocks: u64::from(u16_at(cdb, 12)),
    };
    check_range(lu, s)?;
    let bs = u64::from(lu.block_size);
    // MAXIMUM ATOMIC TRANSFER LENGTH (SBC-4 6.6.4); alignment and granularity are 1.
    if s.blocks * bs > MAX_ATOMIC_TRANSFER_BYTES {
        return Err(invalid_cdb_at(12, None));
    }
    check_writable(lu)?;
    let fua = cdb[1] & 0x08 != 0;
    let (off, len) = byte_range(lu, s);
    let data = data_out(data, len)?;
    let _g = lu.range.lock(s.lba, s.blocks, true).await;
    write(lu, off, data.to_vec(), fua).await?;
    Ok(ScsiResult::good())
}

/// READ DEFECT DATA (10) / (12) (SBC-4 5.19, 5.20): a file has no defect lists, so the
/// lists asked for are returned empty in the format asked for.
pub(crate) fn read_defect_data_cmd(cdb: &[u8]) -> Outcome<ScsiResult> {
    let (flags_byte, twelve) = if cdb[0] == 0x37 {
        (cdb[2], false)
    } else {
        (cdb[1], true)
    };
    let flags = flags_byte & 0x1f; // REQ_PLIST, REQ_GLIST, DEFECT LIST FORMAT
    let mut b = vec![0u8, flags];
    if twelve {
        b.extend_from_slice(&[0, 0]); // GENERATION CODE
        b.extend_from_slice(&0u32.to_be_bytes());
    } else {
        b.extend_from_slice(&0u16.to_be_bytes());
    }
    Ok(ScsiResult::with_data(b))
}

/// SANITIZE service actions (SBC-4 5.27).
const SANITIZE_OVERWRITE: u8 = 0x01;
const SANITIZE_BLOCK_ERASE: u8 = 0x02;
const SANITIZE_CRYPTO_ERASE: u8 = 0x03;
const SANITIZE_EXIT_FAILURE_MODE: u8 = 0x1f;

/// SANITIZE (SBC-4 5.27, 4.11). OVERWRITE writes the pattern over every block;
/// BLOCK ERASE (thin LUs) deallocates every block; CRYPTO ERASE — a file LU has no
/// media key to change — makes every block unreadable the only way it can, by
/// deallocating (thin) or zeroing (thick) it. The operation runs on its own task: it
/// outlives an abort, a reset or the loss of the I_T nexus (SBC-4 4.11.2), and until
/// it ends the LU answers NOT READY / SANITIZE IN PROGRESS.
pub(crate) async fn sanitize_cmd(
    lu: &Arc<Lu>,
    cdb: &[u8],
    data: &[u8],
    task: &TaskGuard,
) -> Outcome<ScsiResult> {
    let immed = cdb[1] & 0x80 != 0;
    let sa = cdb[1] & 0x1f;
    // Byte 1 bit 6 and bytes 2-6 are reserved.
    if cdb[1] & 0x40 != 0 {
        return Err(invalid_cdb_at(1, Some(6)));
    }
    if let Some(i) = (2..=6).find(|&i| cdb[i] != 0) {
        return Err(invalid_cdb_at(i as u16, None));
    }
    let plen = usize::from(u16_at(cdb, 7));
    let bs = lu.block_size as usize;
    if sa == SANITIZE_OVERWRITE {
        // The parameter list is a header and a pattern of 1..=block size bytes.
        if plen < 5 || plen > bs + 4 {
            return Err(invalid_cdb_at(7, None));
        }
    } else if plen != 0 {
        // The other service actions take no parameter list.
        return Err(invalid_cdb_at(7, None));
    }
    check_writable(lu)?;
    if sa == SANITIZE_EXIT_FAILURE_MODE {
        lu.sanitize_failed.store(false, Ordering::Release);
        return Ok(ScsiResult::good());
    }
    let job = match sa {
        SANITIZE_OVERWRITE => {
            let p = data_out(data, plen)?;
            let count = p[0] & 0x1f;
            let invert = p[0] & 0x80 != 0;
            let pat_len = usize::from(u16_at(p, 2));
            if count == 0 {
                return Err(invalid_param_at(0, Some(4)));
            }
            if pat_len == 0 || pat_len > bs || pat_len + 4 != plen {
                return Err(invalid_param_at(2, None));
            }
            let block: Vec<u8> = p[4..4 + pat_len].iter().copied().cycle().take(bs).collect();
            SanitizeJob::Overwrite {
                block,
                count,
                invert,
            }
        }
        SANITIZE_BLOCK_ERASE => SanitizeJob::Deallocate,
        SANITIZE_CRYPTO_ERASE if lu.thin() => SanitizeJob::Deallocate,
        SANITIZE_CRYPTO_ERASE => SanitizeJob::Zero,
        _ => return Err(invalid_cdb_at(1, Some(4))),
    };
    if lu
        .sanitizing
        .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return Err(Sense::of(key::NOT_READY, asc::SANITIZE_IN_PROGRESS).into());
    }
    let lu2 = lu.clone();
    let job_task = tokio::spawn(async move {
        let ok = run_sanitize(&lu2, job).await.is_ok();
        lu2.sanitize_failed.store(!ok, Ordering::Release);
        lu2.sanitizing.store(false, Ordering::Release);
        ok
    });
    if immed {
        return Ok(ScsiResult::good());
    }
    // An aborted SANITIZE (ABORT TASK, a reset, the loss of its I_T nexus) ends now, with
    // no response; the operation goes on (SBC-4 4.11.2), and the task management
    // function does not wait for it.
    tokio::select! {
        r = job_task => match r {
            Ok(true) => Ok(ScsiResult::good()),
            _ => Err(Sense::of(key::MEDIUM_ERROR, asc::SANITIZE_COMMAND_FAILED).into()),
        },
        () = task.until_aborted() => Ok(ScsiResult::good()),
    }
}

/// An overwrite pass is flushed every this many bytes.
const SANITIZE_FLUSH_BYTES: u64 = 8 << 20;

enum SanitizeJob {
    Overwrite {
        block: Vec<u8>,
        count: u8,
        invert: bool,
    },
    Deallocate,
    Zero,
}

async fn run_sanitize(lu: &Lu, job: SanitizeJob) -> std::io::Result<()> {
    let st = store(lu);
    let rate = u64::from(lu.params.read().sanitize_rate) << 20;
    let started = tokio::time::Instant::now();
    let mut written = 0u64;
    let size = lu.num_blocks() * u64::from(lu.block_size);
    match job {
        SanitizeJob::Deallocate => st.unmap(0, size).await?,
        SanitizeJob::Zero => st.write_zeroes(0, size).await?,
        SanitizeJob::Overwrite {
            mut block,
            count,
            invert,
        } => {
            let bs = block.len() as u64;
            for pass in 0..count {
                // INVERT: the pattern is inverted between consecutive passes (SBC-4
                // 5.27.3).
                if invert && pass > 0 {
                    block.iter_mut().for_each(|b| *b = !*b);
                }
                let chunk = block.repeat((WRITE_SAME_CHUNK / bs).max(1) as usize);
                let mut off = 0;
                while off < size {
                    let n = (chunk.len() as u64).min(size - off) as usize;
                    st.write_at(chunk[..n].to_vec(), off).await?;
                    off += n as u64;
                    // Overwritten means on the medium, not in the page cache with the
                    // old data still on disk: flush as the pass goes, which also keeps
                    // the dirty page cache small.
                    if off % SANITIZE_FLUSH_BYTES == 0 {
                        st.flush().await?;
                    }
                    written += n as u64;
                    if rate > 0 {
                        let due = std::time::Duration::from_secs_f64(written as f64 / rate as f64);
                        tokio::time::sleep_until(started + due).await;
                    }
                }
            }
        }
    }
    st.flush().await
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
    .map_err(|e| io_fail(true, &e))?;
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
        store(lu).flush().await.map_err(|e| io_fail(true, &e))?;
    }
    // With a POWER CONDITION other than START_VALID, START and LOEJ are ignored.
    if power_condition != 0 || !loej || !lu.params.read().removable {
        return Ok(ScsiResult::good());
    }
    let mut m = lu.medium.lock();
    // SBC-4 5.25: while removal is prevented, LOEJ neither ejects nor loads.
    if m.prevent_removal() {
        return Err(Sense::illegal(asc::MEDIUM_REMOVAL_PREVENTED).into());
    }
    m.present = start;
    Ok(ScsiResult::good())
}

/// Bytes of Data-Out the CDB asks for (SBC-4 / SPC-4 per command), so the caller can
/// check what arrived and the transport can compute residuals.
pub(crate) fn data_out_len(cdb: &[u8], block_size: u32) -> Option<u64> {
    // Called before the CDB's length is checked against its opcode: a short CDB (the
    // cdb fuzz target found one) has no Data-Out length to speak of.
    if cdb.is_empty() || cdb.len() < crate::cdb::cdb_len(cdb[0]) {
        return None;
    }
    let bs = u64::from(block_size);
    let blocks = || span(trim(cdb)).blocks * bs;
    match cdb[0] {
        0x0a | 0x2a | 0xaa | 0x8a | 0x2e | 0xae | 0x8e | 0x8b => Some(blocks()),
        0x2f | 0xaf | 0x8f => match bytchk(cdb) {
            1 => Some(blocks()),
            3 => Some(bs),
            _ => None,
        },
        0x41 => Some(bs),
        // NDOB: no Data-Out buffer.
        0x93 if byte(cdb, 1) & 0x01 != 0 => Some(0),
        0x93 => Some(bs),
        0x9c => Some(u64::from(u16_at(cdb, 12)) * bs),
        0x42 | 0x48 => Some(u64::from(u16_at(cdb, 7))),
        0x83 => Some(u64::from(u32_at(cdb, 10))),
        0x89 => Some(2 * u64::from(byte(cdb, 13)) * bs),
        0x15 => Some(u64::from(byte(cdb, 4))),
        0x55 => Some(u64::from(u16_at(cdb, 7))),
        0x5f => Some(u64::from(u32_at(cdb, 5))),
        _ => None,
    }
}
