//! Fuzzes the UDF reader: open, list every directory, resolve every file.
//!
//! A UDF volume needs its anchor at sector 256 (512 KiB in), far beyond what
//! a fuzzer grows inputs to, so short inputs are *edits* of one of four valid
//! hand-built images (first byte: which image; then 5-byte records: a 4-byte
//! index into the images' structures and the byte to write there). Inputs of
//! 64 KiB or more are taken as raw images. Run with
//! `cargo +nightly fuzz run udf` from the repository root (see docs/formats.md).

#![no_main]

use std::sync::Arc;

use bootstick::image::udf::Udf;
use bootstick::image::{ByteSource, FileTree, NodeKind};
use bootstick_testkit::udf_build;
use libfuzzer_sys::fuzz_target;

fn image(data: &[u8]) -> Vec<u8> {
    if data.len() >= 64 << 10 {
        return data.to_vec();
    }
    let Some((&form, edits)) = data.split_first() else {
        return udf_build::fuzz_base(0);
    };
    let mut img = udf_build::fuzz_base(form);
    for e in edits.chunks_exact(5) {
        let at = u32::from_le_bytes([e[0], e[1], e[2], e[3]]) as usize;
        img[udf_build::mutation_target(at)] = e[4];
    }
    img
}

fuzz_target!(|data: &[u8]| {
    let src: Arc<dyn ByteSource> = Arc::new(image(data));
    let Ok(Some(udf)) = Udf::open(src) else { return };
    let mut stack = vec![udf.root()];
    let mut budget = 10_000;
    while let Some(dir) = stack.pop() {
        let Ok(entries) = udf.read_dir(dir) else { continue };
        for e in entries {
            budget -= 1;
            if budget == 0 {
                return;
            }
            match e.kind {
                NodeKind::Dir => stack.push(e.node),
                NodeKind::File => {
                    if let Ok(d) = udf.file_data(e.node) {
                        assert_eq!(d.runs.iter().map(|r| r.len()).sum::<u64>(), d.size);
                    }
                }
                NodeKind::Symlink(_) => {}
            }
        }
    }
});
