//! `backup`: a stick (or, with `shrink`, its partitions) into an image file,
//! compressed on the fly by the file's extension, with a `sha256sum -c`
//! checksum file beside it, proven by reading the file back (docs/health.md).
//!
//! The device is read with `O_DIRECT` (what the stick holds, not the page
//! cache's idea of it) by a reader thread, hashed (SHA-256 of the image),
//! compressed and written to a temporary file beside FILE whose bytes are
//! hashed too. Then the file is flushed, its cached pages dropped, read
//! back, hashed and decompressed: only when the file hashes as written and
//! decompresses to exactly the bytes read from the device (length and
//! SHA-256) is it renamed over FILE and `FILE.sha256` written. A failure
//! leaves an old FILE as it was and no partial file.
//!
//! An optical drive (a disc into an ISO) is read up to the end of the
//! ISO 9660/UDF volume on it ([`crate::image::extent`]), not up to the
//! capacity the drive reports, which often includes run-out sectors that
//! are unreadable or not part of what was burned.
//!
//! A chunk that cannot be read is read again sector by sector (the
//! device's logical block: 2048 bytes on a disc), each sector up to
//! [`ATTEMPTS`] times. A sector that still fails stops the backup naming
//! its LBA, or with `skip_bad` is stored as zeros and listed; the report
//! then says the image is not complete.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;
use std::time::Instant;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::cancel::Cancel;
use crate::devices::{self, Disk, FileTarget, ImageSite, Kind, Policy, Roots};
use crate::events::{Event, Observer, Phase};
use crate::image::extent::{self, Volume};
use crate::image::{partitions, ByteSource, ImageFile};
use crate::job::{self, Action, Answer, Confirm, Summary};
use crate::write::align::{AlignedBuf, Alignment};

/// Bytes read from the device at a time.
const CHUNK: usize = 4 << 20;

/// How many times a sector is read before it counts as unreadable: the
/// first read and three retries. Drives retry internally too; a sector that
/// fails four times in a row does not come back by asking more often.
pub const ATTEMPTS: u32 = 4;

/// How FILE is compressed, from its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Compression {
    None,
    /// `.zst`: zstd level 3, multi-threaded, content size and checksum in
    /// the frame.
    Zstd,
    /// `.xz`: xz preset 6, multi-threaded (independent blocks), CRC64.
    Xz,
    /// `.gz`: gzip, default level, one thread (the format's stream is
    /// sequential).
    Gzip,
}

impl Compression {
    /// By FILE's extension: `.zst`, `.xz`, `.gz`; anything else is stored
    /// as is.
    pub fn for_path(path: &Path) -> Compression {
        match path.extension().and_then(|e| e.to_str()) {
            Some("zst") => Compression::Zstd,
            Some("xz") => Compression::Xz,
            Some("gz") => Compression::Gzip,
            _ => Compression::None,
        }
    }
}

/// Why a backup was not made. FILE (an old one included) is then as it was.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Job(Box<job::Error>),
    #[error(transparent)]
    Device(#[from] devices::Error),
    /// FILE would be stored on the disk being backed up.
    #[error(
        "{} would be stored on {}, the disk being backed up{}; put the backup on another disk",
        file.display(), disk.display(), how.as_ref().map(|h| format!(" ({h})")).unwrap_or_default()
    )]
    OnSource {
        file: PathBuf,
        disk: PathBuf,
        how: Option<String>,
    },
    /// FILE is the source itself.
    #[error("{} is the source itself", file.display())]
    SameFile { file: PathBuf },
    #[error("cannot read {}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("reading {} failed at offset {offset}", path.display())]
    Read {
        path: PathBuf,
        offset: u64,
        #[source]
        source: io::Error,
    },
    /// A sector failed every one of `attempts` reads; nothing was kept.
    #[error(
        "sector {lba} of {} ({sector_bytes}-byte sectors, offset {}) could not be read after {attempts} attempts; the backup was not kept",
        path.display(), lba * sector_bytes
    )]
    Unreadable {
        path: PathBuf,
        lba: u64,
        sector_bytes: u64,
        attempts: u32,
        #[source]
        source: io::Error,
    },
    /// The volume descriptors of a disc, which say how long it is, cannot
    /// be read.
    #[error("cannot read the volume descriptors of {}", path.display())]
    Volume {
        path: PathBuf,
        #[source]
        source: crate::image::Error,
    },
    /// Shrinking needs partitions to know where the data ends.
    #[error("{} has no partition table with partitions: nothing to shrink to", path.display())]
    NoPartitions { path: PathBuf },
    #[error("cannot read the partition table of {}", path.display())]
    PartitionTable {
        path: PathBuf,
        #[source]
        source: crate::image::Error,
    },
    #[error("writing {} failed", file.display())]
    Output {
        file: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Reading the file back did not give what was written: nothing was
    /// renamed over FILE.
    #[error("{} read back {what}; the backup was discarded", file.display())]
    NotProven { file: PathBuf, what: String },
    /// Stopped by a cancel (a signal): no partial file is left, and FILE is
    /// as it was (`state`).
    #[error("backup stopped; {} {}", file.display(), state.advice())]
    Cancelled { file: PathBuf, state: FileState },
}

