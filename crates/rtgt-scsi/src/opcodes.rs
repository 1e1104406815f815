//! The commands each device type implements, with their CDB usage maps, for REPORT
//! SUPPORTED OPERATION CODES (SPC-4 6.35) — and as the dispatch tables' source of truth
//! (a test checks every listed opcode is dispatched and nothing else is).

use crate::cdb::{byte, invalid_cdb_at, u16_at, Outcome};

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
pub(crate) const fn op_sa(opcode: u8, sa: u16, usage: &'static [u8]) -> OpInfo {
    OpInfo {
        opcode,
        sa: Some(sa),
        usage,
    }
}

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

/// What a logical unit implements, besides its device type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Features {
    pub thin: bool,
}

/// One device type's commands, sorted by opcode then service action, and which opcodes
/// they use (a bit per opcode). Built once per device type and features: every command
/// consults it, and building and sorting it each time cost ~10% of a 4K read's CPU.
pub(crate) struct Table {
    ops: Vec<&'static OpInfo>,
    known: [u64; 4],
}

impl Table {
    /// The SPC commands every LU answers plus `parts`, in order: an entry of a later
    /// part replaces an earlier one of the same opcode and service action (a thin LU's
    /// commands replace the thick ones).
    pub fn build(parts: &[&'static [OpInfo]]) -> Self {
        let mut v: Vec<&'static OpInfo> = COMMON.iter().collect();
        for part in parts {
            v.retain(|o| !part.iter().any(|p| p.opcode == o.opcode && p.sa == o.sa));
            v.extend(part.iter());
        }
        v.sort_by_key(|o| (o.opcode, o.sa));
        let mut known = [0u64; 4];
        for o in &v {
            known[usize::from(o.opcode >> 6)] |= 1 << (o.opcode & 63);
        }
        Self { ops: v, known }
    }

    /// All the commands, sorted.
    pub fn ops(&self) -> &[&'static OpInfo] {
        &self.ops
    }

    /// Whether any service action of `opcode` is implemented (every command asks: a
    /// bit test, not a search).
    pub fn is_known(&self, opcode: u8) -> bool {
        self.known[usize::from(opcode >> 6)] & (1 << (opcode & 63)) != 0
    }

    pub fn is_supported(&self, opcode: u8, sa: Option<u16>) -> bool {
        self.ops
            .iter()
            .any(|o| o.opcode == opcode && (o.sa.is_none() || o.sa == sa))
    }
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
pub(crate) fn report(table: &Table, cdb: &[u8]) -> Outcome<Vec<u8>> {
    let rctd = cdb[2] & 0x80 != 0;
    let options = cdb[2] & 0x07;
    let req_op = byte(cdb, 3);
    let req_sa = u16_at(cdb, 4);
    let all = table.ops();
    let mut out = Vec::new();
    match options {
        0 => {
            let mut descs = Vec::new();
            for o in all {
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

    use crate::devices::table_of;
    use crate::DeviceType;

    const ALL_TYPES: &[DeviceType] = DeviceType::ALL;

    fn disk(f: Features) -> &'static Table {
        table_of(DeviceType::Disk, f)
    }

    #[test]
    fn table_is_sorted_unique_and_usage_starts_with_opcode() {
        for &t in ALL_TYPES {
            check_table(t);
        }
    }

    #[test]
    fn is_known_is_exactly_the_table_s_opcodes() {
        for &t in ALL_TYPES {
            for thin in [false, true] {
                let f = Features { thin };
                for op in 0..=255u8 {
                    let listed = table_of(t, f).ops().iter().any(|o| o.opcode == op);
                    assert_eq!(
                        table_of(t, f).is_known(op),
                        listed,
                        "{t:?} thin={thin} {op:#04x}"
                    );
                }
            }
        }
    }

    fn check_table(t: DeviceType) {
        let all = table_of(t, Features::default()).ops();
        for w in all.windows(2) {
            assert!((w[0].opcode, w[0].sa) < (w[1].opcode, w[1].sa));
        }
        for o in all {
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
            disk(Features::default()),
            &[0xa3, 0x0c, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0],
        )
        .unwrap();
        let n = disk(Features::default()).ops().len();
        assert_eq!(d.len(), 4 + 8 * n);
        let d = report(
            disk(Features::default()),
            &[0xa3, 0x0c, 0x80, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0],
        )
        .unwrap();
        assert_eq!(d.len(), 4 + 20 * n);
        assert_eq!(d[4 + 5] & 0x02, 0x02);
        // One command, READ(10).
        let d = report(
            disk(Features::default()),
            &[0xa3, 0x0c, 0x01, 0x28, 0, 0, 0, 0, 0xff, 0xff, 0, 0],
        )
        .unwrap();
        assert_eq!(d[1] & 0x07, 3);
        assert_eq!(u16_at(&d, 2), 10);
        assert_eq!(d[4], 0x28);
        // 001b on an opcode with service actions, 010b on one without: errors.
        assert!(report(
            disk(Features::default()),
            &[0xa3, 0x0c, 0x01, 0x9e, 0, 0x10, 0, 0, 0xff, 0xff, 0, 0]
        )
        .is_err());
        assert!(report(
            disk(Features::default()),
            &[0xa3, 0x0c, 0x02, 0x28, 0, 0, 0, 0, 0xff, 0xff, 0, 0]
        )
        .is_err());
        let d = report(
            disk(Features::default()),
            &[0xa3, 0x0c, 0x02, 0x9e, 0, 0x10, 0, 0, 0xff, 0xff, 0, 0],
        )
        .unwrap();
        assert_eq!(d[4..6], [0x9e, 0x10]);
        // Unsupported opcode: SUPPORT 001b.
        let d = report(
            disk(Features::default()),
            &[0xa3, 0x0c, 0x01, 0x82, 0, 0, 0, 0, 0xff, 0xff, 0, 0],
        )
        .unwrap();
        assert_eq!(d[1] & 0x07, 1);
        // UNMAP only on a thin LU; the option errors point at REPORTING OPTIONS.
        let one = [0xa3, 0x0c, 0x01, 0x42, 0, 0, 0, 0, 0xff, 0xff, 0, 0];
        let d = report(disk(Features::default()), &one).unwrap();
        assert_eq!(d[1] & 0x07, 1);
        let d = report(disk(Features { thin: true }), &one).unwrap();
        assert_eq!(d[1] & 0x07, 3);
        let e = report(
            disk(Features::default()),
            &[0xa3, 0x0c, 0x02, 0x28, 0, 0, 0, 0, 0xff, 0xff, 0, 0],
        )
        .unwrap_err();
        match e {
            crate::cdb::Fail::Check(s) => assert_eq!(s.sks, Some([0xca, 0, 2])),
            other => panic!("{other:?}"),
        }
    }
}
