//! vhost-user-scsi without a guest: the test plays QEMU (a vhost-user front end with
//! memfd guest memory and split virtqueues it lays out itself, `vhost/frontend.rs`) and
//! the LUs' stores (two handler LUs served by a handler in the test that holds READs
//! from LBA 100 on until told to finish them), so commands stay in flight for as long
//! as a test wants.
//!
//! - Every task management function of virtio 1.2 §5.6.6.2 on the control queue, with
//!   the exact response byte; the commands it aborts answered VIRTIO_SCSI_S_ABORTED
//!   before its own answer, no answer while they still run, and the other LU's commands
//!   left running.
//! - Malformed descriptor chains (request header too short, a buffer outside guest
//!   memory, readable after writable, a response that does not fit, a chain whose NEXT
//!   leaves the table): the answer the spec prescribes or the chain put back empty, a
//!   log line, the queue still serving, and the daemon serving the next connection.
//! - A session closed by rtgtadm and a graceful stop: the running command answered, no
//!   new one taken, the connection shut, the next front end served.
//! - A new call notifier (SET_VRING_CALL) notified at once.
//! - The event queue: LUN added, resized, removed; a bad buffer; EVENTS_MISSED.

mod common;
#[path = "vhost/frontend.rs"]
mod frontend;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use common::scsi::{read10, CHECK_CONDITION, GOOD};
use common::Daemon;
use frontend::{Desc, Fake, GPA};
use rtgt_handler::client;
use rtgt_handler::layout::{op, Cmd, Cpl};
use rtgt_handler::wire::{self, feature, Hello};
use vhost::VhostBackend;

const IQN: &str = "iqn.2026-12.org.rtgt:vhost-tmf";

// virtio-scsi (§5.6.6.2): TMF subtypes and response codes.
const T_TMF: u32 = 0;
const T_AN_QUERY: u32 = 1;
const ABORT_TASK: u32 = 0;
const ABORT_TASK_SET: u32 = 1;
const CLEAR_ACA: u32 = 2;
const CLEAR_TASK_SET: u32 = 3;
const I_T_NEXUS_RESET: u32 = 4;
const LOGICAL_UNIT_RESET: u32 = 5;
const QUERY_TASK: u32 = 6;
const QUERY_TASK_SET: u32 = 7;
const S_OK: u8 = 0; // FUNCTION COMPLETE for a TMF
const S_ABORTED: u8 = 2;
const S_BAD_TARGET: u8 = 3;
const S_FAILURE: u8 = 9;
const S_FUNCTION_SUCCEEDED: u8 = 10;
const S_FUNCTION_REJECTED: u8 = 11;
const S_INCORRECT_LUN: u8 = 12;

const REQ_HEADER: usize = 51;
const RESP_HEADER: usize = 108;
const CTRL_Q: usize = 0;
const REQ_Q: usize = 2;

/// READs from this byte offset on are held by the test's handler.
const STALL_AT: u64 = 100 * 512;

/// The virtio LUN field for target `t`, LUN `lun` (§5.6.6.1, flat space as Linux).
fn vlun(t: u8, lun: u16) -> [u8; 8] {
    [1, t, 0x40 | (lun >> 8) as u8, lun as u8, 0, 0, 0, 0]
}

// ---- the handler: two block-kind LUs whose READs past STALL_AT wait ------------------

enum Ctl {
    /// Complete every READ held now.
    ReleaseAll,
}

struct TestHandler {
    ctl: mpsc::Sender<Ctl>,
    /// Byte offsets of the READs held now.
    held: Arc<Mutex<Vec<u64>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestHandler {
    fn start(sock: PathBuf, name: &'static str) -> TestHandler {
        let (ctl, rx) = mpsc::channel();
        let held = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, s) = (held.clone(), stop.clone());
        let thread = std::thread::spawn(move || serve(&sock, name, &rx, &h, &s));
        TestHandler {
            ctl,
            held,
            stop,
            thread: Some(thread),
        }
    }

