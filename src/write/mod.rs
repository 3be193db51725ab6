//! The write engine: streams a [`Plan`] onto a [`Target`], makes it durable,
//! and reads it back to prove the target holds exactly the plan.
//!
//! # Why it is built this way
//!
//! - **Direct I/O.** Block devices (and files, where the filesystem allows)
//!   are written with `O_DIRECT`, so a multi-gigabyte image does not flood the
//!   page cache and the progress shown is the progress of the device, not of
//!   memory. Buffers and offsets are aligned to what the kernel reports
//!   (`statx(STATX_DIOALIGN)`, else `BLKSSZGET`, else 4096, see [`align`]).
//!   Unaligned edges of a run go through the page cache. Where `O_DIRECT` is
//!   refused (tmpfs), the engine falls back to buffered I/O and says so with an
//!   [`Event::Warning`].
//! - **A pipeline.** A reader thread fills aligned buffers from the plan, a
//!   hasher thread hashes the source bytes (and checksums every chunk for
//!   the read-back), and the calling thread hands the chunks to two write
//!   threads, so the next write is queued while one completes. A small fixed
//!   pool of buffers circulates between them, so memory stays bounded (seven
//!   4 MiB buffers writing, four reading back) whatever the image size and
//!   the device never waits for the CPU.
//! - **The source is hashed while it is streamed.** [`Report::source_digest`]
//!   is the digest of exactly the bytes that were written, and a mismatch
//!   with [`Options::expect_source`] fails with [`Error::SourceChanged`]: the
//!   image changed between its check and the write. With
//!   [`Options::source_blocks`] (a built layout reads the image out of
//!   order, so its streamed bytes have no whole-image digest) every block
//!   read is checked against the checking pass's digest of that block
//!   before it is used ([`crate::image::checked`]).
//! - **An image that changes during the write is caught.** The read-back
//!   proves the target holds what was sent, which is a mix when the image
//!   was being rewritten meanwhile; so the source's `fstat` stamp (size,
//!   modification and change times) is compared before the write, after it
//!   and after the read-back ([`Error::SourceModified`]).
//! - **Nothing is claimed before `fsync`.** The target is flushed (which also
//!   sends a cache flush to the device) before the write counts as done.
//! - **Read-back bypasses the page cache.** Verification reads the target
//!   with `O_DIRECT` (or, where refused, after `posix_fadvise(DONTNEED)`),
//!   checks it chunk by chunk and reports the first differing byte: a
//!   fake-capacity stick shows up as a mismatch at the offset where its real
//!   capacity ends.
//! - **The read-back reads only the target.** The write pass takes an XXH3
//!   checksum of each chunk it sends (on the hasher thread, off the writer's
//!   path), and the read-back checks the target against those; only a chunk
//!   whose checksum differs is compared with the source byte by byte, to
//!   name the first differing byte. Reading the source a second time would
//!   double the read-back's I/O (`sums` explains the choice of checksum).
//!
//! # Use
//!
//! ```no_run
//! use bootstick::{events::Silent, plan::Plan, write};
//! # fn main() -> Result<(), write::Error> {
//! let source = std::fs::File::open("image.iso").unwrap();
//! let len = source.metadata().unwrap().len();
//! let mut target = write::Target::open("/dev/sdX".as_ref())?;
//! let plan = match target.capacity() {
//!     Some(cap) => Plan::raw(len).with_tail_wipe(cap)?,
//!     None => Plan::raw(len),
//! };
//! let report = write::write(&plan, &source, &mut target, write::Options::default(), &Silent)?;
//! println!("{} bytes written, verified: {}", report.bytes_written, report.verified);
//! # Ok(()) }
//! ```

pub mod align;
mod engine;
mod fill;
mod stream;
mod sums;
mod target;
mod verify;

use std::path::PathBuf;
use std::sync::Arc;

use crate::cancel::{Cancel, TargetState};
use crate::events::Observer;
use crate::hash::{Digest, HashAlgorithm};
use crate::image::checked::BlockDigests;
use crate::image::input::{Change, Stamp};
use crate::plan::{Plan, PlanError};

pub use stream::DecodedReport;
pub use target::{remove_staged_files, Target};

/// How much data one I/O operation moves by default: large enough that
/// per-call overhead vanishes, small enough that the buffer pool stays small.
pub const DEFAULT_CHUNK: usize = 4 << 20;

