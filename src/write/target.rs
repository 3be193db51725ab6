//! What the engine writes to: a block device or a regular file, opened once.
//!
//! A regular file is never written in place: it is written to a temporary
//! file beside it (same directory, so the final `rename` is atomic and
//! stays on one filesystem) and renamed over the old one only by
//! [`Target::commit`], after the write (and the read-back) succeeded. A
//! failed or interrupted write leaves the old file as it was and no partial
//! file behind: the temporary file is removed when the [`Target`] is dropped
//! uncommitted, and [`remove_staged_files`] removes every one still pending
//! (for a signal handler's thread, where no destructor runs).

use std::fs::{File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

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
    /// For a regular file written through a temporary file: where it goes.
    staged: Option<Staged>,
}

/// A temporary file waiting to be renamed over its destination.
#[derive(Debug)]
struct Staged {
    temp: PathBuf,
    dest: PathBuf,
    committed: bool,
}

/// Temporary files of every uncommitted staged target in this process.
static PENDING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn pending() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    PENDING.lock().unwrap_or_else(|e| e.into_inner())
}

fn forget(temp: &Path) {
    pending().retain(|p| p != temp);
}

/// Removes the temporary file of every staged target not yet committed, and
/// returns how many were removed. For a thread that handles a terminating
/// signal (it takes a lock: not for an async signal handler itself), so an
/// interrupted write leaves no partial file behind.
pub fn remove_staged_files() -> usize {
    let mut list = pending();
    let n = list
        .drain(..)
        .filter(|p| std::fs::remove_file(p).is_ok())
        .count();
    n
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(s) = &self.staged {
            if !s.committed {
                let _ = std::fs::remove_file(&s.temp);
                forget(&s.temp);
            }
        }
    }
}

/// Longest part of the destination's name kept in the temporary name, so
/// `.NAME.bootstick-XXXXXXXX` stays within `NAME_MAX` (255 bytes).
const NAME_KEPT: usize = 200;

/// `.NAME.bootstick-XXXXXXXX` in `dir`: hidden, and recognisable as ours.
fn temp_name(dir: &Path, name: &std::ffi::OsStr) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    let bytes = name.as_bytes();
    let kept = std::ffi::OsStr::from_bytes(&bytes[..bytes.len().min(NAME_KEPT)]);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    let mut n = std::ffi::OsString::from(".");
    n.push(kept);
    n.push(format!(".bootstick-{:08x}", h.finish() as u32));
    dir.join(n)
}

