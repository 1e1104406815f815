//! One device: a file (or block device) and the I/O modes fileio_tgt names, serving
//! the commands of one queue.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use rtgt_handler::client::Queue;
use rtgt_handler::layout::{self, cmd_flag, dir, op, tmf, Cmd, Cpl};

use crate::scsi::{self, Emulated};

/// fileio_tgt's I/O modes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Modes {
    /// -t: O_DSYNC, every write durable (WCE=0).
    pub write_through: bool,
    /// -r: O_RDONLY, writes refused.
    pub read_only: bool,
    /// -o: O_DIRECT.
    pub direct: bool,
    /// -n: no I/O at all; reads return zeroes.
    pub nullio: bool,
    /// -c: the cache is non-volatile: SYNCHRONIZE CACHE and FUA are no-ops.
    pub nv_cache: bool,
}

pub struct Device {
    pub name: String,
    pub modes: Modes,
    file: File,
    /// A second descriptor without O_DIRECT, for transfers the file system will not
    /// take unaligned (-o with 512-byte blocks on a 4096-byte-sector file system).
    buffered: Option<File>,
    regular: bool,
    /// `-p call`: the SCSI disk that answers raw CDBs.
    pub emulated: Option<Emulated>,
    /// What REPORT HANDLER answers.
    pub ident: String,
    /// FREE notifications heard (`-f call`).
    pub frees: AtomicU64,
    /// Testing aids: a raw CDB with this opcode is never completed, and task
    /// management is never answered (a hung handler, for rtgtd's timeout).
    pub stall_opcode: Option<u8>,
    pub ignore_tmf: bool,
}

/// What a command came to.
enum Done {
    Complete(Cpl),
    /// Never completed (the `stall_opcode` / `ignore_tmf` testing aids).
    Never,
}

impl Device {
    pub fn open(name: String, path: PathBuf, modes: Modes) -> io::Result<Device> {
        let open = |direct: bool| {
            let mut o = OpenOptions::new();
            o.read(true).write(!modes.read_only);
            let mut flags = 0;
            if modes.write_through {
                flags |= libc::O_DSYNC;
            }
            if direct {
                flags |= libc::O_DIRECT;
            }
            o.custom_flags(flags).open(&path)
        };
        let file = open(modes.direct)?;
        let buffered = if modes.direct {
            Some(open(false)?)
        } else {
            None
        };
        let regular = file.metadata()?.file_type().is_file();
        Ok(Device {
            name,
            modes,
            file,
            buffered,
            regular,
            emulated: None,
            ident: String::new(),
            frees: AtomicU64::new(0),
            stall_opcode: None,
            ignore_tmf: false,
        })
    }

