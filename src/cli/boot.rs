//! Booting what was written, as the command line says it: `--firmware`
//! values, the options from the environment, the verdicts in words and
//! their exit code. Shared by `boot-test` and `write --boot-test`. Not a
//! command.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use super::exit::{Exit, Failure};
use bootstick::boot_test::{self, Accel, Firmware, OvmfFiles, Report, Verdict};
use bootstick::image::ImageFile;

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

/// `--timeout`'s default, seconds.
pub const TIMEOUT: u64 = 120;

/// `write`'s boot-test flags, flattened into its arguments: the same names
/// and meanings as `boot-test`'s, each needing `--boot-test`.
#[derive(Debug, clap::Args)]
pub struct WriteArgs {
    /// After the verified write, boot each target read-only in QEMU and say
    /// whether it boots, as `bootstick boot-test` does (needs
    /// qemu-system-x86 and ovmf).
    #[arg(long, conflicts_with_all = ["no_verify", "eject"])]
    pub boot_test: bool,
    /// With --boot-test: the firmwares to boot under, comma-separated
    /// (bios, uefi, uefi-secure-boot) [default: bios,uefi].
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        value_name = "LIST",
        requires = "boot_test"
    )]
    pub firmware: Vec<FirmwareArg>,
    /// With --boot-test: seconds each firmware may take to start a loader
    /// or give up [default: 120].
    #[arg(long, value_name = "S", requires = "boot_test",
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout: Option<u64>,
    /// With --boot-test: save the screen under each firmware as
    /// DIR/FIRMWARE.png (several TARGETs: DIR/TARGET-NAME/FIRMWARE.png).
    #[arg(long, value_name = "DIR", requires = "boot_test")]
    pub screenshot: Option<PathBuf>,
}

impl WriteArgs {
    /// The boot test to run after the write, when one was asked for.
    pub fn options(&self) -> Option<boot_test::Options> {
        self.boot_test.then(|| {
            let firmware: &[FirmwareArg] = if self.firmware.is_empty() {
                &[FirmwareArg::Bios, FirmwareArg::Uefi]
            } else {
                &self.firmware
            };
            options(
                firmware,
                self.timeout.unwrap_or(TIMEOUT),
                self.screenshot.as_deref(),
            )
        })
    }
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

/// The options a `boot-test` (or `write --boot-test`) runs with.
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
pub struct Say(pub bool);

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

/// Boots `path` (already resolved) with `options`; a boot test stopped by a
/// signal is reported as interrupted.
pub fn run(path: &Path, options: &boot_test::Options, json: bool) -> Result<Report, Failure> {
    // Only for the checks before booting (a FAT volume with a UEFI
    // loader); QEMU opens the path itself, read-only.
    let src = ImageFile::open(path)?;
    boot_test::run(path, &src, options, &Say(json)).map_err(failure)
}

/// The failure for a boot-test error.
pub fn failure(e: boot_test::Error) -> Failure {
    match e {
        boot_test::Error::Cancelled => Failure::interrupted(
            super::signals::token().signal(),
            None,
            anyhow::Error::new(e),
        ),
        e => Failure::new(super::exit::boot_test_error(&e), e),
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
pub fn human(report: &Report) -> String {
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
pub fn summary(path: &Path, report: &Report) -> String {
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

/// QEMU and OVMF are installed (exit 22 naming the packages otherwise).
pub fn available(options: &boot_test::Options) -> Result<(), Failure> {
    boot_test::available(options).map(drop).map_err(failure)
}

/// The boot-test options for each of several targets: the same, with the
/// screenshots of each in its own directory, `DIR/<target's file name>`
/// (`sdb`, `stick.img`), numbered `-2`, `-3` … when two targets share one.
pub fn per_target(options: &boot_test::Options, targets: &[PathBuf]) -> Vec<boot_test::Options> {
    let mut seen: Vec<String> = Vec::new();
    targets
        .iter()
        .map(|t| {
            let mut o = options.clone();
            if let Some(dir) = &options.screenshots {
                let base = t
                    .file_name()
                    .map_or_else(|| "target".to_owned(), |n| n.to_string_lossy().into_owned());
                let mut name = base.clone();
                let mut n = 1;
                while seen.contains(&name) {
                    n += 1;
                    name = format!("{base}-{n}");
                }
                seen.push(name.clone());
                o.screenshots = Some(dir.join(name));
            }
            o
        })
        .collect()
}

/// After one of several targets was written and verified (on its job's
/// thread): boots it — one boot at a time across the targets, as QEMU
/// under TCG takes a core, while the other targets go on writing — and
/// returns the boot test's report and the target's `summary_line`
/// followed by the verdicts; or the failure with the boot test's exit
/// code, saying the write succeeded (its fields: `written` and
/// `boot_test`).
pub fn after_one<W: Serialize>(
    target: &Path,
    options: &boot_test::Options,
    written: &W,
    summary_line: String,
    json: bool,
) -> Result<(Report, String), Failure> {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let report = {
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        // Quiet: the other targets' bars are still drawn.
        run(target, options, true)?
    };
    let boot = summary(target, &report);
    let verdicts = indent(&human(&report));
    match super::exit::boot_verdicts(&report) {
        Exit::Ok => Ok((report, format!("{summary_line}\n{verdicts}       {boot}"))),
        exit => {
            let error = if json {
                anyhow::anyhow!("written and verified, but {boot}")
            } else {
                anyhow::anyhow!("written and verified, but {boot}\n{}", verdicts.trim_end())
            };
            Err(Failure::new(exit, error).with_fields(&WithBootTest {
                written,
                boot_test: Some(&report),
            }))
        }
    }
}

/// `text`'s lines, each indented under the "ok     " of `write`'s
/// several-target summary.
fn indent(text: &str) -> String {
    text.lines().map(|l| format!("       {l}\n")).collect()
}

/// After a verified write: boots `target` and ends the run with the
/// write's `fields` and `summary` and the boot test's report (`boot_test`
/// in the JSON `result`); a target that does not boot (or could not be
/// judged) fails the run with the boot test's exit code, saying the write
/// itself succeeded.
pub fn after_write(
    target: &Path,
    options: &boot_test::Options,
    written: &impl Serialize,
    summary_line: String,
    render: &super::render::Renderer,
    json: bool,
) -> Result<(), Failure> {
    if !json {
        println!("{summary_line}");
    }
    let report = run(target, options, json)?;
    let fields = WithBootTest {
        written,
        boot_test: Some(&report),
    };
    if !json {
        print!("{}", human(&report));
    }
    let boot = summary(target, &report);
    match super::exit::boot_verdicts(&report) {
        Exit::Ok => {
            render.result(Ok((&fields, boot)));
            Ok(())
        }
        exit => Err(
            Failure::new(exit, anyhow::anyhow!("written and verified, but {boot}"))
                .with_fields(&fields),
        ),
    }
}

/// A write's `result` fields with the boot test's report beside them
/// (none without `--boot-test`).
#[derive(Serialize)]
pub struct WithBootTest<'a, W> {
    #[serde(flatten)]
    pub written: &'a W,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boot_test: Option<&'a Report>,
}
