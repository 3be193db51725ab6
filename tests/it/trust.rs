//! `bootstick verify` against checksum files made by the real coreutils tools
//! (`sha256sum`, `sha512sum`, `b2sum`), and against tampered copies of them.
//! The oracles are the tools that wrote the files: we never compute the
//! expected digests ourselves.

use crate::common;

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

    // The hash the user gave matches: that is the check they asked for,
    // exit 0 (so `verify && write` works), still named checksum-only, and
    // --require-signature makes it a failure (issue 12).
    let v = verify_image(&image, &["--sha256", &hex.to_uppercase()]);
    assert_outcome(&v, "checksum-only", 0);
    assert_eq!(v.json["matched"]["source"], "command line");
    assert_eq!(v.json["ok"], true);
    let v = verify_image(&image, &["--sha256", &hex, "--require-signature"]);
    assert_outcome(&v, "checksum-only", 10);
    let text = bootstick()
        .args(["verify", "--sha256", &hex])
        .arg(&image)
        .output()
        .unwrap();
    assert_eq!(text.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&text.stdout)
            .contains("no signature proves who published that hash"),
        "{text:?}"
    );

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

    // Listed only with SHA-512 (which `write` does not need): the image's
    // SHA-512 is still taken, since the file names the image nowhere.
    if !require_tools("renamed_image", &["sha512sum"]) {
        return;
    }
    std::fs::rename(&renamed, &image).unwrap();
    let sums = tool(
        dir.path(),
        "sha512sum",
        &["debian-13.0.0-amd64-netinst.iso"],
    );
    std::fs::remove_file(dir.path().join("SHA256SUMS")).unwrap();
    std::fs::write(dir.path().join("SHA512SUMS"), sums).unwrap();
    std::fs::rename(&image, &renamed).unwrap();
    let v = verify_image(&renamed, &[]);
    assert_outcome(&v, "checksum-only", 10);
    assert_eq!(v.json["matched"]["renamed"], true);
    assert_eq!(v.json["matched"]["algorithm"], "sha512");
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

/// Keys and signatures made once by `gpg` and cached under
/// `target/fixtures/trust-gpg-<key>.d/`, keyed by this file's builder code
/// (`common::fixtures::cached`), so a changed recipe is never stale.
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

fn gpg_fixtures() -> Option<GpgFixtures> {
    if !require_tools("gpg fixtures", &["gpg", "gpgconf", "sha256sum"]) {
        return None;
    }
    static ONCE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let dir = ONCE.get_or_init(|| {
        common::fixtures::cached("trust-gpg", "d", "gpg keys, signatures, images", |dir| {
            std::fs::create_dir_all(dir).unwrap();
            build_gpg_fixtures(dir);
        })
    });
    Some(GpgFixtures { dir: dir.clone() })
}

