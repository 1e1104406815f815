//! The configuration file (TOML): what rtgtd loads with `--config FILE`, what
//! `rtgtadm config dump` writes and what `rtgtadm config apply` makes the running
//! configuration.
//!
//! One truth: a configuration becomes the same control [`Request`]s rtgtadm sends, run
//! through [`Registry::handle`]; a dump is read back from the registry; `apply` is the
//! difference between the two, as requests.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::ops::Range;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::acl::AddressRule;
use crate::control::{Request, Response};
use crate::error::errno;
use crate::mgmt::parse_bsoflags;
use crate::params::{check_iscsi_param, parse_size};
use crate::Registry;

/// The whole file.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Daemon settings; command-line options take precedence.
    #[serde(default, skip_serializing_if = "DaemonConfig::is_empty")]
    pub daemon: DaemonConfig,
    /// CHAP accounts (`--mode account --op new`).
    #[serde(default, rename = "account", skip_serializing_if = "Vec::is_empty")]
    pub accounts: Vec<AccountConfig>,
    /// Accounts discovery sessions authenticate with (`--op bind --mode account --tid 0`).
    #[serde(default, skip_serializing_if = "AuthConfig::is_empty")]
    pub discovery: AuthConfig,
    #[serde(default, rename = "target", skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<TargetConfig>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    /// Portals as `--iscsi portal=` takes them: `IP:PORT`, `[IPv6]:PORT`, with an
    /// optional `,tpgt=N`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub portals: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<String>,
    /// iSNS server to register with (`--isns ADDR[:PORT]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isns: Option<String>,
    /// Most normal sessions over all targets (`--mode sys --name max_sessions`); 0: no
    /// limit. Applied live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_sessions: Option<u32>,
    /// Failed authentications per address and minute (`--mode sys --name
    /// auth_fail_limit`). Applied live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_fail_limit: Option<u32>,
    /// CHAP algorithms allowed where a target sets none (`--mode sys --name
    /// chap_algorithms`). Applied live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chap_algorithms: Option<String>,
}

impl DaemonConfig {
    fn is_empty(&self) -> bool {
        self.portals.is_empty()
            && self.state_dir.is_none()
            && self.isns.is_none()
            && self.max_sessions.is_none()
            && self.auth_fail_limit.is_none()
            && self.chap_algorithms.is_none()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    pub tid: Spanned<u32>,
    pub name: String,
    /// `ready` (default) or `offline`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// `--op bind -I`: `ALL`, an address or a CIDR.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub initiator_address: Vec<String>,
    /// `--op bind -Q`: initiator names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub initiator_name: Vec<String>,
    /// Accounts initiators may authenticate as (`--op bind --mode account`); any makes
    /// CHAP required.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub incoming_user: Vec<String>,
    /// The account the target answers mutual CHAP with (`--outgoing`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outgoing_user: Option<String>,
    /// Per-target iSCSI keys (`--op update --mode target --name KEY --value V`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, Value>,
    /// Most sessions at once on this target (`--name max_sessions`); 0: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_sessions: Option<u32>,
    /// CHAP algorithms of this target (`--name chap_algorithms`); absent: the system's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chap_algorithms: Option<String>,
    /// Asymmetric access states of this daemon's target port groups by portal group
    /// tag (`--name alua_state.TPGT`, SPC-4 5.16); absent: active/optimized.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub alua_state: BTreeMap<String, String>,
    /// Other gateways' target port groups and their states (`--name alua_peer.TPGT`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub alua_peer: BTreeMap<String, String>,
    /// vhost-user-scsi sockets serving this target (`--lld vhost --op bind --params
    /// socket=PATH`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vhost_socket: Vec<String>,
    #[serde(default, rename = "lun", skip_serializing_if = "Vec::is_empty")]
    pub luns: Vec<LunConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LunConfig {
    pub lun: Spanned<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backing_store: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bstype: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bsoflags: Option<String>,
    /// `--bsopts`: the store's options (rbd: conf, id, cluster, timeout, cache; glfs:
    /// logfile, loglevel, timeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bsopts: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocksize: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_type: Option<String>,
    /// The size of a `null` / `mem` LU; for a file, a size to resize it to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<Value>,
    /// LU parameters (`--params`), tgt's names.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, Value>,
    /// LUN masking: the only initiators that see this LUN (`--op bind --mode
    /// logicalunit -Q NAME`); empty: all the target's initiators.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub initiators: Vec<String>,
    /// A media changer's elements and what they hold, as tgt's `--op update --params`
    /// lines in order (`media_home=DIR`, `element_type=N,start_address=A,quantity=Q`,
    /// `element_type=4,address=A,tid=T,lun=L`, `element_type=2,address=A,barcode=B`;
    /// `source=S` names the slot a moved cartridge came from). A dump writes the
    /// current inventory, so a cartridge in a drive goes back into it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changer: Vec<String>,
}

/// A parameter value: TOML strings, integers and booleans are all accepted.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Value {
    Bool(bool),
    Int(i64),
    Str(String),
}

impl Value {
    /// As the control protocol carries it (booleans as tgt's 1 / 0).
    pub fn text(&self) -> String {
        match self {
            Self::Bool(b) => if *b { "1" } else { "0" }.into(),
            Self::Int(i) => i.to_string(),
            Self::Str(s) => s.clone(),
        }
    }

