//! El Torito, partition tables and the raw/layout decision, checked against
//! tools we did not write: xorriso's `-report_el_torito` / `-report_system_area`,
//! `sgdisk`, and mtools reading the EFI images in place.

use crate::common;

use bootstick::image::eltorito::{self, Platform, SizeSource};
use bootstick::image::partitions::{self, BackupState, Table};
use bootstick::image::{ByteSource, ImageFile};
use common::recipes;
use std::path::Path;
use std::process::Command;

const ISO_TOOLS: &[&str] = &[
    "xorriso",
    "genisoimage",
    "mkfs.fat",
    "mmd",
    "mcopy",
    "mdir",
    "mtype",
];

/// One `El Torito boot img` line of `xorriso -report_el_torito plain`.
#[derive(Debug, PartialEq)]
struct XorrisoBootImg {
    platform: String,
    count: u16,
    lba: u32,
}

fn xorriso_report(img: &Path) -> String {
    common::run(Command::new("xorriso").arg("-indev").arg(img).args([
        "-report_el_torito",
        "plain",
        "-report_system_area",
        "plain",
    ]))
}

fn xorriso_boot_imgs(report: &str) -> Vec<XorrisoBootImg> {
    report
        .lines()
        .filter_map(|l| l.strip_prefix("El Torito boot img :"))
        .map(|rest| {
            let f: Vec<&str> = rest.split_whitespace().collect();
            // N Pltf B Emul Ld_seg Hdpt Ldsiz LBA
            XorrisoBootImg {
                platform: f[1].to_owned(),
                count: f[6].parse().unwrap(),
                lba: f[7].parse().unwrap(),
            }
        })
        .collect()
}

/// `xorriso -report_el_torito`'s path of boot image N, if it is a file.
fn xorriso_img_path(report: &str, n: usize) -> Option<String> {
    report
        .lines()
        .filter_map(|l| l.strip_prefix("El Torito img path :"))
        .find_map(|rest| {
            let mut f = rest.split_whitespace();
            (f.next()? == n.to_string()).then(|| f.next().unwrap().to_owned())
        })
}

/// (start, size) in 512-byte blocks of the lines `<what> : N start size`.
fn xorriso_ranges(report: &str, prefix: &str) -> Vec<(u32, u64, u64)> {
    report
        .lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .map(|rest| {
            let f: Vec<u64> = rest
                .trim_start_matches([' ', ':'])
                .split_whitespace()
                .map(|x| x.parse().unwrap())
                .collect();
            (f[0] as u32, f[1], f[2])
        })
        .collect()
}

/// Size in bytes of a file in the ISO tree, by `xorriso -find … report_lba`.
fn xorriso_file_size(img: &Path, path: &str) -> u64 {
    let out = common::run(Command::new("xorriso").arg("-indev").arg(img).args([
        "-find",
        path,
        "-exec",
        "report_lba",
        "--",
    ]));
    let line = out
        .lines()
        .find(|l| l.starts_with("File data lba:"))
        .unwrap_or_else(|| panic!("no report_lba line for {path}:\n{out}"));
    // File data lba:  0 ,  34 ,  1440 ,  2949120 , '/boot/efi.img'
    line.split(',').nth(3).unwrap().trim().parse().unwrap()
}

/// `sgdisk -p` rows: (number, first sector, last sector, code, name).
fn sgdisk_rows(img: &Path) -> Vec<(u32, u64, u64, String, String)> {
    let out = common::run(Command::new("sgdisk").arg("-p").arg(img));
    out.lines()
        .skip_while(|l| !l.starts_with("Number"))
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // Number Start End Size(2 fields) Code Name…
            (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
                f[5].to_owned(),
                f[6..].join(" "),
            )
        })
        .collect()
}

/// mtools' listing of `/EFI/BOOT` in the FAT volume at `offset` of `img`,
/// upper-cased, with each file's size (read back with `mtype`).
fn mtools_loaders(img: &Path, offset: u64) -> Vec<(String, u64)> {
    let at = format!("{}@@{offset}", img.display());
    let out = common::run(Command::new("mdir").args(["-b", "-i", &at, "::/EFI/BOOT"]));
    let mut v: Vec<(String, u64)> = out
        .lines()
        .map(|l| l.trim().trim_start_matches("::").to_owned())
        .filter(|p| {
            let u = p.to_ascii_uppercase();
            u.rsplit('/')
                .next()
                .is_some_and(|n| n.starts_with("BOOT") && n.ends_with(".EFI"))
        })
        .map(|p| {
            let data = Command::new("mtype")
                .args(["-i", &at, &format!("::{p}")])
                .output()
                .unwrap();
            (p.to_ascii_uppercase(), data.stdout.len() as u64)
        })
        .collect();
    v.sort();
    v
}

