//! `io_uring` (tgt's `aio` is accepted as an alias): reads, writes, datasyncs and
//! fallocates go to one io_uring per daemon, owned by one thread that submits every
//! request queued since it last looked in a single `io_uring_enter` (batched
//! submission) and hands each completion back to the task that awaits it through a
//! oneshot channel. No tokio worker thread ever blocks on the disk.
//!
//! Submitters queue a request on a channel and wake the ring thread through an eventfd
//! the ring itself keeps a read posted on, so the thread sleeps in one place
//! (`io_uring_enter`) for both new requests and completions.
//!
//! Where the kernel refuses io_uring (seccomp, `kernel.io_uring_disabled`, an old
//! kernel) [`open`] logs one line and returns an `rdwr` store instead.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, OnceLock};

use async_trait::async_trait;
use io_uring::{opcode, types, IoUring};
use tokio::sync::oneshot;

use crate::aligned::{align_down, align_up, is_aligned, AlignedBuf, RangeLock};
use crate::{
    pool, rdwr, sys, BackingStore, Capabilities, Counters, Extent, IoFuture, IoStats, OpenError,
    OpenOptions,
};

/// Submission queue size; completions arrive in a queue twice as large.
const RING_ENTRIES: u32 = 256;
/// Requests in flight at once (one entry stays for the eventfd read).
const MAX_IN_FLIGHT: usize = RING_ENTRIES as usize - 1;
/// user_data of the eventfd read.
const WAKE_TAG: u64 = u64::MAX;
/// Set to 1 to behave as if the kernel refused io_uring (tests the fallback).
pub const DISABLE_ENV: &str = "RTGT_NO_IO_URING";

/// A buffer the kernel reads or writes while the request is in flight: owned by the
/// request (its heap memory does not move) until the completion hands it back.
pub enum Buf {
    Vec(Vec<u8>),
    Aligned(AlignedBuf),
}

impl Buf {
    fn len(&self) -> usize {
        match self {
            Buf::Vec(v) => v.len(),
            Buf::Aligned(a) => a.len(),
        }
    }
    fn as_mut_ptr(&mut self) -> *mut u8 {
        match self {
            Buf::Vec(v) => v.as_mut_ptr(),
            Buf::Aligned(a) => a.as_mut_slice().as_mut_ptr(),
        }
    }
    fn as_mut_slice(&mut self) -> &mut [u8] {
        match self {
            Buf::Vec(v) => v,
            Buf::Aligned(a) => a.as_mut_slice(),
        }
    }
}

enum Op {
    /// Read `len` bytes into `buf[pos..]` from `offset`.
    Read {
        buf: Buf,
        pos: usize,
        len: u32,
        offset: u64,
    },
    /// Write `buf[pos..pos + len]` at `offset`, with RWF_DSYNC when `dsync`.
    Write {
        buf: Buf,
        pos: usize,
        len: u32,
        offset: u64,
        dsync: bool,
    },
    /// fdatasync of `offset..offset + len` (both zero: the whole file).
    Datasync {
        offset: u64,
        len: u32,
    },
    Fallocate {
        offset: u64,
        len: u64,
        mode: i32,
    },
}

type Done = oneshot::Sender<(Option<Buf>, io::Result<u32>)>;

struct Req {
    /// Keeps the fd open while the kernel uses it.
    file: Arc<File>,
    op: Op,
    done: Done,
}

impl Req {
    fn entry(&mut self, tag: u64) -> io_uring::squeue::Entry {
        let fd = types::Fd(self.file.as_raw_fd());
        let e = match &mut self.op {
            Op::Read {
                buf,
                pos,
                len,
                offset,
            } => {
                // SAFETY (for the kernel's use of the pointer): the buffer lives in this
                // request, which stays in the ring thread's slot table until completion.
                let ptr = buf.as_mut_ptr().wrapping_add(*pos);
                opcode::Read::new(fd, ptr, *len).offset(*offset).build()
            }
            Op::Write {
                buf,
                pos,
                len,
                offset,
                dsync,
            } => {
                let ptr = buf.as_mut_ptr().wrapping_add(*pos);
                let flags = if *dsync { libc::RWF_DSYNC } else { 0 };
                opcode::Write::new(fd, ptr, *len)
                    .offset(*offset)
                    .rw_flags(flags)
                    .build()
            }
            Op::Datasync { offset, len } => opcode::Fsync::new(fd)
                .flags(types::FsyncFlags::DATASYNC)
                .offset(*offset)
                .len(*len)
                .build(),
            Op::Fallocate { offset, len, mode } => opcode::Fallocate::new(fd, *len)
                .offset(*offset)
                .mode(*mode)
                .build(),
        };
        e.user_data(tag)
    }

