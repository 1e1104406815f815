//! The full feature phase of one iSCSI connection (RFC 7143 §6): a loop whose every turn
//! waits for something to do, feeds whole PDUs to the sans-IO session machine, applies
//! what came back from commands and other nexuses, carries out the machine's actions
//! (running commands on the SCSI core through [`Commands`]) and writes everything out
//! in one vectored write.

use std::net::SocketAddr;
use std::sync::Arc;

use rtgt_iscsi::params::{SessionParams, SessionType};
use rtgt_iscsi::pdu::{Framer, Pdu};
use rtgt_iscsi::session::{
    tmf_response, Action, Attr, ScsiOutcome, ScsiRequest, Session, SessionConfig, TmfFunction,
    TmfRequest,
};
use rtgt_iscsi::text::TextExchange;
use rtgt_scsi::{ScsiCommand, TaskAttr, TmFunction, TmResponse};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{watch, Notify};

use super::login::LoggedIn;
use super::lowat::Lowat;
use super::wire::{InputBuffer, Output, ReadEvent};
use crate::cli::IscsiOptions;
use crate::daemon::Daemon;
use crate::transport::exec::{CommandFuture, Commands, Completion};
use crate::transport::liveness::{Liveness, Verdict};
use crate::transport::nexus::Nexus;

/// Why a connection ends (for its log line).
type Ended = &'static str;

/// One connection in its full feature phase, `F` the future type of its commands.
pub(super) struct Connection<F> {
    daemon: Arc<Daemon>,
    peer: SocketAddr,
    local: SocketAddr,
    rd: OwnedReadHalf,
    wr: OwnedWriteHalf,
    params: SessionParams,
    framer: Framer,
    /// The sans-IO session machine (rtgt-iscsi): PDUs in, actions out.
    session: Session,
    text: TextExchange,
    /// None for a discovery session (no SCSI commands).
    nexus: Option<Nexus>,
    commands: Commands<F>,
    /// Received bytes not yet framed, read when the socket is readable (readiness, not a
    /// read future, is what the loop waits on, so nothing is lost when another branch
    /// wins).
    input: InputBuffer,
    actions: Vec<Action>,
    /// What this turn sends, written once at its end.
    output: Output,
    /// Set when the session must end once this turn's output is out.
    closing: Option<Ended>,
    /// Notified to end the session from outside (forced close, reinstatement, stop).
    close: Arc<Notify>,
    /// A stop asks the initiator to log out (once); a connection closed while stopping
    /// waits for its commands first.
    stop_rx: watch::Receiver<bool>,
    stop_asked: bool,
    liveness: Liveness,
    /// Batching by the receive low-water mark (None: `--iscsi batch=0`).
    lowat: Option<Lowat>,
}

impl Connection<()> {
    /// Registers the session (a normal one), sends the final Login Response and sets up
    /// the session machine. None if the connection is already gone.
    pub(super) async fn start(
        daemon: Arc<Daemon>,
        config: Arc<IscsiOptions>,
        login: LoggedIn,
    ) -> Option<Connection<impl CommandFuture>> {
        let LoggedIn {
            rd,
            mut wr,
            params,
            response,
            target,
            peer,
            local,
            tpgt,
        } = login;
        let discovery = params.session_type == SessionType::Discovery;
        let commands = Commands::new();
        let close = Arc::new(Notify::new());
        let id = daemon.next_id();
        let nexus = match (discovery, target) {
            (false, Some(t)) => {
                let new = super::registration::new_session(id, &t, &params, tpgt, peer, local);
                let nexus = Nexus::attach(&daemon, new, commands.sender(), close.clone()).await;
                tracing::info!(
                    %peer,
                    initiator = %params.initiator_name,
                    target = %t.name,
                    header_digest = params.header_digest,
                    data_digest = params.data_digest,
                    mrdsl = params.max_recv_data_segment_length,
                    mxdsl = params.max_xmit_data_segment_length,
                    "session logged in"
                );
                Some(nexus)
            }
            _ => {
                tracing::debug!(%peer, initiator = %params.initiator_name, "discovery session logged in");
                None
            }
        };
        wr.write_all(&response.encode(false, false)).await.ok()?;
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
            header_digest: params.header_digest,
            data_digest: params.data_digest,
            max_data: params.max_recv_data_segment_length as usize,
        };
        let stop_rx = daemon.stop.subscribe();
        Some(Connection {
            daemon,
            peer,
            local,
            rd,
            wr,
            params,
            framer,
            session,
            text: TextExchange::default(),
            nexus,
            commands,
            input: InputBuffer::new(),
            actions: Vec::new(),
            output: Output::default(),
            closing: None,
            close,
            stop_rx,
            stop_asked: false,
            liveness: Liveness::new(config.nop_interval, config.nop_count),
            lowat: (config.batch && !discovery).then(Lowat::new),
        })
    }
}

