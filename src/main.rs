//! The `bootstick` binary: parses the command line, runs the command, and is
//! the only place that turns errors into messages and exit codes.

mod cli;

use clap::Parser;
use cli::exit::Exit;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli.command.run() {
        Ok(()) => Exit::Ok.into(),
        Err(failure) => {
            eprintln!("bootstick: error: {:#}", failure.error);
            failure.exit.into()
        }
    }
}
