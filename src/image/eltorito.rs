//! El Torito: the boot record volume descriptor, the boot catalog, and the
//! real extent of each boot image.
//!
//! Why the size needs work: the catalog stores a boot image's length as a
//! 16-bit count of 512-byte "virtual sectors". For no-emulation BIOS loaders
//! it is deliberately short (the BIOS loads only the first 2 KiB; the loader
//! fetches the rest), for EFI images producers often write 0 or 1 (the UEFI
//! spec then means "to the end of the medium"), and anything over 32 MiB cannot
//! be expressed at all. So [`resolve_size`] looks, in order, for a file in the
//! ISO tree whose data starts at the same block, a partition entry starting at
//! the same byte (Ubuntu appends its ESP after the ISO volume and points the
//! catalog at it), the FAT boot sector of the image, and only then trusts the
//! catalog count.
//!
//! All offsets are bounded by the image length, not by the ISO volume size,
//! because appended partitions lie past the volume.

use super::partitions::{self, Partition};
use super::{fat_check, ByteSource, Error, FileTree, NodeKind, Run};
use serde::Serialize;
use std::collections::HashSet;
use std::io;

/// ISO 9660 logical block size; El Torito RBAs count these.
pub const BLOCK: u64 = 2048;

/// The most boot entries we accept in one catalog (real ones have 1–4).
pub const MAX_ENTRIES: usize = 64;

/// The most catalog sectors we follow (64 sectors = 4096 entries).
pub const MAX_CATALOG_SECTORS: u64 = 64;

/// The largest EFI boot image we read into memory to look inside it.
pub const MAX_EFI_IMAGE: u64 = 256 << 20;

/// The most directory entries [`resolve_size`] visits looking for the file of
/// a boot image (real installer trees have a few thousand).
pub const MAX_TREE_ENTRIES: usize = 200_000;

/// Boot platform of a catalog section.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Platform {
    /// 0x00, PC BIOS.
    X86,
    /// 0x01.
    PowerPc,
    /// 0x02.
    Mac,
    /// 0xEF, UEFI.
    Efi,
    Other(u8),
}

impl Platform {
    fn from_byte(b: u8) -> Platform {
        match b {
            0x00 => Platform::X86,
            0x01 => Platform::PowerPc,
            0x02 => Platform::Mac,
            0xEF => Platform::Efi,
            o => Platform::Other(o),
        }
    }
}

/// Boot media type of an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Media {
    NoEmulation,
    Floppy1_2M,
    Floppy1_44M,
    Floppy2_88M,
    HardDisk,
    Other(u8),
}

impl Media {
    fn from_byte(b: u8) -> Media {
        match b & 0x0F {
            0 => Media::NoEmulation,
            1 => Media::Floppy1_2M,
            2 => Media::Floppy1_44M,
            3 => Media::Floppy2_88M,
            4 => Media::HardDisk,
            o => Media::Other(o),
        }
    }

    /// Size of an emulated floppy, which fixes the image size.
    fn floppy_bytes(self) -> Option<u64> {
        match self {
            Media::Floppy1_2M => Some(1_228_800),
            Media::Floppy1_44M => Some(1_474_560),
            Media::Floppy2_88M => Some(2_949_120),
            _ => None,
        }
    }
}

/// One boot image described by the catalog.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BootEntry {
    /// 0 for the initial/default entry, then 1, 2, … in catalog order.
    pub index: usize,
    pub platform: Platform,
    /// Boot indicator 0x88.
    pub bootable: bool,
    pub media: Media,
    pub load_segment: u16,
    pub system_type: u8,
    /// The catalog's count of 512-byte virtual sectors (often not the real size).
    pub sector_count: u16,
    /// Block (2048 bytes) where the image starts.
    pub load_rba: u32,
}

impl BootEntry {
    /// Byte offset of the image in the ISO.
    pub fn offset(&self) -> u64 {
        u64::from(self.load_rba) * BLOCK
    }
}

/// The boot catalog.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Catalog {
    /// Block of the catalog (from the boot record volume descriptor).
    pub catalog_lba: u32,
    /// Platform of the validation entry (that of the default entry).
    pub platform: Platform,
    /// ID string of the validation entry (manufacturer).
    pub id: String,
    pub entries: Vec<BootEntry>,
}

