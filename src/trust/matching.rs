//! Which checksum-file entries are about the image, decided the way
//! distributions lay their trees out (docs/trust.md, *Matching*).
//!
//! A checksum file lists paths relative to its own directory (`./netboot/
//! mini.iso`, `main/binary-amd64/Packages`). The entries for the image are,
//! in this order:
//!
//! 1. bare hashes (a single-hash file `x.iso.sha256`, `--sha256`): they are
//!    given for this image;
//! 2. entries whose normalized path equals the image's path relative to the
//!    checksum file's directory;
//! 3. when no path fits (the image was downloaded alone), entries whose last
//!    component is the image's file name. Several may share it
//!    (`./netboot/mini.iso`, `./netboot/gtk/mini.iso`): a hash equal to one
//!    of them is a match, reported with the others that share the name.
//!
//! Of these entries only the strongest algorithm present is checked
//! (SHA-512 and BLAKE2b-512, then SHA-256, then SHA-1, then MD5), the others
//! are noted. Two entries for the same path and algorithm with different
//! digests are a conflict: the file contradicts itself, and that fails.

use super::sums::Entry;
use crate::hash::HashAlgorithm;

/// How the entries for the image were found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum By {
    /// A bare hash, given for this image.
    Given,
    /// The entry's path is the image's path relative to the checksum file.
    Path,
    /// The entry's file name is the image's (no path fitted).
    Name,
    /// Only the hash matched, under another name: the image was renamed.
    Hash,
    /// isomd5sum's MD5 inside the image (no checksum file named it).
    Implanted,
}

/// A listed name as a path relative to the checksum file's directory: `./`
/// and empty components dropped (`./a//b` is `a/b`). `None` for an absolute
/// path or one that climbs out with `..`: such a path is compared by file
/// name only.
pub fn normalize(name: &str) -> Option<String> {
    if name.starts_with('/') {
        return None;
    }
    let mut parts = Vec::new();
    for c in name.split('/') {
        match c {
            "" | "." => {}
            ".." => return None,
            c => parts.push(c),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// The last path component of a listed name.
pub fn base_name(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

/// How strong an entry's algorithm is; higher is stronger. An entry that
/// may be SHA-512 or BLAKE2b-512 ranks as 512-bit.
pub fn strength(e: &Entry) -> u8 {
    e.candidates
        .iter()
        .map(|a| match a {
            HashAlgorithm::Md5 => 0,
            HashAlgorithm::Sha1 => 1,
            HashAlgorithm::Sha256 => 2,
            HashAlgorithm::Sha512 | HashAlgorithm::Blake2b512 => 3,
        })
        .max()
        .unwrap_or(0)
}

/// The entries of one checksum file that are about the image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection {
    pub by: By,
    /// Indexes of the entries checked: the strongest algorithm among the
    /// entries about the image.
    pub checked: Vec<usize>,
    /// Indexes of weaker entries about the image that were not checked.
    pub weaker: Vec<usize>,
}

/// Picks the entries about the image: `rel` is its path relative to the
/// checksum file's directory (when it lies below it), `name` its file name.
/// `None` when no entry names the image (a hash match may still find it).
pub fn select(entries: &[Entry], rel: Option<&str>, name: &str) -> Option<Selection> {
    let pick = |by: By, keep: &dyn Fn(&Entry) -> bool| {
        let about: Vec<usize> = (0..entries.len()).filter(|&i| keep(&entries[i])).collect();
        let top = about.iter().map(|&i| strength(&entries[i])).max()?;
        let (checked, weaker) = about
            .into_iter()
            .partition(|&i| strength(&entries[i]) == top);
        Some(Selection {
            by,
            checked,
            weaker,
        })
    };
    pick(By::Given, &|e| e.name.is_none())
        .or_else(|| {
            let rel = rel?;
            pick(By::Path, &|e| {
                e.name.as_deref().and_then(normalize).as_deref() == Some(rel)
            })
        })
        .or_else(|| {
            pick(By::Name, &|e| {
                e.name.as_deref().is_some_and(|n| base_name(n) == name)
            })
        })
}

/// Pairs of entries (indexes) among `idxs` that list the same path with the
/// same algorithm but different digests.
pub fn conflicts(entries: &[Entry], idxs: &[usize]) -> Vec<(usize, usize)> {
    let key = |e: &Entry| {
        e.name
            .as_deref()
            .map(|n| normalize(n).unwrap_or_else(|| n.to_string()))
    };
    let mut out = Vec::new();
    for (k, &i) in idxs.iter().enumerate() {
        for &j in &idxs[k + 1..] {
            let (a, b) = (&entries[i], &entries[j]);
            if key(a) == key(b) && a.candidates == b.candidates && a.digest != b.digest {
                out.push((i, j));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(line: usize, name: Option<&str>, alg: HashAlgorithm, byte: u8) -> Entry {
        Entry {
            line,
            name: name.map(str::to_string),
            candidates: vec![alg],
            digest: vec![byte; alg.digest_len()],
            size: None,
        }
    }

    #[test]
    fn normalizes_paths() {
        assert_eq!(
            normalize("./netboot//mini.iso").as_deref(),
            Some("netboot/mini.iso")
        );
        assert_eq!(normalize("mini.iso").as_deref(), Some("mini.iso"));
        assert_eq!(normalize("/abs/x.iso"), None);
        assert_eq!(normalize("../x.iso"), None);
        assert_eq!(normalize("./"), None);
    }

    #[test]
    fn path_then_name_then_nothing() {
        use HashAlgorithm::*;
        let e = vec![
            entry(1, Some("./netboot/mini.iso"), Sha256, 1),
            entry(2, Some("./netboot/gtk/mini.iso"), Sha256, 2),
            entry(3, Some("./netboot/mini.iso"), Md5, 3),
            entry(4, Some("other.iso"), Sha256, 4),
        ];
        let s = select(&e, Some("netboot/mini.iso"), "mini.iso").unwrap();
        assert_eq!(
            (s.by, s.checked.clone(), s.weaker.clone()),
            (By::Path, vec![0], vec![2])
        );
        let s = select(&e, Some("mini.iso"), "mini.iso").unwrap();
        assert_eq!((s.by, s.checked.clone()), (By::Name, vec![0, 1]));
        assert_eq!(select(&e, None, "x.iso"), None);
        let bare = vec![entry(1, None, Sha512, 9)];
        assert_eq!(select(&bare, Some("x.iso"), "x.iso").unwrap().by, By::Given);
    }

    #[test]
    fn same_path_different_digest_is_a_conflict() {
        use HashAlgorithm::*;
        let e = vec![
            entry(1, Some("./x.iso"), Sha256, 1),
            entry(2, Some("x.iso"), Sha256, 2),
            entry(3, Some("x.iso"), Sha512, 2),
            entry(4, Some("a/x.iso"), Sha256, 3),
        ];
        assert_eq!(conflicts(&e, &[0, 1, 2, 3]), vec![(0, 1)]);
    }
}
