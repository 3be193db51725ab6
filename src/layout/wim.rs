//! Splitting a Windows Imaging (WIM) file into `.swm` parts for FAT32.
//!
//! FAT32 holds files up to 4 GiB − 1, and a modern `sources/install.wim` is
//! bigger. Windows Setup accepts a *split* WIM instead (`install.swm`,
//! `install2.swm`, …), which is what DISM `/Split-Image` and
//! `wimlib-imagex split` make. Splitting never recompresses: every resource
//! (file data and image metadata alike) is copied byte for byte into exactly
//! one part, and each part gets a new header, its own lookup table and a copy
//! of the XML data. So the parts are expressed as a list of pieces — small
//! in-memory buffers and byte ranges of the source image — and nothing large
//! is ever read: only the 208-byte header and the lookup table (50 bytes per
//! stream) are loaded, and the XML is referenced, not copied.
//!
//! The assignment of resources to parts follows wimlib's `split.c` (observed
//! byte for byte against `wimlib-imagex split` in `tests/it/wim.rs`):
//! metadata resources (one per image, in lookup-table order) all go to
//! part 1; then the streams, in the order they lie in the file, are added
//! greedily, a new part starting when the current part's resources plus the
//! next one would reach the limit — unless the part is still empty, so a
//! stream bigger than the limit gets a part of its own. The limit counts
//! stored resource bytes only; header, lookup table and XML come on top.
//!
//! Each part file is: header, its streams, (part 1:) the metadata
//! resources, its lookup table (part 1: metadata entries first), the XML.
//! Headers carry the original version, compression flags and chunk size,
//! `WIM_HDR_FLAG_SPANNED`, one GUID shared by all parts, the part number and
//! the part count, and the image count; like wimlib, the boot index and the
//! boot-metadata header are cleared and the integrity table is dropped.
//! wimlib generates a random GUID for the set; we derive one from the
//! original header and lookup table (SHA-256), so the same image always
//! gives the same plan and a split set never shares its original's GUID.
//!
//! Refused (typed errors naming the offset): files that are not WIMs,
//! pipable WIMs, WIMs already split, solid (ESD/LZMS-solid) resources,
//! compressed lookup tables, tables or XML beyond the caps, ranges outside
//! the file, and inconsistent metadata entries.

use std::collections::HashSet;
use std::sync::Arc;

use crate::hash::HashAlgorithm;
use crate::image::{ByteSource, FileData, Run};
use crate::layout::fat32::Content;

/// `MSWIM\0\0\0`: the magic of a WIM header.
pub const MAGIC: [u8; 8] = *b"MSWIM\0\0\0";
/// `WLPWM\0\0\0`: wimlib's pipable WIMs, laid out for streaming; not split here.
pub const PIPABLE_MAGIC: [u8; 8] = *b"WLPWM\0\0\0";
/// Size of the WIM header.
pub const HEADER_LEN: u64 = 208;
/// Size of one lookup-table entry.
pub const ENTRY_LEN: u64 = 50;
/// Largest lookup table we load: 64 MiB is 1.3 million streams, some ten
/// times what a multi-edition Windows image has.
pub const MAX_LOOKUP_TABLE: u64 = 64 << 20;
/// Largest XML data we accept (copied by reference, but a size beyond this
/// means a corrupt header).
pub const MAX_XML: u64 = 64 << 20;
/// Part limit for a FAT32 stick: wimlib-imagex's and WoeUSB's customary
/// 3800 MiB leaves ample room for the header, lookup table and XML under
/// FAT32's 4 GiB − 1 file size.
pub const FAT32_PART_LIMIT: u64 = 3800 << 20;

/// Header flag: the WIM is one part of a split set.
pub const HDR_FLAG_SPANNED: u32 = 0x8;
const HDR_FLAG_COMPRESSION: u32 = 0x2;
const HDR_FLAG_READONLY: u32 = 0x4;
const HDR_FLAG_RP_FIX: u32 = 0x80;
/// Compression-type flags (XPRESS, LZX, LZMS, XPRESS2 and the reserved one).
const HDR_FLAGS_COMPRESS_TYPE: u32 = 0x10000 | 0x20000 | 0x40000 | 0x80000 | 0x200000;

