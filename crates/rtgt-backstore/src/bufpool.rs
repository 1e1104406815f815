//! Reusable buffers for large transfers.
//!
//! A 1 MiB READ needs a 1 MiB buffer, which lives until its Data-In has been written to
//! the socket. Left to the C allocator, buffers that size come and go as fresh memory:
//! glibc serves them by mmap or from an arena it trims back to the kernel when they are
//! freed, so every command paid 256 page faults plus the kernel zeroing each page, and
//! whether it did depended on what the process had allocated before (perf on a daemon
//! that had served a write workload first: page faults and clear_page were over a fifth
//! of its CPU, and 1 MiB reads ran at 40% of the rate of a fresh daemon). Buffers above
//! 32 KiB are therefore kept here by power-of-two class (64 KiB to 16 MiB) and handed out
//! again.
//!
//! Smaller ones (512 bytes to 32 KiB: a 4 KiB read) are cheap to allocate, but a fresh
//! one must be zeroed and the store then writes every byte again; each thread keeps a
//! few of those too. A connection's reads are allocated and handed back on its own
//! reactor thread, so that cache needs no lock.
//!
//! [`take`] returns a buffer whose bytes are unspecified (they are left over from an
//! earlier transfer): it is for callers that overwrite every byte, as
//! [`crate::BackingStore::read_at`] does.

use parking_lot::Mutex;

/// The smallest class of the shared pool; lengths above `MIN / 2` use it.
pub const MIN: usize = 64 << 10;
/// Largest buffer pooled; bigger ones are rare (MaxBurstLength-sized commands) and are
/// left to the allocator.
pub const MAX: usize = 16 << 20;
const CLASSES: usize = (MAX / MIN).trailing_zeros() as usize + 1;
/// Bytes kept idle per class: bounds the pool at CLASSES x this in the worst case,
/// 8 MiB per class in use in practice (one workload uses one or two classes).
const KEEP_BYTES: usize = 8 << 20;
/// ...but at least this many buffers of a class, so a queue of large commands recycles.
const KEEP_MIN: usize = 8;

static POOL: [Mutex<Vec<Vec<u8>>>; CLASSES] = [const { Mutex::new(Vec::new()) }; CLASSES];

/// Smallest buffer kept by the per-thread cache.
const SMALL_MIN: usize = 512;
const SMALL_CLASSES: usize = (MIN / SMALL_MIN).trailing_zeros() as usize;
/// Bytes kept idle per small class and thread, at most [`SMALL_KEEP_MAX`] buffers.
const SMALL_KEEP_BYTES: usize = 256 << 10;
const SMALL_KEEP_MAX: usize = 64;

thread_local! {
    static SMALL: std::cell::RefCell<[Vec<Vec<u8>>; SMALL_CLASSES]> =
        const { std::cell::RefCell::new([const { Vec::new() }; SMALL_CLASSES]) };
}

fn small_class_for(len: usize) -> Option<usize> {
    if !(SMALL_MIN..=MIN / 2).contains(&len) {
        return None;
    }
    Some((len.next_power_of_two() / SMALL_MIN).trailing_zeros() as usize)
}

fn small_class_size(class: usize) -> usize {
    SMALL_MIN << class
}

fn small_keep(class: usize) -> usize {
    (SMALL_KEEP_BYTES / small_class_size(class)).min(SMALL_KEEP_MAX)
}

/// Sets the length of a pooled buffer (fully initialised up to its capacity, see
/// [`give`]): only moves the length, no bytes are written.
fn fit(mut v: Vec<u8>, len: usize) -> Vec<u8> {
    if v.len() >= len {
        v.truncate(len);
    } else {
        v.resize(len, 0);
    }
    v
}

/// The class whose buffers hold `len` bytes, if `len` is pooled.
fn class_for(len: usize) -> Option<usize> {
    // Above the largest small class (MIN / 2), up to MAX: 40 KiB goes to the 64 KiB class.
    if !(MIN / 2 + 1..=MAX).contains(&len) {
        return None;
    }
    Some((len.next_power_of_two() / MIN).trailing_zeros() as usize)
}

fn class_size(class: usize) -> usize {
    MIN << class
}

fn keep(class: usize) -> usize {
    (KEEP_BYTES / class_size(class)).max(KEEP_MIN)
}

/// Where a buffer of a given size is kept: the calling thread's cache or the shared pool,
/// and its class there.
#[derive(Clone, Copy)]
enum Class {
    Small(usize),
    Shared(usize),
}

impl Class {
    fn of(len: usize) -> Option<Class> {
        small_class_for(len)
            .map(Class::Small)
            .or_else(|| class_for(len).map(Class::Shared))
    }

    fn size(self) -> usize {
        match self {
            Class::Small(c) => small_class_size(c),
            Class::Shared(c) => class_size(c),
        }
    }

    fn pop(self) -> Option<Vec<u8>> {
        match self {
            // try_with: a thread being torn down has no cache any more.
            Class::Small(c) => SMALL.try_with(|s| s.borrow_mut()[c].pop()).ok().flatten(),
            Class::Shared(c) => POOL[c].lock().pop(),
        }
    }

    fn push(self, v: Vec<u8>) {
        match self {
            Class::Small(c) => {
                let _ = SMALL.try_with(|s| {
                    let mut s = s.borrow_mut();
                    if s[c].len() < small_keep(c) {
                        s[c].push(v);
                    }
                });
            }
            Class::Shared(c) => {
                let mut pool = POOL[c].lock();
                if pool.len() < keep(c) {
                    pool.push(v);
                }
            }
        }
    }
}

