//! rtgtd and rtgtadm options beyond the basics: detaching like tgtd, read-only LUNs, the
//! null backing store, O_SYNC / O_DIRECT backing files.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::raw::RawConn;
use common::{check, port_accepts, rtgtadm_bin, rtgtd_bin, run_timeout, Daemon, TempDir, GIB};
use rtgt_iscsi::pdu::op;

const IQN: &str = "iqn.2026-11.org.example:disk1";

/// A detached rtgtd found through its private RTGT_RUN_DIR; stopped on drop with
/// `rtgtadm --op delete --mode system`, or killed if that fails.
struct Detached {
    dir: TempDir,
}

impl Detached {
    fn run_dir(&self) -> std::path::PathBuf {
        self.dir.join("run")
    }

    fn adm(&self, args: &[&str]) -> std::process::Output {
        run_timeout(
            Command::new(rtgtadm_bin())
                .args(["-C", "4", "--lld", "iscsi"])
                .args(args)
                .env("RTGT_RUN_DIR", self.run_dir()),
            Duration::from_secs(30),
        )
    }

    /// Pids of processes whose environment has our RTGT_RUN_DIR (only our daemon).
    fn pids(&self) -> Vec<i32> {
        let needle = format!("RTGT_RUN_DIR={}", self.run_dir().display());
        let mut out = Vec::new();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if pid == std::process::id() as i32 {
                continue;
            }
            let Ok(env) = std::fs::read(e.path().join("environ")) else {
                continue;
            };
            let exe = std::fs::read_link(e.path().join("exe")).unwrap_or_default();
            if exe.file_name() == rtgtd_bin().file_name()
                && env.split(|b| *b == 0).any(|v| v == needle.as_bytes())
            {
                out.push(pid);
            }
        }
        out
    }
}

