//! Running state beyond targets, LUNs and ACLs that `rtgtadm` sets and a saved
//! configuration must bring back (issue 8: "a restart with the saved configuration
//! serves exactly what ran before"): system limits, per-target session limits, CHAP
//! algorithms and ALUA states (SPC-4 5.16), LUN masking and media changer
//! inventories (SMC-3 4.2). Each is read from the registry for a dump and becomes the
//! same control requests rtgtadm sends for a load or an apply.

use std::collections::BTreeMap;

use rtgt_scsi::AluaState;

use super::{lun_request, target_request, DaemonConfig, LunConfig, Step, TargetConfig};
use crate::auth::{algorithm_names, parse_algorithms};
use crate::control::Request;
use crate::Registry;

const ALL_ALGORITHMS: &str = "all";

/// The system settings that differ from their defaults.
pub(super) fn running_system(reg: &Registry, d: &mut DaemonConfig) {
    let n = reg.max_sessions();
    d.max_sessions = (n != 0).then_some(n);
    let n = reg.auth_fail_limit();
    d.auth_fail_limit = (n != crate::DEFAULT_AUTH_FAIL_LIMIT).then_some(n);
    let algs = reg.chap_algorithms();
    d.chap_algorithms =
        (algs != rtgt_iscsi::chap::ChapAlgorithm::ALL).then(|| algorithm_names(&algs));
}

fn system_step(name: &str, value: String) -> Step {
    Step {
        what: format!("set system {name}={value}"),
        request: Request {
            mode: "system".into(),
            op: "update".into(),
            name: Some(name.into()),
            value: Some(value),
            ..Request::default()
        },
        disrupts: None,
    }
}

fn canon_algs(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(|a| parse_algorithms(a).map_or_else(|_| a.to_string(), |x| algorithm_names(&x)))
}

/// Steps that make the system settings `current` into `desired` (absent = default).
pub(super) fn system_steps(current: &DaemonConfig, desired: &DaemonConfig) -> Vec<Step> {
    let mut v = Vec::new();
    let all = Some(algorithm_names(&rtgt_iscsi::chap::ChapAlgorithm::ALL));
    let (c, d) = (
        canon_algs(&current.chap_algorithms).or(all.clone()),
        canon_algs(&desired.chap_algorithms).or(all),
    );
    if c != d {
        v.push(system_step(
            "chap_algorithms",
            desired
                .chap_algorithms
                .clone()
                .unwrap_or_else(|| ALL_ALGORITHMS.into()),
        ));
    }
    if current.max_sessions.unwrap_or(0) != desired.max_sessions.unwrap_or(0) {
        v.push(system_step(
            "max_sessions",
            desired.max_sessions.unwrap_or(0).to_string(),
        ));
    }
    let dflt = crate::DEFAULT_AUTH_FAIL_LIMIT;
    if current.auth_fail_limit.unwrap_or(dflt) != desired.auth_fail_limit.unwrap_or(dflt) {
        v.push(system_step(
            "auth_fail_limit",
            desired.auth_fail_limit.unwrap_or(dflt).to_string(),
        ));
    }
    v
}

/// Fills in a running target's limits, CHAP algorithms and ALUA states, and each
/// LUN's masking and changer inventory.
pub(super) fn running_target(t: &crate::Target, tc: &mut TargetConfig) {
    let n = t.max_sessions();
    tc.max_sessions = (n != 0).then_some(n);
    tc.chap_algorithms = t.chap_algorithms().map(|a| algorithm_names(&a));
    tc.alua_state = t
        .scsi
        .alua_states()
        .into_iter()
        .filter(|(_, s)| *s != AluaState::ActiveOptimized)
        .map(|(g, s)| (g.to_string(), s.name().to_string()))
        .collect();
    tc.alua_peer = t
        .scsi
        .alua_peer_states()
        .into_iter()
        .map(|(g, s)| (g.to_string(), s.name().to_string()))
        .collect();
    for l in &mut tc.luns {
        let lun = *l.lun.get_ref();
        l.initiators = t.scsi.lun_initiators(lun);
        l.changer = t.scsi.changer_setup(lun).unwrap_or_default();
    }
}

