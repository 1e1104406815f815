//! `rdwr`: pread / pwrite on a file or block device, run on tokio's blocking pool so the
//! network threads never wait on the disk.

use std::alloc::{self, Layout};
use std::fs::{File, OpenOptions as FsOpen};
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::sync::Arc;

use async_trait::async_trait;

use crate::{BackingStore, Capabilities, OpenError, OpenOptions};

/// O_DIRECT needs buffers, offsets and lengths aligned to the device's logical block;
/// 4096 covers every device we meet.
const DIRECT_ALIGN: usize = 4096;

pub struct RdwrStore {
    file: Arc<File>,
    size: u64,
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
            size,
            caps: Capabilities {
                direct: opts.direct,
                sync: opts.sync,
                read_only: opts.read_only,
                unmap: false,
            },
        })
    }
}

fn block_device_size(file: &File) -> io::Result<u64> {
    use std::os::fd::AsRawFd;
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
        self.size
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
