//! The system area: MBR, GPT and Apple partition map, as found at the start of
//! disk images and of hybrid ISOs.
//!
//! Why this exists: whether a hybrid ISO can boot after a byte-for-byte copy
//! depends on what its producer put in the first sectors (boot code in the MBR,
//! an EFI System Partition entry), and El Torito boot images appended after the
//! ISO volume (Ubuntu) are only sized by a partition entry. Every table is read
//! through [`ByteSource`] with bounds checks; sizes derived from fields are
//! capped before allocating.
//!
//! The MBR and GPT are parsed here rather than with `mbrman`/`gpt` (see
//! `docs/decisions.md`): hybrid ISOs deliberately break the rules those crates
//! enforce (a partition starting at LBA 0, an ESP nested inside partition 1),
//! and `gpt` 4.1 asserts (panics) on an entry size other than 128 and does not
//! check the entry-array CRC, both unacceptable for hostile input.

use super::{ByteSource, Error};
use serde::Serialize;

/// The MBR partition type of an EFI System Partition.
pub const MBR_TYPE_ESP: u8 = 0xEF;
/// The MBR partition type of a GPT protective entry.
pub const MBR_TYPE_GPT_PROTECTIVE: u8 = 0xEE;

/// GPT type GUID of an EFI System Partition (C12A7328-F81F-11D2-BA4B-00A0C93EC93B).
pub const GPT_TYPE_ESP: Guid = Guid([
    0x28, 0x73, 0x2A, 0xC1, 0x1F, 0xF8, 0xD2, 0x11, 0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E, 0xC9, 0x3B,
]);

/// The largest GPT entry array we agree to read (the usual one is 16 KiB).
pub const MAX_GPT_ARRAY_BYTES: u64 = 1 << 20;

/// The largest number of Apple partition map entries we follow.
pub const MAX_APM_ENTRIES: u32 = 256;

/// The most extended boot records we read, over all extended partitions of an
/// MBR (so at most this many logical partitions, numbered 5 onwards).
pub const MAX_EBRS: usize = 128;

/// True for the MBR types of an extended partition (a chain of EBRs): 0x05
/// (CHS), 0x0F (LBA) and 0x85 (Linux extended).
pub fn is_extended(kind: u8) -> bool {
    matches!(kind, 0x05 | 0x0F | 0x85)
}

/// A GUID as stored on disk (mixed-endian: the first three fields are
/// little-endian). Displayed in the usual upper-case textual form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    /// True for the all-zero GUID (an unused GPT entry).
    pub fn is_nil(&self) -> bool {
        self.0 == [0; 16]
    }

    /// A short name for the partition types installer images use.
    pub fn type_name(&self) -> Option<&'static str> {
        const NAMES: &[(&str, &str)] = &[
            ("C12A7328-F81F-11D2-BA4B-00A0C93EC93B", "EFI System"),
            (
                "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7",
                "Microsoft basic data",
            ),
            ("E3C9E316-0B5C-4DB8-817D-F92DF00215AE", "Microsoft reserved"),
            ("0FC63DAF-8483-4772-8E79-3D69D8477DE4", "Linux filesystem"),
            ("48465300-0000-11AA-AA11-00306543ECAC", "Apple HFS/HFS+"),
            ("21686148-6449-6E6F-744E-656564454649", "BIOS boot"),
            ("0657FD6D-A4AB-43C4-84E5-0933C84B4F4F", "Linux swap"),
            (
                "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709",
                "Linux root (x86-64)",
            ),
        ];
        let text = self.to_string();
        NAMES.iter().find(|(g, _)| *g == text).map(|(_, n)| *n)
    }
}

impl std::fmt::Display for Guid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:02X}{:02X}{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-",
            b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9]
        )?;
        for x in &b[10..] {
            write!(f, "{x:02X}")?;
        }
        Ok(())
    }
}

impl Serialize for Guid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One primary MBR partition entry (empty entries are left out).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MbrEntry {
    /// 1..=4, the slot in the table.
    pub index: u8,
    /// Status byte 0x80 (active).
    pub active: bool,
    /// The partition type byte (0xEE protective, 0xEF ESP, 0x0C FAT32, …).
    #[serde(rename = "type")]
    pub kind: u8,
    /// First sector (512-byte units).
    pub start_lba: u32,
    /// Length in 512-byte sectors.
    pub sectors: u32,
}

/// The master boot record in sector 0.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Mbr {
    /// Bytes 0..440 hold something other than zeros: boot code a BIOS can run.
    pub boot_code: bool,
    /// Bytes 440..444.
    pub disk_signature: u32,
    /// Non-empty primary entries.
    pub entries: Vec<MbrEntry>,
    /// Logical partitions found by following the EBR chain of each extended
    /// entry (empty for an MBR parsed from a lone sector).
    pub logical: Vec<LogicalEntry>,
}

