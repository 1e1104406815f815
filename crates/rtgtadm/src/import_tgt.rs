//! `rtgtadm import-targets-conf FILE`: tgt's `targets.conf` (the file tgt-admin reads)
//! converted to rtgt's configuration file.
//!
//! The file is data and nothing else: tgt-admin pasted its values into shell command
//! lines and ran `include`d files and `sg_inq` on devices; here no value is ever given
//! to a shell or a program, no included file is read, no device is probed. What can't be
//! mapped is listed (as comments at the top of the output, and on stderr), never run.
//!
//! Meaning follows tgt-admin's observed behaviour: a target without `initiator-address`
//! admits every initiator (`-I ALL`); target-level LUN options apply to every LUN unless
//! a `<backing-store>` block sets its own; `backing-store` LUNs are numbered before
//! `direct-store` ones, each in the order of their paths, from the first free number;
//! tids follow the target names' order unless `controller_tid` sets one; `write-cache
//! off` turns the write cache off; `${tid}` and `${lun}` in `params` are replaced.

use std::collections::{BTreeMap, BTreeSet};

use rtgt_target::config::{AccountConfig, Config, LunConfig, TargetConfig, Value};
use toml::Spanned;

/// One `key value` line.
#[derive(Debug, Clone)]
struct Opt {
    key: String,
    value: String,
    line: usize,
}

#[derive(Debug, Default)]
struct Store {
    path: String,
    direct: bool,
    line: usize,
    opts: Vec<Opt>,
}

#[derive(Debug, Default)]
struct TgtTarget {
    name: String,
    line: usize,
    opts: Vec<Opt>,
    stores: Vec<Store>,
}

/// The result: the configuration and what was not imported, one line each.
#[derive(Debug)]
pub struct Imported {
    pub config: Config,
    pub skipped: Vec<String>,
}

/// LU parameters tgt-admin passes as `--params key=value`, under the same names in rtgt.
const LU_PARAMS: &[&str] = &[
    "scsi_id",
    "scsi_sn",
    "vendor_id",
    "product_id",
    "product_rev",
    "sense_format",
    "removable",
    "online",
    "readonly",
    "lbppbe",
    "path",
    "mode_page",
    "la_lba",
    "optimal_xfer_gran",
    "optimal_xfer_len",
    "thin_provisioning",
];

/// LUN options other than `--params` ones.
const LUN_OPTS: &[&str] = &[
    "lun",
    "bs-type",
    "bsopts",
    "bsoflags",
    "block-size",
    "device-type",
    "write-cache",
    "params",
    "allow-in-use",
];

/// Strips a comment (`#` to the end of the line; `\#` is a literal `#`).
fn strip_comment(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'#') => {
                out.push('#');
                chars.next();
            }
            '#' => break,
            c => out.push(c),
        }
    }
    out
}

/// `key value` or `key = value`.
fn key_value(s: &str) -> (String, String) {
    let s = s.trim();
    let (k, v) = match s.find(|c: char| c.is_whitespace() || c == '=') {
        Some(i) => (&s[..i], s[i..].trim_start()),
        None => (s, ""),
    };
    let v = v.strip_prefix('=').unwrap_or(v).trim();
    // Config::General allows a value in double quotes.
    let v = v
        .strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .unwrap_or(v);
    (k.to_string(), v.to_string())
}

