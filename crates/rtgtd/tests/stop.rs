//! A graceful stop: on SIGTERM initiators get an Asynchronous Message asking them to
//! log out (RFC 7143 §11.9.1), a WRITE in flight completes and its data is in the
//! backing file, new connections are refused, and rtgtd exits by itself, also when an
//! initiator never logs out.

mod common;

use std::io::{Read, Seek, SeekFrom};
use std::time::{Duration, Instant};

use common::raw::RawConn;
use common::scsi::{write10, GOOD};
use common::{Daemon, GIB};
use rtgt_iscsi::pdu::{op, Pdu};

const IQN: &str = "iqn.2026-11.org.example:stop";

fn sigterm(d: &Daemon) {
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe {
        libc::kill(d.pid() as i32, libc::SIGTERM);
    }
}

/// Waits for rtgtd to exit on its own; its exit status.
fn exited(d: &mut Daemon, within: Duration) -> Option<std::process::ExitStatus> {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if !d.alive() {
            return d.stop();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

fn setup(extra: &[&str]) -> (Daemon, std::path::PathBuf, RawConn) {
    let d = Daemon::start_args(extra);
    let img = d.add_disk(1, IQN, GIB, &[]);
    let mut c = RawConn::session(d.port, IQN);
    let (_, r) = c.exec_after_uas(1, &[0; 6], 0, &[]);
    assert_eq!(r.status, GOOD);
    (d, img, c)
}

#[test]
fn sigterm_asks_for_logout_and_lets_a_write_in_flight_complete() {
    let (mut d, img, mut c) = setup(&["--stop-timeout", "7"]);
    // A WRITE (10) of 8 blocks at LBA 100 that waits for its Data-Out (R2T).
    let mut cmd = c.command_pdu(1, &write10(100, 8), 0, &[]);
    cmd.set_flags(cmd.flags() | 0x20);
    cmd.set_u32(20, 4096);
    c.send(&cmd);
    let r2t = c.recv();
    assert_eq!(r2t.opcode(), op::R2T, "{r2t:?}");

    sigterm(&d);
    let msg = c.recv();
    assert_eq!(
        msg.opcode(),
        op::ASYNC,
        "expected an Async Message: {msg:?}"
    );
    assert_eq!(msg.bhs[36], 1, "AsyncEvent 1: the target requests Logout");
    assert_eq!(
        u16::from_be_bytes([msg.bhs[42], msg.bhs[43]]),
        7,
        "Parameter3"
    );
    assert_eq!(msg.itt(), 0xffff_ffff);
    c.exp_stat_sn = msg.stat_sn().wrapping_add(1);
    // Listeners are closed: no new connection.
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", d.port)).is_err(),
        "a stopping rtgtd must not accept connections"
    );

    // The write in flight completes.
    let mut data = Pdu::new(op::DATA_OUT);
    data.set_flags(0x80);
    data.set_lun_raw(cmd.lun_raw());
    data.set_itt(cmd.itt());
    data.set_ttt(r2t.ttt());
    data.set_u32(28, c.exp_stat_sn);
    data.set_u32(40, r2t.u32_at(40));
    data.data = vec![0xab; r2t.u32_at(44) as usize];
    c.send(&data);
    let rsp = c.recv();
    assert_eq!(rsp.opcode(), op::SCSI_RSP, "{rsp:?}");
    assert_eq!(rsp.itt(), cmd.itt());
    assert_eq!(rsp.bhs[3], GOOD, "status");
    c.exp_stat_sn = rsp.stat_sn().wrapping_add(1);

    // The initiator logs out (close the session, RFC 7143 §11.14.1 reason 0).
    let mut lo = Pdu::new(op::LOGOUT_REQ | 0x40);
    lo.set_flags(0x80);
    let itt = c.next_itt();
    lo.set_itt(itt);
    lo.set_u32(24, c.cmd_sn);
    lo.set_u32(28, c.exp_stat_sn);
    c.send(&lo);
    let lr = c.recv();
    assert_eq!(lr.opcode(), op::LOGOUT_RSP, "{lr:?}");
    assert_eq!(lr.bhs[2], 0, "logout response: closed successfully");

    let st = exited(&mut d, Duration::from_secs(5)).expect("rtgtd exits after the logout");
    assert!(st.success(), "{st:?}\n{}", d.log());
    assert!(d.log().contains("stopped"), "{}", d.log());
    // The data is in the backing file.
    let mut f = std::fs::File::open(&img).unwrap();
    f.seek(SeekFrom::Start(100 * 512)).unwrap();
    let mut got = vec![0; 4096];
    f.read_exact(&mut got).unwrap();
    assert!(
        got.iter().all(|&b| b == 0xab),
        "the write is not in the file"
    );
}

#[test]
fn an_initiator_that_never_logs_out_is_closed_after_the_timeout() {
    let (mut d, _img, mut c) = setup(&["--stop-timeout", "1"]);
    let t0 = Instant::now();
    sigterm(&d);
    let msg = c.recv();
    assert_eq!(msg.opcode(), op::ASYNC, "{msg:?}");
    assert_eq!(u16::from_be_bytes([msg.bhs[42], msg.bhs[43]]), 1);
    // No logout: rtgtd closes the session itself and exits.
    let st = exited(&mut d, Duration::from_secs(5)).expect("rtgtd exits by itself");
    assert!(st.success(), "{st:?}");
    assert!(
        t0.elapsed() >= Duration::from_millis(900),
        "it waited Parameter3"
    );
    assert!(
        d.log().contains("did not log out; closing them"),
        "{}",
        d.log()
    );
}
