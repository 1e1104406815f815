//! Login and text key negotiation: the input is a sequence of requests separated by the
//! bytes FF FE. In each, byte 0 is the Login Request's flags (T, C, CSG, NSG) and byte 1
//! picks the TSIH, opcode and whether CHAP is required; the rest is the data segment
//! (text keys). After the login completes, further requests go to the Text Request
//! handler (SendTargets and other text negotiation).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtgt_iscsi::chap::{ChapAlgorithm, ChapAuthenticator, ChapConfig, Credential};
use rtgt_iscsi::login::{Authenticator, Login, LoginContext, LoginStatus, LoginStep, TargetLogin};
use rtgt_iscsi::params::{SessionParams, SessionType, TargetDefaults};
use rtgt_iscsi::pdu::Pdu;
use rtgt_iscsi::text::{DiscoveredTarget, TextExchange};

struct Ctx {
    chap: bool,
    mutual: bool,
}

impl LoginContext for Ctx {
    fn target(&mut self, target_name: &str, _i: &str) -> Result<TargetLogin, LoginStatus> {
        if target_name.ends_with(":missing") {
            return Err(LoginStatus::NOT_FOUND);
        }
        Ok(TargetLogin {
            overrides: vec![("MaxRecvDataSegmentLength".into(), "65536".into())],
            portal_group_tag: 1,
        })
    }
    fn new_tsih(&mut self) -> u16 {
        7
    }
    fn portal_group_tag(&self) -> u16 {
        1
    }
    fn session_exists(&mut self, _isid: [u8; 6], tsih: u16) -> bool {
        tsih == 7
    }
    fn authenticator(
        &mut self,
        _t: SessionType,
        _target: Option<&str>,
        _initiator: &str,
    ) -> Option<Box<dyn Authenticator>> {
        if !self.chap {
            return None;
        }
        let mut n = 0u8;
        let cfg = ChapConfig {
            algorithms: ChapAlgorithm::ALL.to_vec(),
            incoming: vec![Credential {
                user: "alice".into(),
                secret: b"0123456789ab".to_vec(),
            }],
            outgoing: self.mutual.then(|| Credential {
                user: "target".into(),
                secret: b"target-secret-99".to_vec(),
            }),
        };
        // Deterministic challenges, so a corpus entry can carry a right answer.
        Some(Box::new(ChapAuthenticator::with_random(
            cfg,
            Box::new(move |b: &mut [u8]| {
                for x in b {
                    n = n.wrapping_add(1);
                    *x = n;
                }
            }),
        )))
    }
}

fn split(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + 1 < data.len() {
        if data[i] == 0xff && data[i + 1] == 0xfe {
            out.push(&data[start..i]);
            i += 2;
            start = i;
        } else {
            i += 1;
        }
    }
    out.push(&data[start..]);
    out
}

fn request(opcode: u8, flags: u8, misc: u8, itt: u32, cmd_sn: u32, data: &[u8]) -> Pdu {
    let mut p = Pdu::new(opcode);
    p.bhs[0] |= 0x40;
    p.set_flags(flags);
    p.bhs[8..14].copy_from_slice(&[0x80, 1, 2, 3, 4, 5]);
    if misc & 1 != 0 {
        p.set_u16(14, 7); // TSIH of an existing session
    }
    p.set_itt(itt);
    p.set_u32(24, cmd_sn);
    p.data = data.to_vec();
    p.fix_lengths();
    p
}

fuzz_target!(|data: &[u8]| {
    let parts = split(data);
    let Some(first) = parts.first() else { return };
    let mode = first.first().copied().unwrap_or(0);
    let mut ctx = Ctx {
        chap: mode & 1 != 0,
        mutual: mode & 2 != 0,
    };
    let mut login = Login::new(TargetDefaults::default());
    let mut params: Option<SessionParams> = None;
    let mut text = TextExchange::default();
    let targets = vec![DiscoveredTarget {
        name: "iqn.2026-01.org.example:disk1".into(),
        addresses: vec![("127.0.0.1:3260".parse().unwrap(), 1)],
    }];
    for (n, part) in parts.iter().skip(1).take(80).enumerate() {
        let (flags, misc, body) = match part {
            [f, m, rest @ ..] => (*f, *m, rest),
            _ => (0x87, 0, &[][..]),
        };
        match &params {
            None => {
                let opcode = if misc & 2 != 0 { 0x04 } else { 0x03 };
                let req = request(opcode, flags, misc, n as u32, 1, body);
                match login.handle(&req, &mut ctx) {
                    LoginStep::Continue(rsp) => {
                        let _ = rsp.encode(false, false);
                    }
                    LoginStep::Complete {
                        response,
                        params: p,
                    } => {
                        let _ = response.encode(false, false);
                        params = Some(p);
                    }
                    LoginStep::Fail(rsp) => {
                        let _ = rsp.encode(false, false);
                        assert!(login.is_finished());
                        return;
                    }
                }
            }
            Some(p) => {
                let req = request(0x04, flags, misc, n as u32, 2, body);
                if let Ok(rsp) = text.handle(&req, p, &targets) {
                    let _ = rsp.encode(false, false);
                }
            }
        }
    }
});
