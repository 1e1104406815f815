//! `rtgtadm config dump [FILE]` and `rtgtadm config apply FILE [--dry-run] [--force]`:
//! the running configuration as a TOML file, and a file made the running configuration.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use rtgt_target::control::{default_socket_path, Request, Response};

const EINVAL: i32 = 22;
const EIO: i32 = 5;

pub const USAGE: &str = "\
rtgtadm [-C N | --control-socket PATH] config dump [FILE]
    Write the running configuration as TOML to FILE (atomically; the previous FILE is
    kept as FILE.bak) or to standard output. `rtgtd --config FILE` brings it back.
rtgtadm [-C N | --control-socket PATH] config apply FILE [--dry-run] [--force]
    Make FILE the running configuration: targets, LUNs, ACLs and iSCSI keys are added,
    removed and changed live, LUNs resized. --dry-run prints the plan only. Removing a
    target or LUN of a target with sessions is refused unless --force.
";

/// Whether the command line is a `config` command (the first word that is not an
/// option or an option's value).
pub fn is_config(argv: &[String]) -> bool {
    first_word(argv) == Some("config")
}

struct Args {
    socket: PathBuf,
    sub: String,
    file: Option<PathBuf>,
    dry_run: bool,
    force: bool,
}

/// The options every subcommand takes to reach rtgtd: `-C/--control-port N` (also `-CN`),
/// `--control-socket PATH` (also `=PATH`) and tgtadm's `-L/--lld` (ignored: a configuration
/// covers every transport).
#[derive(Default)]
pub(crate) struct DaemonOpts {
    control_port: u16,
    socket: Option<PathBuf>,
}

