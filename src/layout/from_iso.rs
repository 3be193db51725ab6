//! The built layout of a non-hybrid ISO: its whole file tree copied into one
//! FAT32 partition (behind a GPT, or an MBR), so UEFI firmware boots the
//! stick from `\EFI\BOOT\BOOTX64.EFI` like any removable disk.
//!
//! Nothing of the image is loaded: files become `Source` ranges of the ISO
//! (the runs its reader reports), so the write engine streams them straight
//! from the image. The one exception is the El Torito EFI boot image (a
//! small FAT volume): many ISOs keep their UEFI boot path only there and not
//! in their tree. When the tree lacks `/EFI/BOOT/BOOT*.EFI`, that image's
//! **whole** file tree is read (capped at [`MAX_LOADER`] a file and
//! [`MAX_EL_TORITO_TREE`] in all) and added as in-memory files: a loader
//! alone is not enough, because distributions sign their media with shim,
//! which loads `grubx64.efi` (and `mmx64.efi`) from its own directory, and
//! signed GRUB reads its configuration from a directory such as
//! `EFI/debian/`. Files the tree already has win; each such path is a
//! [`Conflict`] in the layout's report. When the tree has its own loader,
//! only El Torito loaders of other names (other architectures) are added.
//!
//! Files of 4 GiB or more cannot be stored on FAT32. `sources/install.wim`
//! (Windows installers) is then split into `install.swm`, `install2.swm`, …
//! by [`crate::layout::wim`], which Windows Setup reads as one image; any
//! other such file is refused here, naming it, before anything is written.

use std::collections::HashSet;
use std::io::Read;
use std::sync::Arc;

use crate::image::eltorito::{self, Platform};
use crate::image::tree::{safe_component, walk};
use crate::image::{self, ByteSource, FileTree, NodeKind};
use crate::layout::disk::{self, Table};
use crate::layout::fat32::{self, Content, Dir};
use crate::layout::wim;
use crate::plan::{Plan, MIB};

/// The largest EFI loader read out of an El Torito image. Real loaders
/// (shim, GRUB, Windows' bootmgfw) are a few MiB; a standalone GRUB with
/// modules stays under 16 MiB.
pub const MAX_LOADER: u64 = 64 << 20;

/// The most file bytes copied out of El Torito EFI boot images in all (a
/// real one is 1–10 MiB: shim, GRUB, MokManager, a config).
pub const MAX_EL_TORITO_TREE: u64 = 256 << 20;

/// The most files and directories copied out of El Torito EFI boot images.
pub const MAX_EL_TORITO_ENTRIES: usize = 16384;

/// The smallest stick we lay out: a FAT32 volume needs 65525 clusters, i.e.
/// about 33 MiB with 512-byte clusters, plus the table and alignment.
pub const MIN_DISK: u64 = 40 * MIB;

/// The files' timestamp when the ISO does not date its volume:
/// 1980-01-01 00:00:00 UTC, the earliest date FAT can store.
pub const FALLBACK_MTIME: i64 = 315_532_800;

/// The timestamp every file of the layout gets: the ISO's primary volume
/// descriptor's modification date, else its creation date (ECMA-119
/// §8.4.27, §8.4.26; the Joliet descriptor's when there is no primary),
/// else [`FALLBACK_MTIME`]. Taking it from the image rather than the clock
/// makes the layout a function of (image, target size, options): writing
/// twice gives the same bytes, and `compare` can rebuild them.
pub fn image_mtime(src: &dyn ByteSource) -> Result<i64, Error> {
    let probe = image::iso9660::Iso9660::probe(src)?;
    Ok(probe.and_then(|p| p.date).unwrap_or(FALLBACK_MTIME))
}

