//! Checking an image the way its distribution publishes it, before a byte of
//! it goes to a stick.
//!
//! A check gathers *references* (checksum files given or found beside the
//! image, hashes from the command line) and *signatures* over them or over the
//! image, reads the image once in a streaming pass that computes every digest
//! needed ([`stream`]), and condenses everything into one [`Outcome`] plus a
//! [`Report`] that names the checksum file, line and signer used.
//!
//! See `docs/trust.md` for what each outcome means and the order they are
//! decided in.

pub mod announced;
pub mod authenticode;
pub mod decoded;
pub mod discover;
pub mod ed25519;
#[cfg(test)]
mod fuzz_tests;
pub mod isomd5;
pub mod matching;
pub mod openpgp;
pub mod signature;
pub mod stream;
pub mod sums;

use crate::events::{Event, Observer, Phase};
use crate::hash::{Digest, HashAlgorithm};
use serde::Serialize;
use signature::{Checked, SignatureFile, Signer, Status};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The `source` of a match on isomd5sum's implanted MD5.
pub const IMPLANTED_SOURCE: &str = "implanted md5";
/// What an implanted MD5 is worth, said wherever it decided the outcome.
pub const IMPLANTED_NOTE: &str = "implanted md5: finds corruption, not tampering";

/// Largest checksum or signature file read (real ones are a few KiB).
pub const MAX_REFERENCE_FILE: u64 = 4 << 20;

/// How a check ended. Each value has its own exit code (`docs/cli.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// A trusted signature covers the image, directly or through a checksum
    /// file whose listed hash equals the image's.
    Verified,
    /// The image's hash equals a listed or given checksum, but no trusted
    /// signature covers that checksum.
    ChecksumOnly,
    /// The image's name is listed (or a hash was given for it) and the hash
    /// differs: a corrupt or tampered download.
    Mismatch,
    /// Checksum files were found, but none lists this image by name or hash.
    NotListed,
    /// A signature is malformed or does not verify with the key it names.
    BadSignature,
    /// Signatures exist, but none is by a key that was given.
    UnknownKey,
    /// The only signatures by given keys use SHA-1 or MD5.
    WeakSignature,
    /// The only signatures by given keys were made by an expired key.
    ExpiredKey,
    /// The only signatures by given keys were made by a revoked key.
    RevokedKey,
    /// Nothing to check the image against: no checksum or signature given or
    /// found beside it.
    NoReference,
}

impl Outcome {
    /// The kebab-case name used in text and JSON output.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Verified => "verified",
            Outcome::ChecksumOnly => "checksum-only",
            Outcome::Mismatch => "mismatch",
            Outcome::NotListed => "not-listed",
            Outcome::BadSignature => "bad-signature",
            Outcome::UnknownKey => "unknown-key",
            Outcome::WeakSignature => "weak-signature",
            Outcome::ExpiredKey => "expired-key",
            Outcome::RevokedKey => "revoked-key",
            Outcome::NoReference => "no-reference",
        }
    }
}

/// Failures that stop a check before it can reach an outcome.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is {size} bytes; checksum and signature files over {limit} bytes are refused (is it the right file?)")]
    TooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },
    #[error("{path} is not text: {reason}")]
    NotText { path: PathBuf, reason: String },
    /// A FIFO, socket, directory or character device where a file is read.
    #[error("{path} is {kind}, not a regular file; give the file itself")]
    NotAFile { path: PathBuf, kind: &'static str },
    #[error(transparent)]
    Key(#[from] openpgp::KeyError),
}

/// What to check the image against.
#[derive(Clone, Debug, Default)]
pub struct Request {
    /// The image to check.
    pub image: PathBuf,
    /// Checksum files given explicitly (`--sums`).
    pub sums: Vec<PathBuf>,
    /// Hashes given on the command line (`--sha256`, `--sha512`).
    pub expected: Vec<Digest>,
    /// Signature files given explicitly (`--sig`). What each one signs is
    /// told by its name: `X.gpg` signs `X` (a checksum file or the image);
    /// a name that matches neither is taken to sign the image.
    pub signatures: Vec<PathBuf>,
    /// Files holding the keys signatures are checked with (`--key`).
    pub keys: Vec<PathBuf>,
    /// Fingerprints the keys are narrowed to (`--fingerprint`).
    pub fingerprints: Vec<String>,
    /// Look for checksum files (when none are given) and for signature
    /// files beside the image and the checksum files.
    pub discover: bool,
}

/// Where a checksum came from and how the image relates to it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Listing {
    /// The checksum file, or `command line`.
    pub source: String,
    /// The digest was given by the user (`--sha256`, `--sha512`), not read
    /// from a file; see [`Report::matches_given_digest`].
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub command_line: bool,
    /// The line within the (signed part of the) file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// The name the line lists (absent for a bare hash).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// True when the image matched by hash under a different name.
    pub renamed: bool,
    pub algorithm: HashAlgorithm,
    /// The listed digest in hex.
    pub expected: String,
    /// Who signed the checksum file, by good signatures from given keys.
    pub signed_by: Vec<Signer>,
    /// How the entry was found to be about the image: `given` (a bare
    /// hash), `path` (its path relative to the checksum file), `name` (its
    /// file name), `hash` (only the hash: renamed), `implanted`.
    pub by: matching::By,
    /// Other entries that share the image's file name under other paths
    /// (when matched by name), one per path.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub same_name: Vec<SameName>,
    /// The line of another entry for the same path and algorithm whose
    /// digest differs (the file contradicts itself).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conflicts_with: Option<usize>,
    /// The entry is about the image inside a compressed IMAGE (listed
    /// under its decompressed name, or its digest is the decompressed
    /// image's), not about the compressed file (`trust::decoded`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub decompressed: bool,
}

/// An entry that shares the image's file name under another path.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct SameName {
    pub line: usize,
    pub name: String,
}

