use super::*;

const ISID: [u8; 6] = [0x80, 0x12, 0x34, 0x56, 0x78, 0x9a];
const IQN_I: &str = "iqn.2026-01.org.example:initiator";
const IQN_T: &str = "iqn.2026-01.org.example:disk1";

// Login Request flag bytes (RFC 7143 §11.12): T, C, CSG<<2, NSG.
const T: u8 = 0x80;
const C: u8 = 0x40;
const SEC: u8 = 0;
const OP: u8 = 1 << 2;
const NSG_OP: u8 = 1;
const NSG_FF: u8 = 3;

/// A Login Request built byte by byte.
fn req_full(flags: u8, tsih: u16, itt: u32, cmd_sn: u32, exp_stat_sn: u32, data: &[u8]) -> Pdu {
    let mut bhs = [0u8; 48];
    bhs[0] = 0x40 | 0x03; // I bit + Login Request
    bhs[1] = flags;
    bhs[2] = 0x00; // Version-max
    bhs[3] = 0x00; // Version-min
    let len = data.len() as u32;
    bhs[5..8].copy_from_slice(&len.to_be_bytes()[1..]);
    bhs[8..14].copy_from_slice(&ISID);
    bhs[14..16].copy_from_slice(&tsih.to_be_bytes());
    bhs[16..20].copy_from_slice(&itt.to_be_bytes());
    bhs[20..22].copy_from_slice(&1u16.to_be_bytes()); // CID
    bhs[24..28].copy_from_slice(&cmd_sn.to_be_bytes());
    bhs[28..32].copy_from_slice(&exp_stat_sn.to_be_bytes());
    Pdu {
        bhs,
        ahs: Vec::new(),
        data: data.to_vec(),
    }
}

fn req(flags: u8, data: &[u8]) -> Pdu {
    req_full(flags, 0, 0x1000, 77, 500, data)
}

fn text(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut v = Vec::new();
    for (k, val) in pairs {
        keys::encode_pair(&mut v, k, val);
    }
    v
}

fn normal_ids() -> Vec<(&'static str, &'static str)> {
    vec![
        ("InitiatorName", IQN_I),
        ("TargetName", IQN_T),
        ("SessionType", "Normal"),
    ]
}

fn discovery_ids() -> Vec<(&'static str, &'static str)> {
    vec![("InitiatorName", IQN_I), ("SessionType", "Discovery")]
}

struct Ctx {
    overrides: Vec<(String, String)>,
    tsih: u16,
    sessions: Vec<([u8; 6], u16)>,
    target_calls: u32,
    chap_secret: Option<&'static str>,
}

impl Ctx {
    fn new() -> Self {
        Ctx {
            overrides: Vec::new(),
            tsih: 0x20,
            sessions: Vec::new(),
            target_calls: 0,
            chap_secret: None,
        }
    }
}

impl LoginContext for Ctx {
    fn target(
        &mut self,
        target_name: &str,
        initiator_name: &str,
    ) -> Result<TargetLogin, LoginStatus> {
        self.target_calls += 1;
        assert_eq!(initiator_name, IQN_I);
        match target_name {
            IQN_T => Ok(TargetLogin {
                overrides: self.overrides.clone(),
                portal_group_tag: 7,
            }),
            "iqn.2026-01.org.example:denied" => Err(LoginStatus::AUTHORIZATION_FAILURE),
            _ => Err(LoginStatus::NOT_FOUND),
        }
    }
    fn new_tsih(&mut self) -> u16 {
        self.tsih += 1;
        self.tsih
    }
    fn portal_group_tag(&self) -> u16 {
        3
    }
    fn session_exists(&mut self, isid: [u8; 6], tsih: u16) -> bool {
        self.sessions.contains(&(isid, tsih))
    }
    fn authenticator(
        &mut self,
        _st: SessionType,
        _t: Option<&str>,
        _i: &str,
    ) -> Option<Box<dyn Authenticator>> {
        self.chap_secret.map(|s| {
            Box::new(FakeChap {
                secret: s,
                challenged: false,
            }) as Box<dyn Authenticator>
        })
    }
}

/// A stand-in for CHAP: the "response" must equal the secret.
struct FakeChap {
    secret: &'static str,
    challenged: bool,
}

impl Authenticator for FakeChap {
    fn methods(&self) -> &[&'static str] {
        &["CHAP"]
    }
    fn step(
        &mut self,
        method: &str,
        request: &TextPairs,
        reply: &mut TextPairs,
    ) -> Result<AuthStep, LoginStatus> {
        assert_eq!(method, "CHAP");
        if !self.challenged {
            if let Some(a) = request.get("CHAP_A") {
                assert!(a.split(',').any(|x| x == "5"));
                reply.push("CHAP_A", "5");
                reply.push("CHAP_I", "1");
                reply.push("CHAP_C", "0x0102");
                self.challenged = true;
            }
            return Ok(AuthStep::Continue);
        }
        match request.get("CHAP_R") {
            Some(r) if r == self.secret && request.get("CHAP_N") == Some("user") => {
                Ok(AuthStep::Done)
            }
            _ => Err(LoginStatus::AUTHENTICATION_FAILURE),
        }
    }
}

fn rsp_of(step: &LoginStep) -> &Pdu {
    match step {
        LoginStep::Continue(p) | LoginStep::Fail(p) => p,
        LoginStep::Complete { response, .. } => response,
    }
}

fn status(step: &LoginStep) -> LoginStatus {
    let p = rsp_of(step);
    LoginStatus::new(p.bhs[36], p.bhs[37])
}

fn pairs(step: &LoginStep) -> TextPairs {
    TextPairs::parse(&rsp_of(step).data).unwrap()
}

fn expect_fail(step: &LoginStep, want: LoginStatus) {
    assert!(
        matches!(step, LoginStep::Fail(_)),
        "expected Fail, got {step:?}"
    );
    assert_eq!(status(step), want);
}

fn expect_continue(step: &LoginStep) -> TextPairs {
    assert!(
        matches!(step, LoginStep::Continue(_)),
        "expected Continue, got {step:?}"
    );
    assert_eq!(status(step), LoginStatus::SUCCESS);
    pairs(step)
}

fn expect_complete(step: &LoginStep) -> (TextPairs, SessionParams) {
    match step {
        LoginStep::Complete { response, params } => {
            assert_eq!(response.bhs[36..38], [0, 0]);
            (TextPairs::parse(&response.data).unwrap(), params.clone())
        }
        other => panic!("expected Complete, got {other:?}"),
    }
}

