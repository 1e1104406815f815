//! The commands each device type implements, with their CDB usage maps, for REPORT
//! SUPPORTED OPERATION CODES (SPC-4 6.35) — and as the dispatch tables' source of truth
//! (a test checks every listed opcode is dispatched and nothing else is).

use crate::cdb::{byte, invalid_cdb_at, u16_at, Outcome};
use crate::DeviceType;

/// One supported command: operation code, service action (if the opcode has them) and
/// the CDB USAGE DATA (the opcode, the service action in place, then a bit mask of the
/// CDB bits the device server looks at).
pub(crate) struct OpInfo {
    pub opcode: u8,
    pub sa: Option<u16>,
    pub usage: &'static [u8],
}

pub(crate) const fn op(opcode: u8, usage: &'static [u8]) -> OpInfo {
    OpInfo {
        opcode,
        sa: None,
        usage,
    }
}
const fn op_sa(opcode: u8, sa: u16, usage: &'static [u8]) -> OpInfo {
    OpInfo {
        opcode,
        sa: Some(sa),
        usage,
    }
}

const RW10: [u8; 10] = [0, 0x18, 0xff, 0xff, 0xff, 0xff, 0, 0xff, 0xff, 0];
const RW12: [u8; 12] = [
    0, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0,
];
const RW16: [u8; 16] = [
    0, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0,
];

/// Commands every LU answers (SPC-4).
const COMMON: &[OpInfo] = &[
    op(0x00, &[0x00, 0, 0, 0, 0, 0]),
    op(0x03, &[0x03, 0x01, 0, 0, 0xff, 0]),
    op(0x12, &[0x12, 0x01, 0xff, 0xff, 0xff, 0]),
    op(
        0xa0,
        &[0xa0, 0, 0xff, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0],
    ),
    op_sa(
        0xa3,
        0x0c,
        &[
            0xa3, 0x0c, 0x87, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0,
        ],
    ),
    op_sa(
        0xa3,
        0x0d,
        &[0xa3, 0x0d, 0x80, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0],
    ),
];

const fn with_op<const N: usize>(opcode: u8, mut u: [u8; N]) -> [u8; N] {
    u[0] = opcode;
    u
}

const R10: [u8; 10] = with_op(0x28, RW10);
const W10: [u8; 10] = with_op(0x2a, RW10);
const R12: [u8; 12] = with_op(0xa8, RW12);
const W12: [u8; 12] = with_op(0xaa, RW12);
const R16: [u8; 16] = with_op(0x88, RW16);
const W16: [u8; 16] = with_op(0x8a, RW16);
const OW16: [u8; 16] = with_op(0x8b, RW16);

