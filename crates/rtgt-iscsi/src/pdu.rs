//! PDU framing and Basic Header Segment accessors (RFC 7143 §11).
//!
//! A [`Pdu`] keeps its 48-byte BHS as bytes and exposes fields by offset, so decoding is a
//! copy and encoding writes in place. [`Framer`] splits a byte stream into PDUs and checks
//! digests; it never reads from a socket itself.

use thiserror::Error;

pub const BHS_LEN: usize = 48;

/// Opcodes (RFC 7143 §11.1.1).
pub mod op {
    pub const NOP_OUT: u8 = 0x00;
    pub const SCSI_CMD: u8 = 0x01;
    pub const TMF_REQ: u8 = 0x02;
    pub const LOGIN_REQ: u8 = 0x03;
    pub const TEXT_REQ: u8 = 0x04;
    pub const DATA_OUT: u8 = 0x05;
    pub const LOGOUT_REQ: u8 = 0x06;
    pub const SNACK: u8 = 0x10;
    pub const NOP_IN: u8 = 0x20;
    pub const SCSI_RSP: u8 = 0x21;
    pub const TMF_RSP: u8 = 0x22;
    pub const LOGIN_RSP: u8 = 0x23;
    pub const TEXT_RSP: u8 = 0x24;
    pub const DATA_IN: u8 = 0x25;
    pub const LOGOUT_RSP: u8 = 0x26;
    pub const R2T: u8 = 0x31;
    pub const ASYNC: u8 = 0x32;
    pub const REJECT: u8 = 0x3f;
}

/// Reject reasons (RFC 7143 §11.17.1).
pub mod reject {
    pub const DATA_DIGEST_ERROR: u8 = 0x02;
    pub const SNACK_REJECT: u8 = 0x03;
    pub const PROTOCOL_ERROR: u8 = 0x04;
    pub const COMMAND_NOT_SUPPORTED: u8 = 0x05;
    pub const IMMEDIATE_COMMAND_REJECT: u8 = 0x06;
    pub const TASK_IN_PROGRESS: u8 = 0x07;
    pub const INVALID_DATA_ACK: u8 = 0x08;
    pub const INVALID_PDU_FIELD: u8 = 0x09;
    pub const LONG_OPERATION_REJECT: u8 = 0x0a;
    pub const DEPRECATED: u8 = 0x0b;
    pub const WAITING_FOR_LOGOUT: u8 = 0x0c;
}

/// Reserved value of the Initiator Task Tag (RFC 7143 §11.18.3 ff.).
pub const RESERVED_TAG: u32 = 0xffff_ffff;

#[derive(Clone, PartialEq, Eq)]
pub struct Pdu {
    pub bhs: [u8; BHS_LEN],
    pub ahs: Vec<u8>,
    pub data: Vec<u8>,
}

impl std::fmt::Debug for Pdu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Pdu(op={:#04x} itt={:#x} ahs={} data={})",
            self.opcode(),
            self.itt(),
            self.ahs.len(),
            self.data.len()
        )
    }
}

impl Default for Pdu {
    fn default() -> Self {
        Self {
            bhs: [0; BHS_LEN],
            ahs: Vec::new(),
            data: Vec::new(),
        }
    }
}

impl Pdu {
    /// A PDU with only the opcode set (and the F bit for PDUs where it is always 1).
    pub fn new(opcode: u8) -> Self {
        let mut p = Pdu::default();
        p.bhs[0] = opcode & 0x3f;
        p
    }

