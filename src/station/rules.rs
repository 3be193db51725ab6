//! Which arriving disks a station writes: a pure function of the disk's
//! enumerated facts ([`Disk`]), what its first bytes hold ([`Content`],
//! from [`super::content::probe`]) and the rules the user gave ([`Rules`]).
//!
//! The station writes without asking, so the rules are strict and each
//! decision carries a typed reason (docs/station.md, "Rules"):
//!
//! 1. only ordinary removable or USB whole disks ([`Skip::NotAStick`]);
//!    loop devices only when a test named their backing directory;
//! 2. every refusal rule of `write` ([`crate::devices::check`]: never the
//!    system disk, never read-only, never mounted, swap or held, never too
//!    small), with no override: a station never unmounts and never forces;
//! 3. `--port` globs over the by-path link, `--match` over vendor, model and
//!    size;
//! 4. the content guard: a file system other than ISO 9660, UDF, FAT or
//!    exFAT, or an LVM, LUKS or RAID signature, or a size over the maximum
//!    means someone's data ([`Skip::Holds`], [`Skip::TooLarge`]); only this
//!    rule is lifted by `take_any`.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::content::{Content, Finding};
use crate::devices::{self, Disk, Kind, Transport};

/// 256 GB: larger disks are backup drives more often than sticks.
pub const DEFAULT_MAX_SIZE: u64 = 256_000_000_000;

/// What the user allowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rules {
    /// `/dev/disk/by-path` globs (the link's file name, or its whole
    /// path); empty: any port.
    pub ports: Vec<String>,
    pub matches: Match,
    /// The content guard's size limit.
    pub max_size: u64,
    /// Lifts the content guard (file systems, signatures, `max_size`) —
    /// and nothing else.
    pub take_any: bool,
    /// Loop devices whose backing file is in this directory count as
    /// USB sticks (tests only: real sticks cannot be made on demand).
    pub loop_backing_dir: Option<PathBuf>,
}

impl Default for Rules {
    fn default() -> Rules {
        Rules {
            ports: Vec::new(),
            matches: Match::default(),
            max_size: DEFAULT_MAX_SIZE,
            take_any: false,
            loop_backing_dir: None,
        }
    }
}

/// `--match vendor=…,model=…,min-size=…,max-size=…`: every given field
/// must hold. Vendor and model are case-insensitive globs (`*`, `?`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Match {
    pub vendor: Option<String>,
    pub model: Option<String>,
    pub min_size: Option<u64>,
    pub max_size: Option<u64>,
}

/// A `--match` or size that cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("{given:?} is not a size (a number of bytes, or with K, M, G, T (powers of 1000) or KiB, MiB, GiB, TiB)")]
    Size { given: String },
    #[error("{given:?} is not a key=value pair")]
    Pair { given: String },
    #[error("unknown key {key:?} (known: vendor, model, min-size, max-size)")]
    Key { key: String },
}

/// Reads a size: bytes, or a number with a decimal (`K`, `M`, `G`, `T`,
/// optionally followed by `B`) or binary (`KiB`, `MiB`, `GiB`, `TiB`)
/// suffix, as disk vendors and `lsblk` write them.
pub fn parse_size(s: &str) -> Result<u64, ParseError> {
    let err = || ParseError::Size { given: s.into() };
    let t = s.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "t" | "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => return Err(err()),
    };
    if num.is_empty() {
        return Err(err());
    }
    if let Ok(n) = num.parse::<u64>() {
        return n.checked_mul(mult).ok_or_else(err);
    }
    let f: f64 = num.parse().map_err(|_| err())?;
    let v = f * mult as f64;
    if !(0.0..1.8e19).contains(&v) {
        return Err(err());
    }
    Ok(v.round() as u64)
}

