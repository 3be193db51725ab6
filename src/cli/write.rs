//! `bootstick write IMAGE TARGET`: raw-copy an image (or build a FAT32
//! layout of a non-hybrid ISO) onto a stick or into a file, flush it, read it
//! back.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::json;

use super::exit::{Exit, Failure};
use super::render::{human_bytes, Renderer};
use std::sync::Arc;

use bootstick::image::{input, ByteSource};
use bootstick::inspect::Mode;
use bootstick::layout::{disk, from_iso};
use bootstick::plan::Plan;
use bootstick::trust::{self, Outcome, Report};
use bootstick::write;

/// Write an image to a stick or file, then read it back to prove it.
///
/// A hybrid ISO or a raw disk image is copied byte for byte; a non-hybrid
/// ISO gets a built layout (GPT + FAT32 holding its files, UEFI boot). Both
/// are written with direct I/O, flushed, and read back bypassing the page
/// cache. When the image is smaller than the device, the device's last MiB
/// is zeroed too, so no stale backup partition table survives there.
///
/// Examples:
///   bootstick write debian-13-amd64-netinst.iso /dev/sdb
///   bootstick write --yes --json fedora.iso /dev/sdc > log.jsonl
///   bootstick write image.iso stick.img      # an image file of the stick
///   bootstick write --yes debian.iso /dev/sdb /dev/sdc /dev/sdd   # at once
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The image to write.
    pub image: PathBuf,
    /// Where to write it: a whole disk (e.g. /dev/sdb, a /dev/disk/by-id
    /// link or the disk's serial number; everything on it is erased) or a file
    /// path (created, or replaced once written). Several TARGETs are written at once,
    /// each checked before any is written. Omitted on a terminal: choose one
    /// from a list of removable and USB disks.
    #[arg(value_name = "TARGET")]
    pub targets: Vec<PathBuf>,
    #[command(flatten)]
    pub device: super::target::DeviceArgs,
    /// Do not ask before erasing a disk or replacing an existing file.
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