/// Parses the block structure: `<target NAME> ... </target>` holding options and
/// `<backing-store PATH>` / `<direct-store PATH>` blocks; options outside targets are
/// global.
fn parse(text: &str) -> Result<(Vec<Opt>, Vec<TgtTarget>), String> {
    let mut global = Vec::new();
    let mut targets: Vec<TgtTarget> = Vec::new();
    let mut target: Option<TgtTarget> = None;
    let mut store: Option<Store> = None;
    let mut pending = String::new();
    let mut pending_line = 0;
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let mut l = strip_comment(raw);
        // A trailing backslash continues the line.
        if pending.is_empty() {
            pending_line = n;
        }
        if l.trim_end().ends_with('\\') {
            let t = l.trim_end();
            pending.push_str(&t[..t.len() - 1]);
            continue;
        }
        if !pending.is_empty() {
            l = format!("{pending}{l}");
            pending.clear();
        }
        let line = l.trim();
        let at = pending_line;
        if line.is_empty() {
            continue;
        }
        if line.contains("<<") {
            return Err(format!(
                "line {at}: here-documents (<<) are not supported; write the value on one line"
            ));
        }
        if let Some(close) = line.strip_prefix("</") {
            let kind = close.trim_end_matches('>').trim().to_ascii_lowercase();
            match (kind.as_str(), store.take(), target.take()) {
                ("backing-store" | "direct-store", Some(s), Some(mut t)) => {
                    t.stores.push(s);
                    target = Some(t);
                }
                ("target", None, Some(t)) => targets.push(t),
                _ => return Err(format!("line {at}: unexpected {line}")),
            }
            continue;
        }
        if let Some(open) = line.strip_prefix('<') {
            let inner = open
                .strip_suffix('>')
                .ok_or_else(|| format!("line {at}: a block header must end with '>'"))?;
            let (kind, arg) = key_value(inner);
            let kind = kind.to_ascii_lowercase();
            if arg.is_empty() {
                return Err(format!("line {at}: <{kind}> needs a name"));
            }
            match kind.as_str() {
                "target" if target.is_none() => {
                    target = Some(TgtTarget {
                        name: arg,
                        line: at,
                        ..TgtTarget::default()
                    })
                }
                "backing-store" | "direct-store" if target.is_some() && store.is_none() => {
                    store = Some(Store {
                        path: arg,
                        direct: kind == "direct-store",
                        line: at,
                        opts: Vec::new(),
                    })
                }
                _ => return Err(format!("line {at}: unexpected <{kind}> block here")),
            }
            continue;
        }
        let (key, value) = key_value(line);
        let opt = Opt {
            key: key.to_ascii_lowercase(),
            value,
            line: at,
        };
        match (&mut store, &mut target) {
            (Some(s), _) => s.opts.push(opt),
            (None, Some(t)) => {
                if opt.key == "backing-store" || opt.key == "direct-store" {
                    t.stores.push(Store {
                        path: opt.value.clone(),
                        direct: opt.key == "direct-store",
                        line: at,
                        opts: Vec::new(),
                    });
                } else {
                    t.opts.push(opt);
                }
            }
            (None, None) => global.push(opt),
        }
    }
    if let Some(t) = target {
        return Err(format!(
            "line {}: <target {}> is not closed with </target>",
            t.line, t.name
        ));
    }
    Ok((global, targets))
}

/// Converts the text of a targets.conf.
pub fn import(text: &str) -> Result<Imported, String> {
    let (global, mut targets) = parse(text)?;
    let mut skipped = Vec::new();
    for o in &global {
        let why = match o.key.as_str() {
            "include" => "included files are not read: convert each one separately",
            "default-driver" if o.value.eq_ignore_ascii_case("iscsi") => continue,
            "default-driver" => "rtgt's only driver is iscsi",
            "ignore-errors" => "rtgtadm stops at the first error",
            k if k.starts_with("isns") => "iSNS settings are not imported",
            _ => "unknown global option",
        };
        skipped.push(format!("line {}: {} {}: {why}", o.line, o.key, o.value));
    }
    // tgt-admin goes through targets in name order.
    targets.sort_by(|a, b| a.name.cmp(&b.name));
    let mut used_tids: BTreeSet<u32> = targets
        .iter()
        .filter_map(|t| {
            t.opts
                .iter()
                .find(|o| o.key == "controller_tid")
                .and_then(|o| o.value.parse().ok())
        })
        .collect();
    let mut next_tid = 1;
    let mut accounts: BTreeMap<String, (String, usize)> = BTreeMap::new();
    let mut out = Vec::new();
    for t in &targets {
        let tid = match t.opts.iter().find(|o| o.key == "controller_tid") {
            Some(o) => match o.value.parse::<u32>() {
                Ok(n) if n > 0 => n,
                _ => {
                    skipped.push(format!(
                        "line {}: target {}: bad controller_tid {}: target not imported",
                        o.line, t.name, o.value
                    ));
                    continue;
                }
            },
            None => {
                while used_tids.contains(&next_tid) {
                    next_tid += 1;
                }
                used_tids.insert(next_tid);
                next_tid
            }
        };
        out.push(convert_target(t, tid, &mut accounts, &mut skipped));
    }
    Ok(Imported {
        config: Config {
            accounts: accounts
                .into_iter()
                .map(|(user, (password, _))| AccountConfig { user, password })
                .collect(),
            targets: out,
            ..Config::default()
        },
        skipped,
    })
}

