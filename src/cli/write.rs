//! `bootstick write IMAGE TARGET`: raw-copy an image (or build a FAT32
//! layout of a non-hybrid ISO) onto a stick or into a file, flush it, read it
//! back.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use serde_json::json;

use super::exit::{Exit, Failure};
use super::render::{human_bytes, Renderer};
use bootstick::inspect::Mode;
use bootstick::layout::{disk, from_iso};
use bootstick::plan::{Plan, PlanError};
use bootstick::trust::{self, Outcome, Report};
use bootstick::write;

/// Write an image to a stick or a file, then read it back to prove it.
///
/// A hybrid ISO or a raw disk image is copied byte for byte; a non-hybrid
/// ISO gets a built layout (GPT + FAT32 holding its files, UEFI boot). Both
/// are written with direct I/O, flushed, and read back bypassing the page cache. When
/// the image is smaller than the device, the device's last MiB is zeroed
/// too, so no stale backup partition table survives there.
///
/// Examples:
///   bootstick write debian-13-amd64-netinst.iso /dev/sdb
///   bootstick write --yes --json fedora.iso /dev/sdc > log.jsonl
///   bootstick write image.iso stick.img      # an image file of the stick
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The image to write.
    pub image: PathBuf,
    /// Where to write it: a whole disk (e.g. /dev/sdb, a /dev/disk/by-id
    /// link or the disk's serial number; everything on it is erased) or a file
    /// path (created, or overwritten). Omitted on a terminal: choose from a
    /// list of removable and USB disks.
    pub target: Option<PathBuf>,
    #[command(flatten)]
    pub device: super::target::DeviceArgs,
    /// Do not ask before overwriting a block device.
    #[arg(short, long)]
    pub yes: bool,
    /// Skip reading the target back after writing.
    #[arg(long)]
    pub no_verify: bool,
    /// Also report the SHA-256 of the image, computed while it is written
    /// (a source check reports the digest it checked anyway). Off by
    /// default: the read-back already proves the stick holds the image.
    #[arg(long)]
    pub digest: bool,
    /// Print newline-delimited JSON events on stdout instead of a progress bar
    /// (schema in docs/cli.md).
    #[arg(long)]
    pub json: bool,
    /// Copy the image byte for byte even when `bootstick inspect` says it
    /// needs a built layout (a non-hybrid ISO, which will likely not boot
    /// that way).
    #[arg(long)]
    pub raw: bool,
    /// Partition table of a built layout (ignored for byte copies): `gpt`
    /// (UEFI) or `mbr` (also readable by old systems; still UEFI boot).
    #[arg(long, value_enum, default_value = "gpt")]
    pub table: TableArg,
    /// Check the image (as `bootstick verify` does) before writing, and
    /// refuse when the check fails or finds nothing to check against. Without
    /// it the check still runs when checksum or signature files sit beside the
    /// image or references are given, but an image with none is written.
    #[arg(long)]
    pub verify_source: bool,
    /// Refuse an image whose checksum matches but that no trusted signature
    /// covers (outcome `checksum-only`).
    #[arg(long)]
    pub require_signature: bool,
    #[command(flatten)]
    pub references: super::verify::References,
}

/// `--table` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TableArg {
    Gpt,
    Mbr,
}

/// The exit code a layout error maps to.
fn layout_exit(e: &from_iso::Error) -> Exit {
    use bootstick::layout::fat32;
    use from_iso::Error as E;
    match e {
        E::FileTooLarge { .. } | E::TargetTooSmall { .. } => Exit::Refused,
        E::Disk(disk::Error::Partition(_) | disk::Error::Plan(_)) => Exit::Internal,
        E::Disk(disk::Error::Fat32 {
            source: fat32::Error::Plan(_),
            ..
        }) => Exit::Internal,
        E::Image(_)
        | E::NoEfiLoader
        | E::LoaderTooLarge { .. }
        | E::Loader { .. }
        | E::Disk(_)
        | E::Wim { .. } => Exit::BadInput,
    }
}

