//! `rbd`: a logical unit on a Ceph RBD image, through librbd's asynchronous API.
//!
//! `-b [pool/]image[@snapshot]` names the image (pool `rbd` by default; a snapshot is
//! exported read-only), `--bsopts "conf=PATH;id=USER;cluster=NAME"` says how to reach
//! the cluster (tgt's bs_rbd syntax), plus rtgt's `timeout=SECONDS` and `cache=on|off`.
//!
//! Every I/O is an `rbd_aio_*` call whose completion callback (on a librbd thread) hands
//! the result to a oneshot channel the issuing task awaits, so the reactor that issued a
//! command is the one that finishes it, and no reactor ever waits for the cluster. The
//! buffers travel with the completion and are freed only once librbd is done with them,
//! even when the command was aborted meanwhile.
//!
//! Opening the image (and the other calls that have no aio form) blocks; it runs on a
//! thread of its own ([`opener`]), never on a reactor. When the cluster cannot be
//! reached the store exists anyway, not [`ready`](BackingStore::ready) (the LU says NOT
//! READY), and that thread keeps trying with back-off until the image opens. The client
//! timeouts (`rados_osd_op_timeout`, `rados_mon_op_timeout`, `client_mount_timeout`,
//! from `timeout=`) make an unreachable or full cluster fail an operation with
//! ETIMEDOUT instead of hanging, so the command gets a CHECK CONDITION.

mod ffi;
pub mod shared;

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use tokio::sync::oneshot;

use crate::opener::{self, OpenFail};
use crate::{
    BackingStore, Capabilities, Counters, Extent, IoFuture, IoStats, OpenError, OpenOptions,
};

/// Client operation timeout when `timeout=` is not given, in seconds: below the usual
/// initiator command timeout (Linux sd: 30 s), so the initiator sees our sense data
/// rather than timing the command out itself.
pub const DEFAULT_TIMEOUT_SECS: u32 = 20;

/// What `-b` and `--bsopts` say about the image and the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RbdSpec {
    pub pool: String,
    pub image: String,
    pub snap: Option<String>,
    /// `conf=`: the ceph.conf to read; None: librados's own search ($CEPH_CONF,
    /// /etc/ceph/$cluster.conf, ...).
    pub conf: Option<String>,
    /// `id=`: the cephx user, without `client.` (default `admin`).
    pub id: Option<String>,
    /// `cluster=`: the cluster name (default `ceph`).
    pub cluster: Option<String>,
    /// `timeout=`: the client operation timeouts, in seconds.
    pub timeout: u32,
    /// `cache=on|off`: librbd's client cache; None keeps the configuration's choice.
    pub cache: Option<bool>,
}

/// The `--bsopts` keys the rbd store takes.
pub const BSOPTS: &str = "conf, id, cluster, timeout, cache";

impl RbdSpec {
    /// Parses `[pool/]image[@snapshot]` and the `key=value` pairs of `--bsopts`.
    pub fn parse(path: &str, bsopts: &[(String, String)]) -> Result<Self, String> {
        let (name, snap) = match path.split_once('@') {
            Some((n, s)) if !s.is_empty() => (n, Some(s.to_string())),
            Some(_) => return Err(format!("{path}: empty snapshot name after '@'")),
            None => (path, None),
        };
        let (pool, image) = match name.split_once('/') {
            Some((p, i)) => (p, i),
            None => ("rbd", name),
        };
        if pool.is_empty() || image.is_empty() || image.contains('/') {
            return Err(format!(
                "{path}: an rbd backing store is named [pool/]image[@snapshot]"
            ));
        }
        let mut s = Self {
            pool: pool.into(),
            image: image.into(),
            snap,
            conf: None,
            id: None,
            cluster: None,
            timeout: DEFAULT_TIMEOUT_SECS,
            cache: None,
        };
        for (k, v) in bsopts {
            match k.as_str() {
                "conf" => s.conf = Some(v.clone()),
                "id" => s.id = Some(v.trim_start_matches("client.").to_string()),
                "cluster" => s.cluster = Some(v.clone()),
                "timeout" => {
                    s.timeout = v
                        .parse()
                        .ok()
                        .filter(|t| *t > 0)
                        .ok_or_else(|| format!("timeout={v}: use a number of seconds > 0"))?
                }
                "cache" => {
                    s.cache = Some(match v.to_ascii_lowercase().as_str() {
                        "on" | "1" | "true" => true,
                        "off" | "0" | "false" => false,
                        _ => return Err(format!("cache={v}: use on or off")),
                    })
                }
                _ => {
                    return Err(format!(
                        "unknown --bsopts '{k}' for bstype rbd (known: {BSOPTS})"
                    ))
                }
            }
        }
        Ok(s)
    }
}

fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn check(rc: c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::from_raw_os_error(-rc))
    } else {
        Ok(())
    }
}

/// A connected cluster handle, an I/O context on the pool and the open image, closed in
/// that reverse order.
pub(crate) struct Handles {
    pub(crate) cluster: ffi::rados_t,
    pub(crate) ioctx: ffi::rados_ioctx_t,
    pub(crate) image: ffi::rbd_image_t,
    watch: Option<(u64, *mut WatchCtx)>,
}

// SAFETY: librados / librbd handles are thread-safe (their C API may be called from any
// thread concurrently); the raw pointers are only handed back to them.
unsafe impl Send for Handles {}
unsafe impl Sync for Handles {}

impl Drop for Handles {
    fn drop(&mut self) {
        // SAFETY: the handles were opened by `connect` and are released once, here;
        // rbd_update_unwatch waits for a running callback, so the context outlives it.
        unsafe {
            if !self.image.is_null() {
                if let Some((h, ctx)) = self.watch.take() {
                    ffi::rbd_update_unwatch(self.image, h);
                    drop(Box::from_raw(ctx));
                }
                ffi::rbd_close(self.image);
            }
            if !self.ioctx.is_null() {
                ffi::rados_ioctx_destroy(self.ioctx);
            }
            if !self.cluster.is_null() {
                ffi::rados_shutdown(self.cluster);
            }
        }
    }
}

/// What the header-update callback needs: it must not call back into librbd on its
/// own thread, so it only marks the size stale; the next look at the size re-reads it
/// on a blocking thread.
struct WatchCtx {
    stale: Arc<AtomicBool>,
}

extern "C" fn on_header_update(arg: *mut c_void) {
    // SAFETY: `arg` is the WatchCtx registered with rbd_update_watch, freed only after
    // rbd_update_unwatch.
    let ctx = unsafe { &*(arg as *const WatchCtx) };
    ctx.stale.store(true, Ordering::Release);
}