/// What a backup that stopped left at FILE.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileState {
    /// There was no FILE, and there is none: nothing was created (the
    /// temporary file beside it is removed).
    NotCreated,
    /// FILE existed and is as it was: the backup was never renamed over it.
    Unchanged,
}

impl FileState {
    /// The kebab-case name used in JSON.
    pub fn name(self) -> &'static str {
        match self {
            FileState::NotCreated => "not-created",
            FileState::Unchanged => "unchanged",
        }
    }

    fn advice(self) -> &'static str {
        match self {
            FileState::NotCreated => "was not created (no partial file is left)",
            FileState::Unchanged => "is unchanged (the old file is kept; no partial file is left)",
        }
    }
}

impl From<job::Error> for Error {
    fn from(e: job::Error) -> Error {
        Error::Job(Box::new(e))
    }
}

/// A source and a FILE that passed every rule, confirmed.
#[derive(Debug)]
pub struct Prepared {
    /// The device (or file) read.
    pub source: PathBuf,
    pub disk: Option<Box<Disk>>,
    /// FILE, symlinks followed.
    pub file: PathBuf,
    /// The length of the FILE it replaces.
    pub replaces: Option<u64>,
}

/// Resolves TARGET for reading (any disk `compare` may read, or a file) and
/// checks FILE: the rules of a file target of `write` (its directory exists
/// and is writable, it is not the source or a loop backing file the source
/// is on), and it is not stored on the disk being read. An existing
/// non-empty FILE is replaced only when `confirm` says so.
pub fn prepare(
    roots: &Roots,
    target: &Path,
    file: &Path,
    confirm: &mut dyn Confirm,
) -> Result<Prepared, Error> {
    let (source, disk) = job::resolve_for_reading(roots, target)?;
    let site = ImageSite::of(roots, &source)?;
    let ft: FileTarget = match devices::check_file(roots, file, &site, Policy::default()) {
        Ok(ft) => ft,
        Err(devices::Error::ImageIsTarget { .. }) => {
            return Err(Error::SameFile {
                file: file.to_path_buf(),
            })
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(d) = &disk {
        let dir = ft.path.parent().unwrap_or(Path::new("/"));
        let dir_site = ImageSite::of(roots, dir)?;
        if dir_site.disks().any(|n| n == d.name) {
            let how = match dir_site.check_disk(d) {
                Err(devices::Error::ImageOnTarget { how, .. }) => Some(how.to_string()),
                _ => None,
            };
            return Err(Error::OnSource {
                file: file.to_path_buf(),
                disk: d.path.clone(),
                how,
            });
        }
    }
    let replaces = ft.existing_len;
    if replaces.is_some_and(|l| l > 0) {
        let summary = Summary {
            action: Action::Backup,
            image: source.clone(),
            image_len: disk.as_ref().map_or(0, |d| d.size_bytes),
            disks: Vec::new(),
            files: vec![ft.clone()],
            unmount: false,
        };
        match confirm.confirm(&summary) {
            Answer::Yes => {}
            answer => {
                return Err(job::Error::Declined {
                    summary: Box::new(summary),
                    asked: answer == Answer::No,
                }
                .into())
            }
        }
    }
    Ok(Prepared {
        source,
        disk,
        file: ft.path,
        replaces,
    })
}

/// How to back up.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Stop at the end of the last partition (MBR, GPT or APM).
    pub shrink: bool,
    /// Store a sector that cannot be read as zeros, list it, and go on,
    /// instead of stopping at it.
    pub skip_bad: bool,
    pub cancel: Cancel,
}

/// Where the image ends, and why there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Extent {
    /// The source's whole size.
    Device,
    /// The end of the last partition (`shrink`).
    Partitions,
    /// A disc: the end of its ISO 9660/UDF volume.
    Volume(Volume),
    /// A disc without an ISO 9660 or UDF volume: its whole reported
    /// capacity (which may include run-out sectors).
    NoVolume,
}

