//! A media changer (SMC-3): a picker, storage and import/export slots, and data
//! transfer elements that are drive LUs (tape or cd/dvd), possibly of other targets. MOVE MEDIUM
//! into a drive really loads the cartridge image `media_home/BARCODE` into it.
//!
//! Moves open and flush image files, so commands run on the I/O pool, one at a time.

mod device;
pub(crate) mod inventory;
mod opcodes;
pub(crate) mod setup;

use std::sync::Arc;

use parking_lot::Mutex;

use crate::cdb::{invalid_cdb_at, u16_at, u24_at, Outcome};
use crate::lu::Lu;
use crate::sense::{asc, key, Sense};
use crate::target::DriveHandle;
use crate::ScsiResult;
use inventory::{Cartridge, ElementType, Inventory};

pub use crate::target::DriveResolver;

#[derive(Default)]
pub(crate) struct Changer {
    order: tokio::sync::Mutex<()>,
    pub inventory: Arc<Mutex<Inventory>>,
}

const VOLTAG_LEN: usize = 36;
const DVCID_LEN: usize = 36;

fn bad_address() -> Sense {
    Sense::illegal(asc::INVALID_ELEMENT_ADDRESS)
}

/// Runs a changer command (those that are not common SPC ones).
pub(crate) async fn execute(
    lu: &Arc<Lu>,
    changer: &Changer,
    drives: Option<DriveResolver>,
    cdb: &[u8],
) -> Outcome<ScsiResult> {
    let _turn = changer.order.lock().await;
    let inv = changer.inventory.clone();
    let cdb = cdb.to_vec();
    let lu = lu.clone();
    rtgt_backstore::pool::run(move || {
        let mut inv = inv.lock();
        Ok(run(&lu, &mut inv, drives.as_ref(), &cdb))
    })
    .await
    .unwrap_or_else(|e| {
        tracing::error!("changer command on the I/O pool: {e}");
        Err(Sense::of(key::HARDWARE_ERROR, asc::INTERNAL_TARGET_FAILURE).into())
    })
}

fn run(
    lu: &Lu,
    inv: &mut Inventory,
    drives: Option<&DriveResolver>,
    cdb: &[u8],
) -> Outcome<ScsiResult> {
    match cdb[0] {
        0x00 => Ok(ScsiResult::good()),
        // INITIALIZE ELEMENT STATUS (WITH RANGE): the inventory is always known.
        0x07 => Ok(ScsiResult::good()),
        0x37 => {
            if cdb[1] & 0x01 != 0 && !inv.elements.keys().any(|a| *a >= u16_at(cdb, 2)) {
                return Err(bad_address().into());
            }
            Ok(ScsiResult::good())
        }
        0x1a | 0x5a => mode_sense(inv, cdb),
        0x2b => {
            // POSITION TO ELEMENT (SMC-3 6.7): nothing to do but check the addresses.
            transport(inv, u16_at(cdb, 2))?;
            inv.elements.get(&u16_at(cdb, 4)).ok_or_else(bad_address)?;
            Ok(ScsiResult::good())
        }
        0xb8 => read_element_status(inv, drives, cdb),
        0xa5 => {
            transport(inv, u16_at(cdb, 2))?;
            if cdb[10] & 0x01 != 0 {
                // INVERT: single-sided cartridges only.
                return Err(invalid_cdb_at(10, Some(0)));
            }
            move_medium(lu, inv, drives, u16_at(cdb, 4), u16_at(cdb, 6))?;
            Ok(ScsiResult::good())
        }
        0xa6 => {
            transport(inv, u16_at(cdb, 2))?;
            if cdb[10] & 0x03 != 0 {
                return Err(invalid_cdb_at(10, Some(1)));
            }
            exchange(
                lu,
                inv,
                drives,
                u16_at(cdb, 4),
                u16_at(cdb, 6),
                u16_at(cdb, 8),
            )?;
            Ok(ScsiResult::good())
        }
        _ => Err(crate::cdb::invalid_opcode()),
    }
}

/// A transport element address: 0 means the default one (SMC-3 6.6).
fn transport(inv: &Inventory, a: u16) -> Outcome<()> {
    if a == 0 {
        return Ok(());
    }
    match inv.elements.get(&a) {
        Some(e) if e.kind == ElementType::Transport => Ok(()),
        _ => Err(bad_address().into()),
    }
}

