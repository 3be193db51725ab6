//! Compressed images: recognising them by their magic bytes, the
//! uncompressed size where the format records it, and decoding them as a
//! stream.
//!
//! # Why
//!
//! Raspberry Pi OS, Armbian, Home Assistant OS and most appliance images
//! are published as `.img.xz` (or `.zst`, `.gz`, `.bz2`). Written as they
//! are, the stick holds compressed bytes and boots nothing, while a
//! read-back "verifies" exactly those bytes. So every command looks at the
//! first bytes of an image ([`detect`], never the file name: a renamed or
//! extension-less download is still recognised) and reads a compressed one
//! through a [`Decoder`]: the write engine streams the decoded bytes onto
//! the target and checksums *those*, so its read-back proves the
//! decompressed image is on the stick (`write::write_decoded`).
//!
//! # Sizes
//!
//! xz records every block's uncompressed size in the index at the end of
//! each stream, and zstd frames usually carry a content size in their
//! header: [`declared_size`] reads them (walking every stream or frame, so
//! concatenated files count in full) so a target that is too small is
//! refused before any byte is written. gzip and bzip2 record nothing usable
//! (gzip's trailer holds the size modulo 4 GiB): the write then stops at the
//! target's end with "the image is larger than the target". A decoded length
//! that differs from the declared one is a corrupt image
//! ([`Error::SizeMismatch`]).
//!
//! # Reading through a source check
//!
//! The compressed bytes are read through a [`ByteSource`], so after a source
//! check they come from [`crate::image::checked::CheckedImage`], block by
//! block against the checked digests: the decoded bytes written are decoded
//! from exactly the bytes that were checked.
//!
//! # Backends (`docs/decisions.md`)
//!
//! xz: liblzma (the `liblzma` crate; the reference implementation, with its
//! multi-threaded decoder for multi-block streams as `xz -T0` makes them);
//! zstd: the reference libzstd (`zstd` crate); gzip: `flate2` on `zlib-rs`;
//! bzip2: the `bzip2` crate on `libbz2-rs-sys` (pure Rust). The last two were
//! already in the tree through rPGP.

use std::io::{self, BufRead, BufReader, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::ByteSource;
use crate::hash::crc32;

/// A compression format bootstick decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    Xz,
    Zstd,
    Gzip,
    Bzip2,
    /// The LZ4 frame format (`lz4`), frames concatenated.
    Lz4,
    /// A zip archive: the one member that is an image (`image::archive`).
    Zip,
}

impl Format {
    /// The format's usual name (`xz`), as in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Format::Xz => "xz",
            Format::Zstd => "zstd",
            Format::Gzip => "gzip",
            Format::Bzip2 => "bzip2",
            Format::Lz4 => "lz4",
            Format::Zip => "zip",
        }
    }

    /// True when the format's framing records the uncompressed size.
    pub fn records_size(self) -> bool {
        matches!(self, Format::Xz | Format::Zstd | Format::Zip)
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How many leading bytes [`detect`] looks at.
pub const MAGIC_LEN: usize = 10;

/// The compression format whose magic bytes `head` (the image's first
/// bytes, at least [`MAGIC_LEN`] where the image has them) starts with.
///
/// The checks go beyond the bare magic where the format allows, so that a
/// disk image whose boot code happens to start with the same two bytes is
/// not taken for gzip: gzip needs method 8 (deflate) and no reserved flag
/// bits; bzip2 needs a block size digit and a block or end-of-stream magic.
pub fn detect(head: &[u8]) -> Option<Format> {
    const XZ: &[u8] = &[0xFD, b'7', b'z', b'X', b'Z', 0x00];
    const ZSTD: &[u8] = &[0x28, 0xB5, 0x2F, 0xFD];
    const LZ4: &[u8] = &[0x04, 0x22, 0x4D, 0x18];
    if head.starts_with(XZ) {
        return Some(Format::Xz);
    }
    if head.starts_with(ZSTD) {
        return Some(Format::Zstd);
    }
    // The LZ4 frame magic 0x184D2204, little-endian; version bits 01 in
    // the frame descriptor's FLG byte (so a boot sector starting with the
    // same four bytes is not taken for one).
    if head.len() >= 5 && head.starts_with(LZ4) && head[4] >> 6 == 0b01 {
        return Some(Format::Lz4);
    }
    // A local file header, or the end of central directory of an empty
    // archive (refused later: it holds no image).
    if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        return Some(Format::Zip);
    }
    if head.len() >= 4 && head[0] == 0x1F && head[1] == 0x8B && head[2] == 8 && head[3] & 0xE0 == 0
    {
        return Some(Format::Gzip);
    }
    if head.len() >= 10
        && head.starts_with(b"BZh")
        && (b'1'..=b'9').contains(&head[3])
        && (head[4..10] == [0x31, 0x41, 0x59, 0x26, 0x53, 0x59]
            || head[4..10] == [0x17, 0x72, 0x45, 0x38, 0x50, 0x90])
    {
        return Some(Format::Bzip2);
    }
    None
}

/// The format of the image `src`, from its first bytes.
pub fn detect_source(src: &dyn ByteSource) -> Result<Option<Format>, super::Error> {
    let n = src.len().min(MAGIC_LEN as u64) as usize;
    let mut head = [0u8; MAGIC_LEN];
    src.read_exact_at(0, &mut head[..n], "compression magic")?;
    Ok(detect(&head[..n]))
}

