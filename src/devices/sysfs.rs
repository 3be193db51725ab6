//! The block-device graph read from sysfs: every disk, partition, dm and md
//! device under `<sys>/block`, with its `major:minor`, parent disk, slaves and
//! holders, plus the `/dev` links and udev database entries that name them.
//!
//! Everything is read relative to injectable roots ([`Roots`]) so tests can
//! run the enumerator on captured trees and the VM test-bed on a real guest.

use super::mounts::DevNum;
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

/// Where the enumerator reads the system's state from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Roots {
    /// sysfs (`/sys`).
    pub sys: PathBuf,
    /// The device directory (`/dev`); device paths reported are under it.
    pub dev: PathBuf,
    /// The mount table (`/proc/self/mountinfo`).
    pub mountinfo: PathBuf,
    /// Active swap areas (`/proc/swaps`).
    pub swaps: PathBuf,
    /// The udev database (`/run/udev/data`), optional: absent in containers
    /// and minimal initramfs guests.
    pub udev_data: PathBuf,
}

impl Roots {
    /// The running system.
    pub fn live() -> Roots {
        Roots {
            sys: "/sys".into(),
            dev: "/dev".into(),
            mountinfo: "/proc/self/mountinfo".into(),
            swaps: "/proc/swaps".into(),
            udev_data: "/run/udev/data".into(),
        }
    }

    /// A captured tree laid out like a root filesystem: `sys/`, `dev/`,
    /// `proc/self/mountinfo`, `proc/swaps`, `run/udev/data/`.
    pub fn under(root: &Path) -> Roots {
        Roots {
            sys: root.join("sys"),
            dev: root.join("dev"),
            mountinfo: root.join("proc/self/mountinfo"),
            swaps: root.join("proc/swaps"),
            udev_data: root.join("run/udev/data"),
        }
    }
}