const RES_FLAG_METADATA: u8 = 0x02;
const RES_FLAG_COMPRESSED: u8 = 0x04;
const RES_FLAG_SOLID: u8 = 0x10;
/// WIM version of solid (ESD) archives.
const VERSION_SOLID: u32 = 0xE00;

/// Why a WIM could not be split.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "the WIM is {size} bytes, shorter than its {HEADER_LEN}-byte header (truncated image?)"
    )]
    Truncated { size: u64 },
    #[error("no WIM header at byte 0 of the file (magic {found:02x?}); it is not a WIM")]
    NotWim { found: [u8; 8] },
    #[error("the WIM is pipable (wimlib's streaming layout); export it as a normal WIM first")]
    Pipable,
    #[error(
        "WIM header size field at byte 8 is {size}, not {HEADER_LEN}; unsupported or corrupt WIM"
    )]
    HeaderSize { size: u32 },
    #[error(
        "the WIM is already part {part} of a {total}-part split set; copy its parts as they are"
    )]
    AlreadySplit { part: u16, total: u16 },
    #[error("the WIM has solid (ESD/LZMS) resources ({detail}); they cannot be split into parts — export it as a non-solid WIM (wimlib-imagex export --compress=LZX) first")]
    Solid { detail: String },
    #[error("the WIM's {what} at byte {offset} ({len} bytes) lies outside the {file_len}-byte file (truncated or corrupt WIM)")]
    OutOfRange {
        what: &'static str,
        offset: u64,
        len: u64,
        file_len: u64,
    },
    #[error("the WIM's {what} of {size} bytes exceeds the limit of {limit} bytes; corrupt or hostile WIM")]
    TooLarge {
        what: &'static str,
        size: u64,
        limit: u64,
    },
    #[error("malformed WIM {what} at byte {offset}: {detail}")]
    Malformed {
        what: &'static str,
        offset: u64,
        detail: String,
    },
    #[error(
        "the WIM's data runs add up to {runs} bytes but its size is {size} bytes (corrupt image?)"
    )]
    FileData { size: u64, runs: u64 },
    #[error("the part limit must be at least 1 byte")]
    ZeroLimit,
    #[error("part {part} would be {size} bytes, more than the {limit} bytes allowed (a single resource is too large to split)")]
    PartTooLarge { part: u32, size: u64, limit: u64 },
    #[error("a WIM split into {parts} parts exceeds the 65535 parts a WIM header can count; use a larger part size")]
    TooManyParts { parts: usize },
    #[error(transparent)]
    Image(#[from] crate::image::Error),
}

/// One `.swm` file of a split WIM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitPart {
    /// `install.swm`, `install2.swm`, …
    pub name: String,
    /// The part's bytes, in order: [`Content::Bytes`] (header, lookup table)
    /// and [`Content::Source`] ranges of the image (resources, XML), wrapped
    /// in one [`Content::Concat`].
    pub content: Content,
}

impl SplitPart {
    /// The part's size in bytes.
    pub fn size(&self) -> u64 {
        self.content.size()
    }
}

/// A resource header: where a resource lies in the file and how big it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ResHdr {
    size_in_wim: u64,
    flags: u8,
    offset: u64,
    original_size: u64,
}

impl ResHdr {
    fn parse(b: &[u8]) -> ResHdr {
        let mut size = [0u8; 8];
        size[..7].copy_from_slice(&b[..7]);
        ResHdr {
            size_in_wim: u64::from_le_bytes(size),
            flags: b[7],
            offset: le64(&b[8..16]),
            original_size: le64(&b[16..24]),
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.size_in_wim.to_le_bytes()[..7]);
        out.push(self.flags);
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.original_size.to_le_bytes());
    }
}