fn account(
    accounts: &mut BTreeMap<String, (String, usize)>,
    o: &Opt,
    skipped: &mut Vec<String>,
) -> Option<String> {
    let mut w = o.value.split_whitespace();
    let (Some(user), Some(pass), None) = (w.next(), w.next(), w.next()) else {
        skipped.push(format!(
            "line {}: {} needs a user and a password: not imported",
            o.line, o.key
        ));
        return None;
    };
    match accounts.get(user) {
        Some((p, line)) if p != pass => {
            skipped.push(format!(
                "line {}: account {user} has another password on line {line}: the first is kept",
                o.line
            ));
        }
        Some(_) => {}
        None => {
            accounts.insert(user.to_string(), (pass.to_string(), o.line));
        }
    }
    Some(user.to_string())
}

fn convert_target(
    t: &TgtTarget,
    tid: u32,
    accounts: &mut BTreeMap<String, (String, usize)>,
    skipped: &mut Vec<String>,
) -> TargetConfig {
    let mut tc = TargetConfig {
        tid: Spanned::new(0..0, tid),
        name: t.name.clone(),
        state: None,
        initiator_address: Vec::new(),
        initiator_name: Vec::new(),
        incoming_user: Vec::new(),
        outgoing_user: None,
        params: BTreeMap::new(),
        max_sessions: None,
        chap_algorithms: None,
        alua_state: BTreeMap::new(),
        alua_peer: BTreeMap::new(),
        vhost_socket: Vec::new(),
        luns: Vec::new(),
    };
    // Target-level LUN options, the default of every LUN.
    let mut lun_defaults = Vec::new();
    for o in &t.opts {
        let skip = |why: &str, skipped: &mut Vec<String>| {
            skipped.push(format!(
                "line {}: target {}: {} {}: {why}",
                o.line, t.name, o.key, o.value
            ))
        };
        match o.key.as_str() {
            "initiator-address" => tc.initiator_address.push(o.value.clone()),
            "initiator-name" => tc.initiator_name.push(o.value.clone()),
            "incominguser" => {
                if let Some(u) = account(accounts, o, skipped) {
                    if !tc.incoming_user.contains(&u) {
                        tc.incoming_user.push(u);
                    }
                }
            }
            "outgoinguser" => {
                if let Some(u) = account(accounts, o, skipped) {
                    if tc.outgoing_user.is_some() {
                        skip(
                            "only one outgoing account per target: not imported",
                            skipped,
                        );
                    } else {
                        tc.outgoing_user = Some(u);
                    }
                }
            }
            "controller_tid" => {}
            "driver" if o.value.eq_ignore_ascii_case("iscsi") => {}
            "driver" => skip("rtgt's only driver is iscsi", skipped),
            k if LU_PARAMS.contains(&k) || LUN_OPTS.contains(&k) => lun_defaults.push(o.clone()),
            _ => match rtgt_target::params::check_iscsi_param(&o.key, &o.value) {
                Ok((k, v)) => {
                    tc.params.insert(k, Value::Str(v));
                }
                Err(e) => skip(&format!("not imported ({e})"), skipped),
            },
        }
    }
    // tgt-admin admits every initiator unless initiator-address is given.
    if tc.initiator_address.is_empty() {
        tc.initiator_address.push("ALL".into());
    }
    // LUN numbers: explicit ones first, then backing-store paths in order, then
    // direct-store paths, each taking the first free number from 1.
    let mut order: Vec<&Store> = t.stores.iter().collect();
    order.sort_by(|a, b| (a.direct, &a.path).cmp(&(b.direct, &b.path)));
    let explicit = |s: &Store| -> Option<String> {
        s.opts
            .iter()
            .find(|o| o.key == "lun")
            .or_else(|| {
                // A target-level `lun` applies when the target has one LUN.
                (t.stores.len() == 1)
                    .then(|| lun_defaults.iter().find(|o| o.key == "lun"))
                    .flatten()
            })
            .map(|o| o.value.clone())
    };
    let mut used: BTreeSet<u64> = order
        .iter()
        .filter_map(|s| explicit(s).and_then(|v| v.parse().ok()))
        .collect();
    let mut next = 1u64;
    for s in order {
        let lun = match explicit(s) {
            Some(v) => match v.parse::<u64>() {
                Ok(n) if n > 0 => n,
                _ => {
                    skipped.push(format!(
                        "line {}: target {} {}: bad lun {v}: not imported",
                        s.line, t.name, s.path
                    ));
                    continue;
                }
            },
            None => {
                while used.contains(&next) {
                    next += 1;
                }
                used.insert(next);
                next
            }
        };
        if let Some(l) = convert_lun(t, tid, s, lun, &lun_defaults, skipped) {
            tc.luns.push(l);
        }
    }
    tc.luns.sort_by_key(|l| *l.lun.get_ref());
    tc
}