    /// What a dump writes: numbers as TOML integers.
    fn from_text(s: &str) -> Self {
        match s.parse::<i64>() {
            Ok(i) if i.to_string() == s => Self::Int(i),
            _ => Self::Str(s.to_string()),
        }
    }
}

/// A configuration error with its place in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// 1-based line and column of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, col)
}

/// `FILE:LINE` of a span.
fn at(file: &str, text: &str, span: Range<usize>) -> String {
    format!("{file}:{}", line_col(text, span.start).0)
}

/// Parses a configuration; errors read `FILE:LINE:COL: key `K`: what is wrong`.
pub fn parse(file: &str, text: &str) -> Result<Config, ConfigError> {
    let cfg: Config = toml::from_str(text).map_err(|e| {
        let msg = e.message().trim().to_string();
        match e.span() {
            Some(span) => {
                let (line, col) = line_col(text, span.start);
                // The key on that line, when the error is about a value.
                let src = text.lines().nth(line - 1).unwrap_or("");
                let key = src
                    .split_once('=')
                    .map(|(k, _)| k.trim())
                    .filter(|k| !k.is_empty() && !k.starts_with('['));
                match key {
                    Some(k) if !msg.contains(&format!("`{k}`")) => {
                        ConfigError(format!("{file}:{line}:{col}: key `{k}`: {msg}"))
                    }
                    _ => ConfigError(format!("{file}:{line}:{col}: {msg}")),
                }
            }
            None => ConfigError(format!("{file}: {msg}")),
        }
    })?;
    check_targets(cfg.targets.iter(), file, text)?;
    Ok(cfg)
}

/// What the registry would refuse later, found before anything is changed.
fn check_targets<'a>(
    targets: impl Iterator<Item = &'a TargetConfig>,
    file: &str,
    text: &str,
) -> Result<(), ConfigError> {
    {
        let mut tids = std::collections::HashSet::new();
        let mut names = std::collections::HashSet::new();
        for t in targets {
            // Placed only on error: `at` scans the text from its start.
            let here = || at(file, text, t.tid.span());
            if *t.tid.get_ref() == 0 {
                return Err(ConfigError(format!("{}: key `tid`: must not be 0", here())));
            }
            if !tids.insert(*t.tid.get_ref()) {
                return Err(ConfigError(format!(
                    "{}: key `tid`: tid {} is used by two targets",
                    here(),
                    t.tid.get_ref()
                )));
            }
            if !names.insert(t.name.to_ascii_lowercase()) {
                return Err(ConfigError(format!(
                    "{}: key `name`: target {} appears twice",
                    here(),
                    t.name
                )));
            }
            crate::name::validate_iscsi_name(&t.name)
                .map_err(|e| ConfigError(format!("{}: key `name`: {e}", here())))?;
            let mut luns = std::collections::HashSet::new();
            for l in &t.luns {
                let here = || at(file, text, l.lun.span());
                if *l.lun.get_ref() == 0 {
                    return Err(ConfigError(format!(
                        "{}: key `lun`: LUN 0 is the target's controller: use a LUN from 1",
                        here()
                    )));
                }
                if !luns.insert(*l.lun.get_ref()) {
                    return Err(ConfigError(format!(
                        "{}: key `lun`: LUN {} appears twice in tid {}",
                        here(),
                        l.lun.get_ref(),
                        t.tid.get_ref()
                    )));
                }
            }
        }
        Ok(())
    }
}

impl Config {
    pub fn to_toml(&self) -> String {
        let body = toml::to_string_pretty(self).unwrap_or_default();
        format!(
            "# rtgt configuration, written by `rtgtadm config dump`.\n\
             # Load it with `rtgtd --config FILE`; change a running daemon with\n\
             # `rtgtadm config apply FILE`.\n\n{body}"
        )
    }
}

fn target_request(op: &str, tid: u32) -> Request {
    Request {
        lld: "iscsi".into(),
        mode: "target".into(),
        op: op.into(),
        tid: Some(tid),
        ..Request::default()
    }
}

