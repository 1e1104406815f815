//! Sense data (SPC-4 4.5).

/// Sense keys (SPC-4 table 27).
pub mod key {
    pub const NO_SENSE: u8 = 0x0;
    pub const RECOVERED_ERROR: u8 = 0x1;
    pub const NOT_READY: u8 = 0x2;
    pub const MEDIUM_ERROR: u8 = 0x3;
    pub const HARDWARE_ERROR: u8 = 0x4;
    pub const ILLEGAL_REQUEST: u8 = 0x5;
    pub const UNIT_ATTENTION: u8 = 0x6;
    pub const DATA_PROTECT: u8 = 0x7;
    pub const BLANK_CHECK: u8 = 0x8;
    pub const VOLUME_OVERFLOW: u8 = 0xd;
    pub const COPY_ABORTED: u8 = 0xa;
    pub const ABORTED_COMMAND: u8 = 0xb;
    pub const MISCOMPARE: u8 = 0xe;
}

/// One sense condition: key, additional sense code and qualifier, and optional
/// INFORMATION field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sense {
    pub key: u8,
    pub asc: u8,
    pub ascq: u8,
    pub information: Option<u64>,
    /// SENSE KEY SPECIFIC bytes with SKSV set (SPC-4 4.5.2.4): a field pointer for
    /// ILLEGAL REQUEST, a progress indication for NOT READY.
    pub sks: Option<[u8; 3]>,
    /// FILEMARK (80h), EOM (40h) and ILI (20h) of sequential-access devices (SSC-3 4.2,
    /// SPC-4 4.5.3 byte 2; 4.5.2.5 stream commands descriptor).
    pub stream: u8,
}

impl Sense {
    pub const fn new(key: u8, asc: u8, ascq: u8) -> Self {
        Self {
            key,
            asc,
            ascq,
            information: None,
            sks: None,
            stream: 0,
        }
    }

    /// Fixed-format sense data (SPC-4 4.5.3), 18 bytes.
    pub fn to_fixed(&self) -> Vec<u8> {
        let mut b = vec![0u8; 18];
        b[0] = 0x70;
        b[2] = (self.key & 0x0f) | (self.stream & 0xe0);
        if let Some(info) = self.information {
            b[0] |= 0x80; // VALID
            b[3..7].copy_from_slice(&(info as u32).to_be_bytes());
        }
        b[7] = 10;
        b[12] = self.asc;
        b[13] = self.ascq;
        if let Some(sks) = self.sks {
            b[15..18].copy_from_slice(&sks);
        }
        b
    }

    /// Descriptor-format sense data (SPC-4 4.5.2).
    pub fn to_descriptor(&self) -> Vec<u8> {
        let mut b = vec![0u8; 8];
        b[0] = 0x72;
        b[1] = self.key & 0x0f;
        b[2] = self.asc;
        b[3] = self.ascq;
        if let Some(info) = self.information {
            // Information descriptor (SPC-4 4.5.2.2).
            b.extend_from_slice(&[0x00, 0x0a, 0x80, 0x00]);
            b.extend_from_slice(&info.to_be_bytes());
        }
        if self.stream != 0 {
            // Stream commands sense data descriptor (SPC-4 4.5.2.5).
            b.extend_from_slice(&[0x04, 0x02, 0x00, self.stream & 0xe0]);
        }
        if let Some(sks) = self.sks {
            // Sense key specific sense data descriptor (SPC-4 4.5.2.4).
            b.extend_from_slice(&[0x02, 0x06, 0x00, 0x00]);
            b.extend_from_slice(&sks);
            b.push(0);
        }
        b[7] = (b.len() - 8) as u8;
        b
    }
}

