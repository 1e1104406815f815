//! A media changer's elements and what they hold (SMC-3 4.2), configured with tgt's
//! `--params`: `media_home=DIR`, `element_type=N,start_address=A,quantity=Q`,
//! `element_type=2,address=A,barcode=B[,sides=1][,source=S]` (also `element_type=4` for a
//! cartridge in a drive), `element_type=4,address=A,tid=T,lun=L`.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// Element types (SMC-3 table 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum ElementType {
    Transport = 1,
    Storage = 2,
    ImportExport = 3,
    DataTransfer = 4,
}

impl ElementType {
    pub fn from_code(c: u64) -> Option<Self> {
        match c {
            1 => Some(Self::Transport),
            2 => Some(Self::Storage),
            3 => Some(Self::ImportExport),
            4 => Some(Self::DataTransfer),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Self::Transport => "medium transport",
            Self::Storage => "storage",
            Self::ImportExport => "import/export",
            Self::DataTransfer => "data transfer",
        }
    }
}

/// A cartridge and the storage element it last came from (SMC-3 6.10.x SOURCE
/// STORAGE ELEMENT ADDRESS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cartridge {
    pub barcode: String,
    pub source: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Element {
    pub kind: ElementType,
    pub cartridge: Option<Cartridge>,
    /// A data transfer element's drive (tape or cd/dvd): (tid, LUN).
    pub drive: Option<(u32, u64)>,
}

#[derive(Debug, Default)]
pub(crate) struct Inventory {
    pub media_home: Option<PathBuf>,
    pub elements: BTreeMap<u16, Element>,
}

fn num(params: &BTreeMap<String, String>, k: &str) -> Result<Option<u64>, String> {
    params
        .get(k)
        .map(|v| {
            let v = v.trim();
            let parsed = match v.strip_prefix("0x") {
                Some(h) => u64::from_str_radix(h, 16),
                None => v.parse(),
            };
            parsed.map_err(|_| format!("{k}={v}: use a number"))
        })
        .transpose()
}

fn address(params: &BTreeMap<String, String>, k: &str) -> Result<Option<u16>, String> {
    match num(params, k)? {
        Some(a) if (1..=0xffff).contains(&a) => Ok(Some(a as u16)),
        Some(a) => Err(format!("{k}={a}: element addresses are 1 to 65535")),
        None => Ok(None),
    }
}

/// What a configuration change did, so the caller can check a drive exists and tell
/// initiators the inventory changed.
pub(crate) enum Change {
    MediaHome,
    Elements,
    /// A data transfer element now maps to this drive.
    Drive(u32, u64),
    Cartridge,
}

impl Inventory {
    /// Applies one `--op update --params ...` of tgt's changer syntax.
    pub fn configure(&mut self, pairs: &[(String, String)]) -> Result<Change, String> {
        let params: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        let known = [
            "media_home",
            "element_type",
            "start_address",
            "quantity",
            "address",
            "barcode",
            "volume_tag",
            "sides",
            "tid",
            "lun",
            "source",
        ];
        if let Some(k) = params.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(format!("{k}: unknown changer parameter"));
        }
        if let Some(dir) = params.get("media_home") {
            let p = PathBuf::from(dir);
            if !p.is_dir() {
                return Err(format!("media_home={dir}: not a directory"));
            }
            self.media_home = Some(p);
            if params.len() == 1 {
                return Ok(Change::MediaHome);
            }
        }
        let kind = num(&params, "element_type")?.ok_or(
            "element_type=N is required (1 transport, 2 storage, 3 import/export, 4 data transfer)",
        )?;
        let kind = ElementType::from_code(kind)
            .ok_or_else(|| format!("element_type={kind}: use 1, 2, 3 or 4"))?;
        if let Some(start) = address(&params, "start_address")? {
            let q = num(&params, "quantity")?.ok_or("start_address needs quantity=Q")?;
            if q == 0 || u64::from(start) + q - 1 > 0xffff {
                return Err(format!(
                    "quantity={q}: addresses must stay within 1 to 65535"
                ));
            }
            let addrs = start..=(start + (q - 1) as u16);
            if let Some(a) = addrs.clone().find(|a| self.elements.contains_key(a)) {
                return Err(format!("element address {a} is already in use"));
            }
            for a in addrs {
                self.elements.insert(
                    a,
                    Element {
                        kind,
                        cartridge: None,
                        drive: None,
                    },
                );
            }
            return Ok(Change::Elements);
        }
        let a = address(&params, "address")?
            .ok_or("address=A (or start_address=A,quantity=Q) is required")?;
        let home = self.media_home.clone();
        let e = self
            .elements
            .get_mut(&a)
            .filter(|e| e.kind == kind)
            .ok_or_else(|| format!("no {} element at address {a}", kind.name()))?;
        let has_barcode = params.contains_key("barcode") || params.contains_key("volume_tag");
        if kind == ElementType::DataTransfer && !has_barcode {
            let tid = num(&params, "tid")?.ok_or("tid=T and lun=L name the drive")?;
            let lun = num(&params, "lun")?.ok_or("tid=T and lun=L name the drive")?;
            let tid = u32::try_from(tid).map_err(|_| format!("tid={tid}: out of range"))?;
            e.drive = Some((tid, lun));
            return Ok(Change::Drive(tid, lun));
        }
        let barcode = params
            .get("barcode")
            .or(params.get("volume_tag"))
            .ok_or("barcode=B names the cartridge")?;
        if barcode.is_empty()
            || barcode.len() > 32
            || !barcode.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(format!(
                "barcode={barcode}: use 1 to 32 printable characters"
            ));
        }
        if params.get("sides").is_some_and(|s| s != "1") {
            return Err("sides: only single-sided cartridges (sides=1)".into());
        }
        let home = home.ok_or("set media_home=DIR first: cartridges are DIR/BARCODE")?;
        if !home.join(barcode).is_file() {
            return Err(format!(
                "barcode={barcode}: no cartridge image {}",
                home.join(barcode).display()
            ));
        }
        if e.cartridge.is_some() {
            return Err(format!("element {a} already holds a cartridge"));
        }
        // `source=S`: the storage element the cartridge came from, as a saved
        // configuration restores a cartridge that was moved (0: none); a cartridge in
        // a drive is how a saved inventory puts one back there.
        let source = match num(&params, "source")? {
            None => Some(a),
            Some(0) => None,
            Some(s) => Some(
                u16::try_from(s)
                    .map_err(|_| format!("source={s}: element addresses are 1 to 65535"))?,
            ),
        };
        e.cartridge = Some(Cartridge {
            barcode: barcode.clone(),
            source,
        });
        Ok(Change::Cartridge)
    }

    /// The first address and count of each element type, for the element address
    /// assignment page (SMC-3 7.3.3).
    pub fn ranges(&self) -> [(u16, u16); 4] {
        let mut out = [(0u16, 0u16); 4];
        for (a, e) in &self.elements {
            let r = &mut out[e.kind as usize - 1];
            if r.1 == 0 {
                r.0 = *a;
            }
            r.1 += 1;
        }
        out
    }
}
