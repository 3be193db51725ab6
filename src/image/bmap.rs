//! Block maps: bmaptool's `.bmap` files, which say which blocks of a disk
//! image hold data, with a checksum of each mapped range.
//!
//! # Why
//!
//! Appliance and embedded images (Yocto, Raspberry Pi style `.img.xz`,
//! Tizen) are mostly free space: a 4 GiB image may hold 600 MiB of data.
//! `bmaptool create` records the blocks the image's file systems use
//! (FIEMAP/`SEEK_DATA` of the sparse image file), and `bmaptool copy`
//! writes only those. bootstick does the same (`write::write_mapped`): the
//! mapped ranges are written and read back, the others keep whatever the
//! stick held (`docs/cli.md`, "Block maps", says why that is safe).
//!
//! # Trust
//!
//! A bmap is untrusted input (a download beside the image). [`parse`]
//! accepts bmaptool's formats 1.x and 2.x only when the whole file is
//! consistent: a power-of-two block size in a sane range, `BlocksCount`
//! that follows from `ImageSize`, ranges sorted, not overlapping and
//! inside the image, `MappedBlocksCount` equal to their sum, checksums of
//! the algorithm's length, and the file's own checksum
//! (`BmapFileChecksum`, 1.3's `BmapFileSHA1`) computed as bmaptool does:
//! over the file with the checksum's digits replaced by ASCII zeros.
//! Every error names the line. The XML is read by `roxmltree` with DTDs
//! refused (no entity expansion) and a node limit (`docs/decisions.md`).
//!
//! The image is checked against the bmap as it streams: [`RangeCheck`]
//! hashes each mapped range's bytes and compares them with the range's
//! checksum when the range ends ([`Error::RangeMismatch`]: a corrupt image,
//! or the bmap of another one); [`Bmap::check_image_len`] compares the
//! image's size with `ImageSize` before anything is written when it is
//! known, and at the stream's end otherwise.

use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::hash::{Digest, HashAlgorithm, Hasher};
use crate::plan::{Extent, Plan};

/// The largest bmap file read: a range is one line of about 100 bytes, so
/// this is some 160 000 ranges, far more than any real image has (a
/// fragmented 32 GiB image has a few thousand).
pub const MAX_BMAP_BYTES: u64 = 16 << 20;

/// The most XML nodes parsed (an element, its text and the whitespace
/// around it are three), bounding the parser's memory.
const MAX_NODES: u32 = 1 << 21;

/// Block sizes accepted: bmaptool uses the file system's (4 KiB); smaller
/// than a sector or larger than 64 MiB is no image's block.
pub const MIN_BLOCK_SIZE: u64 = 512;
pub const MAX_BLOCK_SIZE: u64 = 64 << 20;

