//! tgt's tape image format (its `bs_ssc` backing store, format version 2), so existing
//! tgt virtual tapes keep working. The layout, as observed in images tgtimg makes:
//!
//! - offset 0: a 48-byte beginning-of-tape header, then at 48 the 1104-byte medium
//!   auxiliary memory (MAM: format version, capacities, cartridge type, barcode, ...),
//!   then at 1152 the first record header;
//! - every header is 48 bytes: a CRC32C of bytes 4..48 (host order, x86: little
//!   endian), then big-endian on-disk size, block size, type, block number and the
//!   offsets of the previous, this and the next header; the record's data follows it.
//!
//! Block types: 02h uncompressed data, 10h beginning of tape, 20h end of data, 40h
//! filemark, 80h setmark.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use super::medium::{CartridgeType, Kind, Label, Record, Scanned};

pub(crate) const HEADER_LEN: u64 = 48;
const MAM_LEN: u64 = 1104;
pub(crate) const FIRST_RECORD: u64 = HEADER_LEN + MAM_LEN;
const FORMAT_VERSION: u32 = 2;

const T_DATA: u32 = 0x02;
const T_COMPRESSED: u32 = 0x01;
const T_BOT: u32 = 0x10;
const T_EOD: u32 = 0x20;
const T_FILEMARK: u32 = 0x40;
const T_SETMARK: u32 = 0x80;

// Offsets in the MAM.
const MAM_VERSION: usize = 0;
const MAM_REMAINING: usize = 8;
const MAM_MAX_CAPACITY: usize = 16;
const MAM_SPACE_REMAINING: usize = 40;
const MAM_MANUFACTURER: usize = 256;
const MAM_SERIAL: usize = 264;
const MAM_TYPE: usize = 336;
const MAM_TYPE_INFO: usize = 338;
const MAM_APP_VENDOR: usize = 344;
const MAM_BARCODE: usize = 568;

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn text(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).trim_end().to_string()
}

fn put(b: &mut [u8], at: usize, s: &str, n: usize, pad: u8) {
    let mut v: Vec<u8> = s.bytes().take(n).collect();
    v.resize(n, pad);
    b[at..at + n].copy_from_slice(&v);
}

/// A 48-byte header.
fn raw_header(
    ondisk: u32,
    blk_sz: u32,
    typ: u32,
    num: u64,
    prev: u64,
    curr: u64,
    next: u64,
) -> Vec<u8> {
    let mut h = vec![0u8; HEADER_LEN as usize];
    h[4..8].copy_from_slice(&ondisk.to_be_bytes());
    h[8..12].copy_from_slice(&blk_sz.to_be_bytes());
    h[12..16].copy_from_slice(&typ.to_be_bytes());
    h[16..24].copy_from_slice(&num.to_be_bytes());
    h[24..32].copy_from_slice(&prev.to_be_bytes());
    h[32..40].copy_from_slice(&curr.to_be_bytes());
    h[40..48].copy_from_slice(&next.to_be_bytes());
    let crc = crc32c::crc32c(&h[4..]);
    h[0..4].copy_from_slice(&crc.to_le_bytes());
    h
}

/// The header of a record of `len` bytes numbered `num` (tgt numbers the first record
/// after beginning-of-tape 1) at offset `at`, after the header at `prev`.
pub(crate) fn header(kind: Kind, len: u32, num: u64, prev: u64, at: u64) -> Vec<u8> {
    match kind {
        Kind::Data => raw_header(
            len,
            len,
            T_DATA,
            num,
            prev,
            at,
            at + HEADER_LEN + u64::from(len),
        ),
        Kind::Filemark => raw_header(0, 0, T_FILEMARK, num, prev, at, at + HEADER_LEN),
        Kind::Eod => raw_header(0, 0, T_EOD, num, prev, at, at),
    }
}