/// Builds the FAT32 layout of a non-hybrid ISO (docs/layout.md), read from
/// `src` (the image opened from `image`), for a target of `target_size`
/// bytes (`None`: an image file, sized to fit).
pub fn build_layout(
    src: &Arc<dyn ByteSource>,
    image: &Path,
    table: TableArg,
    target_size: Option<u64>,
) -> Result<from_iso::Layout, Failure> {
    use bootstick::image::open::open_tree;
    let fail = |e: from_iso::Error| {
        let code = super::exit::layout_error(&e);
        Failure::new(
            code,
            anyhow::Error::new(e).context(format!("cannot build a layout of {}", image.display())),
        )
    };
    let tree = open_tree(src.clone()).map_err(|e| fail(e.into()))?;
    let options = from_iso::Options {
        table: match table {
            TableArg::Gpt => disk::Table::Gpt,
            TableArg::Mbr => disk::Table::Mbr,
        },
        target_size,
        mtime: from_iso::image_mtime(&**src).map_err(fail)?,
        wim_split: from_iso::WimSplit::default(),
    };
    from_iso::build(src, &*tree, &options).map_err(fail)
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
    // --require-signature, --verify-source and --key each ask for a check,
    // so with nothing to check against they refuse (no-reference) rather
    // than write an image nothing vouches for.
    let asked = args.verify_source || args.require_signature || !req.keys.is_empty();
    if !asked && !trust::has_references(&req) {
        return Ok(None);
    }
    // Pinned: the pass also takes per-block digests, and everything after
    // reads the image only through them (docs/trust.md).
    let report = trust::check_pinned(&req, render)
        .map_err(|e| Failure::new(super::exit::trust_error(&e), e))?;
    let refuse = |report: &Report| {
        Failure::new(
            super::verify::exit_for(report.outcome),
            anyhow::anyhow!(
                "source check: {}: {}; nothing was written",
                report.outcome.name(),
                super::verify::write_refusal(report, args.require_signature)
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

/// `--table mbr` says how to build a layout; a byte-for-byte copy keeps the
/// image's own partition table, so the flag would be silently ignored:
/// refused as a usage error instead (docs/cli.md).
pub fn refuse_table_for_raw(
    table: TableArg,
    raw: bool,
    mode: &super::inspect::WriteMode,
) -> Result<(), Failure> {
    if table == TableArg::Mbr && (raw || mode.decision.mode != Mode::Layout) {
        return Err(Failure::new(
            Exit::Usage,
            anyhow::anyhow!(
                "--table mbr applies to built layouts only, and this image is copied byte for byte ({}), keeping its own partition table; drop --table",
                if raw { "--raw" } else { "`bootstick inspect` decides raw" }
            ),
        ));
    }
    Ok(())
}

/// Opens the image (`image::input::open`: never blocking, only a regular
/// file or block device that is not empty), mapping failure to "bad input".
pub fn open_image(path: &Path) -> Result<input::Input, Failure> {
    input::open(path).map_err(|e| Failure::new(super::exit::image_error(&e), e))
}

/// A byte source over the open image for the readers that decide and plan
/// the write: through the source check's block digests when there are
/// some (so planning reads only checked bytes), else the file as it is.
/// Either way the same open file, never the path again.
pub fn plan_source(
    image: &input::Input,
    checked: Option<&Report>,
) -> Result<Arc<dyn ByteSource>, Failure> {
    use bootstick::image::{checked::CheckedImage, ImageFile};
    let file = image.file().try_clone().map_err(|e| {
        Failure::new(
            Exit::Internal,
            anyhow::Error::new(e).context("cannot duplicate the image's file descriptor"),
        )
    })?;
    Ok(match checked.and_then(|r| r.checked_blocks.clone()) {
        Some(blocks) => Arc::new(CheckedImage::new(file, blocks)),
        None => Arc::new(ImageFile::from_file(file, image.len())),
    })
}

pub fn run(args: Args) -> Result<(), Failure> {
    let render = Renderer::new(args.json);
    render.failure(run_inner(&args, &render))
}

fn run_inner(args: &Args, render: &Renderer) -> Result<(), Failure> {
    let image = open_image(&args.image)?;
    let image_len = image.len();
    let checked = check_source(args, render)?;
    let src = plan_source(&image, checked.as_ref())?;
    let mode = super::inspect::write_mode(&src, &args.image, args.raw)?;
    refuse_table_for_raw(args.table, args.raw, &mode)?;
    // A non-hybrid ISO gets a built layout unless --raw. It is built once
    // before the targets are chosen (to know the size it needs, and to refuse
    // before anything is opened), and again for each device's real size.
    let layout = if mode.decision.mode == Mode::Layout && !args.raw {
        Some(build_layout(&src, &args.image, args.table, None)?)
    } else {
        None
    };
    let needed = layout.as_ref().map_or(image_len, |l| l.min_size);
    // Target selection, safety rules, confirmation and the guarded open
    // (docs/devices.md). A disk stays open with O_EXCL + flock until its
    // guard is dropped, after the partition table is re-read.
    let ctx = Shared {
        args,
        source: image.file(),
        stamp: image.stamp(),
        src: &src,
        image_len,
        mode: &mode,
        checked: checked.as_ref(),
    };
    let targets = super::target::given_or_picked(&args.targets)?;
    let chosen = super::target::choose_all(
        &targets,
        &args.device,
        args.yes,
        &args.image,
        image_len,
        needed,
    )?;
    // From here on a signal stops the jobs between chunks and they report
    // what they left on each target (cli::signals).
    super::signals::cooperate();
    // Every plan is built (and may refuse) before any job starts; disks
    // first, so a refusal there comes before any file target is created.
    let mut prepared: Vec<Option<Job>> = Vec::with_capacity(chosen.len());
    let mut files = Vec::new();
    for (i, c) in chosen.into_iter().enumerate() {
        match c {
            super::target::Chosen::File(_) => {
                files.push((i, c));
                prepared.push(None);
            }
            disk => prepared.push(Some(prepare(&ctx, disk, layout.as_ref())?)),
        }
    }
    for (i, c) in files {
        prepared[i] = Some(prepare(&ctx, c, layout.as_ref())?);
    }
    let mut jobs: Vec<Job> = prepared.into_iter().flatten().collect();
    if jobs.len() > 1 {
        return run_many(&ctx, jobs, render);
    }
    let job = jobs.remove(0);
    render.start("write", ctx.start_fields(&job));
    for w in &mode.warnings {
        bootstick::events::Observer::event(render, &bootstick::events::Event::Warning(w.clone()));
    }
    let (fields, summary) = run_job(&ctx, job, render)?;
    render.result(Ok((fields, summary)));
    Ok(())
}

/// What every job of one `write` shares.
struct Shared<'a> {
    args: &'a Args,
    source: &'a File,
    /// The image's `fstat` stamp when it was opened (the engine's
    /// changed-during-the-write check).
    stamp: input::Stamp,
    /// The image for the readers that plan (`plan_source`).
    src: &'a Arc<dyn ByteSource>,
    image_len: u64,
    mode: &'a super::inspect::WriteMode,
    checked: Option<&'a Report>,
}

/// One target, opened and guarded, with the plan built for it.
struct Job {
    target: write::Target,
    device: Option<(Box<bootstick::devices::Disk>, bootstick::devices::Guarded)>,
    layout: Option<from_iso::Layout>,
    plan: Plan,
}

impl Job {
    /// How the target is named in messages and in JSON's `target`.
    fn label(&self) -> String {
        self.target.path().display().to_string()
    }

    fn mode_name(&self) -> &'static str {
        mode_name(self.layout.as_ref())
    }
}

/// The JSON `mode` of a plan: `layout` when a layout was built, else `raw`.
pub fn mode_name(layout: Option<&from_iso::Layout>) -> &'static str {
    if layout.is_some() {
        "layout"
    } else {
        "raw"
    }
}

fn fail(e: write::Error) -> Failure {
    Failure::write(e)
}

/// Opens a chosen target and builds its plan: a built layout sized to the
/// device (`layout` was built for the smallest size; it is rebuilt when the
/// device differs), or the image with a tail wipe of the device's last MiB.
fn prepare(
    ctx: &Shared,
    chosen: super::target::Chosen,
    layout: Option<&from_iso::Layout>,
) -> Result<Job, Failure> {
    let (target, device) = match chosen {
        super::target::Chosen::File(p) => (write::Target::open(&p).map_err(fail)?, None),
        super::target::Chosen::Disk { disk, guard } => {
            let file = guard
                .try_clone()
                .map_err(|e| Failure::new(super::target::exit_for(&e), e))?;
            let t = write::Target::block_device(file, &disk.path).map_err(fail)?;
            (t, Some((disk, *guard)))
        }
    };
    let layout = match (target.capacity(), layout) {
        (Some(cap), Some(l)) if l.disk_size != cap => Some(build_layout(
            ctx.src,
            &ctx.args.image,
            ctx.args.table,
            Some(cap),
        )?),
        (_, l) => l.cloned(),
    };
    let plan = match (&layout, target.capacity()) {
        (Some(l), _) => l.plan.clone(),
        (None, Some(cap)) => Plan::raw(ctx.image_len)
            .with_tail_wipe(cap)
            .map_err(|e| fail(e.into()))?,
        (None, None) => Plan::raw(ctx.image_len),
    };
    Ok(Job {
        target,
        device,
        layout,
        plan,
    })
}

impl Shared<'_> {
    /// The fields of a job's JSON `start` line.
    fn start_fields(&self, job: &Job) -> serde_json::Value {
        json!({
            "image": self.args.image,
            "target": job.target.path(),
            "disk": job.device.as_ref().map(|(d, _)| d),
            "image_bytes": self.image_len,
            "target_bytes": job.target.capacity(),
            "block_device": job.target.is_block_device(),
            "plan_bytes": job.plan.bytes_to_write(),
            "verify": !self.args.no_verify,
            "decision": self.mode.decision,
            "mode": job.mode_name(),
            "layout": job.layout.as_ref().map(layout_json),
            "source_check": self.checked.map(|r| json!({
                "outcome": r.outcome,
                "matched": r.matched,
                "signers": r.signers,
                "sha256": r.checked_sha256.as_ref().map(|d| d.to_hex()),
            })),
        })
    }
}

