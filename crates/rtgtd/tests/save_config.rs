//! `rtgtd --save-config FILE`: every change is written to FILE as it happens, and a
//! restart with `--config FILE` serves exactly what ran before: targets, LUNs, VPD 80h
//! serials and 83h designators, ACLs, CHAP accounts and their bindings.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{sparse_file, tool, tool_ok, Daemon, TempDir, GIB};

const IQN: &str = "iqn.2026-11.org.example:saved";

/// `show` without what differs between two runs (I/O counters, sessions).
fn stable_show(d: &Daemon) -> String {
    let t = d.adm_ok(&["--op", "show", "--mode", "target"]);
    let a = d.adm_ok(&["--op", "show", "--mode", "account"]);
    t.lines()
        .chain(a.lines())
        .filter(|l| !l.contains("Backing store I/O"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Waits until `file` contains `what` (the save follows a change within milliseconds).
fn wait_saved(file: &Path, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        if text.contains(what) || Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_restart_with_the_saved_configuration_serves_what_ran() {
    let data = TempDir::new("saved");
    let img = data.join("disk.img");
    sparse_file(&img, GIB);
    let file = data.join("rtgt.toml");
    let mut d = Daemon::start_args(&["--save-config", file.to_str().unwrap()]);
    // Written at start, before any change (rtgtd's control socket answers a moment
    // before: poll).
    wait_saved(&file, "rtgt configuration");
    assert!(file.exists(), "{}", d.log());
    let img_s = img.to_str().unwrap();
    let lines = [
        format!("--op new --mode target --tid 1 -T {IQN}"),
        format!("--op new --mode logicalunit --tid 1 --lun 1 -b {img_s} --bsoflags sync"),
        "--op new --mode logicalunit --tid 1 --lun 2 -E null --bsopts size=2G --blocksize 4096 \
         --params scsi_sn=SAVEDSN,vendor_id=ACME,write_cache=off"
            .into(),
        "--op new --mode logicalunit --tid 1 --lun 3 -E null --bsopts size=1G".into(),
        "--op delete --mode logicalunit --tid 1 --lun 3".into(),
        "--op bind --mode target --tid 1 -I 127.0.0.1".into(),
        "--op bind --mode target --tid 1 -Q iqn.2026-11.org.example:host".into(),
        "--op new --mode account --user alice --password alice-secret-12".into(),
        "--op new --mode account --user tgt1 --password target-secret-1".into(),
        "--op bind --mode account --tid 1 --user alice".into(),
        "--op bind --mode account --tid 1 --user tgt1 --outgoing".into(),
        "--op new --mode target --tid 2 -T iqn.2026-11.org.example:second".into(),
        "--op new --mode logicalunit --tid 2 --lun 1 -E null --bsopts size=1G".into(),
        "--op bind --mode target --tid 2 -I ALL".into(),
    ];
    for l in &lines {
        let args: Vec<&str> = l.split_whitespace().collect();
        d.adm_ok(&args);
    }
    let text = wait_saved(&file, "outgoing_user = \"tgt1\"");
    assert!(text.contains("outgoing_user = \"tgt1\""), "{text}");
    assert!(text.contains("scsi_sn = \"SAVEDSN\""), "{text}");
    assert!(!text.contains("lun = 3"), "{text}");
    assert!(data.join("rtgt.toml.bak").exists());
    let before = stable_show(&d);
    let have = common::have_tool("iscsi-inq");
    let chap_url = |d: &Daemon, lun: u32| {
        format!(
            "iscsi://alice%alice-secret-12@127.0.0.1:{}/{IQN}/{lun}",
            d.port
        )
    };
    let vpd = |d: &Daemon| -> Vec<String> {
        if !have {
            return vec![];
        }
        let mut v = Vec::new();
        for lun in [1, 2] {
            for page in ["128", "131"] {
                v.push(tool_ok(
                    "iscsi-inq",
                    &["-e", "1", "-c", page, &chap_url(d, lun)],
                ));
            }
        }
        v
    };
    let vpd_before = vpd(&d);
    if have {
        assert!(vpd_before[2].contains("SAVEDSN"), "{vpd_before:?}");
    }
    // A crash, not a clean stop: what was saved is what the changes left.
    d.kill();
    drop(d);

    let d = Daemon::start_args(&[
        "--config",
        file.to_str().unwrap(),
        "--save-config",
        file.to_str().unwrap(),
    ]);
    assert_eq!(stable_show(&d), before);
    assert_eq!(vpd(&d), vpd_before);
    if have {
        // CHAP is still required: without the account the login is refused.
        let o = tool("iscsi-inq", &[&d.url(IQN, 1)]);
        assert!(!o.status.success(), "login without CHAP must fail");
        let o = tool(
            "iscsi-inq",
            &[&format!(
                "iscsi://alice%wrong-secret-1@127.0.0.1:{}/{IQN}/1",
                d.port
            )],
        );
        assert!(!o.status.success(), "login with a wrong secret must fail");
    }
    assert!(d.log().contains("loaded: 2 targets, 3 LUNs"), "{}", d.log());
}