fn convert_lun(
    t: &TgtTarget,
    tid: u32,
    s: &Store,
    lun: u64,
    defaults: &[Opt],
    skipped: &mut Vec<String>,
) -> Option<LunConfig> {
    let mut l = LunConfig {
        lun: Spanned::new(0..0, lun),
        backing_store: None,
        bstype: None,
        bsoflags: None,
        blocksize: None,
        device_type: None,
        size: None,
        bsopts: None,
        params: BTreeMap::new(),
        initiators: Vec::new(),
        changer: Vec::new(),
    };
    let here = format!("target {} lun {lun} ({})", t.name, s.path);
    if s.direct {
        skipped.push(format!(
            "line {}: {here}: direct-store: served as a backing-store; the device's own \
             vendor, product and serial are not read (no sg_inq is run): set them with \
             vendor_id, product_id, scsi_sn",
            s.line
        ));
    }
    // Local options win over the target's.
    let local: BTreeSet<&str> = s.opts.iter().map(|o| o.key.as_str()).collect();
    let opts = s.opts.iter().chain(
        defaults
            .iter()
            .filter(|o| !local.contains(o.key.as_str()) || o.key == "params"),
    );
    let mut bsopts = None;
    for o in opts {
        let skip = |why: &str, skipped: &mut Vec<String>| {
            skipped.push(format!(
                "line {}: {here}: {} {}: {why}",
                o.line, o.key, o.value
            ))
        };
        let v = o.value.as_str();
        match o.key.as_str() {
            "lun" | "allow-in-use" => {}
            "bs-type" => match rtgt_backstore_type(v) {
                Some(b) => l.bstype = Some(b.into()),
                None => {
                    skip("rtgt has no such backing store: LUN not imported", skipped);
                    return None;
                }
            },
            "bsoflags" => l.bsoflags = Some(v.into()),
            "bsopts" => bsopts = Some((v.to_string(), o.line)),
            "block-size" => match v.parse() {
                Ok(n) => l.blocksize = Some(n),
                Err(_) => skip("not a number: not imported", skipped),
            },
            "device-type" => l.device_type = Some(v.into()),
            "write-cache" => match v {
                "on" | "off" => {
                    l.params.insert("write_cache".into(), Value::Str(v.into()));
                }
                _ => skip("use on or off: not imported", skipped),
            },
            "params" => {
                let v = v
                    .replace("${tid}", &tid.to_string())
                    .replace("${lun}", &lun.to_string());
                for kv in v.split(',').filter(|x| !x.trim().is_empty()) {
                    let (k, val) = kv.split_once('=').unwrap_or((kv, ""));
                    lu_param(&mut l, k.trim(), val.trim(), o.line, &here, skipped);
                }
            }
            k => lu_param(&mut l, k, v, o.line, &here, skipped),
        }
    }
    let bstype = l.bstype.clone().unwrap_or_else(|| "rdwr".into());
    if matches!(bstype.as_str(), "null" | "mem") {
        // targets.conf gives a null store no size; rtgt needs one (bsopts size=).
        l.size = Some(Value::Str("1G".into()));
        if let Some((b, line)) = &bsopts {
            match b.split(';').find_map(|x| x.strip_prefix("size=")) {
                Some(size) => l.size = Some(Value::Str(size.into())),
                None => skipped.push(format!("line {line}: {here}: bsopts {b}: not imported")),
            }
        } else {
            skipped.push(format!(
                "line {}: {here}: {bstype} store without a size: 1G assumed",
                s.line
            ));
        }
    } else {
        l.backing_store = Some(s.path.clone());
        match bsopts {
            // bs_rbd's options (conf=, id=, cluster=) and bs_glfs's (logfile=, loglevel=)
            // mean the same to rtgt's rbd and glfs stores.
            Some((b, _)) if matches!(bstype.as_str(), "rbd" | "glfs") => l.bsopts = Some(b),
            Some((b, line)) => {
                skipped.push(format!("line {line}: {here}: bsopts {b}: not imported"))
            }
            None => {}
        }
    }
    Some(l)
}

