//! tgtadm's modes and operations, executed against the registry.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use rtgt_backstore::{OpenError, OpenOptions};
use rtgt_scsi::{AluaState, DeviceType, LuConfig, ScsiError};

use crate::acl::AddressRule;
use crate::control::{self, Request};
use crate::error::AdmError;
use crate::params::{check_iscsi_param, parse_kv_list, parse_size, truthy};
use crate::{show, Registry, SessionInfo, Target};

type Result<T> = std::result::Result<T, AdmError>;

/// Transports rtgt knows by name (tgt's LLDs, and vhost-user-scsi), whether or not
/// they are built into this rtgtd: naming one that is not gets a message saying so.
const KNOWN_LLDS: &[&str] = &["iscsi", "iser", "vhost"];

/// Checks `--lld NAME` against the transports built into the daemon (an empty name
/// means any, as with tgtadm).
fn check_lld(reg: &Registry, name: &str) -> Result<()> {
    let llds = reg.llds();
    if name.is_empty() || llds.iter().any(|l| l.name.eq_ignore_ascii_case(name)) {
        return Ok(());
    }
    let built: Vec<&str> = llds.iter().map(|l| l.name.as_str()).collect();
    let built = built.join(", ");
    if KNOWN_LLDS.iter().any(|k| k.eq_ignore_ascii_case(name)) {
        return Err(AdmError::NotFound(format!(
            "lld {}: not built into this rtgtd (built in: {built})",
            name.to_ascii_lowercase()
        )));
    }
    Err(AdmError::NotFound(format!(
        "can't find the driver '{name}' (built into this rtgtd: {built})"
    )))
}

pub fn dispatch(reg: &Registry, req: &Request) -> Result<String> {
    if req.mode.is_empty() {
        return Err(AdmError::invalid(
            "specify the mode (--mode target, logicalunit, lld or system)",
        ));
    }
    if req.op.is_empty() {
        return Err(AdmError::invalid(
            "specify the operation type (--op new, delete, show, bind, unbind or update)",
        ));
    }
    let mode = control::canonical_mode(&req.mode).ok_or_else(|| {
        AdmError::invalid(format!(
            "unknown mode '{}' (use target, logicalunit, lld, system, account or conn)",
            req.mode
        ))
    })?;
    let op = control::canonical_op(&req.op).ok_or_else(|| {
        AdmError::invalid(format!(
            "unknown operation '{}' (use new, delete, show, bind, unbind, update, start or stop)",
            req.op
        ))
    })?;
    if mode != "system" {
        check_lld(reg, &req.lld)?;
    }
    match mode {
        "target" => target(reg, op, req),
        "logicalunit" => logicalunit(reg, op, req),
        "lld" => lld(reg, op, req),
        "system" => system(reg, op, req),
        "connection" => connection(reg, op, req),
        "portal" => portal(reg, op),
        "account" => account(reg, op, req),
        "session" => Err(AdmError::Unsupported(
            "session mode is not supported; use --mode conn --op show --tid N".into(),
        )),
        _ => Err(AdmError::invalid(format!("unknown mode '{}'", req.mode))),
    }
}

fn unsupported(op: &str, mode: &str) -> AdmError {
    AdmError::Unsupported(format!("operation {op} is not supported in {mode} mode"))
}

fn need_tid(req: &Request, what: &str) -> Result<u32> {
    match req.tid {
        None => Err(AdmError::invalid(format!("--tid is required for {what}"))),
        Some(0) => Err(AdmError::invalid("--tid must not be 0")),
        Some(t) => Ok(t),
    }
}

fn find_target(reg: &Registry, tid: u32) -> Result<Arc<Target>> {
    reg.target_by_tid(tid)
        .ok_or_else(|| AdmError::NotFound(format!("can't find the target (tid {tid})")))
}

fn close_all(sessions: Vec<SessionInfo>) {
    for s in sessions {
        tracing::info!(sid = s.sid, initiator = %s.initiator_name, "closing session by admin request");
        (s.close)();
    }
}

// ---- target ---------------------------------------------------------------------------

