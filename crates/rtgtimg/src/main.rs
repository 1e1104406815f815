//! `rtgtimg`: makes blank media for rtgt's removable-medium devices — tape cartridges
//! for SSC drives and the changer, blank DVD+R discs for MMC drives — and shows what a
//! tape image holds. It accepts tgtimg's command line so existing scripts keep working:
//!
//! ```text
//! rtgtimg --op new --device-type tape --barcode B --size MB --type data|clean|worm --file F [--thin-provisioning]
//! rtgtimg --op show --device-type tape --file F
//! rtgtimg --op new --device-type tape ... --format tgt     (a tgt-format cartridge)
//! rtgtimg --op new --device-type cd --type dvd+r --file F [--size MB]
//! ```

mod cd;
mod tape;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "rtgtimg",
    version,
    about = "Create and show rtgt media images (tgtimg's command line)"
)]
pub struct Args {
    /// new | show
    #[arg(short = 'o', long = "op")]
    pub op: String,
    /// tape | cd
    #[arg(short = 'Y', long = "device-type")]
    pub device_type: String,
    /// The cartridge's barcode (volume tag), for a tape.
    #[arg(short = 'b', long = "barcode")]
    pub barcode: Option<String>,
    /// Media size in megabytes (MiB).
    #[arg(short = 's', long = "size")]
    pub size: Option<u64>,
    /// data | clean | worm for a tape; dvd+r for a cd.
    #[arg(short = 't', long = "type")]
    pub media_type: Option<String>,
    /// The image file (created by `--op new`, which never overwrites one).
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
    /// Create a sparse file.
    #[arg(short = 'T', long = "thin-provisioning")]
    pub thin: bool,
    /// Tape image format: rtgt (default) or tgt (what tgtimg makes, for tgtd).
    #[arg(long = "format")]
    pub format: Option<String>,
}

fn run(args: &Args) -> anyhow::Result<()> {
    match (args.op.as_str(), args.device_type.as_str()) {
        ("new", "tape") => tape::create(args),
        ("show", "tape") => tape::show(args),
        ("new", "cd") => cd::create(args),
        ("show", "cd") => cd::show(args),
        (op, "tape" | "cd") => anyhow::bail!("unknown --op {op:?}: use new or show"),
        (_, t) => anyhow::bail!("unknown --device-type {t:?}: use tape or cd"),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rtgtimg: {e:#}");
            ExitCode::FAILURE
        }
    }
}