/// One checksum reference that was read.
#[derive(Clone, Debug, Serialize)]
pub struct SourceSummary {
    pub source: String,
    pub entries: usize,
    /// Lines that were not used, with why (`line N: reason`).
    pub ignored: Vec<String>,
    /// True when only the signed part of a clearsigned file was read.
    pub clearsigned: bool,
}

/// The result of a check.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub outcome: Outcome,
    pub image: PathBuf,
    pub size: u64,
    /// The image's digests computed in the pass, by algorithm name.
    pub digests: BTreeMap<String, String>,
    /// A compressed image's decompressed digests, by algorithm name, when
    /// some reference may be about the image inside (`trust::decoded`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub decompressed_digests: BTreeMap<String, String>,
    /// The listing the image matched, when one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matched: Option<Listing>,
    /// Listings that name the image but carry another hash.
    pub mismatches: Vec<Listing>,
    pub sources: Vec<SourceSummary>,
    /// Every signature file read, and the verdict on each signature in it.
    pub signatures: Vec<SignatureFile>,
    /// Who vouches for the image when the outcome is `verified`.
    pub signers: Vec<Signer>,
    /// The keys that were trusted (after `--fingerprint` pins).
    pub keys: Vec<Signer>,
    /// Things worth knowing that did not decide the outcome.
    pub notes: Vec<String>,
    /// isomd5sum's implanted MD5, when it was checked (no checksum file
    /// applied): its fields and the verdict.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub implanted_md5: Option<ImplantedCheck>,
    /// The SHA-256 of the image bytes that were checked; `write` passes it to
    /// the engine so an image that changes before it is written is caught.
    #[serde(skip)]
    pub checked_sha256: Option<Digest>,
    /// The SHA-256 of every block of the image, from the same pass as
    /// `checked_sha256` ([`check_pinned`] only): `write` reads the image
    /// only through them afterwards (`image::checked`).
    #[serde(skip)]
    pub checked_blocks: Option<std::sync::Arc<crate::image::checked::BlockDigests>>,
}

impl Report {
    /// The image matched a digest its user gave (`Request::expected`:
    /// `--sha256`, `--sha512`), and nothing signed says otherwise. That is
    /// the check the user asked for — a hash copied from a publisher's HTTPS
    /// page (Microsoft publishes nothing else) — so `verify` succeeds on it
    /// (exit 0) while still naming the outcome `checksum-only`: no
    /// signature proves who published the hash. A digest found in a
    /// checksum file beside the image is not this: that file came from
    /// wherever the image came from.
    pub fn matches_given_digest(&self) -> bool {
        self.outcome == Outcome::ChecksumOnly
            && self.matched.as_ref().is_some_and(|m| m.command_line)
    }
}

/// An implanted MD5 and what the check found.
#[derive(Clone, Debug, Serialize)]
pub struct ImplantedCheck {
    #[serde(flatten)]
    pub fields: isomd5::Implanted,
    #[serde(flatten)]
    pub verdict: isomd5::Verdict,
}

impl SourceSummary {
    /// What the report says of one checksum reference read.
    fn of(s: &Source) -> Self {
        SourceSummary {
            source: s.name.clone(),
            entries: s.sums.entries.len(),
            ignored: s
                .sums
                .ignored
                .iter()
                .map(|i| format!("line {}: {}", i.line, i.reason))
                .collect(),
            clearsigned: s.clearsigned,
        }
    }
}

/// A checksum reference ready for matching.
struct Source {
    name: String,
    /// The checksum file's directory (listed paths are relative to it);
    /// `None` for hashes given on the command line.
    dir: Option<PathBuf>,
    sums: sums::Sums,
    clearsigned: bool,
    /// Indexes into the signature files that cover this source.
    signed_by: Vec<usize>,
}

/// The directory a checksum file's paths are relative to, made absolute.
fn dir_of(path: &Path) -> Option<PathBuf> {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.canonicalize().ok(),
        _ => Path::new(".").canonicalize().ok(),
    }
}

/// The image's path relative to `dir`, with `/` separators, when it lies
/// below it.
fn relative_to(image: Option<&Path>, dir: Option<&Path>) -> Option<String> {
    let rel = image?.strip_prefix(dir?).ok()?;
    let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
    Some(parts?.join("/")).filter(|r| !r.is_empty())
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        // A path that cannot be resolved is read (and fails) on its own.
        _ => false,
    }
}

/// The signature formats a signature file may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SigFormat {
    OpenPgp,
    /// minisign or signify (told apart when parsed).
    Ed25519,
    Unknown,
}

fn sig_format(bytes: &[u8]) -> SigFormat {
    if openpgp::looks_like_openpgp(bytes) {
        SigFormat::OpenPgp
    } else if ed25519::looks_like(bytes) {
        SigFormat::Ed25519
    } else {
        SigFormat::Unknown
    }
}

fn tool_name(t: ed25519::Tool) -> &'static str {
    match t {
        ed25519::Tool::Minisign => "minisign",
        ed25519::Tool::Signify => "signify",
    }
}

/// Every key given: OpenPGP keys and minisign/signify Ed25519 keys.
struct Keys {
    pgp: openpgp::Keyring,
    ed: Vec<ed25519::PublicKey>,
    /// Ed25519 keys given but left out by the pins.
    ed_excluded: Vec<ed25519::PublicKey>,
}

impl Keys {
    fn any(&self) -> bool {
        !self.pgp.is_empty() || !self.ed.is_empty()
    }

