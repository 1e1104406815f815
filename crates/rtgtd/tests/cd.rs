//! CD/DVD drives (MMC-6, `--device-type cd`) through the raw initiator: a DVD-ROM read
//! byte-exact from its image, a blank DVD+R burned (RESERVE TRACK, WRITE, CLOSE
//! TRACK/SESSION) and read back before and after a restart, eject and medium change
//! with PREVENT ALLOW, the unit attention and GET EVENT STATUS NOTIFICATION media events
//! they raise, and REPORT SUPPORTED OPERATION CODES against what the drive executes.

mod common;

use std::path::Path;

use common::raw::{normal_keys, RawConn};
use common::scsi::{be32, Reply, CHECK_CONDITION, GOOD};
use common::{prng_bytes, Daemon};

const IQN: &str = "iqn.2026-11.org.rtgt:dvd";
const BLOCK: usize = 2048;

fn setup(d: &Daemon, image: Option<&Path>) {
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
        "cd",
    ];
    if let Some(p) = image {
        lu.extend_from_slice(&["-b", p.to_str().unwrap()]);
    }
    d.adm_ok(&lu);
    d.bind_all("1");
}

fn update(d: &Daemon, params: &str) -> std::process::Output {
    d.adm(&[
        "--op",
        "update",
        "--mode",
        "logicalunit",
        "--tid",
        "1",
        "--lun",
        "1",
        "--params",
        params,
    ])
}

/// A session from initiator port `isid` (a second I_T nexus when it differs).
fn session(port: u16, isid: u8) -> RawConn {
    let mut c = RawConn::connect(port);
    c.isid = [0x80, 0, 0, 0, 0x10, isid];
    c.login(&normal_keys(IQN, &[]));
    c
}

