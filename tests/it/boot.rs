//! Boot proofs: real firmware (SeaBIOS for BIOS, OVMF for UEFI) under QEMU
//! boots media and GRUB prints a marker on the serial console.
//!
//! This file first proves the harness itself: the grub-hybrid fixture ISO,
//! attached as a USB stick, boots under both firmwares, and a blank disk
//! (the negative control) does not — so a boot test here can fail. Then the
//! product: what `bootstick write` puts into an image file and onto a block
//! device (a loop device) boots under both firmwares.

use crate::common;

use bootstick::layout::disk::Table;
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

/// The firmware's own evidence that it started and tried the USB stick, and
/// that the stick gave it nothing to boot: a negative control passes only on
/// these lines, never on QEMU failing to start or a timeout.
fn gave_up_on_the_stick(firmware: Firmware, out: &qemu::Outcome) {
    let (banner, tried) = match firmware {
        // SeaBIOS (debug console): its banner, then the USB disk tried and
        // rejected before "No bootable device".
        Firmware::SeaBios => ("SeaBIOS (version", "Boot failed: not a bootable disk"),
        // OVMF (serial): the boot manager's failed attempt at the USB disk's
        // boot option, before it falls back to the internal shell.
        Firmware::Ovmf => (
            "BdsDxe:",
            "failed to load Boot0001 \"UEFI QEMU QEMU USB HARDDRIVE",
        ),
    };
    assert!(
        matches!(out.end, End::FirmwareGaveUp(_)),
        "under {firmware:?} the firmware did not say it gave up: {:?}\n{}",
        out.end,
        out.log
    );
    for evidence in [banner, tried] {
        assert!(
            out.log.contains(evidence),
            "under {firmware:?} no {evidence:?} in the log\n{}",
            out.log
        );
    }
}

/// The negative control: a blank stick must not produce the marker, and the
/// firmware must say so (rather than the harness timing out or QEMU failing).
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
    gave_up_on_the_stick(firmware, &out);
}

#[test]
fn blank_disk_does_not_boot_under_seabios() {
    blank_does_not_boot("blank_disk_does_not_boot_under_seabios", Firmware::SeaBios);
}

#[test]
fn blank_disk_does_not_boot_under_ovmf() {
    blank_does_not_boot("blank_disk_does_not_boot_under_ovmf", Firmware::Ovmf);
}

/// A permanent negative control of the marker itself: the fixture booted
/// under SeaBIOS prints the BIOS marker and powers off, so a boot that waits
/// for the UEFI marker must end without it. A harness that matched any
/// marker (or a prefix) would pass here and fail this test.
#[test]
fn fixture_under_seabios_never_shows_the_uefi_marker() {
    let t = "fixture_under_seabios_never_shows_the_uefi_marker";
    let Some(iso) = fixture(t, &[Firmware::SeaBios]) else {
        return;
    };
    let out = Boot::new(
        &iso,
        Firmware::SeaBios,
        &qemu::fixture_marker(Firmware::Ovmf),
    )
    .run();
    assert!(
        matches!(out.end, End::Exited(_)),
        "expected GRUB to print the BIOS marker and power off: {:?}\n{}",
        out.end,
        out.log
    );
    assert!(
        out.log.contains(&qemu::fixture_marker(Firmware::SeaBios)),
        "the fixture did not run under SeaBIOS at all\n{}",
        out.log
    );
}

// ------------------------------------------------- media written by bootstick

/// Boots `disk` under SeaBIOS and OVMF at once (two threads: each TCG boot
/// is single-threaded) and asserts each prints its own platform's marker.
fn boots_under_both(disk: &std::path::Path) {
    std::thread::scope(|s| {
        let boots: Vec<_> = Firmware::ALL
            .into_iter()
            .map(|fw| {
                s.spawn(move || {
                    let out = Boot::new(disk, fw, &qemu::fixture_marker(fw)).assert_boots();
                    eprintln!(
                        "{}: {fw:?} marker after {:.1} s ({})",
                        disk.display(),
                        out.elapsed.as_secs_f64(),
                        out.accel
                    );
                })
            })
            .collect();
        for b in boots {
            if let Err(panic) = b.join() {
                std::panic::resume_unwind(panic);
            }
        }
    });
}