/// One-PDU normal login straight into operational negotiation with the given extra keys.
fn one_shot(extra: &[(&str, &str)]) -> LoginStep {
    let mut ctx = Ctx::new();
    one_shot_ctx(&mut ctx, extra)
}

fn one_shot_ctx(ctx: &mut Ctx, extra: &[(&str, &str)]) -> LoginStep {
    let mut l = Login::new(TargetDefaults::default());
    let mut kv = normal_ids();
    kv.extend_from_slice(extra);
    l.handle(&req(T | OP | NSG_FF, &text(&kv)), ctx)
}

/// Everything an initiator like open-iscsi sends, so that we make no offers.
fn full_op_set() -> Vec<(&'static str, &'static str)> {
    vec![
        ("HeaderDigest", "None"),
        ("DataDigest", "None"),
        ("MaxConnections", "1"),
        ("InitialR2T", "No"),
        ("ImmediateData", "Yes"),
        ("MaxRecvDataSegmentLength", "262144"),
        ("MaxBurstLength", "16776192"),
        ("FirstBurstLength", "262144"),
        ("DefaultTime2Wait", "2"),
        ("DefaultTime2Retain", "0"),
        ("MaxOutstandingR2T", "1"),
        ("DataPDUInOrder", "Yes"),
        ("DataSequenceInOrder", "Yes"),
        ("ErrorRecoveryLevel", "0"),
        ("IFMarker", "No"),
        ("OFMarker", "No"),
    ]
}

#[test]
fn discovery_login_in_one_step() {
    let mut ctx = Ctx::new();
    let mut l = Login::new(TargetDefaults::default());
    let mut kv = discovery_ids();
    kv.extend([
        ("HeaderDigest", "None"),
        ("DataDigest", "None"),
        ("MaxRecvDataSegmentLength", "32768"),
        ("DefaultTime2Wait", "0"),
        ("DefaultTime2Retain", "0"),
        ("InitialR2T", "Yes"),
        ("ImmediateData", "No"),
        ("MaxBurstLength", "65536"),
        ("MaxConnections", "1"),
        ("X-com.example.feature", "1"),
        ("X#NodeArchitecture", "Test/1"),
        ("FooBar", "baz"),
    ]);
    let step = l.handle(
        &req_full(T | OP | NSG_FF, 0, 0xabcd, 9, 1234, &text(&kv)),
        &mut ctx,
    );
    let (r, p) = expect_complete(&step);
    let rsp = rsp_of(&step);
    // Byte-level checks of the Login Response BHS (RFC 7143 §11.13).
    assert_eq!(rsp.bhs[0], 0x23);
    assert_eq!(rsp.bhs[1], 0x80 | 0x04 | 0x03);
    assert_eq!(rsp.bhs[2..4], [0, 0]);
    assert_eq!(rsp.bhs[8..14], ISID);
    assert_eq!(rsp.u16_at(14), 0x21, "new TSIH in the final response");
    assert_eq!(rsp.itt(), 0xabcd);
    assert_eq!(
        rsp.stat_sn(),
        1234,
        "StatSN = ExpStatSN of the first request"
    );
    assert_eq!(rsp.exp_cmd_sn(), 9);
    assert_eq!(rsp.max_cmd_sn(), 9 + CMD_SN_WINDOW - 1);
    assert_eq!(rsp.data_segment_len(), rsp.data.len());

    assert_eq!(r.get("HeaderDigest"), Some("None"));
    assert_eq!(r.get("DataDigest"), Some("None"));
    assert_eq!(r.get("DefaultTime2Wait"), Some("2"));
    assert_eq!(r.get("DefaultTime2Retain"), Some("0"));
    for k in [
        "InitialR2T",
        "ImmediateData",
        "MaxBurstLength",
        "MaxConnections",
    ] {
        assert_eq!(r.get(k), Some("Irrelevant"), "{k}");
    }
    assert_eq!(r.get("X-com.example.feature"), Some("NotUnderstood"));
    assert_eq!(r.get("X#NodeArchitecture"), Some("NotUnderstood"));
    assert_eq!(r.get("FooBar"), Some("NotUnderstood"));
    assert_eq!(r.get("MaxRecvDataSegmentLength"), Some("262144"));
    assert_eq!(r.get("TargetPortalGroupTag"), None);
    assert_eq!(ctx.target_calls, 0, "discovery does not look up a target");

    assert_eq!(p.session_type, SessionType::Discovery);
    assert_eq!(p.initiator_name, IQN_I);
    assert_eq!(p.target_name, None);
    assert_eq!(p.target_portal_group_tag, 3);
    assert_eq!(p.max_xmit_data_segment_length, 32768);
    assert_eq!(p.max_recv_data_segment_length, 262_144);
    assert_eq!(p.tsih, 0x21);
    assert_eq!(p.isid, ISID);
    assert_eq!(p.cid, 1);
    assert_eq!(p.exp_cmd_sn, 9);
    assert_eq!(p.stat_sn, 1235);
    assert!(l.is_finished());
}

