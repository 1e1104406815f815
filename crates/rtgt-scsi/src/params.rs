//! `--params` of a logical unit, with tgt's key names.

use crate::ScsiError;

/// The parsed, validated LU parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LuParams {
    pub vendor_id: String,
    pub product_id: String,
    pub product_rev: String,
    /// Overrides the derived LU designator in VPD page 0x83.
    pub scsi_id: Option<String>,
    /// Overrides the derived unit serial number (VPD page 0x80).
    pub scsi_sn: Option<String>,
    pub removable: bool,
    pub readonly: bool,
    pub online: bool,
    /// Descriptor-format sense by default (sets D_SENSE's initial value).
    pub descriptor_sense: bool,
    pub thin_provisioning: bool,
    /// `write_cache=on|off`: the caching mode page's WCE to start with (SBC-4 6.5.5);
    /// off makes every write durable before GOOD.
    pub write_cache: bool,
    /// `nv_cache=1`: the store is trusted to be non-volatile (a battery-backed array, a
    /// RAM disk): flushes and FUA are skipped and VPD 86h says NV_SUP (fileio_tgt -c).
    pub nv_cache: bool,
    /// `physical_blocksize=N` (or tgt-style `lbppbe=E`, N = logical << E): the physical
    /// block READ CAPACITY (16) reports; None derives it from the store.
    pub physical_block_size: Option<PhysicalBlock>,
    /// SANITIZE OVERWRITE pace in MiB/s (0: as fast as the store goes), so a sanitize
    /// of one LU leaves the others their bandwidth.
    pub sanitize_rate: u32,
}

/// How the physical block size was given: in bytes or as an exponent of the logical one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PhysicalBlock {
    Bytes(u32),
    Exponent(u8),
}

impl Default for LuParams {
    fn default() -> Self {
        Self {
            vendor_id: "RTGT".into(),
            product_id: "VIRTUAL-DISK".into(),
            product_rev: "0001".into(),
            scsi_id: None,
            scsi_sn: None,
            removable: false,
            readonly: false,
            online: true,
            descriptor_sense: false,
            thin_provisioning: false,
            write_cache: true,
            nv_cache: false,
            physical_block_size: None,
            sanitize_rate: 0,
        }
    }
}

fn bad(k: &str, v: &str, why: &str) -> ScsiError {
    ScsiError::BadParam(format!("{k}={v}: {why}"))
}

fn flag(k: &str, v: &str) -> Result<bool, ScsiError> {
    match v {
        "0" => Ok(false),
        "1" => Ok(true),
        _ => Err(bad(k, v, "use 0 or 1")),
    }
}

/// tgt's flags are 0/1; on/off reads better for a cache.
fn on_off(k: &str, v: &str) -> Result<bool, ScsiError> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "on" | "yes" => Ok(true),
        "0" | "off" | "no" => Ok(false),
        _ => Err(bad(k, v, "use on or off (1 or 0)")),
    }
}

/// An ASCII field of at most `max` bytes (SPC-4 4.3.1: INQUIRY strings are printable ASCII).
fn ascii(k: &str, v: &str, max: usize) -> Result<String, ScsiError> {
    if v.is_empty() || v.len() > max || !v.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(bad(
            k,
            v,
            &format!("use 1 to {max} printable ASCII characters"),
        ));
    }
    Ok(v.to_string())
}

