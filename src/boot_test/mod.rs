//! Boot tests: does this stick (or image file) boot? Real firmware —
//! SeaBIOS for BIOS, OVMF for UEFI, OVMF's Secure Boot build with
//! Microsoft's keys — boots it under QEMU as a USB stick, read-only, and
//! the verdict is read from what the firmware itself says
//! ([`evidence`]). See `docs/boot-test.md` for what each verdict means
//! and what it does not promise.
//!
//! The library never prints: [`run`] returns a [`Report`] with one
//! [`FirmwareResult`] per firmware asked for, and reports each boot's start
//! to an [`Observer`].

pub mod evidence;
pub mod firmware;
pub mod qemu;

use crate::cancel::Cancel;
use crate::image::{eltorito, partitions, ByteSource};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use firmware::OvmfFiles;
pub use qemu::Accel;

/// A firmware to boot under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Firmware {
    /// SeaBIOS: the legacy BIOS / MBR boot path.
    Bios,
    /// OVMF: the UEFI path (`\EFI\BOOT\BOOTX64.EFI` from a FAT volume).
    Uefi,
    /// OVMF with Secure Boot enforced and Microsoft's keys enrolled.
    UefiSecureBoot,
}

impl Firmware {
    pub const ALL: [Firmware; 3] = [Firmware::Bios, Firmware::Uefi, Firmware::UefiSecureBoot];

    /// The kebab-case name (`uefi-secure-boot`).
    pub fn name(self) -> &'static str {
        match self {
            Firmware::Bios => "bios",
            Firmware::Uefi => "uefi",
            Firmware::UefiSecureBoot => "uefi-secure-boot",
        }
    }

    /// How people call it ("UEFI with Secure Boot").
    pub fn title(self) -> &'static str {
        match self {
            Firmware::Bios => "BIOS",
            Firmware::Uefi => "UEFI",
            Firmware::UefiSecureBoot => "UEFI with Secure Boot",
        }
    }
}

/// The verdict for one firmware.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// The firmware started a loader from the stick and the loader kept
    /// running (or powered the machine off itself) without the firmware
    /// taking over again.
    Boots,
    /// The firmware refused the stick, found nothing on it, or the loader
    /// gave control back, reset or crashed the machine.
    DoesNotBoot,
    /// The evidence decides neither (nothing within the timeout, QEMU
    /// ended on its own).
    Unknown,
    /// Not booted: the image cannot boot on real machines with this
    /// firmware, whatever the emulator would do.
    Skipped,
}

/// Why a verdict was reached: a stable code (JSON) and a sentence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Code {
    /// `boots`: the loader ran for the settle time.
    KeptRunning,
    /// `boots`: the loader powered the machine off.
    PoweredOff,
    /// SeaBIOS: the stick has no MBR boot signature.
    NotABootableDisk,
    /// SeaBIOS: the stick's first sector could not be read.
    DiskUnreadable,
    /// The firmware found nothing it could boot (SeaBIOS "No bootable
    /// device", OVMF "No bootable option or device was found").
    NoBootableDevice,
    /// OVMF: no `\EFI\BOOT\BOOTX64.EFI` it could load ("Not Found").
    NoUefiLoader,
    /// OVMF under Secure Boot: "Access Denied" / "Security Violation".
    SecureBootRefused,
    /// Shim started but refused the next loader ("Verification failed:
    /// … Security Violation"): under Secure Boot that loader is not signed
    /// by a key shim trusts.
    ShimRefused,
    /// OVMF could not load the stick's loader for another reason.
    LoadFailed,
    /// The loader ran but gave control back to the firmware.
    LoaderReturned,
    /// OVMF dropped to its UEFI shell.
    UefiShell,
    /// The CPU triple-faulted (QEMU's log).
    TripleFault,
    /// The guest reset the machine.
    Reset,
    /// `unknown`: no loader started and no failure within the timeout.
    NoEvidence,
    /// `unknown`: the guest powered off before any loader started.
    PoweredOffBeforeLoader,
    /// `unknown`: QEMU ended without the guest asking.
    QemuEnded,
    /// `skipped`: no FAT volume with `\EFI\BOOT\BOOTX64.EFI`, only an El
    /// Torito EFI image.
    NoFatLoader,
}

