use super::*;

fn cfg() -> SessionConfig {
    SessionConfig {
        discovery: false,
        max_xmit_data_segment_length: 8192,
        max_recv_data_segment_length: 262144,
        first_burst_length: 65536,
        max_burst_length: 262144,
        max_outstanding_r2t: 1,
        immediate_data: true,
        initial_r2t: false,
        exp_cmd_sn: 10,
        stat_sn: 100,
        cid: 0,
    }
}

fn scsi_cmd(itt: u32, cmd_sn: u32, flags: u8, edtl: u32, data: Vec<u8>) -> Pdu {
    let mut p = Pdu::new(op::SCSI_CMD);
    p.set_flags(flags);
    p.set_itt(itt);
    p.set_u32(20, edtl);
    p.set_u32(24, cmd_sn);
    p.bhs[32] = 0x28;
    p.data = data;
    p.fix_lengths();
    p
}

fn sent(actions: &[Action]) -> Vec<&Pdu> {
    actions
        .iter()
        .flat_map(|a| match a {
            Action::Send(p) => std::slice::from_ref(p),
            Action::SendDataIn(d) => &d.pdus[..],
            _ => &[],
        })
        .collect()
}

#[test]
fn data_in_segments_are_slices_of_the_read_buffer() {
    let mut s = Session::new(cfg());
    let mut out = Vec::new();
    s.on_pdu(scsi_cmd(7, 10, 0x80 | 0x40 | 1, 20000, vec![]), &mut out);
    let mut out = Vec::new();
    let data: Vec<u8> = (0..20000u32).map(|i| i as u8).collect();
    s.on_scsi_done(
        7,
        ScsiOutcome {
            data_in: data.clone(),
            ..Default::default()
        },
        &mut out,
    );
    let [Action::SendDataIn(d)] = &out[..] else {
        panic!("{out:?}")
    };
    let joined: Vec<u8> = d.pdus.iter().flat_map(|p| d.segment(p).to_vec()).collect();
    assert_eq!(joined, data);
    assert_eq!(
        d.pdus
            .iter()
            .map(|p| p.data_segment_len())
            .collect::<Vec<_>>(),
        [8192, 8192, 3616]
    );
}

#[test]
fn read_sends_data_in_with_status_and_residual() {
    let mut s = Session::new(cfg());
    let mut out = Vec::new();
    s.on_pdu(scsi_cmd(7, 10, 0x80 | 0x40 | 1, 20000, vec![]), &mut out);
    let Some(Action::Execute(req)) = out.pop() else {
        panic!("no execute")
    };
    assert_eq!(req.expected_data_in, 20000);
    let mut out = Vec::new();
    s.on_scsi_done(
        7,
        ScsiOutcome {
            data_in: vec![5; 16384],
            ..Default::default()
        },
        &mut out,
    );
    let pdus = sent(&out);
    assert_eq!(pdus.len(), 2);
    assert_eq!(pdus[0].opcode(), op::DATA_IN);
    assert_eq!(pdus[0].flags() & 0x01, 0);
    assert_eq!(pdus[1].flags() & 0x81, 0x81, "F and S on the last");
    assert_eq!(pdus[1].flags() & 0x02, 0x02, "underflow");
    assert_eq!(pdus[1].u32_at(44), 20000 - 16384);
    assert_eq!(pdus[1].u32_at(36), 1, "DataSN");
    assert_eq!(pdus[1].u32_at(40), 8192, "buffer offset");
    assert_eq!(pdus[1].stat_sn(), 100);
    assert_eq!(pdus[1].exp_cmd_sn(), 11);
    assert_eq!(pdus[1].max_cmd_sn(), 11 + CMD_WINDOW - 1);
}

