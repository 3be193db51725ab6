//! `bootstick compare IMAGE TARGET`: does this stick (or file) still hold
//! what `bootstick write IMAGE TARGET` put there? Rebuilds the plan `write`
//! would compile (raw copy or built layout), reads the target without
//! writing and reports the first byte that differs.

use std::path::PathBuf;
use std::time::Instant;

use serde_json::json;

use super::exit::Failure;
use super::render::{human_bytes, Renderer};
use super::write::{
    build_layout, layout_json, layout_line, mode_name, open_image, refuse_table_for_raw, TableArg,
};
use bootstick::inspect::Mode;
use bootstick::plan::Plan;
use bootstick::write;

/// Compare a device or file with what `write` makes of an image, without
/// writing anything.
///
/// The plan is the one `bootstick write` compiles, decided the same way: a
/// hybrid ISO or a disk image is compared byte for byte (the first
/// IMAGE-size bytes of TARGET; bytes after the image's end are ignored); a
/// non-hybrid ISO is compared with the GPT/MBR + FAT32 layout `write`
/// builds for a target of this size (`--raw` and `--table` as for
/// `write`). The target is read bypassing the page cache. Exits 0 when it
/// matches, 6 with the first differing offset when it does not (or when the
/// target is shorter than the plan).
///
/// Examples:
///   bootstick compare debian-13-amd64-netinst.iso /dev/sdb
///   bootstick compare Win11_24H2.iso usb-SanDisk_Ultra_4C530001-0:0
///   bootstick compare --table mbr --json image.iso stick.img
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The image the target should hold.
    pub image: PathBuf,
    /// The disk or file to check, named as for `write`: a device (e.g.
    /// /dev/sdb), a /dev/disk/by-id link, the disk's by-id name or serial
    /// number, or a file. It is only read: any disk may be compared.
    pub target: PathBuf,
    /// Compare with a byte-for-byte copy even when `write` would build a
    /// layout (as `write --raw`).
    #[arg(long)]
    pub raw: bool,
    /// Partition table of the built layout, as given to `write` (ignored
    /// for byte copies).
    #[arg(long, value_enum, default_value = "gpt")]
    pub table: TableArg,
    /// Print newline-delimited JSON events on stdout (schema in docs/cli.md).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> Result<(), Failure> {
    let render = Renderer::new(args.json);
    render.failure(run_inner(&args, &render))
}

fn run_inner(args: &Args, render: &Renderer) -> Result<(), Failure> {
    let image = open_image(&args.image)?;
    let image_len = image.len();
    let src = super::write::plan_source(&image, None)?;
    let fail = Failure::write;
    let (path, disk) = super::target::resolve_for_reading(&args.target)?;
    let target = write::Target::open_read(&path).map_err(fail)?;
    let mode = super::inspect::write_mode(&src, &args.image, args.raw)?;
    refuse_table_for_raw(args.table, args.raw, &mode)?;
    // As `write`: a device's layout fills the device, an image file's is
    // sized to fit. Raw copies are compared over the image only (the tail
    // wipe `write` adds on devices is not compared).
    let layout = if mode.decision.mode == Mode::Layout && !args.raw {
        let size = target
            .is_block_device()
            .then(|| target.capacity())
            .flatten();
        Some(build_layout(&src, &args.image, args.table, size)?)
    } else {
        None
    };
    let plan = match &layout {
        Some(l) => l.plan.clone(),
        None => Plan::raw(image_len),
    };
    render.start(
        "compare",
        json!({
            "image": args.image,
            "target": path,
            "disk": disk,
            "image_bytes": image_len,
            "target_bytes": target.capacity(),
            "block_device": target.is_block_device(),
            "plan_bytes": plan.bytes_to_write(),
            "decision": mode.decision,
            "mode": mode_name(layout.as_ref()),
            "layout": layout.as_ref().map(layout_json),
        }),
    );
    // From here on a signal stops the comparison between chunks.
    super::signals::cooperate();
    let started = Instant::now();
    let cancel = super::signals::token();
    let report = write::compare(
        &plan,
        image.file(),
        &target,
        write::DEFAULT_CHUNK,
        &cancel,
        render,
    )
    .map_err(fail)?;
    let secs = started.elapsed().as_secs_f64();
    let what = match &layout {
        Some(l) => format!("the built layout ({}) of", layout_line(l)),
        None => "a byte-for-byte copy of".into(),
    };
    render.result(Ok((
        json!({
            "bytes_compared": report.bytes_compared,
            "direct_io": report.direct_io,
            "seconds": (secs * 1000.0).round() / 1000.0,
        }),
        format!(
            "{} holds {what} {}: all {} ({} bytes) identical.",
            path.display(),
            args.image.display(),
            human_bytes(report.bytes_compared),
            report.bytes_compared
        ),
    )));
    Ok(())
}