fn our_loaders(src: &dyn ByteSource, offset: u64, len: u64) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = eltorito::efi_loaders(src, offset, len)
        .unwrap()
        .into_iter()
        .map(|f| (f.path.to_ascii_uppercase(), f.size))
        .collect();
    v.sort();
    v
}

fn platform_name(p: Platform) -> &'static str {
    match p {
        Platform::X86 => "BIOS",
        Platform::Efi => "UEFI",
        Platform::PowerPc => "PPC",
        Platform::Mac => "Mac",
        Platform::Other(_) => "?",
    }
}

/// Our catalog against xorriso's: same entries, platforms, counts and RBAs.
fn assert_catalog_matches(img: &Path, report: &str) -> eltorito::Catalog {
    let src = ImageFile::open(img).unwrap();
    let cat = eltorito::read_catalog(&src)
        .unwrap()
        .expect("an El Torito catalog");
    let theirs = xorriso_boot_imgs(report);
    let ours: Vec<XorrisoBootImg> = cat
        .entries
        .iter()
        .map(|e| XorrisoBootImg {
            platform: platform_name(e.platform).to_owned(),
            count: e.sector_count,
            lba: e.load_rba,
        })
        .collect();
    assert_eq!(
        ours, theirs,
        "catalog differs from xorriso's report:\n{report}"
    );
    cat
}

#[test]
fn grub_mkrescue_hybrid() {
    if !common::require_tools(
        "grub_mkrescue_hybrid",
        &["grub-mkrescue", "sgdisk", "mdir", "mtype", "xorriso"],
    ) {
        return;
    }
    let img = recipes::image("inspect", "grub-hybrid");
    let report = xorriso_report(&img);
    let src = ImageFile::open(&img).unwrap();
    let cat = assert_catalog_matches(&img, &report);

    let area = partitions::read_system_area(&src).unwrap();
    assert!(area.problems.is_empty(), "{:?}", area.problems);
    // MBR: GRUB's boot code and the protective entry xorriso reports.
    let mbr = area.mbr.as_ref().expect("MBR");
    assert!(mbr.boot_code);
    assert!(mbr.is_protective());
    let ours: Vec<(u32, u64, u64)> = mbr
        .entries
        .iter()
        .map(|e| {
            (
                u32::from(e.index),
                u64::from(e.start_lba),
                u64::from(e.sectors),
            )
        })
        .collect();
    // xorriso's MBR lines are "N Status Type Start Blocks": compare N, Start, Blocks.
    let xmbr: Vec<(u32, u64, u64)> = report
        .lines()
        .filter_map(|l| l.strip_prefix("MBR partition      :"))
        .map(|r| {
            let f: Vec<&str> = r.split_whitespace().collect();
            (
                f[0].parse().unwrap(),
                f[3].parse().unwrap(),
                f[4].parse().unwrap(),
            )
        })
        .collect();
    assert!(!xmbr.is_empty());
    assert_eq!(ours, xmbr);

    // GPT against sgdisk.
    let gpt = area.gpt.as_ref().expect("GPT");
    assert_eq!(gpt.block_size, 512);
    assert_eq!(gpt.backup, BackupState::Valid);
    let rows = sgdisk_rows(&img);
    assert_eq!(rows.len(), gpt.entries.len());
    for (row, e) in rows.iter().zip(&gpt.entries) {
        assert_eq!((row.0, row.1, row.2), (e.index, e.first_lba, e.last_lba));
        assert_eq!(row.4, e.name);
        assert_eq!(row.3 == "EF00", e.is_esp(), "{row:?} vs {e:?}");
    }

    // APM against xorriso (block size 2048, start and size in those blocks).
    let apm = area.apm.as_ref().expect("Apple partition map");
    let xapm = xorriso_ranges(&report, "APM start and size :");
    assert!(report.contains("APM block size     :      2048"));
    assert_eq!(apm.block_size, 2048);
    let ours: Vec<(u64, u64)> = apm
        .entries
        .iter()
        .filter(|e| e.kind != "Apple_partition_map")
        .map(|e| (u64::from(e.start_block), u64::from(e.blocks)))
        .collect();
    let theirs: Vec<(u64, u64)> = xapm.iter().map(|r| (r.1, r.2)).collect();
    assert_eq!(ours, theirs);

    // The EFI image: size from the ESP partition sgdisk reports, loaders as
    // mtools lists them inside it.
    let efi = cat
        .entries
        .iter()
        .find(|e| e.platform == Platform::Efi)
        .unwrap();
    let parts = area.partitions(src.len());
    let r = eltorito::resolve_size(&src, efi, None, &parts).unwrap();
    let esp = rows.iter().find(|r| r.3 == "EF00").unwrap();
    assert_eq!(r.offset, esp.1 * 512);
    assert_eq!(r.len, (esp.2 - esp.1 + 1) * 512);
    assert!(matches!(
        r.size_from,
        SizeSource::Partition {
            table: Table::Gpt | Table::Mbr,
            ..
        }
    ));
    assert_eq!(
        r.len,
        xorriso_file_size(&img, &xorriso_img_path(&report, 2).unwrap())
    );
    let theirs = mtools_loaders(&img, r.offset);
    assert_eq!(theirs.len(), 1, "{theirs:?}");
    assert_eq!(our_loaders(&src, r.offset, r.len), theirs);
}