fn target(reg: &Registry, op: &str, req: &Request) -> Result<String> {
    match op {
        "new" => {
            let tid = need_tid(req, "--op new --mode target")?;
            let name = req.targetname.as_deref().unwrap_or("");
            if name.is_empty() {
                return Err(AdmError::invalid(
                    "creating a new target requires a name: use --targetname (-T)",
                ));
            }
            crate::name::validate_iscsi_name(name).map_err(AdmError::Invalid)?;
            let mut targets = reg.targets.write();
            if let Some(t) = targets.iter().find(|t| t.tid == tid) {
                return Err(AdmError::Exists(format!(
                    "this target already exists: tid {tid} is {}",
                    t.name
                )));
            }
            if let Some(t) = targets.iter().find(|t| t.name.eq_ignore_ascii_case(name)) {
                return Err(AdmError::Exists(format!(
                    "this target already exists: {name} is tid {}",
                    t.tid
                )));
            }
            let t = Arc::new(Target::in_registry(
                tid,
                name,
                reg.system_ready.clone(),
                reg.lu_directory.clone(),
                reg.state_dir.read().clone(),
                &reg.tpgts(),
            ));
            let pos = targets.partition_point(|t| t.tid < tid);
            targets.insert(pos, t);
            tracing::info!(tid, name, "target created");
            Ok(String::new())
        }
        "delete" => {
            let tid = need_tid(req, "--op delete --mode target")?;
            let sessions = {
                let mut targets = reg.targets.write();
                let idx = targets.iter().position(|t| t.tid == tid).ok_or_else(|| {
                    AdmError::NotFound(format!("can't find the target (tid {tid})"))
                })?;
                let sessions = targets[idx].retire(req.force).map_err(|n| {
                    AdmError::Busy(format!(
                        "this target is still active: {n} session(s) logged in to tid {tid}; \
                         log them out first or add --force to close them"
                    ))
                })?;
                targets[idx].scsi.forget_masks();
                targets.remove(idx);
                sessions
            };
            close_all(sessions);
            tracing::info!(tid, "target deleted");
            Ok(String::new())
        }
        "show" => {
            let mut out = String::new();
            match req.tid {
                Some(tid) => show::target(&*find_target(reg, tid)?, &mut out),
                None => {
                    for t in reg.targets() {
                        show::target(&t, &mut out);
                    }
                }
            }
            Ok(out)
        }
        "bind" | "unbind" if req.lld.eq_ignore_ascii_case("vhost") => {
            let tid = need_tid(req, &format!("--op {op} --mode target"))?;
            let t = find_target(reg, tid)?;
            vhost_bind(reg, &t, op, req)
        }
        "bind" | "unbind" => {
            let tid = need_tid(req, &format!("--op {op} --mode target"))?;
            let t = find_target(reg, tid)?;
            let addr = req.initiator_address.as_deref().filter(|s| !s.is_empty());
            let iname = req.initiator_name.as_deref().filter(|s| !s.is_empty());
            if addr.is_none() && iname.is_none() {
                return Err(AdmError::invalid(format!(
                    "--op {op} requires --initiator-address (-I) or --initiator-name (-Q)"
                )));
            }
            let rule = addr
                .map(AddressRule::parse)
                .transpose()
                .map_err(AdmError::Invalid)?;
            if let Some(n) = iname {
                if n.chars().any(|c| c.is_whitespace() || c == ',') {
                    return Err(AdmError::invalid(format!(
                        "invalid initiator name '{n}': it must not contain spaces or commas"
                    )));
                }
            }
            let mut acl = t.acl.write();
            if op == "bind" {
                // Check both before changing either, so a failed request changes nothing.
                if let Some(r) = &rule {
                    if acl.addresses.contains(r) {
                        return Err(AdmError::Exists(format!(
                            "this access control rule already exists: {r}"
                        )));
                    }
                }
                if let Some(n) = iname {
                    if acl.names.iter().any(|x| x.eq_ignore_ascii_case(n)) {
                        return Err(AdmError::Exists(format!(
                            "this access control rule already exists: {n}"
                        )));
                    }
                }
                acl.addresses.extend(rule);
                acl.names.extend(iname.map(str::to_string));
            } else {
                let ai = match &rule {
                    Some(r) => {
                        Some(acl.addresses.iter().position(|x| x == r).ok_or_else(|| {
                            AdmError::NotFound(format!(
                                "this access control rule does not exist: {r}"
                            ))
                        })?)
                    }
                    None => None,
                };
                let ni = match iname {
                    Some(n) => Some(
                        acl.names
                            .iter()
                            .position(|x| x.eq_ignore_ascii_case(n))
                            .ok_or_else(|| {
                                AdmError::NotFound(format!(
                                    "this access control rule does not exist: {n}"
                                ))
                            })?,
                    ),
                    None => None,
                };
                if let Some(i) = ai {
                    acl.addresses.remove(i);
                }
                if let Some(i) = ni {
                    acl.names.remove(i);
                }
            }
            Ok(String::new())
        }
        "update" => {
            let tid = need_tid(req, "--op update --mode target")?;
            let t = find_target(reg, tid)?;
            let (name, value) = need_name_value(req, "--op update --mode target")?;
            if name.eq_ignore_ascii_case("state") {
                let ready = match value.to_ascii_lowercase().as_str() {
                    "ready" => true,
                    "offline" => false,
                    _ => {
                        return Err(AdmError::invalid(format!(
                            "invalid target state '{value}': use ready or offline"
                        )))
                    }
                };
                t.ready.store(ready, Ordering::Release);
                return Ok(String::new());
            }
            // `--name alua_state.<TPGT> --value standby`: the asymmetric access state of
            // the target port group of portal group TPGT (SPC-4 5.16).
            if let Some(tpgt) = name
                .strip_prefix("alua_state.")
                .or_else(|| name.strip_prefix("ALUA_state."))
            {
                let tpg: u16 = tpgt.parse().map_err(|_| {
                    AdmError::invalid(format!(
                        "bad portal group tag '{tpgt}' in {name}: use alua_state.<tpgt>"
                    ))
                })?;
                let state = AluaState::parse(value).ok_or_else(|| {
                    AdmError::invalid(format!(
                        "invalid ALUA state '{value}': use active (active/optimized), \
                         nonoptimized, standby or unavailable"
                    ))
                })?;
                return t
                    .scsi
                    .set_alua_state(tpg, state)
                    .map_err(|e| {
                        AdmError::NotFound(format!("{e} (tid {tid} has groups {:?})", reg.tpgts()))
                    })
                    .map(|()| String::new());
            }
            // `--name alua_peer.<TPGT> --value nonoptimized`: another daemon (a gateway of
            // the same RBD image) serves these LUs through portal group TPGT in that
            // state; REPORT TARGET PORT GROUPS lists it. `--value none` forgets it.
            if let Some(tpgt) = name.strip_prefix("alua_peer.") {
                let tpg: u16 = tpgt.parse().map_err(|_| {
                    AdmError::invalid(format!(
                        "bad portal group tag '{tpgt}' in {name}: use alua_peer.<tpgt>"
                    ))
                })?;
                let state = match value {
                    "none" => None,
                    v => Some(AluaState::parse(v).ok_or_else(|| {
                        AdmError::invalid(format!(
                            "invalid ALUA state '{v}': use active (active/optimized), \
                             nonoptimized, standby, unavailable or none"
                        ))
                    })?),
                };
                return t
                    .scsi
                    .set_alua_peer(tpg, state)
                    .map_err(|e| scsi_err(tid, e))
                    .map(|()| String::new());
            }
            if name.eq_ignore_ascii_case("chap_algorithms") {
                // `default` follows the system setting again.
                let algs = if value.eq_ignore_ascii_case("default") {
                    None
                } else {
                    Some(crate::auth::parse_algorithms(value)?)
                };
                *t.chap_algorithms.write() = algs;
                return Ok(String::new());
            }
            if name.eq_ignore_ascii_case("max_sessions") {
                t.max_sessions
                    .store(parse_limit(name, value)?, Ordering::Release);
                return Ok(String::new());
            }
            let (key, value) = check_iscsi_param(name, value).map_err(AdmError::Invalid)?;
            let mut params = t.params.write();
            match params.iter_mut().find(|(k, _)| *k == key) {
                Some(slot) => slot.1 = value,
                None => params.push((key, value)),
            }
            Ok(String::new())
        }
        _ => Err(unsupported(op, "target")),
    }
}

