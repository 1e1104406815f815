//! The driver of one iSCSI connection: owns the socket, feeds PDUs to the sans-IO login
//! and session state machines, runs SCSI commands on the target, and writes out what the
//! state machines produce.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtgt_iscsi::chap::{ChapAuthenticator, ChapConfig};
use rtgt_iscsi::login::{Authenticator, Login, LoginContext, LoginStatus, LoginStep, TargetLogin};
use rtgt_iscsi::params::{SessionParams, SessionType, TargetDefaults};
use rtgt_iscsi::pdu::{op, segment_trailer, FrameError, Framer, Pdu, BHS_LEN};
use rtgt_iscsi::session::{
    tmf_response, Action, Attr, DataIn, ScsiOutcome, Session, SessionConfig, TmfFunction,
};
use rtgt_iscsi::text::{DiscoveredTarget, TextExchange};
use rtgt_scsi::target::TmResponse;
use rtgt_scsi::{ItNexus, ScsiCommand, TaskAttr, TmFunction, TransportAbort};
use rtgt_target::{ConnInfo, SessionInfo, Target};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, Notify};

use crate::daemon::{Daemon, SessionHandle, SessionKey};

/// Data segments during login are at most 8192 bytes (RFC 7143 §13.12 default).
const LOGIN_MAX_DATA: usize = 8192;

enum ReadEvent {
    Pdu(Pdu),
    DataDigestError(Pdu),
}

async fn read_pdu(
    rd: &mut OwnedReadHalf,
    framer: &Framer,
) -> std::io::Result<Result<ReadEvent, String>> {
    let mut bhs = [0u8; BHS_LEN];
    rd.read_exact(&mut bhs).await?;
    let rest_len = match framer.rest_len(&bhs) {
        Ok(n) => n,
        Err(e) => return Ok(Err(e.to_string())),
    };
    let mut rest = vec![0u8; rest_len];
    rd.read_exact(&mut rest).await?;
    Ok(match framer.parse(bhs, &rest) {
        Ok(p) => Ok(ReadEvent::Pdu(p)),
        Err((FrameError::DataDigest, pdu)) => Ok(ReadEvent::DataDigestError(*pdu)),
        Err((e, _)) => Err(e.to_string()),
    })
}

struct Ctx<'a> {
    daemon: &'a Daemon,
    peer: SocketAddr,
    target: Option<Arc<Target>>,
    /// The portal group the connection came in through (RFC 7143 §10.1.1.1).
    tpgt: u16,
    /// ISID and TSIH of the login (RFC 7143 §11.12.5, §11.12.6): a login that reinstates
    /// an existing session (same initiator and ISID) or adds a connection to one
    /// (TSIH set) makes no new session, so the session limits don't refuse it.
    isid: [u8; 6],
    tsih: u16,
    /// The peer is locked out after failed authentications: CHAP runs as usual but
    /// no answer is accepted, so the lockout is no oracle.
    locked_out: bool,
}

impl LoginContext for Ctx<'_> {
    fn target(
        &mut self,
        target_name: &str,
        initiator_name: &str,
    ) -> Result<TargetLogin, LoginStatus> {
        let Some(t) = self.daemon.registry.target_by_name(target_name) else {
            tracing::info!(peer = %self.peer, initiator_name, target_name, "login to unknown target");
            return Err(LoginStatus::NOT_FOUND);
        };
        if !t.allows(self.peer.ip(), initiator_name) {
            tracing::info!(peer = %self.peer, initiator_name, target_name, "login refused by ACL");
            return Err(LoginStatus::AUTHORIZATION_FAILURE);
        }
        if !t.online() {
            return Err(LoginStatus::SERVICE_UNAVAILABLE);
        }
        // Session limits (RFC 7143 §11.13.5: 03/02 out of resources). Reinstating a
        // session or adding a connection to one makes none, so a full target still
        // lets an initiator recover its own session after a network failure.
        let existing = self.tsih != 0
            || t.sessions().iter().any(|s| {
                s.isid == self.isid && s.initiator_name.eq_ignore_ascii_case(initiator_name)
            });
        let max = t.max_sessions() as usize;
        if !existing && max != 0 && t.session_count() >= max {
            tracing::warn!(peer = %self.peer, initiator_name, target_name, max, "login refused: target session limit reached");
            return Err(LoginStatus::OUT_OF_RESOURCES);
        }
        let max = self.daemon.registry.max_sessions() as usize;
        if !existing && max != 0 && self.daemon.registry.session_total() >= max {
            tracing::warn!(peer = %self.peer, initiator_name, target_name, max, "login refused: daemon session limit reached");
            return Err(LoginStatus::OUT_OF_RESOURCES);
        }
        // Only the keys the login negotiates; the daemon's own knobs (nop_interval,
        // MaxQueueCmd, Redirect*) are not login parameters.
        let overrides = t
            .iscsi_params()
            .into_iter()
            .filter(|(k, _)| {
                TargetDefaults::KEYS
                    .iter()
                    .any(|n| n.eq_ignore_ascii_case(k))
            })
            .collect();
        self.target = Some(t);
        Ok(TargetLogin {
            overrides,
            portal_group_tag: self.tpgt,
        })
    }
    fn redirect(&mut self, target_name: &str) -> Option<(LoginStatus, String)> {
        let t = self.daemon.registry.target_by_name(target_name)?;
        let (permanent, addr) = t.redirect()?;
        tracing::info!(peer = %self.peer, target_name, to = %addr, permanent, "login redirected");
        Some((
            if permanent {
                LoginStatus::TARGET_MOVED_PERMANENTLY
            } else {
                LoginStatus::TARGET_MOVED_TEMPORARILY
            },
            addr,
        ))
    }
    fn new_tsih(&mut self) -> u16 {
        self.daemon.next_tsih()
    }
    fn portal_group_tag(&self) -> u16 {
        self.tpgt
    }
    fn authenticator(
        &mut self,
        session_type: SessionType,
        _target_name: Option<&str>,
        _initiator_name: &str,
    ) -> Option<Box<dyn Authenticator>> {
        let reg = &self.daemon.registry;
        // Discovery CHAP is configured apart from the targets' (accounts bound to tid 0).
        let mut cfg: ChapConfig = match (session_type, &self.target) {
            (SessionType::Discovery, _) => reg.chap_for_discovery()?,
            (SessionType::Normal, Some(t)) => reg.chap_for_target(t)?,
            (SessionType::Normal, None) => return None,
        };
        if self.locked_out {
            cfg.incoming.clear();
        }
        Some(Box::new(ChapAuthenticator::new(cfg)))
    }
}

