//! `rdwr`: pread / pwrite on a file or block device, run on tokio's blocking pool so the
//! network threads never wait on the disk.

use std::alloc::{self, Layout};
use std::fs::{File, OpenOptions as FsOpen};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;

use crate::{BackingStore, Capabilities, Extent, OpenError, OpenOptions};

/// O_DIRECT needs buffers, offsets and lengths aligned to the device's logical block;
/// 4096 covers every device we meet.
const DIRECT_ALIGN: usize = 4096;

pub struct RdwrStore {
    file: Arc<File>,
    /// Changes with online resize or when the file grows behind our back.
    size: AtomicU64,
    /// A regular file (not a block device): SEEK_DATA / SEEK_HOLE and set_len apply.
    regular: bool,
    caps: Capabilities,
}

impl RdwrStore {
    pub fn open(opts: &OpenOptions) -> Result<Self, OpenError> {
        let io_err = |source| OpenError::Io {
            path: opts.path.clone(),
            source,
        };
        let mut flags = 0;
        if opts.direct {
            flags |= libc::O_DIRECT;
        }
        if opts.sync {
            flags |= libc::O_SYNC;
        }
        let file = FsOpen::new()
            .read(true)
            .write(!opts.read_only)
            .custom_flags(flags)
            .open(&opts.path)
            .map_err(io_err)?;
        let meta = file.metadata().map_err(io_err)?;
        let size = if meta.file_type().is_block_device() {
            block_device_size(&file).map_err(io_err)?
        } else if meta.is_file() {
            meta.len()
        } else {
            return Err(OpenError::NotAFile(opts.path.clone()));
        };
        Ok(Self {
            file: Arc::new(file),
            size: AtomicU64::new(size),
            regular: meta.is_file(),
            caps: Capabilities {
                direct: opts.direct,
                sync: opts.sync,
                read_only: opts.read_only,
                // fallocate(PUNCH_HOLE) on a file or a block device: a punched range
                // reads as zeroes afterwards on both (block devices zero it out), and
                // where punching is refused we write zeroes, so LBPRZ holds either way.
                unmap: !opts.read_only,
                unmap_zeroes: !opts.read_only,
            },
        })
    }
}

fn block_device_size(file: &File) -> io::Result<u64> {
    // BLKGETSIZE64 = _IOR(0x12, 114, size_t)
    const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;
    let mut size: u64 = 0;
    // SAFETY: the ioctl writes one u64 into `size`, which outlives the call.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), BLKGETSIZE64, &mut size as *mut u64) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(size)
}

/// Deallocates `[offset, offset+len)` keeping the size (fallocate PUNCH_HOLE|KEEP_SIZE),
/// so the space really goes back to the file system.
fn punch_hole(file: &File, offset: u64, len: u64) -> io::Result<()> {
    // SAFETY: plain syscall on an fd we own.
    let rc = unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            offset as libc::off_t,
            len as libc::off_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Zeroes by writing, for file systems that cannot punch holes.
fn write_zeroes_slow(file: &File, direct: bool, offset: u64, len: u64) -> io::Result<()> {
    const CHUNK: u64 = 1 << 20;
    let zeroes = vec![0u8; CHUNK.min(len) as usize];
    let mut done = 0;
    while done < len {
        let n = CHUNK.min(len - done) as usize;
        if direct {
            write_direct(file, &zeroes[..n], offset + done)?;
        } else {
            file.write_all_at(&zeroes[..n], offset + done)?;
        }
        done += n as u64;
    }
    Ok(())
}

/// lseek(SEEK_DATA / SEEK_HOLE); None when there is no such offset before EOF (ENXIO).
fn seek(file: &File, offset: u64, whence: libc::c_int) -> io::Result<Option<u64>> {
    // SAFETY: plain syscall; the file offset it moves is unused (all I/O is positional).
    let r = unsafe { libc::lseek(file.as_raw_fd(), offset as libc::off_t, whence) };
    if r < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENXIO) => Ok(None),
            _ => Err(e),
        };
    }
    Ok(Some(r as u64))
}