/// Why the layout could not be built.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read the image's file tree")]
    Image(#[from] image::Error),
    #[error(
        "{path} is {size} bytes; a FAT32 layout holds files up to 4 GiB - 1 byte, so this ISO \
         cannot be written as a built layout (nothing was written)"
    )]
    FileTooLarge { path: String, size: u64 },
    #[error(
        "the EFI loader {path} in the El Torito boot image is {size} bytes, more than the \
         {MAX_LOADER}-byte limit; the image is damaged or not an installer"
    )]
    LoaderTooLarge { path: String, size: u64 },
    #[error("cannot copy the file tree of the El Torito EFI boot image at byte {offset}")]
    ElToritoTree {
        offset: u64,
        #[source]
        source: eltorito::TreeError,
    },
    #[error("cannot read the EFI loader {path} from the El Torito boot image at byte {offset}: {detail}")]
    Loader {
        path: String,
        offset: u64,
        detail: String,
    },
    #[error(
        "this ISO is not hybrid and has no UEFI loader (no /EFI/BOOT/BOOT*.EFI in its tree or in \
         an El Torito EFI image): a built FAT32 layout would not boot, and bootstick builds \
         UEFI-only layouts"
    )]
    NoEfiLoader,
    #[error(
        "the built layout needs {needed} bytes but the target holds only {available} bytes; \
         use a larger stick (nothing was written)"
    )]
    TargetTooSmall { needed: u64, available: u64 },
    #[error("cannot lay out the stick")]
    Disk(#[from] disk::Error),
    #[error("cannot split {path} into .swm parts for FAT32")]
    Wim {
        path: String,
        #[source]
        source: wim::Error,
    },
}

/// When `sources/install.wim` is split, and into parts of what size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WimSplit {
    /// A WIM larger than this many bytes is split.
    pub above: u64,
    /// Resource bytes per part (wimlib's accounting, see [`wim::split`]).
    pub part_limit: u64,
}

impl Default for WimSplit {
    /// What FAT32 needs: split only what cannot be stored, into parts of
    /// [`wim::FAT32_PART_LIMIT`] (the size DISM and wimlib users pick).
    fn default() -> Self {
        WimSplit {
            above: fat32::MAX_FILE,
            part_limit: wim::FAT32_PART_LIMIT,
        }
    }
}

/// A part of a split `install.wim` on the stick.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct WimPart {
    /// Where it lands, e.g. `sources/install2.swm`.
    pub path: String,
    pub size: u64,
}

/// What to build.
#[derive(Clone, Debug)]
pub struct Options {
    pub table: Table,
    /// The target's size when it is a device: the partition then fills it.
    /// `None` (an image file) sizes the stick to the files plus slack.
    pub target_size: Option<u64>,
    /// Timestamp of every file, in seconds since the Unix epoch.
    pub mtime: i64,
    /// Splitting of `sources/install.wim` (the default is what FAT32 needs;
    /// tests lower it to split small WIMs).
    pub wim_split: WimSplit,
}

/// A file added from the El Torito EFI image.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AddedFile {
    /// Where it lands on the stick, e.g. `EFI/BOOT/BOOTX64.EFI`.
    pub path: String,
    pub size: u64,
}

/// The El Torito loaders are reported as the files they are.
pub type AddedLoader = AddedFile;

/// Whose file a [`Conflict`] kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kept {
    /// The ISO's own file tree had the path.
    IsoTree,
    /// An earlier El Torito EFI image (in catalog order) had it.
    ElTorito,
}

/// A path of an El Torito EFI image that the layout already had, so the
/// El Torito entry was not copied (for a directory: nor anything in it).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Conflict {
    /// The path as the El Torito image spells it, e.g. `EFI/BOOT/BOOTX64.EFI`.
    pub path: String,
    pub kept: Kept,
    /// Both are files with the same bytes: nothing was lost.
    pub same_content: bool,
}

/// The built layout: its plan and what it holds.
#[derive(Clone, Debug)]
pub struct Layout {
    pub plan: Plan,
    /// Size of the laid-out disk in bytes (the plan's end).
    pub disk_size: u64,
    /// The smallest disk this layout fits on.
    pub min_size: u64,
    pub table: Table,
    pub label: String,
    pub files: usize,
    pub dirs: usize,
    /// Bytes of file contents.
    pub file_bytes: u64,
    /// The EFI loaders (`EFI/BOOT/BOOT*.EFI`) among [`Self::added_files`].
    pub added_loaders: Vec<AddedLoader>,
    /// Every file copied from El Torito EFI images, loaders included.
    pub added_files: Vec<AddedFile>,
    /// El Torito paths not copied because the layout had them already.
    pub el_torito_conflicts: Vec<Conflict>,
    /// Symbolic links of the image, which FAT32 cannot hold (skipped).
    pub skipped_links: Vec<String>,
    /// The parts `sources/install.wim` was split into (empty when it was not).
    pub wim_parts: Vec<WimPart>,
}

