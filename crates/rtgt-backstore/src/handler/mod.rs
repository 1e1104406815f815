//! `handler`: a logical unit whose blocks a separate process serves (rtgt's answer to
//! SCST's scst_user and LIO's TCMU), over the protocol of docs/handler-protocol.md
//! (crate `rtgt-handler`). rtgtd does all of SCSI; the handler reads, writes, flushes
//! and unmaps.
//!
//! `-b` is the socket rtgtd listens on for the LU (a bare NAME means
//! `$RTGT_RUN_DIR/handlers/NAME.sock`, `/run/rtgt/handlers/NAME.sock` by default).
//!
//! The LU outlives its handler: until one first attaches the store is not ready (NOT
//! READY, LOGICAL UNIT COMMUNICATION FAILURE, then CAPACITY DATA HAS CHANGED); after
//! that, while none is attached, commands wait up to `hold` seconds for the next one
//! and then fail with NOT READY, LOGICAL UNIT COMMUNICATION FAILURE (ENOTCONN, see
//! rtgt-scsi's store_error). Commands a handler took but never completed are issued
//! again to the next one: every operation of the block kind (READ, WRITE, FLUSH,
//! UNMAP, WRITE ZEROES) may be repeated without changing its outcome.

mod attach;
mod queue;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use rtgt_handler::layout::{self, cmd_flag, op, Cmd};
use rtgt_handler::wire::{device_flag, feature, Hello};

use crate::{
    BackingStore, Capabilities, CdbReply, CdbRequest, Counters, IoFuture, IoStats, OpenError,
    OpenOptions, RawCdbs, StoreMetric,
};
use attach::Conn;

/// Bytes per arena slot: the largest transfer one command carries; larger ones are
/// split.
pub const SLOT_SIZE: u32 = 1 << 20;

/// `timeout=`'s default, in seconds: below Linux's 30 s SCSI command timeout, so that a
/// hung handler is noticed before the initiator starts aborting.
const DEFAULT_TIMEOUT: u64 = 20;

/// `--bsopts` of a handler LU.
#[derive(Clone, Debug)]
pub(crate) struct Options {
    /// How long commands wait for a handler when none is attached.
    pub hold: Duration,
    /// How long a handler may hold a command (or a task management function) before it
    /// is taken for hung and disconnected.
    pub timeout: Duration,
    /// Commands in flight per queue (at most).
    pub depth: u32,
    /// Queues per handler (at most).
    pub max_queues: u32,
    /// Another uid allowed to serve the LU besides rtgtd's own and root.
    pub uid: Option<u32>,
    /// The LU's logical block size: a handler must use the same.
    pub block_size: u32,
    /// `--bsoflags sync`: the LU is write-through from its creation (WCE=0, fixed), so
    /// only a handler without a volatile cache (WRITE_THROUGH) may serve it.
    pub sync: bool,
    /// The kind of handler the LU takes: block (device type disk) or SCSI (device
    /// type handler; rtgt-target passes `kind=scsi`, which no saved configuration
    /// repeats: the device type says it).
    pub kind: u32,
}

impl Options {
    fn parse(opts: &OpenOptions) -> Result<Options, OpenError> {
        let mut o = Options {
            hold: Duration::from_secs(30),
            timeout: Duration::from_secs(DEFAULT_TIMEOUT),
            depth: 64,
            max_queues: 16,
            uid: None,
            block_size: if opts.block_size == 0 {
                512
            } else {
                opts.block_size
            },
            sync: opts.sync,
            kind: rtgt_handler::wire::kind::BLOCK,
        };
        let bad = |k: &str, v: &str| OpenError::Handler(format!("bad --bsopts {k}={v}"));
        for (k, v) in &opts.bsopts {
            if k == "kind" {
                o.kind = match v.as_str() {
                    "block" => rtgt_handler::wire::kind::BLOCK,
                    "scsi" => rtgt_handler::wire::kind::SCSI,
                    _ => return Err(bad(k, v)),
                };
                continue;
            }
            let n: u64 = v.parse().map_err(|_| bad(k, v))?;
            match k.as_str() {
                "hold" => o.hold = Duration::from_secs(n),
                "timeout" if n > 0 => o.timeout = Duration::from_secs(n),
                "depth" if n.is_power_of_two() && n <= 4096 => o.depth = n as u32,
                "queues" if (1..=64).contains(&n) => o.max_queues = n as u32,
                "uid" => o.uid = Some(n as u32),
                "depth" | "queues" | "timeout" => return Err(bad(k, v)),
                _ => {
                    return Err(OpenError::Handler(format!(
                    "unknown --bsopts '{k}' for bstype handler (known: hold, timeout, depth, queues, uid)"
                )))
                }
            }
        }
        Ok(o)
    }

