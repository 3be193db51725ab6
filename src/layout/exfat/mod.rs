//! An empty exFAT volume, written from Microsoft's published exFAT
//! specification ("exFAT file system specification", learn.microsoft.com,
//! 2019; section numbers below are its): the main and backup boot regions
//! (§3.1–3.4, with the boot checksum of §3.4), one FAT (§4), and in the
//! cluster heap the allocation bitmap (§7.1), the up-case table (§7.2) and
//! a one-cluster root directory holding the volume label (§7.3), bitmap and
//! up-case table entries. Everything else of the volume is left to the
//! caller to zero (`health::format` writes zeros over every gap up to the
//! end of what is built here).
//!
//! Geometry, as Windows formats removable media: 512-byte sectors; clusters
//! of 4 KiB up to 256 MiB, 32 KiB up to 32 GiB, 128 KiB above; the FAT at
//! 1 MiB into the volume and the cluster heap on the next 1 MiB boundary
//! after it (flash erase blocks: the same alignment `mkfs.exfat` uses).
//!
//! The up-case table is the specification's recommended one (§7.2.5.1,
//! Table 24) in its compressed form, 5836 bytes, whose table checksum
//! is the 0xE619D30D the specification gives; `mkfs.exfat` (exfatprogs)
//! writes the same bytes. A table derived from today's Unicode data would
//! differ from it in some 350 characters, and every implementation that
//! compares names (Windows first) expects the recommended one.

use crate::plan::{Extent, PlanBuilder, PlanError};

/// Bytes per sector: the only size `format` writes (most sticks report
/// 512; `health::format` refuses a disk with larger logical sectors, which
/// would need `BytesPerSectorShift` 12 and an MBR in 4096-byte LBAs).
pub const SECTOR: u64 = 512;

const SECTOR_SHIFT: u8 = 9;

/// The recommended up-case table, compressed (§7.2.5.1).
pub const UPCASE: &[u8; 5836] = include_bytes!("upcase.bin");

/// The table checksum the specification gives for [`UPCASE`].
pub const UPCASE_CHECKSUM: u32 = 0xE619_D30D;

/// Where the FAT starts and the alignment of the cluster heap, in bytes.
const ALIGN: u64 = 1 << 20;

/// The smallest volume: the boot regions and FAT in the first MiB, a
/// cluster heap in the next, with room for files.
pub const MIN_BYTES: u64 = 8 << 20;

/// The largest cluster count (§3.1.9: 2^32 − 11).
const MAX_CLUSTERS: u64 = (1 << 32) - 11;

/// Why an exFAT volume cannot be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("{bytes} bytes is too small for an exFAT volume (at least {MIN_BYTES})")]
    TooSmall { bytes: u64 },
    #[error("{bytes} bytes needs more than 2^32-11 clusters")]
    TooLarge { bytes: u64 },
    /// The label breaks exFAT's rules (§7.3.3: at most 11 UTF-16 units,
    /// none of the characters forbidden in file names).
    #[error("the label {label:?} is not an exFAT label: {why}")]
    BadLabel { label: String, why: &'static str },
    #[error(transparent)]
    Plan(#[from] PlanError),
}

/// What the volume is made of.
#[derive(Clone, Debug)]
pub struct Options {
    /// The volume's length in bytes (a multiple of [`SECTOR`]).
    pub bytes: u64,
    /// Where the volume starts on the disk, in sectors (`PartitionOffset`).
    pub partition_offset: u64,
    pub label: String,
    pub serial: u32,
}

/// The volume's geometry, as its boot sector records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub volume_sectors: u64,
    pub sectors_per_cluster: u32,
    pub fat_offset: u32,
    pub fat_length: u32,
    pub cluster_heap_offset: u32,
    pub cluster_count: u32,
}