/// The data / hole runs of `[offset, end)` from SEEK_DATA and SEEK_HOLE.
fn extents(file: &File, offset: u64, end: u64) -> io::Result<Vec<Extent>> {
    let mut out = Vec::new();
    let mut push = |start: u64, stop: u64, allocated: bool| {
        if stop > start {
            out.push(Extent {
                offset: start,
                len: stop - start,
                allocated,
            });
        }
    };
    let mut pos = offset;
    while pos < end {
        let data = seek(file, pos, libc::SEEK_DATA)?.unwrap_or(end).min(end);
        push(pos, data, false);
        if data >= end {
            break;
        }
        let hole = seek(file, data, libc::SEEK_HOLE)?.unwrap_or(end).min(end);
        push(data, hole, true);
        pos = hole;
    }
    Ok(out)
}

/// A heap buffer aligned for O_DIRECT.
struct AlignedBuf {
    ptr: *mut u8,
    layout: Layout,
}

// SAFETY: AlignedBuf owns its allocation exclusively.
unsafe impl Send for AlignedBuf {}

impl AlignedBuf {
    fn zeroed(len: usize) -> Self {
        let layout =
            Layout::from_size_align(len.max(DIRECT_ALIGN), DIRECT_ALIGN).expect("aligned layout");
        // SAFETY: layout has non-zero size.
        let ptr = unsafe { alloc::alloc_zeroed(layout) };
        if ptr.is_null() {
            alloc::handle_alloc_error(layout);
        }
        Self { ptr, layout }
    }
    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: ptr is valid for layout.size() bytes and uniquely borrowed.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.layout.size()) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated with this layout in `zeroed`.
        unsafe { alloc::dealloc(self.ptr, self.layout) }
    }
}

fn align_down(v: u64) -> u64 {
    v & !(DIRECT_ALIGN as u64 - 1)
}
fn align_up(v: u64) -> u64 {
    align_down(v + DIRECT_ALIGN as u64 - 1)
}

/// Reads `buf.len()` bytes at `offset`, zero-filling past the end of the file.
fn read_full(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
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
    buf.copy_from_slice(&bounce.as_mut_slice()[skip..skip + buf.len()]);
    Ok(())
}

