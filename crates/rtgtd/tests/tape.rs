//! A tape drive (SSC-3) over iSCSI, configured with tgt's syntax (`--device-type tape
//! --bstype ssc -b IMAGE`): variable and fixed blocks with the exact incorrect-length,
//! filemark and end-of-data sense, positioning, write protection, end of medium, the
//! medium's removal, tgt's image format, and data that outlives the daemon.

mod common;

use std::path::{Path, PathBuf};

use common::raw::RawConn;
use common::scsi::{be32, be64, Reply, CHECK_CONDITION, GOOD};
use common::{prng_bytes, Daemon, TempDir};
use rtgt_scsi::ssc::medium::{CartridgeType, Format, Label, Medium};

const IQN: &str = "iqn.2026-11.org.rtgt:tape";

const NO_SENSE: u8 = 0x0;
const NOT_READY: u8 = 0x2;
const ILLEGAL: u8 = 0x5;
const DATA_PROTECT: u8 = 0x7;
const BLANK_CHECK: u8 = 0x8;
const VOLUME_OVERFLOW: u8 = 0xd;
const FILEMARK: u8 = 0x80;
const EOM: u8 = 0x40;
const ILI: u8 = 0x20;

fn blank(dir: &TempDir, name: &str, format: Format, capacity: u64) -> PathBuf {
    let p = dir.join(name);
    let label = Label {
        barcode: name.to_uppercase(),
        capacity,
        kind: CartridgeType::Data,
        serial: format!("{name}_1"),
    };
    Medium::create(&p, format, &label, false).unwrap();
    p
}

/// Target 1 with the tape drive at LUN 1 holding `img`, as tgt users configure one.
fn serve(d: &Daemon, img: &Path, params: &[&str]) {
    d.new_target("1", IQN);
    let mut lu = vec![
        "--op",
        "new",
        "--mode",
        "logicalunit",
        "--tid",
        "1",
        "--lun",
        "1",
        "--device-type",
        "tape",
        "--bstype",
        "ssc",
        "-b",
        img.to_str().unwrap(),
    ];
    lu.extend_from_slice(params);
    d.adm_ok(&lu);
    d.bind_all("1");
}

fn session(d: &Daemon) -> RawConn {
    let mut c = RawConn::session(d.port, IQN);
    let (_, r) = c.exec_after_uas(1, &[0; 6], 0, &[]);
    assert_eq!(r.status, GOOD, "TEST UNIT READY: {r:?}");
    c
}

/// Fixed-format sense: (key, ASC, ASCQ, FILEMARK|EOM|ILI bits, INFORMATION if VALID).
fn sense(r: &Reply) -> (u8, u8, u8, u8, Option<i32>) {
    assert_eq!(r.status, CHECK_CONDITION, "expected CHECK CONDITION: {r:?}");
    let s = &r.sense;
    assert_eq!(s[0] & 0x7f, 0x70, "fixed format sense: {s:02x?}");
    let info = (s[0] & 0x80 != 0).then(|| be32(s, 3) as i32);
    (s[2] & 0x0f, s[12], s[13], s[2] & 0xe0, info)
}

fn good(r: &Reply, what: &str) {
    assert_eq!(r.status, GOOD, "{what}: {r:?}");
}

fn write_var(c: &mut RawConn, data: &[u8]) -> Reply {
    let n = data.len() as u32;
    c.exec(
        1,
        &[0x0a, 0, (n >> 16) as u8, (n >> 8) as u8, n as u8, 0],
        0,
        data,
    )
}

fn write_fixed(c: &mut RawConn, blocks: u32, data: &[u8]) -> Reply {
    let n = blocks;
    c.exec(
        1,
        &[0x0a, 1, (n >> 16) as u8, (n >> 8) as u8, n as u8, 0],
        0,
        data,
    )
}

fn read(c: &mut RawConn, flags: u8, n: u32, expect: u32) -> Reply {
    c.exec(
        1,
        &[0x08, flags, (n >> 16) as u8, (n >> 8) as u8, n as u8, 0],
        expect,
        &[],
    )
}

fn filemarks(c: &mut RawConn, n: u8) -> Reply {
    c.exec(1, &[0x10, 0, 0, 0, n, 0], 0, &[])
}

fn rewind(c: &mut RawConn) {
    good(&c.exec(1, &[0x01, 0, 0, 0, 0, 0], 0, &[]), "REWIND");
}