pub async fn serve(daemon: Arc<Daemon>, stream: TcpStream, peer: SocketAddr, tpgt: u16) {
    let _ = stream.set_nodelay(true);
    crate::guard::tune_socket(&stream);
    // Bounded logins in progress, per address and in total: silent or slow connections
    // cost at most that many sockets until the login timeout reaps them.
    let Some(slot) = daemon.guard.login_slot(peer.ip()) else {
        tracing::info!(%peer, "too many connections logging in; closing this one");
        return;
    };
    let locked_out = daemon.guard.locked_out(peer.ip());
    let local = stream.local_addr().unwrap_or(peer);
    let (mut rd, mut wr) = stream.into_split();
    let mut ctx = Ctx {
        daemon: &daemon,
        peer,
        target: None,
        tpgt,
        locked_out,
        isid: [0; 6],
        tsih: 0,
    };
    let framer = Framer {
        header_digest: false,
        data_digest: false,
        max_data: LOGIN_MAX_DATA,
    };
    let deadline = Instant::now() + daemon.iscsi.login_timeout;
    let mut login = Login::new(TargetDefaults::default());
    let (params, login_response) = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let pdu = match tokio::time::timeout(left, read_pdu(&mut rd, &framer)).await {
            Err(_) => {
                tracing::info!(%peer, "login timed out");
                return;
            }
            Ok(Err(_)) => return, // closed mid-login
            Ok(Ok(Err(e))) => {
                tracing::info!(%peer, "bad PDU during login: {e}");
                return;
            }
            Ok(Ok(Ok(ReadEvent::Pdu(p)))) | Ok(Ok(Ok(ReadEvent::DataDigestError(p)))) => p,
        };
        if pdu.opcode() != op::LOGIN_REQ {
            // RFC 7143 §6.1: only Login Requests before the full feature phase.
            tracing::info!(%peer, opcode = pdu.opcode(), "non-login PDU during login");
            return;
        }
        ctx.isid.copy_from_slice(&pdu.bhs[8..14]);
        ctx.tsih = u16::from_be_bytes([pdu.bhs[14], pdu.bhs[15]]);
        match login.handle(&pdu, &mut ctx) {
            LoginStep::Continue(rsp) => {
                if wr.write_all(&rsp.encode(false, false)).await.is_err() {
                    return;
                }
            }
            // The final Login Response goes out once the session is registered (see
            // full_feature), so limits and `show` count it before the initiator can act.
            LoginStep::Complete { response, params } => break (params, response),
            LoginStep::Fail(rsp) => {
                if login_failed(&daemon, &login, peer, locked_out) {
                    tokio::time::sleep(crate::guard::FAIL_DELAY).await;
                }
                let _ = wr.write_all(&rsp.encode(false, false)).await;
                let _ = wr.shutdown().await;
                return;
            }
        }
    };
    drop(slot);
    if let Some(user) = login.auth_user() {
        tracing::info!(%peer, initiator = %params.initiator_name, user, "CHAP authentication succeeded");
    }
    let target = ctx.target.take();
    full_feature(
        daemon,
        rd,
        wr,
        params,
        login_response,
        target,
        peer,
        local,
        tpgt,
    )
    .await;
}

