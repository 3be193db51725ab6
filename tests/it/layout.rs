//! Built layouts of non-hybrid ISOs (`layout::from_iso`, `write` in layout
//! mode). The ISO is mastered at test time by xorriso WITHOUT a hybrid MBR:
//! nested directories, long names, a few MiB of pseudo-random files, and an
//! El Torito EFI boot image (a FAT image made by mkfs.fat + mtools) holding a
//! standalone GRUB, while the ISO tree itself has no /EFI/BOOT. Oracles:
//! `sgdisk -v`, `sfdisk --json`, `fsck.fat -n`, `mcopy -s` + `diff -r`
//! against `7z x` of the ISO, `cmp` of the loader, and OVMF booting the
//! written stick.

use crate::common;

use common::fixtures::cached;
use common::qemu::{self, Boot, Firmware};
use std::path::{Path, PathBuf};
use std::process::Command;

const TOOLS: &[&str] = &[
    "xorriso", "mkfs.fat", "mmd", "mcopy", "sgdisk", "sfdisk", "fsck.fat", "7z", "diff",
];

/// The non-hybrid ISO with an EFI-only El Torito image, and the loader in it.
fn fixture() -> (PathBuf, PathBuf) {
    let efi = qemu::grub_efi_standalone();
    let efi_bytes = std::fs::read(&efi).unwrap();
    let efi_hash: String = {
        use sha2::{Digest, Sha256};
        hex::encode(&Sha256::digest(&efi_bytes)[..8])
    };
    let recipe = format!(
        "efi={efi_hash} tree(a/b/c/d, long names, 3 random files 1+2+1.5 MiB) \
         mkfs.fat -C; xorriso -as mkisofs -R -J -V BSTK_Layout_Test -e efiboot.img -no-emul-boot"
    );
    let iso = cached("layout-nonhybrid", "iso", &recipe, |out| {
        let dir = tempfile::tempdir_in(common::fixtures::fixture_dir()).unwrap();
        let root = dir.path().join("root");
        let deep = root.join("alpha/beta/gamma/delta");
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::create_dir_all(root.join("docs/Manuals and Guides")).unwrap();
        common::pseudo_random_file(&root.join("alpha/random-1.bin"), 1 << 20, 1);
        common::pseudo_random_file(&deep.join("A rather long file name.data"), 2 << 20, 2);
        common::pseudo_random_file(
            &root.join("docs/Manuals and Guides/Installation Guide (English).pdf"),
            (3 << 19) + 17,
            3,
        );
        std::fs::write(root.join("README.txt"), "a non-hybrid test ISO\n").unwrap();
        std::fs::write(root.join("alpha/beta/empty"), "").unwrap();
        // The El Torito EFI image: a FAT volume with EFI/BOOT/BOOTX64.EFI.
        let img = root.join("efiboot.img");
        let kib = efi_bytes.len() as u64 / 1024 + 1024;
        common::run(
            Command::new("mkfs.fat")
                .arg("-C")
                .arg(&img)
                .arg(kib.to_string()),
        );
        common::run(
            Command::new("mmd")
                .env("MTOOLS_SKIP_CHECK", "1")
                .arg("-i")
                .arg(&img)
                .args(["::/EFI", "::/EFI/BOOT"]),
        );
        common::run(
            Command::new("mcopy")
                .env("MTOOLS_SKIP_CHECK", "1")
                .arg("-i")
                .arg(&img)
                .arg(&efi)
                .arg("::/EFI/BOOT/BOOTX64.EFI"),
        );
        common::run(
            Command::new("xorriso")
                .args([
                    "-as",
                    "mkisofs",
                    "-quiet",
                    "-R",
                    "-J",
                    "-V",
                    "BSTK_Layout_Test",
                ])
                .args(["-e", "efiboot.img", "-no-emul-boot", "-o"])
                .arg(out)
                .arg(&root),
        );
    });
    (iso, efi)
}

fn mtools(cmd: &str) -> Command {
    let mut c = Command::new(cmd);
    c.env("MTOOLS_SKIP_CHECK", "1");
    c
}

/// Checks a written stick (image file or device) against the ISO: table,
/// filesystem, tree, loader. Returns nothing; panics with the oracle's words.
fn check_stick(stick: &Path, iso: &Path, efi: &Path, work: &Path) {
    check_stick_table(stick, iso, efi, work, "gpt")
}

/// The layout's partition (at 1 MiB, `sectors` long) copied out to
/// `work/part.img`, which `fsck.fat -n` must find clean. Returns the copy,
/// for mtools.
fn partition_passes_fsck(stick: &Path, work: &Path, sectors: u64) -> PathBuf {
    let part = work.join("part.img");
    common::run(
        Command::new("dd")
            .arg(format!("if={}", stick.display()))
            .arg(format!("of={}", part.display()))
            .args(["bs=1M", "skip=1", "status=none"])
            .arg(format!("count={}", sectors * 512 / (1 << 20))),
    );
    let fsck = Command::new("fsck.fat")
        .args(["-n", "-V"])
        .arg(&part)
        .output()
        .unwrap();
    assert!(
        fsck.status.success(),
        "fsck.fat -n: {}{}",
        String::from_utf8_lossy(&fsck.stdout),
        String::from_utf8_lossy(&fsck.stderr)
    );
    part
}

