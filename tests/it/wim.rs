//! Splitting WIMs into `.swm` parts (`layout::wim`), checked against
//! wimlib-imagex: WIMs are captured at test time, split by our code, and the
//! parts must verify, apply to the captured trees, and be byte-identical to
//! `wimlib-imagex split`'s parts (but for the set's GUID, which wimlib draws
//! at random). Also through an ISO (run translation), a fragmented file, a
//! FAT32 volume laid out by `layout::fat32`, and hostile inputs.

use crate::common;

use bootstick::events::Silent;
use bootstick::image::{self, ByteSource, FileData, ImageFile, Run};
use bootstick::layout::fat32::{self, Content, Dir, Options};
use bootstick::layout::wim::{self, SplitPart};
use bootstick::write::{self, Target};
use proptest::prelude::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

const TOOLS: &[&str] = &["wimlib-imagex", "diff"];
const LIMIT: u64 = 1 << 20;

/// Two source trees: random (incompressible) files of assorted sizes, a
/// compressible text file, a duplicate, an empty file; the second tree
/// shares some files with the first.
fn make_trees(dir: &Path) -> (PathBuf, PathBuf) {
    let a = dir.join("tree1");
    let b = dir.join("tree2");
    std::fs::create_dir_all(a.join("sub/deeper")).unwrap();
    std::fs::create_dir_all(b.join("sub")).unwrap();
    for i in 0..10u64 {
        common::pseudo_random_file(&a.join(format!("f{i}.bin")), 40_000 + i * 61_001, i + 1);
    }
    common::pseudo_random_file(&a.join("sub/deeper/big.bin"), 1_500_000, 99);
    let text: String = (0..40_000).map(|i| format!("line {i} of text\n")).collect();
    std::fs::write(a.join("sub/text.txt"), &text).unwrap();
    std::fs::copy(a.join("f1.bin"), a.join("sub/dup.bin")).unwrap();
    std::fs::write(a.join("empty"), b"").unwrap();
    std::fs::copy(a.join("f3.bin"), b.join("sub/shared.bin")).unwrap();
    common::pseudo_random_file(&b.join("only2.bin"), 700_000, 1234);
    (a, b)
}

/// Captures `a` as image 1 and appends `b` as image 2 (boot index 2).
fn make_wim(dir: &Path, a: &Path, b: &Path, compress: &str) -> PathBuf {
    let wim = dir.join(format!("x-{compress}.wim"));
    let c = format!("--compress={compress}");
    common::run(
        Command::new("wimlib-imagex")
            .args(["capture"])
            .arg(a)
            .arg(&wim)
            .arg(&c),
    );
    common::run(
        Command::new("wimlib-imagex")
            .args(["append"])
            .arg(b)
            .arg(&wim)
            .arg("second"),
    );
    common::run(
        Command::new("wimlib-imagex")
            .arg("info")
            .arg(&wim)
            .args(["2", "--boot"]),
    );
    wim
}

fn whole_file(len: u64) -> FileData {
    FileData {
        size: len,
        runs: vec![Run::Data { offset: 0, len }],
    }
}

/// Writes `content` (reading `Source` ranges from `src`) to `out`.
fn materialize(src: &dyn ByteSource, content: &Content, out: &mut Vec<u8>) {
    match content {
        Content::Bytes(b) => out.extend_from_slice(b),
        Content::Source(d) => {
            for r in &d.runs {
                match *r {
                    Run::Data { offset, len } => {
                        let mut buf = vec![0; len as usize];
                        src.read_exact_at(offset, &mut buf, "test").unwrap();
                        out.extend_from_slice(&buf);
                    }
                    Run::Zeros { len } => out.resize(out.len() + len as usize, 0),
                }
            }
        }
        Content::Concat(parts) => {
            for p in parts {
                materialize(src, p, out);
            }
        }
    }
}

fn write_parts(src: &dyn ByteSource, parts: &[SplitPart], dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for p in parts {
        let mut v = Vec::new();
        materialize(src, &p.content, &mut v);
        assert_eq!(v.len() as u64, p.size());
        std::fs::write(dir.join(&p.name), v).unwrap();
    }
}

