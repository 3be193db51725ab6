//! The UDF reader against images built by genisoimage and read back by 7-Zip
//! (p7zip-full reads UDF independently of us): listings, sizes and contents
//! must agree, including a Windows-like "UDF bridge" whose ISO 9660 side holds
//! only README.TXT and a file over 4 GiB.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use bootstick::image::udf::Udf;
use bootstick::image::{ByteSource, FileTree, ImageFile, NodeId, NodeKind, Run};

/// Returns the cached fixture `name` for `recipe`, building it with `build`
/// (which gets a scratch directory and the output path) when it is missing.
/// Keyed by the recipe and by this file's source (`common::fixtures`), so a
/// changed builder rebuilds.
fn fixture(name: &str, recipe: &str, build: impl FnOnce(&Path, &Path)) -> PathBuf {
    common::fixtures::cached(&format!("udf-{name}"), "iso", recipe, |out| {
        let scratch = tempfile::tempdir_in(common::fixtures::fixture_dir()).unwrap();
        build(scratch.path(), out);
    })
}

/// The source tree of the small fixtures: nested directories, an empty file,
/// Latin-1 and non-Latin-1 names (8- and 16-bit CS0), a directory with enough
/// entries that its identifier descriptors span several blocks, and a file
/// of a few MiB.
const TREE_RECIPE: &str = "README.TXT, sources/install.wim 3MiB+123, sources/empty, \
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
    assert!(Udf::probe(&ImageFile::open(&image).unwrap()).unwrap());
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
        &format!("bridge {TREE_RECIPE}"),
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
    assert!(!Udf::probe(src.as_ref()).unwrap());
    assert!(Udf::open(src).unwrap().is_none());
}

// ---- Hand-built images: the forms genisoimage never writes, and hostile ones.

use bootstick_testkit::udf_build;

use bootstick::image::Error;
use udf_build::{build, link, Ad, Node, Opts, BS};

/// Deterministic bytes.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8)
        .collect()
}

fn sample(o: &Opts) -> Vec<(String, Node)> {
    // Embedded data must fit in the file entry's block.
    let big = if o.ad == Ad::Embedded {
        1500
    } else {
        5 * BS + 100
    };
    let n = |s: &str| s.to_owned();
    vec![
        (n("README.TXT"), Node::File(b"read me\r\n".to_vec())),
        (n("autorun.inf"), Node::Hidden(b"[autorun]\r\n".to_vec())),
        (n("gone.txt"), Node::Deleted(b"deleted".to_vec())),
        (
            n("sources"),
            Node::Dir(vec![
                (n("install.wim"), Node::File(pattern(big, 1))),
                (n("empty"), Node::File(Vec::new())),
                (
                    n("deeper"),
                    Node::Dir(vec![(n("boot.wim"), Node::File(pattern(700, 2)))]),
                ),
            ]),
        ),
        (
            n("Привет"),
            Node::Dir(vec![(n("Ünï.txt"), Node::File(b"x".to_vec()))]),
        ),
        (
            n("link-rel"),
            Node::Link(link(&[(3, ""), (5, "sources"), (5, "install.wim")])),
        ),
        (
            n("link-abs"),
            Node::Link(link(&[(2, ""), (5, "etc"), (5, "passwd")])),
        ),
        (n("holes.bin"), Node::Unrecorded(3 * BS as u64 + 5)),
    ]
}

/// Walks an image through our reader: path → (kind, size, contents).
fn walk_all(
    udf: &Udf,
    src: &dyn ByteSource,
) -> Result<BTreeMap<String, (NodeKind, Vec<u8>)>, Error> {
    let mut out = BTreeMap::new();
    let mut stack = vec![(String::new(), udf.root())];
    while let Some((prefix, dir)) = stack.pop() {
        for e in udf.read_dir(dir)? {
            let path = format!("{prefix}/{}", e.name);
            let data = match e.kind {
                NodeKind::Dir => {
                    stack.push((path.clone(), e.node));
                    Vec::new()
                }
                NodeKind::File => {
                    let d = udf.file_data(e.node)?;
                    assert_eq!(d.runs.iter().map(Run::len).sum::<u64>(), d.size);
                    assert_eq!(d.size, e.size);
                    read_file_at(src, &d.runs, 0, d.size.min(1 << 20) as usize)
                }
                NodeKind::Symlink(_) => Vec::new(),
            };
            out.insert(path, (e.kind, data));
        }
    }
    Ok(out)
}