/// Why an image is not a whole copy of its source's data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "reason")]
pub enum Incomplete {
    /// Sectors that could not be read are zeros in the image.
    BadSectors { count: u64 },
    /// The volume claims more bytes than the disc reports: the image ends
    /// at the disc's end.
    VolumeBeyondEnd {
        volume_bytes: u64,
        source_bytes: u64,
    },
}

/// What a backup made and proved (the JSON `result` of `bootstick backup`).
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub source: PathBuf,
    pub file: PathBuf,
    /// `FILE.sha256`, in `sha256sum -c` format, of FILE's own bytes.
    pub checksum_file: PathBuf,
    pub compression: Compression,
    /// The source's size, and the bytes read from it (the image's length).
    pub source_bytes: u64,
    pub image_bytes: u64,
    /// `shrink`: the image ends with the last partition (a GPT's backup
    /// header at the disk's end is then not in it).
    pub shrunk: bool,
    /// SHA-256 of the image (the bytes read), and of FILE (compressed).
    pub image_sha256: String,
    pub file_sha256: String,
    pub file_bytes: u64,
    /// FILE was read back after a flush with its cached pages dropped: it
    /// hashed to `file_sha256` and decompressed to `image_bytes` bytes
    /// hashing to `image_sha256`, the digest taken while reading the
    /// device. Always true in a report: anything else is an error.
    pub proven: bool,
    /// The source had mounted filesystems while it was read (the image may
    /// be inconsistent).
    pub was_mounted: bool,
    /// Where the image ends and why (a disc: its volume's end).
    pub extent: Extent,
    /// The sector size LBAs count in (the device's logical block).
    pub sector_bytes: u64,
    /// LBAs that failed every read and are zeros in the image
    /// (`skip_bad`), ascending.
    pub bad_sectors: Vec<u64>,
    /// LBAs that failed at first and read on a retry.
    pub recovered_sectors: Vec<u64>,
    /// The image holds every byte of the extent as the source stores it
    /// and, for a disc, the whole volume: `incomplete` is empty.
    pub complete: bool,
    pub incomplete: Vec<Incomplete>,
    pub seconds: f64,
}

/// A writer that hashes and counts what passes through.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
    len: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes and counts what passes through.
struct HashingReader<R> {
    inner: R,
    hash: Sha256,
    len: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

fn threads() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
}

/// The compressing writer for `c` over `w`, told the image length.
fn encoder<'a, W: Write + 'a>(
    c: Compression,
    w: W,
    len: u64,
) -> io::Result<Box<dyn FinishWrite + 'a>> {
    Ok(match c {
        Compression::None => Box::new(Plain(w)),
        Compression::Zstd => {
            let mut e = zstd::stream::write::Encoder::new(w, 3)?;
            e.multithread(threads())?;
            e.include_checksum(true)?;
            e.set_pledged_src_size(Some(len))?;
            Box::new(e)
        }
        Compression::Xz => {
            let stream = liblzma::stream::MtStreamBuilder::new()
                .threads(threads())
                .preset(6)
                .check(liblzma::stream::Check::Crc64)
                .encoder()
                .map_err(io::Error::other)?;
            Box::new(liblzma::write::XzEncoder::new_stream(w, stream))
        }
        Compression::Gzip => Box::new(flate2::write::GzEncoder::new(
            w,
            flate2::Compression::default(),
        )),
    })
}