fn malformed(offset: u64, detail: impl Into<String>) -> Error {
    Error::Malformed {
        format: "El Torito boot catalog",
        offset,
        detail: detail.into(),
    }
}

/// Finds the boot record volume descriptor among the ISO 9660 volume
/// descriptors (sector 16 up to the terminator) and parses the catalog it
/// points to. `Ok(None)` when the image has no ISO 9660 descriptors or no
/// El Torito boot record.
pub fn read_catalog(src: &dyn ByteSource) -> Result<Option<Catalog>, Error> {
    match super::descriptors::read(src)?.el_torito_catalog() {
        Some(lba) => parse_catalog(src, lba).map(Some),
        None => Ok(None),
    }
}

/// Parses the catalog at block `catalog_lba`.
pub fn parse_catalog(src: &dyn ByteSource, catalog_lba: u32) -> Result<Catalog, Error> {
    let base = u64::from(catalog_lba) * BLOCK;
    let mut sector = [0u8; 2048];
    src.read_exact_at(base, &mut sector, "El Torito boot catalog")?;
    let v = &sector[..32];
    if v[0] != 0x01 || v[30] != 0x55 || v[31] != 0xAA {
        return Err(malformed(
            base,
            format!(
                "validation entry starts {:#04x} and ends {:02x} {:02x} (want 0x01 … 55 AA)",
                v[0], v[30], v[31]
            ),
        ));
    }
    let sum = v.chunks_exact(2).fold(0u16, |s, w| {
        s.wrapping_add(u16::from_le_bytes([w[0], w[1]]))
    });
    if sum != 0 {
        return Err(malformed(
            base,
            format!("validation entry checksum leaves {sum:#06x}, want 0"),
        ));
    }
    let platform = Platform::from_byte(v[1]);
    let id = text(&v[4..28]);
    let mut entries = vec![entry(&sector[32..64], 0, platform)];

    // Sections follow the default entry: a header (0x90 more follow, 0x91
    // last), its entries, each possibly followed by extension entries (0x44).
    let mut pos = 64u64; // byte offset within the catalog
    let mut platform_now = platform;
    let mut in_section_left = 0u32;
    let mut last_header = false;
    let mut buf = sector;
    let mut buf_sector = 0u64;
    loop {
        if in_section_left == 0 && last_header {
            break;
        }
        let s = pos / BLOCK;
        if s >= MAX_CATALOG_SECTORS {
            return Err(malformed(
                base + pos,
                format!("catalog runs past {MAX_CATALOG_SECTORS} sectors"),
            ));
        }
        if s != buf_sector {
            let at = base + s * BLOCK;
            if at + BLOCK > src.len() {
                break;
            }
            src.read_exact_at(at, &mut buf, "El Torito boot catalog")?;
            buf_sector = s;
        }
        let off = (pos % BLOCK) as usize;
        let e = &buf[off..off + 32];
        pos += 32;
        if in_section_left > 0 {
            match e[0] {
                0x88 | 0x00 => {
                    if entries.len() >= MAX_ENTRIES {
                        return Err(malformed(
                            base + pos - 32,
                            format!("more than {MAX_ENTRIES} boot entries"),
                        ));
                    }
                    let idx = entries.len();
                    entries.push(entry(e, idx, platform_now));
                    in_section_left -= 1;
                }
                0x44 => {} // extension entry: selection criteria, ignored
                other => {
                    return Err(malformed(
                        base + pos - 32,
                        format!(
                            "section entry starts {other:#04x}; {in_section_left} entries were still expected"
                        ),
                    ))
                }
            }
            continue;
        }
        match e[0] {
            0x90 | 0x91 => {
                last_header = e[0] == 0x91;
                platform_now = Platform::from_byte(e[1]);
                in_section_left = u32::from(le16(e, 2));
            }
            0x44 => {}  // extension of the previous entry
            _ => break, // end of catalog (zeros) or garbage after it
        }
    }
    Ok(Catalog {
        catalog_lba,
        platform,
        id,
        entries,
    })
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn text(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).trim_end().to_owned()
}

fn entry(e: &[u8], index: usize, platform: Platform) -> BootEntry {
    BootEntry {
        index,
        platform,
        bootable: e[0] == 0x88,
        media: Media::from_byte(e[1]),
        load_segment: le16(e, 2),
        system_type: e[4],
        sector_count: le16(e, 6),
        load_rba: u32::from_le_bytes([e[8], e[9], e[10], e[11]]),
    }
}