impl LuParams {
    /// Applies `pairs` on top of `self`; nothing changes when any pair is bad.
    pub fn apply(&self, pairs: &[(String, String)]) -> Result<Self, ScsiError> {
        let mut p = self.clone();
        for (k, v) in pairs {
            let (k, v) = (k.trim(), v.trim());
            match k {
                "vendor_id" => p.vendor_id = ascii(k, v, 8)?,
                "product_id" => p.product_id = ascii(k, v, 16)?,
                "product_rev" => p.product_rev = ascii(k, v, 4)?,
                // VPD 0x83 carries it as an ASCII designator; keep it within one.
                "scsi_id" => p.scsi_id = Some(ascii(k, v, 200)?),
                "scsi_sn" => p.scsi_sn = Some(ascii(k, v, 200)?),
                "removable" => p.removable = flag(k, v)?,
                "readonly" => p.readonly = flag(k, v)?,
                "online" => p.online = flag(k, v)?,
                "sense_format" => p.descriptor_sense = flag(k, v)?,
                "thin_provisioning" => p.thin_provisioning = flag(k, v)?,
                "sanitize_rate" => {
                    p.sanitize_rate = v
                        .parse()
                        .map_err(|_| bad(k, v, "use MiB/s, 0 for unlimited"))?
                }
                "write_cache" => p.write_cache = on_off(k, v)?,
                "nv_cache" => p.nv_cache = on_off(k, v)?,
                "physical_blocksize" | "physical_block_size" => {
                    let n: u32 = v
                        .parse()
                        .ok()
                        .filter(|n: &u32| n.is_power_of_two() && (512..=1 << 24).contains(n))
                        .ok_or_else(|| bad(k, v, "use a power of two from 512, e.g. 4096"))?;
                    p.physical_block_size = Some(PhysicalBlock::Bytes(n));
                }
                "lbppbe" => {
                    let e: u8 = v
                        .parse()
                        .ok()
                        .filter(|e| *e <= 15)
                        .ok_or_else(|| bad(k, v, "use an exponent from 0 to 15"))?;
                    p.physical_block_size = Some(PhysicalBlock::Exponent(e));
                }
                _ => return Err(bad(k, v, "unknown parameter")),
            }
        }
        Ok(p)
    }

    /// The parameters that differ from the defaults, as `key=value` pairs in canonical
    /// spelling: applied to the defaults they give back `self` (the saved configuration
    /// of a running LU).
    pub fn to_pairs(&self) -> Vec<(String, String)> {
        let d = Self::default();
        let mut v: Vec<(String, String)> = Vec::new();
        let mut put = |k: &str, val: String| v.push((k.to_string(), val));
        let b = |x: bool| if x { "1" } else { "0" }.to_string();
        if self.vendor_id != d.vendor_id {
            put("vendor_id", self.vendor_id.clone());
        }
        if self.product_id != d.product_id {
            put("product_id", self.product_id.clone());
        }
        if self.product_rev != d.product_rev {
            put("product_rev", self.product_rev.clone());
        }
        if let Some(id) = &self.scsi_id {
            put("scsi_id", id.clone());
        }
        if let Some(sn) = &self.scsi_sn {
            put("scsi_sn", sn.clone());
        }
        if self.removable != d.removable {
            put("removable", b(self.removable));
        }
        if self.readonly != d.readonly {
            put("readonly", b(self.readonly));
        }
        if self.online != d.online {
            put("online", b(self.online));
        }
        if self.descriptor_sense != d.descriptor_sense {
            put("sense_format", b(self.descriptor_sense));
        }
        if self.thin_provisioning != d.thin_provisioning {
            put("thin_provisioning", b(self.thin_provisioning));
        }
        if self.write_cache != d.write_cache {
            put(
                "write_cache",
                if self.write_cache { "on" } else { "off" }.into(),
            );
        }
        if self.nv_cache != d.nv_cache {
            put("nv_cache", if self.nv_cache { "on" } else { "off" }.into());
        }
        match self.physical_block_size {
            Some(PhysicalBlock::Bytes(n)) => put("physical_blocksize", n.to_string()),
            Some(PhysicalBlock::Exponent(e)) => put("lbppbe", e.to_string()),
            None => {}
        }
        if self.sanitize_rate != d.sanitize_rate {
            put("sanitize_rate", self.sanitize_rate.to_string());
        }
        v
    }
}

