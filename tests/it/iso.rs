//! The ISO 9660 / Joliet / Rock Ridge reader against tools we did not write:
//! fixture images are mastered by genisoimage and xorriso from a tree we
//! create, and our listings and file bytes are compared with `xorriso -find`
//! (Rock Ridge), `7z l -slt` / `7z x` (Joliet, plain ISO 9660) and the source
//! files themselves. Hostile variants (truncated, self-referencing, absurd
//! sizes) must give typed errors, never a panic.

use crate::common;
use bootstick_testkit::iso_fuzz;

use bootstick::image::open::{open_tree, open_tree_as};
use bootstick::image::tree::{walk, FileReader};
use bootstick::image::{ByteSource, Error, FileTree, FsKind, ImageFile, NodeKind, Run};
use common::fixtures::cached;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

/// A 200-byte name: longer than fits in a directory record next to the other
/// Rock Ridge entries, so `NM` continues in a continuation area.
fn long_name() -> String {
    format!("{}.txt", "long-name-".repeat(19) + "0123456")
}

/// A symlink target long enough to need several `SL` entries.
fn long_target() -> String {
    (0..20)
        .map(|i| format!("component{i:02}"))
        .collect::<Vec<_>>()
        .join("/")
}

/// The source tree every small fixture is mastered from.
fn make_tree(root: &Path) {
    use std::fs;
    use std::os::unix::fs::symlink;
    let _ = fs::remove_dir_all(root);
    fs::create_dir_all(root.join("data")).unwrap();
    fs::write(root.join("README"), "readme\n").unwrap();
    common::pseudo_random_file(&root.join("data/random-100k.bin"), 100_000, 1);
    common::pseudo_random_file(&root.join("data/exact-2048.bin"), 2048, 2);
    common::pseudo_random_file(&root.join("data/one"), 1, 3);
    fs::write(root.join("data/empty.txt"), "").unwrap();
    fs::write(root.join("ünï cødé.txt"), "unicode\n").unwrap();
    fs::write(root.join(long_name()), "long\n").unwrap();
    fs::write(root.join("Mixed Case Name.TXT"), "mixed\n").unwrap();
    fs::write(root.join(".hidden"), "hidden\n").unwrap();
    fs::write(root.join("multi.dots.tar.gz"), "dots\n").unwrap();
    fs::create_dir_all(root.join("empty-dir")).unwrap();
    fs::create_dir_all(root.join("sub")).unwrap();
    fs::write(root.join("sub/inner.txt"), "inner\n").unwrap();
    symlink("../README", root.join("sub/link")).unwrap();
    symlink("/etc/passwd", root.join("abs-link")).unwrap();
    symlink("data", root.join("dir-link")).unwrap();
    symlink(long_target(), root.join("long-link")).unwrap();
    // Twelve levels: deeper than ISO 9660's eight, so genisoimage -R
    // relocates the bottom into rr_moved (CL/RE/PL).
    let mut deep = root.join("deep");
    for i in 1..=12 {
        deep.push(format!("level{i}"));
    }
    fs::create_dir_all(&deep).unwrap();
    fs::write(deep.join("leaf.txt"), "deep leaf\n").unwrap();
    fs::write(root.join("deep/level1/shallow.txt"), "shallow\n").unwrap();
}

/// The source tree, built once (cached like the images: keyed by this
/// file's source, so a change to `make_tree` rebuilds it).
fn source_tree() -> PathBuf {
    cached("iso-source", "d", "make_tree", make_tree)
}

/// Masters the source tree with `tool args… -o IMAGE TREE`.
fn master(name: &str, tool: &str, args: &[&str]) -> PathBuf {
    let src = source_tree();
    let recipe = format!("{} {tool} {args:?}", src.display());
    cached(name, "iso", &recipe, |out| {
        common::run(Command::new(tool).args(args).arg("-o").arg(out).arg(&src));
    })
}

fn genisoimage_rr_joliet() -> Option<PathBuf> {
    common::require_tools("genisoimage", &["genisoimage"]).then(|| {
        master(
            "geniso-rj",
            "genisoimage",
            &["-quiet", "-R", "-J", "-joliet-long"],
        )
    })
}

fn xorriso_rr_joliet() -> Option<PathBuf> {
    common::require_tools("xorriso", &["xorriso"]).then(|| {
        master(
            "xorriso-rj",
            "xorriso",
            &["-as", "mkisofs", "-quiet", "-R", "-J", "-joliet-long"],
        )
    })
}

