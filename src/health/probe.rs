//! `probe`: finding fake-capacity, failing and slow sticks (docs/health.md).
//!
//! Every 512-byte sector written carries a **tag**: a magic, this run's
//! random nonce and the sector's own byte offset, followed by bytes drawn
//! from a generator seeded by both. Reading a sector back tells four cases
//! apart: its own data (good); data tagged by this run with *another*
//! offset (the stick maps both offsets onto the same cell: it wraps); data
//! not written by this run at all (zeros, old contents: the write was
//! dropped); or its own tag with other bytes (corrupt). I/O errors are
//! recorded per block. The nonce makes stale data from an earlier probe
//! count as dropped, never as good.
//!
//! Order matters on a wrapping stick: two offsets sharing one cell hold
//! whichever was written last. Blocks are written from the highest offset
//! down, so the lowest offset of each alias class (the one inside the real
//! capacity) is written last and keeps its own data, and the highest
//! offset that holds its own data is the real capacity. They are read back
//! in the order they were written, so every block is read after all the
//! other blocks' writes and reads: far more I/O than a stick's cache holds.
//! All I/O uses `O_DIRECT` on a descriptor of its own, so the page cache
//! never answers.
//!
//! Memory stays bounded: one chunk buffer, and failures kept as merged
//! ranges (at most [`MAX_RANGES`]; beyond that a failure widens the range
//! before it, and the report says the ranges are coarse).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cancel::Cancel;
use crate::devices::Guarded;
use crate::events::{Event, Observer, Phase};
use crate::write::align::{AlignedBuf, Alignment};

/// The tag at the start of every sector a probe writes.
const MAGIC: &[u8; 8] = b"BSPROBE1";
/// The unit of tagging and checking.
const SECTOR: u64 = 512;
/// The smallest block tested on its own (a page: every device accepts
/// direct I/O of it).
const MIN_BLOCK: u64 = 4096;
/// Sequential I/O is done in chunks of this size.
const CHUNK: u64 = 4 << 20;
/// Quick mode: the length of each of the three sequential runs (start,
/// middle, end), at most an eighth of the disk.
const RUN: u64 = 16 << 20;
/// Quick mode: blocks sampled, evenly spread over the whole capacity.
const SAMPLES: u64 = 4096;
/// Quick mode: blocks sampled in each refinement round between the highest
/// good block and the lowest failing one.
const REFINE_SAMPLES: u64 = 256;
/// Failures that cover at least this many blocks at the top of the disk,
/// above every good block, are a capacity the stick does not have rather
/// than a few bad sectors at its end.
const MIN_TAIL_BLOCKS: u64 = 32;
/// At most this many failure ranges are kept (memory stays bounded).
pub const MAX_RANGES: usize = 65_536;
/// At most this many bad ranges are listed in a report.
const LISTED_RANGES: usize = 1000;
/// The first and last MiB are zeroed after writing patterns: no partition
/// table or backup GPT of the old contents survives, and no tool takes
/// the patterns for a filesystem.
const CLEAR: u64 = 1 << 20;

/// What a probe does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Some thousand blocks over the whole capacity and three sequential
    /// runs, written and read back: seconds to a minute.
    Quick,
    /// Every block written and read back.
    Full,
    /// Every block read; nothing written.
    ReadOnly,
}

/// How to probe.
#[derive(Clone, Debug)]
pub struct Options {
    pub mode: Mode,
    /// Sequential writing slower than this (bytes per second) is `slow`.
    pub min_write_speed: u64,
    /// Sequential reading slower than this (bytes per second) is `slow`.
    pub min_read_speed: u64,
    pub cancel: Cancel,
}

/// Default `slow` limits: below 2 MB/s writing, a 4 GB installer takes more
/// than half an hour; below 5 MB/s reading, booting from it crawls.
pub const DEFAULT_MIN_WRITE_SPEED: u64 = 2_000_000;
pub const DEFAULT_MIN_READ_SPEED: u64 = 5_000_000;

impl Options {
    pub fn new(mode: Mode) -> Options {
        Options {
            mode,
            min_write_speed: DEFAULT_MIN_WRITE_SPEED,
            min_read_speed: DEFAULT_MIN_READ_SPEED,
            cancel: Cancel::new(),
        }
    }
}

/// The probe's finding, worst first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Stores less than it reports: every block tested from
    /// `fails_from` up lost its data, every good block is below.
    FakeCapacity,
    /// Blocks that fail (I/O errors or wrong data) among good ones.
    BadSectors,
    /// Everything held, but sequential I/O is slower than the limits.
    Slow,
    /// Everything written was read back as written, at a usable speed.
    Genuine,
    /// `read-only`: every block could be read at a usable speed (a read
    /// alone cannot tell a fake stick).
    Readable,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::FakeCapacity => "fake-capacity",
            Verdict::BadSectors => "bad-sectors",
            Verdict::Slow => "slow",
            Verdict::Genuine => "genuine",
            Verdict::Readable => "readable",
        }
    }
}

