//! tgt's DVD jukebox: a media changer (SMC-3) whose data transfer elements are CD/DVD
//! drives (MMC-6) — and a tape drive beside them in the same library — configured with
//! tgt's syntax. MOVE MEDIUM loads a disc image from `media_home` into the drive, which
//! reports the change (NOT READY TO READY CHANGE, a GESN NEW MEDIA event) and reads the
//! disc byte-exact; unloading empties it; a drive whose removal is prevented keeps its
//! disc with the sense SMC-3 prescribes; EXCHANGE MEDIUM swaps discs; `--save-config`
//! and a restart put every disc back where it was.

mod common;

use std::path::Path;

use common::raw::RawConn;
use common::scsi::{be32, check_sense as sense, good, move_medium, read10};
use common::{prng_bytes, Daemon, TempDir};
use rtgt_scsi::ssc::medium::{CartridgeType, Format, Label, Medium};

const LIB: &str = "iqn.2026-12.org.rtgt:jukebox";
const DRV: &str = "iqn.2026-12.org.rtgt:dvd-drives";
const CD_BLOCK: usize = 2048;

/// Data transfer elements: the DVD drive (tid 2, LUN 1) and the tape drive (LUN 2).
const DVD: u16 = 100;
const TAPE: u16 = 101;
const SLOT1: u16 = 1000;

/// (address, full, volume tag) of every element, VOLTAG set.
fn inventory(c: &mut RawConn) -> Vec<(u16, bool, String)> {
    let r = c.exec(
        1,
        &[0xb8, 0x10, 0, 0, 0, 100, 0, 0, 0x40, 0, 0, 0],
        0x4000,
        &[],
    );
    good(&r, "READ ELEMENT STATUS");
    let d = r.data;
    let total = be32(&[0, d[5], d[6], d[7]], 0) as usize;
    let mut out = Vec::new();
    let mut at = 8;
    while at < 8 + total {
        let len = u16::from_be_bytes([d[at + 2], d[at + 3]]) as usize;
        let bytes = be32(&[0, d[at + 5], d[at + 6], d[at + 7]], 0) as usize;
        for e in d[at + 8..at + 8 + bytes].chunks(len) {
            let tag = String::from_utf8_lossy(&e[12..44])
                .trim_end_matches([' ', '\0'])
                .to_string();
            out.push((u16::from_be_bytes([e[0], e[1]]), e[2] & 0x01 != 0, tag));
        }
        at += 8 + bytes;
    }
    out
}

/// GET EVENT STATUS NOTIFICATION, polled, media class: the event code.
fn media_event(c: &mut RawConn) -> u8 {
    let r = c.exec(1, &[0x4a, 0x01, 0, 0, 0x10, 0, 0, 0, 8, 0], 8, &[]);
    good(&r, "GET EVENT STATUS NOTIFICATION");
    r.data[4] & 0x0f
}

/// Two discs and a tape cartridge in `media_home`; the discs' contents.
fn media(home: &Path) -> (Vec<u8>, Vec<u8>) {
    std::fs::create_dir_all(home).unwrap();
    let a = prng_bytes(31, 48 * CD_BLOCK);
    let b = prng_bytes(32, 40 * CD_BLOCK);
    std::fs::write(home.join("DISC01"), &a).unwrap();
    std::fs::write(home.join("DISC02"), &b).unwrap();
    let label = Label {
        barcode: "VOL001".into(),
        capacity: 8 << 20,
        kind: CartridgeType::Data,
        serial: "VOL001_1".into(),
    };
    Medium::create(&home.join("VOL001"), Format::Rtgt, &label, false).unwrap();
    (a, b)
}

