//! Device enumeration and target safety.
//!
//! Enumeration runs on captured sysfs/mountinfo trees under
//! `tests/fixtures/sysfs/` (what each disk must be classified as is written
//! here, next to the tree) and on the real machine, checked against `lsblk`.

use crate::common;

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

/// A tree the test-bed guest's kernel and udev made (captured by
/// `scripts/capture-devices.sh`; `tests/testbed.rs` proves such a capture
/// reads exactly like the live system): two QEMU USB sticks, one with an MBR
/// partition, and the mounted virtio system disk holding `/boot`.
#[test]
fn testbed_guest_tree_is_classified() {
    use Kind::Disk;
    use Transport::*;
    check_classes(
        "testbed-guest",
        &[
            ("sda", Usb, Disk, true, false, true),
            ("sdb", Usb, Disk, true, false, true),
            ("vda", Virtio, Disk, false, true, false),
        ],
    );
    let d = disks("testbed-guest");
    assert_eq!(d["sda"].serial.as_deref(), Some("BSTCAP01"));
    assert_eq!(d["sdb"].serial.as_deref(), Some("BSTCAP02"));
    assert_eq!(d["sda"].vendor.as_deref(), Some("QEMU"));
    assert_eq!(d["sda"].model.as_deref(), Some("QEMU HARDDISK"));
    assert_eq!(
        file_name(&d["sda"].by_id).as_deref(),
        Some("usb-QEMU_QEMU_HARDDISK_BSTCAP01-0:0")
    );
    assert_eq!(d["sda"].size_bytes, 64 << 20);
    assert_eq!(d["sdb"].size_bytes, 96 << 20);
    let parts = &d["sda"].partitions;
    assert_eq!(parts.len(), 1);
    assert_eq!(
        (parts[0].start_bytes, parts[0].size_bytes),
        (1 << 20, 32 << 20)
    );
    assert!(d["sdb"].partitions.is_empty());
    assert_eq!(d["vda"].system_reasons, ["/boot"]);
    assert_eq!(d["vda"].fstype.as_deref(), Some("ext4"));
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
    common::json_result(out.as_bytes())["disks"]
        .as_array()
        .unwrap_or_else(|| panic!("list --json has no `disks` array:\n{out}"))
        .clone()
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

    // The human table marks the system disk: on its line when there is
    // room (COLUMNS=200), else on the indented notes line right below it
    // (80 columns, the default without a terminal).
    for (columns, notes_line) in [("200", 0), ("80", 1)] {
        let table = common::run(
            common::bootstick()
                .args(["list", "--all", "--root", root])
                .env("COLUMNS", columns),
        );
        let line = table
            .lines()
            .skip_while(|l| !l.contains("/dev/sda "))
            .nth(notes_line)
            .unwrap();
        assert!(line.contains("SYSTEM"), "{columns}: {line}\n{table}");
    }
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
        // A container's overlay root: the system-disk half cannot run here.
        common::skip(
            "real_machine_smoke",
            &format!("/ is on {source}, not a block device: the system disk cannot be checked"),
        );
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

// ---------------------------------------------------------------------------
// Target resolution and the refusal rules, on the captured trees.

fn resolve_in(tree: &str, target: &str) -> Result<devices::Resolved, devices::Error> {
    devices::resolve(&Roots::under(&fixture(tree)), Path::new(target))
}

fn resolved_name(r: devices::Resolved) -> (String, bool) {
    match r {
        devices::Resolved::Disk { disk, by_path } => (disk.name, by_path),
        other => panic!("expected a disk, got {other:?}"),
    }
}

#[test]
fn targets_resolve_by_path_link_and_serial() {
    let name = |t| resolved_name(resolve_in("laptop", t).unwrap());
    assert_eq!(name("/dev/sdb"), ("sdb".into(), true));
    assert_eq!(
        name("/dev/disk/by-id/usb-SanDisk_Cruzer_Blade_4C530001231019115082-0:0"),
        ("sdb".into(), true)
    );
    assert_eq!(
        name("/dev/disk/by-path/pci-0000:00:14.0-usb-0:1:1.0-scsi-0:0:0:0"),
        ("sdb".into(), true)
    );
    assert_eq!(name("4C530001231019115082"), ("sdb".into(), false));
    assert_eq!(
        name("usb-Samsung_PSSD_T7_S5SXNG0R700001K-0:0"),
        ("sdc".into(), false)
    );
    // Any by-id name, not only the preferred one.
    assert_eq!(name("wwn-0x5002538e40a0b1c2"), ("sda".into(), false));
    // An explicitly named loop device is a target; it has no serial to find it by.
    assert_eq!(name("/dev/loop0"), ("loop0".into(), true));
}

#[test]
fn bad_targets_are_explained() {
    let err = |t| resolve_in("laptop", t).unwrap_err();
    let e = err("/dev/sdb1");
    assert!(
        matches!(&e, devices::Error::Partition { disk, .. } if disk.ends_with("dev/sdb")),
        "{e}"
    );
    assert!(e.to_string().contains("partition sdb1 of the disk"), "{e}");
    let e = err("/dev/disk/by-id/usb-SanDisk_Cruzer_Blade_4C530001231019115082-0:0-part1");
    assert!(matches!(e, devices::Error::Partition { .. }), "{e}");
    let e = err("/dev/mapper/vg-root");
    assert!(
        matches!(&e, devices::Error::NotWholeDisk { name, .. } if name == "dm-1"),
        "{e}"
    );
    let e = err("NOSUCHSERIAL");
    assert!(
        matches!(&e, devices::Error::UnknownTarget { target, files: false } if target == "NOSUCHSERIAL"),
        "{e}"
    );
    assert!(e.to_string().contains("bootstick list"), "{e}");
    // The ./NAME.img form is named only where a file may be created.
    assert!(!e.to_string().contains(".img"), "{e}");
    let e = e.for_writing();
    assert!(
        e.to_string()
            .contains("give a path such as ./NOSUCHSERIAL.img"),
        "{e}"
    );
    // A /dev path that names nothing is a missing device, never a file to
    // create: no "give a path such as .//dev/sdz.img" (issue 10, item 17).
    let e = err("/dev/sdz");
    assert!(matches!(e, devices::Error::NoSuchDevice { .. }), "{e}");
    assert!(
        e.to_string().contains("no such device") && e.to_string().contains("bootstick list"),
        "{e}"
    );
    assert!(!e.to_string().contains(".img"), "{e}");
    // A directory is neither a disk nor an image file.
    let e = devices::resolve(&Roots::live(), Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap_err();
    assert!(matches!(e, devices::Error::NotATarget { .. }), "{e}");
    // A new path is an image file to create, an existing regular file too.
    let r = resolve_in("laptop", "out/stick.img").unwrap();
    assert_eq!(r, devices::Resolved::File("out/stick.img".into()));
}

#[test]
fn refusal_rules() {
    use devices::{check, Error as E, Policy};
    let d = disks("laptop");
    let none = Policy::default();
    let all = Policy {
        unmount: true,
        force: true,
    };
    // The system disk: no flag overrides it.
    let e = check(&d["sda"], 1, all).unwrap_err();
    assert!(matches!(e, E::SystemDisk { .. }), "{e}");
    assert!(e.to_string().contains("/boot/efi"), "{e}");
    assert!(matches!(
        check(&d["sde"], 1, all),
        Err(E::SystemDisk { .. })
    ));
    // An internal disk needs --force, then its mounts need --unmount.
    let e = check(&d["nvme0n1"], 1, none).unwrap_err();
    assert!(
        matches!(e, E::NotRemovable { .. }) && e.to_string().contains("neither removable nor USB"),
        "{e}"
    );
    let force = Policy {
        force: true,
        unmount: false,
    };
    let e = check(&d["nvme0n1"], 1, force).unwrap_err();
    assert!(
        matches!(e, E::Mounted { .. }) && e.to_string().contains("/srv/data"),
        "{e}"
    );
    check(&d["nvme0n1"], 1, all).unwrap();
    // A USB SSD with removable=0 needs no --force; a mounted stick needs --unmount.
    check(&d["sdc"], 1, none).unwrap();
    let e = check(&d["sdb"], 1, none).unwrap_err();
    assert!(matches!(e, E::Mounted { .. }), "{e}");
    let unmount = Policy {
        unmount: true,
        force: false,
    };
    check(&d["sdb"], 1, unmount).unwrap();
    let e = check(&d["sdb"], d["sdb"].size_bytes + 1, unmount).unwrap_err();
    assert!(matches!(e, E::TooSmall { .. }), "{e}");
    // Read-only, swap and stacked devices, whatever the flags.
    let mut ro = d["sdc"].clone();
    ro.read_only = true;
    assert!(matches!(check(&ro, 1, all), Err(E::ReadOnly { .. })));
    let mut swap = d["sdc"].clone();
    swap.partitions[0].swap = true;
    assert!(matches!(check(&swap, 1, all), Err(E::Swap { .. })));
    let mut held = d["sdc"].clone();
    held.partitions[0].holders = vec!["dm-3".into()];
    let e = check(&held, 1, all).unwrap_err();
    assert!(
        matches!(e, E::Held { .. }) && e.to_string().contains("dm-3 on sdc1"),
        "{e}"
    );
    // The picker offers exactly the non-system disks of the default view.
    let offered: Vec<&str> = d
        .values()
        .filter(|x| devices::eligible(x))
        .map(|x| x.name.as_str())
        .collect();
    assert_eq!(offered, vec!["mmcblk0", "sdb", "sdc", "sdd"]);
}

/// The edges of the rules, each a verdict a flipped comparison in
/// `devices::safety` or `devices::resolve` would get wrong without another
/// test noticing (mutation testing, `scripts/mutants.sh devices`).
#[test]
fn refusal_rules_at_their_edges() {
    use devices::{check, Error as E, Policy};
    let d = disks("laptop");
    let none = Policy::default();
    // A disk exactly as large as needed takes the image; one byte more is
    // too much.
    let size = d["sdc"].size_bytes;
    check(&d["sdc"], size, none).unwrap();
    let e = check(&d["sdc"], size + 1, none).unwrap_err();
    assert!(
        matches!(e, E::TooSmall { size: s, needed, .. } if s == size && needed == size + 1),
        "{e}"
    );
    // A loop device is neither removable nor USB, yet needs no --force: the
    // rule is about internal disks. (This one is mounted: --unmount.)
    assert_eq!(d["loop0"].kind, Kind::Loop);
    let unmount = Policy {
        unmount: true,
        force: false,
    };
    check(&d["loop0"], 1, unmount).unwrap();
    // A card reader without a card (size 0) is not offered by the picker.
    let mut empty = d["sdd"].clone();
    assert!(devices::eligible(&empty));
    empty.size_bytes = 0;
    assert!(!devices::eligible(&empty));
    // A TARGET with only a dot or only a slash is still an image file to
    // create, not a serial number.
    for t in ["stick.img", "out/stick"] {
        assert_eq!(
            resolve_in("laptop", t).unwrap(),
            devices::Resolved::File(t.into()),
            "{t}"
        );
    }
}

// ---------------------------------------------------------------------------
// The guarded open, unmount and partition re-read, on real loop devices.

/// Retries `f` for a few seconds while it fails.
///
/// Tests in this binary run in parallel threads and spawn programs. Between
/// `fork` and `exec` a child holds copies of *all* the parent's descriptors,
/// including another test's O_EXCL claim and flock on its loop device, until
/// `O_CLOEXEC` closes them. On a loaded machine that window is long enough for
/// a device that was just released to still look claimed, so an expected
/// success is retried; expected refusals are never retried.
fn retry_while_shared<T, E: std::fmt::Display>(
    mut f: impl FnMut() -> Result<T, E>,
) -> Result<T, E> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match f() {
            Err(e) if std::time::Instant::now() < deadline => {
                eprintln!("retrying after: {e}");
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            r => return r,
        }
    }
}

/// The guarded open of a disk that is expected to succeed (see
/// [`retry_while_shared`] for why a momentary `Busy` is retried).
fn guarded_open(disk: &Disk) -> devices::Guarded {
    retry_while_shared(|| match devices::Guarded::open(&Roots::live(), disk) {
        Err(e @ devices::Error::Busy { .. }) => Err(e),
        other => Ok(other),
    })
    .unwrap()
    .unwrap()
}

fn loop_disk(lo: &common::LoopDevice) -> Disk {
    match devices::resolve(&Roots::live(), lo.path()).unwrap() {
        devices::Resolved::Disk { disk, by_path } => {
            assert!(by_path);
            *disk
        }
        other => panic!("{} resolved to {other:?}", lo.path().display()),
    }
}

fn cmp(a: &Path, b: &Path) {
    common::run(std::process::Command::new("cmp").arg(a).arg(b));
}

fn is_mounted(dev: &Path) -> bool {
    std::process::Command::new("findmnt")
        .arg("--source")
        .arg(dev)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap()
        .success()
}

#[test]
fn mounted_loop_is_refused_then_unmounted_deepest_first() {
    if !common::require_root("mounted_loop_is_refused_then_unmounted_deepest_first")
        || !common::require_tools(
            "mounted_loop_is_refused_then_unmounted_deepest_first",
            &["mkfs.ext4", "mount", "findmnt"],
        )
    {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let backing = tmp.path().join("ext4.img");
    std::fs::File::create(&backing)
        .unwrap()
        .set_len(32 << 20)
        .unwrap();
    common::run(
        std::process::Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .arg(&backing),
    );
    let lo = common::LoopDevice::attach(&backing);
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    common::run(std::process::Command::new("mount").arg(lo.path()).arg(&mnt));
    let inner = mnt.join("sub");
    std::fs::create_dir(&inner).unwrap();
    // The same filesystem bind-mounted below itself: only deepest-first works.
    common::run(
        std::process::Command::new("mount")
            .arg("--bind")
            .arg(&mnt)
            .arg(&inner),
    );

    let disk = loop_disk(&lo);
    let mut points: Vec<&PathBuf> = disk.all_mountpoints().collect();
    points.sort();
    assert_eq!(points, vec![&mnt, &inner]);
    let e = devices::check(&disk, 1 << 20, devices::Policy::default()).unwrap_err();
    assert!(matches!(e, devices::Error::Mounted { .. }), "{e}");
    assert!(e.to_string().contains(mnt.to_str().unwrap()), "{e}");
    // The kernel agrees: the exclusive open fails while it is mounted.
    let e = devices::Guarded::open(&Roots::live(), &disk).unwrap_err();
    assert!(matches!(e, devices::Error::Busy { .. }), "{e}");

    let policy = devices::Policy {
        unmount: true,
        force: false,
    };
    devices::check(&disk, 1 << 20, policy).unwrap();
    let done = devices::unmount_all(&Roots::live(), &disk).unwrap();
    assert_eq!(done, vec![inner.clone(), mnt.clone()]);
    assert!(
        !is_mounted(lo.path()),
        "findmnt still shows {}",
        lo.path().display()
    );
    let g = guarded_open(&disk);
    // While we hold it, nothing can mount it.
    let out = std::process::Command::new("mount")
        .arg(lo.path())
        .arg(&mnt)
        .output()
        .unwrap();
    assert!(!out.status.success(), "mounted while held exclusively");
    drop(g);
}

#[test]
fn exclusive_holder_blocks_the_open_and_nothing_is_written() {
    if !common::require_root("exclusive_holder_blocks_the_open_and_nothing_is_written") {
        return;
    }
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let backing = tmp.path().join("disk.img");
    let copy = tmp.path().join("copy.img");
    common::pseudo_random_file(&backing, 8 << 20, 7);
    std::fs::copy(&backing, &copy).unwrap();
    let lo = common::LoopDevice::attach(&backing);
    let disk = loop_disk(&lo);
    let holder = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_EXCL)
        .open(lo.path())
        .unwrap();
    let e = devices::Guarded::open(&Roots::live(), &disk).unwrap_err();
    assert!(matches!(e, devices::Error::Busy { .. }), "{e}");
    drop(holder);
    let g = guarded_open(&disk);
    // And the other way round: while we hold it, no one else can claim it.
    let other = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_EXCL)
        .open(lo.path());
    assert_eq!(other.unwrap_err().raw_os_error(), Some(libc::EBUSY));
    // flock is held: a non-blocking shared lock (udev's probe) fails.
    let probe = std::fs::File::open(lo.path()).unwrap();
    assert!(rustix::fs::flock(&probe, rustix::fs::FlockOperation::NonBlockingLockShared).is_err());
    drop(g);
    retry_while_shared(|| {
        rustix::fs::flock(&probe, rustix::fs::FlockOperation::NonBlockingLockShared)
            .map_err(|e| e.to_string())
    })
    .unwrap();
    cmp(&backing, &copy);
}

