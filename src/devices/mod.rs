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
//! - Every input is read relative to [`Roots`], so tests run the enumerator
//!   on captured trees and the VM test-bed runs it inside a guest.

mod enumerate;
pub mod mounts;
mod sysfs;
mod system;

pub use enumerate::{by_name, enumerate, Disk, Kind, Partition, Transport};
pub use mounts::DevNum;
pub use sysfs::Roots;
pub use system::SYSTEM_MOUNTPOINTS;

use std::path::PathBuf;

/// Why a device question could not be answered or a target was refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source} (is sysfs/procfs mounted?)")]
    Sysfs {
        path: PathBuf,
        source: std::io::Error,
    },
}
