//! The write cache modes and block geometry, end to end through `ScsiTarget::execute`
//! on a store that records what it was asked to do: FUA and WCE=0 make writes durable,
//! SYNCHRONIZE CACHE flushes (its range), `nv_cache=1` skips both and says so in VPD 86h,
//! an O_DSYNC store fixes WCE at 0, and READ CAPACITY (16) reports the physical block.

use std::io;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use rtgt_backstore::{BackingStore, Capabilities, IoFuture};

use crate::sense::key;
use crate::target_tests::{disk_cfg, exec, sense_of};
use crate::{status, LuConfig, ScsiResult, ScsiTarget};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    Write,
    DurableWrite,
    Flush,
    FlushRange(u64, u64),
}

struct Recorder {
    data: Mutex<Vec<u8>>,
    calls: Mutex<Vec<Call>>,
    caps: Capabilities,
}

impl Recorder {
    fn new(caps: Capabilities) -> Arc<Self> {
        Arc::new(Self {
            data: Mutex::new(vec![0; 1 << 20]),
            calls: Mutex::new(Vec::new()),
            caps,
        })
    }
    fn take(&self) -> Vec<Call> {
        std::mem::take(&mut *self.calls.lock())
    }
}

#[async_trait]
impl BackingStore for Recorder {
    fn kind(&self) -> &'static str {
        "recorder"
    }
    fn size(&self) -> u64 {
        1 << 20
    }
    fn capabilities(&self) -> Capabilities {
        self.caps.clone()
    }
    fn read_at(&self, mut buf: Vec<u8>, offset: u64) -> IoFuture<'_, Vec<u8>> {
        IoFuture::pending(async move {
            let o = offset as usize;
            let n = buf.len();
            buf.copy_from_slice(&self.data.lock()[o..o + n]);
            Ok(buf)
        })
    }
    fn write_at(&self, buf: Vec<u8>, offset: u64) -> IoFuture<'_, Vec<u8>> {
        IoFuture::pending(async move {
            let o = offset as usize;
            self.data.lock()[o..o + buf.len()].copy_from_slice(&buf);
            self.calls.lock().push(Call::Write);
            Ok(buf)
        })
    }
    async fn write_at_durable(&self, buf: Vec<u8>, offset: u64) -> io::Result<Vec<u8>> {
        let o = offset as usize;
        self.data.lock()[o..o + buf.len()].copy_from_slice(&buf);
        self.calls.lock().push(Call::DurableWrite);
        Ok(buf)
    }
    async fn flush(&self) -> io::Result<()> {
        self.calls.lock().push(Call::Flush);
        Ok(())
    }
    async fn flush_range(&self, offset: u64, len: u64) -> io::Result<()> {
        self.calls.lock().push(Call::FlushRange(offset, len));
        Ok(())
    }
}

fn target(
    caps: Capabilities,
    block_size: u32,
    params: &[(&str, &str)],
) -> (ScsiTarget, Arc<Recorder>) {
    let t = ScsiTarget::new("iqn.2026-01.test:cache");
    let s = Recorder::new(caps);
    let cfg = LuConfig {
        block_size,
        ..disk_cfg(s.clone(), params)
    };
    t.add_lu(1, cfg).unwrap();
    (t, s)
}

fn good(r: &ScsiResult) {
    assert_eq!(r.status, status::GOOD, "sense {:02x?}", r.sense);
}

fn write10(lba: u32, fua: bool) -> Vec<u8> {
    let mut c = vec![0x2a, if fua { 0x08 } else { 0 }, 0, 0, 0, 0, 0, 0, 1, 0];
    c[2..6].copy_from_slice(&lba.to_be_bytes());
    c
}

