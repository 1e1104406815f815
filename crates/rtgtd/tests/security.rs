//! Authentication and access control end to end: CHAP with libiscsi (MD5, one-way and
//! mutual) and with the raw initiator (SHA-1, SHA-256, SHA3-256), discovery CHAP, the
//! negative cases (wrong secret, wrong user, no CHAP, algorithm not allowed), address and
//! name ACLs with SendTargets, LUN masking, session limits and failed-login rate limiting.

mod common;

use std::time::Duration;

use common::raw::{normal_keys, Chap, RawConn, INITIATOR};
use common::scsi::be32;
use common::{have_tool, run_timeout, tool, Daemon, GIB};

const IQN: &str = "iqn.2026-11.org.rtgt:secure";
const USER: &str = "alice";
const SECRET: &str = "alice-secret-123";
const TUSER: &str = "target-account";
const TSECRET: &str = "target-secret-456";
const AUTH_FAILURE: u16 = 0x0201;

/// A daemon with one disk target that requires CHAP as `alice`.
fn chap_daemon(extra: &[&str]) -> Daemon {
    let d = Daemon::start_args(extra);
    d.add_disk(1, IQN, GIB, &[]);
    d.adm_ok(&[
        "--op",
        "new",
        "--mode",
        "account",
        "--user",
        USER,
        "--password",
        SECRET,
    ]);
    d.adm_ok(&[
        "--op", "bind", "--mode", "account", "--tid", "1", "--user", USER,
    ]);
    d
}

fn bind_outgoing(d: &Daemon, tid: &str) {
    d.adm_ok(&[
        "--op",
        "new",
        "--mode",
        "account",
        "--user",
        TUSER,
        "--password",
        TSECRET,
    ]);
    d.adm_ok(&[
        "--op",
        "bind",
        "--mode",
        "account",
        "--tid",
        tid,
        "--user",
        TUSER,
        "--outgoing",
    ]);
}

fn chap<'a>(user: &'a str, secret: &'a str, algs: &'a str) -> Chap<'a> {
    Chap {
        user,
        secret: secret.as_bytes(),
        algorithms: algs,
        target: None,
    }
}

fn chap_session(port: u16, c: &Chap) -> Result<RawConn, u16> {
    let mut conn = RawConn::connect(port);
    conn.chap_login(&normal_keys(IQN, &[]), c).map(|()| conn)
}

/// `iscsi-inq` on `url`: (success, stderr).
fn inq(url: &str) -> (bool, String) {
    let o = run_timeout(
        std::process::Command::new("iscsi-inq").arg(url),
        Duration::from_secs(60),
    );
    (o.status.success(), common::text(&o.stderr))
}

#[test]
fn libiscsi_md5_chap_one_way_and_mutual() {
    if !have_tool("iscsi-inq") {
        eprintln!("skipped: iscsi-inq (libiscsi-bin) is not installed");
        return;
    }
    let d = chap_daemon(&[]);
    let p = d.port;
    // One-way: the right secret gets in (libiscsi offers CHAP_A=5 only).
    let (ok, err) = inq(&format!("iscsi://{USER}%{SECRET}@127.0.0.1:{p}/{IQN}/1"));
    assert!(ok, "right secret refused: {err}\n{}", d.log());
    // Wrong secret, wrong user, and none at all are refused with 02/01.
    for url in [
        format!("iscsi://{USER}%wrong-secret-000@127.0.0.1:{p}/{IQN}/1"),
        format!("iscsi://mallory%{SECRET}@127.0.0.1:{p}/{IQN}/1"),
        format!("iscsi://127.0.0.1:{p}/{IQN}/1"),
    ] {
        let (ok, err) = inq(&url);
        assert!(!ok, "{url} got in");
        assert!(
            err.to_lowercase().contains("auth") || err.contains("0201") || err.contains("failed"),
            "{url}: {err}"
        );
    }
    let log = d.log();
    assert!(
        log.contains("authentication failed") && log.contains("127.0.0.1"),
        "failed logins are logged with the address: {log}"
    );
    assert!(
        log.contains("wrong CHAP response for user \"alice\""),
        "{log}"
    );
    assert!(log.contains("unknown CHAP user \"mallory\""), "{log}");

    // Mutual: the target proves itself with its outgoing account.
    bind_outgoing(&d, "1");
    let (ok, err) = inq(&format!(
        "iscsi://{USER}%{SECRET}@127.0.0.1:{p}/{IQN}/1?target_user={TUSER}&target_password={TSECRET}"
    ));
    assert!(ok, "mutual CHAP refused: {err}\n{}", d.log());
    // An initiator that expects another target secret refuses the target.
    let (ok, _) = inq(&format!(
        "iscsi://{USER}%{SECRET}@127.0.0.1:{p}/{IQN}/1?target_user={TUSER}&target_password=not-the-target-1"
    ));
    assert!(!ok, "libiscsi accepted a target with the wrong secret");
}

