//! The copy manager: EXTENDED COPY (LID1) and RECEIVE COPY RESULTS (SPC-4 6.4, 6.18,
//! 5.17), with block-to-block segment descriptors (02h) between identification
//! descriptor CSCDs (E4h) naming any LU of the daemon by its NAA designator, and the
//! Third-party Copy VPD page (SPC-4 7.8.17).
//!
//! A copy runs to completion inside the EXTENDED COPY command, so there is never a
//! copy "in progress" for RECEIVE COPY RESULTS to see; held results are kept per I_T
//! nexus and LIST IDENTIFIER.

use std::sync::Arc;

use crate::cdb::{
    invalid_cdb_at, invalid_param_at, param_len_error, u16_at, u32_at, u64_at, Fail, Outcome,
};
use crate::lu::Lu;
use crate::sense::{asc, key, Sense};
use crate::target::LuDirectory;
use crate::{ItNexus, ScsiResult};

/// Copy manager limits (RECEIVE COPY RESULTS OPERATING PARAMETERS, VPD 8Fh).
const MAX_CSCD_DESCRIPTORS: u16 = 2;
const MAX_SEGMENT_DESCRIPTORS: u16 = 64;
const MAX_DESCRIPTOR_LIST_LENGTH: u32 = 4096;
const MAX_SEGMENT_LENGTH: u32 = 256 << 20;
/// Results kept per LU; the oldest go first.
const MAX_HELD_RESULTS: usize = 64;
const CHUNK: u64 = 1 << 20;

const SEG_BLOCK_TO_BLOCK: u8 = 0x02;
const CSCD_IDENTIFICATION: u8 = 0xe4;

/// The held result of one EXTENDED COPY (SPC-4 6.18.2 COPY STATUS).
#[derive(Debug, Clone, Copy)]
pub(crate) struct CopyStatus {
    /// COPY MANAGER STATUS: 01h completed without errors, 02h completed with errors.
    status: u8,
    segments: u16,
    bytes: u64,
    /// Insertion order, to drop the oldest.
    seq: u64,
}

fn copy_aborted(code: asc::Code) -> Fail {
    Fail::Check(Sense::of(key::COPY_ABORTED, code))
}

/// A CSCD descriptor as parsed: the LU it names, if the copy manager can reach it.
struct Cscd {
    lu: Option<Arc<Lu>>,
}