/// What a probe left on its target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetState {
    /// Nothing was written (`read-only`, or stopped before the first write).
    Untouched,
    /// Test patterns, with the first and last MiB zeroed (read back as
    /// zeros): no partition table, no filesystem.
    PatternsCleared,
    /// Test patterns, and zeroing the first and last MiB failed or was not
    /// reached: old partition tables may be partly there.
    Patterns,
}

impl TargetState {
    pub fn name(self) -> &'static str {
        match self {
            TargetState::Untouched => "untouched",
            TargetState::PatternsCleared => "patterns-cleared",
            TargetState::Patterns => "patterns",
        }
    }
}

/// How a failing range failed (its first block's failure).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Failure {
    /// Writing returned an I/O error.
    WriteError,
    /// Reading returned an I/O error.
    ReadError,
    /// The block held data this run wrote at another offset (`from`).
    Wrapped,
    /// The block held data this run did not write (zeros, old contents).
    Dropped,
    /// The block held its own tag with other bytes.
    Corrupt,
}

/// A failing byte range `[start, end)` of the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Range {
    pub start: u64,
    pub end: u64,
    pub failure: Failure,
    /// `wrapped`: the offset whose data came back at `start`.
    pub from: Option<u64>,
}

/// A probe's result (the JSON `result` of `bootstick probe`).
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub verdict: Verdict,
    pub mode: Mode,
    pub target: PathBuf,
    /// The capacity the disk reports.
    pub reported_bytes: u64,
    /// The unit tested: every tested block is this long and aligned to it.
    pub block_bytes: u64,
    /// Bytes written with test patterns, and bytes read back (or read).
    pub bytes_written: u64,
    pub bytes_read: u64,
    /// `fake-capacity`: the end of the highest block that held its own data
    /// (the real usable size, at least); else null.
    pub usable_bytes: Option<u64>,
    /// `fake-capacity`: the lowest tested offset past `usable_bytes` that
    /// lost its data: the real size lies between the two.
    pub fails_from: Option<u64>,
    /// `fake-capacity`: how the blocks past the real size fail (`wrapped`:
    /// they return data written elsewhere; `dropped`; an I/O error).
    pub fails_how: Option<Failure>,
    /// `fake-capacity` by a wrap: the offset whose data came back at
    /// `fails_from`.
    pub wrapped_onto: Option<u64>,
    /// Failing ranges among good blocks (for `fake-capacity`, those below
    /// `usable_bytes`), at most 1000, lowest first.
    pub bad_ranges: Vec<Range>,
    /// Bad ranges not listed (more than 1000).
    pub bad_ranges_omitted: u64,
    /// Bytes in failing blocks, of all tested.
    pub bad_bytes: u64,
    /// More than [`MAX_RANGES`] failures: ranges were widened to hold them,
    /// so they may include good blocks.
    pub ranges_coarse: bool,
    /// Sequential speeds measured (quick: over the three runs; full and
    /// read-only: over the whole pass), bytes per second.
    pub write_bytes_per_second: Option<u64>,
    pub read_bytes_per_second: Option<u64>,
    pub seconds: f64,
    /// What the disk holds now.
    pub target_state: TargetState,
}

/// Why a probe stopped without a verdict.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open {} for direct I/O", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is smaller than the {min} bytes a probe needs", path.display())]
    TooSmall { path: PathBuf, size: u64, min: u64 },
    /// The disk is no longer the one chosen (unplugged and replaced):
    /// found right before the first write.
    #[error(transparent)]
    IdentityChanged(crate::devices::IdentityChange),
    /// The device went away or refused I/O as a whole (not one block).
    #[error("{} failed at offset {offset}", path.display())]
    Device {
        path: PathBuf,
        offset: u64,
        #[source]
        source: std::io::Error,
    },
    #[error("probe stopped; the target is left {}", state.name())]
    Cancelled { state: TargetState },
}

