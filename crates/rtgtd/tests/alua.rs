//! Multipath: two portals in two portal groups are two target port groups (SPC-4 5.16).
//! One LUN seen through both paths has the same LU designator and different relative
//! target port and target port group designators; REPORT TARGET PORT GROUPS shows what
//! rtgtadm set; a standby path refuses a READ with NOT READY, LOGICAL UNIT NOT
//! ACCESSIBLE, TARGET PORT IN STANDBY STATE; SET TARGET PORT GROUPS changes it back.

mod common;

use common::raw::RawConn;
use common::scsi::{be32, read10, CHECK_CONDITION, GOOD};
use common::{free_port, Daemon, TempDir, GIB};

const IQN: &str = "iqn.2026-11.org.rtgt:alua";

/// Designators of VPD page 83h as (association, type, value).
fn designators(page: &[u8]) -> Vec<(u8, u8, Vec<u8>)> {
    let len = u16::from_be_bytes([page[2], page[3]]) as usize;
    let mut v = Vec::new();
    let mut d = &page[4..4 + len];
    while d.len() >= 4 {
        let n = d[3] as usize;
        v.push(((d[1] >> 4) & 3, d[1] & 0x0f, d[4..4 + n].to_vec()));
        d = &d[4 + n..];
    }
    v
}

fn find(ds: &[(u8, u8, Vec<u8>)], assoc: u8, ty: u8) -> Vec<u8> {
    ds.iter()
        .find(|(a, t, _)| *a == assoc && *t == ty)
        .unwrap_or_else(|| panic!("no designator assoc {assoc} type {ty} in {ds:?}"))
        .2
        .clone()
}

/// (group id, state) of each REPORT TARGET PORT GROUPS descriptor, and the relative
/// port ids each lists.
fn groups(data: &[u8]) -> Vec<(u16, u8, Vec<u16>)> {
    let len = be32(data, 0) as usize;
    let mut v = Vec::new();
    let mut d = &data[4..4 + len];
    while d.len() >= 8 {
        let count = d[7] as usize;
        let ports = (0..count)
            .map(|i| u16::from_be_bytes([d[8 + 4 * i + 2], d[8 + 4 * i + 3]]))
            .collect();
        v.push((u16::from_be_bytes([d[2], d[3]]), d[0] & 0x0f, ports));
        d = &d[8 + 4 * count..];
    }
    v
}

const RTPG: [u8; 12] = [0xa3, 0x0a, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0];
const VPD83: [u8; 6] = [0x12, 0x01, 0x83, 0x10, 0x00, 0];
const NOT_READY: u8 = 0x02;

