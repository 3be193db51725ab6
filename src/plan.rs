//! The image plan: what goes onto the target, as an ordered list of extents.
//!
//! Every mode bootstick knows (a raw copy, with a tail wipe on devices; the
//! built GPT/MBR + FAT32 layout of a non-hybrid ISO, split WIM parts included,
//! `layout::from_iso`) compiles to a [`Plan`]. The writer, the verifier,
//! progress reporting and file output only ever see a plan, so a new mode is a
//! new plan builder and never a change to the write engine.
//!
//! A plan is a sequence of [`Placed`] extents at strictly increasing,
//! non-overlapping target offsets. Gaps between extents are left untouched on
//! the target. The only way to make a plan is a [`PlanBuilder`], which rejects
//! overlaps, so a plan that overlaps itself cannot exist.

use std::sync::Arc;

/// One mebibyte, the unit of partition alignment and of the tail wipe.
pub const MIB: u64 = 1 << 20;

/// How much of a device's end is cleared when the image is smaller than the
/// device: where a stale backup GPT (the last 33 sectors) and most filesystem
/// backup superblocks live.
pub const TAIL_WIPE: u64 = MIB;

/// Where the bytes of one extent come from.
#[derive(Clone, PartialEq, Eq)]
pub enum Extent {
    /// Bytes built in memory: partition tables, filesystem metadata, headers.
    Bytes(Arc<[u8]>),
    /// A run of zero bytes.
    Zeros { len: u64 },
    /// `len` bytes of the plan's source image, starting at `offset`.
    Source { offset: u64, len: u64 },
}

impl Extent {
    /// An in-memory extent holding `bytes`.
    pub fn bytes(bytes: impl Into<Arc<[u8]>>) -> Self {
        Extent::Bytes(bytes.into())
    }

    /// How many bytes this extent puts on the target.
    pub fn len(&self) -> u64 {
        match self {
            Extent::Bytes(b) => b.len() as u64,
            Extent::Zeros { len } | Extent::Source { len, .. } => *len,
        }
    }

    /// True for an extent that writes nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The part of this extent that starts `skip` bytes in and is at most
    /// `max` bytes long. Used to cut extents into write-sized chunks.
    pub fn slice(&self, skip: u64, max: u64) -> Extent {
        let len = self.len();
        let start = skip.min(len);
        let take = (len - start).min(max);
        match self {
            Extent::Bytes(b) => {
                let s = start as usize;
                Extent::Bytes(Arc::from(&b[s..s + take as usize]))
            }
            Extent::Zeros { .. } => Extent::Zeros { len: take },
            Extent::Source { offset, .. } => Extent::Source {
                offset: offset + start,
                len: take,
            },
        }
    }
}

impl std::fmt::Debug for Extent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Extent::Bytes(b) => write!(f, "Bytes({} bytes)", b.len()),
            Extent::Zeros { len } => write!(f, "Zeros({len})"),
            Extent::Source { offset, len } => write!(f, "Source({offset}+{len})"),
        }
    }
}

/// An extent at its place on the target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placed {
    /// Byte offset on the target where the extent starts.
    pub at: u64,
    pub extent: Extent,
}

impl Placed {
    /// The first target byte after this extent.
    pub fn end(&self) -> u64 {
        self.at + self.extent.len()
    }
}

/// Why a plan could not be made or does not fit.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error(
        "plan extent at byte {at} overlaps the previous extent, which ends at byte {prev_end}"
    )]
    Overlap { at: u64, prev_end: u64 },
    #[error("plan extent at byte {at} of {len} bytes runs past the largest possible offset")]
    Overflow { at: u64, len: u64 },
    #[error(
        "the image needs {needed} bytes but the target holds only {available} bytes; use a larger stick"
    )]
    TooLarge { needed: u64, available: u64 },
    #[error(
        "the plan reads source bytes up to {needed} but the source is only {available} bytes long (truncated image?)"
    )]
    SourceTooShort { needed: u64, available: u64 },
}

/// An ordered, non-overlapping list of extents to put on a target.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pieces: Vec<Placed>,
}

impl Plan {
    /// Start building a plan.
    pub fn builder() -> PlanBuilder {
        PlanBuilder::default()
    }

    /// The plan of a raw copy: the whole source, byte for byte, from offset 0.
    pub fn raw(source_len: u64) -> Plan {
        let mut b = Plan::builder();
        b.push(
            0,
            Extent::Source {
                offset: 0,
                len: source_len,
            },
        )
        .expect("a single extent at 0 cannot overlap");
        b.build()
    }

    /// The extents in target order.
    pub fn pieces(&self) -> &[Placed] {
        &self.pieces
    }

    /// The first target byte after the last extent: the size the target must
    /// have at least.
    pub fn end(&self) -> u64 {
        self.pieces.last().map_or(0, Placed::end)
    }