/// A writer whose stream must be ended explicitly (a compressor's trailer).
trait FinishWrite: Write {
    fn finish_stream(self: Box<Self>) -> io::Result<()>;
}

struct Plain<W>(W);

impl<W: Write> Write for Plain<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl<W: Write> FinishWrite for Plain<W> {
    fn finish_stream(mut self: Box<Self>) -> io::Result<()> {
        self.0.flush()
    }
}

impl<W: Write> FinishWrite for zstd::stream::write::Encoder<'_, W> {
    fn finish_stream(self: Box<Self>) -> io::Result<()> {
        (*self).finish()?.flush()
    }
}

impl<W: Write> FinishWrite for liblzma::write::XzEncoder<W> {
    fn finish_stream(self: Box<Self>) -> io::Result<()> {
        (*self).finish()?.flush()
    }
}

impl<W: Write> FinishWrite for flate2::write::GzEncoder<W> {
    fn finish_stream(self: Box<Self>) -> io::Result<()> {
        (*self).finish()?.flush()
    }
}

/// Where the image ends: the device's end, or with `shrink` the end of
/// its last partition.
fn image_len(path: &Path, file: &File, size: u64, shrink: bool) -> Result<u64, Error> {
    if !shrink {
        return Ok(size);
    }
    let buffered = file.try_clone().map_err(|source| Error::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let src = ImageFile::from_file(buffered, size);
    let area = partitions::read_system_area(&src).map_err(|source| Error::PartitionTable {
        path: path.to_path_buf(),
        source,
    })?;
    area.partitions(size)
        .iter()
        .map(|p| p.offset + p.len)
        .max()
        .ok_or_else(|| Error::NoPartitions {
            path: path.to_path_buf(),
        })
}

/// Makes the backup `prepared` describes.
pub fn backup(
    prepared: &Prepared,
    options: &Options,
    observer: &dyn Observer,
) -> Result<Report, Error> {
    let started = Instant::now();
    let source = &prepared.source;
    let open_err = |source_err| Error::Open {
        path: source.clone(),
        source: source_err,
    };
    // Buffered, for sizing and the partition table; the image is read
    // through a second, direct descriptor.
    let plain = File::open(source).map_err(open_err)?;
    let meta = plain.metadata().map_err(open_err)?;
    let is_dev = meta.file_type().is_block_device();
    let size = if is_dev {
        use std::io::Seek;
        (&plain).seek(io::SeekFrom::End(0)).map_err(open_err)?
    } else {
        meta.len()
    };
    let optical = prepared
        .disk
        .as_ref()
        .is_some_and(|d| d.kind == Kind::Optical);
    let mut incomplete = Vec::new();
    let (len, extent) = if optical {
        if options.shrink {
            observer.event(&Event::Warning(format!(
                "{} is an optical drive: the image ends with the disc's volume, not its partitions",
                source.display()
            )));
        }
        disc_len(source, &plain, size, observer, &mut incomplete)?
    } else if options.shrink {
        (image_len(source, &plain, size, true)?, Extent::Partitions)
    } else {
        (size, Extent::Device)
    };
    let direct = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(source)
        .or_else(|_| File::open(source))
        .map_err(open_err)?;
    let align = Alignment::of(&direct, is_dev);
    let sector = align.offset.max(align.memory as u64);
    let was_mounted = prepared
        .disk
        .as_ref()
        .is_some_and(|d| d.all_mountpoints().next().is_some());
    if was_mounted {
        observer.event(&Event::Warning(format!(
            "{} has mounted filesystems: the backup is of filesystems in use and may be inconsistent",
            source.display()
        )));
    }
    let compression = Compression::for_path(&prepared.file);
    let dir = prepared.file.parent().unwrap_or(Path::new("."));
    let name = prepared
        .file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let out_err = |source| Error::Output {
        file: prepared.file.clone(),
        source,
    };
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}.bootstick-"))
        .tempfile_in(dir)
        .map_err(out_err)?;
    // A cancel before the rename leaves FILE as it was.
    let cancelled = || Error::Cancelled {
        file: prepared.file.clone(),
        state: if prepared.replaces.is_some() {
            FileState::Unchanged
        } else {
            FileState::NotCreated
        },
    };
    let mut bad_sectors: Vec<u64> = Vec::new();
    let mut recovered_sectors: Vec<u64> = Vec::new();
    let (image_sha, file_sha, file_len) = {
        let out = Hashing {
            inner: BufWriter::with_capacity(1 << 20, tmp.as_file()),
            hash: Sha256::new(),
            len: 0,
        };
        let mut out = out;
        let mut image_hash = Sha256::new();
        observer.event(&Event::PhaseStarted {
            phase: Phase::Write,
            total: len,
        });
        // The reader thread reads ahead into a pool of aligned buffers.
        let (give, take) = AlignedBuf::pool(3, CHUNK, align.memory);
        let (tx, rx) = sync_channel::<Result<Chunk, Error>>(2);
        let cancel = options.cancel.clone();
        let read_path = source.clone();
        let skip_bad = options.skip_bad;
        let reader = std::thread::spawn(move || {
            let mut at = 0u64;
            while at < len {
                if cancel.is_cancelled() {
                    return;
                }
                let Ok(mut buf) = take.recv() else { return };
                let want = (CHUNK as u64).min(len - at) as usize;
                let r = read_chunk(
                    &direct, &mut buf, at, want, align, sector, skip_bad, &cancel,
                )
                .map_err(|e| e.into_error(&read_path, sector))
                .map(|(bad, recovered)| Chunk {
                    buf,
                    len: want,
                    bad,
                    recovered,
                });
                let failed = r.is_err();
                if tx.send(r).is_err() || failed {
                    return;
                }
                at += want as u64;
            }
        });
        let mut enc = encoder(compression, &mut out, len).map_err(out_err)?;
        let mut done = 0u64;
        let mut result = (|| -> Result<(), Error> {
            while done < len {
                if options.cancel.is_cancelled() {
                    return Err(cancelled());
                }
                let Ok(msg) = rx.recv() else {
                    return Err(cancelled());
                };
                let Chunk {
                    buf,
                    len: n,
                    bad,
                    recovered,
                } = match msg {
                    Err(Error::Cancelled { .. }) => return Err(cancelled()),
                    m => m?,
                };
                for &lba in &bad {
                    observer.event(&Event::Warning(format!(
                        "sector {lba} ({sector}-byte sectors) could not be read after {ATTEMPTS} attempts: stored as zeros"
                    )));
                }
                bad_sectors.extend(bad);
                recovered_sectors.extend(recovered);
                let data = buf.get(n);
                image_hash.update(data);
                enc.write_all(data).map_err(out_err)?;
                done += n as u64;
                let _ = give.send(buf);
                observer.event(&Event::Progress {
                    phase: Phase::Write,
                    done,
                    total: len,
                });
            }
            Ok(())
        })();
        drop(rx);
        let _ = reader.join();
        // The reader stops at a cancel without a word: say so, even when
        // the loop saw the channel close before it saw the cancel.
        if result.is_ok() && done < len {
            result = Err(cancelled());
        }
        result?;
        enc.finish_stream().map_err(out_err)?;
        observer.event(&Event::PhaseFinished {
            phase: Phase::Write,
        });
        let Hashing {
            inner,
            hash,
            len: n,
            ..
        } = out;
        inner.into_inner().map_err(|e| out_err(e.into_error()))?;
        (
            hex::encode(image_hash.finalize()),
            hex::encode(hash.finalize()),
            n,
        )
    };
    observer.event(&Event::PhaseStarted {
        phase: Phase::Sync,
        total: 0,
    });
    tmp.as_file().sync_all().map_err(out_err)?;
    // Dropping the file's cached pages makes the read-back come from the
    // disk, as far as the filesystem allows.
    let _ = rustix::fs::fadvise(tmp.as_file(), 0, None, rustix::fs::Advice::DontNeed);
    observer.event(&Event::PhaseFinished { phase: Phase::Sync });
    prove(
        tmp.path(),
        compression,
        len,
        &image_sha,
        &file_sha,
        file_len,
        observer,
    )
    .map_err(|what| match what {
        Proof::Io(source) => out_err(source),
        Proof::Differs(what) => Error::NotProven {
            file: prepared.file.clone(),
            what,
        },
    })?;
    if !bad_sectors.is_empty() {
        incomplete.insert(
            0,
            Incomplete::BadSectors {
                count: bad_sectors.len() as u64,
            },
        );
    }
    // A signal during the read-back: the proven file is still only the
    // temporary one, so stopping here leaves FILE as it was.
    if options.cancel.is_cancelled() {
        return Err(cancelled());
    }
    let mode = match std::fs::metadata(&prepared.file) {
        Ok(m) => m.permissions().mode() & 0o7777,
        Err(_) => 0o644,
    };
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(mode)).map_err(out_err)?;
    tmp.persist(&prepared.file).map_err(|e| out_err(e.error))?;
    let checksum_file = PathBuf::from(format!("{}.sha256", prepared.file.display()));
    write_checksum(&checksum_file, &file_sha, &name).map_err(out_err)?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(Report {
        source: source.clone(),
        file: prepared.file.clone(),
        checksum_file,
        compression,
        source_bytes: size,
        image_bytes: len,
        shrunk: extent == Extent::Partitions,
        image_sha256: image_sha,
        file_sha256: file_sha,
        file_bytes: file_len,
        proven: true,
        was_mounted,
        extent,
        sector_bytes: sector,
        complete: incomplete.is_empty(),
        incomplete,
        bad_sectors,
        recovered_sectors,
        seconds: (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
    })
}

