//! Negotiated session/connection parameters and the target's offered values (RFC 7143 §13).

use thiserror::Error;

use crate::keys;

/// Largest value of MaxRecvDataSegmentLength, MaxBurstLength and FirstBurstLength
/// (RFC 7143 §13.12–§13.14: 2**24 - 1).
pub const MAX_SEGMENT_LIMIT: u32 = 16_777_215;
/// Smallest value of the same keys (RFC 7143 §13.12–§13.14).
pub const MIN_SEGMENT_LIMIT: u32 = 512;
/// MaxRecvDataSegmentLength in force until declared, and during login (RFC 7143 §13.12).
pub const DEFAULT_MAX_RECV_DATA_SEGMENT_LENGTH: u32 = 8192;

/// SessionType (RFC 7143 §13.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SessionType {
    Discovery,
    #[default]
    Normal,
}

impl SessionType {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionType::Discovery => "Discovery",
            SessionType::Normal => "Normal",
        }
    }
}

/// Digest algorithms for HeaderDigest / DataDigest (RFC 7143 §13.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Digest {
    None,
    Crc32c,
}

impl Digest {
    pub fn as_str(self) -> &'static str {
        match self {
            Digest::None => "None",
            Digest::Crc32c => "CRC32C",
        }
    }
    /// Digest names are matched without regard to case, as initiators differ.
    pub fn parse(s: &str) -> Option<Digest> {
        if s.eq_ignore_ascii_case("None") {
            Some(Digest::None)
        } else if s.eq_ignore_ascii_case("CRC32C") {
            Some(Digest::Crc32c)
        } else {
            None
        }
    }
}

/// The result of a login: everything the full-feature phase needs. `Default` gives the
/// RFC 7143 §13 default values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionParams {
    pub session_type: SessionType,
    pub initiator_name: String,
    pub initiator_alias: Option<String>,
    /// None for discovery sessions that did not name a target.
    pub target_name: Option<String>,
    pub target_alias: Option<String>,
    pub target_portal_group_tag: u16,
    pub isid: [u8; 6],
    pub tsih: u16,
    pub cid: u16,
    /// True when this login created a new session (TSIH 0 in the request).
    pub leading: bool,
    /// Authentication method used ("None", "CHAP", ...).
    pub auth_method: String,
    pub header_digest: bool,
    pub data_digest: bool,
    /// Largest data segment we accept (our declared MaxRecvDataSegmentLength).
    pub max_recv_data_segment_length: u32,
    /// Largest data segment we may send: the initiator's declared MaxRecvDataSegmentLength
    /// (8192 if it declared none), capped by the target's MaxXmitDataSegmentLength if set.
    pub max_xmit_data_segment_length: u32,
    pub initial_r2t: bool,
    pub immediate_data: bool,
    pub first_burst_length: u32,
    pub max_burst_length: u32,
    pub max_outstanding_r2t: u16,
    pub data_pdu_in_order: bool,
    pub data_sequence_in_order: bool,
    pub default_time2wait: u16,
    pub default_time2retain: u16,
    pub error_recovery_level: u8,
    pub max_connections: u16,
    /// iSCSIProtocolLevel (RFC 7144 §13.1); 0 if not negotiated.
    pub iscsi_protocol_level: u8,
    /// CmdSN of the leading login request: the first ExpCmdSN (RFC 7143 §11.12.7).
    pub exp_cmd_sn: u32,
    /// StatSN to put in the next response after the final Login Response.
    pub stat_sn: u32,
    /// RDMAExtensions=Yes (RFC 7145 §6.3.1): the session's data moves by RDMA.
    pub rdma_extensions: bool,
    /// iSER's limits on the data in one Send (RFC 7145 §6.3.2, §6.3.3; default 8192):
    /// what we receive, what we may send.
    pub target_recv_data_segment_length: u32,
    pub initiator_recv_data_segment_length: u32,
    /// RFC 7145 §6.3.4: 0 = no limit.
    pub max_outstanding_unexpected_pdus: u32,
}

