//! Partition tables built by `layout::partition`, read by util-linux's
//! `sfdisk --json` and checked by `sgdisk -v` (gdisk): tools we did not
//! write must see exactly the partitions we meant, with valid CRCs and a
//! consistent backup GPT.

use crate::common;

use bootstick::layout::partition::{self, Kind, Partition};
use std::path::Path;
use std::process::Command;

const MIB: u64 = 1 << 20;

fn parts() -> Vec<Partition> {
    vec![
        Partition {
            start: MIB,
            len: 32 * MIB,
            kind: Kind::EfiSystem,
            name: "EFI system".into(),
            bootable: true,
        },
        Partition {
            start: 33 * MIB,
            len: 30 * MIB,
            kind: Kind::Fat32Data,
            name: "Données".into(),
            bootable: false,
        },
    ]
}

fn disk(dir: &Path, size: u64, pieces: &[(u64, &[u8])]) -> std::path::PathBuf {
    use std::os::unix::fs::FileExt;
    let p = dir.join("disk.img");
    let f = std::fs::File::create(&p).unwrap();
    f.set_len(size).unwrap();
    for (at, bytes) in pieces {
        f.write_all_at(bytes, *at).unwrap();
    }
    p
}

fn sfdisk_json(img: &Path) -> serde_json::Value {
    let out = common::run(Command::new("sfdisk").arg("--json").arg(img));
    serde_json::from_str::<serde_json::Value>(&out).unwrap()["partitiontable"].clone()
}