/// `bootstick write --yes IMAGE TARGET`, asserting the JSON result says ok.
fn bootstick_write(image: &std::path::Path, target: &std::path::Path) {
    let out = common::run(
        common::bootstick()
            .args(["write", "--yes", "--json"])
            .arg(image)
            .arg(target),
    );
    let last = out.lines().last().unwrap_or_default();
    let v: serde_json::Value =
        serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: not JSON: {last:?}"));
    assert_eq!(v["ok"], true, "write result: {last}");
    assert_eq!(v["verified"], true, "write result: {last}");
}

/// The bytes at the start of `target` are the image, says `cmp` (the oracle
/// for content; the firmware is the oracle for bootability).
fn cmp_prefix(image: &std::path::Path, target: &std::path::Path) {
    let len = std::fs::metadata(image).unwrap().len();
    common::run(
        std::process::Command::new("cmp")
            .arg("-n")
            .arg(len.to_string())
            .arg(image)
            .arg(target),
    );
}

/// An image file of a stick made by bootstick boots under BIOS and UEFI. The
/// target file exists beforehand, larger than the image and full of stale
/// junk, as a reused stick image would be (bootstick overwrites it).
#[test]
fn bootstick_written_file_boots_under_seabios_and_ovmf() {
    let t = "bootstick_written_file_boots_under_seabios_and_ovmf";
    let Some(iso) = fixture(t, &Firmware::ALL) else {
        return;
    };
    if !common::require_tools(t, &["cmp"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let stick = dir.path().join("stick.img");
    let iso_len = std::fs::metadata(&iso).unwrap().len();
    common::pseudo_random_file(&stick, iso_len + (7 << 20) + 4321, 77);
    bootstick_write(&iso, &stick);
    cmp_prefix(&iso, &stick);
    boots_under_both(&stick);
}

/// The realistic case: bootstick writes the fixture to a block device (a
/// loop device over a stale, larger backing file), and firmware boots that
/// device, attached to the guest as a USB stick, under BIOS and UEFI.
#[test]
fn bootstick_written_loop_device_boots_under_seabios_and_ovmf() {
    let t = "bootstick_written_loop_device_boots_under_seabios_and_ovmf";
    if !common::require_root(t) || !common::require_tools(t, &["losetup", "cmp"]) {
        return;
    }
    let Some(iso) = fixture(t, &Firmware::ALL) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let backing = dir.path().join("backing.img");
    common::pseudo_random_file(&backing, 32 << 20, 78);
    let dev = common::LoopDevice::attach(&backing);
    bootstick_write(&iso, dev.path());
    cmp_prefix(&iso, dev.path());
    boots_under_both(dev.path());
}

// ------------------------------------------------- layouts bootstick builds

/// A stick laid out by `layout::disk::fat32_stick`, as an image file in
/// `dir`: MBR or GPT, one FAT32 partition at 1 MiB holding
/// `\EFI\BOOT\BOOTX64.EFI` (a standalone GRUB whose bytes are `Source`
/// ranges of the plan's source). The whole disk is one plan written by the
/// engine.
fn fat32_layout_stick(dir: &std::path::Path, table: Table) -> PathBuf {
    use bootstick::image::{FileData, Run};
    use bootstick::layout::disk::{self, Options};
    use bootstick::layout::fat32::{Content, Dir};

    let efi = qemu::grub_efi_standalone();
    let efi_len = std::fs::metadata(&efi).unwrap().len();

    let mut boot = Dir::new();
    boot.file(
        "BOOTX64.EFI",
        Content::Source(FileData {
            size: efi_len,
            runs: vec![Run::Data {
                offset: 0,
                len: efi_len,
            }],
        }),
    );
    let mut efi_dir = Dir::new();
    efi_dir.dir("BOOT", boot);
    let mut root = Dir::new();
    root.dir("EFI", efi_dir);

    let size = 50 << 20;
    let (plan, _) = disk::fat32_stick(
        &root,
        &Options {
            size,
            table,
            label: "BOOTSTICK".into(),
            id: 0x2026_1129,
            mtime: 1_767_225_600,
        },
    )
    .unwrap();

    let disk = dir.join("stick.img");
    let source = std::fs::File::open(&efi).unwrap();
    let mut target = bootstick::write::Target::file(&disk).unwrap();
    let report = bootstick::write::write(
        &plan,
        &source,
        &mut target,
        bootstick::write::Options::default(),
        &bootstick::events::Silent,
    )
    .unwrap();
    assert!(report.verified);
    drop(target);
    // Free clusters are not in the plan: give the image the stick's size.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&disk)
        .unwrap()
        .set_len(size)
        .unwrap();
    disk
}

/// OVMF's own partition and FAT drivers find the loader in a stick laid out
/// by bootstick and run it.
fn fat32_layout_boots(t: &str, table: Table) {
    if !common::require_tools(t, qemu::STANDALONE_TOOLS) || !qemu::require(t, &[Firmware::Ovmf]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let disk = fat32_layout_stick(dir.path(), table);
    let out =
        Boot::new(&disk, Firmware::Ovmf, &qemu::fixture_marker(Firmware::Ovmf)).assert_boots();
    eprintln!(
        "{t}: marker after {:.1} s ({})",
        out.elapsed.as_secs_f64(),
        out.accel
    );
}

#[test]
fn fat32_layout_in_mbr_partition_boots_under_ovmf() {
    fat32_layout_boots("fat32_layout_in_mbr_partition_boots_under_ovmf", Table::Mbr);
}

#[test]
fn fat32_layout_in_gpt_partition_boots_under_ovmf() {
    fat32_layout_boots("fat32_layout_in_gpt_partition_boots_under_ovmf", Table::Gpt);
}

/// The loader's cluster run in the stick's FAT32 partition at 1 MiB, as
/// mtools (`mshowfat`, not bootstick) reports it: `(first, last)`.
fn loader_clusters(disk: &std::path::Path) -> (u64, u64) {
    let chain = common::run(
        std::process::Command::new("mshowfat")
            .arg("-i")
            .arg(format!("{}@@{}", disk.display(), 1u64 << 20))
            .arg("::/EFI/BOOT/BOOTX64.EFI"),
    );
    // "::/EFI/BOOT/BOOTX64.EFI <5-5828>", or "<5>" for a single cluster.
    let run = chain
        .split('<')
        .nth(1)
        .and_then(|r| r.split('>').next())
        .unwrap_or_else(|| panic!("no cluster run in mshowfat's {chain:?}"));
    let mut ends = run.split('-').map(|n| n.trim().parse::<u64>().unwrap());
    let first = ends.next().unwrap();
    (first, ends.next().unwrap_or(first))
}

/// A permanent negative control of the layout boot proofs: the same stick
/// with the loader's FAT cluster chain cut after its first cluster (in both
/// FATs; the directory entry still claims the full size) must not boot, and
/// OVMF must say it failed to load the USB disk's loader. mtools finds the
/// chain and confirms the cut; the cut itself is made by hand here.
#[test]
fn fat32_layout_with_a_cut_fat_chain_does_not_boot_under_ovmf() {
    let t = "fat32_layout_with_a_cut_fat_chain_does_not_boot_under_ovmf";
    if !common::require_tools(t, qemu::STANDALONE_TOOLS)
        || !common::require_tools(t, &["mshowfat"])
        || !qemu::require(t, &[Firmware::Ovmf])
    {
        return;
    }
    use std::io::{Read, Seek, SeekFrom, Write};
    let dir = tempfile::tempdir().unwrap();
    let disk = fat32_layout_stick(dir.path(), Table::Mbr);
    let (first, last) = loader_clusters(&disk);
    assert!(last > first, "the loader fits one cluster: nothing to cut");
    let part = 1u64 << 20;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&disk)
        .unwrap();
    let mut bpb = [0u8; 512];
    f.seek(SeekFrom::Start(part)).unwrap();
    f.read_exact(&mut bpb).unwrap();
    let bytes_per_sector = u64::from(u16::from_le_bytes([bpb[11], bpb[12]]));
    let reserved = u64::from(u16::from_le_bytes([bpb[14], bpb[15]]));
    let fats = u64::from(bpb[16]);
    let fat_sectors = u64::from(u32::from_le_bytes([bpb[36], bpb[37], bpb[38], bpb[39]]));
    assert!(fats >= 1 && fat_sectors > 0, "not a FAT32 boot sector");
    for n in 0..fats {
        let entry = part + (reserved + n * fat_sectors) * bytes_per_sector + first * 4;
        f.seek(SeekFrom::Start(entry)).unwrap();
        f.write_all(&0x0FFF_FFFFu32.to_le_bytes()).unwrap();
    }
    drop(f);
    assert_eq!(
        loader_clusters(&disk),
        (first, first),
        "the chain was not cut to one cluster"
    );
    let out = Boot::new(&disk, Firmware::Ovmf, &qemu::fixture_marker(Firmware::Ovmf)).run();
    gave_up_on_the_stick(Firmware::Ovmf, &out);
}
