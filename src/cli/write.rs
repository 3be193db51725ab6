//! `bootstick write IMAGE TARGET`: raw-copy an image (or build a FAT32
//! layout of a non-hybrid ISO) onto a stick or into a file, flush it, read it
//! back.

use std::path::PathBuf;

use serde::Serialize;

use super::advice;
use super::exit::Failure;
use super::render::{human_bytes, layout_line, Renderer};

use super::boot::WithBootTest;
use super::mode::{choice, notice_text};
use bootstick::boot_test::Report;
use bootstick::devices::{Policy, Roots};
use bootstick::events::{Event, Observer};
use bootstick::job::{self, Prepared, RunOptions, Written};
use bootstick::trust::Outcome;

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
    /// The image to write; `-` reads it from standard input (a FIFO is
    /// read as a stream too), an http:// or https:// URL downloads it as
    /// it is written; compressed or not.
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
    /// Build a FAT32 layout of the ISO's files even when it would be copied
    /// byte for byte (a hybrid ISO whose byte copy boots under BIOS only;
    /// the layout boots under UEFI only).
    #[arg(long, conflicts_with = "raw")]
    pub layout: bool,
    /// When IMAGE is a zip archive holding several images: the member to
    /// write (its name in the archive, or its last component). Without it
    /// the one disk image or ISO in the archive is taken.
    #[arg(long, value_name = "NAME")]
    pub entry: Option<String>,
    /// Partition table of a built layout (ignored for byte copies): `gpt`
    /// (UEFI) or `mbr` (also readable by old systems; still UEFI boot).
    #[arg(long, value_enum, default_value = "gpt")]
    pub table: super::mode::TableArg,
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
    pub references: super::references::References,
    /// The (decompressed) length in bytes of an image read from a pipe:
    /// checked against the target before writing and against the stream at
    /// its end, and shown as the progress total.
    #[arg(long, value_name = "BYTES")]
    pub size: Option<u64>,
    #[command(flatten)]
    pub bmap: super::bmap::BmapArgs,
    #[command(flatten)]
    pub download: super::piped::DownloadArgs,
    #[command(flatten)]
    pub boot: super::boot::WriteArgs,
    /// Before writing, run `bootstick probe`'s quick test on each disk
    /// TARGET (it erases the disk, as the write does); a fake-capacity or
    /// failing stick is not written (exit 23 or 24, the probe's report).
    #[arg(long)]
    pub probe: bool,
}

pub fn run(args: Args) -> Result<(), Failure> {
    let render = Renderer::new(args.json);
    render.failure(run_inner(&args, &render))
}

fn run_inner(args: &Args, render: &Renderer) -> Result<(), Failure> {
    // QEMU and OVMF are found before anything is written (cli::boot).
    let boot = args.boot.options();
    if let Some(o) = &boot {
        super::boot::available(o)?;
    }
    let req = super::references::request(args.image.clone(), &args.references)?;
    let policy = job::CheckPolicy {
        required: args.verify_source,
        require_signature: args.require_signature,
    };
    // A stream is checked as it passes, against the digest given for it
    // (cli::piped).
    let (image, stream, announced) = super::piped::open(
        &args.image,
        args.size,
        &req,
        policy,
        &args.download,
        args.yes,
    )?;
    let image = image
        .with_entry(args.entry.clone())
        .with_bmap(args.bmap.choice());
    // Checks the image before anything is written (docs/trust.md); the
    // engine is then given its SHA-256 and block digests, so an image that
    // changes between this check and the write fails with `source-changed`.
    let checked = match stream {
        // A download's published files were checked before it was opened.
        true => announced,
        false => image
            .check_source(&req, policy, render)
            .map_err(advice::failure)?,
    };
    match checked.as_ref().map(|r| (r.outcome, r)) {
        Some((Outcome::ChecksumOnly, r)) => render.event(&Event::Warning(format!(
            "source check: {}",
            super::references::failure_message(r)
        ))),
        Some((Outcome::NotListed, r)) => render.event(&Event::Warning(format!(
            "source check: {} beside the image {} not list it by name or by hash; writing it without a source check (--no-discover skips the search, --sums or --sha256 give the right reference)",
            super::references::looked_at(r),
            if r.sources.len() == 1 { "does" } else { "do" }
        ))),
        _ => {}
    }
    let job = image
        .decide(checked, choice(args.raw, args.layout, args.table))
        .map_err(advice::failure)?;
    // People read what the decision means for booting (a byte copy that
    // boots under BIOS only, a forced mode) before they confirm; JSON
    // keeps `start` as its first line and has them right after it.
    if !args.json {
        warn_notices(&job, render);
    }
    // Target selection, safety rules, confirmation and the guarded open
    // (docs/devices.md). A disk stays open with O_EXCL + flock until its
    // guard is dropped, after the partition table is re-read.
    let targets = super::target::given_or_picked(&args.targets)?;
    let mut confirm: Box<dyn job::Confirm> = if args.yes {
        Box::new(job::Yes)
    } else {
        Box::new(super::target::Prompt)
    };
    let chosen = job::choose_all_stored(
        &Roots::live(),
        &targets,
        Policy {
            unmount: args.device.unmount,
            force: args.device.force,
        },
        &mut *confirm,
        &args.image,
        job.stored_at(),
        job.image_len(),
        job.needed(),
    )
    .map_err(advice::failure)?;
    // From here on a signal stops the jobs between chunks and they report
    // what they left on each target (cli::signals).
    super::signals::cooperate();
    let probed = if args.probe {
        super::probe_report::before_write(&chosen, render)?
    } else {
        Vec::new()
    };
    let mut jobs = job.prepare_all(chosen).map_err(advice::failure)?;
    let options = RunOptions {
        verify: !args.no_verify,
        digest: args.digest,
        eject: args.device.eject,
        cancel: super::signals::token(),
    };
    if jobs.len() > 1 {
        return run_many(&job, jobs, &options, render, args.json, boot.as_ref());
    }
    let one = jobs.remove(0);
    render.start("write", &one.start(options.verify));
    if args.json {
        warn_notices(&job, render);
    }
    let written = one.run(&options, render).map_err(advice::failure)?;
    let summary = summary(&job, &written, options.eject);
    let fields = WithProbe {
        written: &written,
        probe: probed.first(),
    };
    if let Some(o) = &boot {
        return super::boot::after_write(&written.target, o, &fields, summary, render, args.json);
    }
    render.result(Ok((&fields, summary)));
    Ok(())
}