/// rtgt's name for tgt's `bs-type`, when rtgt has that store.
fn rtgt_backstore_type(v: &str) -> Option<&'static str> {
    Some(match v {
        "rdwr" => "rdwr",
        "aio" => "aio",
        "null" => "null",
        "mem" | "rdwr_mem" => "mem",
        // bs_rbd: `backing-store pool/image[@snap]`, `bsopts "conf=...;id=..."`.
        "rbd" => "rbd",
        // bs_glfs: `backing-store volume@host:path`, `bsopts "logfile=...;loglevel=..."`.
        "glfs" => "glfs",
        // bs_sg: a pass-through LU (device-type pt) on an sg or bsg node.
        "sg" => "sg",
        "bsg" => "bsg",
        _ => return None,
    })
}

/// One LU parameter, checked against what rtgt accepts.
fn lu_param(
    l: &mut LunConfig,
    k: &str,
    v: &str,
    line: usize,
    here: &str,
    skipped: &mut Vec<String>,
) {
    let pair = [(k.to_string(), v.to_string())];
    match rtgt_scsi::canonical_lu_params(&pair) {
        Ok(_) => {
            l.params.insert(k.to_string(), Value::Str(v.to_string()));
        }
        Err(e) => skipped.push(format!("line {line}: {here}: {k} {v}: not imported ({e})")),
    }
}

/// The configuration as TOML, with what was not imported as comments on top.
pub fn render(i: &Imported, source: &str) -> String {
    let mut out = format!("# Imported from {source} by `rtgtadm import-targets-conf`.\n");
    if !i.skipped.is_empty() {
        out.push_str("# Not imported (nothing in it was run):\n");
        for s in &i.skipped {
            out.push_str(&format!("#   {s}\n"));
        }
    }
    out.push_str("# Load it with `rtgtd --config FILE` or `rtgtadm config apply FILE`.\n\n");
    out.push_str(&toml::to_string_pretty(&i.config).unwrap_or_default());
    out
}

// ---- the command -------------------------------------------------------------------------

pub const USAGE: &str = "\
rtgtadm [-C N | --control-socket PATH] import-targets-conf FILE [--write OUT]
        [--apply [--dry-run] [--force]]
    Convert tgt's targets.conf to rtgt's configuration file (TOML) on standard output
    or to OUT (atomically, mode 0600: it holds CHAP secrets). What can't be mapped is
    listed on standard error and in comments; nothing in FILE is run and included
    files are not read. --apply makes the result the running configuration, as
    `config apply` does (--dry-run prints the plan).
";

