//! iSCSI name validation (RFC 7143 §4.2.7).

/// RFC 7143 §4.2.7.1: an iSCSI name is at most 223 bytes (UTF-8).
pub const MAX_NAME_LEN: usize = 223;

/// Checks that `name` is a well-formed iSCSI name of one of the three types of
/// RFC 7143 §4.2.7.2-4 (`iqn.`, `eui.`, `naa.`). The error says what is wrong.
pub fn validate_iscsi_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the iSCSI name is empty".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "iSCSI name '{name}' is {} bytes long; the limit is {MAX_NAME_LEN} (RFC 7143 §4.2.7.1)",
            name.len()
        ));
    }
    let lower = name.to_ascii_lowercase();
    if lower.starts_with("iqn.") {
        validate_iqn(name)
    } else if lower.starts_with("eui.") {
        validate_hex(name, &[16], "eui.", "§4.2.7.4")
    } else if lower.starts_with("naa.") {
        validate_hex(name, &[16, 32], "naa.", "§4.2.7.5")
    } else {
        Err(format!(
            "invalid iSCSI name '{name}': it must start with iqn., eui. or naa. \
             (for example iqn.2026-11.org.example:disk1; RFC 7143 §4.2.7)"
        ))
    }
}

fn validate_hex(name: &str, lens: &[usize], prefix: &str, clause: &str) -> Result<(), String> {
    if !name.starts_with(prefix) {
        return Err(format!(
            "invalid iSCSI name '{name}': the type prefix must be lowercase '{prefix}'"
        ));
    }
    let hex = &name[prefix.len()..];
    let want = lens
        .iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(" or ");
    if !lens.contains(&hex.len()) || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!(
            "invalid iSCSI name '{name}': '{prefix}' must be followed by exactly {want} \
             hexadecimal digits (RFC 7143 {clause})"
        ));
    }
    Ok(())
}

/// `iqn.yyyy-mm.reversed.domain[:anything]` (RFC 7143 §4.2.7.2).
fn validate_iqn(name: &str) -> Result<(), String> {
    let bad = |why: &str| {
        Err(format!(
            "invalid iSCSI name '{name}': {why} (expected iqn.yyyy-mm.reversed.domain[:identifier], \
             for example iqn.2026-11.org.example:disk1; RFC 7143 §4.2.7.2)"
        ))
    };
    if !name.starts_with("iqn.") {
        return bad("the type prefix must be lowercase 'iqn.'");
    }
    for c in name.chars() {
        let ok = c == '-' || c == '.' || c == ':' || (c.is_alphanumeric() && !c.is_uppercase());
        if !ok {
            return if c.is_uppercase() {
                bad(&format!(
                    "'{c}' is uppercase; iSCSI names are case-normalized to lowercase (RFC 3722)"
                ))
            } else {
                bad(&format!(
                    "character '{}' is not allowed (only letters, digits, '-', '.' and ':')",
                    c.escape_default()
                ))
            };
        }
    }
    let rest = &name[4..];
    let b = rest.as_bytes();
    let date_ok = b.len() >= 7
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[5..7].iter().all(u8::is_ascii_digit)
        && matches!(
            &rest[5..7],
            "01" | "02" | "03" | "04" | "05" | "06" | "07" | "08" | "09" | "10" | "11" | "12"
        );
    if !date_ok {
        return bad("'iqn.' must be followed by a date yyyy-mm");
    }
    let after_date = &rest[7..];
    let Some(domain_and_id) = after_date.strip_prefix('.') else {
        return bad("the date must be followed by '.' and a reversed domain name");
    };
    let domain = domain_and_id.split(':').next().unwrap_or("");
    if domain.is_empty() || domain.split('.').any(str::is_empty) {
        return bad("the naming authority (reversed domain name) is missing or has an empty label");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_names() {
        for n in [
            "iqn.2026-11.org.example:disk1",
            "iqn.2001-04.com.example",
            "iqn.2001-04.com.example:storage:diskarrays-sn-a8675309",
            "iqn.1993-08.org.debian:01:abcdef",
            "eui.02004567A425678D",
            "naa.52004567BA64678D",
            "naa.62004567BA64678D0123456789ABCDEF",
        ] {
            assert_eq!(validate_iscsi_name(n), Ok(()), "{n}");
        }
    }

    #[test]
    fn rejects_bad_names() {
        for n in [
            "",
            "badname",
            "IQN.2026-11.org.example:x",
            "iqn.2026-13.org.example:x",
            "iqn.26-11.org.example",
            "iqn.2026-11",
            "iqn.2026-11.:x",
            "iqn.2026-11org.example",
            "iqn.2026-11.org..example",
            "iqn.2026-11.org.example:DISK",
            "iqn.2026-11.org.example:disk 1",
            "iqn.2026-11.org.example:disk_1",
            "eui.0200",
            "eui.02004567A425678G",
            "naa.1234",
        ] {
            let e = validate_iscsi_name(n).unwrap_err();
            assert!(e.contains("iSCSI name"), "{n}: {e}");
        }
        let long = format!("iqn.2026-11.org.example:{}", "a".repeat(220));
        assert!(validate_iscsi_name(&long).unwrap_err().contains("223"));
    }
}
