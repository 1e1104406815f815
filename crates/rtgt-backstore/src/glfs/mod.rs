//! `glfs`: a logical unit on a file of a GlusterFS volume, through libgfapi's
//! asynchronous API (no FUSE mount).
//!
//! `-b volume@host:path` names the file (tgt bs_glfs's syntax: the volume, the server
//! glusterd answers on at port 24007, the file's path from the volume's root);
//! `--bsopts "logfile=PATH;loglevel=N"` are bs_glfs's (libgfapi's own log), plus rtgt's
//! `timeout=SECONDS`.
//!
//! Every I/O is a `glfs_*_async` call whose completion callback (on a gfapi thread)
//! hands the result to a oneshot channel the issuing task awaits, so the reactor that
//! issued a command is the one that finishes it, and no reactor ever waits for the
//! volume. The buffer travels with the request and is freed only once gfapi is done
//! with it, even when the command was aborted or timed out meanwhile.
//!
//! Mounting the volume and opening the file block (`glfs_init`, `glfs_open`); they run
//! on the opener's thread, never on a reactor, and a volume that cannot be reached
//! leaves the store not [`ready`](BackingStore::ready) while that thread retries.
//! `glfs_fini` takes about 10 s on a mounted volume (gluster issue 2606): the file is
//! closed and the mount released on a thread of their own when the store goes.
//!
//! Faults: gfapi fails every operation at once with ENOTCONN while a brick is down and
//! reconnects by itself (re-opening the file) when it is back. Those errors become NOT
//! READY, LOGICAL UNIT COMMUNICATION FAILURE; an operation the volume does not answer
//! within `timeout` gets LOGICAL UNIT COMMUNICATION TIME-OUT (rtgt-scsi's store_error).
//! The first failure of an outage is logged, the rest only counted, and the recovery is
//! logged with that count.
//!
//! A timed-out request is not cancelled (gfapi cannot): it may still reach the brick
//! later, after a newer write to the same blocks that the initiator was told is done,
//! and overwrite it. So a timeout fences the LU ([`Fence`]): until every request that
//! was in flight has come back from gfapi, new requests fail at once with NOT READY,
//! LOGICAL UNIT COMMUNICATION FAILURE (the initiator retries them), and no acknowledged
//! write can be overtaken by an older one.

mod ffi;
mod spec;
pub use spec::{GlfsSpec, BSOPTS, DEFAULT_TIMEOUT_SECS};

use std::ffi::{c_int, c_void, CString};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::oneshot;

use crate::opener::{self, OpenFail};
use crate::{
    BackingStore, Capabilities, Counters, Extent, IoFuture, IoStats, OpenError, OpenOptions,
};

/// The port glusterd answers on; tgt's bs_glfs fixes it too.
pub const GLUSTERD_PORT: c_int = 24007;

fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// gfapi's ways of saying the brick (or glusterd) cannot be reached, as the one errno
/// the SCSI layer turns into LOGICAL UNIT COMMUNICATION FAILURE. EBADFD: the file's fd
/// is not yet re-opened on a brick that came back.
fn normalize(errno: i32) -> i32 {
    match errno {
        libc::ENOTCONN
        | libc::EBADFD
        | libc::ECONNREFUSED
        | libc::ECONNRESET
        | libc::ECONNABORTED
        | libc::EHOSTDOWN
        | libc::EHOSTUNREACH
        | libc::ENETUNREACH
        | libc::ENETDOWN
        | libc::EPIPE
        | libc::ESHUTDOWN => libc::ENOTCONN,
        e => e,
    }
}

/// The mounted volume and the open file, released together, off the caller's thread.
struct Handles {
    fs: *mut ffi::glfs_t,
    fd: *mut ffi::glfs_fd_t,
}

// SAFETY: libgfapi's handles may be used from any thread concurrently (its calls take
// their own locks); the raw pointers are only handed back to it.
unsafe impl Send for Handles {}
unsafe impl Sync for Handles {}

