//! A FAT32 formatter that compiles a file tree into plan extents.
//!
//! Nothing is formatted in place and nothing is read back: the whole volume
//! is laid out up front — reserved sectors (boot sector, FSInfo and their
//! backups), two identical FATs, then directories and files in contiguous
//! cluster runs, in increasing target order — and emitted as [`Extent`]s.
//! File contents stay where they are in the source image ([`Extent::Source`]
//! ranges, taken from the image readers' [`FileData`]) or are small
//! in-memory buffers; metadata is built in memory. The write engine then
//! streams the volume like any raw image.
//!
//! The on-disk format follows Microsoft's FAT specification (fatgen103):
//! BPB field offsets, the FAT size formula, FSInfo signatures, 32-byte
//! directory entries, long-file-name (LFN) entries with the short-name
//! checksum, and "basis name + numeric tail" 8.3 aliases. The sizing choices
//! (512-byte sectors, 32 reserved sectors, 2 FATs, the cluster size by
//! volume size) are those of Windows' and `mkfs.fat`'s defaults.
//!
//! Because every file and directory is one contiguous cluster run, each FAT
//! chain is `first, first+1, …, EOC`, and the used part of the FAT is small:
//! 4 bytes per used cluster. The free part is written as zeros (a stale FAT
//! would otherwise mark free clusters used); free data clusters are left
//! untouched, as any formatter does.

use std::collections::HashSet;
use std::sync::Arc;

use crate::image::{FileData, Run};
use crate::plan::{Extent, Plan, PlanBuilder, PlanError};

/// Bytes per sector. FAT allows others; USB sticks and firmware expect 512.
pub const SECTOR: u64 = 512;
/// Reserved sectors before the first FAT (fatgen103 / Windows: 32).
const RESERVED: u32 = 32;
/// Number of FATs.
const FATS: u32 = 2;
/// Fewest clusters a FAT32 volume may have: below this, drivers take it for
/// FAT16 (fatgen103 "FAT type determination").
pub const MIN_CLUSTERS: u32 = 65525;
/// Most clusters a FAT32 volume may have (28-bit entries minus reserved values).
pub const MAX_CLUSTERS: u32 = 0x0FFF_FFF5;
/// The largest file FAT32 can hold (the size field is 32 bits).
pub const MAX_FILE: u64 = u32::MAX as u64;
/// Most entries in one directory (a 16-bit index; fatgen103).
const MAX_DIR_ENTRIES: usize = 65536;
/// The deepest directory nesting accepted.
pub const MAX_DEPTH: usize = 64;
/// End-of-chain mark.
const EOC: u32 = 0x0FFF_FFFF;
/// Media descriptor of fixed media.
const MEDIA: u8 = 0xF8;

const ATTR_DIR: u8 = 0x10;
const ATTR_ARCHIVE: u8 = 0x20;
const ATTR_VOLUME_ID: u8 = 0x08;
const ATTR_LFN: u8 = 0x0F;

/// Why a volume could not be laid out.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("file name {name:?} in {dir} cannot be stored on FAT32: {reason}; rename it")]
    InvalidName {
        dir: String,
        name: String,
        reason: &'static str,
    },
    #[error("{path} occurs twice (FAT32 names are case-insensitive); rename one of them")]
    DuplicateName { path: String },
    #[error("{path} is {size} bytes; FAT32 holds files up to 4 GiB - 1 (split it, or use another filesystem)")]
    FileTooLarge { path: String, size: u64 },
    #[error("{path}: its data runs add up to {runs} bytes but its size is {size} bytes (corrupt image?)")]
    FileDataMismatch { path: String, size: u64, runs: u64 },
    #[error("{path} has {entries} directory entries; a FAT directory holds at most 65536")]
    DirectoryTooLarge { path: String, entries: usize },
    #[error("{path} is nested deeper than {MAX_DEPTH} directories")]
    TooDeep { path: String },
    #[error("cluster size {size} is not a power of two from 512 to 32768 bytes")]
    BadClusterSize { size: u32 },
    #[error("a FAT32 volume of {size} bytes with {cluster_size}-byte clusters has {clusters} clusters; FAT32 needs {MIN_CLUSTERS} to {MAX_CLUSTERS} (use a larger volume or smaller clusters)")]
    ClusterCount {
        size: u64,
        cluster_size: u32,
        clusters: u64,
    },
    #[error("a FAT32 volume holds at most 2 TiB - 512 bytes (32-bit sector count), not {size} bytes; use a smaller partition")]
    TooLarge { size: u64 },
    #[error("the files need {needed} bytes of clusters but the FAT32 volume has {available}; use a larger stick")]
    VolumeFull { needed: u64, available: u64 },
    #[error(transparent)]
    Plan(#[from] PlanError),
}

/// The contents of a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Content {
    /// Bytes of the plan's source image, as an image reader reports them.
    Source(FileData),
    /// Bytes built in memory (small generated files).
    Bytes(Arc<[u8]>),
    /// The listed contents one after another: files assembled from built
    /// bytes and image ranges (a split WIM part: new header and lookup
    /// table, resources copied from the image).
    Concat(Vec<Content>),
}

