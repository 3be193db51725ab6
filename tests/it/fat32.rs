//! The FAT32 formatter (`layout::fat32`) against three readers we did not
//! write: `fsck.fat` (dosfstools) checks the structure, `mcopy` (mtools)
//! copies the whole tree out to the host, and the `fatfs` crate walks it.
//! Names (long and short), directory nesting and every file's bytes must
//! come back as we put them in. The volume is written by the real write
//! engine from a plan, like any image.

use crate::common;

use bootstick::events::Silent;
use bootstick::image::{FileData, Run};
use bootstick::layout::fat32::{self, Content, Dir, Options};
use bootstick::write::{self, Target};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

/// What a file should read as, by path relative to the root.
type Expected = BTreeMap<String, Vec<u8>>;

fn bytes(b: &[u8]) -> Content {
    Content::Bytes(Arc::from(b))
}

/// A source range `offset..offset+len` of `src` as file contents.
fn range(src: &[u8], offset: u64, len: u64) -> (Content, Vec<u8>) {
    let data = src[offset as usize..(offset + len) as usize].to_vec();
    (
        Content::Source(FileData {
            size: len,
            runs: vec![Run::Data { offset, len }],
        }),
        data,
    )
}

/// A tree that exercises short names, LFNs with aliases and collisions,
/// Unicode, empty files and directories, multi-cluster files and a
/// multi-cluster directory, deep nesting, and files made of several runs.
fn tree(src: &[u8]) -> (Dir, Expected, Vec<String>) {
    let mut exp = Expected::new();
    let mut dirs = Vec::new();
    let mut root = Dir::new();

    root.file("README.TXT", bytes(b"plain 8.3 name\n"));
    exp.insert("README.TXT".into(), b"plain 8.3 name\n".to_vec());
    for (name, off, len) in [
        ("Long File Name One.txt", 0u64, 70_000u64),
        ("Long File Name Two.txt", 100_000, 1),
        ("readme.md", 123, 4096),
        ("a+b.c", 77, 512),
        (".hidden-ish", 999, 10),
    ] {
        let (c, d) = range(src, off, len);
        root.file(name, c);
        exp.insert(name.into(), d);
    }
    root.file("empty", bytes(b""));
    exp.insert("empty".into(), Vec::new());
    // Several runs, one of them zeros (a sparse extent in a UDF image).
    let uni = "Ünïcödé 日本語 ファイル名.dat";
    root.file(
        uni,
        Content::Source(FileData {
            size: 1000 + 4096 + 777,
            runs: vec![
                Run::Data {
                    offset: 5000,
                    len: 1000,
                },
                Run::Zeros { len: 4096 },
                Run::Data {
                    offset: 200_000,
                    len: 777,
                },
            ],
        }),
    );
    let mut d = src[5000..6000].to_vec();
    d.extend(std::iter::repeat_n(0u8, 4096));
    d.extend_from_slice(&src[200_000..200_777]);
    exp.insert(uni.into(), d);

    let mut boot = Dir::new();
    let (c, d) = range(src, 300_000, 1_000_000);
    boot.file("BOOTX64.EFI", c);
    exp.insert("EFI/BOOT/BOOTX64.EFI".into(), d);
    boot.file("grub.cfg", bytes(b"set timeout=0\n"));
    exp.insert("EFI/BOOT/grub.cfg".into(), b"set timeout=0\n".to_vec());
    let mut efi = Dir::new();
    efi.dir("BOOT", boot);
    root.dir("EFI", efi);
    dirs.extend(["EFI".to_string(), "EFI/BOOT".to_string()]);

    root.dir("empty dir", Dir::new());
    dirs.push("empty dir".into());

    let mut many = Dir::new();
    for i in 0..300 {
        let name = format!("file number {i:03}.txt");
        let body = format!("this is file {i}\n").into_bytes();
        many.file(&name, bytes(&body));
        exp.insert(format!("many files/{name}"), body);
    }
    root.dir("many files", many);
    dirs.push("many files".into());

    // a/b/c/.../j/deep.txt, built from the inside out.
    let letters = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"];
    let mut inner = Dir::new();
    inner.file("deep.txt", bytes(b"deep\n"));
    for k in (1..letters.len()).rev() {
        let mut outer = Dir::new();
        outer.dir(letters[k], inner);
        inner = outer;
    }
    root.dir(letters[0], inner);
    for k in 0..letters.len() {
        dirs.push(letters[..=k].join("/"));
    }
    exp.insert(
        format!("{}/deep.txt", letters.join("/")),
        b"deep\n".to_vec(),
    );
    (root, exp, dirs)
}

