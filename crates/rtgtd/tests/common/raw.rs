//! A minimal raw iSCSI initiator for wire-robustness tests: a plain TcpStream, hand-built
//! BHS fields (RFC 7143 §11) on top of `rtgt_iscsi::pdu::Pdu`, no recovery, no cleverness.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use rtgt_iscsi::pdu::{op, pad4, Pdu, BHS_LEN};

pub const INITIATOR: &str = "iqn.2026-11.org.rtgt:raw-initiator";
/// Generous: a debug build on a loaded CI machine can be slow.
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// What one read attempt produced.
#[derive(Debug)]
pub enum Recv {
    Pdu(Pdu),
    /// No PDU arrived within the wait.
    Timeout,
    /// The target closed (or reset) the connection.
    Closed,
}

pub struct RawConn {
    pub stream: TcpStream,
    pub header_digest: bool,
    pub data_digest: bool,
    pub isid: [u8; 6],
    pub tsih: u16,
    pub itt: u32,
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
    /// PDUs for other tasks met while waiting for one (see `common::scsi`).
    pub stray: Vec<Pdu>,
}

/// Login Request flags byte (RFC 7143 §11.12): T, C, CSG, NSG.
pub fn login_flags(transit: bool, csg: u8, nsg: u8) -> u8 {
    (if transit { 0x80 } else { 0 }) | (csg & 3) << 2 | (nsg & 3)
}

/// Encodes text keys as `key=value\0` pairs.
pub fn keys_data(keys: &[(&str, &str)]) -> Vec<u8> {
    let mut v = Vec::new();
    for (k, val) in keys {
        v.extend_from_slice(k.as_bytes());
        v.push(b'=');
        v.extend_from_slice(val.as_bytes());
        v.push(0);
    }
    v
}

/// Decodes a text data segment into (key, value) pairs.
pub fn parse_keys(data: &[u8]) -> Vec<(String, String)> {
    data.split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| {
            let s = String::from_utf8_lossy(s);
            match s.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (s.to_string(), String::new()),
            }
        })
        .collect()
}

fn next_isid() -> [u8; 6] {
    static N: AtomicU16 = AtomicU16::new(1);
    let n = N.fetch_add(1, Ordering::SeqCst).to_be_bytes();
    let pid = (std::process::id() as u16).to_be_bytes();
    // Type 10b ("random") ISID, RFC 7143 §11.12.5.
    [0x80, 0x52, pid[0], pid[1], n[0], n[1]]
}

impl RawConn {
    pub fn connect(port: u16) -> RawConn {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to rtgtd");
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        RawConn {
            stream,
            header_digest: false,
            data_digest: false,
            isid: next_isid(),
            tsih: 0,
            itt: 0x100,
            cmd_sn: 1,
            exp_stat_sn: 0,
            stray: Vec::new(),
        }
    }

    pub fn next_itt(&mut self) -> u32 {
        self.itt = self.itt.wrapping_add(1);
        self.itt
    }

    pub fn send_bytes(&mut self, b: &[u8]) {
        self.stream.write_all(b).expect("write to rtgtd");
    }

    /// Encodes with the negotiated digests and sends.
    pub fn send(&mut self, pdu: &Pdu) {
        let b = pdu.encode(self.header_digest, self.data_digest);
        self.send_bytes(&b);
    }

    pub fn close(self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    fn read_full(&mut self, buf: &mut [u8]) -> Result<(), Recv> {
        let mut got = 0;
        while got < buf.len() {
            match self.stream.read(&mut buf[got..]) {
                Ok(0) => return Err(Recv::Closed),
                Ok(n) => got += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    if got == 0 {
                        return Err(Recv::Timeout);
                    }
                    panic!("target stalled in the middle of a PDU");
                }
                Err(_) => return Err(Recv::Closed),
            }
        }
        Ok(())
    }