    fn complete(self, res: i32) {
        let buf = match self.op {
            Op::Read { buf, .. } | Op::Write { buf, .. } => Some(buf),
            _ => None,
        };
        let r = if res < 0 {
            Err(io::Error::from_raw_os_error(-res))
        } else {
            Ok(res as u32)
        };
        // The awaiting task may be gone (its connection dropped); nothing to tell then.
        let _ = self.done.send((buf, r));
    }
}

/// The daemon's ring: a queue into the ring thread and the eventfd that wakes it.
pub struct Ring {
    tx: mpsc::Sender<Req>,
    wake: OwnedFd,
    /// Set by submitters, cleared by the ring thread before it drains the queue: only
    /// the first request of a burst pays for an eventfd write.
    pending: Arc<AtomicBool>,
}

static RING: OnceLock<Result<Ring, String>> = OnceLock::new();

/// The daemon's ring, set up on first use; Err says why io_uring is unavailable.
pub fn ring() -> Result<&'static Ring, &'static str> {
    RING.get_or_init(Ring::start)
        .as_ref()
        .map_err(String::as_str)
}

/// Whether io_uring works here (and why not).
pub fn available() -> Result<(), String> {
    ring().map(|_| ()).map_err(str::to_string)
}

impl Ring {
    fn start() -> Result<Ring, String> {
        if std::env::var(DISABLE_ENV).is_ok_and(|v| v == "1") {
            return Err(format!("disabled by {DISABLE_ENV}=1"));
        }
        let uring = IoUring::new(RING_ENTRIES).map_err(|e| format!("io_uring_setup: {e}"))?;
        // The opcodes the store needs (FALLOCATE is the newest, Linux 5.6).
        let mut probe = io_uring::Probe::new();
        uring
            .submitter()
            .register_probe(&mut probe)
            .map_err(|e| format!("io_uring probe: {e}"))?;
        for (code, name) in [
            (opcode::Read::CODE, "READ"),
            (opcode::Write::CODE, "WRITE"),
            (opcode::Fsync::CODE, "FSYNC"),
            (opcode::Fallocate::CODE, "FALLOCATE"),
        ] {
            if !probe.is_supported(code) {
                return Err(format!("the kernel's io_uring lacks IORING_OP_{name}"));
            }
        }
        // SAFETY: plain eventfd(2); the fd is owned below.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if efd < 0 {
            return Err(format!("eventfd: {}", io::Error::last_os_error()));
        }
        // SAFETY: efd is a fresh fd nobody else owns.
        let wake = unsafe { OwnedFd::from_raw_fd(efd) };
        let (tx, rx) = mpsc::channel();
        let pending = Arc::new(AtomicBool::new(false));
        let p = pending.clone();
        std::thread::Builder::new()
            .name("rtgt-uring".into())
            .spawn(move || ring_thread(uring, rx, efd, p))
            .map_err(|e| format!("starting the io_uring thread: {e}"))?;
        Ok(Ring { tx, wake, pending })
    }

    async fn submit(&self, file: &Arc<File>, op: Op) -> (Option<Buf>, io::Result<u32>) {
        let (done, rx) = oneshot::channel();
        let req = Req {
            file: file.clone(),
            op,
            done,
        };
        if self.tx.send(req).is_err() {
            return (
                None,
                Err(io::Error::other("the io_uring thread has stopped")),
            );
        }
        if !self.pending.swap(true, Ordering::AcqRel) {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from `one` to our eventfd.
            unsafe {
                libc::write(
                    self.wake.as_raw_fd(),
                    &one as *const u64 as *const libc::c_void,
                    8,
                )
            };
        }
        rx.await.unwrap_or_else(|_| {
            (
                None,
                Err(io::Error::other("the io_uring thread has stopped")),
            )
        })
    }
}