/// Where the real size of a boot image came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "from")]
pub enum SizeSource {
    /// A file in the image's tree whose data starts at the load RBA.
    File { path: String },
    /// A partition entry starting at the image's first byte.
    Partition {
        table: partitions::Table,
        index: u32,
    },
    /// The FAT boot sector at the image's start (total sectors × sector size).
    FatBootSector,
    /// The emulated floppy size fixed by the media type.
    FloppyMedia,
    /// The catalog's sector count, nothing better being known.
    Catalog,
}

/// A boot image's extent in the image file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BootImage {
    #[serde(flatten)]
    pub entry: BootEntry,
    pub offset: u64,
    pub len: u64,
    pub size_from: SizeSource,
    /// The extent was cut at the end of the image file.
    pub truncated: bool,
}

/// Resolves the real extent of `entry`. `tree` (the image's file tree, when one
/// was read) and `parts` (partitions from [`partitions::SystemArea::partitions`])
/// are the hints; either may be empty.
pub fn resolve_size(
    src: &dyn ByteSource,
    entry: &BootEntry,
    tree: Option<&dyn FileTree>,
    parts: &[Partition],
) -> Result<BootImage, Error> {
    let offset = entry.offset();
    let image_len = src.len();
    let finish = |len: u64, size_from: SizeSource| {
        let avail = image_len.saturating_sub(offset);
        BootImage {
            entry: entry.clone(),
            offset,
            len: len.min(avail),
            size_from,
            // Past the end counts as cut off even when the size is unknown (0).
            truncated: len > avail || offset > image_len,
        }
    };
    if let Some(bytes) = entry.media.floppy_bytes() {
        return Ok(finish(bytes, SizeSource::FloppyMedia));
    }
    if let Some(tree) = tree {
        if let Some((path, size)) = file_starting_at(tree, offset)? {
            if size > 0 {
                return Ok(finish(size, SizeSource::File { path }));
            }
        }
    }
    if let Some(p) = parts.iter().find(|p| p.offset == offset && p.len > 0) {
        return Ok(finish(
            p.len,
            SizeSource::Partition {
                table: p.table,
                index: p.index,
            },
        ));
    }
    if offset < image_len {
        if let Some(len) = fat_volume_len(src, offset)? {
            return Ok(finish(len, SizeSource::FatBootSector));
        }
    }
    Ok(finish(
        u64::from(entry.sector_count) * 512,
        SizeSource::Catalog,
    ))
}

/// Finds a regular file whose first data run starts at byte `offset`.
/// Breadth-first, with a visited set against directory loops, bounded depth
/// and a bounded number of entries; damaged entries are skipped.
fn file_starting_at(tree: &dyn FileTree, offset: u64) -> Result<Option<(String, u64)>, Error> {
    let mut seen = HashSet::new();
    let mut queue = std::collections::VecDeque::from([(tree.root(), String::new(), 0usize)]);
    let mut visited = 0usize;
    while let Some((dir, path, depth)) = queue.pop_front() {
        if !seen.insert(dir) || depth > super::MAX_DEPTH {
            continue;
        }
        // A damaged directory or file is skipped: it cannot be the boot
        // image's file, and the tree scan reports the damage. I/O errors stop.
        let entries = match tree.read_dir(dir) {
            Ok(v) => v,
            Err(e @ Error::Io { .. }) => return Err(e),
            Err(_) => continue,
        };
        for e in entries {
            visited += 1;
            if visited > MAX_TREE_ENTRIES {
                return Ok(None);
            }
            let child = format!("{path}/{}", e.name);
            match e.kind {
                NodeKind::Dir => queue.push_back((e.node, child, depth + 1)),
                NodeKind::File if e.size > 0 => {
                    let data = match tree.file_data(e.node) {
                        Ok(d) => d,
                        Err(e @ Error::Io { .. }) => return Err(e),
                        Err(_) => continue,
                    };
                    if let Some(Run::Data { offset: o, .. }) = data.runs.first() {
                        if *o == offset {
                            return Ok(Some((child, data.size)));
                        }
                    }
                }
                _ => {}
            }
        }
    }
    Ok(None)
}