    /// Reads one PDU (digests are checked by the caller's expectations, not here).
    pub fn recv_raw(&mut self, wait: Duration) -> Recv {
        self.stream.set_read_timeout(Some(wait)).unwrap();
        let mut bhs = [0u8; BHS_LEN];
        if let Err(r) = self.read_full(&mut bhs) {
            return r;
        }
        self.stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let mut pdu = Pdu {
            bhs,
            ..Pdu::default()
        };
        let mut ahs = vec![0u8; pdu.total_ahs_len()];
        if let Err(r) = self.read_full(&mut ahs) {
            return r;
        }
        pdu.ahs = ahs;
        if self.header_digest {
            let mut d = [0u8; 4];
            if let Err(r) = self.read_full(&mut d) {
                return r;
            }
        }
        let n = pdu.data_segment_len();
        if n > 0 {
            let mut data = vec![0u8; pad4(n)];
            if let Err(r) = self.read_full(&mut data) {
                return r;
            }
            data.truncate(n);
            pdu.data = data;
            if self.data_digest {
                let mut d = [0u8; 4];
                if let Err(r) = self.read_full(&mut d) {
                    return r;
                }
            }
        }
        Recv::Pdu(pdu)
    }

    /// Reads the next PDU that isn't a target-initiated NOP-In, answering the target's
    /// pings (RFC 7143 §11.19) so the connection isn't timed out under us.
    pub fn recv_wait(&mut self, wait: Duration) -> Recv {
        loop {
            match self.recv_raw(wait) {
                Recv::Pdu(p) if p.opcode() == op::NOP_IN && p.itt() == 0xffff_ffff => {
                    self.exp_stat_sn = p.stat_sn().wrapping_add(1);
                    if p.ttt() != 0xffff_ffff {
                        let mut r = Pdu::new(op::NOP_OUT);
                        r.set_immediate(true);
                        r.set_flags(0x80);
                        r.set_lun_raw(p.lun_raw());
                        r.set_itt(0xffff_ffff);
                        r.set_ttt(p.ttt());
                        r.set_u32(24, self.cmd_sn);
                        r.set_u32(28, self.exp_stat_sn);
                        self.send(&r);
                    }
                }
                other => return other,
            }
        }
    }

    /// The next PDU; fails the test if none arrives or the connection closes.
    pub fn recv(&mut self) -> Pdu {
        match self.recv_wait(IO_TIMEOUT) {
            Recv::Pdu(p) => p,
            other => panic!("expected a PDU from the target, got {other:?}"),
        }
    }

    /// One Login Request (always immediate, RFC 7143 §11.12) with `data` as its text.
    pub fn login_pdu(&mut self, flags: u8, data: Vec<u8>) -> Pdu {
        let mut p = Pdu::new(op::LOGIN_REQ);
        p.set_immediate(true);
        p.set_flags(flags);
        p.bhs[2] = 0; // Version-max
        p.bhs[3] = 0; // Version-min
        p.bhs[8..14].copy_from_slice(&self.isid);
        p.set_u16(14, self.tsih);
        let itt = self.next_itt();
        p.set_itt(itt);
        p.set_u16(20, 1); // CID
        p.set_u32(24, self.cmd_sn);
        p.set_u32(28, self.exp_stat_sn);
        p.data = data;
        p
    }

    /// Sends one Login Request and returns the Login Response.
    pub fn login_step(&mut self, flags: u8, data: Vec<u8>) -> Pdu {
        let p = self.login_pdu(flags, data);
        self.send(&p);
        let r = self.recv();
        assert_eq!(
            r.opcode(),
            op::LOGIN_RSP,
            "expected a Login Response, got {r:?}"
        );
        if r.bhs[36] == 0 {
            self.exp_stat_sn = r.stat_sn().wrapping_add(1);
            self.tsih = r.u16_at(14);
        }
        r
    }

    /// Logs in from the operational stage straight to full feature phase (no security
    /// stage: CSG=1, NSG=3, T=1) with the given keys, continuing with empty requests while
    /// the target holds back the transit. Returns all Login Responses' keys.
    pub fn login(&mut self, keys: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut all = Vec::new();
        let mut data = keys_data(keys);
        for _ in 0..8 {
            let r = self.login_step(login_flags(true, 1, 3), std::mem::take(&mut data));
            assert_eq!(
                r.u16_at(36),
                0,
                "login rejected with status {:#06x}; keys {:?}",
                r.u16_at(36),
                parse_keys(&r.data)
            );
            all.extend(parse_keys(&r.data));
            let transit = r.flags() & 0x80 != 0;
            if transit && r.flags() & 3 == 3 {
                self.cmd_sn = r.exp_cmd_sn();
                let get = |k: &str| {
                    all.iter()
                        .rev()
                        .find(|(kk, _)| kk == k)
                        .map(|(_, v)| v.clone())
                };
                self.header_digest = get("HeaderDigest").as_deref() == Some("CRC32C");
                self.data_digest = get("DataDigest").as_deref() == Some("CRC32C");
                return all;
            }
        }
        panic!("the target never moved to full feature phase: {all:?}");
    }

