//! rtgtd configured with rtgtadm's (tgtadm's) syntax, driven by libiscsi's command-line
//! initiators; and the one-command demo.

mod common;

use common::{tool_ok, Daemon, TempDir, GIB};

const IQN: &str = "iqn.2026-11.org.example:disk1";

#[test]
fn rtgtadm_configures_a_file_lun_that_libiscsi_sees() {
    if !(common::have_tool("iscsi-ls")
        && common::have_tool("iscsi-inq")
        && common::have_tool("iscsi-readcapacity16"))
    {
        return;
    }
    let d = Daemon::start();
    let img = d.add_disk(1, IQN, GIB, &[]);

    // `show` reads like tgtadm's: the target, its LUN and backing store.
    let show = d.adm_ok(&["--op", "show", "--mode", "target"]);
    assert!(
        show.contains(&format!("Target 1: {IQN}")),
        "show output:\n{show}"
    );
    assert!(
        show.contains(img.to_str().unwrap()),
        "show output lacks the backing store:\n{show}"
    );

    // iscsi-ls -s: discovery lists the target, the session lists LUN 1 as a disk.
    let ls = tool_ok("iscsi-ls", &["-s", &d.portal_url()]);
    assert!(
        ls.contains(&format!("Target:{IQN}")),
        "iscsi-ls output:\n{ls}"
    );
    let lun1 = ls
        .lines()
        .find(|l| l.trim_start().starts_with("Lun:1 "))
        .unwrap_or_else(|| panic!("iscsi-ls lists no LUN 1:\n{ls}"));
    assert!(
        lun1.contains("DIRECT_ACCESS"),
        "LUN 1 is not a disk: {lun1}"
    );

    // Standard INQUIRY.
    let url = d.url(IQN, 1);
    let inq = tool_ok("iscsi-inq", &[&url]);
    assert!(
        inq.contains("Peripheral Device Type:DIRECT_ACCESS"),
        "iscsi-inq:\n{inq}"
    );
    assert!(
        inq.contains("Peripheral Qualifier:CONNECTED"),
        "iscsi-inq:\n{inq}"
    );
    assert!(inq.contains("Vendor:"), "iscsi-inq:\n{inq}");
    assert!(inq.contains("Product:"), "iscsi-inq:\n{inq}");

    // Supported VPD pages include the unit serial number and device identification.
    let vpd = tool_ok("iscsi-inq", &["-e", "1", &url]);
    assert!(vpd.contains("0x80"), "no VPD page 0x80:\n{vpd}");
    assert!(vpd.contains("0x83"), "no VPD page 0x83:\n{vpd}");

    // READ CAPACITY 16: 1 GiB in 512-byte blocks.
    let rc = tool_ok("iscsi-readcapacity16", &[&url]);
    assert!(
        rc.contains("LOGICAL BLOCK LENGTH IN BYTES:512"),
        "iscsi-readcapacity16:\n{rc}"
    );
    assert!(
        rc.contains("RETURNED LOGICAL BLOCK ADDRESS:2097151"),
        "iscsi-readcapacity16:\n{rc}"
    );
    assert!(
        rc.contains(&format!("Total size:{GIB}")),
        "iscsi-readcapacity16:\n{rc}"
    );
}

#[test]
fn blocksize_4096_lun_reports_4096_byte_blocks() {
    if !common::have_tool("iscsi-readcapacity16") {
        return;
    }
    let d = Daemon::start();
    d.add_disk(1, IQN, GIB, &["--blocksize", "4096"]);
    let rc = tool_ok("iscsi-readcapacity16", &[&d.url(IQN, 1)]);
    assert!(
        rc.contains("LOGICAL BLOCK LENGTH IN BYTES:4096"),
        "iscsi-readcapacity16:\n{rc}"
    );
    assert!(
        rc.contains("RETURNED LOGICAL BLOCK ADDRESS:262143"),
        "iscsi-readcapacity16:\n{rc}"
    );
    assert!(
        rc.contains(&format!("Total size:{GIB}")),
        "iscsi-readcapacity16:\n{rc}"
    );
}

#[test]
fn demo_serves_a_1gib_disk() {
    if !(common::have_tool("iscsi-ls") && common::have_tool("iscsi-readcapacity16")) {
        return;
    }
    let dir = TempDir::new("demo");
    let state = dir.join("state");
    let port = common::free_port();
    let portal = format!("portal=127.0.0.1:{port}");
    let d = Daemon::spawn(
        dir,
        port,
        &[
            "--demo",
            "-f",
            "--iscsi",
            &portal,
            "--state-dir",
            state.to_str().unwrap(),
        ],
    );

    let img = state.join("demo.img");
    let meta = std::fs::metadata(&img).unwrap_or_else(|e| panic!("{}: {e}", img.display()));
    assert_eq!(meta.len(), GIB, "demo.img is not 1 GiB");

    let demo = "iqn.2026-11.org.rtgt:demo";
    let ls = tool_ok("iscsi-ls", &["-s", &d.portal_url()]);
    assert!(
        ls.contains(&format!("Target:{demo}")),
        "iscsi-ls output:\n{ls}"
    );
    assert!(ls.contains("Lun:1"), "iscsi-ls output:\n{ls}");
    let rc = tool_ok("iscsi-readcapacity16", &[&d.url(demo, 1)]);
    assert!(
        rc.contains(&format!("Total size:{GIB}")),
        "iscsi-readcapacity16:\n{rc}"
    );
}
