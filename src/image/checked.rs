//! Reading an image as it was when it was checked.
//!
//! # The problem
//!
//! A source check (`docs/trust.md`) hashes the image in one sequential pass
//! and compares the digest with a signed checksum. Everything after that
//! reads the image *again*: the raw/layout decision, the layout builder
//! (directories, file sizes, the EFI loader copied out of the El Torito
//! image), and the write engine streaming file contents. A raw copy streams
//! the whole image in order and hashes what it streams, so a change is
//! caught; a built layout reads only some ranges, in another order, and a
//! digest of the whole image cannot be recomputed from them. Whoever can
//! change the file after the check could put their own bytes on the stick
//! while bootstick reports the checked digest.
//!
//! # The design
//!
//! The checking pass also hashes every [`BLOCK`]-sized block of the image
//! with SHA-256 ([`BlockHasher`], fed by the same reads as the checked
//! digest, so the block digests describe exactly the bytes whose digest
//! matched). Every later read goes through a [`Verifier`], which reads the
//! whole blocks covering the request, hashes each and compares it with its
//! digest from the checked pass before handing out any byte of it. A block
//! that differs is a [`ReadError::Mismatch`]: nothing from it is used. So every byte that
//! reaches the target, or decides what reaches it, is a byte of the checked
//! image (up to a SHA-256 collision, which an attacker who controls the file
//! cannot produce).
//!
//! A second pass over the plan's ranges before the write would not do: it
//! proves what the file held during *that* pass, not during the checked
//! one, and not during the write either.
//!
//! Costs: 32 bytes of memory per 64 KiB (3 MiB for a 6 GiB image); reads
//! are rounded out to whole blocks (at most 128 KiB more per extent, and a
//! small cache serves neighbouring reads); every byte read is hashed once
//! more with SHA-256, which replaces the whole-image hash the engine would
//! otherwise compute.

use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};

use sha2::{Digest as _, Sha256};

/// The unit of verification, in bytes.
pub const BLOCK: u64 = 64 << 10;

/// The SHA-256 of every [`BLOCK`] of an image (the last one may be short),
/// taken in the pass that checked the image.
#[derive(Clone, PartialEq, Eq)]
pub struct BlockDigests {
    len: u64,
    digests: Vec<[u8; 32]>,
}

impl std::fmt::Debug for BlockDigests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "BlockDigests({} bytes, {} blocks)",
            self.len,
            self.digests.len()
        )
    }
}

impl BlockDigests {
    /// The length of the image the digests describe.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn block_range(&self, i: u64) -> std::ops::Range<u64> {
        let start = i * BLOCK;
        start..(start + BLOCK).min(self.len)
    }
}

/// Computes [`BlockDigests`] from bytes fed in order, cut anywhere.
#[derive(Clone, Default)]
pub struct BlockHasher {
    len: u64,
    current: Sha256,
    digests: Vec<[u8; 32]>,
}

impl BlockHasher {
    pub fn new() -> BlockHasher {
        BlockHasher::default()
    }

    /// Feeds the next bytes of the image.
    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let in_block = (self.len % BLOCK) as usize;
            let take = (BLOCK as usize - in_block).min(data.len());
            self.current.update(&data[..take]);
            self.len += take as u64;
            data = &data[take..];
            if self.len.is_multiple_of(BLOCK) {
                let d = std::mem::take(&mut self.current).finalize();
                self.digests.push(d.into());
            }
        }
    }

    pub fn finish(mut self) -> BlockDigests {
        if !self.len.is_multiple_of(BLOCK) {
            let d = std::mem::take(&mut self.current).finalize();
            self.digests.push(d.into());
        }
        BlockDigests {
            len: self.len,
            digests: self.digests,
        }
    }
}

/// Why a verified read failed.
#[derive(Debug)]
pub enum ReadError {
    /// The image's bytes `start..end` (one block) are not those checked, or
    /// the image is no longer as long as it was (`start..end` then spans
    /// the checked and the present length).
    Mismatch { start: u64, end: u64 },
    /// The read itself failed at `offset`.
    Io { offset: u64, source: std::io::Error },
}

/// Reads an image's bytes, handing out only blocks whose SHA-256 is the one
/// taken when the image was checked. Cheap to share between threads; the
/// cache is behind a mutex.
pub struct Verifier {
    file: File,
    digests: Arc<BlockDigests>,
    /// Verified blocks, most recent last.
    cache: Mutex<VecDeque<(u64, Arc<[u8]>)>>,
    cache_blocks: usize,
}

