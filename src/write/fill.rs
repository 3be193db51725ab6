//! Producing the bytes a plan puts at a target range.

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;

use super::Error;
use crate::image::checked::{ReadError, Verifier};
use crate::image::compressed::DecodedImage;
use crate::plan::{Extent, Plan};

/// Where source bytes are read from: the image file as it is, or (after a
/// source check) only through a [`Verifier`] that hands out nothing but the
/// checked image's bytes.
pub enum SourceReader<'a> {
    Plain(&'a File),
    Checked(Verifier),
    /// A compressed image's decoded bytes (`write_decoded`'s read-back,
    /// naming the first differing byte); its compressed bytes are read
    /// through the source check's digests when there was one.
    Decoded(&'a DecodedImage),
    /// A stream that was read once (`write_piped`): nothing can be read
    /// again, so a range that differs is named by its bounds
    /// ([`Error::StreamMismatch`]).
    Streamed,
}

impl SourceReader<'_> {
    /// Reads exactly `dst.len()` source bytes at `offset`.
    pub fn read(&self, offset: u64, dst: &mut [u8]) -> Result<(), Error> {
        match self {
            SourceReader::Plain(f) => read_source(f, offset, dst),
            SourceReader::Checked(v) => v.read_exact_at(offset, dst).map_err(|e| match e {
                ReadError::Mismatch { start, end } => Error::SourceChangedSinceCheck { start, end },
                ReadError::Io { offset, source } => Error::ReadSource { offset, source },
            }),
            SourceReader::Decoded(d) => d
                .read_at(offset, dst)
                .map_err(|e| Error::from_decode(e, crate::cancel::TargetState::Incomplete)),
            SourceReader::Streamed => Err(Error::StreamMismatch {
                start: offset,
                end: offset + dst.len() as u64,
            }),
        }
    }
}

/// Fills `out` with what the plan puts at target bytes `at..at + out.len()`,
/// which the plan must cover without a gap. Returns the parts of `out` that
/// came from the source, in order (the engine hashes those).
pub fn fill(
    plan: &Plan,
    source: &SourceReader,
    at: u64,
    out: &mut [u8],
) -> Result<Vec<Range<usize>>, Error> {
    let end = at + out.len() as u64;
    let pieces = plan.pieces();
    // The first piece that ends after `at`.
    let first = pieces.partition_point(|p| p.end() <= at);
    let mut parts = Vec::new();
    let mut pos = at;
    for p in &pieces[first..] {
        if pos >= end {
            break;
        }
        if p.at > pos {
            return Err(Error::Internal(format!(
                "plan has a gap at target byte {pos} inside a write range"
            )));
        }
        let skip = pos - p.at;
        let take = (p.end() - pos).min(end - pos) as usize;
        let o = (pos - at) as usize;
        let dst = &mut out[o..o + take];
        match &p.extent {
            Extent::Bytes(b) => dst.copy_from_slice(&b[skip as usize..skip as usize + take]),
            Extent::Zeros { .. } => dst.fill(0),
            Extent::Source { offset, .. } => {
                let from = offset + skip;
                source.read(from, dst)?;
                parts.push(o..o + take);
            }
        }
        pos += take as u64;
    }
    if pos < end {
        return Err(Error::Internal(format!(
            "plan ends at target byte {pos} inside a write range ending at {end}"
        )));
    }
    Ok(parts)
}

/// Reads exactly `dst.len()` source bytes at `offset`; a source that ends
/// early was truncated after the plan was made.
pub fn read_source(source: &File, offset: u64, dst: &mut [u8]) -> Result<(), Error> {
    let mut done = 0;
    while done < dst.len() {
        let at = offset + done as u64;
        match source.read_at(&mut dst[done..], at) {
            Ok(0) => return Err(Error::SourceTruncated { at }),
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(source) => return Err(Error::ReadSource { offset: at, source }),
        }
    }
    Ok(())
}
