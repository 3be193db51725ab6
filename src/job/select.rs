//! Choosing the targets a job writes: resolving each TARGET, applying every
//! safety rule (docs/devices.md) including "the same disk named twice",
//! asking once for confirmation through [`Confirm`], unmounting, and opening
//! each disk exclusively. Only the question itself is the caller's.

use std::path::{Path, PathBuf};

use super::Error;
use crate::devices::{self, Disk, FileTarget, Guarded, Policy, Resolved, Roots};

/// Asks the user whether the job may go ahead.
pub trait Confirm {
    /// `true` to go ahead. Called at most once per job, and only when a disk
    /// would be erased or an existing non-empty file replaced.
    fn confirm(&mut self, what: &Summary) -> Answer;

    /// Whether a "yes" also permits unmounting the mounted filesystems the
    /// question named: a person who read "mounted on /media/…" and answered
    /// yes has given that permission. Automation ([`Yes`], `--yes`) has
    /// not, so there the policy's `unmount` (`--unmount`) stays required.
    fn grants_unmount(&self) -> bool {
        false
    }
}

/// The user's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    Yes,
    No,
    /// There is no one to ask (no terminal).
    CannotAsk,
}

/// A [`Confirm`] that always goes ahead (the caller already agreed).
pub struct Yes;

impl Confirm for Yes {
    fn confirm(&mut self, _: &Summary) -> Answer {
        Answer::Yes
    }
}

/// What the job does to the disks a confirmation names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Writes the image [`Summary::image`].
    Write,
    /// Writes test patterns over the disk (`health::probe`); `image` is
    /// empty.
    Probe,
    /// Formats the disk as a plain data drive (`health::format`); `image`
    /// is empty.
    Format,
    /// Reads the disk or file [`Summary::image`] into the replaced
    /// [`Summary::files`] (`health::backup`); no disk is written.
    Backup,
}

/// What a confirmation is asked for.
#[derive(Clone, Debug)]
pub struct Summary {
    pub action: Action,
    pub image: PathBuf,
    pub image_len: u64,
    /// The disks that will be erased, in argument order.
    pub disks: Vec<Disk>,
    /// The existing non-empty files that will be replaced.
    pub files: Vec<FileTarget>,
    /// Their mounted filesystems will be unmounted first.
    pub unmount: bool,
}

impl Summary {
    /// Every target named, disks first.
    pub fn names(&self) -> Vec<PathBuf> {
        self.disks
            .iter()
            .map(|d| d.path.clone())
            .chain(self.files.iter().map(|f| f.given.clone()))
            .collect()
    }
}

/// Where a job writes.
pub enum Chosen {
    /// A regular file (an image of a stick).
    File(PathBuf),
    /// A whole disk, open with `O_EXCL` and locked for the whole job.
    Disk {
        disk: Box<Disk>,
        guard: Box<Guarded>,
    },
}

/// One TARGET a rule refused.
#[derive(Debug)]
pub struct Refusal {
    /// As given.
    pub target: PathBuf,
    pub error: Error,
}

/// A TARGET resolved and checked by the rules, not yet opened.
enum Checked {
    File(FileTarget),
    Disk(Box<Disk>),
}

/// Resolves TARGET for a job that only reads it (`compare`): the same forms
/// as for writing (a path, a /dev/disk/by-id or by-path link, a by-id name
/// or a serial number), but none of the writing rules: no confirmation, no
/// exclusive open, and system or internal disks are allowed. Returns the
/// path to open and the disk, when it is one.
pub fn resolve_for_reading(
    roots: &Roots,
    target: &Path,
) -> Result<(PathBuf, Option<Box<Disk>>), Error> {
    match devices::resolve(roots, target)? {
        Resolved::File(p) => Ok((p, None)),
        Resolved::Disk { disk, .. } => Ok((disk.path.clone(), Some(disk))),
    }
}

/// Resolves TARGET for a job that erases a whole disk without writing an
/// image (`action`: a probe writing test patterns over it): the same forms
/// and every rule of [`choose_all`] for a disk (system disk never,
/// read-only, internal disks only with `policy.force`, swap, holders,
/// mounted filesystems only with `policy.unmount`), the same one question
/// through `confirm`, the unmount and the exclusive, locked open. A file
/// is refused ([`Error::NotADisk`]): only a disk can be probed.
pub fn choose_disk(
    roots: &Roots,
    target: &Path,
    policy: Policy,
    confirm: &mut dyn Confirm,
    action: Action,
) -> Result<(Box<Disk>, Guarded), Error> {
    let disk = match devices::resolve(roots, target)? {
        Resolved::File(path) => return Err(Error::NotADisk { path }),
        Resolved::Disk { disk, .. } => disk,
    };
    devices::check(&disk, 0, policy)?;
    let summary = Summary {
        action,
        image: PathBuf::new(),
        image_len: 0,
        disks: vec![(*disk).clone()],
        files: Vec::new(),
        unmount: policy.unmount,
    };
    match confirm.confirm(&summary) {
        Answer::Yes => {}
        answer => {
            return Err(Error::Declined {
                summary: Box::new(summary),
                asked: answer == Answer::No,
            })
        }
    }
    if policy.unmount {
        devices::unmount_all(roots, &disk)?;
    }
    let guard = Guarded::open(roots, &disk)?;
    Ok((disk, guard))
}

