//! CHAP accounts (`--mode account`), their bindings to targets and to discovery, and the
//! security settings that go with them (allowed CHAP algorithms, session limits,
//! failed-login rate limiting).
//!
//! An account is a user name and a secret. Bound `incoming` to a target, it is one the
//! initiator may authenticate as, and binding any makes CHAP required for that target;
//! bound `--outgoing` (one per target) it is what the target answers with when the
//! initiator asks for mutual CHAP. Tid 0 stands for discovery sessions, which have no
//! target: accounts bound there make SendTargets sessions authenticate too.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use rtgt_iscsi::chap::{ChapAlgorithm, ChapConfig, Credential, MIN_RECOMMENDED_SECRET_LEN};

use crate::error::AdmError;

/// Tid that `--mode account --op bind` uses for discovery sessions.
pub const DISCOVERY_TID: u32 = 0;

/// Longest user name or secret accepted (RFC 7143 §12.1.3 CHAP_N is a text value; RFC
/// 1994 puts no bound on the secret, we keep them printable and modest).
const MAX_ACCOUNT_FIELD: usize = 255;

/// Which accounts a target (or discovery) authenticates with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthBinding {
    pub incoming: Vec<String>,
    pub outgoing: Option<String>,
}

impl AuthBinding {
    pub fn is_empty(&self) -> bool {
        self.incoming.is_empty() && self.outgoing.is_none()
    }

    /// `Account information:` lines as tgtadm shows them.
    pub fn show(&self, out: &mut String) {
        for u in &self.incoming {
            let _ = writeln!(out, "        {u}");
        }
        if let Some(u) = &self.outgoing {
            let _ = writeln!(out, "        {u} (outgoing)");
        }
    }

    pub fn bind(&mut self, user: &str, outgoing: bool) -> Result<(), AdmError> {
        if outgoing {
            match &self.outgoing {
                Some(u) if u == user => Err(AdmError::Exists(format!(
                    "{user} is already the outgoing account"
                ))),
                Some(u) => Err(AdmError::Exists(format!(
                    "only one outgoing account per target: {u} is bound; unbind it first"
                ))),
                None => {
                    self.outgoing = Some(user.to_string());
                    Ok(())
                }
            }
        } else if self.incoming.iter().any(|u| u == user) {
            Err(AdmError::Exists(format!("{user} is already bound")))
        } else {
            self.incoming.push(user.to_string());
            Ok(())
        }
    }

    pub fn unbind(&mut self, user: &str, outgoing: bool) -> Result<(), AdmError> {
        if outgoing {
            if self.outgoing.as_deref() == Some(user) {
                self.outgoing = None;
                return Ok(());
            }
        } else if let Some(i) = self.incoming.iter().position(|u| u == user) {
            self.incoming.remove(i);
            return Ok(());
        }
        Err(AdmError::NotFound(format!(
            "{user} is not bound{}",
            if outgoing {
                " as the outgoing account"
            } else {
                ""
            }
        )))
    }

    pub fn forget(&mut self, user: &str) {
        self.incoming.retain(|u| u != user);
        if self.outgoing.as_deref() == Some(user) {
            self.outgoing = None;
        }
    }

    /// The CHAP configuration for a login, or `None` when no incoming account is bound
    /// (then no authentication is required).
    pub fn chap_config(
        &self,
        accounts: &Accounts,
        algorithms: &[ChapAlgorithm],
    ) -> Option<ChapConfig> {
        if self.incoming.is_empty() {
            return None;
        }
        let cred = |u: &String| {
            accounts.users.get(u).map(|s| Credential {
                user: u.clone(),
                secret: s.as_bytes().to_vec(),
            })
        };
        Some(ChapConfig {
            algorithms: algorithms.to_vec(),
            // An account deleted while bound is forgotten by its bindings too; a
            // binding without credentials would still require CHAP and admit nobody.
            incoming: self.incoming.iter().filter_map(cred).collect(),
            outgoing: self.outgoing.as_ref().and_then(cred),
        })
    }
}

/// The accounts (`--mode account --op new|delete|show`).
#[derive(Default)]
pub struct Accounts {
    users: BTreeMap<String, String>,
}

impl std::fmt::Debug for Accounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets.
        f.debug_list().entries(self.users.keys()).finish()
    }
}

