//! Tape cartridge images (`--device-type tape`).

use crate::Args;

pub fn create(_args: &Args) -> anyhow::Result<()> {
    anyhow::bail!("tape images: not implemented yet")
}

pub fn show(_args: &Args) -> anyhow::Result<()> {
    anyhow::bail!("tape images: not implemented yet")
}