/// Blocks read with one `pread` at most (1 MiB).
const SPAN_BLOCKS: u64 = 16;

impl Verifier {
    /// A verifier reading `file` (the image, or a clone of its descriptor)
    /// against `digests`, keeping the `cache_blocks` most recent verified
    /// blocks for neighbouring reads.
    pub fn new(file: File, digests: Arc<BlockDigests>, cache_blocks: usize) -> Verifier {
        Verifier {
            file,
            digests,
            cache: Mutex::new(VecDeque::new()),
            cache_blocks: cache_blocks.max(1),
        }
    }

    /// The image length the digests describe.
    pub fn len(&self) -> u64 {
        self.digests.len()
    }

    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// Reads exactly `dst.len()` bytes at `offset`, all from verified
    /// blocks. A request past the checked length is a mismatch (the image
    /// grew, or the caller's plan is wrong); an image that ends early is a
    /// mismatch too (it shrank since it was checked).
    pub fn read_exact_at(&self, offset: u64, dst: &mut [u8]) -> Result<(), ReadError> {
        let len = self.digests.len();
        let end = offset.saturating_add(dst.len() as u64);
        if end > len {
            return Err(ReadError::Mismatch {
                start: len.min(offset),
                end,
            });
        }
        let mut pos = offset;
        while pos < end {
            let first = pos / BLOCK;
            if let Some(block) = self.cached(first) {
                let r = self.digests.block_range(first);
                let n = (r.end.min(end) - pos) as usize;
                let from = (pos - r.start) as usize;
                let o = (pos - offset) as usize;
                dst[o..o + n].copy_from_slice(&block[from..from + n]);
                pos += n as u64;
                continue;
            }
            // Read up to SPAN_BLOCKS uncached blocks at once.
            let last = ((end - 1) / BLOCK).min(first + SPAN_BLOCKS - 1);
            let span_start = first * BLOCK;
            let span_end = self.digests.block_range(last).end;
            let mut buf = vec![0u8; (span_end - span_start) as usize];
            self.read_full(span_start, &mut buf)?;
            for i in first..=last {
                let r = self.digests.block_range(i);
                let bytes = &buf[(r.start - span_start) as usize..(r.end - span_start) as usize];
                let got: [u8; 32] = Sha256::digest(bytes).into();
                if self.digests.digests.get(i as usize) != Some(&got) {
                    return Err(ReadError::Mismatch {
                        start: r.start,
                        end: r.end,
                    });
                }
            }
            let n = (span_end.min(end) - pos) as usize;
            let o = (pos - offset) as usize;
            let from = (pos - span_start) as usize;
            dst[o..o + n].copy_from_slice(&buf[from..from + n]);
            pos += n as u64;
            // Keep the last block of the span: the next read most often
            // continues inside it.
            let r = self.digests.block_range(last);
            self.remember(last, Arc::from(&buf[(r.start - span_start) as usize..]));
        }
        Ok(())
    }

    fn cached(&self, block: u64) -> Option<Arc<[u8]>> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .iter()
            .rev()
            .find(|(i, _)| *i == block)
            .map(|(_, b)| b.clone())
    }

    fn remember(&self, block: u64, bytes: Arc<[u8]>) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.iter().any(|(i, _)| *i == block) {
            return;
        }
        if cache.len() >= self.cache_blocks {
            cache.pop_front();
        }
        cache.push_back((block, bytes));
    }

    /// Fills `buf` from `at`; an early end of file is a mismatch (the image
    /// shrank since it was checked).
    fn read_full(&self, at: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        let mut done = 0;
        while done < buf.len() {
            let o = at + done as u64;
            match self.file.read_at(&mut buf[done..], o) {
                Ok(0) => {
                    return Err(ReadError::Mismatch {
                        start: o,
                        end: self.digests.len(),
                    })
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(source) => return Err(ReadError::Io { offset: o, source }),
            }
        }
        Ok(())
    }
}

/// An image read only through a [`Verifier`], as a
/// [`ByteSource`](super::ByteSource) for the readers that plan a write.
pub struct CheckedImage {
    verifier: Verifier,
}

/// Verified blocks kept for the readers (4 MiB): directory and file-entry
/// reads hop around a little, and each miss costs a 64 KiB read and hash.
const READER_CACHE_BLOCKS: usize = 64;

