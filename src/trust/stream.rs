//! Hashing an image in one streaming pass, in bounded memory.
//!
//! An installer image is several GiB, so it is read once, in fixed-size
//! chunks, and every consumer sees the same bytes as they pass: the checksum
//! hashers here, and (through [`HashingReader`]'s `Read` impl) an OpenPGP
//! signature check that pulls the image through its own hasher. Memory use is
//! one buffer plus the hasher states, whatever the image size.

use crate::events::{Event, Observer, Phase};
use crate::hash::{Digest, HashAlgorithm, Hasher};
use crate::image::checked::{BlockDigests, BlockHasher};
use std::io::{self, Read};

/// Size of one read from the image.
pub const CHUNK: usize = 1 << 20;

/// A reader that feeds every byte it returns to a set of hashers and reports
/// progress as [`Phase::Check`] events.
pub struct HashingReader<'o, R> {
    inner: R,
    hashers: Vec<Hasher>,
    algorithms: Vec<HashAlgorithm>,
    /// Per-block SHA-256 of the same bytes (`image::checked`), when asked.
    blocks: Option<BlockHasher>,
    done: u64,
    total: u64,
    observer: &'o dyn Observer,
    /// An implanted MD5 (isomd5sum) checked from the same bytes.
    implanted: Option<super::isomd5::Checker>,
}

impl<'o, R: Read> HashingReader<'o, R> {
    /// Wraps `inner`, hashing with each of `algorithms` (duplicates are
    /// hashed once). `total` is the expected length, for progress only.
    pub fn new(
        inner: R,
        algorithms: &[HashAlgorithm],
        total: u64,
        observer: &'o dyn Observer,
    ) -> Self {
        let mut algs: Vec<HashAlgorithm> = Vec::new();
        for a in algorithms {
            if !algs.contains(a) {
                algs.push(*a);
            }
        }
        HashingReader {
            inner,
            hashers: algs.iter().map(|a| a.hasher()).collect(),
            algorithms: algs,
            blocks: None,
            done: 0,
            total,
            observer,
            implanted: None,
        }
    }

    /// Also checks an implanted MD5 from the bytes that pass.
    pub fn with_implanted(mut self, checker: Option<super::isomd5::Checker>) -> Self {
        self.implanted = checker;
        self
    }

    /// The verdict on the implanted MD5, when one was checked.
    pub fn implanted(&mut self) -> Option<super::isomd5::Verdict> {
        self.implanted.take().map(super::isomd5::Checker::finish)
    }

    /// Also hashes every `image::checked::BLOCK` of the bytes passing, so
    /// later reads of the image can be checked against this very pass
    /// ([`HashingReader::take_blocks`]).
    pub fn with_blocks(mut self) -> Self {
        self.blocks = Some(BlockHasher::new());
        self
    }

    /// The block digests of everything read (when [`HashingReader::with_blocks`]).
    pub fn take_blocks(&mut self) -> Option<BlockDigests> {
        self.blocks.take().map(BlockHasher::finish)
    }

    /// Reads whatever is left to the end, hashing it.
    pub fn drain(&mut self) -> io::Result<()> {
        let mut buf = vec![0u8; CHUNK];
        loop {
            if self.read(&mut buf)? == 0 {
                return Ok(());
            }
        }
    }

    /// How many bytes passed so far.
    pub fn bytes_read(&self) -> u64 {
        self.done
    }

    /// The digests of everything read, one per distinct algorithm.
    pub fn finish(self) -> Vec<Digest> {
        self.hashers.into_iter().map(Hasher::finish).collect()
    }

    /// The algorithms being computed.
    pub fn algorithms(&self) -> &[HashAlgorithm] {
        &self.algorithms
    }
}

impl<R: Read> Read for HashingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = loop {
            match self.inner.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => break r?,
            }
        };
        for h in &mut self.hashers {
            h.update(&buf[..n]);
        }
        if let Some(c) = &mut self.implanted {
            c.update(&buf[..n]);
        }
        if let Some(b) = &mut self.blocks {
            b.update(&buf[..n]);
        }
        if n > 0 {
            let before = self.done / CHUNK as u64;
            self.done += n as u64;
            // One event per MiB crossed keeps observers cheap even when the
            // consumer reads in small pieces.
            if self.done / CHUNK as u64 != before || self.done == self.total {
                self.observer.event(&Event::Progress {
                    phase: Phase::Check,
                    done: self.done,
                    total: self.total,
                });
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Silent;
    use std::io::Write;

    #[test]
    fn hashes_everything_once_per_algorithm() {
        let data = vec![7u8; CHUNK * 2 + 5];
        let algs = [
            HashAlgorithm::Sha256,
            HashAlgorithm::Blake2b512,
            HashAlgorithm::Sha256,
        ];
        let mut r = HashingReader::new(&data[..], &algs, data.len() as u64, &Silent);
        let mut small = [0u8; 1000];
        r.read_exact(&mut small).unwrap();
        r.drain().unwrap();
        assert_eq!(r.bytes_read(), data.len() as u64);
        let d = r.finish();
        assert_eq!(d.len(), 2);
        let mut h = HashAlgorithm::Sha256.hasher();
        h.update(&data);
        assert_eq!(d[0], h.finish());
        assert_eq!(d[1].algorithm(), HashAlgorithm::Blake2b512);
        // The BLAKE2b value across chunk boundaries, against coreutils'
        // b2sum (the oracle), fed the same bytes.
        let mut b2sum = match std::process::Command::new("b2sum")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                return crate::test_support::skip("hashes_everything", &format!("b2sum: {e}"))
            }
        };
        b2sum.stdin.take().unwrap().write_all(&data).unwrap();
        let out = b2sum.wait_with_output().unwrap();
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        assert_eq!(d[1].to_hex(), text.split_whitespace().next().unwrap());
    }
}