/// The FAT volume label for an ISO label: uppercase ASCII letters, digits,
/// `_` and `-`, other characters as `_`, at most 11; `BOOTSTICK` if empty.
pub fn fat_label(iso_label: &str) -> String {
    let l: String = iso_label
        .trim()
        .chars()
        .map(|c| match c.to_ascii_uppercase() {
            c @ ('A'..='Z' | '0'..='9' | '_' | '-') => c,
            _ => '_',
        })
        .take(11)
        .collect();
    let l = l.trim_end_matches('_').to_owned();
    if l.is_empty() {
        "BOOTSTICK".into()
    } else {
        l
    }
}

/// The tree mapped to FAT32, with its totals.
struct Mapped {
    root: Dir,
    files: usize,
    dirs: usize,
    file_bytes: u64,
    /// Bytes the data area needs, each file and directory rounded to 32 KiB
    /// (the largest cluster): a safe first guess at the volume size.
    rounded: u64,
    added: Vec<AddedFile>,
    conflicts: Vec<Conflict>,
    links: Vec<String>,
    wim_parts: Vec<WimPart>,
    /// The tree itself holds an `EFI/BOOT/BOOT*.EFI`.
    tree_loader: bool,
}

/// An open directory while the tree is mapped.
struct Open {
    /// Path from the root, uppercase, `/`-separated ("" for the root).
    upper: String,
    name: String,
    dir: Dir,
    names: HashSet<String>,
}

/// Builds the layout of the ISO read as `tree` from `src`.
pub fn build(
    src: &Arc<dyn ByteSource>,
    tree: &dyn FileTree,
    options: &Options,
) -> Result<Layout, Error> {
    let mut mapped = map_tree(&**src, tree, options.wim_split)?;
    let images = el_torito_entries(src, tree, mapped.tree_loader)?;
    merge(&mut mapped, &**src, images)?;
    let added_loaders: Vec<AddedLoader> = mapped
        .added
        .iter()
        .filter(|f| is_loader_path(&f.path))
        .cloned()
        .collect();
    if !mapped.tree_loader && added_loaders.is_empty() {
        return Err(Error::NoEfiLoader);
    }
    let label = fat_label(tree.label());
    let id = crate::layout::partition::crc32(format!("{}:{}", tree.label(), src.len()).as_bytes());
    let disk_options = |size| disk::Options {
        size,
        table: options.table,
        label: label.clone(),
        id,
        mtime: options.mtime,
    };
    // Smallest size that fits: the rounded data plus FAT and table overhead
    // plus slack, grown until the formatter agrees.
    let mut size = (mapped.rounded + mapped.rounded / 32 + 4 * MIB).max(MIN_DISK);
    size = size.div_ceil(MIB) * MIB;
    let min_size = loop {
        match disk::fat32_stick(&mapped.root, &disk_options(size)) {
            Ok(_) => break size,
            Err(disk::Error::Fat32 {
                source: fat32::Error::VolumeFull { .. } | fat32::Error::ClusterCount { .. },
                ..
            }) if size < (1 << 41) => size = (size + size / 8).div_ceil(MIB) * MIB,
            Err(e) => return Err(e.into()),
        }
    };
    let disk_size = match options.target_size {
        Some(cap) if cap < min_size => {
            return Err(Error::TargetTooSmall {
                needed: min_size,
                available: cap,
            })
        }
        Some(cap) => cap,
        None => min_size,
    };
    let (plan, _) = disk::fat32_stick(&mapped.root, &disk_options(disk_size))?;
    // The plan covers the whole disk (an MBR layout's free clusters at the
    // end are otherwise not part of it): an image file gets the stick's size,
    // and a device's last MiB holds no stale backup GPT.
    let plan = plan.with_tail_wipe(disk_size).map_err(disk::Error::from)?;
    Ok(Layout {
        plan,
        disk_size,
        min_size,
        table: options.table,
        label,
        files: mapped.files,
        dirs: mapped.dirs,
        file_bytes: mapped.file_bytes,
        added_loaders,
        added_files: mapped.added,
        el_torito_conflicts: mapped.conflicts,
        skipped_links: mapped.links,
        wim_parts: mapped.wim_parts,
    })
}

/// `EFI/BOOT/BOOT*.EFI`, any case: a removable-media loader's path.
fn is_loader_path(path: &str) -> bool {
    let up = path.to_uppercase();
    let parts: Vec<&str> = up.split('/').collect();
    matches!(parts.as_slice(), ["EFI", "BOOT", name] if name.starts_with("BOOT") && name.ends_with(".EFI"))
}

