//! What an image is checked against (the flags `verify` and `write`
//! share), and the sentences that explain a source check's outcome. Not a
//! command: both commands use it.

use super::exit::{Exit, Failure};
use bootstick::hash::{Digest, HashAlgorithm};
use bootstick::trust::matching::By;
use bootstick::trust::signature::{Checked, SignatureFile, Status};
use bootstick::trust::{self, Outcome, Report};
use std::path::PathBuf;

/// What an image is checked against; shared by `verify` and `write`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct References {
    /// A checksum file (SHA256SUMS, CHECKSUM, x.iso.sha256, b2sums.txt, …);
    /// repeatable. Without it, checksum files beside the image are used.
    #[arg(long, value_name = "FILE")]
    pub sums: Vec<PathBuf>,
    /// The image's expected SHA-256, in hex.
    #[arg(long, value_name = "HEX")]
    pub sha256: Option<String>,
    /// The image's expected SHA-512, in hex.
    #[arg(long, value_name = "HEX")]
    pub sha512: Option<String>,
    /// A signature file (SHA256SUMS.gpg, x.iso.sig, …); repeatable. It signs
    /// the file its name minus the extension names (a --sums file or the
    /// image); other names are taken to sign the image. Signature files
    /// beside the image and the checksum files are found without it.
    #[arg(long, value_name = "FILE")]
    pub sig: Vec<PathBuf>,
    /// A public key whose signatures are trusted: OpenPGP (a key or keyring,
    /// armored or binary, as gpg exports it), minisign (`.pub`) or signify
    /// (`.pub`); repeatable.
    #[arg(long, value_name = "FILE")]
    pub key: Vec<PathBuf>,
    /// Trust only the OpenPGP --key keys with this fingerprint (the whole 40
    /// or 64 hex digits; short and long key IDs are refused); repeatable.
    #[arg(long, value_name = "FPR")]
    pub fingerprint: Vec<String>,
    /// Do not look for checksum or signature files beside the image.
    #[arg(long)]
    pub no_discover: bool,
}

/// The exit code of each outcome (`exit::outcome`).
pub fn exit_for(outcome: Outcome) -> Exit {
    super::exit::outcome(outcome)
}

fn digest_arg(alg: HashAlgorithm, hex: &str, flag: &str) -> Result<Digest, Failure> {
    Digest::from_hex(alg, hex.trim()).ok_or_else(|| {
        Failure::new(
            Exit::Usage,
            anyhow::anyhow!(
                "--{flag} wants {} hex digits, got {:?}",
                alg.digest_len() * 2,
                hex
            ),
        )
    })
}

/// Builds the library request from the shared flags (also used by `write`).
pub fn request(image: PathBuf, r: &References) -> Result<trust::Request, Failure> {
    let mut expected = Vec::new();
    if let Some(h) = &r.sha256 {
        expected.push(digest_arg(HashAlgorithm::Sha256, h, "sha256")?);
    }
    if let Some(h) = &r.sha512 {
        expected.push(digest_arg(HashAlgorithm::Sha512, h, "sha512")?);
    }
    Ok(trust::Request {
        image,
        sums: r.sums.clone(),
        expected,
        signatures: r.sig.clone(),
        keys: r.key.clone(),
        fingerprints: r.fingerprint.clone(),
        discover: !r.no_discover,
    })
}

/// The first signature (with its file) whose status is `status`, and why.
fn first_with(
    report: &Report,
    status: Status,
) -> Option<(&SignatureFile, Option<&Checked>, Option<&str>)> {
    report.signatures.iter().find_map(|f| {
        let c = f.signatures.iter().find(|c| c.status == status);
        if c.is_none() && f.status != status {
            return None;
        }
        let why = c.and_then(|c| c.detail.as_deref()).or(f.detail.as_deref());
        Some((f, c, why))
    })
}

/// The outcome as printed: its name, and for a match on a checksum that
/// only finds corruption, what it is worth.
pub fn outcome_text(report: &Report) -> String {
    match &report.matched {
        Some(m) if report.outcome == Outcome::ChecksumOnly && m.by == By::Implanted => {
            format!("{} ({})", report.outcome.name(), trust::IMPLANTED_NOTE)
        }
        Some(m) if report.outcome == Outcome::ChecksumOnly && m.algorithm.is_weak() => format!(
            "{} ({} only: finds corruption, not tampering)",
            report.outcome.name(),
            m.algorithm
        ),
        _ => report.outcome.name().to_string(),
    }
}