fn check_stick_table(stick: &Path, iso: &Path, efi: &Path, work: &Path, label: &str) {
    if label == "gpt" {
        let out = common::run(Command::new("sgdisk").arg("-v").arg(stick));
        assert!(out.contains("No problems found"), "sgdisk -v: {out}");
    }
    let json: serde_json::Value = serde_json::from_str(&common::run(
        Command::new("sfdisk").arg("--json").arg(stick),
    ))
    .unwrap();
    let table = &json["partitiontable"];
    assert_eq!(table["label"], label, "{json:#}");
    let parts = table["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 1, "{json:#}");
    assert_eq!(parts[0]["start"], 2048, "{json:#}");
    let want = if label == "gpt" {
        "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"
    } else {
        "c"
    };
    assert_eq!(parts[0]["type"], want, "basic data partition: {json:#}");
    let sectors = parts[0]["size"].as_u64().unwrap();

    let part = partition_passes_fsck(stick, work, sectors);
    let label = common::run(mtools("mlabel").arg("-s").arg("-i").arg(&part).arg("::"));
    assert!(label.contains("BSTK_LAYOUT"), "mlabel: {label}");

    // The tree, copied out by mtools, against 7z's extraction of the ISO.
    let ours = work.join("ours");
    let theirs = work.join("theirs");
    std::fs::create_dir_all(&ours).unwrap();
    common::run(
        mtools("mcopy")
            .args(["-s", "-n", "-i"])
            .arg(&part)
            .arg("::/*")
            .arg(&ours),
    );
    common::run(
        Command::new("7z")
            .args(["x", "-y", "-bd"])
            .arg(format!("-o{}", theirs.display()))
            .arg(iso),
    );
    let loader = ours.join("EFI/BOOT/BOOTX64.EFI");
    assert_eq!(
        std::fs::read(&loader).unwrap(),
        std::fs::read(efi).unwrap(),
        "BOOTX64.EFI is the El Torito image's loader"
    );
    std::fs::remove_dir_all(ours.join("EFI")).unwrap();
    // 7z lists El Torito images as a [BOOT] folder; they are not files.
    let _ = std::fs::remove_dir_all(theirs.join("[BOOT]"));
    common::run(Command::new("diff").arg("-r").arg(&theirs).arg(&ours));
}

fn write_json(iso: &Path, target: &Path) -> Vec<serde_json::Value> {
    write_json_to(iso, &[target])
}

/// `bootstick write --yes --json ISO TARGET...`, which must succeed.
fn write_json_to(iso: &Path, targets: &[&Path]) -> Vec<serde_json::Value> {
    let out = common::bootstick()
        .args(["write", "--yes", "--json"])
        .arg(iso)
        .args(targets)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "write failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    common::json_lines(&out.stdout)
}

#[test]
fn non_hybrid_iso_is_written_as_a_gpt_fat32_layout_that_boots_under_ovmf() {
    let t = "non_hybrid_iso_is_written_as_a_gpt_fat32_layout_that_boots_under_ovmf";
    if !common::require_tools(t, TOOLS)
        || !common::require_tools(t, qemu::STANDALONE_TOOLS)
        || !qemu::require(t, &[Firmware::Ovmf])
    {
        return;
    }
    let (iso, efi) = fixture();
    let work = tempfile::tempdir().unwrap();
    let stick = work.path().join("stick.img");
    let events = write_json(&iso, &stick);
    let start = events.iter().find(|e| e["event"] == "start").unwrap();
    assert_eq!(start["mode"], "layout", "{start:#}");
    assert_eq!(start["decision"]["mode"], "layout", "{start:#}");
    assert_eq!(start["layout"]["table"], "gpt", "{start:#}");
    assert_eq!(
        start["layout"]["added_loaders"][0]["path"], "EFI/BOOT/BOOTX64.EFI",
        "{start:#}"
    );
    let result = events.iter().find(|e| e["event"] == "result").unwrap();
    assert_eq!(result["ok"], true, "{result:#}");
    assert_eq!(result["mode"], "layout", "{result:#}");
    assert_eq!(result["verified"], true, "{result:#}");
    check_stick(&stick, &iso, &efi, work.path());

    let out = Boot::new(
        &stick,
        Firmware::Ovmf,
        &qemu::fixture_marker(Firmware::Ovmf),
    )
    .assert_boots();
    eprintln!(
        "{t}: marker after {:.1} s ({})",
        out.elapsed.as_secs_f64(),
        out.accel
    );
}

#[test]
fn non_hybrid_iso_is_written_as_a_layout_to_a_loop_device() {
    let t = "non_hybrid_iso_is_written_as_a_layout_to_a_loop_device";
    if !common::require_tools(t, TOOLS)
        || !common::require_tools(t, qemu::STANDALONE_TOOLS)
        || !common::require_root(t)
    {
        return;
    }
    let (iso, efi) = fixture();
    let work = tempfile::tempdir().unwrap();
    let backing = work.path().join("backing.img");
    // A stale, non-zero 96 MiB "stick".
    common::pseudo_random_file(&backing, 96 << 20, 9);
    let dev = common::LoopDevice::attach(&backing);
    let events = write_json(&iso, dev.path());
    let start = events.iter().find(|e| e["event"] == "start").unwrap();
    assert_eq!(start["mode"], "layout", "{start:#}");
    // On a device the partition fills it.
    assert_eq!(start["layout"]["disk_bytes"], 96u64 << 20, "{start:#}");

    // `compare` builds the layout for the device's size and matches it; a
    // raw copy does not; a byte flipped through the device node is named.
    let (code, events) = compare(&[], &iso, dev.path());
    assert_eq!(code, Some(0), "{events:#?}");
    let start = events.iter().find(|e| e["event"] == "start").unwrap();
    assert_eq!(start["mode"], "layout", "{start:#}");
    assert_eq!(start["block_device"], true, "{start:#}");
    assert_eq!(start["layout"]["disk_bytes"], 96u64 << 20, "{start:#}");
    let (code, _) = compare(&["--raw"], &iso, dev.path());
    assert_eq!(code, Some(6));
    check_stick(&backing, &iso, &efi, work.path());
    let bad_at = readme_offset(&backing) + 3;
    common::flip_byte(dev.path(), bad_at);
    let (code, events) = compare(&[], &iso, dev.path());
    assert_eq!(code, Some(6), "{events:#?}");
    let err = compare_error(&events);
    assert!(err.contains(&format!("at byte {bad_at} ")), "{err}");
    drop(dev);
}

/// Two devices of different sizes in one command: each gets a layout sized
/// to it (its partition fills it), and each passes `sgdisk -v`, `fsck.fat -n`
/// and the tree comparison.
#[test]
fn non_hybrid_iso_to_two_loop_devices_of_different_sizes() {
    let t = "non_hybrid_iso_to_two_loop_devices_of_different_sizes";
    if !common::require_tools(t, TOOLS)
        || !common::require_tools(t, qemu::STANDALONE_TOOLS)
        || !common::require_root(t)
    {
        return;
    }
    let (iso, efi) = fixture();
    let work = tempfile::tempdir().unwrap();
    let sizes = [64u64 << 20, 96u64 << 20];
    let backings: Vec<PathBuf> = sizes
        .iter()
        .enumerate()
        .map(|(i, &size)| {
            let b = work.path().join(format!("stick{i}.img"));
            common::pseudo_random_file(&b, size, 20 + i as u64);
            b
        })
        .collect();
    let devs: Vec<common::LoopDevice> = backings
        .iter()
        .map(|b| common::LoopDevice::attach(b))
        .collect();
    let events = write_json_to(&iso, &devs.iter().map(|d| d.path()).collect::<Vec<_>>());
    for (dev, size) in devs.iter().zip(sizes) {
        let start = events
            .iter()
            .find(|e| e["event"] == "start" && e["target"] == dev.path().to_str().unwrap())
            .unwrap();
        assert_eq!(start["mode"], "layout", "{start:#}");
        assert_eq!(start["layout"]["disk_bytes"], size, "{start:#}");
    }
    drop(devs);
    for (i, backing) in backings.iter().enumerate() {
        let dir = work.path().join(format!("check{i}"));
        std::fs::create_dir(&dir).unwrap();
        check_stick(backing, &iso, &efi, &dir);
    }
}

/// `--table mbr`: an MBR with one FAT32 (LBA) partition; the image file
/// has the whole stick's size.
#[test]
fn table_mbr_builds_an_mbr_layout() {
    let t = "table_mbr_builds_an_mbr_layout";
    if !common::require_tools(t, TOOLS) || !common::require_tools(t, qemu::STANDALONE_TOOLS) {
        return;
    }
    let (iso, efi) = fixture();
    let work = tempfile::tempdir().unwrap();
    let stick = work.path().join("mbr.img");
    let out = common::bootstick()
        .args(["write", "--yes", "--table", "mbr"])
        .arg(&iso)
        .arg(&stick)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("built layout (MBR + FAT32"), "{stdout}");
    let len = std::fs::metadata(&stick).unwrap().len();
    assert_eq!(len % (1 << 20), 0, "{len}");
    check_stick_table(&stick, &iso, &efi, work.path(), "dos");
}

/// `--raw` still copies the ISO byte for byte.
#[test]
fn raw_flag_still_copies_byte_for_byte() {
    let t = "raw_flag_still_copies_byte_for_byte";
    if !common::require_tools(t, TOOLS) || !common::require_tools(t, qemu::STANDALONE_TOOLS) {
        return;
    }
    let (iso, _) = fixture();
    let work = tempfile::tempdir().unwrap();
    let stick = work.path().join("raw.img");
    let out = common::bootstick()
        .args(["write", "--yes", "--raw"])
        .arg(&iso)
        .arg(&stick)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    common::run(Command::new("cmp").arg(&iso).arg(&stick));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("byte for byte"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A target smaller than the layout: refused before anything is written.
#[test]
fn too_small_a_target_is_refused_and_untouched() {
    let t = "too_small_a_target_is_refused_and_untouched";
    if !common::require_tools(t, TOOLS)
        || !common::require_tools(t, qemu::STANDALONE_TOOLS)
        || !common::require_root(t)
    {
        return;
    }
    let (iso, _) = fixture();
    let work = tempfile::tempdir().unwrap();
    let backing = work.path().join("small.img");
    common::pseudo_random_file(&backing, 16 << 20, 5);
    let before = std::fs::read(&backing).unwrap();
    let dev = common::LoopDevice::attach(&backing);
    let out = common::bootstick()
        .args(["write", "--yes"])
        .arg(&iso)
        .arg(dev.path())
        .output()
        .unwrap();
    drop(dev);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("use a larger stick"), "{err}");
    assert!(
        std::fs::read(&backing).unwrap() == before,
        "the target changed"
    );
}

/// A file of 4 GiB or more cannot go on FAT32: the refusal names it, and
/// no target file is created.
/// A 4 GiB `sources/install.wim` is split into `.swm` parts; one that is
/// not a WIM at all (here: 4 GiB of zeros) is refused before anything is
/// written, naming the file. (Other files of 4 GiB or more are refused by
/// `layout::from_iso`, unit-tested there.)
#[test]
fn iso_with_a_4gib_install_wim_that_is_no_wim_is_refused_naming_it() {
    const SIZE: u64 = 4 << 30;
    let t = "iso_with_a_4gib_install_wim_that_is_no_wim_is_refused_naming_it";
    if !common::require_tools(t, &["xorriso", "fallocate"]) {
        return;
    }
    let recipe = format!("layout-big-v1 {SIZE} xorriso -as mkisofs -R -J -iso-level 3");
    let iso = cached("layout-big", "iso", &recipe, |out| {
        let dir = tempfile::tempdir_in(common::fixtures::fixture_dir()).unwrap();
        let src = dir.path().join("tree");
        std::fs::create_dir_all(src.join("sources")).unwrap();
        let f = std::fs::File::create(src.join("sources/install.wim")).unwrap();
        f.set_len(SIZE).unwrap();
        drop(f);
        std::fs::write(src.join("setup.txt"), "small\n").unwrap();
        common::run(
            Command::new("xorriso")
                .args([
                    "-as",
                    "mkisofs",
                    "-quiet",
                    "-R",
                    "-J",
                    "-iso-level",
                    "3",
                    "-o",
                ])
                .arg(out)
                .arg(&src),
        );
        common::run(Command::new("fallocate").arg("--dig-holes").arg(out));
    });
    let work = tempfile::tempdir().unwrap();
    let stick = work.path().join("stick.img");
    let out = common::bootstick()
        .args(["write", "--yes"])
        .arg(&iso)
        .arg(&stick)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("/sources/install.wim"), "{err}");
    assert!(err.contains(".swm"), "{err}");
    assert!(!stick.exists(), "nothing may be written");
}

/// `inspect` shows the layout `write` would build, or why it cannot.
#[test]
fn inspect_shows_the_planned_layout() {
    let t = "inspect_shows_the_planned_layout";
    if !common::require_tools(t, TOOLS) || !common::require_tools(t, qemu::STANDALONE_TOOLS) {
        return;
    }
    let (iso, _) = fixture();
    let out = common::bootstick()
        .arg("inspect")
        .arg(&iso)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("layout       GPT + FAT32 \"BSTK_LAYOUT\"")
            && text.contains("EFI loader EFI/BOOT/BOOTX64.EFI from the El Torito image"),
        "{text}"
    );
    let out = common::bootstick()
        .args(["inspect", "--json"])
        .arg(&iso)
        .output()
        .unwrap();
    let v = common::json_result(&out.stdout);
    assert_eq!(v["decision"]["mode"], "layout", "{v:#}");
    assert_eq!(v["layout"]["table"], "gpt", "{v:#}");
    assert_eq!(
        v["layout"]["added_loaders"][0]["path"],
        "EFI/BOOT/BOOTX64.EFI"
    );
    // The file target of `write` gets exactly this size.
    let work = tempfile::tempdir().unwrap();
    let stick = work.path().join("stick.img");
    write_json(&iso, &stick);
    assert_eq!(
        v["layout"]["min_bytes"].as_u64().unwrap(),
        std::fs::metadata(&stick).unwrap().len()
    );
}