#[test]
fn raw_initiator_chap_every_algorithm_one_way_and_mutual() {
    let d = chap_daemon(&[]);
    bind_outgoing(&d, "1");
    for alg in ["5", "6", "7", "8"] {
        let mut s = chap_session(d.port, &chap(USER, SECRET, alg))
            .unwrap_or_else(|st| panic!("CHAP_A={alg} refused: {st:#06x}\n{}", d.log()));
        s.assert_works();
        s.close();
        let mut c = chap(USER, SECRET, alg);
        c.target = Some((TUSER, TSECRET.as_bytes()));
        let mut s = chap_session(d.port, &c)
            .unwrap_or_else(|st| panic!("mutual CHAP_A={alg} refused: {st:#06x}"));
        s.assert_works();
        s.close();
    }
    // A list: the first the target allows, in the initiator's order.
    d.adm_ok(&[
        "--op",
        "update",
        "--mode",
        "target",
        "--tid",
        "1",
        "--name",
        "chap_algorithms",
        "--value",
        "SHA3-256,SHA256",
    ]);
    let mut s = chap_session(d.port, &chap(USER, SECRET, "5,6,8,7")).expect("list offer");
    s.assert_works();
}

#[test]
fn chap_negative_cases_get_02_01() {
    let d = chap_daemon(&[]);
    // Many failures from one address in a row: keep the rate limit out of this test.
    d.adm_ok(&[
        "--op",
        "update",
        "--mode",
        "sys",
        "--name",
        "auth_fail_limit",
        "--value",
        "0",
    ]);
    let p = d.port;
    let cases: Vec<(&str, Chap)> = vec![
        ("wrong secret", chap(USER, "not-the-secret-1", "7")),
        ("wrong user", chap("mallory", SECRET, "7")),
    ];
    for (what, c) in &cases {
        assert_eq!(chap_session(p, c).err(), Some(AUTH_FAILURE), "{what}");
    }
    // No CHAP when it is required: straight to the operational stage, or AuthMethod=None.
    let mut c = RawConn::connect(p);
    assert_eq!(
        c.try_login(&normal_keys(IQN, &[])),
        Err(AUTH_FAILURE),
        "skipping security"
    );
    let mut c = RawConn::connect(p);
    let r = c.login_step(
        common::raw::login_flags(true, 0, 1),
        common::raw::keys_data(&normal_keys(IQN, &[("AuthMethod", "None")])),
    );
    assert_eq!(r.u16_at(36), AUTH_FAILURE, "AuthMethod=None");
    // MD5 turned off for the whole system: a CHAP_A=5-only initiator is refused.
    d.adm_ok(&[
        "--op",
        "update",
        "--mode",
        "sys",
        "--name",
        "chap_algorithms",
        "--value",
        "SHA256,SHA3-256",
    ]);
    assert_eq!(
        chap_session(p, &chap(USER, SECRET, "5")).err(),
        Some(AUTH_FAILURE),
        "MD5 off"
    );
    assert!(
        chap_session(p, &chap(USER, SECRET, "5,7")).is_ok(),
        "7 after 5"
    );
    // ...and per target, which wins over the system setting.
    d.adm_ok(&[
        "--op",
        "update",
        "--mode",
        "target",
        "--tid",
        "1",
        "--name",
        "chap_algorithms",
        "--value",
        "SHA1",
    ]);
    assert_eq!(
        chap_session(p, &chap(USER, SECRET, "7")).err(),
        Some(AUTH_FAILURE)
    );
    assert!(chap_session(p, &chap(USER, SECRET, "6")).is_ok());
    let log = d.log();
    assert!(log.contains("no algorithm the target allows"), "{log}");
    assert!(
        log.contains(INITIATOR),
        "failures are logged with the initiator name"
    );
    // Mutual CHAP asked of a target without an outgoing account.
    let mut c = chap(USER, SECRET, "6");
    c.target = Some((TUSER, TSECRET.as_bytes()));
    let mut conn = RawConn::connect(p);
    assert_eq!(
        conn.chap_login(&normal_keys(IQN, &[]), &c),
        Err(AUTH_FAILURE)
    );
}

