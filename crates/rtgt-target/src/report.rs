//! Machine-readable views of the running daemon (`rtgtadm targets|luns|sessions|
//! connections|stats [--json]`, `rtgtadm session close`), and the same counters as
//! Prometheus / OpenMetrics text for `rtgtd --metrics`.
//!
//! Requests are `--mode report` with `--op` naming the view; the answer's message is
//! JSON. Counters are read from atomics (see `rtgt_scsi::stats`): reading them takes no
//! lock the I/O path takes.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use rtgt_scsi::stats::{bucket_bound_us, IoCounters, IoSnapshot};
use serde::Serialize;

use crate::control::{Request, Response};
use crate::error::errno;
use crate::{Registry, Target};

/// What the transport tells the registry about a session beyond [`crate::SessionInfo`].
#[derive(Clone, Default)]
pub struct SessionDetails {
    /// The session's command counters, updated by its connections.
    pub stats: Arc<IoCounters>,
    /// Negotiated keys (RFC 7143 §13 names) per connection id.
    pub keys: HashMap<u16, Vec<(String, String)>>,
}

#[derive(Serialize)]
struct TargetView {
    tid: u32,
    name: String,
    state: &'static str,
    sessions: usize,
    luns: usize,
    initiator_address: Vec<String>,
    initiator_name: Vec<String>,
    incoming_user: Vec<String>,
    outgoing_user: Option<String>,
}

#[derive(Serialize)]
struct LunView {
    tid: u32,
    target: String,
    lun: u64,
    device_type: String,
    size_bytes: u64,
    block_size: u32,
    backing_store_type: String,
    backing_store: String,
    scsi_id: String,
    scsi_sn: String,
    readonly: bool,
    write_cache: bool,
    stats: IoSnapshot,
    #[serde(skip)]
    store_metrics: Vec<rtgt_backstore::StoreMetric>,
}

#[derive(Serialize)]
struct ConnectionView {
    tid: u32,
    target: String,
    sid: u64,
    cid: u16,
    initiator_name: String,
    initiator_address: String,
    target_address: String,
    keys: serde_json::Map<String, serde_json::Value>,
}

#[derive(Serialize)]
struct SessionView {
    tid: u32,
    target: String,
    sid: u64,
    /// The transport it came in through (`--lld` name).
    transport: &'static str,
    initiator_name: String,
    initiator_alias: Option<String>,
    isid: String,
    tsih: u16,
    connections: Vec<ConnectionView>,
    stats: IoSnapshot,
}

impl Target {
    /// Records what the transport knows of session `sid` (counters, negotiated keys).
    pub fn set_session_details(&self, sid: u64, details: SessionDetails) {
        self.details.write().insert(sid, details);
    }

    /// Adds the negotiated keys of connection `cid` of session `sid`.
    pub fn set_connection_keys(&self, sid: u64, cid: u16, keys: Vec<(String, String)>) {
        if let Some(d) = self.details.write().get_mut(&sid) {
            d.keys.insert(cid, keys);
        }
    }

    pub fn session_details(&self, sid: u64) -> Option<SessionDetails> {
        self.details.read().get(&sid).cloned()
    }
}

fn targets(reg: &Registry, tid: Option<u32>) -> Vec<Arc<Target>> {
    reg.targets()
        .into_iter()
        .filter(|t| tid.is_none_or(|x| x == t.tid))
        .collect()
}

fn target_views(reg: &Registry, tid: Option<u32>) -> Vec<TargetView> {
    targets(reg, tid)
        .iter()
        .map(|t| {
            let acl = t.acl();
            let auth = t.auth();
            TargetView {
                tid: t.tid,
                name: t.name.clone(),
                state: t.state().name(),
                sessions: t.session_count(),
                luns: t.scsi.lu_info().len().saturating_sub(1),
                initiator_address: acl.addresses.iter().map(|a| a.to_string()).collect(),
                initiator_name: acl.names.clone(),
                incoming_user: auth.incoming,
                outgoing_user: auth.outgoing,
            }
        })
        .collect()
}

fn lun_views(reg: &Registry, tid: Option<u32>) -> Vec<LunView> {
    let mut v = Vec::new();
    for t in targets(reg, tid) {
        let stats: HashMap<u64, IoSnapshot> = t.scsi.lu_stats().into_iter().collect();
        for l in t.scsi.lu_info() {
            v.push(LunView {
                tid: t.tid,
                target: t.name.clone(),
                lun: l.lun,
                device_type: l.device_type,
                size_bytes: l.size_bytes,
                block_size: l.block_size,
                backing_store_type: l.backing_store_type,
                backing_store: l.backing_store_path,
                scsi_id: l.scsi_id,
                scsi_sn: l.scsi_sn,
                readonly: l.readonly,
                write_cache: l.write_cache,
                stats: stats.get(&l.lun).cloned().unwrap_or_default(),
                store_metrics: l.store_metrics,
            });
        }
    }
    v
}

