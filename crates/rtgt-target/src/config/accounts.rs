//! CHAP accounts in the configuration file: `[[account]]` (user and password), and which
//! of them a target (`incoming_user`, `outgoing_user` in its `[[target]]`) or discovery
//! sessions (`[discovery]`) authenticate with; the same requests as `--mode account`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Step, TargetConfig};
use crate::auth::DISCOVERY_TID;
use crate::control::Request;
use crate::Registry;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    pub user: String,
    /// The CHAP secret. A file with accounts holds secrets: keep it private (a dump is
    /// written mode 0600).
    pub password: String,
}

/// Accounts bound to discovery sessions (tid 0).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub incoming_user: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outgoing_user: Option<String>,
}

impl AuthConfig {
    pub fn is_empty(&self) -> bool {
        self.incoming_user.is_empty() && self.outgoing_user.is_none()
    }
}

fn account_request(op: &str) -> Request {
    Request {
        lld: "iscsi".into(),
        mode: "account".into(),
        op: op.into(),
        ..Request::default()
    }
}

pub(super) fn new_step(a: &AccountConfig) -> Step {
    let mut r = account_request("new");
    r.user = Some(a.user.clone());
    r.password = Some(a.password.clone());
    Step {
        what: format!("add account {}", a.user),
        request: r,
        disrupts: None,
    }
}

fn delete_step(user: &str) -> Step {
    let mut r = account_request("delete");
    r.user = Some(user.into());
    Step {
        what: format!("remove account {user}"),
        request: r,
        disrupts: None,
    }
}

pub(super) fn bind_step(op: &str, tid: u32, user: &str, outgoing: bool) -> Step {
    let mut r = account_request(op);
    r.tid = Some(tid);
    r.user = Some(user.into());
    r.outgoing = outgoing;
    let whom = if tid == DISCOVERY_TID {
        "discovery".to_string()
    } else {
        format!("tid {tid}")
    };
    Step {
        what: format!(
            "{op} account {user}{} {} {whom}",
            if outgoing { " (outgoing)" } else { "" },
            if op == "bind" { "to" } else { "from" }
        ),
        request: r,
        disrupts: None,
    }
}

/// Binding steps that make `have` into `want` for `tid` (incoming, then outgoing).
pub(super) fn binding_steps(
    tid: u32,
    have: (&[String], Option<&str>),
    want: (&[String], Option<&str>),
    steps: &mut Vec<Step>,
) {
    for u in have.0.iter().filter(|u| !want.0.contains(u)) {
        steps.push(bind_step("unbind", tid, u, false));
    }
    for u in want.0.iter().filter(|u| !have.0.contains(u)) {
        steps.push(bind_step("bind", tid, u, false));
    }
    if have.1 != want.1 {
        if let Some(u) = have.1 {
            steps.push(bind_step("unbind", tid, u, true));
        }
        if let Some(u) = want.1 {
            steps.push(bind_step("bind", tid, u, true));
        }
    }
}

/// The running accounts, with their secrets.
pub(super) fn running_accounts(reg: &Registry) -> Vec<AccountConfig> {
    let accounts = reg.accounts.read();
    accounts
        .names()
        .into_iter()
        .map(|user| AccountConfig {
            password: accounts.secret(&user).unwrap_or_default().to_string(),
            user,
        })
        .collect()
}

pub(super) fn running_discovery(reg: &Registry) -> AuthConfig {
    let d = reg.discovery_auth.read();
    AuthConfig {
        incoming_user: d.incoming.clone(),
        outgoing_user: d.outgoing.clone(),
    }
}

/// Steps for accounts and discovery bindings, as (before the targets' steps, after):
/// new accounts come first so targets can bind them; removed accounts go last, after
/// the targets have unbound them; an account whose password changes is created again
/// and bound again wherever the file binds it.
pub(super) fn plan(
    reg: &Registry,
    accounts: &[AccountConfig],
    discovery: &AuthConfig,
    desired_targets: &[impl std::borrow::Borrow<TargetConfig>],
) -> (Vec<Step>, Vec<Step>) {
    let have: BTreeMap<String, String> = running_accounts(reg)
        .into_iter()
        .map(|a| (a.user, a.password))
        .collect();
    let want: BTreeMap<&str, &AccountConfig> =
        accounts.iter().map(|a| (a.user.as_str(), a)).collect();
    let mut before = Vec::new();
    let mut after = Vec::new();
    for (user, a) in &want {
        if !have.contains_key(*user) {
            before.push(new_step(a));
        }
    }
    let hd = running_discovery(reg);
    let wd = discovery;
    binding_steps(
        DISCOVERY_TID,
        (&hd.incoming_user, hd.outgoing_user.as_deref()),
        (&wd.incoming_user, wd.outgoing_user.as_deref()),
        &mut after,
    );
    for (user, secret) in &have {
        match want.get(user.as_str()) {
            None => after.push(delete_step(user)),
            Some(a) if a.password != *secret => {
                after.push(Step {
                    what: format!("change the password of account {user}"),
                    ..delete_step(user)
                });
                after.push(Step {
                    what: format!("(account {user} with its new password)"),
                    ..new_step(a)
                });
                // Deleting it dropped its bindings: bind it again where the file does.
                let rebind = |tid: u32, inc: &[String], out: Option<&str>, v: &mut Vec<Step>| {
                    if inc.contains(user) {
                        v.push(bind_step("bind", tid, user, false));
                    }
                    if out == Some(user.as_str()) {
                        v.push(bind_step("bind", tid, user, true));
                    }
                };
                rebind(
                    DISCOVERY_TID,
                    &wd.incoming_user,
                    wd.outgoing_user.as_deref(),
                    &mut after,
                );
                for t in desired_targets {
                    let t = t.borrow();
                    rebind(
                        *t.tid.get_ref(),
                        &t.incoming_user,
                        t.outgoing_user.as_deref(),
                        &mut after,
                    );
                }
            }
            Some(_) => {}
        }
    }
    (before, after)
}