impl Match {
    /// Reads `vendor=…,model=…,min-size=…,max-size=…` (any subset).
    pub fn parse(s: &str) -> Result<Match, ParseError> {
        let mut m = Match::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| ParseError::Pair { given: part.into() })?;
            match k.trim() {
                "vendor" => m.vendor = Some(v.trim().into()),
                "model" => m.model = Some(v.trim().into()),
                "min-size" => m.min_size = Some(parse_size(v)?),
                "max-size" => m.max_size = Some(parse_size(v)?),
                key => return Err(ParseError::Key { key: key.into() }),
            }
        }
        Ok(m)
    }

    /// Merges another `--match` into this one (later fields win).
    pub fn and(mut self, o: Match) -> Match {
        self.vendor = o.vendor.or(self.vendor);
        self.model = o.model.or(self.model);
        self.min_size = o.min_size.or(self.min_size);
        self.max_size = o.max_size.or(self.max_size);
        self
    }
}

/// Why an arriving disk is not written. Every variant names what was found.
#[derive(Debug, Serialize)]
#[serde(tag = "rule", rename_all = "kebab-case")]
pub enum Skip {
    /// Not an ordinary removable or USB-attached disk.
    NotAStick {
        transport: Transport,
        kind: Kind,
        removable: bool,
    },
    /// A refusal rule of `write` (system disk, read-only, mounted, swap,
    /// held, too small for the image), or the image is on the disk.
    Unsafe {
        #[serde(serialize_with = "chain")]
        error: devices::Error,
    },
    /// No `--port` glob matches its by-path link (`None`: it has none).
    Port { by_path: Option<PathBuf> },
    /// A `--match` field does not hold.
    Match {
        field: &'static str,
        value: Option<String>,
    },
    /// The content guard: a file system or signature of someone's data.
    Holds { finding: Finding },
    /// The content guard: larger than the maximum.
    TooLarge { size: u64, max: u64 },
    /// Written by this station already (same serial and size).
    AlreadyWritten { serial: String, size: u64 },
}

fn chain<S: serde::Serializer>(e: &devices::Error, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::error_chain(e))
}

impl Skip {
    /// The rule's name, as in JSON's `rule`.
    pub fn rule(&self) -> &'static str {
        match self {
            Skip::NotAStick { .. } => "not-a-stick",
            Skip::Unsafe { .. } => "unsafe",
            Skip::Port { .. } => "port",
            Skip::Match { .. } => "match",
            Skip::Holds { .. } => "holds",
            Skip::TooLarge { .. } => "too-large",
            Skip::AlreadyWritten { .. } => "already-written",
        }
    }
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skip::NotAStick {
                transport, kind, ..
            } => match kind {
                Kind::Disk => write!(
                    f,
                    "an internal {} disk, neither removable nor USB",
                    transport.name()
                ),
                _ => write!(f, "not a disk ({kind:?})"),
            },
            Skip::Unsafe { error } => write!(f, "{}", crate::error_chain(error)),
            Skip::Port { by_path: Some(p) } => {
                write!(f, "on port {}, not one of the ports given", p.display())
            }
            Skip::Port { by_path: None } => write!(f, "no /dev/disk/by-path link to match a port"),
            Skip::Match { field, value } => write!(
                f,
                "its {field} ({}) does not match",
                value.as_deref().unwrap_or("unknown")
            ),
            Skip::Holds { finding } => write!(f, "holds {finding}"),
            Skip::TooLarge { size, max } => write!(
                f,
                "{size} bytes, larger than the maximum of {max} bytes for a stick"
            ),
            Skip::AlreadyWritten { serial, size } => write!(
                f,
                "already written by this station (serial {serial}, {size} bytes)"
            ),
        }
    }
}

/// A case-insensitive glob: `*` any run, `?` one character, else literal.
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let t: Vec<char> = text.to_lowercase().chars().collect();
    // Iterative matcher with one backtrack point (the last `*`).
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// True when `disk` is a stick by kind and bus: an ordinary disk that is
/// removable or USB-attached, or a loop device backed by a file in the
/// rules' test directory.
pub fn is_stick(disk: &Disk, rules: &Rules) -> bool {
    match disk.kind {
        Kind::Disk => disk.removable || disk.transport == Transport::Usb,
        Kind::Loop => loop_allowed(disk, rules.loop_backing_dir.as_deref()),
        _ => false,
    }
}