impl Drop for Detached {
    fn drop(&mut self) {
        let _ = self.adm(&["--op", "delete", "--mode", "system", "--force"]);
        std::thread::sleep(Duration::from_millis(200));
        for pid in self.pids() {
            // SAFETY: kill(2) on the daemon this test started (matched by its private dir).
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

#[test]
fn rtgtd_without_f_detaches_and_serves() {
    let d = Detached {
        dir: TempDir::new("detach"),
    };
    std::fs::create_dir_all(d.run_dir()).unwrap();
    let port = common::free_port();
    let portal = format!("portal=127.0.0.1:{port}");
    let t0 = Instant::now();
    let o = run_timeout(
        Command::new(rtgtd_bin())
            .args(["-C", "4", "--iscsi", &portal])
            .env("RTGT_RUN_DIR", d.run_dir()),
        Duration::from_secs(30),
    );
    check("rtgtd (detaching)", &o);
    assert!(
        t0.elapsed() < Duration::from_secs(20),
        "rtgtd took too long to detach"
    );

    // The detached daemon listens and answers rtgtadm.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !port_accepts(port) {
        assert!(
            Instant::now() < deadline,
            "the detached rtgtd doesn't listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!d.pids().is_empty(), "no detached rtgtd process found");
    let img = d.dir.join("lun.img");
    common::sparse_file(&img, 64 << 20);
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
        ],
        vec![
            "--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL",
        ],
    ] {
        let o = d.adm(&args);
        check(&format!("rtgtadm {}", args.join(" ")), &o);
    }
    let mut c = RawConn::session(port, IQN);
    c.assert_works();
    c.close();

    // `--op delete --mode system` stops it (--force: it still has a target, as in tgtadm).
    let o = d.adm(&["--op", "delete", "--mode", "system", "--force"]);
    check("rtgtadm --op delete --mode system --force", &o);
    let deadline = Instant::now() + Duration::from_secs(20);
    while port_accepts(port) || !d.pids().is_empty() {
        assert!(
            Instant::now() < deadline,
            "rtgtd still running after --op delete --mode system"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends WRITE(10) of one 512-byte block at LBA 0 as immediate data; returns the response.
fn write_one_block(c: &mut RawConn) -> rtgt_iscsi::pdu::Pdu {
    let sn = c.cmd_sn;
    let cdb = [0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0];
    let mut p = c.scsi_cmd(1, &cdb, 0, sn);
    p.set_flags(0x80 | 0x20 | 0x01); // F, W, SIMPLE
    p.set_u32(20, 512);
    p.data = vec![0xa5; 512];
    c.cmd_sn = c.cmd_sn.wrapping_add(1);
    c.send(&p);
    let r = c.recv();
    assert_eq!(
        r.opcode(),
        op::SCSI_RSP,
        "expected a SCSI Response, got {r:?}"
    );
    c.exp_stat_sn = r.stat_sn().wrapping_add(1);
    r
}

/// The sense key of a CHECK CONDITION response (sense data follows a 2-byte length).
fn sense_key(r: &rtgt_iscsi::pdu::Pdu) -> Option<u8> {
    if r.bhs[3] != 0x02 || r.data.len() < 2 + 3 {
        return None;
    }
    let sense = &r.data[2..];
    Some(match sense[0] & 0x7f {
        0x72 | 0x73 => sense[1] & 0x0f,
        _ => sense[2] & 0x0f,
    })
}

/// Writes until the unit attentions of a new LU are consumed; returns the final response.
fn write_after_unit_attentions(c: &mut RawConn) -> rtgt_iscsi::pdu::Pdu {
    for _ in 0..4 {
        let r = write_one_block(c);
        if sense_key(&r) != Some(0x06) {
            return r;
        }
    }
    panic!("unit attentions never cleared");
}

#[test]
fn readonly_lun_refuses_writes() {
    let d = Daemon::start();
    let img = d.add_disk(1, IQN, GIB, &["--params", "readonly=1"]);
    let mut c = RawConn::session(d.port, IQN);
    let r = write_after_unit_attentions(&mut c);
    assert_eq!(
        r.bhs[3], 0x02,
        "a write to a readonly LUN must get CHECK CONDITION"
    );
    assert_eq!(sense_key(&r), Some(0x07), "expected sense key DATA PROTECT");
    let data = std::fs::read(&img).map(|v| v[..512].to_vec()).unwrap();
    assert!(
        data.iter().all(|b| *b == 0),
        "the readonly LUN's file was written"
    );

    // `show` says so.
    let show = d.adm_ok(&["--op", "show", "--mode", "target"]);
    assert!(show.contains("Readonly: Yes"), "show output:\n{show}");
}

#[test]
fn sync_lun_writes_reach_the_file() {
    let d = Daemon::start();
    let img = d.add_disk(1, IQN, GIB, &["--bsoflags", "sync"]);
    let mut c = RawConn::session(d.port, IQN);
    let r = write_after_unit_attentions(&mut c);
    assert_eq!(r.bhs[3], 0x00, "WRITE(10) status {:#04x}", r.bhs[3]);
    let data = std::fs::read(&img).map(|v| v[..512].to_vec()).unwrap();
    assert!(
        data.iter().all(|b| *b == 0xa5),
        "the write is not in the backing file"
    );
    let show = d.adm_ok(&["--op", "show", "--mode", "target"]);
    let flags = show
        .lines()
        .filter(|l| l.contains("Backing store flags:"))
        .any(|l| l.to_lowercase().contains("sync"));
    assert!(flags, "show output lacks the sync flag:\n{show}");
}

#[test]
fn direct_lun_writes_reach_the_file() {
    let d = Daemon::start();
    // O_DIRECT needs a filesystem that supports it (tmpfs doesn't).
    let probe = d.dir.join("probe");
    std::fs::write(&probe, [0u8; 4096]).unwrap();
    let path = std::ffi::CString::new(probe.to_str().unwrap()).unwrap();
    // SAFETY: open(2)/close(2) on a path we own.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_DIRECT) };
    if fd < 0 {
        eprintln!(
            "SKIPPED: {} doesn't support O_DIRECT",
            d.dir.path().display()
        );
        return;
    }
    unsafe { libc::close(fd) };

    let img = d.add_disk(1, IQN, GIB, &["--bsoflags", "direct"]);
    let mut c = RawConn::session(d.port, IQN);
    let r = write_after_unit_attentions(&mut c);
    assert_eq!(r.bhs[3], 0x00, "WRITE(10) status {:#04x}", r.bhs[3]);
    let data = std::fs::read(&img).map(|v| v[..512].to_vec()).unwrap();
    assert!(
        data.iter().all(|b| *b == 0xa5),
        "the write is not in the backing file"
    );
}

#[test]
fn null_lun_accepts_writes_and_reads_zeros() {
    if !common::have_qemu_iscsi() {
        return;
    }
    let d = Daemon::start();
    d.new_target("1", IQN);
    d.adm_ok(&[
        "--op",
        "new",
        "--mode",
        "logicalunit",
        "--tid",
        "1",
        "--lun",
        "1",
        "--bstype",
        "null",
        "-b",
        "/dev/null",
        "--bsopts",
        "size=1G",
    ]);
    d.bind_all("1");
    let url = d.url(IQN, 1);
    for w in [true, false] {
        let mut args = vec!["bench", "-f", "raw", "-c", "1000", "-d", "8", "-s", "64k"];
        if w {
            args.push("-w");
        }
        args.push(&url);
        let o = run_timeout(
            Command::new("qemu-img").args(&args),
            Duration::from_secs(300),
        );
        check(&format!("qemu-img {}", args.join(" ")), &o);
    }
    let info = run_timeout(
        Command::new("qemu-img").args(["info", "-f", "raw", &url]),
        Duration::from_secs(60),
    );
    let info = check("qemu-img info", &info);
    assert!(info.contains("1 GiB"), "qemu-img info:\n{info}");
}