/// The FAT boot sector at `offset`, if it is one: its volume length. When the
/// image starts with an MBR instead (a hard-disk image), the extent of that
/// MBR's first partition counted from `offset`, as Rufus does.
pub fn fat_volume_len(src: &dyn ByteSource, offset: u64) -> Result<Option<u64>, Error> {
    let Some(end) = offset.checked_add(512) else {
        return Ok(None);
    };
    if end > src.len() {
        return Ok(None);
    }
    let mut s = [0u8; 512];
    src.read_exact_at(offset, &mut s, "boot image first sector")?;
    if let Some(len) = bpb_volume_len(&s) {
        return Ok(Some(len));
    }
    if let Some(mbr) = partitions::parse_mbr(&s) {
        if let Some(p) = mbr.entries.iter().find(|e| e.sectors > 0) {
            return Ok(Some((u64::from(p.start_lba) + u64::from(p.sectors)) * 512));
        }
    }
    Ok(None)
}

/// Total volume size from a FAT BIOS parameter block, when the sector looks
/// like one (jump instruction, sane bytes per sector and cluster, FATs).
pub fn bpb_volume_len(s: &[u8; 512]) -> Option<u64> {
    if !(s[0] == 0xEB || s[0] == 0xE9) {
        return None;
    }
    let bytes_per_sector = u64::from(le16(s, 11));
    let per_cluster = s[13];
    let reserved = le16(s, 14);
    let fats = s[16];
    if !matches!(bytes_per_sector, 512 | 1024 | 2048 | 4096)
        || per_cluster == 0
        || !per_cluster.is_power_of_two()
        || reserved == 0
        || fats == 0
    {
        return None;
    }
    let total16 = u64::from(le16(s, 19));
    let total32 = u64::from(u32::from_le_bytes([s[32], s[33], s[34], s[35]]));
    let total = if total16 != 0 { total16 } else { total32 };
    (total > 0).then_some(total * bytes_per_sector)
}

/// Reads a resolved boot image into memory, refusing images over `limit`.
pub fn read_image(src: &dyn ByteSource, img: &BootImage, limit: u64) -> Result<Vec<u8>, Error> {
    src.read_vec(img.offset, img.len, limit, "El Torito boot image")
}

/// The most bytes [`efi_loaders`] reads from one FAT volume: far more than
/// the root, `/EFI` and `/EFI/BOOT` directories take (each listing stops after
/// 4096 entries), and a bound on the work a looped cluster chain can cause.
pub const MAX_FAT_LISTING_READ: u64 = 16 << 20;

/// A window of a [`ByteSource`] as `Read + Write + Seek`, for the `fatfs`
/// crate. Writes always fail: we only ever read images.
///
/// `fatfs` follows cluster chains without loop detection: a directory whose
/// chain points back into itself and holds only deleted entries would be read
/// forever. The cursor therefore reads at most `budget` bytes in all, then
/// fails every read, which ends any `fatfs` iteration with an error.
pub struct SourceCursor<'a> {
    src: &'a dyn ByteSource,
    base: u64,
    len: u64,
    pos: u64,
    budget: u64,
}

impl<'a> SourceCursor<'a> {
    /// The bytes `base..base+len` of `src`, clipped to the image, of which at
    /// most `budget` bytes will be read in all.
    pub fn new(src: &'a dyn ByteSource, base: u64, len: u64, budget: u64) -> Self {
        let len = len.min(src.len().saturating_sub(base));
        SourceCursor {
            src,
            base,
            len,
            pos: 0,
            budget,
        }
    }
}

impl io::Read for SourceCursor<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.len.saturating_sub(self.pos);
        let n = (buf.len() as u64).min(left) as usize;
        if n == 0 {
            return Ok(0);
        }
        if n as u64 > self.budget {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "read more of the FAT volume than its directories can need; \
                 a cluster chain probably loops (corrupt or hostile volume)",
            ));
        }
        self.budget -= n as u64;
        self.src.read_raw(self.base + self.pos, &mut buf[..n])?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl io::Write for SourceCursor<'_> {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "images are read-only",
        ))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl io::Seek for SourceCursor<'_> {
    fn seek(&mut self, to: io::SeekFrom) -> io::Result<u64> {
        let new = match to {
            io::SeekFrom::Start(p) => Some(p),
            io::SeekFrom::End(d) => self.len.checked_add_signed(d),
            io::SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        match new {
            Some(p) => {
                self.pos = p;
                Ok(p)
            }
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start of the boot image",
            )),
        }
    }
}