/// A logical partition: entry 1 of an extended boot record (EBR).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LogicalEntry {
    /// 5, 6, …: the number Linux (and `sfdisk`) gives it, in chain order.
    pub index: u32,
    /// Status byte 0x80.
    pub active: bool,
    /// The partition type byte.
    #[serde(rename = "type")]
    pub kind: u8,
    /// Absolute first sector (the EBR's LBA plus the entry's relative start).
    pub start_lba: u64,
    /// Length in 512-byte sectors.
    pub sectors: u32,
    /// The sector of the EBR that describes it.
    pub ebr_lba: u64,
}

impl Mbr {
    /// True when the table is a GPT protective MBR (an 0xEE entry).
    pub fn is_protective(&self) -> bool {
        self.entries
            .iter()
            .any(|e| e.kind == MBR_TYPE_GPT_PROTECTIVE)
    }
}

/// One used GPT partition entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GptEntry {
    /// 1-based slot in the entry array.
    pub index: u32,
    pub type_guid: Guid,
    /// Short name of the type when known ("EFI System", …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub type_name: Option<&'static str>,
    pub unique_guid: Guid,
    /// First and last logical block, inclusive.
    pub first_lba: u64,
    pub last_lba: u64,
    pub attributes: u64,
    pub name: String,
}

impl GptEntry {
    /// True for an EFI System Partition.
    pub fn is_esp(&self) -> bool {
        self.type_guid == GPT_TYPE_ESP
    }
}

/// State of the backup GPT header.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "state", content = "detail")]
pub enum BackupState {
    /// Found at the alternate LBA with a good CRC.
    Valid,
    /// The alternate LBA lies past the end of the image.
    OutsideImage,
    /// Present but not a valid header.
    Invalid(String),
}

/// A GUID partition table whose primary header and entry array passed their CRCs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Gpt {
    /// The logical block size the table is laid out for (512, 2048 or 4096).
    pub block_size: u32,
    pub disk_guid: Guid,
    pub header_lba: u64,
    pub alternate_lba: u64,
    pub first_usable_lba: u64,
    pub last_usable_lba: u64,
    pub entry_array_lba: u64,
    pub entry_count: u32,
    pub entry_size: u32,
    pub entries: Vec<GptEntry>,
    pub backup: BackupState,
}

/// One Apple partition map entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ApmEntry {
    pub index: u32,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// Start and length in blocks of the map's block size.
    pub start_block: u32,
    pub blocks: u32,
}

/// An Apple partition map (hybrid ISOs from xorriso and isohybrid --mac).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Apm {
    pub block_size: u32,
    pub entries: Vec<ApmEntry>,
}

/// Which table a [`Partition`] came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Table {
    Mbr,
    Gpt,
    Apm,
}

impl Table {
    /// "MBR", "GPT" or "APM", for messages.
    pub fn name(self) -> &'static str {
        match self {
            Table::Mbr => "MBR",
            Table::Gpt => "GPT",
            Table::Apm => "APM",
        }
    }
}

/// A partition from any table, in bytes: what El Torito size resolution and
/// the classifier need without caring about the table kind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Partition {
    pub table: Table,
    pub index: u32,
    pub offset: u64,
    pub len: u64,
    /// Typed as an EFI System Partition (MBR 0xEF or the GPT ESP GUID).
    pub esp: bool,
}

/// Everything found in the system area. Tables that are present but broken
/// are reported in `problems` rather than failing the whole read, so that an
/// image with a damaged backup structure can still be inspected.
#[derive(Debug, Default)]
pub struct SystemArea {
    pub mbr: Option<Mbr>,
    pub gpt: Option<Gpt>,
    pub apm: Option<Apm>,
    pub problems: Vec<Error>,
}