fn read10(lba: u32, n: u16) -> [u8; 10] {
    let mut c = [0x28, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    c[2..6].copy_from_slice(&lba.to_be_bytes());
    c[7..9].copy_from_slice(&n.to_be_bytes());
    c
}

fn read12(lba: u32, n: u32) -> [u8; 12] {
    let mut c = [0u8; 12];
    c[0] = 0xa8;
    c[2..6].copy_from_slice(&lba.to_be_bytes());
    c[6..10].copy_from_slice(&n.to_be_bytes());
    c
}

fn write10(lba: u32, n: u16) -> [u8; 10] {
    let mut c = read10(lba, n);
    c[0] = 0x2a;
    c
}

fn write12(lba: u32, n: u32) -> [u8; 12] {
    let mut c = read12(lba, n);
    c[0] = 0xaa;
    c
}

fn gesn() -> [u8; 10] {
    [0x4a, 0x01, 0, 0, 0x10, 0, 0, 0, 8, 0]
}

/// The media event code and media status of a GESN reply.
fn media_event(r: &Reply) -> (u8, u8) {
    assert_eq!(r.status, GOOD, "GESN: {r:?}");
    assert_eq!(r.data[2] & 0x07, 4, "media class: {:?}", r.data);
    (r.data[4] & 0x0f, r.data[5])
}

/// The media events queued for this nexus, until GESN reports no change.
fn events(c: &mut RawConn) -> Vec<u8> {
    let mut v = Vec::new();
    loop {
        match media_event(&c.exec(1, &gesn(), 8, &[])) {
            (0, _) => return v,
            (e, _) => v.push(e),
        }
    }
}

fn rtgtimg_bin() -> std::path::PathBuf {
    common::rtgtadm_bin().with_file_name("rtgtimg")
}

fn current_profile(c: &mut RawConn) -> u16 {
    let r = c.exec(1, &[0x46, 0x01, 0, 0, 0, 0, 0, 0x01, 0, 0], 256, &[]);
    assert_eq!(r.status, GOOD, "{r:?}");
    u16::from_be_bytes([r.data[6], r.data[7]])
}

fn disc_status(c: &mut RawConn) -> u8 {
    let r = c.exec(1, &[0x51, 0, 0, 0, 0, 0, 0, 0, 34, 0], 34, &[]);
    assert_eq!(r.status, GOOD, "{r:?}");
    r.data[2] & 0x03
}

fn check(r: &Reply, want: (u8, u8, u8)) {
    assert_eq!(r.status, CHECK_CONDITION, "{r:?}");
    assert_eq!(r.sense_code(), want, "{r:?}");
}

/// Reads `blocks` blocks from 0 in 32-block commands.
fn read_all(c: &mut RawConn, blocks: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut lba = 0;
    while lba < blocks {
        let n = (blocks - lba).min(32);
        let r = c.exec(1, &read10(lba as u32, n as u16), (n * BLOCK) as u32, &[]);
        assert_eq!(r.status, GOOD, "READ at {lba}: {r:?}");
        out.extend(r.data);
        lba += n;
    }
    out
}

#[test]
fn dvd_rom_reads_its_image_byte_exact_and_refuses_writes() {
    let d = Daemon::start();
    let img = d.dir.join("disc.img");
    let blocks = 200;
    let data = prng_bytes(7, blocks * BLOCK);
    std::fs::write(&img, &data).unwrap();
    setup(&d, Some(&img));
    let mut c = session(d.port, 1);

    // INQUIRY: peripheral device type 05h, RMB.
    let r = c.exec(1, &[0x12, 0, 0, 0, 96, 0], 96, &[]);
    assert_eq!((r.data[0], r.data[1]), (0x05, 0x80));
    let (_, r) = c.exec_after_uas(1, &[0; 6], 0, &[]);
    assert_eq!(r.status, GOOD);

    let r = c.exec(1, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], 8, &[]);
    assert_eq!(
        (be32(&r.data, 0), be32(&r.data, 4)),
        (blocks as u32 - 1, 2048)
    );
    assert_eq!(current_profile(&mut c), 0x0010);
    assert_eq!(disc_status(&mut c), 0x02, "complete");

    assert_eq!(read_all(&mut c, blocks), data);
    let r = c.exec(1, &read12(150, 50), 50 * 2048, &[]);
    assert_eq!(r.data, data[150 * BLOCK..]);
    check(&c.exec(1, &read10(199, 2), 4096, &[]), (0x05, 0x21, 0x00));
    check(
        &c.exec(1, &write10(0, 1), 0, &vec![0; BLOCK]),
        (0x07, 0x27, 0x00),
    );
    assert_eq!(std::fs::read(&img).unwrap(), data, "image untouched");

    // TOC: track 1 at 0, lead-out after the last block, in LBA and MSF form.
    let r = c.exec(1, &[0x43, 0, 0, 0, 0, 0, 0, 0, 100, 0], 100, &[]);
    assert_eq!(r.status, GOOD);
    assert_eq!(u16::from_be_bytes([r.data[0], r.data[1]]), 18);
    assert_eq!((r.data[2], r.data[3], r.data[6]), (1, 1, 1));
    assert_eq!(r.data[14], 0xaa);
    assert_eq!(be32(&r.data, 16), blocks as u32);
    let r = c.exec(1, &[0x43, 0x02, 0, 0, 0, 0, 0, 0, 100, 0], 100, &[]);
    // 200 + 150 = 350 sectors: 0 min, 4 s, 50 frames.
    assert_eq!(&r.data[17..20], &[0, 4, 50]);
    // Session information (format 1) and an unsupported format (PMA).
    let r = c.exec(1, &[0x43, 0, 1, 0, 0, 0, 0, 0, 12, 0], 12, &[]);
    assert_eq!((r.data[1], r.data[2], r.data[3], r.data[6]), (10, 1, 1, 1));
    // The same, with the format in the CONTROL byte (SFF-8020; Linux's sr asks so).
    let r = c.exec(1, &[0x43, 0, 0, 0, 0, 0, 0, 0, 12, 0x40], 12, &[]);
    assert_eq!((r.data[1], r.data[2], r.data[3], r.data[6]), (10, 1, 1, 1));
    check(
        &c.exec(1, &[0x43, 0, 3, 0, 0, 0, 0, 0, 12, 0], 12, &[]),
        (0x05, 0x24, 0x00),
    );

    // MODE SENSE (10), capabilities page: DVD-ROM read, tray, eject, lock.
    let r = c.exec(1, &[0x5a, 0x08, 0x2a, 0, 0, 0, 0, 0, 64, 0], 64, &[]);
    assert_eq!(r.status, GOOD);
    assert_eq!(r.data[8] & 0x3f, 0x2a);
    assert_eq!(r.data[8 + 2] & 0x08, 0x08);
    assert_eq!(r.data[8 + 6] & 0x29, 0x29);

    // READ DVD STRUCTURE, physical format: DVD-ROM book, one embossed layer.
    let r = c.exec(1, &[0xad, 0, 0, 0, 0, 0, 0, 0, 0x08, 0x04, 0, 0], 2052, &[]);
    assert_eq!(r.status, GOOD);
    assert_eq!((r.data[4] >> 4, r.data[6] & 0x0f), (0, 1));
    assert_eq!(be32(&r.data, 12) - be32(&r.data, 8) + 1, blocks as u32);

    let show = d.adm_ok(&["--op", "show", "--mode", "target"]);
    assert!(show.contains("Type: cd/dvd"), "{show}");
    assert!(show.contains(img.to_str().unwrap()), "{show}");
}

