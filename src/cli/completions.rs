//! `bootstick completions SHELL` and `bootstick man DIR`: shell completion
//! scripts and manual pages, generated from the same clap definitions that
//! parse the command line, so they can never describe other options than
//! the binary takes.

use super::exit::{Exit, Failure};
use clap::CommandFactory;
use std::path::PathBuf;

/// Print shell completions: bash, zsh, fish, elvish or powershell.
///
/// bash: `bootstick completions bash > /etc/bash_completion.d/bootstick`
/// (or `source <(bootstick completions bash)` in ~/.bashrc);
/// zsh: `bootstick completions zsh > "${fpath[1]}/_bootstick"`;
/// fish: `bootstick completions fish > ~/.config/fish/completions/bootstick.fish`.
#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Write manual pages (roff): bootstick.1 and bootstick-COMMAND.1 for each
/// command, into DIR (created if missing). `scripts/man.sh` runs it.
#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Where the pages go, e.g. /usr/local/share/man/man1.
    pub dir: PathBuf,
}

pub fn completions(args: CompletionsArgs) -> Result<(), Failure> {
    let mut cmd = super::Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "bootstick", &mut std::io::stdout());
    Ok(())
}

pub fn man(args: ManArgs) -> Result<(), Failure> {
    let io = |e: std::io::Error| {
        Failure::new(
            Exit::WriteFailed,
            anyhow::Error::new(e).context(format!(
                "cannot write manual pages into {}",
                args.dir.display()
            )),
        )
    };
    std::fs::create_dir_all(&args.dir).map_err(io)?;
    clap_mangen::generate_to(super::Cli::command(), &args.dir).map_err(io)?;
    println!("manual pages written to {}", args.dir.display());
    Ok(())
}
