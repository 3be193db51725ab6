//! Stick health: is this stick what it claims to be, and does it hold what
//! is written to it? (`docs/health.md`)
//!
//! - [`probe`]: position-tagged test patterns written over a disk and read
//!   back bypassing every cache, telling a genuine stick from one that
//!   reports more capacity than it stores (a "fake" stick that wraps or
//!   drops writes past its real size), one with bad sectors, and a slow
//!   one; or, read-only, every sector read.
//!
//! - [`backup`]: a whole stick (or up to its last partition) into an image
//!   file, compressed by its extension, with a `sha256sum -c` file beside
//!   it, proven by reading it back.
//!
//! - [`format`]: a stick back as a plain data drive: old signatures
//!   overwritten, one MBR partition, an empty FAT32 or exFAT volume, read
//!   back.
//!
//! The disk is chosen, confirmed and opened by the job's target selection
//! (`job::choose_disk`): the same rules and the same question as `write`.

pub mod backup;
pub mod before_write;
pub mod format;
pub mod probe;

pub use probe::{probe, Error, Mode, Options, Range, Report, TargetState, Verdict};