    pub fn opcode(&self) -> u8 {
        self.bhs[0] & 0x3f
    }
    /// The I (immediate delivery) bit.
    pub fn immediate(&self) -> bool {
        self.bhs[0] & 0x40 != 0
    }
    pub fn set_immediate(&mut self, on: bool) {
        if on {
            self.bhs[0] |= 0x40;
        } else {
            self.bhs[0] &= !0x40;
        }
    }
    /// Byte 1: the F bit and opcode-specific flags.
    pub fn flags(&self) -> u8 {
        self.bhs[1]
    }
    pub fn set_flags(&mut self, f: u8) {
        self.bhs[1] = f;
    }
    pub fn final_bit(&self) -> bool {
        self.bhs[1] & 0x80 != 0
    }
    pub fn total_ahs_len(&self) -> usize {
        self.bhs[4] as usize * 4
    }
    pub fn data_segment_len(&self) -> usize {
        u32::from_be_bytes([0, self.bhs[5], self.bhs[6], self.bhs[7]]) as usize
    }
    /// Writes TotalAHSLength and DataSegmentLength from the attached segments.
    pub fn fix_lengths(&mut self) {
        self.bhs[4] = (self.ahs.len() / 4) as u8;
        let n = self.data.len() as u32;
        self.bhs[5..8].copy_from_slice(&n.to_be_bytes()[1..]);
    }
    pub fn lun_raw(&self) -> [u8; 8] {
        self.bhs[8..16].try_into().unwrap()
    }
    pub fn set_lun_raw(&mut self, lun: [u8; 8]) {
        self.bhs[8..16].copy_from_slice(&lun);
    }
    pub fn itt(&self) -> u32 {
        self.u32_at(16)
    }
    pub fn set_itt(&mut self, v: u32) {
        self.set_u32(16, v)
    }

    pub fn u16_at(&self, off: usize) -> u16 {
        u16::from_be_bytes([self.bhs[off], self.bhs[off + 1]])
    }
    pub fn set_u16(&mut self, off: usize, v: u16) {
        self.bhs[off..off + 2].copy_from_slice(&v.to_be_bytes());
    }
    pub fn u32_at(&self, off: usize) -> u32 {
        u32::from_be_bytes(self.bhs[off..off + 4].try_into().unwrap())
    }
    pub fn set_u32(&mut self, off: usize, v: u32) {
        self.bhs[off..off + 4].copy_from_slice(&v.to_be_bytes());
    }

    // Fields at the same offset in every initiator PDU that carries them.
    /// CmdSN (initiator PDUs, offset 24).
    pub fn cmd_sn(&self) -> u32 {
        self.u32_at(24)
    }
    /// ExpStatSN (initiator PDUs, offset 28).
    pub fn exp_stat_sn(&self) -> u32 {
        self.u32_at(28)
    }
    /// Target Transfer Tag (offset 20 in NOP, Text, Data-Out, R2T, Data-In).
    pub fn ttt(&self) -> u32 {
        self.u32_at(20)
    }
    pub fn set_ttt(&mut self, v: u32) {
        self.set_u32(20, v)
    }

    // Fields at the same offset in every target PDU that carries them.
    pub fn set_stat_sn(&mut self, v: u32) {
        self.set_u32(24, v)
    }
    pub fn set_exp_cmd_sn(&mut self, v: u32) {
        self.set_u32(28, v)
    }
    pub fn set_max_cmd_sn(&mut self, v: u32) {
        self.set_u32(32, v)
    }
    pub fn stat_sn(&self) -> u32 {
        self.u32_at(24)
    }
    pub fn exp_cmd_sn(&self) -> u32 {
        self.u32_at(28)
    }
    pub fn max_cmd_sn(&self) -> u32 {
        self.u32_at(32)
    }

    // SCSI Command (RFC 7143 §11.3).
    /// Expected Data Transfer Length.
    pub fn edtl(&self) -> u32 {
        self.u32_at(20)
    }
    pub fn cdb(&self) -> &[u8] {
        &self.bhs[32..48]
    }

    // Data-Out / Data-In (RFC 7143 §11.7).
    pub fn data_sn(&self) -> u32 {
        self.u32_at(36)
    }
    pub fn buffer_offset(&self) -> u32 {
        self.u32_at(40)
    }

    /// Total bytes on the wire for this PDU with the given digests.
    pub fn wire_len(&self, header_digest: bool, data_digest: bool) -> usize {
        let mut n = BHS_LEN + self.ahs.len();
        if header_digest {
            n += 4;
        }
        if !self.data.is_empty() {
            n += pad4(self.data.len());
            if data_digest {
                n += 4;
            }
        }
        n
    }