#[test]
fn normal_login_security_then_operational() {
    let mut ctx = Ctx::new();
    let mut l = Login::new(TargetDefaults::default());
    let mut kv = normal_ids();
    kv.push(("AuthMethod", "None"));
    kv.push(("InitiatorAlias", "host1"));
    let s1 = l.handle(
        &req_full(T | SEC | NSG_OP, 0, 1, 5, 100, &text(&kv)),
        &mut ctx,
    );
    let r1 = expect_continue(&s1);
    let p1 = rsp_of(&s1);
    assert_eq!(p1.flags(), T | SEC | NSG_OP);
    assert_eq!(p1.u16_at(14), 0, "no TSIH before the final response");
    assert_eq!(p1.stat_sn(), 100);
    assert_eq!(r1.get("AuthMethod"), Some("None"));
    assert_eq!(r1.get("TargetPortalGroupTag"), Some("7"));
    assert_eq!(
        r1.get("MaxRecvDataSegmentLength"),
        None,
        "declared in operational stage"
    );
    assert_eq!(l.stage(), stage::OPERATIONAL);

    let mut kv = full_op_set();
    kv[0] = ("HeaderDigest", "CRC32C,None");
    kv[2] = ("MaxConnections", "4");
    kv[5] = ("MaxRecvDataSegmentLength", "65536");
    let s2 = l.handle(
        &req_full(T | OP | NSG_FF, 0, 1, 5, 101, &text(&kv)),
        &mut ctx,
    );
    let (r2, p) = expect_complete(&s2);
    assert_eq!(rsp_of(&s2).stat_sn(), 101);
    assert_eq!(rsp_of(&s2).flags(), T | OP | NSG_FF);
    assert_eq!(r2.get("HeaderDigest"), Some("CRC32C"));
    assert_eq!(r2.get("DataDigest"), Some("None"));
    assert_eq!(r2.get("MaxConnections"), Some("1"));
    assert_eq!(r2.get("InitialR2T"), Some("No"));
    assert_eq!(r2.get("ImmediateData"), Some("Yes"));
    assert_eq!(r2.get("MaxBurstLength"), Some("1048576"));
    assert_eq!(r2.get("FirstBurstLength"), Some("262144"));
    assert_eq!(r2.get("DefaultTime2Wait"), Some("2"));
    assert_eq!(r2.get("DefaultTime2Retain"), Some("0"));
    assert_eq!(r2.get("MaxOutstandingR2T"), Some("1"));
    assert_eq!(r2.get("ErrorRecoveryLevel"), Some("0"));
    assert_eq!(r2.get("IFMarker"), Some("No"));
    assert_eq!(r2.get("MaxRecvDataSegmentLength"), Some("262144"));
    assert_eq!(
        r2.get("TargetPortalGroupTag"),
        None,
        "only in the first response"
    );
    assert_eq!(ctx.target_calls, 1);

    assert_eq!(p.session_type, SessionType::Normal);
    assert_eq!(p.target_name.as_deref(), Some(IQN_T));
    assert_eq!(p.initiator_alias.as_deref(), Some("host1"));
    assert_eq!(p.target_portal_group_tag, 7);
    assert!(p.header_digest);
    assert!(!p.data_digest);
    assert_eq!(p.max_xmit_data_segment_length, 65536);
    assert_eq!(p.max_burst_length, 1_048_576);
    assert_eq!(p.first_burst_length, 262_144);
    assert!(!p.initial_r2t);
    assert!(p.immediate_data);
    assert_eq!(p.max_outstanding_r2t, 1);
    assert_eq!(p.default_time2retain, 0);
    assert_eq!(p.auth_method, "None");
    assert_eq!(p.stat_sn, 102);
    assert_eq!(p.exp_cmd_sn, 5);
    assert!(p.leading);
}

/// Each key's result function (RFC 7143 §13), answered in one normal login.
#[test]
fn result_functions_per_key() {
    let cases: &[(&str, &str, &str)] = &[
        ("HeaderDigest", "None", "None"),
        ("HeaderDigest", "CRC32C", "CRC32C"),
        ("HeaderDigest", "MD5,CRC32C,None", "CRC32C"),
        ("DataDigest", "None,CRC32C", "None"),
        ("MaxConnections", "1", "1"),
        ("MaxConnections", "65535", "1"),
        ("InitialR2T", "Yes", "Yes"),
        ("InitialR2T", "No", "No"),
        ("ImmediateData", "No", "No"),
        ("ImmediateData", "Yes", "Yes"),
        ("MaxBurstLength", "512", "512"),
        ("MaxBurstLength", "16777215", "1048576"),
        ("MaxBurstLength", "0x4000", "16384"),
        ("FirstBurstLength", "4096", "4096"),
        ("FirstBurstLength", "16777215", "262144"),
        ("DefaultTime2Wait", "0", "2"),
        ("DefaultTime2Wait", "3600", "3600"),
        ("DefaultTime2Retain", "0", "0"),
        ("DefaultTime2Retain", "3600", "20"),
        ("MaxOutstandingR2T", "1", "1"),
        ("MaxOutstandingR2T", "100", "8"),
        ("DataPDUInOrder", "No", "Yes"),
        ("DataSequenceInOrder", "No", "Yes"),
        ("DataPDUInOrder", "Yes", "Yes"),
        ("ErrorRecoveryLevel", "2", "0"),
        ("ErrorRecoveryLevel", "0", "0"),
        ("TaskReporting", "ResponseFence,RFC3720", "RFC3720"),
        ("TaskReporting", "FastAbort", "Reject"),
        ("iSCSIProtocolLevel", "2", "1"),
        ("iSCSIProtocolLevel", "0", "0"),
        ("IFMarker", "Yes", "No"),
        ("OFMarker", "No", "No"),
        ("IFMarkInt", "2048~8192", "Reject"),
        ("OFMarkInt", "2048", "Reject"),
        ("RDMAExtensions", "Yes", "No"),
        ("SendTargets", "All", "Reject"),
        ("X-org.example.magic", "1", "NotUnderstood"),
        ("UnknownKey", "1", "NotUnderstood"),
    ];
    for &(k, v, want) in cases {
        let step = one_shot(&[(k, v)]);
        let r = pairs(&step);
        assert_eq!(r.get(k), Some(want), "{k}={v}: {step:?}");
    }
}

/// An iSER connection (RFC 7145 §6.3): RDMAExtensions=Yes is accepted, the data
/// segment lengths are the minimum of both sides' (ours bounded by the transport's
/// buffers), MaxOutstandingUnexpectedPDUs too (0 from the initiator means no limit,
/// so ours), and MaxRecvDataSegmentLength is not declared.
#[test]
fn iser_keys() {
    let mut ctx = Ctx::new();
    let mut l = Login::new(TargetDefaults {
        rdma_data_segment_limit: Some(16384),
        ..TargetDefaults::default()
    });
    let mut kv = normal_ids();
    kv.extend_from_slice(&[
        ("RDMAExtensions", "Yes"),
        ("TargetRecvDataSegmentLength", "262144"),
        ("InitiatorRecvDataSegmentLength", "8192"),
        ("MaxOutstandingUnexpectedPDUs", "0"),
    ]);
    let step = l.handle(&req(T | OP | NSG_FF, &text(&kv)), &mut ctx);
    let r = pairs(&step);
    assert_eq!(r.get("RDMAExtensions"), Some("Yes"));
    assert_eq!(r.get("TargetRecvDataSegmentLength"), Some("16384"));
    assert_eq!(r.get("InitiatorRecvDataSegmentLength"), Some("8192"));
    assert_eq!(
        r.get("MaxOutstandingUnexpectedPDUs"),
        Some(
            crate::login::MAX_OUTSTANDING_UNEXPECTED_PDUS
                .to_string()
                .as_str()
        )
    );
    assert_eq!(r.get("MaxRecvDataSegmentLength"), None);
    // MaxOutstandingUnexpectedPDUs=1 is out of range (0 or 2..2^32-1).
    let mut l = Login::new(TargetDefaults {
        rdma_data_segment_limit: Some(16384),
        ..TargetDefaults::default()
    });
    let mut kv = normal_ids();
    kv.extend_from_slice(&[("MaxOutstandingUnexpectedPDUs", "1")]);
    let step = l.handle(&req(T | OP | NSG_FF, &text(&kv)), &mut Ctx::new());
    expect_fail(&step, LoginStatus::INITIATOR_ERROR);
    // On TCP the iSER keys are irrelevant and RDMAExtensions is No.
    let step = one_shot(&[
        ("RDMAExtensions", "Yes"),
        ("TargetRecvDataSegmentLength", "8192"),
    ]);
    let r = pairs(&step);
    assert_eq!(r.get("RDMAExtensions"), Some("No"));
    assert_eq!(r.get("TargetRecvDataSegmentLength"), Some("Irrelevant"));
}

