//! `bootstick mount`: an image's file tree as a read-only FUSE file system,
//! for hosts whose kernel lacks the iso9660/udf drivers (containers,
//! minimal hosts), and `bootstick umount`.
//!
//! - The tree is the one `ls` and `extract` read (`image::open`), walked
//!   once into an inode table ([`table`]) with the same rules: loops and
//!   nesting deeper than [`crate::image::MAX_DEPTH`] refuse the mount;
//!   names that cannot be a path component are hidden (reported as
//!   [`Problem`]s).
//! - Reads go to the image at the asked offset through the file's runs
//!   ([`crate::image::tree::read_at`]), one request's bytes at a time, so
//!   memory stays bounded; a run past the image's end (a truncated image) is
//!   `EIO` for that file only.
//! - Read-only twice: mounted `ro`, and every changing request is `EROFS`
//!   ([`fs`]).
//! - [`serve`] stays in the foreground until the mount goes away: the
//!   [`Cancel`] token (the binary's SIGINT/SIGTERM/SIGHUP) makes it
//!   unmount; [`unmount`] or `fusermount3 -u` from elsewhere end it too.
//!
//! Mounting goes through the `fuser` crate without libfuse: as root it
//! mounts `/dev/fuse` itself, otherwise through the setuid `fusermount3`
//! (`docs/decisions.md`).

mod fs;
pub mod table;

pub use table::{Problem, Table};

use crate::cancel::Cancel;
use crate::events::Observer;
use crate::image::{ByteSource, FileTree};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The file system type a bootstick mount has in `/proc/self/mountinfo`
/// (`fuse.` + the subtype we give): how [`unmount`] tells our mounts from
/// others.
pub const FSTYPE: &str = "fuse.bootstick";

/// How often [`serve`] looks at the cancellation token and the session.
const POLL: Duration = Duration::from_millis(50);

