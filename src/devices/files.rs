//! File targets, and where the image lives relative to every target.
//!
//! A path can name one file in many ways (`a.img`, `./x/../a.img`, a hard
//! link, a symlink), so files are compared by identity — device and inode for
//! a file that exists, the resolved directory plus name for one to be
//! created — never by the string typed. Writing a target that *is* the image,
//! or that holds it (a partition of the target disk, a file on one of its
//! mounted filesystems, a loop device's backing file on it), would destroy
//! the image while it is read; both are refused before anything is opened
//! for writing. A file that backs an attached loop device is refused too
//! unless forced, and then the loop device's own mounts and holders decide,
//! as for a disk. Rules and reasons: `docs/devices.md`.

use super::enumerate::{build, Disk, Kind, State};
use super::mounts::DevNum;
use super::safety::{in_use, Policy};
use super::sysfs::{Graph, Roots};
use super::system::mount_node;
use super::Error;
use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// A file's identity: the device holding it and its inode number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

impl FileId {
    pub fn of(meta: &fs::Metadata) -> FileId {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// What a file target is, for "the same target named twice": an existing
/// file by identity, a file to be created by where it will be.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum FileKey {
    Existing(FileId),
    New(PathBuf),
}

/// How many symbolic links are followed before giving up (the kernel's
/// limit, `MAXSYMLINKS`).
const MAX_LINKS: usize = 40;

/// Where `path` leads once every symbolic link is followed: the canonical
/// path of an existing file, or — for a file that does not exist yet, even
/// behind a dangling symlink — the canonical directory it will be created in
/// joined with its name. Writing goes there, so a symlink to a file is never
/// replaced by a file of its own. A path whose directory cannot be resolved
/// is returned as far as it was followed.
pub fn resolve_links(path: &Path) -> PathBuf {
    if let Ok(c) = fs::canonicalize(path) {
        return c;
    }
    let mut cur = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => match fs::read_link(&cur) {
                Ok(to) if to.is_absolute() => cur = to,
                Ok(to) => cur = dir_of(&cur).join(to),
                Err(_) => break,
            },
            _ => break,
        }
    }
    match (fs::canonicalize(dir_of(&cur)), cur.file_name()) {
        (Ok(dir), Some(name)) => dir.join(name),
        _ => cur,
    }
}

