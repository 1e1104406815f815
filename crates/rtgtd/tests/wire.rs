//! Bad input on the wire gets the answer RFC 7143 prescribes, and other sessions keep
//! working. Driven by a minimal raw initiator (tests/common/raw.rs), each test against its
//! own rtgtd with one 1 GiB file LUN.

mod common;

use std::time::Duration;

use common::raw::{keys_data, login_flags, normal_keys, parse_keys, RawConn, Recv};
use common::{Daemon, GIB};
use rtgt_iscsi::pdu::{op, Pdu};

const IQN: &str = "iqn.2026-11.org.rtgt:wire";

/// A daemon with the test LUN and a witness session that must survive the abuse.
fn setup() -> (Daemon, RawConn) {
    let d = Daemon::start();
    d.add_disk(1, IQN, GIB, &[]);
    let mut witness = RawConn::session(d.port, IQN);
    witness.assert_works();
    (d, witness)
}

/// The witness still works, a new session can log in, and the daemon is still running.
fn assert_others_fine(d: &mut Daemon, witness: &mut RawConn) {
    witness.assert_works();
    let mut fresh = RawConn::session(d.port, IQN);
    fresh.assert_works();
    fresh.close();
    assert!(d.alive(), "rtgtd died");
}

/// Waits for the target to drop the connection (EOF or reset), skipping anything it sends
/// first (a Reject or Login Response may precede the close).
fn assert_dropped(c: &mut RawConn, what: &str) {
    for _ in 0..16 {
        match c.recv_raw(Duration::from_secs(20)) {
            Recv::Closed => return,
            Recv::Timeout => panic!("{what}: the target kept the connection open"),
            Recv::Pdu(_) => continue,
        }
    }
    panic!("{what}: the target kept talking instead of dropping the connection");
}

#[test]
fn half_a_pdu_then_close_leaves_other_sessions_working() {
    let (mut d, mut witness) = setup();

    // Half a BHS on a fresh connection (still in login), then close.
    let mut c = RawConn::connect(d.port);
    let login = c.login_pdu(login_flags(true, 1, 3), keys_data(&normal_keys(IQN, &[])));
    let wire = login.encode(false, false);
    c.send_bytes(&wire[..20]);
    c.close();

    // A full BHS that promises a data segment, half of which arrives, then close.
    let mut c = RawConn::connect(d.port);
    c.send_bytes(&wire[..48 + (wire.len() - 48) / 2]);
    c.close();

    // In full feature phase: half of a SCSI Command BHS, then close.
    let mut c = RawConn::session(d.port, IQN);
    c.assert_works();
    let sn = c.cmd_sn;
    let cmd = c.scsi_cmd(1, &[0; 6], 0, sn).encode(false, false);
    c.send_bytes(&cmd[..30]);
    c.close();

    // In full feature phase: a NOP-Out whose data segment is cut short.
    let mut c = RawConn::session(d.port, IQN);
    let nop = c.nop_out(&[0x5a; 4096]).encode(false, false);
    c.send_bytes(&nop[..48 + 1000]);
    c.close();

    std::thread::sleep(Duration::from_millis(300));
    assert_others_fine(&mut d, &mut witness);
}

#[test]
fn unknown_opcode_is_rejected() {
    let (mut d, mut witness) = setup();
    let mut c = RawConn::session(d.port, IQN);
    c.assert_works();

    // 0x1f: no such initiator opcode. Immediate, so it doesn't consume a CmdSN.
    let mut p = Pdu::new(0x1f);
    p.set_immediate(true);
    p.set_flags(0x80);
    let itt = c.next_itt();
    p.set_itt(itt);
    p.set_u32(24, c.cmd_sn);
    p.set_u32(28, c.exp_stat_sn);
    c.send(&p);

    let r = c.recv();
    assert_eq!(r.opcode(), op::REJECT, "expected a Reject, got {r:?}");
    let reason = r.bhs[2];
    // RFC 7143 §11.17.1: 0x04 protocol error or 0x05 command not supported.
    assert!(
        reason == 0x04 || reason == 0x05,
        "Reject reason {reason:#04x}, expected 0x04 or 0x05"
    );
    // The data segment carries the rejected PDU's header (§11.17.4).
    assert!(
        r.data.len() >= 48,
        "Reject must carry the rejected BHS, got {} bytes",
        r.data.len()
    );
    assert_eq!(r.data[0] & 0x3f, 0x1f, "Reject carries a different header");
    assert_eq!(r.itt(), 0xffff_ffff, "Reject's ITT is reserved (§11.17)");

    assert_others_fine(&mut d, &mut witness);
}

