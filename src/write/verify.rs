//! Reading the target back and comparing it with the plan.
//!
//! A thread reads the target ahead of the comparison (with `O_DIRECT`, so the
//! answer comes from the medium and not from the page cache that the write
//! just went through). After a write, the calling thread checks each range
//! against the checksum the write pass took of it ([`Expected::Sums`]); for
//! `compare`, where nothing was written, a second thread produces the
//! expected bytes from the plan ([`Expected::Plan`]). Either way a difference
//! is reported as the first byte that differs.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use super::align::{check_ops, AlignedBuf, Alignment, CheckOp};
use super::engine::{file_len, set_direct};
use super::fill::{fill, SourceReader};
use super::sums::{checksum, RangeSums};
use super::{Error, Target};
use crate::cancel::{Cancel, TargetState};
use crate::events::{Event, Observer, Phase};
use crate::plan::Plan;

/// Reads of the target in flight at once, each by its own thread taking
/// every `READS_IN_FLIGHT`-th range: with one, the device idles while the
/// reader wakes up and issues the next read (as with writes, see
/// `engine::WRITES_IN_FLIGHT`).
const READS_IN_FLIGHT: usize = 2;
/// Buffers per target reader: one being read, one waiting to be compared.
const BUFFERS_PER_READER: usize = 2;
/// Buffers for the expected bytes (`compare`): one in use, one queued, one
/// spare.
const EXPECTED_BUFFERS: usize = 3;

/// What the target's bytes are compared with.
pub(super) enum Expected<'a> {
    /// The plan's bytes, produced again from the source.
    Plan,
    /// The checksums the write pass took of the ranges [`check_ops`] cuts
    /// (with the same chunk size).
    Sums(&'a RangeSums),
}

/// When the read-back stops early: the job's token, and what a stop leaves
/// on the target (a write's read-back: written but not verified; a
/// comparison: untouched).
pub(super) struct Stop<'a> {
    pub cancel: &'a Cancel,
    pub state: TargetState,
}

impl Stop<'_> {
    /// [`Error::Cancelled`] once the token is cancelled.
    fn check(&self) -> Result<(), Error> {
        if self.cancel.is_cancelled() {
            Err(Error::Cancelled { target: self.state })
        } else {
            Ok(())
        }
    }
}

/// Compares the target with the plan; `Ok(true)` when the target was read
/// with `O_DIRECT`. Stops between chunks once `stop`'s token is cancelled.
pub(super) fn check(
    plan: &Plan,
    source: &SourceReader,
    target: &Target,
    chunk_size: usize,
    expected: Expected,
    stop: &Stop,
    observer: &dyn Observer,
) -> Result<bool, Error> {
    let target_len =
        file_len(target.file_handle()).map_err(|source| Error::ReadTarget { offset: 0, source })?;
    if plan.end() > target_len {
        // Compare what is there first: a differing byte is the better report.
        // (The checksums cover the whole plan's ranges, not the prefix's.)
        check_inner(
            &plan_prefix(plan, target_len),
            source,
            target,
            target_len,
            chunk_size,
            Expected::Plan,
            stop,
            observer,
        )?;
        return Err(Error::TargetShort {
            at: target_len,
            needed: plan.end(),
        });
    }
    let direct = check_inner(
        plan, source, target, target_len, chunk_size, expected, stop, observer,
    )?;
    observer.event(&Event::PhaseFinished {
        phase: Phase::Verify,
    });
    Ok(direct)
}

/// The part of `plan` that lies below target byte `end`.
fn plan_prefix(plan: &Plan, end: u64) -> Plan {
    let mut b = Plan::builder();
    for p in plan.pieces() {
        if p.at >= end {
            break;
        }
        let e = p.extent.slice(0, end - p.at);
        b.push(p.at, e).expect("a prefix of a valid plan is valid");
    }
    b.build()
}