/// Lays out and writes a volume with the write engine; returns the image.
fn make_volume(dir: &Path, src_path: &Path, root: &Dir, options: &Options) -> std::path::PathBuf {
    let (plan, summary) = fat32::plan(root, options).expect("layout");
    assert!(summary.geometry.clusters >= fat32::MIN_CLUSTERS);
    let img = dir.join(format!("fat32-{}.img", options.size));
    let source = std::fs::File::open(src_path).unwrap();
    let mut target = Target::file(&img).unwrap();
    let report = write::write(
        &plan,
        &source,
        &mut target,
        write::Options::default(),
        &Silent,
    )
    .expect("write the volume");
    assert!(report.verified);
    drop(target);
    // The plan leaves free clusters out: give the file the volume's size.
    let f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
    assert!(f.metadata().unwrap().len() <= options.size);
    f.set_len(options.size).unwrap();
    img
}

/// `fsck.fat -n` (check only) must find nothing at all: on a clean volume it
/// prints its version and one summary line, anything else is a complaint.
fn fsck(img: &Path) {
    let out = Command::new("fsck.fat")
        .args(["-n", "-V"])
        .arg(img)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let clean = text.lines().all(|l| {
        l.starts_with("fsck.fat ")
            || l.starts_with("Starting ")
            || l.contains(" files, ")
            || l.is_empty()
    });
    if !out.status.success() || !clean {
        let verbose = Command::new("fsck.fat")
            .args(["-n", "-v"])
            .arg(img)
            .output()
            .unwrap();
        panic!(
            "fsck.fat -n complains:\n{text}\n--- verbose ---\n{}",
            String::from_utf8_lossy(&verbose.stdout)
        );
    }
}

