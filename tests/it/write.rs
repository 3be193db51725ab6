//! The write engine and the `write` / `compare` commands, checked with
//! independent readers: `cmp`, and reading backing files of loop devices.

use crate::common;

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bootstick::events::{Event, Phase, Silent};
use bootstick::hash::{Digest, HashAlgorithm};
use bootstick::plan::{Extent, Plan, MIB};
use bootstick::write::{self, Options, Target};
use common::{bootstick, flip_byte, pseudo_random_file, require_root, require_tools, LoopDevice};
use proptest::prelude::*;

/// A small chunk so tests cross many chunk boundaries with small images.
const CHUNK: usize = 64 * 1024;

fn opts() -> Options {
    Options {
        chunk_size: CHUNK,
        ..Options::default()
    }
}

fn cmp_files(a: &Path, b: &Path) {
    common::run(Command::new("cmp").arg(a).arg(b));
}

fn sha256_file(p: &Path) -> String {
    let out = common::run(Command::new("sha256sum").arg(p));
    out.split_whitespace().next().unwrap().to_owned()
}

fn fill_file(path: &Path, len: u64, byte: u8) {
    std::fs::write(path, vec![byte; len as usize]).unwrap();
}

fn read_range(path: &Path, at: u64, len: usize) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; len];
    File::open(path)
        .unwrap()
        .read_exact_at(&mut buf, at)
        .unwrap();
    buf
}

/// Writes an image of `len` bytes to a new file through the library and
/// checks it with `cmp`.
fn write_file_roundtrip(dir: &Path, len: u64) {
    let img = dir.join(format!("img-{len}"));
    let out = dir.join(format!("out-{len}"));
    pseudo_random_file(&img, len, len);
    let source = File::open(&img).unwrap();
    let mut target = Target::file(&out).unwrap();
    let options = Options {
        digest: Some(bootstick::hash::HashAlgorithm::Sha256),
        ..opts()
    };
    let report = write::write(&Plan::raw(len), &source, &mut target, options, &Silent).unwrap();
    assert_eq!(report.bytes_written, len);
    assert!(report.verified);
    cmp_files(&img, &out);
    assert_eq!(report.source_digest.unwrap().to_hex(), sha256_file(&img));
}

#[test]
fn odd_sizes_to_files_match_byte_for_byte() {
    if !require_tools(
        "odd_sizes_to_files_match_byte_for_byte",
        &["cmp", "sha256sum"],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let c = CHUNK as u64;
    for len in [
        0,
        1,
        511,
        512,
        513,
        4095,
        4096,
        c - 1,
        c,
        c + 1,
        3 * c + 4097,
    ] {
        write_file_roundtrip(dir.path(), len);
    }
}

#[test]
fn events_come_in_phase_order_with_monotonic_progress() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img");
    pseudo_random_file(&img, 300_000, 7);
    let events = Mutex::new(Vec::new());
    let obs = |e: &Event| events.lock().unwrap().push(e.clone());
    let mut target = Target::file(&dir.path().join("out")).unwrap();
    write::write(
        &Plan::raw(300_000),
        &File::open(&img).unwrap(),
        &mut target,
        opts(),
        &obs,
    )
    .unwrap();
    let events = events.into_inner().unwrap();
    let phases: Vec<Phase> = events
        .iter()
        .filter_map(|e| match e {
            Event::PhaseStarted { phase, .. } => Some(*phase),
            _ => None,
        })
        .collect();
    assert_eq!(phases, [Phase::Write, Phase::Sync, Phase::Verify]);
    for phase in [Phase::Write, Phase::Verify] {
        let done: Vec<u64> = events
            .iter()
            .filter_map(|e| match e {
                Event::Progress {
                    phase: p,
                    done,
                    total,
                } if *p == phase => {
                    assert_eq!(*total, 300_000);
                    Some(*done)
                }
                _ => None,
            })
            .collect();
        assert!(done.windows(2).all(|w| w[0] < w[1]), "{phase:?}: {done:?}");
        assert_eq!(done.last(), Some(&300_000));
    }
    assert!(!events.iter().any(|e| matches!(e, Event::Warning(_))));
}

#[test]
fn expected_digest_mismatch_fails_distinctly() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img");
    pseudo_random_file(&img, 100_000, 1);
    let mut target = Target::file(&dir.path().join("out")).unwrap();
    let wrong = Digest::from_hex(HashAlgorithm::Sha512, &"ab".repeat(64)).unwrap();
    let err = write::write(
        &Plan::raw(100_000),
        &File::open(&img).unwrap(),
        &mut target,
        Options {
            expect_source: Some(wrong.clone()),
            ..opts()
        },
        &Silent,
    )
    .unwrap_err();
    match err {
        write::Error::SourceChanged { expected, actual } => {
            assert_eq!(expected, wrong);
            assert_eq!(actual.algorithm(), HashAlgorithm::Sha512);
        }
        e => panic!("expected SourceChanged, got {e:?}"),
    }
}

#[test]
fn expected_digest_match_is_reported_with_its_algorithm() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img");
    std::fs::write(&img, b"abc").unwrap();
    let want = Digest::from_hex(HashAlgorithm::Blake2b512, "ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d17d87c5392aab792dc252d5de4533cc9518d38aa8dbf1925ab92386edd4009923").unwrap();
    let mut target = Target::file(&dir.path().join("out")).unwrap();
    let r = write::write(
        &Plan::raw(3),
        &File::open(&img).unwrap(),
        &mut target,
        Options {
            expect_source: Some(want.clone()),
            ..opts()
        },
        &Silent,
    )
    .unwrap();
    assert_eq!(r.source_digest, Some(want));
}

