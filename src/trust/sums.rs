//! Checksum files as distributions publish them.
//!
//! One parser reads every line form we meet in the wild, line by line, so a
//! single file may even mix them:
//!
//! * GNU coreutils (`sha256sum`, `sha512sum`, `b2sum`): `hex  name` (text
//!   mode) or `hex *name` (binary mode); a leading `\` marks a name with
//!   `\\`, `\n` and `\r` escapes. A single space (`hex name`) is accepted too.
//! * BSD / `--tag` (Fedora `CHECKSUM`, OpenBSD `SHA256`, `b2sum --tag`):
//!   `SHA256 (name) = hex`, also without the spaces (`SHA256(name)= hex`).
//! * Single-hash files (`image.iso.sha256`): a bare `hex` line, optionally
//!   followed by a name.
//!
//! Comment lines (`#`, Fedora's `# name: N bytes`) and blank lines are
//! skipped; other lines are kept as [`Ignored`] with a reason, like
//! `sha256sum -c` warns about improperly formatted lines, so a report can say
//! why an entry was not used.
//!
//! The algorithm of a line comes from its BSD tag when it has one, otherwise
//! from the checksum file's name (`SHA512SUMS`, `b2sums.txt`) and the digest
//! length. A 128-digit digest in a file whose name says nothing could be
//! SHA-512 or BLAKE2b-512; such an entry keeps both candidates and matches if
//! either digest of the image equals it.
//!
//! This module only parses text. Whether that text may be trusted (a
//! clearsigned file counts only inside its signed part) is decided by the
//! caller, which hands us exactly the text it trusts.

use crate::hash::HashAlgorithm;

/// One checksum listed in a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// 1-based line number in the text that was parsed.
    pub line: usize,
    /// The file name as listed (escapes undone), or `None` for a bare hash.
    pub name: Option<String>,
    /// The algorithms the digest may have been made with (one, or SHA-512
    /// and BLAKE2b-512 when nothing tells them apart).
    pub candidates: Vec<HashAlgorithm>,
    /// The digest bytes.
    pub digest: Vec<u8>,
    /// The size listed with it (Debian `Release` files list one).
    pub size: Option<u64>,
}

impl Entry {
    /// The digest in lower-case hex.
    pub fn hex(&self) -> String {
        hex::encode(&self.digest)
    }

    /// True when the listed name refers to a file called `file_name`: the
    /// last path component is compared (`./iso/x.iso` lists `x.iso`).
    pub fn names(&self, file_name: &str) -> bool {
        self.name
            .as_deref()
            .is_some_and(|n| base_name(n) == file_name)
    }
}

/// A line that looked like neither a checksum, a comment nor a blank line, or
/// a checksum we do not accept (MD5, SHA-1, a length that fits no algorithm).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ignored {
    pub line: usize,
    pub reason: String,
}

/// The parsed content of one checksum file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sums {
    pub entries: Vec<Entry>,
    pub ignored: Vec<Ignored>,
}

