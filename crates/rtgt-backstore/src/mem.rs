//! `mem`: a RAM disk for tests and benchmarks that must not touch a disk. Memory is
//! taken per 1 MiB chunk on first write, so a large, mostly unwritten LUN costs little;
//! unmapping a whole chunk gives it back. Contents are lost when the LUN goes.

use std::io;

use async_trait::async_trait;
use parking_lot::RwLock;

use crate::{BackingStore, Capabilities, Counters, IoFuture, IoStats};

const CHUNK: u64 = 1 << 20;

pub struct MemStore {
    size: u64,
    /// One lock per chunk, so writes to different chunks never wait for each other.
    chunks: Vec<RwLock<Option<Box<[u8]>>>>,
    counters: Counters,
}

impl MemStore {
    pub fn new(size: u64) -> Self {
        let n = size.div_ceil(CHUNK) as usize;
        Self {
            size,
            chunks: (0..n).map(|_| RwLock::new(None)).collect(),
            counters: Counters::default(),
        }
    }

    /// Calls `f(chunk index, offset in chunk, range in the caller's buffer)` for each
    /// chunk `offset..offset + len` touches.
    fn each(&self, offset: u64, len: u64, mut f: impl FnMut(usize, usize, std::ops::Range<usize>)) {
        let end = (offset + len).min(self.size);
        let mut off = offset;
        while off < end {
            let idx = (off / CHUNK) as usize;
            let within = (off % CHUNK) as usize;
            let n = (CHUNK - off % CHUNK).min(end - off) as usize;
            let at = (off - offset) as usize;
            f(idx, within, at..at + n);
            off += n as u64;
        }
    }

    /// Bytes RAM holds for the LUN now.
    pub fn resident(&self) -> u64 {
        self.chunks.iter().filter(|c| c.read().is_some()).count() as u64 * CHUNK
    }
}

#[async_trait]
impl BackingStore for MemStore {
    fn kind(&self) -> &'static str {
        "mem"
    }
    fn size(&self) -> u64 {
        self.size
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            unmap: true,
            // Unmapped chunks are freed and read back as zeroes.
            unmap_zeroes: true,
            ..Capabilities::default()
        }
    }
    fn stats(&self) -> IoStats {
        self.counters.snapshot()
    }
    fn read_at(&self, mut buf: Vec<u8>, offset: u64) -> IoFuture<'_, Vec<u8>> {
        buf.fill(0);
        self.each(offset, buf.len() as u64, |i, within, r| {
            if let Some(c) = self.chunks[i].read().as_ref() {
                let n = r.len();
                buf[r].copy_from_slice(&c[within..within + n]);
            }
        });
        self.counters.read();
        IoFuture::done(Ok(buf))
    }
    fn write_at(&self, buf: Vec<u8>, offset: u64) -> IoFuture<'_, Vec<u8>> {
        if offset + buf.len() as u64 > self.size {
            return IoFuture::done(Err(io::Error::other("write past the end of the mem store")));
        }
        self.each(offset, buf.len() as u64, |i, within, r| {
            let mut c = self.chunks[i].write();
            let c = c.get_or_insert_with(|| vec![0u8; CHUNK as usize].into_boxed_slice());
            c[within..within + r.len()].copy_from_slice(&buf[r]);
        });
        self.counters.write(false);
        IoFuture::done(Ok(buf))
    }
    /// RAM is as durable as this store gets: a flush has nothing to do.
    async fn flush(&self) -> io::Result<()> {
        Ok(())
    }
    async fn unmap(&self, offset: u64, len: u64) -> io::Result<()> {
        self.each(offset, len, |i, within, r| {
            let mut c = self.chunks[i].write();
            if r.len() as u64 == CHUNK {
                *c = None;
            } else if let Some(c) = c.as_mut() {
                c[within..within + r.len()].fill(0);
            }
        });
        Ok(())
    }
    async fn write_zeroes(&self, offset: u64, len: u64) -> io::Result<()> {
        self.unmap(offset, len).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sparse_round_trip_across_chunks() {
        let s = MemStore::new(3 * CHUNK + 4096);
        assert_eq!(s.size(), 3 * CHUNK + 4096);
        assert_eq!(s.resident(), 0);
        let data: Vec<u8> = (0..(CHUNK as usize + 8192))
            .map(|i| (i % 253) as u8)
            .collect();
        s.write_at(data.clone(), CHUNK - 4096).await.unwrap();
        assert_eq!(s.resident(), 3 * CHUNK);
        assert_eq!(
            s.read_at(vec![9; data.len()], CHUNK - 4096).await.unwrap(),
            data
        );
        assert!(s
            .read_at(vec![9; 4096], 0)
            .await
            .unwrap()
            .iter()
            .all(|&b| b == 0));
        s.unmap(CHUNK, CHUNK).await.unwrap();
        assert_eq!(s.resident(), 2 * CHUNK);
        let got = s.read_at(vec![9; 8192], CHUNK - 4096).await.unwrap();
        assert_eq!(&got[..4096], &data[..4096]);
        assert!(got[4096..].iter().all(|&b| b == 0));
        assert!(s.write_at(vec![0; 8192], 3 * CHUNK).await.is_err());
    }
}
