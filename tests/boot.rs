//! Boot proofs: real firmware (SeaBIOS for BIOS, OVMF for UEFI) under QEMU
//! boots media and GRUB prints a marker on the serial console.
//!
//! This file first proves the harness itself: the grub-hybrid fixture ISO,
//! attached as a USB stick, boots under both firmwares, and a blank disk
//! (the negative control) does not — so a boot test here can fail.

mod common;

use common::qemu::{self, Boot, End, Firmware};
use std::path::PathBuf;

fn fixture(test: &str, firmware: &[Firmware]) -> Option<PathBuf> {
    if !common::require_tools(test, qemu::FIXTURE_TOOLS) || !qemu::require(test, firmware) {
        return None;
    }
    Some(qemu::grub_hybrid_iso())
}

#[test]
fn fixture_iso_is_hybrid_and_hides_its_marker() {
    let Some(iso) = fixture("fixture_iso_is_hybrid_and_hides_its_marker", &[]) else {
        return;
    };
    let bytes = std::fs::read(&iso).unwrap();
    // An MBR boot signature (the BIOS path of a hybrid ISO) ...
    assert_eq!(
        &bytes[510..512],
        &[0x55, 0xAA],
        "no MBR signature in {iso:?}"
    );
    // ... and, says xorriso (the oracle), an El Torito EFI boot image.
    let report = common::run(
        std::process::Command::new("xorriso")
            .args(["-indev"])
            .arg(&iso)
            .args(["-report_el_torito", "plain"]),
    );
    assert!(
        report.contains("UEFI"),
        "xorriso finds no UEFI El Torito entry:\n{report}"
    );
    // The printed marker must only come from GRUB running, never from bytes
    // of the image that firmware or a loader might echo.
    for fw in Firmware::ALL {
        let m = qemu::fixture_marker(fw);
        assert!(
            !bytes.windows(m.len()).any(|w| w == m.as_bytes()),
            "{m:?} occurs literally in {iso:?}: keep it out of grub.cfg"
        );
    }
}

fn boots(test: &str, firmware: Firmware) {
    let Some(iso) = fixture(test, &[firmware]) else {
        return;
    };
    let out = Boot::new(&iso, firmware, &qemu::fixture_marker(firmware)).assert_boots();
    eprintln!(
        "{test}: marker after {:.1} s ({})",
        out.elapsed.as_secs_f64(),
        out.accel
    );
}

#[test]
fn fixture_iso_boots_as_usb_stick_under_seabios() {
    boots(
        "fixture_iso_boots_as_usb_stick_under_seabios",
        Firmware::SeaBios,
    );
}

#[test]
fn fixture_iso_boots_as_usb_stick_under_ovmf() {
    boots("fixture_iso_boots_as_usb_stick_under_ovmf", Firmware::Ovmf);
}

/// The negative control: a blank stick must not produce the marker, and the
/// firmware must say so (rather than the harness timing out).
fn blank_does_not_boot(test: &str, firmware: Firmware) {
    if !qemu::require(test, &[firmware]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let blank = dir.path().join("blank.img");
    std::fs::File::create(&blank)
        .unwrap()
        .set_len(16 << 20)
        .unwrap();
    let out = Boot::new(&blank, firmware, &qemu::fixture_marker(firmware)).run();
    assert!(
        matches!(out.end, End::FirmwareGaveUp(_) | End::Exited(_)),
        "a blank disk under {firmware:?} ended with {:?}\n{}",
        out.end,
        out.log
    );
}

#[test]
fn blank_disk_does_not_boot_under_seabios() {
    blank_does_not_boot("blank_disk_does_not_boot_under_seabios", Firmware::SeaBios);
}

#[test]
fn blank_disk_does_not_boot_under_ovmf() {
    blank_does_not_boot("blank_disk_does_not_boot_under_ovmf", Firmware::Ovmf);
}