/// Logs a failed login with who and from where, counts authentication failures for the
/// rate limit. True for an authentication failure, whose answer is held back a little.
fn login_failed(daemon: &Daemon, login: &Login, peer: SocketAddr, locked_out: bool) -> bool {
    let p = login.params();
    let status = login
        .failure_status()
        .unwrap_or(LoginStatus::INITIATOR_ERROR);
    let reason = login.failure_reason().unwrap_or("");
    let target = p.target_name.as_deref().unwrap_or("");
    if status == LoginStatus::AUTHENTICATION_FAILURE {
        tracing::warn!(
            %peer,
            initiator = %p.initiator_name,
            target,
            %status,
            "authentication failed: {}",
            if locked_out { "address locked out after repeated failures" } else { reason }
        );
        let limit = daemon.registry.auth_fail_limit();
        if daemon.guard.auth_failed(peer.ip(), limit) {
            tracing::warn!(
                %peer,
                limit,
                "{} failed authentications from {} within {}s: refusing its logins for {}s",
                limit,
                peer.ip(),
                crate::guard::FAIL_WINDOW.as_secs(),
                crate::guard::LOCKOUT.as_secs()
            );
        }
        true
    } else {
        tracing::info!(%peer, initiator = %p.initiator_name, target, %status, "login failed: {reason}");
        false
    }
}

/// What comes back to a connection's loop from elsewhere. SCSI completions and task
/// management responses share one queue, so a TMF response can never overtake the
/// completion of a task it waited for (which is then dropped, not sent).
enum Done {
    Scsi {
        itt: u32,
        outcome: ScsiOutcome,
        aborted: bool,
    },
    Tmf {
        itt: u32,
        response: u8,
        close: bool,
    },
    /// Tasks aborted from another I_T nexus.
    Abort(TransportAbort),
}

struct Live {
    daemon: Arc<Daemon>,
    key: Option<SessionKey>,
    id: u64,
    target: Option<Arc<Target>>,
    nexus: Option<Arc<ItNexus>>,
    closed_tx: watch::Sender<bool>,
}

impl Live {
    /// The session's I_T nexus is lost (once, here or at drop). Returns what to wait
    /// for before answering a logout (rtgt-scsi's `nexus_loss`).
    fn end_nexus(&mut self) -> Option<rtgt_scsi::tasks::TaskWait> {
        if let (Some(t), Some(n)) = (&self.target, self.nexus.take()) {
            return Some(t.scsi.nexus_loss(&n));
        }
        None
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        if let Some(t) = &self.target {
            t.remove_session(self.id);
        }
        self.end_nexus();
        if let Some(k) = &self.key {
            let mut s = self.daemon.sessions.lock();
            if s.get(k).is_some_and(|h| h.id == self.id) {
                s.remove(k);
            }
        }
        let _ = self.closed_tx.send(true);
    }
}

fn to_attr(a: Attr) -> TaskAttr {
    match a {
        Attr::Untagged | Attr::Simple => TaskAttr::Simple,
        Attr::Ordered => TaskAttr::Ordered,
        Attr::HeadOfQueue => TaskAttr::HeadOfQueue,
        Attr::Aca => TaskAttr::Aca,
    }
}