#[test]
fn declaratives_are_not_answered() {
    let step = one_shot(&[
        ("MaxRecvDataSegmentLength", "0x1000"),
        ("InitiatorAlias", "a host"),
    ]);
    let r = pairs(&step);
    // Only our own declaration appears, not an answer to theirs.
    assert_eq!(r.get("MaxRecvDataSegmentLength"), Some("262144"));
    assert_eq!(r.get("InitiatorAlias"), None);
    // Offers were made (InitialR2T etc. not mentioned), so no transit yet.
    assert_eq!(rsp_of(&step).flags() & T, 0);
}

#[test]
fn first_burst_bounded_by_max_burst() {
    let step = one_shot(&[("FirstBurstLength", "131072"), ("MaxBurstLength", "65536")]);
    let r = pairs(&step);
    assert_eq!(r.get("MaxBurstLength"), Some("65536"));
    assert_eq!(r.get("FirstBurstLength"), Some("65536"));
}

#[test]
fn bad_values_are_initiator_errors() {
    for (k, v) in [
        ("MaxRecvDataSegmentLength", "511"),
        ("MaxRecvDataSegmentLength", "16777216"),
        ("MaxBurstLength", "0"),
        ("FirstBurstLength", "abc"),
        ("MaxConnections", "0"),
        ("DefaultTime2Wait", "3601"),
        ("ErrorRecoveryLevel", "3"),
        ("MaxOutstandingR2T", "65536"),
        ("InitialR2T", "yes"),
        ("ImmediateData", "1"),
        ("HeaderDigest", "MD5"),
        ("HeaderDigest", ""),
        ("DataDigest", "None,,CRC32C"),
        ("MaxBurstLength", "01024"),
        ("TargetAlias", "mine"),
        ("TargetAddress", "10.0.0.1:3260,1"),
        ("TargetPortalGroupTag", "1"),
        ("CHAP_A", "5"),
    ] {
        let step = one_shot(&[(k, v)]);
        expect_fail(&step, LoginStatus::INITIATOR_ERROR);
    }
}

#[test]
fn malformed_text_is_an_initiator_error() {
    let mut ctx = Ctx::new();
    let mut data = text(&normal_ids());
    data.extend_from_slice(b"NoEqualsSign\0");
    let step = Login::new(TargetDefaults::default()).handle(&req(T | OP | NSG_FF, &data), &mut ctx);
    expect_fail(&step, LoginStatus::INITIATOR_ERROR);

    let mut data = text(&normal_ids());
    data.extend_from_slice(b"MaxBurstLength=512\0MaxBurstLength=1024\0");
    let step = Login::new(TargetDefaults::default()).handle(&req(T | OP | NSG_FF, &data), &mut ctx);
    expect_fail(&step, LoginStatus::INITIATOR_ERROR);

    let mut data = text(&normal_ids());
    data.extend_from_slice(format!("{}=1\0", "K".repeat(64)).as_bytes());
    let step = Login::new(TargetDefaults::default()).handle(&req(T | OP | NSG_FF, &data), &mut ctx);
    expect_fail(&step, LoginStatus::INITIATOR_ERROR);

    let mut data = text(&normal_ids());
    data.extend_from_slice(format!("InitiatorAlias={}\0", "a".repeat(256)).as_bytes());
    let step = Login::new(TargetDefaults::default()).handle(&req(T | OP | NSG_FF, &data), &mut ctx);
    expect_fail(&step, LoginStatus::INITIATOR_ERROR);
}

#[test]
fn missing_names() {
    let mut ctx = Ctx::new();
    let data = text(&[("TargetName", IQN_T)]);
    let step = Login::new(TargetDefaults::default()).handle(&req(T | OP | NSG_FF, &data), &mut ctx);
    expect_fail(&step, LoginStatus::MISSING_PARAMETER);
    assert_eq!(rsp_of(&step).bhs[36..38], [0x02, 0x07]);

    let data = text(&[("InitiatorName", IQN_I)]);
    let mut l = Login::new(TargetDefaults::default());
    let step = l.handle(&req(T | OP | NSG_FF, &data), &mut ctx);
    expect_fail(&step, LoginStatus::MISSING_PARAMETER);
    assert!(l.failure_reason().unwrap().contains("TargetName"));

    let data = text(&[("InitiatorName", IQN_I), ("TargetName", "")]);
    let step = Login::new(TargetDefaults::default()).handle(&req(T | OP | NSG_FF, &data), &mut ctx);
    expect_fail(&step, LoginStatus::MISSING_PARAMETER);

    // Discovery: TargetName not required.
    let step = Login::new(TargetDefaults::default())
        .handle(&req(T | OP | NSG_FF, &text(&discovery_ids())), &mut ctx);
    expect_complete(&step);
}

#[test]
fn target_lookup_statuses() {
    let mut ctx = Ctx::new();
    for (name, want) in [
        ("iqn.2026-01.org.example:nope", LoginStatus::NOT_FOUND),
        (
            "iqn.2026-01.org.example:denied",
            LoginStatus::AUTHORIZATION_FAILURE,
        ),
    ] {
        let data = text(&[("InitiatorName", IQN_I), ("TargetName", name)]);
        let step =
            Login::new(TargetDefaults::default()).handle(&req(T | OP | NSG_FF, &data), &mut ctx);
        expect_fail(&step, want);
    }
    assert_eq!(LoginStatus::NOT_FOUND.code(), 0x0203);
    assert_eq!(LoginStatus::SESSION_DOES_NOT_EXIST.code(), 0x020a);
    assert_eq!(LoginStatus::SERVICE_UNAVAILABLE.to_string(), "03/01");
}