fn set_capacity(lo: &common::LoopDevice, backing: &Path, len: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(backing)
        .unwrap()
        .set_len(len)
        .unwrap();
    common::run(
        std::process::Command::new("losetup")
            .arg("-c")
            .arg(lo.path()),
    );
}

#[test]
fn identity_change_between_choice_and_write_is_caught() {
    if !common::require_root("identity_change_between_choice_and_write_is_caught") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let backing = tmp.path().join("disk.img");
    let copy = tmp.path().join("copy.img");
    common::pseudo_random_file(&backing, 8 << 20, 9);
    std::fs::copy(&backing, &copy).unwrap();
    let lo = common::LoopDevice::attach(&backing);
    let chosen = loop_disk(&lo);
    assert_eq!(chosen.size_bytes, 8 << 20);

    // Changed between the choice and the open: the open refuses.
    set_capacity(&lo, &backing, 12 << 20);
    let e = devices::Guarded::open(&Roots::live(), &chosen).unwrap_err();
    assert!(
        matches!(
            &e,
            devices::Error::IdentityChanged(devices::IdentityChange::Differs {
                what: devices::IdentityField::Size, was, now, ..
            }) if was == "8388608 bytes" && now == "12582912 bytes"
        ) && e
            .to_string()
            .contains("size was 8388608 bytes, now 12582912 bytes"),
        "{e}"
    );

    // Changed after the open, before the first write: the engine's check refuses.
    let chosen = loop_disk(&lo);
    let g = guarded_open(&chosen);
    let check = g.identity_check().unwrap();
    set_capacity(&lo, &backing, 16 << 20);
    let e = check().unwrap_err();
    assert!(
        matches!(
            &e,
            devices::IdentityChange::Differs {
                what: devices::IdentityField::Size,
                ..
            }
        ) && e.to_string().contains("no longer the disk that was chosen"),
        "{e}"
    );
    // The identity stays the one chosen: a fresh check still fails.
    let check = g.identity_check().unwrap();
    assert!(check().is_err(), "the size still differs from the choice");
    drop(g);
    // Choosing the disk again (as it is now) passes.
    let now = loop_disk(&lo);
    let g = guarded_open(&now);
    g.identity_check().unwrap()().unwrap();
    drop(g);

    // Nothing was written: the original bytes are intact, the growth is zeros.
    common::run(
        std::process::Command::new("cmp")
            .arg("-n")
            .arg((8u64 << 20).to_string())
            .arg(&backing)
            .arg(&copy),
    );
}

