//! INQUIRY: standard data (SPC-4 6.6.2) and the vital product data pages (SPC-4 7.8,
//! SBC-4 6.6).

use crate::cdb::{invalid_cdb, Outcome};
use crate::lu::Lu;
use crate::ItNexus;

/// Peripheral device types (SPC-4 table 140).
pub(crate) const TYPE_DISK: u8 = 0x00;
pub(crate) const TYPE_CONTROLLER: u8 = 0x0c;
pub(crate) const TYPE_TAPE: u8 = 0x01;
pub(crate) const TYPE_MMC: u8 = 0x05;
pub(crate) const TYPE_CHANGER: u8 = 0x08;
pub(crate) const TYPE_UNKNOWN: u8 = 0x1f;

/// MAXIMUM TRANSFER LENGTH in bytes: commands carry all their data in memory.
pub(crate) const MAX_TRANSFER_BYTES: u64 = 16 << 20;
/// MAXIMUM WRITE SAME LENGTH in bytes: written in 1 MiB chunks, bounded so one
/// command cannot keep the store busy for long. Equal to MAXIMUM TRANSFER LENGTH, so
/// an initiator may verify any WRITE SAME range with one READ.
pub(crate) const MAX_WRITE_SAME_BYTES: u64 = MAX_TRANSFER_BYTES;
/// MAXIMUM ATOMIC TRANSFER LENGTH in bytes: one pwrite under an exclusive range lock.
pub(crate) const MAX_ATOMIC_TRANSFER_BYTES: u64 = 1 << 20;
/// MAXIMUM UNMAP LBA COUNT (per command) and MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT:
/// punching is cheap, but a file system without it falls back to writing zeroes.
pub(crate) const MAX_UNMAP_BLOCKS: u32 = 1 << 20;
pub(crate) const MAX_UNMAP_DESCRIPTORS: u32 = 256;

fn pad(s: &str, n: usize) -> Vec<u8> {
    let mut v: Vec<u8> = s.bytes().take(n).collect();
    v.resize(n, b' ');
    v
}

/// FNV-1a: a stable hash (the std hasher is not stable across releases) for designators
/// and serial numbers derived from names.
pub(crate) fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.iter() {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Standard INQUIRY data for a LU that does not exist: peripheral qualifier 011b and
/// device type 1Fh (SPC-4 6.6.2).
pub(crate) fn not_present() -> Vec<u8> {
    let mut b = vec![0u8; 36];
    b[0] = 0x60 | TYPE_UNKNOWN;
    b[2] = 0x06;
    b[3] = 0x12;
    b[4] = 31;
    b
}

fn standard(lu: &Lu) -> Vec<u8> {
    let p = lu.params.read();
    let mut b = vec![0u8; 96];
    let server = lu.device.server();
    b[0] = server.peripheral_type();
    if server.removable(lu) {
        b[1] = 0x80; // RMB
    }
    b[2] = 0x06; // VERSION: SPC-4
    b[3] = 0x12; // HISUP, RESPONSE DATA FORMAT 2
    b[4] = 91; // ADDITIONAL LENGTH
    if server.alua() {
        // TPGS 11b: implicit (rtgtadm) and explicit (SET TARGET PORT GROUPS) ALUA
        // (SPC-4 6.6.2, 5.16).
        b[5] |= 0x30;
    }
    b[7] = 0x02; // CMDQUE: commands are queued and run concurrently
    b[8..16].copy_from_slice(&pad(&p.vendor_id, 8));
    let product = server.product(&p.product_id).unwrap_or(&p.product_id);
    b[16..32].copy_from_slice(&pad(product, 16));
    b[32..36].copy_from_slice(&pad(&p.product_rev, 4));
    // VERSION DESCRIPTORS (SPC-4 table 143): SAM-5, iSCSI, SPC-4, then the command set.
    let mut v: Vec<u16> = vec![0x00a0, 0x0960, 0x0460];
    v.extend(server.version_descriptor());
    for (i, d) in v.iter().enumerate() {
        b[58 + 2 * i..60 + 2 * i].copy_from_slice(&d.to_be_bytes());
    }
    b
}

/// The unit serial number: `scsi_sn` or one derived from the target name and LUN.
pub(crate) fn serial(lu: &Lu, target: &str) -> String {
    match &lu.params.read().scsi_sn {
        Some(s) => s.clone(),
        // A medium other targets export too (an RBD image): the serial of the medium,
        // so every gateway presents the same LU.
        None if store_identity(lu).is_some() => format!(
            "{:016x}",
            fnv1a(&[store_identity(lu).unwrap_or_default().as_bytes()])
        ),
        None => format!(
            "{:08x}{:04x}",
            fnv1a(&[target.as_bytes()]) as u32,
            lu.lun & 0xffff
        ),
    }
}

/// The NAA Locally Assigned designator (SPC-4 7.8.6.6.4): NAA 3h and 60 bits derived
/// from `scsi_id`, or the target name and LUN, so it is the same on every path and
/// across restarts.
pub(crate) fn naa(lu: &Lu, target: &str) -> u64 {
    let h = match &lu.params.read().scsi_id {
        Some(id) => fnv1a(&[id.as_bytes()]),
        None => match store_identity(lu) {
            Some(id) => fnv1a(&[b"lu", id.as_bytes()]),
            None => fnv1a(&[target.as_bytes(), &lu.lun.to_be_bytes()]),
        },
    };
    (0x3u64 << 60) | (h & 0x0fff_ffff_ffff_ffff)
}

/// The identity of a medium shared with other targets (BackingStore::identity).
fn store_identity(lu: &Lu) -> Option<String> {
    lu.store.as_ref().and_then(|s| s.identity())
}

/// A designation descriptor (SPC-4 7.8.6.1). `proto` is set for target-port ones.
fn designator(out: &mut Vec<u8>, proto: Option<u8>, code_set: u8, assoc: u8, dtype: u8, d: &[u8]) {
    out.push((proto.unwrap_or(0) << 4) | code_set);
    out.push((u8::from(proto.is_some()) << 7) | (assoc << 4) | dtype);
    out.push(0);
    out.push(d.len() as u8);
    out.extend_from_slice(d);
}

/// A SCSI name string: null-terminated, padded to a multiple of four (SPC-4 7.8.6.11).
fn name_string(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v.resize(v.len().next_multiple_of(4), 0);
    v
}

/// VPD 83h's designators of the target port the command came through and of the
/// target device (SPC-4 7.8.6: associations 01b and 10b). The protocol identifier is
/// iSCSI's (5h) when the names are iSCSI ones.
pub(crate) fn port_designators(body: &mut Vec<u8>, target: &str, nexus: &ItNexus) {
    let proto = nexus.target_port.contains(",t,0x").then_some(5u8);
    if !nexus.target_port.is_empty() {
        designator(body, proto, 3, 1, 8, &name_string(&nexus.target_port));
    }
    let mut rel = vec![0, 0];
    rel.extend_from_slice(&nexus.relative_port_id.to_be_bytes());
    designator(body, proto, 1, 1, 4, &rel);
    let mut tpg = vec![0, 0];
    tpg.extend_from_slice(&nexus.target_port_group.to_be_bytes());
    designator(body, proto, 1, 1, 5, &tpg);
    designator(body, proto, 3, 2, 8, &name_string(target));
}

fn supported_pages(lu: &Lu) -> &'static [u8] {
    lu.device.server().vpd_pages()
}

