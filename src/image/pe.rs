//! PE/COFF images (UEFI applications) as far as Authenticode needs them:
//! where the checksum and the certificate table entry lie in the headers,
//! the sections, and the certificate table (`WIN_CERTIFICATE` entries) at
//! the end. Parsed from untrusted bytes with every offset checked against
//! the image length; nothing is executed or relocated.
//!
//! Layout (PE/COFF specification): the DOS header's `e_lfanew` (offset
//! 0x3C) points at `PE\0\0`, then the 20-byte COFF header, then the
//! optional header (magic 0x10B for PE32, 0x20B for PE32+) whose
//! `CheckSum` is at +64, `SizeOfHeaders` at +60 and whose data directories
//! (entry 4: the certificate table, as a *file offset* and size) follow the
//! fixed fields; the section table follows the optional header.

use serde::Serialize;

/// Why bytes are not a PE image we can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("not a PE image: {detail} (at byte {offset})")]
    Malformed { offset: u64, detail: String },
}

fn bad(offset: usize, detail: impl Into<String>) -> Error {
    Error::Malformed {
        offset: offset as u64,
        detail: detail.into(),
    }
}

/// The most sections a PE image may declare (the COFF limit is 96 for
/// images; real UEFI loaders have 4–12).
pub const MAX_SECTIONS: usize = 96;

/// One section header.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Section {
    /// The name, NUL padding removed (`.text`, `.sbat`, …).
    pub name: String,
    pub virtual_size: u32,
    pub raw_offset: u32,
    pub raw_size: u32,
}

/// A `WIN_CERTIFICATE` entry: revision, certificate type, contents.
pub type WinCertificate<'a> = (u16, u16, &'a [u8]);

/// What Authenticode needs of a PE image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pe {
    /// The COFF machine (0x8664 x86-64, 0x14C i386, 0xAA64 arm64).
    pub machine: u16,
    /// Offset of the optional header's `CheckSum` (4 bytes).
    pub checksum_at: usize,
    /// Offset of the certificate table's data directory entry (8 bytes).
    pub cert_dir_at: usize,
    pub size_of_headers: usize,
    /// The certificate table: file offset and size (0, 0 when absent).
    pub cert_table: (usize, usize),
    pub sections: Vec<Section>,
}

fn le16(b: &[u8], at: usize) -> Result<u16, Error> {
    b.get(at..at + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .ok_or_else(|| bad(at, "the headers end early"))
}

fn le32(b: &[u8], at: usize) -> Result<u32, Error> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or_else(|| bad(at, "the headers end early"))
}

impl Pe {
    /// Parses the headers of the PE image `b`.
    pub fn parse(b: &[u8]) -> Result<Pe, Error> {
        if b.get(..2) != Some(b"MZ") {
            return Err(bad(0, "no MZ signature"));
        }
        let pe = le32(b, 0x3C)? as usize;
        if b.get(pe..pe.saturating_add(4)) != Some(b"PE\0\0") {
            return Err(bad(pe, "no PE signature where e_lfanew points"));
        }
        let coff = pe + 4;
        let machine = le16(b, coff)?;
        let sections = usize::from(le16(b, coff + 2)?);
        let opt_size = usize::from(le16(b, coff + 16)?);
        let opt = coff + 20;
        let (dirs_count_at, dirs_at) = match le16(b, opt)? {
            0x10B => (opt + 92, opt + 96),
            0x20B => (opt + 108, opt + 112),
            m => return Err(bad(opt, format!("optional header magic {m:#06x}"))),
        };
        let dirs = le32(b, dirs_count_at)? as usize;
        if dirs < 5 || dirs_at + 8 * 5 > opt + opt_size {
            return Err(bad(dirs_count_at, "no certificate table data directory"));
        }
        let cert_dir_at = dirs_at + 4 * 8;
        let cert_table = (
            le32(b, cert_dir_at)? as usize,
            le32(b, cert_dir_at + 4)? as usize,
        );
        let size_of_headers = le32(b, opt + 60)? as usize;
        if sections > MAX_SECTIONS {
            return Err(bad(coff + 2, format!("{sections} sections")));
        }
        let table = opt + opt_size;
        if size_of_headers > b.len() || size_of_headers < table + 40 * sections {
            return Err(bad(opt + 60, format!("SizeOfHeaders {size_of_headers}")));
        }
        let mut list = Vec::with_capacity(sections);
        for i in 0..sections {
            let s = table + 40 * i;
            let name = &b[s..s + 8];
            let end = name.iter().position(|&c| c == 0).unwrap_or(8);
            list.push(Section {
                name: String::from_utf8_lossy(&name[..end]).into_owned(),
                virtual_size: le32(b, s + 8)?,
                raw_size: le32(b, s + 16)?,
                raw_offset: le32(b, s + 20)?,
            });
        }
        let (ct_at, ct_len) = cert_table;
        if ct_len != 0
            && (ct_at < size_of_headers || ct_at.checked_add(ct_len).is_none_or(|e| e > b.len()))
        {
            return Err(bad(
                cert_dir_at,
                format!("certificate table {ct_at}+{ct_len} outside the image"),
            ));
        }
        Ok(Pe {
            machine,
            checksum_at: opt + 64,
            cert_dir_at,
            size_of_headers,
            cert_table,
            sections: list,
        })
    }

