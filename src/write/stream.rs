//! Writing a compressed image: decoded on the fly into the write pipeline.
//!
//! # Why it is built this way
//!
//! - **Nothing is decompressed to disk.** A reader thread pulls decoded
//!   bytes from a [`Decoder`] straight into the pipeline's aligned buffers;
//!   the hasher, the two write threads and the buffer pool are the raw
//!   copy's (`engine`), so memory stays bounded whatever the image's size.
//! - **The read-back proves the decompressed image is on the target.** The
//!   hasher checksums every decoded byte sent (a [`Summer::grid`]: the
//!   image's length is known only at its end, so the ranges are found as
//!   bytes arrive and checked against the final plan's afterwards), and the
//!   read-back checks the target against those checksums, exactly as after
//!   a raw copy. Only a range that differs is decoded again (from the
//!   start) to name the first differing byte.
//! - **The target's end is a hard stop.** Where the format records the
//!   uncompressed size (xz, zstd), a target too small is refused before
//!   anything is written. Where it does not (gzip, bzip2), the reader never
//!   reads past the device's capacity: an image that goes on fails with
//!   [`Error::ImageLargerThanTarget`]. Nothing wraps, and the result says
//!   the target is incomplete.
//! - **A corrupt or truncated stream is bad input, not a bad stick.** The
//!   decoder's own error is kept ([`Error::Decode`], with the decompressed
//!   and compressed offsets), and what was left on the target is said: a
//!   failure in the first chunk leaves it untouched, a later one
//!   incomplete.
//! - **A stream that fails never leaves a bootable target.** A decoder's
//!   verdict comes at the end (a zip member's CRC-32, gzip's trailer, a
//!   truncated file), so the regions a firmware reads first are **held
//!   back**: the image's first MiB (MBR, GPT header and entries, boot
//!   sectors, the ISO 9660 system area) and, when the size is declared,
//!   its last MiB (a backup GPT) go out as zeros and are kept in memory
//!   ([`hold_stage`], after the hasher, so the checksums are of the real
//!   bytes); they are written only once the whole stream decoded. A failure
//!   after the first chunk leaves them zeroed ([`Error::HeldBack`]: the
//!   target holds no partition table and will not boot).
//! - **The plan is known at the end.** Once the stream ended at byte `L`,
//!   the plan is `Plan::raw(L)` plus the tail wipe of a larger device,
//!   written next through the same pipeline; the read-back checks that
//!   plan.

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use super::align::{check_ops, write_ops, AlignedBuf, Alignment, Op};
use super::engine::{
    file_len, hash_stage, read_back, set_direct, sync_phase, untouched_unless_cancelled,
    write_checksums, write_stage, Chunk, PinnedSource, WRITE_BUFFERS,
};
use super::fill::SourceReader;
use super::sums::Summer;
use super::{Error, Options, Report, Target};
use crate::cancel::{Cancel, TargetState};
use crate::events::{Event, Observer, Phase};
use crate::hash::{Digest, HashAlgorithm, Hasher};
use crate::image::bmap::{self, Bmap, RangeCheck};
use crate::image::checked::Verifier;
use crate::image::compressed::{Compressed, DecodedImage, Decoder};
use crate::image::pipe::{PipeStream, StreamError};
use crate::plan::{Extent, Plan};

/// What a successful write of a compressed image did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedReport {
    /// As for a raw copy; `source_digest` is the source check's digest of
    /// the compressed file (with [`Options::source_blocks`]).
    pub report: Report,
    /// The decompressed image's length: the bytes of it on the target.
    pub image_bytes: u64,
    /// The digest of the decompressed image, with [`Options::digest`].
    pub decoded_digest: Option<Digest>,
}

/// How a stream ended, as the reader thread saw it.
struct Ended {
    /// The decompressed image's length.
    len: u64,
    /// A mapped write's digest of every image byte, the unmapped ones
    /// too (the reader takes it: the pipeline sees only mapped bytes).
    digest: Option<Digest>,
}