/// Reads a sysfs attribute, trimmed; `None` when absent, unreadable or empty.
pub(crate) fn attr(dir: &Path, name: &str) -> Option<String> {
    let s = fs::read_to_string(dir.join(name)).ok()?;
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

/// Reads a numeric sysfs attribute.
pub(crate) fn attr_u64(dir: &Path, name: &str) -> Option<u64> {
    attr(dir, name)?.parse().ok()
}

/// One node of the block-device graph.
#[derive(Clone, Debug)]
pub(crate) struct Node {
    pub name: String,
    /// The node's sysfs directory (under `<sys>/block`).
    pub dir: PathBuf,
    /// The canonical sysfs device directory, relative to the sysfs root
    /// (`devices/pci0000:00/…/block/sdb`): what transport is derived from.
    pub devpath: String,
    pub dev: Option<DevNum>,
    /// For a partition: its whole disk.
    pub parent: Option<String>,
    pub slaves: Vec<String>,
    pub holders: Vec<String>,
    /// For a device-mapper node: its `/dev/mapper` name.
    pub dm_name: Option<String>,
}

/// A udev database entry (`/run/udev/data/b<maj>:<min>`).
#[derive(Clone, Debug, Default)]
pub(crate) struct UdevEntry {
    pub props: HashMap<String, String>,
    /// Symlinks relative to `/dev` (`disk/by-id/usb-…`).
    pub links: Vec<String>,
}

/// The whole graph plus the name lookups built around it.
#[derive(Debug)]
pub(crate) struct Graph {
    pub roots: Roots,
    pub nodes: BTreeMap<String, Node>,
    pub by_dev: HashMap<DevNum, String>,
    /// `/dev/disk/by-*` links per kernel name: (dir, link name).
    pub links: HashMap<String, Vec<(String, String)>>,
}

fn list_dir(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn make_node(roots: &Roots, name: &str, dir: PathBuf, parent: Option<String>) -> Node {
    let canon = fs::canonicalize(&dir).unwrap_or_else(|_| dir.clone());
    let sys = fs::canonicalize(&roots.sys).unwrap_or_else(|_| roots.sys.clone());
    let devpath = canon
        .strip_prefix(&sys)
        .unwrap_or(&canon)
        .to_string_lossy()
        .into_owned();
    Node {
        name: name.to_string(),
        devpath,
        dev: attr(&dir, "dev").and_then(|s| DevNum::parse(&s)),
        parent,
        slaves: list_dir(&dir.join("slaves")),
        holders: list_dir(&dir.join("holders")),
        dm_name: attr(&dir, "dm/name"),
        dir,
    }
}

impl Graph {
    /// Reads `<sys>/block` and every partition below it, and the `/dev/disk`
    /// links. Fails only when `<sys>/block` itself cannot be read.
    pub fn read(roots: &Roots) -> Result<Graph, super::Error> {
        let block = roots.sys.join("block");
        fs::read_dir(&block).map_err(|source| super::Error::Sysfs {
            path: block.clone(),
            cause: source,
        })?;
        let mut nodes = BTreeMap::new();
        for name in list_dir(&block) {
            let dir = block.join(&name);
            for sub in list_dir(&dir) {
                let pdir = dir.join(&sub);
                if pdir.join("partition").is_file() {
                    nodes.insert(
                        sub.clone(),
                        make_node(roots, &sub, pdir, Some(name.clone())),
                    );
                }
            }
            nodes.insert(name.clone(), make_node(roots, &name, dir, None));
        }
        let by_dev = nodes
            .values()
            .filter_map(|n| Some((n.dev?, n.name.clone())))
            .collect();
        let mut links: HashMap<String, Vec<(String, String)>> = HashMap::new();
        for kind in ["by-id", "by-path", "by-label"] {
            let d = roots.dev.join("disk").join(kind);
            for link in list_dir(&d) {
                if let Ok(target) = fs::read_link(d.join(&link)) {
                    if let Some(t) = target.file_name().and_then(|t| t.to_str()) {
                        links
                            .entry(t.to_string())
                            .or_default()
                            .push((kind.to_string(), link));
                    }
                }
            }
        }
        Ok(Graph {
            roots: roots.clone(),
            nodes,
            by_dev,
            links,
        })
    }

    /// The udev database entry of a node, if udev runs on this system.
    pub fn udev(&self, node: &Node) -> UdevEntry {
        let Some(dev) = node.dev else {
            return UdevEntry::default();
        };
        let path = self.roots.udev_data.join(format!("b{dev}"));
        let mut e = UdevEntry::default();
        if let Ok(text) = fs::read_to_string(path) {
            for line in text.lines() {
                if let Some(kv) = line.strip_prefix("E:") {
                    if let Some((k, v)) = kv.split_once('=') {
                        e.props.insert(k.to_string(), v.to_string());
                    }
                } else if let Some(l) = line.strip_prefix("S:") {
                    e.links.push(l.to_string());
                }
            }
        }
        e
    }

    /// `/dev/disk/<kind>` links of a node, from the link directories and the
    /// udev database, deduplicated and sorted.
    pub fn links_of(&self, node: &Node, udev: &UdevEntry, kind: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .links
            .get(&node.name)
            .into_iter()
            .flatten()
            .filter(|(k, _)| k == kind)
            .map(|(_, l)| l.clone())
            .collect();
        let prefix = format!("disk/{kind}/");
        v.extend(
            udev.links
                .iter()
                .filter_map(|l| l.strip_prefix(&prefix).map(str::to_string)),
        );
        v.sort();
        v.dedup();
        v
    }

    /// Every whole disk underneath a node: partitions go to their disk,
    /// dm/md devices to the disks of their slaves, recursively.
    pub fn underlying_disks(&self, name: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![name.to_string()];
        let mut seen = std::collections::HashSet::new();
        while let Some(n) = stack.pop() {
            if !seen.insert(n.clone()) {
                continue; // a cycle in a corrupt or crafted tree
            }
            let Some(node) = self.nodes.get(&n) else {
                continue;
            };
            if let Some(p) = &node.parent {
                stack.push(p.clone());
            } else if node.slaves.is_empty() {
                out.push(n);
            } else {
                stack.extend(node.slaves.iter().cloned());
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// The node a `/dev/…` path names: by `major:minor` when the node exists
    /// under the device root, else by its link target or its file name, and
    /// `/dev/mapper/<name>` by device-mapper name.
    pub fn node_for_dev_path(&self, path: &Path) -> Option<String> {
        let rel = path.strip_prefix("/dev").ok();
        let under = match rel {
            Some(r) => self.roots.dev.join(r),
            None => path.to_path_buf(),
        };
        if let Ok(meta) = fs::metadata(&under) {
            use std::os::unix::fs::{FileTypeExt, MetadataExt};
            if meta.file_type().is_block_device() {
                let rdev = meta.rdev();
                let dev = DevNum {
                    major: rustix::fs::major(rdev),
                    minor: rustix::fs::minor(rdev),
                };
                if let Some(n) = self.by_dev.get(&dev) {
                    return Some(n.clone());
                }
            }
        }
        if let Ok(canon) = fs::canonicalize(&under) {
            if let Some(n) = canon.file_name().and_then(|n| n.to_str()) {
                if self.nodes.contains_key(n) {
                    return Some(n.to_string());
                }
            }
        }
        if let Some(rel) = rel {
            if let Ok(mapper) = rel.strip_prefix("mapper") {
                let want = mapper.to_string_lossy();
                if let Some(n) = self
                    .nodes
                    .values()
                    .find(|n| n.dm_name.as_deref() == Some(&*want))
                {
                    return Some(n.name.clone());
                }
            }
            // A link such as /dev/disk/by-id/… that the device root lacks.
            if let Some(n) = self.links.iter().find_map(|(name, ls)| {
                ls.iter()
                    .any(|(k, l)| rel == Path::new("disk").join(k).join(l))
                    .then(|| name.clone())
            }) {
                return Some(n);
            }
        }
        let base = path.file_name()?.to_str()?;
        self.nodes.contains_key(base).then(|| base.to_string())
    }
}