fn lun_request(op: &str, tid: u32, lun: u64) -> Request {
    Request {
        lld: "iscsi".into(),
        mode: "logicalunit".into(),
        op: op.into(),
        tid: Some(tid),
        lun: Some(lun),
        ..Request::default()
    }
}

fn kv_list(params: &BTreeMap<String, Value>) -> Option<String> {
    (!params.is_empty()).then(|| {
        params
            .iter()
            .map(|(k, v)| format!("{k}={}", v.text()))
            .collect::<Vec<_>>()
            .join(",")
    })
}

fn fileless(bstype: &str) -> bool {
    matches!(bstype, "null" | "mem")
}

/// One change to the running configuration: the request and what it does, in words.
#[derive(Debug, Clone)]
pub struct Step {
    pub what: String,
    pub request: Request,
    /// The tid whose sessions this step disturbs (removing a target or LUN).
    pub disrupts: Option<u32>,
}

fn lun_new_steps(tid: u32, l: &LunConfig) -> Vec<Step> {
    let lun = *l.lun.get_ref();
    let mut r = lun_request("new", tid, lun);
    r.backing_store = l.backing_store.clone();
    r.bstype = l.bstype.clone();
    r.bsoflags = l.bsoflags.clone();
    r.bsopts = l.bsopts.clone();
    r.blocksize = l.blocksize;
    r.device_type = l.device_type.clone();
    let mut params = l.params.clone();
    let bstype = rtgt_backstore::canonical_type(l.bstype.as_deref().unwrap_or("rdwr"));
    let mut steps = Vec::new();
    if let Some(size) = &l.size {
        if bstype.is_some_and(fileless) {
            params.insert("size".into(), size.clone());
        }
    }
    r.params = kv_list(&params);
    steps.push(Step {
        what: format!(
            "add tid {tid} lun {lun} ({})",
            l.backing_store.as_deref().unwrap_or("no backing store")
        ),
        request: r,
        disrupts: None,
    });
    if let Some(size) = &l.size {
        if !bstype.is_some_and(fileless) {
            let mut u = lun_request("update", tid, lun);
            u.params = Some(format!("size={}", size.text()));
            steps.push(Step {
                what: format!("resize tid {tid} lun {lun} to {}", size.text()),
                request: u,
                disrupts: None,
            });
        }
    }
    steps.extend(state::mask_steps(tid, lun, &[], &l.initiators));
    steps.extend(state::changer_steps(tid, l));
    steps
}

fn target_new_steps(t: &TargetConfig) -> Vec<Step> {
    let tid = *t.tid.get_ref();
    let mut steps = Vec::new();
    let mut r = target_request("new", tid);
    r.targetname = Some(t.name.clone());
    steps.push(Step {
        what: format!("add target tid {tid} {}", t.name),
        request: r,
        disrupts: None,
    });
    for (k, v) in &t.params {
        steps.push(param_step(tid, k, &v.text()));
    }
    steps.extend(state::target_steps(tid, None, t));
    if let Some(s) = &t.state {
        steps.push(state_step(tid, s));
    }
    for a in &t.initiator_address {
        steps.push(acl_step("bind", tid, Some(a), None));
    }
    for n in &t.initiator_name {
        steps.push(acl_step("bind", tid, None, Some(n)));
    }
    for p in &t.vhost_socket {
        steps.push(vhost_step("bind", tid, p));
    }
    accounts::binding_steps(
        tid,
        (&[], None),
        (&t.incoming_user, t.outgoing_user.as_deref()),
        &mut steps,
    );
    for l in &t.luns {
        steps.extend(lun_new_steps(tid, l));
    }
    steps
}

fn param_step(tid: u32, k: &str, v: &str) -> Step {
    let mut r = target_request("update", tid);
    r.name = Some(k.into());
    r.value = Some(v.into());
    Step {
        what: format!("set tid {tid} {k}={v}"),
        request: r,
        disrupts: None,
    }
}

fn state_step(tid: u32, s: &str) -> Step {
    let mut r = target_request("update", tid);
    r.name = Some("State".into());
    r.value = Some(s.into());
    Step {
        what: format!("set tid {tid} state {s}"),
        request: r,
        disrupts: None,
    }
}

fn vhost_step(op: &str, tid: u32, path: &str) -> Step {
    let mut r = target_request(op, tid);
    r.lld = "vhost".into();
    r.params = Some(format!("socket={path}"));
    Step {
        what: format!("{op} tid {tid} vhost socket {path}"),
        request: r,
        disrupts: None,
    }
}

