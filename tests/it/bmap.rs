//! Block maps (issue 21): bmaps made by the real `bmaptool create`
//! (Debian `bmap-tools`), images written through them onto loop devices
//! filled with a known pattern, and compared with what `bmaptool copy`
//! writes onto another device from the same pattern (the oracle: both
//! sticks identical byte for byte, but for the last MiB bootstick's tail
//! wipe zeroes); a range whose checksum differs, an edited bmap and the
//! bmap of another image refused as bad input (docs/cli.md, "Block maps").

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::{self, bootstick, require_root, require_tools, stderr, write_json, LoopDevice};

const MIB: u64 = 1 << 20;
/// The image's size; the sticks are larger, so their last MiB (which
/// bootstick zeroes) lies outside it.
const IMAGE: u64 = 16 * MIB;
const STICK: u64 = 24 * MIB;
/// What the sticks hold before they are written.
const PATTERN: u8 = 0xA5;

/// A 16 MiB sparse disk image: a GPT made by sfdisk, and pseudo-random data
/// written into two regions (one not block-aligned), the rest holes; its
/// bmap made by `bmaptool create` as `bmap_name` beside it.
fn sparse_image(dir: &Path, bmap_name: &str) -> (PathBuf, PathBuf) {
    let img = dir.join("disk.img");
    common::sfdisk_image(
        &img,
        IMAGE,
        "label: gpt\nsize=4MiB, type=uefi\ntype=linux\n",
    );
    let noise = dir.join("noise");
    common::pseudo_random_file(&noise, 1300 * 1024, 21);
    let data = std::fs::read(&noise).unwrap();
    std::fs::remove_file(&noise).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
    f.write_all_at(&data[..300 * 1024], 2 * MIB).unwrap();
    f.write_all_at(&data[300 * 1024..], 9 * MIB + 4096 + 100)
        .unwrap();
    drop(f);
    let bmap = dir.join(bmap_name);
    common::run(
        Command::new("bmaptool")
            .args(["-q", "create", "-o"])
            .arg(&bmap)
            .arg(&img),
    );
    (img, bmap)
}

/// A stick's backing file, full of [`PATTERN`].
fn stick(dir: &Path, name: &str) -> PathBuf {
    let backing = dir.join(name);
    std::fs::write(&backing, vec![PATTERN; STICK as usize]).unwrap();
    backing
}

/// What `bmaptool copy` puts on a fresh stick (the oracle).
fn bmaptool_copy(dir: &Path, image: &Path, bmap: &Path) -> Vec<u8> {
    let theirs = stick(dir, "bmaptool-stick");
    let dev = LoopDevice::attach(&theirs);
    common::run(
        Command::new("bmaptool")
            .args(["-q", "copy", "--bmap"])
            .arg(bmap)
            .arg(image)
            .arg(dev.path()),
    );
    drop(dev);
    let bytes = std::fs::read(&theirs).unwrap();
    std::fs::remove_file(&theirs).unwrap();
    bytes
}

/// The mapped byte ranges of `bmap`, read with plain text matching (not
/// with bootstick's parser), for an image of `image_len` bytes.
fn mapped(bmap: &Path, image_len: u64) -> Vec<(u64, u64)> {
    let text = std::fs::read_to_string(bmap).unwrap();
    let between = |s: &str, a: &str, b: &str| -> String {
        s.split(a)
            .nth(1)
            .unwrap()
            .split(b)
            .next()
            .unwrap()
            .trim()
            .to_string()
    };
    let bs: u64 = between(&text, "<BlockSize>", "</BlockSize>")
        .parse()
        .unwrap();
    text.split("<Range")
        .skip(1)
        .map(|r| {
            let t = between(r, ">", "<");
            let (a, b) = t.split_once('-').unwrap_or((&t, &t));
            let (a, b): (u64, u64) = (a.trim().parse().unwrap(), b.trim().parse().unwrap());
            (a * bs, ((b + 1) * bs).min(image_len))
        })
        .collect()
}

/// Asserts `ours` (a stick bootstick wrote) equals `theirs` (bmaptool
/// copy's) but for the last MiB, which bootstick zeroes; that the mapped
/// ranges hold the image and that the unmapped ones kept the pattern.
fn assert_like_bmaptool(ours: &[u8], theirs: &[u8], image: &[u8], ranges: &[(u64, u64)]) {
    let tail = (STICK - MIB) as usize;
    assert!(
        ours[..tail] == theirs[..tail],
        "bootstick and bmaptool copy wrote the same bytes (first difference at {:?})",
        ours.iter().zip(theirs).position(|(a, b)| a != b)
    );
    assert!(
        ours[tail..].iter().all(|&x| x == 0),
        "the last MiB is wiped"
    );
    let mut at = 0u64;
    for &(s, e) in ranges {
        assert!(
            ours[at as usize..s as usize].iter().all(|&x| x == PATTERN),
            "unmapped {at}..{s} kept the stick's old bytes"
        );
        assert!(
            ours[s as usize..e as usize] == image[s as usize..e as usize],
            "{s}..{e}"
        );
        at = e;
    }
    assert!(ours[at as usize..IMAGE as usize]
        .iter()
        .all(|&x| x == PATTERN));
}

