//! Request queues (§5.6.6.1): the request header and data-out the driver wrote, the
//! response header, sense and data-in the device writes back.

use crate::chain::{
    inside, read_split, total, write_all, ChainError, GuestMem, Seg, Split, MAX_DATA,
};
use crate::{response, VirtioLun, CDB_SIZE, SENSE_SIZE};

/// `lun[8] id(le64) task_attr prio crn cdb[cdb_size]` (no T10 PI: not offered).
pub const REQ_HEADER: usize = 8 + 8 + 3 + CDB_SIZE;
/// `sense_len(le32) residual(le32) status_qualifier(le16) status response sense[sense_size]`.
pub const RESP_HEADER: usize = 4 + 4 + 2 + 1 + 1 + SENSE_SIZE;

/// A request as read from its chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub lun: VirtioLun,
    /// The driver's tag (`id`), unique among its outstanding requests.
    pub tag: u64,
    /// VIRTIO_SCSI_S_SIMPLE 0, ORDERED 1, HEAD 2, ACA 3.
    pub task_attr: u8,
    pub cdb: [u8; CDB_SIZE],
    pub data_out: Vec<u8>,
    /// Room for data-in after the response header.
    pub data_in_len: u32,
    /// Where the response goes: the chain's device-writable segments.
    pub writable: Vec<Seg>,
}

/// A chain that is not a request the device can run, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub error: ChainError,
    /// The writable segments, when the response header fits: answer
    /// VIRTIO_SCSI_S_FAILURE there. Empty: nothing can be answered, the device needs
    /// a reset.
    pub writable: Vec<Seg>,
}

/// Reads a request chain. `inout`: VIRTIO_SCSI_F_INOUT was negotiated.
pub fn parse(mem: &dyn GuestMem, segs: &[Seg], inout: bool) -> Result<Request, Rejected> {
    let split = Split::of(segs).map_err(|error| Rejected {
        error,
        writable: Vec::new(),
    })?;
    // Every answer needs the response header's room, in guest memory, first.
    if total(&split.writable) < RESP_HEADER as u64 || !inside(mem, &split.writable) {
        return Err(Rejected {
            error: ChainError::ShortResponse,
            writable: Vec::new(),
        });
    }
    let fail = |error| Rejected {
        error,
        writable: split.writable.clone(),
    };
    let data_in = total(&split.writable) - RESP_HEADER as u64;
    if data_in > MAX_DATA {
        return Err(fail(ChainError::TooLong));
    }
    let (head, data_out) = read_split(mem, &split.readable, REQ_HEADER).map_err(fail)?;
    if !inout && !data_out.is_empty() && data_in > 0 {
        return Err(fail(ChainError::Bidirectional));
    }
    let mut lun = [0u8; 8];
    lun.copy_from_slice(&head[..8]);
    let mut cdb = [0u8; CDB_SIZE];
    cdb.copy_from_slice(&head[19..19 + CDB_SIZE]);
    Ok(Request {
        lun: VirtioLun::parse(&lun),
        tag: u64::from_le_bytes(head[8..16].try_into().expect("8 bytes")),
        task_attr: head[16],
        cdb,
        data_out,
        data_in_len: data_in as u32,
        writable: split.writable,
    })
}

/// A response header (§5.6.6.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Response {
    pub residual: u32,
    pub status_qualifier: u16,
    pub status: u8,
    pub response: u8,
    pub sense: Vec<u8>,
}

impl Response {
    /// Only a transport code (BAD_TARGET, FAILURE, ABORTED, RESET…), no SCSI status.
    pub fn code(response: u8) -> Self {
        Self {
            response,
            ..Self::default()
        }
    }

    pub fn encode(&self) -> [u8; RESP_HEADER] {
        let mut b = [0u8; RESP_HEADER];
        let sense_len = self.sense.len().min(SENSE_SIZE);
        b[0..4].copy_from_slice(&(sense_len as u32).to_le_bytes());
        b[4..8].copy_from_slice(&self.residual.to_le_bytes());
        b[8..10].copy_from_slice(&self.status_qualifier.to_le_bytes());
        b[10] = self.status;
        b[11] = self.response;
        b[12..12 + sense_len].copy_from_slice(&self.sense[..sense_len]);
        b
    }
}

