//! rtgtd: serves SCSI logical units over iSCSI. Command line compatible with tgtd.

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

use clap::Parser;

fn main() -> ExitCode {
    let opts = cli::Options::parse();
    if opts.man {
        print!("{}", man::page());
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