/// Written through the bmap found beside it, a stick holds what `bmaptool
/// copy` puts on another one from the same starting bytes; the start and
/// result say how much was mapped and skipped; `compare` compares the
/// mapped ranges only; a file target is the image, its unmapped end
/// included; `--no-bmap` writes the whole image.
#[test]
fn a_bmap_write_equals_bmaptool_copy() {
    let t = "bmap::a_bmap_write_equals_bmaptool_copy";
    if !require_root(t) || !require_tools(t, &["losetup", "bmaptool", "sfdisk"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (img, bmap) = sparse_image(dir.path(), "disk.img.bmap");
    let image = std::fs::read(&img).unwrap();
    let ranges = mapped(&bmap, IMAGE);
    let mapped_bytes: u64 = ranges.iter().map(|(s, e)| e - s).sum();
    assert!(
        mapped_bytes < 2 * MIB,
        "the image is mostly holes: {ranges:?}"
    );

    let ours = stick(dir.path(), "ours");
    let dev = LoopDevice::attach(&ours);
    let (out, lines) = write_json(&img, dev.path(), &[]);
    let compared = bootstick()
        .args(["compare", "--json"])
        .arg(&img)
        .arg(dev.path())
        .output()
        .unwrap();
    drop(dev);
    assert!(out.status.success(), "{}", stderr(&out));
    let start = &lines[0];
    assert_eq!(start["bmap"]["mapped_bytes"], mapped_bytes, "{start}");
    assert_eq!(start["bmap"]["discovered"], true, "{start}");
    assert_eq!(start["bmap"]["path"], bmap.to_str().unwrap(), "{start}");
    let result = lines.last().unwrap();
    assert_eq!(result["verified"], true, "{result}");
    assert_eq!(result["bmap"]["mapped_bytes"], mapped_bytes, "{result}");
    assert_eq!(
        result["bmap"]["skipped_bytes"],
        IMAGE - mapped_bytes,
        "{result}"
    );
    assert_eq!(result["bmap"]["image_bytes"], IMAGE, "{result}");
    assert_eq!(result["bmap"]["file_checksum"], true, "{result}");
    assert_eq!(result["bmap"]["checksum"], "sha256", "{result}");
    assert_eq!(result["bmap"]["checked_ranges"], ranges.len(), "{result}");
    // What went out: the mapped bytes and the last MiB's wipe.
    assert_eq!(result["bytes_written"], mapped_bytes + MIB, "{result}");
    assert!(compared.status.success(), "{}", stderr(&compared));
    let compared = common::json_result(&compared.stdout);
    assert_eq!(compared["bytes_compared"], mapped_bytes, "{compared}");

    let theirs = bmaptool_copy(dir.path(), &img, &bmap);
    assert_like_bmaptool(&std::fs::read(&ours).unwrap(), &theirs, &image, &ranges);

    // A file target is a new file: through a bmap it is the image byte
    // for byte (unmapped ranges are holes), its unmapped end included.
    let longer = dir.path().join("longer.img");
    std::fs::copy(&img, &longer).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&longer)
        .unwrap()
        .set_len(IMAGE + MIB)
        .unwrap();
    let longer_bmap = dir.path().join("longer.bmap");
    common::run(
        Command::new("bmaptool")
            .args(["-q", "create", "-o"])
            .arg(&longer_bmap)
            .arg(&longer),
    );
    let file_target = dir.path().join("stick.img");
    let (out, lines) = write_json(&longer, &file_target, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!lines.last().unwrap()["bmap"].is_null());
    common::run(Command::new("cmp").arg(&longer).arg(&file_target));
    std::fs::remove_file(&file_target).unwrap();

    // --no-bmap writes the whole image.
    let full = stick(dir.path(), "full");
    let dev = LoopDevice::attach(&full);
    let (out, lines) = write_json(&img, dev.path(), &["--no-bmap"]);
    drop(dev);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(lines.last().unwrap()["bmap"].is_null());
    let f = std::fs::read(&full).unwrap();
    assert!(f[..IMAGE as usize] == image[..], "the whole image");
}

/// `x.img.xz` and `x.img.gz` find `x.img.bmap` (the bmap of the image
/// inside) and `x.bmap`; decoded on the fly, only the mapped ranges are
/// written, as bmaptool copy writes them; a stream on standard input
/// takes `--bmap` too.
#[test]
fn a_compressed_image_is_written_through_the_bmap_of_the_image_inside() {
    let t = "bmap::a_compressed_image_is_written_through_the_bmap_of_the_image_inside";
    if !require_root(t) || !require_tools(t, &["losetup", "bmaptool", "sfdisk", "xz", "gzip"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (img, bmap) = sparse_image(dir.path(), "disk.img.bmap");
    let image = std::fs::read(&img).unwrap();
    let ranges = mapped(&bmap, IMAGE);
    let mapped_bytes: u64 = ranges.iter().map(|(s, e)| e - s).sum();
    let theirs = bmaptool_copy(dir.path(), &img, &bmap);
    common::run(Command::new("xz").args(["-k", "-T0"]).arg(&img));
    common::run(Command::new("gzip").arg("-k").arg(&img));
    let short = dir.path().join("disk.bmap");
    for (name, bmap_at) in [("disk.img.xz", &bmap), ("disk.img.gz", &short)] {
        if bmap_at == &short {
            std::fs::rename(&bmap, &short).unwrap();
        }
        let ours = stick(dir.path(), "ours");
        let dev = LoopDevice::attach(&ours);
        let (out, lines) = write_json(&dir.path().join(name), dev.path(), &[]);
        drop(dev);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        let result = lines.last().unwrap();
        assert_eq!(
            result["bmap"]["path"],
            bmap_at.to_str().unwrap(),
            "{result}"
        );
        assert_eq!(result["bmap"]["mapped_bytes"], mapped_bytes, "{result}");
        assert_eq!(result["image_bytes"], IMAGE, "{result}");
        assert_like_bmaptool(&std::fs::read(&ours).unwrap(), &theirs, &image, &ranges);
    }
    let ours = stick(dir.path(), "ours");
    let dev = LoopDevice::attach(&ours);
    let xz = std::fs::read(dir.path().join("disk.img.xz")).unwrap();
    let mut child = common::spawn_with_input(
        bootstick()
            .args(["write", "--yes", "--json", "--bmap"])
            .arg(&short)
            .arg("-")
            .arg(dev.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
        &xz,
    );
    assert!(child.wait().unwrap().success());
    drop(dev);
    assert_like_bmaptool(&std::fs::read(&ours).unwrap(), &theirs, &image, &ranges);
}

/// The bmap with one hex digit of a range checksum changed.
fn edit_range_checksum(bmap: &Path, range: usize) -> String {
    let text = std::fs::read_to_string(bmap).unwrap();
    let at = text.match_indices("chksum=\"").nth(range).unwrap().0 + "chksum=\"".len();
    let digit = &text[at..at + 1];
    let other = if digit == "0" { "1" } else { "0" };
    format!("{}{other}{}", &text[..at], &text[at + 1..])
}

/// `text` with its BmapFileChecksum recomputed as bmaptool computes it
/// (sha256sum of the file with the digits as zeros).
fn with_file_checksum(dir: &Path, text: &str) -> String {
    let value = text
        .split("<BmapFileChecksum>")
        .nth(1)
        .unwrap()
        .split("</BmapFileChecksum>")
        .next()
        .unwrap()
        .trim()
        .to_string();
    let zeroed = text.replace(&value, &"0".repeat(value.len()));
    let tmp = dir.join("zeroed.bmap");
    std::fs::write(&tmp, &zeroed).unwrap();
    let sum = common::run(Command::new("sha256sum").arg(&tmp));
    zeroed.replace(&"0".repeat(value.len()), &sum[..64])
}

fn sha256sum(p: &Path) -> String {
    common::run(Command::new("sha256sum").arg(p))[..64].to_string()
}

/// A range whose bytes do not have the bmap's checksum (its digit edited,
/// the file's own checksum recomputed so only the range check can catch
/// it) is a corrupt image: exit 3, as bmaptool copy refuses it too. The
/// last range fails after the others went out, so the target is
/// incomplete and its first MiB, held back, is zeroed whole (the mapped
/// bytes and the stick's old ones): no partition table (sfdisk finds
/// none). The first range fails before anything went out:
/// untouched. Left with its old file checksum, the edited bmap is refused
/// by that before anything is written.
#[test]
fn a_range_checksum_mismatch_is_bad_input() {
    let t = "bmap::a_range_checksum_mismatch_is_bad_input";
    if !require_root(t) || !require_tools(t, &["losetup", "bmaptool", "sfdisk", "sha256sum"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (img, bmap) = sparse_image(d, "disk.img.bmap");
    let last = mapped(&bmap, IMAGE).len() - 1;
    for (range, recompute, state, says) in [
        (
            last,
            true,
            "incomplete",
            "do not have the sha256 checksum the bmap records",
        ),
        (
            0,
            true,
            "untouched",
            "do not have the sha256 checksum the bmap records",
        ),
        (
            last,
            false,
            "untouched",
            "the bmap is corrupt or was edited",
        ),
    ] {
        let what = format!("range {range}, file checksum recomputed: {recompute}");
        let edited = edit_range_checksum(&bmap, range);
        let edited = if recompute {
            with_file_checksum(d, &edited)
        } else {
            edited
        };
        let edited_path = d.join("edited.bmap");
        std::fs::write(&edited_path, edited).unwrap();
        let backing = stick(d, "stick");
        let before = sha256sum(&backing);
        let dev = LoopDevice::attach(&backing);
        let (out, lines) = write_json(&img, dev.path(), &["--bmap", edited_path.to_str().unwrap()]);
        // The oracle refuses it too.
        let theirs = Command::new("bmaptool")
            .args(["-q", "copy", "--bmap"])
            .arg(&edited_path)
            .arg(&img)
            .arg(d.join("bmaptool-out"))
            .output()
            .unwrap();
        assert!(!theirs.status.success(), "{what}: bmaptool copy refuses it");
        let table = Command::new("sfdisk")
            .arg("--dump")
            .arg(dev.path())
            .output()
            .unwrap();
        drop(dev);
        assert_eq!(out.status.code(), Some(3), "{what}: {}", stderr(&out));
        let result = lines.last().unwrap();
        let msg = result["error"].as_str().unwrap();
        assert!(msg.contains(says), "{what}: {msg}");
        match state {
            "incomplete" => {
                assert_eq!(result["target_state"], "incomplete", "{what}: {result}");
                assert_eq!(result["boot_area_zeroed"], true, "{what}: {result}");
                assert!(msg.contains("it will not boot"), "{msg}");
                assert!(!table.status.success(), "{what}: sfdisk finds no table");
                let data = std::fs::read(&backing).unwrap();
                assert!(data[..MIB as usize].iter().all(|&x| x == 0), "{what}");
            }
            _ => {
                assert_ne!(result["target_state"], "incomplete", "{what}: {result}");
                assert_eq!(
                    sha256sum(&backing),
                    before,
                    "{what}: the stick is unchanged"
                );
            }
        }
    }
}

/// The bmap of an image of another size is refused before anything is
/// written (exit 3, before any phase, the stick's SHA-256 unchanged),
/// for an image file and for an xz image (which records its size).
#[test]
fn a_bmap_of_another_size_is_refused_before_writing() {
    let t = "bmap::a_bmap_of_another_size_is_refused_before_writing";
    if !require_root(t) || !require_tools(t, &["losetup", "bmaptool", "sfdisk", "xz", "sha256sum"])
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (img, _) = sparse_image(d, "disk.img.bmap");
    let other = d.join("other.img");
    std::fs::copy(&img, &other).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&other)
        .unwrap()
        .set_len(IMAGE + MIB)
        .unwrap();
    let other_bmap = d.join("other.bmap");
    common::run(
        Command::new("bmaptool")
            .args(["-q", "create", "-o"])
            .arg(&other_bmap)
            .arg(&other),
    );
    common::run(Command::new("xz").args(["-k", "-T0"]).arg(&img));
    for image in [img.clone(), d.join("disk.img.xz")] {
        let backing = stick(d, "stick");
        let before = sha256sum(&backing);
        let dev = LoopDevice::attach(&backing);
        let (out, lines) = write_json(
            &image,
            dev.path(),
            &["--bmap", other_bmap.to_str().unwrap()],
        );
        drop(dev);
        assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
        let msg = lines.last().unwrap()["error"].as_str().unwrap().to_string();
        assert!(
            msg.contains(&format!(
                "an image of {} bytes, but the image is {IMAGE} bytes",
                IMAGE + MIB
            )),
            "{msg}"
        );
        assert!(msg.contains("nothing was written"), "{msg}");
        assert!(
            lines
                .iter()
                .all(|l| l["event"] != "phase" && l["event"] != "progress"),
            "refused before any phase: {lines:?}"
        );
        assert_eq!(sha256sum(&backing), before, "the stick is unchanged");
    }
}