#[test]
fn truncated_source_is_refused_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img");
    pseudo_random_file(&img, 1000, 1);
    let out = dir.path().join("out");
    let mut target = Target::file(&out).unwrap();
    let err = write::write(
        &Plan::raw(2000),
        &File::open(&img).unwrap(),
        &mut target,
        opts(),
        &Silent,
    )
    .unwrap_err();
    assert!(matches!(err, write::Error::Plan(_)), "{err:?}");
    assert_eq!(std::fs::metadata(&out).unwrap().len(), 0);
}

/// An observer that runs `act` once, when the read-back starts: the write is
/// done and flushed, and nothing has been read back yet.
struct BeforeReadBack<F: Fn() + Sync> {
    act: F,
    done: AtomicBool,
}

impl<F: Fn() + Sync> bootstick::events::Observer for BeforeReadBack<F> {
    fn event(&self, e: &Event) {
        if matches!(
            e,
            Event::PhaseStarted {
                phase: Phase::Verify,
                ..
            }
        ) && !self.done.swap(true, Ordering::SeqCst)
        {
            (self.act)();
        }
    }
}

fn before_read_back<F: Fn() + Sync>(act: F) -> BeforeReadBack<F> {
    BeforeReadBack {
        act,
        done: AtomicBool::new(false),
    }
}

/// Writes `img` (`len` bytes) to the file `out`, running `act` when the
/// read-back starts, and returns the error the write must end with.
fn write_failing_at_read_back(
    img: &Path,
    out: &Path,
    len: u64,
    act: impl Fn() + Sync,
) -> write::Error {
    let mut target = Target::file(out).unwrap();
    write::write(
        &Plan::raw(len),
        &File::open(img).unwrap(),
        &mut target,
        opts(),
        &before_read_back(act),
    )
    .unwrap_err()
}

/// The read-back checks the target against checksums the write pass took,
/// without the source: a byte changed on the target after the write is
/// still named exactly, wherever it lies in its chunk.
#[test]
fn read_back_names_a_byte_changed_after_the_write() {
    let dir = tempfile::tempdir().unwrap();
    let len = 10 * CHUNK as u64 + 333;
    let img = dir.path().join("img");
    pseudo_random_file(&img, len, 7);
    for at in [
        0,
        CHUNK as u64 - 1,
        CHUNK as u64,
        5 * CHUNK as u64 + 17,
        len - 1,
    ] {
        let out = dir.path().join(format!("out-{at}"));
        let err = write_failing_at_read_back(&img, &out, len, || flip_byte(&out, at));
        assert!(
            matches!(err, write::Error::Mismatch { offset } if offset == at),
            "corrupted at {at}: {err:?}"
        );
    }
}

/// A target that holds the image's *current* bytes where the write sent
/// others means the image changed while it was written: said as such, not
/// as a failing stick.
#[test]
fn image_changed_during_the_write_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let len = 4 * CHUNK as u64;
    let img = dir.path().join("img");
    let out = dir.path().join("out");
    pseudo_random_file(&img, len, 8);
    let at = 2 * CHUNK as u64 + 5;
    let err = write_failing_at_read_back(&img, &out, len, || {
        flip_byte(&img, at);
        flip_byte(&out, at);
    });
    match err {
        write::Error::SourceChangedDuringWrite { start, end } => {
            assert!(start <= at && at < end, "{start}..{end} holds {at}");
        }
        e => panic!("expected SourceChangedDuringWrite, got {e:?}"),
    }
}

/// A target cut short after the write reads back as short, at its new end.
#[test]
fn target_cut_short_after_the_write_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let len = 3 * CHUNK as u64 + 100;
    let img = dir.path().join("img");
    let out = dir.path().join("out");
    pseudo_random_file(&img, len, 9);
    let cut = CHUNK as u64 + 10;
    let err = write_failing_at_read_back(&img, &out, len, || {
        std::fs::OpenOptions::new()
            .write(true)
            .open(&out)
            .unwrap()
            .set_len(cut)
            .unwrap()
    });
    assert!(
        matches!(err, write::Error::TargetShort { at, needed } if at == cut && needed == len),
        "{err:?}"
    );
}

