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
}

impl RangeSums {
    /// The checksum of the `i`-th check range.
    pub(super) fn get(&self, i: usize) -> Option<u128> {
        self.sums.get(i).copied()
    }

    pub(super) fn len(&self) -> usize {
        self.sums.len()
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
        }
    }

    /// Feeds target bytes `at..at + data.len()`, which must continue where
    /// the previous call stopped, or start the next range.
    pub(super) fn feed(&mut self, mut at: u64, mut data: &[u8]) {
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
    pub(super) fn finish(self) -> Result<RangeSums, String> {
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
        Ok(RangeSums { sums: self.sums })
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
