//! `bootstick verify IMAGE`: check an image's checksum and signature the way
//! its distribution publishes them, and say which file, line and signer
//! vouched for it. Each outcome has its own exit code (`docs/cli.md`).

use super::exit::{Exit, Failure};
use bootstick::events::{Event, Observer};
use bootstick::hash::{Digest, HashAlgorithm};
use bootstick::trust::matching::By;
use bootstick::trust::signature::{Checked, SignatureFile, Status};
use bootstick::trust::{self, Outcome, Report};
use std::io::IsTerminal;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The image to check.
    pub image: PathBuf,
    #[command(flatten)]
    pub references: References,
    /// Fail (exit 10) unless a trusted signature covers the image, also when
    /// it matches the hash given with --sha256/--sha512.
    #[arg(long)]
    pub require_signature: bool,
    /// Print the report as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

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

/// Runs the check with a progress bar on an interactive stderr.
pub fn check(req: &trust::Request, quiet: bool) -> Result<Report, Failure> {
    let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "checking {bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let observer = |e: &Event| {
        if let (Some(b), Event::Progress { done, total, .. }) = (&bar, e) {
            b.set_length(*total);
            b.set_position(*done);
        }
    };
    let result = trust::check(req, &observer as &dyn Observer);
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    result.map_err(|e| Failure::new(super::exit::trust_error(&e), e))
}

/// Human-readable report lines.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    line(format!("outcome: {}", outcome_text(report)));
    if report.matches_given_digest() {
        line(
            "the image matches the hash given on the command line; no signature \
             proves who published that hash (--require-signature makes this a failure)"
                .into(),
        );
    }
    line(format!(
        "image: {} ({} bytes)",
        report.image.display(),
        report.size
    ));
    for (alg, hex) in &report.digests {
        line(format!("{alg}: {hex}"));
    }
    if let Some(m) = &report.matched {
        let at = m.line.map(|l| format!(" line {l}")).unwrap_or_default();
        let name = m
            .name
            .as_deref()
            .map(|n| format!(" as {n:?}"))
            .unwrap_or_default();
        let by = match m.by {
            By::Path => ", by path",
            By::Name => ", by file name",
            By::Hash => ", by hash only: renamed",
            By::Given | By::Implanted => "",
        };
        line(format!(
            "checksum: {}{at}{name} ({}{by})",
            m.source, m.algorithm
        ));
    }
    if let Some(c) = &report.implanted_md5 {
        line(format!(
            "implanted md5: {} over {} bytes ({}){}",
            c.fields.md5,
            c.fields.covered,
            if c.verdict.matches {
                "matches"
            } else {
                "DIFFERS"
            },
            c.verdict
                .bad_fragment
                .map(|f| format!(", first bad fragment {f}"))
                .unwrap_or_default()
        ));
    }
    for f in &report.signatures {
        let detail = f
            .detail
            .as_deref()
            .map(|d| format!(": {d}"))
            .unwrap_or_default();
        line(format!(
            "signature file: {} ({}, over {}): {}{detail}",
            f.file,
            f.format,
            f.covers,
            status_name(f.status)
        ));
        for c in &f.signatures {
            let who = c
                .signer
                .as_ref()
                .map(signer_text)
                .unwrap_or_else(|| format!("issuer {}", c.issuer.join(" ")));
            let detail = c
                .detail
                .as_deref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default();
            line(format!(
                "  {} {} by {who}{detail}",
                status_name(c.status),
                c.hash
            ));
        }
    }
    for s in &report.signers {
        line(format!("signed by: {}", signer_text(s)));
    }
    for m in &report.mismatches {
        let at = m.line.map(|l| format!(" line {l}")).unwrap_or_default();
        let conflict = m
            .conflicts_with
            .map(|l| format!(" (contradicts line {l})"))
            .unwrap_or_default();
        line(format!(
            "MISMATCH: {}{at} lists {} {}{conflict}",
            m.source, m.algorithm, m.expected
        ));
    }
    for s in &report.sources {
        for i in &s.ignored {
            line(format!("note: {}: {i}", s.source));
        }
    }
    for n in &report.notes {
        line(format!("note: {n}"));
    }
    out
}

fn status_name(s: bootstick::trust::signature::Status) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn signer_text(s: &bootstick::trust::signature::Signer) -> String {
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
    match report.outcome {
        Outcome::Verified => "verified".into(),
        Outcome::ChecksumOnly if report.matched.as_ref().is_some_and(|m| m.by == By::Implanted) => "no checksum file lists the image, but its implanted MD5 matches: that finds corruption, not tampering".into(),
        Outcome::ChecksumOnly if report.matched.as_ref().is_some_and(|m| m.algorithm.is_weak()) => "the image is listed with MD5 or SHA-1 only: that finds corruption, not tampering, so no signature can make it verified".into(),
        Outcome::ChecksumOnly if !keys_given => "the checksum matches, but no trusted signature covers it (give --key to check signatures)".into(),
        Outcome::ChecksumOnly if report.signatures.is_empty() => "the checksum matches, but no signature file was given or found beside the checksum file or the image, so the keys given with --key vouch for nothing here".into(),
        Outcome::ChecksumOnly => "the checksum matches, but no good signature by a key given with --key covers the listing that matched".into(),
        Outcome::Mismatch if report.mismatches.iter().any(|m| m.conflicts_with.is_some()) => "a checksum file lists the image's path twice with different digests: it contradicts itself".into(),
        Outcome::Mismatch if report.mismatches.iter().all(|m| m.by == By::Implanted) => "the image's implanted MD5 differs: the image is corrupt or truncated".into(),
        Outcome::Mismatch => "the image's hash differs from the published one: the download is corrupt or was tampered with".into(),
        Outcome::NotListed => "no checksum file lists this image by name or by hash".into(),
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

pub fn run(args: Args) -> Result<(), Failure> {
    // --json: a `start` line, then the report in the `result` line
    // (docs/cli.md), also when the outcome is a failure.
    let out = super::render::Renderer::report(args.json);
    out.start("verify", serde_json::json!({ "image": &args.image }));
    let req = request(args.image, &args.references)?;
    let report = check(&req, args.json)?;
    let doc = serde_json::to_value(&report).map_err(|e| Failure::new(Exit::Internal, e))?;
    if !args.json {
        print!("{}", render(&report));
    }
    let code = if report.matches_given_digest() && !args.require_signature {
        Exit::Ok
    } else {
        exit_for(report.outcome)
    };
    match code {
        Exit::Ok => {
            out.document(doc);
            Ok(())
        }
        code => Err(Failure::new(
            code,
            anyhow::anyhow!("{}: {}", outcome_text(&report), failure_message(&report)),
        )
        .with_fields(doc)),
    }
}
