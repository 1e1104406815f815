//! rtgtd: serves SCSI logical units over iSCSI. Command line compatible with tgtd.

mod build_info;
mod cli;
mod coalesce;
mod control;
mod daemon;
mod demo;
mod guard;
mod isns;
mod listen;
mod man;
mod metrics;
mod notify;
mod save;
mod stop;
mod transport;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

fn main() -> ExitCode {
    // `--version` names the cargo features built in (build_info::FEATURES).
    let matches = cli::Options::command()
        .version(&*Box::leak(build_info::version().into_boxed_str()))
        .get_matches();
    let opts = cli::Options::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if opts.man {
        print!("{}", man::page());
        return ExitCode::SUCCESS;
    }
    if let Some(shell) = opts.completions {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut cli::Options::command(), "rtgtd", &mut out);
        let _ = std::io::Write::write_all(&mut std::io::stdout(), &out);
        return ExitCode::SUCCESS;
    }
    match daemon::run(opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rtgtd: {e:#}");
            ExitCode::FAILURE
        }
    }
}
