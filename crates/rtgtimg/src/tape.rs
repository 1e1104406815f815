//! Tape cartridge images (`--device-type tape`): blank cartridges in rtgt's format
//! (docs/tape-format.md) or tgt's, and a summary of what an image holds.

use anyhow::{bail, Context};
use rtgt_scsi::ssc::medium::{CartridgeType, Format, Kind, Label, Medium};

use crate::Args;

/// tgtimg's default size when none is given, in MiB.
const DEFAULT_SIZE_MB: u64 = 8000;

pub fn create(args: &Args) -> anyhow::Result<()> {
    // An empty barcode is a cartridge without a volume tag: tgtimg accepts it and tgt's
    // VTL scripts make placeholder cartridges that way (SMC-3 reports such a tag as
    // blanks). Leaving --barcode out is still a mistake.
    let Some(barcode) = args.barcode.as_deref() else {
        bail!("--barcode is required for a tape (the cartridge's volume tag; \"\" for none)");
    };
    if barcode.len() > 31 || !barcode.bytes().all(|b| b.is_ascii_graphic()) {
        bail!("--barcode {barcode:?}: use up to 31 printable ASCII characters without spaces");
    }
    let t = args.media_type.as_deref().unwrap_or("data");
    let kind = CartridgeType::parse(t)
        .with_context(|| format!("--type {t:?}: use data, clean or worm"))?;
    let format = match args.format.as_deref().unwrap_or("rtgt") {
        "rtgt" => Format::Rtgt,
        "tgt" => Format::Tgt,
        f => bail!("--format {f:?}: use rtgt or tgt"),
    };
    let mb = match args.size {
        Some(0) | None => DEFAULT_SIZE_MB,
        Some(n) => n,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let label = Label {
        barcode: barcode.to_string(),
        capacity: mb.checked_mul(1 << 20).context("--size is too large")?,
        kind,
        serial: format!("{barcode}_{now}"),
    };
    Medium::create(&args.file, format, &label, args.thin).with_context(|| {
        format!(
            "cannot create {} (it must not exist yet)",
            args.file.display()
        )
    })?;
    println!(
        "{}: blank {} cartridge {barcode:?}, {mb} MB, {} format",
        args.file.display(),
        kind.name(),
        format.name()
    );
    Ok(())
}

pub fn show(args: &Args) -> anyhow::Result<()> {
    let m = Medium::open(&args.file, true)
        .with_context(|| format!("cannot read tape image {}", args.file.display()))?;
    let blocks = m.records.iter().filter(|r| r.kind == Kind::Data).count();
    let bytes: u64 = m
        .records
        .iter()
        .filter(|r| r.kind == Kind::Data)
        .map(|r| u64::from(r.len))
        .sum();
    let marks = m
        .records
        .iter()
        .filter(|r| r.kind == Kind::Filemark)
        .count();
    println!("Media     : {}", m.label.barcode);
    println!(" type     : {}", m.label.kind.name());
    println!("Media serial number : {}", m.label.serial);
    println!("Format    : {}", m.format.name());
    println!(
        "Capacity  : {} MB, {} bytes used",
        m.label.capacity >> 20,
        m.used()
    );
    println!("Contents  : {blocks} data blocks ({bytes} bytes), {marks} filemarks");
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use rtgt_scsi::ssc::medium::{CartridgeType, Format, Medium};

    use crate::Args;

    fn args(extra: &[&str]) -> Args {
        let mut v = vec!["rtgtimg", "--op", "new", "--device-type", "tape"];
        v.extend_from_slice(extra);
        Args::try_parse_from(v).unwrap()
    }

    /// tgtimg's placeholder cartridges: `--barcode ""` makes a blank cartridge with no
    /// volume tag, in either format, that reads back as such.
    #[test]
    fn an_empty_barcode_makes_a_placeholder_cartridge() {
        let dir = std::env::temp_dir().join(format!("rtgtimg-empty-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (format, want) in [("rtgt", Format::Rtgt), ("tgt", Format::Tgt)] {
            let file = dir.join(format);
            let _ = std::fs::remove_file(&file);
            let f = file.to_str().unwrap();
            let a = args(&[
                "--barcode",
                "",
                "--size",
                "1",
                "--file",
                f,
                "--format",
                format,
            ]);
            super::create(&a).unwrap();
            let m = Medium::open(&file, true).unwrap();
            assert_eq!(m.label.barcode, "");
            assert_eq!(m.label.kind, CartridgeType::Data);
            assert_eq!(m.label.capacity, 1 << 20);
            assert_eq!(m.format, want);
            assert!(m.records.is_empty());
        }
        // Without --barcode at all, or with one no volume tag can hold: refused.
        let f = dir.join("none");
        let e = super::create(&args(&["--file", f.to_str().unwrap()])).unwrap_err();
        assert!(e.to_string().contains("--barcode is required"), "{e}");
        assert!(!f.exists());
        let e =
            super::create(&args(&["--barcode", "A B", "--file", f.to_str().unwrap()])).unwrap_err();
        assert!(e.to_string().contains("printable"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
