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

/// The initiator's side of a CHAP login (RFC 7143 §12.1.3).
pub struct Chap<'a> {
    pub user: &'a str,
    pub secret: &'a [u8],
    /// CHAP_A offer, e.g. "7" or "8,7,5".
    pub algorithms: &'a str,
    /// Mutual CHAP: the target's expected name and secret.
    pub target: Option<(&'a str, &'a [u8])>,
}

impl RawConn {
    /// Logs in through the security stage with CHAP, then the operational stage with
    /// `keys` (which must hold InitiatorName, and TargetName or SessionType=Discovery).
    /// `Err(status)` when a Login Response carries a non-zero status; panics if the
    /// target's mutual answer is wrong.
    pub fn chap_login(&mut self, keys: &[(&str, &str)], chap: &Chap) -> Result<(), u16> {
        use rtgt_iscsi::chap::{parse_chap_i, ChapAlgorithm};
        use rtgt_iscsi::keys::{encode_hex, parse_binary};
        let sec = |t: bool| login_flags(t, 0, 1);
        let get = |r: &Pdu, k: &str| {
            parse_keys(&r.data)
                .into_iter()
                .find(|(kk, _)| kk == k)
                .map(|(_, v)| v)
        };
        let mut first: Vec<(&str, &str)> = keys
            .iter()
            .copied()
            .filter(|(k, _)| matches!(*k, "InitiatorName" | "TargetName" | "SessionType"))
            .collect();
        first.push(("AuthMethod", "CHAP"));
        let r = self.login_step(sec(false), keys_data(&first));
        if r.u16_at(36) != 0 {
            return Err(r.u16_at(36));
        }
        assert_eq!(get(&r, "AuthMethod").as_deref(), Some("CHAP"), "{r:?}");
        let r = self.login_step(sec(false), keys_data(&[("CHAP_A", chap.algorithms)]));
        if r.u16_at(36) != 0 {
            return Err(r.u16_at(36));
        }
        let alg: u32 = get(&r, "CHAP_A").expect("CHAP_A").parse().unwrap();
        let alg = ChapAlgorithm::from_code(alg).expect("known CHAP_A");
        let id = parse_chap_i(&get(&r, "CHAP_I").expect("CHAP_I")).unwrap();
        let c = parse_binary(&get(&r, "CHAP_C").expect("CHAP_C")).unwrap();
        let resp = encode_hex(&alg.response(id, chap.secret, &c));
        let my_c: Vec<u8> = (0..alg.digest_len() as u8).map(|i| i ^ 0x5c).collect();
        let my_c_hex = encode_hex(&my_c);
        let mut ans = vec![("CHAP_N", chap.user), ("CHAP_R", resp.as_str())];
        if chap.target.is_some() {
            ans.push(("CHAP_I", "0x2a"));
            ans.push(("CHAP_C", my_c_hex.as_str()));
        }
        let r = self.login_step(sec(true), keys_data(&ans));
        if r.u16_at(36) != 0 {
            return Err(r.u16_at(36));
        }
        if let Some((tuser, tsecret)) = chap.target {
            assert_eq!(get(&r, "CHAP_N").as_deref(), Some(tuser));
            let r2 = parse_binary(&get(&r, "CHAP_R").expect("mutual CHAP_R")).unwrap();
            assert_eq!(
                r2,
                alg.response(42, tsecret, &my_c),
                "the target's CHAP_R is wrong"
            );
        }
        assert!(r.flags() & 0x80 != 0, "no transit after CHAP: {r:?}");
        // Operational stage.
        let mut data = keys_data(keys);
        for _ in 0..8 {
            let r = self.login_step(login_flags(true, 1, 3), std::mem::take(&mut data));
            if r.u16_at(36) != 0 {
                return Err(r.u16_at(36));
            }
            if r.flags() & 0x80 != 0 && r.flags() & 3 == 3 {
                self.cmd_sn = r.exp_cmd_sn();
                return Ok(());
            }
        }
        panic!("the target never moved to full feature phase");
    }

    /// Like [`login`](Self::login) but returns the status instead of panicking.
    pub fn try_login(&mut self, keys: &[(&str, &str)]) -> Result<(), u16> {
        let mut data = keys_data(keys);
        for _ in 0..8 {
            let r = self.login_step(login_flags(true, 1, 3), std::mem::take(&mut data));
            if r.u16_at(36) != 0 {
                return Err(r.u16_at(36));
            }
            if r.flags() & 0x80 != 0 && r.flags() & 3 == 3 {
                self.cmd_sn = r.exp_cmd_sn();
                return Ok(());
            }
        }
        panic!("the target never moved to full feature phase");
    }

    /// Connects from a chosen local address (e.g. 127.0.0.2, to test address ACLs).
    pub fn connect_from(local: &str, port: u16) -> RawConn {
        let sock = socket2_connect(local, port);
        RawConn::from_stream(sock)
    }

    /// A raw initiator on an already connected stream.
    pub fn from_stream(stream: TcpStream) -> RawConn {
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

    /// A text exchange: SendTargets=All on a discovery session; returns the keys.
    pub fn send_targets(&mut self) -> Vec<(String, String)> {
        let mut p = Pdu::new(op::TEXT_REQ);
        p.set_immediate(true);
        p.set_flags(0x80);
        let itt = self.next_itt();
        p.set_itt(itt);
        p.set_u32(20, 0xffff_ffff);
        p.set_u32(24, self.cmd_sn);
        p.set_u32(28, self.exp_stat_sn);
        p.data = keys_data(&[("SendTargets", "All")]);
        self.send(&p);
        let r = self.recv();
        assert_eq!(r.opcode(), op::TEXT_RSP, "{r:?}");
        self.exp_stat_sn = r.stat_sn().wrapping_add(1);
        parse_keys(&r.data)
    }
}

/// A TCP connection to 127.0.0.1:`port` from local address `local` (port 0).
fn socket2_connect(local: &str, port: u16) -> TcpStream {
    use std::os::fd::FromRawFd;
    let local: std::net::Ipv4Addr = local.parse().unwrap();
    // SAFETY: plain socket/bind/connect on a fresh fd that the TcpStream then owns.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0);
        let mut sa: libc::sockaddr_in = std::mem::zeroed();
        sa.sin_family = libc::AF_INET as libc::sa_family_t;
        sa.sin_addr.s_addr = u32::from(local).to_be();
        let r = libc::bind(
            fd,
            (&sa as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        assert_eq!(r, 0, "bind {local}: {}", std::io::Error::last_os_error());
        sa.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
        sa.sin_port = port.to_be();
        let r = libc::connect(
            fd,
            (&sa as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        assert_eq!(r, 0, "connect: {}", std::io::Error::last_os_error());
        TcpStream::from_raw_fd(fd)
    }
}
