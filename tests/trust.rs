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
    let json = common::json_result(&out.stdout);
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

// ---------------------------------------------------------------------------
// OpenPGP: keys and signatures made by gpg, the oracle.
// ---------------------------------------------------------------------------

/// Bump when the recipe below changes: the cache directory is keyed by it.
const GPG_RECIPE: &str = "trust-gpg-v2";

/// Keys and signatures made once by `gpg` and cached under
/// `target/fixtures/<recipe>/`.
struct GpgFixtures {
    dir: PathBuf,
}

impl GpgFixtures {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The fingerprint gpg reports for a fixture key file.
    fn fingerprint(&self, key: &str) -> String {
        std::fs::read_to_string(self.path(&format!("{key}.fpr")))
            .unwrap()
            .trim()
            .to_string()
    }
}

fn gpg(home: &Path) -> Command {
    let mut c = Command::new("gpg");
    c.arg("--homedir").arg(home).args([
        "--batch",
        "--yes",
        "--pinentry-mode",
        "loopback",
        "--passphrase",
        "",
    ]);
    c
}

fn fixtures_root() -> PathBuf {
    // tests run from the package root; target/ may be elsewhere (CARGO_TARGET_DIR)
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_bootstick"));
    exe.parent().unwrap().parent().unwrap().join("fixtures")
}

fn gpg_fixtures() -> Option<GpgFixtures> {
    if !require_tools("gpg fixtures", &["gpg", "gpgconf", "sha256sum"]) {
        return None;
    }
    static ONCE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let dir = ONCE.get_or_init(|| {
        let root = fixtures_root();
        std::fs::create_dir_all(&root).unwrap();
        let dir = root.join(GPG_RECIPE);
        let lock = std::fs::File::create(root.join(format!("{GPG_RECIPE}.lock"))).unwrap();
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).unwrap();
        if !dir.join("done").exists() {
            let tmp = root.join(format!("{GPG_RECIPE}.tmp"));
            let _ = std::fs::remove_dir_all(&tmp);
            std::fs::create_dir_all(&tmp).unwrap();
            build_gpg_fixtures(&tmp);
            std::fs::write(tmp.join("done"), "").unwrap();
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::rename(&tmp, &dir).unwrap();
        }
        dir
    });
    Some(GpgFixtures { dir: dir.clone() })
}

