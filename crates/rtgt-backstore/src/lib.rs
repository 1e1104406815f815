//! Backing stores: where a logical unit's bytes live.
//!
//! The SCSI core talks to storage only through [`BackingStore`]: byte offsets, owned
//! buffers (so an io_uring or thread-pool implementation can hold them while the I/O is in
//! flight), and a capability record the SCSI layer consults (write cache, unmap, O_DIRECT,
//! the device's block sizes).
//!
//! Stores: `rdwr` (pread/pwrite on a worker pool), `io_uring` (alias `aio`), `mem` (RAM)
//! and `null`. `rdwr` and `io_uring` take regular files and block devices. `handler`:
//! a separate process serves the blocks (docs/handler-protocol.md). Behind cargo
//! features: `rbd` (Ceph RBD images through librbd) and `glfs` (files on GlusterFS
//! volumes through libgfapi).

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;

pub mod aligned;
pub mod bufpool;
#[cfg(feature = "glfs")]
pub mod glfs;
pub mod handler;
pub mod mem;
pub mod null;
#[cfg(any(feature = "rbd", feature = "glfs"))]
mod opener;
pub mod pool;
#[cfg(feature = "rbd")]
pub mod rbd;
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
    /// Unmapped ranges read back as zeroes (SBC-4 LBPRZ); only meaningful with `unmap`.
    pub unmap_zeroes: bool,
}

/// One run of a byte range as the store holds it: `len` bytes at `offset`, either
/// allocated (holding data) or a hole (reads as zeroes, uses no space).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    pub offset: u64,
    pub len: u64,
    pub allocated: bool,
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

/// A store error that knows where: the first logical block that could not be read or
/// written (a device handler says so in its completion), for the INFORMATION field of
/// the sense data (SPC-4 4.5.2.1, SBC-4 4.18). Carried inside an `io::Error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorAt {
    /// The errno the store failed with.
    pub errno: i32,
    /// The first bad logical block.
    pub lba: u64,
}

impl std::fmt::Display for ErrorAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} at LBA {}",
            io::Error::from_raw_os_error(self.errno),
            self.lba
        )
    }
}

impl std::error::Error for ErrorAt {}

impl ErrorAt {
    pub fn into_io(self) -> io::Error {
        io::Error::new(io::Error::from_raw_os_error(self.errno).kind(), self)
    }
    /// The ErrorAt inside `e`, if any.
    pub fn of(e: &io::Error) -> Option<ErrorAt> {
        e.get_ref()
            .and_then(|x| x.downcast_ref::<ErrorAt>())
            .copied()
    }
}

/// What [`BackingStore::read_at`] and [`BackingStore::write_at`] return: the result
/// itself when the store finished the I/O within the call (null, mem, a page-cache hit,
/// a small buffered write), or the I/O still under way. An `async fn` in the trait would
/// box a future for every command, one heap allocation per READ and WRITE; a store that
/// completes in place now costs none.
pub enum IoFuture<'a, T> {
    Done(Option<io::Result<T>>),
    Pending(Pin<Box<dyn Future<Output = io::Result<T>> + Send + 'a>>),
}

impl<'a, T> IoFuture<'a, T> {
    /// Finished already.
    pub fn done(r: io::Result<T>) -> Self {
        IoFuture::Done(Some(r))
    }
    /// Still to be done by `f`.
    pub fn pending(f: impl Future<Output = io::Result<T>> + Send + 'a) -> Self {
        IoFuture::Pending(Box::pin(f))
    }
}