/// The length of a disc's image: its volume's end (at most the disc's
/// reported size), or the whole disc when it holds no ISO 9660/UDF volume.
fn disc_len(
    path: &Path,
    file: &File,
    size: u64,
    observer: &dyn Observer,
    incomplete: &mut Vec<Incomplete>,
) -> Result<(u64, Extent), Error> {
    let buffered = file.try_clone().map_err(|source| Error::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let src: std::sync::Arc<dyn ByteSource> =
        std::sync::Arc::new(ImageFile::from_file(buffered, size));
    let volume = extent::volume(&src).map_err(|source| Error::Volume {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(match volume {
        None => {
            observer.event(&Event::Warning(format!(
                "{} holds no ISO 9660 or UDF volume: reading its whole reported capacity",
                path.display()
            )));
            (size, Extent::NoVolume)
        }
        Some(v) if v.bytes > size => {
            incomplete.push(Incomplete::VolumeBeyondEnd {
                volume_bytes: v.bytes,
                source_bytes: size,
            });
            (size, Extent::Volume(v))
        }
        Some(v) => (v.bytes, Extent::Volume(v)),
    })
}

/// What the reader thread hands over: `len` bytes in `buf`, with the LBAs
/// stored as zeros and those read on a retry.
struct Chunk {
    buf: AlignedBuf,
    len: usize,
    bad: Vec<u64>,
    recovered: Vec<u64>,
}

/// Why a chunk was not read.
enum ReadFailure {
    /// Not a medium error (the device went away, …): no point retrying.
    Device {
        offset: u64,
        source: io::Error,
    },
    /// The sector at `offset` failed every attempt.
    Sector {
        offset: u64,
        source: io::Error,
    },
    Cancelled,
}

impl ReadFailure {
    fn into_error(self, path: &Path, sector: u64) -> Error {
        match self {
            ReadFailure::Device { offset, source } => Error::Read {
                path: path.to_path_buf(),
                offset,
                source,
            },
            ReadFailure::Sector { offset, source } => Error::Unreadable {
                path: path.to_path_buf(),
                lba: offset / sector,
                sector_bytes: sector,
                attempts: ATTEMPTS,
                source,
            },
            // Only stops the reader: the loop reports the cancel with
            // FILE's state.
            ReadFailure::Cancelled => Error::Cancelled {
                file: PathBuf::new(),
                state: FileState::NotCreated,
            },
        }
    }
}

/// An error the medium reports about the data (worth a retry, and with
/// `skip_bad` a sector to skip), as opposed to the device failing.
fn is_medium_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EIO | libc::ENODATA | libc::EILSEQ | libc::EBADMSG)
    )
}

