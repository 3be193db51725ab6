//! The raw/layout decision and the reasons behind it.
//!
//! The rule (docs/formats.md, "Raw or layout"): an optical image (ISO 9660 or
//! UDF) is copied byte for byte only when that copy can boot from USB — a BIOS
//! runs the MBR's boot code, UEFI firmware looks for `/EFI/BOOT/BOOT*.EFI` on a
//! FAT partition it finds in the partition table. Otherwise it needs a built
//! layout (a FAT32 partition holding the tree). Anything that is not an
//! optical image is copied raw: a disk image with a partition table is meant
//! to be, and an image we do not recognise is passed through as given, with a
//! reason that says so.

use serde::Serialize;

/// How the image should be put on the stick.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Copy the image byte for byte.
    Raw,
    /// Build a partition table and a FAT32 filesystem holding the image's files.
    Layout,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Raw => "raw",
            Mode::Layout => "layout",
        }
    }
}

/// Stable identifiers of reasons, for scripts (`"code"` in JSON).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Code {
    /// The MBR carries boot code and a usable partition entry: BIOS boots it.
    BiosBootCode,
    /// An EFI System Partition in the table holds `/EFI/BOOT/BOOT*.EFI`.
    EspWithLoaders,
    /// An EFI System Partition exists but holds no removable-media loader
    /// (or cannot be read as FAT).
    EspWithoutLoaders,
    /// The MBR has the 55 AA signature but no boot code or no usable entry.
    MbrNotBootable,
    /// Optical image without a USB-bootable system area.
    NotHybrid,
    /// UEFI could only boot the El Torito image (CD emulation), not a USB copy.
    EfiOnlyInElTorito,
    /// Not an optical image, but it has an MBR or GPT: a disk image.
    DiskImage,
    /// Neither an optical image nor a partition table was found.
    Unrecognised,
    /// Windows media: needs a layout even where a copy would be readable.
    WindowsMedia,
    /// A file of 4 GiB or more: a FAT32 layout cannot hold it as is.
    FileTooLargeForFat32,
}

/// One reason, with a sentence for people.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Reason {
    pub code: Code,
    pub message: String,
}

impl Reason {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Reason {
            code,
            message: message.into(),
        }
    }
}

/// The decision and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub mode: Mode,
    pub reasons: Vec<Reason>,
}
