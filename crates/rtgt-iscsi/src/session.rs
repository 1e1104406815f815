//! Full feature phase of one iSCSI connection, sans-IO (RFC 7143 §3, §4.2, §11).
//!
//! [`Session::on_pdu`] consumes a received PDU and emits [`Action`]s: PDUs to send,
//! SCSI commands to execute, task management to carry out, or closing the connection.
//! Completions come back through [`Session::on_scsi_done`] and [`Session::on_tmf_done`].
//! The driver owns the socket, the SCSI core and the clock.
//!
//! Scope: one connection per session (MaxConnections=1) at ErrorRecoveryLevel 0.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use rustc_hash::FxHashMap;

use crate::pdu::{op, reject, Pdu, RESERVED_TAG};
use crate::serial;

/// The CmdSN window we grant (MaxCmdSN - ExpCmdSN + 1).
pub const CMD_WINDOW: u32 = 128;
/// Largest Expected Data Transfer Length accepted, so what one connection can make us hold
/// stays bounded (at most CMD_WINDOW commands of this size, and only as much as the peer
/// actually sends). Four times the MAXIMUM TRANSFER LENGTH the Block Limits VPD page
/// reports (16 MiB), for initiators that ignore it; the SCSI layer refuses the rest.
pub const MAX_EDTL: u32 = 64 << 20;
/// Most SCSI tasks a session holds at once. Non-immediate commands are already bounded by
/// the CmdSN window; immediate ones bypass it (RFC 7143 §3.2.2.1), so past this bound a
/// new command is answered TASK SET FULL instead of being run (SAM-5 5.3.1).
pub const MAX_TASKS: usize = 2 * CMD_WINDOW as usize;
const TASK_SET_FULL: u8 = 0x28;

/// Negotiated values the full feature phase needs.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub discovery: bool,
    /// Largest data segment we may send (the initiator's MaxRecvDataSegmentLength).
    pub max_xmit_data_segment_length: u32,
    /// Largest data segment we accept.
    pub max_recv_data_segment_length: u32,
    pub first_burst_length: u32,
    pub max_burst_length: u32,
    pub max_outstanding_r2t: u32,
    pub immediate_data: bool,
    pub initial_r2t: bool,
    /// ExpCmdSN after login (the leading login's CmdSN).
    pub exp_cmd_sn: u32,
    /// The next StatSN to send.
    pub stat_sn: u32,
    /// This connection's CID: the one connection of the session (MaxConnections=1), so
    /// the only one a Logout may name (RFC 7143 §11.14.3).
    pub cid: u16,
}

/// SAM task attribute codes from the SCSI Command PDU (RFC 7143 §11.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attr {
    Untagged,
    Simple,
    Ordered,
    HeadOfQueue,
    Aca,
}

/// A CDB: 16 bytes from the BHS, more from an Extended CDB AHS (RFC 7143 §11.3.5).
/// Held inline up to 16 bytes, so receiving a command allocates nothing.
pub type Cdb = smallvec::SmallVec<[u8; 16]>;

/// A SCSI command ready to execute: all its Data-Out has arrived.
#[derive(Debug)]
pub struct ScsiRequest {
    pub itt: u32,
    pub lun: [u8; 8],
    pub cdb: Cdb,
    pub data_out: Vec<u8>,
    /// Expected Data-In length (EDTL of a read, or the bidirectional read AHS).
    pub expected_data_in: u32,
    pub attr: Attr,
}

/// What the SCSI layer returned.
#[derive(Debug, Default)]
pub struct ScsiOutcome {
    pub status: u8,
    pub data_in: Vec<u8>,
    pub sense: Vec<u8>,
    /// Bytes the CDB asked to write, if any (for residuals of write commands).
    pub data_out_len: Option<u32>,
}

/// Task management functions (RFC 7143 §11.5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TmfFunction {
    AbortTask,
    AbortTaskSet,
    ClearAca,
    ClearTaskSet,
    LogicalUnitReset,
    TargetWarmReset,
    TargetColdReset,
    TaskReassign,
}

/// TMF responses (RFC 7143 §11.6.1).
pub mod tmf_response {
    pub const FUNCTION_COMPLETE: u8 = 0;
    pub const TASK_DOES_NOT_EXIST: u8 = 1;
    pub const LUN_DOES_NOT_EXIST: u8 = 2;
    pub const TASK_STILL_ALLEGIANT: u8 = 3;
    pub const REASSIGNMENT_NOT_SUPPORTED: u8 = 4;
    pub const NOT_SUPPORTED: u8 = 5;
    pub const AUTHORIZATION_FAILED: u8 = 6;
    pub const FUNCTION_REJECTED: u8 = 255;
}

#[derive(Debug)]
pub struct TmfRequest {
    pub itt: u32,
    pub function: TmfFunction,
    pub lun: [u8; 8],
    /// ITTs of the tasks this function aborted on this connection; the driver must make
    /// sure they never complete to the initiator (their results are dropped here anyway).
    pub aborted: Vec<u32>,
    /// ABORT TASK: the Referenced Task Tag.
    pub referenced: Option<u32>,
}

/// Data-In PDUs that carry slices of one read buffer (RFC 7143 §11.7). Each header's
/// DataSegmentLength and BufferOffset name its slice of `data`; the driver sends the
/// buffer as it is, so the data is never copied into per-PDU segments.
#[derive(Debug)]
pub struct DataIn {
    /// Headers only: their `data` is empty, DataSegmentLength is set in the BHS. One is
    /// held inline, so a read of up to MaxRecvDataSegmentLength (256 KiB as usually
    /// negotiated) allocates nothing here; more inline made every [`Action`] larger, and
    /// actions are moved several times per command.
    pub pdus: smallvec::SmallVec<[Pdu; 1]>,
    pub data: Vec<u8>,
}

