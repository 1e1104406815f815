//! SCSI commands over the raw initiator: a command with optional immediate Data-Out,
//! its Data-In and status collected, unit attentions cleared on request, and task
//! management requests. Enough to drive reservations, ALUA and TMFs from tests.

use std::time::Duration;

use rtgt_iscsi::pdu::{op, Pdu};

use super::raw::{RawConn, Recv};

/// What a command ended with.
#[derive(Debug, Clone, Default)]
pub struct Reply {
    pub status: u8,
    pub data: Vec<u8>,
    pub sense: Vec<u8>,
}

impl Reply {
    /// (sense key, ASC, ASCQ) of fixed or descriptor sense data.
    pub fn sense_code(&self) -> (u8, u8, u8) {
        let s = &self.sense;
        if s.is_empty() {
            return (0, 0, 0);
        }
        if s[0] & 0x7f >= 0x72 {
            (s[1] & 0x0f, s[2], s[3])
        } else {
            (s[2] & 0x0f, s[12], s[13])
        }
    }
}

pub const GOOD: u8 = 0x00;
pub const CHECK_CONDITION: u8 = 0x02;
pub const RESERVATION_CONFLICT: u8 = 0x18;

impl RawConn {
    /// A SCSI Command PDU with immediate Data-Out (F=1) or an expected Data-In length.
    pub fn command_pdu(&mut self, lun: u8, cdb: &[u8], read_len: u32, data: &[u8]) -> Pdu {
        let sn = self.cmd_sn;
        self.cmd_sn = self.cmd_sn.wrapping_add(1);
        let mut p = self.scsi_cmd(lun, &[0; 6], read_len, sn);
        p.bhs[32..48].fill(0);
        p.bhs[32..32 + cdb.len()].copy_from_slice(cdb);
        if !data.is_empty() {
            p.set_flags(p.flags() | 0x20); // W
            p.set_u32(20, data.len() as u32);
            p.data = data.to_vec();
        }
        p
    }

    /// Collects the Data-In and status of `itt`; panics on anything else but NOP-Ins.
    pub fn reply_for(&mut self, itt: u32) -> Reply {
        let mut r = Reply::default();
        loop {
            let p = self.recv();
            assert_eq!(p.itt(), itt, "a PDU for another task: {p:?}");
            match p.opcode() {
                op::DATA_IN => {
                    r.data.extend_from_slice(&p.data);
                    if p.flags() & 0x01 != 0 {
                        r.status = p.bhs[3];
                        self.exp_stat_sn = p.stat_sn().wrapping_add(1);
                        return r;
                    }
                }
                op::SCSI_RSP => {
                    r.status = p.bhs[3];
                    if p.data.len() >= 2 {
                        let n = u16::from_be_bytes([p.data[0], p.data[1]]) as usize;
                        r.sense = p.data[2..2 + n.min(p.data.len() - 2)].to_vec();
                    }
                    self.exp_stat_sn = p.stat_sn().wrapping_add(1);
                    return r;
                }
                other => panic!("unexpected opcode {other:#04x} while waiting for {itt:#x}"),
            }
        }
    }

    /// Runs one command and returns how it ended.
    pub fn exec(&mut self, lun: u8, cdb: &[u8], read_len: u32, data: &[u8]) -> Reply {
        let p = self.command_pdu(lun, cdb, read_len, data);
        self.send(&p);
        self.reply_for(p.itt())
    }

    /// As [`exec`](Self::exec), first reporting (and so clearing) pending unit
    /// attentions; returns them as (ASC, ASCQ) with the reply.
    pub fn exec_after_uas(
        &mut self,
        lun: u8,
        cdb: &[u8],
        read_len: u32,
        data: &[u8],
    ) -> (Vec<(u8, u8)>, Reply) {
        let mut uas = Vec::new();
        for _ in 0..16 {
            let r = self.exec(lun, cdb, read_len, data);
            let (k, asc, ascq) = r.sense_code();
            if r.status == CHECK_CONDITION && k == 0x06 {
                uas.push((asc, ascq));
                continue;
            }
            return (uas, r);
        }
        panic!("unit attentions never end: {uas:?}");
    }