/// A check run right before the first byte reaches the target. The device
/// layer uses it to re-check that the device is still the one the user chose
/// (a re-plugged stick can get the same `/dev/sdX`). An `Err` stops the job
/// with [`Error::Refused`] and nothing written.
pub type BeforeFirstWrite = Box<dyn FnOnce() -> Result<(), crate::devices::IdentityChange> + Send>;

/// How to write.
pub struct Options {
    /// Read the target back after writing and compare it with the plan.
    pub verify: bool,
    /// Called once, right before the first write; see [`BeforeFirstWrite`].
    pub before_first_write: Option<BeforeFirstWrite>,
    /// The digest the source must have (from a checksum or signature check).
    /// The source is hashed with this digest's algorithm while streaming and
    /// compared at the end.
    pub expect_source: Option<Digest>,
    /// Hash the source with this algorithm while streaming and report it in
    /// [`Report::source_digest`], without comparing it to anything.
    ///
    /// Off by default: the read-back already proves the target holds the
    /// image, and SHA-256 runs at about 2 GB/s on one core, so a digest nobody
    /// compares would make a fast device wait on the CPU (`docs/performance.md`).
    /// [`Options::expect_source`] hashes whatever this says.
    pub digest: Option<HashAlgorithm>,
    /// The SHA-256 of every block of the image, taken in the same pass as
    /// [`Options::expect_source`] (`trust::check_pinned`). With them every
    /// source byte is read through an
    /// [`image::checked::Verifier`](crate::image::checked::Verifier): a block
    /// that is not the checked one fails with
    /// [`Error::SourceChangedSinceCheck`] before any of it is sent, whatever
    /// the plan reads in whatever order, and the source digest reported is
    /// `expect_source` itself (no second whole-image hash is needed).
    pub source_blocks: Option<Arc<BlockDigests>>,
    /// The source's [`Stamp`] when it was opened (`image::input::open`). The
    /// engine compares it with the source's stamp before writing, after the
    /// write and after the read-back, and fails with
    /// [`Error::SourceModified`] (or [`Error::SourceModifiedBeforeWrite`])
    /// when the image changed. Without it the engine takes the stamp itself
    /// when it starts.
    pub source_stamp: Option<Stamp>,
    /// Bytes per I/O operation; rounded to the target's alignment.
    pub chunk_size: usize,
    /// Polled between chunks (hashing, writing, reading back): once
    /// cancelled, the job lets the I/O in flight finish and stops with
    /// [`Error::Cancelled`], saying what it left on the target.
    pub cancel: Cancel,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            verify: true,
            before_first_write: None,
            expect_source: None,
            digest: None,
            source_blocks: None,
            source_stamp: None,
            chunk_size: DEFAULT_CHUNK,
            cancel: Cancel::default(),
        }
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("verify", &self.verify)
            .field("before_first_write", &self.before_first_write.is_some())
            .field("expect_source", &self.expect_source)
            .field("digest", &self.digest)
            .field("source_blocks", &self.source_blocks)
            .field("source_stamp", &self.source_stamp)
            .field("chunk_size", &self.chunk_size)
            .field("cancelled", &self.cancel.is_cancelled())
            .finish()
    }
}

/// What a successful write did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// Bytes put on the target (the plan's extents; gaps are not counted).
    pub bytes_written: u64,
    /// The digest of the whole source image, when one was asked for
    /// ([`Options::digest`] or [`Options::expect_source`]). With
    /// [`Options::source_blocks`] it is `expect_source`, true of the bytes
    /// written because every block they came from was verified; otherwise,
    /// for plans that stream the source once, in order (raw copies), it is
    /// the digest of exactly the bytes written, and for other plans the
    /// source is hashed in a pass before writing.
    pub source_digest: Option<Digest>,
    /// The target was read back and matched the plan.
    pub verified: bool,
    /// The bulk of the data went out with `O_DIRECT`.
    pub direct_io: bool,
}

/// What a successful comparison found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompareReport {
    /// Bytes compared (all equal).
    pub bytes_compared: u64,
    /// The target was read with `O_DIRECT`, not through the page cache.
    pub direct_io: bool,
}