/// Why a bmap cannot be used. `line` is the 1-based line in the bmap file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read the bmap {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the bmap {} is {len} bytes, more than the {limit} bytes a block map of any image needs", path.display())]
    TooLarge { path: PathBuf, len: u64, limit: u64 },
    #[error("the bmap is not UTF-8 text (at byte {offset})")]
    NotText { offset: usize },
    #[error("the bmap is not well-formed XML: {detail}")]
    Xml { line: u32, detail: String },
    #[error("the bmap's root element is <{found}>, not <bmap>")]
    NotBmap { found: String },
    #[error("line {line}: bmap format version {version:?} is not supported (1.x and 2.x are)")]
    Version { version: String, line: u32 },
    #[error("the bmap has no <{element}>")]
    Missing { element: &'static str },
    #[error("line {line}: the bmap's <{element}> is {text:?}, not a number")]
    Number {
        element: &'static str,
        text: String,
        line: u32,
    },
    #[error("line {line}: the bmap's block size {size} is not a power of two from {MIN_BLOCK_SIZE} to {MAX_BLOCK_SIZE}")]
    BlockSize { size: u64, line: u32 },
    #[error("line {line}: the bmap's <BlocksCount> is {declared}, but an image of {image_size} bytes in {block_size}-byte blocks has {expected}")]
    BlocksCount {
        declared: u64,
        expected: u64,
        image_size: u64,
        block_size: u64,
        line: u32,
    },
    #[error("line {line}: the bmap's checksum type {name:?} is not supported (md5, sha1, sha256, sha512 are)")]
    ChecksumType { name: String, line: u32 },
    #[error("line {line}: the bmap's range {text:?} is not FIRST-LAST or BLOCK")]
    RangeSyntax { text: String, line: u32 },
    #[error("line {line}: the bmap's range {first}-{last} does not start after the range before it ends (block {previous}): ranges must be sorted and must not overlap")]
    RangeOrder {
        first: u64,
        last: u64,
        previous: u64,
        line: u32,
    },
    #[error("line {line}: the bmap's range {first}-{last} is backwards")]
    RangeBackwards { first: u64, last: u64, line: u32 },
    #[error(
        "line {line}: the bmap's range {first}-{last} lies outside the image's {blocks} blocks"
    )]
    RangeOutside {
        first: u64,
        last: u64,
        blocks: u64,
        line: u32,
    },
    #[error("line {line}: the bmap's {algorithm} checksum {text:?} is not {} hex digits", algorithm.digest_len() * 2)]
    ChecksumSyntax {
        algorithm: HashAlgorithm,
        text: String,
        line: u32,
    },
    #[error("line {line}: the bmap's <MappedBlocksCount> is {declared}, but its ranges map {actual} blocks")]
    MappedCount {
        declared: u64,
        actual: u64,
        line: u32,
    },
    /// The bmap file's own checksum differs: it was damaged or edited.
    #[error("line {line}: the bmap file's own {algorithm} checksum is {actual}, but it records {expected}: the bmap is corrupt or was edited")]
    FileChecksum {
        algorithm: HashAlgorithm,
        expected: String,
        actual: String,
        line: u32,
    },
    /// The bmap is of an image of another size.
    #[error("the bmap describes an image of {bmap} bytes, but the image is {image} bytes: it is the bmap of another image")]
    ImageSize { bmap: u64, image: u64 },
    /// A mapped range of the image does not have the bmap's checksum.
    #[error("line {line}: the image's blocks {first}-{last} (bytes {start}..{end}) do not have the {algorithm} checksum the bmap records ({actual} instead of {expected}): the image is corrupt, or the bmap is of another image")]
    RangeMismatch {
        first: u64,
        last: u64,
        start: u64,
        end: u64,
        algorithm: HashAlgorithm,
        expected: String,
        actual: String,
        line: u32,
    },
}

/// One mapped range: blocks `first..=last`, with its checksum when the
/// bmap records one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MappedRange {
    pub first: u64,
    pub last: u64,
    pub digest: Option<Digest>,
    /// The line of its `<Range>` element.
    pub line: u32,
}

/// A parsed, consistent bmap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bmap {
    /// `major.minor`, as in the file.
    pub version: String,
    pub image_size: u64,
    pub block_size: u64,
    /// The algorithm of the range checksums (`None`: a bmap before 1.3,
    /// which has none).
    pub checksum: Option<HashAlgorithm>,
    pub ranges: Vec<MappedRange>,
    /// The file's own checksum, present and matched.
    pub file_checksum: Option<Digest>,
}

type Node<'a> = roxmltree::Node<'a, 'a>;

fn line_of(doc: &roxmltree::Document, node: Node) -> u32 {
    doc.text_pos_at(node.range().start).row
}

fn child<'a>(root: Node<'a>, name: &'static str) -> Option<Node<'a>> {
    root.children()
        .find(|n| n.is_element() && n.tag_name().name() == name)
}

/// Up to 80 characters of untrusted text, for a message.
fn shown(text: &str) -> String {
    text.chars().take(80).collect()
}

fn number(doc: &roxmltree::Document, root: Node, name: &'static str) -> Result<(u64, u32), Error> {
    let node = child(root, name).ok_or(Error::Missing { element: name })?;
    let line = line_of(doc, node);
    let text = node.text().unwrap_or_default().trim();
    let n = text.parse().map_err(|_| Error::Number {
        element: name,
        text: shown(text),
        line,
    })?;
    Ok((n, line))
}

fn algorithm_named(name: &str, line: u32) -> Result<HashAlgorithm, Error> {
    match name.trim() {
        "sha256" => Ok(HashAlgorithm::Sha256),
        "sha512" => Ok(HashAlgorithm::Sha512),
        "sha1" => Ok(HashAlgorithm::Sha1),
        "md5" => Ok(HashAlgorithm::Md5),
        other => Err(Error::ChecksumType {
            name: shown(other),
            line,
        }),
    }
}