fn open_mem(img: Vec<u8>) -> Result<Option<Udf>, Error> {
    Udf::open(Arc::new(img))
}

#[test]
fn hand_built_images_in_every_form_read_back() {
    let mut forms = Vec::new();
    for efe in [false, true] {
        for ad in [Ad::Short, Ad::Long, Ad::Ext, Ad::Embedded] {
            for metadata in [false, true] {
                for (extent_blocks, aed) in [(1 << 20, false), (2, false), (1, true)] {
                    forms.push(Opts {
                        efe,
                        ad,
                        metadata,
                        extent_blocks,
                        aed,
                        name16: extent_blocks == 2,
                        fid_iu: if aed { 32 } else { 0 },
                        ea: if extent_blocks == 2 { 48 } else { 0 },
                        ..Opts::default()
                    });
                }
            }
        }
    }
    for o in forms {
        let b = build(o.clone(), "HANDMADE", &sample(&o));
        let img = b.img.clone();
        let udf = open_mem(img.clone())
            .unwrap()
            .unwrap_or_else(|| panic!("{o:?}: no UDF"));
        assert_eq!(udf.label(), "HANDMADE");
        assert_eq!(udf.revision(), if o.metadata { 0x0250 } else { 0x0201 });
        let got = walk_all(&udf, &img).unwrap_or_else(|e| panic!("{o:?}: {e}"));
        let big = if o.ad == Ad::Embedded {
            1500
        } else {
            5 * BS + 100
        };
        let want: BTreeMap<String, (NodeKind, Vec<u8>)> = [
            ("/README.TXT", NodeKind::File, b"read me\r\n".to_vec()),
            ("/autorun.inf", NodeKind::File, b"[autorun]\r\n".to_vec()),
            ("/sources", NodeKind::Dir, vec![]),
            ("/sources/install.wim", NodeKind::File, pattern(big, 1)),
            ("/sources/empty", NodeKind::File, vec![]),
            ("/sources/deeper", NodeKind::Dir, vec![]),
            ("/sources/deeper/boot.wim", NodeKind::File, pattern(700, 2)),
            ("/Привет", NodeKind::Dir, vec![]),
            ("/Привет/Ünï.txt", NodeKind::File, b"x".to_vec()),
            (
                "/link-rel",
                NodeKind::Symlink("../sources/install.wim".into()),
                vec![],
            ),
            ("/link-abs", NodeKind::Symlink("/etc/passwd".into()), vec![]),
            ("/holes.bin", NodeKind::File, vec![0; 3 * BS + 5]),
        ]
        .into_iter()
        .map(|(p, k, d)| (p.to_owned(), (k, d)))
        .collect();
        assert_eq!(got, want, "{o:?}");
        // The unrecorded extent reads as zeros without touching the image.
        let holes = udf
            .read_dir(udf.root())
            .unwrap()
            .into_iter()
            .find(|e| e.name == "holes.bin")
            .unwrap();
        let data = udf.file_data(holes.node).unwrap();
        assert_eq!(
            data.runs,
            [Run::Zeros {
                len: 3 * BS as u64 + 5
            }],
            "{o:?}"
        );
    }
}

/// 7-Zip agrees with the hand-built images in every form it reads (it
/// refuses extended allocation descriptors, continuation extents, symbolic
/// links, unrecorded extents
/// and a metadata file in more than one extent), listing and contents.
#[test]
fn hand_built_images_match_7z() {
    if !common::require_tools("udf hand-built vs 7z", &["7z"]) {
        return;
    }
    let d = Opts::default;
    for o in [
        d(),
        Opts {
            ad: Ad::Long,
            efe: true,
            fid_iu: 32,
            ea: 48,
            ..d()
        },
        Opts {
            extent_blocks: 2,
            name16: true,
            ..d()
        },
        Opts {
            extent_blocks: 1,
            ad: Ad::Long,
            ..d()
        },
        Opts {
            ad: Ad::Embedded,
            efe: true,
            ..d()
        },
        Opts {
            metadata: true,
            meta_split: false,
            ad: Ad::Long,
            ..d()
        },
        Opts {
            metadata: true,
            meta_split: false,
            efe: true,
            ad: Ad::Embedded,
            ..d()
        },
    ] {
        let mut tree = sample(&o);
        tree.retain(|(n, _)| !n.starts_with("link") && n != "holes.bin");
        let b = build(o.clone(), "HANDMADE", &tree);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hand.iso");
        std::fs::write(&path, &b.img).unwrap();
        eprintln!("form {o:?}");
        check_against_7z(&path);
    }
}

