//! The job API (`bootstick::job`) called as a library, without the binary:
//! a write to a file target and to a loop device (checked with `cmp` and
//! the loop device's backing file), a comparison that passes and one that
//! names the changed byte, several targets at once, and the refusals that
//! must leave everything untouched.

use crate::common;

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use bootstick::devices::{self, Policy, Roots};
use bootstick::events::{Event, Phase, Silent};
use bootstick::job::{self, Answer, Choice, Confirm, Error, Image, RunOptions, Summary, Yes};
use bootstick::plan::MIB;
use bootstick::write;
use common::{pseudo_random_file, require_root, require_tools, LoopDevice};

fn cmp_n(a: &Path, b: &Path, n: u64) {
    common::run(
        Command::new("cmp")
            .arg("-n")
            .arg(n.to_string())
            .arg(a)
            .arg(b),
    );
}

fn sha256_file(p: &Path) -> String {
    let out = common::run(Command::new("sha256sum").arg(p));
    out.split_whitespace().next().unwrap().to_owned()
}

fn read_range(path: &Path, at: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    File::open(path)
        .unwrap()
        .read_exact_at(&mut buf, at)
        .unwrap();
    buf
}

/// A backing file of `len` bytes of 0xFF with a loop device on it.
fn ff_loop(dir: &Path, name: &str, len: u64) -> (PathBuf, LoopDevice) {
    let backing = dir.join(name);
    std::fs::write(&backing, vec![0xFFu8; len as usize]).unwrap();
    let dev = LoopDevice::attach(&backing);
    (backing, dev)
}

fn options() -> RunOptions {
    RunOptions {
        verify: true,
        ..RunOptions::default()
    }
}

/// Answers with `answer` and remembers what it was asked about.
struct Recorder {
    answer: Answer,
    asked: Vec<Summary>,
}

impl Confirm for Recorder {
    fn confirm(&mut self, what: &Summary) -> Answer {
        self.asked.push(what.clone());
        self.answer
    }
}

/// Opens, decides and selects `targets` for `image` with `confirm`.
fn choose(
    image: &Path,
    targets: &[PathBuf],
    confirm: &mut dyn Confirm,
) -> Result<(job::Job, Vec<job::Chosen>), Error> {
    let job = Image::open(image)?.decide(None, Choice::default())?;
    let chosen = job::choose_all(
        &Roots::live(),
        targets,
        Policy::default(),
        confirm,
        image,
        job.image_len(),
        job.needed(),
    )?;
    Ok((job, chosen))
}