/// A file found in a FAT volume.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FatFile {
    /// Path from the volume root with `/` separators, as stored (long names).
    pub path: String,
    pub size: u64,
}

/// A FAT volume read in place by `fatfs`.
pub type FatFs<'a> = fatfs::FileSystem<SourceCursor<'a>>;

/// Opens the FAT volume occupying `len` bytes at `offset` of `src` with
/// `fatfs`, reading at most `budget` bytes through it, after checking what
/// `fatfs` trusts: our own BPB check, then [`fat_check::check`] (geometry, the
/// FAT, directory entries down to `/EFI/BOOT/*`).
pub fn open_fat(
    src: &dyn ByteSource,
    offset: u64,
    len: u64,
    budget: u64,
) -> Result<FatFs<'_>, Error> {
    open_fat_depth(src, offset, len, budget, fat_check::LOADER_DEPTH)
}

/// [`open_fat`], with directory entries checked down to `depth` levels
/// below the root ([`fat_check::check_depth`]): for walking more of the
/// volume than `/EFI/BOOT`.
pub fn open_fat_depth(
    src: &dyn ByteSource,
    offset: u64,
    len: u64,
    budget: u64,
    depth: u32,
) -> Result<FatFs<'_>, Error> {
    let fat_error = |detail: String| Error::Malformed {
        format: "FAT volume",
        offset,
        detail,
    };
    let Some(end) = offset.checked_add(512) else {
        return Err(fat_error("offset overflows".into()));
    };
    if end > src.len() {
        return Err(fat_error("the volume lies outside the image".into()));
    }
    let mut s = [0u8; 512];
    src.read_exact_at(offset, &mut s, "FAT boot sector")?;
    let Some(vol_len) = bpb_volume_len(&s) else {
        return Err(fat_error(
            "no FAT boot sector (BIOS parameter block)".into(),
        ));
    };
    fat_check::check_depth(src, offset, &s, depth)
        .map_err(|e| fat_error(format!("not a safe FAT volume: {e}")))?;
    let cursor = SourceCursor::new(src, offset, len.max(vol_len), budget);
    fatfs::FileSystem::new(cursor, fatfs::FsOptions::new())
        .map_err(|e| fat_error(format!("not a readable FAT volume: {e}")))
}

/// Lists the removable-media EFI loaders (`/EFI/BOOT/BOOT*.EFI`, any case) in
/// the FAT volume occupying `len` bytes at `offset` of `src`. An error means
/// the bytes are not a readable FAT volume.
pub fn efi_loaders(src: &dyn ByteSource, offset: u64, len: u64) -> Result<Vec<FatFile>, Error> {
    let fat_error = |detail: String| Error::Malformed {
        format: "FAT volume",
        offset,
        detail,
    };
    let fs = open_fat(src, offset, len, MAX_FAT_LISTING_READ)?;
    let root = fs.root_dir();
    let mut loaders = Vec::new();
    let read_error = |path: &str, e: io::Error| fat_error(format!("cannot read {path}: {e}"));
    let Some(efi) = find_dir(&root, "EFI").map_err(|e| read_error("/", e))? else {
        return Ok(loaders);
    };
    let Some(boot) = find_dir(&efi.1, "BOOT").map_err(|e| read_error(&format!("/{}", efi.0), e))?
    else {
        return Ok(loaders);
    };
    for e in boot.1.iter().take(4096) {
        let e = e.map_err(|e| fat_error(format!("cannot read /{}/{}: {e}", efi.0, boot.0)))?;
        let name = e.file_name();
        let upper = name.to_ascii_uppercase();
        if e.is_file() && upper.starts_with("BOOT") && upper.ends_with(".EFI") {
            loaders.push(FatFile {
                path: format!("/{}/{}/{name}", efi.0, boot.0),
                size: e.len(),
            });
        }
    }
    Ok(loaders)
}

/// Bounds on [`efi_tree`]: what an EFI boot image's tree may hold before it
/// is refused as damaged or hostile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TreeLimits {
    /// The largest single file.
    pub file_bytes: u64,
    /// All files' bytes together.
    pub total_bytes: u64,
    /// Files and directories together.
    pub entries: usize,
}

/// One entry of a FAT volume's tree, with its contents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeEntry {
    /// Path components from the root, as stored (long names).
    pub path: Vec<String>,
    /// `None` for a directory, else the file's bytes.
    pub bytes: Option<Vec<u8>>,
}

