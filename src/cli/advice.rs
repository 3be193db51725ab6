//! Turning a job's typed error into what the user reads: the library's
//! message, plus what to do next in terms of this command line's flags
//! (the library never names them). The exit code comes from the one map in
//! `exit.rs`.

use super::exit::{self, Failure};
use bootstick::devices;
use bootstick::image::{archive, compressed};
use bootstick::job::Error;

/// A download's failure, with what to do next where a flag helps.
fn download(code: exit::Exit, d: bootstick::image::download::Error) -> Failure {
    use bootstick::image::download::Error as D;
    match d {
        d @ D::Tls { .. } => Failure::new(
            code,
            anyhow::anyhow!("{d}; for a server with a private CA, give its certificate with --ca-cert FILE (PEM)"),
        ),
        d @ D::SaveExists { .. } => Failure::new(
            code,
            anyhow::anyhow!("{d}: give --yes to replace it, or another --save FILE"),
        ),
        d => Failure::new(code, d),
    }
}

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
        Error::Trust(t) => trust(t),
        e @ Error::Layout {
            source: bootstick::layout::from_iso::Error::NoEfiLoader,
            ..
        } => Failure::new(
            code,
            anyhow::anyhow!(
                "{:#}; use --raw to copy it byte for byte anyway (it will likely not boot)",
                anyhow::Error::new(e)
            ),
        ),
        e @ (Error::Inspect { .. }
        | Error::Layout { .. }
        | Error::Duplicate(_)
        | Error::Compressed { .. }
        | Error::NotADisk { .. }
        | Error::Stream(_)
        | Error::StreamTaken
        | Error::StreamToSeveral { .. }
        | Error::Panicked) => Failure::new(code, e),
        e @ Error::Bmap { .. } => Failure::new(
            code,
            anyhow::anyhow!(
                "{:#}; nothing was written (--no-bmap writes the whole image, --bmap FILE names another block map)",
                anyhow::Error::new(e)
            ),
        ),
        e @ Error::BmapNotByteCopy { .. } => Failure::new(
            code,
            anyhow::anyhow!(
                "{e}; nothing was written (--raw copies it byte for byte through the block map, --no-bmap writes it without one)"
            ),
        ),
        Error::Download(d) => download(code, d),
        e @ Error::SaveIsTarget { .. } => Failure::new(
            code,
            anyhow::anyhow!("{e}: give --save a file that is not a TARGET"),
        ),
        e @ Error::StreamCheck { .. } => Failure::new(
            code,
            anyhow::anyhow!("{e}: give one --sha256 or --sha512 (and --no-discover is implied)"),
        ),
        e @ Error::StreamLayout { .. } => Failure::new(
            code,
            anyhow::anyhow!(
                "{e}, or give --raw to copy it byte for byte (it will likely not boot)"
            ),
        ),
        e @ Error::CompressedLayout {
            asked: true,
            needed: false,
            ..
        } => Failure::new(
            code,
            anyhow::anyhow!(
                "{e} (xz -dk, zstd -d, gzip -dk or bzip2 -dk IMAGE), or drop --layout to copy it byte for byte"
            ),
        ),
        // --layout and --raw exclude each other: the byte copy replaces it.
        e @ Error::CompressedLayout { asked: true, .. } => Failure::new(
            code,
            anyhow::anyhow!(
                "{e} (xz -dk, zstd -d, gzip -dk or bzip2 -dk IMAGE), or replace --layout with --raw to copy the decompressed ISO byte for byte (it will likely not boot)"
            ),
        ),
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
        Error::RawAndLayout => Failure::new(
            code,
            anyhow::anyhow!("--raw and --layout ask for opposite things: give one"),
        ),
        e @ Error::LayoutOfNonOptical { .. } => Failure::new(
            code,
            anyhow::anyhow!("{e}; drop --layout (it is copied byte for byte)"),
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

/// The failure to report for a source-check input error: a key pin's
/// message starts with the pin, and the option it was given with is named
/// here.
pub fn trust(e: bootstick::trust::Error) -> Failure {
    use bootstick::trust::{openpgp::KeyError, Error as E};
    let code = exit::trust_error(&e);
    match e {
        E::Key(k @ (KeyError::PinNotFound(_) | KeyError::BadPin(_) | KeyError::KeyId { .. })) => {
            let hint = match k {
                KeyError::PinNotFound(_) => "; give the key it names with --key",
                _ => "",
            };
            Failure::new(code, anyhow::anyhow!("--fingerprint {k}{hint}"))
        }
        e => Failure::new(code, e),
    }
}

/// The failure to report for a device error.
pub fn device(e: devices::Error) -> Failure {
    let code = exit::device_error(&e);
    match e {
        // The library says "force it"; the flag is the command line's.
        devices::Error::BacksLoop { .. } => Failure::new(code, anyhow::anyhow!("{e} with --force")),
        devices::Error::BackingInUse {
            path,
            loop_device,
            rule,
        } => {
            let rule = device(*rule);
            Failure::new(
                code,
                anyhow::anyhow!(
                    "{} is the backing file of the loop device {}: {:#}",
                    path.display(),
                    loop_device.display(),
                    rule.error
                ),
            )
        }
        devices::Error::NotRemovable { .. } => Failure::new(
            code,
            anyhow::anyhow!("{e}; if you really mean to erase it, add --force"),
        ),
        devices::Error::Mounted { .. } => Failure::new(
            code,
            anyhow::anyhow!("{e}; add --unmount to unmount them first, or unmount them yourself"),
        ),
        e => Failure::new(code, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// The library states the fact; the flag that overrides it is named
    /// here, once, for this command line.
    #[test]
    fn device_refusals_gain_the_flag_that_overrides_them() {
        let not_removable = devices::Error::NotRemovable {
            path: PathBuf::from("/dev/nvme0n1"),
            transport: "nvme",
        };
        assert!(!not_removable.to_string().contains("--"), "{not_removable}");
        let f = device(not_removable);
        assert!(
            format!("{:#}", f.error).ends_with("add --force"),
            "{:#}",
            f.error
        );

        let mounted = devices::Error::Mounted {
            path: PathBuf::from("/dev/sdb"),
            mountpoints: "/media/stick".into(),
        };
        assert!(!mounted.to_string().contains("--"), "{mounted}");
        let f = device(mounted);
        let text = format!("{:#}", f.error);
        assert!(
            text.contains("/media/stick") && text.contains("add --unmount"),
            "{text}"
        );
    }
}
