//! Device handlers in their own process (bstype handler, docs/handler-protocol.md):
//! `rtgt-fileio` with fileio_tgt's modes round-trips 64 MiB byte for byte through
//! qemu-img; a `kill -9` of it in the middle of a copy loses nothing and drops no
//! session; a handler that breaks the protocol is disconnected with a log line naming
//! it, its LU goes NOT READY, and another LU of the same target is unaffected.
//!
//! rtgt-fileio is found next to rtgtd (`cargo build --workspace` builds it) or by
//! env `RTGT_FILEIO`.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::raw::RawConn;
use common::scsi::{read10, write10, CHECK_CONDITION, GOOD, RESERVATION_CONFLICT};
use common::{check, prng_bytes, run_timeout, sparse_file, Daemon};
use rtgt_handler::client;
use rtgt_handler::layout::{self, Cpl};
use rtgt_handler::wire::{self, feature, Hello};

const IQN: &str = "iqn.2026-12.org.rtgt:handler";
const MIB: usize = 1 << 20;
const SIZE: usize = 64 * MIB;

fn fileio_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("RTGT_FILEIO") {
        return p.into();
    }
    let p = common::rtgtd_bin().with_file_name("rtgt-fileio");
    assert!(
        p.exists(),
        "{} not found: build it with `cargo build --workspace`",
        p.display()
    );
    p
}

/// A running rtgt-fileio, killed on drop.
struct Fileio(Child);

