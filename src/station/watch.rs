//! Noticing disks that come and go: kernel uevents over a
//! `NETLINK_KOBJECT_UEVENT` socket wake the station at once, and a sysfs
//! rescan (`devices::enumerate`) every [`RESCAN`] finds what arrived where
//! no uevents are delivered (containers, a socket that could not be
//! opened), or all the time with polling forced.
//!
//! Uevents only say *that* something changed: what arrived is always
//! decided by comparing two enumerations ([`Snapshot::diff`]), so the two
//! paths cannot disagree. A disk is the same arrival while its name, device
//! number and `diskseq` (a counter the kernel bumps for every new medium,
//! and for every attach of a loop device) stay the same.

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use crate::devices::{DevNum, Disk, Roots};

/// How often sysfs is read again without a uevent.
pub const RESCAN: Duration = Duration::from_millis(1500);

/// What makes a disk the same arrival.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Key {
    pub dev: Option<DevNum>,
    pub diskseq: Option<u64>,
    pub size: u64,
}

impl Key {
    pub fn of(roots: &Roots, d: &Disk) -> Key {
        let seq = std::fs::read_to_string(roots.sys.join("block").join(&d.name).join("diskseq"))
            .ok()
            .and_then(|s| s.trim().parse().ok());
        Key {
            dev: d.dev,
            diskseq: seq,
            size: d.size_bytes,
        }
    }
}

/// The disks present at one enumeration, by kernel name.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub disks: BTreeMap<String, (Key, Disk)>,
}

/// What changed between two snapshots.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Diff {
    /// Names of disks that are new (or a new medium under an old name).
    pub arrived: Vec<String>,
    /// Names of disks that are gone (or replaced by a new medium).
    pub removed: Vec<String>,
}

impl Snapshot {
    /// The disks with a medium: a card reader without a card, or a disk
    /// being removed (its size already 0), is not there.
    pub fn take(roots: &Roots) -> Result<Snapshot, crate::devices::Error> {
        let disks = crate::devices::enumerate(roots)?
            .into_iter()
            .filter(|d| d.size_bytes > 0)
            .map(|d| (d.name.clone(), (Key::of(roots, &d), d)))
            .collect();
        Ok(Snapshot { disks })
    }

    /// From `self` (before) to `now`.
    pub fn diff(&self, now: &Snapshot) -> Diff {
        let mut d = Diff::default();
        for (name, (key, _)) in &self.disks {
            match now.disks.get(name) {
                Some((k, _)) if k == key => {}
                _ => d.removed.push(name.clone()),
            }
        }
        for (name, (key, _)) in &now.disks {
            match self.disks.get(name) {
                Some((k, _)) if k == key => {}
                _ => d.arrived.push(name.clone()),
            }
        }
        d
    }
}

/// One kernel uevent, as the kernel sends it: `ACTION@DEVPATH` then
/// `KEY=VALUE` fields, NUL-separated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Uevent {
    pub action: String,
    pub devpath: String,
    pub subsystem: Option<String>,
    pub devtype: Option<String>,
    pub devname: Option<String>,
}

impl Uevent {
    /// Parses a kernel uevent; `None` for anything else (udev's own
    /// re-broadcasts start with `libudev`).
    pub fn parse(msg: &[u8]) -> Option<Uevent> {
        let mut parts = msg.split(|b| *b == 0).filter(|p| !p.is_empty());
        let head = std::str::from_utf8(parts.next()?).ok()?;
        let (action, devpath) = head.split_once('@')?;
        let mut e = Uevent {
            action: action.into(),
            devpath: devpath.into(),
            ..Uevent::default()
        };
        for p in parts {
            let Ok(s) = std::str::from_utf8(p) else {
                continue;
            };
            match s.split_once('=') {
                Some(("SUBSYSTEM", v)) => e.subsystem = Some(v.into()),
                Some(("DEVTYPE", v)) => e.devtype = Some(v.into()),
                Some(("DEVNAME", v)) => e.devname = Some(v.into()),
                _ => {}
            }
        }
        Some(e)
    }

    /// A whole disk came, went or changed (a loop device attached is a
    /// `change` of an existing disk): worth a rescan.
    pub fn is_disk_event(&self) -> bool {
        self.subsystem.as_deref() == Some("block")
            && self.devtype.as_deref() == Some("disk")
            && matches!(self.action.as_str(), "add" | "remove" | "change")
    }
}

/// The kernel's uevent socket (multicast group 1: the kernel's own
/// events, not udev's).
pub struct Uevents {
    fd: OwnedFd,
}

