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
//!
//! The notify also carries an event: the unit attentions the change establishes for
//! I_T nexuses (SPC-4 5.13.11: RESERVATIONS PREEMPTED, RELEASED, REGISTRATIONS
//! PREEMPTED), which the SCSI layer of every other gateway establishes for its own
//! nexuses under the affected registrations. A watch the cluster dropped (it was away
//! longer than the OSD keeps watches) is re-established by a thread of its own as soon
//! as it is reported, and the state is read again, as notifies may have been missed.

use std::collections::VecDeque;
use std::ffi::{c_char, c_int, c_void, CString};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::{Condvar, Mutex};

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
/// Events kept for LUs that have not looked yet (one per reservation change made
/// through another gateway; a LU looks at its next command).
const EVENTS_KEPT: usize = 256;
/// Marks a notify payload as [`encode`]'s envelope.
const MAGIC: &[u8; 6] = b"rtgt1\0";

/// A notify payload: the sender (so a gateway ignores its own events), the state and
/// the event.
fn encode(sender: u64, state: &[u8], event: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(MAGIC.len() + 12 + state.len() + event.len());
    p.extend_from_slice(MAGIC);
    p.extend_from_slice(&sender.to_be_bytes());
    p.extend_from_slice(&(state.len() as u32).to_be_bytes());
    p.extend_from_slice(state);
    p.extend_from_slice(event);
    p
}

/// (sender, state, event) of a payload; a payload without the envelope is a bare state.
fn decode(p: &[u8]) -> (Option<u64>, &[u8], &[u8]) {
    let h = MAGIC.len() + 12;
    if p.len() >= h && p.starts_with(MAGIC) {
        let sender = u64::from_be_bytes(p[6..14].try_into().expect("8 bytes"));
        let n = u32::from_be_bytes(p[14..18].try_into().expect("4 bytes")) as usize;
        if p.len() >= h + n {
            return (Some(sender), &p[h..h + n], &p[h + n..]);
        }
    }
    (None, p, &[])
}

/// Wakes the thread that re-establishes a dropped watch.
#[derive(Default)]
struct Keeper {
    /// (the watch broke, the state is being closed)
    state: Mutex<(bool, bool)>,
    wake: Condvar,
}

/// What the watch callback shares with the store.
struct Watch {
    io: ffi::rados_ioctx_t,
    oid: CString,
    /// (version, state): the version changes whenever a state arrives.
    state: Mutex<(u64, Option<Vec<u8>>)>,
    /// The watch failed (the cluster went away long enough for the OSD to drop it):
    /// notifies may have been missed until the keeper re-establishes it.
    broken: AtomicBool,
    /// This process's sender id in notify payloads.
    me: u64,
    /// Events from other gateways, numbered; `event_seq` is the newest number.
    events: Mutex<VecDeque<(u64, Vec<u8>)>>,
    event_seq: AtomicU64,
    keeper: Arc<Keeper>,
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
    let raw: &[u8] = if data.is_null() || len == 0 {
        &[]
    } else {
        unsafe { std::slice::from_raw_parts(data as *const u8, len) }
    };
    let (sender, state, event) = decode(raw);
    {
        let mut s = w.state.lock();
        s.0 += 1;
        s.1 = (!state.is_empty()).then(|| state.to_vec());
    }
    if !event.is_empty() && sender != Some(w.me) {
        let mut q = w.events.lock();
        let n = w.event_seq.load(Ordering::Acquire) + 1;
        q.push_back((n, event.to_vec()));
        if q.len() > EVENTS_KEPT {
            q.pop_front();
        }
        w.event_seq.store(n, Ordering::Release);
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
        "rbd: watch on {} lost ({}): re-establishing it",
        w.oid.to_string_lossy(),
        io::Error::from_raw_os_error(-err)
    );
    // No librados call from its own callback thread: the keeper does it.
    w.keeper.state.lock().0 = true;
    w.keeper.wake.notify_all();
}

