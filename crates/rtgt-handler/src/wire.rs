//! The handshake on the Unix socket (docs/handler-protocol.md, "Handshake"): the
//! handler sends HELLO (128 bytes), rtgtd answers ACCEPT (64 bytes) carrying, when
//! accepted, three file descriptors per queue by SCM_RIGHTS. After that the socket
//! carries only NOTIFY messages from the handler (16 bytes); its end means the handler
//! is gone. Nothing here does I/O.

pub const HELLO_MAGIC: &[u8; 8] = b"RTGTHELO";
pub const ACCEPT_MAGIC: &[u8; 8] = b"RTGTACPT";
pub const NOTIFY_MAGIC: &[u8; 4] = b"RTGN";
pub const HELLO_SIZE: usize = 128;
pub const ACCEPT_SIZE: usize = 64;
pub const NOTIFY_SIZE: usize = 16;

/// The protocol's major version: a handler and rtgtd talk only when they agree on it;
/// minor versions and feature bits cover additions.
pub const MAJOR: u16 = 1;
pub const MINOR: u16 = 2;

/// Handler kinds.
pub mod kind {
    /// Reads, writes, flushes, unmaps; rtgtd does all of SCSI.
    pub const BLOCK: u32 = 1;
    /// Raw CDBs: the handler is the device server; rtgtd keeps REPORT LUNS, unit
    /// attentions, task management and reservations (for an LU of device type
    /// `handler`).
    pub const SCSI: u32 = 2;
}

/// Feature bits, offered by the handler in HELLO and agreed (a subset) in ACCEPT.
pub mod feature {
    /// FLUSH commands (the handler has a volatile cache to flush).
    pub const FLUSH: u64 = 1 << 0;
    /// UNMAP commands.
    pub const UNMAP: u64 = 1 << 1;
    /// WRITE_ZEROES commands.
    pub const WRITE_ZEROES: u64 = 1 << 2;
    /// The FUA flag on WRITE.
    pub const FUA: u64 = 1 << 3;
    /// Block kind: CDBs whose opcode rtgtd does not know go to the handler as SCSI
    /// commands (scst_user's PARSE_EXCEPTION, fileio_tgt's `-p excpt`).
    pub const SCSI_EXCEPT: u64 = 1 << 4;
    /// FREE commands tell the handler when each command is finished (fileio_tgt's
    /// `-f call`, scst_user's ON_FREE_CMD).
    pub const FREE_NOTIFY: u64 = 1 << 5;
    /// Every feature this version defines.
    pub const ALL: u64 = FLUSH | UNMAP | WRITE_ZEROES | FUA | SCSI_EXCEPT | FREE_NOTIFY;
}

/// HELLO flags: properties of the device.
pub mod device_flag {
    /// Writes are refused (the LU reports write protection).
    pub const READ_ONLY: u32 = 1 << 0;
    /// Every write is durable when completed (no volatile cache: WCE=0 is honest).
    pub const WRITE_THROUGH: u32 = 1 << 1;
    /// Unmapped ranges read back as zeroes.
    pub const UNMAP_ZEROES: u32 = 1 << 2;
    /// SCSI kind: RESERVE / RELEASE and PERSISTENT RESERVE IN / OUT go to the handler
    /// (LIO's PASSTHROUGH_PGR); without it rtgtd keeps them per I_T nexus.
    pub const OWN_RESERVATIONS: u32 = 1 << 3;
}

/// ACCEPT status codes.
pub const ACCEPTED: u32 = 0;
pub const REJECT_VERSION: u32 = 1;
pub const REJECT_KIND: u32 = 2;
pub const REJECT_BLOCK_SIZE: u32 = 3;
pub const REJECT_GEOMETRY: u32 = 4;
pub const REJECT_BUSY: u32 = 5;
pub const REJECT_RESERVED: u32 = 6;
pub const REJECT_WRITE_CACHE: u32 = 7;
/// Kind 2 (SCSI) at an LU of device type disk, or kind 1 at one of device type handler.
pub const REJECT_KIND_MISMATCH: u32 = 8;