#[test]
fn repeated_failures_from_one_address_are_rate_limited() {
    let d = chap_daemon(&[]);
    d.adm_ok(&[
        "--op",
        "update",
        "--mode",
        "sys",
        "--name",
        "auth_fail_limit",
        "--value",
        "3",
    ]);
    for _ in 0..3 {
        assert_eq!(
            chap_session(d.port, &chap(USER, "not-the-secret-1", "7")).err(),
            Some(AUTH_FAILURE)
        );
    }
    // Locked out: even the right secret fails now, from this address...
    assert_eq!(
        chap_session(d.port, &chap(USER, SECRET, "7")).err(),
        Some(AUTH_FAILURE)
    );
    assert!(d.log().contains("refusing its logins"), "{}", d.log());
    // ...but not from another one.
    let mut c = RawConn::connect_from("127.0.0.2", d.port);
    c.chap_login(&normal_keys(IQN, &[]), &chap(USER, SECRET, "7"))
        .expect("another address is not locked out");
}

#[test]
fn discovery_chap_is_enforced_when_set() {
    let d = chap_daemon(&[]);
    let disc = [("InitiatorName", INITIATOR), ("SessionType", "Discovery")];
    // Not set: discovery needs no CHAP even though the target does.
    let mut c = RawConn::connect(d.port);
    c.try_login(&disc).expect("open discovery");
    assert!(c.send_targets().iter().any(|(_, v)| v == IQN));
    // Set (accounts bound to tid 0): required, separately from the target's.
    d.adm_ok(&[
        "--op",
        "new",
        "--mode",
        "account",
        "--user",
        "disco",
        "--password",
        "discovery-secret",
    ]);
    d.adm_ok(&[
        "--op", "bind", "--mode", "account", "--tid", "0", "--user", "disco",
    ]);
    let shown = d.adm_ok(&["--op", "show", "--mode", "account"]);
    assert!(
        shown.contains("Discovery (tid 0):\n        disco"),
        "{shown}"
    );
    let mut c = RawConn::connect(d.port);
    assert_eq!(c.try_login(&disc), Err(AUTH_FAILURE));
    let mut c = RawConn::connect(d.port);
    assert_eq!(
        c.chap_login(&disc, &chap(USER, SECRET, "7")),
        Err(AUTH_FAILURE),
        "the target's account is not the discovery account"
    );
    let mut c = RawConn::connect(d.port);
    c.chap_login(&disc, &chap("disco", "discovery-secret", "8"))
        .expect("discovery CHAP");
    assert!(c.send_targets().iter().any(|(_, v)| v == IQN));
    if have_tool("iscsi-ls") {
        let o = tool("iscsi-ls", &[&format!("iscsi://127.0.0.1:{}", d.port)]);
        assert!(!o.status.success(), "iscsi-ls without CHAP got in");
        let o = tool(
            "iscsi-ls",
            &[&format!(
                "iscsi://disco%discovery-secret@127.0.0.1:{}",
                d.port
            )],
        );
        assert!(o.status.success(), "{}", common::text(&o.stderr));
        assert!(common::text(&o.stdout).contains(IQN));
    }
}

