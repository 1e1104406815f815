//! Task management done safely (SAM-5 7, RFC 7143 §11.5): ABORT TASK on a command in
//! each state it can be in, and a LUN RESET from one session ending the tasks of
//! another, with the unit attentions SAM-5 prescribes. An aborted command never
//! completes to the initiator afterwards.

mod common;

use std::time::Duration;

use common::raw::RawConn;
use common::scsi::{read10, write10, GOOD};
use common::{Daemon, GIB};
use rtgt_iscsi::pdu::{op, Pdu};

const IQN: &str = "iqn.2026-11.org.rtgt:tmf";
const ABORT_TASK: u8 = 1;
const ABORT_TASK_SET: u8 = 2;
const LOGICAL_UNIT_RESET: u8 = 5;
const FUNCTION_COMPLETE: u8 = 0;
const TASK_DOES_NOT_EXIST: u8 = 1;

fn setup() -> (Daemon, RawConn) {
    let d = Daemon::start();
    d.add_disk(1, IQN, GIB, &[]);
    let mut c = RawConn::session(d.port, IQN);
    let (_, r) = c.exec_after_uas(1, &[0; 6], 0, &[]);
    assert_eq!(r.status, GOOD);
    (d, c)
}

/// A WRITE (10) with no immediate data: with InitialR2T=Yes (the raw initiator's
/// default) it waits in the target for Data-Out, soliciting it with an R2T.
fn write_waiting_for_data(c: &mut RawConn, lba: u32, blocks: u16) -> (Pdu, Pdu) {
    let mut p = c.command_pdu(1, &write10(lba, blocks), 0, &[]);
    p.set_flags(p.flags() | 0x20);
    p.set_u32(20, u32::from(blocks) * 512);
    c.send(&p);
    let r2t = c.recv();
    assert_eq!(r2t.opcode(), op::R2T, "expected an R2T, got {r2t:?}");
    assert_eq!(r2t.itt(), p.itt());
    (p, r2t)
}

/// The Data-Out answering `r2t`, all in one PDU.
fn data_out(c: &RawConn, cmd: &Pdu, r2t: &Pdu, fill: u8) -> Pdu {
    let len = r2t.u32_at(44) as usize;
    let mut d = Pdu::new(op::DATA_OUT);
    d.set_flags(0x80);
    d.set_lun_raw(cmd.lun_raw());
    d.set_itt(cmd.itt());
    d.set_ttt(r2t.ttt());
    d.set_u32(28, c.exp_stat_sn);
    d.set_u32(36, 0); // DataSN
    d.set_u32(40, r2t.u32_at(40)); // Buffer Offset
    d.data = vec![fill; len];
    d
}

/// Nothing for the aborted task ever arrives: no Data-In, no SCSI Response, no Reject.
fn assert_never_answered(c: &mut RawConn, itt: u32) {
    for p in c.drain(Duration::from_millis(1500)) {
        assert!(
            p.itt() != itt && p.opcode() != op::REJECT,
            "an aborted task answered: {p:?}"
        );
    }
}

#[test]
fn abort_task_while_receiving_data_out() {
    let (_d, mut c) = setup();
    let (cmd, r2t) = write_waiting_for_data(&mut c, 100, 8);
    let resp = c.tmf(ABORT_TASK, 1, cmd.itt(), cmd.cmd_sn());
    assert_eq!(resp, FUNCTION_COMPLETE);
    // The initiator may still answer the R2T; the Data-Out is dropped silently.
    let d = data_out(&c, &cmd, &r2t, 0xee);
    c.send(&d);
    assert_never_answered(&mut c, cmd.itt());
    // Nothing was written.
    let r = c.exec(1, &read10(100, 8), 4096, &[]);
    assert_eq!(r.status, GOOD);
    assert!(
        r.data.iter().all(|&b| b == 0),
        "the aborted write reached the medium"
    );
    c.assert_works();
}

