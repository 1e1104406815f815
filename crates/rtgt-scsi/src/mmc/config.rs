//! GET CONFIGURATION (MMC-6 6.6): the drive's profiles and features, which of them the
//! disc in the drive makes current.

use crate::cdb::{invalid_cdb_at, u16_at, Outcome};
use crate::lu::Lu;

use super::{drive, PROFILE_DVD_PLUS_R, PROFILE_DVD_ROM};

/// One feature descriptor (MMC-6 5.3.1): code, version, persistent, current, data.
fn feature(code: u16, version: u8, persistent: bool, current: bool, data: &[u8]) -> Vec<u8> {
    let mut f = code.to_be_bytes().to_vec();
    f.push((version << 2) | (u8::from(persistent) << 1) | u8::from(current));
    f.push(data.len() as u8);
    f.extend_from_slice(data);
    f
}

/// Every feature of the drive, in feature-number order, given the current profile.
fn features(profile: u16, tray_open: bool) -> Vec<(u16, Vec<u8>)> {
    let rom = profile == PROFILE_DVD_ROM;
    let plus_r = profile == PROFILE_DVD_PLUS_R;
    let readable = rom || plus_r;
    // Profile List (5.3.2): highest profile number first; CurrentP on the disc's.
    let mut list = Vec::new();
    for p in [PROFILE_DVD_PLUS_R, PROFILE_DVD_ROM] {
        list.extend_from_slice(&p.to_be_bytes());
        list.push(u8::from(p == profile));
        list.push(0);
    }
    // Random Readable (5.3.6): 2048-byte blocks, ECC blocks of 16 sectors on DVD.
    let mut random = super::BLOCK.to_be_bytes()[4..].to_vec();
    random.extend_from_slice(&16u16.to_be_bytes());
    random.extend_from_slice(&[0, 0]);
    vec![
        (0x0000, feature(0x0000, 0, true, true, &list)),
        // Core (5.3.3): physical interface 1 (SCSI family), DBE set as version 2 needs.
        (
            0x0001,
            feature(0x0001, 2, true, true, &[0, 0, 0, 1, 0x01, 0, 0, 0]),
        ),
        // Morphing (5.3.4): the profile changes with the disc; no asynchronous events.
        (0x0002, feature(0x0002, 1, true, true, &[0, 0, 0, 0])),
        // Removable Medium (5.3.5): tray loader (001b), Load, Eject, Lock; Pvnt Jmpr 0.
        (
            0x0003,
            feature(0x0003, 2, true, true, &[0x20 | 0x10 | 0x08 | 0x01, 0, 0, 0]),
        ),
        (0x0010, feature(0x0010, 0, false, readable, &random)),
        // DVD Read (5.3.13): single layer only.
        (0x001f, feature(0x001f, 1, false, readable, &[0, 0, 0, 0])),
        // DVD+R (5.3.21): Write=1, this drive writes DVD+R.
        (0x002b, feature(0x002b, 0, false, plus_r, &[0x01, 0, 0, 0])),
        // Real Time Streaming (5.3.38): SET STREAMING for writing (SW), READ BUFFER
        // CAPACITY with Block=1 (RBCB).
        (
            0x0107,
            feature(
                0x0107,
                3,
                false,
                plus_r && !tray_open,
                &[0x10 | 0x01, 0, 0, 0],
            ),
        ),
    ]
}

/// GET CONFIGURATION: RT 00b every feature from STARTING FEATURE NUMBER on, 01b the
/// current ones, 10b the one named.
pub(crate) fn get_configuration(lu: &Lu, cdb: &[u8]) -> Outcome<Vec<u8>> {
    let rt = cdb[1] & 0x03;
    let start = u16_at(cdb, 2);
    if rt == 3 {
        return Err(invalid_cdb_at(1, Some(1)));
    }
    let (profile, tray_open) = {
        let s = drive(lu).state.lock();
        let profile = match (&s.medium, s.tray_open) {
            (Some(m), false) => m.profile(),
            _ => 0,
        };
        (profile, s.tray_open)
    };
    let mut out = vec![0u8; 8];
    out[6..8].copy_from_slice(&profile.to_be_bytes());
    for (code, f) in features(profile, tray_open) {
        let current = f[2] & 0x01 != 0;
        let take = match rt {
            0 => code >= start,
            1 => code >= start && current,
            _ => code == start,
        };
        if take {
            out.extend_from_slice(&f);
        }
    }
    let len = (out.len() - 4) as u32;
    out[0..4].copy_from_slice(&len.to_be_bytes());
    Ok(out)
}