    /// How many bytes the plan writes (gaps are not written).
    pub fn bytes_to_write(&self) -> u64 {
        self.pieces.iter().map(|p| p.extent.len()).sum()
    }

    /// The highest source byte offset (exclusive) the plan reads.
    pub fn source_end(&self) -> u64 {
        self.pieces
            .iter()
            .filter_map(|p| match p.extent {
                Extent::Source { offset, len } => Some(offset + len),
                _ => None,
            })
            .max()
            .unwrap_or(0)
    }

    /// Checks that every source range lies inside a source of `source_len` bytes.
    pub fn check_source(&self, source_len: u64) -> Result<(), PlanError> {
        let needed = self.source_end();
        if needed > source_len {
            return Err(PlanError::SourceTooShort {
                needed,
                available: source_len,
            });
        }
        Ok(())
    }

    /// Checks that the plan fits on a target of `target_len` bytes.
    pub fn check_fits(&self, target_len: u64) -> Result<(), PlanError> {
        if self.end() > target_len {
            return Err(PlanError::TooLarge {
                needed: self.end(),
                available: target_len,
            });
        }
        Ok(())
    }

    /// This plan, plus zeros over the target's last [`TAIL_WIPE`] bytes that the
    /// plan does not itself cover, so no stale backup GPT or filesystem
    /// signature survives at the end of a larger device. Fails when the plan
    /// does not fit on the target.
    pub fn with_tail_wipe(mut self, target_len: u64) -> Result<Plan, PlanError> {
        self.check_fits(target_len)?;
        let start = self.end().max(target_len.saturating_sub(TAIL_WIPE));
        if start < target_len {
            self.pieces.push(Placed {
                at: start,
                extent: Extent::Zeros {
                    len: target_len - start,
                },
            });
        }
        Ok(self)
    }
}

/// Builds a [`Plan`], refusing extents that overlap or go backwards.
#[derive(Debug, Default)]
pub struct PlanBuilder {
    pieces: Vec<Placed>,
}

impl PlanBuilder {
    /// The first free target byte: where [`PlanBuilder::append`] puts the next extent.
    pub fn end(&self) -> u64 {
        self.pieces.last().map_or(0, Placed::end)
    }

    /// Places `extent` at target offset `at`, which must not be before the end
    /// of the previous extent. Empty extents are dropped. Adjacent zero runs and
    /// contiguous source ranges are merged so the writer sees long extents.
    pub fn push(&mut self, at: u64, extent: Extent) -> Result<&mut Self, PlanError> {
        let len = extent.len();
        if at.checked_add(len).is_none() {
            return Err(PlanError::Overflow { at, len });
        }
        let prev_end = self.end();
        if at < prev_end {
            return Err(PlanError::Overlap { at, prev_end });
        }
        if len == 0 {
            return Ok(self);
        }
        if let Some(last) = self.pieces.last_mut() {
            if last.end() == at {
                match (&mut last.extent, &extent) {
                    (Extent::Zeros { len: a }, Extent::Zeros { len: b }) => {
                        *a += b;
                        return Ok(self);
                    }
                    (
                        Extent::Source {
                            offset: o1,
                            len: l1,
                        },
                        Extent::Source {
                            offset: o2,
                            len: l2,
                        },
                    ) if *o1 + *l1 == *o2 => {
                        *l1 += l2;
                        return Ok(self);
                    }
                    _ => {}
                }
            }
        }
        self.pieces.push(Placed { at, extent });
        Ok(self)
    }

    /// Places `extent` right after the previous one.
    pub fn append(&mut self, extent: Extent) -> Result<&mut Self, PlanError> {
        let at = self.end();
        self.push(at, extent)
    }

