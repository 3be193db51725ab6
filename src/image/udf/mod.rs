//! The UDF reader (ECMA-167 3rd edition as profiled by OSTA UDF 1.02–2.60):
//! the filesystem that Windows installer images keep their files in (their
//! ISO 9660 side holds only a README), and that genisoimage `-udf` writes.
//!
//! What we read: the volume recognition sequence, the anchor at sector 256
//! (or N−1, N−257, 512), the main volume descriptor sequence (the reserve copy
//! when the main one is unusable), type-1 partitions and the metadata
//! partition of UDF 2.50+, the file set descriptor, file entries and extended
//! file entries with ICB strategy 4, short/long/extended/embedded allocation
//! descriptors with continuation extents, file identifier descriptors with
//! OSTA CS0 names, and symbolic links. What we refuse, with a typed error:
//! virtual (VAT) and sparable partitions, other ICB strategies, block sizes
//! that differ from the sector size, and every structure that fails its tag
//! checks or points outside its partition or the image. See `docs/formats.md`.
//!
//! Nothing is loaded up front but the volume structures: [`FileTree::read_dir`]
//! reads one directory, [`FileTree::file_data`] returns where a file's bytes
//! lie without reading them.

mod cs0;
mod dir;
mod icb;
mod space;
mod tag;
mod volume;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use self::icb::file_type;
use self::space::{Part, Space};
use crate::image::{
    ByteSource, DirEntry, Error, FileData, FileTree, FsKind, NodeId, NodeKind, Run, MAX_DEPTH,
    MAX_DIR_BYTES,
};

/// The longest symbolic link target we read.
const MAX_SYMLINK_BYTES: u64 = 64 << 10;

/// The error for a structure that breaks the UDF rules at image byte `offset`.
pub(crate) fn malformed(offset: u64, detail: String) -> Error {
    Error::Malformed {
        format: "UDF",
        offset,
        detail,
    }
}

/// An opened UDF volume.
pub struct Udf {
    space: Space,
    label: String,
    revision: u16,
    nsr: u8,
    root: NodeId,
    /// The directory each directory was first listed from: lets
    /// [`FileTree::read_dir`] see a directory entry pointing back at an
    /// ancestor, and bounds the depth, without the caller's help.
    parents: Mutex<HashMap<NodeId, NodeId>>,
}

impl std::fmt::Debug for Udf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Udf")
            .field("label", &self.label)
            .field("revision", &format_args!("{:#06x}", self.revision))
            .field("nsr", &self.nsr)
            .field("parts", &self.space.parts)
            .finish()
    }
}

fn node(part: u16, lbn: u32) -> NodeId {
    NodeId((u64::from(part) << 32) | u64::from(lbn))
}

fn addr(n: NodeId) -> (u16, u32) {
    ((n.0 >> 32) as u16, n.0 as u32)
}

fn describe(n: NodeId) -> String {
    let (p, l) = addr(n);
    format!("UDF ICB at block {l} of partition {p}")
}

impl Udf {
    /// Opens the UDF volume of `src`. `Ok(None)` when the image has no UDF
    /// volume recognition sequence (`BEA01`, `NSR02`/`NSR03`, `TEA01`); an
    /// error when it has one but the volume behind it cannot be read.
    pub fn open(src: Arc<dyn ByteSource>) -> Result<Option<Udf>, Error> {
        let Some(rec) = volume::recognize(src.as_ref())? else {
            return Ok(None);
        };
        let vol = volume::read(&src, rec)?;
        let mut parts = Vec::with_capacity(vol.maps.len());
        for m in &vol.maps {
            parts.push(match *m {
                volume::PartMap::Physical { start, blocks } => Part::Physical { start, blocks },
                volume::PartMap::Metadata {
                    start,
                    blocks,
                    file,
                    mirror,
                } => {
                    let phys = Space {
                        src: src.clone(),
                        block: vol.block,
                        parts: vec![Part::Physical { start, blocks }],
                    };
                    let runs = match metadata_runs(&phys, file) {
                        Ok(r) => r,
                        Err(e) => metadata_runs(&phys, mirror).map_err(|_| e)?,
                    };
                    Part::metadata(runs)
                }
            });
        }
        let space = Space {
            src,
            block: vol.block,
            parts,
        };
        let (fsd_part, fsd_lbn) = vol.fsd;
        let (off, fsd) = space.read_block(fsd_part, fsd_lbn, "UDF file set descriptor")?;
        tag::check(&fsd, off, &[tag::id::FSD], Some(fsd_lbn))?;
        let root_lbn = u32::from_le_bytes(fsd[404..408].try_into().unwrap_or_default());
        let root_part = u16::from_le_bytes([fsd[408], fsd[409]]);
        let root = node(root_part, root_lbn);
        let udf = Udf {
            space,
            label: vol.label,
            revision: vol.revision,
            nsr: rec.nsr,
            root,
            parents: Mutex::new(HashMap::new()),
        };
        let entry = icb::read(&udf.space, root_part, root_lbn)?;
        if entry.file_type != file_type::DIRECTORY {
            return Err(malformed(
                off,
                format!(
                    "the file set's root ICB is of file type {}, not a directory",
                    entry.file_type
                ),
            ));
        }
        Ok(Some(udf))
    }

