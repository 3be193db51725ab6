//! Reading the target back and comparing it with the plan.
//!
//! Two threads run ahead of the comparison: one reads the target (with
//! `O_DIRECT`, so the answer comes from the medium and not from the page
//! cache that the write just went through), one produces the expected bytes
//! from the plan. The calling thread compares and reports the first byte that
//! differs.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use super::align::{check_ops, AlignedBuf, Alignment, CheckOp};
use super::engine::{file_len, set_direct};
use super::fill::fill;
use super::{Error, Target};
use crate::events::{Event, Observer, Phase};
use crate::plan::Plan;

/// Buffers per side (target, expected): one in use, one queued, one spare.
const VERIFY_BUFFERS: usize = 3;

/// Compares the target with the plan; `Ok(true)` when the target was read
/// with `O_DIRECT`.
pub(super) fn check(
    plan: &Plan,
    source: &File,
    target: &Target,
    chunk_size: usize,
    observer: &dyn Observer,
) -> Result<bool, Error> {
    let target_len =
        file_len(target.file_handle()).map_err(|source| Error::ReadTarget { offset: 0, source })?;
    if plan.end() > target_len {
        // Compare what is there first: a differing byte is the better report.
        check_inner(
            &plan_prefix(plan, target_len),
            source,
            target,
            target_len,
            chunk_size,
            observer,
        )?;
        return Err(Error::TargetShort {
            at: target_len,
            needed: plan.end(),
        });
    }
    let direct = check_inner(plan, source, target, target_len, chunk_size, observer)?;
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

fn check_inner(
    plan: &Plan,
    source: &File,
    target: &Target,
    target_len: u64,
    chunk_size: usize,
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
    let total = plan.bytes_to_write();
    observer.event(&Event::PhaseStarted {
        phase: Phase::Verify,
        total,
    });

    let n_bufs = VERIFY_BUFFERS.min(ops.len());
    let (tfree_tx, tfree_rx) = sync_channel::<AlignedBuf>(VERIFY_BUFFERS);
    let (efree_tx, efree_rx) = sync_channel::<AlignedBuf>(VERIFY_BUFFERS);
    for _ in 0..n_bufs {
        tfree_tx
            .send(AlignedBuf::new(chunk, align.memory))
            .expect("room for every buffer");
        efree_tx
            .send(AlignedBuf::new(chunk, align.memory))
            .expect("room for every buffer");
    }
    let (tread_tx, tread_rx) = sync_channel(1);
    let (eread_tx, eread_rx) = sync_channel(1);
    let result = std::thread::scope(|s| {
        let ops = &ops;
        s.spawn(move || read_target(file, target_len, ops, tfree_rx, tread_tx));
        s.spawn(move || read_expected(plan, source, ops, efree_rx, eread_tx));
        compare_stage(ops, total, tread_rx, eread_rx, tfree_tx, efree_tx, observer)
    });
    result?;
    Ok(direct)
}

type TargetMsg = Result<(AlignedBuf, usize), Error>;
type ExpectedMsg = Result<AlignedBuf, Error>;

fn read_target(
    file: &File,
    end: u64,
    ops: &[CheckOp],
    free: Receiver<AlignedBuf>,
    out: SyncSender<TargetMsg>,
) {
    for op in ops {
        let Ok(mut buf) = free.recv() else { return };
        let len = (op.read.end - op.read.start) as usize;
        let msg = read_full(file, buf.get_mut(len), op.read.start, end).map(|n| (buf, n));
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
    source: &File,
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

fn compare_stage(
    ops: &[CheckOp],
    total: u64,
    target: Receiver<TargetMsg>,
    expected: Receiver<ExpectedMsg>,
    tfree: SyncSender<AlignedBuf>,
    efree: SyncSender<AlignedBuf>,
    observer: &dyn Observer,
) -> Result<(), Error> {
    let mut done = 0u64;
    for op in ops {
        let (tbuf, got) = recv(&target)??;
        let ebuf = recv(&expected)??;
        let check_len = (op.check.end - op.check.start) as usize;
        let skip = (op.check.start - op.read.start) as usize;
        let have = got.saturating_sub(skip).min(check_len);
        let t = &tbuf.get(got)[skip.min(got)..skip.min(got) + have];
        let e = &ebuf.get(check_len)[..have];
        if t != e {
            let i = t.iter().zip(e).position(|(a, b)| a != b).unwrap_or(0);
            return Err(Error::Mismatch {
                offset: op.check.start + i as u64,
            });
        }
        if have < check_len {
            return Err(Error::TargetShort {
                at: op.check.start + have as u64,
                needed: op.check.end,
            });
        }
        done += check_len as u64;
        observer.event(&Event::Progress {
            phase: Phase::Verify,
            done,
            total,
        });
        let _ = tfree.send(tbuf);
        let _ = efree.send(ebuf);
    }
    Ok(())
}

fn recv<T>(rx: &Receiver<T>) -> Result<T, Error> {
    rx.recv()
        .map_err(|_| Error::Internal("a read-back thread stopped early".into()))
}