/// (number, start, size) in bytes of a table, as `sfdisk --json` reads it.
fn sfdisk_parts(path: &Path) -> Vec<(u64, u64, u64)> {
    let out = common::run(std::process::Command::new("sfdisk").arg("--json").arg(path));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mut parts: Vec<(u64, u64, u64)> = v["partitiontable"]["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let node = p["node"].as_str().unwrap();
            let n: u64 = node
                .rsplit(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap()
                .parse()
                .unwrap();
            (
                n,
                p["start"].as_u64().unwrap() * 512,
                p["size"].as_u64().unwrap() * 512,
            )
        })
        .collect();
    parts.sort();
    parts
}

/// The kernel's view: (number, start, size) from sysfs, and whether each
/// partition's device node exists.
fn kernel_parts(lo: &Path) -> Vec<(u64, u64, u64)> {
    let name = lo.file_name().unwrap().to_str().unwrap();
    let dir = Path::new("/sys/block").join(name);
    let mut v = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let read = |f: &str| -> Option<u64> {
            std::fs::read_to_string(p.join(f)).ok()?.trim().parse().ok()
        };
        if let Some(n) = read("partition") {
            assert!(
                Path::new("/dev").join(p.file_name().unwrap()).exists(),
                "no node for {}",
                p.display()
            );
            v.push((n, read("start").unwrap() * 512, read("size").unwrap() * 512));
        }
    }
    v.sort();
    v
}

#[test]
fn partition_table_is_reread_after_writing() {
    if !common::require_root("partition_table_is_reread_after_writing")
        || !common::require_tools("partition_table_is_reread_after_writing", &["sfdisk"])
    {
        return;
    }
    use std::os::unix::fs::FileExt;
    let tmp = tempfile::tempdir().unwrap();
    let two = tmp.path().join("two.img");
    common::sfdisk_image(
        &two,
        16 << 20,
        "label: dos\nstart=2048, size=8192, type=c\nstart=10240, size=10240, type=83\n",
    );
    let one = tmp.path().join("one.img");
    common::sfdisk_image(
        &one,
        16 << 20,
        "label: dos\nstart=4096, size=16384, type=83\n",
    );

    let backing = tmp.path().join("disk.img");
    std::fs::File::create(&backing)
        .unwrap()
        .set_len(16 << 20)
        .unwrap();
    let lo = common::LoopDevice::attach_with(&backing, &["-P"]);
    let disk = loop_disk(&lo);
    assert!(disk.partitions.is_empty());
    let g = guarded_open(&disk);

    // A table written through the guarded handle is made visible.
    let mbr = std::fs::read(&two).unwrap();
    g.file().write_all_at(&mbr[..512], 0).unwrap();
    g.file().sync_all().unwrap();
    let r = g.reread_partitions().unwrap();
    // BLKRRPART where the kernel parses MBRs; BLKPG where it is built without
    // MSDOS partition support (as on the CI machines).
    assert!(
        matches!(
            r.method,
            devices::RereadMethod::Blkrrpart | devices::RereadMethod::Blkpg
        ),
        "{:?}",
        r.method
    );
    assert_eq!(r.partitions.len(), 2);
    assert_eq!(kernel_parts(lo.path()), sfdisk_parts(&two));

    // The BLKPG fallback brings the kernel in line with a new table too.
    let mbr = std::fs::read(&one).unwrap();
    g.file().write_all_at(&mbr[..512], 0).unwrap();
    g.file().sync_all().unwrap();
    g.blkpg_sync().unwrap();
    let nodes = g.wait_for_nodes().unwrap();
    assert_eq!(nodes.len(), 1);
    assert_eq!(kernel_parts(lo.path()), sfdisk_parts(&one));

    // A partition of the loop device is refused, naming the disk.
    let part = nodes[0].clone();
    drop(g);
    let e = devices::resolve(&Roots::live(), &part).unwrap_err();
    assert!(
        matches!(&e, devices::Error::Partition { disk, .. } if disk == lo.path()),
        "{e}"
    );
}