/// A Windows-like ISO whose `sources/install.wim` is larger than the split
/// threshold: the layout carries `install.swm`, `install2.swm`, … instead,
/// and wimlib (the oracle) verifies and applies the parts copied off the
/// FAT32 partition. The threshold is lowered so a small WIM exercises the
/// path a > 4 GiB one takes.
#[test]
fn install_wim_over_the_threshold_is_split_into_swm_parts() {
    let t = "install_wim_over_the_threshold_is_split_into_swm_parts";
    if !common::require_tools(
        t,
        &[
            "xorriso",
            "wimlib-imagex",
            "mcopy",
            "fsck.fat",
            "sfdisk",
            "dd",
            "diff",
        ],
    ) {
        return;
    }
    use bootstick::events::Silent;
    use bootstick::image::{open::open_tree, ByteSource, ImageFile};
    use bootstick::layout::{disk, from_iso};
    use bootstick::write::{self, Target};

    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    for i in 0..6u64 {
        common::pseudo_random_file(&tree.join(format!("f{i}.bin")), 100_000 + i * 7_001, i + 40);
    }
    common::pseudo_random_file(&tree.join("sub/g.bin"), 150_000, 77);
    let root = work.path().join("root");
    std::fs::create_dir_all(root.join("sources")).unwrap();
    std::fs::create_dir_all(root.join("efi/boot")).unwrap();
    std::fs::write(root.join("bootmgr"), b"not really bootmgr\n").unwrap();
    std::fs::write(root.join("efi/boot/bootx64.efi"), b"not really a loader\n").unwrap();
    let wim = root.join("sources/install.wim");
    common::run(
        Command::new("wimlib-imagex")
            .arg("capture")
            .arg(&tree)
            .arg(&wim)
            .arg("--compress=lzx"),
    );
    let wim_len = std::fs::metadata(&wim).unwrap().len();
    let iso = work.path().join("win.iso");
    common::run(
        Command::new("xorriso")
            .args([
                "-as", "mkisofs", "-quiet", "-R", "-J", "-V", "WIN_LIKE", "-o",
            ])
            .arg(&iso)
            .arg(&root),
    );

    let src: std::sync::Arc<dyn ByteSource> = std::sync::Arc::new(ImageFile::open(&iso).unwrap());
    let files = open_tree(src.clone()).unwrap();
    let options = from_iso::Options {
        table: disk::Table::Gpt,
        target_size: None,
        mtime: 0,
        wim_split: from_iso::WimSplit {
            above: 0,
            part_limit: 256 << 10,
        },
    };
    let layout = from_iso::build(&src, &*files, &options).unwrap();
    let names: Vec<&str> = layout.wim_parts.iter().map(|p| p.path.as_str()).collect();
    assert!(names.len() >= 2, "{names:?} (WIM of {wim_len} bytes)");
    assert_eq!(names[0], "sources/install.swm");
    assert_eq!(names[1], "sources/install2.swm");

    let stick = work.path().join("stick.img");
    let mut target = Target::file(&stick).unwrap();
    let source = std::fs::File::open(&iso).unwrap();
    let report = write::write(
        &layout.plan,
        &source,
        &mut target,
        write::Options::default(),
        &Silent,
    )
    .unwrap();
    assert!(report.verified);
    drop(target);
    assert_eq!(std::fs::metadata(&stick).unwrap().len(), layout.disk_size);
    let json: serde_json::Value = serde_json::from_str(&common::run(
        Command::new("sfdisk").arg("--json").arg(&stick),
    ))
    .unwrap();
    let sectors = json["partitiontable"]["partitions"][0]["size"]
        .as_u64()
        .unwrap_or_else(|| panic!("no partition in {json:#}"));
    partition_passes_fsck(&stick, work.path(), sectors);

    // The partition starts at 1 MiB (docs/layout.md).
    let part = format!("{}@@1M", stick.display());
    let listing = common::run(mtools("mdir").args(["-b", "-i", &part, "::/sources"]));
    assert!(!listing.to_lowercase().contains("install.wim"), "{listing}");
    let out = work.path().join("copied");
    std::fs::create_dir_all(&out).unwrap();
    common::run(
        mtools("mcopy")
            .args(["-s", "-n", "-i", &part, "::/sources"])
            .arg(&out),
    );
    let dir = out.join("sources");
    let mut copied: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| format!("sources/{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    copied.sort();
    let mut expected: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    expected.sort();
    assert_eq!(copied, expected);
    let refs = format!("--ref={}/install*.swm", dir.display());
    let first = dir.join("install.swm");
    common::run(
        Command::new("wimlib-imagex")
            .arg("verify")
            .arg(&first)
            .arg(&refs),
    );
    let applied = work.path().join("applied");
    common::run(
        Command::new("wimlib-imagex")
            .arg("apply")
            .arg(&first)
            .arg("1")
            .arg(&applied)
            .arg(&refs),
    );
    common::run(Command::new("diff").arg("-r").arg(&tree).arg(&applied));
}

/// Runs `bootstick compare ARGS... ISO TARGET --json`; returns the exit code
/// and the JSON lines.
fn compare(args: &[&str], iso: &Path, target: &Path) -> (Option<i32>, Vec<serde_json::Value>) {
    let out = common::bootstick()
        .args(["compare", "--json"])
        .args(args)
        .arg(iso)
        .arg(target)
        .output()
        .unwrap();
    let events = common::json_lines(&out.stdout);
    (out.status.code(), events)
}

/// The `error` of a failed compare's result line.
fn compare_error(events: &[serde_json::Value]) -> String {
    let result = events.iter().find(|e| e["event"] == "result").unwrap();
    assert_eq!(result["ok"], false, "{result:#}");
    result["error"].as_str().unwrap().to_owned()
}

/// Where README.txt's contents lie on a stick: found by searching its
/// bytes, not through our FAT reader.
fn readme_offset(stick: &Path) -> u64 {
    let bytes = std::fs::read(stick).unwrap();
    let needle = b"a non-hybrid test ISO\n";
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("README.txt's contents on the stick");
    // Past the table and the FATs: inside the partition's data region.
    assert!(at as u64 > 1 << 20, "{at}");
    at as u64
}

/// The built layout is a function of the ISO and the options: two writes
/// give the same bytes (`cmp`), `compare` rebuilds them (exit 0), names a
/// flipped byte in the FAT32 data region (exit 6), and `--raw` or the other
/// table does not match a GPT layout.
#[test]
fn layout_written_file_is_reproducible_and_compares() {
    let t = "layout_written_file_is_reproducible_and_compares";
    if !common::require_tools(t, TOOLS)
        || !common::require_tools(t, qemu::STANDALONE_TOOLS)
        || !common::require_tools(t, &["cmp"])
    {
        return;
    }
    let (iso, _) = fixture();
    let work = tempfile::tempdir().unwrap();
    let one = work.path().join("one.img");
    let two = work.path().join("two.img");
    write_json(&iso, &one);
    write_json(&iso, &two);
    common::run(Command::new("cmp").arg(&one).arg(&two));

    let (code, events) = compare(&[], &iso, &one);
    assert_eq!(code, Some(0), "{events:#?}");
    let start = events.iter().find(|e| e["event"] == "start").unwrap();
    assert_eq!(start["mode"], "layout", "{start:#}");
    assert_eq!(start["layout"]["table"], "gpt", "{start:#}");
    let len = std::fs::metadata(&one).unwrap().len();
    assert_eq!(start["layout"]["disk_bytes"], len, "{start:#}");

    // Not a raw copy, nor an MBR layout: both differ from the first sector.
    let (code, events) = compare(&["--raw"], &iso, &one);
    assert_eq!(code, Some(6), "{events:#?}");
    assert!(compare_error(&events).contains("at byte "), "{events:#?}");
    let (code, events) = compare(&["--table", "mbr"], &iso, &one);
    assert_eq!(code, Some(6), "{events:#?}");

    let bad_at = readme_offset(&one) + 5;
    common::flip_byte(&one, bad_at);
    let (code, events) = compare(&[], &iso, &one);
    assert_eq!(code, Some(6), "{events:#?}");
    let err = compare_error(&events);
    assert!(err.contains(&format!("at byte {bad_at} ")), "{err}");
}

/// `--table mbr` round trip: an MBR layout compares with `--table mbr`
/// and not with the default GPT.
#[test]
fn mbr_layout_compares_with_table_mbr() {
    let t = "mbr_layout_compares_with_table_mbr";
    if !common::require_tools(t, TOOLS) || !common::require_tools(t, qemu::STANDALONE_TOOLS) {
        return;
    }
    let (iso, _) = fixture();
    let work = tempfile::tempdir().unwrap();
    let stick = work.path().join("mbr.img");
    common::run(
        common::bootstick()
            .args(["write", "--yes", "--table", "mbr"])
            .arg(&iso)
            .arg(&stick),
    );
    let (code, events) = compare(&["--table", "mbr"], &iso, &stick);
    assert_eq!(code, Some(0), "{events:#?}");
    let start = events.iter().find(|e| e["event"] == "start").unwrap();
    assert_eq!(start["layout"]["table"], "mbr", "{start:#}");
    let (code, events) = compare(&[], &iso, &stick);
    assert_eq!(code, Some(6), "{events:#?}");
}

/// The files' timestamp comes from the ISO, not the clock: a copy of the
/// fixture with its primary volume descriptor's dates patched (checked with
/// `xorriso -pvd_info`) gives files of that date in `mdir`: the
/// modification date, else (modification "not specified") the creation
/// date.
#[test]
fn layout_files_are_dated_from_the_volume_descriptor() {
    let t = "layout_files_are_dated_from_the_volume_descriptor";
    if !common::require_tools(t, TOOLS)
        || !common::require_tools(t, qemu::STANDALONE_TOOLS)
        || !common::require_tools(t, &["mdir", "dd"])
    {
        return;
    }
    let (iso, _) = fixture();
    let work = tempfile::tempdir().unwrap();
    // ECMA-119 8.4.26/8.4.27: 16 digits + a GMT offset byte at PVD bytes
    // 813 (creation) and 830 (modification); the PVD is sector 16.
    const PVD: u64 = 16 * 2048;
    let cases = [
        (
            "2001020304050600",
            "2011121314151600",
            "Modif. Time  : 2001020304050600",
            "2001-02-03   4:05",
        ),
        (
            "0000000000000000",
            "2011121314151600",
            "Creation Time: 2011121314151600",
            "2011-12-13  14:15",
        ),
    ];
    for (i, (modified, created, xorriso_line, mdir_date)) in cases.iter().enumerate() {
        let copy = work.path().join(format!("dated-{i}.iso"));
        std::fs::copy(&iso, &copy).unwrap();
        {
            use std::os::unix::fs::FileExt;
            let f = std::fs::OpenOptions::new().write(true).open(&copy).unwrap();
            f.write_all_at(format!("{created}\0").as_bytes(), PVD + 813)
                .unwrap();
            f.write_all_at(format!("{modified}\0").as_bytes(), PVD + 830)
                .unwrap();
        }
        let pvd = common::run(
            Command::new("xorriso")
                .arg("-indev")
                .arg(&copy)
                .arg("-pvd_info"),
        );
        assert!(pvd.contains(xorriso_line), "{pvd}");
        let stick = work.path().join(format!("dated-{i}.img"));
        write_json(&copy, &stick);
        let part = work.path().join("part.img");
        common::run(
            Command::new("dd")
                .arg(format!("if={}", stick.display()))
                .arg(format!("of={}", part.display()))
                .args(["bs=1M", "skip=1", "status=none"]),
        );
        let listing = common::run(mtools("mdir").arg("-i").arg(&part).arg("::/"));
        let readme = listing
            .lines()
            .find(|l| l.contains("README.txt"))
            .unwrap_or_else(|| panic!("{listing}"));
        assert!(readme.contains(mdir_date), "{readme}\n{listing}");
    }
}

/// Runs `act` once, at the first progress event of the write phase: the
/// first chunk is on the target, and (with a small chunk) the reader is at
/// most a few chunks ahead of it.
struct OnFirstWrite<F: Fn() + Sync> {
    act: F,
    done: std::sync::atomic::AtomicBool,
}

impl<F: Fn() + Sync> bootstick::events::Observer for OnFirstWrite<F> {
    fn event(&self, e: &bootstick::events::Event) {
        use bootstick::events::{Event, Phase};
        if matches!(
            e,
            Event::Progress {
                phase: Phase::Write,
                ..
            }
        ) && !self.done.swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            (self.act)();
        }
    }
}

