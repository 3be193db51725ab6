//! The command-line contract (docs/cli.md): every `--json` run is one
//! `start` line first and one `result` line last, errors and usage errors
//! included; each exit code is provoked by the case it documents; errors
//! print each cause once; SIGINT, SIGTERM and SIGHUP stop a job promptly,
//! with a result that says what the target holds.

use crate::common;

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use bootstick::cancel::{Cancel, Signal, TargetState};
use bootstick::events::{Event, Phase};
use bootstick::plan::Plan;
use bootstick::write::{self, Options, Target};
use common::{bootstick, json_lines, pseudo_random_file, require_tools};
use serde_json::Value;

fn run(args: &[&std::ffi::OsStr]) -> Output {
    bootstick().args(args).output().unwrap()
}

fn os(s: &str) -> &std::ffi::OsStr {
    s.as_ref()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn sha256(path: &Path) -> String {
    let out = common::run(Command::new("sha256sum").arg(path));
    out.split_whitespace().next().unwrap().to_owned()
}

/// A small ISO 9660 + Rock Ridge image of `tree` (name → contents), made by
/// xorriso, without boot records (so `inspect` decides `layout` when it
/// holds an EFI loader).
fn iso_of(dir: &Path, name: &str, tree: &[(&str, &[u8])]) -> PathBuf {
    let root = dir.join(format!("{name}.tree"));
    for (path, data) in tree {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
    let iso = dir.join(name);
    common::run(
        Command::new("xorriso")
            .args(["-as", "mkisofs", "-quiet", "-R", "-V", "CONTRACT", "-o"])
            .arg(&iso)
            .arg(&root),
    );
    iso
}

// ---------------------------------------------------------------------------
// 15. One `start` first, one `result` last, on every path.
// ---------------------------------------------------------------------------

/// Every command with `--json`, on success and on each kind of failure,
/// prints NDJSON only: a `start` first (naming the command), exactly one
/// `result`, last, whose `exit_code` is the process's. On the old code
/// `inspect`, `ls` and `verify` printed nothing on exit 3, usage errors no
/// JSON at all, and the report commands one pretty-printed object.
#[test]
fn every_json_run_starts_with_start_and_ends_with_its_result() {
    if !require_tools("json contract", &["xorriso"]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let img = dir.join("disk.img");
    pseudo_random_file(&img, 300_000, 1);
    let iso = iso_of(dir, "data.iso", &[("a/b.txt", b"bee\n")]);
    let a_dir = dir.join("a directory");
    std::fs::create_dir(&a_dir).unwrap();
    let out = dir.join("out.img");
    let missing = dir.join("missing.img");
    let hash = sha256(&img);
    let p = |p: &Path| p.as_os_str().to_owned();
    let cases: Vec<(Vec<std::ffi::OsString>, &str, u8)> = vec![
        (
            vec!["write".into(), "--yes".into(), p(&img), p(&out)],
            "write",
            0,
        ),
        (
            vec!["write".into(), "--yes".into(), p(&a_dir), p(&out)],
            "write",
            3,
        ),
        (
            vec!["write".into(), "--yes".into(), p(&missing), p(&out)],
            "write",
            3,
        ),
        (
            vec![
                "write".into(),
                "--yes".into(),
                "--sha256".into(),
                hash.clone().into(),
                p(&img),
                p(&out),
            ],
            "write",
            0,
        ),
        (
            vec![
                "write".into(),
                "--yes".into(),
                "--sha256".into(),
                "00".into(),
                p(&img),
                p(&out),
            ],
            "write",
            2,
        ),
        (
            vec![
                "write".into(),
                "--yes".into(),
                "--bogus".into(),
                p(&img),
                p(&out),
            ],
            "write",
            2,
        ),
        (vec!["compare".into(), p(&img), p(&out)], "compare", 0),
        (vec!["compare".into(), p(&img), p(&iso)], "compare", 6),
        (vec!["inspect".into(), p(&iso)], "inspect", 0),
        (vec!["inspect".into(), p(&a_dir)], "inspect", 3),
        (vec!["ls".into(), p(&iso), "/a".into()], "ls", 0),
        (vec!["ls".into(), p(&a_dir)], "ls", 3),
        (vec!["ls".into(), p(&iso), "/nothing".into()], "ls", 3),
        (
            vec![
                "verify".into(),
                "--sha256".into(),
                hash.clone().into(),
                p(&img),
            ],
            "verify",
            0,
        ),
        (
            vec![
                "verify".into(),
                "--require-signature".into(),
                "--sha256".into(),
                hash.into(),
                p(&img),
            ],
            "verify",
            10,
        ),
        (
            vec!["verify".into(), "--no-discover".into(), p(&img)],
            "verify",
            18,
        ),
        (vec!["verify".into(), p(&a_dir)], "verify", 3),
        (vec!["list".into()], "list", 0),
        (vec!["list".into(), "--bogus".into()], "list", 2),
    ];
    for (args, command, code) in cases {
        let o = bootstick().args(&args).arg("--json").output().unwrap();
        let ctx = format!(
            "{args:?}\nstdout:\n{}\nstderr:\n{}",
            text(&o.stdout),
            text(&o.stderr)
        );
        assert_eq!(o.status.code(), Some(i32::from(code)), "{ctx}");
        let lines = json_lines(&o.stdout);
        assert_eq!(lines[0]["command"], command, "{ctx}");
        let result = lines.last().unwrap();
        assert_eq!(result["ok"], code == 0, "{ctx}");
        if code != 0 {
            assert_eq!(result["exit_code"], code, "{ctx}");
            assert!(
                !result["error"].as_str().unwrap().is_empty(),
                "the error is stated: {ctx}"
            );
        }
    }
}

/// A usage error with `--json` keeps clap's text on stderr and prints a
/// `start` (no command known here) and a `result` with exit code 2.
#[test]
fn a_usage_error_without_a_command_is_still_one_start_and_one_result() {
    let o = run(&[os("--json")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("Usage:"), "{}", text(&o.stderr));
    let lines = json_lines(&o.stdout);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["command"], Value::Null);
    assert_eq!(lines[1]["exit_code"], 2);
    // Without --json, stdout stays empty.
    let o = run(&[os("write"), os("--bogus")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stdout.is_empty());
}

/// With a source check, the check's `phase`/`progress`/`warning` lines come
/// after `start` (documented as first); on the old code they came before.
#[test]
fn a_source_check_reports_after_start() {
    let d = tempfile::tempdir().unwrap();
    let img = d.path().join("img");
    pseudo_random_file(&img, 3 << 20, 2);
    let o = run(&[
        os("write"),
        os("--json"),
        os("--sha256"),
        os(&sha256(&img)),
        img.as_os_str(),
        d.path().join("out").as_os_str(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let lines = json_lines(&o.stdout);
    let check = lines
        .iter()
        .position(|l| l["event"] == "phase" && l["phase"] == "check")
        .unwrap_or_else(|| panic!("no check phase:\n{}", text(&o.stdout)));
    assert!(check > 0);
    assert!(lines.iter().any(
        |l| l["event"] == "warning" && l["message"].as_str().unwrap().contains("source check")
    ));
    assert_eq!(lines[0]["source_check"]["outcome"], "checksum-only");
}

// ---------------------------------------------------------------------------
// 16. Each exit code, provoked.
// ---------------------------------------------------------------------------

/// One case per exit code that a file-only setup can provoke, each checked
/// against docs/cli.md's table. Code 1 (internal) has no honest trigger: it
/// is a bug. 7 needs a disk (tests/write.rs
/// `block_device_without_yes_or_terminal_is_declined`), 13–17 need signed
/// fixtures (tests/trust.rs), 129/130/143 are the signal tests below.
#[test]
fn each_exit_code_is_provoked_by_its_documented_case() {
    if !require_tools("exit codes", &["xorriso", "sha256sum"]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let img = dir.join("disk.img");
    pseudo_random_file(&img, 200_000, 3);
    let other = dir.join("other.img");
    pseudo_random_file(&other, 200_000, 4);
    let iso = iso_of(dir, "data.iso", &[("f.txt", b"x\n")]);
    let full = dir.join("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("x"), b"x").unwrap();
    let a_file = dir.join("a-file");
    std::fs::write(&a_file, b"x").unwrap();
    let sums = dir.join("SUMS");
    std::fs::write(&sums, format!("{}  somebody-else.iso\n", sha256(&other))).unwrap();
    let hash = sha256(&img);
    let wrong = sha256(&other);
    let out = dir.join("out.img");
    let s = |p: &Path| p.to_str().unwrap().to_owned();
    let table: Vec<(u8, &str, Vec<String>)> = vec![
        (
            0,
            "written and verified",
            vec!["write".into(), "--yes".into(), s(&img), s(&out)],
        ),
        (
            2,
            "unknown flag",
            vec![
                "write".into(),
                "--yes".into(),
                "--bogus".into(),
                s(&img),
                s(&out),
            ],
        ),
        (
            2,
            "--table mbr for a byte-for-byte copy",
            vec![
                "write".into(),
                "--yes".into(),
                "--table".into(),
                "mbr".into(),
                s(&img),
                s(&out),
            ],
        ),
        (
            2,
            "--table mbr with --raw, compare",
            vec![
                "compare".into(),
                "--raw".into(),
                "--table".into(),
                "mbr".into(),
                s(&img),
                s(&out),
            ],
        ),
        (
            3,
            "missing image",
            vec!["inspect".into(), s(&dir.join("nope"))],
        ),
        (
            4,
            "not a disk or file",
            vec!["write".into(), "--yes".into(), s(&img), "/dev/null".into()],
        ),
        (
            4,
            "extract into a non-empty directory",
            vec!["extract".into(), s(&iso), s(&full)],
        ),
        (
            5,
            "writing into DIR fails",
            vec!["extract".into(), s(&iso), s(&a_file.join("sub"))],
        ),
        (
            6,
            "target differs",
            vec!["compare".into(), s(&other), s(&out)],
        ),
        (
            10,
            "checksum only",
            vec![
                "verify".into(),
                "--require-signature".into(),
                "--sha256".into(),
                hash.clone(),
                s(&img),
            ],
        ),
        (
            11,
            "mismatch",
            vec!["verify".into(), "--sha256".into(), wrong, s(&img)],
        ),
        (
            12,
            "not listed",
            vec!["verify".into(), "--sums".into(), s(&sums), s(&img)],
        ),
        (
            18,
            "no reference",
            vec!["verify".into(), "--no-discover".into(), s(&img)],
        ),
    ];
    for (code, why, args) in table {
        let o = bootstick().args(&args).output().unwrap();
        assert_eq!(
            o.status.code(),
            Some(i32::from(code)),
            "{why}: {args:?}\nstderr: {}",
            text(&o.stderr)
        );
    }
}

/// Exit 19: the image changes after its check, before the engine streams
/// that part of it. The `start` line comes after the check and before the
/// first byte is read for writing; the byte changed lies 100 MiB in, far
/// beyond what the pipeline reads ahead.
#[test]
fn an_image_changed_after_its_check_exits_19() {
    let d = tempfile::tempdir().unwrap();
    let img = d.path().join("img");
    File::create(&img).unwrap().set_len(128 << 20).unwrap();
    let hash = sha256(&img);
    let mut child = bootstick()
        .args(["write", "--yes", "--json", "--sha256", &hash])
        .arg(&img)
        .arg(d.path().join("out"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "no start line: {seen}"
        );
        seen.push_str(&line);
        if line.contains("\"start\"") {
            break;
        }
    }
    std::fs::OpenOptions::new()
        .write(true)
        .open(&img)
        .unwrap()
        .write_all_at(b"changed", 100 << 20)
        .unwrap();
    let o = child.wait_with_output().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    seen.push_str(&rest);
    assert_eq!(o.status.code(), Some(19), "{seen}\n{}", text(&o.stderr));
    let lines = json_lines(seen.as_bytes());
    assert_eq!(lines.last().unwrap()["exit_code"], 19);
}

// ---------------------------------------------------------------------------
// 17. Each cause once.
// ---------------------------------------------------------------------------

/// No message repeats its cause ("Is a directory (os error 21): Is a
/// directory (os error 21)" on the old code), for a directory given as the
/// image to each command that reads one, and as the target.
#[test]
fn errors_name_each_cause_once() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("dir");
    std::fs::create_dir(&dir).unwrap();
    let img = d.path().join("img");
    pseudo_random_file(&img, 100_000, 5);
    let dir_s = dir.to_str().unwrap();
    let img_s = img.to_str().unwrap();
    let out_s = d.path().join("out").to_str().unwrap().to_owned();
    for args in [
        vec!["inspect", dir_s],
        vec!["ls", dir_s],
        vec!["extract", dir_s, &out_s],
        vec!["verify", "--sha256", "00", dir_s],
        vec!["verify", dir_s],
        vec!["write", dir_s, &out_s],
        vec!["write", img_s, dir_s],
        vec!["compare", img_s, dir_s],
        vec!["inspect", "--json", dir_s],
    ] {
        let o = bootstick().args(&args).output().unwrap();
        assert!(!o.status.success(), "{args:?}");
        let err = text(&o.stderr);
        let line = err
            .lines()
            .find(|l| l.starts_with("bootstick: error: "))
            .unwrap_or_else(|| panic!("{args:?}: no error line:\n{err}"));
        let parts: Vec<&str> = line.split(": ").collect();
        for w in parts.windows(2) {
            assert_ne!(w[0], w[1], "{args:?}: a cause printed twice: {line}");
        }
        for cause in ["Is a directory", "os error"] {
            assert!(
                line.matches(cause).count() <= 1,
                "{args:?}: {cause:?} printed more than once: {line}"
            );
        }
        let json = text(&o.stdout);
        for cause in ["Is a directory", "os error"] {
            assert!(json.matches(cause).count() <= 1, "{args:?}: {json}");
        }
    }
}

// ---------------------------------------------------------------------------
// 14. Signals and cancellation.
// ---------------------------------------------------------------------------

/// The write engine stops between chunks once its token is cancelled, and
/// says what it left: nothing when cancelled before the first write (the
/// target file stays empty), an incomplete target in the write phase, an
/// unverified one in the read-back.
#[test]
fn a_cancelled_engine_says_what_it_left_on_the_target() {
    let d = tempfile::tempdir().unwrap();
    let img = d.path().join("img");
    let len = 8u64 << 20;
    pseudo_random_file(&img, len, 6);
    let source = File::open(&img).unwrap();
    for (phase, expected) in [
        (None, TargetState::Untouched),
        (Some(Phase::Write), TargetState::Incomplete),
        (Some(Phase::Verify), TargetState::WrittenNotVerified),
    ] {
        let out = d.path().join(format!("out-{expected:?}"));
        let mut target = Target::file(&out).unwrap();
        let cancel = Cancel::new();
        if phase.is_none() {
            cancel.cancel_by(Signal::Interrupt);
        }
        let progress_seen = std::sync::Mutex::new(0u64);
        let obs = |e: &Event| {
            if let Event::Progress { phase: p, done, .. } = e {
                if Some(*p) == phase {
                    *progress_seen.lock().unwrap() = *done;
                    cancel.cancel();
                }
            }
        };
        let options = Options {
            chunk_size: 64 << 10,
            cancel: cancel.clone(),
            ..Options::default()
        };
        let e = write::write(&Plan::raw(len), &source, &mut target, options, &obs).unwrap_err();
        match e {
            write::Error::Cancelled { target } => assert_eq!(target, expected, "{phase:?}"),
            other => panic!("{phase:?}: not a cancellation: {other}"),
        }
        let written = std::fs::metadata(&out).unwrap().len();
        match expected {
            TargetState::Untouched => assert_eq!(written, 0),
            // Stopped soon after the first chunk: far from the end.
            TargetState::Incomplete => assert!(written < len, "{written}"),
            TargetState::WrittenNotVerified => assert_eq!(written, len),
        }
        assert!(*progress_seen.lock().unwrap() < len || phase.is_none());
    }
}

/// `compare` stops between chunks too, and the target (only read) is
/// untouched.
#[test]
fn a_cancelled_compare_leaves_the_target_untouched() {
    let d = tempfile::tempdir().unwrap();
    let img = d.path().join("img");
    pseudo_random_file(&img, 1 << 20, 7);
    let source = File::open(&img).unwrap();
    let target = Target::open_read(&img).unwrap();
    let cancel = Cancel::new();
    let obs = |e: &Event| {
        if matches!(e, Event::Progress { .. }) {
            cancel.cancel();
        }
    };
    let e = write::compare(
        &Plan::raw(1 << 20),
        &source,
        &target,
        64 << 10,
        &cancel,
        &obs,
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            write::Error::Cancelled {
                target: TargetState::Untouched
            }
        ),
        "{e}"
    );
}

/// `write` of a large sparse image to `target` (a loop device or a file):
/// slow enough to be signalled in the middle of its write phase.
fn spawn_big_write(dir: &Path, target: &Path, json: bool) -> Child {
    let img = dir.join("big.img");
    File::create(&img).unwrap().set_len(8 << 30).unwrap();
    let mut cmd = bootstick();
    cmd.args(["write", "--yes"]);
    if json {
        cmd.arg("--json");
    }
    cmd.arg(&img)
        .arg(target)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// A loop device over a sparse 8 GiB file, to be written.
fn big_loop(dir: &Path) -> common::LoopDevice {
    let backing = dir.join("stick");
    File::create(&backing).unwrap().set_len(8 << 30).unwrap();
    common::LoopDevice::attach(&backing)
}

/// The output of a `write --json` that is signalled with `signal` after its
/// first `progress` line, and how long it took to end after the signal.
fn signalled_write(child: Child, signal: Signal) -> (String, Output, Duration) {
    let mut child = child;
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut seen = read_until(&mut stdout, |l| l.contains("\"progress\""));
    let sent = Instant::now();
    kill(&child, signal);
    let o = wait_for(child, Duration::from_secs(10));
    let took = sent.elapsed();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    seen.push_str(&rest);
    (seen, o, took)
}

fn kill(child: &Child, signal: Signal) {
    let pid = rustix::process::Pid::from_child(child);
    let sig = match signal {
        Signal::Interrupt => rustix::process::Signal::INT,
        Signal::Terminate => rustix::process::Signal::TERM,
        Signal::Hangup => rustix::process::Signal::HUP,
    };
    rustix::process::kill_process(pid, sig).unwrap();
}

/// Lines read from `child`'s stdout until one satisfies `until`.
fn read_until(r: &mut impl BufRead, until: impl Fn(&str) -> bool) -> String {
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap() == 0 {
            panic!("the output ended first:\n{seen}");
        }
        seen.push_str(&line);
        if until(&line) {
            return seen;
        }
    }
}

/// SIGINT, SIGTERM and SIGHUP in the middle of `write --json` to a disk:
/// the job stops within a second or two (not after writing 8 GiB), exits
/// 130, 143 or 129, and its last line is a `result` saying it was
/// interrupted, by which signal, and that the target is incomplete. On the
/// old code the process died by the signal and the output ended on a
/// `progress` line.
#[test]
fn a_signal_during_write_stops_it_and_reports_an_incomplete_target() {
    if !common::require_root("a_signal_during_write_stops_it_and_reports_an_incomplete_target") {
        return;
    }
    for signal in Signal::ALL {
        let d = tempfile::tempdir().unwrap();
        let dev = big_loop(d.path());
        let child = spawn_big_write(d.path(), dev.path(), true);
        let (seen, o, took) = signalled_write(child, signal);
        let ctx = format!("{signal:?}:\n{seen}\nstderr:\n{}", text(&o.stderr));
        assert_eq!(
            o.status.code(),
            Some(128 + signal.number()),
            "exit code: {ctx}"
        );
        assert!(
            took < Duration::from_secs(3),
            "stopped after {took:?}: {ctx}"
        );
        let lines = json_lines(seen.as_bytes());
        let result = lines.last().unwrap();
        assert_eq!(result["ok"], false, "{ctx}");
        assert_eq!(result["interrupted"], true, "{ctx}");
        assert_eq!(result["signal"], signal.name(), "{ctx}");
        assert_eq!(result["target_state"], "incomplete", "{ctx}");
        assert_eq!(result["exit_code"], 128 + signal.number(), "{ctx}");
        let err = text(&o.stderr);
        assert!(
            err.contains(&format!("interrupted by {}", signal.name()))
                && err.contains("must be written again"),
            "{ctx}"
        );
    }
}

/// Interrupted while writing a file target: the file is staged beside its
/// name (docs/devices.md), so the target is reported `untouched`, the old
/// file keeps its bytes and no temporary file is left behind.
#[test]
fn a_signal_during_a_file_write_leaves_the_old_file() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("out.img");
    std::fs::write(&out, b"the old file").unwrap();
    let child = spawn_big_write(d.path(), &out, true);
    let (seen, o, took) = signalled_write(child, Signal::Interrupt);
    let ctx = format!("{seen}\nstderr:\n{}", text(&o.stderr));
    assert_eq!(o.status.code(), Some(130), "{ctx}");
    assert!(
        took < Duration::from_secs(3),
        "stopped after {took:?}: {ctx}"
    );
    let result = json_lines(seen.as_bytes()).pop().unwrap();
    assert_eq!(result["interrupted"], true, "{ctx}");
    assert_eq!(result["target_state"], "untouched", "{ctx}");
    assert_eq!(std::fs::read(&out).unwrap(), b"the old file");
    let left: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 2, "only big.img and out.img: {left:?}");
}

/// A second signal right after the first ends the process at once, without
/// waiting for the job to wind down, and still leaves no temporary
/// `.NAME.bootstick-XXXXXXXX` beside a file target (issue 10: it did) and
/// the old file as it was.
#[test]
fn a_second_signal_exits_at_once_and_leaves_no_staged_file() {
    for _ in 0..3 {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("out.img");
        std::fs::write(&out, b"the old file").unwrap();
        let mut child = spawn_big_write(d.path(), &out, true);
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let seen = read_until(&mut stdout, |l| l.contains("\"progress\""));
        kill(&child, Signal::Interrupt);
        // Apart, so the kernel does not merge them into one pending signal.
        std::thread::sleep(Duration::from_millis(5));
        kill(&child, Signal::Interrupt);
        let o = wait_for(child, Duration::from_secs(10));
        let ctx = format!("{seen}\nstderr:\n{}", text(&o.stderr));
        assert_eq!(o.status.code(), Some(130), "{ctx}");
        assert_eq!(std::fs::read(&out).unwrap(), b"the old file", "{ctx}");
        let mut left: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["big.img", "out.img"], "{ctx}");
    }
}

/// For people the interruption is one line on stderr saying the disk must
/// be written again.
#[test]
fn a_signal_during_write_tells_people_to_write_again() {
    if !common::require_root("a_signal_during_write_tells_people_to_write_again") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let dev = big_loop(d.path());
    let child = spawn_big_write(d.path(), dev.path(), false);
    // Without a terminal the human output shows no progress: wait until
    // the loop device's backing file fills.
    let backing = d.path().join("stick");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::os::unix::fs::MetadataExt::blocks(&std::fs::metadata(&backing).unwrap()) * 512
        < (8 << 20)
    {
        assert!(Instant::now() < deadline, "the write never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    kill(&child, Signal::Interrupt);
    let o = wait_for(child, Duration::from_secs(5));
    assert_eq!(o.status.code(), Some(130));
    let err = text(&o.stderr);
    assert!(
        err.contains("bootstick: error: interrupted by SIGINT")
            && err.contains("incomplete image and must be written again"),
        "{err}"
    );
    assert!(o.stdout.is_empty(), "no success summary");
}

/// `child`'s output once it exits; fails when it runs longer than `limit`.
fn wait_for(mut child: Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

/// A signal before the job writes anything (here: during the source check
/// of a 4 GiB image) is reported at once: `target_state: untouched`, and
/// the target file was never created.
#[test]
fn a_signal_before_the_first_write_leaves_the_target_untouched() {
    let d = tempfile::tempdir().unwrap();
    let img = d.path().join("big.img");
    File::create(&img).unwrap().set_len(4 << 30).unwrap();
    let out = d.path().join("out.img");
    // Any 64-hex digest: the check hashes the whole image first.
    let child = bootstick()
        .args(["write", "--json", "--sha256", &"0".repeat(64)])
        .arg(&img)
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let sent = Instant::now();
    kill(&child, Signal::Terminate);
    let o = child.wait_with_output().unwrap();
    assert!(sent.elapsed() < Duration::from_secs(2));
    let ctx = format!("{}\n{}", text(&o.stdout), text(&o.stderr));
    assert_eq!(o.status.code(), Some(143), "{ctx}");
    let lines = json_lines(&o.stdout);
    let result = lines.last().unwrap();
    assert_eq!(result["interrupted"], true, "{ctx}");
    assert_eq!(result["signal"], "SIGTERM", "{ctx}");
    assert_eq!(result["target_state"], "untouched", "{ctx}");
    assert!(!out.exists(), "the target was created: {ctx}");
    assert!(text(&o.stderr).contains("interrupted by SIGTERM; nothing was written"));
}

/// A second signal ends the process at once, even when the first one's
/// orderly stop cannot finish: here the job is stuck writing its first
/// JSON line to a full pipe nobody reads. The first SIGINT leaves it
/// running (handled, not fatal); the second exits 130 right away.
#[test]
fn a_second_signal_aborts_at_once() {
    let d = tempfile::tempdir().unwrap();
    let img = d.path().join("img");
    pseudo_random_file(&img, 1 << 20, 8);
    let (read_end, write_end) = full_pipe();
    let mut child = bootstick()
        .args(["write", "--json"])
        .arg(&img)
        .arg(d.path().join("out"))
        .stdout(Stdio::from(write_end))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Let it reach the blocked write of its `start` line.
    std::thread::sleep(Duration::from_millis(500));
    assert!(child.try_wait().unwrap().is_none(), "it should be stuck");
    kill(&child, Signal::Interrupt);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "one SIGINT is handled, not fatal"
    );
    let sent = Instant::now();
    kill(&child, Signal::Interrupt);
    let deadline = Instant::now() + Duration::from_secs(3);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("a second SIGINT did not end it");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(sent.elapsed() < Duration::from_secs(1));
    assert_eq!(status.code(), Some(130));
    drop(read_end);
}

/// A pipe whose buffer is already full (shrunk to one page and filled), so
/// the first write to it blocks.
fn full_pipe() -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let mut fds = [0; 2];
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    unsafe {
        libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, 4096);
        let flags = libc::fcntl(w.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(w.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
        let junk = [b'x'; 4096];
        while libc::write(w.as_raw_fd(), junk.as_ptr().cast(), junk.len()) > 0 {}
        libc::fcntl(w.as_raw_fd(), libc::F_SETFL, flags);
    }
    (r, w)
}

// ---------------------------------------------------------------------------
// Completions, manual pages and help text (issue 12), checked by the tools
// that read them: bash's own completion machinery and groff.

/// `bootstick completions bash` is a script bash accepts, and completing
/// `bootstick wr<TAB>` and `bootstick write --req<TAB>` through it gives
/// the real subcommand and option. zsh, fish, elvish and PowerShell scripts
/// are generated and name every subcommand.
#[test]
fn completions_complete_through_bash() {
    if !require_tools("completions_complete_through_bash", &["bash"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("bootstick.bash");
    let out = run(&[os("completions"), os("bash")]);
    assert!(out.status.success(), "{out:?}");
    std::fs::write(&script, &out.stdout).unwrap();
    common::run(Command::new("bash").arg("-n").arg(&script));
    let complete = |words: &str, cword: usize| {
        let prog = format!(
            "source '{}'; COMP_WORDS=({words}); COMP_CWORD={cword}; \
             _bootstick bootstick \"${{COMP_WORDS[$COMP_CWORD]}}\" \"${{COMP_WORDS[$COMP_CWORD-1]}}\"; \
             printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script.display()
        );
        common::run(Command::new("bash").arg("-c").arg(prog))
    };
    let first = complete("bootstick wr", 1);
    assert_eq!(first.lines().collect::<Vec<_>>(), ["write"], "{first}");
    let opt = complete("bootstick write --req", 2);
    assert_eq!(
        opt.lines().collect::<Vec<_>>(),
        ["--require-signature"],
        "{opt}"
    );
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let out = run(&[os("completions"), os(shell)]);
        assert!(out.status.success(), "{shell}: {out:?}");
        let s = text(&out.stdout);
        for sub in [
            "write", "compare", "list", "verify", "inspect", "ls", "extract", "mount", "umount",
        ] {
            assert!(s.contains(sub), "{shell} lacks {sub}");
        }
    }
    let bad = run(&[os("completions"), os("tcsh")]);
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
}

/// `bootstick man DIR` writes one page per command; groff renders each
/// without a warning, and `bootstick-write.1` documents the options
/// `write --help` shows.
#[test]
fn manual_pages_render_with_groff() {
    if !require_tools("manual_pages_render_with_groff", &["groff"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let man = dir.path().join("man1");
    let out = run(&[os("man"), man.as_os_str()]);
    assert!(out.status.success(), "{out:?}");
    let mut pages: Vec<String> = std::fs::read_dir(&man)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    for p in [
        "bootstick.1",
        "bootstick-write.1",
        "bootstick-verify.1",
        "bootstick-completions.1",
    ] {
        assert!(pages.iter().any(|x| x == p), "{p} missing from {pages:?}");
    }
    for p in &pages {
        let r = Command::new("groff")
            .args(["-k", "-man", "-Tutf8", "-ww", "-rLL=80n", "-P-cbou"])
            .arg(man.join(p))
            .output()
            .unwrap();
        assert!(r.status.success(), "{p}: {r:?}");
        assert!(r.stderr.is_empty(), "{p}: groff warns: {}", text(&r.stderr));
        if p == "bootstick-write.1" {
            let page = text(&r.stdout);
            for flag in [
                "--require-signature",
                "--verify-source",
                "--eject",
                "--table",
            ] {
                // groff may hyphenate at a line end; compare without breaks.
                let flat: String = page
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
                    .replace("‐ ", "");
                assert!(
                    flat.contains(flag),
                    "{flag} missing from the write page:\n{page}"
                );
            }
        }
    }
}

/// Every command's help fits an 80-column terminal, and clap never has to
/// wrap the hand-broken lines of a verbatim description (which left a lone
/// "When" on its own line): each is at most 79 columns as written.
#[test]
fn help_fits_80_columns_without_broken_wraps() {
    let subs = [
        "write",
        "compare",
        "list",
        "verify",
        "inspect",
        "ls",
        "extract",
        "boot-test",
        "probe",
        "backup",
        "format",
        "mount",
        "umount",
        "completions",
    ];
    for sub in std::iter::once("").chain(subs) {
        let mut cmd = bootstick();
        if !sub.is_empty() {
            cmd.arg(sub);
        }
        let out = cmd.arg("--help").env("COLUMNS", "80").output().unwrap();
        assert!(out.status.success(), "{sub}: {out:?}");
        let help = text(&out.stdout);
        for line in help.lines() {
            assert!(
                line.chars().count() <= 80,
                "{sub} --help: {} columns: {line:?}",
                line.chars().count()
            );
        }
        // A line holding one short word between two long ones is a wrap of
        // a line that was too long as written.
        let lines: Vec<&str> = help.lines().collect();
        for w in lines.windows(3) {
            let lone = w[1].trim();
            let wrapped = w[0].len() > 70
                && !lone.is_empty()
                && !lone.contains(' ')
                && lone.len() < 12
                && w[2].len() > 40
                && !lone.starts_with('-');
            assert!(
                !wrapped,
                "{sub} --help wraps a line: {:?} / {:?} / {:?}",
                w[0], w[1], w[2]
            );
        }
    }
}

/// The fields docs/cli.md's table ("JSON output") lists for each `event`:
/// every backticked name in the row(s) of that event. `event` and `t` are on
/// every line, `target` on a multi-target job's per-target lines, and a
/// `target_result` has the fields of a `result` as the table says.
fn documented_fields() -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/cli.md")).unwrap();
    let table = doc
        .split("| `event` | fields | when |")
        .nth(1)
        .expect("docs/cli.md has the JSON event table");
    let mut fields = std::collections::BTreeMap::<_, std::collections::BTreeSet<_>>::new();
    for row in table.lines().skip(2).take_while(|l| l.starts_with('|')) {
        let cells: Vec<&str> = row.split(" | ").collect();
        let event = cells[0]
            .trim_start_matches("| ")
            .trim_matches('`')
            .to_owned();
        let names = cells[1]
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
            .map(str::to_owned);
        let set = fields.entry(event).or_default();
        set.extend(names);
        set.extend(["event".to_owned(), "t".to_owned(), "target".to_owned()]);
    }
    // A `target_result` carries "the `result` fields of that target".
    let result = fields.get("result").cloned().unwrap_or_default();
    fields
        .entry("target_result".into())
        .or_default()
        .extend(result);
    fields
}

/// Real `write` and `compare` output, successes and failures, one target
/// and several, with a source check: every line's event is in the table and
/// every top-level field of it is documented there.
#[test]
fn json_lines_carry_only_the_fields_docs_cli_md_documents() {
    let t = "json_lines_carry_only_the_fields_docs_cli_md_documents";
    if !require_tools(t, &["sha256sum"]) {
        return;
    }
    let schema = documented_fields();
    for event in [
        "start",
        "phase",
        "progress",
        "phase_done",
        "warning",
        "result",
        "target_result",
    ] {
        assert!(schema.contains_key(event), "{event} is not in the table");
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    pseudo_random_file(&img, 5 * 1024 * 1024 + 3, 8);
    let digest = sha256(&img);
    let (a, b) = (dir.path().join("a.img"), dir.path().join("b.img"));
    let runs: Vec<Vec<&std::ffi::OsStr>> = vec![
        vec![
            os("write"),
            os("--json"),
            os("--yes"),
            os("--digest"),
            img.as_os_str(),
            a.as_os_str(),
        ],
        vec![
            os("write"),
            os("--json"),
            os("--yes"),
            os("--sha256"),
            os(&digest),
            img.as_os_str(),
            a.as_os_str(),
            b.as_os_str(),
        ],
        vec![os("compare"), os("--json"), img.as_os_str(), a.as_os_str()],
        vec![
            os("write"),
            os("--json"),
            os("--yes"),
            os("missing.iso"),
            a.as_os_str(),
        ],
        vec![
            os("compare"),
            os("--json"),
            img.as_os_str(),
            os("nothing-here.img"),
        ],
    ];
    let mut seen = std::collections::BTreeSet::new();
    for args in &runs {
        let out = run(args);
        for line in json_lines(&out.stdout) {
            let event = line["event"].as_str().unwrap().to_owned();
            let documented = schema
                .get(&event)
                .unwrap_or_else(|| panic!("{args:?}: event {event:?} is not documented: {line}"));
            for key in line.as_object().unwrap().keys() {
                assert!(
                    documented.contains(key),
                    "{args:?}: `{event}` line field {key:?} is not in docs/cli.md's table: {line}"
                );
            }
            seen.insert(event);
        }
    }
    // The runs above produce every kind of line a write or compare can.
    for event in [
        "start",
        "phase",
        "progress",
        "phase_done",
        "warning",
        "result",
        "target_result",
    ] {
        assert!(seen.contains(event), "no `{event}` line was produced");
    }
}

/// The names docs/cli.md mentions in the section `## {command}`: every
/// identifier inside a backticked span (so `command: "probe"` names
/// `command`, and `match` {`vendor`} names both).
fn section_names(doc: &str, command: &str) -> std::collections::BTreeSet<String> {
    let heading = format!("\n## {command}\n");
    let start = doc
        .find(&heading)
        .unwrap_or_else(|| panic!("docs/cli.md has no `## {command}` section"));
    let body = &doc[start + heading.len()..];
    let body = &body[..body.find("\n## ").unwrap_or(body.len())];
    body.split('`')
        .skip(1)
        .step_by(2)
        .flat_map(|span| {
            span.split(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
                .filter(|w| !w.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Every other command's `--json` output, on real runs: each top-level field
/// of its `start` and `result` lines is named in that command's section of
/// docs/cli.md (the envelope's `event`, `t`, `ok`, and a failure's `error`
/// and `exit_code`, are documented once under "JSON output"). With the
/// write/compare table check above and the station's own
/// (`tests/it/station.rs`), a field added to any command's output without a
/// word in the docs fails the suite.
#[test]
fn every_commands_json_fields_are_named_in_its_docs_section() {
    let t = "every_commands_json_fields_are_named_in_its_docs_section";
    if !require_tools(t, &["xorriso", "qemu-system-x86_64"])
        || !common::require_root(t)
        || !common::qemu::require(t, &[common::qemu::Firmware::SeaBios])
    {
        return;
    }
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/cli.md")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let img = d.join("disk.img");
    pseudo_random_file(&img, 3 << 20, 21);
    let iso = iso_of(d, "c.iso", &[("boot/readme.txt", b"hello")]);
    let stick = d.join("stick.img");
    std::fs::write(&stick, vec![0u8; 64 << 20]).unwrap();
    let dev = common::LoopDevice::attach(&stick);
    let p = |p: &Path| p.to_str().unwrap().to_owned();
    let digest = sha256(&img);
    let runs: Vec<(&str, Vec<String>)> = vec![
        ("verify", vec!["--sha256".into(), digest, p(&img)]),
        ("verify", vec![p(&img)]),
        ("inspect", vec![p(&iso)]),
        ("inspect", vec![p(&img)]),
        ("ls", vec![p(&iso), "/boot".into()]),
        ("list", vec!["--all".into()]),
        ("probe", vec!["--read-only".into(), p(&stick)]),
        ("probe", vec!["--yes".into(), p(dev.path())]),
        ("format", vec!["--yes".into(), p(dev.path())]),
        (
            "backup",
            vec!["--yes".into(), p(dev.path()), p(&d.join("b.img.zst"))],
        ),
        (
            "boot-test",
            vec![
                "--firmware".into(),
                "bios".into(),
                "--timeout".into(),
                "30".into(),
                p(&stick),
            ],
        ),
    ];
    let envelope = ["event", "t", "ok", "error", "exit_code"];
    let mut missing = Vec::new();
    for (command, args) in &runs {
        let names = section_names(&doc, command);
        let mut argv: Vec<&std::ffi::OsStr> = vec![os(command), os("--json")];
        argv.extend(args.iter().map(|a| os(a)));
        let out = run(&argv);
        let lines = json_lines(&out.stdout);
        assert_eq!(lines[0]["command"], *command, "{argv:?}");
        for line in [&lines[0], lines.last().unwrap()] {
            for key in line.as_object().unwrap().keys() {
                if !(envelope.contains(&key.as_str()) || names.contains(key)) {
                    missing.push(format!("`## {command}`: {} field {key:?}", line["event"]));
                }
            }
        }
    }
    missing.dedup();
    assert!(
        missing.is_empty(),
        "fields not named in docs/cli.md's section of their command:\n{}",
        missing.join("\n")
    );
}