impl<F: CommandFuture> Connection<F> {
    /// Runs the connection until it ends.
    pub(super) async fn run(mut self) {
        let reason = loop {
            if let Err(why) = self.turn().await {
                break why;
            }
        };
        self.finish(reason).await;
    }

    /// One turn: wait for something to do, do everything that is ready, write once.
    async fn turn(&mut self) -> Result<(), Ended> {
        self.wait_for_work().await?;
        // Whatever else has completed meanwhile goes out in the same write.
        self.drain_completions()?;
        self.carry_out_actions();
        if self.closing.is_some() {
            // The session ends with what is queued (a Logout Response, a TARGET COLD
            // RESET answer): its I_T nexus ends first (see `Nexus::end`). On a medium
            // other gateways export too, the release is published first (bounded: a
            // cluster that does not answer must not hold the logout).
            if let Some(w) = self.end_nexus().filter(|w| !w.is_empty()) {
                let _ = tokio::time::timeout(std::time::Duration::from_secs(10), w.wait()).await;
            }
        }
        self.write_out().await?;
        // A reactor kept busy by other connections may not go idle for a while: kicks
        // it has held back longer than their bound go out at the end of a connection's
        // turn too (handler::defer_kicks). Flushing every kick here instead cost 4K
        // reads through rtgt-fileio 81% against 87-91% of in-process (woken mid-turn,
        // the handler preempts the reactor before it parks).
        rtgt_backstore::handler::send_overdue_kicks();
        if let Some(l) = &mut self.lowat {
            l.after_turn(&self.rd, self.session.tasks_in_flight());
        }
        self.closing.map_or(Ok(()), Err)
    }

    /// Waits for the first of: a stop, bytes from the initiator, a completion, a
    /// liveness tick, a close from outside; and takes it in.
    async fn wait_for_work(&mut self) -> Result<(), Ended> {
        tokio::select! {
            stopping = stop_signal(&mut self.stop_rx), if !self.stop_asked => {
                self.stop_asked = true;
                if stopping {
                    self.ask_logout();
                }
                Ok(())
            },
            r = self.rd.readable() => {
                if let Err(e) = r {
                    tracing::debug!(peer = %self.peer, "read: {e}");
                    return Err("connection closed");
                }
                self.read_pdus()
            },
            done = self.commands.next() => self.apply(done),
            _ = self.liveness.ticker.tick(), if self.liveness.enabled() => self.check_liveness(),
            _ = self.close.notified() => Err("closed by the target"),
            _ = lowat_check(&mut self.lowat), if self.lowat.as_ref().is_some_and(Lowat::marked) => {
                if let Some(l) = &mut self.lowat {
                    l.checked(&self.rd);
                }
                Ok(())
            }
        }
    }

    /// The daemon stops: ask the initiator to log out (RFC 7143 §11.9.1, AsyncEvent 1).
    fn ask_logout(&mut self) {
        let p = self.session.async_logout_request(self.daemon.stop_timeout);
        self.actions.push(Action::Send(p));
    }

    /// Reads what the socket has and feeds every whole PDU to the session machine.
    fn read_pdus(&mut self) -> Result<(), Ended> {
        let before = self.input.buffered();
        match self.input.fill(&self.rd) {
            Ok(true) => {}
            Ok(false) => return Err("connection closed"),
            Err(e) => {
                tracing::debug!(peer = %self.peer, "read: {e}");
                return Err("connection closed");
            }
        }
        self.liveness.seen();
        if let Some(l) = &mut self.lowat {
            l.read(self.input.buffered().saturating_sub(before));
        }
        while let Some(ev) = self.input.next_pdu(&self.framer) {
            match ev {
                Ok(ReadEvent::Pdu(p)) => {
                    if let Some(l) = &mut self.lowat {
                        if p.opcode() == rtgt_iscsi::pdu::op::SCSI_CMD {
                            let unseen = self.session.stat_sn().wrapping_sub(p.exp_stat_sn());
                            l.command(unseen, self.session.tasks_in_flight() + 1);
                        }
                    }
                    self.session.on_pdu(p, &mut self.actions)
                }
                Ok(ReadEvent::DataDigestError(p)) => {
                    tracing::info!(peer = %self.peer, "data digest error");
                    self.session.on_data_digest_error(p, &mut self.actions);
                }
                Err(e) => {
                    tracing::info!(peer = %self.peer, "dropping connection: {e}");
                    return Err("framing error");
                }
            }
        }
        Ok(())
    }