impl Drop for Handles {
    fn drop(&mut self) {
        let h = Handles {
            fs: std::mem::replace(&mut self.fs, std::ptr::null_mut()),
            fd: std::mem::replace(&mut self.fd, std::ptr::null_mut()),
        };
        if h.fs.is_null() {
            return;
        }
        // glfs_fini waits about 10 s on a mounted volume (gluster issue 2606), and the
        // last reference may go on a gfapi callback thread, a reactor or the control
        // path: none of them may wait, so the release has a thread of its own.
        let r = std::thread::Builder::new()
            .name("glfs-fini".into())
            .spawn(move || {
                // SAFETY: opened by `connect` and released once, here; no request is
                // in flight (each holds a reference to these handles).
                unsafe {
                    if !h.fd.is_null() {
                        ffi::glfs_close(h.fd);
                    }
                    ffi::glfs_fini(h.fs);
                }
                std::mem::forget(h);
            });
        if let Err(e) = r {
            tracing::warn!("glfs: cannot start a thread to release a volume ({e}): leaked");
        }
    }
}

/// Mounts the volume and opens the file (blocking: `glfs_init` waits for glusterd and
/// the bricks).
fn connect(spec: &GlfsSpec, flags: c_int) -> Result<(Handles, u64), OpenFail> {
    use OpenFail::{Permanent, Transient};
    let vol = cstr(&spec.volume).map_err(Permanent)?;
    let host = cstr(&spec.host).map_err(Permanent)?;
    let path = cstr(&spec.path).map_err(Permanent)?;
    let logfile = spec
        .logfile
        .as_deref()
        .map(cstr)
        .transpose()
        .map_err(Permanent)?;
    let timeout = cstr(&spec.timeout.to_string()).map_err(Permanent)?;
    // SAFETY: plain calls with valid NUL-terminated strings; `h` owns what they return
    // and releases it on every path (Drop).
    unsafe {
        let fs = ffi::glfs_new(vol.as_ptr());
        if fs.is_null() {
            return Err(Transient(io::Error::last_os_error()));
        }
        let mut h = Handles {
            fs,
            fd: std::ptr::null_mut(),
        };
        if ffi::glfs_set_volfile_server(fs, c"tcp".as_ptr(), host.as_ptr(), GLUSTERD_PORT) != 0 {
            return Err(Permanent(io::Error::last_os_error()));
        }
        // Before glfs_init, so that a failing mount is in the log too (bs_glfs sets it
        // after, and says only EIO).
        if logfile.is_some() || spec.loglevel.is_some() {
            let f = logfile.as_ref().map_or(c"-".as_ptr(), |f| f.as_ptr());
            let level = spec.loglevel.unwrap_or(7) as c_int;
            if ffi::glfs_set_logging(fs, f, level) != 0 {
                let e = io::Error::last_os_error();
                return Err(Permanent(io::Error::new(
                    e.kind(),
                    format!("logfile {}: {e}", spec.logfile.as_deref().unwrap_or("-")),
                )));
            }
        }
        // A brick that stops answering (hung, or its host gone) is given up after
        // `timeout` seconds instead of the volume's 42, and its requests fail with
        // ENOTCONN. Write-behind keeps writes a failed flush could not write and
        // writes them at the next flush (qemu's gluster driver sets it too), so a
        // SYNCHRONIZE CACHE retried after an outage makes them durable.
        for (xl, k, v) in [
            (c"*-client-*", c"ping-timeout", timeout.as_c_str()),
            (c"*-write-behind", c"resync-failed-syncs-after-fsync", c"on"),
        ] {
            if ffi::glfs_set_xlator_option(fs, xl.as_ptr(), k.as_ptr(), v.as_ptr()) != 0 {
                tracing::warn!(
                    "glfs {}: option {k:?} not set: {}",
                    spec.name(),
                    io::Error::last_os_error()
                );
            }
        }
        if ffi::glfs_init(fs) != 0 {
            let e = io::Error::last_os_error();
            // glfs_init fails alike (ENOTCONN, or ENOMEM from an empty volfile) for a
            // server that is down and a volume not (yet) created or started: both may
            // be mended without touching this LU.
            return Err(Transient(io::Error::new(
                e.kind(),
                format!(
                    "mounting volume {} from {}: {e} (is glusterd up and the volume started?)",
                    spec.volume, spec.host
                ),
            )));
        }
        h.fd = ffi::glfs_open(fs, path.as_ptr(), flags);
        if h.fd.is_null() {
            let n = errno();
            let e = io::Error::from_raw_os_error(n);
            let e = io::Error::new(e.kind(), format!("{}: {e}", spec.name()));
            return Err(match n {
                libc::ENOENT | libc::EISDIR | libc::EACCES | libc::EPERM | libc::EROFS => {
                    Permanent(e)
                }
                _ => Transient(e),
            });
        }
        let mut st: libc::stat = std::mem::zeroed();
        if ffi::glfs_fstat(h.fd, &mut st) != 0 {
            return Err(Transient(io::Error::last_os_error()));
        }
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(Permanent(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a regular file", spec.name()),
            )));
        }
        Ok((h, st.st_size as u64))
    }
}

