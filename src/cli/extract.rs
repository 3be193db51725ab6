//! `bootstick extract IMAGE DIR [--fs KIND]`: copy an image's file tree into
//! a new (or empty) host directory, streaming file bytes with bounded memory.
//!
//! Nothing may land outside DIR, whatever the image says:
//! - every image name goes through `tree::safe_component` (no `..`, `/`,
//!   NUL, empty); an unsafe entry is skipped with a warning, with everything
//!   below it;
//! - DIR must be empty, and files are created with `O_EXCL` and directories
//!   with `mkdir`, so nothing that already exists is followed or overwritten
//!   (two image entries with the same name: the second is skipped);
//! - all-zero 1 MiB blocks are left as holes (sparse output files);
//! - symbolic links are created last, so no file is ever written through
//!   one, and only when their target — resolved through the links already
//!   made, as the kernel would — stays inside DIR; the others are skipped
//!   (or removed again) with a warning.

use super::exit::{Exit, Failure};
use super::fs_choice::{open_image, printable, FsChoice};
use bootstick::image::tree::{safe_component, walk, FileReader};
use bootstick::image::{Error, NodeKind};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Component, Path, PathBuf};

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

/// Copy buffer: large enough for efficient I/O, small enough to not matter.
const BUF: usize = 1 << 20;

/// Compared against with `==` (a `memcmp`) to find all-zero blocks.
static ZEROS: [u8; BUF] = [0; BUF];

/// How many symlinks one resolution may expand (Linux's MAXSYMLINKS).
const MAX_LINK_HOPS: usize = 40;

enum Failed {
    Image(Error),
    Host(std::io::Error, PathBuf),
    /// A termination signal arrived (cli::signals).
    Interrupted,
}

impl From<Error> for Failed {
    fn from(e: Error) -> Self {
        Failed::Image(e)
    }
}

fn warn(msg: String) {
    eprintln!("bootstick: warning: {msg}");
}

pub fn run(args: Args) -> Result<(), Failure> {
    let (src, tree) = open_image(&args.image, args.fs)?;
    let host = |e: std::io::Error, p: &Path| {
        Failure::new(
            Exit::WriteFailed,
            anyhow::Error::new(e).context(format!("cannot write {}", p.display())),
        )
    };
    match std::fs::read_dir(&args.dir) {
        Ok(mut it) => {
            if it.next().is_some() {
                return Err(Failure::new(
                    Exit::Refused,
                    anyhow::anyhow!(
                        "{} is not empty; extract into a new or empty directory so nothing existing is overwritten or followed",
                        args.dir.display()
                    ),
                ));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(&args.dir).map_err(|e| host(e, &args.dir))?;
        }
        Err(e) => return Err(host(e, &args.dir)),
    }
    let root = std::fs::canonicalize(&args.dir).map_err(|e| host(e, &args.dir))?;
    // From here on a signal stops the copy between blocks.
    super::signals::cooperate();
    let cancel = super::signals::token();

    let mut files = 0u64;
    let mut dirs = 0u64;
    let mut skipped = 0u64;
    let mut links: Vec<(String, String)> = Vec::new();
    let mut buf = vec![0u8; BUF];
    let result = walk::<Failed>(&*tree, tree.root(), |v| {
        if cancel.is_cancelled() {
            return Err(Failed::Interrupted);
        }
        if let Err(e) = safe_component(&v.entry.name) {
            warn(format!("skipping {}: {e}", printable(v.path)));
            skipped += 1;
            return Ok(false);
        }
        let dest = root.join(v.path);
        match &v.entry.kind {
            NodeKind::Dir => match std::fs::create_dir(&dest) {
                Ok(()) => {
                    dirs += 1;
                    Ok(true)
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    warn(format!(
                        "skipping {}: a second entry with this name",
                        printable(v.path)
                    ));
                    skipped += 1;
                    Ok(false)
                }
                Err(e) => Err(Failed::Host(e, dest)),
            },
            NodeKind::File => {
                let data = tree.file_data(v.entry.node)?;
                let mut out = match std::fs::File::create_new(&dest) {
                    Ok(f) => f,
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        warn(format!(
                            "skipping {}: a second entry with this name",
                            printable(v.path)
                        ));
                        skipped += 1;
                        return Ok(false);
                    }
                    Err(e) => return Err(Failed::Host(e, dest)),
                };
                let mut reader = FileReader::new(src.clone(), data);
                loop {
                    if cancel.is_cancelled() {
                        return Err(Failed::Interrupted);
                    }
                    let n = match reader.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) => {
                            return Err(match e.downcast::<Error>() {
                                Ok(img) => Failed::Image(img),
                                Err(e) => Failed::Host(e, dest),
                            })
                        }
                    };
                    // All-zero blocks become holes: a sparse 6 GiB image file
                    // extracts in seconds and takes no disk for its zeros.
                    let res = if buf[..n] == ZEROS[..n] {
                        out.seek(SeekFrom::Current(n as i64)).map(drop)
                    } else {
                        out.write_all(&buf[..n])
                    };
                    res.map_err(|e| Failed::Host(e, dest.clone()))?;
                }
                // A trailing hole has no bytes written: set the length.
                let end = out
                    .stream_position()
                    .map_err(|e| Failed::Host(e, dest.clone()))?;
                out.set_len(end)
                    .map_err(|e| Failed::Host(e, dest.clone()))?;
                files += 1;
                Ok(false)
            }
            NodeKind::Symlink(target) => {
                links.push((v.path.to_owned(), target.clone()));
                Ok(false)
            }
        }
    });
    match result {
        Ok(()) => {}
        Err(Failed::Image(e)) => {
            return Err(Failure::new(
                Exit::BadInput,
                anyhow::Error::new(e).context(format!("cannot read {}", args.image.display())),
            ))
        }
        Err(Failed::Host(e, p)) => return Err(host(e, &p)),
        Err(Failed::Interrupted) => {
            return Err(Failure::interrupted(
                cancel.signal(),
                None,
                anyhow::anyhow!(
                    "{} holds a partial extraction ({files} files, {dirs} directories so far): remove it and extract again",
                    args.dir.display()
                ),
            ))
        }
    }

    // Symlinks last: create those whose target stays inside DIR, then check
    // them all again through each other until none escapes (a link to "."
    // makes another's "x/.." climb out, and removing a link can change where
    // others lead).
    let mut made: Vec<(String, String)> = Vec::new();
    for (path, target) in links {
        let link = root.join(&path);
        let parent = link.parent().unwrap_or(&root).to_owned();
        if !stays_inside(&root, &parent, Path::new(&target)) {
            warn(format!(
                "skipping symlink {} -> {}: its target leaves {}",
                printable(&path),
                printable(&target),
                args.dir.display()
            ));
            skipped += 1;
            continue;
        }
        match std::os::unix::fs::symlink(&target, &link) {
            Ok(()) => made.push((path, target)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                warn(format!(
                    "skipping {}: a second entry with this name",
                    printable(&path)
                ));
                skipped += 1;
            }
            Err(e) => return Err(host(e, &link)),
        }
    }
    loop {
        let before = made.len();
        let mut keep = Vec::new();
        for (path, target) in made {
            let link = root.join(&path);
            let parent = link.parent().unwrap_or(&root).to_owned();
            if stays_inside(&root, &parent, Path::new(&target)) {
                keep.push((path, target));
            } else {
                std::fs::remove_file(&link).map_err(|e| host(e, &link))?;
                warn(format!(
                    "removed symlink {} -> {}: through other links its target leaves {}",
                    printable(&path),
                    printable(&target),
                    args.dir.display()
                ));
                skipped += 1;
            }
        }
        made = keep;
        if made.len() == before {
            break;
        }
    }
    eprintln!(
        "bootstick: extracted {files} files, {dirs} directories and {} symlinks from the {} tree into {}{}",
        made.len(),
        tree.kind(),
        args.dir.display(),
        if skipped > 0 {
            format!(" ({skipped} entries skipped, see the warnings above)")
        } else {
            String::new()
        }
    );
    Ok(())
}

