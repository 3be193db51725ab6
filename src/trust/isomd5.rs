//! The MD5 that `implantisomd5` (isomd5sum, used by Fedora, RHEL, Rocky and
//! AlmaLinux) writes into an ISO's primary volume descriptor, and its check
//! as `checkisomd5` does it.
//!
//! isomd5sum keeps its fields as text in the PVD's application-use area
//! (ECMA-119 8.4.32: 512 bytes at byte 883 of the PVD), e.g.
//! `ISO MD5SUM = 32 hex;SKIPSECTORS = 15;RHLISOSTATUS=1;FRAGMENT SUMS = 60
//! chars;FRAGMENT COUNT = 20;`. The MD5 covers the volume (the PVD's
//! big-endian volume space size × 2048) minus its last `SKIPSECTORS`
//! sectors, with the application-use area read as 512 spaces. The fragment
//! sums split that range into `FRAGMENT COUNT + 1` parts: at the end of each
//! 32 KiB read that starts in a new part, the running MD5 is finalized and
//! the first hex digit of each of its first `60 / count` bytes (printed
//! without a leading zero) is compared with the stored characters. Mirroring
//! those read boundaries exactly is what makes our verdict checkisomd5's.
//!
//! This is a checksum its distribution embeds, not a signature: anyone who
//! alters the image can implant a new one. It finds corruption, not
//! tampering, and never makes an image `verified`.

use md5::Digest as _;
use serde::Serialize;

/// Where the PVD is (the first volume descriptor, sector 16).
const PVD_OFFSET: u64 = 16 * 2048;
/// ECMA-119 8.4.32, as isomd5sum uses it.
const APPDATA_OFFSET: u64 = 883;
const APPDATA_SIZE: usize = 512;
const SECTOR: u64 = 2048;
/// checkisomd5 reads 16 sectors at a time; fragment checks happen at the
/// end of these reads.
const READ_SIZE: u64 = 16 * SECTOR;
/// Characters of fragment sums isomd5sum stores.
const FRAGMENT_SUM_SIZE: usize = 60;

/// The fields isomd5sum stores in an ISO.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Implanted {
    /// The MD5, lower-case hex as stored.
    pub md5: String,
    /// Sectors at the end of the volume the MD5 leaves out.
    pub skip_sectors: u64,
    /// `RHLISOSTATUS` (1: "supported" media, the installer skips its check).
    pub supported: bool,
    /// The fragment sums (60 characters), when stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fragment_sums: Option<String>,
    pub fragment_count: u64,
    /// Bytes covered by the MD5 (volume size minus the skipped sectors).
    pub covered: u64,
}

/// Reads isomd5sum's fields from the first 34 816 bytes of an image (up to
/// the end of the PVD), or `None` when the image has no PVD at sector 16 or
/// no implanted MD5.
pub fn parse(head: &[u8]) -> Option<Implanted> {
    let pvd = head.get(PVD_OFFSET as usize..PVD_OFFSET as usize + SECTOR as usize)?;
    if pvd[0] != 1 || &pvd[1..6] != b"CD001" {
        return None;
    }
    let volume = u64::from(u32::from_be_bytes(pvd[84..88].try_into().ok()?)) * SECTOR;
    let app = &pvd[APPDATA_OFFSET as usize..APPDATA_OFFSET as usize + APPDATA_SIZE];
    // isomd5sum reads the area as a C string (its last byte forced to NUL).
    let end = app[..APPDATA_SIZE - 1]
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(APPDATA_SIZE - 1);
    let text = std::str::from_utf8(&app[..end]).ok()?;
    let mut md5 = None;
    let mut skip = None;
    let mut supported = false;
    let mut sums = None;
    let mut count = 20u64;
    for field in text.split(';') {
        let field = field.trim_start();
        if let Some(v) = field.strip_prefix("ISO MD5SUM = ") {
            let v = v.get(..32)?;
            if !v.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            md5 = Some(v.to_ascii_lowercase());
        } else if let Some(v) = field.strip_prefix("SKIPSECTORS = ") {
            skip = Some(v.trim().parse::<u64>().ok()?);
        } else if let Some(v) = field.strip_prefix("RHLISOSTATUS=") {
            supported = v.trim() == "1";
        } else if let Some(v) = field.strip_prefix("FRAGMENT SUMS = ") {
            sums = v.get(..FRAGMENT_SUM_SIZE).map(str::to_string);
        } else if let Some(v) = field.strip_prefix("FRAGMENT COUNT = ") {
            count = v.trim().parse::<u64>().ok()?;
        }
    }
    // checkisomd5 needs both the MD5 and SKIPSECTORS.
    let (md5, skip_sectors) = (md5?, skip?);
    Some(Implanted {
        md5,
        skip_sectors,
        supported,
        fragment_sums: sums,
        fragment_count: count,
        covered: volume.saturating_sub(skip_sectors * SECTOR),
    })
}