fn digest(text: &str, algorithm: HashAlgorithm, line: u32) -> Result<Digest, Error> {
    let t = text.trim();
    Digest::from_hex(algorithm, t).ok_or(Error::ChecksumSyntax {
        algorithm,
        text: shown(t),
        line,
    })
}

/// The flavour of a bmap version: which names carry the checksums.
struct Flavour {
    /// The range checksums' algorithm and attribute, when ranges have them.
    ranges: Option<(HashAlgorithm, &'static str)>,
    /// The element holding the file's own checksum, when it has one.
    file: Option<&'static str>,
}

/// Parses and checks a bmap file's bytes (see the module documentation).
pub fn parse(bytes: &[u8]) -> Result<Bmap, Error> {
    let text = std::str::from_utf8(bytes).map_err(|e| Error::NotText {
        offset: e.valid_up_to(),
    })?;
    let options = roxmltree::ParsingOptions {
        allow_dtd: false,
        nodes_limit: MAX_NODES,
        ..roxmltree::ParsingOptions::default()
    };
    let doc = roxmltree::Document::parse_with_options(text, options).map_err(|e| Error::Xml {
        line: e.pos().row,
        detail: e.to_string(),
    })?;
    let root = doc.root_element();
    if root.tag_name().name() != "bmap" {
        return Err(Error::NotBmap {
            found: shown(root.tag_name().name()),
        });
    }
    let root_line = line_of(&doc, root);
    let version = root.attribute("version").unwrap_or_default().trim();
    let bad_version = || Error::Version {
        version: shown(version),
        line: root_line,
    };
    let (major, minor) = version
        .split_once('.')
        .and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)))
        .ok_or_else(bad_version)?;
    // 2.0 named the checksum type and renamed `sha1=`/`BmapFileSHA1` to
    // `chksum=`/`BmapFileChecksum`; bmap-tools 3.0 wrote that format as
    // "1.4" by mistake, so 1.4 is read as 2.0 (as bmaptool does). 1.3
    // had SHA-1 only; before 1.3 there were no checksums.
    let flavour = match (major, minor) {
        (2, _) | (1, 4..) => {
            let node = child(root, "ChecksumType").ok_or(Error::Missing {
                element: "ChecksumType",
            })?;
            let algorithm = algorithm_named(node.text().unwrap_or_default(), line_of(&doc, node))?;
            Flavour {
                ranges: Some((algorithm, "chksum")),
                file: Some("BmapFileChecksum"),
            }
        }
        (1, 3) => Flavour {
            ranges: Some((HashAlgorithm::Sha1, "sha1")),
            file: Some("BmapFileSHA1"),
        },
        (1, _) => Flavour {
            ranges: None,
            file: None,
        },
        _ => return Err(bad_version()),
    };
    let (image_size, _) = number(&doc, root, "ImageSize")?;
    let (block_size, bs_line) = number(&doc, root, "BlockSize")?;
    if !block_size.is_power_of_two() || !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&block_size) {
        return Err(Error::BlockSize {
            size: block_size,
            line: bs_line,
        });
    }
    let (blocks, blocks_line) = number(&doc, root, "BlocksCount")?;
    let expected = image_size.div_ceil(block_size);
    if blocks != expected {
        return Err(Error::BlocksCount {
            declared: blocks,
            expected,
            image_size,
            block_size,
            line: blocks_line,
        });
    }
    let map = child(root, "BlockMap").ok_or(Error::Missing {
        element: "BlockMap",
    })?;
    let mut ranges: Vec<MappedRange> = Vec::new();
    let mut mapped = 0u64;
    for r in map
        .children()
        .filter(|n| n.is_element() && n.tag_name().name() == "Range")
    {
        let line = line_of(&doc, r);
        let text = r.text().unwrap_or_default().trim();
        let bad = || Error::RangeSyntax {
            text: shown(text),
            line,
        };
        let block = |s: &str| s.trim().parse::<u64>().map_err(|_| bad());
        let (first, last) = match text.split_once('-') {
            Some((a, b)) => (block(a)?, block(b)?),
            None => {
                let b = block(text)?;
                (b, b)
            }
        };
        if first > last {
            return Err(Error::RangeBackwards { first, last, line });
        }
        if let Some(p) = ranges.last().filter(|p| p.last >= first) {
            return Err(Error::RangeOrder {
                first,
                last,
                previous: p.last,
                line,
            });
        }
        if last >= blocks {
            return Err(Error::RangeOutside {
                first,
                last,
                blocks,
                line,
            });
        }
        let digest = match flavour.ranges {
            Some((algorithm, attribute)) => r
                .attribute(attribute)
                .map(|t| digest(t, algorithm, line))
                .transpose()?,
            None => None,
        };
        mapped += last - first + 1;
        ranges.push(MappedRange {
            first,
            last,
            digest,
            line,
        });
    }
    let (declared, mapped_line) = number(&doc, root, "MappedBlocksCount")?;
    if declared != mapped {
        return Err(Error::MappedCount {
            declared,
            actual: mapped,
            line: mapped_line,
        });
    }
    let file_checksum = match (flavour.file, flavour.ranges) {
        (Some(element), Some((algorithm, _))) => {
            let node = child(root, element).ok_or(Error::Missing { element })?;
            Some(file_checksum(text, &doc, node, algorithm)?)
        }
        _ => None,
    };
    Ok(Bmap {
        version: version.to_string(),
        image_size,
        block_size,
        checksum: flavour.ranges.map(|(a, _)| a),
        ranges,
        file_checksum,
    })
}