impl Default for SessionParams {
    fn default() -> Self {
        Self {
            session_type: SessionType::Normal,
            initiator_name: String::new(),
            initiator_alias: None,
            target_name: None,
            target_alias: None,
            target_portal_group_tag: 0,
            isid: [0; 6],
            tsih: 0,
            cid: 0,
            leading: true,
            auth_method: "None".into(),
            header_digest: false,
            data_digest: false,
            max_recv_data_segment_length: DEFAULT_MAX_RECV_DATA_SEGMENT_LENGTH,
            max_xmit_data_segment_length: DEFAULT_MAX_RECV_DATA_SEGMENT_LENGTH,
            initial_r2t: true,
            immediate_data: true,
            first_burst_length: 65536,
            max_burst_length: 262_144,
            max_outstanding_r2t: 1,
            data_pdu_in_order: true,
            data_sequence_in_order: true,
            default_time2wait: 2,
            default_time2retain: 20,
            error_recovery_level: 0,
            max_connections: 1,
            iscsi_protocol_level: 0,
            exp_cmd_sn: 0,
            stat_sn: 0,
            rdma_extensions: false,
            target_recv_data_segment_length: DEFAULT_MAX_RECV_DATA_SEGMENT_LENGTH,
            initiator_recv_data_segment_length: DEFAULT_MAX_RECV_DATA_SEGMENT_LENGTH,
            max_outstanding_unexpected_pdus: 0,
        }
    }
}

/// What the target offers and accepts. `Default` is rtgt's generous set (DESIGN.md
/// "Negotiate generously").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetDefaults {
    pub max_recv_data_segment_length: u32,
    /// Optional cap on the data segments we send, whatever the initiator declares.
    pub max_xmit_data_segment_length: Option<u32>,
    pub first_burst_length: u32,
    pub max_burst_length: u32,
    pub initial_r2t: bool,
    pub immediate_data: bool,
    pub max_outstanding_r2t: u16,
    /// Header digests allowed; the initiator's order of preference decides among them.
    pub header_digest: Vec<Digest>,
    pub data_digest: Vec<Digest>,
    pub max_connections: u16,
    pub error_recovery_level: u8,
    pub default_time2wait: u16,
    pub default_time2retain: u16,
    pub data_pdu_in_order: bool,
    pub data_sequence_in_order: bool,
    pub target_alias: Option<String>,
    /// The connection is an iSER one (RFC 7145): RDMAExtensions=Yes is accepted, and
    /// this is the most data we take in one Send (our TargetRecvDataSegmentLength and
    /// InitiatorRecvDataSegmentLength limit, what the posted receive buffers hold).
    /// None on TCP, where RDMAExtensions is answered No.
    pub rdma_data_segment_limit: Option<u32>,
}

impl Default for TargetDefaults {
    fn default() -> Self {
        Self {
            max_recv_data_segment_length: 262_144,
            max_xmit_data_segment_length: None,
            first_burst_length: 262_144,
            max_burst_length: 1_048_576,
            initial_r2t: false,
            immediate_data: true,
            max_outstanding_r2t: 8,
            header_digest: vec![Digest::None, Digest::Crc32c],
            data_digest: vec![Digest::None, Digest::Crc32c],
            max_connections: 1,
            error_recovery_level: 0,
            default_time2wait: 2,
            default_time2retain: 20,
            data_pdu_in_order: true,
            data_sequence_in_order: true,
            target_alias: None,
            rdma_data_segment_limit: None,
        }
    }
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ParamError {
    #[error("unknown target parameter {0:?} (known: {known})", known = TargetDefaults::KEYS.join(", "))]
    UnknownKey(String),
    #[error("bad value {value:?} for {key}: expected {expected}")]
    BadValue {
        key: &'static str,
        value: String,
        expected: &'static str,
    },
}

impl TargetDefaults {
    /// The parameter names accepted by [`TargetDefaults::apply`] (tgtadm's names).
    pub const KEYS: &'static [&'static str] = &[
        "MaxRecvDataSegmentLength",
        "MaxXmitDataSegmentLength",
        "FirstBurstLength",
        "MaxBurstLength",
        "InitialR2T",
        "ImmediateData",
        "MaxOutstandingR2T",
        "HeaderDigest",
        "DataDigest",
        "MaxConnections",
        "ErrorRecoveryLevel",
        "DefaultTime2Wait",
        "DefaultTime2Retain",
        "DataPDUInOrder",
        "DataSequenceInOrder",
        "TargetAlias",
    ];

