//! `bootstick verify IMAGE`: check an image's checksum and signature the way
//! its distribution publishes them, and say which file, line and signer
//! vouched for it. Each outcome has its own exit code (`docs/cli.md`).

use super::exit::{Exit, Failure};
use super::references::{
    exit_for, failure_message, outcome_text, request, signer_text, References,
};
use bootstick::events::{Event, Observer};
use bootstick::trust::matching::By;
use bootstick::trust::{self, Report};
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
    result.map_err(super::advice::trust)
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
    if report
        .signatures
        .iter()
        .any(|f| f.status == bootstick::trust::signature::Status::Unchecked)
    {
        line("note: give the signing key with --key to check the signatures".into());
    }
    out
}

fn status_name(s: bootstick::trust::signature::Status) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

pub fn run(args: Args) -> Result<(), Failure> {
    // --json: a `start` line, then the report in the `result` line
    // (docs/cli.md), also when the outcome is a failure.
    let out = super::render::Renderer::report(args.json);
    out.start("verify", &super::render::ImageStart { image: &args.image });
    let req = request(args.image, &args.references)?;
    let report = check(&req, args.json)?;
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
            out.document(&report);
            Ok(())
        }
        code => Err(Failure::new(
            code,
            anyhow::anyhow!("{}: {}", outcome_text(&report), failure_message(&report)),
        )
        .with_fields(&report)),
    }
}
