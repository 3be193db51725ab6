//! The interactive side of choosing targets: the device flags, the picker
//! offered when no TARGET is given, and the confirmation question
//! (`bootstick::job::Confirm`). The rules themselves, resolving, unmounting
//! and the exclusive open are the library's (`bootstick::job::select`,
//! `docs/devices.md`).

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use super::disks::table;
use super::exit::{Exit, Failure};
use super::render::{for_stderr, human_bytes};
use bootstick::devices::{self, Disk, Roots};
use bootstick::job::{Action, Answer, Confirm, Summary};

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

fn fail(e: devices::Error) -> Failure {
    super::advice::device(e)
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

/// Whether a line (or the end of input) is waiting on stdin, within
/// `timeout`. A signal interrupting the wait counts as "not yet".
fn stdin_ready(timeout: std::time::Duration) -> bool {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let stdin = std::io::stdin();
    let mut fds = [PollFd::new(&stdin, PollFlags::IN)];
    let t = Timespec {
        tv_sec: timeout.as_secs() as _,
        tv_nsec: timeout.subsec_nanos() as _,
    };
    matches!(poll(&mut fds, Some(&t)), Ok(n) if n > 0)
}

/// The eligible disks now.
fn offered(roots: &Roots) -> Result<Vec<Disk>, Failure> {
    let disks = devices::enumerate(roots).map_err(fail)?;
    Ok(disks.into_iter().filter(devices::eligible).collect())
}

/// The numbered list the picker shows, under the table's header.
fn numbered(disks: &[Disk]) -> String {
    let refs: Vec<&Disk> = disks.iter().collect();
    let full = table(&refs);
    let (header, _) = full.split_once('\n').unwrap_or((&full, ""));
    let mut out = format!("    {header}\n");
    for (i, d) in disks.iter().enumerate() {
        let mut lines = describe(d).lines().map(str::to_owned).collect::<Vec<_>>();
        if let Some(first) = lines.first_mut() {
            *first = format!("{:<4}{first}", format!("[{}]", i + 1));
        }
        for l in lines.iter_mut().skip(1) {
            *l = format!("    {l}");
        }
        out.push_str(&lines.join("\n"));
        out.push('\n');
    }
    out
}

/// How often the picker looks for sticks plugged in or pulled out.
const RESCAN: std::time::Duration = std::time::Duration::from_secs(1);

/// Offers the eligible disks and lets the user choose one by number. Never
/// chooses by itself, even when only one disk qualifies. With none plugged
/// in it waits for one (Enter or Ctrl-C cancels); while the list is shown
/// it is redrawn when a stick is plugged in or pulled out; a number that is
/// not shown asks again.
fn pick(roots: &Roots) -> Result<PathBuf, Failure> {
    if !std::io::stdin().is_terminal() {
        return Err(Failure::new(
            Exit::Usage,
            anyhow::anyhow!(
                "no TARGET given and no terminal to offer a choice; name the disk (see `bootstick list`)"
            ),
        ));
    }
    let none_chosen = || {
        Failure::new(
            Exit::Declined,
            anyhow::anyhow!("no disk chosen; nothing was written"),
        )
    };
    let prompt = || {
        eprint!("Number of the disk to write (Enter to cancel): ");
        let _ = std::io::stderr().flush();
    };
    let mut shown: Option<Vec<Disk>> = None;
    let mut waiting = false;
    loop {
        let now = offered(roots)?;
        let paths = |d: &[Disk]| d.iter().map(|d| d.path.clone()).collect::<Vec<_>>();
        let changed = shown.as_deref().is_none_or(|s| paths(s) != paths(&now));
        if now.is_empty() {
            if changed && shown.is_some() {
                eprintln!();
            }
            if !waiting || changed {
                eprintln!(
                    "No removable or USB disk found: plug in a USB stick, or press Enter or Ctrl-C to cancel (`bootstick list --all` shows every disk)."
                );
                waiting = true;
            }
            shown = Some(now);
            if stdin_ready(RESCAN) {
                read_line();
                return Err(none_chosen());
            }
            continue;
        }
        if changed {
            if shown.is_some() {
                eprintln!();
            }
            eprintln!("Disks that can be written:");
            eprint!("{}", numbered(&now));
            prompt();
            shown = Some(now);
        }
        if !stdin_ready(RESCAN) {
            continue;
        }
        let answer = read_line();
        let list = shown.as_deref().unwrap_or_default();
        match answer.parse::<usize>() {
            Ok(n) if (1..=list.len()).contains(&n) => return Ok(list[n - 1].path.clone()),
            _ if answer.is_empty() => return Err(none_chosen()),
            _ => {
                eprintln!(
                    "{:?} is not one of the numbers shown (1 to {}).",
                    super::fs_choice::printable(&answer),
                    list.len()
                );
                prompt();
            }
        }
    }
}

/// What the job would erase and replace, for the question and refusals:
/// the disks, "this disk" / "these N disks", "it" / "them", the replaced
/// files with their sizes.
fn wording(s: &Summary) -> (String, String, &'static str, String) {
    let (what, these, them) = match s.disks.as_slice() {
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
        disks => (
            disks
                .iter()
                .map(|d| d.path.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            format!("these {} disks", disks.len()),
            "them",
        ),
    };
    let replaced: Vec<String> = s
        .files
        .iter()
        .map(|f| {
            let len = f.existing_len.unwrap_or(0);
            format!("{} ({}, {len} bytes)", f.given.display(), human_bytes(len))
        })
        .collect();
    (what, these, them, replaced.join(", "))
}

/// Asks once on the terminal before erasing the summary's disks and
/// replacing its existing non-empty files, listing each disk with what is
/// on it and each file with its size. Without a terminal nothing can be
/// asked: scripts must say `--yes`.
pub struct Prompt;

impl Confirm for Prompt {
    fn confirm(&mut self, s: &Summary) -> Answer {
        if !std::io::stdin().is_terminal() {
            return Answer::CannotAsk;
        }
        let (what, these, _, replaced) = wording(s);
        let (disks, files) = (&s.disks, &s.files);
        let mounted = disks.iter().any(|d| d.all_mountpoints().next().is_some());
        let listed = disks.iter().map(describe).collect::<String>();
        let onto = match (disks.is_empty(), files.as_slice()) {
            (false, []) => these.clone(),
            (true, [f]) => f.given.display().to_string(),
            (true, _) => format!("{} files", files.len()),
            (false, _) => format!("{these} and {} existing files", files.len()),
        };
        let head = match s.action {
            Action::Write => format!(
                "Write {} ({}) to {onto}?",
                s.image.display(),
                human_bytes(s.image_len)
            ),
            Action::Probe => format!("Probe {onto} by writing test patterns over all of it?"),
            Action::Format => format!("Format {onto} as a plain FAT32 drive?"),
            Action::Backup => format!("Back up {} into {onto}?", s.image.display()),
        };
        let unmounted = match (mounted && s.unmount, disks.len()) {
            (false, _) => "",
            (true, 1) => "Its mounted filesystems will be unmounted first.",
            (true, _) => "Their mounted filesystems will be unmounted first.",
        };
        let erased = if disks.is_empty() {
            String::new()
        } else {
            format!("EVERYTHING on {what} will be erased.")
        };
        let replaced = match files.len() {
            0 => String::new(),
            1 => format!("The existing file {replaced} will be replaced."),
            _ => format!("The existing files {replaced} will be replaced."),
        };
        // The sentences are broken at word boundaries to the terminal's
        // width; the disk table is laid out for it already.
        let mut text = for_stderr(&head) + "\n" + &listed;
        for line in [unmounted, &erased, &replaced] {
            if !line.is_empty() {
                text = text + &for_stderr(line) + "\n";
            }
        }
        eprint!("{text}Continue? [y/N] ");
        let _ = std::io::stderr().flush();
        if matches!(read_line().to_ascii_lowercase().as_str(), "y" | "yes") {
            Answer::Yes
        } else {
            Answer::No
        }
    }

    /// On a terminal the question names the mounted filesystems and says
    /// they will be unmounted: "yes" is the permission.
    fn grants_unmount(&self) -> bool {
        std::io::stdin().is_terminal()
    }
}

/// Why nothing was written when the confirmation was declined (`asked`)
/// or could not be asked.
pub fn declined(s: &Summary, asked: bool) -> String {
    if !asked {
        let (what, _, them, replaced) = wording(s);
        let doing = match (s.disks.is_empty(), s.files.len()) {
            (false, 0) => format!("writing to {what} erases everything on {them}"),
            (true, 1) => format!("the file {replaced} exists and would be replaced"),
            (true, _) => format!("the files {replaced} exist and would be replaced"),
            (false, _) => format!(
                "writing to {what} erases everything on {them} and replaces the existing {replaced}"
            ),
        };
        return format!("{doing}; no terminal to ask for confirmation, pass --yes to proceed");
    }
    let names: Vec<String> = s.names().iter().map(|p| p.display().to_string()).collect();
    let untouched = match names.as_slice() {
        [one] => format!("{one} was not touched"),
        _ => format!("none of {} was touched", names.join(", ")),
    };
    format!("not confirmed; {untouched}")
}

/// The TARGETs given, or (none given) the one the user picks.
pub fn given_or_picked(targets: &[PathBuf]) -> Result<Vec<PathBuf>, Failure> {
    if targets.is_empty() {
        Ok(vec![pick(&Roots::live())?])
    } else {
        Ok(targets.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The picker's list: the table's header once, each disk numbered in
    /// front of its row, its notes and partitions indented under it.
    #[test]
    fn the_picker_numbers_rows_under_one_header() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/sysfs/testbed-guest");
        let mut disks = offered(&Roots::under(&root)).unwrap();
        for d in &mut disks {
            d.path = PathBuf::from("/dev").join(&d.name);
        }
        let text = numbered(&disks);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("    PATH "), "{text}");
        assert_eq!(
            lines.iter().filter(|l| l.contains("PATH")).count(),
            1,
            "{text}"
        );
        assert!(lines[1].starts_with("[1] /dev/sda "), "{text}");
        assert!(
            lines.iter().any(|l| l.starts_with("[2] /dev/sdb ")),
            "{text}"
        );
        // Columns line up: the header's PATH over the rows' paths.
        assert_eq!(lines[0].find("PATH"), lines[1].find("/dev/sda"), "{text}");
        assert!(
            !text.contains("vda"),
            "the system disk is never offered: {text}"
        );
    }
}