fn vpd(lu: &Lu, target: &str, nexus: &ItNexus, page: u8) -> Outcome<Vec<u8>> {
    if !supported_pages(lu).contains(&page) {
        return Err(invalid_cdb());
    }
    let mut body = Vec::new();
    match page {
        0x00 => body.extend_from_slice(supported_pages(lu)),
        0x80 => body.extend_from_slice(serial(lu, target).as_bytes()),
        0x83 => {
            // Logical unit: NAA, and a T10 vendor ID based one carrying the serial.
            designator(&mut body, None, 1, 0, 3, &naa(lu, target).to_be_bytes());
            let mut t10 = pad(&lu.params.read().vendor_id, 8);
            t10.extend_from_slice(serial(lu, target).as_bytes());
            designator(&mut body, None, 2, 0, 1, &t10);
            port_designators(&mut body, target, nexus);
        }
        0x86 => {
            // Extended INQUIRY Data (SPC-4 7.8.7): SIMPSUP (simple task attribute);
            // NV_SUP when `nv_cache=1` says the cache is non-volatile, else V_SUP when
            // there is a volatile cache (not on an O_DSYNC store); LUICLR, as unit
            // attentions are cleared per logical unit.
            body.resize(0x3c, 0);
            body[1] = 0x01;
            let nv = lu.params.read().nv_cache;
            let sync = lu.store.as_ref().is_some_and(|s| s.capabilities().sync);
            body[2] = if nv { 0x02 } else { u8::from(!sync) };
            body[3] = 0x01;
        }
        0x8f => body = crate::xcopy::third_party_copy_vpd(),
        // The device type's own pages (a disk's SBC-4 6.6 ones).
        _ => {
            body = lu
                .device
                .server()
                .vpd_page(lu, page)
                .ok_or_else(invalid_cdb)?
        }
    }
    let mut b = vec![lu.device.server().peripheral_type(), page];
    b.extend_from_slice(&(body.len() as u16).to_be_bytes());
    b.extend(body);
    Ok(b)
}

/// INQUIRY (SPC-4 6.6): the full data; the caller truncates to the allocation length.
pub(crate) fn inquiry(lu: &Lu, target: &str, nexus: &ItNexus, cdb: &[u8]) -> Outcome<Vec<u8>> {
    let evpd = cdb[1] & 0x01 != 0;
    // CMDDT is obsolete: SPC-4 6.6.1 says terminate with INVALID FIELD IN CDB.
    if cdb[1] & 0x02 != 0 {
        return Err(invalid_cdb());
    }
    if !evpd {
        if cdb[2] != 0 {
            return Err(invalid_cdb());
        }
        return Ok(standard(lu));
    }
    vpd(lu, target, nexus, cdb[2])
}