/// The keeper thread: re-establishes the watch whenever it breaks (with back-off while
/// the cluster is away), until the state is closed.
fn keep(pr: Weak<SharedPr>, k: Arc<Keeper>) {
    loop {
        {
            let mut s = k.state.lock();
            while !s.0 && !s.1 {
                k.wake.wait(&mut s);
            }
            if s.1 {
                return;
            }
            s.0 = false;
        }
        let mut pause = Duration::from_millis(500);
        loop {
            let Some(p) = pr.upgrade() else { return };
            match p.reestablish() {
                Ok(()) => break,
                Err(e) => tracing::warn!(
                    "rbd: re-establishing the watch on {}: {e}; again in {pause:?}",
                    p.w().oid.to_string_lossy()
                ),
            }
            drop(p);
            let mut s = k.state.lock();
            if !s.1 {
                k.wake.wait_for(&mut s, pause);
            }
            if s.1 {
                return;
            }
            pause = (pause * 2).min(Duration::from_secs(8));
        }
    }
}

/// The shared reservation state of one image.
pub struct SharedPr {
    h: Arc<Handles>,
    watch: *mut Watch,
    cookie: AtomicU64,
    read_only: bool,
    /// The lock cookie of the update in progress.
    lock_cookie: Mutex<Option<CString>>,
    /// Serializes (re-)establishing the watch.
    watching: Mutex<()>,
    /// When the update in progress took the lock and how long that took, and the
    /// steps of the last publication (lock, read, write, notify), for the cost log.
    locked_at: Mutex<Option<(Instant, Duration)>>,
    costs: Mutex<Option<[Duration; 4]>>,
}

// SAFETY: `watch` points to a Watch owned by this struct (freed in Drop) that is Sync.
unsafe impl Send for SharedPr {}
unsafe impl Sync for SharedPr {}

static NEXT_COOKIE: AtomicU64 = AtomicU64::new(1);

impl SharedPr {
    /// Creates the watch object if needed, watches it, loads the current state and
    /// starts the thread that re-establishes the watch when it breaks.
    pub(crate) fn open(h: Arc<Handles>, image_id: &str) -> io::Result<Arc<Self>> {
        let read_only = false;
        let oid = cstr(&format!("rtgt_pr.{image_id}"))?;
        let keeper = Arc::new(Keeper::default());
        let me = (u64::from(std::process::id()) << 32)
            ^ NEXT_COOKIE.fetch_add(1, Ordering::Relaxed)
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
        let w = Box::into_raw(Box::new(Watch {
            io: h.ioctx,
            oid,
            state: Mutex::new((1, None)),
            broken: AtomicBool::new(false),
            me,
            events: Mutex::new(VecDeque::new()),
            event_seq: AtomicU64::new(0),
            keeper: keeper.clone(),
        }));
        let s = Arc::new(Self {
            h,
            watch: w,
            cookie: AtomicU64::new(0),
            read_only,
            lock_cookie: Mutex::new(None),
            watching: Mutex::new(()),
            locked_at: Mutex::new(None),
            costs: Mutex::new(None),
        });
        let initial = s.read_meta()?;
        s.w().state.lock().1 = initial;
        s.establish_watch()?;
        let weak = Arc::downgrade(&s);
        std::thread::Builder::new()
            .name("rbd-watch".into())
            .spawn(move || keep(weak, keeper))?;
        Ok(s)
    }

    /// Watches again after the watch broke, and reads the state again: notifies sent
    /// meanwhile were missed.
    fn reestablish(&self) -> io::Result<()> {
        if !self.w().broken.load(Ordering::Acquire) {
            return Ok(());
        }
        self.establish_watch()?;
        // Read without the update lock: a change published or announced while the
        // read is under way is at least as new as what it returns, so the read is
        // kept only if nothing came meanwhile (else a released reservation could come
        // back from a read that began before its release).
        let seen = self.w().state.lock().0;
        let state = self.read_meta()?;
        let mut s = self.w().state.lock();
        if s.0 == seen && s.1 != state {
            s.0 += 1;
            s.1 = state;
        }
        tracing::info!(
            "rbd: watch on {} re-established",
            self.w().oid.to_string_lossy()
        );
        Ok(())
    }