/// Walks the tree into a FAT32 directory.
fn map_tree(
    src: &dyn ByteSource,
    tree: &dyn FileTree,
    wim_split: WimSplit,
) -> Result<Mapped, Error> {
    let mut m = Mapped {
        root: Dir::new(),
        files: 0,
        dirs: 0,
        file_bytes: 0,
        rounded: 32 << 10,
        added: Vec::new(),
        conflicts: Vec::new(),
        links: Vec::new(),
        wim_parts: Vec::new(),
        tree_loader: false,
    };
    let mut stack = vec![Open {
        upper: String::new(),
        name: String::new(),
        dir: Dir::new(),
        names: HashSet::new(),
    }];
    let round = |n: u64| n.div_ceil(32 << 10) * (32 << 10);
    walk(tree, tree.root(), |v| -> Result<bool, Error> {
        while stack.len() > v.depth {
            close(&mut stack);
        }
        let name = safe_component(&v.entry.name)?.to_owned();
        let top = stack.last_mut().expect("the root stays open");
        let upper = if top.upper.is_empty() {
            name.to_uppercase()
        } else {
            format!("{}/{}", top.upper, name.to_uppercase())
        };
        match &v.entry.kind {
            NodeKind::Dir => {
                top.names.insert(name.to_uppercase());
                m.dirs += 1;
                m.rounded += 32 << 10;
                stack.push(Open {
                    upper,
                    name,
                    dir: Dir::new(),
                    names: HashSet::new(),
                });
                Ok(true)
            }
            NodeKind::File => {
                let data = tree.file_data(v.entry.node)?;
                if data.size > wim_split.above && upper == "SOURCES/INSTALL.WIM" {
                    let path = format!("/{}", v.path);
                    let parts = wim::split(src, &data, wim_split.part_limit).map_err(|source| {
                        Error::Wim {
                            path: path.clone(),
                            source,
                        }
                    })?;
                    for part in parts {
                        let size = part.content.size();
                        if size > fat32::MAX_FILE {
                            // One resource alone nearly fills a part.
                            return Err(Error::FileTooLarge {
                                path: format!("{path} (part {})", part.name),
                                size,
                            });
                        }
                        top.names.insert(part.name.to_uppercase());
                        m.files += 1;
                        m.file_bytes += size;
                        m.rounded += round(size);
                        let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
                        m.wim_parts.push(WimPart {
                            path: format!("{}/{}", dir.trim_start_matches('/'), part.name),
                            size,
                        });
                        top.dir.file(&part.name, part.content);
                    }
                    return Ok(false);
                }
                if data.size > fat32::MAX_FILE {
                    return Err(Error::FileTooLarge {
                        path: format!("/{}", v.path),
                        size: data.size,
                    });
                }
                top.names.insert(name.to_uppercase());
                let up = name.to_uppercase();
                m.tree_loader |=
                    top.upper == "EFI/BOOT" && up.starts_with("BOOT") && up.ends_with(".EFI");
                m.files += 1;
                m.file_bytes += data.size;
                m.rounded += round(data.size);
                top.dir.file(&name, Content::Source(data));
                Ok(false)
            }
            NodeKind::Symlink(_) => {
                m.links.push(format!("/{}", v.path));
                Ok(false)
            }
        }
    })?;
    while stack.len() > 1 {
        close(&mut stack);
    }
    m.root = stack.pop().expect("the root").dir;
    Ok(m)
}

/// Closes the innermost open directory into its parent.
fn close(stack: &mut Vec<Open>) {
    let open = stack.pop().expect("a directory to close");
    let parent = stack.last_mut().expect("a parent");
    parent.dir.dir(&open.name, open.dir);
}