fn build_gpg_fixtures(out: &Path) {
    let home = out.join("home");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let gen = |uid: &str, algo: &str, usage: &str, expire: &str, faked: Option<&str>| {
        let mut c = gpg(&home);
        // Every faked time ends in `!`, which freezes gpg's clock there:
        // without it the clock runs on from that time, and on a loaded
        // machine a signature came out dated a second late (00:00:01).
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
        Some("20200101T000000!"),
    );
    std::fs::write(out.join("expired.fpr"), &fpr).unwrap();
    // A key made in 2020 that never expires, for signatures with their own
    // expiry.
    let fpr = gen(
        "Old Key <old@example.org>",
        "ed25519",
        "sign",
        "never",
        Some("20200101T000000!"),
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
            "20200101T120000!",
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
            "20200102T000000!",
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
            "20200102T000000!",
            "--ignore-time-conflict",
            "--armor",
            "--detach-sign",
        ],
        "SHA256SUMS",
        "sums.backdated.asc",
    );
    // A signature dated in 2099: a clock far behind, or a forged date.
    sign(
        &["rsa4096"],
        &[
            "--faked-system-time",
            "20990101T000000!",
            "--armor",
            "--detach-sign",
        ],
        "SHA256SUMS",
        "sums.future.asc",
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
    sign(
        &["ed25519", "rsa4096"],
        &["--detach-sign"],
        "arch.iso",
        "arch.iso.multi.sig",
    );

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

/// The status keywords (`--status-fd`) gpg prints verifying `sig` with the
/// fixture keys `keys` imported: `GOODSIG`, `EXPKEYSIG`, `REVKEYSIG`,
/// `EXPSIG`, `BADSIG`, `ERRSIG`, `NO_PUBKEY`, `VALIDSIG`, …; the oracle's
/// own verdict on a signature bootstick refuses.
fn gpg_status(fx: &GpgFixtures, keys: &[&str], sig: &Path, data: Option<&Path>) -> Vec<String> {
    let home = tempfile::tempdir().unwrap();
    for k in keys {
        run(gpg(home.path())
            .arg("--import")
            .arg(fx.path(&format!("{k}.key"))));
    }
    let mut c = gpg(home.path());
    c.args(["--status-fd", "1", "--verify"]).arg(sig);
    if let Some(d) = data {
        c.arg(d);
    }
    let out = c.output().unwrap();
    let _ = Command::new("gpgconf")
        .arg("--homedir")
        .arg(home.path())
        .args(["--kill", "gpg-agent"])
        .status();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("[GNUPG:] "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
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
    let sums = fx.path("SHA256SUMS");
    // Each refusal next to what gpg, the oracle, says of the same signature
    // with the same key (its `--status-fd` keyword), so a fixture that stops
    // being what its name says fails here rather than passing for a reason
    // nobody meant.
    for (sig, key, gpg_keyword, outcome, code) in [
        // gpg checks the SHA-1 signature fine: refusing it is our rule.
        ("sums.sha1.asc", "rsa4096", "GOODSIG", "weak-signature", 15),
        (
            "sums.expired.asc",
            "expired",
            "EXPKEYSIG",
            "expired-key",
            16,
        ),
        (
            "sums.revoked.asc",
            "revoked",
            "REVKEYSIG",
            "revoked-key",
            17,
        ),
        ("sums.sig-expired.asc", "old", "EXPSIG", "expired-key", 16),
        // Made before its key existed: gpg cannot check it at all.
        (
            "sums.backdated.asc",
            "rsa4096",
            "ERRSIG",
            "bad-signature",
            13,
        ),
        ("sums.other.asc", "rsa4096", "NO_PUBKEY", "unknown-key", 14),
    ] {
        let status = gpg_status(&fx, &[key], &fx.path(sig), Some(&sums));
        assert!(
            status.iter().any(|s| s == gpg_keyword),
            "{sig}: gpg says {status:?}, expected {gpg_keyword}"
        );
        if gpg_keyword != "GOODSIG" {
            assert!(!status.iter().any(|s| s == "GOODSIG"), "{sig}: {status:?}");
        }
        assert_outcome(&case(sig, key), outcome, code);
    }
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

    // Trailing text after the signature block, even a line that lists this
    // very image with its right hash, makes the file a bad signature: text
    // outside the signed part is never read.
    let own_tail = tool(dir.path(), "sha256sum", &["--tag", "arch.iso"]);
    std::fs::write(
        dir.path().join("Fedora-arch-CHECKSUM"),
        format!("{text}{own_tail}"),
    )
    .unwrap();
    let v = verify_key(&fx, dir.path(), "rsa4096", &[]);
    assert_outcome(&v, "bad-signature", 13);
    assert!(
        v.json["signatures"][0]["detail"]
            .as_str()
            .is_some_and(|m| m.starts_with("text outside the signed part")),
        "{:#}",
        v.json
    );

    // Another image (not a copy of arch.iso): the intact signed part lists
    // arch.iso only, so it is not listed ...
    std::fs::write(dir.path().join("Fedora-arch-CHECKSUM"), &text).unwrap();
    std::fs::remove_file(dir.path().join("arch.iso")).unwrap();
    common::pseudo_random_file(&dir.path().join("other.iso"), 3 << 20, 7);
    let v = verify_with_keys(dir.path(), "other.iso", &[&fx], &["rsa4096"], &[]);
    assert_outcome(&v, "not-listed", 12);
    // ... and a line for it added after the signed part does not make it
    // listed: the file is a bad signature.
    let tail = tool(dir.path(), "sha256sum", &["--tag", "other.iso"]);
    std::fs::write(
        dir.path().join("Fedora-arch-CHECKSUM"),
        format!("{text}{tail}"),
    )
    .unwrap();
    let v = verify_with_keys(dir.path(), "other.iso", &[&fx], &["rsa4096"], &[]);
    assert_outcome(&v, "bad-signature", 13);
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
    let status = gpg_status(
        &fx,
        &["rsa4096"],
        &sig,
        Some(&dir.path().join("SHA256SUMS")),
    );
    // gpg refuses it too: the armor's CRC-24 no longer matches, so it finds
    // no OpenPGP data at all (NODATA), or with a matching CRC a BADSIG.
    assert!(
        status.iter().any(|s| s == "NODATA" || s == "BADSIG")
            && !status.iter().any(|s| s == "GOODSIG" || s == "VALIDSIG"),
        "gpg says {status:?}"
    );
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

/// An unrelated SHA256SUMS found beside the image (a downloads folder)
/// says nothing about it: `write` names the file, says it does not list the
/// image and writes it, with `not-listed` in the result. Asked for a check
/// (`--verify-source`) or given the file (`--sums`), it refuses as before.
#[test]
fn a_discovered_checksum_file_that_does_not_list_the_image_does_not_block_write() {
    if !require_tools(
        "a_discovered_checksum_file_that_does_not_list_the_image_does_not_block_write",
        &["sha256sum", "cmp"],
    ) {
        return;
    }
    let (dir, image) = image_dir("x.iso");
    pseudo_random_file(&dir.path().join("z.iso"), 1000, 7);
    let sums = dir.path().join("SHA256SUMS");
    std::fs::write(&sums, tool(dir.path(), "sha256sum", &["z.iso"])).unwrap();
    let out_dir = tempfile::tempdir().unwrap();

    let target = out_dir.path().join("written.img");
    let out = write_cmd(&image, &target, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let lines = common::json_lines(&out.stdout);
    assert!(
        lines.iter().any(|l| l["event"] == "warning"
            && l["message"].as_str().is_some_and(|m| m
                .contains("SHA256SUMS beside the image does not list it")
                && m.contains("--no-discover"))),
        "{lines:?}"
    );
    let start = lines.iter().find(|l| l["event"] == "start").unwrap();
    assert_eq!(start["source_check"]["outcome"], "not-listed", "{start}");
    run(Command::new("cmp").arg(&image).arg(&target));

    // Human summary: says nothing vouched for it.
    let target = out_dir.path().join("human.img");
    let out = bootstick()
        .args(["write", "--yes"])
        .arg(&image)
        .arg(&target)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("Source check: not-listed (") && stdout.contains("nothing vouched for it"),
        "{stdout}"
    );

    for extra in [
        vec!["--verify-source"],
        vec!["--sums", sums.to_str().unwrap()],
    ] {
        let target = out_dir.path().join("refused.img");
        let out = write_cmd(&image, &target, &extra);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(12), "{extra:?}: {err}");
        assert!(
            err.contains("looked at") && err.contains("SHA256SUMS"),
            "{err}"
        );
        assert!(!target.exists(), "{extra:?}: nothing may be written");
    }
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

// ---------------------------------------------------------------------------
// Issue 10: what is signed, framing of clearsigned files, inputs that would
// block, and messages a person can act on.
// ---------------------------------------------------------------------------

/// Runs bootstick with `args`, killing it (and failing) after `secs`.
fn bootstick_within(args: &[&std::ffi::OsStr], secs: u64) -> std::process::Output {
    let mut child = bootstick()
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "bootstick {args:?} still running after {secs} s (blocked?); stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn os<'a>(args: &'a [&'a str]) -> Vec<&'a std::ffi::OsStr> {
    args.iter().map(std::ffi::OsStr::new).collect()
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `--require-signature`, `--verify-source` and `--key` ask for a check: with
/// nothing (signed) beside the image, `write` refuses before it opens the
/// target (issue 10 item 1; the check used to be skipped when no reference
/// was found, and the image written with `source_check: null`).
#[test]
fn write_refuses_when_nothing_signed_covers_the_image() {
    let Some(fx) = gpg_fixtures() else { return };
    let key = fx.path("rsa4096.key");
    let key = key.to_str().unwrap();
    let cases: [(&[&str], &str); 4] = [
        (&["--key", key, "--require-signature"], "nothing signed"),
        (&["--require-signature"], "nothing signed"),
        (&["--key", key], "nothing"),
        (&["--verify-source"], "nothing covers"),
    ];
    for (flags, said) in cases {
        let dir = stage(&fx, &[("arch.iso", "arch.iso")]);
        let image = dir.path().join("arch.iso");
        // A new target must not be created, an existing one not touched.
        let new_target = dir.path().join("stick.img");
        let out = write_cmd(&image, &new_target, flags);
        assert_eq!(
            out.status.code(),
            Some(18),
            "{flags:?}: {}",
            stderr_of(&out)
        );
        assert!(
            stderr_of(&out).contains(said),
            "{flags:?}: {}",
            stderr_of(&out)
        );
        assert!(!new_target.exists(), "{flags:?}: the target was created");
        let old_target = dir.path().join("old.img");
        std::fs::write(&old_target, b"previous contents").unwrap();
        let out = write_cmd(&image, &old_target, flags);
        assert_eq!(out.status.code(), Some(18), "{flags:?}");
        assert_eq!(std::fs::read(&old_target).unwrap(), b"previous contents");
        let result = common::json_lines(&out.stdout).pop().unwrap();
        assert_eq!(result["ok"], false, "{flags:?}");
        assert_eq!(result["exit_code"], 18, "{flags:?}");
    }
    // An unsigned list that matches: --require-signature refuses it (10),
    // and says what was missing.
    let dir = stage(
        &fx,
        &[("arch.iso", "arch.iso"), ("SHA256SUMS", "SHA256SUMS")],
    );
    let target = dir.path().join("stick.img");
    let out = write_cmd(
        &dir.path().join("arch.iso"),
        &target,
        &["--key", key, "--require-signature"],
    );
    assert_eq!(out.status.code(), Some(10), "{}", stderr_of(&out));
    assert!(
        !stderr_of(&out).contains("give --key"),
        "{}",
        stderr_of(&out)
    );
    assert!(
        stderr_of(&out).contains("no signature file"),
        "{}",
        stderr_of(&out)
    );
    assert!(!target.exists());
}

/// A clearsigned list with anything but whitespace around the block is a
/// bad signature, and nothing in it is used (issue 10 item 2: a line put in
/// front of the header used to turn the file into an unsigned list, so the
/// attacker's line matched and `write` went ahead).
#[test]
fn clearsigned_file_with_text_outside_the_block_is_bad() {
    let Some(fx) = gpg_fixtures() else { return };
    let clear = std::fs::read_to_string(fx.path("CHECKSUM.clear")).unwrap();
    // The attacker's image and a line listing it.
    let evil_dir = tempfile::tempdir().unwrap();
    pseudo_random_file(&evil_dir.path().join("evil.iso"), 2 * 1024 * 1024, 666);
    let evil_line = tool(evil_dir.path(), "sha256sum", &["--tag", "evil.iso"]);
    let cases = [
        ("a prepended line", format!("{evil_line}{clear}")),
        (
            "a BOM and a prepended line",
            format!("\u{feff}{evil_line}{clear}"),
        ),
        ("a BOM", format!("\u{feff}{clear}")),
        ("an appended line", format!("{clear}{evil_line}")),
        ("spaces before the header", format!("  {clear}")),
        ("a second block", format!("{clear}{clear}")),
    ];
    for (what, text) in cases {
        let dir = stage(&fx, &[("arch.iso", "arch.iso")]);
        std::fs::copy(
            evil_dir.path().join("evil.iso"),
            dir.path().join("evil.iso"),
        )
        .unwrap();
        std::fs::write(dir.path().join("Fedora-arch-CHECKSUM"), &text).unwrap();
        for image in ["evil.iso", "arch.iso"] {
            let v = verify_with_keys(dir.path(), image, &[&fx], &["rsa4096"], &[]);
            assert_outcome(&v, "bad-signature", 13);
            assert!(v.json["matched"].is_null(), "{what}: {:#}", v.json);
            assert_eq!(v.json["sources"][0]["entries"], 0, "{what}");
            let detail = v.json["signatures"][0]["detail"]
                .as_str()
                .unwrap_or_default();
            assert!(
                detail.contains("text outside the signed part"),
                "{what}: {detail}"
            );
        }
        // `write` refuses the attacker's image before creating the target.
        let target = dir.path().join("stick.img");
        let key = fx.path("rsa4096.key");
        let out = write_cmd(
            &dir.path().join("evil.iso"),
            &target,
            &["--key", key.to_str().unwrap()],
        );
        assert_eq!(out.status.code(), Some(13), "{what}: {}", stderr_of(&out));
        assert!(
            stderr_of(&out).contains("text outside the signed part"),
            "{what}"
        );
        assert!(!target.exists(), "{what}");
        // Without --key too: the file is not an unsigned list.
        let out = write_cmd(&dir.path().join("evil.iso"), &target, &[]);
        assert_eq!(out.status.code(), Some(13), "{what}: {}", stderr_of(&out));
        assert!(!target.exists(), "{what}");
    }
}

/// Whitespace around a clearsigned block is tolerated at both ends, as gpg
/// (the oracle) tolerates it (issue 10 item 3: one trailing newline used to
/// give "bad-signature" where gpg says Good).
#[test]
fn clearsigned_file_whitespace_at_both_ends_as_gpg() {
    let Some(fx) = gpg_fixtures() else { return };
    let clear = std::fs::read_to_string(fx.path("CHECKSUM.clear")).unwrap();
    let crlf = clear.replace('\n', "\r\n");
    let header = "-----BEGIN PGP SIGNED MESSAGE-----";
    let end = "-----END PGP SIGNATURE-----";
    let cases = [
        ("as gpg wrote it", clear.clone()),
        ("leading blank lines", format!("\n\n{clear}")),
        ("leading whitespace lines", format!(" \t\n\r\n{clear}")),
        ("a trailing newline", format!("{clear}\n")),
        ("a trailing space", format!("{clear} ")),
        ("trailing whitespace lines", format!("{clear}\n \t\r\n\n")),
        ("no final newline", clear.trim_end_matches('\n').to_string()),
        (
            "spaces after the END line",
            clear.replace(end, &format!("{end} \t")),
        ),
        (
            "spaces after the header",
            clear.replace(header, &format!("{header}  ")),
        ),
        ("CRLF line ends", crlf.clone()),
        ("CRLF and blank lines around", format!("\r\n{crlf}\r\n")),
    ];
    for (what, text) in cases {
        let dir = stage(&fx, &[("arch.iso", "arch.iso")]);
        let file = dir.path().join("Fedora-arch-CHECKSUM");
        std::fs::write(&file, &text).unwrap();
        assert!(
            gpg_accepts(&fx, "rsa4096", &file, None),
            "gpg rejects {what}"
        );
        let v = verify_key(&fx, dir.path(), "rsa4096", &[]);
        assert_eq!(v.json["outcome"], "verified", "{what}: {:#}", v.json);
        assert_eq!(v.code, 0, "{what}");
        assert_eq!(v.json["sources"][0]["clearsigned"], true, "{what}");
    }
}

/// A FIFO with no writer as a checksum, signature or key file, or as the
/// image of `verify`, is refused at once (exit 3) instead of blocking the
/// open forever (issue 10 item 13).
#[test]
fn fifos_are_refused_without_blocking() {
    let Some(fx) = gpg_fixtures() else { return };
    let dir = stage(
        &fx,
        &[("arch.iso", "arch.iso"), ("SHA256SUMS", "SHA256SUMS")],
    );
    let fifo = dir.path().join("pipe");
    run(Command::new("mkfifo").arg(&fifo));
    let image = dir.path().join("arch.iso");
    let (i, f) = (image.to_str().unwrap(), fifo.to_str().unwrap());
    let key = fx.path("rsa4096.key");
    let k = key.to_str().unwrap();
    let zeros = "0".repeat(64);
    let cases: [&[&str]; 5] = [
        &["verify", i, "--sums", f],
        &["verify", i, "--sig", f, "--key", k],
        &["verify", i, "--key", f],
        &["verify", f, "--sha256", &zeros],
        &["verify", i, "--sums", dir.path().to_str().unwrap()],
    ];
    for args in cases {
        let out = bootstick_within(&os(args), 20);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {}", stderr_of(&out));
        let err = stderr_of(&out);
        assert!(err.contains("not a regular file"), "{args:?}: {err}");
    }
    // `write` refuses a FIFO given as a checksum file before any target.
    let target = dir.path().join("stick.img");
    let out = bootstick_within(
        &os(&["write", "--yes", i, target.to_str().unwrap(), "--sums", f]),
        20,
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr_of(&out));
    assert!(!target.exists());
    // Discovered: FIFOs under a checksum or signature file's name are not
    // read (a regular SHA256SUMS beside them still is).
    run(Command::new("mkfifo").arg(dir.path().join("SHA256SUMS.gpg")));
    run(Command::new("mkfifo").arg(dir.path().join("arch.iso.sig")));
    run(Command::new("mkfifo").arg(dir.path().join("sha256sum.txt")));
    let out = bootstick_within(&os(&["verify", "--json", i, "--key", k]), 20);
    let v = common::json_result(&out.stdout);
    assert_eq!(v["outcome"], "checksum-only", "{v:#}");
    assert_eq!(v["sources"].as_array().unwrap().len(), 1, "{v:#}");
}

/// Messages a person can act on (issue 10 item 17): no parser state, no
/// "give --key" when it was given, the pin that left a signer out, key IDs
/// refused with the reason, dates in UTC, and a future date not called
/// tampering.
#[test]
fn trust_messages_are_human() {
    let Some(fx) = gpg_fixtures() else { return };
    let base = [
        ("arch.iso", "arch.iso"),
        ("SHA256SUMS", "SHA256SUMS"),
        ("sums.rsa4096.asc", "SHA256SUMS.gpg"),
    ];
    let verify_err = |dir: &Path, args: &[&str]| -> (Option<i32>, String) {
        let out = bootstick()
            .arg("verify")
            .arg(dir.join("arch.iso"))
            .args(args)
            .output()
            .unwrap();
        (out.status.code(), stderr_of(&out))
    };
    let no_parser_state = |err: &str| {
        for dump in ["Error {", "input: [", "Error(", "code: Tag", "Some("] {
            assert!(!err.contains(dump), "parser state in: {err}");
        }
    };

    // Malformed keys: a checksum file, a truncated binary key, a truncated
    // armored key, a signature given as a key.
    let dir = stage(&fx, &base);
    let bin = std::fs::read(fx.path("rsa2048.key")).unwrap();
    std::fs::write(dir.path().join("trunc.gpg"), &bin[..300]).unwrap();
    let asc = std::fs::read(fx.path("rsa4096.key")).unwrap();
    std::fs::write(dir.path().join("trunc.asc"), &asc[..600]).unwrap();
    for (file, said) in [
        (
            "SHA256SUMS",
            "text without a -----BEGIN PGP PUBLIC KEY BLOCK----- line",
        ),
        ("trunc.gpg", "not an OpenPGP public key"),
        ("trunc.asc", "not an OpenPGP public key"),
        (
            "SHA256SUMS.gpg",
            "holds a PGP SIGNATURE, not a PGP PUBLIC KEY BLOCK",
        ),
    ] {
        let key = dir.path().join(file);
        let (code, err) = verify_err(dir.path(), &["--key", key.to_str().unwrap()]);
        assert_eq!(code, Some(3), "{file}: {err}");
        assert!(err.contains(said), "{file}: {err}");
        no_parser_state(&err);
    }

    // A malformed clearsigned file: damaged base64 in its signature.
    let clear = std::fs::read_to_string(fx.path("CHECKSUM.clear")).unwrap();
    let sig_start = clear.find("-----BEGIN PGP SIGNATURE-----").unwrap();
    let body = clear[sig_start..].find("\n\n").unwrap() + sig_start + 2;
    for damage in ["!!!!", "\n\n"] {
        let dir = stage(&fx, &[("arch.iso", "arch.iso")]);
        let mut text = clear.clone();
        text.replace_range(body..body + 4, damage);
        std::fs::write(dir.path().join("Fedora-arch-CHECKSUM"), text).unwrap();
        let key = fx.path("rsa4096.key");
        let (code, err) = verify_err(dir.path(), &["--key", key.to_str().unwrap()]);
        assert_eq!(code, Some(13), "{err}");
        assert!(err.contains("malformed clearsigned file"), "{err}");
        no_parser_state(&err);
    }

    // A key was given, but the list has no signature file: no "give --key".
    let dir = stage(&fx, &base[..2]);
    let key = fx.path("rsa4096.key");
    let (code, err) = verify_err(dir.path(), &["--key", key.to_str().unwrap()]);
    assert_eq!(code, Some(10));
    assert!(!err.contains("give --key"), "{err}");
    assert!(err.contains("no signature file"), "{err}");
    // ... while without --key the hint is right.
    let (code, err) = verify_err(dir.path(), &[]);
    assert_eq!(code, Some(10));
    assert!(err.contains("give --key"), "{err}");

    // The signer was given, but --fingerprint left it out.
    let dir = stage(&fx, &base);
    let keyring = fx.path("keyring.key");
    let ed = fx.fingerprint("ed25519");
    let rsa = fx.fingerprint("rsa4096");
    let (code, err) = verify_err(
        dir.path(),
        &["--key", keyring.to_str().unwrap(), "--fingerprint", &ed],
    );
    assert_eq!(code, Some(14), "{err}");
    assert!(err.contains("excluded by --fingerprint"), "{err}");
    assert!(err.contains(&rsa), "{err}");
    let v = verify_key(&fx, dir.path(), "keyring", &["--fingerprint", &ed]);
    assert_eq!(v.json["signatures"][0]["signatures"][0]["excluded"], true);

    // Key IDs (32 and 64 bits) are refused as pins, saying why.
    for id in [&rsa[32..], &rsa[24..], &format!("0x{}", &rsa[32..])[..]] {
        let (code, err) = verify_err(
            dir.path(),
            &["--key", keyring.to_str().unwrap(), "--fingerprint", id],
        );
        assert_eq!(code, Some(3), "{id}: {err}");
        assert!(err.contains("key ID, not a fingerprint"), "{id}: {err}");
        assert!(
            err.contains("refused because anyone can make a key with the same ID"),
            "{err}"
        );
    }

    // Expiry times as UTC dates (gpg made them with a faked clock).
    let expiry = |sig: &str, key: &str| {
        let dir = stage(
            &fx,
            &[
                ("arch.iso", "arch.iso"),
                ("SHA256SUMS", "SHA256SUMS"),
                (sig, "SHA256SUMS.gpg"),
            ],
        );
        let key = fx.path(&format!("{key}.key"));
        verify_err(dir.path(), &["--key", key.to_str().unwrap()])
    };
    let (code, err) = expiry("sums.expired.asc", "expired");
    assert_eq!(code, Some(16));
    assert!(err.contains("expired on 2020-01-02 00:00:00 UTC"), "{err}");
    let (code, err) = expiry("sums.sig-expired.asc", "old");
    assert_eq!(code, Some(16));
    assert!(
        err.contains("the signature itself expired on 2020-01-03 00:00:00 UTC"),
        "{err}"
    );

    // A signature dated in 2099: the clock, not an alteration.
    let (code, err) = expiry("sums.future.asc", "rsa4096");
    assert_eq!(code, Some(13), "{err}");
    assert!(
        err.contains("dated 2099-01-01 00:00:00 UTC, in the future"),
        "{err}"
    );
    assert!(err.contains("check the clock"), "{err}");
    assert!(!err.contains("altered"), "{err}");
}

// ---------------------------------------------------------------------------
// Issue 20: checksum files as distributions publish them, signed by gpg.
// ---------------------------------------------------------------------------

/// How a file is signed.
#[derive(Clone, Copy)]
enum Sign {
    /// `gpg --armor --detach-sign`.
    Armored,
    /// `gpg --detach-sign` (binary).
    Binary,
    /// `gpg --clearsign`.
    Clear,
}

/// A private copy of the fixture keys' gpg home, to sign with.
struct GpgSigner<'f> {
    fx: &'f GpgFixtures,
    home: tempfile::TempDir,
}

impl<'f> GpgSigner<'f> {
    fn new(fx: &'f GpgFixtures) -> Self {
        let home = tempfile::tempdir().unwrap();
        run(Command::new("cp")
            .arg("-r")
            .arg(fx.path("home").join("."))
            .arg(home.path()));
        std::fs::set_permissions(
            home.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        GpgSigner { fx, home }
    }

    /// Signs `input` with fixture key `key` into `output`.
    fn sign(&self, key: &str, how: Sign, input: &Path, output: &Path) {
        let mut c = gpg(self.home.path());
        c.arg("--local-user")
            .arg(format!("{}!", self.fx.fingerprint(key)));
        match how {
            Sign::Armored => c.args(["--armor", "--detach-sign"]),
            Sign::Binary => c.arg("--detach-sign"),
            Sign::Clear => c.arg("--clearsign"),
        };
        run(c.arg("--output").arg(output).arg(input));
    }

    /// Writes `text` to `dir/name`, clearsigned with `key`.
    fn clearsigned(&self, key: &str, dir: &Path, name: &str, text: &str) {
        let plain = dir.join(format!("{name}.unsigned"));
        std::fs::write(&plain, text).unwrap();
        self.sign(key, Sign::Clear, &plain, &dir.join(name));
        std::fs::remove_file(plain).unwrap();
    }

    /// Writes `text` to `dir/name` and a detached signature `dir/name.ext`.
    fn detached(&self, key: &str, how: Sign, dir: &Path, name: &str, ext: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
        self.sign(
            key,
            how,
            &dir.join(name),
            &dir.join(format!("{name}.{ext}")),
        );
    }
}

impl Drop for GpgSigner<'_> {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .arg("--homedir")
            .arg(self.home.path())
            .args(["--kill", "gpg-agent"])
            .status();
    }
}

/// One distribution's download folder: the image, the files published
/// beside it, the key that signs them, and what a tampered image gives.
struct Shape {
    distro: &'static str,
    image: &'static str,
    key: &'static str,
    build: fn(&Path, &str, &GpgSigner),
    /// The algorithm the match is made with (the strongest listed).
    algorithm: &'static str,
    /// Outcome and code for the correct image (by discovery alone, with
    /// `--key`).
    correct: (&'static str, i32),
    /// Outcome and code for the image with one byte flipped.
    tampered: (&'static str, i32),
}

/// Another image listed beside the real one, as in every real list.
fn other_image(dir: &Path, name: &str) {
    pseudo_random_file(&dir.join(name), 8192, 3);
}

fn shapes() -> Vec<Shape> {
    vec![
        Shape {
            distro: "Debian CD",
            image: "debian-13.2.0-amd64-netinst.iso",
            key: "rsa4096",
            build: |d, img, s| {
                other_image(d, "debian-edu-13.2.0-amd64-netinst.iso");
                let files = ["debian-edu-13.2.0-amd64-netinst.iso", img];
                let t = tool(d, "sha256sum", &files);
                s.detached("rsa4096", Sign::Armored, d, "SHA256SUMS", "sign", &t);
                let t = tool(d, "sha512sum", &files);
                s.detached("rsa4096", Sign::Armored, d, "SHA512SUMS", "sign", &t);
                std::fs::remove_file(d.join("debian-edu-13.2.0-amd64-netinst.iso")).unwrap();
            },
            algorithm: "sha512",
            correct: ("verified", 0),
            tampered: ("mismatch", 11),
        },
        Shape {
            distro: "Ubuntu",
            image: "ubuntu-24.04.3-desktop-amd64.iso",
            key: "ed25519",
            build: |d, img, s| {
                other_image(d, "ubuntu-24.04.3-live-server-amd64.iso");
                let t = tool(
                    d,
                    "sha256sum",
                    &["-b", img, "ubuntu-24.04.3-live-server-amd64.iso"],
                );
                s.detached("ed25519", Sign::Armored, d, "SHA256SUMS", "gpg", &t);
            },
            algorithm: "sha256",
            correct: ("verified", 0),
            tampered: ("mismatch", 11),
        },
        Shape {
            distro: "Fedora",
            image: "Fedora-Workstation-Live-43-1.6.x86_64.iso",
            key: "rsa4096",
            build: |d, img, s| {
                let size = std::fs::metadata(d.join(img)).unwrap().len();
                let t = format!(
                    "# {img}: {size} bytes\n{}",
                    tool(d, "sha256sum", &["--tag", img])
                );
                s.clearsigned(
                    "rsa4096",
                    d,
                    "Fedora-Workstation-43-1.6-x86_64-CHECKSUM",
                    &t,
                );
            },
            algorithm: "sha256",
            correct: ("verified", 0),
            tampered: ("mismatch", 11),
        },
        Shape {
            distro: "Rocky Linux",
            image: "Rocky-10.0-x86_64-minimal.iso",
            key: "ed25519",
            build: |d, img, s| {
                let size = std::fs::metadata(d.join(img)).unwrap().len();
                let t = format!(
                    "# {img}: {size} bytes\n{}",
                    tool(d, "sha256sum", &["--tag", img])
                );
                std::fs::write(d.join(format!("{img}.CHECKSUM")), &t).unwrap();
                s.clearsigned("ed25519", d, "CHECKSUM", &t);
            },
            algorithm: "sha256",
            correct: ("verified", 0),
            tampered: ("mismatch", 11),
        },
        Shape {
            distro: "AlmaLinux",
            image: "AlmaLinux-10.0-x86_64-dvd.iso",
            key: "rsa2048",
            build: |d, img, s| {
                other_image(d, "AlmaLinux-10.0-x86_64-boot.iso");
                let t = tool(
                    d,
                    "sha256sum",
                    &["--tag", "AlmaLinux-10.0-x86_64-boot.iso", img],
                );
                s.clearsigned("rsa2048", d, "CHECKSUM", &t);
            },
            algorithm: "sha256",
            correct: ("verified", 0),
            tampered: ("mismatch", 11),
        },
        Shape {
            distro: "FreeBSD",
            image: "FreeBSD-14.3-RELEASE-amd64-disc1.iso",
            key: "ed25519",
            build: |d, img, s| {
                other_image(d, "FreeBSD-14.3-RELEASE-amd64-bootonly.iso");
                let files = ["FreeBSD-14.3-RELEASE-amd64-bootonly.iso", img];
                let mut a = vec!["--tag"];
                a.extend(files);
                let t = tool(d, "sha256sum", &a);
                std::fs::write(d.join("CHECKSUM.SHA256-FreeBSD-14.3-RELEASE-amd64"), t).unwrap();
                let t = tool(d, "sha512sum", &a);
                let name = "CHECKSUM.SHA512-FreeBSD-14.3-RELEASE-amd64";
                s.detached("ed25519", Sign::Armored, d, name, "asc", &t);
            },
            algorithm: "sha512",
            correct: ("verified", 0),
            tampered: ("mismatch", 11),
        },
        Shape {
            distro: "Arch Linux",
            image: "archlinux-2025.12.01-x86_64.iso",
            key: "ed25519",
            build: |d, img, s| {
                std::fs::write(d.join("sha256sums.txt"), tool(d, "sha256sum", &[img])).unwrap();
                std::fs::write(d.join("b2sums.txt"), tool(d, "b2sum", &[img])).unwrap();
                s.sign(
                    "ed25519",
                    Sign::Binary,
                    &d.join(img),
                    &d.join(format!("{img}.sig")),
                );
            },
            algorithm: "blake2b-512",
            correct: ("verified", 0),
            // The signature over the image fails first.
            tampered: ("bad-signature", 13),
        },
        Shape {
            distro: "Tails",
            image: "tails-amd64-7.3.img",
            key: "rsa4096",
            build: |d, img, s| {
                s.sign(
                    "rsa4096",
                    Sign::Armored,
                    &d.join(img),
                    &d.join(format!("{img}.sig")),
                );
            },
            algorithm: "",
            correct: ("verified", 0),
            tampered: ("bad-signature", 13),
        },
        Shape {
            distro: "Qubes OS",
            image: "Qubes-R4.2.4-x86_64.iso",
            key: "rsa4096",
            build: |d, img, s| {
                let mut t = String::new();
                for prog in ["md5sum", "sha1sum", "sha256sum", "sha512sum"] {
                    t.push_str(&tool(d, prog, &["-b", img]));
                }
                s.clearsigned("rsa4096", d, &format!("{img}.DIGESTS"), &t);
            },
            algorithm: "sha512",
            correct: ("verified", 0),
            tampered: ("mismatch", 11),
        },
        Shape {
            distro: "openSUSE",
            image: "openSUSE-Tumbleweed-DVD-x86_64-Snapshot20251201-Media.iso",
            key: "rsa2048",
            build: |d, img, s| {
                let t = tool(d, "sha256sum", &[img]);
                s.detached(
                    "rsa2048",
                    Sign::Armored,
                    d,
                    &format!("{img}.sha256"),
                    "asc",
                    &t,
                );
            },
            algorithm: "sha256",
            correct: ("verified", 0),
            tampered: ("mismatch", 11),
        },
        Shape {
            distro: "Linux Mint",
            image: "linuxmint-22.2-cinnamon-64bit.iso",
            key: "rsa4096",
            build: |d, img, s| {
                other_image(d, "linuxmint-22.2-xfce-64bit.iso");
                let t = tool(
                    d,
                    "sha256sum",
                    &["-b", "linuxmint-22.2-xfce-64bit.iso", img],
                );
                s.detached("rsa4096", Sign::Binary, d, "sha256sum.txt", "gpg", &t);
            },
            algorithm: "sha256",
            correct: ("verified", 0),
            tampered: ("mismatch", 11),
        },
        Shape {
            distro: "Kali",
            image: "kali-linux-2025.4-installer-amd64.iso",
            key: "ed25519",
            build: |d, img, s| {
                let t = tool(d, "sha256sum", &[img]);
                s.detached("ed25519", Sign::Binary, d, "SHA256SUMS", "gpg", &t);
            },
            algorithm: "sha256",
            correct: ("verified", 0),
            tampered: ("mismatch", 11),
        },
        Shape {
            distro: "Alpine",
            image: "alpine-standard-3.23.0-x86_64.iso",
            key: "rsa4096",
            build: |d, img, s| {
                std::fs::write(
                    d.join(format!("{img}.sha256")),
                    tool(d, "sha256sum", &[img]),
                )
                .unwrap();
                std::fs::write(
                    d.join(format!("{img}.sha512")),
                    tool(d, "sha512sum", &[img]),
                )
                .unwrap();
                s.sign(
                    "rsa4096",
                    Sign::Armored,
                    &d.join(img),
                    &d.join(format!("{img}.asc")),
                );
            },
            algorithm: "sha512",
            correct: ("verified", 0),
            tampered: ("bad-signature", 13),
        },
        Shape {
            distro: "NixOS",
            image: "nixos-minimal-25.11.1234.abcdef0-x86_64-linux.iso",
            key: "rsa4096",
            build: |d, img, _| {
                std::fs::write(
                    d.join(format!("{img}.sha256")),
                    tool(d, "sha256sum", &[img]),
                )
                .unwrap();
            },
            algorithm: "sha256",
            // NixOS publishes no signature: a matching hash is all there is.
            correct: ("checksum-only", 10),
            tampered: ("mismatch", 11),
        },
        Shape {
            distro: "Raspberry Pi OS",
            image: "2025-11-24-raspios-trixie-arm64.img.xz",
            key: "ed25519",
            build: |d, img, s| {
                std::fs::write(
                    d.join(format!("{img}.sha256")),
                    tool(d, "sha256sum", &[img]),
                )
                .unwrap();
                s.sign(
                    "ed25519",
                    Sign::Binary,
                    &d.join(img),
                    &d.join(format!("{img}.sig")),
                );
            },
            algorithm: "sha256",
            correct: ("verified", 0),
            tampered: ("bad-signature", 13),
        },
    ]
}

/// Every distribution shape of docs/trust.md's table, with its real file
/// names and layout, signed by gpg: the correct image is `verified` by
/// discovery alone, a tampered one refused (issue 20).
#[test]
fn distribution_shapes_verify_by_discovery() {
    let Some(fx) = gpg_fixtures() else { return };
    if !require_tools(
        "distribution_shapes",
        &["sha512sum", "b2sum", "md5sum", "sha1sum"],
    ) {
        return;
    }
    let signer = GpgSigner::new(&fx);
    for shape in shapes() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join(shape.image);
        pseudo_random_file(&image, 2 * 1024 * 1024 + 4321, 1234);
        (shape.build)(dir.path(), shape.image, &signer);
        let key = fx.path(&format!("{}.key", shape.key));
        let v = verify_image(&image, &["--key", key.to_str().unwrap()]);
        let what = shape.distro;
        assert_eq!(v.json["outcome"], shape.correct.0, "{what}: {:#}", v.json);
        assert_eq!(v.code, shape.correct.1, "{what}");
        if !shape.algorithm.is_empty() {
            assert_eq!(
                v.json["matched"]["algorithm"], shape.algorithm,
                "{what}: {:#}",
                v.json
            );
        }
        if shape.correct.0 == "verified" {
            assert_eq!(
                v.json["signers"][0]["fingerprint"],
                fx.fingerprint(shape.key),
                "{what}"
            );
        }
        // `write` goes ahead with it (a verified image; NixOS: with the
        // checksum-only warning).
        let target = dir.path().join("stick.img");
        let out = write_cmd(&image, &target, &["--key", key.to_str().unwrap()]);
        assert!(out.status.success(), "{what}: {}", stderr_of(&out));
        run(Command::new("cmp").arg(&image).arg(&target));
        std::fs::remove_file(&target).unwrap();

        flip_byte(&image, 1024 * 1024 + 17);
        let v = verify_image(&image, &["--key", key.to_str().unwrap()]);
        assert_eq!(
            v.json["outcome"], shape.tampered.0,
            "{what} tampered: {:#}",
            v.json
        );
        assert_eq!(v.code, shape.tampered.1, "{what} tampered");
        let out = write_cmd(&image, &target, &["--key", key.to_str().unwrap()]);
        assert_eq!(
            out.status.code(),
            Some(shape.tampered.1),
            "{what}: {}",
            stderr_of(&out)
        );
        assert!(!target.exists(), "{what}: tampered image written");
    }
}

/// Debian's installer images: `SHA256SUMS` lists `./netboot/mini.iso` and
/// `./netboot/gtk/mini.iso`, two different files with the same name. Each is
/// verified, downloaded alone or in its tree; a list contradicting itself
/// for one path is refused (issue 20: the first used to be "mismatch").
#[test]
fn debian_installer_tree_same_names_and_conflicts() {
    let Some(fx) = gpg_fixtures() else { return };
    let signer = GpgSigner::new(&fx);
    let tree = tempfile::tempdir().unwrap();
    let images = tree.path().join("images");
    for (sub, seed) in [("netboot", 1), ("netboot/gtk", 2), ("hd-media", 3)] {
        std::fs::create_dir_all(images.join(sub)).unwrap();
        let name = if sub == "hd-media" {
            "boot.img.gz"
        } else {
            "mini.iso"
        };
        pseudo_random_file(&images.join(sub).join(name), 1024 * 1024 + seed, seed);
    }
    let list = tool(
        &images,
        "sha256sum",
        &[
            "./hd-media/boot.img.gz",
            "./netboot/gtk/mini.iso",
            "./netboot/mini.iso",
        ],
    );
    signer.detached(
        "rsa4096",
        Sign::Armored,
        &images,
        "SHA256SUMS",
        "sign",
        &list,
    );
    let key = fx.path("rsa4096.key");
    let k = key.to_str().unwrap();

    // In the tree, with --sums: each by its own path.
    for (image, line) in [("netboot/mini.iso", 3), ("netboot/gtk/mini.iso", 2)] {
        let v = verify_image(
            &images.join(image),
            &[
                "--key",
                k,
                "--sums",
                images.join("SHA256SUMS").to_str().unwrap(),
            ],
        );
        assert_outcome(&v, "verified", 0);
        assert_eq!(v.json["matched"]["line"], line, "{image}");
        assert_eq!(v.json["matched"]["by"], "path", "{image}");
        assert_eq!(v.json["mismatches"], serde_json::json!([]), "{image}");
    }
    // Downloaded alone beside the list (discovery): by name, with the other
    // entry that shares it reported.
    for (image, line, other) in [
        ("netboot/mini.iso", 3, "./netboot/gtk/mini.iso"),
        ("netboot/gtk/mini.iso", 2, "./netboot/mini.iso"),
    ] {
        let dl = tempfile::tempdir().unwrap();
        for f in ["SHA256SUMS", "SHA256SUMS.sign"] {
            std::fs::copy(images.join(f), dl.path().join(f)).unwrap();
        }
        std::fs::copy(images.join(image), dl.path().join("mini.iso")).unwrap();
        let v = verify_image(&dl.path().join("mini.iso"), &["--key", k]);
        assert_outcome(&v, "verified", 0);
        let m = &v.json["matched"];
        assert_eq!(
            (m["line"].clone(), m["by"].clone()),
            (line.into(), "name".into()),
            "{v:#?}",
            v = v.json
        );
        assert_eq!(m["same_name"][0]["name"], other);
        assert_eq!(m["same_name"].as_array().unwrap().len(), 1);
        // A tampered copy matches neither entry: mismatch.
        flip_byte(&dl.path().join("mini.iso"), 4096);
        let v = verify_image(&dl.path().join("mini.iso"), &["--key", k]);
        assert_outcome(&v, "mismatch", 11);
        assert_eq!(v.json["mismatches"].as_array().unwrap().len(), 2);
    }
    // An image in the tree the list does not name: not-listed, not mismatch.
    pseudo_random_file(&images.join("netboot/other.iso"), 5000, 9);
    let v = verify_image(
        &images.join("netboot/other.iso"),
        &[
            "--key",
            k,
            "--sums",
            images.join("SHA256SUMS").to_str().unwrap(),
        ],
    );
    assert_outcome(&v, "not-listed", 12);

    // A second entry for the same path with another hash, signed: the
    // signature is good, the list contradicts itself.
    let other = tool(&images, "sha256sum", &["./hd-media/boot.img.gz"]);
    let conflicting = format!(
        "{list}{}",
        other.replace("./hd-media/boot.img.gz", "./netboot/mini.iso")
    );
    signer.detached(
        "rsa4096",
        Sign::Armored,
        &images,
        "SHA256SUMS",
        "sign",
        &conflicting,
    );
    let v = verify_image(
        &images.join("netboot/mini.iso"),
        &[
            "--key",
            k,
            "--sums",
            images.join("SHA256SUMS").to_str().unwrap(),
        ],
    );
    assert_outcome(&v, "mismatch", 11);
    let lines: Vec<_> = v.json["mismatches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["line"].clone(), m["conflicts_with"].clone()))
        .collect();
    assert_eq!(
        lines,
        [(3.into(), 4.into()), (4.into(), 3.into())],
        "{:#}",
        v.json
    );
    // ... also when the image was downloaded alone (by name).
    let dl = tempfile::tempdir().unwrap();
    for f in ["SHA256SUMS", "SHA256SUMS.sign"] {
        std::fs::copy(images.join(f), dl.path().join(f)).unwrap();
    }
    std::fs::copy(images.join("netboot/mini.iso"), dl.path().join("mini.iso")).unwrap();
    assert_outcome(
        &verify_image(&dl.path().join("mini.iso"), &["--key", k]),
        "mismatch",
        11,
    );
    // The gtk image's own path is not contradicted: still verified.
    std::fs::copy(
        images.join("netboot/gtk/mini.iso"),
        dl.path().join("mini.iso"),
    )
    .unwrap();
    assert_outcome(
        &verify_image(&dl.path().join("mini.iso"), &["--key", k]),
        "verified",
        0,
    );
}

/// A list that gives the image only MD5 and SHA-1 digests, clearsigned with
/// a good signature: the hash finds corruption, it does not make the image
/// verified (issue 20).
#[test]
fn md5_and_sha1_alone_never_verify() {
    let Some(fx) = gpg_fixtures() else { return };
    if !require_tools("md5_sha1", &["md5sum", "sha1sum"]) {
        return;
    }
    let signer = GpgSigner::new(&fx);
    let dir = tempfile::tempdir().unwrap();
    let img = "Qubes-R4.2.4-x86_64.iso";
    let image = dir.path().join(img);
    pseudo_random_file(&image, 1024 * 1024 + 5, 77);
    let mut t = tool(dir.path(), "md5sum", &["-b", img]);
    t.push_str(&tool(dir.path(), "sha1sum", &["-b", img]));
    signer.clearsigned("rsa4096", dir.path(), &format!("{img}.DIGESTS"), &t);
    let key = fx.path("rsa4096.key");
    let k = key.to_str().unwrap();
    let v = verify_image(&image, &["--key", k]);
    assert_outcome(&v, "checksum-only", 10);
    assert_eq!(v.json["matched"]["algorithm"], "sha1");
    assert_eq!(v.json["signatures"][0]["status"], "good");
    assert_eq!(v.json["signers"], serde_json::json!([]));
    let out = bootstick()
        .arg("verify")
        .arg(&image)
        .args(["--key", k])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("outcome: checksum-only (sha1 only: finds corruption, not tampering)"),
        "{text}"
    );
    // --require-signature refuses it.
    let target = dir.path().join("stick.img");
    let out = write_cmd(&image, &target, &["--key", k, "--require-signature"]);
    assert_eq!(out.status.code(), Some(10));
    assert!(!target.exists());
    // A corrupt image is still caught by the weak hash.
    flip_byte(&image, 100);
    assert_outcome(&verify_image(&image, &["--key", k]), "mismatch", 11);
}

/// A Debian `InRelease` from this machine's apt lists, verified with the
/// archive keyring, and the `Packages` index it lists (issue 20: hash lines
/// of Release files used to be read as entries named "SIZE PATH").
#[test]
fn real_inrelease_and_its_packages_file() {
    if !require_tools("real_inrelease", &["gpgv"]) {
        return;
    }
    let lists = Path::new("/var/lib/apt/lists");
    let keyring = Path::new("/usr/share/keyrings/debian-archive-keyring.gpg");
    let inrelease = std::fs::read_dir(lists)
        .ok()
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.contains("_debian_dists_")
                    && n.ends_with("_InRelease")
                    && !n.contains("-updates")
                    && !n.contains("security")
            })
        })
        .min();
    let Some(inrelease) = inrelease.filter(|_| keyring.exists()) else {
        // scripts/test.sh runs `apt-get update`, so the lists exist there.
        common::skip(
            "real_inrelease",
            &format!(
                "no Debian InRelease in /var/lib/apt/lists or no {}",
                keyring.display()
            ),
        );
        return;
    };
    // gpgv, the oracle, accepts it with the keyring.
    let ok = Command::new("gpgv")
        .arg("--keyring")
        .arg(keyring)
        .arg(&inrelease)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let good = String::from_utf8_lossy(&ok.stderr)
        .matches("Good signature")
        .count();

    // Lay it out as the archive does: dists/SUITE/InRelease, paths below.
    let root = tempfile::tempdir().unwrap();
    let suite = root.path().join("dists/suite");
    std::fs::create_dir_all(suite.join("main/binary-amd64")).unwrap();
    std::fs::copy(&inrelease, suite.join("InRelease")).unwrap();
    let v = verify(&[
        suite.join("InRelease").as_os_str(),
        std::ffi::OsStr::new("--no-discover"),
        std::ffi::OsStr::new("--sha256"),
        std::ffi::OsStr::new(&"0".repeat(64)),
    ]);
    assert_eq!(v.json["outcome"], "mismatch", "{:#}", v.json);

    // The Packages index apt keeps for it (stored compressed as apt
    // chose; apt-helper undoes that), checked against InRelease.
    let prefix = inrelease
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .trim_end_matches("InRelease")
        .to_string();
    let packages = std::fs::read_dir(lists)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{prefix}main_binary-amd64_Packages")))
        })
        .expect("the Packages index of the InRelease");
    let plain = std::process::Command::new("/usr/lib/apt/apt-helper")
        .arg("cat-file")
        .arg(&packages)
        .output()
        .unwrap();
    assert!(plain.status.success());
    let image = suite.join("main/binary-amd64/Packages");
    std::fs::write(&image, &plain.stdout).unwrap();
    let args = |extra: &[&str]| {
        let mut a: Vec<std::ffi::OsString> = vec![
            image.clone().into_os_string(),
            "--key".into(),
            keyring.into(),
            "--sums".into(),
            suite.join("InRelease").into_os_string(),
        ];
        a.extend(extra.iter().map(std::ffi::OsString::from));
        a
    };
    let a = args(&[]);
    let v = verify(&a.iter().map(|a| a.as_os_str()).collect::<Vec<_>>());
    assert_outcome(&v, "verified", 0);
    assert_eq!(v.json["matched"]["name"], "main/binary-amd64/Packages");
    assert_eq!(v.json["matched"]["by"], "path");
    assert_eq!(v.json["matched"]["algorithm"], "sha256");
    let goods = v.json["signatures"][0]["signatures"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["status"] == "good")
        .count();
    assert_eq!(goods, good, "as many good signatures as gpgv: {:#}", v.json);
    assert!(v.json["sources"][0]["entries"].as_u64().unwrap() > 10);
    // No entry was read with the size as part of its name.
    assert!(
        v.json["sources"][0]["ignored"]
            .as_array()
            .unwrap()
            .is_empty(),
        "{:#}",
        v.json
    );
    // A changed Packages index is a mismatch.
    let mut bytes = plain.stdout.clone();
    bytes[100] ^= 1;
    std::fs::write(&image, &bytes).unwrap();
    let v = verify(&a.iter().map(|a| a.as_os_str()).collect::<Vec<_>>());
    assert_outcome(&v, "mismatch", 11);
}

