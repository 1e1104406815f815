//! The registered buffer pool of an iSER connection: command data goes through it on
//! its way to and from the initiator's buffers, so no memory is registered per command.
//!
//! `--iser pool_mb=N` MiB (default [`DEFAULT_MB`]), registered once at accept in chunks
//! of [`CHUNK`] bytes. Each RDMA Read or Write work request takes one chunk: an RDMA
//! Write's data is copied in before it is posted, an RDMA Read's copied out when it
//! completes, and the chunk is free again with the work request's completion. A command
//! larger than the pool is not refused: its work requests stream through the chunks
//! there are, in order, each waiting for a free one (the connection's send queue waits
//! behind it, so a SCSI Response never overtakes its data). What one command may ask
//! for at all is bounded before it gets here: an Expected Data Transfer Length past
//! MAX_EDTL (64 MiB) is answered with a Reject (RFC 7143 §11.17.1, Invalid PDU Field).
//!
//! `pool_mb=0` registers each command's buffer for its RDMA operation instead (one
//! memory registration and deregistration per command, no copy).

use anyhow::Result;

use super::verbs::*;

/// The bytes one chunk (one RDMA work request) moves. 1 MiB: measured in the RDMA
/// guest, 256 KiB chunks (four times the work requests) lost to a registration per
/// command on 4 MiB commands, 1 MiB ones did not (README, *iSER*).
pub(super) const CHUNK: usize = 1 << 20;
/// The default size of a connection's pool, MiB: sixteen 1 MiB work requests in flight
/// at once, four whole 4 MiB commands (Linux's iSER initiator sends up to its
/// max_sectors); larger ones stream through it.
pub const DEFAULT_MB: usize = 16;

/// `len` zeroed bytes registered for local writes (the receive slots, the pool): the
/// memory and its registration, which the caller deregisters before dropping the memory.
///
/// # Safety
/// `pd` is a live protection domain.
pub(super) unsafe fn registered(
    pd: *mut ibv_pd,
    len: usize,
    what: &str,
) -> Result<(Vec<u8>, *mut ibv_mr)> {
    let mut mem = vec![0u8; len];
    let mr = ibv_reg_mr(
        pd,
        mem.as_mut_ptr().cast(),
        mem.len(),
        ibv_access_flags::IBV_ACCESS_LOCAL_WRITE.0 as i32,
    );
    if mr.is_null() {
        return Err(last_error(what));
    }
    Ok((mem, mr))
}

/// Registered memory in chunks, and which are free.
pub(super) struct Pool {
    mem: Vec<u8>,
    mr: *mut ibv_mr,
    free: Vec<usize>,
    /// What each chunk in use holds: the byte range of its RDMA operation.
    held: Vec<(usize, usize)>,
}

impl Pool {
    /// `bytes` of registered memory (at least one chunk).
    ///
    /// # Safety
    /// `pd` is a live protection domain.
    pub(super) unsafe fn new(pd: *mut ibv_pd, bytes: usize) -> Result<Pool> {
        let n = bytes.div_ceil(CHUNK).max(1);
        let (mem, mr) = registered(pd, n * CHUNK, "ibv_reg_mr (the iSER buffer pool)")?;
        Ok(Pool {
            mem,
            mr,
            free: (0..n).rev().collect(),
            held: vec![(0, 0); n],
        })
    }

    /// A free chunk, to hold bytes `off..off + len` of an operation.
    pub(super) fn take(&mut self, off: usize, len: usize) -> Option<usize> {
        let c = self.free.pop()?;
        self.held[c] = (off, len);
        Some(c)
    }

    /// Every chunk is taken.
    pub(super) fn full(&self) -> bool {
        self.free.is_empty()
    }

    /// Chunk `c` is free again; what it held: (offset, length).
    pub(super) fn give(&mut self, c: usize) -> (usize, usize) {
        self.free.push(c);
        self.held[c]
    }

    pub(super) fn chunk(&self, c: usize) -> &[u8] {
        &self.mem[c * CHUNK..(c + 1) * CHUNK]
    }

    pub(super) fn chunk_mut(&mut self, c: usize) -> &mut [u8] {
        &mut self.mem[c * CHUNK..(c + 1) * CHUNK]
    }

    pub(super) fn sge(&mut self, c: usize, len: usize) -> ibv_sge {
        ibv_sge {
            addr: self.chunk_mut(c).as_mut_ptr() as u64,
            length: len as u32,
            // SAFETY: mr is live while self is.
            lkey: unsafe { (*self.mr).lkey },
        }
    }

    /// Deregisters the memory (once no work request can touch it: after the queue
    /// pair is destroyed).
    pub(super) fn release(&mut self) {
        if !self.mr.is_null() {
            // SAFETY: registered by `new`, deregistered once.
            unsafe { ibv_dereg_mr(self.mr) };
            self.mr = std::ptr::null_mut();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_taken_and_given_back() {
        let mut p = Pool {
            mem: vec![0; 2 * CHUNK],
            mr: std::ptr::null_mut(),
            free: vec![1, 0],
            held: vec![(0, 0); 2],
        };
        let a = p.take(0, CHUNK).unwrap();
        let b = p.take(CHUNK, 100).unwrap();
        assert_ne!(a, b);
        assert!(p.take(0, 1).is_none(), "a third chunk of a two-chunk pool");
        assert_eq!(p.give(b), (CHUNK, 100));
        assert_eq!(p.take(7, 8), Some(b));
        assert_eq!(p.chunk(a).len(), CHUNK);
    }
}
