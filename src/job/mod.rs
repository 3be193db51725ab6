//! The job: one flow from an image to a verified stick, for every caller
//! (the command line, tests, and whatever writes sticks next).
//!
//! ```text
//! Image::open ─ pinned stamp ─▶ Image::decide ─▶ Job ─ select::choose_all ─▶ Job::prepare ─▶ Prepared::run
//!   (opened once)   (source check bound)   (raw / layout)   (safety rules, Confirm)  (target + plan)  (identity check,
//!                                                                                                  write, sync, verify,
//!                                                                                                  re-read, eject)
//! ```
//!
//! - The image is opened **once** ([`Image::open`], `image::input::open`)
//!   and its `fstat` stamp (device, inode, length, times) pinned there.
//!   Everything after reads that one descriptor: the decision and the plan
//!   through [`Job::bytes`] (through the source check's block digests when
//!   there was one), the engine through the same file with the same stamp.
//!   A [`Prepared`] job borrows the [`Job`] its plan was made from, so the
//!   engine cannot be handed another file than the one planned for.
//! - The decision ([`decide`]) is a function of the image and the
//!   caller's [`Choice`] only (layout dates included), so `write` and
//!   `compare` cannot disagree about what a stick should hold.
//! - Target selection and every safety rule are here ([`select`]); only the
//!   question to the user is the caller's, behind [`select::Confirm`].
//! - Progress goes to an [`Observer`]; results are typed (`Serialize`)
//!   structs the caller renders. Errors carry typed fields and never name
//!   a command-line flag: what to do next is the caller's to say.
//!
//! # Use
//!
//! ```no_run
//! use bootstick::devices::{Policy, Roots};
//! use bootstick::events::Silent;
//! use bootstick::job::{self, Choice, Image, RunOptions, Yes};
//! # fn main() -> Result<(), job::Error> {
//! let image = std::path::Path::new("debian.iso");
//! let job = Image::open(image)?.decide(None, Choice::default())?;
//! let chosen = job::choose_all(
//!     &Roots::live(),
//!     &["/dev/sdX".into()],
//!     Policy::default(),
//!     &mut Yes, // or a `Confirm` that asks someone
//!     image,
//!     job.image_len(),
//!     job.needed(),
//! )?;
//! let options = RunOptions { verify: true, ..RunOptions::default() };
//! for prepared in job.prepare_all(chosen)? {
//!     let written = prepared.run(&options, &Silent)?;
//!     println!("{} bytes, verified: {}", written.bytes_written, written.verified);
//! }
//! # Ok(()) }
//! ```

pub mod decide;
pub mod select;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

pub use decide::{
    build_layout, esp_entry_of, inspect_source, table_name, Choice, Decided, LayoutSummary, Method,
    Notice,
};
pub use select::{
    choose_all, choose_all_stored, choose_disk, resolve_for_reading, Action, Answer, Chosen,
    Confirm, Refusal, Summary, Yes,
};

use crate::cancel::Cancel;
use crate::devices::{self, Disk, Guarded, Roots};
use crate::events::{Event, Observer};
use crate::hash::{Digest, HashAlgorithm};
use crate::image::bmap::{self, Bmap};
use crate::image::compressed::{self, Compressed, DecodedImage};
use crate::image::download::{self, Download};
use crate::image::pipe::{self, Pipe};

pub use crate::image::pipe::is_stream;
use crate::image::{self, input, ByteSource};
use crate::inspect;
use crate::layout::from_iso;
use crate::plan::Plan;
use crate::trust::{self, Outcome, Report};
use crate::write;

/// Why a job could not be done. Each variant carries what failed; none
/// says which command-line flag would change it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The image cannot be opened or read.
    #[error(transparent)]
    Image(#[from] image::Error),
    /// A target question or rule (docs/devices.md).
    #[error(transparent)]
    Device(#[from] devices::Error),
    /// The engine: writing, syncing, reading back, comparing.
    #[error(transparent)]
    Write(#[from] write::Error),
    /// A source check stopped before reaching an outcome.
    #[error(transparent)]
    Trust(#[from] trust::Error),
    #[error("cannot inspect {}", path.display())]
    Inspect {
        path: PathBuf,
        #[source]
        source: inspect::Error,
    },
    #[error("cannot build a layout of {}", path.display())]
    Layout {
        path: PathBuf,
        #[source]
        source: from_iso::Error,
    },
    /// The image is shorter than what it declares: its partitions or files
    /// would run off the end of what is written.
    #[error("{truncation}")]
    Truncated {
        path: PathBuf,
        truncation: inspect::truncation::Truncation,
    },
    /// A partition table was chosen for an image copied byte for byte
    /// (`forced`: because the caller asked for a byte copy), which keeps
    /// the image's own table: the choice would be silently ignored.
    #[error(
        "a partition table applies to built layouts only, and this image is copied byte for byte ({}), keeping its own partition table",
        if *forced { "as asked" } else { "its inspection decides raw" }
    )]
    TableForRaw { forced: bool },
    /// A byte copy and a built layout were both asked for.
    #[error("a byte-for-byte copy and a built layout were both asked for")]
    RawAndLayout,
    /// A built layout was asked for an image without an ISO 9660 or UDF
    /// file tree (a disk image, or an image not recognised): there are no
    /// files to lay out.
    #[error(
        "{} has no ISO 9660 or UDF file tree (it is a disk image or not recognised): only an optical image's files can be put into a built layout",
        path.display()
    )]
    LayoutOfNonOptical { path: PathBuf },
    /// The source check reached an outcome that does not allow the write
    /// (`require_signature`: a checksum-only match was not enough).
    #[error("source check: {}", report.outcome.name())]
    SourceCheck {
        report: Box<Report>,
        require_signature: bool,
    },
    /// The confirmation was declined (`asked`) or could not be asked.
    #[error("not confirmed")]
    Declined { summary: Box<Summary>, asked: bool },
    /// A target names a disk or file an earlier target already named.
    #[error(
        "{} is the same {} as {}",
        target.display(), if *disk { "disk" } else { "file" }, first.display()
    )]
    NamedTwice {
        target: PathBuf,
        first: PathBuf,
        disk: bool,
    },
    /// Some of several targets were refused; none was written.
    #[error("{} of {of} targets refused, nothing was written", refused.len())]
    Refused { refused: Vec<Refusal>, of: usize },
    #[error("cannot duplicate the image's file descriptor")]
    Duplicate(#[source] std::io::Error),
    /// A compressed image's framing cannot be read (`image::compressed`).
    #[error("cannot read {}", path.display())]
    Compressed {
        path: PathBuf,
        #[source]
        source: compressed::Error,
    },
    /// A compressed ISO that needs a built layout (`asked`: because the
    /// caller asked for one, [`Choice::layout`]): the layout reads its
    /// files in any order, which a compressed stream cannot give without a
    /// decompressed copy on disk (docs/cli.md, "Compressed images").
    #[error(
        "{} is a {format}-compressed ISO that needs a built layout ({}), and a layout is built only from an uncompressed ISO: decompress it first and write the ISO",
        path.display(),
        if *needed { "it is not hybrid" } else { "as asked" }
    )]
    CompressedLayout {
        path: PathBuf,
        format: compressed::Format,
        /// The user asked for a layout (`layout` in the choice).
        asked: bool,
        /// The image needs one (it is not hybrid); a hybrid's byte copy
        /// would boot.
        needed: bool,
    },
    /// A member name was given for an image that is not a zip archive.
    #[error("{} is not a zip archive: it has no entries to choose from", path.display())]
    EntryForNonArchive { path: PathBuf },
    #[error("the job's thread panicked")]
    Panicked,
    /// A stream (standard input, a FIFO) cannot be opened or read up to
    /// its head (`image::pipe`).
    #[error(transparent)]
    Stream(#[from] pipe::Error),
    /// A stream is checked only against a digest given for it: a checksum
    /// file, a signature or a second digest would need to read it again.
    #[error(
        "{} is a stream, read once: it can be checked only against one digest given for it (its SHA-256 or SHA-512), not against checksum or signature files",
        path.display()
    )]
    StreamCheck { path: PathBuf },
    /// A stream was already written by another job (it is read once).
    #[error("the input stream was already read by another job")]
    StreamTaken,
    /// A stream goes to one target: fanning it out is not done yet.
    #[error("a stream is written to one target at a time ({count} were given): save it to a file to write several sticks")]
    StreamToSeveral { count: usize },
    /// A streamed ISO that needs a built layout: a layout reads the ISO's
    /// files in any order, which a stream read once cannot give.
    #[error(
        "{} is an ISO that needs a built layout (it is not hybrid), and a layout is built only from an ISO file: save the stream to a file and write that",
        path.display()
    )]
    StreamLayout { path: PathBuf },
    /// The block map cannot be read, is not consistent, or is not of this
    /// image (its image size differs): refused before anything is written.
    #[error("cannot use the block map {}", path.display())]
    Bmap {
        path: PathBuf,
        #[source]
        source: Box<bmap::Error>,
    },
    /// A block map describes a byte-for-byte copy of the image, and this
    /// image gets a built layout (`esp_entry`: or a byte copy with an added
    /// partition entry), which would not write the image's blocks as they
    /// are.
    #[error(
        "{} is a block map of a byte-for-byte copy, but {} gets {}",
        bmap.display(),
        path.display(),
        if *esp_entry { "an added partition entry (its El Torito EFI image)" } else { "a built layout" }
    )]
    BmapNotByteCopy {
        path: PathBuf,
        bmap: PathBuf,
        esp_entry: bool,
    },
    /// A download (`image::download`): refused, failed or broken off.
    #[error(transparent)]
    Download(#[from] download::Error),
    /// The copy of a download was asked for where a target will be
    /// written.
    #[error("{} is where the download would be saved and a target at once", path.display())]
    SaveIsTarget { path: PathBuf },
    /// A job that works on whole disks only (a probe) was given a file.
    #[error(
        "{} is not a disk; give a whole disk such as /dev/sdX",
        path.display()
    )]
    NotADisk { path: PathBuf },
}

