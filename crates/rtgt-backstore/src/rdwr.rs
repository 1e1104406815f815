//! `rdwr`: pread / pwrite on a file or block device, run on the daemon's I/O pool
//! ([`crate::pool`], `rtgtd -t N`) so the network threads never wait on the disk.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;

use crate::aligned::{align_down, align_up, is_aligned, AlignedBuf, RangeLock};
use crate::{
    pool, sys, BackingStore, Capabilities, Counters, Extent, IoFuture, IoStats, OpenError,
    OpenOptions,
};

/// Buffered writes waiting for the store's writer (see [`RdwrStore::write_buffered`]).
#[derive(Default)]
struct WriteQueue {
    jobs: Vec<WriteJob>,
    /// A pool thread is draining the queue (or about to).
    draining: bool,
}

struct WriteJob {
    buf: Vec<u8>,
    offset: u64,
    done: tokio::sync::oneshot::Sender<io::Result<Vec<u8>>>,
}

/// Inline writes slower than this, [`SLOW_STREAK`] in a row, mean the page cache is pushing
/// back (dirty page throttling, a journal commit): writes then go through the pool for
/// [`SLOW_BACKOFF`]. One slow write alone is usually the thread being preempted on a busy
/// machine, which the pool would not help: backing off on it sent about a fifth of all
/// 4K writes through the pool under load (perf: the pool threads' share of rtgtd's CPU).
const SLOW_WRITE: std::time::Duration = std::time::Duration::from_micros(500);
const SLOW_STREAK: u32 = 3;
const SLOW_BACKOFF: std::time::Duration = std::time::Duration::from_secs(1);
/// Larger buffered reads and writes always go through the pool.
const INLINE_WRITE_MAX: usize = 128 * 1024;

fn clock() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_micros() as u64
}

pub struct RdwrStore {
    queue: Arc<parking_lot::Mutex<WriteQueue>>,
    /// Until this time (µs of [`clock`]) buffered writes are not done inline.
    inline_after: AtomicU64,
    /// Consecutive slow inline writes (see [`SLOW_STREAK`]).
    slow_streak: std::sync::atomic::AtomicU32,
    file: Arc<File>,
    /// Changes with online resize or a file grown behind our back.
    size: AtomicU64,
    caps: Capabilities,
    counters: Arc<Counters>,
    /// Serialises overlapping O_DIRECT writes (see [`RangeLock`]).
    locks: Arc<RangeLock>,
}

impl RdwrStore {
    pub fn open(opts: &OpenOptions) -> Result<Self, OpenError> {
        let o = sys::open_backing(opts)?;
        Ok(Self {
            queue: Arc::default(),
            inline_after: AtomicU64::new(0),
            slow_streak: std::sync::atomic::AtomicU32::new(0),
            file: Arc::new(o.file),
            size: AtomicU64::new(o.size),
            caps: o.caps,
            counters: Arc::default(),
            locks: RangeLock::new(),
        })
    }

    async fn write_inner(&self, buf: Vec<u8>, offset: u64, durable: bool) -> io::Result<Vec<u8>> {
        if self.caps.read_only {
            return Err(io::Error::from(io::ErrorKind::PermissionDenied));
        }
        if !self.caps.direct && !durable {
            return self.write_buffered(buf, offset).await;
        }
        let file = self.file.clone();
        let direct = self.caps.direct;
        let _guard = if direct {
            Some(
                self.locks
                    .lock(align_down(offset), align_up(offset + buf.len() as u64))
                    .await,
            )
        } else {
            None
        };
        let buf = pool::run(move || {
            if direct {
                write_direct(&file, &buf, offset, durable)?;
            } else if durable {
                sys::pwrite_dsync(&file, &buf, offset)?;
            } else {
                file.write_all_at(&buf, offset)?;
            }
            Ok(buf)
        })
        .await?;
        self.counters.write(durable);
        Ok(buf)
    }
}

impl RdwrStore {
    /// A write into the page cache is a memory copy of a few microseconds, far less than
    /// waking an I/O thread for it: small ones are done right here while they stay fast.
    /// The first slow ones (the kernel throttling dirty pages) send writes back to the
    /// pool for a while, so a congested disk never holds the connection's thread for
    /// long. Gives the buffer back when the write is not for doing here.
    fn write_inline(&self, buf: Vec<u8>, offset: u64) -> Result<io::Result<Vec<u8>>, Vec<u8>> {
        if self.caps.read_only
            || self.caps.direct
            || buf.len() > INLINE_WRITE_MAX
            || clock() < self.inline_after.load(Ordering::Relaxed)
        {
            return Err(buf);
        }
        let t = std::time::Instant::now();
        let r = self.file.write_all_at(&buf, offset);
        if t.elapsed() > SLOW_WRITE {
            if self.slow_streak.fetch_add(1, Ordering::Relaxed) + 1 >= SLOW_STREAK {
                self.slow_streak.store(0, Ordering::Relaxed);
                self.inline_after
                    .store(clock() + SLOW_BACKOFF.as_micros() as u64, Ordering::Relaxed);
            }
        } else if self.slow_streak.load(Ordering::Relaxed) != 0 {
            self.slow_streak.store(0, Ordering::Relaxed);
        }
        if r.is_ok() {
            self.counters.write(false);
        }
        Ok(r.map(|()| buf))
    }

