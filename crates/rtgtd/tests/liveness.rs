//! Session reinstatement (RFC 7143 §6.3.5) and target NOP-In pings that end dead
//! connections (RFC 7143 §11.19), with a minimal raw initiator.

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
