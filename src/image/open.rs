//! Choosing the file tree to read an image through.
//!
//! Installer images often carry the same files several times: Windows media
//! keep them only in UDF (the ISO 9660 side holds a README), Linux images
//! have ISO 9660 with Rock Ridge and often Joliet. Like Rufus we prefer UDF
//! when present, then Rock Ridge (POSIX names, symlinks), then Joliet (long
//! Unicode names), then plain ISO 9660. [`open_tree_as`] reads a chosen one.

use crate::image::iso9660::Iso9660;
use crate::image::udf::Udf;
use crate::image::{ByteSource, Error, FileTree, FsKind};
use std::sync::Arc;

/// The file trees the image holds, in order of preference. A damaged UDF
/// or ISO 9660 side is an error here rather than silently skipped: a Windows
/// image whose UDF is broken would otherwise show only its ISO 9660
/// `README.TXT`. [`open_tree_as`] still reads the intact side when asked.
pub fn available(src: &Arc<dyn ByteSource>) -> Result<Vec<FsKind>, Error> {
    let mut kinds = Vec::new();
    if Udf::open(src.clone())?.is_some() {
        kinds.push(FsKind::Udf);
    }
    if let Some(p) = Iso9660::probe(&**src)? {
        kinds.extend(p.kinds);
    }
    Ok(kinds)
}

/// Opens the preferred file tree: UDF, Rock Ridge, Joliet, ISO 9660.
pub fn open_tree(src: Arc<dyn ByteSource>) -> Result<Box<dyn FileTree>, Error> {
    match available(&src)?.first() {
        Some(&kind) => open_tree_as(src, kind),
        None => Err(Error::NoFilesystem),
    }
}

/// A tree that could not be read and was passed over by
/// [`open_tree_or_fallback`].
#[derive(Debug, thiserror::Error)]
#[error("the {} file system cannot be read ({error}); reading the {} tree instead", human(*kind), human(*instead))]
pub struct Skipped {
    pub kind: FsKind,
    pub instead: FsKind,
    #[source]
    pub error: Error,
}

/// A tree's name for people.
fn human(kind: FsKind) -> &'static str {
    match kind {
        FsKind::Iso9660 => "ISO 9660",
        FsKind::Joliet => "Joliet",
        FsKind::RockRidge => "Rock Ridge",
        FsKind::Udf => "UDF",
    }
}

/// A tree to browse, and the damaged tree passed over to get it.
pub struct Fallback {
    pub tree: Box<dyn FileTree>,
    pub skipped: Option<Skipped>,
}

/// Like [`open_tree`], but when the UDF side is damaged and the image also
/// has an ISO 9660 tree (Rock Ridge > Joliet > ISO 9660), that tree is
/// opened instead and the UDF problem is returned in
/// [`Fallback::skipped`] for the caller to show: for listing, extracting
/// and inspecting, the intact tree is better than nothing. Not for `write`:
/// on Windows media the ISO 9660 side is one README, so a layout built from
/// it would "succeed" with the wrong files (`docs/decisions.md`). I/O
/// errors are not passed over.
pub fn open_tree_or_fallback(src: Arc<dyn ByteSource>) -> Result<Fallback, Error> {
    let udf_error = match Udf::open(src.clone()) {
        Ok(Some(udf)) => {
            return Ok(Fallback {
                tree: Box::new(udf),
                skipped: None,
            })
        }
        Ok(None) => None,
        Err(e @ Error::Io { .. }) => return Err(e),
        Err(e) => Some(e),
    };
    let kinds = match Iso9660::probe(&*src) {
        Ok(Some(p)) => p.kinds,
        Ok(None) => Vec::new(),
        Err(e) => return Err(udf_error.unwrap_or(e)),
    };
    let Some(&instead) = kinds.first() else {
        return Err(udf_error.unwrap_or(Error::NoFilesystem));
    };
    match open_tree_as(src, instead) {
        Ok(tree) => Ok(Fallback {
            tree,
            skipped: udf_error.map(|error| Skipped {
                kind: FsKind::Udf,
                instead,
                error,
            }),
        }),
        Err(e) => Err(udf_error.unwrap_or(e)),
    }
}

/// Opens the file tree of one kind; [`Error::FsAbsent`] names the ones the
/// image has when it lacks this one.
pub fn open_tree_as(src: Arc<dyn ByteSource>, kind: FsKind) -> Result<Box<dyn FileTree>, Error> {
    let tree: Option<Box<dyn FileTree>> = match kind {
        FsKind::Iso9660 | FsKind::Joliet | FsKind::RockRidge => {
            Iso9660::open_as(src.clone(), kind)?.map(|t| Box::new(t) as Box<dyn FileTree>)
        }
        FsKind::Udf => Udf::open(src.clone())?.map(|t| Box::new(t) as Box<dyn FileTree>),
    };
    match tree {
        Some(t) => Ok(t),
        None => {
            let have = available(&src).unwrap_or_default();
            let available = if have.is_empty() {
                "none".to_owned()
            } else {
                have.iter()
                    .map(|k| k.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            Err(Error::FsAbsent { kind, available })
        }
    }
}