fn space(c: &mut RawConn, code: u8, count: i32) -> Reply {
    let b = count.to_be_bytes();
    c.exec(1, &[0x11, code, b[1], b[2], b[3], 0], 0, &[])
}

/// READ POSITION, short form: the logical object number.
fn position(c: &mut RawConn) -> u32 {
    let r = c.exec(1, &[0x34, 0, 0, 0, 0, 0, 0, 0, 0, 0], 20, &[]);
    good(&r, "READ POSITION");
    assert_eq!(be32(&r.data, 4), be32(&r.data, 8));
    be32(&r.data, 4)
}

fn mode_select_block(c: &mut RawConn, len: u32) {
    let b = len.to_be_bytes();
    let p = [0, 0, 0x10, 8, 0, 0, 0, 0, 0, b[1], b[2], b[3]];
    good(
        &c.exec(1, &[0x15, 0x10, 0, 0, p.len() as u8, 0], 0, &p),
        "MODE SELECT block length",
    );
}

#[test]
fn variable_blocks_report_short_and_long_blocks_filemarks_and_end_of_data() {
    let dir = TempDir::new("tape-var");
    let img = blank(&dir, "var001", Format::Rtgt, 64 << 20);
    let d = Daemon::start();
    serve(&d, &img, &[]);
    let mut c = session(&d);

    let inq = c.exec(1, &[0x12, 0, 0, 0, 96, 0], 96, &[]);
    good(&inq, "INQUIRY");
    assert_eq!(inq.data[0], 0x01, "sequential-access device");
    assert_eq!(inq.data[1] & 0x80, 0x80, "RMB");
    let limits = c.exec(1, &[0x05, 0, 0, 0, 0, 0], 6, &[]);
    good(&limits, "READ BLOCK LIMITS");
    assert_eq!(limits.data, [0, 0xff, 0xff, 0xff, 0, 1]);

    let a = prng_bytes(1, 1000);
    let b = prng_bytes(2, 300);
    let e = prng_bytes(3, 5000);
    good(&write_var(&mut c, &a), "WRITE 1000");
    good(&write_var(&mut c, &b), "WRITE 300");
    good(&filemarks(&mut c, 1), "WRITE FILEMARKS");
    good(&write_var(&mut c, &e), "WRITE 5000");
    assert_eq!(position(&mut c), 4);
    rewind(&mut c);
    assert_eq!(position(&mut c), 0);

    // Exactly the block's length.
    let r = read(&mut c, 0, 1000, 1000);
    good(&r, "READ 1000");
    assert_eq!(r.data, a);
    // A short block read with a larger length: the whole block, ILI, residue.
    let r = read(&mut c, 0, 4096, 4096);
    assert_eq!(sense(&r), (NO_SENSE, 0, 0, ILI, Some(4096 - 300)));
    assert_eq!(r.data, b);
    // The filemark.
    let r = read(&mut c, 0, 100, 100);
    assert_eq!(sense(&r), (NO_SENSE, 0x00, 0x01, FILEMARK, Some(100)));
    assert!(r.data.is_empty());
    // An overlength block: what was asked for, ILI, a negative residue; the head is
    // past the block.
    let r = read(&mut c, 0, 4000, 4000);
    assert_eq!(sense(&r), (NO_SENSE, 0, 0, ILI, Some(4000 - 5000)));
    assert_eq!(r.data, e[..4000]);
    assert_eq!(position(&mut c), 4);
    // End of data.
    let r = read(&mut c, 0, 512, 512);
    assert_eq!(sense(&r), (BLANK_CHECK, 0x00, 0x05, 0, Some(512)));

    // SILI: a short block is no error.
    rewind(&mut c);
    good(&space(&mut c, 0, 1), "SPACE 1 block");
    let r = read(&mut c, 0x02, 4096, 4096);
    good(&r, "READ with SILI");
    assert_eq!(r.data, b);
    // Overwriting in the middle ends the data there.
    rewind(&mut c);
    good(&space(&mut c, 0, 1), "SPACE 1 block");
    let f = prng_bytes(4, 77);
    good(&write_var(&mut c, &f), "WRITE over");
    rewind(&mut c);
    good(&space(&mut c, 3, 0), "SPACE to end of data");
    assert_eq!(position(&mut c), 2);
    good(&space(&mut c, 0, -1), "SPACE -1 block");
    let r = read(&mut c, 0, 77, 77);
    good(&r, "READ the new block");
    assert_eq!(r.data, f);
}

