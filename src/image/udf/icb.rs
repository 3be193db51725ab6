//! File entries (ECMA-167 4/14.9) and extended file entries (4/14.17), and
//! their allocation descriptors: where a file's bytes are.
//!
//! A file entry carries its allocation descriptors (short, long or extended)
//! or, for small files, the data itself ("embedded", in the ICB). A list of
//! descriptors may continue in an allocation extent descriptor elsewhere
//! (extent type 3); we follow such continuations with a cap on their number
//! and a check that none is visited twice. Extents that are allocated but not
//! recorded (type 1) or neither (type 2) read as zeros.

use std::collections::HashSet;

use super::malformed;
use super::space::Space;
use super::tag::{self, id};
use crate::image::{Error, Run};

/// The most allocation descriptors one file may have. A 6 GiB `install.wim`
/// needs about six; fragmented files on rewritable media a few thousand.
pub(crate) const MAX_ADS: usize = 1 << 18;

/// The most allocation extent descriptors (continuation blocks) we follow for
/// one file.
pub(crate) const MAX_AEDS: usize = 4096;

/// File types from the ICB tag (ECMA-167 4/14.6.6) that we act on.
pub(crate) mod file_type {
    pub const UNSPECIFIED: u8 = 0;
    pub const DIRECTORY: u8 = 4;
    pub const FILE: u8 = 5;
    pub const SYMLINK: u8 = 12;
    pub const REALTIME: u8 = 249;
}

/// A decoded file entry.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub file_type: u8,
    /// The information length: the file's size in bytes.
    pub size: u64,
    /// Where the `size` bytes lie, in order.
    pub runs: Vec<Run>,
}

/// Appends `run`, merging it with the previous run when they are contiguous.
pub(crate) fn push_run(runs: &mut Vec<Run>, run: Run) {
    if run.is_empty() {
        return;
    }
    match (runs.last_mut(), run) {
        (
            Some(Run::Data { offset, len }),
            Run::Data {
                offset: o2,
                len: l2,
            },
        ) if *offset + *len == o2 => *len += l2,
        (Some(Run::Zeros { len }), Run::Zeros { len: l2 }) => *len += l2,
        _ => runs.push(run),
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or_default())
}

/// One allocation descriptor, whatever its on-disk form.
struct Ad {
    kind: u8,
    len: u64,
    part: u16,
    lbn: u32,
    /// For extended ADs: how many of `len` bytes are recorded.
    recorded: u64,
}

/// Reads the file entry or extended file entry at block `lbn` of partition
/// `part` and resolves where its data lies.
pub(crate) fn read(space: &Space, part: u16, lbn: u32) -> Result<Entry, Error> {
    let (off, buf) = space.read_block(part, lbn, "UDF file entry")?;
    let tag = tag::check(&buf, off, &[id::FE, id::EFE], Some(lbn))?;
    let _ = tag.crc_len;
    let strategy = u16_at(&buf, 20);
    if strategy != 4 {
        return Err(malformed(
            off,
            format!("ICB strategy {strategy} is not supported (read-only media use strategy 4)"),
        ));
    }
    let file_type = buf[27];
    let ad_type = u16_at(&buf, 34) & 7;
    let (ea_at, base) = if tag.id == id::FE {
        (168, 176)
    } else {
        (208, 216)
    };
    let size = u64_at(&buf, 56);
    let ea_len = u64::from(u32_at(&buf, ea_at));
    let ad_len = u64::from(u32_at(&buf, ea_at + 4));
    let ad_start = base as u64 + ea_len;
    let ad_end = ad_start + ad_len;
    if ad_end > buf.len() as u64 {
        return Err(malformed(
            off,
            format!(
                "file entry's extended attributes ({ea_len} bytes) and allocation descriptors ({ad_len} bytes) overflow its {}-byte block",
                buf.len()
            ),
        ));
    }
    let area = &buf[ad_start as usize..ad_end as usize];
    let runs = match ad_type {
        3 => {
            if size > ad_len {
                return Err(malformed(
                    off,
                    format!("embedded file data is {ad_len} bytes but the file claims {size}"),
                ));
            }
            let mut runs = Vec::new();
            push_run(
                &mut runs,
                Run::Data {
                    offset: off + ad_start,
                    len: size,
                },
            );
            runs
        }
        0..=2 => resolve(space, part, off, ad_type, area, size)?,
        other => {
            return Err(malformed(
                off,
                format!("unknown allocation descriptor type {other} in ICB flags"),
            ))
        }
    };
    Ok(Entry {
        file_type,
        size,
        runs,
    })
}

