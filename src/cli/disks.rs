//! Disks for people: the table `list` prints, also shown by the write
//! confirmation and the picker (`cli::target`). Not a command.

use super::render::human_bytes;
use bootstick::devices::{self, Disk};

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

/// The table of `disks`, with a header line.
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
