//! `format`: giving a stick back as a plain data drive (docs/health.md).
//!
//! One MBR partition (from 1 MiB to the last MiB boundary) with an empty
//! FAT32 volume (type 0x0C, the layout's own formatter,
//! `layout::disk::fat32_stick`) or exFAT volume (type 0x07,
//! `layout::disk::exfat_stick`, written from Microsoft's specification;
//! the default over 32 GiB, as Windows chooses), written and read back by
//! the write engine like every image. Old signatures go with it: every byte from the start
//! of the disk to the end of the new volume's metadata (MBR, the old GPT
//! header and entries, an ISO 9660 volume descriptor at 32 KiB, any old
//! boot sector or superblock at the partition's start) and the disk's last
//! MiB (a backup GPT) are written, zeros where the new layout has nothing.

use std::fs::File;
use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;

use crate::cancel::Cancel;
use crate::devices::{self, Disk, Guarded};
use crate::events::Observer;
use crate::layout::disk::{self, Table};
use crate::layout::fat32::Dir;
use crate::plan::{Extent, Plan, PlanError, MIB};
use crate::write;

/// The filesystem the stick gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fs {
    Fat32,
    Exfat,
}

/// Sticks larger than this get exFAT unless told otherwise (Windows's
/// choice: it offers FAT32 only up to 32 GiB).
pub const EXFAT_ABOVE: u64 = 32 << 30;

impl Fs {
    /// The filesystem for a stick of `size` bytes when none is asked for.
    pub fn default_for(size: u64) -> Fs {
        if size > EXFAT_ABOVE {
            Fs::Exfat
        } else {
            Fs::Fat32
        }
    }
}

/// How to format.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The filesystem; `None`: [`Fs::default_for`] the stick's size.
    pub fs: Option<Fs>,
    /// Volume label (at most 11 characters, the filesystem's rules); empty
    /// for none.
    pub label: String,
    pub cancel: Cancel,
}

/// What was written (the JSON `result` of `bootstick format`).
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub target: PathBuf,
    pub fs: Fs,
    pub label: String,
    pub table: &'static str,
    pub partition_offset: u64,
    pub partition_bytes: u64,
    pub cluster_bytes: u32,
    /// Bytes written (the new metadata and the zeros over old signatures).
    pub bytes_written: u64,
    /// Read back and matched.
    pub verified: bool,
    /// The partition nodes after the re-read.
    pub partitions: Vec<PathBuf>,
    pub seconds: f64,
}