    /// The options as `--bsopts` says them, for a saved configuration (only those
    /// that differ from the defaults).
    fn text(&self) -> Option<String> {
        let mut v = Vec::new();
        if self.hold != Duration::from_secs(30) {
            v.push(format!("hold={}", self.hold.as_secs()));
        }
        if self.timeout != Duration::from_secs(DEFAULT_TIMEOUT) {
            v.push(format!("timeout={}", self.timeout.as_secs()));
        }
        if self.depth != 64 {
            v.push(format!("depth={}", self.depth));
        }
        if self.max_queues != 16 {
            v.push(format!("queues={}", self.max_queues));
        }
        if let Some(u) = self.uid {
            v.push(format!("uid={u}"));
        }
        (!v.is_empty()).then(|| v.join(";"))
    }
}

/// What the handler side has seen, for `show` and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HandlerStatus {
    pub attached: bool,
    pub pid: i32,
    pub name: String,
    pub queues: u32,
    pub depth: u32,
    /// Commands the handler holds now.
    pub in_flight: u64,
    pub attaches: u64,
    pub detaches: u64,
    pub protocol_errors: u64,
    /// Commands issued again to a later handler after the one holding them went away.
    pub reissued: u64,
    /// Raw SCSI commands sent (the SCSI kind, or the block kind's unknown opcodes).
    pub raw_cdbs: u64,
    /// Commands the handler did not complete within `timeout` (it was disconnected).
    pub timeouts: u64,
    /// Task management functions passed to the handler.
    pub task_mgmt: u64,
}

pub(crate) struct Shared {
    path: PathBuf,
    opts: Options,
    conn: Mutex<Option<Arc<Conn>>>,
    changed: tokio::sync::watch::Sender<u64>,
    size: AtomicU64,
    flags: AtomicU32,
    features: AtomicU64,
    ever: AtomicBool,
    generation: AtomicU32,
    closed: AtomicBool,
    last_pid: AtomicI32,
    counters: Counters,
    attaches: AtomicU64,
    detaches: AtomicU64,
    protocol_errors: AtomicU64,
    reissued: AtomicU64,
    raw_cdbs: AtomicU64,
    timeouts: AtomicU64,
    task_mgmt: AtomicU64,
}

/// Raw CDBs that give the same result when sent again to a new handler after the one
/// holding them went away (SBC-4 reads, writes, cache synchronisation, WRITE SAME,
/// UNMAP, VERIFY; SPC-4 TEST UNIT READY, INQUIRY, MODE SENSE; READ CAPACITY). The
/// others fail with NOT READY, LOGICAL UNIT COMMUNICATION FAILURE, which initiators
/// retry.
fn repeatable(opcode: u8) -> bool {
    matches!(
        opcode,
        0x00 | 0x08
            | 0x0a
            | 0x12
            | 0x1a
            | 0x25
            | 0x28
            | 0x2a
            | 0x2f
            | 0x35
            | 0x41
            | 0x42
            | 0x5a
            | 0x88
            | 0x8a
            | 0x8f
            | 0x91
            | 0x93
            | 0x9e
            | 0xa8
            | 0xaa
    )
}

impl Shared {
    fn current(&self) -> Option<Arc<Conn>> {
        self.conn.lock().clone().filter(|c| !c.is_dead())
    }