/// Reads `want` bytes at `at` into `buf` (aligned reads, the last one of a
/// source that ends inside an alignment unit short), whole first; on a
/// medium error again sector by sector, each up to [`ATTEMPTS`] times.
/// Returns the LBAs stored as zeros (only with `skip_bad`) and those that
/// read on a retry.
#[allow(clippy::too_many_arguments)]
fn read_chunk(
    direct: &File,
    buf: &mut AlignedBuf,
    at: u64,
    want: usize,
    align: Alignment,
    sector: u64,
    skip_bad: bool,
    cancel: &Cancel,
) -> Result<(Vec<u64>, Vec<u64>), ReadFailure> {
    let aligned = (align.up(want as u64) as usize).min(buf.capacity());
    let whole = read_full(direct, buf.get_mut(aligned), at, want);
    let err = match whole {
        Ok(()) => return Ok((Vec::new(), Vec::new())),
        Err(e) => e,
    };
    if !is_medium_error(&err) {
        return Err(ReadFailure::Device {
            offset: at,
            source: err,
        });
    }
    let mut bad = Vec::new();
    let mut recovered = Vec::new();
    let step = sector as usize;
    let area = buf.get_mut(aligned);
    let mut off = 0usize;
    while off < want {
        if cancel.is_cancelled() {
            return Err(ReadFailure::Cancelled);
        }
        let need = step.min(want - off);
        let span = step.min(aligned - off);
        let piece = &mut area[off..off + span];
        let mut last = None;
        for attempt in 0..ATTEMPTS {
            match read_full(direct, piece, at + off as u64, need) {
                Ok(()) => {
                    if attempt > 0 {
                        recovered.push((at + off as u64) / sector);
                    }
                    last = None;
                    break;
                }
                Err(e) if is_medium_error(&e) => last = Some(e),
                Err(e) => {
                    return Err(ReadFailure::Device {
                        offset: at + off as u64,
                        source: e,
                    })
                }
            }
        }
        if let Some(e) = last {
            if !skip_bad {
                return Err(ReadFailure::Sector {
                    offset: at + off as u64,
                    source: e,
                });
            }
            piece.fill(0);
            bad.push((at + off as u64) / sector);
        }
        off += step;
    }
    Ok((bad, recovered))
}

