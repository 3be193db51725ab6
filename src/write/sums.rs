//! Checksums of what the write pass sent, one per read-back range, so the
//! read-back can check the target without reading the source a second time.
//!
//! # Why
//!
//! Comparing the target with the source byte for byte means reading the
//! source again (from the page cache at best, from a slow disk or network
//! share at worst) while the target is read: on a fast device that doubles
//! the read-back's I/O and memory traffic (`docs/performance.md`). The write
//! pass already holds every byte it sends, so it checksums them as they go
//! out, cut at the same ranges the read-back checks ([`check_ops`]), and the
//! read-back then needs only the target.
//!
//! # Why XXH3-128
//!
//! The checksum guards against a medium that returns other bytes than it was
//! given (a failing or fake-capacity stick, another writer), not against an
//! adversary: a device that wanted to lie could return the right bytes on
//! read anyway. XXH3 runs at memory speed, and with 128 bits the chance that
//! a corrupted 4 MiB range keeps its checksum is 2⁻¹²⁸. Where a checksum
//! differs, the read-back produces the expected bytes of that one range from
//! the plan and reports the exact first differing byte, as before.
//!
//! Memory: 16 bytes per range (per 4 MiB chunk), 4 KiB per GiB of image.
//!
//! [`check_ops`]: super::align::check_ops

use std::ops::Range;

use xxhash_rust::xxh3::{xxh3_128, Xxh3Default};

/// One checksum of a range's bytes.
pub(super) fn checksum(data: &[u8]) -> u128 {
    xxh3_128(data)
}

/// The checksums of a plan's check ranges, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct RangeSums {
    sums: Vec<u128>,
    /// The ranges a [`Summer::grid`] found, to be checked against the
    /// plan's with [`RangeSums::check_ranges`].
    grid: Option<Vec<Range<u64>>>,
}

impl RangeSums {
    /// The checksum of the `i`-th check range.
    pub(super) fn get(&self, i: usize) -> Option<u128> {
        self.sums.get(i).copied()
    }

    pub(super) fn len(&self) -> usize {
        self.sums.len()
    }

    /// For the sums of a [`Summer::grid`]: why the ranges it found are not
    /// `ranges` (the plan's check ranges, known once the stream ended).
    pub(super) fn check_ranges(&self, ranges: &[Range<u64>]) -> Result<(), String> {
        match &self.grid {
            Some(found) if found != ranges => Err(format!(
                "the bytes sent tile {} ranges, the plan has {}",
                found.len(),
                ranges.len()
            )),
            _ => Ok(()),
        }
    }
}

/// Takes the bytes of a plan in target order (as the write pass sends them,
/// in operations cut differently from the check ranges) and checksums each
/// check range.
pub(super) struct Summer {
    ranges: Vec<Range<u64>>,
    /// The range being summed.
    next: usize,
    /// The target byte the next fed byte must be.
    pos: u64,
    state: Xxh3Default,
    sums: Vec<u128>,
    /// Bytes arrived out of order or outside the ranges: a bug, reported by
    /// [`Summer::finish`].
    broken: Option<String>,
    /// Set for [`Summer::grid`]: `ranges` grows as bytes arrive.
    grid: Option<Grid>,
}

/// The state of a [`Summer::grid`].
struct Grid {
    chunk: u64,
    /// Where the range being summed started, if one is open.
    start: Option<u64>,
}

impl Summer {
    /// A summer for `ranges`, which must be sorted, disjoint and not empty.
    pub(super) fn new(ranges: Vec<Range<u64>>) -> Summer {
        Summer {
            pos: ranges.first().map_or(0, |r| r.start),
            sums: Vec::with_capacity(ranges.len()),
            ranges,
            next: 0,
            state: Xxh3Default::new(),
            broken: None,
            grid: None,
        }
    }

    /// A summer whose ranges are not known beforehand (a decoded stream's
    /// length is known only at its end): every maximal run of bytes fed
    /// without a gap is cut at multiples of `chunk`, which is how
    /// [`check_ops`] cuts a plan's runs. [`RangeSums::check_ranges`] then checks
    /// that the ranges it found are the plan's.
    ///
    /// [`check_ops`]: super::align::check_ops
    pub(super) fn grid(chunk: u64) -> Summer {
        Summer {
            ranges: Vec::new(),
            next: 0,
            pos: 0,
            state: Xxh3Default::new(),
            sums: Vec::new(),
            broken: None,
            grid: Some(Grid { chunk, start: None }),
        }
    }

    /// Feeds target bytes `at..at + data.len()`, which must continue where
    /// the previous call stopped, or start the next range.
    pub(super) fn feed(&mut self, mut at: u64, mut data: &[u8]) {
        if let Some(g) = &mut self.grid {
            if data.is_empty() {
                return;
            }
            if g.start.is_some() && at != self.pos {
                // A gap: the run ended.
                let start = g.start.take().expect("checked");
                self.ranges.push(start..self.pos);
                self.sums.push(self.state.digest128());
                self.state.reset();
            }
            while !data.is_empty() {
                let start = *g.start.get_or_insert(at);
                let cell_end = (at - at % g.chunk).saturating_add(g.chunk);
                let take = (cell_end - at).min(data.len() as u64) as usize;
                self.state.update(&data[..take]);
                at += take as u64;
                data = &data[take..];
                self.pos = at;
                if at == cell_end {
                    self.ranges.push(start..at);
                    self.sums.push(self.state.digest128());
                    self.state.reset();
                    g.start = None;
                }
            }
            return;
        }
        while !data.is_empty() && self.broken.is_none() {
            let Some(r) = self.ranges.get(self.next) else {
                self.broken = Some(format!("bytes at {at} lie past the last check range"));
                return;
            };
            if at != self.pos {
                self.broken = Some(format!(
                    "bytes arrived at {at}, expected at {} (in range {}..{})",
                    self.pos, r.start, r.end
                ));
                return;
            }
            let take = (r.end - at).min(data.len() as u64) as usize;
            self.state.update(&data[..take]);
            at += take as u64;
            self.pos = at;
            data = &data[take..];
            if at == r.end {
                self.sums.push(self.state.digest128());
                self.state.reset();
                self.next += 1;
                if let Some(n) = self.ranges.get(self.next) {
                    self.pos = n.start;
                }
            }
        }
    }

