//! Persistent reservations with APTPL survive a crash of rtgtd (SPC-4 5.13.5): two
//! initiator ports register, one reserves WRITE EXCLUSIVE, rtgtd is SIGKILLed and
//! started again with the same state directory and configuration, and the keys, the
//! reservation and its enforcement are all back.

mod common;

use common::raw::{normal_keys, RawConn};
use common::scsi::{be32, be64, prin, prout, read10, write10, GOOD, RESERVATION_CONFLICT};
use common::{Daemon, TempDir, GIB};

const IQN: &str = "iqn.2026-11.org.rtgt:pr";
const KEY_A: u64 = 0xa1a2_a3a4_a5a6_a7a8;
const KEY_B: u64 = 0xb1b2_b3b4_b5b6_b7b8;
const WRITE_EXCLUSIVE: u8 = 1;
const APTPL: u8 = 0x01;

fn start(state: &TempDir) -> Daemon {
    let d = Daemon::start_args(&["--state-dir", state.path().to_str().unwrap()]);
    d.add_disk(1, IQN, GIB, &[]);
    d
}

/// A session from the same initiator port (same name and ISID) as before.
fn session_as(port: u16, isid: [u8; 6]) -> RawConn {
    let mut c = RawConn::connect(port);
    c.isid = isid;
    c.login(&normal_keys(IQN, &[]));
    c
}

#[test]
fn aptpl_registrations_and_reservation_survive_sigkill() {
    let state = TempDir::new("pr-state");
    let mut d = start(&state);
    let mut a = RawConn::session(d.port, IQN);
    let mut b = RawConn::session(d.port, IQN);
    let (isid_a, isid_b) = (a.isid, b.isid);

    let (cdb, p) = prout(0, 0, 0, KEY_A, APTPL);
    let (_, r) = a.exec_after_uas(1, &cdb, 0, &p);
    assert_eq!(r.status, GOOD, "REGISTER A: {r:?}");
    let (cdb, p) = prout(0, 0, 0, KEY_B, APTPL);
    let (_, r) = b.exec_after_uas(1, &cdb, 0, &p);
    assert_eq!(r.status, GOOD, "REGISTER B: {r:?}");
    let (cdb, p) = prout(1, WRITE_EXCLUSIVE, KEY_A, 0, 0);
    assert_eq!(a.exec(1, &cdb, 0, &p).status, GOOD, "RESERVE");
    let caps = a.exec(1, &prin(2), 4096, &[]);
    assert_eq!(caps.data[2] & 0x01, 0x01, "PTPL_C with a state directory");
    assert_eq!(caps.data[3] & 0x01, 0x01, "PTPL_A after APTPL=1");
    let before = a.exec(1, &prin(0), 4096, &[]);
    let files: Vec<_> = std::fs::read_dir(state.join("pr")).unwrap().collect();
    assert_eq!(files.len(), 1, "one state file for the one LU");

    // A crash: no chance to write anything on the way out.
    d.kill();
    drop(a);
    drop(b);
    let d = start(&state);

    let mut a = session_as(d.port, isid_a);
    let mut b = session_as(d.port, isid_b);
    let (_, keys) = a.exec_after_uas(1, &prin(0), 4096, &[]);
    assert_eq!(keys.status, GOOD);
    assert_eq!(
        keys.data, before.data,
        "READ KEYS (generation and keys) unchanged"
    );
    assert_eq!(be32(&keys.data, 4), 16);
    let listed = [be64(&keys.data, 8), be64(&keys.data, 16)];
    assert!(
        listed.contains(&KEY_A) && listed.contains(&KEY_B),
        "{listed:x?}"
    );

    let resv = a.exec(1, &prin(1), 4096, &[]);
    assert_eq!(be32(&resv.data, 4), 16, "a reservation is held");
    assert_eq!(be64(&resv.data, 8), KEY_A, "held by A's key");
    assert_eq!(resv.data[21] & 0x0f, WRITE_EXCLUSIVE);

    // Enforced again: B is registered but not the holder of a WRITE EXCLUSIVE one.
    let data = vec![0x5a; 512];
    let (_, w) = b.exec_after_uas(1, &write10(0, 1), 0, &data);
    assert_eq!(w.status, RESERVATION_CONFLICT, "non-holder write: {w:?}");
    let r = b.exec(1, &read10(0, 1), 512, &[]);
    assert_eq!(r.status, GOOD, "reads pass WRITE EXCLUSIVE");
    let w = a.exec(1, &write10(0, 1), 0, &data);
    assert_eq!(w.status, GOOD, "the holder writes: {w:?}");
    // A third initiator port, never registered, conflicts too.
    let mut c = RawConn::session(d.port, IQN);
    let (_, w) = c.exec_after_uas(1, &write10(0, 1), 0, &data);
    assert_eq!(w.status, RESERVATION_CONFLICT);

    // Clearing with APTPL still set leaves an empty state behind, also on disk.
    let (cdb, p) = prout(3, 0, KEY_A, 0, 0);
    assert_eq!(a.exec(1, &cdb, 0, &p).status, GOOD, "CLEAR");
    let (_, w) = c.exec_after_uas(1, &write10(0, 1), 0, &data);
    assert_eq!(w.status, GOOD);
}

#[test]
fn without_aptpl_nothing_survives() {
    let state = TempDir::new("pr-state");
    let mut d = start(&state);
    let mut a = RawConn::session(d.port, IQN);
    let isid = a.isid;
    let (cdb, p) = prout(0, 0, 0, KEY_A, 0);
    let (_, r) = a.exec_after_uas(1, &cdb, 0, &p);
    assert_eq!(r.status, GOOD);
    let (cdb, p) = prout(1, WRITE_EXCLUSIVE, KEY_A, 0, 0);
    assert_eq!(a.exec(1, &cdb, 0, &p).status, GOOD);
    d.kill();
    drop(a);
    let d = start(&state);
    let mut a = session_as(d.port, isid);
    let (_, keys) = a.exec_after_uas(1, &prin(0), 4096, &[]);
    assert_eq!(be32(&keys.data, 4), 0, "no registrations without APTPL");
    let resv = a.exec(1, &prin(1), 4096, &[]);
    assert_eq!(be32(&resv.data, 4), 0, "no reservation without APTPL");
}
