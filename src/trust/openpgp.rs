//! OpenPGP signatures (Ubuntu, Debian, Fedora, Arch, Mint, openSUSE) checked
//! with the `pgp` crate (rPGP), against keys the user gave.
//!
//! rPGP parses keys and signature packets and verifies RSA and EdDSA
//! signatures from a reader, so a signature over a multi-GB image (Arch) is
//! checked while the image streams past ([`super::stream::HashingReader`]).
//! What rPGP leaves to its caller is decided here:
//!
//! * **Which keys count.** Only keys from `--key` files, optionally narrowed
//!   by `--fingerprint` pins. A key must have a valid self-signature; its
//!   user ID, expiry and revocations come from self-signatures that verify.
//!   Signing subkeys count when their binding and back-signature verify.
//! * **Which signatures are refused** before any cryptography: SHA-1, MD5 and
//!   RIPEMD-160 hashes, signatures by expired or revoked keys, signatures
//!   that are not document signatures (type 0x00 binary / 0x01 text).
//! * **Several signatures per file**: each is checked and reported; any good
//!   one from a given key makes the file good.

use super::signature::{Checked, Signer, Status};
use pgp::composed::{CleartextSignedMessage, Deserializable, DetachedSignature, SignedPublicKey};
use pgp::crypto::hash::HashAlgorithm as PgpHash;
use pgp::packet::{Signature, SignatureType};
use pgp::types::{KeyDetails, Tag, Timestamp};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Problems with the keys given (`--key`, `--fingerprint`): input errors,
/// not outcomes. The pin errors' messages start with the pin as given; the
/// CLI names the option it came from.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: not an OpenPGP public key or keyring: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("{path}: key {fingerprint} has no valid self-signature, so its user ID and expiry cannot be trusted")]
    NoSelfSignature { path: PathBuf, fingerprint: String },
    #[error("{0}: none of the keys given has this fingerprint")]
    PinNotFound(String),
    #[error("{0}: not a hex fingerprint (40 hex digits for a v4 key, 64 for v6, as `gpg --fingerprint` prints them)")]
    BadPin(String),
    /// A key ID (the low 32 or 64 bits of a fingerprint) given as a pin.
    #[error("{pin}: a {bits}-bit key ID, not a fingerprint; key IDs are refused because anyone can make a key with the same ID (32-bit IDs in seconds, 64-bit ones with some effort); give the full fingerprint (40 hex digits, as `gpg --fingerprint` prints it)")]
    KeyId { pin: String, bits: usize },
}

/// A key that may make signatures: the primary or a bound signing subkey.
#[derive(Clone)]
enum SigningKey {
    Primary,
    Sub(Box<pgp::packet::PublicSubkey>),
}

struct Candidate {
    signing: SigningKey,
    fingerprint: pgp::types::Fingerprint,
    key_id: pgp::types::KeyId,
    /// Why this key may not sign (expired, revoked), if so.
    invalid: Option<(Status, String)>,
    /// When the (sub)key was created: no signature can be older.
    created: u32,
}

/// A given key with what its self-signatures say.
struct GivenKey {
    key: SignedPublicKey,
    fingerprint: String,
    user_id: Option<String>,
    candidates: Vec<Candidate>,
}

/// The keys signatures are checked against.
#[derive(Default)]
pub struct Keyring {
    keys: Vec<GivenKey>,
    /// Keys that were given but that the fingerprint pins left out: kept
    /// only to say so when one of them made a signature.
    excluded: Vec<GivenKey>,
}

fn fpr(f: &pgp::types::Fingerprint) -> String {
    format!("{f:X}")
}

fn key_id_hex(k: &pgp::types::KeyId) -> String {
    hex::encode_upper(k.as_ref())
}

fn now() -> u32 {
    Timestamp::now().as_secs()
}

fn secs(t: Option<Timestamp>) -> u32 {
    t.map(|t| t.as_secs()).unwrap_or(0)
}

