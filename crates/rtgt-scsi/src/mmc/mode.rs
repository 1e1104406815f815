//! MODE SENSE / MODE SELECT for the drive (MMC-6 7): the read/write error recovery page
//! (01h) and the CD/DVD capabilities and mechanical status page (2Ah, MMC-3 6.3.11),
//! which hosts read to learn what the drive does. No block descriptors; nothing is
//! changeable, so MODE SELECT accepts the pages as they are.

use crate::cdb::{invalid_cdb_at, invalid_param_at, param_len_error, u16_at, Outcome};
use crate::lu::Lu;
use crate::sense::{asc, Sense};

/// DVD 1x is 1385 kB/s; the drive claims 16x reads and 8x writes.
const READ_SPEED: u16 = 16 * 1385;
const WRITE_SPEED: u16 = 8 * 1385;

fn error_recovery() -> Vec<u8> {
    let mut p = vec![0u8; 12];
    p[0] = 0x01;
    p[1] = 10;
    p
}

fn capabilities(lu: &Lu) -> Vec<u8> {
    let locked = lu.medium.lock().prevent_removal();
    let mut p = vec![0u8; 32];
    p[0] = 0x2a;
    p[1] = 30;
    p[2] = 0x08; // DVD-ROM Read
    p[3] = 0x00; // no CD-R/RW, DVD-R, DVD-RAM writing (DVD+R is a feature, not a bit here)
    p[4] = 0x00;
    p[5] = 0x00;
    // Loading mechanism: tray (001b); Eject; Lock, and whether it is locked now.
    p[6] = 0x20 | 0x08 | (u8::from(locked) << 1) | 0x01;
    p[8..10].copy_from_slice(&READ_SPEED.to_be_bytes());
    p[12..14].copy_from_slice(&2048u16.to_be_bytes()); // buffer size, KB
    p[14..16].copy_from_slice(&READ_SPEED.to_be_bytes());
    p[18..20].copy_from_slice(&WRITE_SPEED.to_be_bytes());
    p[20..22].copy_from_slice(&WRITE_SPEED.to_be_bytes());
    p[28..30].copy_from_slice(&WRITE_SPEED.to_be_bytes());
    p
}

fn page(lu: &Lu, code: u8) -> Option<Vec<u8>> {
    match code {
        0x01 => Some(error_recovery()),
        0x2a => Some(capabilities(lu)),
        _ => None,
    }
}

/// MODE SENSE (6) / (10).
pub(crate) fn sense(lu: &Lu, cdb: &[u8]) -> Outcome<Vec<u8>> {
    let ten = cdb[0] == 0x5a;
    let pc = cdb[2] >> 6;
    let code = cdb[2] & 0x3f;
    let subpage = cdb[3];
    if pc == 3 {
        return Err(Sense::illegal(asc::SAVING_PARAMETERS_NOT_SUPPORTED).into());
    }
    if subpage != 0 && !(code == 0x3f && subpage == 0xff) {
        return Err(invalid_cdb_at(3, None));
    }
    let codes: Vec<u8> = if code == 0x3f {
        vec![0x01, 0x2a]
    } else {
        vec![code]
    };
    let mut body = Vec::new();
    for c in codes {
        let mut p = page(lu, c).ok_or_else(|| invalid_cdb_at(2, Some(5)))?;
        if pc == 1 {
            // Changeable values: none.
            p[2..].fill(0);
        }
        body.extend(p);
    }
    let mut out = if ten {
        let mut h = vec![0u8; 8];
        h[0..2].copy_from_slice(&((body.len() + 6) as u16).to_be_bytes());
        h
    } else {
        vec![(body.len() + 3) as u8, 0, 0, 0]
    };
    out.extend(body);
    Ok(out)
}

/// MODE SELECT (10): PF=1, no block descriptors, pages the drive has with their
/// current values (nothing is changeable).
pub(crate) fn select(lu: &Lu, cdb: &[u8], param: &[u8]) -> Outcome<()> {
    if cdb[1] & 0x10 == 0 {
        return Err(invalid_cdb_at(1, Some(4)));
    }
    if cdb[1] & 0x01 != 0 {
        return Err(Sense::illegal(asc::SAVING_PARAMETERS_NOT_SUPPORTED).into());
    }
    if param.is_empty() {
        return Ok(());
    }
    if param.len() < 8 {
        return Err(param_len_error());
    }
    if u16_at(param, 6) != 0 {
        return Err(invalid_param_at(6, None));
    }
    let mut at = 8;
    while at < param.len() {
        if at + 2 > param.len() {
            return Err(param_len_error());
        }
        let code = param[at] & 0x3f;
        let len = usize::from(param[at + 1]) + 2;
        let Some(cur) = page(lu, code) else {
            return Err(invalid_param_at(at as u16, Some(5)));
        };
        let got = param.get(at..at + len).ok_or_else(param_len_error)?;
        if len != cur.len() {
            return Err(invalid_param_at(at as u16 + 1, None));
        }
        // The lock state bit of page 2Ah reports, it isn't set: ignore it.
        for i in 2..len {
            let mask = if code == 0x2a && i == 6 { 0xfd } else { 0xff };
            if (got[i] ^ cur[i]) & mask != 0 {
                return Err(invalid_param_at((at + i) as u16, None));
            }
        }
        at += len;
    }
    Ok(())
}