/// Fills `buf` from `at` (one aligned read, repeated only when the kernel
/// returns less), accepting a short read at the source's end once `need`
/// bytes are in.
fn read_full(file: &File, buf: &mut [u8], at: u64, need: usize) -> io::Result<()> {
    let mut got = 0usize;
    while got < need {
        match file.read_at(&mut buf[got..], at + got as u64) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

enum Proof {
    Io(io::Error),
    Differs(String),
}

/// Reads `path` back: its bytes must hash to `file_sha` (`file_len` of
/// them), and decompressed give `len` bytes hashing to `image_sha`.
fn prove(
    path: &Path,
    compression: Compression,
    len: u64,
    image_sha: &str,
    file_sha: &str,
    file_len: u64,
    observer: &dyn Observer,
) -> Result<(), Proof> {
    observer.event(&Event::PhaseStarted {
        phase: Phase::Verify,
        total: file_len,
    });
    let f = File::open(path).map_err(Proof::Io)?;
    let mut raw = HashingReader {
        inner: BufReader::with_capacity(1 << 20, f),
        hash: Sha256::new(),
        len: 0,
    };
    let mut sink = Hashing {
        inner: io::sink(),
        hash: Sha256::new(),
        len: 0,
    };
    let decoded = match compression {
        Compression::None => io::copy(&mut raw, &mut sink),
        Compression::Zstd => {
            zstd::stream::read::Decoder::new(&mut raw).and_then(|mut d| io::copy(&mut d, &mut sink))
        }
        Compression::Xz => io::copy(
            &mut liblzma::read::XzDecoder::new_multi_decoder(&mut raw),
            &mut sink,
        ),
        Compression::Gzip => io::copy(&mut flate2::read::MultiGzDecoder::new(&mut raw), &mut sink),
    };
    if let Err(e) = decoded {
        return Err(Proof::Differs(format!("does not decompress: {e}")));
    }
    // Whatever follows the compressed stream belongs to the file too.
    io::copy(&mut raw, &mut io::sink()).map_err(Proof::Io)?;
    observer.event(&Event::PhaseFinished {
        phase: Phase::Verify,
    });
    let got_file = hex::encode(raw.hash.finalize());
    if raw.len != file_len || got_file != file_sha {
        return Err(Proof::Differs(format!(
            "as {} bytes with SHA-256 {got_file}, written as {file_len} bytes with {file_sha}",
            raw.len
        )));
    }
    let got_image = hex::encode(sink.hash.finalize());
    if sink.len != len || got_image != image_sha {
        return Err(Proof::Differs(format!(
            "decompressed to {} bytes with SHA-256 {got_image}, read from the source as {len} bytes with {image_sha}",
            sink.len
        )));
    }
    Ok(())
}

/// `FILE.sha256` in `sha256sum -c` format, naming FILE relative to its
/// directory (so the pair can be moved together), written atomically.
fn write_checksum(path: &Path, sha: &str, name: &str) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".bootstick-sha256-")
        .tempfile_in(dir)?;
    writeln!(tmp, "{sha}  {name}")?;
    tmp.as_file().sync_all()?;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644))?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Silent;

    /// Compresses `data` as `c` into a file; returns it with the digests a
    /// backup would have taken.
    fn compressed(c: Compression, data: &[u8]) -> (tempfile::NamedTempFile, String, String, u64) {
        let tmp = tempfile::NamedTempFile::new().unwrap();
        let (file_sha, len) = {
            let mut out = Hashing {
                inner: tmp.as_file(),
                hash: Sha256::new(),
                len: 0,
            };
            let mut e = encoder(c, &mut out, data.len() as u64).unwrap();
            e.write_all(data).unwrap();
            e.finish_stream().unwrap();
            (hex::encode(out.hash.finalize()), out.len)
        };
        let image_sha = hex::encode(Sha256::digest(data));
        (tmp, image_sha, file_sha, len)
    }

    /// The read-back proves every format, and catches a flipped byte in the
    /// file (the file's own digest) and a file that is intact but holds
    /// other data than was read (the image digest).
    #[test]
    fn the_read_back_proves_each_format_and_catches_a_changed_byte() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 / 5) as u8).collect();
        for c in [
            Compression::None,
            Compression::Zstd,
            Compression::Xz,
            Compression::Gzip,
        ] {
            let (tmp, image_sha, file_sha, len) = compressed(c, &data);
            let n = data.len() as u64;
            assert!(prove(tmp.path(), c, n, &image_sha, &file_sha, len, &Silent).is_ok());
            let other = hex::encode(Sha256::digest(b"other"));
            assert!(matches!(
                prove(tmp.path(), c, n, &other, &file_sha, len, &Silent),
                Err(Proof::Differs(_))
            ));
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .open(tmp.path())
                .unwrap();
            let mut b = [0u8; 1];
            f.read_exact_at(&mut b, len / 2).unwrap();
            f.write_all_at(&[b[0] ^ 0x40], len / 2).unwrap();
            assert!(
                matches!(
                    prove(tmp.path(), c, n, &image_sha, &file_sha, len, &Silent),
                    Err(Proof::Differs(_))
                ),
                "{c:?}"
            );
        }
    }
}