impl<T: Unpin> Future for IoFuture<'_, T> {
    type Output = io::Result<T>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            IoFuture::Done(r) => Poll::Ready(r.take().expect("IoFuture polled after completion")),
            IoFuture::Pending(f) => f.as_mut().poll(cx),
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
    /// Whether the medium can be used now. A networked store (rbd) may exist before its
    /// medium can be reached: until then its size is 0, its operations fail and the LU
    /// reports NOT READY; it becomes ready by itself when the medium is reached.
    fn ready(&self) -> bool {
        true
    }
    fn capabilities(&self) -> Capabilities;
    /// Reads `buf.len()` bytes at `offset`; bytes past the end of the file read as zero.
    /// Every byte of `buf` must be overwritten: callers pass recycled buffers holding
    /// another command's data ([`crate::bufpool::take`]).
    fn read_at(&self, buf: Vec<u8>, offset: u64) -> IoFuture<'_, Vec<u8>>;
    /// Writes all of `buf` at `offset`; returns the buffer for reuse.
    fn write_at(&self, buf: Vec<u8>, offset: u64) -> IoFuture<'_, Vec<u8>>;
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
    /// The `--bsopts` the store was opened with, when it takes any besides a size
    /// (rbd, glfs), for a saved configuration.
    fn bsopts(&self) -> Option<String> {
        None
    }
    /// What the store has done so far.
    fn stats(&self) -> IoStats {
        IoStats::default()
    }
    /// Extra lines for `rtgtadm --op show` (a handler store: attached or not, its pid,
    /// queues, counters).
    fn status_lines(&self) -> Vec<String> {
        Vec::new()
    }
    /// How `[offset, offset + len)` is allocated, as consecutive extents covering the
    /// whole range in order. The default says everything is allocated.
    async fn allocation(&self, offset: u64, len: u64) -> io::Result<Vec<Extent>> {
        Ok(vec![Extent {
            offset,
            len,
            allocated: true,
        }])
    }
    /// Changes the size (online resize). The default says the store cannot.
    fn resize(&self, _size: u64) -> io::Result<()> {
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }
    /// Re-reads the size from the medium (a backing file grown behind our back) and
    /// returns it. The default: the size never changes by itself.
    fn refresh_size(&self) -> io::Result<u64> {
        Ok(self.size())
    }
    /// Writes `block` repeatedly over `len` bytes at `offset` (WRITE SAME) in one
    /// request. The default says the store has no such request; the caller writes the
    /// pattern itself.
    async fn write_same(&self, _block: Vec<u8>, _offset: u64, _len: u64) -> io::Result<()> {
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }
    /// Compares `compare` with what the medium holds at `offset` and, if equal, writes
    /// `data` there, as one operation the store makes atomic for all its clients
    /// (COMPARE AND WRITE across gateways). Returns None when written, or the offset of
    /// the first differing byte. The default says the store cannot; the caller then
    /// compares and writes under its own range lock.
    async fn compare_and_write(
        &self,
        _compare: Vec<u8>,
        _data: Vec<u8>,
        _offset: u64,
    ) -> io::Result<Option<u64>> {
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }
    /// A name for the medium that is the same in every process exporting it (an RBD
    /// image's pool and id), from which LU designators and serial numbers are derived
    /// so that several gateways present one logical unit. None: the medium is this
    /// process's alone.
    fn identity(&self) -> Option<String> {
        None
    }
    /// State kept with the medium and shared by every process exporting it
    /// (persistent reservations across gateways). None: nothing is shared.
    fn shared_state(&self) -> Option<Arc<dyn SharedState>> {
        None
    }
    /// Values of the store's own for metrics (a device handler: attached, pid, queues,
    /// in flight, its counters).
    fn metrics(&self) -> Vec<StoreMetric> {
        Vec::new()
    }
    /// Which CDBs the store takes raw, as a device server of its own (a device
    /// handler of the SCSI kind: all; a block one that asked for them: those rtgtd
    /// does not know).
    fn raw_cdbs(&self) -> RawCdbs {
        RawCdbs::None
    }
    /// Runs a raw SCSI command at the store (see [`BackingStore::raw_cdbs`]). Err:
    /// it never reached a device server (InvalidInput: too long for the store;
    /// NotConnected / TimedOut: nobody to serve it).
    async fn execute_cdb(&self, _req: CdbRequest<'_>) -> io::Result<CdbReply> {
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }
    /// A logical unit reset the store's device server must hear of (a device handler);
    /// `tags`: reserved for aborts of named commands (empty).
    async fn task_management(&self, _lu_reset: bool, _tags: &[u64]) -> io::Result<()> {
        Ok(())
    }
}