/// Why [`efi_tree`] could not read a FAT volume's tree.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// Not a (safe, readable) FAT volume, or a directory or file that
    /// cannot be read.
    #[error(transparent)]
    Image(#[from] Error),
    /// A file larger than [`TreeLimits::file_bytes`].
    #[error("{path} in the FAT volume is {size} bytes, more than the {limit}-byte limit")]
    FileTooLarge { path: String, size: u64, limit: u64 },
    /// More than [`TreeLimits::total_bytes`] or [`TreeLimits::entries`].
    #[error("the FAT volume holds more than {limit} {what}")]
    TooMuch { what: &'static str, limit: u64 },
    /// Directories nested deeper than [`fat_check::TREE_DEPTH`].
    #[error("{path} in the FAT volume is nested more than {limit} directories deep")]
    TooDeep { path: String, limit: u32 },
}

/// Reads the whole tree of the FAT volume occupying `len` bytes at
/// `offset` of `src` (an EFI boot image), parents before children, within
/// `limits`. Every directory down to [`fat_check::TREE_DEPTH`] is checked
/// first (clusters in range, no chain loops, no directory cycles), so the
/// walk ends; the bounds stop a volume that claims more than its size can
/// hold (cluster chains shared between files).
pub fn efi_tree(
    src: &dyn ByteSource,
    offset: u64,
    len: u64,
    limits: TreeLimits,
) -> Result<Vec<TreeEntry>, TreeError> {
    let fat_error = |detail: String| Error::Malformed {
        format: "FAT volume",
        offset,
        detail,
    };
    let fs = open_fat_depth(
        src,
        offset,
        len,
        limits.total_bytes + MAX_FAT_LISTING_READ,
        fat_check::TREE_DEPTH,
    )?;
    let mut out = Vec::new();
    let mut total = 0u64;
    let mut stack = vec![(Vec::<String>::new(), fs.root_dir())];
    while let Some((path, dir)) = stack.pop() {
        let shown = |name: &str| {
            let mut p = path.join("/");
            p.insert(0, '/');
            if !name.is_empty() {
                if p.len() > 1 {
                    p.push('/');
                }
                p.push_str(name);
            }
            p
        };
        let mut subdirs = Vec::new();
        for e in dir.iter() {
            let e = e.map_err(|e| fat_error(format!("cannot read {}: {e}", shown(""))))?;
            let name = e.file_name();
            if name == "." || name == ".." {
                continue;
            }
            if out.len() >= limits.entries {
                return Err(TreeError::TooMuch {
                    what: "files and directories",
                    limit: limits.entries as u64,
                });
            }
            let mut child = path.clone();
            child.push(name.clone());
            if e.is_dir() {
                if child.len() > fat_check::TREE_DEPTH as usize {
                    return Err(TreeError::TooDeep {
                        path: shown(&name),
                        limit: fat_check::TREE_DEPTH,
                    });
                }
                out.push(TreeEntry {
                    path: child.clone(),
                    bytes: None,
                });
                subdirs.push((child, e.to_dir()));
            } else if e.is_file() {
                let size = e.len();
                if size > limits.file_bytes {
                    return Err(TreeError::FileTooLarge {
                        path: shown(&name),
                        size,
                        limit: limits.file_bytes,
                    });
                }
                total += size;
                if total > limits.total_bytes {
                    return Err(TreeError::TooMuch {
                        what: "bytes of files",
                        limit: limits.total_bytes,
                    });
                }
                let mut bytes = Vec::with_capacity(size as usize);
                io::Read::read_to_end(&mut io::Read::take(e.to_file(), size + 1), &mut bytes)
                    .map_err(|err| fat_error(format!("cannot read {}: {err}", shown(&name))))?;
                if bytes.len() as u64 != size {
                    return Err(fat_error(format!(
                        "{} holds {} bytes, its directory entry says {size}",
                        shown(&name),
                        bytes.len()
                    ))
                    .into());
                }
                out.push(TreeEntry {
                    path: child,
                    bytes: Some(bytes),
                });
            }
        }
        // Depth-first, in directory order: reversed onto the stack.
        stack.extend(subdirs.into_iter().rev());
    }
    Ok(out)
}

type FatDir<'a, 'b> = fatfs::Dir<'a, SourceCursor<'b>>;

/// The subdirectory `name` (any case) of `dir` among its first 4096 entries;
/// an error when the directory cannot be read that far.
fn find_dir<'a, 'b>(
    dir: &FatDir<'a, 'b>,
    name: &str,
) -> io::Result<Option<(String, FatDir<'a, 'b>)>> {
    for e in dir.iter().take(4096) {
        let e = e?;
        if e.is_dir() && e.file_name().eq_ignore_ascii_case(name) {
            return Ok(Some((e.file_name(), e.to_dir())));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog_image(entries: &[[u8; 32]]) -> Vec<u8> {
        let mut v = vec![0u8; 20 * 2048];
        let pvd = 16 * 2048;
        v[pvd] = 1;
        v[pvd + 1..pvd + 6].copy_from_slice(b"CD001");
        let brvd = 17 * 2048;
        v[brvd + 1..brvd + 6].copy_from_slice(b"CD001");
        v[brvd + 6] = 1;
        v[brvd + 7..brvd + 30].copy_from_slice(b"EL TORITO SPECIFICATION");
        v[brvd + 71..brvd + 75].copy_from_slice(&19u32.to_le_bytes());
        let term = 18 * 2048;
        v[term] = 255;
        v[term + 1..term + 6].copy_from_slice(b"CD001");
        let cat = 19 * 2048;
        let mut val = [0u8; 32];
        val[0] = 1;
        val[30] = 0x55;
        val[31] = 0xAA;
        let sum = val.chunks_exact(2).fold(0u16, |s, w| {
            s.wrapping_add(u16::from_le_bytes([w[0], w[1]]))
        });
        val[28..30].copy_from_slice(&0u16.wrapping_sub(sum).to_le_bytes());
        v[cat..cat + 32].copy_from_slice(&val);
        for (i, e) in entries.iter().enumerate() {
            v[cat + 32 * (i + 1)..cat + 32 * (i + 2)].copy_from_slice(e);
        }
        v
    }

    #[test]
    fn default_and_efi_section() {
        let mut def = [0u8; 32];
        def[0] = 0x88;
        def[6] = 4;
        def[8] = 30;
        let mut hdr = [0u8; 32];
        hdr[0] = 0x91;
        hdr[1] = 0xEF;
        hdr[2] = 1;
        let mut efi = [0u8; 32];
        efi[0] = 0x88;
        efi[6] = 1;
        efi[8] = 31;
        let mut img = catalog_image(&[def, hdr, efi]);
        img.resize(40 * 2048, 0);
        let cat = read_catalog(&img).unwrap().unwrap();
        assert_eq!(cat.catalog_lba, 19);
        assert_eq!(cat.entries.len(), 2);
        assert_eq!(cat.entries[0].platform, Platform::X86);
        assert_eq!(cat.entries[0].sector_count, 4);
        assert_eq!(cat.entries[1].platform, Platform::Efi);
        assert_eq!(cat.entries[1].load_rba, 31);
        // No tree, no partition, no FAT: the catalog count is all there is.
        let r = resolve_size(&img, &cat.entries[1], None, &[]).unwrap();
        assert_eq!((r.len, &r.size_from), (512, &SizeSource::Catalog));
        assert!(!r.truncated);
        // An image cut short reports the truncation.
        img.truncate(31 * 2048 + 100);
        let r = resolve_size(&img, &cat.entries[1], None, &[]).unwrap();
        assert_eq!((r.len, r.truncated), (100, true));
    }

    /// A 64-sector FAT12 volume (one FAT, 16 root entries, one sector per
    /// cluster) whose root holds the directory `EFI` at cluster 2, all of
    /// whose entries are deleted; `efi_next` is the FAT entry of cluster 2.
    fn fat12_with_efi_dir(efi_next: u16) -> Vec<u8> {
        let mut v = vec![0u8; 64 * 512];
        v[..3].copy_from_slice(&[0xEB, 0x3C, 0x90]);
        v[3..11].copy_from_slice(b"MSWIN4.1");
        v[11..13].copy_from_slice(&512u16.to_le_bytes());
        v[13] = 1; // sectors per cluster
        v[14..16].copy_from_slice(&1u16.to_le_bytes()); // reserved sectors
        v[16] = 1; // FATs
        v[17..19].copy_from_slice(&16u16.to_le_bytes()); // root entries
        v[19..21].copy_from_slice(&64u16.to_le_bytes()); // total sectors
        v[21] = 0xF8;
        v[22..24].copy_from_slice(&1u16.to_le_bytes()); // sectors per FAT
        v[510] = 0x55;
        v[511] = 0xAA;
        // FAT (sector 1): media entries, then cluster 2 -> efi_next.
        v[512..515].copy_from_slice(&[0xF8, 0xFF, 0xFF]);
        v[515] = efi_next as u8;
        v[516] = (efi_next >> 8) as u8 & 0x0F;
        // Root directory (sector 2): EFI, a directory at cluster 2.
        v[1024..1035].copy_from_slice(b"EFI        ");
        v[1024 + 11] = 0x10;
        v[1024 + 26] = 2;
        // Cluster 2 (sector 3): sixteen deleted entries.
        for e in 0..16 {
            v[1536 + 32 * e] = 0xE5;
        }
        v
    }

    #[test]
    fn fat_directory_with_looped_cluster_chain_is_an_error() {
        // Control: the chain ends, EFI is empty, there are no loaders.
        let img = fat12_with_efi_dir(0xFFF);
        assert_eq!(efi_loaders(&img, 0, img.len() as u64).unwrap(), vec![]);
        // Cluster 2 chains to itself: fatfs read the deleted entries of /EFI
        // forever (a hang of `inspect` and of the system_area and eltorito
        // fuzz targets, see docs/testing.md).
        let img = fat12_with_efi_dir(2);
        match efi_loaders(&img, 0, img.len() as u64) {
            Err(Error::Malformed { detail, offset, .. }) => {
                assert_eq!(offset, 0);
                assert!(detail.contains("cluster 2 loops"), "{detail}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    /// A directory that holds itself as a subdirectory: walking the whole
    /// tree would never end (or, depth-bounded, copy 16 nested copies of
    /// it). The check names the cycle before `fatfs` reads anything.
    #[test]
    fn a_directory_cycle_is_refused_before_the_tree_is_read() {
        let limits = TreeLimits {
            file_bytes: 1 << 20,
            total_bytes: 1 << 20,
            entries: 1000,
        };
        let img = fat12_with_efi_dir(0xFFF);
        let tree = efi_tree(&img, 0, img.len() as u64, limits).unwrap();
        assert_eq!(
            tree,
            [TreeEntry {
                path: vec!["EFI".into()],
                bytes: None
            }]
        );
        // /EFI/LOOP is /EFI again (cluster 2).
        let mut img = fat12_with_efi_dir(0xFFF);
        img[1536..1547].copy_from_slice(b"LOOP       ");
        img[1536 + 11] = 0x10;
        img[1536 + 26] = 2;
        match efi_tree(&img, 0, img.len() as u64, limits) {
            Err(TreeError::Image(Error::Malformed { detail, .. })) => {
                assert!(detail.contains("directory cycle"), "{detail}")
            }
            other => panic!("unexpected {other:?}"),
        }
        // Finding loaders looks two levels deep and sees the cycle too.
        assert!(efi_loaders(&img, 0, img.len() as u64).is_err());
    }

    #[test]
    fn bad_checksum_is_reported_with_offset() {
        let mut img = catalog_image(&[]);
        img[19 * 2048 + 4] ^= 1;
        match read_catalog(&img) {
            Err(Error::Malformed { offset, .. }) => assert_eq!(offset, 19 * 2048),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn section_count_beyond_limit_is_refused() {
        let mut hdr = [0u8; 32];
        hdr[0] = 0x91;
        hdr[2] = 0xFF;
        hdr[3] = 0xFF;
        let mut e = [0u8; 32];
        e[0] = 0x88;
        let mut entries = vec![[0u8; 32], hdr];
        entries.extend(std::iter::repeat_n(e, 61));
        let mut img = catalog_image(&entries);
        // A second catalog sector full of entries: 1 + 61 + 64 > MAX_ENTRIES.
        for _ in 0..64 {
            img.extend_from_slice(&e);
        }
        match read_catalog(&img) {
            Err(Error::Malformed { detail, .. }) => assert!(detail.contains("more than")),
            other => panic!("unexpected {other:?}"),
        }
        // Without the second sector the catalog simply ends at the image end.
        img.truncate(20 * 2048);
        assert_eq!(read_catalog(&img).unwrap().unwrap().entries.len(), 62);
    }
}