fn to_tm(f: TmfFunction) -> Option<TmFunction> {
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

#[allow(clippy::too_many_arguments)]
async fn full_feature(
    daemon: Arc<Daemon>,
    rd: OwnedReadHalf,
    mut wr: OwnedWriteHalf,
    params: SessionParams,
    login_response: Pdu,
    target: Option<Arc<Target>>,
    peer: SocketAddr,
    local: SocketAddr,
    tpgt: u16,
) {
    let discovery = params.session_type == SessionType::Discovery;
    let id = daemon.next_id();
    // This session's command counters (rtgtadm stats, --metrics): atomics, no lock.
    let session_stats = Arc::new(rtgt_scsi::stats::IoCounters::default());
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
    let close = Arc::new(Notify::new());
    let (closed_tx, closed_rx) = watch::channel(false);
    let mut live = Live {
        daemon: daemon.clone(),
        key: None,
        id,
        target: None,
        nexus: None,
        closed_tx,
    };
    if let (false, Some(t)) = (discovery, &target) {
        // Session reinstatement (RFC 7143 §6.3.5): a new leading login with the ISID of
        // a live session replaces it.
        let key: SessionKey = (t.name.clone(), params.initiator_name.clone(), params.isid);
        let old = daemon.sessions.lock().insert(
            key.clone(),
            SessionHandle {
                id,
                close: close.clone(),
                closed: closed_rx.clone(),
            },
        );
        if let Some(mut old) = old {
            tracing::info!(initiator = %params.initiator_name, "reinstating session");
            old.close.notify_one();
            let _ = tokio::time::timeout(Duration::from_secs(5), old.closed.wait_for(|c| *c)).await;
        }
        live.key = Some(key);
        let isid_hex: String = params.isid.iter().map(|b| format!("{b:02x}")).collect();
        live.nexus = Some(Arc::new(ItNexus {
            id,
            initiator_name: params.initiator_name.clone(),
            initiator_port: format!("{},i,0x{isid_hex}", params.initiator_name),
            target_port: format!("{},t,0x{tpgt:04x}", t.name),
            // Each portal group is one target port and one target port group (ALUA):
            // both are identified by the TPGT.
            relative_port_id: tpgt,
            target_port_group: tpgt,
        }));
        let tx = done_tx.clone();
        t.scsi.attach_nexus(
            live.nexus.clone().expect("just set"),
            Arc::new(move |a| {
                let _ = tx.send(Done::Abort(a));
            }),
        );
        let c = close.clone();
        t.add_session(SessionInfo {
            sid: id,
            initiator_name: params.initiator_name.clone(),
            initiator_alias: params.initiator_alias.clone(),
            isid: params.isid,
            tsih: params.tsih,
            connections: vec![ConnInfo {
                cid: params.cid,
                peer,
                local,
            }],
            close: Arc::new(move || c.notify_one()),
        });
        t.set_session_details(
            id,
            rtgt_target::report::SessionDetails {
                stats: session_stats.clone(),
                keys: [(params.cid, negotiated_keys(&params))].into(),
            },
        );
        live.target = Some(t.clone());
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
    } else {
        tracing::debug!(%peer, initiator = %params.initiator_name, "discovery session logged in");
    }
    if wr
        .write_all(&login_response.encode(false, false))
        .await
        .is_err()
    {
        return;
    }

    let framer = Framer {
        header_digest: params.header_digest,
        data_digest: params.data_digest,
        max_data: params.max_recv_data_segment_length as usize,
    };
    let (hd, dd) = (params.header_digest, params.data_digest);
    let mut session = Session::new(SessionConfig {
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
    });
    let mut text = TextExchange::default();

    // Bytes are read straight into a per-connection buffer when the socket is readable
    // (readiness, not a read future, is what select! waits on, so nothing is lost when
    // another branch wins), and every whole PDU in it is handled before replying.
    let mut input = InputBuffer::new();
    let nop_interval = daemon.iscsi.nop_interval;
    let nop_count = daemon.iscsi.nop_count.max(1);
    // When a PDU last arrived, as of the last tick: the ticker is the only reader, so a
    // read only sets `rx_seen` (a clock read per read was measurable at 150K IOPS) and
    // the tick turns it into a time. Checks happen at ticks only, so this is as exact.
    let mut last_rx = Instant::now();
    let mut rx_seen = false;
    let mut ticker = tokio::time::interval(nop_interval.unwrap_or(Duration::from_secs(3600)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    let mut actions = Vec::new();
    let mut output = Output::default();
    let mut closing: Option<&'static str> = None;
    // A stop asks the initiator to log out (once); commands spawned and answered are
    // counted so that a connection closed while stopping waits for its commands.
    let mut stop_rx = daemon.stop.subscribe();
    let mut stop_asked = false;
    let (mut spawned, mut finished) = (0u64, 0u64);
    // The heap slot of a command that finished on its first poll, for the next command:
    // boxing every command's future was one of the allocations per READ and WRITE. Kept
    // to one: commands here run one at a time, and a spawned one keeps its own.
    let mut spare_run = None;
    let reason = loop {
        tokio::select! {
            r = stop_rx.wait_for(|s| *s), if !stop_asked => {
                stop_asked = true;
                if r.is_ok() {
                    actions.push(Action::Send(
                        session.async_logout_request(daemon.stop_timeout),
                    ));
                }
            },
            r = rd.readable() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, "read: {e}");
                    break "connection closed";
                }
                match input.fill(&rd) {
                    Ok(true) => {}
                    Ok(false) => break "connection closed",
                    Err(e) => {
                        tracing::debug!(%peer, "read: {e}");
                        break "connection closed";
                    }
                }
                let mut failed = None;
                while let Some(ev) = input.next_pdu(&framer) {
                    match ev {
                        Err(e) => {
                            failed = Some(e);
                            break;
                        }
                        Ok(ReadEvent::Pdu(p)) => session.on_pdu(p, &mut actions),
                        Ok(ReadEvent::DataDigestError(p)) => {
                            tracing::info!(%peer, "data digest error");
                            session.on_data_digest_error(p, &mut actions);
                        }
                    }
                }
                rx_seen = true;
                if let Some(e) = failed {
                    tracing::info!(%peer, "dropping connection: {e}");
                    break "framing error";
                }
            },
            Some(done) = done_rx.recv() => {
                finished += u64::from(matches!(done, Done::Scsi { .. }));
                if let Some(why) = on_done(done, &mut session, &mut actions, peer) {
                    break why;
                }
            },
            _ = ticker.tick(), if nop_interval.is_some() => {
                let interval = nop_interval.unwrap();
                if std::mem::take(&mut rx_seen) {
                    last_rx = Instant::now();
                }
                if last_rx.elapsed() >= interval * nop_count && session.ping_outstanding() {
                    tracing::info!(%peer, "no answer to NOP-In pings, dropping connection");
                    break "ping timeout";
                }
                if last_rx.elapsed() >= interval {
                    if let Some(p) = session.ping() {
                        actions.push(Action::Send(p));
                    }
                }
            }
            _ = close.notified() => break "closed by the target",
        }
        // Whatever else has completed meanwhile goes out in the same write.
        let mut stop = None;
        while let Ok(done) = done_rx.try_recv() {
            finished += u64::from(matches!(done, Done::Scsi { .. }));
            if let Some(why) = on_done(done, &mut session, &mut actions, peer) {
                stop = Some(why);
                break;
            }
        }
        if let Some(why) = stop {
            break why;
        }
        // Carry out what the state machine asked for; batch the PDUs into one write.
        let mut executed = 0u32;
        let mut i = 0;
        while i < actions.len() {
            match std::mem::replace(&mut actions[i], Action::Close("")) {
                Action::Send(p) => output.pdu(&p, hd, dd),
                Action::SendDataIn(d) => output.data_in(d, hd, dd),
                Action::Execute(req) => {
                    let (Some(t), Some(n)) = (&live.target, &live.nexus) else {
                        i += 1;
                        continue;
                    };
                    executed += 1;
                    let scsi = t.scsi.clone();
                    let lun = rtgt_scsi::lun_from_sam(req.lun);
                    // In the task set before it runs, so an abort can never miss it.
                    let task = scsi.begin_task(n, u64::from(req.itt), lun);
                    let cmd = ScsiCommand {
                        nexus: n.clone(),
                        lun,
                        cdb: req.cdb,
                        data_out: req.data_out,
                        expected_data_in: req.expected_data_in,
                        attr: to_attr(req.attr),
                        tag: u64::from(req.itt),
                    };
                    let itt = req.itt;
                    let opcode = cmd.cdb.first().copied().unwrap_or(0);
                    let stats = session_stats.clone();
                    let command = async move {
                        let written = cmd.data_out.len() as u64;
                        let r = scsi.execute_task(cmd, &task).await;
                        stats.record(
                            r.data_in.len() as u64,
                            if r.status == 0 { written } else { 0 },
                            r.status != 0,
                            r.elapsed,
                        );
                        let done = Done::Scsi {
                            itt,
                            aborted: r.aborted || task.aborted(),
                            outcome: ScsiOutcome {
                                status: r.status,
                                data_in: r.data_in,
                                sense: r.sense,
                                data_out_len: r.data_out_len,
                            },
                        };
                        (done, task)
                    };
                    let mut run = match spare_run.take() {
                        Some(mut slot) => {
                            std::pin::Pin::set(&mut slot, Some(command));
                            slot
                        }
                        None => Box::pin(Some(command)),
                    };
                    // Most commands finish on their first poll (null, page-cache reads,
                    // small buffered writes, everything without I/O): finish those right
                    // here, saving a task spawn, a channel send and a wake-up per
                    // command. The rest go on as their own task, which polls them again
                    // with a real waker (a future registers the waker of its latest poll).
                    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
                    // A panicked command's task guard is still inside `run`, dropped
                    // after its answer is queued, like `task` below.
                    match poll_contained(run.as_mut().as_pin_mut().expect("set"), &mut cx) {
                        std::task::Poll::Ready(polled) => {
                            let (done, task) = completion(polled, itt, opcode, peer);
                            if let Some(why) = on_done(done, &mut session, &mut actions, peer) {
                                closing = Some(why);
                            }
                            run.set(None);
                            // Only now is the task over for a TMF waiting on it.
                            drop(task);
                            spare_run = Some(run);
                        }
                        std::task::Poll::Pending => {
                            // Counted so a stop waits for it (see `stop_asked`).
                            spawned += 1;
                            let tx = done_tx.clone();
                            // This reactor does not nap while the command waits.
                            let waiting = crate::coalesce::Waiting::start();
                            tokio::spawn(async move {
                                let _waiting = waiting;
                                let polled = std::future::poll_fn(|cx| {
                                    poll_contained(run.as_mut().as_pin_mut().expect("set"), cx)
                                })
                                .await;
                                let (done, task) = completion(polled, itt, opcode, peer);
                                let _ = tx.send(done);
                                drop(task);
                            });
                        }
                    }
                }
                Action::TaskManagement(tmf) => {
                    let (Some(t), Some(n), Some(f)) =
                        (&live.target, &live.nexus, to_tm(tmf.function))
                    else {
                        session.on_tmf_done(tmf.itt, tmf_response::NOT_SUPPORTED, &mut actions);
                        i += 1;
                        continue;
                    };
                    let lun = rtgt_scsi::lun_from_sam(tmf.lun);
                    let tag = tmf.referenced.map(u64::from);
                    let out = t.scsi.task_management(n, f, lun, tag);
                    let response = match out.response {
                        TmResponse::FunctionComplete => tmf_response::FUNCTION_COMPLETE,
                        TmResponse::FunctionRejected => tmf_response::FUNCTION_REJECTED,
                        TmResponse::IncorrectLun => tmf_response::LUN_DOES_NOT_EXIST,
                        TmResponse::TaskDoesNotExist => tmf_response::TASK_DOES_NOT_EXIST,
                    };
                    if out.wait.is_empty() && !out.close {
                        session.on_tmf_done(tmf.itt, response, &mut actions);
                    } else {
                        // SAM-5 7.1: the response follows the end of every task the
                        // function aborted, here and on other nexuses.
                        let tx = done_tx.clone();
                        let itt = tmf.itt;
                        let close = out.close;
                        let wait = out.wait;
                        tokio::spawn(async move {
                            wait.wait().await;
                            let _ = tx.send(Done::Tmf {
                                itt,
                                response,
                                close,
                            });
                        });
                    }
                }
                Action::Text(req) => {
                    let targets = discovered(&daemon, &params, peer, local, live.target.as_deref());
                    match text.handle(&req, &params, &targets) {
                        Ok(rsp) => session.send_text_response(rsp, &mut actions),
                        Err(reason) => {
                            let r = session.reject(&req, reason.reason());
                            output.pdu(&r, hd, dd);
                        }
                    }
                }
                Action::Close(why) => {
                    if !why.is_empty() {
                        closing = Some(why);
                    }
                }
            }
            i += 1;
        }
        actions.clear();
        crate::coalesce::answered(executed);
        if closing.is_some() {
            // The session ends with what is queued (a Logout Response, a TARGET COLD
            // RESET answer): its I_T nexus ends first (SAM-5 6.3.4: reservations,
            // prevention, unit attentions), so a command the initiator sends on another
            // session once it has the response never meets what this nexus held.
            // On a medium other gateways export too, the release is published first
            // (bounded: a cluster that does not answer must not hold the logout).
            if let Some(w) = live.end_nexus().filter(|w| !w.is_empty()) {
                let _ = tokio::time::timeout(std::time::Duration::from_secs(10), w.wait()).await;
            }
        }
        if let Err(e) = output.flush(&mut wr).await {
            tracing::debug!(%peer, "write: {e}");
            break "write error";
        }
        if let Some(why) = closing {
            break why;
        }
    };
    if stop_asked {
        // Stopping: the commands this connection started finish before it is gone
        // (the daemon flushes the stores once every connection is).
        let until = tokio::time::Instant::now() + crate::stop::DRAIN;
        while finished < spawned {
            match tokio::time::timeout_at(until, done_rx.recv()).await {
                Ok(Some(Done::Scsi { .. })) => finished += 1,
                Ok(Some(_)) => {}
                _ => break,
            }
        }
    }
    let _ = wr.shutdown().await;
    if live.target.is_some() {
        tracing::info!(%peer, initiator = %params.initiator_name, "session ended: {reason}");
    }
    drop(live);
}