/// Probes the disk `guard` holds (chosen with `job::choose_disk`, or for
/// `read-only` any readable disk or file, `guard` then `None`).
pub fn probe(
    path: &Path,
    guard: Option<&Guarded>,
    options: &Options,
    observer: &dyn Observer,
) -> Result<Report, Error> {
    let started = Instant::now();
    let dev = Dev::open(path, guard, options.mode != Mode::ReadOnly)?;
    let mut p = Prober {
        dev,
        nonce: nonce(),
        tally: Tally::default(),
        written: 0,
        read: 0,
        wrote_any: false,
        cancel: options.cancel.clone(),
        observer,
    };
    let (write_speed, read_speed) = match options.mode {
        Mode::ReadOnly => (None, p.read_only()?),
        Mode::Full | Mode::Quick => {
            if let Some(g) = guard {
                g.check_identity().map_err(Error::IdentityChanged)?;
            }
            let speeds = if options.mode == Mode::Full {
                p.full()
            } else {
                p.quick()
            };
            let speeds = match speeds {
                Ok(s) => s,
                Err(e) => {
                    // Stopped: the patterns already written stay, but no
                    // old table survives half-overwritten.
                    if p.wrote_any && matches!(e, Error::Cancelled { .. }) {
                        let state = p.clear(guard);
                        return Err(Error::Cancelled { state });
                    }
                    return Err(e);
                }
            };
            (speeds.0, speeds.1)
        }
    };
    let target_state = match options.mode {
        Mode::ReadOnly => TargetState::Untouched,
        _ => p.clear(guard),
    };
    Ok(p.report(
        options,
        write_speed,
        read_speed,
        started.elapsed(),
        target_state,
    ))
}

/// A per-run random nonce (from the operating system's generator).
fn nonce() -> u64 {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 8];
    // The system generator does not fail on Linux; a fixed fallback only
    // weakens the stale-data check, never a verdict on this run's data.
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    u64::from_le_bytes(b) | 1
}

/// The disk, opened for direct I/O on a descriptor of its own.
struct Dev {
    path: PathBuf,
    file: File,
    /// Bytes tested: the capacity rounded down to `block`.
    size: u64,
    reported: u64,
    block: u64,
    align: Alignment,
}

impl Dev {
    fn open(path: &Path, guard: Option<&Guarded>, write: bool) -> Result<Dev, Error> {
        let err = |source| Error::Open {
            path: path.to_path_buf(),
            source,
        };
        // Through the guard's own descriptor: the same device it checked
        // and holds exclusively, whatever the path names now. Without
        // O_EXCL, which the guard holds.
        let at = match guard {
            Some(g) => PathBuf::from(format!("/proc/self/fd/{}", g.file().as_raw_fd())),
            None => path.to_path_buf(),
        };
        let file = OpenOptions::new()
            .read(true)
            .write(write)
            .custom_flags(libc::O_DIRECT | libc::O_CLOEXEC)
            .open(&at)
            .map_err(err)?;
        let meta = file.metadata().map_err(err)?;
        let block_dev = meta.file_type().is_block_device();
        let reported = if block_dev {
            // The descriptor is this probe's own; all I/O is positional.
            use std::io::Seek;
            (&file).seek(std::io::SeekFrom::End(0)).map_err(err)?
        } else {
            meta.len()
        };
        let align = Alignment::of(&file, block_dev);
        let block = align.offset.max(MIN_BLOCK);
        let size = reported / block * block;
        let min = 4 * CLEAR;
        if size < min {
            return Err(Error::TooSmall {
                path: path.to_path_buf(),
                size: reported,
                min,
            });
        }
        Ok(Dev {
            path: path.to_path_buf(),
            file,
            size,
            reported,
            block,
            align,
        })
    }

    fn buffer(&self, len: u64) -> AlignedBuf {
        AlignedBuf::new(len as usize, self.align.memory)
    }

    /// An error that is the device's as a whole (gone, misaligned), not
    /// one block's.
    fn fatal(&self, offset: u64, e: &std::io::Error) -> Option<Error> {
        let whole = matches!(
            e.raw_os_error(),
            Some(libc::ENODEV | libc::ENXIO | libc::ENOMEDIUM | libc::EBADF | libc::EINVAL)
        );
        whole.then(|| Error::Device {
            path: self.path.clone(),
            offset,
            source: std::io::Error::new(e.kind(), e.to_string()),
        })
    }

    /// Writes `data` at `offset`; on failure block by block. Returns the
    /// blocks that failed.
    fn write(&self, data: &[u8], offset: u64) -> Result<Vec<u64>, Error> {
        let file = &self.file;
        self.by_blocks(data.len(), offset, |r, at| file.write_all_at(&data[r], at))
    }

    /// Reads `buf.len()` bytes at `offset`; on failure block by block.
    /// Returns the blocks that could not be read.
    fn read(&self, buf: &mut [u8], offset: u64) -> Result<Vec<u64>, Error> {
        let file = &self.file;
        self.by_blocks(buf.len(), offset, |r, at| {
            file.read_exact_at(&mut buf[r], at)
        })
    }