/// What asks for a source check before writing (docs/trust.md).
#[derive(Clone, Copy, Debug, Default)]
pub struct CheckPolicy {
    /// Refuse when the check fails or finds nothing to check against.
    pub required: bool,
    /// Refuse a checksum-only match (no trusted signature covers it).
    pub require_signature: bool,
}

/// Checks what is published about the download `url` before its body is read
/// (docs/trust.md, "Downloads"): the checksum files at its directory
/// (`trust::discover::published_names`, and the checksum names its index
/// page lists when it has one, fetched into a local directory with their
/// signatures, `.gpg`/`.asc`/`.sig`/`.sign`/`.minisig`) or
/// those given in `req.sums`, their signatures verified now
/// (`trust::announced`). Returns the report, whose outcome holds once the
/// stream's digest matched, and that digest, for
/// [`Image::open_download`]. The policy is [`Image::check_source`]'s: a
/// failing outcome, or nothing to check against when a check was asked
/// for, is [`Error::SourceCheck`]; lists that do not name the image, found
/// without being asked for, let it be written without a digest (`None`).
pub fn check_download(
    url: &Path,
    options: &download::Options,
    req: &trust::Request,
    policy: CheckPolicy,
) -> Result<(Option<Report>, Option<Digest>), Error> {
    let asked = policy.required || policy.require_signature || !req.keys.is_empty();
    let text = url.to_str().unwrap_or_default();
    let (base, name) = download::split_url(text).ok_or_else(|| download::Error::BadUrl {
        url: text.to_string(),
    })?;
    let mirror = tempfile::tempdir().map_err(|source| trust::Error::Io {
        path: std::env::temp_dir(),
        source,
    })?;
    if req.discover && req.sums.is_empty() {
        let fetcher = download::Fetcher::new(text, options)?;
        let fetch = |file: &str| -> Result<bool, Error> {
            let at = format!("{base}{}", download::percent_encode(file));
            match fetcher.fetch(&at, trust::MAX_REFERENCE_FILE)? {
                Some(bytes) => {
                    let local = mirror.path().join(file);
                    std::fs::write(&local, bytes).map_err(|source| trust::Error::Io {
                        path: local,
                        source,
                    })?;
                    Ok(true)
                }
                None => Ok(false),
            }
        };
        // A directory whose index page lists its files: only what it
        // lists is asked for, and names no list could guess (Fedora's
        // `…-CHECKSUM`, FreeBSD's `CHECKSUM.SHA256-…`) are found too.
        let listed = fetcher.index(&base)?;
        let exists = |f: &str| listed.as_ref().is_none_or(|l| l.iter().any(|n| n == f));
        let inner = trust::discover::inner_name(&name);
        let mut wanted = trust::discover::published_names(&name);
        for n in listed.iter().flatten() {
            let lower = n.to_ascii_lowercase();
            let about = trust::discover::is_sums_name(n, &name)
                || inner
                    .as_deref()
                    .is_some_and(|i| trust::discover::is_sums_name(n, i))
                // OpenBSD's signify list, alone.
                || lower == "sha256.sig"
                || lower == "sha512.sig";
            if about && !wanted.contains(n) {
                wanted.push(n.clone());
            }
        }
        let mut signed = vec![name.clone()];
        for file in wanted {
            if exists(&file) && fetch(&file)? {
                signed.push(file);
            }
        }
        for file in signed {
            for ext in trust::discover::SIGNATURE_EXTENSIONS {
                let sig = format!("{file}.{ext}");
                if exists(&sig) && !mirror.path().join(&sig).exists() {
                    fetch(&sig)?;
                }
            }
        }
    }
    let local = trust::Request {
        image: mirror.path().join(&name),
        expected: Vec::new(),
        ..req.clone()
    };
    let mut announced = trust::announced::check_announced(&local)?;
    announced
        .report
        .relabel(&format!("{}/", mirror.path().display()), &base);
    announced.report.image = url.to_path_buf();
    let report = announced.report;
    let discovered_only = req.sums.is_empty() && req.signatures.is_empty();
    match report.outcome {
        Outcome::NoReference if !asked => Ok((None, None)),
        Outcome::Verified => Ok((Some(report), announced.expected)),
        Outcome::ChecksumOnly if !policy.require_signature => {
            Ok((Some(report), announced.expected))
        }
        Outcome::NotListed if !asked && discovered_only => Ok((Some(report), None)),
        _ => Err(Error::SourceCheck {
            report: Box::new(report),
            require_signature: policy.require_signature,
        }),
    }
}

