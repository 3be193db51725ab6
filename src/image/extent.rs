//! How long an optical volume is, from its own descriptors: the bytes a
//! whole copy of a disc needs. A drive's reported capacity is no answer: a
//! recorded CD or DVD often reports run-out (and lead-out) sectors past the
//! end of the session, which are unreadable or hold nothing of the volume,
//! and a copy that includes them is not the ISO that was burned.
//!
//! ISO 9660: the volume space size (ECMA-119 §8.4.8, bytes 80–87) times the
//! logical block size (§8.4.12, bytes 128–131) of every primary and
//! supplementary descriptor in the set (they agree on a sane disc; the
//! largest is kept). UDF: where the last of its structures ends (the
//! partitions, the descriptor sequences and the anchors, see
//! [`super::udf::Udf::extent_end`]). A bridge disc has both; the larger
//! wins, so neither file system is cut short.

use std::sync::Arc;

use serde::Serialize;

use super::descriptors::{self, TYPE_PRIMARY, TYPE_SUPPLEMENTARY};
use super::udf::Udf;
use super::{ByteSource, Error};

/// The extent of the volume on a source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Volume {
    /// The bytes the volume occupies from the source's start.
    pub bytes: u64,
    /// What the ISO 9660 descriptors say, when there are any.
    pub iso9660_bytes: Option<u64>,
    /// Where the UDF structures end, when there is a UDF volume.
    pub udf_bytes: Option<u64>,
}

/// The volume `src` holds, or `None` when it holds neither an ISO 9660 nor
/// a UDF volume (an audio CD, a blank or foreign disc).
pub fn volume(src: &Arc<dyn ByteSource>) -> Result<Option<Volume>, Error> {
    let found = descriptors::read(src.as_ref())?;
    let iso9660_bytes = found
        .iso9660
        .iter()
        .filter(|d| matches!(d.kind(), TYPE_PRIMARY | TYPE_SUPPLEMENTARY))
        .map(|d| {
            let b = &d.bytes;
            let blocks = u32::from_le_bytes([b[80], b[81], b[82], b[83]]);
            let block = u16::from_le_bytes([b[128], b[129]]);
            u64::from(blocks) * u64::from(block)
        })
        .max();
    let udf_bytes = if found.udf.is_some() {
        Udf::extent_end(src)?
    } else {
        None
    };
    let bytes = iso9660_bytes.into_iter().chain(udf_bytes).max();
    Ok(bytes.map(|bytes| Volume {
        bytes,
        iso9660_bytes,
        udf_bytes,
    }))
}
