//! The socket floor: the least work any iSCSI target must do per 4 KiB READ, as a
//! process whose CPU time `bench/bench.py` measures next to rtgtd's and tgtd's under the
//! same initiator (iscsi-perf at queue depth 32).
//!
//! Per READ it takes the 48-byte SCSI Command PDU off a loopback TCP connection and
//! answers with one `writev` entry pair: a 48-byte Data-In header carrying the status
//! (RFC 7143 11.7, S bit: "phase collapse", no separate SCSI Response) and 4096 bytes of
//! data. It batches: every whole request found in one `read` is answered by one `writev`.
//! One blocking thread per connection, no event loop, no SCSI core, no store (the data is
//! a static zeroed buffer), no digests. Just enough of the login (RFC 7143 6, 13) and of
//! INQUIRY / READ CAPACITY / REPORT LUNS that iscsi-perf and libiscsi accept the "disk":
//! 1 GiB of 512-byte blocks, at any LUN. Other commands answer GOOD without data.
//!
//! Writes whose data all comes as immediate data (a 4 KiB WRITE under libiscsi's
//! ImmediateData=Yes, FirstBurstLength 256 KiB) are read off the connection and answered
//! GOOD: the data is discarded where it was received, never copied. That is the write
//! floor: what any target must do per WRITE before it stores anything, so an initiator's
//! own write ceiling can be told from the target's. Writes that need an R2T (more than
//! the first burst) are not supported.
//!
//! `rtgt-floor PORT` listens on 127.0.0.1:PORT until killed.

use std::io::{IoSlice, Read, Write};
use std::net::{TcpListener, TcpStream};

/// Basic Header Segment length (RFC 7143 11.2.1).
const BHS: usize = 48;
/// The largest read answered: bigger ones are split into Data-In PDUs of the initiator's
/// MaxRecvDataSegmentLength, all pointing into this zeroed buffer.
static ZEROES: [u8; 1 << 20] = [0; 1 << 20];
const BLOCK: u64 = 512;
const BLOCKS: u64 = (1 << 30) / BLOCK;
/// How far ahead of ExpCmdSN the initiator may number its commands (MaxCmdSN).
const WINDOW: u32 = 128;
/// The data segment length we declare we can receive (login key).
const OUR_MRDSL: u32 = 262_144;

fn main() {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| {
            eprintln!("usage: rtgt-floor PORT");
            std::process::exit(2)
        });
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap_or_else(|e| {
        eprintln!("rtgt-floor: 127.0.0.1:{port}: {e}");
        std::process::exit(1)
    });
    for conn in listener.incoming().flatten() {
        std::thread::spawn(move || {
            let _ = conn.set_nodelay(true);
            if let Err(e) = Connection::new(conn).serve() {
                eprintln!("rtgt-floor: connection ended: {e}");
            }
        });
    }
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// What one response carries after its header: nothing, bytes of its own (login keys,
/// INQUIRY data, a NOP-In's echo), or a slice of the zeroed buffer.
enum Data {
    None,
    Owned(Vec<u8>),
    Zeroes(usize),
}

struct Connection {
    sock: TcpStream,
    stat_sn: u32,
    exp_cmd_sn: u32,
    /// The initiator's MaxRecvDataSegmentLength (RFC 7143 13.12; 8192 until declared).
    their_mrdsl: usize,
    /// This turn's responses: headers, and what follows each.
    headers: Vec<[u8; BHS]>,
    data: Vec<Data>,
}

impl Connection {
    fn new(sock: TcpStream) -> Self {
        Self {
            sock,
            stat_sn: 1,
            exp_cmd_sn: 0,
            their_mrdsl: 8192,
            headers: Vec::with_capacity(256),
            data: Vec::with_capacity(256),
        }
    }

    fn serve(&mut self) -> std::io::Result<()> {
        let mut buf = vec![0u8; 1 << 20];
        let mut have = 0;
        loop {
            let n = self.sock.read(&mut buf[have..])?;
            if n == 0 {
                return Ok(());
            }
            have += n;
            // Every whole PDU read so far; a partial one stays for the next read.
            let mut at = 0;
            while have - at >= BHS {
                let h = &buf[at..at + BHS];
                let ahs = h[4] as usize * 4;
                let dlen = (be32(&h[4..8]) & 0x00ff_ffff) as usize;
                let total = BHS + ahs + dlen.div_ceil(4) * 4;
                if have - at < total {
                    break;
                }
                let mut bhs = [0u8; BHS];
                bhs.copy_from_slice(h);
                // A data segment is copied only when there is one: a READ has none, so
                // the read path allocates nothing.
                let seg = if dlen > 0 && h[0] & 0x3f != 0x01 {
                    buf[at + BHS + ahs..at + BHS + ahs + dlen].to_vec()
                } else {
                    Vec::new()
                };
                if !self.pdu(&bhs, seg) {
                    self.flush()?;
                    return Ok(());
                }
                at += total;
            }
            buf.copy_within(at..have, 0);
            have -= at;
            if have == buf.len() {
                return Err(std::io::Error::other("PDU larger than the receive buffer"));
            }
            self.flush()?;
        }
    }