    fn attached(&self, conn: Arc<Conn>, hello: &Hello) {
        self.size.store(hello.capacity, Ordering::Release);
        self.flags.store(hello.flags, Ordering::Release);
        self.features.store(conn.features, Ordering::Release);
        self.last_pid.store(conn.pid, Ordering::Relaxed);
        self.attaches.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            handler = conn.name,
            pid = conn.pid,
            socket = %self.path.display(),
            queues = conn.queues.len(),
            depth = conn.queues[0].depth(),
            capacity = hello.capacity,
            generation = conn.generation,
            "device handler attached"
        );
        *self.conn.lock() = Some(conn);
        self.ever.store(true, Ordering::Release);
        self.changed.send_modify(|n| *n += 1);
    }

    fn detached(&self, conn: &Conn, protocol_error: bool, in_flight: usize) {
        let mut cur = self.conn.lock();
        if cur.as_ref().is_some_and(|c| std::ptr::eq(c.as_ref(), conn)) {
            *cur = None;
        }
        drop(cur);
        self.detaches.fetch_add(1, Ordering::Relaxed);
        if protocol_error {
            self.protocol_errors.fetch_add(1, Ordering::Relaxed);
        }
        if in_flight > 0 {
            tracing::warn!(
                socket = %self.path.display(),
                in_flight,
                "commands in flight at the handler will be issued again to the next one"
            );
        }
        self.changed.send_modify(|n| *n += 1);
    }

    fn set_capacity(&self, bytes: u64) -> bool {
        let bs = u64::from(self.opts.block_size);
        if bytes == 0 || !bytes.is_multiple_of(bs) {
            return false;
        }
        self.size.store(bytes, Ordering::Release);
        tracing::info!(socket = %self.path.display(), capacity = bytes, "device handler: capacity changed");
        true
    }

    /// The attached handler, waiting until `deadline` for one (the hold from now, when
    /// it is None: the clock is read only when there is something to wait for).
    async fn wait_conn(
        &self,
        deadline: &mut Option<tokio::time::Instant>,
    ) -> io::Result<Arc<Conn>> {
        if let Some(c) = self.current() {
            if !self.closed.load(Ordering::Acquire) {
                return Ok(c);
            }
        }
        let deadline =
            *deadline.get_or_insert_with(|| tokio::time::Instant::now() + self.opts.hold);
        let mut rx = self.changed.subscribe();
        loop {
            if self.closed.load(Ordering::Acquire) {
                return Err(io::Error::from_raw_os_error(libc::ESHUTDOWN));
            }
            if let Some(c) = self.current() {
                return Ok(c);
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                return Err(io::Error::from_raw_os_error(libc::ENOTCONN));
            }
        }
    }

    /// Runs one command to completion on whichever handler is attached, issuing it
    /// again if the handler holding it goes away. Returns the completion's status.
    async fn run(
        &self,
        cmd: Cmd,
        write: Option<&[u8]>,
        mut read: Option<&mut [u8]>,
    ) -> io::Result<()> {
        let mut deadline = None;
        let mut again = false;
        loop {
            let conn = self.wait_conn(&mut deadline).await?;
            let q = conn.pick();
            match q.submit(cmd, write, read.as_deref_mut()).await {
                Ok(cpl) => {
                    if again {
                        self.reissued.fetch_add(1, Ordering::Relaxed);
                    }
                    return match cpl.status {
                        0 => Ok(()),
                        // A READ or WRITE says how far it got: the first bad block.
                        s if matches!(cmd.op, op::READ | op::WRITE) => Err(crate::ErrorAt {
                            errno: -s,
                            lba: (cmd.offset + cpl.bytes) / u64::from(self.opts.block_size),
                        }
                        .into_io()),
                        s => Err(io::Error::from_raw_os_error(-s)),
                    };
                }
                Err(queue::Detached) if conn.is_hung() => {
                    return Err(io::Error::from_raw_os_error(libc::ENOTCONN))
                }
                Err(queue::Detached) => {
                    again = true;
                    // A fresh deadline: this command was accepted, it deserves the
                    // full hold for the next handler.
                    deadline = None;
                }
            }
        }
    }

    /// Runs a raw SCSI command on whichever handler is attached, issuing it again if
    /// the handler holding it goes away and it is [`repeatable`].
    async fn scsi(&self, req: CdbRequest<'_>) -> io::Result<CdbReply> {
        let invalid = || io::Error::from(io::ErrorKind::InvalidInput);
        if req.cdb.is_empty() || req.cdb.len() > layout::MAX_CDB {
            return Err(invalid());
        }
        // Without Data-Out the handler gets a whole slot for Data-In, whatever the
        // initiator expects: the transport reports a residual against what the CDB
        // really returned (RFC 7143 11.4.5), as for an LU rtgtd serves itself.
        let (dir, mut room) = if !req.data_out.is_empty() {
            (layout::dir::TO_HANDLER, req.data_out.len() as u64)
        } else {
            (layout::dir::FROM_HANDLER, 0)
        };
        let mut cmd = Cmd {
            op: op::SCSI,
            offset: req.nexus,
            len: room,
            dir,
            cdb_len: req.cdb.len() as u8,
            ..Cmd::default()
        };
        cmd.cdb[..req.cdb.len()].copy_from_slice(req.cdb);
        let write = (dir == layout::dir::TO_HANDLER).then_some(req.data_out);
        self.raw_cdbs.fetch_add(1, Ordering::Relaxed);
        let mut deadline = None;
        let mut again = false;
        let mut abort = req.abort;
        let mut aborted = false;
        loop {
            let conn = self.wait_conn(&mut deadline).await?;
            let q = conn.pick();
            let slot = u64::from(q.region.geo.slot_size);
            if dir == layout::dir::FROM_HANDLER {
                room = slot;
            } else if room > slot {
                return Err(invalid());
            }
            cmd.len = room;
            let tag = AtomicU32::new(0);
            let fut = q.submit_with(cmd, write, &tag, |region, cmd, cpl| {
                let n = if cpl.status == layout::CHECK_CONDITION || dir == layout::dir::FROM_HANDLER
                {
                    cpl.bytes as usize
                } else {
                    0
                };
                let mut v = vec![0u8; n];
                if n > 0 {
                    region.copy_out(cmd.data, &mut v);
                }
                v
            });
            tokio::pin!(fut);
            let ran = match abort.take() {
                None => fut.await,
                Some(a) => {
                    tokio::select! {
                        biased;
                        r = &mut fut => r,
                        () = a => {
                            // ABORT TASK reaches the handler (SAM-5 7.2); the command
                            // still ends by its completion, or by the handler's timeout.
                            aborted = true;
                            self.task_mgmt.fetch_add(1, Ordering::Relaxed);
                            let t = tag.load(Ordering::Acquire);
                            let (r, _) = tokio::join!(&mut fut, q.task_mgmt(layout::tmf::ABORT_TASK, t));
                            r
                        }
                    }
                }
            };
            match ran {
                Ok((cpl, bytes)) => {
                    if again {
                        self.reissued.fetch_add(1, Ordering::Relaxed);
                    }
                    if cpl.status < 0 {
                        return Err(io::Error::from_raw_os_error(-cpl.status));
                    }
                    let status = cpl.status as u8;
                    return Ok(if cpl.status == layout::CHECK_CONDITION {
                        CdbReply {
                            status,
                            sense: bytes,
                            ..CdbReply::default()
                        }
                    } else {
                        CdbReply {
                            status,
                            data_in: bytes,
                            ..CdbReply::default()
                        }
                    });
                }
                // An aborted command is never issued again; nobody hears its end.
                Err(queue::Detached) if aborted => {
                    return Err(io::Error::from_raw_os_error(libc::ECANCELED))
                }
                Err(queue::Detached) if repeatable(req.cdb[0]) && !conn.is_hung() => {
                    again = true;
                    deadline = None;
                }
                Err(queue::Detached) => return Err(io::Error::from_raw_os_error(libc::ENOTCONN)),
            }
        }
    }

    fn has(&self, f: u64) -> bool {
        self.features.load(Ordering::Acquire) & f != 0
    }

    async fn read(&self, mut buf: Vec<u8>, offset: u64) -> io::Result<Vec<u8>> {
        let mut done = 0usize;
        while done < buf.len() {
            let n = (buf.len() - done).min(SLOT_SIZE as usize);
            let cmd = Cmd {
                op: op::READ,
                offset: offset + done as u64,
                len: n as u64,
                ..Cmd::default()
            };
            self.run(cmd, None, Some(&mut buf[done..done + n])).await?;
            done += n;
        }
        self.counters.read();
        Ok(buf)
    }

    async fn write(&self, buf: Vec<u8>, offset: u64, fua: bool) -> io::Result<Vec<u8>> {
        let fua_here = fua && self.has(feature::FUA);
        let mut done = 0usize;
        while done < buf.len() {
            let n = (buf.len() - done).min(SLOT_SIZE as usize);
            let cmd = Cmd {
                op: op::WRITE,
                flags: if fua_here { cmd_flag::FUA } else { 0 },
                offset: offset + done as u64,
                len: n as u64,
                ..Cmd::default()
            };
            self.run(cmd, Some(&buf[done..done + n]), None).await?;
            done += n;
        }
        if fua && !fua_here {
            self.flush().await?;
        }
        self.counters.write(fua);
        Ok(buf)
    }

    async fn flush(&self) -> io::Result<()> {
        if !self.has(feature::FLUSH) {
            // No volatile cache at the handler: nothing to flush.
            return Ok(());
        }
        let cmd = Cmd {
            op: op::FLUSH,
            ..Cmd::default()
        };
        self.run(cmd, None, None).await?;
        self.counters.flush();
        Ok(())
    }
}