    /// Reads each `--key` file as a minisign/signify public key when it
    /// looks like one, else as OpenPGP; then applies the pins, refusing a
    /// pin no key has.
    fn load(paths: &[PathBuf], pins: &[String]) -> Result<Keys, Error> {
        let mut pgp_files = Vec::new();
        let mut ed = Vec::new();
        for path in paths {
            let bytes = read_small(path)?;
            if ed25519::looks_like(&bytes) {
                ed.push(ed25519::parse_public_key(&bytes).map_err(|reason| {
                    openpgp::KeyError::Parse {
                        path: path.clone(),
                        reason,
                    }
                })?);
            } else {
                pgp_files.push((path.clone(), bytes));
            }
        }
        let mut pgp = openpgp::Keyring::from_files(&pgp_files)?;
        let mut ed_excluded = Vec::new();
        if !pins.is_empty() {
            let mut wanted = Vec::new();
            for p in pins {
                let bare = p.trim().trim_start_matches("0x").to_ascii_uppercase();
                let bare = bare.trim_start_matches('0');
                if let Some(k) = ed.iter().find(|k| k.id_hex() == bare) {
                    wanted.push(k.id_hex());
                    continue;
                }
                // minisign key ids are 16 hex digits too: with no OpenPGP
                // key given, a pin that names no key is just not found.
                let pin = match openpgp::normalize_pin(p) {
                    Err(_) if pgp.is_empty() => {
                        return Err(openpgp::KeyError::PinNotFound(p.clone()).into())
                    }
                    r => r?,
                };
                if !pgp.has_pin(&pin) {
                    return Err(openpgp::KeyError::PinNotFound(p.clone()).into());
                }
                wanted.push(pin);
            }
            pgp.retain_pins(&wanted);
            let (keep, drop) = ed.into_iter().partition(|k| wanted.contains(&k.id_hex()));
            ed = keep;
            ed_excluded = drop;
        }
        Ok(Keys {
            pgp,
            ed,
            ed_excluded,
        })
    }

    /// Marks a signature by a key that was given but left out by the pins,
    /// so the report says so instead of "a key that was not given".
    fn mark_excluded(&self, c: &mut Checked) {
        if c.status != Status::UnknownKey {
            return;
        }
        let signer = self.pgp.excluded_signer(&c.issuer).or_else(|| {
            self.ed_excluded
                .iter()
                .find(|k| c.issuer.contains(&k.id_hex()))
                .map(|k| Signer {
                    fingerprint: k.id_hex(),
                    subkey: None,
                    user_id: None,
                })
        });
        if let Some(s) = signer {
            c.detail = Some("a given key, but the fingerprint pins leave it out".into());
            c.signer = Some(s);
            c.excluded = true;
        }
    }

    fn describe(&self) -> Vec<Signer> {
        let mut v = self.pgp.describe();
        v.extend(self.ed.iter().map(|k| Signer {
            fingerprint: k.id_hex(),
            subkey: None,
            user_id: None,
        }));
        v
    }
}

/// A signature over the image whose cryptographic check needs the image
/// bytes: done during (or after) the streaming pass.
struct Pending<'k> {
    file: usize,
    sig: pgp::packet::Signature,
    signing: openpgp::SigningKeyRef<'k>,
    signer: Signer,
}

/// True when there is anything to check the image against: references given
/// explicitly, or (with discovery on) checksum or signature files beside the
/// image. `write` checks automatically exactly when this holds.
pub fn has_references(req: &Request) -> bool {
    if !req.sums.is_empty() || !req.expected.is_empty() || !req.signatures.is_empty() {
        return true;
    }
    req.discover
        && (discover::sums_beside(&req.image).is_ok_and(|v| !v.is_empty())
            || !discover::signatures_of(&req.image).is_empty())
}

/// Runs the check described by `req`, reporting progress of the image pass
/// to `observer`.
pub fn check(req: &Request, observer: &dyn Observer) -> Result<Report, Error> {
    check_inner(req, observer, false, None, None)
}

/// [`check`]; a zip archive's member is `entry` (as `write` takes it),
/// for matching checksums of the image inside.
pub fn check_entry(
    req: &Request,
    entry: Option<&str>,
    observer: &dyn Observer,
) -> Result<Report, Error> {
    check_inner(req, observer, false, None, entry)
}

/// [`check`], also taking the SHA-256 of every block of the image in the
/// same pass ([`Report::checked_blocks`]), so that whatever is later read
/// from the image can be proved to be the bytes that were checked
/// (`docs/trust.md`, "Checking inside `write`").
pub fn check_pinned(req: &Request, observer: &dyn Observer) -> Result<Report, Error> {
    check_inner(req, observer, true, None, None)
}

/// [`check_pinned`], reading the image's bytes through `image`, a
/// descriptor of `req.image` the caller already opened (`bootstick::job`
/// opens the image once), instead of opening the path again: the check
/// then covers the very file that is planned and written, even if another
/// file took its name meanwhile. `req.image` still names it in the report
/// and is where checksum and signature files are looked for.
pub fn check_pinned_open(
    req: &Request,
    image: &File,
    observer: &dyn Observer,
) -> Result<Report, Error> {
    check_inner(req, observer, true, Some(image), None)
}

/// [`check_pinned_open`]; a zip archive's member is `entry`.
pub fn check_pinned_open_entry(
    req: &Request,
    image: &File,
    entry: Option<&str>,
    observer: &dyn Observer,
) -> Result<Report, Error> {
    check_inner(req, observer, true, Some(image), entry)
}