/// EXTENDED COPY (LID1) (SPC-4 6.4).
pub(crate) async fn extended_copy(
    dir: &LuDirectory,
    lu: &Arc<Lu>,
    nexus: &ItNexus,
    cdb: &[u8],
    data: &[u8],
) -> Outcome<ScsiResult> {
    let plen = u32_at(cdb, 10) as usize;
    // PARAMETER LIST LENGTH zero: nothing to copy, not an error (SPC-4 6.4.1).
    if plen == 0 {
        return Ok(ScsiResult::good());
    }
    let p = crate::cdb::data_out(data, plen)?;
    if plen < 16 {
        return Err(param_len_error());
    }
    let list_id = p[0];
    let usage = (p[1] >> 3) & 0x03;
    let cscd_len = usize::from(u16_at(p, 2));
    let seg_len = u32_at(p, 8) as usize;
    let inline_len = u32_at(p, 12) as usize;
    if 16 + cscd_len + seg_len + inline_len > plen {
        return Err(param_len_error());
    }
    if cscd_len + seg_len > MAX_DESCRIPTOR_LIST_LENGTH as usize {
        return Err(param_len_error());
    }
    // No inline or embedded data (MAXIMUM INLINE DATA LENGTH zero).
    if inline_len != 0 {
        return Err(invalid_param_at(12, None));
    }
    // LIST ID USAGE 11b: the LIST IDENTIFIER must be zero (SPC-4 6.4.3.2); 01b is
    // reserved.
    if usage == 0b01 || (usage == 0b11 && list_id != 0) {
        return Err(invalid_param_at(1, Some(4)));
    }

    // CSCD descriptors.
    let mut cscds = Vec::new();
    let mut at = 16;
    let end = 16 + cscd_len;
    while at < end {
        let code = p[at];
        let len = match code {
            0xe0..=0xe9 => 32,
            0xea | 0xeb => 64,
            _ => {
                return Err(Sense::illegal(asc::UNSUPPORTED_TARGET_DESCRIPTOR_TYPE_CODE)
                    .with_field(false, at as u16, None)
                    .into())
            }
        };
        if at + len > end {
            return Err(param_len_error());
        }
        if code != CSCD_IDENTIFICATION {
            return Err(Sense::illegal(asc::UNSUPPORTED_TARGET_DESCRIPTOR_TYPE_CODE)
                .with_field(false, at as u16, None)
                .into());
        }
        cscds.push(resolve(dir, &p[at..at + len], &nexus.initiator_name));
        at += len;
    }
    if cscds.len() > usize::from(MAX_CSCD_DESCRIPTORS) {
        return Err(Sense::illegal(asc::TOO_MANY_TARGET_DESCRIPTORS).into());
    }

    // Segment descriptors: parsed and checked whole before anything is copied.
    let mut segs = Vec::new();
    let mut at = end;
    let end = end + seg_len;
    while at < end {
        if at + 4 > end {
            return Err(param_len_error());
        }
        let code = p[at];
        let len = 4 + usize::from(u16_at(p, at + 2));
        if code != SEG_BLOCK_TO_BLOCK {
            return Err(
                Sense::illegal(asc::UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE_CODE)
                    .with_field(false, at as u16, None)
                    .into(),
            );
        }
        if len != 28 || at + len > end {
            return Err(param_len_error());
        }
        segs.push(&p[at..at + len]);
        at += len;
    }
    if segs.len() > usize::from(MAX_SEGMENT_DESCRIPTORS) {
        return Err(Sense::illegal(asc::TOO_MANY_SEGMENT_DESCRIPTORS).into());
    }

    let mut done = CopyStatus {
        status: 1,
        segments: 0,
        bytes: 0,
        seq: 0,
    };
    let mut result = Ok(());
    for seg in &segs {
        match copy_segment(&cscds, seg).await {
            Ok(n) => {
                done.segments += 1;
                done.bytes += n;
            }
            Err(f) => {
                done.status = 2;
                result = Err(f);
                break;
            }
        }
    }
    // LIST ID USAGE 00b: hold the result for RECEIVE COPY RESULTS.
    if usage == 0b00 {
        let mut held = lu.copy_results.lock();
        done.seq = held.values().map(|c| c.seq + 1).max().unwrap_or(0);
        held.insert((nexus.id, list_id), done);
        if held.len() > MAX_HELD_RESULTS {
            if let Some(oldest) = held.iter().min_by_key(|(_, c)| c.seq).map(|(k, _)| *k) {
                held.remove(&oldest);
            }
        }
    }
    result.map(|()| ScsiResult::good())
}

/// An identification descriptor CSCD (SPC-4 6.4.5.2 / 7.8.6): its designator is looked
/// up among the daemon's LUs; a block device's DISK BLOCK LENGTH must match.
fn resolve(dir: &LuDirectory, d: &[u8], initiator: &str) -> Cscd {
    let device_type = d[1] & 0x1f;
    let code_set = d[4] & 0x0f;
    let assoc = (d[5] >> 4) & 0x03;
    let dtype = d[5] & 0x0f;
    let dlen = usize::from(d[7]);
    // NAA (type 3), binary, naming a logical unit, 8 bytes: what VPD 83h reports.
    let lu = if device_type == 0 && code_set == 1 && assoc == 0 && dtype == 3 && dlen == 8 {
        // Only LUs the initiator could reach directly (SPC-4 leaves access control of
        // the copy manager to the device server): a copy is no way around an ACL, CHAP
        // or LUN masking.
        dir.find_naa(u64_at(d, 8), initiator)
    } else {
        None
    };
    let block_len = u32::from_be_bytes([0, d[29], d[30], d[31]]);
    Cscd {
        lu: lu.filter(|lu| lu.block_size == block_len),
    }
}

