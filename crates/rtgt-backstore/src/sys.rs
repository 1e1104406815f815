//! The system calls the file-backed stores share: opening with the bsoflags, block
//! device geometry and discard ioctls, fallocate, durable writes.

use std::fs::{File, OpenOptions as FsOpen};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};

use crate::{Capabilities, OpenError, OpenOptions};

// Block device ioctls (linux/fs.h): _IO(0x12, n) and _IOR(0x12, 114, size_t).
const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;
const BLKSSZGET: libc::c_ulong = 0x1268;
const BLKPBSZGET: libc::c_ulong = 0x127b;
const BLKDISCARD: libc::c_ulong = 0x1277;
const BLKZEROOUT: libc::c_ulong = 0x127f;

/// An opened backing file or block device and what it is.
pub struct Opened {
    pub file: File,
    pub size: u64,
    pub caps: Capabilities,
}

/// Opens `opts.path` for a file-backed store: O_RDONLY for read-only LUNs, O_DIRECT for
/// `direct`, O_DSYNC for `sync` (data and the metadata needed to read it back are
/// durable when a write returns; a fixed-size image needs nothing more than that).
pub fn open_backing(opts: &OpenOptions) -> Result<Opened, OpenError> {
    let io_err = |source| OpenError::Io {
        path: opts.path.clone(),
        source,
    };
    let mut flags = 0;
    if opts.direct {
        flags |= libc::O_DIRECT;
    }
    if opts.sync {
        flags |= libc::O_DSYNC;
    }
    let file = FsOpen::new()
        .read(true)
        .write(!opts.read_only)
        .custom_flags(flags)
        .open(&opts.path)
        .map_err(io_err)?;
    let meta = file.metadata().map_err(io_err)?;
    let mut caps = Capabilities {
        direct: opts.direct,
        sync: opts.sync,
        read_only: opts.read_only,
        unmap: true,
        ..Capabilities::default()
    };
    // A punched hole in a file reads as zeroes (and where punching is refused, unmap
    // writes zeroes); a discarded block device range promises nothing (SBC-4 LBPRZ).
    caps.unmap_zeroes = !meta.file_type().is_block_device();
    let size = if meta.file_type().is_block_device() {
        caps.block_device = true;
        caps.logical_block_size = blk_u32(&file, BLKSSZGET).map_err(io_err)?;
        caps.physical_block_size = blk_u32(&file, BLKPBSZGET).map_err(io_err)?;
        block_device_size(&file).map_err(io_err)?
    } else if meta.is_file() {
        meta.len()
    } else {
        return Err(OpenError::NotAFile(opts.path.clone()));
    };
    Ok(Opened { file, size, caps })
}

pub fn block_device_size(file: &File) -> io::Result<u64> {
    let mut size: u64 = 0;
    // SAFETY: the ioctl writes one u64 into `size`, which outlives the call.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), BLKGETSIZE64, &mut size as *mut u64) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(size)
}

fn blk_u32(file: &File, req: libc::c_ulong) -> io::Result<u32> {
    let mut v: libc::c_int = 0;
    // SAFETY: BLKSSZGET / BLKPBSZGET write one int into `v`, which outlives the call.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), req, &mut v as *mut libc::c_int) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(v as u32)
}

fn blk_range(file: &File, req: libc::c_ulong, offset: u64, len: u64) -> io::Result<()> {
    let range: [u64; 2] = [offset, len];
    // SAFETY: BLKDISCARD / BLKZEROOUT read two u64s from `range`, which outlives the call.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), req, range.as_ptr()) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn fallocate(file: &File, mode: libc::c_int, offset: u64, len: u64) -> io::Result<()> {
    loop {
        // SAFETY: plain fallocate(2) on an open fd.
        let rc = unsafe {
            libc::fallocate(
                file.as_raw_fd(),
                mode,
                offset as libc::off_t,
                len as libc::off_t,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// fallocate modes for a hole and for zeroes that keep the file's size.
pub const PUNCH_HOLE: libc::c_int = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
pub const ZERO_RANGE: libc::c_int = libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE;

/// Releases a range: BLKDISCARD on a block device, a punched hole in a file.
pub fn discard(file: &File, block_device: bool, offset: u64, len: u64) -> io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    if block_device {
        blk_range(file, BLKDISCARD, offset, len)
    } else {
        fallocate(file, PUNCH_HOLE, offset, len)
    }
}

/// Makes a range read as zeroes: BLKZEROOUT on a block device (the kernel picks
/// WRITE ZEROES, or writes zeroes), FALLOC_FL_ZERO_RANGE on a file, a punched hole
/// where the file system has no zero range, zero buffers as the last resort.
pub fn zero_range(file: &File, block_device: bool, offset: u64, len: u64) -> io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    if block_device {
        return blk_range(file, BLKZEROOUT, offset, len);
    }
    match fallocate(file, ZERO_RANGE, offset, len) {
        Err(e) if unsupported(&e) => {}
        r => return r,
    }
    match fallocate(file, PUNCH_HOLE, offset, len) {
        Err(e) if unsupported(&e) => {}
        r => return r,
    }
    let zeros = vec![0u8; (1 << 20).min(len) as usize];
    let mut done = 0;
    while done < len {
        let n = (zeros.len() as u64).min(len - done) as usize;
        file.write_all_at(&zeros[..n], offset + done)?;
        done += n as u64;
    }
    Ok(())
}

/// Whether a fallocate error means "this file system can't", not "this failed".
pub fn unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS)
    )
}

