//! Verdicts on signatures, shared by every signature format (OpenPGP,
//! minisign, signify): who signed, and what became of each signature.

use serde::Serialize;

/// Who made a good signature.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Signer {
    /// The primary key's fingerprint (upper-case hex).
    pub fingerprint: String,
    /// The signing subkey's fingerprint, when a subkey signed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subkey: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
}

/// The verdict on one signature.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Verified with a given, valid key.
    Good,
    /// Malformed, truncated, or fails verification with the key it names.
    Bad,
    /// Made by a key that was revoked.
    RevokedKey,
    /// Made by a key that has expired (or made after it expired).
    ExpiredKey,
    /// Uses SHA-1, MD5 or RIPEMD-160.
    Weak,
    /// Made by a key that was not given.
    UnknownKey,
    /// Not checked: no keys were given at all.
    Unchecked,
}

/// One signature and what became of it.
#[derive(Clone, Debug, Serialize)]
pub struct Checked {
    pub status: Status,
    /// Issuer fingerprints or key IDs the signature names.
    pub issuer: Vec<String>,
    /// The signature's hash algorithm.
    pub hash: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signer: Option<Signer>,
    /// Why it is not good, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// True when the signer is among the keys given but the fingerprint
    /// pins leave it out (the status is then `unknown-key`, and `signer`
    /// names that key).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub excluded: bool,
}

/// The verdict on a file from the verdicts on its signatures: good if any is
/// good, else the most serious failure ([`Status`] is ordered that way).
pub fn file_status(checked: &[Checked]) -> Status {
    checked
        .iter()
        .map(|c| c.status)
        .min()
        .unwrap_or(Status::Bad)
}

/// One signature file and what it covers.
#[derive(Clone, Debug, Serialize)]
pub struct SignatureFile {
    /// The signature file (for a clearsigned file, the file itself).
    pub file: String,
    /// The file it signs: a checksum file or the image.
    pub covers: String,
    /// `openpgp`, `openpgp-clearsigned`, `minisign` or `signify`.
    pub format: &'static str,
    /// Good if any signature is good, else the most serious failure.
    pub status: Status,
    pub signatures: Vec<Checked>,
    /// Why the file itself could not be read as signatures, if so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}
