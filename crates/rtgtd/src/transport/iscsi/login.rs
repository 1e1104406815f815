//! The login phase of an iSCSI connection (RFC 7143 §6): the sans-IO login machine of
//! rtgt-iscsi fed from the socket, with the registry answering which target, which ACL,
//! which session limits and which CHAP accounts apply.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use rtgt_iscsi::chap::{ChapAuthenticator, ChapConfig};
use rtgt_iscsi::login::{Authenticator, Login, LoginContext, LoginStatus, LoginStep, TargetLogin};
use rtgt_iscsi::params::{SessionParams, SessionType, TargetDefaults};
use rtgt_iscsi::pdu::{op, Framer, Pdu};
use rtgt_target::Target;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use super::connection::Connection;
use super::wire::{read_pdu, ReadEvent};
use crate::cli::IscsiOptions;
use crate::daemon::Daemon;
use crate::transport::nexus::limit_reached;

/// Data segments during login are at most 8192 bytes (RFC 7143 §13.12 default).
const LOGIN_MAX_DATA: usize = 8192;

pub(in crate::transport) struct Ctx<'a> {
    pub daemon: &'a Daemon,
    pub peer: SocketAddr,
    pub target: Option<Arc<Target>>,
    /// The portal group the connection came in through (RFC 7143 §10.1.1.1).
    pub tpgt: u16,
    /// ISID and TSIH of the login (RFC 7143 §11.12.5, §11.12.6): a login that reinstates
    /// an existing session (same initiator and ISID) or adds a connection to one
    /// (TSIH set) makes no new session, so the session limits don't refuse it.
    pub isid: [u8; 6],
    pub tsih: u16,
    /// The peer is locked out after failed authentications: CHAP runs as usual but
    /// no answer is accepted, so the lockout is no oracle.
    pub locked_out: bool,
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
        // session or adding a connection to one makes none.
        let existing = self.tsih != 0
            || t.sessions().iter().any(|s| {
                s.isid == self.isid && s.initiator_name.eq_ignore_ascii_case(initiator_name)
            });
        if let Some((which, max)) = limit_reached(self.daemon, &t, existing) {
            tracing::warn!(peer = %self.peer, initiator_name, target_name, max, "login refused: {which} session limit reached");
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

/// Serves one accepted TCP connection: the login phase, then the full feature phase.
pub async fn serve(
    daemon: Arc<Daemon>,
    config: Arc<IscsiOptions>,
    stream: TcpStream,
    peer: SocketAddr,
    tpgt: u16,
) {
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
    let deadline = Instant::now() + config.login_timeout;
    let mut login = Login::new(TargetDefaults::default());
    let (params, login_response) = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let pdu = match tokio::time::timeout(left, slot.watch(read_pdu(&mut rd, &framer))).await {
            Err(_) => {
                tracing::info!(%peer, "login timed out");
                return;
            }
            Ok(None) => return, // idle, closed to make room for a new connection (guard.rs)
            Ok(Some(Err(_))) => return, // closed mid-login
            Ok(Some(Ok(Err(e)))) => {
                tracing::info!(%peer, "bad PDU during login: {e}");
                return;
            }
            Ok(Some(Ok(Ok(ReadEvent::Pdu(p)))))
            | Ok(Some(Ok(Ok(ReadEvent::DataDigestError(p))))) => p,
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
            // Connection::start), so limits and `show` count it before the initiator can act.
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
    let logged_in = LoggedIn {
        rd,
        wr,
        params,
        response: login_response,
        target: ctx.target.take(),
        peer,
        local,
        tpgt,
    };
    if let Some(conn) = Connection::start(daemon, config, logged_in).await {
        conn.run().await;
    }
}

/// A connection whose login is complete, its final Login Response not yet sent.
pub(super) struct LoggedIn {
    pub rd: OwnedReadHalf,
    pub wr: OwnedWriteHalf,
    pub params: SessionParams,
    /// Sent once the session is registered, so limits and `show` count it before the
    /// initiator can act.
    pub response: Pdu,
    /// None for a discovery session.
    pub target: Option<Arc<Target>>,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub tpgt: u16,
}

/// Logs a failed login with who and from where, counts authentication failures for the
/// rate limit. True for an authentication failure, whose answer is held back a little.
pub(in crate::transport) fn login_failed(
    daemon: &Daemon,
    login: &Login,
    peer: SocketAddr,
    locked_out: bool,
) -> bool {
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