#[test]
fn accounts_admin_syntax_and_warnings() {
    let d = Daemon::start();
    d.add_disk(1, IQN, GIB, &[]);
    // tgtadm's syntax; a short secret is accepted with a warning.
    let out = d.adm_ok(&[
        "--lld",
        "iscsi",
        "--op",
        "new",
        "--mode",
        "account",
        "--user",
        "bob",
        "--password",
        "short",
    ]);
    assert!(out.contains("warning") && out.contains("12"), "{out}");
    assert!(d.log().contains("warning"));
    let o = d.adm(&[
        "--op",
        "new",
        "--mode",
        "account",
        "--user",
        "bob",
        "--password",
        "x",
    ]);
    assert_eq!(o.status.code(), Some(17), "duplicate account");
    let o = d.adm(&[
        "--op", "bind", "--mode", "account", "--tid", "1", "--user", "nobody",
    ]);
    assert_eq!(o.status.code(), Some(2), "unknown account");
    d.adm_ok(&[
        "--op", "bind", "--mode", "account", "--tid", "1", "--user", "bob",
    ]);
    let shown = d.adm_ok(&["--op", "show", "--mode", "target", "--tid", "1"]);
    assert!(
        shown.contains("Account information:\n        bob\n"),
        "{shown}"
    );
    // Secrets are never shown or logged.
    assert!(!shown.contains("short") && !d.log().contains("short\""));
    d.adm_ok(&[
        "--op", "unbind", "--mode", "account", "--tid", "1", "--user", "bob",
    ]);
    d.adm_ok(&["--op", "delete", "--mode", "account", "--user", "bob"]);
    let shown = d.adm_ok(&["--op", "show", "--mode", "account"]);
    assert_eq!(shown.trim_end(), "Account list:");
    // Without accounts bound the target needs no CHAP again.
    let mut s = RawConn::session(d.port, IQN);
    s.assert_works();
}

#[test]
fn acl_by_address_and_name_and_sendtargets_follows_it() {
    let d = Daemon::start();
    let mk = |tid: &str, name: &str| {
        d.adm_ok(&["--op", "new", "--mode", "target", "--tid", tid, "-T", name]);
    };
    let a = "iqn.2026-11.org.rtgt:only-127-0-0-2";
    let b = "iqn.2026-11.org.rtgt:loopback-net";
    let c = "iqn.2026-11.org.rtgt:by-name";
    let v6 = "iqn.2026-11.org.rtgt:v6-only";
    mk("1", a);
    mk("2", b);
    mk("3", c);
    mk("4", v6);
    d.adm_ok(&[
        "--op",
        "bind",
        "--mode",
        "target",
        "--tid",
        "1",
        "-I",
        "127.0.0.2",
    ]);
    d.adm_ok(&[
        "--op",
        "bind",
        "--mode",
        "target",
        "--tid",
        "2",
        "-I",
        "127.0.0.0/8",
    ]);
    d.adm_ok(&[
        "--op",
        "bind",
        "--mode",
        "target",
        "--tid",
        "3",
        "-Q",
        "iqn.2026-11.org.rtgt:friend",
    ]);
    d.adm_ok(&[
        "--op",
        "bind",
        "--mode",
        "target",
        "--tid",
        "4",
        "-I",
        "2001:db8::/32",
    ]);
    let targets = |local: &str, name: &str| -> Vec<String> {
        let mut c = RawConn::connect_from(local, d.port);
        c.try_login(&[("InitiatorName", name), ("SessionType", "Discovery")])
            .expect("discovery");
        c.send_targets()
            .into_iter()
            .filter(|(k, _)| k == "TargetName")
            .map(|(_, v)| v)
            .collect()
    };
    assert_eq!(targets("127.0.0.1", INITIATOR), vec![b.to_string()]);
    assert_eq!(
        targets("127.0.0.2", INITIATOR),
        vec![a.to_string(), b.to_string()]
    );
    assert_eq!(
        targets("127.0.0.1", "iqn.2026-11.org.rtgt:friend"),
        vec![b.to_string(), c.to_string()]
    );
    let login = |local: &str, target: &str, name: &str| {
        let mut conn = RawConn::connect_from(local, d.port);
        conn.try_login(&normal_keys(target, &[("InitiatorName", name)]))
    };
    assert_eq!(login("127.0.0.1", a, INITIATOR), Err(0x0202));
    assert!(login("127.0.0.2", a, INITIATOR).is_ok());
    assert_eq!(login("127.0.0.1", c, INITIATOR), Err(0x0202));
    assert!(login("127.0.0.1", c, "iqn.2026-11.org.rtgt:friend").is_ok());
    assert_eq!(login("127.0.0.1", v6, INITIATOR), Err(0x0202));
    assert!(d.log().contains("login refused by ACL"));
}

