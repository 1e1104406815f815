//! One iSER connection (RFC 7145), from the connection manager's request to its end:
//! a reliable-connected queue pair, its receive buffers posted before the connection
//! is accepted (so no credit is ever granted beyond posted receives), the login and
//! then the full feature phase run by rtgt-iscsi's machines, and the datamover:
//!
//! - every PDU arrives and leaves as one Send, behind the iSER header;
//! - a SCSI Command's header names the initiator's buffers (Read/Write STag);
//! - Data-In is an RDMA Write into the Read STag's buffer, then the SCSI Response as a
//!   Send (RFC 7145 §7.3.5; the QP's ordering puts the data before the response);
//! - an R2T (what the session machine asks for beyond unsolicited data) becomes an RDMA
//!   Read of the Write STag's buffer (§7.3.6), whose data goes back to the session
//!   machine as the Data-Out PDU the R2T stands for, so the machine's checks, counters
//!   and bursts are the TCP transport's;
//! - the CmdSN window (128) plus MaxOutstandingUnexpectedPDUs (32) plus room for
//!   unsolicited Data-Out is what is posted: a peer that sends more than its credit
//!   finds no receive buffer, and the QP (only this connection) breaks.
//!
//! Buffers: receives and sends come from two registered pools of fixed slots made at
//! accept; command data goes through the connection's registered buffer pool (`pool`),
//! a work request per chunk, so a command's size has no ceiling beyond the SCSI
//! layer's (MAX_EDTL) and nothing is registered per command (with `pool_mb=0`, each
//! command's buffer is registered for its RDMA operation instead).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use rtgt_iscsi::login::{Login, LoginStep, MAX_OUTSTANDING_UNEXPECTED_PDUS};
use rtgt_iscsi::params::{SessionParams, SessionType, TargetDefaults};
use rtgt_iscsi::pdu::{op, Framer, Pdu, BHS_LEN};
use rtgt_iscsi::session::{
    Action, DataIn, ScsiRequest, Session, SessionConfig, TmfRequest, CMD_WINDOW,
};
use rtgt_iscsi::text::TextExchange;
use rtgt_scsi::ScsiCommand;
use rtgt_target::Target;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::{watch, Notify};

use super::header::{self, Header, Stag};
use super::listener::Gone;
use super::pool::{self, Pool};
use super::verbs::*;
use crate::daemon::Daemon;
use crate::transport::exec::{CommandFuture, Commands, Completion};
use crate::transport::iscsi::connection::{apply, stop_signal, tmf_code, to_attr, to_tm};
use crate::transport::iscsi::login::{login_failed, Ctx};
use crate::transport::liveness::{Liveness, Verdict};
use crate::transport::nexus::Nexus;

/// The most data one Send carries, either way: our TargetRecvDataSegmentLength and
/// InitiatorRecvDataSegmentLength limit (RFC 7145 §6.3.2, §6.3.3), and the login's.
const DATA_LIMIT: usize = 16384;
/// A receive or send slot: iSER header, BHS, the largest AHS, data.
const SLOT: usize = header::LEN + BHS_LEN + 1024 + DATA_LIMIT;
/// Receives posted: the CmdSN window, the unexpected PDUs granted, and as many again
/// for unsolicited Data-Out.
const RECVS: usize = CMD_WINDOW as usize + 2 * MAX_OUTSTANDING_UNEXPECTED_PDUS as usize;
/// Send slots, and work requests on the send queue (Sends plus RDMA operations).
const SENDS: usize = 64;
const SQ_DEPTH: usize = 1024;
const CQ_DEPTH: usize = RECVS + SQ_DEPTH;

/// Kinds of work request, in the top bits of the wr_id; the rest is the slot.
const WR_RECV: u64 = 1 << 62;
const WR_SEND: u64 = 2 << 62;
const WR_RDMA: u64 = 3 << 62;
const WR_SLOT: u64 = (1 << 62) - 1;
/// An RDMA work request's wr_id also holds its pool chunk + 1 (0: none) from this bit.
const WR_CHUNK_SHIFT: u32 = 31;

type Ended = &'static str;

/// The timers of `--iscsi` that iSER connections keep too.
#[derive(Clone, Copy, Debug)]
pub(super) struct Timing {
    /// A connection must finish its login within this time of connecting.
    pub login_timeout: Duration,
    /// NOP-In pings on a quiet connection (RFC 7143 §11.19); None: no pings.
    pub nop_interval: Option<Duration>,
    /// Intervals of silence, with a ping unanswered, before the peer is taken as gone.
    pub nop_count: u32,
}

/// Registered memory of fixed slots.
struct Slots {
    mem: Vec<u8>,
    mr: *mut ibv_mr,
}

impl Slots {
    /// # Safety
    /// `pd` is a live protection domain.
    unsafe fn new(pd: *mut ibv_pd, n: usize) -> Result<Slots> {
        let (mem, mr) = super::pool::registered(pd, n * SLOT, "ibv_reg_mr")?;
        Ok(Slots { mem, mr })
    }

    fn sge(&mut self, i: usize, len: usize) -> ibv_sge {
        ibv_sge {
            addr: self.mem[i * SLOT..].as_mut_ptr() as u64,
            length: len as u32,
            // SAFETY: mr is live while self is.
            lkey: unsafe { (*self.mr).lkey },
        }
    }

    fn slot(&self, i: usize) -> &[u8] {
        &self.mem[i * SLOT..(i + 1) * SLOT]
    }

    fn slot_mut(&mut self, i: usize) -> &mut [u8] {
        &mut self.mem[i * SLOT..(i + 1) * SLOT]
    }
}

/// The most one RDMA Read or Write work request moves: larger transfers are split
/// (soft-RoCE's largest message is 8 MiB; a command may be 16 MiB or more).
const RDMA_CHUNK: usize = 1 << 20;

/// An RDMA operation in flight and the buffer it moves (through the pool, or registered
/// for it: `mr`, null with a pool).
struct RdmaOp {
    mr: *mut ibv_mr,
    buf: Vec<u8>,
    /// Its work requests not yet completed.
    pending: usize,
    /// An RDMA Read's R2T: its data becomes this Data-Out.
    read: Option<Pdu>,
}

/// Work waiting for room on the send queue, in order.
enum Work {
    /// A Send, and the STag it invalidates (Send with Invalidate), if any.
    Send(Vec<u8>, Option<u32>),
    /// Slot, opcode, remote buffer, and the byte range of this work request.
    Rdma(usize, ibv_wr_opcode::Type, Stag, usize, usize),
}