#[test]
fn session_type_checks() {
    let mut ctx = Ctx::new();
    let data = text(&[("InitiatorName", IQN_I), ("SessionType", "Bogus")]);
    let step = Login::new(TargetDefaults::default()).handle(&req(T | OP | NSG_FF, &data), &mut ctx);
    expect_fail(&step, LoginStatus::SESSION_TYPE_NOT_SUPPORTED);
}

#[test]
fn version_and_header_checks() {
    let mut ctx = Ctx::new();
    let data = text(&normal_ids());
    let mut p = req(T | OP | NSG_FF, &data);
    p.bhs[2] = 2;
    p.bhs[3] = 1;
    expect_fail(
        &Login::new(TargetDefaults::default()).handle(&p, &mut ctx),
        LoginStatus::UNSUPPORTED_VERSION,
    );
    let bad_flags = [
        T | C | OP | NSG_FF,   // T and C together
        T | OP | NSG_OP,       // no forward move
        T | OP | 2,            // reserved stage
        T | (3 << 2) | NSG_FF, // CSG FullFeature
        (2 << 2),              // CSG reserved
        T | OP,                // back to Security
    ];
    for f in bad_flags {
        let step = Login::new(TargetDefaults::default()).handle(&req(f, &data), &mut ctx);
        expect_fail(&step, LoginStatus::INITIATOR_ERROR);
    }
    // A non-login PDU during login.
    let mut p = req(T | OP | NSG_FF, &data);
    p.bhs[0] = 0x01;
    expect_fail(
        &Login::new(TargetDefaults::default()).handle(&p, &mut ctx),
        LoginStatus::INVALID_DURING_LOGIN,
    );
    // Oversized data segment.
    let mut big = text(&normal_ids());
    big.extend_from_slice(format!("X-pad={}\0", "p".repeat(200)).repeat(40).as_bytes());
    assert!(big.len() > 8192);
    expect_fail(
        &Login::new(TargetDefaults::default()).handle(&req(T | OP | NSG_FF, &big), &mut ctx),
        LoginStatus::INITIATOR_ERROR,
    );
}

#[test]
fn fail_response_echoes_fields() {
    let mut ctx = Ctx::new();
    let step = Login::new(TargetDefaults::default()).handle(
        &req_full(T | OP | NSG_FF, 0, 0x55, 3, 42, b"TargetName=x\0"),
        &mut ctx,
    );
    let p = rsp_of(&step);
    assert_eq!(p.opcode(), op::LOGIN_RSP);
    assert_eq!(p.itt(), 0x55);
    assert_eq!(p.bhs[8..14], ISID);
    assert_eq!(p.stat_sn(), 42);
    assert_eq!(p.exp_cmd_sn(), 3);
    assert_eq!(p.flags() & (T | C), 0);
    assert!(p.data.is_empty());
}

#[test]
fn continued_request_text() {
    let mut ctx = Ctx::new();
    let mut l = Login::new(TargetDefaults::default());
    let mut kv = normal_ids();
    kv.extend(full_op_set());
    let all = text(&kv);
    let (a, rest) = all.split_at(20); // splits inside a key
    let (b, c) = rest.split_at(rest.len() / 2);
    let s1 = l.handle(&req_full(C | OP | NSG_FF, 0, 9, 1, 10, a), &mut ctx);
    let r1 = expect_continue(&s1);
    assert!(r1.is_empty());
    assert_eq!(rsp_of(&s1).flags() & (T | C), 0);
    assert_eq!(rsp_of(&s1).stat_sn(), 10);
    let s2 = l.handle(&req_full(C | OP | NSG_FF, 0, 9, 1, 11, b), &mut ctx);
    assert!(expect_continue(&s2).is_empty());
    assert_eq!(rsp_of(&s2).stat_sn(), 11);
    let s3 = l.handle(&req_full(T | OP | NSG_FF, 0, 9, 1, 12, c), &mut ctx);
    let (r, p) = expect_complete(&s3);
    assert_eq!(rsp_of(&s3).stat_sn(), 12);
    assert_eq!(r.get("TargetPortalGroupTag"), Some("7"));
    assert_eq!(r.get("InitialR2T"), Some("No"));
    assert_eq!(p.stat_sn, 13);
}

#[test]
fn long_response_is_continued() {
    let mut ctx = Ctx::new();
    let mut l = Login::new(TargetDefaults::default());
    // 1500 unknown keys, each answered NotUnderstood: the answer exceeds 8192 bytes.
    let mut unknown = String::new();
    for i in 0..1500 {
        unknown.push_str(&format!("Y{i}=1\0"));
    }
    let mut kv = normal_ids();
    kv.extend(full_op_set());
    let mut all = text(&kv);
    all.extend_from_slice(unknown.as_bytes());
    let (a, b) = all.split_at(all.len() / 2);
    expect_continue(&l.handle(&req(C | OP | NSG_FF, a), &mut ctx));
    let mut got = Vec::new();
    let mut step = l.handle(&req(T | OP | NSG_FF, b), &mut ctx);
    let mut parts = 0;
    loop {
        parts += 1;
        let p = rsp_of(&step).clone();
        assert!(p.data.len() <= 8192);
        got.extend_from_slice(&p.data);
        if p.flags() & C == 0 {
            break;
        }
        assert_eq!(p.flags() & T, 0, "T only on the last part");
        assert!(matches!(step, LoginStep::Continue(_)));
        // The initiator acknowledges each part with an empty request.
        step = l.handle(&req(T | OP | NSG_FF, &[]), &mut ctx);
    }
    assert!(parts >= 3, "{parts}");
    let LoginStep::Complete { params, .. } = &step else {
        panic!("expected Complete, got {step:?}");
    };
    assert_eq!(rsp_of(&step).flags(), T | OP | NSG_FF);
    assert_ne!(params.tsih, 0);
    let r = TextPairs::parse(&got).unwrap();
    assert_eq!(r.get("Y1499"), Some("NotUnderstood"));
    assert_eq!(r.get("InitialR2T"), Some("No"));
}

