//! The volume descriptors after the 32 KiB system area, scanned once, the
//! same way for every reader: the ISO 9660 volume descriptor set
//! (ECMA-119 §8: primary, supplementary/Joliet, boot record, up to the set
//! terminator) and the UDF volume recognition sequence (ECMA-167 2/8.3:
//! `BEA01`, `NSR02`/`NSR03`, `TEA01`, which on a UDF bridge disc follows the
//! ISO 9660 set). The ISO 9660 reader, El Torito, the truncation check,
//! `inspect` and the UDF reader all ask this module, so they cannot disagree
//! about what an image is (they used to: one did not check Joliet's flags,
//! one accepted an `NSR` without a `BEA01`, one scanned only 2048-byte
//! strides).

use super::{ByteSource, Error};

/// Volume descriptors are 2048-byte sectors, whatever the logical block
/// size says (ECMA-119 §6.1.2).
pub const SECTOR: u64 = 2048;

/// The system area occupies sectors 0–15; descriptors start at sector 16.
pub const START: u64 = 16 * SECTOR;

/// A real image has 2–8 descriptors. A hostile one without a terminator
/// would otherwise make us read the whole file.
const MAX: u64 = 64;

/// ECMA-119 descriptor types.
pub const TYPE_BOOT_RECORD: u8 = 0;
pub const TYPE_PRIMARY: u8 = 1;
pub const TYPE_SUPPLEMENTARY: u8 = 2;
pub const TYPE_TERMINATOR: u8 = 255;

/// One ISO 9660 volume descriptor, whole.
#[derive(Clone)]
pub struct Descriptor {
    /// Byte offset in the image.
    pub offset: u64,
    pub bytes: Box<[u8; SECTOR as usize]>,
}

impl std::fmt::Debug for Descriptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Descriptor")
            .field("offset", &self.offset)
            .field("type", &self.kind())
            .finish()
    }
}

impl Descriptor {
    /// The descriptor type (byte 0).
    pub fn kind(&self) -> u8 {
        self.bytes[0]
    }

    /// A supplementary descriptor is Joliet when it carries one of the
    /// three ISO 2022 escape sequences for UCS-2 (`%/@`, `%/C`, `%/E`:
    /// levels 1–3) at byte 88 and its volume flags' bit 0 is clear (only
    /// registered escape sequences).
    pub fn is_joliet(&self) -> bool {
        let d = &self.bytes;
        self.kind() == TYPE_SUPPLEMENTARY
            && matches!(&d[88..91], [0x25, 0x2F, 0x40 | 0x43 | 0x45])
            && d[7] & 1 == 0
    }

    /// For an El Torito boot record: the boot catalog's block.
    pub fn el_torito_catalog(&self) -> Option<u32> {
        let d = &self.bytes;
        (self.kind() == TYPE_BOOT_RECORD && &d[7..30] == b"EL TORITO SPECIFICATION")
            .then(|| u32::from_le_bytes([d[71], d[72], d[73], d[74]]))
    }
}

/// What the UDF volume recognition sequence says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recognition {
    /// 2 for NSR02 (UDF ≤ 2.00), 3 for NSR03.
    pub nsr: u8,
    /// The spacing of the volume structure descriptors (2048 or 4096).
    pub stride: u64,
}

/// The descriptors of an image.
#[derive(Clone, Debug, Default)]
pub struct Descriptors {
    /// The ISO 9660 set: the `CD001` descriptors from sector 16 up to (not
    /// including) the terminator, or up to the first sector that is not one
    /// (a set without a terminator, seen with old mastering tools). Empty
    /// when sector 16 is not `CD001`.
    pub iso9660: Vec<Descriptor>,
    /// Sector 16 is an ISO 9660 descriptor (even if only a terminator).
    pub iso9660_present: bool,
    /// The UDF recognition sequence, when there is one.
    pub udf: Option<Recognition>,
}

impl Descriptors {
    /// The first primary volume descriptor.
    pub fn primary(&self) -> Option<&Descriptor> {
        self.iso9660.iter().find(|d| d.kind() == TYPE_PRIMARY)
    }

