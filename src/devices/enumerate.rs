//! Building the list of whole disks, with everything a user needs to pick the
//! right one and everything the safety rules need to refuse the wrong one.

use super::mounts::{parse_mountinfo, parse_swaps, DevNum, Mount, Swap};
use super::sysfs::{attr, attr_u64, Graph, Node, Roots, UdevEntry};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

/// The bus a disk is attached through, derived from its sysfs device path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Usb,
    Sata,
    Nvme,
    Mmc,
    Virtio,
    Scsi,
    Xen,
    Nbd,
    Loop,
    Ram,
    Zram,
    Unknown,
}

impl Transport {
    /// The lower-case name used in tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Usb => "usb",
            Transport::Sata => "sata",
            Transport::Nvme => "nvme",
            Transport::Mmc => "mmc",
            Transport::Virtio => "virtio",
            Transport::Scsi => "scsi",
            Transport::Xen => "xen",
            Transport::Nbd => "nbd",
            Transport::Loop => "loop",
            Transport::Ram => "ram",
            Transport::Zram => "zram",
            Transport::Unknown => "unknown",
        }
    }
}

/// What sort of block device a disk is. Only `Disk` is ever offered as a
/// target; the others are targets only when named explicitly by path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Disk,
    Loop,
    Ram,
    Zram,
    Optical,
}

/// A partition of a whole disk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Partition {
    pub name: String,
    pub path: PathBuf,
    pub dev: Option<DevNum>,
    /// The partition number (`partition` attribute).
    pub number: Option<u32>,
    pub start_bytes: u64,
    pub size_bytes: u64,
    pub fstype: Option<String>,
    pub label: Option<String>,
    pub mountpoints: Vec<PathBuf>,
    /// Devices stacked on this partition (dm-crypt, LVM, md).
    pub holders: Vec<String>,
    /// An active swap area.
    pub swap: bool,
}

/// A whole disk and what is on it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Disk {
    /// The kernel name (`sdb`, `nvme0n1`, `mmcblk0`).
    pub name: String,
    /// The device node (`/dev/sdb`).
    pub path: PathBuf,
    pub dev: Option<DevNum>,
    /// The preferred `/dev/disk/by-id` link: stable across re-plugging.
    pub by_id: Option<PathBuf>,
    pub by_path: Option<PathBuf>,
    pub transport: Transport,
    pub kind: Kind,
    /// Removable media: the kernel's flag, or an SD card (SDHCI readers
    /// report 0 although the card comes out).
    pub removable: bool,
    pub read_only: bool,
    pub vendor: Option<String>,
    pub model: Option<String>,
    pub serial: Option<String>,
    pub size_bytes: u64,
    pub logical_block_size: u64,
    pub physical_block_size: u64,
    /// A filesystem on the whole disk (an ISO written raw has one).
    pub fstype: Option<String>,
    pub label: Option<String>,
    /// Mount points of the whole disk itself (partitions list their own).
    pub mountpoints: Vec<PathBuf>,
    /// Devices stacked on the whole disk (dm, md).
    pub holders: Vec<String>,
    /// The whole disk is an active swap area.
    pub swap: bool,
    pub partitions: Vec<Partition>,
    /// Holds a filesystem the running system needs, or active swap; never a
    /// target.
    pub system: bool,
    /// Why the disk is a system disk (`/`, `/boot/efi`, `swap /dev/sda3`).
    pub system_reasons: Vec<String>,
    /// Shown without `--all`: a removable or USB-attached ordinary disk.
    pub listed_by_default: bool,
    /// The sysfs device path, relative to the sysfs root.
    pub sysfs_path: String,
    /// For a loop device: the file behind it.
    pub backing_file: Option<String>,
}

impl Disk {
    /// Every mount point on this disk, partitions' included.
    pub fn all_mountpoints(&self) -> impl Iterator<Item = &PathBuf> {
        self.mountpoints
            .iter()
            .chain(self.partitions.iter().flat_map(|p| p.mountpoints.iter()))
    }

    /// True when the disk or a partition is an active swap area.
    pub fn any_swap(&self) -> bool {
        self.swap || self.partitions.iter().any(|p| p.swap)
    }

    /// Holders of the disk and of its partitions, as (holder, held) pairs.
    pub fn all_holders(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = self
            .holders
            .iter()
            .map(|h| (h.clone(), self.name.clone()))
            .collect();
        for p in &self.partitions {
            v.extend(p.holders.iter().map(|h| (h.clone(), p.name.clone())));
        }
        v
    }
}