    /// Buffered writes not done inline ([`Self::write_inline`]): they queue up here and
    /// one pool thread at a time drains the queue, so a burst of N writes costs one
    /// wake-up instead of N; writes that arrive while it runs join the same pass.
    async fn write_buffered(&self, buf: Vec<u8>, offset: u64) -> io::Result<Vec<u8>> {
        let (done, result) = tokio::sync::oneshot::channel();
        let start = {
            let mut q = self.queue.lock();
            q.jobs.push(WriteJob { buf, offset, done });
            !std::mem::replace(&mut q.draining, true)
        };
        if start {
            let queue = self.queue.clone();
            let file = self.file.clone();
            let counters = self.counters.clone();
            let r = pool::spawn(move || {
                let mut jobs = Vec::new();
                loop {
                    {
                        let mut q = queue.lock();
                        if q.jobs.is_empty() {
                            q.draining = false;
                            return;
                        }
                        std::mem::swap(&mut jobs, &mut q.jobs);
                    }
                    for j in jobs.drain(..) {
                        let r = file.write_all_at(&j.buf, j.offset).map(|()| j.buf);
                        if r.is_ok() {
                            counters.write(false);
                        }
                        let _ = j.done.send(r);
                    }
                }
            });
            if let Err(e) = r {
                self.queue.lock().draining = false;
                return Err(e);
            }
        }
        result
            .await
            .map_err(|_| io::Error::other("I/O thread panicked"))?
    }
}