impl Code {
    /// The sentence for people.
    pub fn message(self) -> &'static str {
        match self {
            Code::KeptRunning => "the firmware started the stick's boot loader and it kept running without the firmware taking over again",
            Code::PoweredOff => "the firmware started the stick's boot loader, which then powered the machine off itself",
            Code::NotABootableDisk => "the firmware says the stick is not a bootable disk (no boot code in its first sector)",
            Code::DiskUnreadable => "the firmware could not read the stick's first sector",
            Code::NoBootableDevice => "the firmware found no bootable device",
            Code::NoUefiLoader => "the firmware found no UEFI boot loader (\\EFI\\BOOT\\BOOTX64.EFI) it could load on the stick",
            Code::SecureBootRefused => "Secure Boot refused the stick's boot loader: it is not signed by a key the firmware trusts (Microsoft's)",
            Code::ShimRefused => "the stick's shim started, but refused to run the next boot loader (GRUB): under Secure Boot it is not signed by a key shim or the firmware trusts",
            Code::LoadFailed => "the firmware could not load the stick's boot loader",
            Code::LoaderReturned => "the stick's boot loader started, then gave control back to the firmware",
            Code::UefiShell => "the firmware dropped to the UEFI shell instead of booting the stick",
            Code::TripleFault => "the machine crashed (triple fault) and reset",
            Code::Reset => "the machine reset instead of booting",
            Code::NoEvidence => "the firmware neither started a loader from the stick nor said it failed within the timeout",
            Code::PoweredOffBeforeLoader => "the machine powered off before any loader from the stick started",
            Code::QemuEnded => "QEMU ended without the guest asking",
            Code::NoFatLoader => "the image has an El Torito EFI boot image but no FAT volume (partition or whole disk) holding \\EFI\\BOOT\\BOOTX64.EFI: UEFI PCs boot a USB stick only from such a volume (write it as a built layout, not as a byte-for-byte copy)",
        }
    }
}

/// What a boot test found under one firmware.
#[derive(Clone, Debug, Serialize)]
pub struct FirmwareResult {
    pub firmware: Firmware,
    pub verdict: Verdict,
    pub reason: Code,
    /// [`Code::message`], with the detail that decided (QEMU's status).
    pub message: String,
    /// The firmware's lines the verdict rests on, in order.
    pub evidence: Vec<String>,
    /// Seconds from QEMU's start until the firmware started the loader.
    pub loader_started_after: Option<f64>,
    /// Seconds the boot took, QEMU's start to the verdict.
    pub seconds: f64,
    /// The PNG saved (with a screenshot directory and QEMU still running).
    pub screenshot: Option<PathBuf>,
    /// Why no screenshot was saved although one was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub screenshot_error: Option<String>,
    /// The end of the serial console (escape sequences removed): what the
    /// loader printed there.
    pub console: String,
}

/// The whole boot test.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub accel: Accel,
    pub results: Vec<FirmwareResult>,
}

impl Report {
    /// True when every firmware that was booted boots and one did.
    pub fn all_boot(&self) -> bool {
        let booted: Vec<_> = self
            .results
            .iter()
            .filter(|r| r.verdict != Verdict::Skipped)
            .collect();
        !booted.is_empty() && booted.iter().all(|r| r.verdict == Verdict::Boots)
    }
}

/// What [`run`] needs.
#[derive(Clone, Debug)]
pub struct Options {
    pub firmware: Vec<Firmware>,
    /// The bound for the firmware to start a loader or give up.
    pub timeout: Duration,
    /// How long a started loader must run without the firmware taking over.
    pub settle: Duration,
    /// Save a PNG per firmware here (`<firmware>.png`).
    pub screenshots: Option<PathBuf>,
    /// `None`: probe for KVM ([`qemu::probe_kvm`]).
    pub accel: Option<Accel>,
    /// Where the KVM probe caches its verdict.
    pub probe_cache: Option<PathBuf>,
    /// OVMF files to use instead of the installed ones, per UEFI firmware.
    pub ovmf: Option<OvmfFiles>,
    pub ovmf_secure_boot: Option<OvmfFiles>,
    pub memory_mib: u32,
    pub cancel: Cancel,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            firmware: vec![Firmware::Bios, Firmware::Uefi],
            timeout: Duration::from_secs(120),
            settle: Duration::from_secs(5),
            screenshots: None,
            accel: None,
            probe_cache: None,
            ovmf: None,
            ovmf_secure_boot: None,
            memory_mib: 512,
            cancel: Cancel::default(),
        }
    }
}

