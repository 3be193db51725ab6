//! Zip archives as image sources: choosing the one member that is a disk
//! image or ISO, and decoding it as a stream.
//!
//! # Why
//!
//! Vendor downloads (appliances, some Raspberry Pi and router images,
//! Windows-made archives) are a `.zip` holding the image beside a README,
//! a licence or a macOS `.DS_Store`, often inside a folder. Writing the
//! archive's bytes would give a stick that boots nothing, so the archive is
//! looked into ([`select`]):
//!
//! - an entry is an **image by its magic bytes** when its first decoded
//!   bytes hold an ISO 9660 or UDF volume descriptor (byte 32769), a GPT
//!   header (byte 512 or 4096) or a boot-sector signature (`55 AA` at byte
//!   510: MBR disks, hybrid ISOs, FAT volumes). A README, licence or
//!   `.DS_Store` has none of them;
//! - only when no entry is an image by its bytes, an entry **named** like
//!   one (`.img`, `.iso`, `.raw`, `.dd`, `.wic`, `.hddimg`) is taken, so an
//!   image whose first sector is blank is still found. macOS's resource
//!   forks (`__MACOSX/…`, `._name`) never count;
//! - exactly one image is taken and every other entry is listed as
//!   ignored; several images are listed and one must be named
//!   ([`Error::SeveralImages`]); none is an error before anything is
//!   written ([`Error::NoImage`]).
//!
//! # Decoding
//!
//! The `zip` crate reads the central directory (zip64 included) and
//! decodes a member stored, or compressed with Deflate, Deflate64, BZip2,
//! LZMA or Zstd (docs/decisions.md), checking its CRC-32 as the last byte
//! streams out (a mismatch is a corrupt image) and refusing a member that
//! decodes past its recorded size. A member's reader borrows its archive,
//! so [`Member::reader`] runs it on a thread of its own that hands decoded
//! chunks through a channel of two: memory stays bounded, and decoding
//! overlaps the write pipeline's hashing and writing.
//!
//! Every byte comes from the archive through a [`ByteSource`], so after a
//! source check it is read through the check's block digests, like the
//! other compressed formats (`image::compressed`).

use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;

use ::zip::result::ZipError;
use ::zip::ZipArchive;

use super::ByteSource;

/// What [`select`] made of one entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// An ISO 9660 or UDF volume, by its descriptors.
    Iso,
    /// A disk image, by its GPT header or boot-sector signature.
    DiskImage,
    /// Not recognised by its bytes, but named like an image.
    NamedImage,
    /// Anything else (READMEs, licences, `.DS_Store`, checksums).
    Other,
    /// A directory entry.
    Directory,
}

impl Kind {
    fn by_bytes(self) -> bool {
        matches!(self, Kind::Iso | Kind::DiskImage)
    }
}

/// One entry of the archive.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Entry {
    /// The name as stored (folders separated by `/`).
    pub name: String,
    /// The uncompressed size the central directory records.
    pub size: u64,
    pub compressed_size: u64,
    /// The compression method, as the `zip` crate names it (`Deflated`,
    /// `Deflate64`, `Bzip2`, `Lzma`, `Zstd`, `Stored`).
    pub method: String,
    pub kind: Kind,
    #[serde(skip)]
    index: usize,
}

/// Why a zip archive gives no image to write.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The archive's structure (end of central directory, central
    /// directory, local headers) cannot be read.
    #[error("the zip archive is malformed")]
    Malformed(#[source] ZipError),
    /// Reading the archive failed (or, after a source check, a block of it
    /// is not the checked one).
    #[error("cannot read the zip archive")]
    Image(#[source] super::Error),
    /// No entry is a disk image or ISO.
    #[error(
        "the zip archive holds no disk image or ISO (its entries: {})",
        list(entries)
    )]
    NoImage { entries: Vec<String> },
    /// More than one entry is an image, and none was named.
    #[error("the zip archive holds {} images ({}): name the one to write", images.len(), list(images))]
    SeveralImages { images: Vec<String> },
    /// The named entry is not in the archive (or is a directory).
    #[error(
        "the zip archive has no file entry named {name:?} (its images: {})",
        list(images)
    )]
    NoSuchEntry { name: String, images: Vec<String> },
    /// The chosen entry is encrypted: it cannot be decoded without a
    /// password, and bootstick asks for none.
    #[error("the zip entry {name:?} is encrypted")]
    Encrypted { name: String },
    /// The chosen entry's compression method is not one bootstick decodes.
    #[error("the zip entry {name:?} is compressed with {method}, which bootstick does not decode (stored, Deflate, Deflate64, BZip2, LZMA and Zstd are)")]
    Unsupported { name: String, method: String },
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        return "none".into();
    }
    names.join(", ")
}

