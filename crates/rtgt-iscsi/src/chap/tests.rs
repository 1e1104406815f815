use super::*;
use crate::keys::parse_binary;

const SECRET: &[u8] = b"0123456789ab";
const OUT_SECRET: &[u8] = b"target-secret-99";

fn hex(s: &str) -> Vec<u8> {
    parse_binary(&format!("0x{s}")).unwrap()
}

#[test]
fn digests_match_reference_values() {
    // H(0x07 || "0123456789ab" || 00 01 .. 0f), reference values from another
    // implementation (Python's hashlib).
    let c: Vec<u8> = (0u8..16).collect();
    let cases = [
        (ChapAlgorithm::Md5, "bc51ec4cb4c50931b91f9d6167bf33f8"),
        (
            ChapAlgorithm::Sha1,
            "4938307e83d1a92c871c661eaf7f8954da24c714",
        ),
        (
            ChapAlgorithm::Sha256,
            "5424f8f983223c6cbec2633fc05baf38be8bc0bef8cfae01c4537d01140fb5dc",
        ),
        (
            ChapAlgorithm::Sha3_256,
            "55dbe95407b1f9a78f5a9919406c0dab0ecc92fbf0066f2c0075a291dbb2c7b5",
        ),
    ];
    for (alg, want) in cases {
        let r = alg.response(7, SECRET, &c);
        assert_eq!(r, hex(want), "{alg}");
        assert_eq!(r.len(), alg.digest_len());
    }
}

#[test]
fn chap_i_decimal_and_hex() {
    assert_eq!(parse_chap_i("0"), Some(0));
    assert_eq!(parse_chap_i("255"), Some(255));
    assert_eq!(parse_chap_i("0x1f"), Some(31));
    assert_eq!(parse_chap_i("0XFF"), Some(255));
    for bad in [
        "256",
        "-1",
        "0x",
        "0x100",
        "abc",
        "",
        "1 ",
        "99999999999999",
    ] {
        assert_eq!(parse_chap_i(bad), None, "{bad}");
    }
}

#[test]
fn algorithm_names() {
    assert_eq!(
        parse_algorithm_list("sha-256, SHA3-256,5,sha1").unwrap(),
        vec![
            ChapAlgorithm::Sha256,
            ChapAlgorithm::Sha3_256,
            ChapAlgorithm::Md5,
            ChapAlgorithm::Sha1
        ]
    );
    assert!(parse_algorithm_list("md4").is_err());
    assert!(parse_algorithm_list("").is_err());
}

fn cfg(algs: &[ChapAlgorithm], outgoing: bool) -> ChapConfig {
    ChapConfig {
        algorithms: algs.to_vec(),
        incoming: vec![Credential {
            user: "alice".into(),
            secret: SECRET.to_vec(),
        }],
        outgoing: outgoing.then(|| Credential {
            user: "tgt".into(),
            secret: OUT_SECRET.to_vec(),
        }),
    }
}

fn counter() -> RandomSource {
    let mut n = 0u8;
    Box::new(move |b: &mut [u8]| {
        for x in b {
            n = n.wrapping_add(1);
            *x = n;
        }
    })
}

fn pairs(p: &[(&str, &str)]) -> TextPairs {
    let mut t = TextPairs::new();
    for (k, v) in p {
        t.push(*k, *v);
    }
    t
}

/// Runs CHAP_A, returns (algorithm code, id, challenge).
fn challenge(a: &mut ChapAuthenticator, offer: &str) -> Result<(u8, u8, Vec<u8>), LoginStatus> {
    let mut reply = TextPairs::new();
    assert_eq!(
        a.step("CHAP", &pairs(&[("CHAP_A", offer)]), &mut reply)?,
        AuthStep::Continue
    );
    let alg: u8 = reply.get("CHAP_A").unwrap().parse().unwrap();
    let id = parse_chap_i(reply.get("CHAP_I").unwrap()).unwrap();
    let c = parse_binary(reply.get("CHAP_C").unwrap()).unwrap();
    Ok((alg, id, c))
}

#[test]
fn one_way_every_algorithm() {
    for alg in ChapAlgorithm::ALL {
        let mut a = ChapAuthenticator::with_random(cfg(&ChapAlgorithm::ALL, false), counter());
        let (code, id, c) = challenge(&mut a, &alg.code().to_string()).unwrap();
        assert_eq!(code, alg.code());
        assert_eq!(c.len(), alg.challenge_len());
        let r = encode_hex(&alg.response(id, SECRET, &c));
        let mut reply = TextPairs::new();
        let step = a
            .step(
                "CHAP",
                &pairs(&[("CHAP_N", "alice"), ("CHAP_R", &r)]),
                &mut reply,
            )
            .unwrap();
        assert_eq!(step, AuthStep::Done, "{alg}");
        assert!(reply.is_empty());
        assert_eq!(a.user(), Some("alice"));
    }
}

#[test]
fn list_picks_first_allowed_in_initiator_order() {
    let mut a = ChapAuthenticator::with_random(
        cfg(&[ChapAlgorithm::Sha1, ChapAlgorithm::Sha256], false),
        counter(),
    );
    // 5 not allowed, 99 unknown, then 7 is the first allowed.
    let (code, ..) = challenge(&mut a, "5,99,x,7,6").unwrap();
    assert_eq!(code, 7);
}