/// Runs one job: the identity re-check, write, sync and read-back, then the
/// partition re-read and `--eject`. Returns the JSON result fields and the
/// summary for people.
fn run_job(
    ctx: &Shared,
    job: Job,
    render: &Renderer,
) -> Result<(serde_json::Value, String), Failure> {
    let Job {
        mut target,
        device,
        layout,
        plan,
    } = job;
    let mode_name = mode_name(layout.as_ref());
    let target_path = target.path().to_path_buf();
    let before_first_write = match &device {
        Some((_, guard)) => Some(
            guard
                .identity_check()
                .map_err(|e| Failure::new(super::target::exit_for(&e), e))?,
        ),
        None => None,
    };
    let options = write::Options {
        verify: !ctx.args.no_verify,
        before_first_write,
        expect_source: ctx.checked.and_then(|r| r.checked_sha256.clone()),
        source_blocks: ctx.checked.and_then(|r| r.checked_blocks.clone()),
        source_stamp: Some(ctx.stamp),
        digest: ctx
            .args
            .digest
            .then_some(bootstick::hash::HashAlgorithm::Sha256),
        cancel: super::signals::token(),
        ..write::Options::default()
    };
    let started = Instant::now();
    let report = write::write(&plan, ctx.source, &mut target, options, render).map_err(fail)?;
    // A file target was written beside itself; only now does it replace
    // the old file (docs/devices.md, "File targets").
    target.commit().map_err(fail)?;
    let secs = started.elapsed().as_secs_f64();
    drop(target);
    let after =
        device.map(|(disk, guard)| after_write(&disk, guard, ctx.args.device.eject, render));
    let what = match &layout {
        Some(l) => format!(
            "a built layout ({}) of {}",
            layout_line(l),
            human_bytes(ctx.image_len)
        ),
        None => format!("{} byte for byte", human_bytes(ctx.image_len)),
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
    let summary = match ctx.checked {
        Some(r) => format!("{summary}\n{}", check_summary(r)),
        None => summary,
    };
    let fields = json!({
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
    });
    Ok((fields, summary))
}

/// Runs every job at once, one thread each (docs/decisions.md: independent
/// pipelines, each reading the image through the shared page cache, so a
/// slow or failing stick never holds the others back). A failing job does
/// not stop the others. The overall `result` lists every target; the exit
/// code is that of the first failed target in argument order.
fn run_many(ctx: &Shared, jobs: Vec<Job>, render: &Renderer) -> Result<(), Failure> {
    let labels: Vec<String> = jobs.iter().map(Job::label).collect();
    let renders: Vec<Renderer> = labels.iter().map(|l| render.for_target(l)).collect();
    for (job, r) in jobs.iter().zip(&renders) {
        r.start("write", ctx.start_fields(job));
    }
    for w in &ctx.mode.warnings {
        bootstick::events::Observer::event(render, &bootstick::events::Event::Warning(w.clone()));
    }
    let outcomes: Vec<Result<(serde_json::Value, String), Failure>> = std::thread::scope(|s| {
        let handles: Vec<_> = jobs
            .into_iter()
            .zip(&renders)
            .map(|(job, r)| {
                s.spawn(move || {
                    let outcome = run_job(ctx, job, r);
                    r.target_result(match &outcome {
                        Ok((fields, _)) => Ok(fields.clone()),
                        Err(f) => Err(f),
                    });
                    outcome
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(Failure::new(
                        Exit::Internal,
                        anyhow::anyhow!("the job's thread panicked"),
                    ))
                })
            })
            .collect()
    });
    let mut targets = Vec::with_capacity(outcomes.len());
    let mut lines = Vec::with_capacity(outcomes.len());
    for (label, outcome) in labels.iter().zip(&outcomes) {
        match outcome {
            Ok((fields, summary)) => {
                let mut v = json!({ "target": label, "ok": true });
                if let (Some(a), serde_json::Value::Object(b)) = (v.as_object_mut(), fields) {
                    a.extend(b.clone());
                }
                targets.push(v);
                lines.push(format!("ok     {summary}"));
            }
            Err(f) => {
                let mut v = json!({
                    "target": label,
                    "ok": false,
                    "error": super::render::chain(&f.error),
                    "exit_code": f.exit as u8,
                });
                if let Some(m) = v.as_object_mut() {
                    m.extend(f.fields.clone());
                }
                targets.push(v);
                lines.push(format!(
                    "FAILED {label}: {} (exit {})",
                    super::render::chain(&f.error),
                    f.exit as u8
                ));
            }
        }
    }
    let failed: Vec<(&String, &Failure)> = labels
        .iter()
        .zip(&outcomes)
        .filter_map(|(l, o)| o.as_ref().err().map(|f| (l, f)))
        .collect();
    let Some((first_label, first)) = failed.first() else {
        render.overall(true, json!({ "targets": targets }), &lines.join("\n"));
        return Ok(());
    };
    let error = anyhow::anyhow!(
        "{} of {} targets failed (the others were written); first: {first_label}: {}",
        failed.len(),
        labels.len(),
        super::render::chain(&first.error)
    );
    let mut overall = json!({
        "targets": targets,
        "error": super::render::chain(&error),
        "exit_code": first.exit as u8,
    });
    // An interrupted job says so in the overall result too (each target's
    // state is in its own entry).
    for key in ["interrupted", "signal"] {
        if let Some(v) = first.fields.get(key) {
            overall[key] = v.clone();
        }
    }
    render.overall(false, overall, &lines.join("\n"));
    Err(Failure::new(first.exit, error).reported())
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
            render.event(&Event::Warning(bootstick::error_chain(&e)));
            Vec::new()
        }
    };
    drop(guard);
    let mut ejected = false;
    if eject {
        match bootstick::devices::eject(&bootstick::devices::Roots::live(), disk) {
            Ok(()) => ejected = true,
            Err(e) => render.event(&Event::Warning(bootstick::error_chain(&e))),
        }
    }
    After {
        partitions,
        ejected,
    }
}
