//! rtgt's tape image format (docs/tape-format.md): a 512-byte label, then records,
//! each a 16-byte header and its data, ended by an end-of-data record. Every header
//! and every data block carries a CRC32C, so a damaged image is noticed rather than
//! read back as data.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use super::medium::{CartridgeType, Kind, Label, Record, Scanned};

pub(crate) const MAGIC: &[u8; 8] = b"RTGTTAPE";
pub(crate) const VERSION: u32 = 1;
pub(crate) const LABEL_LEN: u64 = 512;
pub(crate) const RECORD_HEADER_LEN: u64 = 16;

const DATA: u8 = b'D';
const FILEMARK: u8 = b'F';
const EOD: u8 = b'E';

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b)
        .trim_end_matches(['\0', ' '])
        .to_string()
}

fn padded(s: &str, n: usize) -> Vec<u8> {
    let mut v: Vec<u8> = s.bytes().take(n).collect();
    v.resize(n, b' ');
    v
}

/// The label and an end-of-data record: a blank cartridge.
pub(crate) fn blank(label: &Label) -> Vec<u8> {
    let mut b = vec![0u8; LABEL_LEN as usize];
    b[0..8].copy_from_slice(MAGIC);
    b[8..12].copy_from_slice(&VERSION.to_be_bytes());
    b[12..16].copy_from_slice(&(LABEL_LEN as u32).to_be_bytes());
    b[16..24].copy_from_slice(&label.capacity.to_be_bytes());
    b[24] = label.kind.code();
    b[32..64].copy_from_slice(&padded(&label.barcode, 32));
    b[64..96].copy_from_slice(&padded(&label.serial, 32));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    b[96..104].copy_from_slice(&now.to_be_bytes());
    let crc = crc32c::crc32c(&b[..508]);
    b[508..512].copy_from_slice(&crc.to_be_bytes());
    b.extend(record_header(Kind::Eod, &[]));
    b
}

/// A record header: type, data length, the data's CRC32C, the header's own CRC32C.
pub(crate) fn record_header(kind: Kind, data: &[u8]) -> Vec<u8> {
    let mut h = vec![0u8; RECORD_HEADER_LEN as usize];
    h[0] = match kind {
        Kind::Data => DATA,
        Kind::Filemark => FILEMARK,
        Kind::Eod => EOD,
    };
    h[4..8].copy_from_slice(&(data.len() as u32).to_be_bytes());
    h[8..12].copy_from_slice(&crc32c::crc32c(data).to_be_bytes());
    let crc = crc32c::crc32c(&h[..12]);
    h[12..16].copy_from_slice(&crc.to_be_bytes());
    h
}

/// Checks a record's data against the CRC in its header.
pub(crate) fn check_data(file: &File, hdr: u64, data: &[u8]) -> io::Result<()> {
    let mut h = [0u8; RECORD_HEADER_LEN as usize];
    file.read_exact_at(&mut h, hdr)?;
    if u32::from_be_bytes([h[8], h[9], h[10], h[11]]) != crc32c::crc32c(data) {
        return Err(bad(format!(
            "data CRC mismatch in the record at offset {hdr}"
        )));
    }
    Ok(())
}

/// Reads the label and indexes every record up to end-of-data.
pub(crate) fn scan(file: &File) -> io::Result<Scanned> {
    let mut l = [0u8; LABEL_LEN as usize];
    file.read_exact_at(&mut l, 0)
        .map_err(|_| bad("rtgt tape label is truncated"))?;
    let version = u32::from_be_bytes([l[8], l[9], l[10], l[11]]);
    if version != VERSION {
        return Err(bad(format!(
            "rtgt tape image version {version} is not supported (1 is)"
        )));
    }
    if u32::from_be_bytes([l[508], l[509], l[510], l[511]]) != crc32c::crc32c(&l[..508]) {
        return Err(bad("rtgt tape label CRC mismatch"));
    }
    let label = Label {
        capacity: u64::from_be_bytes(l[16..24].try_into().expect("8 bytes")),
        kind: CartridgeType::from_code(l[24])
            .ok_or_else(|| bad(format!("unknown cartridge type {}", l[24])))?,
        barcode: text(&l[32..64]),
        serial: text(&l[64..96]),
    };
    let len = file.metadata()?.len();
    let mut records = Vec::new();
    let mut at = LABEL_LEN;
    loop {
        let mut h = [0u8; RECORD_HEADER_LEN as usize];
        file.read_exact_at(&mut h, at).map_err(|_| {
            bad(format!(
                "record header at offset {at} is truncated (no end-of-data)"
            ))
        })?;
        if u32::from_be_bytes([h[12], h[13], h[14], h[15]]) != crc32c::crc32c(&h[..12]) {
            return Err(bad(format!("record header CRC mismatch at offset {at}")));
        }
        let n = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
        let kind = match h[0] {
            DATA => Kind::Data,
            FILEMARK => Kind::Filemark,
            EOD => break,
            t => return Err(bad(format!("unknown record type {t:#x} at offset {at}"))),
        };
        if at + RECORD_HEADER_LEN + u64::from(n) > len {
            return Err(bad(format!(
                "record at offset {at} runs past the end of the file"
            )));
        }
        records.push(Record {
            kind,
            len: n,
            hdr: at,
        });
        at += RECORD_HEADER_LEN + u64::from(n);
    }
    Ok(Scanned {
        label,
        records,
        end: at,
    })
}
