use super::*;
use crate::keys::TextPairs;

const ITT: u32 = 0x10;

/// A Text Request built byte by byte (RFC 7143 §11.10).
fn treq(flags: u8, itt: u32, ttt: u32, data: &[u8]) -> Pdu {
    let mut bhs = [0u8; 48];
    bhs[0] = 0x04; // Text Request
    bhs[1] = flags;
    let len = data.len() as u32;
    bhs[5..8].copy_from_slice(&len.to_be_bytes()[1..]);
    bhs[8..16].copy_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    bhs[16..20].copy_from_slice(&itt.to_be_bytes());
    bhs[20..24].copy_from_slice(&ttt.to_be_bytes());
    bhs[24..28].copy_from_slice(&5u32.to_be_bytes()); // CmdSN
    bhs[28..32].copy_from_slice(&9u32.to_be_bytes()); // ExpStatSN
    Pdu {
        bhs,
        ahs: Vec::new(),
        data: data.to_vec(),
    }
}

const F: u8 = 0x80;
const C: u8 = 0x40;

fn discovery() -> SessionParams {
    SessionParams {
        session_type: SessionType::Discovery,
        initiator_name: "iqn.2026-01.org.example:i".into(),
        ..SessionParams::default()
    }
}

fn normal(target: &str) -> SessionParams {
    SessionParams {
        session_type: SessionType::Normal,
        initiator_name: "iqn.2026-01.org.example:i".into(),
        target_name: Some(target.into()),
        ..SessionParams::default()
    }
}

fn targets() -> Vec<DiscoveredTarget> {
    vec![
        DiscoveredTarget {
            name: "iqn.2026-01.org.example:a".into(),
            addresses: vec![
                ("192.168.1.10:3260".parse().unwrap(), 1),
                ("[2001:db8::1]:3260".parse().unwrap(), 1),
            ],
        },
        DiscoveredTarget {
            name: "iqn.2026-01.org.example:b".into(),
            addresses: vec![("10.0.0.1:3261".parse().unwrap(), 2)],
        },
    ]
}

#[test]
fn send_targets_all_in_discovery() {
    let mut x = TextExchange::default();
    let req = treq(F, ITT, RESERVED_TAG, b"SendTargets=All\0");
    let r = x.handle(&req, &discovery(), &targets()).unwrap();
    assert_eq!(r.bhs[0], 0x24);
    assert_eq!(r.flags(), F);
    assert_eq!(r.bhs[8..16], [0, 1, 0, 0, 0, 0, 0, 0]);
    assert_eq!(r.itt(), ITT);
    assert_eq!(r.ttt(), RESERVED_TAG);
    assert_eq!(r.stat_sn(), 0, "left for the caller");
    assert_eq!(r.data_segment_len(), r.data.len());
    assert_eq!(
        r.data,
        b"TargetName=iqn.2026-01.org.example:a\0\
          TargetAddress=192.168.1.10:3260,1\0\
          TargetAddress=[2001:db8::1]:3260,1\0\
          TargetName=iqn.2026-01.org.example:b\0\
          TargetAddress=10.0.0.1:3261,2\0"
            .to_vec()
    );
    assert!(!x.in_progress());
}

#[test]
fn send_targets_by_name_and_empty() {
    let mut x = TextExchange::default();
    let req = treq(
        F,
        ITT,
        RESERVED_TAG,
        b"SendTargets=iqn.2026-01.org.example:b\0",
    );
    let r = x.handle(&req, &discovery(), &targets()).unwrap();
    assert_eq!(
        r.data,
        b"TargetName=iqn.2026-01.org.example:b\0TargetAddress=10.0.0.1:3261,2\0".to_vec()
    );
    let req = treq(
        F,
        ITT + 1,
        RESERVED_TAG,
        b"SendTargets=iqn.2026-01.org.example:zz\0",
    );
    assert!(x
        .handle(&req, &discovery(), &targets())
        .unwrap()
        .data
        .is_empty());
    let req = treq(F, ITT + 2, RESERVED_TAG, b"SendTargets=\0");
    assert!(x
        .handle(&req, &discovery(), &targets())
        .unwrap()
        .data
        .is_empty());
}

