//! Choosing the disk a command writes to: resolving TARGET (or offering a
//! picker), applying the safety rules, asking for confirmation, unmounting,
//! and opening the disk exclusively. Used by `write`; the rules and their
//! reasons are in `docs/devices.md`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use super::exit::{Exit, Failure};
use super::list::table;
use super::render::human_bytes;
use bootstick::devices::{self, Disk, Guarded, Policy, Resolved, Roots};

/// Flags that change which disks may be written and what happens around it.
#[derive(Debug, Clone, clap::Args)]
pub struct DeviceArgs {
    /// Unmount the target's mounted filesystems first (deepest first, never
    /// lazily: a busy filesystem stops the job instead).
    #[arg(long)]
    pub unmount: bool,
    /// Allow an internal disk (neither removable nor USB-attached). A system
    /// disk is never written, with or without this flag.
    #[arg(long)]
    pub force: bool,
    /// After writing, detach the disk from the system (SCSI/USB disks) so it
    /// can be unplugged right away.
    #[arg(long)]
    pub eject: bool,
}

/// Where the job writes.
pub enum Chosen {
    /// A regular file (an image of a stick).
    File(PathBuf),
    /// A whole disk, open with `O_EXCL` and locked for the whole job.
    Disk {
        disk: Box<Disk>,
        guard: Box<Guarded>,
    },
}

/// The exit code for a device error (`exit::device_error`).
pub fn exit_for(e: &devices::Error) -> Exit {
    super::exit::device_error(e)
}

fn fail(e: devices::Error) -> Failure {
    let exit = exit_for(&e);
    match e {
        // The library says "force it"; the flag is the command line's.
        devices::Error::BacksLoop { .. } => Failure::new(exit, anyhow::anyhow!("{e} with --force")),
        e => Failure::new(exit, e),
    }
}

/// One line per disk for confirmation and the picker.
fn describe(d: &Disk) -> String {
    let mut s = table(&[d]);
    // Drop the header line of the table.
    if let Some(i) = s.find('\n') {
        s.drain(..=i);
    }
    s
}

fn read_line() -> String {
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    answer.trim().to_string()
}

/// Offers the eligible disks and lets the user choose one by number. Never
/// chooses by itself, even when only one disk qualifies.
fn pick(roots: &Roots) -> Result<PathBuf, Failure> {
    if !std::io::stdin().is_terminal() {
        return Err(Failure::new(
            Exit::Usage,
            anyhow::anyhow!(
                "no TARGET given and no terminal to offer a choice; name the disk (see `bootstick list`)"
            ),
        ));
    }
    let disks = devices::enumerate(roots).map_err(fail)?;
    let offered: Vec<&Disk> = disks.iter().filter(|d| devices::eligible(d)).collect();
    if offered.is_empty() {
        return Err(Failure::new(
            Exit::BadInput,
            anyhow::anyhow!(
                "no removable or USB disk found; plug in a stick, or name the target (`bootstick list --all` shows every disk)"
            ),
        ));
    }
    eprintln!("Disks that can be written:");
    for (i, d) in offered.iter().enumerate() {
        eprint!("[{}] {}", i + 1, describe(d));
    }
    eprint!("Number of the disk to write (Enter to cancel): ");
    let _ = std::io::stderr().flush();
    let answer = read_line();
    match answer.parse::<usize>() {
        Ok(n) if (1..=offered.len()).contains(&n) => Ok(offered[n - 1].path.clone()),
        _ if answer.is_empty() => Err(Failure::new(
            Exit::Declined,
            anyhow::anyhow!("no disk chosen; nothing was written"),
        )),
        _ => Err(Failure::new(
            Exit::Declined,
            anyhow::anyhow!("{answer:?} is not one of the numbers shown; nothing was written"),
        )),
    }
}

