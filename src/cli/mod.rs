//! The command line: argument definitions (clap) and one module per command.
//! Commands call the library, render its events, and map its typed errors to
//! [`exit::Exit`] codes; nothing below `src/cli` is part of the library API.

pub mod advice;
pub mod backup;
pub mod bmap;
pub mod boot;
pub mod boot_test;
pub mod compare;
pub mod completions;
pub mod disks;
pub mod exit;
pub mod extract;
pub mod format;
pub mod fs_choice;
pub mod inspect;
pub mod list;
pub mod ls;
pub mod mode;
pub mod mount;
pub mod piped;
pub mod probe;
pub mod probe_report;
pub mod references;
pub mod render;
pub mod signals;
pub mod station;
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
    BootTest(boot_test::Args),
    Probe(probe::Args),
    Backup(backup::Args),
    Format(format::Args),
    /// Mount an image's file tree read-only (FUSE) on a directory, in the
    /// foreground, until Ctrl-C or `bootstick umount`.
    Mount(mount::Args),
    /// Unmount a directory `bootstick mount` mounted.
    Umount(mount::UmountArgs),
    Station(station::Args),
    Completions(completions::CompletionsArgs),
    /// Write the manual pages into a directory (scripts/man.sh).
    #[command(hide = true)]
    Man(completions::ManArgs),
}

impl Command {
    /// What the run is, for its JSON lines and its interruption message.
    pub fn invocation(&self) -> render::Invocation {
        let (command, json, image, has_target, untouched) = match self {
            Command::Write(a) => ("write", a.json, Some(&a.image), true, "nothing was written"),
            Command::Compare(a) => ("compare", a.json, Some(&a.image), true, ""),
            Command::List(a) => ("list", a.json, None, false, ""),
            Command::Verify(a) => ("verify", a.json, Some(&a.image), false, ""),
            Command::Inspect(a) => ("inspect", a.json, Some(&a.image), false, ""),
            Command::Ls(a) => ("ls", a.json, Some(&a.image), false, ""),
            Command::Extract(a) => (
                "extract",
                false,
                Some(&a.image),
                false,
                "nothing was extracted",
            ),
            Command::BootTest(a) => ("boot-test", a.json, Some(&a.target), false, ""),
            Command::Probe(a) => (
                "probe",
                a.json,
                a.target.as_ref(),
                true,
                "nothing was written",
            ),
            Command::Backup(a) => (
                "backup",
                a.json,
                Some(&a.target),
                false,
                "no file was written",
            ),
            Command::Format(a) => (
                "format",
                a.json,
                a.target.as_ref(),
                true,
                "nothing was written",
            ),
            Command::Station(a) => (
                "station",
                a.json,
                Some(&a.image),
                false,
                "nothing was written",
            ),
            Command::Completions(_) => ("completions", false, None, false, ""),
            Command::Man(_) => ("man", false, None, false, ""),
            Command::Mount(a) => ("mount", false, Some(&a.image), false, "nothing was mounted"),
            Command::Umount(_) => ("umount", false, None, false, ""),
        };
        render::Invocation {
            command,
            json,
            image: image.cloned(),
            has_target,
            untouched,
        }
    }

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
            Command::BootTest(args) => boot_test::run(args),
            Command::Probe(args) => probe::run(args),
            Command::Backup(args) => backup::run(args),
            Command::Format(args) => format::run(args),
            Command::Station(args) => station::run(args),
            Command::Completions(args) => completions::completions(args),
            Command::Man(args) => completions::man(args),
            Command::Mount(args) => mount::run(args),
            Command::Umount(args) => mount::run_umount(args),
        }
    }
}

/// Handles a command line clap refused: help and version are printed as
/// asked (exit 0); a usage error is printed to stderr as clap words it and,
/// when `--json` is on the command line, reported as a JSON `start` and
/// `result` (docs/cli.md). Returns the exit code.
pub fn usage_error(e: clap::Error, argv: &[std::ffi::OsString]) -> exit::Exit {
    use clap::error::ErrorKind;
    use clap::CommandFactory;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return exit::Exit::Ok;
    }
    let _ = e.print();
    let args: Vec<&std::ffi::OsStr> = argv
        .iter()
        .skip(1)
        .map(|a| a.as_os_str())
        .take_while(|a| *a != "--")
        .collect();
    let json = args.iter().any(|a| *a == "--json");
    let cmd = Cli::command();
    let command = args
        .iter()
        .find(|a| !a.to_string_lossy().starts_with('-'))
        .and_then(|a| {
            cmd.get_subcommands()
                .find(|s| s.get_name() == a.to_string_lossy())
                .map(|s| s.get_name().to_owned())
        })
        .and_then(|name| SUBCOMMANDS.iter().copied().find(|s| *s == name));
    let rendered = e.render().to_string();
    let first = rendered.lines().next().unwrap_or_default();
    let message = first.strip_prefix("error: ").unwrap_or(first);
    render::usage_error(command, json, message);
    exit::Exit::Usage
}

/// The subcommands' names, as `Invocation::command` spells them.
const SUBCOMMANDS: [&str; 16] = [
    "write",
    "compare",
    "list",
    "verify",
    "inspect",
    "ls",
    "extract",
    "boot-test",
    "probe",
    "backup",
    "format",
    "mount",
    "umount",
    "station",
    "completions",
    "man",
];