    /// Applies one per-target override, as given to
    /// `rtgtadm --op update --mode target --name KEY --value VALUE`. Key names are matched
    /// without regard to case; ranges are those of RFC 7143 §13.
    pub fn apply(&mut self, key: &str, value: &str) -> Result<(), ParamError> {
        let Some(&name) = Self::KEYS.iter().find(|k| k.eq_ignore_ascii_case(key)) else {
            return Err(ParamError::UnknownKey(key.to_string()));
        };
        let bad = |expected: &'static str| ParamError::BadValue {
            key: name,
            value: value.to_string(),
            expected,
        };
        let num = |min: u64, max: u64, expected: &'static str| {
            keys::parse_number_in(name, value.trim(), min, max).map_err(|_| bad(expected))
        };
        let boolean = || {
            let v = value.trim();
            if v.eq_ignore_ascii_case("yes") {
                Ok(true)
            } else if v.eq_ignore_ascii_case("no") {
                Ok(false)
            } else {
                Err(bad("Yes or No"))
            }
        };
        const SEG: &str = "a number from 512 to 16777215";
        let (lo, hi) = (MIN_SEGMENT_LIMIT as u64, MAX_SEGMENT_LIMIT as u64);
        match name {
            "MaxRecvDataSegmentLength" => {
                self.max_recv_data_segment_length = num(lo, hi, SEG)? as u32
            }
            "MaxXmitDataSegmentLength" => {
                self.max_xmit_data_segment_length = Some(num(lo, hi, SEG)? as u32)
            }
            "FirstBurstLength" => self.first_burst_length = num(lo, hi, SEG)? as u32,
            "MaxBurstLength" => self.max_burst_length = num(lo, hi, SEG)? as u32,
            "InitialR2T" => self.initial_r2t = boolean()?,
            "ImmediateData" => self.immediate_data = boolean()?,
            "MaxOutstandingR2T" => {
                self.max_outstanding_r2t = num(1, 65535, "a number from 1 to 65535")? as u16
            }
            "HeaderDigest" | "DataDigest" => {
                let mut list = Vec::new();
                for item in value.split(',') {
                    let d = Digest::parse(item.trim())
                        .ok_or_else(|| bad("a list of None and CRC32C, e.g. None,CRC32C"))?;
                    if !list.contains(&d) {
                        list.push(d);
                    }
                }
                if name == "HeaderDigest" {
                    self.header_digest = list;
                } else {
                    self.data_digest = list;
                }
            }
            "MaxConnections" => {
                self.max_connections = num(1, 65535, "a number from 1 to 65535")? as u16
            }
            // RFC 7143 §13.20 allows 0..2, but rtgt implements only level 0 (no SNACK or
            // connection recovery), so it must not offer more.
            "ErrorRecoveryLevel" => {
                self.error_recovery_level = num(0, 0, "0 (rtgt implements level 0 only)")? as u8
            }
            "DefaultTime2Wait" => {
                self.default_time2wait = num(0, 3600, "a number of seconds from 0 to 3600")? as u16
            }
            "DefaultTime2Retain" => {
                self.default_time2retain =
                    num(0, 3600, "a number of seconds from 0 to 3600")? as u16
            }
            "DataPDUInOrder" => self.data_pdu_in_order = boolean()?,
            "DataSequenceInOrder" => self.data_sequence_in_order = boolean()?,
            "TargetAlias" => {
                if value.len() > keys::MAX_VALUE_LEN || value.contains('\0') {
                    return Err(bad("text of at most 255 bytes"));
                }
                self.target_alias = (!value.is_empty()).then(|| value.to_string());
            }
            _ => unreachable!("every name in KEYS is handled"),
        }
        Ok(())
    }

    /// A copy with every override applied in order; the first bad one is the error.
    pub fn with_overrides<K: AsRef<str>, V: AsRef<str>>(
        &self,
        overrides: &[(K, V)],
    ) -> Result<Self, ParamError> {
        let mut d = self.clone();
        for (k, v) in overrides {
            d.apply(k.as_ref(), v.as_ref())?;
        }
        Ok(d)
    }

    /// The current value of a parameter in the form `apply` takes, for `show` output.
    pub fn get(&self, key: &str) -> Option<String> {
        let name = *Self::KEYS.iter().find(|k| k.eq_ignore_ascii_case(key))?;
        let digests = |l: &[Digest]| l.iter().map(|d| d.as_str()).collect::<Vec<_>>().join(",");
        Some(match name {
            "MaxRecvDataSegmentLength" => self.max_recv_data_segment_length.to_string(),
            "MaxXmitDataSegmentLength" => self
                .max_xmit_data_segment_length
                .unwrap_or(MAX_SEGMENT_LIMIT)
                .to_string(),
            "FirstBurstLength" => self.first_burst_length.to_string(),
            "MaxBurstLength" => self.max_burst_length.to_string(),
            "InitialR2T" => keys::bool_str(self.initial_r2t).into(),
            "ImmediateData" => keys::bool_str(self.immediate_data).into(),
            "MaxOutstandingR2T" => self.max_outstanding_r2t.to_string(),
            "HeaderDigest" => digests(&self.header_digest),
            "DataDigest" => digests(&self.data_digest),
            "MaxConnections" => self.max_connections.to_string(),
            "ErrorRecoveryLevel" => self.error_recovery_level.to_string(),
            "DefaultTime2Wait" => self.default_time2wait.to_string(),
            "DefaultTime2Retain" => self.default_time2retain.to_string(),
            "DataPDUInOrder" => keys::bool_str(self.data_pdu_in_order).into(),
            "DataSequenceInOrder" => keys::bool_str(self.data_sequence_in_order).into(),
            "TargetAlias" => self.target_alias.clone().unwrap_or_default(),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_defaults() {
        let p = SessionParams::default();
        assert_eq!(p.max_recv_data_segment_length, 8192);
        assert_eq!(p.max_xmit_data_segment_length, 8192);
        assert!(p.initial_r2t);
        assert!(p.immediate_data);
        assert_eq!(p.first_burst_length, 65536);
        assert_eq!(p.max_burst_length, 262_144);
        assert_eq!(p.max_outstanding_r2t, 1);
        assert_eq!(p.default_time2wait, 2);
        assert_eq!(p.default_time2retain, 20);
        assert_eq!(p.max_connections, 1);
        assert!(!p.header_digest && !p.data_digest);
    }

    #[test]
    fn generous_target_defaults() {
        let d = TargetDefaults::default();
        assert_eq!(d.max_recv_data_segment_length, 262_144);
        assert_eq!(d.first_burst_length, 262_144);
        assert_eq!(d.max_burst_length, 1_048_576);
        assert!(!d.initial_r2t);
        assert!(d.immediate_data);
        assert_eq!(d.max_outstanding_r2t, 8);
        assert_eq!(d.header_digest, vec![Digest::None, Digest::Crc32c]);
    }

    #[test]
    fn overrides_apply() {
        let d = TargetDefaults::default()
            .with_overrides(&[
                ("MaxRecvDataSegmentLength", "65536"),
                ("initialr2t", "yes"),
                ("HeaderDigest", "CRC32C"),
                ("DataDigest", "crc32c,None"),
                ("MaxOutstandingR2T", "0x10"),
                ("TargetAlias", "disk one"),
                ("MaxXmitDataSegmentLength", "32768"),
            ])
            .unwrap();
        assert_eq!(d.max_recv_data_segment_length, 65536);
        assert!(d.initial_r2t);
        assert_eq!(d.header_digest, vec![Digest::Crc32c]);
        assert_eq!(d.data_digest, vec![Digest::Crc32c, Digest::None]);
        assert_eq!(d.max_outstanding_r2t, 16);
        assert_eq!(d.target_alias.as_deref(), Some("disk one"));
        assert_eq!(d.max_xmit_data_segment_length, Some(32768));
        assert_eq!(d.get("HeaderDigest").unwrap(), "CRC32C");
        assert_eq!(d.get("initialR2T").unwrap(), "Yes");
    }

    #[test]
    fn override_errors_name_the_problem() {
        let mut d = TargetDefaults::default();
        let e = d.apply("MaxRecvDataSegmentLenght", "1").unwrap_err();
        assert!(matches!(e, ParamError::UnknownKey(_)));
        assert!(e.to_string().contains("MaxRecvDataSegmentLength"));
        for (k, v) in [
            ("MaxRecvDataSegmentLength", "511"),
            ("MaxRecvDataSegmentLength", "16777216"),
            ("MaxBurstLength", "big"),
            ("MaxOutstandingR2T", "0"),
            ("InitialR2T", "maybe"),
            ("HeaderDigest", "MD5"),
            ("ErrorRecoveryLevel", "2"),
            ("DefaultTime2Wait", "3601"),
        ] {
            let e = d.apply(k, v).unwrap_err();
            assert!(matches!(e, ParamError::BadValue { .. }), "{k}={v}");
            assert!(e.to_string().contains(v), "{e}");
        }
        // Nothing changed after the failures.
        assert_eq!(d, TargetDefaults::default());
    }
}
