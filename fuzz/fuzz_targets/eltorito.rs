//! Fuzzes the El Torito reader and the classifier.
//!
//! The boot record sits at block 17 (34 KiB in), beyond what a fuzzer grows
//! inputs to, so the input is placed into a fixed frame: a primary volume
//! descriptor at block 16, a boot record at block 17 pointing at a catalog at
//! block 19, a terminator at block 18; the input is appended from block 19
//! on (so it *is* the catalog and whatever boot images it points at), and its
//! first 4 KiB are also copied over the system area, so partition entries can
//! size boot images too. Inputs of 64 KiB or more are taken as raw images, so
//! real ISOs can seed it. Run with `cargo +nightly fuzz run eltorito`.

#![no_main]

use bootstick::image::eltorito;
use libfuzzer_sys::fuzz_target;

fn image(data: &[u8]) -> Vec<u8> {
    if data.len() >= 64 << 10 {
        return data.to_vec();
    }
    let mut v = vec![0u8; 19 * 2048];
    let vd = |v: &mut Vec<u8>, block: usize, kind: u8| {
        let at = block * 2048;
        v[at] = kind;
        v[at + 1..at + 6].copy_from_slice(b"CD001");
        v[at + 6] = 1;
    };
    vd(&mut v, 16, 1);
    vd(&mut v, 17, 0);
    vd(&mut v, 18, 255);
    let br = 17 * 2048;
    v[br + 7..br + 30].copy_from_slice(b"EL TORITO SPECIFICATION");
    v[br + 71..br + 75].copy_from_slice(&19u32.to_le_bytes());
    let n = data.len().min(4096);
    v[..n].copy_from_slice(&data[..n]);
    v.extend_from_slice(data);
    v
}

fuzz_target!(|data: &[u8]| {
    let img = image(data);
    if let Ok(Some(cat)) = eltorito::read_catalog(&img) {
        assert!(cat.entries.len() <= eltorito::MAX_ENTRIES);
    }
    if let Ok(i) = bootstick::inspect::inspect(&img, None) {
        assert!(!i.decision.reasons.is_empty());
        for b in i.el_torito.iter().flat_map(|e| &e.images) {
            let inside = b.image.offset.saturating_add(b.image.len) <= img.len() as u64;
            assert!(inside || (b.image.len == 0 && b.image.truncated));
        }
    }
});