pub fn run(argv: &[String]) -> i32 {
    let mut control_port = 0u16;
    let mut socket = None;
    let (mut apply, mut dry_run, mut force) = (false, false, false);
    let mut out_file = None;
    let mut words = Vec::new();
    let mut it = argv.iter();
    let usage = |msg: &str| {
        eprintln!("rtgtadm: {msg}");
        eprint!("{USAGE}");
        22
    };
    while let Some(a) = it.next() {
        match a.as_str() {
            "-C" | "--control-port" => match it.next().and_then(|v| v.parse().ok()) {
                Some(n) => control_port = n,
                None => return usage("-C needs a control port number"),
            },
            "--control-socket" => match it.next() {
                Some(p) => socket = Some(std::path::PathBuf::from(p)),
                None => return usage("--control-socket needs a path"),
            },
            "-L" | "--lld" => {
                it.next();
            }
            "--write" => match it.next() {
                Some(p) => out_file = Some(std::path::PathBuf::from(p)),
                None => return usage("--write needs a file"),
            },
            "--apply" => apply = true,
            "--dry-run" | "-n" => dry_run = true,
            "--force" | "-F" => force = true,
            s if s.starts_with('-') => return usage(&format!("unknown option {s}")),
            s => words.push(s.to_string()),
        }
    }
    // words[0] is "import-targets-conf".
    let [_, file] = words.as_slice() else {
        return usage("import-targets-conf needs one FILE");
    };
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("rtgtadm: {file}: {e}");
            return e.raw_os_error().unwrap_or(5);
        }
    };
    let imported = match import(&text) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("rtgtadm: {file}: {e}");
            return 22;
        }
    };
    for s in &imported.skipped {
        eprintln!("rtgtadm: {file}: not imported: {s}");
    }
    let toml = render(&imported, file);
    if let Some(out) = &out_file {
        if let Err(e) = rtgt_target::atomic_file::write_atomically(out, toml.as_bytes()) {
            eprintln!("rtgtadm: writing {}: {e}", out.display());
            return e.raw_os_error().unwrap_or(5);
        }
    } else if !apply {
        print!("{toml}");
    }
    if !apply {
        return 0;
    }
    let socket = socket.unwrap_or_else(|| rtgt_target::control::default_socket_path(control_port));
    let req = rtgt_target::control::Request {
        mode: "config".into(),
        op: if dry_run { "stat" } else { "update" }.into(),
        name: Some(format!("{file} (imported)")),
        value: Some(toml),
        force,
        ..Default::default()
    };
    crate::config_cmd::send_and_print(&socket, &req)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONF: &str = r#"