#[test]
fn appended_esp_like_ubuntu() {
    if !common::require_tools("appended_esp_like_ubuntu", ISO_TOOLS)
        || !common::require_tools("appended_esp_like_ubuntu", &["sgdisk"])
    {
        return;
    }
    let img = recipes::image("inspect", "ubuntu-like");
    let report = xorriso_report(&img);
    let cat = assert_catalog_matches(&img, &report);
    let src = ImageFile::open(&img).unwrap();
    let area = partitions::read_system_area(&src).unwrap();
    assert!(area.problems.is_empty(), "{:?}", area.problems);
    assert!(area.mbr.as_ref().unwrap().boot_code);
    let rows = sgdisk_rows(&img);
    let esp = rows
        .iter()
        .find(|r| r.3 == "EF00")
        .expect("sgdisk shows an ESP");
    let efi = cat
        .entries
        .iter()
        .find(|e| e.platform == Platform::Efi)
        .unwrap();
    // The EFI image is not a file of the tree: it is the appended partition,
    // lying past the ISO volume.
    assert!(xorriso_img_path(&report, 2).is_none());
    let parts = area.partitions(src.len());
    let r = eltorito::resolve_size(&src, efi, None, &parts).unwrap();
    assert_eq!(
        r.size_from,
        SizeSource::Partition {
            table: Table::Gpt,
            index: esp.0
        }
    );
    assert_eq!((r.offset, r.len), (esp.1 * 512, (esp.2 - esp.1 + 1) * 512));
    assert_eq!(
        our_loaders(&src, r.offset, r.len),
        mtools_loaders(&img, r.offset)
    );

    // Producers that write a sector count of 0: the partition still sizes it.
    let mut bytes = std::fs::read(&img).unwrap();
    let cat_at = cat.catalog_lba as usize * 2048;
    let slot = (0..64)
        .map(|k| cat_at + 32 * k)
        .find(|&at| {
            bytes[at] == 0x88
                && u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) == efi.load_rba
        })
        .unwrap();
    bytes[slot + 6..slot + 8].copy_from_slice(&0u16.to_le_bytes());
    let cat0 = eltorito::read_catalog(&bytes).unwrap().unwrap();
    let efi0 = cat0
        .entries
        .iter()
        .find(|e| e.platform == Platform::Efi)
        .unwrap();
    assert_eq!(efi0.sector_count, 0);
    let r0 = eltorito::resolve_size(&bytes, efi0, None, &parts).unwrap();
    assert_eq!((r0.offset, r0.len), (r.offset, r.len));
}

#[test]
fn bios_only_no_emulation() {
    if !common::require_tools("bios_only_no_emulation", ISO_TOOLS) {
        return;
    }
    let img = recipes::image("inspect", "bios-only");
    let report = xorriso_report(&img);
    let cat = assert_catalog_matches(&img, &report);
    assert_eq!(cat.entries.len(), 1);
    let src = ImageFile::open(&img).unwrap();
    let area = partitions::read_system_area(&src).unwrap();
    // genisoimage leaves the system area blank: nothing to boot from USB.
    assert!(area.mbr.is_none() && area.gpt.is_none() && area.apm.is_none());
    assert!(!report.contains("MBR partition      :"));
}

#[test]
fn efi_entry_with_sector_count_one() {
    if !common::require_tools("efi_entry_with_sector_count_one", ISO_TOOLS) {
        return;
    }
    let img = recipes::image("inspect", "efi-count1");
    let report = xorriso_report(&img);
    let cat = assert_catalog_matches(&img, &report);
    let efi = &cat.entries[0];
    assert_eq!((efi.platform, efi.sector_count), (Platform::Efi, 1));
    let src = ImageFile::open(&img).unwrap();
    // No tree and no partition: the FAT boot sector gives the size, which
    // must equal the size of the file xorriso finds.
    let r = eltorito::resolve_size(&src, efi, None, &[]).unwrap();
    assert_eq!(r.size_from, SizeSource::FatBootSector);
    let path = xorriso_img_path(&report, 1).unwrap();
    assert_eq!(r.len, xorriso_file_size(&img, &path));
    let theirs = mtools_loaders(&img, r.offset);
    assert_eq!(theirs, vec![("/EFI/BOOT/BOOTX64.EFI".to_owned(), 30000)]);
    assert_eq!(our_loaders(&src, r.offset, r.len), theirs);
}