/// The newest signature in `sigs` that `valid` accepts.
fn newest<'a>(sigs: impl Iterator<Item = &'a Signature>) -> Option<&'a Signature> {
    sigs.max_by_key(|s| secs(s.created()))
}

/// When a key created at `created` expires per `sig`, if it does.
fn expiry(created: Timestamp, sig: &Signature) -> Option<u64> {
    sig.key_expiration_time()
        .filter(|d| d.as_secs() > 0)
        .map(|d| created.as_secs() as u64 + u64::from(d.as_secs()))
}

impl Keyring {
    /// True when no key was given.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// How many keys (primary keys) are trusted.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Loads every public key in `files` (path, content; armored or
    /// binary, one key or a keyring).
    pub fn from_files(files: &[(PathBuf, Vec<u8>)]) -> Result<Keyring, super::Error> {
        let mut keys = Vec::new();
        for (path, bytes) in files {
            for key in parse_keys(bytes).map_err(|reason| KeyError::Parse {
                path: path.clone(),
                reason,
            })? {
                keys.push(examine(key, path)?);
            }
        }
        Ok(Keyring {
            keys,
            excluded: Vec::new(),
        })
    }

    /// True when a key's fingerprint is the normalized `pin`.
    pub fn has_pin(&self, pin: &str) -> bool {
        self.keys.iter().any(|k| k.fingerprint == pin)
    }

    /// Keeps only the keys that some normalized pin names; the others are
    /// remembered as excluded ([`Keyring::excluded_signer`]).
    pub fn retain_pins(&mut self, pins: &[String]) {
        let (keep, drop) = std::mem::take(&mut self.keys)
            .into_iter()
            .partition(|k| pins.contains(&k.fingerprint));
        self.keys = keep;
        self.excluded.extend(drop);
    }

    /// The given-but-excluded key (as a signer) that one of `issuers`
    /// (fingerprints or key IDs, upper-case hex, as [`Checked::issuer`]
    /// lists them) names, if any.
    pub fn excluded_signer(&self, issuers: &[String]) -> Option<Signer> {
        self.excluded.iter().find_map(|k| {
            k.candidates
                .iter()
                .find(|c| {
                    issuers
                        .iter()
                        .any(|i| *i == fpr(&c.fingerprint) || *i == key_id_hex(&c.key_id))
                })
                .map(|c| Signer {
                    fingerprint: k.fingerprint.clone(),
                    subkey: match c.signing {
                        SigningKey::Primary => None,
                        SigningKey::Sub(_) => Some(fpr(&c.fingerprint)),
                    },
                    user_id: k.user_id.clone(),
                })
        })
    }

    /// Fingerprints and user IDs of the trusted keys.
    pub fn describe(&self) -> Vec<Signer> {
        self.keys
            .iter()
            .map(|k| Signer {
                fingerprint: k.fingerprint.clone(),
                subkey: None,
                user_id: k.user_id.clone(),
            })
            .collect()
    }

    /// The given keys this signature names as its issuer.
    fn issuers_of<'k>(&'k self, sig: &Signature) -> Vec<(&'k GivenKey, &'k Candidate)> {
        let fps = sig.issuer_fingerprint();
        let ids = sig.issuer_key_id();
        let mut out = Vec::new();
        for k in &self.keys {
            for c in &k.candidates {
                if fps.iter().any(|f| **f == c.fingerprint) || ids.iter().any(|i| **i == c.key_id) {
                    out.push((k, c));
                }
            }
        }
        out
    }
}

/// A `--fingerprint` value in the form keys are compared in: upper-case
/// hex, spaces and a `0x` prefix removed. Only a whole fingerprint (40 hex
/// digits for v4 keys, 64 for v6) pins a key: a key ID is a fingerprint's
/// last 8 or 16 digits, and keys sharing one can be made at will (32-bit IDs
/// in seconds; 64-bit collisions have been computed too).
pub fn normalize_pin(p: &str) -> Result<String, KeyError> {
    let spaced: String = p.chars().filter(|c| !c.is_whitespace()).collect();
    let clean = spaced
        .strip_prefix("0x")
        .or_else(|| spaced.strip_prefix("0X"))
        .unwrap_or(&spaced)
        .to_ascii_uppercase();
    if !clean.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(KeyError::BadPin(p.to_string()));
    }
    match clean.len() {
        40 | 64 => Ok(clean),
        8 | 16 => Err(KeyError::KeyId {
            pin: p.to_string(),
            bits: clean.len() * 4,
        }),
        _ => Err(KeyError::BadPin(p.to_string())),
    }
}