/// Reads `buf.len()` bytes at `offset`, zero-filling past the end of the file.
pub(crate) fn read_full(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => {
                buf[done..].fill(0);
                break;
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// O_DIRECT read through an aligned bounce buffer covering the aligned span.
fn read_direct(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    let start = align_down(offset);
    let end = align_up(offset + buf.len() as u64);
    let mut bounce = AlignedBuf::zeroed((end - start) as usize);
    read_full(file, bounce.as_mut_slice(), start)?;
    let skip = (offset - start) as usize;
    buf.copy_from_slice(&bounce.as_slice()[skip..skip + buf.len()]);
    Ok(())
}

/// O_DIRECT write: read-modify-write of the aligned span when the I/O is unaligned. The
/// caller holds the span in the store's [`RangeLock`].
fn write_direct(file: &File, buf: &[u8], offset: u64, durable: bool) -> io::Result<()> {
    let start = align_down(offset);
    let end = align_up(offset + buf.len() as u64);
    let mut bounce = AlignedBuf::zeroed((end - start) as usize);
    if !is_aligned(offset, buf.len()) {
        read_full(file, bounce.as_mut_slice(), start)?;
    }
    let skip = (offset - start) as usize;
    bounce.as_mut_slice()[skip..skip + buf.len()].copy_from_slice(buf);
    if durable {
        sys::pwrite_dsync(file, bounce.as_slice(), start)
    } else {
        file.write_all_at(bounce.as_slice(), start)
    }
}

#[async_trait]
impl BackingStore for RdwrStore {
    fn kind(&self) -> &'static str {
        "rdwr"
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
    fn read_at(&self, mut buf: Vec<u8>, offset: u64) -> IoFuture<'_, Vec<u8>> {
        let direct = self.caps.direct;
        // Page-cache hits are read right here: a copy of a few microseconds costs less
        // than the round trip through an I/O thread (two context switches and wake-ups).
        // Only what is not cached goes to the pool, so the caller's thread never waits
        // for the disk.
        // Large reads go to the pool whole: there the copy overlaps with sending the
        // previous one instead of holding the connection's thread.
        let cached = if direct || buf.len() > INLINE_WRITE_MAX {
            0
        } else {
            sys::pread_cached(&self.file, &mut buf, offset)
        };
        if cached == buf.len() {
            self.counters.read();
            return IoFuture::done(Ok(buf));
        }
        IoFuture::pending(async move {
            let file = self.file.clone();
            let buf = pool::run(move || {
                if direct {
                    read_direct(&file, &mut buf, offset)?;
                } else {
                    read_full(&file, &mut buf[cached..], offset + cached as u64)?;
                }
                Ok(buf)
            })
            .await?;
            self.counters.read();
            Ok(buf)
        })
    }
    fn write_at(&self, buf: Vec<u8>, offset: u64) -> IoFuture<'_, Vec<u8>> {
        match self.write_inline(buf, offset) {
            Ok(r) => IoFuture::done(r),
            Err(buf) => IoFuture::pending(self.write_inner(buf, offset, false)),
        }
    }
    async fn write_at_durable(&self, buf: Vec<u8>, offset: u64) -> io::Result<Vec<u8>> {
        self.write_inner(buf, offset, true).await
    }
    /// fdatasync. A range gets the same: Linux has no ranged fdatasync system call, and
    /// sync_file_range before it would only write out early what fdatasync writes anyway
    /// (the device cache flush and allocation metadata need fdatasync regardless).
    async fn flush(&self) -> io::Result<()> {
        let file = self.file.clone();
        pool::run(move || file.sync_data()).await?;
        self.counters.flush();
        Ok(())
    }
    async fn unmap(&self, offset: u64, len: u64) -> io::Result<()> {
        if self.caps.read_only {
            return Err(io::Error::from(io::ErrorKind::PermissionDenied));
        }
        let file = self.file.clone();
        let bdev = self.caps.block_device;
        pool::run(move || match sys::discard(&file, bdev, offset, len) {
            // A file system that cannot punch holes: zeroes keep LBPRZ true.
            Err(e) if !bdev && sys::unsupported(&e) => sys::zero_range(&file, bdev, offset, len),
            r => r,
        })
        .await
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
        let file = self.file.clone();
        let bdev = self.caps.block_device;
        let _guard = if self.caps.direct {
            Some(
                self.locks
                    .lock(align_down(offset), align_up(offset + len))
                    .await,
            )
        } else {
            None
        };
        pool::run(move || sys::zero_range(&file, bdev, offset, len)).await
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn tmpfile(len: u64) -> std::path::PathBuf {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir();
        let p = dir.join(format!(
            "rtgt-store-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let f = File::create(&p).unwrap();
        f.set_len(len).unwrap();
        p
    }

    fn open(p: &std::path::Path, direct: bool) -> Option<RdwrStore> {
        match RdwrStore::open(&OpenOptions {
            path: p.to_path_buf(),
            direct,
            ..Default::default()
        }) {
            Ok(s) => Some(s),
            // A file system without O_DIRECT (old tmpfs): nothing to test there.
            Err(e) if direct => {
                eprintln!("SKIPPED: O_DIRECT unavailable here: {e}");
                None
            }
            Err(e) => panic!("{e}"),
        }
    }

    #[tokio::test]
    async fn write_then_read_back() {
        let p = tmpfile(1 << 20);
        let s = open(&p, false).unwrap();
        assert_eq!(s.size(), 1 << 20);
        let data: Vec<u8> = (0..8192u32).map(|i| (i * 7) as u8).collect();
        s.write_at(data.clone(), 4096).await.unwrap();
        let got = s.read_at(vec![0; 8192], 4096).await.unwrap();
        assert_eq!(got, data);
        s.write_at_durable(vec![9; 512], 0).await.unwrap();
        s.flush().await.unwrap();
        let st = s.stats();
        assert_eq!(
            (st.writes, st.durable_writes, st.flushes, st.reads),
            (2, 1, 1, 1)
        );
        std::fs::remove_file(p).unwrap();
    }

    /// Reads get recycled buffers full of another command's bytes (bufpool::take):
    /// every byte must be overwritten, past the end of the file with zeroes, on both the
    /// inline (page cache) and the pool path (large reads), and by the null and mem stores.
    #[tokio::test]
    async fn reads_overwrite_every_stale_byte() {
        let p = tmpfile(1 << 20);
        let s = open(&p, false).unwrap();
        s.write_at(vec![7; 4096], 0).await.unwrap();
        // Within the file, and across its end (768 KiB + 512 KiB > 1 MiB).
        for (len, off) in [(8192usize, 0u64), (512 << 10, 768 << 10)] {
            let got = s.read_at(vec![0xAA; len], off).await.unwrap();
            let want = |i: usize| if off as usize + i < 4096 { 7 } else { 0 };
            assert!(
                got.iter().enumerate().all(|(i, &b)| b == want(i)),
                "len {len}"
            );
        }
        // Past the end of the file: zeroes.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(4096)
            .unwrap();
        let got = s.read_at(vec![0xAA; 256 << 10], 0).await.unwrap();
        assert!(got[..4096].iter().all(|&b| b == 7));
        assert!(got[4096..].iter().all(|&b| b == 0));
        let null = crate::null::NullStore::new(1 << 20);
        assert!(null
            .read_at(vec![0xAA; 4096], 0)
            .await
            .unwrap()
            .iter()
            .all(|&b| b == 0));
        let mem = crate::mem::MemStore::new(1 << 20);
        assert!(mem
            .read_at(vec![0xAA; 4096], 0)
            .await
            .unwrap()
            .iter()
            .all(|&b| b == 0));
        std::fs::remove_file(p).unwrap();
    }

    #[tokio::test]
    async fn direct_unaligned_read_modify_write() {
        let p = tmpfile(1 << 20);
        let Some(s) = open(&p, true) else { return };
        s.write_at(vec![0xaa; 4096], 0).await.unwrap();
        s.write_at(vec![0x55; 512], 512).await.unwrap();
        let got = s.read_at(vec![0; 1536], 0).await.unwrap();
        assert_eq!(&got[..512], &[0xaa; 512][..]);
        assert_eq!(&got[512..1024], &[0x55; 512][..]);
        assert_eq!(&got[1024..], &[0xaa; 512][..]);
        std::fs::remove_file(p).unwrap();
    }

    /// Eight 512-byte writes into the same 4 KiB block at once: each does a
    /// read-modify-write of the whole block, and without the range lock the last one
    /// would put back stale bytes over the others.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn direct_concurrent_unaligned_writes_to_one_block_all_land() {
        let p = tmpfile(1 << 20);
        let Some(s) = open(&p, true) else { return };
        let s = Arc::new(s);
        for round in 0..20u8 {
            let mut tasks = Vec::new();
            for i in 0..8u8 {
                let s = s.clone();
                tasks.push(tokio::spawn(async move {
                    s.write_at(
                        vec![round.wrapping_mul(8).wrapping_add(i); 512],
                        8192 + 512 * u64::from(i),
                    )
                    .await
                    .unwrap();
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
            let got = s.read_at(vec![0; 4096], 8192).await.unwrap();
            for i in 0..8u8 {
                let want = round.wrapping_mul(8).wrapping_add(i);
                assert!(
                    got[512 * i as usize..512 * (i as usize + 1)]
                        .iter()
                        .all(|&b| b == want),
                    "round {round}: sector {i} lost its write"
                );
            }
        }
        std::fs::remove_file(p).unwrap();
    }

    #[tokio::test]
    async fn unmap_and_write_zeroes_read_back_zeroes() {
        let p = tmpfile(1 << 20);
        let s = open(&p, false).unwrap();
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

    #[test]
    fn missing_file_names_the_path() {
        let err = match RdwrStore::open(&OpenOptions {
            path: "/nonexistent/rtgt.img".into(),
            ..Default::default()
        }) {
            Err(e) => e,
            Ok(_) => panic!("opened a missing file"),
        };
        assert!(err.to_string().contains("/nonexistent/rtgt.img"), "{err}");
    }

    #[tokio::test]
    async fn read_only_store_refuses_writes() {
        let p = tmpfile(1 << 20);
        let s = RdwrStore::open(&OpenOptions {
            path: p.clone(),
            read_only: true,
            ..Default::default()
        })
        .unwrap();
        assert!(s.capabilities().read_only);
        assert!(s.write_at(vec![0; 512], 0).await.is_err());
        std::fs::remove_file(p).unwrap();
    }

    #[tokio::test]
    async fn unmap_punches_holes_and_allocation_sees_them() {
        let p = tmpfile(1 << 20);
        let s = open(&p, false).unwrap();
        s.write_at(vec![0xaa; 1 << 20], 0).await.unwrap();
        s.unmap(256 << 10, 256 << 10).await.unwrap();
        let got = s.read_at(vec![1; 4096], 256 << 10).await.unwrap();
        assert!(got.iter().all(|b| *b == 0));
        let ext = s.allocation(0, 1 << 20).await.unwrap();
        assert_eq!(ext.iter().map(|e| e.len).sum::<u64>(), 1 << 20);
        // tmpfs and ext4 both punch; a file system that cannot leaves it all allocated.
        if ext.len() > 1 {
            assert!(ext[0].allocated);
            assert_eq!(ext[1].offset, 256 << 10);
            assert!(!ext[1].allocated);
        }
        s.resize(2 << 20).unwrap();
        assert_eq!(s.size(), 2 << 20);
        assert_eq!(s.refresh_size().unwrap(), 2 << 20);
        std::fs::remove_file(p).unwrap();
    }
}
