//! Opening a chosen disk so that nothing else can use it while it is written,
//! and proving right before the first write that it is still the disk the
//! user chose.
//!
//! - `O_EXCL` on the whole disk: the kernel refuses it (`EBUSY`) while any
//!   partition is mounted, used as swap, stacked on (dm, md) or opened
//!   exclusively by someone else, and while we hold it nothing can mount a
//!   partition — including filesystems mounted in other mount namespaces,
//!   which `/proc/self/mountinfo` cannot show.
//! - `flock(LOCK_EX)` on the same open file, held for the whole job: udev's
//!   convention (systemd.io/BLOCK_DEVICE_LOCKING) — udevd skips probing a
//!   locked disk, so no partition scan or automount races the write.
//! - Identity (`major:minor`, size, serial, loop backing file) is captured
//!   when the user chooses the disk and compared after opening and again right
//!   before the first byte is written: a stick pulled and another plugged in
//!   can get the same `/dev/sdX`.

use super::enumerate::{build, Disk, State};
use super::mounts::DevNum;
use super::sysfs::{Graph, Roots};
use super::Error;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What makes a disk the disk the user chose.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub path: PathBuf,
    pub dev: Option<DevNum>,
    pub size_bytes: u64,
    pub serial: Option<String>,
    pub backing_file: Option<String>,
}

impl Identity {
    /// The identity of `disk` as enumerated.
    pub fn of(disk: &Disk) -> Identity {
        Identity {
            name: disk.name.clone(),
            path: disk.path.clone(),
            dev: disk.dev,
            size_bytes: disk.size_bytes,
            serial: disk.serial.clone(),
            backing_file: disk.backing_file.clone(),
        }
    }

    /// Compares with `now`, naming the first difference.
    fn compare(&self, now: &Identity) -> Result<(), IdentityChange> {
        let show = |o: &Option<String>| o.clone().unwrap_or_else(|| "none".into());
        let dev = |d: &Option<DevNum>| d.map_or("none".into(), |d| d.to_string());
        let (what, was, now) = if self.dev != now.dev {
            (IdentityField::DeviceNumber, dev(&self.dev), dev(&now.dev))
        } else if self.size_bytes != now.size_bytes {
            (
                IdentityField::Size,
                format!("{} bytes", self.size_bytes),
                format!("{} bytes", now.size_bytes),
            )
        } else if self.serial != now.serial {
            (IdentityField::Serial, show(&self.serial), show(&now.serial))
        } else if self.backing_file != now.backing_file {
            (
                IdentityField::BackingFile,
                show(&self.backing_file),
                show(&now.backing_file),
            )
        } else {
            return Ok(());
        };
        Err(IdentityChange::Differs {
            path: self.path.clone(),
            what,
            was,
            now,
        })
    }
}

/// Which part of a disk's identity changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdentityField {
    DeviceNumber,
    Size,
    Serial,
    BackingFile,
}

impl std::fmt::Display for IdentityField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IdentityField::DeviceNumber => "device number",
            IdentityField::Size => "size",
            IdentityField::Serial => "serial",
            IdentityField::BackingFile => "backing file",
        })
    }
}

/// Why the disk at the chosen path is not (or cannot be shown to be) the disk
/// that was chosen. Nothing has been written when this is returned.
#[derive(Debug, thiserror::Error)]
pub enum IdentityChange {
    #[error(
        "{} is no longer the disk that was chosen ({what} was {was}, now {now}); nothing was written — check which device is plugged in and run again",
        path.display()
    )]
    Differs {
        path: PathBuf,
        what: IdentityField,
        /// The value when the disk was chosen, as shown to the user.
        was: String,
        /// The value now.
        now: String,
    },
    #[error("cannot tell whether {} is still the disk that was chosen; nothing was written", path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        cause: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// The size of an open block device (`BLKGETSIZE64`), without moving the
/// file offset the engine may share.
fn device_size(file: &File) -> std::io::Result<u64> {
    const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;
    let mut size: u64 = 0;
    // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which is valid.
    let r = unsafe {
        libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(file),
            BLKGETSIZE64,
            &mut size,
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(size)
    }
}

/// The identity the system shows now: the open file's device number and
/// size, and sysfs's serial and backing file for that device number.
fn current_identity(
    roots: &Roots,
    chosen: &Identity,
    file: &File,
) -> Result<Identity, IdentityChange> {
    let unreadable = |cause: Box<dyn std::error::Error + Send + Sync>| IdentityChange::Unreadable {
        path: chosen.path.clone(),
        cause,
    };
    let meta = file.metadata().map_err(|e| unreadable(e.into()))?;
    let dev = DevNum {
        major: rustix::fs::major(meta.rdev()),
        minor: rustix::fs::minor(meta.rdev()),
    };
    let size_bytes = device_size(file).map_err(|e| unreadable(e.into()))?;
    let graph = Graph::read(roots).map_err(|e| unreadable(e.into()))?;
    let state = State::read(roots).map_err(|e| unreadable(e.into()))?;
    let disk = build(&graph, &state)
        .into_iter()
        .find(|d| d.dev == Some(dev));
    Ok(Identity {
        name: disk.as_ref().map_or_else(String::new, |d| d.name.clone()),
        path: chosen.path.clone(),
        dev: Some(dev),
        size_bytes,
        serial: disk.as_ref().and_then(|d| d.serial.clone()),
        backing_file: disk.and_then(|d| d.backing_file),
    })
}

