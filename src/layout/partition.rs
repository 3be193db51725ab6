//! Partition tables for built layouts: a classic MBR, or a GPT (protective
//! MBR, primary header and entries at the start, backup entries and header
//! in the disk's last 33 sectors). Both are in-memory sectors that a layout
//! places into its plan as `Bytes` extents; the partitions' contents (e.g. a
//! [`super::fat32`] volume) are laid out separately at the same offsets.
//!
//! Formats: the MBR per the IBM PC convention (four 16-byte entries at 446,
//! `55 AA`), CHS fields computed for 255 heads / 63 sectors and saturated to
//! `FE FF FF` past cylinder 1023; GPT per UEFI 2.x §5.3 (92-byte header,
//! 128 entries of 128 bytes, CRC32 over header and entry array, protective
//! MBR of type 0xEE covering the disk).

use crate::plan::{Extent, PlanBuilder, PlanError};

/// Bytes per logical sector (what firmware and USB sticks use).
pub const SECTOR: u64 = 512;
/// GPT partition entries (the minimum array of 16 KiB, as every tool writes).
const GPT_ENTRIES: u64 = 128;
const GPT_ENTRY_SIZE: u64 = 128;
/// Sectors taken by the GPT entry array.
const GPT_ARRAY_SECTORS: u64 = GPT_ENTRIES * GPT_ENTRY_SIZE / SECTOR;

/// Why a partition table could not be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("partition {index} ({start}+{len} bytes) is not aligned to {SECTOR}-byte sectors")]
    Unaligned { index: usize, start: u64, len: u64 },
    #[error("partition {index} is empty")]
    Empty { index: usize },
    #[error("partition {index} ({start}+{len} bytes) lies outside the usable area {first}..{end} of the disk")]
    OutOfRange {
        index: usize,
        start: u64,
        len: u64,
        first: u64,
        end: u64,
    },
    #[error("partition {index} overlaps partition {other}")]
    Overlap { index: usize, other: usize },
    #[error("{count} partitions do not fit in {table} (at most {max})")]
    TooMany {
        count: usize,
        table: &'static str,
        max: usize,
    },
    #[error(
        "partition {index} needs sector numbers beyond 32 bits, which an MBR cannot hold; use GPT"
    )]
    MbrLimit { index: usize },
    #[error("partition name {name:?} is longer than 36 UTF-16 characters")]
    NameTooLong { name: String },
    #[error(transparent)]
    Plan(#[from] PlanError),
}

/// What a partition holds, as the partition table says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An EFI system partition (MBR 0xEF; GPT C12A7328-F81F-11D2-BA4B-00A0C93EC93B).
    EfiSystem,
    /// A FAT32 data partition (MBR 0x0C, FAT32 LBA; GPT "Microsoft basic data"
    /// EBD0A0A2-B9E5-4433-87C0-68B6B72699C7). Firmware boots removable media
    /// from it too, and Windows mounts it.
    Fat32Data,
    /// An exFAT data partition (MBR 0x07, the type Windows gives exFAT;
    /// GPT "Microsoft basic data").
    ExfatData,
}

impl Kind {
    fn mbr_type(self) -> u8 {
        match self {
            Kind::EfiSystem => 0xEF,
            Kind::Fat32Data => 0x0C,
            Kind::ExfatData => 0x07,
        }
    }

    fn gpt_type(self) -> [u8; 16] {
        match self {
            Kind::EfiSystem => guid("C12A7328-F81F-11D2-BA4B-00A0C93EC93B"),
            Kind::Fat32Data | Kind::ExfatData => guid("EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"),
        }
    }
}

/// One partition: byte range on the disk, type, and (GPT) name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partition {
    /// First byte; a multiple of [`SECTOR`] (use 1 MiB alignment for flash).
    pub start: u64,
    /// Length in bytes; a multiple of [`SECTOR`].
    pub len: u64,
    pub kind: Kind,
    /// GPT partition name (up to 36 UTF-16 units); ignored by the MBR.
    pub name: String,
    /// MBR "active" flag (some BIOSes only boot disks with one); GPT ignores it.
    pub bootable: bool,
}