/// The directory a path's last component is in (`.` for a bare name).
fn dir_of(p: &Path) -> &Path {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// The identity [`FileKey`] of a file target.
pub fn file_key(path: &Path) -> FileKey {
    match fs::metadata(path) {
        Ok(m) => FileKey::Existing(FileId::of(&m)),
        Err(_) => FileKey::New(resolve_links(path)),
    }
}

fn devnum(raw: u64) -> DevNum {
    DevNum {
        major: rustix::fs::major(raw),
        minor: rustix::fs::minor(raw),
    }
}

/// The block device holding the filesystem with device number `dev`: the
/// node with that number, else (btrfs and other filesystems with an
/// anonymous device number) the source of the mount that reports it.
fn node_of_fs(graph: &Graph, state: &State, dev: DevNum) -> Option<String> {
    if let Some(n) = graph.by_dev.get(&dev) {
        return Some(n.clone());
    }
    state
        .mounts
        .iter()
        .find(|m| m.dev == dev)
        .and_then(|m| mount_node(graph, m))
}

/// Where the image's bytes are stored: the image file itself and every
/// whole disk its bytes depend on, each with how.
#[derive(Clone, Debug)]
pub struct ImageSite {
    image: PathBuf,
    /// The image's own identity (a regular file, or a device node).
    id: Option<FileId>,
    /// A block-device image: its device number.
    rdev: Option<DevNum>,
    /// Whole disks (kernel names) the image is on, with how.
    disks: BTreeMap<String, Placement>,
    /// Loop backing files the image is stored in, with their loop device.
    backing: Vec<(FileId, PathBuf)>,
}

impl ImageSite {
    /// Finds where `image` lives: for a block device, the device itself; for
    /// anything else, the filesystem holding it. From there partitions lead
    /// to their disk, dm/md devices to their slaves' disks, and loop devices
    /// to the disk holding their backing file, recursively.
    ///
    /// A stream (`-`, a FIFO: `image::pipe`) is stored nowhere bootstick
    /// can see: its site is empty (what feeds it, such as a `dd` of a
    /// disk, is the caller's to know: docs/devices.md), and so is a
    /// download's URL (a saved copy's staged file is given instead).
    pub fn of(roots: &Roots, image: &Path) -> Result<ImageSite, Error> {
        if crate::image::pipe::is_stream(image) || crate::image::download::is_url(image) {
            return Ok(ImageSite {
                image: image.to_path_buf(),
                id: None,
                rdev: None,
                disks: BTreeMap::new(),
                backing: Vec::new(),
            });
        }
        let meta = fs::metadata(image).map_err(|cause| Error::Image {
            path: image.to_path_buf(),
            cause,
        })?;
        let graph = Graph::read(roots)?;
        let state = State::read(roots)?;
        let disks = build(&graph, &state);
        let mut site = ImageSite {
            image: image.to_path_buf(),
            id: Some(FileId::of(&meta)),
            rdev: None,
            disks: BTreeMap::new(),
            backing: Vec::new(),
        };
        let start = if meta.file_type().is_block_device() {
            let rdev = devnum(meta.rdev());
            site.rdev = Some(rdev);
            graph.by_dev.get(&rdev).map(|node| {
                let step = match graph.nodes.get(node).and_then(|n| n.parent.as_ref()) {
                    Some(_) => Step::Partition { node: node.clone() },
                    None if graph.underlying_disks(node) == [node.clone()] => {
                        Step::Disk { node: node.clone() }
                    }
                    None => Step::StackedOn { node: node.clone() },
                };
                (node.clone(), Placement(vec![step]))
            })
        } else {
            Self::file_start(&graph, &state, devnum(meta.dev()))
        };
        if let Some((node, how)) = start {
            site.walk(&graph, &state, &disks, node, how);
        }
        Ok(site)
    }

    /// Where a file on the filesystem with device number `dev` lives (for
    /// captured trees, where the image cannot be `stat`ed: tests).
    pub fn of_file_on(roots: &Roots, image: &Path, dev: DevNum) -> Result<ImageSite, Error> {
        let graph = Graph::read(roots)?;
        let state = State::read(roots)?;
        let disks = build(&graph, &state);
        let mut site = ImageSite {
            image: image.to_path_buf(),
            id: None,
            rdev: None,
            disks: BTreeMap::new(),
            backing: Vec::new(),
        };
        if let Some((node, how)) = Self::file_start(&graph, &state, dev) {
            site.walk(&graph, &state, &disks, node, how);
        }
        Ok(site)
    }

    fn file_start(graph: &Graph, state: &State, dev: DevNum) -> Option<(String, Placement)> {
        let node = node_of_fs(graph, state, dev)?;
        let mounted = state
            .mounts
            .iter()
            .filter(|m| mount_node(graph, m).as_deref() == Some(&node))
            .map(|m| m.mountpoint.clone())
            .next();
        let step = Step::FileOn {
            device: graph.roots.dev.join(&node),
            mountpoint: mounted,
        };
        Some((node, Placement(vec![step])))
    }

    fn walk(&mut self, graph: &Graph, state: &State, disks: &[Disk], node: String, how: Placement) {
        let mut work = vec![(node, how)];
        let mut seen = HashSet::new();
        while let Some((node, how)) = work.pop() {
            if !seen.insert(node.clone()) {
                continue;
            }
            for name in graph.underlying_disks(&node) {
                self.disks
                    .entry(name.clone())
                    .or_insert_with(|| how.clone());
                let Some(disk) = disks.iter().find(|d| d.name == name) else {
                    continue;
                };
                let Some(bf) = &disk.backing_file else {
                    continue;
                };
                let Ok(m) = fs::metadata(bf) else {
                    continue;
                };
                self.backing.push((FileId::of(&m), disk.path.clone()));
                if let Some(under) = node_of_fs(graph, state, devnum(m.dev())) {
                    let mut next = how.clone();
                    next.0.push(Step::BackedBy {
                        loop_device: disk.path.clone(),
                        backing_file: PathBuf::from(bf),
                        on: graph.roots.dev.join(&under),
                    });
                    work.push((under, next));
                }
            }
        }
    }

    /// The whole disks (kernel names) the image is stored on.
    pub fn disks(&self) -> impl Iterator<Item = &str> {
        self.disks.keys().map(String::as_str)
    }

    /// Refuses writing `disk` when that would overwrite the image: the disk
    /// is the image, holds it, or is a loop device backed by it. A system
    /// disk is refused as such first: that reason is final, and true
    /// whatever the image.
    pub fn check_disk(&self, disk: &Disk) -> Result<(), Error> {
        if disk.system {
            return Err(Error::SystemDisk {
                path: disk.path.clone(),
                reasons: disk.system_reasons.join(", "),
            });
        }
        if self.rdev.is_some() && self.rdev == disk.dev {
            return Err(Error::ImageIsTarget {
                path: disk.path.clone(),
                image: self.image.clone(),
            });
        }
        if let Some(how) = self.disks.get(&disk.name) {
            return Err(Error::ImageOnTarget {
                path: disk.path.clone(),
                image: self.image.clone(),
                how: how.clone(),
            });
        }
        let backed_by_image = disk
            .backing_file
            .as_ref()
            .and_then(|bf| fs::metadata(bf).ok())
            .is_some_and(|m| self.id == Some(FileId::of(&m)));
        if backed_by_image {
            return Err(Error::ImageOnTarget {
                path: disk.path.clone(),
                image: self.image.clone(),
                how: Placement(vec![Step::BackingFileOf {
                    loop_device: disk.path.clone(),
                }]),
            });
        }
        Ok(())
    }
}

/// How an image is stored on a disk: the steps from the image down to the
/// disk, as the refusal explains them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement(pub Vec<Step>);

/// One step of a [`Placement`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// The image is this partition of the disk.
    Partition { node: String },
    /// The image is the disk itself.
    Disk { node: String },
    /// The image is a dm/md device stored on the disk.
    StackedOn { node: String },
    /// The image is a file on a filesystem of this device.
    FileOn {
        device: PathBuf,
        mountpoint: Option<PathBuf>,
    },
    /// The device of the previous step is a loop device whose backing file
    /// is on `on`.
    BackedBy {
        loop_device: PathBuf,
        backing_file: PathBuf,
        on: PathBuf,
    },
    /// The image is the backing file of the target loop device.
    BackingFileOf { loop_device: PathBuf },
    /// The image is on a loop device whose backing file is the target file.
    OnLoopBackedByTarget { loop_device: PathBuf },
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Partition { node } => write!(f, "the image is its partition {node}"),
            Step::Disk { node } => write!(f, "the image is {node}"),
            Step::StackedOn { node } => write!(f, "the image is {node}, which is stored on it"),
            Step::FileOn {
                device,
                mountpoint: Some(mp),
            } => write!(
                f,
                "the image is a file on {}, mounted at {}",
                device.display(),
                mp.display()
            ),
            Step::FileOn {
                device,
                mountpoint: None,
            } => write!(f, "the image is a file on {}", device.display()),
            Step::BackedBy {
                loop_device,
                backing_file,
                on,
            } => write!(
                f,
                "{} is backed by {}, a file on {}",
                loop_device.display(),
                backing_file.display(),
                on.display()
            ),
            Step::BackingFileOf { .. } => {
                f.write_str("the image is the loop device's backing file")
            }
            Step::OnLoopBackedByTarget { loop_device } => write!(
                f,
                "the image is on the loop device {}, whose backing file this is",
                loop_device.display()
            ),
        }
    }
}