/// Checks the bmap file's own checksum, held by `node`: the digest of the
/// file with the checksum's digits replaced by ASCII zeros, as bmaptool
/// creates and checks it (`bmaptool create` writes zeros, hashes the
/// file, then writes the digest in their place).
fn file_checksum(
    text: &str,
    doc: &roxmltree::Document,
    node: Node,
    algorithm: HashAlgorithm,
) -> Result<Digest, Error> {
    let line = line_of(doc, node);
    let value = node.text().unwrap_or_default().trim();
    let expected = digest(value, algorithm, line)?;
    // The digits as they stand in the file: inside the element's text (a
    // value written with character references is not bmaptool's).
    let raw = node
        .children()
        .find(|c| c.is_text())
        .map(|c| c.range())
        .unwrap_or(0..0);
    let at = text[raw.clone()]
        .find(value)
        .map(|i| raw.start + i)
        .ok_or(Error::ChecksumSyntax {
            algorithm,
            text: shown(value),
            line,
        })?;
    let mut h = algorithm.hasher();
    h.update(&text.as_bytes()[..at]);
    h.update(&vec![b'0'; value.len()]);
    h.update(&text.as_bytes()[at + value.len()..]);
    let actual = h.finish();
    if actual != expected {
        return Err(Error::FileChecksum {
            algorithm,
            expected: expected.to_hex(),
            actual: actual.to_hex(),
            line,
        });
    }
    Ok(expected)
}

/// Reads and parses the bmap at `path` (at most [`MAX_BMAP_BYTES`]).
pub fn load(path: &Path) -> Result<Bmap, Error> {
    use std::io::Read as _;
    let read = |source| Error::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read)?;
    let len = file.metadata().map_err(read)?.len();
    if len > MAX_BMAP_BYTES {
        return Err(Error::TooLarge {
            path: path.to_path_buf(),
            len,
            limit: MAX_BMAP_BYTES,
        });
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(MAX_BMAP_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read)?;
    if bytes.len() as u64 > MAX_BMAP_BYTES {
        return Err(Error::TooLarge {
            path: path.to_path_buf(),
            len: bytes.len() as u64,
            limit: MAX_BMAP_BYTES,
        });
    }
    parse(&bytes)
}

/// The bmap beside `image`, found as `bmaptool copy` finds it: the image's
/// name with `.bmap` appended, then with each extension in turn replaced by
/// it (`x.img.xz` → `x.img.xz.bmap`, `x.img.bmap`, `x.bmap`), so the bmap
/// of the uncompressed image is found beside its compressed download.
/// Only regular files count.
pub fn discover(image: &Path) -> Option<PathBuf> {
    let name = image.file_name()?.to_str()?;
    let mut stem = name;
    loop {
        let candidate = image.with_file_name(format!("{stem}.bmap"));
        if candidate.is_file() {
            return Some(candidate);
        }
        // A leading dot is a hidden file's name, not an extension.
        match stem.rfind('.').filter(|&i| i > 0) {
            Some(i) => stem = &stem[..i],
            None => return None,
        }
    }
}

