//! Checking what a stream's publisher says about it **before** the stream
//! is read: a download's checksum files and their signatures
//! (docs/trust.md, "Downloads").
//!
//! # Why it is built this way
//!
//! - **A stream cannot be hashed first**, so the order of a file's check
//!   is turned around: the checksum files (found at the URL's directory
//!   and mirrored into a local directory by the caller, or given) are read
//!   and their signatures verified now, the entry about the image is
//!   chosen by name now, and its digest becomes the one the stream must
//!   have at its end ([`Announced::expected`]), enforced by the write
//!   (the boot area held back until it matched). The [`Report`]'s outcome
//!   is what holds **if** that digest then matches: a mismatch at the end
//!   fails the write instead (`write::Error::StreamDigest`).
//! - **The same rules as beside a file**: the same file names, the same
//!   parsers and signature checks (`load_sums`, the detached checks), the
//!   same matching by name (`matching::select`) including the image inside
//!   a compressed one, the same order of outcomes (`outcome_of`).
//! - **What needs the image's bytes is not done**: a signature over the
//!   image itself (`x.iso.sig`) is noted, not checked (it would need the
//!   whole stream before the first byte is written), and a list that names
//!   the image nowhere cannot be matched by hash (the image may have been
//!   renamed): it is `not-listed`.

use std::path::Path;

use super::{
    check_detached_over_bytes, discover, file_name, load_sums, matching, outcome_of, same_file,
    Error, Keys, Listing, Outcome, Report, Request, Signer, Source, SourceSummary, Status,
};
use crate::hash::Digest;

/// What the published files say about a stream, checked before it is read.
#[derive(Clone, Debug)]
pub struct Announced {
    /// The outcome that holds once the stream's digest matched `expected`.
    pub report: Report,
    /// The digest the stream must have (of the bytes as read, or of the
    /// image inside a compressed one), when an entry names the image.
    pub expected: Option<Digest>,
}