/// The keys negotiated at login, by their RFC 7143 §13 names, for `rtgtadm sessions`.
fn negotiated_keys(p: &SessionParams) -> Vec<(String, String)> {
    let yn = |b: bool| if b { "Yes" } else { "No" }.to_string();
    let digest = |b: bool| if b { "CRC32C" } else { "None" }.to_string();
    vec![
        ("AuthMethod".into(), p.auth_method.clone()),
        ("HeaderDigest".into(), digest(p.header_digest)),
        ("DataDigest".into(), digest(p.data_digest)),
        (
            "MaxRecvDataSegmentLength".into(),
            p.max_recv_data_segment_length.to_string(),
        ),
        (
            "MaxXmitDataSegmentLength".into(),
            p.max_xmit_data_segment_length.to_string(),
        ),
        ("InitialR2T".into(), yn(p.initial_r2t)),
        ("ImmediateData".into(), yn(p.immediate_data)),
        ("FirstBurstLength".into(), p.first_burst_length.to_string()),
        ("MaxBurstLength".into(), p.max_burst_length.to_string()),
        (
            "MaxOutstandingR2T".into(),
            p.max_outstanding_r2t.to_string(),
        ),
        ("DataPDUInOrder".into(), yn(p.data_pdu_in_order)),
        ("DataSequenceInOrder".into(), yn(p.data_sequence_in_order)),
        ("DefaultTime2Wait".into(), p.default_time2wait.to_string()),
        (
            "DefaultTime2Retain".into(),
            p.default_time2retain.to_string(),
        ),
        (
            "ErrorRecoveryLevel".into(),
            p.error_recovery_level.to_string(),
        ),
        ("MaxConnections".into(), p.max_connections.to_string()),
        (
            "TargetPortalGroupTag".into(),
            p.target_portal_group_tag.to_string(),
        ),
    ]
}