impl DataIn {
    /// The data segment that follows `pdu` (one of [`DataIn::pdus`]).
    pub fn segment(&self, pdu: &Pdu) -> &[u8] {
        let off = pdu.buffer_offset() as usize;
        &self.data[off..off + pdu.data_segment_len()]
    }
}

#[derive(Debug)]
pub enum Action {
    Send(Pdu),
    /// Send these Data-In PDUs with their data from the read buffer.
    SendDataIn(DataIn),
    Execute(ScsiRequest),
    /// Carry out the SCSI side of a TMF, then call [`Session::on_tmf_done`].
    TaskManagement(TmfRequest),
    /// A Text Request for the text negotiator; answer with [`Session::send_text_response`].
    Text(Pdu),
    /// Send what was queued, then close the connection (logout or fatal protocol error).
    Close(&'static str),
}

#[derive(Debug, PartialEq, Eq)]
enum TaskState {
    /// Gathering Data-Out.
    Receiving,
    /// With the SCSI layer.
    Executing,
}

#[derive(Debug)]
struct Task {
    lun: [u8; 8],
    cdb: Cdb,
    attr: Attr,
    cmd_sn: u32,
    edtl: u32,
    read: bool,
    write: bool,
    expected_data_in: u32,
    data: Vec<u8>,
    received: u32,
    /// Unsolicited Data-Out still expected (the command's F bit was 0).
    unsolicited_open: bool,
    /// Outstanding R2Ts: TTT -> (offset, length, next DataSN expected).
    r2ts: BTreeMap<u32, (u32, u32, u32)>,
    /// Next DataSN expected in the unsolicited Data-Out sequence.
    unsolicited_data_sn: u32,
    /// Next offset to solicit.
    next_r2t_offset: u32,
    r2t_sn: u32,
    /// The Data-Out went wrong (a digest error, a DataSN out of sequence): the task
    /// fails with this sense once its data is in, since ERL 0 cannot retransmit
    /// (RFC 7143 §7.8, §7.12).
    failed: Option<Vec<u8>>,
    state: TaskState,
    /// When the command arrived: an abort from another I_T nexus covers only tasks that
    /// were there before it (SAM-5 7.x acts on the task set as it is).
    /// Set only for a task that waits for Data-Out, the only state in which this is
    /// consulted (a clock read per command was a measurable share of a 4K read).
    arrived: Option<Instant>,
}

/// How many aborted ITTs whose late Data-Out is dropped silently are remembered.
const ABORTED_MEMORY: usize = 256;

pub struct Session {
    cfg: SessionConfig,
    stat_sn: u32,
    exp_cmd_sn: u32,
    /// Commands that arrived ahead of a CmdSN gap, delivered when it fills.
    held: BTreeMap<u32, Pdu>,
    /// Unsolicited Data-Out of held commands, replayed when the command is delivered.
    held_data: Vec<Pdu>,
    /// CmdSNs of aborted commands that never ran (held, or not received yet): they
    /// count as received, so the window moves past them (RFC 7143 §11.5.1 b).
    consumed: std::collections::BTreeSet<u32>,
    /// By ITT. FxHash: looked up several times per command, and SipHash's flooding
    /// resistance buys nothing for at most [`MAX_TASKS`] entries per session.
    tasks: FxHashMap<u32, Task>,
    next_ttt: u32,
    /// Outstanding target NOP-In ping TTT.
    ping_ttt: Option<u32>,
    /// Logout answered: everything after is ignored.
    logged_out: bool,
    /// Recently aborted tasks that were still receiving Data-Out: the initiator may keep
    /// sending it for a while (RFC 7143 §11.5.1 lets it answer outstanding R2Ts), and
    /// it is dropped without a Reject.
    aborted: VecDeque<u32>,
}

/// SCSI status CHECK CONDITION with ABORTED COMMAND / PROTOCOL SERVICE CRC ERROR
/// (SAM-5 / SPC-4 0x47/0x05), fixed format.
fn crc_error_sense() -> Vec<u8> {
    let mut s = vec![0u8; 18];
    s[0] = 0x70;
    s[2] = 0x0b;
    s[7] = 10;
    s[12] = 0x47;
    s[13] = 0x05;
    s
}

/// ABORTED COMMAND / DATA PHASE ERROR (SPC-4 0x4B/0x00), fixed format.
fn data_phase_error_sense() -> Vec<u8> {
    let mut s = crc_error_sense();
    s[12] = 0x4b;
    s[13] = 0x00;
    s
}

impl Session {
    pub fn new(cfg: SessionConfig) -> Self {
        Self {
            stat_sn: cfg.stat_sn,
            exp_cmd_sn: cfg.exp_cmd_sn,
            cfg,
            held: BTreeMap::new(),
            held_data: Vec::new(),
            consumed: std::collections::BTreeSet::new(),
            tasks: FxHashMap::default(),
            next_ttt: 1,
            ping_ttt: None,
            logged_out: false,
            aborted: VecDeque::new(),
        }
    }

    pub fn config(&self) -> &SessionConfig {
        &self.cfg
    }

    pub fn exp_cmd_sn(&self) -> u32 {
        self.exp_cmd_sn
    }