/// The member to write, with what was ignored beside it.
#[derive(Clone)]
pub struct Member {
    src: Arc<dyn ByteSource>,
    chosen: Entry,
    ignored: Vec<Entry>,
}

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member")
            .field("chosen", &self.chosen)
            .field("ignored", &self.ignored)
            .finish()
    }
}

/// Reads a [`ByteSource`] as a file, for the `zip` crate, storing its
/// position in `counter` (the compressed bytes read, for error messages).
struct Cursor {
    src: Arc<dyn ByteSource>,
    pos: u64,
    counter: Arc<AtomicU64>,
}

impl Read for Cursor {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self
            .src
            .len()
            .saturating_sub(self.pos)
            .min(buf.len() as u64) as usize;
        self.src
            .read_exact_at(self.pos, &mut buf[..n], "zip archive")
            .map_err(io::Error::other)?;
        self.pos += n as u64;
        self.counter.store(self.pos, Ordering::Relaxed);
        Ok(n)
    }
}

impl Seek for Cursor {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let pos = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.src.len().checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = pos.ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "seek before the archive")
        })?;
        Ok(self.pos)
    }
}

/// Large reads: after a source check every read is checked block by block.
const ARCHIVE_BUFFER: usize = 1 << 20;

type Archive = ZipArchive<BufReader<Cursor>>;

fn open(src: Arc<dyn ByteSource>, counter: Arc<AtomicU64>) -> Result<Archive, Error> {
    let cursor = Cursor {
        src,
        pos: 0,
        counter,
    };
    ZipArchive::new(BufReader::with_capacity(ARCHIVE_BUFFER, cursor)).map_err(zip_error)
}

/// A read error of the archive's bytes stays one (its exit code differs
/// from a malformed archive's).
fn zip_error(e: ZipError) -> Error {
    match e {
        ZipError::Io(io) if io.get_ref().is_some_and(|i| i.is::<super::Error>()) => {
            let inner = io
                .into_inner()
                .expect("checked above")
                .downcast::<super::Error>()
                .expect("checked above");
            Error::Image(*inner)
        }
        e => Error::Malformed(e),
    }
}

/// Decoded bytes of an entry looked at to recognise an image: enough for
/// the ISO 9660 / UDF descriptor at byte 32769.
pub const HEAD_LEN: usize = 32 * 1024 + 2048;

/// The image kind `head` (an entry's first decoded bytes) shows, if any.
pub fn image_kind(head: &[u8]) -> Option<Kind> {
    let at = |offset: usize, magic: &[u8]| head.get(offset..offset + magic.len()) == Some(magic);
    if at(32769, b"CD001") || at(32769, b"BEA01") {
        return Some(Kind::Iso);
    }
    if at(512, b"EFI PART") || at(4096, b"EFI PART") || at(510, &[0x55, 0xAA]) {
        return Some(Kind::DiskImage);
    }
    None
}

/// True when `name` looks like an image's (the fallback when no entry is
/// one by its bytes); macOS resource forks never do.
pub fn named_like_an_image(name: &str) -> bool {
    const EXTENSIONS: &[&str] = &["img", "iso", "raw", "dd", "wic", "hddimg"];
    let base = name.rsplit('/').next().unwrap_or(name);
    if name.starts_with("__MACOSX/") || base.starts_with("._") {
        return false;
    }
    base.rsplit_once('.').is_some_and(|(stem, ext)| {
        !stem.is_empty() && EXTENSIONS.contains(&&*ext.to_ascii_lowercase())
    })
}

/// Reads up to [`HEAD_LEN`] decoded bytes of entry `index`; `None` when it
/// cannot be decoded (encrypted, unsupported, corrupt: the entry is then
/// judged by its name, and decoding it for real reports why).
fn head(archive: &mut Archive, index: usize) -> Option<Vec<u8>> {
    let file = archive.by_index(index).ok()?;
    let mut head = Vec::with_capacity(HEAD_LEN);
    file.take(HEAD_LEN as u64).read_to_end(&mut head).ok()?;
    Some(head)
}

