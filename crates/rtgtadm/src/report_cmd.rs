//! The modern subcommands beside tgtadm's syntax: `rtgtadm targets|luns|sessions|
//! connections|stats [--tid N] [--json]` and `rtgtadm session close SID`. rtgtd answers
//! in JSON (`--mode report`); `--json` prints it as is (one document, for scripts),
//! otherwise a table.

use std::path::PathBuf;

use rtgt_target::control::Request;

use crate::config_cmd::DaemonOpts;
use serde_json::Value;

pub const WORDS: &[&str] = &[
    "targets",
    "luns",
    "sessions",
    "connections",
    "stats",
    "session",
];

pub const USAGE: &str = "\
rtgtadm [-C N | --control-socket PATH] targets|luns|sessions|connections|stats
        [--tid N] [--json]
    What runs: targets, LUNs (with their counters), sessions (initiator name and
    address, counters), connections (negotiated keys), or every counter (commands,
    errors, bytes read and written, latency histogram). --json prints rtgtd's JSON.
rtgtadm [-C N | --control-socket PATH] session close SID
    Force session SID (from `rtgtadm sessions`) closed.
";

struct Args {
    socket: PathBuf,
    words: Vec<String>,
    tid: Option<u32>,
    json: bool,
}

fn parse(argv: &[String]) -> Result<Args, String> {
    let mut daemon = DaemonOpts::default();
    let mut words = Vec::new();
    let (mut tid, mut json) = (None, false);
    let mut it = argv.iter();
    while let Some(a) = it.next() {
        if daemon.take(a, &mut it)? {
            continue;
        }
        match a.as_str() {
            "-t" | "--tid" => {
                let v = it.next().ok_or("--tid needs a value")?;
                tid = Some(v.parse().map_err(|_| format!("bad tid '{v}'"))?);
            }
            "--json" | "-j" => json = true,
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            s => words.push(s.to_string()),
        }
    }
    Ok(Args {
        socket: daemon.socket(),
        words,
        tid,
        json,
    })
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        Value::Array(a) => a.iter().map(s).collect::<Vec<_>>().join(","),
        v => v.to_string(),
    }
}