fn acl_step(op: &str, tid: u32, addr: Option<&str>, name: Option<&str>) -> Step {
    let mut r = target_request(op, tid);
    r.initiator_address = addr.map(str::to_string);
    r.initiator_name = name.map(str::to_string);
    Step {
        what: format!("{op} tid {tid} {}", addr.or(name).unwrap_or("")),
        request: r,
        disrupts: None,
    }
}

impl Config {
    /// The requests that create this configuration in an empty registry, each with the
    /// `FILE:LINE` of the target or LUN it comes from.
    pub fn requests(&self) -> Vec<(Range<usize>, Step)> {
        let mut v: Vec<(Range<usize>, Step)> =
            state::system_steps(&DaemonConfig::default(), &self.daemon)
                .into_iter()
                .map(|s| (0..0, s))
                .collect();
        v.extend(self.accounts.iter().map(|a| (0..0, accounts::new_step(a))));
        for t in &self.targets {
            let steps = target_new_steps(t);
            // Each LUN's steps point at its own `lun =` line.
            for s in steps {
                let span = match s.request.lun {
                    Some(lun) => t
                        .luns
                        .iter()
                        .find(|l| *l.lun.get_ref() == lun)
                        .map(|l| l.lun.span())
                        .unwrap_or(t.tid.span()),
                    None => t.tid.span(),
                };
                v.push((span, s));
            }
        }
        let mut d = Vec::new();
        let disc = &self.discovery;
        accounts::binding_steps(
            crate::auth::DISCOVERY_TID,
            (&[], None),
            (&disc.incoming_user, disc.outgoing_user.as_deref()),
            &mut d,
        );
        v.extend(d.into_iter().map(|s| (0..0, s)));
        state::changers_last(v, |(_, s)| s)
    }
}

/// Loads a configuration into a registry (rtgtd `--config` at start), stopping at the
/// first request the registry refuses, named by file and line.
pub fn load(reg: &Registry, file: &str, text: &str) -> Result<usize, ConfigError> {
    let mut cache = reg.config_cache.lock();
    cache.forget_in_step();
    let cfg = parse(file, text)?;
    let steps = cfg.requests();
    let n = steps.len();
    for (span, step) in steps {
        let r = reg.handle(step.request);
        if r.code != 0 {
            return Err(ConfigError(format!(
                "{}: {}: {}",
                at(file, text, span),
                step.what,
                r.message
            )));
        }
    }
    sections::remember_load(&mut cache, reg, text, &cfg);
    Ok(n)
}

fn span0<T>(v: T) -> Spanned<T> {
    Spanned::new(0..0, v)
}

/// The running configuration, as a file would state it.
pub fn running(reg: &Registry) -> Config {
    Config {
        daemon: running_daemon(reg),
        accounts: accounts::running_accounts(reg),
        discovery: accounts::running_discovery(reg),
        targets: reg.targets().iter().map(|t| running_target(t)).collect(),
    }
}

/// The running daemon settings.
fn running_daemon(reg: &Registry) -> DaemonConfig {
    let portals = reg
        .portal_groups()
        .into_iter()
        .map(|(a, tpgt)| {
            if tpgt == 1 {
                a.to_string()
            } else {
                format!("{a},tpgt={tpgt}")
            }
        })
        .collect();
    let state_dir = reg
        .state_dir
        .read()
        .as_ref()
        .map(|d| d.display().to_string());
    let mut d = DaemonConfig {
        portals,
        state_dir,
        isns: reg.isns.read().clone(),
        ..DaemonConfig::default()
    };
    state::running_system(reg, &mut d);
    d
}

/// One running target, as a file would state it.
fn running_target(t: &crate::Target) -> TargetConfig {
    {
        let acl = t.acl();
        let luns = t
            .scsi
            .lu_info()
            .into_iter()
            .filter(|l| l.lun != 0)
            .map(|l| {
                let bstype = l.backing_store_type.clone();
                LunConfig {
                    lun: span0(l.lun),
                    // A disc on an open tray is not loaded (MMC-6 6.39): the drive
                    // is kept empty, as initiators see it.
                    backing_store: (l.backing_store_path != "None" && !l.tray_open)
                        .then(|| l.backing_store_path.clone()),
                    bsoflags: (!l.backing_store_flags.is_empty())
                        .then(|| l.backing_store_flags.clone()),
                    bsopts: l.backing_store_opts.clone(),
                    blocksize: Some(l.block_size),
                    device_type: (l.device_type != "disk").then(|| l.device_type.clone()),
                    size: fileless(&bstype).then_some(Value::Int(l.size_bytes as i64)),
                    params: l
                        .params
                        .iter()
                        .map(|(k, v)| (k.clone(), Value::from_text(v)))
                        .collect(),
                    bstype: Some(bstype),
                    initiators: Vec::new(),
                    changer: Vec::new(),
                }
            })
            .collect();
        let mut tc = TargetConfig {
            tid: span0(t.tid),
            name: t.name.clone(),
            state: (t.state() != crate::TargetState::Ready).then(|| t.state().name().into()),
            initiator_address: acl.addresses.iter().map(|a| a.to_string()).collect(),
            initiator_name: acl.names.clone(),
            incoming_user: t.auth().incoming,
            outgoing_user: t.auth().outgoing,
            params: t
                .iscsi_params()
                .into_iter()
                .map(|(k, v)| (k, Value::from_text(&v)))
                .collect(),
            max_sessions: None,
            chap_algorithms: None,
            alua_state: BTreeMap::new(),
            alua_peer: BTreeMap::new(),
            vhost_socket: t.vhost_sockets(),
            luns,
        };
        state::running_target(t, &mut tc);
        tc
    }
}

