//! Session reinstatement (RFC 7143 §6.3.5), target NOP-In pings that end dead
//! connections (RFC 7143 §11.19), and a failing command's code not taking its connection
//! down, with a minimal raw initiator.

mod common;

use std::time::{Duration, Instant};

use common::raw::{RawConn, Recv};
use common::{Daemon, GIB};
use rtgt_iscsi::pdu::{op, Pdu};

const IQN: &str = "iqn.2026-11.org.rtgt:liveness";

#[test]
fn login_with_the_same_isid_reinstates_the_session() {
    let d = Daemon::start();
    d.add_disk(1, IQN, GIB, &[]);
    let mut old = RawConn::session(d.port, IQN);
    old.assert_works();
    let mut other = RawConn::session(d.port, IQN);

    // A new leading login (TSIH 0) with the same initiator name and ISID.
    let mut new = RawConn::connect(d.port);
    new.isid = old.isid;
    new.login(&common::raw::normal_keys(IQN, &[]));
    new.assert_works();

    // The old connection is closed by the target; the unrelated session lives on.
    let t0 = Instant::now();
    loop {
        match old.recv_raw(Duration::from_secs(10)) {
            Recv::Closed => break,
            Recv::Pdu(_) if t0.elapsed() < Duration::from_secs(10) => continue,
            other => panic!("the replaced session was not closed: {other:?}"),
        }
    }
    other.assert_works();
    let show = d.adm_ok(&["--lld", "iscsi", "--op", "show", "--mode", "target"]);
    assert_eq!(
        show.matches("I_T nexus: ").count(),
        2,
        "one nexus per live session:\n{show}"
    );
}

#[test]
fn silent_connection_is_pinged_and_dropped() {
    let d = Daemon::start_args(&["--iscsi", "nop_interval=1,nop_count=2"]);
    d.add_disk(1, IQN, GIB, &[]);
    let mut live = RawConn::session(d.port, IQN);
    let mut silent = RawConn::session(d.port, IQN);

    // The live session answers pings and stays; the silent one must be dropped.
    let t0 = Instant::now();
    let mut pinged = false;
    let mut dropped = false;
    while t0.elapsed() < Duration::from_secs(15) && !dropped {
        if let Recv::Pdu(p) = live.recv_raw(Duration::from_millis(200)) {
            assert_eq!(p.opcode(), op::NOP_IN, "unexpected {p:?}");
            assert_eq!(
                p.itt(),
                0xffff_ffff,
                "a target ping carries the reserved ITT"
            );
            let mut r = Pdu::new(op::NOP_OUT);
            r.set_immediate(true);
            r.set_flags(0x80);
            r.set_itt(0xffff_ffff);
            r.set_ttt(p.ttt());
            r.set_u32(24, live.cmd_sn);
            r.set_u32(28, live.exp_stat_sn);
            live.send(&r);
        }
        match silent.recv_raw(Duration::from_millis(200)) {
            Recv::Pdu(p) => {
                assert_eq!(p.opcode(), op::NOP_IN);
                pinged = true;
            }
            Recv::Closed => dropped = true,
            Recv::Timeout => {}
        }
    }
    assert!(pinged, "the silent connection was never pinged");
    assert!(dropped, "the silent connection was not dropped within 15 s");
    live.assert_works();
}

/// A bug in one command's code (a panic, injected in debug builds by
/// RTGT_FAULT_PANIC_OPCODE) is that command's failure alone: it is answered CHECK
/// CONDITION, HARDWARE ERROR, INTERNAL TARGET FAILURE (44/00), the same connection goes
/// on reading back what it wrote, and another session never notices.
#[test]
fn a_panicking_command_fails_alone_and_the_connection_goes_on() {
    use common::scsi::{read10, write10, CHECK_CONDITION, GOOD};
    // SYNCHRONIZE CACHE (10) panics.
    let mut d = Daemon::start_env(&[], &[("RTGT_FAULT_PANIC_OPCODE", "0x35")]);
    d.add_disk(1, IQN, GIB, &[]);
    let mut c = RawConn::session(d.port, IQN);
    let mut other = RawConn::session(d.port, IQN);
    let (_, r) = c.exec_after_uas(1, &[0; 6], 0, &[]);
    assert_eq!(r.status, GOOD);
    let data: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 251) as u8).collect();
    assert_eq!(c.exec(1, &write10(8, 8), 0, &data).status, GOOD);

    let r = c.exec(1, &[0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0], 0, &[]);
    assert_eq!(r.status, CHECK_CONDITION);
    assert_eq!(
        r.sense_code(),
        (0x04, 0x44, 0x00),
        "HARDWARE ERROR, INTERNAL TARGET FAILURE"
    );

    let r = c.exec(1, &read10(8, 8), 4096, &[]);
    assert_eq!(r.status, GOOD, "the same connection still serves");
    assert_eq!(r.data, data);
    other.assert_works();
    assert!(d.alive());
    assert!(
        d.log().contains("command failed: internal error (panic)"),
        "{}",
        d.log()
    );
}
