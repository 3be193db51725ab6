//! Finding the checksum and signature files a distribution publishes beside
//! its image, so `bootstick verify IMAGE` works on a download folder as is.
//!
//! Only names distributions actually use are picked up (a folder of
//! downloads holds unrelated files): `SHA256SUMS`, `SHA512SUMS` (Ubuntu,
//! Debian, Kali), `sha256sum.txt` (Mint), `sha256sums.txt`, `b2sums.txt`
//! (Arch), `*-CHECKSUM` (Fedora), `CHECKSUM` (Rocky, AlmaLinux),
//! `CHECKSUM.SHA256-…`/`CHECKSUM.SHA512-…` (FreeBSD), `SHA256` (OpenBSD),
//! and files named after the image: `IMAGE.sha256` (openSUSE, Alpine,
//! NixOS, Raspberry Pi OS), `IMAGE.sha256sum`, `IMAGE.sha256.txt`,
//! `IMAGE.CHECKSUM` (Rocky), `IMAGE.DIGESTS` (Qubes). Signatures are the
//! same names with `.gpg`, `.sign`, `.asc`, `.sig` or `.minisig` appended.

use std::path::{Path, PathBuf};

/// Extensions a detached signature adds to the name of the file it signs.
pub const SIGNATURE_EXTENSIONS: [&str; 5] = ["gpg", "sign", "asc", "sig", "minisig"];

/// The suffixes of compressed images whose checksum file may be named
/// after the image inside.
const COMPRESSED_SUFFIXES: [&str; 6] = [".xz", ".zst", ".zstd", ".gz", ".bz2", ".zip"];

/// Checksum files in the image's folder, sorted by name.
pub fn sums_beside(image: &Path) -> std::io::Result<Vec<PathBuf>> {
    let dir = match image.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let image_name = image
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // A compressed image's own checksum file may be named after the image
    // inside (`disk.img.sha256` beside `disk.img.xz`; the hash decides
    // which stream it is about: `trust::decoded`).
    let inner_name = inner_name(&image_name);
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let named = is_sums_name(&name, &image_name)
            || inner_name
                .as_deref()
                .is_some_and(|i| is_sums_name(&name, i));
        if name != image_name && named && is_regular(&entry.path()) {
            found.push(dir.join(&name));
        }
    }
    // OpenBSD publishes `SHA256.sig`, a signify file with the list embedded;
    // alone (without a plain `SHA256` beside it) it is the checksum file.
    for entry in std::fs::read_dir(&dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let lower = name.to_ascii_lowercase();
        if let Some(plain) = lower.strip_suffix(".sig") {
            if (plain == "sha256" || plain == "sha512")
                && !found.iter().any(|f| file_name_lower(f) == plain)
                && is_regular(&entry.path())
            {
                found.push(dir.join(&name));
            }
        }
    }
    found.sort();
    Ok(found)
}

/// A regular file, or a symlink to one (a FIFO, a directory or a device
/// under a checksum file's name is not one; `stat` does not block).
fn is_regular(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file())
}

fn file_name_lower(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default()
}

/// True for the file names checksum lists are published under.
pub fn is_sums_name(name: &str, image_name: &str) -> bool {
    const LISTS: [&str; 14] = [
        "sha256sums",
        "sha512sums",
        "sha256sums.txt",
        "sha512sums.txt",
        "sha256sum.txt",
        "sha512sum.txt",
        "b2sums",
        "b2sums.txt",
        "checksum",
        "checksums",
        "checksums.txt",
        "sha256",
        "sha512",
        "sha256sums.asc.txt",
    ];
    const SINGLE: [&str; 11] = [
        "sha256",
        "sha512",
        "sha256sum",
        "sha512sum",
        "sha256.txt",
        "sha512.txt",
        "b2sum",
        "b2",
        "checksum",
        "digests",
        "md5",
    ];
    let lower = name.to_ascii_lowercase();
    // A signature beside a list is not a list (OpenBSD's `SHA256.sig` is
    // found on its own, in `sums_beside`).
    if SIGNATURE_EXTENSIONS
        .iter()
        .any(|ext| lower.ends_with(&format!(".{ext}")))
    {
        return false;
    }
    if LISTS.contains(&lower.as_str())
        || lower.ends_with("-checksum")
        || lower.starts_with("checksum.sha256-")
        || lower.starts_with("checksum.sha512-")
    {
        return true;
    }
    match name
        .strip_prefix(image_name)
        .and_then(|r| r.strip_prefix('.'))
    {
        Some(ext) => SINGLE.contains(&ext.to_ascii_lowercase().as_str()),
        None => false,
    }
}

