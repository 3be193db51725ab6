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
    let src = ImageFile::open(path).map_err(|e| Failure::new(super::exit::image_error(&e), e))?;
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

/// The boot test `write --boot-test` runs: BIOS and UEFI, the default
/// timeout, no screenshots.
pub fn after_write_options() -> boot_test::Options {
    options(&[FirmwareArg::Bios, FirmwareArg::Uefi], 120, None)
}

/// QEMU and OVMF are installed (exit 22 naming the packages otherwise).
pub fn available(options: &boot_test::Options) -> Result<(), Failure> {
    boot_test::available(options).map(drop).map_err(failure)
}

/// `write --boot-test` boots one target (exit 2 for several, before
/// anything is written).
pub fn one_target(targets: &[PathBuf]) -> Result<(), Failure> {
    if targets.len() > 1 {
        return Err(Failure::new(
            Exit::Usage,
            anyhow::anyhow!(
                "--boot-test boots one TARGET, and {} were given: write them, then run `bootstick boot-test` on each",
                targets.len()
            ),
        ));
    }
    Ok(())
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
        boot_test: &report,
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

/// A write's `result` fields with the boot test's report beside them.
#[derive(Serialize)]
struct WithBootTest<'a, W> {
    #[serde(flatten)]
    written: &'a W,
    boot_test: &'a Report,
}