/// The bytes `inspect` reads for the image `src` (opened from `path`): a
/// compressed image decompressed, its size learnt by decoding it once
/// where its format records none (so every structure can be read, and the
/// size reported is the image's), with its compression.
/// A zip archive's member is `entry`, or the one image it holds.
pub fn inspectable(
    src: Arc<dyn ByteSource>,
    path: &Path,
    entry: Option<&str>,
) -> Result<(Arc<dyn ByteSource>, Option<Compressed>), Error> {
    let fail = |source| Error::Compressed {
        path: path.to_path_buf(),
        source,
    };
    let compressed = Compressed::probe_entry(src.clone(), entry).map_err(fail)?;
    check_entry(path, entry, compressed.as_ref())?;
    let Some(c) = compressed else {
        return Ok((src, None));
    };
    let len = c.measure().map_err(fail)?;
    Ok((Arc::new(DecodedImage::with_len(c.clone(), len)), Some(c)))
}

/// A member name given for an image that is not a zip archive is refused
/// rather than ignored.
fn check_entry(path: &Path, entry: Option<&str>, c: Option<&Compressed>) -> Result<(), Error> {
    match (entry, c.map(Compressed::format)) {
        (Some(_), f) if f != Some(compressed::Format::Zip) => Err(Error::EntryForNonArchive {
            path: path.to_path_buf(),
        }),
        _ => Ok(()),
    }
}

/// Where an image's bytes come from.
#[derive(Debug)]
enum Source {
    /// A regular file or block device, opened once, its stamp pinned.
    File(input::Input),
    /// A stream read once (standard input or a FIFO, `image::pipe`), with
    /// the digest it must have at its end. Taken by the one job that
    /// writes it (`Mutex<Option<…>>`: a [`Prepared`] borrows its job).
    Pipe {
        path: PathBuf,
        pipe: std::sync::Mutex<Option<Pipe>>,
        format: Option<compressed::Format>,
        size: Option<u64>,
        expected: Option<Digest>,
        /// The stream is a download.
        download: Option<Box<Fetched>>,
    },
}

/// A stream that is a download: what the server said, its counters, and
/// the copy being saved (kept once the job succeeded).
#[derive(Debug)]
struct Fetched {
    entity: download::Entity,
    stats: Arc<download::Stats>,
    save_path: Option<PathBuf>,
    staged: Option<PathBuf>,
    save: std::sync::Mutex<Option<download::Save>>,
}

impl Source {
    fn path(&self) -> &Path {
        match self {
            Source::File(i) => i.path(),
            Source::Pipe { path, .. } => path,
        }
    }

    /// The open file, for everything but a stream.
    fn file(&self) -> Option<&input::Input> {
        match self {
            Source::File(i) => Some(i),
            Source::Pipe { .. } => None,
        }
    }
}

/// Where a job's block map comes from (`image::bmap`; docs/cli.md,
/// "Block maps").
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum BmapChoice {
    /// No block map: the whole image is written.
    #[default]
    Ignore,
    /// The one beside the image, if there is one (`bmap::discover`; a
    /// stream has none).
    Discover,
    /// This file.
    File(PathBuf),
}

/// A job's block map, loaded and checked.
#[derive(Clone, Debug)]
pub struct JobBmap {
    pub path: PathBuf,
    /// Found beside the image rather than given.
    pub discovered: bool,
    pub bmap: Arc<Bmap>,
}

/// A block map, in a start line and a result.
#[derive(Clone, Debug, Serialize)]
pub struct BmapSummary {
    pub path: PathBuf,
    pub discovered: bool,
    pub version: String,
    pub block_size: u64,
    /// The image size the bmap records (the image's, checked).
    pub image_bytes: u64,
    /// Bytes in mapped ranges: written and read back.
    pub mapped_bytes: u64,
    /// Bytes not written: the target keeps its old contents there.
    pub skipped_bytes: u64,
    pub ranges: usize,
    /// Ranges with a checksum, checked as the image streams.
    pub checked_ranges: usize,
    /// The ranges' checksum algorithm (`null`: a bmap before 1.3).
    pub checksum: Option<HashAlgorithm>,
    /// The bmap's own checksum was there and matched.
    pub file_checksum: bool,
}

impl BmapSummary {
    pub fn of(b: &JobBmap) -> BmapSummary {
        let m = &b.bmap;
        BmapSummary {
            path: b.path.clone(),
            discovered: b.discovered,
            version: m.version.clone(),
            block_size: m.block_size,
            image_bytes: m.image_size,
            mapped_bytes: m.mapped_bytes(),
            skipped_bytes: m.image_size - m.mapped_bytes(),
            ranges: m.ranges.len(),
            checked_ranges: m.checked_ranges(),
            checksum: m.checksum,
            file_checksum: m.file_checksum.is_some(),
        }
    }
}

/// An image, opened once, with its identity pinned.
#[derive(Debug)]
pub struct Image {
    input: Source,
    /// The zip member to write, when the image is an archive.
    entry: Option<String>,
    /// Where its block map comes from.
    bmap: BmapChoice,
}

impl Image {
    /// Opens the image (`image::input::open`: never blocking, only a
    /// regular file or block device that is not empty).
    pub fn open(path: &Path) -> Result<Image, Error> {
        Ok(Image {
            input: Source::File(input::open(path)?),
            entry: None,
            bmap: BmapChoice::Ignore,
        })
    }

    /// Opens a stream (`-`, standard input, or a FIFO: see
    /// [`pipe::is_stream`]) to be written once (`image::pipe`): its
    /// compression is detected and its head read now, so an empty or
    /// corrupt stream is refused before any target is chosen. `size`: the
    /// decoded length, when the caller knows it (checked against the
    /// target before writing and against the stream at its end).
    /// `expected`: the digest the stream must have, its decoded bytes as
    /// written or (compressed) its compressed bytes as read, checked at its
    /// end before the first MiB held back is written (`write::write_piped`).
    pub fn open_stream(
        path: &Path,
        size: Option<u64>,
        expected: Option<Digest>,
    ) -> Result<Image, Error> {
        let algorithms: Vec<HashAlgorithm> = expected.iter().map(Digest::algorithm).collect();
        let pipe = Pipe::open(path, &algorithms)?.with_size(size);
        Ok(Image {
            input: Source::Pipe {
                path: path.to_path_buf(),
                format: pipe.format(),
                size: pipe.size(),
                pipe: std::sync::Mutex::new(Some(pipe)),
                expected,
                download: None,
            },
            entry: None,
            bmap: BmapChoice::Ignore,
        })
    }

    /// Requests `url` (`image::download::Download::open`): the response
    /// is checked (a 2xx status, not a web page: by its type and its first
    /// bytes) before anything else is done, so a 404 or a download page is
    /// refused at once. Then [`check_download`], then
    /// [`Image::open_download`].
    pub fn request_download(url: &Path, options: &download::Options) -> Result<Download, Error> {
        let text = url.to_str().ok_or_else(|| download::Error::BadUrl {
            url: url.to_string_lossy().into_owned(),
        })?;
        Ok(Download::open(text, options)?)
    }