#[test]
fn malformed_login_keys_get_initiator_error() {
    let (mut d, mut witness) = setup();
    let mut c = RawConn::connect(d.port);
    let mut data = keys_data(&normal_keys(IQN, &[]));
    data.extend_from_slice(b"ThisKeyHasNoEqualsSign\0");
    let r = c.login_step(login_flags(true, 1, 3), data);
    // RFC 7143 §11.13.5: status class 2 is an initiator error (0x0200 or a more specific
    // detail); the login must not succeed.
    assert_eq!(
        r.bhs[36],
        0x02,
        "login status {:#06x}, expected class 0x02 (initiator error)",
        r.u16_at(36)
    );
    // After a failed login the target closes the connection (§6.7 / §11.13.5).
    assert_dropped(&mut c, "after a failed login");
    assert_others_fine(&mut d, &mut witness);
}

#[test]
fn unknown_key_is_not_understood_and_login_succeeds() {
    let (mut d, mut witness) = setup();
    let mut c = RawConn::connect(d.port);
    let keys = c.login(&normal_keys(IQN, &[("X-foo", "bar")]));
    assert!(
        keys.iter()
            .any(|(k, v)| k == "X-foo" && v == "NotUnderstood"),
        "expected X-foo=NotUnderstood in the Login Response, got {keys:?}"
    );
    c.assert_works();
    assert_others_fine(&mut d, &mut witness);
}

#[test]
fn command_outside_cmdsn_window_is_dropped_silently() {
    let (mut d, mut witness) = setup();
    let mut c = RawConn::session(d.port, IQN);
    c.assert_works();

    // RFC 7143 §3.2.2.1: a non-immediate command with CmdSN outside [ExpCmdSN, MaxCmdSN]
    // is silently ignored.
    let far = c.cmd_sn.wrapping_add(0x4000_0000);
    let stray = c.scsi_cmd(1, &[0; 6], 0, far);
    c.send(&stray);
    match c.recv_wait(Duration::from_secs(2)) {
        Recv::Timeout => {}
        other => panic!("expected silence for an out-of-window CmdSN, got {other:?}"),
    }

    // The next in-window command is answered, and only it.
    let r = c.test_unit_ready(1);
    assert_ne!(r.itt(), stray.itt());
    c.assert_works();
    assert_others_fine(&mut d, &mut witness);
}

#[test]
fn corrupt_header_digest_drops_the_connection() {
    let (mut d, mut witness) = setup();
    let mut c = RawConn::connect(d.port);
    let keys = c.login(&normal_keys(IQN, &[("HeaderDigest", "CRC32C")]));
    assert!(
        c.header_digest,
        "the target refused HeaderDigest=CRC32C: {keys:?}"
    );
    c.assert_works();

    let p = c.nop_out(b"ping");
    let mut wire = p.encode(true, c.data_digest);
    wire[48] ^= 0xff; // the header digest follows the 48-byte BHS
    c.send_bytes(&wire);
    // RFC 7143 §7.8: PDU boundaries are lost; with ErrorRecoveryLevel 0 the connection is
    // dropped.
    assert_dropped(&mut c, "after a header digest error");
    assert_others_fine(&mut d, &mut witness);
}

