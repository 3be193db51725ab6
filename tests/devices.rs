//! Device enumeration and target safety.
//!
//! Enumeration runs on captured sysfs/mountinfo trees under
//! `tests/fixtures/sysfs/` (what each disk must be classified as is written
//! here, next to the tree) and on the real machine, checked against `lsblk`.

mod common;

use bootstick::devices::{self, Disk, Kind, Roots, Transport};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/sysfs")
        .join(name)
}

fn disks(name: &str) -> BTreeMap<String, Disk> {
    devices::by_name(devices::enumerate(&Roots::under(&fixture(name))).unwrap())
}

fn file_name(p: &Option<PathBuf>) -> Option<String> {
    p.as_ref()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
}

/// (name, transport, kind, removable, system, listed by default)
type Class = (&'static str, Transport, Kind, bool, bool, bool);

fn check_classes(tree: &str, expected: &[Class]) {
    let d = disks(tree);
    let names: Vec<&str> = d.keys().map(String::as_str).collect();
    let mut want: Vec<&str> = expected.iter().map(|c| c.0).collect();
    want.sort();
    assert_eq!(names, want, "{tree}: the set of whole disks");
    for &(name, transport, kind, removable, system, listed) in expected {
        let disk = &d[name];
        assert_eq!(
            (
                disk.transport,
                disk.kind,
                disk.removable,
                disk.system,
                disk.listed_by_default
            ),
            (transport, kind, removable, system, listed),
            "{tree}/{name}: (transport, kind, removable, system, listed_by_default)"
        );
    }
}

#[test]
fn laptop_tree_is_classified() {
    use Kind::{Disk, Optical};
    use Transport::*;
    check_classes(
        "laptop",
        &[
            // SATA system disk: /boot/efi, /boot, and / on LVM on dm-crypt on sda3.
            ("sda", Sata, Disk, false, true, false),
            // USB stick (removable=1).
            ("sdb", Usb, Disk, true, false, true),
            // USB SSD in a UAS enclosure: removable=0 but USB-attached.
            ("sdc", Usb, Disk, false, false, true),
            // USB SD card reader with a card.
            ("sdd", Usb, Disk, true, false, true),
            // SD card in an SDHCI slot: sysfs removable=0, card type SD.
            ("mmcblk0", Mmc, Disk, true, false, true),
            // Internal NVMe data disk, mounted but not a system mount.
            ("nvme0n1", Nvme, Disk, false, false, false),
            // Disk with an active swap partition.
            ("sde", Sata, Disk, false, true, false),
            ("sr0", Sata, Optical, true, false, false),
            // Attached loop device; the unattached loop1 (size 0) is left out.
            ("loop0", Transport::Loop, Kind::Loop, false, false, false),
        ],
    );
}

#[test]
fn laptop_tree_details() {
    let d = disks("laptop");
    let sda = &d["sda"];
    assert_eq!(
        sda.system_reasons,
        vec!["/", "/boot", "/boot/efi", "swap /dev/dm-2"]
    );
    assert_eq!(sda.serial.as_deref(), Some("S3Z1NB0K123456A"));
    assert_eq!(
        sda.vendor, None,
        "the SCSI-translation vendor \"ATA\" is no vendor"
    );
    assert_eq!(
        file_name(&sda.by_id).as_deref(),
        Some("ata-Samsung_SSD_860_EVO_500GB_S3Z1NB0K123456A"),
        "bus-named by-id links win over wwn- links"
    );
    assert_eq!(sda.partitions.len(), 3);
    assert_eq!(sda.partitions[2].holders, vec!["dm-0"]);
    assert_eq!(
        sda.partitions[0].mountpoints,
        vec![PathBuf::from("/boot/efi")]
    );
    assert_eq!(sda.size_bytes, 500 << 30);

    let sdb = &d["sdb"];
    assert_eq!(sdb.vendor.as_deref(), Some("SanDisk"));
    assert_eq!(sdb.model.as_deref(), Some("Cruzer Blade"));
    assert_eq!(
        sdb.serial.as_deref(),
        Some("4C530001231019115082"),
        "from the USB device"
    );
    assert_eq!(
        file_name(&sdb.by_id).as_deref(),
        Some("usb-SanDisk_Cruzer_Blade_4C530001231019115082-0:0")
    );
    assert!(file_name(&sdb.by_path).unwrap().contains("-usb-"));
    assert_eq!(sdb.size_bytes, 30031872 * 512);
    let p = &sdb.partitions[0];
    assert_eq!(
        (
            p.number,
            p.start_bytes,
            p.fstype.as_deref(),
            p.label.as_deref()
        ),
        (Some(1), 2048 * 512, Some("vfat"), Some("MY STICK"))
    );
    assert_eq!(p.mountpoints, vec![PathBuf::from("/media/u/MY STICK")]);

    let sdc = &d["sdc"];
    assert_eq!(
        (sdc.logical_block_size, sdc.physical_block_size),
        (512, 4096)
    );
    assert_eq!(
        sdc.partitions[0].label.as_deref(),
        Some("T7"),
        "label from /dev/disk/by-label"
    );

    let nvme = &d["nvme0n1"];
    assert_eq!(nvme.model.as_deref(), Some("Samsung SSD 970 EVO Plus 1TB"));
    assert_eq!(nvme.serial.as_deref(), Some("S4EWNX0R123456"));
    assert_eq!(
        nvme.partitions[0].mountpoints,
        vec![PathBuf::from("/srv/data")]
    );

    assert_eq!(
        d["sde"].serial.as_deref(),
        Some("WD-WCC6Y0123456"),
        "from VPD page 0x80"
    );
    assert_eq!(d["sde"].system_reasons, vec!["swap /dev/sde1"]);
    assert!(d["sde"].partitions[0].swap && !d["sde"].partitions[1].swap);
    assert_eq!(d["mmcblk0"].serial.as_deref(), Some("0x1234abcd"));
    assert_eq!(d["loop0"].mountpoints, vec![PathBuf::from("/snap/core/1")]);
}

#[test]
fn btrfs_root_and_swap_file_are_traced_to_their_disks() {
    use Kind::Disk;
    use Transport::*;
    check_classes(
        "btrfs-swapfile",
        &[
            // / and /home are btrfs subvolumes (device 0:24): traced by source.
            ("nvme0n1", Nvme, Disk, false, true, false),
            // Holds only the filesystem of the active swap file.
            ("nvme1n1", Nvme, Disk, false, true, false),
            // A blank stick: no partition, no filesystem, still listed.
            ("sda", Usb, Disk, true, false, true),
        ],
    );
    let d = disks("btrfs-swapfile");
    assert_eq!(d["nvme0n1"].system_reasons, vec!["/", "/boot/efi", "/home"]);
    assert_eq!(d["nvme1n1"].system_reasons, vec!["swap /var/swap/swapfile"]);
    assert!(d["sda"].partitions.is_empty());
}

fn list_json(args: &[&str]) -> Vec<serde_json::Value> {
    let out = common::run(common::bootstick().arg("list").arg("--json").args(args));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("list --json is not JSON: {e}\n{out}"))
}