/// The jukebox, with tgt's command lines (its VTL / jukebox scripts' syntax).
fn configure(d: &Daemon, home: &Path) {
    let h = home.display();
    let cmds = [
        format!("--op new --mode target --tid 2 -T {DRV}"),
        // A DVD drive created empty (tgt's jukebox drives are), and a tape drive.
        "--op new --mode logicalunit --tid 2 --lun 1 --device-type cd".into(),
        "--op new --mode logicalunit --tid 2 --lun 2 --device-type tape --bstype ssc -b None"
            .into(),
        format!("--op new --mode target --tid 1 -T {LIB}"),
        "--op new --mode logicalunit --tid 1 --lun 1 --device-type changer -b None".into(),
        format!("--op update --mode logicalunit --tid 1 --lun 1 --params media_home={h}"),
        "--op update --mode logicalunit --tid 1 --lun 1 --params element_type=1,start_address=1,quantity=1".into(),
        "--op update --mode logicalunit --tid 1 --lun 1 --params element_type=4,start_address=100,quantity=2".into(),
        "--op update --mode logicalunit --tid 1 --lun 1 --params element_type=4,address=100,tid=2,lun=1".into(),
        "--op update --mode logicalunit --tid 1 --lun 1 --params element_type=4,address=101,tid=2,lun=2".into(),
        "--op update --mode logicalunit --tid 1 --lun 1 --params element_type=2,start_address=1000,quantity=6".into(),
        "--op update --mode logicalunit --tid 1 --lun 1 --params element_type=2,address=1000,barcode=DISC01".into(),
        "--op update --mode logicalunit --tid 1 --lun 1 --params element_type=2,address=1001,barcode=DISC02".into(),
        "--op update --mode logicalunit --tid 1 --lun 1 --params element_type=2,address=1002,barcode=VOL001".into(),
        "--op bind --mode target --tid 1 -I ALL".into(),
        "--op bind --mode target --tid 2 -I ALL".into(),
    ];
    for c in &cmds {
        d.adm_ok(&c.split_whitespace().collect::<Vec<_>>());
    }
}

fn read_disc(c: &mut RawConn, blocks: usize) -> Vec<u8> {
    let r = c.exec(
        1,
        &read10(0, blocks as u16),
        (blocks * CD_BLOCK) as u32,
        &[],
    );
    good(&r, "READ (10) of the disc");
    r.data
}