/// isomd5sum's implanted MD5 (Fedora, RHEL, Rocky, AlmaLinux ISOs):
/// `implantisomd5` writes it, `checkisomd5` is the oracle. `inspect` shows
/// it; `verify` checks it when no checksum file applies and calls a match
/// `checksum-only`, never `verified` (issue 20).
#[test]
fn implanted_md5_is_checked_like_checkisomd5() {
    if !require_tools(
        "implanted_md5",
        &["xorriso", "implantisomd5", "checkisomd5"],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("LiveOS")).unwrap();
    pseudo_random_file(&tree.join("LiveOS/squashfs.img"), 3 * 1024 * 1024 + 999, 8);
    let iso = dir.path().join("Fedora-Test-43.iso");
    run(Command::new("xorriso")
        .args(["-as", "mkisofs", "-quiet", "-V", "Fedora-Test-43", "-o"])
        .arg(&iso)
        .arg(&tree));
    // Before implanting: nothing to check.
    assert_outcome(&verify_image(&iso, &[]), "no-reference", 18);
    run(Command::new("implantisomd5").arg(&iso));
    let listed = run(Command::new("checkisomd5").arg("--md5sumonly").arg(&iso));
    let md5 = listed.split_whitespace().nth(1).unwrap().to_string();
    let checks = |path: &Path| {
        Command::new("checkisomd5")
            .arg(path)
            .status()
            .unwrap()
            .success()
    };
    assert!(checks(&iso));

    let inspect = run(bootstick().args(["inspect", "--json"]).arg(&iso));
    let doc = common::json_lines(inspect.as_bytes()).pop().unwrap();
    assert_eq!(doc["implanted_md5"]["md5"], md5.as_str());
    assert_eq!(doc["implanted_md5"]["fragment_count"], 20);
    assert!(run(bootstick().arg("inspect").arg(&iso)).contains(&format!("implanted md5 {md5}")));

    let v = verify_image(&iso, &[]);
    assert_outcome(&v, "checksum-only", 10);
    assert_eq!(v.json["matched"]["by"], "implanted");
    assert_eq!(v.json["matched"]["algorithm"], "md5");
    assert_eq!(v.json["implanted_md5"]["computed"], md5.as_str());
    let covered = v.json["implanted_md5"]["covered"].as_u64().unwrap();
    let out = bootstick().arg("verify").arg(&iso).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains("outcome: checksum-only (implanted md5: finds corruption, not tampering)"));
    // With a checksum file that lists the image, that decides instead.
    std::fs::write(
        dir.path().join("Fedora-Test-43-CHECKSUM"),
        tool(dir.path(), "sha256sum", &["--tag", "Fedora-Test-43.iso"]),
    )
    .unwrap();
    let v = verify_image(&iso, &[]);
    assert_eq!(v.json["matched"]["by"], "path", "{:#}", v.json);
    assert!(v.json["implanted_md5"].is_null());
    std::fs::remove_file(dir.path().join("Fedora-Test-43-CHECKSUM")).unwrap();

    // Damage in the middle, at the end of the covered range, and in the
    // skipped tail: our verdict is checkisomd5's each time.
    let size = std::fs::metadata(&iso).unwrap().len();
    for at in [40_000, size / 2, covered - 1, covered + 100] {
        let copy = dir.path().join("damaged.iso");
        std::fs::copy(&iso, &copy).unwrap();
        flip_byte(&copy, at as usize);
        let v = verify_image(&copy, &[]);
        let expect = if checks(&copy) {
            ("checksum-only", 10)
        } else {
            ("mismatch", 11)
        };
        assert_eq!(
            (v.json["outcome"].as_str().unwrap(), v.code),
            expect,
            "byte {at}: {:#}",
            v.json
        );
        if at < covered {
            assert_eq!(expect.0, "mismatch", "byte {at}");
        }
    }
    // A damaged fragment sum alone (the MD5 still right): checkisomd5
    // fails it, so do we.
    let mut b = std::fs::read(&iso).unwrap();
    let text = String::from_utf8_lossy(&b[32768 + 883..32768 + 883 + 512]).into_owned();
    let at = 32768 + 883 + text.find("FRAGMENT SUMS = ").unwrap() + 16 + 30;
    b[at] = if b[at] == b'0' { b'1' } else { b'0' };
    let copy = dir.path().join("fragment.iso");
    std::fs::write(&copy, &b).unwrap();
    assert!(!checks(&copy));
    let v = verify_image(&copy, &[]);
    assert_outcome(&v, "mismatch", 11);
    assert!(
        v.json["implanted_md5"]["bad_fragment"].is_u64(),
        "{:#}",
        v.json
    );
    // Truncated: the covered range runs past the end.
    let cut = dir.path().join("cut.iso");
    std::fs::write(&cut, &std::fs::read(&iso).unwrap()[..(size / 2) as usize]).unwrap();
    assert!(!checks(&cut));
    assert_outcome(&verify_image(&cut, &[]), "mismatch", 11);
}