impl Geometry {
    /// The geometry of a volume of `bytes` bytes.
    pub fn new(bytes: u64) -> Result<Geometry, Error> {
        if bytes < MIN_BYTES {
            return Err(Error::TooSmall { bytes });
        }
        let cluster: u64 = if bytes <= 256 << 20 {
            4 << 10
        } else if bytes <= 32 << 30 {
            32 << 10
        } else {
            128 << 10
        };
        let spc = cluster / SECTOR;
        let volume_sectors = bytes / SECTOR;
        let fat_offset = ALIGN / SECTOR;
        // The FAT sized for every cluster the volume could hold, then the
        // heap after it; the clusters that fit there are fewer, so the FAT
        // stays large enough.
        let most = (volume_sectors - fat_offset) / spc;
        let fat_sectors = |clusters: u64| ((clusters + 2) * 4).div_ceil(SECTOR).div_ceil(spc) * spc;
        let heap = (fat_offset + fat_sectors(most)).div_ceil(ALIGN / SECTOR) * (ALIGN / SECTOR);
        if heap >= volume_sectors {
            return Err(Error::TooSmall { bytes });
        }
        let count = (volume_sectors - heap) / spc;
        if count > MAX_CLUSTERS {
            return Err(Error::TooLarge { bytes });
        }
        let fat_length = fat_sectors(count);
        let too_large = |_| Error::TooLarge { bytes };
        Ok(Geometry {
            volume_sectors,
            sectors_per_cluster: spc as u32,
            fat_offset: u32::try_from(fat_offset).map_err(too_large)?,
            fat_length: u32::try_from(fat_length).map_err(too_large)?,
            cluster_heap_offset: u32::try_from(heap).map_err(too_large)?,
            cluster_count: count as u32,
        })
    }

    pub fn cluster_bytes(&self) -> u64 {
        u64::from(self.sectors_per_cluster) * SECTOR
    }

    /// The byte offset of cluster `n` (≥ 2) in the volume.
    fn cluster_at(&self, n: u32) -> u64 {
        (u64::from(self.cluster_heap_offset)
            + u64::from(n - 2) * u64::from(self.sectors_per_cluster))
            * SECTOR
    }
}

/// What was built.
#[derive(Clone, Debug)]
pub struct Summary {
    pub geometry: Geometry,
    /// The first cluster of the bitmap, the up-case table and the root
    /// directory.
    pub bitmap_cluster: u32,
    pub upcase_cluster: u32,
    pub root_cluster: u32,
    /// Clusters in use (the three structures).
    pub used_clusters: u32,
    /// Bytes after the volume's start up to the end of the root directory:
    /// everything before it is either built here or must be zeros.
    pub metadata_end: u64,
}

/// Characters a label cannot hold: those forbidden in file names
/// (§7.7.3) and the control characters.
fn forbidden(c: u16) -> bool {
    c < 0x20
        || matches!(
            char::from_u32(u32::from(c)),
            Some('"' | '*' | '/' | ':' | '<' | '>' | '?' | '\\' | '|')
        )
}

/// Checks `label` against exFAT's rules: at most 11 UTF-16 code units, no
/// control characters, none of `"*/:<>?\|`.
pub fn check_label(label: &str) -> Result<(), Error> {
    match label_problem(label) {
        None => Ok(()),
        Some(why) => Err(Error::BadLabel {
            label: label.to_owned(),
            why,
        }),
    }
}

/// What is wrong with `label` as an exFAT label, if anything.
pub fn label_problem(label: &str) -> Option<&'static str> {
    let units: Vec<u16> = label.encode_utf16().collect();
    if units.len() > 11 {
        return Some("longer than 11 UTF-16 characters");
    }
    if units.iter().any(|&c| forbidden(c)) {
        return Some("it holds a control character or one of \"*/:<>?\\|");
    }
    None
}

/// The running checksum of §3.4 and §7.2.2: rotate right by one, add the
/// byte.
fn checksum_step(sum: u32, byte: u8) -> u32 {
    sum.rotate_right(1).wrapping_add(u32::from(byte))
}

/// The boot checksum (§3.4) of the first 11 sectors of a boot region,
/// leaving out `VolumeFlags` (bytes 106–107) and `PercentInUse` (112).
pub fn boot_checksum(region: &[u8]) -> u32 {
    region
        .iter()
        .enumerate()
        .filter(|(i, _)| !matches!(i, 106 | 107 | 112))
        .fold(0, |s, (_, &b)| checksum_step(s, b))
}

/// The table checksum of an up-case table (§7.2.2).
pub fn table_checksum(table: &[u8]) -> u32 {
    table.iter().fold(0, |s, &b| checksum_step(s, b))
}