/// Image byte offset of the ICB behind `node` in a hand-built image.
fn icb_offset(b: &udf_build::Builder, node: NodeId) -> usize {
    b.offset((node.0 >> 32) as u16, node.0 as u32)
}

/// Walks everything, returning the first error.
fn walk_err(img: Vec<u8>) -> Error {
    let udf = match open_mem(img.clone()) {
        Err(e) => return e,
        Ok(u) => u.expect("UDF volume"),
    };
    walk_all(&udf, &img).expect_err("walk should fail")
}

/// Re-seals a descriptor's tag after editing it (new CRC and checksum).
fn reseal(img: &mut [u8], at: usize, len: usize) {
    let id = u16::from_le_bytes([img[at], img[at + 1]]);
    let loc = u32::from_le_bytes(img[at + 12..at + 16].try_into().unwrap());
    udf_build::put_tag(&mut img[at..at + len], id, loc);
}

fn find(udf: &Udf, dir: NodeId, name: &str) -> NodeId {
    udf.read_dir(dir)
        .unwrap()
        .into_iter()
        .find(|e| e.name == name)
        .unwrap_or_else(|| panic!("{name} not found"))
        .node
}

#[test]
fn continuation_loop_is_a_typed_loop_error() {
    let o = Opts {
        extent_blocks: 1,
        aed: true,
        aed_loop: true,
        ad: Ad::Long,
        ..Opts::default()
    };
    // A file of 3 blocks + 1 byte: 4 descriptors, the last three in the
    // allocation extent descriptor, which then continues into itself; the
    // FE claims more bytes than the descriptors hold so the reader follows it.
    let tree = vec![("f".to_owned(), Node::File(pattern(3 * BS + 1, 3)))];
    let b = build(o, "LOOP", &tree);
    let mut img = b.img.clone();
    let udf = open_mem(img.clone()).unwrap().unwrap();
    let f = find(&udf, udf.root(), "f");
    let fe = icb_offset(&b, f);
    img[fe + 56..fe + 64].copy_from_slice(&(10 * BS as u64).to_le_bytes());
    reseal(&mut img, fe, 176 + 32);
    let udf = open_mem(img).unwrap().unwrap();
    let err = udf.file_data(f).unwrap_err();
    assert!(matches!(err, Error::Loop { .. }), "{err}");
}

#[test]
fn directory_pointing_at_itself_or_an_ancestor_is_a_loop() {
    let n = |s: &str| s.to_owned();
    for up in [0, 1, 2] {
        let tree = vec![(
            n("a"),
            Node::Dir(vec![(
                n("b"),
                Node::Dir(vec![(n("back"), Node::Ancestor(up))]),
            )]),
        )];
        let b = build(Opts::default(), "LOOP", &tree);
        let err = walk_err(b.img);
        assert!(matches!(err, Error::Loop { .. }), "up={up}: {err}");
    }
}

#[test]
fn absurd_nesting_is_too_deep() {
    let mut node = Node::File(b"bottom".to_vec());
    for i in 0..70 {
        node = Node::Dir(vec![(format!("d{i}"), node)]);
    }
    let o = Opts {
        ad: Ad::Embedded,
        ..Opts::default()
    };
    let b = build(o, "DEEP", &[("top".to_owned(), node)]);
    let err = walk_err(b.img);
    assert!(matches!(err, Error::TooDeep { limit: 64, .. }), "{err}");
}

