//! Directory records (ECMA-119 §9.1) and the walk over a directory's extent.

use super::descriptor::SECTOR;
use crate::image::Error;

/// The fixed part of a directory record; the name follows.
const FIXED_LEN: usize = 33;

pub(crate) const FLAG_DIR: u8 = 0x02;
pub(crate) const FLAG_ASSOCIATED: u8 = 0x04;
/// Not the final record of the file: the next record continues it
/// (multi-extent files, how ISO 9660 stores files of 4 GiB and more).
pub(crate) const FLAG_MULTI_EXTENT: u8 = 0x80;

/// One directory record, borrowed from the directory buffer.
#[derive(Clone, Debug)]
pub(crate) struct Record<'a> {
    /// Byte offset of the record in the image.
    pub offset: u64,
    /// Logical block number of the extent.
    pub extent: u32,
    /// Blocks of extended attribute record before the file data.
    pub ext_attr_len: u8,
    /// Bytes of data in this extent.
    pub size: u32,
    pub flags: u8,
    /// Interleaved files (unit size or gap non-zero) scatter their data in a
    /// pattern we do not reassemble; they are refused when read.
    pub interleaved: bool,
    /// The file identifier as stored: `\0` is `.`, `\1` is `..`.
    pub name: &'a [u8],
    /// The System Use area, where SUSP/Rock Ridge entries live.
    pub system_use: &'a [u8],
    /// Byte offset of the System Use area in the image.
    pub system_use_offset: u64,
    /// The recording date and time (ECMA-119 §9.1.5), as stored.
    pub recorded: [u8; 7],
}

impl<'a> Record<'a> {
    /// Parses the record at the start of `buf` (which must hold exactly the
    /// record: `buf.len()` = the record's length byte).
    pub(crate) fn parse(buf: &'a [u8], offset: u64) -> Result<Record<'a>, Error> {
        let malformed = |detail: String| Error::Malformed {
            format: "ISO 9660 directory record",
            offset,
            detail,
        };
        if buf.len() < FIXED_LEN + 1 {
            return Err(malformed(format!(
                "record of {} bytes is shorter than the 34-byte minimum",
                buf.len()
            )));
        }
        let name_len = usize::from(buf[32]);
        let name_end = FIXED_LEN + name_len;
        if name_len == 0 || name_end > buf.len() {
            return Err(malformed(format!(
                "file identifier of {name_len} bytes does not fit in a record of {} bytes",
                buf.len()
            )));
        }
        // A padding byte follows an even-length identifier so that the
        // System Use area starts on an even offset.
        let su_start = (name_end + usize::from(name_len % 2 == 0)).min(buf.len());
        Ok(Record {
            offset,
            extent: u32::from_le_bytes([buf[2], buf[3], buf[4], buf[5]]),
            ext_attr_len: buf[1],
            size: u32::from_le_bytes([buf[10], buf[11], buf[12], buf[13]]),
            flags: buf[25],
            interleaved: buf[26] != 0 || buf[27] != 0,
            name: &buf[FIXED_LEN..name_end],
            system_use: &buf[su_start..],
            system_use_offset: offset + su_start as u64,
            recorded: [
                buf[18], buf[19], buf[20], buf[21], buf[22], buf[23], buf[24],
            ],
        })
    }

    pub(crate) fn is_dir(&self) -> bool {
        self.flags & FLAG_DIR != 0
    }

    /// `.` or `..`: the identifiers 0x00 and 0x01.
    pub(crate) fn is_dot_or_dotdot(&self) -> bool {
        matches!(self.name, [0] | [1])
    }

    /// Byte offset of the data: after the extended attribute record, which
    /// occupies the first blocks of the extent (ECMA-119 §9.5).
    pub(crate) fn data_offset(&self, block_size: u64) -> u64 {
        (u64::from(self.extent) + u64::from(self.ext_attr_len)) * block_size
    }
}

/// Iterates over the records of a directory whose bytes are `buf`, read from
/// image offset `base`. A zero length byte means "the rest of this sector is
/// padding" (records never cross a sector boundary).
pub(crate) struct Records<'a> {
    buf: &'a [u8],
    base: u64,
    pos: usize,
}

impl<'a> Records<'a> {
    pub(crate) fn new(buf: &'a [u8], base: u64) -> Self {
        Records { buf, base, pos: 0 }
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<Record<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.pos >= self.buf.len() {
                return None;
            }
            let len = usize::from(self.buf[self.pos]);
            if len == 0 {
                let sector = SECTOR as usize;
                self.pos = (self.pos / sector + 1) * sector;
                continue;
            }
            let offset = self.base + self.pos as u64;
            let Some(bytes) = self.buf.get(self.pos..self.pos + len) else {
                self.pos = self.buf.len();
                return Some(Err(Error::Malformed {
                    format: "ISO 9660 directory record",
                    offset,
                    detail: format!("record of {len} bytes runs past the end of its directory"),
                }));
            };
            self.pos += len;
            return Some(Record::parse(bytes, offset));
        }
    }
}