fn build_gpg_fixtures(out: &Path) {
    let home = out.join("home");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let gen = |uid: &str, algo: &str, usage: &str, expire: &str, faked: Option<&str>| {
        let mut c = gpg(&home);
        if let Some(t) = faked {
            c.arg("--faked-system-time").arg(t);
        }
        run(c.args(["--quick-gen-key", uid, algo, usage, expire]));
        let colons = run(gpg(&home).args(["--with-colons", "--fingerprint", uid]));
        colons
            .lines()
            .find(|l| l.starts_with("fpr:"))
            .unwrap()
            .split(':')
            .nth(9)
            .unwrap()
            .to_string()
    };
    let export = |fpr: &str, name: &str, armor: bool| {
        let mut c = gpg(&home);
        if armor {
            c.arg("--armor");
        }
        let file = out.join(name);
        run(c.arg("--output").arg(&file).args(["--export", fpr]));
    };
    let keys = [
        ("rsa4096", "Test RSA-4096 <rsa4096@example.org>", "rsa4096"),
        ("rsa2048", "Test RSA-2048 <rsa2048@example.org>", "rsa2048"),
        ("ed25519", "Test Ed25519 <ed25519@example.org>", "ed25519"),
        ("other", "Someone Else <other@example.org>", "ed25519"),
        ("revoked", "Revoked Key <revoked@example.org>", "ed25519"),
    ];
    for (name, uid, algo) in keys {
        let fpr = gen(uid, algo, "sign", "never", None);
        std::fs::write(out.join(format!("{name}.fpr")), &fpr).unwrap();
    }
    // Expired: made in 2020, valid for a day; it signs while still valid.
    let fpr = gen(
        "Expired Key <expired@example.org>",
        "ed25519",
        "sign",
        "1d",
        Some("20200101T000000"),
    );
    std::fs::write(out.join("expired.fpr"), &fpr).unwrap();
    // A key made in 2020 that never expires, for signatures with their own
    // expiry.
    let fpr = gen(
        "Old Key <old@example.org>",
        "ed25519",
        "sign",
        "never",
        Some("20200101T000000"),
    );
    std::fs::write(out.join("old.fpr"), &fpr).unwrap();
    // A certify-only primary whose signing is done by a subkey.
    let fpr = gen(
        "Subkey Signer <sub@example.org>",
        "ed25519",
        "cert",
        "never",
        None,
    );
    run(gpg(&home).args(["--quick-add-key", &fpr, "ed25519", "sign", "never"]));
    std::fs::write(out.join("sub.fpr"), &fpr).unwrap();

    let fp = |n: &str| std::fs::read_to_string(out.join(format!("{n}.fpr"))).unwrap();

    // The data: an image and the checksum files a distribution would publish.
    let image = out.join("arch.iso");
    pseudo_random_file(&image, 3 * 1024 * 1024 + 777, 99);
    pseudo_random_file(&out.join("other.iso"), 4096, 5);
    let sums = tool(out, "sha256sum", &["other.iso", "arch.iso"]);
    std::fs::write(out.join("SHA256SUMS"), &sums).unwrap();
    let size = std::fs::metadata(&image).unwrap().len();
    let tagged = tool(out, "sha256sum", &["--tag", "arch.iso"]);
    std::fs::write(
        out.join("CHECKSUM"),
        format!("# arch.iso: {size} bytes\n{tagged}"),
    )
    .unwrap();

    let sign = |signers: &[&str], extra: &[&str], input: &str, output: &str| {
        let mut c = gpg(&home);
        for s in signers {
            c.arg("--local-user").arg(format!("{}!", fp(s)));
        }
        c.args(extra)
            .arg("--output")
            .arg(out.join(output))
            .arg(out.join(input));
        run(&mut c);
    };
    sign(
        &["rsa4096"],
        &["--armor", "--detach-sign"],
        "SHA256SUMS",
        "sums.rsa4096.asc",
    );
    sign(
        &["rsa2048"],
        &["--detach-sign"],
        "SHA256SUMS",
        "sums.rsa2048.bin",
    );
    sign(
        &["ed25519"],
        &["--armor", "--detach-sign"],
        "SHA256SUMS",
        "sums.ed25519.asc",
    );
    sign(
        &["other"],
        &["--armor", "--detach-sign"],
        "SHA256SUMS",
        "sums.other.asc",
    );
    sign(
        &["other", "rsa4096"],
        &["--armor", "--detach-sign"],
        "SHA256SUMS",
        "sums.multi.asc",
    );
    sign(
        &["rsa4096"],
        &["--armor", "--detach-sign", "--digest-algo", "SHA1"],
        "SHA256SUMS",
        "sums.sha1.asc",
    );
    sign(
        &["expired"],
        &[
            "--faked-system-time",
            "20200101T120000",
            "--armor",
            "--detach-sign",
        ],
        "SHA256SUMS",
        "sums.expired.asc",
    );
    sign(
        &["revoked"],
        &["--armor", "--detach-sign"],
        "SHA256SUMS",
        "sums.revoked.asc",
    );
    // A signature valid for a day, made in 2020: it has expired.
    sign(
        &["old"],
        &[
            "--faked-system-time",
            "20200102T000000",
            "--default-sig-expire",
            "1d",
            "--armor",
            "--detach-sign",
        ],
        "SHA256SUMS",
        "sums.sig-expired.asc",
    );
    // A signature dated before its key was made (gpg needs to be told to
    // ignore the time conflict).
    sign(
        &["rsa4096"],
        &[
            "--faked-system-time",
            "20200102T000000",
            "--ignore-time-conflict",
            "--armor",
            "--detach-sign",
        ],
        "SHA256SUMS",
        "sums.backdated.asc",
    );
    // The subkey signs: `fpr!` of the subkey is found by gpg from the primary.
    {
        let mut c = gpg(&home);
        c.arg("--local-user")
            .arg(fp("sub"))
            .args(["--armor", "--detach-sign", "--output"])
            .arg(out.join("sums.sub.asc"))
            .arg(out.join("SHA256SUMS"));
        run(&mut c);
    }
    sign(&["rsa4096"], &["--clearsign"], "CHECKSUM", "CHECKSUM.clear");
    sign(&["ed25519"], &["--detach-sign"], "arch.iso", "arch.iso.sig");

    // Revoke after signing: gpg stored a revocation certificate at key
    // generation; importing it (minus its guard colon) revokes the key.
    let rev = std::fs::read_to_string(
        home.join("openpgp-revocs.d")
            .join(format!("{}.rev", fp("revoked"))),
    )
    .unwrap()
    .replace(
        ":-----BEGIN PGP PUBLIC KEY BLOCK-----",
        "-----BEGIN PGP PUBLIC KEY BLOCK-----",
    );
    std::fs::write(out.join("revoke.asc"), rev).unwrap();
    run(gpg(&home).arg("--import").arg(out.join("revoke.asc")));

    for (name, armor) in [
        ("rsa4096", true),
        ("rsa2048", false),
        ("ed25519", true),
        ("other", true),
        ("revoked", true),
        ("expired", true),
        ("old", true),
        ("sub", true),
    ] {
        export(&fp(name), &format!("{name}.key"), armor);
    }
    // A keyring of two keys in one armored block.
    run(gpg(&home)
        .args(["--armor", "--output"])
        .arg(out.join("keyring.key"))
        .args(["--export", &fp("rsa4096"), &fp("ed25519")]));
    let _ = Command::new("gpgconf")
        .arg("--homedir")
        .arg(&home)
        .args(["--kill", "gpg-agent"])
        .status();
}

