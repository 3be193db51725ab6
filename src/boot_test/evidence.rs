//! Reading the firmware's own words: what SeaBIOS writes to its debug
//! console (I/O port 0x402) and what OVMF's boot manager (BdsDxe) writes to
//! the serial console, turned into a [`Reading`], and the rule that makes
//! a verdict of it ([`judge`]).
//!
//! Pure functions over the text captured so far, so every reason has a unit
//! test on the lines the firmware really prints (captured from Debian's
//! `seabios` 1.16 and `ovmf` 2022.11 under QEMU 7.2), and the boot loop in
//! [`super::run`] only polls.

use super::{Code, Firmware, Verdict};
use serde::Serialize;
use std::time::Duration;

/// What one boot produced so far.
#[derive(Clone, Copy, Debug, Default)]
pub struct Logs<'a> {
    /// The serial console (COM1): OVMF's boot manager and whatever the
    /// loader prints there.
    pub serial: &'a str,
    /// The firmware debug console (port 0x402): SeaBIOS's boot messages.
    pub debugcon: &'a str,
    /// QEMU's own log (`-d cpu_reset`): "Triple fault".
    pub qemu_log: &'a str,
}

/// What the firmware's output says so far: whether it started a loader from
/// the stick, and the first thing that ended the boot badly.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reading {
    /// The firmware's banner or first boot-manager line: it ran.
    pub firmware_ran: Option<String>,
    /// The line saying the firmware started the stick's loader.
    pub loader_started: Option<String>,
    /// The first line that decides the boot failed, and why.
    pub failure: Option<(Code, String)>,
}

impl Reading {
    /// The lines a verdict rests on, in the order the firmware wrote them.
    pub fn evidence(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .firmware_ran
            .iter()
            .chain(&self.loader_started)
            .cloned()
            .collect();
        if let Some((_, line)) = &self.failure {
            v.push(line.clone());
        }
        v.dedup();
        v
    }
}

/// How QEMU ended, when it did (from the QMP `SHUTDOWN` event).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "how", content = "detail")]
pub enum Ended {
    /// The guest powered the machine off (ACPI, EFI `ResetSystem(Shutdown)`).
    PoweredOff,
    /// The guest reset the machine (`-no-reboot` turns a reset into an exit).
    Reset,
    /// QEMU ended without the guest asking: its status and stderr.
    Other(String),
}

/// Reads the firmware's output for `firmware`.
///
/// Only whole lines count: the logs are read while the firmware writes
/// them, and a line caught half-written ("Boot failed: not" of "Boot
/// failed: not a bootable disk") would be misread. The one exception is
/// shim's error box, drawn with cursor moves and no newline after it: its
/// rule needs the whole status text, so a partial one never matches.
pub fn read(firmware: Firmware, logs: &Logs) -> Reading {
    let complete = |s: &str| -> usize { s.rfind('\n').map_or(0, |i| i + 1) };
    let mut r = match firmware {
        Firmware::Bios => read_seabios(&logs.debugcon[..complete(logs.debugcon)]),
        Firmware::Uefi | Firmware::UefiSecureBoot => {
            let (whole, partial) = logs.serial.split_at(complete(logs.serial));
            let mut r = read_ovmf(whole);
            if r.loader_started.is_some() && r.failure.is_none() {
                if let Some(refusal) = shim_refusal(&strip_ansi(partial)) {
                    r.failure = Some((Code::ShimRefused, refusal));
                }
            }
            r
        }
    };
    // QEMU logs a triple fault just before the reset it causes; it decides
    // over whatever the firmware said before (it said nothing after).
    if let Some(line) = logs.qemu_log.lines().find(|l| l.contains("Triple fault")) {
        r.failure = Some((Code::TripleFault, line.trim().to_owned()));
    }
    r
}