/// Existing detached signature files for `file` (`file.gpg`, `file.sig`, …).
pub fn signatures_of(file: &Path) -> Vec<PathBuf> {
    signature_names(file)
        .into_iter()
        .filter(|p| p.is_file())
        .collect()
}

/// The names a detached signature of `file` is published under, whether
/// or not one exists (a download probes them: [`published_names`]).
pub fn signature_names(file: &Path) -> Vec<PathBuf> {
    SIGNATURE_EXTENSIONS
        .iter()
        .map(|ext| {
            let mut p = file.as_os_str().to_owned();
            p.push(".");
            p.push(ext);
            PathBuf::from(p)
        })
        .collect()
}

/// The checksum files to ask a server for beside `image_name` (a
/// download, where no directory can be listed): the lists under the
/// spelling distributions publish them with, and the files named after
/// the image (or, for a compressed one, after the image inside). Every
/// name is one [`is_sums_name`] accepts (tested), so a download finds
/// what a folder would, but for names with a varying part (Fedora's
/// `…-CHECKSUM`, FreeBSD's `CHECKSUM.SHA256-…`), which cannot be guessed.
pub fn published_names(image_name: &str) -> Vec<String> {
    const LISTS: [&str; 10] = [
        "SHA256SUMS",
        "SHA512SUMS",
        "sha256sum.txt",
        "sha256sums.txt",
        "sha512sums.txt",
        "b2sums.txt",
        "CHECKSUM",
        "CHECKSUMS",
        "SHA256",
        "SHA512",
    ];
    const SINGLE: [&str; 7] = [
        "sha256",
        "sha512",
        "sha256sum",
        "sha256.txt",
        "CHECKSUM",
        "DIGESTS",
        "b2sum",
    ];
    let mut names: Vec<String> = LISTS.iter().map(|s| s.to_string()).collect();
    let inner = inner_name(image_name);
    for base in std::iter::once(image_name).chain(inner.as_deref()) {
        names.extend(SINGLE.iter().map(|ext| format!("{base}.{ext}")));
    }
    names
}

/// `x.img` for `x.img.xz` (and the other compressed suffixes).
pub fn inner_name(image_name: &str) -> Option<String> {
    COMPRESSED_SUFFIXES.iter().find_map(|s| {
        image_name
            .to_ascii_lowercase()
            .strip_suffix(s)
            .filter(|stem| !stem.is_empty())
            .map(|stem| image_name[..stem.len()].to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_names_asked_of_a_server_are_names_found_in_a_folder() {
        let names = published_names("disk.img.xz");
        assert!(names.contains(&"SHA256SUMS".to_string()));
        assert!(names.contains(&"disk.img.xz.sha256".to_string()));
        assert!(names.contains(&"disk.img.sha256".to_string()));
        for n in &names {
            assert!(
                is_sums_name(n, "disk.img.xz") || is_sums_name(n, "disk.img"),
                "{n}"
            );
        }
    }

    #[test]
    fn published_names_only() {
        for n in [
            "SHA256SUMS",
            "SHA512SUMS",
            "sha256sum.txt",
            "b2sums.txt",
            "Fedora-Server-43-x86_64-CHECKSUM",
            "SHA256",
            "x.iso.sha256",
            "x.iso.SHA512",
            "CHECKSUM",
            "CHECKSUM.SHA256-FreeBSD-14.2-RELEASE-amd64",
            "CHECKSUM.SHA512-FreeBSD-14.2-RELEASE-amd64",
            "x.iso.DIGESTS",
            "x.iso.CHECKSUM",
            "x.iso.sha256sum",
            "x.iso.sha256.txt",
        ] {
            assert!(is_sums_name(n, "x.iso"), "{n}");
        }
        for n in [
            "x.iso",
            "y.iso.sha256",
            "SHA256SUMS.gpg",
            "notes.txt",
            "x.iso.sig",
            "CHECKSUM.SHA256-FreeBSD-14.2-RELEASE-amd64.asc",
            "y.iso.DIGESTS",
            "CHECKSUM.md5-x",
        ] {
            assert!(!is_sums_name(n, "x.iso"), "{n}");
        }
    }
}