/// Writes a response and its data-in; returns the length for the used ring. Data-in
/// beyond the room the driver gave is cut, the residual says by how much (SAM-5
/// 5.4.3: the overflow is reported, not an error).
pub fn complete(
    mem: &dyn GuestMem,
    writable: &[Seg],
    mut resp: Response,
    data_in: &[u8],
) -> Result<u32, ChainError> {
    let room = total(writable).saturating_sub(RESP_HEADER as u64) as usize;
    let n = data_in.len().min(room);
    if resp.residual == 0 && resp.response == response::OK && n < room {
        resp.residual = (room - n) as u32;
    }
    write_all(mem, writable, &[&resp.encode(), &data_in[..n]])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::FlatMem;

    fn request_bytes(lun: [u8; 8], tag: u64, cdb: &[u8]) -> Vec<u8> {
        let mut v = lun.to_vec();
        v.extend(tag.to_le_bytes());
        v.extend([0, 0, 0]);
        let mut c = [0u8; CDB_SIZE];
        c[..cdb.len()].copy_from_slice(cdb);
        v.extend(c);
        v
    }

    #[test]
    fn a_read_request_and_its_response() {
        let mem = FlatMem::new(0x1000, 0x4000);
        let req = request_bytes(
            VirtioLun::encode(0, 1),
            77,
            &[0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0],
        );
        assert!(mem.write(0x1000, &req));
        // The header split over two segments; the response and 512 bytes of data-in.
        let segs = [
            Seg {
                addr: 0x1000,
                len: 20,
                write: false,
            },
            Seg {
                addr: 0x1014,
                len: (req.len() - 20) as u32,
                write: false,
            },
            Seg {
                addr: 0x2000,
                len: RESP_HEADER as u32,
                write: true,
            },
            Seg {
                addr: 0x3000,
                len: 512,
                write: true,
            },
        ];
        let r = parse(&mem, &segs, false).unwrap();
        assert_eq!(r.lun, VirtioLun::Lun { target: 0, lun: 1 });
        assert_eq!((r.tag, r.data_in_len, r.data_out.len()), (77, 512, 0));
        assert_eq!(r.cdb[0], 0x28);
        let data: Vec<u8> = (0..400u32).map(|i| i as u8).collect();
        let n = complete(&mem, &r.writable, Response::default(), &data).unwrap();
        assert_eq!(n, RESP_HEADER as u32 + 400);
        let mut hdr = [0u8; RESP_HEADER];
        assert!(mem.read(0x2000, &mut hdr));
        assert_eq!(
            u32::from_le_bytes(hdr[4..8].try_into().unwrap()),
            112,
            "residual"
        );
        assert_eq!((hdr[10], hdr[11]), (0, response::OK));
        let mut back = vec![0u8; 400];
        assert!(mem.read(0x3000, &mut back));
        assert_eq!(back, data);
    }

    #[test]
    fn data_out_after_the_header_in_the_same_segment() {
        let mem = FlatMem::new(0, 0x4000);
        let mut req = request_bytes(VirtioLun::encode(0, 0), 1, &[0x2a]);
        req.extend([0xab; 100]);
        assert!(mem.write(0, &req));
        let segs = [
            Seg {
                addr: 0,
                len: req.len() as u32,
                write: false,
            },
            Seg {
                addr: 0x2000,
                len: RESP_HEADER as u32,
                write: true,
            },
        ];
        let r = parse(&mem, &segs, false).unwrap();
        assert_eq!(r.data_out, vec![0xab; 100]);
        assert_eq!(r.data_in_len, 0);
    }

    #[test]
    fn bad_chains_are_rejected_never_read_out_of_bounds() {
        let mem = FlatMem::new(0, 0x1000);
        let resp = Seg {
            addr: 0x800,
            len: RESP_HEADER as u32,
            write: true,
        };
        // Too short a request header: FAILURE can be answered.
        let e = parse(
            &mem,
            &[
                Seg {
                    addr: 0,
                    len: 10,
                    write: false,
                },
                resp,
            ],
            false,
        )
        .unwrap_err();
        assert_eq!(e.error, ChainError::ShortRequest);
        assert_eq!(e.writable, vec![resp]);
        // Too short a response: nothing can be answered.
        let e = parse(
            &mem,
            &[
                Seg {
                    addr: 0,
                    len: REQ_HEADER as u32,
                    write: false,
                },
                Seg {
                    addr: 0x800,
                    len: 10,
                    write: true,
                },
            ],
            false,
        )
        .unwrap_err();
        assert_eq!((e.error, e.writable.len()), (ChainError::ShortResponse, 0));
        // Readable after writable.
        let e = parse(
            &mem,
            &[
                resp,
                Seg {
                    addr: 0,
                    len: REQ_HEADER as u32,
                    write: false,
                },
            ],
            false,
        )
        .unwrap_err();
        assert_eq!(e.error, ChainError::WrongOrder);
        // Outside guest memory, and an address that wraps.
        for addr in [0xff0, u64::MAX - 4] {
            let e = parse(
                &mem,
                &[
                    Seg {
                        addr,
                        len: REQ_HEADER as u32,
                        write: false,
                    },
                    resp,
                ],
                false,
            )
            .unwrap_err();
            assert_eq!(e.error, ChainError::OutsideMemory);
        }
        // Both directions without F_INOUT.
        let e = parse(
            &mem,
            &[
                Seg {
                    addr: 0,
                    len: REQ_HEADER as u32 + 8,
                    write: false,
                },
                Seg {
                    addr: 0x800,
                    len: RESP_HEADER as u32 + 8,
                    write: true,
                },
            ],
            false,
        )
        .unwrap_err();
        assert_eq!(e.error, ChainError::Bidirectional);
        // FAILURE written where it fits.
        let n = complete(&mem, &[resp], Response::code(response::FAILURE), &[]).unwrap();
        assert_eq!(n, RESP_HEADER as u32);
        let mut hdr = [0u8; RESP_HEADER];
        assert!(mem.read(0x800, &mut hdr));
        assert_eq!(hdr[11], response::FAILURE);
    }
}