#[allow(clippy::too_many_arguments)]
fn check_inner(
    plan: &Plan,
    source: &SourceReader,
    target: &Target,
    target_len: u64,
    chunk_size: usize,
    expected: Expected,
    stop: &Stop,
    observer: &dyn Observer,
) -> Result<bool, Error> {
    let file = target.file_handle();
    let align = Alignment::of(file, target.is_block_device());
    let direct = match set_direct(file, true) {
        Ok(()) => true,
        Err(e) => {
            observer.event(&Event::Warning(format!(
                "{} refused O_DIRECT ({e}); reading back through the page cache after dropping it",
                target.path().display()
            )));
            // Drop clean cached pages so the read-back comes from storage where
            // the kernel can (on tmpfs the page cache *is* the storage).
            let _ = rustix::fs::fadvise(file, 0, None, rustix::fs::Advice::DontNeed);
            false
        }
    };
    let chunk = align.chunk(chunk_size);
    let ops = check_ops(plan, align, chunk, direct);
    if let Expected::Sums(sums) = &expected {
        if sums.len() != ops.len() {
            return Err(Error::Internal(format!(
                "{} write checksums for {} read-back ranges",
                sums.len(),
                ops.len()
            )));
        }
    }
    let total = plan.bytes_to_write();
    observer.event(&Event::PhaseStarted {
        phase: Phase::Verify,
        total,
    });

    let ctx = Compare {
        plan,
        source,
        ops: &ops,
        total,
        stop,
        observer,
    };
    let result = std::thread::scope(|s| {
        let ops = &ops;
        let mut lanes = Vec::new();
        for lane in 0..READS_IN_FLIGHT.min(ops.len()) {
            let (free_tx, free_rx) = AlignedBuf::pool(BUFFERS_PER_READER, chunk, align.memory);
            let (read_tx, read_rx) = sync_channel(1);
            let mine = ops.iter().skip(lane).step_by(READS_IN_FLIGHT);
            let sum = matches!(expected, Expected::Sums(_));
            s.spawn(move || read_target(file, target_len, mine, sum, free_rx, read_tx));
            lanes.push(Lane {
                free: free_tx,
                read: read_rx,
            });
        }
        let reads = TargetReads { lanes };
        match expected {
            Expected::Sums(sums) => ctx.against_sums(sums, &reads),
            Expected::Plan => {
                let (efree_tx, efree_rx) =
                    AlignedBuf::pool(EXPECTED_BUFFERS.min(ops.len()), chunk, align.memory);
                let (eread_tx, eread_rx) = sync_channel(1);
                s.spawn(move || read_expected(plan, source, ops, efree_rx, eread_tx));
                ctx.against_plan(&reads, eread_rx, efree_tx)
            }
        }
    });
    result?;
    Ok(direct)
}

/// One range as read from the target.
struct Read {
    buf: AlignedBuf,
    /// Bytes read into `buf` (fewer than asked where the target ended).
    got: usize,
    /// The checksum of the checked part, taken by the reader (so two
    /// readers checksum in parallel) when the read-back checks sums.
    sum: Option<u128>,
}

type TargetMsg = Result<Read, Error>;
type ExpectedMsg = Result<AlignedBuf, Error>;

/// One target reader's channels: buffers going to it, reads coming back.
struct Lane {
    free: SyncSender<AlignedBuf>,
    read: Receiver<TargetMsg>,
}

/// The target readers; range `i` is read by lane `i % lanes`.
struct TargetReads {
    lanes: Vec<Lane>,
}

impl TargetReads {
    /// The `i`-th range as read.
    fn take(&self, i: usize) -> Result<Read, Error> {
        recv(&self.lanes[i % self.lanes.len()].read)?
    }

    /// Hands the `i`-th range's buffer back to its reader.
    fn recycle(&self, i: usize, buf: AlignedBuf) {
        let _ = self.lanes[i % self.lanes.len()].free.send(buf);
    }
}

/// Reads `ops` (one lane's share of the ranges) in order, checksumming each
/// range's checked part when `sum`.
fn read_target<'o>(
    file: &File,
    end: u64,
    ops: impl Iterator<Item = &'o CheckOp>,
    sum: bool,
    free: Receiver<AlignedBuf>,
    out: SyncSender<TargetMsg>,
) {
    for op in ops {
        let Ok(mut buf) = free.recv() else { return };
        let len = (op.read.end - op.read.start) as usize;
        let msg = read_full(file, buf.get_mut(len), op.read.start, end).map(|got| Read {
            sum: sum.then(|| checksum(checked_part(op, &buf, got))),
            buf,
            got,
        });
        let failed = msg.is_err();
        if out.send(msg).is_err() || failed {
            return;
        }
    }
}

/// Reads until `dst` is full or the target ends (at `end`, or earlier when a
/// read returns nothing); returns the bytes read. Stopping at `end` matters
/// with `O_DIRECT`: after a short read at a file's end the next offset is
/// unaligned and the kernel would refuse it.
fn read_full(file: &File, dst: &mut [u8], at: u64, end: u64) -> Result<usize, Error> {
    let mut done = 0;
    while done < dst.len() && at + (done as u64) < end {
        match file.read_at(&mut dst[done..], at + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(Error::ReadTarget {
                    offset: at + done as u64,
                    source,
                })
            }
        }
    }
    Ok(done)
}

fn read_expected(
    plan: &Plan,
    source: &SourceReader,
    ops: &[CheckOp],
    free: Receiver<AlignedBuf>,
    out: SyncSender<ExpectedMsg>,
) {
    for op in ops {
        let Ok(mut buf) = free.recv() else { return };
        let len = (op.check.end - op.check.start) as usize;
        let msg = fill(plan, source, op.check.start, buf.get_mut(len)).map(|_| buf);
        let failed = msg.is_err();
        if out.send(msg).is_err() || failed {
            return;
        }
    }
}

