//! Boot proofs: start `qemu-system-x86_64` on a disk image or block device
//! under SeaBIOS (BIOS) or OVMF (UEFI) and wait for a marker on the serial
//! console.
//!
//! The firmware is the oracle: a stick "boots" only when real firmware finds
//! the boot loader on it and the loader runs far enough to print the marker.
//! The marker is the only success signal — never a sleep, never "qemu did not
//! crash". A boot ends as soon as one of these happens:
//!
//! - the marker appears on the serial console ([`End::Marker`]);
//! - the firmware says it gave up (SeaBIOS "No bootable device", OVMF falling
//!   back to its internal shell) ([`End::FirmwareGaveUp`]), which makes
//!   negative controls fast;
//! - QEMU exits by itself (the guest powered off, or a reboot under
//!   `-no-reboot`) ([`End::Exited`]);
//! - the timeout passes ([`End::TimedOut`]).
//!
//! The QEMU process is always killed (by the PID this harness started) when
//! the boot ends or the [`Outcome`] is computed, also when the test panics.
//!
//! Media are attached as a USB stick (`usb-storage` behind `qemu-xhci`), the
//! realistic case: both SeaBIOS and OVMF boot from USB mass storage here, so
//! no IDE fallback is needed for them; [`Attach::Ide`] exists for firmware or
//! media where USB boot is not wanted. Media are opened with `snapshot=on` so
//! a guest can never modify the image or device under test.
//!
//! Acceleration: `/dev/kvm` exists on the test machines but is a broken
//! nested KVM (guests hang or stop with an emulation error), so KVM is used
//! only when a real probe — OVMF reaching its boot manager under KVM within
//! 10 s, the library's probe `boot-test` uses — succeeds; TCG otherwise.
//! `BOOTSTICK_QEMU_ACCEL=tcg|kvm` skips the probe.

#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The QEMU binary every boot uses.
pub const QEMU: &str = "qemu-system-x86_64";

/// Default bound for one boot: TCG boots of the fixture take 0.5–5 s on an
/// idle machine; the bound is generous for CPU contention, not a speed claim.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

/// Which firmware boots the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Firmware {
    /// SeaBIOS, QEMU's default PC firmware: the legacy BIOS / MBR boot path.
    SeaBios,
    /// OVMF (EDK II): the UEFI boot path (`\EFI\BOOT\BOOTX64.EFI`).
    Ovmf,
}

impl Firmware {
    pub const ALL: [Firmware; 2] = [Firmware::SeaBios, Firmware::Ovmf];

    /// The `${grub_platform}` GRUB reports when booted by this firmware.
    pub fn grub_platform(self) -> &'static str {
        match self {
            Firmware::SeaBios => "pc",
            Firmware::Ovmf => "efi",
        }
    }
}

/// How the boot medium is attached to the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attach {
    /// A removable USB mass-storage device on an xHCI controller: what a
    /// USB stick is.
    UsbStorage,
    /// A plain IDE hard disk, for firmware that cannot boot from USB.
    Ide,
}

/// The OVMF firmware pair: read-only code and a variable store template that
/// is copied per boot (the guest writes to its variable store).
#[derive(Clone, Debug)]
pub struct OvmfFiles {
    pub code: PathBuf,
    pub vars: PathBuf,
}

/// Finds OVMF: `BOOTSTICK_OVMF_CODE` + `BOOTSTICK_OVMF_VARS` if set, else
/// the installed files the `boot-test` command uses
/// (`bootstick::boot_test::firmware`: the Debian `ovmf` package's 4 MiB
/// build first). Secure-boot builds are not used here: they need SMM and
/// the q35 machine.
pub fn find_ovmf() -> Option<OvmfFiles> {
    let given = match (
        std::env::var_os("BOOTSTICK_OVMF_CODE"),
        std::env::var_os("BOOTSTICK_OVMF_VARS"),
    ) {
        (Some(code), Some(vars)) => Some(bootstick::boot_test::OvmfFiles {
            code: code.into(),
            vars: vars.into(),
        }),
        _ => None,
    };
    let found =
        bootstick::boot_test::firmware::ovmf(bootstick::boot_test::Firmware::Uefi, given.as_ref())
            .ok()
            .flatten()?;
    Some(OvmfFiles {
        code: found.code,
        vars: found.vars,
    })
}