/// Why a write or comparison failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The plan does not fit the source or the target.
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("cannot open {}", path.display())]
    OpenTarget {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{} is neither a block device nor a regular file; give a disk (e.g. /dev/sdX) or an image file path",
        path.display()
    )]
    NotATarget { path: PathBuf },
    #[error("cannot read the image at byte {offset}")]
    ReadSource { offset: u64, source: std::io::Error },
    /// The source ended early: it was long enough when the plan was made
    /// (the plan was checked against its length), so it shrank since.
    #[error(
        "the image ends at byte {at} but was longer when the plan was made: it was truncated while being written; the target holds an incomplete image and must be written again"
    )]
    SourceTruncated { at: u64 },
    /// A block of the source is not the block that was checked
    /// ([`Options::source_blocks`]); nothing of it was sent.
    #[error(
        "the image's bytes {start}..{end} differ from the bytes that were checked: the image changed after it was checked; those bytes were not written, but the target is incomplete: check the image and write again"
    )]
    SourceChangedSinceCheck { start: u64, end: u64 },
    /// `fstat` of the source changed during the write or the read-back.
    #[error(
        "the image changed while it was being written ({change}); the target holds a mix of its old and new contents and must be written again"
    )]
    SourceModified { change: Change },
    /// `fstat` of the source changed between its opening and the write.
    #[error(
        "the image changed after it was opened ({change}); nothing was written: run the command again once the image is complete"
    )]
    SourceModifiedBeforeWrite { change: Change },
    #[error(
        "the image's {} digest is {}, but {} was expected: the image changed after it was checked; do not trust the target, check the image and write again",
        expected.algorithm(), actual.to_hex(), expected.to_hex()
    )]
    SourceChanged { expected: Digest, actual: Digest },
    /// The read-back found the target's bytes in `start..end` differ from
    /// what the write pass sent there, yet equal to the image's bytes now.
    #[error(
        "the image changed while it was being written (target bytes {start}..{end} hold its new contents, not what was written); the target holds a mix: write again"
    )]
    SourceChangedDuringWrite { start: u64, end: u64 },
    /// A staged file target could not be renamed into place; the file it
    /// was to replace is unchanged.
    #[error("cannot put the written file in place as {} (the old file, if any, is unchanged)", path.display())]
    Commit {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("refused before the first write")]
    Refused(#[source] crate::devices::IdentityChange),
    #[error(
        "writing the target failed at byte {offset}; the stick may be failing, full or removed"
    )]
    WriteTarget { offset: u64, source: std::io::Error },
    #[error("flushing the target to stable storage failed; the stick may be failing or removed")]
    Sync { source: std::io::Error },
    #[error("reading the target back failed at byte {offset}")]
    ReadTarget { offset: u64, source: std::io::Error },
    #[error(
        "the target differs from the image at byte {offset} (0x{offset:x}); a failing or fake-capacity stick, or something else wrote to it"
    )]
    Mismatch { offset: u64 },
    #[error(
        "the target ends at byte {at} but the image needs {needed} bytes; a smaller or fake-capacity stick?"
    )]
    TargetShort { at: u64, needed: u64 },
    /// The device went away under an I/O: unplugged, or its USB connection
    /// reset. The kernel then fails writes with ENODEV, or (having set the
    /// disk's size to 0 first) with ENOSPC or EIO, which would otherwise read
    /// as a full or failing stick.
    #[error(
        "the target disappeared while {during} (unplugged, or its USB connection reset); the stick holds an incomplete image: plug it in again and write it again"
    )]
    Disappeared {
        /// What was being done, with the byte offset: `writing at byte N`.
        during: String,
        /// The failed I/O; `None` when a read-back simply found the device
        /// ended (a vanished disk reads as empty).
        source: Option<std::io::Error>,
    },
    /// A compressed image could not be decoded (corrupt or truncated: the
    /// cause says where and the format's own complaint); `target` says
    /// what the job left on the target.
    #[error("cannot decompress the image: {}", target.advice())]
    Decode {
        target: TargetState,
        #[source]
        source: crate::image::compressed::Error,
    },
    /// The image does not match its bmap: a mapped range's bytes do not
    /// have the bmap's checksum, or the image ended before (or went on
    /// past) the bmap's image size. A corrupt image, or the bmap of
    /// another one; `target` says what the job left on the target.
    #[error("the image does not match its block map: {}", target.advice())]
    Bmap {
        target: TargetState,
        #[source]
        source: Box<crate::image::bmap::Error>,
    },
    /// A decoded write failed after its first chunk: the image's first MiB
    /// (and, with a declared size, its last), held back until the whole
    /// stream decoded (`write::stream`), is zeroed on the target.
    #[error(
        "the image's first MiB (partition tables, boot sectors) was held back until the whole stream was read and checked, and is zeroed: the stick holds no partition table; it will not boot"
    )]
    HeldBack {
        #[source]
        source: Box<Error>,
    },
    /// A decoded image (whose size its format does not record) continues
    /// past the end of the target.
    #[error(
        "the image is larger than the target: the target ends at byte {capacity} and the decompressed image goes on; {}",
        target.advice()
    )]
    ImageLargerThanTarget { capacity: u64, target: TargetState },
    /// Reading a stream (a pipe, `image::pipe`) failed at its compressed
    /// byte `offset`.
    #[error("reading the input stream failed at byte {offset}; {}", target.advice())]
    StreamRead {
        offset: u64,
        target: TargetState,
        #[source]
        source: std::io::Error,
    },
    /// A stream of a given length ended before it (`actual`) or went on
    /// past it (`actual: None`).
    #[error(
        "the input stream {} where {declared} bytes were expected: {}; {}",
        match actual { Some(a) => format!("ended after {a} bytes"), None => "went on past them".to_string() },
        match actual { Some(_) => "truncated (an interrupted download?)", None => "it is not the image of that size" },
        target.advice()
    )]
    StreamLength {
        declared: u64,
        actual: Option<u64>,
        target: TargetState,
    },
    /// A stream's digest, known only at its end, is not the expected one:
    /// neither the bytes written (`actual`) nor the compressed bytes read
    /// (`compressed`, for a compressed stream) have it.
    #[error(
        "the input stream's {} digest is {}{}, but {} was expected: the stream is not the image that was vouched for; {}",
        expected.algorithm(),
        actual.to_hex(),
        compressed.as_ref().map(|c| format!(" (of the compressed bytes: {})", c.to_hex())).unwrap_or_default(),
        expected.to_hex(),
        target.advice()
    )]
    StreamDigest {
        expected: Digest,
        actual: Digest,
        compressed: Option<Digest>,
        target: TargetState,
    },
    /// The read-back found target bytes `start..end` differ from what was
    /// sent there; the source was a stream read once, so the first
    /// differing byte cannot be named.
    #[error(
        "the target's bytes {start}..{end} differ from what was written there (their checksum taken while streaming does not match); a failing or fake-capacity stick, or something else wrote to it"
    )]
    StreamMismatch { start: u64, end: u64 },
    /// The job's [`Cancel`] token was cancelled; `target` says what the
    /// job left there.
    #[error("stopped before the end: {}", target.advice())]
    Cancelled { target: TargetState },
    #[error("internal error in the write engine: {0}")]
    Internal(String),
}

