//! The test-bed: bootstick inside a Linux guest in front of emulated USB
//! sticks (see `tests/common/guest.rs` and `docs/testbed.md`).
//!
//! The oracles are the guest kernel's own view of the hardware (sysfs, the
//! SCSI layer's vendor/model, udev's by-id links) and QEMU's: we never
//! check bootstick against bootstick.

mod common;

use common::guest::{self, Guest, Stick};

/// A sparse stick image of `mib` MiB.
fn stick_image(dir: &std::path::Path, name: &str, mib: u64) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::File::create(&p)
        .unwrap()
        .set_len(mib << 20)
        .unwrap();
    p
}

/// Lines `key value…` printed by the script, for the line starting with `key`.
fn line<'a>(output: &'a str, key: &str) -> &'a str {
    output
        .lines()
        .find_map(|l| l.strip_prefix(key).map(str::trim))
        .unwrap_or_else(|| panic!("no `{key}` line in:\n{output}"))
}

/// The guest boots, sees the emulated stick the way Linux sees a real one —
/// a removable SCSI disk behind USB with QEMU's vendor/model, the serial in
/// its by-id link — and the system disk as a mounted, non-USB ext4 disk; and
/// the bootstick binary under test runs there.
#[test]
fn guest_sees_the_stick_as_a_removable_usb_disk() {
    if !guest::require("guest_sees_the_stick_as_a_removable_usb_disk") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = stick_image(dir.path(), "stick.img", 64);
    let stick = Stick::new(&img, "BSTB0001");
    let script = format!(
        r#"
for d in /sys/block/sd*; do
  n=${{d##*/}}
  echo "disk $n path=$(readlink -f $d) removable=$(cat $d/removable) size=$(cat $d/size) vendor=$(cat $d/device/vendor) model=$(cat $d/device/model)"
done
echo "byid $(readlink -f {byid})"
echo "vda path=$(readlink -f /sys/block/vda) removable=$(cat /sys/block/vda/removable)"
echo "mount $(grep '^/dev/vda ' /proc/mounts)"
echo "version $(bootstick --version)"
"#,
        byid = stick.by_id()
    );
    let out = Guest::new(&script).stick(stick).run();
    out.assert_success();
    let o = &out.output;
    let disk = line(o, "disk sda");
    assert!(disk.contains("/usb"), "the stick is not behind USB:\n{out}");
    assert!(disk.contains("removable=1"), "{out}");
    assert!(
        disk.contains(&format!("size={}", (64u64 << 20) / 512)),
        "{out}"
    );
    assert!(disk.contains("vendor=QEMU"), "{out}");
    assert!(disk.contains("model=QEMU HARDDISK"), "{out}");
    assert_eq!(line(o, "byid"), "/dev/sda", "{out}");
    let vda = line(o, "vda");
    assert!(!vda.contains("/usb") && vda.contains("/virtio"), "{out}");
    assert!(line(o, "mount").contains(" /mnt/sys ext4 "), "{out}");
    assert_eq!(
        line(o, "version"),
        format!("bootstick {}", env!("CARGO_PKG_VERSION")),
        "{out}"
    );
}

/// The harness reports the script's real exit status and output, so a
/// failing command inside the guest can never look like a pass.
#[test]
fn guest_reports_the_script_exit_status() {
    if !guest::require("guest_reports_the_script_exit_status") {
        return;
    }
    let out = Guest::new("echo before; ls /nonexistent-path; exit 7\n").run();
    assert_eq!(out.status, Some(7), "{out}");
    assert!(out.output.contains("before"), "{out}");
    assert!(out.output.contains("nonexistent-path"), "{out}");
}

/// `bootstick list --json`, parsed.
fn disks(json: &str) -> Vec<serde_json::Value> {
    serde_json::from_str::<serde_json::Value>(json)
        .unwrap_or_else(|e| panic!("list --json is not JSON ({e}):\n{json}"))
        .as_array()
        .unwrap_or_else(|| panic!("list --json is not an array:\n{json}"))
        .clone()
}

/// Two sticks and a mounted virtio system disk (holding `/boot`): `list`
/// offers exactly the two sticks, each as removable USB with QEMU's
/// vendor/model, its own serial, size and by-id link; the system disk
/// appears only under `--all`, marked as a system disk.
#[test]
fn list_offers_the_sticks_not_the_system_disk() {
    if !guest::require("list_offers_the_sticks_not_the_system_disk") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let a = Stick::new(&stick_image(dir.path(), "a.img", 64), "BSTA0001");
    let b = Stick::new(&stick_image(dir.path(), "b.img", 96), "BSTB0002");
    let script = r#"
echo "@@ list"; bootstick list --json
echo "@@ all"; bootstick list --all --json
echo "@@ table"; bootstick list
"#;
    let out = Guest::new(script).stick(a.clone()).stick(b.clone()).run();
    out.assert_success();
    let listed = disks(&out.section("list"));
    assert_eq!(listed.len(), 2, "exactly the two sticks:\n{out}");
    for (stick, mib) in [(&a, 64u64), (&b, 96)] {
        let d = listed
            .iter()
            .find(|d| d["serial"] == stick.serial.as_str())
            .unwrap_or_else(|| panic!("no disk with serial {}:\n{out}", stick.serial));
        assert_eq!(d["transport"], "usb", "{out}");
        assert_eq!(d["kind"], "disk", "{out}");
        assert_eq!(d["removable"], true, "{out}");
        assert_eq!(d["vendor"], "QEMU", "{out}");
        assert_eq!(d["model"], "QEMU HARDDISK", "{out}");
        assert_eq!(d["size_bytes"], mib << 20, "{out}");
        assert_eq!(d["by_id"], stick.by_id().as_str(), "{out}");
        assert_eq!(d["system"], false, "{out}");
        assert!(
            d["path"].as_str().is_some_and(|p| p.starts_with("/dev/sd")),
            "{out}"
        );
    }
    let all = disks(&out.section("all"));
    let vda = all
        .iter()
        .find(|d| d["path"] == "/dev/vda")
        .unwrap_or_else(|| panic!("--all lacks the system disk:\n{out}"));
    assert_eq!(vda["system"], true, "{out}");
    assert_eq!(vda["transport"], "virtio", "{out}");
    assert_eq!(vda["listed_by_default"], false, "{out}");
    let table = out.section("table");
    assert!(
        table.contains("BSTA0001") && table.contains("BSTB0002"),
        "{out}"
    );
    assert!(!table.contains("/dev/vda"), "{out}");
}
