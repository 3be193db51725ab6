//! `bootstick boot-test TARGET|FILE`: boots a stick or image file in QEMU,
//! read-only, under each firmware asked for, and says whether it boots
//! (`bootstick::boot_test`, docs/boot-test.md).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use super::exit::{Exit, Failure};
use super::render::Renderer;
use bootstick::boot_test::{self, Accel, Firmware, OvmfFiles, Report, Verdict};
use bootstick::devices::Roots;
use bootstick::image::ImageFile;

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
    #[arg(long, default_value_t = 120, value_name = "S",
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout: u64,
    /// Save the screen under each firmware as DIR/FIRMWARE.png.
    #[arg(long, value_name = "DIR")]
    pub screenshot: Option<PathBuf>,
    /// Print newline-delimited JSON events on stdout (schema in docs/cli.md).
    #[arg(long)]
    pub json: bool,
}

/// `--firmware` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FirmwareArg {
    Bios,
    Uefi,
    UefiSecureBoot,
}

impl From<FirmwareArg> for Firmware {
    fn from(f: FirmwareArg) -> Firmware {
        match f {
            FirmwareArg::Bios => Firmware::Bios,
            FirmwareArg::Uefi => Firmware::Uefi,
            FirmwareArg::UefiSecureBoot => Firmware::UefiSecureBoot,
        }
    }
}

/// How long a started loader must run without the firmware taking over
/// (docs/boot-test.md).
pub const SETTLE: Duration = Duration::from_secs(5);

pub fn run(args: Args) -> Result<(), Failure> {
    let render = Renderer::new(args.json);
    render.failure(run_inner(&args, &render))
}

/// A pair of OVMF files from two environment variables (tests, and OVMF
/// installed elsewhere than Debian, Fedora or Arch put it).
fn ovmf_from_env(code: &str, vars: &str) -> Option<OvmfFiles> {
    Some(OvmfFiles {
        code: std::env::var_os(code)?.into(),
        vars: std::env::var_os(vars)?.into(),
    })
}

/// Where the KVM probe remembers its verdict: `$XDG_CACHE_HOME/bootstick`
/// or `~/.cache/bootstick`.
fn probe_cache() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
        .map(|c| c.join("bootstick"))
}

/// The options a `boot-test` (or, later, `write --boot-test`) runs with.
pub fn options(
    firmware: &[FirmwareArg],
    timeout: u64,
    screenshot: Option<&Path>,
) -> boot_test::Options {
    let mut fws: Vec<Firmware> = Vec::new();
    for f in firmware {
        if !fws.contains(&(*f).into()) {
            fws.push((*f).into());
        }
    }
    boot_test::Options {
        firmware: fws,
        timeout: Duration::from_secs(timeout),
        settle: SETTLE,
        screenshots: screenshot.map(Path::to_owned),
        accel: match std::env::var("BOOTSTICK_QEMU_ACCEL").as_deref() {
            Ok("tcg") => Some(Accel::Tcg),
            Ok("kvm") => Some(Accel::Kvm),
            _ => None,
        },
        probe_cache: probe_cache(),
        ovmf: ovmf_from_env("BOOTSTICK_OVMF_CODE", "BOOTSTICK_OVMF_VARS"),
        ovmf_secure_boot: ovmf_from_env("BOOTSTICK_OVMF_SB_CODE", "BOOTSTICK_OVMF_SB_VARS"),
        cancel: super::signals::token(),
        ..boot_test::Options::default()
    }
}

/// Tells people which boot is running (stderr; JSON runs stay quiet).
struct Say(bool);

impl boot_test::Observer for Say {
    fn booting(&self, firmware: Firmware, accel: Accel) {
        if !self.0 {
            super::signals::say(&format!(
                "booting under {} ({})…",
                firmware.title(),
                accel.name()
            ));
        }
    }
}

fn run_inner(args: &Args, render: &Renderer) -> Result<(), Failure> {
    let (path, disk) = bootstick::job::resolve_for_reading(&Roots::live(), &args.target)
        .map_err(super::advice::failure)?;
    // Only for the checks before booting (a FAT volume with a UEFI
    // loader); QEMU opens the path itself, read-only.
    let src = ImageFile::open(&path).map_err(|e| Failure::new(super::exit::image_error(&e), e))?;
    let options = options(&args.firmware, args.timeout, args.screenshot.as_deref());
    render.start(
        "boot-test",
        json!({
            "image": args.target,
            "target": path,
            "disk": disk,
            "firmware": options.firmware,
            "timeout": args.timeout,
            "settle": SETTLE.as_secs(),
            "screenshot_dir": args.screenshot,
        }),
    );
    super::signals::cooperate();
    let report = boot_test::run(&path, &src, &options, &Say(args.json)).map_err(|e| match e {
        boot_test::Error::Cancelled => Failure::interrupted(
            super::signals::token().signal(),
            None,
            anyhow::Error::new(e),
        ),
        e => Failure::new(super::exit::boot_test_error(&e), e),
    })?;
    let fields = serde_json::to_value(&report).map_err(|e| Failure::new(Exit::Internal, e))?;
    if !args.json {
        print!("{}", human(&report));
    }
    let summary = summary(&path, &report);
    match super::exit::boot_verdicts(&report) {
        Exit::Ok => {
            render.result(Ok((fields, summary)));
            Ok(())
        }
        exit => Err(Failure::new(exit, anyhow::anyhow!(summary)).with_fields(fields)),
    }
}

fn verdict_word(v: Verdict) -> &'static str {
    match v {
        Verdict::Boots => "boots",
        Verdict::DoesNotBoot => "does not boot",
        Verdict::Unknown => "unknown",
        Verdict::Skipped => "skipped",
    }
}

/// One paragraph per firmware: the verdict, why, the firmware's lines.
fn human(report: &Report) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    for r in &report.results {
        let _ = writeln!(
            s,
            "{:<17} {}: {} ({:.1} s)",
            r.firmware.name(),
            verdict_word(r.verdict),
            r.message,
            r.seconds
        );
        for line in &r.evidence {
            let _ = writeln!(s, "{:<17}   firmware: {line}", "");
        }
        if let Some(p) = &r.screenshot {
            let _ = writeln!(s, "{:<17}   screenshot: {}", "", p.display());
        }
    }
    s
}

/// "X boots under BIOS and UEFI (screenshots: …)", or what does not.
fn summary(path: &Path, report: &Report) -> String {
    let names = |v: Verdict| -> Vec<&str> {
        report
            .results
            .iter()
            .filter(|r| r.verdict == v)
            .map(|r| r.firmware.title())
            .collect()
    };
    let mut parts = Vec::new();
    for (v, word) in [
        (Verdict::Boots, "boots under"),
        (Verdict::DoesNotBoot, "does not boot under"),
        (Verdict::Unknown, "could not be judged under"),
        (Verdict::Skipped, "was not booted under"),
    ] {
        let n = names(v);
        if !n.is_empty() {
            parts.push(format!("{word} {}", n.join(" and ")));
        }
    }
    let shots: Vec<String> = report
        .results
        .iter()
        .filter_map(|r| r.screenshot.as_ref().map(|p| p.display().to_string()))
        .collect();
    let shots = if shots.is_empty() {
        String::new()
    } else {
        format!(" (screenshots: {})", shots.join(", "))
    };
    format!(
        "{} {}{shots}; evidence from emulated firmware, not a guarantee for every PC",
        path.display(),
        parts.join("; ")
    )
}