impl Accounts {
    /// Adds an account. `Ok(Some(warning))` when the secret is short.
    pub fn add(&mut self, user: &str, secret: &str) -> Result<Option<String>, AdmError> {
        check_field("user name", user)?;
        check_field("password", secret)?;
        if user.contains(',') {
            return Err(AdmError::invalid(format!(
                "invalid user name '{user}': it must not contain commas"
            )));
        }
        if self.users.contains_key(user) {
            return Err(AdmError::Exists(format!("account {user} already exists")));
        }
        self.users.insert(user.to_string(), secret.to_string());
        Ok((secret.len() < MIN_RECOMMENDED_SECRET_LEN).then(|| {
            format!(
                "warning: the password of account {user} is {} bytes; CHAP secrets shorter \
                 than {MIN_RECOMMENDED_SECRET_LEN} bytes are easy to guess offline from one \
                 captured login, and Microsoft's initiator refuses them",
                secret.len()
            )
        }))
    }

    pub fn remove(&mut self, user: &str) -> Result<(), AdmError> {
        self.users
            .remove(user)
            .map(|_| ())
            .ok_or_else(|| AdmError::NotFound(format!("can't find the account {user}")))
    }

    pub fn exists(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }

    pub fn secret(&self, user: &str) -> Option<&str> {
        self.users.get(user).map(String::as_str)
    }

    pub fn names(&self) -> Vec<String> {
        self.users.keys().cloned().collect()
    }
}

fn check_field(what: &str, v: &str) -> Result<(), AdmError> {
    if v.is_empty() {
        return Err(AdmError::invalid(format!("the {what} must not be empty")));
    }
    if v.len() > MAX_ACCOUNT_FIELD {
        return Err(AdmError::invalid(format!(
            "the {what} is longer than {MAX_ACCOUNT_FIELD} bytes"
        )));
    }
    // Text values (RFC 7143 §6.1) can't carry NUL; keep them to printable characters.
    if v.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(AdmError::invalid(format!(
            "the {what} must not contain spaces or control characters"
        )));
    }
    Ok(())
}

/// Parses the value of `chap_algorithms` (`MD5,SHA1,SHA256,SHA3-256` in any order and
/// subset; `default` or `all` = all four).
pub fn parse_algorithms(value: &str) -> Result<Vec<ChapAlgorithm>, AdmError> {
    if value.eq_ignore_ascii_case("default") || value.eq_ignore_ascii_case("all") {
        return Ok(ChapAlgorithm::ALL.to_vec());
    }
    rtgt_iscsi::chap::parse_algorithm_list(value).map_err(AdmError::Invalid)
}

pub fn algorithm_names(algs: &[ChapAlgorithm]) -> String {
    algs.iter().map(|a| a.name()).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_and_bindings() {
        let mut a = Accounts::default();
        assert!(a.add("alice", "0123456789abcdef").unwrap().is_none());
        assert!(a.add("bob", "short").unwrap().unwrap().contains("warning"));
        assert!(a.add("alice", "x").is_err());
        assert!(a.add("a b", "0123456789abcdef").is_err());
        assert!(a.add("carol", "").is_err());
        let mut b = AuthBinding::default();
        assert!(b.chap_config(&a, &ChapAlgorithm::ALL).is_none());
        b.bind("alice", false).unwrap();
        assert!(b.bind("alice", false).is_err());
        b.bind("bob", true).unwrap();
        assert!(b.bind("alice", true).is_err(), "one outgoing account");
        let c = b.chap_config(&a, &[ChapAlgorithm::Sha256]).unwrap();
        assert_eq!(c.incoming.len(), 1);
        assert_eq!(c.outgoing.as_ref().unwrap().user, "bob");
        assert_eq!(c.algorithms, vec![ChapAlgorithm::Sha256]);
        let mut s = String::new();
        b.show(&mut s);
        assert_eq!(s, "        alice\n        bob (outgoing)\n");
        b.unbind("bob", true).unwrap();
        assert!(b.unbind("bob", true).is_err());
        b.forget("alice");
        assert!(b.is_empty());
        assert!(
            !format!("{a:?}").contains("0123"),
            "Debug never shows secrets"
        );
    }

    #[test]
    fn algorithms() {
        assert_eq!(parse_algorithms("default").unwrap().len(), 4);
        assert_eq!(
            algorithm_names(&parse_algorithms("sha3-256,sha256").unwrap()),
            "SHA3-256,SHA256"
        );
        assert!(parse_algorithms("md4").is_err());
    }
}