// ---------------------------------------------------------------------------
// Verdicts pinned against mutation (issue 25): each case is what a user sees
// (whether `write` checks at all, exit codes, the report's lists).

/// `write IMAGE TARGET` and what it says about the source check, for the
/// JSON `start` line's `source_check` (null: no check ran) and the exit.
fn write_check(image: &Path, extra: &[&str]) -> (i32, serde_json::Value) {
    let target = image.with_extension("stick");
    let out = bootstick()
        .args(["write", "--yes", "--json"])
        .args(extra)
        .arg(image)
        .arg(&target)
        .output()
        .unwrap();
    let start = common::json_lines(&out.stdout)
        .into_iter()
        .find(|l| l["event"] == "start")
        .unwrap_or_else(|| panic!("no start line: {out:?}"));
    let _ = std::fs::remove_file(&target);
    (out.status.code().unwrap(), start["source_check"].clone())
}

/// `write` checks the image exactly when something could vouch for it or
/// against it (`trust::has_references`): a checksum file or signature
/// beside the image (unless `--no-discover`), or `--sums`, `--sha256`,
/// `--sig` given. Each case below fails for one way of getting that
/// decision wrong (a reference ignored, or a check invented).
#[test]
fn write_checks_exactly_when_a_reference_exists() {
    if !require_tools("write_checks", &["sha256sum"]) {
        return;
    }
    let (dir, image) = image_dir("w.iso");
    let hex = tool(dir.path(), "sha256sum", &["w.iso"]);
    let hex = hex.split_whitespace().next().unwrap().to_string();
    // Nothing anywhere: written without a check.
    let (code, check) = write_check(&image, &[]);
    assert_eq!((code, check.is_null()), (0, true), "{check:#}");

    // A listing elsewhere, given with --sums: checked.
    let other = tempfile::tempdir().unwrap();
    let sums = other.path().join("SUMS");
    std::fs::write(&sums, format!("{hex}  w.iso\n")).unwrap();
    let (code, check) = write_check(&image, &["--sums", sums.to_str().unwrap()]);
    assert_eq!(
        (code, check["outcome"].as_str()),
        (0, Some("checksum-only"))
    );
    // --sha256: checked.
    let (code, check) = write_check(&image, &["--sha256", &hex]);
    assert_eq!(
        (code, check["outcome"].as_str()),
        (0, Some("checksum-only"))
    );
    // --sig given (garbage): checked, and refused as a bad signature.
    let sig = other.path().join("w.iso.sig");
    std::fs::write(&sig, b"not a signature\n").unwrap();
    let (code, _) = write_check(&image, &["--sig", sig.to_str().unwrap()]);
    assert_eq!(code, 13);

    // Only a signature beside the image: discovered, checked, refused.
    std::fs::copy(&sig, image.with_extension("iso.sig")).unwrap();
    let (code, _) = write_check(&image, &[]);
    assert_eq!(code, 13);
    // ... but not with --no-discover.
    let (code, check) = write_check(&image, &["--no-discover"]);
    assert_eq!((code, check.is_null()), (0, true), "{check:#}");
    std::fs::remove_file(image.with_extension("iso.sig")).unwrap();

    // Only a checksum file beside the image: discovered and checked.
    std::fs::write(dir.path().join("SHA256SUMS"), format!("{hex}  w.iso\n")).unwrap();
    let (code, check) = write_check(&image, &[]);
    assert_eq!(
        (code, check["outcome"].as_str()),
        (0, Some("checksum-only"))
    );
    let (code, check) = write_check(&image, &["--no-discover"]);
    assert_eq!((code, check.is_null()), (0, true), "{check:#}");
}