fn genisoimage_plain() -> Option<PathBuf> {
    common::require_tools("genisoimage", &["genisoimage"])
        .then(|| master("geniso-plain", "genisoimage", &["-quiet", "-D"]))
}

fn open_file(path: &Path) -> Arc<dyn ByteSource> {
    Arc::new(ImageFile::open(path).unwrap())
}

/// (kind, size, link target) per path: what both sides can tell.
type Listing = BTreeMap<String, (char, u64, Option<String>)>;

fn our_listing(tree: &dyn FileTree) -> Listing {
    let mut out = Listing::new();
    walk::<Error>(tree, tree.root(), |v| {
        let (kind, target) = match &v.entry.kind {
            NodeKind::Dir => ('d', None),
            NodeKind::File => ('-', None),
            NodeKind::Symlink(t) => ('l', Some(t.clone())),
        };
        out.insert(v.path.to_owned(), (kind, v.entry.size, target));
        Ok(true)
    })
    .unwrap();
    out
}

/// `xorriso -find / -exec lsdl`: `ls -l` lines, paths quoted, `-> 'target'`.
fn xorriso_listing(image: &Path) -> Listing {
    let text = common::run(
        Command::new("xorriso")
            .arg("-indev")
            .arg(image)
            .args(["-find", "/", "-exec", "lsdl"]),
    );
    let mut out = Listing::new();
    for line in text.lines() {
        let Some(at) = line.find(" '/") else { continue };
        let fields: Vec<&str> = line[..at].split_whitespace().collect();
        let kind = fields[0].chars().next().unwrap();
        let size: u64 = fields[4].parse().unwrap();
        let rest = &line[at + 2..];
        let (path, target) = match rest.split_once("' -> '") {
            Some((p, t)) => (p, Some(t.trim_end_matches('\'').to_owned())),
            None => (rest.trim_end_matches('\''), None),
        };
        let path = path.trim_start_matches('/');
        if path.is_empty() {
            continue;
        }
        out.insert(path.to_owned(), (kind, size, target));
    }
    out
}

/// `7z l -slt`: blocks of `Key = value` lines per entry.
fn sevenzip_listing(image: &Path) -> Listing {
    let text = common::run(Command::new("7z").arg("l").arg("-slt").arg(image));
    let body = text.split("----------").nth(1).expect("7z listing body");
    let mut out = Listing::new();
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
            out.insert(
                p,
                if dir {
                    ('d', 0, None)
                } else {
                    ('-', size, None)
                },
            );
        }
    }
    out
}

/// Our Joliet/plain listing in 7z's terms: 7z shows links as empty files.
fn as_7z(listing: Listing) -> Listing {
    listing
        .into_iter()
        .map(|(p, (k, s, t))| match (k, t) {
            ('l', _) => (p, ('-', 0, None)),
            (k, _) => (p, (k, if k == 'd' { 0 } else { s }, None)),
        })
        .collect()
}

