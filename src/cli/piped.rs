//! `bootstick write - TARGET` (and a FIFO or an `http(s)://` URL as
//! IMAGE): what of `write`'s flags apply to a stream read once
//! (docs/cli.md, "Pipes and standard input", "Downloads"). The stream
//! itself is the library's (`image::pipe`, `image::download`,
//! `write::write_piped`).

use std::path::PathBuf;

use super::exit::{Exit, Failure};
use bootstick::hash::Digest;
use bootstick::job::{self, CheckPolicy, Image};
use bootstick::trust;

/// `write`'s flags for an image given as a URL.
#[derive(Debug, clap::Args)]
pub struct DownloadArgs {
    /// When IMAGE is a URL: also keep the download as FILE (written as it
    /// streams, kept only once the stick was written and verified). An
    /// existing FILE is replaced only with --yes.
    #[arg(long, value_name = "FILE")]
    pub save: Option<PathBuf>,
    /// When IMAGE is an https:// URL: also trust the CA certificates in
    /// FILE (PEM), besides the system's (for a server with a private CA).
    #[arg(long, value_name = "FILE")]
    pub ca_cert: Vec<PathBuf>,
}

/// Opens IMAGE: a download (an `http://`/`https://` URL, its published
/// checksum files checked first: [`job::check_download`]) or a stream
/// (`-`, a FIFO) with its `--size` and digest ([`expected`]), else the
/// file (where `--size` is refused: a file's length is its own). The
/// second value is true for a stream, the third a download's source check.
/// `replace`: `--yes`, which lets `--save` replace an existing file.
pub fn open(
    path: &std::path::Path,
    size: Option<u64>,
    req: &trust::Request,
    policy: CheckPolicy,
    dl: &DownloadArgs,
    replace: bool,
) -> Result<(Image, bool, Option<trust::Report>), Failure> {
    let url = bootstick::image::download::is_url(path);
    if !url && (dl.save.is_some() || !dl.ca_cert.is_empty()) {
        return Err(Failure::new(
            Exit::Usage,
            anyhow::anyhow!(
                "--save and --ca-cert are for an image given as an http:// or https:// URL; {} is not one",
                path.display()
            ),
        ));
    }
    if url {
        if size.is_some() {
            return Err(Failure::new(
                Exit::Usage,
                anyhow::anyhow!("--size is for an image read from a pipe; a download's length is the server's (Content-Length): drop --size"),
            ));
        }
        let options = bootstick::image::download::Options {
            ca_certs: dl.ca_cert.clone(),
        };
        // The response first (a 404 or a web page is refused at once);
        // then a digest given is checked as the download streams, or the
        // checksum files published beside it (and their signatures) are
        // checked before its body is read further, and the digest they
        // list is enforced as it streams.
        let response = Image::request_download(path, &options).map_err(super::advice::failure)?;
        let (checked, expected) = match req.expected.is_empty() {
            true => {
                job::check_download(path, &options, req, policy).map_err(super::advice::failure)?
            }
            false => (None, expected(req, policy)?),
        };
        let save = dl
            .save
            .as_deref()
            .map(|f| bootstick::image::download::Save::create(f, replace))
            .transpose()
            .map_err(|e| super::advice::failure(e.into()))?;
        let image =
            Image::open_download(path, response, expected, save).map_err(super::advice::failure)?;
        return Ok((image, true, checked));
    }
    if job::is_stream(path) {
        let expected = expected(req, policy)?;
        let image = Image::open_stream(path, size, expected).map_err(super::advice::failure)?;
        return Ok((image, true, None));
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
    Ok((
        Image::open(path).map_err(super::advice::failure)?,
        false,
        None,
    ))
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