/// The entries of the archive, each judged ([`Kind`]).
fn entries(archive: &mut Archive) -> Result<Vec<Entry>, Error> {
    let mut out = Vec::with_capacity(archive.len());
    for index in 0..archive.len() {
        let (name, is_dir, size, compressed_size, method) = {
            let e = archive.by_index_data(index).map_err(zip_error)?;
            (
                String::from_utf8_lossy(e.name_raw()).into_owned(),
                e.is_dir(),
                e.size(),
                e.compressed_size(),
                format!("{:?}", e.compression()),
            )
        };
        let kind = if is_dir {
            Kind::Directory
        } else {
            let by_bytes = if size >= 512 {
                head(archive, index).and_then(|h| image_kind(&h))
            } else {
                None
            };
            by_bytes.unwrap_or(if named_like_an_image(&name) {
                Kind::NamedImage
            } else {
                Kind::Other
            })
        };
        out.push(Entry {
            name,
            size,
            compressed_size,
            method,
            kind,
            index,
        });
    }
    Ok(out)
}

/// The entry of `entries` to write: `wanted` (its full name, or its last
/// component when that names one entry), else the one image by its bytes,
/// else the one named like an image.
pub fn choose<'a>(entries: &'a [Entry], wanted: Option<&str>) -> Result<&'a Entry, Error> {
    let images: Vec<&Entry> = {
        let by_bytes: Vec<&Entry> = entries.iter().filter(|e| e.kind.by_bytes()).collect();
        if by_bytes.is_empty() {
            entries
                .iter()
                .filter(|e| e.kind == Kind::NamedImage)
                .collect()
        } else {
            by_bytes
        }
    };
    let names = |v: &[&Entry]| v.iter().map(|e| e.name.clone()).collect::<Vec<_>>();
    if let Some(name) = wanted {
        let files = || entries.iter().filter(|e| e.kind != Kind::Directory);
        if let Some(e) = files().find(|e| e.name == name) {
            return Ok(e);
        }
        let mut by_base = files().filter(|e| e.name.rsplit('/').next() == Some(name));
        if let (Some(e), None) = (by_base.next(), by_base.next()) {
            return Ok(e);
        }
        return Err(Error::NoSuchEntry {
            name: name.to_string(),
            images: names(&images),
        });
    }
    match images.as_slice() {
        [one] => Ok(one),
        [] => Err(Error::NoImage {
            entries: entries
                .iter()
                .filter(|e| e.kind != Kind::Directory)
                .map(|e| e.name.clone())
                .collect(),
        }),
        many => Err(Error::SeveralImages {
            images: names(many),
        }),
    }
}

/// Looks into the zip archive `src` and chooses the member to write
/// (`wanted`, or the one image: see the module's rules).
pub fn select(src: Arc<dyn ByteSource>, wanted: Option<&str>) -> Result<Member, Error> {
    let mut archive = open(src.clone(), Arc::new(AtomicU64::new(0)))?;
    let all = entries(&mut archive)?;
    let chosen = choose(&all, wanted)?.clone();
    let data = archive.by_index_data(chosen.index).map_err(zip_error)?;
    if data.encrypted() {
        return Err(Error::Encrypted { name: chosen.name });
    }
    use ::zip::CompressionMethod as M;
    if !matches!(
        data.compression(),
        M::Stored | M::Deflated | M::Deflate64 | M::Bzip2 | M::Lzma | M::Zstd
    ) {
        return Err(Error::Unsupported {
            method: chosen.method.clone(),
            name: chosen.name,
        });
    }
    let ignored = all
        .into_iter()
        .filter(|e| e.index != chosen.index && e.kind != Kind::Directory)
        .collect();
    Ok(Member {
        src,
        chosen,
        ignored,
    })
}

impl Member {
    /// The entry written.
    pub fn chosen(&self) -> &Entry {
        &self.chosen
    }

    /// The other file entries, not written.
    pub fn ignored(&self) -> &[Entry] {
        &self.ignored
    }