#[test]
fn plain_gpt_disk_image() {
    if !common::require_tools(
        "plain_gpt_disk_image",
        &["sgdisk", "mkfs.fat", "mmd", "mcopy", "mdir", "mtype"],
    ) {
        return;
    }
    let img = recipes::image("inspect", "gpt-disk");
    let src = ImageFile::open(&img).unwrap();
    assert!(eltorito::read_catalog(&src).unwrap().is_none());
    let area = partitions::read_system_area(&src).unwrap();
    assert!(area.problems.is_empty(), "{:?}", area.problems);
    let mbr = area.mbr.as_ref().unwrap();
    assert!(mbr.is_protective());
    assert!(!mbr.boot_code, "sgdisk writes no boot code");
    let gpt = area.gpt.as_ref().unwrap();
    assert_eq!(gpt.backup, BackupState::Valid);
    let rows = sgdisk_rows(&img);
    let ours: Vec<_> = gpt
        .entries
        .iter()
        .map(|e| (e.index, e.first_lba, e.last_lba, e.name.clone()))
        .collect();
    let theirs: Vec<_> = rows.iter().map(|r| (r.0, r.1, r.2, r.4.clone())).collect();
    assert_eq!(ours, theirs);
    let esp = area
        .partitions(src.len())
        .into_iter()
        .find(|p| p.esp)
        .unwrap();
    assert_eq!(esp.offset, 2048 * 512);
    assert_eq!(
        our_loaders(&src, esp.offset, esp.len),
        mtools_loaders(&img, esp.offset)
    );

    // A flipped byte in the entry array: the CRC check catches it (and
    // sgdisk agrees the main table is damaged).
    let mut bytes = std::fs::read(&img).unwrap();
    bytes[2 * 512 + 56] ^= 0x20; // first entry's name
    let area = partitions::read_system_area(&bytes).unwrap();
    assert!(area.gpt.is_none());
    let msg = area.problems[0].to_string();
    assert!(msg.contains("byte 1024") && msg.contains("CRC32"), "{msg}");
    let damaged = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(damaged.path(), &bytes).unwrap();
    let out = Command::new("sgdisk")
        .arg("-v")
        .arg(damaged.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(
        text.contains("crc") || text.contains("corrupt"),
        "sgdisk -v said:\n{text}"
    );
}

/// `bootstick inspect --json IMAGE`, parsed.
fn inspect_json(img: &Path) -> serde_json::Value {
    let out = common::run(common::bootstick().args(["inspect", "--json"]).arg(img));
    common::json_result(out.as_bytes())
}

fn decision_of(v: &serde_json::Value) -> (String, Vec<String>) {
    let d = &v["decision"];
    (
        d["mode"].as_str().unwrap().to_owned(),
        d["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                assert!(!r["message"].as_str().unwrap().is_empty());
                r["code"].as_str().unwrap().to_owned()
            })
            .collect(),
    )
}

/// The decision for each kind of image, through the command line, with the
/// facts behind each reason cross-checked against xorriso and sgdisk.
#[test]
fn decisions() {
    let mut tools = ISO_TOOLS.to_vec();
    tools.extend(["grub-mkrescue", "sgdisk"]);
    if !common::require_tools("decisions", &tools) {
        return;
    }
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "grub-hybrid",
            "raw",
            &["bios-boot-code", "esp-with-loaders"],
        ),
        (
            "ubuntu-like",
            "raw",
            &["bios-boot-code", "esp-with-loaders"],
        ),
        (
            "bios-hybrid",
            "raw",
            &["bios-boot-code", "efi-only-in-el-torito"],
        ),
        ("bios-only", "layout", &["not-hybrid"]),
        (
            "efi-count1",
            "layout",
            &["not-hybrid", "efi-only-in-el-torito"],
        ),
        (
            "gpt-disk",
            "raw",
            &["disk-image", "mbr-not-bootable", "esp-with-loaders"],
        ),
    ];
    for (recipe, mode, codes) in cases {
        let img = recipes::image("inspect", recipe);
        let v = inspect_json(&img);
        assert_eq!(
            decision_of(&v),
            (
                mode.to_string(),
                codes.iter().map(|c| c.to_string()).collect()
            ),
            "{recipe}: {v:#}"
        );
        assert_eq!(
            v["size"].as_u64().unwrap(),
            std::fs::metadata(&img).unwrap().len()
        );
        let report = xorriso_report(&img);
        // bios-boot-code exactly when xorriso recognises GRUB's MBR code.
        assert_eq!(
            codes.contains(&"bios-boot-code"),
            report.contains("grub2-mbr"),
            "{recipe}: {report}"
        );
        // esp-with-loaders names the partition sgdisk types EF00.
        if codes.contains(&"esp-with-loaders") {
            let rows = sgdisk_rows(&img);
            let esp = rows.iter().find(|r| r.3 == "EF00").unwrap();
            let esps = v["partitions"]["esps"].as_array().unwrap();
            assert_eq!(esps.len(), 1, "{recipe}");
            assert_eq!(esps[0]["index"].as_u64().unwrap(), u64::from(esp.0));
            assert_eq!(esps[0]["offset"].as_u64().unwrap(), esp.1 * 512);
            let loaders = esps[0]["loaders"].as_array().unwrap();
            let theirs = mtools_loaders(&img, esp.1 * 512);
            assert_eq!(loaders.len(), theirs.len(), "{recipe}");
        }
        // The El Torito entries of the JSON are xorriso's.
        if !recipe.ends_with("disk") {
            let ours: Vec<(u64, u64)> = v["el_torito"]["images"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| {
                    (
                        i["load_rba"].as_u64().unwrap(),
                        i["sector_count"].as_u64().unwrap(),
                    )
                })
                .collect();
            let theirs: Vec<(u64, u64)> = xorriso_boot_imgs(&report)
                .iter()
                .map(|x| (u64::from(x.lba), u64::from(x.count)))
                .collect();
            assert_eq!(ours, theirs, "{recipe}");
            // Boot images sized from the tree have the size xorriso gives
            // the file at that path.
            for i in v["el_torito"]["images"].as_array().unwrap() {
                if i["size_from"]["from"] == "file" {
                    let path = i["size_from"]["path"].as_str().unwrap();
                    assert_eq!(
                        i["len"].as_u64().unwrap(),
                        xorriso_file_size(&img, path),
                        "{recipe} {path}"
                    );
                }
            }
            assert!(v["facts"].is_object(), "{recipe}: the ISO tree was read");
        }
    }
}