/// A copy of the layout fixture with a `SHA256SUMS` (made by `sha256sum`)
/// beside it, in `dir`; the cached fixture itself is never modified.
fn checked_copy(dir: &Path) -> PathBuf {
    let (iso, _) = fixture();
    let img = dir.join("x.iso");
    std::fs::copy(&iso, &img).unwrap();
    let sums = common::run(Command::new("sha256sum").arg("x.iso").current_dir(dir));
    std::fs::write(dir.join("SHA256SUMS"), sums).unwrap();
    img
}

/// Issue 10, item 4: a built layout reads the image's files out of order, so
/// no digest of the streamed bytes is the checked digest. A byte of a file
/// changed after the check (here: while the first chunk is being written,
/// in a file the reader has not reached) must fail with exit 19's error
/// and never reach the stick; before, the write succeeded, verified, with
/// the changed byte on the stick and the checked digest reported.
#[test]
fn layout_image_changed_during_a_checked_write_is_caught() {
    use bootstick::image::{checked::CheckedImage, input, open::open_tree, ByteSource};
    use bootstick::layout::{disk, from_iso};
    use bootstick::plan::Extent;
    use bootstick::write;
    use std::sync::Arc;
    let t = "layout_image_changed_during_a_checked_write_is_caught";
    if !common::require_tools(t, TOOLS)
        || !common::require_tools(t, qemu::STANDALONE_TOOLS)
        || !common::require_tools(t, &["sha256sum"])
    {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let img = checked_copy(work.path());
    let req = bootstick::trust::Request {
        image: img.clone(),
        discover: true,
        ..Default::default()
    };
    let report = bootstick::trust::check_pinned(&req, &bootstick::events::Silent).unwrap();
    assert_eq!(report.outcome, bootstick::trust::Outcome::ChecksumOnly);
    let opened = input::open(&img).unwrap();
    let blocks = report.checked_blocks.clone().unwrap();
    let src: Arc<dyn ByteSource> = Arc::new(CheckedImage::new(
        opened.file().try_clone().unwrap(),
        blocks.clone(),
    ));
    let tree = open_tree(src.clone()).unwrap();
    let options = from_iso::Options {
        table: disk::Table::Gpt,
        target_size: None,
        mtime: from_iso::image_mtime(&*src).unwrap(),
        wim_split: from_iso::WimSplit::default(),
    };
    let layout = from_iso::build(&src, &*tree, &options).unwrap();
    // The last file range in target order: far behind the first chunk.
    let (at, offset, len) = layout
        .plan
        .pieces()
        .iter()
        .filter_map(|p| match p.extent {
            Extent::Source { offset, len } => Some((p.at, offset, len)),
            _ => None,
        })
        .next_back()
        .unwrap();
    const CHUNK: usize = 64 << 10;
    assert!(at > 32 * CHUNK as u64, "the last file starts at {at}");
    let victim = offset + len / 2;
    let stick = work.path().join("stick.img");
    let mut target = write::Target::file(&stick).unwrap();
    let err = write::write(
        &layout.plan,
        opened.file(),
        &mut target,
        write::Options {
            expect_source: report.checked_sha256.clone(),
            source_blocks: Some(blocks),
            source_stamp: Some(opened.stamp()),
            chunk_size: CHUNK,
            ..write::Options::default()
        },
        &OnFirstWrite {
            act: || common::flip_byte(&img, victim),
            done: Default::default(),
        },
    )
    .unwrap_err();
    match err {
        write::Error::SourceChangedSinceCheck { start, end } => {
            assert!(
                start <= victim && victim < end,
                "{start}..{end} holds {victim}"
            );
        }
        e => panic!("expected SourceChangedSinceCheck, got {e:?}"),
    }
    // The changed byte is not on the stick (its range was never written).
    use std::os::unix::fs::FileExt;
    let mut now = [0u8];
    let written = std::fs::File::open(&stick)
        .unwrap()
        .read_at(&mut now, at + len / 2)
        .unwrap();
    let mut changed = [0u8];
    std::fs::File::open(&img)
        .unwrap()
        .read_exact_at(&mut changed, victim)
        .unwrap();
    assert!(
        written == 0 || now != changed,
        "the changed byte reached the stick"
    );
}

/// The same through the command line, with the check found beside the
/// image: changing a file's byte once the write has started exits 19
/// (`ok: false`, nothing claimed verified).
#[test]
fn layout_write_with_a_source_check_exits_19_when_the_image_changes() {
    let t = "layout_write_with_a_source_check_exits_19_when_the_image_changes";
    if !common::require_tools(t, TOOLS)
        || !common::require_tools(t, qemu::STANDALONE_TOOLS)
        || !common::require_tools(t, &["sha256sum"])
    {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let img = checked_copy(work.path());
    let stick = work.path().join("stick.img");
    // A byte in the middle of the largest file (found by its contents'
    // position: the ISO's last MiB before its end holds file data).
    let victim = std::fs::metadata(&img).unwrap().len() / 2;
    let (code, events) =
        common::write_changing_image(&img, &stick, &[], |_| common::flip_byte(&img, victim));
    let result = events.last().unwrap();
    assert_eq!(code, Some(19), "{events:#?}");
    assert_eq!(result["ok"], false, "{result:#}");
    assert_eq!(result["exit_code"], 19, "{result:#}");
    let start = events.iter().find(|e| e["event"] == "start").unwrap();
    assert_eq!(start["mode"], "layout");
    assert_eq!(start["source_check"]["outcome"], "checksum-only");
}

/// Issue 10: a layout write with a source check reads the image for the
/// check once: one `check` phase (the pinned pass that also takes the block
/// digests), then write, sync, verify, in that order, and the result is
/// verified with the check's outcome. A flow that checked again (or built
/// the layout from a second, unchecked read) would show a second phase.
#[test]
fn layout_write_with_a_source_check_has_one_check_phase() {
    let t = "layout_write_with_a_source_check_has_one_check_phase";
    if !common::require_tools(t, TOOLS)
        || !common::require_tools(t, qemu::STANDALONE_TOOLS)
        || !common::require_tools(t, &["sha256sum"])
    {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let img = checked_copy(work.path());
    let stick = work.path().join("stick.img");
    let events = write_json(&img, &stick);
    let phases: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "phase")
        .filter_map(|e| e["phase"].as_str())
        .collect();
    assert_eq!(phases, ["check", "write", "sync", "verify"], "{events:#?}");
    let start = events.iter().find(|e| e["event"] == "start").unwrap();
    assert_eq!(start["mode"], "layout", "{start:#}");
    let result = events.last().unwrap();
    assert_eq!(result["ok"], true, "{result:#}");
    assert_eq!(
        start["source_check"]["outcome"], "checksum-only",
        "{start:#}"
    );
}
