//! Authenticode signatures of UEFI loaders: is a loader signed, is the
//! signature valid, and by whom. What Secure Boot firmware checks before it
//! starts a loader, minus the trust decision (which keys are enrolled is
//! the firmware's, not the image's).
//!
//! A signed PE image carries, in its certificate table, a `WIN_CERTIFICATE`
//! of type `PKCS_SIGNED_DATA`: a PKCS#7 SignedData whose content is an
//! `SpcIndirectDataContent` holding the image's digest. **Valid** means
//! both halves hold: the digest recomputed the Authenticode way
//! ([`crate::image::pe::Pe::digest_ranges`]) equals the signed one, and the
//! signer's signature over the signed attributes (whose `messageDigest` is
//! the digest of the `SpcIndirectDataContent`) verifies with the signer
//! certificate's key (RSA PKCS#1 v1.5 or ECDSA, through `ring`). A digest
//! that does not match is **tampered**: the loader was changed after it was
//! signed. The certificates' issuers are reported as the chain the
//! signature names ("Microsoft Corporation UEFI CA 2011"); whether the
//! chain ends at a key a PC trusts is not decided here.
//!
//! For shim (and GRUB) the `.sbat` section's entries are reported too: the
//! generation numbers firmware and shim revoke vulnerable loaders by.

use crate::image::pe::{self, Pe};
use cms::cert::CertificateChoices;
use cms::content_info::ContentInfo;
use cms::signed_data::{SignedData, SignerIdentifier};
use der::asn1::OctetStringRef;
use der::{Decode, Encode, Reader};
use serde::Serialize;
use sha2::Digest;
use x509_cert::Certificate;

const OID_SIGNED_DATA: &str = "1.2.840.113549.1.7.2";
const OID_SPC_INDIRECT_DATA: &str = "1.3.6.1.4.1.311.2.1.4";
const OID_MESSAGE_DIGEST: &str = "1.2.840.113549.1.9.4";
const OID_SHA1: &str = "1.3.14.3.2.26";
const OID_SHA256: &str = "2.16.840.1.101.3.4.2.1";
const OID_SHA384: &str = "2.16.840.1.101.3.4.2.2";
const OID_SHA512: &str = "2.16.840.1.101.3.4.2.3";
const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_SHA256_RSA: &str = "1.2.840.113549.1.1.11";
const OID_SHA384_RSA: &str = "1.2.840.113549.1.1.12";
const OID_SHA512_RSA: &str = "1.2.840.113549.1.1.13";
const OID_SHA1_RSA: &str = "1.2.840.113549.1.1.5";
const OID_EC: &str = "1.2.840.10045.2.1";

/// The `WIN_CERTIFICATE` type of a PKCS#7 SignedData.
pub const WIN_CERT_TYPE_PKCS_SIGNED_DATA: u16 = 0x0002;

/// What the signature check found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// No certificate table: Secure Boot firmware refuses it.
    Unsigned,
    /// The recomputed digest matches and the signature verifies.
    Valid,
    /// Signed, but the image's digest is not the signed one: changed after
    /// signing.
    Tampered,
    /// The digest matches but the signature does not verify with the
    /// signer's certificate (or no certificate matches the signer).
    BadSignature,
    /// A certificate table we cannot read, or an algorithm we do not know.
    Unreadable,
}

/// The signer of a loader.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Signer {
    /// RFC 4514 names.
    pub subject: String,
    pub issuer: String,
    pub serial: String,
}

/// One `.sbat` entry (`component,generation,vendor name,package,version,url`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SbatEntry {
    pub component: String,
    pub generation: String,
    /// The rest of the CSV line, as written.
    pub rest: String,
}

/// One signature of the certificate table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Signature {
    pub state: State,
    /// What went wrong, for every state but `valid`.
    pub detail: Option<String>,
    /// `sha256`, `sha1`, …: the signed digest's algorithm.
    pub digest_algorithm: Option<&'static str>,
    /// The image's digest recomputed with it (hex), and the signed one.
    pub digest: Option<String>,
    pub signed_digest: Option<String>,
    pub signer: Option<Signer>,
    /// Issuers above the signer, nearest first, as far as the signature's
    /// own certificates go: the signer's issuer, its issuer, …
    pub issuer_chain: Vec<String>,
}

