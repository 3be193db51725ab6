//! `bootstick extract IMAGE DIR [--fs KIND]`: copy an image's file tree into
//! a new (or empty) host directory. The copy and every containment rule are
//! `bootstick::extract`'s; this prints what was skipped and the summary.

use super::exit::Failure;
use super::fs_choice::{open_image, printable, FsChoice};
use super::render::Renderer;
use bootstick::events::{Event, Observer};
use bootstick::extract::{self, Error, Skipped};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The image (ISO 9660, UDF).
    pub image: PathBuf,
    /// Where to put the files: created if missing, must be empty otherwise.
    pub dir: PathBuf,
    /// Read this file tree instead of the preferred one (udf > rock-ridge > joliet > iso9660).
    #[arg(long, value_enum)]
    pub fs: Option<FsChoice>,
}

pub fn run(args: Args) -> Result<(), Failure> {
    let (src, tree) = open_image(&args.image, args.fs)?;
    // Progress on stderr as `write` shows it: a bar on a terminal, plain
    // lines at a steady pace otherwise; the warnings print above the bar.
    let render = Renderer::new(false);
    let warn = |msg: String| render.event(&Event::Warning(msg));
    // From here on a signal stops the copy between blocks.
    super::signals::cooperate();
    let cancel = super::signals::token();
    let dir = args.dir.display().to_string();
    let mut report = |s: Skipped| match s {
        Skipped::UnsafeName { path, reason } => {
            warn(format!("skipping {}: {reason}", printable(&path)))
        }
        Skipped::Duplicate { path } => warn(format!(
            "skipping {}: a second entry with this name",
            printable(&path)
        )),
        Skipped::LinkLeaves { path, target } => warn(format!(
            "skipping symlink {} -> {}: its target leaves {dir}",
            printable(&path),
            printable(&target),
        )),
        Skipped::LinkRemoved { path, target } => warn(format!(
            "removed symlink {} -> {}: through other links its target leaves {dir}",
            printable(&path),
            printable(&target),
        )),
    };
    let outcome = extract::extract(src, &*tree, &args.dir, &cancel, &render, &mut report);
    render.finish();
    let done = match outcome {
        Ok(done) => done,
        Err(e @ Error::Interrupted { .. }) => {
            return Err(Failure::interrupted(
                cancel.signal(),
                None,
                anyhow::Error::new(e),
            ))
        }
        Err(e) => {
            let code = super::exit::extract_error(&e);
            let e = match e {
                Error::Image(i) => {
                    anyhow::Error::new(i).context(format!("cannot read {}", args.image.display()))
                }
                e => anyhow::Error::new(e),
            };
            return Err(Failure::new(code, e));
        }
    };
    eprintln!(
        "bootstick: extracted {} files, {} directories and {} symlinks from the {} tree into {}{}",
        done.files,
        done.dirs,
        done.links,
        done.tree,
        args.dir.display(),
        if done.skipped > 0 {
            format!(
                " ({} entries skipped, see the warnings above)",
                done.skipped
            )
        } else {
            String::new()
        }
    );
    Ok(())
}
