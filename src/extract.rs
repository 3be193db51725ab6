//! Copying an image's file tree into a host directory, streaming file bytes
//! with bounded memory, so that nothing lands outside that directory
//! whatever the image says (and whatever another process does to the
//! directory meanwhile).
//!
//! - Every image name goes through [`safe_component`] (no `..`, `/`, NUL,
//!   empty); an unsafe entry is skipped, with everything below it.
//! - The directory must be empty. It is opened once; every file and
//!   directory is created relative to it, through a parent opened with
//!   `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`: the kernel refuses a
//!   parent path that climbs out or passes through any symlink, so a link
//!   planted by another process between two entries redirects nothing.
//!   Files are created `O_EXCL | O_NOFOLLOW` and directories with `mkdirat`,
//!   so nothing that exists is followed or overwritten (two image entries
//!   with the same name: the second is skipped).
//! - All-zero 1 MiB blocks are left as holes (sparse output files).
//! - Symbolic links are created last, so no file is ever written through
//!   one, and kept only when their target stays inside the directory: by the
//!   kernel's own resolution (`openat2(RESOLVE_BENEATH)` of the link refuses
//!   one that climbs out) and, for targets that do not exist (yet), by
//!   following the components as the kernel would, a missing one taken as a
//!   directory that may be created later. Each link is checked again after
//!   all are made, until none escapes (a link to "." makes another's "x/.."
//!   climb out).

use crate::cancel::Cancel;
use crate::events::{Event, Observer, Phase};
use crate::image::tree::{safe_component, walk, FileReader};
use crate::image::{ByteSource, Error as ImageError, FileTree, FsKind, NodeKind};
use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// Copy buffer: large enough for efficient I/O, small enough to not matter.
const BUF: usize = 1 << 20;

/// Compared against with `==` (a `memcmp`) to find all-zero blocks.
static ZEROS: [u8; BUF] = [0; BUF];

/// How many symlinks one resolution may expand (Linux's MAXSYMLINKS).
const MAX_LINK_HOPS: usize = 40;

/// Why an extraction stopped. Whatever was extracted before stays in place.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "{} is not empty; extract into a new or empty directory so nothing existing is overwritten or followed",
        dir.display()
    )]
    NotEmpty { dir: PathBuf },
    #[error("cannot read the image")]
    Image(#[source] ImageError),
    #[error("cannot write {}", path.display())]
    Host {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The cancellation token fired; `dir` holds what was extracted so far.
    #[error(
        "{} holds a partial extraction ({files} files, {dirs} directories so far): remove it and extract again",
        dir.display()
    )]
    Interrupted { dir: PathBuf, files: u64, dirs: u64 },
}

/// An entry left out, reported as it happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skipped {
    /// The name is not a safe path component (and nothing below it is
    /// extracted).
    UnsafeName { path: String, reason: String },
    /// A second entry with a name already extracted.
    Duplicate { path: String },
    /// A symlink whose target leaves the directory.
    LinkLeaves { path: String, target: String },
    /// A symlink made, then removed: through other links its target leaves
    /// the directory.
    LinkRemoved { path: String, target: String },
}

/// What was extracted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub tree: FsKind,
    pub files: u64,
    pub dirs: u64,
    pub links: u64,
    pub skipped: u64,
}