/// A fresh folder holding copies of fixture files under new names.
fn stage(fx: &GpgFixtures, files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (from, to) in files {
        std::fs::copy(fx.path(from), dir.path().join(to)).unwrap();
    }
    dir
}

fn verify_with_keys(
    dir: &Path,
    image: &str,
    keys: &[&GpgFixtures],
    key_names: &[&str],
    extra: &[&str],
) -> Verdict {
    let mut args: Vec<std::ffi::OsString> = vec![dir.join(image).into_os_string()];
    for (fx, k) in keys.iter().zip(key_names) {
        args.push("--key".into());
        args.push(fx.path(&format!("{k}.key")).into_os_string());
    }
    args.extend(extra.iter().map(std::ffi::OsString::from));
    let refs: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    verify(&refs)
}

/// Verifies with one key file.
fn verify_key(fx: &GpgFixtures, dir: &Path, key: &str, extra: &[&str]) -> Verdict {
    verify_with_keys(dir, "arch.iso", &[fx], &[key], extra)
}

/// gpg's own verdict on a detached signature with only `key` imported.
fn gpg_accepts(fx: &GpgFixtures, key: &str, sig: &Path, data: Option<&Path>) -> bool {
    let home = tempfile::tempdir().unwrap();
    // gpg fails a file with several signatures when it lacks any signer's key.
    let keys: &[&str] = if key == "multi" {
        &["rsa4096", "other"]
    } else {
        &[key]
    };
    for k in keys {
        run(gpg(home.path())
            .arg("--import")
            .arg(fx.path(&format!("{k}.key"))));
    }
    let mut c = gpg(home.path());
    c.arg("--verify").arg(sig);
    if let Some(d) = data {
        c.arg(d);
    }
    let ok = c.output().unwrap().status.success();
    let _ = Command::new("gpgconf")
        .arg("--homedir")
        .arg(home.path())
        .args(["--kill", "gpg-agent"])
        .status();
    ok
}

fn assert_signer(v: &Verdict, fx: &GpgFixtures, key: &str, uid: &str) {
    let s = &v.json["signers"][0];
    assert_eq!(s["fingerprint"], fx.fingerprint(key), "{:#}", v.json);
    assert!(s["user_id"].as_str().unwrap().contains(uid), "{:#}", v.json);
}

#[test]
fn openpgp_detached_signatures_over_checksum_files() {
    let Some(fx) = gpg_fixtures() else { return };
    // (signature fixture, published name, key file, uid)
    let cases = [
        (
            "sums.rsa4096.asc",
            "SHA256SUMS.gpg",
            "rsa4096",
            "rsa4096@example.org",
        ),
        (
            "sums.rsa2048.bin",
            "SHA256SUMS.sign",
            "rsa2048",
            "rsa2048@example.org",
        ),
        (
            "sums.ed25519.asc",
            "SHA256SUMS.asc",
            "ed25519",
            "ed25519@example.org",
        ),
        (
            "sums.ed25519.asc",
            "SHA256SUMS.gpg",
            "keyring",
            "ed25519@example.org",
        ),
        (
            "sums.multi.asc",
            "SHA256SUMS.gpg",
            "rsa4096",
            "rsa4096@example.org",
        ),
    ];
    for (sig, published, key, uid) in cases {
        let dir = stage(
            &fx,
            &[
                ("arch.iso", "arch.iso"),
                ("SHA256SUMS", "SHA256SUMS"),
                (sig, published),
            ],
        );
        // gpg agrees the signature is good.
        let gpg_key = match (key, sig) {
            ("keyring", _) => "ed25519",
            (_, "sums.multi.asc") => "multi",
            _ => key,
        };
        assert!(gpg_accepts(
            &fx,
            gpg_key,
            &dir.path().join(published),
            Some(&dir.path().join("SHA256SUMS"))
        ));
        let v = verify_key(&fx, dir.path(), key, &[]);
        assert_outcome(&v, "verified", 0);
        let signer_key = if key == "keyring" { "ed25519" } else { key };
        assert_signer(&v, &fx, signer_key, uid);
        assert_eq!(v.json["matched"]["line"], 2);
        assert!(v.json["matched"]["source"]
            .as_str()
            .unwrap()
            .ends_with("SHA256SUMS"));
        if sig == "sums.multi.asc" {
            // Both signatures reported: the good one, and the other key's.
            let sigs = &v.json["signatures"][0]["signatures"];
            let statuses: Vec<_> = sigs
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["status"].clone())
                .collect();
            assert_eq!(statuses.len(), 2, "{:#}", v.json);
            assert!(statuses.contains(&"good".into()) && statuses.contains(&"unknown-key".into()));
        }
    }
    // Without a key the signature cannot count.
    let dir = stage(
        &fx,
        &[
            ("arch.iso", "arch.iso"),
            ("SHA256SUMS", "SHA256SUMS"),
            ("sums.rsa4096.asc", "SHA256SUMS.gpg"),
        ],
    );
    let v = verify_image(&dir.path().join("arch.iso"), &[]);
    assert_outcome(&v, "checksum-only", 10);
    // Several signatures where the given key made none.
    let dir = stage(
        &fx,
        &[
            ("arch.iso", "arch.iso"),
            ("SHA256SUMS", "SHA256SUMS"),
            ("sums.multi.asc", "SHA256SUMS.gpg"),
        ],
    );
    assert_outcome(
        &verify_key(&fx, dir.path(), "ed25519", &[]),
        "unknown-key",
        14,
    );
}

