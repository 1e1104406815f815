//! tgtadm's command line, parsed into a control [`Request`].
//!
//! Options follow tgtadm's getopt_long table: the same long names, the same short letters,
//! `--opt value`, `--opt=value`, `-x value` and `-xvalue`, and unambiguous prefixes of long
//! names (`--initiator-addr`), as getopt_long accepts them.

use std::path::{Path, PathBuf};

use rtgt_target::control::{canonical_mode, canonical_op, default_socket_path, Request};

use crate::suggest;

/// What the command line asks for.
// Built once per process: boxing the request would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Help,
    Version,
    Send {
        /// The control socket to talk to.
        socket: PathBuf,
        /// `-C N`, for the "is rtgtd running" hint.
        control_port: u16,
        request: Request,
    },
}

struct Opt {
    /// tgtadm's short letter; the key options are stored under.
    key: char,
    /// Whether `-key` works (false only for rtgtadm's own `--control-socket`).
    short: bool,
    long: &'static str,
    takes_arg: bool,
}

const fn opt(key: char, long: &'static str, takes_arg: bool) -> Opt {
    Opt {
        key,
        short: true,
        long,
        takes_arg,
    }
}

/// Key for `--control-socket`, which has no short form.
const CONTROL_SOCKET: char = '\u{1}';

const OPTS: &[Opt] = &[
    opt('d', "debug", false),
    opt('h', "help", false),
    opt('V', "version", false),
    opt('L', "lld", true),
    opt('o', "op", true),
    opt('m', "mode", true),
    opt('t', "tid", true),
    opt('s', "sid", true),
    opt('c', "cid", true),
    opt('l', "lun", true),
    opt('n', "name", true),
    opt('v', "value", true),
    opt('b', "backing-store", true),
    opt('E', "bstype", true),
    opt('S', "bsopts", true),
    opt('f', "bsoflags", true),
    opt('y', "blocksize", true),
    opt('T', "targetname", true),
    opt('I', "initiator-address", true),
    opt('Q', "initiator-name", true),
    opt('u', "user", true),
    opt('p', "password", true),
    opt('H', "host", true),
    opt('F', "force", false),
    opt('P', "params", true),
    opt('B', "bus", true),
    opt('Y', "device-type", true),
    opt('O', "outgoing", false),
    opt('C', "control-port", true),
    Opt {
        key: CONTROL_SOCKET,
        short: false,
        long: "control-socket",
        takes_arg: true,
    },
];

/// `--mode` values, canonical names first, then tgtadm's short spellings
/// (`canonical_mode` maps them); completion and typo suggestions offer these.
pub const MODES: &[&str] = &[
    "target",
    "logicalunit",
    "system",
    "lld",
    "account",
    "connection",
    "portal",
    "session",
    "tgt",
    "lu",
    "sys",
    "conn",
    "pt",
    "sess",
];

/// `--op` values (`canonical_op` accepts exactly these).
pub const OPS: &[&str] = &[
    "new", "delete", "show", "bind", "unbind", "update", "start", "stop", "stat",
];

/// Each option as (short letter if it has one, long name, takes a value), in tgtadm's
/// order: what the shell completions are generated from.
pub fn options() -> impl Iterator<Item = (Option<char>, &'static str, bool)> {
    OPTS.iter()
        .map(|o| (o.short.then_some(o.key), o.long, o.takes_arg))
}

fn by_key(key: char) -> &'static Opt {
    OPTS.iter().find(|o| o.key == key).expect("known key")
}

fn display(key: char) -> String {
    let o = by_key(key);
    if o.short {
        format!("--{} (-{})", o.long, o.key)
    } else {
        format!("--{}", o.long)
    }
}

fn find_long(name: &str) -> Result<&'static Opt, String> {
    if let Some(o) = OPTS.iter().find(|o| o.long == name) {
        return Ok(o);
    }
    let hits: Vec<&Opt> = OPTS.iter().filter(|o| o.long.starts_with(name)).collect();
    match hits.as_slice() {
        [o] => Ok(o),
        [] => Err(format!(
            "unrecognized option '--{name}'{}",
            suggest::hint(name, OPTS.iter().map(|o| o.long), "--")
        )),
        many => Err(format!(
            "option '--{name}' is ambiguous; possibilities: {}",
            many.iter()
                .map(|o| format!("--{}", o.long))
                .collect::<Vec<_>>()
                .join(" ")
        )),
    }
}

