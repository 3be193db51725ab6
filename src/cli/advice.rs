//! Turning a job's typed error into what the user reads: the library's
//! message, plus what to do next in terms of this command line's flags
//! (the library never names them). The exit code comes from the one map in
//! `exit.rs`.

use super::exit::{self, Failure};
use bootstick::devices;
use bootstick::image::{archive, compressed};
use bootstick::job::Error;

/// The failure to report for a job error.
pub fn failure(e: Error) -> Failure {
    let code = exit::job_error(&e);
    match e {
        Error::Compressed {
            path,
            source: compressed::Error::Zip(z @ (archive::Error::SeveralImages { .. } | archive::Error::NoSuchEntry { .. })),
        } => Failure::new(
            code,
            anyhow::anyhow!("{}: {z}; give --entry NAME", path.display()),
        ),
        Error::Write(w) => Failure::write(w),
        Error::Device(d) => device(d),
        Error::Image(i) => Failure::new(code, i),
        Error::Trust(t) => Failure::new(code, t),
        e @ (Error::Inspect { .. }
        | Error::Layout { .. }
        | Error::Duplicate(_)
        | Error::Compressed { .. }
        | Error::Panicked) => Failure::new(code, e),
        e @ Error::CompressedLayout { .. } => Failure::new(
            code,
            anyhow::anyhow!(
                "{e} (xz -dk, zstd -d, gzip -dk or bzip2 -dk IMAGE), or give --raw to copy the decompressed ISO byte for byte (it will likely not boot)"
            ),
        ),
        Error::Truncated { truncation, .. } => Failure::new(
            code,
            anyhow::anyhow!("{truncation}; download the image again"),
        ),
        Error::TableForRaw { forced } => Failure::new(
            code,
            anyhow::anyhow!(
                "--table mbr applies to built layouts only, and this image is copied byte for byte ({}), keeping its own partition table; drop --table",
                if forced { "--raw" } else { "`bootstick inspect` decides raw" }
            ),
        ),
        Error::SourceCheck {
            report,
            require_signature,
        } => Failure::new(
            code,
            anyhow::anyhow!(
                "source check: {}: {}; nothing was written",
                report.outcome.name(),
                super::references::write_refusal(&report, require_signature)
            ),
        ),
        Error::Declined { summary, asked } => Failure::new(
            code,
            anyhow::anyhow!("{}", super::target::declined(&summary, asked)),
        ),
        e @ Error::EntryForNonArchive { .. } => {
            Failure::new(code, anyhow::anyhow!("{e}; drop --entry"))
        }
        e @ Error::NamedTwice { .. } => {
            Failure::new(code, anyhow::anyhow!("{e}; name each target once"))
        }
        Error::Refused { refused, of } => {
            let n = refused.len();
            let lines: Vec<String> = refused
                .into_iter()
                .map(|r| format!("{}: {:#}", r.target.display(), failure(r.error).error))
                .collect();
            Failure::new(
                code,
                anyhow::anyhow!(
                    "{n} of {of} targets refused, nothing was written:\n  {}",
                    lines.join("\n  ")
                ),
            )
        }
    }
}

/// The failure to report for a device error.
pub fn device(e: devices::Error) -> Failure {
    let code = exit::device_error(&e);
    match e {
        // The library says "force it"; the flag is the command line's.
        devices::Error::BacksLoop { .. } => Failure::new(code, anyhow::anyhow!("{e} with --force")),
        e => Failure::new(code, e),
    }
}