#[test]
fn ipv6_acl() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipped: no IPv6 loopback");
        return;
    }
    let dir = common::TempDir::new("rtgtd");
    let port = common::free_port();
    let v4 = format!("portal=127.0.0.1:{port}");
    let v6 = format!("portal=[::1]:{port}");
    let d = Daemon::spawn(
        dir,
        port,
        &["-f", "-C", "1", "--iscsi", &v4, "--iscsi", &v6],
    );
    d.new_target("1", IQN);
    d.adm_ok(&[
        "--op",
        "bind",
        "--mode",
        "target",
        "--tid",
        "1",
        "-I",
        "fe80::/10",
    ]);
    let login = || {
        let s = std::net::TcpStream::connect(("::1", port)).unwrap();
        let mut c = RawConn::from_stream(s);
        c.try_login(&normal_keys(IQN, &[]))
    };
    assert_eq!(login(), Err(0x0202), "::1 is not in fe80::/10");
    d.adm_ok(&[
        "--op", "bind", "--mode", "target", "--tid", "1", "-I", "::1/128",
    ]);
    assert!(login().is_ok());
}

fn report_luns(c: &mut RawConn) -> Vec<u64> {
    let r = c.exec(0, &[0xa0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0], 256, &[]);
    assert_eq!(r.status, 0, "REPORT LUNS failed: {r:?}");
    let n = be32(&r.data, 0) as usize / 8;
    (0..n)
        .map(|i| u64::from(u16::from_be_bytes([r.data[8 + i * 8], r.data[9 + i * 8]]) & 0x3fff))
        .collect()
}