impl Content {
    /// The file's size in bytes.
    pub fn size(&self) -> u64 {
        match self {
            Content::Source(d) => d.size,
            Content::Bytes(b) => b.len() as u64,
            Content::Concat(parts) => parts.iter().fold(0u64, |a, c| a.saturating_add(c.size())),
        }
    }

    /// Appends this content's extents to `builder` from target byte `pos`
    /// on; returns the byte after the last one.
    fn push(&self, mut pos: u64, builder: &mut PlanBuilder) -> Result<u64, Error> {
        match self {
            Content::Bytes(b) => {
                builder.push(pos, Extent::Bytes(b.clone()))?;
                pos += b.len() as u64;
            }
            Content::Source(data) => {
                for run in &data.runs {
                    let e = match *run {
                        Run::Data { offset, len } => Extent::Source { offset, len },
                        Run::Zeros { len } => Extent::Zeros { len },
                    };
                    let len = e.len();
                    builder.push(pos, e)?;
                    pos += len;
                }
            }
            Content::Concat(parts) => {
                for c in parts {
                    pos = c.push(pos, builder)?;
                }
            }
        }
        Ok(pos)
    }
}

/// A directory to put on the volume: named files and subdirectories, in the
/// order they are listed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dir {
    entries: Vec<(String, Node)>,
}

/// A directory entry's target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    File(Content),
    Dir(Dir),
}

impl Dir {
    pub fn new() -> Dir {
        Dir::default()
    }

    /// Adds a file. Names are checked when the volume is laid out.
    pub fn file(&mut self, name: &str, content: Content) -> &mut Dir {
        self.entries.push((name.to_owned(), Node::File(content)));
        self
    }

    /// Adds a subdirectory.
    pub fn dir(&mut self, name: &str, dir: Dir) -> &mut Dir {
        self.entries.push((name.to_owned(), Node::Dir(dir)));
        self
    }

    /// The entries in order.
    pub fn entries(&self) -> &[(String, Node)] {
        &self.entries
    }

    /// The entry named `name` ignoring case, as the volume compares names
    /// (two such names in one directory are refused when it is laid out).
    pub fn entry_mut(&mut self, name: &str) -> Option<&mut Node> {
        let want = name.to_lowercase();
        self.entries
            .iter_mut()
            .find(|(n, _)| n.to_lowercase() == want)
            .map(|(_, node)| node)
    }
}

/// Volume parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Volume size in bytes (rounded down to whole sectors).
    pub size: u64,
    /// Volume label, up to 11 characters; empty for none. Stored uppercase.
    pub label: String,
    /// Volume serial number.
    pub volume_id: u32,
    /// Sectors before the volume on its disk (the partition's start LBA),
    /// recorded in the BPB; 0 for an unpartitioned volume.
    pub hidden_sectors: u32,
    /// Cluster size in bytes; `None` picks the Windows/mkfs.fat default.
    pub cluster_size: Option<u32>,
    /// Timestamp of every file and directory, in seconds since the Unix
    /// epoch (UTC); clamped to FAT's 1980–2107 range.
    pub mtime: i64,
}

impl Options {
    /// A volume of `size` bytes with default cluster size, no partition offset.
    pub fn new(size: u64, label: &str) -> Options {
        Options {
            size,
            label: label.to_owned(),
            volume_id: 0x2026_0001,
            hidden_sectors: 0,
            cluster_size: None,
            mtime: 0,
        }
    }
}

/// The default cluster size for a volume (fatgen103's table, as mkfs.fat
/// and Windows use it; 64 KiB clusters are avoided).
pub fn default_cluster_size(size: u64) -> u32 {
    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;
    match size {
        s if s <= 260 * MIB => 512,
        s if s <= 8 * GIB => 4096,
        s if s <= 16 * GIB => 8192,
        s if s <= 32 * GIB => 16384,
        _ => 32768,
    }
}

/// Where everything of a volume lies, in sectors from the volume's start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub total_sectors: u32,
    pub sectors_per_cluster: u32,
    pub reserved_sectors: u32,
    pub fat_sectors: u32,
    pub clusters: u32,
}

