//! Compressed images (issue 21): compressed by the real tools, written
//! decoded onto files and loop devices, and compared with `cmp` against
//! the original; corrupt, truncated and too-large streams fail as
//! documented (docs/cli.md, "Compressed images").

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{
    bootstick, json_lines, pseudo_random_file, require_root, require_tools, stderr, write_json,
    LoopDevice,
};

const MIB: u64 = 1 << 20;

/// A disk image of `len` bytes: a GPT (made by sfdisk) with two
/// partitions, random data in them with zero runs between, so it
/// compresses a little and has structure `inspect` can see.
fn disk_image(dir: &Path, name: &str, len: u64) -> PathBuf {
    table_image(dir, name, len, "gpt")
}

/// As [`disk_image`], with an MBR: nothing is read from its end to decide
/// how to write it (a GPT's backup header is), so damage near the end of
/// the stream is found while writing.
fn mbr_image(dir: &Path, name: &str, len: u64) -> PathBuf {
    table_image(dir, name, len, "dos")
}

fn table_image(dir: &Path, name: &str, len: u64, label: &str) -> PathBuf {
    let img = dir.join(name);
    let script = match label {
        "gpt" => "label: gpt\nsize=1MiB, type=uefi\ntype=linux\n",
        _ => "label: dos\nsize=1MiB, type=ef\ntype=83\n",
    };
    common::sfdisk_image(&img, len, script);
    let noise = dir.join(format!("{name}.noise"));
    pseudo_random_file(&noise, len / 3, len);
    let data = std::fs::read(&noise).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
    use std::os::unix::fs::FileExt;
    // Random data from 1 MiB on, then zeros, then more random data, ending
    // 64 KiB before the backup GPT.
    f.write_all_at(&data[..data.len() / 2], MIB).unwrap();
    let second = len - 64 * 1024 - (data.len() / 2) as u64;
    f.write_all_at(&data[data.len() / 2..], second).unwrap();
    // An odd tail: the image's end is not on a sector boundary (a GPT's
    // backup header outside the image is allowed; an MBR partition that
    // ends past it is a truncated image).
    if label == "gpt" {
        f.set_len(len - 333).unwrap();
    }
    img
}

/// Compresses `img` with `tool args… img` into `out` (as a user would, so
/// zstd records the content size).
fn compress(img: &Path, out: &Path, tool: &[&str]) {
    let status = Command::new(tool[0])
        .args(&tool[1..])
        .arg(img)
        .stdout(std::fs::File::create(out).unwrap())
        .status()
        .unwrap();
    assert!(status.success(), "{tool:?} failed");
}

/// Compresses `img` read on stdin (a streaming compressor: zstd then
/// records no content size).
fn compress_stream(img: &Path, out: &Path, tool: &[&str]) {
    let status = Command::new(tool[0])
        .args(&tool[1..])
        .stdin(std::fs::File::open(img).unwrap())
        .stdout(std::fs::File::create(out).unwrap())
        .status()
        .unwrap();
    assert!(status.success(), "{tool:?} failed");
}

/// The compressors under test, as run from the command line: name,
/// command, format, whether the size is recorded, whether the image is
/// piped in.
type Tool = (
    &'static str,
    &'static [&'static str],
    &'static str,
    bool,
    bool,
);
const TOOLS: &[Tool] = &[
    // Many blocks: liblzma's multi-threaded decoder splits the work.
    (
        "xz-T0",
        &["xz", "-T0", "--block-size=1MiB", "-c"],
        "xz",
        true,
        false,
    ),
    // One block, one thread.
    ("xz", &["xz", "-T1", "-c"], "xz", true, false),
    ("zstd-T0", &["zstd", "-q", "-T0", "-c"], "zstd", true, false),
    // From a pipe zstd cannot record the content size.
    ("zstd-pipe", &["zstd", "-q", "-c"], "zstd", false, true),
    ("gzip", &["gzip", "-c"], "gzip", false, false),
    ("pigz", &["pigz", "-c"], "gzip", false, false),
    ("bzip2", &["bzip2", "-c"], "bzip2", false, false),
    // 64 KiB blocks (-B4), so the image spans many; from a pipe, as lz4
    // then writes frames without a content size either way.
    ("lz4", &["lz4", "-q", "-B4", "-c"], "lz4", false, true),
];

const TOOL_NAMES: &[&str] = &[
    "xz", "zstd", "gzip", "pigz", "bzip2", "lz4", "cmp", "sfdisk",
];

/// Every compressor's output, written to a file target, is the original
/// image byte for byte (`cmp`), verified by reading it back, and reported
/// as decompressed.
#[test]
fn every_compressor_round_trips_to_a_file() {
    let t = "every_compressor_round_trips_to_a_file";
    if !require_tools(t, TOOL_NAMES) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = disk_image(dir.path(), "disk.img", 6 * MIB);
    let len = std::fs::metadata(&img).unwrap().len();
    for (name, tool, format, known, piped) in TOOLS {
        let packed = dir.path().join(format!("disk.img.{name}"));
        if *piped {
            compress_stream(&img, &packed, tool);
        } else {
            compress(&img, &packed, tool);
        }
        let target = dir.path().join(format!("out-{name}.img"));
        let (out, lines) = write_json(&packed, &target, &["--digest"]);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        common::run(Command::new("cmp").arg(&img).arg(&target));
        let start = &lines[0];
        assert_eq!(start["compressed"]["format"], *format, "{name}: {start}");
        assert_eq!(
            start["image_bytes"],
            if *known {
                serde_json::json!(len)
            } else {
                serde_json::Value::Null
            },
            "{name}: the start line says the size where the format records it: {start}"
        );
        let result = lines.last().unwrap();
        assert_eq!(result["ok"], true, "{name}: {result}");
        assert_eq!(result["verified"], true, "{name}: {result}");
        assert_eq!(result["image_bytes"], len, "{name}: {result}");
        // `compare` reads the target against the decompressed image too,
        // and names a differing byte.
        let cmp = bootstick()
            .arg("compare")
            .arg(&packed)
            .arg(&target)
            .output()
            .unwrap();
        assert!(cmp.status.success(), "{name}: compare: {}", stderr(&cmp));
        if *name == "xz-T0" || *name == "gzip" {
            let copy = dir.path().join(format!("flipped-{name}.img"));
            std::fs::copy(&target, &copy).unwrap();
            common::flip_byte(&copy, 3 * MIB + 5);
            let cmp = bootstick()
                .arg("compare")
                .arg(&packed)
                .arg(&copy)
                .output()
                .unwrap();
            assert_eq!(cmp.status.code(), Some(6), "{name}: {}", stderr(&cmp));
            assert!(
                stderr(&cmp).contains(&format!("at byte {}", 3 * MIB + 5)),
                "{name}: {}",
                stderr(&cmp)
            );
        }
        let sha = common::run(Command::new("sha256sum").arg(&img));
        assert_eq!(
            result["decompressed_digest"]["hex"],
            sha.split_whitespace().next().unwrap(),
            "{name}: --digest is the decompressed image's SHA-256"
        );
    }
}

