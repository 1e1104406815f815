//! iser_peer: a misbehaving iSER initiator, for the guest's `iser` scenario (issue 18,
//! "bad input"). It connects through the RDMA connection manager with the same binding
//! rtgtd uses (rdma-mummy-sys, libibverbs and librdmacm loaded at run time), does a
//! minimal iSER-assisted login (one Login Request, operational stage straight to the
//! full feature phase, with the iSER keys), then misbehaves in one of four ways and
//! prints what the target answered, one `iser_peer:` line per finding:
//!
//! - `drop-mid-read LUN MIB MS`: a WRITE(16) of MIB MiB with InitialR2T=Yes, so the
//!   target RDMA-Reads all of it from our buffer; MS ms later we disconnect, in the
//!   middle of those RDMA Reads (the target's log says how many were in flight);
//! - `flood N`: N immediate NOP-Outs that each want a NOP-In, posted at once without
//!   waiting for any answer: past MaxOutstandingUnexpectedPDUs (RFC 7145 §6.3.4) and
//!   past the receives the target posted;
//! - `oversize BYTES`: a NOP-Out whose data segment is BYTES long, more than the
//!   TargetRecvDataSegmentLength we negotiated (8192);
//! - `huge LUN`: a READ(16) and a WRITE(16) whose Expected Data Transfer Length is more
//!   than the target will ever buffer for one command, then a 4 KiB READ on the same
//!   connection.
//!
//! Usage: iser_peer ADDR:PORT TARGET-IQN MODE ARGS... Exit status 0 when the peer got
//! the answer it reports (the scenario checks the target's side in rtgtd's log).

use std::net::SocketAddrV4;
use std::process::exit;
use std::ptr::null_mut;
use std::time::{Duration, Instant};

use rdma_mummy_sys::*;
use rtgt_iscsi::pdu::{op, Pdu, BHS_LEN, RESERVED_TAG};

/// The iSER header in front of every PDU (RFC 7145 §9.2).
const ISER_LEN: usize = 28;
/// A receive slot: iSER header, BHS, what the target may send (our
/// InitiatorRecvDataSegmentLength, 8192), room to spare.
const SLOT: usize = 10240;
const RECVS: usize = 1100;
/// Send slots: many small ones (the flood), or a few that hold 24 KiB of data (the
/// oversize case).
const SENDS: usize = 1100;
const SEND_SLOT: usize = 1024;
const BIG_SENDS: usize = 16;
const BIG_SEND_SLOT: usize = ISER_LEN + BHS_LEN + 24 * 1024 + 1024;
const TRDSL: usize = 8192;

struct Peer {
    ch: *mut rdma_event_channel,
    id: *mut rdma_cm_id,
    pd: *mut ibv_pd,
    cq: *mut ibv_cq,
    recv: Vec<u8>,
    recv_mr: *mut ibv_mr,
    send: Vec<u8>,
    send_mr: *mut ibv_mr,
    send_slot: usize,
    sends: usize,
    next_send: usize,
    cmd_sn: u32,
    exp_stat_sn: u32,
    itt: u32,
    /// Send completions in error, and the first such status.
    send_errors: usize,
    first_error: Option<u32>,
    /// The target closed the connection (CM DISCONNECTED, or our receives flushed).
    closed: bool,
    /// PDUs received, not yet taken.
    queue: std::collections::VecDeque<Pdu>,
}

/// What waiting for a PDU found.
enum Got {
    Pdu(Pdu),
    Closed,
    Timeout,
}

fn die(what: &str) -> ! {
    println!("iser_peer: {what}: {}", std::io::Error::last_os_error());
    exit(2)
}

