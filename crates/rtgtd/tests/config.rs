//! The configuration file: `rtgtd --config`, `rtgtadm config dump` / `config apply`,
//! SIGHUP; a restart from a dump serves the same LUs with the same identities.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{sparse_file, tool_ok, Daemon, TempDir, GIB};

const IQN: &str = "iqn.2026-11.org.example:cfg";

/// `show` without what differs between two runs (I/O counters, sessions).
fn stable_show(d: &Daemon) -> String {
    d.adm_ok(&["--op", "show", "--mode", "target"])
        .lines()
        .filter(|l| !l.contains("Backing store I/O"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn start_with_config(file: &std::path::Path) -> Daemon {
    Daemon::start_args(&["--config", file.to_str().unwrap()])
}

#[test]
fn restart_from_a_dump_serves_the_same_lus() {
    let have = common::have_tool("iscsi-inq");
    let data = TempDir::new("cfgdata");
    let img = data.join("disk.img");
    sparse_file(&img, GIB);
    let d = Daemon::start();
    for args in [
        vec!["--op", "new", "--mode", "target", "--tid", "1", "-T", IQN],
        vec![
            "--op",
            "new",
            "--mode",
            "logicalunit",
            "--tid",
            "1",
            "--lun",
            "1",
            "-b",
            img.to_str().unwrap(),
            "--bsoflags",
            "sync",
        ],
        vec![
            "--op",
            "new",
            "--mode",
            "logicalunit",
            "--tid",
            "1",
            "--lun",
            "2",
            "-E",
            "null",
            "--bsopts",
            "size=2G",
            "--blocksize",
            "4096",
            "--params",
            "scsi_sn=MYSERIAL,vendor_id=ACME,write_cache=off",
        ],
        vec![
            "--op",
            "bind",
            "--mode",
            "target",
            "--tid",
            "1",
            "-I",
            "127.0.0.1",
        ],
        vec![
            "--op",
            "bind",
            "--mode",
            "target",
            "--tid",
            "1",
            "-Q",
            "iqn.2026-11.org.example:host",
        ],
        vec![
            "--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL",
        ],
        vec![
            "--op",
            "update",
            "--mode",
            "target",
            "--tid",
            "1",
            "--name",
            "MaxRecvDataSegmentLength",
            "--value",
            "65536",
        ],
    ] {
        d.adm_ok(&args);
    }
    let before = stable_show(&d);
    let vpd = |d: &Daemon, lun: u32| -> Vec<String> {
        if !have {
            return vec![];
        }
        ["128", "131"]
            .iter()
            .map(|page| tool_ok("iscsi-inq", &["-e", "1", "-c", page, &d.url(IQN, lun)]))
            .collect()
    };
    let vpd_before = [vpd(&d, 1), vpd(&d, 2)];
    let file = data.join("rtgt.toml");
    d.adm_ok(&["config", "dump", file.to_str().unwrap()]);
    // A second dump keeps the first as the backup.
    d.adm_ok(&["config", "dump", file.to_str().unwrap()]);
    assert!(data.join("rtgt.toml.bak").exists());
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("scsi_sn = \"MYSERIAL\""), "{text}");
    d.adm_ok(&["--op", "delete", "--mode", "system", "--force"]);
    drop(d);

    let d = start_with_config(&file);
    assert_eq!(stable_show(&d), before);
    assert_eq!([vpd(&d, 1), vpd(&d, 2)], vpd_before);
    if have {
        assert!(vpd_before[1][0].contains("MYSERIAL"), "{:?}", vpd_before[1]);
    }
    assert!(d.log().contains("loaded: 1 targets, 2 LUNs"), "{}", d.log());
}

#[test]
fn a_bad_config_file_stops_rtgtd_with_file_line_and_key() {
    let dir = TempDir::new("cfgbad");
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[[target]]\ntid = 1\nname = \"iqn.2026-11.a:b\"\n\n[[target.lun]]\nlun = 1\nblocksize = \"big\"\n",
    )
    .unwrap();
    let port = common::free_port().to_string();
    let run = |file: &std::path::Path| {
        let o = Command::new(common::rtgtd_bin())
            .args([
                "-f",
                "--iscsi",
                &format!("portal=127.0.0.1:{port}"),
                "--config",
            ])
            .arg(file)
            .env("RTGT_RUN_DIR", dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (ok, err) = run(&bad);
    assert!(!ok);
    assert!(
        err.contains("bad.toml:7:") && err.contains("blocksize"),
        "{err}"
    );
    // A file the registry refuses (a missing backing file) names the LUN's line.
    std::fs::write(
        &bad,
        "[[target]]\ntid = 1\nname = \"iqn.2026-11.a:b\"\n\n[[target.lun]]\nlun = 4\nbacking_store = \"/nonexistent.img\"\n",
    )
    .unwrap();
    let (ok, err) = run(&bad);
    assert!(!ok);
    assert!(
        err.contains("bad.toml:6:") && err.contains("No such file"),
        "{err}"
    );
    let (ok, err) = run(&dir.join("missing.toml"));
    assert!(!ok && err.contains("missing.toml"), "{err}");
}

fn config(luns: &[u64]) -> String {
    let mut s = format!("[[target]]\ntid = 1\nname = \"{IQN}\"\ninitiator_address = [\"ALL\"]\n");
    for l in luns {
        s.push_str(&format!(
            "\n[[target.lun]]\nlun = {l}\nbstype = \"null\"\nsize = \"1G\"\n"
        ));
    }
    s
}

#[test]
fn config_apply_adds_a_lun_while_a_session_runs_on_another() {
    let dir = TempDir::new("cfgapply");
    let file = dir.join("rtgt.toml");
    std::fs::write(&file, config(&[1])).unwrap();
    let d = start_with_config(&file);
    let next = dir.join("next.toml");
    std::fs::write(&next, config(&[1, 2])).unwrap();
    let plan = d.adm_ok(&["config", "apply", next.to_str().unwrap(), "--dry-run"]);
    assert_eq!(plan.trim(), "would add tid 1 lun 2 (no backing store)");
    assert!(!stable_show(&d).contains("LUN: 2"));

    let qemu = common::have_qemu_iscsi();
    let mut bench = qemu.then(|| {
        Command::new("qemu-img")
            .args(["bench", "-f", "raw", "-c", "40000", "-d", "8", "-s", "4k"])
            .arg(d.url(IQN, 1))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    });
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    d.adm_ok(&["config", "apply", next.to_str().unwrap()]);
    eprintln!("config apply of one LUN: {:?}", t.elapsed());
    if common::have_tool("iscsi-ls") {
        let ls = tool_ok("iscsi-ls", &["-s", &d.portal_url()]);
        assert!(ls.contains("Lun:2 "), "{ls}");
    }
    // Removing a LUN of a target with a session is refused without --force.
    if let Some(b) = bench.as_mut() {
        assert!(
            b.try_wait().unwrap().is_none(),
            "qemu-img bench ended too soon"
        );
        let o = d.adm(&["config", "apply", file.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(16), "{o:?}");
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("--force"),
            "{o:?}"
        );
        assert!(stable_show(&d).contains("LUN: 2"));
    }
    if let Some(b) = bench {
        let o = b.wait_with_output().unwrap();
        assert!(o.status.success(), "qemu-img bench: {o:?}");
    }
    // SIGHUP applies the --config file again.
    std::fs::write(&file, config(&[1, 2, 3])).unwrap();
    // SAFETY: signalling our own child.
    unsafe { libc_kill(d.pid() as i32, 1) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !stable_show(&d).contains("LUN: 3") {
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not add LUN 3:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

#[test]
fn readiness_is_notified_over_notify_socket() {
    let dir = TempDir::new("cfgnotify");
    let sock_path = dir.join("notify");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let d = Daemon::start_env(&[], &[("NOTIFY_SOCKET", sock_path.to_str().unwrap())]);
    let mut buf = [0u8; 256];
    let n = sock.recv(&mut buf).expect("no READY=1 from rtgtd");
    assert_eq!(&buf[..n], b"READY=1");
    // SAFETY: signalling our own child.
    unsafe { libc_kill(d.pid() as i32, 1) };
    let n = sock.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"RELOADING=1");
    let n = sock.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"READY=1");
}