/// One lookup-table entry: a stream or an image's metadata resource.
#[derive(Clone, Copy, Debug)]
struct Entry {
    res: ResHdr,
    refcount: u32,
    hash: [u8; 20],
}

fn le16(b: &[u8]) -> u16 {
    u16::from_le_bytes([b[0], b[1]])
}
fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}
fn le64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// The names of a split set's parts: `install.wim` gives `install.swm`,
/// `install2.swm`, … (wimlib's and DISM's scheme, which Windows Setup looks
/// for).
pub fn part_name(stem: &str, part: u32) -> String {
    if part == 1 {
        format!("{stem}.swm")
    } else {
        format!("{stem}{part}.swm")
    }
}

/// Splits `wim` (a file of image `src`) into parts named `install*.swm` —
/// the only names Windows Setup looks for — of at most `part_limit` bytes of
/// resources each (wimlib's accounting; see the module docs).
pub fn split(
    src: &dyn ByteSource,
    wim: &FileData,
    part_limit: u64,
) -> Result<Vec<SplitPart>, Error> {
    split_named(src, wim, "install", part_limit)
}

/// Splits for a FAT32 target: parts named `install*.swm` made with
/// [`FAT32_PART_LIMIT`], each checked to be under FAT32's file size limit.
pub fn split_for_fat32(src: &dyn ByteSource, wim: &FileData) -> Result<Vec<SplitPart>, Error> {
    let parts = split(src, wim, FAT32_PART_LIMIT)?;
    let max = crate::layout::fat32::MAX_FILE;
    for (i, p) in parts.iter().enumerate() {
        if p.size() > max {
            return Err(Error::PartTooLarge {
                part: i as u32 + 1,
                size: p.size(),
                limit: max,
            });
        }
    }
    Ok(parts)
}

