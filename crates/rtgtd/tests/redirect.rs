//! Target redirection (RFC 7143 §11.13.5, status class 1): a target set with tgt's
//! `RedirectAddress` / `RedirectPort` / `RedirectReason` answers a login with 01/01
//! (temporarily) or 01/02 (permanently) and TargetAddress; libiscsi follows it to the
//! daemon that serves the target.

mod common;

use common::raw::{keys_data, login_flags, normal_keys, parse_keys, RawConn};
use common::{tool_ok, Daemon, GIB};

const IQN: &str = "iqn.2026-11.org.example:moved";

/// The Login Response to a first Login Request for `IQN` on `port`.
fn first_login_response(port: u16) -> (u8, u8, Vec<(String, String)>) {
    let mut c = RawConn::connect(port);
    let keys = normal_keys(IQN, &[("AuthMethod", "None")]);
    let r = c.login_step(login_flags(true, 0, 1), keys_data(&keys));
    (r.bhs[36], r.bhs[37], parse_keys(&r.data))
}

#[test]
fn logins_are_redirected_and_libiscsi_follows() {
    // B serves the target; A sends its initiators to B.
    let b = Daemon::start();
    b.add_disk(1, IQN, GIB, &["--params", "vendor_id=MOVED"]);
    let a = Daemon::start();
    a.new_target("1", IQN);
    a.bind_all("1");
    let set = |name: &str, value: &str| {
        a.adm_ok(&[
            "--op", "update", "--mode", "target", "--tid", "1", "--name", name, "--value", value,
        ]);
    };
    set("RedirectAddress", "127.0.0.1");
    set("RedirectPort", &b.port.to_string());
    let want = format!("127.0.0.1:{}", b.port);

    // Temporary by default: 01/01 and TargetAddress.
    let (class, detail, keys) = first_login_response(a.port);
    assert_eq!((class, detail), (1, 1), "{keys:?}");
    assert_eq!(keys, vec![("TargetAddress".to_string(), want.clone())]);
    // Permanent: 01/02.
    set("RedirectReason", "Permanent");
    let (class, detail, keys) = first_login_response(a.port);
    assert_eq!((class, detail), (1, 2), "{keys:?}");
    assert_eq!(keys[0].1, want);
    // A bad reason is refused.
    let o = a.adm(&[
        "--op",
        "update",
        "--mode",
        "target",
        "--tid",
        "1",
        "--name",
        "RedirectReason",
        "--value",
        "Sideways",
    ]);
    assert!(!o.status.success());
    set("RedirectReason", "Temporary");

    // libiscsi logs in to A, is sent to B and gets B's LUN.
    if common::have_tool("iscsi-inq") {
        let inq = tool_ok("iscsi-inq", &[&a.url(IQN, 1)]);
        assert!(inq.contains("MOVED"), "{inq}");
    }
    // The redirect goes into a dump, so it survives a restart.
    let dump = a.adm_ok(&["config", "dump"]);
    assert!(dump.contains("RedirectAddress = \"127.0.0.1\""), "{dump}");
    // `None` turns it off: logins to A go through again (here: to an empty target).
    set("RedirectAddress", "None");
    let (class, _, _) = first_login_response(a.port);
    assert_eq!(class, 0);
}