/// True when QEMU (and, for OVMF, its firmware files) are installed;
/// otherwise skips the test visibly, or fails it under
/// `BOOTSTICK_REQUIRE_ALL=1`.
pub fn require(test: &str, firmware: &[Firmware]) -> bool {
    if !super::require_tools(test, &[QEMU]) {
        return false;
    }
    if firmware.contains(&Firmware::Ovmf) && find_ovmf().is_none() {
        return super::skip(
            test,
            "needs OVMF firmware (Debian package `ovmf`, or set BOOTSTICK_OVMF_CODE and BOOTSTICK_OVMF_VARS)",
        );
    }
    true
}

/// Accelerator chosen for this process: `kvm` only when the probe boots.
pub fn accel() -> &'static str {
    static ACCEL: OnceLock<&'static str> = OnceLock::new();
    ACCEL.get_or_init(|| match std::env::var("BOOTSTICK_QEMU_ACCEL").as_deref() {
        Ok("tcg") => "tcg",
        Ok("kvm") => "kvm",
        _ if kvm_probe() => "kvm",
        _ => "tcg",
    })
}

/// Whether KVM really works, by the probe the `boot-test` command uses
/// (`bootstick::boot_test::qemu::probe_kvm`: OVMF must reach its boot
/// manager under `-accel kvm` within 10 s; a 512-byte real-mode boot
/// sector sometimes runs under the broken nested KVM of the test machines
/// while OVMF then hangs or dies, so only firmware reaching long mode is
/// evidence). The verdict is cached per host kernel under
/// `target/fixtures/`.
fn kvm_probe() -> bool {
    let Some(ovmf) = find_ovmf() else {
        return false;
    };
    if !super::have_tool(QEMU) {
        return false;
    }
    let ovmf = bootstick::boot_test::OvmfFiles {
        code: ovmf.code,
        vars: ovmf.vars,
    };
    bootstick::boot_test::qemu::probe_kvm(Path::new(QEMU), Some(&ovmf), Some(&fixture_cache()))
        == bootstick::boot_test::Accel::Kvm
}

/// One boot to run: the medium, the firmware, the marker that proves success.
#[derive(Clone, Debug)]
pub struct Boot {
    pub disk: PathBuf,
    pub firmware: Firmware,
    pub marker: String,
    pub attach: Attach,
    pub timeout: Duration,
}

impl Boot {
    /// A boot of `disk` as a USB stick, bounded by [`BOOT_TIMEOUT`].
    pub fn new(disk: &Path, firmware: Firmware, marker: &str) -> Boot {
        Boot {
            disk: disk.to_owned(),
            firmware,
            marker: marker.to_owned(),
            attach: Attach::UsbStorage,
            timeout: BOOT_TIMEOUT,
        }
    }