/// Resolves every TARGET and checks the rules for writing `needed` bytes of
/// `image` (`image_len` bytes) to each, then confirms once, unmounts and
/// opens every disk, in argument order. Any refusal (a rule, a target that
/// is or holds the image, the same disk or file named twice, a declined
/// confirmation, a disk that cannot be opened) stops the whole job before
/// anything is written; with several targets [`Error::Refused`] lists each
/// refused one. Guards opened before a later disk fails are released on
/// return.
pub fn choose_all(
    roots: &Roots,
    targets: &[PathBuf],
    policy: Policy,
    confirm: &mut dyn Confirm,
    image: &Path,
    image_len: u64,
    needed: u64,
) -> Result<Vec<Chosen>, Error> {
    choose_all_stored(
        roots, targets, policy, confirm, image, image, image_len, needed,
    )
}

/// [`choose_all`] for an image named `image` (in the question) whose bytes
/// are stored at `stored` (what no target may be or hold): a download's
/// URL, and the copy being saved for it (`super::Job::stored_at`).
#[allow(clippy::too_many_arguments)]
pub fn choose_all_stored(
    roots: &Roots,
    targets: &[PathBuf],
    policy: Policy,
    confirm: &mut dyn Confirm,
    image: &Path,
    stored: &Path,
    image_len: u64,
    needed: u64,
) -> Result<Vec<Chosen>, Error> {
    // A person asked (and about to answer) may permit the unmount.
    let policy = Policy {
        unmount: policy.unmount || confirm.grants_unmount(),
        ..policy
    };
    // Where the image lives, found before any target is looked at: a
    // target that is the image, or holds it, is refused by the rules below.
    let site = devices::ImageSite::of(roots, stored)?;
    let check_one = |target: &Path| -> Result<Checked, Error> {
        match devices::resolve(roots, target).map_err(devices::Error::for_writing)? {
            Resolved::File(p) => Ok(Checked::File(devices::check_file(
                roots, &p, &site, policy,
            )?)),
            Resolved::Disk { disk, .. } => {
                site.check_disk(&disk)?;
                devices::check(&disk, needed, policy)?;
                Ok(Checked::Disk(disk))
            }
        }
    };
    let mut checked = Vec::with_capacity(targets.len());
    let mut refused = Vec::new();
    for target in targets {
        match check_one(target) {
            Ok(c) => checked.push((target, c)),
            Err(e) if targets.len() == 1 => return Err(e),
            Err(error) => refused.push(Refusal {
                target: target.clone(),
                error,
            }),
        }
    }
    refused.extend(named_twice(&checked));
    if !refused.is_empty() {
        return Err(Error::Refused {
            refused,
            of: targets.len(),
        });
    }
    // An existing non-empty file is someone's data (a download, with
    // IMAGE and TARGET swapped): asked for like a disk.
    let summary = Summary {
        action: Action::Write,
        image: image.to_path_buf(),
        image_len,
        disks: checked
            .iter()
            .filter_map(|(_, c)| match c {
                Checked::Disk(d) => Some((**d).clone()),
                Checked::File(_) => None,
            })
            .collect(),
        files: checked
            .iter()
            .filter_map(|(_, c)| match c {
                Checked::File(f) if f.existing_len.is_some_and(|l| l > 0) => Some(f.clone()),
                _ => None,
            })
            .collect(),
        unmount: policy.unmount,
    };
    if !summary.disks.is_empty() || !summary.files.is_empty() {
        match confirm.confirm(&summary) {
            Answer::Yes => {}
            answer => {
                return Err(Error::Declined {
                    summary: Box::new(summary),
                    asked: answer == Answer::No,
                })
            }
        }
    }
    let mut chosen = Vec::with_capacity(checked.len());
    for (_, c) in checked {
        chosen.push(match c {
            Checked::File(f) => {
                // Only with `policy.force`: the loop devices the file backs.
                if policy.unmount {
                    for lo in &f.loops {
                        devices::unmount_all(roots, lo)?;
                    }
                }
                Chosen::File(f.given)
            }
            Checked::Disk(disk) => {
                if policy.unmount {
                    devices::unmount_all(roots, &disk)?;
                }
                let guard = Guarded::open(roots, &disk)?;
                Chosen::Disk {
                    disk,
                    guard: Box::new(guard),
                }
            }
        });
    }
    Ok(chosen)
}

/// Refusals for targets that name a disk or file an earlier one already
/// named (`/dev/sdb` and its by-id link; `stick.img`, `./stick.img`, a hard
/// link or a symlink to it, even to a file not created yet): two jobs
/// writing one disk would destroy each other's work.
fn named_twice(checked: &[(&PathBuf, Checked)]) -> Vec<Refusal> {
    #[derive(PartialEq)]
    enum Key<'a> {
        Disk(&'a Path),
        File(&'a devices::FileKey),
    }
    fn key(c: &Checked) -> Key<'_> {
        match c {
            Checked::Disk(d) => Key::Disk(&d.path),
            Checked::File(f) => Key::File(&f.key),
        }
    }
    let mut refused = Vec::new();
    for (i, (target, c)) in checked.iter().enumerate() {
        if let Some((first, _)) = checked[..i].iter().find(|(_, e)| key(e) == key(c)) {
            refused.push(Refusal {
                target: (*target).clone(),
                error: Error::NamedTwice {
                    target: (*target).clone(),
                    first: (*first).clone(),
                    disk: matches!(c, Checked::Disk(_)),
                },
            });
        }
    }
    refused
}