/// The last path component of a listed name, after `/` (GNU `./dir/x.iso`).
pub fn base_name(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

/// The algorithm a checksum file's name announces (`SHA256SUMS`,
/// `sha512sum.txt`, `b2sums.txt`, `x.iso.sha256`), if any.
pub fn hint_from_file_name(file_name: &str) -> Option<HashAlgorithm> {
    let n = file_name.to_ascii_lowercase();
    if n.contains("sha256") {
        Some(HashAlgorithm::Sha256)
    } else if n.contains("sha512") {
        Some(HashAlgorithm::Sha512)
    } else if n.contains("b2sum") || n.contains("blake2") || n.ends_with(".b2") {
        Some(HashAlgorithm::Blake2b512)
    } else if n.contains("md5") {
        Some(HashAlgorithm::Md5)
    } else if n.contains("sha1") {
        Some(HashAlgorithm::Sha1)
    } else {
        None
    }
}

/// Parses checksum text. `hint` is the algorithm the file's name announces
/// ([`hint_from_file_name`]); BSD-tagged lines carry their own.
///
/// Never fails: unusable lines end up in [`Sums::ignored`]. A file with no
/// usable entry at all is for the caller to judge.
pub fn parse(text: &str, hint: Option<HashAlgorithm>) -> Sums {
    let mut sums = Sums::default();
    for (i, raw) in text.split('\n').enumerate() {
        let line = i + 1;
        let l = raw.strip_suffix('\r').unwrap_or(raw);
        let t = l.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        match parse_line(l, hint) {
            Ok(Some((name, candidates, digest))) => sums.entries.push(Entry {
                line,
                name,
                candidates,
                digest,
                size: None,
            }),
            Ok(None) => {}
            Err(reason) => sums.ignored.push(Ignored { line, reason }),
        }
    }
    sums
}

type Parsed = (Option<String>, Vec<HashAlgorithm>, Vec<u8>);

fn parse_line(l: &str, hint: Option<HashAlgorithm>) -> Result<Option<Parsed>, String> {
    if let Some(bsd) = parse_bsd(l) {
        return bsd.map(Some);
    }
    parse_gnu(l, hint).map(Some)
}

/// `TAG (name) = hex`, `TAG(name)= hex`. Returns `None` when the line does not
/// have the BSD shape at all.
fn parse_bsd(l: &str) -> Option<Result<Parsed, String>> {
    let (left, hex) = l.rsplit_once('=')?;
    let left = left.trim_end();
    let inner = left.strip_suffix(')')?;
    let (tag, name) = inner.split_once('(')?;
    let tag = tag.trim();
    if tag.is_empty() || !tag.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return None;
    }
    let hex = hex.trim();
    let alg = match tag.to_ascii_uppercase().as_str() {
        "SHA256" | "SHA2-256" => HashAlgorithm::Sha256,
        "SHA512" | "SHA2-512" => HashAlgorithm::Sha512,
        "BLAKE2B" | "BLAKE2B-512" | "BLAKE2B512" => HashAlgorithm::Blake2b512,
        "MD5" => HashAlgorithm::Md5,
        "SHA1" => HashAlgorithm::Sha1,
        other => {
            return Some(Err(format!(
                "{other} checksums are not read (SHA-256, SHA-512, BLAKE2b-512; MD5 and SHA-1 for corruption only)"
            )))
        }
    };
    let digest = match decode_hex(hex) {
        Some(d) if d.len() == alg.digest_len() => d,
        _ => {
            return Some(Err(format!(
                "{tag} line does not carry a {}-digit hex digest",
                alg.digest_len() * 2
            )))
        }
    };
    if name.is_empty() {
        return Some(Err("the file name is empty".into()));
    }
    Some(Ok((Some(name.to_string()), vec![alg], digest)))
}

/// `hex  name`, `hex *name`, `hex name`, `\hex  esc\\aped`, or a bare `hex`.
fn parse_gnu(l: &str, hint: Option<HashAlgorithm>) -> Result<Parsed, String> {
    let (escaped, l) = match l.strip_prefix('\\') {
        Some(rest) => (true, rest),
        None => (false, l.trim_start()),
    };
    let hex_end = l.find([' ', '\t']).unwrap_or(l.len());
    let hex = &l[..hex_end];
    let rest = &l[hex_end..];
    let Some(digest) = decode_hex(hex) else {
        return Err("not a checksum line".into());
    };
    let candidates = candidates(digest.len(), hint)?;
    let name = if rest.trim().is_empty() {
        None
    } else {
        // One separator space, then the mode marker (' ' text, '*' binary)
        // when present; GNU writes exactly these two characters.
        let r = &rest[1..];
        let r = r.strip_prefix(['*', ' ']).unwrap_or(r);
        if r.is_empty() {
            return Err("the file name is empty".into());
        }
        Some(if escaped { unescape(r)? } else { r.to_string() })
    };
    Ok((name, candidates, digest))
}