/// A count limit: a number, 0 (or `unlimited`) for none.
fn parse_limit(name: &str, value: &str) -> Result<u32> {
    if value.eq_ignore_ascii_case("unlimited") {
        return Ok(0);
    }
    value.trim().parse::<u32>().map_err(|_| {
        AdmError::invalid(format!(
            "invalid value '{value}' for {name}: use a number (0 or unlimited for no limit)"
        ))
    })
}

// ---- account ---------------------------------------------------------------------------

fn need_user<'a>(req: &'a Request, what: &str) -> Result<&'a str> {
    req.user
        .as_deref()
        .filter(|u| !u.is_empty())
        .ok_or_else(|| AdmError::invalid(format!("--user (-u) is required for {what}")))
}

fn account(reg: &Registry, op: &str, req: &Request) -> Result<String> {
    match op {
        "new" => {
            let user = need_user(req, "--op new --mode account")?;
            let password = req.password.as_deref().unwrap_or("");
            if password.is_empty() {
                return Err(AdmError::invalid(
                    "--password (-p) is required for --op new --mode account",
                ));
            }
            let warning = reg.accounts.write().add(user, password)?;
            tracing::info!(user, "account created");
            Ok(match warning {
                Some(w) => {
                    tracing::warn!("{w}");
                    format!("{w}\n")
                }
                None => String::new(),
            })
        }
        "delete" => {
            let user = need_user(req, "--op delete --mode account")?;
            let mut accounts = reg.accounts.write();
            accounts.remove(user)?;
            // Its bindings go with it.
            reg.discovery_auth.write().forget(user);
            for t in reg.targets() {
                t.auth.write().forget(user);
            }
            tracing::info!(user, "account deleted");
            Ok(String::new())
        }
        "show" => {
            let mut out = String::from("Account list:\n");
            for u in reg.accounts.read().names() {
                out.push_str(&format!("    {u}\n"));
            }
            let d = reg.discovery_auth.read();
            if !d.is_empty() {
                out.push_str("Discovery (tid 0):\n");
                d.show(&mut out);
            }
            Ok(out)
        }
        "bind" | "unbind" => {
            let what = format!("--op {op} --mode account");
            let user = need_user(req, &what)?;
            let tid = req.tid.ok_or_else(|| {
                AdmError::invalid(format!(
                    "--tid is required for {what} (0: discovery sessions)"
                ))
            })?;
            let accounts = reg.accounts.read();
            if op == "bind" && !accounts.exists(user) {
                return Err(AdmError::NotFound(format!(
                    "can't find the account {user}: create it with --op new --mode account"
                )));
            }
            let target = if tid == crate::auth::DISCOVERY_TID {
                None
            } else {
                Some(find_target(reg, tid)?)
            };
            let mut binding = match &target {
                None => reg.discovery_auth.write(),
                Some(t) => t.auth.write(),
            };
            if op == "unbind" {
                binding.unbind(user, req.outgoing)?;
                return Ok(String::new());
            }
            binding.bind(user, req.outgoing)?;
            let secret = accounts.secret(user).unwrap_or_default();
            // RFC 7143 §12.1.3 / §9.2.1: one secret per direction.
            let clash = if req.outgoing {
                binding
                    .incoming
                    .iter()
                    .any(|u| accounts.secret(u) == Some(secret))
            } else {
                binding
                    .outgoing
                    .as_deref()
                    .is_some_and(|o| accounts.secret(o) == Some(secret))
            };
            let where_ = if tid == 0 {
                "discovery".to_string()
            } else {
                format!("tid {tid}")
            };
            tracing::info!(user, outgoing = req.outgoing, "account bound to {where_}");
            Ok(if clash {
                let w = format!(
                    "warning: {user} has the same secret as an account bound the other way on \
                     {where_}; mutual CHAP will be refused until the secrets differ\n"
                );
                tracing::warn!("{}", w.trim_end());
                w
            } else {
                String::new()
            })
        }
        _ => Err(unsupported(op, "account")),
    }
}

