//! rtgtadm: tgtadm's command line for a running rtgtd. Sends one JSON request line over
//! the daemon's control socket and prints the answer.

mod args;
mod config_cmd;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use args::{parse_args, Command, USAGE};
use rtgt_target::control::{Request, Response};

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
    if config_cmd::is_config(&argv) {
        return config_cmd::run(&argv);
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
            0
        }
        Ok(Command::Version) => {
            println!("rtgtadm {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Ok(Command::Send {
            socket,
            control_port,
            request,
        }) => send(&socket, control_port, &request),
    }
}

fn exit_code(e: &std::io::Error) -> i32 {
    e.raw_os_error()
        .filter(|c| (1..=255).contains(c))
        .unwrap_or(EIO)
}

fn send(socket: &Path, control_port: u16, req: &Request) -> i32 {
    let mut stream = match UnixStream::connect(socket) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "rtgtadm: can't connect to rtgtd at {}: {e} (is rtgtd running with -C {control_port}?)",
                socket.display()
            );
            return exit_code(&e);
        }
    };
    let mut line = match serde_json::to_string(req) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("rtgtadm: can't encode the request: {e}");
            return EIO;
        }
    };
    line.push('\n');
    if let Err(e) = stream.write_all(line.as_bytes()) {
        eprintln!(
            "rtgtadm: can't send the request to rtgtd at {}: {e}",
            socket.display()
        );
        return exit_code(&e);
    }
    let mut reader = BufReader::new(stream);
    let mut answer = String::new();
    match reader.read_line(&mut answer) {
        Ok(0) => {
            eprintln!("rtgtadm: rtgtd closed the control connection without answering");
            return EIO;
        }
        Ok(_) => {}
        Err(e) => {
            eprintln!("rtgtadm: can't read rtgtd's answer: {e}");
            return exit_code(&e);
        }
    }
    let resp: Response = match serde_json::from_str(answer.trim_end()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("rtgtadm: malformed answer from rtgtd ({e}); are rtgtadm and rtgtd the same version?");
            return EIO;
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