#[test]
fn fixed_blocks_space_locate_and_read_position() {
    let dir = TempDir::new("tape-fixed");
    let img = blank(&dir, "fix001", Format::Rtgt, 64 << 20);
    let d = Daemon::start();
    serve(&d, &img, &[]);
    let mut c = session(&d);

    // Fixed mode without a block length is an error.
    let r = write_fixed(&mut c, 1, &[0; 512]);
    assert_eq!(sense(&r).0, ILLEGAL);
    mode_select_block(&mut c, 512);
    let ms = c.exec(1, &[0x1a, 0, 0, 0, 12, 0], 12, &[]);
    good(&ms, "MODE SENSE");
    assert_eq!(ms.data[3], 8, "block descriptor");
    assert_eq!(ms.data[4], 0x44, "density");
    assert_eq!(&ms.data[9..12], &[0, 2, 0], "block length 512");

    let file0 = prng_bytes(10, 8 * 512);
    let file1 = prng_bytes(11, 2 * 512);
    good(&write_fixed(&mut c, 8, &file0), "WRITE 8 blocks");
    good(&filemarks(&mut c, 1), "WFM");
    good(&write_fixed(&mut c, 2, &file1), "WRITE 2 blocks");
    good(&filemarks(&mut c, 1), "WFM");
    assert_eq!(position(&mut c), 12);

    rewind(&mut c);
    good(&space(&mut c, 1, 1), "SPACE 1 filemark");
    assert_eq!(position(&mut c), 9);
    // Three blocks asked, two there before the filemark.
    let r = read(&mut c, 0x01, 3, 3 * 512);
    assert_eq!(sense(&r), (NO_SENSE, 0x00, 0x01, FILEMARK, Some(1)));
    assert_eq!(r.data, file1);
    assert_eq!(position(&mut c), 12);
    // Back over a filemark while spacing blocks: stops before it.
    let r = space(&mut c, 0, -1);
    assert_eq!(sense(&r), (NO_SENSE, 0x00, 0x01, FILEMARK, Some(1)));
    assert_eq!(position(&mut c), 11);
    // Reverse over filemarks to beginning of medium: one of three is behind.
    let r = space(&mut c, 1, -3);
    assert_eq!(sense(&r), (NO_SENSE, 0x00, 0x04, EOM, Some(2)));
    assert_eq!(position(&mut c), 0);

    // LOCATE (10) to block 4.
    good(
        &c.exec(1, &[0x2b, 0, 0, 0, 0, 0, 4, 0, 0, 0], 0, &[]),
        "LOCATE 10",
    );
    let r = read(&mut c, 0x01, 1, 512);
    good(&r, "READ block 4");
    assert_eq!(r.data, file0[4 * 512..5 * 512]);
    let long = c.exec(1, &[0x34, 0x06, 0, 0, 0, 0, 0, 0, 0, 0], 32, &[]);
    good(&long, "READ POSITION long");
    assert_eq!((be64(&long.data, 8), be64(&long.data, 16)), (5, 0));
    // LOCATE (16) to logical file 1.
    let mut l16 = [0u8; 16];
    l16[0] = 0x92;
    l16[1] = 1 << 3;
    l16[11] = 1;
    good(&c.exec(1, &l16, 0, &[]), "LOCATE 16 file 1");
    assert_eq!(position(&mut c), 9);
    // Past end of data.
    let r = space(&mut c, 1, 5);
    assert_eq!(sense(&r), (BLANK_CHECK, 0x00, 0x05, 0, Some(4)));
    assert_eq!(position(&mut c), 12);

    // A block of another length than the fixed one.
    rewind(&mut c);
    mode_select_block(&mut c, 1024);
    let r = read(&mut c, 0x01, 2, 2048);
    assert_eq!(sense(&r), (NO_SENSE, 0, 0, ILI, Some(2)));
    assert!(r.data.is_empty());
    // SILI with fixed blocks is not allowed.
    let r = read(&mut c, 0x03, 1, 1024);
    assert_eq!(sense(&r).0, ILLEGAL);
}