#[test]
fn masked_lun_is_invisible_and_unusable() {
    let d = Daemon::start();
    d.add_disk(1, IQN, GIB, &[]);
    d.adm_ok(&[
        "--op",
        "new",
        "--mode",
        "logicalunit",
        "--tid",
        "1",
        "--lun",
        "2",
        "--bstype",
        "mem",
        "--bsopts",
        "size=16M",
    ]);
    let friend = "iqn.2026-11.org.rtgt:friend";
    d.adm_ok(&[
        "--op",
        "bind",
        "--mode",
        "logicalunit",
        "--tid",
        "1",
        "--lun",
        "2",
        "-Q",
        friend,
    ]);
    let shown = d.adm_ok(&["--op", "show", "--mode", "target", "--tid", "1"]);
    assert!(shown.contains(&format!("Initiators: {friend}")), "{shown}");

    let mut other = RawConn::session(d.port, IQN);
    assert_eq!(report_luns(&mut other), vec![0, 1]);
    // Every command to the masked LUN is LOGICAL UNIT NOT SUPPORTED (05/25/00).
    let (_, r) = other.exec_after_uas(2, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], 8, &[]);
    assert_eq!(r.status, 2);
    assert_eq!(r.sense_code(), (0x05, 0x25, 0x00));
    let r = other.exec(2, &[0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], 512, &[]);
    assert_eq!(r.sense_code(), (0x05, 0x25, 0x00));
    // INQUIRY says "no LU here" (peripheral qualifier 011b).
    let r = other.exec(2, &[0x12, 0, 0, 0, 36, 0], 36, &[]);
    assert_eq!(r.data[0], 0x7f);

    let mut s = RawConn::session_with(d.port, IQN, &[("InitiatorName", friend)]);
    assert_eq!(report_luns(&mut s), vec![0, 1, 2]);
    let (_, r) = s.exec_after_uas(2, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], 8, &[]);
    assert_eq!(r.status, 0);
    // Unbinding the last name makes the LUN visible to all again.
    d.adm_ok(&[
        "--op",
        "unbind",
        "--mode",
        "logicalunit",
        "--tid",
        "1",
        "--lun",
        "2",
        "-Q",
        friend,
    ]);
    let mut other = RawConn::session(d.port, IQN);
    assert_eq!(report_luns(&mut other), vec![0, 1, 2]);

    if have_tool("iscsi-ls") {
        d.adm_ok(&[
            "--op",
            "bind",
            "--mode",
            "logicalunit",
            "--tid",
            "1",
            "--lun",
            "2",
            "-Q",
            friend,
        ]);
        let o = tool("iscsi-ls", &["-s", &d.portal_url()]);
        let out = common::text(&o.stdout);
        assert!(out.contains("Lun:1") && !out.contains("Lun:2"), "{out}");
    }
}

#[test]
fn session_limits_per_target_and_in_total() {
    let d = Daemon::start();
    d.add_disk(1, IQN, GIB, &[]);
    let other = "iqn.2026-11.org.rtgt:second";
    d.add_disk(2, other, GIB, &[]);
    d.adm_ok(&[
        "--op",
        "update",
        "--mode",
        "target",
        "--tid",
        "1",
        "--name",
        "max_sessions",
        "--value",
        "1",
    ]);
    let mut first = RawConn::session(d.port, IQN);
    let mut c = RawConn::connect(d.port);
    assert_eq!(
        c.try_login(&normal_keys(IQN, &[])),
        Err(0x0302),
        "per-target limit"
    );
    d.adm_ok(&[
        "--op",
        "update",
        "--mode",
        "sys",
        "--name",
        "max_sessions",
        "--value",
        "2",
    ]);
    let mut second = RawConn::session(d.port, other);
    let mut c = RawConn::connect(d.port);
    assert_eq!(
        c.try_login(&normal_keys(other, &[])),
        Err(0x0302),
        "total limit"
    );
    first.assert_works();
    second.assert_works();
    assert!(d.log().contains("session limit reached"));
    // Both limits are reached, yet the initiator may reinstate its own session (same
    // ISID, RFC 7143 §6.3.5): it makes no new one, and recovering from a broken
    // connection must not depend on the old one timing out first.
    let mut again = RawConn::connect(d.port);
    again.isid = first.isid;
    assert_eq!(
        again.try_login(&normal_keys(IQN, &[])),
        Ok(()),
        "reinstatement"
    );
    again.assert_works();
    second.assert_works();
}

fn control_exchange(path: &std::path::Path, bytes: &[u8]) -> String {
    use std::io::{BufRead, BufReader, Write};
    let mut s = std::os::unix::net::UnixStream::connect(path).expect("control socket");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(bytes).unwrap();
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).unwrap();
    line
}

