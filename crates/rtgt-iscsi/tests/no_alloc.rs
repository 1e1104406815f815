//! The full feature phase frames, dispatches and answers READ and WRITE commands without
//! a heap allocation per command once warm, when the driver recycles data buffers (as
//! rtgtd does with its buffer pool): the fast path the performance issue asks for. A
//! counting allocator sees every allocation this test's thread makes.

use rtgt_iscsi::pdu::{op, Framer, Pdu, BHS_LEN};
use rtgt_iscsi::session::{Action, ScsiOutcome, Session, SessionConfig};

#[path = "../../../tests/support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::allocations;

const LEN: usize = 4096;

/// A SCSI Command PDU on the wire: READ (10) or WRITE (10) of 4 KiB, a write with its
/// data as immediate data (RFC 7143 §11.3).
fn command_bytes(write: bool) -> Vec<u8> {
    let mut p = Pdu::new(op::SCSI_CMD);
    let dir = if write { 0x20 } else { 0x40 };
    p.set_flags(0x80 | dir | 1);
    p.set_u32(20, LEN as u32);
    p.bhs[32] = if write { 0x2a } else { 0x28 };
    p.bhs[40] = 8;
    if write {
        p.data = vec![0x5a; LEN];
    }
    p.fix_lengths();
    p.encode(false, false)
}

#[test]
fn commands_are_framed_run_and_answered_without_allocating() {
    let mut s = Session::new(SessionConfig {
        discovery: false,
        max_xmit_data_segment_length: 262144,
        max_recv_data_segment_length: 262144,
        first_burst_length: 65536,
        max_burst_length: 262144,
        max_outstanding_r2t: 1,
        immediate_data: true,
        initial_r2t: false,
        exp_cmd_sn: 1,
        stat_sn: 1,
        cid: 0,
    });
    let framer = Framer {
        header_digest: false,
        data_digest: false,
        max_data: 262144,
    };
    let mut wire = [command_bytes(false), command_bytes(true)];
    // The driver's buffer pool, reduced to a stack.
    let mut pool: Vec<Vec<u8>> = (0..4).map(|_| vec![0u8; LEN]).collect();
    let mut actions = Vec::with_capacity(8);
    let mut cmd_sn = 1u32;
    let mut sent = 0usize;
    let mut one = |s: &mut Session, pool: &mut Vec<Vec<u8>>, itt: u32| {
        let w = &mut wire[(itt % 2) as usize];
        w[16..20].copy_from_slice(&itt.to_be_bytes());
        w[24..28].copy_from_slice(&cmd_sn.to_be_bytes());
        cmd_sn += 1;
        let bhs: [u8; BHS_LEN] = w[..BHS_LEN].try_into().unwrap();
        let pdu = framer
            .parse_with(bhs, &w[BHS_LEN..], |seg| {
                let mut v = pool.pop().expect("a pooled buffer");
                v.copy_from_slice(seg);
                v
            })
            .expect("well formed");
        s.on_pdu(pdu, &mut actions);
        let Some(Action::Execute(req)) = actions.pop() else {
            panic!("not executed: {actions:?}");
        };
        assert_eq!(req.itt, itt);
        let write = !req.data_out.is_empty();
        let data_in = if write {
            assert!(req.data_out.iter().all(|&b| b == 0x5a));
            pool.push(req.data_out);
            Vec::new()
        } else {
            pool.pop().expect("a pooled buffer")
        };
        s.on_scsi_done(
            itt,
            ScsiOutcome {
                status: 0,
                data_in,
                ..Default::default()
            },
            &mut actions,
        );
        for a in actions.drain(..) {
            match a {
                Action::SendDataIn(d) => {
                    assert_eq!(d.pdus.len(), 1);
                    assert_eq!(d.pdus[0].bhs[1] & 0x01, 0x01, "status in the Data-In");
                    sent += d.data.len();
                    pool.push(d.data);
                }
                Action::Send(p) => assert_eq!(p.opcode(), op::SCSI_RSP),
                other => panic!("{other:?}"),
            }
        }
    };
    for itt in 0..256 {
        one(&mut s, &mut pool, itt);
    }
    let before = allocations();
    for itt in 256..2256 {
        one(&mut s, &mut pool, itt);
    }
    let per_command = (allocations() - before) as f64 / 2000.0;
    assert_eq!(per_command, 0.0, "heap allocations per command");
    assert_eq!(sent, 2256 / 2 * LEN);
}