#[test]
fn write_protection_end_of_medium_and_removal() {
    let dir = TempDir::new("tape-eom");
    let small = blank(&dir, "eom001", Format::Rtgt, 1 << 20);
    let other = blank(&dir, "ro001", Format::Rtgt, 1 << 20);
    let d = Daemon::start();
    serve(&d, &small, &[]);
    d.adm_ok(&[
        "--op",
        "new",
        "--mode",
        "logicalunit",
        "--tid",
        "1",
        "--lun",
        "2",
        "--device-type",
        "tape",
        "-b",
        other.to_str().unwrap(),
        "--params",
        "readonly=1",
    ]);
    let mut c = session(&d);
    let (_, r) = c.exec_after_uas(2, &[0; 6], 0, &[]);
    good(&r, "TUR LUN 2");

    // Write protection: WRITE and WRITE FILEMARKS fail, MODE SENSE says WP.
    let r = c.exec(2, &[0x0a, 0, 0, 0, 16, 0], 0, &[0; 16]);
    assert_eq!(sense(&r), (DATA_PROTECT, 0x27, 0x00, 0, None));
    let r = c.exec(2, &[0x10, 0, 0, 0, 1, 0], 0, &[]);
    assert_eq!(sense(&r), (DATA_PROTECT, 0x27, 0x00, 0, None));
    let ms = c.exec(2, &[0x1a, 0, 0, 0, 12, 0], 12, &[]);
    assert_eq!(ms.data[2] & 0x80, 0x80, "WP");

    // End of medium on a 1 MiB cartridge: writes in the early-warning zone succeed
    // with EOM set, then one that does not fit is a volume overflow.
    let chunk = prng_bytes(20, 60 * 1024);
    let mut warnings = 0;
    let mut overflow = None;
    for _ in 0..20 {
        let r = write_var(&mut c, &chunk);
        if r.status == GOOD {
            assert_eq!(warnings, 0, "GOOD after an early warning");
            continue;
        }
        let s = sense(&r);
        if s.0 == NO_SENSE {
            assert_eq!(s, (NO_SENSE, 0x00, 0x02, EOM, Some(0)));
            warnings += 1;
        } else {
            overflow = Some(s);
            break;
        }
    }
    assert!(warnings >= 1, "no early warning");
    assert_eq!(
        overflow,
        Some((VOLUME_OVERFLOW, 0x00, 0x02, EOM, Some(60 * 1024)))
    );
    // What was written before the overflow reads back.
    rewind(&mut c);
    let r = read(&mut c, 0, 60 * 1024, 60 * 1024);
    good(&r, "READ after overflow");
    assert_eq!(r.data, chunk);

    // PREVENT blocks UNLOAD; after ALLOW it unloads and the drive is not ready until
    // LOAD.
    good(&c.exec(1, &[0x1e, 0, 0, 0, 1, 0], 0, &[]), "PREVENT");
    let r = c.exec(1, &[0x1b, 0, 0, 0, 0, 0], 0, &[]);
    assert_eq!(sense(&r), (ILLEGAL, 0x53, 0x02, 0, None));
    good(&c.exec(1, &[0x1e, 0, 0, 0, 0, 0], 0, &[]), "ALLOW");
    good(&c.exec(1, &[0x1b, 0, 0, 0, 0, 0], 0, &[]), "UNLOAD");
    let r = c.exec(1, &[0; 6], 0, &[]);
    assert_eq!(sense(&r), (NOT_READY, 0x04, 0x02, 0, None));
    good(&c.exec(1, &[0x1b, 0, 0, 0, 1, 0], 0, &[]), "LOAD");
    good(&c.exec(1, &[0; 6], 0, &[]), "TUR after LOAD");
    assert_eq!(position(&mut c), 0);

    let show = d.adm_ok(&["--op", "show", "--mode", "target"]);
    assert!(show.contains("Type: tape"), "{show}");
    assert!(show.contains("Backing store type: ssc"), "{show}");
    assert!(
        show.contains("Cartridge: EOM001 (data, rtgt format)"),
        "{show}"
    );
}

/// Writes two files (a short last block in the first) and checks them, from the start.
fn write_two_files(c: &mut RawConn) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let a = prng_bytes(30, 10240);
    let b = prng_bytes(31, 1234);
    let z = prng_bytes(32, 4096);
    good(&write_var(c, &a), "WRITE a");
    good(&write_var(c, &b), "WRITE b");
    good(&filemarks(c, 1), "WFM");
    good(&write_var(c, &z), "WRITE z");
    good(&filemarks(c, 1), "WFM");
    (a, b, z)
}