/// What a request leaves when it completes: gfapi's return value, its errno, and the
/// buffer it used.
struct Done {
    ret: isize,
    errno: i32,
    buf: Vec<u8>,
}

/// Lives from submission to completion: owns the buffer gfapi reads into or writes from
/// and the handles it works on, so neither can go away under it.
struct Pending {
    tx: Option<oneshot::Sender<Done>>,
    buf: Vec<u8>,
    /// Kept alive until the completion: the file is not closed under a request (gfapi
    /// drops the callback of a request whose file was closed meanwhile, which would
    /// leave the command waiting for its timeout).
    _handles: Arc<Handles>,
    /// Counts the request in flight until the callback runs.
    fence: Arc<Fence>,
}

/// Requests handed to gfapi and not yet called back, and whether a timeout left some of
/// them behind: while it did, no new request is issued (see the module's comment).
#[derive(Default)]
struct Fence {
    in_flight: AtomicU64,
    draining: AtomicBool,
}

impl Fence {
    /// May a new request go to gfapi? Not while requests a timeout abandoned may still
    /// land; once none is in flight any more, the fence lifts.
    fn open(&self) -> bool {
        if !self.draining.load(Ordering::Acquire) {
            return true;
        }
        if self.in_flight.load(Ordering::Acquire) == 0 {
            self.draining.store(false, Ordering::Release);
            return true;
        }
        false
    }
}

extern "C" fn on_complete(
    _fd: *mut ffi::glfs_fd_t,
    ret: isize,
    _pre: *mut ffi::glfs_stat,
    _post: *mut ffi::glfs_stat,
    data: *mut c_void,
) {
    // Read first: anything below may change this thread's errno.
    let errno = if ret < 0 { errno() } else { 0 };
    // SAFETY: `data` is the Box<Pending> leaked at submission, reclaimed exactly once,
    // here.
    let mut p = unsafe { Box::from_raw(data as *mut Pending) };
    p.fence.in_flight.fetch_sub(1, Ordering::AcqRel);
    if let Some(tx) = p.tx.take() {
        let _ = tx.send(Done {
            ret,
            errno,
            buf: std::mem::take(&mut p.buf),
        });
    }
    // The handles' last reference may go here (a LU deleted with I/O in flight); their
    // Drop releases them on another thread.
    drop(p);
}

/// Failure bookkeeping for the log: an outage is logged when it starts (with its
/// errno) and when it ends (with the number of failed operations), never per command.
#[derive(Default)]
struct Health {
    /// The errno of the failures under way; 0 while operations succeed.
    failing: AtomicI32,
    failures: AtomicU64,
}

/// The store's state, shared with the opener thread.
pub(crate) struct Inner {
    spec: GlfsSpec,
    /// `--bsopts` as given.
    opts: Vec<(String, String)>,
    read_only: bool,
    sync: bool,
    /// Set once, by the opener, when the file is open.
    conn: OnceLock<Arc<Handles>>,
    /// 0 until the file is open.
    size: AtomicU64,
    health: Health,
    fence: Arc<Fence>,
}

impl opener::Connect for Inner {
    fn medium(&self) -> String {
        format!("glfs file {}", self.spec.name())
    }

    fn try_open(&self) -> Result<(), OpenFail> {
        let mut flags = if self.read_only {
            libc::O_RDONLY
        } else {
            libc::O_RDWR
        };
        if self.sync {
            flags |= libc::O_DSYNC;
        }
        let (h, size) = connect(&self.spec, flags)?;
        self.size.store(size, Ordering::Release);
        let _ = self.conn.set(Arc::new(h));
        tracing::info!(
            file = self.spec.name(),
            size,
            read_only = self.read_only,
            sync = self.sync,
            timeout = self.spec.timeout,
            "glfs file opened"
        );
        Ok(())
    }
}

