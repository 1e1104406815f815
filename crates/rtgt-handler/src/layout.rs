//! The shared-memory layout of one queue (docs/handler-protocol.md, "Queue region").
//!
//! One memfd per queue, created and sealed by rtgtd:
//!
//! ```text
//! 0      header (512 bytes: four 64-byte-aligned control lines, rest reserved)
//! 512    command ring:    depth x 64-byte entries (rtgtd produces, handler consumes)
//! ...    completion ring: depth x 16-byte entries (handler produces, rtgtd consumes)
//! A      data arena:      depth x slot_size bytes, A = next multiple of 4096
//! ```
//!
//! Ring indices are free-running u32 counters; entry `i` lives at `i % depth` (depth is a
//! power of two). All integers are little-endian. Nothing here does I/O.

/// Size of the header at the start of a queue region.
pub const HEADER_SIZE: usize = 512;
/// Command ring tail: written by rtgtd (producer), read by the handler.
pub const CMD_TAIL: usize = 64;
/// A hint, written by rtgtd when it kicks the handler: 1 + the CPU the thread that
/// queued the command ran on (0: none given). A handler whose queue thread runs there
/// is woken by a local context switch rather than an inter-processor interrupt, which
/// on a virtual machine is a VM exit on each side.
pub const CMD_CPU: usize = 68;
/// Command ring head: written by the handler (consumer), read by rtgtd.
pub const CMD_HEAD: usize = 128;
/// The handler's wake flag: 1 = "I am about to sleep on the command eventfd, kick me";
/// 0 = "I am busy polling the ring, don't wake me" (no eventfd write needed). rtgtd
/// clears it when it kicks, so one kick serves a sleep however many commands follow.
pub const CMD_SLEEPING: usize = 132;
/// Completion ring tail: written by the handler (producer), read by rtgtd.
pub const CPL_TAIL: usize = 192;
/// Completion ring head: written by rtgtd (consumer), read by the handler.
pub const CPL_HEAD: usize = 256;
/// rtgtd's wake flag for the completion eventfd, as [`CMD_SLEEPING`] (the handler
/// clears it when it kicks).
pub const CPL_SLEEPING: usize = 260;

pub const CMD_ENTRY: usize = 64;
pub const CPL_ENTRY: usize = 16;
/// Arena alignment (and slot sizes are multiples of it), so O_DIRECT works on slots.
pub const PAGE: usize = 4096;

/// Offsets of a queue region's parts for `depth` entries of `slot_size` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub depth: u32,
    pub slot_size: u32,
}

impl Geometry {
    pub fn cmd_ring(&self) -> usize {
        HEADER_SIZE
    }
    pub fn cpl_ring(&self) -> usize {
        HEADER_SIZE + self.depth as usize * CMD_ENTRY
    }
    pub fn arena(&self) -> usize {
        let end = self.cpl_ring() + self.depth as usize * CPL_ENTRY;
        end.div_ceil(PAGE) * PAGE
    }
    pub fn arena_size(&self) -> usize {
        self.depth as usize * self.slot_size as usize
    }
    pub fn region_size(&self) -> usize {
        self.arena() + self.arena_size()
    }
    /// Valid: depth a power of two in 1..=4096, slot size a non-zero multiple of 4096 up
    /// to 16 MiB.
    pub fn valid(&self) -> bool {
        self.depth.is_power_of_two()
            && self.depth <= MAX_DEPTH
            && self.slot_size > 0
            && (self.slot_size as usize).is_multiple_of(PAGE)
            && self.slot_size <= MAX_SLOT
    }
}

pub const MAX_DEPTH: u32 = 4096;
pub const MAX_SLOT: u32 = 16 << 20;