    /// The download `dl` of `url` (from [`Image::request_download`]) as a
    /// stream written once, as [`Image::open_stream`] opens a pipe: its
    /// compression detected and its head read now, before any target is
    /// chosen. An uncompressed download's `Content-Length` is its size
    /// (checked against the target, the progress total, and against the
    /// stream's end). `expected` as for a pipe; `save`: a copy written as
    /// it streams, kept once the job succeeded.
    pub fn open_download(
        url: &Path,
        dl: Download,
        expected: Option<Digest>,
        save: Option<download::Save>,
    ) -> Result<Image, Error> {
        let entity = dl.entity().clone();
        let stats = dl.stats();
        let reader: Box<dyn std::io::Read + Send> = match &save {
            Some(s) => s.tee(Box::new(dl))?,
            None => Box::new(dl),
        };
        let algorithms: Vec<HashAlgorithm> = expected.iter().map(Digest::algorithm).collect();
        let pipe = Pipe::from_read(url, reader, &algorithms).map_err(|e| match e {
            // The download's own error, typed again.
            pipe::Error::Read { source, .. } if download::cause(&source).is_some() => {
                match source.into_inner().map(|b| b.downcast::<download::Error>()) {
                    Some(Ok(d)) => Error::Download(*d),
                    _ => Error::Panicked,
                }
            }
            e => Error::Stream(e),
        })?;
        let size = match pipe.format() {
            None => entity.length,
            Some(_) => None,
        };
        let pipe = pipe.with_size(size);
        Ok(Image {
            input: Source::Pipe {
                path: url.to_path_buf(),
                format: pipe.format(),
                size: pipe.size(),
                pipe: std::sync::Mutex::new(Some(pipe)),
                expected,
                download: Some(Box::new(Fetched {
                    entity,
                    stats,
                    save_path: save.as_ref().map(|s| s.path().to_path_buf()),
                    staged: save.as_ref().map(|s| s.staged().to_path_buf()),
                    save: std::sync::Mutex::new(save),
                })),
            },
            entry: None,
            bmap: BmapChoice::Ignore,
        })
    }

    /// True for an image opened with [`Image::open_stream`].
    pub fn is_stream(&self) -> bool {
        matches!(self.input, Source::Pipe { .. })
    }

    /// Names the member to write when the image is a zip archive (else
    /// the one image it holds is; `image::archive`). An image that is no
    /// archive is then refused ([`Error::EntryForNonArchive`]).
    pub fn with_entry(self, entry: Option<String>) -> Image {
        Image { entry, ..self }
    }

    /// Writes (and compares) only the ranges a block map maps, from
    /// `choice` (`image::bmap`): loaded and checked by [`Image::decide`].
    pub fn with_bmap(self, bmap: BmapChoice) -> Image {
        Image { bmap, ..self }
    }

    /// The block map `choice` names for this image, loaded and checked
    /// against the decision and the image's size where it is known.
    fn load_bmap(
        &self,
        decided: &Decided,
        known_len: Option<u64>,
    ) -> Result<Option<JobBmap>, Error> {
        let (path, discovered) = match (&self.bmap, &self.input) {
            (BmapChoice::Ignore, _) | (BmapChoice::Discover, Source::Pipe { .. }) => {
                return Ok(None)
            }
            (BmapChoice::Discover, Source::File(i)) => match bmap::discover(i.path()) {
                Some(p) => (p, true),
                None => return Ok(None),
            },
            (BmapChoice::File(p), _) => (p.clone(), false),
        };
        let fail = |source| Error::Bmap {
            path: path.clone(),
            source: Box::new(source),
        };
        let loaded = bmap::load(&path).map_err(fail)?;
        if let Some(len) = known_len {
            loaded.check_image_len(len).map_err(fail)?;
        }
        if !matches!(decided.method, Method::Raw) || decided.esp_entry.is_some() {
            return Err(Error::BmapNotByteCopy {
                path: self.path().to_path_buf(),
                bmap: path,
                esp_entry: decided.esp_entry.is_some(),
            });
        }
        Ok(Some(JobBmap {
            path,
            discovered,
            bmap: Arc::new(loaded),
        }))
    }

    pub fn path(&self) -> &Path {
        self.input.path()
    }

    /// The file's length; a stream's given length, else 0.
    pub fn len(&self) -> u64 {
        match &self.input {
            Source::File(i) => i.len(),
            Source::Pipe { size, .. } => size.unwrap_or(0),
        }
    }

    /// Always false: empty images and streams are refused.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The `fstat` stamp taken when a file was opened (`None`: a stream).
    pub fn stamp(&self) -> Option<input::Stamp> {
        self.input.file().map(input::Input::stamp)
    }

    /// Checks the image before anything is written, when a check is asked for
    /// (`policy`, or keys in `req`) or references exist. Returns the report
    /// when a check ran and passed (`verified`, or `checksum-only` unless a
    /// signature is required); a failing outcome is [`Error::SourceCheck`].
    /// The check is pinned: its pass takes per-block digests, and everything
    /// after reads the image only through them. It reads this image's open
    /// descriptor, not `req.image` again (`trust::check_pinned_open`).
    pub fn check_source(
        &self,
        req: &trust::Request,
        policy: CheckPolicy,
        observer: &dyn Observer,
    ) -> Result<Option<Report>, Error> {
        // Each of these asks for a check, so with nothing to check against
        // they refuse (no-reference) rather than write an image nothing vouches for.
        let asked = policy.required || policy.require_signature || !req.keys.is_empty();
        let file = match &self.input {
            Source::File(i) => i.file(),
            Source::Pipe { .. } => {
                return Err(Error::StreamCheck {
                    path: self.path().to_path_buf(),
                })
            }
        };
        if !asked && !trust::has_references(req) {
            return Ok(None);
        }
        let report = trust::check_pinned_open_entry(req, file, self.entry.as_deref(), observer)?;
        // Checksum files found beside the image that do not list it (an
        // unrelated SHA256SUMS in a downloads folder) say nothing about it:
        // unless a check was asked for or a reference given, the image is
        // written, and the report (outcome `not-listed`) says so.
        let discovered_only =
            req.sums.is_empty() && req.expected.is_empty() && req.signatures.is_empty();
        match report.outcome {
            Outcome::Verified => Ok(Some(report)),
            Outcome::ChecksumOnly if !policy.require_signature => Ok(Some(report)),
            Outcome::NotListed if !asked && discovered_only => Ok(Some(report)),
            _ => Err(Error::SourceCheck {
                report: Box::new(report),
                require_signature: policy.require_signature,
            }),
        }
    }

