//! Target side of the iSCSI login phase (RFC 7143 §6.3, §11.12, §11.13, §13).
//!
//! [`Login`] consumes one Login Request PDU at a time and answers with the Login Response
//! to send ([`LoginStep`]). It never touches a socket; everything it needs to know about
//! the outside world (does the target exist, may this initiator use it, which TSIH is free)
//! it asks through [`LoginContext`]. Authentication plugs in through [`Authenticator`].

use std::collections::HashMap;
use std::fmt;

use crate::keys::{self, KeyError, TextAccumulator, TextPairs};
use crate::params::{
    Digest, ParamError, SessionParams, SessionType, TargetDefaults,
    DEFAULT_MAX_RECV_DATA_SEGMENT_LENGTH, MAX_SEGMENT_LIMIT, MIN_SEGMENT_LIMIT,
};
use crate::pdu::{op, Pdu};

/// Size of the command window we grant: MaxCmdSN = ExpCmdSN + window - 1 (RFC 7143 §4.2.2.1).
pub const CMD_SN_WINDOW: u32 = 128;
/// Largest data segment in either direction during login: the MaxRecvDataSegmentLength
/// default applies until the full-feature phase (RFC 7143 §13.12).
pub const LOGIN_MAX_DATA_SEGMENT: usize = DEFAULT_MAX_RECV_DATA_SEGMENT_LENGTH as usize;
/// Upper bound on Login Request PDUs in one login, so a peer cannot keep a login alive
/// forever with empty continuations.
pub const MAX_LOGIN_PDUS: u32 = 64;
/// Our iSCSIProtocolLevel: RFC 7143 is level 1 (RFC 7144 §13.1).
pub const ISCSI_PROTOCOL_LEVEL: u8 = 1;
/// The MaxOutstandingUnexpectedPDUs we grant an iSER initiator (RFC 7145 §6.3.4): the
/// receive buffers an iSER connection posts beyond the CmdSN window.
pub const MAX_OUTSTANDING_UNEXPECTED_PDUS: u32 = 32;

/// Login stages (CSG / NSG values, RFC 7143 §11.12.3).
pub mod stage {
    pub const SECURITY: u8 = 0;
    pub const OPERATIONAL: u8 = 1;
    pub const FULL_FEATURE: u8 = 3;
}

const FLAG_T: u8 = 0x80;
const FLAG_C: u8 = 0x40;

/// Status-Class and Status-Detail of a Login Response (RFC 7143 §11.13.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LoginStatus {
    pub class: u8,
    pub detail: u8,
}

impl LoginStatus {
    pub const fn new(class: u8, detail: u8) -> Self {
        Self { class, detail }
    }
    pub const SUCCESS: Self = Self::new(0, 0);
    pub const TARGET_MOVED_TEMPORARILY: Self = Self::new(1, 1);
    pub const TARGET_MOVED_PERMANENTLY: Self = Self::new(1, 2);
    pub const INITIATOR_ERROR: Self = Self::new(2, 0);
    pub const AUTHENTICATION_FAILURE: Self = Self::new(2, 1);
    pub const AUTHORIZATION_FAILURE: Self = Self::new(2, 2);
    pub const NOT_FOUND: Self = Self::new(2, 3);
    pub const TARGET_REMOVED: Self = Self::new(2, 4);
    pub const UNSUPPORTED_VERSION: Self = Self::new(2, 5);
    pub const TOO_MANY_CONNECTIONS: Self = Self::new(2, 6);
    pub const MISSING_PARAMETER: Self = Self::new(2, 7);
    pub const CANT_INCLUDE_IN_SESSION: Self = Self::new(2, 8);
    pub const SESSION_TYPE_NOT_SUPPORTED: Self = Self::new(2, 9);
    pub const SESSION_DOES_NOT_EXIST: Self = Self::new(2, 0x0a);
    pub const INVALID_DURING_LOGIN: Self = Self::new(2, 0x0b);
    pub const TARGET_ERROR: Self = Self::new(3, 0);
    pub const SERVICE_UNAVAILABLE: Self = Self::new(3, 1);
    pub const OUT_OF_RESOURCES: Self = Self::new(3, 2);

    /// Class and detail as one number, e.g. 0x0207.
    pub fn code(self) -> u16 {
        (self.class as u16) << 8 | self.detail as u16
    }
}

impl fmt::Display for LoginStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}/{:02x}", self.class, self.detail)
    }
}

/// What the registry says about a target an initiator wants to log into.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetLogin {
    /// Per-target parameter overrides, as for [`TargetDefaults::apply`].
    pub overrides: Vec<(String, String)>,
    pub portal_group_tag: u16,
}

/// Progress of an authentication exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthStep {
    /// More security-stage exchanges are needed.
    Continue,
    /// The initiator (and, for mutual authentication, the target) is authenticated.
    Done,
}