fn read_all(src: &Arc<dyn ByteSource>, tree: &dyn FileTree, path: &str) -> Vec<u8> {
    let found = bootstick::image::tree::lookup(tree, path).unwrap();
    let data = tree.file_data(found.node).unwrap();
    assert_eq!(data.size, found.size, "{path}");
    assert_eq!(
        data.runs.iter().map(Run::len).sum::<u64>(),
        data.size,
        "{path}"
    );
    let mut out = Vec::new();
    FileReader::new(src.clone(), data)
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[test]
fn rock_ridge_listing_matches_xorriso() {
    for image in [genisoimage_rr_joliet(), xorriso_rr_joliet()]
        .into_iter()
        .flatten()
    {
        let src = open_file(&image);
        let tree = open_tree(src.clone()).unwrap();
        assert_eq!(tree.kind(), FsKind::RockRidge, "{image:?}");
        let ours = our_listing(&*tree);
        assert_eq!(ours, xorriso_listing(&image), "{image:?}");
        // The cases this fixture exists for, spelled out.
        assert_eq!(ours[&long_name()], ('-', 5, None));
        assert_eq!(ours["long-link"].2.as_deref(), Some(long_target().as_str()));
        assert_eq!(ours["abs-link"].2.as_deref(), Some("/etc/passwd"));
        let leaf = "deep/level1/level2/level3/level4/level5/level6/level7/level8/level9/level10/level11/level12/leaf.txt";
        assert_eq!(ours[leaf], ('-', 10, None));
        assert!(ours.contains_key("ünï cødé.txt"));
    }
}

#[test]
fn rock_ridge_file_bytes_match_the_source() {
    let src_tree = source_tree();
    for image in [genisoimage_rr_joliet(), xorriso_rr_joliet()]
        .into_iter()
        .flatten()
    {
        let src = open_file(&image);
        let tree = open_tree_as(src.clone(), FsKind::RockRidge).unwrap();
        let mut files = 0;
        for (path, (kind, _, _)) in our_listing(&*tree) {
            if kind == '-' {
                let want = std::fs::read(src_tree.join(&path)).unwrap();
                assert_eq!(read_all(&src, &*tree, &path), want, "{image:?} {path}");
                files += 1;
            }
        }
        assert!(files >= 12, "only {files} files");
    }
}

#[test]
fn joliet_listing_and_bytes_match_7z() {
    if !common::require_tools("joliet_listing_and_bytes_match_7z", &["7z"]) {
        return;
    }
    for image in [genisoimage_rr_joliet(), xorriso_rr_joliet()]
        .into_iter()
        .flatten()
    {
        let src = open_file(&image);
        let tree = open_tree_as(src.clone(), FsKind::Joliet).unwrap();
        assert_eq!(tree.kind(), FsKind::Joliet);
        let ours = as_7z(our_listing(&*tree));
        assert_eq!(ours, sevenzip_listing(&image), "{image:?}");
        let out = tempfile::tempdir().unwrap();
        common::run(
            Command::new("7z")
                .arg("x")
                .arg("-y")
                .arg(format!("-o{}", out.path().display()))
                .arg(&image),
        );
        for (path, (kind, _, _)) in &ours {
            if *kind == '-' {
                let want = std::fs::read(out.path().join(path)).unwrap();
                assert_eq!(read_all(&src, &*tree, path), want, "{image:?} {path}");
            }
        }
    }
}

#[test]
fn plain_iso9660_matches_7z() {
    let Some(image) = genisoimage_plain() else {
        return;
    };
    if !common::require_tools("plain_iso9660_matches_7z", &["7z"]) {
        return;
    }
    let src = open_file(&image);
    let tree = open_tree(src.clone()).unwrap();
    assert_eq!(tree.kind(), FsKind::Iso9660);
    let ours = our_listing(&*tree);
    assert_eq!(as_7z(ours.clone()), sevenzip_listing(&image));
    // Version suffixes and ISO 9660's mandatory dot are gone.
    assert!(ours.contains_key("README"), "{:?}", ours.keys());
    assert!(ours.keys().all(|k| !k.contains(';') && !k.ends_with('.')));
    assert_eq!(read_all(&src, &*tree, "README"), b"readme\n");
    // The richer views are absent and say what is there instead.
    let err = open_tree_as(src, FsKind::Joliet).err().unwrap();
    assert!(matches!(err, Error::FsAbsent { .. }), "{err}");
    assert!(err.to_string().contains("iso9660"), "{err}");
}

/// A file over 4 GiB is stored as several extents (multi-extent records).
/// The source is sparse and the image has its holes punched after mastering,
/// so this costs a few seconds once and little disk.
fn big_image() -> Option<(PathBuf, u64)> {
    const SIZE: u64 = (4 << 30) + (5 << 20) + 123;
    if !common::require_tools("multi_extent", &["xorriso", "fallocate"]) {
        return None;
    }
    let recipe = format!("big-v1 {SIZE} xorriso -as mkisofs -R -J -iso-level 3");
    let image = cached("big-multi-extent", "iso", &recipe, |out| {
        let dir = tempfile::tempdir_in(common::fixtures::fixture_dir()).unwrap();
        let src = dir.path().join("tree");
        std::fs::create_dir(&src).unwrap();
        let f = std::fs::File::create(src.join("huge.bin")).unwrap();
        f.set_len(SIZE).unwrap();
        for (at, mark) in markers(SIZE) {
            std::os::unix::fs::FileExt::write_all_at(&f, mark, at).unwrap();
        }
        drop(f);
        std::fs::write(src.join("small.txt"), "small\n").unwrap();
        common::run(
            Command::new("xorriso")
                .args([
                    "-as",
                    "mkisofs",
                    "-quiet",
                    "-R",
                    "-J",
                    "-iso-level",
                    "3",
                    "-o",
                ])
                .arg(out)
                .arg(&src),
        );
        common::run(Command::new("fallocate").arg("--dig-holes").arg(out));
    });
    Some((image, SIZE))
}

/// Marker bytes at the start, across the 4 GiB − 2 KiB extent boundary
/// libisofs uses, and at the very end.
fn markers(size: u64) -> Vec<(u64, &'static [u8])> {
    vec![
        (0, b"HEAD".as_slice()),
        ((4 << 30) - 2048 - 3, b"ACROSS".as_slice()),
        (size - 4, b"TAIL".as_slice()),
    ]
}

#[test]
fn multi_extent_file_over_4gib_matches_xorriso() {
    let Some((image, size)) = big_image() else {
        return;
    };
    let src = open_file(&image);
    for kind in [FsKind::RockRidge, FsKind::Joliet, FsKind::Iso9660] {
        let tree = open_tree_as(src.clone(), kind).unwrap();
        let name = if kind == FsKind::Iso9660 {
            "HUGE.BIN"
        } else {
            "huge.bin"
        };
        let found = bootstick::image::tree::lookup(&*tree, name).unwrap();
        assert_eq!(found.size, size, "{kind:?}");
        let data = tree.file_data(found.node).unwrap();
        assert!(data.runs.len() >= 2, "{kind:?}: {:?}", data.runs);
        // xorriso's own account of the extents: "lba, blocks, bytes".
        let report = common::run(Command::new("xorriso").arg("-indev").arg(&image).args([
            "-find",
            "/huge.bin",
            "-exec",
            "report_sections",
        ]));
        let theirs: Vec<Run> = report
            .lines()
            .filter_map(|l| l.strip_prefix("File data lba:"))
            .map(|l| {
                let f: Vec<u64> = l
                    .split(',')
                    .take(4)
                    .map(|x| x.trim().parse().unwrap())
                    .collect();
                Run::Data {
                    offset: f[1] * 2048,
                    len: f[3],
                }
            })
            .collect();
        assert_eq!(data.runs, theirs, "{kind:?}");
        for (at, mark) in markers(size) {
            let piece = bootstick::image::FileData {
                size: mark.len() as u64,
                runs: slice_runs(&data.runs, at, mark.len() as u64),
            };
            let mut got = Vec::new();
            FileReader::new(src.clone(), piece)
                .read_to_end(&mut got)
                .unwrap();
            assert_eq!(got, mark, "{kind:?} at {at}");
        }
    }
    // The listing agrees with 7z's (Joliet) as well.
    if common::require_tools("multi_extent 7z", &["7z"]) {
        let listing = sevenzip_listing(&image);
        assert_eq!(listing["huge.bin"], ('-', size, None));
    }
}

/// The parts of `runs` that hold file bytes `at..at + len`.
fn slice_runs(runs: &[Run], at: u64, len: u64) -> Vec<Run> {
    let mut out = Vec::new();
    let mut base = 0;
    for run in runs {
        let (start, end) = (at.max(base), (at + len).min(base + run.len()));
        if start < end {
            out.push(match *run {
                Run::Data { offset, .. } => Run::Data {
                    offset: offset + start - base,
                    len: end - start,
                },
                Run::Zeros { .. } => Run::Zeros { len: end - start },
            });
        }
        base += run.len();
    }
    out
}

// ---------------------------------------------------------------------------
// Hostile images: every failure is a typed error, never a panic or a hang.

/// Opens every view of `img`, walks it and reads every file.
fn exercise(img: Vec<u8>) -> Result<usize, Error> {
    let src: Arc<dyn ByteSource> = Arc::new(img);
    let mut files = 0;
    for kind in [FsKind::RockRidge, FsKind::Joliet, FsKind::Iso9660] {
        let tree = open_tree_as(src.clone(), kind)?;
        let mut nodes = Vec::new();
        walk::<Error>(&*tree, tree.root(), |v| {
            if v.entry.kind == NodeKind::File {
                nodes.push(v.entry.node);
            }
            Ok(true)
        })?;
        for node in nodes {
            let data = tree.file_data(node)?;
            std::io::copy(
                &mut FileReader::new(src.clone(), data),
                &mut std::io::sink(),
            )
            .map_err(|e| Error::Io {
                offset: 0,
                source: e,
            })?;
            files += 1;
        }
    }
    Ok(files)
}

fn hostile_base() -> Option<Vec<u8>> {
    genisoimage_rr_joliet().map(|p| std::fs::read(p).unwrap())
}

/// Byte offset of the record named `name` (plain ISO 9660 identifier) in the
/// primary volume's root directory.
fn root_record(img: &[u8], name: &[u8]) -> usize {
    let root = 32768 + 156;
    let extent = u32::from_le_bytes(img[root + 2..root + 6].try_into().unwrap()) as usize;
    let size = u32::from_le_bytes(img[root + 10..root + 14].try_into().unwrap()) as usize;
    let mut pos = extent * 2048;
    while pos < extent * 2048 + size {
        let len = img[pos] as usize;
        if len == 0 {
            pos = (pos / 2048 + 1) * 2048;
            continue;
        }
        let n = img[pos + 32] as usize;
        if img[pos + 33..pos + 33 + n].starts_with(name) {
            return pos;
        }
        pos += len;
    }
    panic!("no record {name:?} in the root directory");
}

/// Writes a both-endian u32 (ECMA-119 §7.3.3) at `at`.
fn put_both(img: &mut [u8], at: usize, v: u32) {
    img[at..at + 4].copy_from_slice(&v.to_le_bytes());
    img[at + 4..at + 8].copy_from_slice(&v.to_be_bytes());
}

#[test]
fn intact_image_exercises_cleanly() {
    let Some(img) = hostile_base() else { return };
    assert!(exercise(img).unwrap() > 30);
}

#[test]
fn truncated_images_give_typed_errors() {
    let Some(img) = hostile_base() else { return };
    let len = img.len();
    // Before the volume descriptor set is complete: not an ISO at all.
    let err = exercise(img[..30_000].to_vec()).unwrap_err();
    assert!(
        matches!(err, Error::NoFilesystem | Error::FsAbsent { .. }),
        "{err}"
    );
    let mut outcomes = BTreeMap::new();
    for cut in (34_816..len)
        .step_by(2048 * 3)
        .chain([len - 1, 36_000, 40_961])
    {
        let name = match exercise(img[..cut].to_vec()) {
            Ok(_) => "ok",
            Err(Error::OutOfBounds { image_len, .. }) => {
                assert_eq!(image_len, cut as u64);
                "out-of-bounds"
            }
            Err(e) => panic!("cut at {cut}: unexpected error {e}"),
        };
        *outcomes.entry(name).or_insert(0) += 1;
    }
    assert!(outcomes.contains_key("out-of-bounds"), "{outcomes:?}");
}

#[test]
fn directory_pointing_at_itself_is_a_loop() {
    let Some(mut img) = hostile_base() else {
        return;
    };
    let root_extent = u32::from_le_bytes(img[32768 + 156 + 2..32768 + 156 + 6].try_into().unwrap());
    let root_size = u32::from_le_bytes(img[32768 + 156 + 10..32768 + 156 + 14].try_into().unwrap());
    let sub = root_record(&img, b"SUB");
    put_both(&mut img, sub + 2, root_extent);
    put_both(&mut img, sub + 10, root_size);
    for kind in [FsKind::RockRidge, FsKind::Iso9660] {
        let src: Arc<dyn ByteSource> = Arc::new(img.clone());
        let tree = open_tree_as(src, kind).unwrap();
        let err = walk::<Error>(&*tree, tree.root(), |_| Ok(true)).unwrap_err();
        assert!(
            matches!(&err, Error::Loop { path } if path.eq_ignore_ascii_case("sub")),
            "{kind:?}: {err}"
        );
    }
}

#[test]
fn absurd_sizes_and_extents_are_refused() {
    let Some(img) = hostile_base() else { return };
    // A directory claiming ~4 GiB: refused before allocating.
    let mut big_dir = img.clone();
    let sub = root_record(&big_dir, b"SUB");
    put_both(&mut big_dir, sub + 10, 0xFFFF_F800);
    let err = exercise(big_dir).unwrap_err();
    assert!(
        matches!(
            err,
            Error::TooLarge {
                size: 0xFFFF_F800,
                ..
            }
        ),
        "{err}"
    );
    // A file whose extent lies far past the end of the image.
    let mut far = img.clone();
    let readme = root_record(&far, b"README");
    put_both(&mut far, readme + 2, 0x7FFF_FFF0);
    let err = exercise(far).unwrap_err();
    assert!(err.to_string().contains("outside the image"), "{err}");
    // A logical block size that is not a power of two we know.
    let mut bad_block = img;
    bad_block[32768 + 128..32768 + 130].copy_from_slice(&1000u16.to_le_bytes());
    let err = exercise(bad_block).unwrap_err();
    assert!(
        matches!(err, Error::Malformed { offset: 32768, .. }),
        "{err}"
    );
}

/// A fixture in the fuzz target's input encoding: the image from sector 16
/// on, trailing zeros cut (what `fuzz/make-iso-seeds.sh` writes).
fn fuzz_seed() -> Option<Vec<u8>> {
    let img = hostile_base()?;
    let mut seed = img[iso_fuzz::INPUT_OFFSET..].to_vec();
    while seed.last() == Some(&0) {
        seed.pop();
    }
    Some(seed)
}

#[test]
fn fuzz_body_reads_a_seed() {
    let Some(seed) = fuzz_seed() else { return };
    assert!(iso_fuzz::exercise(&seed).unwrap() > 30);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 64, ..Default::default() })]

    /// Random byte changes in the metadata of a valid image, run through the
    /// fuzz target's own body: a listing or a typed error, never a panic
    /// (including the body's own consistency assertions) or a hang.
    #[test]
    fn mutated_images_never_panic(
        edits in proptest::collection::vec((0usize..24_576, proptest::prelude::any::<u8>()), 1..40),
        cut in proptest::option::of(0usize..1_000_000),
    ) {
        if let Some(mut seed) = fuzz_seed() {
            for (at, byte) in edits {
                if at < seed.len() {
                    seed[at] = byte;
                }
            }
            if let Some(cut) = cut {
                seed.truncate(cut);
            }
            let _ = iso_fuzz::exercise(&seed);
        }
    }
}

