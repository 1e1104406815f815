//! A media changer (SMC-3) configured with tgt's syntax, whose data transfer element
//! is a tape drive of another target: the element inventory with volume tags and
//! device identifiers, MOVE MEDIUM loading and unloading real cartridge images (with
//! the drive's unit attentions and PREVENT ALLOW), the exact errors of bad moves, and
//! the unit attention of an inventory change.

mod common;

use common::raw::RawConn;
use common::scsi::{be32, check_sense as sense, good, move_medium};
use common::{prng_bytes, Daemon, TempDir};
use rtgt_scsi::ssc::medium::{CartridgeType, Format, Label, Medium};

const LIB: &str = "iqn.2026-11.org.rtgt:library";
const DRV: &str = "iqn.2026-11.org.rtgt:drives";

const DRIVE: u16 = 100;
const SLOT1: u16 = 1000;

/// READ ELEMENT STATUS of one element type, VOLTAG and DVCID set.
fn element_status(c: &mut RawConn, etype: u8) -> Vec<u8> {
    let r = c.exec(
        1,
        &[0xb8, 0x10 | etype, 0, 0, 0, 100, 0x02, 0, 0x10, 0, 0, 0],
        4096,
        &[],
    );
    good(&r, "READ ELEMENT STATUS");
    r.data
}

/// (address, full, volume tag) of each descriptor in the first page.
fn descriptors(d: &[u8]) -> Vec<(u16, bool, String)> {
    let len = u16::from_be_bytes([d[10], d[11]]) as usize;
    let bytes = be32(&[0, d[13], d[14], d[15]], 0) as usize;
    d[16..16 + bytes]
        .chunks(len)
        .map(|e| {
            let tag = String::from_utf8_lossy(&e[12..44])
                .trim_end_matches([' ', '\0'])
                .to_string();
            (u16::from_be_bytes([e[0], e[1]]), e[2] & 0x01 != 0, tag)
        })
        .collect()
}

fn library(dir: &TempDir) -> Daemon {
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    for i in 1..=4 {
        let barcode = format!("VOL00{i}");
        let label = Label {
            barcode: barcode.clone(),
            capacity: 8 << 20,
            kind: CartridgeType::Data,
            serial: format!("{barcode}_1"),
        };
        Medium::create(&home.join(&barcode), Format::Rtgt, &label, false).unwrap();
    }
    let d = Daemon::start();
    let h = home.to_str().unwrap();
    // The drive in target 2, empty; the changer in target 1 (tgt's syntax throughout).
    d.new_target("2", DRV);
    d.adm_ok(&[
        "--op",
        "new",
        "--mode",
        "logicalunit",
        "--tid",
        "2",
        "--lun",
        "1",
        "--device-type",
        "tape",
        "--bstype",
        "ssc",
        "-b",
        "None",
    ]);
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
    let upd = |p: &str| {
        d.update_lu("1", "1", p);
    };
    upd(&format!("media_home={h}"));
    upd("element_type=1,start_address=1,quantity=1");
    upd("element_type=4,start_address=100,quantity=1");
    upd("element_type=4,address=100,tid=2,lun=1");
    upd("element_type=2,start_address=1000,quantity=6");
    upd("element_type=3,start_address=10,quantity=1");
    for i in 0..4u16 {
        upd(&format!(
            "element_type=2,address={},barcode=VOL00{},sides=1",
            SLOT1 + i,
            i + 1
        ));
    }
    for tid in ["1", "2"] {
        d.adm_ok(&[
            "--op", "bind", "--mode", "target", "--tid", tid, "-I", "ALL",
        ]);
    }
    d
}

