//! Text key=value pairs as carried in Login and Text PDUs (RFC 7143 §6.1).
//!
//! A text data segment is a sequence of `key=value` pairs, each followed by one NUL. A set of
//! pairs may span several PDUs (the C bit, RFC 7143 §11.10.2 / §11.12.2); a pair may even be
//! split across PDU boundaries, so [`TextAccumulator`] joins the segments before
//! [`TextPairs::parse`] splits them.

use thiserror::Error;

/// Longest key name (RFC 7143 §6.1: "A key-name ... MUST NOT exceed 63 bytes").
pub const MAX_KEY_LEN: usize = 63;
/// Longest value for ordinary keys (RFC 7143 §6.1: 255 bytes unless the key says otherwise).
pub const MAX_VALUE_LEN: usize = 255;
/// Longest value for keys that carry large-binary-values (CHAP_C, CHAP_R, SRP and Kerberos
/// keys; RFC 7143 §6.1 and §12). Encoded in hex, 1024 bytes need 2050 characters; we allow
/// a generous bound that still limits memory.
pub const MAX_LARGE_VALUE_LEN: usize = 8192;
/// Bound on the text of one negotiation set spread over C-bit continued PDUs, so a peer
/// cannot make us hold unbounded memory.
pub const MAX_TEXT_LEN: usize = 64 * 1024;

/// Reserved answer values (RFC 7143 §6.2).
pub const NOT_UNDERSTOOD: &str = "NotUnderstood";
pub const IRRELEVANT: &str = "Irrelevant";
pub const REJECT: &str = "Reject";

/// True for the three reserved answer constants of RFC 7143 §6.2.
pub fn is_reserved_answer(v: &str) -> bool {
    v == NOT_UNDERSTOOD || v == IRRELEVANT || v == REJECT
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum KeyError {
    #[error("text pair {0:?} has no '='")]
    MissingEquals(String),
    #[error("empty key name")]
    EmptyKey,
    #[error("key name {0:?} is longer than 63 bytes")]
    KeyTooLong(String),
    #[error("key name {0:?} has a character RFC 7143 §6.1 does not allow")]
    BadKeyChar(String),
    #[error("value of {key} is {len} bytes, more than the {max} allowed")]
    ValueTooLong { key: String, len: usize, max: usize },
    #[error("text is not valid UTF-8")]
    NotUtf8,
    #[error("key {0} appears more than once")]
    Duplicate(String),
    #[error("text pair {0:?} is not followed by a NUL (RFC 7143 §6.1)")]
    Unterminated(String),
    #[error("negotiation text exceeds {0} bytes")]
    TooMuchText(usize),
    #[error("{key}={value:?} is not a valid number")]
    BadNumber { key: String, value: String },
    #[error("{key}={value:?} is not Yes or No")]
    BadBoolean { key: String, value: String },
    #[error("{key}={value} is outside {min}..={max}")]
    OutOfRange {
        key: String,
        value: String,
        min: u64,
        max: u64,
    },
    #[error("{key}={value:?} is not a valid value")]
    BadValue { key: String, value: String },
}

/// Keys whose values may exceed 255 bytes (RFC 7143 §12: large-binary-values).
pub fn max_value_len(key: &str) -> usize {
    if key == "CHAP_C" || key == "CHAP_R" || key.starts_with("SRP_") || key.starts_with("KRB_AP_") {
        MAX_LARGE_VALUE_LEN
    } else {
        MAX_VALUE_LEN
    }
}

fn valid_key_char(c: u8) -> bool {
    // RFC 7143 §6.1 key-name: letters, digits, '.', '-', '+', '@', '_'; plus '#' for the
    // IANA-registered "X#" extension keys (RFC 7143 §13.5.4).
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'+' | b'@' | b'_' | b'#')
}

/// An ordered list of key=value pairs with unique keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TextPairs {
    pairs: Vec<(String, String)>,
}