/// Additional sense code / qualifier pairs used by the device servers (SPC-4 table 28
/// and annex D).
pub mod asc {
    /// (ASC, ASCQ)
    pub type Code = (u8, u8);
    pub const NO_ADDITIONAL_SENSE: Code = (0x00, 0x00);
    pub const LU_NOT_READY_MANUAL_INTERVENTION: Code = (0x04, 0x03);
    /// LOGICAL UNIT NOT ACCESSIBLE, ASYMMETRIC ACCESS STATE TRANSITION (SPC-4 5.16.2.6).
    pub const LU_NOT_ACCESSIBLE_TRANSITION: Code = (0x04, 0x0a);
    /// LOGICAL UNIT NOT ACCESSIBLE, TARGET PORT IN STANDBY STATE (SPC-4 5.16.2.4.4).
    pub const LU_NOT_ACCESSIBLE_STANDBY: Code = (0x04, 0x0b);
    /// LOGICAL UNIT NOT ACCESSIBLE, TARGET PORT IN UNAVAILABLE STATE (SPC-4 5.16.2.4.5).
    pub const LU_NOT_ACCESSIBLE_UNAVAILABLE: Code = (0x04, 0x0c);
    pub const INVALID_FIELD_IN_INFORMATION_UNIT: Code = (0x0e, 0x03);
    pub const WRITE_ERROR: Code = (0x0c, 0x00);
    pub const SANITIZE_IN_PROGRESS: Code = (0x04, 0x1b);
    pub const UNREACHABLE_COPY_TARGET: Code = (0x08, 0x04);
    pub const COPY_TARGET_DEVICE_NOT_REACHABLE: Code = (0x0d, 0x02);
    pub const TOO_MANY_TARGET_DESCRIPTORS: Code = (0x26, 0x06);
    pub const UNSUPPORTED_TARGET_DESCRIPTOR_TYPE_CODE: Code = (0x26, 0x07);
    pub const TOO_MANY_SEGMENT_DESCRIPTORS: Code = (0x26, 0x08);
    pub const UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE_CODE: Code = (0x26, 0x09);
    pub const SANITIZE_COMMAND_FAILED: Code = (0x31, 0x03);
    pub const UNRECOVERED_READ_ERROR: Code = (0x11, 0x00);
    pub const MISCOMPARE_DURING_VERIFY: Code = (0x1d, 0x00);
    pub const PARAMETER_LIST_LENGTH_ERROR: Code = (0x1a, 0x00);
    pub const INVALID_COMMAND_OPERATION_CODE: Code = (0x20, 0x00);
    pub const LBA_OUT_OF_RANGE: Code = (0x21, 0x00);
    pub const INVALID_FIELD_IN_CDB: Code = (0x24, 0x00);
    pub const LOGICAL_UNIT_NOT_SUPPORTED: Code = (0x25, 0x00);
    pub const INVALID_FIELD_IN_PARAMETER_LIST: Code = (0x26, 0x00);
    pub const INVALID_RELEASE_OF_PERSISTENT_RESERVATION: Code = (0x26, 0x04);
    pub const WRITE_PROTECTED: Code = (0x27, 0x00);
    pub const POWER_ON_RESET_OR_BUS_DEVICE_RESET: Code = (0x29, 0x00);
    pub const POWER_ON_OCCURRED: Code = (0x29, 0x01);
    pub const BUS_DEVICE_RESET_FUNCTION_OCCURRED: Code = (0x29, 0x03);
    pub const I_T_NEXUS_LOSS_OCCURRED: Code = (0x29, 0x07);
    pub const COMMANDS_CLEARED_BY_ANOTHER_INITIATOR: Code = (0x2f, 0x00);
    pub const MODE_PARAMETERS_CHANGED: Code = (0x2a, 0x01);
    pub const RESERVATIONS_PREEMPTED: Code = (0x2a, 0x03);
    pub const RESERVATIONS_RELEASED: Code = (0x2a, 0x04);
    pub const REGISTRATIONS_PREEMPTED: Code = (0x2a, 0x05);
    pub const ASYMMETRIC_ACCESS_STATE_CHANGED: Code = (0x2a, 0x06);
    pub const CAPACITY_DATA_HAS_CHANGED: Code = (0x2a, 0x09);
    pub const SAVING_PARAMETERS_NOT_SUPPORTED: Code = (0x39, 0x00);
    pub const MEDIUM_NOT_PRESENT: Code = (0x3a, 0x00);
    pub const REPORTED_LUNS_DATA_HAS_CHANGED: Code = (0x3f, 0x0e);
    pub const INTERNAL_TARGET_FAILURE: Code = (0x44, 0x00);
    pub const MEDIUM_REMOVAL_PREVENTED: Code = (0x53, 0x02);
    // Sequential-access and medium-changer conditions (SSC-3 4.2, SMC-3 table 3).
    pub const FILEMARK_DETECTED: Code = (0x00, 0x01);
    pub const END_OF_PARTITION_MEDIUM_DETECTED: Code = (0x00, 0x02);
    pub const BEGINNING_OF_PARTITION_MEDIUM_DETECTED: Code = (0x00, 0x04);
    pub const END_OF_DATA_DETECTED: Code = (0x00, 0x05);
    pub const LU_NOT_READY_INITIALIZING_COMMAND_REQUIRED: Code = (0x04, 0x02);
    pub const INVALID_ELEMENT_ADDRESS: Code = (0x21, 0x01);
    pub const NOT_READY_TO_READY_CHANGE: Code = (0x28, 0x00);
    pub const IMPORT_OR_EXPORT_ELEMENT_ACCESSED: Code = (0x28, 0x01);
    pub const CLEANING_CARTRIDGE_INSTALLED: Code = (0x30, 0x03);
    pub const CANNOT_WRITE_MEDIUM_INCOMPATIBLE_FORMAT: Code = (0x30, 0x05);
    pub const MEDIUM_FORMAT_CORRUPTED: Code = (0x31, 0x00);
    pub const SEQUENTIAL_POSITIONING_ERROR: Code = (0x3b, 0x08);
    pub const MEDIUM_DESTINATION_ELEMENT_FULL: Code = (0x3b, 0x0d);
    pub const MEDIUM_SOURCE_ELEMENT_EMPTY: Code = (0x3b, 0x0e);
    pub const MEDIUM_MAGAZINE_NOT_ACCESSIBLE: Code = (0x3b, 0x11);
}