#[test]
fn broken_descriptors_are_typed_errors_with_offsets() {
    let tree = vec![("f".to_owned(), Node::File(pattern(3000, 9)))];
    let b = build(Opts::default(), "BROKEN", &tree);
    let udf = open_mem(b.img.clone()).unwrap().unwrap();
    let f = find(&udf, udf.root(), "f");
    let fe = icb_offset(&b, f);
    let fe_len = 176 + 8;
    let malformed_at = |img: Vec<u8>, what: &str| {
        let udf = open_mem(img).unwrap().unwrap();
        match udf.file_data(f) {
            Err(Error::Malformed { offset, detail, .. }) => {
                assert!(detail.contains(what), "{detail}");
                offset
            }
            other => panic!("{what}: {other:?}"),
        }
    };
    // Tag checksum.
    let mut img = b.img.clone();
    img[fe + 4] ^= 1;
    assert_eq!(malformed_at(img, "checksum"), fe as u64);
    // Tag location.
    let mut img = b.img.clone();
    img[fe + 12] ^= 1;
    reseal(&mut img, fe, fe_len);
    assert_eq!(malformed_at(img, "location"), fe as u64);
    // CRC.
    let mut img = b.img.clone();
    img[fe + 40] ^= 0xff;
    assert_eq!(malformed_at(img, "CRC"), fe as u64);
    // An extent beyond the partition.
    let mut img = b.img.clone();
    img[fe + 176 + 4..fe + 176 + 8].copy_from_slice(&(udf_build::PART_BLOCKS - 1).to_le_bytes());
    reseal(&mut img, fe, fe_len);
    let would_be = (udf_build::PART_START + udf_build::PART_BLOCKS - 1) as u64 * BS as u64;
    assert_eq!(malformed_at(img, "past the partition"), would_be);
    // A size the descriptors do not cover.
    let mut img = b.img.clone();
    img[fe + 56..fe + 64].copy_from_slice(&(1u64 << 40).to_le_bytes());
    reseal(&mut img, fe, fe_len);
    malformed_at(img, "cover only");
    // An unknown allocation descriptor type.
    let mut img = b.img.clone();
    img[fe + 34] = 5;
    reseal(&mut img, fe, fe_len);
    malformed_at(img, "allocation descriptor type");
    // Another ICB strategy.
    let mut img = b.img.clone();
    img[fe + 20] = 1;
    reseal(&mut img, fe, fe_len);
    malformed_at(img, "strategy");
}

#[test]
fn reserve_sequence_and_metadata_mirror_stand_in_for_broken_ones() {
    let o = Opts {
        metadata: true,
        ad: Ad::Long,
        ..Opts::default()
    };
    let b = build(o.clone(), "RESERVE", &sample(&o));
    let lvd = (udf_build::MAIN_VDS as usize + 2) * BS;
    // Main LVD broken: the reserve sequence is used.
    let mut img = b.img.clone();
    img[lvd + 4] ^= 0x55;
    let udf = open_mem(img.clone()).unwrap().unwrap();
    assert_eq!(udf.label(), "RESERVE");
    walk_all(&udf, &img).unwrap();
    // Both broken: a typed error naming the main sequence's offset.
    let rlvd = (udf_build::RESERVE_VDS as usize + 2) * BS;
    img[rlvd + 4] ^= 0x55;
    match open_mem(img) {
        Err(Error::Malformed { offset, .. }) => assert_eq!(offset, lvd as u64),
        other => panic!("{other:?}"),
    }
    // Metadata file broken: its mirror is used.
    let mut img = b.img.clone();
    let meta = b.offset(0, 1);
    img[meta + 4] ^= 0x55;
    let udf = open_mem(img.clone()).unwrap().unwrap();
    assert_eq!(walk_all(&udf, &img).unwrap().len(), 12);
    // No anchor anywhere: an error, not "no UDF".
    let mut img = b.img.clone();
    img[256 * BS + 4] ^= 1;
    let n = img.len() - BS;
    img[n + 4] ^= 1;
    assert!(matches!(open_mem(img), Err(Error::Malformed { .. })));
}

mod mutations {
    use super::*;
    use proptest::prelude::*;

    fn base(form: u8) -> Vec<u8> {
        let o = match form % 4 {
            0 => Opts::default(),
            1 => Opts {
                metadata: true,
                efe: true,
                ad: Ad::Long,
                extent_blocks: 1,
                aed: true,
                ..Opts::default()
            },
            2 => Opts {
                ad: Ad::Ext,
                extent_blocks: 2,
                name16: true,
                ..Opts::default()
            },
            _ => Opts {
                ad: Ad::Embedded,
                metadata: true,
                ..Opts::default()
            },
        };
        build(o.clone(), "FUZZ", &sample(&o)).img
    }

