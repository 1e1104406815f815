//! Bad input on the command lines: rtgtd and rtgtadm say what is wrong in one clear message
//! and exit non-zero; never a silent success.

mod common;

use std::net::TcpListener;
use std::process::{Command, Output};
use std::time::Duration;

use common::{rtgtadm_bin, rtgtd_bin, run_timeout, text, Daemon, TempDir, GIB};

const IQN: &str = "iqn.2026-11.org.example:disk1";

/// Runs rtgtd in the foreground with a private run dir; it must exit by itself.
fn rtgtd_exits(dir: &TempDir, args: &[&str]) -> Output {
    run_timeout(
        Command::new(rtgtd_bin())
            .args(args)
            .env("RTGT_RUN_DIR", dir.join("run")),
        Duration::from_secs(30),
    )
}

fn assert_failed_with(o: &Output, what: &str, needles: &[&str]) {
    let err = text(&o.stderr);
    let all = format!("{}{}", err, text(&o.stdout)).to_lowercase();
    assert!(
        !o.status.success(),
        "{what}: expected a non-zero exit, got {}\nstdout:\n{}\nstderr:\n{err}",
        o.status,
        text(&o.stdout)
    );
    assert!(!err.trim().is_empty(), "{what}: no error message on stderr");
    assert!(
        needles.iter().any(|n| all.contains(&n.to_lowercase())),
        "{what}: the message should mention one of {needles:?}; got:\n{err}"
    );
}

/// A daemon error is one line on stderr.
fn assert_one_line(o: &Output, what: &str) {
    let err = text(&o.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "{what}: expected a one-line error, got:\n{err}"
    );
}

#[test]
fn rtgtd_port_in_use() {
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let dir = TempDir::new("inuse");
    let portal = format!("portal=127.0.0.1:{port}");
    let o = rtgtd_exits(&dir, &["-f", "-C", "1", "--iscsi", &portal]);
    assert_failed_with(&o, "port in use", &["in use", &port.to_string()]);
    assert_one_line(&o, "port in use");
    drop(held);
}

#[test]
fn rtgtd_bad_portal() {
    let dir = TempDir::new("badportal");
    let o = rtgtd_exits(&dir, &["-f", "-C", "1", "--iscsi", "portal=notanip:1"]);
    assert_failed_with(&o, "bad portal", &["notanip", "portal"]);
    assert_one_line(&o, "bad portal");
}

#[test]
fn rtgtd_unwritable_control_socket() {
    let dir = TempDir::new("badsock");
    // A path below a regular file can't be created, even by root.
    let file = dir.join("not-a-dir");
    std::fs::write(&file, b"").unwrap();
    let sock = file.join("socket");
    let port = common::free_port();
    let portal = format!("portal=127.0.0.1:{port}");
    let o = rtgtd_exits(
        &dir,
        &[
            "-f",
            "--iscsi",
            &portal,
            "--control-socket",
            sock.to_str().unwrap(),
        ],
    );
    assert_failed_with(
        &o,
        "unwritable control socket",
        &[sock.to_str().unwrap(), "socket"],
    );
    assert_one_line(&o, "unwritable control socket");
}

#[test]
fn rtgtadm_errors_name_the_problem() {
    let d = Daemon::start();
    let img = d.add_disk(1, IQN, GIB, &[]);
    let img_s = img.to_str().unwrap();

    // A transport that is not built into this rtgtd (the last --lld counts).
    let o = d.adm(&["--lld", "iser", "--op", "show", "--mode", "target"]);
    assert_failed_with(&o, "--lld iser", &["lld iser: not built into this rtgtd"]);
    let sys = d.adm_ok(&["--op", "show", "--mode", "sys"]);
    assert!(sys.contains("LLDs:\n    iscsi: ready\n"), "{sys}");

    // Unknown target.
    let o = d.adm(&[
        "--op",
        "new",
        "--mode",
        "logicalunit",
        "--tid",
        "9",
        "--lun",
        "1",
        "-b",
        img_s,
    ]);
    assert_failed_with(&o, "LUN on an unknown target", &["target"]);

    // Existing target id.
    let o = d.adm(&[
        "--op",
        "new",
        "--mode",
        "target",
        "--tid",
        "1",
        "-T",
        "iqn.2026-11.org.example:other",
    ]);
    assert_failed_with(&o, "duplicate target", &["exist"]);

    // Existing LUN.
    let o = d.adm(&[
        "--op",
        "new",
        "--mode",
        "logicalunit",
        "--tid",
        "1",
        "--lun",
        "1",
        "-b",
        img_s,
    ]);
    assert_failed_with(&o, "duplicate LUN", &["exist"]);

    // Missing backing file.
    let missing = d.dir.join("no-such-dir/missing.img");
    let missing_s = missing.to_str().unwrap();
    let o = d.adm(&[
        "--op",
        "new",
        "--mode",
        "logicalunit",
        "--tid",
        "1",
        "--lun",
        "2",
        "-b",
        missing_s,
    ]);
    assert_failed_with(
        &o,
        "missing backing file",
        &[missing_s, "no such file", "not found"],
    );

    // Bad block size.
    let o = d.adm(&[
        "--op",
        "new",
        "--mode",
        "logicalunit",
        "--tid",
        "1",
        "--lun",
        "3",
        "-b",
        img_s,
        "--blocksize",
        "1000",
    ]);
    assert_failed_with(&o, "bad block size", &["1000", "block size", "blocksize"]);

    // Nothing above changed the configuration.
    let show = d.adm_ok(&["--op", "show", "--mode", "target"]);
    assert!(
        !show.contains("other"),
        "a failed target creation left a target:\n{show}"
    );
    assert!(
        !show.contains("missing.img"),
        "a failed LUN creation left a LUN:\n{show}"
    );
}

#[test]
fn rtgtadm_without_a_daemon() {
    let dir = TempDir::new("nodaemon");
    let run = dir.join("run");
    std::fs::create_dir_all(&run).unwrap();
    let o = run_timeout(
        Command::new(rtgtadm_bin())
            .args([
                "-C", "7", "--lld", "iscsi", "--op", "show", "--mode", "target",
            ])
            .env("RTGT_RUN_DIR", &run),
        Duration::from_secs(30),
    );
    assert_failed_with(
        &o,
        "rtgtadm with no daemon",
        &["rtgtd", "socket", "connect", "running"],
    );
}