/// Whether `target`, read as a symlink in directory `from` (inside `root`),
/// resolves inside `root`: components are followed one by one as the kernel
/// would, expanding symlinks that exist on the host (at most 40), with a
/// missing component taken as a plain directory. Absolute targets never stay
/// inside (they are resolved against the host's `/`, not DIR).
fn stays_inside(root: &Path, from: &Path, target: &Path) -> bool {
    let Ok(rel) = from.strip_prefix(root) else {
        return false;
    };
    // The current position as components below root.
    let mut cur: Vec<std::ffi::OsString> = rel.iter().map(|c| c.to_owned()).collect();
    let mut pending: Vec<std::ffi::OsString> = Vec::new();
    let mut hops = 0;
    if !push_target(target, &mut pending) {
        return false;
    }
    while let Some(comp) = pending.pop() {
        if comp == ".." {
            if cur.pop().is_none() {
                return false;
            }
            continue;
        }
        let mut here: PathBuf = root.to_owned();
        here.extend(&cur);
        here.push(&comp);
        match std::fs::read_link(&here) {
            Ok(next) => {
                hops += 1;
                if hops > MAX_LINK_HOPS || !push_target(&next, &mut pending) {
                    return false;
                }
            }
            Err(_) => cur.push(comp),
        }
    }
    true
}

/// Pushes the components of a relative link target onto `pending` (reversed,
/// so they pop in order). False for absolute targets.
fn push_target(target: &Path, pending: &mut Vec<std::ffi::OsString>) -> bool {
    let mut comps = Vec::new();
    for c in target.components() {
        match c {
            Component::Normal(n) => comps.push(n.to_owned()),
            Component::ParentDir => comps.push("..".into()),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    pending.extend(comps.into_iter().rev());
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn link_resolution_stays_inside() {
        let d = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(d.path()).unwrap();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        assert!(stays_inside(&root, &root, Path::new("a/b")));
        assert!(stays_inside(
            &root,
            &root.join("a"),
            Path::new("../missing/x")
        ));
        assert!(!stays_inside(&root, &root, Path::new("..")));
        assert!(!stays_inside(
            &root,
            &root.join("a/b"),
            Path::new("../../../etc")
        ));
        assert!(!stays_inside(&root, &root, Path::new("/etc/passwd")));
        // A link to "." makes "dot/.." climb out of root.
        symlink(".", root.join("dot")).unwrap();
        assert!(stays_inside(&root, &root, Path::new("dot")));
        assert!(!stays_inside(&root, &root, Path::new("dot/..")));
        // A link loop is refused, not followed forever.
        symlink("loop", root.join("loop")).unwrap();
        assert!(!stays_inside(&root, &root, Path::new("loop/x")));
    }
}