fn need_name_value<'a>(req: &'a Request, what: &str) -> Result<(&'a str, &'a str)> {
    match (req.name.as_deref(), req.value.as_deref()) {
        (Some(n), Some(v)) if !n.is_empty() => Ok((n, v)),
        _ => Err(AdmError::invalid(format!(
            "{what} requires --name and --value"
        ))),
    }
}

// ---- logicalunit ----------------------------------------------------------------------

pub(crate) fn scsi_err(tid: u32, e: ScsiError) -> AdmError {
    match e {
        ScsiError::LunExists(lun) => AdmError::Exists(format!(
            "this logical unit number already exists (tid {tid}, lun {lun})"
        )),
        ScsiError::NoSuchLun(lun) => AdmError::NotFound(format!(
            "can't find the logical unit (tid {tid}, lun {lun})"
        )),
        ScsiError::BadBlockSize(bs) => {
            AdmError::invalid(format!("invalid block size {bs}: use 512 or 4096"))
        }
        other => AdmError::Invalid(other.to_string()),
    }
}

/// `--bsoflags`: `sync`, `direct`, or both, separated by `,` or `:` (tgt's spelling).
/// Returns (sync, direct) and the canonical form `show` prints.
pub fn parse_bsoflags(s: &str) -> Result<(bool, bool, String)> {
    let (mut sync, mut direct) = (false, false);
    for f in s.split([',', ':']).map(str::trim).filter(|f| !f.is_empty()) {
        match f.to_ascii_lowercase().as_str() {
            "sync" => sync = true,
            "direct" => direct = true,
            _ => {
                return Err(AdmError::invalid(format!(
                    "unknown bsoflags '{f}': use sync, direct or sync,direct"
                )))
            }
        }
    }
    let canon = match (sync, direct) {
        (true, true) => "sync:direct",
        (true, false) => "sync",
        (false, true) => "direct",
        (false, false) => "",
    };
    Ok((sync, direct, canon.to_string()))
}