fn drive_of(
    inv: &Inventory,
    drives: Option<&DriveResolver>,
    a: u16,
) -> Outcome<Option<DriveHandle>> {
    let e = &inv.elements[&a];
    if e.kind != ElementType::DataTransfer {
        return Ok(None);
    }
    let (tid, lun) = e.drive.ok_or_else(|| {
        // An unmapped drive can't take or give a cartridge.
        Sense::of(key::NOT_READY, asc::MEDIUM_MAGAZINE_NOT_ACCESSIBLE)
    })?;
    let h = drives
        .and_then(|d| d(tid, lun))
        .ok_or_else(|| Sense::of(key::HARDWARE_ERROR, (0x15, 0x01)))?;
    Ok(Some(h))
}

/// Takes the cartridge out of `a` (unloading a drive).
fn take(inv: &mut Inventory, drives: Option<&DriveResolver>, a: u16) -> Outcome<Cartridge> {
    let e = inv.elements.get(&a).ok_or_else(bad_address)?;
    if e.cartridge.is_none() {
        return Err(Sense::illegal(asc::MEDIUM_SOURCE_ELEMENT_EMPTY).into());
    }
    if let Some(h) = drive_of(inv, drives, a)? {
        // SMC-3 6.6: a drive whose medium removal is prevented keeps it.
        h.unload()?;
    }
    let e = inv.elements.get_mut(&a).expect("checked");
    Ok(e.cartridge.take().expect("checked"))
}

/// Puts `c` into the empty element `a` (loading a drive). On failure `c` is handed back.
fn put(
    inv: &mut Inventory,
    drives: Option<&DriveResolver>,
    a: u16,
    from: u16,
    mut c: Cartridge,
) -> Result<(), (Sense, Cartridge)> {
    let kind = inv.elements[&a].kind;
    if kind == ElementType::DataTransfer {
        let h = match drive_of(inv, drives, a) {
            Ok(h) => h.expect("a drive"),
            Err(crate::cdb::Fail::Check(s)) => return Err((s, c)),
            Err(_) => return Err((Sense::of(key::HARDWARE_ERROR, (0x15, 0x01)), c)),
        };
        let Some(home) = inv.media_home.clone() else {
            return Err((Sense::of(key::HARDWARE_ERROR, (0x15, 0x01)), c));
        };
        if let Err(e) = h.load(&home.join(&c.barcode)) {
            tracing::error!("changer: loading {} into element {a}: {e}", c.barcode);
            return Err((Sense::of(key::HARDWARE_ERROR, (0x15, 0x01)), c));
        }
    }
    let from_kind = inv.elements.get(&from).map(|e| e.kind);
    if matches!(
        from_kind,
        Some(ElementType::Storage | ElementType::ImportExport)
    ) {
        c.source = Some(from);
    }
    inv.elements.get_mut(&a).expect("checked").cartridge = Some(c);
    Ok(())
}

/// MOVE MEDIUM (SMC-3 6.6).
fn move_medium(
    lu: &Lu,
    inv: &mut Inventory,
    drives: Option<&DriveResolver>,
    src: u16,
    dst: u16,
) -> Outcome<()> {
    let d = inv.elements.get(&dst).ok_or_else(bad_address)?;
    inv.elements.get(&src).ok_or_else(bad_address)?;
    if src == dst {
        return Ok(());
    }
    if d.cartridge.is_some() {
        return Err(Sense::illegal(asc::MEDIUM_DESTINATION_ELEMENT_FULL).into());
    }
    // PREVENT ALLOW on a changer keeps media in the library (SMC-3 6.11).
    if d.kind == ElementType::ImportExport && lu.medium.lock().prevent_removal() {
        return Err(Sense::illegal(asc::MEDIUM_REMOVAL_PREVENTED).into());
    }
    let c = take(inv, drives, src)?;
    if let Err((s, c)) = put(inv, drives, dst, src, c) {
        // Back where it was (a drive it came from is loaded again).
        let _ = put(inv, drives, src, src, c);
        return Err(s.into());
    }
    Ok(())
}