fn wait_saved(file: &Path, needle: &str) -> String {
    let t0 = std::time::Instant::now();
    loop {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        if text.contains(needle) || t0.elapsed().as_secs() > 10 {
            return text;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn a_changer_loads_discs_into_dvd_drives_and_tapes_into_tape_drives() {
    let dir = TempDir::new("jukebox");
    let home = dir.join("home");
    let (disc1, disc2) = media(&home);
    let file = dir.join("rtgt.toml");
    let f = file.to_str().unwrap();
    let mut d = Daemon::start_args(&["--save-config", f]);
    configure(&d, &home);
    let mut ch = RawConn::session(d.port, LIB);
    let mut dvd = RawConn::session(d.port, DRV);
    let _ = ch.exec_after_uas(1, &[0; 6], 0, &[]);
    // An empty drive with its tray closed (MMC-6 F.2).
    let (_, r) = dvd.exec_after_uas(1, &[0; 6], 0, &[]);
    assert_eq!(sense(&r), (0x2, 0x3a, 0x01), "no disc in the DVD drive");
    let inv = inventory(&mut ch);
    assert!(inv.contains(&(DVD, false, String::new())), "{inv:?}");
    assert!(inv.contains(&(SLOT1, true, "DISC01".into())), "{inv:?}");

    // MOVE MEDIUM slot -> DVD drive: the drive tells of the new disc, then reads it.
    good(&move_medium(&mut ch, SLOT1, DVD), "MOVE DISC01 -> drive");
    assert_eq!(sense(&dvd.exec(1, &[0; 6], 0, &[])), (0x6, 0x28, 0x00));
    assert_eq!(media_event(&mut dvd), 2, "GESN NEW MEDIA");
    good(&dvd.exec(1, &[0; 6], 0, &[]), "TUR with the disc in");
    assert!(read_disc(&mut dvd, 48) == disc1, "DISC01 byte-exact");
    let cap = dvd.exec(1, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], 8, &[]);
    good(&cap, "READ CAPACITY");
    assert_eq!(be32(&cap.data, 0), 47, "last LBA of DISC01");
    let inv = inventory(&mut ch);
    assert!(inv.contains(&(DVD, true, "DISC01".into())), "{inv:?}");
    assert!(inv.contains(&(SLOT1, false, String::new())), "{inv:?}");

    // The drive's PREVENT ALLOW MEDIUM REMOVAL keeps the disc in it (SMC-3 6.6:
    // ILLEGAL REQUEST, MEDIUM REMOVAL PREVENTED).
    good(&dvd.exec(1, &[0x1e, 0, 0, 0, 1, 0], 0, &[]), "PREVENT");
    assert_eq!(sense(&move_medium(&mut ch, DVD, SLOT1)), (0x5, 0x53, 0x02));
    assert!(
        read_disc(&mut dvd, 4) == disc1[..4 * CD_BLOCK],
        "still DISC01"
    );
    good(&dvd.exec(1, &[0x1e, 0, 0, 0, 0, 0], 0, &[]), "ALLOW");

    // EXCHANGE MEDIUM: DISC02 into the drive, DISC01 to slot 1004.
    let r = ch.exec(
        1,
        &[0xa6, 0, 0, 0, 0x03, 0xe9, 0, DVD as u8, 0x03, 0xec, 0, 0],
        0,
        &[],
    );
    good(&r, "EXCHANGE MEDIUM");
    assert_eq!(sense(&dvd.exec(1, &[0; 6], 0, &[])), (0x6, 0x28, 0x00));
    assert!(read_disc(&mut dvd, 40) == disc2, "DISC02 byte-exact");
    let inv = inventory(&mut ch);
    assert!(inv.contains(&(DVD, true, "DISC02".into())), "{inv:?}");
    assert!(inv.contains(&(1004, true, "DISC01".into())), "{inv:?}");

    // The tape drive in the same library takes the cartridge.
    good(
        &move_medium(&mut ch, 1002, TAPE),
        "MOVE VOL001 -> tape drive",
    );
    let (_, r) = dvd.exec_after_uas(2, &[0; 6], 0, &[]);
    good(&r, "tape drive TUR with VOL001");

    // A full drive takes no second medium (SMC-3 6.6: MEDIUM DESTINATION ELEMENT FULL).
    assert_eq!(sense(&move_medium(&mut ch, 1004, DVD)), (0x5, 0x3b, 0x0d));

    let show = d.adm_ok(&["--op", "show", "--mode", "target"]);
    assert!(
        show.contains("Element 100: data transfer (tid 2 lun 1): DISC02"),
        "{show}"
    );

    // Saved at once, and a restart from the saved file puts every medium back.
    let text = wait_saved(&file, "address=101,barcode=VOL001");
    assert!(
        text.contains("element_type=4,address=100,barcode=DISC02,source=1001"),
        "{text}"
    );
    drop(ch);
    drop(dvd);
    let before = inventory(&mut RawConn::session(d.port, LIB));
    d.kill();
    drop(d);
    let d = Daemon::start_args(&["--config", f, "--save-config", f]);
    let mut ch = RawConn::session(d.port, LIB);
    let _ = ch.exec_after_uas(1, &[0; 6], 0, &[]);
    assert_eq!(inventory(&mut ch), before, "{}", d.log());
    let mut dvd = RawConn::session(d.port, DRV);
    let (_, r) = dvd.exec_after_uas(1, &[0; 6], 0, &[]);
    good(&r, "the DVD drive has its disc back");
    assert!(read_disc(&mut dvd, 40) == disc2, "DISC02 after the restart");

    // Unload: the drive is empty again and says so (GESN MEDIA REMOVAL).
    let _ = media_event(&mut dvd);
    good(&move_medium(&mut ch, DVD, 1001), "MOVE drive -> slot 1001");
    assert_eq!(media_event(&mut dvd), 3, "GESN MEDIA REMOVAL");
    let (_, r) = dvd.exec_after_uas(1, &[0; 6], 0, &[]);
    assert_eq!(sense(&r), (0x2, 0x3a, 0x01), "the drive is empty");

    // `config dump` of this state applied to the daemon is no change at all.
    let dump = dir.join("dump.toml");
    d.adm_ok(&["config", "dump", dump.to_str().unwrap()]);
    let plan = d.adm_ok(&["config", "apply", dump.to_str().unwrap()]);
    assert_eq!(plan.trim(), "no changes", "{plan}");
}

#[test]
fn a_drive_that_takes_no_media_is_refused_as_a_data_transfer_element() {
    let d = Daemon::start();
    d.new_target("1", LIB);
    d.adm_ok(&[
        "--op",
        "new",
        "--mode",
        "logicalunit",
        "--tid",
        "1",
        "--lun",
        "1",
        "--device-type",
        "changer",
        "-b",
        "None",
    ]);
    d.adm_ok(&[
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
        "size=1M",
    ]);
    d.update_lu("1", "1", "element_type=4,start_address=100,quantity=1");
    let o = d.adm(&[
        "--op",
        "update",
        "--mode",
        "logicalunit",
        "--tid",
        "1",
        "--lun",
        "1",
        "--params",
        "element_type=4,address=100,tid=1,lun=2",
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("no drive there that takes media"),
        "a disk is not a drive: {err}"
    );
}

#[test]
fn a_disc_configured_into_a_drive_is_in_the_drive() {
    let dir = TempDir::new("jukebox-cfg");
    let home = dir.join("home");
    let (disc1, disc2) = media(&home);
    let d = Daemon::start();
    configure(&d, &home);
    // A second DVD drive holding DISC02 from the start, mapped at a third element.
    d.adm_ok(&[
        "--op",
        "new",
        "--mode",
        "logicalunit",
        "--tid",
        "2",
        "--lun",
        "3",
        "--device-type",
        "cd",
        "-b",
        home.join("DISC02").to_str().unwrap(),
    ]);
    d.update_lu("1", "1", "element_type=4,start_address=102,quantity=1");
    d.update_lu("1", "1", "element_type=4,address=102,tid=2,lun=3");
    // Configured into the empty drive: the drive is loaded with it.
    d.update_lu(
        "1",
        "1",
        "element_type=4,address=100,barcode=DISC01,source=0",
    );
    let mut dvd = RawConn::session(d.port, DRV);
    let (_, r) = dvd.exec_after_uas(1, &[0; 6], 0, &[]);
    good(&r, "the drive holds the configured disc");
    assert!(read_disc(&mut dvd, 48) == disc1, "DISC01 in the drive");
    // Configured into the drive that holds it already: nothing changes.
    d.update_lu(
        "1",
        "1",
        "element_type=4,address=102,barcode=DISC02,source=0",
    );
    let (_, r) = dvd.exec_after_uas(3, &[0; 6], 0, &[]);
    good(&r, "the second drive still has its disc");
    let r = dvd.exec(3, &read10(0, 40), 40 * CD_BLOCK as u32, &[]);
    good(&r, "READ of the second drive");
    assert!(r.data == disc2, "DISC02 in the second drive");
    // A drive holding another disc can't be said to hold this one.
    std::fs::write(home.join("DISC03"), prng_bytes(33, 8 * CD_BLOCK)).unwrap();
    d.update_lu("1", "1", "element_type=4,start_address=103,quantity=1");
    d.update_lu("1", "1", "element_type=4,address=103,tid=2,lun=3");
    let o = d.adm(&[
        "--op",
        "update",
        "--mode",
        "logicalunit",
        "--tid",
        "1",
        "--lun",
        "1",
        "--params",
        "element_type=4,address=103,barcode=DISC03",
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("holds") && err.contains("not DISC03"), "{err}");
}
