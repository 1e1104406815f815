//! `null`: reads return zeroes, writes are discarded. For benchmarking the rest of the stack.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;

use crate::{BackingStore, Capabilities, IoFuture};

/// tgt's null store reports 16 GiB when no size is given.
pub const DEFAULT_SIZE: u64 = 16 << 30;

pub struct NullStore {
    size: AtomicU64,
}

impl NullStore {
    pub fn new(size: u64) -> Self {
        Self {
            size: AtomicU64::new(size),
        }
    }
}

#[async_trait]
impl BackingStore for NullStore {
    fn kind(&self) -> &'static str {
        "null"
    }
    fn size(&self) -> u64 {
        self.size.load(Ordering::Relaxed)
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            unmap: true,
            // Everything reads as zeroes, unmapped or not.
            unmap_zeroes: true,
            ..Capabilities::default()
        }
    }
    fn read_at(&self, mut buf: Vec<u8>, _offset: u64) -> IoFuture<'_, Vec<u8>> {
        buf.fill(0);
        IoFuture::done(Ok(buf))
    }
    fn write_at(&self, buf: Vec<u8>, _offset: u64) -> IoFuture<'_, Vec<u8>> {
        IoFuture::done(Ok(buf))
    }
    async fn flush(&self) -> io::Result<()> {
        Ok(())
    }
    async fn unmap(&self, _offset: u64, _len: u64) -> io::Result<()> {
        Ok(())
    }
    async fn write_zeroes(&self, _offset: u64, _len: u64) -> io::Result<()> {
        Ok(())
    }
    fn resize(&self, size: u64) -> io::Result<()> {
        self.size.store(size, Ordering::Relaxed);
        Ok(())
    }
}