fn ring_thread(mut uring: IoUring, rx: mpsc::Receiver<Req>, wake: RawFd, pending: Arc<AtomicBool>) {
    // The eventfd read's 8-byte buffer; the thread (and the ring) never end, so it
    // outlives every read posted on it.
    let mut wake_buf = Box::new(0u64);
    let mut wake_posted = false;
    let mut slots: Vec<Option<Req>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut backlog: VecDeque<Req> = VecDeque::new();
    let mut in_flight = 0usize;
    loop {
        pending.store(false, Ordering::Release);
        while let Ok(r) = rx.try_recv() {
            backlog.push_back(r);
        }
        {
            let mut sq = uring.submission();
            if !wake_posted {
                let e = opcode::Read::new(types::Fd(wake), (&mut *wake_buf as *mut u64).cast(), 8)
                    .build()
                    .user_data(WAKE_TAG);
                // SAFETY: the buffer outlives the read (see above).
                if unsafe { sq.push(&e) }.is_ok() {
                    wake_posted = true;
                }
            }
            while in_flight < MAX_IN_FLIGHT {
                let Some(mut req) = backlog.pop_front() else {
                    break;
                };
                let slot = free.pop().unwrap_or_else(|| {
                    slots.push(None);
                    slots.len() - 1
                });
                let e = req.entry(slot as u64);
                // SAFETY: the request (and so its buffer and fd) stays in `slots` until
                // its completion is reaped.
                if unsafe { sq.push(&e) }.is_err() {
                    free.push(slot);
                    backlog.push_front(req);
                    break;
                }
                slots[slot] = Some(req);
                in_flight += 1;
            }
        }
        match uring.submit_and_wait(1) {
            Ok(_) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR) | Some(libc::EBUSY)) => {}
            Err(e) => {
                tracing::error!("io_uring_enter: {e}");
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
        for cqe in uring.completion() {
            let tag = cqe.user_data();
            if tag == WAKE_TAG {
                wake_posted = false;
                continue;
            }
            if let Some(req) = slots.get_mut(tag as usize).and_then(Option::take) {
                free.push(tag as usize);
                in_flight -= 1;
                req.complete(cqe.result());
            }
        }
    }
}

pub struct UringStore {
    ring: &'static Ring,
    file: Arc<File>,
    /// Changes with online resize or a file grown behind our back.
    size: AtomicU64,
    caps: Capabilities,
    counters: Arc<Counters>,
    locks: Arc<RangeLock>,
}

/// Opens an io_uring store, or an rdwr one (with one log line per daemon) where the
/// kernel has no io_uring for us.
pub fn open(opts: &OpenOptions) -> Result<Arc<dyn BackingStore>, OpenError> {
    open_or_fall_back(ring(), opts)
}

fn open_or_fall_back(
    ring: Result<&'static Ring, &str>,
    opts: &OpenOptions,
) -> Result<Arc<dyn BackingStore>, OpenError> {
    match ring {
        Ok(ring) => Ok(Arc::new(UringStore::open_with(ring, opts)?)),
        Err(why) => {
            warn_unavailable(why);
            Ok(Arc::new(rdwr::RdwrStore::open(opts)?))
        }
    }
}

/// Logs, once per process, that io_uring is unavailable and why. The daemon calls this at
/// start so the line is there before any LUN asks for io_uring.
pub fn warn_if_unavailable() {
    if let Err(why) = ring() {
        warn_unavailable(why);
    }
}

fn warn_unavailable(why: &str) {
    static LOGGED: AtomicBool = AtomicBool::new(false);
    if !LOGGED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            "io_uring is unavailable ({why}); bstype io_uring/aio LUNs use rdwr (pread/pwrite on the I/O thread pool) instead"
        );
    }
}

/// One chunk of a read or write: at most what one SQE can say.
const MAX_CHUNK: usize = 1 << 30;