#[test]
fn target_offers_what_initiator_did_not_mention() {
    let mut ctx = Ctx::new();
    let mut l = Login::new(TargetDefaults::default());
    let s1 = l.handle(&req(T | OP | NSG_FF, &text(&normal_ids())), &mut ctx);
    let r1 = expect_continue(&s1);
    assert_eq!(rsp_of(&s1).flags() & T, 0, "offers need answers first");
    assert_eq!(r1.get("InitialR2T"), Some("No"));
    assert_eq!(r1.get("ImmediateData"), Some("Yes"));
    assert_eq!(r1.get("MaxBurstLength"), Some("1048576"));
    assert_eq!(r1.get("FirstBurstLength"), Some("262144"));
    assert_eq!(r1.get("MaxOutstandingR2T"), Some("8"));
    assert_eq!(r1.get("MaxRecvDataSegmentLength"), Some("262144"));
    assert_eq!(r1.get("HeaderDigest"), None, "None allowed: default fine");
    assert_eq!(r1.get("DefaultTime2Wait"), None, "same as the RFC default");

    let answers = text(&[
        ("InitialR2T", "No"),
        ("ImmediateData", "Yes"),
        ("MaxBurstLength", "524288"),
        ("FirstBurstLength", "65536"),
        ("MaxOutstandingR2T", "4"),
    ]);
    let s2 = l.handle(&req(T | OP | NSG_FF, &answers), &mut ctx);
    let (r2, p) = expect_complete(&s2);
    assert!(r2.is_empty(), "answers to our offers need no reply: {r2:?}");
    assert!(!p.initial_r2t);
    assert!(p.immediate_data);
    assert_eq!(p.max_burst_length, 524_288);
    assert_eq!(p.first_burst_length, 65536);
    assert_eq!(p.max_outstanding_r2t, 4);
    assert_eq!(
        p.max_xmit_data_segment_length, 8192,
        "initiator declared nothing"
    );
}

#[test]
fn or_answer_to_no_offer_may_be_yes() {
    let mut ctx = Ctx::new();
    let mut l = Login::new(TargetDefaults::default());
    expect_continue(&l.handle(&req(T | OP | NSG_FF, &text(&normal_ids())), &mut ctx));
    let s2 = l.handle(
        &req(
            T | OP | NSG_FF,
            &text(&[("InitialR2T", "Yes"), ("ImmediateData", "No")]),
        ),
        &mut ctx,
    );
    let (_, p) = expect_complete(&s2);
    assert!(p.initial_r2t);
    assert!(!p.immediate_data);
}

#[test]
fn unanswered_offers_keep_rfc_defaults() {
    // libiscsi reads our offers but never answers them.
    let mut ctx = Ctx::new();
    let mut l = Login::new(TargetDefaults::default());
    expect_continue(&l.handle(&req(T | OP | NSG_FF, &text(&normal_ids())), &mut ctx));
    let (_, p) = expect_complete(&l.handle(&req(T | OP | NSG_FF, &[]), &mut ctx));
    let rfc = SessionParams::default();
    assert_eq!(p.initial_r2t, rfc.initial_r2t);
    assert_eq!(p.max_burst_length, rfc.max_burst_length);
    assert_eq!(p.first_burst_length, rfc.first_burst_length);
    assert_eq!(p.max_outstanding_r2t, rfc.max_outstanding_r2t);
}

#[test]
fn illegal_answers_to_offers() {
    for (k, v) in [
        ("MaxBurstLength", "2097152"), // above our offer: not a min() result
        ("MaxOutstandingR2T", "9"),
        ("FirstBurstLength", "x"),
        ("InitialR2T", "Maybe"),
    ] {
        let mut ctx = Ctx::new();
        let mut l = Login::new(TargetDefaults::default());
        expect_continue(&l.handle(&req(T | OP | NSG_FF, &text(&normal_ids())), &mut ctx));
        let step = l.handle(&req(T | OP | NSG_FF, &text(&[(k, v)])), &mut ctx);
        expect_fail(&step, LoginStatus::INITIATOR_ERROR);
    }
    // An AND offer of No leaves no choice.
    let mut ctx = Ctx::new();
    ctx.overrides = vec![("ImmediateData".into(), "No".into())];
    let mut l = Login::new(TargetDefaults::default());
    let r = expect_continue(&l.handle(&req(T | OP | NSG_FF, &text(&normal_ids())), &mut ctx));
    assert_eq!(r.get("ImmediateData"), Some("No"));
    let step = l.handle(
        &req(T | OP | NSG_FF, &text(&[("ImmediateData", "Yes")])),
        &mut ctx,
    );
    expect_fail(&step, LoginStatus::INITIATOR_ERROR);
}

#[test]
fn identical_repeats_tolerated_changed_values_refused() {
    // libiscsi re-sends its whole operational set in each request of the stage.
    let mut ctx = Ctx::new();
    ctx.overrides = vec![("DefaultTime2Wait".into(), "5".into())];
    let mut l = Login::new(TargetDefaults::default());
    let mut kv = normal_ids();
    kv.extend(full_op_set());
    let (r1, p) = expect_complete(&l.handle(&req(T | OP | NSG_FF, &text(&kv)), &mut ctx));
    // DefaultTime2Wait was mentioned, so no offer: max(2, 5) answered.
    assert_eq!(r1.get("DefaultTime2Wait"), Some("5"));
    assert_eq!(p.default_time2wait, 5);

    let mut ctx = Ctx::new();
    let mut l = Login::new(TargetDefaults::default());
    let mut kv = normal_ids();
    kv.push(("MaxBurstLength", "65536"));
    let s1 = l.handle(&req(T | OP | NSG_FF, &text(&kv)), &mut ctx);
    expect_continue(&s1); // offers outstanding
    let s2 = l.handle(&req(T | OP | NSG_FF, &text(&kv)), &mut ctx);
    let (r2, p) = expect_complete(&s2);
    assert_eq!(r2.get("MaxBurstLength"), Some("65536"));
    assert_eq!(p.max_burst_length, 65536);

    let mut ctx = Ctx::new();
    let mut l = Login::new(TargetDefaults::default());
    expect_continue(&l.handle(&req(T | OP | NSG_FF, &text(&kv)), &mut ctx));
    let changed = text(&[("MaxBurstLength", "131072")]);
    expect_fail(
        &l.handle(&req(T | OP | NSG_FF, &changed), &mut ctx),
        LoginStatus::INITIATOR_ERROR,
    );
    let mut l = Login::new(TargetDefaults::default());
    expect_continue(&l.handle(&req(T | OP | NSG_FF, &text(&kv)), &mut ctx));
    let changed = text(&[("InitiatorName", "iqn.2026-01.org.example:other")]);
    expect_fail(
        &l.handle(&req(T | OP | NSG_FF, &changed), &mut ctx),
        LoginStatus::INITIATOR_ERROR,
    );
}