    /// Waits until `n` READs are held.
    fn wait_held(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.held.lock().unwrap().len() < n {
            assert!(
                Instant::now() < deadline,
                "only {:?} held, want {n}",
                self.held.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn release_all(&self) {
        self.ctl.send(Ctl::ReleaseAll).unwrap();
    }
}

impl Drop for TestHandler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A block's bytes as the handler serves them: its LBA's low byte.
fn pattern(offset: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((offset + i as u64) / 512) as u8)
        .collect()
}

fn serve(
    sock: &Path,
    name: &str,
    rx: &mpsc::Receiver<Ctl>,
    held: &Mutex<Vec<u64>>,
    stop: &AtomicBool,
) {
    let hello = Hello {
        major: wire::MAJOR,
        minor: wire::MINOR,
        kind: wire::kind::BLOCK,
        features: feature::FLUSH,
        capacity: 1 << 20,
        block_size: 512,
        queues: 1,
        depth: 16,
        flags: 0,
        max_xfer: 0,
        name: name.into(),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut att = loop {
        match client::connect(sock, &hello) {
            Ok(a) => break a,
            Err(e) => {
                assert!(Instant::now() < deadline, "handler {name}: {e}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    let q = &mut att.queues[0];
    q.batch = false;
    let mut waiting: Vec<Cmd> = Vec::new();
    let finish = |q: &mut client::Queue, c: &Cmd| {
        let mut bytes = 0;
        if c.op == op::READ {
            if let Some(buf) = q.data(c) {
                buf.copy_from_slice(&pattern(c.offset, buf.len()));
                bytes = c.len;
            }
        } else if c.op == op::WRITE {
            bytes = c.len;
        }
        q.complete(Cpl {
            tag: c.tag,
            status: 0,
            bytes,
        });
    };
    while !stop.load(Ordering::Acquire) {
        while let Some(c) = q.take_cmd() {
            if c.op == op::READ && c.offset >= STALL_AT {
                held.lock().unwrap().push(c.offset);
                waiting.push(c);
            } else {
                finish(q, &c);
            }
        }
        while let Ok(Ctl::ReleaseAll) = rx.try_recv() {
            for c in waiting.drain(..) {
                finish(q, &c);
            }
            held.lock().unwrap().clear();
        }
        let _ = q.wait(5);
    }
}

// ---- virtio-scsi over the fake front end --------------------------------------------

#[derive(Debug, Clone)]
struct Resp {
    response: u8,
    status: u8,
    sense: Vec<u8>,
    data: Vec<u8>,
}

impl Resp {
    /// Sense key, ASC, ASCQ of fixed-format sense.
    fn sense_code(&self) -> (u8, u8, u8) {
        assert!(self.sense.len() >= 14, "no sense data: {self:?}");
        (self.sense[2] & 0xf, self.sense[12], self.sense[13])
    }
}

enum Pending {
    Cmd {
        tag: u64,
        resp: u64,
        data_len: usize,
    },
    Tmf {
        id: u64,
        resp: u64,
    },
    An {
        resp: u64,
    },
}

/// What came back, and at which poll (control queue read first in each).
#[derive(Debug, Clone)]
enum Done {
    Cmd(u64, Resp),
    Tmf(u64, u8),
    An(u32, u8),
    /// A chain put back with this used length that was not a request we track.
    Other(usize, u16, u32),
}

struct Vm {
    fake: Fake,
    pending: HashMap<(usize, u16), Pending>,
    done: Vec<(u64, Done)>,
    poll_no: u64,
    next_tmf: u64,
}

impl Vm {
    fn new(path: &Path) -> Vm {
        Self::with_features(path, 0)
    }

    /// With virtio-scsi feature bits `extra` negotiated too.
    fn with_features(path: &Path, extra: u64) -> Vm {
        Vm {
            fake: Fake::connect(path, 3, extra),
            pending: HashMap::new(),
            done: Vec::new(),
            poll_no: 0,
            next_tmf: 1,
        }
    }

    fn cmd(&mut self, lun: [u8; 8], tag: u64, cdb: &[u8], out: &[u8], in_len: usize) {
        let mut h = lun.to_vec();
        h.extend(tag.to_le_bytes());
        h.extend([0, 0, 0]);
        let mut c = [0u8; 32];
        c[..cdb.len()].copy_from_slice(cdb);
        h.extend(c);
        assert_eq!(h.len(), REQ_HEADER);
        h.extend(out);
        let req = self.fake.alloc(h.len());
        self.fake.write(req, &h);
        let resp = self.fake.alloc(RESP_HEADER + in_len);
        let mut d = vec![
            Desc::r(req, h.len() as u32),
            Desc::w(resp, RESP_HEADER as u32),
        ];
        if in_len > 0 {
            d.push(Desc::w(resp + RESP_HEADER as u64, in_len as u32));
        }
        let head = self.fake.push(REQ_Q, &d);
        self.pending.insert(
            (REQ_Q, head),
            Pending::Cmd {
                tag,
                resp,
                data_len: in_len,
            },
        );
    }

    /// Sends a TMF; returns the id to wait for.
    fn tmf(&mut self, subtype: u32, lun: [u8; 8], tag: u64) -> u64 {
        let mut b = T_TMF.to_le_bytes().to_vec();
        b.extend(subtype.to_le_bytes());
        b.extend(lun);
        b.extend(tag.to_le_bytes());
        let req = self.fake.alloc(b.len());
        self.fake.write(req, &b);
        let resp = self.fake.alloc(1);
        self.fake.write(resp, &[0xff]);
        let head = self
            .fake
            .push(CTRL_Q, &[Desc::r(req, b.len() as u32), Desc::w(resp, 1)]);
        let id = self.next_tmf;
        self.next_tmf += 1;
        self.pending
            .insert((CTRL_Q, head), Pending::Tmf { id, resp });
        id
    }

    fn poll(&mut self) {
        self.poll_no += 1;
        for q in [CTRL_Q, REQ_Q, EVENT_Q] {
            for (head, len) in self.fake.used(q) {
                let d = match self.pending.remove(&(q, head)) {
                    Some(Pending::Cmd {
                        tag,
                        resp,
                        data_len,
                    }) => {
                        let h = self.fake.read(resp, RESP_HEADER + data_len);
                        let sense_len = u32::from_le_bytes(h[..4].try_into().unwrap()) as usize;
                        Done::Cmd(
                            tag,
                            Resp {
                                response: h[11],
                                status: h[10],
                                sense: h[12..12 + sense_len.min(96)].to_vec(),
                                data: h[RESP_HEADER..].to_vec(),
                            },
                        )
                    }
                    Some(Pending::Tmf { id, resp }) => {
                        assert_eq!(len, 1, "a TMF reply is one byte");
                        Done::Tmf(id, self.fake.read(resp, 1)[0])
                    }
                    Some(Pending::An { resp }) => {
                        let b = self.fake.read(resp, 5);
                        Done::An(u32::from_le_bytes(b[..4].try_into().unwrap()), b[4])
                    }
                    None => Done::Other(q, head, len),
                };
                self.done.push((self.poll_no, d));
            }
        }
    }

    fn wait<T>(&mut self, what: &str, f: impl Fn(&Done) -> Option<T>) -> (u64, T) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some((at, t)) = self.done.iter().find_map(|(at, d)| f(d).map(|t| (*at, t))) {
                return (at, t);
            }
            assert!(Instant::now() < deadline, "no answer to {what}");
            std::thread::sleep(Duration::from_millis(2));
            self.poll();
        }
    }

    fn wait_cmd(&mut self, tag: u64) -> (u64, Resp) {
        self.wait(&format!("command {tag}"), |d| match d {
            Done::Cmd(t, r) if *t == tag => Some(r.clone()),
            _ => None,
        })
    }

    fn wait_tmf(&mut self, id: u64) -> (u64, u8) {
        self.wait(&format!("TMF {id}"), |d| match d {
            Done::Tmf(i, r) if *i == id => Some(*r),
            _ => None,
        })
    }

    fn answered(&mut self, tag: u64) -> bool {
        self.poll();
        self.done
            .iter()
            .any(|(_, d)| matches!(d, Done::Cmd(t, _) if *t == tag))
    }

    fn tmf_answered(&mut self, id: u64) -> bool {
        self.poll();
        self.done
            .iter()
            .any(|(_, d)| matches!(d, Done::Tmf(i, _) if *i == id))
    }

    fn exec(&mut self, lun: [u8; 8], tag: u64, cdb: &[u8], in_len: usize) -> Resp {
        self.cmd(lun, tag, cdb, &[], in_len);
        self.wait_cmd(tag).1
    }

    fn tmf_now(&mut self, subtype: u32, lun: [u8; 8], tag: u64) -> u8 {
        let id = self.tmf(subtype, lun, tag);
        self.wait_tmf(id).1
    }

    /// TEST UNIT READY until GOOD (unit attentions of a new nexus, a new handler).
    fn ready(&mut self, lun: [u8; 8], tag: &mut u64) {
        for _ in 0..6 {
            *tag += 1;
            let r = self.exec(lun, *tag, &[0; 6], 0);
            assert_eq!(r.response, S_OK, "{r:?}");
            if r.status == GOOD {
                return;
            }
        }
        panic!("LUN {lun:?} never became ready");
    }
}

/// rtgtd with target 1 (LUN 1 and 2: handler LUs `vh1`, `vh2`, each served by a
/// TestHandler) bound to a vhost-user socket.
fn setup() -> (Daemon, PathBuf, TestHandler, TestHandler) {
    let d = Daemon::start();
    d.adm_ok(&[
        "--lld", "vhost", "--op", "new", "--mode", "target", "--tid", "1", "-T", IQN,
    ]);
    for (lun, name) in [("1", "vh1"), ("2", "vh2")] {
        d.adm_ok(&[
            "--op",
            "new",
            "--mode",
            "logicalunit",
            "--tid",
            "1",
            "--lun",
            lun,
            "--bstype",
            "handler",
            "-b",
            name,
        ]);
    }
    let h1 = TestHandler::start(d.run_dir.join("handlers/vh1.sock"), "vh1");
    let h2 = TestHandler::start(d.run_dir.join("handlers/vh2.sock"), "vh2");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = d.adm_ok(&["--op", "show", "--mode", "target"]);
        if s.matches("Handler: attached").count() == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "handlers never attached:\n{s}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let sock = d.dir.join("vm.sock");
    d.adm_ok(&[
        "--lld",
        "vhost",
        "--op",
        "bind",
        "--mode",
        "target",
        "--tid",
        "1",
        "--params",
        &format!("socket={}", sock.display()),
    ]);
    (d, sock, h1, h2)
}

/// A function that aborts `tags`: not answered while they are held by the handler,
/// answered `want` once they are let go, each of them answered ABORTED no later than
/// the function (§5.6.6.2: "the device MUST ... complete the affected commands before
/// completing the task management function").
fn aborts(
    vm: &mut Vm,
    handlers: &[&TestHandler],
    subtype: u32,
    lun: [u8; 8],
    tag: u64,
    tags: &[u64],
    want: u8,
) {
    let id = vm.tmf(subtype, lun, tag);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !vm.tmf_answered(id),
        "TMF {subtype} answered while its commands still ran"
    );
    for t in tags {
        assert!(!vm.answered(*t), "command {t} answered while held");
    }
    for h in handlers {
        h.release_all();
    }
    let (at, r) = vm.wait_tmf(id);
    assert_eq!(r, want, "TMF subtype {subtype}");
    for t in tags {
        let (cat, c) = vm.wait_cmd(*t);
        assert_eq!(c.response, S_ABORTED, "command {t}: {c:?}");
        assert!(
            cat <= at,
            "command {t} answered (poll {cat}) after TMF {subtype} (poll {at})"
        );
    }
}

#[test]
fn task_management_on_the_control_queue() {
    let (d, sock, h1, h2) = setup();
    let mut vm = Vm::new(&sock);
    let (l1, l2, l7) = (vlun(0, 1), vlun(0, 2), vlun(0, 7));
    let mut tag = 1000;
    vm.ready(l1, &mut tag);
    vm.ready(l2, &mut tag);
    // A READ that is not held, answered with the handler's bytes.
    let r = vm.exec(l1, 1, &read10(3, 2), 1024);
    assert_eq!((r.response, r.status), (S_OK, GOOD), "{r:?}");
    assert_eq!(r.data, pattern(3 * 512, 1024));

    // Tags 10, 11 on LUN 1 and 12 on LUN 2, all held by the handlers.
    vm.cmd(l1, 10, &read10(100, 1), &[], 512);
    vm.cmd(l1, 11, &read10(101, 1), &[], 512);
    vm.cmd(l2, 12, &read10(100, 1), &[], 512);
    h1.wait_held(2);
    h2.wait_held(1);

    // QUERY TASK / QUERY TASK SET (SAM-5 7.8, 7.9): SUCCEEDED when the task exists on
    // that LU, FUNCTION COMPLETE when not; INCORRECT LUN for a LUN that has no LU.
    assert_eq!(vm.tmf_now(QUERY_TASK, l1, 10), S_FUNCTION_SUCCEEDED);
    assert_eq!(vm.tmf_now(QUERY_TASK, l2, 10), S_OK, "tag 10 is LUN 1's");
    assert_eq!(vm.tmf_now(QUERY_TASK, l1, 99), S_OK);
    assert_eq!(vm.tmf_now(QUERY_TASK_SET, l2, 0), S_FUNCTION_SUCCEEDED);
    assert_eq!(vm.tmf_now(QUERY_TASK, l7, 10), S_INCORRECT_LUN);
    assert_eq!(vm.tmf_now(QUERY_TASK_SET, l7, 0), S_INCORRECT_LUN);

    // ABORT TASK of tag 10: 10 ABORTED first, 11 and 12 go on.
    aborts(&mut vm, &[&h1], ABORT_TASK, l1, 10, &[10], S_OK);
    assert!(!vm.answered(12), "LUN 2's command was touched");
    // Tag 11 was let go too (the handler finished every held READ): it completes.
    let (_, r) = vm.wait_cmd(11);
    assert_eq!((r.response, r.status), (S_OK, GOOD), "{r:?}");
    assert_eq!(r.data, pattern(101 * 512, 512));
    assert_eq!(vm.tmf_now(QUERY_TASK, l1, 10), S_OK, "aborted: gone");
    assert_eq!(vm.tmf_now(QUERY_TASK_SET, l1, 0), S_OK);

    // ABORT TASK SET on LUN 1: both of its commands, not LUN 2's.
    vm.cmd(l1, 20, &read10(102, 1), &[], 512);
    vm.cmd(l1, 21, &read10(103, 1), &[], 512);
    h1.wait_held(2);
    aborts(&mut vm, &[&h1], ABORT_TASK_SET, l1, 0, &[20, 21], S_OK);
    assert!(!vm.answered(12), "LUN 2's command was touched");

    // LOGICAL UNIT RESET of LUN 1: its command aborted, then BUS DEVICE RESET
    // FUNCTION OCCURRED (29h/03h) for the nexus; LUN 2 untouched.
    vm.cmd(l1, 30, &read10(104, 1), &[], 512);
    h1.wait_held(1);
    aborts(&mut vm, &[&h1], LOGICAL_UNIT_RESET, l1, 0, &[30], S_OK);
    assert!(!vm.answered(12), "LUN 2's command was touched");
    let r = vm.exec(l1, 31, &[0; 6], 0);
    assert_eq!((r.response, r.status), (S_OK, CHECK_CONDITION), "{r:?}");
    assert_eq!(r.sense_code(), (0x06, 0x29, 0x03));
    assert_eq!(vm.exec(l1, 32, &[0; 6], 0).status, GOOD);

    // CLEAR TASK SET on LUN 2: tag 12, held all along.
    aborts(&mut vm, &[&h2], CLEAR_TASK_SET, l2, 0, &[12], S_OK);

    // I_T NEXUS RESET: every command of the nexus, on both LUs.
    vm.cmd(l1, 40, &read10(105, 1), &[], 512);
    vm.cmd(l2, 41, &read10(105, 1), &[], 512);
    h1.wait_held(1);
    h2.wait_held(1);
    aborts(
        &mut vm,
        &[&h1, &h2],
        I_T_NEXUS_RESET,
        l1,
        0,
        &[40, 41],
        S_OK,
    );
    // SAM-5 6.3.4: I_T NEXUS LOSS OCCURRED on every LU for the nexus.
    for (lun, t) in [(l1, 42), (l2, 43)] {
        let r = vm.exec(lun, t, &[0; 6], 0);
        assert_eq!((r.response, r.status), (S_OK, CHECK_CONDITION), "{r:?}");
        assert_eq!(r.sense_code(), (0x06, 0x29, 0x07));
    }

    // Functions that can't be done.
    assert_eq!(vm.tmf_now(ABORT_TASK, l7, 1), S_INCORRECT_LUN);
    assert_eq!(vm.tmf_now(ABORT_TASK_SET, l7, 0), S_INCORRECT_LUN);
    assert_eq!(vm.tmf_now(LOGICAL_UNIT_RESET, l7, 0), S_INCORRECT_LUN);
    assert_eq!(vm.tmf_now(CLEAR_ACA, l1, 0), S_FUNCTION_REJECTED, "no NACA");
    assert_eq!(
        vm.tmf_now(42, l1, 0),
        S_FUNCTION_REJECTED,
        "no such subtype"
    );
    assert_eq!(vm.tmf_now(ABORT_TASK, vlun(1, 1), 1), S_BAD_TARGET);
    // ABORT TASK of a task that is not there: FUNCTION COMPLETE (SAM-5 7.2).
    assert_eq!(vm.tmf_now(ABORT_TASK, l1, 4242), S_OK);

    // An asynchronous-notification query: no events supported, OK.
    let mut b = T_AN_QUERY.to_le_bytes().to_vec();
    b.extend(l1);
    b.extend(0x10u32.to_le_bytes());
    let req = vm.fake.alloc(b.len());
    vm.fake.write(req, &b);
    let resp = vm.fake.alloc(5);
    vm.fake.write(resp, &[0xff; 5]);
    let head = vm.fake.push(CTRL_Q, &[Desc::r(req, 16), Desc::w(resp, 5)]);
    vm.pending.insert((CTRL_Q, head), Pending::An { resp });
    let (_, an) = vm.wait("AN query", |d| match d {
        Done::An(e, r) => Some((*e, *r)),
        _ => None,
    });
    assert_eq!(an, (0, S_OK));

    // And the LUs still serve.
    let mut t = 50;
    vm.ready(l1, &mut t);
    let r = vm.exec(l2, 60, &read10(7, 1), 512);
    assert_eq!((r.response, r.status), (S_OK, GOOD), "{r:?}");
    assert_eq!(r.data, pattern(7 * 512, 512));
    assert!(!d.log().contains("panicked"), "{}", d.log());
    // Stopped while the handlers are still there to answer its flush.
    drop(vm);
    drop(d);
}

/// The length chain `head` of queue `q` was put back with (0: nothing written); the
/// entry is taken out, as heads are reused.
fn used_len_on(vm: &mut Vm, q: usize, head: u16) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        vm.poll();
        let at = vm
            .done
            .iter()
            .position(|(_, d)| matches!(d, Done::Other(qq, h, _) if *qq == q && *h == head));
        if let Some(i) = at {
            let (_, Done::Other(_, _, len)) = vm.done.remove(i) else {
                unreachable!()
            };
            return len;
        }
        assert!(Instant::now() < deadline, "chain {head} never put back");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn used_len(vm: &mut Vm, head: u16) -> u32 {
    used_len_on(vm, REQ_Q, head)
}

#[test]
fn malformed_chains_are_refused_and_the_daemon_serves_on() {
    let (d, sock, _h1, _h2) = setup();
    let mut vm = Vm::new(&sock);
    let l1 = vlun(0, 1);
    let mut tag = 1000;
    vm.ready(l1, &mut tag);

    let mut header = l1.to_vec();
    header.extend(7u64.to_le_bytes());
    header.extend([0u8; 3 + 32]);
    let req = vm.fake.alloc(REQ_HEADER);
    vm.fake.write(req, &header);
    let fresh = |vm: &mut Vm| {
        let r = vm.fake.alloc(RESP_HEADER);
        vm.fake.write(r, &[0xee; RESP_HEADER]);
        r
    };

    // A request header shorter than 51 bytes: FAILURE in the response (§5.6.6.1).
    let resp = fresh(&mut vm);
    let h = vm.fake.push(
        REQ_Q,
        &[Desc::r(req, 20), Desc::w(resp, RESP_HEADER as u32)],
    );
    assert_eq!(used_len(&mut vm, h), RESP_HEADER as u32);
    assert_eq!(vm.fake.read(resp, RESP_HEADER)[11], S_FAILURE);

    // The request header outside guest memory: FAILURE, nothing read.
    let resp = fresh(&mut vm);
    let h = vm.fake.push(
        REQ_Q,
        &[
            Desc::r(GPA - 0x1000, REQ_HEADER as u32),
            Desc::w(resp, RESP_HEADER as u32),
        ],
    );
    assert_eq!(used_len(&mut vm, h), RESP_HEADER as u32);
    assert_eq!(vm.fake.read(resp, RESP_HEADER)[11], S_FAILURE);

    // An address that wraps past 2^64.
    let resp = fresh(&mut vm);
    let h = vm.fake.push(
        REQ_Q,
        &[
            Desc::r(u64::MAX - 8, REQ_HEADER as u32),
            Desc::w(resp, RESP_HEADER as u32),
        ],
    );
    assert_eq!(used_len(&mut vm, h), RESP_HEADER as u32);
    assert_eq!(vm.fake.read(resp, RESP_HEADER)[11], S_FAILURE);

    // Chains where no response can be written go back empty, their bytes untouched:
    // the response outside guest memory, readable after writable, a response shorter
    // than its header, and a chain whose NEXT leaves the descriptor table (cut there,
    // so it has no writable part).
    let resp = fresh(&mut vm);
    let bad: Vec<(Vec<Desc>, bool)> = vec![
        (
            vec![
                Desc::r(req, REQ_HEADER as u32),
                Desc::w(GPA + (64 << 20), RESP_HEADER as u32),
            ],
            false,
        ),
        (
            vec![
                Desc::w(resp, RESP_HEADER as u32),
                Desc::r(req, REQ_HEADER as u32),
            ],
            false,
        ),
        (
            vec![Desc::r(req, REQ_HEADER as u32), Desc::w(resp, 10)],
            false,
        ),
        (vec![Desc::r(req, REQ_HEADER as u32)], true),
    ];
    for (descs, bad_next) in bad {
        let h = vm.fake.push_with(REQ_Q, &descs, bad_next);
        assert_eq!(used_len(&mut vm, h), 0, "{descs:?}");
    }
    assert_eq!(vm.fake.read(resp, RESP_HEADER), vec![0xee; RESP_HEADER]);
    let log = d.log();
    for what in [
        "ShortRequest",
        "OutsideMemory",
        "WrongOrder",
        "ShortResponse",
    ] {
        assert!(
            log.lines()
                .any(|l| l.contains("bad request chain") && l.contains(what)),
            "no log line for {what}:\n{log}"
        );
    }

    // A control request too short for a TMF: put back empty, logged.
    let creq = vm.fake.alloc(24);
    vm.fake.write(creq, &[0u8; 24]);
    let cresp = vm.fake.alloc(1);
    vm.fake.write(cresp, &[0xee]);
    let h = vm
        .fake
        .push(CTRL_Q, &[Desc::r(creq, 10), Desc::w(cresp, 1)]);
    assert_eq!(used_len_on(&mut vm, CTRL_Q, h), 0);
    assert_eq!(vm.fake.read(cresp, 1), vec![0xee]);
    assert!(d.log().contains("bad control request"), "{}", d.log());

    // The queue still serves.
    let r = vm.exec(l1, 2, &read10(5, 1), 512);
    assert_eq!((r.response, r.status), (S_OK, GOOD), "{r:?}");
    assert_eq!(r.data, pattern(5 * 512, 512));

    // A front end that goes away (here: asking for a queue past the offered count,
    // then hanging up), and the next one is served.
    let _ = vm.fake.fe.set_vring_num(200, 64);
    drop(vm);
    let mut vm = Vm::new(&sock);
    let mut tag = 2000;
    vm.ready(l1, &mut tag);
    let r = vm.exec(l1, 3, &read10(9, 1), 512);
    assert_eq!((r.response, r.status), (S_OK, GOOD), "{r:?}");
    assert_eq!(r.data, pattern(9 * 512, 512));
    assert!(!d.log().contains("panicked"), "{}", d.log());
    // Stopped while the handlers are still there to answer its flush.
    drop(vm);
    drop(d);
}

/// The target's sessions' ids (`rtgtadm sessions --json`).
fn sids(d: &Daemon) -> Vec<u64> {
    let out = d.adm_ok(&["sessions", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s["sid"].as_u64().unwrap())
        .collect()
}

fn wait_log(d: &Daemon, what: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while d.log().matches(what).count() < n {
        assert!(
            Instant::now() < deadline,
            "no {n}x {what:?} in\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A session closed by rtgtadm (`session close`, `--op delete --mode conn`), and a
/// graceful stop: the command running is answered (not failed), no new request is
/// taken off the ring (QEMU offers it again after reconnecting), then the connection is
/// shut and the session is gone; the next front end gets a new session; the stop ends
/// as soon as the command is answered.
#[test]
fn session_close_and_stop_reach_the_vm() {
    let (mut d, sock, h1, _h2) = setup();
    let l1 = vlun(0, 1);
    let mut round = 0;
    let mut last_sid = 0;
    for how in ["session close", "delete conn", "stop"] {
        round += 1;
        let mut vm = Vm::new(&sock);
        let mut tag = 1000;
        vm.ready(l1, &mut tag);
        let s = sids(&d);
        assert_eq!(s.len(), 1, "{how}: {s:?}");
        assert_ne!(s[0], last_sid, "{how}: a new session");
        last_sid = s[0];
        vm.cmd(l1, 10, &read10(100, 1), &[], 512);
        h1.wait_held(1);
        let t0 = Instant::now();
        let sid = last_sid.to_string();
        match how {
            "session close" => drop(d.adm_ok(&["session", "close", &sid])),
            "delete conn" => drop(d.adm_ok(&[
                "--op", "delete", "--mode", "conn", "--tid", "1", "--sid", &sid, "--cid", "0",
            ])),
            _ => unsafe {
                libc::kill(d.pid() as i32, libc::SIGTERM);
            },
        }
        wait_log(&d, "vhost: closing the session", round);
        // Taken no more: left on the ring.
        vm.cmd(l1, 11, &read10(5, 1), &[], 512);
        std::thread::sleep(Duration::from_millis(300));
        assert!(!vm.answered(10) && !vm.answered(11), "{how}");
        if how != "stop" {
            assert_eq!(
                sids(&d).len(),
                1,
                "{how}: the session waits for its command"
            );
        }
        h1.release_all();
        let (_, r) = vm.wait_cmd(10);
        assert_eq!((r.response, r.status), (S_OK, GOOD), "{how}: {r:?}");
        assert_eq!(r.data, pattern(100 * 512, 512));
        if how == "stop" {
            let deadline = Instant::now() + Duration::from_secs(9);
            while d.alive() {
                assert!(Instant::now() < deadline, "the stop waited for a logout");
                std::thread::sleep(Duration::from_millis(20));
            }
        } else {
            wait_log(&d, "vhost: frontend gone", round);
            let deadline = Instant::now() + Duration::from_secs(9);
            while !sids(&d).is_empty() {
                assert!(Instant::now() < deadline, "{how}: the session stayed");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(9),
            "{how}: {:?}",
            t0.elapsed()
        );
        assert!(!vm.answered(11), "{how}: a request taken while closing");
    }
}

/// QEMU swaps a queue's call notifier with SET_VRING_CALL, which asks no reply, and
/// then looks for a notification on the old one: one sent in between would be lost. So
/// rtgtd notifies the new notifier once as soon as it has it, with nothing new on the
/// ring (virtio 1.2 §2.7.10: a notification only says to look).
#[test]
fn a_new_call_notifier_is_notified_at_once() {
    let (d, sock, _h1, _h2) = setup();
    let mut vm = Vm::new(&sock);
    let mut tag = 1000;
    vm.ready(vlun(0, 1), &mut tag);
    for q in [REQ_Q, CTRL_Q] {
        let call = vm.fake.new_call(q);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Ok(n) = call.read() {
                assert!(n >= 1);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "queue {q}: the new notifier never notified"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    drop(vm);
    drop(d);
}

const EVENT_Q: usize = 1;
const F_HOTPLUG: u64 = 1 << 1;
const F_CHANGE: u64 = 1 << 2;

/// Posts an event buffer (device-writable, 16 bytes) and returns (head, address).
fn post_event_buffer(vm: &mut Vm) -> (u16, u64) {
    let b = vm.fake.alloc(16);
    vm.fake.write(b, &[0xee; 16]);
    (vm.fake.push(EVENT_Q, &[Desc::w(b, 16)]), b)
}

/// The event written into buffer `b` once it is put back: (event, lun, reason).
fn event_in(vm: &mut Vm, head: u16, b: u64) -> (u32, [u8; 8], u32) {
    assert_eq!(used_len_on(vm, EVENT_Q, head), 16);
    let e = vm.fake.read(b, 16);
    (
        u32::from_le_bytes(e[..4].try_into().unwrap()),
        e[4..12].try_into().unwrap(),
        u32::from_le_bytes(e[12..].try_into().unwrap()),
    )
}

/// The event queue (§5.6.6.3) with HOTPLUG and CHANGE negotiated: a LUN added is
/// TRANSPORT_RESET / RESCAN, resized PARAM_CHANGE 2Ah/09h, removed TRANSPORT_RESET /
/// REMOVED; a buffer the device can't write is put back empty (logged) and the event
/// goes into the next; an event with no buffer posted is dropped and the next buffer
/// says EVENTS_MISSED.
#[test]
fn lun_changes_arrive_on_the_event_queue() {
    let (d, sock, _h1, _h2) = setup();
    let mut vm = Vm::with_features(&sock, F_HOTPLUG | F_CHANGE);
    let mut tag = 1000;
    vm.ready(vlun(0, 1), &mut tag);
    // A device-readable buffer first, then a good one.
    let bad = vm.fake.alloc(16);
    let bad_head = vm.fake.push(EVENT_Q, &[Desc::r(bad, 16)]);
    let (head, b) = post_event_buffer(&mut vm);
    // rtgtd takes posted buffers at their kick; the event must find both there.
    std::thread::sleep(Duration::from_millis(300));
    let img = d.dir.join("lun3.img");
    common::sparse_file(&img, 1 << 20);
    let lun3 = [
        "--op",
        "new",
        "--mode",
        "logicalunit",
        "--tid",
        "1",
        "--lun",
        "3",
        "-b",
        img.to_str().unwrap(),
    ];
    d.adm_ok(&lun3);
    assert_eq!(event_in(&mut vm, head, b), (1, [1, 0, 0, 3, 0, 0, 0, 0], 1));
    assert_eq!(used_len_on(&mut vm, EVENT_Q, bad_head), 0);
    assert!(d.log().contains("bad event buffer"), "{}", d.log());

    let (head, b) = post_event_buffer(&mut vm);
    std::thread::sleep(Duration::from_millis(300));
    d.update_lu("1", "3", "size=2M");
    assert_eq!(
        event_in(&mut vm, head, b),
        (3, [1, 0, 0, 3, 0, 0, 0, 0], 0x2a | 0x09 << 8)
    );

    // No buffer: the removal is dropped, the next buffer says so.
    d.adm_ok(&[
        "--op",
        "delete",
        "--mode",
        "logicalunit",
        "--tid",
        "1",
        "--lun",
        "3",
    ]);
    wait_log(&d, "vhost: event", 3);
    std::thread::sleep(Duration::from_millis(100));
    let (head, b) = post_event_buffer(&mut vm);
    assert_eq!(event_in(&mut vm, head, b).0, 0x8000_0000, "EVENTS_MISSED");
    // And the next event has no missed bit.
    let (head, b) = post_event_buffer(&mut vm);
    std::thread::sleep(Duration::from_millis(300));
    d.adm_ok(&lun3);
    assert_eq!(event_in(&mut vm, head, b), (1, [1, 0, 0, 3, 0, 0, 0, 0], 1));
    drop(vm);
    drop(d);
}
