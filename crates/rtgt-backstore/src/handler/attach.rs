//! Handlers attaching: the socket rtgtd listens on for one logical unit, the checks on
//! who connects (SO_PEERCRED) and what they say (HELLO), the queues made for them
//! (sealed memfds, eventfds, passed by SCM_RIGHTS), and noticing when they go.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use rtgt_handler::layout::Geometry;
use rtgt_handler::shm::Region;
use rtgt_handler::sys;
use rtgt_handler::wire::{self, Accept, Hello};

use super::queue::{self, QSide};
use super::Shared;

/// One attached handler.
pub(crate) struct Conn {
    pub generation: u32,
    pub pid: i32,
    pub name: String,
    pub features: u64,
    pub queues: Vec<QSide>,
    /// How long it may hold a command (`--bsopts timeout=`).
    pub timeout: Duration,
    sock: UnixStream,
    dead: AtomicBool,
    /// It was disconnected for holding a command too long: what it held is failed,
    /// not issued again (it may still be writing).
    hung: AtomicBool,
    store: Weak<Shared>,
}

impl Conn {
    pub fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Acquire)
    }

    pub fn is_hung(&self) -> bool {
        self.hung.load(Ordering::Acquire)
    }

    /// Disconnects a handler that held a command past its timeout.
    pub fn time_out(&self, why: &str) {
        if self.is_dead() {
            return;
        }
        self.hung.store(true, Ordering::Release);
        if let Some(s) = self.store.upgrade() {
            s.timeouts.fetch_add(1, Ordering::Relaxed);
        }
        self.fail(&format!("timed out: {why}"), false);
    }

    /// The queue for a command from this thread: each submitting thread (a reactor)
    /// has a queue of its own while there are enough, as blk-mq maps CPUs to hardware
    /// queues, so that one queue's completions wake one reactor, which reaps them itself
    /// ([`queue::ensure_reaper`]); another queue only when that one is full.
    pub fn pick(self: &Arc<Self>) -> &QSide {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        thread_local! {
            static MINE: usize = NEXT.fetch_add(1, Ordering::Relaxed);
        }
        let n = self.queues.len();
        let first = MINE.with(|m| *m) % n;
        let i = (0..n)
            .map(|k| (first + k) % n)
            .find(|&i| self.queues[i].has_room())
            .unwrap_or(first);
        queue::ensure_reaper(self, i);
        &self.queues[i]
    }

    /// Detaches the handler: logs why (naming it), closes its socket, and fails every
    /// command waiting on it so that the submitters re-issue them to the next handler.
    pub fn fail(&self, why: &str, protocol_error: bool) {
        if self.dead.swap(true, Ordering::AcqRel) {
            return;
        }
        let store = self.store.upgrade();
        let path = store
            .as_ref()
            .map(|s| s.path.display().to_string())
            .unwrap_or_default();
        if protocol_error {
            tracing::error!(
                handler = self.name,
                pid = self.pid,
                socket = path,
                "device handler broke the protocol, disconnecting it: {why}"
            );
        } else {
            tracing::warn!(
                handler = self.name,
                pid = self.pid,
                socket = path,
                "device handler detached: {why}"
            );
        }
        let _ = self.sock.shutdown(std::net::Shutdown::Both);
        let mut in_flight = 0;
        for q in &self.queues {
            in_flight += q.in_flight();
            q.close();
            sys::kick(q.done_fd.as_raw_fd());
        }
        if let Some(s) = store {
            s.detached(self, protocol_error, in_flight);
        }
    }
}

/// Binds the LU's socket: its directory is made, a stale socket from an earlier run
/// removed, and the socket is left 0660 (handlers run unprivileged, as a group member).
pub(crate) fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if let Ok(m) = std::fs::symlink_metadata(path) {
        if m.file_type().is_socket() {
            std::fs::remove_file(path)?;
        }
    }
    let l = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Accepts handlers until the store is dropped, then removes the socket.
