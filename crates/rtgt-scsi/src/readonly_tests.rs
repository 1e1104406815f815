//! Write protection (SBC-4 4.13) across every kind of protected disk LU and every
//! command that changes the medium: each must end in DATA PROTECT / WRITE PROTECTED and
//! leave the store untouched, whether the LU is thick or thin, and whether the
//! protection comes from `readonly=1`, a store opened read-only (O_RDONLY) or SWP.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use rtgt_backstore::{BackingStore, Capabilities, IoFuture};

use crate::sense::key;
use crate::target_tests::{disk_cfg, exec, sense_of};
use crate::{status, ScsiTarget};

const BLOCKS: usize = 256;

/// A memory store that counts every request that would change it.
struct Guarded {
    data: Mutex<Vec<u8>>,
    changes: AtomicUsize,
    read_only: bool,
}

impl Guarded {
    fn changed(&self) {
        self.changes.fetch_add(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl BackingStore for Guarded {
    fn kind(&self) -> &'static str {
        "guarded"
    }
    fn size(&self) -> u64 {
        (BLOCKS * 512) as u64
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            read_only: self.read_only,
            unmap: true,
            unmap_zeroes: true,
            ..Capabilities::default()
        }
    }
    fn read_at(&self, mut buf: Vec<u8>, offset: u64) -> IoFuture<'_, Vec<u8>> {
        let o = offset as usize;
        let n = buf.len();
        buf.copy_from_slice(&self.data.lock()[o..o + n]);
        IoFuture::done(Ok(buf))
    }
    fn write_at(&self, buf: Vec<u8>, _offset: u64) -> IoFuture<'_, Vec<u8>> {
        self.changed();
        IoFuture::done(Ok(buf))
    }
    async fn flush(&self) -> io::Result<()> {
        Ok(())
    }
    async fn unmap(&self, _offset: u64, _len: u64) -> io::Result<()> {
        self.changed();
        Ok(())
    }
    async fn write_zeroes(&self, _offset: u64, _len: u64) -> io::Result<()> {
        self.changed();
        Ok(())
    }
    async fn write_same(&self, _block: Vec<u8>, _offset: u64, _len: u64) -> io::Result<()> {
        self.changed();
        Ok(())
    }
}

#[derive(Clone, Copy, Debug)]
enum Protection {
    /// `readonly=1`.
    Param,
    /// The store was opened read-only (and the LU says readonly=1, as rtgtd makes it).
    Store,
    /// SWP set through MODE SELECT in the control mode page.
    Swp,
}

async fn protected_lu(p: Protection, thin: bool) -> (ScsiTarget, Arc<Guarded>) {
    let store = Arc::new(Guarded {
        data: Mutex::new(vec![0x5a; BLOCKS * 512]),
        changes: AtomicUsize::new(0),
        read_only: matches!(p, Protection::Store),
    });
    let mut params = vec![];
    if thin {
        params.push(("thin_provisioning", "1"));
    }
    if !matches!(p, Protection::Swp) {
        params.push(("readonly", "1"));
    }
    let t = ScsiTarget::new("iqn.2026-01.test:ro");
    t.add_lu(1, disk_cfg(store.clone(), &params)).unwrap();
    if matches!(p, Protection::Swp) {
        // MODE SENSE (6) of the control page, SWP set, MODE SELECT (6) back.
        let ms = exec(&t, 1, 1, &[0x1a, 0x08, 0x0a, 0, 255, 0], &[]).await;
        assert_eq!(ms.status, status::GOOD);
        let mut list = vec![0, 0, 0, 0];
        list.extend_from_slice(&ms.data_in[4..16]);
        list[4 + 4] |= 0x08;
        let r = exec(&t, 1, 1, &[0x15, 0x10, 0, 0, 16, 0], &list).await;
        assert_eq!(r.status, status::GOOD);
    }
    // Clear the power-on unit attention so every answer below is the command's own.
    exec(&t, 1, 1, &[0, 0, 0, 0, 0, 0], &[]).await;
    (t, store)
}