/// An authentication method for the SecurityNegotiation stage (RFC 7143 §12), e.g. CHAP.
/// `Send` so a login can move between the driver's threads.
pub trait Authenticator: Send {
    /// AuthMethod values accepted, in the target's order of preference (e.g. `["CHAP"]`).
    /// Listing `"None"` lets the initiator skip authentication.
    fn methods(&self) -> &[&'static str];

    /// One exchange of the chosen `method`: `request` holds the security keys of the
    /// initiator's latest complete text set (CHAP_A, CHAP_N, ...; empty in the set that
    /// chose the method unless it also carried some), `reply` receives the answer keys.
    /// An error ends the login with that status (e.g. 02/01 authentication failure).
    fn step(
        &mut self,
        method: &str,
        request: &TextPairs,
        reply: &mut TextPairs,
    ) -> Result<AuthStep, LoginStatus>;

    /// Why the exchange failed, for the log line (never a secret).
    fn failure(&self) -> Option<String> {
        None
    }

    /// The name the initiator authenticated as, once it has (CHAP_N).
    fn peer_user(&self) -> Option<String> {
        None
    }
}

/// The login state machine's questions to the rest of the target.
pub trait LoginContext {
    /// Called once for a Normal session with the TargetName and InitiatorName: return
    /// per-target overrides + the TPGT, or a login status (e.g. 0x0203 not found, 0x0202
    /// authorization failure, 0x0301 service unavailable).
    fn target(
        &mut self,
        target_name: &str,
        initiator_name: &str,
    ) -> Result<TargetLogin, LoginStatus>;
    /// A new TSIH for a new session (leading login, TSIH 0). Must not be 0.
    fn new_tsih(&mut self) -> u16;
    /// The TPGT of the portal this connection came in on (for discovery sessions too).
    fn portal_group_tag(&self) -> u16;
    /// Whether a session with this ISID and (non-zero) TSIH exists, for a login that adds
    /// a connection to it (RFC 7143 §6.3.1). Without multi-connection sessions: `false`.
    fn session_exists(&mut self, _isid: [u8; 6], _tsih: u16) -> bool {
        false
    }
    /// Where a Normal session's login to `target_name` goes instead (RFC 7143 §11.13.5
    /// status class 1): 01/01 or 01/02 and the TargetAddress value for the response.
    fn redirect(&mut self, _target_name: &str) -> Option<(LoginStatus, String)> {
        None
    }
    /// The authenticator for this login, called once after the first text set, or `None`
    /// for no authentication (AuthMethod=None only).
    fn authenticator(
        &mut self,
        _session_type: SessionType,
        _target_name: Option<&str>,
        _initiator_name: &str,
    ) -> Option<Box<dyn Authenticator>> {
        None
    }
}

/// What to do after one Login Request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginStep {
    /// Send this response and wait for the next Login Request.
    Continue(Pdu),
    /// Send this final response (T=1, NSG=FullFeaturePhase); the connection is now in the
    /// full-feature phase with these parameters.
    Complete {
        response: Pdu,
        params: SessionParams,
    },
    /// Send this Login Response (non-zero status) and close the connection.
    Fail(Pdu),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum AuthState {
    NotStarted,
    InProgress(String),
    Done(String),
}

struct Pending {
    rest: Vec<u8>,
    transit: bool,
    nsg: u8,
    tsih: u16,
    complete: Option<SessionParams>,
}

type Failure = (LoginStatus, String);

fn fail<T>(status: LoginStatus, why: impl Into<String>) -> Result<T, Failure> {
    Err((status, why.into()))
}

fn key_err(e: KeyError) -> Failure {
    (LoginStatus::INITIATOR_ERROR, e.to_string())
}

/// How a key is used (RFC 7143 §13: "Use").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyUse {
    /// Initialize only: any connection's login.
    Io,
    /// Leading only: the login that creates the session.
    Lo,
    /// Login or full-feature phase.
    All,
    /// Full-feature phase only.
    Ffpo,
    /// Security negotiation stage only (RFC 7143 §12).
    Security,
}

/// The use class of a key we know, `None` for keys we do not understand.
pub(crate) fn key_use(key: &str) -> Option<KeyUse> {
    Some(match key {
        "HeaderDigest" | "DataDigest" | "InitiatorName" | "TargetPortalGroupTag" => KeyUse::Io,
        "TargetName" => KeyUse::Io,
        "MaxConnections"
        | "InitialR2T"
        | "ImmediateData"
        | "MaxBurstLength"
        | "FirstBurstLength"
        | "DefaultTime2Wait"
        | "DefaultTime2Retain"
        | "MaxOutstandingR2T"
        | "DataPDUInOrder"
        | "DataSequenceInOrder"
        | "ErrorRecoveryLevel"
        | "SessionType"
        | "TaskReporting"
        | "iSCSIProtocolLevel"
        | "IFMarker"
        | "OFMarker"
        | "IFMarkInt"
        | "OFMarkInt"
        | "RDMAExtensions"
        | "MaxOutstandingUnexpectedPDUs" => KeyUse::Lo,
        // RFC 7145 §6.3.2, §6.3.3: IO keys; with one connection per session, the leading
        // login is the only one.
        "TargetRecvDataSegmentLength" | "InitiatorRecvDataSegmentLength" => KeyUse::Lo,
        "MaxRecvDataSegmentLength" | "InitiatorAlias" | "TargetAlias" | "TargetAddress" => {
            KeyUse::All
        }
        "SendTargets" => KeyUse::Ffpo,
        "AuthMethod" => KeyUse::Security,
        k if is_security_key(k) => KeyUse::Security,
        _ => return None,
    })
}

/// Keys of the authentication methods (RFC 7143 §12.1–§12.4, RFC 3720 §11.1.x for SPKM).
fn is_security_key(k: &str) -> bool {
    k.starts_with("CHAP_")
        || k.starts_with("SRP_")
        || k.starts_with("KRB_")
        || k.starts_with("SPKM_")
        || k == "TargetAuth"
}

/// Keys that a Discovery session does not negotiate ("Irrelevant when:
/// SessionType=Discovery", RFC 7143 §13.2, §13.10, §13.11, §13.13, §13.14, §13.17–§13.19,
/// §13.23).
fn normal_only(k: &str) -> bool {
    matches!(
        k,
        "MaxConnections"
            | "InitialR2T"
            | "ImmediateData"
            | "MaxBurstLength"
            | "FirstBurstLength"
            | "MaxOutstandingR2T"
            | "DataPDUInOrder"
            | "DataSequenceInOrder"
            | "TaskReporting"
    )
}

/// Keys only the target may send (RFC 7143 §13.7, §13.8, §13.9).
fn target_only(k: &str) -> bool {
    matches!(k, "TargetAlias" | "TargetAddress" | "TargetPortalGroupTag")
}

