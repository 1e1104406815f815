//! Protocol edges a lenient target gets wrong, each with the exact answer RFC 7143
//! prescribes (issue 21): an Expected Data Transfer Length short of what the CDB moves,
//! R/W bits that contradict the CDB, malformed or unknown AHS (full feature phase and
//! login), immediate data past FirstBurstLength, Logout edge cases, and a login text pair
//! without its NUL. Driven by the raw initiator against the real daemon and SCSI core.

mod common;

use std::time::Duration;

use common::raw::{keys_data, login_flags, normal_keys, RawConn, Recv};
use common::scsi::{read10, write10, GOOD};
use common::{Daemon, GIB};
use rtgt_iscsi::pdu::{op, Pdu};

const IQN: &str = "iqn.2026-11.org.rtgt:edges";
const O_BIT: u8 = 0x04;
const U_BIT: u8 = 0x02;

fn setup() -> (Daemon, RawConn) {
    let d = Daemon::start();
    d.add_disk(1, IQN, GIB, &[]);
    let mut c = RawConn::session(d.port, IQN);
    c.assert_works();
    (d, c)
}

/// Sends a SCSI command with the given flags byte (F|R|W|ATTR), EDTL and immediate data,
/// and returns (the Data-In bytes, the final status PDU: SCSI Response or the last
/// Data-In with S).
fn command(c: &mut RawConn, cdb: &[u8], flags: u8, edtl: u32, data: &[u8]) -> (Vec<u8>, Pdu) {
    let sn = c.cmd_sn;
    c.cmd_sn = c.cmd_sn.wrapping_add(1);
    let mut p = c.scsi_cmd(1, cdb, 0, sn);
    p.set_flags(flags);
    p.set_u32(20, edtl);
    p.data = data.to_vec();
    c.send(&p);
    let mut got = Vec::new();
    loop {
        let r = c.recv();
        assert_eq!(r.itt(), p.itt(), "a PDU for another task: {r:?}");
        match r.opcode() {
            op::DATA_IN => {
                got.extend_from_slice(&r.data);
                if r.flags() & 0x01 != 0 {
                    c.exp_stat_sn = r.stat_sn().wrapping_add(1);
                    return (got, r);
                }
            }
            op::SCSI_RSP => {
                c.exp_stat_sn = r.stat_sn().wrapping_add(1);
                return (got, r);
            }
            o => panic!("unexpected opcode {o:#04x}: {r:?}"),
        }
    }
}

/// GOOD with the Residual Overflow bit and this count (RFC 7143 §11.4.5.1).
fn assert_good_overflow(r: &Pdu, residual: u32, what: &str) {
    assert_eq!(r.bhs[3], GOOD, "{what}: status");
    assert_eq!(r.flags() & (O_BIT | U_BIT), O_BIT, "{what}: O bit, not U");
    assert_eq!(r.u32_at(44), residual, "{what}: residual count");
}

fn read_block(c: &mut RawConn, lba: u32) -> Vec<u8> {
    let r = c.exec(1, &read10(lba, 1), 512, &[]);
    assert_eq!(r.status, GOOD);
    r.data
}

fn expect_reject(c: &mut RawConn, reason: u8, what: &str) -> Pdu {
    let r = c.recv();
    assert_eq!(
        r.opcode(),
        op::REJECT,
        "{what}: expected a Reject, got {r:?}"
    );
    assert_eq!(r.bhs[2], reason, "{what}: Reject reason");
    c.exp_stat_sn = r.stat_sn().wrapping_add(1);
    r
}

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