    /// The byte ranges of `b` the Authenticode digest covers, in order
    /// (Microsoft's "Windows Authenticode Portable Executable Signature
    /// Format"): the headers without the checksum and the certificate
    /// table entry, every section's raw data in file order, then what
    /// follows the last section up to the certificate table.
    pub fn digest_ranges(&self, len: usize) -> Result<Vec<std::ops::Range<usize>>, Error> {
        let mut r = vec![
            0..self.checksum_at,
            self.checksum_at + 4..self.cert_dir_at,
            self.cert_dir_at + 8..self.size_of_headers,
        ];
        let mut sections: Vec<&Section> = self.sections.iter().filter(|s| s.raw_size > 0).collect();
        sections.sort_by_key(|s| s.raw_offset);
        let mut hashed = self.size_of_headers;
        for s in sections {
            let (at, n) = (s.raw_offset as usize, s.raw_size as usize);
            let Some(end) = at.checked_add(n).filter(|&e| e <= len) else {
                return Err(bad(
                    at,
                    format!("section {} runs past the image's end", s.name),
                ));
            };
            if at < hashed {
                return Err(bad(
                    at,
                    format!("section {} overlaps the headers or another section", s.name),
                ));
            }
            r.push(at..end);
            hashed = end;
        }
        let end = if self.cert_table.1 == 0 {
            len
        } else {
            self.cert_table.0
        };
        if end > hashed {
            r.push(hashed..end);
        }
        Ok(r)
    }

    /// The certificate table's entries: (revision, type, contents).
    pub fn certificates<'a>(&self, b: &'a [u8]) -> Result<Vec<WinCertificate<'a>>, Error> {
        let (mut at, len) = self.cert_table;
        let end = at + len;
        let mut out = Vec::new();
        while at + 8 <= end {
            let n = le32(b, at)? as usize;
            if n < 8 || at + n > end {
                return Err(bad(at, format!("WIN_CERTIFICATE of {n} bytes")));
            }
            out.push((le16(b, at + 4)?, le16(b, at + 6)?, &b[at + 8..at + n]));
            // Entries are 8-byte aligned.
            at += n.div_ceil(8) * 8;
            if out.len() > 16 {
                return Err(bad(at, "more than 16 certificates"));
            }
        }
        Ok(out)
    }

    /// The contents of the section named `name` (its raw data, cut to its
    /// virtual size), when there is one.
    pub fn section<'a>(&self, b: &'a [u8], name: &str) -> Option<&'a [u8]> {
        let s = self.sections.iter().find(|s| s.name == name)?;
        let n = s.raw_size.min(if s.virtual_size == 0 {
            s.raw_size
        } else {
            s.virtual_size
        });
        b.get(s.raw_offset as usize..(s.raw_offset as usize).checked_add(n as usize)?)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A PE32+ image: headers up to 0x200, one `.text` section of 0x200
    /// bytes at 0x200, and `tail` after it.
    pub fn image(tail: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 0x400];
        b[..2].copy_from_slice(b"MZ");
        b[0x3C..0x40].copy_from_slice(&0x40u32.to_le_bytes());
        b[0x40..0x44].copy_from_slice(b"PE\0\0");
        let coff = 0x44;
        b[coff..coff + 2].copy_from_slice(&0x8664u16.to_le_bytes());
        b[coff + 2..coff + 4].copy_from_slice(&1u16.to_le_bytes());
        b[coff + 16..coff + 18].copy_from_slice(&0xF0u16.to_le_bytes());
        let opt = coff + 20;
        b[opt..opt + 2].copy_from_slice(&0x20Bu16.to_le_bytes());
        b[opt + 60..opt + 64].copy_from_slice(&0x200u32.to_le_bytes());
        b[opt + 108..opt + 112].copy_from_slice(&16u32.to_le_bytes());
        let sec = opt + 0xF0;
        b[sec..sec + 5].copy_from_slice(b".text");
        b[sec + 8..sec + 12].copy_from_slice(&0x200u32.to_le_bytes());
        b[sec + 16..sec + 20].copy_from_slice(&0x200u32.to_le_bytes());
        b[sec + 20..sec + 24].copy_from_slice(&0x200u32.to_le_bytes());
        b.extend_from_slice(tail);
        b
    }

    #[test]
    fn headers_sections_and_the_digest_ranges() {
        let b = image(b"tail");
        let pe = Pe::parse(&b).unwrap();
        assert_eq!(pe.machine, 0x8664);
        assert_eq!(
            (pe.checksum_at, pe.cert_dir_at),
            (0x58 + 64, 0x58 + 112 + 32)
        );
        assert_eq!(pe.sections[0].name, ".text");
        assert_eq!(
            pe.digest_ranges(b.len()).unwrap(),
            [0..0x98, 0x9C..0xE8, 0xF0..0x200, 0x200..0x400, 0x400..0x404]
        );
        assert_eq!(pe.section(&b, ".text").map(<[u8]>::len), Some(0x200));
        assert!(pe.certificates(&b).unwrap().is_empty());
    }

    #[test]
    fn damaged_headers_are_errors_not_panics() {
        let good = image(&[]);
        for cut in [0, 1, 0x3F, 0x43, 0x60, 0x100, 0x1FF] {
            assert!(Pe::parse(&good[..cut]).is_err(), "cut at {cut}");
        }
        // A certificate table past the end.
        let mut b = good.clone();
        let dir = 0x58 + 112 + 32;
        b[dir..dir + 4].copy_from_slice(&0x300u32.to_le_bytes());
        b[dir + 4..dir + 8].copy_from_slice(&0x1000u32.to_le_bytes());
        assert!(Pe::parse(&b).is_err());
        // A section running past the end: parsed, but no digest.
        let mut b = good.clone();
        let sec = 0x58 + 0xF0;
        b[sec + 16..sec + 20].copy_from_slice(&0x10_0000u32.to_le_bytes());
        assert!(Pe::parse(&b).unwrap().digest_ranges(b.len()).is_err());
        // e_lfanew pointing far away.
        let mut b = good;
        b[0x3C..0x40].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Pe::parse(&b).is_err());
    }
}