#[test]
fn send_targets_in_normal_session() {
    let mut x = TextExchange::default();
    let p = normal("iqn.2026-01.org.example:b");
    let r = x
        .handle(
            &treq(F, ITT, RESERVED_TAG, b"SendTargets=\0"),
            &p,
            &targets(),
        )
        .unwrap();
    assert_eq!(
        r.data,
        b"TargetName=iqn.2026-01.org.example:b\0TargetAddress=10.0.0.1:3261,2\0".to_vec()
    );
    let r = x
        .handle(
            &treq(
                F,
                ITT,
                RESERVED_TAG,
                b"SendTargets=iqn.2026-01.org.example:b\0",
            ),
            &p,
            &targets(),
        )
        .unwrap();
    assert!(r
        .data
        .starts_with(b"TargetName=iqn.2026-01.org.example:b\0"));
    // "All" on an operational session: only the session's target.
    let r = x
        .handle(
            &treq(F, ITT, RESERVED_TAG, b"SendTargets=All\0"),
            &p,
            &targets(),
        )
        .unwrap();
    assert_eq!(r.flags(), F, "libiscsi accepts only F alone");
    assert_eq!(
        r.data,
        b"TargetName=iqn.2026-01.org.example:b\0TargetAddress=10.0.0.1:3261,2\0".to_vec()
    );
    // Other targets and bad values are refused (libiscsi's SendTargets.Invalid test).
    for v in [
        &b"SendTargets=iqn.2026-01.org.example:a\0"[..],
        b"SendTargets=Alle\0",
        b"SendTargets=A\0",
    ] {
        let r = x
            .handle(&treq(F, ITT, RESERVED_TAG, v), &p, &targets())
            .unwrap();
        assert_eq!(r.data, b"SendTargets=Reject\0".to_vec());
    }
    let r = x
        .handle(
            &treq(F, ITT, RESERVED_TAG, b"sENDtARGETS=aLL\0"),
            &p,
            &targets(),
        )
        .unwrap();
    assert_eq!(r.data, b"sENDtARGETS=NotUnderstood\0".to_vec());
    // The session's target missing from the list still gets its name.
    let p = normal("iqn.2026-01.org.example:hidden");
    let r = x
        .handle(
            &treq(F, ITT, RESERVED_TAG, b"SendTargets=\0"),
            &p,
            &targets(),
        )
        .unwrap();
    assert_eq!(
        r.data,
        b"TargetName=iqn.2026-01.org.example:hidden\0".to_vec()
    );
}

#[test]
fn target_without_addresses() {
    let mut x = TextExchange::default();
    let t = vec![DiscoveredTarget {
        name: "iqn.x:y".into(),
        addresses: vec![],
    }];
    let r = x
        .handle(
            &treq(F, ITT, RESERVED_TAG, b"SendTargets=All\0"),
            &discovery(),
            &t,
        )
        .unwrap();
    assert_eq!(r.data, b"TargetName=iqn.x:y\0".to_vec());
}

fn many_targets(n: usize) -> Vec<DiscoveredTarget> {
    (0..n)
        .map(|i| DiscoveredTarget {
            name: format!("iqn.2026-01.org.example:target-number-{i}"),
            addresses: vec![(
                format!("10.1.{}.{}:3260", i / 256, i % 256)
                    .parse()
                    .unwrap(),
                1,
            )],
        })
        .collect()
}

#[test]
fn long_response_is_split_and_pulled() {
    let mut x = TextExchange::default();
    let mut p = discovery();
    p.max_xmit_data_segment_length = 512;
    let t = many_targets(40);
    let mut full = Vec::new();
    send_targets("All", &p, &t, &mut full);
    assert!(full.len() > 2 * 512);

    let mut got = Vec::new();
    let mut r = x
        .handle(&treq(F, ITT, RESERVED_TAG, b"SendTargets=All\0"), &p, &t)
        .unwrap();
    let ttt = r.ttt();
    assert_ne!(ttt, RESERVED_TAG);
    let mut n = 0;
    while r.flags() & C != 0 {
        n += 1;
        assert_eq!(r.flags() & F, 0, "F=0 while C=1");
        assert_eq!(r.data.len(), 512);
        assert_eq!(r.ttt(), ttt, "same TTT throughout");
        got.extend_from_slice(&r.data);
        assert!(x.in_progress());
        r = x.handle(&treq(F, ITT, ttt, &[]), &p, &t).unwrap();
    }
    assert!(n >= 2);
    assert_eq!(r.flags(), F);
    assert_eq!(r.ttt(), RESERVED_TAG);
    assert!(r.data.len() <= 512);
    got.extend_from_slice(&r.data);
    assert_eq!(got, full);
    assert!(!x.in_progress());
    // The tag is no longer valid.
    let e = x.handle(&treq(F, ITT, ttt, &[]), &p, &t).unwrap_err();
    assert_eq!(e.reason(), reject::INVALID_PDU_FIELD);
}