/// A checksum file of exactly the 4 MiB limit is read whole (its last byte
/// decides the match); one byte more is refused as bad input (3) before the
/// image is read.
#[test]
fn checksum_files_up_to_the_limit_are_read_whole() {
    if !require_tools("checksum_limit", &["sha256sum"]) {
        return;
    }
    let (dir, image) = image_dir("l.iso");
    let line = tool(dir.path(), "sha256sum", &["--tag", "l.iso"]);
    let line = line.trim_end(); // `SHA256 (l.iso) = HEX`, no newline: the hash ends the file
    let limit = bootstick::trust::MAX_REFERENCE_FILE as usize;
    let pad = limit - line.len() - 1;
    // Padding lines the parser ignores (kept in `ignored`), then the line.
    let mut text = String::with_capacity(limit);
    while text.len() + 80 < pad {
        text.push_str(&"#".repeat(79));
        text.push('\n');
    }
    text.push_str(&"#".repeat(pad - text.len()));
    text.push('\n');
    text.push_str(line);
    assert_eq!(text.len(), limit);
    let sums = dir.path().join("CHECKSUM");
    std::fs::write(&sums, &text).unwrap();
    let v = verify_image(&image, &["--sums", sums.to_str().unwrap()]);
    assert_outcome(&v, "checksum-only", 10);
    text.insert(0, '#');
    std::fs::write(&sums, &text).unwrap();
    let v = verify_image(&image, &["--sums", sums.to_str().unwrap()]);
    assert_eq!(v.code, 3, "{:#}", v.json);
}