impl CheckedImage {
    pub fn new(file: File, digests: Arc<BlockDigests>) -> CheckedImage {
        CheckedImage {
            verifier: Verifier::new(file, digests, READER_CACHE_BLOCKS),
        }
    }
}

impl super::ByteSource for CheckedImage {
    fn len(&self) -> u64 {
        self.verifier.len()
    }

    fn read_raw(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.verifier
            .read_exact_at(offset, buf)
            .map_err(|e| match e {
                ReadError::Io { source, .. } => source,
                ReadError::Mismatch { start, end } => {
                    std::io::Error::other(super::Error::ChangedSinceCheck { start, end })
                }
            })
    }

    fn read_exact_at(
        &self,
        offset: u64,
        buf: &mut [u8],
        what: &'static str,
    ) -> Result<(), super::Error> {
        let len = buf.len() as u64;
        match offset.checked_add(len) {
            Some(end) if end <= self.len() => {
                self.verifier
                    .read_exact_at(offset, buf)
                    .map_err(|e| match e {
                        ReadError::Io { offset, source } => super::Error::Io { offset, source },
                        ReadError::Mismatch { start, end } => {
                            super::Error::ChangedSinceCheck { start, end }
                        }
                    })
            }
            _ => Err(super::Error::OutOfBounds {
                what,
                offset,
                len,
                image_len: self.len(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 + i / 977) as u8).collect()
    }

    fn digests_of(bytes: &[u8], cuts: &[usize]) -> BlockDigests {
        let mut h = BlockHasher::new();
        let mut at = 0;
        let mut i = 0;
        while at < bytes.len() {
            let n = cuts[i % cuts.len()].min(bytes.len() - at);
            h.update(&bytes[at..at + n]);
            at += n;
            i += 1;
        }
        h.finish()
    }

    proptest! {
        /// Any read of the unchanged image returns its bytes, however the
        /// checking pass cut its reads.
        #[test]
        fn reads_of_the_checked_image_succeed(
            cuts in proptest::collection::vec(1usize..200_000, 1..6),
            reads in proptest::collection::vec((0u64..1_300_000, 0usize..300_000), 1..12),
        ) {
            let bytes = data(1_234_567);
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("img");
            std::fs::write(&p, &bytes).unwrap();
            let d = Arc::new(digests_of(&bytes, &cuts));
            prop_assert_eq!(d.len(), bytes.len() as u64);
            let v = Verifier::new(File::open(&p).unwrap(), d, 2);
            for (at, n) in reads {
                let at = at.min(bytes.len() as u64);
                let n = n.min(bytes.len() - at as usize);
                let mut buf = vec![0u8; n];
                v.read_exact_at(at, &mut buf).unwrap();
                prop_assert_eq!(&buf[..], &bytes[at as usize..at as usize + n]);
            }
        }
    }

    /// One changed byte fails every read that touches its block, naming the
    /// block, and no other read.
    #[test]
    fn a_changed_byte_fails_reads_of_its_block() {
        let bytes = data(5 * BLOCK as usize + 100);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("img");
        std::fs::write(&p, &bytes).unwrap();
        let d = Arc::new(digests_of(&bytes, &[1 << 20]));
        let mut changed = bytes.clone();
        let at = 3 * BLOCK as usize + 7;
        changed[at] ^= 1;
        std::fs::write(&p, &changed).unwrap();
        let v = Verifier::new(File::open(&p).unwrap(), d, 4);
        let mut buf = vec![0u8; 10];
        v.read_exact_at(3 * BLOCK + 1000, &mut buf).unwrap_err();
        match v.read_exact_at(BLOCK, &mut vec![0u8; 3 * BLOCK as usize]) {
            Err(ReadError::Mismatch { start, end }) => {
                assert_eq!((start, end), (3 * BLOCK, 4 * BLOCK));
            }
            other => panic!("{other:?}"),
        }
        v.read_exact_at(4 * BLOCK, &mut buf).unwrap();
        assert_eq!(&buf[..], &bytes[4 * BLOCK as usize..][..10]);
        // A shorter image fails where it now ends.
        std::fs::write(&p, &bytes[..2 * BLOCK as usize]).unwrap();
        let v = Verifier::new(
            File::open(&p).unwrap(),
            Arc::new(digests_of(&bytes, &[7777])),
            4,
        );
        assert!(matches!(
            v.read_exact_at(BLOCK + 5, &mut vec![0u8; 2 * BLOCK as usize]),
            Err(ReadError::Mismatch { .. })
        ));
    }
}