#[test]
fn openpgp_subkey_signature() {
    let Some(fx) = gpg_fixtures() else { return };
    let dir = stage(
        &fx,
        &[
            ("arch.iso", "arch.iso"),
            ("SHA256SUMS", "SHA256SUMS"),
            ("sums.sub.asc", "SHA256SUMS.gpg"),
        ],
    );
    let v = verify_key(&fx, dir.path(), "sub", &[]);
    assert_outcome(&v, "verified", 0);
    assert_signer(&v, &fx, "sub", "sub@example.org");
    assert!(v.json["signers"][0]["subkey"].is_string());
}

#[test]
fn openpgp_refusals() {
    let Some(fx) = gpg_fixtures() else { return };
    let case = |sig: &str, key: &str| {
        let dir = stage(
            &fx,
            &[
                ("arch.iso", "arch.iso"),
                ("SHA256SUMS", "SHA256SUMS"),
                (sig, "SHA256SUMS.gpg"),
            ],
        );
        verify_key(&fx, dir.path(), key, &[])
    };
    // gpg itself checks the SHA-1 signature fine: refusing it is our rule.
    assert_outcome(&case("sums.sha1.asc", "rsa4096"), "weak-signature", 15);
    assert_outcome(&case("sums.expired.asc", "expired"), "expired-key", 16);
    assert_outcome(&case("sums.revoked.asc", "revoked"), "revoked-key", 17);
    assert_outcome(&case("sums.sig-expired.asc", "old"), "expired-key", 16);
    assert_outcome(&case("sums.backdated.asc", "rsa4096"), "bad-signature", 13);
    assert_outcome(&case("sums.other.asc", "rsa4096"), "unknown-key", 14);
}

#[test]
fn openpgp_pins() {
    let Some(fx) = gpg_fixtures() else { return };
    let dir = stage(
        &fx,
        &[
            ("arch.iso", "arch.iso"),
            ("SHA256SUMS", "SHA256SUMS"),
            ("sums.rsa4096.asc", "SHA256SUMS.gpg"),
        ],
    );
    let rsa = fx.fingerprint("rsa4096");
    let ed = fx.fingerprint("ed25519");
    assert_outcome(
        &verify_key(&fx, dir.path(), "keyring", &["--fingerprint", &rsa]),
        "verified",
        0,
    );
    assert_outcome(
        &verify_key(&fx, dir.path(), "keyring", &["--fingerprint", &ed]),
        "unknown-key",
        14,
    );
    let out = bootstick()
        .arg("verify")
        .arg(dir.path().join("arch.iso"))
        .arg("--key")
        .arg(fx.path("rsa4096.key"))
        .args(["--fingerprint", &ed])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "a pin no given key has is bad input"
    );
}