    /// One `writev` (or a few, above IOV_MAX) for every response of this turn.
    fn flush(&mut self) -> std::io::Result<()> {
        let mut iov: Vec<IoSlice> = Vec::with_capacity(self.headers.len() * 3);
        const PAD: [u8; 4] = [0; 4];
        for (h, d) in self.headers.iter().zip(&self.data) {
            iov.push(IoSlice::new(h));
            let bytes: &[u8] = match d {
                Data::None => &[],
                Data::Owned(v) => v,
                Data::Zeroes(n) => &ZEROES[..*n],
            };
            if !bytes.is_empty() {
                iov.push(IoSlice::new(bytes));
                let pad = (4 - bytes.len() % 4) % 4;
                if pad > 0 {
                    iov.push(IoSlice::new(&PAD[..pad]));
                }
            }
        }
        let mut rest = &mut iov[..];
        while !rest.is_empty() {
            let n = self.sock.write_vectored(&rest[..rest.len().min(1024)])?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            IoSlice::advance_slices(&mut rest, n);
        }
        self.headers.clear();
        self.data.clear();
        Ok(())
    }

    /// A response header with the sequence numbers every target-to-initiator PDU
    /// carries (RFC 7143 11.7.x: StatSN, ExpCmdSN, MaxCmdSN at bytes 24..36).
    fn respond(&mut self, opcode: u8, flags: u8, itt: &[u8], status: bool, data: Data) {
        let mut h = [0u8; BHS];
        h[0] = opcode;
        h[1] = flags;
        let len = match &data {
            Data::None => 0,
            Data::Owned(v) => v.len(),
            Data::Zeroes(n) => *n,
        };
        h[5..8].copy_from_slice(&(len as u32).to_be_bytes()[1..]);
        h[16..20].copy_from_slice(itt);
        if status {
            h[24..28].copy_from_slice(&self.stat_sn.to_be_bytes());
            self.stat_sn = self.stat_sn.wrapping_add(1);
        }
        h[28..32].copy_from_slice(&self.exp_cmd_sn.to_be_bytes());
        h[32..36].copy_from_slice(&self.exp_cmd_sn.wrapping_add(WINDOW).to_be_bytes());
        self.headers.push(h);
        self.data.push(data);
    }

    /// Handles one PDU; false ends the connection (after a Logout Response).
    fn pdu(&mut self, h: &[u8; BHS], seg: Vec<u8>) -> bool {
        let immediate = h[0] & 0x40 != 0;
        let opcode = h[0] & 0x3f;
        if opcode != 0x05 && !immediate {
            // CmdSN of non-immediate commands advances ExpCmdSN (RFC 7143 4.2.2.1).
            let cmd_sn = be32(&h[24..28]);
            if cmd_sn.wrapping_sub(self.exp_cmd_sn) as i32 >= 0 {
                self.exp_cmd_sn = cmd_sn.wrapping_add(1);
            }
        }
        let itt = &h[16..20];
        match opcode {
            0x01 => self.scsi(h),
            0x03 => self.login(h, &seg),
            0x00 if be32(itt) != 0xffff_ffff => {
                // NOP-Out asking for an answer: NOP-In echoing its data (11.19).
                let mut nop = [0u8; BHS];
                nop.copy_from_slice(h);
                let data = if seg.is_empty() {
                    Data::None
                } else {
                    Data::Owned(seg)
                };
                self.respond(0x20, 0x80, &nop[16..20], true, data);
                let last = self.headers.len() - 1;
                self.headers[last][20..24].fill(0xff);
            }
            0x06 => {
                let mut itt4 = [0u8; 4];
                itt4.copy_from_slice(itt);
                self.respond(0x26, 0x80, &itt4, true, Data::None);
                return false;
            }
            _ => {}
        }
        true
    }

    /// Login (RFC 7143 6.2, 11.12-11.13): every stage accepted at once; the keys
    /// answered with None for digests and authentication, our own receive limit, and the
    /// initiator's values for the rest (a legal result for every negotiated key).
    fn login(&mut self, h: &[u8; BHS], seg: &[u8]) {
        let csg = (h[1] >> 2) & 3;
        let mut keys = String::new();
        for kv in seg.split(|&b| b == 0).filter(|kv| !kv.is_empty()) {
            let kv = String::from_utf8_lossy(kv);
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            match k {
                "InitiatorName" | "InitiatorAlias" | "TargetName" | "SessionType" => {}
                "MaxRecvDataSegmentLength" => {
                    self.their_mrdsl = v.parse().unwrap_or(8192);
                }
                "AuthMethod" | "HeaderDigest" | "DataDigest" => {
                    keys.push_str(&format!("{k}=None\0"));
                }
                _ => {
                    let first = v.split(',').next().unwrap_or(v);
                    keys.push_str(&format!("{k}={first}\0"));
                }
            }
        }
        if csg == 0 {
            keys.push_str("TargetPortalGroupTag=1\0");
        } else {
            keys.push_str(&format!("MaxRecvDataSegmentLength={OUR_MRDSL}\0"));
        }
        // The Login Response mirrors T, CSG and NSG; ISID, and a TSIH once given.
        let mut itt = [0u8; 4];
        itt.copy_from_slice(&h[16..20]);
        self.stat_sn = be32(&h[28..32]).max(self.stat_sn);
        self.respond(
            0x23,
            h[1] & 0x8f,
            &itt,
            true,
            Data::Owned(keys.into_bytes()),
        );
        let r = self.headers.last_mut().expect("just pushed");
        r[8..14].copy_from_slice(&h[8..14]);
        r[14..16].copy_from_slice(&1u16.to_be_bytes());
        // Login Responses carry ExpCmdSN as the request's CmdSN (not advanced by login).
        r[28..32].copy_from_slice(&h[24..28]);
        let max = be32(&h[24..28]).wrapping_add(WINDOW);
        r[32..36].copy_from_slice(&max.to_be_bytes());
        // Login is immediate: the first command will carry this CmdSN.
        self.exp_cmd_sn = be32(&h[24..28]);
    }

