//! `bootstick verify` against checksum files made by the real coreutils tools
//! (`sha256sum`, `sha512sum`, `b2sum`), and against tampered copies of them.
//! The oracles are the tools that wrote the files: we never compute the
//! expected digests ourselves.

mod common;

use common::{bootstick, pseudo_random_file, require_tools, run};
use std::path::{Path, PathBuf};
use std::process::Command;

/// An image of a few MiB (several read chunks, an odd tail) in a fresh folder.
fn image_dir(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join(name);
    pseudo_random_file(&image, 3 * 1024 * 1024 + 12345, 42);
    (dir, image)
}

/// Runs a coreutils hashing tool in `dir` on `files`, returning its output.
fn tool(dir: &Path, prog: &str, args: &[&str]) -> String {
    run(Command::new(prog).current_dir(dir).args(args))
}

struct Verdict {
    code: i32,
    json: serde_json::Value,
}

fn verify(args: &[&std::ffi::OsStr]) -> Verdict {
    let out = bootstick()
        .arg("verify")
        .arg("--json")
        .args(args)
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON ({e}); stdout {} stderr {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    Verdict {
        code: out.status.code().unwrap(),
        json,
    }
}

fn verify_image(image: &Path, extra: &[&str]) -> Verdict {
    let mut args: Vec<&std::ffi::OsStr> = vec![image.as_os_str()];
    args.extend(extra.iter().map(std::ffi::OsStr::new));
    verify(&args)
}

fn assert_outcome(v: &Verdict, outcome: &str, code: i32) {
    assert_eq!(v.json["outcome"], outcome, "{:#}", v.json);
    assert_eq!(v.code, code, "{:#}", v.json);
}

fn flip_byte(path: &Path, offset: usize) {
    let mut b = std::fs::read(path).unwrap();
    b[offset] ^= 0x01;
    std::fs::write(path, b).unwrap();
}

#[test]
fn gnu_sums_files_found_beside_the_image() {
    if !require_tools("gnu_sums_files", &["sha256sum", "sha512sum", "b2sum"]) {
        return;
    }
    // Each tool and mode in its own folder, under the names distributions use.
    let cases: [(&str, &[&str], &str, &str); 5] = [
        ("SHA256SUMS", &[], "sha256sum", "sha256"),
        ("sha256sum.txt", &["-b"], "sha256sum", "sha256"),
        ("SHA512SUMS", &[], "sha512sum", "sha512"),
        ("b2sums.txt", &[], "b2sum", "blake2b-512"),
        ("x.iso.sha512", &["--tag"], "sha512sum", "sha512"),
    ];
    for (file, flags, prog, alg) in cases {
        let (dir, image) = image_dir("x.iso");
        // Another file listed first, as in a real SHA256SUMS.
        std::fs::write(dir.path().join("other.iso"), b"other").unwrap();
        let mut args = flags.to_vec();
        args.extend(["other.iso", "x.iso"]);
        std::fs::write(dir.path().join(file), tool(dir.path(), prog, &args)).unwrap();

        let v = verify_image(&image, &[]);
        assert_outcome(&v, "checksum-only", 10);
        let m = &v.json["matched"];
        assert_eq!(m["name"], "x.iso", "{file}");
        assert_eq!(m["line"], 2, "{file}");
        assert_eq!(m["algorithm"], alg, "{file}");
        assert_eq!(m["renamed"], false);
        assert!(m["source"].as_str().unwrap().ends_with(file));
        // The digest we report is the tool's.
        let listed = tool(dir.path(), prog, &["x.iso"]);
        assert_eq!(
            v.json["digests"][alg].as_str().unwrap(),
            listed.split_whitespace().next().unwrap()
        );
    }
}

#[test]
fn fedora_checksum_bsd_lines_with_comments() {
    if !require_tools("fedora_checksum", &["sha256sum"]) {
        return;
    }
    let (dir, image) = image_dir("Fedora-Test-43-x86_64.iso");
    let tagged = tool(
        dir.path(),
        "sha256sum",
        &["--tag", "Fedora-Test-43-x86_64.iso"],
    );
    let size = std::fs::metadata(&image).unwrap().len();
    let checksum = format!("# Fedora-Test-43-x86_64.iso: {size} bytes\n{tagged}");
    let sums = dir.path().join("Fedora-Test-43-x86_64-CHECKSUM");
    std::fs::write(&sums, checksum).unwrap();
    let v = verify_image(&image, &[]);
    assert_outcome(&v, "checksum-only", 10);
    assert_eq!(v.json["matched"]["line"], 2);
}

#[test]
fn single_hash_file_and_command_line_hash() {
    if !require_tools("single_hash", &["sha256sum"]) {
        return;
    }
    let (dir, image) = image_dir("y.iso");
    let out = tool(dir.path(), "sha256sum", &["y.iso"]);
    let hex = out.split_whitespace().next().unwrap().to_string();
    std::fs::write(dir.path().join("y.iso.sha256"), format!("{hex}\n")).unwrap();
    assert_outcome(&verify_image(&image, &[]), "checksum-only", 10);

    let v = verify_image(&image, &["--sha256", &hex.to_uppercase()]);
    assert_outcome(&v, "checksum-only", 10);
    assert_eq!(v.json["matched"]["source"], "command line");

    let mut wrong = hex.clone().into_bytes();
    wrong[10] = if wrong[10] == b'0' { b'1' } else { b'0' };
    let v = verify_image(&image, &["--sha256", std::str::from_utf8(&wrong).unwrap()]);
    assert_outcome(&v, "mismatch", 11);

    // A malformed hash is a usage error, not an outcome.
    let out = bootstick()
        .args(["verify", "--sha256", "abc"])
        .arg(&image)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn renamed_image_is_matched_by_hash() {
    if !require_tools("renamed_image", &["sha256sum"]) {
        return;
    }
    let (dir, image) = image_dir("debian-13.0.0-amd64-netinst.iso");
    let sums = tool(
        dir.path(),
        "sha256sum",
        &["debian-13.0.0-amd64-netinst.iso"],
    );
    std::fs::write(dir.path().join("SHA256SUMS"), sums).unwrap();
    let renamed = dir.path().join("debian.iso");
    std::fs::rename(&image, &renamed).unwrap();
    let v = verify_image(&renamed, &[]);
    assert_outcome(&v, "checksum-only", 10);
    assert_eq!(v.json["matched"]["renamed"], true);
    assert_eq!(v.json["matched"]["name"], "debian-13.0.0-amd64-netinst.iso");
}

#[test]
fn escaped_names_from_sha256sum() {
    if !require_tools("escaped_names", &["sha256sum"]) {
        return;
    }
    let (dir, image) = image_dir("odd\\name.iso");
    let sums = tool(dir.path(), "sha256sum", &["odd\\name.iso"]);
    assert!(sums.starts_with('\\'), "coreutils escapes the name: {sums}");
    std::fs::write(dir.path().join("SHA256SUMS"), sums).unwrap();
    let v = verify_image(&image, &[]);
    assert_outcome(&v, "checksum-only", 10);
    assert_eq!(v.json["matched"]["renamed"], false);
}

#[test]
fn tampering_is_caught() {
    if !require_tools("tampering", &["sha256sum", "sha512sum"]) {
        return;
    }
    // One flipped byte in the image, deep inside (past the first chunk).
    let (dir, image) = image_dir("x.iso");
    std::fs::write(
        dir.path().join("SHA256SUMS"),
        tool(dir.path(), "sha256sum", &["x.iso"]),
    )
    .unwrap();
    flip_byte(&image, 2 * 1024 * 1024 + 7);
    let v = verify_image(&image, &[]);
    assert_outcome(&v, "mismatch", 11);
    assert_eq!(v.json["mismatches"][0]["line"], 1);

    // One edited digit in the checksum file.
    let (dir, image) = image_dir("x.iso");
    let sums = dir.path().join("SHA512SUMS");
    std::fs::write(&sums, tool(dir.path(), "sha512sum", &["x.iso"])).unwrap();
    flip_byte(&sums, 5);
    assert_outcome(&verify_image(&image, &[]), "mismatch", 11);

    // A checksum file that lists another image only.
    let (dir, image) = image_dir("x.iso");
    pseudo_random_file(&dir.path().join("z.iso"), 1000, 7);
    let sums = dir.path().join("SHA256SUMS");
    std::fs::write(&sums, tool(dir.path(), "sha256sum", &["z.iso"])).unwrap();
    assert_outcome(&verify_image(&image, &[]), "not-listed", 12);
    // ... also when given explicitly, with discovery off.
    let v = verify_image(&image, &["--no-discover", "--sums", sums.to_str().unwrap()]);
    assert_outcome(&v, "not-listed", 12);

    // Nothing to check against.
    let (_dir, image) = image_dir("x.iso");
    assert_outcome(&verify_image(&image, &[]), "no-reference", 18);
}

#[test]
fn unreadable_inputs_are_bad_input() {
    let (dir, image) = image_dir("x.iso");
    let out = bootstick()
        .args(["verify", "--sums"])
        .arg(dir.path().join("missing"))
        .arg(&image)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let out = bootstick()
        .arg("verify")
        .arg(dir.path().join("missing.iso"))
        .arg("--sha256")
        .arg("00".repeat(32))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
}