fn check_inner(
    req: &Request,
    observer: &dyn Observer,
    blocks: bool,
    image: Option<&File>,
    entry: Option<&str>,
) -> Result<Report, Error> {
    let mut notes = Vec::new();
    let mut sources: Vec<Source> = Vec::new();
    let mut sig_files: Vec<SignatureFile> = Vec::new();
    let keys = Keys::load(&req.keys, &req.fingerprints)?;

    let mut sums_files = req.sums.clone();
    if sums_files.is_empty() && req.expected.is_empty() && req.discover {
        sums_files = discover::sums_beside(&req.image).map_err(|source| Error::Io {
            path: req.image.parent().unwrap_or(Path::new(".")).to_path_buf(),
            source,
        })?;
    }
    // The image is opened once (here, or by the caller): every pass below
    // (the hashing pass, a signature over the image itself, a small image
    // read whole, the implanted MD5, the decoder) reads this descriptor, so
    // the check covers one file even if another replaces it under the same
    // name meanwhile.
    let opened;
    let image: &File = match image {
        Some(f) => f,
        None => {
            opened = open_input(&req.image, true)?;
            &opened
        }
    };
    let image_io = |source| Error::Io {
        path: req.image.clone(),
        source,
    };

    // Which file each explicit --sig signs, by its name.
    let mut image_sigs: Vec<PathBuf> = Vec::new();
    let mut sums_sigs: Vec<Vec<PathBuf>> = vec![Vec::new(); sums_files.len()];
    for sig in &req.signatures {
        let stem = sig.file_stem().map(|s| s.to_string_lossy().into_owned());
        match sums_files
            .iter()
            .position(|f| stem.as_deref() == Some(file_name(f).as_str()))
        {
            Some(i) => sums_sigs[i].push(sig.clone()),
            None => image_sigs.push(sig.clone()),
        }
    }
    if req.discover {
        for (i, f) in sums_files.iter().enumerate() {
            sums_sigs[i].extend(discover::signatures_of(f));
        }
        image_sigs.extend(discover::signatures_of(&req.image));
    }
    for list in sums_sigs.iter_mut().chain(std::iter::once(&mut image_sigs)) {
        let mut seen: Vec<PathBuf> = Vec::new();
        list.retain(|p| {
            let dup = seen.iter().any(|s| same_file(s, p));
            seen.push(p.clone());
            !dup
        });
    }

    for (path, sigs) in sums_files.iter().zip(&sums_sigs) {
        let (source, bytes, clearsigned) = load_sums(path, &keys)?;
        let mut signed_by = Vec::new();
        if let Some(c) = clearsigned {
            signed_by.push(sig_files.len());
            sig_files.push(c);
        }
        for sig in sigs {
            signed_by.push(sig_files.len());
            sig_files.push(check_detached_over_bytes(sig, path, &bytes, &keys)?);
        }
        sources.push(Source {
            signed_by,
            ..source
        });
    }
    if !req.expected.is_empty() {
        sources.push(Source {
            name: "command line".into(),
            dir: None,
            sums: sums::Sums {
                entries: req
                    .expected
                    .iter()
                    .map(|d| sums::Entry {
                        line: 0,
                        name: None,
                        candidates: vec![d.algorithm()],
                        digest: d.as_bytes().to_vec(),
                        size: None,
                    })
                    .collect(),
                ignored: Vec::new(),
            },
            clearsigned: false,
            signed_by: Vec::new(),
        });
    }
    for s in &sources {
        if s.sums.entries.is_empty() {
            notes.push(format!("{} lists no usable checksum", s.name));
        }
    }

    // Signatures over the image: decide what needs no data now, queue the
    // rest for the streaming pass.
    let image_display = req.image.display().to_string();
    let mut pending: Vec<Pending> = Vec::new();
    let mut pending_ed: Vec<(usize, ed25519::Signature)> = Vec::new();
    let mut image_sig_files = Vec::new();
    for path in &image_sigs {
        let idx = sig_files.len();
        image_sig_files.push(idx);
        let bytes = read_small(path)?;
        let mut file = SignatureFile {
            file: path.display().to_string(),
            covers: image_display.clone(),
            format: "openpgp",
            status: Status::Bad,
            signatures: Vec::new(),
            detail: None,
        };
        match sig_format(&bytes) {
            SigFormat::OpenPgp => match openpgp::parse_detached(&bytes) {
                Ok(sigs) => {
                    for sig in sigs {
                        match openpgp::plan(&sig, &keys.pgp, keys.any()) {
                            openpgp::Plan::Done(c) => file.signatures.push(c),
                            openpgp::Plan::Verify { signing, signer } => pending.push(Pending {
                                file: idx,
                                sig,
                                signing,
                                signer,
                            }),
                        }
                    }
                }
                Err(e) => file.detail = Some(e),
            },
            SigFormat::Ed25519 => match ed25519::parse_signature(&bytes) {
                Ok(sig) => {
                    file.format = tool_name(sig.tool);
                    pending_ed.push((idx, sig));
                }
                Err(e) => {
                    file.format = "minisign/signify";
                    file.detail = Some(e);
                }
            },
            SigFormat::Unknown => {
                file.format = "unknown";
                file.detail = Some("not a signature format bootstick knows".into());
            }
        }
        sig_files.push(file);
    }

    // Which entries of each checksum file are about the image: decided by
    // path and name before the image is read (src/trust/matching.rs).
    let image_name = file_name(&req.image);
    let image_abs = req.image.canonicalize().ok();
    // A compressed image's entries may name the image inside instead
    // (`decoded`): tried when none names the compressed file.
    let inner = decoded::probe(&req.image, image, entry);
    let inner_name = inner.as_ref().and_then(|i| i.name.clone());
    let (selections, about_inner): (Vec<Option<matching::Selection>>, Vec<bool>) = sources
        .iter()
        .map(|s| {
            let rel = relative_to(image_abs.as_deref(), s.dir.as_deref());
            if let Some(sel) = matching::select(&s.sums.entries, rel.as_deref(), &image_name) {
                return (Some(sel), false);
            }
            let Some(name) = &inner_name else {
                return (None, false);
            };
            let inner_rel = rel.map(|r| match r.rsplit_once('/') {
                Some((dir, _)) => format!("{dir}/{name}"),
                None => name.clone(),
            });
            let sel = matching::select(&s.sums.entries, inner_rel.as_deref(), name);
            let about = sel.is_some();
            (sel, about)
        })
        .unzip();
    // The image inside is decoded and hashed when a reference may be about
    // it: it names the decompressed name, is a bare hash, or names nothing.
    let need_inner = inner.is_some()
        && selections
            .iter()
            .zip(&about_inner)
            .any(|(sel, about)| *about || sel.as_ref().is_none_or(|s| s.by == matching::By::Given));
    // The algorithms needed: the strongest of the entries about the image;
    // for a file that names it nowhere, every non-weak algorithm it lists
    // (the image may have been renamed); SHA-256 for the write engine.
    let mut algorithms = vec![HashAlgorithm::Sha256];
    for (s, sel) in sources.iter().zip(&selections) {
        let e = &s.sums.entries;
        match sel {
            Some(sel) => {
                algorithms.extend(sel.checked.iter().flat_map(|&i| e[i].candidates.clone()))
            }
            None => algorithms.extend(
                e.iter()
                    .filter(|e| matching::strength(e) >= 2)
                    .flat_map(|e| e.candidates.clone()),
            ),
        }
    }
    if pending_ed.iter().any(|(_, s)| s.prehashed) {
        algorithms.push(HashAlgorithm::Blake2b512);
    }
    // An implanted MD5 counts when no checksum file names the image.
    let implanted = if selections.iter().all(Option::is_none) {
        isomd5::read_open(image)
    } else {
        None
    };
    let mut pending = pending.into_iter();
    let first = pending.next();
    let (size, digests, implanted_verdict, checked_blocks, first_result) = hash_image(
        &req.image,
        image,
        &algorithms,
        implanted.clone().map(isomd5::Checker::new),
        blocks,
        observer,
        |r| first.as_ref().map(|p| p.signing.verify(&p.sig, r)),
    )?;
    if let (Some(p), Some(result)) = (first, first_result) {
        sig_files[p.file]
            .signatures
            .push(openpgp::finish(&p.sig, p.signer, result));
    }
    let checked_blocks = checked_blocks.map(std::sync::Arc::new);
    let inner_digests = if need_inner {
        match decoded::digests(image, checked_blocks.as_ref(), entry, &algorithms, observer) {
            Ok(d) => d,
            Err(why) => {
                notes.push(format!(
                    "the image inside the compressed file could not be decompressed to check it: {why}"
                ));
                Vec::new()
            }
        }
    } else {
        Vec::new()
    };
    // Further candidates need their own pass, but only while their file has
    // no good signature yet (any good one suffices).
    for p in pending {
        let file = &mut sig_files[p.file];
        let checked = if file.signatures.iter().any(|c| c.status == Status::Good) {
            Checked {
                status: Status::Unchecked,
                detail: Some("not needed: another signature in this file is good".into()),
                ..openpgp::finish(&p.sig, p.signer, Ok(()))
            }
        } else {
            let f = rewound(image).map_err(image_io)?;
            let result = p
                .signing
                .verify(&p.sig, std::io::BufReader::with_capacity(stream::CHUNK, f));
            openpgp::finish(&p.sig, p.signer, result)
        };
        file.signatures.push(checked);
    }
    // minisign/signify over the image: from the BLAKE2b-512 of the pass, or
    // (pure Ed25519) from the image read whole when it is small enough.
    for (idx, sig) in pending_ed {
        let b2 = digests
            .iter()
            .find(|d| d.algorithm() == HashAlgorithm::Blake2b512);
        let whole;
        let data = match (sig.prehashed, b2) {
            (true, Some(d)) => ed25519::Data::Blake2b512(d.as_bytes(), size),
            _ if size <= ed25519::MAX_PURE_MESSAGE => {
                whole = read_whole(image, &req.image, size)?;
                ed25519::Data::Bytes(&whole)
            }
            _ => ed25519::Data::Blake2b512(&[], size),
        };
        let checked = ed25519::check(&sig, &keys.ed, keys.any(), data);
        sig_files[idx].signatures.push(checked);
    }
    // A file that could not be read as signatures (`detail`) has none, and
    // `file_status` of none is `Bad`, as it was made: one rule for all.
    for f in &mut sig_files {
        for c in &mut f.signatures {
            keys.mark_excluded(c);
        }
        f.status = signature::file_status(&f.signatures);
    }

    // Match the image against the entries about it (docs/trust.md,
    // *Matching*).
    let good_signers = |idxs: &[usize]| -> Vec<Signer> {
        idxs.iter()
            .flat_map(|&i| sig_files[i].signatures.iter())
            .filter(|c| c.status == Status::Good)
            .filter_map(|c| c.signer.clone())
            .collect()
    };
    let hit_in = |set: &[Digest], e: &sums::Entry| -> Option<HashAlgorithm> {
        e.candidates.iter().copied().find(|a| {
            set.iter()
                .any(|d| d.algorithm() == *a && d.as_bytes() == e.digest)
        })
    };
    let hit = |e: &sums::Entry| hit_in(&digests, e).or_else(|| hit_in(&inner_digests, e));
    let inner_hit = |e: &sums::Entry| hit_in(&inner_digests, e).is_some();
    let mut found: Vec<Listing> = Vec::new();
    let mut mismatches = Vec::new();
    for ((s, sel), &about) in sources.iter().zip(&selections).zip(&about_inner) {
        let signed_by = good_signers(&s.signed_by);
        let entries = &s.sums.entries;
        let listing = |i: usize, alg: HashAlgorithm, by: matching::By| Listing {
            source: s.name.clone(),
            command_line: s.dir.is_none(),
            line: (entries[i].line > 0).then_some(entries[i].line),
            name: entries[i].name.clone(),
            renamed: by == matching::By::Hash,
            algorithm: alg,
            expected: entries[i].hex(),
            signed_by: signed_by.clone(),
            by,
            same_name: Vec::new(),
            conflicts_with: None,
            decompressed: about || inner_hit(&entries[i]),
        };
        let conflict_listings = |pairs: &[(usize, usize)], by| {
            let mut v = Vec::new();
            for &(i, j) in pairs {
                for (a, b) in [(i, j), (j, i)] {
                    let mut l = listing(a, entries[a].candidates[0], by);
                    l.conflicts_with = Some(entries[b].line);
                    v.push(l);
                }
            }
            v
        };
        let path_of = |i: usize| {
            let n = entries[i].name.as_deref().unwrap_or_default();
            matching::normalize(n).unwrap_or_else(|| n.to_string())
        };
        let Some(sel) = sel else {
            // Named nowhere: the image may have been renamed.
            if let Some((i, alg)) = (0..entries.len())
                .filter(|&i| matching::strength(&entries[i]) >= 2)
                .find_map(|i| hit(&entries[i]).map(|a| (i, a)))
            {
                found.push(listing(i, alg, matching::By::Hash));
            }
            continue;
        };
        if !sel.weaker.is_empty() {
            let mut weaker: Vec<&str> = sel
                .weaker
                .iter()
                .flat_map(|&i| entries[i].candidates.iter().map(|a| a.name()))
                .collect();
            weaker.dedup();
            notes.push(format!(
                "{} also lists {} for the image; only the strongest listed ({}) was checked",
                s.name,
                weaker.join(", "),
                entries[sel.checked[0]].candidates[0]
            ));
        }
        if sel.by == matching::By::Name {
            // Several entries may share the name under other paths: one
            // whose hash is the image's is a match.
            let Some((h, alg)) = sel
                .checked
                .iter()
                .find_map(|&i| hit(&entries[i]).map(|a| (i, a)))
            else {
                mismatches.extend(
                    sel.checked
                        .iter()
                        .map(|&i| listing(i, entries[i].candidates[0], sel.by)),
                );
                continue;
            };
            let same_path: Vec<usize> = sel
                .checked
                .iter()
                .copied()
                .filter(|&i| path_of(i) == path_of(h))
                .collect();
            let pairs = matching::conflicts(entries, &same_path);
            if !pairs.is_empty() {
                mismatches.extend(conflict_listings(&pairs, sel.by));
                continue;
            }
            let mut l = listing(h, alg, sel.by);
            let mut paths = vec![path_of(h)];
            for &i in sel.checked.iter().chain(&sel.weaker) {
                if !paths.contains(&path_of(i)) {
                    paths.push(path_of(i));
                    l.same_name.push(SameName {
                        line: entries[i].line,
                        name: entries[i].name.clone().unwrap_or_default(),
                    });
                }
            }
            found.push(l);
            continue;
        }
        // By path (or a bare hash): every entry checked must match, and the
        // entries must agree with each other.
        let pairs = matching::conflicts(entries, &sel.checked);
        if !pairs.is_empty() {
            mismatches.extend(conflict_listings(&pairs, sel.by));
            continue;
        }
        let misses: Vec<Listing> = sel
            .checked
            .iter()
            .filter(|&&i| hit(&entries[i]).is_none())
            .map(|&i| listing(i, entries[i].candidates[0], sel.by))
            .collect();
        if misses.is_empty() {
            let i = sel.checked[0];
            found.push(listing(
                i,
                hit(&entries[i]).unwrap_or(entries[i].candidates[0]),
                sel.by,
            ));
        } else {
            mismatches.extend(misses);
        }
    }
    // The implanted MD5 (no checksum file named the image).
    let implanted_md5 = implanted.zip(implanted_verdict).map(|(fields, verdict)| {
        let l = Listing {
            source: IMPLANTED_SOURCE.into(),
            command_line: false,
            line: None,
            name: None,
            renamed: false,
            algorithm: HashAlgorithm::Md5,
            expected: fields.md5.clone(),
            signed_by: Vec::new(),
            by: matching::By::Implanted,
            same_name: Vec::new(),
            conflicts_with: None,
            decompressed: false,
        };
        if verdict.matches {
            found.push(l);
        } else {
            mismatches.push(l);
        }
        ImplantedCheck { fields, verdict }
    });
    // The best match: signed with a strong hash first, then by path (or
    // given) over name over hash alone, then the strongest algorithm (a
    // folder with SHA256SUMS and SHA512SUMS is checked and named by SHA-512).
    let rank = |l: &Listing| {
        (
            l.signed_by.is_empty() || l.algorithm.is_weak(),
            match l.by {
                matching::By::Given | matching::By::Path => 0,
                matching::By::Name => 1,
                matching::By::Hash => 2,
                matching::By::Implanted => 3,
            },
            std::cmp::Reverse(match l.algorithm {
                HashAlgorithm::Sha512 | HashAlgorithm::Blake2b512 => 3,
                HashAlgorithm::Sha256 => 2,
                HashAlgorithm::Sha1 => 1,
                HashAlgorithm::Md5 => 0,
            }),
        )
    };
    found.sort_by_key(rank);
    let matched = found.into_iter().next();
    if let Some(m) = &matched {
        let at = m.line.map(|l| format!(" line {l}")).unwrap_or_default();
        let name = m.name.as_deref().unwrap_or_default();
        match m.by {
            matching::By::Hash if m.decompressed => notes.push(format!(
                "the decompressed image matched the checksum listed for {name:?}"
            )),
            matching::By::Hash => notes.push(format!(
                "the image matched the checksum listed for {name:?}: it was renamed"
            )),
            matching::By::Name if !m.same_name.is_empty() => {
                notes.push(format!(
                "the image matched {}{at} ({name:?}) by its file name; {} other {} the name: {}",
                m.source,
                m.same_name.len(),
                if m.same_name.len() == 1 { "entry shares" } else { "entries share" },
                m.same_name
                    .iter()
                    .map(|o| format!("line {} {:?}", o.line, o.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            }
            matching::By::Implanted => notes.push(IMPLANTED_NOTE.into()),
            _ => {}
        }
        if m.algorithm.is_weak() && m.by != matching::By::Implanted {
            notes.push(format!(
                "the image is listed with {} only: that finds corruption, not tampering, so even a signed list does not make it verified",
                m.algorithm
            ));
        }
    }
    for m in mismatches.iter().filter(|m| m.conflicts_with.is_some()) {
        notes.push(format!(
            "{} line {} lists {:?} with another {} digest than line {}: the file contradicts itself",
            m.source,
            m.line.unwrap_or_default(),
            m.name.as_deref().unwrap_or_default(),
            m.algorithm,
            m.conflicts_with.unwrap_or_default()
        ));
    }
    if let Some(c) = implanted_md5.as_ref().filter(|c| !c.verdict.matches) {
        notes.push(match (c.verdict.short, c.verdict.bad_fragment) {
            (true, _) => "the implanted MD5 covers more bytes than the image has: a truncated download".into(),
            (_, Some(f)) => format!(
                "the implanted MD5 differs; fragment sum {f} of {} is the first that does not match",
                c.fields.fragment_count
            ),
            _ => "the implanted MD5 differs: the image is corrupt".into(),
        });
    }

    let image_signers = good_signers(&image_sig_files);
    let mut signers: Vec<Signer> = image_signers.clone();
    if let Some(m) = matched.as_ref().filter(|m| !m.algorithm.is_weak()) {
        signers.extend(m.signed_by.iter().cloned());
    }
    signers.dedup();
    let unchecked = sig_files.iter().any(|f| f.status == Status::Unchecked);
    if unchecked {
        notes.push("signatures were found but not checked: no signing key was given".into());
    }
    let outcome = outcome_of(
        &sig_files,
        !mismatches.is_empty(),
        !signers.is_empty(),
        matched.is_some(),
        !sources.is_empty(),
    );
    if outcome != Outcome::Verified {
        signers.clear();
    }

    Ok(Report {
        outcome,
        image: req.image.clone(),
        size,
        checked_sha256: digests
            .iter()
            .find(|d| d.algorithm() == HashAlgorithm::Sha256)
            .cloned(),
        checked_blocks,
        digests: digests
            .iter()
            .map(|d| (d.algorithm().name().to_string(), d.to_hex()))
            .collect(),
        decompressed_digests: inner_digests
            .iter()
            .map(|d| (d.algorithm().name().to_string(), d.to_hex()))
            .collect(),
        matched,
        mismatches,
        sources: sources.iter().map(SourceSummary::of).collect(),
        signatures: sig_files,
        signers,
        keys: keys.describe(),
        notes,
        implanted_md5,
    })
}

/// A check's outcome from what it found, in the order `docs/trust.md`
/// gives: a bad signature file, then a listed digest that differs, then a
/// trusted signer, then the signatures' worst verdict, then a checksum
/// match alone, then unchecked signatures, then files that do not list
/// the image, then nothing at all.
fn outcome_of(
    sig_files: &[SignatureFile],
    mismatched: bool,
    signed: bool,
    matched: bool,
    sources: bool,
) -> Outcome {
    let worst = |statuses: &[Status]| {
        sig_files
            .iter()
            .map(|f| f.status)
            .filter(|s| statuses.contains(s))
            .min()
    };
    let unchecked = sig_files.iter().any(|f| f.status == Status::Unchecked);
    if worst(&[Status::Bad]).is_some() {
        Outcome::BadSignature
    } else if mismatched {
        Outcome::Mismatch
    } else if signed {
        Outcome::Verified
    } else if let Some(s) = worst(&[
        Status::RevokedKey,
        Status::ExpiredKey,
        Status::Weak,
        Status::UnknownKey,
    ]) {
        match s {
            Status::RevokedKey => Outcome::RevokedKey,
            Status::ExpiredKey => Outcome::ExpiredKey,
            Status::Weak => Outcome::WeakSignature,
            _ => Outcome::UnknownKey,
        }
    } else if matched {
        Outcome::ChecksumOnly
    } else if unchecked {
        Outcome::UnknownKey
    } else if sources {
        Outcome::NotListed
    } else {
        Outcome::NoReference
    }
}

/// What a file type is, in words.
fn kind_name(t: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else {
        "not a regular file"
    }
}

/// Opens an input without ever blocking, and refuses what is not a
/// regular file (or, with `block_ok`, a block device: an image may be read
/// from a stick). A plain `open` of a FIFO without a writer waits forever;
/// with `O_NONBLOCK` it returns at once, `fstat` on the opened file then
/// says what it is (no race with a rename), and the flag is cleared again
/// before reading.
/// A descriptor of the same open file, at its start. (It shares the file
/// offset with `f`; the readers that come after read by position.)
fn rewound(f: &File) -> std::io::Result<File> {
    use std::io::{Seek, SeekFrom};
    let mut c = f.try_clone()?;
    c.seek(SeekFrom::Start(0))?;
    Ok(c)
}

pub fn open_input(path: &Path, block_ok: bool) -> Result<File, Error> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(io)?;
    let t = f.metadata().map_err(io)?.file_type();
    if !(t.is_file() || (block_ok && t.is_block_device())) {
        return Err(Error::NotAFile {
            path: path.to_path_buf(),
            kind: kind_name(t),
        });
    }
    let flags = rustix::fs::fcntl_getfl(&f).map_err(|e| io(e.into()))?;
    rustix::fs::fcntl_setfl(&f, flags - rustix::fs::OFlags::NONBLOCK).map_err(|e| io(e.into()))?;
    Ok(f)
}

/// Reads a reference file whole, refusing anything implausibly large and
/// anything that is not a regular file ([`open_input`]).
pub fn read_small(path: &Path) -> Result<Vec<u8>, Error> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let f = open_input(path, false)?;
    let size = f.metadata().map_err(io)?.len();
    if size > MAX_REFERENCE_FILE {
        return Err(Error::TooLarge {
            path: path.to_path_buf(),
            size,
            limit: MAX_REFERENCE_FILE,
        });
    }
    // Bounded by the limit, not by `size`: a file that grows after the
    // `fstat` is read up to the limit, never without bound; what was read
    // is what is checked.
    let mut buf = Vec::new();
    f.take(MAX_REFERENCE_FILE)
        .read_to_end(&mut buf)
        .map_err(io)?;
    Ok(buf)
}

/// Reads a checksum file. A clearsigned one yields only its signed text, and
/// the verdict on its signatures.
fn load_sums(path: &Path, keys: &Keys) -> Result<(Source, Vec<u8>, Option<SignatureFile>), Error> {
    let bytes = read_small(path)?;
    if ed25519::looks_like(&bytes) {
        return Ok(load_signify_embedded(path, bytes, keys));
    }
    let text = String::from_utf8(bytes.clone()).map_err(|e| Error::NotText {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let base = file_name(path);
    let name = path.display().to_string();
    let source = |text: &str, clearsigned: bool| Source {
        name: name.clone(),
        dir: dir_of(path),
        sums: sums::parse_file(&base, text),
        clearsigned,
        signed_by: Vec::new(),
    };
    // A file that holds a clearsigned header anywhere is read only as a
    // clearsigned file: text put before or after the block is not signed,
    // and makes the whole file bad rather than an unsigned list.
    if !openpgp::is_clearsigned(&text) {
        return Ok((source(&text, false), bytes, None));
    }
    let mut file = SignatureFile {
        file: name.clone(),
        covers: name.clone(),
        format: "openpgp-clearsigned",
        status: Status::Bad,
        signatures: Vec::new(),
        detail: None,
    };
    match openpgp::parse_clearsigned(&text) {
        Ok((signed, sigs)) => {
            file.signatures = sigs
                .iter()
                .map(|s| openpgp::check_bytes(s, &keys.pgp, keys.any(), signed.as_bytes()))
                .collect();
            file.status = signature::file_status(&file.signatures);
            Ok((source(&signed, true), bytes, Some(file)))
        }
        Err(e) => {
            // Nothing in a clearsigned file that does not parse is trusted.
            file.detail = Some(e);
            Ok((source("", true), bytes, Some(file)))
        }
    }
}

/// A signify `-e` file used as a checksum file: the embedded message is the
/// list, and only it counts once the signature over it verifies.
fn load_signify_embedded(
    path: &Path,
    bytes: Vec<u8>,
    keys: &Keys,
) -> (Source, Vec<u8>, Option<SignatureFile>) {
    let name = path.display().to_string();
    let mut file = SignatureFile {
        file: name.clone(),
        covers: name.clone(),
        format: "signify",
        status: Status::Bad,
        signatures: Vec::new(),
        detail: None,
    };
    let mut text = String::new();
    match ed25519::parse_signature(&bytes) {
        Ok(sig) => match (&sig.embedded, sig.tool) {
            (Some(message), ed25519::Tool::Signify) => match std::str::from_utf8(message) {
                Ok(t) => {
                    text = t.to_string();
                    file.signatures = vec![ed25519::check(
                        &sig,
                        &keys.ed,
                        keys.any(),
                        ed25519::Data::Bytes(message),
                    )];
                    file.status = signature::file_status(&file.signatures);
                }
                Err(e) => file.detail = Some(format!("the embedded message is not text: {e}")),
            },
            _ => file.detail = Some("a signature file without an embedded checksum list".into()),
        },
        Err(e) => file.detail = Some(e),
    }
    let source = Source {
        name,
        dir: dir_of(path),
        sums: sums::parse_file(&file_name(path), &text),
        clearsigned: false,
        signed_by: Vec::new(),
    };
    (source, bytes, Some(file))
}

/// Reads a small image whole (a pure Ed25519 signature needs the message).
fn read_whole(image: &File, path: &Path, size: u64) -> Result<Vec<u8>, Error> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut buf = Vec::with_capacity(size as usize);
    // Bounded by the limit, as in `read_small`.
    rewound(image)
        .map_err(io)?
        .take(ed25519::MAX_PURE_MESSAGE)
        .read_to_end(&mut buf)
        .map_err(io)?;
    Ok(buf)
}

/// Checks a detached signature file over a checksum file's bytes.
fn check_detached_over_bytes(
    sig_path: &Path,
    covers: &Path,
    data: &[u8],
    keys: &Keys,
) -> Result<SignatureFile, Error> {
    let bytes = read_small(sig_path)?;
    let mut file = SignatureFile {
        file: sig_path.display().to_string(),
        covers: covers.display().to_string(),
        format: "openpgp",
        status: Status::Bad,
        signatures: Vec::new(),
        detail: None,
    };
    match sig_format(&bytes) {
        SigFormat::OpenPgp => match openpgp::parse_detached(&bytes) {
            Ok(sigs) => {
                file.signatures = sigs
                    .iter()
                    .map(|s| openpgp::check_bytes(s, &keys.pgp, keys.any(), data))
                    .collect();
                file.status = signature::file_status(&file.signatures);
            }
            Err(e) => file.detail = Some(e),
        },
        SigFormat::Ed25519 => match ed25519::parse_signature(&bytes) {
            Ok(sig) => {
                file.format = tool_name(sig.tool);
                file.signatures = vec![ed25519::check(
                    &sig,
                    &keys.ed,
                    keys.any(),
                    ed25519::Data::Bytes(data),
                )];
                file.status = signature::file_status(&file.signatures);
            }
            Err(e) => {
                file.format = "minisign/signify";
                file.detail = Some(e);
            }
        },
        SigFormat::Unknown => {
            file.format = "unknown";
            file.detail = Some("not a signature format bootstick knows".into());
        }
    }
    Ok(file)
}

/// Streams the image once through every hasher; `consume` may read the
/// stream first (an OpenPGP signature check pulling the image through its
/// own hasher), and whatever it leaves is drained.
type Hashed<T> = (
    u64,
    Vec<Digest>,
    Option<isomd5::Verdict>,
    Option<crate::image::checked::BlockDigests>,
    T,
);

fn hash_image<T>(
    path: &Path,
    image: &File,
    algorithms: &[HashAlgorithm],
    implanted: Option<isomd5::Checker>,
    blocks: bool,
    observer: &dyn Observer,
    consume: impl FnOnce(&mut stream::HashingReader<'_, File>) -> T,
) -> Result<Hashed<T>, Error> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let f = rewound(image).map_err(io)?;
    let total = f.metadata().map_err(io)?.len();
    observer.event(&Event::PhaseStarted {
        phase: Phase::Check,
        total,
    });
    let mut r =
        stream::HashingReader::new(f, algorithms, total, observer).with_implanted(implanted);
    if blocks {
        r = r.with_blocks();
    }
    let t = consume(&mut r);
    r.drain().map_err(io)?;
    let size = r.bytes_read();
    let blocks = r.take_blocks();
    observer.event(&Event::PhaseFinished {
        phase: Phase::Check,
    });
    let verdict = r.implanted();
    Ok((size, r.finish(), verdict, blocks, t))
}
