//! The body of the ISO 9660 fuzz target (`fuzz/fuzz_targets/iso9660.rs`),
//! shared with `tests/it/iso.rs` so the normal suite runs exactly what the fuzzer
//! runs.
//!
//! Input encoding: the bytes of an image from sector 16 on (byte 32768). The
//! system area before it is zeros for the ISO 9660 reader anyway, and leaving
//! it out keeps seeds and mutations on the structures that matter.

use bootstick::image::open::open_tree_as;
use bootstick::image::tree::{lookup, safe_component, walk, FileReader};
use bootstick::image::{ByteSource, Error, FsKind, NodeKind};
use std::io::Read;
use std::sync::Arc;

/// Where the input starts in the image.
pub const INPUT_OFFSET: usize = 32768;

/// The most file bytes read per input, so a fuzz iteration stays fast.
const READ_BUDGET: u64 = 1 << 20;

/// Builds the image an input stands for.
pub fn image(data: &[u8]) -> Vec<u8> {
    let mut img = vec![0u8; INPUT_OFFSET];
    img.extend_from_slice(data);
    img
}

/// Opens every ISO 9660 view of the input, walks it, checks each name and
/// looks each path up again, and reads file bytes (up to a budget). Returns
/// how many entries were seen; any failure must be a typed error.
pub fn exercise(data: &[u8]) -> Result<usize, Error> {
    let src: Arc<dyn ByteSource> = Arc::new(image(data));
    let mut seen = 0;
    let mut budget = READ_BUDGET;
    let mut first_error = None;
    for kind in [FsKind::RockRidge, FsKind::Joliet, FsKind::Iso9660] {
        let tree = match open_tree_as(src.clone(), kind) {
            Ok(t) => t,
            Err(e) => {
                first_error.get_or_insert(e);
                continue;
            }
        };
        let mut files = Vec::new();
        let walked = walk::<Error>(&*tree, tree.root(), |v| {
            seen += 1;
            let _ = safe_component(&v.entry.name);
            if v.entry.kind == NodeKind::File {
                files.push((v.path.to_owned(), v.entry.node, v.entry.size));
            }
            Ok(true)
        });
        if let Err(e) = walked {
            first_error.get_or_insert(e);
        }
        for (path, node, size) in files {
            // Path lookup must not panic either (its answer may differ from
            // the walk's when a name holds a '/' or repeats in a directory).
            let _ = lookup(&*tree, &path);
            let data = match tree.file_data(node) {
                Ok(d) => d,
                Err(e) => {
                    first_error.get_or_insert(e);
                    continue;
                }
            };
            assert_eq!(data.size, size, "{path}: listing and data disagree");
            assert_eq!(
                data.runs.iter().map(|r| r.len()).sum::<u64>(),
                data.size,
                "{path}: runs do not add up"
            );
            let take = data.size.min(budget);
            budget -= take;
            let mut sink = Vec::new();
            if let Err(e) = FileReader::new(src.clone(), data)
                .take(take)
                .read_to_end(&mut sink)
            {
                first_error.get_or_insert(Error::Io {
                    offset: 0,
                    source: e,
                });
            }
        }
    }
    match first_error {
        Some(e) if seen == 0 => Err(e),
        _ => Ok(seen),
    }
}
