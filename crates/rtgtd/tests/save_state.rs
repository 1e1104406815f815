//! A restart with the saved configuration brings back more than targets and LUNs: a
//! VTL's inventory with the cartridge an initiator moved into the drive (SMC-3 MOVE
//! MEDIUM), that drive's loaded cartridge, ALUA states and peers (REPORT TARGET PORT
//! GROUPS), session limits, and LUN masking. `config dump` then `config apply` of it
//! on the running daemon changes nothing.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::raw::RawConn;
use common::scsi::{be32, GOOD};
use common::{Daemon, TempDir};
use rtgt_scsi::ssc::medium::{CartridgeType, Format, Label, Medium};

const LIB: &str = "iqn.2026-11.org.rtgt:savedlib";
const DRV: &str = "iqn.2026-11.org.rtgt:saveddrv";

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

fn stable_show(d: &Daemon) -> String {
    d.adm_ok(&["--op", "show", "--mode", "target"])
        .lines()
        .filter(|l| {
            !l.contains("Backing store I/O")
                && !l.contains("I_T nexus")
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
    let sys = d.adm_ok(&["--op", "show", "--mode", "sys"]);
    assert!(sys.contains("40"), "{sys}");
    d.adm_ok(&["config", "dump", dump.to_str().unwrap()]);
    let plan = d.adm_ok(&["config", "apply", dump.to_str().unwrap()]);
    assert_eq!(plan.trim(), "no changes", "{plan}");
}
