//! `bootstick boot-test`: the verdicts, each from a medium whose fate is
//! known independently — the grub-hybrid fixture, whose GRUB prints a
//! marker on the serial console only when it really ran (the oracle of
//! `tests/boot.rs`, checked here against the command's `console`), a blank
//! stick, an EFI-only ISO written raw and as a built layout, and 512-byte
//! MBRs whose code spins or triple-faults. The medium is never changed:
//! `sha256sum` before and after, and a read-only loop device (the kernel
//! refuses every write to it).
//!
//! Each medium is booted once per firmware; assertions share the boots.

use crate::common;

use common::fixtures::cached;
use common::qemu::{self, Firmware};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs `bootstick boot-test --json ARGS…` (holding one of the test
/// process's two guest slots) and returns the exit code and the `result`
/// line, after checking the JSON contract.
fn boot_test(args: &[&str], medium: &Path) -> (Option<i32>, Value) {
    boot_test_under(qemu::accel(), args, medium)
}

/// [`boot_test`] with the accelerator given.
fn boot_test_under(accel: &str, args: &[&str], medium: &Path) -> (Option<i32>, Value) {
    let _slot = qemu::slot();
    let cache = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_bootstick"))
        .arg("boot-test")
        .arg("--json")
        .args(args)
        .arg(medium)
        .env("BOOTSTICK_QEMU_ACCEL", accel)
        .env("XDG_CACHE_HOME", cache.path())
        .output()
        .unwrap();
    let lines = common::json_lines(&out.stdout);
    assert_eq!(lines[0]["command"], "boot-test", "{lines:?}");
    let result = lines.last().unwrap().clone();
    if let Some(results) = result["results"].as_array() {
        for r in results {
            eprintln!(
                "{}: {} {} after {} s ({})",
                medium.display(),
                r["firmware"],
                r["verdict"],
                r["seconds"],
                result["accel"]
            );
        }
    }
    (out.status.code(), result)
}

/// The result for `firmware` (its `firmware` field).
fn under<'a>(result: &'a Value, firmware: &str) -> &'a Value {
    result["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results: {result}"))
        .iter()
        .find(|r| r["firmware"] == firmware)
        .unwrap_or_else(|| panic!("no {firmware} result: {result}"))
}

/// Asserts verdict and reason, with the whole result in the message.
fn expect(result: &Value, firmware: &str, verdict: &str, reason: &str) {
    let r = under(result, firmware);
    assert_eq!(
        (r["verdict"].as_str(), r["reason"].as_str()),
        (Some(verdict), Some(reason)),
        "{firmware}: {r:#}"
    );
}

