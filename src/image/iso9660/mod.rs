//! ISO 9660 (ECMA-119) with its two extensions, Joliet and Rock Ridge, as a
//! [`FileTree`].
//!
//! One image can hold up to three views of the same files: the plain ISO 9660
//! tree (8.3-ish upper-case names), a Joliet tree (a second directory
//! hierarchy with UCS-2 names, from a Supplementary Volume Descriptor) and
//! Rock Ridge (POSIX names, modes and symlinks stored in the System Use area
//! of the plain tree's records). [`Iso9660::open`] picks the richest:
//! Rock Ridge > Joliet > plain; [`Iso9660::open_as`] reads a chosen one.
//!
//! Directories are read on demand, one extent at a time, so a large image is
//! never loaded whole. Every read goes through [`ByteSource`] (bounds-checked),
//! directories larger than [`MAX_DIR_BYTES`] are refused, and Rock Ridge
//! continuation chains are bounded. Loops and depth are the walker's job
//! (`image::tree`), since a single directory cannot loop by itself.

mod descriptor;
mod names;
mod record;
mod susp;

use crate::image::{
    ByteSource, DirEntry, Error, FileData, FileTree, FsKind, Meta, NodeId, NodeKind, Run,
    MAX_DIR_BYTES,
};
use record::{Record, Records, FLAG_ASSOCIATED, FLAG_MULTI_EXTENT};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use susp::RockRidge;

/// What the image offers, without opening a tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    /// The views present, richest first (a subset of Rock Ridge, Joliet,
    /// ISO 9660).
    pub kinds: Vec<FsKind>,
    /// The primary volume label (or the Joliet one when there is no primary).
    pub label: String,
    /// The same volume's date, in seconds since the Unix epoch: its
    /// modification date (ECMA-119 §8.4.27), else its creation date
    /// (§8.4.26); `None` when neither is specified.
    pub date: Option<i64>,
}

/// A readable ISO 9660 tree in one of its three views.
pub struct Iso9660 {
    src: Arc<dyn ByteSource>,
    kind: FsKind,
    label: String,
    block_size: u64,
    root: NodeId,
    /// `LEN_SKP` of the `SP` entry when reading Rock Ridge.
    rr_skip: Option<u8>,
    /// What each handle we gave out stands for. Handles are derived from byte
    /// offsets, so listing a directory twice reuses them and this map stays
    /// bounded by the directory records actually read.
    nodes: Mutex<HashMap<NodeId, Node>>,
}

#[derive(Clone, Debug)]
enum Node {
    Dir {
        offset: u64,
        size: u64,
    },
    File(FileData),
    /// A file we list but refuse to read (zisofs, interleaved), with why.
    Unreadable {
        offset: u64,
        why: &'static str,
    },
}

fn dir_id(extent_offset: u64) -> NodeId {
    NodeId(extent_offset << 1 | 1)
}

fn file_id(record_offset: u64) -> NodeId {
    NodeId(record_offset << 1)
}

impl Iso9660 {
    /// Which views the image holds. `Ok(None)` when it has no ISO 9660
    /// volume descriptor at sector 16.
    pub fn probe(src: &dyn ByteSource) -> Result<Option<Probe>, Error> {
        let Some(d) = descriptor::read(src)? else {
            return Ok(None);
        };
        let mut kinds = Vec::new();
        if let Some(p) = &d.primary {
            if rock_ridge_skip(src, p)?.is_some() {
                kinds.push(FsKind::RockRidge);
            }
        }
        if d.joliet.is_some() {
            kinds.push(FsKind::Joliet);
        }
        if d.primary.is_some() {
            kinds.push(FsKind::Iso9660);
        }
        let volume = d.primary.as_ref().or(d.joliet.as_ref());
        let label = volume.map(|v| v.label.clone()).unwrap_or_default();
        let date = volume.and_then(|v| v.modified.or(v.created));
        Ok(Some(Probe { kinds, label, date }))
    }

    /// Opens the richest view: Rock Ridge, else Joliet, else plain ISO 9660.
    /// `Ok(None)` when the image has no ISO 9660 volume descriptor set.
    pub fn open(src: Arc<dyn ByteSource>) -> Result<Option<Iso9660>, Error> {
        let Some(probe) = Self::probe(&*src)? else {
            return Ok(None);
        };
        match probe.kinds.first() {
            Some(&kind) => Self::open_as(src, kind),
            None => Ok(None),
        }
    }