impl Target {
    /// Opens `path` for writing: a block device is opened read-write with
    /// `O_EXCL` (the kernel refuses with `EBUSY` while it or a partition is
    /// mounted or otherwise claimed); anything else is a regular file,
    /// written through a temporary file beside it ([`Target::staged`]:
    /// call [`Target::commit`] once written). A path under `/dev/` that does
    /// not exist is refused rather than created, so a typo never makes a
    /// file in `/dev`.
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
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && path.starts_with("/dev") => {
                Err(Error::OpenTarget {
                    path: path.to_owned(),
                    source: e,
                })
            }
            _ => Target::staged(path),
        }
    }

    /// Opens a temporary file beside the regular file `path` leads to
    /// (symlinks followed), created with `O_EXCL`; [`Target::commit`]
    /// renames it over `path`. A file it replaces keeps its permissions and
    /// owner. Dropped uncommitted, the temporary file is removed.
    pub fn staged(path: &Path) -> Result<Target, Error> {
        let open_error = |source| Error::OpenTarget {
            path: path.to_owned(),
            source,
        };
        let dest = crate::devices::resolve_links(path);
        let (Some(dir), Some(name)) = (dest.parent(), dest.file_name()) else {
            return Err(Error::NotATarget {
                path: path.to_owned(),
            });
        };
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        let old = std::fs::metadata(&dest).ok().filter(|m| m.is_file());
        let mut attempts = 0;
        let (file, temp) = loop {
            let temp = temp_name(dir, name);
            match OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o666)
                .custom_flags(libc::O_CLOEXEC)
                .open(&temp)
            {
                Ok(f) => break (f, temp),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempts < 16 => {
                    attempts += 1;
                }
                Err(e) => return Err(open_error(e)),
            }
        };
        pending().push(temp.clone());
        let target = Target {
            file,
            path: path.to_owned(),
            block_device: false,
            capacity: None,
            staged: Some(Staged {
                temp,
                dest,
                committed: false,
            }),
        };
        if let Some(m) = old {
            // Best effort: root may give the file back to its owner; anyone
            // else keeps ownership of what they create.
            let _ = std::os::unix::fs::fchown(&target.file, Some(m.uid()), Some(m.gid()));
            use std::os::unix::fs::PermissionsExt;
            target
                .file
                .set_permissions(std::fs::Permissions::from_mode(m.mode() & 0o7777))
                .map_err(open_error)?;
        }
        Ok(target)
    }

    /// Puts a staged file in place: flushes it, renames it over its
    /// destination and flushes the directory, so the new file is durable
    /// under its name. Call it only after the write (and the read-back)
    /// succeeded. Does nothing for a block device or a file written in
    /// place.
    pub fn commit(&mut self) -> Result<(), Error> {
        let Some(s) = self.staged.as_mut() else {
            return Ok(());
        };
        if s.committed {
            return Ok(());
        }
        self.file
            .sync_all()
            .map_err(|source| Error::Sync { source })?;
        std::fs::rename(&s.temp, &s.dest).map_err(|source| Error::Commit {
            path: s.dest.clone(),
            source,
        })?;
        s.committed = true;
        forget(&s.temp);
        let dir = match s.dest.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|source| Error::Sync { source })
    }

    /// The temporary file a staged target is written to before
    /// [`Target::commit`], while uncommitted.
    pub fn staged_path(&self) -> Option<&Path> {
        self.staged
            .as_ref()
            .filter(|s| !s.committed)
            .map(|s| s.temp.as_path())
    }

    /// Creates (or truncates) the regular file at `path` as a target,
    /// written in place: for callers that own the path (a fresh file). The
    /// `write` command uses [`Target::staged`] through [`Target::open`].
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
            staged: None,
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
            staged: None,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// [`remove_staged_files`] removes every pending file of the process:
    /// the tests that stage files take turns.
    static SERIAL: Mutex<()> = Mutex::new(());

    fn serial() -> std::sync::MutexGuard<'static, ()> {
        SERIAL.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_staged_file_replaces_the_old_one_only_when_committed() {
        let _serial = serial();
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("stick.img");
        std::fs::write(&dest, b"old contents").unwrap();
        // Dropped uncommitted (a failed write): the old file stays, and the
        // temporary file is gone.
        let mut t = Target::open(&dest).unwrap();
        let temp = t.staged_path().unwrap().to_path_buf();
        assert!(temp
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(".stick.img.bootstick-"));
        (&t.file).write_all(b"new").unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"old contents");
        t.file.flush().unwrap();
        drop(t);
        assert_eq!(names(dir.path()), vec!["stick.img"]);
        assert_eq!(std::fs::read(&dest).unwrap(), b"old contents");
        // Committed: replaced.
        let mut t = Target::open(&dest).unwrap();
        (&t.file).write_all(b"new").unwrap();
        t.commit().unwrap();
        assert!(t.staged_path().is_none());
        drop(t);
        assert_eq!(names(dir.path()), vec!["stick.img"]);
        assert_eq!(std::fs::read(&dest).unwrap(), b"new");
    }

    #[test]
    fn a_staged_write_through_a_symlink_writes_the_file_it_points_to() {
        let _serial = serial();
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("real")).unwrap();
        let real = dir.path().join("real/stick.img");
        std::fs::write(&real, b"old").unwrap();
        let link = dir.path().join("link.img");
        std::os::unix::fs::symlink("real/stick.img", &link).unwrap();
        let mut t = Target::open(&link).unwrap();
        assert_eq!(t.staged_path().unwrap().parent(), real.parent());
        (&t.file).write_all(b"new").unwrap();
        t.commit().unwrap();
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read(&real).unwrap(), b"new");
    }

    #[test]
    fn pending_temporary_files_can_be_removed_without_the_target() {
        let _serial = serial();
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("new.img");
        let t = Target::open(&dest).unwrap();
        let temp = t.staged_path().unwrap().to_path_buf();
        assert!(temp.exists());
        // What a signal handler's thread does while the job still runs.
        assert!(remove_staged_files() >= 1);
        assert!(!temp.exists() && !dest.exists());
        // The target's own cleanup then finds nothing left to do.
        drop(t);
        assert!(names(dir.path()).is_empty());
    }
}