/// A UTC date for a Unix time, for messages (`2026-12-07 08:00:00 UTC`).
pub fn utc(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        .map(|d| d.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| format!("{secs} seconds after 1970 (past year 262143)"))
}

/// A sentence for an rPGP error: its Display text where that is prose, a
/// summary where it would dump parser state (byte arrays, nom error kinds,
/// Debug-printed nested errors).
pub fn describe(e: &pgp::errors::Error) -> String {
    use pgp::errors::Error as E;
    match e {
        E::InvalidArmorWrappers => {
            "the armor's BEGIN and END lines are missing or do not match".into()
        }
        E::InvalidChecksum => "the armor checksum does not match: the text was damaged".into(),
        E::Base64Decode { .. } => "the armored text is not valid base64: it was damaged".into(),
        E::PacketIncomplete { .. } => "the OpenPGP data is truncated".into(),
        E::PacketParsing { source, .. } if source.is_incomplete() => {
            "the OpenPGP data is truncated".into()
        }
        E::PacketParsing { .. }
        | E::PacketError { .. }
        | E::InvalidPacketContent { .. }
        | E::InvalidInput { .. }
        | E::RequestedSizeTooLarge
        | E::PacketTooLarge { .. }
        | E::NoMatchingPacket { .. }
        | E::TooManyPackets => "the OpenPGP packets are malformed".into(),
        E::Unsupported { message, .. } | E::Unimplemented { message, .. } => {
            format!("unsupported OpenPGP data: {message}")
        }
        // rPGP reports armor that fails to parse as an I/O error carrying
        // the parser's state.
        E::IO { source, .. } => prose(&source.to_string())
            .map(|s| format!("the OpenPGP data is unreadable: {s}"))
            .unwrap_or_else(|| "the armor is malformed or truncated".into()),
        other => {
            prose(&other.to_string()).unwrap_or_else(|| "the OpenPGP data is malformed".into())
        }
    }
}

/// `s` when it reads as a sentence, `None` when it dumps parser state.
fn prose(s: &str) -> Option<String> {
    (s.len() <= 160 && !s.contains(['{', '[', '('])).then(|| s.to_string())
}

/// Splits concatenated armored blocks or parses binary packets into keys.
fn parse_keys(bytes: &[u8]) -> Result<Vec<SignedPublicKey>, String> {
    const BEGIN: &str = "-----BEGIN PGP PUBLIC KEY BLOCK-----";
    let mut keys = Vec::new();
    let text = std::str::from_utf8(bytes).ok();
    if let Some(text) = text.filter(|t| t.contains(BEGIN)) {
        for block in text.split(BEGIN).skip(1) {
            let armored = format!("{BEGIN}{block}");
            let (it, _) = SignedPublicKey::from_armor_many_buf_with_options(
                armored.as_bytes(),
                pgp::armor::DearmorOptions::new(),
            )
            .map_err(|e| describe(&e))?;
            for k in it {
                keys.push(k.map_err(|e| describe(&e))?);
            }
        }
    } else if starts_with_packet(bytes, &[6]) {
        for k in SignedPublicKey::from_bytes_many(bytes).map_err(|e| describe(&e))? {
            keys.push(k.map_err(|e| describe(&e))?);
        }
    } else if let Some(text) = text.filter(|t| t.contains("-----BEGIN PGP")) {
        let kind = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("-----BEGIN PGP "))
            .and_then(|l| l.strip_suffix("-----"))
            .unwrap_or("armored block");
        return Err(format!("it holds a PGP {kind}, not a PGP PUBLIC KEY BLOCK"));
    } else if text.is_some() {
        return Err(format!(
            "it is text without a {BEGIN} line (a key is exported with `gpg --export --armor FINGERPRINT`)"
        ));
    } else {
        return Err("it does not start with an OpenPGP public-key packet".into());
    }
    if keys.is_empty() {
        return Err("no public key found".into());
    }
    Ok(keys)
}