/// One block-to-block segment (SPC-4 6.4.6.5); returns the bytes copied.
async fn copy_segment(cscds: &[Cscd], seg: &[u8]) -> Outcome<u64> {
    let dc = seg[1] & 0x02 != 0;
    let target = |i: u16| -> Outcome<Arc<Lu>> {
        let c = cscds
            .get(usize::from(i))
            .ok_or_else(|| copy_aborted(asc::UNREACHABLE_COPY_TARGET))?;
        c.lu.clone()
            .ok_or_else(|| copy_aborted(asc::COPY_TARGET_DEVICE_NOT_REACHABLE))
    };
    let src = target(u16_at(seg, 4))?;
    let dst = target(u16_at(seg, 6))?;
    let blocks = u64::from(u16_at(seg, 10));
    let (src_lba, dst_lba) = (u64_at(seg, 12), u64_at(seg, 20));
    // NUMBER OF BLOCKS counts source blocks, or destination blocks with DC set.
    let bytes = blocks * u64::from(if dc { dst.block_size } else { src.block_size });
    if bytes % u64::from(src.block_size) != 0 || bytes % u64::from(dst.block_size) != 0 {
        return Err(copy_aborted(asc::NO_ADDITIONAL_SENSE));
    }
    if bytes > u64::from(MAX_SEGMENT_LENGTH) {
        return Err(copy_aborted(asc::NO_ADDITIONAL_SENSE));
    }
    let in_range = |lu: &Lu, lba: u64| {
        let n = bytes / u64::from(lu.block_size);
        matches!(lba.checked_add(n), Some(e) if e <= lu.num_blocks())
    };
    if !in_range(&src, src_lba) || !in_range(&dst, dst_lba) {
        return Err(copy_aborted(asc::NO_ADDITIONAL_SENSE));
    }
    if dst.write_protected() {
        return Err(copy_aborted(asc::WRITE_PROTECTED));
    }
    let (src_off, dst_off) = (
        src_lba * u64::from(src.block_size),
        dst_lba * u64::from(dst.block_size),
    );
    let (Some(ss), Some(ds)) = (src.store.as_ref(), dst.store.as_ref()) else {
        return Err(copy_aborted(asc::COPY_TARGET_DEVICE_NOT_REACHABLE));
    };
    // Overlapping ranges of one LU copied upwards go from the end, so no chunk is
    // overwritten before it is read.
    let backwards = Arc::ptr_eq(&src, &dst) && dst_off > src_off && dst_off < src_off + bytes;
    let mut chunks: Vec<u64> = (0..bytes.div_ceil(CHUNK)).map(|i| i * CHUNK).collect();
    if backwards {
        chunks.reverse();
    }
    for off in chunks {
        let n = CHUNK.min(bytes - off);
        let (sbs, dbs) = (u64::from(src.block_size), u64::from(dst.block_size));
        let _sg = src.range.lock((src_off + off) / sbs, n / sbs, false).await;
        let buf = ss
            .read_at(vec![0u8; n as usize], src_off + off)
            .await
            .map_err(|_| copy_aborted(asc::UNRECOVERED_READ_ERROR))?;
        let _dg = if Arc::ptr_eq(&src, &dst) {
            None
        } else {
            Some(dst.range.lock((dst_off + off) / dbs, n / dbs, false).await)
        };
        ds.write_at(buf, dst_off + off)
            .await
            .map_err(|_| copy_aborted(asc::WRITE_ERROR))?;
    }
    if !dst.mode.lock().wce {
        ds.flush()
            .await
            .map_err(|_| copy_aborted(asc::WRITE_ERROR))?;
    }
    Ok(bytes)
}