    /// Applies the completions that are already there.
    fn drain_completions(&mut self) -> Result<(), Ended> {
        while let Some(done) = self.commands.try_next() {
            self.apply(done)?;
        }
        Ok(())
    }

    fn apply(&mut self, done: Completion) -> Result<(), Ended> {
        apply(done, &mut self.session, &mut self.actions, self.peer)
    }

    /// Carries out what the session machine asked for; the PDUs go into this turn's
    /// output. A command that completes at once adds its answer to `actions`, carried
    /// out in the same pass.
    fn carry_out_actions(&mut self) {
        let mut i = 0;
        while i < self.actions.len() {
            let action = std::mem::replace(&mut self.actions[i], Action::Close(""));
            self.carry_out(action);
            i += 1;
        }
        self.actions.clear();
        crate::coalesce::answered(self.commands.take_answered());
    }

    fn carry_out(&mut self, action: Action) {
        let (hd, dd) = (self.params.header_digest, self.params.data_digest);
        match action {
            Action::Send(p) => self.output.pdu(&p, hd, dd),
            Action::SendDataIn(d) => self.output.data_in(d, hd, dd),
            Action::Execute(req) => self.execute(req),
            Action::TaskManagement(tmf) => self.task_management(tmf),
            Action::Text(req) => self.text(req),
            Action::Close(why) => {
                if !why.is_empty() {
                    self.closing = Some(why);
                }
            }
        }
    }

    /// Runs a SCSI command on the core (see [`Commands::submit`]).
    fn execute(&mut self, req: ScsiRequest) {
        let Some(nexus) = &self.nexus else {
            return;
        };
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
            &mut self.session,
            &mut self.actions,
            &mut self.closing,
            self.peer,
        );
        self.commands.submit(nexus, cmd, |done| {
            if let Err(why) = apply(done, session, actions, peer) {
                *closing = Some(why);
            }
        });
    }

    fn task_management(&mut self, tmf: TmfRequest) {
        let (Some(nexus), Some(f)) = (&self.nexus, to_tm(tmf.function)) else {
            let r = tmf_response::NOT_SUPPORTED;
            self.session.on_tmf_done(tmf.itt, r, &mut self.actions);
            return;
        };
        let lun = rtgt_scsi::lun_from_sam(tmf.lun);
        let referenced = tmf.referenced.map(u64::from);
        let tag = u64::from(tmf.itt);
        if let Some(r) = self
            .commands
            .task_management(nexus, f, lun, referenced, tag)
        {
            self.session
                .on_tmf_done(tmf.itt, tmf_code(r), &mut self.actions);
        }
    }

    /// A Text Request: SendTargets (RFC 7143 Appendix C) or a negotiation.
    fn text(&mut self, req: Pdu) {
        let target = self.nexus.as_ref().map(|n| &**n.target());
        let targets = super::send_targets::discovered(
            &self.daemon,
            &self.params,
            self.peer,
            self.local,
            target,
        );
        match self.text.handle(&req, &self.params, &targets) {
            Ok(rsp) => self.session.send_text_response(rsp, &mut self.actions),
            Err(reason) => {
                let r = self.session.reject(&req, reason.reason());
                let (hd, dd) = (self.params.header_digest, self.params.data_digest);
                self.output.pdu(&r, hd, dd);
            }
        }
    }

    /// NOP-In pings (RFC 7143 §11.19): a peer silent for `nop_count` intervals with a
    /// ping unanswered is gone.
    fn check_liveness(&mut self) -> Result<(), Ended> {
        match self.liveness.check(self.session.ping_outstanding()) {
            Verdict::Gone => {
                tracing::info!(peer = %self.peer, "no answer to NOP-In pings, dropping connection");
                return Err("ping timeout");
            }
            Verdict::Ping => {
                if let Some(p) = self.session.ping() {
                    self.actions.push(Action::Send(p));
                }
            }
            Verdict::Heard => {}
        }
        Ok(())
    }

    fn end_nexus(&mut self) -> Option<rtgt_scsi::tasks::TaskWait> {
        self.nexus.as_mut().and_then(|n| n.end())
    }

    /// Everything this turn produced, in one vectored write (or a few, past IOV_MAX).
    async fn write_out(&mut self) -> Result<(), Ended> {
        self.output.flush(&mut self.wr).await.map_err(|e| {
            tracing::debug!(peer = %self.peer, "write: {e}");
            "write error"
        })
    }

    /// The connection is over: while stopping, its commands finish first (the daemon
    /// flushes the stores once every connection is gone); the session unregisters when
    /// its nexus is dropped.
    async fn finish(mut self, reason: Ended) {
        if self.stop_asked {
            let until = tokio::time::Instant::now() + crate::stop::DRAIN;
            self.commands.drain(until).await;
        }
        let _ = self.wr.shutdown().await;
        if self.nexus.is_some() {
            tracing::info!(peer = %self.peer, initiator = %self.params.initiator_name, "session ended: {reason}");
        }
    }
}