/// A signature file named twice (with `--sig`, under another spelling of
/// its path, and found by discovery) is read once; two different signature
/// files beside the checksum file are both read.
#[test]
fn a_signature_file_is_read_once_however_it_is_named() {
    let Some(fx) = gpg_fixtures() else { return };
    let dir = stage(
        &fx,
        &[
            ("arch.iso", "arch.iso"),
            ("SHA256SUMS", "SHA256SUMS"),
            ("sums.rsa4096.asc", "SHA256SUMS.gpg"),
        ],
    );
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    let odd = format!("{}/sub/../SHA256SUMS.gpg", dir.path().display());
    let v = verify_key(&fx, dir.path(), "rsa4096", &["--sig", &odd]);
    assert_outcome(&v, "verified", 0);
    let files = v.json["signatures"].as_array().unwrap();
    assert_eq!(files.len(), 1, "{:#}", v.json);
    // A second, different signature file: both are listed.
    std::fs::copy(
        fx.path("sums.ed25519.asc"),
        dir.path().join("SHA256SUMS.sign"),
    )
    .unwrap();
    let v = verify_key(&fx, dir.path(), "rsa4096", &[]);
    assert_eq!(
        v.json["signatures"].as_array().unwrap().len(),
        2,
        "{:#}",
        v.json
    );
}