fn evidence(result: &Value, firmware: &str) -> String {
    under(result, firmware)["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

fn sha256(path: &Path) -> String {
    common::run(Command::new("sha256sum").arg(path))
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

fn hybrid(test: &str) -> Option<PathBuf> {
    if !common::require_tools(test, qemu::FIXTURE_TOOLS)
        || !common::require_tools(test, &["sha256sum"])
        || !qemu::require(test, &Firmware::ALL)
    {
        return None;
    }
    Some(qemu::grub_hybrid_iso())
}

/// The hybrid fixture under all three firmwares in one run: BIOS and UEFI
/// boot it (GRUB's marker on the console is the independent oracle, and
/// GRUB powering off ends both), Secure Boot refuses its unsigned GRUB
/// (the marker never appears), the refusal is on the screenshot, the
/// exit code says "does not boot", and the ISO is unchanged.
#[test]
fn hybrid_boots_under_bios_and_uefi_and_secure_boot_refuses_unsigned_grub() {
    let t = "hybrid_boots_under_bios_and_uefi_and_secure_boot_refuses_unsigned_grub";
    let Some(iso) = hybrid(t) else { return };
    if !common::require_tools(t, &["file"]) {
        return;
    }
    let before = sha256(&iso);
    let shots = tempfile::tempdir().unwrap();
    let shots_dir = shots.path().join("shots");
    let (code, result) = boot_test(
        &[
            "--firmware",
            "bios,uefi,uefi-secure-boot",
            "--screenshot",
            shots_dir.to_str().unwrap(),
        ],
        &iso,
    );
    expect(&result, "bios", "boots", "powered-off");
    expect(&result, "uefi", "boots", "powered-off");
    expect(
        &result,
        "uefi-secure-boot",
        "does-not-boot",
        "secure-boot-refused",
    );
    assert!(evidence(&result, "bios").contains("Booting from 0000:7c00"));
    assert!(evidence(&result, "uefi").contains("BdsDxe: starting Boot0001"));
    assert!(evidence(&result, "uefi-secure-boot").contains(": Access Denied"));
    for (fw, marker) in [
        ("bios", Some(qemu::fixture_marker(Firmware::SeaBios))),
        ("uefi", Some(qemu::fixture_marker(Firmware::Ovmf))),
        ("uefi-secure-boot", None),
    ] {
        let console = under(&result, fw)["console"].as_str().unwrap();
        match marker {
            Some(m) => assert!(console.contains(&m), "{fw}: no {m:?} in {console:?}"),
            None => assert!(!console.contains(qemu::FIXTURE_MARKER), "{fw}: {console}"),
        }
    }
    assert_eq!(code, Some(20), "{result:#}");
    assert_eq!(result["exit_code"], 20);
    // GRUB powered the machine off under BIOS and UEFI: no screen left.
    // The refusal's screen is a PNG (file(1) is the oracle).
    let png = shots_dir.join("uefi-secure-boot.png");
    assert_eq!(
        under(&result, "uefi-secure-boot")["screenshot"],
        png.to_str().unwrap()
    );
    let kind = common::run(Command::new("file").arg("-b").arg(&png));
    assert!(kind.starts_with("PNG image data"), "{kind}");
    assert!(under(&result, "bios")["screenshot"].is_null());
    assert_eq!(sha256(&iso), before, "the boot test changed the ISO");
}

/// A blank stick does not boot anywhere: SeaBIOS says it is not a
/// bootable disk, OVMF (with and without Secure Boot) finds no loader on
/// it ("Not Found") before falling back to its shell.
#[test]
fn blank_stick_does_not_boot_under_any_firmware() {
    let t = "blank_stick_does_not_boot_under_any_firmware";
    if !common::require_tools(t, &["sha256sum"]) || !qemu::require(t, &Firmware::ALL) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let blank = dir.path().join("blank.img");
    std::fs::File::create(&blank)
        .unwrap()
        .set_len(16 << 20)
        .unwrap();
    let before = sha256(&blank);
    let (code, result) = boot_test(&["--firmware", "bios,uefi,uefi-secure-boot"], &blank);
    expect(&result, "bios", "does-not-boot", "not-a-bootable-disk");
    expect(&result, "uefi", "does-not-boot", "no-uefi-loader");
    expect(
        &result,
        "uefi-secure-boot",
        "does-not-boot",
        "no-uefi-loader",
    );
    assert!(evidence(&result, "bios").contains("Boot failed: not a bootable disk"));
    assert!(evidence(&result, "uefi").contains("USB(0x0,0x0): Not Found"));
    assert_eq!(code, Some(20));
    assert_eq!(sha256(&blank), before);
}

/// An EFI-only ISO (El Torito EFI image, no hybrid MBR, no ESP) built by
/// xorriso, with GRUB standalone as its loader.
fn efi_only_iso() -> PathBuf {
    let efi = qemu::grub_efi_standalone();
    let efi_bytes = std::fs::read(&efi).unwrap();
    let recipe = format!(
        "efi {} bytes, sum {}; mkfs.fat -C; xorriso -as mkisofs -R -J -e efiboot.img -no-emul-boot",
        efi_bytes.len(),
        efi_bytes.iter().map(|b| u64::from(*b)).sum::<u64>()
    );
    cached("boot-test-efi-only", "iso", &recipe, |out| {
        let dir = tempfile::tempdir_in(common::fixtures::fixture_dir()).unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("README.txt"), "an EFI-only test ISO\n").unwrap();
        let img = root.join("efiboot.img");
        let kib = efi_bytes.len() as u64 / 1024 + 1024;
        common::run(
            Command::new("mkfs.fat")
                .arg("-C")
                .arg(&img)
                .arg(kib.to_string()),
        );
        let mtools = |cmd: &str| {
            let mut c = Command::new(cmd);
            c.env("MTOOLS_SKIP_CHECK", "1").arg("-i").arg(&img);
            c
        };
        common::run(mtools("mmd").args(["::/EFI", "::/EFI/BOOT"]));
        common::run(mtools("mcopy").arg(&efi).arg("::/EFI/BOOT/BOOTX64.EFI"));
        common::run(
            Command::new("xorriso")
                .args(["-as", "mkisofs", "-quiet", "-R", "-J"])
                .args(["-e", "efiboot.img", "-no-emul-boot", "-o"])
                .arg(out)
                .arg(&root),
        );
    })
}

/// The EFI-only ISO copied raw: SeaBIOS finds no boot code, and UEFI is
/// skipped (no FAT volume with a loader; real PCs do not boot El Torito
/// from USB). Its built layout (`bootstick write`, GPT + FAT32 in a basic
/// data partition, not an ESP) boots under UEFI: GRUB's marker again.
#[test]
fn efi_only_iso_raw_is_skipped_under_uefi_and_its_built_layout_boots() {
    let t = "efi_only_iso_raw_is_skipped_under_uefi_and_its_built_layout_boots";
    if !common::require_tools(t, &["xorriso", "mkfs.fat", "mmd", "mcopy"])
        || !common::require_tools(t, qemu::STANDALONE_TOOLS)
        || !qemu::require(t, &Firmware::ALL)
    {
        return;
    }
    let iso = efi_only_iso();
    let (code, raw) = boot_test(&[], &iso);
    expect(&raw, "bios", "does-not-boot", "not-a-bootable-disk");
    expect(&raw, "uefi", "skipped", "no-fat-loader");
    assert_eq!(
        under(&raw, "uefi")["seconds"],
        0.0,
        "a skipped firmware is not booted"
    );
    assert_eq!(code, Some(20));

    let dir = tempfile::tempdir().unwrap();
    let stick = dir.path().join("stick.img");
    let w = Command::new(env!("CARGO_BIN_EXE_bootstick"))
        .args(["write", "--yes"])
        .arg(&iso)
        .arg(&stick)
        .output()
        .unwrap();
    assert!(w.status.success(), "{w:?}");
    let (code, layout) = boot_test(&["--firmware", "uefi"], &stick);
    expect(&layout, "uefi", "boots", "powered-off");
    let console = under(&layout, "uefi")["console"].as_str().unwrap();
    assert!(
        console.contains(&qemu::fixture_marker(Firmware::Ovmf)),
        "{console}"
    );
    assert_eq!(code, Some(0), "{layout:#}");
    assert_eq!(layout["ok"], true);
}

/// A 64-sector disk whose MBR (boot signature set) holds `code`.
fn mbr_disk(dir: &Path, name: &str, code: &[u8]) -> PathBuf {
    let mut disk = vec![0u8; 64 * 512];
    disk[..code.len()].copy_from_slice(code);
    disk[510] = 0x55;
    disk[511] = 0xAA;
    let p = dir.join(name);
    std::fs::write(&p, disk).unwrap();
    p
}

/// Boot code that never returns (`jmp $`) is a loader that keeps running:
/// `boots` after the settle time, with a screenshot of its screen. Code
/// that loads an empty IDT and raises an interrupt triple-faults: QEMU's
/// log says so and the verdict names it.
#[test]
fn spinning_mbr_boots_and_triple_faulting_mbr_does_not() {
    let t = "spinning_mbr_boots_and_triple_faulting_mbr_does_not";
    if !qemu::require(t, &[Firmware::SeaBios]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let spin = mbr_disk(dir.path(), "spin.img", &[0xEB, 0xFE]);
    // cli; lidt [0x7c10] (a zero limit: the 6 bytes at 0x10 are zero); int3
    let triple = mbr_disk(
        dir.path(),
        "triple.img",
        &[0xFA, 0x0F, 0x01, 0x1E, 0x10, 0x7C, 0xCC, 0xEB, 0xFE],
    );
    let shots = dir.path().join("shots");
    let (code, r) = boot_test(
        &[
            "--firmware",
            "bios",
            "--screenshot",
            shots.to_str().unwrap(),
        ],
        &spin,
    );
    expect(&r, "bios", "boots", "kept-running");
    let b = under(&r, "bios");
    let started = b["loader_started_after"].as_f64().unwrap();
    assert!(
        b["seconds"].as_f64().unwrap() >= started + 4.9,
        "judged before the loader ran 5 s: {b:#}"
    );
    assert!(shots.join("bios.png").is_file(), "{b:#}");
    assert_eq!(code, Some(0));
    let (code, r) = boot_test(&["--firmware", "bios"], &triple);
    expect(&r, "bios", "does-not-boot", "triple-fault");
    assert_eq!(code, Some(20));
}

/// No evidence within the timeout is `unknown` (exit 21), never a guess:
/// OVMF under TCG (forced here) takes seconds to reach its boot manager,
/// more than 1 s.
#[test]
fn no_evidence_within_the_timeout_is_unknown() {
    let t = "no_evidence_within_the_timeout_is_unknown";
    if !qemu::require(t, &[Firmware::Ovmf]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let blank = dir.path().join("blank.img");
    std::fs::File::create(&blank)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let (code, r) = boot_test_under("tcg", &["--firmware", "uefi", "--timeout", "1"], &blank);
    expect(&r, "uefi", "unknown", "no-evidence");
    assert_eq!(code, Some(21), "{r:#}");
}

/// The device is only read: a read-only loop device (every write to it
/// fails in the kernel) boots, and its backing file is unchanged.
#[test]
fn read_only_loop_device_boots_and_is_unchanged() {
    let t = "read_only_loop_device_boots_and_is_unchanged";
    let Some(iso) = hybrid(t) else { return };
    if !common::require_root(t) || !common::require_tools(t, &["losetup"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let backing = dir.path().join("stick.img");
    std::fs::copy(&iso, &backing).unwrap();
    let before = sha256(&backing);
    let dev = common::LoopDevice::attach_with(&backing, &["--read-only"]);
    let ro = std::fs::read_to_string(format!(
        "/sys/block/{}/ro",
        dev.path().file_name().unwrap().to_string_lossy()
    ))
    .unwrap();
    assert_eq!(ro.trim(), "1", "the loop device is not read-only");
    let (code, r) = boot_test(&["--firmware", "bios"], dev.path());
    expect(&r, "bios", "boots", "powered-off");
    assert_eq!(code, Some(0), "{r:#}");
    drop(dev);
    assert_eq!(sha256(&backing), before);
}

/// Without QEMU, or without OVMF, the command says which Debian package
/// to install and exits 22, before booting anything.
#[test]
fn missing_qemu_or_ovmf_exits_22_naming_the_package() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("x.img");
    std::fs::write(&img, [0u8; 4096]).unwrap();
    let run = |envs: &[(&str, &str)]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_bootstick"));
        c.args(["boot-test", "--json"]).arg(&img);
        for (k, v) in envs {
            c.env(k, v);
        }
        let o = c.output().unwrap();
        (o.status.code(), common::json_result(&o.stdout))
    };
    let (code, r) = run(&[("PATH", "/nonexistent")]);
    assert_eq!(code, Some(22), "{r}");
    let e = r["error"].as_str().unwrap();
    assert!(
        e.contains("qemu-system-x86_64 is not installed (Debian package qemu-system-x86)"),
        "{e}"
    );
    if !qemu::require("missing_qemu_or_ovmf_exits_22_naming_the_package", &[]) {
        return;
    }
    let (code, r) = run(&[
        ("BOOTSTICK_OVMF_CODE", "/nonexistent/OVMF_CODE.fd"),
        ("BOOTSTICK_OVMF_VARS", "/nonexistent/OVMF_VARS.fd"),
    ]);
    assert_eq!(code, Some(22), "{r}");
    let e = r["error"].as_str().unwrap();
    assert!(
        e.contains("no OVMF firmware for uefi (Debian package ovmf"),
        "{e}"
    );
}

/// SIGINT during a boot stops it: exit 130, the `result` says
/// `interrupted`, and no QEMU is left running on the medium (every
/// process's command line in /proc is the oracle).
#[test]
fn sigint_during_a_boot_stops_it_and_kills_qemu() {
    use std::io::{BufRead, BufReader};
    let t = "sigint_during_a_boot_stops_it_and_kills_qemu";
    if !qemu::require(t, &[Firmware::SeaBios]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let spin = mbr_disk(dir.path(), "spin-interrupted.img", &[0xEB, 0xFE]);
    let qemu_on_medium = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
            .any(|c| {
                let c = String::from_utf8_lossy(&c);
                c.contains("qemu-system") && c.contains(spin.to_str().unwrap())
            })
    };
    let _slot = qemu::slot();
    let mut child = Command::new(env!("CARGO_BIN_EXE_bootstick"))
        .args(["boot-test", "--json", "--firmware", "bios"])
        .arg(&spin)
        .env("BOOTSTICK_QEMU_ACCEL", qemu::accel())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    stdout.read_line(&mut seen).unwrap();
    assert!(seen.contains("\"start\""), "{seen}");
    // The guest is up once QEMU runs on the medium.
    let started = std::time::Instant::now();
    while !qemu_on_medium() {
        assert!(started.elapsed().as_secs() < 30, "QEMU never started");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&child),
        rustix::process::Signal::INT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    seen.push_str(&rest);
    assert_eq!(out.status.code(), Some(130), "{seen}");
    let result = common::json_result(seen.as_bytes());
    assert_eq!(result["interrupted"], true, "{result}");
    assert_eq!(result["signal"], "SIGINT");
    assert!(
        !qemu_on_medium(),
        "QEMU still runs after the boot test ended"
    );
}

/// Runs `bootstick write --yes ARGS…` (holding a guest slot) and returns
/// the exit code and the JSON lines.
fn write(args: &[&std::ffi::OsStr], envs: &[(&str, &str)]) -> (Option<i32>, Vec<Value>) {
    let _slot = qemu::slot();
    let cache = tempfile::tempdir().unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_bootstick"));
    c.args(["write", "--yes", "--json"])
        .args(args)
        .env("BOOTSTICK_QEMU_ACCEL", qemu::accel())
        .env("XDG_CACHE_HOME", cache.path());
    for (k, v) in envs {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    (out.status.code(), common::json_lines(&out.stdout))
}

/// `write --boot-test`: the hybrid fixture is written, verified (`cmp`),
/// then booted from the written file under BIOS and UEFI (GRUB's markers);
/// a blank image is written and verified too, but the run fails with
/// exit 20 and says the write succeeded.
#[test]
fn write_boot_test_boots_what_was_written() {
    let t = "write_boot_test_boots_what_was_written";
    let Some(iso) = hybrid(t) else { return };
    if !common::require_tools(t, &["cmp"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let stick = dir.path().join("stick.img");
    let (code, lines) = write(
        &["--boot-test".as_ref(), iso.as_os_str(), stick.as_os_str()],
        &[],
    );
    let result = lines.last().unwrap();
    assert_eq!(code, Some(0), "{result:#}");
    assert_eq!(result["verified"], true);
    common::run(Command::new("cmp").arg(&iso).arg(&stick));
    let boot = &result["boot_test"];
    expect(boot, "bios", "boots", "powered-off");
    expect(boot, "uefi", "boots", "powered-off");
    let console = under(boot, "uefi")["console"].as_str().unwrap();
    assert!(
        console.contains(&qemu::fixture_marker(Firmware::Ovmf)),
        "{console}"
    );

    let blank = dir.path().join("blank.img");
    std::fs::File::create(&blank)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let out = dir.path().join("blank-stick.img");
    let (code, lines) = write(
        &["--boot-test".as_ref(), blank.as_os_str(), out.as_os_str()],
        &[],
    );
    let result = lines.last().unwrap();
    assert_eq!(code, Some(20), "{result:#}");
    assert_eq!(result["verified"], true, "{result:#}");
    assert!(
        result["error"]
            .as_str()
            .unwrap()
            .starts_with("written and verified, but "),
        "{result:#}"
    );
    expect(
        &result["boot_test"],
        "bios",
        "does-not-boot",
        "not-a-bootable-disk",
    );
    expect(
        &result["boot_test"],
        "uefi",
        "does-not-boot",
        "no-uefi-loader",
    );
}

/// `write --boot-test` refuses what it cannot do before writing: without
/// QEMU (exit 22), for one TARGET and for two; no target file is created.
#[test]
fn write_boot_test_refuses_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("x.img");
    common::pseudo_random_file(&img, 100_000, 7);
    let a = dir.path().join("a.img");
    let b = dir.path().join("b.img");
    let (code, lines) = write(
        &["--boot-test".as_ref(), img.as_os_str(), a.as_os_str()],
        &[("PATH", "/nonexistent")],
    );
    assert_eq!(code, Some(22), "{lines:?}");
    assert!(!a.exists(), "written without QEMU");
    let (code, lines) = write(
        &[
            "--boot-test".as_ref(),
            img.as_os_str(),
            a.as_os_str(),
            b.as_os_str(),
        ],
        &[("PATH", "/nonexistent")],
    );
    assert_eq!(code, Some(22), "{lines:?}");
    assert!(!a.exists() && !b.exists(), "written without QEMU");
}

/// Debian's signed Secure Boot chain (packages `shim-signed` and
/// `grub-efi-amd64-signed`): shim, signed by Microsoft's UEFI CA, and
/// the signed GRUB for CD images, signed by Debian's key that shim carries.
const SHIM: &str = "/usr/lib/shim/shimx64.efi.signed";
const MOK_MANAGER: &str = "/usr/lib/shim/mmx64.efi.signed";
const SIGNED_GRUB: &str = "/usr/lib/grub/x86_64-efi-signed/gcdx64.efi.signed";

/// What the signed fixture's own GRUB configuration prints, before the
/// platform: assembled from variables, so the text is not in the image.
const SIGNED_MARKER: &str = "BOOTSTICK-SIGNED-BOOTED-efi";

/// True when the signed binaries and the tools to master the fixture are
/// installed; otherwise skips (or fails, in strict mode).
fn require_signed_fixture(test: &str) -> bool {
    if !common::require_tools(test, &["xorriso", "mkfs.fat", "mmd", "mcopy", "cmp"])
        || !qemu::require(test, &[Firmware::Ovmf])
    {
        return false;
    }
    for f in [SHIM, MOK_MANAGER, SIGNED_GRUB] {
        if !Path::new(f).is_file() {
            return common::skip(
                test,
                &format!("needs {f} (Debian packages shim-signed, grub-efi-amd64-signed)"),
            );
        }
    }
    true
}

/// A Debian-shaped EFI-only ISO whose UEFI boot path lives only in its El
/// Torito EFI image, as `debian-cd` masters it: the image holds shim as
/// `EFI/BOOT/BOOTX64.EFI`, `grub` as `EFI/BOOT/grubx64.efi` (shim loads it
/// from its own directory), MokManager as `mmx64.efi` and
/// `EFI/debian/grub.cfg`; the ISO's tree holds `/.disk/info` and
/// `/boot/grub/grub.cfg`, which Debian's signed CD GRUB finds through its
/// built-in configuration (`search --file /.disk/info`, then
/// `$prefix/grub.cfg` with `prefix=($root)/boot/grub`). That config
/// prints [`SIGNED_MARKER`] on the serial console and powers off.
///
/// The El Torito image also holds a `boot/grub/grub.cfg` of its own that
/// prints something else: the ISO's tree must win that conflict.
fn debian_shaped_iso(name: &str, grub: &Path) -> PathBuf {
    let tree_cfg = "serial --unit=0 --speed=115200\n\
        terminal_output serial console\n\
        set m1=BOOTSTICK\nset m2=SIGNED-BOOTED\n\
        echo \"${m1}-${m2}-${grub_platform}\"\nhalt\n";
    let debian_cfg = "search --file --set=root /.disk/info\n\
        set prefix=($root)/boot/grub\nsource $prefix/grub.cfg\n";
    let shadowed_cfg = "echo \"the El Torito copy of boot/grub/grub.cfg ran\"\nhalt\n";
    let sum = |p: &Path| sha256(p);
    let recipe = format!(
        "shim {} mm {} grub {}\ntree {tree_cfg:?}\ndebian {debian_cfg:?}\nshadowed {shadowed_cfg:?}\n\
         mkfs.fat -C 8192; xorriso -as mkisofs -R -J -V DEBIAN_SHAPED -e efi.img -no-emul-boot",
        sum(Path::new(SHIM)),
        sum(Path::new(MOK_MANAGER)),
        sum(grub)
    );
    cached(name, "iso", &recipe, |out| {
        let dir = tempfile::tempdir_in(common::fixtures::fixture_dir()).unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("boot/grub")).unwrap();
        std::fs::create_dir_all(root.join(".disk")).unwrap();
        std::fs::write(root.join(".disk/info"), "bootstick Debian-shaped fixture\n").unwrap();
        std::fs::write(root.join("boot/grub/grub.cfg"), tree_cfg).unwrap();
        let img = root.join("boot/grub/efi.img");
        common::run(Command::new("mkfs.fat").arg("-C").arg(&img).arg("8192"));
        let mtools = |cmd: &str| {
            let mut c = Command::new(cmd);
            c.env("MTOOLS_SKIP_CHECK", "1").arg("-i").arg(&img);
            c
        };
        common::run(mtools("mmd").args([
            "::/EFI",
            "::/EFI/BOOT",
            "::/EFI/debian",
            "::/boot",
            "::/boot/grub",
        ]));
        let cfgs = dir.path().join("cfg");
        std::fs::create_dir_all(&cfgs).unwrap();
        std::fs::write(cfgs.join("debian.cfg"), debian_cfg).unwrap();
        std::fs::write(cfgs.join("shadowed.cfg"), shadowed_cfg).unwrap();
        for (from, to) in [
            (PathBuf::from(SHIM), "::/EFI/BOOT/BOOTX64.EFI"),
            (grub.to_owned(), "::/EFI/BOOT/grubx64.efi"),
            (PathBuf::from(MOK_MANAGER), "::/EFI/BOOT/mmx64.efi"),
            (cfgs.join("debian.cfg"), "::/EFI/debian/grub.cfg"),
            (cfgs.join("shadowed.cfg"), "::/boot/grub/grub.cfg"),
        ] {
            common::run(mtools("mcopy").arg(&from).arg(to));
        }
        common::run(
            Command::new("xorriso")
                .args([
                    "-as",
                    "mkisofs",
                    "-quiet",
                    "-R",
                    "-J",
                    "-V",
                    "DEBIAN_SHAPED",
                ])
                .args(["-e", "boot/grub/efi.img", "-no-emul-boot", "-o"])
                .arg(out)
                .arg(&root),
        );
    })
}

/// Writes `iso` as a built layout to a new image file in `dir`; returns it
/// and the `layout` object of the JSON start line.
fn write_layout(iso: &Path, dir: &Path) -> (PathBuf, Value) {
    let stick = dir.join("stick.img");
    let out = Command::new(env!("CARGO_BIN_EXE_bootstick"))
        .args(["write", "--yes", "--json"])
        .arg(iso)
        .arg(&stick)
        .output()
        .unwrap();
    let lines = common::json_lines(&out.stdout);
    assert!(out.status.success(), "{lines:#?}");
    assert_eq!(lines[0]["mode"], "layout", "{:#}", lines[0]);
    (stick, lines[0]["layout"].clone())
}

/// Copies `path` off the stick's FAT32 partition (at 1 MiB) with mtools.
fn fat_file(stick: &Path, path: &str, to: &Path) {
    common::run(
        Command::new("mcopy")
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-i")
            .arg(format!("{}@@1M", stick.display()))
            .arg(format!("::/{path}"))
            .arg(to),
    );
}

/// The signed chain, written as a built layout, boots as a USB stick under
/// OVMF with Secure Boot enforced and Microsoft's keys (shim verified by
/// the firmware, GRUB by shim) and under plain OVMF, to the marker its
/// configuration prints. This needs the El Torito image's whole tree on
/// the stick: with only `BOOTX64.EFI` copied (the code before), shim finds
/// no `grubx64.efi` and nothing prints the marker. The El Torito file the
/// ISO's tree also has is named in the layout report, and the tree's copy
/// is the one GRUB ran.
#[test]
fn shim_signed_layout_boots_with_secure_boot_enforced_and_off() {
    let t = "shim_signed_layout_boots_with_secure_boot_enforced_and_off";
    if !require_signed_fixture(t) {
        return;
    }
    let iso = debian_shaped_iso("debian-shaped-signed", Path::new(SIGNED_GRUB));
    let dir = tempfile::tempdir().unwrap();
    let (stick, layout) = write_layout(&iso, dir.path());
    let added: Vec<&str> = layout["added_files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        added,
        [
            "EFI/BOOT/BOOTX64.EFI",
            "EFI/BOOT/grubx64.efi",
            "EFI/BOOT/mmx64.efi",
            "EFI/debian/grub.cfg",
        ],
        "{layout:#}"
    );
    assert_eq!(layout["added_loaders"][0]["path"], "EFI/BOOT/BOOTX64.EFI");
    assert_eq!(
        layout["el_torito_conflicts"],
        serde_json::json!([{"path": "boot/grub/grub.cfg", "kept": "iso-tree", "same_content": false}])
    );
    // mtools and cmp: the signed binaries are on the FAT32 partition, byte
    // for byte.
    for (on_stick, package_file) in [
        ("EFI/BOOT/BOOTX64.EFI", SHIM),
        ("EFI/BOOT/grubx64.efi", SIGNED_GRUB),
        ("EFI/BOOT/mmx64.efi", MOK_MANAGER),
    ] {
        let copy = dir.path().join("copy.efi");
        let _ = std::fs::remove_file(&copy);
        fat_file(&stick, on_stick, &copy);
        common::run(Command::new("cmp").arg(&copy).arg(package_file));
    }
    let (code, result) = boot_test(&["--firmware", "uefi,uefi-secure-boot"], &stick);
    for fw in ["uefi", "uefi-secure-boot"] {
        expect(&result, fw, "boots", "powered-off");
        let console = under(&result, fw)["console"].as_str().unwrap();
        assert!(console.contains(SIGNED_MARKER), "{fw}: {console}");
        assert!(!console.contains("El Torito copy"), "{fw}: {console}");
    }
    assert_eq!(code, Some(0), "{result:#}");
}

/// The negative control: the same ISO shape with an unsigned GRUB
/// (`grub-mkstandalone`) behind the signed shim. Secure Boot OVMF starts
/// shim (Microsoft-signed), and shim refuses GRUB: "Verification failed:
/// (0x1A) Security Violation", and the marker of the unsigned GRUB never
/// appears; without Secure Boot the same stick boots to that marker.
#[test]
fn unsigned_grub_behind_shim_is_refused_under_secure_boot_only() {
    let t = "unsigned_grub_behind_shim_is_refused_under_secure_boot_only";
    if !require_signed_fixture(t) || !common::require_tools(t, qemu::STANDALONE_TOOLS) {
        return;
    }
    let unsigned = qemu::grub_efi_standalone();
    let iso = debian_shaped_iso("debian-shaped-unsigned-grub", &unsigned);
    let dir = tempfile::tempdir().unwrap();
    let (stick, layout) = write_layout(&iso, dir.path());
    assert_eq!(layout["added_files"][1]["path"], "EFI/BOOT/grubx64.efi");
    let (code, result) = boot_test(&["--firmware", "uefi,uefi-secure-boot"], &stick);
    expect(&result, "uefi", "boots", "powered-off");
    let marker = qemu::fixture_marker(Firmware::Ovmf);
    let console = under(&result, "uefi")["console"].as_str().unwrap();
    assert!(console.contains(&marker), "{console}");
    expect(&result, "uefi-secure-boot", "does-not-boot", "shim-refused");
    let sb = under(&result, "uefi-secure-boot");
    assert!(
        evidence(&result, "uefi-secure-boot")
            .contains("Verification failed: (0x1A) Security Violation"),
        "{sb:#}"
    );
    assert!(
        !sb["console"]
            .as_str()
            .unwrap()
            .contains(qemu::FIXTURE_MARKER),
        "{sb:#}"
    );
    assert_eq!(code, Some(20), "{result:#}");
}

/// Debian's `ipxe.iso` (package `ipxe`): an isohybrid MBR with one active
/// type-0x17 entry over the whole image and the El Torito EFI image
/// `/efi.img` inside it, with no entry of its own.
const IPXE_ISO: &str = "/usr/lib/ipxe/ipxe.iso";

/// The text on the VGA screen (the 80×25 text buffer at 0xB8000, saved
/// with the QEMU monitor's `pmemsave`) of `disk` booted as a USB stick
/// under SeaBIOS, once it shows `want` or after `timeout`. For loaders
/// that print only to the screen (iPXE's BIOS build, ISOLINUX).
fn bios_screen_text(disk: &Path, want: &str, timeout: std::time::Duration) -> String {
    use std::io::Write;
    let _slot = qemu::slot();
    let dir = tempfile::tempdir().unwrap();
    let monitor = dir.path().join("monitor.sock");
    let dump = dir.path().join("vga.bin");
    let mut child = Command::new(qemu::QEMU)
        .args([
            "-nodefaults",
            "-vga",
            "std",
            "-display",
            "none",
            "-no-reboot",
        ])
        .args(["-m", "256", "-nic", "none", "-accel", qemu::accel()])
        .arg("-monitor")
        .arg(format!("unix:{},server=on,wait=off", monitor.display()))
        .arg("-drive")
        .arg(format!(
            "file={},format=raw,if=none,id=stick,snapshot=on,readonly=on",
            disk.display().to_string().replace(',', ",,")
        ))
        .args(["-device", "qemu-xhci,id=xhci"])
        .args(["-device", "usb-storage,bus=xhci.0,drive=stick,removable=on"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let mut text = String::new();
    while started.elapsed() < timeout {
        std::thread::sleep(std::time::Duration::from_millis(500));
        let Ok(mut sock) = std::os::unix::net::UnixStream::connect(&monitor) else {
            continue;
        };
        let _ = std::fs::remove_file(&dump);
        let _ = writeln!(sock, "pmemsave 0xb8000 4000 \"{}\"", dump.display());
        // The monitor answers after saving; reading its echo waits for it.
        sock.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let mut buf = [0u8; 4096];
        let mut got = Vec::new();
        while !dump.exists() || got.windows(7).all(|w| w != b"pmemsav") {
            match std::io::Read::read(&mut sock, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        let Ok(cells) = std::fs::read(&dump) else {
            continue;
        };
        // Character, attribute, character, …: 25 rows of 80 cells.
        text = cells
            .chunks(160)
            .map(|row| {
                let line: String = row.iter().step_by(2).map(|&c| c as char).collect();
                line.trim_end().to_owned() + "\n"
            })
            .collect();
        if text.contains(want) {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    text
}

/// `sfdisk --json` of `disk`: its partitions as (start, size, type,
/// bootable).
fn sfdisk_partitions(disk: &Path) -> Vec<(u64, u64, String, bool)> {
    let out = common::run(Command::new("sfdisk").arg("--json").arg(disk));
    let v: Value = serde_json::from_str(&out).unwrap();
    v["partitiontable"]["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["start"].as_u64().unwrap(),
                p["size"].as_u64().unwrap(),
                p["type"].as_str().unwrap().to_owned(),
                p["bootable"].as_bool().unwrap_or(false),
            )
        })
        .collect()
}

/// Debian's `ipxe.iso` boots a byte copy only under BIOS: its El Torito
/// EFI image has no MBR entry. `write` turns the whole-image entry into
/// type 0x00 (range and active flag kept) and adds a type-0xEF entry over
/// the EFI image — `sfdisk --json` is the oracle for the table, the El
/// Torito LBA and size as `xorriso -report_el_torito` gives them for the
/// new entry, `cmp -l` shows that only partition-table bytes differ — and
/// the stick then boots iPXE under OVMF (its banner on the serial console)
/// and still under SeaBIOS (its banner on the VGA screen). `--raw` copies
/// the exact bytes (UEFI `skipped`: no FAT partition), `compare` agrees
/// with `write` and tells the two apart, and `inspect` announces it.
#[test]
fn ipxe_iso_gets_an_esp_entry_and_boots_under_uefi_and_still_under_bios() {
    let t = "ipxe_iso_gets_an_esp_entry_and_boots_under_uefi_and_still_under_bios";
    if !common::require_tools(t, &["sfdisk", "cmp", "xorriso"]) || !qemu::require(t, &Firmware::ALL)
    {
        return;
    }
    if !Path::new(IPXE_ISO).is_file() {
        common::skip(t, &format!("needs {IPXE_ISO} (Debian package ipxe)"));
        return;
    }
    let iso = Path::new(IPXE_ISO);
    let iso_len = std::fs::metadata(iso).unwrap().len();
    // The oracle for where the EFI image is: xorriso's El Torito report
    // (LBA in 2048-byte blocks, load size in 512-byte sectors).
    let report = common::run(
        Command::new("xorriso")
            .args(["-indev"])
            .arg(iso)
            .args(["-report_el_torito", "plain"]),
    );
    let efi: Vec<u64> = report
        .lines()
        .find(|l| l.starts_with("El Torito boot img") && l.contains(" UEFI "))
        .unwrap_or_else(|| panic!("no UEFI boot image in {report}"))
        .split_whitespace()
        .rev()
        .take(2)
        .map(|n| n.parse().unwrap())
        .collect();
    let (efi_start, efi_sectors) = (efi[0] * 4, efi[1]);
    let before = sfdisk_partitions(iso);
    assert_eq!(before, [(0, iso_len / 512, "17".to_owned(), true)]);

    let dir = tempfile::tempdir().unwrap();
    let stick = dir.path().join("ipxe-stick.img");
    let out = Command::new(env!("CARGO_BIN_EXE_bootstick"))
        .args(["write", "--yes", "--json"])
        .arg(iso)
        .arg(&stick)
        .output()
        .unwrap();
    let lines = common::json_lines(&out.stdout);
    assert!(out.status.success(), "{lines:#?}");
    let start = &lines[0];
    assert_eq!(start["mode"], "raw");
    assert_eq!(
        start["esp_entry"],
        serde_json::json!({
            "hidden_entry": 1, "hidden_type": 0x17, "hidden_active": true,
            "esp_entry": 2, "esp_start_lba": efi_start, "esp_sectors": efi_sectors,
            "efi_image": "/efi.img"
        }),
        "{start:#}"
    );
    assert!(
        lines.iter().any(|l| l["event"] == "warning"
            && l["message"]
                .as_str()
                .is_some_and(|m| m.contains("entry 2 (type 0xef"))),
        "{lines:#?}"
    );
    assert_eq!(
        sfdisk_partitions(&stick),
        [
            (0, iso_len / 512, "0".to_owned(), true),
            (efi_start, efi_sectors, "ef".to_owned(), false)
        ]
    );
    assert_eq!(std::fs::metadata(&stick).unwrap().len(), iso_len);
    // `cmp -l` lists 1-based offsets of differing bytes: all in the table.
    let diff = Command::new("cmp")
        .arg("-l")
        .arg(iso)
        .arg(&stick)
        .output()
        .unwrap();
    let offsets: Vec<u64> = String::from_utf8_lossy(&diff.stdout)
        .lines()
        .map(|l| l.split_whitespace().next().unwrap().parse::<u64>().unwrap() - 1)
        .collect();
    assert!(!offsets.is_empty());
    assert!(
        offsets.iter().all(|o| (446..510).contains(o)),
        "{offsets:?}"
    );

    // `compare` rebuilds the same plan; with --raw it expects the exact
    // image and names a byte of the table.
    let compare = |extra: &[&str], target: &Path| {
        let o = Command::new(env!("CARGO_BIN_EXE_bootstick"))
            .arg("compare")
            .args(extra)
            .arg(iso)
            .arg(target)
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    assert_eq!(compare(&[], &stick).0, Some(0));
    let (code, said) = compare(&["--raw"], &stick);
    assert_eq!(code, Some(6), "{said}");
    let raw = dir.path().join("ipxe-raw.img");
    let w = Command::new(env!("CARGO_BIN_EXE_bootstick"))
        .args(["write", "--yes", "--raw"])
        .arg(iso)
        .arg(&raw)
        .output()
        .unwrap();
    assert!(w.status.success(), "{w:?}");
    common::run(Command::new("cmp").arg(iso).arg(&raw));
    assert_eq!(compare(&["--raw"], &raw).0, Some(0));
    assert_eq!(compare(&[], &raw).0, Some(6));
    let inspect = Command::new(env!("CARGO_BIN_EXE_bootstick"))
        .args(["inspect", "--json"])
        .arg(iso)
        .output()
        .unwrap();
    assert_eq!(
        common::json_result(&inspect.stdout)["esp_entry"],
        start["esp_entry"]
    );

    // UEFI: the byte copy is skipped (no FAT partition: real PCs will not
    // boot it), the stick boots iPXE, whose banner is on the serial console.
    let (_, r) = boot_test(&["--firmware", "uefi"], &raw);
    expect(&r, "uefi", "skipped", "no-fat-loader");
    let (code, r) = boot_test(&["--firmware", "uefi"], &stick);
    expect(&r, "uefi", "boots", "kept-running");
    let console = under(&r, "uefi")["console"].as_str().unwrap();
    assert!(
        console.contains("iPXE initialising devices...ok")
            && console.contains("Open Source Network Boot Firmware"),
        "{console}"
    );
    assert_eq!(code, Some(0), "{r:#}");
    // BIOS: SeaBIOS runs the isohybrid MBR code, ISOLINUX loads iPXE, which
    // prints its banner on the screen (and, without a network card, hands
    // back to the BIOS).
    let screen = bios_screen_text(
        &stick,
        "iPXE initialising devices...ok",
        std::time::Duration::from_secs(90),
    );
    for want in [
        "Booting from Hard Disk",
        "ISOLINUX",
        "iPXE initialising devices...ok",
        "Open Source Network Boot Firmware",
    ] {
        assert!(
            screen.contains(want),
            "no {want:?} on the screen:\n{screen}"
        );
    }
}

/// The ESP entry is added only when it is safe: a copy of `ipxe.iso`
/// whose MBR has no free slot, or a second entry over the EFI image, or
/// is a GPT disk's protective MBR, is copied byte for byte (`inspect` says
/// no entry, `write` output equals the image).
#[test]
fn ipxe_shape_is_left_alone_when_a_condition_fails() {
    let t = "ipxe_shape_is_left_alone_when_a_condition_fails";
    if !common::require_tools(t, &["cmp"]) {
        return;
    }
    if !Path::new(IPXE_ISO).is_file() {
        common::skip(t, &format!("needs {IPXE_ISO} (Debian package ipxe)"));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let entry = |kind: u8, start: u32, sectors: u32| {
        let mut e = [0u8; 16];
        e[4] = kind;
        e[8..12].copy_from_slice(&start.to_le_bytes());
        e[12..16].copy_from_slice(&sectors.to_le_bytes());
        e
    };
    type Entries = Vec<(usize, [u8; 16])>;
    let cases: [(&str, Entries); 3] = [
        (
            "no-free-slot",
            vec![
                (2, entry(0x83, 3000, 8)),
                (3, entry(0x83, 3100, 8)),
                (4, entry(0x83, 3200, 8)),
            ],
        ),
        ("overlapping-entry", vec![(2, entry(0x83, 200, 8))]),
        ("protective-mbr", vec![(2, entry(0xEE, 1, 100))]),
    ];
    for (name, entries) in cases {
        let img = dir.path().join(format!("{name}.iso"));
        let mut bytes = std::fs::read(IPXE_ISO).unwrap();
        for (slot, e) in entries {
            let at = 446 + 16 * (slot - 1);
            bytes[at..at + 16].copy_from_slice(&e);
        }
        std::fs::write(&img, &bytes).unwrap();
        let inspect = Command::new(env!("CARGO_BIN_EXE_bootstick"))
            .args(["inspect", "--json"])
            .arg(&img)
            .output()
            .unwrap();
        let r = common::json_result(&inspect.stdout);
        assert!(r["esp_entry"].is_null(), "{name}: {r:#}");
        let stick = dir.path().join(format!("{name}.img"));
        let w = Command::new(env!("CARGO_BIN_EXE_bootstick"))
            .args(["write", "--yes"])
            .arg(&img)
            .arg(&stick)
            .output()
            .unwrap();
        assert!(w.status.success(), "{name}: {w:?}");
        common::run(Command::new("cmp").arg(&img).arg(&stick));
    }
}

/// Runs `bootstick ARGS…` and returns the exit code, stdout and stderr.
fn bootstick(args: &[&std::ffi::OsStr]) -> (Option<i32>, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_bootstick"))
        .args(args)
        .output()
        .unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Issue 12, "Saying what happened": a byte copy that boots under BIOS
/// only (ipxe.iso's EFI image is only in El Torito) is said before
/// anything is written — before the first phase line for people, right
/// after `start` in JSON — naming `--layout`; `--layout` then builds a
/// FAT32 layout of the hybrid ISO (`sfdisk --json`: GPT with one basic
/// data partition; mtools: its `EFI/BOOT/BOOTX64.EFI` is the El Torito
/// image's, extracted with xorriso and compared with `cmp`), says the
/// stick loses BIOS boot, and boots iPXE under OVMF. `--layout` with
/// `--raw`, or of a disk image, is refused and writes nothing.
#[test]
fn bios_only_byte_copy_is_said_before_writing_and_layout_overrides_it() {
    let t = "bios_only_byte_copy_is_said_before_writing_and_layout_overrides_it";
    if !common::require_tools(t, &["sfdisk", "cmp", "xorriso", "mcopy"])
        || !qemu::require(t, &[Firmware::Ovmf])
    {
        return;
    }
    if !Path::new(IPXE_ISO).is_file() {
        common::skip(t, &format!("needs {IPXE_ISO} (Debian package ipxe)"));
        return;
    }
    let iso = Path::new(IPXE_ISO);
    let dir = tempfile::tempdir().unwrap();
    let os = |p: &Path| p.as_os_str().to_owned();
    let bios_only = "a byte copy of it boots under BIOS only";
    let names_layout = "--layout builds a FAT32 layout instead, which boots under UEFI";

    // --raw: the exact bytes, and the warning (an ESP entry was possible).
    let raw = dir.path().join("raw.img");
    let (code, _, err) = bootstick(&[
        "write".as_ref(),
        "--yes".as_ref(),
        "--raw".as_ref(),
        iso.as_os_str(),
        &os(&raw),
    ]);
    assert_eq!(code, Some(0), "{err}");
    let warned = err
        .find(bios_only)
        .unwrap_or_else(|| panic!("no BIOS-only warning: {err}"));
    assert!(err.contains(names_layout), "{err}");
    assert!(
        err.contains("without --raw, write would add a partition entry"),
        "{err}"
    );
    let first_phase = err.find("write: started").expect("no write phase line");
    assert!(warned < first_phase, "warned after writing started: {err}");
    common::run(Command::new("cmp").arg(iso).arg(&raw));

    // No free MBR slot: the default byte copy gets no ESP entry, and says
    // so in JSON before any progress.
    let mut bytes = std::fs::read(IPXE_ISO).unwrap();
    for slot in 2..=4usize {
        let at = 446 + 16 * (slot - 1);
        bytes[at + 4] = 0x83;
        bytes[at + 8..at + 12].copy_from_slice(&(3000 + 100 * slot as u32).to_le_bytes());
        bytes[at + 12..at + 16].copy_from_slice(&8u32.to_le_bytes());
    }
    let full = dir.path().join("no-free-slot.iso");
    std::fs::write(&full, &bytes).unwrap();
    let copy = dir.path().join("no-free-slot.img");
    let (code, out, err) = bootstick(&[
        "write".as_ref(),
        "--yes".as_ref(),
        "--json".as_ref(),
        os(&full).as_ref(),
        &os(&copy),
    ]);
    assert_eq!(code, Some(0), "{err}");
    let lines = common::json_lines(out.as_bytes());
    assert_eq!(lines[0]["mode"], "raw");
    assert!(lines[0]["esp_entry"].is_null(), "{:#}", lines[0]);
    assert_eq!(lines[1]["event"], "warning", "{lines:#?}");
    let m = lines[1]["message"].as_str().unwrap();
    assert!(m.contains(bios_only) && m.contains(names_layout), "{m}");
    assert!(!m.contains("without --raw"), "{m}");
    common::run(Command::new("cmp").arg(&full).arg(&copy));

    // --layout: a built layout of the hybrid ISO.
    let stick = dir.path().join("layout.img");
    let (code, out, err) = bootstick(&[
        "write".as_ref(),
        "--yes".as_ref(),
        "--json".as_ref(),
        "--layout".as_ref(),
        iso.as_os_str(),
        &os(&stick),
    ]);
    assert_eq!(code, Some(0), "{err}");
    let lines = common::json_lines(out.as_bytes());
    assert_eq!(lines[0]["mode"], "layout", "{:#}", lines[0]);
    assert_eq!(lines[0]["decision"]["mode"], "raw");
    assert!(
        lines.iter().any(|l| l["event"] == "warning"
            && l["message"].as_str().is_some_and(
                |m| m.contains("as asked (--layout): the stick will boot under UEFI only")
            )),
        "{lines:#?}"
    );
    let table: Value = serde_json::from_str(&common::run(
        Command::new("sfdisk").arg("--json").arg(&stick),
    ))
    .unwrap();
    let table = &table["partitiontable"];
    assert_eq!(table["label"], "gpt", "{table:#}");
    let parts = table["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 1, "{table:#}");
    assert_eq!(parts[0]["start"], 2048);
    assert_eq!(parts[0]["type"], "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7");
    // The loader on the stick is the one in the El Torito image /efi.img.
    let efi_img = dir.path().join("efi.img");
    common::run(
        Command::new("xorriso")
            .args(["-osirrox", "on", "-indev"])
            .arg(iso)
            .args(["-extract", "/efi.img"])
            .arg(&efi_img),
    );
    let want = dir.path().join("want.efi");
    common::run(
        Command::new("mcopy")
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-i")
            .arg(&efi_img)
            .arg("::/EFI/BOOT/BOOTX64.EFI")
            .arg(&want),
    );
    let got = dir.path().join("got.efi");
    fat_file(&stick, "EFI/BOOT/BOOTX64.EFI", &got);
    common::run(Command::new("cmp").arg(&want).arg(&got));
    // compare agrees with what write --layout put there.
    let (code, _, err) = bootstick(&[
        "compare".as_ref(),
        "--layout".as_ref(),
        iso.as_os_str(),
        &os(&stick),
    ]);
    assert_eq!(code, Some(0), "{err}");
    // The overridden layout boots iPXE under OVMF (its banner on the
    // serial console).
    let (code, r) = boot_test(&["--firmware", "uefi"], &stick);
    expect(&r, "uefi", "boots", "kept-running");
    let console = under(&r, "uefi")["console"].as_str().unwrap();
    assert!(
        console.contains("iPXE initialising devices...ok"),
        "{console}"
    );
    assert_eq!(code, Some(0), "{r:#}");

    // Refused, nothing written: both overrides, and a disk image.
    let none = dir.path().join("none.img");
    let (code, _, err) = bootstick(&[
        "write".as_ref(),
        "--yes".as_ref(),
        "--raw".as_ref(),
        "--layout".as_ref(),
        iso.as_os_str(),
        &os(&none),
    ]);
    assert_eq!(code, Some(2), "{err}");
    let disk = mbr_disk(dir.path(), "disk.img", &[0xEB, 0xFE]);
    let mut d = std::fs::read(&disk).unwrap();
    d[446 + 4] = 0x83;
    d[446 + 8] = 1;
    d[446 + 12] = 8;
    std::fs::write(&disk, &d).unwrap();
    let (code, _, err) = bootstick(&[
        "write".as_ref(),
        "--yes".as_ref(),
        "--layout".as_ref(),
        os(&disk).as_ref(),
        &os(&none),
    ]);
    assert_eq!(code, Some(3), "{err}");
    assert!(
        err.contains("no ISO 9660 or UDF file tree") && err.contains("drop --layout"),
        "{err}"
    );
    assert!(!none.exists(), "written although refused");
}

/// `write --boot-test` with several TARGETs and its own `--firmware`,
/// `--timeout` and `--screenshot`: a `jmp $` MBR written to two files is
/// booted from each under SeaBIOS only (one result per target, BIOS and
/// nothing else), each `kept-running` with its screen saved under its own
/// directory (`file(1)`: PNG), both `cmp`-equal to the image; `--firmware
/// uefi --timeout 1` (TCG) on a blank image is `unknown` after a verified
/// write (exit 21); the boot flags without `--boot-test` are refused (exit
/// 2, nothing written).
#[test]
fn write_boot_test_boots_several_targets_with_its_own_flags() {
    let t = "write_boot_test_boots_several_targets_with_its_own_flags";
    if !common::require_tools(t, &["cmp", "file"]) || !qemu::require(t, &Firmware::ALL) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let spin = mbr_disk(dir.path(), "spin.img", &[0xEB, 0xFE]);
    let (a, b) = (dir.path().join("a.img"), dir.path().join("b.img"));
    let shots = dir.path().join("shots");
    let (code, lines) = write(
        &[
            "--boot-test".as_ref(),
            "--firmware".as_ref(),
            "bios".as_ref(),
            "--screenshot".as_ref(),
            shots.as_os_str(),
            spin.as_os_str(),
            a.as_os_str(),
            b.as_os_str(),
        ],
        &[],
    );
    let result = lines.last().unwrap();
    assert_eq!(code, Some(0), "{result:#}");
    let targets = result["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 2, "{result:#}");
    for (entry, path, name) in [(&targets[0], &a, "a.img"), (&targets[1], &b, "b.img")] {
        assert_eq!(entry["ok"], true, "{entry:#}");
        assert_eq!(entry["verified"], true, "{entry:#}");
        let boot = &entry["boot_test"];
        assert_eq!(boot["results"].as_array().unwrap().len(), 1, "{boot:#}");
        expect(boot, "bios", "boots", "kept-running");
        let png = shots.join(name).join("bios.png");
        assert_eq!(under(boot, "bios")["screenshot"], png.to_str().unwrap());
        let kind = common::run(Command::new("file").arg("-b").arg(&png));
        assert!(kind.starts_with("PNG image data"), "{kind}");
        common::run(Command::new("cmp").arg(&spin).arg(path));
    }
    // Each target's own `target_result` carries its boot test too.
    let per_target: Vec<&Value> = lines
        .iter()
        .filter(|l| l["event"] == "target_result")
        .collect();
    assert_eq!(per_target.len(), 2);
    assert!(per_target
        .iter()
        .all(|l| l["boot_test"]["results"][0]["verdict"] == "boots"));

    let blank = dir.path().join("blank.img");
    std::fs::File::create(&blank)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let c = dir.path().join("c.img");
    let (code, lines) = write(
        &[
            "--boot-test".as_ref(),
            "--firmware".as_ref(),
            "uefi".as_ref(),
            "--timeout".as_ref(),
            "1".as_ref(),
            blank.as_os_str(),
            c.as_os_str(),
        ],
        &[("BOOTSTICK_QEMU_ACCEL", "tcg")],
    );
    let result = lines.last().unwrap();
    assert_eq!(code, Some(21), "{result:#}");
    assert_eq!(result["verified"], true, "{result:#}");
    assert_eq!(result["boot_test"]["results"].as_array().unwrap().len(), 1);
    expect(&result["boot_test"], "uefi", "unknown", "no-evidence");
    assert!(
        result["error"]
            .as_str()
            .unwrap()
            .starts_with("written and verified, but "),
        "{result:#}"
    );

    for flag in [
        &["--firmware", "bios"][..],
        &["--timeout", "5"],
        &["--screenshot", "shots"],
    ] {
        let d = dir.path().join("d.img");
        let out = Command::new(env!("CARGO_BIN_EXE_bootstick"))
            .args(["write", "--yes"])
            .args(flag)
            .arg(&spin)
            .arg(&d)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{flag:?}: {out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("--boot-test"),
            "{flag:?}: {out:?}"
        );
        assert!(!d.exists(), "{flag:?}: written");
    }
}

/// Issue 17's in-guest test: in the test-bed guest, `bootstick write
/// --boot-test --firmware bios` writes the grub-hybrid fixture onto an
/// emulated USB stick (its by-id link) and boots that stick — the guest's
/// own `/dev/sda`, read-only — in QEMU inside the guest (nested TCG, the
/// host's QEMU bundled by `guest::qemu_bundle`): verified, `boots` under
/// SeaBIOS, the screen saved as a PNG when the loader was still running.
/// The stick's backing file then holds the ISO (`cmp` on the host). UEFI
/// is not booted here: nested OVMF takes about a minute (docs/testing.md).
#[test]
fn write_boot_test_boots_an_emulated_usb_stick_inside_the_guest() {
    let t = "write_boot_test_boots_an_emulated_usb_stick_inside_the_guest";
    let Some(iso) = hybrid(t) else { return };
    if !common::guest::require(t) || !common::require_tools(t, &["tar", "cmp"]) {
        return;
    }
    let bundle = common::guest::qemu_bundle();
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("stick.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let stick = common::guest::Stick::new(&img, "BSTBOOT01");
    let script = format!(
        r#"
# The nested guest's 512 MiB are mapped, not used: let the mapping succeed.
echo 1 > /proc/sys/vm/overcommit_memory
tar xf qemu.tar -C /tmp
export PATH=/tmp/q/bin:$PATH
echo "@@ write"
BOOTSTICK_QEMU_ACCEL=tcg XDG_CACHE_HOME=/tmp/cache bootstick write --yes --json --boot-test --firmware bios --screenshot /tmp/shots grub.iso {byid} 2>/dev/null
echo "@@ status $?"
echo "@@ png"
head -c 8 /tmp/shots/bios.png 2>/dev/null | od -An -tx1
echo "@@ end"
"#,
        byid = stick.by_id()
    );
    let started = std::time::Instant::now();
    let out = common::guest::Guest::new(&script)
        .file("qemu.tar", &bundle)
        .file("grub.iso", &iso)
        .stick(stick)
        .run();
    out.assert_success();
    eprintln!(
        "guest with the nested boot: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(out.output.contains("@@ status 0"), "{out}");
    let lines = common::json_lines(out.section("write").as_bytes());
    let result = lines.last().unwrap();
    assert_eq!(result["verified"], true, "{result:#}");
    let boot = &result["boot_test"];
    assert_eq!(boot["accel"], "tcg");
    let bios = under(boot, "bios");
    assert_eq!(bios["verdict"], "boots", "{bios:#}");
    assert!(
        evidence(boot, "bios").contains("Booting from 0000:7c00"),
        "{bios:#}"
    );
    eprintln!(
        "nested SeaBIOS: loader after {} s, verdict after {} s ({})",
        bios["loader_started_after"], bios["seconds"], bios["reason"]
    );
    match bios["reason"].as_str() {
        // GRUB still loading: the screen was saved, unless GRUB powered the
        // machine off in the moment between the verdict and the screendump
        // (then the result says why there is none).
        Some("kept-running") if bios["screenshot"].is_null() => {
            assert!(bios["screenshot_error"].is_string(), "{bios:#}")
        }
        Some("kept-running") => {
            assert_eq!(bios["screenshot"], "/tmp/shots/bios.png", "{bios:#}");
            assert_eq!(
                out.section("png").trim(),
                "89 50 4e 47 0d 0a 1a 0a",
                "{bios:#}\n{out}"
            )
        }
        // GRUB got to its marker and powered off: no screen left.
        Some("powered-off") => {
            let console = bios["console"].as_str().unwrap();
            assert!(
                console.contains(&qemu::fixture_marker(Firmware::SeaBios)),
                "{console}"
            );
        }
        other => panic!("{other:?}: {bios:#}"),
    }
    let iso_len = std::fs::metadata(&iso).unwrap().len();
    common::run(
        Command::new("cmp")
            .arg("-n")
            .arg(iso_len.to_string())
            .arg(&iso)
            .arg(&img),
    );
}