/// What the El Torito EFI images add to the layout, one list per image in
/// catalog order (parents before children). When the tree has its own
/// loader (`tree_loader`): only the images' loaders (`EFI/BOOT/BOOT*.EFI`),
/// for architectures the tree may lack. Otherwise the whole tree of every
/// EFI image that holds a loader: the UEFI boot path lives there, and shim
/// and signed GRUB need the files beside the loader.
fn el_torito_entries(
    src: &Arc<dyn ByteSource>,
    tree: &dyn FileTree,
    tree_loader: bool,
) -> Result<Vec<Vec<eltorito::TreeEntry>>, Error> {
    if tree_loader {
        let loaders = el_torito_loaders(src, tree)?
            .into_iter()
            .map(|(name, bytes)| {
                let parts: Vec<String> = vec!["EFI".into(), "BOOT".into(), name];
                let mut entries: Vec<eltorito::TreeEntry> = (1..parts.len())
                    .map(|i| eltorito::TreeEntry {
                        path: parts[..i].to_vec(),
                        bytes: None,
                    })
                    .collect();
                entries.push(eltorito::TreeEntry {
                    path: parts,
                    bytes: Some(bytes),
                });
                entries
            })
            .collect();
        return Ok(loaders);
    }
    let Some(catalog) = eltorito::read_catalog(&**src)? else {
        return Ok(Vec::new());
    };
    let limits = eltorito::TreeLimits {
        file_bytes: MAX_LOADER,
        total_bytes: MAX_EL_TORITO_TREE,
        entries: MAX_EL_TORITO_ENTRIES,
    };
    let mut out = Vec::new();
    for entry in catalog
        .entries
        .iter()
        .filter(|e| e.platform == Platform::Efi)
    {
        let img = eltorito::resolve_size(&**src, entry, Some(tree), &[])?;
        // An unreadable EFI image, or one without a loader, is no boot
        // path; inspect reports it.
        match eltorito::efi_loaders(&**src, img.offset, img.len) {
            Ok(found) if !found.is_empty() => {}
            _ => continue,
        }
        let entries =
            eltorito::efi_tree(&**src, img.offset, img.len, limits).map_err(|source| {
                Error::ElToritoTree {
                    offset: img.offset,
                    source,
                }
            })?;
        out.push(entries);
    }
    Ok(out)
}

/// The directory at `path` (names compared ignoring case) under `root`.
fn dir_at<'a>(root: &'a mut Dir, path: &[String]) -> Option<&'a mut Dir> {
    let mut d = root;
    for name in path {
        d = match d.entry_mut(name)? {
            fat32::Node::Dir(sub) => sub,
            fat32::Node::File(_) => return None,
        };
    }
    Some(d)
}

/// Whether the layout's file `content` holds exactly `bytes`.
fn same_bytes(src: &dyn ByteSource, content: &Content, bytes: &[u8]) -> Result<bool, Error> {
    if content.size() != bytes.len() as u64 {
        return Ok(false);
    }
    Ok(match content {
        Content::Bytes(b) => **b == *bytes,
        Content::Source(data) => {
            let mut buf = vec![0u8; bytes.len()];
            let n = image::tree::read_at(src, data, 0, &mut buf)?;
            n == bytes.len() && buf == bytes
        }
        Content::Concat(_) => false,
    })
}

/// Adds the El Torito `images`' entries to the mapped tree: a directory
/// the tree has (ignoring case) is merged into; anything else already there
/// wins and is recorded as a [`Conflict`] (a directory in conflict is left
/// out with all it holds).
fn merge(
    m: &mut Mapped,
    src: &dyn ByteSource,
    images: Vec<Vec<eltorito::TreeEntry>>,
) -> Result<(), Error> {
    // Lowercased paths added from El Torito, and directories left out.
    let mut ours: HashSet<Vec<String>> = HashSet::new();
    let mut left_out: Vec<Vec<String>> = Vec::new();
    for entries in images {
        for e in entries {
            let lower: Vec<String> = e.path.iter().map(|c| c.to_lowercase()).collect();
            if left_out.iter().any(|p| lower.starts_with(p)) {
                continue;
            }
            let Some((name, parents)) = e.path.split_last() else {
                continue;
            };
            for c in &e.path {
                safe_component(c)?;
            }
            let path = e.path.join("/");
            let Some(dir) = dir_at(&mut m.root, parents) else {
                // Parents come first: only a parent left out gets here.
                continue;
            };
            let existing = match dir.entry_mut(name) {
                Some(fat32::Node::Dir(_)) if e.bytes.is_none() => continue,
                Some(fat32::Node::File(c)) => Some(match &e.bytes {
                    Some(b) => same_bytes(src, c, b)?,
                    None => false,
                }),
                Some(fat32::Node::Dir(_)) => Some(false),
                None => None,
            };
            if let Some(same_content) = existing {
                m.conflicts.push(Conflict {
                    path,
                    kept: if ours.contains(&lower) {
                        Kept::ElTorito
                    } else {
                        Kept::IsoTree
                    },
                    same_content,
                });
                if e.bytes.is_none() {
                    left_out.push(lower);
                }
                continue;
            }
            match e.bytes {
                None => {
                    dir.dir(name, Dir::new());
                    m.dirs += 1;
                    m.rounded += 32 << 10;
                }
                Some(bytes) => {
                    let size = bytes.len() as u64;
                    m.files += 1;
                    m.file_bytes += size;
                    m.rounded += size.div_ceil(32 << 10) * (32 << 10);
                    m.added.push(AddedFile { path, size });
                    dir.file(name, Content::Bytes(bytes.into()));
                }
            }
            ours.insert(lower);
        }
    }
    Ok(())
}

