//! `bootstick list`: the disks that could be written, as a table or JSON.

use super::disks::table;
use super::exit::{Exit, Failure};
use bootstick::devices::{self, Disk, Roots};
use std::path::PathBuf;

/// List disks that can be written (removable or USB-attached ones by default).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Show every disk, including internal and system disks (marked SYSTEM),
    /// loop and optical devices.
    #[arg(long)]
    pub all: bool,
    /// Print a JSON array (schema in docs/cli.md) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Read sysfs, /dev, /proc and /run/udev under this directory instead of
    /// the running system (captured trees, tests).
    #[arg(long, hide = true, value_name = "DIR")]
    pub root: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<(), Failure> {
    let out = super::render::Renderer::report(args.json);
    out.start("list", &ListStart { all: args.all });
    let roots = args.root.as_deref().map_or_else(Roots::live, Roots::under);
    let disks = devices::enumerate(&roots).map_err(|e| Failure::new(Exit::Internal, e))?;
    let shown: Vec<&Disk> = disks
        .iter()
        .filter(|d| args.all || d.listed_by_default)
        .collect();
    if args.json {
        out.document(&Disks { disks: shown });
    } else if shown.is_empty() {
        eprintln!(
            "no removable or USB disks found ({} disks in all; `bootstick list --all` shows them)",
            disks.len()
        );
    } else {
        print!("{}", table(&shown));
    }
    Ok(())
}

/// The `start` line of `list`.
#[derive(serde::Serialize)]
struct ListStart {
    all: bool,
}

/// `list --json`'s `result` fields (docs/cli.md).
#[derive(serde::Serialize)]
struct Disks<'a> {
    disks: Vec<&'a Disk>,
}