impl Sense {
    /// A condition from a sense key and an (ASC, ASCQ) pair from [`asc`].
    pub const fn of(key: u8, code: asc::Code) -> Self {
        Self::new(key, code.0, code.1)
    }

    /// ILLEGAL REQUEST with the given code: the most common failure.
    pub const fn illegal(code: asc::Code) -> Self {
        Self::of(key::ILLEGAL_REQUEST, code)
    }

    pub const fn with_information(mut self, info: u64) -> Self {
        self.information = Some(info);
        self
    }

    /// Sets the FILEMARK / EOM / ILI bits (SSC-3 4.2).
    pub const fn with_stream(mut self, bits: u8) -> Self {
        self.stream = bits;
        self
    }

    /// Points at the offending field (SPC-4 4.5.2.4.2): `cdb` says a CDB field (C/D=1)
    /// rather than a parameter-list one, `byte` is its first byte, `bit` its most
    /// significant bit when the field does not start on a byte boundary.
    pub const fn with_field(mut self, cdb: bool, byte: u16, bit: Option<u8>) -> Self {
        let mut b0 = 0x80 | if cdb { 0x40 } else { 0 };
        if let Some(bit) = bit {
            b0 |= 0x08 | (bit & 0x07);
        }
        let p = byte.to_be_bytes();
        self.sks = Some([b0, p[0], p[1]]);
        self
    }

    /// Encodes in the format the control mode page's D_SENSE bit selects (SPC-4 7.5.8).
    pub fn encode(&self, descriptor: bool) -> Vec<u8> {
        if descriptor {
            self.to_descriptor()
        } else {
            self.to_fixed()
        }
    }
}
