//! The volume descriptor set (ECMA-119 §8): the sectors from 16 on that name
//! the volumes in the image, up to the set terminator.
//!
//! We keep the Primary Volume Descriptor (the plain ISO 9660 and Rock Ridge
//! tree) and a Supplementary Volume Descriptor whose escape sequences mark it
//! as Joliet. Boot records and partition descriptors are skipped here: El
//! Torito is read by `image::eltorito`.

use super::record::Record;
use crate::image::descriptors;
use crate::image::{ByteSource, Error};

pub(crate) use crate::image::descriptors::SECTOR;

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
    /// Volume creation date and time (ECMA-119 §8.4.26), in seconds since
    /// the Unix epoch; `None` when not specified or not a valid date.
    pub created: Option<i64>,
    /// Volume modification date and time (§8.4.27), as `created`.
    pub modified: Option<i64>,
}

/// The volumes of the set that we can read.
#[derive(Clone, Debug, Default)]
pub(crate) struct Descriptors {
    pub primary: Option<Volume>,
    pub joliet: Option<Volume>,
}

/// Reads the volume descriptor set (`image::descriptors`). `Ok(None)` when
/// there is no ISO 9660 descriptor at sector 16 (a disk image, or UDF
/// without the bridge).
pub(crate) fn read(src: &dyn ByteSource) -> Result<Option<Descriptors>, Error> {
    let set = descriptors::read(src)?;
    if !set.iso9660_present {
        return Ok(None);
    }
    let found = Descriptors {
        primary: set
            .primary()
            .map(|d| volume(&d.bytes[..], d.offset, false))
            .transpose()?,
        joliet: set
            .joliet()
            .map(|d| volume(&d.bytes[..], d.offset, true))
            .transpose()?,
    };
    if found.primary.is_none() && found.joliet.is_none() {
        return Err(Error::Malformed {
            format: "ISO 9660",
            offset: descriptors::START,
            detail: "the volume descriptor set has neither a primary nor a Joliet descriptor"
                .into(),
        });
    }
    Ok(Some(found))
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
        created: dec_datetime(&d[813..830]),
        modified: dec_datetime(&d[830..847]),
    })
}

/// A volume descriptor date and time (ECMA-119 §8.4.26.1): 16 ASCII digits
/// `YYYYMMDDhhmmsscc` (local time) and one signed byte, the offset from
/// GMT in 15-minute intervals (-48..=52), as seconds since the Unix epoch.
/// "Not specified" (all digits `0`, offset 0) and anything that is not a
/// real date (non-digits, month 13, an offset out of range) is `None`.
pub(crate) fn dec_datetime(b: &[u8]) -> Option<i64> {
    let field = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = &b[range];
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(
            digits
                .iter()
                .fold(0i64, |n, d| n * 10 + i64::from(d - b'0')),
        )
    };
    let (year, month, day) = (field(0..4)?, field(4..6)?, field(6..8)?);
    let (hour, minute, second) = (field(8..10)?, field(10..12)?, field(12..14)?);
    field(14..16)?;
    let offset = i64::from(b[16] as i8);
    if year == 0 || !(1..=12).contains(&month) || !(-48..=52).contains(&offset) {
        return None;
    }
    if !(1..=days_in_month(year, month)).contains(&day) || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let local = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    Some(local - offset * 15 * 60)
}

/// A directory record's 7-byte date (ECMA-119 §9.1.5: years since 1900,
/// month, day, hour, minute, second, offset from GMT in 15-minute units) in
/// Unix seconds. All zeros ("not specified") or anything that is not a
/// real date is `None`.
pub(crate) fn record_datetime(b: &[u8; 7]) -> Option<i64> {
    let [years, month, day, hour, minute, second, _] = b.map(i64::from);
    let offset = i64::from(b[6] as i8);
    let year = 1900 + years;
    if !(1..=12).contains(&month) || !(-48..=52).contains(&offset) {
        return None;
    }
    if !(1..=days_in_month(year, month)).contains(&day) || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let local = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    Some(local - offset * 15 * 60)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::{dec_datetime, record_datetime};

    #[test]
    fn record_dates_convert_to_unix_seconds() {
        // 2001-09-09 01:46:40 UTC, and the same instant written one hour east.
        assert_eq!(
            record_datetime(&[101, 9, 9, 1, 46, 40, 0]),
            Some(1_000_000_000)
        );
        assert_eq!(
            record_datetime(&[101, 9, 9, 2, 46, 40, 4]),
            Some(1_000_000_000)
        );
        assert_eq!(record_datetime(&[69, 12, 31, 23, 59, 59, 0]), Some(-1));
        assert_eq!(record_datetime(&[0; 7]), None);
        assert_eq!(record_datetime(&[101, 2, 29, 0, 0, 0, 0]), None);
        assert_eq!(record_datetime(&[101, 9, 9, 24, 0, 0, 0]), None);
        assert_eq!(record_datetime(&[101, 9, 9, 0, 0, 0, 53]), None);
    }

    fn field(text: &str, offset: i8) -> [u8; 17] {
        let mut b = [0u8; 17];
        b[..16].copy_from_slice(text.as_bytes());
        b[16] = offset as u8;
        b
    }

    #[test]
    fn dates_convert_to_unix_seconds() {
        // `date -u -d 2024-02-29T12:34:56 +%s`
        assert_eq!(
            dec_datetime(&field("2024022912345600", 0)),
            Some(1_709_210_096)
        );
        // Local 13:34:56 at GMT+1 (4 quarter hours) is the same instant.
        assert_eq!(
            dec_datetime(&field("2024022913345699", 4)),
            Some(1_709_210_096)
        );
        // GMT-12 (-48): 00:00 local is 12:00 UTC.
        assert_eq!(dec_datetime(&field("1970010100000000", -48)), Some(43_200));
    }

    #[test]
    fn unspecified_and_invalid_dates_are_none() {
        assert_eq!(dec_datetime(&field("0000000000000000", 0)), None);
        assert_eq!(dec_datetime(&[0u8; 17]), None);
        assert_eq!(dec_datetime(&field("2023022912000000", 0)), None);
        assert_eq!(dec_datetime(&field("2024130112000000", 0)), None);
        assert_eq!(dec_datetime(&field("2024010124000000", 0)), None);
        assert_eq!(dec_datetime(&field("2024010112000000", 53)), None);
        assert_eq!(dec_datetime(&field("20240101 2000000", 0)), None);
    }
}