impl Peer {
    /// Connects to `addr` (RDMA_PS_TCP), with every receive posted first.
    unsafe fn connect(addr: SocketAddrV4, big_sends: bool) -> Peer {
        let (sends, send_slot) = match big_sends {
            true => (BIG_SENDS, BIG_SEND_SLOT),
            false => (SENDS, SEND_SLOT),
        };
        let ch = rdma_create_event_channel();
        if ch.is_null() {
            die("rdma_create_event_channel");
        }
        let mut id = null_mut();
        if rdma_create_id(ch, &mut id, null_mut(), rdma_port_space::RDMA_PS_TCP) != 0 {
            die("rdma_create_id");
        }
        let mut sin: libc::sockaddr_in = std::mem::zeroed();
        sin.sin_family = libc::AF_INET as _;
        sin.sin_port = addr.port().to_be();
        sin.sin_addr.s_addr = u32::from(*addr.ip()).to_be();
        if rdma_resolve_addr(id, null_mut(), &mut sin as *mut _ as *mut _, 5000) != 0 {
            die("rdma_resolve_addr");
        }
        expect_event(ch, rdma_cm_event_type::RDMA_CM_EVENT_ADDR_RESOLVED);
        if rdma_resolve_route(id, 5000) != 0 {
            die("rdma_resolve_route");
        }
        expect_event(ch, rdma_cm_event_type::RDMA_CM_EVENT_ROUTE_RESOLVED);
        let pd = ibv_alloc_pd((*id).verbs);
        let cq = ibv_create_cq(
            (*id).verbs,
            (RECVS + SENDS + 16) as i32,
            null_mut(),
            null_mut(),
            0,
        );
        if pd.is_null() || cq.is_null() {
            die("ibv_alloc_pd / ibv_create_cq");
        }
        let mut attr: ibv_qp_init_attr = std::mem::zeroed();
        attr.send_cq = cq;
        attr.recv_cq = cq;
        attr.cap.max_send_wr = SENDS as u32;
        attr.cap.max_recv_wr = RECVS as u32;
        attr.cap.max_send_sge = 1;
        attr.cap.max_recv_sge = 1;
        attr.qp_type = ibv_qp_type::IBV_QPT_RC;
        if rdma_create_qp(id, pd, &mut attr) != 0 {
            die("rdma_create_qp");
        }
        let mut p = Peer {
            ch,
            id,
            pd,
            cq,
            recv: vec![0; RECVS * SLOT],
            recv_mr: null_mut(),
            send: vec![0; sends * send_slot],
            send_mr: null_mut(),
            send_slot,
            sends,
            next_send: 0,
            cmd_sn: 1,
            exp_stat_sn: 0,
            itt: 0x100,
            send_errors: 0,
            first_error: None,
            closed: false,
            queue: Default::default(),
        };
        let (r, rl) = (p.recv.as_mut_ptr(), p.recv.len());
        p.recv_mr = p.reg(r, rl, 0);
        let (s, sl) = (p.send.as_mut_ptr(), p.send.len());
        p.send_mr = p.reg(s, sl, 0);
        for i in 0..RECVS {
            p.post_recv(i);
        }
        // The iSER CM header: we take no Send with Invalidate (our buffers are plain
        // memory regions, which a remote invalidate cannot take; IB Annex A12's flag
        // 0x40); we answer the target's RDMA Reads, as many at once as it likes.
        let private = [0x40u8, 0, 0, 0];
        let mut param: rdma_conn_param = std::mem::zeroed();
        param.private_data = private.as_ptr().cast();
        param.private_data_len = private.len() as u8;
        param.responder_resources = 16;
        param.initiator_depth = 16;
        param.retry_count = 7;
        param.rnr_retry_count = 7;
        if rdma_connect(id, &mut param) != 0 {
            die("rdma_connect");
        }
        expect_event(ch, rdma_cm_event_type::RDMA_CM_EVENT_ESTABLISHED);
        set_nonblocking((*ch).fd);
        p
    }

    unsafe fn reg(&self, buf: *mut u8, len: usize, remote: u32) -> *mut ibv_mr {
        let access = ibv_access_flags::IBV_ACCESS_LOCAL_WRITE.0 | remote;
        let mr = ibv_reg_mr(self.pd, buf.cast(), len, access as i32);
        if mr.is_null() {
            die("ibv_reg_mr");
        }
        mr
    }

    unsafe fn post_recv(&mut self, i: usize) {
        let mut sge = ibv_sge {
            addr: self.recv[i * SLOT..].as_mut_ptr() as u64,
            length: SLOT as u32,
            lkey: (*self.recv_mr).lkey,
        };
        let mut wr: ibv_recv_wr = std::mem::zeroed();
        wr.wr_id = i as u64;
        wr.sg_list = &mut sge;
        wr.num_sge = 1;
        let mut bad = null_mut();
        if ibv_post_recv((*self.id).qp, &mut wr, &mut bad) != 0 {
            die("ibv_post_recv");
        }
    }

