//! Direct-I/O alignment: what the target asks for, aligned buffers, and how a
//! plan is cut into write-sized operations whose direct parts are aligned.
//!
//! O_DIRECT needs the buffer address, the file offset and the length aligned
//! (to `stx_dio_mem_align` / `stx_dio_offset_align` from `statx(STATX_DIOALIGN)`
//! on Linux ≥ 6.1, classically the logical block size). A plan's runs may
//! start or end anywhere, so every run is split into an aligned interior that
//! goes out with O_DIRECT in large chunks and at most two short edges that go
//! through the page cache (the kernel does the read-modify-write of the
//! partial block there, which keeps bytes outside the plan untouched).

use rustix::fs::{AtFlags, StatxFlags};
use std::fs::File;
use std::ops::Range;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use crate::plan::Plan;

/// The smallest alignment ever used: the classic sector size.
const MIN_ALIGN: u64 = 512;
/// The page size every Linux architecture this runs on has at least.
const PAGE: usize = 4096;
/// The alignment assumed when the kernel tells nothing: the page size that
/// every Linux block device accepts.
const FALLBACK_ALIGN: u64 = 4096;

/// The alignment direct I/O on one file needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Alignment {
    /// Offsets and lengths of direct I/O are multiples of this (a power of two).
    pub offset: u64,
    /// Buffer addresses of direct I/O are multiples of this (a power of two).
    pub memory: usize,
}

impl Alignment {
    /// Asks the kernel: `statx(STATX_DIOALIGN)` where it answers, else the
    /// logical block size (`BLKSSZGET`) of a block device, else 4096.
    pub fn of(file: &File, is_block_device: bool) -> Alignment {
        if let Ok(st) = rustix::fs::statx(file, "", AtFlags::EMPTY_PATH, StatxFlags::DIOALIGN) {
            if st.stx_mask & StatxFlags::DIOALIGN.bits() != 0
                && st.stx_dio_offset_align != 0
                && st.stx_dio_mem_align != 0
            {
                return Alignment::new(
                    u64::from(st.stx_dio_offset_align),
                    st.stx_dio_mem_align as usize,
                );
            }
        }
        if is_block_device {
            if let Ok(sz) = rustix::fs::ioctl_blksszget(file) {
                return Alignment::new(u64::from(sz), sz as usize);
            }
        }
        Alignment::new(FALLBACK_ALIGN, FALLBACK_ALIGN as usize)
    }

    /// An alignment of at least 512 bytes, rounded up to powers of two.
    pub fn new(offset: u64, memory: usize) -> Alignment {
        Alignment {
            offset: offset.max(MIN_ALIGN).next_power_of_two(),
            memory: memory.max(MIN_ALIGN as usize).next_power_of_two(),
        }
    }

    /// `x` rounded down to the offset alignment.
    pub fn down(self, x: u64) -> u64 {
        x & !(self.offset - 1)
    }

    /// `x` rounded up to the offset alignment (saturating at the largest
    /// aligned value).
    pub fn up(self, x: u64) -> u64 {
        match x.checked_add(self.offset - 1) {
            Some(v) => self.down(v),
            None => self.down(u64::MAX),
        }
    }

    /// A chunk size of about `wanted` bytes that is a multiple of the offset
    /// alignment and at least one aligned block.
    pub fn chunk(self, wanted: usize) -> usize {
        (self.down(wanted as u64).max(self.offset)) as usize
    }
}

/// A heap buffer whose usable part starts at an address aligned for direct
/// I/O. Allocated once and reused, so memory stays bounded whatever the image
/// size. (Over-allocating and slicing keeps this free of `unsafe`.)
pub struct AlignedBuf {
    raw: Vec<u8>,
    start: usize,
    cap: usize,
}

impl AlignedBuf {
    /// A zeroed buffer of `cap` usable bytes aligned to `align` (a power of
    /// two), and to at least a page: a direct I/O from a buffer that starts
    /// inside a page touches twice the physical pages, and the block layer
    /// carries (and the loop driver passes on) a segment per page piece.
    pub fn new(cap: usize, align: usize) -> AlignedBuf {
        let align = align.max(PAGE);
        let raw = vec![0u8; cap + align];
        let start = raw.as_ptr().align_offset(align);
        assert!(
            start < align,
            "align_offset on a u8 pointer is always exact"
        );
        AlignedBuf { raw, start, cap }
    }

    /// A pool of `n` buffers of `cap` bytes aligned to `align`, as a channel
    /// that holds them all: stages take a buffer from the receiver and give
    /// it back through the sender, so memory stays `n` buffers.
    pub fn pool(
        n: usize,
        cap: usize,
        align: usize,
    ) -> (SyncSender<AlignedBuf>, Receiver<AlignedBuf>) {
        let (tx, rx) = sync_channel(n.max(1));
        for _ in 0..n {
            tx.send(AlignedBuf::new(cap, align))
                .expect("the pool has room for every buffer");
        }
        (tx, rx)
    }

