//! Downloads (issue 21; docs/cli.md, "Downloads"): `write URL TARGET`
//! against a real HTTP(S) server on 127.0.0.1 started by each test
//! (`tests/it/fixtures/http_server.py`, Debian's python3): written byte
//! for byte (`cmp`), decompressed, resumed after a dropped connection,
//! refused when the file changed on resume, when the URL is a web page or
//! a 404 (the target's bytes unchanged: sha256 before and after), and over
//! HTTPS with a throw-away CA made by `openssl req -x509`.

use crate::common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use common::{bootstick, json_lines, require_root, require_tools, stderr, LoopDevice};

const MIB: u64 = 1 << 20;

/// Debian's python3 (not whatever `python3` PATH finds first).
const PYTHON: &str = "/usr/bin/python3";

fn require_python(test: &str) -> bool {
    Path::new(PYTHON).is_file() || common::skip(test, "needs Debian's python3 (/usr/bin/python3)")
}

/// The test server, serving `dir`; killed (by its own pid) when dropped.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(dir: &Path, tls: Option<(&Path, &Path)>) -> Server {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/fixtures/http_server.py");
        let mut cmd = Command::new(PYTHON);
        cmd.arg(&script).arg(dir).args(["--lifetime", "300"]);
        if let Some((cert, key)) = tls {
            cmd.arg("--tls").arg(cert).arg(key);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("no port: {line:?}"));
        let scheme = if tls.is_some() { "https" } else { "http" };
        Server {
            child,
            base: format!("{scheme}://127.0.0.1:{port}"),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `bootstick write --yes --json [extra] URL target`.
fn write_url(url: &str, target: &Path, extra: &[&str]) -> (Output, Vec<serde_json::Value>) {
    let out = bootstick()
        .args(["write", "--yes", "--json"])
        .args(extra)
        .arg(url)
        .arg(target)
        .output()
        .unwrap();
    let lines = json_lines(&out.stdout);
    (out, lines)
}

fn sha256_hex(path: &Path) -> String {
    let out = common::run(Command::new("sha256sum").arg(path));
    out.split_whitespace().next().unwrap().to_string()
}

/// An MBR disk image (sfdisk) of `len` bytes, random data after its first
/// MiB: the table is what a held-back boot area keeps off the stick.
fn mbr_image(path: &Path, len: u64) {
    common::sfdisk_image(path, len, "label: dos\ntype=83\n");
    let noise = path.with_extension("noise");
    common::pseudo_random_file(&noise, len - MIB, len);
    let data = std::fs::read(&noise).unwrap();
    std::fs::remove_file(&noise).unwrap();
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(&data, MIB).unwrap();
}

/// A stick of `len` bytes of 0xA5 (so zeroed regions show), attached.
fn stick(path: &Path, len: u64) -> LoopDevice {
    std::fs::write(path, vec![0xA5u8; len as usize]).unwrap();
    LoopDevice::attach(path)
}

/// `cmp -n len a b`: the first `len` bytes are the same.
fn cmp_prefix(a: &Path, b: &Path, len: u64) {
    common::run(
        Command::new("cmp")
            .arg("-n")
            .arg(len.to_string())
            .arg(a)
            .arg(b),
    );
}

/// A download (through a redirect) is written to a loop device byte for
/// byte, verified, its length from Content-Length in the start line; with
/// `--save` the copy is the image too, and an existing FILE is refused
/// without `--yes` before anything is written.
#[test]
fn a_download_is_written_to_a_device_byte_for_byte() {
    let t = "a_download_is_written_to_a_device_byte_for_byte";
    if !require_root(t)
        || !require_python(t)
        || !require_tools(t, &["losetup", "cmp", "sfdisk", "sha256sum"])
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let www = dir.path().join("www");
    std::fs::create_dir(&www).unwrap();
    let img = www.join("disk.img");
    let len = 20 * MIB;
    mbr_image(&img, len);
    let server = Server::start(&www, None);
    let backing = dir.path().join("stick");
    let dev = stick(&backing, 32 * MIB);
    let saved = dir.path().join("saved.img");
    let saved_arg = saved.to_str().unwrap();
    let (out, lines) = write_url(
        &server.url("redirect/disk.img"),
        dev.path(),
        &["--save", saved_arg],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let start = &lines[0];
    assert_eq!(start["download"]["length"], len, "{start}");
    assert_eq!(start["image_bytes"], len, "{start}");
    assert!(
        start["download"]["url"]
            .as_str()
            .unwrap()
            .ends_with("/disk.img"),
        "the URL after the redirect: {start}"
    );
    let result = lines.last().unwrap();
    assert_eq!(result["verified"], true, "{result}");
    assert_eq!(result["download"]["resumed"], 0, "{result}");
    assert_eq!(result["download"]["saved"], saved_arg, "{result}");
    cmp_prefix(&img, dev.path(), len);
    common::run(Command::new("cmp").arg(&img).arg(&saved));
    // FILE exists now: refused without --yes, the device untouched.
    let before = sha256_hex(dev.path());
    let out = bootstick()
        .args(["write", "--json", "--save", saved_arg])
        .arg(server.url("disk.img"))
        .arg(dev.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("exists"), "{}", stderr(&out));
    assert_eq!(sha256_hex(dev.path()), before, "nothing was written");
}

/// An `.img.xz` download is recognised by its magic bytes and written
/// decompressed.
#[test]
fn an_xz_download_is_decompressed() {
    let t = "an_xz_download_is_decompressed";
    if !require_python(t) || !require_tools(t, &["xz", "cmp", "sfdisk"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let www = dir.path().join("www");
    std::fs::create_dir(&www).unwrap();
    let img = dir.path().join("disk.img");
    mbr_image(&img, 12 * MIB);
    let packed = std::fs::File::create(www.join("disk.img.xz")).unwrap();
    common::run(
        Command::new("xz")
            .args(["-T0", "-c"])
            .arg(&img)
            .stdout(packed),
    );
    let server = Server::start(&www, None);
    let target = dir.path().join("out.img");
    let (out, lines) = write_url(&server.url("disk.img.xz"), &target, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(lines[0]["stream"]["format"], "xz", "{}", lines[0]);
    common::run(Command::new("cmp").arg(&img).arg(&target));
}

/// The connection drops once after 13 MiB: the rest is fetched with
/// `Range`/`If-Range` from the same entity, the result says it resumed,
/// and the image is whole (`cmp`, and its `--sha256` enforced).
#[test]
fn a_dropped_connection_is_resumed() {
    let t = "a_dropped_connection_is_resumed";
    if !require_python(t) || !require_tools(t, &["cmp", "sfdisk", "sha256sum"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let www = dir.path().join("www");
    std::fs::create_dir(&www).unwrap();
    let img = www.join("disk.img");
    mbr_image(&img, 24 * MIB);
    let digest = sha256_hex(&img);
    let server = Server::start(&www, None);
    let target = dir.path().join("out.img");
    let url = server.url(&format!("disk.img?drop={}", 13 * MIB));
    let (out, lines) = write_url(&url, &target, &["--sha256", &digest]);
    assert!(out.status.success(), "{}", stderr(&out));
    let result = lines.last().unwrap();
    assert_eq!(result["download"]["resumed"], 1, "{result}");
    assert_eq!(result["verified"], true, "{result}");
    assert_eq!(result["source_digest"]["hex"], *digest, "{result}");
    common::run(Command::new("cmp").arg(&img).arg(&target));
}

/// The connection drops after 16 MiB and the file's ETag is another on
/// the resumed request: refused (exit 27) rather than splicing two files,
/// the device incomplete with its first MiB zeroed (held back: no
/// partition table, it will not boot).
#[test]
fn a_changed_etag_on_resume_is_refused() {
    let t = "a_changed_etag_on_resume_is_refused";
    if !require_root(t) || !require_python(t) || !require_tools(t, &["losetup", "sfdisk"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let www = dir.path().join("www");
    std::fs::create_dir(&www).unwrap();
    let img = www.join("disk.img");
    mbr_image(&img, 24 * MIB);
    let server = Server::start(&www, None);
    let backing = dir.path().join("stick");
    let dev = stick(&backing, 32 * MIB);
    let url = server.url(&format!("disk.img?drop={}&etag=change", 16 * MIB));
    let (out, lines) = write_url(&url, dev.path(), &[]);
    drop(dev);
    assert_eq!(out.status.code(), Some(27), "{}", stderr(&out));
    let result = lines.last().unwrap();
    let msg = result["error"].as_str().unwrap();
    assert!(msg.contains("changed on the server"), "{msg}");
    assert!(msg.contains("ETag"), "{msg}");
    assert_eq!(result["target_state"], "incomplete", "{result}");
    assert_eq!(result["boot_area_zeroed"], true, "{result}");
    let on_stick = std::fs::read(&backing).unwrap();
    assert!(
        on_stick[..MIB as usize].iter().all(|&b| b == 0),
        "the first MiB is zeroed"
    );
}

/// A web page (by Content-Type, and by its first bytes under another
/// type), a 404 and a redirect loop (more than 10 redirects) are refused
/// with exit 27 before anything is written: the device's bytes are the
/// same before and after.
#[test]
fn a_web_page_a_404_or_a_redirect_loop_is_refused_before_writing() {
    let t = "a_web_page_a_404_or_a_redirect_loop_is_refused_before_writing";
    if !require_root(t) || !require_python(t) || !require_tools(t, &["losetup", "sha256sum"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let www = dir.path().join("www");
    std::fs::create_dir(&www).unwrap();
    std::fs::write(
        www.join("download.html"),
        "<!DOCTYPE html>\n<html><body>Your download will start shortly…</body></html>\n",
    )
    .unwrap();
    let server = Server::start(&www, None);
    let backing = dir.path().join("stick");
    let dev = stick(&backing, 8 * MIB);
    let before = sha256_hex(dev.path());
    for (path, words) in [
        (
            "download.html",
            "a web page, not an image (its Content-Type is text/html)",
        ),
        (
            "download.html?type=application/octet-stream",
            "a web page, not an image (its body starts as an HTML document)",
        ),
        ("missing.iso", "404 Not Found"),
        ("loop/disk.img", "too many redirects"),
    ] {
        let (out, lines) = write_url(&server.url(path), dev.path(), &[]);
        assert_eq!(out.status.code(), Some(27), "{path}: {}", stderr(&out));
        let msg = lines.last().unwrap()["error"].as_str().unwrap().to_string();
        assert!(msg.contains(words), "{path}: {msg}");
        assert_eq!(
            sha256_hex(dev.path()),
            before,
            "{path}: the device is unchanged"
        );
    }
}

/// HTTPS with a certificate from a throw-away CA (`openssl req -x509`):
/// refused as a TLS failure naming the host without `--ca-cert`, written
/// byte for byte with it.
#[test]
fn https_with_a_private_ca() {
    let t = "https_with_a_private_ca";
    if !require_python(t) || !require_tools(t, &["openssl", "cmp"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let www = dir.path().join("www");
    std::fs::create_dir(&www).unwrap();
    let img = www.join("disk.img");
    common::pseudo_random_file(&img, 6 * MIB, 7);
    // A throw-away CA, and the server's certificate signed by it.
    let ca = dir.path().join("ca.pem");
    let ca_key = dir.path().join("ca.key");
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let req = |subject: &str| {
        let mut c = Command::new("openssl");
        c.args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", subject,
        ])
        .stderr(Stdio::null());
        c
    };
    common::run(
        req("/CN=bootstick test CA")
            .arg("-keyout")
            .arg(&ca_key)
            .arg("-out")
            .arg(&ca),
    );
    common::run(
        req("/CN=127.0.0.1")
            .args(["-addext", "subjectAltName=IP:127.0.0.1"])
            .args(["-addext", "basicConstraints=critical,CA:FALSE"])
            .arg("-CA")
            .arg(&ca)
            .arg("-CAkey")
            .arg(&ca_key)
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert),
    );
    let server = Server::start(&www, Some((&cert, &key)));
    let target: PathBuf = dir.path().join("out.img");
    let (out, lines) = write_url(&server.url("disk.img"), &target, &[]);
    assert_eq!(out.status.code(), Some(27), "{}", stderr(&out));
    let msg = lines.last().unwrap()["error"].as_str().unwrap().to_string();
    assert!(msg.contains("TLS with 127.0.0.1"), "{msg}");
    assert!(!target.exists());
    let (out, _) = write_url(
        &server.url("disk.img"),
        &target,
        &["--ca-cert", ca.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    common::run(Command::new("cmp").arg(&img).arg(&target));
}

/// `SHA256SUMS` at the URL's directory is found and its digest enforced
/// as the download streams: listed right, the image is written and the
/// start line names the URL it came from; listed wrong, the write fails
/// (exit 11) with the device incomplete and its first MiB zeroed (held
/// back until the digest matched: it will not boot). An `.img.xz`
/// download is found through `IMAGE.sha256` named after the image inside.
#[test]
fn sha256sums_at_the_url_are_found_and_enforced() {
    let t = "sha256sums_at_the_url_are_found_and_enforced";
    if !require_root(t)
        || !require_python(t)
        || !require_tools(t, &["losetup", "cmp", "sfdisk", "sha256sum", "xz"])
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let www = dir.path().join("www");
    std::fs::create_dir(&www).unwrap();
    let good = www.join("good.img");
    mbr_image(&good, 20 * MIB);
    // Another length, so other bytes than good.img's.
    let tampered = www.join("tampered.img");
    let tampered_len = 18 * MIB;
    mbr_image(&tampered, tampered_len);
    let wrong = "ab".repeat(32);
    std::fs::write(
        www.join("SHA256SUMS"),
        format!("{}  good.img\n{wrong}  tampered.img\n", sha256_hex(&good)),
    )
    .unwrap();
    // A compressed download whose checksum file is about the image inside.
    let inner = dir.path().join("packed.img");
    mbr_image(&inner, 12 * MIB);
    let packed = std::fs::File::create(www.join("packed.img.xz")).unwrap();
    common::run(
        Command::new("xz")
            .args(["-T0", "-c"])
            .arg(&inner)
            .stdout(packed),
    );
    std::fs::write(
        www.join("packed.img.sha256"),
        format!("{}  packed.img\n", sha256_hex(&inner)),
    )
    .unwrap();
    let server = Server::start(&www, None);

    let backing = dir.path().join("stick");
    let dev = stick(&backing, 32 * MIB);
    let (out, lines) = write_url(&server.url("good.img"), dev.path(), &["--verify-source"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let check = &lines[0]["source_check"];
    assert_eq!(check["outcome"], "checksum-only", "{check}");
    assert_eq!(
        check["matched"]["source"],
        server.url("SHA256SUMS"),
        "{check}"
    );
    assert_eq!(lines.last().unwrap()["verified"], true);
    cmp_prefix(&good, dev.path(), 20 * MIB);

    let (out, lines) = write_url(&server.url("tampered.img"), dev.path(), &[]);
    assert_eq!(out.status.code(), Some(11), "{}", stderr(&out));
    let result = lines.last().unwrap();
    assert_eq!(result["target_state"], "incomplete", "{result}");
    assert_eq!(result["boot_area_zeroed"], true, "{result}");
    let msg = result["error"].as_str().unwrap();
    assert!(msg.contains("it will not boot"), "{msg}");
    assert!(msg.contains(&wrong), "{msg}");
    drop(dev);
    // The first MiB and (the length being known) the image's last MiB were
    // held back: zeroed; the bytes between them were written.
    let on_stick = std::fs::read(&backing).unwrap();
    let (mib, end) = (MIB as usize, tampered_len as usize);
    assert!(
        on_stick[..mib].iter().all(|&b| b == 0),
        "the first MiB is zeroed"
    );
    assert!(
        on_stick[end - mib..end].iter().all(|&b| b == 0),
        "the last MiB is zeroed"
    );
    let orig = std::fs::read(&tampered).unwrap();
    assert!(
        on_stick[mib..end - mib] == orig[mib..end - mib],
        "the rest was written"
    );

    let target = dir.path().join("packed.out");
    let (out, lines) = write_url(&server.url("packed.img.xz"), &target, &["--verify-source"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let check = &lines[0]["source_check"];
    assert_eq!(
        check["matched"]["source"],
        server.url("packed.img.sha256"),
        "{check}"
    );
    assert_eq!(check["matched"]["decompressed"], true, "{check}");
    common::run(Command::new("cmp").arg(&inner).arg(&target));
}

/// `--require-signature` with a gpg-signed `SHA256SUMS` (`SHA256SUMS.gpg`
/// beside it, made by the real gpg): written with the signer's key
/// (`verified`, the signer named); with another key (exit 14) or no
/// signature at all (exit 10) refused before anything is written, the
/// device's bytes unchanged.
#[test]
fn require_signature_with_a_gpg_signed_sha256sums() {
    let t = "require_signature_with_a_gpg_signed_sha256sums";
    if !require_root(t)
        || !require_python(t)
        || !require_tools(
            t,
            &["losetup", "cmp", "sfdisk", "sha256sum", "gpg", "gpgconf"],
        )
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let keys = Keys::new(dir.path());
    let (publisher, other) = (&keys.publisher, &keys.other);
    let signed = dir.path().join("signed");
    let unsigned = dir.path().join("unsigned");
    for d in [&signed, &unsigned] {
        std::fs::create_dir(d).unwrap();
    }
    let img = signed.join("disk.img");
    mbr_image(&img, 16 * MIB);
    std::fs::copy(&img, unsigned.join("disk.img")).unwrap();
    let sums = format!("{}  disk.img\n", sha256_hex(&img));
    std::fs::write(signed.join("SHA256SUMS"), &sums).unwrap();
    std::fs::write(unsigned.join("SHA256SUMS"), &sums).unwrap();
    common::run(
        keys.gpg()
            .args([
                "--local-user",
                "publisher@example.org",
                "--detach-sign",
                "--output",
            ])
            .arg(signed.join("SHA256SUMS.gpg"))
            .arg(signed.join("SHA256SUMS")),
    );
    let server = Server::start(dir.path(), None);

    let backing = dir.path().join("stick");
    let dev = stick(&backing, 24 * MIB);
    let before = sha256_hex(dev.path());
    let key = |p: &Path| p.to_str().unwrap().to_owned();
    for (path, k, code) in [
        ("signed/disk.img", key(other), 14),
        ("unsigned/disk.img", key(publisher), 10),
    ] {
        let (out, lines) = write_url(
            &server.url(path),
            dev.path(),
            &["--require-signature", "--key", &k],
        );
        assert_eq!(out.status.code(), Some(code), "{path}: {}", stderr(&out));
        assert!(lines.last().unwrap()["ok"] == false);
        assert_eq!(
            sha256_hex(dev.path()),
            before,
            "{path}: nothing was written"
        );
    }
    let (out, lines) = write_url(
        &server.url("signed/disk.img"),
        dev.path(),
        &["--require-signature", "--key", &key(publisher)],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let check = &lines[0]["source_check"];
    assert_eq!(check["outcome"], "verified", "{check}");
    let signer = check["signers"].to_string();
    assert!(signer.contains("publisher@example.org"), "{check}");
    assert_eq!(lines.last().unwrap()["verified"], true);
    cmp_prefix(&img, dev.path(), 16 * MIB);
}

/// A throw-away gpg home with two signing keys, exported (armored); its
/// agent is stopped when dropped.
struct Keys {
    home: PathBuf,
    publisher: PathBuf,
    other: PathBuf,
}

impl Keys {
    fn new(dir: &Path) -> Keys {
        let home = dir.join("gnupg");
        std::fs::create_dir(&home).unwrap();
        std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        let keys = Keys {
            home,
            publisher: dir.join("publisher.asc"),
            other: dir.join("other.asc"),
        };
        for (uid, file) in [
            ("Publisher <publisher@example.org>", &keys.publisher),
            ("Someone Else <other@example.org>", &keys.other),
        ] {
            common::run(
                keys.gpg()
                    .args(["--quick-gen-key", uid, "ed25519", "sign", "never"]),
            );
            let email = uid.split('<').nth(1).unwrap().trim_end_matches('>');
            common::run(
                keys.gpg()
                    .arg("--armor")
                    .arg("--output")
                    .arg(file)
                    .args(["--export", email]),
            );
        }
        keys
    }

    fn gpg(&self) -> Command {
        let mut c = Command::new("gpg");
        c.arg("--homedir").arg(&self.home).args([
            "--batch",
            "--yes",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
        ]);
        c
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .arg("--homedir")
            .arg(&self.home)
            .args(["--kill", "all"])
            .status();
    }
}

/// A Fedora-style directory: a compressed image and a clearsigned
/// `…-CHECKSUM` whose name no list can guess (BSD tags, by `sha256sum
/// --tag`), found through the directory's index page (an Apache-style
/// autoindex) and checked with `--require-signature` (verified, the image
/// written decompressed); the same directory without an index page finds
/// nothing (exit 18, nothing written).
#[test]
fn a_directory_index_finds_a_fedora_style_checksum() {
    let t = "a_directory_index_finds_a_fedora_style_checksum";
    if !require_python(t)
        || !require_tools(t, &["cmp", "sfdisk", "sha256sum", "xz", "gpg", "gpgconf"])
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let keys = Keys::new(dir.path());
    let www = dir.path().join("www");
    let (listed, unlisted) = (www.join("listed"), www.join("unlisted"));
    let inner = dir.path().join("Fedora-Test-43-1.6.x86_64.raw");
    mbr_image(&inner, 10 * MIB);
    let name = "Fedora-Test-43-1.6.x86_64.raw.xz";
    for d in [&listed, &unlisted] {
        std::fs::create_dir_all(d).unwrap();
        let packed = std::fs::File::create(d.join(name)).unwrap();
        common::run(
            Command::new("xz")
                .args(["-T0", "-c"])
                .arg(&inner)
                .stdout(packed),
        );
        let tagged = common::run(
            Command::new("sha256sum")
                .arg("--tag")
                .arg(name)
                .current_dir(d),
        );
        let plain = d.join("checksum.txt");
        std::fs::write(
            &plain,
            format!("# Fedora-Test-43-1.6.x86_64.raw.xz\n{tagged}"),
        )
        .unwrap();
        common::run(
            keys.gpg()
                .args([
                    "--local-user",
                    "publisher@example.org",
                    "--clearsign",
                    "--output",
                ])
                .arg(d.join("Fedora-Test-43-1.6-x86_64-CHECKSUM"))
                .arg(&plain),
        );
        std::fs::remove_file(&plain).unwrap();
    }
    std::fs::write(listed.join(".autoindex"), "").unwrap();
    let server = Server::start(&www, None);
    let key = keys.publisher.to_str().unwrap().to_owned();
    let target = dir.path().join("out.img");
    let (out, lines) = write_url(
        &server.url(&format!("listed/{name}")),
        &target,
        &["--require-signature", "--key", &key],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let check = &lines[0]["source_check"];
    assert_eq!(check["outcome"], "verified", "{check}");
    assert_eq!(
        check["matched"]["source"],
        server.url("listed/Fedora-Test-43-1.6-x86_64-CHECKSUM"),
        "{check}"
    );
    common::run(Command::new("cmp").arg(&inner).arg(&target));

    let target = dir.path().join("out2.img");
    let (out, _) = write_url(
        &server.url(&format!("unlisted/{name}")),
        &target,
        &["--require-signature", "--key", &key],
    );
    assert_eq!(out.status.code(), Some(18), "{}", stderr(&out));
    assert!(!target.exists());
}

/// Unmounts (lazily) the directory it names when dropped.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// `--save FILE` where FILE is the TARGET is refused (exit 2), and so is
/// a TARGET disk whose mounted filesystem would hold FILE (exit 4, even
/// with `--unmount`: the copy would be written onto the disk being
/// erased), before anything is written or unmounted.
#[test]
fn save_refuses_a_target_that_is_or_holds_it() {
    let t = "save_refuses_a_target_that_is_or_holds_it";
    if !require_root(t)
        || !require_python(t)
        || !require_tools(t, &["losetup", "mkfs.ext4", "mount", "umount", "sha256sum"])
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let www = dir.path().join("www");
    std::fs::create_dir(&www).unwrap();
    common::pseudo_random_file(&www.join("disk.img"), 2 * MIB, 3);
    let server = Server::start(&www, None);

    let target = dir.path().join("out.img");
    let (out, _) = write_url(
        &server.url("disk.img"),
        &target,
        &["--save", target.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("saved and a target"),
        "{}",
        stderr(&out)
    );
    assert!(!target.exists(), "nothing was written");

    let backing = dir.path().join("stick");
    std::fs::File::create(&backing)
        .unwrap()
        .set_len(32 * MIB)
        .unwrap();
    common::run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&backing));
    let dev = LoopDevice::attach(&backing);
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    common::run(Command::new("mount").arg(dev.path()).arg(&mnt));
    let mounted = Mounted(mnt.clone());
    let save = mnt.join("copy.img");
    let (out, _) = write_url(
        &server.url("disk.img"),
        dev.path(),
        &["--unmount", "--save", save.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is on the target"),
        "{}",
        stderr(&out)
    );
    // Refused before the unmount: still mounted, nothing saved.
    assert!(
        mnt.join("lost+found").is_dir(),
        "the filesystem is still mounted"
    );
    assert!(!save.exists());
    drop(mounted);
}

/// A resume that cannot be proven to continue the same file is refused
/// (exit 27) with the device incomplete and its first MiB zeroed: the
/// resumed response names another total length (`Content-Range`), or the
/// server gave no `ETag` or `Last-Modified` to resume against.
#[test]
fn a_resume_that_cannot_be_proven_the_same_file_is_refused() {
    let t = "a_resume_that_cannot_be_proven_the_same_file_is_refused";
    if !require_root(t) || !require_python(t) || !require_tools(t, &["losetup", "sfdisk"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let www = dir.path().join("www");
    std::fs::create_dir(&www).unwrap();
    mbr_image(&www.join("disk.img"), 24 * MIB);
    let server = Server::start(&www, None);
    // The server drops once per path and byte count: one count each.
    for (drop_at, query, words) in [
        (
            16 * MIB,
            "length=change",
            "changed while it was downloaded (25165824 bytes, then 25165825)",
        ),
        (
            17 * MIB,
            "validators=none",
            "cannot be resumed: the server gave no ETag or Last-Modified",
        ),
    ] {
        let backing = dir.path().join("stick");
        let dev = stick(&backing, 32 * MIB);
        let url = server.url(&format!("disk.img?drop={drop_at}&{query}"));
        let (out, lines) = write_url(&url, dev.path(), &[]);
        drop(dev);
        assert_eq!(out.status.code(), Some(27), "{query}: {}", stderr(&out));
        let result = lines.last().unwrap();
        let msg = result["error"].as_str().unwrap();
        assert!(msg.contains(words), "{query}: {msg}");
        assert_eq!(result["target_state"], "incomplete", "{query}: {result}");
        assert_eq!(result["boot_area_zeroed"], true, "{query}: {result}");
        let on_stick = std::fs::read(&backing).unwrap();
        assert!(
            on_stick[..MIB as usize].iter().all(|&b| b == 0),
            "{query}: the first MiB is zeroed"
        );
    }
}