#[test]
fn openpgp_clearsigned_checksum() {
    let Some(fx) = gpg_fixtures() else { return };
    let dir = stage(
        &fx,
        &[
            ("arch.iso", "arch.iso"),
            ("CHECKSUM.clear", "Fedora-arch-CHECKSUM"),
        ],
    );
    assert!(gpg_accepts(
        &fx,
        "rsa4096",
        &dir.path().join("Fedora-arch-CHECKSUM"),
        None
    ));
    let v = verify_key(&fx, dir.path(), "rsa4096", &[]);
    assert_outcome(&v, "verified", 0);
    assert_eq!(v.json["signatures"][0]["format"], "openpgp-clearsigned");
    assert_eq!(v.json["sources"][0]["clearsigned"], true);

    // An edited hash inside the signed text breaks the signature.
    let text = std::fs::read_to_string(fx.path("CHECKSUM.clear")).unwrap();
    let pos = text.find(") = ").unwrap() + 6;
    let mut bytes = text.clone().into_bytes();
    bytes[pos] = if bytes[pos] == b'0' { b'1' } else { b'0' };
    std::fs::write(dir.path().join("Fedora-arch-CHECKSUM"), &bytes).unwrap();
    assert!(!gpg_accepts(
        &fx,
        "rsa4096",
        &dir.path().join("Fedora-arch-CHECKSUM"),
        None
    ));
    assert_outcome(
        &verify_key(&fx, dir.path(), "rsa4096", &[]),
        "bad-signature",
        13,
    );

    // A hash added outside the signed text does not count: the signed part
    // lists another image only, the unsigned tail lists this one.
    let other = stage(&fx, &[("arch.iso", "renamed.iso")]);
    let tail = tool(other.path(), "sha256sum", &["--tag", "renamed.iso"]);
    std::fs::write(
        dir.path().join("Fedora-arch-CHECKSUM"),
        format!("{text}{tail}"),
    )
    .unwrap();
    std::fs::copy(fx.path("arch.iso"), dir.path().join("renamed.iso")).unwrap();
    std::fs::remove_file(dir.path().join("arch.iso")).unwrap();
    let v = verify_with_keys(dir.path(), "renamed.iso", &[&fx], &["rsa4096"], &[]);
    assert_ne!(v.json["outcome"], "verified", "{:#}", v.json);
    assert_ne!(v.code, 0);
}

#[test]
fn openpgp_signature_over_the_image_itself() {
    let Some(fx) = gpg_fixtures() else { return };
    // Arch: a binary Ed25519 signature over the ISO, no checksum file.
    let dir = stage(
        &fx,
        &[("arch.iso", "arch.iso"), ("arch.iso.sig", "arch.iso.sig")],
    );
    assert!(gpg_accepts(
        &fx,
        "ed25519",
        &dir.path().join("arch.iso.sig"),
        Some(&dir.path().join("arch.iso"))
    ));
    let v = verify_key(&fx, dir.path(), "ed25519", &[]);
    assert_outcome(&v, "verified", 0);
    assert_signer(&v, &fx, "ed25519", "ed25519@example.org");
    assert_eq!(
        v.json["signatures"][0]["covers"],
        dir.path().join("arch.iso").to_str().unwrap()
    );

    // Given explicitly under another name, with discovery off.
    let sig = dir.path().join("signature.bin");
    std::fs::rename(dir.path().join("arch.iso.sig"), &sig).unwrap();
    let v = verify_key(
        &fx,
        dir.path(),
        "ed25519",
        &["--no-discover", "--sig", sig.to_str().unwrap()],
    );
    assert_outcome(&v, "verified", 0);

    // One flipped byte in the image.
    std::fs::rename(&sig, dir.path().join("arch.iso.sig")).unwrap();
    flip_byte(&dir.path().join("arch.iso"), 1024 * 1024 + 3);
    assert!(!gpg_accepts(
        &fx,
        "ed25519",
        &dir.path().join("arch.iso.sig"),
        Some(&dir.path().join("arch.iso"))
    ));
    assert_outcome(
        &verify_key(&fx, dir.path(), "ed25519", &[]),
        "bad-signature",
        13,
    );
}