/// Why a compressed image could not be sized or decoded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The decoder refused the stream: the format's own error says why.
    #[error("the {format} stream is corrupt at decompressed byte {offset} (after {compressed} compressed bytes)")]
    Corrupt {
        format: Format,
        /// Decompressed bytes produced before the error.
        offset: u64,
        /// Compressed bytes read before the error (the decoder reads ahead,
        /// so the fault lies at or before this offset).
        compressed: u64,
        #[source]
        source: io::Error,
    },
    /// The compressed file ended inside the stream.
    #[error("the {format} stream ends early, at decompressed byte {offset} (after all {compressed} compressed bytes): truncated download?")]
    Truncated {
        format: Format,
        offset: u64,
        compressed: u64,
    },
    /// The stream decoded to another length than its framing declared.
    #[error("the {format} stream decodes to {actual} bytes, but its {what} declares {declared}: the image is corrupt")]
    SizeMismatch {
        format: Format,
        what: &'static str,
        declared: u64,
        actual: u64,
    },
    /// The framing that records the size (xz index, zstd frame headers)
    /// is malformed.
    #[error("malformed {format} {what} at byte {offset}: {detail}")]
    Malformed {
        format: Format,
        what: &'static str,
        offset: u64,
        detail: &'static str,
    },
    /// Reading the compressed file failed (or, after a source check, a
    /// block of it is not the checked one).
    #[error("cannot read the compressed image")]
    Image(#[source] super::Error),
    /// The stream is valid but holds nothing: writing it would leave the
    /// target's old system in place.
    #[error("the {format} stream decompresses to nothing (0 bytes)")]
    Empty { format: Format },
    /// The decoder could not be set up.
    #[error("cannot start the {format} decoder: {detail}")]
    Setup { format: Format, detail: String },
    /// A zip archive gives no member to write (`image::archive`).
    #[error(transparent)]
    Zip(#[from] super::archive::Error),
}

impl Error {
    /// The image error underneath, when reading the compressed file failed.
    pub fn image(&self) -> Option<&super::Error> {
        match self {
            Error::Image(e) => Some(e),
            Error::Zip(super::archive::Error::Image(e)) => Some(e),
            _ => None,
        }
    }
}

/// The uncompressed size `src` (in `format`) declares, when the format
/// records it: the sum over every xz stream's index, or over every zstd
/// frame's content size (`None` when a frame omits it, as streaming
/// compressors do). gzip and bzip2: `None`; zip: `None` here, the chosen
/// member's recorded size once [`Compressed::probe_entry`] chose it.
pub fn declared_size(src: &dyn ByteSource, format: Format) -> Result<Option<u64>, Error> {
    match format {
        Format::Xz => xz_size(src).map(Some),
        Format::Zstd => zstd_size(src),
        // An LZ4 frame may record its content size, but `lz4` writes it
        // only when asked (`--content-size`): the size is found at the end.
        Format::Gzip | Format::Bzip2 | Format::Lz4 | Format::Zip => Ok(None),
    }
}

fn read(
    src: &dyn ByteSource,
    offset: u64,
    buf: &mut [u8],
    what: &'static str,
) -> Result<(), Error> {
    src.read_exact_at(offset, buf, what).map_err(Error::Image)
}

/// The largest xz index read into memory: 8 MiB holds about half a million
/// blocks' records (a multi-terabyte image at `xz -T0`'s block size).
const XZ_INDEX_LIMIT: u64 = 8 << 20;

/// Why an xz file without a footer at its end is refused: every xz file
/// ends with one, so a download cut short has none.
const NO_FOOTER: &str = "the file does not end with an xz stream footer (truncated download?)";

/// Sums the uncompressed sizes in every stream's index, walking the
/// streams from the end of the file (stream padding, footer, index, blocks,
/// header) as `xz --list` does. Every footer's and index's CRC32 is checked.
fn xz_size(src: &dyn ByteSource) -> Result<u64, Error> {
    let bad = |offset: u64, what: &'static str, detail: &'static str| Error::Malformed {
        format: Format::Xz,
        what,
        offset,
        detail,
    };
    let mut end = src.len();
    let mut total = 0u64;
    while end > 0 {
        // Stream padding: NUL bytes in groups of four.
        let mut word = [0u8; 4];
        if !end.is_multiple_of(4) {
            return Err(bad(end, "stream footer", NO_FOOTER));
        }
        loop {
            if end < 4 {
                return Err(bad(0, "stream", "only padding where a stream should be"));
            }
            read(src, end - 4, &mut word, "xz stream padding")?;
            if word != [0; 4] {
                break;
            }
            end -= 4;
        }
        if end < 24 {
            return Err(bad(0, "stream", "too short for a stream header and footer"));
        }
        let footer_at = end - 12;
        let mut footer = [0u8; 12];
        read(src, footer_at, &mut footer, "xz stream footer")?;
        if &footer[10..12] != b"YZ" {
            return Err(bad(footer_at, "stream footer", NO_FOOTER));
        }
        if crc32(&footer[4..10]) != u32::from_le_bytes([footer[0], footer[1], footer[2], footer[3]])
        {
            return Err(bad(footer_at, "stream footer", "CRC32 mismatch"));
        }
        let backward = (u64::from(u32::from_le_bytes([
            footer[4], footer[5], footer[6], footer[7],
        ])) + 1)
            * 4;
        if backward > XZ_INDEX_LIMIT || backward + 12 > footer_at {
            return Err(bad(footer_at, "stream footer", "index size out of range"));
        }
        let index_at = footer_at - backward;
        let mut index = vec![0u8; backward as usize];
        read(src, index_at, &mut index, "xz index")?;
        let (blocks, size) = parse_xz_index(&index).map_err(|d| bad(index_at, "index", d))?;
        let stream_at = index_at
            .checked_sub(blocks)
            .and_then(|x| x.checked_sub(12))
            .ok_or_else(|| bad(index_at, "index", "blocks larger than the file"))?;
        let mut header = [0u8; 12];
        read(src, stream_at, &mut header, "xz stream header")?;
        if header[..6] != [0xFD, b'7', b'z', b'X', b'Z', 0x00] {
            return Err(bad(
                stream_at,
                "stream header",
                "no header magic where the index says the stream starts",
            ));
        }
        if header[6..8] != footer[8..10] {
            return Err(bad(
                stream_at,
                "stream header",
                "flags differ from the footer's",
            ));
        }
        total = total
            .checked_add(size)
            .ok_or_else(|| bad(index_at, "index", "sizes overflow"))?;
        end = stream_at;
    }
    Ok(total)
}

/// Parses an xz index (`index` is all of it, CRC32 included): the total of
/// its blocks' compressed sizes (each padded to four bytes) and of their
/// uncompressed sizes.
pub fn parse_xz_index(index: &[u8]) -> Result<(u64, u64), &'static str> {
    fn varint(data: &[u8], pos: &mut usize) -> Result<u64, &'static str> {
        let mut v = 0u64;
        for i in 0..9 {
            let b = *data.get(*pos).ok_or("a number runs past the index")?;
            *pos += 1;
            v |= u64::from(b & 0x7F) << (7 * i);
            if b & 0x80 == 0 {
                if b == 0 && i > 0 {
                    return Err("a number is not in its shortest form");
                }
                return Ok(v);
            }
        }
        Err("a number is longer than nine bytes")
    }
    if index.len() < 8 || !index.len().is_multiple_of(4) {
        return Err("the index size is not a multiple of four");
    }
    let (body, crc) = index.split_at(index.len() - 4);
    if crc32(body) != u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]) {
        return Err("CRC32 mismatch");
    }
    if body[0] != 0 {
        return Err("no index indicator");
    }
    let mut pos = 1;
    let count = varint(body, &mut pos)?;
    let (mut blocks, mut size) = (0u64, 0u64);
    for _ in 0..count {
        let unpadded = varint(body, &mut pos)?;
        let uncompressed = varint(body, &mut pos)?;
        if unpadded < 5 {
            return Err("a block's unpadded size is too small");
        }
        blocks = blocks
            .checked_add(unpadded.div_ceil(4) * 4)
            .ok_or("block sizes overflow")?;
        size = size
            .checked_add(uncompressed)
            .ok_or("uncompressed sizes overflow")?;
    }
    if pos > body.len() || body[pos..].len() >= 4 || body[pos..].iter().any(|&b| b != 0) {
        return Err("the index padding is wrong");
    }
    Ok((blocks, size))
}