// ---- apply: the difference as steps ----------------------------------------------------

/// A LUN reduced to what identifies its backing (a change there means a new LU).
fn lun_identity(l: &LunConfig) -> (String, String, String, String) {
    let given = l.bstype.as_deref().unwrap_or("rdwr");
    let mut bstype = rtgt_backstore::canonical_type(given)
        .or(matches!(given, "sg" | "bsg").then_some(given))
        .unwrap_or("?")
        .to_string();
    // io_uring is served by rdwr where the kernel refuses it.
    if bstype == "io_uring" && rtgt_backstore::uring::available().is_err() {
        bstype = "rdwr".into();
    }
    let flags = parse_bsoflags(l.bsoflags.as_deref().unwrap_or(""))
        .map(|f| f.2)
        .unwrap_or_else(|_| l.bsoflags.clone().unwrap_or_default());
    let dt = l.device_type.clone().unwrap_or_else(|| "disk".into());
    // A cd/dvd drive's disc is its medium, not its identity: a different disc (or none)
    // is a medium change (see [`disc_step`]), and the store type follows the disc.
    if dt == "cd" {
        return ("cd".into(), flags, String::new(), dt);
    }
    let path = l.backing_store.clone().unwrap_or_default();
    (bstype, flags, path, dt)
}

/// An rbd, glfs or handler LU's `--bsopts` in a canonical form (sorted `key=value;...`), or None for
/// other stores (a null store's `size=` is its `size`). They say which cluster and user
/// the image is reached with, fixed when the store is opened: a change means the LU is
/// created again, never ignored. Unparsable options stay as written (they differ, and
/// the new LU's creation reports them).
fn canon_bsopts(l: &LunConfig) -> Option<String> {
    let bstype = l.bstype.as_deref().unwrap_or("rdwr");
    if !rtgt_backstore::is_networked(bstype)
        && rtgt_backstore::canonical_type(bstype) != Some("handler")
    {
        return None;
    }
    let raw = l.bsopts.as_deref().unwrap_or("");
    Some(match rtgt_backstore::parse_bsopts(raw) {
        Ok(mut kv) => {
            kv.sort();
            let kv: Vec<String> = kv.iter().map(|(k, v)| format!("{k}={v}")).collect();
            kv.join(";")
        }
        Err(_) => raw.to_string(),
    })
}

fn canon_lu_params(l: &LunConfig) -> Result<Vec<(String, String)>, String> {
    let pairs: Vec<(String, String)> = l
        .params
        .iter()
        .map(|(k, v)| (k.clone(), v.text()))
        .collect();
    // A pass-through LU has parameters of its own (reservations, queue_depth, timeout).
    let canonical = if l.device_type.as_deref() == Some("pt") {
        rtgt_scsi::pt_canonical_params(&pairs)
    } else {
        rtgt_scsi::canonical_lu_params(&pairs)
    };
    canonical.map_err(|e| {
        format!(
            "lun {}: {}",
            l.lun.get_ref(),
            e.to_string().trim_start_matches("bad parameter ")
        )
    })
}

fn canon_iscsi(params: &BTreeMap<String, Value>) -> Result<BTreeMap<String, String>, String> {
    params
        .iter()
        .map(|(k, v)| check_iscsi_param(k, &v.text()))
        .collect()
}

fn canon_addrs(v: &[String]) -> Result<Vec<String>, String> {
    v.iter()
        .map(|a| AddressRule::parse(a).map(|r| r.to_string()))
        .collect()
}

