//! What `write` and `inspect` do with a compressed IMAGE (docs/cli.md,
//! "Compressed images"): the library decodes (`image::compressed`); this
//! maps its errors to exit codes and says what a compressed image cannot be.

use std::path::Path;
use std::sync::Arc;

use serde_json::json;

use super::exit::{Exit, Failure};
use bootstick::image::compressed::{Compressed, DecodedImage};
use bootstick::image::ByteSource;

/// `src` as a compressed image, when its magic bytes say it is one.
pub fn probe(src: &Arc<dyn ByteSource>, path: &Path) -> Result<Option<Compressed>, Failure> {
    Compressed::probe(src.clone()).map_err(|e| fail(e, path))
}

fn fail(e: bootstick::image::compressed::Error, path: &Path) -> Failure {
    Failure::new(
        super::exit::compressed_error(&e),
        anyhow::Error::new(e).context(format!("cannot read {}", path.display())),
    )
}

/// The decompressed image for the readers that decide (random access
/// through re-decoding, `image::compressed::DecodedImage`). With `measure`
/// (`inspect`) an image whose format does not record its size is decoded
/// once first to learn it, and every byte can be read; without (`write`,
/// which learns the size while writing) only the first
/// `compressed::DECIDE_WINDOW` bytes are decoded to decide.
pub fn decoded(c: &Compressed, path: &Path, measure: bool) -> Result<Arc<dyn ByteSource>, Failure> {
    use bootstick::image::compressed::DECIDE_WINDOW;
    Ok(if measure {
        let len = c.measure().map_err(|e| fail(e, path))?;
        Arc::new(DecodedImage::with_len(c.clone(), len))
    } else {
        Arc::new(DecodedImage::window(c.clone(), DECIDE_WINDOW))
    })
}

/// A compressed ISO that needs a built layout is refused: the layout reads
/// the ISO's files in any order, which a compressed stream cannot give
/// without decompressing it to disk first (docs/cli.md says why that is
/// left to the user).
pub fn refuse_layout(c: &Compressed, path: &Path) -> Failure {
    Failure::new(
        Exit::BadInput,
        anyhow::anyhow!(
            "{} is a {}-compressed ISO that needs a built layout (it is not hybrid), and a layout is built only from an uncompressed ISO: decompress it first (e.g. `{}`) and write the .iso, or give --raw to copy the decompressed ISO byte for byte (it will likely not boot)",
            path.display(),
            c.format(),
            match c.format() {
                bootstick::image::compressed::Format::Xz => "xz -dk IMAGE",
                bootstick::image::compressed::Format::Zstd => "zstd -d IMAGE",
                bootstick::image::compressed::Format::Gzip => "gzip -dk IMAGE",
                bootstick::image::compressed::Format::Bzip2 => "bzip2 -dk IMAGE",
            }
        ),
    )
}

/// The `compressed` object of `write`'s start line and `inspect --json`.
pub fn json(c: &Compressed, decompressed: Option<u64>) -> serde_json::Value {
    json!({
        "format": c.format(),
        "compressed_bytes": c.compressed_len(),
        "declared_bytes": c.declared_size(),
        "decompressed_bytes": decompressed.or(c.declared_size()),
    })
}