/// Sums the content sizes of every zstd frame, walking each frame's block
/// headers to find the next one; skippable frames are stepped over. `None`
/// when a frame does not record its content size.
fn zstd_size(src: &dyn ByteSource) -> Result<Option<u64>, Error> {
    let len = src.len();
    let mut at = 0u64;
    let mut total = 0u64;
    while at < len {
        let avail = (len - at).min(18) as usize;
        let mut head = [0u8; 18];
        read(src, at, &mut head[..avail], "zstd frame header")?;
        let frame = parse_zstd_frame_header(&head[..avail]).map_err(|detail| Error::Malformed {
            format: Format::Zstd,
            what: "frame header",
            offset: at,
            detail,
        })?;
        let content = match frame {
            ZstdFrame::Skippable { len } => {
                at = at.saturating_add(8).saturating_add(len);
                continue;
            }
            ZstdFrame::Data {
                header_len,
                content_size,
                checksum,
            } => {
                // Walk the blocks to the frame's end.
                let mut b = at + header_len as u64;
                loop {
                    let mut bh = [0u8; 3];
                    if b.saturating_add(3) > len {
                        return Err(Error::Truncated {
                            format: Format::Zstd,
                            offset: total,
                            compressed: len,
                        });
                    }
                    read(src, b, &mut bh, "zstd block header")?;
                    let v = u32::from(bh[0]) | u32::from(bh[1]) << 8 | u32::from(bh[2]) << 16;
                    let last = v & 1 == 1;
                    let size = match (v >> 1) & 3 {
                        0 | 2 => u64::from(v >> 3),
                        1 => 1,
                        _ => {
                            return Err(Error::Malformed {
                                format: Format::Zstd,
                                what: "block header",
                                offset: b,
                                detail: "reserved block type",
                            })
                        }
                    };
                    b = b + 3 + size;
                    if last {
                        break;
                    }
                }
                if checksum {
                    b += 4;
                }
                at = b;
                content_size
            }
        };
        match content {
            Some(c) => {
                total = total.checked_add(c).ok_or(Error::Malformed {
                    format: Format::Zstd,
                    what: "frame header",
                    offset: at,
                    detail: "content sizes overflow",
                })?
            }
            None => return Ok(None),
        }
    }
    if at > len {
        return Err(Error::Truncated {
            format: Format::Zstd,
            offset: total,
            compressed: len,
        });
    }
    Ok(Some(total))
}

/// A zstd frame header, as [`parse_zstd_frame_header`] reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZstdFrame {
    /// A skippable frame of `len` bytes after its 8-byte header.
    Skippable { len: u64 },
    /// A data frame: its header's length, the content size it records, and
    /// whether a 4-byte checksum follows the last block.
    Data {
        header_len: usize,
        content_size: Option<u64>,
        checksum: bool,
    },
}