/// The options given, last one wins (as with getopt).
#[derive(Default)]
struct Given {
    seen: Vec<char>,
    values: Vec<(char, String)>,
}

impl Given {
    fn set(&mut self, key: char, value: Option<String>) {
        if !self.seen.contains(&key) {
            self.seen.push(key);
        }
        if let Some(v) = value {
            self.values.retain(|(k, _)| *k != key);
            self.values.push((key, v));
        }
    }
    fn has(&self, key: char) -> bool {
        self.seen.contains(&key)
    }
    fn get(&self, key: char) -> Option<&str> {
        self.values
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn scan(args: &[String]) -> Result<Given, String> {
    let mut g = Given::default();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if a == "--" {
            if let Some(extra) = args.get(i) {
                return Err(format!("unexpected argument '{extra}'"));
            }
            break;
        }
        if let Some(body) = a.strip_prefix("--") {
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (body, None),
            };
            let o = find_long(name)?;
            if o.takes_arg {
                let v = match inline {
                    Some(v) => v,
                    None => {
                        let v = args
                            .get(i)
                            .ok_or_else(|| format!("option '--{}' requires an argument", o.long))?;
                        i += 1;
                        v.clone()
                    }
                };
                g.set(o.key, Some(v));
            } else {
                if inline.is_some() {
                    return Err(format!("option '--{}' doesn't allow an argument", o.long));
                }
                g.set(o.key, None);
            }
        } else if a.len() > 1 && a.starts_with('-') {
            let chars: Vec<char> = a[1..].chars().collect();
            let mut j = 0;
            while j < chars.len() {
                let c = chars[j];
                j += 1;
                let o = OPTS
                    .iter()
                    .find(|o| o.short && o.key == c)
                    .ok_or_else(|| format!("invalid option -- '{c}'"))?;
                if o.takes_arg {
                    let rest: String = chars[j..].iter().collect();
                    let v = if !rest.is_empty() {
                        rest
                    } else {
                        let v = args
                            .get(i)
                            .ok_or_else(|| format!("option requires an argument -- '{c}'"))?;
                        i += 1;
                        v.clone()
                    };
                    g.set(o.key, Some(v));
                    break;
                }
                g.set(o.key, None);
            }
        } else {
            // A misspelt subcommand (`rtgtadm targt`) or a value without its option.
            return Err(format!(
                "unexpected argument '{a}'{}",
                suggest::hint(a, crate::SUBCOMMANDS.iter().copied(), "")
            ));
        }
    }
    Ok(g)
}

fn number<T: std::str::FromStr>(g: &Given, key: char) -> Result<Option<T>, String> {
    match g.get(key) {
        None => Ok(None),
        Some(v) => v.trim().parse::<T>().map(Some).map_err(|_| {
            format!(
                "{}: invalid value '{v}' (expected a non-negative number in range)",
                display(key)
            )
        }),
    }
}

/// Options each mode/op takes besides the ones every request may carry
/// (`--lld`, `--mode`, `--op`, `--control-port`, `--control-socket`, `--debug`).
fn allowed(mode: &str, op: &str) -> Option<&'static str> {
    Some(match (mode, op) {
        ("system", "show") => "",
        ("system", "update") => "nv",
        ("system", "delete") => "F",
        ("target", "new") => "tT",
        ("target", "delete") => "tF",
        ("target", "show") => "t",
        ("target", "bind" | "unbind") => "tIQP",
        ("target", "update") => "tnv",
        ("logicalunit", "new") => "tlbEfSyYP",
        ("logicalunit", "delete") => "tl",
        ("logicalunit", "update") => "tlPnv",
        ("logicalunit", "bind" | "unbind") => "tlQ",
        ("account", "new") => "up",
        ("account", "delete") => "u",
        ("account", "show") => "",
        ("account", "bind" | "unbind") => "tuO",
        ("lld", "show" | "start" | "stop") => "",
        ("connection", "show") => "ts",
        ("connection", "delete") => "tsc",
        ("session", "show" | "update") => "tsnv",
        ("portal", "show") => "",
        ("portal", "new" | "delete") => "P",
        _ => return None,
    })
}

