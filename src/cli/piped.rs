//! `bootstick write - TARGET` (and a FIFO as IMAGE): what of `write`'s
//! flags apply to a stream read once (docs/cli.md, "Pipes and standard
//! input"). The stream itself is the library's (`image::pipe`,
//! `write::write_piped`).

use super::exit::{Exit, Failure};
use bootstick::hash::Digest;
use bootstick::job::{self, CheckPolicy, Image};
use bootstick::trust;

/// Opens IMAGE: a stream (`-`, a FIFO) with its `--size` and digest
/// ([`expected`]), else the file (where `--size` is refused: a file's
/// length is its own). The second value is true for a stream.
pub fn open(
    path: &std::path::Path,
    size: Option<u64>,
    req: &trust::Request,
    policy: CheckPolicy,
) -> Result<(Image, bool), Failure> {
    if job::is_stream(path) {
        let expected = expected(req, policy)?;
        let image = Image::open_stream(path, size, expected).map_err(super::advice::failure)?;
        return Ok((image, true));
    }
    if size.is_some() {
        return Err(Failure::new(
            Exit::Usage,
            anyhow::anyhow!(
                "--size is for an image read from a pipe (- or a FIFO); {} is a file, whose length is its own: drop --size",
                path.display()
            ),
        ));
    }
    Ok((Image::open(path).map_err(super::advice::failure)?, false))
}

/// A stream's digest, from `--sha256`/`--sha512`: checked as it passes,
/// enforced before its first MiB is written. Checksum and signature files
/// cannot be matched by name against a stream, and signatures are not
/// checked for streams yet: asking for them is refused before the stream
/// is read, as is `--verify-source` with no digest.
fn expected(req: &trust::Request, policy: CheckPolicy) -> Result<Option<Digest>, Failure> {
    let usage = |what: &str| {
        Failure::new(
            Exit::Usage,
            anyhow::anyhow!(
                "{what} cannot be used with an image read from a pipe, which is read once: give its --sha256 or --sha512 (checked as it streams), or save it to a file first"
            ),
        )
    };
    if !req.sums.is_empty() {
        return Err(usage("--sums"));
    }
    if !req.signatures.is_empty() || !req.keys.is_empty() || policy.require_signature {
        return Err(usage("--sig, --key and --require-signature"));
    }
    if req.expected.len() > 1 {
        return Err(usage("more than one of --sha256 and --sha512"));
    }
    if policy.required && req.expected.is_empty() {
        return Err(Failure::new(
            Exit::NoReference,
            anyhow::anyhow!(
                "source check: no-reference: --verify-source needs the stream's --sha256 or --sha512; nothing was written"
            ),
        ));
    }
    Ok(req.expected.first().cloned())
}
