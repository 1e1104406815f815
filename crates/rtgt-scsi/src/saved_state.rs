//! Commands by which an initiator changes state a saved configuration keeps (issue 8:
//! `rtgtd --save-config` must write it at once, or a crash loses it). Everything else
//! an initiator may change (reservations, mode pages) is not part of the
//! configuration.

use crate::DeviceType;

/// Whether a successful `cdb` on an LU of type `dt` changed saved state.
pub(crate) fn changes(dt: DeviceType, cdb: &[u8]) -> bool {
    match (dt, cdb[0]) {
        // SET TARGET PORT GROUPS (SPC-4 6.44): the groups' asymmetric access states.
        (_, 0xa4) => cdb[1] & 0x1f == 0x0a,
        // MOVE MEDIUM, EXCHANGE MEDIUM (SMC-3 6.6, 6.3): the changer's inventory and
        // what a drive holds.
        (DeviceType::Changer, 0xa5 | 0xa6) => true,
        // START STOP UNIT with LOEJ (MMC-6 6.39: eject or load the disc), LOAD/UNLOAD
        // MEDIUM (MMC-6 6.7): the disc a cd drive holds.
        (DeviceType::Cd, 0x1b) => cdb[4] & 0x02 != 0,
        (DeviceType::Cd, 0xa6) => true,
        // Not a tape's LOAD UNLOAD (SSC-3 7.2): the cartridge stays in the drive and
        // the saved configuration has no "unloaded" state for it yet, so a restart
        // comes back with it loaded.
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_state_changing_commands() {
        assert!(changes(DeviceType::Disk, &[0xa4, 0x0a, 0, 0]));
        assert!(!changes(DeviceType::Disk, &[0xa4, 0x06, 0, 0]));
        assert!(changes(DeviceType::Cd, &[0x1b, 0, 0, 0, 0x02, 0]));
        assert!(!changes(DeviceType::Cd, &[0x1b, 0, 0, 0, 0x01, 0]));
        assert!(!changes(DeviceType::Disk, &[0x1b, 0, 0, 0, 0x02, 0]));
        assert!(changes(DeviceType::Changer, &[0xa5, 0, 0, 0]));
        assert!(!changes(DeviceType::Tape, &[0x1b, 0, 0, 0, 0, 0]));
        assert!(!changes(DeviceType::Tape, &[0x0a, 0, 0, 0, 0, 0]));
    }
}
