//! CHAP for the SecurityNegotiation stage (RFC 7143 §12.1.3, RFC 1994), target side, as an
//! [`Authenticator`].
//!
//! The exchange, one Login Request/Response per line:
//!
//! ```text
//! I->T  AuthMethod=CHAP[,...]          T->I  AuthMethod=CHAP
//! I->T  CHAP_A=<A1,A2,...>             T->I  CHAP_A=<A>  CHAP_I=<I>  CHAP_C=<C>
//! I->T  CHAP_N=<N>  CHAP_R=<R>         (one-way: done)
//!       [CHAP_I=<I2>  CHAP_C=<C2>]     T->I  CHAP_N=<N2>  CHAP_R=<R2>  (mutual)
//! ```
//!
//! R = H(I || secret || C) with H chosen by CHAP_A: 5 MD5, 6 SHA-1, 7 SHA-256,
//! 8 SHA3-256 (the IANA "PPP Authentication Algorithms" registry RFC 7143 §12.1.3 points to).
//! Challenges come from the OS random source; responses are compared in constant time.

use std::fmt;

use subtle::ConstantTimeEq;

use crate::keys::{encode_hex, parse_binary, TextPairs};
use crate::login::{AuthStep, Authenticator, LoginStatus};

/// A CHAP hash algorithm (CHAP_A value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChapAlgorithm {
    Md5,
    Sha1,
    Sha256,
    Sha3_256,
}

impl ChapAlgorithm {
    pub const ALL: [ChapAlgorithm; 4] = [Self::Md5, Self::Sha1, Self::Sha256, Self::Sha3_256];

    /// The CHAP_A number.
    pub fn code(self) -> u8 {
        match self {
            Self::Md5 => 5,
            Self::Sha1 => 6,
            Self::Sha256 => 7,
            Self::Sha3_256 => 8,
        }
    }

    pub fn from_code(c: u32) -> Option<Self> {
        Some(match c {
            5 => Self::Md5,
            6 => Self::Sha1,
            7 => Self::Sha256,
            8 => Self::Sha3_256,
            _ => return None,
        })
    }

    /// Parses an administrator's name for an algorithm: `MD5`, `SHA1`/`SHA-1`,
    /// `SHA256`/`SHA-256`, `SHA3-256`/`SHA3_256`, or the CHAP_A number.
    pub fn parse(s: &str) -> Option<Self> {
        let n: String = s
            .trim()
            .chars()
            .filter(|c| *c != '-' && *c != '_')
            .collect::<String>()
            .to_ascii_uppercase();
        Some(match n.as_str() {
            "MD5" | "5" => Self::Md5,
            "SHA1" | "6" => Self::Sha1,
            "SHA256" | "7" => Self::Sha256,
            "SHA3256" | "8" => Self::Sha3_256,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Md5 => "MD5",
            Self::Sha1 => "SHA1",
            Self::Sha256 => "SHA256",
            Self::Sha3_256 => "SHA3-256",
        }
    }

    /// Length of the digest, which is also the length of a valid CHAP_R.
    pub fn digest_len(self) -> usize {
        match self {
            Self::Md5 => 16,
            Self::Sha1 => 20,
            Self::Sha256 | Self::Sha3_256 => 32,
        }
    }

    /// The challenge length we send: the digest length (RFC 1994 §2.3 lets it vary; as
    /// long as the hash output keeps brute force of the challenge space out of reach).
    pub fn challenge_len(self) -> usize {
        self.digest_len()
    }

    /// H(id || secret || challenge) (RFC 1994 §4.1).
    pub fn response(self, id: u8, secret: &[u8], challenge: &[u8]) -> Vec<u8> {
        use digest::Digest;
        fn h<D: Digest>(id: u8, secret: &[u8], challenge: &[u8]) -> Vec<u8> {
            let mut d = D::new();
            d.update([id]);
            d.update(secret);
            d.update(challenge);
            d.finalize().to_vec()
        }
        match self {
            Self::Md5 => h::<md5::Md5>(id, secret, challenge),
            Self::Sha1 => h::<sha1::Sha1>(id, secret, challenge),
            Self::Sha256 => h::<sha2::Sha256>(id, secret, challenge),
            Self::Sha3_256 => h::<sha3::Sha3_256>(id, secret, challenge),
        }
    }
}

impl fmt::Display for ChapAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Parses a comma-separated list of algorithm names (administrator syntax).
pub fn parse_algorithm_list(s: &str) -> Result<Vec<ChapAlgorithm>, String> {
    let mut v = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let a = ChapAlgorithm::parse(item).ok_or_else(|| {
            format!("unknown CHAP algorithm '{item}' (use MD5, SHA1, SHA256 or SHA3-256)")
        })?;
        if !v.contains(&a) {
            v.push(a);
        }
    }
    if v.is_empty() {
        return Err("the CHAP algorithm list is empty".into());
    }
    Ok(v)
}

