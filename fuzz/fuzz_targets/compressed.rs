//! Fuzzes what bootstick reads of a compressed image before and while
//! decoding it: the magic-byte detection, the xz index walk (stream
//! padding, footers, indexes, headers from the end of the file), the zstd
//! frame and block-header walk, and a bounded decode through each backend
//! with the decoder's error typing. Run with
//! `cargo +nightly fuzz run compressed` (seeds: `fuzz/make-seeds.sh`).

#![no_main]

use std::sync::Arc;

use bootstick::image::compressed::{self, Compressed, Format};
use bootstick::image::ByteSource;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = compressed::parse_xz_index(data);
    let _ = compressed::parse_zstd_frame_header(data);
    let src: Arc<dyn ByteSource> = Arc::new(data.to_vec());
    for f in [Format::Xz, Format::Zstd] {
        let _ = compressed::declared_size(&*src, f);
    }
    let Ok(Some(c)) = Compressed::probe(src) else {
        return;
    };
    let Ok(mut d) = c.decoder() else { return };
    // Bounded: a decompression bomb stops here, not in the fuzzer's RSS.
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
        assert_eq!(d.position(), out);
    }
});