/// The queue pair and everything registered for it.
pub(super) struct Conn {
    id: *mut rdma_cm_id,
    pd: *mut ibv_pd,
    channel: *mut ibv_comp_channel,
    cq: *mut ibv_cq,
    recv: Slots,
    send: Slots,
    free_sends: Vec<usize>,
    sq_used: usize,
    waiting: VecDeque<Work>,
    rdma: Vec<Option<RdmaOp>>,
    free_rdma: Vec<usize>,
    /// The registered buffer pool command data goes through; None: `pool_mb=0`.
    pool: Option<Pool>,
    peer: SocketAddr,
    local: SocketAddr,
    /// The initiator takes Send with Invalidate (its CM header did not say otherwise).
    send_inv: bool,
    /// Responses sent with Invalidate.
    invalidated: u64,
    /// RDMA Reads we may have outstanding (the ORD agreed at accept).
    ord: u8,
}

// SAFETY: the verbs objects are used by one task at a time (the CM task until accept,
// then the connection's).
unsafe impl Send for Conn {}

/// What a poll of the completion queue found.
enum Done {
    Recv(Vec<u8>),
    /// An RDMA Read finished: the Data-Out it stands for.
    DataOut(Pdu),
}

impl Conn {
    /// Sets up the queue pair for a connection request and accepts it, with every
    /// receive posted first (RFC 7145 §5.1: before the login may arrive).
    ///
    /// # Safety
    /// `id` is the request's new CM id, its event not yet acknowledged.
    pub(super) unsafe fn accept(
        id: *mut rdma_cm_id,
        req: &rdma_conn_param,
        pool_bytes: usize,
    ) -> Result<Conn> {
        let verbs = (*id).verbs;
        let mut dev: ibv_device_attr = std::mem::zeroed();
        if ibv_query_device(verbs, &mut dev) != 0 {
            return Err(last_error("ibv_query_device"));
        }
        let pd = ibv_alloc_pd(verbs);
        if pd.is_null() {
            return Err(last_error("ibv_alloc_pd"));
        }
        let channel = ibv_create_comp_channel(verbs);
        if channel.is_null() {
            ibv_dealloc_pd(pd);
            return Err(last_error("ibv_create_comp_channel"));
        }
        let cq = ibv_create_cq(verbs, CQ_DEPTH as i32, std::ptr::null_mut(), channel, 0);
        let mut c = Conn {
            id,
            pd,
            channel,
            cq,
            recv: Slots {
                mem: Vec::new(),
                mr: std::ptr::null_mut(),
            },
            send: Slots {
                mem: Vec::new(),
                mr: std::ptr::null_mut(),
            },
            free_sends: (0..SENDS).rev().collect(),
            sq_used: 0,
            waiting: VecDeque::new(),
            rdma: Vec::new(),
            free_rdma: Vec::new(),
            pool: None,
            peer: from_sockaddr(rdma_get_peer_addr(&*id)),
            local: from_sockaddr(rdma_get_local_addr(&*id)),
            send_inv: cm_header_flags(req) & SEND_W_INV_NOT_SUPPORTED == 0,
            invalidated: 0,
            ord: 0,
        };
        if cq.is_null() {
            c.release();
            return Err(last_error("ibv_create_cq"));
        }
        let mut attr: ibv_qp_init_attr = std::mem::zeroed();
        attr.send_cq = cq;
        attr.recv_cq = cq;
        attr.cap.max_send_wr = SQ_DEPTH as u32;
        attr.cap.max_recv_wr = RECVS as u32;
        attr.cap.max_send_sge = 1;
        attr.cap.max_recv_sge = 1;
        attr.qp_type = ibv_qp_type::IBV_QPT_RC;
        if rdma_create_qp(id, pd, &mut attr) != 0 {
            c.release();
            return Err(last_error("rdma_create_qp"));
        }
        let setup = (|| -> Result<()> {
            c.recv = Slots::new(pd, RECVS)?;
            c.send = Slots::new(pd, SENDS)?;
            if pool_bytes > 0 {
                c.pool = Some(Pool::new(pd, pool_bytes)?);
            }
            for i in 0..RECVS {
                c.post_recv(i)?;
            }
            if ibv_req_notify_cq(cq, 0) != 0 {
                return Err(last_error("ibv_req_notify_cq"));
            }
            // The iSER CM header of the accept (IB Annex A12, as Linux's initiator and
            // targets read it): Send with Invalidate when the initiator takes it (the
            // target may invalidate the command's STag with its SCSI Response, RFC
            // 7145); the initiator's STags are taken as they are.
            let flags = if c.send_inv {
                0
            } else {
                SEND_W_INV_NOT_SUPPORTED
            };
            let private = [flags, 0, 0, 0];
            let mut param: rdma_conn_param = std::mem::zeroed();
            param.private_data = private.as_ptr().cast();
            param.private_data_len = private.len() as u8;
            let (ord, ird) = read_depths(req, &dev);
            c.ord = ord;
            param.initiator_depth = ord;
            param.responder_resources = ird;
            param.rnr_retry_count = 7;
            if rdma_accept(id, &mut param) != 0 {
                return Err(last_error("rdma_accept"));
            }
            Ok(())
        })();
        if let Err(e) = setup {
            c.release();
            return Err(e);
        }
        Ok(c)
    }

    /// Frees the verbs objects (not the CM id).
    fn release(&mut self) {
        // SAFETY: each object is freed once, dependents first; a destroyed QP has no
        // work left that could touch the buffers.
        unsafe {
            if !(*self.id).qp.is_null() {
                rdma_destroy_qp(self.id);
            }
            for op in self.rdma.iter_mut().filter_map(Option::take) {
                if !op.mr.is_null() {
                    ibv_dereg_mr(op.mr);
                }
                rtgt_backstore::bufpool::give(op.buf);
            }
            if let Some(p) = &mut self.pool {
                p.release();
            }
            for s in [&mut self.recv, &mut self.send] {
                if !s.mr.is_null() {
                    ibv_dereg_mr(s.mr);
                    s.mr = std::ptr::null_mut();
                }
            }
            if !self.cq.is_null() {
                ibv_destroy_cq(self.cq);
                self.cq = std::ptr::null_mut();
            }
            if !self.channel.is_null() {
                ibv_destroy_comp_channel(self.channel);
                self.channel = std::ptr::null_mut();
            }
            if !self.pd.is_null() {
                ibv_dealloc_pd(self.pd);
                self.pd = std::ptr::null_mut();
            }
        }
    }

    fn post_recv(&mut self, i: usize) -> Result<()> {
        let mut sge = self.recv.sge(i, SLOT);
        // SAFETY: zeroed is a valid ibv_recv_wr; the QP and the slot are live.
        unsafe {
            let mut wr: ibv_recv_wr = std::mem::zeroed();
            wr.wr_id = WR_RECV | i as u64;
            wr.sg_list = &mut sge;
            wr.num_sge = 1;
            let mut bad = std::ptr::null_mut();
            if ibv_post_recv((*self.id).qp, &mut wr, &mut bad) != 0 {
                return Err(last_error("ibv_post_recv"));
            }
        }
        Ok(())
    }

    /// Queues a PDU as a Send, behind the iSER header.
    fn send_pdu(&mut self, p: &Pdu) {
        self.send_pdu_inv(p, None);
    }