fn with_context(e: io::Error, what: impl std::fmt::Display) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// Connects to the cluster and opens the image (blocking: up to `timeout` seconds when
/// the cluster cannot be reached).
fn connect(spec: &RbdSpec, read_only: bool) -> Result<Handles, OpenFail> {
    use OpenFail::{Permanent, Transient};
    let mut h = Handles {
        cluster: std::ptr::null_mut(),
        ioctx: std::ptr::null_mut(),
        image: std::ptr::null_mut(),
        watch: None,
    };
    let cluster = cstr(spec.cluster.as_deref().unwrap_or("ceph")).map_err(Permanent)?;
    let user =
        cstr(&format!("client.{}", spec.id.as_deref().unwrap_or("admin"))).map_err(Permanent)?;
    // SAFETY: plain calls with valid NUL-terminated strings and out-pointers; `h` owns
    // whatever they return and releases it on every path (Drop).
    unsafe {
        check(ffi::rados_create2(
            &mut h.cluster,
            cluster.as_ptr(),
            user.as_ptr(),
            0,
        ))
        .map_err(Permanent)?;
        let conf = spec
            .conf
            .as_deref()
            .map(cstr)
            .transpose()
            .map_err(Permanent)?;
        check(ffi::rados_conf_read_file(
            h.cluster,
            conf.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
        ))
        .map_err(|e| {
            Permanent(with_context(
                e,
                format_args!(
                    "reading ceph configuration {}",
                    spec.conf.as_deref().unwrap_or("(default search path)")
                ),
            ))
        })?;
        let t = spec.timeout.to_string();
        let set = |k: &str, v: &str| -> io::Result<()> {
            let (k, v) = (cstr(k)?, cstr(v)?);
            check(ffi::rados_conf_set(h.cluster, k.as_ptr(), v.as_ptr()))
        };
        let set_all = || -> io::Result<()> {
            set("rados_osd_op_timeout", &t)?;
            set("rados_mon_op_timeout", &t)?;
            set("client_mount_timeout", &t)?;
            if let Some(c) = spec.cache {
                set("rbd_cache", if c { "true" } else { "false" })?;
            }
            Ok(())
        };
        set_all().map_err(Permanent)?;
        // Whatever stops the connection (monitors down or unreachable, a refused key)
        // may be mended without touching this LU: try again later.
        check(ffi::rados_connect(h.cluster))
            .map_err(|e| Transient(with_context(e, "connecting to the cluster")))?;
        let pool = cstr(&spec.pool).map_err(Permanent)?;
        let rc = ffi::rados_ioctx_create(h.cluster, pool.as_ptr(), &mut h.ioctx);
        if rc < 0 {
            h.ioctx = std::ptr::null_mut();
        }
        check(rc).map_err(|e| {
            let e = with_context(e, format_args!("pool {}", spec.pool));
            if rc == -libc::ENOENT {
                Permanent(e)
            } else {
                Transient(e)
            }
        })?;
        let name = cstr(&spec.image).map_err(Permanent)?;
        let snap = spec
            .snap
            .as_deref()
            .map(cstr)
            .transpose()
            .map_err(Permanent)?;
        let snap_ptr = snap.as_ref().map_or(std::ptr::null(), |s| s.as_ptr());
        let rc = if read_only || spec.snap.is_some() {
            ffi::rbd_open_read_only(h.ioctx, name.as_ptr(), &mut h.image, snap_ptr)
        } else {
            ffi::rbd_open(h.ioctx, name.as_ptr(), &mut h.image, snap_ptr)
        };
        if rc < 0 {
            h.image = std::ptr::null_mut();
        }
        check(rc).map_err(|e| {
            let e = with_context(e, format_args!("image {}", spec_name(spec)));
            if rc == -libc::ENOENT {
                Permanent(e)
            } else {
                Transient(e)
            }
        })?;
    }
    Ok(h)
}

fn spec_name(s: &RbdSpec) -> String {
    match &s.snap {
        Some(snap) => format!("{}/{}@{snap}", s.pool, s.image),
        None => format!("{}/{}", s.pool, s.image),
    }
}

/// The result of an aio request: librbd's return value and the buffers it used.
struct Done {
    rv: isize,
    bufs: Vec<Vec<u8>>,
    mismatch: u64,
}

/// Lives from submission to completion: owns the buffers librbd reads from or writes
/// into and the handles it works on, so neither can go away under it.
struct Pending {
    tx: Option<oneshot::Sender<Done>>,
    bufs: Vec<Vec<u8>>,
    mismatch: Box<u64>,
    handles: Option<Arc<Handles>>,
}

