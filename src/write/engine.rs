//! The write pipeline: reader thread → hasher thread → writer (caller's thread).

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::sync::mpsc::{channel, sync_channel, Receiver, SyncSender};
use std::sync::Mutex;

use rustix::fs::OFlags;

use super::align::{check_ops, write_ops, AlignedBuf, Alignment, Op};
use super::fill::{fill, SourceReader};
use super::sums::{RangeSums, Summer};
use super::verify::{self, Expected, Stop};
use super::{CompareReport, Error, Options, Report, Target};
use crate::cancel::{Cancel, TargetState};
use crate::events::{Event, Observer, Phase};
use crate::hash::{Digest, HashAlgorithm};
use crate::image::checked::Verifier;
use crate::image::input::Stamp;
use crate::plan::{Extent, Plan};

/// Writes handed to the target at once. With one (as `dd` does), the device
/// idles while the writer wakes up and issues the next write; with two, the
/// next write is already queued when one completes. Measured in
/// `docs/performance.md`.
const WRITES_IN_FLIGHT: usize = 2;

/// Buffers circulating in the write pipeline: one being filled, one being
/// hashed, one queued between each stage, and one per write in flight.
pub(super) const WRITE_BUFFERS: usize = 5 + WRITES_IN_FLIGHT;

/// A filled buffer on its way to the target.
pub(super) struct Chunk {
    pub(super) op: Op,
    pub(super) buf: AlignedBuf,
    /// Parts of the buffer that came from the source, in plan order.
    pub(super) source_parts: Vec<Range<usize>>,
}

impl Chunk {
    fn len(&self) -> usize {
        (self.op.range.end - self.op.range.start) as usize
    }
}

/// Turns `O_DIRECT` on or off for an open file. Fails where the filesystem
/// does not support direct I/O (tmpfs, some FUSE filesystems).
pub(super) fn set_direct(file: &File, on: bool) -> std::io::Result<()> {
    let flags = rustix::fs::fcntl_getfl(file)?;
    let flags = if on {
        flags | OFlags::DIRECT
    } else {
        flags - OFlags::DIRECT
    };
    rustix::fs::fcntl_setfl(file, flags)?;
    Ok(())
}

/// The length of a file or block device.
pub(super) fn file_len(file: &File) -> std::io::Result<u64> {
    let mut f = file;
    f.seek(SeekFrom::End(0))
}

/// True when the plan's source extents, in target order, read the whole
/// source exactly once from byte 0 to its end, so the digest of the streamed
/// bytes is the digest of the image.
fn is_sequential(plan: &Plan, source_len: u64) -> bool {
    let mut next = 0;
    for p in plan.pieces() {
        if let Extent::Source { offset, len } = p.extent {
            if offset != next {
                return false;
            }
            next += len;
        }
    }
    next == source_len
}

/// Hashes the whole source (for plans that do not stream it in order).
fn hash_source(
    source: &SourceReader,
    len: u64,
    algorithm: HashAlgorithm,
    cancel: &Cancel,
    observer: &dyn Observer,
) -> Result<Digest, Error> {
    observer.event(&Event::PhaseStarted {
        phase: Phase::Check,
        total: len,
    });
    let mut h = algorithm.hasher();
    let mut buf = vec![0u8; super::DEFAULT_CHUNK];
    let mut at = 0;
    while at < len {
        untouched_unless_cancelled(cancel)?;
        let n = (len - at).min(buf.len() as u64) as usize;
        source.read(at, &mut buf[..n])?;
        h.update(&buf[..n]);
        at += n as u64;
        observer.event(&Event::Progress {
            phase: Phase::Check,
            done: at,
            total: len,
        });
    }
    observer.event(&Event::PhaseFinished {
        phase: Phase::Check,
    });
    Ok(h.finish())
}

/// [`Error::Cancelled`] (nothing written yet) once `cancel` is cancelled.
/// The image as it was opened (`Options::source_stamp`, else its stamp
/// now), so any change from here on is caught; shared by the plan writer and
/// the decoded-stream writer.
pub(super) struct PinnedSource<'a> {
    source: &'a File,
    opened: Stamp,
}