impl Geometry {
    /// Computes the layout of a volume: the FAT size by fatgen103's formula,
    /// then the reserved area grown so the data region starts on a cluster
    /// boundary (aligned clusters are faster on flash).
    pub fn new(size: u64, cluster_size: Option<u32>) -> Result<Geometry, Error> {
        let cluster = cluster_size.unwrap_or_else(|| default_cluster_size(size));
        if !cluster.is_power_of_two() || !(512..=32768).contains(&cluster) {
            return Err(Error::BadClusterSize { size: cluster });
        }
        let spc = cluster / SECTOR as u32;
        let total = u32::try_from(size / SECTOR).map_err(|_| Error::TooLarge { size })?;
        let count_err = |clusters: u64| Error::ClusterCount {
            size,
            cluster_size: cluster,
            clusters,
        };
        if total <= RESERVED + 2 * spc {
            return Err(count_err(0));
        }
        let t1 = u64::from(total - RESERVED);
        let t2 = (256 * u64::from(spc) + u64::from(FATS)) / 2;
        let fat_sectors = t1.div_ceil(t2) as u32;
        let mut reserved = RESERVED;
        let data_start = reserved + FATS * fat_sectors;
        reserved += (spc - data_start % spc) % spc;
        let data_start = u64::from(reserved) + u64::from(FATS * fat_sectors);
        let clusters = u64::from(total).saturating_sub(data_start) / u64::from(spc);
        if !(u64::from(MIN_CLUSTERS)..=u64::from(MAX_CLUSTERS)).contains(&clusters) {
            return Err(count_err(clusters));
        }
        let clusters = clusters as u32;
        debug_assert!(u64::from(fat_sectors) * 128 >= u64::from(clusters) + 2);
        Ok(Geometry {
            total_sectors: total,
            sectors_per_cluster: spc,
            reserved_sectors: reserved,
            fat_sectors,
            clusters,
        })
    }

    pub fn cluster_bytes(&self) -> u64 {
        u64::from(self.sectors_per_cluster) * SECTOR
    }

    /// Byte offset of the data region (cluster 2) from the volume start.
    pub fn data_offset(&self) -> u64 {
        (u64::from(self.reserved_sectors) + u64::from(FATS) * u64::from(self.fat_sectors)) * SECTOR
    }

    /// Byte offset of cluster `n` (n ≥ 2) from the volume start.
    pub fn cluster_offset(&self, n: u32) -> u64 {
        self.data_offset() + u64::from(n - 2) * self.cluster_bytes()
    }
}

/// What a laid-out volume holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    pub geometry: Geometry,
    /// Clusters taken by directories and files.
    pub used_clusters: u32,
    pub files: usize,
    pub dirs: usize,
}

/// Lays out a FAT32 volume holding `root` and returns its plan (the volume
/// starting at target byte 0). Free data clusters are not part of the plan.
pub fn plan(root: &Dir, options: &Options) -> Result<(Plan, Summary), Error> {
    let mut b = Plan::builder();
    let summary = build(root, options, 0, &mut b)?;
    Ok((b.build(), summary))
}

/// Lays out a FAT32 volume holding `root` at target byte `at` of `builder`
/// (a partition's start), appending its extents in increasing order.
pub fn build(
    root: &Dir,
    options: &Options,
    at: u64,
    builder: &mut PlanBuilder,
) -> Result<Summary, Error> {
    let geo = Geometry::new(options.size, options.cluster_size)?;
    let stamp = DosTime::from_unix(options.mtime);

    // 1. Flatten the tree in pre-order; every object gets one cluster run.
    let mut objects = Vec::new();
    flatten(root, "/", None, 0, !options.label.is_empty(), &mut objects)?;
    let cluster = geo.cluster_bytes();
    let mut next = 2u64;
    for o in &mut objects {
        let bytes = match &o.kind {
            ObjKind::Dir { entries_bytes, .. } => (*entries_bytes).max(1),
            ObjKind::File(c) => c.size(),
        };
        let n = bytes.div_ceil(cluster);
        if n > 0 {
            o.first = next;
            o.clusters = n;
            next += n;
        }
    }
    let used = next - 2;
    if used > u64::from(geo.clusters) {
        return Err(Error::VolumeFull {
            needed: used * cluster,
            available: u64::from(geo.clusters) * cluster,
        });
    }
    let used = used as u32;

    // 2. Reserved sectors: boot sector, FSInfo, their backups at 6 and 7.
    let free = geo.clusters - used;
    let next_free = if free > 0 { used + 2 } else { u32::MAX };
    let boot = boot_sector(&geo, options);
    let info = fsinfo(free, next_free);
    let mut reserved = vec![0u8; geo.reserved_sectors as usize * SECTOR as usize];
    reserved[..512].copy_from_slice(&boot);
    reserved[512..1024].copy_from_slice(&info);
    reserved[6 * 512..7 * 512].copy_from_slice(&boot);
    reserved[7 * 512..8 * 512].copy_from_slice(&info);
    builder.push(at, Extent::bytes(reserved))?;

    // 3. Two identical FATs: chains for the used clusters, zeros after.
    let mut fat = Vec::with_capacity((used as usize + 2) * 4);
    fat.extend_from_slice(&(0x0FFF_FF00 | u32::from(MEDIA)).to_le_bytes());
    fat.extend_from_slice(&EOC.to_le_bytes());
    for o in &objects {
        for i in 0..o.clusters {
            let v = if i + 1 == o.clusters {
                EOC
            } else {
                (o.first + i + 1) as u32
            };
            fat.extend_from_slice(&v.to_le_bytes());
        }
    }
    let fat: Arc<[u8]> = fat.into();
    let fat_bytes = u64::from(geo.fat_sectors) * SECTOR;
    for i in 0..u64::from(FATS) {
        let start = at + u64::from(geo.reserved_sectors) * SECTOR + i * fat_bytes;
        builder.push(start, Extent::Bytes(fat.clone()))?;
        builder.push(
            start + fat.len() as u64,
            Extent::Zeros {
                len: fat_bytes - fat.len() as u64,
            },
        )?;
    }

    // 4. Directories and files, in cluster order.
    let mut files = 0;
    let mut dirs = 0;
    for o in &objects {
        if o.clusters == 0 {
            files += 1;
            continue;
        }
        let start = at + geo.cluster_offset(o.first as u32);
        let run_bytes = o.clusters * cluster;
        let written = match &o.kind {
            ObjKind::Dir { .. } => {
                dirs += 1;
                let mut bytes = directory_bytes(o, &objects, stamp, &options.label);
                bytes.resize(run_bytes as usize, 0);
                builder.push(start, Extent::bytes(bytes))?;
                run_bytes
            }
            ObjKind::File(content) => {
                files += 1;
                content.push(start, builder)? - start
            }
        };
        // Zero the slack of the last cluster: no stale bytes of the stick
        // appear past a file's end (and verification covers whole clusters).
        builder.push(
            start + written,
            Extent::Zeros {
                len: run_bytes - written,
            },
        )?;
    }
    Ok(Summary {
        geometry: geo,
        used_clusters: used,
        files,
        dirs,
    })
}

