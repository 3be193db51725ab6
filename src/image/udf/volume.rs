//! Finding the UDF volume: the volume recognition sequence (ECMA-167 2/8.3),
//! the anchor volume descriptor pointer (3/10.2), and the volume descriptor
//! sequence (3/8.4) with its primary volume, partition and logical volume
//! descriptors.

use std::collections::HashSet;
use std::sync::Arc;

use super::tag::{self, id};
use super::{cs0, malformed};
use crate::image::{ByteSource, Error};

/// Byte offset of the volume recognition sequence: after the 32 KiB system area.
const VRS_START: u64 = crate::image::descriptors::START;
/// How many sectors of one volume descriptor sequence we read at most. The
/// spec asks for at least 16; writers use 16 or 32.
const VDS_MAX_SECTORS: u64 = 256;
/// How many volume descriptor pointers (VDS continuations) we follow.
const VDS_MAX_HOPS: usize = 16;
/// The most partition maps we accept in a logical volume descriptor.
const MAX_PARTITION_MAPS: u32 = 64;

pub(crate) use crate::image::descriptors::{recognize, Recognition};

/// A partition map of the logical volume, before the metadata file is read.
#[derive(Clone, Debug)]
pub(crate) enum PartMap {
    Physical {
        start: u64,
        blocks: u64,
    },
    Metadata {
        start: u64,
        blocks: u64,
        file: u32,
        mirror: u32,
    },
}