/// Parses the frame header at the start of `head` (up to 18 bytes: the
/// longest header).
pub fn parse_zstd_frame_header(head: &[u8]) -> Result<ZstdFrame, &'static str> {
    if head.len() < 4 {
        return Err("shorter than a frame magic");
    }
    let magic = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    if magic & 0xFFFF_FFF0 == 0x184D_2A50 {
        if head.len() < 8 {
            return Err("skippable frame header cut short");
        }
        let len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        return Ok(ZstdFrame::Skippable {
            len: u64::from(len),
        });
    }
    if magic != 0xFD2F_B528 {
        return Err("neither a zstd frame nor a skippable frame");
    }
    let fhd = *head.get(4).ok_or("frame header cut short")?;
    if fhd & 0x08 != 0 {
        return Err("reserved bit set in the frame header descriptor");
    }
    let single_segment = fhd & 0x20 != 0;
    let checksum = fhd & 0x04 != 0;
    let dict_len = [0usize, 1, 2, 4][usize::from(fhd & 3)];
    let fcs_len = match fhd >> 6 {
        0 if single_segment => 1,
        0 => 0,
        1 => 2,
        2 => 4,
        _ => 8,
    };
    let window_len = usize::from(!single_segment);
    let fcs_at = 5 + window_len + dict_len;
    let header_len = fcs_at + fcs_len;
    if head.len() < header_len {
        return Err("frame header cut short");
    }
    let fcs = &head[fcs_at..header_len];
    let content_size = match fcs_len {
        0 => None,
        1 => Some(u64::from(fcs[0])),
        2 => Some(u64::from(u16::from_le_bytes([fcs[0], fcs[1]])) + 256),
        4 => Some(u64::from(u32::from_le_bytes([
            fcs[0], fcs[1], fcs[2], fcs[3],
        ]))),
        _ => Some(u64::from_le_bytes(fcs.try_into().expect("eight bytes"))),
    };
    Ok(ZstdFrame::Data {
        header_len,
        content_size,
        checksum,
    })
}

/// Reads a [`ByteSource`] from its start to its end, in order, counting
/// the bytes handed out. A read error is carried as an
/// [`io::Error`] wrapping the [`super::Error`], taken out again by the
/// [`Decoder`].
struct Sequential {
    src: Arc<dyn ByteSource>,
    pos: u64,
    counter: Arc<AtomicU64>,
}

impl Read for Sequential {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (self.src.len() - self.pos).min(buf.len() as u64) as usize;
        self.src
            .read_exact_at(self.pos, &mut buf[..n], "compressed image")
            .map_err(io::Error::other)?;
        self.pos += n as u64;
        self.counter.store(self.pos, Ordering::Relaxed);
        Ok(n)
    }
}

/// How much compressed input is read at once.
const INPUT_BUFFER: usize = 1 << 20;

/// Memory the multi-threaded xz decoder may use before it falls back to
/// fewer threads (liblzma's `memlimit_threading`; 0 would mean one
/// thread). Each thread holds a block's input and output (`xz -T0` cuts
/// blocks of 3 × the dictionary, 24 MiB at the default preset). Measured
/// on a 96 MiB image with 8 MiB blocks on 2 cores: peak RSS 51 MB on one
/// thread (16 MiB here), 112–130 MB with two (40–64 MiB);
/// `docs/decisions.md` says why two threads are worth it.
const XZ_THREADS_MEMORY: u64 = 64 << 20;

/// xz streams decoded one after the other (a concatenated `.xz` file),
/// each by liblzma's multi-threaded decoder (a stream made by plain `xz`
/// is one block and decodes on one thread: blocks are the unit of
/// parallelism). liblzma's threaded decoder does not take the
/// "concatenated" flag, so the next stream is started here; stream padding
/// (NUL bytes) between and after streams is skipped.
struct XzStreams {
    current: Option<liblzma::bufread::XzDecoder<BufReader<Box<dyn Read + Send>>>>,
}

fn xz_stream() -> io::Result<liblzma::stream::Stream> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    liblzma::stream::MtStreamBuilder::new()
        .threads(threads)
        .memlimit_threading(XZ_THREADS_MEMORY)
        .memlimit_stop(u64::MAX)
        .decoder()
        .map_err(io::Error::other)
}

impl XzStreams {
    fn new(input: BufReader<Box<dyn Read + Send>>) -> io::Result<XzStreams> {
        Ok(XzStreams {
            current: Some(liblzma::bufread::XzDecoder::new_stream(input, xz_stream()?)),
        })
    }
}

impl Read for XzStreams {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let Some(d) = &mut self.current else {
                return Ok(0);
            };
            let n = d.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            // The stream ended: skip padding, then another stream or the end.
            let mut input = self.current.take().expect("a current decoder").into_inner();
            loop {
                let data = input.fill_buf()?;
                if data.is_empty() {
                    return Ok(0);
                }
                let zeros = data.iter().take_while(|&&b| b == 0).count();
                if zeros == 0 {
                    break;
                }
                input.consume(zeros);
            }
            self.current = Some(liblzma::bufread::XzDecoder::new_stream(input, xz_stream()?));
        }
    }
}

/// LZ4 frames decoded one after the other (`lz4` decodes concatenated
/// frames as one file, and skips skippable frames), each by `lz4_flex`'s
/// frame decoder, which checks the header checksum, the block checksums
/// and the content checksum (`lz4` writes one by default) and the content
/// size where the frame records them. Its reader reads no further than the
/// frame and stops at its end, so the next frame, a skippable frame or the
/// end of the input is looked for here.
struct Lz4Frames {
    input: Option<Lz4Input>,
    current: Option<lz4_flex::frame::FrameDecoder<Lz4Input>>,
}

/// The compressed input, with the magic number [`Lz4Frames`] read to
/// look at a frame given back before it.
struct Lz4Input {
    magic: [u8; 4],
    /// Bytes of `magic` not yet read again.
    pending: usize,
    inner: BufReader<Box<dyn Read + Send>>,
}