    /// The checksums, or why the bytes fed did not tile the ranges.
    pub(super) fn finish(mut self) -> Result<RangeSums, String> {
        if let Some(g) = &mut self.grid {
            if let Some(start) = g.start.take() {
                self.ranges.push(start..self.pos);
                self.sums.push(self.state.digest128());
            }
            return Ok(RangeSums {
                sums: self.sums,
                grid: Some(self.ranges),
            });
        }
        if let Some(why) = self.broken {
            return Err(why);
        }
        if self.next != self.ranges.len() {
            return Err(format!(
                "{} of {} check ranges were fed",
                self.next,
                self.ranges.len()
            ));
        }
        Ok(RangeSums {
            sums: self.sums,
            grid: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    proptest! {
        /// However the write pass cuts the bytes, each range's sum is the
        /// one-shot checksum of that range.
        #[test]
        fn sums_do_not_depend_on_how_bytes_arrive(
            cuts in proptest::collection::vec(1usize..5000, 1..20),
            gap in 0u64..3,
        ) {
            // Two runs of 6000 and 3000 bytes, `gap` bytes apart, checked in
            // ranges cut at 4096-byte cells.
            let bytes = data(9000);
            let runs = [(100u64, 0usize..6000), (6100 + gap, 6000..9000)];
            let mut ranges = Vec::new();
            for (at, r) in &runs {
                let end = at + r.len() as u64;
                let mut x = *at;
                while x < end {
                    let stop = end.min((x / 4096 + 1) * 4096);
                    ranges.push(x..stop);
                    x = stop;
                }
            }
            let mut summer = Summer::new(ranges.clone());
            for (at, r) in &runs {
                let mut off = 0;
                let mut i = 0;
                while off < r.len() {
                    let n = cuts[i % cuts.len()].min(r.len() - off);
                    summer.feed(at + off as u64, &bytes[r.start + off..r.start + off + n]);
                    off += n;
                    i += 1;
                }
            }
            let sums = summer.finish().unwrap();
            prop_assert_eq!(sums.len(), ranges.len());
            for (i, range) in ranges.iter().enumerate() {
                let (at, r) = runs.iter().find(|(at, r)| *at <= range.start && range.end <= at + r.len() as u64).unwrap();
                let from = r.start + (range.start - at) as usize;
                let want = checksum(&bytes[from..from + (range.end - range.start) as usize]);
                prop_assert_eq!(sums.get(i), Some(want));
            }
        }
    }

    proptest! {
        /// A grid summer finds the ranges and sums that a summer given the
        /// plan's check ranges computes, however the bytes arrive.
        #[test]
        fn a_grid_summer_finds_the_plans_ranges(
            cuts in proptest::collection::vec(1usize..5000, 1..20),
            len in 1usize..9000,
            tail in 0u64..3,
        ) {
            use crate::plan::{Extent, Plan};
            use super::super::align::{check_ops, Alignment};
            let bytes = data(len);
            let cap = len as u64 + 2048 * tail;
            let mut b = Plan::builder();
            b.push(0, Extent::Source { offset: 0, len: len as u64 }).unwrap();
            let t0 = (len as u64).max(cap.saturating_sub(3000));
            b.push(t0, Extent::Zeros { len: cap - t0 }).unwrap();
            let plan = b.build();
            let ranges: Vec<_> = check_ops(&plan, Alignment::new(512, 512), 4096, false)
                .into_iter().map(|o| o.check).collect();
            let mut fixed = Summer::new(ranges.clone());
            let mut grid = Summer::grid(4096);
            let mut off = 0;
            let mut i = 0;
            while off < len {
                let n = cuts[i % cuts.len()].min(len - off);
                fixed.feed(off as u64, &bytes[off..off + n]);
                grid.feed(off as u64, &bytes[off..off + n]);
                off += n;
                i += 1;
            }
            let zeros = vec![0u8; (cap - t0) as usize];
            fixed.feed(t0, &zeros);
            grid.feed(t0, &zeros);
            let grid = grid.finish().unwrap();
            prop_assert_eq!(grid.check_ranges(&ranges), Ok(()));
            prop_assert_eq!(grid.sums, fixed.finish().unwrap().sums);
        }
    }

    #[test]
    fn bytes_out_of_order_are_a_bug() {
        let mut s = Summer::new(vec![0..10, 20..30]);
        s.feed(0, &[1; 5]);
        s.feed(6, &[1; 4]);
        assert!(s.finish().unwrap_err().contains("expected at 5"));
    }

    #[test]
    fn missing_ranges_are_a_bug() {
        let mut s = Summer::new(vec![0..10, 20..30]);
        s.feed(0, &[1; 10]);
        assert!(s.finish().unwrap_err().contains("1 of 2"));
        let mut s = Summer::new(std::iter::once(0..10).collect());
        s.feed(0, &[1; 11]);
        assert!(s.finish().unwrap_err().contains("past the last"));
    }
}
