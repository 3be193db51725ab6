//! `bootstick compare IMAGE TARGET`: does this stick (or file) still hold the
//! image? Reads the target without writing and reports the first byte that
//! differs.

use std::path::PathBuf;
use std::time::Instant;

use serde_json::json;

use super::exit::Failure;
use super::render::{human_bytes, Renderer};
use super::write::{exit_for, open_image};
use bootstick::plan::Plan;
use bootstick::write;

/// Compare a device or file with an image, without writing anything.
///
/// Reads the first IMAGE-size bytes of TARGET, bypassing the page cache, and
/// compares them with the image. Bytes after the image's end are ignored.
/// Exits 0 when they match, 6 with the first differing offset when they do
/// not (or when the target is shorter than the image).
///
/// Examples:
///   bootstick compare debian-13-amd64-netinst.iso /dev/sdb
///   bootstick compare --json image.iso stick.img
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The image the target should hold.
    pub image: PathBuf,
    /// The device (e.g. /dev/sdb) or file to check.
    pub target: PathBuf,
    /// Print newline-delimited JSON events on stdout (schema in docs/cli.md).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> Result<(), Failure> {
    let render = Renderer::new(args.json);
    render.failure(run_inner(&args, &render))
}

fn run_inner(args: &Args, render: &Renderer) -> Result<(), Failure> {
    let (source, image_len) = open_image(&args.image)?;
    let fail = |e: write::Error| Failure::new(exit_for(&e), e);
    let target = write::Target::open_read(&args.target).map_err(fail)?;
    let plan = Plan::raw(image_len);
    render.start(
        "compare",
        json!({
            "image": args.image,
            "target": args.target,
            "image_bytes": image_len,
            "target_bytes": target.capacity(),
            "block_device": target.is_block_device(),
        }),
    );
    let started = Instant::now();
    let report =
        write::compare(&plan, &source, &target, write::DEFAULT_CHUNK, render).map_err(fail)?;
    let secs = started.elapsed().as_secs_f64();
    render.result(Ok((
        json!({
            "bytes_compared": report.bytes_compared,
            "direct_io": report.direct_io,
            "seconds": (secs * 1000.0).round() / 1000.0,
        }),
        format!(
            "{} matches {}: all {} ({} bytes) identical.",
            args.target.display(),
            args.image.display(),
            human_bytes(report.bytes_compared),
            report.bytes_compared
        ),
    )));
    Ok(())
}