/// RECEIVE COPY RESULTS (SPC-4 6.18): COPY STATUS (00h) and OPERATING PARAMETERS (03h).
pub(crate) fn receive_copy_results(lu: &Lu, nexus: &ItNexus, cdb: &[u8]) -> Outcome<ScsiResult> {
    let list_id = cdb[2];
    let mut b = Vec::new();
    match cdb[1] & 0x1f {
        0x00 => {
            let st = lu
                .copy_results
                .lock()
                .get(&(nexus.id, list_id))
                .copied()
                // No operation with that LIST IDENTIFIER (SPC-4 6.18.2).
                .ok_or_else(|| invalid_cdb_at(2, None))?;
            b.extend_from_slice(&8u32.to_be_bytes());
            b.push(st.status);
            b.extend_from_slice(&st.segments.to_be_bytes());
            // TRANSFER COUNT UNITS: bytes while they fit, else kibibytes (F1h).
            let (units, count) = match u32::try_from(st.bytes) {
                Ok(n) => (0x00, n),
                Err(_) => (0xf1, (st.bytes >> 10) as u32),
            };
            b.push(units);
            b.extend_from_slice(&count.to_be_bytes());
        }
        0x03 => {
            b.resize(44, 0);
            b[8..10].copy_from_slice(&MAX_CSCD_DESCRIPTORS.to_be_bytes());
            b[10..12].copy_from_slice(&MAX_SEGMENT_DESCRIPTORS.to_be_bytes());
            b[12..16].copy_from_slice(&MAX_DESCRIPTOR_LIST_LENGTH.to_be_bytes());
            b[16..20].copy_from_slice(&MAX_SEGMENT_LENGTH.to_be_bytes());
            // MAXIMUM INLINE DATA LENGTH, HELD DATA LIMIT, MAXIMUM STREAM DEVICE
            // TRANSFER SIZE: zero (no inline data, no held data, no stream devices).
            b[34..36].copy_from_slice(&1u16.to_be_bytes()); // TOTAL CONCURRENT COPIES
            b[36] = 1; // MAXIMUM CONCURRENT COPIES
            b[37] = 9; // DATA SEGMENT GRANULARITY: 2^9 bytes
            b.extend_from_slice(&[SEG_BLOCK_TO_BLOCK, CSCD_IDENTIFICATION]);
            b[43] = 2; // IMPLEMENTED DESCRIPTOR LIST LENGTH
            let n = (b.len() - 4) as u32;
            b[0..4].copy_from_slice(&n.to_be_bytes());
        }
        _ => return Err(invalid_cdb_at(1, Some(4))),
    }
    Ok(ScsiResult::with_data(b))
}

/// The body of the Third-party Copy VPD page (SPC-4 7.8.17): the commands, descriptor
/// types and limits of the copy manager.
pub(crate) fn third_party_copy_vpd() -> Vec<u8> {
    fn descriptor(out: &mut Vec<u8>, kind: u16, mut payload: Vec<u8>) {
        payload.resize(payload.len().next_multiple_of(4), 0);
        out.extend_from_slice(&kind.to_be_bytes());
        out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        out.extend(payload);
    }
    let mut body = Vec::new();
    // Supported Commands (0001h): EXTENDED COPY (LID1), RECEIVE COPY RESULTS 00h/03h.
    let cmds = [0x83, 1, 0x00, 0x84, 2, 0x00, 0x03];
    let mut p = vec![cmds.len() as u8];
    p.extend_from_slice(&cmds);
    descriptor(&mut body, 0x0001, p);
    // Supported Descriptors (0004h).
    descriptor(
        &mut body,
        0x0004,
        vec![2, SEG_BLOCK_TO_BLOCK, CSCD_IDENTIFICATION],
    );
    // Parameter Data (0008h).
    let mut p = vec![0u8; 28];
    p[4..6].copy_from_slice(&MAX_CSCD_DESCRIPTORS.to_be_bytes());
    p[6..8].copy_from_slice(&MAX_SEGMENT_DESCRIPTORS.to_be_bytes());
    p[8..12].copy_from_slice(&MAX_DESCRIPTOR_LIST_LENGTH.to_be_bytes());
    descriptor(&mut body, 0x0008, p);
    body
}
