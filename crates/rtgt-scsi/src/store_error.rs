//! Sense data for a backing store's failures, by what went wrong rather than one
//! MEDIUM ERROR for everything: a networked store (rbd) fails in ways an initiator
//! should handle differently from a bad sector.

use std::io;

use crate::cdb::Fail;
use crate::sense::{asc, key, Sense};

/// LOGICAL UNIT COMMUNICATION FAILURE (SPC-4 table 28, 08h/00h).
pub(crate) const LU_COMMUNICATION_FAILURE: asc::Code = (0x08, 0x00);
/// LOGICAL UNIT COMMUNICATION TIME-OUT (08h/01h).
const LU_COMMUNICATION_TIMEOUT: asc::Code = (0x08, 0x01);
/// SPACE ALLOCATION FAILED WRITE PROTECT (27h/07h; SBC-4 4.7.3.7).
const SPACE_ALLOCATION_FAILED_WRITE_PROTECT: asc::Code = (0x27, 0x07);

/// The CHECK CONDITION for a store operation that failed with `e`.
///
/// - a timeout (the cluster did not answer within the client timeouts): NOT READY,
///   LOGICAL UNIT COMMUNICATION TIME-OUT, so the initiator retries or fails over;
/// - the store unreachable or our client shut out (ENOTCONN, ESHUTDOWN, ECONNREFUSED,
///   EHOSTUNREACH): NOT READY, LOGICAL UNIT COMMUNICATION FAILURE;
/// - out of space (ENOSPC, EDQUOT: a full cluster or pool quota): DATA PROTECT, SPACE
///   ALLOCATION FAILED WRITE PROTECT, as SBC-4 4.7.3.7 says for a thin LU that cannot
///   allocate;
/// - the medium made read-only underneath us (EROFS): DATA PROTECT, WRITE PROTECTED;
/// - anything else: MEDIUM ERROR, WRITE ERROR or UNRECOVERED READ ERROR.
///
/// A store that knows the first bad block ([`rtgt_backstore::ErrorAt`], a device
/// handler's failed READ or WRITE) has it reported in the INFORMATION field of a MEDIUM
/// ERROR (SBC-4 4.18.1: the LBA of the first unrecovered block).
pub(crate) fn io_fail(write: bool, e: &io::Error) -> Fail {
    let at = rtgt_backstore::ErrorAt::of(e);
    let s = match e.raw_os_error().or(at.map(|a| a.errno)) {
        Some(libc::ETIMEDOUT) => Sense::of(key::NOT_READY, LU_COMMUNICATION_TIMEOUT),
        Some(libc::ENOTCONN | libc::ESHUTDOWN | libc::ECONNREFUSED | libc::EHOSTUNREACH) => {
            Sense::of(key::NOT_READY, LU_COMMUNICATION_FAILURE)
        }
        Some(libc::ENOSPC | libc::EDQUOT) if write => {
            Sense::of(key::DATA_PROTECT, SPACE_ALLOCATION_FAILED_WRITE_PROTECT)
        }
        Some(libc::EROFS) if write => Sense::of(key::DATA_PROTECT, asc::WRITE_PROTECTED),
        _ if write => Sense::of(key::MEDIUM_ERROR, asc::WRITE_ERROR),
        _ => Sense::of(key::MEDIUM_ERROR, asc::UNRECOVERED_READ_ERROR),
    };
    match at {
        Some(a) if s.key == key::MEDIUM_ERROR => Fail::Check(s.with_information(a.lba)),
        _ => Fail::Check(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn triple(f: Fail) -> (u8, u8, u8) {
        match f {
            Fail::Check(s) => (s.key, s.asc, s.ascq),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn errnos_map_to_their_sense() {
        let e = |n| io::Error::from_raw_os_error(n);
        assert_eq!(triple(io_fail(false, &e(libc::ETIMEDOUT))), (2, 0x08, 0x01));
        assert_eq!(triple(io_fail(true, &e(libc::ESHUTDOWN))), (2, 0x08, 0x00));
        assert_eq!(triple(io_fail(true, &e(libc::ENOSPC))), (7, 0x27, 0x07));
        assert_eq!(triple(io_fail(true, &e(libc::EROFS))), (7, 0x27, 0x00));
        assert_eq!(triple(io_fail(true, &e(libc::EIO))), (3, 0x0c, 0x00));
        assert_eq!(triple(io_fail(false, &e(libc::EIO))), (3, 0x11, 0x00));
    }
}