/// Where a streamed write's bytes come from.
pub(super) enum Streamed<'a> {
    /// A compressed file, decoded on the fly; it can be read again (to
    /// name the first differing byte after a failed read-back).
    File {
        image: &'a Compressed,
        source: &'a File,
    },
    /// A stream read once (`image::pipe`): compressed or not, of a length
    /// given or found at its end; its digest is checked at its end.
    Pipe(PipeStream),
    /// An uncompressed image file (written through a bmap: a plain copy
    /// goes through `engine`).
    Raw { source: &'a File },
}

/// The bytes the reader thread pulls, in order.
enum Bytes<'a> {
    Decoder(Decoder),
    Pipe(PipeStream),
    /// An uncompressed file: `len` bytes, the next at `pos`.
    Raw {
        reader: SourceReader<'a>,
        pos: u64,
        len: u64,
    },
}

impl Bytes<'_> {
    /// Moves `n` bytes on (`u64::MAX`: to the image's end) without sending
    /// them, hashing them into `hasher` when given (a file read without
    /// one is not read at all). Returns how many bytes it moved: fewer
    /// only where the image ended.
    /// Stopped by `cancel` between pieces ([`Error::Cancelled`]: decoding
    /// a long unmapped stretch takes a while).
    fn advance(
        &mut self,
        n: u64,
        hasher: Option<&mut Hasher>,
        scratch: &mut [u8],
        state: TargetState,
        cancel: &Cancel,
    ) -> Result<u64, Error> {
        if let (Bytes::Raw { pos, len, .. }, None) = (&mut *self, &hasher) {
            let step = n.min(*len - *pos);
            *pos += step;
            return Ok(step);
        }
        let mut hasher = hasher;
        let mut moved = 0u64;
        while moved < n {
            if cancel.is_cancelled() {
                return Err(Error::Cancelled { target: state });
            }
            let want = (n - moved).min(scratch.len() as u64) as usize;
            let got = self.read_full(&mut scratch[..want], state)?;
            if let Some(h) = hasher.as_deref_mut() {
                h.update(&scratch[..got]);
            }
            moved += got as u64;
            if got < want {
                break;
            }
        }
        Ok(moved)
    }

    /// Fills `buf`; fewer bytes only at the end. `state` is what a failure
    /// now leaves on the target.
    fn read_full(&mut self, buf: &mut [u8], state: TargetState) -> Result<usize, Error> {
        match self {
            Bytes::Decoder(d) => d.read_full(buf).map_err(|e| Error::from_decode(e, state)),
            Bytes::Pipe(p) => p.read_full(buf).map_err(|e| match e {
                StreamError::Decode(e) => Error::from_decode(e, state),
                StreamError::Read { offset, source } => Error::StreamRead {
                    offset,
                    target: state,
                    source,
                },
            }),
            Bytes::Raw { reader, pos, len } => {
                let n = (buf.len() as u64).min(*len - *pos) as usize;
                reader.read(*pos, &mut buf[..n])?;
                *pos += n as u64;
                Ok(n)
            }
        }
    }
}

