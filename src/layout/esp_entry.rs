//! UEFI for isohybrid ISOs whose MBR has no entry for their EFI boot image.
//!
//! Some hybrid ISOs boot a byte-for-byte copy only under BIOS. Debian's
//! `ipxe.iso` is one: an isohybrid MBR with boot code and a single active
//! entry of type 0x17 from LBA 0 over the whole image, and the El Torito EFI
//! image `/efi.img` (a FAT volume with `EFI/BOOT/BOOTX64.EFI`) inside that
//! range, with no entry pointing at it. A PC's UEFI boots a USB disk from a
//! FAT partition, and an extra 0xEF entry beside the whole-image entry does
//! not help: EDK2-based firmware rejects an MBR whose non-zero-type entries
//! overlap (`PartitionValidMbr` skips only type-0x00 entries) and then sees
//! no partitions at all.
//!
//! So the copy's plan does what xorriso does for Debian's own ISOs: the
//! whole-image entry becomes type 0x00 (same range, active flag kept; the
//! isohybrid boot code finds the active entry and does not read its type)
//! and a free slot gets a type-0xEF entry over the El Torito EFI image.
//! [`find`] allows it only when it is safe: an MBR without GPT, no extended
//! or 0xEE/0xEF entry, a free slot, the EFI image really a FAT volume with
//! `EFI/BOOT/BOOTX64.EFI`, exactly one entry overlapping it and that entry
//! covering it whole. [`EspEntry::plan`] is the image byte for byte except
//! the 64 bytes of the partition table.

use serde::Serialize;

use crate::image::eltorito::{self, Platform};
use crate::image::partitions::{self, MbrEntry};
use crate::image::{ByteSource, Error, FileTree};
use crate::layout::partition::mbr_entry;
use crate::plan::{Extent, Plan, PlanError};

/// Where the MBR's four entries lie in sector 0.
pub const TABLE_OFFSET: u64 = 446;

/// The MBR type of an EFI system partition.
pub const ESP_TYPE: u8 = 0xEF;

/// The change to an isohybrid MBR that exposes the El Torito EFI image as
/// an EFI system partition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EspEntry {
    /// The whole-image entry (slot 1..=4), whose type becomes 0x00.
    pub hidden_entry: u8,
    /// Its type before (0x17 for ipxe.iso).
    pub hidden_type: u8,
    /// Its active flag (kept).
    pub hidden_active: bool,
    /// The slot (1..=4) of the new type-0xEF entry.
    pub esp_entry: u8,
    /// The new entry's first sector and length (512-byte sectors): the El
    /// Torito EFI image.
    pub esp_start_lba: u32,
    pub esp_sectors: u32,
    /// The El Torito EFI image's file in the ISO's tree, when it is one.
    pub efi_image: Option<String>,
    /// The 64 bytes of the new partition table (MBR bytes 446..510).
    #[serde(skip)]
    pub table: [u8; 64],
}

impl EspEntry {
    /// The image of `image_len` bytes byte for byte, except the partition
    /// table, which is [`Self::table`].
    pub fn plan(&self, image_len: u64) -> Result<Plan, PlanError> {
        let mut b = Plan::builder();
        b.push(
            0,
            Extent::Source {
                offset: 0,
                len: TABLE_OFFSET,
            },
        )?;
        b.push(TABLE_OFFSET, Extent::bytes(self.table.to_vec()))?;
        let rest = TABLE_OFFSET + 64;
        b.push(
            rest,
            Extent::Source {
                offset: rest,
                len: image_len - rest,
            },
        )?;
        Ok(b.build())
    }
}

/// Whether entry `e` overlaps the sectors `start..end`.
fn overlaps(e: &MbrEntry, start: u64, end: u64) -> bool {
    let (s, n) = (u64::from(e.start_lba), u64::from(e.sectors));
    s < end && start < s + n
}