extern "C" fn on_complete(c: ffi::rbd_completion_t, arg: *mut c_void) {
    // SAFETY: `arg` is the Box<Pending> leaked at submission, reclaimed exactly once,
    // here; `c` is the completion it was attached to.
    let mut p = unsafe { Box::from_raw(arg as *mut Pending) };
    let rv = unsafe { ffi::rbd_aio_get_return_value(c) };
    unsafe { ffi::rbd_aio_release(c) };
    let handles = p.handles.take();
    if let Some(tx) = p.tx.take() {
        let _ = tx.send(Done {
            rv,
            bufs: std::mem::take(&mut p.bufs),
            mismatch: *p.mismatch,
        });
    }
    // Closing the image from its own callback thread would deadlock: the last
    // reference (a LU deleted with I/O in flight) is dropped elsewhere.
    if let Some(h) = handles {
        if Arc::strong_count(&h) == 1 {
            std::thread::spawn(move || drop(h));
        }
    }
}

/// What exists once the image is open.
pub(crate) struct Conn {
    h: Arc<Handles>,
}

/// The store's state, shared with the thread that opens the image.
pub(crate) struct Inner {
    spec: RbdSpec,
    /// `--bsopts` as given.
    opts: Vec<(String, String)>,
    read_only: bool,
    /// Set once, by the opener, when the image is open; until then the store is not
    /// ready and every operation fails with ENOTCONN.
    conn: OnceLock<Conn>,
    /// 0 until the image is open.
    size: AtomicU64,
    stale: Arc<AtomicBool>,
    /// None on a read-only image (a snapshot): nothing there can be reserved for writing.
    shared: Option<Arc<shared::SharedHandle>>,
}

impl opener::Connect for Inner {
    fn medium(&self) -> String {
        format!("rbd image {}", spec_name(&self.spec))
    }

    /// One attempt at opening the image and its shared reservation state (blocking, up
    /// to the client timeouts); on success the store becomes ready.
    fn try_open(&self) -> Result<(), OpenFail> {
        let mut h = connect(&self.spec, self.read_only)?;
        let mut size = 0u64;
        let mut idbuf = [0 as c_char; 64];
        // SAFETY: the image is open; the out-pointers are valid for the calls.
        unsafe {
            check(ffi::rbd_get_size(h.image, &mut size)).map_err(OpenFail::Transient)?;
            check(ffi::rbd_get_id(h.image, idbuf.as_mut_ptr(), idbuf.len()))
                .map_err(OpenFail::Transient)?;
            let ctx = Box::into_raw(Box::new(WatchCtx {
                stale: self.stale.clone(),
            }));
            let mut handle = 0u64;
            if ffi::rbd_update_watch(h.image, &mut handle, on_header_update, ctx as *mut c_void) < 0
            {
                drop(Box::from_raw(ctx));
                tracing::warn!(
                    "rbd {}: no header watch: resizes go unnoticed",
                    spec_name(&self.spec)
                );
            } else {
                h.watch = Some((handle, ctx));
            }
        }
        // SAFETY: rbd_get_id wrote a NUL-terminated string into the buffer.
        let id = unsafe { CStr::from_ptr(idbuf.as_ptr()) }
            .to_string_lossy()
            .into_owned();
        let h = Arc::new(h);
        if let Some(shared) = &self.shared {
            let pr = shared::SharedPr::open(h.clone(), &id).map_err(OpenFail::Transient)?;
            // Before `conn`: a ready store always has its reservation state.
            let _ = shared.0.set(pr);
        }
        self.size.store(size, Ordering::Release);
        let _ = self.conn.set(Conn { h });
        tracing::info!(
            image = spec_name(&self.spec),
            id,
            size,
            read_only = self.read_only,
            cache = self.spec.cache.unwrap_or(true),
            timeout = self.spec.timeout,
            "rbd image opened"
        );
        Ok(())
    }
}

/// An RBD image as a backing store.
pub struct RbdStore {
    inner: Arc<Inner>,
    cache: bool,
    counters: Counters,
}

/// The error of an operation on an image not (yet) open: the SCSI layer reports NOT
/// READY, LOGICAL UNIT COMMUNICATION FAILURE for it.
fn not_open() -> io::Error {
    io::Error::from_raw_os_error(libc::ENOTCONN)
}

