//! The test-bed: bootstick inside a Linux guest in front of emulated USB
//! sticks (see `tests/common/guest.rs` and `docs/testbed.md`).
//!
//! The oracles are the guest kernel's own view of the hardware (sysfs, the
//! SCSI layer's vendor/model, udev's by-id links) and QEMU's: we never
//! check bootstick against bootstick.

use crate::common;

use common::guest::{self, blkdebug_rules, Guest, Stick};
use common::qemu;

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

/// The disks `bootstick list --json` printed (its `result` line's `disks`).
fn disks(json: &str) -> Vec<serde_json::Value> {
    common::json_result(json.trim().as_bytes())["disks"]
        .as_array()
        .unwrap_or_else(|| panic!("list --json has no `disks` array:\n{json}"))
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

/// The `disks` array of a `list --json` result line.
fn listed_disks(section: &str) -> serde_json::Value {
    section
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["event"] == "result")
        .map(|v| v["disks"].clone())
        .unwrap_or_else(|| panic!("no list result in:\n{section}"))
}

/// `scripts/capture-devices.sh` run in the guest captures a tree that
/// `list --root` reads exactly as the guest's own `list` reads the live
/// kernel (every field of every disk), so device trees captured with it
/// (`tests/fixtures/sysfs/testbed-guest`) are what a kernel really shows.
/// In the same boot, the picker (on a terminal, no TARGET) offers the two
/// sticks and not the system disk, and Enter chooses nothing: exit 7, both
/// sticks untouched.
#[test]
fn captured_device_tree_reads_like_the_live_one_and_the_picker_chooses_nothing() {
    let t = "captured_device_tree_reads_like_the_live_one_and_the_picker_chooses_nothing";
    if !guest::require(t) || !common::require_tools(t, &["sfdisk", "tar", "base64", "gzip"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let a_img = stick_image(dir.path(), "a.img", 64);
    // Stick A has an MBR with one partition, so partitions are captured too.
    common::run(std::process::Command::new("sh").arg("-c").arg(format!(
        "printf 'label: dos\\nstart=2048, size=65536, type=c\\n' | sfdisk --quiet '{}'",
        a_img.display()
    )));
    let a = Stick::new(&a_img, "BSTCAP01");
    let b = Stick::new(&stick_image(dir.path(), "b.img", 96), "BSTCAP02");
    let image = dir.path().join("image.iso");
    common::pseudo_random_file(&image, 1 << 20, 5);
    let before = [
        std::fs::read(&a.image).unwrap(),
        std::fs::read(&b.image).unwrap(),
    ];
    let capture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/capture-devices.sh");
    let script = r#"
echo "@@ list"; bootstick list --all --json
sh ./capture-devices.sh /tmp/cap
echo "@@ capture"; tar -C /tmp/cap -cf - . | gzip | base64
echo "@@ picker"; printf '\n' | script -q -e -c "bootstick write ./image.iso" /dev/null; echo "rc=$?"
"#;
    let out = Guest::new(script)
        .file("capture-devices.sh", &capture)
        .file("image.iso", &image)
        .stick(a.clone())
        .stick(b.clone())
        .run();
    out.assert_success();

    // The captured tree, unpacked on the host, read by the host's bootstick.
    let tree = dir.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    let b64: String = out.section("capture").split_whitespace().collect();
    let packed = dir.path().join("tree.tar.gz.b64");
    std::fs::write(&packed, b64).unwrap();
    common::run(std::process::Command::new("sh").arg("-c").arg(format!(
        "base64 -d '{}' | tar -C '{}' -xzf -",
        packed.display(),
        tree.display()
    )));
    let host = common::bootstick()
        .args(["list", "--all", "--json", "--root"])
        .arg(&tree)
        .output()
        .unwrap();
    assert!(host.status.success(), "{host:?}");
    let live = listed_disks(&out.section("list"));
    // `--root` reports device nodes under the tree; the guest's are in /dev.
    let host_text =
        String::from_utf8_lossy(&host.stdout).replace(&format!("{}/dev/", tree.display()), "/dev/");
    let read = listed_disks(&host_text);
    assert_eq!(live, read, "the captured tree reads differently:\n{out}");
    let sticks: Vec<_> = live
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["listed_by_default"] == true)
        .collect();
    assert_eq!(sticks.len(), 2, "{out}");
    assert!(
        live.as_array()
            .unwrap()
            .iter()
            .any(|d| d["serial"] == "BSTCAP01"
                && d["partitions"].as_array().is_some_and(|p| p.len() == 1)),
        "stick A's partition is missing:\n{out}"
    );
    if let Some(save) = std::env::var_os("BOOTSTICK_SAVE_CAPTURE") {
        // Regenerating tests/fixtures/sysfs/testbed-guest (docs/testbed.md).
        common::run(
            std::process::Command::new("cp")
                .arg("-a")
                .arg(format!("{}/.", tree.display()))
                .arg(save),
        );
    }

    // The picker offers the sticks, not the system disk; Enter is no choice.
    let picker = out.section("picker");
    assert!(
        picker.contains("BSTCAP01") && picker.contains("BSTCAP02"),
        "{picker}"
    );
    assert!(!picker.contains("/dev/vda"), "{picker}");
    assert!(
        picker.contains("Number of the disk to write") && picker.contains("no disk chosen"),
        "{picker}"
    );
    assert_eq!(line(&picker, "rc="), "7", "{picker}");
    let after = [
        std::fs::read(&a.image).unwrap(),
        std::fs::read(&b.image).unwrap(),
    ];
    assert!(before == after, "the picker changed a stick");
}

/// With no stick plugged in, the picker says there is nothing to choose
/// yet and waits for one; it offers nothing meanwhile (the system disk is
/// never offered), and Enter cancels (exit 7).
#[test]
fn picker_without_a_stick_offers_nothing() {
    let t = "picker_without_a_stick_offers_nothing";
    if !guest::require(t) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("image.iso");
    common::pseudo_random_file(&image, 1 << 20, 6);
    let script = r#"
echo "@@ picker"; printf '\n' | script -q -e -c "bootstick write ./image.iso" /dev/null; echo "rc=$?"
"#;
    let out = Guest::new(script).file("image.iso", &image).run();
    out.assert_success();
    let picker = out.section("picker");
    assert!(
        picker.contains("No removable or USB disk found: plug in a USB stick"),
        "{picker}"
    );
    assert!(!picker.contains("/dev/vda"), "{picker}");
    assert!(picker.contains("no disk chosen"), "{picker}");
    assert_eq!(line(&picker, "rc="), "7", "{picker}");
}

/// The picker on a terminal, in front of a user, in one boot:
/// - with no stick plugged in it waits, and offers the stick once it is
///   plugged in (emulated: the stick is detached through sysfs before the
///   picker starts and found again by a SCSI rescan 4 s later);
/// - a number that is not on the list asks again instead of exiting;
/// - a confirmation that names the stick's mounted filesystem and says it
///   will be unmounted is the permission to unmount it: answered yes, the
///   stick is unmounted and written without `--unmount` (with `--yes`,
///   `--unmount` stays required: `guest_usb_sticks_selection_safety_and_eject`).
#[test]
fn the_picker_waits_for_a_stick_asks_again_and_a_yes_unmounts() {
    let t = "the_picker_waits_for_a_stick_asks_again_and_a_yes_unmounts";
    if !guest::require(t) || !common::require_tools(t, &["mkfs.ext4", "cmp"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let a_img = stick_image(dir.path(), "a.img", 64);
    common::run(
        std::process::Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "BSTDATA"])
            .arg(&a_img),
    );
    let a = Stick::new(&a_img, "BSTPICK1");
    let image = dir.path().join("image.iso");
    common::pseudo_random_file(&image, 1 << 20, 8);
    let script = format!(
        r#"
A=$(readlink -f {a_id}); N=${{A#/dev/}}
echo 1 > /sys/block/$N/device/delete; sleep 1
echo "@@ wait"
(sleep 4; for h in /sys/class/scsi_host/host*/scan; do echo "- - -" > $h; done; sleep 8; printf '9
1
') | script -q -e -c "bootstick write ./image.iso" /dev/null; echo "rc=$?"
sleep 1; A=$(readlink -f {a_id})
echo "@@ mounted"; mkdir -p /m; mount $A /m; printf 'y
' | script -q -e -c "bootstick write ./image.iso BSTPICK1" /dev/null; echo "rc=$?"; echo "mounts=$(grep -c " /m " /proc/mounts)"
echo "@@ end"
"#,
        a_id = a.by_id()
    );
    let out = Guest::new(&script)
        .file("image.iso", &image)
        .stick(a.clone())
        .run();
    out.assert_success();
    let wait = out.section("wait");
    let waited = wait.find("No removable or USB disk found: plug in a USB stick");
    let listed = wait.find("Disks that can be written");
    assert!(
        waited.is_some() && listed.is_some() && waited < listed,
        "the picker must wait, then list the stick:\n{out}"
    );
    assert!(wait.contains("BSTPICK1"), "{out}");
    assert!(
        wait.contains("\"9\" is not one of the numbers shown (1 to 1)"),
        "{out}"
    );
    // Asked again, 1 chose the stick; the confirmation then read the end of
    // input: declined, nothing written.
    assert!(wait.contains("Continue? [y/N]"), "{out}");
    assert_eq!(line(&wait, "rc="), "7", "{out}");

    let mounted = out.section("mounted");
    assert!(
        mounted.contains("mounted on /m")
            && mounted.contains("Its mounted filesystems will be unmounted first"),
        "{out}"
    );
    assert_eq!(line(&mounted, "rc="), "0", "{out}");
    assert_eq!(line(&mounted, "mounts="), "0", "{out}");
    common::run(
        std::process::Command::new("cmp")
            .arg("-n")
            .arg((1u64 << 20).to_string())
            .arg(&image)
            .arg(&a.image),
    );
}

/// The `{"event":"result",…}` line `write --json` ends with, and the exit
/// status the script printed after it as `rc=N`.
fn write_result(section: &str, out: &guest::Outcome) -> (serde_json::Value, i32) {
    let result = section
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["event"] == "result")
        .unwrap_or_else(|| panic!("no JSON result line:\n{out}"));
    let rc = section
        .lines()
        .find_map(|l| l.strip_prefix("rc="))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no rc= line:\n{out}"));
    (result, rc)
}

/// Runs `cmp` on the host: the first `len` bytes of `a` and `b` are equal.
fn assert_same_prefix(a: &std::path::Path, b: &std::path::Path, len: u64) {
    common::run(
        std::process::Command::new("cmp")
            .args(["-n", &len.to_string()])
            .arg(a)
            .arg(b),
    );
}

/// Inside the guest: `write` to the mounted system disk is refused (exit 4)
/// before a byte of the image reaches it; `write` to the USB stick by its
/// device node succeeds, verified. On the host, `cmp` finds the image in the
/// stick's backing file, and the stick's last MiB (stale data before) zeroed.
#[test]
fn write_refuses_the_system_disk_and_writes_the_stick() {
    if !guest::require("write_refuses_the_system_disk_and_writes_the_stick") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("image.img");
    let image_len = (5 << 20) + 4321;
    common::pseudo_random_file(&image, image_len, 41);
    let stick_img = dir.path().join("stick.img");
    common::pseudo_random_file(&stick_img, 64 << 20, 42);
    let script = r#"
echo "@@ refuse"
mount -o remount,ro /mnt/sys
md5sum < /dev/vda
bootstick write --yes --json image.img /dev/vda; echo "rc=$?"
md5sum < /dev/vda
cmp -n 65536 image.img /dev/vda >/dev/null 2>&1; echo "cmp=$?"
grep -c '^/dev/vda /mnt/sys ext4' /proc/mounts
echo "@@ write"
bootstick write --yes --json image.img /dev/sda; echo "rc=$?"
"#;
    let out = Guest::new(script)
        .file("image.img", &image)
        .stick(Stick::new(&stick_img, "BSTW0001"))
        .run();
    out.assert_success();

    let refuse = out.section("refuse");
    let (result, rc) = write_result(&refuse, &out);
    assert_eq!(
        rc, 4,
        "write to the system disk not refused (exit 4):\n{out}"
    );
    assert_eq!(result["ok"], false, "{out}");
    let sums: Vec<&str> = refuse.lines().filter(|l| l.ends_with("  -")).collect();
    assert_eq!(sums.len(), 2, "{out}");
    // The whole disk, read in the guest with its file system remounted
    // read-only (so ext4's own journal writes cannot change it).
    assert_eq!(sums[0], sums[1], "the system disk changed:\n{out}");
    assert!(
        refuse.contains("cmp=1"),
        "the image reached the system disk:\n{out}"
    );
    assert!(
        refuse.trim_end().ends_with('1'),
        "the system disk is not mounted any more:\n{out}"
    );

    let (result, rc) = write_result(&out.section("write"), &out);
    assert_eq!(rc, 0, "{out}");
    assert_eq!(result["ok"], true, "{out}");
    assert_eq!(result["verified"], true, "{out}");
    assert_same_prefix(&image, &stick_img, image_len);
    let data = std::fs::read(&stick_img).unwrap();
    assert!(
        data[data.len() - (1 << 20)..].iter().all(|&b| b == 0),
        "the stick's last MiB still holds old data"
    );
}

/// A stick with 4096-byte logical sectors (many large USB drives): an image
/// whose length is not a multiple of the sector size is written and
/// verified through the real device node, and `cmp` finds it on the host.
#[test]
fn write_to_a_4k_sector_stick() {
    if !guest::require("write_to_a_4k_sector_stick") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("image.img");
    let image_len = (3 << 20) + 1234;
    common::pseudo_random_file(&image, image_len, 43);
    let stick_img = dir.path().join("stick.img");
    common::pseudo_random_file(&stick_img, 32 << 20, 44);
    let mut stick = Stick::new(&stick_img, "BST4KN01");
    stick.logical_block_size = Some(4096);
    let script = r#"
echo "@@ lbs"; cat /sys/block/sda/queue/logical_block_size
echo "@@ write"; bootstick write --yes --json image.img /dev/sda; echo "rc=$?"
"#;
    let out = Guest::new(script)
        .file("image.img", &image)
        .stick(stick)
        .run();
    out.assert_success();
    assert_eq!(out.section("lbs").trim(), "4096", "{out}");
    let (result, rc) = write_result(&out.section("write"), &out);
    assert_eq!(rc, 0, "{out}");
    assert_eq!(result["verified"], true, "{out}");
    assert_same_prefix(&image, &stick_img, image_len);
}

/// Two sticks at once, each written through its `/dev/disk/by-id` link in
/// one guest and by its serial number in another: each backing file gets
/// exactly its image (`cmp` on the host), and the other stick's bytes are
/// unchanged by every write (`md5sum` of the whole device in the guest).
#[test]
fn two_sticks_each_targeted_by_by_id_and_by_serial() {
    if !guest::require("two_sticks_each_targeted_by_by_id_and_by_serial") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (ia, ib) = (dir.path().join("a.img"), dir.path().join("b.img"));
    common::pseudo_random_file(&ia, 2 << 20, 51);
    common::pseudo_random_file(&ib, 3 << 20, 52);
    let (sa, sb) = (dir.path().join("sa.img"), dir.path().join("sb.img"));
    common::pseudo_random_file(&sa, 32 << 20, 53);
    common::pseudo_random_file(&sb, 32 << 20, 54);
    let (a, b) = (Stick::new(&sa, "BSTTWO0A"), Stick::new(&sb, "BSTTWO0B"));
    // Writes `first` to `t1` and `second` to `t2`, hashing the other stick
    // around each write.
    let script = |first: &str, t1: &str, other1: &str, second: &str, t2: &str, other2: &str| {
        format!(
            r#"
echo "@@ w1"
md5sum < {other1}
bootstick write --yes --json {first} {t1}; echo "rc=$?"
md5sum < {other1}
echo "@@ w2"
md5sum < {other2}
bootstick write --yes --json {second} {t2}; echo "rc=$?"
md5sum < {other2}
"#
        )
    };
    let check = |out: &guest::Outcome| {
        out.assert_success();
        for w in ["w1", "w2"] {
            let section = out.section(w);
            assert_eq!(write_result(&section, out).1, 0, "{out}");
            let sums: Vec<&str> = section.lines().filter(|l| l.ends_with("  -")).collect();
            assert_eq!(sums.len(), 2, "{out}");
            assert_eq!(sums[0], sums[1], "a write changed the other stick:\n{out}");
        }
    };
    // `compare` takes the same names (read only, no --yes): each stick by
    // its serial and by its by-id link name matches its own image and not
    // the other's.
    let by_id_name = |s: &Stick| s.by_id().rsplit('/').next().unwrap().to_owned();
    let compares = format!(
        r#"
echo "@@ c"
bootstick compare a.img {}; echo "a-serial rc=$?"
bootstick compare b.img {}; echo "b-by-id rc=$?"
bootstick compare b.img {}; echo "a-other rc=$?"
"#,
        a.serial,
        by_id_name(&b),
        by_id_name(&a),
    );
    // A by by-id, B by serial.
    let out = Guest::new(
        &(script(
            "a.img",
            &a.by_id(),
            &b.by_id(),
            "b.img",
            &b.serial,
            &a.by_id(),
        ) + &compares),
    )
    .file("a.img", &ia)
    .file("b.img", &ib)
    .stick(a.clone())
    .stick(b.clone())
    .run();
    check(&out);
    let c = out.section("c");
    for want in ["a-serial rc=0", "b-by-id rc=0", "a-other rc=6"] {
        assert!(c.lines().any(|l| l == want), "{want}:\n{out}");
    }
    assert_same_prefix(&ia, &sa, 2 << 20);
    assert_same_prefix(&ib, &sb, 3 << 20);
    // Swapped: A by serial, B by by-id.
    let out = Guest::new(&script(
        "b.img",
        &a.serial,
        &b.by_id(),
        "a.img",
        &b.by_id(),
        &a.by_id(),
    ))
    .file("a.img", &ia)
    .file("b.img", &ib)
    .stick(a)
    .stick(b)
    .run();
    check(&out);
    assert_same_prefix(&ib, &sa, 3 << 20);
    assert_same_prefix(&ia, &sb, 2 << 20);
}

/// Two sticks reporting the same serial number (cheap sticks do): naming the
/// target by that serial is refused as ambiguous (exit 4) and neither stick
/// is touched — bootstick never guesses which one was meant.
#[test]
fn a_serial_shared_by_two_sticks_is_refused() {
    if !guest::require("a_serial_shared_by_two_sticks_is_refused") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("a.img");
    common::pseudo_random_file(&image, 1 << 20, 71);
    let (sa, sb) = (dir.path().join("sa.img"), dir.path().join("sb.img"));
    common::pseudo_random_file(&sa, 16 << 20, 72);
    common::pseudo_random_file(&sb, 16 << 20, 73);
    let (before_a, before_b) = (std::fs::read(&sa).unwrap(), std::fs::read(&sb).unwrap());
    let script = r#"
echo "@@ write"; bootstick write --yes --json a.img BSTSAME1; echo "rc=$?"
"#;
    let out = Guest::new(script)
        .file("a.img", &image)
        .stick(Stick::new(&sa, "BSTSAME1"))
        .stick(Stick::new(&sb, "BSTSAME1"))
        .run();
    out.assert_success();
    let (result, rc) = write_result(&out.section("write"), &out);
    assert_eq!(rc, 4, "an ambiguous serial was not refused:\n{out}");
    assert_eq!(result["ok"], false, "{out}");
    let error = result["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("/dev/sda") && error.contains("/dev/sdb"),
        "the refusal does not name both disks:\n{out}"
    );
    assert!(
        std::fs::read(&sa).unwrap() == before_a,
        "stick A was written"
    );
    assert!(
        std::fs::read(&sb).unwrap() == before_b,
        "stick B was written"
    );
}

/// The GRUB hybrid fixture and its length, when the guest, both firmware
/// and the fixture's tools are there (else the test skips).
fn boot_fixture(test: &str) -> Option<(std::path::PathBuf, u64)> {
    if !guest::require(test)
        || !qemu::require(test, &qemu::Firmware::ALL)
        || !common::require_tools(test, qemu::FIXTURE_TOOLS)
    {
        return None;
    }
    let iso = qemu::grub_hybrid_iso();
    let iso_len = std::fs::metadata(&iso).unwrap().len();
    Some((iso, iso_len))
}

/// The whole path a user takes: inside the guest, `write` a hybrid ISO (the
/// GRUB fixture) to the stick by its device node, verified; then on the host
/// real firmware — SeaBIOS and OVMF — boots the stick's backing file as a
/// USB mass-storage device and the fixture's marker appears.
#[test]
fn stick_written_in_the_guest_boots_under_seabios_and_ovmf() {
    let test = "stick_written_in_the_guest_boots_under_seabios_and_ovmf";
    let Some((iso, iso_len)) = boot_fixture(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // A stick full of stale data: only what bootstick writes can boot.
    let stick_img = dir.path().join("stick.img");
    common::pseudo_random_file(&stick_img, 64 << 20, 61);
    let script = r#"
echo "@@ write"; bootstick write --yes --json grub.iso /dev/sda; echo "rc=$?"
"#;
    let out = Guest::new(script)
        .file("grub.iso", &iso)
        .stick(Stick::new(&stick_img, "BSTBOOT1"))
        .run();
    out.assert_success();
    let (result, rc) = write_result(&out.section("write"), &out);
    assert_eq!(rc, 0, "{out}");
    assert_eq!(result["verified"], true, "{out}");
    assert_same_prefix(&iso, &stick_img, iso_len);
    for fw in qemu::Firmware::ALL {
        qemu::Boot::new(&stick_img, fw, &qemu::fixture_marker(fw)).assert_boots();
    }
}

/// Two sticks written in one command inside the guest, named by serial,
/// with `--eject`: the overall result lists both as written, verified and
/// ejected; on the host `cmp` finds the ISO on both, and one boots under
/// SeaBIOS, the other under OVMF.
#[test]
fn two_sticks_written_in_one_command_both_boot() {
    let test = "two_sticks_written_in_one_command_both_boot";
    let Some((iso, iso_len)) = boot_fixture(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let sticks: Vec<std::path::PathBuf> = [48u64, 64]
        .iter()
        .enumerate()
        .map(|(i, &mib)| {
            let p = dir.path().join(format!("stick{i}.img"));
            common::pseudo_random_file(&p, mib << 20, 70 + i as u64);
            p
        })
        .collect();
    let bystander = stick_image(dir.path(), "keep.img", 32);
    let script = r#"
echo "@@ write"; bootstick write --yes --json --eject grub.iso BSTFAN01 BSTFAN02; echo "rc=$?"
echo "@@ after"; bootstick list --json
"#;
    let out = Guest::new(script)
        .file("grub.iso", &iso)
        .stick(Stick::new(&sticks[0], "BSTFAN01"))
        .stick(Stick::new(&sticks[1], "BSTFAN02"))
        .stick(Stick::new(&bystander, "BSTKEEP1"))
        .run();
    out.assert_success();
    let (result, rc) = write_result(&out.section("write"), &out);
    assert_eq!(rc, 0, "{out}");
    assert_eq!(result["ok"], true, "{out}");
    let targets = result["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 2, "{out}");
    for t in targets {
        assert_eq!(t["verified"], true, "{out}");
        assert_eq!(t["ejected"], true, "{out}");
    }
    // The ejected disks are the ones named: both are gone from the guest,
    // the stick that was not named is still there.
    let left: Vec<String> = disks(&out.section("after"))
        .iter()
        .map(|d| d["serial"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(left, ["BSTKEEP1"], "disks left after --eject:\n{out}");
    for (stick, fw) in sticks.iter().zip(qemu::Firmware::ALL) {
        assert_same_prefix(&iso, stick, iso_len);
        qemu::Boot::new(stick, fw, &qemu::fixture_marker(fw)).assert_boots();
    }
}

/// The byte offset bootstick's error message names (`… at byte N …`).
fn named_offset(text: &str) -> u64 {
    let at = text
        .find("at byte ")
        .unwrap_or_else(|| panic!("no `at byte` offset in:\n{text}"));
    text[at + 8..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap_or_else(|_| panic!("no offset after `at byte` in:\n{text}"))
}

/// Writes a 16 MiB image inside the guest onto a stick whose I/O of `iotype`
/// at `sector` fails, and checks the failure: exit 5 ("write failed"), a JSON
/// result with `ok: false`, and an error naming an offset at or before the
/// failing byte and within one write request (16 MiB) of it.
fn write_fails_at(iotype: &str, sector: u64, what: &str) {
    let dir = tempfile::tempdir().unwrap();
    let img = stick_image(dir.path(), "stick.img", 64);
    let image = dir.path().join("image.img");
    common::pseudo_random_file(&image, 16 << 20, 23);
    let mut stick = Stick::new(&img, "BSTFAULT");
    stick.blkdebug = Some(blkdebug_rules(dir.path(), iotype, sector));
    let script = r#"
echo "@@ write"; bootstick write --yes --json image.img /dev/sda; echo "rc=$?"
"#;
    let out = Guest::new(script)
        .file("image.img", &image)
        .stick(stick)
        .run();
    out.assert_success();
    let (result, rc) = write_result(&out.section("write"), &out);
    assert_eq!(rc, 5, "expected exit 5 (write failed):\n{out}");
    assert_eq!(result["ok"], false, "{out}");
    assert_eq!(result["exit_code"], 5, "{out}");
    let error = result["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(what),
        "the error does not say `{what}`:\n{out}"
    );
    assert!(
        !error.contains("disappeared"),
        "an I/O error on a present stick reported as an unplug:\n{out}"
    );
    if iotype == "read" {
        // The failure must come from the read-back: write and sync both
        // finished, the verify phase began and never finished.
        let phases_done: Vec<String> = out
            .section("write")
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["event"] == "phase_done")
            .map(|v| v["phase"].as_str().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(
            phases_done,
            ["write", "sync"],
            "write and sync must finish before the read error:\n{out}"
        );
        assert!(
            error.contains("reading the target") || error.contains("reading back"),
            "the error is not the read-back's:\n{out}"
        );
    }
    let off = named_offset(error);
    let bad = sector * 512;
    assert!(
        off <= bad && bad - off < 16 << 20,
        "offset {off} does not locate the failing byte {bad}:\n{out}"
    );
}

/// An I/O error while writing (QEMU `blkdebug` fails writes touching one
/// sector, as a failing stick does): bootstick fails naming the offset and
/// never claims success.
#[test]
fn write_error_fails_naming_the_offset() {
    if !guest::require("write_error_fails_naming_the_offset") {
        return;
    }
    write_fails_at("write", 8 << 11, "writing"); // 8 MiB
}

/// An I/O error while reading the stick back (the write itself succeeded):
/// the verify fails naming the offset, never "verified".
#[test]
fn read_error_during_verify_fails_naming_the_offset() {
    if !guest::require("read_error_during_verify_fails_naming_the_offset") {
        return;
    }
    write_fails_at("read", 12 << 11, "reading"); // 12 MiB
}

/// The stick is pulled (QMP `device_del`) while bootstick is writing: it ends
/// by itself — the guest powers off well before the harness's hang guard —
/// with exit 5 and an error saying the stick disappeared (not "full" or
/// "failing"), naming the offset, never success.
#[test]
fn unplug_mid_write_ends_with_a_clear_error() {
    if !guest::require("unplug_mid_write_ends_with_a_clear_error") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = stick_image(dir.path(), "stick.img", 2048);
    // Unplug once 10 MiB (20480 sectors) have reached the stick.
    let script = r#"
bootstick write --yes --json big.img /dev/sda > /tmp/w.log 2>&1 &
p=$!
i=0
while kill -0 $p 2>/dev/null && [ "$(awk '{print $7}' /sys/block/sda/stat)" -lt 20480 ]; do
  sleep 0.05; i=$((i+1)); [ $i -gt 2400 ] && break
done
echo "@@ unplug-now"
wait $p; echo "rc=$?"
cat /tmp/w.log
echo "@@ end"
"#;
    let mut g = Guest::new(script)
        .sparse_file("big.img", 1 << 30)
        .stick(Stick::new(&img, "BSTPULL1"))
        .spawn();
    assert!(
        g.wait_for_output("@@ unplug-now"),
        "the write never started"
    );
    let reply = g.qmp("device_del", serde_json::json!({"id": "stick0"}));
    assert!(reply.get("return").is_some(), "device_del failed: {reply}");
    let out = g
        .finish_within()
        .expect("bootstick hung after the stick was pulled");
    out.assert_success();
    let (result, rc) = write_result(&out.section("unplug-now"), &out);
    assert_eq!(rc, 5, "expected exit 5:\n{out}");
    assert_eq!(result["ok"], false, "{out}");
    let error = result["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("disappeared"),
        "the error does not say the stick disappeared:\n{out}"
    );
    let off = named_offset(error);
    assert!(
        (10 << 20..1 << 30).contains(&off),
        "offset {off} is not where the write was cut:\n{out}"
    );
}

/// The JSON event in a line `write --json` printed, if it is one.
fn event(line: &str) -> Option<serde_json::Value> {
    serde_json::from_str::<serde_json::Value>(line)
        .ok()
        .filter(|v| v["event"].is_string())
}

/// The stick is pulled while bootstick reads it back (the write and its
/// flush done, two reader threads in flight): both readers end and bootstick
/// with them — the guest powers off well before the harness's hang guard —
/// with exit 5 and an error saying the stick disappeared while being read
/// back, at or after the bytes already verified; not a mismatch, not a
/// failing or fake stick. Reads from the stick are throttled (QEMU
/// `throttle`, 2 MiB/s) so that the read-back of the 48 MiB image lasts far
/// longer than the unplug takes to land; writes are not.
#[test]
fn unplug_during_read_back_ends_with_a_clear_error() {
    if !guest::require("unplug_during_read_back_ends_with_a_clear_error") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("image.img");
    let image_len = 48 << 20;
    common::pseudo_random_file(&image, image_len, 81);
    let stick_len = 64 << 20;
    let mut stick = Stick::new(
        &stick_image(dir.path(), "stick.img", stick_len >> 20),
        "BSTPULL2",
    );
    stick.read_bytes_per_second = Some(2 << 20);
    let script = r#"
echo "@@ write"; bootstick write --yes --json image.img /dev/sda; echo "rc=$?"
"#;
    let mut g = Guest::new(script)
        .file("image.img", &image)
        .stick(stick)
        .spawn();
    // The first verify progress: the write and sync are done and a range
    // has been read back and checked.
    let progress = g
        .wait_for_line(|l| {
            event(l).is_some_and(|v| v["event"] == "progress" && v["phase"] == "verify")
        })
        .unwrap_or_else(|| panic!("the read-back never started:\n{}", g.output_so_far()));
    let reply = g.qmp("device_del", serde_json::json!({"id": "stick0"}));
    assert!(reply.get("return").is_some(), "device_del failed: {reply}");
    let seen = g.output_so_far();
    let out = g
        .finish_within()
        .expect("bootstick hung after the stick was pulled during the read-back");
    out.assert_success();
    let section = out.section("write");
    let events: Vec<serde_json::Value> = section.lines().filter_map(event).collect();
    let done = |phase: &str| {
        events
            .iter()
            .any(|v| v["event"] == "phase_done" && v["phase"] == phase)
    };
    assert!(
        done("write") && done("sync"),
        "the write did not finish before the unplug:\n{out}"
    );
    assert!(
        !done("verify"),
        "the read-back finished before the unplug:\n{out}"
    );
    let (result, rc) = write_result(&section, &out);
    assert_eq!(rc, 5, "expected exit 5 (write failed):\n{out}");
    assert_eq!(result["ok"], false, "{out}");
    assert_eq!(result["exit_code"], 5, "{out}");
    let error = result["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("disappeared while reading it back at byte"),
        "the error does not say the stick disappeared during the read-back:\n{out}"
    );
    for wrong in ["differs", "failing", "fake"] {
        assert!(
            !error.contains(wrong),
            "an unplug reported as `{wrong}`:\n{out}"
        );
    }
    // Everything up to the last progress printed before the unplug was
    // read back and matched, so the failed read lies beyond it.
    let verified = seen
        .lines()
        .filter_map(event)
        .filter(|v| v["event"] == "progress" && v["phase"] == "verify")
        .filter_map(|v| v["done"].as_u64())
        .max()
        .unwrap_or_else(|| panic!("no verify progress in {progress}"));
    let off = named_offset(error);
    assert!(
        (verified..stick_len).contains(&off),
        "offset {off} is not beyond the {verified} bytes verified before the unplug:\n{out}"
    );
}

/// A disc into an ISO, on QEMU's emulated USB CD-ROM drives (`usb-bot` +
/// `scsi-cd`: the guest's `sr_mod` sees `/dev/srN`, 2048-byte sectors).
/// Each disc is a genisoimage ISO followed by junk "run-out" sectors, so
/// the drive reports more capacity than the volume holds:
/// - `backup /dev/srN disc.iso` reads up to the ISO 9660 volume's end:
///   the file is the ISO's length (less than the drive's capacity), and on
///   the host `cmp` finds exactly the ISO's bytes (copied out through a
///   scratch stick); the result says the ISO is complete.
/// - on a second drive QEMU's `blkdebug` fails every read touching one LBA
///   of the volume: `backup` stops naming that LBA (exit 24, no file), and
///   `--skip-bad` lists exactly it, says the ISO is not complete (exit 24)
///   and keeps a file that `cmp` finds equal to the ISO with that sector
///   zeroed.
///
/// (Without the volume extent the backup read the whole capacity, junk
/// included; without the per-sector retry the error named the 4 MiB
/// chunk's offset, no LBA, and `--skip-bad` did not exist.)
#[test]
fn backup_of_an_emulated_cd_is_exactly_its_iso_and_names_a_bad_lba() {
    let t = "backup_of_an_emulated_cd_is_exactly_its_iso_and_names_a_bad_lba";
    if !guest::require(t) || !common::require_tools(t, &["genisoimage", "cmp"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("docs")).unwrap();
    common::pseudo_random_file(&tree.join("big.bin"), 2 << 20, 77);
    std::fs::write(tree.join("docs/readme.txt"), "a disc to keep\n").unwrap();
    let iso = dir.path().join("disc.iso");
    common::run(
        std::process::Command::new("genisoimage")
            .args(["-quiet", "-R", "-J", "-V", "BSTDISC", "-o"])
            .arg(&iso)
            .arg(&tree),
    );
    let iso_bytes = std::fs::read(&iso).unwrap();
    let iso_len = iso_bytes.len() as u64;
    assert_eq!(iso_len % 2048, 0);
    // The discs: the ISO, then junk sectors the drive reports as capacity.
    let disc = |name: &str, runout: usize| {
        let p = dir.path().join(name);
        let mut d = iso_bytes.clone();
        d.resize(iso_bytes.len() + runout * 2048, 0xa5);
        std::fs::write(&p, d).unwrap();
        p
    };
    let clean = disc("clean.img", 96);
    let damaged = disc("damaged.img", 32);
    let bad_lba = iso_len / 2048 / 2;
    let clean_size = (iso_len + 96 * 2048) / 512;
    let damaged_size = (iso_len + 32 * 2048) / 512;
    let export = stick_image(dir.path(), "export.img", 16);
    let script = format!(
        r#"
for d in /sys/block/sr*; do
  case "$(cat $d/size)" in
    {clean_size}) clean=/dev/${{d##*/}};;
    {damaged_size}) bad=/dev/${{d##*/}};;
  esac
done
echo "@@ info"
echo "drives $clean $bad"
echo "capacity $(blockdev --getsize64 $clean)"
echo "@@ clean"
bootstick backup --json $clean clean.iso; echo "rc=$?"
echo "size $(stat -c %s clean.iso)"
echo "@@ stop"
bootstick backup --json $bad stop.iso; echo "rc=$?"
[ -e stop.iso ] && echo "stop.iso exists"
echo "@@ skip"
bootstick backup --json --skip-bad $bad skip.iso; echo "rc=$?"
echo "@@ export"
dd if=clean.iso of=/dev/sda bs=1M conv=fsync; echo "dd=$?"
dd if=skip.iso of=/dev/sda bs=1M seek=8 conv=fsync; echo "dd=$?"
"#
    );
    let mut bad = guest::Disc {
        image: damaged.clone(),
        blkdebug: None,
    };
    bad.blkdebug = Some(blkdebug_rules(dir.path(), "read", bad_lba * 4 + 1));
    let out = Guest::new(&script)
        .disc(guest::Disc {
            image: clean.clone(),
            blkdebug: None,
        })
        .disc(bad)
        .stick(Stick::new(&export, "BSTEXPORT"))
        .run();
    out.assert_success();
    let info = out.section("info");
    assert!(
        line(&info, "drives").split_whitespace().count() == 2,
        "both drives must be found by capacity:\n{out}"
    );
    assert_eq!(
        line(&info, "capacity"),
        (clean_size * 512).to_string(),
        "the drive reports the disc's capacity, run-out included:\n{out}"
    );

    let section = out.section("clean");
    let (r, rc) = write_result(&section, &out);
    assert_eq!(rc, 0, "{out}");
    assert_eq!(r["image_bytes"], iso_len, "{out}");
    assert_eq!(r["source_bytes"], clean_size * 512, "{out}");
    assert_eq!(r["extent"]["kind"], "volume", "{out}");
    assert_eq!(r["complete"], true, "{out}");
    assert_eq!(r["sector_bytes"], 2048, "{out}");
    assert_eq!(line(&section, "size"), iso_len.to_string(), "{out}");

    let section = out.section("stop");
    let (r, rc) = write_result(&section, &out);
    assert_eq!(rc, 24, "{out}");
    assert_eq!(r["bad_lba"], bad_lba, "{out}");
    assert!(!section.contains("stop.iso exists"), "{out}");

    let (r, rc) = write_result(&out.section("skip"), &out);
    assert_eq!(rc, 24, "{out}");
    assert_eq!(r["bad_sectors"], serde_json::json!([bad_lba]), "{out}");
    assert_eq!(r["complete"], false, "{out}");
    assert_eq!(r["image_bytes"], iso_len, "{out}");
    assert_eq!(r["proven"], true, "{out}");

    let export_out = out.section("export");
    assert_eq!(
        export_out.matches("dd=0").count(),
        2,
        "exporting the files failed:\n{out}"
    );
    assert_same_prefix(&iso, &export, iso_len);
    let mut zeroed = iso_bytes.clone();
    let at = (bad_lba * 2048) as usize;
    zeroed[at..at + 2048].fill(0);
    let expected = dir.path().join("expected.iso");
    std::fs::write(&expected, &zeroed).unwrap();
    common::run(
        std::process::Command::new("cmp")
            .args(["-n", &iso_len.to_string(), "-i", "0:8388608"])
            .arg(&expected)
            .arg(&export),
    );
}

/// Stick health on emulated USB sticks, in the guest:
/// - `backup` of a stick of random data into a `.zst` on the system disk:
///   its `image_sha256` is the host's SHA-256 of the stick's backing file;
/// - `probe --read-only` of a stick whose image fails reads of one sector
///   (QEMU `blkdebug`): `bad-sectors` (exit 24) with a range holding that
///   sector's byte, and `backup --skip-bad` of it lists exactly that LBA;
/// - `format --fs exfat`: the guest kernel sees the new partition after the
///   re-read (`/dev/sdX1` exists), and on the host `fsck.exfat -n` finds
///   the partition (read through a loop device at its offset) clean.
#[test]
fn guest_backup_probe_and_format_on_usb_sticks() {
    let t = "guest_backup_probe_and_format_on_usb_sticks";
    if !guest::require(t)
        || !common::require_root(t)
        || !common::require_tools(t, &["fsck.exfat", "losetup", "sha256sum"])
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.img");
    common::pseudo_random_file(&a, 32 << 20, 61);
    let b = dir.path().join("b.img");
    common::pseudo_random_file(&b, 32 << 20, 62);
    let c = stick_image(dir.path(), "c.img", 48);
    let bad_sector = 20_000u64;
    let mut sb = Stick::new(&b, "BSTHLTHB");
    sb.blkdebug = Some(blkdebug_rules(dir.path(), "read", bad_sector));
    let sa = Stick::new(&a, "BSTHLTHA");
    let sc = Stick::new(&c, "BSTHLTHC");
    let script = format!(
        r#"
echo "@@ backup"
bootstick backup --json {a} a.img.zst; echo "rc=$?"
rm -f a.img.zst a.img.zst.sha256  # the system disk has room for one
echo "@@ probe"
bootstick probe --read-only --json {b}; echo "rc=$?"
echo "@@ skip"
bootstick backup --json --skip-bad {b} b.img; echo "rc=$?"
echo "@@ format"
bootstick format --yes --json --fs exfat --label HEALTH {c}; echo "rc=$?"
dev=$(readlink -f {c})
if [ -b "${{dev}}1" ]; then echo "partition ${{dev}}1"; else echo "no ${{dev}}1:"; ls /dev/sd*; fi
"#,
        a = sa.by_id(),
        b = sb.by_id(),
        c = sc.by_id()
    );
    let out = Guest::new(&script).stick(sa).stick(sb).stick(sc).run();
    out.assert_success();

    let (r, rc) = write_result(&out.section("backup"), &out);
    assert_eq!(rc, 0, "{out}");
    let host_sha = common::run(std::process::Command::new("sha256sum").arg(&a));
    assert_eq!(
        r["image_sha256"].as_str(),
        host_sha.split_whitespace().next(),
        "{out}"
    );
    assert_eq!(r["compression"], "zstd", "{out}");

    let (r, rc) = write_result(&out.section("probe"), &out);
    assert_eq!(rc, 24, "{out}");
    assert_eq!(r["verdict"], "bad-sectors", "{out}");
    let byte = bad_sector * 512;
    assert!(
        r["bad_ranges"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| { g["start"].as_u64().unwrap() <= byte && byte < g["end"].as_u64().unwrap() }),
        "no bad range holds byte {byte}:\n{out}"
    );

    let (r, rc) = write_result(&out.section("skip"), &out);
    assert_eq!(rc, 24, "{out}");
    assert_eq!(r["bad_sectors"], serde_json::json!([bad_sector]), "{out}");
    assert_eq!(r["sector_bytes"], 512, "{out}");

    let section = out.section("format");
    let (r, rc) = write_result(&section, &out);
    assert_eq!(rc, 0, "{out}");
    assert_eq!(r["fs"], "exfat", "{out}");
    assert!(section.contains("partition /dev/sd"), "{out}");
    assert_eq!(r["partitions"].as_array().map(Vec::len), Some(1), "{out}");
    let size = r["partition_bytes"].as_u64().unwrap();
    let lo = common::LoopDevice::attach_with(
        &c,
        &[
            "-r",
            "-o",
            &(1u64 << 20).to_string(),
            "--sizelimit",
            &size.to_string(),
        ],
    );
    common::run(
        std::process::Command::new("fsck.exfat")
            .arg("-n")
            .arg(lo.path()),
    );
}

/// A fake-capacity USB stick in the guest: `nbdkit`'s `split` plugin
/// serves one 64 MiB file 128 times over (8 GiB reported, every offset
/// stored at offset mod 64 MiB, as the cheap fakes do), attached through
/// QEMU's NBD client as a USB stick; the guest sees 8 GiB (`blockdev
/// --getsize64`). `probe --yes` says `fake-capacity` (exit 23) with the
/// real size found within 1 MiB below 64 MiB and the failures from 64 MiB
/// on, `wrapped`. The emulation is not proven independently inside this
/// test (a busybox `dd` write and read-back in the guest read zeros even
/// at the offset written, not understood yet); the host tests prove the
/// FUSE fake with `dd` before probing it.
#[test]
fn guest_probe_finds_an_nbdkit_fake_capacity_stick() {
    let t = "guest_probe_finds_an_nbdkit_fake_capacity_stick";
    if !guest::require(t) || !common::require_tools(t, &["nbdkit"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let real = 64u64 << 20;
    let store = stick_image(dir.path(), "store.img", 64);
    let sock = dir.path().join("nbd.sock");
    let mut server = std::process::Command::new("nbdkit")
        .arg("-f")
        .arg("-U")
        .arg(&sock)
        .arg("split")
        .args(std::iter::repeat_n(&store, 128))
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while !sock.exists() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "nbdkit did not listen"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let mut stick = Stick::new(&store, "BSTFAKE1");
    stick.nbd_socket = Some(sock.clone());
    let script = format!(
        r#"
echo "@@ size"
echo "size $(blockdev --getsize64 {dev})"
echo "@@ probe"
bootstick probe --yes --json {dev}; echo "rc=$?"
"#,
        dev = stick.by_id(),
    );
    let out = Guest::new(&script).stick(stick).run();
    let _ = server.kill();
    let _ = server.wait();
    out.assert_success();
    assert_eq!(
        line(&out.section("size"), "size"),
        (8u64 << 30).to_string(),
        "{out}"
    );
    let (r, rc) = write_result(&out.section("probe"), &out);
    assert_eq!(rc, 23, "{out}");
    assert_eq!(r["verdict"], "fake-capacity", "{out}");
    assert_eq!(r["reported_bytes"], 8u64 << 30, "{out}");
    let usable = r["usable_bytes"].as_u64().unwrap();
    assert!(
        usable <= real && usable >= real - (1 << 20),
        "usable {usable}:\n{out}"
    );
    let from = r["fails_from"].as_u64().unwrap();
    assert!(
        from >= real && from <= real + (1 << 20),
        "fails from {from}:\n{out}"
    );
    assert_eq!(r["fails_how"], "wrapped", "{out}");
}

/// An interactive write to a USB stick at 80 columns, as a person sees it:
/// the guest runs `bootstick write IMAGE /dev/sda` on a terminal (util-linux
/// `script`, recording its timing), types "y" once the confirmation asks,
/// and the recording is replayed on the host into an 80-column tmux
/// (`scriptreplay`), whose screens are checked: the confirmation names the
/// stick's model and its whole serial, no row reaches the last column, a
/// bar is drawn while writing and the summary says it was verified; `cmp`
/// proves the stick. With `BOOTSTICK_SCREENSHOTS=DIR` the screens mid-write
/// and at the end are saved there (`scripts/screenshots.sh` turns them into
/// the README's images).
#[test]
fn guest_an_interactive_write_to_a_usb_stick_at_80_columns() {
    let t = "guest_an_interactive_write_to_a_usb_stick_at_80_columns";
    if !guest::require(t)
        || !common::require_tools(t, &["tmux", "scriptreplay", "sfdisk", "cmp", "base64"])
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("debian-live-13-amd64.img");
    common::pseudo_random_file(&img, 40 << 20, 41);
    let mut sfdisk = std::process::Command::new("sfdisk")
        .args(["-q"])
        .arg(&img)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        sfdisk.stdin.as_mut().unwrap(),
        b"label: dos\nstart=2048, type=c, bootable\n",
    )
    .unwrap();
    assert!(sfdisk.wait().unwrap().success());
    let serial = "4C530001230502118205";
    let stick = Stick::new(&stick_image(dir.path(), "stick.img", 128), serial);
    let script = r#"
echo "@@ run"
(i=0; while ! grep -q 'Continue?' /tmp/ts 2>/dev/null && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; sleep 0.5; printf 'y\n') | script -q -f -e --timing=/tmp/tm -c "stty cols 80 rows 24; echo '# bootstick write debian-live-13-amd64.img /dev/sda'; bootstick write debian-live-13-amd64.img /dev/sda" /tmp/ts > /dev/null; echo "rc=$?"
echo "@@ typescript"; base64 /tmp/ts
echo "@@ timing"; cat /tmp/tm
echo "@@ end"
"#;
    let out = Guest::new(script)
        .file("debian-live-13-amd64.img", &img)
        .stick(stick.clone())
        .run();
    out.assert_success();
    assert_eq!(line(&out.section("run"), "rc="), "0", "{out}");
    let ts = dir.path().join("typescript");
    let tm = dir.path().join("timing");
    let decoded = std::process::Command::new("base64")
        .arg("-d")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let typescript = out.section("typescript");
    let mut decoded = decoded;
    std::io::Write::write_all(decoded.stdin.as_mut().unwrap(), typescript.as_bytes()).unwrap();
    let decoded = decoded.wait_with_output().unwrap();
    assert!(decoded.status.success(), "{out}");
    std::fs::write(&ts, &decoded.stdout).unwrap();
    std::fs::write(&tm, out.section("timing") + "\n").unwrap();

    let screens = common::tmux_screens(
        &format!("scriptreplay --timing {} {}", tm.display(), ts.display()),
        80,
        None,
        true,
    );
    let plain: Vec<String> = screens.iter().map(|s| common::plain_screen(s)).collect();
    for screen in &plain {
        for row in screen.lines() {
            assert!(
                row.chars().count() < 80,
                "a row reaches the last column: {row:?}\n{screen}"
            );
        }
    }
    // The last screen before tmux's "Pane is dead" line scrolled it.
    let done = plain
        .iter()
        .rposition(|s| !s.contains("Pane is dead"))
        .unwrap_or_default();
    let last = plain.get(done).cloned().unwrap_or_default();
    for shown in [
        "# bootstick write debian-live-13-amd64.img /dev/sda",
        "Write debian-live-13-amd64.img (40.0 MiB) to this disk?",
        "QEMU HARDDISK",
        serial,
        "/dev/sda",
        "will be erased",
        "Continue? [y/N] y",
    ] {
        assert!(last.contains(shown), "{shown:?} not on the screen:\n{last}");
    }
    assert!(
        last.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .contains("verified by reading it back"),
        "{last}"
    );
    let writing = plain
        .iter()
        .rposition(|s| s.contains("  write [") && s.contains("ETA"))
        .unwrap_or_else(|| panic!("no screen drew the write bar:\n{}", plain.join("\n----\n")));
    if let Some(dir) = std::env::var_os("BOOTSTICK_SCREENSHOTS") {
        let dir = std::path::PathBuf::from(dir);
        std::fs::create_dir_all(&dir).unwrap();
        let shown = |s: &str| s.trim_end().to_owned() + "\n";
        std::fs::copy(&ts, dir.join("write.typescript")).unwrap();
        std::fs::copy(&tm, dir.join("write.timing")).unwrap();
        std::fs::write(dir.join("write-progress.ans"), shown(&screens[writing])).unwrap();
        std::fs::write(dir.join("write-done.ans"), shown(&screens[done])).unwrap();
    }
    common::run(
        std::process::Command::new("cmp")
            .arg("-n")
            .arg((40u64 << 20).to_string())
            .arg(&img)
            .arg(&stick.image),
    );
}
