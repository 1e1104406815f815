//! The virtio-scsi LUN field (§5.6.6.1): byte 0 is 1, byte 1 the target, bytes 2-3 a
//! single-level LUN (Linux puts flat space addressing there, 0x40 | LUN >> 8), bytes
//! 4-7 zero. The REPORT LUNS well-known logical unit is `C1 01 00 00 …`.

/// What a request's LUN field addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VirtioLun {
    /// Target `target`, logical unit `lun` (0..16383).
    Lun { target: u8, lun: u64 },
    /// The REPORT LUNS well-known logical unit (SPC-4 8.2).
    ReportLuns,
    /// Neither: the driver gets VIRTIO_SCSI_S_BAD_TARGET.
    Invalid,
}

impl VirtioLun {
    pub fn parse(b: &[u8; 8]) -> Self {
        if b[0] == 0xc1 && b[1] == 0x01 && b[2..].iter().all(|&x| x == 0) {
            return Self::ReportLuns;
        }
        if b[0] != 1 {
            return Self::Invalid;
        }
        let lun = match b[2] >> 6 {
            // Peripheral device addressing (bus 0) or flat space: 14 bits either way.
            0b00 if b[2] == 0 => u64::from(b[3]),
            0b01 => (u64::from(b[2] & 0x3f) << 8) | u64::from(b[3]),
            _ => return Self::Invalid,
        };
        Self::Lun { target: b[1], lun }
    }

    /// The LUN field of an event (§5.6.6.3). Linux reads it as `lun[2] << 8 | lun[3]`
    /// (drivers/scsi/virtio_scsi.c, transport reset handling), so the flat space bit is
    /// left out: with it, LUN 2 came up as LUN 16386.
    pub fn encode_event(target: u8, lun: u64) -> [u8; 8] {
        [1, target, (lun >> 8) as u8 & 0x3f, lun as u8, 0, 0, 0, 0]
    }

    /// The field for target `target`, LUN `lun`, as Linux writes it in requests.
    pub fn encode(target: u8, lun: u64) -> [u8; 8] {
        [
            1,
            target,
            0x40 | ((lun >> 8) as u8 & 0x3f),
            lun as u8,
            0,
            0,
            0,
            0,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lun_fields() {
        assert_eq!(
            VirtioLun::parse(&VirtioLun::encode(0, 5)),
            VirtioLun::Lun { target: 0, lun: 5 }
        );
        assert_eq!(
            VirtioLun::parse(&VirtioLun::encode(3, 16383)),
            VirtioLun::Lun {
                target: 3,
                lun: 16383
            }
        );
        assert_eq!(
            VirtioLun::parse(&[1, 0, 0, 7, 0, 0, 0, 0]),
            VirtioLun::Lun { target: 0, lun: 7 }
        );
        assert_eq!(
            VirtioLun::parse(&[0xc1, 1, 0, 0, 0, 0, 0, 0]),
            VirtioLun::ReportLuns
        );
        assert_eq!(
            VirtioLun::parse(&[0, 0, 0, 0, 0, 0, 0, 0]),
            VirtioLun::Invalid
        );
        assert_eq!(
            VirtioLun::parse(&[1, 0, 0xc0, 0, 0, 0, 0, 0]),
            VirtioLun::Invalid
        );
    }
}