    /// The StatSN the next status will carry.
    pub fn stat_sn(&self) -> u32 {
        self.stat_sn
    }

    pub fn max_cmd_sn(&self) -> u32 {
        self.exp_cmd_sn.wrapping_add(CMD_WINDOW - 1)
    }

    /// Commands not yet answered.
    pub fn tasks_in_flight(&self) -> usize {
        self.tasks.len()
    }

    fn alloc_ttt(&mut self) -> u32 {
        let t = self.next_ttt;
        self.next_ttt = self.next_ttt.wrapping_add(1);
        if self.next_ttt == RESERVED_TAG {
            self.next_ttt = 1;
        }
        t
    }

    /// Fills StatSN / ExpCmdSN / MaxCmdSN; advances StatSN if the PDU carries status.
    fn seal(&mut self, pdu: &mut Pdu, advance: bool) {
        pdu.set_stat_sn(self.stat_sn);
        if advance {
            self.stat_sn = self.stat_sn.wrapping_add(1);
        }
        pdu.set_exp_cmd_sn(self.exp_cmd_sn);
        pdu.set_max_cmd_sn(self.max_cmd_sn());
        pdu.fix_lengths();
    }

    /// A Reject PDU carrying the offending header (RFC 7143 §11.17).
    pub fn reject(&mut self, bad: &Pdu, reason: u8) -> Pdu {
        let mut r = Pdu::new(op::REJECT);
        r.set_flags(0x80);
        r.bhs[2] = reason;
        r.set_itt(RESERVED_TAG);
        r.data = bad.bhs.to_vec();
        self.seal(&mut r, true);
        r
    }

    /// The driver found a data digest error in `pdu` (header intact).
    pub fn on_data_digest_error(&mut self, pdu: Pdu, out: &mut Vec<Action>) {
        // RFC 7143 §7.8 / §11.17.1: discard and Reject with reason 0x02.
        if pdu.opcode() == op::DATA_OUT {
            if let Some(t) = self.tasks.get_mut(&pdu.itt()) {
                t.failed = Some(crc_error_sense());
                // Count the bytes as received so the transfer can finish and the task
                // complete with the CRC error sense rather than hang.
                let len = pdu.data_segment_len() as u32;
                t.received = t.received.saturating_add(len);
                let itt = pdu.itt();
                let fin = pdu.final_bit();
                let ttt = pdu.ttt();
                let r = self.reject(&pdu, reject::DATA_DIGEST_ERROR);
                out.push(Action::Send(r));
                self.after_data_out(itt, ttt, fin, out);
                return;
            }
        }
        let r = self.reject(&pdu, reject::DATA_DIGEST_ERROR);
        out.push(Action::Send(r));
    }

    /// Target-initiated NOP-In ping (RFC 7143 §11.19): returns the PDU to send, or None if
    /// one is already outstanding (the driver's timeout then ends the connection).
    pub fn ping(&mut self) -> Option<Pdu> {
        if self.ping_ttt.is_some() {
            return None;
        }
        let ttt = self.alloc_ttt();
        self.ping_ttt = Some(ttt);
        let mut p = Pdu::new(op::NOP_IN);
        p.set_flags(0x80);
        p.set_itt(RESERVED_TAG);
        p.set_ttt(ttt);
        // A ping does not advance StatSN (RFC 7143 §11.19.4).
        self.seal(&mut p, false);
        Some(p)
    }

    /// An Asynchronous Message asking the initiator to log out (RFC 7143 §11.9.1,
    /// AsyncEvent 1): it should send a Logout within `wait_secs` seconds (Parameter3)
    /// and no new commands meanwhile. Sent on every connection to be logged out.
    pub fn async_logout_request(&mut self, wait_secs: u16) -> Pdu {
        let mut p = Pdu::new(op::ASYNC);
        p.set_flags(0x80);
        p.set_itt(RESERVED_TAG);
        p.bhs[36] = 1; // AsyncEvent: the target requests Logout
        p.bhs[42..44].copy_from_slice(&wait_secs.to_be_bytes()); // Parameter3
                                                                 // An Async Message carries status numbering like a response (§11.9.2 StatSN).
        self.seal(&mut p, true);
        p
    }

    /// Whether a ping is waiting for its NOP-Out.
    pub fn ping_outstanding(&self) -> bool {
        self.ping_ttt.is_some()
    }

