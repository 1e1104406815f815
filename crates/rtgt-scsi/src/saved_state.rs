//! Commands by which an initiator changes state a saved configuration keeps (issue 8:
//! `rtgtd --save-config` must write it at once, or a crash loses it). Everything else
//! an initiator may change (reservations, mode pages) is not part of the
//! configuration. Device types add their own (`DeviceServer::changes_saved_state`: a
//! changer's MOVE MEDIUM, a cd drive's eject).

/// Whether a successful `cdb` changed saved state every device type has.
pub(crate) fn changes(cdb: &[u8]) -> bool {
    // SET TARGET PORT GROUPS (SPC-4 6.44): the groups' asymmetric access states.
    cdb[0] == 0xa4 && cdb[1] & 0x1f == 0x0a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_state_changing_commands() {
        assert!(changes(&[0xa4, 0x0a, 0, 0]));
        assert!(!changes(&[0xa4, 0x06, 0, 0]));
        assert!(!changes(&[0x1b, 0, 0, 0, 0x02, 0]));
    }
}
