//! Fuzzes the system-area readers: MBR, GPT (512/2048/4096-byte blocks),
//! Apple partition map, the flattened partition list, and the FAT reading of
//! every ESP found. The input is the image itself: everything these readers
//! look at lies in its first few KiB, which a fuzzer reaches. Run with
//! `cargo +nightly fuzz run system_area` (see docs/formats.md).

#![no_main]

use bootstick::image::{eltorito, partitions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let img = data.to_vec();
    let Ok(area) = partitions::read_system_area(&img) else {
        return;
    };
    for p in area.partitions(img.len() as u64) {
        assert!(p.offset + p.len <= img.len() as u64);
        if p.esp {
            let _ = eltorito::efi_loaders(&img, p.offset, p.len);
        }
    }
});