    /// A normal session to `target` with no digests.
    pub fn session(port: u16, target: &str) -> RawConn {
        Self::session_with(port, target, &[])
    }

    /// A normal session to `target` with the given extra keys (or overrides).
    pub fn session_with(port: u16, target: &str, extra: &[(&str, &str)]) -> RawConn {
        let mut c = RawConn::connect(port);
        let keys = normal_keys(target, extra);
        c.login(&keys);
        c
    }

    /// A SCSI Command PDU for `lun` with a 6..16-byte CDB, no data, SIMPLE attribute.
    pub fn scsi_cmd(&mut self, lun: u8, cdb: &[u8], read_len: u32, cmd_sn: u32) -> Pdu {
        let mut p = Pdu::new(op::SCSI_CMD);
        let mut flags = 0x80 | 0x01; // F, ATTR=SIMPLE
        if read_len > 0 {
            flags |= 0x40; // R
        }
        p.set_flags(flags);
        p.set_lun_raw([0, lun, 0, 0, 0, 0, 0, 0]);
        let itt = self.next_itt();
        p.set_itt(itt);
        p.set_u32(20, read_len);
        p.set_u32(24, cmd_sn);
        p.set_u32(28, self.exp_stat_sn);
        p.bhs[32..32 + cdb.len()].copy_from_slice(cdb);
        p
    }

    /// Sends TEST UNIT READY to `lun` in the CmdSN window and returns the SCSI Response
    /// (GOOD, or CHECK CONDITION for a pending unit attention: either proves the session
    /// works).
    pub fn test_unit_ready(&mut self, lun: u8) -> Pdu {
        let sn = self.cmd_sn;
        let p = self.scsi_cmd(lun, &[0; 6], 0, sn);
        self.cmd_sn = self.cmd_sn.wrapping_add(1);
        self.send(&p);
        let r = self.recv();
        assert_eq!(
            r.opcode(),
            op::SCSI_RSP,
            "expected a SCSI Response to TUR, got {r:?}"
        );
        assert_eq!(r.itt(), p.itt(), "SCSI Response for another task");
        self.exp_stat_sn = r.stat_sn().wrapping_add(1);
        r
    }

    /// A NOP-Out ping (immediate, ITT set, TTT reserved) carrying `data`.
    pub fn nop_out(&mut self, data: &[u8]) -> Pdu {
        let mut p = Pdu::new(op::NOP_OUT);
        p.set_immediate(true);
        p.set_flags(0x80);
        let itt = self.next_itt();
        p.set_itt(itt);
        p.set_ttt(0xffff_ffff);
        p.set_u32(24, self.cmd_sn);
        p.set_u32(28, self.exp_stat_sn);
        p.data = data.to_vec();
        p
    }

    /// Pings the target and checks the NOP-In echoes the ITT and data.
    pub fn ping(&mut self, data: &[u8]) {
        let p = self.nop_out(data);
        self.send(&p);
        let r = self.recv();
        assert_eq!(r.opcode(), op::NOP_IN, "expected a NOP-In, got {r:?}");
        assert_eq!(r.itt(), p.itt());
        assert_eq!(r.data, data, "NOP-In must echo the ping data");
        self.exp_stat_sn = r.stat_sn().wrapping_add(1);
    }

    /// Proves the session is alive: a ping and a TEST UNIT READY to LUN 1.
    pub fn assert_works(&mut self) {
        self.ping(b"still alive?");
        self.test_unit_ready(1);
    }
}

/// The keys of a normal-session login without digests, with `extra` appended (a key in
/// `extra` replaces the default of the same name).
pub fn normal_keys<'a>(target: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut keys = vec![
        ("InitiatorName", INITIATOR),
        ("TargetName", target),
        ("SessionType", "Normal"),
        ("HeaderDigest", "None"),
        ("DataDigest", "None"),
    ];
    for (k, v) in extra {
        if let Some(e) = keys.iter_mut().find(|(kk, _)| kk == k) {
            e.1 = v;
        } else {
            keys.push((k, v));
        }
    }
    keys
}