impl Bmap {
    /// The image bytes of range `r` (the image's last block may be short).
    pub fn bytes(&self, r: &MappedRange) -> Range<u64> {
        let start = r.first * self.block_size;
        let end = (r.last + 1)
            .saturating_mul(self.block_size)
            .min(self.image_size);
        start..end
    }

    /// Bytes in mapped ranges: what is written and read back.
    pub fn mapped_bytes(&self) -> u64 {
        self.ranges
            .iter()
            .map(|r| {
                let b = self.bytes(r);
                b.end - b.start
            })
            .sum()
    }

    /// Ranges that carry a checksum (checked as the image streams).
    pub fn checked_ranges(&self) -> usize {
        self.ranges.iter().filter(|r| r.digest.is_some()).count()
    }

    /// Refuses an image of `image_len` bytes when that is not the bmap's
    /// image size.
    pub fn check_image_len(&self, image_len: u64) -> Result<(), Error> {
        if image_len != self.image_size {
            return Err(Error::ImageSize {
                bmap: self.image_size,
                image: image_len,
            });
        }
        Ok(())
    }

    /// The plan that writes only the mapped ranges, each from the image at
    /// its own offset.
    pub fn plan(&self) -> Plan {
        let mut b = Plan::builder();
        for r in &self.ranges {
            let bytes = self.bytes(r);
            b.push(
                bytes.start,
                Extent::Source {
                    offset: bytes.start,
                    len: bytes.end - bytes.start,
                },
            )
            .expect("bmap ranges are sorted and do not overlap");
        }
        b.build()
    }

    /// A checker of the image's mapped bytes as they stream.
    pub fn checker(&self) -> RangeCheck<'_> {
        RangeCheck {
            bmap: self,
            next: 0,
            pos: 0,
            hasher: None,
        }
    }
}

/// Checks a bmap's range checksums against the image's bytes as they
/// stream past, in increasing offsets ([`RangeCheck::feed`]); bytes outside
/// the mapped ranges are ignored.
pub struct RangeCheck<'a> {
    bmap: &'a Bmap,
    /// The range being hashed.
    next: usize,
    /// The image byte the next byte of the current range must be.
    pos: u64,
    hasher: Option<Hasher>,
}