/// SeaBIOS (debug console). A boot attempt is "Booting from Hard Disk..."
/// (the USB stick is the only disk), then either "Boot failed: <why>" or
/// "Booting from 0000:7c00" (it jumped to the MBR's code: the loader
/// started). After that SeaBIOS speaks again only when the loader gave
/// control back (INT 18h/19h: "enter handle_18", another "Booting from",
/// "No bootable device").
fn read_seabios(debugcon: &str) -> Reading {
    let mut r = Reading::default();
    let mut trying_disk = false;
    for line in debugcon.lines().map(str::trim) {
        if r.firmware_ran.is_none() && line.starts_with("SeaBIOS (version") {
            r.firmware_ran = Some(line.to_owned());
        }
        if r.loader_started.is_some() {
            if line.starts_with("enter handle_18")
                || line.starts_with("enter handle_19")
                || line.starts_with("Booting from")
                || line.starts_with("No bootable device")
            {
                r.failure = Some((Code::LoaderReturned, line.to_owned()));
                return r;
            }
            continue;
        }
        if line.starts_with("Booting from Hard Disk") {
            trying_disk = true;
        } else if line.starts_with("Booting from ") && line.ends_with(":7c00") {
            if trying_disk {
                r.loader_started = Some(line.to_owned());
            }
        } else if let Some(why) = line.strip_prefix("Boot failed: ") {
            if trying_disk {
                let code = if why.contains("not a bootable disk") {
                    Code::NotABootableDisk
                } else {
                    Code::DiskUnreadable
                };
                r.failure = Some((code, line.to_owned()));
                return r;
            }
        } else if line.starts_with("No bootable device") {
            r.failure = Some((Code::NoBootableDevice, line.to_owned()));
            return r;
        } else if line.starts_with("Booting from ") {
            trying_disk = false;
        }
    }
    r
}

/// The status at the end of a BdsDxe line (`…): Access Denied`).
fn status(line: &str) -> &str {
    line.rsplit("): ").next().unwrap_or_default().trim()
}

/// OVMF (serial console). BdsDxe names each boot option it loads and
/// starts with its device path; the stick's is the one through `USB(`.
/// "failed to load" it is the firmware refusing the stick (`Not Found`: no
/// `\EFI\BOOT\BOOTX64.EFI`; `Access Denied`/`Security Violation`: Secure
/// Boot refused its signature); "starting" it is the loader started, and
/// any later boot-manager line (another option, the shell, "failed to
/// start") means the loader returned to the firmware.
fn read_ovmf(serial: &str) -> Reading {
    let mut r = Reading::default();
    let text = strip_ansi(serial);
    for line in text.lines().map(str::trim) {
        // Lines may carry the terminal-mode bytes OVMF prints first.
        let line = match line.find("BdsDxe:") {
            Some(i) => &line[i..],
            None => line,
        };
        let bds = line.starts_with("BdsDxe:");
        if bds && r.firmware_ran.is_none() {
            r.firmware_ran = Some(line.to_owned());
        }
        let stick = line.contains("/USB(");
        let shell = line.starts_with("UEFI Interactive Shell") || line.starts_with("Shell>");
        if r.loader_started.is_some() {
            if let Some(refusal) = shim_refusal(line) {
                r.failure = Some((Code::ShimRefused, refusal));
                return r;
            }
            if bds || shell {
                let code = if shell {
                    Code::UefiShell
                } else {
                    Code::LoaderReturned
                };
                r.failure = Some((code, line.to_owned()));
                return r;
            }
            continue;
        }
        if bds && stick && line.starts_with("BdsDxe: starting ") {
            r.loader_started = Some(line.to_owned());
        } else if bds && stick && line.starts_with("BdsDxe: failed to ") {
            let code = match status(line) {
                "Access Denied" | "Security Violation" => Code::SecureBootRefused,
                "Not Found" => Code::NoUefiLoader,
                _ => Code::LoadFailed,
            };
            r.failure = Some((code, line.to_owned()));
            return r;
        } else if shell {
            r.failure = Some((Code::UefiShell, line.to_owned()));
            return r;
        } else if line.starts_with("BdsDxe: No bootable option or device was found") {
            r.failure = Some((Code::NoBootableDevice, line.to_owned()));
            return r;
        }
    }
    r
}