/// Bytes that are no known format are copied as given, and said so.
#[test]
fn unrecognised_image_is_raw_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("blob.bin");
    common::pseudo_random_file(&img, 1 << 20, 7);
    let v = inspect_json(&img);
    assert_eq!(decision_of(&v), ("raw".into(), vec!["unrecognised".into()]));
    let out = common::run(common::bootstick().arg("inspect").arg(&img));
    assert!(out.contains("decision     raw"), "{out}");
    assert!(out.contains("unrecognised"), "{out}");
}

/// A truncated hybrid (an interrupted download) is still inspected: what
/// lies past the end is reported, nothing fails or panics.
#[test]
fn truncated_hybrid_is_reported_not_fatal() {
    if !common::require_tools(
        "truncated_hybrid_is_reported_not_fatal",
        &["grub-mkrescue", "xorriso"],
    ) {
        return;
    }
    let img = recipes::image("inspect", "grub-hybrid");
    let dir = tempfile::tempdir().unwrap();
    let cut = dir.path().join("cut.iso");
    let bytes = std::fs::read(&img).unwrap();
    std::fs::write(&cut, &bytes[..4 << 20]).unwrap();
    let v = inspect_json(&cut);
    assert_eq!(v["partitions"]["gpt"]["backup"]["state"], "outside-image");
    let bios = &v["el_torito"]["images"][0];
    assert_eq!(bios["truncated"], true, "{v:#}");
    // A missing file is a bad-input error (exit 3) naming the path.
    let out = common::bootstick()
        .args(["inspect", "/nonexistent/x.iso"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/x.iso"));
}

/// `7z l -ba` of an image: path → size (None for directories).
fn seven_zip(img: &Path) -> std::collections::BTreeMap<String, Option<u64>> {
    let out = common::run(Command::new("7z").args(["l", "-ba"]).arg(img));
    out.lines()
        .filter(|l| l.len() > 53)
        .map(|l| {
            let attr = &l[20..25];
            let size = l[26..38].trim();
            let name = l[53..].trim().to_owned();
            let size = (!attr.starts_with('D')).then(|| size.parse().unwrap_or(0));
            (name, size)
        })
        .collect()
}

/// Windows-like media (UDF bridge, bootmgr, install.wim, El Torito BIOS +
/// UEFI, blank system area): a layout, and the facts match 7-Zip's listing.
#[test]
fn windows_like_media_needs_a_layout() {
    let mut tools = ISO_TOOLS.to_vec();
    tools.push("7z");
    if !common::require_tools("windows_like_media_needs_a_layout", &tools) {
        return;
    }
    let img = recipes::image("inspect", "windows-like");
    let v = inspect_json(&img);
    assert_eq!(
        decision_of(&v),
        (
            "layout".into(),
            vec![
                "not-hybrid".into(),
                "efi-only-in-el-torito".into(),
                "windows-media".into()
            ]
        ),
        "{v:#}"
    );
    assert_eq!(v["tree"], "udf");
    assert_eq!(v["label"], "CCCOMA_X64FRE_EN-US_DV9");
    let listing = seven_zip(&img);
    let f = &v["facts"];
    let w = &f["windows"];
    assert_eq!(w["bootmgr"], true);
    assert_eq!(w["bootmgr_efi"], true);
    assert_eq!(w["boot_wim"], true);
    assert_eq!(w["efi_bootx64"], true);
    assert_eq!(
        w["install_image"]["size"].as_u64(),
        listing["sources/install.wim"]
    );
    let files = listing.values().filter(|s| s.is_some()).count() as u64;
    let dirs = listing.values().filter(|s| s.is_none()).count() as u64;
    assert_eq!(
        (
            f["files"].as_u64().unwrap(),
            f["directories"].as_u64().unwrap()
        ),
        (files, dirs)
    );
    assert_eq!(f["efi_loaders"][0]["path"], "/efi/boot/bootx64.efi");
    assert!(f["large_files"].as_array().unwrap().is_empty());
    // Boot images sized by the files at their blocks, as 7-Zip lists them.
    let images = v["el_torito"]["images"].as_array().unwrap();
    for (i, path) in [
        (0, "boot/etfsboot.com"),
        (1, "efi/microsoft/boot/efisys.bin"),
    ] {
        assert_eq!(images[i]["size_from"]["from"], "file");
        assert_eq!(images[i]["size_from"]["path"], format!("/{path}"));
        assert_eq!(images[i]["len"].as_u64(), listing[path], "{path}");
    }
    assert_eq!(images[1]["efi_loaders"][0]["path"], "/EFI/BOOT/BOOTX64.EFI");
    let report = xorriso_report(&img);
    assert!(!report.contains("MBR partition      :"));
}

/// `write` follows the decision: a non-hybrid ISO without a UEFI loader (no
/// built layout could boot) is refused (exit 3, the target untouched) unless `--raw`, which copies it byte for byte with a
/// warning; a hybrid is written without one; unrecognised bytes are written
/// with a warning.
#[test]
fn write_follows_the_decision() {
    if !common::require_tools(
        "write_follows_the_decision",
        &["genisoimage", "grub-mkrescue", "xorriso", "cmp"],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("stick.img");
    let write = |img: &Path, extra: &[&str]| {
        common::bootstick()
            .args(["write", "--yes", "--json"])
            .args(extra)
            .arg(img)
            .arg(&target)
            .output()
            .unwrap()
    };
    let warnings = |out: &std::process::Output| -> Vec<String> {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["event"] == "warning")
            .map(|v| v["message"].as_str().unwrap().to_owned())
            .collect()
    };
    let same = |img: &Path| {
        Command::new("cmp")
            .arg(img)
            .arg(&target)
            .status()
            .unwrap()
            .success()
    };

    let plain = recipes::image("inspect", "bios-only");
    let out = write(&plain, &[]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("this ISO is not hybrid and has no UEFI loader")
            && text.contains("use --raw to copy it byte for byte anyway"),
        "{text}"
    );
    assert!(
        !target.exists(),
        "a refused write must not create the target"
    );

    let out = write(&plain, &["--raw"]);
    assert!(out.status.success(), "{out:?}");
    let w = warnings(&out);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("not a hybrid ISO"), "{w:?}");
    assert!(same(&plain));

    let hybrid = recipes::image("inspect", "grub-hybrid");
    let out = write(&hybrid, &[]);
    assert!(out.status.success(), "{out:?}");
    // Its GRUB (grub-mkrescue's) is not signed: the one warning says the
    // stick needs Secure Boot off.
    let w = warnings(&out);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("can boot only with Secure Boot turned off"),
        "{w:?}"
    );
    assert!(same(&hybrid));
    let start = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["event"] == "start")
        .unwrap();
    assert_eq!(start["decision"]["mode"], "raw");

    let blob = dir.path().join("blob.bin");
    common::pseudo_random_file(&blob, 3 << 20, 11);
    let out = write(&blob, &[]);
    assert!(out.status.success(), "{out:?}");
    let w = warnings(&out);
    assert!(w.iter().any(|m| m.contains("recognises")), "{w:?}");
    assert!(same(&blob));
}