/// Notes on daemon settings that differ: they change only with a restart.
fn daemon_notes(current: &DaemonConfig, desired: &DaemonConfig) -> Vec<String> {
    let mut notes = Vec::new();
    if !desired.portals.is_empty() && desired.portals != current.portals {
        notes.push(format!(
            "portals {:?} differ from the running {:?}: they change on restart",
            desired.portals, current.portals
        ));
    }
    if desired.state_dir.is_some() && desired.state_dir != current.state_dir {
        notes.push("state_dir differs: it changes on restart".into());
    }
    if desired.isns.is_some() && desired.isns != current.isns {
        notes.push("isns differs: it changes on restart".into());
    }
    notes
}

/// Removals of running targets (`tid`, `name`) that `desired` drops or renames; they come
/// first, so a tid or name can move.
fn removal_steps<'a, T: std::borrow::Borrow<TargetConfig>>(
    current: impl Iterator<Item = (u32, &'a str)>,
    desired: &[T],
) -> Vec<Step> {
    let wanted: std::collections::HashMap<u32, &str> = desired
        .iter()
        .map(|d| (*d.borrow().tid.get_ref(), d.borrow().name.as_str()))
        .collect();
    let mut steps = Vec::new();
    for (tid, name) in current {
        let gone = wanted
            .get(&tid)
            .is_none_or(|d| !d.eq_ignore_ascii_case(name));
        if gone {
            let mut r = target_request("delete", tid);
            r.force = true;
            steps.push(Step {
                what: format!("remove target tid {tid} {name}"),
                request: r,
                disrupts: Some(tid),
            });
        }
    }
    steps
}