impl RbdStore {
    /// Parses `opts.path` and `opts.bsopts` and opens the image. Waits for the first
    /// attempt at most [`opener::FIRST_WAIT`] (or the client timeout if shorter): a
    /// permanent failure in that time (unreadable ceph.conf, no such pool or image) is
    /// the error; otherwise the store is returned, ready or not, and the opener keeps
    /// trying in the background.
    pub fn open(opts: &OpenOptions) -> Result<Self, OpenError> {
        let path = opts.path.to_string_lossy().to_string();
        let spec = RbdSpec::parse(&path, &opts.bsopts)
            .map_err(|e| OpenError::Rbd(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
        let read_only = opts.read_only || spec.snap.is_some();
        // librbd's default is a cache (writeback after the first flush); `cache=off`
        // turns it off.
        let cache = spec.cache.unwrap_or(true);
        let wait = opener::FIRST_WAIT.min(std::time::Duration::from_secs(spec.timeout.into()));
        let inner = Arc::new(Inner {
            spec,
            opts: opts.bsopts.clone(),
            read_only,
            conn: OnceLock::new(),
            size: AtomicU64::new(0),
            stale: Arc::new(AtomicBool::new(false)),
            shared: (!read_only).then(|| Arc::new(shared::SharedHandle(OnceLock::new()))),
        });
        opener::start(&inner, wait).map_err(OpenError::Rbd)?;
        Ok(Self {
            inner,
            cache,
            counters: Counters::default(),
        })
    }

    fn conn(&self) -> io::Result<&Conn> {
        self.inner.conn.get().ok_or_else(not_open)
    }

    /// Submits one aio request built by `submit` (which gets the buffers, the mismatch
    /// out-pointer and the completion) and waits for its completion without blocking.
    async fn aio(
        &self,
        bufs: Vec<Vec<u8>>,
        submit: impl FnOnce(ffi::rbd_image_t, &mut [Vec<u8>], *mut u64, ffi::rbd_completion_t) -> isize,
    ) -> io::Result<Done> {
        let done = self.aio_raw(bufs, submit).await?;
        if done.rv < 0 {
            let e = io::Error::from_raw_os_error(-done.rv as i32);
            tracing::warn!(image = spec_name(&self.inner.spec), "rbd I/O failed: {e}");
            return Err(e);
        }
        Ok(done)
    }

    /// As [`aio`](Self::aio), returning librbd's result whatever it is.
    async fn aio_raw(
        &self,
        bufs: Vec<Vec<u8>>,
        submit: impl FnOnce(ffi::rbd_image_t, &mut [Vec<u8>], *mut u64, ffi::rbd_completion_t) -> isize,
    ) -> io::Result<Done> {
        let rx = self.submit(bufs, submit)?;
        rx.await
            .map_err(|_| io::Error::other("rbd completion lost"))
    }

    /// Leaks a [`Pending`] into a new completion and submits the request; the
    /// completion callback reclaims it. Not async, so no raw pointer lives across an
    /// await.
    fn submit(
        &self,
        bufs: Vec<Vec<u8>>,
        submit: impl FnOnce(ffi::rbd_image_t, &mut [Vec<u8>], *mut u64, ffi::rbd_completion_t) -> isize,
    ) -> io::Result<oneshot::Receiver<Done>> {
        let h = self.conn()?.h.clone();
        let image = h.image;
        let (tx, rx) = oneshot::channel();
        let p = Box::into_raw(Box::new(Pending {
            tx: Some(tx),
            bufs,
            mismatch: Box::new(0),
            handles: Some(h),
        }));
        let mut c: ffi::rbd_completion_t = std::ptr::null_mut();
        // SAFETY: `p` stays alive until on_complete reclaims it; the buffers it owns do
        // not move (only the Vec headers inside the Box could, and they don't). Nothing
        // here touches `p` after a successful submission.
        unsafe {
            let rc = ffi::rbd_aio_create_completion(p as *mut c_void, on_complete, &mut c);
            if rc < 0 {
                drop(Box::from_raw(p));
                return Err(io::Error::from_raw_os_error(-rc));
            }
            let pm = &mut *p;
            let rc = submit(image, &mut pm.bufs, &mut *pm.mismatch, c);
            if rc < 0 {
                ffi::rbd_aio_release(c);
                drop(Box::from_raw(p));
                return Err(io::Error::from_raw_os_error(-rc as i32));
            }
        }
        Ok(rx)
    }

    fn refresh_size_blocking(&self) -> io::Result<u64> {
        let mut size = 0;
        // SAFETY: the image is open; `size` outlives the call.
        check(unsafe { ffi::rbd_get_size(self.conn()?.h.image, &mut size) })?;
        self.inner.size.store(size, Ordering::Release);
        Ok(size)
    }
}

/// Mismatch offset reported by librbd: the image offset of the first differing byte.
pub(crate) fn mismatch_at(reported: u64, offset: u64) -> u64 {
    reported.checked_sub(offset).unwrap_or(reported)
}

#[async_trait]
impl BackingStore for RbdStore {
    fn kind(&self) -> &'static str {
        "rbd"
    }

    fn size(&self) -> u64 {
        self.inner.size.load(Ordering::Acquire)
    }

    fn ready(&self) -> bool {
        self.inner.conn.get().is_some()
    }

    fn capabilities(&self) -> Capabilities {
        // Without librbd's cache a write completes once the OSDs have it on stable
        // storage: no volatile cache (SBC-4 6.5.5 WCE=0, fixed). With it, writes are
        // acknowledged from client memory: a volatile write cache flushed by
        // rbd_aio_flush.
        Capabilities {
            sync: !self.cache,
            read_only: self.inner.read_only,
            unmap: true,
            // A discard smaller than an object may leave data behind, so unmapped
            // blocks promise nothing; zeroes where SCSI promises them come from
            // rbd_write_zeroes instead (write_zeroes below).
            unmap_zeroes: false,
            // RBD objects are 4 MiB by default; 4 KiB is what librbd writes without a
            // read-modify-write and the granularity of its allocation.
            physical_block_size: 4096,
            ..Capabilities::default()
        }
    }

    fn read_at(&self, buf: Vec<u8>, offset: u64) -> IoFuture<'_, Vec<u8>> {
        IoFuture::pending(async move {
            let len = buf.len();
            let mut d = self
                .aio(vec![buf], |img, b, _, c| unsafe {
                    ffi::rbd_aio_read(img, offset, len, b[0].as_mut_ptr() as *mut c_char, c)
                        as isize
                })
                .await?;
            self.counters.read();
            let mut buf = d.bufs.pop().expect("one buffer");
            // A short read (past the end after a shrink) reads as zeroes.
            let got = (d.rv as usize).min(len);
            buf[got..].fill(0);
            Ok(buf)
        })
    }

