//! The UDF reader against images built by genisoimage and read back by 7-Zip
//! (p7zip-full reads UDF independently of us): listings, sizes and contents
//! must agree, including a Windows-like "UDF bridge" whose ISO 9660 side holds
//! only README.TXT and a file over 4 GiB.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use bootstick::image::udf::Udf;
use bootstick::image::{ByteSource, FileTree, ImageFile, NodeId, NodeKind, Run};

/// Serialises fixture builds within this test binary.
static BUILD: Mutex<()> = Mutex::new(());

fn fixtures_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("fixtures");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A stable hash of a recipe (FNV-1a), so a changed recipe rebuilds.
fn key(recipe: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in recipe.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Returns the cached fixture `name` for `recipe`, building it with `build`
/// (which gets a scratch directory and the output path) when it is missing.
fn fixture(name: &str, recipe: &str, build: impl FnOnce(&Path, &Path)) -> PathBuf {
    let _g = BUILD.lock().unwrap_or_else(|p| p.into_inner());
    let out = fixtures_dir().join(format!("udf-{name}-{}.iso", key(recipe)));
    if !out.exists() {
        let scratch = tempfile::tempdir_in(fixtures_dir()).unwrap();
        let tmp = scratch.path().join("out.iso");
        build(scratch.path(), &tmp);
        std::fs::rename(&tmp, &out).unwrap();
    }
    out
}

/// The source tree of the small fixtures: nested directories, an empty file,
/// Latin-1 and non-Latin-1 names (8- and 16-bit CS0), a directory with enough
/// entries that its identifier descriptors span several blocks, and a file
/// of a few MiB.
const TREE_RECIPE: &str = "tree-v1: README.TXT, sources/install.wim 3MiB+123, sources/empty, \
    boot/efi/microsoft/boot/bcd, Привет/Ünï.txt, many/file-NNN-with-a-long-name.txt x150";

fn make_tree(root: &Path) {
    let w = |p: &str, data: &[u8]| {
        let path = root.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
    };
    w(
        "README.TXT",
        b"This disc contains a \"UDF\" file system and requires an operating system\r\nthat supports the ISO-13346 \"UDF\" file system specification.\r\n",
    );
    std::fs::create_dir_all(root.join("sources")).unwrap();
    common::pseudo_random_file(&root.join("sources/install.wim"), (3 << 20) + 123, 7);
    w("sources/empty", b"");
    w("boot/efi/microsoft/boot/bcd", b"bcd store");
    w("Привет/Ünï.txt", "héllo wörld".as_bytes());
    for i in 0..150 {
        w(
            &format!("many/file-{i:03}-with-a-long-name.txt"),
            format!("file number {i}\n").as_bytes(),
        );
    }
}

/// Every entry under the root as path → (is_dir, size), walked through our reader.
fn walk(udf: &Udf) -> BTreeMap<String, (bool, u64, NodeId)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![(String::new(), udf.root())];
    while let Some((prefix, dir)) = stack.pop() {
        for e in udf.read_dir(dir).unwrap() {
            let path = if prefix.is_empty() {
                e.name.clone()
            } else {
                format!("{prefix}/{}", e.name)
            };
            let is_dir = e.kind == NodeKind::Dir;
            if is_dir {
                stack.push((path.clone(), e.node));
            }
            out.insert(path, (is_dir, e.size, e.node));
        }
    }
    out
}

/// 7-Zip's listing of the image's UDF: path → (is_dir, size).
fn seven_zip_listing(image: &Path, typ: &str) -> BTreeMap<String, (bool, u64)> {
    let text = common::run(
        Command::new("7z")
            .args(["l", "-slt", &format!("-t{typ}")])
            .arg(image),
    );
    let body = text.split_once("----------").map(|x| x.1).unwrap_or("");
    let mut out = BTreeMap::new();
    for block in body.split("\n\n") {
        let mut path = None;
        let mut dir = false;
        let mut size = 0;
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("Path = ") {
                path = Some(v.to_owned());
            } else if let Some(v) = line.strip_prefix("Folder = ") {
                dir = v == "+";
            } else if let Some(v) = line.strip_prefix("Size = ") {
                size = v.parse().unwrap_or(0);
            }
        }
        if let Some(p) = path {
            out.insert(p, (dir, if dir { 0 } else { size }));
        }
    }
    out
}

fn open(path: &Path) -> Udf {
    let src: Arc<dyn ByteSource> = Arc::new(ImageFile::open(path).unwrap());
    Udf::open(src).unwrap().expect("image has a UDF volume")
}

/// Reads `len` bytes at `pos` of a file through its runs.
fn read_file_at(src: &dyn ByteSource, runs: &[Run], mut pos: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    for r in runs {
        if out.len() == len {
            break;
        }
        if pos >= r.len() {
            pos -= r.len();
            continue;
        }
        let take = (r.len() - pos).min((len - out.len()) as u64) as usize;
        match *r {
            Run::Data { offset, .. } => {
                let mut b = vec![0; take];
                src.read_exact_at(offset + pos, &mut b, "test").unwrap();
                out.extend_from_slice(&b);
            }
            Run::Zeros { .. } => out.resize(out.len() + take, 0),
        }
        pos = 0;
    }
    out
}