    /// Posts `p` as one Send behind an iSER header naming `write` / `read` buffers
    /// (STag, address).
    unsafe fn send_pdu(&mut self, p: &Pdu, write: Option<(u32, u64)>, read: Option<(u32, u64)>) {
        self.send_pdus(std::slice::from_ref(p), write, read);
    }

    /// Posts each PDU as a Send, all in one chain of work requests (one doorbell: the
    /// target's receives see them together).
    unsafe fn send_pdus(
        &mut self,
        ps: &[Pdu],
        write: Option<(u32, u64)>,
        read: Option<(u32, u64)>,
    ) {
        let mut h = [0u8; ISER_LEN];
        h[0] = 0x10;
        if let Some((stag, va)) = write {
            h[0] |= 0x08;
            h[4..8].copy_from_slice(&stag.to_be_bytes());
            h[8..16].copy_from_slice(&va.to_be_bytes());
        }
        if let Some((stag, va)) = read {
            h[0] |= 0x04;
            h[16..20].copy_from_slice(&stag.to_be_bytes());
            h[20..28].copy_from_slice(&va.to_be_bytes());
        }
        let mut sges = Vec::with_capacity(ps.len());
        for p in ps {
            let mut b = h.to_vec();
            p.encode_into(&mut b, false, false);
            let i = self.next_send;
            self.next_send = (i + 1) % self.sends;
            let at = i * self.send_slot;
            self.send[at..at + b.len()].copy_from_slice(&b);
            sges.push((
                i,
                ibv_sge {
                    addr: self.send[at..].as_mut_ptr() as u64,
                    length: b.len() as u32,
                    lkey: (*self.send_mr).lkey,
                },
            ));
        }
        let mut wrs: Vec<ibv_send_wr> = Vec::with_capacity(ps.len());
        for (i, sge) in sges.iter_mut() {
            let mut wr: ibv_send_wr = std::mem::zeroed();
            wr.wr_id = (1 << 32) | *i as u64;
            wr.opcode = ibv_wr_opcode::IBV_WR_SEND;
            wr.sg_list = sge;
            wr.num_sge = 1;
            wr.send_flags = ibv_send_flags::IBV_SEND_SIGNALED.0;
            wrs.push(wr);
        }
        for k in 1..wrs.len() {
            let next: *mut ibv_send_wr = &mut wrs[k];
            wrs[k - 1].next = next;
        }
        let mut bad = null_mut();
        if ibv_post_send((*self.id).qp, wrs.as_mut_ptr(), &mut bad) != 0 {
            die("ibv_post_send");
        }
    }

    /// Notes a CM disconnect, if one came.
    unsafe fn cm_events(&mut self) {
        let mut ev = null_mut();
        while rdma_get_cm_event(self.ch, &mut ev) == 0 {
            if (*ev).event == rdma_cm_event_type::RDMA_CM_EVENT_DISCONNECTED {
                self.closed = true;
            }
            rdma_ack_cm_event(ev);
        }
    }