// ---------------------------------------------------------------- the tree

enum ObjKind<'a> {
    Dir {
        /// Children: name, short name, LFN entry count, object index.
        children: Vec<Child>,
        parent: Option<usize>,
        entries_bytes: u64,
    },
    File(&'a Content),
}

struct Child {
    name: String,
    short: [u8; 11],
    lfn: bool,
    index: usize,
    is_dir: bool,
}

struct Obj<'a> {
    kind: ObjKind<'a>,
    first: u64,
    clusters: u64,
}

fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// Appends `dir` and (recursively) everything in it to `objects` in
/// pre-order; returns `dir`'s index.
fn flatten<'a>(
    dir: &'a Dir,
    path: &str,
    parent: Option<usize>,
    depth: usize,
    label: bool,
    objects: &mut Vec<Obj<'a>>,
) -> Result<usize, Error> {
    if depth > MAX_DEPTH {
        return Err(Error::TooDeep {
            path: path.to_owned(),
        });
    }
    let me = objects.len();
    objects.push(Obj {
        kind: ObjKind::Dir {
            children: Vec::new(),
            parent,
            entries_bytes: 0,
        },
        first: 0,
        clusters: 0,
    });
    let mut seen = HashSet::new();
    let mut shorts = HashSet::new();
    let mut children = Vec::with_capacity(dir.entries.len());
    // The root holds the volume label entry; others hold "." and "..".
    let mut entry_count = match parent {
        None => usize::from(label),
        Some(_) => 2,
    };
    // Short names of names that are their own 8.3 form are reserved first,
    // so a generated alias never takes them.
    for (name, _) in &dir.entries {
        if let Some(short) = exact_short_name(name) {
            shorts.insert(short);
        }
    }
    for (name, node) in &dir.entries {
        check_name(path, name)?;
        if !seen.insert(name.to_lowercase()) {
            return Err(Error::DuplicateName {
                path: join(path, name),
            });
        }
        let (short, lfn) = match exact_short_name(name) {
            Some(s) => (s, false),
            None => (alias(name, &shorts), true),
        };
        shorts.insert(short);
        if lfn {
            entry_count += name.encode_utf16().count().div_ceil(13);
        }
        entry_count += 1;
        let child_path = join(path, name);
        let (index, is_dir) = match node {
            Node::Dir(d) => (
                flatten(d, &child_path, Some(me), depth + 1, false, objects)?,
                true,
            ),
            Node::File(c) => {
                check_content(&child_path, c)?;
                objects.push(Obj {
                    kind: ObjKind::File(c),
                    first: 0,
                    clusters: 0,
                });
                (objects.len() - 1, false)
            }
        };
        children.push(Child {
            name: name.clone(),
            short,
            lfn,
            index,
            is_dir,
        });
    }
    if entry_count > MAX_DIR_ENTRIES {
        return Err(Error::DirectoryTooLarge {
            path: path.to_owned(),
            entries: entry_count,
        });
    }
    objects[me].kind = ObjKind::Dir {
        children,
        parent,
        entries_bytes: entry_count as u64 * 32,
    };
    Ok(me)
}