/// The comparing end of the read-back (the calling thread).
struct Compare<'a> {
    plan: &'a Plan,
    source: &'a SourceReader<'a>,
    ops: &'a [CheckOp],
    total: u64,
    /// Checked before each range; the readers ahead stop when their
    /// channels close.
    stop: &'a Stop<'a>,
    observer: &'a dyn Observer,
}

impl Compare<'_> {
    /// Checks each range read from the target against the write pass's
    /// checksum of it.
    fn against_sums(&self, sums: &RangeSums, target: &TargetReads) -> Result<(), Error> {
        let mut done = 0u64;
        for (i, op) in self.ops.iter().enumerate() {
            self.stop.check()?;
            let read = target.take(i)?;
            let t = checked_part(op, &read.buf, read.got);
            if t.len() as u64 != op.check.end - op.check.start || sums.get(i) != read.sum {
                return Err(self.locate(op, t));
            }
            done = self.progress(done, op);
            target.recycle(i, read.buf);
        }
        Ok(())
    }

    /// Compares each range read from the target with the plan's bytes there.
    fn against_plan(
        &self,
        target: &TargetReads,
        expected: Receiver<ExpectedMsg>,
        efree: SyncSender<AlignedBuf>,
    ) -> Result<(), Error> {
        let mut done = 0u64;
        for (i, op) in self.ops.iter().enumerate() {
            self.stop.check()?;
            let read = target.take(i)?;
            let ebuf = recv(&expected)??;
            let t = checked_part(op, &read.buf, read.got);
            let check_len = (op.check.end - op.check.start) as usize;
            differs(op, t, &ebuf.get(check_len)[..t.len()])?;
            if t.len() < check_len {
                return Err(self.short(op, t));
            }
            done = self.progress(done, op);
            target.recycle(i, read.buf);
            let _ = efree.send(ebuf);
        }
        Ok(())
    }

    /// Why the target's bytes `t` of `op` fail their checksum: the first byte
    /// that differs from the plan, else the target's early end, else (the
    /// target matches the image as it is now, but not what was written) an
    /// image that changed during the write.
    fn locate(&self, op: &CheckOp, t: &[u8]) -> Error {
        if let SourceReader::Streamed = self.source {
            // Nothing to compare with: the range, or the target's early end.
            if (t.len() as u64) < op.check.end - op.check.start {
                return self.short(op, t);
            }
            return Error::StreamMismatch {
                start: op.check.start,
                end: op.check.end,
            };
        }
        let mut e = vec![0u8; t.len()];
        if let Err(err) = fill(self.plan, self.source, op.check.start, &mut e) {
            return err;
        }
        if let Err(err) = differs(op, t, &e) {
            return err;
        }
        if (t.len() as u64) < op.check.end - op.check.start {
            return self.short(op, t);
        }
        Error::SourceChangedDuringWrite {
            start: op.check.start,
            end: op.check.end,
        }
    }

    /// [`Error::TargetShort`] for a target that ended after `t` bytes of `op`.
    fn short(&self, op: &CheckOp, t: &[u8]) -> Error {
        Error::TargetShort {
            at: op.check.start + t.len() as u64,
            needed: self.plan.end(),
        }
    }

    fn progress(&self, done: u64, op: &CheckOp) -> u64 {
        let done = done + (op.check.end - op.check.start);
        self.observer.event(&Event::Progress {
            phase: Phase::Verify,
            done,
            total: self.total,
        });
        done
    }
}

/// The part of a target buffer (`got` bytes read for `op.read`) that `op`
/// checks; shorter than the check range when the target ended early.
fn checked_part<'b>(op: &CheckOp, tbuf: &'b AlignedBuf, got: usize) -> &'b [u8] {
    let check_len = (op.check.end - op.check.start) as usize;
    let skip = ((op.check.start - op.read.start) as usize).min(got);
    let have = (got - skip).min(check_len);
    &tbuf.get(got)[skip..skip + have]
}

/// [`Error::Mismatch`] at the first byte where the target's `t` and the
/// expected `e` (of equal length, starting at `op.check.start`) differ.
fn differs(op: &CheckOp, t: &[u8], e: &[u8]) -> Result<(), Error> {
    if t == e {
        return Ok(());
    }
    let i = t.iter().zip(e).position(|(a, b)| a != b).unwrap_or(0);
    Err(Error::Mismatch {
        offset: op.check.start + i as u64,
    })
}

fn recv<T>(rx: &Receiver<T>) -> Result<T, Error> {
    rx.recv()
        .map_err(|_| Error::Internal("a read-back thread stopped early".into()))
}