impl UringStore {
    pub fn open_with(ring: &'static Ring, opts: &OpenOptions) -> Result<Self, OpenError> {
        let o = sys::open_backing(opts)?;
        Ok(Self {
            ring,
            file: Arc::new(o.file),
            size: AtomicU64::new(o.size),
            caps: o.caps,
            counters: Arc::default(),
            locks: RangeLock::new(),
        })
    }

    /// Fills all of `buf` from `offset`, resubmitting after short reads; past the end of
    /// the file reads as zeroes.
    async fn read_full(&self, mut buf: Buf, offset: u64) -> io::Result<Buf> {
        let total = buf.len();
        let mut pos = 0;
        while pos < total {
            let len = (total - pos).min(MAX_CHUNK) as u32;
            let op = Op::Read {
                buf,
                pos,
                len,
                offset: offset + pos as u64,
            };
            let (b, r) = self.ring.submit(&self.file, op).await;
            buf = b.ok_or_else(|| io::Error::other("io_uring lost a read buffer"))?;
            match r {
                Ok(0) => {
                    buf.as_mut_slice()[pos..].fill(0);
                    break;
                }
                Ok(n) => pos += n as usize,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(buf)
    }

    async fn write_all(&self, mut buf: Buf, offset: u64, dsync: bool) -> io::Result<Buf> {
        let total = buf.len();
        let mut pos = 0;
        while pos < total {
            let len = (total - pos).min(MAX_CHUNK) as u32;
            let op = Op::Write {
                buf,
                pos,
                len,
                offset: offset + pos as u64,
                dsync,
            };
            let (b, r) = self.ring.submit(&self.file, op).await;
            buf = b.ok_or_else(|| io::Error::other("io_uring lost a write buffer"))?;
            match r {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => pos += n as usize,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(buf)
    }

    async fn write_inner(&self, buf: Vec<u8>, offset: u64, dsync: bool) -> io::Result<Vec<u8>> {
        if self.caps.read_only {
            return Err(io::Error::from(io::ErrorKind::PermissionDenied));
        }
        let buf = if self.caps.direct {
            // Unaligned: read-modify-write of the aligned span, under the range lock.
            let (start, end) = (align_down(offset), align_up(offset + buf.len() as u64));
            let _guard = self.locks.lock(start, end).await;
            let mut bounce = Buf::Aligned(AlignedBuf::zeroed((end - start) as usize));
            if !is_aligned(offset, buf.len()) {
                bounce = self.read_full(bounce, start).await?;
            }
            let skip = (offset - start) as usize;
            bounce.as_mut_slice()[skip..skip + buf.len()].copy_from_slice(&buf);
            self.write_all(bounce, start, dsync).await?;
            buf
        } else {
            match self.write_all(Buf::Vec(buf), offset, dsync).await? {
                Buf::Vec(v) => v,
                Buf::Aligned(_) => unreachable!("a Vec write returns its Vec"),
            }
        };
        self.counters.write(dsync);
        Ok(buf)
    }

    async fn simple(&self, op: Op) -> io::Result<()> {
        self.ring.submit(&self.file, op).await.1.map(|_| ())
    }

    async fn fallocate(&self, mode: i32, offset: u64, len: u64) -> io::Result<()> {
        self.simple(Op::Fallocate { offset, len, mode }).await
    }
}

#[async_trait]
impl BackingStore for UringStore {
    fn kind(&self) -> &'static str {
        "io_uring"
    }
    fn size(&self) -> u64 {
        self.size.load(Ordering::Relaxed)
    }
    fn capabilities(&self) -> Capabilities {
        self.caps.clone()
    }
    fn stats(&self) -> IoStats {
        self.counters.snapshot()
    }
    fn read_at(&self, buf: Vec<u8>, offset: u64) -> IoFuture<'_, Vec<u8>> {
        IoFuture::pending(async move {
            let out = if self.caps.direct {
                let (start, end) = (align_down(offset), align_up(offset + buf.len() as u64));
                let mut out = buf;
                let bounce = Buf::Aligned(AlignedBuf::zeroed((end - start) as usize));
                let mut bounce = self.read_full(bounce, start).await?;
                let skip = (offset - start) as usize;
                let n = out.len();
                out.copy_from_slice(&bounce.as_mut_slice()[skip..skip + n]);
                out
            } else {
                match self.read_full(Buf::Vec(buf), offset).await? {
                    Buf::Vec(v) => v,
                    Buf::Aligned(_) => unreachable!("a Vec read returns its Vec"),
                }
            };
            self.counters.read();
            Ok(out)
        })
    }
    fn write_at(&self, buf: Vec<u8>, offset: u64) -> IoFuture<'_, Vec<u8>> {
        IoFuture::pending(self.write_inner(buf, offset, false))
    }
    async fn write_at_durable(&self, buf: Vec<u8>, offset: u64) -> io::Result<Vec<u8>> {
        self.write_inner(buf, offset, true).await
    }
    async fn flush(&self) -> io::Result<()> {
        self.simple(Op::Datasync { offset: 0, len: 0 }).await?;
        self.counters.flush();
        Ok(())
    }
    /// A ranged datasync: the kernel writes out only the range's dirty pages, then
    /// flushes the device cache (vfs_fsync_range), unlike fdatasync(2) which writes out
    /// the whole file.
    async fn flush_range(&self, offset: u64, len: u64) -> io::Result<()> {
        let (offset, len) = match u32::try_from(len) {
            Ok(l) if l > 0 => (offset, l),
            _ => (0, 0),
        };
        self.simple(Op::Datasync { offset, len }).await?;
        self.counters.flush();
        Ok(())
    }
    async fn unmap(&self, offset: u64, len: u64) -> io::Result<()> {
        if self.caps.read_only {
            return Err(io::Error::from(io::ErrorKind::PermissionDenied));
        }
        if len == 0 {
            return Ok(());
        }
        if self.caps.block_device {
            // io_uring has no BLKDISCARD before Linux 6.12's uring_cmd; use the pool.
            let file = self.file.clone();
            return pool::run(move || sys::discard(&file, true, offset, len)).await;
        }
        match self.fallocate(sys::PUNCH_HOLE, offset, len).await {
            // A file system that cannot punch holes: zeroes keep LBPRZ true.
            Err(e) if sys::unsupported(&e) => self.write_zeroes(offset, len).await,
            r => r,
        }
    }
    async fn allocation(&self, offset: u64, len: u64) -> io::Result<Vec<Extent>> {
        sys::allocation(&self.file, self.caps.block_device, offset, len).await
    }
    fn resize(&self, size: u64) -> io::Result<()> {
        sys::resize(&self.file, &self.caps, &self.size, size)
    }
    fn refresh_size(&self) -> io::Result<u64> {
        sys::refresh_size(&self.file, self.caps.block_device, &self.size)
    }
    async fn write_zeroes(&self, offset: u64, len: u64) -> io::Result<()> {
        if self.caps.read_only {
            return Err(io::Error::from(io::ErrorKind::PermissionDenied));
        }
        if len == 0 {
            return Ok(());
        }
        let _guard = if self.caps.direct {
            Some(
                self.locks
                    .lock(align_down(offset), align_up(offset + len))
                    .await,
            )
        } else {
            None
        };
        if !self.caps.block_device {
            for mode in [sys::ZERO_RANGE, sys::PUNCH_HOLE] {
                match self.fallocate(mode, offset, len).await {
                    Err(e) if sys::unsupported(&e) => {}
                    r => return r,
                }
            }
        }
        let file = self.file.clone();
        let bdev = self.caps.block_device;
        pool::run(move || sys::zero_range(&file, bdev, offset, len)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rdwr::tests::tmpfile;

    fn store(direct: bool) -> Option<(UringStore, std::path::PathBuf)> {
        let ring = match ring() {
            Ok(r) => r,
            Err(why) => {
                eprintln!("SKIPPED: io_uring unavailable here: {why}");
                return None;
            }
        };
        let p = tmpfile(4 << 20);
        match UringStore::open_with(
            ring,
            &OpenOptions {
                path: p.clone(),
                direct,
                ..Default::default()
            },
        ) {
            Ok(s) => Some((s, p)),
            Err(e) if direct => {
                eprintln!("SKIPPED: O_DIRECT unavailable here: {e}");
                None
            }
            Err(e) => panic!("{e}"),
        }
    }

    #[tokio::test]
    async fn reads_writes_flushes_through_the_ring() {
        let Some((s, p)) = store(false) else { return };
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        s.write_at(data.clone(), 12345).await.unwrap();
        assert_eq!(s.read_at(vec![0; data.len()], 12345).await.unwrap(), data);
        // What the ring wrote is in the file.
        let on_disk = std::fs::read(&p).unwrap();
        assert_eq!(&on_disk[12345..12345 + data.len()], &data[..]);
        // Past the end of the file reads as zeroes.
        let tail = s.read_at(vec![7; 8192], (4 << 20) - 4096).await.unwrap();
        assert!(tail.iter().all(|&b| b == 0));
        s.write_at_durable(vec![1; 4096], 0).await.unwrap();
        s.flush().await.unwrap();
        s.flush_range(0, 4096).await.unwrap();
        let st = s.stats();
        assert_eq!((st.writes, st.durable_writes, st.flushes), (2, 1, 2));
        std::fs::remove_file(p).unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_concurrent_requests_complete_to_their_own_tasks() {
        let Some((s, p)) = store(false) else { return };
        let s = Arc::new(s);
        let mut tasks = Vec::new();
        // More than the ring holds, so the backlog path runs too.
        for i in 0..600u64 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                let v = vec![(i % 256) as u8; 4096];
                s.write_at(v.clone(), i * 4096 % (4 << 20)).await.unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        for i in 344..600u64 {
            let got = s
                .read_at(vec![0; 4096], i * 4096 % (4 << 20))
                .await
                .unwrap();
            assert!(got.iter().all(|&b| b == (i % 256) as u8), "block {i}");
        }
        std::fs::remove_file(p).unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn direct_unaligned_writes_to_one_block_all_land() {
        let Some((s, p)) = store(true) else { return };
        let s = Arc::new(s);
        s.write_at(vec![0xee; 8192], 0).await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..8u8 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                s.write_at(vec![i + 1; 512], 4096 + 512 * u64::from(i))
                    .await
                    .unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let got = s.read_at(vec![0; 512 * 10], 4096 - 512).await.unwrap();
        assert!(got[..512].iter().all(|&b| b == 0xee));
        for i in 0..8usize {
            assert!(
                got[512 * (i + 1)..512 * (i + 2)]
                    .iter()
                    .all(|&b| b == i as u8 + 1),
                "sector {i}"
            );
        }
        assert!(got[512 * 9..].iter().all(|&b| b == 0));
        std::fs::remove_file(p).unwrap();
    }

    #[tokio::test]
    async fn falls_back_to_rdwr_without_io_uring() {
        let p = tmpfile(1 << 20);
        let opts = OpenOptions {
            path: p.clone(),
            ..Default::default()
        };
        let s = open_or_fall_back(Err("refused for the test"), &opts).unwrap();
        assert_eq!(s.kind(), "rdwr");
        s.write_at(vec![3; 512], 512).await.unwrap();
        assert_eq!(s.read_at(vec![0; 512], 512).await.unwrap(), vec![3; 512]);
        std::fs::remove_file(p).unwrap();
    }

    #[tokio::test]
    async fn punch_hole_and_zero_range() {
        let Some((s, p)) = store(false) else { return };
        s.write_at(vec![0xff; 65536], 0).await.unwrap();
        s.unmap(0, 8192).await.unwrap();
        s.write_zeroes(16384, 4096).await.unwrap();
        let got = s.read_at(vec![1; 65536], 0).await.unwrap();
        assert!(got[..8192].iter().all(|&b| b == 0));
        assert!(got[8192..16384].iter().all(|&b| b == 0xff));
        assert!(got[16384..20480].iter().all(|&b| b == 0));
        assert!(got[20480..].iter().all(|&b| b == 0xff));
        std::fs::remove_file(p).unwrap();
    }
}