    /// Where the UDF volume's structures end, in bytes (partitions, volume
    /// descriptor sequences, anchors, the closing anchor): the length of a
    /// whole copy of the volume. `Ok(None)` without a recognition sequence.
    pub fn extent_end(src: &Arc<dyn ByteSource>) -> Result<Option<u64>, Error> {
        let Some(rec) = volume::recognize(src.as_ref())? else {
            return Ok(None);
        };
        volume::extent_end(src, rec).map(Some)
    }

    /// True when the image carries a UDF volume recognition sequence: cheap
    /// (a few 7-byte reads), for listing which file trees an image has before
    /// opening one.
    pub fn probe(src: &dyn ByteSource) -> Result<bool, Error> {
        Ok(volume::recognize(src)?.is_some())
    }

    /// The UDF revision named by the logical volume's domain (0x0102 for
    /// Windows media and genisoimage, 0x0250/0x0260 for metadata-partition
    /// volumes).
    pub fn revision(&self) -> u16 {
        self.revision
    }

    /// 2 when the recognition sequence says NSR02 (UDF ≤ 2.00), 3 for NSR03.
    pub fn nsr(&self) -> u8 {
        self.nsr
    }

    /// The logical block size (equal to the sector size).
    pub fn block_size(&self) -> u64 {
        self.space.block
    }

    /// Reads the directory data of `dir` (capped by [`MAX_DIR_BYTES`]).
    fn dir_bytes(&self, runs: &[Run], size: u64) -> Result<Vec<u8>, Error> {
        if size > MAX_DIR_BYTES {
            return Err(Error::TooLarge {
                what: "UDF directory",
                size,
                limit: MAX_DIR_BYTES,
            });
        }
        read_runs(self.space.src.as_ref(), runs, size, "UDF directory data")
    }

    /// The chain of directories above `dir`, as far as they have been listed.
    fn ancestors(&self, dir: NodeId) -> Result<Vec<NodeId>, Error> {
        let parents = self.parents.lock().unwrap_or_else(|p| p.into_inner());
        let mut chain = vec![dir];
        let mut cur = dir;
        while let Some(&p) = parents.get(&cur) {
            if chain.contains(&p) {
                return Err(Error::Loop { path: describe(p) });
            }
            chain.push(p);
            cur = p;
            if chain.len() > MAX_DEPTH + 1 {
                return Err(Error::TooDeep {
                    path: describe(dir),
                    limit: MAX_DEPTH,
                });
            }
        }
        Ok(chain)
    }

    /// Reads a symbolic link's target (ECMA-167 4/14.16 path components).
    fn symlink_target(&self, entry: &icb::Entry) -> Result<String, Error> {
        if entry.size > MAX_SYMLINK_BYTES {
            return Err(Error::TooLarge {
                what: "UDF symbolic link",
                size: entry.size,
                limit: MAX_SYMLINK_BYTES,
            });
        }
        let data = read_runs(
            self.space.src.as_ref(),
            &entry.runs,
            entry.size,
            "UDF symbolic link",
        )?;
        let at = match entry.runs.first() {
            Some(Run::Data { offset, .. }) => *offset,
            _ => 0,
        };
        symlink_path(&data, at)
    }
}

/// Resolves the metadata file (file type 250, or the mirror, 251) at block
/// `lbn` of the physical partition in `phys`.
fn metadata_runs(phys: &Space, lbn: u32) -> Result<Vec<Run>, Error> {
    let entry = icb::read(phys, 0, lbn)?;
    if !matches!(entry.file_type, 250 | 251) {
        return Err(malformed(
            0,
            format!("block {lbn} of the physical partition should hold the metadata file, but holds file type {}", entry.file_type),
        ));
    }
    // Metadata blocks must not straddle runs, or one descriptor could be split.
    for r in &entry.runs {
        if r.len() % phys.block != 0 {
            return Err(malformed(
                0,
                format!(
                    "the metadata file has an extent of {} bytes, not a whole number of blocks",
                    r.len()
                ),
            ));
        }
    }
    Ok(entry.runs)
}