/// Writes `input` onto `target`: the whole image, or with `bmap` only its
/// mapped ranges (each checked against the bmap's checksum as it passes).
pub(super) fn write(
    input: Streamed,
    bmap: Option<&Bmap>,
    target: &mut Target,
    mut options: Options,
    observer: &dyn Observer,
) -> Result<DecodedReport, Error> {
    let raw_source = match &input {
        Streamed::Raw { source } => Some(*source),
        _ => None,
    };
    let (pinned, image, mut bytes) = match input {
        Streamed::File { image, source } => {
            let pinned = PinnedSource::new(source, options.source_stamp)?;
            let compressed_len = file_len(source).map_err(|e| Error::ReadSource {
                offset: 0,
                source: e,
            })?;
            if compressed_len != image.compressed_len() {
                return Err(Error::SourceTruncated {
                    at: compressed_len.min(image.compressed_len()),
                });
            }
            if let Some(blocks) = &options.source_blocks {
                if blocks.len() != compressed_len {
                    return Err(Error::SourceChangedSinceCheck {
                        start: blocks.len().min(compressed_len),
                        end: blocks.len().max(compressed_len),
                    });
                }
            }
            let decoder = image
                .decoder()
                .map_err(|e| Error::from_decode(e, TargetState::Untouched))?;
            (Some(pinned), Some(image), Bytes::Decoder(decoder))
        }
        Streamed::Pipe(p) => {
            if options.source_blocks.is_some() {
                return Err(Error::Internal(
                    "a stream has no block digests: it is checked by its digest at its end".into(),
                ));
            }
            (None, None, Bytes::Pipe(p))
        }
        Streamed::Raw { source } => {
            if bmap.is_none() {
                return Err(Error::Internal(
                    "an uncompressed file is streamed only through a bmap".into(),
                ));
            }
            let pinned = PinnedSource::new(source, options.source_stamp)?;
            let len = file_len(source).map_err(|e| Error::ReadSource {
                offset: 0,
                source: e,
            })?;
            // After a source check every byte read is a checked one
            // (`image::checked`), as in a plain copy.
            let reader = match &options.source_blocks {
                Some(blocks) => {
                    if blocks.len() != len {
                        return Err(Error::SourceChangedSinceCheck {
                            start: blocks.len().min(len),
                            end: blocks.len().max(len),
                        });
                    }
                    let file = source.try_clone().map_err(|e| Error::ReadSource {
                        offset: 0,
                        source: e,
                    })?;
                    SourceReader::Checked(Verifier::new(file, blocks.clone(), 2))
                }
                None => SourceReader::Plain(source),
            };
            (
                Some(pinned),
                None,
                Bytes::Raw {
                    reader,
                    pos: 0,
                    len,
                },
            )
        }
    };
    let unchanged = || pinned.as_ref().map_or(Ok(()), PinnedSource::unchanged);
    // A file's compressed bytes are vouched for only by the check's block
    // digests, through which `image` reads them (docs/trust.md); a
    // stream's digest is compared at its end, below.
    if let (Some(_), None, Some(_)) = (
        pinned.as_ref(),
        &options.source_blocks,
        &options.expect_source,
    ) {
        return Err(Error::Internal(
            "an image file is checked through its block digests (Options::source_blocks), not a whole-file digest".into(),
        ));
    }
    let declared = match (&bytes, image) {
        (Bytes::Pipe(p), _) => p.size(),
        (Bytes::Raw { len, .. }, _) => Some(*len),
        (_, Some(image)) => image.declared_size(),
        (_, None) => None,
    };
    // The bmap's image size is the image's: refused now where it is known
    // (a file, a declared size), else at the stream's end.
    if let (Some(b), Some(d)) = (bmap, declared) {
        b.check_image_len(d).map_err(|source| Error::Bmap {
            target: TargetState::Untouched,
            source: Box::new(source),
        })?;
    }
    let declared = declared.or(bmap.map(|b| b.image_size));
    let capacity = target.capacity();
    if let (Some(declared), Some(cap)) = (declared, capacity) {
        Plan::raw(declared).check_fits(cap)?;
    }

    let file = target.file_handle();
    let align = Alignment::of(file, target.is_block_device());
    let direct = match set_direct(file, true) {
        Ok(()) => true,
        Err(e) => {
            observer.event(&Event::Warning(format!(
                "{} refused O_DIRECT ({e}); writing through the page cache instead",
                target.path().display()
            )));
            false
        }
    };
    let chunk = align.chunk(options.chunk_size);
    // With a declared size the plan is known now (and the progress total).
    let total = declared
        .map(|len| planned(len, capacity, bmap).map(|p| p.bytes_to_write()))
        .transpose()?;
    observer.event(&Event::PhaseStarted {
        phase: Phase::Write,
        total: total.unwrap_or(0),
    });
    let (free_tx, free_rx) = AlignedBuf::pool(WRITE_BUFFERS, chunk, align.memory);
    let (filled_tx, filled_rx) = sync_channel::<Result<Chunk, Error>>(1);
    let (hashed_tx, hashed_rx) = sync_channel::<Result<Chunk, Error>>(1);
    let (masked_tx, masked_rx) = sync_channel::<Result<Chunk, Error>>(1);
    let held_ranges = held_back(declared);
    let wipe_on_failure = bmap.map(|_| held_ranges.clone());
    let device = target.is_block_device();
    let summer = options.verify.then(|| Summer::grid(chunk as u64));
    untouched_unless_cancelled(&options.cancel)?;
    let cancel = &options.cancel;
    // A stream's expected digest is computed as it passes; a file's was
    // checked before (its block digests).
    let algorithm = match &bytes {
        Bytes::Pipe(_) => options
            .expect_source
            .as_ref()
            .map(Digest::algorithm)
            .or(options.digest),
        _ => options.digest,
    };
    // Through a bmap the pipeline sees only the mapped bytes, so the
    // reader hashes the whole image itself.
    let (algorithm, whole) = match bmap {
        Some(_) => (None, algorithm),
        None => (algorithm, None),
    };
    let reader = StreamReader {
        image,
        stream_size: match &bytes {
            Bytes::Pipe(p) => p.size(),
            Bytes::Decoder(_) | Bytes::Raw { .. } => None,
        },
        capacity,
        chunk,
        align,
        direct,
        cancel,
        bmap,
        whole,
    };
    let checker = bmap.map(Bmap::checker);
    let (written, ended, hashed) = std::thread::scope(|s| {
        let reader = &reader;
        let bytes = &mut bytes;
        let read = s.spawn(move || reader.run(bytes, free_rx, filled_tx));
        let hasher = s.spawn(move || hash_stage(algorithm, summer, filled_rx, hashed_tx));
        let holder = s.spawn(move || hold_stage(held_ranges, checker, hashed_rx, masked_tx));
        let written = write_stage(
            file,
            direct,
            total,
            options.before_first_write.take(),
            cancel,
            masked_rx,
            free_tx,
            observer,
        );
        let hashed = hasher.join().expect("the hasher thread does not panic");
        let held = holder.join().expect("the holding thread does not panic");
        let ended = read.join().expect("the reader thread does not panic");
        (written.map(|d| (d, held)), ended, hashed)
    });
    // A staged file target is discarded on failure: only a device keeps
    // the zeroed regions.
    // Through a bmap only the mapped bytes of the held-back regions went
    // out as zeros; the rest still holds what the stick had (an old
    // partition table, say), so a failed write zeroes them whole.
    let held_back_on = |e: Error| {
        if !device || e.target_state() != Some(TargetState::Incomplete) {
            return e;
        }
        if let Some(ranges) = &wipe_on_failure {
            if zero_ranges(file, ranges).is_err() {
                return e;
            }
        }
        held_back_error(e)
    };
    let (direct_io, held) = written.map_err(held_back_on)?;
    let Some(Ended { len, digest: whole }) = ended else {
        if options.cancel.is_cancelled() {
            return Err(Error::Cancelled {
                target: TargetState::Incomplete,
            });
        }
        return Err(Error::Internal(
            "the decoding reader stopped without saying why".into(),
        ));
    };
    let (decoded_digest, sums) =
        hashed.ok_or_else(|| Error::Internal("the hasher stopped before the last chunk".into()))?;
    let decoded_digest = decoded_digest.or(whole);
    unchanged()?;
    let trusted = match (&bytes, &options.expect_source) {
        (Bytes::Pipe(p), Some(expected)) => {
            // Either stream may be the one the digest is of: the decoded
            // bytes as written, or the compressed bytes as read.
            let compressed = p
                .raw_digests()
                .into_iter()
                .find(|d| d.algorithm() == expected.algorithm());
            let streamed = decoded_digest
                .clone()
                .ok_or_else(|| Error::Internal("a stream was not hashed".into()))?;
            if &streamed != expected && compressed.as_ref() != Some(expected) {
                return Err(held_back_on(Error::StreamDigest {
                    expected: expected.clone(),
                    actual: streamed,
                    compressed,
                    target: TargetState::Incomplete,
                }));
            }
            Some(expected.clone())
        }
        (_, expect) => expect.clone(),
    };
    // The whole stream decoded (and matched): the held-back regions go out now.
    write_held(file, direct, &held)?;
    // A file target written through a bmap has the image's length (its
    // unmapped end is a hole, zeros, as the image's).
    if let (Some(b), false) = (bmap, device) {
        let now = file_len(file).map_err(|source| Error::WriteTarget { offset: 0, source })?;
        if now < b.image_size {
            file.set_len(b.image_size)
                .map_err(|source| Error::WriteTarget {
                    offset: b.image_size,
                    source,
                })?;
        }
    }
    observer.event(&Event::PhaseFinished {
        phase: Phase::Write,
    });
    let plan = planned(len, capacity, bmap)?;

    sync_phase(file, &options.cancel, observer)?;
    if let Some(sums) = sums {
        let sums = write_checksums(sums)?;
        let ranges: Vec<_> = check_ops(&plan, align, chunk, false)
            .into_iter()
            .map(|op| op.check)
            .collect();
        write_checksums(sums.check_ranges(&ranges))?;
        let decoded = image.map(|i| DecodedImage::new(i.clone()));
        let source = match (&decoded, raw_source) {
            (Some(d), _) => SourceReader::Decoded(d),
            (None, Some(f)) => SourceReader::Plain(f),
            (None, None) => SourceReader::Streamed,
        };
        read_back(
            &plan,
            &source,
            target,
            chunk,
            &sums,
            &options.cancel,
            observer,
        )?;
        unchanged()?;
    }
    Ok(DecodedReport {
        report: Report {
            bytes_written: plan.bytes_to_write(),
            source_digest: trusted,
            verified: options.verify,
            direct_io,
        },
        image_bytes: len,
        decoded_digest,
    })
}