    /// Runs `io` over `len` bytes at `offset` at once, and when that fails
    /// (and the failure is not fatal) again block by block, to find which
    /// blocks fail. `io` gets the byte range of the caller's buffer and its
    /// device offset.
    fn by_blocks(
        &self,
        len: usize,
        offset: u64,
        mut io: impl FnMut(std::ops::Range<usize>, u64) -> std::io::Result<()>,
    ) -> Result<Vec<u64>, Error> {
        let Err(e) = io(0..len, offset) else {
            return Ok(Vec::new());
        };
        if let Some(f) = self.fatal(offset, &e) {
            return Err(f);
        }
        let block = self.block as usize;
        let mut bad = Vec::new();
        for start in (0..len).step_by(block) {
            let at = offset + start as u64;
            if let Err(e) = io(start..(start + block).min(len), at) {
                if let Some(f) = self.fatal(at, &e) {
                    return Err(f);
                }
                bad.push(at);
            }
        }
        Ok(bad)
    }

    fn sync(&self) -> Result<(), Error> {
        self.file.sync_all().map_err(|source| Error::Device {
            path: self.path.clone(),
            offset: 0,
            source,
        })
    }
}

/// The tagged pattern of the sectors at `offset..offset + buf.len()`.
pub(crate) fn fill(buf: &mut [u8], offset: u64, nonce: u64) {
    for (i, s) in buf.chunks_exact_mut(SECTOR as usize).enumerate() {
        let at = offset + i as u64 * SECTOR;
        s[..8].copy_from_slice(MAGIC);
        s[8..16].copy_from_slice(&nonce.to_le_bytes());
        s[16..24].copy_from_slice(&at.to_le_bytes());
        let mut state = nonce ^ at.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        for w in s[24..].chunks_exact_mut(8) {
            w.copy_from_slice(&splitmix(&mut state).to_le_bytes());
        }
    }
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// What one block read back as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    Own,
    Bad(Failure, Option<u64>),
}

/// Checks the block read at `offset` against the pattern (`scratch`: a
/// buffer as long as `got`).
pub(crate) fn check(got: &[u8], offset: u64, nonce: u64, scratch: &mut [u8]) -> Status {
    fill(scratch, offset, nonce);
    if got == scratch {
        return Status::Own;
    }
    for (i, (g, want)) in got
        .chunks_exact(SECTOR as usize)
        .zip(scratch.chunks_exact(SECTOR as usize))
        .enumerate()
    {
        if g == want {
            continue;
        }
        let ours = &g[..8] == MAGIC && g[8..16] == nonce.to_le_bytes();
        let tagged = u64::from_le_bytes(g[16..24].try_into().expect("8 bytes"));
        let own_at = offset + i as u64 * SECTOR;
        return match (ours, tagged == own_at) {
            (true, false) => Status::Bad(
                Failure::Wrapped,
                Some(tagged.wrapping_sub(i as u64 * SECTOR)),
            ),
            (true, true) => Status::Bad(Failure::Corrupt, None),
            (false, _) => Status::Bad(Failure::Dropped, None),
        };
    }
    Status::Own
}

/// Failures as merged ranges, good blocks as merged ranges, and the
/// evidence of a wrap.
#[derive(Default)]
struct Tally {
    /// start → range.
    ranges: BTreeMap<u64, Range>,
    coarse: bool,
    /// Good blocks: start → end, merged.
    own: BTreeMap<u64, u64>,
    /// End of the highest block that held its own data.
    max_own_end: u64,
    bad_bytes: u64,
    /// The lowest block that returned data written at another offset, and
    /// that offset.
    min_wrapped: Option<(u64, u64)>,
    /// The greatest common divisor of every wrap's distance: a multiple of
    /// the period a wrapping stick repeats with (its real size).
    period: u64,
}

/// Where a stick stops storing what it reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Boundary {
    usable: u64,
    fails_from: u64,
    how: Failure,
    onto: Option<u64>,
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

impl Tally {
    fn own(&mut self, offset: u64, len: u64) {
        let end = offset + len;
        self.max_own_end = self.max_own_end.max(end);
        if let Some((_, prev)) = self.own.range_mut(..=offset).next_back() {
            if *prev >= offset {
                *prev = (*prev).max(end);
                return;
            }
        }
        if let Some(next) = self.own.get(&end).copied() {
            self.own.remove(&end);
            self.own.insert(offset, next);
            return;
        }
        if self.own.len() >= MAX_RANGES {
            // Full: the good range before this one is widened; only the
            // highest good offset below a failure matters, and that stays
            // exact or errs low.
            self.coarse = true;
            return;
        }
        self.own.insert(offset, end);
    }

    /// The end of the highest good block ending at or below `limit`.
    fn own_below(&self, limit: u64) -> u64 {
        self.own
            .range(..limit)
            .next_back()
            .map_or(0, |(_, &end)| end.min(limit))
    }

