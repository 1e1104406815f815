//! Big-endian field access for CDBs and parameter data (SPC-4 4.2: multi-byte fields are
//! big-endian), plus the outcome type shared by every command handler.

use crate::sense::{asc, Sense};

/// How a command ended when it did not end GOOD with data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fail {
    /// CHECK CONDITION with this sense.
    Check(Sense),
    /// RESERVATION CONFLICT status, no sense (SPC-4 5.13.1).
    Conflict,
}

impl From<Sense> for Fail {
    fn from(s: Sense) -> Self {
        Fail::Check(s)
    }
}

pub(crate) type Outcome<T> = Result<T, Fail>;

/// Shorthand for the usual ILLEGAL REQUEST failures.
pub(crate) fn invalid_cdb() -> Fail {
    Fail::Check(Sense::illegal(asc::INVALID_FIELD_IN_CDB))
}
/// INVALID FIELD IN CDB pointing at the field (SPC-4 4.5.2.4.2). Initiators tell an
/// unsupported service action (pointer at byte 1) from a bad field by it.
pub(crate) fn invalid_cdb_at(byte: u16, bit: Option<u8>) -> Fail {
    Fail::Check(Sense::illegal(asc::INVALID_FIELD_IN_CDB).with_field(true, byte, bit))
}
/// INVALID FIELD IN PARAMETER LIST pointing at the field.
pub(crate) fn invalid_param_at(byte: u16, bit: Option<u8>) -> Fail {
    Fail::Check(Sense::illegal(asc::INVALID_FIELD_IN_PARAMETER_LIST).with_field(false, byte, bit))
}
pub(crate) fn invalid_param() -> Fail {
    Fail::Check(Sense::illegal(asc::INVALID_FIELD_IN_PARAMETER_LIST))
}
pub(crate) fn param_len_error() -> Fail {
    Fail::Check(Sense::illegal(asc::PARAMETER_LIST_LENGTH_ERROR))
}
pub(crate) fn invalid_opcode() -> Fail {
    Fail::Check(Sense::illegal(asc::INVALID_COMMAND_OPERATION_CODE))
}
pub(crate) fn lba_out_of_range() -> Fail {
    Fail::Check(Sense::illegal(asc::LBA_OUT_OF_RANGE))
}

/// Reads a big-endian field of `N` bytes at `at`; bytes past the end read as zero so a
/// short CDB never panics (its length is checked separately).
fn be<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = b.get(at + i).copied().unwrap_or(0);
    }
    out
}

pub(crate) fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes(be(b, at))
}
pub(crate) fn u24_at(b: &[u8], at: usize) -> u32 {
    let v: [u8; 3] = be(b, at);
    u32::from_be_bytes([0, v[0], v[1], v[2]])
}
pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(be(b, at))
}
pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(be(b, at))
}
pub(crate) fn byte(b: &[u8], at: usize) -> u8 {
    b.get(at).copied().unwrap_or(0)
}

/// CDB length from the GROUP CODE in the operation code's top three bits (SPC-4 4.2.5.1).
pub(crate) fn cdb_len(opcode: u8) -> usize {
    match opcode >> 5 {
        0 => 6,
        1 | 2 => 10,
        4 => 16,
        5 => 12,
        _ => 6,
    }
}

/// The CONTROL byte is the last byte of a CDB; NACA and the link bit are not supported
/// (SAM-5 5.2: a device server that does not support NACA=1 terminates the command with
/// INVALID FIELD IN CDB).
pub(crate) fn check_control(cdb: &[u8]) -> Outcome<()> {
    let len = cdb_len(cdb[0]).min(cdb.len());
    if cdb[len - 1] & 0x05 != 0 {
        return Err(invalid_cdb());
    }
    Ok(())
}

/// The ALLOCATION LENGTH of commands that have one (SPC-4 4.2.5.6): the device server
/// returns at most that many bytes, and what it cuts is not an iSCSI overflow.
pub(crate) fn allocation_length(cdb: &[u8]) -> Option<usize> {
    let be16 = |o: usize| {
        cdb.get(o..o + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
    };
    let be32 = |o: usize| {
        cdb.get(o..o + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    match *cdb.first()? {
        0x03 | 0x1a => cdb.get(4).map(|&b| b as usize), // REQUEST SENSE, MODE SENSE (6)
        0x12 | 0x1c => be16(3),                         // INQUIRY, RECEIVE DIAGNOSTIC
        0x4d | 0x5a | 0x5e => be16(7),                  // LOG SENSE, MODE SENSE (10), PR IN
        0xa0 | 0xa3 => be32(6),                         // REPORT LUNS, MAINTENANCE IN
        0x9e => be32(10),                               // SERVICE ACTION IN (16)
        0x84 => be32(10),                               // RECEIVE COPY RESULTS
        0x37 => be16(7),                                // READ DEFECT DATA (10)
        0xb7 => be32(6),                                // READ DEFECT DATA (12)
        _ => None,
    }
}

/// The first `len` bytes of Data-Out. Checked after the CDB so a bad CDB gets its own
/// sense; too little data means the transport delivered less than the CDB asks for
/// (SAM-5 5.4.3: terminate without transferring).
pub(crate) fn data_out(data: &[u8], len: usize) -> Outcome<&[u8]> {
    data.get(..len)
        .ok_or_else(|| Sense::illegal(asc::INVALID_FIELD_IN_INFORMATION_UNIT).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_big_endian_and_short_reads_are_zero() {
        let b = [0x12, 0x34, 0x56, 0x78, 0x9a];
        assert_eq!(u16_at(&b, 0), 0x1234);
        assert_eq!(u24_at(&b, 1), 0x345678);
        assert_eq!(u32_at(&b, 1), 0x3456789a);
        assert_eq!(u32_at(&b, 3), 0x789a0000);
        assert_eq!(byte(&b, 9), 0);
    }

    #[test]
    fn group_code_gives_length() {
        assert_eq!(cdb_len(0x28), 10);
        assert_eq!(cdb_len(0x88), 16);
        assert_eq!(cdb_len(0xa8), 12);
        assert_eq!(cdb_len(0x08), 6);
    }
}
