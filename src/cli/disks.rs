//! Disks for people: the table `list` prints, also shown by the write
//! confirmation and the picker (`cli::target`). Not a command.

use super::render::human_bytes;
use bootstick::devices::{self, Disk};

/// Above this a disk is flagged as large (128 GiB: few sticks are bigger).
const LARGE: u64 = 128 << 30;

/// What a user must know about a disk besides its name and size.
pub fn notes(d: &Disk) -> Vec<String> {
    let mut n = Vec::new();
    if d.system {
        n.push(format!("SYSTEM ({})", d.system_reasons.join(", ")));
    }
    if d.read_only {
        n.push("read-only".into());
    }
    if d.removable {
        n.push("removable".into());
    }
    // Sticks are small and removable; a large or fixed USB disk is more
    // often someone's backup drive: say so before it is chosen by reflex.
    if !d.system && d.transport == devices::Transport::Usb && !d.removable {
        n.push("USB SSD or hard disk?".into());
    }
    if !d.system && d.size_bytes > LARGE {
        n.push(format!(
            "large ({}): a backup drive?",
            human_bytes(d.size_bytes)
        ));
    }
    if d.kind != devices::Kind::Disk {
        n.push(format!("{:?}", d.kind).to_lowercase());
    }
    if d.any_swap() {
        n.push("swap".into());
    }
    let holders = d.all_holders();
    if !holders.is_empty() {
        let h: Vec<String> = holders.iter().map(|(h, _)| h.clone()).collect();
        n.push(format!("in use by {}", h.join(",")));
    }
    n
}

/// The width tables are laid out for: the terminal's, when stdout is one;
/// else `$COLUMNS`; else 80.
pub fn width() -> usize {
    use std::io::IsTerminal;
    let stdout = std::io::stdout();
    if stdout.is_terminal() {
        if let Ok(ws) = rustix::termios::tcgetwinsize(&stdout) {
            if ws.ws_col >= 40 {
                return ws.ws_col.into();
            }
        }
    }
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse::<usize>().ok())
        .filter(|&c| c >= 40)
        .unwrap_or(80)
}

/// The table `list` prints, also shown by the write confirmation and the
/// picker, laid out for [`width`].
pub fn table(disks: &[&Disk]) -> String {
    table_for(disks, width())
}

/// `text` cut to `max` columns, with `…` when it was longer.
fn fit(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut s: String = text.chars().take(max.saturating_sub(1)).collect();
    s.push('…');
    s
}