impl SystemArea {
    /// All partitions of all tables, in bytes, those lying (partly) outside
    /// the image left out.
    pub fn partitions(&self, image_len: u64) -> Vec<Partition> {
        let mut out = Vec::new();
        if let Some(mbr) = &self.mbr {
            for e in &mbr.entries {
                if e.kind == MBR_TYPE_GPT_PROTECTIVE {
                    continue;
                }
                out.push(Partition {
                    table: Table::Mbr,
                    index: u32::from(e.index),
                    offset: u64::from(e.start_lba) * 512,
                    len: u64::from(e.sectors) * 512,
                    esp: e.kind == MBR_TYPE_ESP,
                });
            }
            for e in &mbr.logical {
                out.push(Partition {
                    table: Table::Mbr,
                    index: e.index,
                    offset: e.start_lba * 512,
                    len: u64::from(e.sectors) * 512,
                    esp: e.kind == MBR_TYPE_ESP,
                });
            }
        }
        if let Some(gpt) = &self.gpt {
            let bs = u64::from(gpt.block_size);
            for e in &gpt.entries {
                let (Some(offset), Some(blocks)) = (
                    e.first_lba.checked_mul(bs),
                    e.last_lba
                        .checked_sub(e.first_lba)
                        .and_then(|d| d.checked_add(1)),
                ) else {
                    continue;
                };
                let Some(len) = blocks.checked_mul(bs) else {
                    continue;
                };
                out.push(Partition {
                    table: Table::Gpt,
                    index: e.index,
                    offset,
                    len,
                    esp: e.is_esp(),
                });
            }
        }
        if let Some(apm) = &self.apm {
            let bs = u64::from(apm.block_size);
            for e in &apm.entries {
                if e.kind == "Apple_partition_map" || e.kind == "Apple_Free" {
                    continue;
                }
                out.push(Partition {
                    table: Table::Apm,
                    index: e.index,
                    offset: u64::from(e.start_block) * bs,
                    len: u64::from(e.blocks) * bs,
                    esp: false,
                });
            }
        }
        out.retain(|p| {
            p.len > 0
                && p.offset
                    .checked_add(p.len)
                    .is_some_and(|end| end <= image_len)
        });
        out
    }
}

/// Reads the MBR, GPT (512-, 2048- and 4096-byte blocks) and Apple partition
/// map of `src`. Only an I/O error fails the call; malformed tables land in
/// [`SystemArea::problems`].
pub fn read_system_area(src: &dyn ByteSource) -> Result<SystemArea, Error> {
    let mut area = SystemArea::default();
    match read_mbr(src) {
        Ok(m) => area.mbr = m,
        Err(e) => keep_or_fail(&mut area.problems, e)?,
    }
    if let Some(mbr) = &mut area.mbr {
        for e in read_logical(src, &mbr.entries, &mut mbr.logical) {
            keep_or_fail(&mut area.problems, e)?;
        }
    }
    match read_gpt(src) {
        Ok(g) => area.gpt = g,
        Err(e) => keep_or_fail(&mut area.problems, e)?,
    }
    match read_apm(src) {
        Ok(a) => area.apm = a,
        Err(e) => keep_or_fail(&mut area.problems, e)?,
    }
    Ok(area)
}