/// The change for the image `src` (its tree, when read, names the EFI
/// image), or `None` when the image does not have exactly this shape.
/// Errors are I/O errors only; a damaged structure is "not this shape".
pub fn find(src: &dyn ByteSource, tree: Option<&dyn FileTree>) -> Result<Option<EspEntry>, Error> {
    if src.len() < 512 {
        return Ok(None);
    }
    let area = match partitions::read_system_area(src) {
        Ok(a) => a,
        Err(e @ Error::Io { .. }) => return Err(e),
        Err(_) => return Ok(None),
    };
    let Some(mbr) = &area.mbr else {
        return Ok(None);
    };
    if area.gpt.is_some() || !area.problems.is_empty() || !mbr.logical.is_empty() {
        return Ok(None);
    }
    if mbr
        .entries
        .iter()
        .any(|e| matches!(e.kind, 0x05 | 0x0F | 0x85 | 0xEE | ESP_TYPE))
    {
        return Ok(None);
    }
    let Some(free) = (1..=4u8).find(|i| mbr.entries.iter().all(|e| e.index != *i)) else {
        return Ok(None);
    };
    let catalog = match eltorito::read_catalog(src) {
        Ok(Some(c)) => c,
        Ok(None) => return Ok(None),
        Err(e @ Error::Io { .. }) => return Err(e),
        Err(_) => return Ok(None),
    };
    for entry in catalog
        .entries
        .iter()
        .filter(|e| e.platform == Platform::Efi)
    {
        let img = match eltorito::resolve_size(src, entry, tree, &[]) {
            Ok(i) => i,
            Err(e @ Error::Io { .. }) => return Err(e),
            Err(_) => continue,
        };
        if img.truncated || img.len == 0 || img.offset % 512 != 0 {
            continue;
        }
        let loaders = match eltorito::efi_loaders(src, img.offset, img.len) {
            Ok(l) => l,
            Err(e @ Error::Io { .. }) => return Err(e),
            Err(_) => continue,
        };
        if !loaders
            .iter()
            .any(|l| l.path.eq_ignore_ascii_case("/EFI/BOOT/BOOTX64.EFI"))
        {
            continue;
        }
        let start = img.offset / 512;
        let end = start + img.len.div_ceil(512);
        let (Ok(start_lba), Ok(sectors)) = (u32::try_from(start), u32::try_from(end - start))
        else {
            continue;
        };
        let over: Vec<&MbrEntry> = mbr
            .entries
            .iter()
            .filter(|e| e.kind != 0 && overlaps(e, start, end))
            .collect();
        let [whole] = over.as_slice() else {
            continue;
        };
        if u64::from(whole.start_lba) > start
            || u64::from(whole.start_lba) + u64::from(whole.sectors) < end
        {
            continue;
        }
        let mut sector = [0u8; 512];
        src.read_exact_at(0, &mut sector, "MBR")?;
        let mut table = [0u8; 64];
        table.copy_from_slice(&sector[446..510]);
        table[16 * usize::from(whole.index - 1) + 4] = 0x00;
        let slot = 16 * usize::from(free - 1);
        table[slot..slot + 16].copy_from_slice(&mbr_entry(0x00, ESP_TYPE, start, end - start));
        let efi_image = match img.size_from {
            eltorito::SizeSource::File { ref path } => Some(path.clone()),
            _ => None,
        };
        return Ok(Some(EspEntry {
            hidden_entry: whole.index,
            hidden_type: whole.kind,
            hidden_active: whole.active,
            esp_entry: free,
            esp_start_lba: start_lba,
            esp_sectors: sectors,
            efi_image,
            table,
        }));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_is_the_image_but_the_table() {
        let e = EspEntry {
            hidden_entry: 1,
            hidden_type: 0x17,
            hidden_active: true,
            esp_entry: 2,
            esp_start_lba: 136,
            esp_sectors: 1728,
            efi_image: None,
            table: [7; 64],
        };
        let plan = e.plan(4096).unwrap();
        let pieces: Vec<(u64, &Extent)> = plan.pieces().iter().map(|p| (p.at, &p.extent)).collect();
        assert_eq!(
            pieces,
            [
                (
                    0,
                    &Extent::Source {
                        offset: 0,
                        len: 446
                    }
                ),
                (446, &Extent::bytes(vec![7u8; 64])),
                (
                    510,
                    &Extent::Source {
                        offset: 510,
                        len: 4096 - 510
                    }
                ),
            ]
        );
    }

    #[test]
    fn an_mbr_without_el_torito_is_left_alone() {
        let mut img = vec![0u8; 1 << 20];
        img[446 + 4] = 0x17;
        img[446 + 12..446 + 16].copy_from_slice(&2048u32.to_le_bytes());
        img[510] = 0x55;
        img[511] = 0xAA;
        assert_eq!(find(&img, None).unwrap(), None);
        assert_eq!(find(&img[..100].to_vec(), None).unwrap(), None);
    }
}