#[test]
fn no_allowed_algorithm_is_02_01() {
    let mut a = ChapAuthenticator::with_random(cfg(&[ChapAlgorithm::Sha256], false), counter());
    assert_eq!(
        challenge(&mut a, "5").unwrap_err(),
        LoginStatus::AUTHENTICATION_FAILURE
    );
    assert!(a.failure().unwrap().contains("no algorithm"));
}

fn respond(
    a: &mut ChapAuthenticator,
    extra: &[(&str, &str)],
    user: &str,
    secret: &[u8],
) -> Result<TextPairs, LoginStatus> {
    let (code, id, c) = challenge(a, "5").unwrap();
    let alg = ChapAlgorithm::from_code(code.into()).unwrap();
    let r = encode_hex(&alg.response(id, secret, &c));
    let mut p = vec![("CHAP_N", user), ("CHAP_R", r.as_str())];
    p.extend_from_slice(extra);
    let mut reply = TextPairs::new();
    a.step("CHAP", &pairs(&p), &mut reply).map(|_| reply)
}

#[test]
fn wrong_secret_and_unknown_user_fail() {
    let mut a = ChapAuthenticator::with_random(cfg(&ChapAlgorithm::ALL, false), counter());
    assert_eq!(
        respond(&mut a, &[], "alice", b"wrong-secret-000").unwrap_err(),
        LoginStatus::AUTHENTICATION_FAILURE
    );
    assert!(a.failure().unwrap().contains("wrong CHAP response"));
    let mut a = ChapAuthenticator::with_random(cfg(&ChapAlgorithm::ALL, false), counter());
    assert_eq!(
        respond(&mut a, &[], "mallory", SECRET).unwrap_err(),
        LoginStatus::AUTHENTICATION_FAILURE
    );
    assert!(a.failure().unwrap().contains("unknown CHAP user"));
}

#[test]
fn truncated_or_garbage_response_fails() {
    for r in ["0x00", "0xzz", "abc", "0b====", ""] {
        let mut a = ChapAuthenticator::with_random(cfg(&ChapAlgorithm::ALL, false), counter());
        challenge(&mut a, "5").unwrap();
        let mut reply = TextPairs::new();
        assert!(a
            .step(
                "CHAP",
                &pairs(&[("CHAP_N", "alice"), ("CHAP_R", r)]),
                &mut reply
            )
            .is_err());
    }
}

#[test]
fn mutual() {
    let mut a = ChapAuthenticator::with_random(cfg(&ChapAlgorithm::ALL, true), counter());
    let c2 = [0xaa; 16];
    let c2h = encode_hex(&c2);
    let reply = respond(
        &mut a,
        &[("CHAP_I", "0x2a"), ("CHAP_C", &c2h)],
        "alice",
        SECRET,
    )
    .unwrap();
    assert_eq!(reply.get("CHAP_N"), Some("tgt"));
    let r2 = parse_binary(reply.get("CHAP_R").unwrap()).unwrap();
    assert_eq!(r2, ChapAlgorithm::Md5.response(42, OUT_SECRET, &c2));
    assert!(a.mutual());
}

#[test]
fn mutual_without_outgoing_account_fails() {
    let mut a = ChapAuthenticator::with_random(cfg(&ChapAlgorithm::ALL, false), counter());
    let c2h = encode_hex(&[0xaa; 16]);
    assert!(respond(
        &mut a,
        &[("CHAP_I", "1"), ("CHAP_C", &c2h)],
        "alice",
        SECRET
    )
    .is_err());
}

#[test]
fn reflected_challenge_is_refused() {
    let mut a = ChapAuthenticator::with_random(cfg(&ChapAlgorithm::ALL, true), counter());
    let (_, id, c) = challenge(&mut a, "5").unwrap();
    let r = encode_hex(&ChapAlgorithm::Md5.response(id, SECRET, &c));
    let ch = encode_hex(&c);
    let mut reply = TextPairs::new();
    let e = a.step(
        "CHAP",
        &pairs(&[
            ("CHAP_N", "alice"),
            ("CHAP_R", &r),
            ("CHAP_I", "3"),
            ("CHAP_C", &ch),
        ]),
        &mut reply,
    );
    assert_eq!(e.unwrap_err(), LoginStatus::AUTHENTICATION_FAILURE);
    assert!(a.failure().unwrap().contains("repeats"));
}

#[test]
fn same_secret_both_ways_refuses_mutual() {
    let mut c = cfg(&ChapAlgorithm::ALL, true);
    c.outgoing.as_mut().unwrap().secret = SECRET.to_vec();
    let mut a = ChapAuthenticator::with_random(c, counter());
    let c2h = encode_hex(&[0xaa; 16]);
    assert!(respond(
        &mut a,
        &[("CHAP_I", "1"), ("CHAP_C", &c2h)],
        "alice",
        SECRET
    )
    .is_err());
}

#[test]
fn os_random_challenges_differ() {
    let mut a = ChapAuthenticator::new(cfg(&ChapAlgorithm::ALL, false));
    let mut b = ChapAuthenticator::new(cfg(&ChapAlgorithm::ALL, false));
    let (_, _, ca) = challenge(&mut a, "7").unwrap();
    let (_, _, cb) = challenge(&mut b, "7").unwrap();
    assert_ne!(ca, cb);
}