/// A piped image has no source to read again: a byte changed on the
/// target after the write is named by the range whose checksum fails
/// ([`write::Error::StreamMismatch`], exit 6), and a target cut short
/// during the read-back by its new end ([`write::Error::TargetShort`]),
/// not as a changed range.
#[test]
fn piped_read_back_names_a_changed_range_and_a_target_cut_short() {
    let dir = tempfile::tempdir().unwrap();
    // Past the first MiB (held back and written last) by a few chunks.
    let len = MIB + 6 * CHUNK as u64 + 100;
    let img = dir.path().join("img");
    pseudo_random_file(&img, len, 12);
    let bytes = std::fs::read(&img).unwrap();
    let piped = |out: &Path, act: &(dyn Fn() + Sync)| {
        let pipe = bootstick::image::pipe::Pipe::from_read(
            Path::new("-"),
            Box::new(std::io::Cursor::new(bytes.clone())),
            &[],
        )
        .unwrap();
        let mut target = Target::file(out).unwrap();
        write::write_piped(
            pipe.into_stream(),
            &mut target,
            opts(),
            &before_read_back(act),
        )
        .unwrap_err()
    };
    for at in [MIB + 2 * CHUNK as u64 + 7, len - 1] {
        let out = dir.path().join(format!("flip-{at}"));
        match piped(&out, &|| flip_byte(&out, at)) {
            write::Error::StreamMismatch { start, end } => {
                assert!(start <= at && at < end, "{start}..{end} holds {at}");
                assert!(end - start <= CHUNK as u64, "{start}..{end}");
            }
            e => panic!("byte {at} changed: expected StreamMismatch, got {e:?}"),
        }
    }
    let out = dir.path().join("cut");
    let cut = MIB + 3 * CHUNK as u64 + 10;
    let err = piped(&out, &|| {
        std::fs::OpenOptions::new()
            .write(true)
            .open(&out)
            .unwrap()
            .set_len(cut)
            .unwrap()
    });
    assert!(
        matches!(err, write::Error::TargetShort { at, needed } if at == cut && needed == len),
        "{err:?}"
    );
}

/// `compare` of a target that gets shorter while it is read (after its
/// length was taken): the bytes that are there match, so the answer is
/// the target's early end at its new length, not a match and not a
/// differing byte.
#[test]
fn compare_of_a_target_cut_short_while_read_names_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let len = 4 * CHUNK as u64 + 100;
    let img = dir.path().join("img");
    let out = dir.path().join("out");
    pseudo_random_file(&img, len, 13);
    std::fs::copy(&img, &out).unwrap();
    let cut = 2 * CHUNK as u64 + 10;
    let target = Target::open_read(&out).unwrap();
    let err = write::compare(
        &Plan::raw(len),
        &File::open(&img).unwrap(),
        &target,
        CHUNK,
        &bootstick::cancel::Cancel::new(),
        &before_read_back(|| {
            std::fs::OpenOptions::new()
                .write(true)
                .open(&out)
                .unwrap()
                .set_len(cut)
                .unwrap()
        }),
    )
    .unwrap_err();
    assert!(
        matches!(err, write::Error::TargetShort { at, needed } if at == cut && needed == len),
        "{err:?}"
    );
}

// ---------------------------------------------------------------- CLI, files

#[test]
fn cli_write_file_and_compare() {
    if !require_tools("cli_write_file_and_compare", &["cmp"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("image.iso");
    let out = dir.path().join("stick.img");
    pseudo_random_file(&img, 5 * MIB + 123, 42);
    common::run(bootstick().arg("write").arg(&img).arg(&out));
    cmp_files(&img, &out);
    let stdout = common::run(bootstick().arg("compare").arg(&img).arg(&out));
    assert!(stdout.contains("identical"), "{stdout}");

    // Corrupt one byte: compare names exactly that offset and exits 6.
    let bad_at = 3 * MIB + 77;
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&out).unwrap();
        let old = read_range(&out, bad_at, 1)[0];
        f.write_all_at(&[!old], bad_at).unwrap();
    }
    let o = bootstick()
        .arg("compare")
        .arg(&img)
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(6));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("at byte {bad_at} ")), "{err}");

    // A target shorter than the image is a mismatch where it ends.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&out)
        .unwrap()
        .set_len(MIB)
        .unwrap();
    let o = bootstick()
        .arg("compare")
        .arg(&img)
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(6));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("ends at byte {MIB}")), "{err}");
}

#[test]
fn cli_no_verify_and_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("image.iso");
    let out = dir.path().join("stick.img");
    pseudo_random_file(&img, 2 * MIB + 1, 3);
    let stdout = common::run(
        bootstick()
            .args(["write", "--json", "--no-verify", "--digest"])
            .arg(&img)
            .arg(&out),
    );
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    assert_eq!(lines[0]["event"], "start");
    assert_eq!(lines[0]["image_bytes"], 2 * MIB + 1);
    let phases: Vec<&str> = lines
        .iter()
        .filter(|l| l["event"] == "phase")
        .map(|l| l["phase"].as_str().unwrap())
        .collect();
    assert_eq!(phases, ["write", "sync"]);
    let last = lines.last().unwrap();
    assert_eq!(last["event"], "result");
    assert_eq!(last["ok"], true);
    assert_eq!(last["verified"], false);
    assert_eq!(last["bytes_written"], 2 * MIB + 1);
    assert_eq!(last["source_digest"]["algorithm"], "sha256");
    assert_eq!(
        last["source_digest"]["hex"].as_str().unwrap(),
        sha256_file(&img)
    );
    let mut data = Vec::new();
    File::open(&img).unwrap().read_to_end(&mut data).unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), data);
}