#[test]
fn control_socket_permissions_and_malformed_requests() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let d = Daemon::start();
    let sock = d.run_dir.join("socket.1");
    let meta = std::fs::metadata(&sock).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "socket mode");
    for (what, bytes) in [
        ("not JSON", b"hello\n".to_vec()),
        ("wrong types", b"{\"mode\":5,\"op\":[]}\n".to_vec()),
        ("not UTF-8", b"{\"mode\":\"\xff\xfe\"}\n".to_vec()),
        ("empty object", b"{}\n".to_vec()),
        (
            "huge",
            [vec![b'x'; (1 << 20) + 10], b"\n".to_vec()].concat(),
        ),
    ] {
        let line = control_exchange(&sock, &bytes);
        let v: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("{what}: not a JSON answer ({e}): {line:?}"));
        assert_ne!(v["code"], 0, "{what}: {line}");
        assert!(!v["message"].as_str().unwrap().is_empty(), "{what}");
    }
    // Still serving.
    d.adm_ok(&["--op", "show", "--mode", "sys"]);

    // --control-group: group-accessible socket owned by that group.
    let dir = common::TempDir::new("rtgtd");
    let port = common::free_port();
    let portal = format!("portal=127.0.0.1:{port}");
    let d2 = Daemon::spawn(
        dir,
        port,
        &["-f", "-C", "1", "--iscsi", &portal, "--control-group", "0"],
    );
    let meta = std::fs::metadata(d2.run_dir.join("socket.1")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert_eq!(meta.gid(), 0);
    d2.adm_ok(&["--op", "show", "--mode", "sys"]);
    let o = d2.adm(&["--op", "show", "--mode", "sys"]);
    assert!(o.status.success());
    let dir = common::TempDir::new("rtgtd");
    let portal = format!("portal=127.0.0.1:{}", common::free_port());
    let o = run_timeout(
        std::process::Command::new(common::rtgtd_bin())
            .args([
                "-f",
                "--iscsi",
                &portal,
                "--control-group",
                "no-such-group-rtgt",
            ])
            .env("RTGT_RUN_DIR", dir.join("run")),
        Duration::from_secs(30),
    );
    assert!(!o.status.success());
    assert!(common::text(&o.stderr).contains("no such group"), "{o:?}");
}

/// The NAA designator of `lun` (VPD page 83h, designator type 3, 8 bytes).
fn naa_of(c: &mut RawConn, lun: u8) -> [u8; 8] {
    let (_, r) = c.exec_after_uas(lun, &[0x12, 1, 0x83, 0, 255, 0], 255, &[]);
    assert_eq!(r.status, 0);
    let d = &r.data;
    let mut at = 4;
    while at + 4 <= d.len() {
        let len = usize::from(d[at + 3]);
        if d[at + 1] & 0x0f == 3 && len == 8 && (d[at + 1] >> 4) & 3 == 0 {
            return d[at + 4..at + 12].try_into().unwrap();
        }
        at += 4 + len;
    }
    panic!("no NAA designator in {d:02x?}");
}

/// EXTENDED COPY (LID1) of `blocks` 512-byte blocks from LBA 0 of `src` to LBA 0 of `dst`.
fn xcopy(c: &mut RawConn, lun: u8, src: [u8; 8], dst: [u8; 8], blocks: u16) -> u8 {
    let cscd = |naa: [u8; 8]| {
        let mut d = vec![0u8; 32];
        d[0] = 0xe4;
        d[4] = 1; // binary
        d[5] = 3; // NAA, associated with the LU
        d[7] = 8;
        d[8..16].copy_from_slice(&naa);
        d[29..32].copy_from_slice(&512u32.to_be_bytes()[1..]);
        d
    };
    let mut seg = vec![0u8; 28];
    seg[0] = 0x02; // block -> block
    seg[2..4].copy_from_slice(&24u16.to_be_bytes());
    seg[4..6].copy_from_slice(&0u16.to_be_bytes());
    seg[6..8].copy_from_slice(&1u16.to_be_bytes());
    seg[10..12].copy_from_slice(&blocks.to_be_bytes());
    let mut p = vec![0u8; 16];
    p[1] = 0x18; // LIST ID USAGE 11b: no list identifier
    p[2..4].copy_from_slice(&64u16.to_be_bytes());
    p[8..12].copy_from_slice(&28u32.to_be_bytes());
    p.extend(cscd(src));
    p.extend(cscd(dst));
    p.extend(seg);
    let len = (p.len() as u32).to_be_bytes();
    let cdb = [
        0x83, 0, 0, 0, 0, 0, 0, 0, 0, 0, len[0], len[1], len[2], len[3], 0, 0,
    ];
    let (_, r) = c.exec_after_uas(lun, &cdb, 0, &p);
    r.status
}