fn sync10(lba: u32, blocks: u16) -> Vec<u8> {
    let mut c = vec![0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    c[2..6].copy_from_slice(&lba.to_be_bytes());
    c[7..9].copy_from_slice(&blocks.to_be_bytes());
    c
}

/// The current caching page's WCE bit (MODE SENSE (6), DBD).
async fn wce(t: &ScsiTarget, pc: u8) -> bool {
    let r = exec(t, 1, 1, &[0x1a, 0x08, (pc << 6) | 0x08, 0, 255, 0], &[]).await;
    good(&r);
    r.data_in[4 + 2] & 0x04 != 0
}

async fn vpd86_byte6(t: &ScsiTarget) -> u8 {
    let r = exec(t, 1, 1, &[0x12, 0x01, 0x86, 0, 255, 0], &[]).await;
    good(&r);
    assert_eq!(r.data_in[1], 0x86);
    assert_eq!(u16::from_be_bytes([r.data_in[2], r.data_in[3]]), 0x3c);
    r.data_in[6]
}

#[tokio::test]
async fn write_back_fua_is_durable_and_sync_cache_flushes_its_range() {
    let (t, s) = target(Capabilities::default(), 512, &[]);
    assert!(wce(&t, 0).await && wce(&t, 2).await);
    good(&exec(&t, 1, 1, &write10(3, false), &[1; 512]).await);
    good(&exec(&t, 1, 1, &write10(3, true), &[2; 512]).await);
    assert_eq!(s.take(), vec![Call::Write, Call::DurableWrite]);
    // SYNCHRONIZE CACHE (10): a range, then the whole medium.
    good(&exec(&t, 1, 1, &sync10(8, 16), &[]).await);
    good(&exec(&t, 1, 1, &sync10(0, 0), &[]).await);
    // SYNCHRONIZE CACHE (16) from LBA 100 to the end.
    let mut c16 = vec![0x91, 0, 0, 0, 0, 0, 0, 0, 0, 100, 0, 0, 0, 0, 0, 0];
    good(&exec(&t, 1, 1, &c16, &[]).await);
    c16[13] = 4;
    good(&exec(&t, 1, 1, &c16, &[]).await);
    assert_eq!(
        s.take(),
        vec![
            Call::FlushRange(8 * 512, 16 * 512),
            Call::Flush,
            Call::FlushRange(100 * 512, (2048 - 100) * 512),
            Call::FlushRange(100 * 512, 4 * 512),
        ]
    );
    // The device has a volatile cache: V_SUP, not NV_SUP.
    assert_eq!(vpd86_byte6(&t).await, 0x01);
    // VPD 00 lists page 86h.
    let r = exec(&t, 1, 1, &[0x12, 0x01, 0x00, 0, 255, 0], &[]).await;
    assert!(r.data_in[4..].contains(&0x86));
}

#[tokio::test]
async fn write_cache_off_makes_every_write_durable_and_toggles_live() {
    let (t, s) = target(Capabilities::default(), 512, &[("write_cache", "off")]);
    assert!(!wce(&t, 0).await, "current WCE");
    assert!(!wce(&t, 2).await, "default WCE");
    good(&exec(&t, 1, 1, &write10(0, false), &[1; 512]).await);
    assert_eq!(s.take(), vec![Call::DurableWrite]);
    // rtgtadm --op update --params write_cache=on: WCE=1, writes are cached, and the
    // nexus that knew the old value gets MODE PARAMETERS CHANGED.
    t.update_lu(1, &[("write_cache".into(), "on".into())])
        .unwrap();
    let r = exec(&t, 1, 1, &write10(0, false), &[1; 512]).await;
    assert_eq!(sense_of(&r), (key::UNIT_ATTENTION, 0x2a, 0x01));
    assert!(wce(&t, 0).await);
    good(&exec(&t, 1, 1, &write10(0, false), &[1; 512]).await);
    assert_eq!(s.take(), vec![Call::Write]);
    // MODE SELECT (6) turns it off again.
    let mut p = vec![0, 0, 0, 0, 0x08, 18];
    p.resize(4 + 20, 0);
    good(&exec(&t, 1, 1, &[0x15, 0x10, 0, 0, 24, 0], &p).await);
    assert!(!wce(&t, 0).await);
    good(&exec(&t, 1, 1, &write10(0, false), &[1; 512]).await);
    assert_eq!(s.take(), vec![Call::DurableWrite]);
    assert!(!t.lu_info()[1].write_cache);
}

#[tokio::test]
async fn nv_cache_skips_every_flush_and_says_so() {
    let (t, s) = target(Capabilities::default(), 512, &[("nv_cache", "1")]);
    good(&exec(&t, 1, 1, &write10(0, true), &[1; 512]).await);
    good(&exec(&t, 1, 1, &sync10(0, 0), &[]).await);
    good(&exec(&t, 1, 1, &sync10(4, 4), &[]).await);
    // START STOP UNIT (stop, no NO_FLUSH) flushes only a volatile cache.
    good(&exec(&t, 1, 1, &[0x1b, 0, 0, 0, 0, 0], &[]).await);
    assert_eq!(s.take(), vec![Call::Write]);
    // NV_SUP, not V_SUP (SPC-4 7.8.7).
    assert_eq!(vpd86_byte6(&t).await, 0x02);
    assert!(t.lu_info()[1].nv_cache);
    // Even with the write cache off, no flush: the cache is the stable storage.
    t.update_lu(1, &[("write_cache".into(), "off".into())])
        .unwrap();
    let _ = exec(&t, 1, 1, &[0, 0, 0, 0, 0, 0], &[]).await; // the unit attention
    good(&exec(&t, 1, 1, &write10(0, false), &[1; 512]).await);
    assert_eq!(s.take(), vec![Call::Write]);
    // nv_cache=0 live: FUA is durable again.
    t.update_lu(1, &[("nv_cache".into(), "0".into())]).unwrap();
    good(&exec(&t, 1, 1, &write10(0, true), &[1; 512]).await);
    assert_eq!(s.take(), vec![Call::DurableWrite]);
}

#[tokio::test]
async fn an_o_dsync_store_has_wce_0_fixed() {
    let caps = Capabilities {
        sync: true,
        ..Capabilities::default()
    };
    let (t, s) = target(caps, 512, &[]);
    assert!(!wce(&t, 0).await);
    // Changeable mask: WCE not changeable.
    assert!(!wce(&t, 1).await);
    // Writes are already written through: no extra RWF_DSYNC or flush.
    good(&exec(&t, 1, 1, &write10(0, true), &[1; 512]).await);
    good(&exec(&t, 1, 1, &write10(0, false), &[1; 512]).await);
    assert_eq!(s.take(), vec![Call::Write, Call::Write]);
    assert_eq!(vpd86_byte6(&t).await, 0x00);
    assert!(t
        .update_lu(1, &[("write_cache".into(), "on".into())])
        .is_err());
}

async fn lbppbe(t: &ScsiTarget) -> (u32, u8) {
    let r = exec(
        t,
        1,
        1,
        &[0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0],
        &[],
    )
    .await;
    good(&r);
    (
        u32::from_be_bytes(r.data_in[8..12].try_into().unwrap()),
        r.data_in[13] & 0x0f,
    )
}

#[tokio::test]
async fn read_capacity16_reports_the_physical_block() {
    let plain = Capabilities::default();
    let (t, _) = target(plain.clone(), 512, &[]);
    assert_eq!(lbppbe(&t).await, (512, 0));
    let (t, _) = target(plain.clone(), 4096, &[]);
    assert_eq!(lbppbe(&t).await, (4096, 0));
    let (t, _) = target(plain.clone(), 512, &[("physical_blocksize", "4096")]);
    assert_eq!(lbppbe(&t).await, (512, 3));
    assert_eq!(t.lu_info()[1].physical_block_size, 4096);
    let (t, _) = target(plain.clone(), 512, &[("lbppbe", "1")]);
    assert_eq!(lbppbe(&t).await, (512, 1));
    // An O_DIRECT store: 4 KiB physical (smaller writes are read-modify-write).
    let direct = Capabilities {
        direct: true,
        ..Capabilities::default()
    };
    let (t, _) = target(direct, 512, &[]);
    assert_eq!(lbppbe(&t).await, (512, 3));
    // A block device reports its own.
    let bdev = Capabilities {
        block_device: true,
        logical_block_size: 512,
        physical_block_size: 4096,
        ..Capabilities::default()
    };
    let (t, _) = target(bdev, 512, &[]);
    assert_eq!(lbppbe(&t).await, (512, 3));
    // Physical smaller than logical is refused when the LU is created.
    let t = ScsiTarget::new("iqn.2026-01.test:cache");
    let cfg = LuConfig {
        block_size: 4096,
        ..disk_cfg(
            Recorder::new(plain.clone()),
            &[("physical_blocksize", "512")],
        )
    };
    assert!(t.add_lu(1, cfg).is_err());
    // Block Limits: OPTIMAL TRANSFER LENGTH GRANULARITY is a physical block.
    let (t, _) = target(
        Capabilities::default(),
        512,
        &[("physical_blocksize", "65536")],
    );
    let r = exec(&t, 1, 1, &[0x12, 0x01, 0xb0, 0, 255, 0], &[]).await;
    assert_eq!(u16::from_be_bytes([r.data_in[6], r.data_in[7]]), 128);
}

#[tokio::test]
async fn a_read_only_store_refuses_writes_and_stays_read_only() {
    let caps = Capabilities {
        read_only: true,
        ..Capabilities::default()
    };
    let (t, s) = target(caps, 512, &[("readonly", "1")]);
    let r = exec(&t, 1, 1, &write10(0, false), &[1; 512]).await;
    assert_eq!(r.status, status::CHECK_CONDITION);
    // DATA PROTECT / WRITE PROTECTED (SBC-4 4.13).
    assert_eq!(sense_of(&r), (key::DATA_PROTECT, 0x27, 0x00));
    assert!(s.take().is_empty());
    let e = t
        .update_lu(1, &[("readonly".into(), "0".into())])
        .unwrap_err();
    assert!(e.to_string().contains("O_RDONLY"), "{e}");
    assert!(t.lu_info()[1].readonly);
}

/// tgtadm's `--op update --params lbppbe=3` (or physical_blocksize=) after `--op new`:
/// READ CAPACITY (16) reports the new exponent at once, and every I_T nexus but none
/// twice hears CAPACITY DATA HAS CHANGED (SBC-4 5.20.2: its parameter data changed);
/// an update that leaves the size as it was, or a bad one, raises nothing.
#[tokio::test]
async fn the_physical_block_changes_live_with_a_unit_attention() {
    let tur = [0u8, 0, 0, 0, 0, 0];
    let (t, _) = target(Capabilities::default(), 512, &[]);
    // Two nexuses, their power-on unit attentions consumed.
    for n in [1, 2] {
        exec(&t, n, 1, &tur, &[]).await;
        good(&exec(&t, n, 1, &tur, &[]).await);
    }
    assert_eq!(lbppbe(&t).await, (512, 0));
    t.update_lu(1, &[("lbppbe".into(), "3".into())]).unwrap();
    assert_eq!(t.lu_info()[1].physical_block_size, 4096);
    for n in [1, 2] {
        let r = exec(&t, n, 1, &tur, &[]).await;
        assert_eq!(sense_of(&r), (key::UNIT_ATTENTION, 0x2a, 0x09), "nexus {n}");
        good(&exec(&t, n, 1, &tur, &[]).await);
    }
    assert_eq!(lbppbe(&t).await, (512, 3));
    // Block Limits' OPTIMAL TRANSFER LENGTH GRANULARITY follows.
    let r = exec(&t, 1, 1, &[0x12, 0x01, 0xb0, 0, 255, 0], &[]).await;
    assert_eq!(u16::from_be_bytes([r.data_in[6], r.data_in[7]]), 8);
    // The same size again: nothing changed, nothing to tell.
    t.update_lu(1, &[("physical_blocksize".into(), "4096".into())])
        .unwrap();
    good(&exec(&t, 2, 1, &tur, &[]).await);
    // physical_blocksize= sets it in bytes; back to 512n.
    t.update_lu(1, &[("physical_blocksize".into(), "512".into())])
        .unwrap();
    for n in [1, 2] {
        let r = exec(&t, n, 1, &tur, &[]).await;
        assert_eq!(sense_of(&r), (key::UNIT_ATTENTION, 0x2a, 0x09), "nexus {n}");
    }
    assert_eq!(lbppbe(&t).await, (512, 0));
    // Not a power-of-two multiple of the logical block: refused, nothing changes.
    let e = t
        .update_lu(1, &[("physical_blocksize".into(), "3000".into())])
        .unwrap_err();
    assert!(e.to_string().contains("3000"), "{e}");
    let e = t
        .update_lu(1, &[("lbppbe".into(), "16".into())])
        .unwrap_err();
    assert!(e.to_string().contains("lbppbe"), "{e}");
    good(&exec(&t, 2, 1, &tur, &[]).await);
    assert_eq!(lbppbe(&t).await, (512, 0));
    assert_eq!(t.lu_info()[1].physical_block_size, 512);
}