    /// Offsets (4-byte aligned, where UDF puts every descriptor and file
    /// identifier) of the sealed tags in `img`: tag checksum and descriptor
    /// CRC both right.
    fn sealed_tags(img: &[u8]) -> Vec<usize> {
        (0..img.len().saturating_sub(16))
            .step_by(4)
            .filter(|&at| {
                let t = &img[at..at + 16];
                let id = u16::from_le_bytes([t[0], t[1]]);
                let sum = t
                    .iter()
                    .enumerate()
                    .filter(|&(i, _)| i != 4)
                    .fold(0u8, |a, (_, &b)| a.wrapping_add(b));
                let len = usize::from(u16::from_le_bytes([t[10], t[11]]));
                (1..=266).contains(&id)
                    && sum == t[4]
                    && at + 16 + len <= img.len()
                    && udf_build::crc(&img[at + 16..at + 16 + len])
                        == u16::from_le_bytes([t[8], t[9]])
            })
            .collect()
    }

    /// Re-seals the tag at `at` as it now reads (its CRC length, which a
    /// mutation may have changed, and its other fields are kept): new CRC,
    /// new checksum. A tag whose CRC range no longer fits is left as is.
    fn reseal_in_place(img: &mut [u8], at: usize) {
        let len = usize::from(u16::from_le_bytes([img[at + 10], img[at + 11]]));
        if at + 16 + len > img.len() {
            return;
        }
        let c = udf_build::crc(&img[at + 16..at + 16 + len]);
        img[at + 8..at + 10].copy_from_slice(&c.to_le_bytes());
        img[at + 4] = 0;
        img[at + 4] = img[at..at + 16].iter().fold(0u8, |a, &b| a.wrapping_add(b));
    }

    /// `base(form)` with `edits` applied at mutation targets; with `reseal`,
    /// every sealed tag whose descriptor an edit touched is sealed again,
    /// so the mutant gets past the tag checks to the fields behind them.
    fn mutant(form: u8, edits: &[(usize, u8)], reseal: bool) -> Vec<u8> {
        let mut img = base(form);
        let tags = if reseal {
            sealed_tags(&img)
        } else {
            Vec::new()
        };
        let lens: Vec<usize> = tags
            .iter()
            .map(|&at| 16 + usize::from(u16::from_le_bytes([img[at + 10], img[at + 11]])))
            .collect();
        let mut touched = Vec::new();
        for &(at, v) in edits {
            let i = udf_build::mutation_target(at);
            img[i] = v;
            touched.push(i);
        }
        for (&at, &len) in tags.iter().zip(&lens) {
            if touched.iter().any(|&i| (at..at + len).contains(&i)) {
                reseal_in_place(&mut img, at);
            }
        }
        img
    }

    /// True when opening and walking `img` stops at a tag check (checksum
    /// or CRC): the mutant never reached the fields behind the tag.
    fn stopped_at_a_tag(img: Vec<u8>) -> bool {
        let stopped = |e: &Error| {
            let m = e.to_string();
            m.contains("tag checksum is wrong") || m.contains("CRC")
        };
        match open_mem(img.clone()) {
            Err(e) => stopped(&e),
            Ok(None) => false,
            Ok(Some(udf)) => walk_all(&udf, &img).err().is_some_and(|e| stopped(&e)),
        }
    }

    /// Resealing is what lets mutants reach the parsing behind the tags:
    /// over the same 100 seeded mutants (4 to 11 edits each, as in the
    /// proptest), far fewer resealed ones stop at a
    /// tag check than unsealed ones. Without it the proptest below mostly
    /// tests the tag checksum.
    #[test]
    fn resealed_mutants_get_past_the_tag_checks() {
        let mut rng = 0x2026_1207_u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let (mut stopped_sealed, mut stopped_raw) = (0, 0);
        for n in 0..100 {
            let edits: Vec<(usize, u8)> = (0..4 + next() % 8)
                .map(|_| (next() as usize, next() as u8))
                .collect();
            let form = (n % 4) as u8;
            stopped_sealed += usize::from(stopped_at_a_tag(mutant(form, &edits, true)));
            stopped_raw += usize::from(stopped_at_a_tag(mutant(form, &edits, false)));
        }
        eprintln!(
            "of 100 mutants, stopped at a tag check: {stopped_sealed} resealed, {stopped_raw} not"
        );
        assert!(
            stopped_sealed * 4 <= stopped_raw && stopped_raw >= 10,
            "resealed mutants stopping at a tag check: {stopped_sealed}; unsealed: {stopped_raw}"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
        /// Any byte changes in the structures, with the touched tags resealed
        /// or not: the reader answers (data or a typed error) and never
        /// panics.
        #[test]
        fn mutated_images_never_panic(
            form in 0u8..4,
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..12),
            reseal: bool,
        ) {
            let img = mutant(form, &edits, reseal);
            if let Ok(Some(udf)) = open_mem(img.clone()) {
                let _ = walk_all(&udf, &img);
            }
        }
    }
}