    fn write_at(&self, buf: Vec<u8>, offset: u64) -> IoFuture<'_, Vec<u8>> {
        IoFuture::pending(async move {
            let len = buf.len();
            let mut d = self
                .aio(vec![buf], |img, b, _, c| unsafe {
                    ffi::rbd_aio_write(img, offset, len, b[0].as_ptr() as *const c_char, c) as isize
                })
                .await?;
            self.counters.write(false);
            Ok(d.bufs.pop().expect("one buffer"))
        })
    }

    async fn flush(&self) -> io::Result<()> {
        self.aio(Vec::new(), |img, _, _, c| unsafe {
            ffi::rbd_aio_flush(img, c) as isize
        })
        .await?;
        self.counters.flush();
        Ok(())
    }

    /// FUA: librbd has no per-write durability flag, so the write is followed by a
    /// flush of the client cache (without a cache the write alone is durable).
    async fn write_at_durable(&self, buf: Vec<u8>, offset: u64) -> io::Result<Vec<u8>> {
        let buf = self.write_at(buf, offset).await?;
        if !self.capabilities().sync {
            self.flush().await?;
        }
        self.counters.write(true);
        Ok(buf)
    }

    async fn unmap(&self, offset: u64, len: u64) -> io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        self.aio(Vec::new(), |img, _, _, c| unsafe {
            ffi::rbd_aio_discard(img, offset, len, c) as isize
        })
        .await?;
        Ok(())
    }

    /// rbd_write_zeroes: zeroes for sure (a small discard would not), deallocating
    /// whole objects where it can.
    async fn write_zeroes(&self, offset: u64, len: u64) -> io::Result<()> {
        const CHUNK: u64 = 1 << 30;
        let mut done = 0;
        while done < len {
            let n = CHUNK.min(len - done);
            let off = offset + done;
            self.aio(Vec::new(), |img, _, _, c| unsafe {
                ffi::rbd_aio_write_zeroes(img, off, n as usize, c, 0, 0) as isize
            })
            .await?;
            done += n;
        }
        Ok(())
    }

    async fn write_same(&self, block: Vec<u8>, offset: u64, len: u64) -> io::Result<()> {
        let bl = block.len();
        // rbd_writesame takes a size_t length; WRITE SAME is bounded far below that.
        self.aio(vec![block], |img, b, _, c| unsafe {
            ffi::rbd_aio_writesame(
                img,
                offset,
                len as usize,
                b[0].as_ptr() as *const c_char,
                bl,
                c,
                0,
            ) as isize
        })
        .await?;
        self.counters.write(false);
        Ok(())
    }

    /// rbd_aio_compare_and_write: the OSD compares and writes in one operation, so the
    /// result is atomic for every client of the image, whichever gateway it uses.
    async fn compare_and_write(
        &self,
        compare: Vec<u8>,
        data: Vec<u8>,
        offset: u64,
    ) -> io::Result<Option<u64>> {
        let len = data.len();
        let d = self
            .aio_raw(vec![compare, data], |img, b, mm, c| unsafe {
                ffi::rbd_aio_compare_and_write(
                    img,
                    offset,
                    len,
                    b[0].as_ptr() as *const c_char,
                    b[1].as_ptr() as *const c_char,
                    c,
                    mm,
                    0,
                )
            })
            .await?;
        // EILSEQ: the miscompare, an answer rather than a failure.
        if d.rv == -(libc::EILSEQ as isize) {
            return Ok(Some(mismatch_at(d.mismatch, offset)));
        }
        // EINVAL: the OSD's compare extent refuses a range an object does not (yet)
        // cover (blocks never written). The caller compares and writes under its own
        // range lock instead: atomic among this gateway's commands only, until those
        // blocks have been written once.
        if d.rv == -(libc::EINVAL as isize) {
            tracing::debug!(
                offset,
                len,
                "rbd compare-and-write on unwritten blocks: done locally"
            );
            return Err(io::Error::from(io::ErrorKind::Unsupported));
        }
        if d.rv < 0 {
            let e = io::Error::from_raw_os_error(-d.rv as i32);
            tracing::warn!(
                image = spec_name(&self.inner.spec),
                "rbd compare-and-write failed: {e}"
            );
            return Err(e);
        }
        self.counters.write(false);
        Ok(None)
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

    /// The allocated extents from rbd_diff_iterate2 against the image's beginning (its
    /// object map when the image has one, else a listing of its objects).
    async fn allocation(&self, offset: u64, len: u64) -> io::Result<Vec<Extent>> {
        let h = self.conn()?.h.clone();
        tokio::task::spawn_blocking(move || diff_extents(&h, offset, len))
            .await
            .map_err(io::Error::other)?
    }

    fn refresh_size(&self) -> io::Result<u64> {
        if self.inner.stale.swap(false, Ordering::AcqRel) {
            // The header changed (a resize, a snapshot, metadata): one header read,
            // only after such a change.
            return self.refresh_size_blocking();
        }
        Ok(self.size())
    }

    /// The pool and the image's name (and snapshot): what every gateway is configured
    /// with, and known before the image can be opened, so the LU's designators do not
    /// change when a LU created NOT READY becomes ready.
    fn identity(&self) -> Option<String> {
        Some(format!("rbd:{}", spec_name(&self.inner.spec)))
    }

    fn shared_state(&self) -> Option<Arc<dyn crate::SharedState>> {
        self.inner
            .shared
            .clone()
            .map(|s| s as Arc<dyn crate::SharedState>)
    }
}