    /// Appends the PDU's wire form to `out`; lengths are taken from the segments.
    pub fn encode_into(&self, out: &mut Vec<u8>, header_digest: bool, data_digest: bool) {
        self.encode_header_into(out, self.data.len(), header_digest);
        if !self.data.is_empty() {
            let ds = out.len();
            out.extend_from_slice(&self.data);
            out.resize(ds + pad4(self.data.len()), 0);
            if data_digest {
                let d = crc32c::crc32c(&out[ds..]);
                out.extend_from_slice(&d.to_le_bytes());
            }
        }
    }

    /// Appends the BHS (with TotalAHSLength and a DataSegmentLength of `data_len`), the
    /// AHS and the header digest: everything before the data segment, which the caller
    /// sends from wherever it is (followed by [`segment_trailer`]).
    pub fn encode_header_into(&self, out: &mut Vec<u8>, data_len: usize, header_digest: bool) {
        let start = out.len();
        out.extend_from_slice(&self.bhs);
        out[start + 4] = (self.ahs.len() / 4) as u8;
        let n = data_len as u32;
        out[start + 5..start + 8].copy_from_slice(&n.to_be_bytes()[1..]);
        out.extend_from_slice(&self.ahs);
        if header_digest {
            let d = crc32c::crc32c(&out[start..]);
            out.extend_from_slice(&d.to_le_bytes());
        }
    }

    pub fn encode(&self, header_digest: bool, data_digest: bool) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.wire_len(header_digest, data_digest));
        self.encode_into(&mut v, header_digest, data_digest);
        v
    }
}

/// Appends what follows a data segment sent on its own: the padding to a multiple of 4
/// and, with data digests, the CRC32C of segment and padding (RFC 7143 §11.1).
pub fn segment_trailer(out: &mut Vec<u8>, data: &[u8], data_digest: bool) {
    let pad = pad4(data.len()) - data.len();
    out.extend_from_slice(&[0u8; 3][..pad]);
    if data_digest {
        let d = crc32c::crc32c_append(crc32c::crc32c(data), &[0u8; 3][..pad]);
        out.extend_from_slice(&d.to_le_bytes());
    }
}

/// Rounds up to a multiple of 4 (segments are padded, RFC 7143 §11.1).
pub fn pad4(n: usize) -> usize {
    (n + 3) & !3
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    /// RFC 7143 §7.8: a header digest error means the PDU boundaries are lost; the
    /// connection must be dropped.
    #[error("header digest mismatch")]
    HeaderDigest,
    /// RFC 7143 §7.8: the PDU is discarded and answered with a Reject (reason 0x02).
    #[error("data digest mismatch")]
    DataDigest,
    #[error("data segment of {len} bytes exceeds MaxRecvDataSegmentLength {max}")]
    TooLong { len: usize, max: usize },
}

/// Splits the byte stream into PDUs. Feed it the BHS first, then the rest it asks for.
#[derive(Debug, Clone, Copy)]
pub struct Framer {
    pub header_digest: bool,
    pub data_digest: bool,
    /// Largest data segment we accept (our MaxRecvDataSegmentLength, or 8192 during login
    /// until negotiated, RFC 7143 §13.12).
    pub max_data: usize,
}

impl Framer {
    /// Bytes that follow a BHS on the wire: AHS, header digest, padded data, data digest.
    pub fn rest_len(&self, bhs: &[u8; BHS_LEN]) -> Result<usize, FrameError> {
        let ahs = bhs[4] as usize * 4;
        let data = u32::from_be_bytes([0, bhs[5], bhs[6], bhs[7]]) as usize;
        if data > self.max_data {
            return Err(FrameError::TooLong {
                len: data,
                max: self.max_data,
            });
        }
        let mut n = ahs;
        if self.header_digest {
            n += 4;
        }
        if data > 0 {
            n += pad4(data);
            if self.data_digest {
                n += 4;
            }
        }
        Ok(n)
    }

    /// Builds the PDU from its BHS and the `rest_len` bytes that followed, checking
    /// digests. On a data digest error the header is still returned, for the Reject.
    pub fn parse(&self, bhs: [u8; BHS_LEN], rest: &[u8]) -> Result<Pdu, (FrameError, Box<Pdu>)> {
        self.parse_with(bhs, rest, <[u8]>::to_vec)
    }