/// The store: a socket for handlers and whichever is attached.
pub struct HandlerStore {
    sh: Arc<Shared>,
}

/// Stores opened before the daemon forks start their listener after it (threads do
/// not survive fork); see [`crate::defer_connections`].
static DEFERRED: Mutex<Option<Vec<Deferred>>> = Mutex::new(None);

/// A store and its bound socket, waiting for the daemon to fork.
type Deferred = (Weak<Shared>, std::os::unix::net::UnixListener);

pub(crate) fn defer() {
    DEFERRED.lock().get_or_insert_with(Vec::new);
}

pub(crate) fn release() {
    for (w, l) in DEFERRED.lock().take().unwrap_or_default() {
        spawn_listener(w, l);
    }
}

fn spawn_listener(w: Weak<Shared>, l: std::os::unix::net::UnixListener) {
    std::thread::Builder::new()
        .name("rtgt-hlisten".into())
        .spawn(move || attach::listen(w, l))
        .expect("spawn the handler listener");
}

pub use queue::{defer_kicks, end_of_turn, send_overdue_kicks};
pub use rtgt_handler::socket_path;

impl HandlerStore {
    pub fn open(opts: &OpenOptions) -> Result<HandlerStore, OpenError> {
        let o = Options::parse(opts)?;
        let path = socket_path(&opts.path);
        let l = attach::bind(&path).map_err(|source| OpenError::Io {
            path: path.clone(),
            source,
        })?;
        let sh = Arc::new(Shared {
            path,
            opts: o,
            conn: Mutex::new(None),
            changed: tokio::sync::watch::channel(0).0,
            size: AtomicU64::new(0),
            flags: AtomicU32::new(0),
            features: AtomicU64::new(0),
            ever: AtomicBool::new(false),
            generation: AtomicU32::new(0),
            closed: AtomicBool::new(false),
            last_pid: AtomicI32::new(0),
            counters: Counters::default(),
            attaches: AtomicU64::new(0),
            detaches: AtomicU64::new(0),
            protocol_errors: AtomicU64::new(0),
            reissued: AtomicU64::new(0),
            raw_cdbs: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            task_mgmt: AtomicU64::new(0),
        });
        let w = Arc::downgrade(&sh);
        let mut d = DEFERRED.lock();
        match d.as_mut() {
            Some(v) => v.push((w, l)),
            None => spawn_listener(w, l),
        }
        Ok(HandlerStore { sh })
    }

