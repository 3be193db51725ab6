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

pub mod discover;
pub mod stream;
pub mod sums;

use crate::events::{Event, Observer, Phase};
use crate::hash::{Digest, HashAlgorithm};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

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
    #[error("cannot read {path}: {source}")]
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
    /// Look for checksum files beside the image when none are given.
    pub discover: bool,
}

/// Where a checksum came from and how the image relates to it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Listing {
    /// The checksum file, or `command line`.
    pub source: String,
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
    /// The listing the image matched, when one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matched: Option<Listing>,
    /// Listings that name the image but carry another hash.
    pub mismatches: Vec<Listing>,
    pub sources: Vec<SourceSummary>,
    /// Things worth knowing that did not decide the outcome.
    pub notes: Vec<String>,
    /// The SHA-256 of the image bytes that were checked; `write` passes it to
    /// the engine so an image that changes before it is written is caught.
    #[serde(skip)]
    pub checked_sha256: Option<Digest>,
}

/// A checksum reference ready for matching.
struct Source {
    name: String,
    sums: sums::Sums,
    clearsigned: bool,
}

/// Runs the check described by `req`, reporting progress of the image pass
/// to `observer`.
pub fn check(req: &Request, observer: &dyn Observer) -> Result<Report, Error> {
    let mut notes = Vec::new();
    let mut sources = Vec::new();

    let mut sums_files = req.sums.clone();
    if sums_files.is_empty() && req.expected.is_empty() && req.discover {
        sums_files = discover::sums_beside(&req.image).map_err(|source| Error::Io {
            path: req.image.parent().unwrap_or(Path::new(".")).to_path_buf(),
            source,
        })?;
    }
    for path in &sums_files {
        sources.push(load_sums(path)?);
    }
    if !req.expected.is_empty() {
        sources.push(Source {
            name: "command line".into(),
            sums: sums::Sums {
                entries: req
                    .expected
                    .iter()
                    .map(|d| sums::Entry {
                        line: 0,
                        name: None,
                        candidates: vec![d.algorithm()],
                        digest: d.as_bytes().to_vec(),
                    })
                    .collect(),
                ignored: Vec::new(),
            },
            clearsigned: false,
        });
    }
    for s in &sources {
        if s.sums.entries.is_empty() {
            notes.push(format!("{} lists no usable checksum", s.name));
        }
    }

    // Every algorithm any entry may use, plus SHA-256 for the write engine.
    let mut algorithms = vec![HashAlgorithm::Sha256];
    for s in &sources {
        for e in &s.sums.entries {
            algorithms.extend(e.candidates.iter().copied());
        }
    }
    let (size, digests) = hash_image(&req.image, &algorithms, observer)?;

    let image_name = req
        .image
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut matched: Option<Listing> = None;
    let mut mismatches = Vec::new();
    for s in &sources {
        for e in &s.sums.entries {
            let hit = e.candidates.iter().find(|a| {
                digests
                    .iter()
                    .any(|d| d.algorithm() == **a && d.as_bytes() == e.digest)
            });
            let listing = |alg: HashAlgorithm, renamed: bool| Listing {
                source: s.name.clone(),
                line: (e.line > 0).then_some(e.line),
                name: e.name.clone(),
                renamed,
                algorithm: alg,
                expected: e.hex(),
            };
            let names_image = e.name.is_none() || e.names(&image_name);
            match hit {
                Some(&alg) if matched.as_ref().is_none_or(|m| m.renamed && names_image) => {
                    matched = Some(listing(alg, !names_image));
                }
                Some(_) => {}
                None if names_image => mismatches.push(listing(e.candidates[0], false)),
                None => {}
            }
        }
    }
    if let Some(m) = matched.as_ref().filter(|m| m.renamed) {
        notes.push(format!(
            "the image matched the checksum listed for {:?}: it was renamed",
            m.name.as_deref().unwrap_or_default()
        ));
    }

    let outcome = if !mismatches.is_empty() {
        Outcome::Mismatch
    } else if matched.is_some() {
        Outcome::ChecksumOnly
    } else if !sources.is_empty() {
        Outcome::NotListed
    } else {
        Outcome::NoReference
    };

    Ok(Report {
        outcome,
        image: req.image.clone(),
        size,
        checked_sha256: digests
            .iter()
            .find(|d| d.algorithm() == HashAlgorithm::Sha256)
            .cloned(),
        digests: digests
            .iter()
            .map(|d| (d.algorithm().name().to_string(), d.to_hex()))
            .collect(),
        matched,
        mismatches,
        sources: sources
            .iter()
            .map(|s| SourceSummary {
                source: s.name.clone(),
                entries: s.sums.entries.len(),
                ignored: s
                    .sums
                    .ignored
                    .iter()
                    .map(|i| format!("line {}: {}", i.line, i.reason))
                    .collect(),
                clearsigned: s.clearsigned,
            })
            .collect(),
        notes,
    })
}

/// Reads a reference file whole, refusing anything implausibly large.
pub fn read_small(path: &Path) -> Result<Vec<u8>, Error> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let f = File::open(path).map_err(io)?;
    let size = f.metadata().map_err(io)?.len();
    if size > MAX_REFERENCE_FILE {
        return Err(Error::TooLarge {
            path: path.to_path_buf(),
            size,
            limit: MAX_REFERENCE_FILE,
        });
    }
    let mut buf = Vec::new();
    f.take(MAX_REFERENCE_FILE + 1)
        .read_to_end(&mut buf)
        .map_err(io)?;
    Ok(buf)
}

fn load_sums(path: &Path) -> Result<Source, Error> {
    let bytes = read_small(path)?;
    let text = String::from_utf8(bytes).map_err(|e| Error::NotText {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let hint = sums::hint_from_file_name(&file_name);
    let (text, clearsigned) = match cleartext(&text) {
        Some(Ok(signed)) => (signed, true),
        Some(Err(reason)) => {
            return Err(Error::NotText {
                path: path.to_path_buf(),
                reason: format!("malformed clearsigned file: {reason}"),
            })
        }
        None => (text, false),
    };
    Ok(Source {
        name: path.display().to_string(),
        sums: sums::parse(&text, hint),
        clearsigned,
    })
}

/// The signed text of a clearsigned file (`-----BEGIN PGP SIGNED
/// MESSAGE-----`), or `None` when `text` is not one. Only this text counts:
/// lines before the header or after the signature are not signed.
fn cleartext(text: &str) -> Option<Result<String, String>> {
    if !text
        .trim_start()
        .starts_with("-----BEGIN PGP SIGNED MESSAGE-----")
    {
        return None;
    }
    Some(
        pgp::composed::CleartextSignedMessage::from_string(text.trim_start())
            .map(|(msg, _)| msg.signed_text())
            .map_err(|e| e.to_string()),
    )
}

fn hash_image(
    path: &Path,
    algorithms: &[HashAlgorithm],
    observer: &dyn Observer,
) -> Result<(u64, Vec<Digest>), Error> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let f = File::open(path).map_err(io)?;
    let total = f.metadata().map_err(io)?.len();
    observer.event(&Event::PhaseStarted {
        phase: Phase::Check,
        total,
    });
    let mut r = stream::HashingReader::new(f, algorithms, total, observer);
    r.drain().map_err(io)?;
    let size = r.bytes_read();
    observer.event(&Event::PhaseFinished {
        phase: Phase::Check,
    });
    Ok((size, r.finish()))
}