impl Inner {
    fn failed(&self, e: i32) {
        let n = self.health.failures.fetch_add(1, Ordering::Relaxed) + 1;
        let before = self.health.failing.swap(e, Ordering::AcqRel);
        if before != e {
            let err = io::Error::from_raw_os_error(e);
            tracing::warn!(
                file = self.spec.name(),
                "glfs I/O failing: {err}; commands fail until the volume answers (further \
                 failures are counted, not logged)"
            );
        } else {
            tracing::debug!(
                file = self.spec.name(),
                failures = n,
                "glfs I/O failed: {e}"
            );
        }
    }

    /// An operation of kind `op` succeeded: does that end the failures under way? A
    /// write gfapi's write-behind acknowledged from memory proves nothing (it succeeds
    /// while the brick is down, and the flush after it fails); a read proves the brick
    /// answers but not that it has space; a request that must reach the brick's disk
    /// (fdatasync, discard, zerofill) proves both.
    fn succeeded(&self, op: Op) {
        let f = self.health.failing.load(Ordering::Acquire);
        let ends = match op {
            Op::Write => false,
            Op::Read => !matches!(f, libc::ENOSPC | libc::EDQUOT),
            Op::Sync => true,
        };
        if f == 0 || !ends {
            return;
        }
        if self
            .health
            .failing
            .compare_exchange(f, 0, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            let n = self.health.failures.swap(0, Ordering::Relaxed);
            tracing::info!(
                file = self.spec.name(),
                failed = n,
                "glfs I/O succeeds again after {n} failed operations"
            );
        }
    }
}

/// What kind of request succeeded, for [`Inner::succeeded`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Read,
    Write,
    /// Reaches the brick's disk before it completes.
    Sync,
}

/// A file on a Gluster volume as a backing store.
pub struct GlfsStore {
    inner: Arc<Inner>,
    counters: Counters,
}

/// The error of an operation before the file is open: the SCSI layer reports NOT READY,
/// LOGICAL UNIT COMMUNICATION FAILURE for it.
fn not_open() -> io::Error {
    io::Error::from_raw_os_error(libc::ENOTCONN)
}

/// What a submission gets: the open file, the request's buffer (empty when it has
/// none), and the callback with its argument.
type Submit<'a> = dyn FnOnce(*mut ffi::glfs_fd_t, &mut Vec<u8>, ffi::glfs_io_cbk, *mut c_void) -> c_int
    + Send
    + 'a;

impl GlfsStore {
    /// Parses `opts.path` and `opts.bsopts` and opens the file. Waits for the first
    /// attempt at most [`opener::FIRST_WAIT`] (or `timeout` if shorter): a permanent
    /// failure in that time (no such file) is the error; otherwise the store is
    /// returned, ready or not, and the opener keeps trying in the background.
    pub fn open(opts: &OpenOptions) -> Result<Self, OpenError> {
        let bad = |e: String| OpenError::Glfs(io::Error::new(io::ErrorKind::InvalidInput, e));
        let path = opts.path.to_string_lossy().to_string();
        let spec = GlfsSpec::parse(&path, &opts.bsopts).map_err(bad)?;
        if opts.direct {
            return Err(bad(
                "--bsoflags direct: not supported by bstype glfs (use sync)".into(),
            ));
        }
        let wait = opener::FIRST_WAIT.min(Duration::from_secs(spec.timeout.into()));
        let inner = Arc::new(Inner {
            spec,
            opts: opts.bsopts.clone(),
            read_only: opts.read_only,
            sync: opts.sync,
            conn: OnceLock::new(),
            size: AtomicU64::new(0),
            health: Health::default(),
            fence: Arc::default(),
        });
        opener::start(&inner, wait).map_err(OpenError::Glfs)?;
        Ok(Self {
            inner,
            counters: Counters::default(),
        })
    }

    fn handles(&self) -> io::Result<&Arc<Handles>> {
        self.inner.conn.get().ok_or_else(not_open)
    }