#[test]
fn check_condition_goes_in_scsi_response_with_sense() {
    let mut s = Session::new(cfg());
    let mut out = Vec::new();
    s.on_pdu(scsi_cmd(1, 10, 0x80 | 0x40 | 1, 512, vec![]), &mut out);
    out.clear();
    s.on_scsi_done(
        1,
        ScsiOutcome {
            status: 2,
            sense: vec![0x70, 0, 5],
            ..Default::default()
        },
        &mut out,
    );
    let pdus = sent(&out);
    assert_eq!(pdus.len(), 1);
    assert_eq!(pdus[0].opcode(), op::SCSI_RSP);
    assert_eq!(pdus[0].bhs[3], 2);
    assert_eq!(pdus[0].data, vec![0, 3, 0x70, 0, 5]);
    assert_eq!(
        pdus[0].flags() & 0x02,
        0x02,
        "nothing transferred: underflow"
    );
    assert_eq!(pdus[0].u32_at(44), 512);
}

#[test]
fn write_immediate_then_unsolicited_then_r2t() {
    let mut s = Session::new(cfg());
    let mut out = Vec::new();
    // 128 KiB write, 8 KiB immediate, more unsolicited follows (F=0).
    s.on_pdu(scsi_cmd(3, 10, 0x20 | 1, 131072, vec![1; 8192]), &mut out);
    assert!(out.is_empty(), "waits for unsolicited data: {out:?}");
    // Unsolicited Data-Out up to FirstBurstLength (64 KiB), F on the last.
    let mut d = Pdu::new(op::DATA_OUT);
    d.set_flags(0x80);
    d.set_itt(3);
    d.set_ttt(RESERVED_TAG);
    d.set_u32(40, 8192);
    d.data = vec![2; 65536 - 8192];
    s.on_pdu(d, &mut out);
    let pdus = sent(&out);
    assert_eq!(pdus.len(), 1, "one R2T (MaxOutstandingR2T=1)");
    let r2t = pdus[0].clone();
    assert_eq!(r2t.opcode(), op::R2T);
    assert_eq!(r2t.u32_at(40), 65536);
    assert_eq!(r2t.u32_at(44), 65536);
    out.clear();
    let mut d = Pdu::new(op::DATA_OUT);
    d.set_flags(0x80);
    d.set_itt(3);
    d.set_ttt(r2t.ttt());
    d.set_u32(40, 65536);
    d.data = vec![3; 65536];
    s.on_pdu(d, &mut out);
    let Some(Action::Execute(req)) = out.pop() else {
        panic!("no execute: {out:?}")
    };
    assert_eq!(req.data_out.len(), 131072);
    assert_eq!(req.data_out[0], 1);
    assert_eq!(req.data_out[8192], 2);
    assert_eq!(req.data_out[65536], 3);
}

#[test]
fn data_out_for_unknown_task_is_rejected() {
    let mut s = Session::new(cfg());
    let mut out = Vec::new();
    let mut d = Pdu::new(op::DATA_OUT);
    d.set_itt(99);
    d.set_ttt(5);
    d.data = vec![0; 512];
    s.on_pdu(d, &mut out);
    let pdus = sent(&out);
    assert_eq!(pdus[0].opcode(), op::REJECT);
    assert_eq!(pdus[0].bhs[2], reject::INVALID_PDU_FIELD);
}

#[test]
fn cmd_sn_window() {
    let mut s = Session::new(cfg());
    let mut out = Vec::new();
    // Too low and too high: silently ignored.
    s.on_pdu(scsi_cmd(1, 9, 0x80 | 1, 0, vec![]), &mut out);
    s.on_pdu(scsi_cmd(2, 10 + CMD_WINDOW, 0x80 | 1, 0, vec![]), &mut out);
    assert!(out.is_empty());
    // A gap: 11 waits for 10.
    s.on_pdu(scsi_cmd(3, 11, 0x80 | 1, 0, vec![]), &mut out);
    assert!(out.is_empty());
    s.on_pdu(scsi_cmd(4, 10, 0x80 | 1, 0, vec![]), &mut out);
    let itts: Vec<u32> = out
        .iter()
        .filter_map(|a| match a {
            Action::Execute(r) => Some(r.itt),
            _ => None,
        })
        .collect();
    assert_eq!(itts, vec![4, 3]);
    assert_eq!(s.exp_cmd_sn(), 12);
}