fn target_step(tid: u32, name: &str, value: &str) -> Step {
    let mut r = target_request("update", tid);
    r.name = Some(name.into());
    r.value = Some(value.into());
    Step {
        what: format!("set tid {tid} {name}={value}"),
        request: r,
        disrupts: None,
    }
}

fn canon_states(m: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    m.iter()
        .map(|(g, s)| {
            let s = AluaState::parse(s).map_or_else(|| s.clone(), |x| x.name().to_string());
            (g.trim().to_string(), s)
        })
        .collect()
}

/// Steps that turn target `c` (None: just created) into `d` for what this module keeps.
pub(super) fn target_steps(tid: u32, c: Option<&TargetConfig>, d: &TargetConfig) -> Vec<Step> {
    let mut v = Vec::new();
    let have_max = c.and_then(|c| c.max_sessions).unwrap_or(0);
    if d.max_sessions.unwrap_or(0) != have_max {
        v.push(target_step(
            tid,
            "max_sessions",
            &d.max_sessions.unwrap_or(0).to_string(),
        ));
    }
    if canon_algs(&d.chap_algorithms) != c.and_then(|c| canon_algs(&c.chap_algorithms)) {
        let a = d.chap_algorithms.as_deref().unwrap_or("default");
        v.push(target_step(tid, "chap_algorithms", a));
    }
    let empty = BTreeMap::new();
    // ALUA: a group absent from the file is active/optimized; a peer absent is none.
    let (want, have) = (
        canon_states(&d.alua_state),
        canon_states(c.map_or(&empty, |c| &c.alua_state)),
    );
    for (g, s) in &want {
        if have.get(g) != Some(s) {
            v.push(target_step(tid, &format!("alua_state.{g}"), s));
        }
    }
    for g in have.keys().filter(|g| !want.contains_key(*g)) {
        v.push(target_step(tid, &format!("alua_state.{g}"), "active"));
    }
    let (want, have) = (
        canon_states(&d.alua_peer),
        canon_states(c.map_or(&empty, |c| &c.alua_peer)),
    );
    for (g, s) in &want {
        if have.get(g) != Some(s) {
            v.push(target_step(tid, &format!("alua_peer.{g}"), s));
        }
    }
    for g in have.keys().filter(|g| !want.contains_key(*g)) {
        v.push(target_step(tid, &format!("alua_peer.{g}"), "none"));
    }
    v
}

fn mask_step(op: &str, tid: u32, lun: u64, name: &str) -> Step {
    let mut r = lun_request(op, tid, lun);
    r.initiator_name = Some(name.into());
    Step {
        what: format!("{op} tid {tid} lun {lun} to {name}"),
        request: r,
        disrupts: None,
    }
}

/// LUN masking steps from `have` to `want`.
pub(super) fn mask_steps(tid: u32, lun: u64, have: &[String], want: &[String]) -> Vec<Step> {
    let has = |v: &[String], n: &str| v.iter().any(|x| x.eq_ignore_ascii_case(n));
    let mut v: Vec<Step> = have
        .iter()
        .filter(|n| !has(want, n))
        .map(|n| mask_step("unbind", tid, lun, n))
        .collect();
    v.extend(
        want.iter()
            .filter(|n| !has(have, n))
            .map(|n| mask_step("bind", tid, lun, n)),
    );
    v
}

const CHANGER: &str = "configure changer";

/// The steps that build a new changer LU's inventory. They run after every LU is
/// created (see [`changers_last`]): a drive may be a LUN after the changer's, or on
/// another target.
pub(super) fn changer_steps(tid: u32, l: &LunConfig) -> Vec<Step> {
    let lun = *l.lun.get_ref();
    l.changer
        .iter()
        .map(|line| {
            let mut r = lun_request("update", tid, lun);
            r.params = Some(line.clone());
            Step {
                what: format!("{CHANGER} tid {tid} lun {lun}: {line}"),
                request: r,
                disrupts: None,
            }
        })
        .collect()
}

/// Moves changer steps to the end, keeping their order (a stable partition).
pub(super) fn changers_last<T>(v: Vec<T>, step: impl Fn(&T) -> &Step) -> Vec<T> {
    let (late, mut early): (Vec<T>, Vec<T>) = v
        .into_iter()
        .partition(|s| step(s).what.starts_with(CHANGER));
    early.extend(late);
    early
}