/// Bytes held back at each end of a decoded image ([`hold_stage`]): the
/// first MiB holds every partition table's primary copy, boot sectors and
/// the ISO 9660 system area; the last holds a backup GPT.
pub const HOLD_BACK: u64 = 1 << 20;

/// The target ranges held back for a decoded image of `declared` bytes
/// (`None`: unknown; its end is then found only as it passes, and only
/// the first MiB is held).
fn held_back(declared: Option<u64>) -> Vec<Range<u64>> {
    let mut ranges = Vec::with_capacity(2);
    ranges.push(0..declared.map_or(HOLD_BACK, |d| d.min(HOLD_BACK)));
    if let Some(d) = declared.filter(|&d| d > 2 * HOLD_BACK) {
        ranges.push(d - HOLD_BACK..d);
    }
    ranges
}

/// Passes chunks from the hasher to the writers, keeping the bytes that
/// fall in `ranges` and sending zeros in their place. Chunks come in
/// target order, so each range's bytes arrive in order (with gaps, through
/// a bmap). With `checker` (a bmap's), the image bytes of each chunk are
/// checked first: a chunk that ends a range with another checksum is not
/// passed on, an [`Error::Bmap`] is instead. Returns what was kept, as
/// runs by target offset, once the pipeline ends.
fn hold_stage(
    ranges: Vec<Range<u64>>,
    mut checker: Option<RangeCheck>,
    input: Receiver<Result<Chunk, Error>>,
    out: SyncSender<Result<Chunk, Error>>,
) -> Vec<(u64, Vec<u8>)> {
    let mut held: Vec<(u64, Vec<u8>)> = Vec::new();
    // A chunk went on to the writers: a failure now leaves the target
    // incomplete.
    let mut passed = false;
    for mut msg in input {
        if let Ok(c) = &mut msg {
            let at = c.op.range.clone();
            let data = c.buf.get_mut((at.end - at.start) as usize);
            if let Some(check) = &mut checker {
                let checked = c
                    .source_parts
                    .iter()
                    .try_for_each(|p| check.feed(at.start + p.start as u64, &data[p.clone()]));
                if let Err(source) = checked {
                    let target = if passed {
                        TargetState::Incomplete
                    } else {
                        TargetState::Untouched
                    };
                    let _ = out.send(Err(Error::Bmap {
                        target,
                        source: Box::new(source),
                    }));
                    break;
                }
            }
            for r in &ranges {
                let (s, e) = (r.start.max(at.start), r.end.min(at.end));
                if s < e {
                    let part = (s - at.start) as usize..(e - at.start) as usize;
                    match held.last_mut() {
                        Some((o, kept)) if *o + kept.len() as u64 == s => {
                            kept.extend_from_slice(&data[part.clone()])
                        }
                        _ => held.push((s, data[part.clone()].to_vec())),
                    }
                    data[part].fill(0);
                }
            }
        }
        let failed = msg.is_err();
        if out.send(msg).is_err() || failed {
            break;
        }
        passed = true;
    }
    held
}