impl DaemonOpts {
    /// Takes `a` (and its value from `it`) when it is one of these options.
    pub(crate) fn take(
        &mut self,
        a: &str,
        it: &mut std::slice::Iter<'_, String>,
    ) -> Result<bool, String> {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        let port = |v: &str| v.parse().map_err(|_| format!("bad control port '{v}'"));
        match a {
            "-C" | "--control-port" => self.control_port = port(&value(a)?)?,
            "--control-socket" => self.socket = Some(PathBuf::from(value(a)?)),
            "-L" | "--lld" => {
                value(a)?;
            }
            s if s.starts_with("--control-socket=") => {
                self.socket = Some(PathBuf::from(&s["--control-socket=".len()..]))
            }
            s if s.starts_with("-C") && s.len() > 2 => self.control_port = port(&s[2..])?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The control socket these options name.
    pub(crate) fn socket(self) -> PathBuf {
        self.socket
            .unwrap_or_else(|| default_socket_path(self.control_port))
    }
}

fn parse(argv: &[String]) -> Result<Args, String> {
    let mut daemon = DaemonOpts::default();
    let mut words = Vec::new();
    let (mut dry_run, mut force) = (false, false);
    let mut it = argv.iter();
    while let Some(a) = it.next() {
        if daemon.take(a, &mut it)? {
            continue;
        }
        match a.as_str() {
            "--dry-run" | "-n" => dry_run = true,
            "--force" | "-F" => force = true,
            s if s.starts_with('-') => return Err(format!("unknown option {s} for config")),
            s => words.push(s.to_string()),
        }
    }
    // words[0] is "config".
    let sub = words.get(1).cloned().ok_or("config needs dump or apply")?;
    if words.len() > 3 {
        return Err(format!("config {sub}: unexpected argument {}", words[3]));
    }
    Ok(Args {
        socket: daemon.socket(),
        sub,
        file: words.get(2).map(PathBuf::from),
        dry_run,
        force,
    })
}

pub fn exchange(socket: &Path, req: &Request) -> Result<Response, (i32, String)> {
    let io = |what: &str, e: std::io::Error| {
        (
            e.raw_os_error()
                .filter(|c| (1..=255).contains(c))
                .unwrap_or(EIO),
            format!("{what} rtgtd at {}: {e}", socket.display()),
        )
    };
    let mut stream = UnixStream::connect(socket).map_err(|e| io("can't connect to", e))?;
    let mut line = serde_json::to_string(req).map_err(|e| (EIO, e.to_string()))?;
    line.push('\n');
    stream
        .write_all(line.as_bytes())
        .map_err(|e| io("can't send to", e))?;
    let mut answer = String::new();
    BufReader::new(stream)
        .read_line(&mut answer)
        .map_err(|e| io("can't read from", e))?;
    serde_json::from_str(answer.trim_end())
        .map_err(|e| (EIO, format!("malformed answer from rtgtd ({e})")))
}

pub use rtgt_target::atomic_file::write_atomically;

/// Sends a `--mode config` request and prints its answer; returns the exit status.
pub fn send_and_print(socket: &Path, req: &Request) -> i32 {
    match exchange(socket, req) {
        Err((code, msg)) => {
            eprintln!("rtgtadm: {msg}");
            code
        }
        Ok(resp) if resp.code != 0 => {
            eprintln!("rtgtadm: {}", resp.message.trim_end());
            if (1..=255).contains(&resp.code) {
                resp.code
            } else {
                1
            }
        }
        Ok(resp) => {
            print!("{}", resp.message);
            0
        }
    }
}

/// The first word of the command line that is not an option or an option's value.
pub fn first_word(argv: &[String]) -> Option<&str> {
    let mut i = 0;
    while i < argv.len() {
        let a = &argv[i];
        let valued = [
            "-C",
            "--control-port",
            "--control-socket",
            "-L",
            "--lld",
            "-t",
            "--tid",
            "--write",
        ];
        if valued.contains(&a.as_str()) {
            i += 2;
            continue;
        }
        if a.starts_with('-') {
            i += 1;
            continue;
        }
        return Some(a);
    }
    None
}

pub fn run(argv: &[String]) -> i32 {
    if argv.iter().any(|a| a == "-h" || a == "--help") {
        print!("{USAGE}\n{}", rtgt_target::config::REFERENCE);
        return 0;
    }
    let args = match parse(argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("rtgtadm: {e}");
            eprint!("{USAGE}");
            return EINVAL;
        }
    };
    let mut req = Request {
        mode: "config".into(),
        force: args.force,
        ..Request::default()
    };
    match args.sub.as_str() {
        "dump" => req.op = "show".into(),
        "apply" => {
            let Some(file) = &args.file else {
                eprintln!("rtgtadm: config apply needs a FILE");
                return EINVAL;
            };
            match std::fs::read_to_string(file) {
                Ok(t) => req.value = Some(t),
                Err(e) => {
                    eprintln!("rtgtadm: {}: {e}", file.display());
                    return e.raw_os_error().unwrap_or(EIO);
                }
            }
            req.name = Some(file.display().to_string());
            req.op = if args.dry_run { "stat" } else { "update" }.into();
        }
        other => {
            eprintln!("rtgtadm: unknown config command '{other}' (use dump or apply)");
            return EINVAL;
        }
    }
    let resp = match exchange(&args.socket, &req) {
        Ok(r) => r,
        Err((code, msg)) => {
            eprintln!("rtgtadm: {msg}");
            return code;
        }
    };
    if resp.code != 0 {
        eprintln!("rtgtadm: {}", resp.message.trim_end());
        return if (1..=255).contains(&resp.code) {
            resp.code
        } else {
            1
        };
    }
    match (&args.sub[..], &args.file) {
        ("dump", Some(file)) => {
            if let Err(e) = write_atomically(file, resp.message.as_bytes()) {
                eprintln!("rtgtadm: writing {}: {e}", file.display());
                return e.raw_os_error().unwrap_or(EIO);
            }
        }
        _ => print!("{}", resp.message),
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn recognizes_config_commands() {
        assert!(is_config(&v("config dump")));
        assert!(is_config(&v("-C 3 config apply x.toml --dry-run")));
        assert!(is_config(&v("--control-socket /x config dump")));
        assert!(is_config(&v("-C 1 --lld iscsi config dump")));
        assert!(!is_config(&v("--lld iscsi --op show --mode target")));
        let a = parse(&v("-C3 config apply x.toml -n")).unwrap();
        assert!(a.dry_run && !a.force && a.sub == "apply");
        assert_eq!(a.file, Some(PathBuf::from("x.toml")));
        assert!(a.socket.ends_with("socket.3"));
        assert!(parse(&v("config")).is_err());
        assert!(parse(&v("config dump a b")).is_err());
    }
}