#[test]
fn openpgp_tampering() {
    let Some(fx) = gpg_fixtures() else { return };
    let base = [
        ("arch.iso", "arch.iso"),
        ("SHA256SUMS", "SHA256SUMS"),
        ("sums.rsa4096.asc", "SHA256SUMS.gpg"),
    ];

    // A flipped byte in the image: the signed list still verifies, the hash not.
    let dir = stage(&fx, &base);
    flip_byte(&dir.path().join("arch.iso"), 100);
    assert_outcome(&verify_key(&fx, dir.path(), "rsa4096", &[]), "mismatch", 11);

    // A flipped byte in the checksum file (in the other image's line, so the
    // image's own line still matches): the signature no longer verifies.
    let dir = stage(&fx, &base);
    flip_byte(&dir.path().join("SHA256SUMS"), 3);
    assert!(!gpg_accepts(
        &fx,
        "rsa4096",
        &dir.path().join("SHA256SUMS.gpg"),
        Some(&dir.path().join("SHA256SUMS"))
    ));
    let v = verify_key(&fx, dir.path(), "rsa4096", &[]);
    assert_outcome(&v, "bad-signature", 13);

    // A flipped byte inside the signature (binary, in the signature MPI).
    let dir = stage(
        &fx,
        &[
            ("arch.iso", "arch.iso"),
            ("SHA256SUMS", "SHA256SUMS"),
            ("sums.rsa2048.bin", "SHA256SUMS.sign"),
        ],
    );
    let sig = dir.path().join("SHA256SUMS.sign");
    let len = std::fs::metadata(&sig).unwrap().len() as usize;
    flip_byte(&sig, len - 10);
    assert!(!gpg_accepts(
        &fx,
        "rsa2048",
        &sig,
        Some(&dir.path().join("SHA256SUMS"))
    ));
    assert_outcome(
        &verify_key(&fx, dir.path(), "rsa2048", &[]),
        "bad-signature",
        13,
    );

    // A flipped character in an armored signature body, in its last line
    // of base64 (the signature value; the start holds unhashed subpackets,
    // which a signature does not cover).
    let dir = stage(&fx, &base);
    let sig = dir.path().join("SHA256SUMS.gpg");
    let text = std::fs::read_to_string(&sig).unwrap();
    let last_line = text
        .lines()
        .rfind(|l| !l.is_empty() && !l.starts_with('=') && !l.starts_with("-----"))
        .unwrap();
    let body = text.find(last_line).unwrap() + 4;
    let mut b = text.into_bytes();
    b[body] = if b[body] == b'A' { b'B' } else { b'A' };
    std::fs::write(&sig, b).unwrap();
    assert_outcome(
        &verify_key(&fx, dir.path(), "rsa4096", &[]),
        "bad-signature",
        13,
    );

    // Truncated and garbage signature files.
    for bytes in [
        std::fs::read(fx.path("sums.rsa2048.bin")).unwrap()[..100].to_vec(),
        std::fs::read(fx.path("sums.rsa4096.asc")).unwrap()[..300].to_vec(),
        b"this is not a signature\n".to_vec(),
        vec![0x88; 64],
    ] {
        let dir = stage(&fx, &base);
        std::fs::write(dir.path().join("SHA256SUMS.gpg"), &bytes).unwrap();
        assert_outcome(
            &verify_key(&fx, dir.path(), "rsa4096", &[]),
            "bad-signature",
            13,
        );
    }

    // A signature by a key that was not given.
    let dir = stage(
        &fx,
        &[
            ("arch.iso", "arch.iso"),
            ("SHA256SUMS", "SHA256SUMS"),
            ("sums.other.asc", "SHA256SUMS.gpg"),
        ],
    );
    assert_outcome(
        &verify_key(&fx, dir.path(), "rsa4096", &[]),
        "unknown-key",
        14,
    );
}

// ---------------------------------------------------------------------------
// minisign and signify, signed by the real tools.
// ---------------------------------------------------------------------------

fn minisign_keys(dir: &Path, name: &str) -> (PathBuf, PathBuf, String) {
    let public = dir.join(format!("{name}.pub"));
    let secret = dir.join(format!("{name}.key"));
    run(Command::new("minisign")
        .args(["-G", "-W", "-p"])
        .arg(&public)
        .arg("-s")
        .arg(&secret));
    // The key id, as minisign prints it in the public key's comment.
    let text = std::fs::read_to_string(&public).unwrap();
    let id = text
        .lines()
        .next()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .to_string();
    (public, secret, id)
}

fn minisign_accepts(public: &Path, file: &Path, sig: &Path) -> bool {
    Command::new("minisign")
        .args(["-V", "-q", "-p"])
        .arg(public)
        .arg("-x")
        .arg(sig)
        .arg("-m")
        .arg(file)
        .status()
        .unwrap()
        .success()
}