fn candidates(bytes: usize, hint: Option<HashAlgorithm>) -> Result<Vec<HashAlgorithm>, String> {
    match (bytes, hint) {
        (32, None | Some(HashAlgorithm::Sha256)) => Ok(vec![HashAlgorithm::Sha256]),
        (16, Some(HashAlgorithm::Md5)) => Ok(vec![HashAlgorithm::Md5]),
        (20, Some(HashAlgorithm::Sha1)) => Ok(vec![HashAlgorithm::Sha1]),
        (64, None) => Ok(vec![HashAlgorithm::Sha512, HashAlgorithm::Blake2b512]),
        (64, Some(h @ (HashAlgorithm::Sha512 | HashAlgorithm::Blake2b512))) => Ok(vec![h]),
        // Weak, but listed by some (Qubes DIGESTS, Debian Release): they
        // can find corruption, never prove an image genuine.
        (16, None) => Ok(vec![HashAlgorithm::Md5]),
        (20, None) => Ok(vec![HashAlgorithm::Sha1]),
        (n, Some(h)) => Err(format!(
            "a {}-digit digest does not fit {h}, which the file name announces",
            n * 2
        )),
        (n, None) => Err(format!(
            "a {}-digit digest fits no accepted algorithm",
            n * 2
        )),
    }
}

/// True for a Debian `Release`/`InRelease` file: by its name, or by a hash
/// field (`SHA256:` alone on its line) followed by indented ` HASH SIZE
/// PATH` lines.
pub fn is_release(file_name: &str, text: &str) -> bool {
    if matches!(file_name, "Release" | "InRelease") {
        return true;
    }
    let mut lines = text.lines();
    while let Some(l) = lines.next() {
        if release_hash_field(l).is_some_and(|(_, value)| value.is_empty())
            && lines.next().is_some_and(|n| n.starts_with(' '))
        {
            return true;
        }
    }
    false
}

/// A deb822 field line naming a hash section: the algorithm and the rest
/// of the line.
fn release_hash_field(l: &str) -> Option<(HashAlgorithm, &str)> {
    let (name, value) = l.split_once(':')?;
    let alg = match name.to_ascii_lowercase().as_str() {
        "md5sum" => HashAlgorithm::Md5,
        "sha1" => HashAlgorithm::Sha1,
        "sha256" => HashAlgorithm::Sha256,
        "sha512" => HashAlgorithm::Sha512,
        _ => return None,
    };
    Some((alg, value.trim()))
}

/// Parses a Debian `Release` file (deb822, one paragraph; Debian Policy
/// and the apt repository format): its `MD5Sum:`, `SHA1:`, `SHA256:` and
/// `SHA512:` fields hold indented ` HASH SIZE PATH` lines, PATH relative to
/// the Release file's directory. Other fields (`Origin`, `Date`, …) are not
/// checksums and are skipped; a malformed line in a hash field is kept in
/// [`Sums::ignored`].
pub fn parse_release(text: &str) -> Sums {
    let mut sums = Sums::default();
    let mut section: Option<HashAlgorithm> = None;
    for (i, raw) in text.split('\n').enumerate() {
        let line = i + 1;
        let l = raw.strip_suffix('\r').unwrap_or(raw);
        if l.trim().is_empty() {
            section = None;
            continue;
        }
        if l.starts_with([' ', '\t']) {
            let Some(alg) = section else {
                // The continuation of another field (a long Description).
                continue;
            };
            let mut parts = l.split_whitespace();
            let (hex, size, path) = (parts.next(), parts.next(), parts.next());
            let parsed = match (hex.and_then(decode_hex), size.map(str::parse::<u64>), path) {
                (Some(d), Some(Ok(size)), Some(path))
                    if parts.next().is_none() && d.len() == alg.digest_len() =>
                {
                    Some((d, size, path))
                }
                _ => None,
            };
            match parsed {
                Some((digest, size, path)) => sums.entries.push(Entry {
                    line,
                    name: Some(path.to_string()),
                    candidates: vec![alg],
                    digest,
                    size: Some(size),
                }),
                None => sums.ignored.push(Ignored {
                    line,
                    reason: format!(
                        "not a ` HASH SIZE PATH` line of the {} field",
                        release_field_name(alg)
                    ),
                }),
            }
            continue;
        }
        section = None;
        match release_hash_field(l) {
            Some((alg, "")) => section = Some(alg),
            Some((alg, _)) => sums.ignored.push(Ignored {
                line,
                reason: format!(
                    "the {} field has a value on its own line; its entries must be indented lines",
                    release_field_name(alg)
                ),
            }),
            None if l.contains(':') => {}
            None => sums.ignored.push(Ignored {
                line,
                reason: "neither a field nor an indented entry of a Release file".into(),
            }),
        }
    }
    sums
}