/// Like [`split`], with part names derived from `stem` (`stem.swm`,
/// `stem2.swm`, …).
pub fn split_named(
    src: &dyn ByteSource,
    wim: &FileData,
    stem: &str,
    part_limit: u64,
) -> Result<Vec<SplitPart>, Error> {
    if part_limit == 0 {
        return Err(Error::ZeroLimit);
    }
    let file = WimFile::new(src, wim)?;
    let size = wim.size;
    if size < HEADER_LEN {
        return Err(Error::Truncated { size });
    }
    let mut hdr = [0u8; HEADER_LEN as usize];
    file.read(0, &mut hdr, "header")?;
    let magic: [u8; 8] = hdr[..8].try_into().expect("8 bytes");
    if magic == PIPABLE_MAGIC {
        return Err(Error::Pipable);
    }
    if magic != MAGIC {
        return Err(Error::NotWim { found: magic });
    }
    let hdr_size = le32(&hdr[8..12]);
    if u64::from(hdr_size) != HEADER_LEN {
        return Err(Error::HeaderSize { size: hdr_size });
    }
    let version = le32(&hdr[12..16]);
    let flags = le32(&hdr[16..20]);
    let chunk_size = le32(&hdr[20..24]);
    let part = le16(&hdr[40..42]);
    let total = le16(&hdr[42..44]);
    let image_count = le32(&hdr[44..48]);
    let table = ResHdr::parse(&hdr[48..72]);
    let xml = ResHdr::parse(&hdr[72..96]);
    if total != 1 || part != 1 || flags & HDR_FLAG_SPANNED != 0 {
        return Err(Error::AlreadySplit { part, total });
    }
    if version == VERSION_SOLID {
        return Err(Error::Solid {
            detail: format!("WIM version {version:#x} at byte 12"),
        });
    }

    // The lookup table: uncompressed (as Microsoft's software requires),
    // whole entries, inside the file, within the cap.
    if table.flags & RES_FLAG_COMPRESSED != 0 {
        return Err(Error::Malformed {
            what: "lookup table header",
            offset: 48,
            detail: "the lookup table is compressed, which Windows cannot read".into(),
        });
    }
    if table.size_in_wim > MAX_LOOKUP_TABLE {
        return Err(Error::TooLarge {
            what: "lookup table",
            size: table.size_in_wim,
            limit: MAX_LOOKUP_TABLE,
        });
    }
    if !table.size_in_wim.is_multiple_of(ENTRY_LEN) {
        return Err(Error::Malformed {
            what: "lookup table header",
            offset: 48,
            detail: format!(
                "size {} is not a multiple of {ENTRY_LEN}",
                table.size_in_wim
            ),
        });
    }
    file.check(table.offset, table.size_in_wim, "lookup table")?;
    if xml.size_in_wim > MAX_XML {
        return Err(Error::TooLarge {
            what: "XML data",
            size: xml.size_in_wim,
            limit: MAX_XML,
        });
    }
    file.check(xml.offset, xml.size_in_wim, "XML data")?;
    let mut raw = vec![0u8; table.size_in_wim as usize];
    file.read(table.offset, &mut raw, "lookup table")?;

    // Parse the entries the way wimlib reads them: metadata resources are
    // assigned to images in table order; metadata entries with no
    // references, duplicate streams, empty streams and surplus metadata
    // entries are ignored.
    let mut metadata = Vec::new();
    let mut streams = Vec::new();
    let mut seen = HashSet::new();
    for (i, e) in raw.chunks_exact(ENTRY_LEN as usize).enumerate() {
        let at = table.offset + i as u64 * ENTRY_LEN;
        let entry = Entry {
            res: ResHdr::parse(&e[..24]),
            refcount: le32(&e[26..30]),
            hash: e[30..50].try_into().expect("20 bytes"),
        };
        let entry_part = le16(&e[24..26]);
        if entry.res.flags & RES_FLAG_SOLID != 0 {
            return Err(Error::Solid {
                detail: format!("lookup table entry at byte {at}"),
            });
        }
        if entry_part != 1 {
            return Err(Error::Malformed {
                what: "lookup table entry",
                offset: at,
                detail: format!("part number {entry_part} in a one-part WIM"),
            });
        }
        file.check(entry.res.offset, entry.res.size_in_wim, "resource")?;
        if entry.res.flags & RES_FLAG_METADATA != 0 {
            match entry.refcount {
                0 => continue,
                1 => {}
                n => {
                    return Err(Error::Malformed {
                        what: "lookup table entry",
                        offset: at,
                        detail: format!("metadata resource with reference count {n}"),
                    })
                }
            }
            if metadata.len() < image_count as usize {
                metadata.push(entry);
            }
        } else if entry.res.original_size != 0 && seen.insert(entry.hash) {
            streams.push(entry);
        }
    }
    if metadata.len() != image_count as usize {
        return Err(Error::Malformed {
            what: "lookup table",
            offset: table.offset,
            detail: format!(
                "{} metadata resources for {image_count} images",
                metadata.len()
            ),
        });
    }
    if image_count == 0 {
        return Err(Error::Malformed {
            what: "header",
            offset: 44,
            detail: "the WIM holds no images".into(),
        });
    }
    // Streams in the order they lie in the file (wimlib's "sequential
    // order"), so each part reads its source range front to back.
    streams.sort_by_key(|e| e.res.offset);

    // Assign resources to parts (wimlib's add_blob_to_swm).
    let mut parts: Vec<(u64, Vec<Entry>)> = vec![(0, Vec::new())];
    for m in &metadata {
        parts[0].0 = parts[0].0.saturating_add(m.res.size_in_wim);
    }
    for s in streams {
        let cur = parts.last_mut().expect("at least one part");
        if cur.0.saturating_add(s.res.size_in_wim) >= part_limit && cur.0 != 0 {
            parts.push((0, Vec::new()));
        }
        let cur = parts.last_mut().expect("at least one part");
        cur.0 = cur.0.saturating_add(s.res.size_in_wim);
        cur.1.push(s);
    }
    let total_parts =
        u16::try_from(parts.len()).map_err(|_| Error::TooManyParts { parts: parts.len() })?;

    let guid = split_guid(&hdr, &raw);
    let out_flags = (flags & (HDR_FLAG_RP_FIX | HDR_FLAG_READONLY))
        | (flags & (HDR_FLAG_COMPRESSION | HDR_FLAGS_COMPRESS_TYPE))
        | HDR_FLAG_SPANNED;

    let mut out = Vec::with_capacity(parts.len());
    for (index, (_, part_streams)) in parts.iter().enumerate() {
        let number = index as u16 + 1;
        let mut pieces = vec![Content::Bytes(Arc::from(&[][..]))]; // header, filled below
        let mut table_out = Vec::new();
        let mut pos = HEADER_LEN;
        let mut place = |e: &Entry, pieces: &mut Vec<Content>| -> Result<Entry, Error> {
            pieces.push(Content::Source(
                file.range(e.res.offset, e.res.size_in_wim)?,
            ));
            let placed = Entry {
                res: ResHdr {
                    offset: pos,
                    ..e.res
                },
                ..*e
            };
            pos += e.res.size_in_wim;
            Ok(placed)
        };
        let mut placed_streams = Vec::with_capacity(part_streams.len());
        for s in part_streams {
            placed_streams.push(place(s, &mut pieces)?);
        }
        let mut placed_meta = Vec::new();
        if number == 1 {
            for m in &metadata {
                placed_meta.push(place(m, &mut pieces)?);
            }
        }
        for e in placed_meta.iter().chain(&placed_streams) {
            e.res.encode(&mut table_out);
            table_out.extend_from_slice(&number.to_le_bytes());
            table_out.extend_from_slice(&e.refcount.to_le_bytes());
            table_out.extend_from_slice(&e.hash);
        }
        let table_hdr = ResHdr {
            size_in_wim: table_out.len() as u64,
            flags: RES_FLAG_METADATA,
            offset: pos,
            original_size: table_out.len() as u64,
        };
        pos += table_out.len() as u64;
        pieces.push(Content::Bytes(table_out.into()));
        let xml_hdr = ResHdr { offset: pos, ..xml };
        pieces.push(Content::Source(file.range(xml.offset, xml.size_in_wim)?));

        let mut h = Vec::with_capacity(HEADER_LEN as usize);
        h.extend_from_slice(&MAGIC);
        h.extend_from_slice(&(HEADER_LEN as u32).to_le_bytes());
        h.extend_from_slice(&version.to_le_bytes());
        h.extend_from_slice(&out_flags.to_le_bytes());
        h.extend_from_slice(&chunk_size.to_le_bytes());
        h.extend_from_slice(&guid);
        h.extend_from_slice(&number.to_le_bytes());
        h.extend_from_slice(&total_parts.to_le_bytes());
        h.extend_from_slice(&image_count.to_le_bytes());
        table_hdr.encode(&mut h);
        xml_hdr.encode(&mut h);
        h.resize(HEADER_LEN as usize, 0); // boot metadata, boot index, integrity: cleared
        pieces[0] = Content::Bytes(h.into());

        out.push(SplitPart {
            name: part_name(stem, u32::from(number)),
            content: Content::Concat(pieces),
        });
    }
    Ok(out)
}