/// The Authenticode report of one loader.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Report {
    /// `unsigned` without signatures; else `valid` when every signature
    /// is, or the first other state (`tampered` first: a digest mismatch
    /// is the image's fault, whichever signature shows it).
    pub state: State,
    /// The signatures in table order (shim carries two: Microsoft's 2011
    /// and 2023 UEFI CAs).
    pub signatures: Vec<Signature>,
    /// `.sbat` entries (shim, GRUB); empty without the section.
    pub sbat: Vec<SbatEntry>,
}

/// Why a loader could not be looked at (not a PE image).
pub type Error = pe::Error;

impl Signature {
    fn new() -> Signature {
        Signature {
            state: State::Unreadable,
            detail: None,
            digest_algorithm: None,
            digest: None,
            signed_digest: None,
            signer: None,
            issuer_chain: Vec::new(),
        }
    }

    fn fail(mut self, state: State, detail: impl Into<String>) -> Signature {
        self.state = state;
        self.detail = Some(detail.into());
        self
    }
}

/// The most signatures read from one certificate table.
pub const MAX_SIGNATURES: usize = 8;

/// Checks the Authenticode signatures of the PE image `b`. An error only
/// when `b` is not a PE image; every signature problem is a [`State`].
pub fn check(b: &[u8]) -> Result<Report, Error> {
    let pe = Pe::parse(b)?;
    let sbat = sbat(&pe, b);
    if pe.cert_table.1 == 0 {
        return Ok(Report {
            state: State::Unsigned,
            signatures: Vec::new(),
            sbat,
        });
    }
    let signatures = match pe.certificates(b) {
        Err(e) => vec![Signature::new().fail(State::Unreadable, e.to_string())],
        Ok(certs) => {
            let ranges = pe.digest_ranges(b.len())?;
            let list: Vec<Signature> = certs
                .iter()
                .filter(|(_, kind, _)| *kind == WIN_CERT_TYPE_PKCS_SIGNED_DATA)
                .take(MAX_SIGNATURES)
                .map(|(_, _, pkcs7)| verify(b, &ranges, pkcs7))
                .collect();
            if list.is_empty() {
                vec![Signature::new().fail(
                    State::Unreadable,
                    "no PKCS#7 signature in the certificate table",
                )]
            } else {
                list
            }
        }
    };
    let state = signatures
        .iter()
        .find(|s| s.state == State::Tampered)
        .or_else(|| signatures.iter().find(|s| s.state != State::Valid))
        .map_or(State::Valid, |s| s.state);
    Ok(Report {
        state,
        signatures,
        sbat,
    })
}

/// Hashes with the algorithm `oid` names.
fn digest(oid: &str, parts: &mut dyn Iterator<Item = &[u8]>) -> Option<(&'static str, Vec<u8>)> {
    fn run<D: Digest>(parts: &mut dyn Iterator<Item = &[u8]>) -> Vec<u8> {
        let mut h = D::new();
        for p in parts {
            h.update(p);
        }
        h.finalize().to_vec()
    }
    Some(match oid {
        OID_SHA256 => ("sha256", run::<sha2::Sha256>(parts)),
        OID_SHA384 => ("sha384", run::<sha2::Sha384>(parts)),
        OID_SHA512 => ("sha512", run::<sha2::Sha512>(parts)),
        OID_SHA1 => ("sha1", run::<sha1::Sha1>(parts)),
        _ => return None,
    })
}

/// The signed digest in an `SpcIndirectDataContent` (the SEQUENCE's
/// contents): `SEQUENCE { data SpcAttributeTypeAndOptionalValue,
/// messageDigest DigestInfo { AlgorithmIdentifier, OCTET STRING } }`.
fn indirect_digest(contents: &[u8]) -> der::Result<(String, Vec<u8>)> {
    let mut r = der::SliceReader::new(contents)?;
    let _data: der::Any = r.decode()?;
    let info: der::Any = r.decode()?;
    let mut r = der::SliceReader::new(info.value())?;
    let alg: spki::AlgorithmIdentifierOwned = r.decode()?;
    let d: OctetStringRef = r.decode()?;
    Ok((alg.oid.to_string(), d.as_bytes().to_vec()))
}

