//! Opening an image: the one way every command opens its IMAGE.
//!
//! # Why one function
//!
//! An image path can name anything: a FIFO with no writer (a plain `open`
//! blocks forever), `/dev/zero` or `/dev/urandom` (endless, and 0 bytes long
//! when asked for their size, so a write "succeeds" with nothing written),
//! `/dev/null` or an empty file (0 bytes: the stick keeps its old system
//! while bootstick says "verified"), a directory or a socket. [`open`]
//! accepts only what an image can be — a regular file or a block device —
//! that is not empty, and never blocks doing so:
//!
//! 1. `stat` the path first, so a character device, FIFO or socket is refused
//!    without being opened at all (opening some devices has side effects:
//!    a tape rewinds, a watchdog starts);
//! 2. open it with `O_NONBLOCK` (a FIFO that appeared in between opens at
//!    once instead of waiting for a writer) and `O_NOCTTY`;
//! 3. `fstat` the open descriptor and check the type again (the path may have
//!    been swapped between 1 and 2: the descriptor is what is read);
//! 4. clear `O_NONBLOCK`, find the size (a block device's by seeking to its
//!    end) and refuse 0 bytes.
//!
//! # Why a stamp
//!
//! An image that changes while it is written leaves the target holding a mix
//! of its old and new bytes, and the read-back cannot see it: it compares the
//! target with what was sent. [`Stamp`] is what `fstat` says about the open
//! image (device, inode, size, modification and change times); the write
//! engine compares it with a fresh one after the write and after the
//! read-back (`docs/cli.md`, exit 19).

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, OFlags};

use super::Error;

/// What an image path names, when it is something an image cannot be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotAnImage {
    CharacterDevice,
    Fifo,
    Socket,
    Directory,
    /// A symbolic link that could not be followed, or an unknown type.
    Other,
}

impl std::fmt::Display for NotAnImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NotAnImage::CharacterDevice => "a character device",
            NotAnImage::Fifo => "a FIFO (named pipe)",
            NotAnImage::Socket => "a socket",
            NotAnImage::Directory => "a directory",
            NotAnImage::Other => "not a file",
        })
    }
}

/// Whether an image is a regular file or a block device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputKind {
    File,
    BlockDevice,
}

/// What `fstat` says about an open image, for telling whether it changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub dev: u64,
    pub ino: u64,
    /// The length in bytes (for a block device, its size).
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i128,
    /// Status change time, nanoseconds since the epoch. Unlike the
    /// modification time it cannot be set back by `touch`.
    pub ctime_ns: i128,
}

/// How an image changed between two [`Stamp`]s, for messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Its length changed.
    Size { from: u64, to: u64 },
    /// Same length, but it was written to (modification or change time moved).
    Modified,
    /// The descriptor now names another file (cannot happen with `fstat` on
    /// one descriptor; kept for comparisons across opens).
    Replaced,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Size { from, to } => {
                write!(f, "its size went from {from} to {to} bytes")
            }
            Change::Modified => f.write_str("it was written to"),
            Change::Replaced => f.write_str("it was replaced by another file"),
        }
    }
}

impl Stamp {
    /// The stamp of an open image now. The size is `fstat`'s for a regular
    /// file and the device size for a block device.
    pub fn of(file: &File) -> std::io::Result<Stamp> {
        let st = rustix::fs::fstat(file)?;
        let size = if FileType::from_raw_mode(st.st_mode) == FileType::BlockDevice {
            let mut f = file;
            f.seek(SeekFrom::End(0))?
        } else {
            st.st_size as u64
        };
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        Ok(Stamp {
            dev: st.st_dev,
            ino: st.st_ino,
            size,
            mtime_ns: ns(st.st_mtime, st.st_mtime_nsec as i64),
            ctime_ns: ns(st.st_ctime, st.st_ctime_nsec as i64),
        })
    }

    /// How `now` differs from this stamp, `None` when it does not.
    pub fn change_to(&self, now: &Stamp) -> Option<Change> {
        if (self.dev, self.ino) != (now.dev, now.ino) {
            Some(Change::Replaced)
        } else if self.size != now.size {
            Some(Change::Size {
                from: self.size,
                to: now.size,
            })
        } else if (self.mtime_ns, self.ctime_ns) != (now.mtime_ns, now.ctime_ns) {
            Some(Change::Modified)
        } else {
            None
        }
    }
}

/// An image opened by [`open`].
#[derive(Debug)]
pub struct Input {
    file: File,
    path: PathBuf,
    len: u64,
    kind: InputKind,
    stamp: Stamp,
}

impl Input {
    /// The open image. Every reader of one command reads through this one
    /// descriptor (or clones of it), so a file replaced at its path later
    /// is never read.
    pub fn file(&self) -> &File {
        &self.file
    }

