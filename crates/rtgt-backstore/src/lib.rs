//! Backing stores: where a logical unit's bytes live.
//!
//! The SCSI core talks to storage only through [`BackingStore`]: byte offsets, owned
//! buffers (so an io_uring or thread-pool implementation can hold them while the I/O is in
//! flight), and a capability record the SCSI layer consults (write cache, unmap, O_DIRECT,
//! the device's block sizes).
//!
//! Stores: `rdwr` (pread/pwrite on a worker pool), `io_uring` (alias `aio`), `mem` (RAM)
//! and `null`. `rdwr` and `io_uring` take regular files and block devices.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;

pub mod aligned;
pub mod mem;
pub mod null;
pub mod pool;
pub mod rdwr;
pub mod sys;
pub mod uring;

/// What a store can do, so the SCSI layer can describe the device truthfully.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Opened with O_DIRECT.
    pub direct: bool,
    /// Opened with O_DSYNC (`--bsoflags sync`): every write is on stable storage when it
    /// completes, so there is no volatile cache to report or toggle.
    pub sync: bool,
    /// Opened read-only.
    pub read_only: bool,
    /// `unmap` releases space.
    pub unmap: bool,
    /// The backing path is a block device.
    pub block_device: bool,
    /// The device's logical block size (BLKSSZGET); 0 when the store has no opinion.
    pub logical_block_size: u32,
    /// The device's physical block size (BLKPBSZGET); 0 when the store has no opinion.
    pub physical_block_size: u32,
}

/// I/O the store has done, counted when the kernel (or memory) completed it. Tests use
/// it to prove a flush really happened; `rtgtadm --op show` prints it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoStats {
    pub reads: u64,
    pub writes: u64,
    /// Writes made durable on their own (RWF_DSYNC): FUA, or the write cache off.
    pub durable_writes: u64,
    /// Cache flushes issued (fdatasync or io_uring's datasync).
    pub flushes: u64,
}

/// Shared counters behind [`IoStats`].
#[derive(Debug, Default)]
pub struct Counters {
    reads: AtomicU64,
    writes: AtomicU64,
    durable_writes: AtomicU64,
    flushes: AtomicU64,
}

impl Counters {
    pub fn read(&self) {
        self.reads.fetch_add(1, Ordering::Relaxed);
    }
    pub fn write(&self, durable: bool) {
        self.writes.fetch_add(1, Ordering::Relaxed);
        if durable {
            self.durable_writes.fetch_add(1, Ordering::Relaxed);
        }
    }
    pub fn flush(&self) {
        self.flushes.fetch_add(1, Ordering::Relaxed);
    }
    pub fn snapshot(&self) -> IoStats {
        IoStats {
            reads: self.reads.load(Ordering::Relaxed),
            writes: self.writes.load(Ordering::Relaxed),
            durable_writes: self.durable_writes.load(Ordering::Relaxed),
            flushes: self.flushes.load(Ordering::Relaxed),
        }
    }
}

/// A logical unit's storage, addressed in bytes.
#[async_trait]
pub trait BackingStore: Send + Sync + 'static {
    /// The bstype name as rtgtadm shows it (`rdwr`, `io_uring`, `mem`, `null`).
    fn kind(&self) -> &'static str;
    /// Size in bytes.
    fn size(&self) -> u64;
    fn capabilities(&self) -> Capabilities;
    /// Reads `buf.len()` bytes at `offset`; bytes past the end of the file read as zero.
    async fn read_at(&self, buf: Vec<u8>, offset: u64) -> io::Result<Vec<u8>>;
    /// Writes all of `buf` at `offset`; returns the buffer for reuse.
    async fn write_at(&self, buf: Vec<u8>, offset: u64) -> io::Result<Vec<u8>>;
    /// Makes every completed write durable (fdatasync).
    async fn flush(&self) -> io::Result<()>;
    /// Releases the byte range; the default says the store cannot.
    async fn unmap(&self, _offset: u64, _len: u64) -> io::Result<()> {
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }
    /// Writes `buf` and returns only once it is on stable storage (FUA, or the write
    /// cache off). The default writes, then flushes everything.
    async fn write_at_durable(&self, buf: Vec<u8>, offset: u64) -> io::Result<Vec<u8>> {
        let buf = self.write_at(buf, offset).await?;
        self.flush().await?;
        Ok(buf)
    }
    /// Makes completed writes in `offset..offset + len` durable (SYNCHRONIZE CACHE with a
    /// range). The default flushes everything, which is always enough.
    async fn flush_range(&self, _offset: u64, _len: u64) -> io::Result<()> {
        self.flush().await
    }
    /// Makes the range read as zeroes. The default writes zero buffers.
    async fn write_zeroes(&self, offset: u64, len: u64) -> io::Result<()> {
        const CHUNK: u64 = 1 << 20;
        let mut done = 0;
        while done < len {
            let n = CHUNK.min(len - done);
            self.write_at(vec![0; n as usize], offset + done).await?;
            done += n;
        }
        Ok(())
    }
    /// What the store has done so far.
    fn stats(&self) -> IoStats {
        IoStats::default()
    }
}

/// How to open a store, from rtgtadm's `--bstype`, `-b`, `--bsoflags` and params.
#[derive(Clone, Debug, Default)]
pub struct OpenOptions {
    pub path: PathBuf,
    /// `--bsoflags direct`
    pub direct: bool,
    /// `--bsoflags sync`
    pub sync: bool,
    pub read_only: bool,
    /// Size for stores that have no file (`null`, `mem`).
    pub size: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("unknown backing store type '{0}' (known: {KNOWN_TYPES})")]
    UnknownType(String),
    #[error("backing file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("backing file {0} is not a regular file or block device")]
    NotAFile(PathBuf),
    #[error(
        "bstype {0} needs a size: use --bsopts size=N or --params size=N (K, M, G, T suffixes)"
    )]
    NeedSize(&'static str),
}

/// The bstype names [`open`] accepts, for error messages.
pub const KNOWN_TYPES: &str = "rdwr, io_uring (alias aio), mem, null";

/// The canonical name of a bstype (`aio` is io_uring's alias, as tgt scripts say aio),
/// or None when it is unknown.
pub fn canonical_type(bstype: &str) -> Option<&'static str> {
    match bstype {
        "" | "rdwr" => Some("rdwr"),
        "io_uring" | "aio" => Some("io_uring"),
        "mem" => Some("mem"),
        "null" => Some("null"),
        _ => None,
    }
}

/// Opens a store of type `bstype` (`rdwr` is the default, as tgtd's). `io_uring` falls
/// back to `rdwr` where the kernel refuses io_uring (logged once per daemon).
pub fn open(bstype: &str, opts: &OpenOptions) -> Result<Arc<dyn BackingStore>, OpenError> {
    match canonical_type(bstype) {
        Some("rdwr") => Ok(Arc::new(rdwr::RdwrStore::open(opts)?)),
        Some("io_uring") => uring::open(opts),
        Some("mem") => Ok(Arc::new(mem::MemStore::new(
            opts.size.ok_or(OpenError::NeedSize("mem"))?,
        ))),
        Some("null") => Ok(Arc::new(null::NullStore::new(
            opts.size.unwrap_or(null::DEFAULT_SIZE),
        ))),
        _ => Err(OpenError::UnknownType(bstype.to_string())),
    }
}