    /// The finished plan.
    pub fn build(self) -> Plan {
        Plan {
            pieces: self.pieces,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn raw_plan_is_one_source_extent() {
        let p = Plan::raw(12345);
        assert_eq!(p.pieces().len(), 1);
        assert_eq!(p.end(), 12345);
        assert_eq!(p.bytes_to_write(), 12345);
        assert_eq!(p.source_end(), 12345);
    }

    #[test]
    fn empty_raw_plan_writes_nothing() {
        let p = Plan::raw(0);
        assert!(p.pieces().is_empty());
        assert_eq!(p.end(), 0);
    }

    #[test]
    fn overlap_is_refused() {
        let mut b = Plan::builder();
        b.push(0, Extent::Zeros { len: 10 }).unwrap();
        assert_eq!(
            b.push(9, Extent::Zeros { len: 1 }).unwrap_err(),
            PlanError::Overlap {
                at: 9,
                prev_end: 10
            }
        );
    }

    #[test]
    fn overflow_is_refused() {
        let mut b = Plan::builder();
        assert!(matches!(
            b.push(u64::MAX, Extent::Zeros { len: 2 }),
            Err(PlanError::Overflow { .. })
        ));
    }

    #[test]
    fn adjacent_runs_merge_but_gaps_do_not() {
        let mut b = Plan::builder();
        b.append(Extent::Zeros { len: 5 }).unwrap();
        b.append(Extent::Zeros { len: 5 }).unwrap();
        b.append(Extent::Source {
            offset: 100,
            len: 10,
        })
        .unwrap();
        b.append(Extent::Source {
            offset: 110,
            len: 10,
        })
        .unwrap();
        b.append(Extent::Source { offset: 0, len: 10 }).unwrap();
        b.push(100, Extent::Zeros { len: 1 }).unwrap();
        let p = b.build();
        assert_eq!(
            p.pieces(),
            &[
                Placed {
                    at: 0,
                    extent: Extent::Zeros { len: 10 }
                },
                Placed {
                    at: 10,
                    extent: Extent::Source {
                        offset: 100,
                        len: 20
                    }
                },
                Placed {
                    at: 30,
                    extent: Extent::Source { offset: 0, len: 10 }
                },
                Placed {
                    at: 100,
                    extent: Extent::Zeros { len: 1 }
                },
            ]
        );
        assert_eq!(p.bytes_to_write(), 41);
        assert_eq!(p.end(), 101);
    }

    #[test]
    fn tail_wipe_clears_last_mib_of_a_larger_device() {
        let p = Plan::raw(3 * MIB).with_tail_wipe(100 * MIB).unwrap();
        assert_eq!(
            p.pieces()[1],
            Placed {
                at: 99 * MIB,
                extent: Extent::Zeros { len: MIB }
            }
        );
    }

    #[test]
    fn tail_wipe_never_overwrites_the_plan() {
        let p = Plan::raw(10 * MIB - 4096).with_tail_wipe(10 * MIB).unwrap();
        assert_eq!(
            p.pieces()[1],
            Placed {
                at: 10 * MIB - 4096,
                extent: Extent::Zeros { len: 4096 }
            }
        );
        let exact = Plan::raw(10 * MIB).with_tail_wipe(10 * MIB).unwrap();
        assert_eq!(exact.pieces().len(), 1);
    }

    #[test]
    fn too_large_for_target() {
        assert_eq!(
            Plan::raw(11).with_tail_wipe(10).unwrap_err(),
            PlanError::TooLarge {
                needed: 11,
                available: 10
            }
        );
    }

    #[test]
    fn truncated_source_is_caught() {
        assert_eq!(
            Plan::raw(100).check_source(99).unwrap_err(),
            PlanError::SourceTooShort {
                needed: 100,
                available: 99
            }
        );
    }

    proptest! {
        /// Slicing an extent into chunks and gluing them back gives the extent.
        #[test]
        fn slices_cover_the_extent(len in 0u64..5000, chunk in 1u64..700, kind in 0u8..3) {
            let e = match kind {
                0 => Extent::bytes((0..len).map(|i| i as u8).collect::<Vec<_>>()),
                1 => Extent::Zeros { len },
                _ => Extent::Source { offset: 77, len },
            };
            let mut b = Plan::builder();
            let mut skip = 0;
            while skip < len {
                let s = e.slice(skip, chunk);
                prop_assert!(s.len() <= chunk && !s.is_empty());
                skip += s.len();
                b.append(s).unwrap();
            }
            prop_assert_eq!(skip, len);
            let p = b.build();
            prop_assert_eq!(p.bytes_to_write(), len);
            if kind != 0 && len > 0 {
                // Zeros and source ranges merge back into exactly one extent.
                prop_assert_eq!(p.pieces().len(), 1);
                prop_assert_eq!(&p.pieces()[0].extent, &e);
            }
            if kind == 0 {
                // In-memory bytes stay separate pieces; glued back in target
                // order, their contents are the original bytes.
                let mut glued = Vec::new();
                for piece in p.pieces() {
                    prop_assert_eq!(piece.at, glued.len() as u64);
                    match &piece.extent {
                        Extent::Bytes(b) => glued.extend_from_slice(b),
                        other => prop_assert!(false, "a byte slice became {:?}", other),
                    }
                }
                let want: Vec<u8> = (0..len).map(|i| i as u8).collect();
                prop_assert_eq!(glued, want);
            }
        }

        /// The tail wipe never overlaps the plan and always ends at the target's end.
        #[test]
        fn tail_wipe_is_disjoint(image in 0u64..(64 * MIB), extra in 0u64..(64 * MIB)) {
            let target = image + extra;
            let p = Plan::raw(image).with_tail_wipe(target).unwrap();
            prop_assert_eq!(p.end(), target);
            for w in p.pieces().windows(2) {
                prop_assert!(w[0].end() <= w[1].at);
            }
        }
    }
}