/// Compares our listing and every file's bytes with 7-Zip's.
fn check_against_7z(image: &Path) {
    let udf = open(image);
    let ours = walk(&udf);
    let theirs = seven_zip_listing(image, "udf");
    let ours_cmp: BTreeMap<_, _> = ours.iter().map(|(k, v)| (k.clone(), (v.0, v.1))).collect();
    assert_eq!(ours_cmp, theirs, "listing differs from 7z's");
    let out = tempfile::tempdir().unwrap();
    common::run(
        Command::new("7z")
            .args(["x", "-tudf", "-y"])
            .arg(format!("-o{}", out.path().display()))
            .arg(image),
    );
    let src = ImageFile::open(image).unwrap();
    for (path, (is_dir, size, node)) in &ours {
        if *is_dir {
            continue;
        }
        let data = udf.file_data(*node).unwrap();
        assert_eq!(data.size, *size, "{path}");
        assert_eq!(data.runs.iter().map(Run::len).sum::<u64>(), *size, "{path}");
        let got = read_file_at(&src, &data.runs, 0, *size as usize);
        let want = std::fs::read(out.path().join(path)).unwrap();
        assert!(got == want, "{path}: contents differ from 7z's extraction");
    }
}

fn tree_image() -> Option<PathBuf> {
    if !common::require_tools("udf tree image", &["genisoimage", "7z"]) {
        return None;
    }
    Some(fixture("tree", TREE_RECIPE, |scratch, out| {
        let src = scratch.join("src");
        make_tree(&src);
        common::run(
            Command::new("genisoimage")
                .args(["-quiet", "-udf", "-iso-level", "3", "-V", "UDF_TREE", "-o"])
                .arg(out)
                .arg(&src),
        );
    }))
}

#[test]
fn genisoimage_udf_tree_matches_7z() {
    let Some(image) = tree_image() else { return };
    let udf = open(&image);
    assert_eq!(udf.label(), "UDF_TREE");
    assert_eq!(udf.nsr(), 2);
    assert_eq!(udf.revision(), 0x0102);
    let list = walk(&udf);
    assert!(list.contains_key("Привет/Ünï.txt"), "{list:?}");
    assert_eq!(list.keys().filter(|k| k.starts_with("many/")).count(), 150);
    check_against_7z(&image);
}

/// Rewrites the ISO 9660 root directory of `image` so it lists only
/// `README.TXT` (plus `.` and `..`), as Windows media (`oscdimg -u2`) do:
/// genisoimage's `-hide` hides files from its UDF tree too, so the bridge is
/// made by editing the finished image. The UDF side is untouched.
fn keep_only_readme_in_iso9660(image: &Path) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(image)
        .unwrap();
    let mut pvd = [0u8; 2048];
    f.read_exact_at(&mut pvd, 16 * 2048).unwrap();
    assert_eq!(
        &pvd[..6],
        b"\x01CD001",
        "no ISO 9660 primary volume descriptor"
    );
    let root = &pvd[156..190];
    let lba = u64::from(u32::from_le_bytes(root[2..6].try_into().unwrap()));
    let len = u64::from(u32::from_le_bytes(root[10..14].try_into().unwrap()));
    let mut dir = vec![0u8; len as usize];
    f.read_exact_at(&mut dir, lba * 2048).unwrap();
    let mut kept = Vec::new();
    let mut pos = 0;
    while pos < dir.len() {
        let rlen = usize::from(dir[pos]);
        if rlen == 0 {
            pos = (pos / 2048 + 1) * 2048;
            continue;
        }
        let rec = &dir[pos..pos + rlen];
        let name = &rec[33..33 + usize::from(rec[32])];
        if name == b"\0" || name == b"\x01" || name.starts_with(b"README.TXT") {
            kept.extend_from_slice(rec);
        }
        pos += rlen;
    }
    assert!(kept.len() > 68, "README.TXT not found in the ISO 9660 root");
    kept.resize(dir.len(), 0);
    f.write_all_at(&kept, lba * 2048).unwrap();
}

fn bridge_image() -> Option<PathBuf> {
    if !common::require_tools("udf bridge image", &["genisoimage", "7z"]) {
        return None;
    }
    Some(fixture(
        "bridge",
        &format!("bridge-v1 {TREE_RECIPE}"),
        |scratch, out| {
            let src = scratch.join("src");
            make_tree(&src);
            common::run(
                Command::new("genisoimage")
                    .args([
                        "-quiet",
                        "-udf",
                        "-iso-level",
                        "3",
                        "-V",
                        "CCCOMA_X64FRE_EN-US_DV9",
                        "-o",
                    ])
                    .arg(out)
                    .arg(&src),
            );
            keep_only_readme_in_iso9660(out);
        },
    ))
}