/// Errors that stop a boot test (a verdict is never an error).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{program} is not installed (Debian package {package})")]
    QemuMissing {
        program: &'static str,
        package: &'static str,
    },
    #[error("no OVMF firmware for {} (Debian package {package}; looked for {})", firmware.name(), looked.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    FirmwareMissing {
        firmware: Firmware,
        package: &'static str,
        looked: Vec<PathBuf>,
    },
    #[error("cannot start {}", program.display())]
    Spawn {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot {what}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("QMP: {detail}")]
    Qmp { detail: String },
    #[error("QEMU could not boot the medium under {}: {stderr}", firmware.name())]
    QemuFailed { firmware: Firmware, stderr: String },
    #[error("cannot read the image")]
    Image(#[from] crate::image::Error),
    #[error("the boot test was stopped")]
    Cancelled,
}

/// The first FAT volume holding `\EFI\BOOT\BOOTX64.EFI` (any case): in a
/// partition of any type of the MBR or GPT (UEFI firmware reads FAT in any
/// partition of a removable disk, not only an ESP), or the whole medium
/// (a "superfloppy"). Returns where it is (`None`: nowhere).
pub fn uefi_loader(src: &dyn ByteSource) -> Result<Option<String>, crate::image::Error> {
    let area = partitions::read_system_area(src)?;
    let mut volumes: Vec<(String, u64, u64)> = area
        .partitions(src.len())
        .iter()
        .map(|p| {
            (
                format!("partition {} ({:?})", p.index, p.table).to_lowercase(),
                p.offset,
                p.len,
            )
        })
        .collect();
    volumes.push(("the whole medium".into(), 0, src.len()));
    for (name, offset, len) in volumes {
        match eltorito::efi_loaders(src, offset, len) {
            Ok(loaders) => {
                if let Some(l) = loaders
                    .iter()
                    .find(|l| l.path.eq_ignore_ascii_case("/EFI/BOOT/BOOTX64.EFI"))
                {
                    return Ok(Some(format!("{} in {name}", l.path)));
                }
            }
            Err(e @ crate::image::Error::Io { .. }) => return Err(e),
            Err(_) => {}
        }
    }
    Ok(None)
}

/// Whether the image's El Torito catalog has an EFI boot image: what OVMF
/// may boot from a disk that UEFI PCs do not boot from a USB stick.
pub fn efi_el_torito(src: &dyn ByteSource) -> Result<bool, crate::image::Error> {
    match eltorito::read_catalog(src) {
        Ok(Some(c)) => Ok(c
            .entries
            .iter()
            .any(|e| e.platform == eltorito::Platform::Efi)),
        Ok(None) => Ok(false),
        Err(e @ crate::image::Error::Io { .. }) => Err(e),
        Err(_) => Ok(false),
    }
}

/// Something to tell while the boot test runs.
pub trait Observer {
    /// A boot under `firmware` starts (`accel` chosen).
    fn booting(&self, firmware: Firmware, accel: Accel);
}

/// An observer that says nothing.
pub struct Quiet;

impl Observer for Quiet {
    fn booting(&self, _: Firmware, _: Accel) {}
}

/// QEMU and the OVMF files for each firmware of `options` (in order;
/// `None` for BIOS), or the error naming what to install. `write` asks
/// before it writes, so a boot test asked for cannot fail only after the
/// write.
pub fn available(options: &Options) -> Result<(PathBuf, Vec<Option<OvmfFiles>>), Error> {
    let qemu = firmware::qemu()?;
    let mut ovmf = Vec::new();
    for fw in &options.firmware {
        let given = match fw {
            Firmware::Bios => None,
            Firmware::Uefi => options.ovmf.as_ref(),
            Firmware::UefiSecureBoot => options.ovmf_secure_boot.as_ref(),
        };
        ovmf.push(firmware::ovmf(*fw, given)?);
    }
    Ok((qemu, ovmf))
}