/// Checks the checksum files about `req.image` (given in `req.sums`, or
/// found beside it when `req.discover`) and their signatures, without
/// reading the image: `req.image` names where it would lie, nothing is
/// read from it. `req.expected` is not used (a digest given for a stream
/// is checked as it passes, with no file to read).
pub fn check_announced(req: &Request) -> Result<Announced, Error> {
    let mut notes = Vec::new();
    let keys = Keys::load(&req.keys, &req.fingerprints)?;
    let mut sums_files = req.sums.clone();
    if sums_files.is_empty() && req.discover {
        sums_files = discover::sums_beside(&req.image).map_err(|source| Error::Io {
            path: req.image.parent().unwrap_or(Path::new(".")).to_path_buf(),
            source,
        })?;
    }
    // Which checksum file each explicit signature signs, by its name; one
    // that signs none of them signs the image.
    let mut image_sigs = Vec::new();
    let mut sums_sigs = vec![Vec::new(); sums_files.len()];
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
    for list in sums_sigs.iter_mut() {
        let mut seen: Vec<std::path::PathBuf> = Vec::new();
        list.retain(|p| {
            let dup = seen.iter().any(|s| same_file(s, p));
            seen.push(p.clone());
            !dup
        });
    }
    if !image_sigs.is_empty() {
        notes.push(format!(
            "{} signs the image itself, which a stream can be checked against only after it was written: not checked (a signed checksum file is)",
            image_sigs
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let mut sources: Vec<Source> = Vec::new();
    let mut sig_files = Vec::new();
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
    for s in &sources {
        if s.sums.entries.is_empty() {
            notes.push(format!("{} lists no usable checksum", s.name));
        }
    }
    for f in &mut sig_files {
        for c in &mut f.signatures {
            keys.mark_excluded(c);
        }
        f.status = super::signature::file_status(&f.signatures);
    }
    let good_signers = |idxs: &[usize]| -> Vec<Signer> {
        idxs.iter()
            .flat_map(|&i| sig_files[i].signatures.iter())
            .filter(|c| c.status == Status::Good)
            .filter_map(|c| c.signer.clone())
            .collect()
    };

    // The entries about the image, by name: the image's, else (compressed)
    // the image inside's.
    let image_name = file_name(&req.image);
    let inner_name = discover::inner_name(&image_name);
    let mut found: Vec<Listing> = Vec::new();
    let mut mismatches: Vec<Listing> = Vec::new();
    for s in &sources {
        let entries = &s.sums.entries;
        let same_dir = req.sums.is_empty();
        let select = |name: &str| {
            let rel = same_dir.then_some(name);
            matching::select(entries, rel, name)
        };
        let (sel, decompressed) = match select(&image_name) {
            Some(sel) => (sel, false),
            None => match inner_name.as_deref().and_then(select) {
                Some(sel) => (sel, true),
                None => continue,
            },
        };
        let signed_by = good_signers(&s.signed_by);
        let listing = |i: usize| Listing {
            source: s.name.clone(),
            command_line: false,
            line: (entries[i].line > 0).then_some(entries[i].line),
            name: entries[i].name.clone(),
            renamed: false,
            algorithm: entries[i].candidates[0],
            expected: entries[i].hex(),
            signed_by: signed_by.clone(),
            by: sel.by,
            same_name: Vec::new(),
            conflicts_with: None,
            decompressed,
        };
        // A stream is checked against one digest: the entries about it
        // (by path, or sharing its name) must agree.
        let first = sel.checked[0];
        let disagree: Vec<usize> = sel
            .checked
            .iter()
            .copied()
            .filter(|&i| {
                entries[i].digest != entries[first].digest
                    || entries[i].candidates != entries[first].candidates
            })
            .collect();
        if !disagree.is_empty() {
            notes.push(format!(
                "{} lists {:?} with {} different digests: a stream is checked against one",
                s.name,
                entries[first].name.as_deref().unwrap_or(&image_name),
                disagree.len() + 1
            ));
            mismatches.push(listing(first));
            mismatches.extend(disagree.into_iter().map(|i| {
                let mut l = listing(i);
                l.conflicts_with = Some(entries[first].line);
                l
            }));
            continue;
        }
        found.push(listing(first));
    }
    // Signed first, then the strongest algorithm.
    found.sort_by_key(|l| {
        (
            l.signed_by.is_empty() || l.algorithm.is_weak(),
            std::cmp::Reverse(l.algorithm.digest_len()),
        )
    });
    // Two files listing the image with the same algorithm must agree.
    if let Some(best) = found.first() {
        for other in &found[1..] {
            if other.algorithm == best.algorithm && other.expected != best.expected {
                notes.push(format!(
                    "{} and {} list different {} digests for the image",
                    best.source, other.source, best.algorithm
                ));
                mismatches.push(other.clone());
            }
        }
    }
    let matched = match mismatches.is_empty() {
        true => found.into_iter().next(),
        false => None,
    };
    if let Some(m) = &matched {
        if m.algorithm.is_weak() {
            notes.push(format!(
                "the image is listed with {} only: that finds corruption, not tampering, so even a signed list does not make it verified",
                m.algorithm
            ));
        }
    }
    let mut signers: Vec<Signer> = matched
        .as_ref()
        .filter(|m| !m.algorithm.is_weak())
        .map(|m| m.signed_by.clone())
        .unwrap_or_default();
    signers.dedup();
    if sig_files.iter().any(|f| f.status == Status::Unchecked) {
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
    let expected = matched
        .as_ref()
        .and_then(|m| Digest::from_hex(m.algorithm, &m.expected));
    let report = Report {
        outcome,
        image: req.image.clone(),
        size: 0,
        digests: Default::default(),
        decompressed_digests: Default::default(),
        matched,
        mismatches,
        sources: sources.iter().map(SourceSummary::of).collect(),
        signatures: sig_files,
        signers,
        keys: keys.describe(),
        notes,
        implanted_md5: None,
        checked_sha256: None,
        checked_blocks: None,
    };
    Ok(Announced { report, expected })
}

impl Report {
    /// Renames the files it names: every `from` prefix (a local mirror's
    /// directory) becomes `to` (the URL's directory), so the report says
    /// where the files were published.
    pub fn relabel(&mut self, from: &str, to: &str) {
        let fix = |s: &mut String| {
            if let Some(rest) = s.strip_prefix(from) {
                *s = format!("{to}{rest}");
            }
            if s.contains(from) {
                *s = s.replace(from, to);
            }
        };
        let mut image = self.image.to_string_lossy().into_owned();
        fix(&mut image);
        self.image = image.into();
        for l in self.matched.iter_mut().chain(self.mismatches.iter_mut()) {
            fix(&mut l.source);
        }
        for s in &mut self.sources {
            fix(&mut s.source);
        }
        for f in &mut self.signatures {
            fix(&mut f.file);
            fix(&mut f.covers);
        }
        for n in &mut self.notes {
            fix(n);
        }
    }
}
