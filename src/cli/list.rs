//! `bootstick list`: the disks that could be written, as a table or JSON.

use super::exit::{Exit, Failure};
use super::render::human_bytes;
use bootstick::devices::{self, Disk, Roots};
use std::path::PathBuf;

/// List disks that can be written (removable or USB-attached ones by default).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Show every disk, including internal and system disks (marked SYSTEM),
    /// loop and optical devices.
    #[arg(long)]
    pub all: bool,
    /// Print a JSON array (schema in docs/cli.md) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Read sysfs, /dev, /proc and /run/udev under this directory instead of
    /// the running system (captured trees, tests).
    #[arg(long, hide = true, value_name = "DIR")]
    pub root: Option<PathBuf>,
}

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

fn describe_part(p: &devices::Partition) -> String {
    let mut s = format!("  {:<12} {:>10}", p.name, human_bytes(p.size_bytes));
    if let Some(fs) = &p.fstype {
        s.push_str(&format!("  {fs}"));
    }
    if let Some(l) = &p.label {
        s.push_str(&format!("  \"{l}\""));
    }
    for m in &p.mountpoints {
        s.push_str(&format!("  mounted on {}", m.display()));
    }
    if p.swap {
        s.push_str("  swap");
    }
    if !p.holders.is_empty() {
        s.push_str(&format!("  in use by {}", p.holders.join(",")));
    }
    s
}

/// The table `list` prints, also used by the write confirmation and picker.
pub fn table(disks: &[&Disk]) -> String {
    let mut out = format!(
        "{:<14} {:>10}  {:<9} {:<28} {:<20} NOTES\n",
        "PATH", "SIZE", "TRANSPORT", "MODEL", "SERIAL"
    );
    for d in disks {
        let model = [d.vendor.as_deref(), d.model.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        out.push_str(&format!(
            "{:<14} {:>10}  {:<9} {:<28} {:<20} {}\n",
            d.path.display(),
            human_bytes(d.size_bytes),
            d.transport.name(),
            if model.is_empty() { "-".into() } else { model },
            d.serial.as_deref().unwrap_or("-"),
            notes(d).join("; ")
        ));
        if d.fstype.is_some() || d.label.is_some() || !d.mountpoints.is_empty() {
            let whole = devices::Partition {
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
            };
            out.push_str(&describe_part(&whole));
            out.push('\n');
        }
        for p in &d.partitions {
            out.push_str(&describe_part(p));
            out.push('\n');
        }
    }
    out
}

pub fn run(args: Args) -> Result<(), Failure> {
    let out = super::render::Renderer::report(args.json);
    out.start("list", serde_json::json!({ "all": args.all }));
    let roots = args.root.as_deref().map_or_else(Roots::live, Roots::under);
    let disks = devices::enumerate(&roots).map_err(|e| Failure::new(Exit::Internal, e))?;
    let shown: Vec<&Disk> = disks
        .iter()
        .filter(|d| args.all || d.listed_by_default)
        .collect();
    if args.json {
        out.document(serde_json::json!({ "disks": shown }));
    } else if shown.is_empty() {
        eprintln!(
            "no removable or USB disks found ({} disks in all; `bootstick list --all` shows them)",
            disks.len()
        );
    } else {
        print!("{}", table(&shown));
    }
    Ok(())
}