    pub fn attach(mut self, attach: Attach) -> Boot {
        self.attach = attach;
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Boot {
        self.timeout = timeout;
        self
    }

    /// Runs the boot.
    pub fn run(&self) -> Outcome {
        boot_with(self, accel())
    }

    /// Runs the boot and panics, with the serial log, unless the marker
    /// appeared.
    pub fn assert_boots(&self) -> Outcome {
        let out = self.run();
        assert!(
            out.end == End::Marker,
            "{:?} did not boot {} under {:?}: {:?}, no marker {:?}\n{}",
            self.attach,
            self.disk.display(),
            self.firmware,
            out.end,
            self.marker,
            out.log
        );
        out
    }
}

/// Why a boot ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    /// The marker appeared on the serial console.
    Marker,
    /// The firmware reported that it found nothing to boot (the pattern seen).
    FirmwareGaveUp(&'static str),
    /// QEMU exited before the marker appeared.
    Exited(Option<i32>),
    /// Neither marker nor exit within the timeout; QEMU was killed.
    TimedOut,
}

/// The result of a boot, with everything the guest printed.
#[derive(Debug)]
pub struct Outcome {
    pub end: End,
    pub accel: &'static str,
    pub elapsed: Duration,
    /// Serial console, then firmware debug output and QEMU's stderr: what a
    /// failure message shows.
    pub log: String,
}

/// Messages that mean the firmware has given up on every boot option.
/// SeaBIOS writes its to the debug console (port 0x402), OVMF to serial.
const GAVE_UP: &[&str] = &[
    "No bootable device",
    "EFI Internal Shell",
    "UEFI Interactive Shell",
];

/// Kills the QEMU we started when dropped, so no test leaves a guest behind.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

fn read_lossy(path: &Path) -> String {
    let mut buf = Vec::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.read_to_end(&mut buf);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// Boots running at once in this process, and a wake-up for waiters.
static SLOTS: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());

/// At most two guests at once per test process: each TCG guest keeps one
/// host core busy, and the machines have two. Tests that run `bootstick
/// boot-test` hold one around each run.
pub fn slot() -> SlotGuard {
    let (m, cv) = &SLOTS;
    let mut busy = m.lock().unwrap_or_else(|e| e.into_inner());
    while *busy >= 2 {
        busy = cv.wait(busy).unwrap_or_else(|e| e.into_inner());
    }
    *busy += 1;
    SlotGuard
}

pub struct SlotGuard;

impl Drop for SlotGuard {
    fn drop(&mut self) {
        let (m, cv) = &SLOTS;
        *m.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        cv.notify_one();
    }
}

fn boot_with(boot: &Boot, accel: &'static str) -> Outcome {
    let _slot = slot();
    let dir = tempfile::tempdir().expect("temporary directory for a boot");
    let serial = dir.path().join("serial.log");
    let debugcon = dir.path().join("firmware.log");
    let stderr = dir.path().join("qemu.stderr");

    let mut cmd = Command::new(QEMU);
    cmd.args(["-nodefaults", "-display", "none", "-no-reboot", "-m", "256"])
        .args(["-accel", accel])
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .arg("-chardev")
        .arg(format!("file,id=fwlog,path={}", debugcon.display()))
        .args(["-device", "isa-debugcon,iobase=0x402,chardev=fwlog"])
        // SeaBIOS: when every boot option failed, reboot after 1 s instead of
        // waiting forever; `-no-reboot` turns that into a QEMU exit.
        .args(["-boot", "reboot-timeout=1000"]);
    if boot.firmware == Firmware::Ovmf {
        let ovmf = find_ovmf().expect("OVMF firmware (call qemu::require first)");
        let vars = dir.path().join("OVMF_VARS.fd");
        std::fs::copy(&ovmf.vars, &vars).expect("copy the OVMF variable store");
        cmd.arg("-drive")
            .arg(format!(
                "if=pflash,format=raw,unit=0,readonly=on,file={}",
                ovmf.code.display()
            ))
            .arg("-drive")
            .arg(format!(
                "if=pflash,format=raw,unit=1,file={}",
                vars.display()
            ));
    }
    // QEMU's -drive syntax uses ',' as separator; a ',' in a path is doubled.
    let disk = boot.disk.display().to_string().replace(',', ",,");
    match boot.attach {
        Attach::UsbStorage => {
            cmd.arg("-drive")
                .arg(format!(
                    "file={disk},format=raw,if=none,id=stick,snapshot=on"
                ))
                .args(["-device", "qemu-xhci,id=xhci"])
                .args(["-device", "usb-storage,bus=xhci.0,drive=stick,removable=on"]);
        }
        Attach::Ide => {
            cmd.arg("-drive")
                .arg(format!("file={disk},format=raw,if=ide,snapshot=on"));
        }
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).expect("qemu stderr file"));

    let start = Instant::now();
    let mut guard = Guard(
        cmd.spawn()
            .unwrap_or_else(|e| panic!("cannot start {QEMU}: {e}")),
    );
    let end = loop {
        // Check exit first, then read the log: output written before an exit
        // is then never missed.
        let exited = guard.0.try_wait().expect("wait for qemu");
        let console = read_lossy(&serial);
        if console.contains(&boot.marker) {
            break End::Marker;
        }
        let fw = read_lossy(&debugcon);
        if let Some(p) = GAVE_UP
            .iter()
            .find(|p| console.contains(**p) || fw.contains(**p))
        {
            break End::FirmwareGaveUp(p);
        }
        if let Some(status) = exited {
            break End::Exited(exit_code(status));
        }
        if start.elapsed() >= boot.timeout {
            break End::TimedOut;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let elapsed = start.elapsed();
    drop(guard);
    let log = format!(
        "--- serial console ({accel}, {:.1} s) ---\n{}\n--- firmware debug console (tail) ---\n{}\n--- qemu stderr ---\n{}",
        elapsed.as_secs_f64(),
        strip_ansi(&read_lossy(&serial)),
        tail(&read_lossy(&debugcon), 4000),
        read_lossy(&stderr)
    );
    Outcome {
        end,
        accel,
        elapsed,
        log,
    }
}

fn exit_code(status: ExitStatus) -> Option<i32> {
    status.code()
}

fn tail(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut i = s.len() - max;
    while !s.is_char_boundary(i) {
        i += 1;
    }
    &s[i..]
}

/// Removes terminal escape sequences (GRUB and OVMF draw with them) so the
/// log in a failure message is readable.
pub fn strip_ansi(s: &str) -> String {
    bootstick::boot_test::evidence::strip_ansi(s)
}

// ---------------------------------------------------------------------------
// The grub-hybrid fixture

/// The text GRUB prints when the fixture boots, before its platform suffix:
/// the fixture prints `BOOTSTICK-FIXTURE-BOOTED-pc` under BIOS and
/// `BOOTSTICK-FIXTURE-BOOTED-efi` under UEFI. The grub.cfg assembles it from
/// variables, so the full marker never appears in the image's bytes and
/// cannot be echoed from them.
pub const FIXTURE_MARKER: &str = "BOOTSTICK-FIXTURE-BOOTED";

/// The marker the fixture prints under `firmware`.
pub fn fixture_marker(firmware: Firmware) -> String {
    format!("{FIXTURE_MARKER}-{}", firmware.grub_platform())
}

/// Tools needed to build the fixture.
pub const FIXTURE_TOOLS: &[&str] = &["grub-mkrescue", "xorriso", "mformat"];

fn recipe_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/grub-hybrid")
}

/// `target/fixtures`: built fixtures live here, never in git.
pub fn fixture_cache() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("CARGO_TARGET_TMPDIR is target/tmp")
        .join("fixtures")
}