#[test]
fn a_raw_image_written_to_a_file_target_is_the_image() {
    let t = "a_raw_image_written_to_a_file_target_is_the_image";
    if !require_tools(t, &["cmp"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    let len = 3 * MIB + 333;
    pseudo_random_file(&img, len, 21);
    let target = dir.path().join("stick.img");
    let mut never = Recorder {
        answer: Answer::No,
        asked: Vec::new(),
    };
    // A new file replaces nothing: no question is asked.
    let (job, chosen) = choose(&img, std::slice::from_ref(&target), &mut never).unwrap();
    assert!(never.asked.is_empty(), "asked about a new file");
    assert_eq!(job.decided().mode_name(), "raw");
    let mut prepared = job.prepare_all(chosen).unwrap();
    assert_eq!(prepared.len(), 1);
    let one = prepared.remove(0);
    assert_eq!(one.plan().bytes_to_write(), len, "a file gets no tail wipe");
    let phases = Mutex::new(Vec::new());
    let observer = |e: &Event| {
        if let Event::PhaseFinished { phase, .. } = e {
            phases.lock().unwrap().push(*phase);
        }
    };
    let written = one.run(&options(), &observer).unwrap();
    assert_eq!(written.bytes_written, len);
    assert!(written.verified);
    assert_eq!(written.mode, "raw");
    assert_eq!(written.partitions, None);
    assert_eq!(std::fs::metadata(&target).unwrap().len(), len);
    cmp_n(&img, &target, len);
    assert_eq!(
        *phases.lock().unwrap(),
        [Phase::Write, Phase::Sync, Phase::Verify]
    );
    // The result is the JSON `result` line's fields.
    let v = serde_json::to_value(&written).unwrap();
    assert_eq!(v["bytes_written"], len);
    assert_eq!(v["mode"], "raw");
    assert!(v.get("target").is_none() && v.get("layout").is_none());
}

/// The job reads the file it opened: an image replaced at its path after
/// [`Image::open`] is not what is planned, and the engine, bound to the
/// opened file's pinned stamp (unlinking it changed its ctime), refuses to
/// write rather than mix two files.
#[test]
fn an_image_replaced_after_it_was_opened_is_neither_planned_nor_written() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    let len = 2 * MIB + 4097;
    pseudo_random_file(&img, len, 5);
    let image = Image::open(&img).unwrap();
    // Another, longer file takes the image's name.
    let other = dir.path().join("other.img");
    pseudo_random_file(&other, 3 * len, 6);
    std::fs::rename(&other, &img).unwrap();
    let job = image.decide(None, Choice::default()).unwrap();
    assert_eq!(
        job.image_len(),
        len,
        "planned from the path, not the open file"
    );
    assert_eq!(job.needed(), len);
    let target = dir.path().join("stick.img");
    let one = job.prepare(job::Chosen::File(target.clone())).unwrap();
    assert_eq!(one.plan().bytes_to_write(), len);
    match one.run(&options(), &Silent) {
        Err(Error::Write(write::Error::SourceModifiedBeforeWrite { .. })) => {}
        other => panic!("expected a refusal of the changed image, got {other:?}"),
    }
    assert!(!target.exists(), "the target was created");
}

#[test]
fn a_loop_device_is_written_verified_and_compared() {
    let t = "a_loop_device_is_written_verified_and_compared";
    if !require_root(t) || !require_tools(t, &["losetup", "cmp"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (backing, dev) = ff_loop(dir.path(), "backing", 16 * MIB);
    let img = dir.path().join("disk.img");
    let len = 3 * MIB + 333;
    pseudo_random_file(&img, len, 9);
    let mut confirm = Recorder {
        answer: Answer::Yes,
        asked: Vec::new(),
    };
    let (job, chosen) = choose(&img, &[dev.path().to_path_buf()], &mut confirm).unwrap();
    // Asked once, about this disk, with the image's size.
    assert_eq!(confirm.asked.len(), 1);
    let asked = &confirm.asked[0];
    assert_eq!(asked.image_len, len);
    assert_eq!(
        asked
            .disks
            .iter()
            .map(|d| d.path.as_path())
            .collect::<Vec<_>>(),
        [dev.path()]
    );
    let mut prepared = job.prepare_all(chosen).unwrap();
    let one = prepared.remove(0);
    let start = serde_json::to_value(one.start(true)).unwrap();
    assert_eq!(start["block_device"], true);
    assert_eq!(start["target_bytes"], 16 * MIB);
    assert_eq!(start["mode"], "raw");
    let written = one.run(&options(), &Silent).unwrap();
    assert!(written.verified);
    assert!(written.direct_io, "loop devices accept O_DIRECT");
    assert!(written.partitions.is_some(), "a disk's table is re-read");
    cmp_n(&img, dev.path(), len);

    // compare: the same plan, read back without writing.
    let (path, disk) = job::resolve_for_reading(&Roots::live(), dev.path()).unwrap();
    assert!(disk.is_some());
    let target = write::Target::open_read(&path).unwrap();
    let cmp = job.prepare_compare(target, disk).unwrap();
    let same = cmp.run(&Default::default(), &Silent).unwrap();
    assert_eq!(same.bytes_compared, len);

    // One byte changed on the device: named by offset.
    let at = len - 100;
    {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(dev.path())
            .unwrap();
        f.write_all_at(&[!read_range(&img, at, 1)[0]], at).unwrap();
        f.sync_all().unwrap();
    }
    let target = write::Target::open_read(dev.path()).unwrap();
    let cmp = job.prepare_compare(target, None).unwrap();
    match cmp.run(&Default::default(), &Silent) {
        Err(Error::Write(write::Error::Mismatch { offset, .. })) => assert_eq!(offset, at),
        other => panic!("expected a mismatch at {at}, got {other:?}"),
    }
    drop(dev);
    // The tail wipe zeroed the last MiB; the gap is untouched.
    assert!(read_range(&backing, 15 * MIB, MIB as usize)
        .iter()
        .all(|&b| b == 0));
    assert!(read_range(&backing, len, (15 * MIB - len) as usize)
        .iter()
        .all(|&b| b == 0xFF));
}

#[test]
fn two_loop_devices_are_written_at_once_each_with_its_plan() {
    let t = "two_loop_devices_are_written_at_once_each_with_its_plan";
    if !require_root(t) || !require_tools(t, &["losetup", "cmp"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (back_a, a) = ff_loop(dir.path(), "a", 8 * MIB);
    let (back_b, b) = ff_loop(dir.path(), "b", 12 * MIB);
    let img = dir.path().join("disk.img");
    let len = 2 * MIB + 7;
    pseudo_random_file(&img, len, 13);
    let targets = [a.path().to_path_buf(), b.path().to_path_buf()];
    let (job, chosen) = choose(&img, &targets, &mut Yes).unwrap();
    let prepared = job.prepare_all(chosen).unwrap();
    let observers = [Silent, Silent];
    let outcomes = job::run_all(prepared, &options(), &observers, |i, r| (i, r));
    assert_eq!(outcomes.len(), 2);
    for (n, (i, r)) in outcomes.iter().enumerate() {
        assert_eq!(*i, n);
        let w = r.as_ref().unwrap();
        assert!(w.verified);
        assert_eq!(&w.target, &targets[n]);
    }
    drop((a, b));
    for (backing, size) in [(&back_a, 8 * MIB), (&back_b, 12 * MIB)] {
        cmp_n(&img, backing, len);
        assert!(read_range(backing, size - MIB, MIB as usize)
            .iter()
            .all(|&b| b == 0));
    }
}

#[test]
fn the_image_itself_as_target_is_refused_untouched() {
    let t = "the_image_itself_as_target_is_refused_untouched";
    if !require_tools(t, &["sha256sum"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    pseudo_random_file(&img, MIB, 3);
    let before = sha256_file(&img);
    // Through another name (a symlink) too.
    let link = dir.path().join("link.img");
    std::os::unix::fs::symlink(&img, &link).unwrap();
    for target in [&img, &link] {
        let err = choose(&img, std::slice::from_ref(target), &mut Yes)
            .err()
            .expect("the image was accepted as its own target");
        assert!(
            matches!(err, Error::Device(devices::Error::ImageIsTarget { .. })),
            "{target:?}: {err:?}"
        );
    }
    assert_eq!(sha256_file(&img), before);
}

#[test]
fn a_too_small_disk_and_the_same_disk_twice_are_refused_untouched() {
    let t = "a_too_small_disk_and_the_same_disk_twice_are_refused_untouched";
    if !require_root(t) || !require_tools(t, &["losetup", "sha256sum"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (small_backing, small) = ff_loop(dir.path(), "small", MIB);
    let (backing, dev) = ff_loop(dir.path(), "big", 8 * MIB);
    let img = dir.path().join("disk.img");
    pseudo_random_file(&img, 2 * MIB, 4);
    let before = [sha256_file(&small_backing), sha256_file(&backing)];

    let err = choose(&img, &[small.path().to_path_buf()], &mut Yes)
        .err()
        .expect("a 1 MiB disk took a 2 MiB image");
    assert!(
        matches!(
            err,
            Error::Device(devices::Error::TooSmall { size, needed, .. })
                if size == MIB && needed == 2 * MIB
        ),
        "{err:?}"
    );

    // The same disk by its node and by a symlink to it.
    let alias = dir.path().join("alias");
    std::os::unix::fs::symlink(dev.path(), &alias).unwrap();
    let mut never = Recorder {
        answer: Answer::Yes,
        asked: Vec::new(),
    };
    let err = choose(&img, &[dev.path().to_path_buf(), alias.clone()], &mut never)
        .err()
        .expect("the same disk was accepted twice");
    match &err {
        Error::Refused { refused, of: 2 } => {
            assert_eq!(refused.len(), 1, "{refused:?}");
            assert_eq!(refused[0].target, alias);
            assert!(
                matches!(&refused[0].error, Error::NamedTwice { disk: true, first, .. } if first == dev.path()),
                "{refused:?}"
            );
        }
        other => panic!("expected a refusal of the second name, got {other:?}"),
    }
    assert!(never.asked.is_empty(), "asked before every rule passed");

    // Declined: nothing written.
    let mut no = Recorder {
        answer: Answer::No,
        asked: Vec::new(),
    };
    let err = choose(&img, &[dev.path().to_path_buf()], &mut no)
        .err()
        .expect("written although declined");
    assert!(
        matches!(err, Error::Declined { asked: true, .. }),
        "{err:?}"
    );
    drop((small, dev));
    assert_eq!([sha256_file(&small_backing), sha256_file(&backing)], before);
}

/// The source check reads the image the job opened, not its path again:
/// after another file took the image's name, the check still hashes the
/// opened file (so what was checked is what is planned and written).
#[test]
fn the_source_check_reads_the_opened_image_not_the_path() {
    use bootstick::hash::{Digest, HashAlgorithm};
    use sha2::Digest as _;
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    let len = MIB + 5;
    pseudo_random_file(&img, len, 31);
    let hex = hex::encode(sha2::Sha256::digest(std::fs::read(&img).unwrap()));
    let image = Image::open(&img).unwrap();
    let other = dir.path().join("other.img");
    pseudo_random_file(&other, len, 32);
    std::fs::rename(&other, &img).unwrap();
    let req = bootstick::trust::Request {
        image: img.clone(),
        sums: Vec::new(),
        expected: vec![Digest::from_hex(HashAlgorithm::Sha256, &hex).unwrap()],
        signatures: Vec::new(),
        keys: Vec::new(),
        fingerprints: Vec::new(),
        discover: false,
    };
    let report = match image.check_source(&req, job::CheckPolicy::default(), &Silent) {
        Ok(Some(r)) => r,
        Ok(None) => panic!("no check ran although a digest was given"),
        Err(e) => panic!("the check did not pass on the opened image: {e:?}"),
    };
    assert_eq!(report.size, len);
    assert_eq!(report.checked_sha256.map(|d| d.to_hex()), Some(hex));
    assert!(report.checked_blocks.is_some(), "the check is pinned");
}