// ---------------------------------------------------------------------------
// The `ls` and `extract` commands.

/// Runs bootstick, returning (exit code, stdout, stderr).
fn bootstick(args: &[&std::ffi::OsStr]) -> (i32, String, String) {
    let out = common::bootstick().args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn diff_trees(a: &Path, b: &Path) {
    common::run(
        Command::new("diff")
            .args(["-r", "--no-dereference"])
            .arg(a)
            .arg(b),
    );
}

#[test]
fn extract_rock_ridge_matches_xorriso_extract() {
    if !common::require_tools("extract_rock_ridge", &["xorriso", "diff", "chmod"]) {
        return;
    }
    for image in [genisoimage_rr_joliet(), xorriso_rr_joliet()]
        .into_iter()
        .flatten()
    {
        let work = tempfile::tempdir().unwrap();
        let ours = work.path().join("ours");
        let theirs = work.path().join("theirs");
        let (code, _, err) = bootstick(&["extract".as_ref(), image.as_os_str(), ours.as_os_str()]);
        assert_eq!(code, 0, "{err}");
        // The absolute link is the one thing we refuse to recreate.
        assert!(err.contains("abs-link"), "{err}");
        assert!(std::fs::symlink_metadata(ours.join("abs-link")).is_err());
        common::run(
            Command::new("xorriso")
                .args(["-osirrox", "on", "-indev"])
                .arg(&image)
                .args(["-extract", "/"])
                .arg(&theirs),
        );
        std::fs::remove_file(theirs.join("abs-link")).unwrap();
        // xorriso restores read-only modes; make its tree removable.
        common::run(Command::new("chmod").args(["-R", "u+w"]).arg(&theirs));
        diff_trees(&ours, &theirs);
        assert_eq!(
            std::fs::read_link(ours.join("sub/link")).unwrap(),
            Path::new("../README")
        );
    }
}

#[test]
fn extract_joliet_matches_7z_extract() {
    let Some(image) = genisoimage_rr_joliet() else {
        return;
    };
    if !common::require_tools("extract_joliet_matches_7z", &["7z", "diff"]) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let ours = work.path().join("ours");
    let theirs = work.path().join("theirs");
    let (code, _, err) = bootstick(&[
        "extract".as_ref(),
        "--fs".as_ref(),
        "joliet".as_ref(),
        image.as_os_str(),
        ours.as_os_str(),
    ]);
    assert_eq!(code, 0, "{err}");
    common::run(
        Command::new("7z")
            .args(["x", "-y"])
            .arg(format!("-o{}", theirs.display()))
            .arg(&image),
    );
    diff_trees(&ours, &theirs);
}

#[test]
fn extract_refuses_a_non_empty_directory() {
    let Some(image) = genisoimage_rr_joliet() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("precious"), "keep").unwrap();
    let (code, _, err) = bootstick(&[
        "extract".as_ref(),
        image.as_os_str(),
        work.path().as_os_str(),
    ]);
    assert_eq!(code, 4, "{err}");
    assert_eq!(std::fs::read_dir(work.path()).unwrap().count(), 1);
}