#[test]
fn iso_image_is_a_dvd_rom() {
    if !common::have_tool("genisoimage") {
        eprintln!("genisoimage missing (scripts/install-deps.sh installs it): skipped");
        return;
    }
    let d = Daemon::start();
    let tree = d.dir.join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    let content = prng_bytes(3, 300_000);
    std::fs::write(tree.join("data.bin"), &content).unwrap();
    let iso = d.dir.join("disc.iso");
    common::tool_ok(
        "genisoimage",
        &[
            "-quiet",
            "-V",
            "RTGTDISC",
            "-o",
            iso.to_str().unwrap(),
            tree.to_str().unwrap(),
        ],
    );
    let want = std::fs::read(&iso).unwrap();
    setup(&d, Some(&iso));
    let mut c = session(d.port, 1);
    let (_, r) = c.exec_after_uas(1, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], 8, &[]);
    let blocks = be32(&r.data, 0) as usize + 1;
    assert_eq!(blocks * BLOCK, want.len());
    let got = read_all(&mut c, blocks);
    assert_eq!(got, want);
    // The primary volume descriptor names the volume (ISO 9660 8.4).
    assert_eq!(&got[16 * BLOCK + 1..16 * BLOCK + 6], b"CD001");
    assert_eq!(&got[16 * BLOCK + 40..16 * BLOCK + 48], b"RTGTDISC");
}