#[test]
fn minisign_signatures() {
    if !require_tools("minisign", &["minisign", "sha256sum"]) {
        return;
    }
    let (dir, image) = image_dir("x.iso");
    let keys = tempfile::tempdir().unwrap();
    let (public, secret, id) = minisign_keys(keys.path(), "release");
    let (other_public, _, _) = minisign_keys(keys.path(), "other");
    let key = public.to_str().unwrap();

    // Prehashed (the default) over the image itself.
    run(Command::new("minisign")
        .args(["-S", "-s"])
        .arg(&secret)
        .args(["-t", "release 1.0 image"])
        .arg("-m")
        .arg(&image));
    let sig = dir.path().join("x.iso.minisig");
    assert!(minisign_accepts(&public, &image, &sig));
    let v = verify_image(&image, &["--key", key]);
    assert_outcome(&v, "verified", 0);
    assert_eq!(v.json["signers"][0]["fingerprint"], id.to_uppercase());
    assert_eq!(v.json["signatures"][0]["format"], "minisign");
    assert_outcome(
        &verify_image(&image, &["--key", key, "--fingerprint", &id]),
        "verified",
        0,
    );
    assert!(v.json["signatures"][0]["signatures"][0]["detail"]
        .as_str()
        .unwrap()
        .contains("release 1.0 image"));
    assert_outcome(
        &verify_image(&image, &["--key", other_public.to_str().unwrap()]),
        "unknown-key",
        14,
    );

    // An edited trusted comment: the global signature no longer verifies.
    let original = std::fs::read_to_string(&sig).unwrap();
    std::fs::write(
        &sig,
        original.replace("release 1.0 image", "release 2.0 image"),
    )
    .unwrap();
    assert!(!minisign_accepts(&public, &image, &sig));
    assert_outcome(&verify_image(&image, &["--key", key]), "bad-signature", 13);
    std::fs::write(&sig, &original).unwrap();

    // A flipped byte in the image.
    flip_byte(&image, 2 * 1024 * 1024);
    assert!(!minisign_accepts(&public, &image, &sig));
    assert_outcome(&verify_image(&image, &["--key", key]), "bad-signature", 13);
    flip_byte(&image, 2 * 1024 * 1024);

    // Legacy (pure Ed25519) over a checksum file.
    std::fs::remove_file(&sig).unwrap();
    std::fs::write(
        dir.path().join("SHA256SUMS"),
        tool(dir.path(), "sha256sum", &["x.iso"]),
    )
    .unwrap();
    run(Command::new("minisign")
        .args(["-S", "-l", "-s"])
        .arg(&secret)
        .arg("-m")
        .arg(dir.path().join("SHA256SUMS")));
    assert!(minisign_accepts(
        &public,
        &dir.path().join("SHA256SUMS"),
        &dir.path().join("SHA256SUMS.minisig")
    ));
    let v = verify_image(&image, &["--key", key]);
    assert_outcome(&v, "verified", 0);
    assert_eq!(
        v.json["signatures"][0]["signatures"][0]["hash"],
        "none (pure Ed25519)"
    );
    // ... and the checksum file edited after signing.
    flip_byte(&dir.path().join("SHA256SUMS"), 70);
    assert_outcome(&verify_image(&image, &["--key", key]), "bad-signature", 13);
}

#[test]
fn signify_signatures() {
    if !require_tools("signify", &["signify-openbsd", "sha256sum"]) {
        return;
    }
    let (dir, image) = image_dir("install.img");
    let keys = tempfile::tempdir().unwrap();
    let public = keys.path().join("release.pub");
    let secret = keys.path().join("release.sec");
    run(Command::new("signify-openbsd")
        .args(["-G", "-n", "-p"])
        .arg(&public)
        .arg("-s")
        .arg(&secret));
    let key = public.to_str().unwrap();

    // Detached over a GNU checksum file.
    std::fs::write(
        dir.path().join("SHA256SUMS"),
        tool(dir.path(), "sha256sum", &["install.img"]),
    )
    .unwrap();
    run(Command::new("signify-openbsd")
        .args(["-S", "-s"])
        .arg(&secret)
        .arg("-m")
        .arg(dir.path().join("SHA256SUMS")));
    let v = verify_image(&image, &["--key", key]);
    assert_outcome(&v, "verified", 0);
    assert_eq!(v.json["signatures"][0]["format"], "signify");
    std::fs::remove_file(dir.path().join("SHA256SUMS")).unwrap();
    std::fs::remove_file(dir.path().join("SHA256SUMS.sig")).unwrap();

    // OpenBSD style: BSD lines embedded in SHA256.sig (`signify -S -e`),
    // checked by `signify -C` as the oracle.
    let list = dir.path().join("SHA256");
    std::fs::write(
        &list,
        tool(dir.path(), "sha256sum", &["--tag", "install.img"]),
    )
    .unwrap();
    let sig = dir.path().join("SHA256.sig");
    run(Command::new("signify-openbsd")
        .args(["-S", "-e", "-s"])
        .arg(&secret)
        .arg("-m")
        .arg(&list)
        .arg("-x")
        .arg(&sig));
    std::fs::remove_file(&list).unwrap();
    let oracle = |dir: &Path| {
        Command::new("signify-openbsd")
            .current_dir(dir)
            .args(["-C", "-q", "-p", key, "-x", "SHA256.sig"])
            .status()
            .unwrap()
            .success()
    };
    assert!(oracle(dir.path()));
    let v = verify_image(&image, &["--key", key]);
    assert_outcome(&v, "verified", 0);
    assert!(v.json["matched"]["source"]
        .as_str()
        .unwrap()
        .ends_with("SHA256.sig"));

    // An edited hash in the embedded list.
    let text = std::fs::read_to_string(&sig).unwrap();
    let pos = text.find(") = ").unwrap() + 6;
    let mut b = text.into_bytes();
    b[pos] = if b[pos] == b'0' { b'1' } else { b'0' };
    std::fs::write(&sig, b).unwrap();
    assert!(!oracle(dir.path()));
    assert_outcome(&verify_image(&image, &["--key", key]), "bad-signature", 13);
}