#[test]
fn loop_without_partition_support_needs_no_reread() {
    if !common::require_root("loop_without_partition_support_needs_no_reread") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let backing = tmp.path().join("disk.img");
    std::fs::File::create(&backing)
        .unwrap()
        .set_len(4 << 20)
        .unwrap();
    let lo = common::LoopDevice::attach(&backing);
    let g = guarded_open(&loop_disk(&lo));
    let r = g.reread_partitions().unwrap();
    assert_eq!(r.method, devices::RereadMethod::Unsupported);
}

// ---------------------------------------------------------------------------
// `bootstick write` with the device layer, on real loop devices.

fn ext4_loop(dir: &Path, len: u64) -> (PathBuf, common::LoopDevice) {
    let backing = dir.join("ext4.img");
    std::fs::File::create(&backing)
        .unwrap()
        .set_len(len)
        .unwrap();
    common::run(
        std::process::Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .arg(&backing),
    );
    let lo = common::LoopDevice::attach(&backing);
    (backing, lo)
}

fn write_cli(args: &[&std::ffi::OsStr]) -> std::process::Output {
    common::bootstick()
        .arg("write")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

fn code_and_err(o: &std::process::Output) -> (Option<i32>, String) {
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn cli_write_refuses_a_mounted_disk_and_unmounts_with_the_flag() {
    let t = "cli_write_refuses_a_mounted_disk_and_unmounts_with_the_flag";
    if !common::require_root(t)
        || !common::require_tools(t, &["mkfs.ext4", "mount", "findmnt", "cmp"])
    {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (backing, lo) = ext4_loop(tmp.path(), 16 << 20);
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    common::run(std::process::Command::new("mount").arg(lo.path()).arg(&mnt));
    let img = tmp.path().join("image.iso");
    common::pseudo_random_file(&img, 3 << 20, 11);

    let o = write_cli(&["--yes".as_ref(), img.as_os_str(), lo.path().as_os_str()]);
    let (code, err) = code_and_err(&o);
    assert_eq!(code, Some(4), "{err}");
    assert!(
        err.contains("--unmount") && err.contains(mnt.to_str().unwrap()),
        "{err}"
    );
    assert!(is_mounted(lo.path()), "refusal must leave the mount alone");

    let o = write_cli(&[
        "--yes".as_ref(),
        "--unmount".as_ref(),
        img.as_os_str(),
        lo.path().as_os_str(),
    ]);
    let (code, err) = code_and_err(&o);
    assert_eq!(code, Some(0), "{err}");
    assert!(!is_mounted(lo.path()), "still mounted after --unmount");
    common::run(
        std::process::Command::new("cmp")
            .arg("-n")
            .arg((3u64 << 20).to_string())
            .arg(&img)
            .arg(&backing),
    );
}

#[test]
fn cli_write_refusals_leave_the_disk_untouched() {
    let t = "cli_write_refusals_leave_the_disk_untouched";
    if !common::require_root(t) || !common::require_tools(t, &["partx", "sfdisk", "cmp"]) {
        return;
    }
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let backing = tmp.path().join("disk.img");
    common::sfdisk_image(
        &backing,
        16 << 20,
        "label: dos\nstart=2048, size=8192, type=83\n",
    );
    let copy = tmp.path().join("copy.img");
    std::fs::copy(&backing, &copy).unwrap();
    let lo = common::LoopDevice::attach_with(&backing, &["-P"]);
    // The kernel here may lack an MBR parser: let partx add the partition.
    let _ = std::process::Command::new("partx")
        .arg("-a")
        .arg(lo.path())
        .output();
    let part = PathBuf::from(format!("{}p1", lo.path().display()));
    let img = tmp.path().join("image.iso");
    common::pseudo_random_file(&img, 1 << 20, 12);
    let lo_s = lo.path().display().to_string();

    // A partition: refused, naming its disk.
    if part.exists() {
        let o = write_cli(&["--yes".as_ref(), img.as_os_str(), part.as_os_str()]);
        let (code, err) = code_and_err(&o);
        assert_eq!(code, Some(4), "{err}");
        assert!(err.contains(&format!("give {lo_s}")), "{err}");
    } else {
        panic!("partx did not create {}", part.display());
    }

    // Held exclusively by someone else: refused as busy.
    let holder = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_EXCL)
        .open(lo.path())
        .unwrap();
    let o = write_cli(&["--yes".as_ref(), img.as_os_str(), lo.path().as_os_str()]);
    let (code, err) = code_and_err(&o);
    assert_eq!(code, Some(4), "{err}");
    assert!(err.contains("busy"), "{err}");
    drop(holder);

    // Too small, not a target, unknown target.
    let big = tmp.path().join("big.iso");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(17 << 20)
        .unwrap();
    let o = write_cli(&["--yes".as_ref(), big.as_os_str(), lo.path().as_os_str()]);
    let (code, err) = code_and_err(&o);
    assert_eq!(code, Some(4), "{err}");
    assert!(err.contains("larger stick"), "{err}");
    let o = write_cli(&["--yes".as_ref(), img.as_os_str(), "/dev/null".as_ref()]);
    let (code, err) = code_and_err(&o);
    assert_eq!(code, Some(4), "{err}");
    assert!(
        err.contains("neither a block device nor a regular file"),
        "{err}"
    );
    // An unknown name: `a_name_that_is_no_disk_is_refused_and_nothing_is_created`.
    // No TARGET and no terminal to offer a choice.
    let o = write_cli(&["--yes".as_ref(), img.as_os_str()]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // No terminal and no --yes.
    let o = write_cli(&[img.as_os_str(), lo.path().as_os_str()]);
    let (code, err) = code_and_err(&o);
    assert_eq!(code, Some(7), "{err}");

    drop(lo);
    cmp(&backing, &copy);
}

/// A relative TARGET that is neither a device, nor an existing file, nor
/// the serial or by-id name of a disk (no `/` or `.` that would make it a
/// new image file's path) is refused with exit 3 by every command taking
/// one, before anything is asked, and nothing is created: not `./NAME` (a
/// typo of a serial must not become a 1 GiB file in the working directory),
/// nor `backup`'s FILE. Only `write`, which can create an image file, says
/// how to name one. Run in a directory of its own, so that a broken
/// resolution litters only that.
#[test]
fn a_name_that_is_no_disk_is_refused_and_nothing_is_created() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("img.img"), vec![0x5a; 1 << 20]).unwrap();
    let hint = "give a path such as ./NOSUCHSERIAL.img";
    let runs: [(&[&str], bool); 6] = [
        (&["write", "--yes", "img.img", "NOSUCHSERIAL"], true),
        (&["write", "img.img", "NOSUCHSERIAL"], true),
        (&["probe", "--yes", "NOSUCHSERIAL"], false),
        (&["format", "--yes", "NOSUCHSERIAL"], false),
        (&["backup", "NOSUCHSERIAL", "out.img"], false),
        (&["compare", "img.img", "NOSUCHSERIAL"], false),
    ];
    for (args, creates_files) in runs {
        let o = common::bootstick()
            .args(args)
            .current_dir(tmp.path())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let (code, err) = code_and_err(&o);
        assert_eq!(code, Some(3), "{args:?}: {err}");
        assert!(
            err.contains("no disk or file named \"NOSUCHSERIAL\"")
                && err.contains("bootstick list"),
            "{args:?}: {err}"
        );
        assert_eq!(err.contains(hint), creates_files, "{args:?}: {err}");
        let mut left: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        left.sort();
        assert_eq!(left, ["img.img"], "{args:?} created a file: {err}");
    }
}

#[test]
fn cli_write_rereads_partitions_and_reports_them() {
    let t = "cli_write_rereads_partitions_and_reports_them";
    if !common::require_root(t) || !common::require_tools(t, &["sfdisk"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("two.img");
    common::sfdisk_image(
        &img,
        8 << 20,
        "label: dos\nstart=2048, size=4096, type=c\nstart=6144, size=8192, type=83\n",
    );
    let backing = tmp.path().join("disk.img");
    std::fs::File::create(&backing)
        .unwrap()
        .set_len(16 << 20)
        .unwrap();
    let lo = common::LoopDevice::attach_with(&backing, &["-P"]);
    let o = common::bootstick()
        .args(["write", "--yes", "--json", "--eject"])
        .arg(&img)
        .arg(lo.path())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let result: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let parts = result["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 2, "{result}");
    assert_eq!(kernel_parts(lo.path()), sfdisk_parts(&img));
    // --eject cannot detach a loop device: a warning, not a failure, and
    // the summary says the stick was not ejected.
    assert_eq!(result["ejected"], false);
    assert!(out.contains("cannot be detached"), "{out}");
    let human = common::bootstick()
        .args(["write", "--yes", "--eject"])
        .arg(&img)
        .arg(lo.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(human.status.success(), "{text}");
    assert!(
        text.contains("Not ejected (see the warning above)")
            && String::from_utf8_lossy(&human.stderr).contains("cannot be detached"),
        "{text}"
    );
    let start: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(start["disk"]["transport"], "loop");
}

#[test]
fn engine_refuses_when_the_disk_changes_before_the_first_write() {
    let t = "engine_refuses_when_the_disk_changes_before_the_first_write";
    if !common::require_root(t) {
        return;
    }
    use bootstick::{events::Silent, plan::Plan, write};
    let tmp = tempfile::tempdir().unwrap();
    let backing = tmp.path().join("disk.img");
    let copy = tmp.path().join("copy.img");
    common::pseudo_random_file(&backing, 8 << 20, 13);
    std::fs::copy(&backing, &copy).unwrap();
    let img = tmp.path().join("image.iso");
    common::pseudo_random_file(&img, 1 << 20, 14);
    let lo = common::LoopDevice::attach(&backing);

    let chosen = loop_disk(&lo);
    let guard = guarded_open(&chosen);
    let mut target = write::Target::block_device(guard.try_clone().unwrap(), &chosen.path).unwrap();
    let check = guard.identity_check().unwrap();
    // The hook: between the choice and the first write, the device changes.
    set_capacity(&lo, &backing, 10 << 20);
    let options = write::Options {
        before_first_write: Some(check),
        ..write::Options::default()
    };
    let source = std::fs::File::open(&img).unwrap();
    let plan = Plan::raw(1 << 20);
    let e = write::write(&plan, &source, &mut target, options, &Silent).unwrap_err();
    assert!(matches!(e, write::Error::Refused(_)), "{e}");
    assert!(
        bootstick::error_chain(&e).contains("size was 8388608 bytes"),
        "{e}"
    );
    drop(target);
    drop(guard);
    common::run(
        std::process::Command::new("cmp")
            .arg("-n")
            .arg((8u64 << 20).to_string())
            .arg(&backing)
            .arg(&copy),
    );
}

#[test]
fn confirmation_names_the_disk_and_its_partitions() {
    let t = "confirmation_names_the_disk_and_its_partitions";
    if !common::require_root(t) || !common::require_tools(t, &["script", "partx", "sfdisk", "cmp"])
    {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let backing = tmp.path().join("disk.img");
    common::sfdisk_image(
        &backing,
        16 << 20,
        "label: dos\nstart=2048, size=8192, type=83\n",
    );
    let copy = tmp.path().join("copy.img");
    std::fs::copy(&backing, &copy).unwrap();
    let lo = common::LoopDevice::attach_with(&backing, &["-P"]);
    let _ = std::process::Command::new("partx")
        .arg("-a")
        .arg(lo.path())
        .output();
    let img = tmp.path().join("image.iso");
    common::pseudo_random_file(&img, 1 << 20, 15);
    let args = format!("{} {}", img.display(), lo.path().display());

    // Declined: nothing is written.
    let (code, shown) = common::write_on_terminal(&args, "n\n");
    assert_eq!(code, Some(7), "{shown}");
    let name = lo.path().file_name().unwrap().to_str().unwrap();
    assert!(
        shown.contains("16.0 MiB") && shown.contains("16777216 bytes"),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("{name}p1")) && shown.contains("4.0 MiB"),
        "{shown}"
    );
    assert!(shown.contains("EVERYTHING on"), "{shown}");
    cmp(&backing, &copy);

    // Confirmed: written.
    let (code, shown) = common::write_on_terminal(&args, "y\n");
    assert_eq!(code, Some(0), "{shown}");
    common::run(
        std::process::Command::new("cmp")
            .arg("-n")
            .arg((1u64 << 20).to_string())
            .arg(&img)
            .arg(&backing),
    );
}

// ---------------------------------------------------------------------------
// On emulated USB sticks in the test-bed guest (real usb-storage SCSI disks,
// real udev, a Debian kernel that parses MBRs).

#[test]
fn guest_usb_sticks_selection_safety_and_eject() {
    use common::guest::{Guest, Stick};
    if !common::guest::require("guest_usb_sticks_selection_safety_and_eject")
        || !common::require_tools(
            "guest_usb_sticks_selection_safety_and_eject",
            &["sfdisk", "mkfs.ext4"],
        )
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("two.img");
    common::sfdisk_image(
        &img,
        8 << 20,
        "label: dos\nstart=2048, size=4096, type=c\nstart=6144, size=8192, type=83\n",
    );
    let image_sha = common::run(std::process::Command::new("sha256sum").arg(&img));
    let image_sha = image_sha.split_whitespace().next().unwrap().to_string();
    let a_img = dir.path().join("a.img");
    std::fs::File::create(&a_img)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let b_img = dir.path().join("b.img");
    std::fs::File::create(&b_img)
        .unwrap()
        .set_len(32 << 20)
        .unwrap();
    common::run(
        std::process::Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .arg(&b_img),
    );
    let a = Stick::new(&a_img, "BSTDA001");
    let b = Stick::new(&b_img, "BSTDB002");
    let script = format!(
        r#"
A=$(readlink -f {a_id}); B=$(readlink -f {b_id})
echo "@@ system"; bootstick write --yes two.img /dev/vda 2>&1; echo "rc=$?"
echo "@@ serial"; out=$(bootstick write --yes --json two.img BSTDA001 2>&1); rc=$?; echo "$out" | tail -n 1; echo "rc=$rc"
echo "@@ parts"; ls -d ${{A}}1 ${{A}}2 2>&1
echo "@@ sha"; head -c 8388608 $A | sha256sum
echo "@@ mounted"; mkdir -p /m; mount $B /m; bootstick write --yes two.img {b_id} 2>&1; echo "rc=$?"
echo "@@ unmount"; bootstick write --yes --unmount two.img {b_id} >/dev/null 2>&1; echo "rc=$?"; grep -c "^$B " /proc/mounts
echo "@@ eject"; out=$(bootstick write --yes --json --eject two.img {a_id} 2>&1); rc=$?; echo "$out" | tail -n 1; echo "rc=$rc"
echo "@@ after"; ls /sys/block
echo "@@ eject2"; bootstick write --yes --eject two.img {b_id} 2>/dev/null; echo "rc=$?"
echo "@@ end"
"#,
        a_id = a.by_id(),
        b_id = b.by_id()
    );
    let out = Guest::new(&script)
        .file("two.img", &img)
        .stick(a)
        .stick(b)
        .run();
    out.assert_success();
    // The system disk (holding /boot) is refused, naming why.
    let s = out.section("system");
    assert!(s.contains("rc=4") && s.contains("system disk"), "{out}");
    // Found by serial, written, verified, partitions re-read by the kernel.
    let s = out.section("serial");
    assert!(s.contains("rc=0"), "{out}");
    let result: serde_json::Value = serde_json::from_str(s.lines().next().unwrap()).unwrap();
    assert_eq!(result["verified"], true, "{out}");
    assert_eq!(result["partitions"].as_array().unwrap().len(), 2, "{out}");
    assert!(!out.section("parts").contains("No such file"), "{out}");
    assert!(out.section("sha").contains(&image_sha), "{out}");
    // A mounted stick: refused, then unmounted and written with --unmount.
    let s = out.section("mounted");
    assert!(s.contains("rc=4") && s.contains("--unmount"), "{out}");
    let s = out.section("unmount");
    assert!(s.contains("rc=0") && s.lines().last() == Some("0"), "{out}");
    // --eject detaches the stick: its disk is gone from /sys/block.
    let s = out.section("eject");
    assert!(
        s.contains("rc=0") && s.contains("\"ejected\":true"),
        "{out}"
    );
    let after = out.section("after");
    assert!(after.contains("sdb") || after.contains("sda"), "{out}");
    assert_eq!(
        after
            .split_whitespace()
            .filter(|d| d.starts_with("sd"))
            .count(),
        1,
        "{out}"
    );
    // People are told the stick was ejected and can be unplugged.
    let s = out.section("eject2");
    assert!(
        s.contains("rc=0") && s.contains("Ejected /dev/") && s.contains("can be unplugged now"),
        "{out}"
    );
}

// The picker (no TARGET, on a terminal) runs in the test-bed guest, in front
// of emulated sticks: tests/testbed.rs, `captured_device_tree_reads_like_the_
// live_one_and_the_picker_chooses_nothing` and `picker_without_a_stick_offers_
// nothing`. On the host it would face whatever disks this machine has.

// ---------------------------------------------------------------------------
// Targets that are, or hold, the image; file targets (issue 10, items 6-10,
// 16, 17).

fn sha256(p: &Path) -> String {
    let out = common::run(std::process::Command::new("sha256sum").arg(p));
    out.split_whitespace().next().unwrap().to_owned()
}

/// A filesystem mounted by a test, unmounted on drop (declare it after the
/// loop device it sits on, so it is dropped first).
struct Mount(PathBuf);

impl Mount {
    fn new(source: &Path, at: &Path, options: &[&str]) -> Mount {
        std::fs::create_dir_all(at).unwrap();
        common::run(
            std::process::Command::new("mount")
                .args(options)
                .arg(source)
                .arg(at),
        );
        Mount(at.to_path_buf())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        // Already unmounted by the command under test: nothing to do.
        let _ = std::process::Command::new("umount")
            .arg(&self.0)
            .stderr(std::process::Stdio::null())
            .status();
    }
}

fn is_mounted_at(p: &Path) -> bool {
    std::process::Command::new("findmnt")
        .arg("--mountpoint")
        .arg(p)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// Runs `write --yes ARGS…` and asserts it is refused (exit 4) with a
/// message containing `says`.
fn assert_refused(args: &[&std::ffi::OsStr], says: &str) -> String {
    let mut all: Vec<&std::ffi::OsStr> = vec!["--yes".as_ref()];
    all.extend_from_slice(args);
    let (code, err) = code_and_err(&write_cli(&all));
    assert_eq!(code, Some(4), "{args:?}: {err}");
    assert!(err.contains(says), "{args:?}: {err}");
    err
}

#[test]
fn cli_write_refuses_a_target_that_is_the_image_itself() {
    let t = "cli_write_refuses_a_target_that_is_the_image_itself";
    if !common::require_tools(t, &["sha256sum"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let img = d.join("a.img");
    common::pseudo_random_file(&img, 3 << 20, 21);
    let sum = sha256(&img);
    std::fs::create_dir(d.join("x")).unwrap();
    std::fs::hard_link(&img, d.join("hard.img")).unwrap();
    std::os::unix::fs::symlink("a.img", d.join("soft.img")).unwrap();
    let img_s = img.as_os_str();
    let spellings = [
        img.clone(),
        d.join("x/../a.img"),
        d.join("hard.img"),
        d.join("soft.img"),
    ];
    // Today each of these opened the target with O_TRUNC first: a 0-byte image.
    for target in &spellings {
        let err = assert_refused(&[img_s, target.as_os_str()], "is the image");
        assert!(err.contains("itself"), "{err}");
        assert_eq!(
            sha256(&img),
            sum,
            "{}: the image was changed",
            target.display()
        );
    }
    // Among several targets: every target is refused, the others not created.
    let other = d.join("other.img");
    assert_refused(
        &[img_s, other.as_os_str(), spellings[2].as_os_str()],
        "is the image",
    );
    assert!(
        !other.exists(),
        "a file target was created although the job was refused"
    );
    assert_eq!(sha256(&img), sum);
    // The image given through a symlink, the target by its real name.
    assert_refused(&[spellings[3].as_os_str(), img_s], "is the image");
    assert_eq!(sha256(&img), sum);
}

#[test]
fn cli_write_refuses_a_layout_image_as_its_own_target() {
    let t = "cli_write_refuses_a_layout_image_as_its_own_target";
    if !common::require_tools(t, &["genisoimage", "mkfs.fat", "mmd", "mcopy", "sha256sum"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let iso = tmp.path().join("win.iso");
    std::fs::copy(common::recipes::image("inspect", "windows-like"), &iso).unwrap();
    let o = common::bootstick()
        .args(["inspect", "--json"])
        .arg(&iso)
        .output()
        .unwrap();
    let v = common::json_result(&o.stdout);
    assert_eq!(v["decision"]["mode"], "layout", "{v}");
    let sum = sha256(&iso);
    let link = tmp.path().join("link.iso");
    std::os::unix::fs::symlink(&iso, &link).unwrap();
    assert_refused(&[iso.as_os_str(), link.as_os_str()], "is the image");
    assert_eq!(sha256(&iso), sum);
}

#[test]
fn cli_write_refuses_when_the_image_is_on_the_target() {
    let t = "cli_write_refuses_when_the_image_is_on_the_target";
    if !common::require_root(t)
        || !common::require_tools(
            t,
            &["sfdisk", "partx", "mkfs.ext4", "mount", "findmnt", "cmp"],
        )
    {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();

    // A partition of the target as the image: `write /dev/loopNp2 /dev/loopN`
    // succeeded today after overwriting part of its own source.
    let backing = d.join("parts.img");
    common::sfdisk_image(
        &backing,
        16 << 20,
        "label: dos\nstart=2048, size=8192, type=83\nstart=10240, size=8192, type=83\n",
    );
    common::pseudo_random_file(&d.join("fill"), 4 << 20, 22);
    // Give partition 2 recognisable contents.
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&backing)
            .unwrap();
        f.write_all_at(&std::fs::read(d.join("fill")).unwrap(), 10240 * 512)
            .unwrap();
    }
    let copy = d.join("parts.copy");
    std::fs::copy(&backing, &copy).unwrap();
    let lo = common::LoopDevice::attach_with(&backing, &["-P"]);
    let _ = std::process::Command::new("partx")
        .arg("-a")
        .arg(lo.path())
        .output();
    let p2 = PathBuf::from(format!("{}p2", lo.path().display()));
    assert!(p2.exists(), "partx did not create {}", p2.display());
    let err = assert_refused(&[p2.as_os_str(), lo.path().as_os_str()], "is on the target");
    assert!(err.contains("partition"), "{err}");
    // The disk itself as its own image.
    assert_refused(
        &[lo.path().as_os_str(), lo.path().as_os_str()],
        "is the image",
    );
    drop(lo);
    cmp(&backing, &copy);

    // A file on a mounted filesystem of the target: refused as such, also
    // with --unmount (today: "busy; close the programs using it", the busy
    // program being bootstick itself), and the filesystem stays mounted.
    let (_backing, lo) = ext4_loop(d, 16 << 20);
    let m1 = d.join("m1");
    let mount1 = Mount::new(lo.path(), &m1, &[]);
    let img = m1.join("image.iso");
    common::pseudo_random_file(&img, 1 << 20, 23);
    let err = assert_refused(
        &[img.as_os_str(), lo.path().as_os_str()],
        "is on the target",
    );
    assert!(err.contains(m1.to_str().unwrap()), "{err}");
    assert_refused(
        &["--unmount".as_ref(), img.as_os_str(), lo.path().as_os_str()],
        "is on the target",
    );
    assert!(is_mounted_at(&m1), "a refusal must leave the mount alone");

    // One level down: the image is on a loop device whose backing file is
    // on the target's filesystem.
    let inner = m1.join("inner.img");
    std::fs::File::create(&inner)
        .unwrap()
        .set_len(8 << 20)
        .unwrap();
    common::run(
        std::process::Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .arg(&inner),
    );
    let lo2 = common::LoopDevice::attach(&inner);
    let m2 = d.join("m2");
    let mount2 = Mount::new(lo2.path(), &m2, &[]);
    let deep = m2.join("deep.iso");
    common::pseudo_random_file(&deep, 1 << 20, 24);
    let err = assert_refused(
        &[deep.as_os_str(), lo.path().as_os_str()],
        "is on the target",
    );
    assert!(err.contains("is backed by"), "{err}");
    // ... and its backing file as a file target.
    assert_refused(
        &["--force".as_ref(), deep.as_os_str(), inner.as_os_str()],
        "is on the target",
    );
    assert!(is_mounted_at(&m2) && is_mounted_at(&m1));
    drop(mount2);
    drop(lo2);
    drop(mount1);
}

#[test]
fn cli_write_refuses_a_file_that_backs_a_loop_device() {
    let t = "cli_write_refuses_a_file_that_backs_a_loop_device";
    if !common::require_root(t)
        || !common::require_tools(t, &["mkfs.ext4", "mount", "findmnt", "cmp", "sha256sum"])
    {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (backing, lo) = ext4_loop(tmp.path(), 16 << 20);
    let mnt = tmp.path().join("mnt");
    let mount = Mount::new(lo.path(), &mnt, &[]);
    let img = tmp.path().join("image.iso");
    common::pseudo_random_file(&img, 3 << 20, 25);
    let sum = sha256(&backing);
    // Named through another spelling: compared by device and inode.
    let other = tmp.path().join("./mnt/../ext4.img");

    // Today: truncated and overwritten under the mounted ext4, exit 0.
    let err = assert_refused(&[img.as_os_str(), other.as_os_str()], "backing file");
    assert!(
        err.contains(lo.path().to_str().unwrap()) && err.contains("--force"),
        "{err}"
    );
    // Forced, the loop device's mounts still need --unmount.
    let err = assert_refused(
        &["--force".as_ref(), img.as_os_str(), backing.as_os_str()],
        "--unmount",
    );
    assert!(err.contains(mnt.to_str().unwrap()), "{err}");
    assert!(
        err.contains(&format!(
            "is the backing file of the loop device {}",
            lo.path().display()
        )),
        "{err}"
    );
    assert_eq!(sha256(&backing), sum);
    assert!(is_mounted_at(&mnt));

    // Both: unmounted, then written.
    let o = write_cli(&[
        "--yes".as_ref(),
        "--force".as_ref(),
        "--unmount".as_ref(),
        img.as_os_str(),
        backing.as_os_str(),
    ]);
    let (code, err) = code_and_err(&o);
    assert_eq!(code, Some(0), "{err}");
    assert!(!is_mounted_at(&mnt));
    cmp(&img, &backing);
    drop(mount);
}

/// The temporary files a staged write may leave in `dir`.
fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".bootstick-"))
        .collect()
}

#[test]
fn cli_write_asks_before_replacing_an_existing_file() {
    let t = "cli_write_asks_before_replacing_an_existing_file";
    if !common::require_root(t) || !common::require_tools(t, &["script", "cmp", "sha256sum"]) {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let img = d.join("image.iso");
    common::pseudo_random_file(&img, 2 << 20, 26);
    let old = d.join("download.iso");
    common::pseudo_random_file(&old, 1_500_000, 27);
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o640)).unwrap();
    let sum = sha256(&old);

    // No terminal, no --yes: refused like a disk (today: replaced silently).
    let o = write_cli(&[img.as_os_str(), old.as_os_str()]);
    let (code, err) = code_and_err(&o);
    assert_eq!(code, Some(7), "{err}");
    assert!(
        err.contains("download.iso") && err.contains("1500000 bytes") && err.contains("--yes"),
        "{err}"
    );
    assert_eq!(sha256(&old), sum);

    // On a terminal: the question names the file and its size; "n" keeps it.
    let args = format!("{} {}", img.display(), old.display());
    let (code, shown) = common::write_on_terminal(&args, "n\n");
    assert_eq!(code, Some(7), "{shown}");
    assert!(
        shown.contains("download.iso") && shown.contains("1.4 MiB") && shown.contains("replaced"),
        "{shown}"
    );
    assert!(shown.contains("was not touched"), "{shown}");
    assert_eq!(sha256(&old), sum);
    // "y" replaces it, keeping its permissions.
    let (code, shown) = common::write_on_terminal(&args, "y\n");
    assert_eq!(code, Some(0), "{shown}");
    cmp(&img, &old);
    assert_eq!(
        std::fs::metadata(&old).unwrap().permissions().mode() & 0o777,
        0o640
    );
    assert!(leftovers(d).is_empty(), "{:?}", leftovers(d));

    // IMAGE and TARGET swapped: a disk as the image, the download as the
    // target. Today the download was replaced by the disk's contents.
    let backing = d.join("disk.img");
    common::pseudo_random_file(&backing, 4 << 20, 28);
    let lo = common::LoopDevice::attach(&backing);
    let sum = sha256(&old);
    let o = write_cli(&[lo.path().as_os_str(), old.as_os_str()]);
    let (code, err) = code_and_err(&o);
    assert_eq!(code, Some(7), "{err}");
    assert_eq!(sha256(&old), sum);
    drop(lo);

    // An empty file, or a new one, needs no question.
    let empty = d.join("empty.img");
    std::fs::File::create(&empty).unwrap();
    let new = d.join("new.img");
    for target in [&empty, &new] {
        let o = write_cli(&[img.as_os_str(), target.as_os_str()]);
        let (code, err) = code_and_err(&o);
        assert_eq!(code, Some(0), "{}: {err}", target.display());
        cmp(&img, target);
    }
}

#[test]
fn cli_write_failing_on_a_full_filesystem_leaves_the_old_file() {
    let t = "cli_write_failing_on_a_full_filesystem_leaves_the_old_file";
    if !common::require_root(t) || !common::require_tools(t, &["mount", "sha256sum"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let small = tmp.path().join("small");
    let mount = Mount::new("tmpfs".as_ref(), &small, &["-t", "tmpfs", "-o", "size=2m"]);
    let old = small.join("old.img");
    common::pseudo_random_file(&old, 600_000, 29);
    let sum = sha256(&old);
    let img = tmp.path().join("image.iso");
    common::pseudo_random_file(&img, 3 << 20, 30);
    // Today: ENOSPC after the old file was truncated, a partial file left.
    let o = write_cli(&["--yes".as_ref(), img.as_os_str(), old.as_os_str()]);
    let (code, err) = code_and_err(&o);
    assert_eq!(code, Some(5), "{err}");
    assert_eq!(sha256(&old), sum, "the old file was changed");
    assert!(leftovers(&small).is_empty(), "{:?}", leftovers(&small));
    // A new file: nothing at all is left behind.
    let new = small.join("new.img");
    let o = write_cli(&["--yes".as_ref(), img.as_os_str(), new.as_os_str()]);
    assert_eq!(o.status.code(), Some(5));
    assert!(!new.exists(), "a partial file was left behind");
    assert!(leftovers(&small).is_empty(), "{:?}", leftovers(&small));
    drop(mount);
}

#[test]
fn cli_write_file_target_where_no_file_can_be_created() {
    let t = "cli_write_file_target_where_no_file_can_be_created";
    if !common::require_root(t) || !common::require_tools(t, &["mount"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("image.iso");
    common::pseudo_random_file(&img, 1 << 20, 31);
    // A missing directory: bad input (3), said before anything is written
    // (today: exit 5, "write failed").
    let missing = tmp.path().join("no/such/dir/out.img");
    let o = write_cli(&["--yes".as_ref(), img.as_os_str(), missing.as_os_str()]);
    let (code, err) = code_and_err(&o);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("not an existing directory"), "{err}");
    // A read-only filesystem: refused (4), as a read-only disk is.
    let ro = tmp.path().join("ro");
    let mount = Mount::new("tmpfs".as_ref(), &ro, &["-t", "tmpfs", "-o", "ro,size=1m"]);
    let o = write_cli(&[
        "--yes".as_ref(),
        img.as_os_str(),
        ro.join("out.img").as_os_str(),
    ]);
    let (code, err) = code_and_err(&o);
    assert_eq!(code, Some(4), "{err}");
    assert!(err.contains("read-only filesystem"), "{err}");
    drop(mount);
}

#[test]
fn cli_messages_for_a_missing_device_and_causes_once() {
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("image.iso");
    common::pseudo_random_file(&img, 1 << 20, 32);
    // Today: "give a path such as .//dev/sdz.img".
    let o = write_cli(&["--yes".as_ref(), img.as_os_str(), "/dev/sdzz9".as_ref()]);
    let (code, err) = code_and_err(&o);
    assert_eq!(code, Some(3), "{err}");
    assert!(
        err.contains("no such device") && err.contains("bootstick list"),
        "{err}"
    );
    assert!(!err.contains(".img"), "{err}");
    assert!(!Path::new("/dev/sdzz9").exists());
    // The same through a symlink outside /dev: no file is created there.
    let link = tmp.path().join("stick");
    std::os::unix::fs::symlink("/dev/sdzz9", &link).unwrap();
    let o = write_cli(&["--yes".as_ref(), img.as_os_str(), link.as_os_str()]);
    let (code, err) = code_and_err(&o);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("no such device"), "{err}");
    assert!(
        !Path::new("/dev/sdzz9").exists(),
        "a file was created in /dev"
    );
    // A device error's cause appears once, not once in the message and
    // again as the error's source.
    let o = common::bootstick()
        .args(["list", "--root"])
        .arg(tmp.path().join("nothing"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.matches("os error 2").count(), 1, "{err}");
}

#[test]
fn image_site_on_captured_trees() {
    use devices::{DevNum, ImageSite};
    let roots = Roots::under(&fixture("laptop"));
    let d = disks("laptop");
    // A file on / (ext4 on vg-root, LVM on dm-crypt on sda3): on sda.
    let site = ImageSite::of_file_on(
        &roots,
        "/x.iso".as_ref(),
        DevNum {
            major: 253,
            minor: 1,
        },
    )
    .unwrap();
    assert_eq!(site.disks().collect::<Vec<_>>(), vec!["sda"]);
    // A file on the NVMe data disk's mounted partition: that disk refuses.
    let site = ImageSite::of_file_on(
        &roots,
        "/srv/data/x.iso".as_ref(),
        DevNum {
            major: 259,
            minor: 1,
        },
    )
    .unwrap();
    let e = site.check_disk(&d["nvme0n1"]).unwrap_err();
    assert!(matches!(e, devices::Error::ImageOnTarget { .. }), "{e}");
    assert!(e.to_string().contains("/srv/data"), "{e}");
    site.check_disk(&d["sdb"]).unwrap();
    // The system disk is refused as a system disk, whatever the image.
    let e = site.check_disk(&d["sda"]).unwrap_err();
    assert!(matches!(e, devices::Error::SystemDisk { .. }), "{e}");
    // btrfs: an anonymous device number, traced through the mount's source.
    let roots = Roots::under(&fixture("btrfs-swapfile"));
    let mi =
        std::fs::read_to_string(fixture("btrfs-swapfile").join("proc/self/mountinfo")).unwrap();
    let anon = devices::mounts::parse_mountinfo(&mi)
        .into_iter()
        .find(|m| m.mountpoint == Path::new("/home"))
        .unwrap()
        .dev;
    assert_eq!(anon.major, 0);
    let site = ImageSite::of_file_on(&roots, "/home/u/x.iso".as_ref(), anon).unwrap();
    assert_eq!(site.disks().collect::<Vec<_>>(), vec!["nvme0n1"]);
}