/// Extracts `tree` (read from `src`) into `dir`, created if missing and
/// required to be empty otherwise. `skipped` hears of every entry left out;
/// `observer` sees one `extract` phase whose total is the bytes of every
/// file with a safe name (a duplicate found while copying is not counted,
/// so the last progress may stop short of the total).
pub fn extract(
    src: Arc<dyn ByteSource>,
    tree: &dyn FileTree,
    dir: &Path,
    cancel: &Cancel,
    observer: &dyn Observer,
    skipped: &mut dyn FnMut(Skipped),
) -> Result<Summary, Error> {
    let host = |path: &Path| {
        let path = path.to_owned();
        move |source: std::io::Error| Error::Host { path, source }
    };
    match std::fs::read_dir(dir) {
        Ok(mut it) => {
            if it.next().is_some() {
                return Err(Error::NotEmpty {
                    dir: dir.to_owned(),
                });
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(host(dir))?;
        }
        Err(e) => return Err(host(dir)(e)),
    }
    let root_path = std::fs::canonicalize(dir).map_err(host(dir))?;
    let root = Root {
        fd: rustix::fs::open(
            &root_path,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| host(dir)(e.into()))?,
        path: root_path,
        parent: None,
    };
    let total = file_bytes(tree)?;
    observer.event(&Event::PhaseStarted {
        phase: Phase::Extract,
        total,
    });
    let summary = Extraction {
        src,
        root,
        cancel,
        skipped,
        dir,
        observer,
        total,
        copied: 0,
        count: Summary {
            tree: tree.kind(),
            files: 0,
            dirs: 0,
            links: 0,
            skipped: 0,
        },
    }
    .run(tree)?;
    observer.event(&Event::PhaseFinished {
        phase: Phase::Extract,
    });
    Ok(summary)
}

/// The bytes of every file the extraction will copy: the metadata walk
/// alone, before anything is created, so the progress has a total.
fn file_bytes(tree: &dyn FileTree) -> Result<u64, Error> {
    let mut total = 0u64;
    walk::<ImageError>(tree, tree.root(), |v| {
        if safe_component(&v.entry.name).is_err() {
            return Ok(false);
        }
        Ok(match v.entry.kind {
            NodeKind::Dir => true,
            NodeKind::File => {
                total = total.saturating_add(v.entry.size);
                false
            }
            NodeKind::Symlink(_) => false,
        })
    })
    .map_err(Error::Image)?;
    Ok(total)
}

/// The directory extracted into: its descriptor, its canonical path (for
/// messages and the dangling-link check) and the last parent opened.
struct Root {
    fd: OwnedFd,
    path: PathBuf,
    /// The parent directory of the previous entry (depth-first order makes
    /// consecutive entries share it).
    parent: Option<(String, OwnedFd)>,
}

impl Root {
    /// The directory `rel` (relative, `/`-joined, possibly empty), opened
    /// beneath the root without following any symlink.
    fn dir(&mut self, rel: &str) -> Result<std::os::fd::BorrowedFd<'_>, Errno> {
        if rel.is_empty() {
            return Ok(self.fd.as_fd());
        }
        if self.parent.as_ref().is_none_or(|(p, _)| p != rel) {
            let fd = rustix::fs::openat2(
                &self.fd,
                rel,
                OFlags::DIRECTORY | OFlags::PATH | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
            )?;
            self.parent = Some((rel.to_owned(), fd));
        }
        Ok(self.parent.as_ref().expect("just set").1.as_fd())
    }
}

/// Splits `a/b/c` into (`a/b`, `c`).
fn split(path: &str) -> (&str, &str) {
    match path.rsplit_once('/') {
        Some((parent, name)) => (parent, name),
        None => ("", path),
    }
}

struct Extraction<'a> {
    src: Arc<dyn ByteSource>,
    root: Root,
    cancel: &'a Cancel,
    skipped: &'a mut dyn FnMut(Skipped),
    dir: &'a Path,
    observer: &'a dyn Observer,
    /// The bytes of all files to copy, and those copied so far.
    total: u64,
    copied: u64,
    count: Summary,
}

/// How the walk stopped early.
enum Stop {
    Image(ImageError),
    Host(std::io::Error, PathBuf),
    Interrupted,
}

impl From<ImageError> for Stop {
    fn from(e: ImageError) -> Self {
        Stop::Image(e)
    }
}