#[test]
fn windows_like_udf_bridge_is_read_through_udf() {
    let Some(image) = bridge_image() else { return };
    // The ISO 9660 side, as 7-Zip reads it, holds only the README.
    let iso = seven_zip_listing(&image, "iso");
    assert_eq!(iso.keys().collect::<Vec<_>>(), ["README.TXT"], "{iso:?}");
    let udf = open(&image);
    assert_eq!(udf.label(), "CCCOMA_X64FRE_EN-US_DV9");
    let list = walk(&udf);
    assert_eq!(list["sources/install.wim"].1, (3 << 20) + 123);
    check_against_7z(&image);
    // And the bytes are those of the source tree.
    let scratch = tempfile::tempdir().unwrap();
    make_tree(scratch.path());
    let src = ImageFile::open(&image).unwrap();
    for path in [
        "sources/install.wim",
        "boot/efi/microsoft/boot/bcd",
        "Привет/Ünï.txt",
    ] {
        let data = udf.file_data(list[path].2).unwrap();
        let got = read_file_at(&src, &data.runs, 0, data.size as usize);
        assert!(
            got == std::fs::read(scratch.path().join(path)).unwrap(),
            "{path}"
        );
    }
}

/// A 5 GiB file (sparse source, holes punched in the cached image) with
/// markers at its start, past 4 GiB, and at its end. genisoimage writes it
/// with one short allocation descriptor per GiB (UDF extents hold < 1 GiB),
/// so this also covers multi-extent files.
fn big_image() -> Option<PathBuf> {
    if !common::require_tools("udf big image", &["genisoimage", "7z", "fallocate"]) {
        return None;
    }
    Some(fixture(
        "big",
        "big-v1: huge.bin 5GiB HEAD@0 MID!@4.5GiB TAIL@end, small.txt",
        |scratch, out| {
            use std::os::unix::fs::FileExt;
            let src = scratch.join("src");
            std::fs::create_dir_all(&src).unwrap();
            std::fs::write(src.join("small.txt"), b"small\n").unwrap();
            let f = std::fs::File::create(src.join("huge.bin")).unwrap();
            f.set_len(BIG).unwrap();
            f.write_all_at(b"HEAD", 0).unwrap();
            f.write_all_at(b"MID!", BIG_MID).unwrap();
            f.write_all_at(b"TAIL", BIG - 4).unwrap();
            drop(f);
            common::run(
                Command::new("genisoimage")
                    .args([
                        "-quiet",
                        "-udf",
                        "-iso-level",
                        "3",
                        "-allow-limited-size",
                        "-V",
                        "BIG",
                        "-o",
                    ])
                    .arg(out)
                    .arg(&src),
            );
            common::run(Command::new("fallocate").arg("--dig-holes").arg(out));
        },
    ))
}

const BIG: u64 = 5 << 30;
const BIG_MID: u64 = (9 << 30) / 2;

#[test]
fn file_over_4_gib_has_all_its_extents() {
    let Some(image) = big_image() else { return };
    let udf = open(&image);
    let list = walk(&udf);
    let theirs = seven_zip_listing(&image, "udf");
    assert_eq!(theirs["huge.bin"], (false, BIG));
    let (_, size, node) = list["huge.bin"];
    assert_eq!(size, BIG);
    let data = udf.file_data(node).unwrap();
    assert_eq!(data.size, BIG);
    assert_eq!(data.runs.iter().map(Run::len).sum::<u64>(), BIG);
    let src = ImageFile::open(&image).unwrap();
    assert_eq!(read_file_at(&src, &data.runs, 0, 4), b"HEAD");
    assert_eq!(read_file_at(&src, &data.runs, BIG_MID, 4), b"MID!");
    assert_eq!(read_file_at(&src, &data.runs, BIG - 4, 4), b"TAIL");
    assert_eq!(read_file_at(&src, &data.runs, BIG_MID - 8, 8), [0; 8]);
    let small = udf.file_data(list["small.txt"].2).unwrap();
    assert_eq!(read_file_at(&src, &small.runs, 0, 6), b"small\n");
}

#[test]
fn images_without_udf_are_not_udf() {
    let zeros: Arc<dyn ByteSource> = Arc::new(vec![0u8; 1 << 20]);
    assert!(Udf::open(zeros).unwrap().is_none());
    let tiny: Arc<dyn ByteSource> = Arc::new(vec![0u8; 100]);
    assert!(Udf::open(tiny).unwrap().is_none());
    if !common::require_tools("udf plain iso", &["genisoimage"]) {
        return;
    }
    let image = fixture(
        "plain",
        "plain-v1: README.TXT without -udf",
        |scratch, out| {
            let src = scratch.join("src");
            std::fs::create_dir_all(&src).unwrap();
            std::fs::write(src.join("README.TXT"), b"hi").unwrap();
            common::run(
                Command::new("genisoimage")
                    .args(["-quiet", "-o"])
                    .arg(out)
                    .arg(&src),
            );
        },
    );
    let src: Arc<dyn ByteSource> = Arc::new(ImageFile::open(&image).unwrap());
    assert!(Udf::open(src).unwrap().is_none());
}
