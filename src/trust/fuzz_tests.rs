//! No input may make the reference parsers panic: checksum lists, OpenPGP
//! armor and packets, clearsigned text, minisign/signify files, keys. These
//! property tests run in the normal suite; `fuzz/fuzz_targets/trust_*.rs`
//! drive the same entry points under libFuzzer.

use super::{ed25519, openpgp, sums};
use proptest::prelude::*;

/// Feeds `bytes` to every parser; only panics matter.
pub fn exercise(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    for hint in [
        None,
        Some(crate::hash::HashAlgorithm::Sha256),
        Some(crate::hash::HashAlgorithm::Blake2b512),
    ] {
        let s = sums::parse(&text, hint);
        for e in &s.entries {
            let _ = e.names("x.iso");
            assert!(!e.candidates.is_empty());
            assert!(e
                .candidates
                .iter()
                .all(|a| a.digest_len() == e.digest.len()));
        }
    }
    let release = sums::parse_release(&text);
    for e in &release.entries {
        assert_eq!(e.candidates[0].digest_len(), e.digest.len());
    }
    let _ = sums::is_release("x", &text);
    if let Some(sel) = super::matching::select(&release.entries, Some("a/b"), "b") {
        let _ = super::matching::conflicts(&release.entries, &sel.checked);
    }
    // isomd5sum fields read from anything shaped like a PVD.
    let mut head = vec![0u8; 16 * 2048];
    head.extend_from_slice(&[1, b'C', b'D', b'0', b'0', b'1']);
    head.extend_from_slice(&bytes[..bytes.len().min(2042)]);
    head.resize(17 * 2048, b' ');
    if let Some(f) = super::isomd5::parse(&head) {
        let mut c = super::isomd5::Checker::new(f);
        c.update(&head);
        let _ = c.finish();
    }
    let _ = openpgp::looks_like_openpgp(bytes);
    let _ = openpgp::parse_detached(bytes);
    let _ = openpgp::parse_clearsigned(&text);
    let _ = openpgp::Keyring::from_files(&[(std::path::PathBuf::from("fuzz"), bytes.to_vec())]);
    if let Ok(sig) = ed25519::parse_signature(bytes) {
        let key = ed25519::PublicKey {
            key_id: sig.key_id,
            key: [7; 32],
        };
        let _ = ed25519::check(&sig, &[key], true, ed25519::Data::Bytes(bytes));
    }
    let _ = ed25519::parse_public_key(bytes);
}

const ARMOR_HEADS: [&str; 4] = [
    "-----BEGIN PGP SIGNATURE-----\n\n",
    "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n",
    "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n",
    "untrusted comment: x\n",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        exercise(&bytes);
    }

    #[test]
    fn armored_shapes(head in 0usize..4, body in "[A-Za-z0-9+/=\n -]{0,600}", tail in "(-----END PGP SIGNATURE-----\n)?") {
        exercise(format!("{}{body}{tail}", ARMOR_HEADS[head]).as_bytes());
    }

    #[test]
    fn packet_shapes(tag in prop_oneof![Just(0x88u8), Just(0x89), Just(0xc2), Just(0x99), Just(0xc6)], rest in proptest::collection::vec(any::<u8>(), 0..1024)) {
        let mut b = vec![tag];
        b.extend(rest);
        exercise(&b);
    }

    #[test]
    fn sums_lines(lines in proptest::collection::vec("(\\\\)?[0-9a-fA-F]{0,130}( |  | \\*|\t)?[ -~]{0,20}|(SHA256|SHA512|BLAKE2b|MD5) ?\\([ -~]{0,10}\\) ?= ?[0-9a-f]{0,130}|#[ -~]{0,10}", 0..20)) {
        exercise(lines.join("\n").as_bytes());
    }
}
