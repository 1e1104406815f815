//! A tape cartridge image: a label and a sequence of records (data blocks of any size,
//! filemarks) ended by end-of-data, kept in a file in one of two formats — rtgt's own
//! (docs/tape-format.md) or tgt's (what `tgtimg --op new --device-type tape` makes).
//!
//! The records are indexed in memory when the image is opened, so positioning (SPACE,
//! LOCATE, READ POSITION) never reads the file; reads and appends are one `pread` /
//! `pwrite` each. Everything here blocks: callers run it on the I/O pool.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::{rtgt_image, tgt_image};

/// The cartridge types of SMC-3 table 20 that a tape image can be (tgt's MAM keeps the
/// same codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CartridgeType {
    Data,
    Cleaning,
    Worm,
}

impl CartridgeType {
    pub fn code(self) -> u8 {
        match self {
            Self::Data => 1,
            Self::Cleaning => 2,
            Self::Worm => 4,
        }
    }
    pub fn from_code(c: u8) -> Option<Self> {
        match c {
            0 | 1 => Some(Self::Data),
            2 => Some(Self::Cleaning),
            4 => Some(Self::Worm),
            _ => None,
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "data" => Some(Self::Data),
            "clean" | "cleaning" => Some(Self::Cleaning),
            "worm" => Some(Self::Worm),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Self::Data => "data",
            Self::Cleaning => "clean",
            Self::Worm => "worm",
        }
    }
}

/// What is written on the cartridge's label (and in tgt's medium auxiliary memory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    pub barcode: String,
    /// Native capacity in bytes, record headers included.
    pub capacity: u64,
    pub kind: CartridgeType,
    pub serial: String,
}

/// On-disk format of an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// rtgt's own (docs/tape-format.md).
    Rtgt,
    /// tgt's `bs_ssc` format (version 2).
    Tgt,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Self::Rtgt => "rtgt",
            Self::Tgt => "tgt",
        }
    }
    /// Length of a record header, after which the record's data follows.
    pub(crate) fn header_len(self) -> u64 {
        match self {
            Self::Rtgt => rtgt_image::RECORD_HEADER_LEN,
            Self::Tgt => tgt_image::HEADER_LEN,
        }
    }
    /// Offset of the first record header.
    pub(crate) fn first_record(self) -> u64 {
        match self {
            Self::Rtgt => rtgt_image::LABEL_LEN,
            Self::Tgt => tgt_image::FIRST_RECORD,
        }
    }
}

/// A record kind (SSC-3 3.1: logical objects are logical blocks and filemarks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Data,
    Filemark,
    /// End of data: not a logical object, only on the medium.
    Eod,
}

/// One logical object as indexed: its kind, its length and where its header is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    pub kind: Kind,
    pub len: u32,
    pub hdr: u64,
}

/// What a scan of an image found.
pub(crate) struct Scanned {
    pub label: Label,
    pub records: Vec<Record>,
    /// Offset of the end-of-data header.
    pub end: u64,
}

/// An opened cartridge image.
pub struct Medium {
    file: File,
    pub path: PathBuf,
    pub format: Format,
    pub label: Label,
    pub records: Vec<Record>,
    /// Offset of the end-of-data header: where the next record goes.
    end: u64,
    /// Opened read-only (file permissions or `readonly=1`).
    pub read_only: bool,
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

impl Medium {
    /// Opens an image, detecting its format, and indexes its records.
    pub fn open(path: &Path, read_only: bool) -> io::Result<Self> {
        let (file, read_only) = if read_only {
            (File::open(path)?, true)
        } else {
            match std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
            {
                Ok(f) => (f, false),
                Err(e)
                    if e.kind() == io::ErrorKind::PermissionDenied
                        || e.raw_os_error() == Some(30) =>
                {
                    (File::open(path)?, true)
                }
                Err(e) => return Err(e),
            }
        };
        let mut magic = [0u8; 8];
        file.read_exact_at(&mut magic, 0)
            .map_err(|_| bad("too short to be a tape image"))?;
        let (format, scanned) = if &magic == rtgt_image::MAGIC {
            (Format::Rtgt, rtgt_image::scan(&file)?)
        } else {
            (
                Format::Tgt,
                tgt_image::scan(&file)
                    .map_err(|e| bad(format!("neither an rtgt nor a tgt tape image ({e})")))?,
            )
        };
        Ok(Self {
            file,
            path: path.to_path_buf(),
            format,
            label: scanned.label,
            records: scanned.records,
            end: scanned.end,
            read_only,
        })
    }