/// wimlib must verify the set and apply both images identical to the trees.
fn check_with_wimlib(dir: &Path, a: &Path, b: &Path) {
    let first = dir.join("install.swm");
    let refs = format!("--ref={}/install*.swm", dir.display());
    common::run(
        Command::new("wimlib-imagex")
            .arg("verify")
            .arg(&first)
            .arg(&refs),
    );
    let info = common::run(Command::new("wimlib-imagex").arg("info").arg(&first));
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
            .unwrap_or_default()
    };
    assert_eq!(field("Image Count:"), "2", "{info}");
    assert!(field("Part Number:").starts_with("1/"), "{info}");
    for (image, tree) in [("1", a), ("2", b)] {
        let out = dir.join(format!("applied{image}"));
        common::run(
            Command::new("wimlib-imagex")
                .arg("apply")
                .arg(&first)
                .arg(image)
                .arg(&out)
                .arg(&refs),
        );
        common::run(Command::new("diff").arg("-r").arg(tree).arg(&out));
    }
}

/// Our parts must equal `wimlib-imagex split`'s byte for byte, except the
/// set's GUID (bytes 24..40 of every header), which wimlib draws at random.
fn compare_with_wimlib_split(wim: &Path, dir: &Path, parts: &[SplitPart]) {
    let theirs = dir.join("theirs");
    std::fs::create_dir_all(&theirs).unwrap();
    common::run(
        Command::new("wimlib-imagex")
            .arg("split")
            .arg(wim)
            .arg(theirs.join("install.swm"))
            .arg((LIMIT >> 20).to_string()),
    );
    let mut names: Vec<String> = std::fs::read_dir(&theirs)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let mut ours: Vec<String> = parts.iter().map(|p| p.name.clone()).collect();
    ours.sort();
    assert_eq!(names, ours, "part names/count differ from wimlib split");
    let guid = std::fs::read(dir.join("install.swm")).unwrap()[24..40].to_vec();
    for name in &names {
        let mine = std::fs::read(dir.join(name)).unwrap();
        let mut other = std::fs::read(theirs.join(name)).unwrap();
        assert_eq!(mine[24..40], guid[..], "{name}: GUID differs between parts");
        assert_ne!(other[24..40], guid[..]);
        other[24..40].copy_from_slice(&guid);
        assert_eq!(mine.len(), other.len(), "{name}: size differs from wimlib");
        assert!(mine == other, "{name}: bytes differ from wimlib split");
    }
}

fn split_and_check(compress: &str) {
    let t = tempfile::tempdir().unwrap();
    let (a, b) = make_trees(t.path());
    let wim = make_wim(t.path(), &a, &b, compress);
    let src = ImageFile::open(&wim).unwrap();
    let parts = wim::split(&src, &whole_file(src.len()), LIMIT).unwrap();
    assert!(parts.len() >= 4, "{} parts", parts.len());
    let out = t.path().join("ours");
    write_parts(&src, &parts, &out);
    check_with_wimlib(&out, &a, &b);
    compare_with_wimlib_split(&wim, &out, &parts);
}

#[test]
fn uncompressed_wim_splits_like_wimlib() {
    if !common::require_tools("uncompressed_wim_splits_like_wimlib", TOOLS) {
        return;
    }
    split_and_check("none");
}

#[test]
fn lzx_wim_splits_like_wimlib() {
    if !common::require_tools("lzx_wim_splits_like_wimlib", TOOLS) {
        return;
    }
    split_and_check("lzx");
}

/// The WIM inside an ISO (read through our ISO reader's `FileData`), and the
/// same WIM scattered over a buffer in reverse order with a zero run, so
/// offsets must be translated through several runs.
#[test]
fn wim_inside_an_iso_and_fragmented() {
    if !common::require_tools(
        "wim_inside_an_iso_and_fragmented",
        &["wimlib-imagex", "diff", "xorriso"],
    ) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (a, b) = make_trees(t.path());
    let wim = make_wim(t.path(), &a, &b, "lzx");
    let root = t.path().join("isoroot");
    std::fs::create_dir_all(root.join("sources")).unwrap();
    std::fs::write(root.join("sources/readme.txt"), b"before the wim\n").unwrap();
    std::fs::copy(&wim, root.join("sources/install.wim")).unwrap();
    let iso = t.path().join("x.iso");
    common::run(
        Command::new("xorriso")
            .args(["-as", "mkisofs", "-quiet", "-R", "-J", "-o"])
            .arg(&iso)
            .arg(&root),
    );
    let src: Arc<dyn ByteSource> = Arc::new(ImageFile::open(&iso).unwrap());
    let tree = image::open::open_tree(src.clone()).unwrap();
    let found = image::tree::lookup(tree.as_ref(), "sources/install.wim").unwrap();
    let data = tree.file_data(found.node).unwrap();
    assert!(matches!(data.runs[0], Run::Data { offset, .. } if offset > 0));
    let parts = wim::split(src.as_ref(), &data, LIMIT).unwrap();
    let out = t.path().join("from-iso");
    write_parts(src.as_ref(), &parts, &out);
    check_with_wimlib(&out, &a, &b);
    compare_with_wimlib_split(&wim, &out, &parts);

    // Fragmented: chunks of the WIM stored back to front in a buffer, with
    // the header's zero tail (bytes 148..208) as a zero run.
    let bytes = std::fs::read(&wim).unwrap();
    assert!(bytes[148..208].iter().all(|&b| b == 0));
    let mut pieces: Vec<(u64, u64)> = vec![(0, 148)];
    let mut at = 208u64;
    while at < bytes.len() as u64 {
        let len = (bytes.len() as u64 - at).min(77_777);
        pieces.push((at, len));
        at += len;
    }
    let mut buf = vec![0xEEu8; 13];
    let mut placed = vec![0u64; pieces.len()];
    for (i, &(off, len)) in pieces.iter().enumerate().rev() {
        placed[i] = buf.len() as u64;
        buf.extend_from_slice(&bytes[off as usize..(off + len) as usize]);
    }
    let mut runs = Vec::new();
    for (i, &(_, len)) in pieces.iter().enumerate() {
        runs.push(Run::Data {
            offset: placed[i],
            len,
        });
        if i == 0 {
            runs.push(Run::Zeros { len: 60 });
        }
    }
    let data = FileData {
        size: bytes.len() as u64,
        runs,
    };
    let parts = wim::split(&buf, &data, LIMIT).unwrap();
    let out = t.path().join("fragmented");
    write_parts(&buf, &parts, &out);
    check_with_wimlib(&out, &a, &b);
    compare_with_wimlib_split(&wim, &out, &parts);
}