/// Builds the FAT32 layout of a non-hybrid ISO (docs/layout.md) for a
/// target of `target_size` bytes (`None`: an image file, sized to fit).
pub fn build_layout(
    image: &Path,
    table: TableArg,
    target_size: Option<u64>,
) -> Result<from_iso::Layout, Failure> {
    use bootstick::image::{open::open_tree, ByteSource, ImageFile};
    let fail = |e: from_iso::Error| {
        let code = layout_exit(&e);
        Failure::new(
            code,
            anyhow::Error::new(e).context(format!("cannot build a layout of {}", image.display())),
        )
    };
    let file = ImageFile::open(image).map_err(|e| fail(e.into()))?;
    let src: std::sync::Arc<dyn ByteSource> = std::sync::Arc::new(file);
    let tree = open_tree(src.clone()).map_err(|e| fail(e.into()))?;
    let options = from_iso::Options {
        table: match table {
            TableArg::Gpt => disk::Table::Gpt,
            TableArg::Mbr => disk::Table::Mbr,
        },
        target_size,
        mtime: from_iso::image_mtime(&*src).map_err(fail)?,
        wim_split: from_iso::WimSplit::default(),
    };
    from_iso::build(&src, &*tree, &options).map_err(fail)
}

/// The `layout` object of `write`'s JSON start line and `inspect --json`.
pub fn layout_json(l: &from_iso::Layout) -> serde_json::Value {
    json!({
        "table": table_name(l.table),
        "filesystem": "fat32",
        "label": l.label,
        "disk_bytes": l.disk_size,
        "min_bytes": l.min_size,
        "files": l.files,
        "directories": l.dirs,
        "file_bytes": l.file_bytes,
        "added_loaders": l.added_loaders,
        "skipped_links": l.skipped_links,
        "wim_parts": l.wim_parts,
    })
}

fn table_name(t: disk::Table) -> &'static str {
    match t {
        disk::Table::Gpt => "gpt",
        disk::Table::Mbr => "mbr",
    }
}

