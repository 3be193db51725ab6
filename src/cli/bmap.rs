//! `--bmap FILE` / `--no-bmap` of `write` and `compare`, and the summary
//! line of a write through a block map (docs/cli.md, "Block maps").

use std::path::PathBuf;

use super::render::human_bytes;
use bootstick::job::{BmapChoice, JobBmap};

#[derive(Debug, clap::Args)]
pub struct BmapArgs {
    /// Write only the blocks this bmap (bmaptool's block map) maps, each
    /// checked against its checksum. Without it, IMAGE.bmap (or the name
    /// with its extensions replaced by .bmap: x.img.xz → x.img.bmap,
    /// x.bmap) beside the image is used when it exists.
    #[arg(long, value_name = "FILE")]
    pub bmap: Option<PathBuf>,
    /// Ignore a bmap found beside the image: write the whole image.
    #[arg(long, conflicts_with = "bmap")]
    pub no_bmap: bool,
}

impl BmapArgs {
    pub fn choice(&self) -> BmapChoice {
        match (&self.bmap, self.no_bmap) {
            (Some(p), _) => BmapChoice::File(p.clone()),
            (None, true) => BmapChoice::Ignore,
            (None, false) => BmapChoice::Discover,
        }
    }
}

/// What a write through `b` skipped, for the summary.
pub fn line(b: &JobBmap) -> String {
    let m = &b.bmap;
    let mapped = m.mapped_bytes();
    let skipped = m.image_size - mapped;
    format!(
        "\nBlock map {}{}: {} of {} mapped and written ({} ranges{}); {} ({:.0}%) skipped, left as the stick had them.",
        b.path.display(),
        if b.discovered { " (found beside the image)" } else { "" },
        human_bytes(mapped),
        human_bytes(m.image_size),
        m.ranges.len(),
        match (m.checked_ranges(), m.checksum) {
            (0, _) | (_, None) => ", no checksums".to_string(),
            (n, Some(a)) => format!(", {n} checked by {a}"),
        },
        human_bytes(skipped),
        if m.image_size == 0 { 0.0 } else { skipped as f64 * 100.0 / m.image_size as f64 },
    )
}