    pub fn on_pdu(&mut self, pdu: Pdu, out: &mut Vec<Action>) {
        if self.logged_out {
            return;
        }
        let opcode = pdu.opcode();
        match opcode {
            op::DATA_OUT => return self.on_data_out(pdu, out),
            op::SNACK => {
                // ERL 0: SNACK is not supported (RFC 7143 §11.16).
                let r = self.reject(&pdu, reject::COMMAND_NOT_SUPPORTED);
                out.push(Action::Send(r));
                return;
            }
            op::NOP_OUT if pdu.itt() == RESERVED_TAG => {
                // Answer to our ping, or an initiator ping that wants no reply; neither
                // carries a CmdSN to advance (RFC 7143 §11.18).
                if self.ping_ttt == Some(pdu.ttt()) {
                    self.ping_ttt = None;
                }
                return;
            }
            op::NOP_OUT | op::SCSI_CMD | op::TMF_REQ | op::TEXT_REQ | op::LOGOUT_REQ => {}
            _ => {
                // Unknown or target-only opcode (RFC 7143 §11.17.1: reason 0x04 for an
                // opcode that makes no sense here, 0x05 for one we do not implement).
                let reason = if opcode & 0x20 != 0 || opcode == op::LOGIN_REQ {
                    reject::PROTOCOL_ERROR
                } else {
                    reject::COMMAND_NOT_SUPPORTED
                };
                let r = self.reject(&pdu, reason);
                out.push(Action::Send(r));
                return;
            }
        }
        if !pdu.ahs.is_empty() && opcode != op::SCSI_CMD {
            // Only the SCSI Command has AHS types (RFC 7143 §11.2.2.1); elsewhere
            // TotalAHSLength must be 0: an invalid PDU field (§11.17.1).
            let r = self.reject(&pdu, reject::INVALID_PDU_FIELD);
            out.push(Action::Send(r));
            return;
        }
        if self.cfg.discovery && matches!(opcode, op::SCSI_CMD | op::TMF_REQ) {
            // RFC 7143 §4.3: a discovery session carries only Text, Logout and NOP.
            let r = self.reject(&pdu, reject::PROTOCOL_ERROR);
            out.push(Action::Send(r));
            return;
        }
        let cmd_sn = pdu.cmd_sn();
        if pdu.immediate() {
            // Immediate delivery: not ordered by CmdSN, does not advance it (§3.2.2.1).
            self.dispatch(pdu, out);
            return;
        }
        let max = self.max_cmd_sn();
        if serial::lt(cmd_sn, self.exp_cmd_sn) || serial::gt(cmd_sn, max) {
            // Outside the window: silently ignored (RFC 7143 §4.2.2.1).
            tracing::debug!(
                cmd_sn,
                exp = self.exp_cmd_sn,
                max,
                "CmdSN outside window, ignored"
            );
            return;
        }
        if self.consumed.remove(&cmd_sn) {
            // Its ABORT TASK came first: the command counts as received, and is dropped.
            if cmd_sn == self.exp_cmd_sn {
                self.exp_cmd_sn = self.exp_cmd_sn.wrapping_add(1);
                self.deliver_held(out);
            }
            return;
        }
        if cmd_sn != self.exp_cmd_sn {
            // Hold until the gap fills (commands are delivered in CmdSN order).
            self.held.entry(cmd_sn).or_insert(pdu);
            return;
        }
        self.exp_cmd_sn = self.exp_cmd_sn.wrapping_add(1);
        self.dispatch(pdu, out);
        self.deliver_held(out);
    }

    /// Delivers held commands whose turn has come, stepping over aborted CmdSNs.
    fn deliver_held(&mut self, out: &mut Vec<Action>) {
        loop {
            if let Some(next) = self.held.remove(&self.exp_cmd_sn) {
                self.exp_cmd_sn = self.exp_cmd_sn.wrapping_add(1);
                self.dispatch(next, out);
            } else if self.consumed.remove(&self.exp_cmd_sn) {
                self.exp_cmd_sn = self.exp_cmd_sn.wrapping_add(1);
            } else {
                break;
            }
        }
    }

    fn dispatch(&mut self, pdu: Pdu, out: &mut Vec<Action>) {
        match pdu.opcode() {
            op::SCSI_CMD => {
                let itt = pdu.itt();
                self.on_scsi_cmd(pdu, out);
                if self.held_data.iter().any(|d| d.itt() == itt) {
                    let (mine, rest) = std::mem::take(&mut self.held_data)
                        .into_iter()
                        .partition(|d| d.itt() == itt);
                    self.held_data = rest;
                    for d in mine {
                        self.on_data_out(d, out);
                    }
                }
            }
            op::NOP_OUT => {
                // RFC 7143 §11.19: echo the data in a NOP-In with the same ITT.
                let mut r = Pdu::new(op::NOP_IN);
                r.set_flags(0x80);
                r.set_lun_raw(pdu.lun_raw());
                r.set_itt(pdu.itt());
                r.set_ttt(RESERVED_TAG);
                r.data = pdu.data;
                self.seal(&mut r, true);
                out.push(Action::Send(r));
            }
            op::TMF_REQ => self.on_tmf(pdu, out),
            op::TEXT_REQ => out.push(Action::Text(pdu)),
            op::LOGOUT_REQ => self.on_logout(pdu, out),
            _ => unreachable!("filtered in on_pdu"),
        }
    }