// ---------------------------------------------------------------------------
// `write` checks the source first, and the engine re-checks what it streams.
// ---------------------------------------------------------------------------

fn write_cmd(image: &Path, target: &Path, extra: &[&str]) -> std::process::Output {
    bootstick()
        .args(["write", "--yes", "--json"])
        .args(extra)
        .arg(image)
        .arg(target)
        .output()
        .unwrap()
}

#[test]
fn write_checks_the_source_first() {
    let Some(fx) = gpg_fixtures() else { return };
    let base = [
        ("arch.iso", "arch.iso"),
        ("SHA256SUMS", "SHA256SUMS"),
        ("sums.rsa4096.asc", "SHA256SUMS.gpg"),
    ];
    let key = fx.path("rsa4096.key");
    let key = key.to_str().unwrap();

    // Signed and matching: written, and `cmp` finds the target identical.
    let dir = stage(&fx, &base);
    let target = dir.path().join("stick.img");
    let out = write_cmd(&dir.path().join("arch.iso"), &target, &["--key", key]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    run(Command::new("cmp")
        .arg(dir.path().join("arch.iso"))
        .arg(&target));
    let start: serde_json::Value = serde_json::from_str(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|l| l.contains("\"start\""))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(start["source_check"]["outcome"], "verified");
    assert_eq!(
        start["source_check"]["signers"][0]["fingerprint"],
        fx.fingerprint("rsa4096")
    );

    // Each failed check refuses before the target is even created.
    type Refusal<'a> = (&'a str, &'a dyn Fn(&Path), &'a [&'a str], i32);
    let refusals: [Refusal; 5] = [
        (
            "tampered image",
            &|d| flip_byte(&d.join("arch.iso"), 5000),
            &["--key", key],
            11,
        ),
        (
            "tampered list",
            &|d| flip_byte(&d.join("SHA256SUMS"), 3),
            &["--key", key],
            13,
        ),
        ("unknown key", &|_| {}, &["--key", "OTHER"], 14),
        (
            "unsigned, signature required",
            &|_| {},
            &["--require-signature"],
            10,
        ),
        (
            "nothing to check, --verify-source",
            &|d| {
                for f in ["SHA256SUMS", "SHA256SUMS.gpg"] {
                    std::fs::remove_file(d.join(f)).unwrap();
                }
            },
            &["--verify-source"],
            18,
        ),
    ];
    let other = fx.path("other.key");
    for (what, tamper, extra, code) in refusals {
        let dir = stage(&fx, &base);
        tamper(dir.path());
        let extra: Vec<&str> = extra
            .iter()
            .map(|a| {
                if *a == "OTHER" {
                    other.to_str().unwrap()
                } else {
                    a
                }
            })
            .collect();
        let target = dir.path().join("stick.img");
        let out = write_cmd(&dir.path().join("arch.iso"), &target, &extra);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{what}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(!target.exists(), "{what}: the target was created");
    }

    // Checksum only (no key given): written, with a warning.
    let dir = stage(&fx, &base);
    let target = dir.path().join("stick.img");
    let out = write_cmd(&dir.path().join("arch.iso"), &target, &[]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("no trusted signature"));
    run(Command::new("cmp")
        .arg(dir.path().join("arch.iso"))
        .arg(&target));
}

/// The digest a check hands to the engine catches an image that changes
/// after it was checked and before it is streamed.
#[test]
fn image_changed_after_the_check_is_caught_by_the_engine() {
    if !require_tools("source_changed", &["sha256sum"]) {
        return;
    }
    let (dir, image) = image_dir("x.iso");
    std::fs::write(
        dir.path().join("SHA256SUMS"),
        tool(dir.path(), "sha256sum", &["x.iso"]),
    )
    .unwrap();
    let req = bootstick::trust::Request {
        image: image.clone(),
        discover: true,
        ..Default::default()
    };
    let report = bootstick::trust::check(&req, &bootstick::events::Silent).unwrap();
    assert_eq!(report.outcome, bootstick::trust::Outcome::ChecksumOnly);
    let digest = report.checked_sha256.clone().unwrap();

    flip_byte(&image, 2 * 1024 * 1024 + 1);
    let source = std::fs::File::open(&image).unwrap();
    let len = source.metadata().unwrap().len();
    let target_path = dir.path().join("stick.img");
    let mut target = bootstick::write::Target::open(&target_path).unwrap();
    let options = bootstick::write::Options {
        expect_source: Some(digest),
        ..Default::default()
    };
    let err = bootstick::write::write(
        &bootstick::plan::Plan::raw(len),
        &source,
        &mut target,
        options,
        &bootstick::events::Silent,
    )
    .unwrap_err();
    assert!(
        matches!(err, bootstick::write::Error::SourceChanged { .. }),
        "{err:?}"
    );
}