/// Parses rtgtadm's arguments (without the program name) into what to do. Errors are the
/// message to print after `rtgtadm: `.
pub fn parse_args(args: &[String]) -> Result<Command, String> {
    let g = scan(args)?;
    if g.has('h') {
        return Ok(Command::Help);
    }
    if g.has('V') {
        return Ok(Command::Version);
    }
    if g.has('H') || g.has('B') {
        return Err(
            "--host and --bus are not supported: rtgt has no kernel SCSI host to bind".into(),
        );
    }
    // A misspelt mode or op is reported (with its likely meaning) before a missing one.
    let op = match g.get('o') {
        None => None,
        Some(op_s) => Some(canonical_op(op_s).ok_or_else(|| {
            match suggest::nearest(op_s, OPS.iter().copied()) {
                Some(near) => format!("unknown operation: {op_s} (did you mean {near}?)"),
                None => format!(
                    "unknown operation: {op_s} (use new, delete, show, bind, unbind, update, start or stop)"
                ),
            }
        })?),
    };
    let mode = match g.get('m') {
        None => None,
        Some(mode_s) => Some(canonical_mode(mode_s).ok_or_else(|| {
            match suggest::nearest(mode_s, MODES.iter().copied()) {
                Some(near) => format!("unknown mode: {mode_s} (did you mean {near}?)"),
                None => format!(
                    "unknown mode: {mode_s} (use target, logicalunit, lld, system, account or conn)"
                ),
            }
        })?),
    };
    let op =
        op.ok_or("specify the operation type with --op (new, delete, show, bind, unbind, update)")?;
    let mode = mode.ok_or("specify the mode with --mode (target, logicalunit, lld, system)")?;
    let short_mode = if mode == "connection" { "conn" } else { mode };
    let what = format!("--op {op} --mode {short_mode}");
    let allowed = allowed(mode, op)
        .ok_or_else(|| format!("operation {op} is not supported in {mode} mode"))?;
    for &k in &g.seen {
        if !"LmoCd".contains(k) && k != CONTROL_SOCKET && !allowed.contains(k) {
            return Err(format!("option {} is not allowed with {what}", display(k)));
        }
    }

    let control_port: u16 = number(&g, 'C')?.unwrap_or(0);
    let socket = match g.get(CONTROL_SOCKET) {
        Some(p) => PathBuf::from(p),
        None => default_socket_path(control_port),
    };
    let text = |k: char| g.get(k).map(str::to_string);
    let mut req = Request {
        lld: g.get('L').unwrap_or("").to_string(),
        mode: mode.to_string(),
        op: op.to_string(),
        tid: number(&g, 't')?,
        lun: number(&g, 'l')?,
        targetname: text('T'),
        backing_store: text('b'),
        bstype: text('E'),
        bsoflags: text('f'),
        bsopts: text('S'),
        blocksize: number(&g, 'y')?,
        device_type: text('Y'),
        params: text('P'),
        initiator_address: text('I'),
        initiator_name: text('Q'),
        name: text('n'),
        value: text('v'),
        user: text('u'),
        password: text('p'),
        outgoing: g.has('O'),
        sid: number(&g, 's')?,
        cid: number(&g, 'c')?,
        force: g.has('F'),
    };
    let need = |k: char| -> Result<(), String> {
        if g.get(k).is_some_and(|v| !v.is_empty()) {
            Ok(())
        } else {
            Err(format!("{} is required for {what}", display(k)))
        }
    };
    let need_tid = |req: &Request| -> Result<(), String> {
        match req.tid {
            None => Err(format!("--tid (-t) is required for {what}")),
            Some(0) => Err("--tid must not be 0".to_string()),
            Some(_) => Ok(()),
        }
    };
    match (mode, op) {
        ("target", "show") => {}
        ("target", _) => {
            need_tid(&req)?;
            match op {
                "new" => need('T')?,
                "bind" | "unbind" if req.lld.eq_ignore_ascii_case("vhost") => need('P')?,
                "bind" | "unbind" if g.get('I').is_none() && g.get('Q').is_none() => {
                    return Err(format!(
                        "--initiator-address (-I) or --initiator-name (-Q) is required for {what}"
                    ))
                }
                "update" => {
                    need('n')?;
                    need('v')?;
                }
                _ => {}
            }
        }
        ("logicalunit", _) => {
            need_tid(&req)?;
            need('l')?;
            match op {
                "new" => {
                    // A cd or tape drive may start empty (no disc, no cartridge), as in
                    // tgt: a changer loads the drive later.
                    if !matches!(req.bstype.as_deref(), Some("null" | "mem"))
                        && !matches!(req.device_type.as_deref(), Some("cd" | "tape"))
                    {
                        need('b')?;
                    }
                    if let Some(t) = req.device_type.as_deref() {
                        const KNOWN: &[&str] = &[
                            "disk", "tape", "cd", "changer", "osd", "ssc", "pt", "handler",
                        ];
                        if !KNOWN.contains(&t) {
                            return Err(format!("unknown device type: {t} (use disk)"));
                        }
                    }
                }
                "update" if g.get('P').is_none() && g.get('n').is_none() => {
                    return Err(format!("--params (-P) is required for {what}"))
                }
                "bind" | "unbind" => need('Q')?,
                _ => {}
            }
        }
        ("system", "update") | ("session", "update") => {
            need('n')?;
            need('v')?;
        }
        ("account", "new") => {
            need('u')?;
            need('p')?;
        }
        ("account", "delete") => need('u')?,
        ("account", "bind" | "unbind") => {
            need('u')?;
            // Tid 0 is allowed here: it stands for discovery sessions.
            need('t')?;
        }
        ("connection", _) => {
            need_tid(&req)?;
            if op == "delete" {
                need('s')?;
                need('c')?;
            }
        }
        _ => {}
    }
    // The daemon runs in another directory: send it an absolute backing-store path
    // (not for rbd or glfs, whose -b names an image or a file on a Gluster volume, nor
    // for a handler's bare NAME, which names a socket under rtgtd's run directory).
    // `None` is tgt's word for no medium (an empty tape drive), not a file name.
    let names_a_file = match req.bstype.as_deref() {
        Some("rbd" | "glfs") => false,
        Some("handler") => req
            .backing_store
            .as_deref()
            .is_some_and(|b| b.contains('/')),
        _ => true,
    };
    if let Some(b) = req.backing_store.as_mut().filter(|_| names_a_file) {
        if !b.is_empty() && b != "None" && Path::new(b.as_str()).is_relative() {
            if let Ok(cwd) = std::env::current_dir() {
                *b = cwd.join(&*b).to_string_lossy().into_owned();
            }
        }
    }
    Ok(Command::Send {
        socket,
        control_port,
        request: req,
    })
}