impl Uevents {
    /// Opens and binds the socket. Fails where netlink is not allowed
    /// (some containers); the caller then polls.
    pub fn open() -> std::io::Result<Uevents> {
        // SAFETY: plain socket(2) call; the result is checked.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                libc::NETLINK_KOBJECT_UEVENT,
            )
        };
        if raw < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `raw` is a new descriptor owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_nl is plain data; all-zero is a valid value.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        addr.nl_groups = 1;
        // SAFETY: `addr` is a valid sockaddr_nl of the size given.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                &addr as *const libc::sockaddr_nl as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Uevents { fd })
    }

    /// Waits up to `timeout` for uevents and reads every one queued;
    /// returns true when one of them is about a whole disk.
    pub fn wait(&self, timeout: Duration) -> std::io::Result<bool> {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, ms) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            return if e.kind() == std::io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(e)
            };
        }
        let mut any = false;
        let mut buf = vec![0u8; 16 << 10];
        loop {
            // SAFETY: `buf` is valid for its length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EAGAIN) => break,
                    Some(libc::EINTR) => continue,
                    // Events were dropped: rescan to be sure.
                    Some(libc::ENOBUFS) => {
                        any = true;
                        continue;
                    }
                    _ => return Err(e),
                }
            }
            if n == 0 {
                break;
            }
            if Uevent::parse(&buf[..n as usize]).is_some_and(|e| e.is_disk_event()) {
                any = true;
            }
        }
        Ok(any)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_uevents_parse_and_udev_ones_do_not() {
        let msg = b"add@/devices/pci0000:00/0000:00:04.0/usb2/2-1/2-1:1.0/host2/target2:0:0/2:0:0:0/block/sda\0ACTION=add\0DEVPATH=/devices/pci0000:00/0000:00:04.0/usb2/2-1/2-1:1.0/host2/target2:0:0/2:0:0:0/block/sda\0SUBSYSTEM=block\0MAJOR=8\0MINOR=0\0DEVNAME=sda\0DEVTYPE=disk\0DISKSEQ=9\0SEQNUM=2345\0";
        let e = Uevent::parse(msg).unwrap();
        assert_eq!(e.action, "add");
        assert_eq!(e.devname.as_deref(), Some("sda"));
        assert!(e.is_disk_event());
        let part = b"add@/devices/x/block/sda/sda1\0ACTION=add\0SUBSYSTEM=block\0DEVNAME=sda1\0DEVTYPE=partition\0";
        assert!(!Uevent::parse(part).unwrap().is_disk_event());
        let usb = b"add@/devices/x/usb2/2-1\0ACTION=add\0SUBSYSTEM=usb\0DEVTYPE=usb_device\0";
        assert!(!Uevent::parse(usb).unwrap().is_disk_event());
        let bind = b"bind@/devices/x/block/sda\0SUBSYSTEM=block\0DEVTYPE=disk\0";
        assert!(!Uevent::parse(bind).unwrap().is_disk_event());
        // udev's re-broadcast: a binary header starting "libudev".
        assert!(Uevent::parse(b"libudev\0\xfe\xed\xca\xfe").is_none());
    }

    fn disk(name: &str) -> Disk {
        let root =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sysfs/laptop");
        crate::devices::enumerate(&Roots::under(&root))
            .unwrap()
            .into_iter()
            .find(|d| d.name == name)
            .unwrap()
    }

    #[test]
    fn a_new_medium_under_an_old_name_is_a_new_arrival() {
        let sdb = disk("sdb");
        let key = |seq| Key {
            dev: sdb.dev,
            diskseq: Some(seq),
            size: sdb.size_bytes,
        };
        let snap = |entries: &[(&str, u64)]| Snapshot {
            disks: entries
                .iter()
                .map(|(n, s)| (n.to_string(), (key(*s), sdb.clone())))
                .collect(),
        };
        let before = snap(&[("sdb", 1), ("sdc", 2)]);
        assert_eq!(before.diff(&before), Diff::default());
        let now = snap(&[("sdb", 3), ("sdd", 4)]);
        assert_eq!(
            before.diff(&now),
            Diff {
                arrived: vec!["sdb".into(), "sdd".into()],
                removed: vec!["sdb".into(), "sdc".into()],
            }
        );
    }

    /// A disk of size 0 (no medium, or going away) is not in a snapshot.
    #[test]
    fn disks_without_a_medium_are_not_present() {
        let d = tempfile::tempdir().unwrap();
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/sysfs/btrfs-swapfile");
        common_copy(&root, d.path());
        let roots = Roots::under(d.path());
        let before = Snapshot::take(&roots).unwrap();
        assert!(
            before.disks.contains_key("sda"),
            "{:?}",
            before.disks.keys()
        );
        // The stick's medium goes: the kernel sets its size to 0 first.
        let size = std::fs::canonicalize(d.path().join("sys/block/sda"))
            .unwrap()
            .join("size");
        std::fs::write(&size, "0\n").unwrap();
        let now = Snapshot::take(&roots).unwrap();
        assert!(!now.disks.contains_key("sda"));
        assert_eq!(before.diff(&now).removed, ["sda"]);
        assert!(before.diff(&now).arrived.is_empty());
    }

    /// `cp -a`: the tree's symlinks stay symlinks.
    fn common_copy(from: &std::path::Path, to: &std::path::Path) {
        let ok = std::process::Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", from.display()))
            .arg(to)
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }

    /// The socket opens here (root or not: receiving kernel uevents needs
    /// no privilege) and a wait with nothing happening returns.
    #[test]
    fn the_uevent_socket_opens_and_waits() {
        match Uevents::open() {
            Ok(u) => {
                let _ = u.wait(Duration::from_millis(10)).unwrap();
            }
            Err(e) => crate::test_support::skip("uevent socket", &format!("netlink refused: {e}")),
        }
    }
}
