//! Persistent reservation state shared by every gateway that exports one RBD image.
//!
//! SPC-4 5.13 makes a persistent reservation a property of the logical unit, whichever
//! target port the commands come through; with several rtgtd gateways in front of one
//! image the LU is the image, so its reservation state lives with it: in the image
//! metadata (key `rtgt.pr`, as ceph-iscsi keeps its own there), changed under a RADOS
//! exclusive lock and announced to the other gateways by a RADOS notify.
//!
//! Each gateway watches a small object `rtgt_pr.<image id>` in the image's pool. A
//! change is: lock that object (cls lock, 30 s lease so a dead gateway cannot hold it
//! for ever), read the metadata, apply the PERSISTENT RESERVE OUT, write the metadata,
//! `rados_notify2` with the new state as payload, unlock. The watch callback of every
//! gateway stores the payload before it acknowledges, and `rados_notify2` returns only
//! when every live watcher has acknowledged (or after NOTIFY_TIMEOUT_MS), so when the
//! command that changed the reservation completes, every gateway already enforces it.
//! Checking a command against the reservation costs a mutex and a comparison, no I/O.

use std::ffi::{c_char, c_int, c_void, CString};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::Mutex;

use super::{check, cstr, ffi, Handles};
use crate::SharedState;

const META_KEY: &str = "rtgt.pr";
const LOCK_NAME: &str = "rtgt_pr";
/// The lease of the update lock: longer than any update takes, short enough that a
/// gateway that died holding it does not stop the others for long.
const LOCK_LEASE_SECS: i64 = 30;
/// How long an update waits for the lock before the command fails.
const LOCK_WAIT: Duration = Duration::from_secs(20);
/// How long a notify waits for the other gateways' acknowledgements: a dead gateway's
/// watch lingers until the OSD times it out (osd_client_watch_timeout, 30 s).
const NOTIFY_TIMEOUT_MS: u64 = 5000;

/// What the watch callback shares with the store.
struct Watch {
    io: ffi::rados_ioctx_t,
    oid: CString,
    /// (version, state): the version changes whenever a state arrives.
    state: Mutex<(u64, Option<Vec<u8>>)>,
    /// The watch failed (the cluster went away long enough for the OSD to drop it):
    /// notifies may have been missed, so the next update re-establishes it.
    broken: AtomicBool,
}

// SAFETY: the ioctx is thread-safe in librados; the rest is Sync.
unsafe impl Send for Watch {}
unsafe impl Sync for Watch {}

extern "C" fn on_notify(
    arg: *mut c_void,
    notify_id: u64,
    handle: u64,
    _notifier: u64,
    data: *mut c_void,
    len: usize,
) {
    // SAFETY: `arg` is the Watch registered with rados_watch2; it is freed only after
    // rados_unwatch2 and rados_watch_flush. `data` holds `len` bytes for this call.
    let w = unsafe { &*(arg as *const Watch) };
    let payload = if data.is_null() || len == 0 {
        None
    } else {
        Some(unsafe { std::slice::from_raw_parts(data as *const u8, len) }.to_vec())
    };
    {
        let mut s = w.state.lock();
        s.0 += 1;
        s.1 = payload;
    }
    // Acknowledged only once the state is in place: the notifier's PERSISTENT RESERVE
    // OUT completes after this.
    unsafe {
        ffi::rados_notify_ack(w.io, w.oid.as_ptr(), notify_id, handle, std::ptr::null(), 0);
    }
}

extern "C" fn on_watch_error(arg: *mut c_void, _cookie: u64, err: c_int) {
    // SAFETY: as in on_notify.
    let w = unsafe { &*(arg as *const Watch) };
    w.broken.store(true, Ordering::Release);
    tracing::warn!(
        "rbd: watch on {} lost ({}): reservation changes made through other gateways \
         are seen again after the next update",
        w.oid.to_string_lossy(),
        io::Error::from_raw_os_error(-err)
    );
}

/// The shared reservation state of one image.
pub struct SharedPr {
    h: Arc<Handles>,
    watch: *mut Watch,
    cookie: AtomicU64,
    read_only: bool,
    /// The lock cookie of the update in progress.
    lock_cookie: Mutex<Option<CString>>,
}

// SAFETY: `watch` points to a Watch owned by this struct (freed in Drop) that is Sync.
unsafe impl Send for SharedPr {}
unsafe impl Sync for SharedPr {}