/// One boot region (12 sectors): boot sector, eight extended boot sectors,
/// OEM parameters, reserved, checksum.
fn boot_region(g: &Geometry, o: &Options, root: u32, percent: u8) -> Vec<u8> {
    let mut r = vec![0u8; 12 * SECTOR as usize];
    let b = &mut r[..SECTOR as usize];
    b[0..3].copy_from_slice(&[0xEB, 0x76, 0x90]);
    b[3..11].copy_from_slice(b"EXFAT   ");
    // 11..64 MustBeZero.
    b[64..72].copy_from_slice(&o.partition_offset.to_le_bytes());
    b[72..80].copy_from_slice(&g.volume_sectors.to_le_bytes());
    b[80..84].copy_from_slice(&g.fat_offset.to_le_bytes());
    b[84..88].copy_from_slice(&g.fat_length.to_le_bytes());
    b[88..92].copy_from_slice(&g.cluster_heap_offset.to_le_bytes());
    b[92..96].copy_from_slice(&g.cluster_count.to_le_bytes());
    b[96..100].copy_from_slice(&root.to_le_bytes());
    b[100..104].copy_from_slice(&o.serial.to_le_bytes());
    b[104..106].copy_from_slice(&0x0100u16.to_le_bytes()); // revision 1.00
                                                           // 106..108 VolumeFlags: 0 (first FAT active, clean, no media failure).
    b[108] = SECTOR_SHIFT;
    b[109] = g.sectors_per_cluster.trailing_zeros() as u8;
    b[110] = 1; // NumberOfFats
    b[111] = 0x80; // DriveSelect
    b[112] = percent;
    // 120..510 BootCode: none (a data volume; zeros as mkfs.exfat writes).
    b[510] = 0x55;
    b[511] = 0xAA;
    // Extended boot sectors 1-8: only their signature (§3.2.1).
    for s in 1..9 {
        let end = (s + 1) * SECTOR as usize;
        r[end - 4..end].copy_from_slice(&0xAA55_0000u32.to_le_bytes());
    }
    // Sectors 9 (OEM parameters) and 10 (reserved): zeros.
    let sum = boot_checksum(&r[..11 * SECTOR as usize]);
    for w in r[11 * SECTOR as usize..].chunks_exact_mut(4) {
        w.copy_from_slice(&sum.to_le_bytes());
    }
    r
}

