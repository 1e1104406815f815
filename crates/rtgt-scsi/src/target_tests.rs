//! End-to-end tests of the target through `ScsiTarget::execute`, per command family.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use rtgt_backstore::{BackingStore, Capabilities, IoFuture};

use crate::sense::key;
use crate::{
    status, DeviceType, ItNexus, LuConfig, ScsiCommand, ScsiError, ScsiResult, ScsiTarget,
    TaskAttr, TmFunction, TmResponse,
};

/// An in-memory store that counts flushes, so write-cache behaviour is observable.
pub(crate) struct MemStore {
    data: Mutex<Vec<u8>>,
    flushes: AtomicUsize,
    read_only: bool,
}

impl MemStore {
    pub fn new(size: usize) -> Arc<Self> {
        Arc::new(Self {
            data: Mutex::new(vec![0; size]),
            flushes: AtomicUsize::new(0),
            read_only: false,
        })
    }
    fn flushes(&self) -> usize {
        self.flushes.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl BackingStore for MemStore {
    fn kind(&self) -> &'static str {
        "mem"
    }
    fn size(&self) -> u64 {
        self.data.lock().len() as u64
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            read_only: self.read_only,
            unmap: true,
            unmap_zeroes: true,
            ..Capabilities::default()
        }
    }
    async fn unmap(&self, offset: u64, len: u64) -> io::Result<()> {
        let mut d = self.data.lock();
        d[offset as usize..(offset + len) as usize].fill(0);
        Ok(())
    }
    fn read_at(&self, mut buf: Vec<u8>, offset: u64) -> IoFuture<'_, Vec<u8>> {
        IoFuture::pending(async move {
            let d = self.data.lock();
            let o = offset as usize;
            let n = buf.len();
            buf.copy_from_slice(&d[o..o + n]);
            Ok(buf)
        })
    }
    fn write_at(&self, buf: Vec<u8>, offset: u64) -> IoFuture<'_, Vec<u8>> {
        IoFuture::pending(async move {
            let mut d = self.data.lock();
            let o = offset as usize;
            d[o..o + buf.len()].copy_from_slice(&buf);
            Ok(buf)
        })
    }
    async fn flush(&self) -> io::Result<()> {
        self.flushes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

pub(crate) const BLOCKS: u64 = 2048;

pub(crate) fn nexus(id: u64) -> Arc<ItNexus> {
    Arc::new(ItNexus {
        id,
        initiator_name: format!("iqn.2026-01.test:init{id}"),
        initiator_port: format!("iqn.2026-01.test:init{id},i,0x23d00000000{id}"),
        target_port: "iqn.2026-01.test:tgt,t,0x1".into(),
        relative_port_id: 1,
        target_port_group: 1,
    })
}

pub(crate) fn disk_cfg(store: Arc<dyn BackingStore>, params: &[(&str, &str)]) -> LuConfig {
    LuConfig {
        device_type: DeviceType::Disk,
        store: Some(store),
        block_size: 512,
        path: "/tmp/disk.img".into(),
        bsoflags: String::new(),
        params: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

/// A target with LUN 1 on a fresh MemStore.
pub(crate) fn target_with(params: &[(&str, &str)]) -> (ScsiTarget, Arc<MemStore>) {
    let t = ScsiTarget::new("iqn.2026-01.test:tgt");
    let s = MemStore::new((BLOCKS * 512) as usize);
    t.add_lu(1, disk_cfg(s.clone(), params)).unwrap();
    (t, s)
}

pub(crate) async fn exec(t: &ScsiTarget, n: u64, lun: u64, cdb: &[u8], data: &[u8]) -> ScsiResult {
    let mut c = cdb.to_vec();
    // Transports pad CDBs to 16 bytes; the core must look at the group code's length.
    c.resize(c.len().max(16), 0);
    t.execute(ScsiCommand {
        nexus: nexus(n),
        lun,
        cdb: c.into(),
        data_out: data.to_vec(),
        expected_data_in: 65536,
        attr: TaskAttr::Simple,
        tag: 1,
    })
    .await
}

/// (sense key, ASC, ASCQ) of a CHECK CONDITION, from either sense format.
pub(crate) fn sense_of(r: &ScsiResult) -> (u8, u8, u8) {
    assert_eq!(
        r.status,
        status::CHECK_CONDITION,
        "expected CHECK CONDITION: {r:?}"
    );
    match r.sense[0] & 0x7f {
        0x70 => (r.sense[2] & 0x0f, r.sense[12], r.sense[13]),
        0x72 => (r.sense[1] & 0x0f, r.sense[2], r.sense[3]),
        f => panic!("bad sense format {f:#x}"),
    }
}

fn good(r: &ScsiResult) {
    assert_eq!(r.status, status::GOOD, "expected GOOD: {r:?}");
}

fn rw10(op: u8, lba: u32, blocks: u16) -> Vec<u8> {
    let mut c = vec![op, 0];
    c.extend_from_slice(&lba.to_be_bytes());
    c.push(0);
    c.extend_from_slice(&blocks.to_be_bytes());
    c.push(0);
    c
}

fn rw16(op: u8, lba: u64, blocks: u32) -> Vec<u8> {
    let mut c = vec![op, 0];
    c.extend_from_slice(&lba.to_be_bytes());
    c.extend_from_slice(&blocks.to_be_bytes());
    c.extend_from_slice(&[0, 0]);
    c
}

fn rw12(op: u8, lba: u32, blocks: u32) -> Vec<u8> {
    let mut c = vec![op, 0];
    c.extend_from_slice(&lba.to_be_bytes());
    c.extend_from_slice(&blocks.to_be_bytes());
    c.extend_from_slice(&[0, 0]);
    c
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

const ILLEGAL: u8 = key::ILLEGAL_REQUEST;

mod addressing {
    use super::*;

    #[tokio::test]
    async fn lun0_is_a_controller_and_missing_luns_say_so() {
        let (t, _) = target_with(&[]);
        let r = exec(&t, 1, 0, &[0x12, 0, 0, 0, 96, 0], &[]).await;
        good(&r);
        assert_eq!(r.data_in[0], 0x0c);
        good(&exec(&t, 1, 0, &[0x00, 0, 0, 0, 0, 0], &[]).await);
        let r = exec(&t, 1, 7, &[0x12, 0, 0, 0, 96, 0], &[]).await;
        good(&r);
        assert_eq!(r.data_in[0], 0x7f);
        let r = exec(&t, 1, 7, &[0x00, 0, 0, 0, 0, 0], &[]).await;
        assert_eq!(sense_of(&r), (ILLEGAL, 0x25, 0x00));
        // The controller does not read or write.
        let r = exec(&t, 1, 0, &rw10(0x28, 0, 1), &[]).await;
        assert_eq!(sense_of(&r), (ILLEGAL, 0x20, 0x00));
    }

    #[tokio::test]
    async fn report_luns() {
        let (t, s) = target_with(&[]);
        t.add_lu(300, disk_cfg(s, &[])).unwrap();
        let r = exec(&t, 1, 0, &[0xa0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0], &[]).await;
        good(&r);
        assert_eq!(&r.data_in[0..4], &24u32.to_be_bytes());
        assert_eq!(&r.data_in[8..16], &crate::lun_to_sam(0));
        assert_eq!(&r.data_in[16..24], &crate::lun_to_sam(1));
        assert_eq!(&r.data_in[24..32], &[0x41, 0x2c, 0, 0, 0, 0, 0, 0]);
        // Well-known LUNs only: none.
        let r = exec(&t, 1, 1, &[0xa0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0], &[]).await;
        assert_eq!(&r.data_in[0..4], &[0; 4]);
        let r = exec(&t, 1, 1, &[0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 15, 0, 0], &[]).await;
        assert_eq!(sense_of(&r), (ILLEGAL, 0x24, 0x00));
        let r = exec(&t, 1, 1, &[0xa0, 0, 7, 0, 0, 0, 0, 0, 1, 0, 0, 0], &[]).await;
        assert_eq!(sense_of(&r), (ILLEGAL, 0x24, 0x00));
        // Addressed to a LUN that does not exist, it still answers.
        good(&exec(&t, 1, 9, &[0xa0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0], &[]).await);
    }

    #[tokio::test]
    async fn every_listed_opcode_is_dispatched_and_nothing_else() {
        for thin in [false, true] {
            let (t, _) = target_with(&[("thin_provisioning", if thin { "1" } else { "0" })]);
            let listed =
                crate::devices::table_of(DeviceType::Disk, crate::opcodes::Features { thin }).ops();
            every_listed_opcode(&t, listed).await;
        }
    }

    #[tokio::test]
    async fn a_tape_drive_lists_exactly_what_it_executes() {
        let img = std::env::temp_dir().join(format!("rtgt-ops-tape-{}", std::process::id()));
        let _ = std::fs::remove_file(&img);
        let label = crate::ssc::medium::Label {
            barcode: "OPS001".into(),
            capacity: 1 << 20,
            kind: crate::ssc::medium::CartridgeType::Data,
            serial: "OPS001_1".into(),
        };
        crate::ssc::medium::Medium::create(&img, crate::ssc::medium::Format::Rtgt, &label, false)
            .unwrap();
        let t = ScsiTarget::new("iqn.2026-01.test:tgt");
        t.add_media_lu(
            1,
            crate::MediaLuConfig {
                device_type: DeviceType::Tape,
                path: img.display().to_string(),
                params: Vec::new(),
            },
        )
        .unwrap();
        let listed = crate::devices::table_of(DeviceType::Tape, Default::default()).ops();
        every_listed_opcode(&t, listed).await;
        std::fs::remove_file(&img).unwrap();
    }

    #[tokio::test]
    async fn a_changer_lists_exactly_what_it_executes() {
        let t = ScsiTarget::new("iqn.2026-01.test:tgt");
        t.add_media_lu(
            1,
            crate::MediaLuConfig {
                device_type: DeviceType::Changer,
                path: String::new(),
                params: Vec::new(),
            },
        )
        .unwrap();
        let listed = crate::devices::table_of(DeviceType::Changer, Default::default()).ops();
        every_listed_opcode(&t, listed).await;
    }

    async fn every_listed_opcode(t: &ScsiTarget, listed: &[&crate::opcodes::OpInfo]) {
        for op in 0..=255u8 {
            let mut cdb = vec![0u8; 16];
            cdb[0] = op;
            if let Some(o) = listed.iter().find(|o| o.opcode == op) {
                cdb[1] = o.sa.unwrap_or(0) as u8;
            }
            let r = exec(t, 1, 1, &cdb, &vec![0; 4096]).await;
            let invalid_opcode = r.status == status::CHECK_CONDITION && {
                let (k, a, q) = sense_of(&r);
                (k, a, q) == (ILLEGAL, 0x20, 0x00)
            };
            let is_listed = listed.iter().any(|o| o.opcode == op);
            assert_eq!(!invalid_opcode, is_listed, "opcode {op:#04x}: {r:?}");
            // RESERVE may have succeeded; leave no state behind.
            t.nexus_loss(&nexus(1));
        }
    }
}

mod unit_attention {
    use super::*;

    #[tokio::test]
    async fn lun_changes_are_reported_to_nexuses_that_used_the_target() {
        let (t, s) = target_with(&[]);
        // First command of a nexus: no unit attention.
        good(&exec(&t, 1, 1, &[0, 0, 0, 0, 0, 0], &[]).await);
        t.add_lu(2, disk_cfg(s, &[])).unwrap();
        // INQUIRY neither reports nor clears it.
        good(&exec(&t, 1, 1, &[0x12, 0, 0, 0, 96, 0], &[]).await);
        let r = exec(&t, 1, 1, &[0, 0, 0, 0, 0, 0], &[]).await;
        assert_eq!(sense_of(&r), (key::UNIT_ATTENTION, 0x3f, 0x0e));
        good(&exec(&t, 1, 1, &[0, 0, 0, 0, 0, 0], &[]).await);
        // A nexus that arrives later sees nothing.
        good(&exec(&t, 2, 1, &[0, 0, 0, 0, 0, 0], &[]).await);
        // REQUEST SENSE reports and clears it.
        t.remove_lu(2).unwrap();
        let r = exec(&t, 2, 0, &[0x03, 0, 0, 0, 252, 0], &[]).await;
        good(&r);
        assert_eq!(
            (r.data_in[2], r.data_in[12], r.data_in[13]),
            (6, 0x3f, 0x0e)
        );
        let r = exec(&t, 2, 0, &[0x03, 0, 0, 0, 252, 0], &[]).await;
        assert_eq!((r.data_in[2], r.data_in[12]), (0, 0));
    }

    #[tokio::test]
    async fn a_new_nexus_from_the_same_port_inherits_nothing() {
        let (t, _) = target_with(&[]);
        good(&exec(&t, 1, 1, &[0, 0, 0, 0, 0, 0], &[]).await);
        good(&exec(&t, 2, 1, &[0, 0, 0, 0, 0, 0], &[]).await);
        // Nexus 2 has two reset conditions pending when it ends.
        t.task_management(&nexus(1), TmFunction::TargetWarmReset, 0, None);
        t.task_management(&nexus(1), TmFunction::LogicalUnitReset, 1, None);
        t.nexus_loss(&nexus(2));
        // The same initiator port logs in again: a new I_T nexus (SAM-5 4.7), with no
        // unit attention from before it existed.
        let again = Arc::new(ItNexus {
            id: 3,
            ..(*nexus(2)).clone()
        });
        let r = t
            .execute(ScsiCommand {
                nexus: again,
                lun: 1,
                cdb: vec![0x1b, 0, 0, 0, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0].into(),
                data_out: vec![],
                expected_data_in: 0,
                attr: TaskAttr::Simple,
                tag: 1,
            })
            .await;
        good(&r);
        // Nexus 1 still has its own.
        let r = exec(&t, 1, 1, &[0, 0, 0, 0, 0, 0], &[]).await;
        assert_eq!(sense_of(&r), (key::UNIT_ATTENTION, 0x29, 0x00));
    }

    #[tokio::test]
    async fn resets_raise_the_sam5_codes_and_drop_reservations() {
        let (t, _) = target_with(&[]);
        good(&exec(&t, 1, 1, &[0x16, 0, 0, 0, 0, 0], &[]).await);
        let r = exec(&t, 2, 1, &[0x00, 0, 0, 0, 0, 0], &[]).await;
        assert_eq!(r.status, status::RESERVATION_CONFLICT);
        assert_eq!(
            t.task_management(&nexus(1), TmFunction::LogicalUnitReset, 1, None)
                .response,
            TmResponse::FunctionComplete
        );
        for n in [1, 2] {
            let r = exec(&t, n, 1, &[0, 0, 0, 0, 0, 0], &[]).await;
            assert_eq!(sense_of(&r), (key::UNIT_ATTENTION, 0x29, 0x03));
        }
        // The reservation is gone.
        good(&exec(&t, 2, 1, &[0x16, 0, 0, 0, 0, 0], &[]).await);
        t.task_management(&nexus(1), TmFunction::TargetColdReset, 0, None);
        let r = exec(&t, 1, 1, &[0, 0, 0, 0, 0, 0], &[]).await;
        assert_eq!(sense_of(&r), (key::UNIT_ATTENTION, 0x29, 0x01));
        t.task_management(&nexus(1), TmFunction::TargetWarmReset, 0, None);
        // LUN 0 still holds the cold reset's condition, then the warm reset's.
        let r = exec(&t, 1, 0, &[0, 0, 0, 0, 0, 0], &[]).await;
        assert_eq!(sense_of(&r), (key::UNIT_ATTENTION, 0x29, 0x01));
        let r = exec(&t, 1, 0, &[0, 0, 0, 0, 0, 0], &[]).await;
        assert_eq!(sense_of(&r), (key::UNIT_ATTENTION, 0x29, 0x00));
        good(&exec(&t, 1, 0, &[0, 0, 0, 0, 0, 0], &[]).await);
        assert_eq!(
            t.task_management(&nexus(1), TmFunction::LogicalUnitReset, 5, None)
                .response,
            TmResponse::IncorrectLun
        );
        assert_eq!(
            t.task_management(&nexus(1), TmFunction::AbortTaskSet, 1, None)
                .response,
            TmResponse::FunctionComplete
        );
    }
}

mod block_io {
    use super::*;

    #[tokio::test]
    async fn write_then_read_back_in_every_size() {
        let (t, _) = target_with(&[]);
        let cases: Vec<(Vec<u8>, Vec<u8>, u64, usize)> = vec![
            (vec![0x0a, 0, 0, 5, 2, 0], vec![0x08, 0, 0, 5, 2, 0], 5, 2),
            (rw10(0x2a, 10, 3), rw10(0x28, 10, 3), 10, 3),
            (rw12(0xaa, 20, 4), rw12(0xa8, 20, 4), 20, 4),
            (
                rw16(0x8a, BLOCKS - 2, 2),
                rw16(0x88, BLOCKS - 2, 2),
                BLOCKS - 2,
                2,
            ),
        ];
        for (i, (w, r, _, n)) in cases.into_iter().enumerate() {
            let data = pattern(n * 512, i as u8);
            let res = exec(&t, 1, 1, &w, &data).await;
            good(&res);
            assert_eq!(res.data_out_len, Some((n * 512) as u32));
            let res = exec(&t, 1, 1, &r, &[]).await;
            good(&res);
            assert_eq!(res.data_in, data);
        }
        // READ (6) with TRANSFER LENGTH 0 reads 256 blocks.
        let r = exec(&t, 1, 1, &[0x08, 0, 0, 0, 0, 0], &[]).await;
        assert_eq!(r.data_in.len(), 256 * 512);
        // 10/12/16 with length 0 transfer nothing and succeed.
        let r = exec(&t, 1, 1, &rw10(0x28, 0, 0), &[]).await;
        good(&r);
        assert!(r.data_in.is_empty());
    }

    #[tokio::test]
    async fn cdb_errors() {
        let (t, _) = target_with(&[]);
        for cdb in [
            rw10(0x28, BLOCKS as u32, 1),
            rw10(0x28, BLOCKS as u32 - 1, 2),
            rw10(0x28, BLOCKS as u32 + 1, 0),
            rw16(0x88, u64::MAX, 1),
            rw12(0xa8, u32::MAX, 0),
        ] {
            let r = exec(&t, 1, 1, &cdb, &[]).await;
            assert_eq!(sense_of(&r), (ILLEGAL, 0x21, 0x00), "{cdb:?}");
        }
        let mut c = rw10(0x28, 0, 1);
        c[1] = 0x20; // RDPROTECT
        assert_eq!(
            sense_of(&exec(&t, 1, 1, &c, &[]).await),
            (ILLEGAL, 0x24, 0x00)
        );
        let mut c = rw16(0x8a, 0, 1);
        c[1] = 0x40; // WRPROTECT
        assert_eq!(
            sense_of(&exec(&t, 1, 1, &c, &[0; 512]).await),
            (ILLEGAL, 0x24, 0x00)
        );
        // DPO and FUA are fine.
        let mut c = rw10(0x28, 0, 1);
        c[1] = 0x18;
        good(&exec(&t, 1, 1, &c, &[]).await);
        // NACA in the control byte.
        let mut c = rw10(0x28, 0, 1);
        c[9] = 0x04;
        assert_eq!(
            sense_of(&exec(&t, 1, 1, &c, &[]).await),
            (ILLEGAL, 0x24, 0x00)
        );
        // Unknown opcode, unknown service action.
        assert_eq!(
            sense_of(&exec(&t, 1, 1, &[0xc0], &[]).await),
            (ILLEGAL, 0x20, 0x00)
        );
        let r = exec(
            &t,
            1,
            1,
            &[0x9e, 0x1f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0],
            &[],
        )
        .await;
        assert_eq!(sense_of(&r), (ILLEGAL, 0x24, 0x00));
        // A bad CDB gets its own sense even when its Data-Out never came.
        let r = exec(&t, 1, 1, &rw16(0x8a, BLOCKS, 0xffff), &[]).await;
        assert_eq!(sense_of(&r), (ILLEGAL, 0x21, 0x00));
        assert_eq!(r.data_out_len, Some(0xffff * 512));
        // Too little Data-Out (iSCSI EDTL below the CDB's length): the whole blocks
        // that came are written, GOOD, and the transport reports the overflow.
        let r = exec(&t, 1, 1, &rw10(0x2a, 0, 2), &[0xff; 700]).await;
        good(&r);
        assert_eq!(r.data_out_len, Some(1024));
        let r = exec(&t, 1, 1, &rw10(0x28, 0, 2), &[]).await;
        assert_eq!(&r.data_in[..512], &[0xff; 512][..]);
        assert_eq!(&r.data_in[512..], &[0; 512][..]);
        // More Data-Out than the CDB asks for: only the CDB's blocks are written.
        good(&exec(&t, 1, 1, &rw10(0x2a, 0, 1), &[0xee; 1024]).await);
        let r = exec(&t, 1, 1, &rw10(0x28, 0, 2), &[]).await;
        assert_eq!(&r.data_in[..512], &[0xee; 512][..]);
        assert_eq!(&r.data_in[512..], &[0; 512][..]);
    }

    #[tokio::test]
    async fn fua_and_write_cache() {
        let (t, s) = target_with(&[]);
        good(&exec(&t, 1, 1, &rw10(0x2a, 0, 1), &[1; 512]).await);
        assert_eq!(s.flushes(), 0);
        let mut c = rw10(0x2a, 0, 1);
        c[1] = 0x08; // FUA
        good(&exec(&t, 1, 1, &c, &[1; 512]).await);
        assert_eq!(s.flushes(), 1);
        // WCE off through MODE SELECT (6): every write is flushed.
        let mut p = vec![0, 0, 0, 0, 0x08, 18];
        p.resize(4 + 20, 0);
        good(&exec(&t, 1, 1, &[0x15, 0x10, 0, 0, 24, 0], &p).await);
        good(&exec(&t, 1, 1, &rw10(0x2a, 0, 1), &[1; 512]).await);
        assert_eq!(s.flushes(), 2);
        good(&exec(&t, 1, 1, &rw10(0x35, 0, 0), &[]).await);
        assert_eq!(s.flushes(), 3);
        let r = exec(&t, 1, 1, &rw10(0x35, BLOCKS as u32, 1), &[]).await;
        assert_eq!(sense_of(&r), (ILLEGAL, 0x21, 0x00));
    }

    #[tokio::test]
    async fn verify_bytchk_and_miscompare() {
        let (t, _) = target_with(&[]);
        let data = pattern(4 * 512, 3);
        good(&exec(&t, 1, 1, &rw10(0x2a, 8, 4), &data).await);
        let mut v = rw10(0x2f, 8, 4);
        v[1] = 0x02; // BYTCHK 01b
        good(&exec(&t, 1, 1, &v, &data).await);
        let mut bad = data.clone();
        bad[1000] ^= 0x55;
        let r = exec(&t, 1, 1, &v, &bad).await;
        assert_eq!(sense_of(&r), (key::MISCOMPARE, 0x1d, 0x00));
        assert_eq!(r.sense[0], 0xf0);
        assert_eq!(&r.sense[3..7], &1000u32.to_be_bytes());
        // BYTCHK 0: no compare.
        good(&exec(&t, 1, 1, &rw10(0x2f, 8, 4), &[]).await);
        // BYTCHK 11b: one block against each.
        good(&exec(&t, 1, 1, &rw16(0x93, 100, 3), &[7; 512]).await);
        let mut v = rw16(0x8f, 100, 3);
        v[1] = 0x06;
        let r = exec(&t, 1, 1, &v, &[7; 512]).await;
        good(&r);
        assert_eq!(r.data_out_len, Some(512));
        let r = exec(&t, 1, 1, &v, &[8; 512]).await;
        assert_eq!(sense_of(&r), (key::MISCOMPARE, 0x1d, 0x00));
        // BYTCHK 10b is reserved; VRPROTECT is unsupported.
        v[1] = 0x04;
        assert_eq!(
            sense_of(&exec(&t, 1, 1, &v, &[7; 512]).await),
            (ILLEGAL, 0x24, 0x00)
        );
        let mut v = rw12(0xaf, 0, 1);
        v[1] = 0x20;
        assert_eq!(
            sense_of(&exec(&t, 1, 1, &v, &[]).await),
            (ILLEGAL, 0x24, 0x00)
        );
    }

    #[tokio::test]
    async fn write_same_orwrite_write_and_verify() {
        let (t, _) = target_with(&[]);
        good(&exec(&t, 1, 1, &rw10(0x41, 10, 5), &[0xab; 512]).await);
        let r = exec(&t, 1, 1, &rw10(0x28, 9, 7), &[]).await;
        assert_eq!(&r.data_in[..512], &[0; 512][..]);
        assert_eq!(&r.data_in[512..3072], &[0xab; 2560][..]);
        assert_eq!(&r.data_in[3072..], &[0; 512][..]);
        // NUMBER OF LOGICAL BLOCKS 0: to the end of the medium.
        good(&exec(&t, 1, 1, &rw16(0x93, BLOCKS - 3, 0), &[0xcd; 512]).await);
        let r = exec(&t, 1, 1, &rw16(0x88, BLOCKS - 3, 3), &[]).await;
        assert_eq!(r.data_in, vec![0xcd; 1536]);
        // UNMAP without thin provisioning, and beyond the end.
        let mut c = rw10(0x41, 0, 1);
        c[1] = 0x08;
        assert_eq!(
            sense_of(&exec(&t, 1, 1, &c, &[0; 512]).await),
            (ILLEGAL, 0x24, 0x00)
        );
        let r = exec(&t, 1, 1, &rw10(0x41, BLOCKS as u32 + 1, 0), &[0; 512]).await;
        assert_eq!(sense_of(&r), (ILLEGAL, 0x21, 0x00));
        // ORWRITE.
        good(&exec(&t, 1, 1, &rw16(0x8a, 50, 1), &[0x0f; 512]).await);
        good(&exec(&t, 1, 1, &rw16(0x8b, 50, 1), &[0xf0; 512]).await);
        let r = exec(&t, 1, 1, &rw16(0x88, 50, 1), &[]).await;
        assert_eq!(r.data_in, vec![0xff; 512]);
        // WRITE AND VERIFY with BYTCHK.
        let mut c = rw10(0x2e, 60, 2);
        c[1] = 0x02;
        let data = pattern(1024, 9);
        good(&exec(&t, 1, 1, &c, &data).await);
        let r = exec(&t, 1, 1, &rw10(0x28, 60, 2), &[]).await;
        assert_eq!(r.data_in, data);
    }

    #[tokio::test]
    async fn prefetch_capacity_lba_status() {
        let (t, _) = target_with(&[]);
        let r = exec(&t, 1, 1, &rw10(0x34, BLOCKS as u32 - 4, 4), &[]).await;
        assert_eq!(r.status, status::CONDITION_MET);
        let r = exec(&t, 1, 1, &rw16(0x90, BLOCKS, 0), &[]).await;
        assert_eq!(sense_of(&r), (ILLEGAL, 0x21, 0x00));
        let r = exec(&t, 1, 1, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[]).await;
        assert_eq!(
            r.data_in,
            [((BLOCKS - 1) as u32).to_be_bytes(), 512u32.to_be_bytes()].concat()
        );
        let r = exec(
            &t,
            1,
            1,
            &[0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0],
            &[],
        )
        .await;
        assert_eq!(&r.data_in[..8], &(BLOCKS - 1).to_be_bytes());
        assert_eq!(r.data_in[14] & 0x80, 0, "LBPME without thin provisioning");
        let mut c = vec![0x9e, 0x12];
        c.extend_from_slice(&(BLOCKS - 10).to_be_bytes());
        c.extend_from_slice(&[0, 0, 0, 24, 0, 0]);
        let r = exec(&t, 1, 1, &c, &[]).await;
        good(&r);
        assert_eq!(&r.data_in[16..20], &10u32.to_be_bytes());
        c[2..10].copy_from_slice(&(BLOCKS + 1).to_be_bytes());
        assert_eq!(
            sense_of(&exec(&t, 1, 1, &c, &[]).await),
            (ILLEGAL, 0x21, 0x00)
        );
    }

    #[tokio::test]
    async fn readonly_and_swp_protect_writes() {
        let (t, _) = target_with(&[("readonly", "1")]);
        let r = exec(&t, 1, 1, &rw10(0x2a, 0, 1), &[0; 512]).await;
        assert_eq!(sense_of(&r), (key::DATA_PROTECT, 0x27, 0x00));
        let r = exec(&t, 1, 1, &rw10(0x41, 0, 1), &[0; 512]).await;
        assert_eq!(sense_of(&r), (key::DATA_PROTECT, 0x27, 0x00));
        let r = exec(&t, 1, 1, &[0x1a, 0x08, 0x3f, 0, 255, 0], &[]).await;
        assert_eq!(r.data_in[2] & 0x80, 0x80);
        good(&exec(&t, 1, 1, &rw10(0x28, 0, 1), &[]).await);
        // Lift it live; then set SWP in the control page.
        t.update_lu(1, &[("readonly".into(), "0".into())]).unwrap();
        good(&exec(&t, 1, 1, &rw10(0x2a, 0, 1), &[0; 512]).await);
        let ms = exec(&t, 1, 1, &[0x1a, 0x08, 0x0a, 0, 255, 0], &[]).await;
        let mut p = vec![0, 0, 0, 0];
        p.extend_from_slice(&ms.data_in[4..16]);
        p[4 + 4] |= 0x08;
        good(&exec(&t, 1, 1, &[0x15, 0x10, 0, 0, 16, 0], &p).await);
        let r = exec(&t, 1, 1, &rw16(0x8a, 0, 1), &[0; 512]).await;
        assert_eq!(sense_of(&r), (key::DATA_PROTECT, 0x27, 0x00));
    }
}

mod mode_pages {
    use super::*;

    #[tokio::test]
    async fn d_sense_switches_format_and_other_nexuses_hear_of_it() {
        let (t, _) = target_with(&[]);
        good(&exec(&t, 2, 1, &[0, 0, 0, 0, 0, 0], &[]).await);
        let ms = exec(&t, 1, 1, &[0x5a, 0x08, 0x0a, 0, 0, 0, 0, 0, 255, 0], &[]).await;
        good(&ms);
        let mut p = vec![0u8; 8];
        p.extend_from_slice(&ms.data_in[8..20]);
        p[8 + 2] |= 0x04;
        good(&exec(&t, 1, 1, &[0x55, 0x10, 0, 0, 0, 0, 0, 0, 20, 0], &p).await);
        let r = exec(&t, 1, 1, &rw16(0x88, u64::MAX, 1), &[]).await;
        assert_eq!(r.sense[0], 0x72);
        assert_eq!(sense_of(&r), (ILLEGAL, 0x21, 0x00));
        let r = exec(&t, 2, 1, &[0, 0, 0, 0, 0, 0], &[]).await;
        assert_eq!(sense_of(&r), (key::UNIT_ATTENTION, 0x2a, 0x01));
        // A parameter list error.
        let r = exec(&t, 1, 1, &[0x15, 0x10, 0, 0, 3, 0], &[0, 0, 0]).await;
        assert_eq!(sense_of(&r), (ILLEGAL, 0x1a, 0x00));
        let r = exec(&t, 1, 1, &[0x15, 0x10, 0, 0, 6, 0], &[0, 0, 0, 0, 0x1c, 0]).await;
        assert_eq!(sense_of(&r), (ILLEGAL, 0x26, 0x00));
        // Saved values.
        let r = exec(&t, 1, 1, &[0x1a, 0, 0xff, 0, 255, 0], &[]).await;
        assert_eq!(sense_of(&r), (ILLEGAL, 0x39, 0x00));
    }

    #[tokio::test]
    async fn sense_format_param_sets_the_default() {
        let (t, _) = target_with(&[("sense_format", "1")]);
        let r = exec(&t, 1, 1, &rw10(0x28, BLOCKS as u32, 1), &[]).await;
        assert_eq!(r.sense[0], 0x72);
    }
}

mod inquiry_data {
    use super::*;

    #[tokio::test]
    async fn standard_and_vpd() {
        let (t, _) = target_with(&[("product_id", "MYDISK"), ("removable", "1")]);
        let r = exec(&t, 1, 1, &[0x12, 0, 0, 0, 255, 0], &[]).await;
        good(&r);
        let d = &r.data_in;
        assert_eq!((d[0], d[1], d[2], d[3], d[4]), (0, 0x80, 6, 0x12, 91));
        assert_eq!(&d[8..16], b"RTGT    ");
        assert_eq!(&d[16..32], b"MYDISK          ");
        assert!(d[58..74].chunks(2).any(|c| c == [0x04, 0xc0]));
        // CMDDT, or a page code without EVPD.
        let r = exec(&t, 1, 1, &[0x12, 0x02, 0, 0, 255, 0], &[]).await;
        assert_eq!(sense_of(&r), (ILLEGAL, 0x24, 0x00));
        let r = exec(&t, 1, 1, &[0x12, 0, 0x80, 0, 255, 0], &[]).await;
        assert_eq!(sense_of(&r), (ILLEGAL, 0x24, 0x00));
        let r = exec(&t, 1, 1, &[0x12, 1, 0xc0, 0, 255, 0], &[]).await;
        assert_eq!(sense_of(&r), (ILLEGAL, 0x24, 0x00));
        let r = exec(&t, 1, 1, &[0x12, 1, 0, 0, 255, 0], &[]).await;
        assert_eq!(
            &r.data_in[4..],
            &[0x00, 0x80, 0x83, 0x86, 0x8f, 0xb0, 0xb1, 0xb2]
        );
        for page in [0x80u8, 0x83, 0x86, 0x8f, 0xb0, 0xb1, 0xb2] {
            let r = exec(&t, 1, 1, &[0x12, 1, page, 0, 255, 0], &[]).await;
            good(&r);
            assert_eq!(r.data_in[1], page);
            let len = u16::from_be_bytes([r.data_in[2], r.data_in[3]]) as usize;
            assert_eq!(r.data_in.len(), len + 4, "page {page:#x}");
        }
        let r = exec(&t, 1, 1, &[0x12, 1, 0xb0, 0, 255, 0], &[]).await;
        assert_eq!(r.data_in[3], 0x3c);
    }

    #[tokio::test]
    async fn designator_is_stable_and_per_lun() {
        let naa_of = |r: &ScsiResult| r.data_in[8..16].to_vec();
        let (t1, s) = target_with(&[]);
        t1.add_lu(2, disk_cfg(s.clone(), &[])).unwrap();
        let (t2, _) = target_with(&[]);
        let cdb = [0x12, 1, 0x83, 0, 255, 0];
        let a = exec(&t1, 1, 1, &cdb, &[]).await;
        assert_eq!(a.data_in[4..8], [0x01, 0x03, 0x00, 0x08]);
        assert_eq!(a.data_in[8] >> 4, 3);
        let b = exec(&t2, 7, 1, &cdb, &[]).await;
        assert_eq!(naa_of(&a), naa_of(&b));
        let c = exec(&t1, 1, 2, &cdb, &[]).await;
        assert_ne!(naa_of(&a), naa_of(&c));
        let tp = b"iqn.2026-01.test:tgt,t,0x1";
        assert!(a.data_in.windows(tp.len()).any(|w| w == tp));
    }
}

mod reservations {
    use super::*;

    const RESERVE6: [u8; 6] = [0x16, 0, 0, 0, 0, 0];
    const RELEASE6: [u8; 6] = [0x17, 0, 0, 0, 0, 0];

    #[tokio::test]
    async fn spc2_reserve_release_and_nexus_loss() {
        let (t, _) = target_with(&[]);
        good(&exec(&t, 1, 1, &RESERVE6, &[]).await);
        good(&exec(&t, 1, 1, &RESERVE6, &[]).await);
        assert_eq!(
            exec(&t, 2, 1, &RESERVE6, &[]).await.status,
            status::RESERVATION_CONFLICT
        );
        assert_eq!(
            exec(&t, 2, 1, &rw10(0x28, 0, 1), &[]).await.status,
            status::RESERVATION_CONFLICT
        );
        // INQUIRY still works, and a stranger's RELEASE is a no-op.
        good(&exec(&t, 2, 1, &[0x12, 0, 0, 0, 96, 0], &[]).await);
        good(&exec(&t, 2, 1, &RELEASE6, &[]).await);
        assert_eq!(
            exec(&t, 2, 1, &[0x1a, 0, 0x3f, 0, 255, 0], &[])
                .await
                .status,
            status::RESERVATION_CONFLICT
        );
        good(&exec(&t, 1, 1, &[0x1a, 0, 0x3f, 0, 255, 0], &[]).await);
        t.nexus_loss(&nexus(1));
        good(&exec(&t, 2, 1, &RESERVE6, &[]).await);
        good(&exec(&t, 2, 1, &[0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[]).await);
        good(&exec(&t, 3, 1, &rw10(0x28, 0, 1), &[]).await);
    }

    fn prout(sa: u8, rtype: u8) -> Vec<u8> {
        vec![0x5f, sa, rtype, 0, 0, 0, 0, 0, 24, 0]
    }
    fn keys(key: u64, sa_key: u64) -> Vec<u8> {
        let mut p = vec![0u8; 24];
        p[..8].copy_from_slice(&key.to_be_bytes());
        p[8..16].copy_from_slice(&sa_key.to_be_bytes());
        p
    }

    #[tokio::test]
    async fn persistent_reservation_through_commands() {
        let (t, _) = target_with(&[]);
        good(&exec(&t, 1, 1, &prout(6, 0), &keys(0, 0xaa)).await);
        good(&exec(&t, 2, 1, &prout(6, 0), &keys(0, 0xbb)).await);
        // Write Exclusive, Registrants Only by nexus 1.
        good(&exec(&t, 1, 1, &prout(1, 5), &keys(0xaa, 0)).await);
        good(&exec(&t, 2, 1, &rw10(0x2a, 0, 1), &[1; 512]).await);
        good(&exec(&t, 3, 1, &rw10(0x28, 0, 1), &[]).await);
        assert_eq!(
            exec(&t, 3, 1, &rw10(0x2a, 0, 1), &[1; 512]).await.status,
            status::RESERVATION_CONFLICT
        );
        // SPC-2 RESERVE meets the registrations with a conflict (CRH=0).
        assert_eq!(
            exec(&t, 1, 1, &RESERVE6, &[]).await.status,
            status::RESERVATION_CONFLICT
        );
        // READ RESERVATION.
        let r = exec(&t, 3, 1, &[0x5e, 1, 0, 0, 0, 0, 0, 0x10, 0, 0], &[]).await;
        assert_eq!(&r.data_in[8..16], &0xaau64.to_be_bytes());
        assert_eq!(r.data_in[21], 5);
        // Nexus 2 preempts nexus 1: nexus 1 hears REGISTRATIONS PREEMPTED.
        good(&exec(&t, 2, 1, &prout(4, 3), &keys(0xbb, 0xaa)).await);
        let r = exec(&t, 1, 1, &[0, 0, 0, 0, 0, 0], &[]).await;
        assert_eq!(sense_of(&r), (key::UNIT_ATTENTION, 0x2a, 0x05));
        assert_eq!(
            exec(&t, 1, 1, &rw10(0x28, 0, 1), &[]).await.status,
            status::RESERVATION_CONFLICT
        );
        // Registrations belong to the I_T nexus, not the session: a new session of the
        // same initiator port is still registered.
        let r = exec(&t, 12, 1, &[0x5e, 0, 0, 0, 0, 0, 0, 0x10, 0, 0], &[]).await;
        assert_eq!(&r.data_in[4..8], &8u32.to_be_bytes());
        // Bad parameter list length; unknown PR IN service action.
        let r = exec(&t, 2, 1, &[0x5f, 0, 0, 0, 0, 0, 0, 0, 20, 0], &[0; 20]).await;
        assert_eq!(sense_of(&r), (ILLEGAL, 0x1a, 0x00));
        let r = exec(&t, 2, 1, &[0x5e, 4, 0, 0, 0, 0, 0, 0x10, 0, 0], &[]).await;
        assert_eq!(sense_of(&r), (ILLEGAL, 0x24, 0x00));
        good(&exec(&t, 2, 1, &prout(3, 0), &keys(0xbb, 0)).await);
        good(&exec(&t, 1, 1, &rw10(0x28, 0, 1), &[]).await);
    }
}

mod configuration {
    use super::*;

    #[tokio::test]
    async fn add_lu_validation_and_lu_info() {
        let t = ScsiTarget::new("iqn.t");
        let s = MemStore::new(4096);
        assert_eq!(
            t.add_lu(0, disk_cfg(s.clone(), &[])),
            Err(ScsiError::Lun0Reserved)
        );
        let mut c = disk_cfg(s.clone(), &[]);
        c.block_size = 1024;
        assert_eq!(t.add_lu(1, c), Err(ScsiError::BadBlockSize(1024)));
        let mut c = disk_cfg(MemStore::new(4000), &[]);
        c.block_size = 4096;
        assert_eq!(
            t.add_lu(1, c),
            Err(ScsiError::TooSmall {
                size: 4000,
                block_size: 4096
            })
        );
        assert!(matches!(
            t.add_lu(1, disk_cfg(s.clone(), &[("online", "maybe")])),
            Err(ScsiError::BadParam(_))
        ));
        t.add_lu(
            1,
            disk_cfg(s.clone(), &[("scsi_sn", "SN42"), ("removable", "1")]),
        )
        .unwrap();
        assert_eq!(t.add_lu(1, disk_cfg(s, &[])), Err(ScsiError::LunExists(1)));
        assert_eq!(t.update_lu(3, &[]), Err(ScsiError::NoSuchLun(3)));
        assert!(t.update_lu(1, &[("bogus".into(), "1".into())]).is_err());
        let info = t.lu_info();
        assert_eq!(info.len(), 2);
        assert_eq!(info[0].device_type, "controller");
        let lu = &info[1];
        assert_eq!((lu.lun, lu.size_bytes, lu.block_size), (1, 4096, 512));
        assert_eq!(lu.scsi_sn, "SN42");
        assert!(lu.removable && lu.online && lu.write_cache && !lu.readonly);
        assert_eq!(lu.backing_store_type, "mem");
        assert_eq!(t.remove_lu(1), Ok(()));
        assert_eq!(t.remove_lu(1), Err(ScsiError::NoSuchLun(1)));
    }

    #[tokio::test]
    async fn removable_medium_eject_and_prevent() {
        let (t, _) = target_with(&[("removable", "1")]);
        // PREVENT blocks the eject.
        good(&exec(&t, 1, 1, &[0x1e, 0, 0, 0, 1, 0], &[]).await);
        let r = exec(&t, 1, 1, &[0x1b, 0, 0, 0, 0x02, 0], &[]).await;
        assert_eq!(sense_of(&r), (ILLEGAL, 0x53, 0x02));
        good(&exec(&t, 1, 1, &[0x1e, 0, 0, 0, 0, 0], &[]).await);
        good(&exec(&t, 1, 1, &[0x1b, 0, 0, 0, 0x02, 0], &[]).await);
        let r = exec(&t, 1, 1, &[0, 0, 0, 0, 0, 0], &[]).await;
        assert_eq!(sense_of(&r), (key::NOT_READY, 0x3a, 0x00));
        good(&exec(&t, 1, 1, &[0x1b, 0, 0, 0, 0x03, 0], &[]).await);
        good(&exec(&t, 1, 1, &[0, 0, 0, 0, 0, 0], &[]).await);
    }

    #[tokio::test]
    async fn real_file_store_round_trip() {
        let path = std::env::temp_dir().join(format!("rtgt-scsi-test-{}", std::process::id()));
        std::fs::File::create(&path)
            .unwrap()
            .set_len(1 << 20)
            .unwrap();
        let store = rtgt_backstore::rdwr::RdwrStore::open(&rtgt_backstore::OpenOptions {
            path: path.clone(),
            ..Default::default()
        })
        .unwrap();
        let t = ScsiTarget::new("iqn.t");
        let mut cfg = disk_cfg(Arc::new(store), &[]);
        cfg.block_size = 4096;
        t.add_lu(1, cfg).unwrap();
        let data = pattern(8192, 1);
        good(&exec(&t, 1, 1, &rw16(0x8a, 254, 2), &data).await);
        let r = exec(&t, 1, 1, &rw16(0x88, 254, 2), &[]).await;
        assert_eq!(r.data_in, data);
        // 256 blocks of 4 KiB: LBA 255 plus two runs past the end.
        let r = exec(&t, 1, 1, &rw16(0x8a, 255, 2), &data).await;
        assert_eq!(sense_of(&r), (ILLEGAL, 0x21, 0x00));
        std::fs::remove_file(path).unwrap();
    }
}

mod compare_and_write {
    use super::*;

    #[tokio::test]
    async fn writes_only_on_match_and_reports_the_miscompare_offset() {
        let (t, _s) = target_with(&[]);
        good(&exec(&t, 1, 1, &rw10(0x2a, 7, 1), &[0x11; 512]).await);
        let mut d = vec![0x11; 512];
        d.extend_from_slice(&[0x22; 512]);
        let r = exec(&t, 1, 1, &rw16(0x89, 7, 1), &d).await;
        good(&r);
        assert_eq!(r.data_out_len, Some(1024));
        // The medium now holds 0x22: the same compare data miscompares at byte 0.
        let r = exec(&t, 1, 1, &rw16(0x89, 7, 1), &d).await;
        assert_eq!(sense_of(&r), (key::MISCOMPARE, 0x1d, 0x00));
        assert_eq!(r.sense[0] & 0x80, 0x80, "INFORMATION valid");
        assert_eq!(&r.sense[3..7], &[0, 0, 0, 0]);
        let r = exec(&t, 1, 1, &rw10(0x28, 7, 1), &[]).await;
        assert_eq!(r.data_in, vec![0x22; 512]);
    }
}

mod caw_atomicity {
    use super::*;
    use std::time::Duration;

    /// A store whose reads wait at a gate while it is closed, so a COMPARE AND WRITE
    /// can be held between its read and its write.
    struct GateStore {
        inner: Arc<MemStore>,
        closed: std::sync::atomic::AtomicBool,
        open: tokio::sync::Notify,
    }

    #[async_trait]
    impl BackingStore for GateStore {
        fn kind(&self) -> &'static str {
            "gate"
        }
        fn size(&self) -> u64 {
            self.inner.size()
        }
        fn capabilities(&self) -> Capabilities {
            self.inner.capabilities()
        }
        fn read_at(&self, buf: Vec<u8>, offset: u64) -> IoFuture<'_, Vec<u8>> {
            IoFuture::pending(async move {
                while self.closed.load(Ordering::SeqCst) {
                    let n = self.open.notified();
                    if !self.closed.load(Ordering::SeqCst) {
                        break;
                    }
                    n.await;
                }
                self.inner.read_at(buf, offset).await
            })
        }
        fn write_at(&self, buf: Vec<u8>, offset: u64) -> IoFuture<'_, Vec<u8>> {
            IoFuture::pending(async move { self.inner.write_at(buf, offset).await })
        }
        async fn flush(&self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Two initiators: one's COMPARE AND WRITE on block 7 is held after it starts; the
    /// other's plain WRITE to block 7 must wait for it (and land after it), while its
    /// WRITE to block 8 goes through at once — atomic per range, no global lock.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn plain_write_waits_for_compare_and_write_on_the_same_block() {
        let inner = MemStore::new((BLOCKS * 512) as usize);
        let gate = Arc::new(GateStore {
            inner: inner.clone(),
            closed: std::sync::atomic::AtomicBool::new(false),
            open: tokio::sync::Notify::new(),
        });
        let t = Arc::new(ScsiTarget::new("iqn.2026-01.test:tgt"));
        t.add_lu(
            1,
            LuConfig {
                device_type: DeviceType::Disk,
                store: Some(gate.clone()),
                block_size: 512,
                path: "gate".into(),
                bsoflags: String::new(),
                params: vec![],
            },
        )
        .unwrap();
        good(&exec(&t, 1, 1, &rw10(0x2a, 7, 1), &[0xaa; 512]).await);
        good(&exec(&t, 2, 1, &rw10(0x00, 0, 0)[..6], &[]).await);

        gate.closed.store(true, Ordering::SeqCst);
        let t1 = t.clone();
        let caw = tokio::spawn(async move {
            let mut d = vec![0xaa; 512];
            d.extend_from_slice(&[0xbb; 512]);
            exec(&t1, 1, 1, &rw16(0x89, 7, 1), &d).await
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let t2 = t.clone();
        let write =
            tokio::spawn(async move { exec(&t2, 2, 1, &rw10(0x2a, 7, 1), &[0xcc; 512]).await });
        // Another block is not held up.
        let other = tokio::time::timeout(
            Duration::from_secs(2),
            exec(&t, 2, 1, &rw10(0x2a, 8, 1), &[0xdd; 512]),
        )
        .await
        .expect("a write to another block must not wait");
        good(&other);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !write.is_finished(),
            "the WRITE to block 7 ran inside the COMPARE AND WRITE"
        );
        gate.closed.store(false, Ordering::SeqCst);
        gate.open.notify_waiters();
        good(&caw.await.unwrap());
        good(&write.await.unwrap());
        // The compare matched 0xaa, wrote 0xbb; the plain write came after it.
        let r = exec(&t, 1, 1, &rw10(0x28, 7, 1), &[]).await;
        assert_eq!(r.data_in, vec![0xcc; 512]);
    }
}

mod task_set {
    use super::*;
    use crate::TransportAbort;

    fn prout(sa: u8, rtype: u8, key: u64, sa_key: u64) -> (Vec<u8>, Vec<u8>) {
        let mut p = vec![0u8; 24];
        p[..8].copy_from_slice(&key.to_be_bytes());
        p[8..16].copy_from_slice(&sa_key.to_be_bytes());
        (vec![0x5f, sa, rtype, 0, 0, 0, 0, 0, 24, 0], p)
    }

    /// What a transport was told: (lun, close).
    type Seen = Arc<Mutex<Vec<(Option<u64>, bool)>>>;

    /// Logs what the transport is told; the acknowledgment is dropped at once, as a
    /// transport does once it has dropped its tasks.
    fn hook(log: &Seen) -> crate::AbortHook {
        let log = log.clone();
        Arc::new(move |a: TransportAbort| log.lock().push((a.lun, a.close)))
    }

    #[tokio::test]
    async fn an_aborted_sanitize_ends_at_once_and_the_operation_goes_on() {
        // 1 MiB at 1 MiB/s: the overwrite takes about a second.
        let (t, _store) = target_with(&[("thin_provisioning", "1"), ("sanitize_rate", "1")]);
        let t = Arc::new(t);
        let n = nexus(1);
        let task = t.begin_task(&n, 9, 1);
        let mut cdb = vec![0x48, 0x01, 0, 0, 0, 0, 0, 0, 8, 0];
        cdb.resize(16, 0);
        let mut param = vec![0x01, 0, 0, 4];
        param.extend_from_slice(&[0xa5; 4]);
        let cmd = ScsiCommand {
            nexus: n.clone(),
            lun: 1,
            cdb: cdb.into(),
            data_out: param,
            expected_data_in: 0,
            attr: TaskAttr::Simple,
            tag: 9,
        };
        let t2 = t.clone();
        let running = tokio::spawn(async move {
            let r = t2.execute_task(cmd, &task).await;
            drop(task);
            r
        });
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let out = t.task_management(&n, TmFunction::AbortTask, 1, Some(9));
        assert_eq!(out.wait.len(), 1);
        // SAM-5 7.1: the abort completes once the task is over, which must not take
        // the whole sanitize operation.
        tokio::time::timeout(std::time::Duration::from_millis(300), out.wait.wait())
            .await
            .expect("ABORT TASK waited for the sanitize operation");
        assert!(running.await.unwrap().aborted);
        // SBC-4 4.11.2: the operation itself goes on.
        let r = exec(&t, 2, 1, &[0, 0, 0, 0, 0, 0], &[]).await;
        assert_eq!(sense_of(&r), (key::NOT_READY, 0x04, 0x1b));
    }

    #[tokio::test]
    async fn a_task_aborted_before_it_runs_never_runs() {
        let (t, store) = target_with(&[]);
        let n = nexus(1);
        let task = t.begin_task(&n, 7, 1);
        let out = t.task_management(&n, TmFunction::AbortTask, 1, Some(7));
        assert_eq!(out.response, TmResponse::FunctionComplete);
        assert_eq!(out.wait.len(), 1);
        let mut cdb = vec![0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0];
        cdb.resize(16, 0);
        let r = t
            .execute_task(
                ScsiCommand {
                    nexus: n.clone(),
                    lun: 1,
                    cdb: cdb.into(),
                    data_out: vec![0xab; 512],
                    expected_data_in: 0,
                    attr: TaskAttr::Simple,
                    tag: 7,
                },
                &task,
            )
            .await;
        assert!(r.aborted);
        assert!(store.data.lock()[..512].iter().all(|&b| b == 0));
        drop(task);
        out.wait.wait().await;
    }

    #[tokio::test]
    async fn preempt_and_abort_ends_the_preempted_nexus_tasks_first() {
        let (t, _) = target_with(&[]);
        let t = Arc::new(t);
        let seen = Arc::new(Mutex::new(Vec::new()));
        t.attach_nexus(nexus(2), hook(&seen));
        for (n, k) in [(1, 0x11), (2, 0x22)] {
            let (c, p) = prout(6, 0, 0, k);
            good(&exec(&t, n, 1, &c, &p).await);
        }
        let (c, p) = prout(1, 1, 0x22, 0);
        good(&exec(&t, 2, 1, &c, &p).await);
        // Nexus 2 has a task in flight on the LU.
        let task = t.begin_task(&nexus(2), 9, 1);
        let t2 = t.clone();
        let preempt = tokio::spawn(async move {
            let (c, p) = prout(5, 3, 0x11, 0x22);
            exec(&t2, 1, 1, &c, &p).await
        });
        for _ in 0..100 {
            if task.aborted() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert!(
            task.aborted(),
            "PREEMPT AND ABORT aborts the preempted nexus's task"
        );
        assert_eq!(seen.lock().len(), 1);
        assert_eq!(seen.lock()[0].0, Some(1));
        // The command completes only after the aborted task is over.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!preempt.is_finished());
        drop(task);
        good(&preempt.await.unwrap());
        let r = exec(&t, 2, 1, &[0, 0, 0, 0, 0, 0], &[]).await;
        assert_eq!(sense_of(&r), (key::UNIT_ATTENTION, 0x2a, 0x05));
        // Now nexus 1 holds an EXCLUSIVE ACCESS reservation.
        let r = exec(&t, 2, 1, &[0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], &[]).await;
        assert_eq!(r.status, status::RESERVATION_CONFLICT);
    }

    #[tokio::test]
    async fn a_reset_completes_only_once_the_other_transports_dropped_their_tasks() {
        let (t, _) = target_with(&[]);
        let held = Arc::new(Mutex::new(Vec::<TransportAbort>::new()));
        let h = held.clone();
        t.attach_nexus(nexus(2), Arc::new(move |a| h.lock().push(a)));
        let out = t.task_management(&nexus(1), TmFunction::LogicalUnitReset, 1, None);
        assert_eq!(out.wait.len(), 0, "no task of the core to wait for");
        let mut wait = Box::pin(out.wait.wait());
        let pending = tokio::time::timeout(std::time::Duration::from_millis(50), &mut wait).await;
        assert!(
            pending.is_err(),
            "completed before the transport acknowledged"
        );
        held.lock().clear();
        tokio::time::timeout(std::time::Duration::from_millis(500), wait)
            .await
            .expect("the acknowledgment ends the wait");
    }

    #[tokio::test]
    async fn lun_reset_and_clear_task_set_reach_other_nexuses() {
        let (t, _) = target_with(&[]);
        let seen = Arc::new(Mutex::new(Vec::new()));
        t.attach_nexus(nexus(2), hook(&seen));
        t.attach_nexus(nexus(1), hook(&seen));
        let other = t.begin_task(&nexus(2), 3, 1);
        let out = t.task_management(&nexus(1), TmFunction::ClearTaskSet, 1, None);
        assert!(other.aborted());
        assert_eq!(out.wait.len(), 1);
        // Only the other nexus's transport is told; the issuer dropped its own tasks.
        assert_eq!(seen.lock().len(), 1);
        drop(other);
        out.wait.wait().await;
        let r = exec(&t, 2, 1, &[0, 0, 0, 0, 0, 0], &[]).await;
        assert_eq!(sense_of(&r), (key::UNIT_ATTENTION, 0x2f, 0x00));
        good(&exec(&t, 1, 1, &[0, 0, 0, 0, 0, 0], &[]).await);

        let out = t.task_management(&nexus(1), TmFunction::TargetColdReset, 0, None);
        assert!(out.close, "a cold reset ends the sessions");
        assert!(seen.lock().last().unwrap().1);
    }

    /// LUN masking through `execute`: a masked LUN is, to everyone else, a LUN nobody
    /// configured (05/25/00), and unmasking or forgetting the masks (which also clears
    /// the fast "nothing is masked" flag) makes it visible again.
    #[tokio::test]
    async fn masked_luns_are_absent_for_other_initiators_until_unmasked() {
        let (t, _) = target_with(&[]);
        // TEST UNIT READY after the unit attentions a mask change leaves (6/3F/0E).
        async fn tur(t: &ScsiTarget, n: u64) -> ScsiResult {
            for _ in 0..8 {
                let r = exec(t, n, 1, &[0u8; 6], &[]).await;
                if r.status != status::CHECK_CONDITION || sense_of(&r).0 != key::UNIT_ATTENTION {
                    return r;
                }
            }
            panic!("unit attentions without end");
        }
        assert_eq!(tur(&t, 1).await.status, status::GOOD);
        assert_eq!(tur(&t, 2).await.status, status::GOOD);
        // Names compare case-insensitively (RFC 3722).
        t.set_lun_initiators(1, vec!["IQN.2026-01.test:init1".into()])
            .unwrap();
        assert_eq!(tur(&t, 1).await.status, status::GOOD);
        let r = tur(&t, 2).await;
        assert_eq!(sense_of(&r), (key::ILLEGAL_REQUEST, 0x25, 0x00));
        t.set_lun_initiators(1, Vec::new()).unwrap();
        assert_eq!(tur(&t, 2).await.status, status::GOOD);
        t.set_lun_initiators(1, vec!["iqn.2026-01.test:init1".into()])
            .unwrap();
        assert_eq!(sense_of(&tur(&t, 2).await).1, 0x25);
        t.forget_masks();
        assert_eq!(tur(&t, 2).await.status, status::GOOD);
    }
}
