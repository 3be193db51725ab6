//! Fuzzes the bmap parser (`image::bmap::parse`: bmaptool's XML, 1.x and
//! 2.x, every consistency rule and the file's own checksum) and, for a
//! bmap it accepts, the plan and the streaming range check over an image
//! of zeros. Run with `cargo +nightly fuzz run bmap` (seeds:
//! `fuzz/make-seeds.sh`, from `bmaptool create`).

#![no_main]

use bootstick::image::bmap;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(b) = bmap::parse(data) else { return };
    // What parse accepted is consistent: ranges inside the image, sorted.
    let plan = b.plan();
    assert!(plan.end() <= b.image_size);
    assert_eq!(plan.bytes_to_write(), b.mapped_bytes());
    // Checking the mapped bytes of an image of zeros, bounded.
    let mut c = b.checker();
    let zeros = vec![0u8; 1 << 16];
    for r in b.ranges.iter().take(64) {
        let bytes = b.bytes(r);
        let mut at = bytes.start;
        while at < bytes.end.min(bytes.start + (1 << 20)) {
            let n = (bytes.end - at).min(zeros.len() as u64);
            if c.feed(at, &zeros[..n as usize]).is_err() {
                return;
            }
            at += n;
        }
        if at < bytes.end {
            return;
        }
    }
});
