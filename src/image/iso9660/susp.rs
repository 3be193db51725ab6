//! The System Use Sharing Protocol (SUSP 1.12) and the Rock Ridge entries
//! (RRIP 1.12) we need: `NM` names, `SL` symbolic links, `PX` modes, `CL`/`RE`
//! relocated directories, plus `SP`, `CE`, `ER` and `ST` from SUSP itself.
//!
//! Entries are `sig(2) len(1) version(1) data`. They sit in a record's System
//! Use area and may continue in Continuation Areas (`CE`) elsewhere in the
//! image; those chains are bounded and checked for loops.

use crate::image::{ByteSource, Error};
use std::collections::HashSet;

/// The most continuation areas we follow for one record. Real images use one
/// or two (long names, long symlinks, ACLs).
const MAX_CONTINUATIONS: usize = 32;

/// A continuation area larger than this is refused (SUSP puts each in one
/// logical block; 64 KiB leaves room for odd writers).
const MAX_CONTINUATION_BYTES: u64 = 64 << 10;

/// Calls `f(signature, data, offset)` for each SUSP entry of a record whose
/// System Use area is `area` (at image offset `area_offset`), following `CE`
/// continuation areas. Stops at `ST` or at an entry that is too short to be
/// one (trailing padding).
pub(crate) fn entries(
    src: &dyn ByteSource,
    block_size: u64,
    area: &[u8],
    area_offset: u64,
    mut f: impl FnMut([u8; 2], &[u8], u64) -> Result<(), Error>,
) -> Result<(), Error> {
    let mut owned: Vec<u8>;
    let mut cur: &[u8] = area;
    let mut cur_offset = area_offset;
    let mut seen = HashSet::new();
    loop {
        let mut next = None;
        let mut pos = 0usize;
        while pos + 4 <= cur.len() {
            let sig = [cur[pos], cur[pos + 1]];
            let len = usize::from(cur[pos + 2]);
            if len < 4 || pos + len > cur.len() {
                break;
            }
            let data = &cur[pos + 4..pos + len];
            let offset = cur_offset + pos as u64;
            match &sig {
                b"ST" => return Ok(()),
                b"CE" if data.len() >= 24 => {
                    let block = u64::from(le32(&data[0..4]));
                    let off = u64::from(le32(&data[8..12]));
                    let len = u64::from(le32(&data[16..20]));
                    next = Some((block * block_size + off, len, offset));
                }
                _ => f(sig, data, offset)?,
            }
            pos += len;
        }
        let Some((at, len, ce_offset)) = next else {
            return Ok(());
        };
        if !seen.insert(at) || seen.len() > MAX_CONTINUATIONS {
            return Err(Error::Malformed {
                format: "SUSP continuation (CE)",
                offset: ce_offset,
                detail: format!(
                    "continuation areas loop or chain more than {MAX_CONTINUATIONS} times (at byte {at})"
                ),
            });
        }
        owned = src.read_vec(at, len, MAX_CONTINUATION_BYTES, "SUSP continuation area")?;
        cur = &owned;
        cur_offset = at;
    }
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// How the root directory's `.` record announces SUSP: an `SP` entry at the
/// start of its System Use area. Returns `LEN_SKP`, the bytes to skip at the
/// start of every other System Use area.
pub(crate) fn sp_skip(area: &[u8]) -> Option<u8> {
    match area {
        [b'S', b'P', 7, _, 0xBE, 0xEF, skip, ..] => Some(*skip),
        _ => None,
    }
}

/// Whether the root `.` record (System Use `area`) declares Rock Ridge: an
/// `ER` entry naming RRIP, or — for writers that predate `ER` — Rock Ridge
/// entries (`RR`, `PX`, `NM`) right there.
pub(crate) fn declares_rock_ridge(
    src: &dyn ByteSource,
    block_size: u64,
    area: &[u8],
    area_offset: u64,
) -> Result<bool, Error> {
    let mut rr = false;
    entries(src, block_size, area, area_offset, |sig, data, _| {
        match &sig {
            b"ER" if data.len() >= 4 => {
                let id_len = usize::from(data[0]);
                let id = data.get(4..4 + id_len).unwrap_or(&[]);
                if matches!(id, b"RRIP_1991A" | b"IEEE_P1282" | b"IEEE_1282") {
                    rr = true;
                }
            }
            b"RR" | b"PX" | b"NM" => rr = true,
            _ => {}
        }
        Ok(())
    })?;
    Ok(rr)
}

/// What the Rock Ridge entries of one directory record say.
#[derive(Debug, Default)]
pub(crate) struct RockRidge {
    /// The `NM` name (components concatenated), if any.
    pub name: Option<Vec<u8>>,
    /// `NM` flagged CURRENT or PARENT: the record stands for `.` or `..`.
    pub dot: bool,
    /// The `SL` target, if the record is a symbolic link.
    pub symlink: Option<String>,
    /// The `PX` file mode.
    pub mode: Option<u32>,
    /// `CL`: this entry stands for a directory relocated to this block.
    pub child_link: Option<u32>,
    /// `RE`: this directory was relocated here; it is shown at its `CL`.
    pub relocated: bool,
    /// `ZF`: zisofs-compressed contents.
    pub zisofs: bool,
}

pub(crate) const S_IFMT: u32 = 0o170000;
pub(crate) const S_IFLNK: u32 = 0o120000;

impl RockRidge {
    /// Reads the Rock Ridge entries of a record whose System Use area is
    /// `area`, skipping the first `skip` bytes (the `SP` entry's `LEN_SKP`).
    pub(crate) fn read(
        src: &dyn ByteSource,
        block_size: u64,
        area: &[u8],
        area_offset: u64,
        skip: u8,
    ) -> Result<RockRidge, Error> {
        let skip = usize::from(skip).min(area.len());
        let mut rr = RockRidge::default();
        let mut link = SymlinkBuilder::default();
        entries(
            src,
            block_size,
            &area[skip..],
            area_offset + skip as u64,
            |sig, data, _offset| {
                match &sig {
                    b"NM" if !data.is_empty() => {
                        let flags = data[0];
                        if flags & 0b110 != 0 {
                            rr.dot = true;
                        }
                        rr.name
                            .get_or_insert_with(Vec::new)
                            .extend_from_slice(&data[1..]);
                    }
                    b"SL" if !data.is_empty() => link.add(&data[1..]),
                    b"PX" if data.len() >= 4 => rr.mode = Some(le32(&data[0..4])),
                    b"CL" if data.len() >= 4 => rr.child_link = Some(le32(&data[0..4])),
                    b"RE" => rr.relocated = true,
                    b"ZF" => rr.zisofs = true,
                    _ => {}
                }
                Ok(())
            },
        )?;
        rr.symlink = link.finish();
        Ok(rr)
    }
}

/// Assembles an `SL` target from its component records, which may be split
/// across several `SL` entries (and continuation areas).
#[derive(Default)]
struct SymlinkBuilder {
    parts: Vec<String>,
    glue_next: bool,
    any: bool,
}

impl SymlinkBuilder {
    fn add(&mut self, mut comps: &[u8]) {
        self.any = true;
        while comps.len() >= 2 {
            let flags = comps[0];
            let len = usize::from(comps[1]);
            let Some(content) = comps.get(2..2 + len) else {
                break;
            };
            let text: String = if flags & 0x02 != 0 {
                ".".into()
            } else if flags & 0x04 != 0 {
                "..".into()
            } else if flags & 0x08 != 0 {
                // ROOT: an absolute link; the empty part makes a leading '/'.
                String::new()
            } else {
                String::from_utf8_lossy(content).into_owned()
            };
            match self.parts.last_mut() {
                Some(last) if self.glue_next => last.push_str(&text),
                _ => self.parts.push(text),
            }
            self.glue_next = flags & 0x01 != 0;
            comps = &comps[2 + len..];
        }
    }

    fn finish(self) -> Option<String> {
        if !self.any {
            return None;
        }
        if self.parts.len() == 1 && self.parts[0].is_empty() {
            return Some("/".into());
        }
        Some(self.parts.join("/"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sl(builder: &mut SymlinkBuilder, comps: &[(u8, &str)]) {
        let mut b = Vec::new();
        for (f, s) in comps {
            b.push(*f);
            b.push(s.len() as u8);
            b.extend(s.as_bytes());
        }
        builder.add(&b);
    }

    #[test]
    fn symlink_components() {
        let mut b = SymlinkBuilder::default();
        sl(&mut b, &[(8, ""), (0, "usr"), (0, "lib")]);
        assert_eq!(b.finish().unwrap(), "/usr/lib");
        let mut b = SymlinkBuilder::default();
        sl(&mut b, &[(4, ""), (0, "a"), (1, "lo")]);
        sl(&mut b, &[(0, "ng"), (2, "")]);
        assert_eq!(b.finish().unwrap(), "../a/long/.");
        let mut b = SymlinkBuilder::default();
        sl(&mut b, &[(8, "")]);
        assert_eq!(b.finish().unwrap(), "/");
    }

    #[test]
    fn ce_loop_is_an_error() {
        // A CE entry pointing at itself: block 0, offset 0, length 28.
        let mut img = vec![0u8; 4096];
        let ce: [u8; 28] = {
            let mut e = [0u8; 28];
            e[..4].copy_from_slice(b"CE\x1c\x01");
            e[20..24].copy_from_slice(&28u32.to_le_bytes());
            e
        };
        img[..28].copy_from_slice(&ce);
        let err = entries(&img, 2048, &ce, 0, |_, _, _| Ok(())).unwrap_err();
        assert!(matches!(err, Error::Malformed { .. }), "{err}");
    }
}