    /// Leaks a [`Pending`] to gfapi and submits the request; the completion callback
    /// reclaims it. Not async, so no raw pointer lives across an await.
    fn submit(&self, buf: Vec<u8>, submit: Box<Submit<'_>>) -> io::Result<oneshot::Receiver<Done>> {
        let h = self.handles()?.clone();
        let fence = &self.inner.fence;
        if !fence.open() {
            return Err(not_open());
        }
        let fd = h.fd;
        let (tx, rx) = oneshot::channel();
        fence.in_flight.fetch_add(1, Ordering::AcqRel);
        let p = Box::into_raw(Box::new(Pending {
            tx: Some(tx),
            buf,
            _handles: h,
            fence: fence.clone(),
        }));
        // SAFETY: `p` stays alive until on_complete reclaims it, and its buffer's heap
        // allocation does not move; nothing here touches `p` after a successful
        // submission (the callback may already have run).
        unsafe {
            let rc = submit(fd, &mut (*p).buf, on_complete, p as *mut c_void);
            if rc != 0 {
                let e = errno();
                let p = Box::from_raw(p);
                p.fence.in_flight.fetch_sub(1, Ordering::AcqRel);
                drop(p);
                return Err(io::Error::from_raw_os_error(e));
            }
        }
        Ok(rx)
    }

    /// Submits one request and waits for it without blocking, at most `timeout`.
    /// Returns gfapi's result and the buffer; failures are normalized (see
    /// [`normalize`]) and logged once per outage.
    async fn io(&self, buf: Vec<u8>, op: Op, submit: Box<Submit<'_>>) -> io::Result<Done> {
        let r = match self.submit(buf, submit) {
            Err(e) => Err(e.raw_os_error().unwrap_or(libc::EIO)),
            Ok(rx) => {
                let limit = Duration::from_secs(self.inner.spec.timeout.into());
                match tokio::time::timeout(limit, rx).await {
                    // Gfapi still owns the request; its completion frees it. Until
                    // then it may still land, so nothing new goes out (Fence).
                    Err(_) => {
                        self.inner.fence.draining.store(true, Ordering::Release);
                        Err(libc::ETIMEDOUT)
                    }
                    Ok(Err(_)) => Err(libc::EIO),
                    Ok(Ok(d)) if d.ret < 0 => Err(d.errno),
                    Ok(Ok(d)) => Ok(d),
                }
            }
        };
        match r {
            Ok(d) => {
                self.inner.succeeded(op);
                Ok(d)
            }
            Err(e) => {
                let e = normalize(e);
                self.inner.failed(e);
                Err(io::Error::from_raw_os_error(e))
            }
        }
    }
}