/// A buffer of exactly `len` bytes whose contents are unspecified: the caller must
/// overwrite all of them before anyone reads it.
pub fn take(len: usize) -> Vec<u8> {
    match Class::of(len) {
        None => vec![0; len],
        Some(c) => fit(c.pop().unwrap_or_else(|| vec![0; c.size()]), len),
    }
}

/// A buffer of `len` zero bytes.
#[cfg(test)]
fn take_zeroed(len: usize) -> Vec<u8> {
    let mut v = take(len);
    v.fill(0);
    v
}

/// Hands a buffer back for reuse. Buffers that did not come from [`take`] are welcome
/// when their capacity is exactly a class size; anything else is simply freed.
pub fn give(mut v: Vec<u8>) {
    let Some(class) = Class::of(v.capacity()).filter(|c| c.size() == v.capacity()) else {
        return;
    };
    // Keep the length at the full class size so the next `take` never has to write, but
    // without unsafe code: only bytes never initialised get zeroed, once per buffer.
    if v.len() < v.capacity() {
        v.resize(v.capacity(), 0);
    }
    class.push(v);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_cover_min_to_max() {
        assert_eq!(class_for(MIN / 2), None);
        assert_eq!(small_class_for(MIN / 2), Some(SMALL_CLASSES - 1));
        assert_eq!(small_class_for(MIN / 2 + 1), None);
        assert_eq!(class_for(MIN / 2 + 1), Some(0));
        assert_eq!(class_for(MIN - 1), Some(0));
        assert_eq!(class_for(MIN), Some(0));
        assert_eq!(class_for(MIN + 1), Some(1));
        assert_eq!(class_for(1 << 20), Some(4));
        assert_eq!(class_for(MAX), Some(CLASSES - 1));
        assert_eq!(class_for(MAX + 1), None);
    }

    #[test]
    fn buffers_are_reused_with_the_asked_length() {
        // A size no other test in this binary uses, so the class is ours alone.
        let len = (3 << 20) + 512;
        let mut a = take(len);
        assert_eq!(a.len(), len);
        a.fill(0xAB);
        let ptr = a.as_ptr();
        give(a);
        let b = take(len - 4096);
        assert_eq!(b.len(), len - 4096);
        assert_eq!(b.as_ptr(), ptr, "the pooled buffer came back");
        // take() leaves old bytes; take_zeroed() must not.
        assert_eq!(b[0], 0xAB);
        give(b);
        let z = take_zeroed(len);
        assert!(z.iter().all(|&x| x == 0));
        give(z);
    }

    /// Every length, at and around each class boundary, gets a buffer of that length,
    /// and handing it back and taking it again works (a 40 KiB read once indexed past
    /// the small classes and brought a reactor down).
    #[test]
    fn every_length_gets_its_buffer() {
        let mut lens = vec![0, 1, 100, MAX, MAX + 1, 40 << 10];
        let mut b = SMALL_MIN;
        while b <= MAX {
            lens.extend([b - 1, b, b + 1]);
            b *= 2;
        }
        // Classes the other tests here count on are left alone (tests run in parallel).
        let theirs = |len: usize| matches!(class_for(len), Some(1 | 6 | 7));
        for len in lens.into_iter().filter(|&l| !theirs(l)) {
            let v = take(len);
            assert_eq!(v.len(), len);
            give(v);
            assert_eq!(take(len).len(), len);
            assert!(take_zeroed(len).iter().all(|&x| x == 0), "len {len}");
        }
    }

    #[test]
    fn odd_buffers_are_not_pooled() {
        // Class 1 (128 KiB) is used by no other test here.
        give(Vec::with_capacity(MIN + 7)); // capacity not a class size
        give(vec![1; 100]); // below the smallest class
        assert_eq!(POOL[1].lock().len(), 0);
        assert_eq!(take(100).len(), 100);
        give(take(MIN + 7)); // from take: its capacity is the class size
        assert_eq!(POOL[1].lock().len(), 1);
    }

    #[test]
    fn small_buffers_are_kept_per_thread() {
        let mut a = take(4000);
        assert_eq!((a.len(), a.capacity()), (4000, 4096));
        a.fill(0x5A);
        let ptr = a.as_ptr();
        give(a);
        let b = take(4096);
        assert_eq!(b.as_ptr(), ptr);
        assert_eq!(b[0], 0x5A, "take() leaves old bytes");
        give(b);
        assert!(take_zeroed(4096).iter().all(|&x| x == 0));
        // Another thread has its own cache: it gets a fresh (zeroed) buffer.
        let other = std::thread::spawn(|| take(4096)[0]).join().unwrap();
        assert_eq!(other, 0);
        // Bounded: 64 buffers of 4 KiB (256 KiB) at most.
        let many: Vec<_> = (0..100).map(|_| take(4096)).collect();
        for v in many {
            give(v);
        }
        let class = small_class_for(4096).unwrap();
        assert_eq!(SMALL.with(|s| s.borrow()[class].len()), small_keep(class));
        assert_eq!(small_keep(class), 64);
    }

    #[test]
    fn the_pool_is_bounded() {
        let len = 8 << 20; // class of 8 MiB: keeps KEEP_MIN
        let bufs: Vec<_> = (0..KEEP_MIN + 5).map(|_| take(len)).collect();
        for b in bufs {
            give(b);
        }
        let class = class_for(len).unwrap();
        assert_eq!(POOL[class].lock().len(), keep(class));
        POOL[class].lock().clear();
    }
}