#[test]
fn ls_json_recursive_matches_xorriso() {
    let Some(image) = xorriso_rr_joliet() else {
        return;
    };
    let (code, out, err) = bootstick(&[
        "ls".as_ref(),
        "-R".as_ref(),
        "--json".as_ref(),
        image.as_os_str(),
    ]);
    assert_eq!(code, 0, "{err}");
    let doc = common::json_result(out.as_bytes());
    assert_eq!(doc["fs"], "rock-ridge");
    let mut ours = Listing::new();
    for e in doc["entries"].as_array().unwrap() {
        let kind = match e["type"].as_str().unwrap() {
            "dir" => 'd',
            "symlink" => 'l',
            _ => '-',
        };
        ours.insert(
            e["path"].as_str().unwrap().to_owned(),
            (
                kind,
                e["size"].as_u64().unwrap(),
                e["target"].as_str().map(String::from),
            ),
        );
    }
    assert_eq!(ours, xorriso_listing(&image));
    // A sub-directory, in text, and a single file.
    let (code, out, _) = bootstick(&["ls".as_ref(), image.as_os_str(), "sub".as_ref()]);
    assert_eq!(code, 0);
    assert!(
        out.lines()
            .any(|l| l.starts_with('l') && l.ends_with("link -> ../README")),
        "{out}"
    );
    let (code, out, _) = bootstick(&[
        "ls".as_ref(),
        image.as_os_str(),
        "data/random-100k.bin".as_ref(),
    ]);
    assert_eq!(code, 0);
    assert!(out.contains(" 100000 data/random-100k.bin"), "{out}");
    let (code, _, err) = bootstick(&["ls".as_ref(), image.as_os_str(), "no/such".as_ref()]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("/no"), "{err}");
}
/// With a UDF bridge (genisoimage -udf), UDF is preferred and the ISO 9660
/// views stay readable by name.
#[test]
fn udf_is_preferred_and_iso_views_remain() {
    if !common::require_tools("udf_is_preferred", &["genisoimage"]) {
        return;
    }
    let image = master("geniso-udf", "genisoimage", &["-quiet", "-udf", "-R", "-J"]);
    let src = open_file(&image);
    assert_eq!(
        bootstick::image::open::available(&src).unwrap(),
        [
            FsKind::Udf,
            FsKind::RockRidge,
            FsKind::Joliet,
            FsKind::Iso9660
        ]
    );
    let tree = open_tree(src.clone()).unwrap();
    assert_eq!(tree.kind(), FsKind::Udf);
    assert_eq!(read_all(&src, &*tree, "README"), b"readme\n");
    let rr = open_tree_as(src.clone(), FsKind::RockRidge).unwrap();
    assert_eq!(
        read_all(&src, &*rr, "data/random-100k.bin"),
        std::fs::read(source_tree().join("data/random-100k.bin")).unwrap()
    );
}

