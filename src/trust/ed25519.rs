//! minisign and signify: bare Ed25519 signatures, verified with `ring`.
//!
//! Both tools share one key layout — base64 of `Ed` ‖ key id (8) ‖ public
//! key (32) under an `untrusted comment:` line — and one signature layout —
//! base64 of algorithm (2) ‖ key id (8) ‖ signature (64).
//!
//! * **minisign** (`.minisig`): algorithm `Ed` signs the file itself, `ED`
//!   (the default since minisign 0.10) signs its BLAKE2b-512 digest, so a
//!   signature over a multi-GB image is checked from the digest the streaming
//!   pass computes. A third line, `trusted comment: …`, is covered by the
//!   fourth, the global signature over signature ‖ comment; both must verify.
//! * **signify** (OpenBSD): pure Ed25519 over the message. With `-e` the
//!   message (often `SHA256 (file) = hex` lines, `signify -C` style) follows
//!   the signature in the same file.
//!
//! `ring` verifies Ed25519 over a whole message in memory; that is all these
//! formats need, except a pure (`Ed`, signify) signature over an image, which
//! is read whole only up to [`MAX_PURE_MESSAGE`] bytes.

use super::signature::{Checked, Signer, Status};
use base64::Engine;

/// Largest file a pure (not prehashed) Ed25519 signature is checked over;
/// such a signature needs the whole message in memory.
pub const MAX_PURE_MESSAGE: u64 = 64 << 20;

const UNTRUSTED: &str = "untrusted comment:";
const TRUSTED: &str = "trusted comment: ";

/// An Ed25519 public key from a minisign or signify key file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    pub key_id: [u8; 8],
    pub key: [u8; 32],
}

impl PublicKey {
    /// The key id as minisign prints it (the little-endian u64 in
    /// upper-case hex, without leading zeros).
    pub fn id_hex(&self) -> String {
        format!("{:X}", u64::from_le_bytes(self.key_id))
    }
}

/// Which tool made a signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    Minisign,
    Signify,
}

/// A parsed minisign or signify signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    pub tool: Tool,
    /// True for minisign `ED`: the signature is over BLAKE2b-512 of the data.
    pub prehashed: bool,
    pub key_id: [u8; 8],
    pub signature: [u8; 64],
    /// minisign: the trusted comment and the global signature over
    /// `signature ‖ comment`.
    pub trusted: Option<(String, [u8; 64])>,
    /// signify `-e`: the message embedded after the signature.
    pub embedded: Option<Vec<u8>>,
}

/// True when `bytes` start like a minisign/signify key or signature file.
pub fn looks_like(bytes: &[u8]) -> bool {
    bytes.starts_with(UNTRUSTED.as_bytes())
}

fn b64(line: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD
        .decode(line.trim())
        .map_err(|e| format!("bad base64: {e}"))
}

/// Splits off one `\n`-terminated line (a trailing `\r` removed).
fn line(rest: &[u8]) -> Option<(&str, &[u8])> {
    let end = rest.iter().position(|&b| b == b'\n');
    let (l, r) = match end {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &rest[rest.len()..]),
    };
    let l = std::str::from_utf8(l).ok()?;
    Some((l.strip_suffix('\r').unwrap_or(l), r))
}

/// Parses a public key file (`untrusted comment:` line, base64 line).
pub fn parse_public_key(bytes: &[u8]) -> Result<PublicKey, String> {
    let (first, rest) = line(bytes).ok_or("not text")?;
    if !first.starts_with(UNTRUSTED) {
        return Err("no `untrusted comment:` line".into());
    }
    let (key_line, _) = line(rest).ok_or("no key line")?;
    let raw = b64(key_line)?;
    if raw.len() != 42 || &raw[..2] != b"Ed" {
        return Err(format!(
            "not an Ed25519 public key ({} bytes, want 42 starting with \"Ed\")",
            raw.len()
        ));
    }
    let mut key_id = [0; 8];
    key_id.copy_from_slice(&raw[2..10]);
    let mut key = [0; 32];
    key.copy_from_slice(&raw[10..42]);
    Ok(PublicKey { key_id, key })
}