/// The removable-media loaders (`EFI/BOOT/BOOT*.EFI`) inside the El Torito
/// EFI boot images, as (file name, bytes); empty when the ISO has none.
fn el_torito_loaders(
    src: &Arc<dyn ByteSource>,
    tree: &dyn FileTree,
) -> Result<Vec<(String, Vec<u8>)>, Error> {
    let Some(catalog) = eltorito::read_catalog(&**src)? else {
        return Ok(Vec::new());
    };
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    for entry in catalog
        .entries
        .iter()
        .filter(|e| e.platform == Platform::Efi)
    {
        let img = eltorito::resolve_size(&**src, entry, Some(tree), &[])?;
        // An unreadable EFI image is no loader source; inspect reports it.
        let Ok(found) = eltorito::efi_loaders(&**src, img.offset, img.len) else {
            continue;
        };
        for f in found {
            let name = f.path.rsplit('/').next().unwrap_or_default().to_uppercase();
            if out.iter().any(|(n, _)| *n == name) {
                continue;
            }
            if f.size > MAX_LOADER {
                return Err(Error::LoaderTooLarge {
                    path: f.path,
                    size: f.size,
                });
            }
            let bytes = read_fat_file(&**src, img.offset, img.len, &f.path).map_err(|detail| {
                Error::Loader {
                    path: f.path.clone(),
                    offset: img.offset,
                    detail,
                }
            })?;
            out.push((name, bytes));
        }
    }
    Ok(out)
}