/// Structural problems are kept; I/O errors on the medium are not recoverable.
fn keep_or_fail(problems: &mut Vec<Error>, e: Error) -> Result<(), Error> {
    match e {
        Error::Io { .. } | Error::Open { .. } => Err(e),
        other => {
            problems.push(other);
            Ok(())
        }
    }
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn le64(b: &[u8], at: usize) -> u64 {
    let mut a = [0; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}
fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}
fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Parses sector 0 as an MBR. `Ok(None)` when the image is shorter than a
/// sector or sector 0 lacks the `55 AA` signature.
pub fn read_mbr(src: &dyn ByteSource) -> Result<Option<Mbr>, Error> {
    if src.len() < 512 {
        return Ok(None);
    }
    let mut s = [0u8; 512];
    src.read_exact_at(0, &mut s, "master boot record")?;
    Ok(parse_mbr(&s))
}

/// Parses a 512-byte sector as an MBR (also used for MBRs inside El Torito
/// hard-disk images).
pub fn parse_mbr(s: &[u8; 512]) -> Option<Mbr> {
    if s[510] != 0x55 || s[511] != 0xAA {
        return None;
    }
    let entries = (0..4u8)
        .filter_map(|i| {
            let e = &s[446 + 16 * usize::from(i)..][..16];
            let kind = e[4];
            let start_lba = le32(e, 8);
            let sectors = le32(e, 12);
            (kind != 0 || sectors != 0).then_some(MbrEntry {
                index: i + 1,
                active: e[0] == 0x80,
                kind,
                start_lba,
                sectors,
            })
        })
        .collect();
    Some(Mbr {
        boot_code: s[..440].iter().any(|&b| b != 0),
        disk_signature: le32(s, 440),
        entries,
        logical: Vec::new(),
    })
}

/// Follows the EBR chain of every extended entry in `primaries`, in table
/// order as Linux does, appending logical partitions (numbered from 5) to
/// `out`. Returns the problems met; each ends the chain it was found in,
/// keeping the partitions read before it. At most [`MAX_EBRS`] EBRs are read
/// in all.
fn read_logical(
    src: &dyn ByteSource,
    primaries: &[MbrEntry],
    out: &mut Vec<LogicalEntry>,
) -> Vec<Error> {
    let mut problems = Vec::new();
    let mut visited: Vec<u64> = Vec::new();
    for ext in primaries
        .iter()
        .filter(|e| is_extended(e.kind) && e.sectors > 0)
    {
        if let Err(e) = follow_chain(src, ext, &mut visited, out) {
            let stop = matches!(e, Error::Io { .. } | Error::Open { .. });
            problems.push(e);
            if stop || visited.len() >= MAX_EBRS {
                break;
            }
        }
    }
    problems
}

/// Walks one extended partition's chain. Entry 1 of each EBR is a logical
/// partition relative to that EBR; entry 2, when typed extended, links to the
/// next EBR relative to the start of the extended partition. Entries 3 and 4
/// are ignored (as `fdisk` does).
fn follow_chain(
    src: &dyn ByteSource,
    ext: &MbrEntry,
    visited: &mut Vec<u64>,
    out: &mut Vec<LogicalEntry>,
) -> Result<(), Error> {
    let first = u64::from(ext.start_lba);
    let end = first + u64::from(ext.sectors);
    let what = "extended boot record";
    if first == 0 {
        return Err(malformed(
            what,
            0,
            format!(
                "extended partition {} starts at LBA 0, the MBR itself: its chain is not followed",
                ext.index
            ),
        ));
    }
    let mut ebr = first;
    loop {
        let at = ebr * 512;
        let name = if ebr == first {
            format!("the first EBR of extended partition {}", ext.index)
        } else {
            "the next EBR".to_owned()
        };
        if visited.contains(&ebr) {
            return Err(malformed(
                what,
                at,
                format!(
                    "{name} (LBA {ebr}) was already read: the chain loops; {}",
                    ignored(out)
                ),
            ));
        }
        if visited.len() >= MAX_EBRS {
            return Err(malformed(
                what,
                at,
                format!(
                    "more than {MAX_EBRS} EBRs over all extended partitions, the most we follow; {}",
                    ignored(out)
                ),
            ));
        }
        if at + 512 > src.len() {
            return Err(malformed(
                what,
                at,
                format!(
                    "{name} (LBA {ebr}) lies past the end of the image ({} bytes), \
                     which may be truncated; {}",
                    src.len(),
                    ignored(out)
                ),
            ));
        }
        visited.push(ebr);
        let mut s = [0u8; 512];
        src.read_exact_at(at, &mut s, what)?;
        if s[510] != 0x55 || s[511] != 0xAA {
            if ebr == first && s.iter().all(|&b| b == 0) {
                // An extended partition nothing was ever put in.
                return Ok(());
            }
            return Err(malformed(
                what,
                at,
                format!(
                    "{name} (LBA {ebr}) lacks the 55 AA signature; {}",
                    ignored(out)
                ),
            ));
        }
        let logical = &s[446..462];
        let sectors = le32(logical, 12);
        if logical[4] != 0 && sectors != 0 {
            out.push(LogicalEntry {
                index: last_number(out) + 1,
                active: logical[0] == 0x80,
                kind: logical[4],
                start_lba: ebr + u64::from(le32(logical, 8)),
                sectors,
                ebr_lba: ebr,
            });
        }
        let link = &s[462..478];
        if !is_extended(link[4]) || le32(link, 12) == 0 {
            return Ok(());
        }
        let next = first + u64::from(le32(link, 8));
        if next >= end {
            return Err(malformed(
                what,
                at,
                format!(
                    "its link points to LBA {next}, outside extended partition {} \
                     (LBA {first}..{end}); {}",
                    ext.index,
                    ignored(out)
                ),
            ));
        }
        ebr = next;
    }
}

/// How a broken chain ends, for problem messages.
fn ignored(out: &[LogicalEntry]) -> String {
    format!(
        "logical partitions from {} on are not listed (repair the table with fdisk or sfdisk \
         if they are needed)",
        last_number(out) + 1
    )
}

/// The number of the last logical partition found (4 when none yet).
fn last_number(out: &[LogicalEntry]) -> u32 {
    out.last().map_or(4, |e| e.index)
}

pub use crate::hash::crc32;

/// Looks for a GPT header at LBA 1 for block sizes 512, 2048 and 4096 and
/// parses the first found. `Ok(None)` when no `EFI PART` signature exists;
/// an error when a header exists but fails its checks.
pub fn read_gpt(src: &dyn ByteSource) -> Result<Option<Gpt>, Error> {
    for bs in [512u32, 2048, 4096] {
        let at = u64::from(bs);
        if src.len() < at + 92 {
            continue;
        }
        let mut sig = [0u8; 8];
        src.read_exact_at(at, &mut sig, "GPT header signature")?;
        if &sig == b"EFI PART" {
            return read_gpt_at(src, bs).map(Some);
        }
    }
    Ok(None)
}

struct GptHeader {
    my_lba: u64,
    alternate_lba: u64,
    first_usable: u64,
    last_usable: u64,
    disk_guid: Guid,
    array_lba: u64,
    count: u32,
    entry_size: u32,
    array_crc: u32,
}

fn malformed(what: &'static str, offset: u64, detail: impl Into<String>) -> Error {
    Error::Malformed {
        format: what,
        offset,
        detail: detail.into(),
    }
}

/// Reads and checks the header in block `lba` (CRC over its declared size).
fn read_gpt_header(src: &dyn ByteSource, bs: u32, lba: u64) -> Result<GptHeader, Error> {
    let at = lba
        .checked_mul(u64::from(bs))
        .ok_or_else(|| malformed("GPT header", 0, format!("LBA {lba} overflows")))?;
    let block = src.read_vec(at, u64::from(bs), 4096, "GPT header")?;
    if &block[..8] != b"EFI PART" {
        return Err(malformed("GPT header", at, "no \"EFI PART\" signature"));
    }
    let size = le32(&block, 12);
    if !(92..=bs).contains(&size) {
        return Err(malformed(
            "GPT header",
            at,
            format!("header size {size} is outside 92..={bs}"),
        ));
    }
    let mut h = block[..size as usize].to_vec();
    let stored = le32(&h, 16);
    h[16..20].fill(0);
    let computed = crc32(&h);
    if stored != computed {
        return Err(malformed(
            "GPT header",
            at,
            format!("header CRC32 is {stored:#010x}, computed {computed:#010x}"),
        ));
    }
    let mut guid = [0; 16];
    guid.copy_from_slice(&block[56..72]);
    let hdr = GptHeader {
        my_lba: le64(&block, 24),
        alternate_lba: le64(&block, 32),
        first_usable: le64(&block, 40),
        last_usable: le64(&block, 48),
        disk_guid: Guid(guid),
        array_lba: le64(&block, 72),
        count: le32(&block, 80),
        entry_size: le32(&block, 84),
        array_crc: le32(&block, 88),
    };
    if hdr.my_lba != lba {
        return Err(malformed(
            "GPT header",
            at,
            format!(
                "header says it lives at LBA {}, found at LBA {lba}",
                hdr.my_lba
            ),
        ));
    }
    if hdr.entry_size < 128 || !hdr.entry_size.is_multiple_of(8) {
        return Err(malformed(
            "GPT header",
            at,
            format!(
                "entry size {} is not a multiple of 8 of at least 128",
                hdr.entry_size
            ),
        ));
    }
    Ok(hdr)
}

/// Reads the entry array of `hdr` and checks its CRC.
fn read_gpt_array(src: &dyn ByteSource, bs: u32, hdr: &GptHeader) -> Result<Vec<u8>, Error> {
    let at = hdr
        .array_lba
        .checked_mul(u64::from(bs))
        .ok_or_else(|| malformed("GPT entry array", 0, "LBA overflows"))?;
    let len = u64::from(hdr.count) * u64::from(hdr.entry_size);
    let array = src.read_vec(at, len, MAX_GPT_ARRAY_BYTES, "GPT entry array")?;
    let computed = crc32(&array);
    if computed != hdr.array_crc {
        return Err(malformed(
            "GPT entry array",
            at,
            format!(
                "entry array CRC32 is {:#010x}, computed {computed:#010x}",
                hdr.array_crc
            ),
        ));
    }
    Ok(array)
}

fn read_gpt_at(src: &dyn ByteSource, bs: u32) -> Result<Gpt, Error> {
    let hdr = read_gpt_header(src, bs, 1)?;
    let array = read_gpt_array(src, bs, &hdr)?;
    let mut entries = Vec::new();
    for (i, e) in array.chunks_exact(hdr.entry_size as usize).enumerate() {
        let mut t = [0; 16];
        t.copy_from_slice(&e[..16]);
        let type_guid = Guid(t);
        if type_guid.is_nil() {
            continue;
        }
        let mut u = [0; 16];
        u.copy_from_slice(&e[16..32]);
        let name_units: Vec<u16> = (0..36)
            .map(|k| le16(e, 56 + 2 * k))
            .take_while(|&c| c != 0)
            .collect();
        entries.push(GptEntry {
            index: i as u32 + 1,
            type_guid,
            type_name: type_guid.type_name(),
            unique_guid: Guid(u),
            first_lba: le64(e, 32),
            last_lba: le64(e, 40),
            attributes: le64(e, 48),
            name: String::from_utf16_lossy(&name_units),
        });
    }
    let bs64 = u64::from(bs);
    let backup = match hdr.alternate_lba.checked_mul(bs64) {
        Some(at) if at.checked_add(bs64).is_some_and(|end| end <= src.len()) => {
            match read_gpt_header(src, bs, hdr.alternate_lba)
                .and_then(|b| read_gpt_array(src, bs, &b).map(|_| ()))
            {
                Ok(()) => BackupState::Valid,
                Err(Error::Io { offset, source }) => return Err(Error::Io { offset, source }),
                Err(e) => BackupState::Invalid(crate::error_chain(&e)),
            }
        }
        _ => BackupState::OutsideImage,
    };
    Ok(Gpt {
        block_size: bs,
        disk_guid: hdr.disk_guid,
        header_lba: hdr.my_lba,
        alternate_lba: hdr.alternate_lba,
        first_usable_lba: hdr.first_usable,
        last_usable_lba: hdr.last_usable,
        entry_array_lba: hdr.array_lba,
        entry_count: hdr.count,
        entry_size: hdr.entry_size,
        entries,
        backup,
    })
}

/// Reads an Apple partition map: Driver Descriptor `ER` at byte 0 (its block
/// size), then `PM` entries from block 1. `Ok(None)` when absent.
pub fn read_apm(src: &dyn ByteSource) -> Result<Option<Apm>, Error> {
    if src.len() < 512 {
        return Ok(None);
    }
    let mut b0 = [0u8; 4];
    src.read_exact_at(0, &mut b0, "Apple driver descriptor")?;
    if &b0[..2] != b"ER" {
        return Ok(None);
    }
    let block_size = u32::from(be16(&b0, 2));
    if !matches!(block_size, 512 | 1024 | 2048 | 4096) {
        // isohybrid MBRs can begin with "ER" by coincidence of code bytes; only
        // a sane block size makes it a map.
        return Ok(None);
    }
    let bs = u64::from(block_size);
    let mut entries = Vec::new();
    let mut count = 1u32;
    let mut i = 1u32;
    while i <= count {
        let at = u64::from(i) * bs;
        if at + 512 > src.len() {
            if i == 1 {
                return Ok(None);
            }
            return Err(malformed(
                "Apple partition map",
                at,
                format!("entry {i} of {count} lies past the end of the image"),
            ));
        }
        let mut e = [0u8; 512];
        src.read_exact_at(at, &mut e, "Apple partition map entry")?;
        if &e[..2] != b"PM" {
            if i == 1 {
                return Ok(None);
            }
            return Err(malformed(
                "Apple partition map",
                at,
                format!("entry {i} lacks the \"PM\" signature"),
            ));
        }
        if i == 1 {
            count = be32(&e, 4);
            if count == 0 || count > MAX_APM_ENTRIES {
                return Err(malformed(
                    "Apple partition map",
                    at,
                    format!("map claims {count} entries (1..={MAX_APM_ENTRIES} allowed)"),
                ));
            }
        }
        entries.push(ApmEntry {
            index: i,
            start_block: be32(&e, 8),
            blocks: be32(&e, 12),
            name: c_string(&e[16..48]),
            kind: c_string(&e[48..80]),
        });
        i += 1;
    }
    Ok(Some(Apm {
        block_size,
        entries,
    }))
}

fn c_string(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn guid_text_is_mixed_endian() {
        assert_eq!(
            GPT_TYPE_ESP.to_string(),
            "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
        );
        assert_eq!(GPT_TYPE_ESP.type_name(), Some("EFI System"));
    }

    #[test]
    fn empty_and_tiny_inputs_have_no_tables() {
        for len in [0usize, 1, 511, 512, 4096] {
            let v = vec![0u8; len];
            let area = read_system_area(&v).unwrap();
            assert!(area.mbr.is_none() && area.gpt.is_none() && area.apm.is_none());
            assert!(area.problems.is_empty());
        }
    }

    #[test]
    fn corrupt_gpt_header_is_a_problem_not_a_panic() {
        let mut v = vec![0u8; 64 * 1024];
        v[512..520].copy_from_slice(b"EFI PART");
        v[512 + 12..512 + 16].copy_from_slice(&92u32.to_le_bytes());
        let area = read_system_area(&v).unwrap();
        assert!(area.gpt.is_none());
        assert!(matches!(
            area.problems[0],
            Error::Malformed { offset: 512, .. }
        ));
    }

    /// A zeroed image of `sectors` sectors.
    fn image(sectors: usize) -> Vec<u8> {
        vec![0u8; sectors * 512]
    }

    /// Writes entry `slot` (0..4) of the table in `sector` and its 55 AA.
    fn put(v: &mut [u8], sector: u64, slot: usize, kind: u8, start: u32, len: u32) {
        let s = sector as usize * 512;
        let e = s + 446 + 16 * slot;
        v[e + 4] = kind;
        v[e + 8..e + 12].copy_from_slice(&start.to_le_bytes());
        v[e + 12..e + 16].copy_from_slice(&len.to_le_bytes());
        v[s + 510] = 0x55;
        v[s + 511] = 0xAA;
    }

    fn detail(e: &Error) -> &str {
        match e {
            Error::Malformed { detail, .. } => detail,
            other => panic!("expected a malformed-table problem, got {other}"),
        }
    }

    /// (number, absolute start, sectors, type) of the logical partitions.
    fn logical(area: &SystemArea) -> Vec<(u32, u64, u32, u8)> {
        area.mbr
            .as_ref()
            .unwrap()
            .logical
            .iter()
            .map(|e| (e.index, e.start_lba, e.sectors, e.kind))
            .collect()
    }

    #[test]
    fn ebr_chain_is_followed_and_numbered_from_5() {
        let mut v = image(300);
        put(&mut v, 0, 0, 0x83, 10, 40);
        put(&mut v, 0, 1, 0x0F, 100, 150);
        // EBR 1 at 100: logical at +8 (108), link to ext+50 (150).
        put(&mut v, 100, 0, 0x0C, 8, 20);
        put(&mut v, 100, 1, 0x05, 50, 30);
        // EBR 2 at 150: empty logical slot (no number used), link to ext+90.
        put(&mut v, 150, 1, 0x05, 90, 30);
        // EBR 3 at 190: logical at +2 (192), ESP, end of chain; slot 3 junk ignored.
        put(&mut v, 190, 0, MBR_TYPE_ESP, 2, 10);
        put(&mut v, 190, 2, 0x83, 1, 1);
        let area = read_system_area(&v).unwrap();
        assert!(area.problems.is_empty(), "{:?}", area.problems);
        assert_eq!(
            logical(&area),
            [(5, 108, 20, 0x0C), (6, 192, 10, MBR_TYPE_ESP)]
        );
        let parts = area.partitions(v.len() as u64);
        let esp = parts.iter().find(|p| p.esp).unwrap();
        assert_eq!((esp.index, esp.offset, esp.len), (6, 192 * 512, 10 * 512));
    }

    #[test]
    fn empty_extended_partition_has_no_logicals_and_no_problem() {
        for with_signature in [false, true] {
            let mut v = image(64);
            put(&mut v, 0, 0, 0x05, 10, 50);
            if with_signature {
                // sfdisk writes an EBR with no entries but the signature.
                v[10 * 512 + 510] = 0x55;
                v[10 * 512 + 511] = 0xAA;
            }
            let area = read_system_area(&v).unwrap();
            assert!(area.problems.is_empty(), "{:?}", area.problems);
            assert!(logical(&area).is_empty());
        }
    }

    #[test]
    fn ebr_without_signature_is_a_problem() {
        let mut v = image(64);
        put(&mut v, 0, 0, 0x05, 10, 50);
        put(&mut v, 10, 0, 0x83, 2, 4);
        put(&mut v, 10, 1, 0x05, 20, 4);
        v[30 * 512] = 0xEB; // something, but no 55 AA
        let area = read_system_area(&v).unwrap();
        assert_eq!(logical(&area), [(5, 12, 4, 0x83)]);
        assert_eq!(area.problems.len(), 1);
        assert!(matches!(area.problems[0], Error::Malformed { offset, .. } if offset == 30 * 512));
        assert!(detail(&area.problems[0]).contains("55 AA"));
    }

    #[test]
    fn ebr_linking_to_itself_is_a_loop() {
        let mut v = image(64);
        put(&mut v, 0, 0, 0x05, 10, 50);
        put(&mut v, 10, 0, 0x83, 2, 4);
        put(&mut v, 10, 1, 0x05, 0, 4); // the next EBR is this one
        let area = read_system_area(&v).unwrap();
        assert_eq!(logical(&area), [(5, 12, 4, 0x83)]);
        assert_eq!(area.problems.len(), 1);
        let d = detail(&area.problems[0]);
        assert!(d.contains("loops") && d.contains("from 6 on"), "{d}");
    }

    #[test]
    fn ebr_chain_looping_back_to_an_earlier_ebr_stops() {
        let mut v = image(64);
        put(&mut v, 0, 0, 0x05, 10, 50);
        put(&mut v, 10, 0, 0x83, 2, 4);
        put(&mut v, 10, 1, 0x05, 20, 4);
        put(&mut v, 30, 0, 0x83, 2, 4);
        put(&mut v, 30, 1, 0x05, 0, 4); // back to the first
        let area = read_system_area(&v).unwrap();
        assert_eq!(logical(&area), [(5, 12, 4, 0x83), (6, 32, 4, 0x83)]);
        assert!(detail(&area.problems[0]).contains("loops"));
    }

    #[test]
    fn ebr_link_past_the_image_end_is_a_problem() {
        let mut v = image(64);
        put(&mut v, 0, 0, 0x05, 10, 100_000);
        put(&mut v, 10, 0, 0x83, 2, 4);
        put(&mut v, 10, 1, 0x05, 5000, 4);
        let area = read_system_area(&v).unwrap();
        assert_eq!(logical(&area), [(5, 12, 4, 0x83)]);
        assert_eq!(area.problems.len(), 1);
        assert!(
            matches!(area.problems[0], Error::Malformed { offset, .. } if offset == 5010 * 512)
        );
        assert!(detail(&area.problems[0]).contains("past the end of the image"));
        // The extended partition itself past the end: its first EBR is.
        let mut v = image(64);
        put(&mut v, 0, 0, 0x0F, u32::MAX, 10);
        let area = read_system_area(&v).unwrap();
        assert!(logical(&area).is_empty());
        assert!(detail(&area.problems[0]).contains("past the end of the image"));
    }

    #[test]
    fn ebr_link_outside_the_extended_partition_is_a_problem() {
        let mut v = image(200);
        put(&mut v, 0, 0, 0x85, 10, 50);
        put(&mut v, 10, 0, 0x83, 2, 4);
        put(&mut v, 10, 1, 0x05, 50, 4); // LBA 60: inside the image, outside 10..60
        put(&mut v, 60, 0, 0x83, 2, 4);
        let area = read_system_area(&v).unwrap();
        assert_eq!(logical(&area), [(5, 12, 4, 0x83)]);
        assert_eq!(area.problems.len(), 1);
        let d = detail(&area.problems[0]);
        assert!(d.contains("outside extended partition 1"), "{d}");
    }

    #[test]
    fn extended_partition_at_lba_0_is_not_followed() {
        let mut v = image(8);
        put(&mut v, 0, 0, 0x05, 0, 8);
        let area = read_system_area(&v).unwrap();
        assert!(logical(&area).is_empty());
        assert!(detail(&area.problems[0]).contains("LBA 0"));
    }

    #[test]
    fn a_1000_long_chain_is_cut_at_the_cap() {
        let n = 1000u32;
        let mut v = image(n as usize + 2);
        put(&mut v, 0, 0, 0x05, 1, n + 1);
        for i in 0..n {
            put(&mut v, u64::from(1 + i), 0, 0x83, 0, 1);
            put(&mut v, u64::from(1 + i), 1, 0x05, i + 1, 1);
        }
        let area = read_system_area(&v).unwrap();
        let l = logical(&area);
        assert_eq!(l.len(), MAX_EBRS);
        assert_eq!(l.last().unwrap().0, 4 + MAX_EBRS as u32);
        assert_eq!(area.problems.len(), 1);
        assert!(detail(&area.problems[0]).contains("more than 128 EBRs"));
    }

    #[test]
    fn chains_of_several_extended_entries_share_the_numbering() {
        let mut v = image(400);
        put(&mut v, 0, 0, 0x05, 10, 100);
        put(&mut v, 0, 2, 0x0F, 200, 100);
        put(&mut v, 10, 0, 0x83, 2, 4);
        put(&mut v, 200, 0, 0x82, 2, 4);
        let area = read_system_area(&v).unwrap();
        assert!(area.problems.is_empty());
        assert_eq!(logical(&area), [(5, 12, 4, 0x83), (6, 202, 4, 0x82)]);
    }

    proptest::proptest! {
        /// Random EBR chains in a small image: the walk ends (a report, never
        /// a panic), numbers run from 5 without gaps, no EBR is read twice.
        #[test]
        fn random_ebr_chains_never_panic(
            ext in (0u32..80, 0u32..100, proptest::sample::select(vec![0x05u8, 0x0F, 0x85])),
            ebrs in proptest::collection::vec(
                (0u64..64, 0u8..4, 0u32..8, 0u32..70, 0u32..40, proptest::bool::ANY),
                0..64,
            ),
            len in 1usize..=64,
        ) {
            let mut v = image(64);
            put(&mut v, 0, 0, ext.2, ext.0, ext.1);
            for (sector, kind, start, link, size, signed) in ebrs {
                let kinds = [0u8, 0x83, 0x05, 0x0F];
                put(&mut v, sector, 0, kinds[usize::from(kind)], start, size);
                put(&mut v, sector, 1, kinds[(usize::from(kind) + 2) % 4], link, size);
                if !signed {
                    v[sector as usize * 512 + 511] = 0;
                }
            }
            v.truncate(len * 512);
            let area = read_system_area(&v).unwrap();
            if let Some(m) = &area.mbr {
                proptest::prop_assert!(m.logical.len() <= MAX_EBRS);
                for (i, e) in m.logical.iter().enumerate() {
                    proptest::prop_assert_eq!(e.index, 5 + i as u32);
                }
                let mut ebrs: Vec<u64> = m.logical.iter().map(|e| e.ebr_lba).collect();
                ebrs.sort_unstable();
                ebrs.dedup();
                proptest::prop_assert_eq!(ebrs.len(), m.logical.len());
            }
            for p in area.partitions(v.len() as u64) {
                proptest::prop_assert!(p.offset + p.len <= v.len() as u64);
            }
        }
    }
}