/// Reads `size` bytes laid out as `runs` into memory.
fn read_runs(
    src: &dyn ByteSource,
    runs: &[Run],
    size: u64,
    what: &'static str,
) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(size as usize);
    for r in runs {
        match *r {
            Run::Data { offset, len } => {
                let start = out.len();
                out.resize(start + len as usize, 0);
                src.read_exact_at(offset, &mut out[start..], what)?;
            }
            Run::Zeros { len } => out.resize(out.len() + len as usize, 0),
        }
    }
    Ok(out)
}

/// Turns ECMA-167 path components into a `/`-separated path.
fn symlink_path(data: &[u8], at: u64) -> Result<String, Error> {
    let mut parts: Vec<String> = Vec::new();
    let mut absolute = false;
    let mut pos = 0usize;
    while pos < data.len() {
        let h = data.get(pos..pos + 4).ok_or_else(|| {
            malformed(
                at + pos as u64,
                "truncated symbolic link path component".into(),
            )
        })?;
        let (kind, len) = (h[0], usize::from(h[1]));
        let ident = data.get(pos + 4..pos + 4 + len).ok_or_else(|| {
            malformed(
                at + pos as u64,
                "symbolic link path component runs past the link's end".into(),
            )
        })?;
        match kind {
            1 | 2 => {
                parts.clear();
                absolute = true;
            }
            3 => parts.push("..".into()),
            4 => parts.push(".".into()),
            5 => parts.push(cs0::decode(ident, at + pos as u64 + 4)?),
            other => {
                return Err(malformed(
                    at + pos as u64,
                    format!("unknown symbolic link path component type {other}"),
                ))
            }
        }
        pos += 4 + len;
    }
    let joined = parts.join("/");
    Ok(if absolute {
        format!("/{joined}")
    } else {
        joined
    })
}

impl FileTree for Udf {
    fn kind(&self) -> FsKind {
        FsKind::Udf
    }

    fn label(&self) -> &str {
        &self.label
    }

    fn root(&self) -> NodeId {
        self.root
    }

    fn read_dir(&self, dir: NodeId) -> Result<Vec<DirEntry>, Error> {
        let (part, lbn) = addr(dir);
        let entry = icb::read(&self.space, part, lbn)?;
        if entry.file_type != file_type::DIRECTORY {
            return Err(Error::WrongKind {
                path: describe(dir),
                expected: "directory",
            });
        }
        let data = self.dir_bytes(&entry.runs, entry.size)?;
        let base = match entry.runs.first() {
            Some(Run::Data { offset, .. }) => *offset,
            _ => 0,
        };
        let listing = dir::parse(&data, base)?;
        let ancestors = self.ancestors(dir)?;
        let mut out = Vec::with_capacity(listing.entries.len());
        for fid in listing.entries {
            let child = node(fid.part, fid.lbn);
            let e = icb::read(&self.space, fid.part, fid.lbn)?;
            let kind = match e.file_type {
                file_type::DIRECTORY => {
                    if ancestors.contains(&child) {
                        return Err(Error::Loop {
                            path: format!(
                                "{} (entry {:?} points back at an enclosing directory)",
                                describe(child),
                                fid.name
                            ),
                        });
                    }
                    if ancestors.len() >= MAX_DEPTH {
                        return Err(Error::TooDeep {
                            path: format!("{} ({:?})", describe(child), fid.name),
                            limit: MAX_DEPTH,
                        });
                    }
                    self.parents
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .entry(child)
                        .or_insert(dir);
                    NodeKind::Dir
                }
                file_type::FILE | file_type::UNSPECIFIED | file_type::REALTIME => NodeKind::File,
                file_type::SYMLINK => NodeKind::Symlink(self.symlink_target(&e)?),
                // Devices, FIFOs, sockets and stream directories have no
                // place on an installer stick.
                _ => continue,
            };
            let size = if kind == NodeKind::File { e.size } else { 0 };
            out.push(DirEntry {
                name: fid.name,
                kind,
                size,
                node: child,
                meta: Default::default(),
            });
        }
        Ok(out)
    }

    fn file_data(&self, file: NodeId) -> Result<FileData, Error> {
        let (part, lbn) = addr(file);
        let e = icb::read(&self.space, part, lbn)?;
        if !matches!(
            e.file_type,
            file_type::FILE | file_type::UNSPECIFIED | file_type::REALTIME
        ) {
            return Err(Error::WrongKind {
                path: describe(file),
                expected: "regular file",
            });
        }
        Ok(FileData {
            size: e.size,
            runs: e.runs,
        })
    }
}
