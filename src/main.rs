//! The `bootstick` binary: parses the command line, runs the command, and is
//! the only place that turns errors into messages and exit codes.

mod cli;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    cli::render::start_clock();
    // First, so a signal during anything below is handled (cli::signals).
    if let Err(e) = cli::signals::install(cli::render::interrupted) {
        cli::signals::say(&format!(
            "bootstick: warning: cannot handle SIGINT/SIGTERM/SIGHUP ({e}); a signal will stop the job without a report"
        ));
    }
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match cli::Cli::try_parse_from(&argv) {
        Ok(cli) => cli,
        Err(e) => return cli::usage_error(e, &argv).into(),
    };
    cli::render::begin(cli.command.invocation());
    cli::render::finish(cli.command.run()).into()
}
