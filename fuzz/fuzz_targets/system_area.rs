//! Fuzzes the system-area readers: MBR and the EBR chains of its extended
//! entries, GPT (512/2048/4096-byte blocks), Apple partition map, the
//! flattened partition list, and the FAT reading of every ESP found. The input
//! is the image itself: everything these readers look at lies in its first few
//! KiB (an extended partition starting at LBA 1..8 puts its EBRs there too),
//! which a fuzzer reaches. Run with
//! `cargo +nightly fuzz run system_area` (see docs/formats.md).

#![no_main]

use bootstick::image::{eltorito, partitions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let img = data.to_vec();
    let Ok(area) = partitions::read_system_area(&img) else {
        return;
    };
    if let Some(mbr) = &area.mbr {
        // The chain walk is bounded, numbers from 5 without gaps, and never
        // reads an EBR twice.
        assert!(mbr.logical.len() <= partitions::MAX_EBRS);
        let mut ebrs = Vec::new();
        for (i, e) in mbr.logical.iter().enumerate() {
            assert_eq!(e.index, 5 + i as u32);
            assert!(!ebrs.contains(&e.ebr_lba));
            ebrs.push(e.ebr_lba);
        }
    }
    for p in area.partitions(img.len() as u64) {
        assert!(p.offset + p.len <= img.len() as u64);
        if p.esp {
            let _ = eltorito::efi_loaders(&img, p.offset, p.len);
        }
    }
});