    /// Creates a blank image (only a label and end-of-data); never overwrites a file.
    pub fn create(path: &Path, format: Format, label: &Label, sparse: bool) -> io::Result<()> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)?;
        let bytes = match format {
            Format::Rtgt => rtgt_image::blank(label),
            Format::Tgt => tgt_image::blank(label),
        };
        file.write_all_at(&bytes, 0)?;
        if !sparse {
            // Nothing to preallocate: a tape image grows as it is written. `sparse`
            // is accepted for tgtimg's --thin-provisioning.
        }
        file.sync_all()
    }

    /// Bytes of the medium in use: record headers and data up to end-of-data.
    pub fn used(&self) -> u64 {
        self.end - self.format.first_record()
    }

    /// Reads the data of record `i` into `buf` (at most `buf.len()` bytes of it).
    pub fn read(&self, i: usize, buf: &mut [u8]) -> io::Result<()> {
        let r = self.records[i];
        let at = r.hdr + self.format.header_len();
        self.file.read_exact_at(buf, at)?;
        if self.format == Format::Rtgt && buf.len() == r.len as usize {
            rtgt_image::check_data(&self.file, r.hdr, buf)?;
        }
        Ok(())
    }

    /// Drops records `i..` (a write or erase at position `i` ends the data there,
    /// SSC-3 4.2.7); end-of-data moves to `i`.
    pub fn truncate(&mut self, i: usize) -> io::Result<()> {
        if i >= self.records.len() {
            return Ok(());
        }
        let at = self.records[i].hdr;
        self.records.truncate(i);
        self.end = at;
        let eod = self.encode(Kind::Eod, &[], at, i);
        self.file.write_all_at(&eod, at)
    }

    /// Appends records at end-of-data in one write: their headers and data, then a new
    /// end-of-data header.
    pub fn append(&mut self, recs: &[(Kind, &[u8])]) -> io::Result<()> {
        let total: usize = recs
            .iter()
            .map(|(_, d)| d.len() + self.format.header_len() as usize)
            .sum();
        let mut buf = Vec::with_capacity(total + self.format.header_len() as usize);
        let mut at = self.end;
        let mut added = Vec::with_capacity(recs.len());
        for (kind, data) in recs {
            let n = self.records.len() + added.len();
            buf.extend(self.encode_with_prev(*kind, data, at, n, &added));
            buf.extend_from_slice(data);
            added.push(Record {
                kind: *kind,
                len: data.len() as u32,
                hdr: at,
            });
            at += self.format.header_len() + data.len() as u64;
        }
        let n = self.records.len() + added.len();
        buf.extend(self.encode_with_prev(Kind::Eod, &[], at, n, &added));
        self.file.write_all_at(&buf, self.end)?;
        self.records.extend(added);
        self.end = at;
        Ok(())
    }

    /// Makes what was written durable (SSC-3: WRITE FILEMARKS with IMMED=0, REWIND and
    /// UNLOAD empty the buffer to the medium).
    pub fn sync(&self) -> io::Result<()> {
        if self.read_only {
            return Ok(());
        }
        self.file.sync_data()
    }

    fn encode(&self, kind: Kind, data: &[u8], at: u64, index: usize) -> Vec<u8> {
        self.encode_with_prev(kind, data, at, index, &[])
    }

    /// The header of the record that will be number `index` at offset `at`; `pending`
    /// are records being appended before it in the same write.
    fn encode_with_prev(
        &self,
        kind: Kind,
        data: &[u8],
        at: u64,
        index: usize,
        pending: &[Record],
    ) -> Vec<u8> {
        match self.format {
            Format::Rtgt => rtgt_image::record_header(kind, data),
            Format::Tgt => {
                let prev = pending
                    .last()
                    .or(self.records[..index.min(self.records.len())].last())
                    .map(|r| r.hdr)
                    .unwrap_or(0);
                tgt_image::header(kind, data.len() as u32, index as u64 + 1, prev, at)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label() -> Label {
        Label {
            barcode: "TAPE01".into(),
            capacity: 1 << 20,
            kind: CartridgeType::Data,
            serial: "TAPE01_1".into(),
        }
    }

    fn roundtrip(format: Format) {
        let dir = std::env::temp_dir().join(format!(
            "rtgt-medium-{}-{}",
            format.name(),
            std::process::id()
        ));
        let _ = std::fs::remove_file(&dir);
        Medium::create(&dir, format, &label(), false).unwrap();
        let mut m = Medium::open(&dir, false).unwrap();
        assert_eq!(m.format, format);
        assert_eq!(m.label.barcode, "TAPE01");
        assert!(m.records.is_empty());
        m.append(&[(Kind::Data, b"hello"), (Kind::Filemark, b"")])
            .unwrap();
        m.append(&[(Kind::Data, b"world!!")]).unwrap();
        drop(m);
        let mut m = Medium::open(&dir, false).unwrap();
        let kinds: Vec<_> = m.records.iter().map(|r| (r.kind, r.len)).collect();
        assert_eq!(
            kinds,
            vec![(Kind::Data, 5), (Kind::Filemark, 0), (Kind::Data, 7)]
        );
        let mut b = vec![0; 7];
        m.read(2, &mut b).unwrap();
        assert_eq!(&b, b"world!!");
        m.truncate(1).unwrap();
        m.append(&[(Kind::Data, b"x")]).unwrap();
        drop(m);
        let m = Medium::open(&dir, false).unwrap();
        let kinds: Vec<_> = m.records.iter().map(|r| (r.kind, r.len)).collect();
        assert_eq!(kinds, vec![(Kind::Data, 5), (Kind::Data, 1)]);
        std::fs::remove_file(&dir).unwrap();
    }

    #[test]
    fn rtgt_format_roundtrip() {
        roundtrip(Format::Rtgt);
    }

    #[test]
    fn tgt_format_roundtrip() {
        roundtrip(Format::Tgt);
    }
}
