//! The rules that refuse a target, each with what to do instead.
//!
//! Checked in order of how final they are: a system disk can never be
//! written (no flag overrides it); a read-only device cannot; a non-removable,
//! non-USB disk needs `--force`; swap and stacked devices (dm-crypt, LVM, md)
//! must be released by the user; mounted filesystems need `--unmount`; and the
//! plan must fit.

use super::enumerate::{Disk, Kind, Transport};
use super::Error;

/// What the user allowed on the command line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// Unmount the disk's mounted filesystems before writing (`--unmount`).
    pub unmount: bool,
    /// Allow a disk that is neither removable nor USB-attached (`--force`).
    pub force: bool,
}

/// True for a disk the picker may offer: an ordinary removable or USB disk
/// that is not a system disk.
pub fn eligible(d: &Disk) -> bool {
    d.listed_by_default && !d.system && d.size_bytes > 0
}

/// Checks `disk` against every rule for writing `needed` bytes. `Ok` means
/// the disk may be opened; mounted filesystems are then still to be
/// unmounted (the policy allowed it).
pub fn check(disk: &Disk, needed: u64, policy: Policy) -> Result<(), Error> {
    let path = disk.path.clone();
    if disk.system {
        return Err(Error::SystemDisk {
            path,
            reasons: disk.system_reasons.join(", "),
        });
    }
    if disk.read_only {
        return Err(Error::ReadOnly { path });
    }
    if disk.kind == Kind::Disk
        && !disk.removable
        && disk.transport != Transport::Usb
        && !policy.force
    {
        return Err(Error::NotRemovable {
            path,
            transport: disk.transport.name(),
        });
    }
    in_use(disk, policy)?;
    if disk.size_bytes < needed {
        return Err(Error::TooSmall {
            path,
            size: disk.size_bytes,
            needed,
        });
    }
    Ok(())
}

/// The rules about what uses a disk right now: active swap, stacked
/// devices (both final), mounted filesystems (`--unmount`). Also applied to
/// the loop devices a file target backs, since writing the file changes what
/// they read.
pub(crate) fn in_use(disk: &Disk, policy: Policy) -> Result<(), Error> {
    let path = disk.path.clone();
    let swaps: Vec<String> = std::iter::once((disk.swap, &disk.path))
        .chain(disk.partitions.iter().map(|p| (p.swap, &p.path)))
        .filter(|(s, _)| *s)
        .map(|(_, p)| p.display().to_string())
        .collect();
    if !swaps.is_empty() {
        return Err(Error::Swap {
            path,
            swaps: swaps.join(", "),
        });
    }
    let holders = disk.all_holders();
    if !holders.is_empty() {
        let list: Vec<String> = holders
            .iter()
            .map(|(h, on)| format!("{h} on {on}"))
            .collect();
        return Err(Error::Held {
            path,
            holders: list.join(", "),
        });
    }
    let mounts: Vec<String> = disk
        .all_mountpoints()
        .map(|m| m.display().to_string())
        .collect();
    if !mounts.is_empty() && !policy.unmount {
        return Err(Error::Mounted {
            path,
            mountpoints: mounts.join(", "),
        });
    }
    Ok(())
}
