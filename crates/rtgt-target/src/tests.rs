//! Registry tests: every operation and error path through `Registry::handle`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::control::{Request, Response};
use crate::*;

const T1: &str = "iqn.2026-11.org.example:disk1";

struct TempFile(PathBuf);

impl TempFile {
    fn new(size: u64) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "rtgt-target-test-{}-{}.img",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let f = std::fs::File::create(&p).unwrap();
        f.set_len(size).unwrap();
        Self(p)
    }
    fn path(&self) -> String {
        self.0.to_string_lossy().into_owned()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn req(mode: &str, op: &str) -> Request {
    Request {
        lld: "iscsi".into(),
        mode: mode.into(),
        op: op.into(),
        ..Default::default()
    }
}

fn new_target(reg: &Registry, tid: u32, name: &str) -> Response {
    reg.handle(Request {
        tid: Some(tid),
        targetname: Some(name.into()),
        ..req("target", "new")
    })
}

fn new_lu(reg: &Registry, tid: u32, lun: u64, path: &str) -> Request {
    let _ = reg;
    Request {
        tid: Some(tid),
        lun: Some(lun),
        backing_store: Some(path.into()),
        ..req("logicalunit", "new")
    }
}

fn ok(r: Response) -> String {
    assert_eq!(r.code, 0, "expected success, got {r:?}");
    r.message
}

fn err(r: Response, code: i32, needle: &str) {
    assert_eq!(r.code, code, "{r:?}");
    assert!(
        r.message.contains(needle),
        "{:?} should contain {needle:?}",
        r.message
    );
}

fn bind(reg: &Registry, tid: u32, addr: Option<&str>, name: Option<&str>) -> Response {
    reg.handle(Request {
        tid: Some(tid),
        initiator_address: addr.map(Into::into),
        initiator_name: name.map(Into::into),
        ..req("target", "bind")
    })
}

fn session(sid: u64, closed: &Arc<AtomicUsize>) -> SessionInfo {
    let c = closed.clone();
    SessionInfo {
        sid,
        initiator_name: "iqn.1993-08.org.debian:01:abc".into(),
        initiator_alias: Some("host1".into()),
        isid: [0x80, 0, 0, 0, 0, 1],
        tsih: sid as u16,
        connections: vec![ConnInfo {
            cid: 0,
            peer: "192.168.7.9:51000".parse().unwrap(),
            local: "192.168.7.1:3260".parse().unwrap(),
        }],
        transport: "iscsi",
        close: Arc::new(move || {
            c.fetch_add(1, Ordering::SeqCst);
        }),
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn target_new_and_errors() {
    let reg = Registry::new();
    ok(new_target(&reg, 1, T1));
    assert_eq!(reg.target_by_name(T1).unwrap().tid, 1);
    assert_eq!(reg.target_by_tid(1).unwrap().name, T1);
    err(
        new_target(&reg, 1, "iqn.2026-11.org.example:other"),
        errno::EEXIST,
        "already exists: tid 1",
    );
    err(new_target(&reg, 2, T1), errno::EEXIST, "is tid 1");
    err(
        new_target(&reg, 0, "iqn.2026-11.org.example:zero"),
        errno::EINVAL,
        "--tid must not be 0",
    );
    err(
        new_target(&reg, 3, "badname"),
        errno::EINVAL,
        "invalid iSCSI name 'badname'",
    );
    err(
        reg.handle(Request {
            tid: Some(3),
            ..req("target", "new")
        }),
        errno::EINVAL,
        "--targetname",
    );
    err(
        reg.handle(Request {
            targetname: Some(T1.into()),
            ..req("target", "new")
        }),
        errno::EINVAL,
        "--tid is required",
    );
    ok(new_target(&reg, 10, "eui.02004567A425678D"));
    ok(new_target(&reg, 5, "iqn.2026-11.org.example:disk5"));
    let tids: Vec<u32> = reg.targets().iter().map(|t| t.tid).collect();
    assert_eq!(tids, vec![1, 5, 10], "targets are kept in tid order");
}

#[test]
fn mode_op_and_driver_errors() {
    let reg = Registry::new();
    err(
        reg.handle(req("frob", "show")),
        errno::EINVAL,
        "unknown mode 'frob'",
    );
    err(
        reg.handle(req("target", "frob")),
        errno::EINVAL,
        "unknown operation 'frob'",
    );
    err(
        reg.handle(req("", "show")),
        errno::EINVAL,
        "specify the mode",
    );
    err(
        reg.handle(req("target", "")),
        errno::EINVAL,
        "specify the operation",
    );
    err(
        reg.handle(Request {
            lld: "iser".into(),
            ..req("target", "show")
        }),
        errno::ENOENT,
        "lld iser: not built into this rtgtd (built in: iscsi)",
    );
    err(
        reg.handle(Request {
            lld: "fcoe".into(),
            ..req("target", "show")
        }),
        errno::ENOENT,
        "can't find the driver 'fcoe' (built into this rtgtd: iscsi)",
    );
    err(
        reg.handle(req("account", "update")),
        errno::EOPNOTSUPP,
        "not supported in account mode",
    );
    err(
        reg.handle(req("target", "start")),
        errno::EOPNOTSUPP,
        "start",
    );
    // Aliases and an empty --lld work as with tgtadm.
    ok(reg.handle(Request {
        lld: String::new(),
        ..req("tgt", "show")
    }));
    ok(reg.handle(req("sys", "show")));
}

#[test]
fn logicalunit_new_delete_and_errors() {
    let reg = Registry::new();
    ok(new_target(&reg, 1, T1));
    let f = TempFile::new(64 << 20);
    ok(reg.handle(Request {
        blocksize: Some(4096),
        bsoflags: Some("sync".into()),
        ..new_lu(&reg, 1, 1, &f.path())
    }));
    let t = reg.target_by_tid(1).unwrap();
    let lu = t.scsi.lu_info().into_iter().find(|l| l.lun == 1).unwrap();
    assert_eq!(lu.block_size, 4096);
    assert_eq!(lu.size_bytes, 64 << 20);
    assert_eq!(lu.backing_store_path, f.path());
    assert_eq!(lu.backing_store_flags, "sync");

    err(
        reg.handle(new_lu(&reg, 1, 1, &f.path())),
        errno::EEXIST,
        "this logical unit number already exists",
    );
    err(
        reg.handle(new_lu(&reg, 1, 0, &f.path())),
        errno::EINVAL,
        "LUN 0",
    );
    err(
        reg.handle(new_lu(&reg, 9, 2, &f.path())),
        errno::ENOENT,
        "can't find the target (tid 9)",
    );
    err(
        reg.handle(new_lu(&reg, 1, 2, "/nonexistent/dir/disk.img")),
        errno::ENOENT,
        "backing file /nonexistent/dir/disk.img: No such file or directory",
    );
    err(
        reg.handle(Request {
            blocksize: Some(1000),
            ..new_lu(&reg, 1, 2, &f.path())
        }),
        errno::EINVAL,
        "invalid block size 1000: use 512 or 4096",
    );
    err(
        reg.handle(Request {
            bstype: Some("aio9".into()),
            ..new_lu(&reg, 1, 2, &f.path())
        }),
        errno::EINVAL,
        "unknown backing store type 'aio9'",
    );
    err(
        reg.handle(Request {
            bsoflags: Some("sync,turbo".into()),
            ..new_lu(&reg, 1, 2, &f.path())
        }),
        errno::EINVAL,
        "unknown bsoflags 'turbo'",
    );
    err(
        reg.handle(Request {
            device_type: Some("osd".into()),
            ..new_lu(&reg, 1, 2, &f.path())
        }),
        errno::EOPNOTSUPP,
        "device type 'osd'",
    );
    // Pass-through: the node must be what bstype says, and sg / bsg go with pt only.
    for (bstype, path, msg) in [
        (
            "sg",
            "/dev/null",
            "/dev/null is not an sg node (major 1, sg's is 21)",
        ),
        ("bsg", "/dev/null", "/dev/null is not a bsg node"),
        (
            "sg",
            f.path().as_str(),
            "is not a character device: bstype sg needs a /dev/sgN node",
        ),
        ("rdwr", "/dev/null", "device type pt needs --bstype sg"),
    ] {
        err(
            reg.handle(Request {
                device_type: Some("pt".into()),
                bstype: Some(bstype.into()),
                ..new_lu(&reg, 1, 2, path)
            }),
            errno::EINVAL,
            msg,
        );
    }
    err(
        reg.handle(Request {
            bstype: Some("sg".into()),
            ..new_lu(&reg, 1, 2, "/dev/null")
        }),
        errno::EINVAL,
        "bstype sg passes a SCSI device through: use it with --device-type pt",
    );
    err(
        reg.handle(Request {
            params: Some("readonly".into()),
            ..new_lu(&reg, 1, 2, &f.path())
        }),
        errno::EINVAL,
        "invalid parameter 'readonly'",
    );
    err(
        reg.handle(Request {
            backing_store: None,
            ..new_lu(&reg, 1, 2, "")
        }),
        errno::EINVAL,
        "--backing-store (-b) is required",
    );
    err(
        reg.handle(Request {
            lun: None,
            ..new_lu(&reg, 1, 2, &f.path())
        }),
        errno::EINVAL,
        "--lun is required",
    );
    // null needs no file; its size comes from --bsopts.
    ok(reg.handle(Request {
        bstype: Some("null".into()),
        bsopts: Some("size=1G".into()),
        backing_store: None,
        ..new_lu(&reg, 1, 3, "")
    }));
    let lu3 = t.scsi.lu_info().into_iter().find(|l| l.lun == 3).unwrap();
    assert_eq!(lu3.size_bytes, 1 << 30);
    assert_eq!(lu3.backing_store_type, "null");
    err(
        reg.handle(Request {
            bstype: Some("null".into()),
            bsopts: Some("color=red".into()),
            ..new_lu(&reg, 1, 4, "")
        }),
        errno::EINVAL,
        "unknown --bsopts 'color'",
    );
    // Relative --params go through to the SCSI layer.
    ok(reg.handle(Request {
        params: Some("readonly=1".into()),
        ..new_lu(&reg, 1, 5, &f.path())
    }));

    // update
    ok(reg.handle(Request {
        tid: Some(1),
        lun: Some(1),
        params: Some("readonly=1".into()),
        ..req("logicalunit", "update")
    }));
    err(
        reg.handle(Request {
            tid: Some(1),
            lun: Some(1),
            ..req("lu", "update")
        }),
        errno::EINVAL,
        "requires --params",
    );
    err(
        reg.handle(Request {
            tid: Some(1),
            lun: Some(42),
            params: Some("readonly=1".into()),
            ..req("lu", "update")
        }),
        errno::ENOENT,
        "can't find the logical unit (tid 1, lun 42)",
    );

    // delete
    ok(reg.handle(Request {
        tid: Some(1),
        lun: Some(1),
        ..req("lu", "delete")
    }));
    assert!(!t.scsi.lu_info().iter().any(|l| l.lun == 1));
    err(
        reg.handle(Request {
            tid: Some(1),
            lun: Some(1),
            ..req("lu", "delete")
        }),
        errno::ENOENT,
        "can't find the logical unit (tid 1, lun 1)",
    );
    err(
        reg.handle(Request {
            tid: Some(1),
            lun: Some(0),
            ..req("lu", "delete")
        }),
        errno::EINVAL,
        "LUN 0",
    );
}

#[test]
fn bsoflags_forms() {
    use crate::mgmt::parse_bsoflags;
    assert_eq!(parse_bsoflags("").unwrap(), (false, false, String::new()));
    assert_eq!(
        parse_bsoflags("direct,sync").unwrap(),
        (true, true, "sync:direct".into())
    );
    assert_eq!(
        parse_bsoflags("sync:direct").unwrap(),
        (true, true, "sync:direct".into())
    );
    assert_eq!(
        parse_bsoflags("direct").unwrap(),
        (false, true, "direct".into())
    );
    assert!(parse_bsoflags("fast").is_err());
}

#[test]
fn delete_target_with_sessions() {
    let reg = Registry::new();
    ok(new_target(&reg, 1, T1));
    let t = reg.target_by_tid(1).unwrap();
    let closed = Arc::new(AtomicUsize::new(0));
    t.add_session(session(7, &closed));
    t.add_session(session(8, &closed));
    assert_eq!(t.session_count(), 2);

    let del = Request {
        tid: Some(1),
        ..req("target", "delete")
    };
    err(
        reg.handle(del.clone()),
        errno::EBUSY,
        "this target is still active: 2 session(s)",
    );
    assert!(
        reg.target_by_tid(1).is_some(),
        "a refused delete keeps the target"
    );
    assert_eq!(closed.load(Ordering::SeqCst), 0);

    ok(reg.handle(Request {
        force: true,
        ..del.clone()
    }));
    assert!(reg.target_by_tid(1).is_none());
    assert!(reg.target_by_name(T1).is_none());
    assert_eq!(
        closed.load(Ordering::SeqCst),
        2,
        "forced delete closes every session"
    );

    // A session that finishes logging in after the delete is closed at once.
    t.add_session(session(9, &closed));
    assert_eq!(closed.load(Ordering::SeqCst), 3);
    assert_eq!(t.session_count(), 0);

    err(
        reg.handle(del),
        errno::ENOENT,
        "can't find the target (tid 1)",
    );
}

#[test]
fn delete_idle_target_with_luns() {
    let reg = Registry::new();
    ok(new_target(&reg, 1, T1));
    let f = TempFile::new(1 << 20);
    ok(reg.handle(new_lu(&reg, 1, 1, &f.path())));
    ok(reg.handle(Request {
        tid: Some(1),
        ..req("target", "delete")
    }));
    assert!(reg.targets().is_empty());
}

#[test]
fn sessions_and_connections() {
    let reg = Registry::new();
    ok(new_target(&reg, 1, T1));
    let t = reg.target_by_tid(1).unwrap();
    let closed = Arc::new(AtomicUsize::new(0));
    t.add_session(session(7, &closed));
    t.add_connection(
        7,
        ConnInfo {
            cid: 1,
            peer: "[::ffff:10.0.0.1]:4000".parse().unwrap(),
            local: "[::]:3260".parse().unwrap(),
        },
    );
    assert_eq!(t.sessions()[0].connections.len(), 2);
    t.remove_connection(7, 1);
    assert_eq!(t.sessions()[0].connections.len(), 1);

    let shown = ok(reg.handle(Request {
        tid: Some(1),
        ..req("conn", "show")
    }));
    assert!(shown.contains("Session: 7\n    Connection: 0\n        Initiator: iqn.1993-08.org.debian:01:abc\n        IP Address: 192.168.7.9\n"), "{shown}");

    err(
        reg.handle(Request {
            tid: Some(1),
            sid: Some(7),
            cid: Some(5),
            ..req("conn", "delete")
        }),
        errno::ENOENT,
        "can't find the connection",
    );
    err(
        reg.handle(Request {
            tid: Some(1),
            sid: Some(70),
            cid: Some(0),
            ..req("conn", "delete")
        }),
        errno::ENOENT,
        "can't find the session",
    );
    err(
        reg.handle(Request {
            tid: Some(1),
            sid: Some(7),
            ..req("conn", "delete")
        }),
        errno::EINVAL,
        "--cid is required",
    );
    ok(reg.handle(Request {
        tid: Some(1),
        sid: Some(7),
        cid: Some(0),
        ..req("conn", "delete")
    }));
    assert_eq!(closed.load(Ordering::SeqCst), 1);
    t.remove_session(7);
    assert_eq!(t.session_count(), 0);
}

#[test]
fn acl_bind_unbind_and_allows() {
    let reg = Registry::new();
    ok(new_target(&reg, 1, T1));
    let t = reg.target_by_tid(1).unwrap();
    let ini = "iqn.1993-08.org.debian:01:abc";
    assert!(
        !t.allows(ip("127.0.0.1"), ini),
        "no rules: nobody may log in, as in tgt"
    );

    ok(bind(&reg, 1, Some("192.168.1.5"), None));
    assert!(t.allows(ip("192.168.1.5"), ini));
    assert!(t.allows(ip("::ffff:192.168.1.5"), ini));
    assert!(!t.allows(ip("192.168.1.6"), ini));

    ok(bind(&reg, 1, Some("10.0.0.0/8"), None));
    assert!(t.allows(ip("10.20.30.40"), ini));
    assert!(!t.allows(ip("11.0.0.1"), ini));

    ok(bind(&reg, 1, Some("2001:db8::/32"), None));
    assert!(t.allows(ip("2001:db8:ffff::1"), ini));
    assert!(!t.allows(ip("2001:db9::1"), ini));

    ok(bind(&reg, 1, Some("fe80::1"), None));
    assert!(t.allows(ip("fe80::1"), ini) && !t.allows(ip("fe80::2"), ini));

    ok(bind(
        &reg,
        1,
        None,
        Some("iqn.1993-08.org.debian:01:friend"),
    ));
    assert!(t.allows(ip("8.8.8.8"), "iqn.1993-08.org.debian:01:friend"));
    assert!(!t.allows(ip("8.8.8.8"), ini));

    err(
        bind(&reg, 1, Some("10.0.0.0/8"), None),
        errno::EEXIST,
        "this access control rule already exists: 10.0.0.0/8",
    );
    err(
        bind(&reg, 1, None, Some("IQN.1993-08.org.debian:01:FRIEND")),
        errno::EEXIST,
        "already exists",
    );
    err(
        bind(&reg, 1, Some("300.1.1.1"), None),
        errno::EINVAL,
        "invalid initiator address '300.1.1.1'",
    );
    err(
        bind(&reg, 1, Some("10.0.0.0/40"), None),
        errno::EINVAL,
        "at most 32",
    );
    err(
        bind(&reg, 1, None, None),
        errno::EINVAL,
        "requires --initiator-address (-I) or --initiator-name (-Q)",
    );
    err(
        bind(&reg, 2, Some("ALL"), None),
        errno::ENOENT,
        "can't find the target (tid 2)",
    );

    ok(bind(&reg, 1, Some("ALL"), None));
    assert!(t.allows(ip("8.8.8.8"), "iqn.anyone"));
    assert!(t.allows(ip("::1"), "iqn.anyone"));

    let unbind = |addr: Option<&str>, name: Option<&str>| {
        reg.handle(Request {
            tid: Some(1),
            initiator_address: addr.map(Into::into),
            initiator_name: name.map(Into::into),
            ..req("target", "unbind")
        })
    };
    ok(unbind(Some("all"), None));
    assert!(!t.allows(ip("8.8.8.8"), "iqn.anyone"));
    err(
        unbind(Some("1.2.3.4"), None),
        errno::ENOENT,
        "this access control rule does not exist: 1.2.3.4",
    );
    ok(unbind(None, Some("iqn.1993-08.org.debian:01:friend")));
    assert!(!t.allows(ip("8.8.8.8"), "iqn.1993-08.org.debian:01:friend"));
    err(
        unbind(None, Some("iqn.nobody")),
        errno::ENOENT,
        "does not exist: iqn.nobody",
    );
    assert_eq!(t.acl().addresses.len(), 4);
}

#[test]
fn target_update_state_and_params() {
    let reg = Registry::new();
    ok(new_target(&reg, 1, T1));
    let t = reg.target_by_tid(1).unwrap();
    let upd = |n: &str, v: &str| {
        reg.handle(Request {
            tid: Some(1),
            name: Some(n.into()),
            value: Some(v.into()),
            ..req("target", "update")
        })
    };
    assert!(t.online());
    ok(upd("state", "offline"));
    assert!(!t.online());
    assert_eq!(t.state(), TargetState::Offline);
    ok(upd("State", "ready"));
    assert!(t.online());
    err(
        upd("state", "sleepy"),
        errno::EINVAL,
        "invalid target state 'sleepy'",
    );

    ok(upd("MaxRecvDataSegmentLength", "65536"));
    ok(upd("initialr2t", "yes"));
    ok(upd("MaxRecvDataSegmentLength", "131072"));
    assert_eq!(
        t.iscsi_params(),
        vec![
            ("MaxRecvDataSegmentLength".to_string(), "131072".to_string()),
            ("InitialR2T".to_string(), "Yes".to_string())
        ]
    );
    assert_eq!(
        t.iscsi_param("maxrecvdatasegmentlength").as_deref(),
        Some("131072")
    );
    err(
        upd("MaxRecvDataSegmentLength", "abc"),
        errno::EINVAL,
        "invalid value 'abc' for MaxRecvDataSegmentLength",
    );
    err(upd("Foo", "1"), errno::EINVAL, "unknown parameter 'Foo'");
    err(
        reg.handle(Request {
            tid: Some(1),
            name: Some("state".into()),
            ..req("target", "update")
        }),
        errno::EINVAL,
        "requires --name and --value",
    );
    let shown = ok(reg.handle(Request {
        tid: Some(1),
        ..req("target", "show")
    }));
    assert!(
        shown.contains("        MaxRecvDataSegmentLength: 131072\n"),
        "{shown}"
    );
}

#[test]
fn system_state_update_show_and_delete() {
    let reg = Registry::new();
    ok(new_target(&reg, 1, T1));
    let t = reg.target_by_tid(1).unwrap();
    let upd = |n: &str, v: &str| {
        reg.handle(Request {
            name: Some(n.into()),
            value: Some(v.into()),
            ..req("system", "update")
        })
    };
    ok(upd("State", "offline"));
    assert!(!reg.system_ready());
    assert!(!t.online(), "an offline system takes every target offline");
    let shown = ok(reg.handle(req("sys", "show")));
    assert!(
        shown.starts_with("System:\n    State: offline\n    debug: off\nLLDs:\n    iscsi: ready\n"),
        "{shown}"
    );
    assert!(
        shown.contains("Backing stores:\n") && shown.contains("    rdwr (bsoflags sync:direct)\n")
    );
    assert!(shown.contains("Device types:\n    disk\n"));
    ok(upd("State", "ready"));
    assert!(t.online());
    err(
        upd("State", "bogus"),
        errno::EINVAL,
        "invalid system state 'bogus'",
    );
    err(
        upd("foo", "bar"),
        errno::EINVAL,
        "unknown system parameter 'foo'",
    );

    let seen = Arc::new(AtomicUsize::new(0));
    let s2 = seen.clone();
    reg.set_debug_hook(Box::new(move |on| {
        assert!(on);
        s2.fetch_add(1, Ordering::SeqCst);
    }));
    ok(upd("debug", "on"));
    assert!(reg.debug());
    assert_eq!(seen.load(Ordering::SeqCst), 1);

    let fired = Arc::new(AtomicUsize::new(0));
    let f2 = fired.clone();
    reg.set_shutdown_hook(Box::new(move || {
        f2.fetch_add(1, Ordering::SeqCst);
    }));
    let closed = Arc::new(AtomicUsize::new(0));
    t.add_session(session(1, &closed));
    err(
        reg.handle(req("system", "delete")),
        errno::EBUSY,
        "still has targets (tid 1)",
    );
    assert!(!reg.shutdown_requested());
    ok(reg.handle(Request {
        force: true,
        ..req("system", "delete")
    }));
    assert!(reg.shutdown_requested());
    assert_eq!(fired.load(Ordering::SeqCst), 1);
    assert_eq!(closed.load(Ordering::SeqCst), 1);
    assert!(reg.targets().is_empty());
    // A second delete does not fire the hook again.
    ok(reg.handle(req("system", "delete")));
    assert_eq!(fired.load(Ordering::SeqCst), 1);
}

#[test]
fn lld_and_portal() {
    let reg = Registry::new();
    ok(new_target(&reg, 1, T1));
    reg.set_portals(vec![
        "127.0.0.1:3260".parse().unwrap(),
        "[::1]:3261".parse().unwrap(),
    ]);
    assert_eq!(
        ok(reg.handle(req("lld", "show"))),
        format!("LLDs:\n    iscsi: ready\n        Target 1: {T1}\n")
    );
    ok(reg.handle(req("lld", "start")));
    err(
        reg.handle(req("lld", "stop")),
        errno::EOPNOTSUPP,
        "cannot be stopped",
    );
    err(
        reg.handle(Request {
            lld: "iser".into(),
            ..req("lld", "show")
        }),
        errno::ENOENT,
        "lld iser: not built into this rtgtd",
    );
    // A second transport, as the daemon registers it: --lld selects it, show lists both.
    reg.set_llds(vec![
        Lld {
            name: "iscsi".into(),
            state: "ready".into(),
        },
        Lld {
            name: "iser".into(),
            state: "not started".into(),
        },
    ]);
    assert_eq!(
        ok(reg.handle(Request {
            lld: "iser".into(),
            ..req("lld", "show")
        })),
        "LLDs:\n    iser: not started\n"
    );
    // Without --lld, every transport.
    assert_eq!(
        ok(reg.handle(Request {
            lld: String::new(),
            ..req("lld", "show")
        })),
        format!("LLDs:\n    iscsi: ready\n        Target 1: {T1}\n    iser: not started\n")
    );
    assert_eq!(
        ok(reg.handle(req("lld", "show"))),
        format!("LLDs:\n    iscsi: ready\n        Target 1: {T1}\n")
    );
    let sys = ok(reg.handle(req("sys", "show")));
    assert!(
        sys.contains("LLDs:\n    iscsi: ready\n    iser: not started\n"),
        "{sys}"
    );
    ok(reg.handle(Request {
        lld: "iser".into(),
        ..req("target", "show")
    }));
    err(
        reg.handle(Request {
            lld: "iser".into(),
            ..req("lld", "stop")
        }),
        errno::EOPNOTSUPP,
        "the iser driver cannot be stopped",
    );
    assert_eq!(
        ok(reg.handle(req("portal", "show"))),
        "Portal: 127.0.0.1:3260,1\nPortal: [::1]:3261,1\n"
    );
    let sys = ok(reg.handle(req("sys", "show")));
    assert!(
        sys.contains("Portals:\n    127.0.0.1:3260,1\n    [::1]:3261,1\n"),
        "{sys}"
    );
}

#[test]
fn show_target_layout() {
    let reg = Registry::new();
    ok(new_target(&reg, 1, T1));
    ok(new_target(&reg, 2, "iqn.2026-11.org.example:disk2"));
    let f = TempFile::new(100 << 20);
    ok(reg.handle(Request {
        bsoflags: Some("sync".into()),
        ..new_lu(&reg, 1, 1, &f.path())
    }));
    ok(bind(&reg, 1, Some("ALL"), None));
    ok(bind(&reg, 1, Some("10.0.0.0/8"), None));
    ok(bind(&reg, 1, None, Some("iqn.1993-08.org.debian:01:abc")));
    let closed = Arc::new(AtomicUsize::new(0));
    reg.target_by_tid(1)
        .unwrap()
        .add_session(session(3, &closed));

    let all = ok(reg.handle(req("target", "show")));
    let expect_in_order = [
        format!("Target 1: {T1}\n"),
        "    System information:\n".into(),
        "        Driver: iscsi\n".into(),
        "        State: ready\n".into(),
        "    I_T nexus information:\n".into(),
        "        I_T nexus: 3\n".into(),
        "            Initiator: iqn.1993-08.org.debian:01:abc alias: host1\n".into(),
        "            Connection: 0\n".into(),
        "                IP Address: 192.168.7.9\n".into(),
        "    LUN information:\n".into(),
        "        LUN: 0\n".into(),
        "            Type: controller\n".into(),
        "        LUN: 1\n".into(),
        "            Type: disk\n".into(),
        "            SCSI ID: ".into(),
        "            SCSI SN: ".into(),
        "            Size: 105 MB, Block size: 512\n".into(),
        "            Online: Yes\n".into(),
        "            Removable media: No\n".into(),
        "            Prevent removal: No\n".into(),
        "            Readonly: No\n".into(),
        "            SWP: No\n".into(),
        "            Thin-provisioning: No\n".into(),
        "            Backing store type: rdwr\n".into(),
        format!("            Backing store path: {}\n", f.path()),
        "            Backing store flags: sync\n".into(),
        "    Account information:\n".into(),
        "    ACL information:\n".into(),
        "        ALL\n".into(),
        "        10.0.0.0/8\n".into(),
        "        iqn.1993-08.org.debian:01:abc\n".into(),
        "Target 2: iqn.2026-11.org.example:disk2\n".into(),
    ];
    let mut at = 0;
    for line in &expect_in_order {
        match all[at..].find(line.as_str()) {
            Some(i) => at += i + line.len(),
            None => panic!("missing {line:?} after offset {at} in:\n{all}"),
        }
    }

    let one = ok(reg.handle(Request {
        tid: Some(2),
        ..req("target", "show")
    }));
    assert!(one.starts_with("Target 2: iqn.2026-11.org.example:disk2\n"));
    assert!(!one.contains("Target 1:"));
    assert!(one.ends_with("    ACL information:\n"));
    err(
        reg.handle(Request {
            tid: Some(3),
            ..req("target", "show")
        }),
        errno::ENOENT,
        "can't find the target (tid 3)",
    );
    assert_eq!(show::megabytes(0), 0);
    assert_eq!(show::megabytes(1 << 30), 1074);
}

#[test]
fn json_round_trip_and_handle_line() {
    let r = Request {
        lld: "iscsi".into(),
        mode: "target".into(),
        op: "new".into(),
        tid: Some(1),
        targetname: Some(T1.into()),
        blocksize: Some(4096),
        force: true,
        ..Default::default()
    };
    let line = serde_json::to_string(&r).unwrap();
    assert!(!line.contains('\n'));
    assert_eq!(serde_json::from_str::<Request>(&line).unwrap(), r);
    // Missing fields take their defaults.
    let sparse: Request = serde_json::from_str(r#"{"mode":"sys","op":"show"}"#).unwrap();
    assert_eq!(sparse.tid, None);
    assert!(!sparse.force);
    let resp = Response::error(2, "can't find the target (tid 3)");
    assert_eq!(
        serde_json::from_str::<Response>(&serde_json::to_string(&resp).unwrap()).unwrap(),
        resp
    );

    let reg = Registry::new();
    let out = handle_line(&reg, &format!("{line}\n"));
    assert!(!out.contains('\n'));
    let resp: Response = serde_json::from_str(&out).unwrap();
    assert_eq!(resp, Response::ok(""));
    assert!(reg.target_by_name(T1).is_some());

    for bad in ["", "garbage", "{", r#"{"tid":"one"}"#, "[1,2]", "null"] {
        let resp: Response = serde_json::from_str(&handle_line(&reg, bad)).unwrap();
        assert_eq!(resp.code, errno::EINVAL, "{bad}");
        assert!(
            resp.message.contains("malformed control request"),
            "{}",
            resp.message
        );
    }
}

#[test]
fn concurrent_lookups_while_changing() {
    let reg = Registry::new();
    ok(new_target(&reg, 1, T1));
    ok(bind(&reg, 1, Some("ALL"), None));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let reg = reg.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut n = 0u64;
                // At least one lookup each, even if the writer finishes first (2 cores).
                while n == 0 || !stop.load(Ordering::Relaxed) {
                    let t = reg.target_by_name(T1).unwrap();
                    assert!(t.allows(ip("127.0.0.1"), "iqn.x"));
                    n += 1;
                }
                n
            })
        })
        .collect();
    for tid in 2..200u32 {
        ok(new_target(
            &reg,
            tid,
            &format!("iqn.2026-11.org.example:t{tid}"),
        ));
    }
    for tid in 2..200u32 {
        ok(reg.handle(Request {
            tid: Some(tid),
            ..req("target", "delete")
        }));
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
}

fn show_lun(reg: &Registry, tid: u32, lun: u64) -> String {
    let out = ok(reg.handle(Request {
        tid: Some(tid),
        ..req("target", "show")
    }));
    let start = out
        .find(&format!("        LUN: {lun}\n"))
        .unwrap_or_else(|| panic!("no LUN {lun} in\n{out}"));
    let rest = &out[start + 1..];
    let end = rest
        .find("        LUN: ")
        .or_else(|| rest.find("    Account information:"))
        .unwrap();
    rest[..end].to_string()
}

#[test]
fn backing_store_types_and_modes() {
    let reg = Registry::new();
    ok(new_target(&reg, 1, T1));
    let f = TempFile::new(1 << 20);
    // aio is io_uring's alias; show says what serves the LUN (rdwr where io_uring is
    // unavailable).
    ok(reg.handle(Request {
        bstype: Some("aio".into()),
        bsoflags: Some("direct".into()),
        ..new_lu(&reg, 1, 1, &f.path())
    }));
    let s = show_lun(&reg, 1, 1);
    let want = if rtgt_backstore::uring::available().is_ok() {
        "io_uring"
    } else {
        "rdwr"
    };
    assert!(s.contains(&format!("Backing store type: {want}\n")), "{s}");
    assert!(s.contains("Backing store flags: direct\n"), "{s}");
    assert!(s.contains("Physical block size: 4096\n"), "{s}");
    assert!(s.contains("Write cache: on\n"), "{s}");
    // mem: the size from --bsopts or --params; it is required.
    ok(reg.handle(Request {
        bstype: Some("mem".into()),
        bsopts: Some("size=64M".into()),
        backing_store: None,
        ..new_lu(&reg, 1, 2, "")
    }));
    ok(reg.handle(Request {
        bstype: Some("mem".into()),
        params: Some("size=1G,nv_cache=1,write_cache=off".into()),
        backing_store: None,
        ..new_lu(&reg, 1, 3, "")
    }));
    let s = show_lun(&reg, 1, 3);
    assert!(s.contains("Size: 1074 MB"), "{s}");
    assert!(s.contains("Backing store type: mem\n"), "{s}");
    assert!(
        s.contains("NV cache: Yes\n") && s.contains("Write cache: off\n"),
        "{s}"
    );
    assert!(s.contains("Backing store path: None\n"), "{s}");
    err(
        reg.handle(Request {
            bstype: Some("mem".into()),
            backing_store: None,
            ..new_lu(&reg, 1, 4, "")
        }),
        errno::EINVAL,
        "bstype mem needs a size",
    );
    err(
        reg.handle(Request {
            bstype: Some("mem".into()),
            bsoflags: Some("direct".into()),
            bsopts: Some("size=1M".into()),
            ..new_lu(&reg, 1, 4, "")
        }),
        errno::EINVAL,
        "needs a file or block device",
    );
    // null sized by --params too.
    ok(reg.handle(Request {
        bstype: Some("null".into()),
        params: Some("size=2G".into()),
        backing_store: None,
        ..new_lu(&reg, 1, 4, "")
    }));
    assert!(show_lun(&reg, 1, 4).contains("Size: 2147 MB"));
    // A file's size comes from the file.
    err(
        reg.handle(Request {
            params: Some("size=2G".into()),
            ..new_lu(&reg, 1, 5, &f.path())
        }),
        errno::EINVAL,
        "takes its size from the backing file",
    );
    err(
        reg.handle(Request {
            bstype: Some("libaio".into()),
            ..new_lu(&reg, 1, 5, &f.path())
        }),
        errno::EINVAL,
        "unknown backing store type 'libaio' (use rdwr, io_uring (alias aio), mem, null, rbd, glfs, handler)",
    );
    // 512 logical over 4096 physical.
    ok(reg.handle(Request {
        params: Some("physical_blocksize=4096".into()),
        ..new_lu(&reg, 1, 5, &f.path())
    }));
    let s = show_lun(&reg, 1, 5);
    assert!(
        s.contains("Block size: 512\n") && s.contains("Physical block size: 4096\n"),
        "{s}"
    );
    err(
        reg.handle(Request {
            blocksize: Some(4096),
            params: Some("physical_blocksize=512".into()),
            ..new_lu(&reg, 1, 6, &f.path())
        }),
        errno::EINVAL,
        "physical block size 512",
    );
    // tgtadm scripts set it with --op update after --op new (lbppbe or bytes).
    ok(reg.handle(new_lu(&reg, 1, 7, &f.path())));
    assert!(show_lun(&reg, 1, 7).contains("Physical block size: 512\n"));
    ok(reg.handle(Request {
        tid: Some(1),
        lun: Some(7),
        params: Some("lbppbe=3".into()),
        ..req("logicalunit", "update")
    }));
    assert!(show_lun(&reg, 1, 7).contains("Physical block size: 4096\n"));
    ok(reg.handle(Request {
        tid: Some(1),
        lun: Some(7),
        params: Some("physical_blocksize=1024".into()),
        ..req("logicalunit", "update")
    }));
    assert!(show_lun(&reg, 1, 7).contains("Physical block size: 1024\n"));
    err(
        reg.handle(Request {
            tid: Some(1),
            lun: Some(7),
            params: Some("physical_blocksize=1000".into()),
            ..req("logicalunit", "update")
        }),
        errno::EINVAL,
        "1000",
    );
    assert!(show_lun(&reg, 1, 7).contains("Physical block size: 1024\n"));
}

#[test]
fn readonly_opens_o_rdonly_and_write_cache_updates() {
    let reg = Registry::new();
    ok(new_target(&reg, 1, T1));
    let f = TempFile::new(1 << 20);
    ok(reg.handle(Request {
        params: Some("readonly=1".into()),
        ..new_lu(&reg, 1, 1, &f.path())
    }));
    let t = reg.target_by_tid(1).unwrap();
    assert!(t.scsi.lu_info()[1].readonly);
    err(
        reg.handle(Request {
            tid: Some(1),
            lun: Some(1),
            params: Some("readonly=0".into()),
            ..req("logicalunit", "update")
        }),
        errno::EINVAL,
        "opened read-only (O_RDONLY)",
    );
    // write_cache toggles live; a sync LUN can't turn it on.
    ok(reg.handle(new_lu(&reg, 1, 2, &f.path())));
    ok(reg.handle(Request {
        tid: Some(1),
        lun: Some(2),
        params: Some("write_cache=off".into()),
        ..req("logicalunit", "update")
    }));
    assert!(show_lun(&reg, 1, 2).contains("Write cache: off\n"));
    ok(reg.handle(Request {
        bsoflags: Some("sync".into()),
        ..new_lu(&reg, 1, 3, &f.path())
    }));
    assert!(show_lun(&reg, 1, 3).contains("Write cache: off\n"));
    err(
        reg.handle(Request {
            tid: Some(1),
            lun: Some(3),
            params: Some("write_cache=on".into()),
            ..req("logicalunit", "update")
        }),
        errno::EINVAL,
        "O_DSYNC",
    );
    let sys = ok(reg.handle(req("system", "show")));
    assert!(
        sys.contains("    mem\n") && sys.contains("io_uring, alias aio"),
        "{sys}"
    );
    assert!(sys.contains("I/O threads: "), "{sys}");
}

#[test]
fn vhost_socket_bind_unbind_show_and_config_round_trip() {
    let reg = Registry::new();
    reg.set_llds(vec![
        Lld {
            name: "iscsi".into(),
            state: "ready".into(),
        },
        Lld {
            name: "vhost".into(),
            state: "ready".into(),
        },
    ]);
    ok(new_target(&reg, 1, T1));
    ok(new_target(&reg, 2, "iqn.2026-11.org.example:disk2"));
    let vhost = |op: &str, tid: u32, params: Option<&str>| Request {
        lld: "vhost".into(),
        tid: Some(tid),
        params: params.map(str::to_string),
        ..req("target", op)
    };
    err(
        reg.handle(vhost("bind", 1, None)),
        errno::EINVAL,
        "requires --params socket=PATH",
    );
    err(
        reg.handle(vhost("bind", 1, Some("socket=rel.sock"))),
        errno::EINVAL,
        "must be an absolute path",
    );
    ok(reg.handle(vhost("bind", 1, Some("socket=/run/vm1.sock"))));
    // One socket serves one target.
    err(
        reg.handle(vhost("bind", 2, Some("socket=/run/vm1.sock"))),
        errno::EEXIST,
        "already serves tid 1",
    );
    assert_eq!(
        reg.target_by_tid(1).unwrap().vhost_sockets(),
        ["/run/vm1.sock"]
    );
    let shown = ok(reg.handle(Request {
        tid: Some(1),
        ..req("target", "show")
    }));
    assert!(shown.contains("vhost socket: /run/vm1.sock"), "{shown}");
    // The dump has it, and the dump builds the same binding in an empty registry.
    let dumped = config::running(&reg);
    assert_eq!(dumped.targets[0].vhost_socket, ["/run/vm1.sock"]);
    let text = toml::to_string(&dumped).unwrap();
    assert!(
        text.contains("vhost_socket = [\"/run/vm1.sock\"]"),
        "{text}"
    );
    let reg2 = Registry::new();
    reg2.set_llds(reg.llds());
    for (_, step) in dumped.requests() {
        ok(reg2.handle(step.request));
    }
    assert_eq!(
        reg2.target_by_tid(1).unwrap().vhost_sockets(),
        ["/run/vm1.sock"]
    );
    err(
        reg.handle(vhost("unbind", 1, Some("socket=/run/vm2.sock"))),
        errno::ENOENT,
        "is not bound to tid 1",
    );
    ok(reg.handle(vhost("unbind", 1, Some("socket=/run/vm1.sock"))));
    assert!(reg.target_by_tid(1).unwrap().vhost_sockets().is_empty());
}