/// A whole disk opened with `O_EXCL` and locked with `flock(LOCK_EX)`; both
/// are released when this (and every file cloned from it) is dropped.
#[derive(Debug)]
pub struct Guarded {
    file: File,
    identity: Identity,
    roots: Roots,
}

/// How long to wait for a `flock` that udev holds while probing.
const LOCK_WAIT: Duration = Duration::from_secs(5);

impl Guarded {
    /// Opens `disk` exclusively, locks it, and checks it is still the disk
    /// that was enumerated.
    pub fn open(roots: &Roots, disk: &Disk) -> Result<Guarded, Error> {
        let path = disk.path.clone();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_EXCL | libc::O_CLOEXEC)
            .open(&path)
            .map_err(|source| {
                if source.raw_os_error() == Some(libc::EBUSY) {
                    Error::Busy { path: path.clone() }
                } else {
                    Error::Open {
                        path: path.clone(),
                        cause: source,
                    }
                }
            })?;
        if !file
            .metadata()
            .map_err(|source| Error::Open {
                path: path.clone(),
                cause: source,
            })?
            .file_type()
            .is_block_device()
        {
            return Err(Error::NotATarget { path });
        }
        let start = Instant::now();
        loop {
            match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => break,
                Err(e) if e == rustix::io::Errno::WOULDBLOCK && start.elapsed() < LOCK_WAIT => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => {
                    return Err(Error::Locked {
                        path,
                        cause: e.into(),
                    })
                }
            }
        }
        let g = Guarded {
            file,
            identity: Identity::of(disk),
            roots: roots.clone(),
        };
        g.check_identity().map_err(Error::IdentityChanged)?;
        Ok(g)
    }

    /// The open, locked disk.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The device path.
    pub fn path(&self) -> &Path {
        &self.identity.path
    }

    pub(crate) fn roots_sys(&self) -> &Path {
        &self.roots.sys
    }

    pub(crate) fn roots_dev(&self) -> &Path {
        &self.roots.dev
    }

    /// The identity captured when the disk was chosen.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Another handle on the same open file (sharing the exclusive claim and
    /// the lock), for the write engine.
    pub fn try_clone(&self) -> Result<File, Error> {
        self.file.try_clone().map_err(|source| Error::Open {
            path: self.identity.path.clone(),
            cause: source,
        })
    }

    /// Compares the chosen identity with what the system shows now.
    pub fn check_identity(&self) -> Result<(), IdentityChange> {
        let now = current_identity(&self.roots, &self.identity, &self.file)?;
        self.identity.compare(&now)
    }

    /// The check for the write engine's `Options::before_first_write`: the
    /// same comparison, made right before the first byte is written.
    pub fn identity_check(&self) -> Result<crate::write::BeforeFirstWrite, Error> {
        let file = self.try_clone()?;
        let identity = self.identity.clone();
        let roots = self.roots.clone();
        Ok(Box::new(move || {
            let now = current_identity(&roots, &identity, &file)?;
            identity.compare(&now)
        }))
    }
}

/// Unmounts every filesystem on `disk` (whole disk and partitions),
/// deepest mount point first, never lazily: `umount2` without `MNT_DETACH`
/// fails while a file is open, instead of returning while the filesystem
/// still lives. Re-reads the mount table after each round, since a path can
/// carry several stacked mounts. Returns the mount points unmounted.
pub fn unmount_all(roots: &Roots, disk: &Disk) -> Result<Vec<PathBuf>, Error> {
    let mut done = Vec::new();
    for _round in 0..16 {
        let graph = Graph::read(roots)?;
        let state = State::read(roots)?;
        let Some(now) = build(&graph, &state)
            .into_iter()
            .find(|d| d.name == disk.name)
        else {
            return Ok(done);
        };
        let mut points: Vec<PathBuf> = now.all_mountpoints().cloned().collect();
        if points.is_empty() {
            return Ok(done);
        }
        points.sort_by(|a, b| {
            b.components()
                .count()
                .cmp(&a.components().count())
                .then(b.cmp(a))
        });
        points.dedup();
        for mp in points {
            match rustix::mount::unmount(&mp, rustix::mount::UnmountFlags::empty()) {
                Ok(()) => done.push(mp),
                // Already gone (unmounted with its parent, or by someone else).
                Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOENT) => {}
                Err(e) => {
                    return Err(Error::Unmount {
                        mountpoint: mp,
                        cause: e.into(),
                    })
                }
            }
        }
    }
    Err(Error::Unmount {
        mountpoint: disk.path.clone(),
        cause: std::io::Error::other("filesystems keep being mounted again"),
    })
}

/// Detaches a SCSI-attached disk (USB sticks and card readers are SCSI
/// disks) through its `device/delete` attribute: the kernel flushes the
/// drive's cache, stops it and removes the device, so it can be pulled.
/// Call it only after every handle on the disk is closed.
pub fn eject(roots: &Roots, disk: &Disk) -> Result<(), Error> {
    let attr = roots
        .sys
        .join("block")
        .join(&disk.name)
        .join("device/delete");
    if !attr.exists() {
        return Err(Error::NotDetachable {
            path: disk.path.clone(),
            transport: disk.transport.name(),
        });
    }
    std::fs::write(&attr, "1").map_err(|cause| Error::Eject {
        path: disk.path.clone(),
        attr,
        cause,
    })
}
