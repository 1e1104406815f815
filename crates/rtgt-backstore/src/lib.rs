//! Backing stores: where a logical unit's bytes live.
//!
//! The SCSI core talks to storage only through [`BackingStore`]: byte offsets, owned
//! buffers (so an io_uring or thread-pool implementation can hold them while the I/O is in
//! flight), and a capability record the SCSI layer consults (write cache, unmap, O_DIRECT).

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;

pub mod null;
pub mod rdwr;

/// What a store can do, so the SCSI layer can describe the device truthfully.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Opened with O_DIRECT.
    pub direct: bool,
    /// Opened with O_SYNC: every write is on stable storage when it completes.
    pub sync: bool,
    /// Opened read-only.
    pub read_only: bool,
    /// `unmap` releases space.
    pub unmap: bool,
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

/// A logical unit's storage, addressed in bytes.
#[async_trait]
pub trait BackingStore: Send + Sync + 'static {
    /// The bstype name as rtgtadm shows it (`rdwr`, `null`).
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
    /// Makes the byte range read as zeroes. The default writes zero buffers; stores that
    /// can do better (punching holes, BLKZEROOUT) override it.
    async fn write_zeroes(&self, offset: u64, len: u64) -> io::Result<()> {
        const CHUNK: u64 = 1 << 20;
        let mut done = 0;
        while done < len {
            let n = CHUNK.min(len - done);
            self.write_at(vec![0u8; n as usize], offset + done).await?;
            done += n;
        }
        Ok(())
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
    /// Size for stores that have no file (`null`).
    pub size: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("unknown backing store type '{0}' (known: rdwr, null)")]
    UnknownType(String),
    #[error("backing file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("backing file {0} is not a regular file or block device")]
    NotAFile(PathBuf),
}

/// Opens a store of type `bstype` (`rdwr` is the default, as tgtd's).
pub fn open(bstype: &str, opts: &OpenOptions) -> Result<Arc<dyn BackingStore>, OpenError> {
    match bstype {
        "" | "rdwr" => Ok(Arc::new(rdwr::RdwrStore::open(opts)?)),
        "null" => Ok(Arc::new(null::NullStore::new(
            opts.size.unwrap_or(null::DEFAULT_SIZE),
        ))),
        other => Err(OpenError::UnknownType(other.to_string())),
    }
}