/// Asks once before erasing `disks` and replacing the existing non-empty
/// `files`, listing each disk with what is on it and each file with its
/// size. Without a terminal the job is refused: scripts must say `--yes`.
fn confirm(
    disks: &[&Disk],
    files: &[&devices::FileTarget],
    image: &Path,
    image_len: u64,
    unmount: bool,
) -> Result<(), Failure> {
    let (what, these, them) = match disks {
        [] => (String::new(), String::new(), ""),
        [disk] => (
            format!(
                "{} ({}, {} bytes)",
                disk.path.display(),
                human_bytes(disk.size_bytes),
                disk.size_bytes
            ),
            "this disk".to_owned(),
            "it",
        ),
        _ => (
            disks
                .iter()
                .map(|d| d.path.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            format!("these {} disks", disks.len()),
            "them",
        ),
    };
    let replaced: Vec<String> = files
        .iter()
        .map(|f| {
            let len = f.existing_len.unwrap_or(0);
            format!("{} ({}, {len} bytes)", f.given.display(), human_bytes(len))
        })
        .collect();
    let replaced = replaced.join(", ");
    if !std::io::stdin().is_terminal() {
        let doing = match (disks.is_empty(), files.len()) {
            (false, 0) => format!("writing to {what} erases everything on {them}"),
            (true, 1) => format!("the file {replaced} exists and would be replaced"),
            (true, _) => format!("the files {replaced} exist and would be replaced"),
            (false, _) => format!(
                "writing to {what} erases everything on {them} and replaces the existing {replaced}"
            ),
        };
        return Err(Failure::new(
            Exit::Declined,
            anyhow::anyhow!("{doing}; no terminal to ask for confirmation, pass --yes to proceed"),
        ));
    }
    let mounted = disks.iter().any(|d| d.all_mountpoints().next().is_some());
    let listed = disks.iter().map(|d| describe(d)).collect::<String>();
    let onto = match (disks.is_empty(), files) {
        (false, []) => these.clone(),
        (true, [f]) => f.given.display().to_string(),
        (true, _) => format!("{} files", files.len()),
        (false, _) => format!("{these} and {} existing files", files.len()),
    };
    eprint!(
        "Write {} ({}) to {onto}?\n{listed}{}{}{}Continue? [y/N] ",
        image.display(),
        human_bytes(image_len),
        match (mounted && unmount, disks.len()) {
            (false, _) => "",
            (true, 1) => "Its mounted filesystems will be unmounted first.\n",
            (true, _) => "Their mounted filesystems will be unmounted first.\n",
        },
        if disks.is_empty() {
            String::new()
        } else {
            format!("EVERYTHING on {what} will be erased.\n")
        },
        match files.len() {
            0 => String::new(),
            1 => format!("The existing file {replaced} will be replaced.\n"),
            _ => format!("The existing files {replaced} will be replaced.\n"),
        },
    );
    let _ = std::io::stderr().flush();
    if matches!(read_line().to_ascii_lowercase().as_str(), "y" | "yes") {
        Ok(())
    } else {
        let names: Vec<String> = disks
            .iter()
            .map(|d| d.path.display().to_string())
            .chain(files.iter().map(|f| f.given.display().to_string()))
            .collect();
        let untouched = match names.as_slice() {
            [one] => format!("{one} was not touched"),
            _ => format!("none of {} was touched", names.join(", ")),
        };
        Err(Failure::new(
            Exit::Declined,
            anyhow::anyhow!("not confirmed; {untouched}"),
        ))
    }
}

/// Resolves TARGET for a command that only reads it (`compare`): the same
/// forms as `write` (a path, a /dev/disk/by-id or by-path link, a by-id
/// name or a serial number), but none of the writing rules: no
/// confirmation, no exclusive open, and system or internal disks are
/// allowed. Returns the path to open and the disk, when it is one.
pub fn resolve_for_reading(target: &Path) -> Result<(PathBuf, Option<Box<Disk>>), Failure> {
    match devices::resolve(&Roots::live(), target).map_err(fail)? {
        Resolved::File(p) => Ok((p, None)),
        Resolved::Disk { disk, .. } => Ok((disk.path.clone(), Some(disk))),
    }
}

/// The TARGETs given, or (none given) the one the user picks.
pub fn given_or_picked(targets: &[PathBuf]) -> Result<Vec<PathBuf>, Failure> {
    if targets.is_empty() {
        Ok(vec![pick(&Roots::live())?])
    } else {
        Ok(targets.to_vec())
    }
}

/// A TARGET resolved and checked by the rules, not yet opened.
enum Checked {
    File(devices::FileTarget),
    Disk(Box<Disk>),
}

/// Resolves every TARGET and checks the rules for writing `needed` bytes
/// of `image` to each, then confirms once, unmounts and opens every disk,
/// in argument order. Any refusal (a rule, a target that is or holds the
/// image, the same disk or file named twice, a declined confirmation, a
/// disk that cannot be opened) stops the whole job before anything is
/// written; with several targets the message names each refused one.
/// Guards opened before a later disk fails are released on return.
pub fn choose_all(
    targets: &[PathBuf],
    args: &DeviceArgs,
    yes: bool,
    image: &Path,
    image_len: u64,
    needed: u64,
) -> Result<Vec<Chosen>, Failure> {
    let roots = Roots::live();
    let policy = Policy {
        unmount: args.unmount,
        force: args.force,
    };
    // Where the image lives, found before any target is looked at: a
    // target that is the image, or holds it, is refused by the rules below.
    let site = devices::ImageSite::of(&roots, image).map_err(fail)?;
    let check_one = |target: &Path| -> Result<Checked, Failure> {
        match devices::resolve(&roots, target).map_err(fail)? {
            Resolved::File(p) => Ok(Checked::File(
                devices::check_file(&roots, &p, &site, policy).map_err(fail)?,
            )),
            Resolved::Disk { disk, .. } => {
                site.check_disk(&disk).map_err(fail)?;
                devices::check(&disk, needed, policy).map_err(fail)?;
                Ok(Checked::Disk(disk))
            }
        }
    };
    let mut checked = Vec::with_capacity(targets.len());
    let mut refused: Vec<(Exit, String)> = Vec::new();
    for target in targets {
        match check_one(target) {
            Ok(c) => checked.push((target, c)),
            Err(f) if targets.len() == 1 => return Err(f),
            Err(f) => refused.push((f.exit, format!("{}: {:#}", target.display(), f.error))),
        }
    }
    refused.extend(named_twice(&checked));
    if let Some((exit, _)) = refused.first() {
        return Err(Failure::new(
            *exit,
            anyhow::anyhow!(
                "{} of {} targets refused, nothing was written:\n  {}",
                refused.len(),
                targets.len(),
                refused
                    .iter()
                    .map(|(_, m)| m.as_str())
                    .collect::<Vec<_>>()
                    .join("\n  ")
            ),
        ));
    }
    let disks: Vec<&Disk> = checked
        .iter()
        .filter_map(|(_, c)| match c {
            Checked::Disk(d) => Some(&**d),
            Checked::File(_) => None,
        })
        .collect();
    // An existing non-empty file is someone's data (a download, with
    // IMAGE and TARGET swapped): asked for like a disk.
    let replaced: Vec<&devices::FileTarget> = checked
        .iter()
        .filter_map(|(_, c)| match c {
            Checked::File(f) if f.existing_len.is_some_and(|l| l > 0) => Some(f),
            _ => None,
        })
        .collect();
    if !yes && (!disks.is_empty() || !replaced.is_empty()) {
        confirm(&disks, &replaced, image, image_len, args.unmount)?;
    }
    let mut chosen = Vec::with_capacity(checked.len());
    for (_, c) in checked {
        chosen.push(match c {
            Checked::File(f) => {
                // Only with --force: the loop devices the file backs.
                if args.unmount {
                    for lo in &f.loops {
                        devices::unmount_all(&roots, lo).map_err(fail)?;
                    }
                }
                Chosen::File(f.given)
            }
            Checked::Disk(disk) => {
                if args.unmount {
                    devices::unmount_all(&roots, &disk).map_err(fail)?;
                }
                let guard = Guarded::open(&roots, &disk).map_err(fail)?;
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
fn named_twice(checked: &[(&PathBuf, Checked)]) -> Vec<(Exit, String)> {
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
            refused.push((
                Exit::Refused,
                format!(
                    "{} is the same {} as {}; name each target once",
                    target.display(),
                    if matches!(c, Checked::Disk(_)) {
                        "disk"
                    } else {
                        "file"
                    },
                    first.display()
                ),
            ));
        }
    }
    refused
}