/// Words for a status code.
pub fn reject_text(code: u32) -> &'static str {
    match code {
        ACCEPTED => "accepted",
        REJECT_VERSION => "bad magic or unsupported major version",
        REJECT_KIND => "handler kind not supported",
        REJECT_BLOCK_SIZE => "block size differs from the logical unit's",
        REJECT_GEOMETRY => "bad capacity, queue count or depth",
        REJECT_BUSY => "another handler is attached",
        REJECT_RESERVED => "reserved fields not zero",
        REJECT_KIND_MISMATCH => {
            "the logical unit's device type wants the other kind (SCSI: --device-type handler)"
        }
        REJECT_WRITE_CACHE => {
            "the logical unit is write-through (--bsoflags sync) and the handler is not"
        }
        _ => "unknown reason",
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hello {
    pub major: u16,
    pub minor: u16,
    pub kind: u32,
    pub features: u64,
    /// Capacity in bytes (a multiple of `block_size`).
    pub capacity: u64,
    pub block_size: u32,
    /// Queues wanted (1..=64); rtgtd may give fewer.
    pub queues: u32,
    /// Commands in flight per queue wanted (0: rtgtd's default); rtgtd may give fewer.
    pub depth: u32,
    pub flags: u32,
    /// Largest transfer per command wanted (0: rtgtd's default).
    pub max_xfer: u32,
    /// A name for logs (at most 64 bytes of UTF-8).
    pub name: String,
}

impl Hello {
    pub fn encode(&self) -> [u8; HELLO_SIZE] {
        let mut b = [0u8; HELLO_SIZE];
        b[0..8].copy_from_slice(HELLO_MAGIC);
        b[8..10].copy_from_slice(&self.major.to_le_bytes());
        b[10..12].copy_from_slice(&self.minor.to_le_bytes());
        b[12..16].copy_from_slice(&self.kind.to_le_bytes());
        b[16..24].copy_from_slice(&self.features.to_le_bytes());
        b[24..32].copy_from_slice(&self.capacity.to_le_bytes());
        b[32..36].copy_from_slice(&self.block_size.to_le_bytes());
        b[36..40].copy_from_slice(&self.queues.to_le_bytes());
        b[40..44].copy_from_slice(&self.depth.to_le_bytes());
        b[44..48].copy_from_slice(&self.flags.to_le_bytes());
        b[48..52].copy_from_slice(&self.max_xfer.to_le_bytes());
        let n = self.name.as_bytes();
        let n = &n[..n.len().min(64)];
        b[64..64 + n.len()].copy_from_slice(n);
        b
    }

    /// Decodes a HELLO, or the ACCEPT status code that refuses it.
    pub fn decode(b: &[u8; HELLO_SIZE]) -> Result<Hello, u32> {
        let u16_at = |i: usize| u16::from_le_bytes(b[i..i + 2].try_into().unwrap());
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
        if &b[0..8] != HELLO_MAGIC || u16_at(8) != MAJOR {
            return Err(REJECT_VERSION);
        }
        if b[52..64].iter().any(|&x| x != 0) {
            return Err(REJECT_RESERVED);
        }
        let name_end = b[64..].iter().position(|&x| x == 0).unwrap_or(64);
        Ok(Hello {
            major: u16_at(8),
            minor: u16_at(10),
            kind: u32_at(12),
            features: u64_at(16),
            capacity: u64_at(24),
            block_size: u32_at(32),
            queues: u32_at(36),
            depth: u32_at(40),
            flags: u32_at(44),
            max_xfer: u32_at(48),
            name: String::from_utf8_lossy(&b[64..64 + name_end]).into_owned(),
        })
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Accept {
    pub major: u16,
    pub minor: u16,
    pub status: u32,
    pub features: u64,
    pub queues: u32,
    pub depth: u32,
    pub slot_size: u32,
    /// How many handlers attached to this LU before this one (0: the first).
    pub generation: u32,
    /// Size of each queue region in bytes.
    pub region_size: u64,
}

impl Accept {
    pub fn reject(status: u32) -> Accept {
        Accept {
            major: MAJOR,
            minor: MINOR,
            status,
            ..Accept::default()
        }
    }
    pub fn encode(&self) -> [u8; ACCEPT_SIZE] {
        let mut b = [0u8; ACCEPT_SIZE];
        b[0..8].copy_from_slice(ACCEPT_MAGIC);
        b[8..10].copy_from_slice(&self.major.to_le_bytes());
        b[10..12].copy_from_slice(&self.minor.to_le_bytes());
        b[12..16].copy_from_slice(&self.status.to_le_bytes());
        b[16..24].copy_from_slice(&self.features.to_le_bytes());
        b[24..28].copy_from_slice(&self.queues.to_le_bytes());
        b[28..32].copy_from_slice(&self.depth.to_le_bytes());
        b[32..36].copy_from_slice(&self.slot_size.to_le_bytes());
        b[36..40].copy_from_slice(&self.generation.to_le_bytes());
        b[40..48].copy_from_slice(&self.region_size.to_le_bytes());
        b
    }
    pub fn decode(b: &[u8; ACCEPT_SIZE]) -> Option<Accept> {
        if &b[0..8] != ACCEPT_MAGIC {
            return None;
        }
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
        Some(Accept {
            major: u16::from_le_bytes(b[8..10].try_into().unwrap()),
            minor: u16::from_le_bytes(b[10..12].try_into().unwrap()),
            status: u32_at(12),
            features: u64::from_le_bytes(b[16..24].try_into().unwrap()),
            queues: u32_at(24),
            depth: u32_at(28),
            slot_size: u32_at(32),
            generation: u32_at(36),
            region_size: u64::from_le_bytes(b[40..48].try_into().unwrap()),
        })
    }
}

/// NOTIFY kinds (handler to rtgtd after the handshake).
pub mod notify {
    /// The capacity changed to `value` bytes (fileio_tgt's SIGUSR1).
    pub const CAPACITY: u32 = 1;
}

/// A NOTIFY message: magic, kind, value.
pub fn encode_notify(kind: u32, value: u64) -> [u8; NOTIFY_SIZE] {
    let mut b = [0u8; NOTIFY_SIZE];
    b[0..4].copy_from_slice(NOTIFY_MAGIC);
    b[4..8].copy_from_slice(&kind.to_le_bytes());
    b[8..16].copy_from_slice(&value.to_le_bytes());
    b
}

pub fn decode_notify(b: &[u8; NOTIFY_SIZE]) -> Option<(u32, u64)> {
    (&b[0..4] == NOTIFY_MAGIC).then(|| {
        (
            u32::from_le_bytes(b[4..8].try_into().unwrap()),
            u64::from_le_bytes(b[8..16].try_into().unwrap()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello() -> Hello {
        Hello {
            major: MAJOR,
            minor: 3,
            kind: kind::BLOCK,
            features: feature::ALL | 1 << 40,
            capacity: 64 << 20,
            block_size: 4096,
            queues: 2,
            depth: 16,
            flags: device_flag::READ_ONLY,
            max_xfer: 0,
            name: "disk1".into(),
        }
    }

    #[test]
    fn hello_round_trip_keeps_unknown_features() {
        let h = hello();
        let b = h.encode();
        assert_eq!(&b[0..8], b"RTGTHELO");
        assert_eq!(Hello::decode(&b), Ok(h));
    }

    #[test]
    fn hello_refusals() {
        let mut b = hello().encode();
        b[8] = 2;
        assert_eq!(Hello::decode(&b), Err(REJECT_VERSION));
        let mut b = hello().encode();
        b[0] = b'X';
        assert_eq!(Hello::decode(&b), Err(REJECT_VERSION));
        let mut b = hello().encode();
        b[60] = 1;
        assert_eq!(Hello::decode(&b), Err(REJECT_RESERVED));
    }

    #[test]
    fn accept_and_notify_round_trip() {
        let a = Accept {
            major: 1,
            minor: 0,
            status: 0,
            features: feature::FLUSH,
            queues: 2,
            depth: 32,
            slot_size: 1 << 20,
            generation: 4,
            region_size: 4096 + (32 << 20),
        };
        assert_eq!(Accept::decode(&a.encode()), Some(a));
        let n = encode_notify(notify::CAPACITY, 1 << 30);
        assert_eq!(decode_notify(&n), Some((notify::CAPACITY, 1 << 30)));
    }
}