/// Validates an iSCSI name's size (RFC 7143 §4.2.7.1: at most 223 bytes).
fn valid_iscsi_name(n: &str) -> bool {
    !n.is_empty() && n.len() <= 223 && !n.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Login state for one connection.
pub struct Login {
    base: TargetDefaults,
    d: TargetDefaults,
    p: SessionParams,
    acc: TextAccumulator,
    auth: Option<Box<dyn Authenticator>>,
    auth_state: AuthState,
    pending: Option<Pending>,
    /// Keys the initiator has offered or declared so far, with their values (RFC 7143
    /// §6.2: no renegotiation).
    seen: HashMap<String, String>,
    /// Our outstanding offers awaiting the initiator's answer, with the value offered.
    offers: Vec<(&'static str, String)>,
    offers_made: bool,
    mrdsl_declared: bool,
    max_burst_negotiated: bool,
    stage: u8,
    started: bool,
    identified: bool,
    finished: bool,
    req_tsih: u16,
    next_stat_sn: u32,
    pdus: u32,
    failure: Option<String>,
    failure_status: Option<LoginStatus>,
    /// TargetAddress of a redirection, sent with the class 1 status.
    redirect_to: Option<String>,
}

impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Login")
            .field("stage", &self.stage)
            .field("initiator", &self.p.initiator_name)
            .field("target", &self.p.target_name)
            .field("auth", &self.auth_state)
            .field("finished", &self.finished)
            .finish()
    }
}

impl Login {
    pub fn new(defaults: TargetDefaults) -> Self {
        Self {
            d: defaults.clone(),
            base: defaults,
            p: SessionParams::default(),
            acc: TextAccumulator::default(),
            auth: None,
            auth_state: AuthState::NotStarted,
            pending: None,
            seen: HashMap::new(),
            offers: Vec::new(),
            offers_made: false,
            mrdsl_declared: false,
            max_burst_negotiated: false,
            stage: stage::SECURITY,
            started: false,
            identified: false,
            finished: false,
            req_tsih: 0,
            next_stat_sn: 0,
            pdus: 0,
            failure: None,
            failure_status: None,
            redirect_to: None,
        }
    }

    /// The current stage (CSG the next request must carry).
    pub fn stage(&self) -> u8 {
        self.stage
    }

