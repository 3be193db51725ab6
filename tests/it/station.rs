//! `bootstick station` on the host, with loop devices standing in for
//! sticks (the hidden `--loop-backing-dir`: only loop devices backed by a
//! file in the test's own directory count, so other loop devices on the
//! machine are never considered) and the polling watcher. The rules
//! themselves are unit-tested on the captured sysfs trees
//! (`src/station/rules.rs`); USB sticks hot-plugged into a guest are in
//! `tests/testbed.rs`.

use crate::common;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{bootstick, json_lines, pseudo_random_file, require_root, require_tools, LoopDevice};
use serde_json::Value;

fn sha256(p: &Path) -> String {
    let out = common::run(Command::new("sha256sum").arg(p));
    out.split_whitespace().next().unwrap().to_owned()
}

fn cmp_prefix(a: &Path, b: &Path, len: u64) -> bool {
    Command::new("cmp")
        .arg("-n")
        .arg(len.to_string())
        .arg(a)
        .arg(b)
        .status()
        .unwrap()
        .success()
}

fn sparse(p: &Path, len: u64) {
    std::fs::File::create(p).unwrap().set_len(len).unwrap();
}

/// A running station with its JSON lines collected as they come.
struct Running {
    child: Child,
    lines: Arc<Mutex<Vec<Value>>>,
    raw: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    fn start(image: &Path, sticks: &Path, args: &[&str]) -> Running {
        let mut child = bootstick()
            .args(["station", "--json", "--poll", "--loop-backing-dir"])
            .arg(sticks)
            .args(args)
            .arg(image)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let raw = Arc::new(Mutex::new(String::new()));
        let (l, r) = (lines.clone(), raw.clone());
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let line = line.unwrap();
                r.lock().unwrap().push_str(&(line.clone() + "\n"));
                l.lock().unwrap().push(serde_json::from_str(&line).unwrap());
            }
        });
        let s = Running {
            child,
            lines,
            raw,
            reader: Some(reader),
        };
        s.wait_for("start", |v| v["event"] == "start");
        s
    }

    /// Waits (60 s at most) for a line `wanted` accepts; returns it.
    fn wait_for(&self, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        let started = Instant::now();
        loop {
            if let Some(v) = self.lines.lock().unwrap().iter().find(|v| wanted(v)) {
                return v.clone();
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "no {what} line within 60 s:\n{}",
                self.raw.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// Waits for the process; returns its exit code, every JSON line
    /// (checked against the contract) and stderr.
    fn finish(mut self) -> (Option<i32>, Vec<Value>, String) {
        let started = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if started.elapsed() > Duration::from_secs(90) {
                let _ = self.child.kill();
                panic!("the station did not end:\n{}", self.raw.lock().unwrap());
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        self.reader.take().unwrap().join().unwrap();
        let mut err = String::new();
        std::io::Read::read_to_string(self.child.stderr.as_mut().unwrap(), &mut err).unwrap();
        let raw = self.raw.lock().unwrap().clone();
        (status.code(), json_lines(raw.as_bytes()), err)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn target_of(v: &Value) -> String {
    v["target"].as_str().unwrap_or_default().to_owned()
}

fn is<'a>(event: &'static str, lo: &'a LoopDevice) -> impl Fn(&Value) -> bool + 'a {
    move |v| v["event"] == event && target_of(v) == lo.path().to_str().unwrap()
}

/// The fields docs/cli.md's station table lists per `event` (every
/// backticked lower-case name in its row), plus `event`, `t`, `target`; a
/// stick's job lines (`phase`, `progress`, `phase_done`, `warning`) are
/// `write`'s, checked by `tests/contract.rs`.
fn documented() -> std::collections::BTreeMap<String, Vec<String>> {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/cli.md")).unwrap();
    let section = doc.split("## station").nth(1).expect("a station section");
    let table = section
        .split("| `event` | fields | when |")
        .nth(1)
        .expect("the station's event table");
    let mut m = std::collections::BTreeMap::new();
    for row in table.lines().skip(2).take_while(|l| l.starts_with('|')) {
        let cells: Vec<&str> = row.split(" | ").collect();
        let event = cells[0]
            .trim_start_matches("| ")
            .trim_matches('`')
            .to_owned();
        let mut names: Vec<String> = cells[1]
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
            .map(str::to_owned)
            .collect();
        names.extend(["event", "t", "target"].map(String::from));
        m.insert(event, names);
    }
    m
}

/// Every station line's event and top-level fields are in docs/cli.md.
fn assert_documented(lines: &[Value]) {
    let doc = documented();
    for l in lines {
        let event = l["event"].as_str().unwrap();
        if ["phase", "progress", "phase_done", "warning"].contains(&event) {
            continue;
        }
        let fields = doc.get(event).unwrap_or_else(|| {
            panic!("event {event:?} is not in docs/cli.md's station table: {l}")
        });
        for key in l.as_object().unwrap().keys() {
            assert!(
                fields.contains(key),
                "`{event}` field {key:?} is not in docs/cli.md's station table: {l}"
            );
        }
    }
}

fn records(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn record_for<'a>(records: &'a [Value], lo: &LoopDevice) -> &'a Value {
    let name = lo.path().file_name().unwrap().to_str().unwrap();
    let mine: Vec<&Value> = records.iter().filter(|r| r["device"] == name).collect();
    assert_eq!(mine.len(), 1, "one record for {name}: {records:#?}");
    mine[0]
}

struct Bench {
    _dir: tempfile::TempDir,
    image: PathBuf,
    sticks: PathBuf,
    log: PathBuf,
    len: u64,
}

fn bench(len: u64) -> Bench {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("image.img");
    pseudo_random_file(&image, len, 23);
    let sticks = dir.path().join("sticks");
    std::fs::create_dir(&sticks).unwrap();
    let log = dir.path().join("lab.ndjson");
    Bench {
        image,
        sticks,
        log,
        len,
        _dir: dir,
    }
}

/// Sticks that arrive are written and verified (two at once), an ext4
/// stick is skipped and logged, a stick attached before the start is
/// ignored, and `--count` ends the run; one log record per stick.
#[test]
fn arriving_sticks_are_written_ext4_skipped_present_ignored() {
    if !require_root("station")
        || !require_tools("station", &["losetup", "mkfs.ext4", "cmp", "sha256sum"])
    {
        return;
    }
    let b = bench(6 << 20);
    let path = |n: &str| b.sticks.join(n);
    for n in ["present.img", "a.img", "b.img", "ext4.img"] {
        sparse(&path(n), 24 << 20);
    }
    common::run(
        Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .arg(path("ext4.img")),
    );
    let ext4_before = sha256(&path("ext4.img"));
    let present_before = sha256(&path("present.img"));
    let present = LoopDevice::attach(&path("present.img"));
    let st = Running::start(
        &b.image,
        &b.sticks,
        &["--yes", "--count", "2", "--log", b.log.to_str().unwrap()],
    );
    let start = st.wait_for("start", |v| v["event"] == "start");
    let listed: Vec<&Value> = start["present"].as_array().unwrap().iter().collect();
    assert!(
        listed
            .iter()
            .any(|p| p["disk"]["path"] == present.path().to_str().unwrap() && p["ignored"] == true),
        "{start}"
    );
    let ext4 = LoopDevice::attach(&path("ext4.img"));
    let skipped = st.wait_for("skipped", is("skipped", &ext4));
    assert_eq!(skipped["rule"], "holds", "{skipped}");
    assert!(
        skipped["reason"]
            .as_str()
            .unwrap()
            .contains("holds ext4 data"),
        "{skipped}"
    );
    // Two at once.
    let a = LoopDevice::attach(&path("a.img"));
    let c = LoopDevice::attach(&path("b.img"));
    let (code, lines, err) = st.finish();
    assert_eq!(code, Some(0), "{err}\n{lines:#?}");
    for lo in [&a, &c] {
        assert!(lines.iter().any(is("writing", lo)), "{lines:#?}");
        let r = lines.iter().find(|v| is("target_result", lo)(v)).unwrap();
        assert_eq!(r["ok"], true, "{r}");
    }
    assert!(!lines
        .iter()
        .any(|v| target_of(v) == present.path().to_str().unwrap() && v["event"] != "start"));
    assert_documented(&lines);
    let result = lines.last().unwrap();
    assert_eq!(
        (result["done"].as_u64(), result["skipped"].as_u64()),
        (Some(2), Some(1)),
        "{result}"
    );
    drop((a, c, ext4, present));
    assert!(cmp_prefix(&b.image, &path("a.img"), b.len));
    assert!(cmp_prefix(&b.image, &path("b.img"), b.len));
    assert_eq!(
        sha256(&path("ext4.img")),
        ext4_before,
        "the ext4 stick was written"
    );
    assert_eq!(
        sha256(&path("present.img")),
        present_before,
        "the present stick was written"
    );
    let recs = records(&b.log);
    assert_eq!(recs.len(), 3, "{recs:#?}");
    let image_sha = sha256(&b.image);
    for r in &recs {
        if r["result"] == "done" {
            assert_eq!(r["image_sha256"], image_sha.as_str(), "{r}");
            // The image and the tail wipe of the device's last MiB.
            assert_eq!(r["bytes"].as_u64(), Some(b.len + (1 << 20)), "{r}");
            assert_eq!(r["size"].as_u64(), Some(24 << 20));
            assert!(r["mb_per_s"].as_f64().unwrap() > 0.0 && r["seconds"].as_f64().unwrap() > 0.0);
            assert!(r["error"].is_null());
        }
    }
    assert_eq!(recs.iter().filter(|r| r["result"] == "done").count(), 2);
    let skip = recs.iter().find(|r| r["result"] == "skipped").unwrap();
    assert_eq!(skip["rule"], "holds");
    assert_eq!(skip["bytes"], 0);
}

/// Without a terminal and without `--yes` nothing is watched or written
/// (exit 7), as for `write`.
#[test]
fn without_a_terminal_or_yes_the_station_refuses() {
    let b = bench(1 << 20);
    let o = bootstick()
        .args(["station", "--poll", "--json"])
        .arg(&b.image)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let lines = json_lines(&o.stdout);
    assert!(lines.last().unwrap()["error"]
        .as_str()
        .unwrap()
        .contains("--yes"));
    // A bad --match is a usage error.
    let o = bootstick()
        .args(["station", "--yes", "--match", "colour=red"])
        .arg(&b.image)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}

/// A stick that fails (its backing file's tmpfs is full) fails alone: the
/// station goes on and writes the next one; SIGINT then ends it, and the
/// exit code says a stick failed (26).
#[test]
fn a_failing_stick_fails_alone_and_the_exit_code_says_so() {
    if !require_root("station") || !require_tools("station", &["losetup", "mount", "cmp"]) {
        return;
    }
    let b = bench(6 << 20);
    common::run(
        Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=12m", "station-test"])
            .arg(&b.sticks),
    );
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _mounted = Unmount(b.sticks.clone());
    let path = |n: &str| b.sticks.join(n);
    sparse(&path("bad.img"), 24 << 20);
    sparse(&path("good.img"), 24 << 20);
    // Leaves 2 MiB of the 12: the bad stick's writes fail past them.
    pseudo_random_file(&path("filler"), 10 << 20, 5);
    let st = Running::start(
        &b.image,
        &b.sticks,
        &["--yes", "--log", b.log.to_str().unwrap()],
    );
    let bad = LoopDevice::attach(&path("bad.img"));
    let failed = st.wait_for("bad result", is("target_result", &bad));
    assert_eq!(failed["ok"], false, "{failed}");
    assert_eq!(failed["exit_code"], 5, "{failed}");
    std::fs::remove_file(path("filler")).unwrap();
    let good = LoopDevice::attach(&path("good.img"));
    let ok = st.wait_for("good result", is("target_result", &good));
    assert_eq!(ok["ok"], true, "{ok}");
    st.signal(libc::SIGINT);
    let (code, lines, err) = st.finish();
    assert_eq!(code, Some(26), "{err}\n{lines:#?}");
    assert_documented(&lines);
    let result = lines.last().unwrap();
    assert_eq!(result["exit_code"], 26);
    assert_eq!(
        (result["done"].as_u64(), result["failed"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(cmp_prefix(&b.image, &path("good.img"), b.len));
    let recs = records(&b.log);
    assert_eq!(record_for(&recs, &bad)["result"], "failed");
    assert!(record_for(&recs, &bad)["error"]
        .as_str()
        .unwrap()
        .contains("byte"));
    assert_eq!(record_for(&recs, &good)["result"], "done");
    drop((bad, good));
}

/// A compressed image whose stream is corrupt past the first MiB fails
/// the stick the way `write` fails it: exit 3 (bad input), the target
/// incomplete, and its held-back first MiB zeroed (`boot_area_zeroed`),
/// so the half-written stick cannot boot.
#[test]
fn a_corrupt_compressed_image_leaves_the_sticks_boot_area_zeroed() {
    let t = "a_corrupt_compressed_image_leaves_the_sticks_boot_area_zeroed";
    if !require_root(t) || !require_tools(t, &["losetup", "xz"]) {
        return;
    }
    let b = bench(6 << 20);
    let packed = b.image.with_extension("img.xz");
    common::run(Command::new("sh").arg("-c").arg(format!(
        "xz -T0 --block-size=1MiB -c '{}' > '{}'",
        b.image.display(),
        packed.display()
    )));
    let clen = std::fs::metadata(&packed).unwrap().len();
    common::flip_byte(&packed, clen * 3 / 4);
    let stick = b.sticks.join("stick.img");
    std::fs::write(&stick, vec![0xA5u8; 24 << 20]).unwrap();
    let st = Running::start(
        &packed,
        &b.sticks,
        &["--yes", "--log", b.log.to_str().unwrap()],
    );
    let lo = LoopDevice::attach(&stick);
    let failed = st.wait_for("a result", is("target_result", &lo));
    st.signal(libc::SIGINT);
    let (_, lines, err) = st.finish();
    assert_documented(&lines);
    assert_eq!(failed["ok"], false, "{failed}\n{err}");
    assert_eq!(failed["exit_code"], 3, "{failed}");
    assert_eq!(failed["target_state"], "incomplete", "{failed}");
    assert_eq!(failed["boot_area_zeroed"], true, "{failed}");
    drop(lo);
    let bytes = std::fs::read(&stick).unwrap();
    assert!(
        bytes[..1 << 20].iter().all(|&b| b == 0),
        "the first MiB is zeroed"
    );
}

/// The first SIGINT stops taking sticks and lets the one being written
/// finish (a stick attached afterwards is not touched); exit 0. A second
/// SIGINT aborts a running stick: logged as incomplete, exit 130.
#[test]
fn first_sigint_drains_second_aborts() {
    if !require_root("station") || !require_tools("station", &["losetup", "cmp", "sha256sum"]) {
        return;
    }
    let b = bench(160 << 20);
    let path = |n: &str| b.sticks.join(n);
    for n in ["one.img", "late.img", "two.img"] {
        sparse(&path(n), 192 << 20);
    }
    // Drained.
    let st = Running::start(
        &b.image,
        &b.sticks,
        &["--yes", "--log", b.log.to_str().unwrap()],
    );
    let one = LoopDevice::attach(&path("one.img"));
    st.wait_for("write phase", |v| {
        v["event"] == "phase" && target_of(v) == one.path().to_str().unwrap()
    });
    st.signal(libc::SIGINT);
    st.wait_for("stopping", |v| v["event"] == "stopping");
    let late = LoopDevice::attach(&path("late.img"));
    let (code, lines, err) = st.finish();
    assert_eq!(code, Some(0), "{err}\n{lines:#?}");
    assert!(lines
        .iter()
        .any(|v| is("target_result", &one)(v) && v["ok"] == true));
    // Seen arriving, perhaps, but never taken.
    assert!(!lines
        .iter()
        .any(|v| target_of(v) == late.path().to_str().unwrap() && v["event"] != "arrived"));
    assert!(cmp_prefix(&b.image, &path("one.img"), b.len));
    let zeros = {
        let z = b.sticks.join("zeros");
        sparse(&z, 192 << 20);
        sha256(&z)
    };
    assert_eq!(
        sha256(&path("late.img")),
        zeros,
        "the late stick was written"
    );
    drop((one, late));
    // Aborted (its own log: the loop device's name may be reused).
    let log2 = b.sticks.join("second.ndjson");
    let st = Running::start(
        &b.image,
        &b.sticks,
        &["--yes", "--log", log2.to_str().unwrap()],
    );
    let two = LoopDevice::attach(&path("two.img"));
    st.wait_for("write phase", |v| {
        v["event"] == "phase" && target_of(v) == two.path().to_str().unwrap()
    });
    st.signal(libc::SIGINT);
    st.wait_for("stopping", |v| v["event"] == "stopping");
    st.signal(libc::SIGINT);
    let (code, lines, err) = st.finish();
    assert_eq!(code, Some(130), "{err}\n{lines:#?}");
    let r = lines.iter().find(|v| is("target_result", &two)(v)).unwrap();
    assert_eq!(r["ok"], false);
    // Stopped while writing, or (on a loaded machine, where the write can
    // finish before the second signal lands) while reading it back.
    assert!(
        r["target_state"] == "incomplete" || r["target_state"] == "written-not-verified",
        "{r}"
    );
    assert_documented(&lines);
    let result = lines.last().unwrap();
    assert_eq!(result["interrupted"], true);
    assert_eq!(result["incomplete"], 1);
    let recs = records(&log2);
    assert_eq!(record_for(&recs, &two)["result"], "incomplete");
    drop(two);
}

// ---------------------------------------------------------------- the guest

/// In the test-bed guest, sticks are hot-plugged (QMP `device_add`) while
/// the station runs on kernel uevents: one stick, then two at once, are
/// written and verified (`cmp` on their backing files here), and two of
/// them boot under SeaBIOS and OVMF; a stick attached at the start is
/// ignored; a hot-plugged virtio disk (not USB) and a USB disk with ext4
/// on it are skipped and logged, their bytes untouched; the first stick
/// pulled and plugged in again is not written twice; a stick whose writes
/// fail (blkdebug EIO) fails alone. `--count 3` ends the run, whose exit
/// code (26) says a stick failed; the log has one record per stick.
#[test]
fn guest_station_writes_hot_plugged_sticks_and_nothing_else() {
    use common::guest::{self, blkdebug_rules, Guest, Stick};
    use common::qemu;
    let test = "guest_station_writes_hot_plugged_sticks_and_nothing_else";
    if !guest::require(test)
        || !qemu::require(test, &qemu::Firmware::ALL)
        || !require_tools(test, qemu::FIXTURE_TOOLS)
        || !require_tools(test, &["mkfs.ext4", "cmp", "sha256sum"])
    {
        return;
    }
    let iso = qemu::grub_hybrid_iso();
    let iso_len = std::fs::metadata(&iso).unwrap().len();
    let dir = tempfile::tempdir().unwrap();
    let img = |name: &str, mib: u64| {
        let p = dir.path().join(name);
        // Stale data: only what the station writes can boot.
        pseudo_random_file(&p, mib << 20, mib + name.len() as u64);
        p
    };
    let present = img("present.img", 48);
    let sticks = [img("s1.img", 64), img("s2.img", 48), img("s3.img", 64)];
    let bad = img("bad.img", 64);
    let ext4 = img("ext4.img", 64);
    common::run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&ext4));
    let virtio = img("virtio.img", 64);
    let untouched: Vec<(PathBuf, String)> = [&present, &ext4, &virtio]
        .iter()
        .map(|p| ((*p).clone(), sha256(p)))
        .collect();
    let script = r#"
echo "@@ station"
bootstick station --json --yes --count 3 --log /mnt/sys/lab.ndjson grub.iso 2>&1
echo "rc=$?"
echo "@@ log"
cat /mnt/sys/lab.ndjson
echo "@@ end"
"#;
    let mut g = Guest::new(script)
        .file("grub.iso", &iso)
        .stick(Stick::new(&present, "BSTPRES1"))
        .hotplug();
    g.timeout = Duration::from_secs(420);
    let mut g = g.spawn();
    let json_line = |l: &str| serde_json::from_str::<Value>(l).ok();
    let wait = |g: &mut guest::Running, what: &str, wanted: &dyn Fn(&Value) -> bool| -> Value {
        let l = g
            .wait_for_line(|l| json_line(l).is_some_and(|v| wanted(&v)))
            .unwrap_or_else(|| panic!("no {what} line:\n{}", g.output_so_far()));
        json_line(&l).unwrap()
    };
    let serial_is = |v: &Value, s: &str| v["disk"]["serial"] == s || v["record"]["serial"] == s;
    let start = wait(&mut g, "start", &|v| v["event"] == "start");
    assert_eq!(start["watching"]["via"], "uevents", "{start}");
    assert!(
        start["present"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["disk"]["serial"] == "BSTPRES1" && p["ignored"] == true),
        "{start}"
    );
    g.plug_virtio(&virtio, "virtio1", "BSTVIRT1");
    let v = wait(&mut g, "virtio skip", &|v| {
        v["event"] == "skipped" && serial_is(v, "BSTVIRT1")
    });
    assert_eq!(v["rule"], "not-a-stick", "{v}");
    g.plug(&Stick::new(&ext4, "BSTEXT41"), "ext4");
    let v = wait(&mut g, "ext4 skip", &|v| {
        v["event"] == "skipped" && serial_is(v, "BSTEXT41")
    });
    assert_eq!(v["rule"], "holds", "{v}");
    assert!(v["reason"].as_str().unwrap().contains("ext4"), "{v}");
    // One stick.
    g.plug(&Stick::new(&sticks[0], "BSTST001"), "s1");
    let v = wait(&mut g, "s1 result", &|v| {
        v["event"] == "target_result" && serial_is(v, "BSTST001")
    });
    assert_eq!(v["ok"], true, "{v}");
    // Pulled and plugged in again: not written twice.
    g.unplug("s1");
    wait(&mut g, "s1 removed", &|v| v["event"] == "removed");
    g.replug("s1", "BSTST001");
    let v = wait(&mut g, "s1 again", &|v| {
        v["event"] == "skipped" && serial_is(v, "BSTST001")
    });
    assert_eq!(v["rule"], "already-written", "{v}");
    // A stick that fails alone.
    let mut failing = Stick::new(&bad, "BSTBAD01");
    failing.blkdebug = Some(blkdebug_rules(dir.path(), "write", 8192));
    g.plug(&failing, "bad");
    let v = wait(&mut g, "bad result", &|v| {
        v["event"] == "target_result" && serial_is(v, "BSTBAD01")
    });
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["exit_code"], 5, "{v}");
    // Two at once.
    g.plug(&Stick::new(&sticks[1], "BSTST002"), "s2");
    g.plug(&Stick::new(&sticks[2], "BSTST003"), "s3");
    let out = g.finish_within().expect("the guest did not finish");
    out.assert_success();
    let section = out.section("station");
    let lines: Vec<Value> = section.lines().filter_map(json_line).collect();
    let rc: i32 = section
        .lines()
        .find_map(|l| l.strip_prefix("rc="))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no rc:\n{out}"));
    assert_eq!(rc, 26, "{out}");
    assert_documented(&lines);
    let result = lines.last().unwrap();
    assert_eq!(result["event"], "result", "{out}");
    assert_eq!(
        (result["done"].as_u64(), result["failed"].as_u64()),
        (Some(3), Some(1)),
        "{out}"
    );
    for s in ["BSTST002", "BSTST003"] {
        assert!(
            lines
                .iter()
                .any(|v| v["event"] == "target_result" && v["ok"] == true && serial_is(v, s)),
            "{s}:\n{out}"
        );
    }
    // The log: one record per stick considered, in the order finished.
    let log: Vec<Value> = out.section("log").lines().filter_map(json_line).collect();
    let by_serial = |s: &str| -> Vec<&Value> { log.iter().filter(|r| r["serial"] == s).collect() };
    for (serial, results) in [
        ("BSTVIRT1", vec!["skipped"]),
        ("BSTEXT41", vec!["skipped"]),
        ("BSTST001", vec!["done", "skipped"]),
        ("BSTBAD01", vec!["failed"]),
        ("BSTST002", vec!["done"]),
        ("BSTST003", vec!["done"]),
    ] {
        let got: Vec<&str> = by_serial(serial)
            .iter()
            .map(|r| r["result"].as_str().unwrap())
            .collect();
        assert_eq!(got, results, "{serial}:\n{out}");
    }
    assert!(by_serial("BSTPRES1").is_empty(), "{out}");
    let iso_sha = sha256(&iso);
    for r in log.iter().filter(|r| r["result"] == "done") {
        assert_eq!(r["image_sha256"], iso_sha.as_str(), "{r}");
        assert!(
            r["by_id"]
                .as_str()
                .unwrap()
                .contains("usb-QEMU_QEMU_HARDDISK_"),
            "{r}"
        );
        assert!(r["by_path"].as_str().unwrap().contains("usb"), "{r}");
        assert_eq!(r["model"], "QEMU HARDDISK");
    }
    assert!(
        log.iter().find(|r| r["serial"] == "BSTBAD01").unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("byte")
    );
    for s in &sticks {
        assert!(
            cmp_prefix(&iso, s, iso_len),
            "{} does not hold the image",
            s.display()
        );
    }
    for (p, before) in &untouched {
        assert_eq!(&sha256(p), before, "{} was written", p.display());
    }
    for (stick, fw) in sticks[1..].iter().zip(qemu::Firmware::ALL) {
        qemu::Boot::new(stick, fw, &qemu::fixture_marker(fw)).assert_boots();
    }
}