static NEXT_COOKIE: AtomicU64 = AtomicU64::new(1);

impl SharedPr {
    /// Creates the watch object if needed, watches it and loads the current state.
    pub(crate) fn open(h: Arc<Handles>, image_id: &str) -> io::Result<Self> {
        let read_only = false;
        let oid = cstr(&format!("rtgt_pr.{image_id}"))?;
        let w = Box::into_raw(Box::new(Watch {
            io: h.ioctx,
            oid,
            state: Mutex::new((1, None)),
            broken: AtomicBool::new(false),
        }));
        let s = Self {
            h,
            watch: w,
            cookie: AtomicU64::new(0),
            read_only,
            lock_cookie: Mutex::new(None),
        };
        let initial = s.read_meta()?;
        s.w().state.lock().1 = initial;
        s.establish_watch()?;
        Ok(s)
    }

    fn w(&self) -> &Watch {
        // SAFETY: valid from open until Drop.
        unsafe { &*self.watch }
    }

    fn establish_watch(&self) -> io::Result<()> {
        let w = self.w();
        // SAFETY: valid handles and strings; the Watch outlives the watch (Drop).
        unsafe {
            // An empty object to watch: creating it again is harmless.
            let rc = ffi::rados_write_full(w.io, w.oid.as_ptr(), std::ptr::null(), 0);
            check(rc).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("creating {}: {e}", w.oid.to_string_lossy()),
                )
            })?;
            let old = self.cookie.swap(0, Ordering::AcqRel);
            if old != 0 {
                ffi::rados_unwatch2(w.io, old);
            }
            let mut cookie = 0u64;
            check(ffi::rados_watch2(
                w.io,
                w.oid.as_ptr(),
                &mut cookie,
                on_notify,
                on_watch_error,
                self.watch as *mut c_void,
            ))?;
            self.cookie.store(cookie, Ordering::Release);
        }
        w.broken.store(false, Ordering::Release);
        Ok(())
    }

    /// The state in the image metadata (blocking).
    fn read_meta(&self) -> io::Result<Option<Vec<u8>>> {
        let key = cstr(META_KEY)?;
        let mut buf = vec![0u8; 4096];
        loop {
            let mut len = buf.len();
            // SAFETY: `buf` holds `len` bytes; librbd writes at most that and the length.
            let rc = unsafe {
                ffi::rbd_metadata_get(
                    self.h.image,
                    key.as_ptr(),
                    buf.as_mut_ptr() as *mut c_char,
                    &mut len,
                )
            };
            if rc == -libc::ENOENT {
                return Ok(None);
            }
            if rc == -libc::ERANGE && len > buf.len() {
                buf.resize(len, 0);
                continue;
            }
            check(rc)?;
            // The value comes back NUL-terminated.
            let end = buf[..len.min(buf.len())]
                .iter()
                .position(|&b| b == 0)
                .unwrap_or(len.min(buf.len()));
            buf.truncate(end);
            return Ok((!buf.is_empty()).then_some(buf));
        }
    }

    fn lock_blocking(&self) -> io::Result<Option<Vec<u8>>> {
        if self.read_only {
            return Err(io::Error::from_raw_os_error(libc::EROFS));
        }
        if self.w().broken.load(Ordering::Acquire) {
            self.establish_watch()?;
        }
        let w = self.w();
        let name = cstr(LOCK_NAME)?;
        let desc = cstr("rtgt persistent reservation update")?;
        let cookie = cstr(&format!(
            "{}-{}",
            std::process::id(),
            NEXT_COOKIE.fetch_add(1, Ordering::Relaxed)
        ))?;
        let start = Instant::now();
        loop {
            let mut lease = libc::timeval {
                tv_sec: LOCK_LEASE_SECS,
                tv_usec: 0,
            };
            // SAFETY: valid handles, strings and timeval for the call.
            let rc = unsafe {
                ffi::rados_lock_exclusive(
                    w.io,
                    w.oid.as_ptr(),
                    name.as_ptr(),
                    cookie.as_ptr(),
                    desc.as_ptr(),
                    &mut lease,
                    0,
                )
            };
            if rc == 0 {
                break;
            }
            if rc != -libc::EBUSY && rc != -libc::EEXIST {
                return Err(io::Error::from_raw_os_error(-rc));
            }
            if start.elapsed() > LOCK_WAIT {
                return Err(io::Error::from_raw_os_error(libc::ETIMEDOUT));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        *self.lock_cookie.lock() = Some(cookie);
        match self.read_meta() {
            Ok(state) => {
                let mut s = w.state.lock();
                if s.1 != state {
                    s.0 += 1;
                    s.1 = state.clone();
                }
                Ok(state)
            }
            Err(e) => {
                self.unlock_blocking();
                Err(e)
            }
        }
    }

    fn unlock_blocking(&self) {
        let Some(cookie) = self.lock_cookie.lock().take() else {
            return;
        };
        let w = self.w();
        let name = cstr(LOCK_NAME).expect("no NUL");
        // SAFETY: valid handles and strings.
        let rc = unsafe { ffi::rados_unlock(w.io, w.oid.as_ptr(), name.as_ptr(), cookie.as_ptr()) };
        if rc < 0 {
            tracing::warn!(
                "rbd: unlocking {}: {} (the lease ends it)",
                w.oid.to_string_lossy(),
                io::Error::from_raw_os_error(-rc)
            );
        }
    }

    fn publish_blocking(&self, state: &[u8]) -> io::Result<()> {
        let w = self.w();
        let key = cstr(META_KEY)?;
        let value = CString::new(state).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
        // SAFETY: valid handles and strings.
        check(unsafe { ffi::rbd_metadata_set(self.h.image, key.as_ptr(), value.as_ptr()) })?;
        let mut reply: *mut c_char = std::ptr::null_mut();
        let mut reply_len = 0usize;
        // SAFETY: `state` is valid for the call; the reply buffer is librados's to free.
        let rc = unsafe {
            ffi::rados_notify2(
                w.io,
                w.oid.as_ptr(),
                state.as_ptr() as *const c_char,
                state.len() as c_int,
                NOTIFY_TIMEOUT_MS,
                &mut reply,
                &mut reply_len,
            )
        };
        if !reply.is_null() {
            unsafe { ffi::rados_buffer_free(reply) };
        }
        if rc < 0 {
            // The state is in the metadata; a gateway that did not acknowledge is dead
            // or cut off, and reads the metadata again when it comes back.
            tracing::warn!(
                "rbd: announcing a reservation change on {}: {} (some gateway did not \
                 acknowledge)",
                w.oid.to_string_lossy(),
                io::Error::from_raw_os_error(-rc)
            );
        }
        Ok(())
    }
}

impl Drop for SharedPr {
    fn drop(&mut self) {
        let cookie = self.cookie.load(Ordering::Acquire);
        // SAFETY: after unwatch and a flush of pending callbacks nothing refers to the
        // Watch any more.
        unsafe {
            if cookie != 0 {
                ffi::rados_unwatch2(self.h.ioctx, cookie);
                ffi::rados_watch_flush(self.h.cluster);
            }
            drop(Box::from_raw(self.watch));
        }
    }
}

/// Runs `f` on a blocking thread with the shared state.
async fn blocking<T: Send + 'static>(
    s: Arc<SharedPr>,
    f: impl FnOnce(&SharedPr) -> T + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(move || f(&s))
        .await
        .map_err(io::Error::other)
}

