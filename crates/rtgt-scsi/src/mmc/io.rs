//! Reading the disc, and burning a DVD+R: WRITE at the next writable address, RESERVE
//! TRACK, CLOSE TRACK/SESSION, SYNCHRONIZE CACHE, READ BUFFER CAPACITY, SET STREAMING.
//! The image file is the disc: what is written is in it, so a burned disc survives a
//! restart (as a recorded disc, read as a DVD-ROM).

use std::sync::Arc;

use rtgt_backstore::BackingStore;

use crate::cdb::{invalid_cdb_at, lba_out_of_range, param_len_error, u16_at, u32_at, Outcome};
use crate::inquiry::MAX_TRANSFER_BYTES;
use crate::lu::Lu;
use crate::sense::{asc, key, Sense};
use crate::ScsiResult;

use super::{code, drive, Disc, BLOCK, DVD_PLUS_R_BLOCKS};

fn span(cdb: &[u8]) -> (u64, u64) {
    let lba = u64::from(u32_at(cdb, 2));
    let n = if cdb[0] & 0xe0 == 0xa0 {
        u64::from(u32_at(cdb, 6))
    } else {
        u64::from(u16_at(cdb, 7))
    };
    (lba, n)
}

fn write_protected() -> crate::cdb::Fail {
    Sense::of(key::DATA_PROTECT, asc::WRITE_PROTECTED).into()
}

fn sequence_error() -> crate::cdb::Fail {
    Sense::illegal(code::COMMAND_SEQUENCE_ERROR).into()
}

/// READ (10) / READ (12) (MMC-6 6.15, 6.16): recorded blocks only.
pub(crate) async fn read(lu: &Lu, cdb: &[u8]) -> Outcome<ScsiResult> {
    let (lba, n) = span(cdb);
    if n * BLOCK > MAX_TRANSFER_BYTES {
        return Err(invalid_cdb_at(if cdb[0] == 0x28 { 7 } else { 6 }, None));
    }
    let store = {
        let s = drive(lu).state.lock();
        let m = s.medium.as_ref().expect("checked: a disc is loaded");
        if !matches!(lba.checked_add(n), Some(end) if end <= m.recorded) || lba >= m.recorded.max(1)
        {
            return Err(lba_out_of_range());
        }
        m.store.clone()
    };
    if n == 0 {
        return Ok(ScsiResult::good());
    }
    let data = store
        .read_at(vec![0u8; (n * BLOCK) as usize], lba * BLOCK)
        .await
        .map_err(|_| Sense::of(key::MEDIUM_ERROR, asc::UNRECOVERED_READ_ERROR))?;
    Ok(ScsiResult::with_data(data))
}

/// The store of a DVD+R that may still be written, or why not.
fn writable(lu: &Lu) -> Outcome<Arc<dyn BackingStore>> {
    let s = drive(lu).state.lock();
    let m = s.medium.as_ref().expect("checked: a disc is loaded");
    if m.disc == Disc::Rom || lu.params.read().readonly || m.store.capabilities().read_only {
        return Err(write_protected());
    }
    Ok(m.store.clone())
}

/// WRITE (10) / WRITE (12) on a DVD+R (MMC-6 6.45, 6.46): sequential recording, each
/// write at the track's next writable address (else INVALID ADDRESS FOR WRITE), within
/// the track (the reservation, or the disc).
pub(crate) async fn write(lu: &Lu, cdb: &[u8], data: &[u8]) -> Outcome<ScsiResult> {
    let (lba, n) = span(cdb);
    if n * BLOCK > MAX_TRANSFER_BYTES {
        return Err(invalid_cdb_at(if cdb[0] == 0x2a { 7 } else { 6 }, None));
    }
    let store = writable(lu)?;
    let buf = crate::cdb::data_out(data, (n * BLOCK) as usize)?.to_vec();
    // Claim the blocks under the lock so concurrent writes can't both take the same
    // address; give them back if the write fails.
    {
        let mut s = drive(lu).state.lock();
        let m = s.medium.as_mut().expect("checked: a disc is loaded");
        let Disc::PlusR {
            reserved,
            track_closed,
        } = m.disc
        else {
            return Err(write_protected());
        };
        if track_closed {
            return Err(sequence_error());
        }
        if lba != m.recorded {
            return Err(Sense::illegal(code::INVALID_ADDRESS_FOR_WRITE).into());
        }
        if lba + n > reserved.unwrap_or(DVD_PLUS_R_BLOCKS) {
            return Err(Sense::illegal(code::END_OF_USER_AREA).into());
        }
        m.recorded += n;
    }
    if n == 0 {
        return Ok(ScsiResult::good());
    }
    if store.write_at(buf, lba * BLOCK).await.is_err() {
        let mut s = drive(lu).state.lock();
        if let Some(m) = s.medium.as_mut() {
            if m.recorded == lba + n {
                m.recorded = lba;
            }
        }
        return Err(Sense::of(key::MEDIUM_ERROR, asc::WRITE_ERROR).into());
    }
    Ok(ScsiResult::good())
}