/// Boots `medium` (the file or device QEMU opens, read-only) under each
/// firmware of `options`, one after another. `src` is the same medium
/// opened for reading, for the checks made before booting.
pub fn run(
    medium: &Path,
    src: &dyn ByteSource,
    options: &Options,
    observer: &dyn Observer,
) -> Result<Report, Error> {
    // Everything needed is found before the first boot: a missing package
    // is said at once, not after minutes of booting.
    let (qemu, ovmf) = available(options)?;
    let wants_uefi = options.firmware.iter().any(|f| *f != Firmware::Bios);
    // UEFI is skipped only where the emulator's answer would mislead: no
    // FAT volume with a loader, but an El Torito EFI image (an EFI-only
    // ISO written raw). Anything else is booted, and the firmware says why
    // it fails (a blank stick: "Not Found").
    let skip_uefi = wants_uefi && uefi_loader(src)?.is_none() && efi_el_torito(src)?;
    let accel = match options.accel {
        Some(a) => a,
        None => {
            let plain = firmware::ovmf(Firmware::Uefi, options.ovmf.as_ref()).ok();
            qemu::probe_kvm(
                &qemu,
                plain.flatten().as_ref(),
                options.probe_cache.as_deref(),
            )
        }
    };
    if let Some(dir) = &options.screenshots {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            what: "create the screenshot directory",
            source,
        })?;
    }
    let mut results = Vec::new();
    for (fw, files) in options.firmware.iter().zip(&ovmf) {
        if *fw != Firmware::Bios && skip_uefi {
            results.push(FirmwareResult {
                firmware: *fw,
                verdict: Verdict::Skipped,
                reason: Code::NoFatLoader,
                message: Code::NoFatLoader.message().into(),
                evidence: Vec::new(),
                loader_started_after: None,
                seconds: 0.0,
                screenshot: None,
                screenshot_error: None,
                console: String::new(),
            });
            continue;
        }
        if options.cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        observer.booting(*fw, accel);
        let spec = qemu::Spec {
            qemu: &qemu,
            firmware: *fw,
            ovmf: files.as_ref(),
            medium: Some(medium),
            accel,
            memory_mib: options.memory_mib,
        };
        results.push(boot(&spec, options)?);
    }
    Ok(Report { accel, results })
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 10.0).round() / 10.0
}

/// The last `max` bytes of `s` (on a character boundary).
fn tail(s: &str, max: usize) -> &str {
    let mut i = s.len().saturating_sub(max);
    while !s.is_char_boundary(i) {
        i += 1;
    }
    &s[i..]
}

/// One boot, watched until the evidence decides.
fn boot(spec: &qemu::Spec, options: &Options) -> Result<FirmwareResult, Error> {
    let mut m = qemu::Machine::start(spec)?;
    let mut loader_at = None;
    let (verdict, code, ended, reading) = loop {
        // Exit first, then the logs: output written before an exit is
        // never missed.
        let status = m.poll()?;
        let ended = status.map(|s| m.ended(s));
        let (serial, debugcon, qemu_log) = (
            m.read("serial.log"),
            m.read("firmware.log"),
            m.read("qemu.log"),
        );
        let logs = evidence::Logs {
            serial: &serial,
            debugcon: &debugcon,
            qemu_log: &qemu_log,
        };
        let reading = evidence::read(spec.firmware, &logs);
        let now = m.started.elapsed();
        if reading.loader_started.is_some() && loader_at.is_none() {
            loader_at = Some(now);
        }
        if let Some(evidence::Ended::Other(detail)) = &ended {
            // QEMU refusing its command line (a device it cannot open) is
            // not a verdict about the stick.
            if reading.firmware_ran.is_none() && reading.failure.is_none() {
                return Err(Error::QemuFailed {
                    firmware: spec.firmware,
                    stderr: detail.clone(),
                });
            }
        }
        let progress = evidence::Progress {
            reading: &reading,
            ended: ended.as_ref(),
            loader_running: loader_at.map(|t| now - t),
            settle: options.settle,
            timed_out: now >= options.timeout,
        };
        if let Some((v, c)) = evidence::judge(progress) {
            break (v, c, ended, reading);
        }
        if options.cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let seconds = secs(m.started.elapsed());
    let (mut screenshot, mut screenshot_error) = (None, None);
    if let Some(dir) = &options.screenshots {
        if ended.is_some() {
            screenshot_error = Some("the machine had already stopped".to_owned());
        } else {
            // The screen is drawn a moment after the console line.
            std::thread::sleep(Duration::from_millis(300));
            let to = dir.join(format!("{}.png", spec.firmware.name()));
            match m.screendump(&to) {
                Ok(()) => screenshot = Some(to),
                Err(e) => screenshot_error = Some(e.to_string()),
            }
        }
    }
    let mut message = code.message().to_owned();
    if let Some(evidence::Ended::Other(detail)) = &ended {
        message = format!("{message}: {detail}");
    }
    let console = evidence::strip_ansi(&m.read("serial.log"));
    Ok(FirmwareResult {
        firmware: spec.firmware,
        verdict,
        reason: code,
        message,
        evidence: reading.evidence(),
        loader_started_after: loader_at.map(secs),
        seconds,
        screenshot,
        screenshot_error,
        console: tail(console.trim(), 2000).to_owned(),
    })
}