#[test]
fn corrupt_data_digest_is_rejected() {
    let (mut d, mut witness) = setup();
    let mut c = RawConn::connect(d.port);
    let keys = c.login(&normal_keys(
        IQN,
        &[("HeaderDigest", "CRC32C"), ("DataDigest", "CRC32C")],
    ));
    assert!(
        c.header_digest && c.data_digest,
        "the target refused CRC32C digests: {keys:?}"
    );
    c.assert_works();

    let p = c.nop_out(b"data with a bad digest!!");
    let mut wire = p.encode(true, true);
    let n = wire.len();
    wire[n - 1] ^= 0xff; // the data digest is the last 4 bytes
    c.send_bytes(&wire);
    let r = c.recv();
    assert_eq!(r.opcode(), op::REJECT, "expected a Reject, got {r:?}");
    assert_eq!(
        r.bhs[2], 0x02,
        "Reject reason {:#04x}, expected 0x02 data digest error",
        r.bhs[2]
    );
    assert!(r.data.len() >= 48 && r.data[0] & 0x3f == op::NOP_OUT);

    // A data digest error discards only that PDU; the connection carries on (§7.8).
    c.assert_works();
    assert_others_fine(&mut d, &mut witness);
}

#[test]
fn discovery_session_lists_the_target() {
    let (mut d, mut witness) = setup();
    let mut c = RawConn::connect(d.port);
    c.login(&[
        ("InitiatorName", common::raw::INITIATOR),
        ("SessionType", "Discovery"),
        ("HeaderDigest", "None"),
        ("DataDigest", "None"),
    ]);
    let mut p = Pdu::new(op::TEXT_REQ);
    p.set_immediate(true);
    p.set_flags(0x80);
    let itt = c.next_itt();
    p.set_itt(itt);
    p.set_ttt(0xffff_ffff);
    p.set_u32(24, c.cmd_sn);
    p.set_u32(28, c.exp_stat_sn);
    p.data = keys_data(&[("SendTargets", "All")]);
    c.send(&p);
    let r = c.recv();
    assert_eq!(
        r.opcode(),
        op::TEXT_RSP,
        "expected a Text Response, got {r:?}"
    );
    let keys = parse_keys(&r.data);
    assert!(
        keys.iter().any(|(k, v)| k == "TargetName" && v == IQN),
        "SendTargets did not list {IQN}: {keys:?}"
    );
    assert_others_fine(&mut d, &mut witness);
}

/// After a deep queue the connection waits for a batch (SO_RCVLOWAT, lowat.rs); an
/// initiator that then sends less than the batch must still be answered, within the
/// 1 ms check's reach, and queue depth 1 afterwards keeps working.
#[test]
fn a_lone_command_after_a_deep_queue_is_answered() {
    let mut d = Daemon::start_args(&["--iscsi", "batch=1"]);
    d.add_disk(1, IQN, GIB, &[]);
    let mut witness = RawConn::session(d.port, IQN);
    witness.assert_works();
    let mut c = RawConn::session(d.port, IQN);
    c.assert_works();
    for round in 0..3 {
        // 32 commands in one write: the initiator keeps 32 outstanding.
        let mut wire = Vec::new();
        let mut itts = Vec::new();
        for _ in 0..32 {
            let p = c.scsi_cmd(1, &[0; 6], 0, c.cmd_sn);
            c.cmd_sn = c.cmd_sn.wrapping_add(1);
            itts.push(p.itt());
            wire.extend_from_slice(&p.encode(false, false));
        }
        c.send_bytes(&wire);
        for _ in 0..32 {
            let r = c.recv();
            assert_eq!(r.opcode(), op::SCSI_RSP, "round {round}: {r:?}");
            assert!(
                itts.contains(&r.itt()),
                "round {round}: unknown ITT in {r:?}"
            );
            c.exp_stat_sn = r.stat_sn().wrapping_add(1);
        }
        // Then one command alone: under any batch the target may wait for.
        let t = std::time::Instant::now();
        let sn = c.cmd_sn;
        let p = c.scsi_cmd(1, &[0; 6], 0, sn);
        c.cmd_sn = c.cmd_sn.wrapping_add(1);
        c.send(&p);
        match c.recv_wait(Duration::from_secs(2)) {
            Recv::Pdu(r) => {
                assert_eq!(r.itt(), p.itt(), "round {round}");
                c.exp_stat_sn = r.stat_sn().wrapping_add(1);
            }
            other => panic!("round {round}: a lone command after a deep queue: {other:?}"),
        }
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "round {round}: answered after {:?}",
            t.elapsed()
        );
        // Queue depth 1 goes on working.
        for _ in 0..20 {
            c.test_unit_ready(1);
        }
    }
    assert_others_fine(&mut d, &mut witness);
}