fn loop_allowed(disk: &Disk, dir: Option<&Path>) -> bool {
    let (Some(dir), Some(file)) = (dir, &disk.backing_file) else {
        return false;
    };
    Path::new(file).parent() == Some(dir)
}

/// Decides whether the station writes `disk` (which must hold `needed`
/// bytes), holding `content`: `Ok(())` to take it, or the first rule that
/// refuses it, in the order of the module's list. Pure: the same facts
/// always give the same answer.
pub fn decide(disk: &Disk, content: &Content, rules: &Rules, needed: u64) -> Result<(), Skip> {
    if !is_stick(disk, rules) {
        return Err(Skip::NotAStick {
            transport: disk.transport,
            kind: disk.kind,
            removable: disk.removable,
        });
    }
    // Every rule of `write`, with no override: a station never unmounts and
    // never forces.
    devices::check(disk, needed, devices::Policy::default())
        .map_err(|error| Skip::Unsafe { error })?;
    if !rules.ports.is_empty() {
        let hit = disk.by_path.as_ref().is_some_and(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default();
            rules
                .ports
                .iter()
                .any(|g| glob(g, &name) || glob(g, &p.to_string_lossy()))
        });
        if !hit {
            return Err(Skip::Port {
                by_path: disk.by_path.clone(),
            });
        }
    }
    let m = &rules.matches;
    for (field, want, have) in [
        ("vendor", &m.vendor, &disk.vendor),
        ("model", &m.model, &disk.model),
    ] {
        if let Some(w) = want {
            if !have.as_deref().is_some_and(|h| glob(w, h.trim())) {
                return Err(Skip::Match {
                    field,
                    value: have.clone(),
                });
            }
        }
    }
    let size_str = || Some(disk.size_bytes.to_string());
    if m.min_size.is_some_and(|min| disk.size_bytes < min) {
        return Err(Skip::Match {
            field: "min-size",
            value: size_str(),
        });
    }
    if m.max_size.is_some_and(|max| disk.size_bytes > max) {
        return Err(Skip::Match {
            field: "max-size",
            value: size_str(),
        });
    }
    if rules.take_any {
        return Ok(());
    }
    if let Some(finding) = content_finding(disk, content) {
        return Err(Skip::Holds { finding });
    }
    if disk.size_bytes > rules.max_size {
        return Err(Skip::TooLarge {
            size: disk.size_bytes,
            max: rules.max_size,
        });
    }
    Ok(())
}