/// Command opcodes (block kind).
pub mod op {
    /// Read `len` bytes at `offset` into the arena at `data`.
    pub const READ: u8 = 1;
    /// Write `len` bytes from the arena at `data` to `offset`.
    pub const WRITE: u8 = 2;
    /// Make every completed write durable.
    pub const FLUSH: u8 = 3;
    /// Release `len` bytes at `offset` (they may read back as anything, or zeroes if the
    /// handler said `UNMAP_ZEROES`).
    pub const UNMAP: u8 = 4;
    /// Make `len` bytes at `offset` read as zeroes.
    pub const WRITE_ZEROES: u8 = 5;
    /// A raw SCSI command (the SCSI kind, and the block kind's `SCSI_EXCEPT` feature):
    /// the CDB is inline, `offset` is the I_T nexus id, `len` the Data-Out length (the
    /// bytes are in the arena at `data`) or the Data-In allocation (room at `data`).
    pub const SCSI: u8 = 6;
    /// A command is finished and its response sent (`FREE_NOTIFY`, fileio_tgt's
    /// `-f call`): `offset` is the finished command's tag, `len` its SCSI status,
    /// flag `ABORTED` set when the initiator aborted it. Completed with status 0.
    pub const FREE: u8 = 7;
    /// Task management (`flags`: a [`tmf`] function; ABORT TASK: `offset` is the tag
    /// of the command to abort). The handler completes it, with status 0, once it is
    /// done with every command it covers (completing them first, with any status:
    /// rtgtd does not answer aborted commands). It arrives in a slot of its own (the
    /// last of the queue), so there is room for it even when every other slot is busy.
    pub const TASK_MGMT: u8 = 8;
}

/// Task management functions (SAM-5 7), in a TASK_MGMT entry's `flags`.
pub mod tmf {
    /// ABORT TASK: the command whose tag is `offset`.
    pub const ABORT_TASK: u8 = 1;
    /// LOGICAL UNIT RESET: every command of the LU, and the handler's own state of it
    /// (a SCSI-kind handler: PREVENT ALLOW MEDIUM REMOVAL, SPC-2 reservations it keeps).
    pub const LU_RESET: u8 = 2;
}

/// Which way a SCSI command's data moves (`dir` of a SCSI entry).
pub mod dir {
    pub const NONE: u8 = 0;
    /// Data-Out: the initiator's bytes are in the arena for the handler.
    pub const TO_HANDLER: u8 = 1;
    /// Data-In: the handler puts its answer in the arena.
    pub const FROM_HANDLER: u8 = 2;
}

/// Longest CDB carried inline in a command entry (SPC-4 4.2: every fixed CDB, and
/// variable-length ones of up to 32 bytes).
pub const MAX_CDB: usize = 32;

/// Longest sense data a SCSI completion may give (SPC-4 4.5.1).
pub const MAX_SENSE: u64 = 252;

/// SCSI status CHECK CONDITION (SAM-5 5.3): a SCSI completion with it carries sense
/// data, not Data-In, in the slot.
pub const CHECK_CONDITION: i32 = 0x02;

/// Command flags.
pub mod cmd_flag {
    /// WRITE: durable before completion (SCSI FUA).
    pub const FUA: u8 = 1;
    /// FREE: the finished command was aborted (task management); no response went out.
    pub const ABORTED: u8 = 2;
}

/// A command entry (64 bytes on the ring).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cmd {
    pub op: u8,
    pub flags: u8,
    /// Slot index in the low 16 bits, a generation in the high 16: the completion
    /// echoes it, and rtgtd rejects a tag that is not in flight.
    pub tag: u32,
    pub offset: u64,
    pub len: u64,
    /// Offset of the data within the arena (READ, WRITE, SCSI; 0 otherwise).
    pub data: u64,
    /// SCSI: the data direction ([`dir`]).
    pub dir: u8,
    /// SCSI: the CDB's length (1..=32).
    pub cdb_len: u8,
    /// SCSI: the CDB, zero-padded.
    pub cdb: [u8; MAX_CDB],
}

impl Cmd {
    pub fn encode(&self) -> [u8; CMD_ENTRY] {
        let mut b = [0u8; CMD_ENTRY];
        b[0] = self.op;
        b[1] = self.flags;
        b[4..8].copy_from_slice(&self.tag.to_le_bytes());
        b[8..16].copy_from_slice(&self.offset.to_le_bytes());
        b[16..24].copy_from_slice(&self.len.to_le_bytes());
        b[24..32].copy_from_slice(&self.data.to_le_bytes());
        b[2] = self.cdb_len;
        b[3] = self.dir;
        b[32..64].copy_from_slice(&self.cdb);
        b
    }
    pub fn decode(b: &[u8; CMD_ENTRY]) -> Cmd {
        Cmd {
            cdb_len: b[2],
            dir: b[3],
            cdb: b[32..64].try_into().unwrap(),
            op: b[0],
            flags: b[1],
            tag: u32::from_le_bytes(b[4..8].try_into().unwrap()),
            offset: u64::from_le_bytes(b[8..16].try_into().unwrap()),
            len: u64::from_le_bytes(b[16..24].try_into().unwrap()),
            data: u64::from_le_bytes(b[24..32].try_into().unwrap()),
        }
    }
    pub fn slot(&self) -> u32 {
        self.tag & 0xffff
    }