/// When the low-water mark's check is due (never without batching).
async fn lowat_check(l: &mut Option<Lowat>) {
    match l {
        Some(l) => l.check.as_mut().await,
        None => std::future::pending().await,
    }
}

/// Completes when the daemon stops: true, or false if it is gone.
pub(in crate::transport) async fn stop_signal(rx: &mut watch::Receiver<bool>) -> bool {
    rx.wait_for(|s| *s).await.is_ok()
}

/// Applies a completion to the session machine; Err if the connection must end.
pub(in crate::transport) fn apply(
    done: Completion,
    session: &mut Session,
    actions: &mut Vec<Action>,
    peer: SocketAddr,
) -> Result<(), Ended> {
    match done {
        Completion::Command { tag, result } => {
            let itt = tag as u32;
            if result.aborted {
                session.on_scsi_aborted(itt);
            } else {
                let outcome = ScsiOutcome {
                    status: result.status,
                    data_in: result.data_in,
                    sense: result.sense,
                    data_out_len: result.data_out_len,
                };
                session.on_scsi_done(itt, outcome, actions);
            }
        }
        Completion::TaskManagement {
            tag,
            response,
            close,
        } => {
            session.on_tmf_done(tag as u32, tmf_code(response), actions);
            if close {
                // TARGET COLD RESET: the response goes out, then the connection ends
                // (RFC 7143 §11.5.1).
                actions.push(Action::Close("target cold reset"));
            }
        }
        Completion::Abort(a) => {
            let dropped = session.abort_tasks(a.before, |lun| {
                a.lun.is_none_or(|l| rtgt_scsi::lun_from_sam(*lun) == l)
            });
            if !dropped.is_empty() {
                tracing::debug!(%peer, ?dropped, "tasks aborted from another I_T nexus");
            }
            if a.close {
                return Err("target cold reset");
            }
        }
    }
    Ok(())
}

pub(in crate::transport) fn to_attr(a: Attr) -> TaskAttr {
    match a {
        Attr::Untagged | Attr::Simple => TaskAttr::Simple,
        Attr::Ordered => TaskAttr::Ordered,
        Attr::HeadOfQueue => TaskAttr::HeadOfQueue,
        Attr::Aca => TaskAttr::Aca,
    }
}

pub(in crate::transport) fn to_tm(f: TmfFunction) -> Option<TmFunction> {
    Some(match f {
        TmfFunction::AbortTask => TmFunction::AbortTask,
        TmfFunction::AbortTaskSet => TmFunction::AbortTaskSet,
        TmfFunction::ClearAca => TmFunction::ClearAca,
        TmfFunction::ClearTaskSet => TmFunction::ClearTaskSet,
        TmfFunction::LogicalUnitReset => TmFunction::LogicalUnitReset,
        TmfFunction::TargetWarmReset => TmFunction::TargetWarmReset,
        TmfFunction::TargetColdReset => TmFunction::TargetColdReset,
        TmfFunction::TaskReassign => return None,
    })
}

/// RFC 7143 §11.6.1 response codes.
pub(in crate::transport) fn tmf_code(r: TmResponse) -> u8 {
    match r {
        TmResponse::FunctionComplete => tmf_response::FUNCTION_COMPLETE,
        TmResponse::FunctionRejected => tmf_response::FUNCTION_REJECTED,
        TmResponse::IncorrectLun => tmf_response::LUN_DOES_NOT_EXIST,
        TmResponse::TaskDoesNotExist => tmf_response::TASK_DOES_NOT_EXIST,
    }
}