/// A GUID in its on-disk byte order from its text form: the first three
/// fields little-endian, the last two as written. `text` must be a valid
/// 36-character GUID (callers pass constants).
pub fn guid(text: &str) -> [u8; 16] {
    let hex: Vec<u8> = text
        .bytes()
        .filter(|b| *b != b'-')
        .collect::<Vec<_>>()
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap_or("00"), 16).unwrap_or(0))
        .collect();
    let mut g = [0u8; 16];
    g.copy_from_slice(&hex[..16]);
    g[0..4].reverse();
    g[4..6].reverse();
    g[6..8].reverse();
    g
}

/// CRC-32 (IEEE 802.3, reflected, as GPT uses it): the same function the
/// GPT reader checks tables with, so what we write is what we accept.
pub use crate::image::partitions::crc32;

/// CHS address of `lba` for 255 heads and 63 sectors per track, saturated
/// to the conventional `FE FF FF` beyond what CHS can express.
fn chs(lba: u64) -> [u8; 3] {
    let cyl = lba / (255 * 63);
    if cyl > 1023 {
        return [0xFE, 0xFF, 0xFF];
    }
    let head = (lba / 63) % 255;
    let sector = lba % 63 + 1;
    [
        head as u8,
        (sector as u8) | (((cyl >> 8) as u8) << 6),
        cyl as u8,
    ]
}

/// One 16-byte MBR entry (CHS from [`chs`], LBA fields as given).
pub(crate) fn mbr_entry(status: u8, kind: u8, first: u64, sectors: u64) -> [u8; 16] {
    let mut e = [0u8; 16];
    e[0] = status;
    e[1..4].copy_from_slice(&chs(first));
    e[4] = kind;
    e[5..8].copy_from_slice(&chs(first + sectors - 1));
    e[8..12].copy_from_slice(&(first as u32).to_le_bytes());
    e[12..16].copy_from_slice(&(sectors as u32).to_le_bytes());
    e
}

/// Checks sizes, alignment, range and overlaps against `first..end` bytes.
fn check(parts: &[Partition], first: u64, end: u64) -> Result<(), Error> {
    for (i, p) in parts.iter().enumerate() {
        if p.start % SECTOR != 0 || p.len % SECTOR != 0 {
            return Err(Error::Unaligned {
                index: i,
                start: p.start,
                len: p.len,
            });
        }
        if p.len == 0 {
            return Err(Error::Empty { index: i });
        }
        if p.start < first || p.start.checked_add(p.len).is_none_or(|e| e > end) {
            return Err(Error::OutOfRange {
                index: i,
                start: p.start,
                len: p.len,
                first,
                end,
            });
        }
        for (j, q) in parts.iter().enumerate().take(i) {
            if p.start < q.start + q.len && q.start < p.start + p.len {
                return Err(Error::Overlap { index: i, other: j });
            }
        }
    }
    Ok(())
}

/// A classic MBR with up to four primary partitions on a disk of
/// `disk_size` bytes. The boot code area is left empty (zeros).
pub fn mbr(disk_signature: u32, disk_size: u64, parts: &[Partition]) -> Result<[u8; 512], Error> {
    if parts.len() > 4 {
        return Err(Error::TooMany {
            count: parts.len(),
            table: "an MBR",
            max: 4,
        });
    }
    check(parts, SECTOR, disk_size - disk_size % SECTOR)?;
    let mut s = [0u8; 512];
    s[440..444].copy_from_slice(&disk_signature.to_le_bytes());
    for (i, p) in parts.iter().enumerate() {
        let first = p.start / SECTOR;
        let sectors = p.len / SECTOR;
        if first + sectors > u64::from(u32::MAX) {
            return Err(Error::MbrLimit { index: i });
        }
        let status = if p.bootable { 0x80 } else { 0 };
        s[446 + 16 * i..462 + 16 * i].copy_from_slice(&mbr_entry(
            status,
            p.kind.mbr_type(),
            first,
            sectors,
        ));
    }
    s[510] = 0x55;
    s[511] = 0xAA;
    Ok(s)
}

