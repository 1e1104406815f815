//! The PDU decoder and the full-feature-phase session machine: the input is a byte stream
//! as a connection would read it. The first byte picks digests; PDUs are framed one after
//! another and fed to a session, as rtgtd's connection driver does. SCSI commands the
//! session hands out complete at once with GOOD so Data-In / R2T paths run too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtgt_iscsi::pdu::{Framer, BHS_LEN};
use rtgt_iscsi::session::{Action, ScsiOutcome, Session, SessionConfig};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut rest)) = data.split_first() else {
        return;
    };
    let framer = Framer {
        header_digest: mode & 1 != 0,
        data_digest: mode & 2 != 0,
        max_data: 8192,
    };
    let mut session = Session::new(SessionConfig {
        discovery: mode & 4 != 0,
        max_xmit_data_segment_length: 8192,
        max_recv_data_segment_length: 8192,
        first_burst_length: 16384,
        max_burst_length: 65536,
        max_outstanding_r2t: 1,
        immediate_data: mode & 8 != 0,
        initial_r2t: mode & 16 != 0,
        exp_cmd_sn: 0,
        stat_sn: 0,
        cid: 0,
    });
    let mut actions = Vec::new();
    let mut pdus = 0;
    while rest.len() >= BHS_LEN && pdus < 64 {
        pdus += 1;
        let bhs: [u8; BHS_LEN] = rest[..BHS_LEN].try_into().unwrap();
        rest = &rest[BHS_LEN..];
        let Ok(n) = framer.rest_len(&bhs) else {
            return; // the driver drops the connection
        };
        if rest.len() < n {
            return;
        }
        let (body, tail) = rest.split_at(n);
        rest = tail;
        match framer.parse(bhs, body) {
            Ok(p) => {
                // Encoding what we decoded must not panic either.
                let _ = p.encode(framer.header_digest, framer.data_digest);
                session.on_pdu(p, &mut actions)
            }
            Err((_, p)) => session.on_data_digest_error(*p, &mut actions),
        }
        let mut i = 0;
        while i < actions.len() {
            if let Action::Execute(req) = &actions[i] {
                let outcome = ScsiOutcome {
                    status: 0,
                    data_in: vec![0x5a; (req.expected_data_in as usize).min(100_000)],
                    sense: Vec::new(),
                    data_out_len: None,
                };
                let itt = req.itt;
                let mut more = Vec::new();
                session.on_scsi_done(itt, outcome, &mut more);
                actions.extend(more);
            }
            i += 1;
        }
        actions.clear();
    }
});
