use super::*;
use crate::control::Request;

const SAMPLE: &str = r#"
[daemon]
portals = ["127.0.0.1:3260"]

[[target]]
tid = 1
name = "iqn.2026-11.org.example:one"
initiator_address = ["ALL"]
initiator_name = ["iqn.1994-05.com.example:host1"]
params = { MaxRecvDataSegmentLength = 65536 }

[[target.lun]]
lun = 1
bstype = "null"
size = "1G"
params = { thin_provisioning = 0, scsi_sn = "SN-1", write_cache = "off" }

[[target.lun]]
lun = 2
bstype = "mem"
size = 1048576
blocksize = 4096

[[target]]
tid = 2
name = "iqn.2026-11.org.example:two"
state = "offline"
initiator_address = ["127.0.0.1", "10.0.0.0/8"]
"#;

fn show(reg: &Registry) -> String {
    reg.handle(Request {
        mode: "target".into(),
        op: "show".into(),
        ..Request::default()
    })
    .message
}

/// Registry's `show` without the I/O counters (which differ between two runs).
fn show_stable(reg: &Registry) -> String {
    show(reg)
        .lines()
        .filter(|l| !l.contains("Backing store I/O"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn loads_through_the_registry() {
    let reg = Registry::new();
    load(&reg, "rtgt.toml", SAMPLE).unwrap();
    let out = show(&reg);
    assert!(
        out.contains("Target 1: iqn.2026-11.org.example:one"),
        "{out}"
    );
    assert!(out.contains("MaxRecvDataSegmentLength: 65536"), "{out}");
    assert!(out.contains("SCSI SN: SN-1"), "{out}");
    assert!(out.contains("Block size: 4096"), "{out}");
    assert!(
        out.contains("Target 2: iqn.2026-11.org.example:two"),
        "{out}"
    );
    assert!(out.contains("State: offline"), "{out}");
    assert!(out.contains("10.0.0.0/8"), "{out}");
    assert!(out.contains("iqn.1994-05.com.example:host1"), "{out}");
}

#[test]
fn dump_loads_back_to_the_same_show() {
    let reg = Registry::new();
    load(&reg, "rtgt.toml", SAMPLE).unwrap();
    let dump = running(&reg).to_toml();
    let again = Registry::new();
    load(&again, "dump.toml", &dump).unwrap();
    assert_eq!(show_stable(&reg), show_stable(&again), "{dump}");
    // And the dump of the copy is the dump.
    assert_eq!(running(&again).to_toml(), dump);
    // Nothing to do when applying the dump to what runs.
    let plan = apply(&reg, "dump.toml", &dump, true, false).unwrap();
    assert_eq!(plan, "no changes\n");
}

#[test]
fn parse_errors_name_file_line_and_key() {
    let e = parse(
        "a.toml",
        "[[target]]\ntid = \"x\"\nname = \"iqn.2026-11.a:b\"\n",
    )
    .unwrap_err();
    assert!(e.0.starts_with("a.toml:2:"), "{e}");
    assert!(e.0.contains("tid"), "{e}");
    let e = parse(
        "a.toml",
        "[[target]]\ntid = 1\nname = \"iqn.2026-11.a:b\"\ncolour = 3\n",
    )
    .unwrap_err();
    assert!(e.0.starts_with("a.toml:4:"), "{e}");
    assert!(e.0.contains("colour"), "{e}");
    let e = parse("a.toml", "[[target]]\ntid = 1\n").unwrap_err();
    assert!(e.0.contains("name"), "{e}");
    let two = "[[target]]\ntid = 1\nname = \"iqn.2026-11.a:b\"\n[[target]]\ntid = 1\nname = \"iqn.2026-11.a:c\"\n";
    let e = parse("a.toml", two).unwrap_err();
    assert!(e.0.starts_with("a.toml:5: key `tid`"), "{e}");
    let e = parse("a.toml", "x = [").unwrap_err();
    assert!(e.0.starts_with("a.toml:1:"), "{e}");
}

#[test]
fn registry_errors_name_the_line() {
    let text = "[[target]]\ntid = 1\nname = \"iqn.2026-11.a:b\"\n\n[[target.lun]]\nlun = 3\nbacking_store = \"/nonexistent/x.img\"\n";
    let e = load(&Registry::new(), "a.toml", text).unwrap_err();
    assert!(e.0.starts_with("a.toml:6: add tid 1 lun 3"), "{e}");
    assert!(e.0.contains("No such file"), "{e}");
    let text = "[[target]]\ntid = 1\nname = \"iqn.2026-11.a:b\"\n[[target.lun]]\nlun = 1\nbstype = \"null\"\nparams = { colour = \"red\" }\n";
    let e = load(&Registry::new(), "a.toml", text).unwrap_err();
    assert!(
        e.0.starts_with("a.toml:5:") && e.0.contains("colour"),
        "{e}"
    );
}

#[test]
fn apply_adds_changes_and_removes() {
    let reg = Registry::new();
    load(&reg, "rtgt.toml", SAMPLE).unwrap();
    let next = SAMPLE
        .replace(
            "initiator_address = [\"127.0.0.1\", \"10.0.0.0/8\"]",
            "initiator_address = [\"127.0.0.1\"]",
        )
        .replace("write_cache = \"off\"", "write_cache = \"on\"")
        .replace("size = 1048576", "size = 2097152")
        + "\n[[target.lun]]\nlun = 5\nbstype = \"null\"\nsize = \"10M\"\n";
    let plan = apply(&reg, "next.toml", &next, true, false).unwrap();
    assert!(plan.contains("would unbind tid 2 10.0.0.0/8"), "{plan}");
    assert!(plan.contains("would update tid 1 lun 1"), "{plan}");
    assert!(plan.contains("would add tid 2 lun 5"), "{plan}");
    assert!(
        plan.contains("would remove tid 1 lun 2 (to create it again"),
        "{plan}"
    );
    // The dry run changed nothing.
    assert!(show(&reg).contains("10.0.0.0/8"));
    apply(&reg, "next.toml", &next, false, false).unwrap();
    let out = show(&reg);
    assert!(!out.contains("10.0.0.0/8"), "{out}");
    assert!(apply(&reg, "next.toml", &next, true, false)
        .unwrap()
        .starts_with("no changes"));
    // Remove target 2 entirely.
    let cut = next
        .split("[[target]]\ntid = 2")
        .next()
        .unwrap()
        .to_string();
    apply(&reg, "cut.toml", &cut, false, false).unwrap();
    assert!(!show(&reg).contains("Target 2"));
}

#[test]
fn example_file_loads() {
    let text = include_str!("../../../../examples/rtgt.toml");
    let cfg = parse("examples/rtgt.toml", text).unwrap();
    assert!(!cfg.targets.is_empty());
    // Its file-backed LUNs point at /var/lib; everything else goes in.
    let reg = Registry::new();
    let null_only = Config {
        targets: cfg
            .targets
            .iter()
            .cloned()
            .map(|mut t| {
                t.luns.retain(|l| l.bstype.as_deref() == Some("null"));
                t
            })
            .collect(),
        ..cfg.clone()
    };
    for (_, s) in null_only.requests() {
        let r = reg.handle(s.request);
        assert_eq!(r.code, 0, "{}: {}", s.what, r.message);
    }
}

#[test]
fn apply_sees_changes_made_by_requests_since_the_last_apply() {
    let reg = Registry::new();
    load(&reg, "rtgt.toml", SAMPLE).unwrap();
    // In step after the load: nothing to do.
    let plan = apply(&reg, "rtgt.toml", SAMPLE, false, false).unwrap();
    assert_eq!(plan, "no changes\nnote: portals [\"127.0.0.1:3260\"] differ from the running []: they change on restart\n");
    // A LUN removed behind the file's back comes back with the same file.
    let r = reg.handle(Request {
        mode: "logicalunit".into(),
        op: "delete".into(),
        tid: Some(1),
        lun: Some(2),
        ..Request::default()
    });
    assert_eq!(r.code, 0, "{}", r.message);
    let plan = apply(&reg, "rtgt.toml", SAMPLE, false, false).unwrap();
    assert!(plan.starts_with("add tid 1 lun 2"), "{plan}");
    // So does an ACL rule unbound from tid 2.
    let r = reg.handle(Request {
        mode: "target".into(),
        op: "unbind".into(),
        tid: Some(2),
        initiator_address: Some("127.0.0.1".into()),
        ..Request::default()
    });
    assert_eq!(r.code, 0, "{}", r.message);
    let plan = apply(&reg, "rtgt.toml", SAMPLE, true, false).unwrap();
    assert!(plan.starts_with("would bind tid 2"), "{plan}");
    // A changed section is compared; the unchanged one is not read back but stays.
    let next = SAMPLE.replace("size = \"1G\"", "size = \"2G\"");
    let plan = apply(&reg, "rtgt.toml", &next, false, false).unwrap();
    assert!(
        plan.contains("resize tid 1 lun 1") && plan.contains("bind tid 2"),
        "{plan}"
    );
    assert!(show(&reg).contains("Size: 2147 MB"), "{}", show(&reg));
}

const WITH_ACCOUNTS: &str = r#"
[[account]]
user = "alice"
password = "alice-secret-12"

[[account]]
user = "tgt1"
password = "target-secret-1"

[discovery]
incoming_user = ["alice"]

[[target]]
tid = 1
name = "iqn.2026-11.org.example:chap"
initiator_address = ["ALL"]
incoming_user = ["alice"]
outgoing_user = "tgt1"
"#;

#[test]
fn accounts_load_dump_and_apply() {
    let reg = Registry::new();
    load(&reg, "a.toml", WITH_ACCOUNTS).unwrap();
    let t = reg.target_by_tid(1).unwrap();
    assert_eq!(t.auth().incoming, vec!["alice".to_string()]);
    assert_eq!(t.auth().outgoing.as_deref(), Some("tgt1"));
    assert!(reg.chap_for_discovery().is_some());
    let dump = running(&reg).to_toml();
    assert!(dump.contains("password = \"alice-secret-12\""), "{dump}");
    let again = Registry::new();
    load(&again, "dump.toml", &dump).unwrap();
    assert_eq!(running(&again).to_toml(), dump);
    // A new password: the account is made again and bound again where it was.
    let next = WITH_ACCOUNTS.replace("alice-secret-12", "alice-secret-34");
    let plan = apply(&reg, "a.toml", &next, false, false).unwrap();
    assert!(
        plan.contains("change the password of account alice"),
        "{plan}"
    );
    assert!(!plan.contains("secret"), "plans never show secrets: {plan}");
    let c = reg.chap_for_target(&reg.target_by_tid(1).unwrap()).unwrap();
    assert_eq!(c.incoming[0].secret, b"alice-secret-34");
    assert!(reg.chap_for_discovery().is_some());
    // Accounts and bindings dropped from the file go.
    let cut = "[[target]]\ntid = 1\nname = \"iqn.2026-11.org.example:chap\"\ninitiator_address = [\"ALL\"]\n";
    let plan = apply(&reg, "a.toml", cut, false, false).unwrap();
    assert!(plan.contains("remove account alice"), "{plan}");
    assert!(reg
        .chap_for_target(&reg.target_by_tid(1).unwrap())
        .is_none());
    assert!(reg.chap_for_discovery().is_none());
    assert!(running(&reg).accounts.is_empty());
}

/// The plan for a target whose only LU is `lun` below, changed to `next`.
fn plan_between(lun: &str, next: &str) -> Vec<Step> {
    let conf = |l: &str| {
        let text = format!("[[target]]\ntid = 1\nname = \"iqn.2026-11.org.example:rbd\"\n\n[[target.lun]]\nlun = 1\n{l}");
        parse("rtgt.toml", &text).unwrap().targets.remove(0)
    };
    let (c, d) = (conf(lun), conf(next));
    let (mut steps, mut notes) = (Vec::new(), Vec::new());
    plan_target(&c, &d, &mut steps, &mut notes).unwrap();
    steps
}

#[test]
fn changed_rbd_bsopts_create_the_lu_again() {
    let rbd = "bstype = \"rbd\"\nbacking_store = \"pool/img\"\n";
    let a = format!("{rbd}bsopts = \"conf=/etc/ceph/a.conf;id=gw\"\n");
    // The same options in another order or separator are no change.
    let same = format!("{rbd}bsopts = \"id=gw,conf=/etc/ceph/a.conf\"\n");
    assert!(plan_between(&a, &same).is_empty());
    // Another cluster: the LU is removed (a step that disrupts the target, so refused
    // while in use unless forced) and created with the new options.
    let b = format!("{rbd}bsopts = \"conf=/etc/ceph/b.conf;id=gw\"\n");
    let steps = plan_between(&a, &b);
    let what: Vec<&str> = steps.iter().map(|s| s.what.as_str()).collect();
    assert_eq!(steps.len(), 2, "{what:?}");
    assert_eq!(
        what[0],
        "remove tid 1 lun 1 (to create it again with the new bsopts)"
    );
    assert_eq!(steps[0].disrupts, Some(1));
    assert_eq!(steps[1].request.op, "new");
    assert_eq!(
        steps[1].request.bsopts.as_deref(),
        Some("conf=/etc/ceph/b.conf;id=gw")
    );
    // Dropping the options is a change too.
    assert_eq!(plan_between(&a, rbd).len(), 2);
    // A glfs LU's options likewise (bs_glfs's logfile=, loglevel=, rtgt's timeout=).
    let glfs = "bstype = \"glfs\"\nbacking_store = \"vol@127.0.0.2:disk.img\"\n";
    let a = format!("{glfs}bsopts = \"loglevel=4;timeout=10\"\n");
    let same = format!("{glfs}bsopts = \"timeout=10,loglevel=4\"\n");
    assert!(plan_between(&a, &same).is_empty());
    let steps = plan_between(&a, &format!("{glfs}bsopts = \"timeout=5\"\n"));
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[1].request.bstype.as_deref(), Some("glfs"));
    assert_eq!(steps[1].request.bsopts.as_deref(), Some("timeout=5"));
    // Other stores have no options to compare.
    let null = "bstype = \"null\"\nsize = \"1G\"\n";
    assert!(plan_between(null, &format!("{null}bsopts = \"size=1G\"\n")).is_empty());
}