/// Reads a key's self-signatures: user ID, expiry, revocation, and which
/// subkeys may sign.
fn examine(key: SignedPublicKey, path: &Path) -> Result<GivenKey, super::Error> {
    let primary = &key.primary_key;
    let fingerprint = fpr(&primary.fingerprint());
    let mut self_sigs: Vec<&Signature> = Vec::new();
    let mut user_id = None;
    let mut primary_uid = false;
    for user in &key.details.users {
        let valid: Vec<&Signature> = user
            .signatures
            .iter()
            .filter(|s| {
                s.verify_certification(primary, Tag::UserId, &user.id)
                    .is_ok()
            })
            .collect();
        if let Some(latest) = newest(valid.iter().copied()) {
            let is_primary = latest.is_primary();
            if user_id.is_none() || (is_primary && !primary_uid) {
                user_id = Some(String::from_utf8_lossy(user.id.id()).into_owned());
                primary_uid = is_primary;
            }
            self_sigs.push(latest);
        }
    }
    self_sigs.extend(
        key.details
            .direct_signatures
            .iter()
            .filter(|s| s.verify_key(primary).is_ok()),
    );
    let Some(latest) = newest(self_sigs.iter().copied()) else {
        return Err(KeyError::NoSelfSignature {
            path: path.to_path_buf(),
            fingerprint,
        }
        .into());
    };
    let t = now() as u64;
    let revoked = key
        .details
        .revocation_signatures
        .iter()
        .any(|s| s.verify_key(primary).is_ok());
    let primary_invalid = if revoked {
        Some((Status::RevokedKey, format!("key {fingerprint} is revoked")))
    } else {
        match expiry(primary.created_at(), latest) {
            Some(e) if e <= t => Some((
                Status::ExpiredKey,
                format!("key {fingerprint} expired on {}", utc(e)),
            )),
            _ => None,
        }
    };
    let mut candidates = Vec::new();
    let flags = latest.key_flags();
    let no_flags = !(flags.sign()
        || flags.certify()
        || flags.encrypt_comms()
        || flags.encrypt_storage()
        || flags.authentication());
    if flags.sign() || no_flags {
        candidates.push(Candidate {
            signing: SigningKey::Primary,
            fingerprint: primary.fingerprint(),
            key_id: primary.legacy_key_id(),
            invalid: primary_invalid.clone(),
            created: primary.created_at().as_secs(),
        });
    }
    for sub in &key.public_subkeys {
        let bindings = sub.signatures.iter().filter(|s| {
            s.typ() == Some(SignatureType::SubkeyBinding)
                && s.verify_subkey_binding(primary, &sub.key).is_ok()
        });
        let Some(binding) = newest(bindings) else {
            continue;
        };
        if !binding.key_flags().sign() {
            continue;
        }
        // A signing subkey must sign the primary back, or anyone could
        // claim someone else's subkey.
        let backsig = binding
            .embedded_signature()
            .is_some_and(|b| b.verify_primary_key_binding(&sub.key, primary).is_ok());
        if !backsig {
            continue;
        }
        let sub_fpr = fpr(&sub.key.fingerprint());
        let sub_revoked = sub.signatures.iter().any(|s| {
            s.typ() == Some(SignatureType::SubkeyRevocation)
                && s.verify_subkey_binding(primary, &sub.key).is_ok()
        });
        let invalid = primary_invalid.clone().or_else(|| {
            if sub_revoked {
                Some((Status::RevokedKey, format!("subkey {sub_fpr} is revoked")))
            } else {
                match expiry(sub.key.created_at(), binding) {
                    Some(e) if e <= t => Some((
                        Status::ExpiredKey,
                        format!("subkey {sub_fpr} expired on {}", utc(e)),
                    )),
                    _ => None,
                }
            }
        });
        candidates.push(Candidate {
            signing: SigningKey::Sub(Box::new(sub.key.clone())),
            fingerprint: sub.key.fingerprint(),
            key_id: sub.key.legacy_key_id(),
            invalid,
            created: sub.key.created_at().as_secs(),
        });
    }
    Ok(GivenKey {
        fingerprint,
        user_id,
        candidates,
        key,
    })
}

