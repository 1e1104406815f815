//! The daemon keeps serving an unrelated session, with its data intact, while other
//! clients misbehave: malformed PDUs of every kind, hundreds of silent connections, a
//! login drip-fed a byte at a time. Every loop here is bounded in count and time.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::raw::{keys_data, login_flags, normal_keys, RawConn};
use common::scsi::{read10, write10};
use common::{prng_bytes, Daemon, GIB};
use rtgt_iscsi::pdu::{op, Pdu};

const IQN: &str = "iqn.2026-11.org.rtgt:abuse";

/// Writes a fresh pattern to a few blocks and reads it back, `rounds` times or until
/// `stop`; returns how many rounds verified.
fn witness_io(w: &mut RawConn, rounds: u32, stop: &AtomicBool) -> u32 {
    let mut done = 0;
    for i in 0..rounds {
        if stop.load(Ordering::Relaxed) && i > 0 {
            break;
        }
        let lba = 1000 + i * 8;
        let data = prng_bytes(u64::from(i) + 7, 8 * 512);
        let r = w.exec(1, &write10(lba, 8), 0, &data);
        assert_eq!(r.status, 0, "witness WRITE failed in round {i}: {r:?}");
        let r = w.exec(1, &read10(lba, 8), 8 * 512, &[]);
        assert_eq!(r.status, 0, "witness READ failed in round {i}");
        assert!(r.data == data, "witness data corrupted in round {i}");
        done += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    done
}

fn setup(extra: &[&str]) -> (Daemon, RawConn) {
    let d = Daemon::start_args(extra);
    d.add_disk(1, IQN, GIB, &[]);
    let mut w = RawConn::session(d.port, IQN);
    w.assert_works();
    (d, w)
}

/// Sends `bytes` on a new connection and waits (bounded) until the target closes it or
/// goes quiet; the answer doesn't matter, only that nothing else is hurt.
fn throw(port: u16, bytes: &[u8]) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let _ = s.write_all(bytes);
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

fn bhs(opcode: u8, flags: u8, ahs_words: u8, data_len: u32) -> Vec<u8> {
    let mut b = vec![0u8; 48];
    b[0] = opcode;
    b[1] = flags;
    b[4] = ahs_words;
    b[5..8].copy_from_slice(&data_len.to_be_bytes()[1..]);
    b
}

/// Malformed PDUs sent in a session that logged in properly.
fn in_session(port: u16, build: impl Fn(&mut RawConn) -> Vec<u8>) {
    let mut c = RawConn::session(port, IQN);
    let bytes = build(&mut c);
    let _ = c.stream.write_all(&bytes);
    c.stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        match c.stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

#[test]
fn malformed_pdus_do_not_disturb_another_session() {
    let (mut d, mut w) = setup(&[]);
    let stop = Arc::new(AtomicBool::new(false));
    let port = d.port;
    let s2 = stop.clone();
    let abuser = std::thread::spawn(move || {
        // Before login.
        throw(port, &prng_bytes(1, 48));
        throw(port, &prng_bytes(2, 5000));
        throw(port, &bhs(0x43, 0x87, 0, 16 << 20)); // a 16 MiB login data segment
        throw(port, &bhs(0x43, 0x87, 255, 0)); // 1020 bytes of AHS, never sent
        throw(
            port,
            &[
                bhs(0x43, 0x87, 1, 8),
                vec![0xff; 4],
                b"x=y\0\0\0\0\0".to_vec(),
            ]
            .concat(),
        );
        throw(port, &bhs(0x01, 0x81, 0, 0)); // a SCSI command before login
        for seed in 0..20u64 {
            // Random BHS fields behind a Login Request opcode.
            let mut b = prng_bytes(100 + seed, 48);
            b[0] = 0x43;
            b[4] = 0;
            b[5] = 0;
            throw(port, &b);
        }
        // After login: a data segment beyond MaxRecvDataSegmentLength, AHS that doesn't
        // add up, Data-Out for an unknown transfer tag and beyond the expected length,
        // unknown opcodes, an absurd expected length, garbage.
        in_session(port, |_| bhs(0x01, 0x81, 0, 16 << 20));
        in_session(port, |_| {
            let mut b = bhs(0x01, 0xc1, 2, 0);
            b[32] = 0x00; // TEST UNIT READY
            b.extend_from_slice(&[0, 200, 1, 0, 0, 0, 0, 0]); // AHS claims 200 bytes
            b
        });
        in_session(port, |_| {
            let mut p = Pdu::new(op::DATA_OUT);
            p.set_flags(0x80);
            p.set_itt(0x4242);
            p.set_ttt(0x1234);
            p.data = vec![0; 512];
            p.encode(false, false)
        });
        in_session(port, |c| {
            // WRITE of 1 block, then Data-Out reaching past it.
            let mut p = Pdu::new(op::SCSI_CMD);
            p.set_flags(0xa1);
            p.set_lun_raw([0, 1, 0, 0, 0, 0, 0, 0]);
            let itt = c.next_itt();
            p.set_itt(itt);
            p.set_u32(20, 512);
            p.set_u32(24, c.cmd_sn);
            p.bhs[32..42].copy_from_slice(&write10(0, 1));
            let mut out = p.encode(false, false);
            let mut dout = Pdu::new(op::DATA_OUT);
            dout.set_flags(0x80);
            dout.set_itt(itt);
            dout.set_ttt(0xffff_ffff);
            dout.set_u32(40, 256);
            dout.data = vec![0xee; 1024];
            out.extend(dout.encode(false, false));
            out
        });
        in_session(port, |_| bhs(0x1f, 0x80, 0, 0));
        in_session(port, |c| {
            let mut p = Pdu::new(op::SCSI_CMD);
            p.set_flags(0xa1);
            p.set_lun_raw([0, 1, 0, 0, 0, 0, 0, 0]);
            p.set_itt(c.next_itt());
            p.set_u32(20, 0xffff_0000); // 4 GiB expected
            p.set_u32(24, c.cmd_sn);
            p.bhs[32..42].copy_from_slice(&write10(0, 0xffff));
            p.encode(false, false)
        });
        in_session(port, |_| prng_bytes(9, 10_000));
        s2.store(true, Ordering::Relaxed);
    });
    let rounds = witness_io(&mut w, 10_000, &stop);
    abuser.join().expect("abuser thread");
    assert!(rounds >= 5, "witness made only {rounds} rounds");
    w.assert_works();
    assert!(d.alive(), "rtgtd died:\n{}", d.log());
    let mut fresh = RawConn::session(d.port, IQN);
    fresh.assert_works();
}

#[test]
fn hundreds_of_silent_connections_do_not_disturb_another_session() {
    let (mut d, mut w) = setup(&[]);
    let stop = AtomicBool::new(false);
    // 300 silent connections spread over five addresses (60 each, under the per-address
    // cap of 64): all are held, and the witness keeps working meanwhile.
    let mut silent = Vec::new();
    for i in 0..300u32 {
        let from = format!("127.0.0.{}", 3 + i % 5);
        silent.push(RawConn::connect_from(&from, d.port).stream);
    }
    assert!(witness_io(&mut w, 20, &stop) == 20);
    // Beyond the per-address cap the target closes new connections at once...
    let mut extra = Vec::new();
    for _ in 0..80 {
        extra.push(RawConn::connect_from("127.0.0.9", d.port).stream);
    }
    std::thread::sleep(Duration::from_secs(1));
    let mut closed = 0;
    for s in &mut extra {
        s.set_nonblocking(true).unwrap();
        if matches!(s.read(&mut [0u8; 1]), Ok(0)) {
            closed += 1;
        }
    }
    assert_eq!(
        closed,
        80 - 64,
        "connections beyond the per-address cap are closed"
    );
    // ...while another address still logs in at once.
    let t = Instant::now();
    let mut c = RawConn::connect_from("127.0.0.2", d.port);
    c.try_login(&normal_keys(IQN, &[]))
        .expect("login from a quiet address");
    c.assert_works();
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(witness_io(&mut w, 20, &stop) == 20);
    drop(silent);
    drop(extra);
    assert!(d.alive());
    assert!(d.log().contains("too many connections logging in"));
}

#[test]
fn silent_and_drip_fed_logins_time_out() {
    let (mut d, mut w) = setup(&["--iscsi", "login_timeout=3"]);
    let stop = Arc::new(AtomicBool::new(false));
    let port = d.port;
    // A login sent one byte every 100 ms: it never completes within the timeout, and the
    // target drops it though bytes keep coming.
    let dripper = std::thread::spawn(move || {
        let mut c = RawConn::connect(port);
        let p = c.login_pdu(login_flags(true, 1, 3), keys_data(&normal_keys(IQN, &[])));
        let wire = p.encode(false, false);
        let t = Instant::now();
        for b in wire.iter().take(200) {
            if c.stream.write_all(&[*b]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        c.stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buf = [0u8; 64];
        let r = c.stream.read(&mut buf);
        assert!(
            matches!(r, Ok(0) | Err(_)),
            "the drip-fed login got an answer instead of being dropped: {r:?}"
        );
        t.elapsed()
    });
    let silent = std::thread::spawn(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let t = Instant::now();
        let r = s.read(&mut [0u8; 1]);
        assert!(matches!(r, Ok(0) | Err(_)));
        t.elapsed()
    });
    let s2 = stop.clone();
    let watcher = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(6));
        s2.store(true, Ordering::Relaxed);
    });
    let rounds = witness_io(&mut w, 10_000, &stop);
    let drip = dripper.join().expect("dripper");
    let quiet = silent.join().expect("silent");
    watcher.join().unwrap();
    assert!(rounds >= 10, "witness made only {rounds} rounds");
    assert!(
        quiet >= Duration::from_secs(2) && quiet < Duration::from_secs(8),
        "{quiet:?}"
    );
    assert!(drip < Duration::from_secs(30), "{drip:?}");
    assert!(d.log().contains("login timed out"));
    w.assert_works();
    assert!(d.alive());
}

