//! `bootstick boot-test TARGET|FILE`: boots a stick or image file in QEMU,
//! read-only, under each firmware asked for, and says whether it boots
//! (`bootstick::boot_test`, docs/boot-test.md).

use std::path::PathBuf;

use serde::Serialize;

use super::boot::{self, FirmwareArg, SETTLE};
use super::exit::{Exit, Failure};
use super::render::Renderer;
use bootstick::boot_test::Firmware;
use bootstick::devices::{Disk, Roots};

/// Boot a stick (or image file) read-only in QEMU: does it boot?
///
/// Real firmware boots TARGET as a USB stick: SeaBIOS (bios), OVMF (uefi),
/// OVMF with Secure Boot and Microsoft's keys (uefi-secure-boot). QEMU opens
/// it read-only with a throw-away overlay, without network: nothing reaches
/// the stick. Each firmware's verdict comes from what the firmware says:
/// boots, does-not-boot (with the reason), unknown, or skipped (the image
/// cannot boot that way on real PCs). Evidence, not a guarantee for every
/// PC: docs/boot-test.md. Needs qemu-system-x86 and ovmf (Debian).
///
/// Exit codes: 0 boots everywhere tested, 20 does not boot under one,
/// 21 unknown under one, 22 QEMU or OVMF missing.
///
/// Examples:
///   bootstick boot-test /dev/sdb
///   bootstick boot-test --firmware uefi-secure-boot debian.iso
///   bootstick boot-test --screenshot shots --json stick.img
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The stick or image file to boot: a device (e.g. /dev/sdb), a
    /// /dev/disk/by-id link, the disk's by-id name or serial, or a file.
    /// It is only read.
    pub target: PathBuf,
    /// The firmwares to boot under, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "bios,uefi",
        value_name = "LIST"
    )]
    pub firmware: Vec<FirmwareArg>,
    /// Seconds each firmware may take to start a loader or give up.
    #[arg(long, default_value_t = boot::TIMEOUT, value_name = "S",
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout: u64,
    /// Save the screen under each firmware as DIR/FIRMWARE.png.
    #[arg(long, value_name = "DIR")]
    pub screenshot: Option<PathBuf>,
    /// Print newline-delimited JSON events on stdout (schema in docs/cli.md).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> Result<(), Failure> {
    let render = Renderer::new(args.json);
    render.failure(run_inner(&args, &render))
}

fn run_inner(args: &Args, render: &Renderer) -> Result<(), Failure> {
    let (path, disk) = bootstick::job::resolve_for_reading(&Roots::live(), &args.target)
        .map_err(super::advice::failure)?;
    let options = boot::options(&args.firmware, args.timeout, args.screenshot.as_deref());
    render.start(
        "boot-test",
        &BootTestStart {
            image: &args.target,
            target: &path,
            disk: disk.as_deref(),
            firmware: &options.firmware,
            timeout: args.timeout,
            settle: SETTLE.as_secs(),
            screenshot_dir: args.screenshot.as_deref(),
        },
    );
    super::signals::cooperate();
    let report = boot::run(&path, &options, args.json)?;
    if !args.json {
        print!("{}", boot::human(&report));
    }
    let summary = boot::summary(&path, &report);
    match super::exit::boot_verdicts(&report) {
        Exit::Ok => {
            render.result(Ok((&report, summary)));
            Ok(())
        }
        exit => Err(Failure::new(exit, anyhow::anyhow!(summary)).with_fields(&report)),
    }
}

/// The `start` line of `boot-test` (docs/cli.md).
#[derive(Serialize)]
struct BootTestStart<'a> {
    image: &'a std::path::Path,
    target: &'a std::path::Path,
    disk: Option<&'a Disk>,
    firmware: &'a [Firmware],
    timeout: u64,
    settle: u64,
    screenshot_dir: Option<&'a std::path::Path>,
}