fn session_views(reg: &Registry, tid: Option<u32>) -> Vec<SessionView> {
    let mut v = Vec::new();
    for t in targets(reg, tid) {
        for s in t.sessions() {
            let details = t.session_details(s.sid).unwrap_or_default();
            let connections = s
                .connections
                .iter()
                .map(|c| ConnectionView {
                    tid: t.tid,
                    target: t.name.clone(),
                    sid: s.sid,
                    cid: c.cid,
                    initiator_name: s.initiator_name.clone(),
                    initiator_address: c.peer.to_string(),
                    target_address: c.local.to_string(),
                    keys: details
                        .keys
                        .get(&c.cid)
                        .map(|k| {
                            k.iter()
                                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                                .collect()
                        })
                        .unwrap_or_default(),
                })
                .collect();
            v.push(SessionView {
                tid: t.tid,
                target: t.name.clone(),
                sid: s.sid,
                transport: s.transport,
                initiator_name: s.initiator_name.clone(),
                initiator_alias: s.initiator_alias.clone(),
                isid: s.isid.iter().map(|b| format!("{b:02x}")).collect(),
                tsih: s.tsih,
                connections,
                stats: details.stats.snapshot(),
            });
        }
    }
    v
}

fn json<T: Serialize>(v: &T) -> Response {
    match serde_json::to_string(v) {
        Ok(s) => Response::ok(s),
        Err(e) => Response::error(errno::EIO, format!("internal error: {e}")),
    }
}

/// `--mode report`: `--op targets|luns|sessions|connections|stats` (optionally `--tid`),
/// and `--op close --sid N` to force a session closed.
pub fn handle(reg: &Registry, req: &Request) -> Response {
    let tid = req.tid;
    match req.op.as_str() {
        "targets" => json(&target_views(reg, tid)),
        "luns" => json(&lun_views(reg, tid)),
        "sessions" => json(&session_views(reg, tid)),
        "connections" => json(
            &session_views(reg, tid)
                .into_iter()
                .flat_map(|s| s.connections)
                .collect::<Vec<_>>(),
        ),
        "stats" => {
            #[derive(Serialize)]
            struct Stats {
                latency_bucket_bounds_us: Vec<Option<u64>>,
                luns: Vec<serde_json::Value>,
                sessions: Vec<serde_json::Value>,
            }
            let bounds = (0..rtgt_scsi::stats::LATENCY_BUCKETS)
                .map(bucket_bound_us)
                .collect();
            let luns = lun_views(reg, tid)
                .into_iter()
                .map(|l| {
                    serde_json::json!({"tid": l.tid, "target": l.target, "lun": l.lun,
                        "stats": l.stats})
                })
                .collect();
            let sessions = session_views(reg, tid)
                .into_iter()
                .map(|s| {
                    serde_json::json!({"tid": s.tid, "target": s.target, "sid": s.sid,
                        "transport": s.transport, "initiator_name": s.initiator_name,
                        "stats": s.stats})
                })
                .collect();
            json(&Stats {
                latency_bucket_bounds_us: bounds,
                luns,
                sessions,
            })
        }
        "close" => {
            let Some(sid) = req.sid else {
                return Response::error(errno::EINVAL, "--sid is required to close a session");
            };
            for t in targets(reg, tid) {
                if let Some(s) = t.sessions().into_iter().find(|s| s.sid == sid) {
                    tracing::info!(sid, target = %t.name, initiator = %s.initiator_name,
                        "closing session (rtgtadm)");
                    (s.close)();
                    return Response::ok("");
                }
            }
            Response::error(errno::ENOENT, format!("can't find session {sid}"))
        }
        op => Response::error(
            errno::EINVAL,
            format!(
                "unknown report '{op}' (use targets, luns, sessions, connections, stats or close)"
            ),
        ),
    }
}

// ---- OpenMetrics ----------------------------------------------------------------------