impl Read for Lz4Input {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pending > 0 {
            let from = 4 - self.pending;
            let n = self.pending.min(buf.len());
            buf[..n].copy_from_slice(&self.magic[from..from + n]);
            self.pending -= n;
            return Ok(n);
        }
        self.inner.read(buf)
    }
}

impl Lz4Frames {
    fn new(input: BufReader<Box<dyn Read + Send>>) -> Lz4Frames {
        Lz4Frames {
            input: Some(Lz4Input {
                magic: [0; 4],
                pending: 0,
                inner: input,
            }),
            current: None,
        }
    }
}

/// Skippable frames' magic numbers: 0x184D2A50 to 0x184D2A5F.
fn lz4_skippable(magic: [u8; 4]) -> bool {
    u32::from_le_bytes(magic) & 0xFFFF_FFF0 == 0x184D_2A50
}

impl Read for Lz4Frames {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(d) = &mut self.current {
                let n = d.read(buf)?;
                if n > 0 || buf.is_empty() {
                    return Ok(n);
                }
                self.input = Some(self.current.take().expect("checked").into_inner());
            }
            let Some(input) = self.input.as_mut() else {
                return Ok(0);
            };
            if input.inner.fill_buf()?.is_empty() {
                return Ok(0);
            }
            input.inner.read_exact(&mut input.magic)?;
            if lz4_skippable(input.magic) {
                let mut len = [0u8; 4];
                input.inner.read_exact(&mut len)?;
                let len = u64::from(u32::from_le_bytes(len));
                let skipped = io::copy(&mut (&mut input.inner).take(len), &mut io::sink())?;
                if skipped < len {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                continue;
            }
            // Anything else must be a frame, which the decoder reads from
            // its magic on (trailing garbage fails there).
            input.pending = 4;
            let input = self.input.take().expect("checked");
            self.current = Some(lz4_flex::frame::FrameDecoder::new(input));
        }
    }
}

/// Decodes a compressed image as a stream of its decompressed bytes.
pub struct Decoder {
    format: Format,
    inner: Box<dyn Read + Send>,
    /// Decompressed bytes handed out so far.
    out: u64,
    /// Compressed bytes read so far.
    consumed: Arc<AtomicU64>,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("format", &self.format)
            .field("out", &self.out)
            .finish()
    }
}

impl Decoder {
    /// A decoder of the zip member `member`, from its first byte.
    pub fn zip(member: &super::archive::Member) -> Decoder {
        let consumed = Arc::new(AtomicU64::new(0));
        Decoder {
            format: Format::Zip,
            inner: Box::new(member.reader(consumed.clone())),
            out: 0,
            consumed,
        }
    }

    /// A decoder of `src`, compressed in `format` (not zip: [`Decoder::zip`]),
    /// from its first byte.
    pub fn new(src: Arc<dyn ByteSource>, format: Format) -> Result<Decoder, Error> {
        let consumed = Arc::new(AtomicU64::new(0));
        let input = Sequential {
            src,
            pos: 0,
            counter: consumed.clone(),
        };
        Decoder::over(Box::new(input), format, consumed)
    }

    /// A decoder of the stream `input` (a pipe, read once), compressed in
    /// `format` (not zip: an archive needs its central directory at the
    /// end); `consumed` is kept up to date by `input` with the compressed
    /// bytes it handed out, for error messages.
    pub fn from_read(
        input: Box<dyn Read + Send>,
        format: Format,
        consumed: Arc<AtomicU64>,
    ) -> Result<Decoder, Error> {
        Decoder::over(input, format, consumed)
    }

    fn over(
        input: Box<dyn Read + Send>,
        format: Format,
        consumed: Arc<AtomicU64>,
    ) -> Result<Decoder, Error> {
        let input = BufReader::with_capacity(INPUT_BUFFER, input);
        let setup = |e: io::Error| Error::Setup {
            format,
            detail: e.to_string(),
        };
        let inner: Box<dyn Read + Send> = match format {
            Format::Xz => Box::new(XzStreams::new(input).map_err(setup)?),
            Format::Zstd => {
                Box::new(zstd::stream::read::Decoder::with_buffer(input).map_err(setup)?)
            }
            Format::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(input)),
            Format::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(input)),
            Format::Lz4 => Box::new(Lz4Frames::new(input)),
            Format::Zip => {
                return Err(Error::Setup {
                    format,
                    detail: "a zip member is decoded through its archive (Compressed::decoder)"
                        .into(),
                })
            }
        };
        Ok(Decoder {
            format,
            inner,
            out: 0,
            consumed,
        })
    }

    /// Compressed bytes read so far.
    pub fn consumed(&self) -> u64 {
        self.consumed.load(Ordering::Relaxed)
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// Decompressed bytes handed out so far: the offset of the next one.
    pub fn position(&self) -> u64 {
        self.out
    }

    /// Fills `buf` with the next decompressed bytes; fewer only at the end
    /// of the image (0: the image ended).
    pub fn read_full(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        let mut done = 0;
        while done < buf.len() {
            match self.inner.read(&mut buf[done..]) {
                Ok(0) => break,
                Ok(n) => {
                    done += n;
                    self.out += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.error(e)),
            }
        }
        Ok(done)
    }

    /// Skips `n` decompressed bytes.
    pub fn skip(&mut self, mut n: u64) -> Result<(), Error> {
        let mut buf = vec![0u8; (1 << 20).min(n) as usize];
        while n > 0 {
            let take = n.min(buf.len() as u64) as usize;
            let got = self.read_full(&mut buf[..take])?;
            if got == 0 {
                return Err(Error::Truncated {
                    format: self.format,
                    offset: self.out,
                    compressed: self.consumed.load(Ordering::Relaxed),
                });
            }
            n -= got as u64;
        }
        Ok(())
    }

    /// The typed error for a decoder failure: a read error of the file,
    /// the input ending inside the stream, or the format's own complaint.
    fn error(&self, e: io::Error) -> Error {
        let compressed = self.consumed.load(Ordering::Relaxed);
        if e.get_ref().is_some_and(|inner| inner.is::<super::Error>()) {
            let inner = e
                .into_inner()
                .expect("checked above")
                .downcast::<super::Error>()
                .expect("checked above");
            return Error::Image(*inner);
        }
        if e.kind() == io::ErrorKind::UnexpectedEof {
            return Error::Truncated {
                format: self.format,
                offset: self.out,
                compressed,
            };
        }
        Error::Corrupt {
            format: self.format,
            offset: self.out,
            compressed,
            source: e,
        }
    }
}

