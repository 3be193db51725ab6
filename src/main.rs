//! The `bootstick` binary: parses the command line, runs the command, and is
//! the only place that turns errors into messages and exit codes.

mod cli;

use clap::Parser;
use cli::exit::Exit;
use std::process::ExitCode;

// Until the first command lands, `Command` has no variants and everything
// after parsing is unreachable; the allowances go with the first command.
#[allow(unreachable_code, unused_variables)]
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