    fn on_scsi_cmd(&mut self, pdu: Pdu, out: &mut Vec<Action>) {
        let itt = pdu.itt();
        let flags = pdu.flags();
        let read = flags & 0x40 != 0;
        let write = flags & 0x20 != 0;
        let attr = match flags & 0x07 {
            0 => Attr::Untagged,
            1 => Attr::Simple,
            2 => Attr::Ordered,
            3 => Attr::HeadOfQueue,
            4 => Attr::Aca,
            _ => Attr::Simple,
        };
        let edtl = pdu.edtl();
        if itt == RESERVED_TAG || self.tasks.contains_key(&itt) {
            // A tag in use is a protocol error (RFC 7143 §11.3.4 / §11.17.1 0x07 would
            // need ERL>0 semantics); reject as an invalid field.
            let reason = if itt == RESERVED_TAG {
                reject::INVALID_PDU_FIELD
            } else {
                reject::TASK_IN_PROGRESS
            };
            let r = self.reject(&pdu, reason);
            out.push(Action::Send(r));
            return;
        }
        if edtl > MAX_EDTL {
            tracing::info!(
                itt,
                edtl,
                "command with an oversized expected data transfer length"
            );
            let r = self.reject(&pdu, reject::INVALID_PDU_FIELD);
            out.push(Action::Send(r));
            return;
        }
        if !write && !pdu.data.is_empty() {
            // Immediate data on a command that is not a write.
            let r = self.reject(&pdu, reject::PROTOCOL_ERROR);
            out.push(Action::Send(r));
            return;
        }
        // Immediate data is unsolicited data: with ImmediateData=No there is none, and
        // it never exceeds FirstBurstLength (RFC 7143 §13.14) nor the EDTL.
        if write
            && (pdu.data.len() as u32 > edtl
                || pdu.data.len() as u32 > self.cfg.first_burst_length
                || (!pdu.data.is_empty() && !self.cfg.immediate_data))
        {
            let r = self.reject(&pdu, reject::PROTOCOL_ERROR);
            out.push(Action::Send(r));
            return;
        }
        // CDBs longer than 16 bytes come in an Extended CDB AHS (RFC 7143 §11.3.5); a
        // bidirectional command's read length in its own AHS (§11.3.4). An AHS of any
        // other type, or whose length disagrees with its type or overruns the header, is
        // an invalid PDU field (§11.2.2, §11.17.1), as is a read length on a command
        // that is not bidirectional.
        let ahs = match crate::ahs::parse_command(&pdu.ahs) {
            Ok(a) if a.bidi_read_length.is_none() || (read && write) => a,
            r => {
                tracing::info!(itt, ahs = ?r, "SCSI command with an invalid AHS");
                let r = self.reject(&pdu, reject::INVALID_PDU_FIELD);
                out.push(Action::Send(r));
                return;
            }
        };
        let mut cdb = Cdb::from_slice(pdu.cdb());
        if let Some(more) = ahs.extended_cdb {
            cdb.extend_from_slice(more);
        }
        let expected_data_in = match ahs.bidi_read_length {
            Some(n) => n,
            None if read => edtl,
            None => 0,
        };
        let received = pdu.data.len() as u32;
        let cmd_sn = pdu.cmd_sn();
        let lun = pdu.lun_raw();
        let mut data = pdu.data;
        if write {
            // Room for the first burst only: the buffer grows as Data-Out arrives, so a
            // peer that announces a large transfer and sends nothing costs nothing.
            let first = edtl.min(self.cfg.first_burst_length.max(received)) as usize;
            data.reserve(first.saturating_sub(data.len()));
        }
        let task = Task {
            lun,
            cdb,
            attr,
            cmd_sn,
            edtl,
            read,
            write,
            expected_data_in,
            data,
            received,
            unsolicited_open: write && flags & 0x80 == 0,
            r2ts: BTreeMap::new(),
            unsolicited_data_sn: 0,
            next_r2t_offset: 0,
            r2t_sn: 0,
            failed: None,
            state: TaskState::Receiving,
            arrived: None,
        };
        // A reused tag is a new task: its Data-Out is no longer a dead task's.
        self.aborted.retain(|&a| a != itt);
        self.tasks.insert(itt, task);
        if self.tasks.len() > MAX_TASKS {
            tracing::info!(itt, "task set full: {} tasks in this session", MAX_TASKS);
            if let Some(t) = self.tasks.get_mut(&itt) {
                t.state = TaskState::Executing;
                t.data = Vec::new();
            }
            let outcome = ScsiOutcome {
                status: TASK_SET_FULL,
                ..Default::default()
            };
            self.on_scsi_done(itt, outcome, out);
            return;
        }
        if write && received < edtl {
            let t = self.tasks.get_mut(&itt).unwrap();
            t.arrived = Some(Instant::now());
            // Unsolicited data may cover up to FirstBurstLength when InitialR2T=No
            // (RFC 7143 §13.11, §13.14); solicit the rest with R2Ts.
            let unsolicited = if self.cfg.initial_r2t {
                received
            } else {
                self.cfg.first_burst_length.min(edtl).max(received)
            };
            t.next_r2t_offset = if t.unsolicited_open {
                unsolicited
            } else {
                received
            };
            // Solicit once the unsolicited burst is over, as initiators expect.
            if !t.unsolicited_open {
                self.issue_r2ts(itt, out);
            }
        } else {
            self.maybe_execute(itt, out);
        }
    }

    fn issue_r2ts(&mut self, itt: u32, out: &mut Vec<Action>) {
        loop {
            let max_burst = self.cfg.max_burst_length;
            let max_r2t = self.cfg.max_outstanding_r2t.max(1) as usize;
            let Some(t) = self.tasks.get(&itt) else {
                return;
            };
            if t.r2ts.len() >= max_r2t || t.next_r2t_offset >= t.edtl {
                return;
            }
            let ttt = self.alloc_ttt();
            let t = self.tasks.get_mut(&itt).unwrap();
            let offset = t.next_r2t_offset;
            let len = (t.edtl - offset).min(max_burst);
            t.next_r2t_offset += len;
            t.r2ts.insert(ttt, (offset, len, 0));
            let r2t_sn = t.r2t_sn;
            t.r2t_sn += 1;
            let mut r = Pdu::new(op::R2T);
            r.set_flags(0x80);
            r.set_lun_raw(t.lun);
            r.set_itt(itt);
            r.set_ttt(ttt);
            r.set_u32(36, r2t_sn);
            r.set_u32(40, offset);
            r.set_u32(44, len);
            // R2T carries the next StatSN without advancing it (RFC 7143 §11.8).
            self.seal(&mut r, false);
            out.push(Action::Send(r));
        }
    }

