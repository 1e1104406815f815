//! What is on the disc: READ CAPACITY, READ TOC/PMA/ATIP, READ DISC INFORMATION, READ
//! TRACK INFORMATION and READ DVD STRUCTURE. rtgt's discs have one session holding one
//! track, starting at LBA 0.

use crate::cdb::{invalid_cdb_at, u32_at, Outcome};
use crate::lu::Lu;
use crate::sense::{asc, Sense};

use super::{drive, Disc, BLOCK, DVD_PLUS_R_BLOCKS};

/// A snapshot of the disc, taken under the drive's lock.
struct View {
    disc: Disc,
    recorded: u64,
}

fn view(lu: &Lu) -> View {
    let s = drive(lu).state.lock();
    let m = s.medium.as_ref().expect("checked: a disc is loaded");
    View {
        disc: m.disc,
        recorded: m.recorded,
    }
}

impl View {
    fn blank(&self) -> bool {
        matches!(self.disc, Disc::PlusR { reserved: None, .. }) && self.recorded == 0
    }
    fn complete(&self) -> bool {
        self.disc == Disc::Rom
    }
    /// Track 1's size: all it holds on a closed disc, what is reserved or the whole
    /// disc on an open DVD+R.
    fn track_size(&self) -> u64 {
        match self.disc {
            Disc::Rom => self.recorded,
            Disc::PlusR {
                reserved: Some(n), ..
            } => n,
            Disc::PlusR { reserved: None, .. } => DVD_PLUS_R_BLOCKS,
        }
    }
}

fn be32(v: u64) -> [u8; 4] {
    (v.min(u64::from(u32::MAX)) as u32).to_be_bytes()
}

/// READ CAPACITY (MMC-6 6.23): the last recorded block and the 2048-byte block length.
pub(crate) fn read_capacity(lu: &Lu) -> Vec<u8> {
    let v = view(lu);
    let mut out = be32(v.recorded.saturating_sub(1)).to_vec();
    out.extend_from_slice(&(BLOCK as u32).to_be_bytes());
    out
}

/// An LBA as MSF (MMC-6 4.2.3.4): 150 sectors of pre-gap, 75 frames a second. A DVD is
/// longer than MSF can say; the largest address stands for the rest.
fn msf(lba: u64) -> [u8; 4] {
    let a = (lba + 150).min(255 * 60 * 75 + 59 * 75 + 74);
    [0, (a / 4500) as u8, (a / 75 % 60) as u8, (a % 75) as u8]
}

fn address(lba: u64, use_msf: bool) -> [u8; 4] {
    if use_msf {
        msf(lba)
    } else {
        be32(lba)
    }
}

/// ADR 1 (Q sub-channel position), CONTROL 4 (data track, recorded uninterrupted).
const ADR_CONTROL: u8 = 0x14;

/// READ TOC/PMA/ATIP (MMC-6 6.26): format 0 (TOC), 1 (session information) and 2 (raw
/// TOC); PMA, ATIP and CD-TEXT do not exist on a DVD.
pub(crate) fn read_toc(lu: &Lu, cdb: &[u8]) -> Outcome<Vec<u8>> {
    let use_msf = cdb[1] & 0x02 != 0;
    // Older hosts (Linux's sr among them, for the session information) put the format
    // in bits 7-6 of the CONTROL byte, as SFF-8020 did; MMC-6 6.26.2.1 keeps that
    // field for them when the FORMAT field is zero.
    let format = match cdb[2] & 0x0f {
        0 => cdb[9] >> 6,
        f => f,
    };
    let number = cdb[6];
    let v = view(lu);
    // A blank disc has no table of contents (MMC-6 6.26.2.5).
    if v.blank() {
        return Err(Sense::illegal(asc::INVALID_FIELD_IN_CDB).into());
    }
    let end = v.recorded;
    let mut out = vec![0u8; 4];
    match format {
        0 => {
            out[2] = 1;
            out[3] = 1;
            if number > 1 && number != 0xaa {
                return Err(invalid_cdb_at(6, None));
            }
            if number <= 1 {
                out.extend_from_slice(&[0, ADR_CONTROL, 1, 0]);
                out.extend_from_slice(&address(0, use_msf));
            }
            // The lead-out, track AAh, starts after the last recorded block.
            out.extend_from_slice(&[0, ADR_CONTROL, 0xaa, 0]);
            out.extend_from_slice(&address(end, use_msf));
        }
        1 => {
            out[2] = 1;
            out[3] = 1;
            out.extend_from_slice(&[0, ADR_CONTROL, 1, 0]);
            out.extend_from_slice(&address(0, use_msf));
        }
        2 => {
            if number > 1 {
                return Err(invalid_cdb_at(6, None));
            }
            out[2] = 1;
            out[3] = 1;
            // Points A0h (first track, disc type 00h), A1h (last track), A2h (lead-out)
            // and track 1, with MSF addresses (MMC-6 table 494).
            let lead_out = msf(end);
            let t1 = msf(0);
            for (point, p) in [
                (0xa0, [1, 0x00, 0]),
                (0xa1, [1, 0, 0]),
                (0xa2, [lead_out[1], lead_out[2], lead_out[3]]),
                (0x01, [t1[1], t1[2], t1[3]]),
            ] {
                out.extend_from_slice(&[1, ADR_CONTROL, 0, point, 0, 0, 0, 0]);
                out.extend_from_slice(&p);
            }
        }
        _ => return Err(invalid_cdb_at(2, Some(3))),
    }
    let len = (out.len() - 2) as u16;
    out[0..2].copy_from_slice(&len.to_be_bytes());
    Ok(out)
}