/// No input makes the readers panic: random mutations of the system area,
/// volume descriptors, boot catalog, ESP boot sector/FAT/root directory and
/// backup GPT of real hybrids, and random truncations, all inspect to a
/// report or a typed error.
#[test]
fn mutated_images_never_panic() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    if !common::require_tools(
        "mutated_images_never_panic",
        &["grub-mkrescue", "xorriso", "mkfs.fat", "mmd", "mcopy"],
    ) {
        return;
    }
    for recipe in ["ubuntu-like", "grub-hybrid"] {
        let original = std::fs::read(recipes::image("inspect", recipe)).unwrap();
        let len = original.len();
        let src = ImageFile::open(&recipes::image("inspect", recipe)).unwrap();
        let cat = eltorito::read_catalog(&src).unwrap().unwrap();
        let cat_at = cat.catalog_lba as usize * 2048;
        let efi_at = cat.entries.last().unwrap().offset() as usize;
        // (start, length) of the byte ranges worth mutating.
        let regions = [
            (0usize, 40 * 1024),
            (32 * 1024, 8 * 1024),
            (cat_at, 2048),
            (efi_at, 16 * 1024),
            (len - 20 * 1024, 20 * 1024),
        ];
        let mutation = (0..regions.len(), any::<u16>(), any::<u8>());
        let strategy = (
            proptest::collection::vec(mutation, 1..24),
            proptest::option::weighted(0.2, 0..len),
        );
        let mut runner = TestRunner::new(Config {
            // PROPTEST_CASES=N for a longer hunt.
            cases: std::env::var("PROPTEST_CASES")
                .ok()
                .and_then(|c| c.parse().ok())
                .unwrap_or(48),
            failure_persistence: None,
            ..Config::default()
        });
        runner
            .run(&strategy, |(muts, cut)| {
                let mut bytes = original.clone();
                for (r, off, val) in muts {
                    let (start, n) = regions[r];
                    bytes[start + usize::from(off) % n] = val;
                }
                if let Some(c) = cut {
                    bytes.truncate(c);
                }
                // With the file tree too, when the mutated image still has one.
                let shared: std::sync::Arc<dyn ByteSource> = std::sync::Arc::new(bytes.clone());
                let tree = bootstick::image::open::open_tree(shared).ok();
                let inspection = bootstick::inspect::inspect(&bytes, tree.as_deref());
                if let Ok(i) = inspection {
                    prop_assert!(!i.decision.reasons.is_empty());
                    for b in i.el_torito.iter().flat_map(|e| &e.images) {
                        let inside =
                            b.image.offset.saturating_add(b.image.len) <= bytes.len() as u64;
                        prop_assert!(inside || (b.image.len == 0 && b.image.truncated));
                    }
                }
                Ok(())
            })
            .unwrap();
    }
}