#[test]
fn unknown_opcode_rejected_and_nop_echoed() {
    let mut s = Session::new(cfg());
    let mut out = Vec::new();
    s.on_pdu(Pdu::new(0x1f), &mut out);
    assert_eq!(sent(&out)[0].opcode(), op::REJECT);
    assert_eq!(sent(&out)[0].bhs[2], reject::COMMAND_NOT_SUPPORTED);
    out.clear();
    let mut n = Pdu::new(op::NOP_OUT);
    n.set_immediate(true);
    n.set_itt(5);
    n.set_ttt(RESERVED_TAG);
    n.set_u32(24, 10);
    n.data = b"ping".to_vec();
    s.on_pdu(n, &mut out);
    let p = sent(&out)[0];
    assert_eq!(p.opcode(), op::NOP_IN);
    assert_eq!(p.itt(), 5);
    assert_eq!(p.data, b"ping");
}

#[test]
fn abort_task_drops_the_result() {
    let mut s = Session::new(cfg());
    let mut out = Vec::new();
    s.on_pdu(scsi_cmd(8, 10, 0x80 | 0x40 | 1, 512, vec![]), &mut out);
    out.clear();
    let mut tmf = Pdu::new(op::TMF_REQ);
    tmf.set_immediate(true);
    tmf.set_flags(0x80 | 1);
    tmf.set_itt(9);
    tmf.set_u32(20, 8);
    tmf.set_u32(24, 11);
    tmf.set_u32(32, 10);
    s.on_pdu(tmf, &mut out);
    let Some(Action::TaskManagement(t)) = out.pop() else {
        panic!()
    };
    assert_eq!(t.aborted, vec![8]);
    s.on_tmf_done(9, tmf_response::FUNCTION_COMPLETE, &mut out);
    out.clear();
    s.on_scsi_done(8, ScsiOutcome::default(), &mut out);
    assert!(out.is_empty(), "aborted task must not complete");
}

#[test]
fn ping_and_reply() {
    let mut s = Session::new(cfg());
    let p = s.ping().unwrap();
    assert!(s.ping().is_none());
    let mut reply = Pdu::new(op::NOP_OUT);
    reply.set_immediate(true);
    reply.set_itt(RESERVED_TAG);
    reply.set_ttt(p.ttt());
    let mut out = Vec::new();
    s.on_pdu(reply, &mut out);
    assert!(out.is_empty());
    assert!(!s.ping_outstanding());
}

#[test]
fn data_sn_out_of_sequence_fails_the_task_not_the_session() {
    let mut s = Session::new(cfg());
    let mut out = Vec::new();
    // 1 KiB write, no immediate data, unsolicited Data-Out follows (F=0).
    s.on_pdu(scsi_cmd(4, 10, 0x20 | 1, 1024, vec![]), &mut out);
    for (n, data_sn) in [(0u32, 0u32), (1, 0)] {
        let mut d = Pdu::new(op::DATA_OUT);
        d.set_flags(if n == 1 { 0x80 } else { 0 });
        d.set_itt(4);
        d.set_ttt(RESERVED_TAG);
        d.set_u32(36, data_sn);
        d.set_u32(40, n * 512);
        d.data = vec![7; 512];
        s.on_pdu(d, &mut out);
    }
    assert!(!out
        .iter()
        .any(|a| matches!(a, Action::Execute(_) | Action::Close(_))));
    let p = sent(&out)[0];
    assert_eq!(p.opcode(), op::SCSI_RSP);
    assert_eq!(p.bhs[3], 0x02);
    assert_eq!(&p.data[2 + 12..2 + 14], &[0x4b, 0x00]);
    // The session still works.
    out.clear();
    s.on_pdu(scsi_cmd(5, 11, 0x80 | 1, 0, vec![]), &mut out);
    assert!(matches!(out[0], Action::Execute(_)));
}

