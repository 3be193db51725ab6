//! Reading installer images: the byte source, the file-tree contract that the
//! ISO 9660 and UDF readers implement, and the errors they share.
//!
//! Images are untrusted input. Every reader goes through [`ByteSource`], whose
//! [`ByteSource::read_exact_at`] checks each offset and length against the
//! image size and reports a typed [`Error::OutOfBounds`] instead of a short
//! read. Readers return *where* a file's bytes lie ([`FileData`]) rather than
//! the bytes, so a 6 GiB `install.wim` is never loaded into memory: a plan can
//! stream it straight from the image.

pub mod eltorito;
pub mod fat_check;
pub mod partitions;
pub mod pe;

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

pub mod archive;
pub mod bmap;
pub mod checked;
pub mod compressed;
pub mod descriptors;
pub mod download;
pub mod extent;
pub mod input;
pub mod iso9660;
pub mod open;
pub mod pipe;
pub mod tree;
pub mod udf;

/// Random-access bytes of an image: a file on disk, or memory (tests, fuzzing,
/// an extracted El Torito image).
pub trait ByteSource: Send + Sync {
    /// The image size in bytes.
    fn len(&self) -> u64;

    /// True for an empty image.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads exactly `buf.len()` bytes at `offset` with no bounds check beyond
    /// what the medium does. Prefer [`ByteSource::read_exact_at`].
    fn read_raw(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;

    /// Reads exactly `buf.len()` bytes at `offset`; `what` names the structure
    /// being read for the error message when it lies outside the image.
    fn read_exact_at(&self, offset: u64, buf: &mut [u8], what: &'static str) -> Result<(), Error> {
        let len = buf.len() as u64;
        match offset.checked_add(len) {
            Some(end) if end <= self.len() => self
                .read_raw(offset, buf)
                .map_err(|source| Error::Io { offset, source }),
            _ => Err(Error::OutOfBounds {
                what,
                offset,
                len,
                image_len: self.len(),
            }),
        }
    }

    /// Reads `len` bytes at `offset` into a new vector, refusing lengths over
    /// `limit` so a corrupt size field cannot make us allocate gigabytes.
    fn read_vec(
        &self,
        offset: u64,
        len: u64,
        limit: u64,
        what: &'static str,
    ) -> Result<Vec<u8>, Error> {
        if len > limit {
            return Err(Error::TooLarge {
                what,
                size: len,
                limit,
            });
        }
        let mut v = vec![0; len as usize];
        self.read_exact_at(offset, &mut v, what)?;
        Ok(v)
    }
}

/// An image file opened for reading.
#[derive(Debug)]
pub struct ImageFile {
    file: File,
    len: u64,
}

impl ImageFile {
    /// Opens the image at `path` with [`input::open`]: a regular file or a
    /// block device that is not empty, never blocking on a FIFO.
    pub fn open(path: &Path) -> Result<Self, Error> {
        Ok(ImageFile::from_input(input::open(path)?))
    }

    /// Reads an image already opened by [`input::open`].
    pub fn from_input(input: input::Input) -> Self {
        let len = input.len();
        ImageFile {
            file: input.into_file(),
            len,
        }
    }

    /// Reads `file` (a clone of an [`input::Input`]'s descriptor) as an
    /// image of `len` bytes.
    pub fn from_file(file: File, len: u64) -> Self {
        ImageFile { file, len }
    }

    /// The open file, for callers that stream from it.
    pub fn file(&self) -> &File {
        &self.file
    }
}

impl ByteSource for ImageFile {
    fn len(&self) -> u64 {
        self.len
    }
    fn read_raw(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }
}

impl ByteSource for [u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }
    fn read_raw(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::UnexpectedEof)?;
        let src = self
            .get(start..start + buf.len())
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

impl ByteSource for Vec<u8> {
    fn len(&self) -> u64 {
        self.as_slice().len() as u64
    }
    fn read_raw(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.as_slice().read_raw(offset, buf)
    }
}

/// A piece of a file's contents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Run {
    /// `len` bytes stored in the image at byte `offset`.
    Data { offset: u64, len: u64 },
    /// `len` bytes that read as zeros (UDF allocated-but-unrecorded or
    /// unallocated extents, sparse tails).
    Zeros { len: u64 },
}