/// Extracting the >4 GiB multi-extent file: the bytes equal the sparse source
/// xorriso was given (`cmp`), zeros become holes, and memory stays bounded
/// (peak RSS from GNU time, far below the file size).
#[test]
fn extract_over_4gib_streams_sparse_with_bounded_memory() {
    let Some((image, size)) = big_image() else {
        return;
    };
    if !common::require_tools("extract_over_4gib", &["cmp", "time"]) {
        return;
    }
    let work = tempfile::tempdir_in(common::fixtures::fixture_dir()).unwrap();
    let out = work.path().join("out");
    let rss = work.path().join("rss");
    common::run(
        Command::new("time")
            .arg("-f")
            .arg("%M")
            .arg("-o")
            .arg(&rss)
            .arg(env!("CARGO_BIN_EXE_bootstick"))
            .arg("extract")
            .arg(&image)
            .arg(&out),
    );
    let kib: u64 = std::fs::read_to_string(&rss)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(kib < 64 * 1024, "peak RSS {kib} KiB");
    let got = out.join("huge.bin");
    let meta = std::fs::metadata(&got).unwrap();
    assert_eq!(meta.len(), size);
    assert!(
        std::os::unix::fs::MetadataExt::blocks(&meta) * 512 < 64 << 20,
        "zeros were written out instead of left as holes"
    );
    let want = work.path().join("source.bin");
    let f = std::fs::File::create(&want).unwrap();
    f.set_len(size).unwrap();
    for (at, mark) in markers(size) {
        std::os::unix::fs::FileExt::write_all_at(&f, mark, at).unwrap();
    }
    drop(f);
    common::run(Command::new("cmp").arg(&got).arg(&want));
    assert_eq!(std::fs::read(out.join("small.txt")).unwrap(), b"small\n");
}