    /// Opens one view. `Ok(None)` when the image does not hold it (no ISO
    /// 9660 at all, no Joliet descriptor, no Rock Ridge `SP`/`ER`), or when
    /// `kind` is [`FsKind::Udf`].
    pub fn open_as(src: Arc<dyn ByteSource>, kind: FsKind) -> Result<Option<Iso9660>, Error> {
        let Some(d) = descriptor::read(&*src)? else {
            return Ok(None);
        };
        let (volume, rr_skip) = match kind {
            FsKind::Udf => return Ok(None),
            FsKind::Joliet => match d.joliet {
                Some(v) => (v, None),
                None => return Ok(None),
            },
            FsKind::Iso9660 => match d.primary {
                Some(v) => (v, None),
                None => return Ok(None),
            },
            FsKind::RockRidge => {
                let Some(v) = d.primary else { return Ok(None) };
                match rock_ridge_skip(&*src, &v)? {
                    Some(skip) => (v, Some(skip)),
                    None => return Ok(None),
                }
            }
        };
        let root = dir_id(volume.root_offset);
        let mut nodes = HashMap::new();
        nodes.insert(
            root,
            Node::Dir {
                offset: volume.root_offset,
                size: volume.root_size,
            },
        );
        Ok(Some(Iso9660 {
            src,
            kind,
            label: volume.label,
            block_size: volume.block_size,
            root,
            rr_skip,
            nodes: Mutex::new(nodes),
        }))
    }

    fn node(&self, id: NodeId) -> Result<Node, Error> {
        let nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        nodes.get(&id).cloned().ok_or_else(|| Error::NotFound {
            path: format!("<node {:#x} was not listed by this ISO 9660 reader>", id.0),
        })
    }

    fn remember(&self, id: NodeId, node: Node) {
        let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        nodes.insert(id, node);
    }

    /// The size of a relocated directory, read from its own `.` record (the
    /// `CL` entry that points at it carries no size).
    fn relocated_dir(&self, block: u32, at: u64) -> Result<(u64, u64), Error> {
        let offset = u64::from(block) * self.block_size;
        let mut len = [0u8; 1];
        self.src
            .read_exact_at(offset, &mut len, "Rock Ridge relocated directory (CL)")?;
        let buf = self.src.read_vec(
            offset,
            u64::from(len[0]),
            255,
            "Rock Ridge relocated directory (CL)",
        )?;
        let dot = Record::parse(&buf, offset)?;
        if !dot.is_dir() || !dot.is_dot_or_dotdot() {
            return Err(Error::Malformed {
                format: "Rock Ridge",
                offset: at,
                detail: format!(
                    "CL points at block {block}, which does not start with a directory's '.' record"
                ),
            });
        }
        Ok((dot.data_offset(self.block_size), u64::from(dot.size)))
    }

    /// Turns one file or directory (all its records, for a multi-extent file)
    /// into a listing entry, or `None` when it is hidden.
    fn entry(&self, group: &[Record<'_>]) -> Result<Option<DirEntry>, Error> {
        let first = &group[0];
        let rr = match self.rr_skip {
            Some(skip) => Some(RockRidge::read(
                &*self.src,
                self.block_size,
                first.system_use,
                first.system_use_offset,
                skip,
            )?),
            None => None,
        };
        if first.flags & FLAG_ASSOCIATED != 0 {
            return Ok(None);
        }
        let name = match (&rr, self.kind) {
            (Some(rr), _) if rr.relocated || rr.dot => return Ok(None),
            (Some(RockRidge { name: Some(n), .. }), _) => String::from_utf8_lossy(n).into_owned(),
            (_, FsKind::Joliet) => names::joliet(first.name),
            _ => names::plain(first.name),
        };
        // `.` and `..` as names (a Rock Ridge NM or a Joliet identifier that
        // says so; the real self and parent records were skipped above) are
        // listed as stored: an extraction skips them with a warning
        // (`tree::safe_component`), and failing here would lose the whole
        // directory to one hostile entry.
        if name.is_empty() {
            return Err(Error::Malformed {
                format: "ISO 9660 directory record",
                offset: first.offset,
                detail: "the entry has an empty name".into(),
            });
        }
        let rr = rr.unwrap_or_default();
        let meta = Meta {
            mode: rr.mode.map(|m| m & 0o7777),
            mtime: descriptor::record_datetime(&first.recorded),
        };
        if let Some(block) = rr.child_link {
            let (offset, size) = self.relocated_dir(block, first.offset)?;
            let node = dir_id(offset);
            self.remember(node, Node::Dir { offset, size });
            return Ok(Some(DirEntry {
                name,
                kind: NodeKind::Dir,
                size: 0,
                node,
                meta,
            }));
        }
        if first.is_dir() {
            let offset = first.data_offset(self.block_size);
            let node = dir_id(offset);
            self.remember(
                node,
                Node::Dir {
                    offset,
                    size: u64::from(first.size),
                },
            );
            return Ok(Some(DirEntry {
                name,
                kind: NodeKind::Dir,
                size: 0,
                node,
                meta,
            }));
        }
        let node = file_id(first.offset);
        let is_link = rr.mode.is_some_and(|m| m & susp::S_IFMT == susp::S_IFLNK);
        if let Some(target) = rr.symlink.filter(|_| is_link || rr.mode.is_none()) {
            return Ok(Some(DirEntry {
                name,
                kind: NodeKind::Symlink(target),
                size: 0,
                node,
                meta,
            }));
        }
        let mut data = FileData::default();
        for r in group {
            data.size += u64::from(r.size);
            if r.size > 0 {
                data.runs.push(Run::Data {
                    offset: r.data_offset(self.block_size),
                    len: u64::from(r.size),
                });
            }
        }
        let size = data.size;
        let unreadable = if rr.zisofs {
            Some("zisofs compression (Rock Ridge ZF) is not supported; the Joliet or plain ISO 9660 tree reads it only where the image stores the file uncompressed")
        } else if group.iter().any(|r| r.interleaved) {
            Some("interleaved files (ISO 9660 file unit size/gap) are not supported")
        } else {
            None
        };
        match unreadable {
            Some(why) => self.remember(
                node,
                Node::Unreadable {
                    offset: first.offset,
                    why,
                },
            ),
            None => self.remember(node, Node::File(data)),
        }
        Ok(Some(DirEntry {
            name,
            kind: NodeKind::File,
            size,
            node,
            meta,
        }))
    }
}

/// `LEN_SKP` when the primary tree carries Rock Ridge: the root's `.` record
/// starts its System Use area with `SP` and declares RRIP.
fn rock_ridge_skip(src: &dyn ByteSource, v: &descriptor::Volume) -> Result<Option<u8>, Error> {
    let mut head = [0u8; 1];
    src.read_exact_at(v.root_offset, &mut head, "ISO 9660 root directory")?;
    if head[0] == 0 {
        return Ok(None);
    }
    let buf = src.read_vec(
        v.root_offset,
        u64::from(head[0]),
        255,
        "ISO 9660 root directory",
    )?;
    let dot = Record::parse(&buf, v.root_offset)?;
    let Some(skip) = susp::sp_skip(dot.system_use) else {
        return Ok(None);
    };
    if susp::declares_rock_ridge(src, v.block_size, dot.system_use, dot.system_use_offset)? {
        Ok(Some(skip))
    } else {
        Ok(None)
    }
}

impl FileTree for Iso9660 {
    fn kind(&self) -> FsKind {
        self.kind
    }