/// One line describing a layout, for people.
pub fn layout_line(l: &from_iso::Layout) -> String {
    format!(
        "{} + FAT32 \"{}\", {} files in {} directories{}{}",
        table_name(l.table).to_uppercase(),
        l.label,
        l.files,
        l.dirs,
        if l.added_loaders.is_empty() {
            String::new()
        } else {
            format!(
                "; EFI loader {} from the El Torito image",
                l.added_loaders
                    .iter()
                    .map(|a| a.path.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        },
        if l.wim_parts.is_empty() {
            String::new()
        } else {
            format!(
                "; sources/install.wim split into {} .swm parts",
                l.wim_parts.len()
            )
        }
    )
}

/// Checks the image before anything is written (docs/trust.md). Returns the
/// report when a check ran and passed; the write engine is then given its
/// SHA-256, so an image that changes between this check and the write fails
/// with `source-changed` (exit 19).
fn check_source(args: &Args, render: &Renderer) -> Result<Option<Report>, Failure> {
    let req = super::verify::request(args.image.clone(), &args.references)?;
    if !args.verify_source && !trust::has_references(&req) {
        return Ok(None);
    }
    let report = trust::check(&req, render).map_err(|e| Failure::new(Exit::BadInput, e))?;
    let refuse = |report: &Report| {
        Failure::new(
            super::verify::exit_for(report.outcome),
            anyhow::anyhow!(
                "source check: {}: {}; nothing was written",
                report.outcome.name(),
                super::verify::failure_message(report)
            ),
        )
    };
    match report.outcome {
        Outcome::Verified => Ok(Some(report)),
        Outcome::ChecksumOnly if !args.require_signature => {
            bootstick::events::Observer::event(
                render,
                &bootstick::events::Event::Warning(format!(
                    "source check: {}",
                    super::verify::failure_message(&report)
                )),
            );
            Ok(Some(report))
        }
        _ => Err(refuse(&report)),
    }
}

/// One line saying what vouched for the image.
fn check_summary(report: &Report) -> String {
    let via = report
        .matched
        .as_ref()
        .map(|m| match m.line {
            Some(l) => format!(" via {} line {l}", m.source),
            None => format!(" via {}", m.source),
        })
        .unwrap_or_default();
    let by = report
        .signers
        .iter()
        .map(|s| match &s.user_id {
            Some(u) => format!("{} {u:?}", s.fingerprint),
            None => s.fingerprint.clone(),
        })
        .collect::<Vec<_>>()
        .join(", ");
    let by = if by.is_empty() {
        String::new()
    } else {
        format!(", signed by {by}")
    };
    format!("Source check: {}{via}{by}.", report.outcome.name())
}

/// The exit code a write-engine error maps to.
pub fn exit_for(e: &write::Error) -> Exit {
    use write::Error as E;
    match e {
        E::Plan(PlanError::TooLarge { .. }) => Exit::Refused,
        E::Plan(PlanError::SourceTooShort { .. }) => Exit::BadInput,
        E::Plan(_) | E::Internal(_) => Exit::Internal,
        E::OpenTarget { source, .. } if source.raw_os_error() == Some(libc::EBUSY) => Exit::Refused,
        E::NotATarget { .. } | E::Refused(_) => Exit::Refused,
        E::OpenTarget { .. }
        | E::WriteTarget { .. }
        | E::Sync { .. }
        | E::ReadTarget { .. }
        | E::Disappeared { .. } => Exit::WriteFailed,
        E::ReadSource { .. } | E::SourceTruncated { .. } => Exit::BadInput,
        E::SourceChanged { .. } | E::SourceChangedDuringWrite { .. } => Exit::SourceChanged,
        E::Mismatch { .. } | E::TargetShort { .. } => Exit::VerifyMismatch,
    }
}

/// Opens the image, mapping failure to "bad input".
pub fn open_image(path: &Path) -> Result<(File, u64), Failure> {
    let open = || -> anyhow::Result<(File, u64)> {
        let f =
            File::open(path).with_context(|| format!("cannot open image {}", path.display()))?;
        let mut r = &f;
        let len = std::io::Seek::seek(&mut r, std::io::SeekFrom::End(0))
            .with_context(|| format!("cannot read image {}", path.display()))?;
        Ok((f, len))
    };
    open().map_err(|e| Failure::new(Exit::BadInput, e))
}

pub fn run(args: Args) -> Result<(), Failure> {
    let render = Renderer::new(args.json);
    render.failure(run_inner(&args, &render))
}

fn run_inner(args: &Args, render: &Renderer) -> Result<(), Failure> {
    let (source, image_len) = open_image(&args.image)?;
    let checked = check_source(args, render)?;
    let mode = super::inspect::write_mode(&args.image, args.raw)?;
    let fail = |e: write::Error| Failure::new(exit_for(&e), e);
    // A non-hybrid ISO gets a built layout unless --raw. It is built once
    // before the target is chosen (to know the size it needs, and to refuse
    // before anything is opened), and again for a device's real size.
    let mut layout = if mode.decision.mode == Mode::Layout && !args.raw {
        Some(build_layout(&args.image, args.table, None)?)
    } else {
        None
    };
    let needed = layout.as_ref().map_or(image_len, |l| l.min_size);
    // Target selection, safety rules, confirmation and the guarded open
    // (docs/devices.md). A disk stays open with O_EXCL + flock until `guard`
    // is dropped, after the partition table is re-read.
    let chosen = super::target::choose(
        args.target.as_deref(),
        &args.device,
        args.yes,
        &args.image,
        image_len,
        needed,
    )?;
    let (mut target, device) = match chosen {
        super::target::Chosen::File(p) => (write::Target::open(&p).map_err(fail)?, None),
        super::target::Chosen::Disk { disk, guard } => {
            let file = guard
                .try_clone()
                .map_err(|e| Failure::new(super::target::exit_for(&e), e))?;
            let t = write::Target::block_device(file, &disk.path).map_err(fail)?;
            (t, Some((disk, *guard)))
        }
    };
    let target_path = target.path().to_path_buf();
    if let (Some(cap), Some(l)) = (target.capacity(), layout.as_ref()) {
        if l.disk_size != cap {
            layout = Some(build_layout(&args.image, args.table, Some(cap))?);
        }
    }
    let plan = match (&layout, target.capacity()) {
        (Some(l), _) => l.plan.clone(),
        (None, Some(cap)) => Plan::raw(image_len)
            .with_tail_wipe(cap)
            .map_err(|e| fail(e.into()))?,
        (None, None) => Plan::raw(image_len),
    };
    let layout_json = layout.as_ref().map(layout_json);
    let mode_name = if layout.is_some() { "layout" } else { "raw" };
    render.start(
        "write",
        json!({
            "image": args.image,
            "target": target_path,
            "disk": device.as_ref().map(|(d, _)| d),
            "image_bytes": image_len,
            "target_bytes": target.capacity(),
            "block_device": target.is_block_device(),
            "plan_bytes": plan.bytes_to_write(),
            "verify": !args.no_verify,
            "decision": mode.decision,
            "mode": mode_name,
            "layout": layout_json,
            "source_check": checked.as_ref().map(|r| json!({
                "outcome": r.outcome,
                "matched": r.matched,
                "signers": r.signers,
                "sha256": r.checked_sha256.as_ref().map(|d| d.to_hex()),
            })),
        }),
    );
    for w in mode.warnings {
        bootstick::events::Observer::event(render, &bootstick::events::Event::Warning(w));
    }
    let before_first_write = match &device {
        Some((_, guard)) => Some(
            guard
                .identity_check()
                .map_err(|e| Failure::new(super::target::exit_for(&e), e))?,
        ),
        None => None,
    };
    let options = write::Options {
        verify: !args.no_verify,
        before_first_write,
        expect_source: checked.as_ref().and_then(|r| r.checked_sha256.clone()),
        digest: args
            .digest
            .then_some(bootstick::hash::HashAlgorithm::Sha256),
        ..write::Options::default()
    };
    let started = Instant::now();
    let report = write::write(&plan, &source, &mut target, options, render).map_err(fail)?;
    let secs = started.elapsed().as_secs_f64();
    drop(target);
    let after = device.map(|(disk, guard)| after_write(&disk, guard, args.device.eject, render));
    let what = match &layout {
        Some(l) => format!(
            "a built layout ({}) of {}",
            layout_line(l),
            human_bytes(image_len)
        ),
        None => format!("{} byte for byte", human_bytes(image_len)),
    };
    let summary = format!(
        "Wrote {what} to {} in {secs:.1} s ({}/s){}.{}",
        target_path.display(),
        human_bytes((report.bytes_written as f64 / secs.max(1e-6)) as u64),
        if report.verified {
            ", verified by reading it back"
        } else {
            ", NOT verified (--no-verify)"
        },
        match &report.source_digest {
            Some(d) => format!("\nImage {}: {}", d.algorithm(), d.to_hex()),
            None => String::new(),
        },
    );
    let summary = match &checked {
        Some(r) => format!("{summary}\n{}", check_summary(r)),
        None => summary,
    };
    render.result(Ok((
        json!({
            "bytes_written": report.bytes_written,
            "verified": report.verified,
            "direct_io": report.direct_io,
            "source_digest": report.source_digest.as_ref().map(|d| json!({
                "algorithm": d.algorithm(),
                "hex": d.to_hex(),
            })),
            "seconds": (secs * 1000.0).round() / 1000.0,
            "partitions": after.as_ref().map(|a| &a.partitions),
            "ejected": after.as_ref().is_some_and(|a| a.ejected),
            "mode": mode_name,
        }),
        summary,
    )));
    Ok(())
}

/// What happened to a disk after the write.
struct After {
    partitions: Vec<PathBuf>,
    ejected: bool,
}

/// Re-reads the partition table while the disk is still held, then releases
/// it and (with `--eject`) detaches it. The image is already written and
/// verified: problems here are warnings, not failures.
fn after_write(
    disk: &bootstick::devices::Disk,
    guard: bootstick::devices::Guarded,
    eject: bool,
    render: &Renderer,
) -> After {
    use bootstick::events::{Event, Observer};
    let partitions = match guard.reread_partitions() {
        Ok(r) => r.partitions,
        Err(e) => {
            render.event(&Event::Warning(e.to_string()));
            Vec::new()
        }
    };
    drop(guard);
    let mut ejected = false;
    if eject {
        match bootstick::devices::eject(&bootstick::devices::Roots::live(), disk) {
            Ok(()) => ejected = true,
            Err(e) => render.event(&Event::Warning(e.to_string())),
        }
    }
    After {
        partitions,
        ejected,
    }
}
