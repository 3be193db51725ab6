//! The 16-byte descriptor tag that starts every UDF descriptor (ECMA-167
//! 3/7.2), and the checks that make a block a descriptor we trust.
//!
//! We check, as the Linux kernel does: the tag checksum (always), the tag
//! identifier (always), the tag location (for every descriptor read at a known
//! block; not for file identifier descriptors, whose location field writers
//! get wrong more often than anything else and which we find by walking the
//! directory anyway) and the descriptor CRC whenever the CRC-covered bytes lie
//! inside what we read. A mismatch is an error: a block that fails these
//! checks is not the descriptor the image says it is.

use super::malformed;
use crate::image::Error;

/// Tag identifiers (ECMA-167 3/7.2.1 and 4/7.2.1).
pub(crate) mod id {
    pub const PVD: u16 = 1;
    pub const AVDP: u16 = 2;
    pub const VDP: u16 = 3;
    pub const PD: u16 = 5;
    pub const LVD: u16 = 6;
    pub const TD: u16 = 8;
    pub const FSD: u16 = 256;
    pub const FID: u16 = 257;
    pub const AED: u16 = 258;
    pub const FE: u16 = 261;
    pub const EFE: u16 = 266;
}

/// The size of a descriptor tag.
pub(crate) const TAG_LEN: usize = 16;

/// A checked descriptor tag.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tag {
    pub id: u16,
    pub crc_len: u16,
}

/// CRC-ITU-T (polynomial 0x1021, initial value 0, not reflected), as
/// ECMA-167 3/7.2.6 specifies for descriptor CRCs: the catalogue's
/// CRC-16/XMODEM.
pub(crate) fn crc_itu(data: &[u8]) -> u16 {
    const CRC: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_XMODEM);
    CRC.checksum(data)
}

/// The name of a tag identifier for error messages.
fn name(tag: u16) -> &'static str {
    match tag {
        id::PVD => "primary volume descriptor",
        id::AVDP => "anchor volume descriptor pointer",
        id::VDP => "volume descriptor pointer",
        id::PD => "partition descriptor",
        id::LVD => "logical volume descriptor",
        id::TD => "terminating descriptor",
        id::FSD => "file set descriptor",
        id::FID => "file identifier descriptor",
        id::AED => "allocation extent descriptor",
        id::FE => "file entry",
        id::EFE => "extended file entry",
        _ => "descriptor",
    }
}

/// Checks the tag at the start of `buf` (read from image byte `offset`): its
/// checksum, that its identifier is one of `expect`, its location when
/// `location` is given, and its CRC when the CRC-covered bytes lie in `buf`.
pub(crate) fn check(
    buf: &[u8],
    offset: u64,
    expect: &[u16],
    location: Option<u32>,
) -> Result<Tag, Error> {
    let want = || {
        expect
            .iter()
            .map(|&t| format!("{} (tag {t})", name(t)))
            .collect::<Vec<_>>()
            .join(" or ")
    };
    if buf.len() < TAG_LEN {
        return Err(malformed(offset, format!("too short for {}", want())));
    }
    let sum = buf[..4]
        .iter()
        .chain(&buf[5..TAG_LEN])
        .fold(0u8, |a, &b| a.wrapping_add(b));
    let id = u16::from_le_bytes([buf[0], buf[1]]);
    if sum != buf[4] {
        return Err(malformed(
            offset,
            format!(
                "expected a {}, but the tag checksum is wrong (stored {:#04x}, computed {sum:#04x})",
                want(),
                buf[4]
            ),
        ));
    }
    if !expect.contains(&id) {
        return Err(malformed(
            offset,
            format!("expected a {}, found tag identifier {id}", want()),
        ));
    }
    let stored_loc = u32::from_le_bytes(buf[12..16].try_into().unwrap_or_default());
    if let Some(loc) = location {
        if stored_loc != loc {
            return Err(malformed(
                offset,
                format!(
                    "{} records its location as block {stored_loc} but was read from block {loc}",
                    name(id)
                ),
            ));
        }
    }
    let crc = u16::from_le_bytes([buf[8], buf[9]]);
    let crc_len = u16::from_le_bytes([buf[10], buf[11]]);
    if let Some(covered) = buf.get(TAG_LEN..TAG_LEN + usize::from(crc_len)) {
        let computed = crc_itu(covered);
        if computed != crc {
            return Err(malformed(
                offset,
                format!(
                    "{} CRC mismatch over {crc_len} bytes (stored {crc:#06x}, computed {computed:#06x})",
                    name(id)
                ),
            ));
        }
    }
    Ok(Tag { id, crc_len })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_matches_the_ecma_167_example() {
        // ECMA-167 3/7.2.6: the CRC of the bytes 70 6A 77 is 0x3299.
        assert_eq!(crc_itu(&[0x70, 0x6a, 0x77]), 0x3299);
    }

    #[test]
    fn rejects_bad_checksum_and_wrong_id() {
        let mut b = [0u8; 32];
        b[0] = 2;
        b[4] = 2;
        assert!(check(&b, 0, &[id::AVDP], None).is_ok());
        assert!(check(&b, 0, &[id::PVD], None).is_err());
        b[4] = 3;
        assert!(check(&b, 0, &[id::AVDP], None).is_err());
    }
}