/// mkudffs (udftools) writes what genisoimage cannot: NSR03, UDF 2.01,
/// extended file entries, and 512- and 4096-byte blocks. Its images are empty
/// (populating one needs a kernel UDF driver), so the oracle is udfinfo's
/// label and counts. The metadata partition (UDF 2.50, Windows media) has no
/// outside builder here: mkudffs 2.3 refuses revisions above 2.01 for `hd`
/// media and makes a VAT (write-once) volume for `bdr`, a form no installer
/// image uses; that form is checked against the project's builder only.
#[test]
fn mkudffs_volumes_in_every_block_size() {
    if !common::require_tools("udf mkudffs", &["mkudffs", "udfinfo"]) {
        return;
    }
    for bs in [512u64, 2048, 4096] {
        for ad in ["inicb", "short", "long"] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("mk.img");
            std::fs::File::create(&path)
                .unwrap()
                .set_len(16 << 20)
                .unwrap();
            let label = format!("MK{bs}{ad}");
            common::run(
                Command::new("mkudffs")
                    .args([
                        "--media-type=hd",
                        &format!("--blocksize={bs}"),
                        &format!("--ad={ad}"),
                    ])
                    .arg(format!("--label={label}"))
                    .arg(&path),
            );
            let info = common::run(Command::new("udfinfo").arg(&path));
            let field = |k: &str| {
                info.lines()
                    .find_map(|l| l.strip_prefix(&format!("{k}=")))
                    .unwrap_or_else(|| panic!("udfinfo has no {k}: {info}"))
                    .to_owned()
            };
            let udf = open(&path);
            assert_eq!(udf.label(), field("lvid"));
            assert_eq!(udf.label(), label);
            assert_eq!(udf.block_size(), bs);
            assert_eq!(udf.block_size().to_string(), field("blocksize"));
            assert_eq!(
                format!("{}.{:02x}", udf.revision() >> 8, udf.revision() & 0xff),
                field("udfrev")
            );
            assert_eq!(udf.nsr(), 3);
            assert_eq!(field("numfiles"), "0");
            assert!(udf.read_dir(udf.root()).unwrap().is_empty());
        }
    }
}

/// Through the project's entry point: `open_tree` picks UDF on the bridge
/// (whose ISO 9660 side is only a README), `tree::walk` sees every file and
/// `FileReader` streams the same bytes as the source tree.
#[test]
fn open_tree_prefers_udf_on_the_bridge() {
    use bootstick::image::{open, tree, FsKind};
    use std::io::Read;
    let Some(image) = bridge_image() else { return };
    let src: Arc<dyn ByteSource> = Arc::new(ImageFile::open(&image).unwrap());
    let kinds = open::available(&src).unwrap();
    assert_eq!(kinds.first(), Some(&FsKind::Udf), "{kinds:?}");
    let t = open::open_tree(src.clone()).unwrap();
    assert_eq!(t.kind(), FsKind::Udf);
    let scratch = tempfile::tempdir().unwrap();
    make_tree(scratch.path());
    let mut files = 0;
    tree::walk::<Error>(t.as_ref(), t.root(), |v| {
        if v.entry.kind == NodeKind::File {
            let mut got = Vec::new();
            tree::FileReader::new(src.clone(), t.file_data(v.entry.node)?)
                .read_to_end(&mut got)
                .unwrap();
            assert!(
                got == std::fs::read(scratch.path().join(v.path)).unwrap(),
                "{}",
                v.path
            );
            files += 1;
        }
        Ok(true)
    })
    .unwrap();
    assert_eq!(files, 155);
    let wim = tree::lookup(t.as_ref(), "/sources/install.wim").unwrap();
    assert_eq!(wim.size, (3 << 20) + 123);
    // The ISO 9660 view of the same image is the README alone.
    let iso = open::open_tree_as(src, FsKind::Iso9660).unwrap();
    let names: Vec<_> = iso
        .read_dir(iso.root())
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, ["README.TXT"]);
}

/// The generic walker also refuses a hand-built UDF directory loop.
#[test]
fn tree_walk_refuses_udf_loops() {
    use bootstick::image::tree;
    let n = |s: &str| s.to_owned();
    let t = vec![(n("a"), Node::Dir(vec![(n("up"), Node::Ancestor(1))]))];
    let b = build(Opts::default(), "LOOP", &t);
    let udf = open_mem(b.img).unwrap().unwrap();
    let err = tree::walk::<Error>(&udf, udf.root(), |_| Ok(true)).unwrap_err();
    assert!(matches!(err, Error::Loop { .. }), "{err}");
}