/// The mount tables and swap list, read once per enumeration.
pub(crate) struct State {
    pub mounts: Vec<Mount>,
    pub swaps: Vec<Swap>,
}

impl State {
    pub fn read(roots: &Roots) -> Result<State, super::Error> {
        let mounts =
            fs::read_to_string(&roots.mountinfo).map_err(|source| super::Error::Sysfs {
                path: roots.mountinfo.clone(),
                cause: source,
            })?;
        // /proc/swaps is missing without swap support: no swap then.
        let swaps = fs::read_to_string(&roots.swaps).unwrap_or_default();
        Ok(State {
            mounts: parse_mountinfo(&mounts),
            swaps: parse_swaps(&swaps),
        })
    }
}

/// Lists every whole disk (dm and md devices appear as holders, not disks;
/// unattached loop and ram devices of size 0 are left out).
pub fn enumerate(roots: &Roots) -> Result<Vec<Disk>, super::Error> {
    let graph = Graph::read(roots)?;
    let state = State::read(roots)?;
    Ok(build(&graph, &state))
}

pub(crate) fn build(graph: &Graph, state: &State) -> Vec<Disk> {
    let system = super::system::system_disks(graph, state);
    let swap_nodes = super::system::swap_nodes(graph, state);
    let mounts = mounts_by_node(graph, state);
    let mut disks = Vec::new();
    for node in graph.nodes.values() {
        if node.parent.is_some() || node.name.starts_with("dm-") || node.name.starts_with("md") {
            continue;
        }
        let kind = kind_of(node);
        let size_bytes = attr_u64(&node.dir, "size").unwrap_or(0).saturating_mul(512);
        if size_bytes == 0 && kind != Kind::Disk && kind != Kind::Optical {
            continue;
        }
        let mut disk = describe(graph, &mounts, node, kind, size_bytes);
        disk.swap = swap_nodes.contains(&node.name);
        for p in &mut disk.partitions {
            p.swap = swap_nodes.contains(&p.name);
        }
        if let Some(reasons) = system.get(&node.name) {
            disk.system = true;
            disk.system_reasons = reasons.clone();
        }
        disks.push(disk);
    }
    disks
}

fn kind_of(node: &Node) -> Kind {
    let n = node.name.as_str();
    if n.starts_with("loop") {
        Kind::Loop
    } else if n.starts_with("zram") {
        Kind::Zram
    } else if n.starts_with("ram") {
        Kind::Ram
    } else if n.starts_with("sr") || attr(&node.dir, "device/type").as_deref() == Some("5") {
        Kind::Optical
    } else {
        Kind::Disk
    }
}

/// The transport, from the components of the sysfs device path: a USB
/// controller anywhere above the disk wins (a USB-NVMe bridge is USB).
pub(crate) fn transport_of(name: &str, devpath: &str) -> Transport {
    let comps: Vec<&str> = devpath.split('/').collect();
    let numbered = |prefix: &str| {
        comps.iter().any(|c| {
            c.strip_prefix(prefix)
                .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()))
        })
    };
    if numbered("usb") {
        Transport::Usb
    } else if name.starts_with("nvme") || comps.contains(&"nvme") {
        Transport::Nvme
    } else if name.starts_with("mmcblk") || comps.contains(&"mmc_host") {
        Transport::Mmc
    } else if name.starts_with("loop") {
        Transport::Loop
    } else if name.starts_with("zram") {
        Transport::Zram
    } else if name.starts_with("ram") {
        Transport::Ram
    } else if name.starts_with("nbd") {
        Transport::Nbd
    } else if numbered("ata") {
        Transport::Sata
    } else if numbered("virtio") && !comps.iter().any(|c| c.starts_with("host")) {
        Transport::Virtio
    } else if name.starts_with("xvd") || comps.iter().any(|c| c.starts_with("vbd-")) {
        Transport::Xen
    } else if comps.iter().any(|c| c.starts_with("host")) {
        Transport::Scsi
    } else {
        Transport::Unknown
    }
}