    /// The first Joliet supplementary descriptor.
    pub fn joliet(&self) -> Option<&Descriptor> {
        self.iso9660.iter().find(|d| d.is_joliet())
    }

    /// The El Torito boot catalog's block, from the first boot record that
    /// names El Torito.
    pub fn el_torito_catalog(&self) -> Option<u32> {
        self.iso9660.iter().find_map(Descriptor::el_torito_catalog)
    }
}

/// Reads the descriptors of `src`, in one pass over the 2048-byte sectors
/// from 32 KiB on (the ISO 9660 set and a UDF sequence at that stride);
/// only an image without a 2048-stride UDF sequence is scanned again at the
/// 4096-byte stride.
pub fn read(src: &dyn ByteSource) -> Result<Descriptors, Error> {
    let mut found = Descriptors::default();
    let mut in_set = true;
    let mut vrs = Sequence::default();
    for i in 0..MAX {
        let offset = START + i * SECTOR;
        if offset + SECTOR > src.len() {
            break;
        }
        let mut bytes = Box::new([0u8; SECTOR as usize]);
        src.read_exact_at(offset, &mut bytes[..], "volume descriptor")?;
        let id = &bytes[1..6];
        if in_set {
            in_set = id == b"CD001" && bytes[0] != TYPE_TERMINATOR;
            found.iso9660_present |= id == b"CD001";
        }
        let udf = vrs.step(id, SECTOR);
        if in_set {
            found.iso9660.push(Descriptor { offset, bytes });
        } else if udf != Step::Continue {
            if let Step::Recognized(r) = udf {
                found.udf = Some(r);
            }
            break;
        }
    }
    if found.udf.is_none() {
        found.udf = recognize_at(src, 4096)?;
    }
    Ok(found)
}

/// Where a scan of the UDF volume recognition sequence stands.
#[derive(Default)]
struct Sequence {
    /// Between `BEA01` and `TEA01`.
    in_extended: bool,
    nsr: Option<u8>,
}

#[derive(Debug, PartialEq, Eq)]
enum Step {
    Continue,
    Recognized(Recognition),
    /// An identifier that ends the sequence.
    Ended,
}

impl Sequence {
    /// Takes the next descriptor's identifier: `BEA01`, then `NSR02`/`NSR03`,
    /// then `TEA01` recognise UDF. Other standard identifiers (`CD001`,
    /// `CDW02`, `BOOT2`) may come between; anything else ends the sequence.
    fn step(&mut self, id: &[u8], stride: u64) -> Step {
        match id {
            b"BEA01" => self.in_extended = true,
            b"NSR02" if self.in_extended => self.nsr = Some(2),
            b"NSR03" if self.in_extended => self.nsr = Some(3),
            b"TEA01" if self.in_extended => {
                if let Some(nsr) = self.nsr {
                    return Step::Recognized(Recognition { nsr, stride });
                }
                self.in_extended = false;
            }
            b"CD001" | b"CDW02" | b"BOOT2" | b"NSR02" | b"NSR03" => {}
            _ => return Step::Ended,
        }
        Step::Continue
    }
}

/// Scans for the UDF volume recognition sequence with the 2048-byte stride
/// of optical media and the 4096-byte one of 4K-sector media (ECMA-167
/// 2/8.3: one descriptor per sector, at least 2048 bytes).
pub(crate) fn recognize(src: &dyn ByteSource) -> Result<Option<Recognition>, Error> {
    match recognize_at(src, SECTOR)? {
        Some(r) => Ok(Some(r)),
        None => recognize_at(src, 4096),
    }
}