/// The hybrid (BIOS + UEFI) GRUB rescue ISO built from
/// `tests/fixtures/grub-hybrid/`, built on first use with `grub-mkrescue`
/// and cached under `target/fixtures/` keyed by the recipe's content and the
/// GRUB version. Call after `require_tools(.., FIXTURE_TOOLS)`.
pub fn grub_hybrid_iso() -> PathBuf {
    let recipe = recipe_dir();
    let cfg = std::fs::read(recipe.join("grub.cfg")).expect("fixture grub.cfg");
    let args = std::fs::read_to_string(recipe.join("mkrescue.args")).expect("fixture args");
    let args: Vec<&str> = args
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for platform in ["i386-pc", "x86_64-efi"] {
        assert!(
            Path::new("/usr/lib/grub").join(platform).is_dir(),
            "grub-mkrescue needs /usr/lib/grub/{platform} for a hybrid fixture \
             (Debian: grub-pc-bin and grub-efi-amd64-bin)"
        );
    }
    let version = super::run(Command::new("grub-mkrescue").arg("--version"));
    let recipe = format!(
        "grub.cfg {:?}\nargs {args:?}\n{version}",
        String::from_utf8_lossy(&cfg)
    );
    // Built in a private path, then renamed (`fixtures::cached`): tests
    // running in parallel never see a half-written ISO.
    super::fixtures::cached("grub-hybrid", "iso", &recipe, |out| {
        let work = tempfile::tempdir_in(fixture_cache()).expect("fixture work directory");
        let root = work.path().join("root");
        std::fs::create_dir_all(root.join("boot/grub")).unwrap();
        std::fs::write(root.join("boot/grub/grub.cfg"), &cfg).unwrap();
        super::run(
            Command::new("grub-mkrescue")
                .arg("-o")
                .arg(out)
                .args(&args)
                .arg(&root),
        );
    })
}

/// Tools needed for [`grub_efi_standalone`].
pub const STANDALONE_TOOLS: &[&str] = &["grub-mkstandalone"];

/// A standalone GRUB EFI application (`BOOTX64.EFI`) with the grub-hybrid
/// fixture's `grub.cfg` embedded (it prints the `-efi` marker and powers
/// off). Used to prove that FAT volumes bootstick lays out itself boot under
/// UEFI. Built by `grub-mkstandalone`, cached like [`grub_hybrid_iso`].
pub fn grub_efi_standalone() -> PathBuf {
    let cfg_path = recipe_dir().join("grub.cfg");
    let cfg = std::fs::read(&cfg_path).expect("fixture grub.cfg");
    assert!(
        Path::new("/usr/lib/grub/x86_64-efi").is_dir(),
        "grub-mkstandalone needs /usr/lib/grub/x86_64-efi (Debian: grub-efi-amd64-bin)"
    );
    let version = super::run(Command::new("grub-mkstandalone").arg("--version"));
    let recipe = format!("grub.cfg {:?}\n{version}", String::from_utf8_lossy(&cfg));
    super::fixtures::cached("grub-standalone", "efi", &recipe, |out| {
        super::run(
            Command::new("grub-mkstandalone")
                .args(["-O", "x86_64-efi", "--locales=", "--fonts=", "--themes="])
                .arg("-o")
                .arg(out)
                .arg(format!("boot/grub/grub.cfg={}", cfg_path.display())),
        );
    })
}
