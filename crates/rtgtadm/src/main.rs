//! rtgtadm: tgtadm's command line for a running rtgtd. Sends one JSON request line over
//! the daemon's control socket and prints the answer; `--batch FILE` sends many over one
//! connection.

mod args;
mod completions;
mod config_cmd;
mod import_tgt;
mod man;
mod report_cmd;
mod suggest;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use args::{parse_args, Command, USAGE};
use rtgt_target::control::{Request, Response};

/// The words rtgtadm takes as subcommands besides tgtadm's options.
pub const SUBCOMMANDS: &[&str] = &[
    "config",
    "import-targets-conf",
    "targets",
    "luns",
    "sessions",
    "connections",
    "stats",
    "session",
];

/// What `rtgtadm` alone prints: a first run should say where to start.
const FIRST_RUN: &str = "\
rtgtadm: no command given. rtgtadm takes tgtadm's command line, for example:
  rtgtadm --lld iscsi --op show --mode target            what the running rtgtd serves
  rtgtadm --lld iscsi --op new --mode target --tid 1 -T iqn.2026-11.org.example:disk1
  rtgtadm --lld iscsi --op new --mode logicalunit --tid 1 --lun 1 -b /var/lib/disk1.img
  rtgtadm --lld iscsi --op bind --mode target --tid 1 -I ALL
  rtgtadm targets                                          the targets as a table
Try `rtgtadm --help' for every mode, operation and option (or man rtgtadm).
";

const EINVAL: i32 = 22;
const EIO: i32 = 5;

fn main() {
    std::process::exit(run());
}

fn run() -> i32 {
    let argv: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    match argv.first().map(String::as_str) {
        None => {
            eprint!("{FIRST_RUN}");
            return EINVAL;
        }
        Some("--completions") if argv.len() == 2 => {
            return match completions::script(&argv[1]) {
                Some(s) => {
                    print!("{s}");
                    0
                }
                None => {
                    eprintln!("rtgtadm: --completions: bash or zsh");
                    EINVAL
                }
            };
        }
        Some("--man") if argv.len() == 1 => {
            print!("{}", man::rtgtadm());
            return 0;
        }
        Some("--man-config") if argv.len() == 1 => {
            print!("{}", man::config());
            return 0;
        }
        _ => {}
    }
    if config_cmd::is_config(&argv) {
        return config_cmd::run(&argv);
    }
    // tgtadm's syntax names an operation and a mode (`--op show --mode session`,
    // abbreviable): then a word like `session` is a value, not a subcommand.
    let tgtadm_syntax = argv
        .iter()
        .any(|a| a == "-o" || a == "-m" || a.starts_with("--o") || a.starts_with("--m"));
    match config_cmd::first_word(&argv) {
        _ if tgtadm_syntax => {}
        Some("import-targets-conf") => return import_tgt::run(&argv),
        Some(w) if report_cmd::WORDS.contains(&w) => return report_cmd::run(&argv),
        _ => {}
    }
    if let Some(code) = batch(&argv) {
        return code;
    }
    match parse_args(&argv) {
        Err(msg) => {
            eprintln!("rtgtadm: {msg}");
            eprintln!("Try `rtgtadm --help' for more information.");
            EINVAL
        }
        Ok(Command::Help) => {
            print!("{USAGE}");
            print!("\n{}", config_cmd::USAGE);
            print!("{}", import_tgt::USAGE);
            print!("{}", report_cmd::USAGE);
            0
        }
        Ok(Command::Version) => {
            println!("rtgtadm {}", env!("CARGO_PKG_VERSION"));
            daemon_version(&argv);
            0
        }
        Ok(Command::Send {
            socket,
            control_port,
            request,
        }) => send(&socket, control_port, &request),
    }
}

/// After rtgtadm's own version, the running rtgtd's: its version and the cargo features
/// it was built with (rtgtadm itself has none: the stores are the daemon's). Asked on the
/// control socket the command line names, as `--mode system --op show` does; says so
/// when no rtgtd answers there.
fn daemon_version(argv: &[String]) {
    let mut args: Vec<String> = argv
        .iter()
        .filter(|a| !matches!(a.as_str(), "-V" | "--version"))
        .cloned()
        .collect();
    args.extend(["--op", "show", "--mode", "system"].map(String::from));
    let Ok(Command::Send {
        socket,
        control_port,
        request,
    }) = parse_args(&args)
    else {
        return;
    };
    let answer = UnixStream::connect(&socket).ok().and_then(|_| {
        let mut conn = None;
        // Errors are reported on stderr by exchange; the version line below says the rest.
        exchange(&mut conn, &socket, control_port, &request).ok()
    });
    let line = answer.as_ref().and_then(|r| {
        let mut lines = r.message.lines();
        lines.find(|l| *l == "Version:")?;
        lines.next().map(str::trim)
    });
    match (answer.is_some(), line) {
        (_, Some(l)) => println!("{l} on {}", socket.display()),
        (true, None) => println!("rtgtd on {}: an older version", socket.display()),
        (false, _) => println!(
            "rtgtd: not running on {} (rtgtd --version shows its features)",
            socket.display()
        ),
    }
}

fn exit_code(e: &std::io::Error) -> i32 {
    e.raw_os_error()
        .filter(|c| (1..=255).contains(c))
        .unwrap_or(EIO)
}

fn send(socket: &Path, control_port: u16, req: &Request) -> i32 {
    let mut conn = None;
    match exchange(&mut conn, socket, control_port, req) {
        Ok(resp) => report(socket, req, &resp),
        Err(code) => code,
    }
}

/// One control connection, kept open across the requests of a batch.
struct Conn {
    socket: PathBuf,
    stream: BufReader<UnixStream>,
}