/// O_DIRECT write: read-modify-write of the aligned span when the I/O is unaligned.
fn write_direct(file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
    let start = align_down(offset);
    let end = align_up(offset + buf.len() as u64);
    let mut bounce = AlignedBuf::zeroed((end - start) as usize);
    if start != offset || end != offset + buf.len() as u64 {
        read_full(file, bounce.as_mut_slice(), start)?;
    }
    let skip = (offset - start) as usize;
    bounce.as_mut_slice()[skip..skip + buf.len()].copy_from_slice(buf);
    file.write_all_at(bounce.as_mut_slice(), start)
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
    async fn read_at(&self, mut buf: Vec<u8>, offset: u64) -> io::Result<Vec<u8>> {
        let file = self.file.clone();
        let direct = self.caps.direct;
        tokio::task::spawn_blocking(move || {
            if direct {
                read_direct(&file, &mut buf, offset)?;
            } else {
                read_full(&file, &mut buf, offset)?;
            }
            Ok(buf)
        })
        .await
        .map_err(io::Error::other)?
    }
    async fn write_at(&self, buf: Vec<u8>, offset: u64) -> io::Result<Vec<u8>> {
        if self.caps.read_only {
            return Err(io::Error::from(io::ErrorKind::PermissionDenied));
        }
        let file = self.file.clone();
        let direct = self.caps.direct;
        tokio::task::spawn_blocking(move || {
            if direct {
                write_direct(&file, &buf, offset)?;
            } else {
                file.write_all_at(&buf, offset)?;
            }
            Ok(buf)
        })
        .await
        .map_err(io::Error::other)?
    }
    async fn flush(&self) -> io::Result<()> {
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || file.sync_data())
            .await
            .map_err(io::Error::other)?
    }
    async fn unmap(&self, offset: u64, len: u64) -> io::Result<()> {
        self.write_zeroes(offset, len).await
    }
    async fn write_zeroes(&self, offset: u64, len: u64) -> io::Result<()> {
        if self.caps.read_only {
            return Err(io::Error::from(io::ErrorKind::PermissionDenied));
        }
        if len == 0 {
            return Ok(());
        }
        let file = self.file.clone();
        let direct = self.caps.direct;
        tokio::task::spawn_blocking(move || match punch_hole(&file, offset, len) {
            Ok(()) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) | Some(libc::EINVAL)
                ) =>
            {
                write_zeroes_slow(&file, direct, offset, len)
            }
            Err(e) => Err(e),
        })
        .await
        .map_err(io::Error::other)?
    }
    async fn allocation(&self, offset: u64, len: u64) -> io::Result<Vec<Extent>> {
        let all = vec![Extent {
            offset,
            len,
            allocated: true,
        }];
        if !self.regular || len == 0 {
            return Ok(all);
        }
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || match extents(&file, offset, offset + len) {
            Ok(v) => Ok(v),
            // A file system without SEEK_DATA: everything counts as allocated.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(all),
            Err(e) => Err(e),
        })
        .await
        .map_err(io::Error::other)?
    }
    fn resize(&self, size: u64) -> io::Result<()> {
        if !self.regular || self.caps.read_only {
            return Err(io::Error::from(io::ErrorKind::Unsupported));
        }
        self.file.set_len(size)?;
        self.size.store(size, Ordering::Relaxed);
        Ok(())
    }
    fn refresh_size(&self) -> io::Result<u64> {
        let size = if self.regular {
            self.file.metadata()?.len()
        } else {
            block_device_size(&self.file)?
        };
        self.size.store(size, Ordering::Relaxed);
        Ok(size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpfile(len: u64) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!(
            "rtgt-rdwr-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        let f = File::create(&p).unwrap();
        f.set_len(len).unwrap();
        p
    }
    fn rand_suffix() -> u64 {
        use std::time::{SystemTime, UNIX_EPOCH};
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    }

    #[tokio::test]
    async fn write_then_read_back() {
        let p = tmpfile(1 << 20);
        let s = RdwrStore::open(&OpenOptions {
            path: p.clone(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(s.size(), 1 << 20);
        let data: Vec<u8> = (0..8192u32).map(|i| (i * 7) as u8).collect();
        s.write_at(data.clone(), 4096).await.unwrap();
        let got = s.read_at(vec![0; 8192], 4096).await.unwrap();
        assert_eq!(got, data);
        std::fs::remove_file(p).unwrap();
    }

    #[tokio::test]
    async fn direct_unaligned_read_modify_write() {
        let p = tmpfile(1 << 20);
        let s = match RdwrStore::open(&OpenOptions {
            path: p.clone(),
            direct: true,
            ..Default::default()
        }) {
            Ok(s) => s,
            // tmpfs refuses O_DIRECT; nothing to test there.
            Err(_) => return,
        };
        s.write_at(vec![0xaa; 4096], 0).await.unwrap();
        s.write_at(vec![0x55; 512], 512).await.unwrap();
        let got = s.read_at(vec![0; 1536], 0).await.unwrap();
        assert_eq!(&got[..512], &[0xaa; 512][..]);
        assert_eq!(&got[512..1024], &[0x55; 512][..]);
        assert_eq!(&got[1024..], &[0xaa; 512][..]);
        std::fs::remove_file(p).unwrap();
    }

    #[tokio::test]
    async fn unmap_punches_holes_and_allocation_sees_them() {
        let p = tmpfile(1 << 20);
        let s = RdwrStore::open(&OpenOptions {
            path: p.clone(),
            ..Default::default()
        })
        .unwrap();
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
}