/// Polls a command, containing a panic in it to that command: `Ready(None)` if it
/// panicked. Without this a bug in one command's code dropped the whole connection, and
/// the initiator, retrying after its reconnect, met the same panic again and again: to
/// its user a hang, with nothing in the log saying which command.
fn poll_contained<F: Future + ?Sized>(
    fut: std::pin::Pin<&mut F>,
    cx: &mut std::task::Context<'_>,
) -> std::task::Poll<Option<F::Output>> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fut.poll(cx))) {
        Ok(std::task::Poll::Ready(v)) => std::task::Poll::Ready(Some(v)),
        Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
        Err(_) => std::task::Poll::Ready(None),
    }
}

/// A command's completion and task guard; for one that panicked (`None`), the answer
/// [`command_panicked`] gives and no guard (it is still in the command's future).
fn completion<T>(
    polled: Option<(Done, T)>,
    itt: u32,
    opcode: u8,
    peer: SocketAddr,
) -> (Done, Option<T>) {
    match polled {
        Some((done, task)) => (done, Some(task)),
        None => (command_panicked(itt, opcode, peer), None),
    }
}

/// The answer to a command whose code panicked: CHECK CONDITION, HARDWARE ERROR,
/// INTERNAL TARGET FAILURE (SPC-4 4.5.6, 44/00), fixed format. The connection and its
/// other commands go on; the panic itself was printed by the panic hook.
fn command_panicked(itt: u32, opcode: u8, peer: SocketAddr) -> Done {
    use rtgt_scsi::sense::{asc, key, Sense};
    tracing::error!(%peer, itt, opcode = format_args!("{opcode:#04x}"), "command failed: internal error (panic); answered HARDWARE ERROR 44/00");
    Done::Scsi {
        itt,
        aborted: false,
        outcome: ScsiOutcome {
            status: 0x02,
            data_in: Vec::new(),
            sense: Sense::of(key::HARDWARE_ERROR, asc::INTERNAL_TARGET_FAILURE).encode(false),
            data_out_len: None,
        },
    }
}

