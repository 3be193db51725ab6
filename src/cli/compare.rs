//! `bootstick compare IMAGE TARGET`: does this stick (or file) still hold
//! what `bootstick write IMAGE TARGET` put there? Rebuilds the plan `write`
//! would compile (raw copy or built layout), reads the target without
//! writing and reports the first byte that differs.

use std::path::PathBuf;

use super::advice;
use super::exit::Failure;
use super::mode::{choice, TableArg};
use super::render::{human_bytes, layout_line, Renderer};
use bootstick::devices::Roots;
use bootstick::job;
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
    /// Compare with a built layout even when `write` would copy the image
    /// byte for byte (as `write --layout`).
    #[arg(long, conflicts_with = "raw")]
    pub layout: bool,
    /// Partition table of the built layout, as given to `write` (ignored
    /// for byte copies).
    #[arg(long, value_enum, default_value = "gpt")]
    pub table: TableArg,
    /// Print newline-delimited JSON events on stdout (schema in docs/cli.md).
    #[arg(long)]
    pub json: bool,
    /// When IMAGE is a zip archive holding several images: the member to
    /// compare with (its name in the archive, or its last component). Without it
    /// the one disk image or ISO in the archive is taken.
    #[arg(long, value_name = "NAME")]
    pub entry: Option<String>,
    /// Compare only the blocks a bmap maps, as `write` writes them (the
    /// same discovery beside the image, `--bmap FILE`, `--no-bmap`).
    #[command(flatten)]
    pub bmap: super::bmap::BmapArgs,
}

pub fn run(args: Args) -> Result<(), Failure> {
    let render = Renderer::new(args.json);
    render.failure(run_inner(&args, &render))
}

fn run_inner(args: &Args, render: &Renderer) -> Result<(), Failure> {
    let image = job::Image::open(&args.image)
        .map_err(advice::failure)?
        .with_entry(args.entry.clone())
        .with_bmap(args.bmap.choice());
    let (path, disk) =
        job::resolve_for_reading(&Roots::live(), &args.target).map_err(advice::failure)?;
    let target = write::Target::open_read(&path)?;
    // The decision and plan `write` makes for this target (job::Job).
    let job = image
        .decide(None, choice(args.raw, args.layout, args.table))
        .map_err(advice::failure)?;
    let prepared = job.prepare_compare(target, disk).map_err(advice::failure)?;
    render.start("compare", &prepared.start());
    // From here on a signal stops the comparison between chunks.
    super::signals::cooperate();
    let report = prepared
        .run(&super::signals::token(), render)
        .map_err(advice::failure)?;
    let what = match prepared.layout() {
        Some(l) => format!("the built layout ({}) of", layout_line(l)),
        None if prepared.start().esp_entry.is_some() => {
            "a copy, with an ESP entry added to its MBR (docs/layout.md), of".into()
        }
        None => "a byte-for-byte copy of".into(),
    };
    render.result(Ok((
        &report,
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