impl Error {
    /// What a failed job left on its target, where the error says (a
    /// cancelled job, a decoded image that was corrupt or too large).
    pub fn target_state(&self) -> Option<TargetState> {
        match self {
            Error::Cancelled { target }
            | Error::Decode { target, .. }
            | Error::Bmap { target, .. }
            | Error::ImageLargerThanTarget { target, .. }
            | Error::StreamRead { target, .. }
            | Error::StreamLength { target, .. }
            | Error::StreamDigest { target, .. } => Some(*target),
            Error::HeldBack { source } => source.target_state(),
            _ => None,
        }
    }

    /// The error for a decoder failure, `target` being what the job left
    /// on the target: a read error of the compressed file, or (after a
    /// source check) a block of it that is not the checked one, keeps its
    /// own meaning.
    pub(crate) fn from_decode(e: crate::image::compressed::Error, target: TargetState) -> Error {
        use crate::image::compressed::Error as C;
        match e {
            C::Image(crate::image::Error::ChangedSinceCheck { start, end }) => {
                Error::SourceChangedSinceCheck { start, end }
            }
            C::Image(crate::image::Error::Io { offset, source }) => {
                Error::ReadSource { offset, source }
            }
            source => Error::Decode { target, source },
        }
    }
}

/// True when `target` is a block device that is no longer there as it was
/// opened: the I/O failed with "no such device" (`errno`), or the device's
/// size now differs from its size at open (the kernel sets an unplugged
/// disk's capacity to 0 before it removes the device node).
fn disappeared(target: &Target, errno: Option<i32>) -> bool {
    if !target.is_block_device() {
        return false;
    }
    if matches!(errno, Some(libc::ENODEV | libc::ENXIO | libc::ENOMEDIUM)) {
        return true;
    }
    match engine::file_len(target.file_handle()) {
        Ok(now) => Some(now) != target.capacity(),
        Err(_) => true,
    }
}

