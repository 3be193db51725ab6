//! `bootstick backup TARGET FILE`: a stick into an image file. Parses,
//! renders `bootstick::health::backup`'s report; the rules and the proof
//! are the library's.

use std::path::PathBuf;

use super::advice;
use super::exit::{self, Failure};
use super::render::{human_bytes, Renderer};
use bootstick::devices::Roots;
use bootstick::health::backup;
use bootstick::job;

/// Save a stick as an image file, proven by reading it back.
///
/// Reads the whole stick bypassing the page cache (with --shrink only up
/// to the end of its last partition) into FILE, compressed on the fly when
/// FILE ends in .zst, .xz (both multi-threaded) or .gz, and writes
/// FILE.sha256 beside it (check it with `sha256sum -c FILE.sha256`). FILE
/// is then read back and decompressed: it is kept only when it hashes as
/// written and decompresses to exactly the bytes read from the stick.
/// `bootstick write FILE TARGET` restores it.
///
/// FILE must not be on the stick itself. An existing FILE is replaced only
/// after confirmation (`--yes` for scripts); until the backup is proven the
/// old one stays. Nothing is written to the stick.
///
/// Examples:
///   bootstick backup /dev/sdb stick.img.zst
///   bootstick backup --shrink --yes --json /dev/sdb /srv/backups/usb.img.xz
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The disk to read, named as for `compare` (a device, a /dev/disk/by-id
    /// link, its by-id name or serial), or a file.
    pub target: PathBuf,
    /// The image file to write (.zst, .xz and .gz are compressed).
    pub file: PathBuf,
    /// Stop at the end of the last partition instead of the disk's end.
    #[arg(long)]
    pub shrink: bool,
    /// Replace an existing FILE without asking.
    #[arg(long)]
    pub yes: bool,
    /// Print newline-delimited JSON events on stdout (schema in docs/cli.md).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> Result<(), Failure> {
    let render = Renderer::new(args.json);
    render.failure(run_inner(&args, &render))
}

fn run_inner(args: &Args, render: &Renderer) -> Result<(), Failure> {
    let mut confirm: Box<dyn job::Confirm> = if args.yes {
        Box::new(job::Yes)
    } else {
        Box::new(super::target::Prompt)
    };
    let prepared = backup::prepare(&Roots::live(), &args.target, &args.file, &mut *confirm)
        .map_err(failure)?;
    render.start(
        "backup",
        &BackupStart {
            target: &prepared.source,
            file: &prepared.file,
            disk: &prepared.disk,
            shrink: args.shrink,
            compression: backup::Compression::for_path(&prepared.file),
            replaces_bytes: prepared.replaces,
        },
    );
    super::signals::cooperate();
    let options = backup::Options {
        shrink: args.shrink,
        cancel: super::signals::token(),
    };
    let report = backup::backup(&prepared, &options, render).map_err(failure)?;
    let text = format!(
        "{} ({}{}) saved as {} ({}, {}), proven: read back, it hashes as {} says and decompresses to the {} bytes read, SHA-256 {}.",
        report.source.display(),
        human_bytes(report.image_bytes),
        if report.shrunk { ", up to the end of its last partition" } else { "" },
        report.file.display(),
        human_bytes(report.file_bytes),
        match report.compression {
            backup::Compression::None => "uncompressed",
            backup::Compression::Zstd => "zstd",
            backup::Compression::Xz => "xz",
            backup::Compression::Gzip => "gzip",
        },
        report.checksum_file.display(),
        report.image_bytes,
        report.image_sha256,
    );
    render.result(Ok((&report, text)));
    Ok(())
}

/// The failure to report for a backup error.
fn failure(e: backup::Error) -> Failure {
    let code = exit::backup_error(&e);
    match e {
        backup::Error::Job(j) => advice::failure(*j),
        backup::Error::Device(d) => advice::device(d),
        backup::Error::Cancelled { .. } => Failure::interrupted(
            super::signals::token().signal(),
            None,
            anyhow::Error::new(e),
        ),
        e => Failure::new(code, e),
    }
}

/// The `start` line of `backup` (docs/cli.md).
#[derive(serde::Serialize)]
struct BackupStart<'a, D: serde::Serialize> {
    target: &'a std::path::Path,
    file: &'a std::path::Path,
    disk: &'a D,
    shrink: bool,
    compression: backup::Compression,
    replaces_bytes: Option<u64>,
}