#[test]
fn mbr_is_read_by_sfdisk() {
    let t = "mbr_is_read_by_sfdisk";
    if !common::require_tools(t, &["sfdisk"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let size = 64 * MIB;
    let mbr = partition::mbr(0xB007_5711, size, &parts()).unwrap();
    let img = disk(dir.path(), size, &[(0, &mbr)]);
    let pt = sfdisk_json(&img);
    assert_eq!(pt["label"], "dos", "{pt}");
    assert_eq!(pt["id"], "0xb0075711", "{pt}");
    let p = pt["partitions"].as_array().unwrap();
    assert_eq!(p.len(), 2, "{pt}");
    assert_eq!(
        (p[0]["start"].as_u64(), p[0]["size"].as_u64()),
        (Some(2048), Some(65536))
    );
    assert_eq!(p[0]["type"], "ef");
    assert_eq!(p[0]["bootable"], true);
    assert_eq!(
        (p[1]["start"].as_u64(), p[1]["size"].as_u64()),
        (Some(67584), Some(61440))
    );
    assert_eq!(p[1]["type"], "c");
    assert!(p[1].get("bootable").is_none_or(|b| b == false));
}

#[test]
fn gpt_is_verified_by_sgdisk_and_read_by_sfdisk() {
    let t = "gpt_is_verified_by_sgdisk_and_read_by_sfdisk";
    if !common::require_tools(t, &["sgdisk", "sfdisk"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let size = 64 * MIB;
    let disk_guid = partition::guid("0B005714-C4A1-4E3B-9D3F-202611290001");
    let gpt = partition::gpt(size, disk_guid, &parts()).unwrap();
    assert_eq!(gpt.backup_at + gpt.backup.len() as u64, size);
    let img = disk(
        dir.path(),
        size,
        &[(0, &gpt.primary), (gpt.backup_at, &gpt.backup)],
    );

    let verify = common::run(Command::new("sgdisk").arg("-v").arg(&img));
    assert!(verify.contains("No problems found"), "sgdisk -v:\n{verify}");
    let pt = sfdisk_json(&img);
    assert_eq!(pt["label"], "gpt", "{pt}");
    assert_eq!(pt["id"], "0B005714-C4A1-4E3B-9D3F-202611290001", "{pt}");
    assert_eq!(pt["firstlba"].as_u64(), Some(34), "{pt}");
    assert_eq!(pt["lastlba"].as_u64(), Some(size / 512 - 34), "{pt}");
    let p = pt["partitions"].as_array().unwrap();
    assert_eq!(p.len(), 2, "{pt}");
    assert_eq!(
        (p[0]["start"].as_u64(), p[0]["size"].as_u64()),
        (Some(2048), Some(65536))
    );
    assert_eq!(p[0]["type"], "C12A7328-F81F-11D2-BA4B-00A0C93EC93B");
    assert_eq!(p[0]["name"], "EFI system");
    assert_eq!(p[1]["type"], "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7");
    assert_eq!(p[1]["name"], "Données");
    assert_ne!(p[0]["uuid"], p[1]["uuid"]);

    // Corrupting one byte of the primary entry array must be caught by the
    // CRC (sgdisk falls back to the backup and says so): the oracle can fail.
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
    f.write_all_at(&[0x5A], 1024 + 56).unwrap();
    let out = Command::new("sgdisk").arg("-v").arg(&img).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("CRC for the main partition table is invalid"),
        "a corrupted entry array went unnoticed:\n{text}"
    );
}

/// `layout::disk::fat32_stick` under both tables: sfdisk sees one FAT32
/// data partition from 1 MiB ending on a MiB boundary, and mtools reads the
/// files from the volume inside it.
#[test]
fn fat32_stick_is_read_by_sfdisk_and_mtools() {
    use bootstick::layout::disk::{self, Options, Table};
    use bootstick::layout::fat32::{Content, Dir};
    let t = "fat32_stick_is_read_by_sfdisk_and_mtools";
    if !common::require_tools(t, &["sfdisk", "sgdisk", "mtype"]) {
        return;
    }
    for table in [Table::Mbr, Table::Gpt] {
        let dir = tempfile::tempdir().unwrap();
        let size = 100 * MIB + 12345 * 512;
        let mut root = Dir::new();
        let mut sub = Dir::new();
        sub.file(
            "Hello World.txt",
            Content::Bytes(std::sync::Arc::from(&b"hello from the stick\n"[..])),
        );
        root.dir("sources", sub);
        let (plan, _) = disk::fat32_stick(
            &root,
            &Options {
                size,
                table,
                label: "WIN11".into(),
                id: 7,
                mtime: 0,
            },
        )
        .unwrap();
        let src = dir.path().join("empty-source");
        std::fs::write(&src, b"").unwrap();
        let img = dir.path().join("stick.img");
        let mut target = bootstick::write::Target::file(&img).unwrap();
        bootstick::write::write(
            &plan,
            &std::fs::File::open(&src).unwrap(),
            &mut target,
            bootstick::write::Options::default(),
            &bootstick::events::Silent,
        )
        .unwrap();
        drop(target);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&img)
            .unwrap()
            .set_len(size)
            .unwrap();

        let pt = sfdisk_json(&img);
        let p = pt["partitions"].as_array().unwrap();
        assert_eq!(p.len(), 1, "{table:?}: {pt}");
        assert_eq!(p[0]["start"].as_u64(), Some(2048), "{table:?}: {pt}");
        let end = (p[0]["start"].as_u64().unwrap() + p[0]["size"].as_u64().unwrap()) * 512;
        assert_eq!(
            end % MIB,
            0,
            "{table:?}: partition end not MiB-aligned: {pt}"
        );
        match table {
            Table::Mbr => assert_eq!(p[0]["type"], "c"),
            Table::Gpt => {
                assert_eq!(p[0]["type"], "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7");
                let v = common::run(Command::new("sgdisk").arg("-v").arg(&img));
                assert!(v.contains("No problems found"), "sgdisk -v:\n{v}");
            }
        }
        let at = format!("{}@@1M", img.display());
        let body = common::run(
            Command::new("mtype")
                .args(["-i", &at])
                .arg("::/sources/Hello World.txt"),
        );
        assert_eq!(body, "hello from the stick\n", "{table:?}");
    }
}