    /// Decides how the image is written (see [`decide::decide`]), reading it
    /// through `checked`'s block digests when a source check ran, so every
    /// byte the decision and the plan read is a checked one. A stream is
    /// decided from its head (`image::pipe`).
    pub fn decide(self, checked: Option<Report>, choice: Choice) -> Result<Job, Error> {
        use crate::image::{checked::CheckedImage, ImageFile};
        let input = match &self.input {
            Source::File(i) => i,
            Source::Pipe { pipe, format, .. } => {
                if self.entry.is_some() {
                    return Err(Error::EntryForNonArchive {
                        path: self.path().to_path_buf(),
                    });
                }
                let bytes = pipe
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .as_ref()
                    .map(Pipe::window)
                    .ok_or(Error::StreamTaken)?;
                let decided = decide::decide_as(
                    &bytes,
                    self.path(),
                    choice,
                    Some(decide::Streamed::Pipe(*format)),
                )?;
                let size = match &self.input {
                    Source::Pipe { size, .. } => *size,
                    Source::File(_) => None,
                };
                let bmap = self.load_bmap(&decided, size)?;
                return Ok(Job {
                    input: self.input,
                    // A download's published files, checked before it was
                    // opened ([`check_download`]); its digest is enforced
                    // as it streams.
                    checked,
                    bytes,
                    decided,
                    compressed: None,
                    bmap,
                });
            }
        };
        let file = input.file().try_clone().map_err(Error::Duplicate)?;
        let bytes: Arc<dyn ByteSource> =
            match checked.as_ref().and_then(|r| r.checked_blocks.clone()) {
                Some(blocks) => Arc::new(CheckedImage::new(file, blocks)),
                None => Arc::new(ImageFile::from_file(file, input.len())),
            };
        // A compressed image is decided on, and written, decompressed
        // (docs/cli.md, "Compressed images"); its compressed bytes are read
        // through `bytes`, so through the check's digests too.
        let compressed =
            Compressed::probe_entry(bytes.clone(), self.entry.as_deref()).map_err(|source| {
                Error::Compressed {
                    path: self.input.path().to_path_buf(),
                    source,
                }
            })?;
        check_entry(
            self.input.path(),
            self.entry.as_deref(),
            compressed.as_ref(),
        )?;
        let decided = match &compressed {
            Some(c) => {
                let window: Arc<dyn ByteSource> =
                    Arc::new(DecodedImage::window(c.clone(), compressed::DECIDE_WINDOW));
                decide::decide_as(
                    &window,
                    self.input.path(),
                    choice,
                    Some(decide::Streamed::Compressed(c.format())),
                )?
            }
            None => decide::decide(&bytes, self.input.path(), choice)?,
        };
        let known = match &compressed {
            Some(c) => c.declared_size(),
            None => Some(input.len()),
        };
        let bmap = self.load_bmap(&decided, known)?;
        Ok(Job {
            input: self.input,
            checked,
            bytes,
            decided,
            compressed,
            bmap,
        })
    }
}

/// An image with its decision: ready to be planned onto targets.
pub struct Job {
    input: Source,
    checked: Option<Report>,
    bytes: Arc<dyn ByteSource>,
    decided: Decided,
    /// The image is compressed: written decoded (`write::write_decoded`).
    compressed: Option<Compressed>,
    /// Only the ranges this maps are written (`write::write_mapped`).
    bmap: Option<JobBmap>,
}

impl Job {
    /// The block map the job writes through, when it has one.
    pub fn bmap(&self) -> Option<&JobBmap> {
        self.bmap.as_ref()
    }

    pub fn path(&self) -> &Path {
        self.input.path()
    }

    /// The bytes of the image a raw copy writes: the file's length, or a
    /// compressed image's declared uncompressed size (0 when its format
    /// records none: the write then stops at the target's end).
    pub fn image_len(&self) -> u64 {
        match (&self.compressed, &self.input) {
            (Some(c), _) => c.declared_size().unwrap_or(0),
            (None, Source::File(i)) => i.len(),
            (None, Source::Pipe { size, .. }) => size.unwrap_or(0),
        }
    }

    /// True when the image is a stream read once ([`Image::open_stream`]).
    pub fn is_stream(&self) -> bool {
        matches!(self.input, Source::Pipe { .. })
    }

    /// Where the image is stored on this machine, for the rule that no
    /// target may be or hold it (`select::choose_all`): the file, a
    /// download's staged copy when it is saved, else the stream's name
    /// (stored nowhere bootstick can see).
    pub fn stored_at(&self) -> &Path {
        match &self.input {
            Source::Pipe {
                download: Some(f), ..
            } => f.staged.as_deref().unwrap_or(self.path()),
            _ => self.path(),
        }
    }

    /// True when the image is a download (`image::download`).
    pub fn is_download(&self) -> bool {
        matches!(
            self.input,
            Source::Pipe {
                download: Some(_),
                ..
            }
        )
    }

    /// A stream's compression, when it is compressed.
    pub fn stream_format(&self) -> Option<compressed::Format> {
        match &self.input {
            Source::Pipe { format, .. } => *format,
            Source::File(_) => None,
        }
    }

    /// The image's compression, when it is compressed.
    pub fn compressed(&self) -> Option<&Compressed> {
        self.compressed.as_ref()
    }

    /// The image's length when known before writing (a compressed image
    /// whose format records no size: `None`).
    fn known_len(&self) -> Option<u64> {
        match (&self.compressed, &self.input) {
            (Some(c), _) => c.declared_size(),
            (None, Source::File(i)) => Some(i.len()),
            (None, Source::Pipe { size, .. }) => *size,
        }
    }

    pub fn decided(&self) -> &Decided {
        &self.decided
    }

    /// The source check's report, when one ran.
    pub fn checked(&self) -> Option<&Report> {
        self.checked.as_ref()
    }

    /// The image for readers, through the check's block digests if any.
    pub fn bytes(&self) -> &Arc<dyn ByteSource> {
        &self.bytes
    }

    /// The bytes a disk must hold: the image, or the smallest layout.
    pub fn needed(&self) -> u64 {
        match &self.decided.method {
            Method::Raw => self.image_len(),
            Method::Layout { smallest, .. } => smallest.min_size,
        }
    }

    /// The layout and plan for a target: a built layout sized to a device
    /// of `device_size` bytes (rebuilt when it differs from the smallest
    /// one) or to fit (`None`); or the image, with a tail wipe of the
    /// device's last MiB when `tail_wipe`.
    fn plan_for(
        &self,
        device_size: Option<u64>,
        tail_wipe: bool,
    ) -> Result<(Option<from_iso::Layout>, Plan), Error> {
        let len = self.image_len();
        match (&self.decided.method, device_size) {
            (Method::Layout { table, smallest }, Some(cap)) if smallest.disk_size != cap => {
                let l = build_layout(&self.bytes, self.input.path(), *table, Some(cap))?;
                let plan = l.plan.clone();
                Ok((Some(l), plan))
            }
            (Method::Layout { smallest, .. }, _) => {
                Ok((Some((**smallest).clone()), smallest.plan.clone()))
            }
            (Method::Raw, Some(cap)) if tail_wipe => Ok((
                None,
                self.raw_plan(len)?
                    .with_tail_wipe(cap)
                    .map_err(|e| Error::Write(e.into()))?,
            )),
            (Method::Raw, _) => Ok((None, self.raw_plan(len)?)),
        }
    }

    /// A byte copy of `len` bytes, with the decision's ESP entry when it
    /// has one (`layout::esp_entry`); through a block map, its mapped
    /// ranges only.
    fn raw_plan(&self, len: u64) -> Result<Plan, Error> {
        if let Some(b) = &self.bmap {
            return Ok(b.bmap.plan());
        }
        match &self.decided.esp_entry {
            Some(e) => e.plan(len).map_err(|e| Error::Write(e.into())),
            None => Ok(Plan::raw(len)),
        }
    }