fn verify(b: &[u8], ranges: &[std::ops::Range<usize>], pkcs7: &[u8]) -> Signature {
    let mut report = Signature::new();
    // The entry is padded to 8 bytes: read one DER value, ignore the rest.
    let info = match der::SliceReader::new(pkcs7).and_then(|mut r| ContentInfo::decode(&mut r)) {
        Ok(i) => i,
        Err(e) => return report.fail(State::Unreadable, format!("PKCS#7: {e}")),
    };
    if info.content_type.to_string() != OID_SIGNED_DATA {
        return report.fail(
            State::Unreadable,
            format!("PKCS#7 content {} is not SignedData", info.content_type),
        );
    }
    let sd: SignedData = match info.content.decode_as() {
        Ok(s) => s,
        Err(e) => return report.fail(State::Unreadable, format!("SignedData: {e}")),
    };
    if sd.encap_content_info.econtent_type.to_string() != OID_SPC_INDIRECT_DATA {
        return report.fail(
            State::Unreadable,
            "the signed content is not SpcIndirectDataContent",
        );
    }
    let Some(content) = &sd.encap_content_info.econtent else {
        return report.fail(State::Unreadable, "SignedData without content");
    };
    let (alg, signed) = match indirect_digest(content.value()) {
        Ok(x) => x,
        Err(e) => return report.fail(State::Unreadable, format!("SpcIndirectDataContent: {e}")),
    };
    let Some((name, computed)) = digest(&alg, &mut ranges.iter().map(|r| &b[r.clone()])) else {
        return report.fail(State::Unreadable, format!("digest algorithm {alg}"));
    };
    report.digest_algorithm = Some(name);
    report.digest = Some(hex::encode(&computed));
    report.signed_digest = Some(hex::encode(&signed));
    let certs: Vec<&Certificate> = sd
        .certificates
        .iter()
        .flat_map(|set| set.0.iter())
        .filter_map(|c| match c {
            CertificateChoices::Certificate(c) => Some(c),
            _ => None,
        })
        .collect();
    let Some(si) = sd.signer_infos.0.iter().next() else {
        return report.fail(State::Unreadable, "SignedData without a signer");
    };
    let signer = match &si.sid {
        SignerIdentifier::IssuerAndSerialNumber(id) => certs.iter().find(|c| {
            c.tbs_certificate.issuer == id.issuer
                && c.tbs_certificate.serial_number == id.serial_number
        }),
        SignerIdentifier::SubjectKeyIdentifier(_) => None,
    };
    if let Some(c) = signer {
        report.signer = Some(Signer {
            subject: c.tbs_certificate.subject.to_string(),
            issuer: c.tbs_certificate.issuer.to_string(),
            serial: hex::encode(c.tbs_certificate.serial_number.as_bytes()),
        });
        report.issuer_chain = chain(c, &certs);
    }
    if computed != signed {
        return report.fail(
            State::Tampered,
            format!(
                "the image's {name} digest is {} but the signature is over {}",
                hex::encode(&computed),
                hex::encode(&signed)
            ),
        );
    }
    let Some(signer) = signer else {
        return report.fail(
            State::BadSignature,
            "no certificate in the signature matches its signer",
        );
    };
    match signature_ok(si, content.value(), signer) {
        Ok(()) => {
            report.state = State::Valid;
            report
        }
        Err(why) => report.fail(State::BadSignature, why),
    }
}

/// The issuers above `cert` among `certs`: each one's issuer, found as a
/// subject, up to 8 or a self-signed one.
fn chain(cert: &Certificate, certs: &[&Certificate]) -> Vec<String> {
    let mut out = vec![cert.tbs_certificate.issuer.to_string()];
    let mut at = cert;
    for _ in 0..8 {
        let tbs = &at.tbs_certificate;
        if tbs.issuer == tbs.subject {
            break;
        }
        let Some(up) = certs
            .iter()
            .find(|c| c.tbs_certificate.subject == tbs.issuer && !std::ptr::eq(**c, at))
        else {
            break;
        };
        let issuer = up.tbs_certificate.issuer.to_string();
        if up.tbs_certificate.issuer == up.tbs_certificate.subject || out.contains(&issuer) {
            break;
        }
        out.push(issuer);
        at = up;
    }
    out
}

