//! Half-open pre-login connection floods (issue 21): with the bounds on connections
//! logging in reached by sockets that never log in, a real initiator still logs in and
//! reads within a second — an idle connection is closed to make room (guard.rs), from
//! the new connection's own address when that one is at its bound, else from the
//! address holding the largest share — and the daemon's memory stays bounded.

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::raw::{normal_keys, RawConn};
use common::scsi::{read10, GOOD};
use common::{Daemon, GIB};

const IQN: &str = "iqn.2026-11.org.rtgt:flood";
/// rtgtd's bounds (guard.rs): in total and per address.
const MAX_LOGINS: usize = 1024;
const PER_ADDRESS: usize = 64;

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Whether the target closed `s` (EOF or reset), without waiting.
fn closed(s: &TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut r = s;
    match r.read(&mut [0u8; 1]) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

/// A login and a READ from `from`, timed.
fn login_and_read(port: u16, from: &str) -> Duration {
    let t = Instant::now();
    let mut c = RawConn::connect_from(from, port);
    c.try_login(&normal_keys(IQN, &[]))
        .unwrap_or_else(|st| panic!("login from {from} refused: status {st:#06x}"));
    let (_, r) = c.exec_after_uas(1, &read10(0, 8), 4096, &[]);
    assert_eq!(r.status, GOOD);
    assert_eq!(r.data.len(), 4096);
    let took = t.elapsed();
    c.close();
    eprintln!("login + READ from {from}: {took:?}");
    took
}

#[test]
fn a_real_login_gets_through_a_full_flood_of_idle_connections() {
    let mut d = Daemon::start();
    d.add_disk(1, IQN, GIB, &[]);
    let port = d.port;
    // Warm up (the first login pays for lazy setup), then the daemon's footprint.
    login_and_read(port, "127.0.0.2");
    let rss_before = rss_kib(d.pid());

    // One address at its bound: a login from it closes its own idlest connection.
    let big = "127.0.1.1";
    let mut held: Vec<(String, TcpStream)> = Vec::new();
    for _ in 0..PER_ADDRESS {
        held.push((big.into(), RawConn::connect_from(big, port).stream));
        std::thread::sleep(Duration::from_millis(1));
    }
    // Idle long enough to count as idle (guard.rs LOGIN_IDLE, 500 ms).
    std::thread::sleep(Duration::from_millis(800));
    let took = login_and_read(port, big);
    assert!(took < Duration::from_secs(1), "login + READ took {took:?}");
    std::thread::sleep(Duration::from_millis(200));
    let gone: Vec<usize> = (0..held.len()).filter(|&i| closed(&held[i].1)).collect();
    assert_eq!(gone, vec![0], "that address's oldest connection");

    // Fill the total bound from other addresses, 56 each.
    let live = |h: &[(String, TcpStream)]| h.iter().filter(|e| !closed(&e.1)).count();
    let mut n = 2;
    let mut open = PER_ADDRESS - 1;
    while open < MAX_LOGINS {
        let from = format!("127.0.1.{n}");
        for _ in 0..56.min(MAX_LOGINS - open) {
            held.push((from.clone(), RawConn::connect_from(&from, port).stream));
            open += 1;
        }
        n += 1;
    }
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(live(&held), MAX_LOGINS, "all held, none refused");
    let rss_full = rss_kib(d.pid());

    // A quiet address: the largest share's (the first address's) idlest makes room.
    let took = login_and_read(port, "127.0.0.3");
    assert!(took < Duration::from_secs(1), "login + READ took {took:?}");
    std::thread::sleep(Duration::from_millis(200));
    let gone: Vec<usize> = (0..held.len()).filter(|&i| closed(&held[i].1)).collect();
    assert_eq!(gone, vec![0, 1], "the largest share's oldest connection");

    // A burst of new connections from one address: it takes idle ones' places up to
    // its own bound and is refused beyond it; the total never grows.
    let mut burst = Vec::new();
    for _ in 0..200 {
        burst.push((
            String::new(),
            RawConn::connect_from("127.0.2.1", port).stream,
        ));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        live(&burst),
        PER_ADDRESS,
        "the per-address bound still holds"
    );
    assert_eq!(
        live(&held) + PER_ADDRESS,
        MAX_LOGINS,
        "the total bound still holds"
    );
    let rss_after = rss_kib(d.pid());
    eprintln!(
        "RSS: {rss_before} KiB before, {rss_full} KiB with {MAX_LOGINS} idle connections, {rss_after} KiB after the burst"
    );
    assert!(
        rss_full < rss_before + 32 * 1024,
        "1024 idle connections cost {} KiB",
        rss_full - rss_before
    );
    drop(burst);
    drop(held);
    assert!(d.alive());
}