#[test]
fn unsolicited_data_of_a_held_command_waits_for_it() {
    let mut s = Session::new(cfg());
    let mut out = Vec::new();
    // CmdSN 11 arrives before 10; its unsolicited Data-Out comes right after it.
    s.on_pdu(scsi_cmd(2, 11, 0x20 | 1, 512, vec![]), &mut out);
    let mut d = Pdu::new(op::DATA_OUT);
    d.set_flags(0x80);
    d.set_itt(2);
    d.set_ttt(RESERVED_TAG);
    d.data = vec![9; 512];
    s.on_pdu(d, &mut out);
    assert!(out.is_empty(), "{out:?}");
    s.on_pdu(scsi_cmd(1, 10, 0x80 | 1, 0, vec![]), &mut out);
    let execs: Vec<&ScsiRequest> = out
        .iter()
        .filter_map(|a| match a {
            Action::Execute(r) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(execs.len(), 2);
    assert_eq!(execs[1].itt, 2);
    assert_eq!(execs[1].data_out, vec![9; 512]);
}

#[test]
fn immediate_commands_past_the_task_bound_get_task_set_full() {
    // Immediate commands bypass the CmdSN window; writes waiting for data stay in the
    // session, so without a bound a peer could make it hold any number of them.
    let mut s = Session::new(SessionConfig {
        initial_r2t: true,
        ..cfg()
    });
    let mut full = 0;
    for itt in 0..(MAX_TASKS as u32 + 50) {
        let mut p = scsi_cmd(itt, 10, 0x80 | 0x20 | 1, 4096, vec![]);
        p.bhs[32] = 0x2a;
        p.set_immediate(true);
        let mut out = Vec::new();
        s.on_pdu(p, &mut out);
        if sent(&out)
            .iter()
            .any(|r| r.opcode() == op::SCSI_RSP && r.bhs[3] == 0x28)
        {
            full += 1;
        }
    }
    assert_eq!(full, 50);
    assert_eq!(s.tasks_in_flight(), MAX_TASKS);
    // A huge expected length is refused outright.
    let mut out = Vec::new();
    s.on_pdu(
        scsi_cmd(9999, 10, 0x80 | 0x20 | 1, MAX_EDTL + 1, vec![]),
        &mut out,
    );
    assert!(sent(&out).iter().any(|r| r.opcode() == op::REJECT));
}

#[test]
fn an_abort_from_another_nexus_drops_only_tasks_still_gathering_data_out() {
    let mut s = Session::new(cfg());
    let mut out = Vec::new();
    // ITT 1: a READ, with the SCSI layer. ITT 2: a WRITE (flags W|F, ATTR simple)
    // waiting for its Data-Out (InitialR2T=No but no immediate data sent: an R2T).
    s.on_pdu(scsi_cmd(1, 10, 0x80 | 0x40 | 1, 512, vec![]), &mut out);
    let mut w = scsi_cmd(2, 11, 0x80 | 0x20 | 1, 4096, vec![]);
    w.bhs[32] = 0x2a;
    s.on_pdu(w, &mut out);
    assert!(sent(&out).iter().any(|p| p.opcode() == op::R2T));
    out.clear();
    let dropped = s.abort_tasks(Instant::now(), |_| true);
    assert_eq!(
        dropped,
        vec![2],
        "the executing READ is the SCSI layer's to end"
    );
    // The READ still answers; a late Data-Out for the WRITE is dropped without a Reject.
    s.on_scsi_done(
        1,
        ScsiOutcome {
            data_in: vec![0; 512],
            ..ScsiOutcome::default()
        },
        &mut out,
    );
    assert!(sent(&out).iter().any(|p| p.itt() == 1));
    out.clear();
    let mut d = Pdu::new(op::DATA_OUT);
    d.set_flags(0x80);
    d.set_itt(2);
    d.data = vec![0; 4096];
    d.fix_lengths();
    s.on_pdu(d, &mut out);
    assert!(out.is_empty(), "late Data-Out answered: {out:?}");
}

#[test]
fn async_logout_request_fields() {
    let mut s = Session::new(cfg());
    let p = s.async_logout_request(7);
    assert_eq!(p.opcode(), op::ASYNC);
    assert_eq!(p.flags(), 0x80);
    assert_eq!(p.itt(), RESERVED_TAG);
    assert_eq!(p.bhs[36], 1, "AsyncEvent 1: logout requested");
    assert_eq!(u16::from_be_bytes([p.bhs[42], p.bhs[43]]), 7, "Parameter3");
    assert_eq!(p.stat_sn(), 100);
    assert_eq!(p.u32_at(28), 10, "ExpCmdSN");
    // The next status carries the next StatSN.
    assert_eq!(s.async_logout_request(7).stat_sn(), 101);
}

/// Runs one command to its SCSI outcome and returns the status-carrying PDU (the SCSI
/// Response, or the last Data-In with S) and the Data-In bytes sent.
fn run(flags: u8, edtl: u32, data: Vec<u8>, outcome: ScsiOutcome) -> (Pdu, Vec<u8>) {
    let mut s = Session::new(cfg());
    let mut out = Vec::new();
    s.on_pdu(scsi_cmd(7, 10, flags, edtl, data), &mut out);
    assert!(
        out.iter().any(|a| matches!(a, Action::Execute(_))),
        "{out:?}"
    );
    let mut out = Vec::new();
    s.on_scsi_done(7, outcome, &mut out);
    let mut data_in = Vec::new();
    let mut last = None;
    for a in out {
        match a {
            Action::SendDataIn(d) => {
                for p in &d.pdus {
                    data_in.extend_from_slice(d.segment(p));
                }
                last = d.pdus.last().cloned();
            }
            Action::Send(p) => last = Some(p),
            other => panic!("{other:?}"),
        }
    }
    (last.expect("a status PDU"), data_in)
}

fn read_of(n: usize) -> ScsiOutcome {
    ScsiOutcome {
        data_in: vec![0xab; n],
        ..Default::default()
    }
}

fn write_of(n: u32) -> ScsiOutcome {
    ScsiOutcome {
        data_out_len: Some(n),
        ..Default::default()
    }
}

/// (O, U, residual) of a status PDU.
fn residual(p: &Pdu) -> (bool, bool, u32) {
    (p.flags() & 0x04 != 0, p.flags() & 0x02 != 0, p.u32_at(44))
}

/// RFC 7143 §11.4.5.1: a transfer the initiator's EDTL (for the direction its R / W bit
/// names; none for a direction it did not flag) does not cover ends GOOD with the O bit
/// and the count, and only the expected part moves.
#[test]
fn short_or_missing_expectations_are_overflows() {
    const F: u8 = 0x80 | 1;
    const R: u8 = 0x40;
    const W: u8 = 0x20;
    // Reads: EDTL 0, EDTL short, no R bit, a W bit with write data.
    let (p, d) = run(F | R, 0, vec![], read_of(512));
    assert_eq!((p.opcode(), p.bhs[3], d.len()), (op::SCSI_RSP, 0, 0));
    assert_eq!(residual(&p), (true, false, 512));
    let (p, d) = run(F | R, 200, vec![], read_of(512));
    assert_eq!(
        (p.opcode(), p.flags() & 0x01, d.len()),
        (op::DATA_IN, 1, 200)
    );
    assert_eq!(residual(&p), (true, false, 312));
    let (p, d) = run(F, 0, vec![], read_of(512));
    assert_eq!((p.opcode(), d.len()), (op::SCSI_RSP, 0));
    assert_eq!(residual(&p), (true, false, 512));
    let (p, d) = run(F | W, 512, vec![0; 512], read_of(512));
    assert_eq!((p.opcode(), d.len()), (op::SCSI_RSP, 0));
    assert_eq!(residual(&p), (true, false, 512));
    // Writes: EDTL 0, EDTL short, no W bit, an R bit instead.
    let (p, _) = run(F | W, 0, vec![], write_of(512));
    assert_eq!(residual(&p), (true, false, 512));
    let (p, _) = run(F | W, 256, vec![0; 256], write_of(512));
    assert_eq!(residual(&p), (true, false, 256));
    let (p, _) = run(F, 0, vec![], write_of(512));
    assert_eq!(residual(&p), (true, false, 512));
    let (p, d) = run(F | R, 512, vec![], write_of(512));
    assert_eq!((p.opcode(), d.len()), (op::SCSI_RSP, 0));
    assert_eq!(residual(&p), (true, false, 512));
    // More expected than moved is an underflow; exact is neither.
    let (p, _) = run(F | R, 1000, vec![], read_of(512));
    assert_eq!(residual(&p), (false, true, 488));
    let (p, _) = run(F | W, 1024, vec![0; 1024], write_of(512));
    assert_eq!(residual(&p), (false, true, 512));
    let (p, _) = run(F | W, 512, vec![0; 512], write_of(512));
    assert_eq!(residual(&p), (false, false, 0));
    // A command without data and without bits.
    let (p, _) = run(F, 0, vec![], ScsiOutcome::default());
    assert_eq!(residual(&p), (false, false, 0));
}

fn logout(itt: u32, reason: u8, cid: u16) -> Pdu {
    let mut p = Pdu::new(op::LOGOUT_REQ);
    p.set_immediate(true);
    p.set_flags(0x80 | reason);
    p.set_itt(itt);
    p.set_u16(20, cid);
    p.set_u32(24, 10);
    p
}

/// RFC 7143 §11.14.1 / §11.15.1: undefined reason codes are an invalid PDU field; a CID
/// the session does not have is response 1 and the connection stays; this connection's
/// CID closes it.
#[test]
fn logout_reason_codes_and_cids() {
    let mut s = Session::new(SessionConfig { cid: 3, ..cfg() });
    for reason in [3u8, 0x40, 0x7f] {
        let mut out = Vec::new();
        s.on_pdu(logout(1, reason, 3), &mut out);
        let [Action::Send(r)] = &out[..] else {
            panic!("{out:?}")
        };
        assert_eq!(
            (r.opcode(), r.bhs[2]),
            (op::REJECT, reject::INVALID_PDU_FIELD)
        );
    }
    let mut out = Vec::new();
    s.on_pdu(logout(2, 1, 4), &mut out);
    let [Action::Send(r)] = &out[..] else {
        panic!("{out:?}")
    };
    assert_eq!((r.opcode(), r.bhs[2], r.itt()), (op::LOGOUT_RSP, 1, 2));
    let mut out = Vec::new();
    s.on_pdu(logout(3, 1, 3), &mut out);
    let [Action::Send(r), Action::Close(_)] = &out[..] else {
        panic!("{out:?}")
    };
    assert_eq!((r.opcode(), r.bhs[2]), (op::LOGOUT_RSP, 0));
}

/// Immediate data beyond FirstBurstLength is a protocol error (RFC 7143 §13.14); an AHS
/// of an undefined type an invalid PDU field (§11.2.2.1); neither command runs.
#[test]
fn oversized_immediate_data_and_unknown_ahs_are_rejected() {
    let mut s = Session::new(SessionConfig {
        first_burst_length: 4096,
        ..cfg()
    });
    let mut out = Vec::new();
    let mut p = scsi_cmd(1, 10, 0x80 | 0x20 | 1, 8192, vec![0; 8192]);
    p.bhs[32] = 0x2a;
    s.on_pdu(p, &mut out);
    let [Action::Send(r)] = &out[..] else {
        panic!("{out:?}")
    };
    assert_eq!((r.opcode(), r.bhs[2]), (op::REJECT, reject::PROTOCOL_ERROR));
    let mut out = Vec::new();
    let mut p = scsi_cmd(2, 11, 0x80 | 0x40 | 1, 512, vec![]);
    p.ahs = vec![0, 1, 7, 0];
    s.on_pdu(p, &mut out);
    let [Action::Send(r)] = &out[..] else {
        panic!("{out:?}")
    };
    assert_eq!(
        (r.opcode(), r.bhs[2]),
        (op::REJECT, reject::INVALID_PDU_FIELD)
    );
    assert_eq!(s.tasks_in_flight(), 0);
}
