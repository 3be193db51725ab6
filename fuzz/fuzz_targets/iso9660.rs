//! Fuzzes the ISO 9660 reader (Rock Ridge, Joliet and plain views): open,
//! walk with loop/depth checks, look paths up, read file bytes.
//!
//! The input is an image from sector 16 (byte 32768) on; the zeros before it
//! are added here. Seeds: `fuzz/make-iso-seeds.sh` (genisoimage and xorriso
//! images, trimmed). Run from `fuzz/` with
//! `cargo +nightly fuzz run iso9660 corpus/iso9660` (see docs/testing.md).

#![no_main]

use bootstick_testkit::iso_fuzz;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = iso_fuzz::exercise(data);
});