/// The `--json` stream follows docs/cli.md: every line an object with
/// `event` and a non-decreasing `t`; progress lines of one phase at least
/// 250 ms apart (unthrottled there would be one per 4 MiB chunk); each phase
/// opened by `phase` and closed by `phase_done` with all its bytes.
#[test]
fn cli_json_schema_and_progress_rate() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("image.iso");
    let out = dir.path().join("stick.img");
    let len = 24 * MIB + 5;
    pseudo_random_file(&img, len, 4);
    let stdout = common::run(bootstick().args(["write", "--json"]).arg(&img).arg(&out));
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    let mut last_t = 0.0;
    let mut open: Option<String> = None;
    let mut last_progress: Option<f64> = None;
    let mut phases = Vec::new();
    for l in &lines {
        let t = l["t"].as_f64().unwrap();
        assert!(t >= last_t, "{l}");
        last_t = t;
        match l["event"].as_str().unwrap() {
            "start" => assert_eq!(l["command"], "write"),
            "phase" => {
                assert!(open.is_none(), "{l}");
                open = Some(l["phase"].as_str().unwrap().to_owned());
                phases.push(open.clone().unwrap());
                last_progress = None;
            }
            "progress" => {
                assert_eq!(l["phase"].as_str(), open.as_deref(), "{l}");
                assert!(l["done"].as_u64().unwrap() <= l["total"].as_u64().unwrap());
                assert!(l["bytes_per_second"].is_u64());
                if let Some(p) = last_progress {
                    // The throttle's rule is tested on an injected clock
                    // (cli::render::tests); here, in whole milliseconds of
                    // the `t` stamps, with 10 ms of slack for their rounding.
                    let apart = ((t - p) * 1000.0).round() as i64;
                    assert!(apart >= 240, "progress lines {p} and {t} {apart} ms apart");
                }
                last_progress = Some(t);
            }
            "phase_done" => {
                let phase = open.take().unwrap();
                assert_eq!(l["phase"], phase.as_str());
                if phase != "sync" {
                    assert_eq!(l["bytes"], len, "{l}");
                }
            }
            "result" => {
                assert_eq!(l["ok"], true);
                assert_eq!(l["verified"], true);
            }
            // Random bytes are an unrecognised image: written, with a warning.
            "warning" => assert!(l["message"].is_string(), "{l}"),
            other => panic!("unexpected event {other}"),
        }
    }
    assert_eq!(phases, ["write", "sync", "verify"]);
    assert_eq!(lines.last().unwrap()["event"], "result");
}

#[test]
fn cli_json_failure_has_ok_false_and_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let o = bootstick()
        .args(["write", "--json"])
        .arg(dir.path().join("missing.iso"))
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3));
    let stdout = String::from_utf8_lossy(&o.stdout);
    let v: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(v["event"], "result");
    assert_eq!(v["ok"], false);
    assert_eq!(v["exit_code"], 3);
    assert!(v["error"].as_str().unwrap().contains("missing.iso"));
}

// ------------------------------------------------------------- loop devices

/// A backing file of `len` bytes of 0xFF with a loop device on it.
fn ff_loop(dir: &Path, len: u64, options: &[&str]) -> (PathBuf, LoopDevice) {
    let backing = dir.join("backing");
    fill_file(&backing, len, 0xFF);
    let dev = LoopDevice::attach_with(&backing, options);
    (backing, dev)
}

