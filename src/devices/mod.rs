//! Block devices: which disks exist, which of them may be written, and
//! opening one so that nothing else can touch it while it is written.
//!
//! Writing to the wrong disk is the worst thing bootstick can do, so this
//! module is built around not doing it (see `docs/devices.md`):
//!
//! - [`enumerate`] lists whole disks from sysfs — not from mounted
//!   filesystems, so a blank or freshly written stick is listed — with the
//!   facts a user needs to recognise a disk (model, size, serial, labels) and
//!   the facts the safety rules need (system disk, mounts, holders, swap).
//! - [`resolve`] turns TARGET (path, by-id/by-path link, serial) into a whole
//!   disk or an image file; [`check`] applies the refusal rules.
//! - [`Guarded::open`] opens the disk with `O_EXCL` + `flock(LOCK_EX)` and
//!   [`Guarded::identity_check`] is the write engine's last check before the
//!   first byte; [`unmount_all`] and [`Guarded::reread_partitions`] bracket
//!   the write.
//! - Every input is read relative to [`Roots`], so tests run the enumerator
//!   on captured trees and the VM test-bed runs it inside a guest.

mod enumerate;
mod files;
mod guard;
pub mod mounts;
mod reread;
mod resolve;
mod safety;
mod sysfs;
mod system;

pub use enumerate::{by_name, enumerate, Disk, Kind, Partition, Transport};
pub use files::{
    check_file, file_key, resolve_links, FileId, FileKey, FileTarget, ImageSite, Placement, Step,
};
pub use guard::{eject, unmount_all, Guarded, Identity, IdentityChange, IdentityField};
pub use mounts::DevNum;
pub use reread::{Method as RereadMethod, Reread};
pub use resolve::{resolve, Resolved};
pub use safety::{check, eligible, Policy};
pub use sysfs::Roots;
pub use system::SYSTEM_MOUNTPOINTS;

use std::path::PathBuf;