    /// A SCSI Command (11.3): READs answered with zeroes, a few commands with the data
    /// libiscsi asks for before it reads, the rest GOOD without data.
    fn scsi(&mut self, h: &[u8; BHS]) {
        let mut itt = [0u8; 4];
        itt.copy_from_slice(&h[16..20]);
        let edtl = be32(&h[20..24]) as usize;
        let cdb = &h[32..48];
        let data: Option<Vec<u8>> = match cdb[0] {
            // READ(6/10/12/16): the floor's whole point.
            0x08 | 0x28 | 0xa8 | 0x88 => {
                self.data_in(&itt, Data::Zeroes(edtl.min(ZEROES.len())), edtl);
                return;
            }
            0x12 if cdb[1] & 1 == 0 => {
                // Standard INQUIRY data: direct-access block device, SPC-4, format 2.
                let mut d = vec![0u8; 36];
                d[2] = 6;
                d[3] = 2;
                d[4] = 31;
                d[7] = 0x02; // CmdQue
                d[8..16].copy_from_slice(b"rtgt    ");
                d[16..32].copy_from_slice(b"socket floor    ");
                d[32..36].copy_from_slice(b"0001");
                Some(d)
            }
            0x12 => Some(vec![0, cdb[2], 0, 0]), // a VPD page with nothing in it
            0x25 => {
                let mut d = (BLOCKS as u32 - 1).to_be_bytes().to_vec();
                d.extend_from_slice(&(BLOCK as u32).to_be_bytes());
                Some(d)
            }
            0x9e if cdb[1] & 0x1f == 0x10 => {
                let mut d = vec![0u8; 32];
                d[..8].copy_from_slice(&(BLOCKS - 1).to_be_bytes());
                d[8..12].copy_from_slice(&(BLOCK as u32).to_be_bytes());
                Some(d)
            }
            0xa0 => {
                let mut d = vec![0u8; 16];
                d[3] = 8;
                d[9] = 1; // LUN 1
                Some(d)
            }
            _ => None,
        };
        match data {
            Some(mut d) if edtl > 0 => {
                d.truncate(edtl);
                self.data_in(&itt, Data::Owned(d), edtl);
            }
            _ => {
                // SCSI Response, GOOD (11.4).
                self.respond(0x21, 0x80, &itt, true, Data::None);
                let r = self.headers.last_mut().expect("just pushed");
                r[20..24].fill(0);
                // A WRITE's data came as immediate data (the W bit, RFC 7143 11.3.1):
                // all of it was taken, no residual.
                if edtl > 0 && h[1] & 0x20 == 0 {
                    r[1] |= 0x02; // U: residual underflow
                    r[44..48].copy_from_slice(&(edtl as u32).to_be_bytes());
                }
            }
        }
    }

    /// Data-In PDUs (11.7) for `data`, the last with F and S, status GOOD and the
    /// residual against the expected length.
    fn data_in(&mut self, itt: &[u8; 4], data: Data, edtl: usize) {
        let (len, owned) = match data {
            Data::Zeroes(n) => (n, None),
            Data::Owned(v) => (v.len(), Some(v)),
            Data::None => (0, None),
        };
        let step = self.their_mrdsl.max(512);
        let mut off = 0;
        let mut sn = 0u32;
        let mut owned = owned;
        loop {
            let n = (len - off).min(step);
            let last = off + n == len;
            let d = match owned.take() {
                Some(v) => Data::Owned(v),
                None => Data::Zeroes(n),
            };
            let flags = if last { 0x81 } else { 0 };
            self.respond(0x25, flags, itt, last, d);
            let r = self.headers.last_mut().expect("just pushed");
            r[20..24].fill(0xff); // Target Transfer Tag: none
            if !last {
                r[24..28].fill(0);
            }
            r[36..40].copy_from_slice(&sn.to_be_bytes());
            r[40..44].copy_from_slice(&(off as u32).to_be_bytes());
            if last && edtl > len {
                r[1] |= 0x02;
                r[44..48].copy_from_slice(&((edtl - len) as u32).to_be_bytes());
            }
            off += n;
            sn += 1;
            if last {
                return;
            }
        }
    }
}
