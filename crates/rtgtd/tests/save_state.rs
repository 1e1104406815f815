//! A restart with the saved configuration brings back more than targets and LUNs: a
//! VTL's inventory with the cartridge an initiator moved into the drive (SMC-3 MOVE
//! MEDIUM), that drive's loaded cartridge with the data written to it, ALUA states and
//! peers (REPORT TARGET PORT GROUPS), designators (VPD 80h/83h), session limits, LUN
//! masking, and cd drives with a disc and without. `config dump` then `config apply`
//! of it on the running daemon changes nothing.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::raw::RawConn;
use common::scsi::{be32, read10, CHECK_CONDITION, GOOD};
use common::{prng_bytes, Daemon, TempDir};
use rtgt_scsi::ssc::medium::{CartridgeType, Format, Label, Medium};

const LIB: &str = "iqn.2026-11.org.rtgt:savedlib";
const DRV: &str = "iqn.2026-11.org.rtgt:saveddrv";
const CDS: &str = "iqn.2026-11.org.rtgt:savedcds";
/// The one initiator LUN 2 of the drive's target is masked to.
const ONLY: &str = "iqn.2026-11.org.example:only";
const CD_BLOCK: usize = 2048;

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

/// (address, full, volume tag) of each element of every type (READ ELEMENT STATUS,
/// VOLTAG set).
fn inventory(c: &mut RawConn) -> Vec<(u16, bool, String)> {
    let mut out = Vec::new();
    for etype in [1u8, 2, 4] {
        let r = c.exec(
            1,
            &[0xb8, 0x10 | etype, 0, 0, 0, 100, 0, 0, 0x10, 0, 0, 0],
            4096,
            &[],
        );
        assert_eq!(r.status, GOOD, "READ ELEMENT STATUS: {r:?}");
        let d = &r.data;
        let len = u16::from_be_bytes([d[10], d[11]]) as usize;
        let bytes = be32(&[0, d[13], d[14], d[15]], 0) as usize;
        for e in d[16..16 + bytes].chunks(len) {
            let tag = String::from_utf8_lossy(&e[12..44])
                .trim_end_matches([' ', '\0'])
                .to_string();
            out.push((u16::from_be_bytes([e[0], e[1]]), e[2] & 1 != 0, tag));
        }
    }
    out
}

/// The LUNs REPORT LUNS lists to this session.
fn report_luns(c: &mut RawConn) -> Vec<u64> {
    let r = c.exec(0, &[0xa0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0], 4096, &[]);
    assert_eq!(r.status, GOOD, "REPORT LUNS: {r:?}");
    let n = be32(&r.data, 0) as usize / 8;
    (0..n)
        .map(|i| u64::from(u16::from_be_bytes([r.data[8 + 8 * i], r.data[9 + 8 * i]]) & 0x3fff))
        .collect()
}

/// What must not change across a restart: the unit serial number and device
/// identification VPD pages (SPC-4 7.8.17, 7.8.6), and for a disk (the LU type rtgt
/// implements ALUA for) REPORT TARGET PORT GROUPS (SPC-4 6.36).
fn identity(c: &mut RawConn, lun: u8, disk: bool) -> Vec<Vec<u8>> {
    let cdbs: [&[u8]; 3] = [
        &[0xa3, 0x0a, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0],
        &[0x12, 1, 0x80, 0x10, 0, 0],
        &[0x12, 1, 0x83, 0x10, 0, 0],
    ];
    cdbs.iter()
        .skip(usize::from(!disk))
        .map(|cdb| {
            let r = c.exec(lun, cdb, 4096, &[]);
            assert_eq!(r.status, GOOD, "{cdb:02x?} on LUN {lun}: {r:?}");
            assert!(r.data.len() > 4, "{cdb:02x?}: {r:?}");
            r.data
        })
        .collect()
}

