//! Parsing of `--params k=v,...` lists and validation of the per-target iSCSI keys that
//! `--op update --mode target --name KEY --value V` sets.

/// Splits `k=v,k2=v2` into pairs. Empty items are ignored; an item without `=` is an error.
pub fn parse_kv_list(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        match item.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                out.push((k.trim().to_string(), v.trim().to_string()))
            }
            _ => {
                return Err(format!(
                    "invalid parameter '{item}' in '{s}': use key=value[,key=value...]"
                ))
            }
        }
    }
    Ok(out)
}

enum Kind {
    /// A number in an inclusive range.
    Num(u64, u64),
    /// Yes or No.
    Bool,
    /// A list of None / CRC32C, in order of preference.
    Digest,
    /// Free text (TargetAlias).
    Text,
    /// Temporary or Permanent (RedirectReason).
    Reason,
}

/// Target-level keys an administrator may override: the operational keys of
/// RFC 7143 §13 the target declares or offers, plus tgt's own per-target knobs.
const KEYS: &[(&str, Kind)] = &[
    ("MaxRecvDataSegmentLength", Kind::Num(512, 16_777_215)), // §13.12
    ("MaxBurstLength", Kind::Num(512, 16_777_215)),           // §13.13
    ("FirstBurstLength", Kind::Num(512, 16_777_215)),         // §13.14
    ("MaxOutstandingR2T", Kind::Num(1, 65_535)),              // §13.17
    ("MaxConnections", Kind::Num(1, 65_535)),                 // §13.2
    ("DefaultTime2Wait", Kind::Num(0, 3600)),                 // §13.15
    ("DefaultTime2Retain", Kind::Num(0, 3600)),               // §13.16
    ("ErrorRecoveryLevel", Kind::Num(0, 2)),                  // §13.20
    ("InitialR2T", Kind::Bool),                               // §13.10
    ("ImmediateData", Kind::Bool),                            // §13.11
    ("DataPDUInOrder", Kind::Bool),                           // §13.18
    ("DataSequenceInOrder", Kind::Bool),                      // §13.19
    ("HeaderDigest", Kind::Digest),                           // §13.1
    ("DataDigest", Kind::Digest),                             // §13.1
    ("TargetAlias", Kind::Text),                              // §13.6
    ("MaxQueueCmd", Kind::Num(1, 65_535)),
    ("nop_interval", Kind::Num(0, 3600)),
    ("nop_count", Kind::Num(0, 65_535)),
    // Login redirection (RFC 7143 §11.13.5 status class 1), with tgt's names.
    ("RedirectAddress", Kind::Text),
    ("RedirectPort", Kind::Num(1, 65_535)),
    ("RedirectReason", Kind::Reason),
];

/// Names of the keys [`check_iscsi_param`] accepts.
pub fn iscsi_param_names() -> Vec<&'static str> {
    KEYS.iter().map(|(k, _)| *k).collect()
}

/// Validates `name=value` and returns the key in its canonical spelling and the value
/// normalized (`yes` → `Yes`, `crc32c,none` → `CRC32C,None`). Key names match
/// case-insensitively, as tgtadm's do.
pub fn check_iscsi_param(name: &str, value: &str) -> Result<(String, String), String> {
    let Some((key, kind)) = KEYS.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)) else {
        return Err(format!(
            "unknown parameter '{name}' (known: state, {})",
            iscsi_param_names().join(", ")
        ));
    };
    let value = value.trim();
    let norm = match kind {
        Kind::Num(lo, hi) => match value.parse::<u64>() {
            Ok(v) if (*lo..=*hi).contains(&v) => v.to_string(),
            _ => {
                return Err(format!(
                    "invalid value '{value}' for {key}: use a number from {lo} to {hi}"
                ))
            }
        },
        Kind::Bool => match value.to_ascii_lowercase().as_str() {
            "yes" => "Yes".into(),
            "no" => "No".into(),
            _ => return Err(format!("invalid value '{value}' for {key}: use Yes or No")),
        },
        Kind::Digest => {
            let mut out = Vec::new();
            for d in value.split(',').map(str::trim) {
                match d.to_ascii_lowercase().as_str() {
                    "none" => out.push("None"),
                    "crc32c" => out.push("CRC32C"),
                    _ => {
                        return Err(format!(
                            "invalid value '{value}' for {key}: use None, CRC32C or a list such as CRC32C,None"
                        ))
                    }
                }
            }
            out.join(",")
        }
        Kind::Reason => match value.to_ascii_lowercase().as_str() {
            "temporary" => "Temporary".into(),
            "permanent" => "Permanent".into(),
            _ => {
                return Err(format!(
                    "invalid value '{value}' for {key}: use Temporary or Permanent"
                ))
            }
        },
        Kind::Text => {
            if value.len() > 255 || value.contains('\0') {
                return Err(format!(
                    "invalid value for {key}: at most 255 bytes of text"
                ));
            }
            value.to_string()
        }
    };
    Ok((key.to_string(), norm))
}

/// Whether a `--params` value means "on" (tgt accepts 1/0; yes/no/on/off are kinder).
pub fn truthy(v: &str) -> bool {
    matches!(v.to_ascii_lowercase().as_str(), "1" | "yes" | "on" | "true")
}

/// Parses a size such as `1073741824`, `512M`, `1G`, `2T` (binary multiples).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => {
                    return Err(format!(
                        "invalid size '{s}': use bytes or a K, M, G or T suffix"
                    ))
                }
            };
            (&s[..i], m)
        }
        _ => (s, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("invalid size '{s}': use bytes or a K, M, G or T suffix"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_lists() {
        assert_eq!(
            parse_kv_list("readonly=1, vendor_id=ACME,,").unwrap(),
            vec![
                ("readonly".to_string(), "1".to_string()),
                ("vendor_id".to_string(), "ACME".to_string())
            ]
        );
        assert!(parse_kv_list("readonly").unwrap_err().contains("readonly"));
        assert!(parse_kv_list("=1").is_err());
    }

    #[test]
    fn iscsi_keys() {
        assert_eq!(
            check_iscsi_param("maxrecvdatasegmentlength", "65536").unwrap(),
            ("MaxRecvDataSegmentLength".into(), "65536".into())
        );
        assert_eq!(check_iscsi_param("InitialR2T", "yes").unwrap().1, "Yes");
        assert_eq!(
            check_iscsi_param("HeaderDigest", "crc32c,none").unwrap().1,
            "CRC32C,None"
        );
        assert!(check_iscsi_param("MaxRecvDataSegmentLength", "abc")
            .unwrap_err()
            .contains("512"));
        assert!(check_iscsi_param("MaxRecvDataSegmentLength", "100").is_err());
        assert!(check_iscsi_param("ImmediateData", "maybe").is_err());
        assert!(check_iscsi_param("HeaderDigest", "md5").is_err());
        assert!(check_iscsi_param("Foo", "1")
            .unwrap_err()
            .contains("unknown parameter 'Foo'"));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("512m").unwrap(), 512 << 20);
        assert!(parse_size("1X").is_err());
        assert!(parse_size("").is_err());
    }
}