/// The outcome's name in the human report is the documented one.
#[test]
fn the_human_report_names_the_outcome() {
    if !require_tools("human_outcome", &["sha256sum"]) {
        return;
    }
    let (dir, image) = image_dir("h.iso");
    let hex = tool(dir.path(), "sha256sum", &["h.iso"]);
    let hex = hex.split_whitespace().next().unwrap().to_string();
    let out = bootstick()
        .args(["verify", "--no-discover", "--sha256", &hex])
        .arg(&image)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("outcome: checksum-only\n"), "{text}");
    let out = bootstick()
        .args(["verify", "--no-discover"])
        .arg(&image)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(18));
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("outcome: no-reference\n"),
        "{out:?}"
    );
}

/// With only minisign/signify keys given, a pin that names none of them is
/// "no key given has this fingerprint" (exit 3), not the OpenPGP rule
/// about 64-bit key IDs, which would send the user after the wrong kind of
/// key (a minisign key id is 16 hex digits too).
#[test]
fn a_minisign_pin_that_names_no_key_is_not_found() {
    if !require_tools("minisign_pin", &["minisign"]) {
        return;
    }
    let (_dir, image) = image_dir("p.iso");
    let keys = tempfile::tempdir().unwrap();
    let (public, _, id) = minisign_keys(keys.path(), "release");
    let wrong: String = id
        .chars()
        .map(|c| if c == '0' { '1' } else { '0' })
        .collect();
    let out = bootstick()
        .args(["verify", "--key"])
        .arg(&public)
        .args(["--fingerprint", &wrong])
        .arg(&image)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains(&format!(
            "--fingerprint {wrong}: none of the keys given has this fingerprint"
        )),
        "{err}"
    );
    assert!(!err.contains("key IDs are refused"), "{err}");
}

/// Two signatures over the image, both by given keys: the image pass checks
/// one; once it is good the other is reported `unchecked` ("not needed"),
/// never `good`, and only the checked signer vouches for the image.
#[test]
fn a_second_image_signature_is_unchecked_once_one_is_good() {
    let Some(fx) = gpg_fixtures() else { return };
    let dir = stage(
        &fx,
        &[
            ("arch.iso", "arch.iso"),
            ("arch.iso.multi.sig", "arch.iso.sig"),
        ],
    );
    assert!(
        gpg_status(
            &fx,
            &["ed25519", "rsa4096"],
            &dir.path().join("arch.iso.sig"),
            Some(&dir.path().join("arch.iso"))
        )
        .iter()
        .filter(|s| *s == "GOODSIG")
        .count()
            == 2
    );
    let v = verify_with_keys(
        dir.path(),
        "arch.iso",
        &[&fx, &fx],
        &["ed25519", "rsa4096"],
        &[],
    );
    assert_outcome(&v, "verified", 0);
    let sigs = v.json["signatures"][0]["signatures"].as_array().unwrap();
    let statuses: Vec<&str> = sigs.iter().map(|c| c["status"].as_str().unwrap()).collect();
    assert_eq!(sigs.len(), 2, "{:#}", v.json);
    assert!(
        statuses.contains(&"good") && statuses.contains(&"unchecked"),
        "{statuses:?}"
    );
    let unchecked = sigs.iter().find(|c| c["status"] == "unchecked").unwrap();
    assert!(
        unchecked["detail"]
            .as_str()
            .unwrap()
            .starts_with("not needed"),
        "{unchecked:#}"
    );
    assert_eq!(
        v.json["signers"].as_array().unwrap().len(),
        1,
        "{:#}",
        v.json
    );
}