    /// A stream of the member's decoded bytes (its CRC-32 checked at its
    /// end), the archive's bytes read so far stored in `counter`.
    pub fn reader(&self, counter: Arc<AtomicU64>) -> MemberReader {
        let (tx, rx) = sync_channel::<io::Result<Vec<u8>>>(2);
        let src = self.src.clone();
        let index = self.chosen.index;
        std::thread::spawn(move || {
            let to_io = |e: Error| match e {
                Error::Image(i) => io::Error::other(i),
                e => io::Error::new(io::ErrorKind::InvalidData, e),
            };
            let mut archive = match open(src, counter) {
                Ok(a) => a,
                Err(e) => {
                    let _ = tx.send(Err(to_io(e)));
                    return;
                }
            };
            let mut file = match archive.by_index(index) {
                Ok(f) => f,
                Err(e) => {
                    let _ = tx.send(Err(to_io(zip_error(e))));
                    return;
                }
            };
            loop {
                let mut buf = vec![0u8; CHUNK];
                let mut n = 0;
                let end = loop {
                    match file.read(&mut buf[n..]) {
                        Ok(0) => break true,
                        Ok(k) => {
                            n += k;
                            if n == buf.len() {
                                break false;
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            if n > 0 {
                                buf.truncate(n);
                                let _ = tx.send(Ok(buf));
                            }
                            let _ = tx.send(Err(e));
                            return;
                        }
                    }
                };
                buf.truncate(n);
                if n > 0 && tx.send(Ok(buf)).is_err() {
                    return;
                }
                if end {
                    // The member's end, its CRC-32 checked.
                    let _ = tx.send(Ok(Vec::new()));
                    return;
                }
            }
        });
        MemberReader {
            rx,
            current: Vec::new(),
            at: 0,
            done: false,
        }
    }
}

/// Decoded bytes handed over at once by a member's decoding thread.
const CHUNK: usize = 1 << 20;

/// The decoded bytes of a zip member, from its decoding thread (which
/// stops when this is dropped).
pub struct MemberReader {
    rx: Receiver<io::Result<Vec<u8>>>,
    current: Vec<u8>,
    at: usize,
    done: bool,
}

impl Read for MemberReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.current.len() {
            if self.done || buf.is_empty() {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Ok(chunk)) => {
                    // An empty chunk is the member's end (CRC checked).
                    self.done = chunk.is_empty();
                    self.current = chunk;
                    self.at = 0;
                }
                Ok(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                Err(_) => {
                    self.done = true;
                    return Err(io::Error::other("the zip member's decoding thread stopped"));
                }
            }
        }
        let n = buf.len().min(self.current.len() - self.at);
        buf[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, kind: Kind, index: usize) -> Entry {
        Entry {
            name: name.into(),
            size: 1 << 20,
            compressed_size: 1 << 19,
            method: "Deflated".into(),
            kind,
            index,
        }
    }

    #[test]
    fn image_kinds_by_magic() {
        let mut mbr = vec![0u8; 512];
        mbr[510] = 0x55;
        mbr[511] = 0xAA;
        assert_eq!(image_kind(&mbr), Some(Kind::DiskImage));
        let mut iso = vec![0u8; HEAD_LEN];
        iso[32769..32774].copy_from_slice(b"CD001");
        assert_eq!(image_kind(&iso), Some(Kind::Iso));
        let mut gpt = vec![0u8; 1024];
        gpt[512..520].copy_from_slice(b"EFI PART");
        assert_eq!(image_kind(&gpt), Some(Kind::DiskImage));
        assert_eq!(image_kind(b"# README\nhello"), None);
        assert_eq!(image_kind(&[0u8; 600]), None);
    }

    #[test]
    fn names_like_images_but_not_resource_forks() {
        assert!(named_like_an_image("folder/raspios.IMG"));
        assert!(named_like_an_image("x.iso"));
        assert!(!named_like_an_image("__MACOSX/folder/._raspios.img"));
        assert!(!named_like_an_image("folder/._raspios.img"));
        assert!(!named_like_an_image("README.txt"));
        assert!(!named_like_an_image(".img"));
    }

    #[test]
    fn the_one_image_is_chosen_bytes_before_names() {
        let all = vec![
            entry("d/", Kind::Directory, 0),
            entry("d/README", Kind::Other, 1),
            entry("d/blank.img", Kind::NamedImage, 2),
            entry("d/disk.bin", Kind::DiskImage, 3),
        ];
        assert_eq!(choose(&all, None).unwrap().name, "d/disk.bin");
        assert_eq!(choose(&all[..3], None).unwrap().name, "d/blank.img");
        assert!(matches!(
            choose(&all[..2], None),
            Err(Error::NoImage { entries }) if entries == ["d/README"]
        ));
    }

    #[test]
    fn several_images_need_a_name() {
        let all = vec![
            entry("a/one.img", Kind::DiskImage, 0),
            entry("b/two.iso", Kind::Iso, 1),
            entry("b/one.img", Kind::Other, 2),
        ];
        assert!(matches!(
            choose(&all, None),
            Err(Error::SeveralImages { images }) if images == ["a/one.img", "b/two.iso"]
        ));
        assert_eq!(choose(&all, Some("b/two.iso")).unwrap().index, 1);
        assert_eq!(choose(&all, Some("two.iso")).unwrap().index, 1);
        // A base name two entries share names neither.
        assert!(matches!(
            choose(&all, Some("one.img")),
            Err(Error::NoSuchEntry { .. })
        ));
        assert_eq!(choose(&all, Some("a/one.img")).unwrap().index, 0);
    }
}