    /// True once a `Complete` or `Fail` step was returned.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Why the login failed, for the log line (names what was wrong).
    pub fn failure_reason(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    /// The status the login failed with.
    pub fn failure_status(&self) -> Option<LoginStatus> {
        self.failure_status
    }

    /// The name the initiator authenticated as (CHAP_N), when it did.
    pub fn auth_user(&self) -> Option<String> {
        self.auth.as_ref().and_then(|a| a.peer_user())
    }

    /// The parameters negotiated so far (complete only after `LoginStep::Complete`).
    pub fn params(&self) -> &SessionParams {
        &self.p
    }

    /// Handles one Login Request.
    pub fn handle(&mut self, req: &Pdu, ctx: &mut dyn LoginContext) -> LoginStep {
        match self.step(req, ctx) {
            Ok(step) => {
                if matches!(step, LoginStep::Complete { .. }) {
                    self.finished = true;
                }
                step
            }
            Err((status, why)) => {
                tracing::debug!(%status, reason = %why, "login failed");
                self.failure = Some(why);
                self.failure_status = Some(status);
                self.finished = true;
                LoginStep::Fail(self.reject_pdu(req, status))
            }
        }
    }

    fn step(&mut self, req: &Pdu, ctx: &mut dyn LoginContext) -> Result<LoginStep, Failure> {
        if self.finished {
            return fail(LoginStatus::INITIATOR_ERROR, "login already ended");
        }
        if req.opcode() != op::LOGIN_REQ {
            // RFC 7143 §11.13.5: 02/0b, a non-login request during login.
            return fail(
                LoginStatus::INVALID_DURING_LOGIN,
                format!("opcode {:#04x} during login", req.opcode()),
            );
        }
        self.pdus += 1;
        if self.pdus > MAX_LOGIN_PDUS {
            return fail(LoginStatus::INITIATOR_ERROR, "too many Login Request PDUs");
        }
        if req.data.len() > LOGIN_MAX_DATA_SEGMENT {
            return fail(
                LoginStatus::INITIATOR_ERROR,
                format!(
                    "login data segment of {} bytes exceeds 8192",
                    req.data.len()
                ),
            );
        }
        // No AHS type exists for a Login Request (RFC 7143 §11.2.2.1, §11.12): any AHS,
        // of whatever type or length, is an initiator error (§11.13.5, 02/00).
        if !req.ahs.is_empty() {
            return fail(
                LoginStatus::INITIATOR_ERROR,
                format!("Login Request with {} bytes of AHS", req.ahs.len()),
            );
        }
        // RFC 7143 §11.12.4/§11.12.5: we speak version 0x00 only.
        let (version_max, version_min) = (req.bhs[2], req.bhs[3]);
        if version_min > 0 || version_max < version_min {
            return fail(
                LoginStatus::UNSUPPORTED_VERSION,
                format!("version range {version_min}..{version_max} excludes 0"),
            );
        }
        let flags = req.flags();
        let transit = flags & FLAG_T != 0;
        let cont = flags & FLAG_C != 0;
        let csg = (flags >> 2) & 3;
        let nsg = flags & 3;
        // RFC 7143 §11.12.2: C=1 requires T=0.
        if transit && cont {
            return fail(LoginStatus::INITIATOR_ERROR, "T and C both set");
        }
        if csg != stage::SECURITY && csg != stage::OPERATIONAL {
            return fail(LoginStatus::INITIATOR_ERROR, format!("invalid CSG {csg}"));
        }
        // RFC 7143 §11.12.3: stage 2 is reserved; the next stage must be a later one.
        if transit && (nsg == 2 || nsg <= csg) {
            return fail(
                LoginStatus::INITIATOR_ERROR,
                format!("invalid transition from stage {csg} to {nsg}"),
            );
        }
        let isid: [u8; 6] = req.bhs[8..14].try_into().unwrap();
        let tsih = req.u16_at(14);
        if !self.started {
            self.started = true;
            self.p.isid = isid;
            self.req_tsih = tsih;
            self.p.cid = req.u16_at(20);
            self.p.leading = tsih == 0;
            self.stage = csg;
            // RFC 7143 §11.13.4: the first response's StatSN starts the connection's
            // sequence; we take the initiator's ExpStatSN.
            self.next_stat_sn = req.exp_stat_sn();
        } else {
            if isid != self.p.isid || tsih != self.req_tsih {
                return fail(
                    LoginStatus::INITIATOR_ERROR,
                    "ISID or TSIH changed during login",
                );
            }
            if csg != self.stage {
                return fail(
                    LoginStatus::INITIATOR_ERROR,
                    format!("CSG {csg} but the login is in stage {}", self.stage),
                );
            }
        }
        self.p.exp_cmd_sn = req.cmd_sn();

        // Continuation of a response too long for one PDU: the initiator acknowledges each
        // part with an empty request (RFC 7143 §6.3, §11.13.2).
        if self.pending.is_some() {
            if !req.data.is_empty() || cont {
                return fail(
                    LoginStatus::INITIATOR_ERROR,
                    "data sent while the target's response is continued",
                );
            }
            return Ok(self.next_pending_chunk(req));
        }

        let Some(set) = self.acc.push(&req.data, cont).map_err(key_err)? else {
            // C bit: acknowledge the partial text with an empty response (RFC 7143 §6.3).
            let rsp = self.response(req, csg << 2 | nsg, Vec::new(), 0);
            return Ok(LoginStep::Continue(rsp));
        };

        let mut reply = TextPairs::new();
        if !self.identified {
            self.identify(&set, tsih, ctx, &mut reply)?;
        }
        if self.stage == stage::OPERATIONAL && self.auth_state == AuthState::NotStarted {
            // The initiator skipped SecurityNegotiation (RFC 7143 §6.3): only allowed when
            // the target does not require authentication.
            self.skip_auth()?;
        }
        self.negotiate_set(&set, &mut reply)?;

        let mut grant = transit;
        if self.stage == stage::SECURITY {
            match &self.auth_state {
                AuthState::NotStarted if transit => self.skip_auth()?,
                AuthState::InProgress(_) => grant = false,
                _ => {}
            }
        }
        if self.stage == stage::OPERATIONAL && !self.offers_made {
            self.offers_made = true;
            self.make_offers(&mut reply);
        }
        if !self.offers.is_empty() {
            // Our offers need the initiator's answer before we may leave the stage.
            grant = false;
        }
        let to_ffp = grant && nsg == stage::FULL_FEATURE;
        // Under iSER, MaxRecvDataSegmentLength is irrelevant (RFC 7145 §6.3.2): not declared.
        if (to_ffp || self.stage == stage::OPERATIONAL)
            && !self.mrdsl_declared
            && !self.p.rdma_extensions
        {
            // RFC 7143 §13.12: declare what we accept; the initiator keeps 8192 otherwise.
            self.mrdsl_declared = true;
            reply.push(
                "MaxRecvDataSegmentLength",
                self.d.max_recv_data_segment_length.to_string(),
            );
        }

        let mut resp_tsih = 0;
        let mut complete = None;
        if to_ffp {
            resp_tsih = if self.p.leading {
                ctx.new_tsih()
            } else {
                self.req_tsih
            };
            complete = Some(self.finish_params(resp_tsih));
        } else if !self.p.leading {
            resp_tsih = self.req_tsih;
        }

        let data = reply.encode();
        let cur = self.stage;
        if data.len() > LOGIN_MAX_DATA_SEGMENT {
            // Split the response; the last part carries T and NSG (RFC 7143 §11.13.2).
            let rest = data[LOGIN_MAX_DATA_SEGMENT..].to_vec();
            let first = data[..LOGIN_MAX_DATA_SEGMENT].to_vec();
            self.pending = Some(Pending {
                rest,
                transit: grant,
                nsg,
                tsih: resp_tsih,
                complete,
            });
            let rsp = self.response(req, FLAG_C | cur << 2 | nsg, first, 0);
            return Ok(LoginStep::Continue(rsp));
        }
        if grant {
            self.stage = nsg;
        }
        let f = if grant { FLAG_T } else { 0 } | cur << 2 | nsg;
        let rsp = self.response(req, f, data, resp_tsih);
        Ok(match complete {
            Some(mut params) => {
                params.stat_sn = self.next_stat_sn;
                LoginStep::Complete {
                    response: rsp,
                    params,
                }
            }
            None => LoginStep::Continue(rsp),
        })
    }

    fn next_pending_chunk(&mut self, req: &Pdu) -> LoginStep {
        let mut pend = self.pending.take().unwrap();
        // The stage advances only with the last part, which carries T.
        let csg = self.stage;
        if pend.rest.len() > LOGIN_MAX_DATA_SEGMENT {
            let chunk: Vec<u8> = pend.rest.drain(..LOGIN_MAX_DATA_SEGMENT).collect();
            let nsg = pend.nsg;
            self.pending = Some(pend);
            return LoginStep::Continue(self.response(req, FLAG_C | csg << 2 | nsg, chunk, 0));
        }
        if pend.transit {
            self.stage = pend.nsg;
        }
        let f = if pend.transit { FLAG_T } else { 0 } | csg << 2 | pend.nsg;
        let rsp = self.response(req, f, pend.rest, pend.tsih);
        match pend.complete {
            Some(mut params) => {
                params.stat_sn = self.next_stat_sn;
                self.finished = true;
                LoginStep::Complete {
                    response: rsp,
                    params,
                }
            }
            None => LoginStep::Continue(rsp),
        }
    }

    /// The first complete text set: who is logging in to what (RFC 7143 §6.3: InitiatorName
    /// and, for Normal sessions, TargetName are in the first request).
    fn identify(
        &mut self,
        set: &TextPairs,
        tsih: u16,
        ctx: &mut dyn LoginContext,
        reply: &mut TextPairs,
    ) -> Result<(), Failure> {
        self.identified = true;
        let Some(iname) = set.get("InitiatorName") else {
            return fail(LoginStatus::MISSING_PARAMETER, "InitiatorName missing");
        };
        if !valid_iscsi_name(iname) {
            return fail(
                LoginStatus::INITIATOR_ERROR,
                format!("InitiatorName {iname:?} is not a valid iSCSI name"),
            );
        }
        self.p.initiator_name = iname.to_string();
        self.p.session_type = match set.get("SessionType") {
            None | Some("Normal") => SessionType::Normal,
            Some("Discovery") => SessionType::Discovery,
            Some(other) => {
                return fail(
                    LoginStatus::SESSION_TYPE_NOT_SUPPORTED,
                    format!("SessionType={other}"),
                )
            }
        };
        // RFC 7143 §6.3.1: a non-zero TSIH adds a connection to an existing session.
        if tsih != 0 && !ctx.session_exists(self.p.isid, tsih) {
            return fail(
                LoginStatus::SESSION_DOES_NOT_EXIST,
                format!("no session with TSIH {tsih:#06x}"),
            );
        }
        let tname = set.get("TargetName").filter(|t| !t.is_empty());
        match self.p.session_type {
            SessionType::Normal => {
                let Some(tname) = tname else {
                    return fail(
                        LoginStatus::MISSING_PARAMETER,
                        "TargetName missing for a Normal session",
                    );
                };
                if let Some((status, addr)) = ctx.redirect(tname) {
                    self.redirect_to = Some(addr.clone());
                    return fail(status, format!("target {tname:?} moved to {addr}"));
                }
                let tl = ctx
                    .target(tname, iname)
                    .map_err(|s| (s, format!("target {tname:?} refused login")))?;
                self.d = self
                    .base
                    .with_overrides(&tl.overrides)
                    .map_err(|e: ParamError| {
                        (
                            LoginStatus::TARGET_ERROR,
                            format!("bad configuration of target {tname}: {e}"),
                        )
                    })?;
                self.p.target_name = Some(tname.to_string());
                self.p.target_portal_group_tag = tl.portal_group_tag;
                self.p.target_alias = self.d.target_alias.clone();
                // RFC 7143 §13.9: the TPGT in the first response of a Normal session.
                reply.push("TargetPortalGroupTag", tl.portal_group_tag.to_string());
                if let Some(alias) = &self.d.target_alias {
                    reply.push("TargetAlias", alias.clone());
                }
            }
            SessionType::Discovery => {
                self.p.target_name = tname.map(str::to_string);
                self.p.target_portal_group_tag = ctx.portal_group_tag();
            }
        }
        self.auth = ctx.authenticator(
            self.p.session_type,
            self.p.target_name.as_deref(),
            &self.p.initiator_name,
        );
        Ok(())
    }

    fn auth_methods(&self) -> &[&'static str] {
        match &self.auth {
            Some(a) => a.methods(),
            None => &["None"],
        }
    }

    /// Leaving SecurityNegotiation without negotiating AuthMethod.
    fn skip_auth(&mut self) -> Result<(), Failure> {
        if self.auth_methods().contains(&"None") {
            self.auth_state = AuthState::Done("None".into());
            self.p.auth_method = "None".into();
            Ok(())
        } else {
            fail(
                LoginStatus::AUTHENTICATION_FAILURE,
                "authentication required but not negotiated",
            )
        }
    }

    fn negotiate_set(&mut self, set: &TextPairs, reply: &mut TextPairs) -> Result<(), Failure> {
        let mut sec = TextPairs::new();
        let had_offers = !self.offers.is_empty();
        // MaxBurstLength first, so FirstBurstLength can be bounded by it (RFC 7143 §13.14).
        let mut order: Vec<(&str, &str)> = set.iter().collect();
        order.sort_by_key(|(k, _)| (*k != "MaxBurstLength") as u8);
        for (k, v) in order {
            match k {
                "InitiatorName" | "TargetName" | "SessionType" => {
                    // Declared in the first set; some initiators repeat them later, which
                    // is harmless as long as the value is the same.
                    let same = match k {
                        "InitiatorName" => v == self.p.initiator_name,
                        "TargetName" => Some(v) == self.p.target_name.as_deref(),
                        _ => v == self.p.session_type.as_str(),
                    };
                    if !same {
                        return fail(
                            LoginStatus::INITIATOR_ERROR,
                            format!("{k} changed during login"),
                        );
                    }
                    continue;
                }
                _ => {}
            }
            if let Some(i) = self.offers.iter().position(|(o, _)| *o == k) {
                let (_, offered) = self.offers.remove(i);
                self.answer_to_offer(k, v, &offered)?;
                self.seen.insert(k.to_string(), v.to_string());
                continue;
            }
            if let Some(prev) = self.seen.get(k) {
                // RFC 7143 §6.2: renegotiation within a login is an initiator error. An
                // identical repeat is tolerated and answered again: libiscsi re-sends its
                // whole operational set in every request of the stage.
                if prev != v || k == "AuthMethod" || is_security_key(k) {
                    return fail(
                        LoginStatus::INITIATOR_ERROR,
                        format!("{k} negotiated twice"),
                    );
                }
            } else {
                self.seen.insert(k.to_string(), v.to_string());
            }
            if k == "AuthMethod" || is_security_key(k) {
                if self.stage != stage::SECURITY {
                    return fail(
                        LoginStatus::INITIATOR_ERROR,
                        format!("{k} outside SecurityNegotiation"),
                    );
                }
                if k == "AuthMethod" {
                    let chosen = self.choose_auth_method(v)?;
                    reply.push("AuthMethod", chosen);
                } else {
                    sec.push(k, v);
                }
                continue;
            }
            if let Some(answer) = self.negotiate(k, v)? {
                reply.push(k, answer);
            }
        }
        if had_offers {
            // Offers left unanswered for a whole round keep their RFC defaults (libiscsi,
            // for one, reads our offers but never answers them), unless the default is
            // unacceptable.
            for (k, offered) in std::mem::take(&mut self.offers) {
                if matches!(k, "HeaderDigest" | "DataDigest") {
                    return fail(
                        LoginStatus::INITIATOR_ERROR,
                        format!("{k} not answered, but this target requires {offered}"),
                    );
                }
            }
        }
        if self.stage == stage::SECURITY {
            if let AuthState::InProgress(method) = &self.auth_state {
                let method = method.clone();
                let auth = self.auth.as_mut().expect("a method was chosen from it");
                let r = auth.step(&method, &sec, reply).map_err(|s| {
                    let why = auth.failure().unwrap_or_default();
                    (s, format!("{method} authentication failed: {why}"))
                })?;
                if r == AuthStep::Done {
                    self.auth_state = AuthState::Done(method);
                }
            } else if !sec.is_empty() {
                return fail(
                    LoginStatus::INITIATOR_ERROR,
                    "authentication keys without an agreed AuthMethod",
                );
            }
        }
        Ok(())
    }

    /// AuthMethod list selection (RFC 7143 §12, §6.2.2): the first of the initiator's
    /// methods we accept.
    fn choose_auth_method(&mut self, offer: &str) -> Result<String, Failure> {
        let methods = self.auth_methods();
        let Some(m) = offer
            .split(',')
            .find(|m| methods.contains(m))
            .map(str::to_string)
        else {
            return fail(
                LoginStatus::AUTHENTICATION_FAILURE,
                format!("AuthMethod={offer}: none acceptable (target allows {methods:?})"),
            );
        };
        self.p.auth_method = m.clone();
        self.auth_state = if m == "None" {
            AuthState::Done(m.clone())
        } else {
            AuthState::InProgress(m.clone())
        };
        Ok(m)
    }

    /// Answers one initiator offer or declaration (RFC 7143 §6.2, §13). `None` means no
    /// answer is sent (declarations).
    fn negotiate(&mut self, k: &str, v: &str) -> Result<Option<String>, Failure> {
        let discovery = self.p.session_type == SessionType::Discovery;
        if target_only(k) {
            return fail(
                LoginStatus::INITIATOR_ERROR,
                format!("{k} may only be sent by a target"),
            );
        }
        let Some(usage) = key_use(k) else {
            // Unknown keys, including X- vendor and X# registered extensions we do not
            // implement (RFC 7143 §6.2, §13.5.4).
            return Ok(Some(keys::NOT_UNDERSTOOD.into()));
        };
        if usage == KeyUse::Ffpo {
            // SendTargets belongs to the full-feature phase (RFC 7143 §13.3).
            return Ok(Some(keys::REJECT.into()));
        }
        if keys::is_reserved_answer(v) {
            // An "answer" to something we never offered: nothing to reply.
            return Ok(None);
        }
        if discovery && normal_only(k) {
            return Ok(Some(keys::IRRELEVANT.into()));
        }
        if usage == KeyUse::Lo && !self.p.leading {
            // Leading-only keys cannot change an existing session (RFC 7143 §13).
            return Ok(Some(keys::REJECT.into()));
        }
        let seg = (MIN_SEGMENT_LIMIT as u64, MAX_SEGMENT_LIMIT as u64);
        let num = |min: u64, max: u64| keys::parse_number_in(k, v, min, max).map_err(key_err);
        let boolean = || keys::parse_bool(k, v).map_err(key_err);
        let d = &self.d;
        let p = &mut self.p;
        let answer = match k {
            "HeaderDigest" | "DataDigest" => {
                let allowed = if k == "HeaderDigest" {
                    &d.header_digest
                } else {
                    &d.data_digest
                };
                check_list(k, v)?;
                let Some(dg) = v
                    .split(',')
                    .filter_map(|s| Digest::parse(s).filter(|_| s == s.trim()))
                    .find(|dg| allowed.contains(dg))
                else {
                    return fail(
                        LoginStatus::INITIATOR_ERROR,
                        format!("{k}={v}: none of the digests offered is allowed here"),
                    );
                };
                let on = dg == Digest::Crc32c;
                if k == "HeaderDigest" {
                    p.header_digest = on;
                } else {
                    p.data_digest = on;
                }
                dg.as_str().to_string()
            }
            "MaxConnections" => {
                let n = num(1, 65535)?.min(d.max_connections as u64);
                p.max_connections = n as u16;
                n.to_string()
            }
            "InitialR2T" => {
                // Result function OR (RFC 7143 §13.10).
                p.initial_r2t = boolean()? || d.initial_r2t;
                keys::bool_str(p.initial_r2t).into()
            }
            "ImmediateData" => {
                // Result function AND (RFC 7143 §13.11).
                p.immediate_data = boolean()? && d.immediate_data;
                keys::bool_str(p.immediate_data).into()
            }
            "MaxRecvDataSegmentLength" => {
                // Declarative (RFC 7143 §13.12): the most we may send to the initiator.
                let n = num(seg.0, seg.1)? as u32;
                p.max_xmit_data_segment_length =
                    d.max_xmit_data_segment_length.map_or(n, |cap| n.min(cap));
                return Ok(None);
            }
            "MaxBurstLength" => {
                let n = num(seg.0, seg.1)?.min(d.max_burst_length as u64);
                p.max_burst_length = n as u32;
                self.max_burst_negotiated = true;
                n.to_string()
            }
            "FirstBurstLength" => {
                let cap = if self.max_burst_negotiated {
                    p.max_burst_length
                } else {
                    d.max_burst_length
                };
                let n = num(seg.0, seg.1)?
                    .min(d.first_burst_length as u64)
                    .min(cap as u64);
                p.first_burst_length = n as u32;
                n.to_string()
            }
            "DefaultTime2Wait" => {
                // Result function Maximum (RFC 7143 §13.15).
                let n = num(0, 3600)?.max(d.default_time2wait as u64);
                p.default_time2wait = n as u16;
                n.to_string()
            }
            "DefaultTime2Retain" => {
                let n = num(0, 3600)?.min(d.default_time2retain as u64);
                p.default_time2retain = n as u16;
                n.to_string()
            }
            "MaxOutstandingR2T" => {
                let n = num(1, 65535)?.min(d.max_outstanding_r2t as u64);
                p.max_outstanding_r2t = n as u16;
                n.to_string()
            }
            "DataPDUInOrder" => {
                p.data_pdu_in_order = boolean()? || d.data_pdu_in_order;
                keys::bool_str(p.data_pdu_in_order).into()
            }
            "DataSequenceInOrder" => {
                p.data_sequence_in_order = boolean()? || d.data_sequence_in_order;
                keys::bool_str(p.data_sequence_in_order).into()
            }
            "ErrorRecoveryLevel" => {
                let n = num(0, 2)?.min(d.error_recovery_level as u64);
                p.error_recovery_level = n as u8;
                n.to_string()
            }
            "InitiatorAlias" => {
                p.initiator_alias = Some(v.to_string());
                return Ok(None);
            }
            "TaskReporting" => {
                // RFC 7143 §13.23: we implement the RFC 3720 semantics only.
                check_list(k, v)?;
                if v.split(',').any(|s| s == "RFC3720") {
                    "RFC3720".into()
                } else {
                    keys::REJECT.into()
                }
            }
            "iSCSIProtocolLevel" => {
                let n = num(0, 31)?.min(ISCSI_PROTOCOL_LEVEL as u64);
                p.iscsi_protocol_level = n as u8;
                n.to_string()
            }
            "IFMarker" | "OFMarker" => {
                // RFC 7143 §13.25: obsolete; "No" is allowed and what RFC 3720 initiators
                // expect.
                boolean()?;
                "No".into()
            }
            "IFMarkInt" | "OFMarkInt" => keys::REJECT.into(),
            "RDMAExtensions" => {
                // RFC 7145 §6.3.1: AND; Yes only on an iSER connection.
                p.rdma_extensions = boolean()? && d.rdma_data_segment_limit.is_some();
                keys::bool_str(p.rdma_extensions).into()
            }
            "TargetRecvDataSegmentLength" | "InitiatorRecvDataSegmentLength" => {
                // RFC 7145 §6.3.2, §6.3.3: Minimum, 512..2^24-1; bounded by what our
                // receive and send buffers hold. Irrelevant without iSER.
                let Some(limit) = d.rdma_data_segment_limit else {
                    return Ok(Some(keys::IRRELEVANT.into()));
                };
                let n = num(512, (1 << 24) - 1)?.min(limit as u64) as u32;
                if k == "TargetRecvDataSegmentLength" {
                    p.target_recv_data_segment_length = n;
                } else {
                    p.initiator_recv_data_segment_length = n;
                }
                n.to_string()
            }
            "MaxOutstandingUnexpectedPDUs" => {
                // RFC 7145 §6.3.4: Minimum, with 0 meaning no limit; ours is what the
                // receive buffers beyond the command window hold.
                let Some(_) = d.rdma_data_segment_limit else {
                    return Ok(Some(keys::IRRELEVANT.into()));
                };
                let n = num(0, u32::MAX as u64)? as u32;
                if n == 1 {
                    // 0 or 2..2^32-1 (RFC 7145 §6.3.4).
                    return fail(
                        LoginStatus::INITIATOR_ERROR,
                        format!("{k}=1 is out of range"),
                    );
                }
                let ours = MAX_OUTSTANDING_UNEXPECTED_PDUS;
                let m = if n == 0 { ours } else { n.min(ours) };
                p.max_outstanding_unexpected_pdus = m;
                m.to_string()
            }
            _ => keys::NOT_UNDERSTOOD.into(),
        };
        Ok(Some(answer))
    }

    /// Keys we offer that the initiator did not mention (RFC 7143 §6.2: either side may
    /// offer), to get the generous values of DESIGN.md.
    fn make_offers(&mut self, reply: &mut TextPairs) {
        if !self.p.leading {
            return;
        }
        let d = self.d.clone();
        let mut offer = |this: &mut Self, k: &'static str, v: String| {
            if !this.seen.contains_key(k) {
                reply.push(k, v.clone());
                this.offers.push((k, v));
            }
        };
        if self.p.session_type == SessionType::Normal {
            offer(self, "InitialR2T", keys::bool_str(d.initial_r2t).into());
            offer(
                self,
                "ImmediateData",
                keys::bool_str(d.immediate_data).into(),
            );
            let max_burst = if self.max_burst_negotiated {
                self.p.max_burst_length
            } else {
                d.max_burst_length
            };
            offer(self, "MaxBurstLength", d.max_burst_length.to_string());
            offer(
                self,
                "FirstBurstLength",
                d.first_burst_length.min(max_burst).to_string(),
            );
            offer(self, "MaxOutstandingR2T", d.max_outstanding_r2t.to_string());
            if !d.data_pdu_in_order {
                offer(self, "DataPDUInOrder", "No".into());
            }
            if !d.data_sequence_in_order {
                offer(self, "DataSequenceInOrder", "No".into());
            }
        }
        let rfc = SessionParams::default();
        if d.default_time2wait != rfc.default_time2wait {
            offer(self, "DefaultTime2Wait", d.default_time2wait.to_string());
        }
        if d.default_time2retain != rfc.default_time2retain {
            offer(
                self,
                "DefaultTime2Retain",
                d.default_time2retain.to_string(),
            );
        }
        // A target that requires digests must ask for them: the default is None.
        for (k, list) in [
            ("HeaderDigest", &d.header_digest),
            ("DataDigest", &d.data_digest),
        ] {
            if !list.contains(&Digest::None) && !list.is_empty() {
                let v = list
                    .iter()
                    .map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join(",");
                offer(self, k, v);
            }
        }
    }