/// A compressed image: its format, the size it declares (when the format
/// records one), and the compressed bytes, from which a [`Decoder`] is
/// started as often as needed.
#[derive(Clone)]
pub struct Compressed {
    src: Arc<dyn ByteSource>,
    format: Format,
    declared: Option<u64>,
    /// A zip archive's chosen member.
    member: Option<Arc<super::archive::Member>>,
}

impl std::fmt::Debug for Compressed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compressed")
            .field("format", &self.format)
            .field("compressed_len", &self.src.len())
            .field("declared", &self.declared)
            .finish()
    }
}

impl Compressed {
    /// `src` as a compressed image, if its magic bytes say it is one; its
    /// declared size is read (and the framing that records it checked)
    /// here.
    pub fn probe(src: Arc<dyn ByteSource>) -> Result<Option<Compressed>, Error> {
        Compressed::probe_entry(src, None)
    }

    /// As [`Compressed::probe`]; a zip archive's member is `entry`, or
    /// the one image it holds (`image::archive::select`), its size the
    /// one its central directory records.
    pub fn probe_entry(
        src: Arc<dyn ByteSource>,
        entry: Option<&str>,
    ) -> Result<Option<Compressed>, Error> {
        let Some(format) = detect_source(&*src).map_err(Error::Image)? else {
            return Ok(None);
        };
        let (declared, member) = match format {
            Format::Zip => {
                let m = super::archive::select(src.clone(), entry)?;
                (Some(m.chosen().size), Some(Arc::new(m)))
            }
            _ => (declared_size(&*src, format)?, None),
        };
        Ok(Some(Compressed {
            src,
            format,
            declared,
            member,
        }))
    }

    /// A zip archive's chosen member (with the entries ignored beside it).
    pub fn zip_member(&self) -> Option<&super::archive::Member> {
        self.member.as_deref()
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// The uncompressed size the framing declares (xz, zstd with content
    /// sizes); `None`: known only once decoded.
    pub fn declared_size(&self) -> Option<u64> {
        self.declared
    }

    /// The compressed file's length.
    pub fn compressed_len(&self) -> u64 {
        self.src.len()
    }

    /// A decoder from the first byte.
    pub fn decoder(&self) -> Result<Decoder, Error> {
        match &self.member {
            Some(m) => Ok(Decoder::zip(m)),
            None => Decoder::new(self.src.clone(), self.format),
        }
    }

    /// The decompressed length: the declared size, else found by decoding
    /// the whole image once (gzip, bzip2; bounded memory, a full pass).
    pub fn measure(&self) -> Result<u64, Error> {
        if let Some(len) = self.declared {
            return Ok(len);
        }
        let mut d = self.decoder()?;
        let mut buf = vec![0u8; 1 << 20];
        while d.read_full(&mut buf)? > 0 {}
        Ok(d.position())
    }

    /// Checks the decoded length `actual` against the declared size.
    pub fn check_len(&self, actual: u64) -> Result<(), Error> {
        match self.declared {
            Some(declared) if declared != actual => Err(Error::SizeMismatch {
                format: self.format,
                what: match self.format {
                    Format::Xz => "index",
                    Format::Zip => "central directory",
                    _ => "frame headers",
                },
                declared,
                actual,
            }),
            _ => Ok(()),
        }
    }
}

/// Random access to the decompressed image, for the readers that decide
/// how to write it (`inspect`) and for naming the first differing byte
/// after a failed read-back. Reads go forward through one decoder; a read
/// behind it starts a new decoder from the first byte (so a random read
/// costs up to a full decode: fine for the few structures an inspection
/// reads, near the start of an image). The first [`HEAD_CACHE`] bytes are
/// kept once decoded, where partition tables, volume descriptors and
/// directories sit.
pub struct DecodedImage {
    compressed: Compressed,
    /// The length reported by [`ByteSource::len`]: the declared size, or
    /// (unknown) [`UNKNOWN_LEN`] until a read reaches the stream's end, which
    /// then sets it. A read past the end is refused as out of bounds, as it
    /// is for any image, not as a damaged stream.
    len: AtomicU64,
    /// Reads ending past this are refused ([`DecodedImage::window`]).
    window: Option<u64>,
    state: Mutex<DecodeState>,
}

/// How much of a compressed image `write` decodes to decide how to write
/// it ([`DecodedImage::window`]): the partition tables, the ISO 9660
/// volume descriptors, directories and boot catalog of any image sit in
/// its first MiBs; reading the rest (a backup GPT at the end) would decode
/// the whole image once more before writing it.
pub const DECIDE_WINDOW: u64 = 64 << 20;

/// The length a [`DecodedImage`] of unknown size reports until its end
/// is found.
pub const UNKNOWN_LEN: u64 = u64::MAX / 2;

/// Bytes of the decoded image's start kept in memory by [`DecodedImage`].
pub const HEAD_CACHE: u64 = 16 << 20;

struct DecodeState {
    decoder: Option<Decoder>,
    head: Vec<u8>,
}

impl DecodedImage {
    /// `compressed` for random reads. Without a declared size the image
    /// reports `u64::MAX / 2` as its length (bounds checks then never
    /// refuse; a read past the real end fails).
    pub fn new(compressed: Compressed) -> DecodedImage {
        DecodedImage {
            len: AtomicU64::new(compressed.declared.unwrap_or(UNKNOWN_LEN)),
            window: None,
            compressed,
            state: Mutex::new(DecodeState {
                decoder: None,
                head: Vec::new(),
            }),
        }
    }