/// Follows the allocation descriptors in `area` (and their continuations)
/// until they cover `size` bytes.
fn resolve(
    space: &Space,
    icb_part: u16,
    fe_offset: u64,
    ad_type: u16,
    first_area: &[u8],
    size: u64,
) -> Result<Vec<Run>, Error> {
    let ad_size = match ad_type {
        0 => 8,
        1 => 16,
        _ => 20,
    };
    let parse = |b: &[u8], area_part: u16| -> Ad {
        let raw = u32_at(b, 0);
        let kind = (raw >> 30) as u8;
        let len = u64::from(raw & 0x3fff_ffff);
        match ad_type {
            0 => Ad {
                kind,
                len,
                part: area_part,
                lbn: u32_at(b, 4),
                recorded: len,
            },
            1 => Ad {
                kind,
                len,
                part: u16_at(b, 8),
                lbn: u32_at(b, 4),
                recorded: len,
            },
            _ => Ad {
                kind,
                len,
                part: u16_at(b, 16),
                lbn: u32_at(b, 12),
                recorded: u64::from(u32_at(b, 4) & 0x3fff_ffff),
            },
        }
    };
    let mut runs = Vec::new();
    let mut remaining = size;
    let mut count = 0usize;
    let mut seen = HashSet::new();
    let mut area = first_area.to_vec();
    let mut area_part = icb_part;
    let mut area_offset = fe_offset;
    loop {
        let mut next = None;
        for chunk in area.chunks_exact(ad_size) {
            if remaining == 0 {
                break;
            }
            let ad = parse(chunk, area_part);
            if ad.len == 0 {
                break;
            }
            if ad.kind == 3 {
                next = Some((ad.part, ad.lbn));
                break;
            }
            count += 1;
            if count > MAX_ADS {
                return Err(Error::TooLarge {
                    what: "UDF allocation descriptor list (entries)",
                    size: count as u64,
                    limit: MAX_ADS as u64,
                });
            }
            let take = ad.len.min(remaining);
            match ad.kind {
                0 => {
                    let rec = ad.recorded.min(take);
                    for r in space.map(ad.part, ad.lbn, rec)? {
                        push_run(&mut runs, r);
                    }
                    push_run(&mut runs, Run::Zeros { len: take - rec });
                }
                _ => push_run(&mut runs, Run::Zeros { len: take }),
            }
            remaining -= take;
        }
        if remaining == 0 {
            return Ok(runs);
        }
        let Some((part, lbn)) = next else {
            return Err(malformed(
                area_offset,
                format!(
                    "allocation descriptors cover only {} of the file's {size} bytes",
                    size - remaining
                ),
            ));
        };
        if !seen.insert((part, lbn)) {
            return Err(Error::Loop {
                path: format!(
                    "allocation extent descriptor at block {lbn} of partition {part} (continuation chain revisits it)"
                ),
            });
        }
        if seen.len() > MAX_AEDS {
            return Err(Error::TooLarge {
                what: "UDF allocation extent descriptor chain (blocks)",
                size: seen.len() as u64,
                limit: MAX_AEDS as u64,
            });
        }
        let (off, blk) = space.read_block(part, lbn, "UDF allocation extent descriptor")?;
        tag::check(&blk, off, &[id::AED], Some(lbn))?;
        let len = u32_at(&blk, 20) as usize;
        let body = blk.get(24..24 + len).ok_or_else(|| {
            malformed(
                off,
                format!("allocation extent descriptor claims {len} bytes of descriptors, more than its block holds"),
            )
        })?;
        area = body.to_vec();
        area_part = part;
        area_offset = off;
    }
}