/// Every regular file under `dir`, by relative path, and every directory.
fn host_tree(dir: &Path) -> (Expected, Vec<String>) {
    let mut files = Expected::new();
    let mut dirs = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            if p.is_dir() {
                dirs.push(rel);
                stack.push(p);
            } else {
                files.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    dirs.sort();
    (files, dirs)
}

fn mtools_copy_out(img: &Path, out: &Path) -> (Expected, Vec<String>) {
    std::fs::create_dir_all(out).unwrap();
    common::run(
        Command::new("mcopy")
            .env("LC_ALL", "C.UTF-8")
            .args(["-s", "-n", "-m", "-i"])
            .arg(img)
            .arg("::/")
            .arg(out),
    );
    host_tree(out)
}

fn fatfs_walk(img: &Path) -> (Expected, Vec<String>, String) {
    let f = std::fs::File::open(img).unwrap();
    let fs = fatfs::FileSystem::new(f, fatfs::FsOptions::new()).expect("fatfs opens the volume");
    assert_eq!(fs.fat_type(), fatfs::FatType::Fat32);
    let label = fs.volume_label();
    let mut files = Expected::new();
    let mut dirs = Vec::new();
    let mut stack = vec![(fs.root_dir(), String::new())];
    while let Some((d, path)) = stack.pop() {
        for e in d.iter() {
            let e = e.unwrap();
            let name = e.file_name();
            if name == "." || name == ".." {
                continue;
            }
            let rel = if path.is_empty() {
                name
            } else {
                format!("{path}/{name}")
            };
            if e.is_dir() {
                dirs.push(rel.clone());
                stack.push((e.to_dir(), rel));
            } else {
                let mut v = Vec::new();
                e.to_file().read_to_end(&mut v).unwrap();
                assert_eq!(v.len() as u64, e.len());
                files.insert(rel, v);
            }
        }
    }
    dirs.sort();
    (files, dirs, label)
}

fn assert_same(who: &str, got: &Expected, exp: &Expected) {
    let got_names: Vec<_> = got.keys().collect();
    let exp_names: Vec<_> = exp.keys().collect();
    assert_eq!(got_names, exp_names, "{who}: file names differ");
    for (k, v) in exp {
        assert!(got[k] == *v, "{who}: contents of {k} differ");
    }
}

/// Lays out a volume of `size` bytes, checks it with every oracle, and
/// checks that mtools (`minfo`, not bootstick) sees clusters of
/// `cluster_bytes`, the size the test's name promises.
fn check_volume(t: &str, size: u64, label: &str, cluster_bytes: u64) {
    if !common::require_tools(t, &["fsck.fat", "mcopy", "mlabel", "minfo"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src_path = dir.path().join("source.bin");
    common::pseudo_random_file(&src_path, 2 << 20, 4242);
    let src = std::fs::read(&src_path).unwrap();
    let (root, exp, mut dirs) = tree(&src);
    dirs.sort();
    let mut options = Options::new(size, label);
    options.mtime = 1_767_225_600; // 2026-01-01
    let img = make_volume(dir.path(), &src_path, &root, &options);

    fsck(&img);
    let (files, got_dirs) = mtools_copy_out(&img, &dir.path().join("mcopy"));
    assert_same("mcopy", &files, &exp);
    assert_eq!(got_dirs, dirs, "mcopy: directories differ");
    let (files, got_dirs, got_label) = fatfs_walk(&img);
    assert_same("fatfs", &files, &exp);
    assert_eq!(got_dirs, dirs, "fatfs: directories differ");
    assert_eq!(got_label.trim_end(), label.to_uppercase());
    // The volume label as mtools reads it (the root-directory entry).
    let vol = common::run(
        Command::new("mlabel")
            .args(["-s", "-i"])
            .arg(&img)
            .arg("::"),
    );
    assert!(
        vol.contains(&label.to_uppercase()),
        "mlabel -s shows {vol:?}"
    );
    // minfo prints the boot sector's "sector size: N bytes" and
    // "cluster size: N sectors".
    let info = common::run(Command::new("minfo").arg("-i").arg(&img).arg("::"));
    let field = |name: &str| -> u64 {
        info.lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {name:?} in minfo:\n{info}"))
    };
    assert_eq!(
        field("sector size:") * field("cluster size:"),
        cluster_bytes,
        "cluster size, says minfo:\n{info}"
    );
}

#[test]
fn fat32_volume_with_512_byte_clusters_reads_back_everywhere() {
    check_volume(
        "fat32_volume_with_512_byte_clusters_reads_back_everywhere",
        64 << 20,
        "BOOTSTICK",
        512,
    );
}

#[test]
fn fat32_volume_with_4k_clusters_reads_back_everywhere() {
    check_volume(
        "fat32_volume_with_4k_clusters_reads_back_everywhere",
        300 << 20,
        "Win Install",
        4096,
    );
}

/// A volume placed at 1 MiB (a partition's start, recorded as hidden
/// sectors) by `fat32::build` into a larger plan: mtools reads it at that
/// offset and finds the files.
#[test]
fn fat32_volume_at_a_partition_offset() {
    let t = "fat32_volume_at_a_partition_offset";
    if !common::require_tools(t, &["mcopy", "minfo"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src_path = dir.path().join("source.bin");
    common::pseudo_random_file(&src_path, 1 << 20, 99);
    let src = std::fs::read(&src_path).unwrap();
    let mut root = Dir::new();
    let (c, d) = range(&src, 4096, 300_000);
    let mut boot = Dir::new();
    boot.file("BOOTX64.EFI", c);
    let mut efi = Dir::new();
    efi.dir("BOOT", boot);
    root.dir("EFI", efi);
    let mut options = Options::new(40 << 20, "ESP");
    options.hidden_sectors = 2048;
    let mut b = bootstick::plan::Plan::builder();
    fat32::build(&root, &options, 1 << 20, &mut b).unwrap();
    let plan = b.build();
    assert!(
        plan.pieces()[0].at == 1 << 20,
        "nothing before the partition"
    );
    let img = dir.path().join("disk.img");
    let source = std::fs::File::open(&src_path).unwrap();
    let mut target = Target::file(&img).unwrap();
    write::write(
        &plan,
        &source,
        &mut target,
        write::Options::default(),
        &Silent,
    )
    .unwrap();
    drop(target);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&img)
        .unwrap()
        .set_len((1 << 20) + (40 << 20))
        .unwrap();
    let at = format!("{}@@1M", img.display());
    let info = common::run(Command::new("minfo").args(["-i", &at, "::"]));
    assert!(info.contains("hidden sectors: 2048"), "minfo:\n{info}");
    let out = dir.path().join("out");
    let (files, _) = mtools_copy_out(Path::new(&at), &out);
    assert_eq!(files.keys().collect::<Vec<_>>(), ["EFI/BOOT/BOOTX64.EFI"]);
    assert!(files["EFI/BOOT/BOOTX64.EFI"] == d);
}