#[test]
fn dvd_plus_r_burns_and_reads_back_after_restart() {
    let mut d = Daemon::start();
    let img = d.dir.join("blank.img");
    common::check(
        "rtgtimg",
        &common::tool(
            rtgtimg_bin().to_str().unwrap(),
            &[
                "--op",
                "new",
                "--device-type",
                "cd",
                "--type",
                "dvd+r",
                "--file",
                img.to_str().unwrap(),
            ],
        ),
    );
    assert_eq!(std::fs::metadata(&img).unwrap().len(), 0, "blank is empty");
    setup(&d, Some(&img));
    let mut c = session(d.port, 1);
    let (_, r) = c.exec_after_uas(1, &[0; 6], 0, &[]);
    assert_eq!(r.status, GOOD);
    assert_eq!(current_profile(&mut c), 0x001b);
    assert_eq!(disc_status(&mut c), 0x00, "empty");
    // A blank disc has no TOC.
    check(
        &c.exec(1, &[0x43, 0, 0, 0, 0, 0, 0, 0, 100, 0], 100, &[]),
        (0x05, 0x24, 0x00),
    );

    let blocks = 100usize;
    let data = prng_bytes(11, blocks * BLOCK);
    let r = c.exec(1, &[0x53, 0, 0, 0, 0, 0, 0, 0, blocks as u8, 0], 0, &[]);
    assert_eq!(r.status, GOOD, "RESERVE TRACK {r:?}");
    // SET STREAMING with a performance descriptor, READ BUFFER CAPACITY.
    let mut perf = vec![0u8; 28];
    perf[12..16].copy_from_slice(&1000u32.to_be_bytes());
    let r = c.exec(1, &[0xb6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 28, 0], 0, &perf);
    assert_eq!(r.status, GOOD, "SET STREAMING {r:?}");
    let r = c.exec(1, &[0x5c, 0x01, 0, 0, 0, 0, 0, 0, 12, 0], 12, &[]);
    assert_eq!((r.status, r.data[3] & 1), (GOOD, 1));
    assert!(be32(&r.data, 8) > 0);

    // Writes land only at the next writable address.
    check(
        &c.exec(1, &write10(16, 16), 0, &data[..16 * BLOCK]),
        (0x05, 0x21, 0x02),
    );
    let mut lba = 0;
    while lba < blocks {
        let n = (blocks - lba).min(16);
        let chunk = &data[lba * BLOCK..(lba + n) * BLOCK];
        let r = if lba % 32 == 0 {
            c.exec(1, &write10(lba as u32, n as u16), 0, chunk)
        } else {
            c.exec(1, &write12(lba as u32, n as u32), 0, chunk)
        };
        assert_eq!(r.status, GOOD, "WRITE at {lba}: {r:?}");
        lba += n;
    }
    // Past the reservation: end of the track.
    check(
        &c.exec(1, &write10(blocks as u32, 1), 0, &data[..BLOCK]),
        (0x05, 0x63, 0x00),
    );
    // The track is full: next writable address at its end, no free blocks.
    let r = c.exec(1, &[0x52, 0x01, 0, 0, 0, 1, 0, 0, 48, 0], 48, &[]);
    assert_eq!(r.status, GOOD);
    assert_eq!(
        (r.data[6] & 0xc0, be32(&r.data, 12), be32(&r.data, 16)),
        (0x80, blocks as u32, 0)
    );
    assert_eq!(disc_status(&mut c), 0x01, "incomplete");
    let r = c.exec(1, &[0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0], 0, &[]);
    assert_eq!(r.status, GOOD);
    // CLOSE TRACK, then CLOSE SESSION: the disc is complete and reads as a DVD-ROM.
    let r = c.exec(1, &[0x5b, 0, 0x01, 0, 0, 1, 0, 0, 0, 0], 0, &[]);
    assert_eq!(r.status, GOOD, "CLOSE TRACK {r:?}");
    let r = c.exec(1, &[0x5b, 0, 0x02, 0, 0, 0, 0, 0, 0, 0], 0, &[]);
    assert_eq!(r.status, GOOD, "CLOSE SESSION {r:?}");
    assert_eq!(current_profile(&mut c), 0x0010);
    assert_eq!(disc_status(&mut c), 0x02);
    check(
        &c.exec(1, &write10(blocks as u32, 1), 0, &data[..BLOCK]),
        (0x07, 0x27, 0x00),
    );
    assert_eq!(read_all(&mut c, blocks), data);
    assert_eq!(std::fs::read(&img).unwrap(), data, "the image is the disc");
    c.close();

    // After a restart the image is a recorded disc.
    let _ = d.stop();
    let d2 = Daemon::start();
    setup(&d2, Some(&img));
    let mut c = session(d2.port, 1);
    let (_, r) = c.exec_after_uas(1, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], 8, &[]);
    assert_eq!(be32(&r.data, 0), blocks as u32 - 1);
    assert_eq!(current_profile(&mut c), 0x0010);
    assert_eq!(read_all(&mut c, blocks), data);
}

