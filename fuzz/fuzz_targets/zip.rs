//! Fuzzes what bootstick reads of a zip archive before writing any of it:
//! the end of central directory, the central directory and local headers
//! (through the `zip` crate), the judging of every entry by its first
//! decoded bytes and its name, the choice of the one image (or the
//! refusal: none, several, a named entry missing), and a bounded decode of
//! the chosen member with its CRC-32 check. Run with
//! `cargo +nightly fuzz run zip` (seeds: `fuzz/make-seeds.sh`, made by
//! `zip` and `7z`).

#![no_main]

use std::sync::Arc;

use bootstick::image::compressed::Compressed;
use bootstick::image::{archive, ByteSource};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = archive::image_kind(data);
    let src: Arc<dyn ByteSource> = Arc::new(data.to_vec());
    for wanted in [Some("disk.img"), Some("vendor/disk.img")] {
        if let Ok(member) = archive::select(src.clone(), wanted) {
            assert!(member.chosen().name.ends_with("disk.img"));
        }
    }
    let Ok(Some(c)) = Compressed::probe(src) else {
        return;
    };
    let Ok(mut d) = c.decoder() else { return };
    // Bounded: a member claiming terabytes stops here.
    let mut buf = vec![0u8; 1 << 16];
    let mut out = 0u64;
    while out < 16 << 20 {
        match d.read_full(&mut buf) {
            Ok(0) => {
                let _ = c.check_len(out);
                break;
            }
            Ok(n) => out += n as u64,
            Err(_) => break,
        }
    }
});
