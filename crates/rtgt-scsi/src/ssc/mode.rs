//! Mode parameters of a tape drive (SSC-3 8.3): the block descriptor (density and
//! block length), the data compression (0Fh), device configuration (10h) and control
//! (0Ah) pages.

use crate::cdb::{invalid_param, invalid_param_at, param_len_error, u16_at, Outcome};
use crate::lu::Lu;
use crate::sense::{asc, Sense};

use super::{TapeState, DENSITY, MAX_BLOCK};

const CONTROL: u8 = 0x0a;
const COMPRESSION: u8 = 0x0f;
const DEVICE_CONFIG: u8 = 0x10;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Pc {
    Current,
    Changeable,
    Default,
}

fn page(code: u8, pc: Pc, st: &TapeState, d_sense: bool) -> Vec<u8> {
    match code {
        CONTROL => {
            let mut p = vec![0u8; 12];
            p[0] = CONTROL;
            p[1] = 10;
            match pc {
                Pc::Changeable => p[2] = 0x04,
                Pc::Current => p[2] = u8::from(d_sense) << 2,
                Pc::Default => {}
            }
            p
        }
        COMPRESSION => {
            let mut p = vec![0u8; 16];
            p[0] = COMPRESSION;
            p[1] = 14;
            match pc {
                Pc::Changeable => p[2] = 0x80, // DCE
                _ => {
                    let on = pc == Pc::Current && st.compression;
                    p[2] = 0x40 | (u8::from(on) << 7); // DCC: capable
                    p[3] = 0x80; // DDE: decompression enabled
                    p[4..8].copy_from_slice(&1u32.to_be_bytes());
                    p[8..12].copy_from_slice(&1u32.to_be_bytes());
                }
            }
            p
        }
        DEVICE_CONFIG => {
            let mut p = vec![0u8; 16];
            p[0] = DEVICE_CONFIG;
            p[1] = 14;
            match pc {
                Pc::Changeable => p[14] = 0xff, // SELECT DATA COMPRESSION ALGORITHM
                _ => {
                    // EEG (EOD generation) and SEW (synchronize at early warning).
                    p[10] = 0x18;
                    p[14] = u8::from(pc == Pc::Current && st.compression);
                }
            }
            p
        }
        _ => unreachable!("unserved tape mode page"),
    }
}

const PAGES: [u8; 3] = [CONTROL, COMPRESSION, DEVICE_CONFIG];

/// MODE SENSE (6) / (10).
pub(crate) fn sense(lu: &Lu, st: &TapeState, wp: bool, cdb: &[u8]) -> Outcome<crate::ScsiResult> {
    let ten = cdb[0] == 0x5a;
    let dbd = cdb[1] & 0x08 != 0;
    let pc = match cdb[2] >> 6 {
        0 => Pc::Current,
        1 => Pc::Changeable,
        2 => Pc::Default,
        _ => return Err(Sense::illegal(asc::SAVING_PARAMETERS_NOT_SUPPORTED).into()),
    };
    let code = cdb[2] & 0x3f;
    if cdb[3] != 0 && cdb[3] != 0xff {
        return Err(crate::cdb::invalid_cdb_at(3, None));
    }
    let d_sense = lu.mode.lock().d_sense;
    let mut pages = Vec::new();
    match code {
        // Page 0: the header and block descriptor only (SSC-3 8.3.1).
        0x00 => {}
        0x3f => {
            for c in PAGES {
                pages.extend(page(c, pc, st, d_sense));
            }
        }
        c if PAGES.contains(&c) => pages.extend(page(c, pc, st, d_sense)),
        _ => return Err(crate::cdb::invalid_cdb_at(2, Some(5))),
    }
    let mut bd = Vec::new();
    if !dbd {
        bd = vec![0u8; 8];
        if pc != Pc::Changeable {
            bd[0] = if st.medium.is_some() { DENSITY } else { 0 };
            bd[5..8].copy_from_slice(&st.block_len.to_be_bytes()[1..]);
        } else {
            bd[5..8].copy_from_slice(&[0xff; 3]);
        }
    }
    // Device-specific parameter: WP and BUFFERED MODE (SSC-3 8.3.1).
    let dsp = (u8::from(wp && pc == Pc::Current) << 7) | ((st.buffered & 0x07) << 4);
    let mut out = Vec::new();
    if ten {
        let len = 6 + bd.len() + pages.len();
        out.extend_from_slice(&(len as u16).to_be_bytes());
        out.extend_from_slice(&[0, dsp, 0, 0]);
        out.extend_from_slice(&(bd.len() as u16).to_be_bytes());
    } else {
        let len = 3 + bd.len() + pages.len();
        out.extend_from_slice(&[len.min(255) as u8, 0, dsp, bd.len() as u8]);
    }
    out.extend(bd);
    out.extend(pages);
    let alloc = if ten {
        usize::from(u16_at(cdb, 7))
    } else {
        usize::from(cdb[4])
    };
    out.truncate(alloc);
    Ok(crate::ScsiResult::with_data(out))
}

/// MODE SELECT (6) / (10): block length, buffered mode, compression, D_SENSE.
pub(crate) fn select(lu: &Lu, st: &mut TapeState, cdb: &[u8], p: &[u8]) -> Outcome<()> {
    let ten = cdb[0] == 0x55;
    if cdb[1] & 0x01 != 0 {
        // SP: nothing is saved.
        return Err(crate::cdb::invalid_cdb_at(1, Some(0)));
    }
    let hdr = if ten { 8 } else { 4 };
    if p.is_empty() {
        return Ok(());
    }
    if p.len() < hdr {
        return Err(param_len_error());
    }
    let (dsp, bdl) = if ten {
        (p[3], usize::from(u16_at(p, 6)))
    } else {
        (p[2], usize::from(p[3]))
    };
    if p.len() < hdr + bdl || (bdl != 0 && bdl != 8) {
        return Err(param_len_error());
    }
    let mut block_len = st.block_len;
    if bdl == 8 {
        let bd = &p[hdr..hdr + 8];
        // Density: 0 (default), 7Fh (no change) or the one served.
        if !matches!(bd[0], 0 | 0x7f | DENSITY) {
            return Err(invalid_param_at(hdr as u16, None));
        }
        let bl = u32::from_be_bytes([0, bd[5], bd[6], bd[7]]);
        if bl > MAX_BLOCK {
            return Err(invalid_param_at(hdr as u16 + 5, None));
        }
        block_len = bl;
    }
    let buffered = (dsp >> 4) & 0x07;
    if buffered > 1 {
        return Err(invalid_param_at(if ten { 3 } else { 2 }, Some(6)));
    }
    let mut compression = st.compression;
    let mut d_sense = None;
    let mut at = hdr + bdl;
    while at < p.len() {
        let code = p[at] & 0x3f;
        let len = usize::from(*p.get(at + 1).ok_or_else(param_len_error)?) + 2;
        let pg = p.get(at..at + len).ok_or_else(param_len_error)?;
        match (code, len) {
            (COMPRESSION, 16) => compression = pg[2] & 0x80 != 0,
            (DEVICE_CONFIG, 16) => compression = pg[14] != 0,
            (CONTROL, 12) => d_sense = Some(pg[2] & 0x04 != 0),
            _ => return Err(invalid_param_at(at as u16, None)),
        }
        at += len;
    }
    if at != p.len() {
        return Err(invalid_param());
    }
    st.block_len = block_len;
    st.buffered = buffered;
    st.compression = compression;
    if let Some(d) = d_sense {
        lu.mode.lock().d_sense = d;
    }
    Ok(())
}
