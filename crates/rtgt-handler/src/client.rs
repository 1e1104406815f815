//! The handler's side of the protocol: connect to rtgtd's socket, say HELLO, map the
//! queues it passes, then per queue take commands, do them on the arena, complete them.
//!
//! A queue is single-producer / single-consumer in each direction, so one thread owns
//! each [`Queue`].

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use crate::layout::{self, Cmd, Cpl, Geometry};
use crate::shm::Region;
use crate::sys;
use crate::wire::{self, Accept, Hello};

/// A handler attached to one logical unit.
pub struct Attachment {
    pub sock: UnixStream,
    pub accept: Accept,
    pub queues: Vec<Queue>,
}

/// Connects to `path`, sends `hello`, and maps the queues rtgtd grants.
pub fn connect(path: &Path, hello: &Hello) -> io::Result<Attachment> {
    let mut sock = UnixStream::connect(path)?;
    sock.write_all(&hello.encode())?;
    let mut buf = [0u8; wire::ACCEPT_SIZE];
    let fds = sys::recv_with_fds(sock.as_raw_fd(), &mut buf, 3 * 64)?;
    let accept = Accept::decode(&buf)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad ACCEPT magic"))?;
    if accept.status != wire::ACCEPTED {
        return Err(io::Error::new(
            io::ErrorKind::ConnectionRefused,
            format!(
                "rtgtd refused the handler: {}",
                wire::reject_text(accept.status)
            ),
        ));
    }
    if fds.len() != accept.queues as usize * 3 || accept.queues == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "ACCEPT carried the wrong number of descriptors",
        ));
    }
    let geo = Geometry {
        depth: accept.depth,
        slot_size: accept.slot_size,
    };
    let mut queues = Vec::new();
    let mut it = fds.into_iter();
    while let (Some(memfd), Some(cmd_efd), Some(cpl_efd)) = (it.next(), it.next(), it.next()) {
        let region = Region::map(memfd.as_raw_fd(), geo)?;
        queues.push(Queue {
            region,
            _memfd: memfd,
            cmd_efd,
            cpl_efd,
            head: 0,
            cpl_tail: 0,
            batch: true,
        });
    }
    Ok(Attachment {
        sock,
        accept,
        queues,
    })
}

impl Attachment {
    /// Tells rtgtd the capacity changed (fileio_tgt's SIGUSR1).
    pub fn notify_capacity(&mut self, bytes: u64) -> io::Result<()> {
        self.sock
            .write_all(&wire::encode_notify(wire::notify::CAPACITY, bytes))
    }

    /// Blocks until rtgtd closes the connection (it detached us or exited).
    pub fn wait_closed(&mut self) {
        let mut b = [0u8; 64];
        while matches!(self.sock.read(&mut b), Ok(n) if n > 0) {}
    }
}

/// One queue: its region and its two eventfds.
pub struct Queue {
    pub region: Region,
    _memfd: OwnedFd,
    /// rtgtd kicks this when it queued commands while we slept.
    cmd_efd: OwnedFd,
    /// We kick this when we completed commands while rtgtd slept.
    cpl_efd: OwnedFd,
    head: u32,
    cpl_tail: u32,
    /// Complete a batch, then one wake-up (fileio_tgt's -M 1); false: one per command.
    pub batch: bool,
}

impl Queue {
    /// The next command, if rtgtd queued one.
    pub fn take_cmd(&mut self) -> Option<Cmd> {
        let tail = self.region.load(layout::CMD_TAIL);
        if tail == self.head {
            return None;
        }
        let c = self.region.read_cmd(self.head);
        self.head = self.head.wrapping_add(1);
        self.region.store(layout::CMD_HEAD, self.head);
        Some(c)
    }

    /// The CPU rtgtd's submitting thread ran on when it last woke us, if it said
    /// ([`layout::CMD_CPU`]).
    pub fn cpu_hint(&self) -> Option<usize> {
        (self.region.load(layout::CMD_CPU) as usize).checked_sub(1)
    }

    /// Sleeps until rtgtd queues a command or `timeout_ms` passes (-1: forever). The
    /// wake flag is set only around the sleep: while we work, rtgtd makes no syscall.
    pub fn wait(&mut self, timeout_ms: i32) -> io::Result<()> {
        self.region.set_flag(layout::CMD_SLEEPING, 1);
        let mut woken = false;
        if self.region.load(layout::CMD_TAIL) == self.head {
            woken = sys::poll_read(&[self.cmd_efd.as_raw_fd()], timeout_ms)?[0];
        }
        self.region.set_flag(layout::CMD_SLEEPING, 0);
        // The eventfd is non-blocking; read it only when poll said it is readable (a
        // count left from a kick we did not sleep for only makes the next poll return
        // at once).
        if woken {
            let _ = sys::drain(self.cmd_efd.as_raw_fd());
        }
        Ok(())
    }

    /// The arena bytes a READ or WRITE names, or None when they are out of the arena.
    pub fn data(&mut self, c: &Cmd) -> Option<&mut [u8]> {
        // SAFETY: rtgtd gives each in-flight command its own slot; `&mut self` keeps
        // this thread from holding two.
        unsafe { self.region.arena_slice(c.data, c.len) }
    }

    /// Posts a completion; wakes rtgtd now unless batching (then call [`Queue::kick`]
    /// after the batch).
    pub fn complete(&mut self, c: Cpl) {
        self.region.write_cpl(self.cpl_tail, &c);
        self.cpl_tail = self.cpl_tail.wrapping_add(1);
        self.region.store(layout::CPL_TAIL, self.cpl_tail);
        if !self.batch {
            self.kick();
        }
    }

    /// Wakes rtgtd if it sleeps on the completion ring.
    pub fn kick(&self) {
        if self.region.take_sleeping(layout::CPL_SLEEPING) {
            sys::kick(self.cpl_efd.as_raw_fd());
        }
    }

    /// Sets the completion tail to any value and kicks (for tests of rtgtd's checks).
    pub fn force_cpl_tail(&mut self, tail: u32) {
        self.cpl_tail = tail;
        self.region.store(layout::CPL_TAIL, tail);
        sys::kick(self.cpl_efd.as_raw_fd());
    }
}
