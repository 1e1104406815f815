//! Blank DVD+R images (`--device-type cd --type dvd+r`).

use crate::Args;

pub fn create(_args: &Args) -> anyhow::Result<()> {
    anyhow::bail!("dvd+r images: not implemented yet")
}

pub fn show(_args: &Args) -> anyhow::Result<()> {
    anyhow::bail!("dvd+r images: not implemented yet")
}