    fn on_data_out(&mut self, pdu: Pdu, out: &mut Vec<Action>) {
        let itt = pdu.itt();
        if !self.tasks.contains_key(&itt) && self.held.values().any(|c| c.itt() == itt) {
            // Unsolicited data may overtake its command's turn in CmdSN order.
            if self.held_data.len() < 4 * CMD_WINDOW as usize {
                self.held_data.push(pdu);
            }
            return;
        }
        if !self.tasks.contains_key(&itt) && self.aborted.contains(&itt) {
            // Data-Out of an aborted task: dropped silently.
            return;
        }
        let ttt = pdu.ttt();
        let offset = pdu.buffer_offset();
        let len = pdu.data.len() as u32;
        let fin = pdu.final_bit();
        let valid = match self.tasks.get(&itt) {
            None => false,
            Some(t) if t.state != TaskState::Receiving || !t.write => false,
            Some(t) => {
                let in_r2t = if ttt == RESERVED_TAG {
                    t.unsolicited_open
                        && !self.cfg.initial_r2t
                        && offset
                            .checked_add(len)
                            .is_some_and(|e| e <= self.cfg.first_burst_length)
                } else {
                    t.r2ts
                        .get(&ttt)
                        .is_some_and(|&(o, l, _)| offset >= o && offset + len <= o + l)
                };
                in_r2t && offset.checked_add(len).is_some_and(|e| e <= t.edtl)
            }
        };
        if !valid {
            // Data-Out for an unknown task or transfer tag, or outside what was asked
            // for (RFC 7143 §11.7.x): Reject with Invalid PDU field... except a stray
            // unsolicited burst on InitialR2T=Yes, which is a protocol error.
            let reason = if ttt == RESERVED_TAG && self.cfg.initial_r2t {
                reject::PROTOCOL_ERROR
            } else {
                reject::INVALID_PDU_FIELD
            };
            let r = self.reject(&pdu, reason);
            out.push(Action::Send(r));
            return;
        }
        let t = self.tasks.get_mut(&itt).unwrap();
        // DataSN counts the Data-Out PDUs of each sequence from 0 (RFC 7143 §11.7.5).
        // A gap or reordering means the data cannot be trusted; at ErrorRecoveryLevel 0
        // there is no recovery R2T, so the task ends with CHECK CONDITION (ABORTED
        // COMMAND, DATA PHASE ERROR) once its transfer is over, and the session lives on.
        let want = if ttt == RESERVED_TAG {
            &mut t.unsolicited_data_sn
        } else {
            &mut t.r2ts.get_mut(&ttt).unwrap().2
        };
        if pdu.data_sn() != *want && t.failed.is_none() {
            tracing::info!(
                itt,
                ttt,
                got = pdu.data_sn(),
                want = *want,
                "Data-Out DataSN out of sequence"
            );
            t.failed = Some(data_phase_error_sense());
        }
        *want = want.wrapping_add(1);
        let end = (offset + len) as usize;
        if t.data.len() < end {
            t.data.resize(end, 0);
        }
        t.data[offset as usize..end].copy_from_slice(&pdu.data);
        t.received += len;
        self.after_data_out(itt, ttt, fin, out);
    }

    fn after_data_out(&mut self, itt: u32, ttt: u32, fin: bool, out: &mut Vec<Action>) {
        let Some(t) = self.tasks.get_mut(&itt) else {
            return;
        };
        if fin {
            if ttt == RESERVED_TAG {
                t.unsolicited_open = false;
            } else {
                t.r2ts.remove(&ttt);
            }
        }
        if t.received >= t.edtl {
            t.r2ts.clear();
            t.unsolicited_open = false;
            self.maybe_execute(itt, out);
        } else if !t.unsolicited_open {
            self.issue_r2ts(itt, out);
        }
    }

    fn maybe_execute(&mut self, itt: u32, out: &mut Vec<Action>) {
        let Some(t) = self.tasks.get_mut(&itt) else {
            return;
        };
        if t.state != TaskState::Receiving {
            return;
        }
        t.state = TaskState::Executing;
        if let Some(sense) = t.failed.take() {
            let outcome = ScsiOutcome {
                status: 0x02,
                sense,
                ..Default::default()
            };
            self.on_scsi_done(itt, outcome, out);
            return;
        }
        let data_out = std::mem::take(&mut t.data);
        out.push(Action::Execute(ScsiRequest {
            itt,
            lun: t.lun,
            cdb: std::mem::take(&mut t.cdb),
            data_out,
            expected_data_in: t.expected_data_in,
            attr: t.attr,
        }));
    }

    /// Forgets a task without answering it; a task still receiving Data-Out is
    /// remembered so its late Data-Out is dropped silently.
    fn forget_task(&mut self, itt: u32) -> bool {
        let Some(t) = self.tasks.remove(&itt) else {
            return false;
        };
        if t.state == TaskState::Receiving && t.write {
            if self.aborted.len() >= ABORTED_MEMORY {
                self.aborted.pop_front();
            }
            self.aborted.push_back(itt);
        }
        true
    }

    /// Tasks were aborted from another I_T nexus (a LUN reset, CLEAR TASK SET, hard
    /// reset or PREEMPT AND ABORT received elsewhere): drops, without answering them, the
    /// tasks `covered(lun)` selects that arrived before `before` and are still gathering
    /// Data-Out. Tasks already with the SCSI layer are its to end: it aborted those that
    /// were in its task set, and reports them through [`Session::on_scsi_aborted`];
    /// one whose Data-Out completed while the abort was on its way started after it
    /// and runs to completion (dropping it here would lose its response, and the unit
    /// attention it consumed). Returns the ITTs dropped.
    pub fn abort_tasks(&mut self, before: Instant, covered: impl Fn(&[u8; 8]) -> bool) -> Vec<u32> {
        let itts: Vec<u32> = self
            .tasks
            .iter()
            .filter(|(_, t)| {
                t.state == TaskState::Receiving
                    && t.arrived.is_none_or(|a| a < before)
                    && covered(&t.lun)
            })
            .map(|(&i, _)| i)
            .collect();
        for &i in &itts {
            self.forget_task(i);
        }
        itts
    }