/// Signatures over the image itself are all checked on the file the job
/// opened, not on whatever the path names by then. A malicious file is
/// opened (and would be written from that descriptor), then the genuine
/// image is renamed over its path before the check. The check verified the
/// first signature in its hashing pass (on the opened file) but re-opened
/// the path for the others, so with two signatures one came out good — over
/// a file that is not the one written. Now every signature is checked on
/// the opened file: all bad.
#[test]
fn signatures_over_the_image_are_checked_on_the_opened_file() {
    use bootstick::job;
    use bootstick::trust::{signature::Status, Outcome};
    let Some(fx) = gpg_fixtures() else { return };
    let genuine = fx.path("arch.iso");
    let len = std::fs::metadata(&genuine).unwrap().len();
    let request = |dir: &Path| bootstick::trust::Request {
        image: dir.join("arch.iso"),
        keys: vec![fx.path("ed25519.key"), fx.path("rsa4096.key")],
        discover: true,
        ..Default::default()
    };
    let policy = job::CheckPolicy {
        required: true,
        require_signature: true,
    };
    let silent = bootstick::events::Silent;
    let statuses = |r: &bootstick::trust::Report| -> Vec<Status> {
        r.signatures
            .iter()
            .flat_map(|f| f.signatures.iter().map(|c| c.status))
            .collect()
    };

    // Control: the genuine image, opened and checked: the first signature
    // is good (the second is then not needed).
    let control = tempfile::tempdir().unwrap();
    std::fs::copy(&genuine, control.path().join("arch.iso")).unwrap();
    std::fs::copy(
        fx.path("arch.iso.multi.sig"),
        control.path().join("arch.iso.sig"),
    )
    .unwrap();
    let ok = job::Image::open(&control.path().join("arch.iso"))
        .unwrap()
        .check_source(&request(control.path()), policy, &silent)
        .unwrap()
        .unwrap();
    assert_eq!(ok.outcome, Outcome::Verified);
    assert_eq!(statuses(&ok), [Status::Good, Status::Unchecked]);

    // The malicious file is opened, then the genuine one replaces its path.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("arch.iso");
    pseudo_random_file(&path, len, 4242);
    std::fs::copy(
        fx.path("arch.iso.multi.sig"),
        dir.path().join("arch.iso.sig"),
    )
    .unwrap();
    let staged = dir.path().join("genuine.tmp");
    std::fs::copy(&genuine, &staged).unwrap();
    let opened = job::Image::open(&path).unwrap();
    std::fs::rename(&staged, &path).unwrap();
    match opened.check_source(&request(dir.path()), policy, &silent) {
        Err(job::Error::SourceCheck { report, .. }) => {
            assert_eq!(report.outcome, Outcome::BadSignature);
            assert_eq!(
                statuses(&report),
                [Status::Bad, Status::Bad],
                "a signature was checked on another file than the one opened"
            );
        }
        Ok(r) => panic!("the opened file passed as {:?}", r.map(|r| r.outcome)),
        Err(e) => panic!("{e}"),
    }
}

/// OpenSSL 3's `openssl dgst` writes BSD-style lines whose tag carries a
/// dash (`SHA2-256(o.iso)= …`, `SHA2-512(…)`, `BLAKE2B-512(…)`): each is
/// read as the algorithm it names, and a flipped byte is a mismatch. The
/// lines are the oracle's; a tag check that refused the dash would leave
/// the image `not-listed` (12).
#[test]
fn openssl_dgst_lines_with_dashed_tags() {
    if !require_tools("openssl_dgst", &["openssl"]) {
        return;
    }
    let (dir, image) = image_dir("o.iso");
    let sums = dir.path().join("CHECKSUM");
    for (flag, tag, alg) in [
        ("-sha256", "SHA2-256(o.iso)= ", "sha256"),
        ("-sha512", "SHA2-512(o.iso)= ", "sha512"),
        ("-blake2b512", "BLAKE2B-512(o.iso)= ", "blake2b-512"),
    ] {
        let line = tool(dir.path(), "openssl", &["dgst", flag, "o.iso"]);
        assert!(line.starts_with(tag), "{line}");
        std::fs::write(&sums, &line).unwrap();
        let v = verify_image(&image, &["--sums", sums.to_str().unwrap()]);
        assert_outcome(&v, "checksum-only", 10);
        assert_eq!(v.json["matched"]["algorithm"], alg, "{:#}", v.json);
        assert_eq!(v.json["matched"]["by"], "path", "{:#}", v.json);
    }
    flip_byte(&image, 4096);
    let v = verify_image(&image, &["--sums", sums.to_str().unwrap()]);
    assert_outcome(&v, "mismatch", 11);
}

/// A compressed image checked against references about the image inside
/// (`trust::decoded`), made by `sha256sum` of the image before `xz` packed
/// it: `--sha256` of the image inside, and a discovered SHA256SUMS that
/// lists it under its decompressed name. An image repacked with one byte
/// changed is a mismatch. A plain image checked by a bare hash is not
/// decoded at all: no note says it could not be decompressed.
#[test]
fn references_about_the_image_inside_a_compressed_file() {
    if !require_tools("image_inside", &["sha256sum", "xz"]) {
        return;
    }
    let (dir, image) = image_dir("d.img");
    let line = tool(dir.path(), "sha256sum", &["d.img"]);
    let hex = line.split_whitespace().next().unwrap().to_string();
    let no_decoding = |v: &Verdict| {
        let notes = v.json["notes"].as_array().unwrap();
        assert!(
            !notes
                .iter()
                .any(|n| n.as_str().unwrap().contains("decompress")),
            "{:#}",
            v.json
        );
    };
    let v = verify_image(&image, &["--sha256", &hex]);
    assert_outcome(&v, "checksum-only", 0);
    no_decoding(&v);

    run(Command::new("xz")
        .args(["-T1", "-k", "d.img"])
        .current_dir(dir.path()));
    let packed = dir.path().join("d.img.xz");
    std::fs::remove_file(&image).unwrap();
    let v = verify_image(&packed, &["--sha256", &hex]);
    assert_outcome(&v, "checksum-only", 0);
    assert_eq!(v.json["matched"]["decompressed"], true, "{:#}", v.json);

    std::fs::write(dir.path().join("SHA256SUMS"), &line).unwrap();
    let v = verify_image(&packed, &[]);
    assert_outcome(&v, "checksum-only", 10);
    assert_eq!(v.json["matched"]["decompressed"], true, "{:#}", v.json);
    assert_eq!(v.json["matched"]["name"], "d.img", "{:#}", v.json);

    // The image inside changed by one byte, packed again.
    run(Command::new("xz")
        .args(["-d", "d.img.xz"])
        .current_dir(dir.path()));
    flip_byte(&image, 1 << 20);
    run(Command::new("xz")
        .args(["-T1", "d.img"])
        .current_dir(dir.path()));
    let v = verify_image(&packed, &[]);
    assert_outcome(&v, "mismatch", 11);
}

/// Ed25519 signatures over the image itself, either side of the 64 MiB up
/// to which a pure signature's message is read whole
/// (`ed25519::MAX_PURE_MESSAGE`): signify's pure signature over a small
/// image verifies; over a larger one it is refused with that reason, the
/// image not read into memory; minisign's prehashed signature over the
/// larger one verifies from the BLAKE2b-512 taken while streaming.
/// `signify -V` and `minisign -V` accept each signature first.
#[test]
fn ed25519_signatures_over_the_image_either_side_of_the_pure_limit() {
    if !require_tools("ed25519_limit", &["signify-openbsd", "minisign"]) {
        return;
    }
    let (dir, small) = image_dir("small.img");
    let big = dir.path().join("big.img");
    pseudo_random_file(&big, (64 << 20) + 4097, 7);
    let keys = tempfile::tempdir().unwrap();
    let public = keys.path().join("s.pub");
    let secret = keys.path().join("s.sec");
    run(Command::new("signify-openbsd")
        .args(["-G", "-n", "-p"])
        .arg(&public)
        .arg("-s")
        .arg(&secret));
    let signify = |file: &Path| {
        run(Command::new("signify-openbsd")
            .args(["-S", "-s"])
            .arg(&secret)
            .arg("-m")
            .arg(file));
        assert!(Command::new("signify-openbsd")
            .args(["-V", "-q", "-p"])
            .arg(&public)
            .arg("-m")
            .arg(file)
            .status()
            .unwrap()
            .success());
    };
    let key = public.to_str().unwrap();

    signify(&small);
    let v = verify_image(&small, &["--key", key]);
    assert_outcome(&v, "verified", 0);
    assert_eq!(v.json["signatures"][0]["format"], "signify");

    signify(&big);
    let v = verify_image(&big, &["--key", key]);
    assert_outcome(&v, "bad-signature", 13);
    let detail = v.json["signatures"][0]["signatures"][0]["detail"]
        .as_str()
        .unwrap_or_default();
    assert!(detail.contains("needs it whole in memory"), "{:#}", v.json);
    std::fs::remove_file(dir.path().join("big.img.sig")).unwrap();

    let (mpublic, msecret, _) = minisign_keys(keys.path(), "m");
    run(Command::new("minisign")
        .args(["-S", "-s"])
        .arg(&msecret)
        .arg("-m")
        .arg(&big));
    let msig = dir.path().join("big.img.minisig");
    assert!(minisign_accepts(&mpublic, &big, &msig));
    let v = verify_image(&big, &["--key", mpublic.to_str().unwrap()]);
    assert_outcome(&v, "verified", 0);
    assert_eq!(v.json["signatures"][0]["format"], "minisign");
}

/// A GNU line whose file name ends like a BSD line (`… (copy)=2.img`) is
/// still the GNU line `sha256sum` wrote: what stands before the `(` is no
/// BSD tag (it holds spaces), so the line is not read as one.
#[test]
fn a_gnu_name_shaped_like_a_bsd_tag() {
    if !require_tools("bsd_shaped_name", &["sha256sum"]) {
        return;
    }
    let (dir, image) = image_dir("disk (copy)=2.img");
    let sums = tool(dir.path(), "sha256sum", &["disk (copy)=2.img"]);
    std::fs::write(dir.path().join("SHA256SUMS"), sums).unwrap();
    let v = verify_image(&image, &[]);
    assert_outcome(&v, "checksum-only", 10);
    assert_eq!(
        v.json["matched"]["name"], "disk (copy)=2.img",
        "{:#}",
        v.json
    );
    assert_eq!(
        v.json["sources"][0]["ignored"],
        serde_json::json!([]),
        "{:#}",
        v.json
    );
}