    /// Opens a chosen target and builds its plan.
    pub fn prepare(&self, chosen: Chosen) -> Result<Prepared<'_>, Error> {
        let (target, device) = match chosen {
            Chosen::File(p) => (write::Target::open(&p)?, None),
            Chosen::Disk { disk, guard } => {
                let file = guard.try_clone()?;
                let t = write::Target::block_device(file, &disk.path)?;
                (t, Some((disk, *guard)))
            }
        };
        let (layout, plan) = self.plan_for(target.capacity(), true)?;
        Ok(Prepared {
            job: self,
            target,
            device,
            layout,
            plan,
        })
    }

    /// Prepares every chosen target, in order. Every plan is built (and
    /// may refuse) before any job starts; disks first, so a refusal there
    /// comes before any file target is created.
    pub fn prepare_all(&self, chosen: Vec<Chosen>) -> Result<Vec<Prepared<'_>>, Error> {
        if self.is_stream() && chosen.len() > 1 {
            return Err(Error::StreamToSeveral {
                count: chosen.len(),
            });
        }
        if let Source::Pipe {
            download: Some(f), ..
        } = &self.input
        {
            if let Some(save) = &f.save_path {
                for c in &chosen {
                    let target = match c {
                        Chosen::File(p) => p.as_path(),
                        Chosen::Disk { disk, .. } => disk.path.as_path(),
                    };
                    if same_path(save, target) {
                        return Err(Error::SaveIsTarget { path: save.clone() });
                    }
                }
            }
        }
        let mut prepared: Vec<Option<Prepared>> = Vec::with_capacity(chosen.len());
        let mut files = Vec::new();
        for (i, c) in chosen.into_iter().enumerate() {
            match c {
                Chosen::File(_) => {
                    files.push((i, c));
                    prepared.push(None);
                }
                disk => prepared.push(Some(self.prepare(disk)?)),
            }
        }
        for (i, c) in files {
            prepared[i] = Some(self.prepare(c)?);
        }
        Ok(prepared.into_iter().flatten().collect())
    }

    /// Prepares a comparison of `target` (opened with
    /// `write::Target::open_read`; `disk` when it is one) with the plan a
    /// write to it compiles: a device's layout fills the device, an image
    /// file's is sized to fit. Raw copies are compared over the image only
    /// (the tail wipe a write adds on devices is not compared).
    pub fn prepare_compare(
        &self,
        target: write::Target,
        disk: Option<Box<Disk>>,
    ) -> Result<PreparedCompare<'_>, Error> {
        let size = target
            .is_block_device()
            .then(|| target.capacity())
            .flatten();
        let (layout, mut plan) = self.plan_for(size, false)?;
        if let Some(c) = &self.compressed {
            // Compared over the whole decompressed image: its length is
            // learnt by decoding it once where the format records none.
            let len = c.measure().map_err(|source| Error::Compressed {
                path: self.path().to_path_buf(),
                source,
            })?;
            plan = match &self.bmap {
                Some(b) => {
                    b.bmap.check_image_len(len).map_err(|source| Error::Bmap {
                        path: b.path.clone(),
                        source: Box::new(source),
                    })?;
                    b.bmap.plan()
                }
                None => Plan::raw(len),
            };
        }
        Ok(PreparedCompare {
            job: self,
            target,
            disk,
            layout,
            plan,
        })
    }
}

/// True when `a` and `b` name one file: equal once their directories are
/// resolved (either may not exist yet), or the same inode.
fn same_path(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let resolved = |p: &Path| -> Option<PathBuf> {
        let dir = match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        Some(dir.canonicalize().ok()?.join(p.file_name()?))
    };
    if let (Ok(x), Ok(y)) = (std::fs::metadata(a), std::fs::metadata(b)) {
        if (x.dev(), x.ino()) == (y.dev(), y.ino()) {
            return true;
        }
    }
    a == b || resolved(a).is_some_and(|x| resolved(b).is_some_and(|y| x == y))
}

/// What a source check vouched for, in a start line.
#[derive(Debug, Serialize)]
pub struct CheckSummary<'a> {
    pub outcome: Outcome,
    pub matched: &'a Option<trust::Listing>,
    pub signers: &'a [trust::signature::Signer],
    pub sha256: Option<String>,
}

/// The fields of a write's JSON `start` line (docs/cli.md).
#[derive(Debug, Serialize)]
pub struct WriteStart<'a> {
    pub image: &'a Path,
    pub target: &'a Path,
    pub disk: Option<&'a Disk>,
    /// `None`: a compressed image whose format records no size.
    pub image_bytes: Option<u64>,
    pub target_bytes: Option<u64>,
    pub block_device: bool,
    /// `None` as `image_bytes`.
    pub plan_bytes: Option<u64>,
    /// The image's compression, when it is compressed.
    pub compressed: Option<CompressedSummary>,
    /// A stream read once (standard input, a FIFO), when the image is one.
    pub stream: Option<StreamSummary>,
    pub verify: bool,
    pub decision: &'a inspect::Decision,
    pub mode: &'static str,
    pub layout: Option<LayoutSummary<'a>>,
    /// A byte copy's added ESP entry (`layout::esp_entry`), or null.
    pub esp_entry: Option<&'a crate::layout::esp_entry::EspEntry>,
    pub source_check: Option<CheckSummary<'a>>,
    /// The block map written through, or null.
    pub bmap: Option<BmapSummary>,
    /// A download: what the server said about the file, and where a copy
    /// is saved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub download: Option<DownloadStart<'a>>,
}

/// A download, in a start line.
#[derive(Debug, Serialize)]
pub struct DownloadStart<'a> {
    #[serde(flatten)]
    pub entity: &'a download::Entity,
    /// `--save`'s file, kept once the job succeeded.
    pub save: Option<&'a Path>,
}

/// A download, in a result.
#[derive(Clone, Debug, Serialize)]
pub struct DownloadDone {
    /// Times a dropped connection was resumed.
    pub resumed: u32,
    /// The copy kept, when one was asked for.
    pub saved: Option<PathBuf>,
}

/// A stream, in a start line.
#[derive(Clone, Debug, Serialize)]
pub struct StreamSummary {
    /// Its compression, detected from its first bytes.
    pub format: Option<compressed::Format>,
    /// The length given for it (or known because it ended within its head).
    pub size: Option<u64>,
    /// Its digest is checked at its end (the first MiB held back until then).
    pub expected: Option<DigestOut>,
}

/// A compressed image, in a start line or `inspect`'s report.
#[derive(Clone, Debug, Serialize)]
pub struct CompressedSummary {
    pub format: compressed::Format,
    pub compressed_bytes: u64,
    /// The uncompressed size the format records, if it does.
    pub declared_bytes: Option<u64>,
    /// The uncompressed size, where known.
    pub decompressed_bytes: Option<u64>,
    /// A zip archive's member written, and the entries ignored beside it.
    pub zip: Option<ZipSummary>,
}

/// A zip archive's member, in a start line or `inspect`'s report.
#[derive(Clone, Debug, Serialize)]
pub struct ZipSummary {
    /// The member's name in the archive.
    pub entry: String,
    /// Its compression method (`Deflated`, `Deflate64`, `Bzip2`, `Lzma`,
    /// `Zstd`, `Stored`).
    pub method: String,
    /// The other file entries, not written.
    pub ignored: Vec<String>,
}