#[test]
fn two_portal_groups_two_paths_one_lun() {
    let p1 = free_port();
    let p2 = std::iter::repeat_with(free_port)
        .find(|p| *p != p1)
        .unwrap();
    let (a1, a2) = (
        format!("portal=127.0.0.1:{p1},tpgt=1"),
        format!("portal=127.0.0.1:{p2},tpgt=2"),
    );
    let d = Daemon::spawn(
        TempDir::new("alua"),
        p1,
        &["-f", "-C", "1", "--iscsi", &a1, "--iscsi", &a2],
    );
    d.add_disk(1, IQN, GIB, &[]);
    let mut path1 = RawConn::session(p1, IQN);
    let mut path2 = RawConn::session(p2, IQN);

    // INQUIRY: TPGS 11b (implicit and explicit ALUA).
    let std1 = path1.exec(1, &[0x12, 0, 0, 0, 96, 0], 96, &[]);
    assert_eq!(std1.data[5] & 0x30, 0x30, "TPGS");

    let v1 = designators(&path1.exec(1, &VPD83, 4096, &[]).data);
    let v2 = designators(&path2.exec(1, &VPD83, 4096, &[]).data);
    // The LU designator (NAA, association 0) is the same on both paths ...
    assert_eq!(find(&v1, 0, 3), find(&v2, 0, 3));
    // ... the relative target port (type 4) and target port group (type 5) are not.
    assert_eq!(find(&v1, 1, 4), vec![0, 0, 0, 1]);
    assert_eq!(find(&v2, 1, 4), vec![0, 0, 0, 2]);
    assert_eq!(find(&v1, 1, 5), vec![0, 0, 0, 1]);
    assert_eq!(find(&v2, 1, 5), vec![0, 0, 0, 2]);

    // Both active/optimized at first.
    let g = groups(&path1.exec(1, &RTPG, 4096, &[]).data);
    assert_eq!(g, vec![(1, 0, vec![1]), (2, 0, vec![2])]);

    d.adm_ok(&[
        "--op",
        "update",
        "--mode",
        "target",
        "--tid",
        "1",
        "--name",
        "alua_state.2",
        "--value",
        "standby",
    ]);
    let show = d.adm_ok(&["--op", "show", "--mode", "target", "--tid", "1"]);
    assert!(show.contains("Target port group 2: standby"), "{show}");

    // Every nexus learns of the change: ASYMMETRIC ACCESS STATE CHANGED.
    let (uas, r) = path1.exec_after_uas(1, &RTPG, 4096, &[]);
    assert_eq!(uas, vec![(0x2a, 0x06)]);
    assert_eq!(groups(&r.data), vec![(1, 0, vec![1]), (2, 2, vec![2])]);
    let (uas, r) = path2.exec_after_uas(1, &read10(0, 8), 4096, &[]);
    assert_eq!(uas, vec![(0x2a, 0x06)]);
    assert_eq!(r.status, CHECK_CONDITION);
    assert_eq!(
        r.sense_code(),
        (NOT_READY, 0x04, 0x0b),
        "LOGICAL UNIT NOT ACCESSIBLE, TARGET PORT IN STANDBY STATE"
    );
    assert_eq!(path1.exec(1, &read10(0, 8), 4096, &[]).status, GOOD);
    // Standby still answers INQUIRY and REPORT TARGET PORT GROUPS.
    assert_eq!(path2.exec(1, &RTPG, 4096, &[]).status, GOOD);

    d.adm_ok(&[
        "--op",
        "update",
        "--mode",
        "target",
        "--tid",
        "1",
        "--name",
        "alua_state.2",
        "--value",
        "unavailable",
    ]);
    let (_, r) = path2.exec_after_uas(1, &read10(0, 8), 4096, &[]);
    assert_eq!(r.sense_code(), (NOT_READY, 0x04, 0x0c), "UNAVAILABLE");

    // Explicit ALUA: SET TARGET PORT GROUPS through path 1 makes group 2
    // active/non-optimized; path 2 reads again.
    let param = [0, 0, 0, 0, 0x01, 0, 0, 2];
    let set = [0xa4, 0x0a, 0, 0, 0, 0, 0, 0, 0, param.len() as u8, 0, 0];
    let (_, r) = path1.exec_after_uas(1, &set, 0, &param);
    assert_eq!(r.status, GOOD, "SET TARGET PORT GROUPS: {r:?}");
    let (uas, r) = path2.exec_after_uas(1, &read10(0, 8), 4096, &[]);
    assert_eq!(uas, vec![(0x2a, 0x06)], "the other nexus hears of it");
    assert_eq!(r.status, GOOD);
    let g = groups(&path1.exec(1, &RTPG, 4096, &[]).data);
    assert_eq!(g, vec![(1, 0, vec![1]), (2, 1, vec![2])]);

    // A bad state or group from rtgtadm is an error naming the problem.
    let o = d.adm(&[
        "--op",
        "update",
        "--mode",
        "target",
        "--tid",
        "1",
        "--name",
        "alua_state.9",
        "--value",
        "standby",
    ]);
    assert!(!o.status.success());
    let o = d.adm(&[
        "--op",
        "update",
        "--mode",
        "target",
        "--tid",
        "1",
        "--name",
        "alua_state.1",
        "--value",
        "sleepy",
    ]);
    assert!(!o.status.success());
    let portals = d.adm_ok(&["--op", "show", "--mode", "portal"]);
    assert!(
        portals.contains(&format!("127.0.0.1:{p2},2")),
        "portal groups in show: {portals}"
    );
}