/// Pushes the volume's structures into `b`, the volume starting at byte
/// `start` of the disk.
pub fn build(o: &Options, start: u64, b: &mut PlanBuilder) -> Result<Summary, Error> {
    check_label(&o.label)?;
    let g = Geometry::new(o.bytes)?;
    let cluster = g.cluster_bytes();
    let clusters_of = |bytes: u64| bytes.div_ceil(cluster) as u32;
    let bitmap_bytes = u64::from(g.cluster_count).div_ceil(8);
    let bitmap_cluster = 2;
    let upcase_cluster = bitmap_cluster + clusters_of(bitmap_bytes);
    let root_cluster = upcase_cluster + clusters_of(UPCASE.len() as u64);
    let used = root_cluster + 1 - 2;
    if used >= g.cluster_count {
        return Err(Error::TooSmall { bytes: o.bytes });
    }
    let percent = (u64::from(used) * 100 / u64::from(g.cluster_count)) as u8;

    let region = boot_region(&g, o, root_cluster, percent);
    b.push(start, Extent::bytes(region.clone()))?;
    b.push(start + 12 * SECTOR, Extent::bytes(region))?;

    // The FAT: the media and reserved entries, then one chain per
    // structure (§4.1; the bitmap and up-case table have no NoFatChain
    // flag, so their chains must be in the FAT).
    let mut fat = Vec::with_capacity(((root_cluster as usize) + 1) * 4);
    fat.extend(0xFFFF_FFF8u32.to_le_bytes());
    fat.extend(0xFFFF_FFFFu32.to_le_bytes());
    for (first, next) in [
        (bitmap_cluster, upcase_cluster),
        (upcase_cluster, root_cluster),
        (root_cluster, root_cluster + 1),
    ] {
        for c in first..next {
            let v = if c + 1 == next { 0xFFFF_FFFF } else { c + 1 };
            fat.extend(v.to_le_bytes());
        }
    }
    b.push(start + u64::from(g.fat_offset) * SECTOR, Extent::bytes(fat))?;

    // The bitmap: a bit per cluster from cluster 2, set for the used ones.
    let mut bitmap = vec![0u8; (used as usize).div_ceil(8)];
    for i in 0..used as usize {
        bitmap[i / 8] |= 1 << (i % 8);
    }
    b.push(start + g.cluster_at(bitmap_cluster), Extent::bytes(bitmap))?;
    b.push(
        start + g.cluster_at(upcase_cluster),
        Extent::bytes(UPCASE.to_vec()),
    )?;

    // The root directory: label, bitmap and up-case table entries; the
    // rest of the cluster zeros (end of directory, §6.2).
    let mut root = vec![0u8; cluster as usize];
    let units: Vec<u16> = o.label.encode_utf16().collect();
    root[0] = 0x83;
    root[1] = units.len() as u8;
    for (i, u) in units.iter().enumerate() {
        root[2 + 2 * i..4 + 2 * i].copy_from_slice(&u.to_le_bytes());
    }
    let e = &mut root[32..64];
    e[0] = 0x81;
    e[20..24].copy_from_slice(&bitmap_cluster.to_le_bytes());
    e[24..32].copy_from_slice(&bitmap_bytes.to_le_bytes());
    let e = &mut root[64..96];
    e[0] = 0x82;
    e[4..8].copy_from_slice(&table_checksum(UPCASE).to_le_bytes());
    e[20..24].copy_from_slice(&upcase_cluster.to_le_bytes());
    e[24..32].copy_from_slice(&(UPCASE.len() as u64).to_le_bytes());
    b.push(start + g.cluster_at(root_cluster), Extent::bytes(root))?;

    Ok(Summary {
        geometry: g,
        bitmap_cluster,
        upcase_cluster,
        root_cluster,
        used_clusters: used,
        metadata_end: g.cluster_at(root_cluster) + cluster,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The embedded table is the specification's: its checksum is the one
    /// §7.2.5.1 prints, and it decompresses (runs of 0xFFFF, count) to all
    /// 65536 characters with a–z up-cased and nothing else in ASCII changed.
    #[test]
    fn the_up_case_table_is_the_recommended_one() {
        assert_eq!(table_checksum(UPCASE), UPCASE_CHECKSUM);
        let units: Vec<u16> = UPCASE
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        let mut map = Vec::new();
        let mut i = 0;
        while i < units.len() {
            if units[i] == 0xFFFF && i + 1 < units.len() {
                let n = units[i + 1] as usize;
                let at = map.len();
                map.extend((at..at + n).map(|c| c as u16));
                i += 2;
            } else {
                map.push(units[i]);
                i += 1;
            }
        }
        assert_eq!(map.len(), 65536);
        for c in 0..128u16 {
            let want = if (b'a' as u16..=b'z' as u16).contains(&c) {
                c - 32
            } else {
                c
            };
            assert_eq!(map[c as usize], want, "{c:#x}");
        }
        assert_eq!(map[0xE9], 0xC9); // é → É
    }

    /// The boot checksum skips VolumeFlags and PercentInUse: changing them
    /// keeps it, changing any other byte does not.
    #[test]
    fn boot_checksum_skips_the_volatile_fields() {
        let g = Geometry::new(64 << 20).unwrap();
        let o = Options {
            bytes: 64 << 20,
            partition_offset: 2048,
            label: "X".into(),
            serial: 1,
        };
        let r = boot_region(&g, &o, 5, 0);
        let sum = boot_checksum(&r[..11 * 512]);
        let mut r2 = r.clone();
        r2[106] = 2;
        r2[112] = 50;
        assert_eq!(boot_checksum(&r2[..11 * 512]), sum);
        r2[100] ^= 1;
        assert_ne!(boot_checksum(&r2[..11 * 512]), sum);
        assert_eq!(&r[11 * 512..11 * 512 + 4], &sum.to_le_bytes());
    }

    /// The geometry mkfs.exfat (exfatprogs 1.2) chooses for 64 MiB: FAT at
    /// sector 2048, 128 FAT sectors, heap at 4096, 15872 4 KiB clusters.
    /// Larger volumes keep every structure inside the volume.
    #[test]
    fn geometry_matches_mkfs_exfat_and_fits() {
        let g = Geometry::new(64 << 20).unwrap();
        assert_eq!(
            (
                g.fat_offset,
                g.fat_length,
                g.cluster_heap_offset,
                g.cluster_count
            ),
            (2048, 128, 4096, 15872)
        );
        assert_eq!(g.sectors_per_cluster, 8);
        for bytes in [
            8u64 << 20,
            300 << 20,
            32 << 30,
            (64 << 30) + (7 << 20),
            2 << 40,
        ] {
            let g = Geometry::new(bytes).unwrap();
            let heap_end = u64::from(g.cluster_heap_offset)
                + u64::from(g.cluster_count) * u64::from(g.sectors_per_cluster);
            assert!(heap_end <= g.volume_sectors, "{bytes}: {g:?}");
            assert!(
                u64::from(g.fat_length) * 512 >= (u64::from(g.cluster_count) + 2) * 4,
                "{bytes}: {g:?}"
            );
            assert!(
                g.fat_offset + g.fat_length <= g.cluster_heap_offset,
                "{g:?}"
            );
        }
        assert!(Geometry::new(4 << 20).is_err());
    }

    #[test]
    fn labels_follow_exfat_rules() {
        assert!(check_label("").is_ok());
        assert!(check_label("Données 2026").is_err()); // 12 units
        assert!(check_label("Données 26").is_ok());
        assert!(check_label("a/b").is_err());
        assert!(check_label("tab\there").is_err());
    }
}