fn recognize_at(src: &dyn ByteSource, stride: u64) -> Result<Option<Recognition>, Error> {
    let mut vrs = Sequence::default();
    for i in 0..MAX {
        let off = START + i * stride;
        if off + stride > src.len() {
            break;
        }
        let mut d = [0u8; 7];
        src.read_exact_at(off, &mut d, "UDF volume structure descriptor")?;
        match vrs.step(&d[1..6], stride) {
            Step::Continue => {}
            Step::Recognized(r) => return Ok(Some(r)),
            Step::Ended => break,
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vd(kind: u8, id: &[u8; 5]) -> Vec<u8> {
        let mut s = vec![0u8; SECTOR as usize];
        s[0] = kind;
        s[1..6].copy_from_slice(id);
        s[6] = 1;
        s
    }

    fn image(descriptors: &[Vec<u8>]) -> Vec<u8> {
        let mut v = vec![0u8; START as usize];
        for d in descriptors {
            v.extend_from_slice(d);
        }
        v.resize(v.len() + 4 * SECTOR as usize, 0);
        v
    }

    /// A UDF bridge image: the ISO 9660 set (primary, Joliet, boot record,
    /// terminator) and then the recognition sequence; every reader sees the
    /// same thing.
    #[test]
    fn a_bridge_image_has_both_and_the_set_ends_at_the_terminator() {
        let mut joliet = vd(TYPE_SUPPLEMENTARY, b"CD001");
        joliet[88..91].copy_from_slice(&[0x25, 0x2F, 0x45]);
        let mut boot = vd(TYPE_BOOT_RECORD, b"CD001");
        boot[7..30].copy_from_slice(b"EL TORITO SPECIFICATION");
        boot[71..75].copy_from_slice(&19u32.to_le_bytes());
        let img = image(&[
            vd(TYPE_PRIMARY, b"CD001"),
            joliet,
            boot,
            vd(TYPE_TERMINATOR, b"CD001"),
            vd(0, b"BEA01"),
            vd(0, b"NSR02"),
            vd(0, b"TEA01"),
            // After the terminator: not part of the set.
            vd(TYPE_PRIMARY, b"CD001"),
        ]);
        let d = read(&img).unwrap();
        assert_eq!(d.iso9660.len(), 3);
        assert_eq!(d.primary().unwrap().offset, START);
        assert_eq!(d.joliet().unwrap().offset, START + SECTOR);
        assert_eq!(d.el_torito_catalog(), Some(19));
        assert_eq!(
            d.udf,
            Some(Recognition {
                nsr: 2,
                stride: 2048
            })
        );
    }

    /// Joliet's escape sequence with the volume flags' bit 0 set is not
    /// Joliet (unregistered escape sequences), for every reader.
    #[test]
    fn joliet_needs_the_escape_and_a_clear_flag() {
        let mut svd = vd(TYPE_SUPPLEMENTARY, b"CD001");
        svd[88..91].copy_from_slice(&[0x25, 0x2F, 0x40]);
        svd[7] = 1;
        let d = read(&image(&[vd(TYPE_PRIMARY, b"CD001"), svd])).unwrap();
        assert!(d.joliet().is_none());
        assert!(d.primary().is_some());
    }

    /// An NSR without a BEA01 before it is no UDF volume; a 4096-byte
    /// stride sequence is one.
    #[test]
    fn udf_needs_the_extended_area_at_either_stride() {
        let d = read(&image(&[vd(0, b"NSR03"), vd(0, b"TEA01")])).unwrap();
        assert_eq!(d.udf, None);
        assert!(d.iso9660.is_empty());
        let mut v = vec![0u8; START as usize];
        for id in [b"BEA01", b"NSR03", b"TEA01"] {
            let mut s = vd(0, id);
            s.resize(4096, 0);
            v.extend_from_slice(&s);
        }
        v.resize(v.len() + 8192, 0);
        let d = read(&v).unwrap();
        assert_eq!(
            d.udf,
            Some(Recognition {
                nsr: 3,
                stride: 4096
            })
        );
    }

    /// A set without a terminator ends at the first sector that is not a
    /// descriptor; a hostile run of descriptors stops at the bound.
    #[test]
    fn the_set_is_bounded() {
        let d = read(&image(&[vd(TYPE_PRIMARY, b"CD001"), vd(0, b"XXXXX")])).unwrap();
        assert_eq!(d.iso9660.len(), 1);
        let many: Vec<Vec<u8>> = (0..200).map(|_| vd(3, b"CD001")).collect();
        let d = read(&image(&many)).unwrap();
        assert_eq!(d.iso9660.len(), MAX as usize);
    }
}
