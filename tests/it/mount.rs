//! `bootstick mount` and `umount` against tools we did not write: the mounted
//! tree of genisoimage, xorriso and UDF fixtures is compared with `find`,
//! `stat -c '%s %F'` and `cmp` against `bootstick extract` and against
//! xorriso's (and, for UDF, 7-Zip's) extraction; several processes read at
//! once; signals, `bootstick umount` and `fusermount3 -u` leave no mount in
//! `/proc/self/mountinfo`; a truncated image, and one whose directory
//! record points a file outside it, give EIO on the damaged file only;
//! every write is EROFS.

use crate::common;
use bootstick_testkit::udf_build;

use common::fixtures::cached;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Tools every mount test needs: the kernel side is /dev/fuse; as root
/// fuser mounts it directly, otherwise through fusermount3.
const MOUNT_TOOLS: &[&str] = &["fusermount3", "find", "stat", "cmp"];

/// The source tree: files of several sizes (one spanning many FUSE reads),
/// nested and empty directories, relative and absolute symlinks, names
/// with spaces and non-ASCII characters.
fn make_tree(root: &Path) {
    use std::fs;
    use std::os::unix::fs::symlink;
    let _ = fs::remove_dir_all(root);
    fs::create_dir_all(root.join("data/nested/deeper")).unwrap();
    fs::write(root.join("README"), "readme\n").unwrap();
    common::pseudo_random_file(&root.join("data/big.bin"), (3 << 20) + 777, 11);
    common::pseudo_random_file(&root.join("data/exact-2048.bin"), 2048, 12);
    common::pseudo_random_file(&root.join("data/nested/deeper/leaf.bin"), 70_001, 13);
    fs::write(root.join("data/empty.txt"), "").unwrap();
    fs::write(root.join("ünï cødé.txt"), "unicode\n").unwrap();
    fs::create_dir_all(root.join("empty-dir")).unwrap();
    for i in 0..40 {
        fs::write(
            root.join(format!("data/file-{i:02}.txt")),
            format!("file {i}\n").repeat(i + 1),
        )
        .unwrap();
    }
    symlink("../README", root.join("data/link")).unwrap();
    symlink("data", root.join("dir-link")).unwrap();
    symlink("/etc/passwd", root.join("abs-link")).unwrap();
    // Modes Rock Ridge must carry through (the rest are 0644 and 0755).
    use std::os::unix::fs::PermissionsExt;
    let mode =
        |p: &str, m: u32| fs::set_permissions(root.join(p), fs::Permissions::from_mode(m)).unwrap();
    fs::write(root.join("data/secret.txt"), "secret\n").unwrap();
    mode("data/secret.txt", 0o640);
    fs::write(root.join("tool.sh"), "#!/bin/sh\n").unwrap();
    mode("tool.sh", 0o751);
    fs::create_dir(root.join("private")).unwrap();
    fs::write(root.join("private/inner.txt"), "inner\n").unwrap();
    mode("private", 0o700);
    // A fixed, old modification time on one file (the others have the
    // build's), so a time taken from anywhere else cannot match by luck.
    let old = std::time::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    fs::File::options()
        .write(true)
        .open(root.join("README"))
        .unwrap()
        .set_modified(old)
        .unwrap();
}

fn source_tree() -> PathBuf {
    cached("mount-source", "d", "make_tree", make_tree)
}

/// Masters the source tree with `tool args… -o IMAGE TREE`.
fn master(name: &str, tool: &str, args: &[&str]) -> PathBuf {
    let src = source_tree();
    let recipe = format!("{} {tool} {args:?}", src.display());
    cached(name, "iso", &recipe, |out| {
        common::run(Command::new(tool).args(args).arg("-o").arg(out).arg(&src));
    })
}

fn geniso() -> PathBuf {
    master(
        "mount-geniso",
        "genisoimage",
        &["-quiet", "-R", "-J", "-joliet-long"],
    )
}

fn xorriso() -> PathBuf {
    master(
        "mount-xorriso",
        "xorriso",
        &["-as", "mkisofs", "-quiet", "-R", "-J", "-joliet-long"],
    )
}