include /etc/tgt/conf.d/*.conf
default-driver iscsi

<target iqn.2026-11.org.example:b>
    backing-store /srv/b2.img
    backing-store /srv/b1.img     # becomes LUN 1
    write-cache off
    vendor_id ACME
    incominguser alice alice-secret-12
    outgoinguser tgtb target-secret-1
    initiator-address 127.0.0.1
    initiator-name iqn.2026-11.org.example:host
    MaxRecvDataSegmentLength 65536
</target>

<target iqn.2026-11.org.example:a>
    <backing-store /srv/a.img>
        lun 5
        scsi_sn SERIAL\#5
        block-size 4096
        lbppbe 3
        readonly 1
        write-cache on
    </backing-store>
    direct-store /dev/sdz
    bs-type aio
    mode_page 8:0:18:0x10:0:0xff
    params vendor_id=V${tid}L${lun}
    `reboot`
</target>
"#;

    #[test]
    fn maps_what_tgt_admin_would_do_and_lists_the_rest() {
        let i = import(CONF).unwrap();
        let c = &i.config;
        assert_eq!(c.targets.len(), 2);
        // Name order: ...:a is tid 1.
        let a = &c.targets[0];
        assert_eq!(
            (*a.tid.get_ref(), a.name.as_str()),
            (1, "iqn.2026-11.org.example:a")
        );
        assert_eq!(a.initiator_address, vec!["ALL"]);
        let luns: Vec<u64> = a.luns.iter().map(|l| *l.lun.get_ref()).collect();
        assert_eq!(luns, vec![1, 5]);
        let l5 = &a.luns[1];
        assert_eq!(l5.backing_store.as_deref(), Some("/srv/a.img"));
        assert_eq!(l5.blocksize, Some(4096));
        assert_eq!(l5.bstype.as_deref(), Some("aio"));
        assert_eq!(l5.params["scsi_sn"], Value::Str("SERIAL#5".into()));
        assert_eq!(l5.params["lbppbe"], Value::Str("3".into()));
        assert_eq!(l5.params["write_cache"], Value::Str("on".into()));
        assert_eq!(l5.params["vendor_id"], Value::Str("V1L5".into()));
        assert_eq!(a.luns[0].backing_store.as_deref(), Some("/dev/sdz"));
        let b = &c.targets[1];
        assert_eq!(*b.tid.get_ref(), 2);
        assert_eq!(b.luns[0].backing_store.as_deref(), Some("/srv/b1.img"));
        assert_eq!(b.luns[1].backing_store.as_deref(), Some("/srv/b2.img"));
        assert_eq!(b.luns[1].params["write_cache"], Value::Str("off".into()));
        assert_eq!(b.luns[0].params["vendor_id"], Value::Str("ACME".into()));
        assert_eq!(b.initiator_address, vec!["127.0.0.1"]);
        assert_eq!(b.initiator_name, vec!["iqn.2026-11.org.example:host"]);
        assert_eq!(b.incoming_user, vec!["alice"]);
        assert_eq!(b.outgoing_user.as_deref(), Some("tgtb"));
        assert_eq!(
            b.params["MaxRecvDataSegmentLength"],
            Value::Str("65536".into())
        );
        assert_eq!(c.accounts.len(), 2);
        let skipped = i.skipped.join("\n");
        for what in ["include", "direct-store", "mode_page", "`reboot`"] {
            assert!(skipped.contains(what), "{what} not listed:\n{skipped}");
        }
        // The output is a configuration rtgt reads back.
        let text = render(&i, "targets.conf");
        let back = rtgt_target::config::parse("x.toml", &text).unwrap();
        assert_eq!(back.targets.len(), 2);
    }

    #[test]
    fn glfs_luns_keep_their_volume_path_and_bsopts() {
        let conf = r#"
<target iqn.2026-11.org.example:g>
    bs-type glfs
    bsopts "logfile=/var/log/tgt-glfs.log;loglevel=7"
    backing-store rtgtvol@127.0.0.2:vm/disk.img
</target>
"#;
        let i = import(conf).unwrap();
        let l = &i.config.targets[0].luns[0];
        assert_eq!(l.bstype.as_deref(), Some("glfs"));
        assert_eq!(
            l.backing_store.as_deref(),
            Some("rtgtvol@127.0.0.2:vm/disk.img")
        );
        assert_eq!(
            l.bsopts.as_deref(),
            Some("logfile=/var/log/tgt-glfs.log;loglevel=7")
        );
        assert!(i.skipped.is_empty(), "{:?}", i.skipped);
    }

    #[test]
    fn pass_through_luns_keep_their_sg_and_bsg_nodes() {
        let conf = "<target iqn.2026-12.org.example:lib>\n\
            <backing-store /dev/sg3>\n  bs-type sg\n  device-type pt\n  lun 1\n</backing-store>\n\
            <backing-store /dev/bsg/2:0:0:0>\n  bs-type bsg\n  device-type pt\n  lun 2\n</backing-store>\n\
            </target>\n";
        let i = import(conf).unwrap();
        let l = &i.config.targets[0].luns;
        let got: Vec<_> = l
            .iter()
            .map(|l| {
                (
                    l.backing_store.as_deref(),
                    l.bstype.as_deref(),
                    l.device_type.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (Some("/dev/sg3"), Some("sg"), Some("pt")),
                (Some("/dev/bsg/2:0:0:0"), Some("bsg"), Some("pt")),
            ]
        );
        assert!(i.skipped.is_empty(), "{:?}", i.skipped);
    }

    #[test]
    fn malformed_files_are_refused_with_the_line() {
        assert!(import("<target iqn.2026-11.a:b>\n")
            .unwrap_err()
            .contains("line 1"));
        assert!(import("</target>\n").unwrap_err().contains("line 1"));
        assert!(import("<target x>\n<target y>\n")
            .unwrap_err()
            .contains("line 2"));
        assert!(import("<target x>\nfoo <<EOF\n")
            .unwrap_err()
            .contains("line 2"));
    }
}