#[test]
fn eject_and_medium_change_honour_prevent_and_are_reported() {
    let d = Daemon::start();
    let one = d.dir.join("one.img");
    let two = d.dir.join("two.img");
    let data_one = prng_bytes(21, 8 * BLOCK);
    let data_two = prng_bytes(22, 16 * BLOCK);
    std::fs::write(&one, &data_one).unwrap();
    std::fs::write(&two, &data_two).unwrap();
    setup(&d, Some(&one));
    let mut a = session(d.port, 1);
    let mut b = session(d.port, 2);
    for c in [&mut a, &mut b] {
        let (_, r) = c.exec_after_uas(1, &[0; 6], 0, &[]);
        assert_eq!(r.status, GOOD);
        assert_eq!(media_event(&c.exec(1, &gesn(), 8, &[])), (0, 0x02));
    }

    // A prevents removal: neither its own eject nor the administrator's takes the disc.
    let prevent = [0x1e, 0, 0, 0, 1, 0];
    assert_eq!(a.exec(1, &prevent, 0, &[]).status, GOOD);
    let eject = [0x1b, 0, 0, 0, 0x02, 0];
    check(&a.exec(1, &eject, 0, &[]), (0x05, 0x53, 0x02));
    let o = update(&d, "eject=1");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("prevents medium removal"), "{err}");
    assert!(!update(&d, &format!("media={}", two.display()))
        .status
        .success());
    // ... and the initiator hears an eject request.
    assert_eq!(media_event(&a.exec(1, &gesn(), 8, &[])), (1, 0x02));
    assert_eq!(a.exec(1, &read10(0, 1), 2048, &[]).data, data_one[..BLOCK]);
    let show = d.adm_ok(&["--op", "show", "--mode", "target"]);
    assert!(show.contains("Prevent removal: Yes"), "{show}");

    // Allowed again: the administrator takes the disc out.
    assert_eq!(a.exec(1, &[0x1e, 0, 0, 0, 0, 0], 0, &[]).status, GOOD);
    common::check("eject", &update(&d, "eject=1"));
    check(&a.exec(1, &[0; 6], 0, &[]), (0x02, 0x3a, 0x01));
    check(&a.exec(1, &read10(0, 1), 2048, &[]), (0x02, 0x3a, 0x01));
    assert_eq!(media_event(&a.exec(1, &gesn(), 8, &[])), (3, 0x00));
    assert_eq!(current_profile(&mut a), 0);
    let show = d.adm_ok(&["--op", "show", "--mode", "target"]);
    assert!(show.contains("Backing store path: None"), "{show}");

    // A new disc: NOT READY TO READY CHANGE for every nexus, then the new content.
    common::check("load", &update(&d, &format!("media={}", two.display())));
    for c in [&mut a, &mut b] {
        let (uas, r) = c.exec_after_uas(1, &[0; 6], 0, &[]);
        assert_eq!(uas, vec![(0x28, 0x00)]);
        assert_eq!(r.status, GOOD);
        let r = c.exec(1, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], 8, &[]);
        assert_eq!(be32(&r.data, 0), 15);
        assert_eq!(read_all(c, 16), data_two);
    }
    assert_eq!(events(&mut a), vec![2]);
    // B, which polled nothing, has the whole story queued, oldest first.
    assert_eq!(events(&mut b), vec![1, 3, 2]);

    // The initiator opens the tray (START STOP UNIT, LoEj) and closes it again.
    assert_eq!(a.exec(1, &eject, 0, &[]).status, GOOD);
    check(&a.exec(1, &[0; 6], 0, &[]), (0x02, 0x3a, 0x02));
    let r = a.exec(1, &[0xbd, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0], 8, &[]);
    assert_eq!(r.data[1] & 0x10, 0x10, "door open");
    assert_eq!(media_event(&b.exec(1, &gesn(), 8, &[])), (3, 0x01));
    assert_eq!(events(&mut a), vec![3]);
    let load = [0x1b, 0, 0, 0, 0x03, 0];
    assert_eq!(a.exec(1, &load, 0, &[]).status, GOOD);
    assert_eq!(a.exec(1, &[0; 6], 0, &[]).status, GOOD);
    let (uas, r) = b.exec_after_uas(1, &[0; 6], 0, &[]);
    assert_eq!((uas, r.status), (vec![(0x28, 0x00)], GOOD));
    assert_eq!(events(&mut b), vec![2]);

    // A prevention ends with its I_T nexus.
    assert_eq!(b.exec(1, &prevent, 0, &[]).status, GOOD);
    b.close();
    std::thread::sleep(std::time::Duration::from_millis(200));
    common::check("eject", &update(&d, "eject=1"));

    // force=1 takes a disc out whatever the initiator says.
    common::check("load", &update(&d, &format!("media={}", one.display())));
    let _ = a.exec_after_uas(1, &[0; 6], 0, &[]);
    assert_eq!(a.exec(1, &prevent, 0, &[]).status, GOOD);
    common::check("forced eject", &update(&d, "eject=1,force=1"));
    check(&a.exec(1, &[0; 6], 0, &[]), (0x02, 0x3a, 0x01));
}