/// Secrets shorter than this are weak, and Windows' initiator refuses them.
pub const MIN_RECOMMENDED_SECRET_LEN: usize = 12;

/// A CHAP name and secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub user: String,
    pub secret: Vec<u8>,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print secrets.
        f.debug_struct("Credential")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// What a CHAP login checks against.
#[derive(Debug, Clone)]
pub struct ChapConfig {
    /// Algorithms the target accepts. The initiator's CHAP_A list is walked in its own
    /// order and the first one found here is chosen.
    pub algorithms: Vec<ChapAlgorithm>,
    /// Accounts an initiator may authenticate as (incoming).
    pub incoming: Vec<Credential>,
    /// The target's own account for mutual CHAP (outgoing); `None` refuses mutual CHAP.
    pub outgoing: Option<Credential>,
}

/// Why a CHAP exchange failed, in words for the log (never containing secrets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChapFailure(pub String);

#[derive(Debug)]
enum State {
    /// Waiting for CHAP_A.
    Start,
    /// Challenge sent; waiting for CHAP_N / CHAP_R.
    Challenged {
        alg: ChapAlgorithm,
        id: u8,
        challenge: Vec<u8>,
    },
    Done,
    Failed,
}

/// A source of random bytes for challenges.
pub type RandomSource = Box<dyn FnMut(&mut [u8]) + Send>;

/// Target-side CHAP (one login).
pub struct ChapAuthenticator {
    cfg: ChapConfig,
    state: State,
    random: RandomSource,
    /// The name the initiator authenticated as (after success).
    user: Option<String>,
    failure: Option<String>,
    mutual: bool,
}

impl fmt::Debug for ChapAuthenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChapAuthenticator")
            .field("state", &self.state)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// Fills `buf` from the OS random source (getrandom(2)). A failure of the OS source is
/// fatal rather than silently weak.
pub fn os_random(buf: &mut [u8]) {
    getrandom::getrandom(buf).expect("the OS random source failed");
}

/// Parses CHAP_I: decimal, or hex as `0x..` (RFC 7143 §12.1.3 allows either form of a
/// number), 0..=255.
pub fn parse_chap_i(v: &str) -> Option<u8> {
    let n = if let Some(h) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        if h.is_empty() || h.len() > 8 {
            return None;
        }
        u32::from_str_radix(h, 16).ok()?
    } else {
        if v.is_empty() || v.len() > 10 || !v.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        v.parse::<u32>().ok()?
    };
    u8::try_from(n).ok()
}

impl ChapAuthenticator {
    pub fn new(cfg: ChapConfig) -> Self {
        Self::with_random(cfg, Box::new(os_random))
    }

    /// With a chosen random source (tests and fuzzing use a deterministic one).
    pub fn with_random(cfg: ChapConfig, random: RandomSource) -> Self {
        Self {
            cfg,
            state: State::Start,
            random,
            user: None,
            failure: None,
            mutual: false,
        }
    }

    /// The CHAP_N the initiator authenticated as, once it has.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// Why the exchange failed, for the log.
    pub fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    fn fail(&mut self, why: impl Into<String>) -> LoginStatus {
        let why = why.into();
        tracing::debug!(reason = %why, "CHAP failed");
        self.failure = Some(why);
        self.state = State::Failed;
        LoginStatus::AUTHENTICATION_FAILURE
    }

    fn on_algorithms(
        &mut self,
        request: &TextPairs,
        reply: &mut TextPairs,
    ) -> Result<(), LoginStatus> {
        let Some(list) = request.get("CHAP_A") else {
            return Err(self.fail("CHAP_A missing"));
        };
        if request.iter().any(|(k, _)| k != "CHAP_A") {
            return Err(self.fail("unexpected keys with CHAP_A"));
        }
        // RFC 7143 §12.1.3: a list; the target picks the first it supports.
        let alg = list
            .split(',')
            .filter_map(|a| a.trim().parse::<u32>().ok())
            .filter_map(ChapAlgorithm::from_code)
            .find(|a| self.cfg.algorithms.contains(a));
        let Some(alg) = alg else {
            let allowed: Vec<&str> = self.cfg.algorithms.iter().map(|a| a.name()).collect();
            return Err(self.fail(format!(
                "CHAP_A={list}: no algorithm the target allows (allowed: {})",
                allowed.join(",")
            )));
        };
        let mut idb = [0u8; 1];
        (self.random)(&mut idb);
        let mut challenge = vec![0u8; alg.challenge_len()];
        (self.random)(&mut challenge);
        reply.push("CHAP_A", alg.code().to_string());
        reply.push("CHAP_I", idb[0].to_string());
        reply.push("CHAP_C", encode_hex(&challenge));
        self.state = State::Challenged {
            alg,
            id: idb[0],
            challenge,
        };
        Ok(())
    }

