//! `bootstick write IMAGE TARGET`: raw-copy an image onto a stick or into a
//! file, flush it, read it back.

use std::fs::File;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use serde_json::json;

use super::exit::{Exit, Failure};
use super::render::{human_bytes, Renderer};
use bootstick::plan::{Plan, PlanError};
use bootstick::write;

/// Write an image to a stick or a file, then read it back to prove it.
///
/// The image (a hybrid ISO or a raw disk image) is copied byte for byte with
/// direct I/O, flushed, and read back bypassing the page cache. When the image is smaller than the device, the device's last MiB is
/// zeroed too, so no stale backup partition table survives there.
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
    /// Where to write it: a whole disk (e.g. /dev/sdb; everything on it is
    /// erased) or a file path (created, or overwritten).
    pub target: PathBuf,
    /// Do not ask before overwriting a block device.
    #[arg(short, long)]
    pub yes: bool,
    /// Skip reading the target back after writing.
    #[arg(long)]
    pub no_verify: bool,
    /// Print newline-delimited JSON events on stdout instead of a progress bar
    /// (schema in docs/cli.md).
    #[arg(long)]
    pub json: bool,
    /// Copy the image byte for byte even when `bootstick inspect` says it
    /// needs a built layout (a non-hybrid ISO, which will likely not boot).
    #[arg(long)]
    pub raw: bool,
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
        E::OpenTarget { .. } | E::WriteTarget { .. } | E::Sync { .. } | E::ReadTarget { .. } => {
            Exit::WriteFailed
        }
        E::ReadSource { .. } | E::SourceTruncated { .. } | E::SourceChanged { .. } => {
            Exit::BadInput
        }
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

/// Asks the user to confirm erasing a block device. Refuses when nobody can
/// be asked (stdin is not a terminal).
fn confirm(target: &write::Target, image: &Path, image_len: u64) -> Result<(), Failure> {
    let cap = target.capacity().unwrap_or(0);
    let what = format!(
        "{} ({}, {cap} bytes)",
        target.path().display(),
        human_bytes(cap)
    );
    if !std::io::stdin().is_terminal() {
        return Err(Failure::new(
            Exit::Declined,
            anyhow::anyhow!(
                "writing to {what} erases everything on it; no terminal to ask for confirmation, pass --yes to proceed"
            ),
        ));
    }
    eprint!(
        "Write {} ({}) to {what}?\nEVERYTHING on {} will be erased. Continue? [y/N] ",
        image.display(),
        human_bytes(image_len),
        target.path().display()
    );
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    if matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        Ok(())
    } else {
        Err(Failure::new(
            Exit::Declined,
            anyhow::anyhow!("not confirmed; {} was not touched", target.path().display()),
        ))
    }
}

pub fn run(args: Args) -> Result<(), Failure> {
    let render = Renderer::new(args.json);
    let result = run_inner(&args, &render);
    if let Err(f) = &result {
        render.result(Err((&f.error, f.exit as u8)));
    }
    result
}

fn run_inner(args: &Args, render: &Renderer) -> Result<(), Failure> {
    let (source, image_len) = open_image(&args.image)?;
    let mode = super::inspect::write_mode(&args.image, args.raw)?;
    let fail = |e: write::Error| Failure::new(exit_for(&e), e);
    let mut target = write::Target::open(&args.target).map_err(fail)?;
    let plan = match target.capacity() {
        Some(cap) => Plan::raw(image_len)
            .with_tail_wipe(cap)
            .map_err(|e| fail(e.into()))?,
        None => Plan::raw(image_len),
    };
    if target.is_block_device() && !args.yes {
        confirm(&target, &args.image, image_len)?;
    }
    render.start(
        "write",
        json!({
            "image": args.image,
            "target": args.target,
            "image_bytes": image_len,
            "target_bytes": target.capacity(),
            "block_device": target.is_block_device(),
            "plan_bytes": plan.bytes_to_write(),
            "verify": !args.no_verify,
            "decision": mode.decision,
        }),
    );
    for w in mode.warnings {
        bootstick::events::Observer::event(render, &bootstick::events::Event::Warning(w));
    }
    let options = write::Options {
        verify: !args.no_verify,
        ..write::Options::default()
    };
    let started = Instant::now();
    let report = write::write(&plan, &source, &mut target, options, render).map_err(fail)?;
    let secs = started.elapsed().as_secs_f64();
    let summary = format!(
        "Wrote {} to {} in {secs:.1} s ({}/s){}.\nImage {}: {}",
        human_bytes(image_len),
        args.target.display(),
        human_bytes((report.bytes_written as f64 / secs.max(1e-6)) as u64),
        if report.verified {
            ", verified by reading it back"
        } else {
            ", NOT verified (--no-verify)"
        },
        report.source_digest.algorithm(),
        report.source_digest.to_hex(),
    );
    render.result(Ok((
        json!({
            "bytes_written": report.bytes_written,
            "verified": report.verified,
            "direct_io": report.direct_io,
            "source_digest": {
                "algorithm": report.source_digest.algorithm(),
                "hex": report.source_digest.to_hex(),
            },
            "seconds": (secs * 1000.0).round() / 1000.0,
        }),
        summary,
    )));
    Ok(())
}