/// True when `bytes` look like an OpenPGP signature (armored or a binary
/// signature packet) rather than minisign/signify text.
pub fn looks_like_openpgp(bytes: &[u8]) -> bool {
    let t = String::from_utf8_lossy(&bytes[..bytes.len().min(64)]);
    if t.trim_start().starts_with("-----BEGIN PGP") {
        return true;
    }
    // Binary: a packet header with tag 2 (signature), old or new format.
    starts_with_packet(bytes, &[2])
}

/// True when `bytes` start with an OpenPGP packet header (old or new
/// format) whose tag is one of `tags`.
fn starts_with_packet(bytes: &[u8], tags: &[u8]) -> bool {
    match bytes.first() {
        Some(b) if b & 0x80 != 0 => {
            let tag = if b & 0x40 != 0 {
                b & 0x3f
            } else {
                (b >> 2) & 0x0f
            };
            tags.contains(&tag)
        }
        _ => false,
    }
}

/// Parses a detached signature file: armored or binary, one or more
/// signature packets and nothing else.
pub fn parse_detached(bytes: &[u8]) -> Result<Vec<Signature>, String> {
    let text = std::str::from_utf8(bytes).ok();
    let sigs: Vec<pgp::errors::Result<DetachedSignature>> = match text {
        Some(t) if t.trim_start().starts_with("-----BEGIN PGP SIGNATURE-----") => {
            let (it, _) = DetachedSignature::from_armor_many_buf_with_options(
                t.trim_start().as_bytes(),
                pgp::armor::DearmorOptions::new(),
            )
            .map_err(|e| format!("bad armor: {}", describe(&e)))?;
            it.collect()
        }
        Some(t) if t.trim_start().starts_with("-----BEGIN PGP") => {
            return Err("not a detached signature (another armored block)".into())
        }
        _ => DetachedSignature::from_bytes_many(bytes)
            .map_err(|e| describe(&e))?
            .collect(),
    };
    let mut out = Vec::new();
    for s in sigs {
        out.push(
            s.map_err(|e| format!("bad signature packet: {}", describe(&e)))?
                .signature,
        );
    }
    if out.is_empty() {
        return Err("no signature packet found".into());
    }
    Ok(out)
}

/// The line that opens a clearsigned message (RFC 9580 §7).
pub const CLEARSIGN_HEADER: &str = "-----BEGIN PGP SIGNED MESSAGE-----";
const SIGNATURE_END: &str = "-----END PGP SIGNATURE-----";

/// True when a checksum file is (or claims to be) clearsigned: the header
/// appears anywhere in it. Such a file is read only as a clearsigned file,
/// so a line put in front of the header cannot make it pass for an unsigned
/// list.
pub fn is_clearsigned(text: &str) -> bool {
    text.contains(CLEARSIGN_HEADER)
}