    /// Checks the initiator's answer to one of our offers (RFC 7143 §6.2.2: the answer
    /// must be a legal result of the key's function), and records it.
    fn answer_to_offer(&mut self, k: &str, v: &str, offered: &str) -> Result<(), Failure> {
        let illegal = || {
            (
                LoginStatus::INITIATOR_ERROR,
                format!("illegal answer {k}={v} to our offer {k}={offered}"),
            )
        };
        let p = &mut self.p;
        if keys::is_reserved_answer(v) {
            // The RFC default stays in force, which is fine unless we require digests.
            if matches!(k, "HeaderDigest" | "DataDigest") {
                return fail(
                    LoginStatus::INITIATOR_ERROR,
                    format!("{k}={v}, but this target requires {offered}"),
                );
            }
            return Ok(());
        }
        let seg = (MIN_SEGMENT_LIMIT as u64, MAX_SEGMENT_LIMIT as u64);
        let num = |min, max| keys::parse_number_in(k, v, min, max).map_err(key_err);
        let boolean = || keys::parse_bool(k, v).map_err(key_err);
        let off_num: u64 = offered.parse().unwrap_or(0);
        let off_bool = offered == "Yes";
        match k {
            // OR: a "Yes" offer leaves no choice; a "No" offer may be answered either way.
            "InitialR2T" | "DataPDUInOrder" | "DataSequenceInOrder" => {
                let b = boolean()?;
                if off_bool && !b {
                    return Err(illegal());
                }
                match k {
                    "InitialR2T" => p.initial_r2t = b,
                    "DataPDUInOrder" => p.data_pdu_in_order = b,
                    _ => p.data_sequence_in_order = b,
                }
            }
            // AND: a "No" offer leaves no choice.
            "ImmediateData" => {
                let b = boolean()?;
                if !off_bool && b {
                    return Err(illegal());
                }
                p.immediate_data = b;
            }
            "MaxBurstLength" | "FirstBurstLength" => {
                let n = num(seg.0, seg.1)?;
                if n > off_num {
                    return Err(illegal());
                }
                if k == "MaxBurstLength" {
                    p.max_burst_length = n as u32;
                    self.max_burst_negotiated = true;
                } else {
                    p.first_burst_length = n as u32;
                }
            }
            "MaxOutstandingR2T" => {
                let n = num(1, 65535)?;
                if n > off_num {
                    return Err(illegal());
                }
                p.max_outstanding_r2t = n as u16;
            }
            "DefaultTime2Retain" => {
                let n = num(0, 3600)?;
                if n > off_num {
                    return Err(illegal());
                }
                p.default_time2retain = n as u16;
            }
            "DefaultTime2Wait" => {
                let n = num(0, 3600)?;
                if n < off_num {
                    return Err(illegal());
                }
                p.default_time2wait = n as u16;
            }
            "HeaderDigest" | "DataDigest" => {
                let dg = Digest::parse(v).ok_or_else(illegal)?;
                if !offered.split(',').any(|o| Digest::parse(o) == Some(dg)) {
                    return Err(illegal());
                }
                if k == "HeaderDigest" {
                    p.header_digest = dg == Digest::Crc32c;
                } else {
                    p.data_digest = dg == Digest::Crc32c;
                }
            }
            _ => return Err(illegal()),
        }
        Ok(())
    }

