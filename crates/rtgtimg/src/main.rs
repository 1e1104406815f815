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

use clap::{CommandFactory, Parser};

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

/// `rtgtimg --man` (the rtgtimg(8) page) and `rtgtimg --completions bash|zsh`: generated
/// from the clap definition above, written to man/ and completions/ by
/// scripts/gen-man.sh and scripts/gen-completions.sh. Handled before parsing, since the
/// parser requires --op, --device-type and --file.
fn generated(argv: &[String]) -> Option<ExitCode> {
    let mut out = Vec::new();
    match argv {
        [flag] if flag == "--man" => {
            clap_mangen::Man::new(Args::command())
                .section("8")
                .manual("rtgt")
                .source(format!("rtgt {}", env!("CARGO_PKG_VERSION")))
                .render(&mut out)
                .expect("rendering to memory");
        }
        [flag, shell] if flag == "--completions" => {
            let Ok(shell) = shell.parse::<clap_complete::Shell>() else {
                eprintln!("rtgtimg: --completions: bash or zsh");
                return Some(ExitCode::FAILURE);
            };
            clap_complete::generate(shell, &mut Args::command(), "rtgtimg", &mut out);
        }
        _ => return None,
    }
    let _ = std::io::Write::write_all(&mut std::io::stdout(), &out);
    Some(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if let Some(code) = generated(&argv) {
        return code;
    }
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rtgtimg: {e:#}");
            ExitCode::FAILURE
        }
    }
}