#[async_trait]
impl BackingStore for GlfsStore {
    fn kind(&self) -> &'static str {
        "glfs"
    }

    fn size(&self) -> u64 {
        self.inner.size.load(Ordering::Acquire)
    }

    fn ready(&self) -> bool {
        self.inner.conn.get().is_some()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            // O_DSYNC: the bricks write through (write-behind stands aside for such a
            // file). Otherwise gfapi's write-behind acknowledges writes from client
            // memory: a volatile write cache, flushed by fdatasync.
            sync: self.inner.sync,
            read_only: self.inner.read_only,
            // glfs_discard is a hole punched in the brick's file, which reads back as
            // zeroes (SBC-4 LBPRZ).
            unmap: true,
            unmap_zeroes: true,
            ..Capabilities::default()
        }
    }

    fn read_at(&self, buf: Vec<u8>, offset: u64) -> IoFuture<'_, Vec<u8>> {
        IoFuture::pending(async move {
            let len = buf.len();
            let d = self
                .io(
                    buf,
                    Op::Read,
                    Box::new(move |fd, b, cb, arg| unsafe {
                        ffi::glfs_pread_async(
                            fd,
                            b.as_mut_ptr() as *mut c_void,
                            len,
                            offset as libc::off_t,
                            0,
                            cb,
                            arg,
                        )
                    }),
                )
                .await?;
            self.counters.read();
            let mut buf = d.buf;
            // A short read (past the end of the file) reads as zeroes.
            let got = (d.ret as usize).min(len);
            buf[got..].fill(0);
            Ok(buf)
        })
    }

    fn write_at(&self, buf: Vec<u8>, offset: u64) -> IoFuture<'_, Vec<u8>> {
        IoFuture::pending(async move {
            let len = buf.len();
            let n = c_int::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
            let d = self
                .io(
                    buf,
                    Op::Write,
                    Box::new(move |fd, b, cb, arg| unsafe {
                        ffi::glfs_pwrite_async(
                            fd,
                            b.as_ptr() as *const c_void,
                            n,
                            offset as libc::off_t,
                            0,
                            cb,
                            arg,
                        )
                    }),
                )
                .await?;
            if (d.ret as usize) < len {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    format!("glfs: short write ({} of {len} bytes)", d.ret),
                ));
            }
            self.counters.write(false);
            Ok(d.buf)
        })
    }

    async fn flush(&self) -> io::Result<()> {
        self.io(
            Vec::new(),
            Op::Sync,
            Box::new(|fd, _, cb, arg| unsafe { ffi::glfs_fdatasync_async(fd, cb, arg) }),
        )
        .await?;
        self.counters.flush();
        Ok(())
    }

    /// FUA: gfapi has no per-write durability flag, so the write is followed by an
    /// fdatasync (with `sync` the write alone is durable).
    async fn write_at_durable(&self, buf: Vec<u8>, offset: u64) -> io::Result<Vec<u8>> {
        let buf = self.write_at(buf, offset).await?;
        if !self.inner.sync {
            self.flush().await?;
        }
        self.counters.write(true);
        Ok(buf)
    }

    async fn unmap(&self, offset: u64, len: u64) -> io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        self.io(
            Vec::new(),
            Op::Sync,
            Box::new(move |fd, _, cb, arg| unsafe {
                ffi::glfs_discard_async(fd, offset as libc::off_t, len as usize, cb, arg)
            }),
        )
        .await?;
        Ok(())
    }

    /// glfs_zerofill: the brick zeroes the range (fallocate ZERO_RANGE where its file
    /// system has it) without the data crossing the network.
    async fn write_zeroes(&self, offset: u64, len: u64) -> io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        self.io(
            Vec::new(),
            Op::Sync,
            Box::new(move |fd, _, cb, arg| unsafe {
                ffi::glfs_zerofill_async(fd, offset as libc::off_t, len as libc::off_t, cb, arg)
            }),
        )
        .await?;
        self.counters.write(false);
        Ok(())
    }

    fn bsopts(&self) -> Option<String> {
        let o = &self.inner.opts;
        (!o.is_empty()).then(|| {
            o.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(";")
        })
    }

    fn stats(&self) -> IoStats {
        self.counters.snapshot()
    }

    /// The brick file's data and holes, from glfs_lseek's SEEK_DATA / SEEK_HOLE (the
    /// brick's own lseek), on the I/O pool: gfapi has no asynchronous seek.
    async fn allocation(&self, offset: u64, len: u64) -> io::Result<Vec<Extent>> {
        let h = self.handles()?.clone();
        let r = crate::pool::run(move || seek_extents(&h, offset, len)).await;
        match &r {
            Ok(_) => self.inner.succeeded(Op::Read),
            Err(e) => self.inner.failed(e.raw_os_error().unwrap_or(libc::EIO)),
        }
        r
    }
}

/// Data and holes in `[offset, offset + len)` by alternating SEEK_DATA and SEEK_HOLE.
fn seek_extents(h: &Handles, offset: u64, len: u64) -> io::Result<Vec<Extent>> {
    let end = offset + len;
    let seek = |at: u64, whence: c_int| -> io::Result<Option<u64>> {
        // SAFETY: the file is open for as long as `h` lives.
        let r = unsafe { ffi::glfs_lseek(h.fd, at as libc::off_t, whence) };
        if r >= 0 {
            return Ok(Some(r as u64));
        }
        match errno() {
            // No data at or after `at` (or `at` is past the end): a hole to the end.
            libc::ENXIO => Ok(None),
            e => Err(io::Error::from_raw_os_error(normalize(e))),
        }
    };
    let mut out: Vec<Extent> = Vec::new();
    let mut push = |o: u64, e: u64, allocated: bool| {
        if e > o {
            out.push(Extent {
                offset: o,
                len: e - o,
                allocated,
            });
        }
    };
    let mut at = offset;
    while at < end {
        let data = seek(at, libc::SEEK_DATA)?.unwrap_or(end).min(end);
        push(at, data, false);
        if data >= end {
            break;
        }
        let hole = seek(data, libc::SEEK_HOLE)?.unwrap_or(end).min(end);
        push(data, hole, true);
        at = hole;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreachable_errnos_are_one_errno() {
        for e in [
            libc::ENOTCONN,
            libc::EBADFD,
            libc::ECONNREFUSED,
            libc::EHOSTUNREACH,
        ] {
            assert_eq!(normalize(e), libc::ENOTCONN);
        }
        for e in [libc::ETIMEDOUT, libc::ENOSPC, libc::EIO, libc::EROFS] {
            assert_eq!(normalize(e), e);
        }
    }
}