/// Applies a completion to the session; returns why the connection must end, if it must.
fn on_done(
    done: Done,
    session: &mut Session,
    actions: &mut Vec<Action>,
    peer: SocketAddr,
) -> Option<&'static str> {
    match done {
        Done::Scsi {
            itt, aborted: true, ..
        } => session.on_scsi_aborted(itt),
        Done::Scsi { itt, outcome, .. } => session.on_scsi_done(itt, outcome, actions),
        Done::Tmf {
            itt,
            response,
            close,
        } => {
            session.on_tmf_done(itt, response, actions);
            if close {
                // TARGET COLD RESET: the response goes out, then the connection ends
                // (RFC 7143 §11.5.1).
                actions.push(Action::Close("target cold reset"));
            }
        }
        Done::Abort(a) => {
            let dropped = session.abort_tasks(a.before, |lun| {
                a.lun.is_none_or(|l| rtgt_scsi::lun_from_sam(*lun) == l)
            });
            if !dropped.is_empty() {
                tracing::debug!(%peer, ?dropped, "tasks aborted from another I_T nexus");
            }
            if a.close {
                return Some("target cold reset");
            }
        }
    }
    None
}

/// Received bytes not yet framed into PDUs. It starts small (idle sessions are cheap)
/// and grows while reads fill it, up to what the largest PDU needs.
struct InputBuffer {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

const INPUT_MIN: usize = 4 * 1024;
const INPUT_GROW_LIMIT: usize = 256 * 1024;

impl InputBuffer {
    fn new() -> Self {
        Self {
            buf: vec![0; INPUT_MIN],
            start: 0,
            end: 0,
        }
    }

