//! `bootstick mount IMAGE DIR [--fs KIND]` and `bootstick umount DIR`: the
//! image's file tree as a read-only FUSE mount, in the foreground, and
//! unmounting it (the library's `mount` module does the work).

use super::exit::Failure;
use super::fs_choice::{open_image, printable, FsChoice};
use super::signals::say;
use bootstick::events::Event;
use bootstick::mount::{self, Ended, Problem};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The image (ISO 9660, UDF).
    pub image: PathBuf,
    /// The mount point: an existing directory.
    pub dir: PathBuf,
    /// Read this file tree instead of the preferred one (udf > rock-ridge > joliet > iso9660).
    #[arg(long, value_enum)]
    pub fs: Option<FsChoice>,
}

#[derive(Debug, clap::Args)]
pub struct UmountArgs {
    /// A directory on which `bootstick mount` mounted an image.
    pub dir: PathBuf,
}

pub fn run(args: Args) -> Result<(), Failure> {
    let (src, tree) = open_image(&args.image, args.fs)?;
    // From here on a signal only cancels the token, which unmounts: the
    // process must not exit while the mount exists.
    super::signals::cooperate();
    let cancel = super::signals::token();
    let observer = Arc::new(|e: &Event| {
        if let Event::Warning(w) = e {
            say(&format!("bootstick: warning: {}", printable(w)));
        }
    });
    let (mounted, problems) = mount::mount(mount::Mount {
        src,
        tree: &*tree,
        dir: &args.dir,
        name: args.image.display().to_string(),
        observer,
    })?;
    for p in &problems {
        say(&match p {
            Problem::Hidden { path, error } => {
                format!("bootstick: warning: hiding {}: {error}", printable(path))
            }
            Problem::Duplicate { path } => format!(
                "bootstick: warning: hiding {}: a second entry with this name",
                printable(path)
            ),
            Problem::Unreadable { path, error } => format!(
                "bootstick: warning: {} cannot be read (EIO): {}",
                printable(path),
                bootstick::error_chain(error)
            ),
        });
    }
    say(&format!(
        "bootstick: mounted the {} tree of {} on {} ({} entries, read-only); Ctrl-C or `bootstick umount {}` unmounts",
        tree.kind(),
        args.image.display(),
        args.dir.display(),
        mounted.inodes - 1,
        args.dir.display()
    ));
    match mounted.wait(&cancel)? {
        Ended::Unmounted => {
            say(&format!("bootstick: {} was unmounted", args.dir.display()));
            Ok(())
        }
        Ended::Cancelled => Err(Failure::interrupted(
            cancel.signal(),
            None,
            anyhow::anyhow!("unmounted {}", args.dir.display()),
        )),
    }
}

pub fn run_umount(args: UmountArgs) -> Result<(), Failure> {
    Ok(mount::unmount(&args.dir)?)
}