/// A Rock Ridge name rewritten to climb out of the extraction directory
/// (same length as the original, so the image stays well-formed): `ls`
/// shows it as stored, `extract` skips it with a warning and writes nothing
/// outside DIR.
#[test]
fn extract_skips_a_name_that_escapes() {
    let Some(mut img) = hostile_base() else {
        return;
    };
    let from = b"multi.dots.tar.gz";
    let to = b"../../../../tmp/x";
    assert_eq!(from.len(), to.len());
    let at = img
        .windows(from.len())
        .position(|w| w == from)
        .expect("the NM name");
    img[at..at + to.len()].copy_from_slice(to);
    use std::os::unix::fs::MetadataExt;
    // Where the name would land if it escaped: inside the work directory
    // from a deep DIR (work/a/tmp/x), and past it altogether from a shallow
    // one (../../../.. from work/s/out climbs over work and its parent:
    // /tmp/x when work is in /tmp).
    let stamp = |p: &str| {
        std::fs::symlink_metadata(p)
            .ok()
            .map(|m| (m.ino(), m.mtime()))
    };
    let tmp_x = stamp("/tmp/x");
    for sub in ["a/b/c/d/out", "s/out"] {
        let work = tempfile::tempdir().unwrap();
        let image = work.path().join("evil.iso");
        std::fs::write(&image, &img).unwrap();
        let (code, out, err) = bootstick(&["ls".as_ref(), image.as_os_str()]);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("../../../../tmp/x"), "{out}");
        let dir = work.path().join(sub);
        let (code, _, err) = bootstick(&["extract".as_ref(), image.as_os_str(), dir.as_os_str()]);
        assert_eq!(code, 0, "{err}");
        assert!(err.contains("skipping ../../../../tmp/x"), "{err}");
        assert!(dir.join("README").exists());
        // Everything in the work directory outside DIR is what the test
        // made: the image and DIR's parents.
        let mut made = vec![image.clone()];
        let mut p = dir.parent();
        while let Some(d) = p.filter(|d| *d != work.path()) {
            made.push(d.to_owned());
            p = d.parent();
        }
        let mut found = Vec::new();
        let mut todo = vec![work.path().to_owned()];
        while let Some(d) = todo.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let path = e.unwrap().path();
                if path.starts_with(&dir) {
                    continue;
                }
                if path.is_dir() && !path.is_symlink() {
                    todo.push(path.clone());
                }
                if !made.contains(&path) {
                    found.push(path);
                }
            }
        }
        assert!(found.is_empty(), "{sub}: written outside DIR: {found:?}");
    }
    assert_eq!(tmp_x, stamp("/tmp/x"), "/tmp/x was created or changed");
}