/// Columns of `rows` by JSON path (`a.b`), aligned.
fn table(rows: &[Value], cols: &[(&str, &str)]) -> String {
    let get = |r: &Value, path: &str| {
        let mut v = r;
        for k in path.split('.') {
            v = &v[k];
        }
        s(v)
    };
    let mut cells: Vec<Vec<String>> = vec![cols.iter().map(|c| c.0.to_string()).collect()];
    for r in rows {
        cells.push(cols.iter().map(|c| get(r, c.1)).collect());
    }
    let widths: Vec<usize> = (0..cols.len())
        .map(|i| cells.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in cells {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn render(view: &str, v: &Value) -> String {
    let rows = v.as_array().cloned().unwrap_or_default();
    let io = [
        ("COMMANDS", "stats.commands"),
        ("ERRORS", "stats.errors"),
        ("READ_BYTES", "stats.read_bytes"),
        ("WRITE_BYTES", "stats.write_bytes"),
    ];
    match view {
        "targets" => table(
            &rows,
            &[
                ("TID", "tid"),
                ("NAME", "name"),
                ("STATE", "state"),
                ("LUNS", "luns"),
                ("SESSIONS", "sessions"),
                ("ADDRESSES", "initiator_address"),
                ("NAMES", "initiator_name"),
                ("CHAP", "incoming_user"),
            ],
        ),
        "luns" => {
            let mut cols = vec![
                ("TID", "tid"),
                ("LUN", "lun"),
                ("TYPE", "device_type"),
                ("SIZE", "size_bytes"),
                ("BLOCK", "block_size"),
                ("STORE", "backing_store_type"),
                ("PATH", "backing_store"),
                ("SERIAL", "scsi_sn"),
            ];
            cols.extend(io);
            table(&rows, &cols)
        }
        "sessions" => {
            let rows: Vec<Value> = rows
                .into_iter()
                .map(|mut r| {
                    let addrs: Vec<Value> = r["connections"]
                        .as_array()
                        .map(|c| c.iter().map(|c| c["initiator_address"].clone()).collect())
                        .unwrap_or_default();
                    r["addresses"] = Value::Array(addrs);
                    r
                })
                .collect();
            let mut cols = vec![
                ("SID", "sid"),
                ("TID", "tid"),
                ("TRANSPORT", "transport"),
                ("INITIATOR", "initiator_name"),
                ("ADDRESS", "addresses"),
            ];
            cols.extend(io);
            table(&rows, &cols)
        }
        "connections" => {
            let mut out = String::new();
            for r in &rows {
                out.push_str(&format!(
                    "session {} connection {}: {} ({}) -> {} ({})\n",
                    s(&r["sid"]),
                    s(&r["cid"]),
                    s(&r["initiator_name"]),
                    s(&r["initiator_address"]),
                    s(&r["target"]),
                    s(&r["target_address"])
                ));
                if let Some(keys) = r["keys"].as_object() {
                    for (k, v) in keys {
                        out.push_str(&format!("    {k}={}\n", s(v)));
                    }
                }
            }
            out
        }
        "stats" => {
            let bounds: Vec<String> = v["latency_bucket_bounds_us"]
                .as_array()
                .map(|b| b.iter().map(s).collect())
                .unwrap_or_default();
            let mut out = String::new();
            let mut one = |what: String, st: &Value| {
                out.push_str(&format!(
                    "{what}: commands {}, errors {}, read {} bytes, written {} bytes\n",
                    s(&st["commands"]),
                    s(&st["errors"]),
                    s(&st["read_bytes"]),
                    s(&st["write_bytes"])
                ));
                let buckets = st["latency_buckets"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                let hist: Vec<String> = buckets
                    .iter()
                    .zip(&bounds)
                    .filter(|(n, _)| n.as_u64().unwrap_or(0) > 0)
                    .map(|(n, b)| {
                        let b = if b == "-" {
                            "more".into()
                        } else {
                            format!("<={b}us")
                        };
                        format!("{b}:{}", s(n))
                    })
                    .collect();
                if !hist.is_empty() {
                    out.push_str(&format!("    latency {}\n", hist.join(" ")));
                }
            };
            for l in v["luns"].as_array().into_iter().flatten() {
                one(
                    format!(
                        "tid {} lun {} ({})",
                        s(&l["tid"]),
                        s(&l["lun"]),
                        s(&l["target"])
                    ),
                    &l["stats"],
                );
            }
            for se in v["sessions"].as_array().into_iter().flatten() {
                one(
                    format!(
                        "session {} tid {} ({})",
                        s(&se["sid"]),
                        s(&se["tid"]),
                        s(&se["initiator_name"])
                    ),
                    &se["stats"],
                );
            }
            out
        }
        _ => format!("{v}\n"),
    }
}

pub fn run(argv: &[String]) -> i32 {
    let args = match parse(argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("rtgtadm: {e}");
            eprint!("{USAGE}");
            return 22;
        }
    };
    let view = args.words[0].as_str();
    let mut req = Request {
        mode: "report".into(),
        op: view.into(),
        tid: args.tid,
        ..Request::default()
    };
    if view == "session" {
        match (args.words.get(1).map(String::as_str), args.words.get(2)) {
            (Some("close"), Some(sid)) if args.words.len() == 3 => match sid.parse() {
                Ok(sid) => {
                    req.op = "close".into();
                    req.sid = Some(sid);
                }
                Err(_) => {
                    eprintln!("rtgtadm: bad session id '{sid}'");
                    return 22;
                }
            },
            _ => {
                eprint!("rtgtadm: use `session close SID`\n{USAGE}");
                return 22;
            }
        }
    } else if args.words.len() > 1 {
        eprintln!("rtgtadm: {view}: unexpected argument {}", args.words[1]);
        return 22;
    }
    let resp = match crate::config_cmd::exchange(&args.socket, &req) {
        Ok(r) => r,
        Err((code, msg)) => {
            eprintln!("rtgtadm: {msg}");
            return code;
        }
    };
    if resp.code != 0 {
        eprintln!("rtgtadm: {}", resp.message.trim_end());
        return if (1..=255).contains(&resp.code) {
            resp.code
        } else {
            1
        };
    }
    if req.op == "close" {
        return 0;
    }
    if args.json {
        println!("{}", resp.message);
        return 0;
    }
    match serde_json::from_str::<Value>(&resp.message) {
        Ok(v) => print!("{}", render(view, &v)),
        Err(e) => {
            eprintln!("rtgtadm: malformed answer from rtgtd ({e})");
            return 5;
        }
    }
    0
}
