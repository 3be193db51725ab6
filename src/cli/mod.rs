//! The command line: argument definitions (clap) and one module per command.
//! Commands call the library, render its events, and map its typed errors to
//! [`exit::Exit`] codes; nothing below `src/cli` is part of the library API.

pub mod compare;
pub mod exit;
pub mod extract;
pub mod fs_choice;
pub mod inspect;
pub mod list;
pub mod ls;
pub mod render;
pub mod target;
pub mod verify;
pub mod write;

use clap::{Parser, Subcommand};

/// Write installer images to USB sticks that boot, and prove they do.
#[derive(Debug, Parser)]
#[command(name = "bootstick", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Write(write::Args),
    Compare(compare::Args),
    /// List disks that can be written (removable or USB-attached; --all for every disk).
    List(list::Args),
    /// Check an image's checksum and signature the way its distribution publishes them.
    Verify(verify::Args),
    /// Show what an image holds (filesystems, El Torito, partition tables) and
    /// whether it would be written raw or through a built layout, and why.
    Inspect(inspect::Args),
    /// List a directory of an image's file tree (UDF, Rock Ridge, Joliet or ISO 9660).
    Ls(ls::Args),
    /// Copy an image's files into a directory; nothing is written outside it.
    Extract(extract::Args),
}

impl Command {
    /// Runs the chosen command.
    pub fn run(self) -> Result<(), exit::Failure> {
        match self {
            Command::Write(a) => write::run(a),
            Command::Compare(a) => compare::run(a),
            Command::List(args) => list::run(args),
            Command::Verify(args) => verify::run(args),
            Command::Inspect(args) => inspect::run(args),
            Command::Ls(args) => ls::run(args),
            Command::Extract(args) => extract::run(args),
        }
    }
}
