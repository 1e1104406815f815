//! CDB decoding and device emulation: the SCSI core runs each command of the input against
//! a target with a 1 MiB in-memory disk at LUN 1 (and LUN 0, the controller). Input:
//! commands separated by FF FE; in each, byte 0 is the LUN (0, 1 or an absent one), bytes
//! 1..3 the expected Data-In length / 16, then one byte of CDB length and the CDB, and the
//! rest is the Data-Out buffer.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use rtgt_scsi::{DeviceType, ItNexus, LuConfig, ScsiCommand, ScsiTarget, TaskAttr};

fn split(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + 1 < data.len() {
        if data[i] == 0xff && data[i + 1] == 0xfe {
            out.push(&data[start..i]);
            i += 2;
            start = i;
        } else {
            i += 1;
        }
    }
    out.push(&data[start..]);
    out
}

fuzz_target!(|data: &[u8]| {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let target = ScsiTarget::new("iqn.2026-01.org.example:fuzz");
    target
        .add_lu(
            1,
            LuConfig {
                device_type: DeviceType::Disk,
                store: Arc::new(rtgt_backstore::mem::MemStore::new(1 << 20)),
                block_size: 512,
                path: String::new(),
                bsoflags: String::new(),
                params: vec![("thin_provisioning".into(), "1".into())],
            },
        )
        .ok();
    let nexus = Arc::new(ItNexus {
        id: 1,
        initiator_name: "iqn.2026-01.org.example:i".into(),
        initiator_port: "iqn.2026-01.org.example:i,i,0x800102030405".into(),
        target_port: "iqn.2026-01.org.example:fuzz,t,0x0001".into(),
        relative_port_id: 1,
        target_port_group: 1,
    });
    for (tag, part) in split(data).into_iter().take(32).enumerate() {
        if part.len() < 4 {
            continue;
        }
        let lun = u64::from(part[0] % 3);
        let edtl = u32::from(u16::from_be_bytes([part[1], part[2]])) * 16;
        let cdb_len = usize::from(part[3]).min(part.len() - 4).min(260);
        let cdb = part[4..4 + cdb_len].to_vec();
        let data_out = part[4 + cdb_len..].to_vec();
        let task = target.begin_task(&nexus, tag as u64, lun);
        let cmd = ScsiCommand {
            nexus: nexus.clone(),
            lun,
            cdb,
            data_out,
            expected_data_in: edtl,
            attr: TaskAttr::Simple,
            tag: tag as u64,
        };
        let r = rt.block_on(target.execute_task(cmd, &task));
        drop(task);
        assert!(r.data_in.len() <= 16 << 20, "runaway Data-In");
    }
});