/// EDTL smaller than the CDB's transfer, zero included, and R/W bits that contradict the
/// CDB: never GOOD without the O bit and the count; only what was expected moves.
#[test]
fn short_edtl_and_contradicting_rw_bits_report_overflow() {
    let (_d, mut c) = setup();
    let pattern = vec![0x6b; 512];
    let r = c.exec(1, &write10(7, 1), 0, &pattern);
    assert_eq!(r.status, GOOD);

    // Reads.
    let (data, r) = command(&mut c, &read10(7, 1), 0x80 | 0x40 | 1, 0, &[]);
    assert!(data.is_empty());
    assert_good_overflow(&r, 512, "READ, R, EDTL 0");
    let (data, r) = command(&mut c, &read10(7, 2), 0x80 | 0x40 | 1, 200, &[]);
    assert_eq!(data, pattern[..200]);
    assert_good_overflow(&r, 1024 - 200, "READ 2 blocks, R, EDTL 200");
    let (data, r) = command(&mut c, &read10(7, 1), 0x80 | 1, 0, &[]);
    assert!(data.is_empty());
    assert_good_overflow(&r, 512, "READ, neither R nor W, EDTL 0");
    // A READ sent as a write: no Data-In was expected, so none moves.
    let (data, r) = command(&mut c, &read10(7, 1), 0x80 | 0x20 | 1, 512, &[0xee; 512]);
    assert!(data.is_empty());
    assert_good_overflow(&r, 512, "READ with W and write data");
    assert_eq!(read_block(&mut c, 7), pattern, "the READ wrote nothing");

    // Writes: only the whole blocks that were expected (and sent) are written.
    let (_, r) = command(&mut c, &write10(8, 1), 0x80 | 0x20 | 1, 0, &[]);
    assert_good_overflow(&r, 512, "WRITE, W, EDTL 0");
    let (_, r) = command(&mut c, &write10(8, 2), 0x80 | 0x20 | 1, 512, &[0x11; 512]);
    assert_good_overflow(&r, 512, "WRITE 2 blocks, W, EDTL 512");
    assert_eq!(read_block(&mut c, 8), vec![0x11; 512]);
    assert_eq!(
        read_block(&mut c, 9),
        vec![0; 512],
        "the second block was not sent"
    );
    let (_, r) = command(&mut c, &write10(9, 1), 0x80 | 1, 0, &[]);
    assert_good_overflow(&r, 512, "WRITE, neither bit, EDTL 0");
    // A WRITE sent as a read: no Data-Out was expected, none is written.
    let (data, r) = command(&mut c, &write10(9, 1), 0x80 | 0x40 | 1, 512, &[]);
    assert!(data.is_empty());
    assert_good_overflow(&r, 512, "WRITE with R");
    assert_eq!(read_block(&mut c, 9), vec![0; 512]);

    // Longer than the CDB's transfer is an underflow, as before.
    let (data, r) = command(&mut c, &read10(7, 1), 0x80 | 0x40 | 1, 10000, &[]);
    assert_eq!(data, pattern);
    assert_eq!(r.flags() & (O_BIT | U_BIT), U_BIT);
    assert_eq!(r.u32_at(44), 10000 - 512);
    c.assert_works();
}

fn ahs(ty: u8, specific: &[u8]) -> Vec<u8> {
    let mut v = (specific.len() as u16).to_be_bytes().to_vec();
    v.push(ty);
    v.extend_from_slice(specific);
    while !v.len().is_multiple_of(4) {
        v.push(0);
    }
    v
}

/// An AHS of an undefined type, or whose length disagrees with its type or with
/// TotalAHSLength, is an invalid PDU field (Reject 0x09, RFC 7143 §11.2.2, §11.17.1);
/// so is any AHS on a PDU that has none (a NOP-Out); in a Login Request it is an
/// initiator error (02/00, §11.13.5) and the connection closes.
#[test]
fn malformed_or_unknown_ahs_is_refused() {
    let (d, mut c) = setup();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("reserved type 3", ahs(3, &[0, 0, 0, 0, 1])),
        ("extension type 60", ahs(60, &[0, 1, 2, 3, 4])),
        (
            "bidirectional read length with AHSLength 4",
            ahs(2, &[0, 0, 0, 2]),
        ),
        ("extended CDB with no CDB bytes", ahs(1, &[0])),
        ("AHSLength past TotalAHSLength", {
            let mut v = ahs(2, &[0, 0, 0, 2, 0]);
            v[1] = 40;
            v
        }),
    ];
    for (what, a) in cases {
        let sn = c.cmd_sn;
        c.cmd_sn = c.cmd_sn.wrapping_add(1);
        let mut p = c.scsi_cmd(1, &read10(0, 1), 512, sn);
        p.ahs = a;
        p.fix_lengths();
        c.send(&p);
        let r = expect_reject(&mut c, 0x09, what);
        assert_eq!(&r.data[..48], &p.bhs[..], "{what}: the rejected header");
        // The command took its CmdSN: the next one in sequence is accepted.
        c.assert_works();
    }
    // A bidirectional read length on a command that is not bidirectional.
    let sn = c.cmd_sn;
    c.cmd_sn = c.cmd_sn.wrapping_add(1);
    let mut p = c.scsi_cmd(1, &read10(0, 1), 512, sn);
    p.ahs = ahs(2, &[0, 0, 0, 2, 0]);
    c.send(&p);
    expect_reject(&mut c, 0x09, "bidirectional AHS on a read");
    // A NOP-Out carrying an AHS.
    let mut p = c.nop_out(b"x");
    p.ahs = ahs(1, &[0, 1, 2, 3]);
    c.send(&p);
    expect_reject(&mut c, 0x09, "NOP-Out with an AHS");
    c.assert_works();

    // During login.
    let mut l = RawConn::connect(d.port);
    let mut p = l.login_pdu(login_flags(true, 1, 3), keys_data(&normal_keys(IQN, &[])));
    p.ahs = ahs(1, &[0, 1, 2, 3]);
    l.send(&p);
    let r = l.recv();
    assert_eq!(r.opcode(), op::LOGIN_RSP);
    assert_eq!(r.u16_at(36), 0x0200, "Login Request with an AHS");
    assert_dropped(&mut l, "after a login with an AHS");
    c.assert_works();
}