#[test]
fn later_requests_must_match_stage_and_ids() {
    let mut ctx = Ctx::new();
    let mut l = Login::new(TargetDefaults::default());
    let mut kv = normal_ids();
    kv.push(("AuthMethod", "None"));
    expect_continue(&l.handle(&req(T | SEC | NSG_OP, &text(&kv)), &mut ctx));
    // Still claiming the security stage after moving on.
    expect_fail(
        &l.handle(&req(T | SEC | NSG_FF, &[]), &mut ctx),
        LoginStatus::INITIATOR_ERROR,
    );

    let mut l = Login::new(TargetDefaults::default());
    expect_continue(&l.handle(&req(SEC | NSG_OP, &text(&kv)), &mut ctx));
    let mut p = req(T | SEC | NSG_OP, &[]);
    p.bhs[13] ^= 1; // ISID changed
    expect_fail(&l.handle(&p, &mut ctx), LoginStatus::INITIATOR_ERROR);
    // Nothing after the end.
    expect_fail(
        &l.handle(&req(T | SEC | NSG_OP, &[]), &mut ctx),
        LoginStatus::INITIATOR_ERROR,
    );
}

#[test]
fn security_stage_without_transit_stays() {
    let mut ctx = Ctx::new();
    let mut l = Login::new(TargetDefaults::default());
    let mut kv = normal_ids();
    kv.push(("AuthMethod", "None"));
    let s1 = l.handle(&req(SEC | NSG_OP, &text(&kv)), &mut ctx);
    assert_eq!(rsp_of(&s1).flags() & T, 0);
    assert_eq!(l.stage(), stage::SECURITY);
    // Security straight to full feature phase.
    let s2 = l.handle(&req(T | SEC | NSG_FF, &[]), &mut ctx);
    let (r, p) = expect_complete(&s2);
    assert_eq!(r.get("MaxRecvDataSegmentLength"), Some("262144"));
    assert!(p.initial_r2t, "no operational stage: RFC defaults");
    assert_eq!(p.max_recv_data_segment_length, 262_144);
}

#[test]
fn security_keys_outside_security_stage() {
    let step = one_shot(&[("AuthMethod", "None")]);
    expect_fail(&step, LoginStatus::INITIATOR_ERROR);
}

#[test]
fn tsih_of_existing_and_unknown_sessions() {
    let mut ctx = Ctx::new();
    let data = text(&normal_ids());
    let step = Login::new(TargetDefaults::default())
        .handle(&req_full(T | OP | NSG_FF, 0x77, 1, 1, 1, &data), &mut ctx);
    expect_fail(&step, LoginStatus::SESSION_DOES_NOT_EXIST);
    assert_eq!(rsp_of(&step).u16_at(14), 0x77);

    ctx.sessions.push((ISID, 0x77));
    let mut kv = normal_ids();
    kv.extend([
        ("MaxBurstLength", "4096"),
        ("MaxRecvDataSegmentLength", "16384"),
    ]);
    let mut l = Login::new(TargetDefaults::default());
    let step = l.handle(
        &req_full(T | OP | NSG_FF, 0x77, 1, 1, 1, &text(&kv)),
        &mut ctx,
    );
    let (r, p) = expect_complete(&step);
    assert_eq!(rsp_of(&step).u16_at(14), 0x77, "TSIH echoed");
    assert_eq!(r.get("MaxBurstLength"), Some("Reject"), "leading-only key");
    assert_eq!(p.max_xmit_data_segment_length, 16384);
    assert!(!p.leading);
    assert_eq!(p.tsih, 0x77);
    assert_eq!(ctx.tsih, 0x20, "no new TSIH");
}

#[test]
fn per_target_overrides() {
    let mut ctx = Ctx::new();
    ctx.overrides = vec![
        ("MaxRecvDataSegmentLength".into(), "65536".into()),
        ("TargetAlias".into(), "Disk One".into()),
        ("MaxXmitDataSegmentLength".into(), "16384".into()),
    ];
    let mut kv = full_op_set();
    kv[5] = ("MaxRecvDataSegmentLength", "131072");
    let step = one_shot_ctx(&mut ctx, &kv);
    let (r, p) = expect_complete(&step);
    assert_eq!(r.get("MaxRecvDataSegmentLength"), Some("65536"));
    assert_eq!(r.get("TargetAlias"), Some("Disk One"));
    assert_eq!(r.get("TargetPortalGroupTag"), Some("7"));
    assert_eq!(p.max_recv_data_segment_length, 65536);
    assert_eq!(p.max_xmit_data_segment_length, 16384);
    assert_eq!(p.target_alias.as_deref(), Some("Disk One"));

    let mut ctx = Ctx::new();
    ctx.overrides = vec![("NoSuchKey".into(), "1".into())];
    expect_fail(&one_shot_ctx(&mut ctx, &[]), LoginStatus::TARGET_ERROR);
}

#[test]
fn required_digests() {
    let mut ctx = Ctx::new();
    ctx.overrides = vec![
        ("HeaderDigest".into(), "CRC32C".into()),
        ("DataDigest".into(), "CRC32C".into()),
    ];
    // Offered None only: cannot agree.
    expect_fail(
        &one_shot_ctx(&mut ctx, &[("HeaderDigest", "None")]),
        LoginStatus::INITIATOR_ERROR,
    );
    // Not mentioned: we ask for CRC32C.
    let mut l = Login::new(TargetDefaults::default());
    let mut kv = normal_ids();
    kv.extend(
        full_op_set()
            .into_iter()
            .filter(|(k, _)| !k.ends_with("Digest")),
    );
    let r = expect_continue(&l.handle(&req(T | OP | NSG_FF, &text(&kv)), &mut ctx));
    assert_eq!(r.get("HeaderDigest"), Some("CRC32C"));
    assert_eq!(r.get("DataDigest"), Some("CRC32C"));
    let ans = text(&[("HeaderDigest", "CRC32C"), ("DataDigest", "CRC32C")]);
    let (_, p) = expect_complete(&l.handle(&req(T | OP | NSG_FF, &ans), &mut ctx));
    assert!(p.header_digest && p.data_digest);
    // Answered Reject: fail.
    let mut l = Login::new(TargetDefaults::default());
    expect_continue(&l.handle(&req(T | OP | NSG_FF, &text(&kv)), &mut ctx));
    let ans = text(&[("HeaderDigest", "Reject"), ("DataDigest", "CRC32C")]);
    expect_fail(
        &l.handle(&req(T | OP | NSG_FF, &ans), &mut ctx),
        LoginStatus::INITIATOR_ERROR,
    );
}

