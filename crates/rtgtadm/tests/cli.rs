//! rtgtadm end to end against a control socket served by the real registry
//! (`rtgt_target::handle_line`), as rtgtd serves it.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use rtgt_target::Registry;

struct Server {
    dir: PathBuf,
    socket: PathBuf,
    registry: Arc<Registry>,
}

impl Server {
    fn start(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("rtgtadm-cli-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("socket.0");
        let listener = UnixListener::bind(&socket).unwrap();
        let registry = Registry::new();
        let reg = registry.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                let reg = reg.clone();
                std::thread::spawn(move || {
                    let mut w = stream.try_clone().unwrap();
                    let mut r = BufReader::new(stream);
                    let mut line = String::new();
                    while r.read_line(&mut line).unwrap_or(0) > 0 {
                        let resp = rtgt_target::handle_line(&reg, &line);
                        if w.write_all(resp.as_bytes()).is_err() || w.write_all(b"\n").is_err() {
                            break;
                        }
                        line.clear();
                    }
                });
            }
        });
        Self {
            dir,
            socket,
            registry,
        }
    }

    fn run(&self, args: &str) -> (i32, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_rtgtadm"))
            .arg("--control-socket")
            .arg(&self.socket)
            .args(args.split_whitespace())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn configure_and_show() {
    let s = Server::start("show");
    let img = s.dir.join("disk1.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();

    let (code, out, err) =
        s.run("--lld iscsi --op new --mode target --tid 1 -T iqn.2026-11.org.example:disk1");
    assert_eq!((code, out.as_str(), err.as_str()), (0, "", ""));
    let (code, _, err) = s.run(&format!(
        "--lld iscsi --op new --mode logicalunit --tid 1 --lun 1 -b {} --bsoflags sync",
        img.display()
    ));
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        s.run("--lld iscsi --op bind --mode target --tid 1 -I ALL")
            .0,
        0
    );

    let (code, out, _) = s.run("--lld iscsi --op show --mode target");
    assert_eq!(code, 0);
    assert!(
        out.starts_with("Target 1: iqn.2026-11.org.example:disk1\n"),
        "{out}"
    );
    assert!(
        out.contains("            Size: 1074 MB, Block size: 512\n"),
        "{out}"
    );
    assert!(out.contains(&format!(
        "            Backing store path: {}\n",
        img.display()
    )));
    assert!(
        out.ends_with("    ACL information:\n        ALL\n"),
        "{out}"
    );
    assert!(s
        .registry
        .target_by_name("iqn.2026-11.org.example:disk1")
        .is_some());

    // Errors: message on stderr prefixed with rtgtadm:, errno exit status, nothing on stdout.
    let (code, out, err) =
        s.run("--lld iscsi --op new --mode target --tid 1 -T iqn.2026-11.org.example:disk2");
    assert_eq!((code, out.as_str()), (17, ""));
    assert_eq!(
        err,
        "rtgtadm: this target already exists: tid 1 is iqn.2026-11.org.example:disk1\n"
    );
    let (code, _, err) = s.run(&format!(
        "--lld iscsi --op new --mode logicalunit --tid 1 --lun 1 -b {}",
        img.display()
    ));
    assert_eq!(code, 17);
    assert!(
        err.contains("this logical unit number already exists"),
        "{err}"
    );
    let (code, _, err) =
        s.run("--lld iscsi --op new --mode logicalunit --tid 1 --lun 2 -b /no/such/disk.img");
    assert_eq!(code, 2);
    assert_eq!(
        err,
        "rtgtadm: backing file /no/such/disk.img: No such file or directory\n"
    );
    let (code, _, err) = s.run(&format!(
        "--lld iscsi --op new --mode logicalunit --tid 1 --lun 2 -b {} --blocksize 1000",
        img.display()
    ));
    assert_eq!(code, 22);
    assert_eq!(err, "rtgtadm: invalid block size 1000: use 512 or 4096\n");
    let (code, _, err) = s.run("--lld iscsi --op delete --mode target --tid 9");
    assert_eq!(
        (code, err.as_str()),
        (2, "rtgtadm: can't find the target (tid 9)\n")
    );

    // Local validation never reaches the daemon.
    let (code, _, err) = s.run("--lld iscsi --op new --mode target -T iqn.2026-11.org.example:x");
    assert_eq!(code, 22);
    assert!(
        err.starts_with("rtgtadm: --tid (-t) is required for --op new --mode target\n"),
        "{err}"
    );

    let (code, out, _) = s.run("--op show --mode sys");
    assert_eq!(code, 0);
    assert!(out.starts_with("System:\n    State: ready\n"));
}

#[test]
fn system_delete_reaches_the_hook() {
    let s = Server::start("delete");
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    s.registry.set_shutdown_hook(Box::new(move || {
        let _ = tx.lock().unwrap().send(());
    }));
    assert_eq!(
        s.run("--lld iscsi --op new --mode target --tid 1 -T iqn.2026-11.org.example:a")
            .0,
        0
    );
    let (code, _, err) = s.run("--op delete --mode system");
    assert_eq!(code, 16, "{err}");
    assert!(err.contains("still has targets"));
    // The test server keeps listening, so rtgtadm's wait for the socket to vanish times
    // out after a while; remove the socket once the hook has fired to end it early.
    let sock = s.socket.clone();
    let waiter = std::thread::spawn(move || {
        rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
        std::fs::remove_file(sock).unwrap();
    });
    let (code, _, err) = s.run("--op delete --mode system --force");
    assert_eq!(code, 0, "{err}");
    waiter.join().unwrap();
    assert!(s.registry.shutdown_requested());
}

#[test]
fn daemon_not_running() {
    let dir = std::env::temp_dir();
    let sock = dir.join(format!("rtgtadm-none-{}.sock", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_rtgtadm"))
        .args(["-C", "5", "--control-socket"])
        .arg(&sock)
        .args(["--op", "show", "--mode", "target"])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!(
            "rtgtadm: can't connect to rtgtd at {}: ",
            sock.display()
        )),
        "{err}"
    );
    assert!(
        err.trim_end().ends_with("(is rtgtd running with -C 5?)"),
        "{err}"
    );
}

#[test]
fn help_and_usage_errors() {
    let out = Command::new(env!("CARGO_BIN_EXE_rtgtadm"))
        .arg("--help")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("--mode logicalunit --op new"));
    let out = Command::new(env!("CARGO_BIN_EXE_rtgtadm"))
        .args(["--op", "show", "--mode", "nonsense"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(22));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("rtgtadm: unknown mode: nonsense"));
}