/// Whitespace tolerated outside a clearsigned block: blank lines before the
/// header, and spaces, tabs and line breaks after the signature's END line
/// (gpg accepts both; editors and transfers add them). Anything else
/// outside the block (a line of text, a UTF-8 BOM, a second block) makes
/// the file bad.
fn tolerated(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// Finds the clearsigned block: from the header (which must start a line,
/// with only tolerated whitespace before it) to the signature's END line
/// (with only tolerated whitespace after it). Returns the block, cut right
/// after `-----END PGP SIGNATURE-----`.
fn clearsigned_block(text: &str) -> Result<&str, String> {
    let mut at = 0;
    let mut header = None;
    for line in text.split_inclusive('\n') {
        if line
            .strip_prefix(CLEARSIGN_HEADER)
            .is_some_and(|rest| rest.bytes().all(tolerated))
        {
            header = Some(at);
            break;
        }
        at += line.len();
    }
    let outside = |n: usize, where_: &str| {
        format!("text outside the signed part: {n} bytes {where_}; nothing in this file is used")
    };
    let Some(start) = header else {
        let n = text.find(CLEARSIGN_HEADER).unwrap_or(0);
        return Err(outside(
            n,
            &format!("before {CLEARSIGN_HEADER} on its line (it must start the line)"),
        ));
    };
    let before = &text[..start];
    if !before.bytes().all(tolerated) {
        let n = before.bytes().filter(|b| !tolerated(*b)).count();
        return Err(outside(n, &format!("before the {CLEARSIGN_HEADER} line")));
    }
    let mut at = start;
    for line in text[start..].split_inclusive('\n') {
        if let Some(rest) = line.strip_prefix(SIGNATURE_END) {
            let end = at + SIGNATURE_END.len();
            let after = &text[end..];
            if !rest.bytes().all(tolerated) || !after.bytes().all(tolerated) {
                let n = after.bytes().filter(|b| !tolerated(*b)).count();
                return Err(outside(n, &format!("after the {SIGNATURE_END} line")));
            }
            return Ok(&text[start..end]);
        }
        at += line.len();
    }
    Err(format!(
        "malformed clearsigned file: no {SIGNATURE_END} line"
    ))
}

/// Parses a clearsigned file: the signed text (normalized as signed) and
/// its signatures. The file must be one clearsigned block and nothing else
/// but tolerated whitespace ([`clearsigned_block`]).
pub fn parse_clearsigned(text: &str) -> Result<(String, Vec<Signature>), String> {
    let block = clearsigned_block(text)?;
    // rPGP wants the block alone, ending with one line break, and its
    // header line bare: trailing whitespace there (which gpg and RFC 9580
    // §6.2 allow on armor lines) is dropped; it is not part of the signed
    // text.
    let (header, rest) = block.split_once('\n').unwrap_or((block, ""));
    let mut exact = String::with_capacity(block.len() + 2);
    exact.push_str(CLEARSIGN_HEADER);
    exact.push_str(if header.ends_with('\r') { "\r\n" } else { "\n" });
    exact.push_str(rest);
    exact.push('\n');
    let (msg, _) =
        CleartextSignedMessage::from_armor_buf(exact.as_bytes(), pgp::armor::DearmorOptions::new())
            .map_err(|e| format!("malformed clearsigned file: {}", describe(&e)))?;
    if msg.signatures().is_empty() {
        return Err("no signature in the clearsigned file".into());
    }
    Ok((msg.signed_text(), msg.signatures().to_vec()))
}

fn hash_name(sig: &Signature) -> String {
    sig.hash_alg()
        .map(|h| h.to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn issuers(sig: &Signature) -> Vec<String> {
    let mut v: Vec<String> = sig.issuer_fingerprint().iter().map(|f| fpr(f)).collect();
    v.extend(sig.issuer_key_id().iter().map(|k| key_id_hex(k)));
    v
}

/// What to do with one signature before reading any data: a verdict that
/// needs no cryptography, or the key to verify it with.
pub enum Plan<'k> {
    Done(Checked),
    Verify {
        signing: SigningKeyRef<'k>,
        signer: Signer,
    },
}

/// The key material to verify with (primary or subkey).
pub struct SigningKeyRef<'k>(&'k SigningKey, &'k SignedPublicKey);

impl SigningKeyRef<'_> {
    /// Verifies `sig` over everything `data` yields.
    pub fn verify<R: Read>(&self, sig: &Signature, data: R) -> Result<(), String> {
        let r = match self.0 {
            SigningKey::Primary => sig.verify(&self.1.primary_key, data),
            SigningKey::Sub(sub) => sig.verify(sub.as_ref(), data),
        };
        r.map_err(|e| e.to_string())
    }
}

/// Decides what can be decided about `sig` without the data.
pub fn plan<'k>(sig: &Signature, keys: &'k Keyring, any_keys: bool) -> Plan<'k> {
    let base = |status: Status, detail: Option<String>, signer: Option<Signer>| Checked {
        status,
        issuer: issuers(sig),
        hash: hash_name(sig),
        signer,
        detail,
        excluded: false,
    };
    if !any_keys {
        return Plan::Done(base(
            Status::Unchecked,
            Some("no signing key was given".into()),
            None,
        ));
    }
    if !matches!(sig.typ(), Some(SignatureType::Binary | SignatureType::Text)) {
        return Plan::Done(base(
            Status::Bad,
            Some(format!("not a document signature ({:?})", sig.typ())),
            None,
        ));
    }
    let found = keys.issuers_of(sig);
    let Some((given, cand)) = found
        .iter()
        .find(|(_, c)| c.invalid.is_none())
        .or(found.first())
        .copied()
    else {
        return Plan::Done(base(
            Status::UnknownKey,
            Some("made by a key that was not given".into()),
            None,
        ));
    };
    let signer = Signer {
        fingerprint: given.fingerprint.clone(),
        subkey: match cand.signing {
            SigningKey::Primary => None,
            SigningKey::Sub(_) => Some(fpr(&cand.fingerprint)),
        },
        user_id: given.user_id.clone(),
    };
    if matches!(
        sig.hash_alg(),
        Some(PgpHash::Md5 | PgpHash::Sha1 | PgpHash::Ripemd160) | None
    ) {
        return Plan::Done(base(
            Status::Weak,
            Some(format!("{} signatures are refused", hash_name(sig))),
            Some(signer),
        ));
    }
    if let Some((status, why)) = &cand.invalid {
        return Plan::Done(base(*status, Some(why.clone()), Some(signer)));
    }
    // A signature dated in the future, or before its key existed, is not
    // accepted (the key-expiry check above covers expiry before now).
    let created = secs(sig.created());
    if created as u64 > now() as u64 + 86_400 {
        return Plan::Done(base(
            Status::Bad,
            Some(format!(
                "the signature is dated {}, in the future (this computer's clock says {}): check the clock",
                utc(created.into()),
                utc(now().into())
            )),
            Some(signer),
        ));
    }
    if created < cand.created {
        return Plan::Done(base(
            Status::Bad,
            Some("signature is older than the key that made it".into()),
            Some(signer),
        ));
    }
    // A signature may carry its own expiry.
    if let Some(d) = sig.signature_expiration_time().filter(|d| d.as_secs() > 0) {
        let end = created as u64 + u64::from(d.as_secs());
        if end <= now() as u64 {
            return Plan::Done(base(
                Status::ExpiredKey,
                Some(format!("the signature itself expired on {}", utc(end))),
                Some(signer),
            ));
        }
    }
    Plan::Verify {
        signing: SigningKeyRef(&cand.signing, &given.key),
        signer,
    }
}

/// Checks `sig` over `data` (whole, in memory: a checksum file).
pub fn check_bytes(sig: &Signature, keys: &Keyring, any_keys: bool, data: &[u8]) -> Checked {
    match plan(sig, keys, any_keys) {
        Plan::Done(c) => c,
        Plan::Verify {
            signing, signer, ..
        } => finish(sig, signer, signing.verify(sig, data)),
    }
}

/// Turns the result of a verification into a [`Checked`].
pub fn finish(sig: &Signature, signer: Signer, result: Result<(), String>) -> Checked {
    Checked {
        status: if result.is_ok() {
            Status::Good
        } else {
            Status::Bad
        },
        issuer: issuers(sig),
        hash: hash_name(sig),
        signer: Some(signer),
        detail: result.err().map(|e| {
            format!("it does not verify: the signed data or the signature was altered ({e})")
        }),
        excluded: false,
    }
}