/// (number, start, sectors, type in sfdisk's hex, bootable) of every MBR
/// partition `sfdisk --json` reads from `img`, extended and logical included.
fn sfdisk_mbr_rows(img: &Path) -> Vec<(u64, u64, u64, String, bool)> {
    let out = common::run(Command::new("sfdisk").arg("--json").arg(img));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let pt = &v["partitiontable"];
    assert_eq!(pt["label"], "dos", "{pt}");
    let prefix = img.to_str().unwrap();
    let mut rows: Vec<_> = pt["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let node = p["node"].as_str().unwrap();
            (
                node.strip_prefix(prefix).unwrap().parse().unwrap(),
                p["start"].as_u64().unwrap(),
                p["size"].as_u64().unwrap(),
                p["type"].as_str().unwrap().to_owned(),
                p.get("bootable").is_some_and(|b| b == true),
            )
        })
        .collect();
    rows.sort();
    rows
}

/// The same rows from `inspect --json`'s `partitions.mbr` (primary entries
/// and logical partitions).
fn our_mbr_rows(v: &serde_json::Value) -> Vec<(u64, u64, u64, String, bool)> {
    let mbr = &v["partitions"]["mbr"];
    let mut rows: Vec<_> = ["entries", "logical"]
        .iter()
        .flat_map(|k| mbr[k].as_array().unwrap())
        .map(|e| {
            (
                e["index"].as_u64().unwrap(),
                e["start_lba"].as_u64().unwrap(),
                e["sectors"].as_u64().unwrap(),
                format!("{:x}", e["type"].as_u64().unwrap()),
                e["active"].as_bool().unwrap(),
            )
        })
        .collect();
    rows.sort();
    rows
}