fn cdb10(op: u8, flags: u8, lba: u32, blocks: u16) -> Vec<u8> {
    let mut c = vec![op, flags];
    c.extend_from_slice(&lba.to_be_bytes());
    c.push(0);
    c.extend_from_slice(&blocks.to_be_bytes());
    c.push(0);
    c
}

fn cdb12(op: u8, lba: u32, blocks: u32) -> Vec<u8> {
    let mut c = vec![op, 0];
    c.extend_from_slice(&lba.to_be_bytes());
    c.extend_from_slice(&blocks.to_be_bytes());
    c.extend_from_slice(&[0, 0]);
    c
}

fn cdb16(op: u8, flags: u8, lba: u64, blocks: u32) -> Vec<u8> {
    let mut c = vec![op, flags];
    c.extend_from_slice(&lba.to_be_bytes());
    c.extend_from_slice(&blocks.to_be_bytes());
    c.extend_from_slice(&[0, 0]);
    c
}

/// Every command of a disk that changes the medium, as (name, CDB, Data-Out), each
/// well formed for LBA 1, one block; `thin` adds those only a thin LU implements.
fn medium_writes(thin: bool) -> Vec<(&'static str, Vec<u8>, Vec<u8>)> {
    let block = vec![0xa5u8; 512];
    let mut v = vec![
        ("WRITE (6)", vec![0x0a, 0, 0, 1, 1, 0], block.clone()),
        ("WRITE (10)", cdb10(0x2a, 0, 1, 1), block.clone()),
        ("WRITE (10) FUA", cdb10(0x2a, 0x08, 1, 1), block.clone()),
        ("WRITE (12)", cdb12(0xaa, 1, 1), block.clone()),
        ("WRITE (16)", cdb16(0x8a, 0, 1, 1), block.clone()),
        (
            "WRITE AND VERIFY (10)",
            cdb10(0x2e, 0x02, 1, 1),
            block.clone(),
        ),
        ("WRITE AND VERIFY (12)", cdb12(0xae, 1, 1), block.clone()),
        ("WRITE AND VERIFY (16)", cdb16(0x8e, 0, 1, 1), block.clone()),
        ("ORWRITE (16)", cdb16(0x8b, 0, 1, 1), block.clone()),
        ("WRITE SAME (10)", cdb10(0x41, 0, 1, 1), block.clone()),
        ("WRITE SAME (16)", cdb16(0x93, 0, 1, 1), block.clone()),
        // Fully provisioned LUs do not implement UNMAP / NDOB, but a protected medium
        // says so first (ReadOnly.ReadOnlySBC on a thick LU).
        (
            "WRITE SAME (10) UNMAP",
            cdb10(0x41, 0x08, 1, 1),
            block.clone(),
        ),
        (
            "WRITE SAME (16) UNMAP",
            cdb16(0x93, 0x08, 1, 1),
            block.clone(),
        ),
        ("WRITE SAME (16) NDOB", cdb16(0x93, 0x01, 1, 1), vec![]),
        (
            "WRITE SAME (16) UNMAP NDOB",
            cdb16(0x93, 0x09, 1, 1),
            vec![],
        ),
        (
            "WRITE SAME (10) to the end",
            cdb10(0x41, 0, 1, 0),
            block.clone(),
        ),
        (
            "SANITIZE OVERWRITE",
            vec![0x48, 0x01, 0, 0, 0, 0, 0, 0, 8, 0],
            vec![1, 0, 0, 4, 0xde, 0xad, 0xbe, 0xef],
        ),
        (
            "SANITIZE CRYPTOGRAPHIC ERASE",
            vec![0x48, 0x03, 0, 0, 0, 0, 0, 0, 0, 0],
            vec![],
        ),
        (
            "SANITIZE EXIT FAILURE MODE",
            vec![0x48, 0x1f, 0, 0, 0, 0, 0, 0, 0, 0],
            vec![],
        ),
    ];
    // COMPARE AND WRITE: the compare block matches the medium, so only protection
    // can stop the write.
    let mut caw = vec![0x89, 0];
    caw.extend_from_slice(&1u64.to_be_bytes());
    caw.extend_from_slice(&[0, 0, 0, 1, 0, 0]);
    let mut caw_data = vec![0x5a; 512];
    caw_data.extend_from_slice(&block);
    v.push(("COMPARE AND WRITE", caw, caw_data));
    let mut atomic = vec![0x9c, 0];
    atomic.extend_from_slice(&1u64.to_be_bytes());
    atomic.extend_from_slice(&[0, 0, 0, 1, 0, 0]);
    v.push(("WRITE ATOMIC (16)", atomic, block.clone()));
    if thin {
        let mut list = vec![0, 22, 0, 16, 0, 0, 0, 0];
        list.extend_from_slice(&1u64.to_be_bytes());
        list.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0]);
        v.push(("UNMAP", vec![0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0], list));
        v.push((
            "SANITIZE BLOCK ERASE",
            vec![0x48, 0x02, 0, 0, 0, 0, 0, 0, 0, 0],
            vec![],
        ));
    }
    v
}