pub const USAGE: &str = "\
rtgtadm: administer a running rtgtd (tgtadm's command line)

Usage: rtgtadm [-C N] --lld iscsi --mode MODE --op OP [OPTIONS]
       rtgtadm [-C N] --batch FILE   (one command line per line of FILE, - for stdin,
                                      over one connection; stops at the first failure)

Targets:
  --mode target --op new --tid N --targetname IQN
  --mode target --op delete --tid N [--force]
        --force closes the sessions logged in to the target
  --mode target --op show [--tid N]
  --mode target --op bind|unbind --tid N --initiator-address ALL|ADDR|CIDR
  --mode target --op bind|unbind --tid N --initiator-name NAME
        a target admits an initiator whose address or name is bound; bind ALL to
        admit everyone
  --lld vhost --mode target --op bind|unbind --tid N --params socket=PATH
        serve the target to a virtual machine over vhost-user-scsi: QEMU's
        -device vhost-user-scsi-pci on a chardev socket at PATH
  --mode target --op update --tid N --name state --value ready|offline
  --mode target --op update --tid N --name ISCSI-KEY --value V
        e.g. MaxRecvDataSegmentLength, FirstBurstLength, ImmediateData, HeaderDigest
  --mode target --op update --tid N --name chap_algorithms --value SHA256,SHA3-256|default
  --mode target --op update --tid N --name max_sessions --value N   (0: no limit)

