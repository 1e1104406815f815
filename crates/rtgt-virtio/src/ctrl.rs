//! The control queue (§5.6.6.2): task management functions and asynchronous
//! notification queries / subscriptions.

use crate::chain::{inside, read_split, total, write_all, ChainError, GuestMem, Seg, Split};
use crate::VirtioLun;

pub const T_TMF: u32 = 0;
pub const T_AN_QUERY: u32 = 1;
pub const T_AN_SUBSCRIBE: u32 = 2;

/// TMF subtypes.
pub mod tmf {
    pub const ABORT_TASK: u32 = 0;
    pub const ABORT_TASK_SET: u32 = 1;
    pub const CLEAR_ACA: u32 = 2;
    pub const CLEAR_TASK_SET: u32 = 3;
    pub const I_T_NEXUS_RESET: u32 = 4;
    pub const LOGICAL_UNIT_RESET: u32 = 5;
    pub const QUERY_TASK: u32 = 6;
    pub const QUERY_TASK_SET: u32 = 7;
}

/// A control queue request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ctrl {
    /// `type subtype lun[8] id`; the reply is one `response` byte.
    Tmf {
        subtype: u32,
        lun: VirtioLun,
        tag: u64,
    },
    /// `type lun[8] event_requested`; the reply is `event_actual response`.
    An {
        subscribe: bool,
        lun: VirtioLun,
        requested: u32,
    },
}

/// A control request and where its reply goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtrlRequest {
    pub ctrl: Ctrl,
    pub writable: Vec<Seg>,
}

/// Reads a control chain. Its first le32 says which layout follows.
pub fn parse(mem: &dyn GuestMem, segs: &[Seg]) -> Result<CtrlRequest, ChainError> {
    let split = Split::of(segs)?;
    if !inside(mem, &split.writable) {
        return Err(ChainError::OutsideMemory);
    }
    let (head, _) = read_split(mem, &split.readable, 4)?;
    let ty = u32::from_le_bytes(head[..4].try_into().expect("4"));
    let lun_at = |b: &[u8], at: usize| -> VirtioLun {
        VirtioLun::parse(b[at..at + 8].try_into().expect("8"))
    };
    let ctrl = match ty {
        T_TMF => {
            let (b, _) = read_split(mem, &split.readable, 24)?;
            if total(&split.writable) < 1 {
                return Err(ChainError::ShortResponse);
            }
            Ctrl::Tmf {
                subtype: u32::from_le_bytes(b[4..8].try_into().expect("4")),
                lun: lun_at(&b, 8),
                tag: u64::from_le_bytes(b[16..24].try_into().expect("8")),
            }
        }
        T_AN_QUERY | T_AN_SUBSCRIBE => {
            let (b, _) = read_split(mem, &split.readable, 16)?;
            if total(&split.writable) < 5 {
                return Err(ChainError::ShortResponse);
            }
            Ctrl::An {
                subscribe: ty == T_AN_SUBSCRIBE,
                lun: lun_at(&b, 4),
                requested: u32::from_le_bytes(b[12..16].try_into().expect("4")),
            }
        }
        _ => return Err(ChainError::ShortRequest),
    };
    Ok(CtrlRequest {
        ctrl,
        writable: split.writable,
    })
}

/// Writes a TMF reply.
pub fn tmf_reply(mem: &dyn GuestMem, writable: &[Seg], response: u8) -> Result<u32, ChainError> {
    write_all(mem, writable, &[&[response]])
}

/// Writes an AN reply: the events supported (none here) and the response.
pub fn an_reply(
    mem: &dyn GuestMem,
    writable: &[Seg],
    actual: u32,
    response: u8,
) -> Result<u32, ChainError> {
    write_all(mem, writable, &[&actual.to_le_bytes(), &[response]])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::FlatMem;

    #[test]
    fn tmf_and_an() {
        let mem = FlatMem::new(0, 0x1000);
        let mut b = T_TMF.to_le_bytes().to_vec();
        b.extend(tmf::ABORT_TASK.to_le_bytes());
        b.extend(VirtioLun::encode(0, 2));
        b.extend(99u64.to_le_bytes());
        assert!(mem.write(0, &b));
        let w = Seg {
            addr: 0x100,
            len: 1,
            write: true,
        };
        let r = parse(
            &mem,
            &[
                Seg {
                    addr: 0,
                    len: 24,
                    write: false,
                },
                w,
            ],
        )
        .unwrap();
        assert_eq!(
            r.ctrl,
            Ctrl::Tmf {
                subtype: tmf::ABORT_TASK,
                lun: VirtioLun::Lun { target: 0, lun: 2 },
                tag: 99
            }
        );
        assert_eq!(tmf_reply(&mem, &r.writable, 0).unwrap(), 1);
        // Too short.
        assert_eq!(
            parse(
                &mem,
                &[
                    Seg {
                        addr: 0,
                        len: 20,
                        write: false
                    },
                    w
                ]
            ),
            Err(ChainError::ShortRequest)
        );
        let mut b = T_AN_QUERY.to_le_bytes().to_vec();
        b.extend(VirtioLun::encode(0, 0));
        b.extend(0x10u32.to_le_bytes());
        assert!(mem.write(0x200, &b));
        let w = Seg {
            addr: 0x300,
            len: 5,
            write: true,
        };
        let r = parse(
            &mem,
            &[
                Seg {
                    addr: 0x200,
                    len: 16,
                    write: false,
                },
                w,
            ],
        )
        .unwrap();
        assert!(matches!(
            r.ctrl,
            Ctrl::An {
                subscribe: false,
                requested: 0x10,
                ..
            }
        ));
    }
}
