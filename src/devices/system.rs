//! System-disk detection: which whole disks hold a filesystem the running
//! system needs (`/`, `/boot`, `/boot/efi`, `/usr`, `/home`) or active swap.
//!
//! A mount is traced to its block device by the `major:minor` in mountinfo,
//! or, for filesystems that report a device number of their own (btrfs,
//! major 0), by the mount source. From there partitions lead to their disk
//! and dm/md devices (LVM, dm-crypt, RAID) to the disks of all their slaves,
//! so `/` on LVM on dm-crypt on `sda2` marks `sda`.

use super::enumerate::State;
use super::sysfs::Graph;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The mount points whose disks are never targets.
pub const SYSTEM_MOUNTPOINTS: [&str; 5] = ["/", "/boot", "/boot/efi", "/usr", "/home"];

/// The block device under a mount: by device number, else by source path.
pub(crate) fn mount_node(graph: &Graph, m: &super::mounts::Mount) -> Option<String> {
    if m.dev.major != 0 {
        if let Some(n) = graph.by_dev.get(&m.dev) {
            return Some(n.clone());
        }
    }
    if m.source.starts_with('/') {
        return graph.node_for_dev_path(Path::new(&m.source));
    }
    None
}

/// The node behind each active swap area: a swap partition or disk directly,
/// a swap file through the mount that holds it (longest mount-point prefix).
fn swap_targets(graph: &Graph, state: &State) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for s in &state.swaps {
        let node = if s.kind == "file" {
            state
                .mounts
                .iter()
                .filter(|m| s.path.starts_with(&m.mountpoint))
                .max_by_key(|m| m.mountpoint.as_os_str().len())
                .and_then(|m| mount_node(graph, m))
        } else {
            graph.node_for_dev_path(&s.path)
        };
        if let Some(n) = node {
            out.push((s.path.clone(), n));
        }
    }
    out
}

/// Nodes (partitions or disks) that are themselves active swap partitions.
pub(crate) fn swap_nodes(graph: &Graph, state: &State) -> BTreeSet<String> {
    state
        .swaps
        .iter()
        .filter(|s| s.kind != "file")
        .filter_map(|s| graph.node_for_dev_path(&s.path))
        .collect()
}

/// Whole disks that are system disks, each with the reasons.
pub(crate) fn system_disks(graph: &Graph, state: &State) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for point in SYSTEM_MOUNTPOINTS {
        // The last mount on a path is the one visible there.
        let Some(m) = state
            .mounts
            .iter()
            .rev()
            .find(|m| m.mountpoint == Path::new(point))
        else {
            continue;
        };
        if let Some(node) = mount_node(graph, m) {
            for disk in graph.underlying_disks(&node) {
                out.entry(disk).or_default().push(point.to_string());
            }
        }
    }
    for (path, node) in swap_targets(graph, state) {
        for disk in graph.underlying_disks(&node) {
            out.entry(disk)
                .or_default()
                .push(format!("swap {}", path.display()));
        }
    }
    out
}
