//! `rtgtadm import-targets-conf`: the sample tgt configuration (examples/targets.conf)
//! imported into a running rtgtd serves the LUNs tgt-admin would have set up, to
//! libiscsi, with the same CHAP accounts and ACLs.

mod common;

use common::{sparse_file, tool, tool_ok, Daemon, TempDir, GIB};

const SAMPLE: &str = include_str!("../../../examples/targets.conf");

/// The `show` lines of LUN 1 of `tid`.
fn lun1(d: &Daemon, tid: u32) -> String {
    let show = d.adm_ok(&[
        "--op",
        "show",
        "--mode",
        "target",
        "--tid",
        &tid.to_string(),
    ]);
    let from = show.find("LUN: 1\n").expect("LUN 1 listed");
    show[from..].split("LUN: 2\n").next().unwrap().to_string()
}

#[test]
fn the_sample_targets_conf_is_imported_and_served() {
    let dir = TempDir::new("tgtconf");
    let img_dir = dir.join("img");
    std::fs::create_dir_all(&img_dir).unwrap();
    for f in ["web.img", "db-data.img", "db-log.img", "archive.img"] {
        sparse_file(&img_dir.join(f), GIB);
    }
    let conf = dir.join("targets.conf");
    std::fs::write(
        &conf,
        SAMPLE.replace("/var/lib/rtgt-example", img_dir.to_str().unwrap()),
    )
    .unwrap();
    let d = Daemon::start();
    let conf_s = conf.to_str().unwrap();
    // Printing changes nothing and lists what it leaves out.
    let o = d.adm(&["import-targets-conf", conf_s]);
    assert!(o.status.success(), "{}", common::text(&o.stderr));
    let err = common::text(&o.stderr);
    assert!(err.contains("include /etc/tgt/conf.d/*.conf"), "{err}");
    assert!(err.contains("mode_page"), "{err}");
    assert!(d.adm_ok(&["--op", "show", "--mode", "target"]).is_empty());
    // --apply makes it the running configuration.
    let plan = d.adm_ok(&["import-targets-conf", conf_s, "--apply"]);
    assert!(
        plan.contains("add target tid 2 iqn.2026-11.org.example:db"),
        "{plan}"
    );
    let show = d.adm_ok(&["--op", "show", "--mode", "target"]);
    assert!(
        show.contains("Target 3: iqn.2026-11.org.example:web"),
        "{show}"
    );

    if !common::have_tool("iscsi-inq") {
        return;
    }
    let port = d.port;
    let url = |creds: &str, iqn: &str, lun: u32| {
        format!("iscsi://{creds}127.0.0.1:{port}/iqn.2026-11.org.example:{iqn}/{lun}")
    };
    // Discovery lists all three (no discovery account in targets.conf).
    let ls = tool_ok("iscsi-ls", &[&d.portal_url()]);
    for t in ["web", "db", "archive"] {
        assert!(ls.contains(&format!("iqn.2026-11.org.example:{t}")), "{ls}");
    }
    // web: no CHAP, vendor WEBCO, write cache off (WCE=0 in the caching mode page).
    let inq = tool_ok("iscsi-inq", &[&url("", "web", 1)]);
    assert!(inq.contains("WEBCO"), "{inq}");
    let lu = lun1(&d, 3);
    assert!(lu.contains("Write cache: off"), "{lu}");
    // db: CHAP required; LUN 1 4096-byte blocks, serial DBDATA01; LUN 2 lbppbe 3.
    assert!(!tool("iscsi-inq", &[&url("", "db", 1)]).status.success());
    assert!(
        !tool("iscsi-inq", &[&url("dbuser%wrong-secret-00@", "db", 1)])
            .status
            .success()
    );
    let db = |lun| url("dbuser%db-secret-123@", "db", lun);
    let sn = tool_ok("iscsi-inq", &["-e", "1", "-c", "128", &db(1)]);
    assert!(sn.contains("DBDATA01"), "{sn}");
    let cap = tool_ok("iscsi-readcapacity16", &[&db(1)]);
    assert!(cap.contains("LOGICAL BLOCK LENGTH IN BYTES:4096"), "{cap}");
    let cap = tool_ok("iscsi-readcapacity16", &[&db(2)]);
    assert!(cap.contains("LOGICAL BLOCK LENGTH IN BYTES:512"), "{cap}");
    assert!(
        cap.contains("LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT:3"),
        "{cap}"
    );
    let sn = tool_ok("iscsi-inq", &["-e", "1", "-c", "128", &db(2)]);
    assert!(sn.contains("DBLOG01"), "{sn}");
    // archive: anyone may try (no initiator-address), only archivist gets in; read-only.
    assert!(!tool("iscsi-inq", &[&url("", "archive", 1)])
        .status
        .success());
    let a = url("archivist%archive-secret-7@", "archive", 1);
    let inq = tool_ok("iscsi-inq", &[&a]);
    assert!(inq.contains("ARCHIVE"), "{inq}");
    let lu = lun1(&d, 1);
    assert!(lu.contains("Readonly: Yes"), "{lu}");
}