    /// The SCSI layer says `itt` was aborted: it ends without a response (SAM-5 5.6,
    /// TAS=0).
    pub fn on_scsi_aborted(&mut self, itt: u32) {
        self.tasks.remove(&itt);
    }

    /// The SCSI layer finished `itt`. Results of aborted tasks are dropped.
    pub fn on_scsi_done(&mut self, itt: u32, outcome: ScsiOutcome, out: &mut Vec<Action>) {
        let Some(t) = self.tasks.remove(&itt) else {
            return;
        };
        let edtl = t.edtl;
        let mut data_in = outcome.data_in;
        // Residuals (RFC 7143 §11.4.5.1): what the CDB transfers, in the direction it
        // transfers, against what the initiator expects in that direction — EDTL for
        // the direction its R / W bit names, nothing for a direction it did not flag
        // (§11.3.1: R and W say which way data flows). More than expected is an
        // overflow: only the expected part moves (none, when the bit is missing, as for
        // a READ sent with W or with neither bit), and the command never ends GOOD
        // without the O bit and the count. The SCSI layer says how much Data-Out the
        // CDB takes (`data_out_len`, None for a command with none it knows of) and
        // returns all the Data-In the CDB produces.
        let (mut under, mut over, mut residual) = (false, false, 0u32);
        let expect_in = if t.read { t.expected_data_in } else { 0 };
        let expect_out = if t.write { edtl } else { 0 };
        let cdb_in = data_in.len() as u32;
        let (moved, expected) = match outcome.data_out_len {
            // A command that writes: its Data-Out against the write expectation.
            Some(used) if used > 0 || (t.write && cdb_in == 0) => (used, expect_out),
            // A Data-Out command this layer does not size (no length known): whatever
            // the initiator sent is taken as used, as before.
            None if t.write && !t.read && cdb_in == 0 => (edtl, edtl),
            // Otherwise the Data-In the CDB produced against the read expectation.
            _ => (cdb_in, expect_in),
        };
        if moved > expected {
            over = true;
            residual = moved - expected;
        } else if moved < expected {
            under = true;
            residual = expected - moved;
        }
        data_in.truncate(expect_in as usize);
        let good = outcome.status == 0 && outcome.sense.is_empty();
        // Data-In PDUs, at most MaxRecvDataSegmentLength each; F at every burst boundary.
        let mss = self.cfg.max_xmit_data_segment_length.max(512) as usize;
        let burst = self.cfg.max_burst_length.max(mss as u32) as usize;
        let total = data_in.len();
        let mut offset = 0usize;
        let mut data_sn = 0u32;
        let mut pdus = smallvec::SmallVec::with_capacity(total.div_ceil(mss));
        while offset < total {
            let in_burst = burst - (offset % burst);
            let n = mss.min(total - offset).min(in_burst);
            let last = offset + n == total;
            let mut p = Pdu::new(op::DATA_IN);
            let mut flags = 0u8;
            if last || (offset + n).is_multiple_of(burst) {
                flags |= 0x80;
            }
            p.set_lun_raw(t.lun);
            p.set_itt(itt);
            p.set_ttt(RESERVED_TAG);
            p.set_u32(36, data_sn);
            p.set_u32(40, offset as u32);
            let with_status = last && good;
            if with_status {
                // Status in the last Data-In (RFC 7143 §11.7.4, S bit).
                flags |= 0x01;
                if over {
                    flags |= 0x04;
                }
                if under {
                    flags |= 0x02;
                }
                p.bhs[3] = outcome.status;
                p.set_u32(44, residual);
            }
            p.set_flags(flags);
            self.seal(&mut p, with_status);
            // The data stays in `data_in`; the header says how much of it follows.
            p.bhs[5..8].copy_from_slice(&(n as u32).to_be_bytes()[1..]);
            pdus.push(p);
            data_sn += 1;
            offset += n;
        }
        if !pdus.is_empty() {
            out.push(Action::SendDataIn(DataIn {
                pdus,
                data: data_in,
            }));
        }
        if total > 0 && good {
            return;
        }
        let mut r = Pdu::new(op::SCSI_RSP);
        let mut flags = 0x80u8;
        if over {
            flags |= 0x04;
        }
        if under {
            flags |= 0x02;
        }
        r.set_flags(flags);
        r.bhs[2] = 0; // Command completed at target
        r.bhs[3] = outcome.status;
        r.set_itt(itt);
        r.set_u32(36, data_sn); // ExpDataSN: number of Data-In PDUs sent
        r.set_u32(44, residual);
        if !outcome.sense.is_empty() {
            // SenseLength then sense data (RFC 7143 §11.4.7).
            let mut d = Vec::with_capacity(2 + outcome.sense.len());
            d.extend_from_slice(&(outcome.sense.len() as u16).to_be_bytes());
            d.extend_from_slice(&outcome.sense);
            r.data = d;
        }
        self.seal(&mut r, true);
        out.push(Action::Send(r));
    }

