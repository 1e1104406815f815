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

/// Runs bash's completion function for rtgtadm (completions/bash/rtgtadm, as the package
/// installs it) on `words` with the cursor on the last word; returns what it offers.
fn complete(words: &[&str]) -> Vec<String> {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../completions/bash/rtgtadm");
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let prog = format!(
        "source '{}' && COMP_WORDS=({}) && COMP_CWORD={} && COMP_LINE=\"${{COMP_WORDS[*]}}\" && \
         COMP_POINT=${{#COMP_LINE}} && \
         _rtgtadm_with_tids rtgtadm \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\" && \
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display(),
        quoted.join(" "),
        words.len() - 1
    );
    let out = Command::new("bash")
        .args(["--norc", "-c", &prog])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn bash_completion_offers_modes_ops_options_and_tids() {
    let modes = complete(&["rtgtadm", "--lld", "iscsi", "--mode", ""]);
    for m in [
        "target",
        "logicalunit",
        "system",
        "lld",
        "account",
        "connection",
        "portal",
    ] {
        assert!(modes.iter().any(|w| w == m), "{m} not offered: {modes:?}");
    }
    assert_eq!(complete(&["rtgtadm", "--mode", "lo"]), ["logicalunit"]);
    let ops = complete(&["rtgtadm", "--mode", "target", "--op", ""]);
    for o in ["new", "delete", "show", "bind", "unbind", "update"] {
        assert!(ops.iter().any(|w| w == o), "{o} not offered: {ops:?}");
    }
    assert_eq!(
        complete(&["rtgtadm", "--initiator-"]),
        ["--initiator-address", "--initiator-name"]
    );
    assert_eq!(
        complete(&["rtgtadm", "-m", "lu", "--bstype", "io"]),
        ["io_uring"]
    );
    assert_eq!(complete(&["rtgtadm", "import-t"]), ["import-targets-conf"]);

    // --tid: the ids of the targets the daemon on the line's control socket serves.
    let s = Server::start("complete");
    for (tid, name) in [("3", "a"), ("12", "b")] {
        let (code, _, err) = s.run(&format!(
            "--op new --mode target --tid {tid} -T iqn.2026-11.org.example:{name}"
        ));
        assert_eq!(code, 0, "{err}");
    }
    let bin = env!("CARGO_BIN_EXE_rtgtadm");
    let sock = s.socket.to_str().unwrap();
    assert_eq!(
        complete(&[
            bin,
            "--control-socket",
            sock,
            "--op",
            "show",
            "--mode",
            "target",
            "--tid",
            ""
        ]),
        ["3", "12"]
    );
    assert_eq!(
        complete(&[bin, "--control-socket", sock, "-t", "1"]),
        ["12"]
    );
}

#[test]
fn completions_are_up_to_date() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../completions");
    for (shell, file) in [("bash", "bash/rtgtadm"), ("zsh", "zsh/_rtgtadm")] {
        let o = Command::new(env!("CARGO_BIN_EXE_rtgtadm"))
            .args(["--completions", shell])
            .output()
            .unwrap();
        assert!(o.status.success(), "{o:?}");
        let have = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
        assert!(
            have == String::from_utf8_lossy(&o.stdout),
            "completions/{file} is out of date: run `bash scripts/gen-completions.sh` and commit it"
        );
    }
}

/// rtgtadm run without a daemon: (exit status, stdout, stderr).
fn rtgtadm(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rtgtadm"))
        .args(args)
        .env(
            "RTGT_RUN_DIR",
            std::env::temp_dir().join("rtgtadm-cli-no-daemon"),
        )
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn first_run_and_typos_suggest_what_was_meant() {
    // No arguments: where to start, on stderr, and tgtadm's EINVAL.
    let (code, out, err) = rtgtadm(&[]);
    assert_eq!((code, out.as_str()), (22, ""));
    assert!(err.starts_with("rtgtadm: no command given."), "{err}");
    assert!(
        err.contains("rtgtadm --lld iscsi --op show --mode target"),
        "{err}"
    );
    assert!(err.contains("rtgtadm --help"), "{err}");

    for (args, want) in [
        (&["--mode", "targt"][..], "rtgtadm: unknown mode: targt (did you mean target?)\n"),
        (&["--op", "show", "--mode", "logicalunt"], "rtgtadm: unknown mode: logicalunt (did you mean logicalunit?)\n"),
        (&["--op", "shwo", "--mode", "target"], "rtgtadm: unknown operation: shwo (did you mean show?)\n"),
        (&["--op", "show", "--mode", "target", "--tagetname", "x"], "rtgtadm: unrecognized option '--tagetname' (did you mean --targetname?)\n"),
        (&["targest"], "rtgtadm: unexpected argument 'targest' (did you mean targets?)\n"),
        // Nothing close: the list of what is valid instead of a guess.
        (&["--op", "show", "--mode", "frobnicator"], "rtgtadm: unknown mode: frobnicator (use target, logicalunit, lld, system, account or conn)\n"),
    ] {
        let (code, out, err) = rtgtadm(args);
        assert_eq!(code, 22, "{args:?}");
        assert_eq!(out, "", "{args:?}");
        assert!(err.starts_with(want), "{args:?}: {err}");
        assert!(err.ends_with("Try `rtgtadm --help' for more information.\n"), "{err}");
    }
}