impl<'a> PinnedSource<'a> {
    /// Pins `source`; an image already changed since `opened` was taken is
    /// refused before anything is written.
    pub(super) fn new(source: &'a File, opened: Option<Stamp>) -> Result<Self, Error> {
        let now = Self::stamp(source)?;
        let opened = match opened {
            Some(s) => {
                if let Some(change) = s.change_to(&now) {
                    return Err(Error::SourceModifiedBeforeWrite { change });
                }
                s
            }
            None => now,
        };
        Ok(PinnedSource { source, opened })
    }

    fn stamp(source: &File) -> Result<Stamp, Error> {
        Stamp::of(source).map_err(|e| Error::ReadSource {
            offset: 0,
            source: e,
        })
    }

    /// Fails with `SourceModified` when the image changed since it was pinned.
    pub(super) fn unchanged(&self) -> Result<(), Error> {
        match self.opened.change_to(&Self::stamp(self.source)?) {
            Some(change) => Err(Error::SourceModified { change }),
            None => Ok(()),
        }
    }
}

pub(super) fn untouched_unless_cancelled(cancel: &Cancel) -> Result<(), Error> {
    if cancel.is_cancelled() {
        Err(Error::Cancelled {
            target: TargetState::Untouched,
        })
    } else {
        Ok(())
    }
}

fn check_digest(expected: &Option<Digest>, actual: &Digest) -> Result<(), Error> {
    match expected {
        Some(e) if e != actual => Err(Error::SourceChanged {
            expected: e.clone(),
            actual: actual.clone(),
        }),
        _ => Ok(()),
    }
}

pub(super) fn write(
    plan: &Plan,
    source: &File,
    target: &mut Target,
    mut options: Options,
    observer: &dyn Observer,
) -> Result<Report, Error> {
    let pinned = PinnedSource::new(source, options.source_stamp)?;
    let unchanged = || pinned.unchanged();
    let source_len = file_len(source).map_err(|e| Error::ReadSource {
        offset: 0,
        source: e,
    })?;
    plan.check_source(source_len)?;
    if let Some(cap) = target.capacity() {
        plan.check_fits(cap)?;
    }
    // After a source check with block digests, every source byte is read
    // through a verifier, so the bytes sent are the checked image's and its
    // digest is the checked one: nothing needs hashing as a whole.
    let (reader, trusted) = match &options.source_blocks {
        Some(blocks) => {
            if blocks.len() != source_len {
                return Err(Error::SourceChangedSinceCheck {
                    start: blocks.len().min(source_len),
                    end: blocks.len().max(source_len),
                });
            }
            let file = source.try_clone().map_err(|e| Error::ReadSource {
                offset: 0,
                source: e,
            })?;
            (
                SourceReader::Checked(Verifier::new(file, blocks.clone(), 2)),
                options.expect_source.clone(),
            )
        }
        None => (SourceReader::Plain(source), None),
    };
    // The source is hashed only when something asks for a digest the
    // verified reads do not already vouch for.
    let algorithm = match &trusted {
        Some(d) if options.digest.is_none_or(|a| a == d.algorithm()) => None,
        _ => options
            .expect_source
            .as_ref()
            .map(Digest::algorithm)
            .or(options.digest),
    };
    let sequential = is_sequential(plan, source_len);
    let prehashed = match algorithm {
        Some(algorithm) if !sequential => {
            let d = hash_source(&reader, source_len, algorithm, &options.cancel, observer)?;
            if trusted.is_none() {
                check_digest(&options.expect_source, &d)?;
            }
            Some(d)
        }
        _ => None,
    };
    let _ = rustix::fs::fadvise(source, 0, None, rustix::fs::Advice::Sequential);

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
    let ops = write_ops(plan, align, chunk, direct);
    let total = plan.bytes_to_write();

    observer.event(&Event::PhaseStarted {
        phase: Phase::Write,
        total,
    });
    let (free_tx, free_rx) = AlignedBuf::pool(WRITE_BUFFERS.min(ops.len()), chunk, align.memory);
    let (filled_tx, filled_rx) = sync_channel::<Result<Chunk, Error>>(1);
    let (hashed_tx, hashed_rx) = sync_channel::<Result<Chunk, Error>>(1);
    let stream_algorithm = algorithm.filter(|_| sequential);
    // The read-back checks the target against checksums of what was sent
    // (see `sums`), cut at the ranges it will check.
    let summer = options.verify.then(|| {
        Summer::new(
            check_ops(plan, align, chunk, false)
                .into_iter()
                .map(|op| op.check)
                .collect(),
        )
    });
    untouched_unless_cancelled(&options.cancel)?;
    let cancel = &options.cancel;
    let (written, streamed) = std::thread::scope(|s| {
        let ops = &ops;
        let reader = &reader;
        s.spawn(move || read_stage(plan, reader, ops, cancel, free_rx, filled_tx));
        let hasher = s.spawn(move || hash_stage(stream_algorithm, summer, filled_rx, hashed_tx));
        let written = write_stage(
            file,
            direct,
            Some(total),
            options.before_first_write.take(),
            cancel,
            hashed_rx,
            free_tx,
            observer,
        );
        let streamed = hasher.join().expect("the hasher thread does not panic");
        (written, streamed)
    });
    let direct_io = written?;
    let (streamed, sums) = streamed
        .ok_or_else(|| Error::Internal("the hasher stopped before the last chunk".into()))?;
    unchanged()?;
    let source_digest = match trusted {
        Some(d) => Some(d),
        None => {
            let d = prehashed.or(streamed);
            if let Some(d) = &d {
                check_digest(&options.expect_source, d)?;
            }
            d
        }
    };
    observer.event(&Event::PhaseFinished {
        phase: Phase::Write,
    });

    sync_phase(file, &options.cancel, observer)?;
    if let Some(sums) = sums {
        let sums = write_checksums(sums)?;
        read_back(
            plan,
            &SourceReader::Plain(source),
            target,
            chunk,
            &sums,
            &options.cancel,
            observer,
        )?;
        // The target holds what was sent; it is the image only if the image
        // did not change meanwhile.
        unchanged()?;
    }
    Ok(Report {
        bytes_written: total,
        source_digest,
        verified: options.verify,
        direct_io,
    })
}

