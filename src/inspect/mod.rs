//! Inspecting an image before anything is written: which filesystems and
//! boot structures it has, and whether it should be copied byte for byte
//! (`raw`) or needs a built layout (`layout`) — with the reasons.
//!
//! [`inspect`] gathers everything the readers can tell (El Torito, the system
//! area, the EFI System Partitions and the EFI images' loaders, facts from the
//! file tree when one was read) and hands it to the rule in [`decision`].
//! Structures that are present but damaged become `problems` in the report
//! rather than failures: a report that says "the GPT's CRC is wrong" is more
//! useful than no report. Only I/O errors on the image fail.

pub mod decision;
pub mod facts;
pub mod truncation;

pub use decision::{Code, Decision, Mode, Reason};
pub use facts::Facts;
pub use truncation::Truncation;

use crate::image::eltorito::{self, BootImage, FatFile, Platform};
use crate::image::partitions::{self, Apm, Gpt, Mbr, Partition};
use crate::image::{ByteSource, FileTree, FsKind};
use serde::Serialize;

/// Errors that stop an inspection (only reading the image itself failing).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Image(#[from] crate::image::Error),
}

/// One El Torito boot image with its resolved extent and, for EFI images,
/// the loaders inside it.
#[derive(Clone, Debug, Serialize)]
pub struct BootImageReport {
    #[serde(flatten)]
    pub image: BootImage,
    /// `/EFI/BOOT/BOOT*.EFI` inside the image (EFI entries only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub efi_loaders: Option<Vec<FatFile>>,
    /// Why the image could not be read as FAT (EFI entries only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The El Torito catalog as found.
#[derive(Clone, Debug, Serialize)]
pub struct ElTorito {
    pub catalog_lba: u32,
    pub platform: Platform,
    pub id: String,
    pub images: Vec<BootImageReport>,
}

/// An EFI System Partition and what its FAT holds.
#[derive(Clone, Debug, Serialize)]
pub struct EspReport {
    #[serde(flatten)]
    pub partition: Partition,
    pub loaders: Vec<FatFile>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The partition tables of the system area.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Tables {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mbr: Option<Mbr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpt: Option<Gpt>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub apm: Option<Apm>,
    /// EFI System Partitions (MBR 0xEF or GPT ESP type) inside the image.
    pub esps: Vec<EspReport>,
}

/// Everything `bootstick inspect` reports.
#[derive(Clone, Debug, Serialize)]
pub struct Inspection {
    /// Image size in bytes.
    pub size: u64,
    /// Volume label (from the file tree, else the ISO 9660 primary descriptor).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Filesystems whose descriptors were found (`iso9660`, `joliet`, `udf`).
    pub filesystems: Vec<FsKind>,
    /// The filesystem the file tree was read through, when one was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tree: Option<FsKind>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub el_torito: Option<ElTorito>,
    pub partitions: Tables,
    /// Facts from the file tree (absent when no tree was read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub facts: Option<Facts>,
    /// The image ends before its ISO 9660 volume or a partition does
    /// (`truncation`): also listed in `problems`; `write` refuses it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncated: Option<Truncation>,
    /// Damaged structures, each with its byte offset.
    pub problems: Vec<String>,
    pub decision: Decision,
}

/// What the volume descriptors at block 16 onwards say: ISO 9660 (and its
/// label), Joliet, a UDF volume recognition sequence.
fn probe_filesystems(src: &dyn ByteSource) -> Result<(Vec<FsKind>, Option<String>), Error> {
    let set = crate::image::descriptors::read(src)?;
    let mut kinds = Vec::new();
    let mut label = None;
    if let Some(pvd) = set.primary() {
        kinds.push(FsKind::Iso9660);
        let id = String::from_utf8_lossy(&pvd.bytes[40..72])
            .trim_end()
            .to_owned();
        label = (!id.is_empty()).then_some(id);
    }
    if set.joliet().is_some() {
        kinds.push(FsKind::Joliet);
    }
    if set.udf.is_some() {
        kinds.push(FsKind::Udf);
    }
    Ok((kinds, label))
}

/// Inspects `src`. `tree` is the image's file tree when the caller could
/// open one (see `image::open`); without it the facts are absent and El
/// Torito images are sized from partitions, FAT headers and the catalog.
pub fn inspect(src: &dyn ByteSource, tree: Option<&dyn FileTree>) -> Result<Inspection, Error> {
    let size = src.len();
    let mut problems = Vec::new();
    let (filesystems, pvd_label) = probe_filesystems(src)?;

    let area = partitions::read_system_area(src)?;
    problems.extend(area.problems.iter().map(ToString::to_string));
    let parts = area.partitions(size);

    let mut esps = Vec::new();
    for p in parts.iter().filter(|p| p.esp) {
        let (loaders, error) = match eltorito::efi_loaders(src, p.offset, p.len) {
            Ok(l) => (l, None),
            Err(e @ crate::image::Error::Io { .. }) => return Err(e.into()),
            Err(e) => (Vec::new(), Some(crate::error_chain(&e))),
        };
        esps.push(EspReport {
            partition: p.clone(),
            loaders,
            error,
        });
    }

    let el_torito = match eltorito::read_catalog(src) {
        Ok(Some(cat)) => {
            let mut images = Vec::new();
            for entry in &cat.entries {
                let image = eltorito::resolve_size(src, entry, tree, &parts)?;
                let (efi_loaders, error) = if entry.platform == Platform::Efi {
                    match eltorito::efi_loaders(src, image.offset, image.len) {
                        Ok(l) => (Some(l), None),
                        Err(e @ crate::image::Error::Io { .. }) => return Err(e.into()),
                        Err(e) => (None, Some(crate::error_chain(&e))),
                    }
                } else {
                    (None, None)
                };
                images.push(BootImageReport {
                    image,
                    efi_loaders,
                    error,
                });
            }
            Some(ElTorito {
                catalog_lba: cat.catalog_lba,
                platform: cat.platform,
                id: cat.id,
                images,
            })
        }
        Ok(None) => None,
        Err(e @ crate::image::Error::Io { .. }) => return Err(e.into()),
        Err(e) => {
            problems.push(crate::error_chain(&e));
            None
        }
    };

    let facts = match tree {
        Some(t) => match facts::scan(t) {
            Ok(f) => Some(f),
            Err(e @ crate::image::Error::Io { .. }) => return Err(e.into()),
            Err(e) => {
                problems.push(format!("file tree: {}", crate::error_chain(&e)));
                None
            }
        },
        None => None,
    };

    let tables = Tables {
        mbr: area.mbr,
        gpt: area.gpt,
        apm: area.apm,
        esps,
    };
    let truncated = truncation::check(src, &tables)?;
    if let Some(t) = &truncated {
        problems.insert(0, t.to_string());
    }
    let decision = decide(
        size,
        &filesystems,
        &tables,
        el_torito.as_ref(),
        facts.as_ref(),
    );
    Ok(Inspection {
        size,
        label: tree
            .map(|t| t.label().to_owned())
            .filter(|l| !l.is_empty())
            .or(pvd_label),
        filesystems,
        tree: tree.map(|t| t.kind()),
        el_torito,
        partitions: tables,
        facts,
        truncated,
        problems,
        decision,
    })
}

/// Whether the MBR's boot code could start: code present and every entry
/// starting inside the image (garbage entries mean the "code" is data).
fn bios_bootable(mbr: &Mbr, size: u64) -> bool {
    mbr.boot_code
        && mbr
            .entries
            .iter()
            .all(|e| u64::from(e.start_lba) * 512 < size.max(512))
}

/// The rule. See the module documentation of [`decision`].
pub fn decide(
    size: u64,
    filesystems: &[FsKind],
    tables: &Tables,
    el_torito: Option<&ElTorito>,
    facts: Option<&Facts>,
) -> Decision {
    let optical = filesystems
        .iter()
        .any(|k| matches!(k, FsKind::Iso9660 | FsKind::Udf));
    let mut reasons = Vec::new();
    let bios = tables.mbr.as_ref().is_some_and(|m| bios_bootable(m, size));
    let usable_esp = tables.esps.iter().find(|e| !e.loaders.is_empty());

    if bios {
        reasons.push(Reason::new(
            Code::BiosBootCode,
            "the MBR holds boot code a BIOS can run from USB",
        ));
    } else if let Some(m) = &tables.mbr {
        reasons.push(Reason::new(
            Code::MbrNotBootable,
            if m.boot_code {
                "the MBR has boot code but a partition entry points outside the image"
            } else {
                "the MBR has the 55 AA signature but no boot code: a BIOS cannot start it"
            },
        ));
    }
    if let Some(esp) = usable_esp {
        let names: Vec<&str> = esp.loaders.iter().map(|l| l.path.as_str()).collect();
        reasons.push(Reason::new(
            Code::EspWithLoaders,
            format!(
                "{} partition {} is an EFI System Partition holding {}: UEFI boots it from USB",
                esp.partition.table.name(),
                esp.partition.index,
                names.join(", ")
            ),
        ));
    } else {
        for esp in &tables.esps {
            reasons.push(Reason::new(
                Code::EspWithoutLoaders,
                format!(
                    "{} partition {} is typed EFI System Partition but holds no /EFI/BOOT/BOOT*.EFI{}",
                    esp.partition.table.name(),
                    esp.partition.index,
                    esp.error.as_ref().map(|e| format!(" ({e})")).unwrap_or_default()
                ),
            ));
        }
        let efi_in_catalog = el_torito.is_some_and(|t| {
            t.images
                .iter()
                .any(|i| i.image.entry.platform == Platform::Efi)
        });
        if efi_in_catalog {
            reasons.push(Reason::new(
                Code::EfiOnlyInElTorito,
                "the EFI boot image is only reachable through El Torito (as from a CD); \
                 no partition entry exposes it, so UEFI cannot boot a byte-for-byte copy",
            ));
        }
    }
    if let Some(f) = facts {
        if f.windows.is_windows() {
            reasons.push(Reason::new(
                Code::WindowsMedia,
                match &f.windows.install_image {
                    Some(i) => format!("Windows setup media ({} is {} bytes)", i.path, i.size),
                    None => "Windows setup media (bootmgr)".to_owned(),
                },
            ));
        }
        for l in &f.large_files {
            reasons.push(Reason::new(
                Code::FileTooLargeForFat32,
                format!(
                    "{} is {} bytes: FAT32 holds files under 4 GiB",
                    l.path, l.size
                ),
            ));
        }
    }

    let mode = if optical {
        if bios || usable_esp.is_some() {
            Mode::Raw
        } else {
            reasons.insert(
                0,
                Reason::new(
                    Code::NotHybrid,
                    "an optical image (ISO 9660/UDF) without a USB-bootable system area: \
                     copied byte for byte it would not boot from a stick; it needs a built FAT32 layout",
                ),
            );
            Mode::Layout
        }
    } else if tables.mbr.is_some() || tables.gpt.is_some() {
        reasons.insert(
            0,
            Reason::new(
                Code::DiskImage,
                "a disk image (partition table, no ISO 9660 or UDF): copied byte for byte",
            ),
        );
        Mode::Raw
    } else {
        reasons.insert(
            0,
            Reason::new(
                Code::Unrecognised,
                "no ISO 9660, UDF or partition table recognised: copied byte for byte as given",
            ),
        );
        Mode::Raw
    };
    Decision { mode, reasons }
}
