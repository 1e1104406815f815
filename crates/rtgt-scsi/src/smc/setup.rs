//! A changer's inventory as the `--op update --params` lines that build it again: what
//! a saved configuration keeps so a restart puts every cartridge back where it was
//! (SMC-3 4.2: the element addresses, and what each element holds).

use super::inventory::{ElementType, Inventory};

/// The lines, in the order they must be applied: media home, element ranges (runs of
/// consecutive addresses of one type), drive mappings, then cartridges with the
/// storage element they came from (SMC-3 6.10.x SOURCE STORAGE ELEMENT ADDRESS).
pub(crate) fn lines(inv: &Inventory) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(home) = &inv.media_home {
        out.push(format!("media_home={}", home.display()));
    }
    let mut run: Option<(ElementType, u16, u16)> = None;
    let flush = |r: Option<(ElementType, u16, u16)>, out: &mut Vec<String>| {
        if let Some((k, start, q)) = r {
            out.push(format!(
                "element_type={},start_address={start},quantity={q}",
                k as u8
            ));
        }
    };
    for (a, e) in &inv.elements {
        run = match run {
            Some((k, start, q))
                if k == e.kind && u32::from(start) + u32::from(q) == u32::from(*a) =>
            {
                Some((k, start, q + 1))
            }
            other => {
                flush(other, &mut out);
                Some((e.kind, *a, 1))
            }
        };
    }
    flush(run, &mut out);
    for (a, e) in &inv.elements {
        if let Some((tid, lun)) = e.drive {
            out.push(format!("element_type=4,address={a},tid={tid},lun={lun}"));
        }
    }
    for (a, e) in &inv.elements {
        if let Some(c) = &e.cartridge {
            let mut l = format!(
                "element_type={},address={a},barcode={}",
                e.kind as u8, c.barcode
            );
            if c.source != Some(*a) {
                match c.source {
                    Some(s) => l.push_str(&format!(",source={s}")),
                    None => l.push_str(",source=0"),
                }
            }
            out.push(l);
        }
    }
    out
}