/// One sentence saying why an outcome other than `verified` is not success,
/// naming the file and the reason that decided it.
pub fn failure_message(report: &Report) -> String {
    let keys_given = !report.keys.is_empty();
    // A download's check comes before its bytes (`trust::announced`): its
    // listing is known, the match is enforced as it streams.
    let matches = if report.digests.is_empty() {
        "the image is listed (its digest is enforced as it streams)"
    } else {
        "the checksum matches"
    };
    match report.outcome {
        Outcome::Verified => "verified".into(),
        Outcome::ChecksumOnly if report.matched.as_ref().is_some_and(|m| m.by == By::Implanted) => "no checksum file lists the image, but its implanted MD5 matches: that finds corruption, not tampering".into(),
        Outcome::ChecksumOnly if report.matched.as_ref().is_some_and(|m| m.algorithm.is_weak()) => "the image is listed with MD5 or SHA-1 only: that finds corruption, not tampering, so no signature can make it verified".into(),
        Outcome::ChecksumOnly if !keys_given => format!("{matches}, but no trusted signature covers it (give --key to check signatures)"),
        Outcome::ChecksumOnly if report.signatures.is_empty() => format!("{matches}, but no signature file was given or found beside the checksum file or the image, so the keys given with --key vouch for nothing here"),
        Outcome::ChecksumOnly => format!("{matches}, but no good signature by a key given with --key covers the listing that matched"),
        Outcome::Mismatch if report.mismatches.iter().any(|m| m.conflicts_with.is_some()) => "a checksum file lists the image's path twice with different digests: it contradicts itself".into(),
        Outcome::Mismatch if report.mismatches.iter().all(|m| m.by == By::Implanted) => "the image's implanted MD5 differs: the image is corrupt or truncated".into(),
        Outcome::Mismatch => "the image's hash differs from the published one: the download is corrupt or was tampered with".into(),
        Outcome::NotListed => format!(
            "no checksum file lists this image by name or by hash (looked at {})",
            looked_at(report)
        ),
        Outcome::BadSignature => match first_with(report, Status::Bad) {
            Some((f, _, Some(why))) => format!("a signature is bad: {}: {why}", f.file),
            _ => "a signature does not verify: the checksum file or signature was altered".into(),
        },
        Outcome::UnknownKey if !keys_given => "signatures were found, but none could be checked: give the signing key with --key".into(),
        Outcome::UnknownKey => {
            let excluded = report
                .signatures
                .iter()
                .flat_map(|f| f.signatures.iter().map(move |c| (f, c)))
                .find(|(_, c)| c.excluded);
            match excluded {
                Some((f, c)) => format!(
                    "{} is signed by {}, which was given with --key but excluded by --fingerprint",
                    f.covers,
                    c.signer.as_ref().map(signer_text).unwrap_or_default()
                ),
                None => {
                    let issuers: Vec<String> = report
                        .signatures
                        .iter()
                        .flat_map(|f| f.signatures.iter())
                        .filter(|c| c.status == Status::UnknownKey)
                        .flat_map(|c| c.issuer.iter().cloned())
                        .collect();
                    if issuers.is_empty() {
                        "no signature is by a key given with --key".into()
                    } else {
                        format!(
                            "no signature is by a key given with --key (the signatures name {})",
                            issuers.join(", ")
                        )
                    }
                }
            }
        }
        Outcome::WeakSignature => "the signatures use SHA-1 or MD5, which are refused".into(),
        Outcome::ExpiredKey => match first_with(report, Status::ExpiredKey) {
            Some((f, _, Some(why))) => format!("{}: {why}", f.file),
            _ => "the signing key (or the signature itself) has expired".into(),
        },
        Outcome::RevokedKey => "the signing key is revoked".into(),
        Outcome::NoReference => "nothing to check against: give --sums, --sha256 or put the checksum files beside the image".into(),
    }
}

/// Why `write` refuses an image after its source check, with the flag that
/// made the check mandatory when that is what refused it.
pub fn write_refusal(report: &Report, require_signature: bool) -> String {
    match report.outcome {
        Outcome::NoReference if require_signature => "nothing signed covers the image: no checksum or signature file was given or found beside it, and --require-signature needs a good signature by a --key key".into(),
        Outcome::NoReference => "nothing covers the image: no checksum or signature file was given or found beside it, and --verify-source needs one".into(),
        Outcome::ChecksumOnly if require_signature => format!("{}; --require-signature needs a good signature", failure_message(report)),
        _ => failure_message(report),
    }
}

/// The checksum files a check read, for messages.
pub fn looked_at(report: &Report) -> String {
    report
        .sources
        .iter()
        .map(|s| s.source.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// One line saying what vouched for the image (`write`'s summary).
pub fn check_summary(report: &Report) -> String {
    if report.outcome == Outcome::NotListed {
        return format!(
            "Source check: not-listed ({} does not list this image; nothing vouched for it).",
            looked_at(report)
        );
    }
    let via = report
        .matched
        .as_ref()
        .map(|m| match m.line {
            Some(l) => format!(" via {} line {l}", m.source),
            None => format!(" via {}", m.source),
        })
        .unwrap_or_default();
    let by = report
        .signers
        .iter()
        .map(|s| match &s.user_id {
            Some(u) => format!("{} {u:?}", s.fingerprint),
            None => s.fingerprint.clone(),
        })
        .collect::<Vec<_>>()
        .join(", ");
    let by = if by.is_empty() {
        String::new()
    } else {
        format!(", signed by {by}")
    };
    let inner = if report.matched.as_ref().is_some_and(|m| m.decompressed) {
        " (of the decompressed image)"
    } else {
        ""
    };
    format!("Source check: {}{inner}{via}{by}.", report.outcome.name())
}

/// A signer for people: fingerprint, subkey, user ID.
pub fn signer_text(s: &bootstick::trust::signature::Signer) -> String {
    let sub = s
        .subkey
        .as_deref()
        .map(|k| format!(" (subkey {k})"))
        .unwrap_or_default();
    match &s.user_id {
        Some(u) => format!("{}{sub} {u:?}", s.fingerprint),
        None => format!("{}{sub}", s.fingerprint),
    }
}