    /// How many bytes the buffer holds.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// The first `len` usable bytes.
    pub fn get(&self, len: usize) -> &[u8] {
        &self.raw[self.start..self.start + len]
    }

    /// The first `len` usable bytes, writable.
    pub fn get_mut(&mut self, len: usize) -> &mut [u8] {
        &mut self.raw[self.start..self.start + len]
    }
}

/// One write operation: a target byte range and whether it goes out with O_DIRECT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    pub range: Range<u64>,
    pub direct: bool,
}

/// The maximal target ranges the plan covers without a gap, in order.
pub fn runs(plan: &Plan) -> Vec<Range<u64>> {
    let mut runs: Vec<Range<u64>> = Vec::new();
    for p in plan.pieces() {
        if p.extent.is_empty() {
            continue;
        }
        match runs.last_mut() {
            Some(last) if last.end == p.at => last.end = p.end(),
            _ => runs.push(p.at..p.end()),
        }
    }
    runs
}

/// Cuts the plan into write operations of at most `chunk` bytes (a multiple
/// of the alignment). With `direct`, every direct operation is aligned in
/// offset and length and the unaligned edges of each run become short
/// buffered operations; without, every operation is buffered.
pub fn write_ops(plan: &Plan, align: Alignment, chunk: usize, direct: bool) -> Vec<Op> {
    let chunk = chunk as u64;
    let mut ops = Vec::new();
    let push_chunks = |ops: &mut Vec<Op>, r: Range<u64>, direct: bool| {
        let mut at = r.start;
        while at < r.end {
            let end = r.end.min(at + chunk);
            ops.push(Op {
                range: at..end,
                direct,
            });
            at = end;
        }
    };
    for run in runs(plan) {
        if !direct {
            push_chunks(&mut ops, run, false);
            continue;
        }
        let head_end = align.up(run.start).min(run.end);
        let tail_start = align.down(run.end).max(head_end);
        push_chunks(&mut ops, run.start..head_end, false);
        push_chunks(&mut ops, head_end..tail_start, true);
        push_chunks(&mut ops, tail_start..run.end, false);
    }
    ops
}

/// One read-back operation: `read` is what is read from the target (aligned
/// when direct), `check` the part of it the plan covers and that is compared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckOp {
    pub read: Range<u64>,
    pub check: Range<u64>,
}

