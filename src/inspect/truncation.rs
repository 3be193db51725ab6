//! Is the image shorter than it says it is? (An interrupted download.)
//!
//! A truncated ISO still parses: its system area, volume descriptors and
//! first directories lie in its first megabytes. Copied byte for byte it
//! gives a stick whose partitions and files run off the end of what was
//! written. So the sizes the image declares are compared with its length:
//!
//! - the ISO 9660 primary volume descriptor's volume space size × logical
//!   block size (the whole ISO 9660 volume, every file extent inside it);
//! - the end of every GPT partition entry (the header and the entry array
//!   are CRC-checked, so their numbers are the table's, not noise);
//! - the end of every MBR primary and logical partition that starts inside
//!   the image, when sector 0 is a partition table at all: every slot's
//!   status byte is 0x00 or 0x80, as Linux requires before it reads an MBR
//!   (a FAT boot sector also ends in 55 AA, and its boot code would read as
//!   nonsense entries). The protective entry (0xEE) of a GPT disk is not
//!   counted: some tools always give it the 2 TiB maximum.
//!
//! Not counted, deliberately: the GPT's backup header and last usable LBA
//! beyond the end (an image cut after its last partition by `truncate` or
//! PiShrink-style tools, or a partial `dd` of a larger disk: still a complete
//! system, and the kernel reads the primary table), the Apple partition map,
//! and MBR entries that start past the end (indistinguishable from garbage).
//! `docs/decisions.md` says why there is no override.

use crate::image::partitions::{Mbr, Table, MBR_TYPE_GPT_PROTECTIVE};
use crate::image::{ByteSource, Error};
use serde::Serialize;

use super::Tables;

/// What declares a size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "from")]
pub enum DeclaredBy {
    /// The ISO 9660 primary volume descriptor's volume space size.
    Iso9660Volume,
    /// A partition entry.
    Partition { table: Table, index: u32 },
}

impl std::fmt::Display for DeclaredBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeclaredBy::Iso9660Volume => f.write_str("ISO 9660 volume"),
            DeclaredBy::Partition { table, index } => {
                write!(f, "{} partition {index}", table.name())
            }
        }
    }
}

/// The image ends before something it declares does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[error(
    "the image ends at byte {image_bytes} but its {by} says it ends at byte {declared_bytes}: truncated download?"
)]
pub struct Truncation {
    /// The image's length.
    pub image_bytes: u64,
    /// Where the declared structure ends (the furthest one).
    pub declared_bytes: u64,
    pub by: DeclaredBy,
}

/// The ISO 9660 primary volume's end in bytes, when the image has one.
pub fn iso9660_volume_end(src: &dyn ByteSource) -> Result<Option<u64>, Error> {
    let set = crate::image::descriptors::read(src)?;
    Ok(set.primary().map(|vd| {
        let b = &vd.bytes;
        let blocks = u32::from_le_bytes([b[80], b[81], b[82], b[83]]);
        let size = u16::from_le_bytes([b[128], b[129]]);
        u64::from(blocks) * u64::from(size)
    }))
}

/// True when sector 0 reads as a partition table rather than a boot sector
/// that happens to end in 55 AA: every status byte is 0x00 or 0x80.
fn mbr_is_a_table(src: &dyn ByteSource) -> Result<bool, Error> {
    let mut s = [0u8; 512];
    src.read_exact_at(0, &mut s, "master boot record")?;
    Ok((0..4).all(|i| matches!(s[446 + 16 * i], 0x00 | 0x80)))
}

fn mbr_ends(mbr: &Mbr, image_len: u64) -> Vec<(u64, DeclaredBy)> {
    let primary = mbr
        .entries
        .iter()
        .filter(|e| e.kind != MBR_TYPE_GPT_PROTECTIVE && e.kind != 0 && e.sectors != 0)
        .map(|e| {
            (
                u64::from(e.start_lba) * 512,
                u64::from(e.sectors) * 512,
                u32::from(e.index),
            )
        });
    let logical = mbr
        .logical
        .iter()
        .filter(|e| e.kind != 0 && e.sectors != 0)
        .map(|e| (e.start_lba * 512, u64::from(e.sectors) * 512, e.index));
    primary
        .chain(logical)
        .filter(|(start, _, _)| *start < image_len)
        .map(|(start, len, index)| {
            (
                start.saturating_add(len),
                DeclaredBy::Partition {
                    table: Table::Mbr,
                    index,
                },
            )
        })
        .collect()
}