impl TextPairs {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses a complete text data segment. Empty entries (stray extra NULs) are skipped;
    /// every pair, the last one included, must be followed by a NUL (RFC 7143 §6.1: a
    /// set ending in the middle of a pair is one the initiator did not finish);
    /// everything else must follow §6.1 too, and duplicate keys are an error (§6.2).
    pub fn parse(data: &[u8]) -> Result<Self, KeyError> {
        if let Some(&last) = data.last() {
            if last != 0 {
                let start = data.iter().rposition(|&b| b == 0).map_or(0, |i| i + 1);
                let pair = String::from_utf8_lossy(&data[start..]);
                return Err(KeyError::Unterminated(truncate(&pair)));
            }
        }
        let mut out = TextPairs::new();
        for raw in data.split(|&b| b == 0) {
            if raw.is_empty() {
                continue;
            }
            let s = std::str::from_utf8(raw).map_err(|_| KeyError::NotUtf8)?;
            let Some((k, v)) = s.split_once('=') else {
                return Err(KeyError::MissingEquals(truncate(s)));
            };
            if k.is_empty() {
                return Err(KeyError::EmptyKey);
            }
            if k.len() > MAX_KEY_LEN {
                return Err(KeyError::KeyTooLong(truncate(k)));
            }
            if !k.bytes().all(valid_key_char) {
                return Err(KeyError::BadKeyChar(truncate(k)));
            }
            let max = max_value_len(k);
            if v.len() > max {
                return Err(KeyError::ValueTooLong {
                    key: k.to_string(),
                    len: v.len(),
                    max,
                });
            }
            if out.get(k).is_some() {
                return Err(KeyError::Duplicate(k.to_string()));
            }
            out.pairs.push((k.to_string(), v.to_string()));
        }
        Ok(out)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn contains(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Appends a pair; a key already present has its value replaced in place.
    pub fn push(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let key = key.into();
        let value = value.into();
        if let Some(p) = self.pairs.iter_mut().find(|(k, _)| *k == key) {
            p.1 = value;
        } else {
            self.pairs.push((key, value));
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The wire form: every pair followed by one NUL (RFC 7143 §6.1).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, v) in &self.pairs {
            encode_pair(&mut out, k, v);
        }
        out
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for TextPairs {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut t = TextPairs::new();
        for (k, v) in iter {
            t.push(k, v);
        }
        t
    }
}

/// Appends `key=value\0`.
pub fn encode_pair(out: &mut Vec<u8>, key: &str, value: &str) {
    out.extend_from_slice(key.as_bytes());
    out.push(b'=');
    out.extend_from_slice(value.as_bytes());
    out.push(0);
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

/// Joins the data segments of C-bit continued PDUs into one text set (RFC 7143 §11.10.2,
/// §11.12.2: a set ends with the first PDU whose C bit is 0).
#[derive(Debug, Clone)]
pub struct TextAccumulator {
    buf: Vec<u8>,
    limit: usize,
}

impl Default for TextAccumulator {
    fn default() -> Self {
        Self::new(MAX_TEXT_LEN)
    }
}

impl TextAccumulator {
    pub fn new(limit: usize) -> Self {
        Self {
            buf: Vec::new(),
            limit,
        }
    }

    /// Adds one PDU's data. Returns the parsed set once a PDU with `continues == false`
    /// arrives, `None` while more is expected. The buffer is cleared after a complete set
    /// and after any error.
    pub fn push(&mut self, data: &[u8], continues: bool) -> Result<Option<TextPairs>, KeyError> {
        if self.buf.len() + data.len() > self.limit {
            self.buf.clear();
            return Err(KeyError::TooMuchText(self.limit));
        }
        self.buf.extend_from_slice(data);
        if continues {
            return Ok(None);
        }
        let res = TextPairs::parse(&self.buf);
        self.buf.clear();
        res.map(Some)
    }

    /// True while a C-bit continued set is incomplete.
    pub fn is_pending(&self) -> bool {
        !self.buf.is_empty()
    }

    pub fn reset(&mut self) {
        self.buf.clear();
    }
}

/// Parses a numerical-value (RFC 7143 §6.1): a decimal-constant without leading zeros, or a binary-value (0x hex or 0b base64) of at most
/// 64 bits.
pub fn parse_number(key: &str, value: &str) -> Result<u64, KeyError> {
    let bad = || KeyError::BadNumber {
        key: key.to_string(),
        value: truncate(value),
    };
    let b = value.as_bytes();
    if b.len() >= 2
        && b[0] == b'0'
        && (b[1] == b'x' || b[1] == b'X' || b[1] == b'b' || b[1] == b'B')
    {
        let bytes = parse_binary(value).ok_or_else(bad)?;
        let sig: Vec<u8> = bytes.iter().copied().skip_while(|&x| x == 0).collect();
        if sig.len() > 8 {
            return Err(bad());
        }
        return Ok(sig.iter().fold(0u64, |a, &x| (a << 8) | x as u64));
    }
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) || (b.len() > 1 && b[0] == b'0') {
        return Err(bad());
    }
    value.parse::<u64>().map_err(|_| bad())
}

/// Parses a number and checks it lies in `min..=max`.
pub fn parse_number_in(key: &str, value: &str, min: u64, max: u64) -> Result<u64, KeyError> {
    let n = parse_number(key, value)?;
    if n < min || n > max {
        return Err(KeyError::OutOfRange {
            key: key.to_string(),
            value: truncate(value),
            min,
            max,
        });
    }
    Ok(n)
}

/// Parses a boolean-value: exactly `Yes` or `No` (RFC 7143 §6.1).
pub fn parse_bool(key: &str, value: &str) -> Result<bool, KeyError> {
    match value {
        "Yes" => Ok(true),
        "No" => Ok(false),
        _ => Err(KeyError::BadBoolean {
            key: key.to_string(),
            value: truncate(value),
        }),
    }
}

pub fn bool_str(b: bool) -> &'static str {
    if b {
        "Yes"
    } else {
        "No"
    }
}

/// Decodes a hex-constant (`0x`/`0X`) or base64-constant (`0b`/`0B`) into bytes
/// (RFC 7143 §6.1). An odd number of hex digits is read as if a leading 0 were present.
pub fn parse_binary(value: &str) -> Option<Vec<u8>> {
    let b = value.as_bytes();
    if b.len() < 3 || b[0] != b'0' {
        return None;
    }
    match b[1] {
        b'x' | b'X' => {
            let digits = &b[2..];
            let mut out = Vec::with_capacity(digits.len().div_ceil(2));
            let mut i = 0;
            if digits.len() % 2 == 1 {
                out.push(hex_val(digits[0])?);
                i = 1;
            }
            while i < digits.len() {
                out.push(hex_val(digits[i])? << 4 | hex_val(digits[i + 1])?);
                i += 2;
            }
            Some(out)
        }
        b'b' | b'B' => base64_decode(&b[2..]),
        _ => None,
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// `0x` followed by lower-case hex digits.
pub fn encode_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(2 + bytes.len() * 2);
    s.push_str("0x");
    for &b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// `0b` followed by RFC 4648 base64 with padding (RFC 7143 §6.1 base64-constant).
pub fn encode_base64(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(2 + bytes.len().div_ceil(3) * 4);
    s.push_str("0b");
    for chunk in bytes.chunks(3) {
        let n = (chunk[0] as u32) << 16
            | (*chunk.get(1).unwrap_or(&0) as u32) << 8
            | *chunk.get(2).unwrap_or(&0) as u32;
        s.push(B64[(n >> 18) as usize & 63] as char);
        s.push(B64[(n >> 12) as usize & 63] as char);
        s.push(if chunk.len() > 1 {
            B64[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        s.push(if chunk.len() > 2 {
            B64[n as usize & 63] as char
        } else {
            '='
        });
    }
    s
}

fn base64_decode(s: &[u8]) -> Option<Vec<u8>> {
    if s.is_empty() || s.len() & 3 != 0 {
        return None;
    }
    let pad = s.iter().rev().take_while(|&&c| c == b'=').count();
    if pad > 2 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    for (ci, chunk) in s.chunks(4).enumerate() {
        let last = ci == s.len() / 4 - 1;
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            let v = match c {
                b'A'..=b'Z' => c - b'A',
                b'a'..=b'z' => c - b'a' + 26,
                b'0'..=b'9' => c - b'0' + 52,
                b'+' => 62,
                b'/' => 63,
                b'=' if last && i >= 4 - pad => 0,
                _ => return None,
            };
            n = n << 6 | v as u32;
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        let take = if last { 3 - pad } else { 3 };
        out.extend_from_slice(&bytes[..take]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_encode_roundtrip() {
        let data = b"InitiatorName=iqn.2026-01.org.example:i1\0SessionType=Normal\0";
        let t = TextPairs::parse(data).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t.get("InitiatorName"), Some("iqn.2026-01.org.example:i1"));
        assert_eq!(t.get("SessionType"), Some("Normal"));
        assert_eq!(t.encode(), data.to_vec());
    }

    #[test]
    fn empty_value_and_value_with_equals() {
        let t = TextPairs::parse(b"SendTargets=\0X-a=b=c\0").unwrap();
        assert_eq!(t.get("SendTargets"), Some(""));
        assert_eq!(t.get("X-a"), Some("b=c"));
    }

    #[test]
    fn tolerates_extra_nuls_but_not_a_missing_last_one() {
        let t = TextPairs::parse(b"A=1\0\0B=2\0").unwrap();
        assert_eq!(t.get("A"), Some("1"));
        assert_eq!(t.get("B"), Some("2"));
        assert_eq!(
            TextPairs::parse(b"A=1\0\0B=2"),
            Err(KeyError::Unterminated("B=2".into()))
        );
        assert_eq!(
            TextPairs::parse(b"A=1"),
            Err(KeyError::Unterminated("A=1".into()))
        );
        assert_eq!(TextPairs::parse(b""), Ok(TextPairs::new()));
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(
            TextPairs::parse(b"NoEquals\0"),
            Err(KeyError::MissingEquals("NoEquals".into()))
        );
        assert_eq!(TextPairs::parse(b"=x\0"), Err(KeyError::EmptyKey));
        assert!(matches!(
            TextPairs::parse(b"Bad Key=1\0"),
            Err(KeyError::BadKeyChar(_))
        ));
        assert!(matches!(
            TextPairs::parse(&[b'K', b'=', 0xff, 0xfe, 0]),
            Err(KeyError::NotUtf8)
        ));
        assert_eq!(
            TextPairs::parse(b"A=1\0A=2\0"),
            Err(KeyError::Duplicate("A".into()))
        );
    }

    #[test]
    fn key_and_value_length_limits() {
        let k63 = "K".repeat(63);
        assert!(TextPairs::parse(format!("{k63}=1\0").as_bytes()).is_ok());
        let k64 = "K".repeat(64);
        assert!(matches!(
            TextPairs::parse(format!("{k64}=1\0").as_bytes()),
            Err(KeyError::KeyTooLong(_))
        ));
        let v255 = "v".repeat(255);
        assert!(TextPairs::parse(format!("A={v255}\0").as_bytes()).is_ok());
        let v256 = "v".repeat(256);
        assert!(matches!(
            TextPairs::parse(format!("A={v256}\0").as_bytes()),
            Err(KeyError::ValueTooLong { max: 255, .. })
        ));
        // CHAP_C carries a large-binary-value.
        let big = format!("CHAP_C=0x{}\0", "ab".repeat(1024));
        assert!(TextPairs::parse(big.as_bytes()).is_ok());
    }

    #[test]
    fn x_hash_keys_are_well_formed() {
        let t = TextPairs::parse(b"X#NodeArchitecture=ExampleOS/v1234,Vendor/1.0\0").unwrap();
        assert!(t.contains("X#NodeArchitecture"));
    }

    #[test]
    fn accumulator_joins_split_pairs() {
        let mut acc = TextAccumulator::default();
        assert_eq!(acc.push(b"InitiatorName=iqn.20", true).unwrap(), None);
        assert!(acc.is_pending());
        assert_eq!(acc.push(b"26-01.x:y\0Sessi", true).unwrap(), None);
        let t = acc.push(b"onType=Discovery\0", false).unwrap().unwrap();
        assert_eq!(t.get("InitiatorName"), Some("iqn.2026-01.x:y"));
        assert_eq!(t.get("SessionType"), Some("Discovery"));
        assert!(!acc.is_pending());
    }

    #[test]
    fn accumulator_bounds_memory() {
        let mut acc = TextAccumulator::new(16);
        acc.push(b"A=0123456789", true).unwrap();
        assert_eq!(
            acc.push(b"0123456789", true),
            Err(KeyError::TooMuchText(16))
        );
        assert!(!acc.is_pending());
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_number("K", "0").unwrap(), 0);
        assert_eq!(parse_number("K", "8192").unwrap(), 8192);
        assert_eq!(parse_number("K", "0x2000").unwrap(), 8192);
        assert_eq!(parse_number("K", "0X2000").unwrap(), 8192);
        assert_eq!(parse_number("K", "0x000000000000002000").unwrap(), 8192);
        assert_eq!(parse_number("K", "0bIAA=").unwrap(), 8192);
        assert_eq!(parse_number("K", "18446744073709551615").unwrap(), u64::MAX);
        for bad in [
            "",
            "-1",
            "012",
            "1a",
            "0x",
            "0xg1",
            "0b",
            "0b===",
            "18446744073709551616",
            "0x10000000000000000",
            " 1",
        ] {
            assert!(parse_number("K", bad).is_err(), "{bad:?}");
        }
        assert!(matches!(
            parse_number_in("K", "511", 512, 16_777_215),
            Err(KeyError::OutOfRange { .. })
        ));
        assert_eq!(parse_number_in("K", "512", 512, 16_777_215).unwrap(), 512);
    }

    #[test]
    fn booleans() {
        assert!(parse_bool("K", "Yes").unwrap());
        assert!(!parse_bool("K", "No").unwrap());
        assert!(parse_bool("K", "yes").is_err());
        assert!(parse_bool("K", "").is_err());
    }

    #[test]
    fn binary_values() {
        assert_eq!(parse_binary("0x0102ff").unwrap(), vec![1, 2, 0xff]);
        assert_eq!(parse_binary("0x102").unwrap(), vec![1, 2]);
        assert_eq!(encode_hex(&[1, 2, 0xff]), "0x0102ff");
        for v in [&b"f"[..], b"fo", b"foo", b"foob", b"fooba", b"foobar"] {
            let e = encode_base64(v);
            assert_eq!(parse_binary(&e).unwrap(), v.to_vec(), "{e}");
        }
        assert_eq!(encode_base64(b"foobar"), "0bZm9vYmFy");
        assert_eq!(encode_base64(b"fo"), "0bZm8=");
        assert!(parse_binary("0bZm=8").is_none());
        assert!(parse_binary("0bZm8").is_none());
    }

    #[test]
    fn reserved_answers() {
        assert!(is_reserved_answer("Reject"));
        assert!(is_reserved_answer("Irrelevant"));
        assert!(is_reserved_answer("NotUnderstood"));
        assert!(!is_reserved_answer("None"));
    }
}