    /// Queues a PDU as a Send that also invalidates `inv` (a STag of the initiator's).
    fn send_pdu_inv(&mut self, p: &Pdu, inv: Option<u32>) {
        let mut b = Vec::with_capacity(header::LEN + BHS_LEN + p.data.len() + 4);
        b.extend_from_slice(&Header::CONTROL.encode());
        p.encode_into(&mut b, false, false);
        self.waiting.push_back(Work::Send(b, inv));
    }

    /// A command's SCSI Response, with Invalidate of its one STag where the initiator
    /// takes it. A bidirectional command's response invalidates neither (Linux's
    /// initiator checks the STag against each of the command's buffers).
    fn send_response(&mut self, p: &Pdu, b: Option<Buffers>) {
        let inv = b.and_then(|b| to_invalidate(self.send_inv, &b));
        self.invalidated += u64::from(inv.is_some());
        self.send_pdu_inv(p, inv);
    }

    /// Queues an RDMA operation moving `buf` (Write: to the initiator; Read: from it).
    fn rdma(
        &mut self,
        opcode: ibv_wr_opcode::Type,
        remote: Stag,
        mut buf: Vec<u8>,
        read: Option<Pdu>,
    ) -> Result<()> {
        let (mr, step) = if self.pool.is_some() {
            (std::ptr::null_mut(), pool::CHUNK)
        } else {
            // SAFETY: the buffer stays in `self.rdma` (never moved: a Vec's heap block
            // does not move with it) until its completion or the connection's release.
            let mr = unsafe {
                ibv_reg_mr(
                    self.pd,
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    ibv_access_flags::IBV_ACCESS_LOCAL_WRITE.0 as i32,
                )
            };
            if mr.is_null() {
                return Err(last_error("ibv_reg_mr"));
            }
            (mr, RDMA_CHUNK)
        };
        let len = buf.len();
        let op = RdmaOp {
            mr,
            buf,
            pending: len.div_ceil(step),
            read,
        };
        let slot = match self.free_rdma.pop() {
            Some(s) => {
                self.rdma[s] = Some(op);
                s
            }
            None => {
                self.rdma.push(Some(op));
                self.rdma.len() - 1
            }
        };
        for off in (0..len).step_by(step) {
            let n = step.min(len - off);
            self.waiting
                .push_back(Work::Rdma(slot, opcode, remote, off, n));
        }
        Ok(())
    }

    /// Posts waiting work while the send queue and the send slots have room.
    fn post_waiting(&mut self) -> Result<()> {
        while let Some(w) = self.waiting.front() {
            // An RDMA work request waits for a free chunk of the pool (and the
            // Sends behind it with it: a response never overtakes its data).
            if self.sq_used == SQ_DEPTH
                || (matches!(w, Work::Send(..)) && self.free_sends.is_empty())
                || (matches!(w, Work::Rdma(..)) && self.pool.as_ref().is_some_and(Pool::full))
            {
                break;
            }
            let w = self.waiting.pop_front().expect("front");
            // SAFETY: zeroed is a valid ibv_send_wr; the QP and buffers are live.
            unsafe {
                let mut wr: ibv_send_wr = std::mem::zeroed();
                let mut sge;
                match w {
                    Work::Send(b, inv) => {
                        let i = self.free_sends.pop().expect("checked");
                        self.send.slot_mut(i)[..b.len()].copy_from_slice(&b);
                        sge = self.send.sge(i, b.len());
                        wr.wr_id = WR_SEND | i as u64;
                        wr.opcode = ibv_wr_opcode::IBV_WR_SEND;
                        if let Some(stag) = inv {
                            wr.opcode = ibv_wr_opcode::IBV_WR_SEND_WITH_INV;
                            wr.imm_data_invalidated_rkey_union =
                                imm_data_invalidated_rkey_union_t {
                                    invalidated_rkey: stag,
                                };
                        }
                    }
                    Work::Rdma(slot, opcode, remote, off, n) => {
                        let op = self.rdma[slot].as_mut().expect("in flight");
                        wr.wr_id = WR_RDMA | slot as u64;
                        match &mut self.pool {
                            Some(pool) => {
                                let c = pool.take(off, n).expect("checked");
                                if opcode == ibv_wr_opcode::IBV_WR_RDMA_WRITE {
                                    pool.chunk_mut(c)[..n].copy_from_slice(&op.buf[off..off + n]);
                                }
                                sge = pool.sge(c, n);
                                wr.wr_id |= (c as u64 + 1) << WR_CHUNK_SHIFT;
                            }
                            None => {
                                sge = ibv_sge {
                                    addr: op.buf.as_mut_ptr().add(off) as u64,
                                    length: n as u32,
                                    lkey: (*op.mr).lkey,
                                };
                            }
                        }
                        wr.opcode = opcode;
                        wr.wr.rdma = rdma_t {
                            remote_addr: remote.base + off as u64,
                            rkey: remote.stag,
                        };
                    }
                }
                wr.sg_list = &mut sge;
                wr.num_sge = 1;
                wr.send_flags = ibv_send_flags::IBV_SEND_SIGNALED.0;
                let mut bad = std::ptr::null_mut();
                if ibv_post_send((*self.id).qp, &mut wr, &mut bad) != 0 {
                    return Err(last_error("ibv_post_send"));
                }
            }
            self.sq_used += 1;
        }
        Ok(())
    }

    /// Takes every completion there is. Err: the queue pair broke (a receive too
    /// small for what came, an initiator gone, a bad STag): the connection ends.
    fn poll(&mut self, out: &mut Vec<Done>) -> Result<(), String> {
        // SAFETY: the channel is non-blocking; every CQ event is acknowledged.
        unsafe {
            let mut cq = std::ptr::null_mut();
            let mut ctx = std::ptr::null_mut();
            while ibv_get_cq_event(self.channel, &mut cq, &mut ctx) == 0 {
                ibv_ack_cq_events(cq, 1);
            }
            ibv_req_notify_cq(self.cq, 0);
            let mut wcs: [ibv_wc; 32] = std::mem::zeroed();
            loop {
                let n = ibv_poll_cq(self.cq, wcs.len() as i32, wcs.as_mut_ptr());
                if n < 0 {
                    return Err("ibv_poll_cq failed".into());
                }
                for wc in &wcs[..n as usize] {
                    self.completion(wc, out)?;
                }
                if (n as usize) < wcs.len() {
                    break;
                }
            }
        }
        self.post_waiting().map_err(|e| e.to_string())
    }