/// Split parts placed on a FAT32 volume by `layout::fat32` (the
/// `Content::Concat` placement), written by the write engine, copied back
/// out with mtools: wimlib must verify and apply them.
#[test]
fn split_parts_on_a_fat32_volume() {
    if !common::require_tools(
        "split_parts_on_a_fat32_volume",
        &["wimlib-imagex", "diff", "mcopy", "fsck.fat"],
    ) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (a, b) = make_trees(t.path());
    let wim = make_wim(t.path(), &a, &b, "lzx");
    let src = ImageFile::open(&wim).unwrap();
    let parts = wim::split(&src, &whole_file(src.len()), LIMIT).unwrap();
    let mut sources = Dir::new();
    for p in &parts {
        sources.file(&p.name, p.content.clone());
    }
    let mut root = Dir::new();
    root.dir("sources", sources);
    let options = Options::new(64 << 20, "WIMTEST");
    let (plan, _) = fat32::plan(&root, &options).unwrap();
    let img = t.path().join("fat.img");
    let mut target = Target::file(&img).unwrap();
    let source = std::fs::File::open(&wim).unwrap();
    let report = write::write(
        &plan,
        &source,
        &mut target,
        write::Options::default(),
        &Silent,
    )
    .unwrap();
    assert!(report.verified);
    drop(target);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&img)
        .unwrap()
        .set_len(options.size)
        .unwrap();
    common::run(Command::new("fsck.fat").args(["-n"]).arg(&img));
    let out = t.path().join("copied");
    std::fs::create_dir_all(&out).unwrap();
    common::run(
        Command::new("mcopy")
            .args(["-s", "-n", "-i"])
            .arg(&img)
            .arg("::/sources")
            .arg(&out),
    );
    check_with_wimlib(&out.join("sources"), &a, &b);
}

#[test]
fn solid_wims_are_refused() {
    if !common::require_tools("solid_wims_are_refused", TOOLS) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (a, _) = make_trees(t.path());
    let esd = t.path().join("x.esd");
    common::run(
        Command::new("wimlib-imagex")
            .arg("capture")
            .arg(&a)
            .arg(&esd)
            .arg("--solid"),
    );
    let src = ImageFile::open(&esd).unwrap();
    let err = wim::split(&src, &whole_file(src.len()), LIMIT).unwrap_err();
    assert!(matches!(err, wim::Error::Solid { .. }), "{err}");

    // A set already split is refused too.
    let swm = t.path().join("y.swm");
    let wim = t.path().join("y.wim");
    common::run(
        Command::new("wimlib-imagex")
            .arg("capture")
            .arg(&a)
            .arg(&wim),
    );
    common::run(
        Command::new("wimlib-imagex")
            .arg("split")
            .arg(&wim)
            .arg(&swm)
            .arg("1"),
    );
    let src = ImageFile::open(&swm).unwrap();
    let err = wim::split(&src, &whole_file(src.len()), LIMIT).unwrap_err();
    assert!(
        matches!(err, wim::Error::AlreadySplit { part: 1, total } if total > 1),
        "{err}"
    );
}