fn check_content(path: &str, c: &Content) -> Result<(), Error> {
    let size = c.size();
    if size > MAX_FILE {
        return Err(Error::FileTooLarge {
            path: path.to_owned(),
            size,
        });
    }
    if let Content::Concat(parts) = c {
        for p in parts {
            check_content(path, p)?;
        }
    }
    if let Content::Source(d) = c {
        let runs = d
            .runs
            .iter()
            .try_fold(0u64, |a, r| a.checked_add(r.len()))
            .unwrap_or(u64::MAX);
        if runs != d.size {
            return Err(Error::FileDataMismatch {
                path: path.to_owned(),
                size: d.size,
                runs,
            });
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- names

/// Refuses names Windows and the FAT specification do not allow in LFNs.
fn check_name(dir: &str, name: &str) -> Result<(), Error> {
    let bad = |reason| {
        Err(Error::InvalidName {
            dir: dir.to_owned(),
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("empty name");
    }
    if name == "." || name == ".." {
        return bad("reserved name");
    }
    if name.encode_utf16().count() > 255 {
        return bad("longer than 255 UTF-16 characters");
    }
    if name
        .chars()
        .any(|c| (c as u32) < 0x20 || "\"*/:<>?\\|\u{7f}".contains(c))
    {
        return bad("contains a control character or one of \" * / : < > ? \\ |");
    }
    if name.ends_with('.') || name.ends_with(' ') {
        return bad("ends with a dot or a space (Windows drops them)");
    }
    Ok(())
}

/// Characters allowed in 8.3 names besides A–Z and 0–9 (fatgen103).
fn short_char_ok(c: u8) -> bool {
    c.is_ascii_uppercase() || c.is_ascii_digit() || b"$%'-_@~`!(){}^#&".contains(&c)
}

/// The 11-byte short name of `name` when `name` already is a valid,
/// uppercase 8.3 name (then no LFN entries are needed).
fn exact_short_name(name: &str) -> Option<[u8; 11]> {
    let (base, ext) = match name.rfind('.') {
        Some(i) => (&name[..i], &name[i + 1..]),
        None => (name, ""),
    };
    let ok = |s: &str, max: usize| s.len() <= max && s.bytes().all(short_char_ok);
    if base.is_empty() || !ok(base, 8) || !ok(ext, 3) || (name.contains('.') && ext.is_empty()) {
        return None;
    }
    let mut out = [b' '; 11];
    out[..base.len()].copy_from_slice(base.as_bytes());
    out[8..8 + ext.len()].copy_from_slice(ext.as_bytes());
    Some(out)
}

/// A unique 8.3 alias for a name that needs LFN entries: fatgen103's basis
/// name (uppercase; spaces and leading dots dropped; other characters that
/// 8.3 names cannot hold become `_`) with a numeric tail `~N` when the
/// conversion lost anything or the basis is taken.
fn alias(name: &str, taken: &HashSet<[u8; 11]>) -> [u8; 11] {
    let mut lossy = false;
    let mut convert = |s: &str| -> Vec<u8> {
        let mut out = Vec::new();
        for c in s.chars() {
            if c == ' ' || c == '.' {
                lossy = true;
                continue;
            }
            let u = c.to_ascii_uppercase();
            if u.is_ascii() && short_char_ok(u as u8) {
                out.push(u as u8);
            } else {
                lossy = true;
                out.push(b'_');
            }
        }
        out
    };
    let trimmed = name.trim_start_matches('.');
    let (base, ext) = match trimmed.rfind('.') {
        Some(i) => (&trimmed[..i], &trimmed[i + 1..]),
        None => (trimmed, ""),
    };
    let mut base = convert(base);
    let mut ext = convert(ext);
    if trimmed.len() != name.len() {
        lossy = true;
    }
    if base.len() > 8 || ext.len() > 3 {
        lossy = true;
    }
    if base.is_empty() {
        base.push(b'_');
        lossy = true;
    }
    ext.truncate(3);
    let make = |base: &[u8]| {
        let mut out = [b' '; 11];
        out[..base.len()].copy_from_slice(base);
        out[8..8 + ext.len()].copy_from_slice(&ext);
        out
    };
    if !lossy {
        let candidate = make(&base);
        if !taken.contains(&candidate) {
            return candidate;
        }
    }
    for n in 1u32.. {
        let tail = format!("~{n}");
        let keep = base.len().min(8 - tail.len());
        let mut b = base[..keep].to_vec();
        b.extend_from_slice(tail.as_bytes());
        let candidate = make(&b);
        if !taken.contains(&candidate) {
            return candidate;
        }
    }
    unreachable!("a directory holds at most 65536 entries, so some ~N is free")
}

/// The checksum LFN entries carry of their short name (fatgen103).
fn lfn_checksum(short: &[u8; 11]) -> u8 {
    short
        .iter()
        .fold(0u8, |sum, &c| sum.rotate_right(1).wrapping_add(c))
}

// ---------------------------------------------------------------- encoding

/// A FAT timestamp (local time in FAT's eyes; we store UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct DosTime {
    date: u16,
    time: u16,
}

impl DosTime {
    fn from_unix(secs: i64) -> DosTime {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        // Civil-from-days (Howard Hinnant's algorithm).
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        if year < 1980 {
            return DosTime {
                date: (1 << 5) | 1,
                time: 0,
            };
        }
        if year > 2107 {
            return DosTime {
                date: (127 << 9) | (12 << 5) | 31,
                time: (23 << 11) | (59 << 5) | 29,
            };
        }
        DosTime {
            date: (((year - 1980) << 9) | (month << 5) | day) as u16,
            time: (((rem / 3600) << 11) | ((rem / 60 % 60) << 5) | (rem % 60 / 2)) as u16,
        }
    }
}

fn short_entry(short: &[u8; 11], attr: u8, cluster: u32, size: u32, t: DosTime) -> [u8; 32] {
    let mut e = [0u8; 32];
    e[..11].copy_from_slice(short);
    e[11] = attr;
    e[14..16].copy_from_slice(&t.time.to_le_bytes()); // creation time
    e[16..18].copy_from_slice(&t.date.to_le_bytes()); // creation date
    e[18..20].copy_from_slice(&t.date.to_le_bytes()); // last access date
    e[20..22].copy_from_slice(&((cluster >> 16) as u16).to_le_bytes());
    e[22..24].copy_from_slice(&t.time.to_le_bytes()); // write time
    e[24..26].copy_from_slice(&t.date.to_le_bytes()); // write date
    e[26..28].copy_from_slice(&(cluster as u16).to_le_bytes());
    e[28..32].copy_from_slice(&size.to_le_bytes());
    e
}

/// The LFN entries of `name`, in on-disk order (last part first).
fn lfn_entries(name: &str, short: &[u8; 11]) -> Vec<[u8; 32]> {
    let units: Vec<u16> = name.encode_utf16().collect();
    let n = units.len().div_ceil(13);
    let sum = lfn_checksum(short);
    let mut out = Vec::with_capacity(n);
    for ord in (1..=n).rev() {
        let mut part = [0xFFFFu16; 13];
        let chunk = &units[(ord - 1) * 13..units.len().min(ord * 13)];
        part[..chunk.len()].copy_from_slice(chunk);
        if chunk.len() < 13 {
            part[chunk.len()] = 0;
        }
        let mut e = [0u8; 32];
        e[0] = ord as u8 | if ord == n { 0x40 } else { 0 };
        e[11] = ATTR_LFN;
        e[13] = sum;
        let slots = (1..11)
            .step_by(2)
            .chain((14..26).step_by(2))
            .chain((28..32).step_by(2));
        for (u, at) in part.iter().zip(slots) {
            e[at..at + 2].copy_from_slice(&u.to_le_bytes());
        }
        out.push(e);
    }
    out
}

fn volume_label(label: &str) -> [u8; 11] {
    let mut out = [b' '; 11];
    for (o, c) in out
        .iter_mut()
        .zip(label.chars().map(|c| c.to_ascii_uppercase()).map(|c| {
            if c.is_ascii() && (short_char_ok(c as u8) || c == ' ') {
                c as u8
            } else {
                b'_'
            }
        }))
    {
        *o = c;
    }
    out
}

fn directory_bytes(o: &Obj, objects: &[Obj], t: DosTime, label: &str) -> Vec<u8> {
    let ObjKind::Dir {
        children,
        parent,
        entries_bytes,
    } = &o.kind
    else {
        unreachable!("called on directories only")
    };
    let mut out = Vec::with_capacity(*entries_bytes as usize);
    match parent {
        None => {
            if !label.is_empty() {
                out.extend_from_slice(&short_entry(&volume_label(label), ATTR_VOLUME_ID, 0, 0, t));
            }
        }
        Some(p) => {
            let dot = *b".          ";
            let dotdot = *b"..         ";
            out.extend_from_slice(&short_entry(&dot, ATTR_DIR, o.first as u32, 0, t));
            // ".." of a first-level directory points at cluster 0 (the root).
            let up = if *p == 0 { 0 } else { objects[*p].first as u32 };
            out.extend_from_slice(&short_entry(&dotdot, ATTR_DIR, up, 0, t));
        }
    }
    for c in children {
        if c.lfn {
            for e in lfn_entries(&c.name, &c.short) {
                out.extend_from_slice(&e);
            }
        }
        let child = &objects[c.index];
        let (attr, size) = match &child.kind {
            ObjKind::Dir { .. } => (ATTR_DIR, 0),
            ObjKind::File(content) => (ATTR_ARCHIVE, content.size() as u32),
        };
        debug_assert_eq!(c.is_dir, attr == ATTR_DIR);
        out.extend_from_slice(&short_entry(&c.short, attr, child.first as u32, size, t));
    }
    out
}

fn boot_sector(g: &Geometry, o: &Options) -> [u8; 512] {
    let mut s = [0u8; 512];
    s[0..3].copy_from_slice(&[0xEB, 0x58, 0x90]);
    s[3..11].copy_from_slice(b"MSWIN4.1");
    s[11..13].copy_from_slice(&(SECTOR as u16).to_le_bytes());
    s[13] = g.sectors_per_cluster as u8;
    s[14..16].copy_from_slice(&(g.reserved_sectors as u16).to_le_bytes());
    s[16] = FATS as u8;
    // 17..19 RootEntCnt 0, 19..21 TotSec16 0, 22..24 FATSz16 0: FAT32.
    s[21] = MEDIA;
    s[24..26].copy_from_slice(&63u16.to_le_bytes()); // sectors per track
    s[26..28].copy_from_slice(&255u16.to_le_bytes()); // heads
    s[28..32].copy_from_slice(&o.hidden_sectors.to_le_bytes());
    s[32..36].copy_from_slice(&g.total_sectors.to_le_bytes());
    s[36..40].copy_from_slice(&g.fat_sectors.to_le_bytes());
    // 40 ExtFlags 0 (FATs mirrored), 42 FSVer 0.
    s[44..48].copy_from_slice(&2u32.to_le_bytes()); // root cluster
    s[48..50].copy_from_slice(&1u16.to_le_bytes()); // FSInfo sector
    s[50..52].copy_from_slice(&6u16.to_le_bytes()); // backup boot sector
    s[64] = 0x80; // drive number
    s[66] = 0x29; // extended boot signature
    s[67..71].copy_from_slice(&o.volume_id.to_le_bytes());
    let label = if o.label.is_empty() {
        *b"NO NAME    "
    } else {
        volume_label(&o.label)
    };
    s[71..82].copy_from_slice(&label);
    s[82..90].copy_from_slice(b"FAT32   ");
    // Boot code (at 0x5A, where the jump lands): INT 18h, "no bootable
    // volume here, try the next device", should a BIOS ever run it.
    s[90..92].copy_from_slice(&[0xCD, 0x18]);
    s[510] = 0x55;
    s[511] = 0xAA;
    s
}

fn fsinfo(free: u32, next_free: u32) -> [u8; 512] {
    let mut s = [0u8; 512];
    s[0..4].copy_from_slice(&0x4161_5252u32.to_le_bytes());
    s[484..488].copy_from_slice(&0x6141_7272u32.to_le_bytes());
    s[488..492].copy_from_slice(&free.to_le_bytes());
    s[492..496].copy_from_slice(&next_free.to_le_bytes());
    s[508..512].copy_from_slice(&0xAA55_0000u32.to_le_bytes());
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fat_size_follows_fatgen103_and_data_is_cluster_aligned() {
        for (size, cluster) in [
            (64u64 << 20, None),
            (300 << 20, None),
            (33 << 30, None),
            (1 << 30, Some(512)),
        ] {
            let g = Geometry::new(size, cluster).unwrap();
            assert!(g.clusters >= MIN_CLUSTERS);
            assert!(u64::from(g.fat_sectors) * 128 >= u64::from(g.clusters) + 2);
            assert_eq!(g.data_offset() % g.cluster_bytes(), 0);
            assert!(
                g.data_offset() + u64::from(g.clusters) * g.cluster_bytes()
                    <= u64::from(g.total_sectors) * SECTOR
            );
        }
        assert_eq!(
            Geometry::new(33 << 30, None).unwrap().cluster_bytes(),
            32768
        );
    }

    #[test]
    fn too_few_clusters_is_refused() {
        assert!(matches!(
            Geometry::new(16 << 20, None),
            Err(Error::ClusterCount { .. })
        ));
        assert!(matches!(
            Geometry::new(3 << 40, None),
            Err(Error::TooLarge { .. })
        ));
        assert!(matches!(
            Geometry::new(1 << 30, Some(3000)),
            Err(Error::BadClusterSize { size: 3000 })
        ));
    }

    #[test]
    fn short_names_and_aliases() {
        let none = HashSet::new();
        assert_eq!(&exact_short_name("README.TXT").unwrap(), b"README  TXT");
        assert_eq!(&exact_short_name("EFI").unwrap(), b"EFI        ");
        assert_eq!(exact_short_name("readme.txt"), None);
        assert_eq!(exact_short_name("A.B.C"), None);
        assert_eq!(exact_short_name("TOOLONGNAME.TXT"), None);
        assert_eq!(&alias("readme.txt", &none), b"README  TXT");
        assert_eq!(&alias("Long File Name.text", &none), b"LONGFI~1TEX");
        assert_eq!(&alias(".bashrc", &none), b"BASHRC~1   ");
        assert_eq!(&alias("a+b.c", &none), b"A_B~1   C  ");
        let mut taken = HashSet::new();
        taken.insert(*b"LONGFI~1TEX");
        assert_eq!(&alias("Long File Name 2.text", &taken), b"LONGFI~2TEX");
        taken.insert(*b"README  TXT");
        assert_eq!(&alias("ReadMe.txt", &taken), b"README~1TXT");
    }

    #[test]
    fn lfn_checksum_matches_what_mtools_writes() {
        // Short names and the checksum byte (offset 13) of their LFN
        // entries, read from a FAT32 volume made by mkfs.fat 4.2 with files
        // copied in by mcopy (mtools 4.0): an outside implementation, not
        // the algorithm recomputed here.
        for (short, sum) in [
            (b"ARATHE~1TXT", 0x3D), // "A rather long file name.txt"
            (b"LONGFI~1TEX", 0xCF), // "Long File Name 2.text"
        ] {
            assert_eq!(
                lfn_checksum(short),
                sum,
                "{}",
                String::from_utf8_lossy(short)
            );
        }
    }

    #[test]
    fn lfn_entries_split_terminate_and_pad() {
        let e = lfn_entries("abcdefghijklmn", b"ABCDEF~1   ");
        assert_eq!(e.len(), 2);
        assert_eq!(e[0][0], 0x42); // last part first, flagged
        assert_eq!(e[1][0], 0x01);
        // The second part holds "n", then 0x0000, then 0xFFFF padding.
        assert_eq!(&e[0][1..7], &[b'n', 0, 0, 0, 0xFF, 0xFF]);
    }

    #[test]
    fn dos_time_conversion() {
        // 2024-02-29 13:45:58 UTC.
        let t = DosTime::from_unix(1_709_214_358);
        assert_eq!(t.date, ((2024 - 1980) << 9) | (2 << 5) | 29);
        assert_eq!(t.time, (13 << 11) | (45 << 5) | 29);
        assert_eq!(DosTime::from_unix(0).date, (1 << 5) | 1);
    }

    #[test]
    fn bad_trees_are_refused() {
        let opts = Options::new(64 << 20, "T");
        let mut d = Dir::new();
        d.file("a:b", Content::Bytes(Arc::from(&b"x"[..])));
        assert!(matches!(plan(&d, &opts), Err(Error::InvalidName { .. })));
        let mut d = Dir::new();
        d.file("Same", Content::Bytes(Arc::from(&b""[..])));
        d.dir("same", Dir::new());
        assert!(matches!(plan(&d, &opts), Err(Error::DuplicateName { .. })));
        let mut d = Dir::new();
        d.file(
            "big",
            Content::Source(FileData {
                size: 1 << 32,
                runs: vec![Run::Zeros { len: 1 << 32 }],
            }),
        );
        assert!(matches!(plan(&d, &opts), Err(Error::FileTooLarge { .. })));
        let mut d = Dir::new();
        d.file(
            "short",
            Content::Source(FileData {
                size: 10,
                runs: vec![Run::Data { offset: 0, len: 9 }],
            }),
        );
        assert!(matches!(
            plan(&d, &opts),
            Err(Error::FileDataMismatch { .. })
        ));
        let mut d = Dir::new();
        d.file(
            "huge",
            Content::Source(FileData {
                size: 100 << 20,
                runs: vec![Run::Zeros { len: 100 << 20 }],
            }),
        );
        assert!(matches!(plan(&d, &opts), Err(Error::VolumeFull { .. })));
    }

    /// Applies a plan without a source (all `Bytes`/`Zeros`) to a buffer.
    fn apply(plan: &Plan, size: u64) -> Vec<u8> {
        let mut v = vec![0u8; size as usize];
        for p in plan.pieces() {
            let at = p.at as usize;
            match &p.extent {
                Extent::Bytes(b) => v[at..at + b.len()].copy_from_slice(b),
                Extent::Zeros { len } => v[at..at + *len as usize].fill(0),
                Extent::Source { .. } => panic!("no source in this test"),
            }
        }
        v
    }

    fn name_strategy() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        // Short and long names, mixed case, dots, spaces, characters 8.3
        // names cannot hold, non-ASCII; often colliding after conversion.
        prop_oneof![
            "[A-Z0-9]{1,8}(\\.[A-Z]{1,3})?",
            "[a-zA-Z]{1,12}(\\.[a-z]{1,4})?",
            "[a-c .+é日]{1,20}[a-c]",
            "(Long|long|LONG) name [0-9]{1,2}\\.txt",
            "\\.[a-z]{1,5}",
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]
        /// Whatever the names, `fatfs` lists exactly them (long names), with
        /// unique short names, and each file's contents.
        #[test]
        fn fatfs_reads_back_any_names(names in proptest::collection::vec(name_strategy(), 1..40)) {
            use std::io::Read;
            let mut seen = HashSet::new();
            let names: Vec<String> = names
                .into_iter()
                .filter(|n| check_name("/", n).is_ok() && seen.insert(n.to_lowercase()))
                .collect();
            let mut root = Dir::new();
            let mut sub = Dir::new();
            for (i, n) in names.iter().enumerate() {
                root.file(n, Content::Bytes(Arc::from(format!("{i}:{n}").as_bytes())));
                sub.file(n, Content::Bytes(Arc::from(&b""[..])));
            }
            root.dir("sub dir", sub);
            let size = 34u64 << 20;
            let (plan, _) = plan(&root, &Options::new(size, "PROP")).unwrap();
            let img = apply(&plan, size);
            let fs = fatfs::FileSystem::new(std::io::Cursor::new(img), fatfs::FsOptions::new()).unwrap();
            let mut shorts = HashSet::new();
            let mut got = Vec::new();
            for e in fs.root_dir().iter() {
                let e = e.unwrap();
                proptest::prop_assert!(shorts.insert(e.short_file_name()), "duplicate short name");
                if e.is_file() {
                    let mut body = String::new();
                    e.to_file().read_to_string(&mut body).unwrap();
                    got.push((e.file_name(), body));
                }
            }
            let want: Vec<(String, String)> = names
                .iter()
                .enumerate()
                .map(|(i, n)| (n.clone(), format!("{i}:{n}")))
                .collect();
            proptest::prop_assert_eq!(got, want);
            let sub_names: Vec<String> = fs
                .root_dir()
                .open_dir("sub dir")
                .unwrap()
                .iter()
                .map(|e| e.unwrap().file_name())
                .filter(|n| n != "." && n != "..")
                .collect();
            proptest::prop_assert_eq!(sub_names, names);
        }
    }
}