/// `bootstick ls -R --json` and `bootstick extract` read the bridge through
/// UDF: the listing equals 7-Zip's and the extracted tree equals `7z x`'s
/// (`diff -r`).
#[test]
fn cli_ls_and_extract_read_the_bridge_through_udf() {
    let Some(image) = bridge_image() else { return };
    if !common::require_tools("udf cli", &["diff"]) {
        return;
    }
    let out = common::run(common::bootstick().args(["ls", "-R", "--json"]).arg(&image));
    let v = common::json_result(out.as_bytes());
    assert_eq!(v["fs"], "udf");
    assert_eq!(v["label"], "CCCOMA_X64FRE_EN-US_DV9");
    let ours: BTreeMap<String, (bool, u64)> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["path"].as_str().unwrap().to_owned(),
                (e["type"] == "dir", e["size"].as_u64().unwrap()),
            )
        })
        .collect();
    assert_eq!(ours, seven_zip_listing(&image, "udf"));
    let dir = tempfile::tempdir().unwrap();
    let ours = dir.path().join("ours");
    let theirs = dir.path().join("theirs");
    common::run(common::bootstick().arg("extract").arg(&image).arg(&ours));
    common::run(
        Command::new("7z")
            .args(["x", "-tudf", "-y"])
            .arg(format!("-o{}", theirs.display()))
            .arg(&image),
    );
    common::run(Command::new("diff").arg("-r").arg(&ours).arg(&theirs));
}