    /// Where the stick stops storing its own data, if it does: below the
    /// lowest block that returned another offset's data (and below the
    /// wraps' period), or below failures that fill the top of the disk
    /// above every good block.
    fn boundary(&self, block: u64) -> Option<Boundary> {
        let usable = match self.min_wrapped {
            Some((at, _)) => {
                let limit = if self.period >= block {
                    at.min(self.period)
                } else {
                    at
                };
                self.own_below(limit)
            }
            None => {
                let tail: u64 = self
                    .ranges
                    .range(self.max_own_end..)
                    .map(|(_, r)| r.end - r.start)
                    .sum();
                if tail < MIN_TAIL_BLOCKS * block {
                    return None;
                }
                self.max_own_end
            }
        };
        let first = self.ranges.range(usable..).next().map(|(_, r)| *r)?;
        if usable == 0 {
            return None;
        }
        Some(Boundary {
            usable,
            fails_from: first.start,
            how: first.failure,
            onto: first.from.filter(|_| first.failure == Failure::Wrapped),
        })
    }

    fn bad(&mut self, start: u64, len: u64, failure: Failure, from: Option<u64>) {
        let end = start + len;
        self.bad_bytes += len;
        if let (Failure::Wrapped, Some(from)) = (failure, from) {
            if self.min_wrapped.is_none_or(|(at, _)| start < at) {
                self.min_wrapped = Some((start, from));
            }
            self.period = gcd(self.period, start.abs_diff(from));
        }
        // Joins the range ending where this one starts, of the same kind.
        if let Some((_, prev)) = self.ranges.range_mut(..=start).next_back() {
            if prev.end >= start && (prev.failure == failure || self.coarse) {
                prev.end = prev.end.max(end);
                return;
            }
        }
        if let Some(next) = self.ranges.get(&end).copied() {
            if next.failure == failure {
                self.ranges.remove(&end);
                self.ranges.insert(
                    start,
                    Range {
                        start,
                        end: next.end,
                        failure,
                        from,
                    },
                );
                return;
            }
        }
        if self.ranges.len() >= MAX_RANGES {
            // Full: widen the range before this one (or, below them all,
            // the first one) to cover it.
            self.coarse = true;
            if let Some((_, prev)) = self.ranges.range_mut(..start).next_back() {
                prev.end = prev.end.max(end);
            } else if let Some((_, mut first)) = self.ranges.pop_first() {
                first.start = start;
                first.end = first.end.max(end);
                self.ranges.insert(start, first);
            }
            return;
        }
        self.ranges.insert(
            start,
            Range {
                start,
                end,
                failure,
                from,
            },
        );
    }

    fn record(&mut self, offset: u64, len: u64, status: Status) {
        match status {
            Status::Own => self.own(offset, len),
            Status::Bad(f, from) => self.bad(offset, len, f, from),
        }
    }
}

struct Prober<'a> {
    dev: Dev,
    nonce: u64,
    tally: Tally,
    written: u64,
    read: u64,
    wrote_any: bool,
    cancel: Cancel,
    observer: &'a dyn Observer,
}

/// One piece of a quick probe: `len` bytes at `offset`, written and read
/// as one sequential run (`run`) or a single block.
#[derive(Clone, Copy)]
struct Item {
    offset: u64,
    len: u64,
    run: bool,
}