/// Sends one request line and reads the answer, connecting first if `conn` is not open
/// to `socket`. Errors are reported on stderr and returned as the exit status.
fn exchange(
    conn: &mut Option<Conn>,
    socket: &Path,
    control_port: u16,
    req: &Request,
) -> Result<Response, i32> {
    if conn.as_ref().is_none_or(|c| c.socket != socket) {
        let stream = UnixStream::connect(socket).map_err(|e| {
            eprintln!(
                "rtgtadm: can't connect to rtgtd at {}: {e} (is rtgtd running with -C {control_port}?)",
                socket.display()
            );
            exit_code(&e)
        })?;
        *conn = Some(Conn {
            socket: socket.to_path_buf(),
            stream: BufReader::new(stream),
        });
    }
    let c = conn.as_mut().expect("connected above");
    let mut line = serde_json::to_string(req).map_err(|e| {
        eprintln!("rtgtadm: can't encode the request: {e}");
        EIO
    })?;
    line.push('\n');
    if let Err(e) = c.stream.get_mut().write_all(line.as_bytes()) {
        eprintln!(
            "rtgtadm: can't send the request to rtgtd at {}: {e}",
            socket.display()
        );
        return Err(exit_code(&e));
    }
    let mut answer = String::new();
    match c.stream.read_line(&mut answer) {
        Ok(0) => {
            eprintln!("rtgtadm: rtgtd closed the control connection without answering");
            return Err(EIO);
        }
        Ok(_) => {}
        Err(e) => {
            eprintln!("rtgtadm: can't read rtgtd's answer: {e}");
            return Err(exit_code(&e));
        }
    }
    serde_json::from_str(answer.trim_end()).map_err(|e| {
        eprintln!(
            "rtgtadm: malformed answer from rtgtd ({e}); are rtgtadm and rtgtd the same version?"
        );
        EIO
    })
}

/// Prints an answer as tgtadm would; returns the exit status.
fn report(socket: &Path, req: &Request, resp: &Response) -> i32 {
    if resp.code != 0 {
        eprintln!("rtgtadm: {}", resp.message.trim_end());
        return if (1..=255).contains(&resp.code) {
            resp.code
        } else {
            1
        };
    }
    if !resp.message.is_empty() {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(resp.message.as_bytes());
        if !resp.message.ends_with('\n') {
            let _ = out.write_all(b"\n");
        }
        let _ = out.flush();
    }
    if req.mode == "system" && req.op == "delete" {
        wait_until_gone(socket);
    }
    0
}

/// `rtgtadm [-C N | --control-socket PATH] --batch FILE`: runs one rtgtadm command line
/// per line of FILE (`-` is standard input; blank lines and `#` comments are skipped;
/// words split at white space, '…' and "…" quote) over one control connection, so a
/// thousand LUNs cost a thousand request lines instead of a thousand processes. Stops
/// at the first failing line and exits with its status.
fn batch(argv: &[String]) -> Option<i32> {
    let i = argv.iter().position(|a| a == "--batch")?;
    let Some(path) = argv.get(i + 1) else {
        eprintln!("rtgtadm: --batch needs a file (or - for standard input)");
        return Some(EINVAL);
    };
    let global: Vec<String> = argv[..i].iter().chain(&argv[i + 2..]).cloned().collect();
    let text = if path == "-" {
        let mut t = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut t).map(|_| t)
    } else {
        std::fs::read_to_string(path)
    };
    let text = match text {
        Ok(t) => t,
        Err(e) => {
            eprintln!("rtgtadm: --batch {path}: {e}");
            return Some(exit_code(&e));
        }
    };
    let mut conn = None;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let words = match split_words(line) {
            Ok(w) => w,
            Err(e) => {
                eprintln!("rtgtadm: {path}:{}: {e}", n + 1);
                return Some(EINVAL);
            }
        };
        let words = if words
            .first()
            .is_some_and(|w| w == "rtgtadm" || w == "tgtadm")
        {
            &words[1..]
        } else {
            &words[..]
        };
        let args: Vec<String> = global.iter().chain(words).cloned().collect();
        let code = match parse_args(&args) {
            Err(msg) => {
                eprintln!("rtgtadm: {path}:{}: {msg}", n + 1);
                EINVAL
            }
            Ok(Command::Help) | Ok(Command::Version) => 0,
            Ok(Command::Send {
                socket,
                control_port,
                request,
            }) => match exchange(&mut conn, &socket, control_port, &request) {
                Ok(resp) => report(&socket, &request, &resp),
                Err(code) => code,
            },
        };
        if code != 0 {
            eprintln!("rtgtadm: {path}:{}: stopped here", n + 1);
            return Some(code);
        }
    }
    Some(0)
}

/// Splits a command line at white space; single and double quotes group words.
fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote = None;
    for ch in line.chars() {
        match (quote, ch) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(ch);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err("unterminated quote".into());
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// After `--op delete --mode system`, wait (as tgtadm does) until the daemon has stopped
/// accepting control connections, so a script's next step sees it gone.
fn wait_until_gone(socket: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if UnixStream::connect(socket).is_err() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "rtgtadm: rtgtd accepted the shutdown request but is still listening on {}",
        socket.display()
    );
}

#[cfg(test)]
mod tests {
    use super::split_words;

    #[test]
    fn words_split_at_spaces_and_group_in_quotes() {
        assert_eq!(
            split_words(r#"--op new  -T 'a b' --params "x=1,y=2"c"#).unwrap(),
            ["--op", "new", "-T", "a b", "--params", "x=1,y=2c"]
        );
        assert!(split_words("'open").is_err());
    }
}
