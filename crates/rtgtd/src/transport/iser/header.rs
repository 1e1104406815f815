//! The iSER header (RFC 7145 §9.2): 28 bytes in front of every iSCSI control-type PDU
//! carried in an RDMA Send. In a SCSI Command it names the initiator's buffers: the
//! Write STag and base offset the target RDMA-Reads Data-Out from, the Read STag and
//! base offset it RDMA-Writes Data-In to.

/// Its length on the wire.
pub const LEN: usize = 28;

/// Opcodes, the high nibble of the first byte (RFC 7145 §9.2).
/// (Hello 0x2 and HelloReply 0x3 are not used: iSERHelloRequired=No.)
pub const OP_ISCSI_CTRL: u8 = 0x1;
/// Write STag Valid, Read STag Valid.
const WSV: u8 = 0x08;
const RSV: u8 = 0x04;

/// A remote buffer: its STag and base offset (the initiator's virtual address when it
/// does not use zero-based offsets, as Linux's iSER initiator never does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stag {
    pub stag: u32,
    pub base: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub opcode: u8,
    pub write: Option<Stag>,
    pub read: Option<Stag>,
}

impl Header {
    /// What the target puts in front of each PDU it sends: no STags.
    pub const CONTROL: Header = Header {
        opcode: OP_ISCSI_CTRL,
        write: None,
        read: None,
    };

    pub fn parse(b: &[u8]) -> Option<Header> {
        let b: &[u8; LEN] = b.get(..LEN)?.try_into().ok()?;
        let u32_at = |o: usize| u32::from_be_bytes(b[o..o + 4].try_into().expect("4 bytes"));
        let u64_at = |o: usize| u64::from_be_bytes(b[o..o + 8].try_into().expect("8 bytes"));
        let flags = b[0];
        Some(Header {
            opcode: flags >> 4,
            write: (flags & WSV != 0).then(|| Stag {
                stag: u32_at(4),
                base: u64_at(8),
            }),
            read: (flags & RSV != 0).then(|| Stag {
                stag: u32_at(16),
                base: u64_at(20),
            }),
        })
    }

    pub fn encode(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[0] = self.opcode << 4;
        if let Some(w) = self.write {
            b[0] |= WSV;
            b[4..8].copy_from_slice(&w.stag.to_be_bytes());
            b[8..16].copy_from_slice(&w.base.to_be_bytes());
        }
        if let Some(r) = self.read {
            b[0] |= RSV;
            b[16..20].copy_from_slice(&r.stag.to_be_bytes());
            b[20..28].copy_from_slice(&r.base.to_be_bytes());
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linux_initiator_layout() {
        // As Linux's struct iser_ctrl lays out a READ: flags 0x10 | RSV, Read STag
        // 0x1234, Read VA 0xffff888001020304.
        let mut b = [0u8; LEN];
        b[0] = 0x14;
        b[16..20].copy_from_slice(&[0, 0, 0x12, 0x34]);
        b[20..28].copy_from_slice(&0xffff_8880_0102_0304u64.to_be_bytes());
        let h = Header::parse(&b).unwrap();
        assert_eq!(h.opcode, OP_ISCSI_CTRL);
        assert_eq!(h.write, None);
        assert_eq!(
            h.read,
            Some(Stag {
                stag: 0x1234,
                base: 0xffff_8880_0102_0304
            })
        );
        assert_eq!(h.encode(), b);
        assert_eq!(Header::CONTROL.encode()[0], 0x10);
        assert!(Header::parse(&b[..27]).is_none());
    }
}