/// Why a mount or an unmount failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The image's tree cannot be mounted (a loop, too deep, malformed).
    #[error("cannot read the image's file tree")]
    Image(#[source] crate::image::Error),
    /// The mount point is missing or not a directory.
    #[error("{} is not a directory", dir.display())]
    NotADirectory { dir: PathBuf },
    /// The kernel or `fusermount3` refused the mount.
    #[error("cannot mount on {}", dir.display())]
    Mount {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The FUSE session failed while serving.
    #[error("the FUSE session on {} failed", dir.display())]
    Session {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// [`unmount`]: nothing is mounted on the directory.
    #[error("nothing is mounted on {}", dir.display())]
    NotMounted { dir: PathBuf },
    /// [`unmount`]: the directory holds another file system, which bootstick
    /// leaves alone.
    #[error("{} holds a {fstype} file system, not a bootstick mount; use umount for it", dir.display())]
    NotOurs { dir: PathBuf, fstype: String },
    /// The mount is in use (a process has a file open or its working
    /// directory there).
    #[error("{} is busy: a process still uses files there", dir.display())]
    Busy { dir: PathBuf },
    /// Unmounting failed otherwise.
    #[error("cannot unmount {}", dir.display())]
    Unmount {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `/proc/self/mountinfo` cannot be read.
    #[error("cannot read /proc/self/mountinfo")]
    MountInfo(#[source] std::io::Error),
}

/// How a served mount ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// The token was cancelled and [`serve`] unmounted.
    Cancelled,
    /// Someone else unmounted it (`bootstick umount`, `fusermount3 -u`,
    /// `umount`).
    Unmounted,
}

/// What to mount and how.
pub struct Mount<'a> {
    pub src: Arc<dyn ByteSource>,
    pub tree: &'a dyn FileTree,
    /// The mount point: an existing directory.
    pub dir: &'a Path,
    /// Shown as the mount's source in `/proc/self/mountinfo` (the image path).
    pub name: String,
    /// Gets a warning for each read that fails.
    pub observer: Arc<dyn Observer + Send + Sync>,
}

/// A mount, made and serving requests on its own threads: [`Mounted::wait`]
/// blocks until it ends. Dropping it unmounts.
pub struct Mounted {
    session: fuser::BackgroundSession,
    dir: PathBuf,
    /// How many inodes the tree has.
    pub inodes: usize,
}

/// Builds the inode table of `m.tree` and mounts it on `m.dir`. Returns the
/// mount and the entries hidden or unreadable (to show as warnings).
pub fn mount(m: Mount<'_>) -> Result<(Mounted, Vec<Problem>), Error> {
    let (table, problems) = Table::build(m.tree).map_err(Error::Image)?;
    if !m.dir.is_dir() {
        return Err(Error::NotADirectory {
            dir: m.dir.to_owned(),
        });
    }
    let inodes = table.len();
    let fs = fs::ImageFs {
        table,
        src: m.src,
        uid: rustix::process::getuid().as_raw(),
        gid: rustix::process::getgid().as_raw(),
        observer: m.observer,
    };
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::RO,
        fuser::MountOption::NoSuid,
        fuser::MountOption::NoDev,
        fuser::MountOption::NoExec,
        fuser::MountOption::DefaultPermissions,
        fuser::MountOption::FSName(m.name.replace([',', ' ', '\t', '\n', '\\'], "_")),
    ];
    // The subtype makes the type `fuse.bootstick` ([`FSTYPE`]). `fuser`
    // hands `Subtype` to `fusermount3` only; as root it calls mount(2)
    // itself, where the kernel takes the subtype as a mount option.
    config
        .mount_options
        .push(if rustix::process::geteuid().is_root() {
            fuser::MountOption::CUSTOM("subtype=bootstick".into())
        } else {
            fuser::MountOption::Subtype("bootstick".into())
        });
    // Several readers at once are served in parallel.
    config.n_threads = Some(4);
    let session = fuser::Session::new(fs, m.dir, &config)
        .and_then(fuser::Session::spawn)
        .map_err(|source| Error::Mount {
            dir: m.dir.to_owned(),
            source,
        })?;
    Ok((
        Mounted {
            session,
            dir: m.dir.to_owned(),
            inodes,
        },
        problems,
    ))
}

impl Mounted {
    /// Serves until the mount ends: unmounts when `cancel` is cancelled,
    /// returns when someone else unmounted it.
    pub fn wait(self, cancel: &Cancel) -> Result<Ended, Error> {
        let dir = self.dir.clone();
        let session_failed = |source| Error::Session {
            dir: dir.clone(),
            source,
        };
        loop {
            if self.session.guard.is_finished() {
                return self
                    .session
                    .join()
                    .map(|()| Ended::Unmounted)
                    .map_err(session_failed);
            }
            if cancel.is_cancelled() {
                return self.stop().map(|()| Ended::Cancelled);
            }
            std::thread::sleep(POLL);
        }
    }

    /// Unmounts and waits for the session to end. A busy mount is detached
    /// lazily instead (it disappears from the mount table at once; processes
    /// still inside see errors once this process exits), so a signal never
    /// leaves a stale mount behind.
    fn stop(self) -> Result<(), Error> {
        let dir = self.dir.clone();
        let Mounted { session, .. } = self;
        match unmount_dir(&dir, false) {
            Ok(()) => session
                .join()
                .map_err(|source| Error::Session { dir, source }),
            Err(Error::Busy { .. }) => {
                unmount_dir(&dir, true)?;
                // The session thread ends when the last user lets go or the
                // process exits; not waited for.
                std::mem::forget(session);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

/// The file system type mounted on `dir` (the topmost mount), if any.
pub fn mounted_type(dir: &Path) -> Result<Option<String>, Error> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").map_err(Error::MountInfo)?;
    Ok(crate::devices::mounts::parse_mountinfo(&text)
        .into_iter()
        .rev()
        .find(|m| m.mountpoint == dir)
        .map(|m| m.fstype))
}

/// `bootstick umount DIR`: unmounts the bootstick mount on `dir`, and
/// refuses anything else mounted there. The serving `bootstick mount` then
/// ends (exit 0).
pub fn unmount(dir: &Path) -> Result<(), Error> {
    let canon = std::fs::canonicalize(dir).map_err(|_| Error::NotMounted {
        dir: dir.to_owned(),
    })?;
    match mounted_type(&canon)? {
        None => Err(Error::NotMounted {
            dir: dir.to_owned(),
        }),
        Some(t) if t != FSTYPE => Err(Error::NotOurs {
            dir: dir.to_owned(),
            fstype: t,
        }),
        Some(_) => unmount_dir(&canon, false),
    }
}

/// Unmounts `dir` (lazily: detached even when busy), as root with
/// `umount2`, otherwise through `fusermount3 -u` (which lets a user unmount
/// the FUSE mounts they made).
fn unmount_dir(dir: &Path, lazy: bool) -> Result<(), Error> {
    let failed = |source: std::io::Error| {
        if source.raw_os_error() == Some(libc::EBUSY) {
            Error::Busy {
                dir: dir.to_owned(),
            }
        } else {
            Error::Unmount {
                dir: dir.to_owned(),
                source,
            }
        }
    };
    if rustix::process::geteuid().is_root() {
        let flags = if lazy {
            rustix::mount::UnmountFlags::DETACH
        } else {
            rustix::mount::UnmountFlags::empty()
        };
        return rustix::mount::unmount(dir, flags).map_err(|e| failed(e.into()));
    }
    let mut cmd = std::process::Command::new("fusermount3");
    cmd.arg("-u");
    if lazy {
        cmd.arg("-z");
    }
    let out = cmd.arg("--").arg(dir).output().map_err(failed)?;
    if out.status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    if text.contains("busy") {
        return Err(Error::Busy {
            dir: dir.to_owned(),
        });
    }
    Err(failed(std::io::Error::other(format!(
        "fusermount3 -u failed ({}): {text}",
        out.status
    ))))
}