#[test]
fn continued_request() {
    let mut x = TextExchange::default();
    let p = discovery();
    let r = x
        .handle(&treq(C, ITT, RESERVED_TAG, b"SendTar"), &p, &targets())
        .unwrap();
    assert!(r.data.is_empty());
    assert_eq!(r.flags(), 0);
    let ttt = r.ttt();
    assert_ne!(ttt, RESERVED_TAG);
    let r = x
        .handle(
            &treq(C, ITT, ttt, b"gets=iqn.2026-01.org.ex"),
            &p,
            &targets(),
        )
        .unwrap();
    assert!(r.data.is_empty());
    assert_eq!(r.ttt(), ttt);
    let r = x
        .handle(&treq(F, ITT, ttt, b"ample:b\0"), &p, &targets())
        .unwrap();
    assert_eq!(r.flags(), F);
    assert!(r
        .data
        .starts_with(b"TargetName=iqn.2026-01.org.example:b\0"));
}

#[test]
fn reset_by_reserved_ttt_or_new_itt() {
    let p = discovery();
    let mut x = TextExchange::default();
    x.handle(
        &treq(C, ITT, RESERVED_TAG, b"SendTargets=Al"),
        &p,
        &targets(),
    )
    .unwrap();
    // Same ITT, reserved TTT: restart; the partial text is dropped.
    let r = x
        .handle(
            &treq(F, ITT, RESERVED_TAG, b"SendTargets=All\0"),
            &p,
            &targets(),
        )
        .unwrap();
    assert!(r
        .data
        .starts_with(b"TargetName=iqn.2026-01.org.example:a\0"));

    // A new ITT abandons a continued response.
    let mut small = p.clone();
    small.max_xmit_data_segment_length = 512;
    let t = many_targets(20);
    let r = x
        .handle(
            &treq(F, ITT, RESERVED_TAG, b"SendTargets=All\0"),
            &small,
            &t,
        )
        .unwrap();
    assert_eq!(r.flags() & C, C);
    let old_ttt = r.ttt();
    let r = x
        .handle(
            &treq(
                F,
                ITT + 1,
                RESERVED_TAG,
                b"SendTargets=iqn.2026-01.org.example:b\0",
            ),
            &small,
            &targets(),
        )
        .unwrap();
    assert_eq!(r.flags(), F);
    assert_eq!(r.itt(), ITT + 1);
    let e = x
        .handle(&treq(F, ITT, old_ttt, &[]), &small, &t)
        .unwrap_err();
    assert_eq!(e.reason(), reject::INVALID_PDU_FIELD);
}