/// Logical partitions: `sfdisk` builds MBRs with an extended partition (0x05,
/// 0x0F, 0x85) holding a chain of logical partitions, or none at all, and
/// `inspect --json` must list exactly the partitions `sfdisk --json` reads
/// back: number, start, size, type and boot flag.
#[test]
fn logical_partitions_match_sfdisk() {
    if !common::require_tools("logical_partitions_match_sfdisk", &["sfdisk"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    let n = img.to_str().unwrap();
    let many: String = (5..17)
        .map(|i| {
            format!(
                "{n}{i}: size={}, type={}\n",
                2048 * (i % 3 + 1),
                ["83", "c", "7"][i % 3]
            )
        })
        .collect();
    let cases = [
        format!(
            "label: dos\n\
             {n}1: start=2048, size=8192, type=83, bootable\n\
             {n}2: start=10240, size=100000, type=f\n\
             {n}5: size=4096, type=83\n\
             {n}6: size=8192, type=82, bootable\n\
             {n}7: size=2048, type=c\n\
             {n}8: size=2048, type=ef\n\
             {n}3: start=110592, size=4096, type=c\n"
        ),
        format!(
            "label: dos\n\
             {n}1: start=2048, size=8192, type=c\n\
             {n}2: start=10240, size=50000, type=5\n"
        ),
        format!("label: dos\n{n}1: start=4096, size=120000, type=85\n{many}"),
    ];
    for (i, script) in cases.iter().enumerate() {
        common::sfdisk_image(&img, 64 << 20, script);

        let theirs = sfdisk_mbr_rows(&img);
        let logical = theirs.iter().filter(|r| r.0 >= 5).count();
        assert_eq!(logical, [4, 0, 12][i], "case {i}: {theirs:?}");
        let v = inspect_json(&img);
        assert_eq!(our_mbr_rows(&v), theirs, "case {i}");
        assert_eq!(v["problems"], serde_json::json!([]), "case {i}");

        let human = common::run(common::bootstick().arg("inspect").arg(&img));
        for r in theirs.iter().filter(|r| r.0 >= 5) {
            let line = format!(
                "  {} type {:#04x} logical",
                r.0,
                u8::from_str_radix(&r.3, 16).unwrap()
            );
            assert!(human.contains(&line), "case {i}: no {line:?} in\n{human}");
        }
    }
}

/// `bootstick write --yes IMAGE TARGET`: exit code and stderr.
fn write_to(img: &Path, target: &Path) -> (Option<i32>, String) {
    let out = common::bootstick()
        .args(["write", "--yes"])
        .arg(img)
        .arg(target)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Issue 10, item 12: an image that ends before its ISO 9660 volume or a
/// partition does is a problem for `inspect` (JSON `truncated` and the
/// first `problems` entry, the human report too), and `write` refuses it
/// (exit 3) before the target exists. The volume size is `isosize`'s, the
/// partitions `sfdisk`'s. A GPT disk image cut after its last partition
/// (the backup header gone, as `truncate` or a partial `dd` leaves it) is
/// still written. Before, both truncated images were written, exit 0, and
/// `inspect` listed no truncation.
#[test]
fn truncated_images_are_a_problem_and_write_refuses_them() {
    if !common::require_tools(
        "truncated_images_are_a_problem_and_write_refuses_them",
        &["grub-mkrescue", "xorriso", "isosize", "sfdisk"],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("stick.img");

    // A grub-mkrescue hybrid cut at 1 MiB.
    let img = recipes::image("inspect", "grub-hybrid");
    let volume: u64 = common::run(Command::new("isosize").arg(&img))
        .trim()
        .parse()
        .unwrap();
    let cut = dir.path().join("cut.iso");
    std::fs::write(&cut, &std::fs::read(&img).unwrap()[..1 << 20]).unwrap();
    let v = inspect_json(&cut);
    let t = &v["truncated"];
    assert_eq!(t["image_bytes"], 1 << 20, "{v:#}");
    assert!(t["declared_bytes"].as_u64().unwrap() >= volume, "{v:#}");
    let first = v["problems"][0].as_str().unwrap();
    assert!(
        first.contains("ends at byte 1048576") && first.contains("truncated download?"),
        "{first}"
    );
    let human = common::run(common::bootstick().arg("inspect").arg(&cut));
    assert!(
        human.contains("problem      the image ends at byte 1048576"),
        "{human}"
    );
    let (code, err) = write_to(&cut, &target);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("truncated download?"), "{err}");
    assert!(
        !target.exists(),
        "a refused write must not create the target"
    );
    // The whole image is not truncated.
    assert!(inspect_json(&img).get("truncated").is_none());

    // A GPT disk image: one partition of 32 MiB from 1 MiB.
    let disk = dir.path().join("disk.img");
    common::sfdisk_image(&disk, 64 << 20, "label: gpt\nstart=2048, size=65536\n");
    let f = std::fs::OpenOptions::new().write(true).open(&disk).unwrap();
    f.set_len(40 << 20).unwrap();
    let v = inspect_json(&disk);
    assert!(v.get("truncated").is_none(), "{v:#}");
    assert_eq!(v["partitions"]["gpt"]["backup"]["state"], "outside-image");
    let (code, err) = write_to(&disk, &target);
    assert_eq!(code, Some(0), "cut after the partition: {err}");
    std::fs::remove_file(&target).unwrap();
    f.set_len(20 << 20).unwrap();
    let v = inspect_json(&disk);
    assert_eq!(
        v["truncated"]["declared_bytes"],
        (2048 + 65536) * 512,
        "{v:#}"
    );
    assert_eq!(v["truncated"]["by"]["table"], "gpt", "{v:#}");
    assert_eq!(v["truncated"]["by"]["index"], 1, "{v:#}");
    let (code, err) = write_to(&disk, &target);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("GPT partition 1"), "{err}");
    assert!(!target.exists());
}