    pub fn into_file(self) -> File {
        self.file
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The image length in bytes, never 0.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Always false: empty images are refused. (For clippy's `len` rule.)
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn kind(&self) -> InputKind {
        self.kind
    }

    /// The image's [`Stamp`] when it was opened.
    pub fn stamp(&self) -> Stamp {
        self.stamp
    }
}

fn not_an_image(ft: FileType) -> Option<NotAnImage> {
    match ft {
        FileType::RegularFile | FileType::BlockDevice => None,
        FileType::CharacterDevice => Some(NotAnImage::CharacterDevice),
        FileType::Fifo => Some(NotAnImage::Fifo),
        FileType::Socket => Some(NotAnImage::Socket),
        FileType::Directory => Some(NotAnImage::Directory),
        _ => Some(NotAnImage::Other),
    }
}

/// Opens the image at `path` for reading, refusing what cannot be an image
/// (see the module documentation) with [`Error::NotAnImage`] or
/// [`Error::Empty`], and never blocking.
pub fn open(path: &Path) -> Result<Input, Error> {
    let open_err = |source| Error::Open {
        path: path.to_owned(),
        source,
    };
    let refuse = |kind| Error::NotAnImage {
        path: path.to_owned(),
        kind,
    };
    // 1. Refuse by the path's type before opening anything.
    let st = rustix::fs::stat(path).map_err(|e| open_err(e.into()))?;
    if let Some(kind) = not_an_image(FileType::from_raw_mode(st.st_mode)) {
        return Err(refuse(kind));
    }
    // 2. Open without waiting for anything.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(open_err)?;
    // 3. What was opened is what counts.
    let st = rustix::fs::fstat(&file).map_err(|e| open_err(e.into()))?;
    let ft = FileType::from_raw_mode(st.st_mode);
    if let Some(kind) = not_an_image(ft) {
        return Err(refuse(kind));
    }
    // 4. Ordinary blocking reads from here on.
    let flags = rustix::fs::fcntl_getfl(&file).map_err(|e| open_err(e.into()))?;
    rustix::fs::fcntl_setfl(&file, flags - OFlags::NONBLOCK).map_err(|e| open_err(e.into()))?;
    let stamp = Stamp::of(&file).map_err(|source| Error::Io { offset: 0, source })?;
    if stamp.size == 0 {
        return Err(Error::Empty {
            path: path.to_owned(),
        });
    }
    Ok(Input {
        file,
        path: path.to_owned(),
        len: stamp.size,
        kind: if ft == FileType::BlockDevice {
            InputKind::BlockDevice
        } else {
            InputKind::File
        },
        stamp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn regular_file_opens_with_its_size_and_blocking_reads() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("img");
        std::fs::write(&p, b"hello").unwrap();
        let i = open(&p).unwrap();
        assert_eq!(i.len(), 5);
        assert_eq!(i.kind(), InputKind::File);
        let flags = rustix::fs::fcntl_getfl(i.file()).unwrap();
        assert!(!flags.contains(OFlags::NONBLOCK));
    }

    #[test]
    fn empty_file_and_devices_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("empty");
        std::fs::write(&p, b"").unwrap();
        assert!(matches!(open(&p), Err(Error::Empty { .. })));
        for dev in ["/dev/null", "/dev/zero", "/dev/urandom"] {
            match open(Path::new(dev)) {
                Err(Error::NotAnImage {
                    kind: NotAnImage::CharacterDevice,
                    ..
                }) => {}
                other => panic!("{dev}: {other:?}"),
            }
        }
        assert!(matches!(
            open(dir.path()),
            Err(Error::NotAnImage {
                kind: NotAnImage::Directory,
                ..
            })
        ));
    }

    /// A FIFO nobody writes to is refused at once: a plain open would wait
    /// for a writer forever.
    #[test]
    fn fifo_without_writer_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("fifo");
        rustix::fs::mkfifoat(rustix::fs::CWD, &p, rustix::fs::Mode::from_raw_mode(0o600)).unwrap();
        let t = Instant::now();
        assert!(matches!(
            open(&p),
            Err(Error::NotAnImage {
                kind: NotAnImage::Fifo,
                ..
            })
        ));
        assert!(t.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn stamp_sees_size_and_content_changes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("img");
        std::fs::write(&p, b"0123456789").unwrap();
        let f = File::open(&p).unwrap();
        // An old modification time, so the write below surely moves it.
        f.set_modified(std::time::UNIX_EPOCH + Duration::from_secs(1_000_000_000))
            .unwrap();
        let s0 = Stamp::of(&f).unwrap();
        assert_eq!(s0.change_to(&Stamp::of(&f).unwrap()), None);
        {
            use std::os::unix::fs::FileExt;
            let w = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
            w.write_at(b"x", 3).unwrap();
        }
        assert_eq!(
            s0.change_to(&Stamp::of(&f).unwrap()),
            Some(Change::Modified)
        );
        std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(4)
            .unwrap();
        assert_eq!(
            s0.change_to(&Stamp::of(&f).unwrap()),
            Some(Change::Size { from: 10, to: 4 })
        );
    }
}