fn check_two_files(c: &mut RawConn, (a, b, z): &(Vec<u8>, Vec<u8>, Vec<u8>)) {
    rewind(c);
    let r = read(c, 0, 10240, 10240);
    good(&r, "READ a");
    assert_eq!(&r.data, a);
    let r = read(c, 0, 10240, 10240);
    assert_eq!(sense(&r), (NO_SENSE, 0, 0, ILI, Some(10240 - 1234)));
    assert_eq!(&r.data, b);
    let r = read(c, 0, 10240, 10240);
    assert_eq!(sense(&r).3, FILEMARK);
    let r = read(c, 0, 4096, 4096);
    good(&r, "READ z");
    assert_eq!(&r.data, z);
}

#[test]
fn a_tape_written_by_rtgt_reads_back_after_a_restart() {
    let dir = TempDir::new("tape-restart");
    let img = blank(&dir, "keep01", Format::Rtgt, 16 << 20);
    let mut d = Daemon::start();
    serve(&d, &img, &[]);
    let mut c = session(&d);
    let files = write_two_files(&mut c);
    drop(c);
    // A crash, not a clean stop: WRITE FILEMARKS made it durable.
    d.kill();
    let d = Daemon::start();
    serve(&d, &img, &[]);
    let mut c = session(&d);
    check_two_files(&mut c, &files);
}

#[test]
fn a_tape_made_by_tgtimg_is_read_and_written_in_tgt_format() {
    if !Path::new("/usr/sbin/tgtimg").exists() && !common::have_tool("tgtimg") {
        eprintln!("SKIPPED: tgtimg (Debian package tgt) is not installed");
        return;
    }
    let dir = TempDir::new("tape-tgt");
    let img = dir.join("tgt001");
    let tgtimg = if Path::new("/usr/sbin/tgtimg").exists() {
        "/usr/sbin/tgtimg"
    } else {
        "tgtimg"
    };
    common::tool_ok(
        tgtimg,
        &[
            "--op",
            "new",
            "--device-type",
            "tape",
            "--barcode",
            "TGT001",
            "--size",
            "16",
            "--type",
            "data",
            "--file",
            img.to_str().unwrap(),
        ],
    );
    let mut d = Daemon::start();
    serve(&d, &img, &[]);
    let show = d.adm_ok(&["--op", "show", "--mode", "target"]);
    assert!(
        show.contains("Cartridge: TGT001 (data, tgt format)"),
        "{show}"
    );
    let mut c = session(&d);
    let files = write_two_files(&mut c);
    check_two_files(&mut c, &files);
    drop(c);
    d.stop();
    // tgt's own tool reads what rtgt wrote: its listing shows each record.
    let listing = common::tool_ok(
        tgtimg,
        &[
            "--op",
            "show",
            "--device-type",
            "tape",
            "--file",
            img.to_str().unwrap(),
        ],
    );
    assert!(!listing.contains("crc error"), "{listing}");
    assert!(listing.contains("Filemark"), "tgtimg listing: {listing}");
    let d = Daemon::start();
    serve(&d, &img, &[]);
    let mut c = session(&d);
    check_two_files(&mut c, &files);
}

#[test]
fn report_supported_operation_codes_lists_the_tape_commands() {
    let dir = TempDir::new("tape-rsoc");
    let img = blank(&dir, "ops001", Format::Rtgt, 1 << 20);
    let d = Daemon::start();
    serve(&d, &img, &[]);
    let mut c = session(&d);
    let r = c.exec(1, &[0xa3, 0x0c, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0], 4096, &[]);
    good(&r, "REPORT SUPPORTED OPERATION CODES");
    let n = be32(&r.data, 0) as usize;
    let ops: Vec<u8> = r.data[4..4 + n].chunks(8).map(|d| d[0]).collect();
    for op in [
        0x01, 0x05, 0x08, 0x0a, 0x10, 0x11, 0x19, 0x1b, 0x2b, 0x34, 0x44, 0x92,
    ] {
        assert!(ops.contains(&op), "{op:#04x} missing from {ops:02x?}");
    }
    for op in [0x28, 0x2a, 0x25, 0x88] {
        assert!(
            !ops.contains(&op),
            "{op:#04x} is a disk command: {ops:02x?}"
        );
        let r = c.exec(
            1,
            &[op, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            512,
            &[],
        );
        assert_eq!(sense(&r), (ILLEGAL, 0x20, 0x00, 0, None));
    }
}