#[test]
fn mtx_style_inventory_moves_and_errors() {
    let dir = TempDir::new("changer");
    let d = library(&dir);
    let mut ch = RawConn::session(d.port, LIB);
    let mut dr = RawConn::session(d.port, DRV);
    let (_, r) = ch.exec_after_uas(1, &[0; 6], 0, &[]);
    good(&r, "changer TUR");
    let (_, r) = dr.exec_after_uas(1, &[0; 6], 0, &[]);
    assert_eq!(sense(&r), (0x2, 0x3a, 0x00), "an empty drive");

    let inq = ch.exec(1, &[0x12, 0, 0, 0, 96, 0], 96, &[]);
    assert_eq!(inq.data[0], 0x08, "medium changer device");
    // Element address assignment page: 1 transport at 1, 6 slots at 1000, 1 I/E at
    // 10, 1 drive at 100.
    let ms = ch.exec(1, &[0x1a, 0x08, 0x1d, 0, 255, 0], 255, &[]);
    good(&ms, "MODE SENSE 1Dh");
    assert_eq!(
        &ms.data[4..22],
        &[0x1d, 18, 0, 1, 0, 1, 0x03, 0xe8, 0, 6, 0, 10, 0, 1, 0, 100, 0, 1]
    );

    let slots = descriptors(&element_status(&mut ch, 2));
    assert_eq!(slots.len(), 6);
    assert_eq!(slots[0], (1000, true, "VOL001".into()));
    assert_eq!(slots[3], (1003, true, "VOL004".into()));
    assert_eq!(slots[4], (1004, false, String::new()));
    let drive = element_status(&mut ch, 4);
    assert_eq!(descriptors(&drive), vec![(DRIVE, false, String::new())]);
    // DVCID: the drive's identifier (vendor, product, serial) after the volume tag.
    let id = &drive[16 + 12 + 36..];
    assert_eq!((id[0], id[1], id[3]), (2, 1, 36));
    assert!(
        id[4..40].starts_with(b"RTGT    VIRTUAL-TAPE    "),
        "{:?}",
        &id[4..40]
    );

    // Bad moves.
    assert_eq!(sense(&move_medium(&mut ch, 1004, DRIVE)), (0x5, 0x3b, 0x0e));
    assert_eq!(sense(&move_medium(&mut ch, 1000, 1001)), (0x5, 0x3b, 0x0d));
    assert_eq!(sense(&move_medium(&mut ch, 1000, 4242)), (0x5, 0x21, 0x01));

    // Load VOL002: the drive reports the medium change, then is ready.
    good(&move_medium(&mut ch, 1001, DRIVE), "MOVE slot -> drive");
    let r = dr.exec(1, &[0; 6], 0, &[]);
    assert_eq!(sense(&r), (0x6, 0x28, 0x00));
    good(&dr.exec(1, &[0; 6], 0, &[]), "drive TUR after load");
    let data = prng_bytes(7, 4096);
    good(&dr.exec(1, &[0x0a, 0, 0, 0x10, 0, 0], 0, &data), "WRITE");
    good(&dr.exec(1, &[0x10, 0, 0, 0, 1, 0], 0, &[]), "WFM");
    let st = descriptors(&element_status(&mut ch, 4));
    assert_eq!(st, vec![(DRIVE, true, "VOL002".into())]);
    let raw = element_status(&mut ch, 4);
    assert_eq!(raw[16 + 9] & 0x80, 0x80, "SVALID");
    assert_eq!(
        &raw[16 + 10..16 + 12],
        &1001u16.to_be_bytes(),
        "source slot"
    );

    // The drive's PREVENT keeps the cartridge in it.
    good(&dr.exec(1, &[0x1e, 0, 0, 0, 1, 0], 0, &[]), "PREVENT");
    assert_eq!(sense(&move_medium(&mut ch, DRIVE, 1001)), (0x5, 0x53, 0x02));
    good(&dr.exec(1, &[0x1e, 0, 0, 0, 0, 0], 0, &[]), "ALLOW");
    good(
        &move_medium(&mut ch, DRIVE, 1005),
        "MOVE drive -> slot 1005",
    );
    let r = dr.exec(1, &[0; 6], 0, &[]);
    assert_eq!(sense(&r), (0x6, 0x28, 0x00));
    assert_eq!(sense(&dr.exec(1, &[0; 6], 0, &[])), (0x2, 0x3a, 0x00));

    // EXCHANGE MEDIUM: VOL002 (slot 1005) into the drive... via MOVE, then swap the
    // drive's cartridge with slot 1000's, the drive's going to 1001.
    good(&move_medium(&mut ch, 1005, DRIVE), "MOVE 1005 -> drive");
    let r = ch.exec(
        1,
        &[0xa6, 0, 0, 0, 0x03, 0xe8, 0, DRIVE as u8, 0x03, 0xe9, 0, 0],
        0,
        &[],
    );
    good(&r, "EXCHANGE MEDIUM");
    let st = descriptors(&element_status(&mut ch, 4));
    assert_eq!(st, vec![(DRIVE, true, "VOL001".into())]);
    let slots = descriptors(&element_status(&mut ch, 2));
    assert_eq!(slots[1], (1001, true, "VOL002".into()));
    assert!(!slots[0].1);

    // VOL002 back into the drive: what was written is there.
    good(&move_medium(&mut ch, DRIVE, 1000), "MOVE drive -> 1000");
    good(&move_medium(&mut ch, 1001, DRIVE), "MOVE 1001 -> drive");
    let (_, r) = dr.exec_after_uas(1, &[0x08, 0, 0, 0x10, 0, 0], 4096, &[]);
    good(&r, "READ");
    assert_eq!(r.data, data);

    // An inventory change by the administrator is a unit attention on the changer.
    d.update_lu("1", "1", "element_type=3,address=10,barcode=VOL003,sides=1");
    assert_eq!(sense(&ch.exec(1, &[0; 6], 0, &[])), (0x6, 0x28, 0x00));
    let ie = descriptors(&element_status(&mut ch, 3));
    assert_eq!(ie, vec![(10, true, "VOL003".into())]);

    let show = d.adm_ok(&["--op", "show", "--mode", "target"]);
    assert!(show.contains("Type: changer"), "{show}");
    assert!(
        show.contains("Element 100: data transfer (tid 2 lun 1): VOL002"),
        "{show}"
    );

    // Bad configuration is refused with a reason.
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
        "element_type=4,address=100,tid=9,lun=1",
    ]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no drive there that takes media"),
        "{o:?}"
    );
}