/// Writes the held-back bytes in place (through the page cache: they need
/// not be aligned; the sync that follows makes them durable).
fn write_held(file: &File, direct: bool, held: &[(u64, Vec<u8>)]) -> Result<(), Error> {
    if direct {
        set_direct(file, false).map_err(|source| Error::WriteTarget { offset: 0, source })?;
    }
    for (at, bytes) in held.iter().filter(|(_, b)| !b.is_empty()) {
        file.write_all_at(bytes, *at)
            .map_err(|source| Error::WriteTarget {
                offset: *at,
                source,
            })?;
    }
    if direct {
        set_direct(file, true).map_err(|source| Error::WriteTarget { offset: 0, source })?;
    }
    Ok(())
}

/// Writes zeros over `ranges` of the target and flushes them (through the
/// page cache; a failed write's last act).
fn zero_ranges(file: &File, ranges: &[Range<u64>]) -> std::io::Result<()> {
    set_direct(file, false)?;
    for r in ranges {
        file.write_all_at(&vec![0u8; (r.end - r.start) as usize], r.start)?;
    }
    file.sync_all()
}

/// A failed decoded write that wrote its first chunk left the held-back
/// regions zeroed: the error says so ([`Error::HeldBack`]).
fn held_back_error(e: Error) -> Error {
    match e {
        e @ (Error::Decode { .. }
        | Error::Bmap { .. }
        | Error::ImageLargerThanTarget { .. }
        | Error::StreamRead { .. }
        | Error::StreamLength { .. }
        | Error::StreamDigest { .. })
            if e.target_state() == Some(TargetState::Incomplete) =>
        {
            Error::HeldBack {
                source: Box::new(e),
            }
        }
        e => e,
    }
}

