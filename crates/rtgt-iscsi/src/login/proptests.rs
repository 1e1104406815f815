//! Negotiation rules of RFC 7143 §13 checked on random offers: whatever the initiator
//! offers within the legal ranges, the target's answers follow each key's result
//! function, and the negotiated parameters are consistent.

use proptest::prelude::*;

use super::*;

struct Ctx;

impl LoginContext for Ctx {
    fn target(&mut self, _t: &str, _i: &str) -> Result<TargetLogin, LoginStatus> {
        Ok(TargetLogin {
            overrides: Vec::new(),
            portal_group_tag: 1,
        })
    }
    fn new_tsih(&mut self) -> u16 {
        1
    }
    fn portal_group_tag(&self) -> u16 {
        1
    }
}

fn request(data: Vec<u8>) -> Pdu {
    let mut p = Pdu::new(op::LOGIN_REQ);
    p.bhs[0] |= 0x40;
    p.set_flags(0x87); // T, CSG=1, NSG=3
    p.bhs[8..14].copy_from_slice(&[0x80, 1, 2, 3, 4, 5]);
    p.set_itt(1);
    p.data = data;
    p.fix_lengths();
    p
}

fn yn(b: bool) -> &'static str {
    if b {
        "Yes"
    } else {
        "No"
    }
}

prop_compose! {
    fn offer()(
        mbl in 512u32..=16_777_215,
        fbl in 512u32..=16_777_215,
        mrdsl in 512u32..=16_777_215,
        initial_r2t: bool,
        immediate_data: bool,
        pdu_order: bool,
        seq_order: bool,
        mor2t in 1u32..=65535,
        erl in 0u32..=2,
        t2w in 0u32..=3600,
        t2r in 0u32..=3600,
        maxconn in 1u32..=65535,
        hd in prop::sample::select(vec!["None", "CRC32C", "CRC32C,None", "None,CRC32C"]),
    ) -> Vec<(&'static str, String)> {
        vec![
            ("MaxBurstLength", mbl.to_string()),
            ("FirstBurstLength", fbl.to_string()),
            ("MaxRecvDataSegmentLength", mrdsl.to_string()),
            ("InitialR2T", yn(initial_r2t).into()),
            ("ImmediateData", yn(immediate_data).into()),
            ("DataPDUInOrder", yn(pdu_order).into()),
            ("DataSequenceInOrder", yn(seq_order).into()),
            ("MaxOutstandingR2T", mor2t.to_string()),
            ("ErrorRecoveryLevel", erl.to_string()),
            ("DefaultTime2Wait", t2w.to_string()),
            ("DefaultTime2Retain", t2r.to_string()),
            ("MaxConnections", maxconn.to_string()),
            ("HeaderDigest", hd.to_string()),
        ]
    }
}

proptest! {
    #[test]
    fn answers_follow_the_result_functions(offer in offer()) {
        let d = TargetDefaults::default();
        let mut login = Login::new(d.clone());
        let mut pairs = TextPairs::new();
        pairs.push("InitiatorName", "iqn.2026-01.org.example:i");
        pairs.push("TargetName", "iqn.2026-01.org.example:t");
        for (k, v) in &offer {
            pairs.push(*k, v.clone());
        }
        let mut answers = TextPairs::new();
        let mut params = None;
        let mut data = pairs.encode();
        for _ in 0..4 {
            match login.handle(&request(std::mem::take(&mut data)), &mut Ctx) {
                LoginStep::Continue(rsp) => {
                    for (k, v) in TextPairs::parse(&rsp.data).unwrap().iter() {
                        answers.push(k, v);
                    }
                }
                LoginStep::Complete { response, params: p } => {
                    for (k, v) in TextPairs::parse(&response.data).unwrap().iter() {
                        answers.push(k, v);
                    }
                    params = Some(p);
                    break;
                }
                LoginStep::Fail(_) => {
                    return Err(TestCaseError::fail(format!(
                        "login failed: {:?}", login.failure_reason()
                    )));
                }
            }
        }
        let p = params.expect("login completed");
        let num = |k: &str| offer.iter().find(|(kk, _)| *kk == k).unwrap().1.parse::<u32>().unwrap();
        let b = |k: &str| offer.iter().find(|(kk, _)| *kk == k).unwrap().1 == "Yes";
        // §13.13, §13.14: minimum, and FirstBurstLength never above MaxBurstLength.
        prop_assert_eq!(p.max_burst_length, num("MaxBurstLength").min(d.max_burst_length));
        prop_assert!(p.first_burst_length <= num("FirstBurstLength").min(d.first_burst_length));
        prop_assert!(p.first_burst_length <= p.max_burst_length);
        // §13.10, §13.18, §13.19: OR; §13.11: AND.
        prop_assert_eq!(p.initial_r2t, b("InitialR2T") || d.initial_r2t);
        prop_assert_eq!(p.immediate_data, b("ImmediateData") && d.immediate_data);
        prop_assert_eq!(p.data_pdu_in_order, b("DataPDUInOrder") || d.data_pdu_in_order);
        prop_assert_eq!(p.data_sequence_in_order, b("DataSequenceInOrder") || d.data_sequence_in_order);
        // §13.17, §13.20, §13.16, §13.2: minimum; §13.15: maximum.
        prop_assert_eq!(u32::from(p.max_outstanding_r2t), num("MaxOutstandingR2T").min(u32::from(d.max_outstanding_r2t)));
        prop_assert_eq!(u32::from(p.error_recovery_level), num("ErrorRecoveryLevel").min(u32::from(d.error_recovery_level)));
        prop_assert_eq!(u32::from(p.default_time2retain), num("DefaultTime2Retain").min(u32::from(d.default_time2retain)));
        prop_assert_eq!(u32::from(p.default_time2wait), num("DefaultTime2Wait").max(u32::from(d.default_time2wait)));
        // §13.12: a declaration; what we may send is what the initiator declared.
        prop_assert_eq!(p.max_xmit_data_segment_length, num("MaxRecvDataSegmentLength"));
        // §13.1: the answer is one of the offered values, the first we support.
        let hd = answers.get("HeaderDigest").unwrap_or("None");
        let offered = &offer.iter().find(|(k, _)| *k == "HeaderDigest").unwrap().1;
        prop_assert!(offered.split(',').any(|o| o == hd), "{} not in {}", hd, offered);
        prop_assert_eq!(p.header_digest, hd == "CRC32C");
        // Every answer is a single value, never a list (§6.2.2).
        for (k, v) in answers.iter() {
            if k != "TargetAddress" {
                prop_assert!(!v.contains(','), "{}={}", k, v);
            }
        }
    }
}
