//! File identifier descriptors (ECMA-167 4/14.4): the entries of a UDF
//! directory, packed back to back in the directory's data and padded to four
//! bytes. A descriptor may straddle a block boundary, so we parse the
//! directory's data as one buffer.

use super::tag::{self, id};
use super::{cs0, malformed};
use crate::image::Error;

/// File characteristics bits (4/14.4.3).
const DIRECTORY: u8 = 2;
const DELETED: u8 = 4;
const PARENT: u8 = 8;

/// One usable entry of a directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Fid {
    pub name: String,
    pub is_dir: bool,
    /// The entry's ICB: partition reference and block.
    pub part: u16,
    pub lbn: u32,
}

/// What a directory's data holds: its parent's ICB and its visible entries.
#[derive(Clone, Debug, Default)]
pub(crate) struct Listing {
    pub parent: Option<(u16, u32)>,
    pub entries: Vec<Fid>,
}

/// Parses the directory data `data`, whose first byte is at image byte
/// `base` (used for error offsets; approximate when the data is fragmented).
/// Deleted entries are skipped; the parent entry is returned apart. Hidden
/// entries are listed: the "existence" bit asks a *user interface* not to show
/// a file, but a stick must hold every file the installer may open, and
/// 7-Zip and libcdio (Rufus) list them too.
pub(crate) fn parse(data: &[u8], base: u64) -> Result<Listing, Error> {
    let mut out = Listing::default();
    let mut pos = 0usize;
    while pos < data.len() {
        let off = base + pos as u64;
        let rest = &data[pos..];
        if rest.len() < 38 {
            // Trailing slack shorter than a descriptor: only zeros are allowed.
            if rest.iter().all(|&b| b == 0) {
                break;
            }
            return Err(malformed(
                off,
                "truncated file identifier descriptor at the end of a directory".into(),
            ));
        }
        tag::check(rest, off, &[id::FID], None)?;
        let chars = rest[18];
        let l_fi = usize::from(rest[19]);
        let l_iu = usize::from(u16::from_le_bytes([rest[36], rest[37]]));
        let len = (38 + l_iu + l_fi + 3) & !3;
        if len > rest.len() {
            return Err(malformed(
                off,
                format!("file identifier descriptor of {len} bytes runs past the directory's end"),
            ));
        }
        let icb_len = u32::from_le_bytes(rest[20..24].try_into().unwrap_or_default()) & 0x3fff_ffff;
        let lbn = u32::from_le_bytes(rest[24..28].try_into().unwrap_or_default());
        let part = u16::from_le_bytes([rest[28], rest[29]]);
        pos += len;
        if chars & PARENT != 0 {
            out.parent = Some((part, lbn));
            continue;
        }
        if chars & DELETED != 0 || icb_len == 0 {
            continue;
        }
        let name = cs0::decode(&rest[38 + l_iu..38 + l_iu + l_fi], off + 38 + l_iu as u64)?;
        if name.is_empty() {
            return Err(malformed(off, "directory entry with an empty name".into()));
        }
        out.entries.push(Fid {
            name,
            is_dir: chars & DIRECTORY != 0,
            part,
            lbn,
        });
    }
    Ok(out)
}