/// Shim's refusal of the loader it was to start, drawn as an error box on
/// the console: `Verification failed: (0x1A) Security Violation` (shim
/// prints `Verification failed: (0x%x) %r` when the next image's signature
/// does not verify; the status is EFI_SECURITY_VIOLATION or
/// EFI_ACCESS_DENIED). The box's frame is cut off.
fn shim_refusal(line: &str) -> Option<String> {
    let at = line.find("Verification failed: ")?;
    let text = &line[at..];
    let end = text
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_graphic() || c == ' ') || text[i..].starts_with("  "))
        .map_or(text.len(), |(i, _)| i);
    let text = text[..end].trim();
    (text.ends_with("Security Violation") || text.ends_with("Access Denied"))
        .then(|| text.to_owned())
}

/// Where a boot stands.
#[derive(Clone, Copy, Debug)]
pub struct Progress<'a> {
    pub reading: &'a Reading,
    /// QEMU ended, and how.
    pub ended: Option<&'a Ended>,
    /// How long the loader has been running (since its start was seen).
    pub loader_running: Option<Duration>,
    /// How long the loader must run without the firmware taking over.
    pub settle: Duration,
    /// The bound for the firmware to start a loader or fail has passed.
    pub timed_out: bool,
}

/// The verdict, once the evidence decides one (`None`: keep watching).
///
/// - A failure line, or a triple fault, decides `does-not-boot`.
/// - QEMU ending decides: a reset is `does-not-boot`; a power-off after
///   the loader started is `boots` (the loader ran and ended the boot
///   itself); anything else is `unknown`.
/// - The loader running for `settle` without the firmware speaking again
///   is `boots`.
/// - No loader and no failure by the timeout is `unknown`.
pub fn judge(p: Progress) -> Option<(Verdict, Code)> {
    if let Some((code, _)) = &p.reading.failure {
        return Some((Verdict::DoesNotBoot, *code));
    }
    let started = p.reading.loader_started.is_some();
    if let Some(ended) = p.ended {
        return Some(match (ended, started) {
            (Ended::Reset, _) => (Verdict::DoesNotBoot, Code::Reset),
            (Ended::PoweredOff, true) => (Verdict::Boots, Code::PoweredOff),
            (Ended::PoweredOff, false) => (Verdict::Unknown, Code::PoweredOffBeforeLoader),
            (Ended::Other(_), _) => (Verdict::Unknown, Code::QemuEnded),
        });
    }
    if p.loader_running.is_some_and(|t| t >= p.settle) {
        return Some((Verdict::Boots, Code::KeptRunning));
    }
    if p.timed_out && !started {
        return Some((Verdict::Unknown, Code::NoEvidence));
    }
    None
}