/// An io::Error's text without Rust's " (os error N)" suffix: `No such file or directory`.
fn io_text(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

fn open_err(e: OpenError, direct: bool) -> AdmError {
    match e {
        OpenError::UnknownType(t) => AdmError::invalid(format!(
            "unknown backing store type '{t}' (use {})",
            rtgt_backstore::KNOWN_TYPES
        )),
        OpenError::Io { path, source } => {
            let hint = if direct && source.raw_os_error() == Some(22) {
                " (the file system may not support --bsoflags direct)"
            } else {
                ""
            };
            let msg = format!(
                "backing file {}: {}{hint}",
                path.display(),
                io_text(&source)
            );
            if source.kind() == std::io::ErrorKind::NotFound {
                AdmError::NotFound(msg)
            } else {
                AdmError::Invalid(msg)
            }
        }
        other => AdmError::Invalid(other.to_string()),
    }
}

fn logicalunit(reg: &Registry, op: &str, req: &Request) -> Result<String> {
    let what = format!("--op {op} --mode logicalunit");
    let tid = need_tid(req, &what)?;
    let lun = req
        .lun
        .ok_or_else(|| AdmError::invalid(format!("--lun is required for {what}")))?;
    let t = find_target(reg, tid)?;
    match op {
        // LUN masking (rtgt's addition): `--op bind --mode logicalunit --tid N --lun L -Q
        // NAME` makes LUN L visible only to the initiators bound to it.
        "bind" | "unbind" => {
            let Some(name) = req.initiator_name.as_deref().filter(|n| !n.is_empty()) else {
                return Err(AdmError::invalid(format!(
                    "--initiator-name (-Q) is required for {what} (LUN masking is by initiator name)"
                )));
            };
            if req
                .initiator_address
                .as_deref()
                .is_some_and(|a| !a.is_empty())
            {
                return Err(AdmError::invalid(
                    "LUN masking is by initiator name (-Q) only; addresses belong on the target ACL",
                ));
            }
            if name.chars().any(|c| c.is_whitespace() || c == ',') {
                return Err(AdmError::invalid(format!(
                    "invalid initiator name '{name}': it must not contain spaces or commas"
                )));
            }
            let mut names = t.scsi.lun_initiators(lun);
            let pos = names.iter().position(|n| n.eq_ignore_ascii_case(name));
            match (op, pos) {
                ("bind", Some(_)) => {
                    return Err(AdmError::Exists(format!(
                        "{name} is already bound to LUN {lun}"
                    )))
                }
                ("bind", None) => names.push(name.to_string()),
                (_, Some(i)) => {
                    names.remove(i);
                }
                (_, None) => {
                    return Err(AdmError::NotFound(format!(
                        "{name} is not bound to LUN {lun}"
                    )))
                }
            }
            t.scsi
                .set_lun_initiators(lun, names)
                .map_err(|e| scsi_err(tid, e))?;
            Ok(String::new())
        }
        "new" => {
            if lun == 0 {
                return Err(AdmError::invalid(
                    "LUN 0 is the target's controller: use a LUN from 1",
                ));
            }
            if t.scsi.lu_info().iter().any(|l| l.lun == lun) {
                return Err(scsi_err(tid, ScsiError::LunExists(lun)));
            }
            let dt_name = req.device_type.as_deref().unwrap_or("disk");
            let device_type = match DeviceType::parse(dt_name) {
                Some(DeviceType::Controller) | None => {
                    let known: Vec<&str> = DeviceType::ALL
                        .iter()
                        .filter(|d| **d != DeviceType::Controller)
                        .map(|d| d.name())
                        .collect();
                    return Err(AdmError::Unsupported(format!(
                        "device type '{dt_name}' is not supported (supported: {})",
                        known.join(", ")
                    )));
                }
                Some(d) => d,
            };
            // tgt checks both ways: pt takes sg / bsg and sg / bsg back only pt.
            let pt_store = req
                .bstype
                .as_deref()
                .is_some_and(crate::passthrough::is_pt_bstype);
            if device_type == DeviceType::PassThrough {
                return crate::passthrough::new_lu(&t, tid, lun, req);
            } else if pt_store {
                return Err(AdmError::invalid(format!(
                    "bstype {} passes a SCSI device through: use it with --device-type pt",
                    req.bstype.as_deref().unwrap_or("")
                )));
            }
            let scsi_handler = device_type == DeviceType::Handler;
            if scsi_handler && req.bstype.as_deref() != Some("handler") {
                return Err(AdmError::invalid(
                    "device type handler is served by a SCSI-kind device handler: add --bstype handler -b NAME",
                ));
            }
            if !matches!(
                device_type,
                DeviceType::Disk | DeviceType::Cd | DeviceType::Handler
            ) {
                return crate::media::new_lu(&t, tid, lun, device_type, req);
            }
            let cd = device_type == DeviceType::Cd;
            // A CD/DVD drive's blocks are 2048 bytes (MMC-6 4.2.2), whatever -y says.
            let block_size = req.blocksize.unwrap_or(if cd { 2048 } else { 512 });
            if cd && block_size != 2048 {
                return Err(AdmError::invalid(format!(
                    "invalid block size {block_size}: a cd/dvd drive has 2048-byte blocks"
                )));
            }
            if !cd && block_size != 512 && block_size != 4096 {
                return Err(scsi_err(tid, ScsiError::BadBlockSize(block_size)));
            }
            let bstype_given = req.bstype.as_deref().unwrap_or("rdwr");
            let bstype = rtgt_backstore::canonical_type(bstype_given)
                .ok_or_else(|| open_err(OpenError::UnknownType(bstype_given.into()), false))?;
            let (sync, direct, flags) = parse_bsoflags(req.bsoflags.as_deref().unwrap_or(""))?;
            let fileless = matches!(bstype, "null" | "mem");
            if fileless && (sync || direct) {
                return Err(AdmError::invalid(format!(
                    "--bsoflags {flags} needs a file or block device; bstype {bstype} has none"
                )));
            }
            if bstype == "handler" && direct {
                return Err(AdmError::invalid(
                    "--bsoflags direct: a handler opens its own files (rtgt-fileio -o); only sync applies to bstype handler",
                ));
            }
            let mut params = match req.params.as_deref() {
                Some(p) => parse_kv_list(p).map_err(AdmError::Invalid)?,
                None => Vec::new(),
            };
            // `size=` sizes the stores that have no file, from --bsopts (tgt's place for
            // store options) or --params; it is not a SCSI parameter, so it goes no further.
            let mut size = None;
            let mut sizes: Vec<String> = params
                .iter()
                .filter(|(k, _)| k == "size")
                .map(|(_, v)| v.clone())
                .collect();
            params.retain(|(k, _)| k != "size");
            // bstypes rbd and glfs take tgt bs_rbd's and bs_glfs's options (conf=, id=,
            // cluster=; logfile=, loglevel=; `;`-separated) and check them themselves; so
            // does bstype handler (hold=, depth=, queues=, uid=).
            let mut store_opts = Vec::new();
            if let (Some(opts), true) = (
                req.bsopts.as_deref(),
                rtgt_backstore::is_networked(bstype) || bstype == "handler",
            ) {
                store_opts = rtgt_backstore::parse_bsopts(opts).map_err(AdmError::Invalid)?;
                if store_opts.iter().any(|(k, _)| k == "kind") {
                    return Err(AdmError::invalid(
                        "--bsopts kind: the device type says it (disk: block, handler: scsi)",
                    ));
                }
            } else if let Some(opts) = req.bsopts.as_deref() {
                for (k, v) in parse_kv_list(opts).map_err(AdmError::Invalid)? {
                    if k == "size" && fileless {
                        sizes.push(v);
                    } else {
                        return Err(AdmError::invalid(format!(
                            "unknown --bsopts '{k}' for bstype {bstype}{}",
                            if fileless {
                                " (known: size)"
                            } else {
                                " (it takes none)"
                            }
                        )));
                    }
                }
            }
            if scsi_handler {
                store_opts.push(("kind".into(), "scsi".into()));
            }
            for v in sizes {
                if !fileless {
                    return Err(AdmError::invalid(format!(
                        "size={v}: bstype {bstype} takes its size from the backing file or device"
                    )));
                }
                let n = parse_size(&v).map_err(AdmError::Invalid)?;
                if n == 0 {
                    return Err(AdmError::invalid(
                        "size=0: a logical unit needs at least one block",
                    ));
                }
                size = Some(n);
            }
            if bstype == "mem" && size.is_none() {
                return Err(AdmError::invalid(
                    "bstype mem needs a size: add --bsopts size=N or --params size=N (K, M, G, T suffixes)",
                ));
            }
            let path = req.backing_store.clone().unwrap_or_default();
            if cd {
                // A drive without -b starts with no disc (tgt's jukebox drives do).
                let store = if path.is_empty() {
                    None
                } else {
                    Some(
                        rtgt_scsi::open_disc_image(bstype, &path, sync, direct)
                            .map_err(|e| open_err(e, direct))?,
                    )
                };
                let cfg = LuConfig {
                    device_type,
                    store,
                    block_size,
                    path: if path.is_empty() {
                        "None".into()
                    } else {
                        path.clone()
                    },
                    bsoflags: flags,
                    params,
                };
                t.scsi.add_lu(lun, cfg).map_err(|e| scsi_err(tid, e))?;
                tracing::info!(tid, lun, path, "cd/dvd drive created");
                return Ok(String::new());
            }
            if path.is_empty() && !fileless {
                return Err(AdmError::invalid(format!(
                    "--backing-store (-b) is required for {what} with bstype {bstype}"
                )));
            }
            let readonly = params
                .iter()
                .any(|(k, v)| k.eq_ignore_ascii_case("readonly") && truthy(v));
            // readonly=1 opens the file O_RDONLY, so nothing in this process can write it;
            // lifting it later means re-creating the LU.
            let mut opts = OpenOptions {
                path: PathBuf::from(&path),
                direct,
                sync,
                read_only: readonly,
                size,
                bsopts: store_opts,
                block_size,
            };
            let store = match rtgt_backstore::open(bstype, &opts) {
                Ok(s) => s,
                // A file we may only read (EACCES, EROFS) is exported read-only, as tgt does.
                Err(OpenError::Io { source, .. })
                    if !readonly
                        && (source.kind() == std::io::ErrorKind::PermissionDenied
                            || source.raw_os_error() == Some(30)) =>
                {
                    opts.read_only = true;
                    let store =
                        rtgt_backstore::open(bstype, &opts).map_err(|e| open_err(e, direct))?;
                    tracing::info!(path, "backing file is read-only: exporting it read-only");
                    params.retain(|(k, _)| !k.eq_ignore_ascii_case("readonly"));
                    params.push(("readonly".into(), "1".into()));
                    store
                }
                Err(e) => return Err(open_err(e, direct)),
            };
            // A block device's own logical block size, unless --blocksize says otherwise.
            let caps = store.capabilities();
            let block_size = match req.blocksize {
                Some(_) => block_size,
                None if matches!(caps.logical_block_size, 512 | 4096) => caps.logical_block_size,
                None => block_size,
            };
            let kind = store.kind();
            let flags_shown = flags.clone();
            let cfg = LuConfig {
                device_type,
                store: Some(store),
                block_size,
                path: if path.is_empty() {
                    "None".into()
                } else {
                    path.clone()
                },
                bsoflags: flags,
                params,
            };
            t.scsi.add_lu(lun, cfg).map_err(|e| scsi_err(tid, e))?;
            tracing::info!(
                tid,
                lun,
                path,
                bstype = kind,
                bsoflags = flags_shown,
                block_size,
                "logical unit created"
            );
            Ok(String::new())
        }
        "delete" => {
            if lun == 0 {
                return Err(AdmError::invalid(
                    "LUN 0 is the target's controller and cannot be deleted",
                ));
            }
            t.scsi.remove_lu(lun).map_err(|e| scsi_err(tid, e))?;
            tracing::info!(tid, lun, "logical unit deleted");
            Ok(String::new())
        }
        "update" => {
            let mut params = match req.params.as_deref() {
                Some(p) => parse_kv_list(p).map_err(AdmError::Invalid)?,
                None => Vec::new(),
            };
            if let (Some(n), Some(v)) = (req.name.as_deref(), req.value.as_deref()) {
                params.push((n.to_string(), v.to_string()));
            }
            if params.is_empty() {
                return Err(AdmError::invalid(format!(
                    "{what} requires --params key=value[,key=value...]"
                )));
            }
            let info = t.scsi.lu_info().into_iter().find(|l| l.lun == lun);
            let change = match &info {
                Some(l) if l.device_type == DeviceType::Cd.name() => {
                    crate::disc::take_change(&mut params)?
                }
                _ => (None, false),
            };
            if !params.is_empty() {
                t.scsi
                    .update_lu(lun, &params)
                    .map_err(|e| scsi_err(tid, e))?;
            }
            if let (Some(change), force) = change {
                let l = info.expect("a cd LU");
                let (sync, direct, _) = parse_bsoflags(&l.backing_store_flags)?;
                let image = match change {
                    crate::disc::Change::Load(path) => Some((
                        rtgt_scsi::open_disc_image(&l.backing_store_type, &path, sync, direct)
                            .map_err(|e| open_err(e, direct))?,
                        path,
                    )),
                    crate::disc::Change::Eject => None,
                };
                let what = image.as_ref().map(|(_, p)| p.clone());
                t.scsi
                    .change_medium(lun, image, force)
                    .map_err(crate::disc::medium_err)?;
                tracing::info!(
                    tid,
                    lun,
                    media = what.as_deref().unwrap_or("none"),
                    "medium changed"
                );
            }
            Ok(String::new())
        }
        _ => Err(unsupported(op, "logicalunit")),
    }
}

/// `--lld vhost --op bind|unbind --mode target --tid N --params socket=PATH`: the
/// vhost-user-scsi socket (one virtual machine's virtio-scsi controller) that serves
/// target N. A path serves one target; the daemon's vhost transport listens on it.
fn vhost_bind(reg: &Registry, t: &Target, op: &str, req: &Request) -> Result<String> {
    let path = req
        .params
        .as_deref()
        .unwrap_or("")
        .split(',')
        .find_map(|kv| kv.trim().strip_prefix("socket="))
        .filter(|p| !p.is_empty())
        .ok_or_else(|| {
            AdmError::invalid(format!(
                "--lld vhost --op {op} --mode target requires --params socket=PATH"
            ))
        })?;
    if !path.starts_with('/') {
        return Err(AdmError::invalid(format!(
            "vhost socket '{path}' must be an absolute path"
        )));
    }
    if op == "bind" {
        if let Some(other) = reg
            .targets()
            .iter()
            .find(|o| o.vhost_sockets.read().iter().any(|p| p == path))
        {
            return Err(AdmError::Exists(format!(
                "vhost socket {path} already serves tid {}",
                other.tid
            )));
        }
        t.vhost_sockets.write().push(path.to_string());
    } else {
        let mut v = t.vhost_sockets.write();
        let i = v.iter().position(|p| p == path).ok_or_else(|| {
            AdmError::NotFound(format!("vhost socket {path} is not bound to tid {}", t.tid))
        })?;
        v.remove(i);
    }
    Ok(String::new())
}

// ---- lld, system, portal, connection ----------------------------------------------------

fn lld(reg: &Registry, op: &str, req: &Request) -> Result<String> {
    check_lld(reg, &req.lld)?;
    match op {
        "show" => {
            let mut out = String::from("LLDs:\n");
            let llds = reg.llds();
            let shown = llds
                .iter()
                .filter(|l| req.lld.is_empty() || l.name.eq_ignore_ascii_case(&req.lld));
            for l in shown {
                out.push_str(&format!("    {}: {}\n", l.name, l.state));
                // Every target is reachable through every transport that is started.
                if l.state == "ready" {
                    for t in reg.targets() {
                        out.push_str(&format!("        Target {}: {}\n", t.tid, t.name));
                    }
                }
            }
            Ok(out)
        }
        // Transports start with the daemon (from its command line) and stay up.
        "start" => Ok(String::new()),
        "stop" => {
            Err(AdmError::Unsupported(format!(
            "the {} driver cannot be stopped on its own; stop rtgtd with --op delete --mode system",
            if req.lld.is_empty() { "iscsi" } else { &req.lld }
        )))
        }
        _ => Err(unsupported(op, "lld")),
    }
}

fn system(reg: &Registry, op: &str, req: &Request) -> Result<String> {
    match op {
        "show" => Ok(show::system(reg)),
        "update" => {
            let (name, value) = need_name_value(req, "--op update --mode system")?;
            match name.to_ascii_lowercase().as_str() {
                "state" => {
                    let ready = match value.to_ascii_lowercase().as_str() {
                        "ready" => true,
                        "offline" => false,
                        _ => {
                            return Err(AdmError::invalid(format!(
                                "invalid system state '{value}': use ready or offline"
                            )))
                        }
                    };
                    reg.system_ready.store(ready, Ordering::Release);
                    tracing::info!(state = value, "system state changed");
                    Ok(String::new())
                }
                "debug" => {
                    let on = match value.to_ascii_lowercase().as_str() {
                        "on" => true,
                        "off" => false,
                        _ => {
                            return Err(AdmError::invalid(format!(
                                "invalid debug value '{value}': use on or off"
                            )))
                        }
                    };
                    reg.debug.store(on, Ordering::Release);
                    if let Some(h) = reg.debug_hook.read().as_ref() {
                        h(on);
                    }
                    Ok(String::new())
                }
                "chap_algorithms" => {
                    *reg.chap_algorithms.write() = crate::auth::parse_algorithms(value)?;
                    Ok(String::new())
                }
                "max_sessions" => {
                    reg.max_sessions
                        .store(parse_limit(name, value)?, Ordering::Release);
                    Ok(String::new())
                }
                "auth_fail_limit" => {
                    reg.auth_fail_limit
                        .store(parse_limit(name, value)?, Ordering::Release);
                    Ok(String::new())
                }
                _ => Err(AdmError::invalid(format!(
                    "unknown system parameter '{name}' (use State, debug, chap_algorithms, \
                     max_sessions or auth_fail_limit)"
                ))),
            }
        }
        "delete" => {
            let sessions = {
                let mut targets = reg.targets.write();
                if !targets.is_empty() && !req.force {
                    let tids: Vec<String> = targets.iter().map(|t| t.tid.to_string()).collect();
                    return Err(AdmError::Busy(format!(
                        "the system still has targets (tid {}): delete them first or add --force",
                        tids.join(", ")
                    )));
                }
                let mut all = Vec::new();
                for t in targets.drain(..) {
                    all.extend(t.retire(true).unwrap_or_default());
                }
                all
            };
            close_all(sessions);
            reg.system_ready.store(false, Ordering::Release);
            if !reg.shutdown_requested.swap(true, Ordering::AcqRel) {
                tracing::info!("shutdown requested by rtgtadm");
                if let Some(h) = reg.shutdown_hook.read().as_ref() {
                    h();
                }
            }
            Ok(String::new())
        }
        _ => Err(unsupported(op, "system")),
    }
}

fn portal(reg: &Registry, op: &str) -> Result<String> {
    match op {
        "show" => Ok(show::portals(reg)),
        "new" | "delete" => Err(AdmError::Unsupported(
            "portals are set when rtgtd starts (--iscsi portal=IP:PORT)".into(),
        )),
        _ => Err(unsupported(op, "portal")),
    }
}

fn connection(reg: &Registry, op: &str, req: &Request) -> Result<String> {
    let what = format!("--op {op} --mode conn");
    let tid = need_tid(req, &what)?;
    let t = find_target(reg, tid)?;
    match op {
        "show" => {
            let mut out = String::new();
            for s in t.sessions() {
                if req.sid.is_some_and(|sid| sid != s.sid) {
                    continue;
                }
                show::session_connections(&s, &mut out);
            }
            Ok(out)
        }
        "delete" => {
            let sid = req
                .sid
                .ok_or_else(|| AdmError::invalid(format!("--sid is required for {what}")))?;
            let cid = req
                .cid
                .ok_or_else(|| AdmError::invalid(format!("--cid is required for {what}")))?;
            let s = t
                .sessions()
                .into_iter()
                .find(|s| s.sid == sid)
                .ok_or_else(|| {
                    AdmError::NotFound(format!("can't find the session (tid {tid}, sid {sid})"))
                })?;
            // A session with no network connection (vhost-user: the VM's socket) is
            // its own connection 0.
            let only = s.connections.is_empty() && cid == 0;
            if !only && !s.connections.iter().any(|c| c.cid == cid) {
                return Err(AdmError::NotFound(format!(
                    "can't find the connection (tid {tid}, sid {sid}, cid {cid})"
                )));
            }
            // Sessions have one connection (MaxConnections=1): closing it ends the session.
            close_all(vec![s]);
            Ok(String::new())
        }
        _ => Err(unsupported(op, "conn")),
    }
}