/// The handle the SCSI layer holds. Empty until the image is open: no state to
/// report yet, and no update can be made (ENOTCONN: the LU is NOT READY).
pub struct SharedHandle(pub(crate) OnceLock<Arc<SharedPr>>);

impl SharedHandle {
    fn pr(&self) -> io::Result<Arc<SharedPr>> {
        self.0
            .get()
            .cloned()
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOTCONN))
    }
}

#[async_trait]
impl SharedState for SharedHandle {
    fn latest(&self) -> (u64, Option<Vec<u8>>) {
        match self.0.get() {
            Some(pr) => pr.w().state.lock().clone(),
            // Version 0: what a LU holds before it has seen any state.
            None => (0, None),
        }
    }

    async fn lock(&self) -> io::Result<Option<Vec<u8>>> {
        blocking(self.pr()?, |s| s.lock_blocking()).await?
    }

    async fn publish_unlock(&self, state: Vec<u8>) -> io::Result<()> {
        blocking(self.pr()?, move |s| {
            let r = s.publish_blocking(&state);
            s.unlock_blocking();
            r
        })
        .await?
    }

    async fn unlock(&self) {
        if let Ok(pr) = self.pr() {
            let _ = blocking(pr, |s| s.unlock_blocking()).await;
        }
    }
}