/// Why a device question could not be answered or a target was refused.
/// Every message says what to do next.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {cause} (is sysfs/procfs mounted?)")]
    Sysfs {
        path: PathBuf,
        cause: std::io::Error,
    },
    /// `files` is whether the job could create an image file instead (only
    /// writing can): then the message says how to name one. `resolve` sets
    /// it false; [`Error::for_writing`] sets it, so that `probe`, `format`
    /// or `backup` never suggest a file they would refuse or not find.
    #[error(
        "no disk or file named {target:?}: not a /dev path, a /dev/disk/by-id or by-path link, or the serial number of a disk; run `bootstick list` (or `list --all`) to see the disks{}",
        if *files { format!("; to create an image file, give a path such as ./{target}.img") } else { String::new() }
    )]
    UnknownTarget { target: String, files: bool },
    #[error(
        "{}: no such device; nothing of that name exists under /dev (a stick that is unplugged, or a typo?); run `bootstick list` (or `list --all`) to see the disks",
        path.display()
    )]
    NoSuchDevice { path: PathBuf },
    #[error("cannot read the image {}: {cause}", path.display())]
    Image {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("cannot use {} as a target: {cause}", path.display())]
    FileTarget {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(
        "cannot create {}: {} is not an existing directory; create it first or give another path",
        path.display(), dir.display()
    )]
    NoDirectory { path: PathBuf, dir: PathBuf },
    #[error(
        "cannot write {}: {} is on a read-only filesystem; give a path on a writable one",
        path.display(), dir.display()
    )]
    ReadOnlyFilesystem { path: PathBuf, dir: PathBuf },
    #[error(
        "cannot write {}: no permission to create files in {} ({cause}); give a path in a directory you can write",
        path.display(), dir.display()
    )]
    NotWritable {
        path: PathBuf,
        dir: PathBuf,
        cause: std::io::Error,
    },
    #[error(
        "the target {} is the image {} itself (the same file); writing it would destroy the image; give another target",
        path.display(), image.display()
    )]
    ImageIsTarget { path: PathBuf, image: PathBuf },
    #[error(
        "the image {} is on the target {} ({how}); writing the target would overwrite the image while it is read; copy the image to another disk first",
        image.display(), path.display()
    )]
    ImageOnTarget {
        path: PathBuf,
        image: PathBuf,
        how: Placement,
    },
    #[error(
        "{} is the backing file of the attached loop device {loops}; writing it changes what the loop device reads; detach it first (`losetup -d {loops}`) or, to write it anyway, force it",
        path.display()
    )]
    BacksLoop { path: PathBuf, loops: String },
    /// A forced write to a loop device's backing file that the loop
    /// device's own rules refuse (`rule`: mounted, swap, holders).
    #[error("{} is the backing file of the loop device {}", path.display(), loop_device.display())]
    BackingInUse {
        path: PathBuf,
        loop_device: PathBuf,
        #[source]
        rule: Box<Error>,
    },
    #[error("serial number {serial:?} belongs to several disks ({}); name the disk by its /dev path instead", list(paths))]
    AmbiguousSerial { serial: String, paths: Vec<PathBuf> },
    #[error(
        "{} is neither a block device nor a regular file; give a whole disk such as /dev/sdX or the path of an image file",
        path.display()
    )]
    NotATarget { path: PathBuf },
    #[error(
        "{} is partition {partition} of the disk {}; bootstick writes whole disks: give {} (everything on it will be erased)",
        path.display(), disk.display(), disk.display()
    )]
    Partition {
        path: PathBuf,
        partition: String,
        disk: PathBuf,
    },
    #[error(
        "{} is {name}, a device-mapper or RAID device, not a disk; give a whole disk (see `bootstick list`)",
        path.display()
    )]
    NotWholeDisk { path: PathBuf, name: String },
    #[error(
        "{} is a system disk (it holds {reasons}); bootstick never writes to it and no flag overrides this; choose another disk (`bootstick list`)",
        path.display()
    )]
    SystemDisk { path: PathBuf, reasons: String },
    #[error(
        "{} is read-only (a write-protect switch on the stick or card?); unlock it, plug it in again and retry",
        path.display()
    )]
    ReadOnly { path: PathBuf },
    #[error(
        "{} is an internal {transport} disk, neither removable nor USB-attached",
        path.display()
    )]
    NotRemovable {
        path: PathBuf,
        transport: &'static str,
    },
    #[error("{} holds active swap ({swaps}); run `swapoff {swaps}` first", path.display())]
    Swap { path: PathBuf, swaps: String },
    #[error(
        "{} is in use by {holders} (dm-crypt, LVM or RAID); close them first (cryptsetup close, vgchange -an, mdadm --stop)",
        path.display()
    )]
    Held { path: PathBuf, holders: String },
    #[error(
        "{} has mounted filesystems ({mountpoints})",
        path.display()
    )]
    Mounted { path: PathBuf, mountpoints: String },
    #[error(
        "{} holds {size} bytes but the image needs {needed} bytes; use a larger stick",
        path.display()
    )]
    TooSmall {
        path: PathBuf,
        size: u64,
        needed: u64,
    },
    #[error(
        "{} is busy: a partition is mounted (perhaps in another mount namespace), used as swap or by dm/md, or another program opened it exclusively; close what uses it and retry",
        path.display()
    )]
    Busy { path: PathBuf },
    #[error("cannot open {}: {cause} (writing to a disk needs root)", path.display())]
    Open {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(
        "{} is locked by another program (flock: a partitioning tool or udev?): {cause}; wait for it to finish and retry",
        path.display()
    )]
    Locked {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(transparent)]
    IdentityChanged(IdentityChange),
    #[error(
        "cannot unmount {}: {cause}; close the programs using it (`fuser -vm {}` lists them) and retry",
        mountpoint.display(), mountpoint.display()
    )]
    Unmount {
        mountpoint: PathBuf,
        cause: std::io::Error,
    },
    #[error(
        "the kernel could not re-read the partition table of {}: {cause}; unplug the stick and plug it in again to see its partitions",
        path.display()
    )]
    Reread {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(
        "cannot eject {}: a {transport} device cannot be detached this way; unplug it once the command has finished",
        path.display()
    )]
    NotDetachable {
        path: PathBuf,
        transport: &'static str,
    },
    #[error("cannot eject {}: writing {}: {cause}", path.display(), attr.display())]
    Eject {
        path: PathBuf,
        attr: PathBuf,
        cause: std::io::Error,
    },
}

impl Error {
    /// The error as a job that may create an image file reports it: an
    /// unknown TARGET then names the `./NAME.img` form (see
    /// [`Error::UnknownTarget`]).
    pub fn for_writing(self) -> Self {
        match self {
            Error::UnknownTarget { target, .. } => Error::UnknownTarget {
                target,
                files: true,
            },
            e => e,
        }
    }
}

fn list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