/// Escapes a label value (OpenMetrics: backslash, double quote, newline).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Samples by metric family, families in the order they were first met.
#[derive(Default)]
struct Families {
    order: Vec<(String, &'static str, String)>,
    samples: HashMap<String, Vec<String>>,
}

impl Families {
    fn declare(&mut self, name: &str, kind: &'static str, help: &str) {
        if !self.samples.contains_key(name) {
            self.order.push((name.into(), kind, help.into()));
            self.samples.insert(name.into(), Vec::new());
        }
    }

    fn sample(&mut self, family: &str, line: String) {
        self.samples.entry(family.into()).or_default().push(line);
    }

    /// OpenMetrics text: each family's TYPE and HELP, then its samples together.
    fn write(self, out: &mut String) {
        for (name, kind, help) in &self.order {
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "# HELP {name} {help}");
            for l in &self.samples[name] {
                out.push_str(l);
                out.push('\n');
            }
        }
    }
}

fn counters(f: &mut Families, prefix: &str, what: &str, labels: &str, s: &IoSnapshot) {
    for (name, help, v) in [
        ("commands", "SCSI commands completed", s.commands),
        (
            "errors",
            "SCSI commands that ended with a status other than GOOD",
            s.errors,
        ),
        ("read_bytes", "Data-In bytes sent", s.read_bytes),
        ("write_bytes", "Data-Out bytes received", s.write_bytes),
    ] {
        let fam = format!("{prefix}_{name}");
        f.declare(&fam, "counter", &format!("{help}, per {what}."));
        f.sample(&fam, format!("{fam}_total{{{labels}}} {v}"));
    }
    let fam = format!("{prefix}_latency_seconds");
    f.declare(
        &fam,
        "histogram",
        &format!("SCSI command latency, per {what}."),
    );
    // Buckets are cumulative, bounds in seconds.
    let mut cum = 0;
    for (i, n) in s.latency_buckets.iter().enumerate() {
        cum += n;
        let le = match bucket_bound_us(i) {
            Some(us) => format!("{}", us as f64 / 1e6),
            None => "+Inf".into(),
        };
        f.sample(&fam, format!("{fam}_bucket{{{labels},le=\"{le}\"}} {cum}"));
    }
    f.sample(
        &fam,
        format!("{fam}_sum{{{labels}}} {}", s.latency_us_sum as f64 / 1e6),
    );
    f.sample(&fam, format!("{fam}_count{{{labels}}} {cum}"));
}

/// The counters in the OpenMetrics text format (which Prometheus reads too).
pub fn metrics_text(reg: &Registry) -> String {
    let mut f = Families::default();
    f.declare("rtgt_targets", "gauge", "Targets configured.");
    f.sample(
        "rtgt_targets",
        format!("rtgt_targets {}", reg.targets().len()),
    );
    f.declare("rtgt_sessions", "gauge", "Sessions logged in, per target.");
    for t in reg.targets() {
        f.sample(
            "rtgt_sessions",
            format!(
                "rtgt_sessions{{tid=\"{}\",target=\"{}\"}} {}",
                t.tid,
                label(&t.name),
                t.session_count()
            ),
        );
    }
    f.declare(
        "rtgt_transport_sessions",
        "gauge",
        "Sessions logged in, per transport.",
    );
    let sessions = session_views(reg, None);
    for l in reg.llds() {
        let n = sessions.iter().filter(|s| s.transport == l.name).count();
        f.sample(
            "rtgt_transport_sessions",
            format!(
                "rtgt_transport_sessions{{transport=\"{}\"}} {n}",
                label(&l.name)
            ),
        );
    }
    for l in lun_views(reg, None) {
        let labels = format!(
            "tid=\"{}\",target=\"{}\",lun=\"{}\"",
            l.tid,
            label(&l.target),
            l.lun
        );
        counters(&mut f, "rtgt_lun", "LU", &labels, &l.stats);
        for m in &l.store_metrics {
            let fam = format!("rtgt_lun_{}", m.name);
            f.declare(&fam, if m.counter { "counter" } else { "gauge" }, m.help);
            let suffix = if m.counter { "_total" } else { "" };
            f.sample(&fam, format!("{fam}{suffix}{{{labels}}} {}", m.value));
        }
    }
    for s in sessions {
        let labels = format!(
            "tid=\"{}\",target=\"{}\",sid=\"{}\",transport=\"{}\",initiator=\"{}\"",
            s.tid,
            label(&s.target),
            s.sid,
            s.transport,
            label(&s.initiator_name)
        );
        counters(&mut f, "rtgt_session", "session", &labels, &s.stats);
    }
    let mut out = String::new();
    f.write(&mut out);
    out.push_str("# EOF\n");
    out
}
