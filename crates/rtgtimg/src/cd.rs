//! Blank DVD+R images (`--device-type cd --type dvd+r`).
//!
//! A blank DVD+R is an empty file, as tgtimg makes it: rtgtd's cd drive reads an empty
//! image as a blank disc and a non-empty one as a recorded disc (DVD-ROM), so images
//! made by either tool work in either daemon. `--size` says nothing for a DVD+R (the
//! disc holds 4.7 GB; the file grows as it is burned) and is ignored, as by tgtimg.

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;

use anyhow::Context;

use crate::Args;

pub fn create(args: &Args) -> anyhow::Result<()> {
    match args.media_type.as_deref() {
        Some(t) if t.eq_ignore_ascii_case("dvd+r") => {}
        Some(t) => anyhow::bail!("unknown --type {t:?} for a cd: use dvd+r"),
        None => anyhow::bail!("--type is required: use --type dvd+r"),
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o660)
        .open(&args.file)
        .with_context(|| format!("cannot create {}", args.file.display()))?;
    println!("Created blank DVD+R image file : {}", args.file.display());
    Ok(())
}

/// What disc an image is: blank DVD+R, or recorded (with its ISO 9660 volume name).
pub fn show(args: &Args) -> anyhow::Result<()> {
    let mut f = std::fs::File::open(&args.file)
        .with_context(|| format!("cannot open {}", args.file.display()))?;
    let len = f.metadata()?.len();
    if len == 0 {
        println!("{}: blank DVD+R", args.file.display());
        return Ok(());
    }
    let blocks = len.div_ceil(2048);
    println!(
        "{}: recorded disc (DVD-ROM), {blocks} blocks of 2048 bytes ({} MB)",
        args.file.display(),
        len >> 20
    );
    // ISO 9660 7.4: the primary volume descriptor is sector 16, "\x01CD001", with the
    // volume identifier at byte 40.
    let mut pvd = [0u8; 72];
    if f.seek(SeekFrom::Start(16 * 2048)).is_ok()
        && f.read_exact(&mut pvd).is_ok()
        && &pvd[..6] == b"\x01CD001"
    {
        let name = String::from_utf8_lossy(&pvd[40..72]);
        println!("ISO 9660 volume: {}", name.trim_end());
    }
    Ok(())
}