/// A GPT, as the two byte ranges it occupies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gpt {
    /// Sectors 0..34: protective MBR, primary header, primary entries.
    pub primary: Vec<u8>,
    /// The disk's last 33 sectors: backup entries, then the backup header.
    pub backup: Vec<u8>,
    /// Byte offset of `backup` on the disk.
    pub backup_at: u64,
}

impl Gpt {
    /// Places both halves into `builder`: the primary at 0 now, and returns
    /// the backup extent to push after everything else (plans are built in
    /// increasing order).
    pub fn push_primary(&self, builder: &mut PlanBuilder) -> Result<(), Error> {
        builder.push(0, Extent::bytes(self.primary.clone()))?;
        Ok(())
    }

    /// Places the backup at the disk's end; call after the partitions'
    /// contents.
    pub fn push_backup(&self, builder: &mut PlanBuilder) -> Result<(), Error> {
        builder.push(self.backup_at, Extent::bytes(self.backup.clone()))?;
        Ok(())
    }
}

/// A GPT for a disk of `disk_size` bytes. Partition `i`'s unique GUID is
/// `disk_guid` with its last byte XORed by `i + 1` (unique per disk, and
/// reproducible: the same inputs give the same bytes).
pub fn gpt(disk_size: u64, disk_guid: [u8; 16], parts: &[Partition]) -> Result<Gpt, Error> {
    if parts.len() as u64 > GPT_ENTRIES {
        return Err(Error::TooMany {
            count: parts.len(),
            table: "a GPT",
            max: GPT_ENTRIES as usize,
        });
    }
    let total = disk_size / SECTOR;
    let first_usable = 2 + GPT_ARRAY_SECTORS;
    let min_sectors = first_usable + GPT_ARRAY_SECTORS + 1 + 1;
    if total < min_sectors {
        return Err(Error::OutOfRange {
            index: 0,
            start: 0,
            len: disk_size,
            first: 0,
            end: min_sectors * SECTOR,
        });
    }
    let last_lba = total - 1;
    let last_usable = last_lba - 1 - GPT_ARRAY_SECTORS;
    check(parts, first_usable * SECTOR, (last_usable + 1) * SECTOR)?;

    let mut array = vec![0u8; (GPT_ENTRIES * GPT_ENTRY_SIZE) as usize];
    for (i, p) in parts.iter().enumerate() {
        let units: Vec<u16> = p.name.encode_utf16().collect();
        if units.len() > 36 {
            return Err(Error::NameTooLong {
                name: p.name.clone(),
            });
        }
        let e = &mut array[i * GPT_ENTRY_SIZE as usize..(i + 1) * GPT_ENTRY_SIZE as usize];
        e[0..16].copy_from_slice(&p.kind.gpt_type());
        let mut unique = disk_guid;
        unique[15] ^= (i + 1) as u8;
        unique[14] ^= ((i + 1) >> 8) as u8;
        e[16..32].copy_from_slice(&unique);
        e[32..40].copy_from_slice(&(p.start / SECTOR).to_le_bytes());
        e[40..48].copy_from_slice(&((p.start + p.len) / SECTOR - 1).to_le_bytes());
        for (k, u) in units.iter().enumerate() {
            e[56 + 2 * k..58 + 2 * k].copy_from_slice(&u.to_le_bytes());
        }
    }
    let array_crc = crc32(&array);

    let header = |my: u64, alternate: u64, entries_at: u64| -> [u8; 512] {
        let mut h = [0u8; 512];
        h[0..8].copy_from_slice(b"EFI PART");
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&92u32.to_le_bytes());
        h[24..32].copy_from_slice(&my.to_le_bytes());
        h[32..40].copy_from_slice(&alternate.to_le_bytes());
        h[40..48].copy_from_slice(&first_usable.to_le_bytes());
        h[48..56].copy_from_slice(&last_usable.to_le_bytes());
        h[56..72].copy_from_slice(&disk_guid);
        h[72..80].copy_from_slice(&entries_at.to_le_bytes());
        h[80..84].copy_from_slice(&(GPT_ENTRIES as u32).to_le_bytes());
        h[84..88].copy_from_slice(&(GPT_ENTRY_SIZE as u32).to_le_bytes());
        h[88..92].copy_from_slice(&array_crc.to_le_bytes());
        let crc = crc32(&h[..92]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
    };

    // Protective MBR: one 0xEE entry from LBA 1 over the whole disk.
    let mut pmbr = [0u8; 512];
    let e = &mut pmbr[446..462];
    e[1..4].copy_from_slice(&[0x00, 0x02, 0x00]);
    e[4] = 0xEE;
    e[5..8].copy_from_slice(&[0xFF, 0xFF, 0xFF]);
    e[8..12].copy_from_slice(&1u32.to_le_bytes());
    e[12..16].copy_from_slice(&((total - 1).min(u64::from(u32::MAX)) as u32).to_le_bytes());
    pmbr[510] = 0x55;
    pmbr[511] = 0xAA;

    let mut primary = Vec::with_capacity((first_usable * SECTOR) as usize);
    primary.extend_from_slice(&pmbr);
    primary.extend_from_slice(&header(1, last_lba, 2));
    primary.extend_from_slice(&array);
    let backup_entries = last_lba - GPT_ARRAY_SECTORS;
    let mut backup = Vec::with_capacity(((GPT_ARRAY_SECTORS + 1) * SECTOR) as usize);
    backup.extend_from_slice(&array);
    backup.extend_from_slice(&header(last_lba, 1, backup_entries));
    Ok(Gpt {
        primary,
        backup,
        backup_at: backup_entries * SECTOR,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_byte_order() {
        let g = guid("C12A7328-F81F-11D2-BA4B-00A0C93EC93B");
        assert_eq!(
            g,
            [
                0x28, 0x73, 0x2A, 0xC1, 0x1F, 0xF8, 0xD2, 0x11, 0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E,
                0xC9, 0x3B
            ]
        );
    }

    #[test]
    fn chs_saturates() {
        assert_eq!(chs(2048), [32, 33, 0]);
        assert_eq!(chs(1 << 30), [0xFE, 0xFF, 0xFF]);
    }

    fn part(start: u64, len: u64) -> Partition {
        Partition {
            start,
            len,
            kind: Kind::EfiSystem,
            name: "x".into(),
            bootable: false,
        }
    }

    #[test]
    fn bad_tables_are_refused() {
        let disk = 64 << 20;
        assert!(matches!(
            mbr(1, disk, &[part(1 << 20, 100)]),
            Err(Error::Unaligned { .. })
        ));
        assert!(matches!(
            mbr(1, disk, &[part(1 << 20, 8 << 20), part(4 << 20, 8 << 20)]),
            Err(Error::Overlap { index: 1, other: 0 })
        ));
        assert!(matches!(
            gpt(disk, [1; 16], &[part(512, 1 << 20)]),
            Err(Error::OutOfRange { .. })
        ));
        assert!(matches!(
            gpt(disk, [1; 16], &[part(1 << 20, 63 << 20)]),
            Err(Error::OutOfRange { .. })
        ));
        assert!(matches!(
            mbr(1, disk, &vec![part(1 << 20, 512); 5]),
            Err(Error::TooMany { .. })
        ));
    }
}