impl std::fmt::Display for Placement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, step) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{step}")?;
        }
        Ok(())
    }
}

/// A file target that passed every rule.
#[derive(Clone, Debug)]
pub struct FileTarget {
    /// As the user gave it.
    pub given: PathBuf,
    /// Where it leads, symlinks followed: the file written (or replaced).
    pub path: PathBuf,
    /// The length of the existing file it replaces; `None` for a new file.
    pub existing_len: Option<u64>,
    /// Its identity, for "the same target named twice".
    pub key: FileKey,
    /// Attached loop devices backed by this file (only with
    /// [`Policy::force`]); their mounted filesystems are to be unmounted
    /// (only with [`Policy::unmount`]).
    pub loops: Vec<Disk>,
}

/// Checks a file target (an existing regular file to replace, or a new
/// one): its directory must exist and be writable, it must not be the image
/// or hold it, and a file backing an attached loop device needs `force`,
/// then passes the loop device's in-use rules (swap, holders, mounts).
pub fn check_file(
    roots: &Roots,
    target: &Path,
    image: &ImageSite,
    policy: Policy,
) -> Result<FileTarget, Error> {
    let path = resolve_links(target);
    let under_dev = path.starts_with("/dev") || path.starts_with(&roots.dev);
    let given = target.to_path_buf();
    let existing = match fs::metadata(&path) {
        Ok(m) if m.file_type().is_file() && !under_dev => Some(m),
        Ok(_) => return Err(Error::NotATarget { path: given }),
        Err(_) if under_dev => return Err(Error::NoSuchDevice { path: given }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(cause) => return Err(Error::FileTarget { path: given, cause }),
    };
    let dir = dir_of(&path);
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(Error::NoDirectory {
                path: given,
                dir: dir.to_path_buf(),
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::NoDirectory {
                path: given,
                dir: dir.to_path_buf(),
            })
        }
        Err(cause) => return Err(Error::FileTarget { path: given, cause }),
    }
    if rustix::fs::statvfs(dir)
        .is_ok_and(|s| s.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY))
    {
        return Err(Error::ReadOnlyFilesystem {
            path: given,
            dir: dir.to_path_buf(),
        });
    }
    if let Err(e) = rustix::fs::access(
        dir,
        rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK,
    ) {
        return Err(Error::NotWritable {
            path: given,
            dir: dir.to_path_buf(),
            cause: e.into(),
        });
    }
    let Some(meta) = existing else {
        return Ok(FileTarget {
            given,
            key: FileKey::New(path.clone()),
            path,
            existing_len: None,
            loops: Vec::new(),
        });
    };
    let id = FileId::of(&meta);
    if image.id == Some(id) {
        return Err(Error::ImageIsTarget {
            path: given,
            image: image.image.clone(),
        });
    }
    if let Some((_, lo)) = image.backing.iter().find(|(b, _)| *b == id) {
        return Err(Error::ImageOnTarget {
            path: given,
            image: image.image.clone(),
            how: Placement(vec![Step::OnLoopBackedByTarget {
                loop_device: lo.clone(),
            }]),
        });
    }
    let loops = loops_backed_by(roots, id)?;
    if !loops.is_empty() && !policy.force {
        return Err(Error::BacksLoop {
            path: given,
            loops: super::list(&loops.iter().map(|d| d.path.clone()).collect::<Vec<_>>()),
        });
    }
    for lo in &loops {
        let rule = if lo.system {
            Err(Error::SystemDisk {
                path: lo.path.clone(),
                reasons: lo.system_reasons.join(", "),
            })
        } else {
            in_use(lo, policy)
        };
        rule.map_err(|rule| Error::BackingInUse {
            path: given.clone(),
            loop_device: lo.path.clone(),
            rule: Box::new(rule),
        })?;
    }
    Ok(FileTarget {
        given,
        path,
        existing_len: Some(meta.len()),
        key: FileKey::Existing(id),
        loops,
    })
}

/// The attached loop devices whose backing file is the file `id`, compared
/// by device and inode (the sysfs path may be a different spelling, or a
/// file since renamed over).
fn loops_backed_by(roots: &Roots, id: FileId) -> Result<Vec<Disk>, Error> {
    Ok(super::enumerate(roots)?
        .into_iter()
        .filter(|d| d.kind == Kind::Loop)
        .filter(|d| {
            d.backing_file
                .as_ref()
                .and_then(|bf| fs::metadata(bf).ok())
                .is_some_and(|m| FileId::of(&m) == id)
        })
        .collect())
}