    /// `compressed` for random reads, knowing its decompressed length
    /// (from [`Compressed::measure`]).
    pub fn with_len(compressed: Compressed, len: u64) -> DecodedImage {
        DecodedImage {
            len: AtomicU64::new(len),
            ..DecodedImage::new(compressed)
        }
    }

    /// `compressed` for random reads of its first `window` bytes only: a
    /// read ending past them fails with [`super::Error::BeyondWindow`],
    /// which the readers that decide take as they take any unreadable
    /// structure (a problem, not the decision).
    pub fn window(compressed: Compressed, window: u64) -> DecodedImage {
        DecodedImage {
            window: Some(window),
            ..DecodedImage::new(compressed)
        }
    }

    pub fn compressed(&self) -> &Compressed {
        &self.compressed
    }

    /// Reads exactly `dst.len()` decompressed bytes at `offset`.
    pub fn read_at(&self, offset: u64, dst: &mut [u8]) -> Result<(), Error> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let end = offset + dst.len() as u64;
        let st = &mut *st;
        if end <= st.head.len() as u64 {
            dst.copy_from_slice(&st.head[offset as usize..end as usize]);
            return Ok(());
        }
        let behind = st.decoder.as_ref().is_none_or(|d| d.position() > offset);
        if behind {
            st.decoder = Some(self.compressed.decoder()?);
        }
        let d = st.decoder.as_mut().expect("set above");
        // Decode forward to `offset`, keeping what falls inside the head.
        let mut buf = vec![0u8; 1 << 20];
        while d.position() < offset {
            let take = (offset - d.position()).min(buf.len() as u64) as usize;
            let at = d.position();
            let got = d.read_full(&mut buf[..take])?;
            if got < take {
                self.len.store(d.position(), Ordering::Relaxed);
            }
            if got == 0 {
                return Err(Error::Truncated {
                    format: d.format,
                    offset: d.position(),
                    compressed: d.consumed.load(Ordering::Relaxed),
                });
            }
            keep_head(&mut st.head, at, &buf[..got]);
        }
        let at = d.position();
        let got = d.read_full(dst)?;
        if got < dst.len() {
            self.len.store(d.position(), Ordering::Relaxed);
            return Err(Error::Truncated {
                format: d.format,
                offset: d.position(),
                compressed: d.consumed.load(Ordering::Relaxed),
            });
        }
        keep_head(&mut st.head, at, dst);
        Ok(())
    }
}

/// Appends to `head` what of `data` (decoded at `at`) continues it, up to
/// [`HEAD_CACHE`] bytes.
fn keep_head(head: &mut Vec<u8>, at: u64, data: &[u8]) {
    let have = head.len() as u64;
    if at > have || have >= HEAD_CACHE {
        return;
    }
    let skip = (have - at) as usize;
    if skip >= data.len() {
        return;
    }
    let room = (HEAD_CACHE - have) as usize;
    let take = (data.len() - skip).min(room);
    head.extend_from_slice(&data[skip..skip + take]);
}

impl ByteSource for DecodedImage {
    fn len(&self) -> u64 {
        self.len.load(Ordering::Relaxed)
    }

    /// As for any image, but a read that finds the stream ending before
    /// the length it reported (an image whose size was not known) is out
    /// of bounds, with the length now known.
    fn read_exact_at(
        &self,
        offset: u64,
        buf: &mut [u8],
        what: &'static str,
    ) -> Result<(), super::Error> {
        let len = buf.len() as u64;
        let out = super::Error::OutOfBounds {
            what,
            offset,
            len,
            image_len: self.len(),
        };
        if offset.checked_add(len).is_none_or(|end| end > self.len()) {
            return Err(out);
        }
        if let Some(window) = self.window.filter(|&w| offset + len > w) {
            return Err(super::Error::BeyondWindow {
                what,
                offset,
                window,
            });
        }
        match self.read_at(offset, buf) {
            Ok(()) => Ok(()),
            Err(Error::Truncated { .. }) if self.len() < offset + len => {
                Err(super::Error::OutOfBounds {
                    what,
                    offset,
                    len,
                    image_len: self.len(),
                })
            }
            Err(e) => Err(super::Error::Io {
                offset,
                source: io::Error::other(e),
            }),
        }
    }

