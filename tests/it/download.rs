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

use common::{bootstick, json_lines, require_root, require_tools, LoopDevice};

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

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
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
/// type) and a 404 are refused with exit 27 before anything is written:
/// the device's bytes are the same before and after.
#[test]
fn a_web_page_or_a_404_is_refused_before_writing() {
    let t = "a_web_page_or_a_404_is_refused_before_writing";
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
        ("download.html", "a web page, not an image (its Content-Type is text/html)"),
        (
            "download.html?type=application/octet-stream",
            "a web page, not an image (its body starts as an HTML document)",
        ),
        ("missing.iso", "404 Not Found"),
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