/// The first sign of someone's data: what the probe found on the disk,
/// else a file system type udev (or a mount) reported for the disk or a
/// partition.
fn content_finding(disk: &Disk, content: &Content) -> Option<Finding> {
    if let Some(f) = content.findings.iter().find(|f| !f.allowed()) {
        return Some(f.clone());
    }
    // On a disk that is an ISO 9660 volume (a hybrid ISO written before),
    // the partitions are the image's own (grub-mkrescue's HFS+ one): what
    // lies past the volume is the probe's to find (`content::probe`).
    let iso = disk.fstype.as_deref() == Some("iso9660")
        || content
            .findings
            .iter()
            .any(|f| f.at() == 0 && matches!(f, Finding::Filesystem { fs, .. } if fs == "iso9660"));
    let reported = std::iter::once((disk.fstype.as_ref(), None))
        .chain(
            disk.partitions
                .iter()
                .filter(|_| !iso)
                .map(|p| (p.fstype.as_ref(), Some(p.start_bytes))),
        )
        .filter_map(|(t, at)| t.map(|t| Finding::from_fstype(t, at.unwrap_or(0))));
    reported.into_iter().find(|f| !f.allowed())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::Roots;
    use std::collections::BTreeMap;

    fn fixture(name: &str) -> BTreeMap<String, Disk> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/sysfs")
            .join(name);
        devices::by_name(devices::enumerate(&Roots::under(&root)).unwrap())
    }

    fn none() -> Content {
        Content::default()
    }

    #[test]
    fn sizes_read_as_vendors_write_them() {
        assert_eq!(parse_size("256G"), Ok(256_000_000_000));
        assert_eq!(parse_size("256GB"), Ok(256_000_000_000));
        assert_eq!(parse_size("8GiB"), Ok(8 << 30));
        assert_eq!(parse_size("1.5T"), Ok(1_500_000_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64 MiB"), Ok(64 << 20));
        assert!(parse_size("G").is_err());
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("99999999999T").is_err());
    }

    #[test]
    fn match_specs_parse_and_refuse_unknown_keys() {
        let m = Match::parse("vendor=SanDisk,model=Cruzer*,min-size=8G,max-size=64GiB").unwrap();
        assert_eq!(m.vendor.as_deref(), Some("SanDisk"));
        assert_eq!(m.model.as_deref(), Some("Cruzer*"));
        assert_eq!(m.min_size, Some(8_000_000_000));
        assert_eq!(m.max_size, Some(64 << 30));
        assert_eq!(
            Match::parse("colour=red"),
            Err(ParseError::Key {
                key: "colour".into()
            })
        );
        assert!(matches!(
            Match::parse("vendor"),
            Err(ParseError::Pair { .. })
        ));
    }

    #[test]
    fn globs() {
        assert!(glob(
            "pci-0000:00:14.0-usb-0:1.*",
            "pci-0000:00:14.0-usb-0:1.3:1.0-scsi-0:0:0:0"
        ));
        assert!(!glob(
            "pci-0000:00:14.0-usb-0:1.*",
            "pci-0000:00:14.0-usb-0:2:1.0-scsi-0:0:0:0"
        ));
        assert!(glob("*cruzer*", "Cruzer Blade"));
        assert!(glob("a?c", "abc"));
        assert!(!glob("a?c", "ac"));
        assert!(glob("*", ""));
        assert!(!glob("", "x"));
        assert!(glob("a*b*c", "aXXbYYc"));
        assert!(!glob("a*b*c", "aXXbYY"));
    }

    /// Every disk of the laptop tree, with the decision the station makes
    /// when it arrives (nothing found on its first bytes).
    #[test]
    fn laptop_disks_are_taken_only_when_they_are_free_sticks() {
        let d = fixture("laptop");
        let rules = Rules::default();
        let decision = |name: &str| decide(&d[name], &none(), &rules, 1 << 20);
        // The system disk, an internal NVMe and a SATA disk with swap: not sticks.
        for name in ["sda", "nvme0n1", "sde"] {
            assert!(
                matches!(decision(name), Err(Skip::NotAStick { .. })),
                "{name}: {:?}",
                decision(name)
            );
        }
        // The optical drive and the loop device are not disks.
        for name in ["sr0", "loop0"] {
            assert!(matches!(
                decision(name),
                Err(Skip::NotAStick {
                    kind: Kind::Optical | Kind::Loop,
                    ..
                })
            ));
        }
        // The USB stick has a mounted vfat partition: `write`'s rule.
        match decision("sdb") {
            Err(Skip::Unsafe {
                error: devices::Error::Mounted { .. },
            }) => {}
            other => panic!("sdb: {other:?}"),
        }
        // The card reader and the SD card.
        for name in ["sdd", "mmcblk0"] {
            assert!(decision(name).is_ok(), "{name}: {:?}", decision(name));
        }
        // The USB SSD (removable=0 but USB: a stick by bus) holds 1 TB: the
        // content guard's size limit, a backup drive more likely than a stick.
        assert!(matches!(
            decision("sdc"),
            Err(Skip::TooLarge {
                size: 1_073_741_824_000,
                max: DEFAULT_MAX_SIZE
            })
        ));
        let big = Rules {
            max_size: 2_000_000_000_000,
            ..Rules::default()
        };
        assert!(decide(&d["sdc"], &none(), &big, 1 << 20).is_ok());
    }

    #[test]
    fn content_guard_skips_data_and_take_any_lifts_only_it() {
        let d = fixture("laptop");
        let ext4 = Content {
            findings: vec![Finding::Filesystem {
                fs: "ext4".into(),
                at: 1 << 20,
            }],
        };
        let rules = Rules::default();
        let got = decide(&d["sdd"], &ext4, &rules, 1 << 20).unwrap_err();
        assert!(matches!(got, Skip::Holds { .. }), "{got:?}");
        assert_eq!(got.to_string(), "holds ext4 data (at byte 1048576)");
        let luks = Content {
            findings: vec![Finding::Signature {
                kind: super::super::content::Signature::Luks,
                at: 0,
            }],
        };
        assert!(decide(&d["sdd"], &luks, &rules, 1 << 20).is_err());
        // FAT and ISO 9660 are what sticks hold.
        let stick = Content {
            findings: vec![
                Finding::Filesystem {
                    fs: "iso9660".into(),
                    at: 0,
                },
                Finding::Filesystem {
                    fs: "vfat".into(),
                    at: 4 << 20,
                },
            ],
        };
        assert!(decide(&d["sdd"], &stick, &rules, 1 << 20).is_ok());
        let any = Rules {
            take_any: true,
            ..Rules::default()
        };
        assert!(decide(&d["sdd"], &ext4, &any, 1 << 20).is_ok());
        // ...but never a system disk, an internal disk or a mounted stick.
        for name in ["sda", "nvme0n1", "sdb"] {
            assert!(decide(&d[name], &none(), &any, 1 << 20).is_err(), "{name}");
        }
        // Too large: lifted by take_any too.
        let small = Rules {
            max_size: 1 << 20,
            ..Rules::default()
        };
        assert!(matches!(
            decide(&d["sdd"], &none(), &small, 1),
            Err(Skip::TooLarge { .. })
        ));
        let small_any = Rules {
            take_any: true,
            ..small
        };
        assert!(decide(&d["sdd"], &none(), &small_any, 1).is_ok());
    }

    /// A file system udev reported (the captured tree's `ID_FS_TYPE`) is
    /// a finding too, without reading the disk.
    #[test]
    fn a_reported_file_system_counts() {
        let mut d = fixture("laptop");
        let mut sdc = d.remove("sdd").unwrap();
        sdc.fstype = Some("xfs".into());
        let got = decide(&sdc, &none(), &Rules::default(), 1).unwrap_err();
        assert_eq!(got.to_string(), "holds xfs data (at byte 0)");
        sdc.fstype = Some("vfat".into());
        assert!(decide(&sdc, &none(), &Rules::default(), 1).is_ok());
        // A hybrid ISO written before: its HFS+ partition, as udev reports
        // it, is the image's own.
        sdc.fstype = Some("iso9660".into());
        let mut p = sdc
            .partitions
            .first()
            .cloned()
            .unwrap_or_else(|| d["sdb"].partitions[0].clone());
        p.fstype = Some("hfsplus".into());
        p.mountpoints.clear();
        sdc.partitions = vec![p];
        assert!(decide(&sdc, &none(), &Rules::default(), 1).is_ok());
        // The same partition on a disk that is not an ISO is data.
        sdc.fstype = None;
        assert!(decide(&sdc, &none(), &Rules::default(), 1).is_err());
    }

    #[test]
    fn ports_and_matches_narrow_it() {
        let d = fixture("laptop");
        let port = |g: &str| Rules {
            ports: vec![g.into()],
            ..Rules::default()
        };
        // sdb's link: pci-0000:00:14.0-usb-0:1:1.0-scsi-0:0:0:0; it is
        // mounted, so its decision is `write`'s refusal whatever the port;
        // sdc has no by-path link in the tree.
        assert!(matches!(
            decide(&d["sdc"], &none(), &port("pci-*"), 1),
            Err(Skip::Port { by_path: None })
        ));
        let mut sdb = d["sdb"].clone();
        sdb.partitions
            .iter_mut()
            .for_each(|p| p.mountpoints.clear());
        assert!(decide(&sdb, &none(), &port("pci-0000:00:14.0-usb-0:1:*"), 1).is_ok());
        assert!(decide(&sdb, &none(), &port("*/by-path/pci-0000:00:14.0-*"), 1).is_ok());
        assert!(matches!(
            decide(&sdb, &none(), &port("pci-0000:00:14.0-usb-0:2:*"), 1),
            Err(Skip::Port { by_path: Some(_) })
        ));
        let with = |m: &str| Rules {
            matches: Match::parse(m).unwrap(),
            ..Rules::default()
        };
        let vendor = sdb.vendor.clone().unwrap();
        assert!(decide(
            &sdb,
            &none(),
            &with(&format!("vendor={}", vendor.to_uppercase())),
            1
        )
        .is_ok());
        assert!(matches!(
            decide(&sdb, &none(), &with("vendor=NoSuchVendor"), 1),
            Err(Skip::Match {
                field: "vendor",
                ..
            })
        ));
        let size = sdb.size_bytes;
        assert!(decide(
            &sdb,
            &none(),
            &with(&format!("min-size={size},max-size={size}")),
            1
        )
        .is_ok());
        assert!(matches!(
            decide(&sdb, &none(), &with(&format!("min-size={}", size + 1)), 1),
            Err(Skip::Match {
                field: "min-size",
                ..
            })
        ));
        assert!(matches!(
            decide(&sdb, &none(), &with(&format!("max-size={}", size - 1)), 1),
            Err(Skip::Match {
                field: "max-size",
                ..
            })
        ));
    }

    /// The guest's capture: both QEMU sticks are taken, the virtio system
    /// disk never (whatever the options).
    #[test]
    fn testbed_guest_sticks_are_taken_and_its_system_disk_never() {
        let d = fixture("testbed-guest");
        let any = Rules {
            take_any: true,
            ..Rules::default()
        };
        for rules in [Rules::default(), any] {
            assert!(decide(&d["sda"], &none(), &rules, 1).is_ok());
            assert!(decide(&d["sdb"], &none(), &rules, 1).is_ok());
            assert!(matches!(
                decide(&d["vda"], &none(), &rules, 1),
                Err(Skip::NotAStick { .. })
            ));
        }
        // Too small for the image: `write`'s rule.
        assert!(matches!(
            decide(&d["sda"], &none(), &Rules::default(), 1 << 40),
            Err(Skip::Unsafe {
                error: devices::Error::TooSmall { .. }
            })
        ));
        // The blank USB stick of the btrfs tree, and its NVMe disks.
        let b = fixture("btrfs-swapfile");
        assert!(decide(&b["sda"], &none(), &Rules::default(), 1).is_ok());
        assert!(decide(&b["nvme0n1"], &none(), &Rules::default(), 1).is_err());
    }

    #[test]
    fn loop_devices_count_only_when_backed_in_the_named_directory() {
        let mut lo = fixture("laptop").remove("loop0").unwrap();
        lo.backing_file = Some("/tmp/station-test/a.img".into());
        let rules = Rules {
            loop_backing_dir: Some("/tmp/station-test".into()),
            ..Rules::default()
        };
        assert!(is_stick(&lo, &rules));
        assert!(!is_stick(&lo, &Rules::default()));
        lo.backing_file = Some("/tmp/station-test/sub/a.img".into());
        assert!(!is_stick(&lo, &rules));
        lo.backing_file = Some("/tmp/other/a.img".into());
        assert!(!is_stick(&lo, &rules));
    }
}