/// Why a stick was not formatted.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The label breaks FAT's rules.
    #[error("the label {label:?} is not a FAT label: {why}")]
    BadLabel { label: String, why: &'static str },
    #[error("the label {label:?} is not an exFAT label: {why}")]
    BadExfatLabel { label: String, why: &'static str },
    /// The layouts address the disk in 512-byte sectors (the MBR's LBAs,
    /// FAT32's and exFAT's `BytesPerSector`); on a disk with larger
    /// logical sectors every one of those numbers would point elsewhere.
    #[error(
        "{} has {bytes}-byte logical sectors; format writes 512-byte-sector layouts only",
        path.display()
    )]
    SectorSize { path: PathBuf, bytes: u64 },
    #[error("cannot lay out {}", path.display())]
    Layout {
        path: PathBuf,
        #[source]
        source: disk::Error,
    },
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Device(#[from] devices::Error),
    #[error(transparent)]
    Write(#[from] write::Error),
}

/// Checks `label` against FAT's rules for a volume label: at most 11
/// characters, printable ASCII, none of `"*+,./:;<=>?[\]|`.
pub fn check_label(label: &str) -> Result<(), Error> {
    let bad = |why| {
        Err(Error::BadLabel {
            label: label.to_owned(),
            why,
        })
    };
    if label.len() > 11 {
        return bad("longer than 11 characters");
    }
    if !label.chars().all(|c| c.is_ascii_graphic() || c == ' ') {
        return bad("only printable ASCII characters are allowed");
    }
    if label.chars().any(|c| "\"*+,./:;<=>?[\\]|".contains(c)) {
        return bad("it holds one of \"*+,./:;<=>?[\\]|");
    }
    Ok(())
}

/// Checks `label` against the rules of `fs` (FAT32: [`check_label`];
/// exFAT: at most 11 UTF-16 characters, no control characters or
/// `"*/:<>?\|`).
pub fn check_label_for(fs: Fs, label: &str) -> Result<(), Error> {
    match fs {
        Fs::Fat32 => check_label(label),
        Fs::Exfat => match crate::layout::exfat::label_problem(label) {
            None => Ok(()),
            Some(why) => Err(Error::BadExfatLabel {
                label: label.to_owned(),
                why,
            }),
        },
    }
}

/// `plan` with zeros in every gap before `upto` and over the last MiB of
/// a disk of `size` bytes.
fn wiping(plan: Plan, upto: u64, size: u64) -> Result<Plan, PlanError> {
    let mut b = Plan::builder();
    let mut at = 0;
    for p in plan.pieces() {
        if p.at > at && at < upto {
            b.push(
                at,
                Extent::Zeros {
                    len: p.at.min(upto) - at,
                },
            )?;
        }
        b.push(p.at, p.extent.clone())?;
        at = p.at + p.extent.len();
    }
    if at < upto {
        b.push(at, Extent::Zeros { len: upto - at })?;
    }
    b.build().with_tail_wipe(size)
}

/// Formats the disk `guard` holds (chosen with `job::choose_disk`).
pub fn format(
    disk: &Disk,
    guard: Guarded,
    options: &Options,
    observer: &dyn Observer,
) -> Result<Report, Error> {
    let started = Instant::now();
    if disk.logical_block_size != 512 {
        return Err(Error::SectorSize {
            path: disk.path.clone(),
            bytes: disk.logical_block_size,
        });
    }
    let file = guard.try_clone()?;
    let mut target = write::Target::block_device(file, &disk.path)?;
    let size = target.capacity().unwrap_or(disk.size_bytes);
    let fs = options.fs.unwrap_or(Fs::default_for(size));
    check_label_for(fs, &options.label)?;
    let id = {
        use ring::rand::SecureRandom;
        let mut b = [0u8; 4];
        let _ = ring::rand::SystemRandom::new().fill(&mut b);
        u32::from_le_bytes(b)
    };
    let mtime = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let layout = disk::Options {
        size,
        table: Table::Mbr,
        label: options.label.clone(),
        id,
        mtime,
    };
    let layout_err = |source| Error::Layout {
        path: disk.path.clone(),
        source,
    };
    let (plan, cluster_bytes, label) = match fs {
        Fs::Fat32 => {
            let (plan, summary) = disk::fat32_stick(&Dir::new(), &layout).map_err(layout_err)?;
            let cluster = summary.geometry.sectors_per_cluster * 512;
            (plan, cluster, options.label.to_ascii_uppercase())
        }
        Fs::Exfat => {
            let (plan, summary) = disk::exfat_stick(&layout).map_err(layout_err)?;
            let cluster = summary.geometry.cluster_bytes() as u32;
            (plan, cluster, options.label.clone())
        }
    };
    let (start, len) = disk::partition_range(size, Table::Mbr);
    // Everything up to the end of the new metadata, and at least the first
    // MiB of the partition (old boot sectors, superblocks, ISO 9660
    // descriptors at 32 KiB into a partition).
    let upto = plan.end().max(start + MIB).min(size);
    let plan = wiping(plan, upto, size)?;
    // No image: the plan has no source extents, so the engine reads
    // nothing from this file.
    let source = File::open("/dev/null").map_err(|cause| devices::Error::Open {
        path: "/dev/null".into(),
        cause,
    })?;
    let report = write::write(
        &plan,
        &source,
        &mut target,
        write::Options {
            verify: true,
            before_first_write: Some(guard.identity_check()?),
            cancel: options.cancel.clone(),
            ..write::Options::default()
        },
        observer,
    )?;
    drop(target);
    let partitions = match guard.reread_partitions() {
        Ok(r) => r.partitions,
        Err(e) => {
            observer.event(&crate::events::Event::Warning(crate::error_chain(&e)));
            Vec::new()
        }
    };
    Ok(Report {
        target: disk.path.clone(),
        fs,
        label,
        table: "mbr",
        partition_offset: start,
        partition_bytes: len,
        cluster_bytes,
        bytes_written: report.bytes_written,
        verified: report.verified,
        partitions,
        seconds: (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_follow_fat_rules() {
        assert!(check_label("").is_ok());
        assert!(check_label("MY STICK 01").is_ok());
        assert!(check_label("TWELVE_CHARS").is_err());
        assert!(check_label("A.B").is_err());
        assert!(check_label("é").is_err());
    }

    /// Every gap before `upto` is zeros, extents are kept, and the tail is
    /// wiped.
    #[test]
    fn wiping_fills_the_gaps_up_to_the_metadata_end() {
        let mut b = Plan::builder();
        b.push(0, Extent::bytes(vec![1u8; 512])).unwrap();
        b.push(4096, Extent::bytes(vec![2u8; 512])).unwrap();
        let p = wiping(b.build(), 8192, 16 * MIB).unwrap();
        let covered: u64 = p
            .pieces()
            .iter()
            .filter(|x| x.at < 8192)
            .map(|x| x.extent.len())
            .sum();
        assert_eq!(covered, 8192);
        assert_eq!(p.end(), 16 * MIB);
        assert_eq!(p.bytes_to_write(), 8192 + MIB);
    }
}