/// EXCHANGE MEDIUM (SMC-3 6.2): src to first destination, whose medium goes to the
/// second destination (which may be src).
fn exchange(
    lu: &Lu,
    inv: &mut Inventory,
    drives: Option<&DriveResolver>,
    src: u16,
    dst1: u16,
    dst2: u16,
) -> Outcome<()> {
    for a in [src, dst1, dst2] {
        inv.elements.get(&a).ok_or_else(bad_address)?;
    }
    if inv.elements[&src].cartridge.is_none() || inv.elements[&dst1].cartridge.is_none() {
        return Err(Sense::illegal(asc::MEDIUM_SOURCE_ELEMENT_EMPTY).into());
    }
    if dst2 != src && inv.elements[&dst2].cartridge.is_some() {
        return Err(Sense::illegal(asc::MEDIUM_DESTINATION_ELEMENT_FULL).into());
    }
    if lu.medium.lock().prevent_removal()
        && [dst1, dst2]
            .iter()
            .any(|a| inv.elements[a].kind == ElementType::ImportExport)
    {
        return Err(Sense::illegal(asc::MEDIUM_REMOVAL_PREVENTED).into());
    }
    let a = take(inv, drives, src)?;
    let b = match take(inv, drives, dst1) {
        Ok(b) => b,
        Err(e) => {
            let _ = put(inv, drives, src, src, a);
            return Err(e);
        }
    };
    if let Err((s, a)) = put(inv, drives, dst1, src, a) {
        let _ = put(inv, drives, src, src, a);
        let _ = put(inv, drives, dst1, dst1, b);
        return Err(s.into());
    }
    if let Err((s, b)) = put(inv, drives, dst2, dst1, b) {
        tracing::error!("changer: exchange left {} in the picker", b.barcode);
        return Err(s.into());
    }
    Ok(())
}

/// READ ELEMENT STATUS (SMC-3 6.10), with volume tags and device identifiers.
fn read_element_status(
    inv: &Inventory,
    drives: Option<&DriveResolver>,
    cdb: &[u8],
) -> Outcome<ScsiResult> {
    let voltag = cdb[1] & 0x10 != 0;
    let code = cdb[1] & 0x0f;
    let start = u16_at(cdb, 2);
    let count = usize::from(u16_at(cdb, 4));
    let dvcid = cdb[6] & 0x02 != 0;
    let alloc = u24_at(cdb, 7) as usize;
    let want = match code {
        0 => None,
        c => Some(ElementType::from_code(u64::from(c)).ok_or_else(|| invalid_cdb_at(1, Some(3)))?),
    };
    let chosen: Vec<(u16, &inventory::Element)> = inv
        .elements
        .range(start..)
        .filter(|(_, e)| want.is_none_or(|w| e.kind == w))
        .take(count)
        .map(|(a, e)| (*a, e))
        .collect();
    if chosen.is_empty() && !inv.elements.is_empty() {
        return Err(bad_address().into());
    }
    let mut pages = Vec::new();
    let mut i = 0;
    while i < chosen.len() {
        let kind = chosen[i].1.kind;
        let run: Vec<_> = chosen[i..]
            .iter()
            .take_while(|(_, e)| e.kind == kind)
            .collect();
        i += run.len();
        let id_len = if kind == ElementType::DataTransfer {
            DVCID_LEN
        } else {
            0
        };
        let desc_len =
            12 + if voltag { VOLTAG_LEN } else { 0 } + if dvcid { 4 + id_len } else { 0 };
        let mut page = vec![kind as u8, u8::from(voltag) << 7, 0, 0, 0, 0, 0, 0];
        page[2..4].copy_from_slice(&(desc_len as u16).to_be_bytes());
        let bytes = (desc_len * run.len()) as u32;
        page[5..8].copy_from_slice(&bytes.to_be_bytes()[1..]);
        for (a, e) in run {
            let mut d = vec![0u8; desc_len];
            d[0..2].copy_from_slice(&a.to_be_bytes());
            let full = u8::from(e.cartridge.is_some());
            d[2] = match kind {
                ElementType::Transport => full,
                // ACCESS: the picker can reach it.
                ElementType::Storage | ElementType::DataTransfer => 0x08 | full,
                // INENAB, EXENAB, ACCESS, IMPEXP (placed by the operator).
                ElementType::ImportExport => 0x38 | 0x02 | full,
            };
            if let Some(src) = e.cartridge.as_ref().and_then(|c| c.source) {
                d[9] = 0x80; // SVALID
                d[10..12].copy_from_slice(&src.to_be_bytes());
            }
            let mut at = 12;
            if voltag {
                if let Some(c) = &e.cartridge {
                    let mut tag = c.barcode.as_bytes().to_vec();
                    tag.resize(32, b' ');
                    d[at..at + 32].copy_from_slice(&tag);
                }
                at += VOLTAG_LEN;
            }
            if dvcid && kind == ElementType::DataTransfer {
                // A T10 vendor ID based identifier of the drive: vendor, product,
                // serial (SPC-4 7.8.6.4), ASCII.
                let id = e
                    .drive
                    .and_then(|(t, l)| drives.and_then(|f| f(t, l)))
                    .map(|h| {
                        let (v, p) = h.vendor_product();
                        format!("{v:<8.8}{p:<16.16}{}", h.serial())
                    })
                    .unwrap_or_default();
                let mut id = id.into_bytes();
                id.resize(DVCID_LEN, b' ');
                d[at] = 0x02;
                d[at + 1] = 0x01;
                d[at + 3] = DVCID_LEN as u8;
                d[at + 4..at + 4 + DVCID_LEN].copy_from_slice(&id);
            }
            page.extend(d);
        }
        pages.extend(page);
    }
    let mut out = vec![0u8; 8];
    if let Some((a, _)) = chosen.first() {
        out[0..2].copy_from_slice(&a.to_be_bytes());
    }
    out[2..4].copy_from_slice(&(chosen.len() as u16).to_be_bytes());
    out[5..8].copy_from_slice(&(pages.len() as u32).to_be_bytes()[1..]);
    out.extend(pages);
    out.truncate(alloc);
    Ok(ScsiResult::with_data(out))
}

