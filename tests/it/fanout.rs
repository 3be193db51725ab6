//! `bootstick write IMAGE TARGET TARGET...`: one image to several sticks at
//! once. Oracles: `cmp` of every target against the image, `sha256sum` of
//! backing files that must survive a refusal, and the JSON events.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use bootstick::plan::MIB;
use common::{bootstick, pseudo_random_file, require_root, require_tools, stderr, LoopDevice};
use serde_json::Value;

fn sha256_file(p: &Path) -> String {
    let out = common::run(Command::new("sha256sum").arg(p));
    out.split_whitespace().next().unwrap().to_owned()
}

/// `cmp -n len image target`: the target starts with the image.
fn cmp_prefix(image: &Path, target: &Path, len: u64) {
    common::run(
        Command::new("cmp")
            .arg("-n")
            .arg(len.to_string())
            .arg(image)
            .arg(target),
    );
}

/// A loop device on a backing file of `len` bytes of `byte`.
fn filled_loop(dir: &Path, name: &str, len: u64, byte: u8) -> (PathBuf, LoopDevice) {
    let backing = dir.join(name);
    std::fs::write(&backing, vec![byte; len as usize]).unwrap();
    let dev = LoopDevice::attach(&backing);
    (backing, dev)
}

fn write_json(image: &Path, targets: &[&Path]) -> (Output, Vec<Value>) {
    let out = bootstick()
        .args(["write", "--yes", "--json"])
        .arg(image)
        .args(targets)
        .output()
        .unwrap();
    let events = common::json_lines(&out.stdout);
    (out, events)
}