    /// Reads what the socket has without waiting. Ok(false) at end of stream.
    fn fill(&mut self, rd: &OwnedReadHalf) -> std::io::Result<bool> {
        loop {
            if self.start == self.end {
                self.start = 0;
                self.end = 0;
            } else if self.end == self.buf.len() && self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.end == self.buf.len() {
                // Full of unframed bytes: make room (next_pdu sizes it for a big PDU).
                if self.buf.len() >= INPUT_GROW_LIMIT {
                    return Ok(true);
                }
                self.buf.resize(self.buf.len() * 2, 0);
            }
            match rd.try_read(&mut self.buf[self.end..]) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.end += n;
                    if self.end < self.buf.len() {
                        return Ok(true);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The next whole PDU, or None until more bytes arrive.
    fn next_pdu(&mut self, framer: &Framer) -> Option<Result<ReadEvent, String>> {
        let have = self.end - self.start;
        if have < BHS_LEN {
            return None;
        }
        let bhs: [u8; BHS_LEN] = self.buf[self.start..self.start + BHS_LEN]
            .try_into()
            .expect("BHS_LEN bytes");
        let rest = match framer.rest_len(&bhs) {
            Ok(n) => n,
            Err(e) => return Some(Err(e.to_string())),
        };
        let total = BHS_LEN + rest;
        if have < total {
            if self.buf.len() - self.start < total {
                // Make the whole PDU fit from the start of the buffer.
                self.buf.copy_within(self.start..self.end, 0);
                self.end = have;
                self.start = 0;
                if self.buf.len() < total {
                    self.buf.resize(total, 0);
                }
            }
            return None;
        }
        let body = &self.buf[self.start + BHS_LEN..self.start + total];
        // Data segments (a WRITE's immediate data) go into recycled buffers; the SCSI
        // layer hands them back once written.
        let pooled = |seg: &[u8]| {
            let mut v = rtgt_backstore::bufpool::take(seg.len());
            v.copy_from_slice(seg);
            v
        };
        let ev = match framer.parse_with(bhs, body, pooled) {
            Ok(p) => Ok(ReadEvent::Pdu(p)),
            Err((FrameError::DataDigest, pdu)) => Ok(ReadEvent::DataDigestError(*pdu)),
            Err((e, _)) => Err(e.to_string()),
        };
        self.start += total;
        Some(ev)
    }
}

/// PDUs to send in this loop turn: headers and small PDUs are encoded into one buffer,
/// Data-In data stays in its read buffers, and everything goes out in vectored writes.
#[derive(Default)]
struct Output {
    wbuf: Vec<u8>,
    segs: Vec<Seg>,
    bufs: Vec<Vec<u8>>,
}

/// A piece of the output: a range of `wbuf`, or a range of one of `bufs`.
enum Seg {
    Encoded(usize, usize),
    Data(usize, usize, usize),
}

/// Largest number of buffers handed to one writev (Linux's IOV_MAX is 1024).
const MAX_IOV: usize = 256;

impl Output {
    fn encoded(&mut self, from: usize) {
        let to = self.wbuf.len();
        if to == from {
            return;
        }
        if let Some(Seg::Encoded(_, end)) = self.segs.last_mut() {
            if *end == from {
                *end = to;
                return;
            }
        }
        self.segs.push(Seg::Encoded(from, to));
    }

    fn pdu(&mut self, p: &Pdu, hd: bool, dd: bool) {
        let from = self.wbuf.len();
        p.encode_into(&mut self.wbuf, hd, dd);
        self.encoded(from);
    }

    fn data_in(&mut self, d: DataIn, hd: bool, dd: bool) {
        let idx = self.bufs.len();
        for p in &d.pdus {
            let seg = d.segment(p);
            let from = self.wbuf.len();
            p.encode_header_into(&mut self.wbuf, seg.len(), hd);
            self.encoded(from);
            if !seg.is_empty() {
                let off = p.buffer_offset() as usize;
                self.segs.push(Seg::Data(idx, off, off + seg.len()));
                let from = self.wbuf.len();
                segment_trailer(&mut self.wbuf, seg, dd);
                self.encoded(from);
            }
        }
        self.bufs.push(d.data);
    }

    /// Writes everything out, then forgets it (keeping the allocations).
    async fn flush(&mut self, wr: &mut OwnedWriteHalf) -> std::io::Result<()> {
        let mut seg = 0;
        let mut skip = 0; // bytes of segs[seg] already written
        while seg < self.segs.len() {
            let mut iov = [std::io::IoSlice::new(&[]); MAX_IOV];
            let mut n = 0;
            for (k, s) in self.segs[seg..].iter().take(MAX_IOV).enumerate() {
                let b = match *s {
                    Seg::Encoded(a, z) => &self.wbuf[a..z],
                    Seg::Data(i, a, z) => &self.bufs[i][a..z],
                };
                iov[k] = std::io::IoSlice::new(if k == 0 { &b[skip..] } else { b });
                n = k + 1;
            }
            let mut wrote = wr.write_vectored(&iov[..n]).await?;
            if wrote == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            while wrote > 0 {
                let len = match self.segs[seg] {
                    Seg::Encoded(a, z) | Seg::Data(_, a, z) => z - a,
                } - skip;
                if wrote >= len {
                    wrote -= len;
                    seg += 1;
                    skip = 0;
                } else {
                    skip += wrote;
                    wrote = 0;
                }
            }
        }
        self.wbuf.clear();
        self.segs.clear();
        // Read buffers go back to the pool for the next large READ.
        for b in self.bufs.drain(..) {
            rtgt_backstore::bufpool::give(b);
        }
        Ok(())
    }
}

/// The targets this initiator may see in SendTargets, with the addresses to reach them.
fn discovered(
    daemon: &Daemon,
    params: &SessionParams,
    peer: SocketAddr,
    local: SocketAddr,
    session_target: Option<&Target>,
) -> Vec<DiscoveredTarget> {
    let addresses: Vec<(SocketAddr, u16)> = daemon
        .registry
        .portal_groups()
        .into_iter()
        // A wildcard portal is reached at the address this connection came in on.
        .map(|(p, tpgt)| {
            if p.ip().is_unspecified() {
                (SocketAddr::new(local.ip(), p.port()), tpgt)
            } else {
                (p, tpgt)
            }
        })
        .collect();
    daemon
        .registry
        .targets()
        .into_iter()
        .filter(|t| session_target.is_none_or(|s| s.tid == t.tid))
        .filter(|t| t.allows(peer.ip(), &params.initiator_name))
        .map(|t| DiscoveredTarget {
            name: t.name.clone(),
            addresses: addresses.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_command_is_contained_and_answered_hardware_error_44_00() {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let mut ok = Box::pin(async { 7 });
        assert_eq!(
            poll_contained(ok.as_mut(), &mut cx),
            std::task::Poll::Ready(Some(7))
        );
        let mut bad = Box::pin(async {
            if std::hint::black_box(true) {
                panic!("a bug in a command");
            }
            7
        });
        assert_eq!(
            poll_contained(bad.as_mut(), &mut cx),
            std::task::Poll::Ready(None)
        );
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let Done::Scsi {
            itt,
            aborted,
            outcome,
        } = command_panicked(42, 0x28, peer)
        else {
            panic!("not a SCSI completion");
        };
        assert_eq!((itt, aborted, outcome.status), (42, false, 0x02));
        // Fixed format: response code 70h, sense key byte 2, ASC/ASCQ bytes 12-13.
        assert_eq!(outcome.sense[0] & 0x7f, 0x70);
        assert_eq!(outcome.sense[2] & 0x0f, 0x04, "HARDWARE ERROR");
        assert_eq!((outcome.sense[12], outcome.sense[13]), (0x44, 0x00));
    }
}
