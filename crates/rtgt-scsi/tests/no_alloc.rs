//! The SCSI core serves READ and WRITE without a heap allocation per command once warm,
//! when the store completes in place (null, mem, a page-cache hit, a small buffered
//! write): the fast path the performance issue asks for. A counting allocator sees
//! every allocation this test's thread makes; the command future is polled once, on the
//! stack, as the transport does before it would spawn it.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use rtgt_scsi::{Cdb, DeviceType, ItNexus, LuConfig, ScsiCommand, ScsiTarget, TaskAttr};

#[path = "../../../tests/support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::allocations;

const BLOCK: usize = 512;

fn target(store: Arc<dyn rtgt_backstore::BackingStore>) -> (ScsiTarget, Arc<ItNexus>) {
    let t = ScsiTarget::new("iqn.2026-11.test:no-alloc");
    t.add_lu(
        1,
        LuConfig {
            device_type: DeviceType::Disk,
            store: Some(store),
            block_size: BLOCK as u32,
            path: "/test".into(),
            bsoflags: String::new(),
            params: Vec::new(),
        },
    )
    .unwrap();
    let n = Arc::new(ItNexus {
        id: 1,
        initiator_name: "iqn.2026-11.test:init".into(),
        initiator_port: "iqn.2026-11.test:init,i,0x230000000001".into(),
        target_port: "iqn.2026-11.test:no-alloc,t,0x1".into(),
        relative_port_id: 1,
        target_port_group: 1,
    });
    (t, n)
}

/// READ (10) or WRITE (10) of 8 blocks at `lba`, run to completion in one poll as the
/// transport runs it; returns (status, Data-In) and recycles buffers as it does.
fn run(t: &ScsiTarget, n: &Arc<ItNexus>, tag: u64, write: Option<Vec<u8>>, lba: u32) -> u8 {
    let mut cdb = Cdb::from_slice(&[0u8; 16]);
    cdb[0] = if write.is_some() { 0x2a } else { 0x28 };
    cdb[2..6].copy_from_slice(&lba.to_be_bytes());
    cdb[8] = 8;
    let task = t.begin_task(n, tag, 1);
    let cmd = ScsiCommand {
        nexus: n.clone(),
        lun: 1,
        cdb,
        data_out: write.unwrap_or_default(),
        expected_data_in: 8 * BLOCK as u32,
        attr: TaskAttr::Simple,
        tag,
    };
    let fut = std::pin::pin!(t.execute_task(cmd, &task));
    let Poll::Ready(r) = fut.poll(&mut Context::from_waker(Waker::noop())) else {
        panic!("the command did not finish in place");
    };
    // What the transport does once the data is on the wire.
    rtgt_backstore::bufpool::give(r.data_in);
    r.status
}

fn assert_no_allocation_per_command(store: Arc<dyn rtgt_backstore::BackingStore>) {
    let (t, n) = target(store);
    let pattern = || {
        let mut b = rtgt_backstore::bufpool::take(8 * BLOCK);
        b.fill(0x5a);
        b
    };
    // Warm up: the first command reports the power-on unit attention, buffer pools and
    // the task set fill.
    for tag in 0..64 {
        run(&t, &n, tag, Some(pattern()), tag as u32 * 8);
        run(&t, &n, tag, None, tag as u32 * 8);
    }
    let before = allocations();
    for tag in 0..1000 {
        let lba = (tag % 64) as u32 * 8;
        // The transport takes a WRITE's buffer from the pool as the PDU arrives.
        assert_eq!(run(&t, &n, tag, Some(pattern()), lba), 0, "WRITE status");
        assert_eq!(run(&t, &n, tag, None, lba), 0, "READ status");
    }
    let per_command = (allocations() - before) as f64 / 2000.0;
    assert_eq!(
        per_command, 0.0,
        "heap allocations per READ/WRITE in steady state"
    );
}

#[test]
fn null_lu_reads_and_writes_allocate_nothing() {
    assert_no_allocation_per_command(Arc::new(rtgt_backstore::null::NullStore::new(1 << 30)));
}

#[test]
fn page_cached_file_reads_and_writes_allocate_nothing() {
    let dir = std::env::temp_dir().join(format!("rtgt-no-alloc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("disk.img");
    std::fs::write(&path, vec![0u8; 1 << 20]).unwrap();
    let store = rtgt_backstore::open(
        "rdwr",
        &rtgt_backstore::OpenOptions {
            path: path.clone(),
            direct: false,
            sync: false,
            read_only: false,
            size: None,
            bsopts: Vec::new(),
            block_size: 0,
        },
    )
    .unwrap();
    assert_no_allocation_per_command(store);
    // The writes really reached the file.
    let on_disk = std::fs::read(&path).unwrap();
    assert!(on_disk[..8 * BLOCK].iter().all(|&b| b == 0x5a));
    std::fs::remove_dir_all(&dir).unwrap();
}
