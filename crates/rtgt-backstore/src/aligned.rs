//! O_DIRECT support: aligned buffers and a lock over byte ranges, so the
//! read-modify-write of an unaligned write cannot lose a concurrent write to the same
//! aligned block.

use std::alloc::{self, Layout};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;

/// O_DIRECT needs buffers, offsets and lengths aligned to the device's logical block
/// (or the file system's block); 4096 covers every device we meet.
pub const DIRECT_ALIGN: usize = 4096;

pub fn align_down(v: u64) -> u64 {
    v & !(DIRECT_ALIGN as u64 - 1)
}
pub fn align_up(v: u64) -> u64 {
    align_down(v + DIRECT_ALIGN as u64 - 1)
}
/// Whether an I/O at `offset` of `len` bytes can go to an O_DIRECT fd as it is.
pub fn is_aligned(offset: u64, len: usize) -> bool {
    offset.is_multiple_of(DIRECT_ALIGN as u64) && len.is_multiple_of(DIRECT_ALIGN)
}

/// A zeroed heap buffer aligned for O_DIRECT.
pub struct AlignedBuf {
    ptr: *mut u8,
    len: usize,
    layout: Layout,
}

// SAFETY: AlignedBuf owns its allocation exclusively.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared references only give out shared slices.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    pub fn zeroed(len: usize) -> Self {
        let layout =
            Layout::from_size_align(len.max(DIRECT_ALIGN), DIRECT_ALIGN).expect("aligned layout");
        // SAFETY: layout has non-zero size.
        let ptr = unsafe { alloc::alloc_zeroed(layout) };
        if ptr.is_null() {
            alloc::handle_alloc_error(layout);
        }
        Self { ptr, len, layout }
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: ptr is valid for len bytes (len <= layout.size()).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: ptr is valid for len bytes and uniquely borrowed.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated with this layout in `zeroed`.
        unsafe { alloc::dealloc(self.ptr, self.layout) }
    }
}

/// Byte ranges held by in-flight O_DIRECT writes. A write holds the aligned span it
/// touches: a read-modify-write of a partial block then cannot interleave with another
/// write of the same block (which it would otherwise overwrite with stale bytes).
/// Non-overlapping writes proceed in parallel; reads take no lock.
#[derive(Default)]
pub struct RangeLock {
    held: Mutex<Vec<(u64, u64)>>,
    released: Notify,
}

pub struct RangeGuard {
    lock: Arc<RangeLock>,
    range: (u64, u64),
}

impl RangeLock {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Waits until no held range overlaps `start..end`, then holds it.
    pub async fn lock(self: &Arc<Self>, start: u64, end: u64) -> RangeGuard {
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            // Registered before the check, so a release between check and await wakes us.
            released.as_mut().enable();
            {
                let mut held = self.held.lock();
                if !held.iter().any(|&(s, e)| s < end && start < e) {
                    held.push((start, end));
                    return RangeGuard {
                        lock: self.clone(),
                        range: (start, end),
                    };
                }
            }
            released.await;
        }
    }
}

impl Drop for RangeGuard {
    fn drop(&mut self) {
        let mut held = self.lock.held.lock();
        if let Some(i) = held.iter().position(|r| *r == self.range) {
            held.swap_remove(i);
        }
        drop(held);
        self.lock.released.notify_waiters();
    }
}