impl Extraction<'_> {
    fn skip(&mut self, s: Skipped) {
        self.count.skipped += 1;
        (self.skipped)(s);
    }

    fn run(mut self, tree: &dyn FileTree) -> Result<Summary, Error> {
        let mut links: Vec<(String, String)> = Vec::new();
        let mut buf = vec![0u8; BUF];
        let result = walk::<Stop>(tree, tree.root(), |v| {
            if self.cancel.is_cancelled() {
                return Err(Stop::Interrupted);
            }
            if let Err(e) = safe_component(&v.entry.name) {
                self.skip(Skipped::UnsafeName {
                    path: v.path.to_owned(),
                    reason: e.to_string(),
                });
                return Ok(false);
            }
            let dest = self.root.path.join(v.path);
            let (parent, name) = split(v.path);
            match &v.entry.kind {
                NodeKind::Dir => {
                    let made = self
                        .root
                        .dir(parent)
                        .and_then(|p| rustix::fs::mkdirat(p, name, Mode::from_raw_mode(0o755)));
                    match made {
                        Ok(()) => {
                            self.count.dirs += 1;
                            Ok(true)
                        }
                        Err(Errno::EXIST) => {
                            self.skip(Skipped::Duplicate {
                                path: v.path.to_owned(),
                            });
                            Ok(false)
                        }
                        Err(e) => Err(Stop::Host(e.into(), dest)),
                    }
                }
                NodeKind::File => {
                    let data = tree.file_data(v.entry.node)?;
                    let created = self.root.dir(parent).and_then(|p| {
                        rustix::fs::openat(
                            p,
                            name,
                            OFlags::WRONLY
                                | OFlags::CREATE
                                | OFlags::EXCL
                                | OFlags::NOFOLLOW
                                | OFlags::CLOEXEC,
                            Mode::from_raw_mode(0o644),
                        )
                    });
                    let out = match created {
                        Ok(fd) => File::from(fd),
                        Err(Errno::EXIST) => {
                            self.skip(Skipped::Duplicate {
                                path: v.path.to_owned(),
                            });
                            return Ok(false);
                        }
                        Err(e) => return Err(Stop::Host(e.into(), dest)),
                    };
                    self.copy(
                        FileReader::new(self.src.clone(), data),
                        out,
                        &mut buf,
                        &dest,
                    )?;
                    self.count.files += 1;
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
            Err(Stop::Image(e)) => return Err(Error::Image(e)),
            Err(Stop::Host(source, path)) => return Err(Error::Host { path, source }),
            Err(Stop::Interrupted) => {
                return Err(Error::Interrupted {
                    dir: self.dir.to_owned(),
                    files: self.count.files,
                    dirs: self.count.dirs,
                })
            }
        }
        self.links(links)?;
        Ok(self.count)
    }

    /// Streams one file, leaving all-zero blocks as holes: a sparse 6 GiB
    /// image file extracts in seconds and takes no disk for its zeros.
    fn copy(
        &mut self,
        mut reader: FileReader,
        mut out: File,
        buf: &mut [u8],
        dest: &Path,
    ) -> Result<(), Stop> {
        let host = |e: std::io::Error| Stop::Host(e, dest.to_owned());
        loop {
            if self.cancel.is_cancelled() {
                return Err(Stop::Interrupted);
            }
            let n = match reader.read(buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    return Err(match e.downcast::<ImageError>() {
                        Ok(img) => Stop::Image(img),
                        Err(e) => host(e),
                    })
                }
            };
            if buf[..n] == ZEROS[..n] {
                out.seek(SeekFrom::Current(n as i64)).map_err(host)?;
            } else {
                out.write_all(&buf[..n]).map_err(host)?;
            }
            self.copied += n as u64;
            self.observer.event(&Event::Progress {
                phase: Phase::Extract,
                done: self.copied,
                total: self.total,
            });
        }
        // A trailing hole has no bytes written: set the length.
        let end = out.stream_position().map_err(host)?;
        out.set_len(end).map_err(host)
    }

    /// Creates the symlinks whose target stays inside, then checks them all
    /// again through each other until none escapes (removing a link can
    /// change where others lead).
    fn links(&mut self, links: Vec<(String, String)>) -> Result<(), Error> {
        let mut made: Vec<(String, String)> = Vec::new();
        for (path, target) in links {
            if !self.stays_inside(&path, &target) {
                self.skip(Skipped::LinkLeaves { path, target });
                continue;
            }
            let (parent, name) = split(&path);
            let res = self
                .root
                .dir(parent)
                .and_then(|p| rustix::fs::symlinkat(target.as_str(), p, name));
            match res {
                Ok(()) => made.push((path, target)),
                Err(Errno::EXIST) => self.skip(Skipped::Duplicate { path }),
                Err(e) => {
                    return Err(Error::Host {
                        path: self.root.path.join(&path),
                        source: e.into(),
                    })
                }
            }
        }
        loop {
            let before = made.len();
            let mut keep = Vec::new();
            for (path, target) in made {
                if self.stays_inside(&path, &target) {
                    keep.push((path, target));
                    continue;
                }
                let (parent, name) = split(&path);
                self.root
                    .dir(parent)
                    .and_then(|p| rustix::fs::unlinkat(p, name, rustix::fs::AtFlags::empty()))
                    .map_err(|e| Error::Host {
                        path: self.root.path.join(&path),
                        source: e.into(),
                    })?;
                self.skip(Skipped::LinkRemoved { path, target });
            }
            made = keep;
            if made.len() == before {
                break;
            }
        }
        self.count.links = made.len() as u64;
        Ok(())
    }

    /// Whether the link at `path` (made or to be made) with `target` stays
    /// inside: the kernel's resolution beneath the root must not refuse it,
    /// and the component walk (which also judges missing components) must
    /// agree.
    fn stays_inside(&self, path: &str, target: &str) -> bool {
        let (parent, _) = split(path);
        let beneath = format!(
            "{parent}{}{target}",
            if parent.is_empty() { "" } else { "/" }
        );
        let kernel = if Path::new(target).is_absolute() {
            Err(Errno::XDEV)
        } else {
            rustix::fs::openat2(
                &self.root.fd,
                beneath.as_str(),
                OFlags::PATH | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
            )
            .map(drop)
        };
        match kernel {
            Err(Errno::XDEV) | Err(Errno::LOOP) => false,
            _ => stays_inside(
                &self.root.path,
                &self.root.path.join(parent),
                Path::new(target),
            ),
        }
    }
}

/// Whether `target`, read as a symlink in directory `from` (inside `root`),
/// resolves inside `root`: components are followed one by one as the kernel
/// would, expanding symlinks that exist on the host (at most 40), with a
/// missing component taken as a plain directory. Absolute targets never stay
/// inside (they are resolved against the host's `/`, not the directory).
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

    /// The race the kernel check closes: a directory of the extraction
    /// replaced by a symlink to outside between two entries. The parent is
    /// opened with RESOLVE_NO_SYMLINKS, so the file is not created through
    /// it.
    #[test]
    fn a_parent_swapped_for_a_symlink_is_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let root_path = std::fs::canonicalize(d.path()).unwrap();
        std::fs::create_dir(root_path.join("sub")).unwrap();
        let mut root = Root {
            fd: rustix::fs::open(
                &root_path,
                OFlags::DIRECTORY | OFlags::RDONLY,
                Mode::empty(),
            )
            .unwrap(),
            path: root_path.clone(),
            parent: None,
        };
        assert!(root.dir("sub").is_ok());
        std::fs::remove_dir(root_path.join("sub")).unwrap();
        symlink(outside.path(), root_path.join("sub")).unwrap();
        root.parent = None;
        assert_eq!(root.dir("sub").err(), Some(Errno::LOOP));
        // And a path that climbs out is refused by the kernel.
        assert_eq!(root.dir("../").err(), Some(Errno::XDEV));
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    }
}
