//! Counters and the modern subcommands: `rtgtadm targets|luns|sessions|connections|stats
//! [--json]`, `rtgtadm session close`, and `rtgtd --metrics` scraped over HTTP.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::raw::{RawConn, Recv, INITIATOR};
use common::scsi::{read10, write10, CHECK_CONDITION, GOOD};
use common::{free_port, Daemon, GIB};
use serde_json::Value;

const IQN: &str = "iqn.2026-11.org.example:stats";

fn json(d: &Daemon, view: &str) -> Value {
    let out = d.adm_ok(&[view, "--json"]);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{view}: {e}: {out}"))
}

fn scrape(port: u16, path: &str) -> (String, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut r = String::new();
    s.read_to_string(&mut r).unwrap();
    let (head, body) = r.split_once("\r\n\r\n").unwrap();
    (head.to_string(), body.to_string())
}

/// The value of one sample line `name{labels} value`.
fn sample(body: &str, name_and_labels: &str) -> u64 {
    body.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {name_and_labels} in\n{body}"))
}

#[test]
fn counters_are_shown_as_json_tables_and_metrics() {
    let mport = free_port();
    let metrics = format!("127.0.0.1:{mport}");
    let d = Daemon::start_args(&["--metrics", &metrics]);
    d.add_disk(1, IQN, GIB, &[]);
    let mut c = RawConn::session(d.port, IQN);
    // Four 4 KiB writes and two 8 KiB reads, plus one command that fails.
    let data = vec![0x5a; 4096];
    for lba in 0..4 {
        assert_eq!(c.exec(1, &write10(lba * 8, 8), 0, &data).status, GOOD);
    }
    for _ in 0..2 {
        let r = c.exec(1, &read10(0, 16), 8192, &[]);
        assert_eq!(r.status, GOOD);
        assert_eq!(&r.data[..4096], &data[..]);
    }
    // LBA beyond the end: CHECK CONDITION, an error.
    let r = c.exec(1, &read10(u32::MAX - 1, 1), 512, &[]);
    assert_eq!(r.status, CHECK_CONDITION);

    // Targets.
    let t = json(&d, "targets");
    assert_eq!(t[0]["name"], IQN);
    assert_eq!(t[0]["sessions"], 1);
    assert_eq!(t[0]["luns"], 1);
    // LUN 1's counters.
    let luns = json(&d, "luns");
    let l1 = luns
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["lun"] == 1)
        .unwrap();
    let st = &l1["stats"];
    assert_eq!(st["write_bytes"], 4 * 4096);
    assert_eq!(st["read_bytes"], 2 * 8192);
    assert_eq!(st["errors"], 1);
    // Possibly a TEST UNIT READY or REPORT LUNS of the login: at least our seven.
    let commands = st["commands"].as_u64().unwrap();
    assert!(commands >= 7, "{st}");
    let hist: u64 = st["latency_buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(hist, commands, "every command is in one latency bucket");
    // The session: initiator name and address, counters, negotiated keys.
    let s = json(&d, "sessions");
    let s0 = &s[0];
    assert_eq!(s0["initiator_name"], INITIATOR);
    assert_eq!(s0["transport"], "iscsi", "{s0}");
    assert_eq!(s0["stats"]["write_bytes"], 4 * 4096);
    assert!(s0["stats"]["commands"].as_u64().unwrap() >= 7);
    let conn = &s0["connections"][0];
    assert!(
        conn["initiator_address"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:"),
        "{conn}"
    );
    let conns = json(&d, "connections");
    let keys = &conns[0]["keys"];
    assert_eq!(keys["HeaderDigest"], "None", "{keys}");
    assert!(keys["MaxRecvDataSegmentLength"]
        .as_str()
        .unwrap()
        .parse::<u32>()
        .is_ok());
    // The tables say the same.
    let table = d.adm_ok(&["sessions"]);
    assert!(
        table.contains(INITIATOR) && table.contains("16384"),
        "{table}"
    );
    assert!(
        table.lines().next().unwrap().contains("TRANSPORT"),
        "{table}"
    );
    let show = d.adm_ok(&["--op", "show", "--mode", "target"]);
    assert!(show.contains("            Transport: iscsi\n"), "{show}");
    let stats = d.adm_ok(&["stats"]);
    assert!(
        stats.contains("read 16384 bytes, written 16384 bytes"),
        "{stats}"
    );

    // Metrics: the same numbers over HTTP.
    let (head, body) = scrape(mport, "/metrics");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("application/openmetrics-text"), "{head}");
    let labels = format!("{{tid=\"1\",target=\"{IQN}\",lun=\"1\"}}");
    assert_eq!(
        sample(&body, &format!("rtgt_lun_write_bytes_total{labels}")),
        16384
    );
    assert_eq!(
        sample(&body, &format!("rtgt_lun_read_bytes_total{labels}")),
        16384
    );
    assert_eq!(sample(&body, &format!("rtgt_lun_errors_total{labels}")), 1);
    assert_eq!(
        sample(&body, &format!("rtgt_lun_commands_total{labels}")),
        commands
    );
    let inf = format!(
        "rtgt_lun_latency_seconds_bucket{{tid=\"1\",target=\"{IQN}\",lun=\"1\",le=\"+Inf\"}}"
    );
    assert_eq!(sample(&body, &inf), commands);
    assert!(body.contains("# TYPE rtgt_lun_latency_seconds histogram"));
    assert!(body.ends_with("# EOF\n"));
    assert_eq!(
        sample(
            &body,
            &format!("rtgt_sessions{{tid=\"1\",target=\"{IQN}\"}}")
        ),
        1
    );
    assert_eq!(
        sample(&body, "rtgt_transport_sessions{transport=\"iscsi\"}"),
        1
    );
    let sid = s0["sid"].as_u64().unwrap();
    let session_labels = format!(
        "{{tid=\"1\",target=\"{IQN}\",sid=\"{sid}\",transport=\"iscsi\",initiator=\"{INITIATOR}\"}}"
    );
    assert_eq!(
        sample(
            &body,
            &format!("rtgt_session_write_bytes_total{session_labels}")
        ),
        16384
    );
    let (head, _) = scrape(mport, "/nothing");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");

    // Forcing the session closed ends the initiator's connection.
    let sid = s0["sid"].as_u64().unwrap().to_string();
    d.adm_ok(&["session", "close", &sid]);
    let mut closed = false;
    for _ in 0..50 {
        match c.recv_raw(Duration::from_millis(100)) {
            Recv::Closed => {
                closed = true;
                break;
            }
            _ => continue,
        }
    }
    assert!(closed, "the connection must be closed");
    assert_eq!(json(&d, "sessions").as_array().unwrap().len(), 0);
    let o = d.adm(&["session", "close", &sid]);
    assert!(!o.status.success(), "an unknown session is an error");
    // tgtadm's syntax still reaches `--mode session` (not taken for the subcommand).
    let o = d.adm(&["--op", "show", "--mode", "session"]);
    assert!(!common::text(&o.stderr).contains("unknown report"), "{o:?}");
}