#[test]
fn empty_drive_and_tgt_syntax() {
    let d = Daemon::start();
    setup(&d, None);
    let mut c = session(d.port, 1);
    let (_, r) = c.exec_after_uas(1, &[0; 6], 0, &[]);
    check(&r, (0x02, 0x3a, 0x01));
    // REQUEST SENSE says the same.
    let r = c.exec(1, &[0x03, 0, 0, 0, 18, 0], 18, &[]);
    assert_eq!(
        (r.data[2] & 0x0f, r.data[12], r.data[13]),
        (0x02, 0x3a, 0x01)
    );
    // GET CONFIGURATION and GESN work without a disc.
    assert_eq!(current_profile(&mut c), 0);
    assert_eq!(media_event(&c.exec(1, &gesn(), 8, &[])), (0, 0x00));
    // tgt's --name path --value FILE loads a disc.
    let img = d.dir.join("x.img");
    std::fs::write(&img, prng_bytes(5, 4 * BLOCK)).unwrap();
    d.adm_ok(&[
        "--op",
        "update",
        "--mode",
        "logicalunit",
        "--tid",
        "1",
        "--lun",
        "1",
        "--name",
        "path",
        "--value",
        img.to_str().unwrap(),
    ]);
    let (uas, r) = c.exec_after_uas(1, &[0; 6], 0, &[]);
    assert_eq!((uas, r.status), (vec![(0x28, 0x00)], GOOD));
    // A cd LU has 2048-byte blocks only; media= is for cd LUs only.
    let o = d.adm(&[
        "--op",
        "new",
        "--mode",
        "logicalunit",
        "--tid",
        "1",
        "--lun",
        "2",
        "--device-type",
        "cd",
        "--blocksize",
        "512",
    ]);
    assert!(!o.status.success());
    d.add_disk(2, "iqn.2026-11.org.rtgt:disk", 1 << 20, &[]);
    let o = d.adm(&[
        "--op",
        "update",
        "--mode",
        "logicalunit",
        "--tid",
        "2",
        "--lun",
        "1",
        "--params",
        "media=/nonexistent",
    ]);
    assert!(!o.status.success());
}

#[test]
fn report_supported_operation_codes_matches_what_the_drive_executes() {
    let d = Daemon::start();
    let img = d.dir.join("disc.img");
    std::fs::write(&img, prng_bytes(9, 64 * BLOCK)).unwrap();
    setup(&d, Some(&img));
    let mut c = session(d.port, 1);
    let (_, r) = c.exec_after_uas(1, &[0xa3, 0x0c, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0], 4096, &[]);
    assert_eq!(r.status, GOOD);
    let len = be32(&r.data, 0) as usize;
    let mut listed = std::collections::BTreeSet::new();
    for desc in r.data[4..4 + len].chunks(8) {
        listed.insert(desc[0]);
    }
    for must in [
        0x00, 0x03, 0x12, 0x1b, 0x1e, 0x25, 0x28, 0x2a, 0x35, 0x43, 0x46, 0x4a, 0x51, 0x52, 0x53,
        0x55, 0x5a, 0x5b, 0x5c, 0xa0, 0xa3, 0xa8, 0xaa, 0xad, 0xb6, 0xbd,
    ] {
        assert!(
            listed.contains(&must),
            "{must:#04x} not listed: {listed:x?}"
        );
    }
    // Every opcode not listed is INVALID COMMAND OPERATION CODE; every listed one is
    // executed (whatever else it may say about an all-zero CDB).
    for opcode in 0..=255u8 {
        let mut cdb = [0u8; 16];
        cdb[0] = opcode;
        if opcode == 0xa3 {
            cdb[1] = 0x0c;
        }
        let r = c.exec(1, &cdb, 512, &[]);
        let invalid = r.status == CHECK_CONDITION && r.sense_code() == (0x05, 0x20, 0x00);
        assert_eq!(
            invalid,
            !listed.contains(&opcode),
            "opcode {opcode:#04x}: {r:?}"
        );
    }
    // One command with its usage data: READ TOC.
    let r = c.exec(
        1,
        &[0xa3, 0x0c, 0x01, 0x43, 0, 0, 0, 0, 0, 64, 0, 0],
        64,
        &[],
    );
    assert_eq!((r.data[1] & 0x07, r.data[4]), (3, 0x43));
}