#[tokio::test]
async fn every_medium_write_on_every_protected_lu_is_write_protected() {
    for p in [Protection::Param, Protection::Store, Protection::Swp] {
        for thin in [false, true] {
            let (t, store) = protected_lu(p, thin).await;
            for (name, cdb, data) in medium_writes(thin) {
                let r = exec(&t, 1, 1, &cdb, &data).await;
                assert_eq!(
                    r.status,
                    status::CHECK_CONDITION,
                    "{name} on {p:?} thin={thin}: {r:?}"
                );
                assert_eq!(
                    sense_of(&r),
                    (key::DATA_PROTECT, 0x27, 0x00),
                    "{name} on {p:?} thin={thin}"
                );
            }
            assert_eq!(store.changes.load(Ordering::SeqCst), 0, "{p:?} thin={thin}");
            // Reads still work and see the medium as it was.
            let r = exec(&t, 1, 1, &cdb10(0x28, 0, 1, 1), &[]).await;
            assert_eq!(r.status, status::GOOD);
            assert_eq!(r.data_in, vec![0x5a; 512]);
        }
    }
}

/// The range is still checked before protection: an LBA past the end is that error on
/// a protected LU too (libiscsi's *.BeyondEol on a read-only LUN).
#[tokio::test]
async fn out_of_range_writes_on_a_protected_lu_are_out_of_range() {
    for thin in [false, true] {
        let (t, _) = protected_lu(Protection::Param, thin).await;
        let end = BLOCKS as u32;
        for cdb in [
            cdb10(0x2a, 0, end, 1),
            cdb10(0x41, 0, end, 1),
            cdb16(0x93, 0, end.into(), 1),
        ] {
            let r = exec(&t, 1, 1, &cdb, &[0; 512]).await;
            assert_eq!(
                sense_of(&r),
                (key::ILLEGAL_REQUEST, 0x21, 0x00),
                "{cdb:02x?}"
            );
        }
    }
}

/// Without protection, a thick LU still refuses the deallocation it does not implement.
#[tokio::test]
async fn write_same_unmap_on_a_writable_thick_lu_is_an_invalid_field() {
    let store = Arc::new(Guarded {
        data: Mutex::new(vec![0; BLOCKS * 512]),
        changes: AtomicUsize::new(0),
        read_only: false,
    });
    let t = ScsiTarget::new("iqn.2026-01.test:rw");
    t.add_lu(1, disk_cfg(store.clone(), &[])).unwrap();
    exec(&t, 1, 1, &[0, 0, 0, 0, 0, 0], &[]).await;
    let r = exec(&t, 1, 1, &cdb16(0x93, 0x08, 1, 1), &[0; 512]).await;
    assert_eq!(sense_of(&r), (key::ILLEGAL_REQUEST, 0x24, 0x00));
    assert_eq!(store.changes.load(Ordering::SeqCst), 0);
}