    /// The size in bytes (a block device's too: seek to its end).
    pub fn size(&self) -> io::Result<u64> {
        let end = unsafe { libc::lseek(self.file.as_raw_fd(), 0, libc::SEEK_END) };
        if end < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(end as u64)
        }
    }

    /// Whether holes can be punched (UNMAP): regular files, not -r.
    pub fn can_unmap(&self) -> bool {
        self.regular && !self.modes.read_only && !self.modes.nullio
    }

    fn sync(&self) -> io::Result<()> {
        // Unlike fileio_tgt, -o still flushes: O_DIRECT bypasses the page cache, not
        // the disk's volatile cache.
        if self.modes.nv_cache || self.modes.nullio {
            return Ok(());
        }
        if unsafe { libc::fdatasync(self.file.as_raw_fd()) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn with_fallback<T>(&self, mut f: impl FnMut(&File) -> io::Result<T>) -> io::Result<T> {
        match f(&self.file) {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && self.buffered.is_some() => {
                f(self.buffered.as_ref().unwrap())
            }
            r => r,
        }
    }

    fn read(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        if self.modes.nullio {
            buf.fill(0);
            return Ok(());
        }
        self.with_fallback(|f| {
            let mut done = 0;
            while done < buf.len() {
                match f.read_at(&mut buf[done..], offset + done as u64)? {
                    0 => {
                        // Past the end of the file reads as zeroes.
                        buf[done..].fill(0);
                        break;
                    }
                    n => done += n,
                }
            }
            Ok(())
        })
    }

    fn write(&self, buf: &[u8], offset: u64, fua: bool) -> io::Result<()> {
        if self.modes.read_only {
            return Err(io::Error::from_raw_os_error(libc::EROFS));
        }
        if self.modes.nullio {
            return Ok(());
        }
        self.with_fallback(|f| f.write_all_at(buf, offset))?;
        if fua && !self.modes.write_through {
            self.sync()?;
        }
        Ok(())
    }

    fn fallocate(&self, mode: i32, offset: u64, len: u64) -> io::Result<()> {
        let r = unsafe {
            libc::fallocate(
                self.file.as_raw_fd(),
                mode,
                offset as libc::off_t,
                len as libc::off_t,
            )
        };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    fn unmap(&self, offset: u64, len: u64) -> io::Result<()> {
        if self.modes.nullio {
            return Ok(());
        }
        self.fallocate(
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            offset,
            len,
        )
    }

    fn write_zeroes(&self, offset: u64, len: u64) -> io::Result<()> {
        if self.modes.read_only {
            return Err(io::Error::from_raw_os_error(libc::EROFS));
        }
        if self.modes.nullio {
            return Ok(());
        }
        match self.fallocate(libc::FALLOC_FL_ZERO_RANGE, offset, len) {
            Ok(()) => Ok(()),
            Err(_) => {
                let zero = vec![0u8; 1 << 20];
                let mut done = 0;
                while done < len {
                    let n = (len - done).min(zero.len() as u64) as usize;
                    self.buffered
                        .as_ref()
                        .unwrap_or(&self.file)
                        .write_all_at(&zero[..n], offset + done)?;
                    done += n as u64;
                }
                Ok(())
            }
        }
    }

    /// A raw SCSI command: its Data-Out is read from the slot, and its Data-In, or
    /// with CHECK CONDITION its sense data, written there.
    fn scsi(&self, q: &mut Queue, c: &Cmd) -> Cpl {
        let data_out = if c.dir == dir::TO_HANDLER {
            q.data(c).map(|d| d.to_vec()).unwrap_or_default()
        } else {
            Vec::new()
        };
        let data_in = if c.dir == dir::FROM_HANDLER {
            c.len as u32
        } else {
            0
        };
        let mut r = scsi::answer(
            self.emulated.as_ref(),
            &self.ident,
            c.offset,
            c.cdb(),
            data_out,
            data_in,
        );
        if c.dir == dir::FROM_HANDLER && r.data_in.len() as u64 > c.len {
            // More than the slot carries: refused rather than cut short (rtgtd keeps
            // MAXIMUM TRANSFER LENGTH within a slot, so initiators do not ask).
            r = scsi::invalid_field_in_cdb();
        }
        let out: &[u8] = if i32::from(r.status) == layout::CHECK_CONDITION {
            &r.sense[..r.sense.len().min(layout::MAX_SENSE as usize)]
        } else if c.dir == dir::FROM_HANDLER {
            &r.data_in
        } else {
            &[]
        };
        // SAFETY: the slot is this command's until it is completed; sense data (at most
        // 252 bytes) fits any slot (a multiple of 4096 bytes).
        if let Some(slot) = unsafe { q.region.arena_slice(c.data, out.len() as u64) } {
            slot.copy_from_slice(out);
        }
        Cpl {
            tag: c.tag,
            status: i32::from(r.status),
            bytes: out.len() as u64,
        }
    }

    /// Task management: commands are done one at a time in ring order on a queue, so
    /// by the time the function is read every command it covers has been completed;
    /// what is left is to say so (and log it, so a test can see it arrived).
    fn task_mgmt(&self, c: &Cmd) -> Done {
        let what = match c.flags {
            tmf::ABORT_TASK => format!("ABORT TASK of tag {:#x}", c.offset),
            tmf::LU_RESET => "LOGICAL UNIT RESET".to_string(),
            f => format!("task management function {f}"),
        };
        if self.ignore_tmf {
            eprintln!("rtgt-fileio: {}: {what}: ignored", self.name);
            return Done::Never;
        }
        eprintln!("rtgt-fileio: {}: {what}", self.name);
        Done::Complete(Cpl {
            tag: c.tag,
            status: 0,
            bytes: 0,
        })
    }

    /// Does one command; the completion's status is 0 or a negative errno.
    fn execute(&self, q: &mut Queue, c: &Cmd) -> Done {
        let mut bytes = 0;
        let r = match c.op {
            op::SCSI
                if self.stall_opcode.is_some() && c.cdb().first() == self.stall_opcode.as_ref() =>
            {
                return Done::Never
            }
            op::SCSI => return Done::Complete(self.scsi(q, c)),
            op::TASK_MGMT => return self.task_mgmt(c),
            op::FREE => {
                // -f call: fileio_tgt frees its buffer here; the arena slot is rtgtd's,
                // so there is only the count to keep.
                self.frees.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            op::READ | op::WRITE => match q.data(c) {
                None => Err(io::Error::from_raw_os_error(libc::EINVAL)),
                Some(buf) => {
                    let r = if c.op == op::READ {
                        self.read(buf, c.offset)
                    } else {
                        self.write(buf, c.offset, c.flags & cmd_flag::FUA != 0)
                    };
                    if r.is_ok() {
                        bytes = c.len;
                    }
                    r
                }
            },
            op::FLUSH => self.sync(),
            op::UNMAP => self.unmap(c.offset, c.len),
            op::WRITE_ZEROES => self.write_zeroes(c.offset, c.len),
            _ => Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP)),
        };
        Done::Complete(Cpl {
            tag: c.tag,
            status: match r {
                Ok(()) => 0,
                Err(e) => -e.raw_os_error().unwrap_or(libc::EIO),
            },
            bytes,
        })
    }

    /// Serves one queue until `stop`: take every command queued, do it, complete it,
    /// then one wake-up for the batch; sleep on the eventfd when the ring is empty
    /// (`poll_only`: never sleep, fileio_tgt's -l, so rtgtd never has to wake us).
    /// `follow_cpu`: after each sleep, move to the CPU rtgtd's hint names, if it changed.
    pub fn serve(
        &self,
        mut q: Queue,
        stop: Arc<AtomicBool>,
        poll_only: bool,
        follow_cpu: bool,
        delay: std::time::Duration,
    ) {
        let mut on_cpu = None;
        while !stop.load(Ordering::Relaxed) {
            let mut n = 0;
            while let Some(c) = q.take_cmd() {
                if !delay.is_zero() {
                    std::thread::sleep(delay);
                }
                if let Done::Complete(cpl) = self.execute(&mut q, &c) {
                    q.complete(cpl);
                    n += 1;
                }
            }
            if n > 0 {
                q.kick();
                continue;
            }
            if poll_only {
                std::thread::sleep(std::time::Duration::from_micros(50));
            } else if q.wait(250).is_err() {
                break;
            }
            // Run where rtgtd's reactor for this queue runs, so its kicks and ours are
            // local context switches, not interrupts to another (maybe halted) vCPU.
            if follow_cpu {
                let hint = q.cpu_hint();
                if hint.is_some() && hint != on_cpu {
                    on_cpu = hint;
                    let _ = rtgt_handler::sys::pin_to_cpu(hint.unwrap_or(0));
                }
            }
        }
    }
}