impl CompressedSummary {
    /// `c`, whose decompressed size is `decompressed` when known
    /// otherwise than from its framing.
    pub fn of(c: &Compressed, decompressed: Option<u64>) -> CompressedSummary {
        CompressedSummary {
            format: c.format(),
            compressed_bytes: c.compressed_len(),
            declared_bytes: c.declared_size(),
            decompressed_bytes: decompressed.or(c.declared_size()),
            zip: c.zip_member().map(|m| ZipSummary {
                entry: m.chosen().name.clone(),
                method: m.chosen().method.clone(),
                ignored: m.ignored().iter().map(|e| e.name.clone()).collect(),
            }),
        }
    }
}

/// A digest in output.
#[derive(Clone, Debug, Serialize)]
pub struct DigestOut {
    pub algorithm: HashAlgorithm,
    pub hex: String,
}

impl DigestOut {
    fn of(d: &Digest) -> DigestOut {
        DigestOut {
            algorithm: d.algorithm(),
            hex: d.to_hex(),
        }
    }
}

/// How a prepared job runs.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Read the target back after writing.
    pub verify: bool,
    /// Also report the image's SHA-256, computed while it is written.
    pub digest: bool,
    /// Detach the disk after writing (SCSI/USB disks).
    pub eject: bool,
    /// Stops the job between chunks.
    pub cancel: Cancel,
}

/// What a finished write did: the fields of its JSON result (docs/cli.md).
#[derive(Clone, Debug, Serialize)]
pub struct Written {
    pub bytes_written: u64,
    /// The image's bytes on the target (a compressed image: decompressed).
    pub image_bytes: u64,
    pub verified: bool,
    pub direct_io: bool,
    pub source_digest: Option<DigestOut>,
    /// A compressed image's decompressed SHA-256, when a digest was asked.
    pub decompressed_digest: Option<DigestOut>,
    /// Wall-clock seconds, to the millisecond.
    pub seconds: f64,
    /// Where the time went: each phase (`write`, `sync`, `verify`) and its
    /// seconds, in the order they ran.
    pub phases: Vec<crate::events::PhaseTime>,
    /// A disk's partitions after the re-read (`None` for a file).
    pub partitions: Option<Vec<PathBuf>>,
    pub ejected: bool,
    pub mode: &'static str,
    /// The block map written through (what was skipped), or null.
    pub bmap: Option<BmapSummary>,
    /// A download's resumes and saved copy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub download: Option<DownloadDone>,
    /// The target written.
    #[serde(skip)]
    pub target: PathBuf,
    /// The layout built for it, when one was.
    #[serde(skip)]
    pub layout: Option<from_iso::Layout>,
    /// Unrounded seconds, for rates.
    #[serde(skip)]
    pub elapsed: f64,
}

/// One target, opened (a disk guarded), with the plan built for it from
/// the job it borrows.
pub struct Prepared<'a> {
    job: &'a Job,
    target: write::Target,
    device: Option<(Box<Disk>, Guarded)>,
    layout: Option<from_iso::Layout>,
    plan: Plan,
}

impl Prepared<'_> {
    /// The target's path, as messages and JSON's `target` name it.
    pub fn target_path(&self) -> &Path {
        self.target.path()
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    pub fn layout(&self) -> Option<&from_iso::Layout> {
        self.layout.as_ref()
    }

    pub fn mode_name(&self) -> &'static str {
        if self.layout.is_some() {
            "layout"
        } else {
            "raw"
        }
    }

    /// The fields of the job's JSON `start` line.
    pub fn start(&self, verify: bool) -> WriteStart<'_> {
        let job = self.job;
        WriteStart {
            image: job.path(),
            target: self.target.path(),
            disk: self.device.as_ref().map(|(d, _)| &**d),
            image_bytes: job.known_len(),
            target_bytes: self.target.capacity(),
            block_device: self.target.is_block_device(),
            plan_bytes: job.known_len().map(|_| self.plan.bytes_to_write()),
            compressed: job
                .compressed
                .as_ref()
                .map(|c| CompressedSummary::of(c, None)),
            stream: match &job.input {
                Source::Pipe {
                    format,
                    size,
                    expected,
                    ..
                } => Some(StreamSummary {
                    format: *format,
                    size: *size,
                    expected: expected.as_ref().map(DigestOut::of),
                }),
                Source::File(_) => None,
            },
            verify,
            decision: &job.decided.decision,
            mode: self.mode_name(),
            layout: self.layout.as_ref().map(LayoutSummary::of),
            esp_entry: job.decided.esp_entry.as_ref(),
            source_check: job.checked.as_ref().map(|r| CheckSummary {
                outcome: r.outcome,
                matched: &r.matched,
                signers: &r.signers,
                sha256: r.checked_sha256.as_ref().map(|d| d.to_hex()),
            }),
            bmap: job.bmap.as_ref().map(BmapSummary::of),
            download: match &job.input {
                Source::Pipe {
                    download: Some(f), ..
                } => Some(DownloadStart {
                    entity: &f.entity,
                    save: f.save_path.as_deref(),
                }),
                _ => None,
            },
        }
    }

    /// Runs the job: a disk's identity re-check right before the first
    /// write, write, sync and read-back, a file target's commit, then a
    /// disk's partition re-read and (`eject`) detach. Problems after the
    /// verified write are warnings on `observer`, not failures.
    pub fn run(self, options: &RunOptions, observer: &dyn Observer) -> Result<Written, Error> {
        let Prepared {
            job,
            mut target,
            device,
            layout,
            plan,
        } = self;
        let mode = if layout.is_some() { "layout" } else { "raw" };
        let target_path = target.path().to_path_buf();
        let before_first_write = match &device {
            Some((_, guard)) => Some(guard.identity_check()?),
            None => None,
        };
        let checked = job.checked.as_ref();
        let expect_source = match &job.input {
            Source::Pipe { expected, .. } => expected.clone(),
            Source::File(_) => checked.and_then(|r| r.checked_sha256.clone()),
        };
        let engine = write::Options {
            verify: options.verify,
            before_first_write,
            expect_source,
            source_blocks: checked.and_then(|r| r.checked_blocks.clone()),
            source_stamp: job.input.file().map(input::Input::stamp),
            digest: options.digest.then_some(HashAlgorithm::Sha256),
            cancel: options.cancel.clone(),
            ..write::Options::default()
        };
        let started = Instant::now();
        let mapped = job.bmap.as_ref().map(|b| &*b.bmap);
        let clock = crate::events::PhaseClock::new(observer);
        let observer: &dyn Observer = &clock;
        let (report, image_bytes, decoded) = match (&job.compressed, &job.input) {
            (Some(c), Source::File(i)) => {
                let r = match mapped {
                    Some(b) => write::write_mapped(
                        b,
                        write::Mapped::Compressed {
                            image: c,
                            source: i.file(),
                        },
                        &mut target,
                        engine,
                        observer,
                    )?,
                    None => write::write_decoded(c, i.file(), &mut target, engine, observer)?,
                };
                (r.report, r.image_bytes, r.decoded_digest)
            }
            (None, Source::File(i)) => match mapped {
                Some(b) => {
                    let r = write::write_mapped(
                        b,
                        write::Mapped::File(i.file()),
                        &mut target,
                        engine,
                        observer,
                    )?;
                    // An uncompressed image's digest is the image's own.
                    let mut report = r.report;
                    report.source_digest = report.source_digest.or(r.decoded_digest);
                    (report, r.image_bytes, None)
                }
                None => (
                    write::write(&plan, i.file(), &mut target, engine, observer)?,
                    i.len(),
                    None,
                ),
            },
            (_, Source::Pipe { pipe, format, .. }) => {
                let stream = pipe
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take()
                    .ok_or(Error::StreamTaken)?
                    .into_stream();
                let mut r = match mapped {
                    Some(b) => write::write_mapped(
                        b,
                        write::Mapped::Pipe(stream),
                        &mut target,
                        engine,
                        observer,
                    )?,
                    None => write::write_piped(stream, &mut target, engine, observer)?,
                };
                // An uncompressed stream's digest is the image's own: it has
                // no decompressed image to report apart.
                if format.is_none() {
                    let decoded = r.decoded_digest.take();
                    if r.report.source_digest.is_none() {
                        r.report.source_digest = decoded;
                    }
                }
                (r.report, r.image_bytes, r.decoded_digest)
            }
        };
        // A file target was written beside itself; only now does it replace
        // the old file (docs/devices.md, "File targets").
        target.commit()?;
        // A download's copy is kept only now: it is whole and matched its
        // digest, and the target holds it.
        let download = match &job.input {
            Source::Pipe {
                download: Some(f), ..
            } => {
                let save = f.save.lock().unwrap_or_else(|p| p.into_inner()).take();
                Some(DownloadDone {
                    resumed: f.stats.resumed(),
                    saved: save.map(download::Save::keep).transpose()?,
                })
            }
            _ => None,
        };
        let elapsed = started.elapsed().as_secs_f64();
        drop(target);
        let after = device.map(|(disk, guard)| after_write(&disk, guard, options.eject, observer));
        Ok(Written {
            bytes_written: report.bytes_written,
            image_bytes,
            verified: report.verified,
            direct_io: report.direct_io,
            source_digest: report.source_digest.as_ref().map(DigestOut::of),
            decompressed_digest: decoded.as_ref().map(DigestOut::of),
            seconds: (elapsed * 1000.0).round() / 1000.0,
            phases: clock.times(),
            ejected: after.as_ref().is_some_and(|a| a.ejected),
            partitions: after.map(|a| a.partitions),
            mode,
            bmap: job.bmap.as_ref().map(BmapSummary::of),
            download,
            target: target_path,
            layout,
            elapsed,
        })
    }
}