#[test]
fn cli_write_to_loop_device_wipes_tail_and_keeps_gap() {
    let t = "cli_write_to_loop_device_wipes_tail_and_keeps_gap";
    if !require_root(t) || !require_tools(t, &["losetup", "cmp"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (backing, dev) = ff_loop(dir.path(), 16 * MIB, &[]);
    let img = dir.path().join("image.iso");
    let len = 3 * MIB + 333; // an odd tail: not a multiple of the sector size
    pseudo_random_file(&img, len, 9);
    let out = common::run(
        bootstick()
            .args(["write", "--yes", "--json"])
            .arg(&img)
            .arg(dev.path()),
    );
    let result: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(result["ok"], true);
    assert_eq!(result["verified"], true);
    assert_eq!(result["direct_io"], true, "loop devices accept O_DIRECT");
    // The device holds the image (cmp on the device itself, then the backing file).
    common::run(
        Command::new("cmp")
            .arg("-n")
            .arg(len.to_string())
            .arg(&img)
            .arg(dev.path()),
    );
    drop(dev);
    common::run(
        Command::new("cmp")
            .arg("-n")
            .arg(len.to_string())
            .arg(&img)
            .arg(&backing),
    );
    // The last MiB is zeroed, what lies between is untouched.
    assert!(read_range(&backing, 15 * MIB, MIB as usize)
        .iter()
        .all(|&b| b == 0));
    let gap = read_range(&backing, len, (15 * MIB - len) as usize);
    assert!(gap.iter().all(|&b| b == 0xFF));
}

#[test]
fn image_larger_than_device_is_refused_untouched() {
    let t = "image_larger_than_device_is_refused_untouched";
    if !require_root(t) || !require_tools(t, &["losetup", "sha256sum"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (backing, dev) = ff_loop(dir.path(), 4 * MIB, &[]);
    let before = sha256_file(&backing);
    let img = dir.path().join("image.iso");
    pseudo_random_file(&img, 4 * MIB + 1, 5);
    let o = bootstick()
        .args(["write", "--yes"])
        .arg(&img)
        .arg(dev.path())
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("larger stick"));
    drop(dev);
    assert_eq!(sha256_file(&backing), before);
}

/// A whole interactive write at 80 columns, as tmux drew it: the warning,
/// the confirmation (naming the disk, its size and the erase), the bars
/// and the summary each fit, broken at word boundaries where they are
/// long: no row reaches the last column (where the terminal would have
/// wrapped it mid-word), and no stray bar is drawn before a phase runs.
#[test]
fn an_interactive_write_fits_80_columns() {
    let t = "an_interactive_write_fits_80_columns";
    if !require_root(t) || !require_tools(t, &["losetup", "tmux", "cmp"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_backing, dev) = ff_loop(dir.path(), 64 * MIB, &[]);
    // Not an ISO nor a disk image: `write` warns that it copies it as given.
    let img = dir.path().join("an-image-with-a-rather-long-file-name.bin");
    pseudo_random_file(&img, 24 * MIB, 17);
    let screens = common::screens_on_tmux(
        &format!("write {} {}", img.display(), dev.path().display()),
        80,
        Some(("Continue? [y/N]", "y")),
    );
    let last = screens.last().cloned().unwrap_or_default();
    assert!(last.contains("Continue? [y/N] y"), "{last}");
    assert!(last.contains("will be erased"), "{last}");
    assert!(last.contains(&dev.path().display().to_string()), "{last}");
    assert!(last.contains("verified by"), "{last}");
    for screen in &screens {
        for row in screen.lines() {
            assert!(
                row.chars().count() < 80,
                "a row reaches the last column (wrapped by the terminal): {row:?}\n{screen}"
            );
            assert!(!row.contains("0/0"), "a stray idle bar: {row:?}\n{screen}");
        }
    }
    common::run(
        Command::new("cmp")
            .arg("-n")
            .arg((24 * MIB).to_string())
            .arg(&img)
            .arg(dev.path()),
    );
}

#[test]
fn block_device_without_yes_or_terminal_is_declined() {
    let t = "block_device_without_yes_or_terminal_is_declined";
    if !require_root(t) || !require_tools(t, &["losetup", "sha256sum"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (backing, dev) = ff_loop(dir.path(), 4 * MIB, &[]);
    let before = sha256_file(&backing);
    let img = dir.path().join("image.iso");
    pseudo_random_file(&img, MIB, 5);
    let o = bootstick()
        .arg("write")
        .arg(&img)
        .arg(dev.path())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(7));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--yes") && err.contains(&dev.path().display().to_string()),
        "{err}"
    );
    drop(dev);
    assert_eq!(sha256_file(&backing), before);
}

#[test]
fn compare_on_loop_device_reports_corruption_offset() {
    let t = "compare_on_loop_device_reports_corruption_offset";
    if !require_root(t) || !require_tools(t, &["losetup"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_backing, dev) = ff_loop(dir.path(), 8 * MIB, &[]);
    let img = dir.path().join("image.iso");
    pseudo_random_file(&img, 5 * MIB + 1, 11);
    common::run(
        bootstick()
            .args(["write", "--yes"])
            .arg(&img)
            .arg(dev.path()),
    );
    common::run(bootstick().arg("compare").arg(&img).arg(dev.path()));
    // Flip a byte on the device behind bootstick's back (through the device
    // node with O_DIRECT-free dd + fsync, as another program would).
    let bad_at = 4 * MIB + 4097;
    let old = read_range(dev.path(), bad_at, 1)[0];
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(dev.path())
            .unwrap();
        f.write_all_at(&[old ^ 0x5A], bad_at).unwrap();
        f.sync_all().unwrap();
    }
    let o = bootstick()
        .args(["compare", "--json"])
        .arg(&img)
        .arg(dev.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(6));
    let stdout = String::from_utf8_lossy(&o.stdout);
    let v: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(v["ok"], false);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains(&format!("at byte {bad_at} ")),
        "{v}"
    );
}

#[test]
fn before_first_write_refusal_leaves_device_untouched() {
    let t = "before_first_write_refusal_leaves_device_untouched";
    if !require_root(t) || !require_tools(t, &["losetup", "sha256sum"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (backing, dev) = ff_loop(dir.path(), 4 * MIB, &[]);
    let before = sha256_file(&backing);
    let img = dir.path().join("image.iso");
    pseudo_random_file(&img, MIB, 5);
    let called = Arc::new(AtomicBool::new(false));
    let c2 = called.clone();
    let mut target = Target::open(dev.path()).unwrap();
    assert!(target.is_block_device());
    assert_eq!(target.capacity(), Some(4 * MIB));
    let plan = Plan::raw(MIB).with_tail_wipe(4 * MIB).unwrap();
    let err = write::write(
        &plan,
        &File::open(&img).unwrap(),
        &mut target,
        Options {
            before_first_write: Some(Box::new(move || {
                c2.store(true, Ordering::SeqCst);
                Err(bootstick::devices::IdentityChange::Differs {
                    path: "/dev/sdz".into(),
                    what: bootstick::devices::IdentityField::Serial,
                    was: "A".into(),
                    now: "B".into(),
                })
            })),
            ..opts()
        },
        &Silent,
    )
    .unwrap_err();
    assert!(called.load(Ordering::SeqCst));
    assert!(
        matches!(
            err,
            write::Error::Refused(bootstick::devices::IdentityChange::Differs { ref was, .. }) if was == "A"
        ),
        "{err:?}"
    );
    drop(target);
    drop(dev);
    assert_eq!(sha256_file(&backing), before);
}

#[test]
fn four_k_sector_device_with_odd_tail() {
    let t = "four_k_sector_device_with_odd_tail";
    if !require_root(t) || !require_tools(t, &["losetup", "cmp"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (backing, dev) = ff_loop(dir.path(), 8 * MIB, &["--sector-size", "4096"]);
    let img = dir.path().join("image.iso");
    let len = 2 * MIB + 4096 + 513;
    pseudo_random_file(&img, len, 13);
    let source = File::open(&img).unwrap();
    let mut target = Target::open(dev.path()).unwrap();
    let plan = Plan::raw(len).with_tail_wipe(8 * MIB).unwrap();
    let report = write::write(&plan, &source, &mut target, opts(), &Silent).unwrap();
    assert!(report.direct_io && report.verified);
    drop(target);
    drop(dev);
    common::run(
        Command::new("cmp")
            .arg("-n")
            .arg(len.to_string())
            .arg(&img)
            .arg(&backing),
    );
    // Inside the last partial 4 KiB block, bytes after the image are untouched.
    let after = read_range(&backing, len, 4096 - 513);
    assert!(after.iter().all(|&b| b == 0xFF));
    assert!(read_range(&backing, 7 * MIB, MIB as usize)
        .iter()
        .all(|&b| b == 0));
}

/// A ramfs mount (ramfs has no direct I/O), unmounted on drop.
struct Ramfs(tempfile::TempDir);

impl Drop for Ramfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

#[test]
fn direct_io_refused_falls_back_with_a_warning() {
    let t = "direct_io_refused_falls_back_with_a_warning";
    if !require_root(t) || !require_tools(t, &["mount", "umount", "cmp"]) {
        return;
    }
    let mnt = Ramfs(tempfile::tempdir().unwrap());
    common::run(
        Command::new("mount")
            .args(["-t", "ramfs", "none"])
            .arg(mnt.0.path()),
    );
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img");
    pseudo_random_file(&img, 300_001, 17);
    let out = mnt.0.path().join("out");
    let warnings = Mutex::new(Vec::new());
    let obs = |e: &Event| {
        if let Event::Warning(w) = e {
            warnings.lock().unwrap().push(w.clone());
        }
    };
    let mut target = Target::file(&out).unwrap();
    let report = write::write(
        &Plan::raw(300_001),
        &File::open(&img).unwrap(),
        &mut target,
        opts(),
        &obs,
    )
    .unwrap();
    assert!(!report.direct_io && report.verified);
    let w = warnings.into_inner().unwrap();
    assert!(w.iter().any(|w| w.contains("O_DIRECT")), "{w:?}");
    cmp_files(&img, &out);
}

// ------------------------------------------------ arbitrary plans, property

fn arb_extent() -> impl Strategy<Value = (u64, Extent)> {
    let gap = prop_oneof![Just(0u64), 0u64..3000];
    let ext = prop_oneof![
        (1usize..5000)
            .prop_map(|n| Extent::bytes((0..n).map(|i| (i * 7 + 3) as u8).collect::<Vec<_>>())),
        (1u64..20_000).prop_map(|len| Extent::Zeros { len }),
        (0u64..100_000, 1u64..40_000).prop_map(|(offset, len)| Extent::Source { offset, len }),
    ];
    (gap, ext)
}

fn model(plan: &Plan, source: &[u8], target: &mut [u8]) {
    for p in plan.pieces() {
        let at = p.at as usize;
        let len = p.extent.len() as usize;
        match &p.extent {
            Extent::Bytes(b) => target[at..at + len].copy_from_slice(b),
            Extent::Zeros { .. } => target[at..at + len].fill(0),
            Extent::Source { offset, .. } => target[at..at + len]
                .copy_from_slice(&source[*offset as usize..*offset as usize + len]),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Any plan (bytes, zeros and source ranges at unaligned offsets, with
    /// gaps) written to a 4Kn loop device leaves exactly what a byte model
    /// says: planned bytes replaced, gaps untouched.
    #[test]
    fn arbitrary_plans_on_a_loop_device(extents in proptest::collection::vec(arb_extent(), 1..8)) {
        let t = "arbitrary_plans_on_a_loop_device";
        if !require_root(t) || !require_tools(t, &["losetup"]) {
            return Ok(());
        }
        let dir = tempfile::tempdir().unwrap();
        let dev_len = MIB;
        let (backing, dev) = ff_loop(dir.path(), dev_len, &["--sector-size", "4096"]);
        let img = dir.path().join("img");
        pseudo_random_file(&img, 140_000, 99);
        let source = std::fs::read(&img).unwrap();
        let mut b = Plan::builder();
        for (gap, e) in extents {
            let at = b.end() + gap;
            b.push(at, e).unwrap();
        }
        let plan = b.build();
        prop_assume!(plan.end() <= dev_len);
        let mut expect = vec![0xFFu8; dev_len as usize];
        model(&plan, &source, &mut expect);
        let mut target = Target::open(dev.path()).unwrap();
        let report = write::write(&plan, &File::open(&img).unwrap(), &mut target, Options { chunk_size: 8192, ..Options::default() }, &Silent).unwrap();
        prop_assert!(report.verified);
        drop(target);
        drop(dev);
        let got = std::fs::read(&backing).unwrap();
        let first_bad = got.iter().zip(&expect).position(|(a, b)| a != b);
        prop_assert_eq!(first_bad, None, "plan {:?}", plan);
    }
}

/// A plan that reads the source out of order (as built layouts will) still
/// reports the digest of the whole image, checked before the first write.
#[test]
fn out_of_order_plan_is_hashed_before_writing() {
    if !require_tools("out_of_order_plan_is_hashed_before_writing", &["sha256sum"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img");
    pseudo_random_file(&img, 200_000, 21);
    let mut b = Plan::builder();
    b.append(Extent::Source {
        offset: 100_000,
        len: 100_000,
    })
    .unwrap();
    b.append(Extent::Source {
        offset: 0,
        len: 100_000,
    })
    .unwrap();
    let plan = b.build();
    let out = dir.path().join("out");
    let mut target = Target::file(&out).unwrap();
    let r = write::write(
        &plan,
        &File::open(&img).unwrap(),
        &mut target,
        Options {
            digest: Some(bootstick::hash::HashAlgorithm::Sha256),
            ..opts()
        },
        &Silent,
    )
    .unwrap();
    assert_eq!(r.source_digest.unwrap().to_hex(), sha256_file(&img));
    let data = std::fs::read(&img).unwrap();
    let got = std::fs::read(&out).unwrap();
    assert_eq!(&got[..100_000], &data[100_000..]);
    assert_eq!(&got[100_000..], &data[..100_000]);

    // With a wrong expected digest nothing is written at all.
    let out2 = dir.path().join("out2");
    let mut target = Target::file(&out2).unwrap();
    let wrong = Digest::from_hex(HashAlgorithm::Sha256, &"00".repeat(32)).unwrap();
    let err = write::write(
        &plan,
        &File::open(&img).unwrap(),
        &mut target,
        Options {
            expect_source: Some(wrong),
            ..opts()
        },
        &Silent,
    )
    .unwrap_err();
    assert!(matches!(err, write::Error::SourceChanged { .. }), "{err:?}");
    assert_eq!(std::fs::metadata(&out2).unwrap().len(), 0);
}

/// Runs `act` once, at the first progress event of the write phase.
struct OnFirstWrite<F: Fn() + Sync> {
    act: F,
    done: AtomicBool,
}

impl<F: Fn() + Sync> bootstick::events::Observer for OnFirstWrite<F> {
    fn event(&self, e: &Event) {
        if matches!(
            e,
            Event::Progress {
                phase: Phase::Write,
                ..
            }
        ) && !self.done.swap(true, Ordering::SeqCst)
        {
            (self.act)();
        }
    }
}

/// Issue 10, item 5: an image rewritten during a write without a source
/// check. The read-back compares the target with what was sent, which is a
/// mix of both versions, so it passes; only the image's `fstat` stamp tells.
/// Before, this was `Ok`, verified, with a stick equal to neither version.
#[test]
fn image_rewritten_during_an_unchecked_write_fails() {
    let dir = tempfile::tempdir().unwrap();
    let len = 64 * CHUNK as u64;
    let img = dir.path().join("img");
    pseudo_random_file(&img, len, 31);
    // An old modification time, so the change below surely moves it, on
    // any filesystem's timestamp granularity.
    File::open(&img)
        .unwrap()
        .set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000))
        .unwrap();
    let out = dir.path().join("out");
    let mut target = Target::file(&out).unwrap();
    let err = write::write(
        &Plan::raw(len),
        &File::open(&img).unwrap(),
        &mut target,
        opts(),
        &OnFirstWrite {
            act: || flip_byte(&img, len - 1),
            done: AtomicBool::new(false),
        },
    )
    .unwrap_err();
    assert!(
        matches!(err, write::Error::SourceModified { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("mix") && msg.contains("written again"),
        "{msg}"
    );
}

/// An image changed between its opening and the write (the stamp given in
/// `Options::source_stamp`) is refused before anything is written.
#[test]
fn image_changed_after_it_was_opened_is_refused_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img");
    pseudo_random_file(&img, 100_000, 32);
    let opened = bootstick::image::input::open(&img).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&img)
        .unwrap()
        .set_len(50_000)
        .unwrap();
    let out = dir.path().join("out");
    let mut target = Target::file(&out).unwrap();
    let err = write::write(
        &Plan::raw(100_000),
        opened.file(),
        &mut target,
        Options {
            source_stamp: Some(opened.stamp()),
            ..opts()
        },
        &Silent,
    )
    .unwrap_err();
    assert!(
        matches!(err, write::Error::SourceModifiedBeforeWrite { .. }),
        "{err:?}"
    );
    assert_eq!(std::fs::metadata(&out).unwrap().len(), 0);
}

/// The `result` line of a failed `--json` write.
fn failed_result(events: &[serde_json::Value]) -> &serde_json::Value {
    let r = events.last().unwrap();
    assert_eq!(r["event"], "result", "{events:#?}");
    assert_eq!(r["ok"], false, "{r:#}");
    r
}

/// Items 5 and 16 through the command line: an image rewritten during the
/// write, or truncated during it (it was long enough when opened), exits
/// 19 ("the image changed while it was written"), not 0 (rewritten, before)
/// or 3 (truncated, before). The images are sparse, so the write takes a
/// moment while costing little disk.
#[test]
fn cli_image_changed_or_truncated_during_the_write_exits_19() {
    let dir = tempfile::tempdir().unwrap();
    let len = 256u64 << 20;
    for (name, change) in [("rewritten", 0), ("truncated", 1)] {
        let img = dir.path().join(format!("{name}.img"));
        let f = File::create(&img).unwrap();
        f.set_len(len).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, b"start", 0).unwrap();
        f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000))
            .unwrap();
        drop(f);
        let out = dir.path().join(format!("{name}.out"));
        let (code, events) = common::write_changing_image(&img, &out, &[], |_| {
            let f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
            if change == 0 {
                std::os::unix::fs::FileExt::write_all_at(&f, b"X", len - 1).unwrap();
            } else {
                f.set_len(len / 2).unwrap();
            }
        });
        let r = failed_result(&events);
        assert_eq!(code, Some(19), "{name}: {r:#}");
        assert_eq!(r["exit_code"], 19, "{name}: {r:#}");
        let msg = r["error"].as_str().unwrap();
        assert!(msg.contains("must be written again"), "{name}: {msg}");
        let _ = std::fs::remove_file(&out);
    }
}

/// Runs bootstick with `args`, killing it after 20 s: returns the exit code
/// (`None` when it had to be killed) and stderr.
fn run_with_deadline(args: &[&std::ffi::OsStr]) -> (Option<i32>, String) {
    use std::time::{Duration, Instant};
    let mut child = bootstick()
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return (status.code(), err);
        }
        if start.elapsed() > Duration::from_secs(20) {
            child.kill().unwrap();
            child.wait().unwrap();
            return (None, "killed after 20 s: it hung".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Issue 10, items 11 and 13: an empty file, `/dev/null`, `/dev/zero`,
/// `/dev/urandom`, a directory and a FIFO nobody writes to are refused as
/// images by every command that reads one (exit 3, saying what they are;
/// `verify` refuses all but the empty file), at once, and `write` creates
/// no target. Before, the character devices
/// and the empty file were "written" (0 bytes, "verified"), and the FIFO
/// made every command hang.
#[test]
fn cli_non_images_are_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.iso");
    File::create(&empty).unwrap();
    let fifo = dir.path().join("fifo.iso");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let sub = dir.path().join("a-directory");
    std::fs::create_dir(&sub).unwrap();
    let cases: &[(&Path, &str)] = &[
        (&empty, "is empty"),
        (Path::new("/dev/null"), "is a character device"),
        (Path::new("/dev/zero"), "is a character device"),
        (Path::new("/dev/urandom"), "is a character device"),
        (&sub, "is a directory"),
        (&fifo, "is a FIFO"),
    ];
    for (image, says) in cases {
        let target = dir.path().join("stick.img");
        let out_dir = dir.path().join("extracted");
        let runs: Vec<Vec<&std::ffi::OsStr>> = vec![
            vec![
                "write".as_ref(),
                "--yes".as_ref(),
                image.as_os_str(),
                target.as_os_str(),
            ],
            vec!["inspect".as_ref(), image.as_os_str()],
            vec!["ls".as_ref(), image.as_os_str()],
            vec!["extract".as_ref(), image.as_os_str(), out_dir.as_os_str()],
        ];
        // `verify` hashes an empty file like any other (it has no stick to
        // leave unchanged); the other non-images it refuses too.
        let mut runs = runs;
        if !says.contains("empty") {
            runs.push(vec!["verify".as_ref(), image.as_os_str()]);
        }
        for args in runs {
            let (code, err) = run_with_deadline(&args);
            assert_eq!(code, Some(3), "{args:?}: {err}");
            assert!(err.contains(says), "{args:?}: {err}");
            // `verify` opens its image through the trust module's own
            // helper, which words it "not a regular file".
            let wording = if args[0] == "verify" {
                "not a regular file"
            } else {
                "not a regular file or block device"
            };
            if !says.contains("empty") {
                assert!(err.contains(wording), "{args:?}: {err}");
            }
            assert!(!target.exists(), "{args:?} created the target");
        }
    }
}

/// Without a terminal (a pipe here, as under ssh redirection, `| tee`, CI or
/// systemd) a write prints plain progress lines at a steady pace — bytes,
/// share, speed and ETA — besides each phase's start and end, so a long
/// write never looks frozen. The interval (5 s by default) is shortened
/// through BOOTSTICK_PROGRESS_INTERVAL so the test needs no slow target; at
/// the default a short write prints only its phase lines.
#[test]
fn without_a_terminal_progress_is_plain_lines_at_a_steady_pace() {
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("image.img");
    common::pseudo_random_file(&img, 32 * MIB, 21);
    let run = |interval: Option<&str>, target: &str| {
        let mut cmd = bootstick();
        cmd.arg("write").arg(&img).arg(tmp.path().join(target));
        if let Some(i) = interval {
            cmd.env("BOOTSTICK_PROGRESS_INTERVAL", i);
        } else {
            cmd.env_remove("BOOTSTICK_PROGRESS_INTERVAL");
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stderr).unwrap()
    };
    let err = run(Some("0"), "often.img");
    for phase in ["  write", " verify"] {
        assert!(
            err.contains(&format!("{phase}: started, 32.0 MiB\n")),
            "{err}"
        );
        let progress = err
            .lines()
            .filter(|l| l.starts_with(&format!("{phase}: ")) && l.contains(" of 32.0 MiB ("))
            .collect::<Vec<_>>();
        assert!(!progress.is_empty(), "no {phase} progress line: {err}");
        assert!(
            progress
                .iter()
                .all(|l| l.contains("%), ") && l.contains("/s")),
            "{progress:?}"
        );
    }
    assert!(err.contains("   sync: started\n"), "{err}");
    // The phase summaries are still there.
    assert!(err.contains("  write: 32.0 MiB in "), "{err}");

    let err = run(None, "default.img");
    assert!(err.contains("  write: started, 32.0 MiB\n"), "{err}");
    assert!(
        !err.contains(" of 32.0 MiB ("),
        "a write shorter than 5 s prints no progress line: {err}"
    );
}