/// Re-labels a failure on a target that has disappeared as
/// [`Error::Disappeared`], so the user reads "unplugged", not "full",
/// "failing" or "a fake-capacity stick".
fn explain_disappearance(target: &Target, e: Error) -> Error {
    let (during, source) = match e {
        Error::WriteTarget { offset, source } if disappeared(target, source.raw_os_error()) => {
            (format!("writing at byte {offset}"), Some(source))
        }
        Error::ReadTarget { offset, source } if disappeared(target, source.raw_os_error()) => {
            (format!("reading it back at byte {offset}"), Some(source))
        }
        Error::Sync { source } if disappeared(target, source.raw_os_error()) => {
            ("flushing it to stable storage".to_string(), Some(source))
        }
        Error::TargetShort { at, .. } if disappeared(target, None) => {
            (format!("reading it back at byte {at}"), None)
        }
        other => return other,
    };
    Error::Disappeared { during, source }
}

/// Streams `plan` (whose `Source` extents are read from `source`) onto
/// `target`, flushes it, and with [`Options::verify`] reads it back.
/// Stopped by [`Options::cancel`], it fails with [`Error::Cancelled`],
/// saying what it left on the target (a staged file target: untouched).
///
/// Checks that the plan fits the source and the target before anything is
/// written. Progress goes to `observer` as phases `write`, `sync` and
/// `verify` (and `check`, when a non-sequential plan makes the engine hash
/// the source first). Nothing outside the plan's extents is written.
pub fn write(
    plan: &Plan,
    source: &std::fs::File,
    target: &mut Target,
    options: Options,
    observer: &dyn Observer,
) -> Result<Report, Error> {
    engine::write(plan, source, target, options, observer)
        .map_err(|e| explain_disappearance(target, e))
        .map_err(|e| staged_untouched(target, e))
}

/// A staged file reaches its name only at `Target::commit`: a stopped or
/// failed job leaves the file it was to replace as it was (the temporary
/// file goes when the target is dropped).
fn staged_untouched(target: &Target, e: Error) -> Error {
    if target.staged_path().is_none() {
        return e;
    }
    let untouched = TargetState::Untouched;
    match e {
        Error::Cancelled { .. } => Error::Cancelled { target: untouched },
        Error::Decode { source, .. } => Error::Decode {
            target: untouched,
            source,
        },
        Error::Bmap { source, .. } => Error::Bmap {
            target: untouched,
            source,
        },
        Error::ImageLargerThanTarget { capacity, .. } => Error::ImageLargerThanTarget {
            capacity,
            target: untouched,
        },
        Error::StreamRead { offset, source, .. } => Error::StreamRead {
            offset,
            target: untouched,
            source,
        },
        Error::StreamLength {
            declared, actual, ..
        } => Error::StreamLength {
            declared,
            actual,
            target: untouched,
        },
        Error::StreamDigest {
            expected,
            actual,
            compressed,
            ..
        } => Error::StreamDigest {
            expected,
            actual,
            compressed,
            target: untouched,
        },
        e => e,
    }
}

/// Writes a compressed image (`image`, read from the open file `source`,
/// whose stamp is checked as for [`write`]) decoded on the fly onto
/// `target`, flushes it, and with [`Options::verify`] reads it back
/// against checksums of the decoded bytes that were sent: the target then
/// holds the decompressed image. A format that records its uncompressed
/// size is refused before any write when it does not fit; otherwise the
/// write stops at the target's end with [`Error::ImageLargerThanTarget`].
/// A corrupt or truncated stream fails with [`Error::Decode`]. After a
/// source check, `image` must read the compressed bytes through the
/// check's block digests and [`Options::source_blocks`] be given (its
/// `expect_source` is then reported as the source digest).
pub fn write_decoded(
    image: &crate::image::compressed::Compressed,
    source: &std::fs::File,
    target: &mut Target,
    options: Options,
    observer: &dyn Observer,
) -> Result<DecodedReport, Error> {
    stream::write(
        stream::Streamed::File { image, source },
        None,
        target,
        options,
        observer,
    )
    .map_err(|e| explain_disappearance(target, e))
    .map_err(|e| staged_untouched(target, e))
}

