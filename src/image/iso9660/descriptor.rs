//! The volume descriptor set (ECMA-119 §8): the sectors from 16 on that name
//! the volumes in the image, up to the set terminator.
//!
//! We keep the Primary Volume Descriptor (the plain ISO 9660 and Rock Ridge
//! tree) and a Supplementary Volume Descriptor whose escape sequences mark it
//! as Joliet. Boot records and partition descriptors are skipped here: El
//! Torito is read by `image::eltorito`.

use super::record::Record;
use crate::image::{ByteSource, Error};

/// Volume descriptors are always 2048-byte sectors, whatever the logical
/// block size says (ECMA-119 §6.1.2: the logical sector size of a CD).
pub(crate) const SECTOR: u64 = 2048;

/// The system area occupies sectors 0–15; the set starts at sector 16.
pub(crate) const VDS_START: u64 = 16 * SECTOR;

/// A real set has 2–5 descriptors. A hostile image without a terminator would
/// otherwise make us read the whole file.
const MAX_DESCRIPTORS: u64 = 64;

const TYPE_PRIMARY: u8 = 1;
const TYPE_SUPPLEMENTARY: u8 = 2;
const TYPE_TERMINATOR: u8 = 255;

/// One volume: where its root directory lies and what it is called.
#[derive(Clone, Debug)]
pub(crate) struct Volume {
    /// The volume identifier, trailing blanks removed.
    pub label: String,
    /// Logical block size: 512, 1024 or 2048 (almost always 2048).
    pub block_size: u64,
    /// Byte offset of the root directory extent.
    pub root_offset: u64,
    /// Length of the root directory in bytes.
    pub root_size: u64,
}

/// The volumes of the set that we can read.
#[derive(Clone, Debug, Default)]
pub(crate) struct Descriptors {
    pub primary: Option<Volume>,
    pub joliet: Option<Volume>,
}

/// Reads the volume descriptor set. `Ok(None)` when there is no ISO 9660
/// descriptor at sector 16 (a disk image, or UDF without the bridge).
pub(crate) fn read(src: &dyn ByteSource) -> Result<Option<Descriptors>, Error> {
    if src.len() < VDS_START + SECTOR {
        return Ok(None);
    }
    let mut found = Descriptors::default();
    let mut sector = [0u8; SECTOR as usize];
    for i in 0..MAX_DESCRIPTORS {
        let offset = VDS_START + i * SECTOR;
        src.read_exact_at(offset, &mut sector, "ISO 9660 volume descriptor")?;
        if &sector[1..6] != b"CD001" {
            if i == 0 {
                return Ok(None);
            }
            // A set that ends without a terminator (seen with old mastering
            // tools): what came before is still usable.
            break;
        }
        match sector[0] {
            TYPE_PRIMARY if found.primary.is_none() => {
                found.primary = Some(volume(&sector, offset, false)?);
            }
            TYPE_SUPPLEMENTARY if found.joliet.is_none() && is_joliet(&sector) => {
                found.joliet = Some(volume(&sector, offset, true)?);
            }
            TYPE_TERMINATOR => break,
            _ => {}
        }
    }
    if found.primary.is_none() && found.joliet.is_none() {
        return Err(Error::Malformed {
            format: "ISO 9660",
            offset: VDS_START,
            detail: "the volume descriptor set has neither a primary nor a Joliet descriptor"
                .into(),
        });
    }
    Ok(Some(found))
}

/// Joliet marks its supplementary descriptor with one of three ISO 2022
/// escape sequences at byte 88 (`%/@`, `%/C`, `%/E`: UCS-2 levels 1–3) and
/// volume flags bit 0 clear (only registered escape sequences).
fn is_joliet(d: &[u8]) -> bool {
    let esc = &d[88..120];
    let level_ok = matches!(&esc[..3], [0x25, 0x2F, 0x40 | 0x43 | 0x45]);
    level_ok && d[7] & 1 == 0
}

fn volume(d: &[u8], offset: u64, joliet: bool) -> Result<Volume, Error> {
    let malformed = |detail: String| Error::Malformed {
        format: if joliet { "Joliet" } else { "ISO 9660" },
        offset,
        detail,
    };
    let block_size = u64::from(u16::from_le_bytes([d[128], d[129]]));
    if !matches!(block_size, 512 | 1024 | 2048) {
        return Err(malformed(format!(
            "logical block size {block_size} (expected 512, 1024 or 2048)"
        )));
    }
    let root = Record::parse(&d[156..190], offset + 156)?;
    if !root.is_dir() {
        return Err(malformed(
            "the root directory record is not flagged as a directory".into(),
        ));
    }
    let id = &d[40..72];
    let label = if joliet {
        super::names::ucs2(id)
    } else {
        String::from_utf8_lossy(id).into_owned()
    };
    Ok(Volume {
        label: label.trim_end_matches([' ', '\0']).to_owned(),
        block_size,
        root_offset: root.data_offset(block_size),
        root_size: u64::from(root.size),
    })
}
