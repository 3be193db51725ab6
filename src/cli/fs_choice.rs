//! The `--fs` option shared by `ls` and `extract`: which file tree of the
//! image to read, and opening it with errors mapped to exit codes.

use super::exit::Failure;
use bootstick::image::{open, ByteSource, FileTree, FsKind, ImageFile};
use std::path::Path;
use std::sync::Arc;

/// A file tree the image may hold.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum FsChoice {
    Udf,
    RockRidge,
    Joliet,
    Iso9660,
}

impl From<FsChoice> for FsKind {
    fn from(c: FsChoice) -> FsKind {
        match c {
            FsChoice::Udf => FsKind::Udf,
            FsChoice::RockRidge => FsKind::RockRidge,
            FsChoice::Joliet => FsKind::Joliet,
            FsChoice::Iso9660 => FsKind::Iso9660,
        }
    }
}

/// An opened image and the file tree read from it.
pub type Opened = (Arc<dyn ByteSource>, Box<dyn FileTree>);

/// Opens `image` and its preferred tree (or the one `fs` names).
pub fn open_image(image: &Path, fs: Option<FsChoice>) -> Result<Opened, Failure> {
    let bad = |e: bootstick::image::Error| {
        Failure::new(
            super::exit::image_error(&e),
            anyhow::Error::new(e).context(format!("cannot read {}", image.display())),
        )
    };
    let src: Arc<dyn ByteSource> = Arc::new(ImageFile::open(image).map_err(bad)?);
    let tree = match fs {
        Some(kind) => open::open_tree_as(src.clone(), kind.into()).map_err(bad)?,
        None => {
            let f = open::open_tree_or_fallback(src.clone()).map_err(bad)?;
            if let Some(s) = &f.skipped {
                eprintln!("bootstick: warning: {s}");
            }
            f.tree
        }
    };
    Ok((src, tree))
}

/// A name as shown on a terminal: control characters escaped, so an image
/// cannot move the cursor or rewrite earlier output.
pub fn printable(name: &str) -> String {
    if name.chars().any(char::is_control) {
        name.chars()
            .flat_map(|c| {
                if c.is_control() {
                    c.escape_default().collect::<Vec<_>>()
                } else {
                    vec![c]
                }
            })
            .collect()
    } else {
        name.to_owned()
    }
}
