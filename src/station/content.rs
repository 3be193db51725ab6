//! What an arriving disk holds, read from its first bytes and from the
//! start of each partition its MBR or GPT lists: file-system superblocks
//! and the signatures of LVM, LUKS and Linux RAID members. The station's
//! content guard (`rules`) takes a disk only when nothing but ISO 9660,
//! UDF, FAT or exFAT (or nothing at all) is found.
//!
//! The magics are the ones `libblkid` checks, at the same offsets; only
//! what a lab's own drives typically hold is probed. Partitions are read
//! from the disk's own table (`image::partitions`), not from sysfs: the
//! kernel may lack the table's parser, and a stick's old table is exactly
//! what tells what it holds.

use serde::Serialize;

use crate::image::partitions::read_system_area;
use crate::image::ByteSource;

/// A stacked-storage signature: the disk belongs to a volume.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Signature {
    Lvm,
    Luks,
    Raid,
}

impl Signature {
    pub fn name(self) -> &'static str {
        match self {
            Signature::Lvm => "an LVM physical volume",
            Signature::Luks => "a LUKS encrypted volume",
            Signature::Raid => "a Linux RAID member",
        }
    }
}

/// One thing found at a byte offset of the disk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "found", rename_all = "lowercase")]
pub enum Finding {
    /// A file system (`ext4`, `vfat`, `iso9660`, … as blkid names them).
    Filesystem {
        fs: String,
        at: u64,
    },
    Signature {
        kind: Signature,
        at: u64,
    },
}

impl Finding {
    /// True for what a stick meant for a lab holds: ISO 9660, UDF, FAT,
    /// exFAT (a previous image, or a stick as sold).
    pub fn allowed(&self) -> bool {
        match self {
            Finding::Filesystem { fs, .. } => {
                matches!(fs.as_str(), "iso9660" | "udf" | "vfat" | "exfat")
            }
            Finding::Signature { .. } => false,
        }
    }

    /// A file-system type as udev's `ID_FS_TYPE` spells it.
    pub fn from_fstype(t: &str, at: u64) -> Finding {
        let sig = match t {
            "LVM2_member" => Some(Signature::Lvm),
            "crypto_LUKS" => Some(Signature::Luks),
            "linux_raid_member" | "isw_raid_member" | "ddf_raid_member" => Some(Signature::Raid),
            _ => None,
        };
        match sig {
            Some(kind) => Finding::Signature { kind, at },
            None => Finding::Filesystem { fs: t.into(), at },
        }
    }
}

impl Finding {
    /// The byte offset it was found at.
    pub fn at(&self) -> u64 {
        match self {
            Finding::Filesystem { at, .. } | Finding::Signature { at, .. } => *at,
        }
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::Filesystem { fs, at } => write!(f, "{fs} data (at byte {at})"),
            Finding::Signature { kind, at } => write!(f, "{} (at byte {at})", kind.name()),
        }
    }
}

/// Everything found, in order of offset.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Content {
    pub findings: Vec<Finding>,
}

/// Bytes read from each place probed: enough for every magic below
/// (btrfs's superblock at 64 KiB is the farthest).
const WINDOW: u64 = 68 << 10;

/// Reads the disk's first bytes and each partition's first bytes, and
/// names what is there. A read error is returned: a disk that cannot be
/// read is not taken.
pub fn probe(disk: &dyn ByteSource) -> std::io::Result<Content> {
    let mut starts = vec![0u64];
    if let Ok(area) = read_system_area(disk) {
        starts.extend(area.partitions(disk.len()).iter().map(|p| p.offset));
    }
    starts.sort_unstable();
    starts.dedup();
    let mut findings = Vec::new();
    for at in starts {
        let len = WINDOW.min(disk.len().saturating_sub(at));
        if len == 0 {
            continue;
        }
        let mut buf = vec![0u8; len as usize];
        disk.read_raw(at, &mut buf)?;
        findings.extend(at_start(&buf, at));
        if let Some(f) = raid_at_end(disk, at)? {
            findings.push(f);
        }
    }
    findings.dedup();
    // A hybrid ISO's partitions lie inside its ISO 9660 volume (grub-mkrescue
    // adds an HFS+ one for Macs): they are the image's own, not someone's
    // data. Only what lies at or past the volume's end counts.
    if let Some(end) = iso_volume_end(disk)? {
        findings.retain(|f| f.at() == 0 || f.at() >= end);
    }
    Ok(Content { findings })
}

/// The end of an ISO 9660 volume at the disk's start, from its primary
/// volume descriptor (sector 16: volume space size at byte 80, logical
/// block size at byte 128, both-endian).
fn iso_volume_end(disk: &dyn ByteSource) -> std::io::Result<Option<u64>> {
    if disk.len() < 0x8000 + 2048 {
        return Ok(None);
    }
    let mut pvd = [0u8; 136];
    disk.read_raw(0x8000, &mut pvd)?;
    if pvd[0] != 1 || &pvd[1..6] != b"CD001" {
        return Ok(None);
    }
    let blocks = u64::from(u32::from_le_bytes([pvd[80], pvd[81], pvd[82], pvd[83]]));
    let block = u64::from(u16::from_le_bytes([pvd[128], pvd[129]]));
    Ok(Some(blocks * block))
}