/// The furthest declared end past the image's end, if any.
pub fn check(src: &dyn ByteSource, tables: &Tables) -> Result<Option<Truncation>, Error> {
    let image_len = src.len();
    let mut ends: Vec<(u64, DeclaredBy)> = Vec::new();
    if let Some(end) = iso9660_volume_end(src)? {
        ends.push((end, DeclaredBy::Iso9660Volume));
    }
    if let Some(mbr) = &tables.mbr {
        if mbr_is_a_table(src)? {
            ends.extend(mbr_ends(mbr, image_len));
        }
    }
    if let Some(gpt) = &tables.gpt {
        let bs = u64::from(gpt.block_size);
        for e in &gpt.entries {
            let end = e.last_lba.saturating_add(1).saturating_mul(bs);
            ends.push((
                end,
                DeclaredBy::Partition {
                    table: Table::Gpt,
                    index: e.index,
                },
            ));
        }
    }
    Ok(ends
        .into_iter()
        .filter(|(end, _)| *end > image_len)
        .max_by_key(|(end, _)| *end)
        .map(|(declared_bytes, by)| Truncation {
            image_bytes: image_len,
            declared_bytes,
            by,
        }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::partitions;

    /// A 4 MiB image whose sector 0 is an MBR with one partition at LBA 2048
    /// of `sectors` sectors, status byte `status`.
    fn mbr_image(sectors: u32, status: u8) -> Vec<u8> {
        let mut img = vec![0u8; 4 << 20];
        let e = &mut img[446..462];
        e[0] = status;
        e[4] = 0x83;
        e[8..12].copy_from_slice(&2048u32.to_le_bytes());
        e[12..16].copy_from_slice(&sectors.to_le_bytes());
        img[510] = 0x55;
        img[511] = 0xAA;
        img
    }

    fn tables(img: &[u8]) -> Tables {
        let area = partitions::read_system_area(&img.to_vec()).unwrap();
        Tables {
            mbr: area.mbr,
            gpt: area.gpt,
            apm: area.apm,
            esps: Vec::new(),
        }
    }

    #[test]
    fn an_mbr_partition_past_the_end_is_a_truncation() {
        let inside = mbr_image(2048, 0x80);
        assert_eq!(check(&inside, &tables(&inside)).unwrap(), None);
        let past = mbr_image(8192, 0x00);
        assert_eq!(
            check(&past, &tables(&past)).unwrap(),
            Some(Truncation {
                image_bytes: 4 << 20,
                declared_bytes: (2048 + 8192) * 512,
                by: DeclaredBy::Partition {
                    table: Table::Mbr,
                    index: 1
                },
            })
        );
        // A boot sector's code read as entries is no partition table.
        let vbr = mbr_image(8192, 0x3C);
        assert_eq!(check(&vbr, &tables(&vbr)).unwrap(), None);
    }

    #[test]
    fn the_iso9660_volume_size_counts() {
        let mut img = vec![0u8; 40 * 2048];
        let pvd = &mut img[16 * 2048..17 * 2048];
        pvd[0] = 1;
        pvd[1..6].copy_from_slice(b"CD001");
        pvd[80..84].copy_from_slice(&50u32.to_le_bytes());
        pvd[128..130].copy_from_slice(&2048u16.to_le_bytes());
        let t = check(&img, &Tables::default()).unwrap().unwrap();
        assert_eq!(t.declared_bytes, 50 * 2048);
        assert_eq!(t.by, DeclaredBy::Iso9660Volume);
        assert!(t.to_string().contains("truncated download?"), "{t}");
        img.resize(50 * 2048, 0);
        assert_eq!(check(&img, &Tables::default()).unwrap(), None);
    }
}