#[test]
fn extended_copy_is_no_way_around_acls_or_masking() {
    let d = Daemon::start();
    let open = "iqn.2026-11.org.rtgt:open";
    let closed = "iqn.2026-11.org.rtgt:closed";
    d.add_disk(1, open, GIB, &[]);
    d.add_disk(2, closed, GIB, &[]);
    // Target 2 admits only the "owner" initiator.
    d.adm_ok(&[
        "--op", "unbind", "--mode", "target", "--tid", "2", "-I", "ALL",
    ]);
    let owner = "iqn.2026-11.org.rtgt:owner";
    d.adm_ok(&[
        "--op", "bind", "--mode", "target", "--tid", "2", "-Q", owner,
    ]);
    let mut o = RawConn::session_with(d.port, closed, &[("InitiatorName", owner)]);
    let secret_naa = naa_of(&mut o, 1);
    let secret = common::prng_bytes(42, 512);
    let (_, r) = o.exec_after_uas(1, &common::scsi::write10(0, 1), 0, &secret);
    assert_eq!(r.status, 0);

    // Another initiator, logged in to target 1 only, asks target 1's copy manager to
    // read target 2's LU into its own: refused, and nothing is copied.
    let mut x = RawConn::session(d.port, open);
    let mine = naa_of(&mut x, 1);
    assert_ne!(
        xcopy(&mut x, 1, secret_naa, mine, 1),
        0,
        "copy from another target's LU"
    );
    let (_, r) = x.exec_after_uas(1, &common::scsi::read10(0, 1), 512, &[]);
    assert_ne!(r.data, secret, "data leaked through EXTENDED COPY");
    // Nor may it overwrite it.
    assert_ne!(
        xcopy(&mut x, 1, mine, secret_naa, 1),
        0,
        "copy onto another target's LU"
    );
    let (_, r) = o.exec_after_uas(1, &common::scsi::read10(0, 1), 512, &[]);
    assert_eq!(r.data, secret);

    // The owner, logged in to both targets, may copy between them.
    d.adm_ok(&[
        "--op", "bind", "--mode", "target", "--tid", "1", "-Q", owner,
    ]);
    let mut o1 = RawConn::session_with(d.port, open, &[("InitiatorName", owner)]);
    assert_eq!(
        xcopy(&mut o1, 1, secret_naa, mine, 1),
        0,
        "copy across targets the initiator may use"
    );
    let (_, r) = o1.exec_after_uas(1, &common::scsi::read10(0, 1), 512, &[]);
    assert_eq!(r.data, secret);

    // A LUN masked from an initiator is out of its copies' reach too, in its own target.
    d.adm_ok(&[
        "--op",
        "new",
        "--mode",
        "logicalunit",
        "--tid",
        "1",
        "--lun",
        "2",
        "--bstype",
        "mem",
        "--bsopts",
        "size=16M",
    ]);
    let hidden = naa_of(&mut o1, 2);
    d.adm_ok(&[
        "--op",
        "bind",
        "--mode",
        "logicalunit",
        "--tid",
        "1",
        "--lun",
        "2",
        "-Q",
        owner,
    ]);
    let mut x = RawConn::session(d.port, open);
    assert_ne!(
        xcopy(&mut x, 1, mine, hidden, 1),
        0,
        "copy onto a masked LU"
    );
}