/// Decodes udev's `\xHH` escapes (`MY\x20STICK`).
pub(crate) fn unescape_udev(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && b.get(i + 1) == Some(&b'x') && i + 3 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 2]), hex(b[i + 3])) {
                out.push((h * 16 + l) as u8);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Picks the most human-meaningful by-id link: bus-named links
/// (`usb-…`, `ata-…`, `nvme-<model>_<serial>`) before WWN/EUI ones.
fn preferred_by_id(links: &[String]) -> Option<&String> {
    let opaque = |l: &str| {
        [
            "wwn-",
            "nvme-eui.",
            "nvme-nvme.",
            "scsi-0",
            "scsi-1",
            "scsi-3",
            "scsi-S",
        ]
        .iter()
        .any(|p| l.starts_with(p))
    };
    links
        .iter()
        .min_by_key(|l| (opaque(l), l.len(), (*l).clone()))
}

/// The first USB device directory above a sysfs path (one with `idVendor`).
fn usb_device_dir(sys: &Path, devpath: &str) -> Option<PathBuf> {
    let mut p = Path::new(devpath);
    while let Some(parent) = p.parent() {
        let dir = sys.join(parent);
        if dir.join("idVendor").is_file() {
            return Some(dir);
        }
        p = parent;
    }
    None
}

/// The serial from SCSI VPD page 0x80 (unit serial number).
fn vpd_serial(dir: &Path) -> Option<String> {
    let b = fs::read(dir.join("device/vpd_pg80")).ok()?;
    if b.len() < 4 || b[1] != 0x80 {
        return None;
    }
    let len = u16::from_be_bytes([b[2], b[3]]) as usize;
    let s = String::from_utf8_lossy(b.get(4..4 + len.min(b.len() - 4))?);
    let s = s.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    (!s.is_empty()).then(|| s.to_string())
}

fn nonempty(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

fn label_of(graph: &Graph, node: &Node, udev: &UdevEntry) -> Option<String> {
    if let Some(l) = udev.props.get("ID_FS_LABEL_ENC") {
        return Some(unescape_udev(l));
    }
    if let Some(l) = graph.links_of(node, udev, "by-label").first() {
        return Some(unescape_udev(l));
    }
    udev.props.get("ID_FS_LABEL").cloned()
}

/// Mounts per block-device node: by device number, or by source for
/// filesystems with an anonymous device number (btrfs).
pub(crate) fn mounts_by_node<'a>(
    graph: &Graph,
    state: &'a State,
) -> HashMap<String, Vec<&'a Mount>> {
    let mut map: HashMap<String, Vec<&Mount>> = HashMap::new();
    for m in &state.mounts {
        if let Some(n) = super::system::mount_node(graph, m) {
            map.entry(n).or_default().push(m);
        }
    }
    map
}

fn mounts_of(mounts: &HashMap<String, Vec<&Mount>>, name: &str) -> (Vec<PathBuf>, Option<String>) {
    let ms: &[&Mount] = mounts.get(name).map_or(&[], |v| v.as_slice());
    let mut points: Vec<PathBuf> = ms.iter().map(|m| m.mountpoint.clone()).collect();
    points.sort();
    points.dedup();
    (points, ms.first().map(|m| m.fstype.clone()))
}