    fn on_response(
        &mut self,
        alg: ChapAlgorithm,
        id: u8,
        challenge: &[u8],
        request: &TextPairs,
        reply: &mut TextPairs,
    ) -> Result<(), LoginStatus> {
        for (k, _) in request.iter() {
            if !matches!(k, "CHAP_N" | "CHAP_R" | "CHAP_I" | "CHAP_C") {
                return Err(self.fail(format!("unexpected key {k} with the CHAP response")));
            }
        }
        let (Some(name), Some(r)) = (request.get("CHAP_N"), request.get("CHAP_R")) else {
            return Err(self.fail("CHAP_N or CHAP_R missing"));
        };
        let Some(r) = parse_binary(r) else {
            return Err(self.fail("CHAP_R is not a hex or base64 constant"));
        };
        // Look the user up and compute the expected response whether or not it exists,
        // and compare in constant time, so timing says nothing about names or secrets.
        let cred = self.cfg.incoming.iter().find(|c| c.user == name);
        let secret: &[u8] = cred.map(|c| &c.secret[..]).unwrap_or(b"\0no such user\0");
        let expected = alg.response(id, secret, challenge);
        let same: bool = (r.len() == expected.len()) && bool::from(expected.ct_eq(&r));
        if cred.is_none() {
            return Err(self.fail(format!("unknown CHAP user {name:?}")));
        }
        if !same {
            return Err(self.fail(format!("wrong CHAP response for user {name:?}")));
        }
        // Mutual CHAP: the initiator challenges us.
        match (request.get("CHAP_I"), request.get("CHAP_C")) {
            (None, None) => {}
            (Some(i2), Some(c2)) => {
                let Some(out) = self.cfg.outgoing.clone() else {
                    return Err(self.fail(
                        "the initiator asked for mutual CHAP but the target has no outgoing account",
                    ));
                };
                let Some(i2) = parse_chap_i(i2) else {
                    return Err(self.fail(format!("invalid CHAP_I {i2:?}")));
                };
                let Some(c2) = parse_binary(c2) else {
                    return Err(self.fail("the initiator's CHAP_C is not a hex or base64 constant"));
                };
                if c2.is_empty() || c2.len() > 1024 {
                    return Err(self.fail("the initiator's CHAP_C has a bad length"));
                }
                // RFC 7143 §12.1.3: a challenge equal to ours is a reflection attack.
                if bool::from(c2.ct_eq(challenge)) {
                    return Err(self.fail("the initiator's CHAP_C repeats the target's challenge"));
                }
                // Answering with the secret the initiator just proved would let anyone
                // who knows one direction's secret pass for the other.
                if let Some(c) = cred {
                    if bool::from(c.secret.ct_eq(&out.secret)) {
                        return Err(self.fail(
                            "incoming and outgoing CHAP secrets are the same; refusing mutual CHAP",
                        ));
                    }
                }
                reply.push("CHAP_N", out.user.clone());
                reply.push("CHAP_R", encode_hex(&alg.response(i2, &out.secret, &c2)));
                self.mutual = true;
            }
            _ => return Err(self.fail("CHAP_I and CHAP_C must come together")),
        }
        self.user = Some(name.to_string());
        self.state = State::Done;
        Ok(())
    }

    /// Whether the initiator asked for (and got) mutual authentication.
    pub fn mutual(&self) -> bool {
        self.mutual
    }
}

impl Authenticator for ChapAuthenticator {
    fn methods(&self) -> &[&'static str] {
        &["CHAP"]
    }

    fn step(
        &mut self,
        method: &str,
        request: &TextPairs,
        reply: &mut TextPairs,
    ) -> Result<AuthStep, LoginStatus> {
        if method != "CHAP" {
            return Err(self.fail(format!("method {method} is not CHAP")));
        }
        match std::mem::replace(&mut self.state, State::Failed) {
            State::Start => {
                if request.is_empty() {
                    // AuthMethod=CHAP alone: wait for CHAP_A in the next request.
                    self.state = State::Start;
                    return Ok(AuthStep::Continue);
                }
                self.on_algorithms(request, reply)?;
                Ok(AuthStep::Continue)
            }
            State::Challenged { alg, id, challenge } => {
                if request.is_empty() {
                    // An empty request (e.g. acknowledging a continued response) changes
                    // nothing.
                    self.state = State::Challenged { alg, id, challenge };
                    return Ok(AuthStep::Continue);
                }
                self.on_response(alg, id, &challenge, request, reply)?;
                Ok(AuthStep::Done)
            }
            State::Done => {
                self.state = State::Done;
                if request.is_empty() {
                    Ok(AuthStep::Done)
                } else {
                    Err(self.fail("CHAP keys after the exchange ended"))
                }
            }
            State::Failed => Err(self.fail("CHAP exchange already failed")),
        }
    }

    fn failure(&self) -> Option<String> {
        self.failure.clone()
    }

    fn peer_user(&self) -> Option<String> {
        self.user.clone()
    }
}

#[cfg(test)]
mod tests;