    /// The socket handlers connect to.
    pub fn socket(&self) -> &Path {
        &self.sh.path
    }

    pub fn status(&self) -> HandlerStatus {
        let c = self.sh.current();
        HandlerStatus {
            attached: c.is_some(),
            pid: c
                .as_ref()
                .map(|c| c.pid)
                .unwrap_or_else(|| self.sh.last_pid.load(Ordering::Relaxed)),
            name: c.as_ref().map(|c| c.name.clone()).unwrap_or_default(),
            queues: c.as_ref().map(|c| c.queues.len() as u32).unwrap_or(0),
            depth: c.as_ref().map(|c| c.queues[0].depth()).unwrap_or(0),
            in_flight: c
                .as_ref()
                .map(|c| c.queues.iter().map(|q| q.in_flight() as u64).sum())
                .unwrap_or(0),
            attaches: self.sh.attaches.load(Ordering::Relaxed),
            detaches: self.sh.detaches.load(Ordering::Relaxed),
            protocol_errors: self.sh.protocol_errors.load(Ordering::Relaxed),
            reissued: self.sh.reissued.load(Ordering::Relaxed),
            raw_cdbs: self.sh.raw_cdbs.load(Ordering::Relaxed),
            timeouts: self.sh.timeouts.load(Ordering::Relaxed),
            task_mgmt: self.sh.task_mgmt.load(Ordering::Relaxed),
        }
    }
}