/// The sync phase that ends every write. Written but not yet durable: a
/// stop before it leaves an incomplete target.
pub(super) fn sync_phase(
    file: &File,
    cancel: &Cancel,
    observer: &dyn Observer,
) -> Result<(), Error> {
    if cancel.is_cancelled() {
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
    Ok(())
}

/// The write's checksums of what it sent (or a check of them), or why the
/// summing stage failed.
pub(super) fn write_checksums<T>(sums: Result<T, String>) -> Result<T, Error> {
    sums.map_err(|why| Error::Internal(format!("write checksums: {why}")))
}

/// The read-back after a synced write: the target against the checksums
/// `sums` of what was sent; a stop leaves it written but not verified.
pub(super) fn read_back(
    plan: &Plan,
    source: &SourceReader,
    target: &Target,
    chunk: usize,
    sums: &RangeSums,
    cancel: &Cancel,
    observer: &dyn Observer,
) -> Result<(), Error> {
    let stop = Stop {
        cancel,
        state: TargetState::WrittenNotVerified,
    };
    verify::check(
        plan,
        source,
        target,
        chunk,
        Expected::Sums(sums),
        &stop,
        observer,
    )
    .map(drop)
}

/// Fills buffers from the plan, in target order. Stops (closing its
/// channel) once `cancel` is cancelled; the writer then reports why.
fn read_stage(
    plan: &Plan,
    source: &SourceReader,
    ops: &[Op],
    cancel: &Cancel,
    free: Receiver<AlignedBuf>,
    out: SyncSender<Result<Chunk, Error>>,
) {
    for op in ops {
        let Ok(mut buf) = free.recv() else { return };
        if cancel.is_cancelled() {
            return;
        }
        let len = (op.range.end - op.range.start) as usize;
        let msg = fill(plan, source, op.range.start, buf.get_mut(len)).map(|source_parts| Chunk {
            op: op.clone(),
            buf,
            source_parts,
        });
        let failed = msg.is_err();
        if out.send(msg).is_err() || failed {
            return;
        }
    }
}

/// What the hasher stage found once every chunk went through: the digest of
/// the streamed source bytes (when asked for) and the checksums for the
/// read-back (when it will run).
pub(super) type Hashed = (Option<Digest>, Option<Result<RangeSums, String>>);

/// Hashes the source bytes of each chunk with `algorithm` (given when the
/// plan streams the source in order) and feeds every byte sent to `summer`
/// (given when the target will be read back), then passes the chunk on.
/// Returns `None` when the pipeline stopped early.
pub(super) fn hash_stage(
    algorithm: Option<HashAlgorithm>,
    mut summer: Option<Summer>,
    input: Receiver<Result<Chunk, Error>>,
    out: SyncSender<Result<Chunk, Error>>,
) -> Option<Hashed> {
    let mut hasher = algorithm.map(HashAlgorithm::hasher);
    for msg in input {
        let failed = msg.is_err();
        if let Ok(c) = &msg {
            let data = c.buf.get(c.len());
            if let Some(h) = &mut hasher {
                for p in &c.source_parts {
                    h.update(&data[p.clone()]);
                }
            }
            if let Some(s) = &mut summer {
                s.feed(c.op.range.start, data);
            }
        }
        if out.send(msg).is_err() || failed {
            return None;
        }
    }
    Some((hasher.map(|h| h.finish()), summer.map(Summer::finish)))
}

/// Writes chunks as they arrive, [`WRITES_IN_FLIGHT`] at a time, and
/// recycles their buffers. Returns whether direct I/O stayed on.
///
/// The calling thread dispatches: it runs the first-write check, switches
/// the file between direct and buffered I/O (only with no write in flight,
/// since the flag belongs to the open file and every write sees it), hands
/// each chunk to an idle write thread and collects completions, which carry
/// the progress. Writes to distinct ranges may complete in any order; only
/// `fsync`, after all of them, makes any of them count.
///
/// `total` is what the progress events count up to, and what must have
/// been written at the end; `None` for a decoded stream whose length is
/// known only once it ended (progress then counts up to 0, "unknown").
#[allow(clippy::too_many_arguments)]
pub(super) fn write_stage(
    file: &File,
    direct: bool,
    total: Option<u64>,
    before_first_write: Option<super::BeforeFirstWrite>,
    cancel: &Cancel,
    input: Receiver<Result<Chunk, Error>>,
    free: SyncSender<AlignedBuf>,
    observer: &dyn Observer,
) -> Result<bool, Error> {
    // A rendezvous channel: a chunk is handed over only to a thread that is
    // free to write it now.
    let (job_tx, job_rx) = sync_channel::<Chunk>(0);
    let job_rx = Mutex::new(job_rx);
    let (done_tx, done_rx) = channel::<Written>();
    std::thread::scope(|s| {
        for _ in 0..WRITES_IN_FLIGHT {
            let (job_rx, done_tx) = (&job_rx, done_tx.clone());
            s.spawn(move || loop {
                let Ok(c) = job_rx
                    .lock()
                    .map_err(drop)
                    .and_then(|rx| rx.recv().map_err(drop))
                else {
                    return;
                };
                let result = write_all_at(file, c.buf.get(c.len()), c.op.range.start);
                if done_tx.send(Written { chunk: c, result }).is_err() {
                    return;
                }
            });
        }
        drop(done_tx);
        let mut d = Dispatcher {
            file,
            direct_ok: direct,
            fd_direct: direct,
            done: 0,
            total: total.unwrap_or(0),
            in_flight: 0,
            done_rx,
            free: &free,
            observer,
            retry: Vec::new(),
            cancel,
            wrote: false,
        };
        let result = d
            .run(before_first_write, input, &job_tx)
            .and_then(|()| d.drain());
        drop(job_tx);
        if result.is_err() {
            // Let the writes in flight finish before the threads go.
            let _ = d.wait_all();
        }
        result?;
        let Some(total) = total else {
            if cancel.is_cancelled() {
                return Err(d.cancelled());
            }
            return Ok(d.direct_ok);
        };
        if d.done != total && cancel.is_cancelled() {
            // The reader stopped first.
            return Err(d.cancelled());
        }
        if d.done != total {
            return Err(Error::Internal(format!(
                "wrote {} of {total} bytes: the pipeline stopped early",
                d.done
            )));
        }
        Ok(d.direct_ok)
    })
}

/// A finished write: its chunk, and where it failed if it did.
struct Written {
    chunk: Chunk,
    result: Result<(), (u64, std::io::Error)>,
}

/// The dispatching end of [`write_stage`].
struct Dispatcher<'a> {
    file: &'a File,
    /// Direct I/O still works (no write was refused it).
    direct_ok: bool,
    /// The file's `O_DIRECT` flag now.
    fd_direct: bool,
    done: u64,
    total: u64,
    in_flight: usize,
    done_rx: Receiver<Written>,
    free: &'a SyncSender<AlignedBuf>,
    observer: &'a dyn Observer,
    /// Direct writes the filesystem refused, to write again buffered.
    retry: Vec<Chunk>,
    /// Checked before each chunk is handed to a write thread.
    cancel: &'a Cancel,
    /// A chunk was handed to a write thread: the target is no longer as
    /// it was.
    wrote: bool,
}