    fn completion(&mut self, wc: &ibv_wc, out: &mut Vec<Done>) -> Result<(), String> {
        let slot = (wc.wr_id & WR_SLOT & ((1 << WR_CHUNK_SHIFT) - 1)) as usize;
        let kind = wc.wr_id & !WR_SLOT;
        let chunk = ((wc.wr_id & WR_SLOT) >> WR_CHUNK_SHIFT) as usize;
        if let (WR_RDMA, 1.., Some(pool)) = (kind, chunk, &mut self.pool) {
            // The chunk is free again; an RDMA Read's data is copied out of it first.
            let (off, n) = pool.give(chunk - 1);
            if let Some(op) = self.rdma[slot].as_mut() {
                if op.read.is_some() && wc.status == ibv_wc_status::IBV_WC_SUCCESS {
                    op.buf[off..off + n].copy_from_slice(&pool.chunk(chunk - 1)[..n]);
                }
            }
        }
        if kind != WR_RECV {
            self.sq_used -= 1;
        }
        if kind == WR_SEND {
            self.free_sends.push(slot);
        }
        // An RDMA operation is done when its last work request is.
        let op = if kind == WR_RDMA {
            let last = self.rdma[slot].as_mut().is_some_and(|op| {
                op.pending -= 1;
                op.pending == 0
            });
            if last {
                let op = self.rdma[slot].take();
                self.free_rdma.push(slot);
                if let Some(op) = op.as_ref().filter(|op| !op.mr.is_null()) {
                    // SAFETY: registered by `rdma`, deregistered once.
                    unsafe { ibv_dereg_mr(op.mr) };
                }
                op
            } else {
                None
            }
        } else {
            None
        };
        if wc.status != ibv_wc_status::IBV_WC_SUCCESS {
            let what = match kind {
                WR_RECV => "a receive",
                WR_SEND => "a Send",
                _ => "an RDMA Read or Write",
            };
            // SAFETY: libibverbs returns a static string for any status.
            let why = unsafe { std::ffi::CStr::from_ptr(ibv_wc_status_str(wc.status)) };
            return Err(format!(
                "{what} failed: {} (work completion status {})",
                why.to_string_lossy(),
                wc.status
            ));
        }
        match kind {
            WR_RECV => {
                let data = self.recv.slot(slot)[..wc.byte_len as usize].to_vec();
                self.post_recv(slot).map_err(|e| e.to_string())?;
                out.push(Done::Recv(data));
            }
            WR_RDMA => {
                if let Some(RdmaOp { buf, read, .. }) = op {
                    match read {
                        Some(mut p) => {
                            p.data = buf;
                            out.push(Done::DataOut(p));
                        }
                        None => rtgt_backstore::bufpool::give(buf),
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Serves the connection to its end, then frees it.
    pub(super) async fn serve(
        mut self,
        daemon: Arc<Daemon>,
        gone: Arc<Notify>,
        map: Gone,
        timing: Timing,
    ) {
        let peer = self.peer;
        // SAFETY: the channel's fd lives as long as self.
        let raw = unsafe { (*self.channel).fd };
        let registered = set_nonblocking(raw).ok().and_then(|_| {
            // SAFETY: the fd stays open until after the AsyncFd is dropped (release).
            unsafe { AsyncFd::register_with_interest(raw, Interest::READABLE) }.ok()
        });
        match registered {
            Some(fd) => {
                let mut s = Serving::new(&mut self, daemon, gone, timing);
                let why = s.run(&fd).await;
                s.finish(why).await;
            }
            _ => tracing::warn!(%peer, "iSER: cannot wait on the completion channel"),
        }
        // SAFETY: the id is ours; its events are acknowledged by the CM task, which
        // no longer finds it in the map.
        unsafe {
            rdma_disconnect(self.id);
            map.lock().remove(&(self.id as usize));
            self.release();
            rdma_destroy_id(self.id);
        }
    }
}

/// Login state: the machine and what the registry said so far.
struct LoginState {
    login: Login,
    target: Option<Arc<Target>>,
    isid: [u8; 6],
    tsih: u16,
    locked_out: bool,
}

/// A command's buffers at the initiator (RFC 7145 §9.2), from its iSER header.
struct Buffers {
    write: Option<Stag>,
    read: Option<Stag>,
    /// The Write Base Offset names the first byte the target is to RDMA-Read: the one
    /// after the unsolicited data, which is where the first R2T starts (Linux's
    /// initiator passes its buffer's address plus the unsolicited length).
    solicited_from: Option<u32>,
}

/// The full feature phase.
struct Full {
    params: SessionParams,
    session: Session,
    text: TextExchange,
    nexus: Option<Nexus>,
    framer: Framer,
}

struct Serving<'c, F> {
    conn: &'c mut Conn,
    daemon: Arc<Daemon>,
    gone: Arc<Notify>,
    deadline: tokio::time::Instant,
    login: Option<LoginState>,
    full: Option<Full>,
    commands: Commands<F>,
    /// Each command's buffers, from its iSER header, by ITT.
    stags: HashMap<u32, Buffers>,
    actions: Vec<Action>,
    closing: Option<Ended>,
    close: Arc<Notify>,
    stop_rx: watch::Receiver<bool>,
    stop_asked: bool,
    /// NOP-In pings: the interval and count, a tick per interval, when a PDU (or RDMA
    /// Read data) last came from the initiator, pings sent.
    liveness: Liveness,
    pings: u64,
    /// Unexpected PDUs (immediate, RFC 7145 §6.3.4) in the current batch of receives.
    unexpected: u32,
}

impl<'c> Serving<'c, ()> {
    #[allow(clippy::new_ret_no_self)]
    fn new(
        conn: &'c mut Conn,
        daemon: Arc<Daemon>,
        gone: Arc<Notify>,
        timing: Timing,
    ) -> Serving<'c, impl CommandFuture> {
        let peer = conn.peer;
        let locked_out = daemon.guard.locked_out(peer.ip());
        let defaults = TargetDefaults {
            rdma_data_segment_limit: Some(DATA_LIMIT as u32),
            max_recv_data_segment_length: DATA_LIMIT as u32,
            ..TargetDefaults::default()
        };
        let stop_rx = daemon.stop.subscribe();
        Serving {
            conn,
            daemon,
            gone,
            deadline: tokio::time::Instant::now() + timing.login_timeout,
            login: Some(LoginState {
                login: Login::new(defaults),
                target: None,
                isid: [0; 6],
                tsih: 0,
                locked_out,
            }),
            full: None,
            commands: Commands::new(),
            stags: HashMap::new(),
            actions: Vec::new(),
            closing: None,
            close: Arc::new(Notify::new()),
            stop_rx,
            stop_asked: false,
            liveness: Liveness::new(timing.nop_interval, timing.nop_count),
            pings: 0,
            unexpected: 0,
        }
    }
}

impl<F: CommandFuture> Serving<'_, F> {
    async fn run(&mut self, fd: &AsyncFd<i32>) -> Ended {
        let mut done = Vec::new();
        loop {
            let in_login = self.full.is_none();
            tokio::select! {
                r = fd.readable() => {
                    let Ok(mut g) = r else { return "completion channel error" };
                    g.clear_ready();
                    if let Err(e) = self.conn.poll(&mut done) {
                        tracing::info!(peer = %self.conn.peer, "iSER: {e}");
                        return "queue pair error";
                    }
                    self.unexpected = 0;
                    for d in done.drain(..) {
                        if let Err(why) = self.take(d).await {
                            return why;
                        }
                    }
                }
                c = self.commands.next(), if !in_login => {
                    if let Err(why) = self.apply(c) {
                        return why;
                    }
                }
                _ = tokio::time::sleep_until(self.deadline), if in_login => {
                    tracing::info!(peer = %self.conn.peer, "login timed out");
                    return "login timed out";
                }
                stopping = stop_signal(&mut self.stop_rx), if !self.stop_asked && !in_login => {
                    self.stop_asked = true;
                    if stopping {
                        let f = self.full.as_mut().expect("full feature phase");
                        let p = f.session.async_logout_request(self.daemon.stop_timeout);
                        self.actions.push(Action::Send(p));
                    }
                }
                _ = self.liveness.ticker.tick(), if self.liveness.enabled() && !in_login => {
                    if let Err(why) = self.check_liveness() {
                        return why;
                    }
                }
                _ = self.close.notified() => return "closed by the target",
                _ = self.gone.notified() => return "connection closed",
            }
            while let Some(c) = self.commands.try_next() {
                if let Err(why) = self.apply(c) {
                    return why;
                }
            }
            self.carry_out_actions();
            if let Some(f) = &mut self.full {
                if self.closing.is_some() {
                    if let Some(w) = f
                        .nexus
                        .as_mut()
                        .and_then(|n| n.end())
                        .filter(|w| !w.is_empty())
                    {
                        let _ = tokio::time::timeout(Duration::from_secs(10), w.wait()).await;
                    }
                }
            }
            if let Err(e) = self.conn.post_waiting() {
                tracing::info!(peer = %self.conn.peer, "iSER: {e:#}");
                return "queue pair error";
            }
            if let Some(why) = self.closing {
                // What is queued (a Logout Response) goes out before the disconnect.
                let until = tokio::time::Instant::now() + Duration::from_secs(2);
                while self.conn.sq_used > 0 && tokio::time::Instant::now() < until {
                    if tokio::time::timeout_at(until, fd.readable()).await.is_err() {
                        break;
                    }
                    if let Ok(mut g) = fd.readable().await {
                        g.clear_ready();
                    }
                    if self.conn.poll(&mut done).is_err() {
                        break;
                    }
                    done.clear();
                }
                return why;
            }
        }
    }

    /// One receive or finished RDMA Read.
    async fn take(&mut self, d: Done) -> Result<(), Ended> {
        self.liveness.seen();
        match d {
            Done::DataOut(p) => {
                if let Some(f) = &mut self.full {
                    f.session.on_pdu(p, &mut self.actions);
                }
                Ok(())
            }
            Done::Recv(b) => {
                let peer = self.conn.peer;
                let Some(h) = Header::parse(&b) else {
                    tracing::info!(%peer, len = b.len(), "iSER: a Send shorter than the iSER header");
                    return Err("protocol error");
                };
                if h.opcode != header::OP_ISCSI_CTRL {
                    // Hello / HelloReply: iSERHelloRequired is No (RFC 7145 §5.1.2).
                    tracing::info!(%peer, opcode = h.opcode, "iSER: unexpected iSER opcode");
                    return Err("protocol error");
                }
                let body = &b[header::LEN..];
                let max = match &self.full {
                    Some(f) => f.framer.max_data,
                    None => rtgt_iscsi::login::LOGIN_MAX_DATA_SEGMENT,
                };
                let framer = Framer {
                    header_digest: false,
                    data_digest: false,
                    max_data: max,
                };
                let pdu = match parse(&framer, body) {
                    Ok(p) => p,
                    Err(e) => {
                        // A PDU beyond the negotiated receive length, or one whose
                        // lengths disagree with the Send: the connection ends (RFC
                        // 7145 §7.2: an iSER protocol error).
                        tracing::info!(%peer, "iSER: dropping connection: {e}");
                        return Err("framing error");
                    }
                };
                if pdu.opcode() == op::SCSI_CMD {
                    let b = Buffers {
                        write: h.write,
                        read: h.read,
                        solicited_from: None,
                    };
                    self.stags.insert(pdu.itt(), b);
                }
                if let Some(f) = &mut self.full {
                    if unexpected(&pdu) {
                        self.unexpected += 1;
                        let limit = match f.params.max_outstanding_unexpected_pdus {
                            0 => MAX_OUTSTANDING_UNEXPECTED_PDUS,
                            n => n,
                        };
                        if self.unexpected > limit {
                            // More unexpected PDUs outstanding at once than the
                            // MaxOutstandingUnexpectedPDUs we declared: none of this
                            // batch is answered yet, so all were outstanding together,
                            // which RFC 7145 §6.3.4 forbids the initiator. Past it, its
                            // Sends eat the receives posted for the CmdSN window, and
                            // once those are gone the RDMA layer ends the connection
                            // anyway (a Send that finds no receive posted for it). So
                            // it ends here, as a protocol error: this connection alone.
                            tracing::info!(
                                %peer,
                                limit,
                                "iSER: dropping connection: more unexpected PDUs at once than MaxOutstandingUnexpectedPDUs"
                            );
                            return Err("protocol error");
                        }
                    }
                    f.session.on_pdu(pdu, &mut self.actions);
                    Ok(())
                } else {
                    self.login_pdu(pdu).await
                }
            }
        }
    }

    async fn login_pdu(&mut self, pdu: Pdu) -> Result<(), Ended> {
        let peer = self.conn.peer;
        if pdu.opcode() != op::LOGIN_REQ {
            tracing::info!(%peer, opcode = pdu.opcode(), "non-login PDU during login");
            return Err("protocol error");
        }
        let st = self.login.as_mut().expect("login phase");
        st.isid.copy_from_slice(&pdu.bhs[8..14]);
        st.tsih = u16::from_be_bytes([pdu.bhs[14], pdu.bhs[15]]);
        let mut ctx = Ctx {
            daemon: &self.daemon,
            peer,
            target: st.target.take(),
            tpgt: 1,
            isid: st.isid,
            tsih: st.tsih,
            locked_out: st.locked_out,
        };
        let step = st.login.handle(&pdu, &mut ctx);
        st.target = ctx.target.take();
        match step {
            LoginStep::Continue(rsp) => {
                self.conn.send_pdu(&rsp);
                Ok(())
            }
            LoginStep::Fail(rsp) => {
                if login_failed(&self.daemon, &st.login, peer, st.locked_out) {
                    tokio::time::sleep(crate::guard::FAIL_DELAY).await;
                }
                self.conn.send_pdu(&rsp);
                self.closing = Some("login failed");
                Ok(())
            }
            LoginStep::Complete { response, params } => {
                let st = self.login.take().expect("login phase");
                self.full_feature(params, response, st.target).await;
                Ok(())
            }
        }
    }

    /// Registers the session and sends the final Login Response (as the TCP transport
    /// does: only once `show` and the limits count it).
    async fn full_feature(
        &mut self,
        mut params: SessionParams,
        response: Pdu,
        target: Option<Arc<Target>>,
    ) {
        let (peer, local) = (self.conn.peer, self.conn.local);
        let discovery = params.session_type == SessionType::Discovery;
        if params.rdma_extensions {
            params.max_recv_data_segment_length = params.target_recv_data_segment_length;
            params.max_xmit_data_segment_length = params.initiator_recv_data_segment_length;
        } else {
            // A discovery session over iSER (RDMAExtensions not negotiated): the Sends
            // still have to fit the slots.
            params.max_xmit_data_segment_length =
                params.max_xmit_data_segment_length.min(DATA_LIMIT as u32);
        }
        let nexus = match (discovery, target) {
            (false, Some(t)) => {
                let id = self.daemon.next_id();
                let mut new = crate::transport::iscsi::registration::new_session(
                    id, &t, &params, 1, peer, local,
                );
                new.info.transport = super::NAME;
                new.keys
                    .values_mut()
                    .for_each(|k| k.extend(iser_keys(&params)));
                let nexus = Nexus::attach(
                    &self.daemon,
                    new,
                    self.commands.sender(),
                    self.close.clone(),
                )
                .await;
                tracing::info!(
                    %peer,
                    initiator = %params.initiator_name,
                    target = %t.name,
                    rdma_extensions = params.rdma_extensions,
                    trdsl = params.target_recv_data_segment_length,
                    irdsl = params.initiator_recv_data_segment_length,
                    send_with_invalidate = self.conn.send_inv,
                    rdma_read_depth = self.conn.ord,
                    "iSER session logged in"
                );
                Some(nexus)
            }
            _ => None,
        };
        self.conn.send_pdu(&response);
        let session = Session::new(SessionConfig {
            discovery,
            max_xmit_data_segment_length: params.max_xmit_data_segment_length,
            max_recv_data_segment_length: params.max_recv_data_segment_length,
            first_burst_length: params.first_burst_length,
            max_burst_length: params.max_burst_length,
            max_outstanding_r2t: u32::from(params.max_outstanding_r2t),
            immediate_data: params.immediate_data,
            initial_r2t: params.initial_r2t,
            exp_cmd_sn: params.exp_cmd_sn,
            stat_sn: params.stat_sn,
            cid: params.cid,
        });
        let framer = Framer {
            header_digest: false,
            data_digest: false,
            max_data: params.max_recv_data_segment_length as usize,
        };
        self.full = Some(Full {
            params,
            session,
            text: TextExchange::default(),
            nexus,
            framer,
        });
    }

    fn apply(&mut self, c: Completion) -> Result<(), Ended> {
        let f = self.full.as_mut().expect("full feature phase");
        apply(c, &mut f.session, &mut self.actions, self.conn.peer)
    }

    fn carry_out_actions(&mut self) {
        let mut i = 0;
        while i < self.actions.len() {
            let a = std::mem::replace(&mut self.actions[i], Action::Close(""));
            self.carry_out(a);
            i += 1;
        }
        self.actions.clear();
        crate::coalesce::answered(self.commands.take_answered());
    }

    fn carry_out(&mut self, a: Action) {
        match a {
            Action::Send(p) if p.opcode() == op::R2T => self.rdma_read(p),
            Action::Send(p) if p.opcode() == op::SCSI_RSP => {
                let b = self.stags.remove(&p.itt());
                self.conn.send_response(&p, b);
            }
            Action::Send(p) => self.conn.send_pdu(&p),
            Action::SendDataIn(d) => self.data_in(d),
            Action::Execute(req) => self.execute(req),
            Action::TaskManagement(t) => self.task_management(t),
            Action::Text(req) => self.text(req),
            Action::Close(why) => {
                if !why.is_empty() {
                    self.closing = Some(why);
                }
            }
        }
    }

    /// An R2T becomes an RDMA Read of the initiator's write buffer (RFC 7145 §7.3.6);
    /// its data comes back as the Data-Out answering the R2T.
    fn rdma_read(&mut self, r2t: Pdu) {
        let itt = r2t.itt();
        let (offset, len) = (r2t.u32_at(40), r2t.u32_at(44));
        if self.conn.ord == 0 {
            // The initiator's CM request offered no responder resources: an RDMA Read
            // would wait on the send queue for good.
            tracing::info!(peer = %self.conn.peer, itt, "iSER: R2T needed but the initiator takes no RDMA Reads");
            self.closing = Some("protocol error");
            return;
        }
        let Some((w, from)) = self.stags.get_mut(&itt).and_then(|b| {
            let from = *b.solicited_from.get_or_insert(offset);
            Some((b.write?, from))
        }) else {
            // A WRITE without a Write STag: the initiator gave us nowhere to read from
            // (RFC 7145 §7.3.6): its connection ends.
            tracing::info!(peer = %self.conn.peer, itt, "iSER: R2T needed but no Write STag");
            self.closing = Some("protocol error");
            return;
        };
        let mut d = Pdu::new(op::DATA_OUT);
        d.set_flags(0x80);
        d.set_lun_raw(r2t.lun_raw());
        d.set_itt(itt);
        d.set_ttt(r2t.ttt());
        d.set_u32(36, 0); // DataSN: the one PDU of this sequence
        d.set_u32(40, offset);
        let mut buf = rtgt_backstore::bufpool::take(len as usize);
        buf.resize(len as usize, 0);
        let remote = Stag {
            stag: w.stag,
            base: w.base + u64::from(offset.saturating_sub(from)),
        };
        if let Err(e) = self
            .conn
            .rdma(ibv_wr_opcode::IBV_WR_RDMA_READ, remote, buf, Some(d))
        {
            tracing::warn!(peer = %self.conn.peer, "iSER: {e:#}");
            self.closing = Some("out of resources");
        }
    }

    /// Data-In as an RDMA Write into the initiator's read buffer (RFC 7145 §7.3.5), then
    /// the status as a SCSI Response when it rode in the last Data-In (phase collapse
    /// does not exist in iSER).
    fn data_in(&mut self, d: DataIn) {
        let Some(last) = d.pdus.last() else { return };
        let itt = last.itt();
        let status = last.flags() & 0x01 != 0;
        let rsp = status.then(|| {
            let mut r = Pdu::new(op::SCSI_RSP);
            r.set_flags(0x80 | (last.flags() & 0x06));
            r.bhs[3] = last.bhs[3];
            r.set_itt(itt);
            r.bhs[24..36].copy_from_slice(&last.bhs[24..36]); // StatSN, ExpCmdSN, MaxCmdSN
            r.set_u32(36, d.pdus.len() as u32); // ExpDataSN
            r.set_u32(44, last.u32_at(44)); // residual
            r
        });
        let Some(rd) = self.stags.get(&itt).and_then(|b| b.read) else {
            tracing::info!(peer = %self.conn.peer, itt, "iSER: Data-In but no Read STag");
            self.closing = Some("protocol error");
            return;
        };
        if let Err(e) = self
            .conn
            .rdma(ibv_wr_opcode::IBV_WR_RDMA_WRITE, rd, d.data, None)
        {
            tracing::warn!(peer = %self.conn.peer, "iSER: {e:#}");
            self.closing = Some("out of resources");
            return;
        }
        if let Some(r) = rsp {
            let b = self.stags.remove(&itt);
            self.conn.send_response(&r, b);
        }
    }

    fn execute(&mut self, req: ScsiRequest) {
        let Some(f) = self.full.as_mut() else { return };
        let Some(nexus) = &f.nexus else { return };
        let cmd = ScsiCommand {
            nexus: nexus.it().clone(),
            lun: rtgt_scsi::lun_from_sam(req.lun),
            cdb: req.cdb,
            data_out: req.data_out,
            expected_data_in: req.expected_data_in,
            attr: to_attr(req.attr),
            tag: u64::from(req.itt),
        };
        let (session, actions, closing, peer) = (
            &mut f.session,
            &mut self.actions,
            &mut self.closing,
            self.conn.peer,
        );
        self.commands.submit(nexus, cmd, |done| {
            if let Err(why) = apply(done, session, actions, peer) {
                *closing = Some(why);
            }
        });
    }

    fn task_management(&mut self, tmf: TmfRequest) {
        let f = self.full.as_mut().expect("full feature phase");
        let (Some(nexus), Some(func)) = (&f.nexus, to_tm(tmf.function)) else {
            let r = rtgt_iscsi::session::tmf_response::NOT_SUPPORTED;
            f.session.on_tmf_done(tmf.itt, r, &mut self.actions);
            return;
        };
        let lun = rtgt_scsi::lun_from_sam(tmf.lun);
        let referenced = tmf.referenced.map(u64::from);
        if let Some(r) =
            self.commands
                .task_management(nexus, func, lun, referenced, u64::from(tmf.itt))
        {
            f.session
                .on_tmf_done(tmf.itt, tmf_code(r), &mut self.actions);
        }
    }

    fn text(&mut self, req: Pdu) {
        let f = self.full.as_mut().expect("full feature phase");
        let target = f.nexus.as_ref().map(|n| &**n.target());
        // SendTargets over iSER answers the iSER portal the connection came in on: the
        // TCP portals may be elsewhere (another address, another port).
        let targets = crate::transport::iscsi::send_targets::discovered_at(
            &self.daemon,
            &f.params,
            self.conn.peer,
            vec![(self.conn.local, 1)],
            target,
        );
        match f.text.handle(&req, &f.params, &targets) {
            Ok(rsp) => f.session.send_text_response(rsp, &mut self.actions),
            Err(reason) => {
                let r = f.session.reject(&req, reason.reason());
                self.conn.send_pdu(&r);
            }
        }
    }

    /// NOP-In pings (RFC 7143 §11.19), as on TCP connections: a quiet interval sends
    /// one; `nop_count` quiet intervals with one unanswered end the connection.
    fn check_liveness(&mut self) -> Result<(), Ended> {
        let Some(f) = self.full.as_mut() else {
            return Ok(());
        };
        match self.liveness.check(f.session.ping_outstanding()) {
            Verdict::Gone => {
                tracing::info!(peer = %self.conn.peer, "no answer to NOP-In pings, dropping connection");
                return Err("ping timeout");
            }
            Verdict::Ping => {
                if let Some(p) = f.session.ping() {
                    self.pings += 1;
                    self.actions.push(Action::Send(p));
                }
            }
            Verdict::Heard => {}
        }
        Ok(())
    }

    async fn finish(&mut self, why: Ended) {
        if self.stop_asked {
            let until = tokio::time::Instant::now() + crate::stop::DRAIN;
            self.commands.drain(until).await;
        }
        if let Some(f) = &mut self.full {
            if let Some(n) = f.nexus.as_mut() {
                n.end();
                // RDMA Reads still out when the connection ended (the initiator gone in
                // the middle of reading a WRITE's data): their buffers are freed with
                // the queue pair, after it is destroyed; their commands never ran.
                let reads = self.conn.rdma.iter().flatten().filter(|o| o.read.is_some());
                tracing::info!(
                    peer = %self.conn.peer,
                    initiator = %f.params.initiator_name,
                    sends_with_invalidate = self.conn.invalidated,
                    nop_in_pings = self.pings,
                    rdma_reads_in_flight = reads.count(),
                    "iSER session ended: {why}"
                );
            }
        }
    }
}

/// An "unexpected" PDU (RFC 7145 §6.3.4): one the initiator sends for immediate
/// delivery, outside the CmdSN window's credit, except a NOP-Out answering our ping
/// (ITT 0xffffffff), which the initiator sends when asked.
fn unexpected(p: &Pdu) -> bool {
    p.immediate() && !(p.opcode() == op::NOP_OUT && p.itt() == rtgt_iscsi::pdu::RESERVED_TAG)
}

/// The STag a command's SCSI Response invalidates: its one buffer's, where the
/// initiator takes Send with Invalidate; none for a command with both (or neither).
fn to_invalidate(send_inv: bool, b: &Buffers) -> Option<u32> {
    match (b.read, b.write) {
        (Some(s), None) | (None, Some(s)) if send_inv => Some(s.stag),
        _ => None,
    }
}

/// The RDMA Read depths of the accept: (initiator depth, responder resources), from
/// the connection request and our device's limits.
///
/// The request's values are already the passive side's view: the CM hands us the
/// REQ's Responder Resources as `initiator_depth` and its Initiator Depth as
/// `responder_resources` (as tgt reads them too). So `initiator_depth` is how many RDMA
/// Reads the initiator serves at once: the most we may have outstanding (our ORD). We
/// serve none; the peer's own ORD is granted within our device's. An ORD of 0 would
/// leave every RDMA Read waiting on the send queue for good: libiscsi asks with
/// responder resources 4 and initiator depth 0, and reading the fields the other way
/// round gave it an ORD of 0, so none of its WRITEs ever completed.
fn read_depths(req: &rdma_conn_param, dev: &ibv_device_attr) -> (u8, u8) {
    let cap = |n: i32| u8::try_from(n.max(0)).unwrap_or(u8::MAX);
    (
        req.initiator_depth.min(cap(dev.max_qp_init_rd_atom)),
        req.responder_resources.min(cap(dev.max_qp_rd_atom)),
    )
}

/// The iSER CM header's flag (IB Annex A12): the side that sets it does not take Send
/// with Invalidate.
const SEND_W_INV_NOT_SUPPORTED: u8 = 0x40;

/// The flags byte of the initiator's iSER CM header, in its connection request's
/// private data; without one, as if it said it takes no Send with Invalidate.
///
/// # Safety
/// `req` is a live connection request's parameters.
unsafe fn cm_header_flags(req: &rdma_conn_param) -> u8 {
    if req.private_data.is_null() || req.private_data_len < 1 {
        return SEND_W_INV_NOT_SUPPORTED;
    }
    *req.private_data.cast::<u8>()
}

/// A PDU out of one Send's bytes (after the iSER header): its lengths must agree with
/// the Send's.
fn parse(framer: &Framer, body: &[u8]) -> Result<Pdu, String> {
    let bhs: [u8; BHS_LEN] = body
        .get(..BHS_LEN)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| format!("a Send of {} bytes holds no BHS", body.len()))?;
    let rest = framer.rest_len(&bhs).map_err(|e| e.to_string())?;
    // The Send's length delimits the PDU, so some initiators (libiscsi) leave out the
    // data segment's padding to 4 bytes: taken as if it were there.
    let dsl = u32::from_be_bytes([0, bhs[5], bhs[6], bhs[7]]) as usize;
    let pad = (4 - dsl % 4) % 4;
    if pad > 0 && body.len() == BHS_LEN + rest - pad {
        let mut padded = body[BHS_LEN..].to_vec();
        padded.resize(rest, 0);
        return framer.parse(bhs, &padded).map_err(|(e, _)| e.to_string());
    }
    if body.len() != BHS_LEN + rest {
        return Err(format!(
            "PDU of {} bytes in a Send of {}",
            BHS_LEN + rest,
            body.len()
        ));
    }
    framer
        .parse(bhs, &body[BHS_LEN..])
        .map_err(|(e, _)| e.to_string())
}

/// The iSER keys of a session, for `rtgtadm sessions`.
fn iser_keys(p: &SessionParams) -> Vec<(String, String)> {
    vec![
        (
            "RDMAExtensions".into(),
            if p.rdma_extensions { "Yes" } else { "No" }.into(),
        ),
        (
            "TargetRecvDataSegmentLength".into(),
            p.target_recv_data_segment_length.to_string(),
        ),
        (
            "InitiatorRecvDataSegmentLength".into(),
            p.initiator_recv_data_segment_length.to_string(),
        ),
        (
            "MaxOutstandingUnexpectedPDUs".into(),
            p.max_outstanding_unexpected_pdus.to_string(),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framer(max: usize) -> Framer {
        Framer {
            header_digest: false,
            data_digest: false,
            max_data: max,
        }
    }

    fn nop_out(data: usize) -> Vec<u8> {
        let mut p = Pdu::new(op::NOP_OUT);
        p.set_flags(0x80);
        p.data = vec![7; data];
        p.fix_lengths();
        let mut b = Vec::new();
        p.encode_into(&mut b, false, false);
        b
    }

    /// The request's depths as the passive side's CM reports them (already swapped):
    /// libiscsi 1.19 connects with responder resources 4, initiator depth 0; Linux's
    /// ib_iser with responder resources = its device's max_qp_rd_atom, initiator depth 1.
    #[test]
    fn rdma_read_depth_is_what_the_initiator_serves() {
        // SAFETY: all-zero is a valid value of both C structs.
        let (mut req, mut dev): (rdma_conn_param, ibv_device_attr) =
            unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
        dev.max_qp_init_rd_atom = 128;
        dev.max_qp_rd_atom = 128;
        // libiscsi: the event says initiator_depth 4 (its responder resources).
        req.initiator_depth = 4;
        req.responder_resources = 0;
        assert_eq!(read_depths(&req, &dev), (4, 0));
        // ib_iser on soft-RoCE (max_qp_rd_atom 128).
        req.initiator_depth = 128;
        req.responder_resources = 1;
        assert_eq!(read_depths(&req, &dev), (128, 1));
        // Our device's limits bound both.
        dev.max_qp_init_rd_atom = 16;
        dev.max_qp_rd_atom = 0;
        assert_eq!(read_depths(&req, &dev), (16, 0));
    }

    #[test]
    fn a_response_invalidates_its_commands_one_stag() {
        let s = |stag| Some(Stag { stag, base: 0x1000 });
        let b = |read, write| Buffers {
            read,
            write,
            solicited_from: None,
        };
        assert_eq!(to_invalidate(true, &b(s(7), None)), Some(7));
        assert_eq!(to_invalidate(true, &b(None, s(9))), Some(9));
        assert_eq!(to_invalidate(true, &b(s(7), s(9))), None);
        assert_eq!(to_invalidate(true, &b(None, None)), None);
        assert_eq!(to_invalidate(false, &b(s(7), None)), None);
    }

    /// RFC 7145 §6.3.4: immediate PDUs count against MaxOutstandingUnexpectedPDUs,
    /// except a NOP-Out answering the target's ping; CmdSN-ordered ones do not.
    #[test]
    fn which_pdus_are_unexpected() {
        let pdu = |opcode, immediate, itt| {
            let mut p = Pdu::new(opcode);
            p.set_immediate(immediate);
            p.set_itt(itt);
            p
        };
        assert!(unexpected(&pdu(op::NOP_OUT, true, 5)));
        assert!(!unexpected(&pdu(op::NOP_OUT, true, 0xffff_ffff)));
        assert!(unexpected(&pdu(op::TMF_REQ, true, 6)));
        assert!(unexpected(&pdu(op::LOGOUT_REQ, true, 7)));
        assert!(!unexpected(&pdu(op::SCSI_CMD, false, 8)));
        assert!(!unexpected(&pdu(op::NOP_OUT, false, 9)));
        assert!(!unexpected(&pdu(op::DATA_OUT, false, 10)));
    }

    #[test]
    fn one_pdu_per_send() {
        let b = nop_out(100);
        let p = parse(&framer(8192), &b).unwrap();
        assert_eq!(p.opcode(), op::NOP_OUT);
        assert_eq!(p.data, vec![7; 100]);
    }

    /// RFC 7145 §7.2: a PDU whose data segment exceeds the negotiated
    /// TargetRecvDataSegmentLength ends the connection (an error, not a PDU).
    /// libiscsi sends the data segment without its padding; the Send delimits it.
    #[test]
    fn unpadded_data_segment() {
        let b = nop_out(526);
        assert_eq!(b.len(), BHS_LEN + 528);
        let p = parse(&framer(8192), &b[..BHS_LEN + 526]).unwrap();
        assert_eq!(p.data, vec![7; 526]);
        assert!(parse(&framer(8192), &b[..BHS_LEN + 525]).is_err());
    }

    #[test]
    fn larger_than_negotiated_is_refused() {
        let b = nop_out(8193);
        assert!(parse(&framer(8192), &b).is_err());
        assert!(parse(&framer(16384), &b).is_ok());
    }

    /// A Send holding less or more than its BHS says (truncated, or two PDUs in one
    /// message) is refused too: iSER carries exactly one PDU per Send.
    #[test]
    fn lengths_must_match_the_send() {
        let b = nop_out(100);
        assert!(parse(&framer(8192), &b[..b.len() - 4]).is_err());
        let mut two = b.clone();
        two.extend_from_slice(&b);
        assert!(parse(&framer(8192), &two).is_err());
        assert!(parse(&framer(8192), &b[..20]).is_err());
    }
}