/// A looping hand-built image makes `bootstick ls -R` fail with exit 3 and
/// say so, instead of hanging or crashing.
#[test]
fn cli_ls_reports_a_udf_loop() {
    let n = |s: &str| s.to_owned();
    let t = vec![(n("a"), Node::Dir(vec![(n("up"), Node::Ancestor(1))]))];
    let b = build(Opts::default(), "LOOP", &t);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("loop.iso");
    std::fs::write(&path, &b.img).unwrap();
    let out = common::bootstick()
        .args(["ls", "-R"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("loops"), "{err}");
}

/// Points the anchor at `sector` (2048-byte sectors) at main and reserve
/// sequences far past the image's end, with a tag whose checksum and CRC
/// are right: a damaged anchor that still reads as one.
fn misdirect_anchor(img: &mut [u8], sector: usize) {
    let s = &mut img[sector * 2048..sector * 2048 + 512];
    assert_eq!(u16::from_le_bytes([s[0], s[1]]), 2, "an anchor at {sector}");
    s[20..24].copy_from_slice(&0x00F0_0000u32.to_le_bytes());
    s[28..32].copy_from_slice(&0x00F0_0010u32.to_le_bytes());
    let n = usize::from(u16::from_le_bytes([s[10], s[11]]));
    let crc = udf_build::crc(&s[16..16 + n]);
    s[8..10].copy_from_slice(&crc.to_le_bytes());
    s[4] = 0;
    s[4] = s[..16].iter().fold(0u8, |a, &b| a.wrapping_add(b));
}

/// Issue 10, item 17: a damaged UDF anchor. With the anchor at sector 256
/// misdirected, the other anchor (the last sector) still leads to the
/// volume, so `ls` reads UDF; with every anchor misdirected, `ls`,
/// `extract` and `inspect` read the intact Rock Ridge tree and warn naming
/// the UDF problem (not "truncated download?": the image is whole). Before,
/// both images failed `ls` with exit 3 and "truncated download?".
#[test]
fn damaged_udf_anchor_falls_back_to_another_anchor_then_to_rock_ridge() {
    if !common::require_tools("udf damaged anchor", &["genisoimage"]) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    make_tree(&src);
    let image = work.path().join("bridge.iso");
    common::run(
        Command::new("genisoimage")
            .args(["-quiet", "-udf", "-R", "-J", "-V", "UDF_RR", "-o"])
            .arg(&image)
            .arg(&src),
    );
    let mut img = std::fs::read(&image).unwrap();
    let last = img.len() / 2048 - 1;
    let ls = |path: &Path| {
        let out = common::bootstick()
            .args(["ls", "--json", "-R"])
            .arg(path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(0), "{err}");
        (common::json_result(&out.stdout), err)
    };

    misdirect_anchor(&mut img, 256);
    let one = work.path().join("one-anchor-damaged.iso");
    std::fs::write(&one, &img).unwrap();
    let (v, err) = ls(&one);
    assert_eq!(v["fs"], "udf", "{v:#}");
    assert!(err.is_empty(), "{err}");

    misdirect_anchor(&mut img, last);
    let all = work.path().join("all-anchors-damaged.iso");
    std::fs::write(&all, &img).unwrap();
    let (v, err) = ls(&all);
    assert_eq!(v["fs"], "rock-ridge", "{v:#}");
    assert!(
        err.contains("UDF file system cannot be read")
            && err.contains("anchor")
            && err.contains("Rock Ridge tree instead"),
        "{err}"
    );
    assert!(!err.contains("truncated download"), "{err}");
    let paths: Vec<&str> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert!(paths.contains(&"sources/install.wim"), "{paths:?}");

    let out_dir = work.path().join("out");
    let out = common::bootstick()
        .arg("extract")
        .arg(&all)
        .arg(&out_dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        std::fs::read(out_dir.join("sources/install.wim")).unwrap(),
        std::fs::read(src.join("sources/install.wim")).unwrap()
    );

    let out = common::run(common::bootstick().args(["inspect", "--json"]).arg(&all));
    let v = common::json_result(out.as_bytes());
    assert_eq!(v["tree"], "rock-ridge", "{v:#}");
    assert!(v.get("truncated").is_none(), "{v:#}");
    let problems = v["problems"].as_array().unwrap();
    assert!(
        problems.iter().any(|p| p
            .as_str()
            .unwrap()
            .contains("UDF file system cannot be read")),
        "{problems:?}"
    );
}

/// `image::extent::volume`, what a disc backup reads up to, on images
/// followed by zero "run-out" sectors (what a drive reports past a burned
/// session): 0, 256 and 512 extra 2048-byte sectors. The volume is exactly
/// the image as it was built: genisoimage's UDF bridge (ISO 9660 side
/// checked against util-linux `isosize`) and mkudffs volumes in 512-, 2048-
/// and 4096-byte blocks (UDF only; their closing anchor is the last sector,
/// found past the padding by the trailing-anchor search when the padding
/// hides it from the N−1/N−257 positions).
#[test]
fn volume_extent_ends_where_the_image_was_built_not_at_padding() {
    let t = "volume_extent_ends_where_the_image_was_built_not_at_padding";
    if !common::require_tools(t, &["mkudffs", "isosize"]) {
        return;
    }
    let Some(bridge) = tree_image() else { return };
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mut images = vec![(bridge.clone(), true)];
    for bs in [512u64, 2048, 4096] {
        let path = dir.path().join(format!("mk{bs}.img"));
        std::fs::File::create(&path)
            .unwrap()
            .set_len(12 << 20)
            .unwrap();
        common::run(
            Command::new("mkudffs")
                .args(["--media-type=hd", &format!("--blocksize={bs}")])
                .arg(&path),
        );
        images.push((path, false));
    }
    for (image, iso) in images {
        let built = std::fs::read(&image).unwrap();
        for pad in [0usize, 256, 512] {
            let mut padded = built.clone();
            padded.resize(built.len() + pad * 2048, 0);
            let src: Arc<dyn ByteSource> = Arc::new(padded);
            let v = bootstick::image::extent::volume(&src)
                .unwrap()
                .unwrap_or_else(|| panic!("{}: no volume", image.display()));
            assert_eq!(
                v.bytes,
                built.len() as u64,
                "{} + {pad} sectors: {v:?}",
                image.display()
            );
            if iso {
                let sectors: u64 = common::run(Command::new("isosize").args(["-x"]).arg(&image))
                    .split(|c: char| !c.is_ascii_digit())
                    .find(|w| !w.is_empty())
                    .unwrap()
                    .parse()
                    .unwrap();
                assert_eq!(v.iso9660_bytes, Some(sectors * 2048), "{v:?}");
            } else {
                assert_eq!(v.iso9660_bytes, None, "{v:?}");
            }
        }
    }
    // Neither file system: nothing to go by.
    let zeros: Arc<dyn ByteSource> = Arc::new(vec![0u8; 1 << 20]);
    assert_eq!(bootstick::image::extent::volume(&zeros).unwrap(), None);
}