/// The answers RFC 7143 prescribes: Reject "invalid PDU field" (09h, §11.17.1) for
/// Data-Out outside the expected length or for an unknown transfer tag, and for an
/// absurd expected data transfer length; a data segment beyond MaxRecvDataSegmentLength
/// ends the connection (the PDU boundary is lost, §7.1.3).
#[test]
fn out_of_bounds_data_gets_the_rfc_answers() {
    let (mut d, mut w) = setup(&[]);
    let reject_reason = |c: &mut RawConn| -> u8 {
        for _ in 0..8 {
            let p = c.recv();
            if p.opcode() == op::REJECT {
                return p.bhs[2];
            }
        }
        panic!("no Reject");
    };
    // InitialR2T=No, so unsolicited Data-Out is legal and only its extent is wrong.
    let mut c = RawConn::session_with(d.port, IQN, &[("InitialR2T", "No")]);
    // WRITE of one block, then unsolicited Data-Out reaching past its 512 bytes.
    let mut p = Pdu::new(op::SCSI_CMD);
    p.set_flags(0xa1);
    p.set_lun_raw([0, 1, 0, 0, 0, 0, 0, 0]);
    let itt = c.next_itt();
    p.set_itt(itt);
    p.set_u32(20, 512);
    p.set_u32(24, c.cmd_sn);
    p.bhs[32..42].copy_from_slice(&write10(0, 1));
    c.send(&p);
    let mut dout = Pdu::new(op::DATA_OUT);
    dout.set_flags(0x80);
    dout.set_itt(itt);
    dout.set_ttt(0xffff_ffff);
    dout.set_u32(40, 256);
    dout.data = vec![0xee; 1024];
    c.send(&dout);
    assert_eq!(reject_reason(&mut c), 0x09, "Data-Out beyond the EDTL");
    // Data-Out for a transfer tag nobody issued.
    dout.set_ttt(0x0bad_cafe);
    dout.set_u32(40, 0);
    dout.data = vec![0; 512];
    c.send(&dout);
    assert_eq!(reject_reason(&mut c), 0x09, "unknown TTT");
    // An expected length of 4 GiB.
    let mut p = Pdu::new(op::SCSI_CMD);
    p.set_flags(0xa1);
    p.set_lun_raw([0, 1, 0, 0, 0, 0, 0, 0]);
    p.set_itt(c.next_itt());
    p.set_u32(20, 0xffff_fe00);
    p.set_u32(24, c.cmd_sn.wrapping_add(1));
    p.bhs[32..42].copy_from_slice(&write10(0, 0xffff));
    c.send(&p);
    assert_eq!(reject_reason(&mut c), 0x09, "EDTL over the limit");
    // A data segment longer than our MaxRecvDataSegmentLength: the connection ends.
    let mut big = Pdu::new(op::NOP_OUT);
    big.set_immediate(true);
    big.set_flags(0x80);
    big.set_itt(c.next_itt());
    big.set_u32(20, 0xffff_ffff);
    big.data = vec![0; 2 << 20];
    let _ = c.stream.write_all(&big.encode(false, false));
    c.stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match c.stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    w.assert_works();
    assert!(d.alive());
}

/// A client that asks for a lot of data and never reads it stalls only itself.
#[test]
fn a_client_that_stops_reading_stalls_only_itself() {
    let (mut d, mut w) = setup(&[]);
    let mut slow = RawConn::session(d.port, IQN);
    // 64 READs of 1 MiB each, never read: far more than the socket buffers hold.
    for i in 0..64u32 {
        let mut p = Pdu::new(op::SCSI_CMD);
        p.set_flags(0xc1);
        p.set_lun_raw([0, 1, 0, 0, 0, 0, 0, 0]);
        p.set_itt(slow.next_itt());
        p.set_u32(20, 1 << 20);
        p.set_u32(24, slow.cmd_sn.wrapping_add(i));
        p.bhs[32..42].copy_from_slice(&read10(0, 2048));
        slow.send(&p);
    }
    let stop = AtomicBool::new(false);
    let t = Instant::now();
    assert_eq!(witness_io(&mut w, 30, &stop), 30);
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    let mut fresh = RawConn::session(d.port, IQN);
    fresh.assert_works();
    drop(slow);
    assert!(d.alive());
}