/// The plan of a decoded image of `len` bytes: the image (through a bmap,
/// its mapped ranges), and on a device of `capacity` bytes the tail wipe.
fn planned(len: u64, capacity: Option<u64>, bmap: Option<&Bmap>) -> Result<Plan, Error> {
    let plan = match bmap {
        Some(b) => b.plan(),
        None => Plan::raw(len),
    };
    Ok(match capacity {
        Some(cap) => plan.with_tail_wipe(cap)?,
        None => plan,
    })
}

/// The reader thread of a decoded write.
struct StreamReader<'a> {
    /// A compressed file's image (its length is checked at the end).
    image: Option<&'a Compressed>,
    /// A stream's given length: a hard stop, and checked at the end.
    stream_size: Option<u64>,
    capacity: Option<u64>,
    chunk: usize,
    align: Alignment,
    direct: bool,
    cancel: &'a Cancel,
    /// Write only the ranges this maps ([`StreamReader::run_mapped`]).
    bmap: Option<&'a Bmap>,
    /// Through a bmap: hash every image byte with this.
    whole: Option<HashAlgorithm>,
}

impl StreamReader<'_> {
    /// Fills buffers with decoded bytes in target order, then with the
    /// tail wipe's zeros. Returns where the image ended, or `None` when it
    /// stopped early (an error, sent down the pipeline, or a cancellation).
    fn run(
        &self,
        decoder: &mut Bytes,
        free: Receiver<AlignedBuf>,
        out: SyncSender<Result<Chunk, Error>>,
    ) -> Option<Ended> {
        if let Some(bmap) = self.bmap {
            return self.run_mapped(decoder, bmap, free, out);
        }
        // What a failure at target byte `pos` leaves: chunks are sent in
        // order and a failing one is not, so nothing before the first.
        let state = |pos: u64| {
            if pos == 0 {
                TargetState::Untouched
            } else {
                TargetState::Incomplete
            }
        };
        let fail = |e: Error| {
            let _ = out.send(Err(e));
            None
        };
        let mut pos = 0u64;
        let mut spare = None;
        loop {
            let mut buf = match spare.take() {
                Some(b) => b,
                None => free.recv().ok()?,
            };
            if self.cancel.is_cancelled() {
                return None;
            }
            // A stream of a given length stops there as at the target's end.
            let limit = match (self.capacity, self.stream_size) {
                (Some(c), Some(s)) => Some(c.min(s)),
                (c, s) => c.or(s),
            };
            let want = match limit {
                Some(end) => (end - pos).min(self.chunk as u64) as usize,
                None => self.chunk,
            };
            if want == 0 {
                // The target is full, or the given length reached: the
                // image must end here.
                let mut probe = [0u8; 1];
                match decoder.read_full(&mut probe, state(pos)) {
                    Ok(0) => {
                        spare = Some(buf);
                        break;
                    }
                    Ok(_) if self.stream_size == Some(pos) => {
                        return fail(Error::StreamLength {
                            declared: pos,
                            actual: None,
                            target: state(pos),
                        })
                    }
                    Ok(_) => {
                        return fail(Error::ImageLargerThanTarget {
                            capacity: pos,
                            target: state(pos),
                        })
                    }
                    Err(e) => return fail(e),
                }
            }
            let n = match decoder.read_full(buf.get_mut(want), state(pos)) {
                Ok(n) => n,
                Err(e) => return fail(e),
            };
            if n == 0 {
                spare = Some(buf);
                break;
            }
            let op = Op {
                range: pos..pos + n as u64,
                direct: self.direct && (n as u64).is_multiple_of(self.align.offset),
            };
            pos += n as u64;
            let chunk = Chunk {
                op,
                buf,
                source_parts: std::iter::once(0..n).collect(),
            };
            if out.send(Ok(chunk)).is_err() {
                return None;
            }
            if n < want {
                break;
            }
        }
        let checked = match self.image {
            Some(image) if pos == 0 => Err(Error::Decode {
                target: TargetState::Untouched,
                source: crate::image::compressed::Error::Empty {
                    format: image.format(),
                },
            }),
            Some(image) => image.check_len(pos).map_err(|e| Error::Decode {
                target: state(pos),
                source: e,
            }),
            // A stream's first bytes arrived when it was opened
            // (`image::pipe`): it cannot be empty here.
            None if pos == 0 => Err(Error::Internal(
                "an empty stream reached the write engine".into(),
            )),
            None => match self.stream_size {
                Some(declared) if declared != pos => Err(Error::StreamLength {
                    declared,
                    actual: Some(pos),
                    target: state(pos),
                }),
                _ => Ok(()),
            },
        };
        if let Err(e) = checked {
            return fail(e);
        }
        // The tail wipe of a larger device, now that the image's end is known.
        if !self.tail_wipe(pos, None, &mut spare, &free, &out) {
            return None;
        }
        Some(Ended {
            len: pos,
            digest: None,
        })
    }

    /// Sends the tail wipe of the plan of an image of `len` bytes (through
    /// `bmap`) on a device, as zero chunks. False when the pipeline
    /// stopped.
    fn tail_wipe(
        &self,
        len: u64,
        bmap: Option<&Bmap>,
        spare: &mut Option<AlignedBuf>,
        free: &Receiver<AlignedBuf>,
        out: &SyncSender<Result<Chunk, Error>>,
    ) -> bool {
        let Some(cap) = self.capacity else {
            return true;
        };
        let plan = match planned(len, Some(cap), bmap) {
            Ok(p) => p,
            Err(e) => {
                let _ = out.send(Err(e));
                return false;
            }
        };
        let mut tail = Plan::builder();
        for p in plan.pieces() {
            if let Extent::Zeros { .. } = p.extent {
                tail.push(p.at, p.extent.clone())
                    .expect("the pieces of a plan are ordered");
            }
        }
        for op in write_ops(&tail.build(), self.align, self.chunk, self.direct) {
            let mut buf = match spare.take() {
                Some(b) => b,
                None => match free.recv() {
                    Ok(b) => b,
                    Err(_) => return false,
                },
            };
            if self.cancel.is_cancelled() {
                return false;
            }
            let len = (op.range.end - op.range.start) as usize;
            buf.get_mut(len).fill(0);
            let chunk = Chunk {
                op,
                buf,
                source_parts: Vec::new(),
            };
            if out.send(Ok(chunk)).is_err() {
                return false;
            }
        }
        true
    }

    /// [`StreamReader::run`] through a bmap: the image is read (decoded)
    /// in order from its first byte to its last, but only the mapped
    /// ranges go down the pipeline (cut as a plan of them is), the rest is
    /// passed over (an uncompressed file's is not even read, unless the
    /// whole image is hashed). The image must end at the bmap's image
    /// size, and a compressed one must decode to its end (its own checks).
    fn run_mapped(
        &self,
        bytes: &mut Bytes,
        bmap: &Bmap,
        free: Receiver<AlignedBuf>,
        out: SyncSender<Result<Chunk, Error>>,
    ) -> Option<Ended> {
        let fail = |e: Error| {
            let _ = out.send(Err(e));
            None
        };
        let mut whole = self.whole.map(HashAlgorithm::hasher);
        let mut scratch = vec![0u8; 1 << 20];
        let mut pos = 0u64;
        let mut sent = false;
        let state = |sent: bool| {
            if sent {
                TargetState::Incomplete
            } else {
                TargetState::Untouched
            }
        };
        // The image ended at `at`, before the bmap says it does.
        let short = |at: u64, sent: bool| Error::Bmap {
            target: state(sent),
            source: Box::new(bmap::Error::ImageSize {
                bmap: bmap.image_size,
                image: at,
            }),
        };
        for op in write_ops(&bmap.plan(), self.align, self.chunk, self.direct) {
            if op.range.start > pos {
                let gap = op.range.start - pos;
                match bytes.advance(gap, whole.as_mut(), &mut scratch, state(sent), self.cancel) {
                    Ok(n) if n == gap => pos += n,
                    Ok(n) => return fail(short(pos + n, sent)),
                    Err(e) => return fail(e),
                }
            }
            let mut buf = free.recv().ok()?;
            if self.cancel.is_cancelled() {
                return None;
            }
            let len = (op.range.end - op.range.start) as usize;
            let n = match bytes.read_full(buf.get_mut(len), state(sent)) {
                Ok(n) => n,
                Err(e) => return fail(e),
            };
            if n < len {
                return fail(short(pos + n as u64, sent));
            }
            if let Some(h) = &mut whole {
                h.update(buf.get(len));
            }
            pos += len as u64;
            let chunk = Chunk {
                op,
                buf,
                source_parts: std::iter::once(0..len).collect(),
            };
            if out.send(Ok(chunk)).is_err() {
                return None;
            }
            sent = true;
        }
        // The rest of the image, to its end: one byte past the bmap's size
        // tells an image that goes on.
        let rest = bmap.image_size.saturating_sub(pos).saturating_add(1);
        match bytes.advance(rest, whole.as_mut(), &mut scratch, state(sent), self.cancel) {
            Ok(n) => pos += n,
            Err(e) => return fail(e),
        }
        if pos != bmap.image_size {
            return fail(short(pos, sent));
        }
        let checked = match (self.image, self.stream_size) {
            (Some(image), _) => image.check_len(pos).map_err(|e| Error::Decode {
                target: state(sent),
                source: e,
            }),
            (None, Some(declared)) if declared != pos => Err(Error::StreamLength {
                declared,
                actual: Some(pos),
                target: state(sent),
            }),
            _ => Ok(()),
        };
        if let Err(e) = checked {
            return fail(e);
        }
        let mut spare = None;
        if !self.tail_wipe(pos, Some(bmap), &mut spare, &free, &out) {
            return None;
        }
        Some(Ended {
            len: pos,
            digest: whole.map(Hasher::finish),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_mib_is_held_back_and_the_last_with_a_known_size() {
        assert_eq!(held_back(None), vec![0..HOLD_BACK]);
        assert_eq!(held_back(Some(4096)), vec![0..4096]);
        assert_eq!(held_back(Some(2 * HOLD_BACK)), vec![0..HOLD_BACK]);
        let d = 12 * HOLD_BACK + 333;
        assert_eq!(held_back(Some(d)), vec![0..HOLD_BACK, d - HOLD_BACK..d]);
    }
}