/// The value that gives parameter `key` its default back, for the keys that have one
/// (`scsi_id`, `scsi_sn` and the physical block size have none: they are derived).
pub fn default_lu_param(key: &str) -> Option<String> {
    let d = LuParams::default();
    let b = |x: bool| if x { "1" } else { "0" }.to_string();
    Some(match key {
        "vendor_id" => d.vendor_id,
        "product_id" => d.product_id,
        "product_rev" => d.product_rev,
        "removable" => b(d.removable),
        "readonly" => b(d.readonly),
        "online" => b(d.online),
        "sense_format" => b(d.descriptor_sense),
        "thin_provisioning" => b(d.thin_provisioning),
        "write_cache" => if d.write_cache { "on" } else { "off" }.into(),
        "nv_cache" => if d.nv_cache { "on" } else { "off" }.into(),
        "sanitize_rate" => d.sanitize_rate.to_string(),
        _ => return None,
    })
}

/// `pairs` validated and in the canonical form [`LuInfo::params`](crate::LuInfo) reports
/// (defaults left out), so a configuration can be compared with a running LU.
pub fn canonical_lu_params(pairs: &[(String, String)]) -> Result<Vec<(String, String)>, ScsiError> {
    Ok(LuParams::default().apply(pairs)?.to_pairs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(k: &str, v: &str) -> Vec<(String, String)> {
        vec![(k.to_string(), v.to_string())]
    }

    #[test]
    fn pairs_round_trip() {
        let given: Vec<(String, String)> = [
            ("vendor_id", "ACME"),
            ("scsi_id", "my-id"),
            ("scsi_sn", "SN1"),
            ("readonly", "1"),
            ("sense_format", "1"),
            ("write_cache", "0"),
            ("nv_cache", "1"),
            ("lbppbe", "3"),
            ("sanitize_rate", "10"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let p = LuParams::default().apply(&given).unwrap();
        let pairs = p.to_pairs();
        assert_eq!(LuParams::default().apply(&pairs).unwrap(), p);
        assert!(pairs.contains(&("write_cache".into(), "off".into())));
        assert!(LuParams::default().to_pairs().is_empty());
        assert_eq!(canonical_lu_params(&kv("readonly", "0")).unwrap(), vec![]);
    }

    #[test]
    fn known_keys_apply() {
        let p = LuParams::default()
            .apply(&[
                ("vendor_id".into(), "ACME".into()),
                ("readonly".into(), "1".into()),
                ("sense_format".into(), "1".into()),
            ])
            .unwrap();
        assert_eq!(p.vendor_id, "ACME");
        assert!(p.readonly);
        assert!(p.descriptor_sense);
    }

    #[test]
    fn cache_and_physical_block_params() {
        let p = LuParams::default();
        assert!(p.write_cache && !p.nv_cache && p.physical_block_size.is_none());
        let p = p
            .apply(&[
                ("write_cache".into(), "off".into()),
                ("nv_cache".into(), "1".into()),
                ("physical_blocksize".into(), "4096".into()),
            ])
            .unwrap();
        assert!(!p.write_cache && p.nv_cache);
        assert_eq!(p.physical_block_size, Some(PhysicalBlock::Bytes(4096)));
        let p = p.apply(&kv("lbppbe", "3")).unwrap();
        assert_eq!(p.physical_block_size, Some(PhysicalBlock::Exponent(3)));
        assert!(p.apply(&kv("write_cache", "maybe")).is_err());
        assert!(p.apply(&kv("physical_blocksize", "3000")).is_err());
        assert!(p.apply(&kv("lbppbe", "16")).is_err());
    }

    #[test]
    fn bad_values_name_key_and_value() {
        let e = LuParams::default()
            .apply(&kv("readonly", "yes"))
            .unwrap_err();
        assert_eq!(e, ScsiError::BadParam("readonly=yes: use 0 or 1".into()));
        let e = LuParams::default().apply(&kv("colour", "red")).unwrap_err();
        assert!(matches!(e, ScsiError::BadParam(s) if s.starts_with("colour=red")));
        assert!(LuParams::default()
            .apply(&kv("vendor_id", "TOO-LONG-VENDOR"))
            .is_err());
        assert!(
            LuParams::default()
                .apply(&kv("thin_provisioning", "1"))
                .unwrap()
                .thin_provisioning
        );
        assert!(LuParams::default()
            .apply(&kv("thin_provisioning", "0"))
            .is_ok());
    }
}