/// The steps that turn running target `c` into `d` (same tid and name).
fn plan_target(
    c: &TargetConfig,
    d: &TargetConfig,
    steps: &mut Vec<Step>,
    notes: &mut Vec<String>,
) -> Result<(), String> {
    let tid = *d.tid.get_ref();
    accounts::binding_steps(
        tid,
        (&c.incoming_user, c.outgoing_user.as_deref()),
        (&d.incoming_user, d.outgoing_user.as_deref()),
        steps,
    );
    steps.extend(state::target_steps(tid, Some(c), d));
    {
        // iSCSI keys: there is no "unset", so a key that is dropped keeps its value.
        let want = canon_iscsi(&d.params).map_err(|e| format!("tid {tid}: {e}"))?;
        let have = canon_iscsi(&c.params).unwrap_or_default();
        for (k, v) in &want {
            if have.get(k) != Some(v) {
                steps.push(param_step(tid, k, v));
            }
        }
        for k in have.keys().filter(|k| !want.contains_key(*k)) {
            notes.push(format!(
                "tid {tid}: {k} is no longer in the file but keeps its value until restart"
            ));
        }
        let want_state = d.state.clone().unwrap_or_else(|| "ready".into());
        let have_state = c.state.clone().unwrap_or_else(|| "ready".into());
        if !want_state.eq_ignore_ascii_case(&have_state) {
            steps.push(state_step(tid, &want_state));
        }
        let want_a = canon_addrs(&d.initiator_address).map_err(|e| format!("tid {tid}: {e}"))?;
        let have_a = canon_addrs(&c.initiator_address).unwrap_or_default();
        for a in have_a.iter().filter(|a| !want_a.contains(a)) {
            steps.push(acl_step("unbind", tid, Some(a), None));
        }
        for a in want_a.iter().filter(|a| !have_a.contains(a)) {
            steps.push(acl_step("bind", tid, Some(a), None));
        }
        let has = |v: &[String], n: &str| v.iter().any(|x| x.eq_ignore_ascii_case(n));
        for n in c
            .initiator_name
            .iter()
            .filter(|n| !has(&d.initiator_name, n))
        {
            steps.push(acl_step("unbind", tid, None, Some(n)));
        }
        for n in d
            .initiator_name
            .iter()
            .filter(|n| !has(&c.initiator_name, n))
        {
            steps.push(acl_step("bind", tid, None, Some(n)));
        }
        for p in c
            .vhost_socket
            .iter()
            .filter(|p| !d.vhost_socket.contains(p))
        {
            steps.push(vhost_step("unbind", tid, p));
        }
        for p in d
            .vhost_socket
            .iter()
            .filter(|p| !c.vhost_socket.contains(p))
        {
            steps.push(vhost_step("bind", tid, p));
        }
        // LUNs.
        let remove = |lun: u64, why: &str| {
            let r = lun_request("delete", tid, lun);
            Step {
                what: format!("remove tid {tid} lun {lun}{why}"),
                request: r,
                disrupts: Some(tid),
            }
        };
        for cl in &c.luns {
            let lun = *cl.lun.get_ref();
            if !d.luns.iter().any(|l| *l.lun.get_ref() == lun) {
                steps.push(remove(lun, ""));
            }
        }
        for dl in &d.luns {
            let lun = *dl.lun.get_ref();
            let Some(cl) = c.luns.iter().find(|l| *l.lun.get_ref() == lun) else {
                steps.extend(lun_new_steps(tid, dl));
                continue;
            };
            let want_p = canon_lu_params(dl).map_err(|e| format!("tid {tid}: {e}"))?;
            let have_p = canon_lu_params(cl).unwrap_or_default();
            let blocksize_changed = dl.blocksize.is_some_and(|b| Some(b) != cl.blocksize);
            // Parameters that can't change live (readonly=1 opened the store O_RDONLY),
            // or that are dropped (no "unset"): the LU is created again.
            let fixed = ["readonly"];
            let p_fixed = fixed
                .iter()
                .any(|k| want_p.iter().find(|p| p.0 == *k) != have_p.iter().find(|p| p.0 == *k));
            // A key that is dropped goes back to its default; one without a default
            // (a set scsi_id, scsi_sn) means a new LU.
            let mut changed: Vec<(String, String)> = want_p
                .iter()
                .filter(|p| !have_p.contains(p))
                .cloned()
                .collect();
            let mut p_dropped = false;
            for (k, _) in have_p
                .iter()
                .filter(|(k, _)| !want_p.iter().any(|(w, _)| w == k))
            {
                match rtgt_scsi::default_lu_param(k) {
                    Some(v) => changed.push((k.clone(), v)),
                    None => p_dropped = true,
                }
            }
            let (bstype, ..) = lun_identity(dl);
            let ident = lun_identity(dl) != lun_identity(cl);
            let size_of = |l: &LunConfig| l.size.as_ref().and_then(|s| parse_size(&s.text()).ok());
            // mem can't be resized in place; null and files can.
            let mem_resized = bstype == "mem" && size_of(dl) != size_of(cl);
            // A changer's inventory is rebuilt from nothing: the LU is created again.
            let changer_changed = dl.changer != cl.changer;
            if !ident && canon_bsopts(dl) != canon_bsopts(cl) {
                steps.push(remove(lun, " (to create it again with the new bsopts)"));
                steps.extend(lun_new_steps(tid, dl));
                continue;
            }
            if ident || blocksize_changed || p_fixed || p_dropped || mem_resized || changer_changed
            {
                steps.push(remove(lun, " (to create it again with the new settings)"));
                steps.extend(lun_new_steps(tid, dl));
                continue;
            }
            steps.extend(state::mask_steps(tid, lun, &cl.initiators, &dl.initiators));
            if let Some(s) = disc_step(tid, cl, dl) {
                steps.push(s);
            }
            if !changed.is_empty() {
                let kv: Vec<String> = changed.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let mut r = lun_request("update", tid, lun);
                r.params = Some(kv.join(","));
                steps.push(Step {
                    what: format!("update tid {tid} lun {lun} {}", kv.join(",")),
                    request: r,
                    disrupts: None,
                });
            }
            // A size in the file that differs from the LU's: an online resize.
            if let Some(want) = size_of(dl) {
                if Some(want) != cl.size.as_ref().and_then(|s| parse_size(&s.text()).ok()) {
                    let mut r = lun_request("update", tid, lun);
                    r.params = Some(format!("size={want}"));
                    steps.push(Step {
                        what: format!("resize tid {tid} lun {lun} to {want} bytes"),
                        request: r,
                        disrupts: None,
                    });
                }
            }
        }
    }
    Ok(())
}

/// A cd/dvd LU whose disc differs: load the file's disc, or eject (MMC-6 4.3: a drive
/// is the same drive with another medium or none). Forced, as a restart would be.
fn disc_step(tid: u32, c: &LunConfig, d: &LunConfig) -> Option<Step> {
    let lun = *d.lun.get_ref();
    if d.device_type.as_deref() != Some("cd") || c.backing_store == d.backing_store {
        return None;
    }
    let mut r = lun_request("update", tid, lun);
    let p = match &d.backing_store {
        Some(p) => format!("media={p}"),
        None => "eject=1".into(),
    };
    r.params = Some(format!("{p},force=1"));
    Some(Step {
        what: format!("tid {tid} lun {lun}: {p}"),
        request: r,
        disrupts: None,
    })
}

/// `t` with each file-backed LUN's size filled in, so a `size` in the file can be
/// compared with what runs.
fn with_file_sizes(rt: &crate::Target, mut t: TargetConfig) -> TargetConfig {
    let info = rt.scsi.lu_info();
    for l in &mut t.luns {
        if l.size.is_none() {
            if let Some(i) = info.iter().find(|i| i.lun == *l.lun.get_ref()) {
                l.size = Some(Value::Int(i.size_bytes as i64));
            }
        }
    }
    t
}