/// Beginning-of-tape header, MAM and end-of-data: a blank tgt cartridge.
pub(crate) fn blank(label: &Label) -> Vec<u8> {
    let mb = (label.capacity >> 20) as u32;
    let mut b = raw_header(0, mb, T_BOT, 0, 0, 0, FIRST_RECORD);
    let mut mam = vec![0u8; MAM_LEN as usize];
    mam[MAM_VERSION..MAM_VERSION + 4].copy_from_slice(&FORMAT_VERSION.to_be_bytes());
    mam[MAM_REMAINING..MAM_REMAINING + 8].copy_from_slice(&label.capacity.to_be_bytes());
    mam[MAM_MAX_CAPACITY..MAM_MAX_CAPACITY + 8].copy_from_slice(&label.capacity.to_be_bytes());
    mam[MAM_SPACE_REMAINING..MAM_SPACE_REMAINING + 8].copy_from_slice(&256u64.to_be_bytes());
    put(&mut mam, MAM_MANUFACTURER, "RTGT", 8, b' ');
    put(&mut mam, MAM_SERIAL, &label.serial, 31, 0);
    mam[MAM_TYPE] = label.kind.code();
    if label.kind == CartridgeType::Cleaning {
        // Cleaning loads left (SMC-3: medium type information of a cleaning cartridge).
        mam[MAM_TYPE_INFO..MAM_TYPE_INFO + 2].copy_from_slice(&20u16.to_be_bytes());
    }
    put(&mut mam, MAM_APP_VENDOR, "RTGT", 8, b' ');
    put(&mut mam, MAM_BARCODE, &label.barcode, 31, b' ');
    b.extend(mam);
    b.extend(header(Kind::Eod, 0, 1, 0, FIRST_RECORD));
    b
}

fn read_header(file: &File, at: u64) -> io::Result<[u8; HEADER_LEN as usize]> {
    let mut h = [0u8; HEADER_LEN as usize];
    file.read_exact_at(&mut h, at)
        .map_err(|_| bad(format!("block header at offset {at} is truncated")))?;
    if u32::from_le_bytes([h[0], h[1], h[2], h[3]]) != crc32c::crc32c(&h[4..]) {
        return Err(bad(format!("block header CRC mismatch at offset {at}")));
    }
    Ok(h)
}

/// Reads the MAM and indexes every record from beginning-of-tape to end-of-data.
pub(crate) fn scan(file: &File) -> io::Result<Scanned> {
    let bot = read_header(file, 0)?;
    if be32(&bot, 12) != T_BOT {
        return Err(bad("no beginning-of-tape header at offset 0"));
    }
    let mut mam = vec![0u8; MAM_LEN as usize];
    file.read_exact_at(&mut mam, HEADER_LEN)
        .map_err(|_| bad("tgt tape MAM is truncated"))?;
    let version = be32(&mam, MAM_VERSION);
    if version != FORMAT_VERSION {
        return Err(bad(format!(
            "tgt tape format version {version} is not supported (2 is)"
        )));
    }
    let label = Label {
        capacity: be64(&mam, MAM_MAX_CAPACITY),
        kind: CartridgeType::from_code(mam[MAM_TYPE])
            .ok_or_else(|| bad(format!("unknown cartridge type {}", mam[MAM_TYPE])))?,
        barcode: text(&mam[MAM_BARCODE..MAM_BARCODE + 32]),
        serial: text(&mam[MAM_SERIAL..MAM_SERIAL + 32]),
    };
    let len = file.metadata()?.len();
    let mut records = Vec::new();
    let mut at = be64(&bot, 40);
    loop {
        let h = read_header(file, at)?;
        let (ondisk, typ, curr, next) = (be32(&h, 4), be32(&h, 12), be64(&h, 32), be64(&h, 40));
        if curr != at {
            return Err(bad(format!(
                "block header at offset {at} says it is at {curr}"
            )));
        }
        let kind = match typ {
            T_EOD => break,
            T_DATA => Kind::Data,
            T_FILEMARK | T_SETMARK => Kind::Filemark,
            T_COMPRESSED => {
                return Err(bad(format!(
                    "compressed block at offset {at} is not supported"
                )))
            }
            t => return Err(bad(format!("unknown block type {t:#x} at offset {at}"))),
        };
        if next != at + HEADER_LEN + u64::from(ondisk) || next > len {
            return Err(bad(format!(
                "block at offset {at} has a bad next offset {next}"
            )));
        }
        records.push(Record {
            kind,
            len: ondisk,
            hdr: at,
        });
        at = next;
    }
    Ok(Scanned {
        label,
        records,
        end: at,
    })
}
