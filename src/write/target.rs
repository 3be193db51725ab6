//! What the engine writes to: a block device or a regular file, opened once.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::Error;

/// An opened write (or compare) target.
///
/// A block device has a fixed capacity, so plans for it are checked against
/// that size and get a tail wipe. A regular file grows to whatever the plan
/// needs (an image of a stick), and has no capacity.
#[derive(Debug)]
pub struct Target {
    file: File,
    path: PathBuf,
    block_device: bool,
    /// The device size for block devices, the current length for files
    /// opened for comparison, `None` for files created for writing.
    capacity: Option<u64>,
}

impl Target {
    /// Opens `path` for writing: a block device is opened read-write with
    /// `O_EXCL` (the kernel refuses with `EBUSY` while it or a partition is
    /// mounted or otherwise claimed); anything else is created (or truncated)
    /// as a regular file. A path under `/dev/` that does not exist is refused
    /// rather than created, so a typo never makes a file in `/dev`.
    pub fn open(path: &Path) -> Result<Target, Error> {
        match std::fs::metadata(path) {
            Ok(m) if m.file_type().is_block_device() => {
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .custom_flags(libc::O_EXCL)
                    .open(path)
                    .map_err(|source| Error::OpenTarget {
                        path: path.to_owned(),
                        source,
                    })?;
                Target::block_device(file, path)
            }
            Ok(m) if !m.file_type().is_file() => Err(Error::NotATarget {
                path: path.to_owned(),
            }),
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    && path.parent() == Some(Path::new("/dev")) =>
            {
                Err(Error::OpenTarget {
                    path: path.to_owned(),
                    source: e,
                })
            }
            _ => Target::file(path),
        }
    }

    /// Creates (or truncates) the regular file at `path` as a target.
    pub fn file(path: &Path) -> Result<Target, Error> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(|source| Error::OpenTarget {
                path: path.to_owned(),
                source,
            })?;
        Ok(Target {
            file,
            path: path.to_owned(),
            block_device: false,
            capacity: None,
        })
    }

    /// Wraps an already opened block device (the device layer opens it with
    /// its own safety checks: `O_EXCL`, `flock`). `path` is only used in
    /// messages. The file must be readable for verification.
    pub fn block_device(file: File, path: &Path) -> Result<Target, Error> {
        let target = Target::existing(file, path)?;
        if !target.block_device {
            return Err(Error::NotATarget {
                path: path.to_owned(),
            });
        }
        Ok(target)
    }

    /// Opens an existing block device or regular file read-only, to compare
    /// it with an image.
    pub fn open_read(path: &Path) -> Result<Target, Error> {
        let file = File::open(path).map_err(|source| Error::OpenTarget {
            path: path.to_owned(),
            source,
        })?;
        Target::existing(file, path)
    }

    /// An opened block device or regular file with its current size
    /// (seeking to the end of a block device yields its size in bytes);
    /// anything else is refused.
    fn existing(mut file: File, path: &Path) -> Result<Target, Error> {
        let open_error = |source| Error::OpenTarget {
            path: path.to_owned(),
            source,
        };
        let kind = file.metadata().map_err(open_error)?.file_type();
        if !kind.is_block_device() && !kind.is_file() {
            return Err(Error::NotATarget {
                path: path.to_owned(),
            });
        }
        let len = file.seek(SeekFrom::End(0)).map_err(open_error)?;
        Ok(Target {
            file,
            path: path.to_owned(),
            block_device: kind.is_block_device(),
            capacity: Some(len),
        })
    }

    /// The opened file.
    pub fn file_handle(&self) -> &File {
        &self.file
    }

    /// The path the target was opened from (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True for a block device (a stick), false for a regular file.
    pub fn is_block_device(&self) -> bool {
        self.block_device
    }

    /// How many bytes the target holds: the device size, or a compared file's
    /// length. `None` for a file created for writing, which grows as needed.
    pub fn capacity(&self) -> Option<u64> {
        self.capacity
    }
}
