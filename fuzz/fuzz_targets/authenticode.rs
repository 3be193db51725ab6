//! Fuzzes the PE header parser and the Authenticode check (the PKCS#7
//! SignedData, `SpcIndirectDataContent` and certificate parsers behind it)
//! on untrusted loader bytes: they must return a report or an error, never
//! panic, loop or allocate without bound. Seeds: real signed and unsigned
//! EFI binaries (`fuzz/make-seeds.sh`). Run with
//! `cargo +nightly fuzz run authenticode`.

#![no_main]

use bootstick::trust::authenticode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(pe) = bootstick::image::pe::Pe::parse(data) {
        let _ = pe.digest_ranges(data.len());
        let _ = pe.certificates(data);
        let _ = pe.section(data, ".sbat");
    }
    let _ = authenticode::check(data);
});
