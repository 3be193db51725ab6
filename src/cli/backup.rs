//! `bootstick backup TARGET FILE`: a stick into an image file. Parses,
//! renders `bootstick::health::backup`'s report; the rules and the proof
//! are the library's.

use std::path::PathBuf;

use super::advice;
use super::exit::{self, Exit, Failure};
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
/// An optical drive (a disc into an ISO) is read up to the end of the
/// disc's ISO 9660/UDF volume, not the capacity the drive reports. A
/// sector that cannot be read is retried; one that fails every attempt
/// stops the backup naming its LBA (exit 24), or with --skip-bad is stored
/// as zeros and listed, and the result says the image is not complete
/// (exit 24, the file kept).
///
/// FILE must not be on the stick itself. An existing FILE is replaced only
/// after confirmation (`--yes` for scripts); until the backup is proven the
/// old one stays. Nothing is written to the stick.
///
/// Examples:
///   bootstick backup /dev/sdb stick.img.zst
///   bootstick backup --shrink --yes --json /dev/sdb /srv/backups/usb.img.xz
///   bootstick backup /dev/sr0 disc.iso
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
    /// Store sectors that cannot be read as zeros and list them, instead
    /// of stopping at the first one.
    #[arg(long)]
    pub skip_bad: bool,
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
            skip_bad: args.skip_bad,
            compression: backup::Compression::for_path(&prepared.file),
            replaces_bytes: prepared.replaces,
        },
    );
    super::signals::cooperate();
    let options = backup::Options {
        shrink: args.shrink,
        skip_bad: args.skip_bad,
        cancel: super::signals::token(),
    };
    let report = backup::backup(&prepared, &options, render).map_err(failure)?;
    let text = format!(
        "{} ({}{}) saved as {} ({}, {}), proven: read back, it hashes as {} says and decompresses to the {} bytes read, SHA-256 {}.{}",
        report.source.display(),
        human_bytes(report.image_bytes),
        match report.extent {
            backup::Extent::Device => "",
            backup::Extent::Partitions => ", up to the end of its last partition",
            backup::Extent::Volume(_) => ", up to the end of the disc's ISO 9660/UDF volume",
            backup::Extent::NoVolume => ", the whole disc: it holds no ISO 9660/UDF volume",
        },
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
        completeness(&report),
    );
    if !report.complete {
        return Err(Failure::new(Exit::BadSectors, anyhow::anyhow!("{text}")).with_fields(&report));
    }
    render.result(Ok((&report, text)));
    Ok(())
}

/// The sentence that says whether the image is whole.
fn completeness(report: &backup::Report) -> String {
    let mut out = String::new();
    for why in &report.incomplete {
        match why {
            backup::Incomplete::BadSectors { count } => out.push_str(&format!(
                " NOT COMPLETE: {count} unreadable {}-byte sector{} stored as zeros, LBA {}.",
                report.sector_bytes,
                if *count == 1 { "" } else { "s" },
                lba_ranges(&report.bad_sectors)
            )),
            backup::Incomplete::VolumeBeyondEnd {
                volume_bytes,
                source_bytes,
            } => out.push_str(&format!(
                " NOT COMPLETE: the volume claims {volume_bytes} bytes, the disc ends at {source_bytes}."
            )),
        }
    }
    if report.complete && matches!(report.extent, backup::Extent::Volume(_)) {
        out.push_str(" The ISO is complete: every sector of the volume was read.");
    }
    if !report.recovered_sectors.is_empty() {
        out.push_str(&format!(
            " Read only on a retry: LBA {}.",
            lba_ranges(&report.recovered_sectors)
        ));
    }
    out
}

/// `5, 7-9, 12` for ascending LBAs.
fn lba_ranges(lbas: &[u64]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < lbas.len() {
        let mut j = i;
        while j + 1 < lbas.len() && lbas[j + 1] == lbas[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            lbas[i].to_string()
        } else {
            format!("{}-{}", lbas[i], lbas[j])
        });
        i = j + 1;
    }
    parts.join(", ")
}

/// The fields of the `result` of a backup stopped at an unreadable sector.
#[derive(serde::Serialize)]
struct Unreadable {
    bad_lba: u64,
    sector_bytes: u64,
}

/// The fields of the `result` of an interrupted backup: what FILE is.
#[derive(serde::Serialize)]
struct Stopped {
    file_state: backup::FileState,
}

/// The failure to report for a backup error.
fn failure(e: backup::Error) -> Failure {
    let code = exit::backup_error(&e);
    match e {
        backup::Error::Job(j) => advice::failure(*j),
        backup::Error::Device(d) => advice::device(d),
        backup::Error::Unreadable {
            lba, sector_bytes, ..
        } => Failure::new(
            code,
            anyhow::anyhow!(
                "{:#}; --skip-bad stores unreadable sectors as zeros, lists them and goes on (the image is then not complete)",
                anyhow::Error::new(e)
            ),
        )
        .with_fields(&Unreadable { bad_lba: lba, sector_bytes }),
        backup::Error::Cancelled { state, .. } => Failure::interrupted(
            super::signals::token().signal(),
            None,
            anyhow::Error::new(e),
        )
        .with_fields(&Stopped { file_state: state }),
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
    skip_bad: bool,
    compression: backup::Compression,
    replaces_bytes: Option<u64>,
}