fn release_field_name(alg: HashAlgorithm) -> &'static str {
    match alg {
        HashAlgorithm::Md5 => "MD5Sum",
        HashAlgorithm::Sha1 => "SHA1",
        HashAlgorithm::Sha256 => "SHA256",
        HashAlgorithm::Sha512 => "SHA512",
        HashAlgorithm::Blake2b512 => "BLAKE2b",
    }
}

/// Parses a checksum file by its format: a Debian `Release`/`InRelease`
/// ([`parse_release`]), else checksum lines ([`parse`]) with the algorithm
/// the file's name announces.
pub fn parse_file(file_name: &str, text: &str) -> Sums {
    if is_release(file_name, text) {
        parse_release(text)
    } else {
        parse(text, hint_from_file_name(file_name))
    }
}

fn unescape(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            other => return Err(format!("unknown escape \\{}", other.unwrap_or(' '))),
        }
    }
    Ok(out)
}

/// Hex (either case) of an even length between 2 and 128 digits.
fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.is_empty() || s.len() > 128 {
        return None;
    }
    hex::decode(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use HashAlgorithm::*;

    const H64: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn gnu_text_binary_and_single_space() {
        let text = format!("{H64}  a.iso\n{H64} *b b.iso\r\n{H64} c.iso\n\n# comment\n");
        let s = parse(&text, None);
        let names: Vec<_> = s.entries.iter().map(|e| e.name.clone().unwrap()).collect();
        assert_eq!(names, ["a.iso", "b b.iso", "c.iso"]);
        assert!(s.entries.iter().all(|e| e.candidates == [Sha256]));
        assert_eq!(s.entries[0].hex(), H64);
        assert!(s.ignored.is_empty());
    }

    #[test]
    fn gnu_escaped_names() {
        let s = parse(&format!("\\{H64}  a\\\\b\\nc.iso\n"), None);
        assert_eq!(s.entries[0].name.as_deref(), Some("a\\b\nc.iso"));
    }

    #[test]
    fn bsd_and_fedora() {
        let text = format!(
            "# Fedora-Server-43.iso: 123 bytes\nSHA256 (Fedora-Server-43.iso) = {H64}\nSHA256(x (1).iso)= {}\n",
            H64.to_uppercase()
        );
        let s = parse(&text, Some(Sha512));
        assert_eq!(s.entries.len(), 2, "{s:?}");
        assert_eq!(s.entries[0].name.as_deref(), Some("Fedora-Server-43.iso"));
        assert_eq!(s.entries[0].line, 2);
        assert_eq!(s.entries[1].name.as_deref(), Some("x (1).iso"));
        assert_eq!(s.entries[1].candidates, [Sha256]);
    }

    #[test]
    fn length_and_hint_decide_the_algorithm() {
        let h128 = "ab".repeat(64);
        assert_eq!(
            parse(&format!("{h128}  x"), None).entries[0].candidates,
            [Sha512, Blake2b512]
        );
        assert_eq!(
            parse(&format!("{h128}  x"), hint_from_file_name("b2sums.txt")).entries[0].candidates,
            [Blake2b512]
        );
        let s = parse(&format!("{H64}  x"), hint_from_file_name("SHA512SUMS"));
        assert!(s.entries.is_empty());
        assert_eq!(s.ignored[0].line, 1);
    }

    #[test]
    fn weak_and_malformed_lines_are_ignored_with_a_reason() {
        let text = format!(
            "{}  md5.iso\nMD5 (x) = {}\nhello world\nSHA256 (x) = abc\n{H64}\n",
            "0".repeat(32),
            "0".repeat(32)
        );
        let s = parse(&text, None);
        // MD5 lines are read (for corruption only); the others are not.
        let algs: Vec<_> = s.entries.iter().map(|e| e.candidates.clone()).collect();
        assert_eq!(algs, [vec![Md5], vec![Md5], vec![Sha256]]);
        assert_eq!(s.entries[2].name, None);
        assert_eq!(s.ignored.len(), 2);
        assert_eq!((s.ignored[0].line, s.ignored[1].line), (3, 4));
        let s = parse(
            &format!("{}  x\nRMD160 (x) = {}\n", "0".repeat(40), "0".repeat(40)),
            None,
        );
        assert_eq!(s.entries[0].candidates, [Sha1]);
        assert!(s.ignored[0].reason.contains("RMD160"));
    }

    #[test]
    fn debian_release_hash_fields() {
        let h1 = "ab".repeat(16);
        let h2 = "cd".repeat(32);
        let text = format!(
            "Origin: Debian\nLabel: Debian\nDescription: Debian 12.8\n long description line\nMD5Sum:\n {h1}  50060337 main/binary-amd64/Packages\n {h1} 123 main/i18n/Index\nSHA256:\n {h2}  50060337 main/binary-amd64/Packages\n {h2} notasize main/x\n {h1} 5 short/digest\nAcquire-By-Hash: yes\n"
        );
        assert!(is_release("InRelease", ""));
        assert!(is_release("whatever", &text));
        assert!(!is_release("SHA256SUMS", &format!("{H64}  x.iso\n")));
        let s = parse_file("Release", &text);
        let got: Vec<_> = s
            .entries
            .iter()
            .map(|e| (e.line, e.name.clone().unwrap(), e.candidates[0], e.size))
            .collect();
        assert_eq!(
            got,
            [
                (
                    6,
                    "main/binary-amd64/Packages".to_string(),
                    Md5,
                    Some(50060337)
                ),
                (7, "main/i18n/Index".to_string(), Md5, Some(123)),
                (
                    9,
                    "main/binary-amd64/Packages".to_string(),
                    Sha256,
                    Some(50060337)
                ),
            ]
        );
        // The two malformed SHA256 lines are kept with a reason; the
        // description's continuation and the other fields are not entries.
        let lines: Vec<_> = s.ignored.iter().map(|i| i.line).collect();
        assert_eq!(lines, [10, 11]);
        assert!(s.ignored[0].reason.contains("SHA256"));
        // The old reading took ` HASH SIZE PATH` for a hash and a name
        // "50060337 main/…": no entry may be named like that.
        assert!(s
            .entries
            .iter()
            .all(|e| !e.name.as_deref().unwrap().contains(' ')));
    }

    #[test]
    fn names_compare_the_last_component() {
        let e = &parse(&format!("{H64}  ./iso/x.iso"), None).entries[0];
        assert!(e.names("x.iso"));
        assert!(!e.names("iso/x.iso"));
        assert!(!e.names("y.iso"));
    }

    #[test]
    fn hints() {
        assert_eq!(hint_from_file_name("SHA256SUMS"), Some(Sha256));
        assert_eq!(hint_from_file_name("x.iso.sha512"), Some(Sha512));
        assert_eq!(hint_from_file_name("b2sums.txt"), Some(Blake2b512));
        assert_eq!(hint_from_file_name("x.iso.blake2"), Some(Blake2b512));
        assert_eq!(hint_from_file_name("x.iso.b2"), Some(Blake2b512));
        assert_eq!(hint_from_file_name("Fedora-CHECKSUM"), None);
    }
}