/// Issue 10, item 17: a Rock Ridge entry named `..` (its NM entry shortened
/// to the two dots, a SUSP padding entry keeping the record's length) is
/// skipped by `extract` with a warning, as docs/cli.md says, and the rest
/// is extracted; `ls` shows it as stored. Before, the reader refused the
/// whole directory and `extract` failed (exit 3).
#[test]
fn extract_skips_an_entry_named_dot_dot() {
    let Some(mut img) = hostile_base() else {
        return;
    };
    let from = b"multi.dots.tar.gz";
    let at = img
        .windows(from.len())
        .position(|w| w == from)
        .expect("the NM name");
    // NM: signature, length, version, flags, name.
    let nm = at - 5;
    assert_eq!(&img[nm..nm + 2], b"NM");
    let len = usize::from(img[nm + 2]);
    assert_eq!(len, 5 + from.len());
    img[nm + 2] = 7;
    img[at..at + 2].copy_from_slice(b"..");
    let pd = at + 2;
    img[pd..pd + 2].copy_from_slice(b"PD");
    img[pd + 2] = (len - 7) as u8;
    img[pd + 3] = 1;
    img[pd + 4..nm + len].fill(0);
    let work = tempfile::tempdir().unwrap();
    let image = work.path().join("dotdot.iso");
    std::fs::write(&image, &img).unwrap();
    let (code, out, err) = bootstick(&[
        "ls".as_ref(),
        "--fs".as_ref(),
        "rock-ridge".as_ref(),
        image.as_os_str(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.lines().any(|l| l.ends_with(" ..")), "{out}");
    let dir = work.path().join("out");
    let (code, _, err) = bootstick(&[
        "extract".as_ref(),
        "--fs".as_ref(),
        "rock-ridge".as_ref(),
        image.as_os_str(),
        dir.as_os_str(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("skipping .."), "{err}");
    assert!(dir.join("README").exists());
    assert!(!dir.join("multi.dots.tar.gz").exists());
    let outside: Vec<_> = std::fs::read_dir(work.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(outside.len(), 2, "{outside:?}");
}