/// genisoimage's UDF bridge (UDF 1.02 + ISO 9660): read through UDF.
fn udf() -> PathBuf {
    master(
        "mount-udf",
        "genisoimage",
        &["-quiet", "-udf", "-R", "-iso-level", "3"],
    )
}

/// The mount type of `dir` in our mount namespace, if something is mounted there.
fn mount_type(dir: &Path) -> Option<String> {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    text.lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let point = left.split(' ').nth(4)?.replace("\\040", " ");
            (Path::new(&point) == dir).then(|| right.split(' ').next().unwrap().to_owned())
        })
        .next_back()
}

/// A running `bootstick mount`: unmounted (lazily, so even a busy mount
/// goes) and its process killed and reaped when dropped, also when a test
/// fails half-way.
struct Mounted {
    child: Option<Child>,
    dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Mounted {
    /// Mounts `image` (with extra `args`) on a new directory and waits until
    /// the mount is in /proc/self/mountinfo.
    fn new(image: &Path, args: &[&str]) -> Mounted {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("mnt");
        std::fs::create_dir(&dir).unwrap();
        let child = common::bootstick()
            .arg("mount")
            .arg(image)
            .arg(&dir)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut m = Mounted {
            child: Some(child),
            dir,
            _tmp: tmp,
        };
        let start = Instant::now();
        while mount_type(&m.dir).as_deref() != Some("fuse.bootstick") {
            if let Some(status) = m.child.as_mut().unwrap().try_wait().unwrap() {
                let out = m.child.take().unwrap().wait_with_output().unwrap();
                panic!(
                    "bootstick mount exited with {status} before mounting: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "not mounted after a minute"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        m
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    /// Waits (up to a minute) for the mount process to exit; returns its
    /// exit code and stderr.
    fn wait_exit(&mut self) -> (Option<i32>, String) {
        let mut child = self.child.take().expect("still running");
        let start = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if start.elapsed() > Duration::from_secs(60) {
                self.child = Some(child);
                panic!("bootstick mount did not exit within a minute");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if mount_type(&self.dir).is_some() {
            let _ = Command::new("fusermount3")
                .args(["-u", "-z", "--"])
                .arg(&self.dir)
                .status();
            if mount_type(&self.dir).is_some() {
                let _ = rustix::mount::unmount(&self.dir, rustix::mount::UnmountFlags::DETACH);
            }
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Sends `signal` to the process `pid` (one this test started).
fn kill(pid: i32, signal: rustix::process::Signal) {
    rustix::process::kill_process(rustix::process::Pid::from_raw(pid).unwrap(), signal).unwrap();
}

/// Every path below `root` (`find -printf '%P\n'`), sorted, and for each its
/// `stat -c '%s %F'` (directory sizes left out: a host directory's size is
/// its block count, not a property of the image's tree).
fn find_and_stat(root: &Path) -> BTreeMap<String, String> {
    let list =
        common::run(
            Command::new("find")
                .arg(root)
                .args(["-mindepth", "1", "-printf", "%P\\n"]),
        );
    let mut out = BTreeMap::new();
    let paths: Vec<&str> = list.lines().collect();
    if paths.is_empty() {
        return out;
    }
    let stat = common::run(
        Command::new("stat")
            .args(["-c", "%s %F"])
            .args(paths.iter().map(|p| root.join(p))),
    );
    for (p, s) in paths.iter().zip(stat.lines()) {
        let s = if s.ends_with(" directory") {
            "directory".to_owned()
        } else {
            s.to_owned()
        };
        out.insert((*p).to_owned(), s);
    }
    out
}

/// `find` and `stat` agree, regular files are `cmp`-equal and symlinks
/// point at the same targets, between the mount and `other`; `except` are
/// paths only the mount has (what the other extraction refused to create).
fn same_tree(mount: &Path, other: &Path, except: &[&str]) {
    let mut ours = find_and_stat(mount);
    let theirs = find_and_stat(other);
    for e in except {
        assert!(ours.remove(*e).is_some(), "{e} is not in the mount");
    }
    assert_eq!(ours, theirs, "{} vs {}", mount.display(), other.display());
    for (path, kind) in &ours {
        if kind.ends_with("regular file") || kind.ends_with("regular empty file") {
            common::run(
                Command::new("cmp")
                    .arg(mount.join(path))
                    .arg(other.join(path)),
            );
        } else if kind.ends_with("symbolic link") {
            assert_eq!(
                std::fs::read_link(mount.join(path)).unwrap(),
                std::fs::read_link(other.join(path)).unwrap(),
                "{path}"
            );
        }
    }
}

/// `stat -c '%a %Y'` (mode, modification time) of every entry below
/// `root` but symlinks (whose mode is always 777 and whose time bootstick
/// does not show).
fn modes_and_times(root: &Path) -> BTreeMap<String, String> {
    let list = common::run(Command::new("find").arg(root).args([
        "-mindepth",
        "1",
        "-not",
        "-type",
        "l",
        "-printf",
        "%P\\n",
    ]));
    let paths: Vec<&str> = list.lines().collect();
    let stat = common::run(
        Command::new("stat")
            .args(["-c", "%a %Y"])
            .args(paths.iter().map(|p| root.join(p))),
    );
    paths
        .iter()
        .map(|p| (*p).to_owned())
        .zip(stat.lines().map(str::to_owned))
        .collect()
}

/// `bootstick extract IMAGE DIR args…`.
fn extract(image: &Path, dir: &Path, args: &[&str]) {
    common::run(
        common::bootstick()
            .arg("extract")
            .arg(image)
            .arg(dir)
            .args(args),
    );
}

#[test]
fn mounted_rock_ridge_matches_extract_and_xorriso() {
    if !common::require_tools(
        "mounted_rock_ridge",
        &[MOUNT_TOOLS, &["genisoimage", "xorriso", "chmod"]].concat(),
    ) {
        return;
    }
    for image in [geniso(), xorriso()] {
        let m = Mounted::new(&image, &[]);
        let work = tempfile::tempdir().unwrap();
        let ours = work.path().join("extract");
        extract(&image, &ours, &[]);
        // extract refuses the absolute link; the mount shows it as stored.
        same_tree(&m.dir, &ours, &["abs-link"]);
        assert_eq!(
            std::fs::read_link(m.path("abs-link")).unwrap(),
            Path::new("/etc/passwd")
        );
        let theirs = work.path().join("xorriso");
        common::run(
            Command::new("xorriso")
                .args(["-osirrox", "on", "-indev"])
                .arg(&image)
                .args(["-extract", "/"])
                .arg(&theirs),
        );
        common::run(Command::new("chmod").args(["-R", "u+w"]).arg(&theirs));
        same_tree(&m.dir, &theirs, &[]);
        // The source tree itself, as a third witness.
        same_tree(&m.dir, &source_tree(), &[]);
    }
}

/// Rock Ridge modes (`PX`) and the recording dates reach `stat` as the
/// source tree has them; Joliet has no modes (0444/0555) but the same times.
#[test]
fn rock_ridge_modes_and_times_match_the_source() {
    if !common::require_tools(
        "rock_ridge_modes_and_times",
        &[MOUNT_TOOLS, &["genisoimage", "xorriso"]].concat(),
    ) {
        return;
    }
    let want = modes_and_times(&source_tree());
    assert_eq!(want["tool.sh"].split(' ').next(), Some("751"), "{want:?}");
    assert_eq!(want["README"], "644 1000000000", "{want:?}");
    for image in [geniso(), xorriso()] {
        let m = Mounted::new(&image, &[]);
        assert_eq!(modes_and_times(&m.dir), want, "{}", image.display());
        drop(m);
        let m = Mounted::new(&image, &["--fs", "joliet"]);
        let joliet: BTreeMap<String, String> = want
            .iter()
            .map(|(p, v)| {
                let time = v.split(' ').nth(1).unwrap();
                let dir = source_tree().join(p).is_dir();
                (p.clone(), format!("{} {time}", if dir { 555 } else { 444 }))
            })
            .collect();
        // Joliet has no symlinks: genisoimage lists them as files there,
        // xorriso leaves them out.
        let mut got = modes_and_times(&m.dir);
        for link in ["abs-link", "dir-link", "data/link"] {
            got.remove(link);
        }
        assert_eq!(got, joliet, "{}", image.display());
    }
}

#[test]
fn mounted_joliet_iso9660_and_udf_match_extract() {
    if !common::require_tools(
        "mounted_joliet_iso9660_udf",
        &[MOUNT_TOOLS, &["genisoimage", "7z"]].concat(),
    ) {
        return;
    }
    for (image, fs) in [(geniso(), "joliet"), (geniso(), "iso9660"), (udf(), "udf")] {
        let m = Mounted::new(&image, &["--fs", fs]);
        let work = tempfile::tempdir().unwrap();
        let ours = work.path().join("extract");
        extract(&image, &ours, &["--fs", fs]);
        same_tree(&m.dir, &ours, &[]);
        if fs == "udf" {
            // 7-Zip reads UDF on its own.
            let theirs = work.path().join("7z");
            common::run(
                Command::new("7z")
                    .args(["x", "-tudf", "-y"])
                    .arg(format!("-o{}", theirs.display()))
                    .arg(&image),
            );
            same_tree(&m.dir, &theirs, &[]);
        }
    }
    // Without --fs the UDF bridge is mounted through UDF, as ls shows it.
    let m = Mounted::new(&udf(), &[]);
    assert_eq!(
        std::fs::metadata(m.path("data/big.bin")).unwrap().len(),
        (3 << 20) + 777
    );
}

#[test]
fn several_processes_read_at_once() {
    if !common::require_tools(
        "several_readers",
        &[MOUNT_TOOLS, &["genisoimage", "sha256sum"]].concat(),
    ) {
        return;
    }
    let image = udf();
    let m = Mounted::new(&image, &[]);
    let src = source_tree();
    let files = ["data/big.bin", "data/nested/deeper/leaf.bin", "README"];
    let mut children: Vec<(String, Child)> = Vec::new();
    for round in 0..4 {
        for f in files {
            let child = Command::new("cmp")
                .arg(m.path(f))
                .arg(src.join(f))
                .spawn()
                .unwrap();
            children.push((format!("cmp {f} #{round}"), child));
        }
        let all: Vec<PathBuf> = (0..40)
            .map(|i| m.path(&format!("data/file-{i:02}.txt")))
            .collect();
        let child = Command::new("sha256sum")
            .args(&all)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        children.push((format!("sha256sum #{round}"), child));
    }
    for (what, mut c) in children {
        assert!(c.wait().unwrap().success(), "{what} failed");
    }
}

#[test]
fn signals_unmount_and_leave_no_stale_mount() {
    if !common::require_tools("signals_unmount", &[MOUNT_TOOLS, &["genisoimage"]].concat()) {
        return;
    }
    use rustix::process::Signal;
    let image = geniso();
    // Idle: SIGTERM unmounts, exit 143.
    let mut m = Mounted::new(&image, &[]);
    kill(m.pid(), Signal::TERM);
    let (code, err) = m.wait_exit();
    assert_eq!(code, Some(143), "{err}");
    assert!(err.contains("interrupted by SIGTERM"), "{err}");
    assert_eq!(mount_type(&m.dir), None, "stale mount after SIGTERM");
    // Busy (a file held open, a process inside): SIGINT still takes the
    // mount away, exit 130.
    let mut m = Mounted::new(&image, &[]);
    let held = std::fs::File::open(m.path("data/big.bin")).unwrap();
    let mut inside = Command::new("sleep")
        .arg("30")
        .current_dir(m.path("data"))
        .spawn()
        .unwrap();
    kill(m.pid(), Signal::INT);
    let (code, err) = m.wait_exit();
    let _ = inside.kill();
    let _ = inside.wait();
    drop(held);
    assert_eq!(code, Some(130), "{err}");
    assert_eq!(
        mount_type(&m.dir),
        None,
        "stale mount after SIGINT while busy"
    );
}

#[test]
fn umount_and_fusermount_end_the_mount_and_umount_refuses_other_dirs() {
    if !common::require_tools("umount", &[MOUNT_TOOLS, &["genisoimage"]].concat()) {
        return;
    }
    let image = geniso();
    let mut m = Mounted::new(&image, &[]);
    let out = common::bootstick()
        .arg("umount")
        .arg(&m.dir)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, err) = m.wait_exit();
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("was unmounted"), "{err}");
    assert_eq!(mount_type(&m.dir), None);

    // Busy (a file open): refused, 4, and still mounted; then it goes.
    let mut m = Mounted::new(&image, &[]);
    let held = std::fs::File::open(m.path("README")).unwrap();
    let out = common::bootstick()
        .arg("umount")
        .arg(&m.dir)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("busy"), "{err}");
    assert_eq!(mount_type(&m.dir).as_deref(), Some("fuse.bootstick"));
    drop(held);
    common::run(Command::new("fusermount3").arg("-u").arg(&m.dir));
    let (code, err) = m.wait_exit();
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(mount_type(&m.dir), None);

    // Not a mount point: 3. Another file system (proc): refused, 4, and
    // still mounted.
    let out = common::bootstick()
        .arg("umount")
        .arg(&m.dir)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = common::bootstick()
        .arg("umount")
        .arg("/proc")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("not a bootstick mount"), "{err}");
    assert_eq!(mount_type(Path::new("/proc")).as_deref(), Some("proc"));
}

#[test]
fn writes_are_erofs() {
    if !common::require_tools(
        "writes_are_erofs",
        &[MOUNT_TOOLS, &["genisoimage"]].concat(),
    ) {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let m = Mounted::new(&geniso(), &[]);
    let erofs = |what: &str, r: std::io::Result<()>| {
        let e = r.expect_err(what);
        assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{what}: {e}");
    };
    let readme = m.path("README");
    erofs("create", std::fs::File::create(m.path("new")).map(drop));
    erofs(
        "open for writing",
        std::fs::OpenOptions::new()
            .write(true)
            .open(&readme)
            .map(drop),
    );
    erofs(
        "append",
        std::fs::OpenOptions::new()
            .append(true)
            .open(&readme)
            .map(drop),
    );
    erofs("unlink", std::fs::remove_file(&readme));
    erofs("mkdir", std::fs::create_dir(m.path("d")));
    erofs("rmdir", std::fs::remove_dir(m.path("empty-dir")));
    erofs("rename", std::fs::rename(&readme, m.path("R")));
    erofs(
        "chmod",
        std::fs::set_permissions(&readme, std::fs::Permissions::from_mode(0o777)),
    );
    erofs("symlink", std::os::unix::fs::symlink("x", m.path("l")));
    erofs("link", std::fs::hard_link(&readme, m.path("h")));
    erofs("truncate", {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(readme.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        match unsafe { libc::truncate(c.as_ptr(), 0) } {
            0 => Ok(()),
            _ => Err(std::io::Error::last_os_error()),
        }
    });
    // Nothing changed.
    assert_eq!(std::fs::read(&readme).unwrap(), b"readme\n");
}

/// Where file `path`'s bytes start in `image` (`xorriso -find -exec
/// report_lba`: an oracle for the layout, not our reader).
fn data_lba(image: &Path, path: &str) -> u64 {
    let text = common::run(Command::new("xorriso").arg("-indev").arg(image).args([
        "-find",
        path,
        "-exec",
        "report_lba",
    ]));
    // "File data lba:  0 ,    LBA ,  BLOCKS ,  SIZE , 'PATH'"
    let line = text
        .lines()
        .find(|l| l.starts_with("File data lba:"))
        .unwrap_or_else(|| panic!("no report_lba for {path}: {text}"));
    let fields: Vec<&str> = line["File data lba:".len()..].split(',').collect();
    fields[1].trim().parse().unwrap()
}

#[test]
fn a_truncated_image_fails_the_damaged_file_only() {
    if !common::require_tools(
        "truncated_image",
        &[MOUNT_TOOLS, &["genisoimage", "xorriso"]].concat(),
    ) {
        return;
    }
    let image = geniso();
    let src = source_tree();
    let lba = |f: &str| data_lba(&image, &format!("/{f}"));
    let big = lba("data/big.bin");
    // Cut the image 1 MiB into big.bin: it and every file stored after it
    // must fail with EIO (not end early, not panic); files stored before
    // it must read; the mount must stay up.
    let end = big * 2048 + (1 << 20);
    let files = [
        "README",
        "ünï cødé.txt",
        "data/exact-2048.bin",
        "data/nested/deeper/leaf.bin",
        "data/file-07.txt",
    ];
    let before: Vec<&str> = files.into_iter().filter(|f| lba(f) < big).collect();
    assert!(before.contains(&"README"), "README is stored after big.bin");
    let check = |m: &Mounted| {
        let e = std::fs::read(m.path("data/big.bin")).expect_err("read past the end");
        assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
        for f in files {
            if before.contains(&f) {
                assert_eq!(
                    std::fs::read(m.path(f)).unwrap(),
                    std::fs::read(src.join(f)).unwrap(),
                    "{f}"
                );
            } else {
                let e = std::fs::read(m.path(f)).expect_err(f);
                assert_eq!(e.raw_os_error(), Some(libc::EIO), "{f}: {e}");
            }
        }
        assert_eq!(mount_type(&m.dir).as_deref(), Some("fuse.bootstick"));
    };
    let work = tempfile::tempdir().unwrap();
    let cut = work.path().join("cut.iso");
    let shorten = |path: &Path| {
        std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .unwrap()
            .set_len(end)
            .unwrap()
    };
    // Truncated before mounting: the reader finds the extents outside the
    // image and the mount says so.
    std::fs::copy(&image, &cut).unwrap();
    shorten(&cut);
    let mut m = Mounted::new(&cut, &[]);
    check(&m);
    kill(m.pid(), rustix::process::Signal::TERM);
    let (_, err) = m.wait_exit();
    assert!(
        err.contains("data/big.bin cannot be read (EIO)") && err.contains("outside the image"),
        "{err}"
    );
    // Truncated while mounted: the read itself runs past the end.
    std::fs::copy(&image, &cut).unwrap();
    let mut m = Mounted::new(&cut, &[]);
    shorten(&cut);
    check(&m);
    kill(m.pid(), rustix::process::Signal::TERM);
    let (_, err) = m.wait_exit();
    assert!(err.contains("reading /data/big.bin failed"), "{err}");
}

/// A UDF image with names no host path can hold, a duplicate, and a
/// directory pointing at its parent (a loop).
fn hostile_udf(with_loop: bool) -> Vec<u8> {
    use udf_build::{build, Node, Opts};
    let n = |s: &str| s.to_owned();
    let mut root = vec![
        (n("ok.txt"), Node::File(b"fine\n".to_vec())),
        (n("a/b"), Node::File(b"slash\n".to_vec())),
        (n("nul\0x"), Node::File(b"nul\n".to_vec())),
        (
            n(".."),
            Node::Dir(vec![(n("escape"), Node::File(b"x".to_vec()))]),
        ),
        (n("ok.txt"), Node::File(b"second\n".to_vec())),
        (
            n("dir"),
            Node::Dir(vec![(n("inner"), Node::File(b"in\n".to_vec()))]),
        ),
    ];
    if with_loop {
        root.push((n("loop"), Node::Dir(vec![(n("up"), Node::Ancestor(1))])));
    }
    build(Opts::default(), "HOSTILE", &root).img
}

#[test]
fn hostile_names_are_hidden_and_loops_refused() {
    if !common::require_tools("hostile_names", MOUNT_TOOLS) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let image = work.path().join("hostile.iso");
    std::fs::write(&image, hostile_udf(false)).unwrap();
    let mut m = Mounted::new(&image, &[]);
    let names: Vec<String> = std::fs::read_dir(&m.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(sorted, ["dir", "ok.txt"], "{names:?}");
    // The first of two same-named entries, as extract keeps it.
    assert_eq!(std::fs::read(m.path("ok.txt")).unwrap(), b"fine\n");
    assert_eq!(std::fs::read(m.path("dir/inner")).unwrap(), b"in\n");
    kill(m.pid(), rustix::process::Signal::TERM);
    let (_, err) = m.wait_exit();
    for hidden in ["a/b", "nul\\u{0}x", ".."] {
        assert!(
            err.contains(&format!("hiding {hidden}:")),
            "{hidden}: {err}"
        );
    }
    assert!(err.contains("hiding ok.txt: a second entry"), "{err}");

    // A loop refuses the whole mount (exit 3), as ls -R and extract do.
    let image = work.path().join("loop.iso");
    std::fs::write(&image, hostile_udf(true)).unwrap();
    let dir = work.path().join("mnt");
    std::fs::create_dir(&dir).unwrap();
    let out = common::bootstick()
        .arg("mount")
        .arg(&image)
        .arg(&dir)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("loop"), "{err}");
    assert_eq!(mount_type(&dir), None);
}

/// A corrupted (not truncated) image: the directory records of one file,
/// `data/nested/deeper/leaf.bin`, are patched in every tree that lists it
/// (ISO 9660/Rock Ridge and Joliet: the both-endian extent location of the
/// record whose both-endian size is the file's) to point past the image's
/// end. Mounted through Rock Ridge and through Joliet: that file still
/// lists with its size, reading it is EIO, and every other regular file of
/// the source tree reads back `cmp`-equal; the mount stays up.
#[test]
fn a_corrupted_extent_gives_eio_on_that_file_and_the_rest_reads() {
    if !common::require_tools(
        "corrupted_extent",
        &[MOUNT_TOOLS, &["genisoimage", "xorriso"]].concat(),
    ) {
        return;
    }
    let image = geniso();
    let victim = "data/nested/deeper/leaf.bin";
    let lba = data_lba(&image, &format!("/{victim}")) as u32;
    let size = 70_001u32;
    let mut bytes = std::fs::read(&image).unwrap();
    let mut pattern = Vec::new();
    for v in [lba, size] {
        pattern.extend(v.to_le_bytes());
        pattern.extend(v.to_be_bytes());
    }
    let beyond = (bytes.len() / 2048 + 100) as u32;
    let mut patched = 0;
    let mut i = 0;
    while i + pattern.len() <= bytes.len() {
        if bytes[i..i + pattern.len()] == pattern[..] {
            bytes[i..i + 4].copy_from_slice(&beyond.to_le_bytes());
            bytes[i + 4..i + 8].copy_from_slice(&beyond.to_be_bytes());
            patched += 1;
        }
        i += 1;
    }
    assert_eq!(patched, 2, "the ISO 9660 and the Joliet record of {victim}");
    let work = tempfile::tempdir().unwrap();
    let bad = work.path().join("corrupt.iso");
    std::fs::write(&bad, &bytes).unwrap();
    let src = source_tree();
    let others: Vec<String> = find_and_stat(&src)
        .into_iter()
        .filter(|(_, kind)| kind.ends_with("regular file") || kind.ends_with("regular empty file"))
        .map(|(p, _)| p)
        .filter(|p| p != victim)
        .collect();
    assert!(others.len() > 40, "{others:?}");
    for fs in [&[][..], &["--fs", "joliet"][..]] {
        let m = Mounted::new(&bad, fs);
        assert_eq!(
            std::fs::metadata(m.path(victim)).unwrap().len(),
            u64::from(size)
        );
        match std::fs::read(m.path(victim)) {
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EIO), "{fs:?}: {e}"),
            Ok(d) => panic!(
                "{fs:?}: {victim} read {} bytes from outside the image",
                d.len()
            ),
        }
        for f in &others {
            let out = Command::new("cmp")
                .arg(m.path(f))
                .arg(src.join(f))
                .output()
                .unwrap();
            assert!(out.status.success(), "{fs:?} {f}: {out:?}");
        }
        assert_eq!(mount_type(&m.dir).as_deref(), Some("fuse.bootstick"));
    }
}