pub(crate) fn listen(store: Weak<Shared>, l: UnixListener) {
    loop {
        let Some(s) = store.upgrade() else { break };
        if s.closed.load(Ordering::Acquire) {
            break;
        }
        drop(s);
        if !matches!(sys::poll_read(&[l.as_raw_fd()], 250).as_deref(), Ok([true])) {
            continue;
        }
        let Ok((sock, _)) = l.accept() else { continue };
        let Some(s) = store.upgrade() else { break };
        handshake(&s, sock);
    }
    if let Some(p) = l
        .local_addr()
        .ok()
        .and_then(|a| a.as_pathname().map(Path::to_path_buf))
    {
        let _ = std::fs::remove_file(p);
    }
}

fn refuse(sock: &mut UnixStream, path: &Path, pid: i32, code: u32) {
    tracing::warn!(
        socket = %path.display(),
        pid,
        "device handler refused: {}",
        wire::reject_text(code)
    );
    let _ = sock.write_all(&Accept::reject(code).encode());
}

/// One handler's handshake; on success it becomes the LU's handler.
fn handshake(s: &Arc<Shared>, mut sock: UnixStream) {
    let _ = sock.set_nonblocking(false);
    let _ = sock.set_read_timeout(Some(Duration::from_secs(5)));
    let (pid, uid, _) = match sys::peer_cred(sock.as_raw_fd()) {
        Ok(c) => c,
        Err(_) => return,
    };
    // Only our own user, root, or the uid=N the LU names may serve it.
    if uid != sys::euid() && uid != 0 && s.opts.uid != Some(uid) {
        tracing::warn!(
            socket = %s.path.display(),
            pid,
            uid,
            "device handler refused: its uid may not serve this logical unit"
        );
        return;
    }
    let mut b = [0u8; wire::HELLO_SIZE];
    if let Err(e) = sock.read_exact(&mut b) {
        tracing::warn!(socket = %s.path.display(), pid, "device handler sent no complete HELLO: {e}");
        return;
    }
    let hello = match Hello::decode(&b) {
        Ok(h) => h,
        Err(code) => return refuse(&mut sock, &s.path, pid, code),
    };
    if !matches!(hello.kind, wire::kind::BLOCK | wire::kind::SCSI) {
        return refuse(&mut sock, &s.path, pid, wire::REJECT_KIND);
    }
    if hello.kind != s.opts.kind {
        return refuse(&mut sock, &s.path, pid, wire::REJECT_KIND_MISMATCH);
    }
    if hello.block_size != s.opts.block_size {
        return refuse(&mut sock, &s.path, pid, wire::REJECT_BLOCK_SIZE);
    }
    let bs = u64::from(hello.block_size);
    if hello.capacity == 0
        || !hello.capacity.is_multiple_of(bs)
        || hello.queues == 0
        || hello.queues > 64
    {
        return refuse(&mut sock, &s.path, pid, wire::REJECT_GEOMETRY);
    }
    if s.opts.sync && hello.flags & wire::device_flag::WRITE_THROUGH == 0 {
        return refuse(&mut sock, &s.path, pid, wire::REJECT_WRITE_CACHE);
    }
    if s.current().is_some() {
        return refuse(&mut sock, &s.path, pid, wire::REJECT_BUSY);
    }
    let depth = match hello.depth {
        0 => s.opts.depth,
        d => d.next_power_of_two().min(s.opts.depth),
    };
    let slot_size = match hello.max_xfer {
        0 => super::SLOT_SIZE,
        x => (x.div_ceil(4096) * 4096).min(super::SLOT_SIZE),
    };
    let geo = Geometry { depth, slot_size };
    let nq = hello.queues.min(s.opts.max_queues);
    let mut features = hello.features & wire::feature::ALL;
    if hello.kind == wire::kind::SCSI {
        // Block operations and the exception path are the block kind's.
        features &= wire::feature::FREE_NOTIFY;
    }
    let free_notify = features & wire::feature::FREE_NOTIFY != 0;
    let mut queues = Vec::new();
    let mut fds: Vec<OwnedFd> = Vec::new();
    for qi in 0..nq {
        match new_queue(qi, geo, free_notify) {
            Ok((q, dup)) => {
                queues.push(q);
                fds.extend(dup);
            }
            Err(e) => {
                tracing::error!(socket = %s.path.display(), "cannot make a handler queue: {e}");
                return;
            }
        }
    }
    let generation = s.generation.fetch_add(1, Ordering::AcqRel);
    let accept = Accept {
        major: wire::MAJOR,
        minor: wire::MINOR,
        status: wire::ACCEPTED,
        features,
        queues: nq,
        depth,
        slot_size,
        generation,
        region_size: geo.region_size() as u64,
    };
    let raw: Vec<i32> = fds.iter().map(|f| f.as_raw_fd()).collect();
    if let Err(e) = sys::send_with_fds(sock.as_raw_fd(), &accept.encode(), &raw) {
        tracing::warn!(socket = %s.path.display(), pid, "cannot send ACCEPT: {e}");
        return;
    }
    drop(fds);
    let _ = sock.set_read_timeout(None);
    let conn = Arc::new(Conn {
        generation,
        pid,
        name: if hello.name.is_empty() {
            format!("pid {pid}")
        } else {
            hello.name.clone()
        },
        features,
        queues,
        timeout: s.opts.timeout,
        sock,
        dead: AtomicBool::new(false),
        hung: AtomicBool::new(false),
        store: Arc::downgrade(s),
    });
    for (qi, q) in conn.queues.iter().enumerate() {
        q.set_owner(&conn, qi);
    }
    s.attached(conn.clone(), &hello);
    for qi in 0..conn.queues.len() {
        let c = conn.clone();
        std::thread::Builder::new()
            .name(format!("rtgt-hq{qi}"))
            .spawn(move || queue::reaper(c, qi))
            .expect("spawn a handler queue thread");
    }
    std::thread::Builder::new()
        .name("rtgt-hmon".into())
        .spawn(move || monitor(conn))
        .expect("spawn a handler monitor thread");
}

