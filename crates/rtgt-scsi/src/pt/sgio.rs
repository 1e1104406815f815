//! The kernel's SCSI pass-through interfaces: the sg driver's SG_IO with a version 3
//! header (`struct sg_io_hdr`, include/scsi/sg.h) on `/dev/sgN`, and bsg's SG_IO with a
//! version 4 header (`struct sg_io_v4`, include/uapi/linux/bsg.h) on `/dev/bsg/H:C:T:L`.
//! bsg in Linux 6.1 has no read/write queue interface any more, only the blocking
//! ioctl, so bsg's commands run on the I/O pool, one pool thread per command in flight;
//! sg's go through its asynchronous write/read interface ([`super::sgq`]) and take SG_IO
//! on the pool only when that queue is full.
//!
//! [`SgIo`] is the seam: the pass-through logic above it is tested with a fake device.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// Which way data moves (sg's `dxfer_direction`; bsg's dout/din lengths).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    None,
    ToDevice,
    FromDevice,
}

/// What the kernel reports of one command (the host, driver and status bytes of
/// SAM's service response, Linux's `scsi_cmnd` result split as sg returns it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Completion {
    /// SCSI status byte (SAM-5 5.3).
    pub status: u8,
    /// Linux host byte: DID_OK 0, DID_NO_CONNECT 1, DID_TIME_OUT 3, DID_BAD_TARGET 4, ...
    pub host: u16,
    /// Linux driver byte: DRIVER_SENSE 8 says the sense buffer was filled; DRIVER_TIMEOUT 6.
    pub driver: u16,
    /// Bytes of the data buffer not transferred, as the driver says (may be garbage).
    pub resid: i32,
    /// Bytes of sense data the driver wrote (may exceed the buffer if it lies).
    pub sense_len: u32,
}

/// One SG_IO call. Blocking: called on the I/O pool only.
pub trait SgIo: Send + Sync + 'static {
    /// Runs `cdb`; `data` is the Data-Out to send or the buffer Data-In lands in.
    fn execute(
        &self,
        cdb: &[u8],
        dir: Dir,
        data: &mut [u8],
        sense: &mut [u8],
        timeout_ms: u32,
    ) -> io::Result<Completion>;

    /// A logical unit reset (sg's SG_SCSI_RESET, SG_SCSI_RESET_DEVICE).
    fn reset(&self) -> io::Result<()>;

    /// The largest transfer the device's queue takes, in bytes.
    fn max_transfer(&self) -> u32;

    /// "sg" or "bsg".
    fn kind(&self) -> &'static str;

    /// sg's asynchronous queue (write/read), where the node has one: commands queued
    /// there hold no thread while they run.
    fn queue(&self) -> Option<&super::sgq::SgQueue> {
        None
    }
}

const SG_IO: libc::c_ulong = 0x2285;
const SG_GET_VERSION_NUM: libc::c_ulong = 0x2282;
const SG_GET_RESERVED_SIZE: libc::c_ulong = 0x2272;
const SG_SCSI_RESET: libc::c_ulong = 0x2284;
const SG_SCSI_RESET_DEVICE: libc::c_int = 1;
/// BLKSECTGET on an sg node answers the queue's max_sectors in bytes (drivers/scsi/sg.c).
const BLKSECTGET: libc::c_ulong = 0x1267;
/// The sg driver's character major (include/uapi/linux/major.h SCSI_GENERIC_MAJOR).
const SCSI_GENERIC_MAJOR: u32 = 21;
/// What an unknown queue limit is taken to be (sg's default reserved buffer is 32 KiB;
/// every SCSI host takes at least 512 KiB... not guaranteed, so stay modest).
const FALLBACK_MAX_TRANSFER: u32 = 256 * 1024;

#[repr(C)]
#[derive(Default)]
pub(crate) struct SgIoHdr {
    pub interface_id: libc::c_int,
    pub dxfer_direction: libc::c_int,
    pub cmd_len: u8,
    pub mx_sb_len: u8,
    pub iovec_count: u16,
    pub dxfer_len: u32,
    pub dxferp: usize,
    pub cmdp: usize,
    pub sbp: usize,
    pub timeout: u32,
    pub flags: u32,
    pub pack_id: libc::c_int,
    pub usr_ptr: usize,
    pub status: u8,
    pub masked_status: u8,
    pub msg_status: u8,
    pub sb_len_wr: u8,
    pub host_status: u16,
    pub driver_status: u16,
    pub resid: libc::c_int,
    pub duration: u32,
    pub info: u32,
}