impl Prober<'_> {
    fn stopped(&self) -> Result<(), Error> {
        if self.cancel.is_cancelled() {
            return Err(Error::Cancelled {
                state: if self.wrote_any {
                    TargetState::Patterns
                } else {
                    TargetState::Untouched
                },
            });
        }
        Ok(())
    }

    fn progress(&self, phase: Phase, done: u64, total: u64) {
        self.observer.event(&Event::Progress { phase, done, total });
    }

    /// Quick mode: three runs and the samples, then refinement rounds
    /// between the highest good block and the lowest failing one.
    fn quick(&mut self) -> Result<(Option<u64>, Option<u64>), Error> {
        let (size, block) = (self.dev.size, self.dev.block);
        let run = (RUN.min(size / 8) / block * block).max(block);
        let runs = [0, (size / 2) / block * block, (size - run) / block * block];
        let mut items: Vec<Item> = runs
            .iter()
            .map(|&offset| Item {
                offset,
                len: run,
                run: true,
            })
            .collect();
        // A grid of a power-of-two step: on a stick that wraps modulo a
        // power of two (it ignores high address bits), every sample past
        // the real size shares its cell with a lower sample, which is
        // written after it and so overwrites it.
        let step = prev_power_of_two(size / SAMPLES).max(block);
        let in_run = |o: u64| runs.iter().any(|&r| o >= r && o < r + run);
        for i in 0..size / step {
            let o = i * step;
            if !in_run(o) {
                items.push(Item {
                    offset: o,
                    len: block,
                    run: false,
                });
            }
        }
        let (w, r) = self.round(items)?;
        // Narrow down where the stick stops storing: between the highest
        // good block and the lowest failing one.
        for _ in 0..3 {
            let Some(b) = self.tally.boundary(block) else {
                break;
            };
            let gap = (b.fails_from.saturating_sub(b.usable)) / block;
            if gap <= 1 {
                break;
            }
            let n = REFINE_SAMPLES.min(gap - 1);
            let low = b.usable;
            let items = (1..=n)
                .map(|i| Item {
                    offset: low + i * gap / (n + 1) * block,
                    len: block,
                    run: false,
                })
                .collect();
            self.round(items)?;
        }
        Ok((w, r))
    }

    /// Writes `items` from the highest offset down, syncs, reads them back
    /// in the same order. Returns the sequential write and read speeds
    /// measured over the runs among them.
    fn round(&mut self, mut items: Vec<Item>) -> Result<(Option<u64>, Option<u64>), Error> {
        items.sort_by_key(|i| std::cmp::Reverse(i.offset));
        items.dedup_by_key(|i| i.offset);
        let total: u64 = items.iter().map(|i| i.len).sum();
        let chunk = CHUNK.min(total.max(self.dev.block));
        let mut buf = self.dev.buffer(chunk);
        let mut scratch = vec![0u8; self.dev.block as usize];
        let (mut run_bytes, mut run_write, mut run_read) = (0u64, Duration::ZERO, Duration::ZERO);
        self.observer.event(&Event::PhaseStarted {
            phase: Phase::Write,
            total,
        });
        let mut done = 0;
        let mut write_failed: Vec<u64> = Vec::new();
        for item in &items {
            self.stopped()?;
            let t = Instant::now();
            let mut at = item.offset;
            while at < item.offset + item.len {
                let len = chunk.min(item.offset + item.len - at);
                let b = buf.get_mut(len as usize);
                fill(b, at, self.nonce);
                self.wrote_any = true;
                write_failed.extend(self.dev.write(b, at)?);
                at += len;
            }
            if item.run {
                run_write += t.elapsed();
                run_bytes += item.len;
            }
            done += item.len;
            self.written += item.len;
            self.progress(Phase::Write, done, total);
        }
        let t = Instant::now();
        self.dev.sync()?;
        let sync = t.elapsed();
        self.observer.event(&Event::PhaseFinished {
            phase: Phase::Write,
        });
        write_failed.sort_unstable();
        self.observer.event(&Event::PhaseStarted {
            phase: Phase::Verify,
            total,
        });
        done = 0;
        for item in &items {
            self.stopped()?;
            let t = Instant::now();
            let mut at = item.offset;
            while at < item.offset + item.len {
                let len = chunk.min(item.offset + item.len - at);
                let b = buf.get_mut(len as usize);
                let unreadable = self.dev.read(b, at)?;
                self.classify(b, at, &unreadable, &write_failed, &mut scratch);
                at += len;
            }
            if item.run {
                run_read += t.elapsed();
            }
            done += item.len;
            self.read += item.len;
            self.progress(Phase::Verify, done, total);
        }
        self.observer.event(&Event::PhaseFinished {
            phase: Phase::Verify,
        });
        let speed = |d: Duration| {
            (run_bytes > 0 && !d.is_zero()).then(|| (run_bytes as f64 / d.as_secs_f64()) as u64)
        };
        // The runs' writes are only durable after the sync: count it.
        Ok((speed(run_write + sync), speed(run_read)))
    }

    /// Records every block of `buf` (read at `at`).
    fn classify(
        &mut self,
        buf: &[u8],
        at: u64,
        unreadable: &[u64],
        write_failed: &[u64],
        scratch: &mut [u8],
    ) {
        let block = self.dev.block;
        for (i, b) in buf.chunks(block as usize).enumerate() {
            let o = at + i as u64 * block;
            if write_failed.binary_search(&o).is_ok() {
                self.tally.bad(o, block, Failure::WriteError, None);
            } else if unreadable.contains(&o) {
                self.tally.bad(o, block, Failure::ReadError, None);
            } else {
                let s = check(b, o, self.nonce, scratch);
                self.tally.record(o, block, s);
            }
        }
    }

    /// Full mode: every block, chunk by chunk from the top down, then read
    /// back in the same order.
    fn full(&mut self) -> Result<(Option<u64>, Option<u64>), Error> {
        let size = self.dev.size;
        let chunks: Vec<u64> = (0..size.div_ceil(CHUNK)).rev().map(|i| i * CHUNK).collect();
        let mut buf = self.dev.buffer(CHUNK);
        let mut scratch = vec![0u8; self.dev.block as usize];
        self.observer.event(&Event::PhaseStarted {
            phase: Phase::Write,
            total: size,
        });
        let t = Instant::now();
        let mut write_failed = Vec::new();
        for &at in &chunks {
            self.stopped()?;
            let len = CHUNK.min(size - at);
            let b = buf.get_mut(len as usize);
            fill(b, at, self.nonce);
            self.wrote_any = true;
            // Bounded: beyond the range cap, one entry per failed block
            // is what the tally would widen anyway.
            let failed = self.dev.write(b, at)?;
            if write_failed.len() < MAX_RANGES * 4 {
                write_failed.extend(failed);
            }
            self.written += len;
            self.progress(Phase::Write, self.written, size);
        }
        self.dev.sync()?;
        let write = t.elapsed();
        self.observer.event(&Event::PhaseFinished {
            phase: Phase::Write,
        });
        write_failed.sort_unstable();
        self.observer.event(&Event::PhaseStarted {
            phase: Phase::Verify,
            total: size,
        });
        let t = Instant::now();
        for &at in &chunks {
            self.stopped()?;
            let len = CHUNK.min(size - at);
            let b = buf.get_mut(len as usize);
            let unreadable = self.dev.read(b, at)?;
            self.classify(b, at, &unreadable, &write_failed, &mut scratch);
            self.read += len;
            self.progress(Phase::Verify, self.read, size);
        }
        let read = t.elapsed();
        self.observer.event(&Event::PhaseFinished {
            phase: Phase::Verify,
        });
        Ok((Some(speed(size, write)), Some(speed(size, read))))
    }

    /// Read-only mode: every block read in order; nothing written.
    fn read_only(&mut self) -> Result<Option<u64>, Error> {
        let size = self.dev.size;
        let mut buf = self.dev.buffer(CHUNK);
        self.observer.event(&Event::PhaseStarted {
            phase: Phase::Verify,
            total: size,
        });
        let t = Instant::now();
        let mut at = 0;
        while at < size {
            self.stopped()?;
            let len = CHUNK.min(size - at);
            let b = buf.get_mut(len as usize);
            for o in self.dev.read(b, at)? {
                self.tally.bad(o, self.dev.block, Failure::ReadError, None);
            }
            at += len;
            self.read += len;
            self.progress(Phase::Verify, at, size);
        }
        self.observer.event(&Event::PhaseFinished {
            phase: Phase::Verify,
        });
        Ok(Some(speed(size, t.elapsed())))
    }

    /// Zeroes the last and then the first MiB and reads them back.
    fn clear(&mut self, guard: Option<&Guarded>) -> TargetState {
        let size = self.dev.size;
        let mut buf = self.dev.buffer(CLEAR);
        let ok = (|| -> Result<bool, Error> {
            for at in [size - CLEAR, 0] {
                buf.get_mut(CLEAR as usize).fill(0);
                if !self.dev.write(buf.get(CLEAR as usize), at)?.is_empty() {
                    return Ok(false);
                }
            }
            self.dev.sync()?;
            for at in [size - CLEAR, 0] {
                let b = buf.get_mut(CLEAR as usize);
                if !self.dev.read(b, at)?.is_empty() || b.iter().any(|&x| x != 0) {
                    return Ok(false);
                }
            }
            Ok(true)
        })();
        let state = match ok {
            Ok(true) => TargetState::PatternsCleared,
            Ok(false) | Err(_) => TargetState::Patterns,
        };
        // The table the kernel knows is gone: let it forget the partitions.
        if let Some(g) = guard {
            if let Err(e) = g.reread_partitions() {
                self.observer.event(&Event::Warning(crate::error_chain(&e)));
            }
        }
        state
    }

    fn report(
        &self,
        options: &Options,
        write_speed: Option<u64>,
        read_speed: Option<u64>,
        took: Duration,
        target_state: TargetState,
    ) -> Report {
        let t = &self.tally;
        let block = self.dev.block;
        let boundary = t.boundary(block).filter(|_| options.mode != Mode::ReadOnly);
        let fake = boundary.is_some();
        let below = boundary.map_or(u64::MAX, |b| b.usable);
        let bad: Vec<Range> = t.ranges.range(..below).map(|(_, r)| *r).collect();
        let slow = write_speed.is_some_and(|s| s < options.min_write_speed)
            || read_speed.is_some_and(|s| s < options.min_read_speed);
        let verdict = if fake {
            Verdict::FakeCapacity
        } else if !bad.is_empty() {
            Verdict::BadSectors
        } else if slow {
            Verdict::Slow
        } else if options.mode == Mode::ReadOnly {
            Verdict::Readable
        } else {
            Verdict::Genuine
        };
        Report {
            verdict,
            mode: options.mode,
            target: self.dev.path.clone(),
            reported_bytes: self.dev.reported,
            block_bytes: block,
            bytes_written: self.written,
            bytes_read: self.read,
            usable_bytes: boundary.map(|b| b.usable),
            fails_from: boundary.map(|b| b.fails_from),
            fails_how: boundary.map(|b| b.how),
            wrapped_onto: boundary.and_then(|b| b.onto),
            bad_ranges_omitted: bad.len().saturating_sub(LISTED_RANGES) as u64,
            bad_ranges: bad.into_iter().take(LISTED_RANGES).collect(),
            bad_bytes: t.bad_bytes,
            ranges_coarse: t.coarse,
            write_bytes_per_second: write_speed,
            read_bytes_per_second: read_speed,
            seconds: (took.as_secs_f64() * 1000.0).round() / 1000.0,
            target_state,
        }
    }
}