/// Reads the handler's NOTIFY messages until its socket closes (it exited or crashed:
/// the kernel closes the socket of a killed process).
fn monitor(conn: Arc<Conn>) {
    let mut sock = match conn.sock.try_clone() {
        Ok(s) => s,
        Err(_) => return conn.fail("cannot watch its socket", false),
    };
    loop {
        let mut b = [0u8; wire::NOTIFY_SIZE];
        match sock.read_exact(&mut b) {
            Ok(()) => {
                match wire::decode_notify(&b) {
                    Some((wire::notify::CAPACITY, bytes)) => {
                        if let Some(s) = conn.store.upgrade() {
                            if !s.set_capacity(bytes) {
                                return conn.fail(
                                &format!("capacity {bytes} is not a non-zero multiple of the block size"),
                                true,
                            );
                            }
                        }
                    }
                    _ => return conn.fail("unknown message on its socket", true),
                }
            }
            Err(_) => return conn.fail("its socket closed", false),
        }
    }
}

/// Queue `qi`'s rtgtd side, and the handler's copies of its memfd, command (kick) eventfd
/// and completion eventfd, in the order ACCEPT passes them.
fn new_queue(qi: u32, geo: Geometry, free_notify: bool) -> std::io::Result<(QSide, [OwnedFd; 3])> {
    let memfd = sys::sealed_memfd(&format!("rtgt-handler-q{qi}"), geo.region_size() as u64)?;
    let kick = sys::eventfd(true)?;
    let done = sys::eventfd(true)?;
    let region = Region::map(memfd.as_raw_fd(), geo)?;
    let dup = [memfd.try_clone()?, kick.try_clone()?, done.try_clone()?];
    Ok((QSide::new(region, memfd, kick, done, free_notify), dup))
}

#[cfg(test)]
impl Conn {
    /// A connection with one queue (depth 4) and no handler behind it, and the queue's
    /// kick eventfd as a handler would hold it.
    pub(crate) fn for_test() -> (Arc<Conn>, OwnedFd) {
        let geo = Geometry {
            depth: 4,
            slot_size: 4096,
        };
        let (q, [_, theirs, _]) = new_queue(0, geo, false).unwrap();
        let (sock, _) = UnixStream::pair().unwrap();
        let conn = Arc::new(Conn {
            generation: 0,
            pid: 0,
            name: "test".into(),
            features: 0,
            queues: vec![q],
            timeout: Duration::from_secs(5),
            sock,
            dead: AtomicBool::new(false),
            hung: AtomicBool::new(false),
            store: Weak::new(),
        });
        conn.queues[0].set_owner(&conn, 0);
        (conn, theirs)
    }
}