    /// The next PDU the target sends, within `limit`.
    unsafe fn wait(&mut self, limit: Duration) -> Got {
        let until = Instant::now() + limit;
        loop {
            if let Some(p) = self.queue.pop_front() {
                self.note(&p);
                return Got::Pdu(p);
            }
            let mut wc: [ibv_wc; 16] = std::mem::zeroed();
            let n = ibv_poll_cq(self.cq, wc.len() as i32, wc.as_mut_ptr());
            for w in &wc[..n.max(0) as usize] {
                let recv = w.wr_id >> 32 == 0;
                if w.status != ibv_wc_status::IBV_WC_SUCCESS {
                    if recv {
                        // Our receives flush when the queue pair leaves RTS.
                        self.closed = true;
                    } else {
                        self.send_errors += 1;
                        self.first_error.get_or_insert(w.status);
                    }
                    continue;
                }
                if !recv {
                    continue;
                }
                let i = w.wr_id as usize;
                let b = self.recv[i * SLOT + ISER_LEN..i * SLOT + w.byte_len as usize].to_vec();
                self.post_recv(i);
                if b.len() >= BHS_LEN {
                    let mut p = Pdu::new(0);
                    p.bhs.copy_from_slice(&b[..BHS_LEN]);
                    p.data = b[BHS_LEN..].to_vec();
                    self.queue.push_back(p);
                }
            }
            if n > 0 {
                continue;
            }
            self.cm_events();
            if self.closed {
                return Got::Closed;
            }
            if Instant::now() >= until {
                return Got::Timeout;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Keeps the sequence numbers of what came.
    fn note(&mut self, p: &Pdu) {
        // Responses carry the StatSN they use (a ping NOP-In, R2T, Data-In do not).
        let has_stat_sn = match p.opcode() {
            op::NOP_IN => p.itt() != RESERVED_TAG,
            o => matches!(
                o,
                op::SCSI_RSP | op::TMF_RSP | op::TEXT_RSP | op::LOGOUT_RSP | op::REJECT
            ),
        };
        if has_stat_sn {
            self.exp_stat_sn = p.stat_sn().wrapping_add(1);
        }
    }

    /// The next PDU, or the end of the program with what came instead.
    unsafe fn expect(&mut self, what: &str, limit: Duration) -> Pdu {
        match self.wait(limit) {
            Got::Pdu(p) => p,
            Got::Closed => {
                println!("iser_peer: the target closed the connection while we waited for {what}");
                exit(1)
            }
            Got::Timeout => {
                println!("iser_peer: no {what} in {limit:?}");
                exit(1)
            }
        }
    }

    /// The minimal iSER-assisted login: operational stage straight to the full feature
    /// phase (no security stage: the target asks for no authentication), answering
    /// whatever the target offers with its own value.
    unsafe fn login(&mut self, target: &str) {
        let mut keys = vec![
            "InitiatorName=iqn.2026-12.org.rtgt:iser-peer".to_string(),
            "SessionType=Normal".into(),
            format!("TargetName={target}"),
            "HeaderDigest=None".into(),
            "DataDigest=None".into(),
            "RDMAExtensions=Yes".into(),
            format!("TargetRecvDataSegmentLength={TRDSL}"),
            "InitiatorRecvDataSegmentLength=8192".into(),
            "MaxOutstandingUnexpectedPDUs=0".into(),
            "ImmediateData=No".into(),
            "InitialR2T=Yes".into(),
            "MaxBurstLength=16776192".into(),
            "FirstBurstLength=65536".into(),
            "MaxOutstandingR2T=1".into(),
            "ErrorRecoveryLevel=0".into(),
        ];
        for round in 0..4 {
            let mut p = Pdu::new(op::LOGIN_REQ);
            p.set_immediate(true);
            p.set_flags(0x80 | 1 << 2 | 3); // T, CSG operational, NSG full feature
            p.bhs[8..14].copy_from_slice(&[0x80, 0x12, 0x34, 0x56, 0x78, 0x9a]);
            p.set_itt(round);
            p.set_u32(24, self.cmd_sn);
            p.set_u32(28, self.exp_stat_sn);
            p.data = keys.iter().flat_map(|k| k.bytes().chain([0])).collect();
            p.fix_lengths();
            self.send_pdu(&p, None, None);
            let r = self.expect("a Login Response", Duration::from_secs(10));
            let (class, detail) = (r.bhs[36], r.bhs[37]);
            if r.opcode() != op::LOGIN_RSP || class != 0 {
                println!(
                    "iser_peer: login refused: opcode {:#x} status {class:#x}/{detail:#x}",
                    r.opcode()
                );
                exit(1);
            }
            self.exp_stat_sn = r.stat_sn().wrapping_add(1);
            self.cmd_sn = r.exp_cmd_sn();
            if r.flags() & 0x83 == 0x83 {
                return;
            }
            // Offers of the target's: accepted as they are.
            keys = String::from_utf8_lossy(&r.data)
                .split('\0')
                .filter(|k| !k.is_empty())
                .map(str::to_string)
                .collect();
        }
        println!("iser_peer: no full feature phase after 4 login rounds");
        exit(1);
    }

    /// A SCSI Command PDU (not sent).
    fn command(&mut self, lun: u16, cdb: &[u8], edtl: u32, flags: u8) -> Pdu {
        let mut p = Pdu::new(op::SCSI_CMD);
        p.set_flags(0x80 | flags | 1); // F, R/W, SIMPLE
        p.bhs[8..10].copy_from_slice(&lun.to_be_bytes());
        self.itt += 1;
        p.set_itt(self.itt);
        p.set_u32(20, edtl);
        p.set_u32(24, self.cmd_sn);
        self.cmd_sn = self.cmd_sn.wrapping_add(1);
        p.set_u32(28, self.exp_stat_sn);
        p.bhs[32..32 + cdb.len()].copy_from_slice(cdb);
        p
    }

    /// A registered buffer the target may RDMA-Read and RDMA-Write: (STag, address).
    unsafe fn buffer(&self, buf: &mut [u8]) -> (u32, u64) {
        let remote = ibv_access_flags::IBV_ACCESS_REMOTE_READ.0
            | ibv_access_flags::IBV_ACCESS_REMOTE_WRITE.0;
        let mr = self.reg(buf.as_mut_ptr(), buf.len(), remote);
        ((*mr).rkey, buf.as_ptr() as u64)
    }
}

unsafe fn expect_event(ch: *mut rdma_event_channel, want: rdma_cm_event_type::Type) {
    let mut ev = null_mut();
    if rdma_get_cm_event(ch, &mut ev) != 0 {
        die("rdma_get_cm_event");
    }
    let got = (*ev).event;
    rdma_ack_cm_event(ev);
    if got != want {
        println!("iser_peer: connection manager event {got}, wanted {want}");
        exit(2);
    }
}

fn set_nonblocking(fd: i32) {
    // SAFETY: fcntl on the event channel's descriptor.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
}

fn cdb16(opcode: u8, lba: u64, blocks: u32) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = opcode;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[10..14].copy_from_slice(&blocks.to_be_bytes());
    c
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize, what: &str) -> T {
    args.get(i).and_then(|a| a.parse().ok()).unwrap_or_else(|| {
        println!("iser_peer: argument {i}: {what}");
        exit(2)
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        println!("usage: iser_peer ADDR:PORT TARGET-IQN drop-mid-read LUN MIB MS | flood N | oversize BYTES | huge LUN");
        exit(2);
    }
    let addr: SocketAddrV4 = arg(&args, 1, "ADDR:PORT");
    let target = &args[2];
    // SAFETY: verbs and CM calls on objects this program made and keeps to its end.
    unsafe {
        let mut p = Peer::connect(addr, args[3] == "oversize");
        p.login(target);
        println!("iser_peer: logged in to {target} over iSER at {addr}");
        match args[3].as_str() {
            "drop-mid-read" => drop_mid_read(
                &mut p,
                arg(&args, 4, "LUN"),
                arg(&args, 5, "MiB"),
                arg(&args, 6, "ms"),
            ),
            "flood" => flood(&mut p, arg(&args, 4, "N")),
            "oversize" => oversize(&mut p, arg(&args, 4, "BYTES")),
            "huge" => huge(&mut p, arg(&args, 4, "LUN")),
            m => {
                println!("iser_peer: unknown mode {m}");
                exit(2)
            }
        }
    }
}

/// A WRITE the target RDMA-Reads (InitialR2T=Yes, ImmediateData=No: all of it is
/// solicited), and a disconnect `ms` later, before its SCSI Response.
unsafe fn drop_mid_read(p: &mut Peer, lun: u16, mib: u32, ms: u64) {
    let mut buf = vec![0x5au8; (mib as usize) << 20];
    let w = p.buffer(&mut buf);
    let len = buf.len() as u32;
    let c = p.command(lun, &cdb16(0x8a, 0, len / 512), len, 0x20);
    p.send_pdu(&c, Some(w), None);
    let t0 = Instant::now();
    if let Got::Pdu(r) = p.wait(Duration::from_millis(ms)) {
        println!("iser_peer: the target answered (opcode {:#x}) before the disconnect: too late to cut a read", r.opcode());
        exit(1);
    }
    rdma_disconnect(p.id);
    println!(
        "iser_peer: disconnected {} ms into a WRITE of {mib} MiB (no SCSI Response yet)",
        t0.elapsed().as_millis()
    );
}

/// `n` immediate NOP-Outs at once, each asking for a NOP-In (ITT set).
unsafe fn flood(p: &mut Peer, n: usize) {
    let n = n.min(p.sends);
    let nops: Vec<Pdu> = (0..n)
        .map(|i| {
            let mut nop = Pdu::new(op::NOP_OUT);
            nop.set_immediate(true);
            nop.set_flags(0x80);
            nop.set_itt(0x10000 + i as u32);
            nop.set_ttt(RESERVED_TAG);
            nop.set_u32(24, p.cmd_sn);
            nop.set_u32(28, p.exp_stat_sn);
            nop
        })
        .collect();
    p.send_pdus(&nops, None, None);
    let mut answered = 0;
    let why = loop {
        match p.wait(Duration::from_secs(20)) {
            Got::Pdu(r) if r.opcode() == op::NOP_IN => answered += 1,
            Got::Pdu(r) => println!("iser_peer: flood: opcode {:#x} came", r.opcode()),
            Got::Closed => break "the target closed the connection",
            Got::Timeout => break "the connection stayed up (20 s without a PDU)",
        }
        if answered == n {
            break "every NOP-Out answered";
        }
    };
    println!(
        "iser_peer: flood: {n} immediate NOP-Outs posted at once, {answered} NOP-Ins back,          {} sends failed (first status {:?}); {why}",
        p.send_errors, p.first_error
    );
    exit(if p.closed { 0 } else { 1 });
}

/// A NOP-Out with `bytes` of data: past TargetRecvDataSegmentLength.
unsafe fn oversize(p: &mut Peer, bytes: usize) {
    let mut nop = Pdu::new(op::NOP_OUT);
    nop.set_immediate(true);
    nop.set_flags(0x80);
    nop.set_itt(7);
    nop.set_ttt(RESERVED_TAG);
    nop.set_u32(24, p.cmd_sn);
    nop.set_u32(28, p.exp_stat_sn);
    nop.data = vec![0xa5; bytes.min(p.send_slot - ISER_LEN - BHS_LEN - 4)];
    nop.fix_lengths();
    p.send_pdu(&nop, None, None);
    match p.wait(Duration::from_secs(20)) {
        Got::Closed => {
            println!("iser_peer: oversize: a NOP-Out of {bytes} data bytes (TargetRecvDataSegmentLength {TRDSL}): the target closed the connection");
        }
        Got::Pdu(r) => {
            println!(
                "iser_peer: oversize: answered with opcode {:#x}, connection still up",
                r.opcode()
            );
            exit(1)
        }
        Got::Timeout => {
            println!("iser_peer: oversize: no answer and the connection stayed up");
            exit(1)
        }
    }
}

/// READ(16) and WRITE(16) of more than the target buffers for one command: each must be
/// refused with a Reject, the connection serving on (a 4 KiB READ, GOOD).
unsafe fn huge(p: &mut Peer, lun: u16) {
    let mut small = vec![0u8; 1 << 20];
    let s = p.buffer(&mut small);
    let blocks = (65u32 << 20) / 512;
    for (name, opcode, flags) in [("READ(16)", 0x88u8, 0x40u8), ("WRITE(16)", 0x8a, 0x20)] {
        let c = p.command(lun, &cdb16(opcode, 0, blocks), blocks * 512, flags);
        let itt = c.itt();
        let (w, r) = if flags == 0x20 {
            (Some(s), None)
        } else {
            (None, Some(s))
        };
        p.send_pdu(&c, w, r);
        let r = p.expect("an answer to the huge command", Duration::from_secs(20));
        if r.opcode() == op::REJECT {
            // The rejected PDU's header is the Reject's data (RFC 7143 §11.17).
            let bad_itt = u32::from_be_bytes(r.data[16..20].try_into().unwrap());
            println!(
                "iser_peer: huge: {name} of 65 MiB: Reject, reason {:#04x}, of ITT {bad_itt:#x} (ours {itt:#x})",
                r.bhs[2]
            );
        } else {
            println!(
                "iser_peer: huge: {name} of 65 MiB: opcode {:#x}, status {:#x}",
                r.opcode(),
                r.bhs[3]
            );
            exit(1)
        }
    }
    let c = p.command(lun, &cdb16(0x88, 0, 8), 4096, 0x40);
    p.send_pdu(&c, None, Some(s));
    let r = p.expect("the SCSI Response of a 4 KiB READ", Duration::from_secs(20));
    if r.opcode() != op::SCSI_RSP || r.bhs[2] != 0 || r.bhs[3] != 0 {
        println!(
            "iser_peer: huge: the 4 KiB READ after: opcode {:#x}, response {:#x}, status {:#x}",
            r.opcode(),
            r.bhs[2],
            r.bhs[3]
        );
        exit(1)
    }
    println!("iser_peer: huge: then a 4 KiB READ on the same connection: GOOD");
    rdma_disconnect(p.id);
}