/// The GUID of the split set: the first 16 bytes of SHA-256 over a label,
/// the original header and its lookup table. Deterministic, and different
/// from the original's GUID (wimlib also gives a split set a new GUID).
fn split_guid(header: &[u8], table: &[u8]) -> [u8; 16] {
    let mut h = HashAlgorithm::Sha256.hasher();
    h.update(b"bootstick split WIM\0");
    h.update(header);
    h.update(table);
    let d = h.finish();
    d.as_bytes()[..16].try_into().expect("SHA-256 has 32 bytes")
}

/// A WIM file inside an image: reads and ranges by WIM offset, translated
/// through the file's runs.
struct WimFile<'a> {
    src: &'a dyn ByteSource,
    data: &'a FileData,
}

impl<'a> WimFile<'a> {
    fn new(src: &'a dyn ByteSource, data: &'a FileData) -> Result<Self, Error> {
        let runs = data
            .runs
            .iter()
            .try_fold(0u64, |a, r| a.checked_add(r.len()))
            .unwrap_or(u64::MAX);
        if runs != data.size {
            return Err(Error::FileData {
                size: data.size,
                runs,
            });
        }
        Ok(WimFile { src, data })
    }

    /// Checks that `len` bytes at `offset` lie inside the WIM.
    fn check(&self, offset: u64, len: u64, what: &'static str) -> Result<(), Error> {
        match offset.checked_add(len) {
            Some(end) if end <= self.data.size => Ok(()),
            _ => Err(Error::OutOfRange {
                what,
                offset,
                len,
                file_len: self.data.size,
            }),
        }
    }

