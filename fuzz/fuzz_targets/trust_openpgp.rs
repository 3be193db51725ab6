//! Fuzzes OpenPGP input as bootstick reads it: armor and binary detached
//! signatures, clearsigned files, and public keys/keyrings (parsed and
//! examined: self-signatures, subkey bindings). Run with
//! `cargo +nightly fuzz run trust_openpgp` from the repository root.

#![no_main]

use bootstick::trust::openpgp;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = openpgp::looks_like_openpgp(data);
    let _ = openpgp::parse_detached(data);
    let _ = openpgp::parse_clearsigned(&String::from_utf8_lossy(data));
    let _ = openpgp::Keyring::from_files(&[(std::path::PathBuf::from("fuzz"), data.to_vec())]);
});
