//! The sg driver's asynchronous interface (sg v3, drivers/scsi/sg.c): a command is
//! queued with `write()` of its `sg_io_hdr` and its end is collected with `read()`,
//! which gives the header back with status, sense and residual. No thread waits for a
//! command while it runs at the device: a tape's REWIND or ERASE, which can take hours,
//! holds nothing of the I/O pool. One reader thread per device polls the node while it
//! has commands in flight and ends after half a second with none.
//!
//! The buffers a queued command points into (data, sense) live in the pending map until
//! `read()` has returned that command: with sg's indirect I/O (no SG_FLAG_DIRECT_IO)
//! Data-Out is copied in by `write()` and Data-In and sense are copied out by `read()`,
//! into the addresses the header gave. A command whose initiator gave up (ABORT TASK, a
//! dropped connection) is still collected; its result is dropped.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::oneshot;

use super::sgio::{dxfer, Completion, Dir, SgIoHdr};

/// sg takes at most this many queued commands per open file (SG_MAX_QUEUE); beyond it
/// `write()` fails with EDOM, so such a command goes the blocking way instead.
const SG_MAX_QUEUE: usize = 16;
/// How long the reader waits in poll() before it looks whether anything is in flight
/// (and ends if nothing is).
const POLL_MS: libc::c_int = 500;

/// One command for [`SgQueue::submit`].
pub struct Request {
    pub cdb: Vec<u8>,
    pub dir: Dir,
    /// Data-Out to send, or the buffer Data-In lands in.
    pub buf: Vec<u8>,
    pub sense: Vec<u8>,
    pub timeout_ms: u32,
}

/// A command's end: the driver's report and the request's buffers back.
pub struct Done {
    pub result: io::Result<Completion>,
    pub buf: Vec<u8>,
    pub sense: Vec<u8>,
}

struct State {
    pending: HashMap<i32, (Request, oneshot::Sender<Done>)>,
    next_id: i32,
    reader: bool,
}

struct Inner {
    file: File,
    state: Mutex<State>,
}

/// An sg node's asynchronous queue (its own open file: sg keeps queued commands per
/// file, and SG_IO's own ones on the LU's other file never show up in its `read()`).
pub struct SgQueue {
    inner: Arc<Inner>,
}

impl SgQueue {
    pub fn new(file: File) -> Self {
        SgQueue {
            inner: Arc::new(Inner {
                file,
                state: Mutex::new(State {
                    pending: HashMap::new(),
                    next_id: 0,
                    reader: false,
                }),
            }),
        }
    }

    /// Queues `req` at the device; the receiver gets its end. `Err(req)` when sg's
    /// queue for this file is full (the caller runs it another way).
    pub fn submit(&self, mut req: Request) -> Result<oneshot::Receiver<Done>, Request> {
        let (tx, rx) = oneshot::channel();
        let mut st = self.inner.state.lock();
        if st.pending.len() >= SG_MAX_QUEUE {
            return Err(req);
        }
        let id = st.next_id;
        // pack_id -1 means "any" to read(); stay non-negative.
        st.next_id = (st.next_id + 1) & 0x3fff_ffff;
        let len = if req.dir == Dir::None {
            0
        } else {
            req.buf.len() as u32
        };
        let h = SgIoHdr {
            interface_id: libc::c_int::from(b'S'),
            dxfer_direction: dxfer(req.dir),
            cmd_len: req.cdb.len() as u8,
            mx_sb_len: req.sense.len().min(255) as u8,
            dxfer_len: len,
            dxferp: req.buf.as_mut_ptr() as usize,
            cmdp: req.cdb.as_ptr() as usize,
            sbp: req.sense.as_mut_ptr() as usize,
            timeout: req.timeout_ms,
            pack_id: id,
            ..Default::default()
        };
        // Into the map before write(), under the lock the reader takes to look it up:
        // moving the Vecs keeps their heap buffers where the header points.
        st.pending.insert(id, (req, tx));
        // SAFETY: the header is a valid sg_io_hdr; the buffers it points into stay in
        // the pending map until read() has returned this command.
        let r = unsafe {
            libc::write(
                self.inner.file.as_raw_fd(),
                &h as *const SgIoHdr as *const libc::c_void,
                std::mem::size_of::<SgIoHdr>(),
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            if let Some((req, tx)) = st.pending.remove(&id) {
                if e.raw_os_error() == Some(libc::EDOM) {
                    // sg's queue is full after all: the caller's other way.
                    return Err(req);
                }
                let _ = tx.send(Done {
                    result: Err(e),
                    buf: req.buf,
                    sense: req.sense,
                });
            }
            return Ok(rx);
        }
        if !st.reader {
            let inner = self.inner.clone();
            match std::thread::Builder::new()
                .name("rtgt-sg-reader".into())
                .spawn(move || reader(inner))
            {
                Ok(_) => st.reader = true,
                Err(e) => {
                    // Without a reader nothing collects them: fail what is queued. No
                    // user buffer is the kernel's after write() (indirect I/O: Data-Out
                    // was copied in, Data-In is copied out only by read()).
                    tracing::error!("pass-through: no sg reader thread: {e}");
                    for (_, (req, tx)) in st.pending.drain() {
                        let _ = tx.send(Done {
                            result: Err(io::Error::other("no sg reader thread")),
                            buf: req.buf,
                            sense: req.sense,
                        });
                    }
                }
            }
        }
        Ok(rx)
    }
}

/// Collects ended commands while any is in flight.
fn reader(inner: Arc<Inner>) {
    let fd = inner.file.as_raw_fd();
    loop {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut p, 1, POLL_MS) };
        if n == 0 {
            // Idle for POLL_MS with nothing in flight: end (a thread per command would
            // double a QD1 command's latency; one idling forever would outlive its LU).
            let mut st = inner.state.lock();
            if st.pending.is_empty() {
                st.reader = false;
                return;
            }
            continue;
        }
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return fail_all(&inner, e);
        }
        let mut h = SgIoHdr {
            interface_id: libc::c_int::from(b'S'),
            pack_id: -1,
            ..Default::default()
        };
        // SAFETY: read() fills one sg_io_hdr; the data and sense it copies go to the
        // buffers of that command, held in the pending map.
        let r = unsafe {
            libc::read(
                fd,
                &mut h as *mut SgIoHdr as *mut libc::c_void,
                std::mem::size_of::<SgIoHdr>(),
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EAGAIN | libc::EINTR) => continue,
                // ENODEV: the device is gone; its commands will not come back.
                _ => return fail_all(&inner, e),
            }
        }
        let mut st = inner.state.lock();
        match st.pending.remove(&h.pack_id) {
            Some((req, tx)) => {
                let _ = tx.send(Done {
                    result: Ok(Completion {
                        status: h.status,
                        host: h.host_status,
                        driver: h.driver_status,
                        resid: h.resid,
                        sense_len: u32::from(h.sb_len_wr),
                    }),
                    buf: req.buf,
                    sense: req.sense,
                });
            }
            None => tracing::warn!(
                pack_id = h.pack_id,
                "pass-through: sg returned an unknown command"
            ),
        }
    }
}

/// The node failed for good (the device is gone): every queued command ends with `e`.
fn fail_all(inner: &Inner, e: io::Error) {
    let mut st = inner.state.lock();
    st.reader = false;
    let code = e.raw_os_error();
    for (_, (req, tx)) in st.pending.drain() {
        let err = code.map_or_else(
            || io::Error::other(e.to_string()),
            io::Error::from_raw_os_error,
        );
        let _ = tx.send(Done {
            result: Err(err),
            buf: req.buf,
            sense: req.sense,
        });
    }
}