/// Runs every job at once, one thread each (docs/decisions.md: independent
/// pipelines, each reading the image through the shared page cache, so a
/// slow or failing stick never holds the others back). A failing job does
/// not stop the others. `observers[i]` gets job `i`'s events, and `done(i,
/// outcome)` is called on job `i`'s thread as it ends (on the caller's when
/// the thread panicked: [`Error::Panicked`]); its values are returned in
/// the jobs' order.
pub fn run_all<O, R, F>(
    jobs: Vec<Prepared<'_>>,
    options: &RunOptions,
    observers: &[O],
    done: F,
) -> Vec<R>
where
    O: Observer + Sync,
    R: Send,
    F: Fn(usize, Result<Written, Error>) -> R + Sync,
{
    assert_eq!(jobs.len(), observers.len(), "one observer per job");
    let done = &done;
    std::thread::scope(|s| {
        let handles: Vec<_> = jobs
            .into_iter()
            .zip(observers)
            .enumerate()
            .map(|(i, (job, o))| s.spawn(move || done(i, job.run(options, o))))
            .collect();
        handles
            .into_iter()
            .enumerate()
            .map(|(i, h)| h.join().unwrap_or_else(|_| done(i, Err(Error::Panicked))))
            .collect()
    })
}

/// What happened to a disk after the write.
struct After {
    partitions: Vec<PathBuf>,
    ejected: bool,
}

/// Re-reads the partition table while the disk is still held, then releases
/// it and (with `eject`) detaches it. The image is already written and
/// verified: problems here are warnings, not failures.
fn after_write(disk: &Disk, guard: Guarded, eject: bool, observer: &dyn Observer) -> After {
    let partitions = match guard.reread_partitions() {
        Ok(r) => r.partitions,
        Err(e) => {
            observer.event(&Event::Warning(crate::error_chain(&e)));
            Vec::new()
        }
    };
    drop(guard);
    let mut ejected = false;
    if eject {
        match devices::eject(&Roots::live(), disk) {
            Ok(()) => ejected = true,
            Err(e) => observer.event(&Event::Warning(crate::error_chain(&e))),
        }
    }
    After {
        partitions,
        ejected,
    }
}

/// The fields of a comparison's JSON `start` line (docs/cli.md).
#[derive(Debug, Serialize)]
pub struct CompareStart<'a> {
    pub image: &'a Path,
    pub target: &'a Path,
    pub disk: Option<&'a Disk>,
    pub image_bytes: u64,
    pub target_bytes: Option<u64>,
    pub block_device: bool,
    pub plan_bytes: u64,
    pub decision: &'a inspect::Decision,
    pub mode: &'static str,
    pub layout: Option<LayoutSummary<'a>>,
    /// As in [`WriteStart::esp_entry`].
    pub esp_entry: Option<&'a crate::layout::esp_entry::EspEntry>,
}

/// What a comparison found: all equal (a difference is an error,
/// `write::Error::Mismatch` or `TargetShort`).
#[derive(Clone, Debug, Serialize)]
pub struct Compared {
    pub bytes_compared: u64,
    pub direct_io: bool,
    pub seconds: f64,
}

/// A target opened for reading, with the plan a write to it compiles.
pub struct PreparedCompare<'a> {
    job: &'a Job,
    target: write::Target,
    disk: Option<Box<Disk>>,
    layout: Option<from_iso::Layout>,
    plan: Plan,
}

impl PreparedCompare<'_> {
    pub fn layout(&self) -> Option<&from_iso::Layout> {
        self.layout.as_ref()
    }

    pub fn start(&self) -> CompareStart<'_> {
        CompareStart {
            image: self.job.path(),
            target: self.target.path(),
            disk: self.disk.as_deref(),
            image_bytes: self.job.image_len(),
            target_bytes: self.target.capacity(),
            block_device: self.target.is_block_device(),
            plan_bytes: self.plan.bytes_to_write(),
            decision: &self.job.decided.decision,
            mode: if self.layout.is_some() {
                "layout"
            } else {
                "raw"
            },
            layout: self.layout.as_ref().map(LayoutSummary::of),
            esp_entry: self.job.decided.esp_entry.as_ref(),
        }
    }

    /// Reads the target (bypassing the page cache) and compares it with
    /// the plan, naming the first differing byte.
    pub fn run(&self, cancel: &Cancel, observer: &dyn Observer) -> Result<Compared, Error> {
        let started = Instant::now();
        let report = match &self.job.compressed {
            Some(c) => write::compare_decoded(
                &self.plan,
                &DecodedImage::with_len(c.clone(), self.plan.source_end()),
                &self.target,
                write::DEFAULT_CHUNK,
                cancel,
                observer,
            )?,
            None => write::compare(
                &self.plan,
                self.job.input.file().ok_or(Error::StreamTaken)?.file(),
                &self.target,
                write::DEFAULT_CHUNK,
                cancel,
                observer,
            )?,
        };
        let secs = started.elapsed().as_secs_f64();
        Ok(Compared {
            bytes_compared: report.bytes_compared,
            direct_io: report.direct_io,
            seconds: (secs * 1000.0).round() / 1000.0,
        })
    }
}
