//! `bootstick format TARGET`: a stick back as a plain data drive. Parses,
//! chooses the disk through the library's target selection (the rules and
//! question of `write`), renders `bootstick::health::format`'s report.

use std::path::PathBuf;

use super::advice;
use super::exit::{self, Failure};
use super::render::{human_bytes, Renderer};
use bootstick::devices::{Policy, Roots};
use bootstick::health::format;
use bootstick::job;

/// The filesystem to create.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum FsArg {
    Fat32,
    Exfat,
}

impl FsArg {
    fn fs(self) -> format::Fs {
        match self {
            FsArg::Fat32 => format::Fs::Fat32,
            FsArg::Exfat => format::Fs::Exfat,
        }
    }
}

/// Make a stick a plain data drive (FAT32 or exFAT) again.
///
/// ERASES the stick: old partition tables (both GPT headers), ISO 9660
/// and filesystem signatures are overwritten, then one MBR partition from
/// 1 MiB to the end holds an empty FAT32 (type 0x0C) or exFAT (type 0x07)
/// volume, read back to check it. Without --fs, sticks up to 32 GiB get
/// FAT32 and larger ones exFAT, as Windows chooses. The same rules and
/// confirmation as `write` apply (`--yes` for scripts).
///
/// Examples:
///   bootstick format /dev/sdb
///   bootstick format --fs exfat --label Données /dev/sdb
///   bootstick format --label DATA --yes usb-Generic_Flash_Disk_1234-0:0
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The disk to format, named as for `write`. Without it, a terminal
    /// offers the eligible disks.
    pub target: Option<PathBuf>,
    /// The filesystem [default: fat32 up to 32 GiB, exfat above].
    #[arg(long, value_enum)]
    pub fs: Option<FsArg>,
    /// Volume label (at most 11 characters; FAT32: ASCII, stored
    /// uppercase; exFAT: any characters but control ones and "*/:<>?\|).
    #[arg(long, default_value = "")]
    pub label: String,
    /// Do not ask for confirmation (scripts must give it).
    #[arg(long)]
    pub yes: bool,
    /// Unmount the disk's mounted filesystems first.
    #[arg(long)]
    pub unmount: bool,
    /// Allow an internal disk (never the system disk).
    #[arg(long)]
    pub force: bool,
    /// Print newline-delimited JSON events on stdout (schema in docs/cli.md).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> Result<(), Failure> {
    let render = Renderer::new(args.json);
    render.failure(run_inner(&args, &render))
}

fn run_inner(args: &Args, render: &Renderer) -> Result<(), Failure> {
    // A bad label is refused before anyone is asked. Without --fs the
    // filesystem depends on the stick's size, known only once it is open:
    // here a label neither filesystem takes, there the chosen one's rules.
    match args.fs {
        Some(f) => format::check_label_for(f.fs(), &args.label).map_err(fail)?,
        None => {
            if let Err(e) = format::check_label_for(format::Fs::Fat32, &args.label) {
                if format::check_label_for(format::Fs::Exfat, &args.label).is_err() {
                    return Err(fail(e));
                }
            }
        }
    }
    let target = match &args.target {
        Some(t) => t.clone(),
        None => super::target::given_or_picked(&[])?.remove(0),
    };
    let mut confirm: Box<dyn job::Confirm> = if args.yes {
        Box::new(job::Yes)
    } else {
        Box::new(super::target::Prompt)
    };
    let (disk, guard) = job::choose_disk(
        &Roots::live(),
        &target,
        Policy {
            unmount: args.unmount,
            force: args.force,
        },
        &mut *confirm,
        job::Action::Format,
    )
    .map_err(advice::failure)?;
    render.start(
        "format",
        &FormatStart {
            target: &disk.path,
            disk: &disk,
            fs: args.fs.map(FsArg::fs),
            label: &args.label,
        },
    );
    super::signals::cooperate();
    let options = format::Options {
        fs: args.fs.map(FsArg::fs),
        label: args.label.clone(),
        cancel: super::signals::token(),
    };
    let report = format::format(&disk, guard, &options, render).map_err(fail)?;
    let text = format!(
        "{}: one MBR partition ({}) with an empty {} volume{}, read back and verified{}.",
        report.target.display(),
        human_bytes(report.partition_bytes),
        match report.fs {
            format::Fs::Fat32 => "FAT32",
            format::Fs::Exfat => "exFAT",
        },
        if report.label.is_empty() {
            String::new()
        } else {
            format!(" labelled {}", report.label)
        },
        match report.partitions.first() {
            Some(p) => format!("; it is {}", p.display()),
            None => String::new(),
        }
    );
    render.result(Ok((&report, text)));
    Ok(())
}

fn fail(e: format::Error) -> Failure {
    let code = exit::format_error(&e);
    match e {
        format::Error::Write(w) => Failure::write(w),
        format::Error::Device(d) => advice::device(d),
        e => Failure::new(code, e),
    }
}

/// The `start` line of `format` (docs/cli.md).
#[derive(serde::Serialize)]
struct FormatStart<'a, D: serde::Serialize> {
    target: &'a std::path::Path,
    disk: &'a D,
    fs: Option<format::Fs>,
    label: &'a str,
}
