//! The mechanism: loading and ejecting (START STOP UNIT, PREVENT ALLOW MEDIUM REMOVAL,
//! the administrator's medium change) and how a host hears of it (GET EVENT STATUS
//! NOTIFICATION media events, the NOT READY TO READY CHANGE unit attention, MECHANISM
//! STATUS).

use crate::cdb::{u16_at, Outcome};
use crate::lu::Lu;
use crate::sense::{asc, Sense};
use crate::ScsiResult;

use super::{bad_cdb, code, drive, MediaEvent, Medium, Nexuses};

/// START STOP UNIT (MMC-6 6.39): LoEj with Start=0 opens the tray, with Start=1 closes
/// it and loads the disc on it; an eject is refused while removal is prevented.
pub(crate) fn start_stop(lu: &Lu, nx: &Nexuses<'_>, cdb: &[u8]) -> Outcome<ScsiResult> {
    if cdb[1] & 0xfe != 0 || cdb[4] & 0x0c != 0 {
        return Err(bad_cdb());
    }
    let power_condition = cdb[4] >> 4;
    let loej = cdb[4] & 0x02 != 0;
    let start = cdb[4] & 0x01 != 0;
    // A power condition other than START_VALID ignores Start and LoEj (MMC-6 6.39.2.1).
    if power_condition != 0 || !loej {
        return Ok(ScsiResult::good());
    }
    let mut s = drive(lu).state.lock();
    if !start {
        if lu.medium.lock().prevent_removal() {
            return Err(Sense::illegal(asc::MEDIUM_REMOVAL_PREVENTED).into());
        }
        if !s.tray_open {
            s.tray_open = true;
            if s.medium.is_some() {
                s.raise(nx.all.iter().copied(), MediaEvent::MediaRemoval);
            }
        }
    } else if s.tray_open {
        s.tray_open = false;
        if s.medium.is_some() {
            s.raise(nx.all.iter().copied(), MediaEvent::NewMedia);
            // The issuer loaded it and knows; everyone else gets the unit attention.
            let others = nx.all.iter().copied().filter(|id| *id != nx.this.id);
            lu.ua.establish(others, code::NOT_READY_TO_READY_CHANGE);
        }
    }
    lu.medium.lock().present = s.loaded();
    Ok(ScsiResult::good())
}

/// PREVENT ALLOW MEDIUM REMOVAL (MMC-6 6.12): bit 0 of PREVENT locks the tray for this
/// I_T nexus until it allows again or goes away; bit 1 (persistent prevent) only
/// changes how eject requests are reported, which a polled host sees the same way.
pub(crate) fn prevent_allow(lu: &Lu, nexus: u64, cdb: &[u8]) -> Outcome<ScsiResult> {
    let mut m = lu.medium.lock();
    if cdb[4] & 0x01 != 0 {
        m.preventing.insert(nexus);
    } else {
        m.preventing.remove(&nexus);
    }
    Ok(ScsiResult::good())
}

/// GET EVENT STATUS NOTIFICATION (MMC-6 6.8), polled: the media class only.
pub(crate) fn gesn(lu: &Lu, nexus: u64, cdb: &[u8]) -> Outcome<Vec<u8>> {
    // Asynchronous notification is not supported: Polled must be 1 (MMC-6 6.8.2.2).
    if cdb[1] & 0x01 == 0 {
        return Err(crate::cdb::invalid_cdb_at(1, Some(0)));
    }
    const MEDIA_CLASS: u8 = 0x10; // bit 4 of NOTIFICATION CLASS REQUEST / SUPPORTED
    if cdb[4] & MEDIA_CLASS == 0 {
        // No requested class is supported: NEA, header only.
        return Ok(vec![0, 2, 0x80, MEDIA_CLASS]);
    }
    let mut s = drive(lu).state.lock();
    // An event is reported once; a host reading only the header has not seen it.
    let ev = if u16_at(cdb, 7) >= 8 {
        s.take_event(nexus).map_or(0, |e| e as u8)
    } else {
        0
    };
    let present = s.loaded();
    let status = (u8::from(present) << 1) | u8::from(s.tray_open);
    Ok(vec![0, 6, 0x04, MEDIA_CLASS, ev, status, 0, 0])
}

/// MECHANISM STATUS (MMC-6 6.11): no changer, idle, the door (tray) state.
pub(crate) fn mechanism_status(lu: &Lu, _cdb: &[u8]) -> Vec<u8> {
    let open = drive(lu).state.lock().tray_open;
    vec![0, u8::from(open) << 4, 0, 0, 0, 0, 0, 0]
}

/// Why the administrator's change was refused.
#[derive(Debug)]
pub(crate) struct Prevented;

/// The administrator loads `new` (or takes the disc out, `None`). While an initiator
/// prevents removal a disc in the drive stays, unless `force`: the host gets an eject
/// request event instead, as when a drive's button is pressed (MMC-6 6.8.4.5).
pub(crate) fn change_medium(
    lu: &Lu,
    new: Option<Medium>,
    force: bool,
    all: &[u64],
) -> Result<(), Prevented> {
    let mut s = drive(lu).state.lock();
    let prevented = lu.medium.lock().prevent_removal();
    if s.medium.is_some() && prevented && !force {
        s.raise(all.iter().copied(), MediaEvent::EjectRequest);
        return Err(Prevented);
    }
    if s.loaded() {
        s.raise(all.iter().copied(), MediaEvent::MediaRemoval);
    }
    let loading = new.is_some();
    s.medium = new;
    s.tray_open = false;
    if loading {
        s.raise(all.iter().copied(), MediaEvent::NewMedia);
        lu.ua
            .establish(all.iter().copied(), code::NOT_READY_TO_READY_CHANGE);
    }
    lu.medium.lock().present = s.loaded();
    Ok(())
}