/// Checks the signer's signature: the signed attributes' `messageDigest`
/// must be the digest of the signed content (the SEQUENCE's contents, as
/// Authenticode computes it), and the signature over the attributes (DER,
/// as a SET) must verify with `cert`'s key.
fn signature_ok(
    si: &cms::signed_data::SignerInfo,
    content: &[u8],
    cert: &Certificate,
) -> Result<(), String> {
    let dalg = si.digest_alg.oid.to_string();
    let Some(attrs) = &si.signed_attrs else {
        return Err("the signer has no signed attributes".into());
    };
    let Some((_, content_digest)) = digest(&dalg, &mut std::iter::once(content)) else {
        return Err(format!("digest algorithm {dalg}"));
    };
    let md = attrs
        .iter()
        .find(|a| a.oid.to_string() == OID_MESSAGE_DIGEST)
        .and_then(|a| a.values.iter().next())
        .and_then(|v| {
            v.decode_as::<OctetStringRef>()
                .ok()
                .map(|o| o.as_bytes().to_vec())
        });
    if md.as_deref() != Some(&content_digest[..]) {
        return Err(
            "the signed attributes' messageDigest is not the digest of the signed content".into(),
        );
    }
    let message = attrs
        .to_der()
        .map_err(|e| format!("signed attributes: {e}"))?;
    let spki = &cert.tbs_certificate.subject_public_key_info;
    let key = spki.subject_public_key.raw_bytes();
    let salg = si.signature_algorithm.oid.to_string();
    use ring::signature as rs;
    let alg: &dyn rs::VerificationAlgorithm = match (
        spki.algorithm.oid.to_string().as_str(),
        salg.as_str(),
        dalg.as_str(),
    ) {
        (OID_RSA, OID_RSA | OID_SHA256_RSA, OID_SHA256) => &rs::RSA_PKCS1_2048_8192_SHA256,
        (OID_RSA, OID_RSA | OID_SHA384_RSA, OID_SHA384) => &rs::RSA_PKCS1_2048_8192_SHA384,
        (OID_RSA, OID_RSA | OID_SHA512_RSA, OID_SHA512) => &rs::RSA_PKCS1_2048_8192_SHA512,
        (OID_RSA, OID_RSA | OID_SHA1_RSA, OID_SHA1) => {
            &rs::RSA_PKCS1_1024_8192_SHA1_FOR_LEGACY_USE_ONLY
        }
        (OID_EC, _, OID_SHA256) => &rs::ECDSA_P256_SHA256_ASN1,
        (OID_EC, _, OID_SHA384) => &rs::ECDSA_P384_SHA384_ASN1,
        (k, s, d) => {
            return Err(format!(
                "signature algorithm {s} with key {k} and digest {d}"
            ))
        }
    };
    rs::UnparsedPublicKey::new(alg, key)
        .verify(&message, si.signature.as_bytes())
        .map_err(|_| "the signature does not verify with the signer certificate's key".to_owned())
}

/// The `.sbat` section's CSV entries.
fn sbat(pe: &Pe, b: &[u8]) -> Vec<SbatEntry> {
    let Some(s) = pe.section(b, ".sbat") else {
        return Vec::new();
    };
    let end = s.iter().position(|&c| c == 0).unwrap_or(s.len());
    String::from_utf8_lossy(&s[..end])
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(64)
        .map(|l| {
            let mut f = l.splitn(3, ',');
            SbatEntry {
                component: f.next().unwrap_or_default().to_owned(),
                generation: f.next().unwrap_or_default().to_owned(),
                rest: f.next().unwrap_or_default().to_owned(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_table_is_unsigned_and_garbage_is_unreadable() {
        let mut b = crate::image::pe::tests::image(&[0u8; 64]);
        let r = check(&b).unwrap();
        assert_eq!((r.state, r.signatures.len()), (State::Unsigned, 0));
        // A WIN_CERTIFICATE of type PKCS_SIGNED_DATA holding no DER.
        let dir = 0x58 + 112 + 32;
        b[dir..dir + 4].copy_from_slice(&0x400u32.to_le_bytes());
        b[dir + 4..dir + 8].copy_from_slice(&64u32.to_le_bytes());
        b[0x400..0x404].copy_from_slice(&64u32.to_le_bytes());
        b[0x404..0x408].copy_from_slice(&[0x00, 0x02, 0x02, 0x00]);
        b[0x408..0x410].copy_from_slice(&[0x30, 0x82, 0xFF, 0xFF, 1, 2, 3, 4]);
        let r = check(&b).unwrap();
        assert_eq!(r.state, State::Unreadable);
        assert!(
            r.signatures[0]
                .detail
                .as_deref()
                .unwrap()
                .starts_with("PKCS#7"),
            "{r:?}"
        );
        assert!(check(b"MZ").is_err());
    }
}