/// Parses a minisign (4 lines) or signify (2 lines, maybe an embedded
/// message after them) signature file.
pub fn parse_signature(bytes: &[u8]) -> Result<Signature, String> {
    let (first, rest) = line(bytes).ok_or("not text")?;
    if !first.starts_with(UNTRUSTED) {
        return Err("no `untrusted comment:` line".into());
    }
    let (sig_line, rest) = line(rest).ok_or("no signature line")?;
    let raw = b64(sig_line)?;
    if raw.len() != 74 {
        return Err(format!(
            "signature is {} bytes, want 74 (algorithm, key id, Ed25519 signature)",
            raw.len()
        ));
    }
    let mut key_id = [0; 8];
    key_id.copy_from_slice(&raw[2..10]);
    let mut signature = [0; 64];
    signature.copy_from_slice(&raw[10..74]);
    let prehashed = match &raw[..2] {
        b"Ed" => false,
        b"ED" => true,
        other => {
            return Err(format!(
                "unknown signature algorithm {:?}",
                String::from_utf8_lossy(other)
            ))
        }
    };
    let third = line(rest).filter(|(l, _)| l.starts_with(TRUSTED));
    match third {
        Some((comment_line, rest)) => {
            let comment = comment_line[TRUSTED.len()..].to_string();
            let (global_line, _) = line(rest).ok_or("no global signature line")?;
            let global = b64(global_line)?;
            let global: [u8; 64] = global
                .try_into()
                .map_err(|_| "global signature is not 64 bytes".to_string())?;
            Ok(Signature {
                tool: Tool::Minisign,
                prehashed,
                key_id,
                signature,
                trusted: Some((comment, global)),
                embedded: None,
            })
        }
        None => {
            if prehashed {
                return Err("a signify signature cannot be prehashed (\"ED\")".into());
            }
            Ok(Signature {
                tool: Tool::Signify,
                prehashed,
                key_id,
                signature,
                trusted: None,
                embedded: (!rest.is_empty()).then(|| rest.to_vec()),
            })
        }
    }
}

fn ed25519_ok(key: &[u8; 32], message: &[u8], sig: &[u8; 64]) -> bool {
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, key)
        .verify(message, sig)
        .is_ok()
}

/// What the data a signature covers is given as.
pub enum Data<'a> {
    /// The whole message.
    Bytes(&'a [u8]),
    /// Only its BLAKE2b-512 digest (an image, hashed while streaming), and
    /// its length.
    Blake2b512(&'a [u8], u64),
}

/// Checks `sig` over `data` with the first of `keys` whose id it names.
pub fn check(sig: &Signature, keys: &[PublicKey], any_keys: bool, data: Data<'_>) -> Checked {
    let issuer = vec![format!("{:X}", u64::from_le_bytes(sig.key_id))];
    let hash = if sig.prehashed {
        "BLAKE2b-512"
    } else {
        "none (pure Ed25519)"
    }
    .to_string();
    let result = |status: Status, detail: Option<String>, signer: Option<Signer>| Checked {
        status,
        issuer: issuer.clone(),
        hash: hash.clone(),
        signer,
        detail,
        excluded: false,
    };
    let Some(key) = keys.iter().find(|k| k.key_id == sig.key_id) else {
        return if any_keys {
            result(
                Status::UnknownKey,
                Some("made by a key that was not given".into()),
                None,
            )
        } else {
            result(
                Status::Unchecked,
                Some("no signing key was given".into()),
                None,
            )
        };
    };
    let signer = Signer {
        fingerprint: key.id_hex(),
        subkey: None,
        user_id: None,
    };
    let owned;
    let message: &[u8] = match (sig.prehashed, data) {
        (false, Data::Bytes(b)) => b,
        (true, Data::Blake2b512(d, _)) => d,
        (true, Data::Bytes(b)) => {
            let mut h = crate::hash::HashAlgorithm::Blake2b512.hasher();
            h.update(b);
            owned = h.finish();
            owned.as_bytes()
        }
        (false, Data::Blake2b512(_, len)) => {
            return result(
                Status::Bad,
                Some(format!(
                    "a pure Ed25519 signature over a {len}-byte file needs it whole in memory; \
                     over {MAX_PURE_MESSAGE} bytes it is refused (sign with minisign's default \
                     prehashed mode, or sign a checksum file)"
                )),
                Some(signer),
            )
        }
    };
    if !ed25519_ok(&key.key, message, &sig.signature) {
        return result(
            Status::Bad,
            Some("the signature does not verify".into()),
            Some(signer),
        );
    }
    if let Some((comment, global)) = &sig.trusted {
        let mut m = sig.signature.to_vec();
        m.extend_from_slice(comment.as_bytes());
        if !ed25519_ok(&key.key, &m, global) {
            return result(
                Status::Bad,
                Some("the trusted comment's signature does not verify".into()),
                Some(signer),
            );
        }
        return result(
            Status::Good,
            Some(format!("trusted comment: {comment}")),
            Some(signer),
        );
    }
    result(Status::Good, None, Some(signer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_without_panicking_on_junk() {
        for junk in [
            &b""[..],
            b"untrusted comment:",
            b"untrusted comment: x\n",
            b"untrusted comment: x\n!!!\n",
            b"untrusted comment: x\nRWQ=\n",
        ] {
            assert!(parse_signature(junk).is_err());
            assert!(parse_public_key(junk).is_err());
        }
    }
}
