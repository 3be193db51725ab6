//! Fuzzes minisign/signify signature and public-key files, and the check of
//! a parsed signature (which must fail, never panic, on forged input). Run
//! with `cargo +nightly fuzz run trust_ed25519` from the repository root.

#![no_main]

use bootstick::trust::ed25519;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ed25519::parse_public_key(data);
    if let Ok(sig) = ed25519::parse_signature(data) {
        let key = ed25519::PublicKey {
            key_id: sig.key_id,
            key: [9; 32],
        };
        let c = ed25519::check(&sig, &[key], true, ed25519::Data::Bytes(data));
        assert_ne!(c.status, bootstick::trust::signature::Status::Good);
    }
});