/// Removes terminal escape sequences (OVMF and GRUB draw with them): CSI
/// sequences (`ESC [ … final`) and two-byte escapes.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                // Parameters and intermediates, then one final byte @..~.
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            } else {
                chars.next();
            }
            continue;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEABIOS_BOOTS: &str = "SeaBIOS (version 1.16.2-debian-1.16.2-1)\n\
        enter handle_19:\n  NULL\nBooting from Hard Disk...\nBooting from 0000:7c00\n";
    const SEABIOS_BLANK: &str = "SeaBIOS (version 1.16.2-debian-1.16.2-1)\n\
        enter handle_19:\n  NULL\nBooting from Hard Disk...\nBoot failed: not a bootable disk\n\n\
        enter handle_18:\n  NULL\nBooting from Floppy...\nBoot failed: could not read the boot disk\n\n\
        enter handle_18:\n  NULL\nNo bootable device.\n";
    const OVMF_BOOTS: &str = "\u{1b}[=3h\u{1b}[=3hBdsDxe: loading Boot0001 \"UEFI QEMU QEMU USB HARDDRIVE 1-0000:00:03.0-1\" from PciRoot(0x0)/Pci(0x3,0x0)/USB(0x0,0x0)\n\
        BdsDxe: starting Boot0001 \"UEFI QEMU QEMU USB HARDDRIVE 1-0000:00:03.0-1\" from PciRoot(0x0)/Pci(0x3,0x0)/USB(0x0,0x0)\n\
        Welcome to GRUB!\n";
    const OVMF_BLANK: &str = "\u{1b}[=3hBdsDxe: failed to load Boot0001 \"UEFI QEMU QEMU USB HARDDRIVE 1-0000:00:03.0-1\" from PciRoot(0x0)/Pci(0x3,0x0)/USB(0x0,0x0): Not Found\n\
        BdsDxe: loading Boot0002 \"EFI Internal Shell\" from Fv(7CB8BDC9-F8EB-4F34-AAEA-3EE4AF6516A1)/FvFile(7C04A583-9E3E-4F1C-AD65-E05268D0B4D1)\n\
        BdsDxe: starting Boot0002 \"EFI Internal Shell\" from Fv(7CB8BDC9-F8EB-4F34-AAEA-3EE4AF6516A1)/FvFile(7C04A583-9E3E-4F1C-AD65-E05268D0B4D1)\n\
        UEFI Interactive Shell v2.2\n";
    const OVMF_SECURE: &str = "BdsDxe: loading Boot0001 \"UEFI QEMU QEMU USB HARDDRIVE 1-0000:00:02.0-1\" from PciRoot(0x0)/Pci(0x2,0x0)/USB(0x0,0x0)\n\
        BdsDxe: failed to load Boot0001 \"UEFI QEMU QEMU USB HARDDRIVE 1-0000:00:02.0-1\" from PciRoot(0x0)/Pci(0x2,0x0)/USB(0x0,0x0): Access Denied\n\
        BdsDxe: loading Boot0002 \"EFI Internal Shell\" from Fv(7CB8BDC9-F8EB-4F34-AAEA-3EE4AF6516A1)/FvFile(7C04A583-9E3E-4F1C-AD65-E05268D0B4D1)\n";

    /// Debian's shim 16.1 under Secure Boot OVMF refusing an unsigned
    /// `grubx64.efi` (a line of the serial console; the box is drawn in
    /// CP437 line characters, which arrive as U+FFFD).
    const OVMF_SHIM_REFUSES: &str = "BdsDxe: loading Boot0001 \"UEFI QEMU QEMU USB HARDDRIVE 1-0000:00:02.0-1\" from PciRoot(0x0)/Pci(0x2,0x0)/USB(0x0,0x0)\n\
        BdsDxe: starting Boot0001 \"UEFI QEMU QEMU USB HARDDRIVE 1-0000:00:02.0-1\" from PciRoot(0x0)/Pci(0x2,0x0)/USB(0x0,0x0)\n\
        \u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}                                    ERROR                                     \u{fffd}\u{fffd}                                                                              \u{fffd}\u{fffd}                Verification failed: (0x1A) Security Violation                \u{fffd}\u{fffd}      \u{fffd}\n";

    fn bios(debugcon: &str) -> Reading {
        read(
            Firmware::Bios,
            &Logs {
                debugcon,
                ..Logs::default()
            },
        )
    }

    fn uefi(serial: &str) -> Reading {
        read(
            Firmware::Uefi,
            &Logs {
                serial,
                ..Logs::default()
            },
        )
    }

    fn code(r: &Reading) -> Option<Code> {
        r.failure.as_ref().map(|(c, _)| *c)
    }

    #[test]
    fn seabios_jumping_to_the_mbr_is_the_loader_starting() {
        let r = bios(SEABIOS_BOOTS);
        assert_eq!(r.loader_started.as_deref(), Some("Booting from 0000:7c00"));
        assert_eq!(r.failure, None);
        assert!(r.firmware_ran.unwrap().starts_with("SeaBIOS (version"));
    }

    #[test]
    fn seabios_blank_stick_is_not_a_bootable_disk_not_the_floppy() {
        let r = bios(SEABIOS_BLANK);
        assert_eq!(code(&r), Some(Code::NotABootableDisk));
        assert_eq!(r.loader_started, None);
        assert_eq!(r.failure.unwrap().1, "Boot failed: not a bootable disk");
    }

    #[test]
    fn seabios_without_a_disk_says_no_bootable_device() {
        let r = bios("SeaBIOS (version 1.16)\nBooting from Floppy...\nBoot failed: could not read the boot disk\nNo bootable device.\n");
        assert_eq!(code(&r), Some(Code::NoBootableDevice));
    }

    #[test]
    fn seabios_loader_giving_control_back_is_loader_returned() {
        let r = bios(&format!("{SEABIOS_BOOTS}enter handle_18:\n  NULL\n"));
        assert_eq!(code(&r), Some(Code::LoaderReturned));
        assert!(r.loader_started.is_some());
    }

    #[test]
    fn triple_fault_in_qemus_log_decides() {
        let r = read(
            Firmware::Bios,
            &Logs {
                debugcon: SEABIOS_BOOTS,
                qemu_log: "CPU Reset (CPU 0)\nEAX=0\nTriple fault\n",
                ..Logs::default()
            },
        );
        assert_eq!(code(&r), Some(Code::TripleFault));
    }

    #[test]
    fn ovmf_starting_the_usb_option_is_the_loader_starting() {
        let r = uefi(OVMF_BOOTS);
        assert!(r.loader_started.unwrap().contains("/USB(0x0,0x0)"));
        assert_eq!(r.failure, None);
        assert!(r
            .firmware_ran
            .unwrap()
            .starts_with("BdsDxe: loading Boot0001"));
    }

    #[test]
    fn ovmf_blank_stick_is_no_uefi_loader_before_the_shell() {
        let r = uefi(OVMF_BLANK);
        assert_eq!(code(&r), Some(Code::NoUefiLoader));
        assert_eq!(
            r.loader_started, None,
            "the shell is not the stick's loader"
        );
    }

    /// A line caught half-written is not read: "Boot failed: not" (of
    /// "not a bootable disk") once made a blank stick "disk-unreadable".
    #[test]
    fn a_half_written_line_is_not_evidence_yet() {
        let partial =
            "SeaBIOS (version 1.16.2-debian-1.16.2-1)\nBooting from Hard Disk...\nBoot failed: not";
        assert_eq!(code(&bios(partial)), None);
        // shim's box has no newline after it: still read.
        let unterminated = OVMF_SHIM_REFUSES.trim_end_matches('\n');
        assert_eq!(code(&uefi(unterminated)), Some(Code::ShimRefused));
        let cut = unterminated.trim_end_matches(|c| c != 'S');
        assert_eq!(code(&uefi(cut)), None, "{cut:?}");
        assert_eq!(code(&bios(SEABIOS_BLANK)), Some(Code::NotABootableDisk));
    }

    #[test]
    fn shims_verification_failure_after_it_started_is_shim_refused() {
        let r = uefi(OVMF_SHIM_REFUSES);
        assert!(r.loader_started.is_some(), "shim itself started");
        assert_eq!(
            r.failure,
            Some((
                Code::ShimRefused,
                "Verification failed: (0x1A) Security Violation".to_owned()
            ))
        );
        // Before any loader started, the words are not the stick's shim.
        assert_eq!(
            shim_refusal("x Verification failed: (0x1A) Security Violation  y").as_deref(),
            Some("Verification failed: (0x1A) Security Violation")
        );
        assert_eq!(shim_refusal("Verification failed: (0x0E) Not Found"), None);
    }

    #[test]
    fn ovmf_access_denied_and_security_violation_are_secure_boot() {
        assert_eq!(code(&uefi(OVMF_SECURE)), Some(Code::SecureBootRefused));
        let violation = OVMF_SECURE.replace("Access Denied", "Security Violation");
        assert_eq!(code(&uefi(&violation)), Some(Code::SecureBootRefused));
        let other = OVMF_SECURE.replace("Access Denied", "Load Error");
        assert_eq!(code(&uefi(&other)), Some(Code::LoadFailed));
    }

    #[test]
    fn ovmf_loader_exiting_to_the_boot_manager_is_loader_returned() {
        let r = uefi(&format!("{OVMF_BOOTS}BdsDxe: failed to start Boot0001 \"UEFI QEMU QEMU USB HARDDRIVE\" from PciRoot(0x0)/Pci(0x3,0x0)/USB(0x0,0x0): Aborted\n"));
        assert_eq!(code(&r), Some(Code::LoaderReturned));
        let r = uefi(&format!("{OVMF_BOOTS}UEFI Interactive Shell v2.2\n"));
        assert_eq!(code(&r), Some(Code::UefiShell));
    }

    #[test]
    fn ovmf_shell_without_any_usb_option_is_the_uefi_shell() {
        let r = uefi("BdsDxe: loading Boot0002 \"EFI Internal Shell\" from Fv(1)/FvFile(2)\nBdsDxe: starting Boot0002 \"EFI Internal Shell\" from Fv(1)/FvFile(2)\nUEFI Interactive Shell v2.2\n");
        assert_eq!(code(&r), Some(Code::UefiShell));
    }

    fn progress<'a>(r: &'a Reading, ended: Option<&'a Ended>) -> Progress<'a> {
        Progress {
            reading: r,
            ended,
            loader_running: None,
            settle: Duration::from_secs(5),
            timed_out: false,
        }
    }

    #[test]
    fn verdicts_follow_the_rule() {
        let started = bios(SEABIOS_BOOTS);
        let nothing = Reading::default();
        let failed = bios(SEABIOS_BLANK);
        assert_eq!(
            judge(progress(&failed, None)),
            Some((Verdict::DoesNotBoot, Code::NotABootableDisk))
        );
        // Still watching: the loader has not run long enough.
        let mut p = progress(&started, None);
        p.loader_running = Some(Duration::from_secs(4));
        assert_eq!(judge(p), None);
        p.loader_running = Some(Duration::from_secs(5));
        assert_eq!(judge(p), Some((Verdict::Boots, Code::KeptRunning)));
        // A timeout only matters before a loader started.
        p.timed_out = true;
        p.loader_running = Some(Duration::from_secs(1));
        assert_eq!(judge(p), None);
        let mut p = progress(&nothing, None);
        p.timed_out = true;
        assert_eq!(judge(p), Some((Verdict::Unknown, Code::NoEvidence)));
        assert_eq!(
            judge(progress(&started, Some(&Ended::PoweredOff))),
            Some((Verdict::Boots, Code::PoweredOff))
        );
        assert_eq!(
            judge(progress(&nothing, Some(&Ended::PoweredOff))),
            Some((Verdict::Unknown, Code::PoweredOffBeforeLoader))
        );
        assert_eq!(
            judge(progress(&started, Some(&Ended::Reset))),
            Some((Verdict::DoesNotBoot, Code::Reset))
        );
        assert_eq!(
            judge(progress(&started, Some(&Ended::Other("exit 1".into())))),
            Some((Verdict::Unknown, Code::QemuEnded))
        );
    }

    #[test]
    fn strip_ansi_removes_csi_and_mode_sequences() {
        assert_eq!(strip_ansi("\u{1b}[=3h\u{1b}[0mA\u{1b}[2J\u{1b}cB"), "AB");
    }
}