impl RangeCheck<'_> {
    /// Feeds image bytes `at..at + data.len()`. Fails when a range whose
    /// last byte is among them does not have its checksum, or when bytes
    /// of a range arrive with a gap (what was sent cannot be vouched for).
    pub fn feed(&mut self, mut at: u64, mut data: &[u8]) -> Result<(), Error> {
        while !data.is_empty() {
            let Some(r) = self.bmap.ranges.get(self.next) else {
                return Ok(());
            };
            let bytes = self.bmap.bytes(r);
            if at >= bytes.end && self.hasher.is_none() {
                // A range that was never fed: the bytes skipped past it.
                return Err(self.mismatch(r, None));
            }
            if at < bytes.start {
                let skip = (bytes.start - at).min(data.len() as u64);
                at += skip;
                data = &data[skip as usize..];
                continue;
            }
            if self.hasher.is_none() {
                if at != bytes.start {
                    return Err(self.mismatch(r, None));
                }
                self.pos = bytes.start;
                self.hasher = Some(
                    r.digest
                        .as_ref()
                        .map_or(HashAlgorithm::Sha256, Digest::algorithm)
                        .hasher(),
                );
            }
            if at != self.pos {
                return Err(self.mismatch(r, None));
            }
            let take = (bytes.end - at).min(data.len() as u64) as usize;
            if r.digest.is_some() {
                if let Some(h) = &mut self.hasher {
                    h.update(&data[..take]);
                }
            }
            at += take as u64;
            self.pos = at;
            data = &data[take..];
            if at == bytes.end {
                let h = self.hasher.take().expect("set above");
                if let Some(expected) = &r.digest {
                    let actual = h.finish();
                    if &actual != expected {
                        return Err(self.mismatch(r, Some(actual)));
                    }
                }
                self.next += 1;
            }
        }
        Ok(())
    }

    /// Ranges fully fed and checked so far.
    pub fn done(&self) -> usize {
        self.next
    }

    /// Fails unless every range was fed (the image ended inside the map).
    pub fn finish(self) -> Result<(), Error> {
        match self.bmap.ranges.get(self.next) {
            None => Ok(()),
            Some(r) => Err(self.mismatch(r, None)),
        }
    }

    fn mismatch(&self, r: &MappedRange, actual: Option<Digest>) -> Error {
        let bytes = self.bmap.bytes(r);
        let algorithm = r
            .digest
            .as_ref()
            .map_or(HashAlgorithm::Sha256, Digest::algorithm);
        Error::RangeMismatch {
            first: r.first,
            last: r.last,
            start: bytes.start,
            end: bytes.end,
            algorithm,
            expected: r
                .digest
                .as_ref()
                .map_or_else(|| "none".to_string(), Digest::to_hex),
            actual: actual.map_or_else(|| "bytes missing".to_string(), |d| d.to_hex()),
            line: r.line,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(alg: HashAlgorithm, data: &[u8]) -> String {
        let mut h = alg.hasher();
        h.update(data);
        h.finish().to_hex()
    }

    /// A bmap of `image` with `ranges` mapped, its checksums and its own
    /// checksum filled in as `bmaptool create` does (2.0, or 1.3 with
    /// `v13`).
    fn make(image: &[u8], bs: u64, ranges: &[(u64, u64)], v13: bool) -> String {
        let alg = if v13 {
            HashAlgorithm::Sha1
        } else {
            HashAlgorithm::Sha256
        };
        let (attr, own) = if v13 {
            ("sha1", "BmapFileSHA1")
        } else {
            ("chksum", "BmapFileChecksum")
        };
        let blocks = (image.len() as u64).div_ceil(bs);
        let mapped: u64 = ranges.iter().map(|(a, b)| b - a + 1).sum();
        let mut map = String::new();
        for (a, b) in ranges {
            let s = (a * bs) as usize;
            let e = (((b + 1) * bs) as usize).min(image.len());
            let t = if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            };
            map.push_str(&format!(
                "        <Range {attr}=\"{}\"> {t} </Range>\n",
                sha(alg, &image[s..e])
            ));
        }
        let zeros = "0".repeat(alg.digest_len() * 2);
        let kind = if v13 {
            String::new()
        } else {
            "    <ChecksumType> sha256 </ChecksumType>\n".to_string()
        };
        let text = format!(
            "<?xml version=\"1.0\" ?>\n<bmap version=\"{}\">\n    <ImageSize> {} </ImageSize>\n    <BlockSize> {bs} </BlockSize>\n    <BlocksCount> {blocks} </BlocksCount>\n    <MappedBlocksCount> {mapped} </MappedBlocksCount>\n{kind}    <{own}> {zeros} </{own}>\n    <BlockMap>\n{map}    </BlockMap>\n</bmap>\n",
            if v13 { "1.3" } else { "2.0" },
            image.len()
        );
        let digest = sha(alg, text.as_bytes());
        text.replace(&zeros, &digest)
    }

    fn image() -> Vec<u8> {
        (0..300_000u32).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn a_consistent_bmap_parses_and_plans_its_ranges() {
        let img = image();
        for v13 in [false, true] {
            let b = parse(make(&img, 4096, &[(0, 1), (5, 5), (70, 73)], v13).as_bytes()).unwrap();
            assert!(b.file_checksum.is_some());
            assert_eq!(b.ranges.len(), 3);
            assert_eq!(b.checked_ranges(), 3);
            assert_eq!(b.ranges[1].line, 10 + usize::from(!v13) as u32);
            // The last block is short: 300000 = 73 * 4096 + 992.
            assert_eq!(b.bytes(&b.ranges[2]), 70 * 4096..300_000);
            assert_eq!(b.mapped_bytes(), 3 * 4096 + (300_000 - 70 * 4096));
            assert_eq!(b.plan().bytes_to_write(), b.mapped_bytes());
            // Fed in odd pieces, with unmapped bytes between, it matches.
            let mut c = b.checker();
            for piece in img.chunks(7777).enumerate() {
                c.feed(piece.0 as u64 * 7777, piece.1).unwrap();
            }
            assert_eq!(c.done(), 3);
            c.finish().unwrap();
        }
    }

    #[test]
    fn a_range_of_other_bytes_is_caught_at_its_end() {
        let img = image();
        let b = parse(make(&img, 4096, &[(0, 1), (5, 6)], false).as_bytes()).unwrap();
        let mut other = img.clone();
        other[6 * 4096 + 17] ^= 1;
        let mut c = b.checker();
        c.feed(0, &other[..6 * 4096]).unwrap();
        match c.feed(6 * 4096, &other[6 * 4096..8 * 4096]) {
            Err(Error::RangeMismatch {
                first: 5,
                last: 6,
                start,
                line: 11,
                ..
            }) => assert_eq!(start, 5 * 4096),
            other => panic!("{other:?}"),
        }
        // An image that ends inside the map is caught by finish.
        let mut c = b.checker();
        c.feed(0, &img[..4096 * 5 + 10]).unwrap();
        assert!(matches!(
            c.finish(),
            Err(Error::RangeMismatch { first: 5, .. })
        ));
    }

    #[test]
    fn an_edited_bmap_fails_its_own_checksum() {
        let img = image();
        let text = make(&img, 4096, &[(0, 1), (5, 5)], false);
        let edited = text.replace("> 5 <", "> 6 <");
        match parse(edited.as_bytes()) {
            Err(Error::FileChecksum { line: 8, .. }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn inconsistent_bmaps_are_refused_with_the_line() {
        let p = |body: &str| parse(format!("<bmap version=\"1.2\">\n{body}\n</bmap>").as_bytes());
        let head = "<ImageSize> 8192 </ImageSize><BlockSize> 4096 </BlockSize><BlocksCount> 2 </BlocksCount>";
        let r = p(&format!(
            "{head}<MappedBlocksCount> 1 </MappedBlocksCount><BlockMap>\n<Range> 2 </Range></BlockMap>"
        ));
        assert!(
            matches!(r, Err(Error::RangeOutside { line: 3, .. })),
            "{r:?}"
        );
        let r = p(&format!("{head}<MappedBlocksCount> 2 </MappedBlocksCount><BlockMap><Range> 1 </Range>\n<Range> 0 </Range></BlockMap>"));
        assert!(matches!(r, Err(Error::RangeOrder { line: 3, .. })), "{r:?}");
        let r = p(&format!("{head}<MappedBlocksCount> 2 </MappedBlocksCount><BlockMap><Range> 0-1 </Range><Range> 1 </Range></BlockMap>"));
        assert!(matches!(r, Err(Error::RangeOrder { .. })), "{r:?}");
        let r = p(&format!("{head}<MappedBlocksCount> 2 </MappedBlocksCount><BlockMap><Range> 1-0 </Range></BlockMap>"));
        assert!(matches!(r, Err(Error::RangeBackwards { .. })), "{r:?}");
        let r = p(&format!("{head}<MappedBlocksCount> 2 </MappedBlocksCount><BlockMap><Range> 1 </Range></BlockMap>"));
        assert!(
            matches!(
                r,
                Err(Error::MappedCount {
                    declared: 2,
                    actual: 1,
                    ..
                })
            ),
            "{r:?}"
        );
        let r = p(&format!("{head}<MappedBlocksCount> 1 </MappedBlocksCount><BlockMap><Range> x </Range></BlockMap>"));
        assert!(matches!(r, Err(Error::RangeSyntax { .. })), "{r:?}");
        let r = p("<ImageSize> 8192 </ImageSize><BlockSize> 4096 </BlockSize><BlocksCount> 3 </BlocksCount>");
        assert!(
            matches!(r, Err(Error::BlocksCount { expected: 2, .. })),
            "{r:?}"
        );
        let r = p("<ImageSize> 8192 </ImageSize><BlockSize> 4000 </BlockSize>");
        assert!(
            matches!(r, Err(Error::BlockSize { size: 4000, .. })),
            "{r:?}"
        );
        let r = p("<ImageSize> 8192 </ImageSize><BlockSize> 256 </BlockSize>");
        assert!(matches!(r, Err(Error::BlockSize { .. })), "{r:?}");
        let r = p("<ImageSize> -1 </ImageSize>");
        assert!(
            matches!(
                r,
                Err(Error::Number {
                    element: "ImageSize",
                    line: 2,
                    ..
                })
            ),
            "{r:?}"
        );
        let r = p("<ImageSize> 8192 </ImageSize>");
        assert!(
            matches!(
                r,
                Err(Error::Missing {
                    element: "BlockSize"
                })
            ),
            "{r:?}"
        );
        // A 2.0 bmap needs its checksum type, of a known algorithm, and
        // checksums of that algorithm's length.
        let r = parse(b"<bmap version=\"2.0\"></bmap>");
        assert!(
            matches!(
                r,
                Err(Error::Missing {
                    element: "ChecksumType"
                })
            ),
            "{r:?}"
        );
        let r = parse(b"<bmap version=\"2.0\"><ChecksumType>crc32</ChecksumType></bmap>");
        assert!(matches!(r, Err(Error::ChecksumType { .. })), "{r:?}");
        let r = parse(format!("<bmap version=\"2.0\"><ChecksumType>sha256</ChecksumType>{head}<MappedBlocksCount> 1 </MappedBlocksCount><BlockMap><Range chksum=\"abc\"> 1 </Range></BlockMap></bmap>").as_bytes());
        assert!(matches!(r, Err(Error::ChecksumSyntax { .. })), "{r:?}");
        let r = parse(b"<bmap version=\"3.0\"></bmap>");
        assert!(matches!(r, Err(Error::Version { .. })), "{r:?}");
        let r = parse(b"<bmap version=\"two\"></bmap>");
        assert!(matches!(r, Err(Error::Version { .. })), "{r:?}");
        assert!(matches!(parse(b"<notbmap/>"), Err(Error::NotBmap { .. })));
        assert!(matches!(parse(b"<bmap"), Err(Error::Xml { .. })));
        assert!(matches!(
            parse(b"\xff<bmap/>"),
            Err(Error::NotText { offset: 0 })
        ));
        // A DTD (entity expansion) is refused outright.
        let dtd = "<?xml version=\"1.0\"?><!DOCTYPE bmap [<!ENTITY a \"aaaa\">]><bmap version=\"2.0\">&a;</bmap>";
        assert!(matches!(parse(dtd.as_bytes()), Err(Error::Xml { .. })));
        // Without checksums (before 1.3) a consistent bmap is accepted.
        let b = p(&format!("{head}<MappedBlocksCount> 1 </MappedBlocksCount><BlockMap><Range> 1 </Range></BlockMap>")).unwrap();
        assert_eq!(
            (b.checksum, b.checked_ranges(), b.file_checksum),
            (None, 0, None)
        );
    }

    #[test]
    fn the_image_size_must_be_the_bmaps() {
        let img = image();
        let b = parse(make(&img, 4096, &[(0, 1)], false).as_bytes()).unwrap();
        b.check_image_len(300_000).unwrap();
        assert!(matches!(
            b.check_image_len(300_001),
            Err(Error::ImageSize {
                bmap: 300_000,
                image: 300_001
            })
        ));
    }

    #[test]
    fn discovery_follows_bmaptool() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let img = d.join("x.img.xz");
        assert_eq!(discover(&img), None);
        std::fs::write(d.join("x.bmap"), b"").unwrap();
        assert_eq!(discover(&img), Some(d.join("x.bmap")));
        std::fs::write(d.join("x.img.bmap"), b"").unwrap();
        assert_eq!(discover(&img), Some(d.join("x.img.bmap")));
        std::fs::write(d.join("x.img.xz.bmap"), b"").unwrap();
        assert_eq!(discover(&img), Some(d.join("x.img.xz.bmap")));
        // A directory of that name is not a bmap; a hidden file's name is
        // not an extension.
        std::fs::create_dir(d.join("y.img.bmap")).unwrap();
        assert_eq!(discover(&d.join("y.img")), None);
        std::fs::write(d.join(".bmap"), b"").unwrap();
        assert_eq!(discover(&d.join(".hidden")), None);
    }
}