/// SBC-4 commands of a disk.
const DISK: &[OpInfo] = &[
    op(0x08, &[0x08, 0x1f, 0xff, 0xff, 0xff, 0]),
    op(0x0a, &[0x0a, 0x1f, 0xff, 0xff, 0xff, 0]),
    op(0x15, &[0x15, 0x11, 0, 0, 0xff, 0]),
    op(0x16, &[0x16, 0, 0, 0, 0, 0]),
    op(0x17, &[0x17, 0, 0, 0, 0, 0]),
    op(0x1a, &[0x1a, 0x08, 0xff, 0xff, 0xff, 0]),
    op(0x1b, &[0x1b, 0x01, 0, 0x0f, 0xf7, 0]),
    op(0x1e, &[0x1e, 0, 0, 0, 0x03, 0]),
    op(0x25, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
    op(0x28, &R10),
    op(0x2a, &W10),
    op(
        0x2e,
        &[0x2e, 0x12, 0xff, 0xff, 0xff, 0xff, 0, 0xff, 0xff, 0],
    ),
    op(
        0x2f,
        &[0x2f, 0x16, 0xff, 0xff, 0xff, 0xff, 0, 0xff, 0xff, 0],
    ),
    op(
        0x34,
        &[0x34, 0x02, 0xff, 0xff, 0xff, 0xff, 0, 0xff, 0xff, 0],
    ),
    op(
        0x35,
        &[0x35, 0x02, 0xff, 0xff, 0xff, 0xff, 0, 0xff, 0xff, 0],
    ),
    op(0x37, &[0x37, 0, 0x1f, 0, 0, 0, 0, 0xff, 0xff, 0]),
    op(0x41, &[0x41, 0, 0xff, 0xff, 0xff, 0xff, 0, 0xff, 0xff, 0]),
    op_sa(0x48, 0x01, &[0x48, 0xa1, 0, 0, 0, 0, 0, 0xff, 0xff, 0]),
    op_sa(0x48, 0x03, &[0x48, 0xa3, 0, 0, 0, 0, 0, 0xff, 0xff, 0]),
    op_sa(0x48, 0x1f, &[0x48, 0xbf, 0, 0, 0, 0, 0, 0xff, 0xff, 0]),
    op(0x55, &[0x55, 0x11, 0, 0, 0, 0, 0, 0xff, 0xff, 0]),
    op(0x56, &[0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
    op(0x57, &[0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
    op(0x5a, &[0x5a, 0x18, 0xff, 0xff, 0, 0, 0, 0xff, 0xff, 0]),
    op_sa(0x5e, 0x00, &[0x5e, 0x00, 0, 0, 0, 0, 0, 0xff, 0xff, 0]),
    op_sa(0x5e, 0x01, &[0x5e, 0x01, 0, 0, 0, 0, 0, 0xff, 0xff, 0]),
    op_sa(0x5e, 0x02, &[0x5e, 0x02, 0, 0, 0, 0, 0, 0xff, 0xff, 0]),
    op_sa(0x5e, 0x03, &[0x5e, 0x03, 0, 0, 0, 0, 0, 0xff, 0xff, 0]),
    op_sa(
        0x5f,
        0x00,
        &[0x5f, 0x00, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0],
    ),
    op_sa(
        0x5f,
        0x01,
        &[0x5f, 0x01, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0],
    ),
    op_sa(
        0x5f,
        0x02,
        &[0x5f, 0x02, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0],
    ),
    op_sa(
        0x5f,
        0x03,
        &[0x5f, 0x03, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0],
    ),
    op_sa(
        0x5f,
        0x04,
        &[0x5f, 0x04, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0],
    ),
    op_sa(
        0x5f,
        0x05,
        &[0x5f, 0x05, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0],
    ),
    op_sa(
        0x5f,
        0x06,
        &[0x5f, 0x06, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0],
    ),
    op_sa(
        0x5f,
        0x07,
        &[0x5f, 0x07, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0],
    ),
    op_sa(
        0x83,
        0x00,
        &[
            0x83, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0,
        ],
    ),
    op_sa(
        0x84,
        0x00,
        &[
            0x84, 0x00, 0xff, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0,
        ],
    ),
    op_sa(
        0x84,
        0x03,
        &[
            0x84, 0x03, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0,
        ],
    ),
    op(0x88, &R16),
    op(
        0x89,
        &[
            0x89, 0xfa, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0xff, 0x3f, 0,
        ],
    ),
    op(0x8a, &W16),
    op(0x8b, &OW16),
    op(
        0x8e,
        &[
            0x8e, 0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0,
            0,
        ],
    ),
    op(
        0x8f,
        &[
            0x8f, 0x16, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0,
            0,
        ],
    ),
    op(
        0x90,
        &[
            0x90, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0,
            0,
        ],
    ),
    op(
        0x91,
        &[
            0x91, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0,
            0,
        ],
    ),
    op(
        0x93,
        &[
            0x93, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0,
        ],
    ),
    op(
        0x9c,
        &[
            0x9c, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0xff, 0xff, 0, 0,
        ],
    ),
    op_sa(
        0x9e,
        0x10,
        &[
            0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0,
        ],
    ),
    op_sa(
        0x9e,
        0x12,
        &[
            0x9e, 0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0,
            0,
        ],
    ),
    op(0xa8, &R12),
    op(0xaa, &W12),
    op(
        0xb7,
        &[
            0xb7, 0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0,
        ],
    ),
    op(
        0xae,
        &[
            0xae, 0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0,
        ],
    ),
    op(
        0xaf,
        &[
            0xaf, 0x16, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0,
        ],
    ),
    // REPORT / SET TARGET PORT GROUPS (SPC-4 6.36, 6.44): ALUA.
    op_sa(
        0xa3,
        0x0a,
        &[0xa3, 0xea, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0],
    ),
    op_sa(
        0xa4,
        0x0a,
        &[0xa4, 0x0a, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0],
    ),
];

/// SSC-3 commands of a tape drive, with the SPC-4 ones it shares with a disk
/// (reservations, mode parameters, PREVENT ALLOW).
const TAPE: &[OpInfo] = &[
    op(0x01, &[0x01, 0x01, 0, 0, 0, 0]),
    op(0x05, &[0x05, 0, 0, 0, 0, 0]),
    op(0x08, &[0x08, 0x03, 0xff, 0xff, 0xff, 0]),
    op(0x0a, &[0x0a, 0x01, 0xff, 0xff, 0xff, 0]),
    op(0x10, &[0x10, 0x03, 0xff, 0xff, 0xff, 0]),
    op(0x11, &[0x11, 0x0f, 0xff, 0xff, 0xff, 0]),
    op(0x15, &[0x15, 0x11, 0, 0, 0xff, 0]),
    op(0x16, &[0x16, 0, 0, 0, 0, 0]),
    op(0x17, &[0x17, 0, 0, 0, 0, 0]),
    op(0x19, &[0x19, 0x03, 0, 0, 0, 0]),
    op(0x1a, &[0x1a, 0x08, 0xff, 0xff, 0xff, 0]),
    op(0x1b, &[0x1b, 0x01, 0, 0, 0x05, 0]),
    op(0x1e, &[0x1e, 0, 0, 0, 0x03, 0]),
    op(0x2b, &[0x2b, 0x07, 0, 0xff, 0xff, 0xff, 0xff, 0, 0xff, 0]),
    op(0x34, &[0x34, 0x1f, 0, 0, 0, 0, 0, 0, 0, 0]),
    op(0x44, &[0x44, 0x03, 0, 0, 0, 0, 0, 0xff, 0xff, 0]),
    op(0x4d, &[0x4d, 0x01, 0xff, 0xff, 0, 0, 0, 0xff, 0xff, 0]),
    op(0x55, &[0x55, 0x11, 0, 0, 0, 0, 0, 0xff, 0xff, 0]),
    op(0x56, &[0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
    op(0x57, &[0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
    op(0x5a, &[0x5a, 0x08, 0xff, 0xff, 0, 0, 0, 0xff, 0xff, 0]),
    op(
        0x92,
        &[
            0x92, 0x1b, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0,
        ],
    ),
];

/// SMC-3 commands of a media changer.
const CHANGER: &[OpInfo] = &[
    op(0x07, &[0x07, 0, 0, 0, 0, 0]),
    op(0x16, &[0x16, 0, 0, 0, 0, 0]),
    op(0x17, &[0x17, 0, 0, 0, 0, 0]),
    op(0x1a, &[0x1a, 0x08, 0xff, 0xff, 0xff, 0]),
    op(0x1e, &[0x1e, 0, 0, 0, 0x03, 0]),
    op(0x2b, &[0x2b, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0x01, 0]),
    op(0x37, &[0x37, 0x01, 0xff, 0xff, 0, 0, 0xff, 0xff, 0, 0]),
    op(0x56, &[0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
    op(0x57, &[0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
    op(0x5a, &[0x5a, 0x08, 0xff, 0xff, 0, 0, 0, 0xff, 0xff, 0]),
    op(
        0xa5,
        &[0xa5, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0x01, 0],
    ),
    op(
        0xa6,
        &[
            0xa6, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x03, 0,
        ],
    ),
    op(
        0xb8,
        &[
            0xb8, 0x1f, 0xff, 0xff, 0xff, 0xff, 0x03, 0xff, 0xff, 0xff, 0, 0,
        ],
    ),
];

/// Commands only a thin-provisioned disk has (SBC-4 4.7.3): UNMAP, SANITIZE BLOCK
/// ERASE (which deallocates everything), and WRITE SAME with ANCHOR / UNMAP / NDOB.
const THIN: &[OpInfo] = &[
    op(
        0x41,
        &[0x41, 0x18, 0xff, 0xff, 0xff, 0xff, 0, 0xff, 0xff, 0],
    ),
    op(0x42, &[0x42, 0x01, 0, 0, 0, 0, 0, 0xff, 0xff, 0]),
    op_sa(0x48, 0x02, &[0x48, 0xa2, 0, 0, 0, 0, 0, 0xff, 0xff, 0]),
    op(
        0x93,
        &[
            0x93, 0x19, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0,
            0,
        ],
    ),
];

/// What a logical unit implements, besides its device type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Features {
    pub thin: bool,
}

/// All commands of a device type, sorted by opcode then service action. A thin LU's
/// entries replace the thick ones of the same opcode and service action.
pub(crate) fn supported(t: DeviceType, f: Features) -> Vec<&'static OpInfo> {
    table(t, f).to_vec()
}

/// [`supported`], built once per (device type, features): every command consults it,
/// and building and sorting it each time cost ~10% of a 4K read's CPU.
fn table(t: DeviceType, f: Features) -> &'static [&'static OpInfo] {
    &tables(t, f).ops
}

/// One device type's commands, sorted, and which opcodes they use (bit per opcode).
struct Table {
    ops: Vec<&'static OpInfo>,
    known: [u64; 4],
}

fn tables(t: DeviceType, f: Features) -> &'static Table {
    static TABLES: [std::sync::OnceLock<Table>; 6] = [const { std::sync::OnceLock::new() }; 6];
    let i = match (t, f.thin) {
        (DeviceType::Controller, _) => 0,
        (DeviceType::Disk, false) => 1,
        (DeviceType::Disk, true) => 2,
        (DeviceType::Tape, _) => 3,
        (DeviceType::Cd, _) => 4,
        (DeviceType::Changer, _) => 5,
    };
    TABLES[i].get_or_init(|| {
        let mut v: Vec<&'static OpInfo> = COMMON.iter().collect();
        match t {
            DeviceType::Tape => v.extend(TAPE.iter()),
            DeviceType::Changer => v.extend(CHANGER.iter()),
            _ => {}
        }
        if t == DeviceType::Disk {
            v.extend(DISK.iter());
            if f.thin {
                v.retain(|o| !THIN.iter().any(|t| t.opcode == o.opcode && t.sa == o.sa));
                v.extend(THIN.iter());
            }
        }
        if t == DeviceType::Cd {
            v.extend(crate::mmc::opcodes::CD.iter());
        }
        v.sort_by_key(|o| (o.opcode, o.sa));
        let mut known = [0u64; 4];
        for o in &v {
            known[usize::from(o.opcode >> 6)] |= 1 << (o.opcode & 63);
        }
        Table { ops: v, known }
    })
}

/// Whether any service action of `opcode` is implemented (every command asks: a bit
/// test, not a search).
pub(crate) fn is_known(t: DeviceType, f: Features, opcode: u8) -> bool {
    tables(t, f).known[usize::from(opcode >> 6)] & (1 << (opcode & 63)) != 0
}

pub(crate) fn is_supported(t: DeviceType, f: Features, opcode: u8, sa: Option<u16>) -> bool {
    table(t, f)
        .iter()
        .any(|o| o.opcode == opcode && (o.sa.is_none() || o.sa == sa))
}

/// Opcodes whose CDB byte 1 carries a SERVICE ACTION (SPC-4 4.2.5.1 and the commands
/// rtgt implements).
pub(crate) fn has_service_action(opcode: u8) -> bool {
    matches!(
        opcode,
        0x48 | 0x5e | 0x5f | 0x83 | 0x84 | 0x9e | 0xa3 | 0xa4
    )
}

/// Command timeouts descriptor (SPC-4 6.35.4): nominal and recommended, in seconds.
/// Commands that touch the whole medium (SANITIZE, EXTENDED COPY, WRITE SAME, UNMAP)
/// may take long; everything else completes well within a second.
fn timeouts(opcode: u8) -> [u8; 12] {
    let (nominal, recommended) = match opcode {
        0x48 => (600, 3600),
        0x83 | 0x41 | 0x93 | 0x42 | 0x35 | 0x91 => (10, 120),
        _ => (1, 30),
    };
    let mut t = [0u8; 12];
    t[0..2].copy_from_slice(&0x0au16.to_be_bytes());
    t[4..8].copy_from_slice(&(nominal as u32).to_be_bytes());
    t[8..12].copy_from_slice(&(recommended as u32).to_be_bytes());
    t
}

/// REPORT SUPPORTED OPERATION CODES (MAINTENANCE IN, service action 0Ch).
pub(crate) fn report(t: DeviceType, f: Features, cdb: &[u8]) -> Outcome<Vec<u8>> {
    let rctd = cdb[2] & 0x80 != 0;
    let options = cdb[2] & 0x07;
    let req_op = byte(cdb, 3);
    let req_sa = u16_at(cdb, 4);
    let all = supported(t, f);
    let mut out = Vec::new();
    match options {
        0 => {
            let mut descs = Vec::new();
            for o in &all {
                descs.push(o.opcode);
                descs.push(0);
                descs.extend_from_slice(&o.sa.unwrap_or(0).to_be_bytes());
                descs.push(0);
                descs.push((u8::from(rctd) << 1) | u8::from(o.sa.is_some()));
                descs.extend_from_slice(&(o.usage.len() as u16).to_be_bytes());
                if rctd {
                    descs.extend_from_slice(&timeouts(o.opcode));
                }
            }
            out.extend_from_slice(&(descs.len() as u32).to_be_bytes());
            out.extend(descs);
        }
        1..=3 => {
            let has_sa = all.iter().any(|o| o.opcode == req_op && o.sa.is_some());
            let known_op = all.iter().any(|o| o.opcode == req_op);
            // SPC-4 6.35.2: 001b for an opcode with service actions, and 010b for one
            // without, are errors.
            if known_op && ((options == 1 && has_sa) || (options == 2 && !has_sa)) {
                return Err(invalid_cdb_at(2, Some(2)));
            }
            let found = all
                .iter()
                .find(|o| o.opcode == req_op && (o.sa.is_none() || o.sa == Some(req_sa)));
            match found {
                Some(o) => {
                    out.push(0);
                    out.push((u8::from(rctd) << 7) | 0x03); // SUPPORT 011b
                    out.extend_from_slice(&(o.usage.len() as u16).to_be_bytes());
                    out.extend_from_slice(o.usage);
                    if rctd {
                        out.extend_from_slice(&timeouts(o.opcode));
                    }
                }
                None => {
                    out.extend_from_slice(&[0, 0x01, 0, 0]); // SUPPORT 001b
                }
            }
        }
        _ => return Err(invalid_cdb_at(2, Some(2))),
    }
    Ok(out)
}

/// REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS (SPC-4 6.36): what `ScsiTarget::
/// task_management` carries out — ABORT TASK, ABORT TASK SET, CLEAR TASK SET, LOGICAL
/// UNIT RESET and TARGET RESET (iSCSI's warm and cold). CLEAR ACA is rejected (no NACA),
/// QUERY TASK and I_T NEXUS RESET have no iSCSI function code (RFC 7143 §11.5.1).
pub(crate) fn report_tmf(cdb: &[u8]) -> Vec<u8> {
    let repd = cdb[2] & 0x80 != 0;
    // Byte 0: ATS(7) ATSS(6) CACAS(5)=0 CTSS(4) LURS(3) QTS(2)=0 TRS(1) WAKES(0)=0.
    let mut out = vec![0x80 | 0x40 | 0x10 | 0x08 | 0x02, 0, 0, 0];
    if repd {
        out[3] = 0x0c; // ADDITIONAL DATA LENGTH of the extended format
        out.extend_from_slice(&[0; 12]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL_TYPES: [DeviceType; 5] = [
        DeviceType::Controller,
        DeviceType::Disk,
        DeviceType::Tape,
        DeviceType::Cd,
        DeviceType::Changer,
    ];

    #[test]
    fn table_is_sorted_unique_and_usage_starts_with_opcode() {
        for t in ALL_TYPES {
            check_table(t);
        }
    }

    #[test]
    fn is_known_is_exactly_the_table_s_opcodes() {
        for t in ALL_TYPES {
            for thin in [false, true] {
                let f = Features { thin };
                for op in 0..=255u8 {
                    let listed = supported(t, f).iter().any(|o| o.opcode == op);
                    assert_eq!(is_known(t, f, op), listed, "{t:?} thin={thin} {op:#04x}");
                }
            }
        }
    }

    fn check_table(t: DeviceType) {
        let all = supported(t, Features::default());
        for w in all.windows(2) {
            assert!((w[0].opcode, w[0].sa) < (w[1].opcode, w[1].sa));
        }
        for o in &all {
            assert_eq!(o.usage[0], o.opcode);
            assert_eq!(o.usage.len(), crate::cdb::cdb_len(o.opcode));
            if let Some(sa) = o.sa {
                assert_eq!(u16::from(o.usage[1] & 0x1f), sa);
            }
        }
    }

    #[test]
    fn all_and_one() {
        let d = report(
            DeviceType::Disk,
            Features::default(),
            &[0xa3, 0x0c, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0],
        )
        .unwrap();
        let n = supported(DeviceType::Disk, Features::default()).len();
        assert_eq!(d.len(), 4 + 8 * n);
        let d = report(
            DeviceType::Disk,
            Features::default(),
            &[0xa3, 0x0c, 0x80, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0],
        )
        .unwrap();
        assert_eq!(d.len(), 4 + 20 * n);
        assert_eq!(d[4 + 5] & 0x02, 0x02);
        // One command, READ(10).
        let d = report(
            DeviceType::Disk,
            Features::default(),
            &[0xa3, 0x0c, 0x01, 0x28, 0, 0, 0, 0, 0xff, 0xff, 0, 0],
        )
        .unwrap();
        assert_eq!(d[1] & 0x07, 3);
        assert_eq!(u16_at(&d, 2), 10);
        assert_eq!(d[4], 0x28);
        // 001b on an opcode with service actions, 010b on one without: errors.
        assert!(report(
            DeviceType::Disk,
            Features::default(),
            &[0xa3, 0x0c, 0x01, 0x9e, 0, 0x10, 0, 0, 0xff, 0xff, 0, 0]
        )
        .is_err());
        assert!(report(
            DeviceType::Disk,
            Features::default(),
            &[0xa3, 0x0c, 0x02, 0x28, 0, 0, 0, 0, 0xff, 0xff, 0, 0]
        )
        .is_err());
        let d = report(
            DeviceType::Disk,
            Features::default(),
            &[0xa3, 0x0c, 0x02, 0x9e, 0, 0x10, 0, 0, 0xff, 0xff, 0, 0],
        )
        .unwrap();
        assert_eq!(d[4..6], [0x9e, 0x10]);
        // Unsupported opcode: SUPPORT 001b.
        let d = report(
            DeviceType::Disk,
            Features::default(),
            &[0xa3, 0x0c, 0x01, 0x82, 0, 0, 0, 0, 0xff, 0xff, 0, 0],
        )
        .unwrap();
        assert_eq!(d[1] & 0x07, 1);
        // UNMAP only on a thin LU; the option errors point at REPORTING OPTIONS.
        let one = [0xa3, 0x0c, 0x01, 0x42, 0, 0, 0, 0, 0xff, 0xff, 0, 0];
        let d = report(DeviceType::Disk, Features::default(), &one).unwrap();
        assert_eq!(d[1] & 0x07, 1);
        let d = report(DeviceType::Disk, Features { thin: true }, &one).unwrap();
        assert_eq!(d[1] & 0x07, 3);
        let e = report(
            DeviceType::Disk,
            Features::default(),
            &[0xa3, 0x0c, 0x02, 0x28, 0, 0, 0, 0, 0xff, 0xff, 0, 0],
        )
        .unwrap_err();
        match e {
            crate::cdb::Fail::Check(s) => assert_eq!(s.sks, Some([0xca, 0, 2])),
            other => panic!("{other:?}"),
        }
    }
}