impl Dispatcher<'_> {
    fn run(
        &mut self,
        mut before_first_write: Option<super::BeforeFirstWrite>,
        input: Receiver<Result<Chunk, Error>>,
        jobs: &SyncSender<Chunk>,
    ) -> Result<(), Error> {
        for msg in input {
            if self.cancel.is_cancelled() {
                return Err(self.cancelled());
            }
            let c = msg?;
            if let Some(check) = before_first_write.take() {
                check().map_err(Error::Refused)?;
            }
            let want_direct = c.op.direct && self.direct_ok;
            if want_direct != self.fd_direct {
                self.drain()?;
                self.set_direct(want_direct, c.op.range.start)?;
            }
            while self.in_flight >= WRITES_IN_FLIGHT {
                self.complete_one()?;
            }
            self.wrote = true;
            jobs.send(c)
                .map_err(|_| Error::Internal("the write threads stopped early".into()))?;
            self.in_flight += 1;
        }
        Ok(())
    }

    /// The error for a job cancelled now: the target is incomplete once a
    /// chunk went to it.
    fn cancelled(&self) -> Error {
        Error::Cancelled {
            target: if self.wrote {
                TargetState::Incomplete
            } else {
                TargetState::Untouched
            },
        }
    }

    /// Waits for every write in flight; the first failure, if any.
    fn wait_all(&mut self) -> Result<(), Error> {
        let mut first_err = None;
        while self.in_flight > 0 {
            if let Err(e) = self.complete_one() {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Waits for every write in flight, then writes again, buffered, what
    /// the filesystem refused to write directly.
    fn drain(&mut self) -> Result<(), Error> {
        self.wait_all()?;
        for c in std::mem::take(&mut self.retry) {
            self.set_direct(false, c.op.range.start)?;
            write_all_at(self.file, c.buf.get(c.len()), c.op.range.start)
                .map_err(|(offset, source)| Error::WriteTarget { offset, source })?;
            self.finished(c);
        }
        Ok(())
    }

    /// Takes one completion.
    fn complete_one(&mut self) -> Result<(), Error> {
        let w = self
            .done_rx
            .recv()
            .map_err(|_| Error::Internal("the write threads stopped early".into()))?;
        self.in_flight -= 1;
        match w.result {
            Ok(()) => {
                self.finished(w.chunk);
                Ok(())
            }
            Err((_, e)) if self.fd_direct && e.raw_os_error() == Some(libc::EINVAL) => {
                // The filesystem accepted O_DIRECT but not this I/O: fall back.
                if self.direct_ok {
                    self.observer.event(&Event::Warning(format!(
                        "direct write refused at byte {} ({e}); continuing through the page cache",
                        w.chunk.op.range.start
                    )));
                    self.direct_ok = false;
                }
                self.retry.push(w.chunk);
                Ok(())
            }
            Err((offset, source)) => Err(Error::WriteTarget { offset, source }),
        }
    }

    fn set_direct(&mut self, on: bool, offset: u64) -> Result<(), Error> {
        if on != self.fd_direct {
            set_direct(self.file, on).map_err(|source| Error::WriteTarget { offset, source })?;
            self.fd_direct = on;
        }
        Ok(())
    }

    /// Counts a chunk as written and recycles its buffer.
    fn finished(&mut self, c: Chunk) {
        self.done += c.len() as u64;
        self.observer.event(&Event::Progress {
            phase: Phase::Write,
            done: self.done,
            total: self.total,
        });
        let _ = self.free.send(c.buf);
    }
}

/// `pwrite` until everything is written; on failure, the failing offset.
fn write_all_at(file: &File, mut data: &[u8], mut at: u64) -> Result<(), (u64, std::io::Error)> {
    while !data.is_empty() {
        match file.write_at(data, at) {
            Ok(0) => {
                return Err((
                    at,
                    std::io::Error::new(
                        std::io::ErrorKind::WriteZero,
                        "the target accepted no more bytes",
                    ),
                ))
            }
            Ok(n) => {
                data = &data[n..];
                at += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err((at, e)),
        }
    }
    Ok(())
}

pub(super) fn compare(
    plan: &Plan,
    source: &File,
    target: &Target,
    chunk_size: usize,
    cancel: &Cancel,
    observer: &dyn Observer,
) -> Result<CompareReport, Error> {
    let source_len = file_len(source).map_err(|e| Error::ReadSource {
        offset: 0,
        source: e,
    })?;
    plan.check_source(source_len)?;
    compare_with(
        plan,
        &SourceReader::Plain(source),
        target,
        chunk_size,
        cancel,
        observer,
    )
}

/// [`compare`] with the plan's source bytes read from `source`.
pub(super) fn compare_with(
    plan: &Plan,
    source: &SourceReader,
    target: &Target,
    chunk_size: usize,
    cancel: &Cancel,
    observer: &dyn Observer,
) -> Result<CompareReport, Error> {
    let stop = Stop {
        cancel,
        state: TargetState::Untouched,
    };
    let direct_io = verify::check(
        plan,
        source,
        target,
        chunk_size,
        Expected::Plan,
        &stop,
        observer,
    )?;
    Ok(CompareReport {
        bytes_compared: plan.bytes_to_write(),
        direct_io,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Events(Mutex<Vec<Event>>);

    impl Observer for Events {
        fn event(&self, e: &Event) {
            self.0.lock().unwrap().push(e.clone());
        }
    }

    fn chunk(range: Range<u64>, byte: u8) -> Chunk {
        let len = (range.end - range.start) as usize;
        let mut buf = AlignedBuf::new(len, 4096);
        buf.get_mut(len).fill(byte);
        Chunk {
            op: Op {
                range,
                direct: true,
            },
            buf,
            source_parts: Vec::new(),
        }
    }

    /// A direct write the filesystem refuses with EINVAL (here: an
    /// unaligned one on a filesystem that checks) is written again through
    /// the page cache once the writes in flight are done, with a warning;
    /// the writes around it stay direct until then.
    #[test]
    fn refused_direct_writes_are_written_again_buffered() {
        const TEST: &str = "refused_direct_writes_are_written_again_buffered";
        // The fallback is only reached on a filesystem that refuses an
        // unaligned direct write (ext4 and xfs do; tmpfs may not): try the
        // temporary directory, then the build directory.
        let candidates = [
            std::env::temp_dir(),
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target"),
        ];
        let refusing = candidates.iter().find_map(|base| {
            let dir = tempfile::tempdir_in(base).ok()?;
            let path = dir.path().join("target");
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)
                .ok()?;
            let probe = set_direct(&file, true).and_then(|()| file.write_at(&[0u8; 100], 1));
            match probe {
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Some((dir, path, file)),
                _ => None,
            }
        });
        let Some((_dir, path, file)) = refusing else {
            crate::test_support::skip(
                TEST,
                &format!("none of {candidates:?} refuses unaligned direct writes"),
            );
            return;
        };
        let ranges = [0..8192, 8192..8292, 8292..16384, 16384..20480];
        let (in_tx, in_rx) = sync_channel(ranges.len());
        for (i, r) in ranges.iter().enumerate() {
            in_tx.send(Ok(chunk(r.clone(), i as u8 + 1))).unwrap();
        }
        drop(in_tx);
        let (free_tx, free_rx) = sync_channel(ranges.len());
        let events = Events::default();
        let direct = write_stage(
            &file,
            true,
            Some(20480),
            None,
            &Cancel::default(),
            in_rx,
            free_tx,
            &events,
        )
        .unwrap();
        assert!(!direct, "direct I/O is reported as given up");
        assert_eq!(
            free_rx.try_iter().count(),
            ranges.len(),
            "every buffer comes back"
        );
        let data = std::fs::read(&path).unwrap();
        assert_eq!(data.len(), 20480);
        for (i, r) in ranges.iter().enumerate() {
            let bytes = &data[r.start as usize..r.end as usize];
            assert!(bytes.iter().all(|&b| b == i as u8 + 1), "range {r:?}");
        }
        let events = events.0.into_inner().unwrap();
        let warnings = events
            .iter()
            .filter(|e| matches!(e, Event::Warning(w) if w.contains("direct write refused")))
            .count();
        assert_eq!(warnings, 1, "{events:?}");
        let last = events.iter().rev().find_map(|e| match e {
            Event::Progress { done, .. } => Some(*done),
            _ => None,
        });
        assert_eq!(last, Some(20480));
    }
}