#[test]
fn authenticator_exchange() {
    let mut ctx = Ctx::new();
    ctx.chap_secret = Some("0xsecret");
    let mut l = Login::new(TargetDefaults::default());
    let mut kv = normal_ids();
    kv.push(("AuthMethod", "None,CHAP"));
    let s1 = l.handle(&req(T | SEC | NSG_OP, &text(&kv)), &mut ctx);
    let r1 = expect_continue(&s1);
    assert_eq!(r1.get("AuthMethod"), Some("CHAP"));
    assert_eq!(rsp_of(&s1).flags() & T, 0, "authentication not done");
    let r2 = expect_continue(&l.handle(&req(SEC | NSG_OP, &text(&[("CHAP_A", "5,7")])), &mut ctx));
    assert_eq!(r2.get("CHAP_C"), Some("0x0102"));
    let resp = text(&[("CHAP_N", "user"), ("CHAP_R", "0xsecret")]);
    let s3 = l.handle(&req(T | SEC | NSG_OP, &resp), &mut ctx);
    expect_continue(&s3);
    assert_eq!(rsp_of(&s3).flags(), T | SEC | NSG_OP);
    let mut kv = full_op_set();
    kv.truncate(14);
    let (_, p) = expect_complete(&l.handle(&req(T | OP | NSG_FF, &text(&kv)), &mut ctx));
    assert_eq!(p.auth_method, "CHAP");
}

#[test]
fn authentication_failures() {
    let mk = || {
        let mut c = Ctx::new();
        c.chap_secret = Some("0xsecret");
        c
    };
    // Skipping the security stage when CHAP is required.
    let mut ctx = mk();
    expect_fail(
        &one_shot_ctx(&mut ctx, &[]),
        LoginStatus::AUTHENTICATION_FAILURE,
    );
    // Transit out of security without negotiating AuthMethod.
    let mut ctx = mk();
    let step = Login::new(TargetDefaults::default())
        .handle(&req(T | SEC | NSG_OP, &text(&normal_ids())), &mut ctx);
    expect_fail(&step, LoginStatus::AUTHENTICATION_FAILURE);
    // Only None offered.
    let mut ctx = mk();
    let mut kv = normal_ids();
    kv.push(("AuthMethod", "None"));
    let step =
        Login::new(TargetDefaults::default()).handle(&req(T | SEC | NSG_OP, &text(&kv)), &mut ctx);
    expect_fail(&step, LoginStatus::AUTHENTICATION_FAILURE);
    // Wrong response.
    let mut ctx = mk();
    let mut l = Login::new(TargetDefaults::default());
    let mut kv = normal_ids();
    kv.push(("AuthMethod", "CHAP"));
    expect_continue(&l.handle(&req(SEC | NSG_OP, &text(&kv)), &mut ctx));
    expect_continue(&l.handle(&req(SEC | NSG_OP, &text(&[("CHAP_A", "5")])), &mut ctx));
    let resp = text(&[("CHAP_N", "user"), ("CHAP_R", "0xwrong")]);
    expect_fail(
        &l.handle(&req(T | SEC | NSG_OP, &resp), &mut ctx),
        LoginStatus::AUTHENTICATION_FAILURE,
    );
    // Transit requested mid-exchange: the target answers T=0.
    let mut ctx = mk();
    let mut l = Login::new(TargetDefaults::default());
    expect_continue(&l.handle(&req(SEC | NSG_OP, &text(&kv)), &mut ctx));
    let s = l.handle(&req(T | SEC | NSG_OP, &text(&[("CHAP_A", "5")])), &mut ctx);
    expect_continue(&s);
    assert_eq!(rsp_of(&s).flags() & T, 0);
    assert_eq!(l.stage(), stage::SECURITY);
    // CHAP keys with AuthMethod=None agreed.
    let mut ctx = Ctx::new();
    let mut kv = normal_ids();
    kv.push(("AuthMethod", "None"));
    kv.push(("CHAP_A", "5"));
    let step =
        Login::new(TargetDefaults::default()).handle(&req(SEC | NSG_OP, &text(&kv)), &mut ctx);
    expect_fail(&step, LoginStatus::INITIATOR_ERROR);
}

#[test]
fn too_many_pdus() {
    let mut ctx = Ctx::new();
    let mut l = Login::new(TargetDefaults::default());
    let data = text(&discovery_ids());
    expect_continue(&l.handle(&req(SEC | NSG_OP, &data), &mut ctx));
    let mut last = None;
    for _ in 0..MAX_LOGIN_PDUS {
        let s = l.handle(&req(SEC | NSG_OP, &[]), &mut ctx);
        if matches!(s, LoginStep::Fail(_)) {
            last = Some(s);
            break;
        }
    }
    expect_fail(&last.expect("bounded"), LoginStatus::INITIATOR_ERROR);
}

/// Random PDUs never panic the login machine (a cheap stand-in for the cargo-fuzz target).
#[test]
fn random_input_never_panics() {
    let mut seed = 0x1234_5678_9abc_def0u64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let vocab: &[&[u8]] = &[
        b"InitiatorName=iqn.2026-01.org.example:initiator\0",
        b"TargetName=iqn.2026-01.org.example:disk1\0",
        b"SessionType=Discovery\0",
        b"AuthMethod=CHAP,None\0",
        b"CHAP_A=5\0",
        b"CHAP_N=user\0CHAP_R=0xsecret\0",
        b"MaxBurstLength=0x1000\0",
        b"FirstBurstLength=512\0",
        b"HeaderDigest=CRC32C\0",
        b"InitialR2T=Yes\0",
        b"X-a=b\0",
        b"=\0",
        b"\0\0",
        b"Bad",
    ];
    for round in 0..300 {
        let mut ctx = Ctx::new();
        if round % 3 == 0 {
            ctx.chap_secret = Some("0xsecret");
        }
        let mut l = Login::new(TargetDefaults::default());
        for _ in 0..8 {
            let flags = (rnd() & 0xff) as u8;
            let mut data = Vec::new();
            for _ in 0..(rnd() % 5) {
                data.extend_from_slice(vocab[(rnd() % vocab.len() as u64) as usize]);
            }
            let mut p = req(flags, &data);
            if rnd() % 8 == 0 {
                p.bhs[3] = (rnd() & 3) as u8;
            }
            match l.handle(&p, &mut ctx) {
                LoginStep::Continue(r) => assert_eq!(r.opcode(), op::LOGIN_RSP),
                LoginStep::Complete { response, .. } => {
                    assert_eq!(response.flags() & 0x83, 0x83);
                    break;
                }
                LoginStep::Fail(r) => {
                    assert_ne!(r.bhs[36], 0);
                    break;
                }
            }
        }
    }
}