/// The largest power of two at most `x` (1 for 0).
fn prev_power_of_two(x: u64) -> u64 {
    if x == 0 {
        1
    } else {
        1 << (63 - x.leading_zeros())
    }
}

fn speed(bytes: u64, took: Duration) -> u64 {
    if took.is_zero() {
        return u64::MAX;
    }
    (bytes as f64 / took.as_secs_f64()) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONCE: u64 = 0x1234_5678_9abc_def1;

    fn block(offset: u64) -> Vec<u8> {
        let mut b = vec![0u8; 4096];
        fill(&mut b, offset, NONCE);
        b
    }

    #[test]
    fn a_block_reads_back_as_its_own() {
        let mut scratch = vec![0u8; 4096];
        assert_eq!(
            check(&block(1 << 30), 1 << 30, NONCE, &mut scratch),
            Status::Own
        );
    }

    #[test]
    fn another_offsets_data_is_a_wrap_naming_that_offset() {
        let mut scratch = vec![0u8; 4096];
        let got = block(512 << 20);
        assert_eq!(
            check(&got, (512 << 20) + (8 << 30), NONCE, &mut scratch),
            Status::Bad(Failure::Wrapped, Some(512 << 20))
        );
    }

    #[test]
    fn zeros_and_another_runs_data_are_dropped_writes() {
        let mut scratch = vec![0u8; 4096];
        assert_eq!(
            check(&[0u8; 4096], 8192, NONCE, &mut scratch),
            Status::Bad(Failure::Dropped, None)
        );
        let mut old = vec![0u8; 4096];
        fill(&mut old, 8192, NONCE ^ 2);
        assert_eq!(
            check(&old, 8192, NONCE, &mut scratch),
            Status::Bad(Failure::Dropped, None)
        );
    }

    #[test]
    fn a_flipped_bit_under_its_own_tag_is_corrupt() {
        let mut scratch = vec![0u8; 4096];
        let mut got = block(8192);
        got[3000] ^= 4;
        assert_eq!(
            check(&got, 8192, NONCE, &mut scratch),
            Status::Bad(Failure::Corrupt, None)
        );
    }

    #[test]
    fn adjacent_failures_merge_and_the_range_cap_holds() {
        let mut t = Tally::default();
        t.bad(4096, 4096, Failure::ReadError, None);
        t.bad(8192, 4096, Failure::ReadError, None);
        t.bad(0, 4096, Failure::ReadError, None);
        assert_eq!(t.ranges.len(), 1);
        let r = t.ranges.values().next().unwrap();
        assert_eq!((r.start, r.end), (0, 12288));
        let mut t = Tally::default();
        for i in 0..(MAX_RANGES as u64 + 100) {
            t.bad(i * 8192, 4096, Failure::Dropped, None);
        }
        assert!(t.ranges.len() <= MAX_RANGES);
        assert!(t.coarse);
        let last = t.ranges.values().next_back().unwrap();
        assert_eq!(last.end, (MAX_RANGES as u64 + 99) * 8192 + 4096);
    }

    /// A wrap found once: the real size is below the lowest wrapped
    /// block, even when blocks above it look good (their cells were never
    /// written again).
    #[test]
    fn a_wrapped_block_bounds_the_real_size_whatever_looks_good_above() {
        let mut t = Tally::default();
        for o in (0..64).map(|i| i * 4096) {
            t.own(o, 4096);
        }
        t.bad(1 << 20, 4096, Failure::Wrapped, Some(0));
        t.own(5 << 20, 4096);
        let b = t.boundary(4096).unwrap();
        assert_eq!(
            (b.usable, b.fails_from, b.onto),
            (64 * 4096, 1 << 20, Some(0))
        );
        assert_eq!(b.how, Failure::Wrapped);
    }

    /// Dropped writes count as a fake capacity only when they fill the top
    /// of the disk (at least 32 blocks above every good one); a few failing
    /// blocks at the very end are bad sectors.
    #[test]
    fn only_a_failing_top_of_32_blocks_or_more_is_a_capacity_limit() {
        let mut t = Tally::default();
        t.own(0, 1 << 20);
        t.bad(1 << 20, 31 * 4096, Failure::Dropped, None);
        assert_eq!(t.boundary(4096), None);
        t.bad((1 << 20) + 31 * 4096, 4096, Failure::Dropped, None);
        let b = t.boundary(4096).unwrap();
        assert_eq!((b.usable, b.fails_from), (1 << 20, 1 << 20));
        // A good block above the failures: they are bad sectors.
        t.own(4 << 20, 4096);
        assert_eq!(t.boundary(4096), None);
    }
}