/// Every per-target event names its target, one of `targets`; the last line
/// is the overall `result`, listing the targets in argument order.
fn check_tagged(events: &[Value], targets: &[&Path]) {
    let names: Vec<String> = targets.iter().map(|t| t.display().to_string()).collect();
    for e in events {
        match e["event"].as_str().unwrap() {
            "start" | "phase" | "progress" | "phase_done" | "target_result" => {
                let t = e["target"].as_str().unwrap_or_else(|| panic!("{e}"));
                assert!(names.iter().any(|n| n == t), "{e}");
            }
            _ => {}
        }
    }
    let result = events.last().unwrap();
    assert_eq!(result["event"], "result", "{result}");
    let listed: Vec<&str> = result["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["target"].as_str().unwrap())
        .collect();
    assert_eq!(listed, names, "{result}");
    for name in &names {
        let starts = events
            .iter()
            .filter(|e| e["event"] == "start" && e["target"] == name.as_str())
            .count();
        let results = events
            .iter()
            .filter(|e| e["event"] == "target_result" && e["target"] == name.as_str())
            .count();
        assert_eq!((starts, results), (1, 1), "{name}: {events:#?}");
    }
}

#[test]
fn two_files_in_one_command_and_single_target_json_unchanged() {
    let t = "two_files_in_one_command_and_single_target_json_unchanged";
    if !require_tools(t, &["cmp"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("image.bin");
    let len = 2 * MIB + 4097;
    pseudo_random_file(&img, len, 21);
    let a = dir.path().join("a.img");
    let b = dir.path().join("b.img");
    let (out, events) = write_json(&img, &[&a, &b]);
    assert!(out.status.success(), "{}", stderr(&out));
    check_tagged(&events, &[&a, &b]);
    let result = events.last().unwrap();
    assert_eq!(result["ok"], true, "{result}");
    for t in result["targets"].as_array().unwrap() {
        assert_eq!(t["ok"], true, "{t}");
        assert_eq!(t["verified"], true, "{t}");
    }
    common::run(Command::new("cmp").arg(&img).arg(&a));
    common::run(Command::new("cmp").arg(&img).arg(&b));

    // One target: no `target` on progress events, one `result` with the
    // write's own fields, no `targets` list and no `target_result`.
    let (out, events) = write_json(&img, &[&a]);
    assert!(out.status.success(), "{}", stderr(&out));
    for e in &events {
        assert_ne!(e["event"], "target_result", "{e}");
        if e["event"] != "start" {
            assert!(e.get("target").is_none(), "{e}");
        }
    }
    let result = events.last().unwrap();
    assert_eq!(result["event"], "result");
    assert_eq!(result["verified"], true, "{result}");
    assert!(result.get("targets").is_none(), "{result}");
}

#[test]
fn three_loop_devices_and_a_file_in_one_command() {
    let t = "three_loop_devices_and_a_file_in_one_command";
    if !require_root(t) || !require_tools(t, &["losetup", "cmp"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("image.bin");
    let len = 3 * MIB + 333;
    pseudo_random_file(&img, len, 7);
    let (b1, d1) = filled_loop(dir.path(), "b1", 8 * MIB, 0xFF);
    let (b2, d2) = filled_loop(dir.path(), "b2", 12 * MIB, 0xA5);
    let (b3, d3) = filled_loop(dir.path(), "b3", 16 * MIB, 0x5A);
    let file = dir.path().join("stick.img");
    let targets = [d1.path(), d2.path(), d3.path(), file.as_path()];
    let (out, events) = write_json(&img, &targets);
    assert!(out.status.success(), "{}", stderr(&out));
    check_tagged(&events, &targets);
    let result = events.last().unwrap();
    assert_eq!(result["ok"], true, "{result}");
    for t in result["targets"].as_array().unwrap() {
        assert_eq!(t["ok"], true, "{t}");
        assert_eq!(t["verified"], true, "{t}");
    }
    // Each device got its own plan: the tail wipe of ITS last MiB.
    for (dev, size) in [(&d1, 8), (&d2, 12), (&d3, 16)] {
        let start = events
            .iter()
            .find(|e| e["event"] == "start" && e["target"] == dev.path().to_str().unwrap())
            .unwrap();
        assert_eq!(start["target_bytes"], size * MIB, "{start}");
        assert_eq!(start["plan_bytes"], len + MIB, "{start}");
    }
    for dev in [&d1, &d2, &d3] {
        cmp_prefix(&img, dev.path(), len);
    }
    common::run(Command::new("cmp").arg(&img).arg(&file));
    drop((d1, d2, d3));
    for (backing, size) in [(&b1, 8), (&b2, 12), (&b3, 16)] {
        cmp_prefix(&img, backing, len);
        let tail = std::fs::read(backing).unwrap();
        assert!(tail[((size - 1) * MIB) as usize..].iter().all(|&b| b == 0));
    }
}

/// Runs a refused multi-target write and checks that nothing changed: every
/// loop device's backing file keeps its pattern and no file target appears.
fn assert_refused_untouched(
    img: &Path,
    targets: &[&Path],
    backings: &[&Path],
    created: &Path,
    needle: &str,
) {
    let before: Vec<String> = backings.iter().map(|b| sha256_file(b)).collect();
    let out = bootstick()
        .args(["write", "--yes"])
        .arg(img)
        .args(targets)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains(needle), "{err}");
    assert!(err.contains("nothing was written"), "{err}");
    let after: Vec<String> = backings.iter().map(|b| sha256_file(b)).collect();
    assert_eq!(before, after, "a target changed");
    assert!(!created.exists(), "the file target was created");
}

#[test]
fn the_same_disk_named_twice_refuses_every_target() {
    let t = "the_same_disk_named_twice_refuses_every_target";
    if !require_root(t) || !require_tools(t, &["losetup", "sha256sum"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("image.bin");
    pseudo_random_file(&img, MIB, 3);
    let (b1, d1) = filled_loop(dir.path(), "b1", 4 * MIB, 0xFF);
    let (b2, d2) = filled_loop(dir.path(), "b2", 4 * MIB, 0xEE);
    // A second name for the first device, as a by-id link would be.
    let link = dir.path().join("link-to-first");
    std::os::unix::fs::symlink(d1.path(), &link).unwrap();
    let file = dir.path().join("never.img");
    assert_refused_untouched(
        &img,
        &[file.as_path(), d1.path(), d2.path(), &link],
        &[&b1, &b2],
        &file,
        &format!(
            "{} is the same disk as {}",
            link.display(),
            d1.path().display()
        ),
    );
}

#[test]
fn the_same_file_through_a_hard_link_or_a_dangling_symlink_is_refused() {
    let t = "the_same_file_through_a_hard_link_or_a_dangling_symlink_is_refused";
    if !require_tools(t, &["sha256sum"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let img = d.join("image.bin");
    pseudo_random_file(&img, MIB, 4);
    // An existing file and a hard link to it: one inode, two names.
    let out = d.join("out.img");
    pseudo_random_file(&out, 2 * MIB, 5);
    let hard = d.join("hard.img");
    std::fs::hard_link(&out, &hard).unwrap();
    let never = d.join("never.img");
    assert_refused_untouched(
        &img,
        &[out.as_path(), never.as_path(), hard.as_path()],
        &[&out],
        &never,
        &format!("{} is the same file as {}", hard.display(), out.display()),
    );
    // A symlink to a file that does not exist yet, in another directory:
    // both targets would create the same file.
    std::fs::create_dir(d.join("sub")).unwrap();
    let new = d.join("sub/new.img");
    let link = d.join("link.img");
    std::os::unix::fs::symlink("sub/./new.img", &link).unwrap();
    assert_refused_untouched(
        &img,
        &[link.as_path(), new.as_path()],
        &[&img],
        &new,
        &format!("{} is the same file as {}", new.display(), link.display()),
    );
    // A chain of links, the last one dangling, to an absolute path.
    let link2 = d.join("link2.img");
    std::os::unix::fs::symlink(&link, &link2).unwrap();
    assert_refused_untouched(
        &img,
        &[new.as_path(), link2.as_path()],
        &[&img],
        &new,
        "is the same file as",
    );
}

#[test]
fn one_target_too_small_refuses_every_target() {
    let t = "one_target_too_small_refuses_every_target";
    if !require_root(t) || !require_tools(t, &["losetup", "sha256sum"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("image.bin");
    pseudo_random_file(&img, 3 * MIB, 4);
    let (b1, d1) = filled_loop(dir.path(), "big", 8 * MIB, 0xFF);
    let (b2, d2) = filled_loop(dir.path(), "small", 2 * MIB, 0xEE);
    let file = dir.path().join("never.img");
    assert_refused_untouched(
        &img,
        &[d1.path(), file.as_path(), d2.path()],
        &[&b1, &b2],
        &file,
        &format!("{}: {}", d2.path().display(), d2.path().display()),
    );
}

/// A tmpfs of 1 MiB mounted on a directory; unmounted on drop.
struct SmallTmpfs(PathBuf);

impl Drop for SmallTmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_failing_target_does_not_stop_the_others() {
    let t = "a_failing_target_does_not_stop_the_others";
    if !require_root(t) || !require_tools(t, &["losetup", "cmp", "mount", "umount"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("image.bin");
    let len = 3 * MIB + 5;
    pseudo_random_file(&img, len, 5);
    let (_, d1) = filled_loop(dir.path(), "b1", 8 * MIB, 0xFF);
    let (_, d2) = filled_loop(dir.path(), "b2", 8 * MIB, 0xFF);
    // A target whose write fails: a file on a filesystem too small for it.
    let mnt = dir.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    common::run(
        Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1M", "tmpfs"])
            .arg(&mnt),
    );
    let tmpfs = SmallTmpfs(mnt.clone());
    let full = mnt.join("stick.img");
    let targets = [d1.path(), full.as_path(), d2.path()];
    let (out, events) = write_json(&img, &targets);
    drop(tmpfs);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    check_tagged(&events, &targets);
    let result = events.last().unwrap();
    assert_eq!(result["ok"], false, "{result}");
    assert_eq!(result["exit_code"], 5, "{result}");
    let listed = result["targets"].as_array().unwrap();
    assert_eq!(listed[0]["ok"], true, "{result}");
    assert_eq!(listed[0]["verified"], true, "{result}");
    assert_eq!(listed[1]["ok"], false, "{result}");
    assert_eq!(listed[1]["exit_code"], 5, "{result}");
    assert!(
        listed[1]["error"]
            .as_str()
            .unwrap()
            .contains("No space left"),
        "{result}"
    );
    assert_eq!(listed[2]["ok"], true, "{result}");
    assert_eq!(listed[2]["verified"], true, "{result}");
    assert!(stderr(&out).contains("1 of 3 targets failed"));
    cmp_prefix(&img, d1.path(), len);
    cmp_prefix(&img, d2.path(), len);
}

/// Bar rows of a screen: those with a phase and a bar (`  write [`).
fn bar_rows(screen: &str) -> Vec<&str> {
    screen
        .lines()
        .filter(|l| l.contains(" write [") || l.contains(" verify ["))
        .collect()
}

/// On a terminal, every target's bar starts in the same column whatever
/// the lengths of the targets' names, and a bar line fits the terminal
/// (never wrapped: each bar row ends with its ETA) at 80 columns and at
/// 200, where the sizes and speed are shown too. Screens as tmux drew them.
#[test]
fn bars_line_up_and_fit_the_terminal() {
    let t = "bars_line_up_and_fit_the_terminal";
    if !require_tools(t, &["tmux"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("image.bin");
    pseudo_random_file(&img, 96 * MIB, 9);
    let eta_last = |row: &str| {
        let last = row
            .trim_end()
            .rsplit(' ')
            .next()
            .unwrap_or_default()
            .to_owned();
        row.contains("ETA ")
            && last.len() >= 2
            && last[..last.len() - 1].chars().all(|c| c.is_ascii_digit())
    };
    for (columns, names) in [
        (80u16, &["a.img", "longer-name.img"][..]),
        (200, &["a.img", "longer-name.img"][..]),
        (80, &["only.img"][..]),
    ] {
        let targets: Vec<String> = names
            .iter()
            .map(|n| {
                dir.path()
                    .join(format!("{columns}-{n}"))
                    .display()
                    .to_string()
            })
            .collect();
        let screens = common::screens_on_tmux(
            &format!("write --yes {} {}", img.display(), targets.join(" ")),
            columns,
            None,
        );
        let last = screens.last().cloned().unwrap_or_default();
        let with_bars: Vec<&String> = screens
            .iter()
            .filter(|s| bar_rows(s).len() == names.len())
            .collect();
        assert!(
            !with_bars.is_empty(),
            "{columns} columns, {names:?}: no screen showed every bar:\n{}",
            screens.join("\n----\n")
        );
        for screen in &with_bars {
            let rows = bar_rows(screen);
            let starts: Vec<usize> = rows
                .iter()
                .map(|r| r.chars().position(|c| c == '[').unwrap())
                .collect();
            assert!(
                starts.iter().all(|&s| s == starts[0]),
                "{columns} columns: bars start in different columns:\n{screen}"
            );
            for row in &rows {
                assert!(row.chars().count() < usize::from(columns), "{row:?}");
                assert!(
                    eta_last(row),
                    "{columns} columns: a wrapped bar row {row:?}:\n{screen}"
                );
                if columns == 200 || names.len() == 1 {
                    assert!(row.contains("/96.00 MiB"), "sizes shown with room: {row:?}");
                }
            }
        }
        for screen in &screens {
            assert!(
                !screen.contains("0 B/0 B"),
                "a finished phase's bar is drawn empty:\n{screen}"
            );
        }
        let words = last.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(words.contains("verified by reading it back"), "{last}");
        // Where the time went, in the summary.
        assert!(
            words.contains("write ") && words.contains(" s, verify "),
            "{last}"
        );
    }
}

#[test]
fn one_confirmation_lists_every_disk() {
    let t = "one_confirmation_lists_every_disk";
    if !require_root(t) || !require_tools(t, &["losetup", "script", "sha256sum", "cmp"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("image.bin");
    let len = MIB + 77;
    pseudo_random_file(&img, len, 8);
    let (b1, d1) = filled_loop(dir.path(), "b1", 4 * MIB, 0xFF);
    let (b2, d2) = filled_loop(dir.path(), "b2", 6 * MIB, 0xEE);
    let args = format!(
        "{} {} {}",
        img.display(),
        d1.path().display(),
        d2.path().display()
    );
    let before = [sha256_file(&b1), sha256_file(&b2)];

    // Declined: one question naming both disks, nothing written.
    let (code, shown) = common::write_on_terminal(&args, "n\n");
    assert_eq!(code, Some(7), "{shown}");
    assert_eq!(shown.matches("Continue? [y/N]").count(), 1, "{shown}");
    assert!(shown.contains("to these 2 disks?"), "{shown}");
    assert!(
        shown.contains("4.0 MiB") && shown.contains("6.0 MiB"),
        "{shown}"
    );
    for d in [&d1, &d2] {
        assert!(shown.contains(&d.path().display().to_string()), "{shown}");
    }
    assert_eq!([sha256_file(&b1), sha256_file(&b2)], before);

    // Confirmed once: both written.
    let (code, shown) = common::write_on_terminal(&args, "y\n");
    assert_eq!(code, Some(0), "{shown}");
    cmp_prefix(&img, d1.path(), len);
    cmp_prefix(&img, d2.path(), len);
}