/// The logical volume as the volume descriptor sequence describes it.
#[derive(Clone, Debug)]
pub(crate) struct Volume {
    pub block: u64,
    pub label: String,
    /// The domain's UDF revision (0x0102, 0x0250, …).
    pub revision: u16,
    pub maps: Vec<PartMap>,
    /// Partition reference and block of the file set descriptor.
    pub fsd: (u16, u32),
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Finds the anchors for sector size `sector`: at sector 256, the last
/// sector, sector N−257 and sector 512. Returns each valid anchor's (main,
/// reserve) VDS extents, in that order, with the anchor's byte offset.
fn anchors(src: &dyn ByteSource, sector: u64) -> Vec<(u64, [(u64, u64); 2])> {
    let n = src.len() / sector;
    let mut candidates = vec![256u64];
    if n > 0 {
        candidates.push(n - 1);
    }
    if n > 257 {
        candidates.push(n - 257);
    }
    candidates.push(512);
    candidates.dedup();
    let mut found = Vec::new();
    for s in candidates {
        let mut buf = vec![0u8; 512.min(sector) as usize];
        if src
            .read_exact_at(s * sector, &mut buf, "UDF anchor volume descriptor pointer")
            .is_err()
        {
            continue;
        }
        let Ok(loc) = u32::try_from(s) else { continue };
        if tag::check(&buf, s * sector, &[id::AVDP], Some(loc)).is_ok() {
            let ext = |at| (u64::from(u32_at(&buf, at + 4)), u64::from(u32_at(&buf, at)));
            found.push((s * sector, [ext(16), ext(24)]));
        }
    }
    found
}

/// Locates the anchors and reads the volume descriptor sequence: the main
/// one, then the reserve copy, of each anchor in turn (UDF 2.60 2.2.3: any
/// anchor may be used), so one damaged anchor or sequence does not hide an
/// intact copy. The first failure is reported when none works.
pub(crate) fn read(src: &Arc<dyn ByteSource>, rec: Recognition) -> Result<Volume, Error> {
    let sizes: &[u64] = if rec.stride == 4096 {
        &[4096]
    } else {
        &[2048, 512, 4096]
    };
    for &sector in sizes {
        let found = anchors(src.as_ref(), sector);
        let mut first_err = None;
        for (at, [main, reserve]) in found {
            for extent in [main, reserve] {
                match sequence(src.as_ref(), sector, at, extent) {
                    Ok(v) => return Ok(v),
                    Err(e) => {
                        first_err.get_or_insert(e);
                    }
                }
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
    }
    Err(malformed(
        VRS_START,
        "the UDF volume recognition sequence is present but no anchor volume descriptor pointer was found at sector 256, N-1, N-257 or 512 (for 2048-, 512- or 4096-byte sectors)".into(),
    ))
}

/// Reads one volume descriptor sequence starting at extent (`loc`, `len`) in sectors/bytes.
fn sequence(
    src: &dyn ByteSource,
    sector: u64,
    anchor: u64,
    (loc, len): (u64, u64),
) -> Result<Volume, Error> {
    // Where the extent being read was found: the anchor, then a VDP.
    let mut from = anchor;
    let mut pvd: Option<(u32, Vec<u8>)> = None;
    let mut lvd: Option<(u32, u64, Vec<u8>)> = None;
    let mut pds: Vec<(u32, u16, u64, u64)> = Vec::new();
    let mut extent = (loc, len);
    let mut seen = HashSet::new();
    'hops: for _ in 0..VDS_MAX_HOPS {
        if !seen.insert(extent.0) {
            return Err(Error::Loop {
                path: format!("UDF volume descriptor sequence at sector {}", extent.0),
            });
        }
        // A sequence placed past the image's end is a damaged pointer (the
        // image itself may be whole), not a read to fail as truncated.
        if extent.0.saturating_mul(sector).saturating_add(sector) > src.len() {
            return Err(malformed(
                from,
                format!(
                    "the {} at byte {from} places the volume descriptor sequence at sector {}, past the end of the image ({} bytes): the UDF structures are damaged",
                    if from == anchor { "anchor" } else { "volume descriptor pointer" },
                    extent.0,
                    src.len()
                ),
            ));
        }
        let sectors = (extent.1 / sector).min(VDS_MAX_SECTORS);
        for i in 0..sectors {
            let s = extent.0 + i;
            let off = s * sector;
            let buf = src.read_vec(off, sector, sector, "UDF volume descriptor")?;
            if buf.iter().all(|&b| b == 0) {
                break 'hops;
            }
            let loc =
                u32::try_from(s).map_err(|_| malformed(off, "sector number overflows".into()))?;
            let t = tag::check(&buf, off, &[1, 2, 3, 4, 5, 6, 7, 8], Some(loc))?;
            let vdsn = u32_at(&buf, 16);
            match t.id {
                id::TD => break 'hops,
                id::VDP => {
                    from = off;
                    extent = (u64::from(u32_at(&buf, 24)), u64::from(u32_at(&buf, 20)));
                    continue 'hops;
                }
                id::PVD if pvd.as_ref().is_none_or(|p| p.0 <= vdsn) => pvd = Some((vdsn, buf)),
                id::LVD if lvd.as_ref().is_none_or(|l| l.0 <= vdsn) => lvd = Some((vdsn, off, buf)),
                id::PD => {
                    let number = u16_at(&buf, 22);
                    let start = u64::from(u32_at(&buf, 188));
                    let blocks = u64::from(u32_at(&buf, 192));
                    match pds.iter_mut().find(|p| p.1 == number) {
                        Some(p) if p.0 <= vdsn => *p = (vdsn, number, start, blocks),
                        Some(_) => {}
                        None => pds.push((vdsn, number, start, blocks)),
                    }
                }
                _ => {}
            }
        }
        break;
    }
    let at = loc * sector;
    let (_, lvd_off, lvd) = lvd.ok_or_else(|| {
        malformed(
            at,
            "volume descriptor sequence has no logical volume descriptor".into(),
        )
    })?;
    let block = u64::from(u32_at(&lvd, 212));
    if block != sector {
        return Err(malformed(
            lvd_off,
            format!("logical block size {block} differs from the sector size {sector}; UDF requires them equal"),
        ));
    }
    let revision = u16_at(&lvd, 216 + 24);
    let label = {
        let l = cs0::dstring(&lvd[84..212]);
        if l.is_empty() {
            pvd.map(|(_, p)| cs0::dstring(&p[24..56]))
                .unwrap_or_default()
        } else {
            l
        }
    };
    let fsd = (u16_at(&lvd, 248 + 8), u32_at(&lvd, 248 + 4));
    let table_len = u32_at(&lvd, 264) as usize;
    let count = u32_at(&lvd, 268);
    if count == 0 || count > MAX_PARTITION_MAPS {
        return Err(malformed(
            lvd_off,
            format!(
                "logical volume has {count} partition maps (expected 1 to {MAX_PARTITION_MAPS})"
            ),
        ));
    }
    let table = lvd.get(440..440 + table_len).ok_or_else(|| {
        malformed(
            lvd_off,
            format!("partition map table of {table_len} bytes overflows the descriptor"),
        )
    })?;
    let pd = |number: u16| {
        pds.iter()
            .find(|p| p.1 == number)
            .map(|p| (p.2 * sector, p.3))
            .ok_or_else(|| {
                malformed(
                    lvd_off,
                    format!(
                        "partition map names partition {number}, which has no partition descriptor"
                    ),
                )
            })
    };
    let mut maps = Vec::new();
    let mut pos = 0usize;
    for _ in 0..count {
        let (kind, len) = match table.get(pos..pos + 2) {
            Some(h) => (h[0], usize::from(h[1])),
            None => {
                return Err(malformed(
                    lvd_off + 440 + pos as u64,
                    "partition map table ends early".into(),
                ))
            }
        };
        let map = table
            .get(pos..pos + len)
            .filter(|_| len >= 6)
            .ok_or_else(|| {
                malformed(
                    lvd_off + 440 + pos as u64,
                    format!("partition map of length {len} does not fit"),
                )
            })?;
        match kind {
            1 => {
                let (start, blocks) = pd(u16_at(map, 4))?;
                maps.push(PartMap::Physical { start, blocks });
            }
            2 if len >= 64 => {
                let ident = &map[5..28];
                if ident.starts_with(b"*UDF Metadata Partition") {
                    let (start, blocks) = pd(u16_at(map, 38))?;
                    maps.push(PartMap::Metadata {
                        start,
                        blocks,
                        file: u32_at(map, 40),
                        mirror: u32_at(map, 44),
                    });
                } else {
                    let name = String::from_utf8_lossy(ident)
                        .trim_end_matches('\0')
                        .to_owned();
                    return Err(malformed(
                        lvd_off + 440 + pos as u64,
                        format!("partition map type {name:?} is not supported (only physical and metadata partitions; virtual and sparable ones are for CD-R/RW media, not installer images)"),
                    ));
                }
            }
            other => {
                return Err(malformed(
                    lvd_off + 440 + pos as u64,
                    format!("unknown partition map type {other} (length {len})"),
                ))
            }
        }
        pos += len;
    }
    Ok(Volume {
        block,
        label,
        revision,
        maps,
        fsd,
    })
}

/// How many sectors past the last known UDF structure are searched for the
/// closing anchor (UDF 2.60 2.2.3 puts one at N−257 and/or N−1, so an
/// anchor at N−1 lies at most 256 sectors after the one at N−257).
const TRAILING_ANCHOR_SEARCH: u64 = 257;

/// Where the UDF volume's structures end, in bytes: the furthest of the
/// partitions' ends, the volume descriptor sequences (main and reserve) and
/// the anchors, then the last anchor found within
/// [`TRAILING_ANCHOR_SEARCH`] sectors after that (the closing anchor at
/// N−1 sits past everything else; on a disc whose drive reports run-out
/// sectors beyond the volume, N−1 of the reported size is not it). The
/// search stops at the first unreadable sector: run-out sectors of a
/// recorded disc are often unreadable, and each failed read costs the
/// drive's own retries.
pub(crate) fn extent_end(src: &Arc<dyn ByteSource>, rec: Recognition) -> Result<u64, Error> {
    let vol = read(src, rec)?;
    let sector = vol.block;
    let mut end = 0u64;
    for m in &vol.maps {
        let (PartMap::Physical { start, blocks } | PartMap::Metadata { start, blocks, .. }) = *m;
        // `start` is a byte offset already (see `sequence`).
        end = end.max(start.saturating_add(blocks.saturating_mul(sector)));
    }
    for (at, extents) in anchors(src.as_ref(), sector) {
        end = end.max(at + sector);
        for (loc, len) in extents {
            end = end.max(loc.saturating_mul(sector).saturating_add(len));
        }
    }
    let n = src.len() / sector;
    let first = end.div_ceil(sector);
    let mut buf = vec![0u8; 512.min(sector) as usize];
    for s in first..first.saturating_add(TRAILING_ANCHOR_SEARCH).min(n) {
        if src.read_raw(s * sector, &mut buf).is_err() {
            break;
        }
        let Ok(loc) = u32::try_from(s) else { break };
        if tag::check(&buf, s * sector, &[id::AVDP], Some(loc)).is_ok() {
            end = (s + 1) * sector;
        }
    }
    Ok(end)
}