    fn label(&self) -> &str {
        &self.label
    }

    fn root(&self) -> NodeId {
        self.root
    }

    fn read_dir(&self, dir: NodeId) -> Result<Vec<DirEntry>, Error> {
        let (offset, size) = match self.node(dir)? {
            Node::Dir { offset, size } => (offset, size),
            _ => {
                return Err(Error::WrongKind {
                    path: format!("<node {:#x}>", dir.0),
                    expected: "directory",
                })
            }
        };
        let buf = self
            .src
            .read_vec(offset, size, MAX_DIR_BYTES, "ISO 9660 directory")?;
        let mut out = Vec::new();
        let mut group: Vec<Record<'_>> = Vec::new();
        for rec in Records::new(&buf, offset) {
            let rec = rec?;
            if group.is_empty() && rec.is_dot_or_dotdot() {
                continue;
            }
            if let Some(prev) = group.first() {
                if prev.name != rec.name {
                    return Err(Error::Malformed {
                        format: "ISO 9660 multi-extent file",
                        offset: rec.offset,
                        detail: "a continuation record has a different name than the record it continues".into(),
                    });
                }
            }
            let more = rec.flags & FLAG_MULTI_EXTENT != 0 && !rec.is_dir();
            group.push(rec);
            if more {
                continue;
            }
            if let Some(e) = self.entry(&group)? {
                out.push(e);
            }
            group.clear();
        }
        if let Some(last) = group.first() {
            return Err(Error::Malformed {
                format: "ISO 9660 multi-extent file",
                offset: last.offset,
                detail: "the directory ends before the file's final extent record".into(),
            });
        }
        Ok(out)
    }

    fn file_data(&self, file: NodeId) -> Result<FileData, Error> {
        match self.node(file)? {
            Node::File(data) => {
                for run in &data.runs {
                    if let Run::Data { offset, len } = *run {
                        if offset
                            .checked_add(len)
                            .is_none_or(|end| end > self.src.len())
                        {
                            return Err(Error::OutOfBounds {
                                what: "ISO 9660 file extent",
                                offset,
                                len,
                                image_len: self.src.len(),
                            });
                        }
                    }
                }
                Ok(data)
            }
            Node::Unreadable { offset, why } => Err(Error::Malformed {
                format: "ISO 9660 file",
                offset,
                detail: why.into(),
            }),
            Node::Dir { .. } => Err(Error::WrongKind {
                path: format!("<node {:#x}>", file.0),
                expected: "file",
            }),
        }
    }
}
