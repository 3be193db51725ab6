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