    fn read_raw(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.read_at(offset, buf).map_err(io::Error::other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_bytes_decide_not_names() {
        assert_eq!(
            detect(&[0xFD, b'7', b'z', b'X', b'Z', 0, 0, 4]),
            Some(Format::Xz)
        );
        assert_eq!(detect(&[0x28, 0xB5, 0x2F, 0xFD, 0x24]), Some(Format::Zstd));
        assert_eq!(detect(&[0x1F, 0x8B, 8, 0, 0, 0]), Some(Format::Gzip));
        assert_eq!(
            detect(b"BZh91AY&SY"),
            Some(Format::Bzip2),
            "a bzip2 block magic"
        );
        // Boot code that starts like gzip but is not deflate with valid flags.
        assert_eq!(detect(&[0x1F, 0x8B, 7, 0]), None);
        assert_eq!(detect(&[0x1F, 0x8B, 8, 0xE0]), None);
        assert_eq!(detect(b"BZh0"), None);
        assert_eq!(detect(&[0xEB, 0x63, 0x90]), None, "an MBR's jump");
        assert_eq!(detect(&[]), None);
        assert_eq!(
            detect(&[0x04, 0x22, 0x4D, 0x18, 0x64, 0x40]),
            Some(Format::Lz4)
        );
        // The LZ4 magic with another frame version is not taken for one.
        assert_eq!(detect(&[0x04, 0x22, 0x4D, 0x18, 0xA4]), None);
    }

    fn lz4_frame(data: &[u8], checksum: bool) -> Vec<u8> {
        use std::io::Write as _;
        let info = lz4_flex::frame::FrameInfo::new()
            .content_checksum(checksum)
            .block_size(lz4_flex::frame::BlockSize::Max64KB);
        let mut e = lz4_flex::frame::FrameEncoder::with_frame_info(info, Vec::new());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn decode_all(bytes: Vec<u8>) -> Result<Vec<u8>, Error> {
        let src: Arc<dyn ByteSource> = Arc::new(bytes);
        let c = Compressed::probe(src).unwrap().expect("detected");
        let mut d = c.decoder()?;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 100_000];
        loop {
            let n = d.read_full(&mut buf)?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    /// Concatenated LZ4 frames decode as one image, skipping a skippable
    /// frame between them, as `lz4 -d` does; a damaged frame fails by its
    /// content checksum, a cut one as truncated, garbage after a frame as
    /// corrupt.
    #[test]
    fn lz4_frames_decode_in_full_and_damage_fails() {
        let a: Vec<u8> = (0..300_000u32).map(|i| (i * 7 / 13) as u8).collect();
        let b: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
        let mut two = lz4_frame(&a, true);
        two.extend_from_slice(&[0x5A, 0x2A, 0x4D, 0x18, 3, 0, 0, 0, 1, 2, 3]);
        two.extend_from_slice(&lz4_frame(&b, false));
        let mut both = a.clone();
        both.extend_from_slice(&b);
        assert!(decode_all(two.clone()).unwrap() == both);
        let one = lz4_frame(&a, true);
        let mut flipped = one.clone();
        // The last byte is the content checksum's.
        let last = flipped.len() - 1;
        flipped[last] ^= 0x40;
        assert!(matches!(
            decode_all(flipped),
            Err(Error::Corrupt {
                format: Format::Lz4,
                ..
            })
        ));
        let cut = one[..one.len() / 2].to_vec();
        assert!(matches!(
            decode_all(cut),
            Err(Error::Truncated {
                format: Format::Lz4,
                ..
            })
        ));
        let mut trailing = one.clone();
        trailing.extend_from_slice(b"garbage!");
        assert!(matches!(decode_all(trailing), Err(Error::Corrupt { .. })));
    }

    #[test]
    fn zstd_frame_headers_record_their_content_size() {
        // Single segment, 1-byte content size 200, checksum.
        assert_eq!(
            parse_zstd_frame_header(&[0x28, 0xB5, 0x2F, 0xFD, 0x24, 200]),
            Ok(ZstdFrame::Data {
                header_len: 6,
                content_size: Some(200),
                checksum: true
            })
        );
        // Window descriptor, no content size.
        assert_eq!(
            parse_zstd_frame_header(&[0x28, 0xB5, 0x2F, 0xFD, 0x00, 0x58]),
            Ok(ZstdFrame::Data {
                header_len: 6,
                content_size: None,
                checksum: false
            })
        );
        // 2-byte content size is stored minus 256.
        assert_eq!(
            parse_zstd_frame_header(&[0x28, 0xB5, 0x2F, 0xFD, 0x60, 0x10, 0x00]),
            Ok(ZstdFrame::Data {
                header_len: 7,
                content_size: Some(256 + 16),
                checksum: false
            })
        );
        assert_eq!(
            parse_zstd_frame_header(&[0x50, 0x2A, 0x4D, 0x18, 5, 0, 0, 0]),
            Ok(ZstdFrame::Skippable { len: 5 })
        );
        assert!(parse_zstd_frame_header(&[0x28, 0xB5, 0x2F, 0xFD, 0x08]).is_err());
        assert!(parse_zstd_frame_header(&[0x28, 0xB5, 0x2F, 0xFD, 0xC0, 1, 2]).is_err());
    }

    #[test]
    fn crc32_is_ieee() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn xz_index_sums_records_and_checks_its_crc() {
        // Two records: unpadded 13 → 16, 100 bytes; unpadded 21 → 24, 300.
        let mut body = vec![0u8, 2, 13, 100, 21, 0xAC, 0x02];
        while (body.len() + 4) % 4 != 0 {
            body.push(0);
        }
        let mut index = body.clone();
        index.extend_from_slice(&crc32(&body).to_le_bytes());
        assert_eq!(parse_xz_index(&index), Ok((40, 400)));
        let mut broken = index.clone();
        broken[3] ^= 1;
        assert_eq!(parse_xz_index(&broken), Err("CRC32 mismatch"));
    }

    #[test]
    fn an_image_without_magic_is_not_compressed() {
        let src: Arc<dyn ByteSource> = Arc::new(vec![0u8; 4096]);
        assert!(Compressed::probe(src).unwrap().is_none());
    }

    #[test]
    fn head_keeps_only_what_continues_it() {
        let mut head = Vec::new();
        keep_head(&mut head, 0, &[1, 2, 3]);
        keep_head(&mut head, 5, &[9]);
        keep_head(&mut head, 2, &[3, 4, 5]);
        assert_eq!(head, [1, 2, 3, 4, 5]);
    }
}