/// `words` (already split where a break is allowed), joined by `sep`, as
/// lines of at most `width` columns, each starting with `indent`; a word
/// longer than a line gets a line of its own rather than being split.
fn wrap(words: &[String], sep: &str, indent: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for w in words {
        let len = |s: &str| s.chars().count();
        if !line.is_empty() && len(&line) + len(sep) + len(w) > width {
            lines.push(std::mem::take(&mut line));
        }
        if line.is_empty() {
            line.push_str(indent);
        } else {
            line.push_str(sep);
        }
        line.push_str(w);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// The table for a terminal `width` columns wide. Columns are as wide as
/// their contents; paths and serial numbers are never cut (a serial is how a
/// stick is told apart); the model takes what is left and is cut with `…`
/// only when the rest would not fit; notes follow on the same line when
/// they fit, else on indented lines of their own, as do partition details.
pub fn table_for(disks: &[&Disk], width: usize) -> String {
    let model = |d: &Disk| {
        let m = [d.vendor.as_deref(), d.model.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        if m.is_empty() {
            "-".to_string()
        } else {
            m
        }
    };
    let cols = |f: &dyn Fn(&Disk) -> String, head: &str| {
        disks
            .iter()
            .map(|d| f(d).chars().count())
            .chain(std::iter::once(head.len()))
            .max()
            .unwrap_or(0)
    };
    let path = |d: &Disk| d.path.display().to_string();
    let size = |d: &Disk| human_bytes(d.size_bytes);
    let transport = |d: &Disk| d.transport.name().to_string();
    let serial = |d: &Disk| d.serial.clone().unwrap_or_else(|| "-".into());
    let (wp, ws, wt, wserial) = (
        cols(&path, "PATH"),
        cols(&size, "SIZE"),
        cols(&transport, "BUS"),
        cols(&serial, "SERIAL"),
    );
    // The fixed columns, and room for the NOTES heading after them.
    let fixed = wp + 1 + ws + 2 + wt + 1 + 1 + wserial + "  NOTES".len();
    let wmodel = cols(&model, "MODEL").min(width.saturating_sub(fixed).max(12));
    let row = |p: &str, s: &str, t: &str, m: &str, se: &str| {
        format!("{p:<wp$} {s:>ws$}  {t:<wt$} {m:<wmodel$} {se:<wserial$}")
    };
    let mut out = row("PATH", "SIZE", "BUS", "MODEL", "SERIAL");
    out.push_str("  NOTES\n");
    for d in disks {
        let line = row(
            &path(d),
            &size(d),
            &transport(d),
            &fit(&model(d), wmodel),
            &serial(d),
        );
        let notes = notes(d);
        let inline = notes.join("; ");
        if notes.is_empty() {
            out.push_str(line.trim_end());
        } else if line.chars().count() + 2 + inline.chars().count() <= width {
            out.push_str(&format!("{line}  {inline}"));
        } else {
            out.push_str(line.trim_end());
            out.push('\n');
            out.push_str(&wrap(&notes, "; ", "    ", width).join("\n"));
        }
        out.push('\n');
        let mut parts: Vec<devices::Partition> = Vec::new();
        if d.fstype.is_some() || d.label.is_some() || !d.mountpoints.is_empty() {
            parts.push(devices::Partition {
                name: "(whole)".into(),
                path: d.path.clone(),
                dev: d.dev,
                number: None,
                start_bytes: 0,
                size_bytes: d.size_bytes,
                fstype: d.fstype.clone(),
                label: d.label.clone(),
                mountpoints: d.mountpoints.clone(),
                holders: Vec::new(),
                swap: d.swap,
            });
        }
        parts.extend(d.partitions.iter().cloned());
        for p in &parts {
            out.push_str(&wrap(&part_words(p), "  ", "  ", width).join("\n      "));
            out.push('\n');
        }
    }
    out
}

/// A partition's line as the pieces a line may break between: the name
/// and size first (kept together), then filesystem, label, mounts, swap,
/// holders.
fn part_words(p: &devices::Partition) -> Vec<String> {
    let mut w = vec![format!("{:<12} {:>10}", p.name, human_bytes(p.size_bytes))];
    if let Some(fs) = &p.fstype {
        w.push(fs.clone());
    }
    if let Some(l) = &p.label {
        w.push(format!("\"{l}\""));
    }
    for m in &p.mountpoints {
        w.push(format!("mounted on {}", m.display()));
    }
    if p.swap {
        w.push("swap".into());
    }
    if !p.holders.is_empty() {
        w.push(format!("in use by {}", p.holders.join(",")));
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;
    use bootstick::devices::Roots;
    use std::path::PathBuf;

    fn fixture(name: &str) -> Vec<Disk> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/sysfs")
            .join(name);
        let mut disks = devices::enumerate(&Roots::under(&root)).unwrap();
        // As on a live system: /dev/NAME, not the fixture's directory.
        for d in &mut disks {
            d.path = PathBuf::from("/dev").join(&d.name);
        }
        disks
    }

    /// A fixed USB disk or a large one is flagged (a backup drive picked by
    /// reflex is the worst mistake); a stick, the system disk and an
    /// internal disk are not flagged so.
    #[test]
    fn large_and_fixed_usb_disks_are_flagged() {
        let disks = fixture("laptop");
        let notes_of = |name: &str| notes(disks.iter().find(|d| d.name == name).unwrap());
        let ssd = notes_of("sdc");
        assert!(ssd.iter().any(|n| n == "USB SSD or hard disk?"), "{ssd:?}");
        assert!(
            ssd.iter().any(|n| n.starts_with("large (1000.0 GiB)")),
            "{ssd:?}"
        );
        assert!(notes_of("sdb").iter().all(|n| !n.contains('?')), "a stick");
        assert!(
            notes_of("sda").iter().all(|n| !n.contains('?')),
            "the system disk"
        );
        assert!(notes_of("nvme0n1").iter().any(|n| n.starts_with("large (")));
    }

    /// Every disk of every captured tree, at 80 columns: no line is wider,
    /// and each serial and path is on one line, whole (the old table was
    /// 91–97 columns wide for `list --all`, and a terminal split serials).
    #[test]
    fn list_all_fits_80_columns_and_never_splits_a_serial() {
        for tree in ["laptop", "btrfs-swapfile", "testbed-guest"] {
            let disks = fixture(tree);
            let all: Vec<&Disk> = disks.iter().collect();
            for width in [80, 100] {
                let t = table_for(&all, width);
                for line in t.lines() {
                    assert!(
                        line.chars().count() <= width,
                        "{tree} at {width}: {} columns: {line:?}\n{t}",
                        line.chars().count()
                    );
                }
                for d in &all {
                    let head = t
                        .lines()
                        .find(|l| l.starts_with(&format!("{} ", d.path.display())))
                        .unwrap_or_else(|| panic!("{tree}: no line for {}:\n{t}", d.name));
                    if let Some(s) = &d.serial {
                        assert!(head.contains(s.as_str()), "{tree}: {s} split:\n{t}");
                    }
                }
            }
        }
    }

    /// With room to spare, a disk and its notes are one line and the model
    /// is whole; at 80 columns a long model is cut with `…`.
    #[test]
    fn the_width_is_used_when_there_is_more() {
        let disks = fixture("laptop");
        let all: Vec<&Disk> = disks.iter().collect();
        let wide = table_for(&all, 200);
        let sda = wide.lines().find(|l| l.starts_with("/dev/sda ")).unwrap();
        assert!(sda.contains("SYSTEM ("), "{wide}");
        assert!(wide.contains("Samsung SSD 970 EVO Plus 1TB"), "{wide}");
        let narrow = table_for(&all, 80);
        let sda_next = narrow
            .lines()
            .skip_while(|l| !l.starts_with("/dev/sda "))
            .nth(1)
            .unwrap();
        assert!(sda_next.trim_start().starts_with("SYSTEM ("), "{narrow}");
    }
}