    /// [`Framer::parse`], with `copy` making the data segment's owned copy: a driver
    /// that recycles buffers passes its pool here, so receiving a WRITE's immediate
    /// data allocates nothing.
    pub fn parse_with(
        &self,
        bhs: [u8; BHS_LEN],
        rest: &[u8],
        copy: impl FnOnce(&[u8]) -> Vec<u8>,
    ) -> Result<Pdu, (FrameError, Box<Pdu>)> {
        let ahs_len = bhs[4] as usize * 4;
        let data_len = u32::from_be_bytes([0, bhs[5], bhs[6], bhs[7]]) as usize;
        let mut pos = ahs_len;
        let mut pdu = Pdu {
            bhs,
            ahs: rest[..ahs_len].to_vec(),
            data: Vec::new(),
        };
        if self.header_digest {
            let want = u32::from_le_bytes(rest[pos..pos + 4].try_into().unwrap());
            let mut h = crc32c::crc32c(&bhs);
            h = crc32c::crc32c_append(h, &rest[..ahs_len]);
            if h != want {
                return Err((FrameError::HeaderDigest, Box::new(pdu)));
            }
            pos += 4;
        }
        if data_len > 0 {
            let padded = pad4(data_len);
            let seg = &rest[pos..pos + padded];
            if self.data_digest {
                let want =
                    u32::from_le_bytes(rest[pos + padded..pos + padded + 4].try_into().unwrap());
                if crc32c::crc32c(seg) != want {
                    return Err((FrameError::DataDigest, Box::new(pdu)));
                }
            }
            pdu.data = copy(&seg[..data_len]);
        }
        Ok(pdu)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_with_digests() {
        let mut p = Pdu::new(op::SCSI_CMD);
        p.set_itt(0x1234);
        p.data = vec![1, 2, 3, 4, 5];
        let wire = p.encode(true, true);
        assert_eq!(wire.len(), 48 + 4 + 8 + 4);
        let f = Framer {
            header_digest: true,
            data_digest: true,
            max_data: 8192,
        };
        let bhs: [u8; 48] = wire[..48].try_into().unwrap();
        assert_eq!(f.rest_len(&bhs).unwrap(), wire.len() - 48);
        let q = f.parse(bhs, &wire[48..]).unwrap();
        assert_eq!(q.itt(), 0x1234);
        assert_eq!(q.data, vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn header_and_trailer_around_a_segment_equal_encode() {
        for len in [0usize, 1, 2, 3, 4, 4096, 4097] {
            for (hd, dd) in [(false, false), (true, true), (true, false), (false, true)] {
                let mut p = Pdu::new(op::DATA_IN);
                p.set_itt(9);
                p.data = (0..len).map(|i| i as u8).collect();
                let want = p.encode(hd, dd);
                let data = std::mem::take(&mut p.data);
                let mut got = Vec::new();
                p.encode_header_into(&mut got, data.len(), hd);
                if !data.is_empty() {
                    got.extend_from_slice(&data);
                    segment_trailer(&mut got, &data, dd);
                }
                assert_eq!(got, want, "len {len} hd {hd} dd {dd}");
            }
        }
    }

    #[test]
    fn bad_data_digest_is_reported_with_header() {
        let mut p = Pdu::new(op::NOP_OUT);
        p.data = vec![9; 8];
        let mut wire = p.encode(false, true);
        let n = wire.len();
        wire[n - 1] ^= 0xff;
        let f = Framer {
            header_digest: false,
            data_digest: true,
            max_data: 8192,
        };
        let bhs: [u8; 48] = wire[..48].try_into().unwrap();
        let err = f.parse(bhs, &wire[48..]).unwrap_err();
        assert_eq!(err.0, FrameError::DataDigest);
        assert_eq!(err.1.opcode(), op::NOP_OUT);
    }

    #[test]
    fn oversized_segment_refused() {
        let mut p = Pdu::new(op::SCSI_CMD);
        p.data = vec![0; 9000];
        let wire = p.encode(false, false);
        let f = Framer {
            header_digest: false,
            data_digest: false,
            max_data: 8192,
        };
        let bhs: [u8; 48] = wire[..48].try_into().unwrap();
        assert!(matches!(f.rest_len(&bhs), Err(FrameError::TooLong { .. })));
    }
}