fn has(b: &[u8], off: usize, magic: &[u8]) -> bool {
    b.get(off..off + magic.len()) == Some(magic)
}

fn le32(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

const MD_MAGIC: u32 = 0xa92b_4efc;

/// What the bytes at the start of a disk or partition (`at`) hold.
pub fn at_start(b: &[u8], at: u64) -> Vec<Finding> {
    let fs = |name: &str| Finding::Filesystem {
        fs: name.into(),
        at,
    };
    let sig = |kind| Finding::Signature { kind, at };
    let mut out = Vec::new();
    if has(b, 0, b"LUKS\xba\xbe") || has(b, 0x4000, b"SKUL\xba\xbe") {
        out.push(sig(Signature::Luks));
    }
    // LVM2: a label in one of the first four sectors.
    if (0..4).any(|s| has(b, s * 512, b"LABELONE") && has(b, s * 512 + 24, b"LVM2 001")) {
        out.push(sig(Signature::Lvm));
    }
    // md superblock 1.1 (at 0) and 1.2 (at 4 KiB).
    if le32(b, 0) == Some(MD_MAGIC) || le32(b, 4096) == Some(MD_MAGIC) {
        out.push(sig(Signature::Raid));
    }
    // ext2/3/4: the superblock at 1 KiB, magic 0xEF53 at its byte 56.
    if has(b, 1024 + 56, &[0x53, 0xef]) {
        let compat = le32(b, 1024 + 92).unwrap_or(0);
        let incompat = le32(b, 1024 + 96).unwrap_or(0);
        // extents, 64bit, flex_bg: ext4; a journal: ext3.
        let name = if incompat & (0x40 | 0x80 | 0x200) != 0 {
            "ext4"
        } else if compat & 0x4 != 0 {
            "ext3"
        } else {
            "ext2"
        };
        out.push(fs(name));
    }
    if has(b, 0, b"XFSB") {
        out.push(fs("xfs"));
    }
    if has(b, 0x10040, b"_BHRfS_M") {
        out.push(fs("btrfs"));
    }
    if has(b, 1024, &0xF2F5_2010u32.to_le_bytes()) {
        out.push(fs("f2fs"));
    }
    if has(b, 3, b"NTFS    ") {
        out.push(fs("ntfs"));
    }
    if has(b, 1024, b"H+") || has(b, 1024, b"HX") {
        out.push(fs("hfsplus"));
    }
    if has(b, 32, b"NXSB") {
        out.push(fs("apfs"));
    }
    if has(b, 4096 - 10, b"SWAPSPACE2") || has(b, 4096 - 10, b"SWAP-SPACE") {
        out.push(fs("swap"));
    }
    if has(b, 0, b"hsqs") {
        out.push(fs("squashfs"));
    }
    if has(b, 3, b"EXFAT   ") {
        out.push(fs("exfat"));
    } else if has(b, 510, &[0x55, 0xaa])
        && (has(b, 54, b"FAT12   ") || has(b, 54, b"FAT16   ") || has(b, 82, b"FAT32   "))
    {
        out.push(fs("vfat"));
    }
    // ISO 9660 and UDF volume recognition sequences from 32 KiB.
    let vrs = |id: &[u8]| (16..32).any(|s| has(b, s * 2048 + 1, id));
    if vrs(b"CD001") {
        out.push(fs("iso9660"));
    }
    if vrs(b"NSR02") || vrs(b"NSR03") {
        out.push(fs("udf"));
    }
    out
}

/// md superblocks 0.90 and 1.0 live at the end of the member; for the
/// whole disk (`at` 0) that is the disk's end. (A partition's end is not
/// read: a member partition is also named by its start's other magics or
/// by udev.)
fn raid_at_end(disk: &dyn ByteSource, at: u64) -> std::io::Result<Option<Finding>> {
    let len = disk.len();
    if at != 0 || len < (128 << 10) {
        return Ok(None);
    }
    // 0.90: 64 KiB-aligned, 64 KiB before the end; 1.0: 8 KiB before the
    // end, 4 KiB-aligned.
    for off in [(len & !0xffff) - 0x10000, (len - 8192) & !0xfff] {
        let mut b = [0u8; 4];
        disk.read_raw(off, &mut b)?;
        if u32::from_le_bytes(b) == MD_MAGIC {
            return Ok(Some(Finding::Signature {
                kind: Signature::Raid,
                at: off,
            }));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blank(len: usize) -> Vec<u8> {
        vec![0; len]
    }

    #[test]
    fn a_blank_disk_holds_nothing() {
        assert_eq!(probe(&blank(1 << 20)).unwrap(), Content::default());
    }

    type Maker = Box<dyn Fn(&mut Vec<u8>)>;

    #[test]
    fn magics_are_named() {
        let cases: Vec<(Maker, Finding)> = vec![
            (
                Box::new(|b| {
                    b[1024 + 56..1024 + 58].copy_from_slice(&[0x53, 0xef]);
                    b[1024 + 96] = 0x40;
                }),
                Finding::Filesystem {
                    fs: "ext4".into(),
                    at: 0,
                },
            ),
            (
                Box::new(|b| b[0..6].copy_from_slice(b"LUKS\xba\xbe")),
                Finding::Signature {
                    kind: Signature::Luks,
                    at: 0,
                },
            ),
            (
                Box::new(|b| {
                    b[512..520].copy_from_slice(b"LABELONE");
                    b[536..544].copy_from_slice(b"LVM2 001");
                }),
                Finding::Signature {
                    kind: Signature::Lvm,
                    at: 0,
                },
            ),
            (
                Box::new(|b| b[4096..4100].copy_from_slice(&MD_MAGIC.to_le_bytes())),
                Finding::Signature {
                    kind: Signature::Raid,
                    at: 0,
                },
            ),
            (
                Box::new(|b| b[0x10040..0x10048].copy_from_slice(b"_BHRfS_M")),
                Finding::Filesystem {
                    fs: "btrfs".into(),
                    at: 0,
                },
            ),
            (
                Box::new(|b| b[3..11].copy_from_slice(b"NTFS    ")),
                Finding::Filesystem {
                    fs: "ntfs".into(),
                    at: 0,
                },
            ),
            (
                Box::new(|b| b[0x8001..0x8006].copy_from_slice(b"CD001")),
                Finding::Filesystem {
                    fs: "iso9660".into(),
                    at: 0,
                },
            ),
            (
                Box::new(|b| b[3..11].copy_from_slice(b"EXFAT   ")),
                Finding::Filesystem {
                    fs: "exfat".into(),
                    at: 0,
                },
            ),
        ];
        for (make, want) in cases {
            let mut b = blank(1 << 20);
            make(&mut b);
            assert_eq!(probe(&b).unwrap().findings, vec![want]);
        }
    }

    #[test]
    fn raid_superblock_at_the_end_is_found() {
        let mut b = blank(1 << 20);
        let off = ((1usize << 20) - 8192) & !0xfff;
        b[off..off + 4].copy_from_slice(&MD_MAGIC.to_le_bytes());
        assert_eq!(
            probe(&b).unwrap().findings,
            vec![Finding::Signature {
                kind: Signature::Raid,
                at: off as u64
            }]
        );
    }

    /// A hybrid ISO (as grub-mkrescue makes them) carries an HFS+
    /// partition inside its ISO 9660 volume: part of the image, so a stick
    /// written with it before is taken again. The same HFS+ past the
    /// volume's end is someone's data.
    #[test]
    fn partitions_inside_an_iso_volume_are_the_images_own() {
        let hybrid = |volume_blocks: u32| {
            let mut b = blank(8 << 20);
            b[0x8000] = 1;
            b[0x8001..0x8006].copy_from_slice(b"CD001");
            b[0x8000 + 80..0x8000 + 84].copy_from_slice(&volume_blocks.to_le_bytes());
            b[0x8000 + 128..0x8000 + 130].copy_from_slice(&2048u16.to_le_bytes());
            // MBR entry: type 0xAF (HFS+) from sector 4096 (2 MiB), 2048 sectors.
            let e = 446;
            b[e + 4] = 0xaf;
            b[e + 8..e + 12].copy_from_slice(&4096u32.to_le_bytes());
            b[e + 12..e + 16].copy_from_slice(&2048u32.to_le_bytes());
            b[510] = 0x55;
            b[511] = 0xaa;
            let p = 2 << 20;
            b[p + 1024..p + 1026].copy_from_slice(b"H+");
            b
        };
        // A 4 MiB volume holds the partition at 2 MiB.
        let inside = probe(&hybrid(2048)).unwrap().findings;
        assert_eq!(
            inside,
            vec![Finding::Filesystem {
                fs: "iso9660".into(),
                at: 0
            }]
        );
        // A 1 MiB volume does not.
        let past = probe(&hybrid(512)).unwrap().findings;
        assert!(
            past.contains(&Finding::Filesystem {
                fs: "hfsplus".into(),
                at: 2 << 20
            }),
            "{past:?}"
        );
    }

    /// A partition's file system is found at the partition's start, read
    /// from the disk's own MBR.
    #[test]
    fn partitions_from_the_disks_own_table_are_probed() {
        let mut b = blank(4 << 20);
        // One MBR entry: type 0x83 from sector 2048, 2048 sectors.
        let e = 446;
        b[e + 4] = 0x83;
        b[e + 8..e + 12].copy_from_slice(&2048u32.to_le_bytes());
        b[e + 12..e + 16].copy_from_slice(&2048u32.to_le_bytes());
        b[510] = 0x55;
        b[511] = 0xaa;
        let p = 1 << 20;
        b[p + 1024 + 56..p + 1024 + 58].copy_from_slice(&[0x53, 0xef]);
        let found = probe(&b).unwrap().findings;
        assert_eq!(
            found,
            vec![Finding::Filesystem {
                fs: "ext2".into(),
                at: 1 << 20
            }]
        );
        assert!(!found[0].allowed());
    }
}