/// SYNCHRONIZE CACHE (MMC-6 6.41): what was written is on stable storage.
pub(crate) async fn sync_cache(lu: &Lu) -> Outcome<ScsiResult> {
    let store = {
        let s = drive(lu).state.lock();
        s.medium.as_ref().map(|m| m.store.clone())
    };
    if let Some(st) = store {
        if !st.capabilities().read_only {
            st.flush()
                .await
                .map_err(|_| Sense::of(key::MEDIUM_ERROR, asc::WRITE_ERROR))?;
        }
    }
    Ok(ScsiResult::good())
}

/// RESERVE TRACK (MMC-6 6.36): sizes track 1 of a blank DVD+R. Reservation by LBA
/// (ARSV=1) is not supported.
pub(crate) fn reserve_track(lu: &Lu, cdb: &[u8]) -> Outcome<ScsiResult> {
    if cdb[1] & 0x01 != 0 {
        return Err(invalid_cdb_at(1, Some(0)));
    }
    let size = u64::from(u32_at(cdb, 5));
    writable(lu)?;
    let mut s = drive(lu).state.lock();
    let m = s.medium.as_mut().expect("checked: a disc is loaded");
    if !m.blank() {
        return Err(sequence_error());
    }
    if size == 0 || size > DVD_PLUS_R_BLOCKS {
        return Err(invalid_cdb_at(5, None));
    }
    m.disc = Disc::PlusR {
        reserved: Some(size),
        track_closed: false,
    };
    Ok(ScsiResult::good())
}

/// CLOSE TRACK/SESSION (MMC-6 6.3) on a DVD+R: 001b closes track 1; 010b closes the
/// session, 101b and 110b finalize the disc: either way the disc is complete and reads
/// as a DVD-ROM from then on (as it will after a restart, from its image).
pub(crate) async fn close_track_session(lu: &Lu, cdb: &[u8]) -> Outcome<ScsiResult> {
    let function = cdb[2] & 0x07;
    if !matches!(function, 1 | 2 | 5 | 6) {
        return Err(invalid_cdb_at(2, Some(2)));
    }
    let track = u16_at(cdb, 4);
    if function == 1 && track != 1 {
        return Err(invalid_cdb_at(4, None));
    }
    let store = writable(lu)?;
    {
        let mut s = drive(lu).state.lock();
        let m = s.medium.as_mut().expect("checked: a disc is loaded");
        if m.recorded == 0 {
            return Err(sequence_error());
        }
        let reserved = match m.disc {
            Disc::PlusR { reserved, .. } => reserved,
            Disc::Rom => return Err(write_protected()),
        };
        m.disc = if function == 1 {
            Disc::PlusR {
                reserved,
                track_closed: true,
            }
        } else {
            Disc::Rom
        };
    }
    store
        .flush()
        .await
        .map_err(|_| Sense::of(key::MEDIUM_ERROR, asc::WRITE_ERROR))?;
    Ok(ScsiResult::good())
}

/// READ BUFFER CAPACITY (MMC-6 6.21): writes go straight to the image, so the buffer
/// is always empty.
pub(crate) fn read_buffer_capacity(cdb: &[u8]) -> Outcome<Vec<u8>> {
    const BUFFER: u32 = 2 << 20;
    let mut out = vec![0u8; 12];
    out[0..2].copy_from_slice(&10u16.to_be_bytes());
    if cdb[1] & 0x01 != 0 {
        out[3] = 0x01; // Block
        out[8..12].copy_from_slice(&(BUFFER / BLOCK as u32).to_be_bytes());
    } else {
        out[4..8].copy_from_slice(&BUFFER.to_be_bytes());
        out[8..12].copy_from_slice(&BUFFER.to_be_bytes());
    }
    Ok(out)
}

/// SET STREAMING (MMC-6 6.40): a performance descriptor (type 00h, 28 bytes) or a DBI
/// cache zone descriptor (05h) is accepted and has nothing to tune: the image is
/// written as fast as the host sends.
pub(crate) fn set_streaming(cdb: &[u8], data: &[u8]) -> Outcome<ScsiResult> {
    let kind = cdb[8];
    let len = usize::from(u16_at(cdb, 9));
    let need = match kind {
        0x00 => 28,
        0x05 => 8,
        _ => return Err(invalid_cdb_at(8, None)),
    };
    if len < need {
        return Err(param_len_error());
    }
    crate::cdb::data_out(data, len)?;
    Ok(ScsiResult::good())
}