/// READ DISC INFORMATION (MMC-6 6.22), standard disc information (type 000b).
pub(crate) fn read_disc_information(lu: &Lu, cdb: &[u8]) -> Outcome<Vec<u8>> {
    if cdb[1] & 0x07 != 0 {
        return Err(invalid_cdb_at(1, Some(2)));
    }
    let v = view(lu);
    let mut out = vec![0u8; 34];
    out[0..2].copy_from_slice(&32u16.to_be_bytes());
    // State of last session (bits 3-2) and disc status (bits 1-0): empty 00b/00b,
    // incomplete 01b/01b, complete 11b/10b.
    out[2] = if v.complete() {
        0x0e
    } else if v.blank() {
        0x00
    } else {
        0x05
    };
    out[3] = 1; // first track on disc
    out[4] = 1; // sessions
    out[5] = 1; // first track in last session
    out[6] = 1; // last track in last session
    out[7] = 0x20; // URU: unrestricted use
    out[8] = 0x00; // disc type: CD-DA or CD-ROM / other (DVD)
    if v.complete() {
        out[16..20].copy_from_slice(&[0xff; 4]);
        out[20..24].copy_from_slice(&[0xff; 4]);
    } else {
        // Last session lead-in start: session 1 starts at 0; last possible lead-out
        // start: the end of the user area.
        out[20..24].copy_from_slice(&be32(DVD_PLUS_R_BLOCKS));
    }
    Ok(out)
}

/// READ TRACK INFORMATION (MMC-6 6.27): track 1, by number (or FFh, the invisible
/// track, which is track 1 while the disc is open), by LBA, or session 1.
pub(crate) fn read_track_information(lu: &Lu, cdb: &[u8]) -> Outcome<Vec<u8>> {
    let kind = cdb[1] & 0x03;
    let value = u64::from(u32_at(cdb, 2));
    let v = view(lu);
    let ok = match kind {
        0 => value < v.track_size().max(v.recorded.max(1)),
        1 => value == 1 || (value == 0xff && !v.complete()),
        2 => value == 1,
        _ => false,
    };
    if !ok {
        let at = if kind == 3 { 1 } else { 2 };
        return Err(invalid_cdb_at(at, None));
    }
    let mut out = vec![0u8; 48];
    out[0..2].copy_from_slice(&46u16.to_be_bytes());
    out[2] = 1; // track number
    out[3] = 1; // session number
    out[5] = 0x04; // track mode: data, recorded uninterrupted
    let reserved = matches!(
        v.disc,
        Disc::PlusR {
            reserved: Some(_),
            ..
        }
    );
    let blank = v.blank();
    // RT, Blank, data mode 1.
    out[6] = (u8::from(reserved) << 7) | (u8::from(blank) << 6) | 0x01;
    let size = v.track_size();
    if !v.complete() {
        out[7] = 0x01; // NWA_V
        out[12..16].copy_from_slice(&be32(v.recorded));
        out[16..20].copy_from_slice(&be32(size.saturating_sub(v.recorded)));
    }
    if v.recorded > 0 {
        out[7] |= 0x02; // LRA_V
        out[28..32].copy_from_slice(&be32(v.recorded - 1));
    }
    out[20..24].copy_from_slice(&be32(16)); // fixed packet size: one ECC block
    out[24..28].copy_from_slice(&be32(size));
    Ok(out)
}

/// READ DVD STRUCTURE (MMC-6 6.24) for DVD media, layer 0: physical format (00h),
/// copyright (01h), disc manufacturing (04h) and the list of structures (FFh).
pub(crate) fn read_dvd_structure(lu: &Lu, cdb: &[u8]) -> Outcome<Vec<u8>> {
    let media_type = cdb[1] & 0x0f;
    let layer = cdb[6];
    let format = cdb[7];
    if media_type != 0 {
        return Err(invalid_cdb_at(1, Some(3)));
    }
    if format != 0xff && layer != 0 {
        return Err(invalid_cdb_at(6, None));
    }
    let v = view(lu);
    let body: Vec<u8> = match format {
        0x00 => {
            let mut b = vec![0u8; 2048];
            let plus_r = matches!(v.disc, Disc::PlusR { .. });
            // Book type DVD-ROM (0) or DVD+R (Ah), part version 1; 120 mm, no maximum
            // rate specified; one layer, embossed or recordable; densities 0.
            b[0] = if plus_r { 0xa1 } else { 0x01 };
            b[1] = 0x0f;
            b[2] = if plus_r { 0x02 } else { 0x01 };
            // Data area: from physical sector 30000h, as DVD's sector numbering.
            let first = 0x30000u64;
            let blocks = if plus_r {
                DVD_PLUS_R_BLOCKS
            } else {
                v.recorded
            };
            b[4..8].copy_from_slice(&be32(first));
            b[8..12].copy_from_slice(&be32(first + blocks.max(1) - 1));
            b
        }
        // No copy protection, every region.
        0x01 => vec![0, 0, 0, 0],
        0x04 => vec![0u8; 2048],
        0xff => {
            let mut b = Vec::new();
            for (f, len) in [(0x00u8, 2052u16), (0x01, 8), (0x04, 2052), (0xff, 20)] {
                b.push(f);
                b.push(0x40); // RDS: readable with READ DVD STRUCTURE
                b.extend_from_slice(&len.to_be_bytes());
            }
            b
        }
        _ => return Err(invalid_cdb_at(7, None)),
    };
    let mut out = ((body.len() + 2) as u16).to_be_bytes().to_vec();
    out.extend_from_slice(&[0, 0]);
    out.extend(body);
    Ok(out)
}