fn describe(
    graph: &Graph,
    mounts: &HashMap<String, Vec<&Mount>>,
    node: &Node,
    kind: Kind,
    size_bytes: u64,
) -> Disk {
    let roots = &graph.roots;
    let udev = graph.udev(node);
    let transport = transport_of(&node.name, &node.devpath);
    let usb = usb_device_dir(&roots.sys, &node.devpath);
    let dir = &node.dir;

    // SATA disks report the SCSI-translation vendor "ATA", virtio a PCI id.
    let vendor = nonempty(attr(dir, "device/vendor"))
        .filter(|v| v != "ATA" && !v.starts_with("0x"))
        .or_else(|| udev.props.get("ID_VENDOR").cloned())
        .or_else(|| usb.as_ref().and_then(|u| attr(u, "manufacturer")));
    let model = nonempty(attr(dir, "device/model"))
        .or_else(|| attr(dir, "device/name")) // mmc
        .or_else(|| udev.props.get("ID_MODEL").cloned())
        .or_else(|| usb.as_ref().and_then(|u| attr(u, "product")));
    let serial = udev
        .props
        .get("ID_SERIAL_SHORT")
        .cloned()
        .or_else(|| attr(dir, "serial")) // virtio
        .or_else(|| usb.as_ref().and_then(|u| attr(u, "serial")))
        .or_else(|| attr(dir, "device/serial")) // nvme, mmc
        .or_else(|| vpd_serial(dir));

    let mmc_sd = transport == Transport::Mmc && attr(dir, "device/type").as_deref() == Some("SD");
    let removable = attr(dir, "removable").as_deref() == Some("1") || mmc_sd;
    let ids = graph.links_of(node, &udev, "by-id");
    let paths = graph.links_of(node, &udev, "by-path");
    let by_link = |kind: &str, l: &String| roots.dev.join("disk").join(kind).join(l);

    let mut partitions: Vec<Partition> = graph
        .nodes
        .values()
        .filter(|p| p.parent.as_deref() == Some(&node.name))
        .map(|p| {
            let pu = graph.udev(p);
            let (mountpoints, mfs) = mounts_of(mounts, &p.name);
            Partition {
                name: p.name.clone(),
                path: roots.dev.join(&p.name),
                dev: p.dev,
                number: attr(&p.dir, "partition").and_then(|s| s.parse().ok()),
                start_bytes: attr_u64(&p.dir, "start").unwrap_or(0).saturating_mul(512),
                size_bytes: attr_u64(&p.dir, "size").unwrap_or(0).saturating_mul(512),
                fstype: pu.props.get("ID_FS_TYPE").cloned().or(mfs),
                label: label_of(graph, p, &pu),
                mountpoints,
                holders: p.holders.clone(),
                swap: false,
            }
        })
        .collect();
    partitions.sort_by_key(|p| (p.number, p.name.clone()));

    let (mountpoints, mfs) = mounts_of(mounts, &node.name);
    let listed_by_default = kind == Kind::Disk && (removable || transport == Transport::Usb);
    Disk {
        name: node.name.clone(),
        path: roots.dev.join(&node.name),
        dev: node.dev,
        by_id: preferred_by_id(&ids).map(|l| by_link("by-id", l)),
        by_path: paths.first().map(|l| by_link("by-path", l)),
        transport,
        kind,
        removable,
        read_only: attr(dir, "ro").as_deref() == Some("1"),
        vendor,
        model,
        serial,
        size_bytes,
        logical_block_size: attr_u64(dir, "queue/logical_block_size").unwrap_or(512),
        physical_block_size: attr_u64(dir, "queue/physical_block_size").unwrap_or(512),
        fstype: udev.props.get("ID_FS_TYPE").cloned().or(mfs),
        label: label_of(graph, node, &udev),
        mountpoints,
        holders: node.holders.clone(),
        swap: false,
        partitions,
        system: false,
        system_reasons: Vec::new(),
        listed_by_default,
        sysfs_path: node.devpath.clone(),
        backing_file: attr(dir, "loop/backing_file"),
    }
}

/// Disks grouped by name, for callers that look disks up.
pub fn by_name(disks: Vec<Disk>) -> BTreeMap<String, Disk> {
    disks.into_iter().map(|d| (d.name.clone(), d)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transports_from_device_paths() {
        let t = transport_of;
        assert_eq!(
            t("sdb", "devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host6/target6:0:0/6:0:0:0/block/sdb"),
            Transport::Usb
        );
        assert_eq!(
            t(
                "sda",
                "devices/pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0/block/sda"
            ),
            Transport::Sata
        );
        assert_eq!(
            t(
                "nvme0n1",
                "devices/pci0000:00/0000:00:1d.0/0000:3d:00.0/nvme/nvme0/nvme0n1"
            ),
            Transport::Nvme
        );
        assert_eq!(
            t(
                "mmcblk0",
                "devices/pci0000:00/0000:00:14.5/mmc_host/mmc0/mmc0:aaaa/block/mmcblk0"
            ),
            Transport::Mmc
        );
        assert_eq!(
            t("vda", "devices/pci0000:00/0000:00:02.0/virtio1/block/vda"),
            Transport::Virtio
        );
        assert_eq!(
            t(
                "sda",
                "devices/pci0000:00/0000:00:03.0/virtio0/host2/target2:0:0/2:0:0:0/block/sda"
            ),
            Transport::Scsi
        );
        assert_eq!(t("loop0", "devices/virtual/block/loop0"), Transport::Loop);
        assert_eq!(t("zram0", "devices/virtual/block/zram0"), Transport::Zram);
        assert_eq!(
            t("weird", "devices/virtual/block/weird"),
            Transport::Unknown
        );
        // "usbmon" or "usb" without a number is not a USB controller.
        assert_eq!(t("x", "devices/usb/block/x"), Transport::Unknown);
    }

    #[test]
    fn udev_escapes_decode() {
        assert_eq!(unescape_udev("MY\\x20STICK"), "MY STICK");
        assert_eq!(unescape_udev("a\\x2"), "a\\x2");
        assert_eq!(unescape_udev("a\\xzz"), "a\\xzz");
    }

    #[test]
    fn by_id_prefers_bus_names() {
        let l = vec![
            "wwn-0x5002538e40a0b1c2".to_string(),
            "ata-Samsung_SSD_860_EVO_S3Z1NB0K123456".to_string(),
        ];
        assert_eq!(preferred_by_id(&l).unwrap(), &l[1]);
    }
}