Logical units:
  --mode logicalunit --op new --tid N --lun L --backing-store PATH
        [--bstype rdwr|io_uring|aio|mem|null|rbd|glfs] [--bsoflags sync,direct] [--blocksize 512|4096]
        [--device-type disk] [--params key=value,...] [--bsopts size=1G (mem, null)]
  --mode logicalunit --op delete --tid N --lun L
  --mode logicalunit --op update --tid N --lun L --params key=value,...
  --mode logicalunit --op new --tid N --lun L --device-type cd [--backing-store IMAGE]
  --mode logicalunit --op update --tid N --lun L --params media=IMAGE|eject=1[,force=1]
        a CD/DVD drive: an ISO is a DVD-ROM, an empty image a blank DVD+R
  --mode logicalunit --op new --tid N --lun L --device-type tape [--bstype ssc]
        [--backing-store CARTRIDGE]  a tape drive, empty without a cartridge (rtgtimg)
  --mode logicalunit --op new --tid N --lun L --device-type changer
  --mode logicalunit --op update --tid N --lun L --params media_home=DIR
  --mode logicalunit --op update --tid N --lun L --params element_type=T,start_address=A,quantity=Q
  --mode logicalunit --op update --tid N --lun L --params element_type=2,address=A,barcode=B,sides=1
  --mode logicalunit --op update --tid N --lun L --params element_type=4,address=A,tid=T,lun=L
        a media changer (tgt's syntax): slots, drives, cartridges from media_home
  --mode logicalunit --op new --tid N --lun L --device-type pt --bstype sg|bsg
        --backing-store /dev/sgN|/dev/bsg/H:C:T:L   a real SCSI device passed through;
        --params reservations=emulate|passthrough,queue_depth=N,timeout=SECONDS
  --mode logicalunit --op new --tid N --lun L [--device-type handler] --bstype handler
        --backing-store NAME [--bsopts hold=S;timeout=S;depth=N;queues=N;uid=N]
        served by a device handler in its own process (rtgt-fileio): a disk whose
        blocks it serves, or with --device-type handler one that answers raw CDBs
  --mode logicalunit --op bind|unbind --tid N --lun L --initiator-name NAME
        LUN masking: a LUN with names bound is seen only by those initiators

Accounts (CHAP):
  --mode account --op new --user U --password P
  --mode account --op delete --user U
  --mode account --op show
  --mode account --op bind|unbind --tid N --user U [--outgoing]
        incoming accounts make CHAP required; --outgoing is the target's own account
        for mutual CHAP; --tid 0 binds to discovery sessions

System and drivers:
  --mode system --op show
  --mode system --op update --name State --value ready|offline
  --mode system --op update --name debug --value on|off
  --mode system --op update --name chap_algorithms --value MD5,SHA1,SHA256,SHA3-256
  --mode system --op update --name max_sessions|auth_fail_limit --value N
  --mode system --op delete [--force]      stop rtgtd
  --mode lld --op show|start|stop
  --mode conn --op show --tid N [--sid S]
  --mode conn --op delete --tid N --sid S --cid C
  --mode portal --op show

Options:
  -L, --lld DRIVER            a transport built into rtgtd: iscsi (--mode sys --op show
                              lists them)
  -m, --mode MODE             target (tgt), logicalunit (lu), system (sys), lld,
                              connection (conn), portal (pt), account
  -o, --op OP                 new, delete, show, bind, unbind, update, start, stop
  -t, --tid N                 target id (not 0; 0 in account bind means discovery)
  -l, --lun L                 logical unit number (LUN 0 is the controller)
  -T, --targetname NAME       iSCSI name (iqn., eui. or naa.; RFC 7143 4.2.7)
  -b, --backing-store PATH    file or block device
  -E, --bstype TYPE           rdwr (default), io_uring (alias aio), mem, null, rbd
                              (-b [pool/]image[@snap]) or glfs (-b volume@host:path);
                              sg, bsg (pt)
  -f, --bsoflags FLAGS        sync, direct, or both (sync,direct or sync:direct)
  -S, --bsopts OPTS           backing-store options: size=N for mem and null
  -y, --blocksize N           logical block size: 512 (default) or 4096
  -Y, --device-type TYPE      disk (default), cd, tape, changer, pt (pass-through) or
                              handler (a SCSI-kind device handler)
  -P, --params K=V,...        logical unit parameters: readonly=0|1, write_cache=on|off,
                              nv_cache=0|1, physical_blocksize=N, vendor_id=, product_id=,
                              scsi_id=, scsi_sn=, removable=, online=, sense_format=, size=
  -I, --initiator-address A   ALL, an IPv4/IPv6 address, or a CIDR prefix
  -Q, --initiator-name NAME   initiator iSCSI name
  -n, --name NAME / -v, --value VALUE    parameter to update
  -u, --user / -p, --password / -O, --outgoing   CHAP accounts
  -s, --sid S / -c, --cid C   session and connection ids
  -F, --force                 see target and system delete
  -C, --control-port N        talk to the rtgtd started with -C N (default 0)
      --control-socket PATH   talk to the rtgtd listening on PATH
  -h, --help / -V, --version

Exit status: 0 on success; otherwise an errno value (22 invalid request, 2 not found,
17 already exists, 16 busy, 95 not supported).
";

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Command, String> {
        let args: Vec<String> = s.split_whitespace().map(str::to_string).collect();
        parse_args(&args)
    }

    fn request(s: &str) -> Request {
        match parse(s) {
            Ok(Command::Send { request, .. }) => request,
            other => panic!("{s}: {other:?}"),
        }
    }

    fn error(s: &str) -> String {
        match parse(s) {
            Err(e) => e,
            Ok(c) => panic!("{s}: expected an error, got {c:?}"),
        }
    }

    #[test]
    fn target_new_from_the_issue() {
        let c = parse(
            "-C 1 --lld iscsi --op new --mode target --tid 1 -T iqn.2026-11.org.example:disk1",
        )
        .unwrap();
        let Command::Send {
            socket,
            control_port,
            request,
        } = c
        else {
            panic!()
        };
        assert_eq!(control_port, 1);
        assert_eq!(socket, default_socket_path(1));
        assert_eq!(
            request,
            Request {
                lld: "iscsi".into(),
                mode: "target".into(),
                op: "new".into(),
                tid: Some(1),
                targetname: Some("iqn.2026-11.org.example:disk1".into()),
                ..Default::default()
            }
        );
    }

    #[test]
    fn logicalunit_new_all_options() {
        let r = request(
            "-C 1 --lld iscsi --op new --mode logicalunit --tid 1 --lun 1 -b /var/lib/disk1.img \
             --bstype rdwr --bsoflags direct,sync --blocksize 4096 --device-type disk \
             --params readonly=1,vendor_id=ACME --bsopts x=y",
        );
        assert_eq!(r.mode, "logicalunit");
        assert_eq!(r.tid, Some(1));
        assert_eq!(r.lun, Some(1));
        assert_eq!(r.backing_store.as_deref(), Some("/var/lib/disk1.img"));
        assert_eq!(r.bstype.as_deref(), Some("rdwr"));
        assert_eq!(r.bsoflags.as_deref(), Some("direct,sync"));
        assert_eq!(r.blocksize, Some(4096));
        assert_eq!(r.device_type.as_deref(), Some("disk"));
        assert_eq!(r.params.as_deref(), Some("readonly=1,vendor_id=ACME"));
        assert_eq!(r.bsopts.as_deref(), Some("x=y"));
        // tgtadm's short letters: -E bstype, -f bsoflags, -y blocksize, -Y device-type.
        let s = request(
            "-L iscsi -o new -m lu -t 2 -l 3 -b /x -E null -f sync -y 512 -Y disk -P a=b -S size=1G",
        );
        assert_eq!(
            (
                s.tid,
                s.lun,
                s.bstype.as_deref(),
                s.bsoflags.as_deref(),
                s.blocksize
            ),
            (Some(2), Some(3), Some("null"), Some("sync"), Some(512))
        );
        assert_eq!(s.device_type.as_deref(), Some("disk"));
        assert_eq!(s.params.as_deref(), Some("a=b"));
        assert_eq!(s.bsopts.as_deref(), Some("size=1G"));
    }

    #[test]
    fn option_forms() {
        // --opt=value, -xvalue, prefixes of long names, last one wins.
        let r =
            request("--lld=iscsi --op=bind --mode=target --tid=1 -t3 --initiator-addr 10.0.0.0/8");
        assert_eq!(r.tid, Some(3));
        assert_eq!(r.initiator_address.as_deref(), Some("10.0.0.0/8"));
        let r =
            request("--lld iscsi --op bind --mode tgt --tid 1 -Q iqn.1993-08.org.debian:01:abc");
        assert_eq!(r.mode, "target");
        assert_eq!(
            r.initiator_name.as_deref(),
            Some("iqn.1993-08.org.debian:01:abc")
        );
        let r = request("--lld iscsi --op delete --mode target --tid 1 --force");
        assert!(r.force);
        let r = request("--lld iscsi --op delete --mode target --tid 1 -F");
        assert!(r.force);
        let r = request("--op show --mode sys");
        assert_eq!(
            (r.mode.as_str(), r.op.as_str(), r.lld.as_str()),
            ("system", "show", "")
        );
        assert!(error("--op show --mode sys --ini ALL").contains("ambiguous"));
        assert!(error("--op show --mode sys --frob").contains("unrecognized option '--frob'"));
        assert!(error("--op show --mode sys -Z").contains("invalid option -- 'Z'"));
        assert!(error("--op show --mode sys extra").contains("unexpected argument 'extra'"));
        assert!(error("--op show --mode sys --tid").contains("requires an argument"));
        assert!(error("--op show --mode sys --force=1").contains("doesn't allow an argument"));
    }

    #[test]
    fn modes_and_ops() {
        for (m, canon) in [
            ("target", "target"),
            ("tgt", "target"),
            ("system", "system"),
            ("sys", "system"),
            ("lld", "lld"),
            ("portal", "portal"),
            ("pt", "portal"),
        ] {
            assert_eq!(request(&format!("--op show --mode {m}")).mode, canon);
        }
        assert_eq!(request("--op show --mode conn --tid 1").mode, "connection");
        assert_eq!(request("--op show --mode account").mode, "account");
        assert_eq!(request("--op start --mode lld --lld iscsi").op, "start");
        assert!(error("--op show --mode disks").contains("unknown mode: disks"));
        assert!(error("--op create --mode target").contains("unknown operation: create"));
        assert!(error("--mode target").contains("--op"));
        assert!(error("--op show").contains("--mode"));
        assert!(error("--op show --mode lu --tid 1 --lun 1")
            .contains("not supported in logicalunit mode"));
        // LUN masking: bind/unbind a LUN to initiator names.
        assert!(error("--op bind --mode lu --tid 1 --lun 1").contains("--initiator-name"));
        let r = request("--op bind --mode lu --tid 1 --lun 2 -Q iqn.2026-01.org.example:i");
        assert_eq!(
            r.initiator_name.as_deref(),
            Some("iqn.2026-01.org.example:i")
        );
        // Accounts: tid 0 is discovery.
        assert_eq!(
            request("--op bind --mode account --tid 0 --user u").tid,
            Some(0)
        );
        assert!(error("--op bind --mode account --user u").contains("--tid"));
    }

    #[test]
    fn required_and_disallowed_options() {
        assert_eq!(
            error("--lld iscsi --op new --mode target -T iqn.2026-11.org.example:x"),
            "--tid (-t) is required for --op new --mode target"
        );
        assert_eq!(
            error("--lld iscsi --op new --mode target --tid 0 -T iqn.2026-11.org.example:x"),
            "--tid must not be 0"
        );
        assert_eq!(
            error("--lld iscsi --op new --mode target --tid 1"),
            "--targetname (-T) is required for --op new --mode target"
        );
        assert!(error("--lld iscsi --op bind --mode target --tid 1")
            .contains("--initiator-address (-I)"));
        assert!(
            error("--lld iscsi --op update --mode target --tid 1 --name state")
                .contains("--value (-v) is required")
        );
        assert_eq!(
            error("--lld iscsi --op new --mode logicalunit --tid 1 -b /x"),
            "--lun (-l) is required for --op new --mode logicalunit"
        );
        assert_eq!(
            error("--lld iscsi --op new --mode logicalunit --tid 1 --lun 1"),
            "--backing-store (-b) is required for --op new --mode logicalunit"
        );
        // null needs no file.
        assert_eq!(
            request("--op new --mode lu --tid 1 --lun 1 -E null").backing_store,
            None
        );
        assert!(error("--op new --mode lu --tid 1 --lun 1 -b /x -Y floppy")
            .contains("unknown device type: floppy"));
        assert!(
            error("--op update --mode lu --tid 1 --lun 1").contains("--params (-P) is required")
        );
        assert_eq!(
            error("--lld iscsi --op show --mode target --name x"),
            "option --name (-n) is not allowed with --op show --mode target"
        );
        assert!(error("--op new --mode target --tid 1 -T iqn.x:y -b /x")
            .contains("--backing-store (-b) is not allowed"));
        assert!(error("--op update --mode sys --name State").contains("--value (-v) is required"));
        assert!(error("--op delete --mode conn --tid 1 --sid 2").contains("--cid (-c) is required"));
        assert!(error("--op new --mode account --user u").contains("--password (-p) is required"));
        assert!(error("--op bind --mode target --tid 1 -H 3").contains("--host and --bus"));
    }

    #[test]
    fn numbers_are_checked() {
        assert!(
            error("--op show --mode target --tid one").contains("--tid (-t): invalid value 'one'")
        );
        assert!(error("--op show --mode target --tid -1").contains("invalid value '-1'"));
        assert!(error("-C 70000 --op show --mode sys").contains("--control-port (-C)"));
        assert!(error("--op new --mode lu --tid 1 --lun x -b /x").contains("--lun (-l)"));
        assert!(
            error("--op new --mode lu --tid 1 --lun 1 -b /x --blocksize big")
                .contains("--blocksize (-y)")
        );
        let r = request("--op delete --mode conn --tid 1 --sid 18446744073709551615 --cid 65535");
        assert_eq!((r.sid, r.cid), (Some(u64::MAX), Some(u16::MAX)));
    }

    #[test]
    fn socket_selection_and_relative_paths() {
        let Command::Send { socket, .. } =
            parse("--control-socket /tmp/x.sock --op show --mode sys").unwrap()
        else {
            panic!()
        };
        assert_eq!(socket, PathBuf::from("/tmp/x.sock"));
        let Command::Send {
            socket,
            control_port,
            ..
        } = parse("--op show --mode sys").unwrap()
        else {
            panic!()
        };
        assert_eq!((socket, control_port), (default_socket_path(0), 0));
        let r = request("--op new --mode lu --tid 1 --lun 1 -b disk.img");
        let want = std::env::current_dir().unwrap().join("disk.img");
        assert_eq!(r.backing_store.as_deref(), Some(want.to_str().unwrap()));
    }

    #[test]
    fn help_and_version() {
        assert_eq!(parse("-h").unwrap(), Command::Help);
        assert_eq!(parse("--help --op show").unwrap(), Command::Help);
        assert_eq!(parse("-V").unwrap(), Command::Version);
        assert!(USAGE.contains("--initiator-address"));
    }

    #[test]
    fn request_json_is_one_line() {
        let r = request("--op new --mode target --tid 1 -T iqn.2026-11.org.example:a");
        let line = serde_json::to_string(&r).unwrap();
        assert!(!line.contains('\n'));
        assert_eq!(serde_json::from_str::<Request>(&line).unwrap(), r);
    }
}