/// Cuts the plan into read-back operations, on a grid of `chunk`-sized cells
/// of the target: each operation checks the part of one run inside one cell.
/// The checked ranges therefore depend only on the plan and `chunk`, not on
/// the alignment or on whether the target takes direct I/O, so the write
/// pass can checksum exactly the ranges the read-back will check
/// ([`super::sums`]). With `direct`, reads are widened to aligned ranges (a
/// block device's size is a multiple of its block size, and a file's read
/// simply stops at its end), so even the unaligned edges are read from the
/// medium and never from the page cache; `chunk` is a multiple of the
/// alignment, so a widened read stays inside its cell.
pub fn check_ops(plan: &Plan, align: Alignment, chunk: usize, direct: bool) -> Vec<CheckOp> {
    let chunk = chunk as u64;
    let mut ops = Vec::new();
    for run in runs(plan) {
        let mut at = run.start;
        while at < run.end {
            let cell_end = (at - at % chunk).saturating_add(chunk);
            let check = at..run.end.min(cell_end);
            let read = if direct {
                align.down(check.start)..align.up(check.end)
            } else {
                check.clone()
            };
            at = check.end;
            ops.push(CheckOp { read, check });
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Extent, MIB};
    use proptest::prelude::*;

    #[test]
    fn alignment_rounds() {
        let a = Alignment::new(512, 512);
        assert_eq!(a.down(1000), 512);
        assert_eq!(a.up(1000), 1024);
        assert_eq!(a.up(1024), 1024);
        assert_eq!(a.up(u64::MAX), u64::MAX - 511);
        assert_eq!(Alignment::new(0, 3), Alignment::new(512, 512));
        assert_eq!(Alignment::new(4096, 600).memory, 1024);
        assert_eq!(a.chunk(4 * MIB as usize + 7), 4 * MIB as usize);
        assert_eq!(Alignment::new(4096, 4096).chunk(100), 4096);
    }

    #[test]
    fn aligned_buf_is_aligned() {
        for align in [512, 4096, 65536] {
            let mut b = AlignedBuf::new(10000, align);
            assert_eq!(b.get(1).as_ptr() as usize % align, 0);
            assert_eq!(b.capacity(), 10000);
            b.get_mut(10000)[9999] = 1;
        }
    }

    #[test]
    fn tiny_image_is_one_buffered_op() {
        let a = Alignment::new(512, 512);
        let ops = write_ops(&Plan::raw(100), a, 4096, true);
        assert_eq!(
            ops,
            vec![Op {
                range: 0..100,
                direct: false
            }]
        );
    }

    #[test]
    fn exactly_one_buffer_is_one_direct_op() {
        let a = Alignment::new(512, 512);
        let ops = write_ops(&Plan::raw(4096), a, 4096, true);
        assert_eq!(
            ops,
            vec![Op {
                range: 0..4096,
                direct: true
            }]
        );
    }

    #[test]
    fn odd_tail_is_buffered() {
        let a = Alignment::new(512, 512);
        let ops = write_ops(&Plan::raw(4096 + 513), a, 4096, true);
        assert_eq!(
            ops,
            vec![
                Op {
                    range: 0..4096,
                    direct: true
                },
                Op {
                    range: 4096..4608,
                    direct: true
                },
                Op {
                    range: 4608..4609,
                    direct: false
                },
            ]
        );
    }

    #[test]
    fn check_ops_widen_edges() {
        let a = Alignment::new(512, 512);
        let mut b = Plan::builder();
        b.push(100, Extent::Zeros { len: 1000 }).unwrap();
        let ops = check_ops(&b.build(), a, 4096, true);
        assert_eq!(
            ops,
            vec![CheckOp {
                read: 0..1536,
                check: 100..1100
            }]
        );
    }

    fn arb_plan() -> impl Strategy<Value = Plan> {
        proptest::collection::vec((0u64..5000, 0u64..9000), 0..6).prop_map(|v| {
            let mut b = Plan::builder();
            for (gap, len) in v {
                let at = b.end() + gap;
                b.push(at, Extent::Zeros { len }).unwrap();
            }
            b.build()
        })
    }

    proptest! {
        /// Write ops tile exactly the plan's coverage, in order, with every
        /// direct op aligned and no op longer than a chunk. (Ordered,
        /// non-overlapping ops that each lie inside a run and add up to the
        /// plan's bytes tile the runs exactly; no separate comparison needed.)
        #[test]
        fn write_ops_tile_the_plan(plan in arb_plan(), shift in 9u32..13, chunks in 1usize..5, direct: bool) {
            let a = Alignment::new(1 << shift, 512);
            let chunk = a.chunk(chunks * 4096);
            let ops = write_ops(&plan, a, chunk, direct);
            let covered: Vec<Range<u64>> = runs(&plan);
            let mut total = 0;
            for w in ops.windows(2) {
                prop_assert!(w[0].range.end <= w[1].range.start);
            }
            for op in &ops {
                prop_assert!(op.range.start < op.range.end);
                prop_assert!(op.range.end - op.range.start <= chunk as u64);
                if op.direct {
                    prop_assert_eq!(op.range.start % a.offset, 0);
                    prop_assert_eq!(op.range.end % a.offset, 0);
                } else if direct {
                    prop_assert!(op.range.end - op.range.start < a.offset);
                }
                prop_assert!(covered.iter().any(|r| r.start <= op.range.start && op.range.end <= r.end));
                total += op.range.end - op.range.start;
            }
            prop_assert_eq!(total, plan.bytes_to_write());
        }

        /// Check ops compare every planned byte exactly once, inside what they read.
        #[test]
        fn check_ops_cover_the_plan(plan in arb_plan(), shift in 9u32..13, direct: bool) {
            let a = Alignment::new(1 << shift, 512);
            let ops = check_ops(&plan, a, a.chunk(8192), direct);
            let mut total = 0;
            for op in &ops {
                prop_assert!(op.read.start <= op.check.start && op.check.end <= op.read.end);
                prop_assert!(op.check.start < op.check.end);
                if direct {
                    prop_assert_eq!(op.read.start % a.offset, 0);
                    prop_assert_eq!(op.read.end % a.offset, 0);
                }
                prop_assert!(op.read.end - op.read.start <= a.chunk(8192) as u64);
                total += op.check.end - op.check.start;
            }
            prop_assert_eq!(total, plan.bytes_to_write());
        }

        /// The checked ranges depend on the plan and the chunk only, so the
        /// write pass can checksum them before the read-back's alignment is
        /// known.
        #[test]
        fn check_ranges_ignore_alignment_and_direct(plan in arb_plan(), shift in 9u32..13, direct: bool) {
            let a = Alignment::new(1 << shift, 512);
            let checks = |a, direct| check_ops(&plan, a, 8192, direct).into_iter().map(|o| o.check).collect::<Vec<_>>();
            prop_assert_eq!(checks(a, direct), checks(Alignment::new(512, 512), false));
        }
    }
}