#[test]
fn abort_task_held_for_a_cmdsn_gap_never_runs() {
    let (_d, mut c) = setup();
    // A READ one CmdSN ahead: held until the gap fills.
    let gap = c.cmd_sn;
    c.cmd_sn = c.cmd_sn.wrapping_add(1);
    let read = c.command_pdu(1, &read10(0, 8), 4096, &[]);
    c.send(&read);
    let resp = c.tmf(ABORT_TASK, 1, read.itt(), read.cmd_sn());
    assert_eq!(resp, FUNCTION_COMPLETE);
    // Fill the gap: only the TEST UNIT READY is answered.
    let tur = c.scsi_cmd(1, &[0; 6], 0, gap);
    c.send(&tur);
    let r = c.recv_skipping(tur.itt());
    assert_eq!(r.opcode(), op::SCSI_RSP);
    c.exp_stat_sn = r.stat_sn().wrapping_add(1);
    assert_never_answered(&mut c, read.itt());
    c.assert_works();
}

#[test]
fn abort_task_of_a_completed_command_does_not_exist() {
    let (_d, mut c) = setup();
    let read = c.command_pdu(1, &read10(0, 1), 512, &[]);
    c.send(&read);
    assert_eq!(c.reply_for(read.itt()).status, GOOD);
    // RFC 7143 §11.6.1 c: RefCmdSN outside the window (already done) -> does not exist.
    let resp = c.tmf(ABORT_TASK, 1, read.itt(), read.cmd_sn());
    assert_eq!(resp, TASK_DOES_NOT_EXIST);
    c.assert_works();
}

#[test]
fn aborted_reads_never_complete_after_the_tmf_response() {
    let (_d, mut c) = setup();
    // Many large READs in flight, then ABORT TASK SET: each READ either completed
    // before the TMF response or never answers.
    let mut itts = Vec::new();
    for i in 0..32u32 {
        let p = c.command_pdu(1, &read10(i * 2048, 2048), 1 << 20, &[]);
        itts.push(p.itt());
        c.send(&p);
    }
    let tmf = c.tmf_pdu(ABORT_TASK_SET, 1, 0, 0);
    c.send(&tmf);
    let mut done_before = std::collections::HashSet::new();
    loop {
        let p = c.recv();
        if p.itt() == tmf.itt() {
            assert_eq!(p.opcode(), op::TMF_RSP);
            assert_eq!(p.bhs[2], FUNCTION_COMPLETE);
            c.exp_stat_sn = p.stat_sn().wrapping_add(1);
            break;
        }
        let status =
            (p.opcode() == op::SCSI_RSP) || (p.opcode() == op::DATA_IN && p.flags() & 0x01 != 0);
        if status {
            done_before.insert(p.itt());
        }
    }
    for p in c.drain(Duration::from_millis(1500)) {
        assert!(
            !itts.contains(&p.itt()),
            "an aborted READ answered after the TMF response: {p:?}"
        );
    }
    eprintln!(
        "{} of {} READs completed before ABORT TASK SET",
        done_before.len(),
        itts.len()
    );
    c.assert_works();
}

#[test]
fn lun_reset_ends_the_tasks_of_another_session() {
    let (_d, mut a) = setup();
    let mut b = RawConn::session(_d.port, IQN);
    let (_, r) = b.exec_after_uas(1, &[0; 6], 0, &[]);
    assert_eq!(r.status, GOOD);
    // B has a WRITE waiting for its Data-Out when A resets the LU.
    let (cmd, r2t) = write_waiting_for_data(&mut b, 200, 8);
    assert_eq!(a.tmf(LOGICAL_UNIT_RESET, 1, 0, 0), FUNCTION_COMPLETE);
    // B's Data-Out arrives too late: dropped, and the WRITE never answers.
    let d = data_out(&b, &cmd, &r2t, 0xdd);
    b.send(&d);
    assert_never_answered(&mut b, cmd.itt());
    // Both nexuses get BUS DEVICE RESET FUNCTION OCCURRED (SAM-5 6.3.3).
    let (uas, r) = b.exec_after_uas(1, &read10(200, 8), 4096, &[]);
    assert_eq!(uas, vec![(0x29, 0x03)]);
    assert!(
        r.data.iter().all(|&x| x == 0),
        "the aborted write reached the medium"
    );
    let (uas, _) = a.exec_after_uas(1, &[0; 6], 0, &[]);
    assert_eq!(uas, vec![(0x29, 0x03)]);
}
