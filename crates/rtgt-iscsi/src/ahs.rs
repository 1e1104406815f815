//! Additional Header Segments (RFC 7143 §11.2.2): checked whole before a PDU is acted on.
//!
//! Each AHS is AHSLength (2 bytes), AHSType (1 byte) and AHSLength bytes of AHS-specific
//! data, padded to a whole number of 4-byte words; together they fill TotalAHSLength
//! exactly. Only two types exist, both for the SCSI Command PDU: Extended CDB (1) and
//! Bidirectional Read Expected Data Transfer Length (2). Anything else — a reserved or
//! extension type, a length its type does not allow, an AHS that overruns the header,
//! words left over, a type given twice — is an invalid PDU field.

use thiserror::Error;

/// AHSType 1 (RFC 7143 §11.2.2.3).
pub const EXTENDED_CDB: u8 = 1;
/// AHSType 2 (RFC 7143 §11.2.2.4).
pub const BIDI_READ_LENGTH: u8 = 2;

/// What the AHS of a SCSI Command PDU carried.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CommandAhs<'a> {
    /// CDB bytes beyond the first 16 (Extended CDB AHS, its reserved byte left out).
    pub extended_cdb: Option<&'a [u8]>,
    /// Bidirectional Read Expected Data Transfer Length.
    pub bidi_read_length: Option<u32>,
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum AhsError {
    #[error("AHS at byte {at} overruns TotalAHSLength")]
    Overrun { at: usize },
    #[error("AHS type {ty} is not defined (RFC 7143 §11.2.2.1)")]
    UnknownType { ty: u8 },
    #[error("AHS type {ty} with AHSLength {len} (RFC 7143 §11.2.2)")]
    BadLength { ty: u8, len: usize },
    #[error("AHS type {ty} appears twice")]
    Duplicate { ty: u8 },
}

/// Parses the AHS of a SCSI Command PDU.
pub fn parse_command(ahs: &[u8]) -> Result<CommandAhs<'_>, AhsError> {
    let mut out = CommandAhs::default();
    let mut at = 0;
    while at < ahs.len() {
        let Some(head) = ahs.get(at..at + 3) else {
            return Err(AhsError::Overrun { at });
        };
        let len = usize::from(u16::from_be_bytes([head[0], head[1]]));
        let ty = head[2];
        // AHS-specific data starts right after AHSType; the whole AHS is padded to 4.
        let padded = (3 + len).div_ceil(4) * 4;
        let Some(specific) = ahs.get(at + 3..at + 3 + len) else {
            return Err(AhsError::Overrun { at });
        };
        if at + padded > ahs.len() {
            return Err(AhsError::Overrun { at });
        }
        match ty {
            // A reserved byte, then the CDB's bytes 16 and on: at least one of them,
            // and no CDB is longer than 260 bytes (SPC-4 4.2.3).
            EXTENDED_CDB => {
                if !(2..=245).contains(&len) {
                    return Err(AhsError::BadLength { ty, len });
                }
                if out.extended_cdb.replace(&specific[1..]).is_some() {
                    return Err(AhsError::Duplicate { ty });
                }
            }
            // A reserved byte and the 4-byte length: AHSLength is 5 (§11.2.2.4).
            BIDI_READ_LENGTH => {
                if len != 5 {
                    return Err(AhsError::BadLength { ty, len });
                }
                let n = u32::from_be_bytes(specific[1..5].try_into().expect("4 bytes"));
                if out.bidi_read_length.replace(n).is_some() {
                    return Err(AhsError::Duplicate { ty });
                }
            }
            _ => return Err(AhsError::UnknownType { ty }),
        }
        at += padded;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ahs(ty: u8, specific: &[u8]) -> Vec<u8> {
        let mut v = (specific.len() as u16).to_be_bytes().to_vec();
        v.push(ty);
        v.extend_from_slice(specific);
        while !v.len().is_multiple_of(4) {
            v.push(0);
        }
        v
    }

    #[test]
    fn the_two_defined_types_parse() {
        assert_eq!(parse_command(&[]), Ok(CommandAhs::default()));
        // A 32-byte CDB: reserved byte + 16 more bytes, AHSLength 17.
        let mut specific = vec![0u8];
        specific.extend(16..32u8);
        let mut v = ahs(EXTENDED_CDB, &specific);
        v.extend(ahs(BIDI_READ_LENGTH, &[0, 0, 0, 0x10, 0]));
        let got = parse_command(&v).unwrap();
        assert_eq!(got.extended_cdb, Some(&(16..32u8).collect::<Vec<_>>()[..]));
        assert_eq!(got.bidi_read_length, Some(0x1000));
    }

    #[test]
    fn unknown_types_are_refused() {
        for ty in [0u8, 3, 59, 60, 63, 0x41, 0x81] {
            assert_eq!(
                parse_command(&ahs(ty, &[0, 1, 2, 3, 4])),
                Err(AhsError::UnknownType { ty })
            );
        }
    }

    #[test]
    fn lengths_that_disagree_with_the_content_are_refused() {
        // Bidirectional length must be 5.
        for specific in [&[0u8, 0, 0, 1][..], &[0, 0, 0, 0, 1, 0]] {
            assert_eq!(
                parse_command(&ahs(BIDI_READ_LENGTH, specific)),
                Err(AhsError::BadLength {
                    ty: BIDI_READ_LENGTH,
                    len: specific.len()
                })
            );
        }
        // An Extended CDB with only its reserved byte.
        assert_eq!(
            parse_command(&ahs(EXTENDED_CDB, &[0])),
            Err(AhsError::BadLength {
                ty: EXTENDED_CDB,
                len: 1
            })
        );
        // AHSLength past the end of TotalAHSLength.
        let mut v = ahs(BIDI_READ_LENGTH, &[0, 0, 0, 0, 1]);
        v[1] = 9;
        assert_eq!(parse_command(&v), Err(AhsError::Overrun { at: 0 }));
        // A word left over after the last AHS (an AHS of length 0 and type 0 is no AHS).
        let mut v = ahs(BIDI_READ_LENGTH, &[0, 0, 0, 0, 1]);
        v.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(parse_command(&v), Err(AhsError::UnknownType { ty: 0 }));
        // The same type twice.
        let mut v = ahs(BIDI_READ_LENGTH, &[0, 0, 0, 0, 1]);
        v.extend(ahs(BIDI_READ_LENGTH, &[0, 0, 0, 0, 2]));
        assert_eq!(
            parse_command(&v),
            Err(AhsError::Duplicate {
                ty: BIDI_READ_LENGTH
            })
        );
    }
}