#[repr(C)]
#[derive(Default)]
struct SgIoV4 {
    guard: i32,
    protocol: u32,
    subprotocol: u32,
    request_len: u32,
    request: u64,
    request_tag: u64,
    request_attr: u32,
    request_priority: u32,
    request_extra: u32,
    max_response_len: u32,
    response: u64,
    dout_iovec_count: u32,
    dout_xfer_len: u32,
    din_iovec_count: u32,
    din_xfer_len: u32,
    dout_xferp: u64,
    din_xferp: u64,
    timeout: u32,
    flags: u32,
    usr_ptr: u64,
    spare_in: u32,
    driver_status: u32,
    transport_status: u32,
    device_status: u32,
    retry_delay: u32,
    info: u32,
    duration: u32,
    response_len: u32,
    din_resid: i32,
    dout_resid: i32,
    generated_tag: u64,
    spare_out: u32,
    padding: u32,
}

/// An open pass-through node.
pub struct Node {
    file: File,
    bsg: bool,
    max_transfer: u32,
    /// sg only: its asynchronous queue, on a file of its own.
    queue: Option<super::sgq::SgQueue>,
}

fn ioctl_int(file: &File, req: libc::c_ulong) -> io::Result<libc::c_int> {
    let mut v: libc::c_int = 0;
    // SAFETY: the request writes one int to the pointer given.
    let r = unsafe { libc::ioctl(file.as_raw_fd(), req, &mut v as *mut libc::c_int) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(v)
}

/// Opens `path` as `kind` ("sg" or "bsg"), refusing anything that is not that kind of
/// character device (tgt's bs_sg checks the same: sg's major, bsg's major from sysfs).
pub fn open(kind: &str, path: &str) -> Result<Node, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{path}: {e}"))?;
    if !meta.file_type().is_char_device() {
        return Err(format!(
            "{path} is not a character device: bstype {kind} needs {}",
            usage(kind)
        ));
    }
    let major = libc::major(meta.rdev());
    let bsg = match kind {
        "sg" => {
            if major != SCSI_GENERIC_MAJOR {
                return Err(format!(
                    "{path} is not an sg node (major {major}, sg's is {SCSI_GENERIC_MAJOR}): bstype sg needs {}",
                    usage(kind)
                ));
            }
            false
        }
        "bsg" => {
            let name = Path::new(path)
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("");
            let sys = std::fs::read_to_string(format!("/sys/class/bsg/{name}/dev"))
                .ok()
                .and_then(|s| s.trim().split(':').next()?.parse::<u32>().ok());
            if sys != Some(major) {
                return Err(format!(
                    "{path} is not a bsg node (no /sys/class/bsg/{name} of major {major}): bstype bsg needs {}",
                    usage(kind)
                ));
            }
            true
        }
        _ => {
            return Err(format!(
                "bstype {kind} can't back a pass-through LU (use sg or bsg)"
            ))
        }
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("{path}: {e}"))?;
    // O_NONBLOCK only keeps open() from waiting on an exclusive holder; SG_IO blocks.
    // sg's SG_IO needs driver 3.0 or later (the v3 header).
    if !bsg {
        let v = ioctl_int(&file, SG_GET_VERSION_NUM).map_err(|e| format!("{path}: {e}"))?;
        if v < 30000 {
            return Err(format!("{path}: sg driver {v} is older than 3.0"));
        }
    }
    // The queue's limit: sg answers BLKSECTGET in bytes; bsg's SG_GET_RESERVED_SIZE is
    // min(reserved size, queue max bytes) with the reserved size INT_MAX (block/bsg.c).
    let limit = if bsg {
        ioctl_int(&file, SG_GET_RESERVED_SIZE)
    } else {
        ioctl_int(&file, BLKSECTGET)
    };
    let max_transfer = match limit {
        Ok(n) if n > 0 => n as u32,
        _ => FALLBACK_MAX_TRANSFER,
    };
    let queue = if bsg {
        None
    } else {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| format!("{path}: {e}"))?;
        Some(super::sgq::SgQueue::new(f))
    };
    Ok(Node {
        file,
        bsg,
        max_transfer,
        queue,
    })
}

use std::os::unix::fs::OpenOptionsExt;

fn usage(kind: &str) -> &'static str {
    if kind == "bsg" {
        "a /dev/bsg/H:C:T:L node"
    } else {
        "a /dev/sgN node"
    }
}