#[test]
fn list_json_schema_and_default_view() {
    let root = fixture("laptop");
    let root = root.to_str().unwrap();
    let default = list_json(&["--root", root]);
    let names: Vec<&str> = default
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["mmcblk0", "sdb", "sdc", "sdd"]);
    let all = list_json(&["--all", "--root", root]);
    assert_eq!(all.len(), 9);
    for d in &all {
        for key in [
            "path",
            "by_id",
            "transport",
            "removable",
            "system",
            "vendor",
            "model",
            "serial",
            "size_bytes",
            "partitions",
        ] {
            assert!(d.get(key).is_some(), "{key} missing in {d}");
        }
    }
    let sdb = default.iter().find(|d| d["name"] == "sdb").unwrap();
    assert_eq!(sdb["transport"], "usb");
    assert_eq!(sdb["size_bytes"], 30031872u64 * 512);
    assert_eq!(sdb["partitions"][0]["label"], "MY STICK");
    let sda = all.iter().find(|d| d["name"] == "sda").unwrap();
    assert_eq!(sda["system"], true);

    // The human table marks the system disk.
    let table = common::run(common::bootstick().args(["list", "--all", "--root", root]));
    let line = table.lines().find(|l| l.contains("/dev/sda ")).unwrap();
    assert!(line.contains("SYSTEM"), "{line}");
}

/// On the real machine: the output parses, and the disk(s) holding `/`
/// according to `findmnt` and `lsblk` are marked system; sizes and flags
/// agree with `lsblk`.
#[test]
fn real_machine_smoke() {
    if !common::require_tools("real_machine_smoke", &["lsblk", "findmnt"]) {
        return;
    }
    let all = list_json(&["--all"]);
    let source = common::run(std::process::Command::new("findmnt").args([
        "-n",
        "-o",
        "SOURCE",
        "--nofsroot",
        "/",
    ]));
    let source = source.trim();
    if source.starts_with("/dev/") {
        let deps = common::run(std::process::Command::new("lsblk").args([
            "-n",
            "-r",
            "-s",
            "-o",
            "NAME,TYPE",
            source,
        ]));
        let roots: Vec<&str> = deps
            .lines()
            .filter_map(|l| l.split_once(' '))
            .filter(|(_, t)| *t == "disk")
            .map(|(n, _)| n)
            .collect();
        assert!(
            !roots.is_empty(),
            "lsblk found no disk under {source}: {deps}"
        );
        for r in roots {
            let d = all
                .iter()
                .find(|d| d["name"] == r)
                .unwrap_or_else(|| panic!("disk {r} holding / is not listed"));
            assert_eq!(d["system"], true, "{r} holds / but is not marked system");
            assert!(d["system_reasons"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x == "/"));
        }
    } else {
        eprintln!("NOTE: / is on {source}, not a block device; only parsing is checked");
    }
    let lsblk = common::run(std::process::Command::new("lsblk").args([
        "-b",
        "-d",
        "-n",
        "-r",
        "-o",
        "NAME,SIZE,RO,TYPE",
    ]));
    for line in lsblk.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        if f.len() != 4 || f[3] != "disk" || f[1] == "0" {
            // Loop devices come and go as other tests run; empty zram/ram
            // devices are left out of the list on purpose.
            continue;
        }
        let d = all
            .iter()
            .find(|d| d["name"] == f[0])
            .unwrap_or_else(|| panic!("lsblk lists disk {} that list does not", f[0]));
        assert_eq!(
            d["size_bytes"].as_u64().unwrap().to_string(),
            f[1],
            "{}",
            f[0]
        );
        assert_eq!(d["read_only"], f[2] == "1", "{}", f[0]);
    }
}