impl Run {
    pub fn len(&self) -> u64 {
        match *self {
            Run::Data { len, .. } | Run::Zeros { len } => len,
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where all of a file's bytes lie, in order. The runs' lengths add up to `size`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileData {
    pub size: u64,
    pub runs: Vec<Run>,
}

/// Opaque handle of a directory or file inside one reader. Only meaningful to
/// the reader that produced it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u64);

/// What a directory entry is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeKind {
    Dir,
    File,
    /// A symbolic link (Rock Ridge `SL`, UDF type 12) and its target as stored.
    Symlink(String),
}

/// One entry of a directory listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// The best name the image offers (Rock Ridge > Joliet > ISO 9660; UDF
    /// names), never empty. Not sanitised: a hostile image may name an
    /// entry `.`, `..` or `a/b`; see `tree::safe_component` before using it
    /// as a host path.
    pub name: String,
    pub kind: NodeKind,
    /// File size in bytes (0 for directories and links).
    pub size: u64,
    pub node: NodeId,
    /// Mode and time, where the image records them.
    pub meta: Meta,
}

/// What an image records about an entry besides its name and size, where
/// it does: `mount` shows them; `extract` restores neither.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Meta {
    /// Permission bits (`0o7777` of the Rock Ridge `PX` mode). `None`
    /// without Rock Ridge (Joliet, plain ISO 9660) and for UDF (not read).
    pub mode: Option<u32>,
    /// Modification time in Unix seconds: the ISO 9660 directory record's
    /// recording date, which mkisofs and xorriso set to the file's mtime.
    /// `None` when the date is zero or not a date, and for UDF (not read).
    pub mtime: Option<i64>,
}

/// Which filesystem a [`FileTree`] reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FsKind {
    Iso9660,
    Joliet,
    RockRidge,
    Udf,
}

impl std::fmt::Display for FsKind {
    /// The names the CLI accepts for `--fs` and prints.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FsKind::Iso9660 => "iso9660",
            FsKind::Joliet => "joliet",
            FsKind::RockRidge => "rock-ridge",
            FsKind::Udf => "udf",
        })
    }
}

/// A read-only file tree inside an image: what the ISO 9660 (with Joliet and
/// Rock Ridge) and UDF readers provide. Directory listings are produced on
/// demand so nothing forces the whole tree into memory.
pub trait FileTree {
    /// Which filesystem (and extension) this tree is read through.
    fn kind(&self) -> FsKind;
    /// The volume label.
    fn label(&self) -> &str;
    /// The root directory.
    fn root(&self) -> NodeId;
    /// The entries of directory `dir`, without `.` and `..`.
    fn read_dir(&self, dir: NodeId) -> Result<Vec<DirEntry>, Error>;
    /// Where the bytes of file `file` lie in the image.
    fn file_data(&self, file: NodeId) -> Result<FileData, Error>;
}

/// The largest directory we agree to read into memory. Real installer images
/// have directories of a few hundred KiB at most.
pub const MAX_DIR_BYTES: u64 = 64 << 20;

/// The deepest directory nesting we follow. ISO 9660 allows 8 levels (Rock
/// Ridge relocates deeper ones); UDF has no limit, but no installer goes near
/// this, and it bounds recursion on hostile images.
pub const MAX_DEPTH: usize = 64;

/// Everything that can go wrong reading an image.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open image {}", path.display())]
    Open {
        path: std::path::PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} is {kind}, not a regular file or block device; give the image file (or a disk to copy)", path.display())]
    NotAnImage {
        path: std::path::PathBuf,
        kind: input::NotAnImage,
    },
    #[error("the image {} is empty (0 bytes); was the download interrupted?", path.display())]
    Empty { path: std::path::PathBuf },
    /// Bytes read after a source check differ from the bytes that were
    /// checked (see [`checked`]).
    #[error("the image's bytes {start}..{end} differ from the bytes that were checked: the image changed after it was checked")]
    ChangedSinceCheck { start: u64, end: u64 },
    #[error("I/O error reading the image at byte {offset}")]
    Io {
        offset: u64,
        #[source]
        source: io::Error,
    },
    #[error("{what} at byte {offset} ({len} bytes) lies outside the image, which is {image_len} bytes long (truncated download?)")]
    OutOfBounds {
        what: &'static str,
        offset: u64,
        len: u64,
        image_len: u64,
    },
    #[error("malformed {format} at byte {offset}: {detail}")]
    Malformed {
        format: &'static str,
        offset: u64,
        detail: String,
    },
    #[error("{what} of {size} bytes exceeds the limit of {limit} bytes; the image is corrupt or hostile")]
    TooLarge {
        what: &'static str,
        size: u64,
        limit: u64,
    },
    #[error("directory structure loops back on itself at {path}")]
    Loop { path: String },
    #[error("directories nest deeper than {limit} levels at {path}")]
    TooDeep { path: String, limit: usize },
    #[error("the name {name:?} cannot be used safely as a file name ({why})")]
    UnsafeName { name: String, why: &'static str },
    #[error("no such file or directory in the image: {path}")]
    NotFound { path: String },
    #[error("{path} in the image is not a {expected}")]
    WrongKind {
        path: String,
        expected: &'static str,
    },
    /// A read of a compressed image beyond the part decoded to decide how
    /// to write it (`compressed::DecodedImage::window`).
    #[error("{what} at byte {offset} lies beyond the first {window} bytes of the compressed image, which are all that is decoded to decide how to write it")]
    BeyondWindow {
        what: &'static str,
        offset: u64,
        window: u64,
    },
    #[error("no ISO 9660 or UDF filesystem found in the image")]
    NoFilesystem,
    #[error("the image has no {kind} file tree (it has: {available})")]
    FsAbsent { kind: FsKind, available: String },
}
