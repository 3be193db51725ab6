//! Hash algorithms that images are checked with, shared by the trust checks
//! (which read them from checksum files) and the write engine (which hashes
//! the source while streaming it, so an image that changed between the check
//! and the write is caught).

use std::fmt;

/// CRC-32 (IEEE 802.3, reflected; the catalogue's CRC-32/ISO-HDLC), as GPT
/// headers and entry arrays, xz's index and stream footer and zip use it.
/// Not a digest: it finds accidents in a structure, never tampering.
pub fn crc32(data: &[u8]) -> u32 {
    const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
    CRC.checksum(data)
}

/// A digest algorithm distributions publish image hashes with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HashAlgorithm {
    /// SHA-256 (SHA256SUMS, Fedora CHECKSUM, `.sha256` files).
    Sha256,
    /// SHA-512 (SHA512SUMS, openSUSE).
    Sha512,
    /// BLAKE2b with a 512-bit output (Arch's `b2sums.txt`).
    #[serde(rename = "blake2b-512")]
    Blake2b512,
    /// MD5: only for corruption (isomd5sum's implanted MD5, MD5-only
    /// listings); collisions are cheap, so it never proves an image genuine.
    Md5,
    /// SHA-1: like MD5, finds corruption but not tampering.
    Sha1,
}

impl HashAlgorithm {
    /// Every supported algorithm, strongest-preferred order for tie-breaking.
    pub const ALL: [HashAlgorithm; 3] = [
        HashAlgorithm::Sha256,
        HashAlgorithm::Sha512,
        HashAlgorithm::Blake2b512,
    ];

    /// The digest length in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            HashAlgorithm::Sha256 => 32,
            HashAlgorithm::Sha512 | HashAlgorithm::Blake2b512 => 64,
            HashAlgorithm::Md5 => 16,
            HashAlgorithm::Sha1 => 20,
        }
    }

    /// True for MD5 and SHA-1, whose collisions can be made: a match finds
    /// corruption, never tampering.
    pub fn is_weak(self) -> bool {
        matches!(self, HashAlgorithm::Md5 | HashAlgorithm::Sha1)
    }

    /// The algorithm whose digests are `bytes` long, when only one fits.
    /// BLAKE2b-512 and SHA-512 are both 64 bytes, so a bare 64-byte hex
    /// string is ambiguous and the caller must know the algorithm otherwise.
    pub fn from_len(bytes: usize) -> Option<HashAlgorithm> {
        match bytes {
            32 => Some(HashAlgorithm::Sha256),
            _ => None,
        }
    }

    /// A fresh incremental hasher.
    pub fn hasher(self) -> Hasher {
        use sha2::Digest;
        Hasher(match self {
            HashAlgorithm::Sha256 => Inner::Sha256(sha2::Sha256::new()),
            HashAlgorithm::Sha512 => Inner::Sha512(sha2::Sha512::new()),
            HashAlgorithm::Blake2b512 => Inner::Blake2b512(blake2::Blake2b512::new()),
            HashAlgorithm::Md5 => Inner::Md5(md5::Md5::new()),
            HashAlgorithm::Sha1 => Inner::Sha1(sha1::Sha1::new()),
        })
    }

    /// The conventional lower-case name (`sha256`, `sha512`, `blake2b-512`).
    pub fn name(self) -> &'static str {
        match self {
            HashAlgorithm::Sha256 => "sha256",
            HashAlgorithm::Sha512 => "sha512",
            HashAlgorithm::Blake2b512 => "blake2b-512",
            HashAlgorithm::Md5 => "md5",
            HashAlgorithm::Sha1 => "sha1",
        }
    }
}

impl fmt::Display for HashAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An incremental hasher for one [`HashAlgorithm`].
#[derive(Clone)]
pub struct Hasher(Inner);

#[derive(Clone)]
enum Inner {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
    Blake2b512(blake2::Blake2b512),
    Md5(md5::Md5),
    Sha1(sha1::Sha1),
}

impl Hasher {
    /// Feeds `data` to the hash.
    pub fn update(&mut self, data: &[u8]) {
        use sha2::Digest;
        match &mut self.0 {
            Inner::Sha256(h) => h.update(data),
            Inner::Sha512(h) => h.update(data),
            Inner::Blake2b512(h) => h.update(data),
            Inner::Md5(h) => h.update(data),
            Inner::Sha1(h) => h.update(data),
        }
    }

    /// Finishes and returns the digest.
    pub fn finish(self) -> Digest {
        use sha2::Digest as _;
        match self.0 {
            Inner::Sha256(h) => Digest::new(HashAlgorithm::Sha256, h.finalize().to_vec()),
            Inner::Sha512(h) => Digest::new(HashAlgorithm::Sha512, h.finalize().to_vec()),
            Inner::Blake2b512(h) => Digest::new(HashAlgorithm::Blake2b512, h.finalize().to_vec()),
            Inner::Md5(h) => Digest::new(HashAlgorithm::Md5, h.finalize().to_vec()),
            Inner::Sha1(h) => Digest::new(HashAlgorithm::Sha1, h.finalize().to_vec()),
        }
    }
}

/// A digest together with the algorithm that produced it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Digest {
    algorithm: HashAlgorithm,
    bytes: Vec<u8>,
}

impl Digest {
    fn new(algorithm: HashAlgorithm, bytes: Vec<u8>) -> Digest {
        Digest { algorithm, bytes }
    }

    /// A digest given as bytes, refused when the length does not fit the
    /// algorithm.
    pub fn from_bytes(algorithm: HashAlgorithm, bytes: Vec<u8>) -> Option<Digest> {
        (bytes.len() == algorithm.digest_len()).then_some(Digest { algorithm, bytes })
    }

    /// A digest given as hex (either case), refused when it is not hex or has
    /// the wrong length for the algorithm.
    pub fn from_hex(algorithm: HashAlgorithm, hex: &str) -> Option<Digest> {
        if hex.len() != algorithm.digest_len() * 2 {
            return None;
        }
        let bytes = hex::decode(hex).ok()?;
        Some(Digest { algorithm, bytes })
    }

    pub fn algorithm(&self) -> HashAlgorithm {
        self.algorithm
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        hex::encode(&self.bytes)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm, self.to_hex())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm, self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers() {
        // Published test vectors for the message "abc".
        let cases = [
            (HashAlgorithm::Sha256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
            (HashAlgorithm::Sha512, "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"),
            (HashAlgorithm::Blake2b512, "ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d17d87c5392aab792dc252d5de4533cc9518d38aa8dbf1925ab92386edd4009923"),
            (HashAlgorithm::Md5, "900150983cd24fb0d6963f7d28e17f72"),
            (HashAlgorithm::Sha1, "a9993e364706816aba3e25717850c26c9cd0d89d"),
        ];
        for (alg, hex) in cases {
            let mut h = alg.hasher();
            h.update(b"a");
            h.update(b"bc");
            let d = h.finish();
            assert_eq!(d.to_hex(), hex, "{alg}");
            assert_eq!(Digest::from_hex(alg, &hex.to_uppercase()), Some(d));
        }
    }

    #[test]
    fn hex_is_checked() {
        assert!(Digest::from_hex(HashAlgorithm::Sha256, "zz").is_none());
        assert!(Digest::from_hex(HashAlgorithm::Sha256, &"g".repeat(64)).is_none());
        assert!(Digest::from_hex(HashAlgorithm::Sha512, &"a".repeat(64)).is_none());
        assert_eq!(HashAlgorithm::from_len(32), Some(HashAlgorithm::Sha256));
        assert_eq!(HashAlgorithm::from_len(64), None);
    }
}