impl Drop for HandlerStore {
    fn drop(&mut self) {
        self.sh.closed.store(true, Ordering::Release);
        // Not `if let` on the lock: its guard would live through `fail`, which locks it.
        let conn = self.sh.conn.lock().clone();
        if let Some(c) = conn {
            c.fail("its logical unit was deleted", false);
        }
    }
}

#[async_trait]
impl BackingStore for HandlerStore {
    fn kind(&self) -> &'static str {
        "handler"
    }
    fn size(&self) -> u64 {
        self.sh.size.load(Ordering::Acquire)
    }
    /// Ready once a handler has attached; from then on the LU keeps its capacity and
    /// commands wait for a handler (up to `hold`) when none is attached.
    fn ready(&self) -> bool {
        self.sh.ever.load(Ordering::Acquire)
    }
    fn capabilities(&self) -> Capabilities {
        let f = self.sh.flags.load(Ordering::Acquire);
        Capabilities {
            read_only: f & device_flag::READ_ONLY != 0,
            sync: self.sh.opts.sync || f & device_flag::WRITE_THROUGH != 0,
            unmap: self.sh.has(feature::UNMAP),
            unmap_zeroes: f & device_flag::UNMAP_ZEROES != 0,
            logical_block_size: self.sh.opts.block_size,
            ..Capabilities::default()
        }
    }
    fn read_at(&self, buf: Vec<u8>, offset: u64) -> IoFuture<'_, Vec<u8>> {
        IoFuture::pending(self.sh.read(buf, offset))
    }
    fn write_at(&self, buf: Vec<u8>, offset: u64) -> IoFuture<'_, Vec<u8>> {
        IoFuture::pending(self.sh.write(buf, offset, false))
    }
    async fn write_at_durable(&self, buf: Vec<u8>, offset: u64) -> io::Result<Vec<u8>> {
        self.sh.write(buf, offset, true).await
    }
    async fn flush(&self) -> io::Result<()> {
        self.sh.flush().await
    }
    async fn unmap(&self, offset: u64, len: u64) -> io::Result<()> {
        if !self.sh.has(feature::UNMAP) {
            return Err(io::Error::from(io::ErrorKind::Unsupported));
        }
        let cmd = Cmd {
            op: op::UNMAP,
            offset,
            len,
            ..Cmd::default()
        };
        self.sh.run(cmd, None, None).await
    }
    async fn write_zeroes(&self, offset: u64, len: u64) -> io::Result<()> {
        if self.sh.has(feature::WRITE_ZEROES) {
            let cmd = Cmd {
                op: op::WRITE_ZEROES,
                offset,
                len,
                ..Cmd::default()
            };
            return self.sh.run(cmd, None, None).await;
        }
        const CHUNK: u64 = 1 << 20;
        let mut done = 0;
        while done < len {
            let n = CHUNK.min(len - done);
            self.sh
                .write(vec![0; n as usize], offset + done, false)
                .await?;
            done += n;
        }
        Ok(())
    }
    fn bsopts(&self) -> Option<String> {
        self.sh.opts.text()
    }
    fn metrics(&self) -> Vec<StoreMetric> {
        let s = self.status();
        let m = |name, help, counter, value| StoreMetric {
            name,
            help,
            counter,
            value,
        };
        vec![
            m(
                "handler_attached",
                "1 while a device handler serves the LU.",
                false,
                u64::from(s.attached),
            ),
            m(
                "handler_pid",
                "Process id of the device handler (the last one while none is attached).",
                false,
                s.pid.max(0) as u64,
            ),
            m(
                "handler_queues",
                "Queues of the attached device handler.",
                false,
                u64::from(s.queues),
            ),
            m(
                "handler_queue_depth",
                "Entries per queue of the attached device handler.",
                false,
                u64::from(s.depth),
            ),
            m(
                "handler_in_flight",
                "Commands the device handler holds now.",
                false,
                s.in_flight,
            ),
            m(
                "handler_attaches",
                "Device handlers that attached.",
                true,
                s.attaches,
            ),
            m(
                "handler_detaches",
                "Device handlers that went away.",
                true,
                s.detaches,
            ),
            m(
                "handler_protocol_errors",
                "Device handlers disconnected for breaking the protocol.",
                true,
                s.protocol_errors,
            ),
            m(
                "handler_timeouts",
                "Device handlers disconnected for holding a command past timeout=.",
                true,
                s.timeouts,
            ),
            m(
                "handler_reissued",
                "Commands issued again to a later device handler.",
                true,
                s.reissued,
            ),
            m(
                "handler_raw_cdbs",
                "Raw SCSI commands sent to the device handler.",
                true,
                s.raw_cdbs,
            ),
            m(
                "handler_task_management",
                "Task management functions sent to the device handler.",
                true,
                s.task_mgmt,
            ),
        ]
    }
    fn raw_cdbs(&self) -> RawCdbs {
        if self.sh.opts.kind == rtgt_handler::wire::kind::SCSI {
            RawCdbs::All {
                own_reservations: self.sh.flags.load(Ordering::Acquire)
                    & device_flag::OWN_RESERVATIONS
                    != 0,
            }
        } else if self.sh.current().is_some() && self.sh.has(feature::SCSI_EXCEPT) {
            RawCdbs::Unknown
        } else {
            RawCdbs::None
        }
    }
    async fn execute_cdb(&self, req: CdbRequest<'_>) -> io::Result<CdbReply> {
        self.sh.scsi(req).await
    }
    /// LOGICAL UNIT RESET (SAM-5 7.7) on every queue of the attached handler; one that
    /// does not answer within `timeout=` is disconnected by its queue's watchdog.
    async fn task_management(&self, lu_reset: bool, tags: &[u64]) -> io::Result<()> {
        let Some(conn) = self.sh.current() else {
            return Ok(());
        };
        let _ = tags;
        if lu_reset {
            self.sh.task_mgmt.fetch_add(1, Ordering::Relaxed);
            for (qi, q) in conn.queues.iter().enumerate() {
                queue::ensure_reaper(&conn, qi);
                if q.task_mgmt(layout::tmf::LU_RESET, 0).await.is_err() {
                    return Err(io::Error::from_raw_os_error(libc::ENOTCONN));
                }
            }
        }
        Ok(())
    }
    fn stats(&self) -> IoStats {
        self.sh.counters.snapshot()
    }
    fn status_lines(&self) -> Vec<String> {
        let s = self.status();
        vec![
            format!(
                "Handler: {}, pid {}, queues {}, queue depth {}, in flight {}",
                if s.attached {
                    "attached"
                } else {
                    "not attached"
                },
                s.pid,
                s.queues,
                s.depth,
                s.in_flight
            ),
            format!(
                "Handler counters: attaches {}, detaches {}, protocol errors {}, reissued {}, raw CDBs {}, timeouts {}, task management {}",
                s.attaches, s.detaches, s.protocol_errors, s.reissued, s.raw_cdbs, s.timeouts, s.task_mgmt
            ),
        ]
    }
}