impl Fileio {
    fn start(d: &Daemon, args: &[&str]) -> Fileio {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.dir.join("fileio.log"))
            .unwrap();
        let c = Command::new(fileio_bin())
            .args(args)
            .env("RTGT_RUN_DIR", &d.run_dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start rtgt-fileio");
        Fileio(c)
    }
    fn kill9(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Fileio {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn qemu_img(args: &[&str]) -> String {
    let o = run_timeout(
        Command::new("qemu-img").args(args),
        Duration::from_secs(600),
    );
    check(&format!("qemu-img {}", args.join(" ")), &o)
}

fn show(d: &Daemon) -> String {
    d.adm_ok(&["--op", "show", "--mode", "target"])
}

/// Waits until `show` has `n` handler lines saying attached.
fn wait_attached(d: &Daemon, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = show(d);
        if s.matches("Handler: attached").count() >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "handler never attached:\n{s}\nrtgtd log:\n{}\nrtgt-fileio log:\n{}",
            d.log(),
            std::fs::read_to_string(d.dir.join("fileio.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Target 1 with handler LUs named `names` (LUN 1, 2, ...), bound to ALL.
fn handler_target(d: &Daemon, names: &[&str], extra: &[&str]) {
    d.new_target("1", IQN);
    for (i, name) in names.iter().enumerate() {
        let lun = (i + 1).to_string();
        let mut a = vec![
            "--op",
            "new",
            "--mode",
            "logicalunit",
            "--tid",
            "1",
            "--lun",
            &lun,
            "--bstype",
            "handler",
            "-b",
            name,
        ];
        a.extend_from_slice(extra);
        d.adm_ok(&a);
    }
    d.bind_all("1");
}

fn image(d: &Daemon, name: &str) -> PathBuf {
    let p = d.dir.join(name);
    sparse_file(&p, SIZE as u64);
    p
}

fn assert_same(got: &[u8], want: &[u8], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        panic!(
            "{what} differs at byte {i}: {:#04x}, expected {:#04x}",
            got[i], want[i]
        );
    }
}

/// Writes a random 64 MiB image through LUN `lun`, reads it back through it, and
/// checks both the bytes read back and (when `file` is given) the backing file.
fn round_trip(d: &Daemon, lun: u32, file: Option<&Path>, seed: u64) {
    let data = prng_bytes(seed, SIZE);
    let src = d.dir.join(&format!("src{lun}.raw"));
    std::fs::write(&src, &data).unwrap();
    let url = d.url(IQN, lun);
    qemu_img(&[
        "convert",
        "-n",
        "-f",
        "raw",
        "-O",
        "raw",
        src.to_str().unwrap(),
        &url,
    ]);
    let out = d.dir.join(&format!("out{lun}.raw"));
    qemu_img(&[
        "convert",
        "-f",
        "raw",
        "-O",
        "raw",
        &url,
        out.to_str().unwrap(),
    ]);
    assert_same(&std::fs::read(&out).unwrap(), &data, "the image read back");
    if let Some(f) = file {
        assert_same(&std::fs::read(f).unwrap(), &data, "the backing file");
    }
}

/// One LU served by rtgt-fileio with `args`, round-tripped.
fn mode_round_trip(args: &[&str], lu_extra: &[&str]) {
    if !common::have_qemu_iscsi() {
        return;
    }
    let d = Daemon::start();
    handler_target(&d, &["disk1"], lu_extra);
    let img = image(&d, "disk1.img");
    let mut a = args.to_vec();
    a.extend(["disk1", img.to_str().unwrap()]);
    let _h = Fileio::start(&d, &a);
    wait_attached(&d, 1);
    round_trip(&d, 1, Some(&img), 0x6669_6c65);
    let s = show(&d);
    assert!(s.contains("Backing store type: handler"), "{s}");
    assert!(
        s.contains("Handler counters: attaches 1, detaches 0, protocol errors 0"),
        "{s}"
    );
}

#[test]
fn fileio_round_trip_default() {
    mode_round_trip(&["-e", "2"], &[]);
}

#[test]
fn fileio_round_trip_write_through() {
    mode_round_trip(&["-t"], &[]);
}

#[test]
fn fileio_round_trip_direct() {
    mode_round_trip(&["-o", "-e", "2"], &[]);
}

#[test]
fn fileio_round_trip_nv_cache() {
    mode_round_trip(&["-c"], &[]);
}

#[test]
fn fileio_round_trip_4096_byte_blocks() {
    mode_round_trip(&["-b", "4096"], &["--blocksize", "4096"]);
}

/// A handler with another block size than its LU's is refused, and says why; so is one
/// with a volatile cache for a write-through LU.
#[test]
fn fileio_with_the_wrong_block_size_or_a_write_cache_is_refused() {
    let d = Daemon::start();
    handler_target(&d, &["disk1"], &[]);
    let img = image(&d, "disk1.img");
    let o = run_timeout(
        Command::new(fileio_bin())
            .args(["-b", "4096", "disk1", img.to_str().unwrap()])
            .env("RTGT_RUN_DIR", &d.run_dir),
        Duration::from_secs(30),
    );
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("block size differs"), "{err}");
    assert!(d
        .log()
        .contains("device handler refused: block size differs"));
}

#[test]
fn fileio_two_devices_in_one_process() {
    if !common::have_qemu_iscsi() {
        return;
    }
    let d = Daemon::start();
    handler_target(&d, &["disk1", "disk2"], &[]);
    let (i1, i2) = (image(&d, "disk1.img"), image(&d, "disk2.img"));
    let _h = Fileio::start(
        &d,
        &["disk1", i1.to_str().unwrap(), "disk2", i2.to_str().unwrap()],
    );
    wait_attached(&d, 2);
    round_trip(&d, 1, Some(&i1), 1);
    round_trip(&d, 2, Some(&i2), 2);
    // One process serves both.
    let s = show(&d);
    let pids: Vec<&str> = s
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Handler: attached, pid "))
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(pids.len(), 2, "{s}");
    assert_eq!(pids[0], pids[1], "{s}");
}

/// -n: writes are accepted and dropped, reads return zeroes; the file is untouched.
#[test]
fn fileio_nullio_reads_zeroes() {
    if !common::have_qemu_iscsi() {
        return;
    }
    let d = Daemon::start();
    handler_target(&d, &["disk1"], &[]);
    let img = d.dir.join("disk1.img");
    let pattern = prng_bytes(3, SIZE);
    std::fs::write(&img, &pattern).unwrap();
    let _h = Fileio::start(&d, &["-n", "disk1", img.to_str().unwrap()]);
    wait_attached(&d, 1);
    let src = d.dir.join("src.raw");
    std::fs::write(&src, prng_bytes(4, SIZE)).unwrap();
    let url = d.url(IQN, 1);
    qemu_img(&[
        "convert",
        "-n",
        "-f",
        "raw",
        "-O",
        "raw",
        src.to_str().unwrap(),
        &url,
    ]);
    let out = d.dir.join("out.raw");
    qemu_img(&[
        "convert",
        "-f",
        "raw",
        "-O",
        "raw",
        &url,
        out.to_str().unwrap(),
    ]);
    let got = std::fs::read(&out).unwrap();
    assert_eq!(got.len(), SIZE);
    assert!(got.iter().all(|&b| b == 0), "-n read back non-zero bytes");
    assert_same(&std::fs::read(&img).unwrap(), &pattern, "the file under -n");

    // Deleting the LU detaches its handler, which exits, and removes the socket.
    let mut h = _h;
    d.adm_ok(&[
        "--op",
        "delete",
        "--mode",
        "logicalunit",
        "--tid",
        "1",
        "--lun",
        "1",
    ]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "rtgt-fileio outlived its LU");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(d
        .log()
        .contains("device handler detached: its logical unit was deleted"));
    let sock = d.run_dir.join("handlers/disk1.sock");
    while sock.exists() {
        assert!(Instant::now() < deadline, "the socket outlived its LU");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// -r: the image reads back byte for byte; a WRITE gets DATA PROTECT, WRITE
/// PROTECTED (SBC-4 4.13: 07h/27h/00h); the file is unchanged.
#[test]
fn fileio_read_only_refuses_writes() {
    if !common::have_qemu_iscsi() {
        return;
    }
    let d = Daemon::start();
    handler_target(&d, &["disk1"], &[]);
    let img = d.dir.join("disk1.img");
    let data = prng_bytes(5, SIZE);
    std::fs::write(&img, &data).unwrap();
    let _h = Fileio::start(&d, &["-r", "disk1", img.to_str().unwrap()]);
    wait_attached(&d, 1);
    let out = d.dir.join("out.raw");
    qemu_img(&[
        "convert",
        "-f",
        "raw",
        "-O",
        "raw",
        &d.url(IQN, 1),
        out.to_str().unwrap(),
    ]);
    assert_same(&std::fs::read(&out).unwrap(), &data, "the image read back");

    let mut c = RawConn::session(d.port, IQN);
    let (_, r) = c.exec_after_uas(1, &write10(0, 1), 0, &[0xab; 512]);
    assert_eq!(r.status, CHECK_CONDITION);
    assert_eq!(r.sense_code(), (0x07, 0x27, 0x00), "{r:?}");
    // qemu-img's write fails too.
    let src = d.dir.join("src.raw");
    std::fs::write(&src, vec![1u8; MIB]).unwrap();
    let o = run_timeout(
        Command::new("qemu-img").args([
            "convert",
            "-n",
            "-f",
            "raw",
            "-O",
            "raw",
            src.to_str().unwrap(),
            &d.url(IQN, 1),
        ]),
        Duration::from_secs(120),
    );
    assert!(!o.status.success(), "a write to a -r LU succeeded");
    assert_same(&std::fs::read(&img).unwrap(), &data, "the file under -r");
}

/// The SCSI kind (`--device-type handler`, rtgt-fileio `-p call -f call`): every CDB
/// reaches the handler raw and its answer reaches the initiator, qemu-img round-trips
/// 64 MiB, an opcode only the handler knows works, and rtgtd keeps reservations: a
/// RESERVE through one session makes the other's WRITE a RESERVATION CONFLICT without
/// the handler being asked.
#[test]
fn fileio_scsi_kind_parses_every_cdb() {
    let d = Daemon::start();
    handler_target(&d, &["disk1"], &["--device-type", "handler"]);
    let img = image(&d, "disk1.img");
    let _h = Fileio::start(
        &d,
        &[
            "-p",
            "call",
            "-f",
            "call",
            "-e",
            "2",
            "disk1",
            img.to_str().unwrap(),
        ],
    );
    wait_attached(&d, 1);
    let mut c = RawConn::session(d.port, IQN);
    assert_eq!(c.exec_after_uas(1, &[0; 6], 0, &[]).1.status, GOOD);
    // Standard INQUIRY comes from the handler's disk: a direct-access device.
    let r = c.exec(1, &[0x12, 0, 0, 0, 96, 0], 96, &[]);
    assert_eq!(r.status, GOOD, "{r:?}");
    assert_eq!(r.data[0], 0x00, "peripheral qualifier 0, type disk");
    // REPORT HANDLER (vendor opcode C0h): only the handler knows it.
    let r = c.exec(1, &[0xc0, 0, 0, 0, 0, 0], 64, &[]);
    assert_eq!(r.status, GOOD, "{r:?}");
    assert_eq!(r.data, b"rtgt-fileio disk1 parse=call");
    // READ CAPACITY (10): the handler's answer, the file's last LBA.
    let r = c.exec(1, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], 8, &[]);
    assert_eq!(r.status, GOOD, "{r:?}");
    let last = u32::from_be_bytes(r.data[0..4].try_into().unwrap());
    assert_eq!(u64::from(last) + 1, SIZE as u64 / 512);
    // A READ past the end: the handler's sense, exactly (05/21/00).
    let r = c.exec(1, &read10(SIZE as u32 / 512, 1), 512, &[]);
    assert_eq!(r.status, CHECK_CONDITION);
    assert_eq!(r.sense_code(), (0x05, 0x21, 0x00), "{r:?}");
    // Data both ways.
    let block = prng_bytes(9, 512);
    assert_eq!(c.exec(1, &write10(7, 1), 0, &block).status, GOOD);
    let r = c.exec(1, &read10(7, 1), 512, &[]);
    assert_eq!((r.status, &r.data[..]), (GOOD, &block[..]));
    // rtgtd keeps SPC-2 reservations: RESERVE(6) here, a WRITE from another session
    // conflicts, RELEASE(6) ends it.
    assert_eq!(c.exec(1, &[0x16, 0, 0, 0, 0, 0], 0, &[]).status, GOOD);
    let mut other = RawConn::session(d.port, IQN);
    let r = other.exec(1, &write10(7, 1), 0, &block);
    assert_eq!(r.status, RESERVATION_CONFLICT, "{r:?}");
    assert_eq!(c.exec(1, &[0x17, 0, 0, 0, 0, 0], 0, &[]).status, GOOD);
    assert_eq!(other.exec(1, &write10(7, 1), 0, &block).status, GOOD);
    round_trip(&d, 1, Some(&img), 0x5c51);
    let s = show(&d);
    assert!(s.contains("Type: handler"), "{s}");
    let raw: u64 = s
        .split("raw CDBs ")
        .nth(1)
        .and_then(|t| t.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no raw CDB count in:\n{s}"));
    assert!(
        raw > 64,
        "raw CDBs {raw}: qemu-img's I/O went to the handler\n{s}"
    );
    assert!(s.contains("protocol errors 0"), "{s}");
}

/// A block handler that asked for the exception path (rtgt-fileio `-p excpt`): rtgtd
/// still answers what it knows (INQUIRY says rtgt's disk), an opcode it does not know
/// reaches the handler raw (REPORT HANDLER answers), and one neither knows gets the
/// handler's INVALID COMMAND OPERATION CODE. Without the feature (`-p std`) the vendor
/// opcode is rtgtd's INVALID COMMAND OPERATION CODE.
#[test]
fn fileio_exception_parsing_gets_unknown_opcodes_only() {
    let d = Daemon::start();
    handler_target(&d, &["disk1", "disk2"], &[]);
    let img1 = image(&d, "disk1.img");
    let img2 = image(&d, "disk2.img");
    let _h1 = Fileio::start(&d, &["-p", "excpt", "disk1", img1.to_str().unwrap()]);
    let _h2 = Fileio::start(&d, &["disk2", img2.to_str().unwrap()]);
    wait_attached(&d, 2);
    let mut c = RawConn::session(d.port, IQN);
    for lun in [1, 2] {
        assert_eq!(c.exec_after_uas(lun, &[0; 6], 0, &[]).1.status, GOOD);
    }
    let r = c.exec(1, &[0x12, 0, 0, 0, 96, 0], 96, &[]);
    assert_eq!(r.status, GOOD, "{r:?}");
    assert_eq!(&r.data[8..12], b"RTGT", "rtgtd answered INQUIRY");
    let r = c.exec(1, &[0xc0, 0, 0, 0, 0, 0], 64, &[]);
    assert_eq!(r.status, GOOD, "{r:?}");
    assert_eq!(r.data, b"rtgt-fileio disk1 parse=excpt");
    let r = c.exec(1, &[0xc1, 0, 0, 0, 0, 0], 64, &[]);
    assert_eq!(r.status, CHECK_CONDITION);
    assert_eq!(r.sense_code(), (0x05, 0x20, 0x00), "{r:?}");
    let r = c.exec(2, &[0xc0, 0, 0, 0, 0, 0], 64, &[]);
    assert_eq!(r.status, CHECK_CONDITION);
    assert_eq!(r.sense_code(), (0x05, 0x20, 0x00), "{r:?}");
    let block = prng_bytes(3, 512);
    assert_eq!(c.exec(1, &write10(1, 1), 0, &block).status, GOOD);
    let r = c.exec(1, &read10(1, 1), 512, &[]);
    assert_eq!((r.status, &r.data[..]), (GOOD, &block[..]));
    let s = show(&d);
    assert_eq!(
        s.matches("raw CDBs 2,").count(),
        1,
        "C0h and C1h went raw to disk1 only:\n{s}"
    );
    assert_eq!(s.matches("raw CDBs 0,").count(), 1, "{s}");
}

const ABORT_TASK: u8 = 1;
const LOGICAL_UNIT_RESET: u8 = 5;
const FUNCTION_COMPLETE: u8 = 0;

/// Waits until rtgt-fileio's log has `what`.
fn wait_fileio_log(d: &Daemon, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let log = std::fs::read_to_string(d.dir.join("fileio.log")).unwrap_or_default();
        if log.contains(what) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "rtgt-fileio never logged {what:?}:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Task management reaches a SCSI-kind handler: ABORT TASK of a READ it is working on
/// (slowly: 1 s a command) arrives as an ABORT TASK entry naming the command, the READ
/// is never answered, the function completes; a LOGICAL UNIT RESET arrives too.
#[test]
fn task_management_reaches_the_handler() {
    let mport = common::free_port();
    let d = Daemon::start_args(&["--metrics", &format!("127.0.0.1:{mport}")]);
    handler_target(&d, &["disk1"], &["--device-type", "handler"]);
    let img = image(&d, "disk1.img");
    let _h = Fileio::start(
        &d,
        &[
            "-p",
            "call",
            "--delay-us",
            "1000000",
            "disk1",
            img.to_str().unwrap(),
        ],
    );
    wait_attached(&d, 1);
    let mut c = RawConn::session(d.port, IQN);
    assert_eq!(c.exec_after_uas(1, &[0; 6], 0, &[]).1.status, GOOD);
    let read = c.command_pdu(1, &read10(0, 8), 4096, &[]);
    c.send(&read);
    std::thread::sleep(Duration::from_millis(200));
    let t0 = Instant::now();
    assert_eq!(
        c.tmf(ABORT_TASK, 1, read.itt(), read.cmd_sn()),
        FUNCTION_COMPLETE
    );
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    wait_fileio_log(&d, "disk1: ABORT TASK of tag 0x");
    for p in c.drain(Duration::from_millis(1500)) {
        assert!(
            p.itt() != read.itt(),
            "the aborted READ was answered: {p:?}"
        );
    }
    assert_eq!(c.tmf(LOGICAL_UNIT_RESET, 1, 0, 0), FUNCTION_COMPLETE);
    wait_fileio_log(&d, "disk1: LOGICAL UNIT RESET");
    let (uas, r) = c.exec_after_uas(1, &read10(0, 1), 512, &[]);
    assert_eq!(r.status, GOOD, "{r:?}");
    assert!(
        uas.contains(&(0x29, 0x03)),
        "LOGICAL UNIT RESET OCCURRED: {uas:?}"
    );
    let s = show(&d);
    assert!(s.contains("task management 2"), "{s}");
    assert!(s.contains("timeouts 0"), "{s}");
    assert!(s.contains("Handler: attached, pid"), "{s}");
    // The same in the metrics.
    let metrics = {
        use std::io::Read;
        let mut c = std::net::TcpStream::connect(("127.0.0.1", mport)).unwrap();
        write!(c, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut r = String::new();
        c.read_to_string(&mut r).unwrap();
        r
    };
    let labels = format!("{{tid=\"1\",target=\"{IQN}\",lun=\"1\"}}");
    for want in [
        format!("rtgt_lun_handler_attached{labels} 1"),
        format!("rtgt_lun_handler_queues{labels} 1"),
        format!("rtgt_lun_handler_queue_depth{labels} 64"),
        format!("rtgt_lun_handler_task_management_total{labels} 2"),
        format!("rtgt_lun_handler_timeouts_total{labels} 0"),
        format!("rtgt_lun_handler_pid{labels} {}", _h.0.id()),
        "# TYPE rtgt_lun_handler_raw_cdbs counter".to_string(),
    ] {
        assert!(metrics.contains(&want), "no {want:?} in\n{metrics}");
    }
}

/// A handler that hangs on a command and ignores the ABORT TASK for it is timed out
/// (`timeout=2`): it is disconnected with a log line naming it, the abort completes,
/// the LU answers NOT READY, LOGICAL UNIT COMMUNICATION FAILURE (retryable) until a
/// handler attaches again, and then works; the session stays up throughout.
#[test]
fn a_handler_that_ignores_task_management_is_timed_out() {
    let d = Daemon::start();
    handler_target(
        &d,
        &["disk1"],
        &["--device-type", "handler", "--bsopts", "timeout=2;hold=1"],
    );
    let img = image(&d, "disk1.img");
    let mut hung = Fileio::start(
        &d,
        &[
            "-p",
            "call",
            "--stall-opcode",
            "28",
            "--ignore-tmf",
            "disk1",
            img.to_str().unwrap(),
        ],
    );
    wait_attached(&d, 1);
    let mut c = RawConn::session(d.port, IQN);
    assert_eq!(c.exec_after_uas(1, &[0; 6], 0, &[]).1.status, GOOD);
    let read = c.command_pdu(1, &read10(0, 8), 4096, &[]);
    c.send(&read);
    std::thread::sleep(Duration::from_millis(200));
    let t0 = Instant::now();
    assert_eq!(
        c.tmf(ABORT_TASK, 1, read.itt(), read.cmd_sn()),
        FUNCTION_COMPLETE
    );
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(8),
        "the abort waited for the timeout, not forever: {took:?}"
    );
    wait_fileio_log(&d, "disk1: ABORT TASK of tag 0x");
    assert!(d.log().contains("timed out"), "{}", d.log());
    assert!(d.log().contains("handler=\"disk1\""), "{}", d.log());
    let s = show(&d);
    assert!(s.contains("Handler: not attached"), "{s}");
    assert!(s.contains("timeouts 1"), "{s}");
    // No handler: NOT READY, LOGICAL UNIT COMMUNICATION FAILURE after hold=1.
    let r = c.exec(1, &read10(0, 1), 512, &[]);
    assert_eq!(r.status, CHECK_CONDITION);
    assert_eq!(r.sense_code(), (0x02, 0x08, 0x00), "{r:?}");
    hung.kill9();
    let block = prng_bytes(11, 512);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&img)
        .unwrap()
        .write_all(&block)
        .unwrap();
    let _h = Fileio::start(&d, &["-p", "call", "disk1", img.to_str().unwrap()]);
    wait_attached(&d, 1);
    let (_, r) = c.exec_after_uas(1, &read10(0, 1), 512, &[]);
    assert_eq!((r.status, &r.data[..]), (GOOD, &block[..]));
    c.assert_works();
}

/// A SCSI-kind LU in a saved configuration: `config dump` writes its device type, bstype
/// and `--bsopts` (not the kind, which the device type says), and a daemon started from
/// the dump has the LU back, which a `-p call` handler serves again.
#[test]
fn scsi_kind_lu_survives_a_config_dump_and_restart() {
    let d = Daemon::start();
    handler_target(
        &d,
        &["disk1"],
        &["--device-type", "handler", "--bsopts", "hold=9;timeout=7"],
    );
    let file = d.dir.join("saved.toml");
    d.adm_ok(&["config", "dump", file.to_str().unwrap()]);
    let text = std::fs::read_to_string(&file).unwrap();
    for want in [
        "device_type = \"handler\"",
        "bstype = \"handler\"",
        "bsopts = \"hold=9;timeout=7\"",
    ] {
        assert!(text.contains(want), "no {want} in\n{text}");
    }
    assert!(!text.contains("kind"), "{text}");
    let d2 = Daemon::start_args(&["--config", file.to_str().unwrap()]);
    let img = image(&d2, "disk1.img");
    let _h = Fileio::start(&d2, &["-p", "call", "disk1", img.to_str().unwrap()]);
    wait_attached(&d2, 1);
    let s = show(&d2);
    assert!(s.contains("Type: handler"), "{s}");
    let mut c = RawConn::session(d2.port, IQN);
    let r = c.exec_after_uas(1, &[0xc0, 0, 0, 0, 0, 0], 64, &[]).1;
    assert_eq!(r.data, b"rtgt-fileio disk1 parse=call", "{r:?}");
}

/// The C binding: `bindings/c/memdisk.c`, written against the generated header
/// `rtgt_handler.h` only, compiles warning-free and serves a LU: blocks written at
/// scattered LBAs (one of 8 KiB) read back byte for byte.
#[test]
fn c_example_handler_compiles_and_serves() {
    let d = Daemon::start();
    handler_target(&d, &["cdisk"], &[]);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let bin = d.dir.join("memdisk");
    let o = run_timeout(
        Command::new("cc").args([
            "-std=c11",
            "-O2",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-I",
            root.join("bindings/c").to_str().unwrap(),
            root.join("bindings/c/memdisk.c").to_str().unwrap(),
            "-o",
            bin.to_str().unwrap(),
        ]),
        Duration::from_secs(120),
    );
    check("cc memdisk.c", &o);
    let sock = d.run_dir.join("handlers/cdisk.sock");
    let log = std::fs::File::create(d.dir.join("fileio.log")).unwrap();
    let _h = Fileio(
        Command::new(&bin)
            .args([sock.to_str().unwrap(), "16"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start memdisk"),
    );
    wait_attached(&d, 1);
    let mut c = RawConn::session(d.port, IQN);
    assert_eq!(c.exec_after_uas(1, &[0; 6], 0, &[]).1.status, GOOD);
    let r = c.exec(1, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], 8, &[]);
    assert_eq!(r.status, GOOD, "{r:?}");
    assert_eq!(
        u32::from_be_bytes(r.data[0..4].try_into().unwrap()),
        (16 << 11) - 1
    );
    let mut written = Vec::new();
    for (i, (lba, blocks)) in [(0u32, 1u16), (777, 16), (32767, 1), (4096, 8)]
        .into_iter()
        .enumerate()
    {
        let data = prng_bytes(100 + i as u64, usize::from(blocks) * 512);
        assert_eq!(c.exec(1, &write10(lba, blocks), 0, &data).status, GOOD);
        written.push((lba, blocks, data));
    }
    for (lba, blocks, data) in written {
        let r = c.exec(1, &read10(lba, blocks), u32::from(blocks) * 512, &[]);
        assert_eq!(r.status, GOOD, "{r:?}");
        assert_same(&r.data, &data, &format!("LBA {lba}"));
    }
    assert!(show(&d).contains("protocol errors 0"));
}

/// `kill -9` of rtgt-fileio in the middle of a `qemu-img convert` onto its LU, then a
/// restart: the copy completes, the image compares equal, the commands the dead
/// handler held were issued again, and the iSCSI session never dropped.
#[test]
fn fileio_killed_mid_copy_then_restarted_loses_nothing() {
    if !common::have_qemu_iscsi() {
        return;
    }
    let d = Daemon::start();
    handler_target(&d, &["disk1"], &[]);
    let img = image(&d, "disk1.img");
    let img_s = img.to_str().unwrap().to_string();
    // A slow handler (50 ms per command of at most 1 MiB), so that it holds commands
    // long enough to be killed while it does.
    let mut h = Fileio::start(&d, &["--delay-us", "50000", "-e", "2", "disk1", &img_s]);
    wait_attached(&d, 1);
    let data = prng_bytes(6, SIZE);
    let src = d.dir.join("src.raw");
    std::fs::write(&src, &data).unwrap();
    let url = d.url(IQN, 1);
    let mut copy = Command::new("qemu-img")
        .args([
            "convert",
            "-n",
            "-f",
            "raw",
            "-O",
            "raw",
            src.to_str().unwrap(),
            &url,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kill while the handler holds commands of the copy.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = show(&d);
        let held = s
            .lines()
            .find_map(|l| l.trim().strip_prefix("Handler: attached, "))
            .and_then(|l| l.split("in flight ").nth(1))
            .and_then(|n| n.trim().parse::<u64>().ok())
            .unwrap_or(0);
        if held >= 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the copy never reached the handler:\n{s}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    h.kill9();
    assert!(
        copy.try_wait().unwrap().is_none(),
        "the copy ended before the handler was killed"
    );
    std::thread::sleep(Duration::from_millis(500));
    let _h2 = Fileio::start(&d, &["-e", "2", "disk1", &img_s]);
    let st = copy.wait_with_output().unwrap();
    assert!(
        st.status.success(),
        "qemu-img convert failed: {}\nrtgtd log:\n{}",
        String::from_utf8_lossy(&st.stderr),
        d.log()
    );
    assert_same(&std::fs::read(&img).unwrap(), &data, "the backing file");
    qemu_img(&[
        "compare",
        "-f",
        "raw",
        "-F",
        "raw",
        src.to_str().unwrap(),
        &url,
    ]);

    let log = d.log();
    assert!(
        log.contains("device handler detached: its socket closed"),
        "{log}"
    );
    assert_eq!(log.matches("device handler attached").count(), 2, "{log}");
    // The copy's session logged in once and out once, normally: never dropped.
    let ends: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("session ended"))
        .collect();
    assert!(
        ends.iter().all(|l| l.contains("session ended: logout")),
        "a session ended other than by logout:\n{log}"
    );
    let s = show(&d);
    assert!(s.contains("Handler: attached"), "{s}");
    let reissued: u64 = s
        .lines()
        .find_map(|l| l.trim().strip_prefix("Handler counters: "))
        .and_then(|l| l.split("reissued ").nth(1))
        .and_then(|n| n.split(',').next()?.trim().parse().ok())
        .unwrap_or(0);
    assert!(reissued >= 1, "no command was issued again:\n{s}\n{log}");
    assert!(
        s.contains("attaches 2, detaches 1, protocol errors 0"),
        "{s}"
    );
}

// ---- a handler that breaks the protocol ------------------------------------------------

fn rogue_hello(name: &str) -> Hello {
    Hello {
        major: wire::MAJOR,
        minor: wire::MINOR,
        kind: wire::kind::BLOCK,
        features: feature::FLUSH,
        capacity: 1 << 20,
        block_size: 512,
        queues: 1,
        depth: 4,
        flags: 0,
        max_xfer: 0,
        name: name.into(),
    }
}

/// Target 1: LUN 1 a handler LU (hold=1: commands wait one second for a handler),
/// LUN 2 an rdwr disk with a known pattern at LBA 0.
fn rogue_target(d: &Daemon) -> (PathBuf, Vec<u8>) {
    handler_target(d, &["rogue"], &["--bsopts", "hold=1"]);
    let img = d.dir.join("other.img");
    let pattern = prng_bytes(7, MIB);
    std::fs::write(&img, &pattern).unwrap();
    d.adm_ok(&[
        "--op",
        "new",
        "--mode",
        "logicalunit",
        "--tid",
        "1",
        "--lun",
        "2",
        "-b",
        img.to_str().unwrap(),
    ]);
    (d.run_dir.join("handlers/rogue.sock"), pattern)
}

/// After a rogue handler was thrown out: its LU answers NOT READY, LOGICAL UNIT
/// COMMUNICATION FAILURE (04h/08h/00h) once the hold expires, the other LU reads its
/// pattern, and show counts one protocol error.
fn assert_rogue_outcome(d: &Daemon, c: &mut RawConn, pattern: &[u8], log_says: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !d.log().contains(log_says) {
        assert!(
            Instant::now() < deadline,
            "no log line '{log_says}':\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = d.log();
    let line = log.lines().find(|l| l.contains(log_says)).unwrap();
    assert!(line.contains("device handler broke the protocol"), "{line}");
    assert!(
        line.contains("handler=\"rogue\""),
        "the log line does not name it: {line}"
    );
    let (_, r) = c.exec_after_uas(1, &read10(0, 1), 512, &[]);
    assert_eq!(r.status, CHECK_CONDITION, "{r:?}");
    assert_eq!(r.sense_code(), (0x02, 0x08, 0x00), "{r:?}");
    let (_, r) = c.exec_after_uas(2, &read10(0, 8), 4096, &[]);
    assert_eq!(r.status, GOOD);
    assert_eq!(&r.data[..], &pattern[..4096]);
    let s = show(d);
    assert!(s.contains("protocol errors 1"), "{s}");
    assert!(s.contains("Handler: not attached"), "{s}");
}

#[test]
fn handler_completing_an_unknown_command_is_disconnected() {
    let d = Daemon::start();
    let (sock, pattern) = rogue_target(&d);
    let mut att = client::connect(&sock, &rogue_hello("rogue")).unwrap();
    wait_attached(&d, 1);
    let mut c = RawConn::session(d.port, IQN);
    att.queues[0].complete(Cpl {
        tag: 0x0007_0003,
        status: 0,
        bytes: 0,
    });
    att.queues[0].force_cpl_tail(1);
    assert_rogue_outcome(&d, &mut c, &pattern, "which is not an outstanding command");
}

#[test]
fn handler_moving_the_completion_index_past_the_ring_is_disconnected() {
    let d = Daemon::start();
    let (sock, pattern) = rogue_target(&d);
    let mut att = client::connect(&sock, &rogue_hello("rogue")).unwrap();
    wait_attached(&d, 1);
    let mut c = RawConn::session(d.port, IQN);
    att.queues[0].force_cpl_tail(1000);
    assert_rogue_outcome(
        &d,
        &mut c,
        &pattern,
        "entries past head 0; the ring holds 4",
    );
}

/// A READ completed with more bytes than the command (and its arena slot) holds.
#[test]
fn handler_claiming_a_length_past_its_slot_is_disconnected() {
    let d = Daemon::start();
    let (sock, pattern) = rogue_target(&d);
    let mut att = client::connect(&sock, &rogue_hello("rogue")).unwrap();
    wait_attached(&d, 1);
    let mut c = RawConn::session(d.port, IQN);
    // The capacity-changed unit attention first, so the READ below reaches the store.
    let (uas, r) = c.exec_after_uas(1, &[0; 6], 0, &[]);
    assert_eq!(r.status, GOOD, "{uas:?} {r:?}");
    let p = c.command_pdu(1, &read10(0, 1), 512, &[]);
    c.send(&p);
    let q = &mut att.queues[0];
    let deadline = Instant::now() + Duration::from_secs(10);
    let cmd = loop {
        if let Some(cmd) = q.take_cmd() {
            break cmd;
        }
        assert!(
            Instant::now() < deadline,
            "the READ never reached the handler"
        );
        q.wait(100).unwrap();
    };
    assert_eq!((cmd.op, cmd.offset, cmd.len), (1, 0, 512));
    let slot = att.accept.slot_size as u64;
    q.complete(Cpl {
        tag: cmd.tag,
        status: 0,
        bytes: slot * 4 + 512,
    });
    q.kick();
    // The READ itself ends NOT READY once the hold expires: no handler to re-issue to.
    let r = c.reply_for(p.itt());
    assert_eq!(r.status, CHECK_CONDITION, "{r:?}");
    assert_eq!(r.sense_code(), (0x02, 0x08, 0x00), "{r:?}");
    assert_rogue_outcome(&d, &mut c, &pattern, "bytes for a 512-byte command");
}

/// A kick leaves the CPU of the rtgtd thread that sent it in the queue header
/// (protocol 1.2's `cmd_cpu`, which rtgt-fileio follows), and the command it announced
/// completes as usual.
#[test]
fn a_kick_says_which_cpu_it_came_from() {
    let d = Daemon::start();
    let (sock, _) = rogue_target(&d);
    let mut att = client::connect(&sock, &rogue_hello("rogue")).unwrap();
    wait_attached(&d, 1);
    let mut c = RawConn::session(d.port, IQN);
    let (uas, r) = c.exec_after_uas(1, &[0; 6], 0, &[]);
    assert_eq!(r.status, GOOD, "{uas:?} {r:?}");
    let q = &mut att.queues[0];
    assert_eq!(q.cpu_hint(), None, "a hint before any kick");
    // Asleep, as far as rtgtd can tell: the READ below must kick.
    q.region.set_flag(layout::CMD_SLEEPING, 1);
    let p = c.command_pdu(1, &read10(0, 1), 512, &[]);
    c.send(&p);
    let deadline = Instant::now() + Duration::from_secs(10);
    let cmd = loop {
        if let Some(cmd) = q.take_cmd() {
            break cmd;
        }
        assert!(
            Instant::now() < deadline,
            "the READ never reached the handler"
        );
        std::thread::sleep(Duration::from_millis(1));
    };
    assert_eq!(
        q.region.load(layout::CMD_SLEEPING),
        0,
        "the kick cleared the flag"
    );
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) } as usize;
    let cpu = q.cpu_hint().expect("the kick left no CPU hint");
    assert!(cpu < cpus, "hint {cpu} with {cpus} CPUs");
    q.data(&cmd).unwrap().fill(0x5a);
    q.complete(Cpl {
        tag: cmd.tag,
        status: 0,
        bytes: cmd.len,
    });
    q.kick();
    let r = c.reply_for(p.itt());
    assert_eq!(r.status, GOOD, "{r:?}");
    assert_eq!(&r.data[..], &[0x5a; 512][..]);
}

/// A HELLO with a bad magic, then one with reserved bytes set: both refused with a log
/// line; a good handler attaches afterwards.
#[test]
fn malformed_handshakes_are_refused() {
    let d = Daemon::start();
    let (sock, _) = rogue_target(&d);
    let mut junk = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    junk.write_all(&[0x55; wire::HELLO_SIZE]).unwrap();
    let mut b = [0u8; wire::ACCEPT_SIZE];
    std::io::Read::read_exact(&mut junk, &mut b).unwrap();
    let a = wire::Accept::decode(&b).unwrap();
    assert_eq!(a.status, wire::REJECT_VERSION);

    let mut h = rogue_hello("rogue").encode();
    h[56] = 1;
    let mut junk = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    junk.write_all(&h).unwrap();
    std::io::Read::read_exact(&mut junk, &mut b).unwrap();
    assert_eq!(
        wire::Accept::decode(&b).unwrap().status,
        wire::REJECT_RESERVED
    );

    let e = match client::connect(
        &sock,
        &Hello {
            kind: wire::kind::SCSI,
            ..rogue_hello("rogue")
        },
    ) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a SCSI-kind handler was accepted at a disk LU"),
    };
    assert!(e.contains("wants the other kind"), "{e}");
    let e = match client::connect(
        &sock,
        &Hello {
            kind: 3,
            ..rogue_hello("rogue")
        },
    ) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a handler of kind 3 was accepted"),
    };
    assert!(e.contains("kind not supported"), "{e}");
    let log = d.log();
    assert!(
        log.contains("device handler refused: bad magic or unsupported major version"),
        "{log}"
    );
    assert!(
        log.contains("device handler refused: reserved fields not zero"),
        "{log}"
    );
    let _att = client::connect(&sock, &rogue_hello("rogue")).unwrap();
    wait_attached(&d, 1);
    // A second handler for the same LU is refused while the first is attached.
    let e = client::connect(&sock, &rogue_hello("second"))
        .err()
        .map(|e| e.to_string());
    assert!(
        e.as_deref().is_some_and(|e| e.contains("another handler")),
        "{e:?}"
    );
}

// ---- the Python binding ----------------------------------------------------------------

fn python_ok() -> bool {
    let o = Command::new("python3")
        .args([
            "-c",
            "import os,socket; assert os.eventfd and socket.recv_fds",
        ])
        .output();
    let ok = o.is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIPPED: python3 >= 3.10 unavailable");
    }
    ok
}

/// bindings/python/memdisk.py serves a 64 MiB LU that qemu-img round-trips; its fault
/// injector's MEDIUM ERROR reaches the initiator as UNRECOVERED READ ERROR
/// (03h/11h/00h) with the bad LBA in the INFORMATION field (SBC-4 4.18.1).
#[test]
fn python_memdisk_round_trips_and_injects_medium_errors() {
    if !common::have_qemu_iscsi() || !python_ok() {
        return;
    }
    let d = Daemon::start();
    handler_target(&d, &["mem1", "mem2"], &[]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bindings/python/memdisk.py");
    let log = std::fs::File::create(d.dir.join("memdisk.log")).unwrap();
    let child = Command::new("python3")
        .arg(&script)
        .args(["--size", "64M", "mem1", "--fail-lba", "100000"])
        .env("RTGT_RUN_DIR", &d.run_dir)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let _h = Fileio(child);
    wait_attached(&d, 1);

    let mut c = RawConn::session(d.port, IQN);
    // Blocks 99998..100001: the third is bad.
    let (_, r) = c.exec_after_uas(1, &read10(99_998, 4), 2048, &[]);
    assert_eq!(r.status, CHECK_CONDITION, "{r:?}");
    assert_eq!(r.sense_code(), (0x03, 0x11, 0x00), "{r:?}");
    assert_eq!(r.sense[0] & 0x80, 0x80, "VALID not set: {:?}", r.sense);
    let info = u32::from_be_bytes(r.sense[3..7].try_into().unwrap());
    assert_eq!(info, 100_000, "INFORMATION: {:?}", r.sense);
    let (_, r) = c.exec_after_uas(1, &read10(0, 8), 4096, &[]);
    assert_eq!(r.status, GOOD);
    drop(c);

    // A 64 MiB round trip on a second LU, served by a second memdisk that injects no
    // faults.
    let log = std::fs::File::create(d.dir.join("memdisk2.log")).unwrap();
    let child = Command::new("python3")
        .arg(&script)
        .args(["--size", "64M", "mem2"])
        .env("RTGT_RUN_DIR", &d.run_dir)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let _h2 = Fileio(child);
    wait_attached(&d, 2);
    round_trip(&d, 2, None, 8);
}