/// One value a store reports for metrics ([`BackingStore::metrics`]): the exporter
/// names it `rtgt_lun_<name>` with the LU's labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreMetric {
    pub name: &'static str,
    pub help: &'static str,
    /// A counter (only grows; `_total` is appended) rather than a gauge.
    pub counter: bool,
    pub value: u64,
}

/// Which CDBs a store takes raw ([`BackingStore::raw_cdbs`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawCdbs {
    /// None: rtgtd is the device server.
    None,
    /// Those whose opcode rtgtd does not know (scst_user's PARSE_EXCEPTION).
    Unknown,
    /// Every one rtgtd does not keep for itself (REPORT LUNS, unit attentions,
    /// reservations unless the store keeps them: `own_reservations`).
    All { own_reservations: bool },
}

/// A raw SCSI command for [`BackingStore::execute_cdb`].
pub struct CdbRequest<'a> {
    pub cdb: &'a [u8],
    /// The I_T nexus it came on (unique for the life of the daemon).
    pub nexus: u64,
    /// Data-Out (empty when the command has none).
    pub data_out: &'a [u8],
    /// Room for Data-In (the initiator's expected length; 0 with Data-Out).
    pub data_in_len: u32,
    /// Completes when task management aborts the command: the store tells its device
    /// server (ABORT TASK) and the command ends without a result anyone hears.
    pub abort: Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>>>,
}

/// What a store's device server answered.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CdbReply {
    pub status: u8,
    pub data_in: Vec<u8>,
    pub sense: Vec<u8>,
}

/// A small blob kept with a shared medium, changed by one process at a time and seen
/// by all of them (persistent reservations of a LU exported by several gateways).
#[async_trait]
pub trait SharedState: Send + Sync {
    /// The latest state any process published, and a number that changes whenever it
    /// does. No I/O: cheap enough to ask before every command.
    fn latest(&self) -> (u64, Option<Vec<u8>>);
    /// Takes the update lock (for every process) and reads the state fresh.
    async fn lock(&self) -> io::Result<Option<Vec<u8>>>;
    /// Stores `state`, tells every process (with `event`, what the others must act on,
    /// when not empty), and releases the lock; returns once every live process has the
    /// new state.
    async fn publish_unlock(&self, state: Vec<u8>, event: Vec<u8>) -> io::Result<()>;
    /// The events other processes published since `seen` (0 at first, then what the
    /// previous call returned), oldest first, and the number to pass next time. No I/O:
    /// asked before every command.
    fn events_since(&self, seen: u64) -> (u64, Vec<Vec<u8>>);
    /// Releases the lock without a change.
    async fn unlock(&self);
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
    /// `--bsopts` key=value pairs for stores that take them (`rbd`, `glfs`, `handler`).
    pub bsopts: Vec<(String, String)>,
    /// The LU's logical block size (0: not known); a handler must use the same.
    pub block_size: u32,
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
    #[error("bstype handler: {0}")]
    Handler(String),
    #[error("rbd: {0}")]
    Rbd(#[source] io::Error),
    #[error(
        "bstype rbd: this rtgtd was built without RBD support (cargo feature 'rbd', needs librbd)"
    )]
    NoRbd,
    #[error("glfs: {0}")]
    Glfs(#[source] io::Error),
    #[error(
        "bstype glfs: this rtgtd was built without GlusterFS support (cargo feature 'glfs', needs libgfapi)"
    )]
    NoGlfs,
    #[error(
        "bstype {0} needs a size: use --bsopts size=N or --params size=N (K, M, G, T suffixes)"
    )]
    NeedSize(&'static str),
}