    /// Sends a task management request (immediate) and returns the response code.
    pub fn tmf(&mut self, function: u8, lun: u8, rtt: u32, ref_cmd_sn: u32) -> u8 {
        let p = self.tmf_pdu(function, lun, rtt, ref_cmd_sn);
        self.send(&p);
        let r = self.recv_skipping(p.itt());
        assert_eq!(
            r.opcode(),
            op::TMF_RSP,
            "expected a TMF response, got {r:?}"
        );
        self.exp_stat_sn = r.stat_sn().wrapping_add(1);
        r.bhs[2]
    }

    pub fn tmf_pdu(&mut self, function: u8, lun: u8, rtt: u32, ref_cmd_sn: u32) -> Pdu {
        let mut p = Pdu::new(op::TMF_REQ);
        p.set_immediate(true);
        p.set_flags(0x80 | function);
        p.set_lun_raw([0, lun, 0, 0, 0, 0, 0, 0]);
        let itt = self.next_itt();
        p.set_itt(itt);
        p.set_u32(20, rtt);
        p.set_u32(24, self.cmd_sn);
        p.set_u32(28, self.exp_stat_sn);
        p.set_u32(32, ref_cmd_sn);
        p
    }

    /// The next PDU for `itt`; PDUs for other tasks are collected into `others`.
    pub fn recv_skipping(&mut self, itt: u32) -> Pdu {
        loop {
            let p = self.recv();
            if p.itt() == itt {
                return p;
            }
            self.stray.push(p);
        }
    }

    /// Whatever arrives within `wait` (answering pings), until silence.
    pub fn drain(&mut self, wait: Duration) -> Vec<Pdu> {
        let mut v = std::mem::take(&mut self.stray);
        while let Recv::Pdu(p) = self.recv_wait(wait) {
            v.push(p);
        }
        v
    }
}

/// PERSISTENT RESERVE OUT with the basic 24-byte parameter list (SPC-4 6.17.3).
pub fn prout(sa: u8, rtype: u8, key: u64, sa_key: u64, flags: u8) -> ([u8; 10], Vec<u8>) {
    let mut p = vec![0u8; 24];
    p[..8].copy_from_slice(&key.to_be_bytes());
    p[8..16].copy_from_slice(&sa_key.to_be_bytes());
    p[20] = flags;
    ([0x5f, sa, rtype, 0, 0, 0, 0, 0, p.len() as u8, 0], p)
}

/// PERSISTENT RESERVE IN with a 4 KiB allocation length.
pub fn prin(sa: u8) -> [u8; 10] {
    [0x5e, sa, 0, 0, 0, 0, 0, 0x10, 0x00, 0]
}

pub fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

pub fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}

/// READ (10) / WRITE (10) of `blocks` 512-byte blocks at `lba`.
pub fn read10(lba: u32, blocks: u16) -> [u8; 10] {
    let l = lba.to_be_bytes();
    let n = blocks.to_be_bytes();
    [0x28, 0, l[0], l[1], l[2], l[3], 0, n[0], n[1], 0]
}

pub fn write10(lba: u32, blocks: u16) -> [u8; 10] {
    let mut c = read10(lba, blocks);
    c[0] = 0x2a;
    c
}

/// (sense key, ASC, ASCQ) of a reply that must be CHECK CONDITION.
pub fn check_sense(r: &Reply) -> (u8, u8, u8) {
    assert_eq!(r.status, CHECK_CONDITION, "expected CHECK CONDITION: {r:?}");
    r.sense_code()
}

/// Asserts GOOD status, naming the command.
pub fn good(r: &Reply, what: &str) {
    assert_eq!(r.status, GOOD, "{what}: {r:?}");
}

/// MOVE MEDIUM (SMC-3 6.6) on LUN 1 from element `src` to `dst`.
pub fn move_medium(c: &mut RawConn, src: u16, dst: u16) -> Reply {
    let (s, d) = (src.to_be_bytes(), dst.to_be_bytes());
    c.exec(
        1,
        &[0xa5, 0, 0, 0, s[0], s[1], d[0], d[1], 0, 0, 0, 0],
        0,
        &[],
    )
}
