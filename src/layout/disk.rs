//! A whole stick as one plan: a partition table and one FAT32 partition
//! from 1 MiB to (nearly) the end of the device, holding a file tree.
//!
//! This is the shape Rufus calls "ISO mode" for UEFI: one data partition
//! (MBR type 0x0C, or GPT "basic data"), because firmware boots removable
//! media from `\EFI\BOOT\BOOT<arch>.EFI` on any FAT volume it sees and
//! Windows mounts a basic-data partition where it would hide an ESP.
//! The partition starts at 1 MiB and ends on a MiB boundary, the erase-block
//! alignment flash sticks are fastest with.

use crate::layout::exfat;
use crate::layout::fat32::{self, Dir};
use crate::layout::partition::{self, Kind, Partition};
use crate::plan::{Extent, Plan, PlanError, MIB};

/// Which partition table the stick gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    /// A classic MBR: boots on BIOS-era and UEFI machines alike (the entry
    /// is marked active), limited to 2 TiB.
    Mbr,
    /// A GPT with protective MBR: UEFI only.
    Gpt,
}

/// What the stick looks like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Device size in bytes.
    pub size: u64,
    pub table: Table,
    /// FAT volume label (and GPT partition name).
    pub label: String,
    /// Seeds the MBR disk signature, the FAT volume serial and the GPT GUIDs,
    /// so the same inputs always give the same bytes.
    pub id: u32,
    /// Timestamp of every file, in seconds since the Unix epoch.
    pub mtime: i64,
}

/// Why a stick layout could not be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("the stick ({size} bytes) is too small for a FAT32 partition")]
    Fat32 {
        size: u64,
        #[source]
        source: fat32::Error,
    },
    #[error("the stick ({size} bytes) cannot hold this exFAT volume")]
    Exfat {
        size: u64,
        #[source]
        source: exfat::Error,
    },
    #[error(transparent)]
    Partition(#[from] partition::Error),
    #[error(transparent)]
    Plan(#[from] PlanError),
}

/// Where the partition lies on a device of `size` bytes under `table`.
pub fn partition_range(size: u64, table: Table) -> (u64, u64) {
    // GPT keeps its backup (33 sectors) at the end; stop on the MiB before.
    let usable_end = match table {
        Table::Mbr => size,
        Table::Gpt => size.saturating_sub(34 * partition::SECTOR),
    };
    let end = usable_end / MIB * MIB;
    (MIB, end.saturating_sub(MIB))
}

/// The disk GUID derived from `id`: a fixed, version-4-shaped GUID with
/// `id` in its last four bytes.
fn disk_guid(id: u32) -> [u8; 16] {
    let mut g = partition::guid("B0075714-C4B0-4F00-9000-000000000000");
    g[12..16].copy_from_slice(&id.to_be_bytes());
    g
}

/// Lays out the whole stick: the table, the FAT32 volume holding `root`
/// in its one partition, and (GPT) the backup table at the device's end.
pub fn fat32_stick(root: &Dir, options: &Options) -> Result<(Plan, fat32::Summary), Error> {
    let (start, len) = partition_range(options.size, options.table);
    let fat_err = |source| Error::Fat32 {
        size: options.size,
        source,
    };
    let part = Partition {
        start,
        len,
        kind: Kind::Fat32Data,
        name: options.label.clone(),
        bootable: true,
    };
    let mut volume = fat32::Options::new(len, &options.label);
    volume.volume_id = options.id;
    volume.hidden_sectors = (start / partition::SECTOR) as u32;
    volume.mtime = options.mtime;
    // Check the volume geometry first: its error says more than the table's.
    fat32::Geometry::new(len, None).map_err(fat_err)?;

    let mut b = Plan::builder();
    let gpt = match options.table {
        Table::Mbr => {
            let mbr = partition::mbr(options.id, options.size, std::slice::from_ref(&part))?;
            b.push(0, Extent::bytes(mbr.to_vec()))?;
            None
        }
        Table::Gpt => {
            let gpt = partition::gpt(
                options.size,
                disk_guid(options.id),
                std::slice::from_ref(&part),
            )?;
            gpt.push_primary(&mut b)?;
            Some(gpt)
        }
    };
    let summary = fat32::build(root, &volume, start, &mut b).map_err(|e| match e {
        fat32::Error::Plan(p) => Error::Plan(p),
        e => fat_err(e),
    })?;
    if let Some(gpt) = gpt {
        gpt.push_backup(&mut b)?;
    }
    Ok((b.build(), summary))
}

/// Lays out the whole stick with one MBR partition (type 0x07) holding an
/// empty exFAT volume (`layout::exfat`).
pub fn exfat_stick(options: &Options) -> Result<(Plan, exfat::Summary), Error> {
    let (start, len) = partition_range(options.size, Table::Mbr);
    let ex_err = |source| Error::Exfat {
        size: options.size,
        source,
    };
    let part = Partition {
        start,
        len,
        kind: Kind::ExfatData,
        name: options.label.clone(),
        bootable: false,
    };
    exfat::Geometry::new(len).map_err(ex_err)?;
    let mut b = Plan::builder();
    let mbr = partition::mbr(options.id, options.size, std::slice::from_ref(&part))?;
    b.push(0, Extent::bytes(mbr.to_vec()))?;
    let volume = exfat::Options {
        bytes: len,
        partition_offset: start / partition::SECTOR,
        label: options.label.clone(),
        serial: options.id,
    };
    let summary = exfat::build(&volume, start, &mut b).map_err(|e| match e {
        exfat::Error::Plan(p) => Error::Plan(p),
        e => ex_err(e),
    })?;
    Ok((b.build(), summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_is_mib_aligned_and_leaves_room_for_the_backup_gpt() {
        let size = 8_004_304_896; // a "8 GB" stick
        let (s, l) = partition_range(size, Table::Gpt);
        assert_eq!(s, MIB);
        assert_eq!((s + l) % MIB, 0);
        assert!(s + l <= size - 34 * 512);
        let (_, l2) = partition_range(size, Table::Mbr);
        assert!(l2 >= l);
    }

    #[test]
    fn too_small_a_stick_names_the_fat32_limit() {
        let r = fat32_stick(
            &Dir::new(),
            &Options {
                size: 16 * MIB,
                table: Table::Mbr,
                label: "X".into(),
                id: 1,
                mtime: 0,
            },
        );
        assert!(matches!(r, Err(Error::Fat32 { .. })), "{r:?}");
    }

    #[test]
    fn gpt_plan_ends_at_the_device_end() {
        let (plan, _) = fat32_stick(
            &Dir::new(),
            &Options {
                size: 64 * MIB,
                table: Table::Gpt,
                label: "X".into(),
                id: 1,
                mtime: 0,
            },
        )
        .unwrap();
        assert_eq!(plan.end(), 64 * MIB);
    }
}