fn warn_notices(job: &job::Job, render: &Renderer) {
    for n in &job.decided().notices {
        render.event(&Event::Warning(notice_text(n, job.path())));
    }
}

/// The summary of one written target, for people; `eject`: `--eject` was
/// given.
fn summary(job: &job::Job, w: &Written, eject: bool) -> String {
    let image_len = w.image_bytes;
    let what = match (&w.layout, job.compressed()) {
        (Some(l), _) => format!(
            "a built layout ({}) of {}",
            layout_line(l),
            human_bytes(image_len)
        ),
        (None, Some(c)) => format!(
            "{} byte for byte, decompressed from {} ({}){}",
            human_bytes(image_len),
            c.format(),
            human_bytes(c.compressed_len()),
            super::render::zip_member_line(c)
        ),
        (None, None) if job.is_stream() => format!(
            "{} byte for byte {}{}",
            human_bytes(image_len),
            if job.is_download() {
                "downloaded"
            } else {
                "from a stream"
            },
            job.stream_format()
                .map(|f| format!(", decompressed from {f}"))
                .unwrap_or_default()
        ),
        (None, None) => format!("{} byte for byte", human_bytes(image_len)),
    };
    let secs = w.elapsed;
    // Where the time went, in the same line: "write 10.6 s, sync 0.1 s, …".
    let phases: Vec<String> = w
        .phases
        .iter()
        .map(|p| format!("{} {:.1} s", p.phase.name(), p.seconds))
        .collect();
    let split = if phases.is_empty() {
        String::new()
    } else {
        format!("{}; ", phases.join(", "))
    };
    let summary = format!(
        "Wrote {what} to {} in {secs:.1} s ({split}{}/s){}.{}",
        w.target.display(),
        human_bytes((w.bytes_written as f64 / secs.max(1e-6)) as u64),
        if w.verified {
            ", verified by reading it back"
        } else {
            ", NOT verified (--no-verify)"
        },
        match (&w.decompressed_digest, &w.source_digest) {
            (Some(d), _) => format!("\nDecompressed image {}: {}", d.algorithm, d.hex),
            (None, Some(d)) => format!("\nImage {}: {}", d.algorithm, d.hex),
            (None, None) => String::new(),
        },
    );
    let summary = match job.bmap() {
        Some(b) => format!("{summary}{}", super::bmap::line(b)),
        None => summary,
    };
    let summary = match &w.download {
        Some(d) => format!(
            "{summary}{}{}",
            match d.resumed {
                0 => String::new(),
                n => format!("\nThe download broke off and was resumed {n} time(s), from the same file (ETag/Last-Modified and length)."),
            },
            d.saved
                .as_ref()
                .map(|p| format!("\nSaved the download as {}.", p.display()))
                .unwrap_or_default()
        ),
        None => summary,
    };
    let summary = match job.checked() {
        Some(r) => format!("{summary}\n{}", super::references::check_summary(r)),
        None => summary,
    };
    // A device target (its partitions were re-read) with --eject.
    match (eject, w.ejected, w.partitions.is_some()) {
        (_, true, _) => format!(
            "{summary}\nEjected {}: it can be unplugged now.",
            w.target.display()
        ),
        (true, false, true) => format!(
            "{summary}\nNot ejected (see the warning above): unplug {} once this command has finished.",
            w.target.display()
        ),
        _ => summary,
    }
}