/// Plans and (unless `dry_run`) applies `text` to the running configuration. Returns
/// the plan as text, or an error naming the first refused step. Applies run one at a
/// time (they hold the registry's config cache).
///
/// Only what differs costs: sections of the file unchanged since the last run are not
/// parsed again, and targets no request has changed since they were last put in step
/// with an unchanged section are not read back (see [`sections`]).
pub fn apply(
    reg: &Registry,
    file: &str,
    text: &str,
    dry_run: bool,
    force: bool,
) -> Result<String, (i32, String)> {
    let mut cache = reg.config_cache.lock();
    let t0 = std::time::Instant::now();
    let desired =
        sections::parse_cached(&mut cache, file, text).map_err(|e| (errno::EINVAL, e.0))?;
    let t1 = std::time::Instant::now();
    let running_targets = reg.targets();
    let mut notes = daemon_notes(&running_daemon(reg), &desired.daemon);
    let (mut steps, after) =
        accounts::plan(reg, &desired.accounts, &desired.discovery, &desired.targets);
    steps.extend(removal_steps(
        running_targets.iter().map(|t| (t.tid, t.name.as_str())),
        &desired.targets,
    ));
    let by_tid: std::collections::HashMap<u32, &Arc<crate::Target>> =
        running_targets.iter().map(|t| (t.tid, t)).collect();
    let mut compared = 0;
    for d in &desired.targets {
        let tid = *d.tid.get_ref();
        match by_tid
            .get(&tid)
            .filter(|t| t.name.eq_ignore_ascii_case(&d.name))
        {
            None => steps.extend(target_new_steps(d)),
            Some(rt) if cache.in_step(reg, rt, d) => {}
            Some(rt) => {
                compared += 1;
                let c = with_file_sizes(rt, running_target(rt));
                plan_target(&c, d, &mut steps, &mut notes)
                    .map_err(|e| (errno::EINVAL, format!("{file}: {e}")))?;
            }
        }
    }
    steps.extend(after);
    steps.extend(state::system_steps(&running_daemon(reg), &desired.daemon));
    let steps = state::changers_last(steps, |s| s);
    tracing::info!(
        "config {file}: parsed in {:?}, planned in {:?} ({compared} of {} targets read back): {} changes",
        t1 - t0,
        t1.elapsed(),
        desired.targets.len(),
        steps.len()
    );
    let mut out = String::new();
    if steps.is_empty() {
        out.push_str("no changes\n");
    }
    for s in &steps {
        let _ = writeln!(out, "{}{}", if dry_run { "would " } else { "" }, s.what);
    }
    for n in &notes {
        let _ = writeln!(out, "note: {n}");
    }
    if dry_run {
        return Ok(out);
    }
    // Refuse the whole plan before changing anything when it would cut sessions off.
    if !force {
        for s in &steps {
            if let Some(tid) = s.disrupts {
                let n = reg.target_by_tid(tid).map_or(0, |t| t.session_count());
                if n > 0 {
                    return Err((
                        errno::EBUSY,
                        format!(
                            "refusing to {}: {n} session(s) logged in to tid {tid}; \
                             nothing was changed (add --force to apply anyway)",
                            s.what
                        ),
                    ));
                }
            }
        }
    }
    for (i, s) in steps.iter().enumerate() {
        let r = reg.handle(s.request.clone());
        if r.code != 0 {
            cache.forget_in_step();
            return Err((
                r.code,
                format!(
                    "{file}: {}: {} ({i} of {} changes applied before it)",
                    s.what,
                    r.message,
                    steps.len()
                ),
            ));
        }
    }
    sections::note_in_step(&mut cache, reg, &desired.targets);
    Ok(out)
}

/// The control requests of `--mode config`: `--op show` (dump), `--op update` (apply),
/// with `name` the file name for messages and `value` the file's text; `--op stat`
/// is the dry run.
pub fn handle(reg: &Registry, req: &Request) -> Response {
    let file = req.name.as_deref().unwrap_or("config");
    match req.op.as_str() {
        "show" => Response::ok(running(reg).to_toml()),
        "update" | "stat" => {
            let text = req.value.as_deref().unwrap_or("");
            match apply(reg, file, text, req.op == "stat", req.force) {
                Ok(out) => Response::ok(out),
                Err((code, msg)) => Response::error(code, msg),
            }
        }
        op => Response::error(
            errno::EINVAL,
            format!("unknown config operation '{op}' (use dump or apply)"),
        ),
    }
}

mod accounts;
mod reference;
mod sections;
mod state;
pub use accounts::{AccountConfig, AuthConfig};
pub use reference::REFERENCE;
pub use sections::ApplyCache;

#[cfg(test)]
mod tests;