pub(crate) fn dxfer(dir: Dir) -> libc::c_int {
    match dir {
        Dir::None => -1,
        Dir::ToDevice => -2,
        Dir::FromDevice => -3,
    }
}

impl SgIo for Node {
    fn execute(
        &self,
        cdb: &[u8],
        dir: Dir,
        data: &mut [u8],
        sense: &mut [u8],
        timeout_ms: u32,
    ) -> io::Result<Completion> {
        let len =
            u32::try_from(data.len()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        let len = if dir == Dir::None { 0 } else { len };
        let r;
        let c = if self.bsg {
            let mut h = SgIoV4 {
                guard: i32::from(b'Q'),
                request_len: cdb.len() as u32,
                request: cdb.as_ptr() as u64,
                max_response_len: sense.len() as u32,
                response: sense.as_mut_ptr() as u64,
                timeout: timeout_ms,
                ..Default::default()
            };
            match dir {
                Dir::ToDevice => {
                    h.dout_xfer_len = len;
                    h.dout_xferp = data.as_mut_ptr() as u64;
                }
                Dir::FromDevice => {
                    h.din_xfer_len = len;
                    h.din_xferp = data.as_mut_ptr() as u64;
                }
                Dir::None => {}
            }
            // SAFETY: every pointer in the header outlives the blocking call.
            r = unsafe { libc::ioctl(self.file.as_raw_fd(), SG_IO, &mut h as *mut SgIoV4) };
            Completion {
                status: h.device_status as u8,
                host: h.transport_status as u16,
                driver: h.driver_status as u16,
                resid: if dir == Dir::ToDevice {
                    h.dout_resid
                } else {
                    h.din_resid
                },
                sense_len: h.response_len,
            }
        } else {
            let mut h = SgIoHdr {
                interface_id: libc::c_int::from(b'S'),
                dxfer_direction: dxfer(dir),
                cmd_len: cdb.len() as u8,
                mx_sb_len: sense.len().min(255) as u8,
                dxfer_len: len,
                dxferp: data.as_mut_ptr() as usize,
                cmdp: cdb.as_ptr() as usize,
                sbp: sense.as_mut_ptr() as usize,
                timeout: timeout_ms,
                ..Default::default()
            };
            // SAFETY: every pointer in the header outlives the blocking call.
            r = unsafe { libc::ioctl(self.file.as_raw_fd(), SG_IO, &mut h as *mut SgIoHdr) };
            Completion {
                status: h.status,
                host: h.host_status,
                driver: h.driver_status,
                resid: h.resid,
                sense_len: u32::from(h.sb_len_wr),
            }
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(c)
    }

    fn reset(&self) -> io::Result<()> {
        if self.bsg {
            // bsg has no reset ioctl (block/bsg.c); the device's own error handling
            // resets it when a command times out.
            return Err(io::Error::from_raw_os_error(libc::ENOTTY));
        }
        let mut v: libc::c_int = SG_SCSI_RESET_DEVICE;
        // SAFETY: SG_SCSI_RESET reads one int.
        let r = unsafe {
            libc::ioctl(
                self.file.as_raw_fd(),
                SG_SCSI_RESET,
                &mut v as *mut libc::c_int,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn max_transfer(&self) -> u32 {
        self.max_transfer
    }

    fn queue(&self) -> Option<&super::sgq::SgQueue> {
        self.queue.as_ref()
    }

    fn kind(&self) -> &'static str {
        if self.bsg {
            "bsg"
        } else {
            "sg"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The header layouts the kernel expects on a 64-bit target (sg_io_hdr is 88 bytes,
    /// sg_io_v4 160).
    #[test]
    fn header_sizes() {
        assert_eq!(std::mem::size_of::<SgIoHdr>(), 88);
        assert_eq!(std::mem::size_of::<SgIoV4>(), 160);
    }

    #[test]
    fn refuses_what_is_not_a_node() {
        let file = std::env::temp_dir().join(format!("rtgt-pt-{}", std::process::id()));
        std::fs::write(&file, b"x").unwrap();
        let e = open("sg", file.to_str().unwrap()).err().unwrap();
        let _ = std::fs::remove_file(&file);
        assert!(e.contains("not a character device"), "{e}");
        let e = open("sg", "/dev/null").err().unwrap();
        assert!(e.contains("not an sg node"), "{e}");
        let e = open("bsg", "/dev/null").err().unwrap();
        assert!(e.contains("not a bsg node"), "{e}");
        let e = open("sg", "/dev/nonexistent-sg9").err().unwrap();
        assert!(e.contains("No such file"), "{e}");
    }
}
