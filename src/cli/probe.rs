//! `bootstick probe TARGET`: is this stick fake, failing or slow? Parses,
//! chooses the disk through the library's target selection (the rules and
//! question of `write`), renders `bootstick::health::probe`'s report.

use std::path::PathBuf;

use super::advice;
use super::exit::{self, Exit, Failure};
use super::probe_report::describe;
use super::render::Renderer;
use bootstick::devices::{Policy, Roots};
use bootstick::health::{self, Mode};
use bootstick::job;

/// Test a stick for fake capacity, bad sectors and speed.
///
/// Writes position-tagged test patterns (each sector's own offset and a
/// random number of this run) and reads them back bypassing every cache.
/// This ERASES the stick: the same rules and confirmation as `write` apply
/// (`--yes` for scripts). Afterwards the stick holds test patterns with its
/// first and last MiB zeroed: write an image onto it or format it.
///
/// Quick (default): a few thousand blocks over the whole reported capacity
/// and three 16 MiB sequential runs (speeds), seconds to a minute. `--full`
/// writes and reads every block. `--read-only` reads every block, writes
/// nothing and asks nothing (any disk, the system disk too; a read cannot
/// tell a fake stick).
///
/// Verdicts and exit codes: genuine (0), readable (0, --read-only),
/// fake-capacity (23), bad-sectors (24), slow (25).
///
/// Examples:
///   bootstick probe /dev/sdb
///   bootstick probe --full --yes --json usb-Generic_Flash_Disk_1234-0:0
///   bootstick probe --read-only /dev/sdb
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The disk to probe, named as for `write` (a device, a
    /// /dev/disk/by-id link, its by-id name or serial). Without it, a
    /// terminal offers the eligible disks.
    pub target: Option<PathBuf>,
    /// Write and read back every block instead of a sample.
    #[arg(long, conflicts_with = "read_only")]
    pub full: bool,
    /// Read every block; write nothing.
    #[arg(long)]
    pub read_only: bool,
    /// Do not ask for confirmation (scripts must give it).
    #[arg(long)]
    pub yes: bool,
    /// Unmount the disk's mounted filesystems first.
    #[arg(long)]
    pub unmount: bool,
    /// Allow an internal disk (never the system disk).
    #[arg(long)]
    pub force: bool,
    /// Sequential writing below this many MB/s is `slow`.
    #[arg(long, value_name = "MB/S", default_value_t = 2.0)]
    pub min_write_speed: f64,
    /// Sequential reading below this many MB/s is `slow`.
    #[arg(long, value_name = "MB/S", default_value_t = 5.0)]
    pub min_read_speed: f64,
    /// Print newline-delimited JSON events on stdout (schema in docs/cli.md).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> Result<(), Failure> {
    let render = Renderer::new(args.json);
    render.failure(run_inner(&args, &render))
}

fn run_inner(args: &Args, render: &Renderer) -> Result<(), Failure> {
    let mode = match (args.full, args.read_only) {
        (_, true) => Mode::ReadOnly,
        (true, false) => Mode::Full,
        (false, false) => Mode::Quick,
    };
    let target = match &args.target {
        Some(t) => t.clone(),
        None => super::target::given_or_picked(&[])?.remove(0),
    };
    let roots = Roots::live();
    let mut options = health::Options::new(mode);
    options.min_write_speed = (args.min_write_speed * 1e6) as u64;
    options.min_read_speed = (args.min_read_speed * 1e6) as u64;
    options.cancel = super::signals::token();
    let (path, disk, guard) = if mode == Mode::ReadOnly {
        let (path, disk) = job::resolve_for_reading(&roots, &target).map_err(advice::failure)?;
        (path, disk, None)
    } else {
        let mut confirm: Box<dyn job::Confirm> = if args.yes {
            Box::new(job::Yes)
        } else {
            Box::new(super::target::Prompt)
        };
        let (disk, guard) = job::choose_disk(
            &roots,
            &target,
            Policy {
                unmount: args.unmount,
                force: args.force,
            },
            &mut *confirm,
            job::Action::Probe,
        )
        .map_err(advice::failure)?;
        (disk.path.clone(), Some(disk), Some(guard))
    };
    render.start(
        "probe",
        &ProbeStart {
            target: &path,
            mode,
            disk: &disk,
        },
    );
    super::signals::cooperate();
    let report = health::probe(&path, guard.as_ref(), &options, render)?;
    drop(guard);
    let text = describe(&report);
    match exit::probe_verdict(report.verdict) {
        Exit::Ok => {
            render.result(Ok((&report, text)));
            Ok(())
        }
        code => Err(Failure::new(code, anyhow::anyhow!("{text}")).with_fields(&report)),
    }
}

/// The `start` line of `probe` (docs/cli.md).
#[derive(serde::Serialize)]
struct ProbeStart<'a, D: serde::Serialize> {
    target: &'a std::path::Path,
    mode: Mode,
    disk: &'a D,
}
