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
//! - **The plan is known at the end.** Once the stream ended at byte `L`,
//!   the plan is `Plan::raw(L)` plus the tail wipe of a larger device,
//!   written next through the same pipeline; the read-back checks that
//!   plan.

use std::fs::File;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use super::align::{check_ops, write_ops, AlignedBuf, Alignment, Op};
use super::engine::{
    file_len, hash_stage, set_direct, untouched_unless_cancelled, write_stage, Chunk, PinnedSource,
    WRITE_BUFFERS,
};
use super::fill::SourceReader;
use super::sums::Summer;
use super::verify::{self, Expected, Stop};
use super::{Error, Options, Report, Target};
use crate::cancel::{Cancel, TargetState};
use crate::events::{Event, Observer, Phase};
use crate::hash::Digest;
use crate::image::compressed::{Compressed, DecodedImage, Decoder};
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
}

pub(super) fn write(
    image: &Compressed,
    source: &File,
    target: &mut Target,
    mut options: Options,
    observer: &dyn Observer,
) -> Result<DecodedReport, Error> {
    let pinned = PinnedSource::new(source, options.source_stamp)?;
    let unchanged = || pinned.unchanged();
    let compressed_len = file_len(source).map_err(|e| Error::ReadSource {
        offset: 0,
        source: e,
    })?;
    if compressed_len != image.compressed_len() {
        return Err(Error::SourceTruncated {
            at: compressed_len.min(image.compressed_len()),
        });
    }
    // The compressed bytes are vouched for only by the check's block
    // digests, through which `image` reads them (docs/trust.md).
    let trusted = match (&options.source_blocks, &options.expect_source) {
        (Some(blocks), expect) => {
            if blocks.len() != compressed_len {
                return Err(Error::SourceChangedSinceCheck {
                    start: blocks.len().min(compressed_len),
                    end: blocks.len().max(compressed_len),
                });
            }
            expect.clone()
        }
        (None, Some(_)) => {
            return Err(Error::Internal(
                "a compressed image is checked through its block digests (Options::source_blocks), not a whole-file digest".into(),
            ))
        }
        (None, None) => None,
    };
    let capacity = target.capacity();
    if let (Some(declared), Some(cap)) = (image.declared_size(), capacity) {
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
    let total = image
        .declared_size()
        .map(|len| planned(len, capacity).map(|p| p.bytes_to_write()))
        .transpose()?;
    observer.event(&Event::PhaseStarted {
        phase: Phase::Write,
        total: total.unwrap_or(0),
    });
    let mut decoder = image
        .decoder()
        .map_err(|e| Error::from_decode(e, TargetState::Untouched))?;
    let (free_tx, free_rx) = AlignedBuf::pool(WRITE_BUFFERS, chunk, align.memory);
    let (filled_tx, filled_rx) = sync_channel::<Result<Chunk, Error>>(1);
    let (hashed_tx, hashed_rx) = sync_channel::<Result<Chunk, Error>>(1);
    let summer = options.verify.then(|| Summer::grid(chunk as u64));
    untouched_unless_cancelled(&options.cancel)?;
    let cancel = &options.cancel;
    let algorithm = options.digest;
    let reader = StreamReader {
        image,
        capacity,
        chunk,
        align,
        direct,
        cancel,
    };
    let (written, ended, hashed) = std::thread::scope(|s| {
        let reader = &reader;
        let decoder = &mut decoder;
        let read = s.spawn(move || reader.run(decoder, free_rx, filled_tx));
        let hasher = s.spawn(move || hash_stage(algorithm, summer, filled_rx, hashed_tx));
        let written = write_stage(
            file,
            direct,
            total,
            options.before_first_write.take(),
            cancel,
            hashed_rx,
            free_tx,
            observer,
        );
        let hashed = hasher.join().expect("the hasher thread does not panic");
        let ended = read.join().expect("the reader thread does not panic");
        (written, ended, hashed)
    });
    let direct_io = written?;
    let Some(Ended { len }) = ended else {
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
    unchanged()?;
    observer.event(&Event::PhaseFinished {
        phase: Phase::Write,
    });
    let plan = planned(len, capacity)?;

    if options.cancel.is_cancelled() {
        return Err(Error::Cancelled {
            target: TargetState::Incomplete,
        });
    }
    observer.event(&Event::PhaseStarted {
        phase: Phase::Sync,
        total: 0,
    });
    file.sync_all().map_err(|source| Error::Sync { source })?;
    observer.event(&Event::PhaseFinished { phase: Phase::Sync });

    if let Some(sums) = sums {
        let sums = sums.map_err(|why| Error::Internal(format!("write checksums: {why}")))?;
        let ranges: Vec<_> = check_ops(&plan, align, chunk, false)
            .into_iter()
            .map(|op| op.check)
            .collect();
        sums.check_ranges(&ranges)
            .map_err(|why| Error::Internal(format!("write checksums: {why}")))?;
        let stop = Stop {
            cancel: &options.cancel,
            state: TargetState::WrittenNotVerified,
        };
        let decoded = DecodedImage::new(image.clone());
        verify::check(
            &plan,
            &SourceReader::Decoded(&decoded),
            target,
            chunk,
            Expected::Sums(&sums),
            &stop,
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

/// The plan of a decoded image of `len` bytes: the image, and on a device
/// of `capacity` bytes the tail wipe.
fn planned(len: u64, capacity: Option<u64>) -> Result<Plan, Error> {
    let plan = Plan::raw(len);
    Ok(match capacity {
        Some(cap) => plan.with_tail_wipe(cap)?,
        None => plan,
    })
}

/// The reader thread of a decoded write.
struct StreamReader<'a> {
    image: &'a Compressed,
    capacity: Option<u64>,
    chunk: usize,
    align: Alignment,
    direct: bool,
    cancel: &'a Cancel,
}

impl StreamReader<'_> {
    /// Fills buffers with decoded bytes in target order, then with the
    /// tail wipe's zeros. Returns where the image ended, or `None` when it
    /// stopped early (an error, sent down the pipeline, or a cancellation).
    fn run(
        &self,
        decoder: &mut Decoder,
        free: Receiver<AlignedBuf>,
        out: SyncSender<Result<Chunk, Error>>,
    ) -> Option<Ended> {
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
            let want = match self.capacity {
                Some(cap) => (cap - pos).min(self.chunk as u64) as usize,
                None => self.chunk,
            };
            if want == 0 {
                // The target is full: the image must end here.
                let mut probe = [0u8; 1];
                match decoder.read_full(&mut probe) {
                    Ok(0) => {
                        spare = Some(buf);
                        break;
                    }
                    Ok(_) => {
                        return fail(Error::ImageLargerThanTarget {
                            capacity: pos,
                            target: state(pos),
                        })
                    }
                    Err(e) => return fail(Error::from_decode(e, state(pos))),
                }
            }
            let n = match decoder.read_full(buf.get_mut(want)) {
                Ok(n) => n,
                Err(e) => return fail(Error::from_decode(e, state(pos))),
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
        if pos == 0 {
            return fail(Error::Decode {
                target: TargetState::Untouched,
                source: crate::image::compressed::Error::Empty {
                    format: self.image.format(),
                },
            });
        }
        if let Err(e) = self.image.check_len(pos) {
            return fail(Error::Decode {
                target: state(pos),
                source: e,
            });
        }
        // The tail wipe of a larger device, now that the image's end is known.
        if let Some(cap) = self.capacity {
            let plan = match planned(pos, Some(cap)) {
                Ok(p) => p,
                Err(e) => return fail(e),
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
                    None => free.recv().ok()?,
                };
                if self.cancel.is_cancelled() {
                    return None;
                }
                let len = (op.range.end - op.range.start) as usize;
                buf.get_mut(len).fill(0);
                let chunk = Chunk {
                    op,
                    buf,
                    source_parts: Vec::new(),
                };
                if out.send(Ok(chunk)).is_err() {
                    return None;
                }
            }
        }
        Some(Ended { len: pos })
    }
}
