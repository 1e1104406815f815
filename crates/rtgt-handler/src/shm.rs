//! A mapped queue region: the ring indices as atomics, entries copied in and out.
//!
//! Both processes map the same memfd. Indices are published with release stores and
//! read with acquire loads (an entry written before its tail store is visible to a
//! reader that saw the tail); the wake flags use a full fence on both sides so that a
//! producer either sees the consumer's "sleeping" or the consumer sees the new tail
//! (docs/handler-protocol.md, "Wake-ups"). Every entry is copied out of shared memory
//! once before it is looked at, as the other side may change it at any time.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{fence, AtomicU32, Ordering};

use crate::layout::{self, Cmd, Cpl, Geometry, CMD_ENTRY, CPL_ENTRY};

/// One mapping of a queue region. The pointer stays valid until drop; the memfd is
/// sealed against shrinking, so no access within `len` can fault.
pub struct Region {
    ptr: *mut u8,
    len: usize,
    pub geo: Geometry,
}

// SAFETY: all access to the mapping goes through atomics or raw copies; the region is
// plain shared memory.
unsafe impl Send for Region {}
unsafe impl Sync for Region {}

impl Region {
    /// Maps `fd`, which must be at least `geo.region_size()` bytes.
    pub fn map(fd: RawFd, geo: Geometry) -> io::Result<Region> {
        if !geo.valid() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "bad geometry"));
        }
        let len = geo.region_size();
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        if unsafe { libc::fstat(fd, &mut st) } < 0 {
            return Err(io::Error::last_os_error());
        }
        if (st.st_size as u64) < len as u64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "queue region smaller than its geometry",
            ));
        }
        let ptr = crate::sys::map_shared(fd, len)?;
        Ok(Region { ptr, len, geo })
    }

    fn word(&self, off: usize) -> &AtomicU32 {
        debug_assert!(off + 4 <= layout::HEADER_SIZE);
        // SAFETY: a 4-byte-aligned offset within the header of a live mapping.
        unsafe { &*(self.ptr.add(off) as *const AtomicU32) }
    }

    pub fn load(&self, off: usize) -> u32 {
        self.word(off).load(Ordering::Acquire)
    }
    pub fn store(&self, off: usize, v: u32) {
        self.word(off).store(v, Ordering::Release)
    }

    /// Sets a wake flag, then a full fence: the caller re-checks its ring after this,
    /// before sleeping.
    pub fn set_flag(&self, off: usize, v: u32) {
        self.word(off).store(v, Ordering::Relaxed);
        fence(Ordering::SeqCst);
    }

    /// After publishing a tail: a full fence, then whether the consumer sleeps.
    pub fn peer_sleeping(&self, flag: usize) -> bool {
        fence(Ordering::SeqCst);
        self.word(flag).load(Ordering::Relaxed) != 0
    }

    /// As [`Region::peer_sleeping`], and clears the flag when it was set, so that of the
    /// commands (or completions) published while the consumer sleeps only the first
    /// kicks it: one eventfd write per wake-up, not one per entry
    /// (docs/handler-protocol.md, "Wake-ups"). The consumer sets the flag again before
    /// it next sleeps.
    pub fn take_sleeping(&self, flag: usize) -> bool {
        fence(Ordering::SeqCst);
        let w = self.word(flag);
        w.load(Ordering::Relaxed) != 0 && w.swap(0, Ordering::AcqRel) != 0
    }

    fn slot_index(&self, index: u32) -> usize {
        (index & (self.geo.depth - 1)) as usize
    }

    pub fn write_cmd(&self, index: u32, c: &Cmd) {
        let off = self.geo.cmd_ring() + self.slot_index(index) * CMD_ENTRY;
        let b = c.encode();
        // SAFETY: within the command ring of a live mapping.
        unsafe { std::ptr::copy_nonoverlapping(b.as_ptr(), self.ptr.add(off), CMD_ENTRY) };
    }

    pub fn read_cmd(&self, index: u32) -> Cmd {
        let off = self.geo.cmd_ring() + self.slot_index(index) * CMD_ENTRY;
        let mut b = [0u8; CMD_ENTRY];
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.add(off), b.as_mut_ptr(), CMD_ENTRY) };
        Cmd::decode(&b)
    }

    pub fn write_cpl(&self, index: u32, c: &Cpl) {
        let off = self.geo.cpl_ring() + self.slot_index(index) * CPL_ENTRY;
        let b = c.encode();
        unsafe { std::ptr::copy_nonoverlapping(b.as_ptr(), self.ptr.add(off), CPL_ENTRY) };
    }

    pub fn read_cpl(&self, index: u32) -> Cpl {
        let off = self.geo.cpl_ring() + self.slot_index(index) * CPL_ENTRY;
        let mut b = [0u8; CPL_ENTRY];
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.add(off), b.as_mut_ptr(), CPL_ENTRY) };
        Cpl::decode(&b)
    }

    /// Whether `[data, data + len)` lies within the arena.
    pub fn arena_range_ok(&self, data: u64, len: u64) -> bool {
        data.checked_add(len)
            .is_some_and(|end| end <= self.geo.arena_size() as u64)
    }

    /// Copies `src` into the arena at `data` (false when out of the arena).
    pub fn copy_in(&self, data: u64, src: &[u8]) -> bool {
        if !self.arena_range_ok(data, src.len() as u64) {
            return false;
        }
        let off = self.geo.arena() + data as usize;
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.add(off), src.len()) };
        true
    }

    /// Copies from the arena at `data` into `dst` (false when out of the arena).
    pub fn copy_out(&self, data: u64, dst: &mut [u8]) -> bool {
        if !self.arena_range_ok(data, dst.len() as u64) {
            return false;
        }
        let off = self.geo.arena() + data as usize;
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.add(off), dst.as_mut_ptr(), dst.len()) };
        true
    }

    /// The arena bytes `[data, data + len)` for the handler to do I/O on directly, or
    /// None when out of the arena.
    ///
    /// # Safety
    /// The caller must not let two live slices overlap (the handler owns a command's
    /// slot from taking it until completing it; rtgtd does not touch it meanwhile).
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn arena_slice(&self, data: u64, len: u64) -> Option<&mut [u8]> {
        if !self.arena_range_ok(data, len) {
            return None;
        }
        let off = self.geo.arena() + data as usize;
        Some(std::slice::from_raw_parts_mut(
            self.ptr.add(off),
            len as usize,
        ))
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    /// The first producer to see the consumer asleep clears its flag (and kicks); the
    /// ones after it see it awake and do not, until the consumer sleeps again.
    #[test]
    fn only_the_first_kick_of_a_sleep_counts() {
        let geo = Geometry {
            depth: 4,
            slot_size: 4096,
        };
        let fd = crate::sys::sealed_memfd("t", geo.region_size() as u64).unwrap();
        let r = Region::map(fd.as_raw_fd(), geo).unwrap();
        assert!(!r.take_sleeping(layout::CPL_SLEEPING), "awake at first");
        r.set_flag(layout::CPL_SLEEPING, 1);
        assert!(r.peer_sleeping(layout::CPL_SLEEPING));
        assert!(r.take_sleeping(layout::CPL_SLEEPING));
        assert!(!r.take_sleeping(layout::CPL_SLEEPING));
        assert_eq!(r.load(layout::CPL_SLEEPING), 0);
        assert_eq!(r.load(layout::CMD_SLEEPING), 0, "the other flag untouched");
        r.set_flag(layout::CPL_SLEEPING, 1);
        assert!(r.take_sleeping(layout::CPL_SLEEPING));
    }
}
