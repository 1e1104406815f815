//! `null`: reads return zeroes, writes are discarded. For benchmarking the rest of the stack.

use std::io;

use async_trait::async_trait;

use crate::{BackingStore, Capabilities};

/// tgt's null store reports 16 GiB when no size is given.
pub const DEFAULT_SIZE: u64 = 16 << 30;

pub struct NullStore {
    size: u64,
}

impl NullStore {
    pub fn new(size: u64) -> Self {
        Self { size }
    }
}

#[async_trait]
impl BackingStore for NullStore {
    fn kind(&self) -> &'static str {
        "null"
    }
    fn size(&self) -> u64 {
        self.size
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            unmap: true,
            ..Capabilities::default()
        }
    }
    async fn read_at(&self, mut buf: Vec<u8>, _offset: u64) -> io::Result<Vec<u8>> {
        buf.fill(0);
        Ok(buf)
    }
    async fn write_at(&self, buf: Vec<u8>, _offset: u64) -> io::Result<Vec<u8>> {
        Ok(buf)
    }
    async fn flush(&self) -> io::Result<()> {
        Ok(())
    }
    async fn unmap(&self, _offset: u64, _len: u64) -> io::Result<()> {
        Ok(())
    }
}