/// The fields from an image read as a byte source; `None` when it has
/// none (or cannot be read: the streaming pass reports read errors).
pub fn read_source(src: &dyn crate::image::ByteSource) -> Option<Implanted> {
    let len = (PVD_OFFSET + SECTOR).min(src.len());
    let mut head = vec![0u8; len as usize];
    src.read_exact_at(0, &mut head, "primary volume descriptor")
        .ok()?;
    parse(&head)
}

/// The fields from an image the caller already opened (read by position, so
/// the descriptor's offset does not matter).
pub fn read_open(f: &std::fs::File) -> Option<Implanted> {
    use std::os::unix::fs::FileExt;
    let mut head = vec![0u8; (PVD_OFFSET + SECTOR) as usize];
    let mut done = 0;
    while done < head.len() {
        match f.read_at(&mut head[done..], done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    head.truncate(done);
    parse(&head)
}

/// How an implanted MD5 check ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// The MD5 of the covered bytes, in hex.
    pub computed: String,
    pub matches: bool,
    /// The first fragment (1-based) whose sum differs, when one does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bad_fragment: Option<u64>,
    /// True when the image ended before the covered range did.
    pub short: bool,
}

/// Checks an implanted MD5 from the image's bytes, fed in order from byte 0
/// in pieces of any size.
pub struct Checker {
    fields: Implanted,
    md5: md5::Md5,
    /// Bytes hashed so far (offset of the next byte).
    pos: u64,
    fragment_size: u64,
    previous_fragment: u64,
    bad_fragment: Option<u64>,
}

impl Checker {
    pub fn new(fields: Implanted) -> Checker {
        let fragment_size = fields.covered / (fields.fragment_count + 1);
        Checker {
            fields,
            md5: md5::Md5::new(),
            pos: 0,
            fragment_size,
            previous_fragment: 0,
            bad_fragment: None,
        }
    }

    /// The fields being checked.
    pub fn fields(&self) -> &Implanted {
        &self.fields
    }

    /// Hashes the next bytes of the image.
    pub fn update(&mut self, mut data: &[u8]) {
        let appdata =
            PVD_OFFSET + APPDATA_OFFSET..PVD_OFFSET + APPDATA_OFFSET + APPDATA_SIZE as u64;
        while !data.is_empty() && self.pos < self.fields.covered {
            // Up to the end of checkisomd5's current read, and of the range.
            let read_end = ((self.pos / READ_SIZE) + 1) * READ_SIZE;
            let stop = read_end.min(self.fields.covered);
            let n = (stop - self.pos).min(data.len() as u64) as usize;
            let (piece, rest) = data.split_at(n);
            let (start, end) = (self.pos, self.pos + n as u64);
            if start < appdata.end && end > appdata.start {
                // The application-use area is hashed as spaces.
                let mut copy = piece.to_vec();
                let from = appdata.start.max(start) - start;
                let to = appdata.end.min(end) - start;
                copy[from as usize..to as usize].fill(b' ');
                self.md5.update(&copy);
            } else {
                self.md5.update(piece);
            }
            self.pos = end;
            data = rest;
            if self.pos == stop {
                self.end_of_read((stop - 1) / READ_SIZE * READ_SIZE);
            }
        }
    }

    /// What checkisomd5 does after each read that started at `read_start`.
    fn end_of_read(&mut self, read_start: u64) {
        let count = self.fields.fragment_count;
        if count == 0 || self.fragment_size == 0 || self.bad_fragment.is_some() {
            return;
        }
        let current = read_start / self.fragment_size;
        if current == self.previous_fragment {
            return;
        }
        self.previous_fragment = current;
        let Some(sums) = self.fields.fragment_sums.as_deref() else {
            return;
        };
        let per = (FRAGMENT_SUM_SIZE as u64 / count).min(16) as usize;
        let digest = self.md5.clone().finalize();
        let first = (current - 1) as usize * per;
        let ok = (0..per).all(|i| {
            let want = sums.as_bytes().get(first + i).copied();
            let have = format!("{:x}", digest[i]).as_bytes()[0];
            want == Some(have)
        });
        if !ok {
            self.bad_fragment = Some(current);
        }
    }

    /// The verdict, after every byte of the image was fed.
    pub fn finish(self) -> Verdict {
        let computed = hex::encode(self.md5.finalize());
        Verdict {
            matches: computed == self.fields.md5 && self.bad_fragment.is_none(),
            short: self.pos < self.fields.covered,
            computed,
            bad_fragment: self.bad_fragment,
        }
    }
}