/// A small valid WIM, made once per test process.
fn small_wim() -> &'static Vec<u8> {
    static WIM: OnceLock<Vec<u8>> = OnceLock::new();
    WIM.get_or_init(|| {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("d");
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..4u64 {
            common::pseudo_random_file(&dir.join(format!("{i}")), 3000 + i * 100, i);
        }
        let wim = t.path().join("s.wim");
        common::run(
            Command::new("wimlib-imagex")
                .arg("capture")
                .arg(&dir)
                .arg(&wim)
                .arg("--compress=none"),
        );
        std::fs::read(&wim).unwrap()
    })
}

fn split_bytes(b: &[u8], limit: u64) -> Result<Vec<SplitPart>, wim::Error> {
    let v = b.to_vec();
    wim::split(&v, &whole_file(v.len() as u64), limit)
}

fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn hostile_headers_give_typed_errors() {
    if !common::require_tools("hostile_headers_give_typed_errors", &["wimlib-imagex"]) {
        return;
    }
    let good = small_wim().clone();
    assert!(split_bytes(&good, 4096).unwrap().len() >= 2);
    // Truncated: the header claims more than there is.
    let err = split_bytes(&good[..good.len() - 100], 4096).unwrap_err();
    assert!(matches!(err, wim::Error::OutOfRange { .. }), "{err}");
    assert!(matches!(
        split_bytes(&good[..100], 4096).unwrap_err(),
        wim::Error::Truncated { size: 100 }
    ));
    // Lookup table offset past the end.
    let mut b = good.clone();
    put_u64(&mut b, 56, 1 << 40);
    let err = split_bytes(&b, 4096).unwrap_err();
    assert!(
        matches!(err, wim::Error::OutOfRange { what: "lookup table", offset, .. } if offset == 1 << 40),
        "{err}"
    );
    // Absurd lookup table size (7-byte field at 48).
    let mut b = good.clone();
    b[48..55].copy_from_slice(&[0xFF; 7]);
    assert!(matches!(
        split_bytes(&b, 4096).unwrap_err(),
        wim::Error::TooLarge {
            what: "lookup table",
            ..
        }
    ));
    // Absurd XML size.
    let mut b = good.clone();
    b[72..79].copy_from_slice(&[0xFF; 7]);
    assert!(matches!(
        split_bytes(&b, 4096).unwrap_err(),
        wim::Error::TooLarge {
            what: "XML data",
            ..
        }
    ));
    // Already split.
    let mut b = good.clone();
    b[42] = 3;
    assert!(matches!(
        split_bytes(&b, 4096).unwrap_err(),
        wim::Error::AlreadySplit { part: 1, total: 3 }
    ));
    // A resource past the end, and a solid flag, in the first table entry.
    let table = u64::from_le_bytes(good[56..64].try_into().unwrap()) as usize;
    let mut b = good.clone();
    put_u64(&mut b, table + 8, u64::MAX - 5);
    assert!(matches!(
        split_bytes(&b, 4096).unwrap_err(),
        wim::Error::OutOfRange {
            what: "resource",
            ..
        }
    ));
    let mut b = good.clone();
    b[table + 7] |= 0x10;
    assert!(matches!(
        split_bytes(&b, 4096).unwrap_err(),
        wim::Error::Solid { .. }
    ));
    assert!(matches!(
        split_bytes(&good, 0).unwrap_err(),
        wim::Error::ZeroLimit
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Mutated and truncated WIMs: an answer or a typed error, never a
    /// panic, and every part stays within the file's ranges.
    #[test]
    fn mutated_wims_never_panic(
        edits in proptest::collection::vec((0usize..400, any::<u8>()), 1..12),
        table_edits in proptest::collection::vec((0usize..200, any::<u8>()), 0..8),
        cut in 0usize..64,
        limit in 1u64..20_000,
    ) {
        if !common::require_tools("mutated_wims_never_panic", &["wimlib-imagex"]) {
            return Ok(());
        }
        let mut b = small_wim().clone();
        let table = u64::from_le_bytes(b[56..64].try_into().unwrap()) as usize;
        for (at, v) in edits {
            if at < b.len() { b[at] = v; }
        }
        for (at, v) in table_edits {
            if table + at < b.len() { b[table + at] = v; }
        }
        let len = b.len();
        b.truncate(len - cut.min(len));
        if let Ok(parts) = split_bytes(&b, limit) {
            for p in &parts {
                let mut v = Vec::new();
                materialize(&b, &p.content, &mut v);
                prop_assert_eq!(v.len() as u64, p.size());
            }
        }
    }
}
