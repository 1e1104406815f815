//! A disk's own VPD pages (SBC-4 6.6): Block Limits, Block Device Characteristics and
//! Logical Block Provisioning.

use crate::inquiry::{
    MAX_ATOMIC_TRANSFER_BYTES, MAX_TRANSFER_BYTES, MAX_UNMAP_BLOCKS, MAX_UNMAP_DESCRIPTORS,
    MAX_WRITE_SAME_BYTES,
};
use crate::lu::Lu;

/// The body of VPD page `page`, if a disk has it.
pub(super) fn page(lu: &Lu, page: u8) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    match page {
        0xb0 => {
            // Block Limits (SBC-4 6.6.4).
            body.resize(0x3c, 0);
            let bs = u64::from(lu.block_size);
            body[1] = crate::sbc::MAX_COMPARE_AND_WRITE_BLOCKS;
            // OPTIMAL TRANSFER LENGTH GRANULARITY: a physical block, at least a page.
            let gran = (lu.physical_block_size.max(4096) / lu.block_size).max(1) as u16;
            body[2..4].copy_from_slice(&gran.to_be_bytes());
            let max = (MAX_TRANSFER_BYTES / bs) as u32;
            body[4..8].copy_from_slice(&max.to_be_bytes());
            body[8..12].copy_from_slice(&max.to_be_bytes());
            body[12..16].copy_from_slice(&max.to_be_bytes()); // MAXIMUM PREFETCH LENGTH
            if lu.thin() {
                // UNMAP limits, and the file system block as OPTIMAL UNMAP GRANULARITY
                // (a smaller hole is only zeroed), aligned at LBA 0 (UGAVALID).
                body[16..20].copy_from_slice(&MAX_UNMAP_BLOCKS.to_be_bytes());
                body[20..24].copy_from_slice(&MAX_UNMAP_DESCRIPTORS.to_be_bytes());
                body[24..28].copy_from_slice(&u32::from(gran).to_be_bytes());
                body[28] = 0x80;
            }
            let ws = MAX_WRITE_SAME_BYTES / bs;
            body[32..40].copy_from_slice(&ws.to_be_bytes());
            // MAXIMUM ATOMIC TRANSFER LENGTH; ATOMIC ALIGNMENT and ATOMIC TRANSFER
            // LENGTH GRANULARITY zero: none required. No atomic boundaries.
            let atomic = (MAX_ATOMIC_TRANSFER_BYTES / bs) as u32;
            body[40..44].copy_from_slice(&atomic.to_be_bytes());
        }
        0xb1 => {
            // Block Device Characteristics (SBC-4 6.6.2): non-rotating medium, form
            // factor not reported. WABEREQ / WACEREQ 01b: after a BLOCK ERASE (thin
            // LUs only) or CRYPTO ERASE, reads succeed (and return zeroes).
            body.resize(0x3c, 0);
            body[0..2].copy_from_slice(&1u16.to_be_bytes());
            body[3] = if lu.thin() { 0x50 } else { 0x10 };
        }
        0xb2 => {
            // Logical Block Provisioning (SBC-4 6.6.7). Thin: LBPU (UNMAP), LBPWS and
            // LBPWS10 (WRITE SAME with UNMAP), LBPRZ when unmapped blocks read as
            // zeroes, no anchored state, PROVISIONING TYPE 010b. Fully provisioned:
            // all zero.
            body.resize(4, 0);
            if lu.thin() {
                body[1] = 0x80 | 0x40 | 0x20 | (u8::from(crate::sbc::lbprz(lu)) << 2);
                body[2] = 0x02;
            }
        }
        _ => return None,
    }
    Some(body)
}