struct DiffAcc {
    runs: Vec<(u64, u64)>,
}

extern "C" fn on_diff(off: u64, len: usize, exists: c_int, arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the DiffAcc borrowed for the duration of rbd_diff_iterate2.
    let acc = unsafe { &mut *(arg as *mut DiffAcc) };
    if exists != 0 {
        acc.runs.push((off, len as u64));
    }
    0
}

fn diff_extents(h: &Handles, offset: u64, len: u64) -> io::Result<Vec<Extent>> {
    let mut acc = DiffAcc { runs: Vec::new() };
    // SAFETY: the image is open, `acc` outlives the call and the callback only
    // touches it.
    check(unsafe {
        ffi::rbd_diff_iterate2(
            h.image,
            std::ptr::null(),
            offset,
            len,
            1,
            0,
            on_diff,
            &mut acc as *mut DiffAcc as *mut c_void,
        )
    })?;
    acc.runs.sort_unstable();
    let end = offset + len;
    let mut out = Vec::new();
    let mut at = offset;
    for (o, l) in acc.runs {
        let (o, e) = (o.max(at), (o + l).min(end));
        if e <= o {
            continue;
        }
        if o > at {
            out.push(Extent {
                offset: at,
                len: o - at,
                allocated: false,
            });
        }
        match out.last_mut() {
            Some(x) if x.allocated && x.offset + x.len == o => x.len += e - o,
            _ => out.push(Extent {
                offset: o,
                len: e - o,
                allocated: true,
            }),
        }
        at = e;
    }
    if at < end {
        out.push(Extent {
            offset: at,
            len: end - at,
            allocated: false,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_bsopts;

    #[test]
    fn spec_parsing() {
        let s = RbdSpec::parse("img", &[]).unwrap();
        assert_eq!(
            (s.pool.as_str(), s.image.as_str(), s.snap),
            ("rbd", "img", None)
        );
        let o = parse_bsopts("conf=/a,b/ceph.conf;id=client.gw;cluster=c2;timeout=5").unwrap();
        let s = RbdSpec::parse("p/i@s1", &o).unwrap();
        assert_eq!(s.pool, "p");
        assert_eq!(s.image, "i");
        assert_eq!(s.snap.as_deref(), Some("s1"));
        assert_eq!(s.conf.as_deref(), Some("/a,b/ceph.conf"));
        assert_eq!(s.id.as_deref(), Some("gw"));
        assert_eq!(s.cluster.as_deref(), Some("c2"));
        assert_eq!(s.timeout, 5);
        assert!(RbdSpec::parse("p/", &[]).is_err());
        assert!(RbdSpec::parse("a/b/c", &[]).is_err());
        assert!(RbdSpec::parse("i@", &[]).is_err());
        let bad = parse_bsopts("colour=red").unwrap();
        assert!(RbdSpec::parse("i", &bad)
            .unwrap_err()
            .contains("unknown --bsopts 'colour'"));
        assert!(RbdSpec::parse("i", &parse_bsopts("timeout=0").unwrap()).is_err());
        assert_eq!(parse_bsopts("a=1,b=2").unwrap().len(), 2);
    }

    #[test]
    fn mismatch_offsets() {
        assert_eq!(mismatch_at(4096 + 10, 4096), 10);
        assert_eq!(mismatch_at(3, 4096), 3);
    }
}