    fn on_tmf(&mut self, pdu: Pdu, out: &mut Vec<Action>) {
        let itt = pdu.itt();
        let function = match pdu.flags() & 0x7f {
            1 => TmfFunction::AbortTask,
            2 => TmfFunction::AbortTaskSet,
            3 => TmfFunction::ClearAca,
            4 => TmfFunction::ClearTaskSet,
            5 => TmfFunction::LogicalUnitReset,
            6 => TmfFunction::TargetWarmReset,
            7 => TmfFunction::TargetColdReset,
            8 => TmfFunction::TaskReassign,
            _ => {
                self.tmf_respond(itt, tmf_response::FUNCTION_REJECTED, out);
                return;
            }
        };
        let lun = pdu.lun_raw();
        let tmf_cmd_sn = pdu.cmd_sn();
        let mut aborted = Vec::new();
        let mut referenced = None;
        match function {
            TmfFunction::AbortTask => {
                let rtt = pdu.u32_at(20);
                let ref_cmd_sn = pdu.u32_at(32);
                referenced = Some(rtt);
                if self.tasks.contains_key(&rtt) {
                    self.forget_task(rtt);
                    aborted.push(rtt);
                } else if let Some((&sn, _)) = self.held.iter().find(|(_, p)| p.itt() == rtt) {
                    // Not yet delivered: it will never run, and its CmdSN counts as
                    // received (RFC 7143 §11.5.1 b).
                    self.held.remove(&sn);
                    self.held_data.retain(|d| d.itt() != rtt);
                    self.consumed.insert(sn);
                    self.deliver_held(out);
                } else if serial::lt(ref_cmd_sn, tmf_cmd_sn)
                    && serial::le(self.exp_cmd_sn, ref_cmd_sn)
                {
                    // Within the window but not received: consider it received.
                    self.consumed.insert(ref_cmd_sn);
                    self.deliver_held(out);
                } else {
                    self.tmf_respond(itt, tmf_response::TASK_DOES_NOT_EXIST, out);
                    return;
                }
            }
            TmfFunction::AbortTaskSet
            | TmfFunction::ClearTaskSet
            | TmfFunction::LogicalUnitReset => {
                // Every task of this LU on this connection that precedes the TMF.
                aborted = self
                    .tasks
                    .iter()
                    .filter(|(_, t)| {
                        t.lun == lun && serial::lt(t.cmd_sn, tmf_cmd_sn.wrapping_add(1))
                    })
                    .map(|(&i, _)| i)
                    .collect();
                for &i in &aborted {
                    self.forget_task(i);
                }
            }
            TmfFunction::TargetWarmReset | TmfFunction::TargetColdReset => {
                aborted = self.tasks.keys().copied().collect();
                for &i in &aborted {
                    self.forget_task(i);
                }
            }
            TmfFunction::ClearAca => {}
            TmfFunction::TaskReassign => {
                // ERL 0: no connection recovery (RFC 7143 §11.5.1).
                self.tmf_respond(itt, tmf_response::REASSIGNMENT_NOT_SUPPORTED, out);
                return;
            }
        }
        out.push(Action::TaskManagement(TmfRequest {
            itt,
            function,
            lun,
            aborted,
            referenced,
        }));
    }

    /// The SCSI side of a TMF is done; `response` is a [`tmf_response`] code.
    pub fn on_tmf_done(&mut self, itt: u32, response: u8, out: &mut Vec<Action>) {
        self.tmf_respond(itt, response, out);
    }

    fn tmf_respond(&mut self, itt: u32, response: u8, out: &mut Vec<Action>) {
        let mut r = Pdu::new(op::TMF_RSP);
        r.set_flags(0x80);
        r.bhs[2] = response;
        r.set_itt(itt);
        self.seal(&mut r, true);
        out.push(Action::Send(r));
    }

    /// Sends a Text Response produced by the text negotiator for a request.
    pub fn send_text_response(&mut self, mut rsp: Pdu, out: &mut Vec<Action>) {
        self.seal(&mut rsp, true);
        out.push(Action::Send(rsp));
    }

    fn on_logout(&mut self, pdu: Pdu, out: &mut Vec<Action>) {
        // Reason 0: close session, 1: close connection, 2: remove for recovery
        // (RFC 7143 §11.14.1). With one connection per session they all end it.
        let reason = pdu.flags() & 0x7f;
        if reason > 2 {
            // Reason codes 3-127 are not defined (§11.14.1): an invalid PDU field.
            let r = self.reject(&pdu, reject::INVALID_PDU_FIELD);
            out.push(Action::Send(r));
            return;
        }
        let cid = pdu.u16_at(20);
        let mut r = Pdu::new(op::LOGOUT_RSP);
        r.set_flags(0x80);
        r.set_itt(pdu.itt());
        if reason == 1 && cid != self.cfg.cid {
            // Closing a connection the session does not have: response 1, CID not
            // found (§11.15.1); the logout fails and this connection goes on.
            r.bhs[2] = 1;
            self.seal(&mut r, true);
            out.push(Action::Send(r));
            return;
        }
        // Response 2: connection recovery is not supported at ERL 0 (§11.15.1).
        r.bhs[2] = if reason == 2 { 2 } else { 0 };
        r.set_u16(40, 0); // Time2Wait
        r.set_u16(42, 0); // Time2Retain
        self.seal(&mut r, true);
        out.push(Action::Send(r));
        self.logged_out = true;
        out.push(Action::Close("logout"));
    }
}

#[cfg(test)]
mod tests;