/// Writes a stream read once (`image::pipe`: standard input or a FIFO,
/// compressed or not) onto `target` through the same pipeline as
/// [`write_decoded`]: its first MiB (and, with a known length, its last)
/// is held back until the whole stream arrived and, with
/// [`Options::expect_source`], its digest (of the decoded bytes written,
/// or of the compressed bytes read) matched ([`Error::StreamDigest`]);
/// the read-back checks the target against checksums taken of the bytes
/// as they were sent ([`Error::StreamMismatch`] names the range that
/// differs). A length given with `Pipe::with_size` is checked
/// ([`Error::StreamLength`]). [`Options::source_blocks`] must be `None`.
pub fn write_piped(
    stream: crate::image::pipe::PipeStream,
    target: &mut Target,
    options: Options,
    observer: &dyn Observer,
) -> Result<DecodedReport, Error> {
    stream::write(
        stream::Streamed::Pipe(stream),
        None,
        target,
        options,
        observer,
    )
    .map_err(|e| explain_disappearance(target, e))
    .map_err(|e| staged_untouched(target, e))
}

/// The image a [`write_mapped`] writes through its bmap.
pub enum Mapped<'a> {
    /// An uncompressed image file.
    File(&'a std::fs::File),
    /// A compressed image file (as for [`write_decoded`]).
    Compressed {
        image: &'a crate::image::compressed::Compressed,
        source: &'a std::fs::File,
    },
    /// A stream read once (as for [`write_piped`]).
    Pipe(crate::image::pipe::PipeStream),
}

/// Writes only the ranges `bmap` maps (`image::bmap`), as `bmaptool copy`
/// does, through the pipeline of [`write_decoded`]: the image is read (or
/// decoded) in order, each mapped range goes to the target at its own
/// offset and is checked against the bmap's checksum as it passes; a range
/// that differs fails with [`Error::Bmap`] (a corrupt image, not a bad
/// stick), the image's first MiB (and its last) held back until then, so
/// the stick is left without a partition table. The unmapped ranges are
/// not written: the target keeps its old bytes there (the image's file
/// systems hold nothing there). An image whose size is not the bmap's is
/// refused before anything is written where its size is known, and fails
/// at its end otherwise. The read-back reads the mapped ranges (and the
/// tail wipe) only. The report's `bytes_written` is the mapped bytes plus
/// the tail wipe; `decoded_digest` (with [`Options::digest`], or a
/// stream's [`Options::expect_source`]) is of the whole image, unmapped
/// bytes too.
pub fn write_mapped(
    bmap: &crate::image::bmap::Bmap,
    image: Mapped<'_>,
    target: &mut Target,
    options: Options,
    observer: &dyn Observer,
) -> Result<DecodedReport, Error> {
    let input = match image {
        Mapped::File(source) => stream::Streamed::Raw { source },
        Mapped::Compressed { image, source } => stream::Streamed::File { image, source },
        Mapped::Pipe(p) => stream::Streamed::Pipe(p),
    };
    stream::write(input, Some(bmap), target, options, observer)
        .map_err(|e| explain_disappearance(target, e))
        .map_err(|e| staged_untouched(target, e))
}

/// Compares `target` with what `plan` would put on it, without writing, and
/// reports the first differing byte as [`Error::Mismatch`] (or
/// [`Error::TargetShort`] when the target ends early). Progress is reported
/// as phase `verify`. A cancelled `cancel` stops it between chunks with
/// [`Error::Cancelled`] (the target is untouched: it is only read).
pub fn compare(
    plan: &Plan,
    source: &std::fs::File,
    target: &Target,
    chunk_size: usize,
    cancel: &Cancel,
    observer: &dyn Observer,
) -> Result<CompareReport, Error> {
    engine::compare(plan, source, target, chunk_size, cancel, observer)
        .map_err(|e| explain_disappearance(target, e))
}

/// [`compare`] for a compressed image: `target` against `plan`, whose
/// `Source` extents are read from the decompressed image `decoded`
/// (decoded in order as the comparison goes).
pub fn compare_decoded(
    plan: &Plan,
    decoded: &crate::image::compressed::DecodedImage,
    target: &Target,
    chunk_size: usize,
    cancel: &Cancel,
    observer: &dyn Observer,
) -> Result<CompareReport, Error> {
    engine::compare_with(
        plan,
        &fill::SourceReader::Decoded(decoded),
        target,
        chunk_size,
        cancel,
        observer,
    )
    .map_err(|e| explain_disappearance(target, e))
}