    fn finish_params(&mut self, tsih: u16) -> SessionParams {
        let p = &mut self.p;
        p.tsih = tsih;
        p.max_recv_data_segment_length = self.d.max_recv_data_segment_length;
        if !self.seen.contains_key("MaxRecvDataSegmentLength") {
            p.max_xmit_data_segment_length = self
                .d
                .max_xmit_data_segment_length
                .map_or(DEFAULT_MAX_RECV_DATA_SEGMENT_LENGTH, |cap| {
                    cap.min(DEFAULT_MAX_RECV_DATA_SEGMENT_LENGTH)
                });
        }
        // RFC 7143 §13.14: FirstBurstLength must not exceed MaxBurstLength.
        p.first_burst_length = p.first_burst_length.min(p.max_burst_length);
        p.clone()
    }

    fn response(&mut self, req: &Pdu, flags: u8, data: Vec<u8>, tsih: u16) -> Pdu {
        let mut r = Pdu::new(op::LOGIN_RSP);
        r.set_flags(flags);
        r.bhs[2] = 0; // Version-max
        r.bhs[3] = 0; // Version-active
        r.bhs[8..14].copy_from_slice(&self.p.isid);
        r.set_u16(14, tsih);
        r.set_itt(req.itt());
        r.set_stat_sn(self.next_stat_sn);
        self.next_stat_sn = self.next_stat_sn.wrapping_add(1);
        // Login requests are immediate and do not advance CmdSN (RFC 7143 §11.12.7).
        r.set_exp_cmd_sn(req.cmd_sn());
        r.set_max_cmd_sn(req.cmd_sn().wrapping_add(CMD_SN_WINDOW - 1));
        r.data = data;
        r.fix_lengths();
        r
    }

    fn reject_pdu(&mut self, req: &Pdu, status: LoginStatus) -> Pdu {
        if !self.started {
            self.next_stat_sn = req.exp_stat_sn();
            self.p.isid = req.bhs[8..14].try_into().unwrap();
        }
        let csg = (req.flags() >> 2) & 3;
        // A redirection names where to go (RFC 7143 §11.13.5: TargetAddress keys).
        let data = match (&self.redirect_to, status.class) {
            (Some(a), 1) => format!("TargetAddress={a}\0").into_bytes(),
            _ => Vec::new(),
        };
        let mut r = self.response(req, csg << 2, data, req.u16_at(14));
        r.bhs[36] = status.class;
        r.bhs[37] = status.detail;
        r
    }
}

/// Checks a list-valued key's syntax: non-empty comma-separated items (RFC 7143 §6.1).
fn check_list(k: &str, v: &str) -> Result<(), Failure> {
    if v.is_empty() || v.split(',').any(|s| s.is_empty()) {
        return Err(key_err(KeyError::BadValue {
            key: k.into(),
            value: v.into(),
        }));
    }
    Ok(())
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