fn stable_show(d: &Daemon) -> String {
    d.adm_ok(&["--op", "show", "--mode", "target"])
        .lines()
        .filter(|l| {
            !l.contains("Backing store I/O")
                && !l.contains("I_T nexus")
                && !l.contains("Transport:")
                && !l.contains("Connection")
                && !l.contains("Initiator:")
                && !l.contains("IP Address")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn vtl_alua_and_masking_survive_a_crash() {
    let dir = TempDir::new("savestate");
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
    let iso = dir.join("disc.iso");
    let disc = prng_bytes(8, 32 * CD_BLOCK);
    std::fs::write(&iso, &disc).unwrap();
    let file = dir.join("rtgt.toml");
    let f = file.to_str().unwrap();
    let mut d = Daemon::start_args(&["--save-config", f]);
    wait_saved(&file, "rtgt configuration");
    let h = home.to_str().unwrap();
    let cmds = [
        format!("--op new --mode target --tid 2 -T {DRV}"),
        "--op new --mode logicalunit --tid 2 --lun 1 --device-type tape --bstype ssc -b None".into(),
        format!("--op new --mode target --tid 1 -T {LIB}"),
        "--op new --mode logicalunit --tid 1 --lun 1 --device-type changer -b None".into(),
        format!("--op update --mode logicalunit --tid 1 --lun 1 --params media_home={h}"),
        "--op update --mode logicalunit --tid 1 --lun 1 --params element_type=1,start_address=1,quantity=1".into(),
        "--op update --mode logicalunit --tid 1 --lun 1 --params element_type=4,start_address=100,quantity=1".into(),
        "--op update --mode logicalunit --tid 1 --lun 1 --params element_type=4,address=100,tid=2,lun=1".into(),
        "--op update --mode logicalunit --tid 1 --lun 1 --params element_type=2,start_address=1000,quantity=6".into(),
        "--op update --mode logicalunit --tid 1 --lun 1 --params element_type=2,address=1000,barcode=VOL001".into(),
        "--op update --mode logicalunit --tid 1 --lun 1 --params element_type=2,address=1001,barcode=VOL002".into(),
        "--op update --mode logicalunit --tid 1 --lun 1 --params element_type=2,address=1002,barcode=VOL003".into(),
        "--op update --mode logicalunit --tid 1 --lun 1 --params element_type=2,address=1003,barcode=VOL004".into(),
        "--op bind --mode target --tid 1 -I ALL".into(),
        "--op bind --mode target --tid 2 -I ALL".into(),
        "--op new --mode logicalunit --tid 2 --lun 2 -E null --bsopts size=1G".into(),
        "--op bind --mode logicalunit --tid 2 --lun 2 -Q iqn.2026-11.org.example:only".into(),
        "--op update --mode target --tid 2 --name alua_state.1 --value standby".into(),
        "--op update --mode target --tid 2 --name alua_peer.7 --value nonoptimized".into(),
        "--op update --mode target --tid 2 --name max_sessions --value 3".into(),
        "--op update --mode sys --name max_sessions --value 40".into(),
        format!("--op new --mode target --tid 3 -T {CDS}"),
        format!("--op new --mode logicalunit --tid 3 --lun 1 --device-type cd -b {}", iso.display()),
        format!("--op new --mode logicalunit --tid 3 --lun 2 --device-type cd -b {}", iso.display()),
        "--op update --mode logicalunit --tid 3 --lun 2 --params eject=1".into(),
        "--op bind --mode target --tid 3 -I ALL".into(),
    ];
    for c in &cmds {
        d.adm_ok(&c.split_whitespace().collect::<Vec<_>>());
    }
    // An initiator loads VOL002 into the drive.
    let mut ch = RawConn::session(d.port, LIB);
    let _ = ch.exec_after_uas(1, &[0; 6], 0, &[]);
    let (s, dst) = (1001u16.to_be_bytes(), 100u16.to_be_bytes());
    let r = ch.exec(
        1,
        &[0xa5, 0, 0, 0, s[0], s[1], dst[0], dst[1], 0, 0, 0, 0],
        0,
        &[],
    );
    assert_eq!(r.status, GOOD, "MOVE MEDIUM: {r:?}");
    let inv = inventory(&mut ch);
    assert!(inv.contains(&(100, true, "VOL002".into())), "{inv:?}");
    assert!(inv.contains(&(1001, false, String::new())), "{inv:?}");
    drop(ch);
    // Data written to the cartridge in the drive before the crash.
    let record = prng_bytes(2, 4096);
    let mut dr = RawConn::session(d.port, DRV);
    let _ = dr.exec_after_uas(1, &[0; 6], 0, &[]);
    let r = dr.exec(1, &[0x0a, 0, 0, 0x10, 0, 0], 0, &record);
    assert_eq!(r.status, GOOD, "WRITE to VOL002: {r:?}");
    let r = dr.exec(1, &[0x10, 0, 0, 0, 1, 0], 0, &[]);
    assert_eq!(r.status, GOOD, "WRITE FILEMARKS: {r:?}");
    let drive_id = identity(&mut dr, 1, false);
    assert_eq!(report_luns(&mut dr), vec![0, 1], "LUN 2 is masked");
    drop(dr);
    let mut only = RawConn::session_with(d.port, DRV, &[("InitiatorName", ONLY)]);
    let _ = only.exec_after_uas(2, &[0; 6], 0, &[]);
    assert_eq!(report_luns(&mut only), vec![0, 1, 2]);
    let disk_id = identity(&mut only, 2, true);
    drop(only);
    let text = wait_saved(&file, "address=100,barcode=VOL002");
    assert!(
        text.contains("element_type=4,address=100,barcode=VOL002,source=1001"),
        "{text}"
    );
    assert!(text.contains("max_sessions = 40"), "{text}");
    let before = stable_show(&d);
    assert!(before.contains("VOL002"), "{before}");

    // The dump applied to the daemon that wrote it is no change at all.
    let dump = dir.join("dump.toml");
    d.adm_ok(&["config", "dump", dump.to_str().unwrap()]);
    let plan = d.adm_ok(&["config", "apply", dump.to_str().unwrap()]);
    assert_eq!(plan.trim(), "no changes", "{plan}");

    d.kill();
    drop(d);
    let d = Daemon::start_args(&["--config", f, "--save-config", f]);
    assert_eq!(stable_show(&d), before, "{}", d.log());
    let mut ch = RawConn::session(d.port, LIB);
    let _ = ch.exec_after_uas(1, &[0; 6], 0, &[]);
    assert_eq!(inventory(&mut ch), inv);
    // The drive holds VOL002: TEST UNIT READY is good once the unit attentions are
    // read.
    let mut dr = RawConn::session(d.port, DRV);
    let (_, r) = dr.exec_after_uas(1, &[0; 6], 0, &[]);
    assert_eq!(r.status, GOOD, "the drive has its cartridge back: {r:?}");
    // ... the one written before the crash: REWIND, then the record reads back.
    let r = dr.exec(1, &[0x01, 0, 0, 0, 0, 0], 0, &[]);
    assert_eq!(r.status, GOOD, "REWIND: {r:?}");
    let r = dr.exec(1, &[0x08, 0, 0, 0x10, 0, 0], 4096, &[]);
    assert_eq!(r.status, GOOD, "READ: {r:?}");
    assert!(
        r.data == record,
        "the record written to VOL002 before the crash"
    );
    assert_eq!(
        identity(&mut dr, 1, false),
        drive_id,
        "tape drive RTPG / VPD"
    );
    assert_eq!(report_luns(&mut dr), vec![0, 1], "LUN 2 is still masked");
    drop(dr);
    let mut only = RawConn::session_with(d.port, DRV, &[("InitiatorName", ONLY)]);
    let _ = only.exec_after_uas(2, &[0; 6], 0, &[]);
    assert_eq!(report_luns(&mut only), vec![0, 1, 2]);
    assert_eq!(identity(&mut only, 2, true), disk_id, "disk RTPG / VPD");
    drop(only);
    // The cd with a disc reads it byte-exact; the ejected one has no medium (MMC-6
    // 4.3, SPC-4: 02/3A/0x).
    let mut cd = RawConn::session(d.port, CDS);
    let (_, r) = cd.exec_after_uas(1, &read10(0, 4), 4 * CD_BLOCK as u32, &[]);
    assert_eq!(r.status, GOOD, "READ (10) of the disc: {r:?}");
    assert!(r.data == disc[..4 * CD_BLOCK], "the disc's first blocks");
    let (_, r) = cd.exec_after_uas(2, &[0; 6], 0, &[]);
    assert_eq!(r.status, CHECK_CONDITION, "the ejected drive: {r:?}");
    let (k, a, _) = r.sense_code();
    assert_eq!((k, a), (0x02, 0x3a), "MEDIUM NOT PRESENT: {r:?}");
    drop(cd);
    let sys = d.adm_ok(&["--op", "show", "--mode", "sys"]);
    assert!(sys.contains("40"), "{sys}");
    d.adm_ok(&["config", "dump", dump.to_str().unwrap()]);
    let plan = d.adm_ok(&["config", "apply", dump.to_str().unwrap()]);
    assert_eq!(plan.trim(), "no changes", "{plan}");
}

/// The saved file once `pred` holds of it (or whatever it is after 10 s).
fn wait_saved_until(file: &Path, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        if pred(&text) || Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// State an initiator changes (SET TARGET PORT GROUPS, SPC-4 6.44; a disc ejected by
/// START STOP UNIT, MMC-6 6.39) is written by `--save-config` at once, so a crash right
/// after it loses nothing.
#[test]
fn initiator_changes_are_saved_at_once() {
    let dir = TempDir::new("saveinit");
    let iso = dir.join("disc.iso");
    std::fs::write(&iso, prng_bytes(9, 16 * CD_BLOCK)).unwrap();
    let file = dir.join("rtgt.toml");
    let f = file.to_str().unwrap();
    let mut d = Daemon::start_args(&["--save-config", f]);
    let cmds = [
        format!("--op new --mode target --tid 1 -T {CDS}"),
        "--op new --mode logicalunit --tid 1 --lun 1 -E null --bsopts size=1G".into(),
        format!(
            "--op new --mode logicalunit --tid 1 --lun 2 --device-type cd -b {}",
            iso.display()
        ),
        "--op bind --mode target --tid 1 -I ALL".into(),
    ];
    for c in &cmds {
        d.adm_ok(&c.split_whitespace().collect::<Vec<_>>());
    }
    let iso_name = iso.to_str().unwrap().to_string();
    let text = wait_saved(&file, &iso_name);
    assert!(!text.contains("alua_state"), "{text}");

    let mut c = RawConn::session(d.port, CDS);
    // Target port group 1 becomes active/non-optimized (asymmetric access state 1).
    let param = [0, 0, 0, 0, 0x01, 0, 0, 1];
    let set = [0xa4, 0x0a, 0, 0, 0, 0, 0, 0, 0, param.len() as u8, 0, 0];
    let (_, r) = c.exec_after_uas(1, &set, 0, &param);
    assert_eq!(r.status, GOOD, "SET TARGET PORT GROUPS: {r:?}");
    let text = wait_saved(&file, "active/non-optimized");
    assert!(text.contains("active/non-optimized"), "{text}");
    // The initiator ejects the disc (LOEJ=1, START=0).
    let (_, r) = c.exec_after_uas(2, &[0x1b, 0, 0, 0, 0x02, 0], 0, &[]);
    assert_eq!(r.status, GOOD, "START STOP UNIT eject: {r:?}");
    let text = wait_saved_until(&file, |t| !t.contains(&iso_name));
    assert!(!text.contains(&iso_name), "the eject is saved: {text}");
    drop(c);

    d.kill();
    drop(d);
    let d = Daemon::start_args(&["--config", f, "--save-config", f]);
    let mut c = RawConn::session(d.port, CDS);
    let (_, r) = c.exec_after_uas(1, &[0xa3, 0x0a, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0], 4096, &[]);
    assert_eq!(r.status, GOOD, "REPORT TARGET PORT GROUPS: {r:?}");
    assert_eq!(r.data[4] & 0x0f, 1, "group 1 active/non-optimized: {r:?}");
    let (_, r) = c.exec_after_uas(2, &[0; 6], 0, &[]);
    assert_eq!(r.status, CHECK_CONDITION, "the disc stays ejected: {r:?}");
    let (k, a, _) = r.sense_code();
    assert_eq!((k, a), (0x02, 0x3a), "MEDIUM NOT PRESENT: {r:?}");
}
