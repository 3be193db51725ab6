//! Checksums of compressed images: the image inside is hashed too.
//!
//! # Why
//!
//! Distributions list either the compressed file (Raspberry Pi OS,
//! Armbian, Fedora's `CHECKSUM`) or the image inside it (a `SHA256SUMS`
//! naming `disk.img` beside `disk.img.xz`, a vendor's `--sha256` of the
//! decompressed image). So a check of a compressed IMAGE accepts either:
//! the compressed bytes are hashed in the usual pass, and, when some
//! reference may be about the image inside (it names the decompressed
//! name, it is a bare hash, or nothing names the compressed file), the
//! image is decoded and its decompressed bytes hashed too.
//!
//! # Binding
//!
//! In a pinned check (`write`), the decoding reads the compressed bytes
//! through the block digests of the pass that just hashed them
//! (`image::checked`), so the decompressed digest is of the image decoded
//! from exactly the checked bytes; the write decodes the same checked
//! bytes again, so the stick gets that image. The check is over before
//! the first byte is written: nothing has to be held back, because a file
//! can be read twice (a pipe cannot: docs/trust.md).

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use crate::events::{Event, Observer, Phase};
use crate::hash::{Digest, HashAlgorithm};
use crate::image::checked::{BlockDigests, CheckedImage};
use crate::image::compressed::{Compressed, Format};
use crate::image::{ByteSource, ImageFile};

/// A compressed IMAGE, as far as matching its checksums needs.
#[derive(Clone, Debug)]
pub struct Inner {
    pub format: Format,
    /// The file name the image has once decompressed: the IMAGE's name
    /// without its compression suffix (`disk.img.xz` → `disk.img`), a zip
    /// member's last component; `None` when the name has no such suffix.
    pub name: Option<String>,
}

/// The compression suffixes [`Inner::name`] strips, by format.
fn suffixes(format: Format) -> &'static [&'static str] {
    match format {
        Format::Xz => &[".xz"],
        Format::Zstd => &[".zst", ".zstd"],
        Format::Gzip => &[".gz"],
        Format::Bzip2 => &[".bz2"],
        Format::Lz4 => &[".lz4"],
        Format::Zip => &[".zip"],
    }
}

/// The image inside `image_name`, compressed in `format`: its name with
/// the format's suffix removed (case-insensitively), if it has one.
pub fn stripped_name(image_name: &str, format: Format) -> Option<String> {
    let lower = image_name.to_ascii_lowercase();
    suffixes(format).iter().find_map(|s| {
        lower
            .strip_suffix(s)
            .filter(|stem| !stem.is_empty())
            .map(|stem| image_name[..stem.len()].to_string())
    })
}

fn source_of(image: &File, blocks: Option<&Arc<BlockDigests>>) -> Option<Arc<dyn ByteSource>> {
    let file = image.try_clone().ok()?;
    Some(match blocks {
        Some(b) => Arc::new(CheckedImage::new(file, b.clone())),
        None => {
            let len = file.metadata().ok()?.len();
            Arc::new(ImageFile::from_file(file, len))
        }
    })
}

/// `Some` when the IMAGE at `path` (read through `image`, its open
/// descriptor) is compressed; `entry` names a zip archive's member, as for `write`. An
/// image that cannot be probed is taken as it is (the write reports why).
pub fn probe(path: &Path, image: &File, entry: Option<&str>) -> Option<Inner> {
    let src = source_of(image, None)?;
    let c = Compressed::probe_entry(src, entry).ok()??;
    let name = match c.zip_member() {
        Some(m) => Some(
            m.chosen()
                .name
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_string(),
        )
        .filter(|n| !n.is_empty()),
        None => path
            .file_name()
            .and_then(|n| stripped_name(&n.to_string_lossy(), c.format())),
    };
    Some(Inner {
        format: c.format(),
        name,
    })
}

/// The digests (`algorithms`, each once) of the image inside the
/// compressed IMAGE, decoded through `blocks` when the check took them.
/// `Err`: why it could not be decoded, for the report's notes.
pub fn digests(
    image: &File,
    blocks: Option<&Arc<BlockDigests>>,
    entry: Option<&str>,
    algorithms: &[HashAlgorithm],
    observer: &dyn Observer,
) -> Result<Vec<Digest>, String> {
    let src = source_of(image, blocks).ok_or("the image's descriptor cannot be duplicated")?;
    let c = Compressed::probe_entry(src, entry)
        .map_err(|e| crate::error_chain(&e))?
        .ok_or("the image is no longer compressed")?;
    let mut algs: Vec<HashAlgorithm> = Vec::new();
    for a in algorithms {
        if !algs.contains(a) {
            algs.push(*a);
        }
    }
    let mut hashers: Vec<_> = algs.iter().map(|a| a.hasher()).collect();
    let total = c.declared_size().unwrap_or(0);
    observer.event(&Event::PhaseStarted {
        phase: Phase::Check,
        total,
    });
    let mut d = c.decoder().map_err(|e| crate::error_chain(&e))?;
    let mut buf = vec![0u8; super::stream::CHUNK];
    loop {
        let n = d.read_full(&mut buf).map_err(|e| crate::error_chain(&e))?;
        if n == 0 {
            break;
        }
        for h in &mut hashers {
            h.update(&buf[..n]);
        }
        observer.event(&Event::Progress {
            phase: Phase::Check,
            done: d.position(),
            total,
        });
    }
    c.check_len(d.position())
        .map_err(|e| crate::error_chain(&e))?;
    observer.event(&Event::PhaseFinished {
        phase: Phase::Check,
    });
    Ok(hashers.into_iter().map(|h| h.finish()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inner_name_drops_the_compression_suffix() {
        assert_eq!(
            stripped_name("raspios.img.xz", Format::Xz).as_deref(),
            Some("raspios.img")
        );
        assert_eq!(
            stripped_name("disk.IMG.ZST", Format::Zstd).as_deref(),
            Some("disk.IMG")
        );
        assert_eq!(stripped_name("disk.img", Format::Gzip), None);
        assert_eq!(stripped_name(".gz", Format::Gzip), None);
        assert_eq!(
            stripped_name("vendor.zip", Format::Zip).as_deref(),
            Some("vendor")
        );
    }
}