/// Runs every job at once (`job::run_all`: one thread each; a failing job
/// does not stop the others). The overall `result` lists every target; the
/// exit code is that of the first failed target in argument order.
fn run_many(
    job: &job::Job,
    jobs: Vec<Prepared>,
    options: &RunOptions,
    render: &Renderer,
    json: bool,
    boot: Option<&bootstick::boot_test::Options>,
) -> Result<(), Failure> {
    let labels: Vec<String> = jobs
        .iter()
        .map(|j| j.target_path().display().to_string())
        .collect();
    let width = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    let renders: Vec<Renderer> = labels.iter().map(|l| render.for_target(l, width)).collect();
    // With --boot-test each target is booted as soon as it is written and
    // verified, one boot at a time (cli::boot::after_one).
    let paths: Vec<PathBuf> = jobs.iter().map(|j| j.target_path().to_path_buf()).collect();
    let boots = boot.map(|b| super::boot::per_target(b, &paths));
    for (j, r) in jobs.iter().zip(&renders) {
        r.start("write", &j.start(options.verify));
    }
    if json {
        warn_notices(job, render);
    }
    let outcomes: Vec<Result<Done, Failure>> =
        job::run_all(jobs, options, &renders, |i, outcome| {
            let outcome = match outcome {
                Ok(w) => {
                    let line = summary(job, &w, options.eject);
                    match &boots {
                        Some(b) => super::boot::after_one(&w.target, &b[i], &w, line, json).map(
                            |(report, summary)| Done {
                                written: w,
                                boot_test: Some(report),
                                summary,
                            },
                        ),
                        None => Ok(Done {
                            written: w,
                            boot_test: None,
                            summary: line,
                        }),
                    }
                }
                Err(e) => Err(advice::failure(e)),
            };
            match &outcome {
                Ok(done) => renders[i].target_result(Ok(&done.fields())),
                Err(f) => renders[i].target_result(Err::<&WithBootTest<Written>, _>(f)),
            }
            outcome
        });
    let mut targets = Vec::with_capacity(outcomes.len());
    let mut lines = Vec::with_capacity(outcomes.len());
    for (label, outcome) in labels.iter().zip(&outcomes) {
        match outcome {
            Ok(done) => {
                targets.push(TargetEntry::Written {
                    target: label,
                    ok: true,
                    written: done.fields(),
                });
                lines.push(format!("ok     {}", done.summary));
            }
            Err(f) => {
                targets.push(TargetEntry::Failed {
                    target: label,
                    ok: false,
                    error: super::render::chain(&f.error),
                    exit_code: f.exit as u8,
                    fields: &f.fields,
                });
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
        render.overall(true, &Targets { targets }, &lines.join("\n"));
        return Ok(());
    };
    let error = anyhow::anyhow!(
        "{} of {} targets failed (the others were written); first: {first_label}: {}",
        failed.len(),
        labels.len(),
        super::render::chain(&first.error)
    );
    let overall = FailedTargets {
        targets,
        error: super::render::chain(&error),
        exit_code: first.exit as u8,
        // An interrupted job says so in the overall result too (each
        // target's state is in its own entry).
        interrupted: first.fields.get("interrupted"),
        signal: first.fields.get("signal"),
    };
    render.overall(false, &overall, &lines.join("\n"));
    Err(Failure::new(first.exit, error).reported())
}

/// One target of a multi-target job that was written (and booted, with
/// `--boot-test`): what its result reports and the line for people.
struct Done {
    written: Written,
    boot_test: Option<Report>,
    summary: String,
}

impl Done {
    /// Its `result` fields: the write's, and the boot test's report.
    fn fields(&self) -> WithBootTest<'_, Written> {
        WithBootTest {
            written: &self.written,
            boot_test: self.boot_test.as_ref(),
        }
    }
}

/// One target's entry in a multi-target job's `targets` (docs/cli.md,
/// "Several targets").
#[derive(Serialize)]
#[serde(untagged)]
enum TargetEntry<'a> {
    Written {
        target: &'a str,
        ok: bool,
        #[serde(flatten)]
        written: WithBootTest<'a, Written>,
    },
    Failed {
        target: &'a str,
        ok: bool,
        error: String,
        exit_code: u8,
        #[serde(flatten)]
        fields: &'a serde_json::Map<String, serde_json::Value>,
    },
}

/// A multi-target job's `result` when every target was written.
#[derive(Serialize)]
struct Targets<'a> {
    targets: Vec<TargetEntry<'a>>,
}

/// A multi-target job's `result` when a target failed: the first failure's
/// message and code, and whether a signal stopped the job.
#[derive(Serialize)]
struct FailedTargets<'a> {
    targets: Vec<TargetEntry<'a>>,
    error: String,
    exit_code: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    interrupted: Option<&'a serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    signal: Option<&'a serde_json::Value>,
}

/// One target's `result` fields, with the `write --probe` report of the
/// disk when it was probed first.
#[derive(Serialize)]
struct WithProbe<'a> {
    #[serde(flatten)]
    written: &'a Written,
    #[serde(skip_serializing_if = "Option::is_none")]
    probe: Option<&'a bootstick::health::Report>,
}