/// Reads the file at `path` (`/`-separated, as `efi_loaders` lists it) from
/// the FAT volume at `offset`, at most [`MAX_LOADER`] bytes.
fn read_fat_file(
    src: &dyn ByteSource,
    offset: u64,
    len: u64,
    path: &str,
) -> Result<Vec<u8>, String> {
    let fs = eltorito::open_fat(
        src,
        offset,
        len,
        MAX_LOADER + eltorito::MAX_FAT_LISTING_READ,
    )
    .map_err(|e| crate::error_chain(&e))?;
    let mut file = fs
        .root_dir()
        .open_file(path.trim_start_matches('/'))
        .map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    (&mut file)
        .take(MAX_LOADER + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_LOADER {
        return Err(format!("longer than {MAX_LOADER} bytes"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{DirEntry, FileData, FsKind, NodeId, Run};
    use fat32::Node;

    /// An in-memory tree: node 0 is the root; `(parent, name, size or None
    /// for a directory)`; node ids are indices + 1.
    struct Mock(Vec<(u64, &'static str, Option<u64>)>);

    impl FileTree for Mock {
        fn kind(&self) -> FsKind {
            FsKind::Iso9660
        }
        fn label(&self) -> &str {
            "MOCK"
        }
        fn root(&self) -> NodeId {
            NodeId(0)
        }
        fn read_dir(&self, dir: NodeId) -> Result<Vec<DirEntry>, image::Error> {
            Ok(self
                .0
                .iter()
                .enumerate()
                .filter(|(_, e)| e.0 == dir.0)
                .map(|(i, e)| DirEntry {
                    name: e.1.into(),
                    kind: if e.2.is_some() {
                        NodeKind::File
                    } else {
                        NodeKind::Dir
                    },
                    size: e.2.unwrap_or(0),
                    node: NodeId(i as u64 + 1),
                    meta: Default::default(),
                })
                .collect())
        }
        fn file_data(&self, file: NodeId) -> Result<FileData, image::Error> {
            let size = self.0[file.0 as usize - 1].2.unwrap_or(0);
            Ok(FileData {
                size,
                runs: vec![Run::Data {
                    offset: 0,
                    len: size,
                }],
            })
        }
    }

    fn entry(path: &str, bytes: Option<&[u8]>) -> eltorito::TreeEntry {
        eltorito::TreeEntry {
            path: path.split('/').map(str::to_owned).collect(),
            bytes: bytes.map(<[u8]>::to_vec),
        }
    }

    /// An El Torito image holding only `EFI/BOOT/BOOTX64.EFI`.
    fn loader() -> Vec<Vec<eltorito::TreeEntry>> {
        vec![vec![
            entry("EFI", None),
            entry("EFI/BOOT", None),
            entry("EFI/BOOT/BOOTX64.EFI", Some(b"MZ loader")),
        ]]
    }

    /// The tree mapped, then the El Torito `images` merged into it.
    fn mapped(src: &dyn ByteSource, tree: &Mock, images: Vec<Vec<eltorito::TreeEntry>>) -> Mapped {
        let mut m = map_tree(src, tree, WimSplit::default()).unwrap();
        merge(&mut m, src, images).unwrap();
        m
    }

    /// Names of the entries under `path` (`/`-separated directory names).
    fn names_at(root: &Dir, path: &[&str]) -> Vec<String> {
        let mut d = root;
        for p in path {
            d = match d.entries().iter().find(|(n, _)| n == p) {
                Some((_, Node::Dir(x))) => x,
                _ => panic!("no directory {p} in {:?}", d.entries()),
            };
        }
        d.entries().iter().map(|(n, _)| n.clone()).collect()
    }

    #[test]
    fn a_loader_in_the_tree_is_kept_whatever_its_case() {
        let tree = Mock(vec![
            (0, "efi", None),
            (1, "boot", None),
            (2, "bootx64.efi", Some(10)),
        ]);
        let m = mapped(&Vec::<u8>::new(), &tree, loader());
        assert!(m.tree_loader);
        assert!(m.added.is_empty());
        assert_eq!(names_at(&m.root, &["efi", "boot"]), ["bootx64.efi"]);
        assert_eq!(
            m.conflicts,
            [Conflict {
                path: "EFI/BOOT/BOOTX64.EFI".into(),
                kept: Kept::IsoTree,
                same_content: false,
            }]
        );
    }

    /// Debian's shape: shim, GRUB and GRUB's config only in the El Torito
    /// image, the rest of the boot files in the tree. Everything the tree
    /// lacks is added where it belongs; a path the tree has is kept from
    /// the tree and named, with whether the bytes were the same.
    #[test]
    fn the_whole_el_torito_tree_joins_the_iso_tree() {
        let src = b"search --file /.disk/info\n".to_vec();
        let n = src.len() as u64;
        let tree = Mock(vec![
            (0, "boot", None),
            (1, "grub", None),
            (2, "grub.cfg", Some(n)),
            (0, "efi", None),
            (4, "other.txt", Some(3)),
        ]);
        let images = vec![vec![
            entry("EFI", None),
            entry("EFI/BOOT", None),
            entry("EFI/BOOT/BOOTX64.EFI", Some(b"MZ shim")),
            entry("EFI/BOOT/grubx64.efi", Some(b"MZ grub")),
            entry("EFI/debian", None),
            entry("EFI/debian/grub.cfg", Some(b"configfile x")),
            entry("boot", None),
            entry("boot/grub", None),
            entry("boot/grub/grub.cfg", Some(&src)),
            entry("boot/grub/other.cfg", Some(b"x")),
        ]];
        let m = mapped(&src, &tree, images);
        assert!(!m.tree_loader);
        assert_eq!(names_at(&m.root, &[]), ["boot", "efi"]);
        assert_eq!(names_at(&m.root, &["efi"]), ["other.txt", "BOOT", "debian"]);
        assert_eq!(
            names_at(&m.root, &["efi", "BOOT"]),
            ["BOOTX64.EFI", "grubx64.efi"]
        );
        assert_eq!(names_at(&m.root, &["efi", "debian"]), ["grub.cfg"]);
        assert_eq!(
            names_at(&m.root, &["boot", "grub"]),
            ["grub.cfg", "other.cfg"]
        );
        let added: Vec<&str> = m.added.iter().map(|a| a.path.as_str()).collect();
        assert_eq!(
            added,
            [
                "EFI/BOOT/BOOTX64.EFI",
                "EFI/BOOT/grubx64.efi",
                "EFI/debian/grub.cfg",
                "boot/grub/other.cfg"
            ]
        );
        assert_eq!(
            m.conflicts,
            [Conflict {
                path: "boot/grub/grub.cfg".into(),
                kept: Kept::IsoTree,
                same_content: true,
            }]
        );
        assert_eq!((m.files, m.dirs), (2 + 4, 3 + 2));
        assert!(is_loader_path(&m.added[0].path) && !is_loader_path(&m.added[1].path));
    }

    /// A file of the tree where the El Torito image has a directory keeps
    /// the file and leaves out the directory with all it holds; a second
    /// El Torito image does not replace what the first added.
    #[test]
    fn a_directory_in_conflict_is_left_out_and_the_first_image_wins() {
        let tree = Mock(vec![(0, "tools", Some(4))]);
        let images = vec![
            vec![
                entry("tools", None),
                entry("tools/a.efi", Some(b"a")),
                entry("EFI", None),
                entry("EFI/BOOT", None),
                entry("EFI/BOOT/BOOTX64.EFI", Some(b"first")),
            ],
            vec![
                entry("EFI", None),
                entry("EFI/BOOT", None),
                entry("EFI/BOOT/BOOTX64.EFI", Some(b"first")),
                entry("EFI/BOOT/BOOTIA32.EFI", Some(b"ia32")),
            ],
        ];
        let m = mapped(&Vec::<u8>::new(), &tree, images);
        assert_eq!(names_at(&m.root, &[]), ["tools", "EFI"]);
        assert_eq!(
            names_at(&m.root, &["EFI", "BOOT"]),
            ["BOOTX64.EFI", "BOOTIA32.EFI"]
        );
        assert_eq!(
            m.conflicts,
            [
                Conflict {
                    path: "tools".into(),
                    kept: Kept::IsoTree,
                    same_content: false,
                },
                Conflict {
                    path: "EFI/BOOT/BOOTX64.EFI".into(),
                    kept: Kept::ElTorito,
                    same_content: true,
                },
            ]
        );
        assert_eq!(m.added.len(), 2);
    }

    #[test]
    fn loaders_join_an_existing_efi_boot_directory() {
        let tree = Mock(vec![
            (0, "EFI", None),
            (1, "Boot", None),
            (2, "grub.cfg", Some(5)),
        ]);
        let m = mapped(&Vec::<u8>::new(), &tree, loader());
        assert!(!m.tree_loader);
        assert_eq!(m.added.len(), 1);
        assert_eq!(names_at(&m.root, &[]), ["EFI"]);
        assert_eq!(names_at(&m.root, &["EFI"]), ["Boot"]);
        assert_eq!(
            names_at(&m.root, &["EFI", "Boot"]),
            ["grub.cfg", "BOOTX64.EFI"]
        );
    }

    #[test]
    fn loaders_get_a_boot_directory_in_an_existing_efi() {
        let tree = Mock(vec![(0, "efi", None), (1, "microsoft", None)]);
        let m = mapped(&Vec::<u8>::new(), &tree, loader());
        assert_eq!(names_at(&m.root, &["efi"]), ["microsoft", "BOOT"]);
        assert_eq!(names_at(&m.root, &["efi", "BOOT"]), ["BOOTX64.EFI"]);
    }

    #[test]
    fn a_4_gib_file_is_refused_by_path() {
        let tree = Mock(vec![(0, "sources", None), (1, "boot.vhd", Some(1 << 32))]);
        match map_tree(&Vec::<u8>::new(), &tree, WimSplit::default()) {
            Err(Error::FileTooLarge { path, size }) => {
                assert_eq!(path, "/sources/boot.vhd");
                assert_eq!(size, 1 << 32);
            }
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("a 4 GiB file was accepted"),
        }
        // `sources/install.wim` goes to the splitter instead, which reads it
        // (here: it is not there to read) and names it when it cannot.
        let tree = Mock(vec![
            (0, "sources", None),
            (1, "install.wim", Some(1 << 32)),
        ]);
        match map_tree(&Vec::<u8>::new(), &tree, WimSplit::default()) {
            Err(Error::Wim { path, .. }) => assert_eq!(path, "/sources/install.wim"),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("an unreadable install.wim was accepted"),
        }
        let tree = Mock(vec![(0, "max.bin", Some(u64::from(u32::MAX)))]);
        assert!(map_tree(&Vec::<u8>::new(), &tree, WimSplit::default()).is_ok());
    }

    #[test]
    fn labels_are_sanitised() {
        assert_eq!(fat_label("Debian 13.1.0 amd64 n"), "DEBIAN_13_1");
        assert_eq!(fat_label("  "), "BOOTSTICK");
        assert_eq!(fat_label("ccsa_x64frE_en-us_dv9"), "CCSA_X64FRE");
        assert_eq!(fat_label("é"), "BOOTSTICK");
    }
}