    /// The image runs holding WIM bytes `offset..offset + len`.
    fn range(&self, offset: u64, len: u64) -> Result<FileData, Error> {
        self.check(offset, len, "resource")?;
        let mut runs = Vec::new();
        let mut run_start = 0u64;
        let end = offset + len;
        for run in &self.data.runs {
            let run_end = run_start + run.len();
            let s = offset.max(run_start);
            let e = end.min(run_end);
            if s < e {
                runs.push(match *run {
                    Run::Data { offset: at, .. } => Run::Data {
                        offset: at + (s - run_start),
                        len: e - s,
                    },
                    Run::Zeros { .. } => Run::Zeros { len: e - s },
                });
            }
            if run_end >= end {
                break;
            }
            run_start = run_end;
        }
        Ok(FileData { size: len, runs })
    }

    /// Reads WIM bytes at `offset` into `buf`.
    fn read(&self, offset: u64, buf: &mut [u8], what: &'static str) -> Result<(), Error> {
        self.check(offset, buf.len() as u64, what)?;
        let mut done = 0usize;
        for run in self.range(offset, buf.len() as u64)?.runs {
            let n = run.len() as usize;
            let dst = &mut buf[done..done + n];
            match run {
                Run::Data { offset, .. } => self.src.read_exact_at(offset, dst, what)?,
                Run::Zeros { .. } => dst.fill(0),
            }
            done += n;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_names_follow_wimlib() {
        assert_eq!(part_name("install", 1), "install.swm");
        assert_eq!(part_name("install", 2), "install2.swm");
        assert_eq!(part_name("install", 12), "install12.swm");
    }

    #[test]
    fn ranges_translate_through_runs() {
        let data = FileData {
            size: 30,
            runs: vec![
                Run::Data {
                    offset: 1000,
                    len: 10,
                },
                Run::Zeros { len: 5 },
                Run::Data {
                    offset: 5000,
                    len: 15,
                },
            ],
        };
        let src: Vec<u8> = vec![];
        let f = WimFile::new(&src, &data).unwrap();
        assert_eq!(
            f.range(8, 10).unwrap().runs,
            vec![
                Run::Data {
                    offset: 1008,
                    len: 2
                },
                Run::Zeros { len: 5 },
                Run::Data {
                    offset: 5000,
                    len: 3
                },
            ]
        );
        assert!(matches!(
            f.range(25, 6),
            Err(Error::OutOfRange { offset: 25, .. })
        ));
        assert!(matches!(
            f.range(u64::MAX, 2),
            Err(Error::OutOfRange { .. })
        ));
    }

    #[test]
    fn non_wims_are_refused() {
        let bytes = vec![0u8; 300];
        let data = FileData {
            size: 300,
            runs: vec![Run::Data {
                offset: 0,
                len: 300,
            }],
        };
        assert!(matches!(
            split(&bytes, &data, 1 << 20),
            Err(Error::NotWim { .. })
        ));
        let mut p = bytes.clone();
        p[..8].copy_from_slice(&PIPABLE_MAGIC);
        assert!(matches!(split(&p, &data, 1 << 20), Err(Error::Pipable)));
        let short = FileData {
            size: 100,
            runs: vec![Run::Data {
                offset: 0,
                len: 100,
            }],
        };
        assert!(matches!(
            split(&bytes, &short, 1 << 20),
            Err(Error::Truncated { size: 100 })
        ));
    }
}