/// Written to a loop device, the decompressed image is on the device and
/// the device's last MiB is zeroed (the tail wipe), for a format that
/// records its size (xz) and one that does not (gzip).
#[test]
fn compressed_images_on_a_loop_device() {
    let t = "compressed_images_on_a_loop_device";
    if !require_root(t) || !require_tools(t, &["losetup", "xz", "gzip", "cmp", "sfdisk"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = disk_image(dir.path(), "disk.img", 6 * MIB);
    let len = std::fs::metadata(&img).unwrap().len();
    for (name, tool) in [
        ("xz", &["xz", "-T0", "--block-size=1MiB", "-c"][..]),
        ("gz", &["gzip", "-c"][..]),
    ] {
        let packed = dir.path().join(format!("disk.img.{name}"));
        compress(&img, &packed, tool);
        let backing = dir.path().join(format!("stick-{name}"));
        std::fs::write(&backing, vec![0xA5u8; (16 * MIB) as usize]).unwrap();
        let dev = LoopDevice::attach(&backing);
        let (out, lines) = write_json(&packed, dev.path(), &[]);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        let result = lines.last().unwrap();
        assert_eq!(result["verified"], true, "{name}: {result}");
        drop(dev);
        common::run(
            Command::new("cmp")
                .arg("-n")
                .arg(len.to_string())
                .arg(&img)
                .arg(&backing),
        );
        let data = std::fs::read(&backing).unwrap();
        assert!(
            data[len as usize..(15 * MIB) as usize]
                .iter()
                .all(|&b| b == 0xA5),
            "{name}: bytes between the image and the last MiB are left alone"
        );
        assert!(
            data[(15 * MIB) as usize..].iter().all(|&b| b == 0),
            "{name}: the last MiB is zeroed"
        );
    }
}

/// Writes `packed` to a fresh 16 MiB loop device and returns the exit code,
/// the result line and stderr.
fn write_to_loop(dir: &Path, packed: &Path) -> (Option<i32>, serde_json::Value, String) {
    let backing = dir.join(format!(
        "stick-{}",
        packed.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&backing, vec![0xA5u8; (16 * MIB) as usize]).unwrap();
    let dev = LoopDevice::attach(&backing);
    let (out, lines) = write_json(packed, dev.path(), &[]);
    (
        out.status.code(),
        lines.last().unwrap().clone(),
        stderr(&out),
    )
}

/// A byte flipped in the middle of the compressed stream fails as bad
/// input (exit 3) with the format's own error and the decompressed offset;
/// the result says the target holds an incomplete image (chunks before the
/// damage were written).
#[test]
fn a_flipped_byte_mid_stream_is_bad_input_and_leaves_the_target_incomplete() {
    let t = "a_flipped_byte_mid_stream_is_bad_input_and_leaves_the_target_incomplete";
    if !require_root(t)
        || !require_tools(
            t,
            &["losetup", "xz", "zstd", "gzip", "bzip2", "lz4", "sfdisk"],
        )
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = mbr_image(dir.path(), "disk.img", 12 * MIB);
    for (name, tool) in [
        ("xz", &["xz", "-T0", "--block-size=1MiB", "-c"][..]),
        ("zst", &["zstd", "-q", "-T0", "-c"][..]),
        ("gz", &["gzip", "-c"][..]),
        ("bz2", &["bzip2", "-c"][..]),
        // lz4's default 4 MiB blocks: the damage is found by the block
        // decoder or, at the frame's end, its content checksum.
        ("lz4", &["lz4", "-q", "-c"][..]),
    ] {
        let packed = dir.path().join(format!("disk.img.{name}"));
        compress(&img, &packed, tool);
        let clen = std::fs::metadata(&packed).unwrap().len();
        common::flip_byte(&packed, clen * 3 / 4);
        let (code, result, err) = write_to_loop(dir.path(), &packed);
        assert_eq!(code, Some(3), "{name}: {err}");
        assert_eq!(result["ok"], false, "{name}: {result}");
        assert_eq!(result["target_state"], "incomplete", "{name}: {result}");
        let msg = result["error"].as_str().unwrap();
        assert!(
            msg.contains("stream is corrupt at decompressed byte"),
            "{name}: {msg}"
        );
        assert!(
            msg.contains("incomplete image and must be written again"),
            "{name}: {msg}"
        );
        // The first MiB was held back until the stream proved whole: the
        // device holds no partition table (it held 0xA5 before).
        assert!(msg.contains("it will not boot"), "{name}: {msg}");
        assert_eq!(result["boot_area_zeroed"], true, "{name}: {result}");
        let stick = std::fs::read(dir.path().join(format!("stick-disk.img.{name}"))).unwrap();
        assert!(
            stick[..MIB as usize].iter().all(|&b| b == 0),
            "{name}: the first MiB is zeroed"
        );
        let orig = std::fs::read(&img).unwrap();
        assert_eq!(
            &stick[MIB as usize..2 * MIB as usize],
            &orig[MIB as usize..2 * MIB as usize],
            "{name}: the bytes after it were written"
        );
    }
}

/// A stream cut short: gzip, bzip2 and lz4 (no size recorded) fail when the
/// decoder runs out of input, after writing what came before (exit 3,
/// incomplete); xz and zstd are refused before anything is written,
/// because the framing that records the size is missing (exit 3).
#[test]
fn a_truncated_stream_is_bad_input() {
    let t = "a_truncated_stream_is_bad_input";
    if !require_root(t)
        || !require_tools(
            t,
            &["losetup", "xz", "zstd", "gzip", "bzip2", "lz4", "sfdisk"],
        )
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = mbr_image(dir.path(), "disk.img", 12 * MIB);
    for (name, tool, state) in [
        ("gz", &["gzip", "-c"][..], "incomplete"),
        ("bz2", &["bzip2", "-c"][..], "incomplete"),
        ("lz4", &["lz4", "-q", "-c"][..], "incomplete"),
        ("xz", &["xz", "-T0", "-c"][..], "untouched"),
        ("zst", &["zstd", "-q", "-c"][..], "untouched"),
    ] {
        let packed = dir.path().join(format!("disk.img.{name}"));
        compress(&img, &packed, tool);
        let clen = std::fs::metadata(&packed).unwrap().len();
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&packed)
            .unwrap();
        f.set_len(clen * 3 / 4 + 1).unwrap();
        let (code, result, err) = write_to_loop(dir.path(), &packed);
        assert_eq!(code, Some(3), "{name}: {err}");
        let msg = result["error"].as_str().unwrap();
        assert!(msg.contains("truncated download?"), "{name}: {msg}");
        if state == "incomplete" {
            assert_eq!(result["target_state"], state, "{name}: {result}");
            assert!(msg.contains("stream ends early"), "{name}: {msg}");
        } else {
            assert!(
                result.get("target_state").is_none_or(|s| s == "untouched"),
                "{name}: refused before writing: {result}"
            );
        }
    }
}

/// Where the format records the uncompressed size (xz index, zstd frame
/// header), a target too small is refused before anything is written
/// (exit 4, the device keeps its bytes). gzip records none: the write
/// stops at the device's end, "larger than the target", exit 4, and the
/// result says the target is incomplete — never wrapped, never "verified".
#[test]
fn an_image_larger_than_the_target() {
    let t = "an_image_larger_than_the_target";
    if !require_root(t) || !require_tools(t, &["losetup", "xz", "zstd", "gzip", "sfdisk"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = disk_image(dir.path(), "disk.img", 12 * MIB);
    for (name, tool) in [
        ("xz", &["xz", "-T0", "-c"][..]),
        ("zst", &["zstd", "-q", "-c"][..]),
        ("gz", &["gzip", "-c"][..]),
    ] {
        let packed = dir.path().join(format!("disk.img.{name}"));
        compress(&img, &packed, tool);
        let backing = dir.path().join(format!("small-{name}"));
        std::fs::write(&backing, vec![0xA5u8; (8 * MIB) as usize]).unwrap();
        let dev = LoopDevice::attach(&backing);
        let (out, lines) = write_json(&packed, dev.path(), &[]);
        drop(dev);
        let result = lines.last().unwrap();
        assert_eq!(out.status.code(), Some(4), "{name}: {}", stderr(&out));
        let msg = result["error"].as_str().unwrap();
        let data = std::fs::read(&backing).unwrap();
        if name == "gz" {
            assert!(msg.contains("the image is larger than the target"), "{msg}");
            assert_eq!(result["target_state"], "incomplete", "{result}");
            assert!(
                lines.iter().all(|l| l["verified"] != true),
                "never claimed verified"
            );
            let orig = std::fs::read(&img).unwrap();
            let mib = MIB as usize;
            assert_eq!(
                &data[mib..],
                &orig[mib..data.len()],
                "the device holds the image's first 8 MiB, not a wrapped write"
            );
            // Its first MiB was held back until the stream ended, which it
            // did not on this device: zeroed, no partition table.
            assert!(
                data[..mib].iter().all(|&b| b == 0),
                "the first MiB is zeroed"
            );
            assert!(msg.contains("it will not boot"), "{msg}");
            assert_eq!(result["boot_area_zeroed"], true, "{result}");
        } else {
            assert!(
                msg.contains("but the image needs 12582579 bytes"),
                "{name}: {msg}"
            );
            assert!(
                data.iter().all(|&b| b == 0xA5),
                "{name}: refused before any byte was written"
            );
        }
    }
}

/// `inspect` looks through compression: the partition table and decision
/// of the compressed image are those of the image itself.
#[test]
fn inspect_looks_through_compression() {
    let t = "inspect_looks_through_compression";
    if !require_tools(t, &["xz", "bzip2", "sfdisk"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = disk_image(dir.path(), "disk.img", 4 * MIB);
    let inspect = |p: &Path| {
        let out = bootstick()
            .args(["inspect", "--json"])
            .arg(p)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        common::json_result(&out.stdout)
    };
    let plain = inspect(&img);
    for (name, tool) in [("xz", &["xz", "-c"][..]), ("bz2", &["bzip2", "-c"][..])] {
        let packed = dir.path().join(format!("disk.img.{name}"));
        compress(&img, &packed, tool);
        let seen = inspect(&packed);
        assert_eq!(seen["partitions"], plain["partitions"], "{name}");
        assert_eq!(seen["decision"], plain["decision"], "{name}");
        assert_eq!(seen["size"], plain["size"], "{name}");
        assert_eq!(
            seen["compressed"]["decompressed_bytes"], plain["size"],
            "{name}"
        );
    }
}

/// A checksum of the compressed file (what Raspberry Pi and Armbian
/// publish) is checked over the compressed bytes, and the bytes decoded
/// onto the target are read through that check's block digests.
#[test]
fn a_checksum_of_the_compressed_file_is_enforced() {
    let t = "a_checksum_of_the_compressed_file_is_enforced";
    if !require_tools(t, &["xz", "sha256sum", "cmp", "sfdisk"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = disk_image(dir.path(), "disk.img", 4 * MIB);
    let packed = dir.path().join("disk.img.xz");
    compress(&img, &packed, &["xz", "-c"]);
    let sum = common::run(Command::new("sha256sum").arg(&packed));
    let sum = sum.split_whitespace().next().unwrap().to_string();
    let target = dir.path().join("ok.img");
    let (out, lines) = write_json(&packed, &target, &["--sha256", &sum]);
    assert!(out.status.success(), "{}", stderr(&out));
    common::run(Command::new("cmp").arg(&img).arg(&target));
    assert_eq!(lines[0]["source_check"]["sha256"], sum, "{}", lines[0]);
    let wrong = "0".repeat(64);
    let bad = dir.path().join("bad.img");
    let (out, _) = write_json(&packed, &bad, &["--sha256", &wrong]);
    assert_eq!(out.status.code(), Some(11), "{}", stderr(&out));
    assert!(!bad.exists(), "nothing written on a mismatch");
}

/// A compressed ISO that needs a built layout (not hybrid) is refused
/// before anything is written, saying why; `--raw` copies it decoded.
#[test]
fn a_compressed_non_hybrid_iso_is_refused() {
    let t = "a_compressed_non_hybrid_iso_is_refused";
    if !require_tools(t, &["genisoimage", "xz", "cmp"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("EFI/BOOT")).unwrap();
    std::fs::write(tree.join("EFI/BOOT/BOOTX64.EFI"), vec![0x4Du8; 4096]).unwrap();
    std::fs::write(tree.join("README"), b"hello").unwrap();
    let iso = dir.path().join("plain.iso");
    common::run(
        Command::new("genisoimage")
            .args(["-quiet", "-R", "-J", "-o"])
            .arg(&iso)
            .arg(&tree),
    );
    let packed = dir.path().join("plain.iso.xz");
    compress(&iso, &packed, &["xz", "-c"]);
    let target = dir.path().join("stick.img");
    let (out, lines) = write_json(&packed, &target, &[]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let msg = lines.last().unwrap()["error"].as_str().unwrap().to_string();
    assert!(msg.contains("needs a built layout"), "{msg}");
    assert!(msg.contains("decompress it first"), "{msg}");
    assert!(!target.exists());
    // With --layout given, the byte copy is offered as --raw in its place
    // ("give --raw" alone would exit 2: the two exclude each other).
    let (out, lines) = write_json(&packed, &target, &["--layout"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let msg = lines.last().unwrap()["error"].as_str().unwrap().to_string();
    assert!(msg.contains("it is not hybrid"), "{msg}");
    assert!(msg.contains("replace --layout with --raw"), "{msg}");
    assert!(!target.exists());
    let (out, _) = write_json(&packed, &target, &["--raw"]);
    assert!(out.status.success(), "{}", stderr(&out));
    common::run(Command::new("cmp").arg(&iso).arg(&target));
}

/// Two xz streams one after the other (`cat a.xz b.xz`, as `xz` itself
/// decodes them), one multi-block: both are decoded, and their indexes
/// summed for the size check.
#[test]
fn concatenated_xz_streams_are_decoded_in_full() {
    let t = "concatenated_xz_streams_are_decoded_in_full";
    if !require_tools(t, &["xz", "cmp", "sfdisk"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = disk_image(dir.path(), "disk.img", 3 * MIB);
    let a = dir.path().join("a.xz");
    let b = dir.path().join("b.xz");
    compress(&img, &a, &["xz", "-c"]);
    compress(&img, &b, &["xz", "-T0", "--block-size=512KiB", "-c"]);
    let both = dir.path().join("both.img.xz");
    let mut joined = std::fs::read(&a).unwrap();
    joined.extend(std::fs::read(&b).unwrap());
    std::fs::write(&both, joined).unwrap();
    let mut expected = std::fs::read(&img).unwrap();
    expected.extend(std::fs::read(&img).unwrap());
    let want = dir.path().join("want.img");
    std::fs::write(&want, &expected).unwrap();
    let target = dir.path().join("out.img");
    let (out, lines) = write_json(&both, &target, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(lines[0]["image_bytes"], expected.len(), "{}", lines[0]);
    common::run(Command::new("cmp").arg(&want).arg(&target));
}

/// A vendor-style zip: the image inside a folder beside a README and a
/// macOS `.DS_Store`.
fn vendor_folder(dir: &Path, img: &Path) -> PathBuf {
    let folder = dir.join("vendor");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::copy(img, folder.join("disk.img")).unwrap();
    std::fs::write(
        folder.join("README.txt"),
        "Write disk.img to a stick.\n".repeat(40),
    )
    .unwrap();
    let mut ds = b"\0\0\0\x01Bud1".to_vec();
    ds.resize(6148, 0);
    std::fs::write(folder.join(".DS_Store"), ds).unwrap();
    folder
}

/// Zips `what` (relative to `dir`) into `out` with `tool`: `zip` (its
/// flags) or `7z` (`-mm=` method).
fn zip_with(dir: &Path, out: &Path, tool: &[&str], what: &[&str]) {
    let mut cmd = Command::new(tool[0]);
    if tool[0] == "7z" {
        cmd.args(["a", "-tzip", "-bso0", "-bsp0"]).args(&tool[1..]);
    } else {
        cmd.arg("-q").args(&tool[1..]);
    }
    common::run(cmd.current_dir(dir).arg(out).args(what));
}

/// CRC-32 (IEEE), as zip records it.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A zip of one member `name` holding `img` compressed by the real
/// `zstd` (method 93), laid out by hand from the zip specification
/// (APPNOTE 4.3): neither `zip` nor `7z` (nor Python 3.11's zipfile)
/// writes Zstd members.
fn zstd_zip(img: &Path, name: &str, out: &Path) {
    let raw = std::fs::read(img).unwrap();
    let packed = Command::new("zstd")
        .args(["-q", "-c"])
        .arg(img)
        .output()
        .unwrap();
    assert!(packed.status.success());
    let data = packed.stdout;
    let (crc, csize, usize_) = (crc32(&raw), data.len() as u32, raw.len() as u32);
    let mut z = Vec::new();
    let le16 = |v: &mut Vec<u8>, x: u16| v.extend_from_slice(&x.to_le_bytes());
    let le32 = |v: &mut Vec<u8>, x: u32| v.extend_from_slice(&x.to_le_bytes());
    le32(&mut z, 0x0403_4B50);
    for x in [63u16, 0, 93, 0, 0x21] {
        le16(&mut z, x);
    }
    for x in [crc, csize, usize_] {
        le32(&mut z, x);
    }
    le16(&mut z, name.len() as u16);
    le16(&mut z, 0);
    z.extend_from_slice(name.as_bytes());
    z.extend_from_slice(&data);
    let cd = z.len() as u32;
    le32(&mut z, 0x0201_4B50);
    for x in [63u16, 63, 0, 93, 0, 0x21] {
        le16(&mut z, x);
    }
    for x in [crc, csize, usize_] {
        le32(&mut z, x);
    }
    for x in [name.len() as u16, 0, 0, 0, 0] {
        le16(&mut z, x);
    }
    le32(&mut z, 0);
    le32(&mut z, 0);
    z.extend_from_slice(name.as_bytes());
    let cd_len = z.len() as u32 - cd;
    le32(&mut z, 0x0605_4B50);
    for x in [0u16, 0, 1, 1] {
        le16(&mut z, x);
    }
    le32(&mut z, cd_len);
    le32(&mut z, cd);
    le16(&mut z, 0);
    std::fs::write(out, z).unwrap();
}

const ZIP_TOOLS: &[&str] = &["zip", "7z", "zstd", "cmp", "sfdisk"];

/// A zip holding the image in a folder beside a README and a `.DS_Store`,
/// its member compressed with every method bootstick decodes (Deflate by
/// `zip`, stored by `zip -0`, Deflate64, BZip2 and LZMA by `7z`, Zstd
/// laid out by hand): the image member is found by its bytes, written
/// decoded (`cmp`), verified, and the other entries are listed as
/// ignored; `inspect` sees the image inside.
#[test]
fn zip_archives_with_every_member_method_round_trip() {
    let t = "zip_archives_with_every_member_method_round_trip";
    if !require_tools(t, ZIP_TOOLS) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = disk_image(dir.path(), "disk.img", 6 * MIB);
    let len = std::fs::metadata(&img).unwrap().len();
    vendor_folder(dir.path(), &img);
    let mut archives: Vec<(&str, PathBuf, &str)> = Vec::new();
    for (name, tool, method) in [
        ("deflate", &["zip", "-r"][..], "Deflated"),
        ("stored", &["zip", "-r", "-0"][..], "Stored"),
        ("deflate64", &["7z", "-mm=Deflate64"][..], "Deflate64"),
        ("bzip2", &["7z", "-mm=BZip2"][..], "Bzip2"),
        ("lzma", &["7z", "-mm=LZMA"][..], "Lzma"),
    ] {
        let out = dir.path().join(format!("{name}.zip"));
        zip_with(dir.path(), &out, tool, &["vendor"]);
        archives.push((name, out, method));
    }
    let zst = dir.path().join("zstd.zip");
    zstd_zip(&img, "vendor/disk.img", &zst);
    archives.push(("zstd", zst, "Zstd"));
    for (name, archive, method) in &archives {
        let target = dir.path().join(format!("out-{name}.img"));
        let (out, lines) = write_json(archive, &target, &[]);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        common::run(Command::new("cmp").arg(&img).arg(&target));
        let start = &lines[0];
        let c = &start["compressed"];
        assert_eq!(c["format"], "zip", "{name}: {start}");
        assert_eq!(c["zip"]["entry"], "vendor/disk.img", "{name}: {c}");
        assert_eq!(c["zip"]["method"], *method, "{name}: {c}");
        assert_eq!(
            start["image_bytes"], len,
            "{name}: the recorded size: {start}"
        );
        if *name != "zstd" {
            let ignored: Vec<&str> = c["zip"]["ignored"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            assert!(ignored.contains(&"vendor/README.txt"), "{name}: {c}");
            assert!(ignored.contains(&"vendor/.DS_Store"), "{name}: {c}");
            assert!(
                !ignored.iter().any(|i| i.ends_with("disk.img")),
                "{name}: {c}"
            );
        }
        let result = lines.last().unwrap();
        assert_eq!(result["verified"], true, "{name}: {result}");
        assert_eq!(result["image_bytes"], len, "{name}: {result}");
    }
    // `inspect` and `compare` look into the archive too.
    let inspect = |p: &Path| {
        let out = bootstick()
            .args(["inspect", "--json"])
            .arg(p)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        common::json_result(&out.stdout)
    };
    let plain = inspect(&img);
    let seen = inspect(&archives[2].1);
    assert_eq!(seen["partitions"], plain["partitions"]);
    assert_eq!(seen["decision"], plain["decision"]);
    assert_eq!(seen["compressed"]["zip"]["entry"], "vendor/disk.img");
    let cmp = bootstick()
        .arg("compare")
        .arg(&archives[0].1)
        .arg(dir.path().join("out-deflate.img"))
        .output()
        .unwrap();
    assert!(cmp.status.success(), "{}", stderr(&cmp));
}

/// Two images in one archive: both are listed and nothing is written
/// until one is named (exit 2); `--entry` takes it (by full name or last
/// component). An archive without an image is refused before anything is
/// written (exit 3), listing what it holds; `--entry` for an image that is
/// no archive is a usage error.
#[test]
fn zip_archives_with_two_images_or_none() {
    let t = "zip_archives_with_two_images_or_none";
    if !require_tools(t, &["zip", "cmp", "sfdisk"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = disk_image(dir.path(), "disk.img", 3 * MIB);
    let other = mbr_image(dir.path(), "other.img", 2 * MIB);
    vendor_folder(dir.path(), &img);
    std::fs::copy(&other, dir.path().join("vendor/other.img")).unwrap();
    let two = dir.path().join("two.zip");
    zip_with(dir.path(), &two, &["zip", "-r"], &["vendor"]);
    let target = dir.path().join("stick.img");
    let (out, lines) = write_json(&two, &target, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let msg = lines.last().unwrap()["error"].as_str().unwrap().to_string();
    assert!(msg.contains("holds 2 images"), "{msg}");
    assert!(
        msg.contains("vendor/disk.img") && msg.contains("vendor/other.img"),
        "{msg}"
    );
    assert!(msg.contains("--entry NAME"), "{msg}");
    assert!(!target.exists(), "nothing written");
    for name in ["vendor/other.img", "other.img"] {
        let (out, lines) = write_json(&two, &target, &["--entry", name]);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        assert_eq!(lines[0]["compressed"]["zip"]["entry"], "vendor/other.img");
        common::run(Command::new("cmp").arg(&other).arg(&target));
    }
    let (out, lines) = write_json(&two, &target, &["--entry", "nope.img"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let msg = lines.last().unwrap()["error"].as_str().unwrap().to_string();
    assert!(msg.contains("no file entry named \"nope.img\""), "{msg}");

    let none = dir.path().join("none.zip");
    zip_with(
        dir.path(),
        &none,
        &["zip", "-r"],
        &["vendor/README.txt", "vendor/.DS_Store"],
    );
    let fresh = dir.path().join("fresh.img");
    let (out, lines) = write_json(&none, &fresh, &[]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let msg = lines.last().unwrap()["error"].as_str().unwrap().to_string();
    assert!(msg.contains("holds no disk image or ISO"), "{msg}");
    assert!(msg.contains("vendor/README.txt"), "{msg}");
    assert!(!fresh.exists(), "nothing written");

    let (out, _) = write_json(&img, &fresh, &["--entry", "disk.img"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is not a zip archive"),
        "{}",
        stderr(&out)
    );
    assert!(!fresh.exists());
}

/// On a loop device: a zip's image is written decoded (`cmp` against the
/// original), its recorded size is checked against the device before
/// anything is written (exit 4), and a byte flipped in a stored member
/// (which only its CRC-32 can catch) fails as bad input with the target
/// incomplete.
#[test]
fn zip_archives_on_a_loop_device() {
    let t = "zip_archives_on_a_loop_device";
    if !require_root(t) || !require_tools(t, &["losetup", "zip", "cmp", "sfdisk"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = mbr_image(dir.path(), "disk.img", 12 * MIB);
    let len = std::fs::metadata(&img).unwrap().len();
    vendor_folder(dir.path(), &img);
    let good = dir.path().join("good.zip");
    zip_with(dir.path(), &good, &["zip", "-r"], &["vendor"]);
    let backing = dir.path().join("stick");
    std::fs::write(&backing, vec![0xA5u8; (16 * MIB) as usize]).unwrap();
    let dev = LoopDevice::attach(&backing);
    let (out, lines) = write_json(&good, dev.path(), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(lines.last().unwrap()["verified"], true);
    drop(dev);
    common::run(
        Command::new("cmp")
            .arg("-n")
            .arg(len.to_string())
            .arg(&img)
            .arg(&backing),
    );

    let small = dir.path().join("small");
    std::fs::write(&small, vec![0xA5u8; (8 * MIB) as usize]).unwrap();
    let dev = LoopDevice::attach(&small);
    let (out, lines) = write_json(&good, dev.path(), &[]);
    drop(dev);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let msg = lines.last().unwrap()["error"].as_str().unwrap().to_string();
    assert!(
        msg.contains(&format!("the image needs {len} bytes")),
        "{msg}"
    );
    assert!(
        std::fs::read(&small).unwrap().iter().all(|&b| b == 0xA5),
        "refused before any byte was written"
    );

    let stored = dir.path().join("stored.zip");
    zip_with(dir.path(), &stored, &["zip", "-r", "-0"], &["vendor"]);
    common::flip_byte(&stored, std::fs::metadata(&stored).unwrap().len() / 2);
    let (code, result, err) = write_to_loop(dir.path(), &stored);
    assert_eq!(code, Some(3), "{err}");
    assert_eq!(result["target_state"], "incomplete", "{result}");
    let msg = result["error"].as_str().unwrap();
    assert!(msg.contains("the zip stream is corrupt"), "{msg}");
    assert!(msg.contains("Invalid checksum"), "{msg}");
    // The CRC-32 is known only at the member's end: until then the first
    // MiB was held back, so the stick holds no partition table.
    assert_eq!(result["boot_area_zeroed"], true, "{result}");
    let stick = std::fs::read(dir.path().join("stick-stored.zip")).unwrap();
    assert!(
        stick[..MIB as usize].iter().all(|&b| b == 0),
        "first MiB zeroed"
    );
}

/// `SHA256SUMS` beside `disk.img.xz`, listing the compressed file (as
/// Raspberry Pi OS and Armbian publish) or the image inside it under its
/// decompressed name: both are found by discovery and enforced before
/// anything is written (a wrong digest: exit 11, nothing written); a
/// `--sha256` of the decompressed image is accepted too, and one of
/// neither stream refused.
#[test]
fn sha256sums_of_the_compressed_file_or_of_the_image_inside() {
    let t = "sha256sums_of_the_compressed_file_or_of_the_image_inside";
    if !require_tools(t, &["xz", "zip", "sha256sum", "cmp", "sfdisk"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = disk_image(dir.path(), "disk.img", 4 * MIB);
    let sha = |p: &Path| {
        common::run(Command::new("sha256sum").arg(p))
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    let inner = sha(&img);
    for (case, listed, sums_name) in [
        ("compressed", "disk.img.xz", "SHA256SUMS"),
        ("decompressed", "disk.img", "SHA256SUMS"),
        // Named after the image inside (Raspberry Pi style `IMAGE.sha256`).
        ("decompressed-named", "disk.img", "disk.img.sha256"),
    ] {
        let folder = dir.path().join(case);
        std::fs::create_dir_all(&folder).unwrap();
        let packed = folder.join("disk.img.xz");
        compress(&img, &packed, &["xz", "-c"]);
        let digest = if case == "compressed" {
            sha(&packed)
        } else {
            inner.clone()
        };
        let sums = folder.join(sums_name);
        std::fs::write(
            &sums,
            format!("{digest}  {listed}\nffff{}  other.img\n", "0".repeat(60)),
        )
        .unwrap();
        let target = folder.join("ok.img");
        let (out, lines) = write_json(&packed, &target, &["--verify-source"]);
        assert!(out.status.success(), "{case}: {}", stderr(&out));
        common::run(Command::new("cmp").arg(&img).arg(&target));
        let check = &lines[0]["source_check"];
        assert_eq!(check["outcome"], "checksum-only", "{case}: {check}");
        assert_eq!(check["matched"]["name"], listed, "{case}: {check}");
        assert_eq!(
            check["matched"]["decompressed"].as_bool().unwrap_or(false),
            case != "compressed",
            "{case}: {check}"
        );
        // The listed digest wrong: refused before anything is written.
        std::fs::write(&sums, format!("{}  {listed}\n", "ab".repeat(32))).unwrap();
        let bad = folder.join("bad.img");
        let (out, lines) = write_json(&packed, &bad, &[]);
        assert_eq!(out.status.code(), Some(11), "{case}: {}", stderr(&out));
        let msg = lines.last().unwrap()["error"].as_str().unwrap().to_string();
        assert!(msg.contains("mismatch"), "{case}: {msg}");
        assert!(!bad.exists(), "{case}: nothing written on a mismatch");
        std::fs::remove_file(&sums).unwrap();
    }
    // A bare --sha256 of the image inside, of an xz and of a zip member.
    let packed = dir.path().join("compressed/disk.img.xz");
    let zipped = dir.path().join("disk.zip");
    common::run(Command::new("zip").arg("-qj").arg(&zipped).arg(&img));
    for image in [&packed, &zipped] {
        let target = dir.path().join("given.img");
        let (out, lines) = write_json(image, &target, &["--sha256", &inner]);
        assert!(
            out.status.success(),
            "{}: {}",
            image.display(),
            stderr(&out)
        );
        assert_eq!(lines[0]["source_check"]["matched"]["decompressed"], true);
        common::run(Command::new("cmp").arg(&img).arg(&target));
        let (out, _) = write_json(
            image,
            &dir.path().join("never.img"),
            &["--sha256", &"0".repeat(64)],
        );
        assert_eq!(out.status.code(), Some(11), "{}", stderr(&out));
        assert!(!dir.path().join("never.img").exists());
    }
}

/// `--require-signature` with a gpg-signed `SHA256SUMS` that lists the
/// decompressed image beside `disk.img.xz`: verified by the signer's key
/// (exit 0, the image written); with another key's signature: refused
/// before anything is written.
#[test]
fn a_signed_sha256sums_of_the_image_inside_is_verified() {
    let t = "a_signed_sha256sums_of_the_image_inside_is_verified";
    if !require_tools(t, &["xz", "gpg", "gpgconf", "sha256sum", "cmp", "sfdisk"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("gnupg");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let gpg = || {
        let mut c = Command::new("gpg");
        c.arg("--homedir").arg(&home).args([
            "--batch",
            "--yes",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
        ]);
        c
    };
    for uid in ["Images <images@example.org>", "Other <other@example.org>"] {
        common::run(gpg().args(["--quick-gen-key", uid, "ed25519", "sign", "never"]));
    }
    let key = dir.path().join("images.asc");
    let other = dir.path().join("other.asc");
    common::run(
        gpg()
            .arg("--armor")
            .arg("--output")
            .arg(&key)
            .args(["--export", "images@example.org"]),
    );
    common::run(
        gpg()
            .arg("--armor")
            .arg("--output")
            .arg(&other)
            .args(["--export", "other@example.org"]),
    );
    let folder = dir.path().join("release");
    std::fs::create_dir_all(&folder).unwrap();
    let img = disk_image(&folder, "disk.img", 4 * MIB);
    let packed = folder.join("disk.img.xz");
    compress(&img, &packed, &["xz", "-c"]);
    let inner = common::run(Command::new("sha256sum").arg(&img));
    std::fs::remove_file(&img).unwrap();
    let original = dir.path().join("disk.img");
    let sums = folder.join("SHA256SUMS");
    std::fs::write(&sums, inner.replace(&*img.to_string_lossy(), "disk.img")).unwrap();
    common::run(
        gpg()
            .args([
                "--local-user",
                "images@example.org",
                "--detach-sign",
                "--output",
            ])
            .arg(folder.join("SHA256SUMS.gpg"))
            .arg(&sums),
    );
    // The original, for cmp (outside the release folder).
    let decoded = Command::new("xz")
        .args(["-dc"])
        .arg(&packed)
        .output()
        .unwrap();
    std::fs::write(&original, decoded.stdout).unwrap();
    let target = dir.path().join("ok.img");
    let key_arg = key.to_string_lossy().into_owned();
    let (out, lines) = write_json(
        &packed,
        &target,
        &["--require-signature", "--key", &key_arg],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let check = &lines[0]["source_check"];
    assert_eq!(check["outcome"], "verified", "{check}");
    assert_eq!(check["matched"]["decompressed"], true, "{check}");
    common::run(Command::new("cmp").arg(&original).arg(&target));
    let refused = dir.path().join("refused.img");
    let other_arg = other.to_string_lossy().into_owned();
    let (out, _) = write_json(
        &packed,
        &refused,
        &["--require-signature", "--key", &other_arg],
    );
    assert_eq!(out.status.code(), Some(14), "{}", stderr(&out));
    assert!(
        !refused.exists(),
        "nothing written without a trusted signature"
    );
    let _ = Command::new("gpgconf")
        .arg("--homedir")
        .arg(&home)
        .args(["--kill", "all"])
        .status();
}

// ---- Pipes and standard input (docs/cli.md, "Pipes and standard input") ----

/// Runs `producer | bootstick write --yes --json [extra] - target`: the
/// producer (a real compressor, or `cat`) writes into bootstick's stdin.
fn write_from_pipe(
    producer: &mut Command,
    target: &Path,
    extra: &[&str],
) -> (Output, Vec<serde_json::Value>) {
    let mut child = producer.stdout(Stdio::piped()).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let out = bootstick()
        .args(["write", "--yes", "--json"])
        .args(extra)
        .arg("-")
        .arg(target)
        .stdin(Stdio::from(stdout))
        .output()
        .unwrap();
    // The producer may be cut off when bootstick refuses early.
    let _ = child.wait();
    let lines = json_lines(&out.stdout);
    (out, lines)
}

fn sha256_hex(path: &Path) -> String {
    let out = common::run(Command::new("sha256sum").arg(path));
    out.split_whitespace().next().unwrap().to_string()
}

/// An image piped in, as it is or compressed by the real tools (xz, zstd
/// from a pipe, so with no content size, gzip), and one read from a FIFO,
/// is on the file target byte for byte (`cmp`), verified by the
/// read-back, with the stream and its compression in the start line.
#[test]
fn pipes_and_fifos_round_trip() {
    let t = "pipes_and_fifos_round_trip";
    if !require_tools(t, &["xz", "zstd", "gzip", "cat", "cmp", "sfdisk", "mkfifo"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Larger than the 4 MiB head read to decide, so the rest streams.
    let img = disk_image(dir.path(), "disk.img", 10 * MIB);
    let len = std::fs::metadata(&img).unwrap().len();
    for (name, tool, format) in [
        ("raw", &["cat"][..], None),
        (
            "xz",
            &["xz", "-T0", "--block-size=1MiB", "-c"][..],
            Some("xz"),
        ),
        ("zstd", &["zstd", "-q", "-c"][..], Some("zstd")),
        ("gzip", &["gzip", "-c"][..], Some("gzip")),
    ] {
        let target = dir.path().join(format!("out-{name}.img"));
        let (out, lines) = write_from_pipe(
            Command::new(tool[0])
                .args(&tool[1..])
                .stdin(std::fs::File::open(&img).unwrap()),
            &target,
            &["--digest"],
        );
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        common::run(Command::new("cmp").arg(&img).arg(&target));
        let start = &lines[0];
        assert_eq!(start["image"], "-", "{name}: {start}");
        assert_eq!(
            start["stream"]["format"],
            serde_json::json!(format),
            "{name}: {start}"
        );
        let result = lines.last().unwrap();
        assert_eq!(result["verified"], true, "{name}: {result}");
        assert_eq!(result["image_bytes"], len, "{name}: {result}");
    }
    // A FIFO named as the image: read as a stream (a file path that is a
    // FIFO was refused before), here fed by xz.
    let fifo = dir.path().join("image.fifo");
    common::run(Command::new("mkfifo").arg(&fifo));
    let mut feeder = Command::new("sh")
        .arg("-c")
        .arg(format!("xz -c '{}' > '{}'", img.display(), fifo.display()))
        .spawn()
        .unwrap();
    let target = dir.path().join("out-fifo.img");
    let (out, lines) = write_json(&fifo, &target, &[]);
    assert!(feeder.wait().unwrap().success());
    assert!(out.status.success(), "fifo: {}", stderr(&out));
    common::run(Command::new("cmp").arg(&img).arg(&target));
    assert_eq!(lines[0]["stream"]["format"], "xz", "{}", lines[0]);
}

/// A stream's digest is known only at its end, so the first MiB is held
/// back until it matched: a wrong `--sha256` fails with exit 11 and
/// leaves the device's first MiB zeroed (it held 0xA5), the rest written;
/// the right one, of the compressed bytes as piped or of the image inside,
/// puts the image on the device byte for byte.
#[test]
fn a_pipe_whose_digest_fails_leaves_the_boot_area_zeroed() {
    let t = "a_pipe_whose_digest_fails_leaves_the_boot_area_zeroed";
    if !require_root(t) || !require_tools(t, &["losetup", "xz", "cmp", "sfdisk", "sha256sum"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = mbr_image(dir.path(), "disk.img", 10 * MIB);
    let len = std::fs::metadata(&img).unwrap().len();
    let packed = dir.path().join("disk.img.xz");
    compress(&img, &packed, &["xz", "-T0", "-c"]);
    let wrong = "ab".repeat(32);
    let of_image = sha256_hex(&img);
    let of_packed = sha256_hex(&packed);
    for (name, source, digest, ok) in [
        ("raw-wrong", &img, &wrong, false),
        ("xz-wrong", &packed, &wrong, false),
        ("xz-of-compressed", &packed, &of_packed, true),
        ("xz-of-image", &packed, &of_image, true),
        ("raw-right", &img, &of_image, true),
    ] {
        let backing = dir.path().join(format!("stick-{name}"));
        std::fs::write(&backing, vec![0xA5u8; (16 * MIB) as usize]).unwrap();
        let dev = LoopDevice::attach(&backing);
        let (out, lines) = write_from_pipe(
            Command::new("cat").arg(source),
            dev.path(),
            &["--sha256", digest],
        );
        drop(dev);
        let result = lines.last().unwrap();
        let stick = std::fs::read(&backing).unwrap();
        let orig = std::fs::read(&img).unwrap();
        if ok {
            assert!(out.status.success(), "{name}: {}", stderr(&out));
            assert_eq!(result["verified"], true, "{name}: {result}");
            assert_eq!(result["source_digest"]["hex"], **digest, "{name}: {result}");
            assert_eq!(&stick[..len as usize], &orig[..], "{name}");
            continue;
        }
        assert_eq!(out.status.code(), Some(11), "{name}: {}", stderr(&out));
        assert_eq!(result["target_state"], "incomplete", "{name}: {result}");
        assert_eq!(result["boot_area_zeroed"], true, "{name}: {result}");
        let msg = result["error"].as_str().unwrap();
        assert!(msg.contains("it will not boot"), "{name}: {msg}");
        assert!(msg.contains(&wrong), "{name}: {msg}");
        assert!(
            stick[..MIB as usize].iter().all(|&b| b == 0),
            "{name}: the first MiB is zeroed"
        );
        assert_eq!(
            &stick[MIB as usize..len as usize],
            &orig[MIB as usize..],
            "{name}: the rest was written"
        );
    }
}

/// An empty pipe is refused before anything is written (exit 3, the
/// device keeps its bytes); a compressed pipe cut short past its head, or
/// a pipe shorter or longer than its `--size`, fails as bad input (exit
/// 3) with the target incomplete and its first MiB zeroed.
#[test]
fn an_empty_or_truncated_pipe() {
    let t = "an_empty_or_truncated_pipe";
    if !require_root(t) || !require_tools(t, &["losetup", "xz", "head", "true", "sfdisk"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = mbr_image(dir.path(), "disk.img", 12 * MIB);
    let len = std::fs::metadata(&img).unwrap().len();
    let packed = dir.path().join("disk.img.xz");
    compress(&img, &packed, &["xz", "-T0", "-c"]);
    let clen = std::fs::metadata(&packed).unwrap().len();
    let (more, exact) = ((len + 4096).to_string(), len.to_string());
    let cut = (clen * 3 / 4).to_string();
    let cases: [(&str, Command, Vec<&str>, &str); 4] = [
        ("empty", Command::new("true"), vec![], "is empty"),
        (
            "xz-cut",
            {
                let mut c = Command::new("head");
                c.args(["-c", &cut]).arg(&packed);
                c
            },
            vec![],
            "stream ends early",
        ),
        (
            "short-of-size",
            {
                let mut c = Command::new("cat");
                c.arg(&img);
                c
            },
            vec!["--size", &more],
            "",
        ),
        (
            "past-size",
            {
                let mut c = Command::new("cat");
                c.arg(&img).arg(&img);
                c
            },
            vec!["--size", &exact],
            "went on past them",
        ),
    ];
    for (name, mut producer, extra, says) in cases {
        let backing = dir.path().join(format!("stick-{name}"));
        std::fs::write(&backing, vec![0xA5u8; (16 * MIB) as usize]).unwrap();
        let dev = LoopDevice::attach(&backing);
        let (out, lines) = write_from_pipe(&mut producer, dev.path(), &extra);
        drop(dev);
        assert_eq!(out.status.code(), Some(3), "{name}: {}", stderr(&out));
        let result = lines.last().unwrap();
        let msg = result["error"].as_str().unwrap();
        let stick = std::fs::read(&backing).unwrap();
        if name == "empty" {
            assert!(msg.contains(says), "{name}: {msg}");
            assert!(msg.contains("nothing was written"), "{name}: {msg}");
            assert!(stick.iter().all(|&b| b == 0xA5), "{name}: untouched");
            continue;
        }
        let says = if name == "short-of-size" {
            format!("ended after {len} bytes")
        } else {
            says.to_string()
        };
        assert!(msg.contains(&says), "{name}: {msg}");
        assert_eq!(result["target_state"], "incomplete", "{name}: {result}");
        assert_eq!(result["boot_area_zeroed"], true, "{name}: {result}");
        assert!(
            stick[..MIB as usize].iter().all(|&b| b == 0),
            "{name}: the first MiB is zeroed"
        );
    }
}