/// The bstype names [`open`] accepts, for error messages.
pub const KNOWN_TYPES: &str = "rdwr, io_uring (alias aio), mem, null, rbd, glfs, handler";

/// The canonical name of a bstype (`aio` is io_uring's alias, as tgt scripts say aio),
/// or None when it is unknown.
pub fn canonical_type(bstype: &str) -> Option<&'static str> {
    match bstype {
        "" | "rdwr" => Some("rdwr"),
        "io_uring" | "aio" => Some("io_uring"),
        "mem" => Some("mem"),
        "null" => Some("null"),
        "rbd" => Some("rbd"),
        "glfs" => Some("glfs"),
        "handler" => Some("handler"),
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
        Some("handler") => Ok(Arc::new(handler::HandlerStore::open(opts)?)),
        #[cfg(feature = "rbd")]
        Some("rbd") => Ok(Arc::new(rbd::RbdStore::open(opts)?)),
        #[cfg(not(feature = "rbd"))]
        Some("rbd") => Err(OpenError::NoRbd),
        #[cfg(feature = "glfs")]
        Some("glfs") => Ok(Arc::new(glfs::GlfsStore::open(opts)?)),
        #[cfg(not(feature = "glfs"))]
        Some("glfs") => Err(OpenError::NoGlfs),
        _ => Err(OpenError::UnknownType(bstype.to_string())),
    }
}

/// Splits `--bsopts` for stores that take options: `key=value` pairs separated by `;`
/// (tgt's bs_rbd separator, as a path may hold commas) or, without any `;`, by `,`.
pub fn parse_bsopts(s: &str) -> Result<Vec<(String, String)>, String> {
    let sep = if s.contains(';') { ';' } else { ',' };
    s.split(sep)
        .map(str::trim)
        .filter(|i| !i.is_empty())
        .map(|i| match i.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().into(), v.trim().into())),
            _ => Err(format!(
                "invalid --bsopts item '{i}': use key=value[;key=value...]"
            )),
        })
        .collect()
}

/// Until [`start_connections`], stores that connect to a cluster (rbd, glfs) are created not
/// ready and connect later: rtgtd calls this before it loads its configuration and
/// forks, as threads (librados's too) do not survive a fork.
pub fn defer_connections() {
    handler::defer();
    #[cfg(any(feature = "rbd", feature = "glfs"))]
    opener::defer();
}

/// Lets the stores created since [`defer_connections`] connect, waiting up to `wait`
/// for their first attempts.
pub fn start_connections(_wait: std::time::Duration) {
    handler::release();
    #[cfg(any(feature = "rbd", feature = "glfs"))]
    opener::release(_wait);
}

/// Whether this build has the `rbd` store.
pub const RBD: bool = cfg!(feature = "rbd");

/// Whether this build has the `glfs` store.
pub const GLFS: bool = cfg!(feature = "glfs");

/// Whether `bstype` (canonical) names a store whose `-b` is not a local path and which
/// takes `--bsopts` of its own (rbd, glfs).
pub fn is_networked(bstype: &str) -> bool {
    matches!(canonical_type(bstype), Some("rbd" | "glfs"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A build without the `glfs` feature names the feature when asked for the store;
    /// one with it checks `-b` before connecting to anything.
    #[test]
    fn glfs_is_known_with_or_without_its_feature() {
        assert_eq!(canonical_type("glfs"), Some("glfs"));
        assert!(is_networked("glfs") && is_networked("rbd") && !is_networked("rdwr"));
        let opts = OpenOptions {
            path: "not-a-glfs-spec".into(),
            ..OpenOptions::default()
        };
        let e = open("glfs", &opts).err().expect("refused").to_string();
        if GLFS {
            assert!(e.contains("volume@host:path"), "{e}");
        } else {
            assert!(
                e.contains("without GlusterFS support") && e.contains("'glfs'"),
                "{e}"
            );
        }
    }
}