#[test]
fn protocol_errors_are_rejects() {
    let p = discovery();
    let mut x = TextExchange::default();
    let e = x
        .handle(
            &treq(F | C, ITT, RESERVED_TAG, b"SendTargets=All\0"),
            &p,
            &targets(),
        )
        .unwrap_err();
    assert_eq!(e.reason(), reject::PROTOCOL_ERROR);
    let mut nop = treq(F, ITT, RESERVED_TAG, &[]);
    nop.bhs[0] = 0x00;
    assert_eq!(
        x.handle(&nop, &p, &targets()).unwrap_err().reason(),
        reject::PROTOCOL_ERROR
    );
    assert_eq!(
        x.handle(&treq(F, ITT, 0x1234, &[]), &p, &targets())
            .unwrap_err()
            .reason(),
        reject::INVALID_PDU_FIELD
    );
    for bad in [&b"NoEquals\0"[..], b"A=1\0A=2\0", b"=1\0"] {
        let e = x
            .handle(&treq(F, ITT, RESERVED_TAG, bad), &p, &targets())
            .unwrap_err();
        assert_eq!(e.reason(), reject::PROTOCOL_ERROR, "{bad:?}");
        assert!(!x.in_progress());
    }
    // Data while a continued response is pending.
    let mut small = p.clone();
    small.max_xmit_data_segment_length = 512;
    let t = many_targets(20);
    let r = x
        .handle(
            &treq(F, ITT, RESERVED_TAG, b"SendTargets=All\0"),
            &small,
            &t,
        )
        .unwrap();
    let e = x
        .handle(&treq(F, ITT, r.ttt(), b"SendTargets=All\0"), &small, &t)
        .unwrap_err();
    assert_eq!(e.reason(), reject::PROTOCOL_ERROR);
    // Unbounded continued text.
    let chunk = vec![b'a'; 8192];
    let mut ttt = RESERVED_TAG;
    let mut err = None;
    for _ in 0..20 {
        match x.handle(&treq(C, ITT, ttt, &chunk), &small, &t) {
            Ok(r) => ttt = r.ttt(),
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    assert_eq!(err.expect("bounded").reason(), reject::PROTOCOL_ERROR);
}

#[test]
fn other_keys_in_full_feature_phase() {
    let p = normal("iqn.2026-01.org.example:a");
    let mut x = TextExchange::default();
    let data = b"MaxRecvDataSegmentLength=16384\0InitiatorAlias=h\0HeaderDigest=CRC32C\0\
                 InitialR2T=No\0TargetAlias=x\0X-org.example.k=1\0Unknown=2\0AuthMethod=None\0";
    let r = x
        .handle(&treq(F, ITT, RESERVED_TAG, data), &p, &[])
        .unwrap();
    let a = TextPairs::parse(&r.data).unwrap();
    assert_eq!(a.get("MaxRecvDataSegmentLength"), None);
    assert_eq!(a.get("InitiatorAlias"), None);
    assert_eq!(a.get("HeaderDigest"), Some("Reject"));
    assert_eq!(a.get("InitialR2T"), Some("Reject"));
    assert_eq!(a.get("TargetAlias"), Some("Reject"));
    assert_eq!(a.get("AuthMethod"), Some("Reject"));
    assert_eq!(a.get("X-org.example.k"), Some("NotUnderstood"));
    assert_eq!(a.get("Unknown"), Some("NotUnderstood"));
    assert_eq!(x.take_declared_max_recv_data_segment_length(), Some(16384));
    assert_eq!(x.take_declared_max_recv_data_segment_length(), None);

    let r = x
        .handle(
            &treq(F, ITT, RESERVED_TAG, b"MaxRecvDataSegmentLength=100\0"),
            &p,
            &[],
        )
        .unwrap();
    assert_eq!(r.data, b"MaxRecvDataSegmentLength=Reject\0".to_vec());
    assert_eq!(x.take_declared_max_recv_data_segment_length(), None);
}

#[test]
fn request_with_f0_keeps_exchange_open() {
    let p = discovery();
    let mut x = TextExchange::default();
    let r = x
        .handle(
            &treq(0, ITT, RESERVED_TAG, b"SendTargets=All\0"),
            &p,
            &targets(),
        )
        .unwrap();
    assert_eq!(r.flags(), 0, "F=0 answered with F=0");
    let ttt = r.ttt();
    assert_ne!(ttt, RESERVED_TAG);
    assert!(!r.data.is_empty());
    let r = x.handle(&treq(F, ITT, ttt, &[]), &p, &targets()).unwrap();
    assert_eq!(r.flags(), F);
    assert_eq!(r.ttt(), RESERVED_TAG);
    assert!(r.data.is_empty());
}

#[test]
fn reject_pdu_layout() {
    let req = treq(F, ITT, RESERVED_TAG, b"x");
    let rej = Reject::new(reject::PROTOCOL_ERROR, "test");
    let p = rej.to_pdu(&req);
    assert_eq!(p.bhs[0], 0x3f);
    assert_eq!(p.bhs[1], 0x80);
    assert_eq!(p.bhs[2], reject::PROTOCOL_ERROR);
    assert_eq!(p.itt(), RESERVED_TAG);
    assert_eq!(p.data, req.bhs.to_vec());
    assert_eq!(p.data_segment_len(), 48);
    assert!(rej.to_string().contains("test"));
}

#[test]
fn ipv6_address_format() {
    let a: SocketAddr = "[fe80::1%2]:3260".parse().unwrap();
    assert_eq!(target_address(&a, 5), "[fe80::1]:3260,5");
    let a: SocketAddr = "127.0.0.1:3260".parse().unwrap();
    assert_eq!(target_address(&a, 1), "127.0.0.1:3260,1");
}