/// Immediate data is unsolicited data, bounded by FirstBurstLength (RFC 7143 §13.14):
/// more is a protocol error (Reject 0x04), and nothing is written.
#[test]
fn immediate_data_beyond_first_burst_length_is_rejected() {
    let d = Daemon::start();
    d.add_disk(1, IQN, GIB, &[]);
    let mut c = RawConn::connect(d.port);
    let keys = c.login(&normal_keys(
        IQN,
        &[
            ("FirstBurstLength", "4096"),
            ("ImmediateData", "Yes"),
            ("InitialR2T", "No"),
            ("MaxRecvDataSegmentLength", "262144"),
        ],
    ));
    let fbl = keys
        .iter()
        .rev()
        .find(|(k, _)| k == "FirstBurstLength")
        .map(|(_, v)| v.clone());
    assert_eq!(fbl.as_deref(), Some("4096"), "{keys:?}");
    c.assert_works();
    let sn = c.cmd_sn;
    c.cmd_sn = c.cmd_sn.wrapping_add(1);
    let mut p = c.scsi_cmd(1, &write10(3, 16), 0, sn);
    p.set_flags(0x80 | 0x20 | 1);
    p.set_u32(20, 8192);
    p.data = vec![0x77; 8192];
    c.send(&p);
    expect_reject(
        &mut c,
        0x04,
        "8 KiB of immediate data, FirstBurstLength 4096",
    );
    c.assert_works();
    assert_eq!(read_block(&mut c, 3), vec![0; 512], "nothing was written");
    // Up to FirstBurstLength is fine.
    let r = c.exec(1, &write10(3, 8), 0, &[0x77; 4096]);
    assert_eq!(r.status, GOOD);
    assert_eq!(read_block(&mut c, 3), vec![0x77; 512]);
}

fn logout_pdu(c: &mut RawConn, reason: u8, cid: u16) -> Pdu {
    let mut p = Pdu::new(op::LOGOUT_REQ);
    p.set_immediate(true);
    p.set_flags(0x80 | reason);
    let itt = c.next_itt();
    p.set_itt(itt);
    p.set_u16(20, cid);
    p.set_u32(24, c.cmd_sn);
    p.set_u32(28, c.exp_stat_sn);
    p
}

/// A Logout with an undefined reason code is an invalid PDU field (Reject 0x09, RFC
/// 7143 §11.14.1, §11.17.1); one that closes a CID the session does not have gets
/// response 1, CID not found (§11.15.1), and the session goes on; closing this
/// connection's CID logs out.
#[test]
fn logout_reason_and_cid_edges() {
    let (_d, mut c) = setup();
    for reason in [3u8, 0x7f] {
        let p = logout_pdu(&mut c, reason, 1);
        c.send(&p);
        expect_reject(&mut c, 0x09, "Logout reason {reason}");
        c.assert_works();
    }
    // RawConn logs in with CID 1.
    let p = logout_pdu(&mut c, 1, 7);
    c.send(&p);
    let r = c.recv();
    assert_eq!(r.opcode(), op::LOGOUT_RSP, "{r:?}");
    assert_eq!(r.itt(), p.itt());
    assert_eq!(r.bhs[2], 1, "CID not found");
    c.exp_stat_sn = r.stat_sn().wrapping_add(1);
    c.assert_works();
    let p = logout_pdu(&mut c, 1, 1);
    c.send(&p);
    let r = c.recv();
    assert_eq!(r.opcode(), op::LOGOUT_RSP, "{r:?}");
    assert_eq!(r.bhs[2], 0, "connection closed successfully");
    assert_dropped(&mut c, "after a successful logout");
}

/// Every key=value pair, the last one included, ends in a NUL (RFC 7143 §6.1): a login
/// whose text does not is an initiator error (02/00) and the connection closes.
#[test]
fn a_login_pair_without_its_nul_is_an_initiator_error() {
    let d = Daemon::start();
    d.add_disk(1, IQN, GIB, &[]);
    let mut c = RawConn::connect(d.port);
    let mut data = keys_data(&normal_keys(IQN, &[]));
    assert_eq!(data.pop(), Some(0));
    let r = c.login_step(login_flags(true, 1, 3), data);
    assert_eq!(r.u16_at(36), 0x0200);
    assert_dropped(&mut c, "after a login with an unterminated pair");
    // The same keys with their NUL log in.
    let mut ok = RawConn::session(d.port, IQN);
    ok.assert_works();
}