    fn w(&self) -> &Watch {
        // SAFETY: valid from open until Drop.
        unsafe { &*self.watch }
    }

    fn establish_watch(&self) -> io::Result<()> {
        let _one = self.watching.lock();
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
        *self.locked_at.lock() = Some((Instant::now(), start.elapsed()));
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

    fn publish_blocking(&self, state: &[u8], event: &[u8]) -> io::Result<()> {
        let w = self.w();
        let key = cstr(META_KEY)?;
        let value = CString::new(state).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
        let t_write = Instant::now();
        // SAFETY: valid handles and strings.
        check(unsafe { ffi::rbd_metadata_set(self.h.image, key.as_ptr(), value.as_ptr()) })?;
        // This gateway has the new state now, not when its own notify comes back: its
        // watch may be down (a loaded cluster drops watches), and then the state read
        // under the lock, which the change replaced, would stay its latest.
        {
            let mut s = w.state.lock();
            s.0 += 1;
            s.1 = (!state.is_empty()).then(|| state.to_vec());
        }
        let t_notify = Instant::now();
        let payload = encode(w.me, state, event);
        let mut reply: *mut c_char = std::ptr::null_mut();
        let mut reply_len = 0usize;
        // SAFETY: `payload` is valid for the call; the reply buffer is librados's to free.
        let rc = unsafe {
            ffi::rados_notify2(
                w.io,
                w.oid.as_ptr(),
                payload.as_ptr() as *const c_char,
                payload.len() as c_int,
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
        *self.costs.lock() = self.locked_at.lock().map(|(locked, lock_took)| {
            [
                lock_took,
                t_write - locked,
                t_notify - t_write,
                t_notify.elapsed(),
            ]
        });
        Ok(())
    }
}

impl Drop for SharedPr {
    fn drop(&mut self) {
        self.w().keeper.state.lock().1 = true;
        self.w().keeper.wake.notify_all();
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

    async fn publish_unlock(&self, state: Vec<u8>, event: Vec<u8>) -> io::Result<()> {
        blocking(self.pr()?, move |s| {
            let r = s.publish_blocking(&state, &event);
            let t_unlock = Instant::now();
            s.unlock_blocking();
            // What a reservation change costs, step by step (README: gateways).
            if let Some([lock, read, write, notify]) = s.costs.lock().take() {
                let us = |d: Duration| d.as_micros() as u64;
                tracing::debug!(
                    lock_us = us(lock),
                    read_us = us(read),
                    write_us = us(write),
                    notify_us = us(notify),
                    unlock_us = us(t_unlock.elapsed()),
                    "rbd: reservation change published"
                );
            }
            r
        })
        .await?
    }

    fn events_since(&self, seen: u64) -> (u64, Vec<Vec<u8>>) {
        let Some(pr) = self.0.get() else {
            return (seen, Vec::new());
        };
        let w = pr.w();
        let newest = w.event_seq.load(Ordering::Acquire);
        if newest == seen {
            return (seen, Vec::new());
        }
        let q = w.events.lock();
        let newest = q.back().map_or(newest, |e| e.0);
        let v = q
            .iter()
            .filter(|(n, _)| *n > seen)
            .map(|(_, e)| e.clone())
            .collect();
        (newest, v)
    }

    async fn unlock(&self) {
        if let Ok(pr) = self.pr() {
            let _ = blocking(pr, |s| s.unlock_blocking()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_envelope_round_trips() {
        let p = encode(7, b"{\"state\":1}", b"[ua]");
        assert_eq!(decode(&p), (Some(7), &b"{\"state\":1}"[..], &b"[ua]"[..]));
        let p = encode(9, b"", b"");
        assert_eq!(decode(&p), (Some(9), &b""[..], &b""[..]));
        // A bare state (an older gateway's notify) is a state without an event.
        assert_eq!(decode(b"{}"), (None, &b"{}"[..], &b""[..]));
        // A truncated envelope is not taken apart.
        let p = encode(1, b"abcdef", b"");
        assert_eq!(decode(&p[..p.len() - 2]).0, None);
    }
}