    /// A SCSI entry's CDB (empty when its length is out of range).
    pub fn cdb(&self) -> &[u8] {
        self.cdb.get(..usize::from(self.cdb_len)).unwrap_or(&[])
    }
}

/// A completion entry (16 bytes on the ring). For a SCSI command, `status` is the SCSI
/// status byte (0..=255) or a negative errno (the command never reached a device
/// server: rtgtd answers HARDWARE ERROR, or NOT READY for -ENOTCONN / -ETIMEDOUT), and
/// `bytes` is the Data-In length put in the slot, or with CHECK CONDITION the length of
/// the sense data put there (at most [`MAX_SENSE`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cpl {
    pub tag: u32,
    /// 0 = success, else a negative errno (-EIO: medium error, -EROFS: write protected,
    /// -ENOSPC: out of space).
    pub status: i32,
    /// Bytes transferred: for a successful READ or WRITE it must equal the command's
    /// `len` (rtgtd disconnects a handler that says otherwise); 0 for other ops.
    pub bytes: u64,
}

impl Cpl {
    pub fn encode(&self) -> [u8; CPL_ENTRY] {
        let mut b = [0u8; CPL_ENTRY];
        b[0..4].copy_from_slice(&self.tag.to_le_bytes());
        b[4..8].copy_from_slice(&self.status.to_le_bytes());
        b[8..16].copy_from_slice(&self.bytes.to_le_bytes());
        b
    }
    pub fn decode(b: &[u8; CPL_ENTRY]) -> Cpl {
        Cpl {
            tag: u32::from_le_bytes(b[0..4].try_into().unwrap()),
            status: i32::from_le_bytes(b[4..8].try_into().unwrap()),
            bytes: u64::from_le_bytes(b[8..16].try_into().unwrap()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_offsets() {
        let g = Geometry {
            depth: 32,
            slot_size: 1 << 20,
        };
        assert_eq!(g.cmd_ring(), 512);
        assert_eq!(g.cpl_ring(), 512 + 32 * 64);
        assert_eq!(g.arena(), 4096);
        assert_eq!(g.region_size(), 4096 + (32 << 20));
        assert!(g.valid());
        assert!(!Geometry {
            depth: 3,
            slot_size: 4096
        }
        .valid());
        assert!(!Geometry {
            depth: 4,
            slot_size: 1000
        }
        .valid());
    }

    #[test]
    fn entries_round_trip() {
        let c = Cmd {
            op: op::WRITE,
            flags: cmd_flag::FUA,
            tag: 0x0003_0007,
            offset: 1 << 40,
            len: 65536,
            data: 7 << 20,
            ..Cmd::default()
        };
        let b = c.encode();
        assert_eq!(b[0], 2);
        assert_eq!(&b[4..8], &[7, 0, 3, 0]);
        assert_eq!(Cmd::decode(&b), c);
        assert_eq!(c.slot(), 7);
        let mut cdb = [0u8; MAX_CDB];
        cdb[..10].copy_from_slice(&[0x28, 0, 0, 0, 0, 8, 0, 0, 1, 0]);
        let s = Cmd {
            op: op::SCSI,
            tag: 5,
            offset: 42,
            len: 512,
            dir: dir::FROM_HANDLER,
            cdb_len: 10,
            cdb,
            ..Cmd::default()
        };
        let b = s.encode();
        assert_eq!((b[0], b[2], b[3], b[32], b[37]), (6, 10, 2, 0x28, 8));
        assert_eq!(Cmd::decode(&b), s);
        assert_eq!(s.cdb(), &cdb[..10]);
        let p = Cpl {
            tag: 9,
            status: -5,
            bytes: 512,
        };
        assert_eq!(Cpl::decode(&p.encode()), p);
    }
}
