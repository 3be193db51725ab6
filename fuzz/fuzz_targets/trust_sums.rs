//! Fuzzes the checksum-list parsers (GNU, BSD/`--tag`, Fedora CHECKSUM,
//! single-hash files, with every file-name hint; Debian Release files). Run with
//! `cargo +nightly fuzz run trust_sums` from the repository root.

#![no_main]

use bootstick::hash::HashAlgorithm;
use bootstick::trust::sums;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for hint in [
        None,
        Some(HashAlgorithm::Sha256),
        Some(HashAlgorithm::Sha512),
        Some(HashAlgorithm::Blake2b512),
    ] {
        let parsed = sums::parse(&text, hint);
        for e in &parsed.entries {
            // Every entry's digest fits each algorithm it may be.
            assert!(e.candidates.iter().all(|a| a.digest_len() == e.digest.len()));
            let _ = e.names("x.iso");
        }
    }
    // Debian Release/InRelease hash fields.
    for e in &sums::parse_release(&text).entries {
        assert_eq!(e.candidates[0].digest_len(), e.digest.len());
    }
});
