//! Parsing `/proc/self/mountinfo` and `/proc/swaps`.
//!
//! Mounts are matched to block devices by `major:minor` (mountinfo field 3),
//! which is exact even when the source string is a symlink or `/dev/root`.
//! Filesystems without a backing device of their own (btrfs subvolumes,
//! overlay) report major 0; for those the caller falls back to the source.

use std::path::PathBuf;

/// A block device number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DevNum {
    pub major: u32,
    pub minor: u32,
}

impl DevNum {
    /// Parses `"8:16"` (the format of sysfs `dev` files and mountinfo).
    pub fn parse(s: &str) -> Option<DevNum> {
        let (a, b) = s.trim().split_once(':')?;
        Some(DevNum {
            major: a.parse().ok()?,
            minor: b.parse().ok()?,
        })
    }
}

impl std::fmt::Display for DevNum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

impl serde::Serialize for DevNum {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One line of mountinfo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    pub dev: DevNum,
    pub mountpoint: PathBuf,
    pub fstype: String,
    pub source: String,
}

/// Undoes the kernel's octal escapes (`\040` for a space, `\011`, `\012`, `\134`).
pub fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses mountinfo text. Malformed lines are skipped: the file comes from the
/// kernel, and one odd line must not hide every other mount.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let sep = fields.iter().position(|f| *f == "-")?;
            if sep < 6 || fields.len() < sep + 3 {
                return None;
            }
            Some(Mount {
                dev: DevNum::parse(fields[2])?,
                mountpoint: PathBuf::from(unescape_octal(fields[4])),
                fstype: fields[sep + 1].to_string(),
                source: unescape_octal(fields[sep + 2]),
            })
        })
        .collect()
}

/// One active swap area from `/proc/swaps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Swap {
    pub path: PathBuf,
    /// `partition` or `file`.
    pub kind: String,
}

/// Parses `/proc/swaps` (a header line, then `path type size used prio`).
pub fn parse_swaps(text: &str) -> Vec<Swap> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let mut it = line.split_whitespace();
            let path = it.next()?;
            let kind = it.next()?;
            Some(Swap {
                path: PathBuf::from(unescape_octal(path)),
                kind: kind.to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_parse_with_optional_fields_and_escapes() {
        let text = "27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n\
                    90 27 8:17 / /media/u/MY\\040STICK rw - vfat /dev/sdb1 rw\n\
                    garbage line\n\
                    91 27 0:44 / /home rw master:3 shared:2 - btrfs /dev/mapper/vg-home rw\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 3);
        assert_eq!(
            m[0].dev,
            DevNum {
                major: 254,
                minor: 0
            }
        );
        assert_eq!(m[1].mountpoint, PathBuf::from("/media/u/MY STICK"));
        assert_eq!(m[1].fstype, "vfat");
        assert_eq!(m[2].source, "/dev/mapper/vg-home");
        assert_eq!(m[2].dev.major, 0);
    }

    #[test]
    fn swaps_parse() {
        let text = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n\
                    /dev/sda3                               partition\t8388604\t\t0\t\t-2\n\
                    /swap\\040file                          file\t\t1024\t0\t-3\n";
        let s = parse_swaps(text);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].path, PathBuf::from("/dev/sda3"));
        assert_eq!(s[0].kind, "partition");
        assert_eq!(s[1].path, PathBuf::from("/swap file"));
    }

    #[test]
    fn truncated_escape_is_kept() {
        assert_eq!(unescape_octal("a\\04"), "a\\04");
        assert_eq!(unescape_octal("a\\134b"), "a\\b");
    }
}