/// MODE SENSE (6) / (10): element address assignment (1Dh), transport geometry (1Eh)
/// and device capabilities (1Fh) pages (SMC-3 7.3). Nothing is changeable.
fn mode_sense(inv: &Inventory, cdb: &[u8]) -> Outcome<ScsiResult> {
    let ten = cdb[0] == 0x5a;
    let pc = cdb[2] >> 6;
    if pc == 3 {
        return Err(Sense::illegal(asc::SAVING_PARAMETERS_NOT_SUPPORTED).into());
    }
    let code = cdb[2] & 0x3f;
    let page = |c: u8| -> Vec<u8> {
        let changeable = pc == 1;
        match c {
            0x1d => {
                let mut p = vec![0u8; 20];
                p[0] = 0x1d;
                p[1] = 18;
                if !changeable {
                    for (i, (first, n)) in inv.ranges().iter().enumerate() {
                        p[2 + 4 * i..4 + 4 * i].copy_from_slice(&first.to_be_bytes());
                        p[4 + 4 * i..6 + 4 * i].copy_from_slice(&n.to_be_bytes());
                    }
                }
                p
            }
            0x1e => vec![0x1e, 2, 0, 0],
            _ => {
                let mut p = vec![0u8; 20];
                p[0] = 0x1f;
                p[1] = 18;
                if !changeable {
                    // Media may be stored in DT, I/E and ST elements and moved or
                    // exchanged between any of them.
                    p[2] = 0x0e;
                    p[4..8].copy_from_slice(&[0x0e; 4]);
                    p[12..16].copy_from_slice(&[0x0e; 4]);
                }
                p
            }
        }
    };
    let mut pages = Vec::new();
    match code {
        0x3f => {
            for c in [0x1d, 0x1e, 0x1f] {
                pages.extend(page(c));
            }
        }
        0x1d..=0x1f => pages.extend(page(code)),
        _ => return Err(invalid_cdb_at(2, Some(5))),
    }
    let mut out = if ten {
        let mut h = vec![0u8; 8];
        h[0..2].copy_from_slice(&((6 + pages.len()) as u16).to_be_bytes());
        h
    } else {
        vec![(3 + pages.len()) as u8, 0, 0, 0]
    };
    out.extend(pages);
    out.truncate(if ten {
        usize::from(u16_at(cdb, 7))
    } else {
        usize::from(cdb[4])
    });
    Ok(ScsiResult::with_data(out))
}

/// What `show` prints of a changer.
pub(crate) fn describe(inv: &Inventory) -> Vec<String> {
    let mut v = vec![format!(
        "Media home: {}",
        inv.media_home
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "None".into())
    )];
    for (a, e) in &inv.elements {
        let what = e
            .cartridge
            .as_ref()
            .map(|c| c.barcode.clone())
            .unwrap_or_else(|| "empty".into());
        let drive = e
            .drive
            .map(|(t, l)| format!(" (tid {t} lun {l})"))
            .unwrap_or_default();
        v.push(format!("Element {a}: {}{drive}: {what}", e.kind.name()));
    }
    v
}