/// preadv2 with RWF_NOWAIT: reads only what the page cache holds, without waiting for
/// the disk. Returns how many bytes it read from the start of `buf` (0 when the first
/// page is not cached, the kernel cannot tell, or `offset` is at the end of the file).
pub fn pread_cached(file: &File, buf: &mut [u8], offset: u64) -> usize {
    let iov = libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: iov points into `buf`, valid and writable for the call.
    let n = unsafe {
        libc::preadv2(
            file.as_raw_fd(),
            &iov,
            1,
            offset as libc::off_t,
            libc::RWF_NOWAIT,
        )
    };
    n.max(0) as usize
}

/// pwritev2 with RWF_DSYNC: the per-write equivalent of O_DSYNC, so a FUA write is
/// durable without flushing the rest of the file. Writes all of `buf`.
pub fn pwrite_dsync(file: &File, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
    while !buf.is_empty() {
        let iov = libc::iovec {
            iov_base: buf.as_ptr() as *mut libc::c_void,
            iov_len: buf.len(),
        };
        // SAFETY: iov points into `buf`, valid for the call.
        let n = unsafe {
            libc::pwritev2(
                file.as_raw_fd(),
                &iov,
                1,
                offset as libc::off_t,
                libc::RWF_DSYNC,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(io::Error::from(io::ErrorKind::WriteZero));
        }
        buf = &buf[n as usize..];
        offset += n as u64;
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

/// The data / hole runs of `[offset, offset + len)` of a regular file, from SEEK_DATA and
/// SEEK_HOLE; a file system without them reports everything allocated.
pub fn extents(file: &File, offset: u64, len: u64) -> io::Result<Vec<crate::Extent>> {
    let end = offset + len;
    let mut out = Vec::new();
    let mut push = |start: u64, stop: u64, allocated: bool| {
        if stop > start {
            out.push(crate::Extent {
                offset: start,
                len: stop - start,
                allocated,
            });
        }
    };
    let mut pos = offset;
    while pos < end {
        let data = match seek(file, pos, libc::SEEK_DATA) {
            Ok(d) => d.unwrap_or(end).min(end),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                push(pos, end, true);
                break;
            }
            Err(e) => return Err(e),
        };
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

/// The size of an open backing file or block device now.
pub fn current_size(file: &File, block_device: bool) -> io::Result<u64> {
    if block_device {
        block_device_size(file)
    } else {
        Ok(file.metadata()?.len())
    }
}

/// Allocation of a file-backed store's byte range (see [`crate::BackingStore::allocation`]):
/// SEEK_DATA / SEEK_HOLE on the I/O pool for a file; a block device counts as allocated.
pub async fn allocation(
    file: &std::sync::Arc<File>,
    block_device: bool,
    offset: u64,
    len: u64,
) -> io::Result<Vec<crate::Extent>> {
    if block_device || len == 0 {
        return Ok(vec![crate::Extent {
            offset,
            len,
            allocated: true,
        }]);
    }
    let file = file.clone();
    crate::pool::run(move || extents(&file, offset, len)).await
}

/// Online resize of a file-backed store: the file's length and the cached `size`.
pub fn resize(
    file: &File,
    caps: &Capabilities,
    size: &std::sync::atomic::AtomicU64,
    new: u64,
) -> io::Result<()> {
    if caps.block_device || caps.read_only {
        return Err(io::Error::from(io::ErrorKind::Unsupported));
    }
    file.set_len(new)?;
    size.store(new, std::sync::atomic::Ordering::Relaxed);
    Ok(())
}

/// Re-reads a file-backed store's size into the cached `size`.
pub fn refresh_size(
    file: &File,
    block_device: bool,
    size: &std::sync::atomic::AtomicU64,
) -> io::Result<u64> {
    let now = current_size(file, block_device)?;
    size.store(now, std::sync::atomic::Ordering::Relaxed);
    Ok(now)
}
