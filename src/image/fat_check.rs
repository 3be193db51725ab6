//! Checks a FAT volume before the `fatfs` crate reads it.
//!
//! `fatfs` 0.3 trusts cluster numbers: a FAT entry or directory entry naming
//! cluster 1, or a cluster past the end of the volume, makes it compute
//! `cluster - 2` or `(cluster - 2) * sectors_per_cluster` with overflow (a
//! panic where overflow checks are on, a read at a wrapped offset where they
//! are off), and sums of BPB fields overflow the same way. Found by the
//! `system_area` fuzz target. [`check`] therefore verifies, in 64-bit
//! arithmetic, what `fatfs` will compute from and follow: the BPB geometry,
//! every entry of the FAT it reads, and the first cluster of every entry of
//! the directories `bootstick` can enter: the root, its subdirectories and
//! theirs (`/EFI/BOOT/*`, [`LOADER_DEPTH`]) for finding loaders, or down to
//! [`TREE_DEPTH`] when a built layout copies the volume's whole tree
//! ([`check_depth`]). Directory chains are walked with a step bound, so a
//! loop is reported too, and so is a subdirectory that is one of its own
//! ancestors (a directory cycle, which would make a tree walk endless).

use super::ByteSource;

/// The most FAT bytes [`check`] scans; larger FATs are refused.
pub const MAX_FAT_SCAN: u64 = 64 << 20;

/// The most directory bytes [`check`] reads in all.
const MAX_DIR_SCAN: u64 = 64 << 20;

/// How deep below the root directory entries are checked for finding
/// loaders (`/EFI/BOOT/x`).
pub const LOADER_DEPTH: u32 = 2;

/// How deep below the root a whole-tree copy goes (and [`check_depth`]
/// checks for it): far deeper than any EFI boot image's tree (Debian's is
/// `/EFI/debian/grub.cfg`, Windows' `/EFI/MICROSOFT/BOOT/FONTS/x`).
pub const TREE_DEPTH: u32 = 16;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Fat12,
    Fat16,
    Fat32,
}

struct Geometry {
    base: u64,
    cluster_bytes: u64,
    kind: Kind,
    /// Highest valid cluster number (clusters are 2..=max_cluster).
    max_cluster: u64,
    fat_offset: u64,
    fat_bytes: u64,
    root_offset: u64,
    root_bytes: u64,
    root_cluster: u64,
    data_offset: u64,
}

fn le16(b: &[u8], at: usize) -> u64 {
    u64::from(u16::from_le_bytes([b[at], b[at + 1]]))
}

fn le32(b: &[u8], at: usize) -> u64 {
    u64::from(u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]))
}

impl Geometry {
    /// The layout `fatfs` derives from the boot sector `s` of the volume at
    /// `base`, or why it cannot be used safely.
    fn parse(s: &[u8; 512], base: u64) -> Result<Self, String> {
        let bytes_per_sector = le16(s, 11);
        let per_cluster = u64::from(s[13]);
        let reserved = le16(s, 14);
        let fats = u64::from(s[16]);
        let root_entries = le16(s, 17);
        let total = match le16(s, 19) {
            0 => le32(s, 32),
            n => n,
        };
        let fat32_layout = le16(s, 22) == 0;
        let per_fat = if fat32_layout {
            le32(s, 36)
        } else {
            le16(s, 22)
        };
        if !matches!(bytes_per_sector, 512 | 1024 | 2048 | 4096)
            || !per_cluster.is_power_of_two()
            || reserved == 0
            || fats == 0
            || per_fat == 0
        {
            return Err("implausible BIOS parameter block".into());
        }
        let root_sectors = (root_entries * 32).div_ceil(bytes_per_sector);
        let first_data = reserved + fats * per_fat + root_sectors;
        // fatfs computes FAT sizes in bits and sector numbers in u32.
        if total <= first_data || per_fat * bytes_per_sector * 8 > u64::from(u32::MAX) {
            return Err("the BIOS parameter block's sizes do not add up".into());
        }
        let clusters = (total - first_data) / per_cluster;
        let kind = match clusters {
            0..4085 => Kind::Fat12,
            4085..65525 => Kind::Fat16,
            _ => Kind::Fat32,
        };
        if fat32_layout != (kind == Kind::Fat32) || clusters > 0x0FFF_FFF5 {
            return Err("the cluster count contradicts the FAT type".into());
        }
        let max_cluster = clusters + 1;
        let root_cluster = if kind == Kind::Fat32 { le32(s, 44) } else { 0 };
        if kind == Kind::Fat32 && !(2..=max_cluster).contains(&root_cluster) {
            return Err(format!(
                "root directory cluster {root_cluster} is outside 2..={max_cluster}"
            ));
        }
        // fatfs reads FAT number `active` of a FAT32 volume without mirroring.
        let ext_flags = le16(s, 40);
        let active = if kind == Kind::Fat32 && ext_flags & 0x80 != 0 {
            ext_flags & 0x0F
        } else {
            0
        };
        if active >= fats {
            return Err(format!("active FAT {active} of {fats} FATs"));
        }
        Ok(Geometry {
            base,
            cluster_bytes: per_cluster * bytes_per_sector,
            kind,
            max_cluster,
            fat_offset: base + (reserved + active * per_fat) * bytes_per_sector,
            fat_bytes: per_fat * bytes_per_sector,
            root_offset: base + (reserved + fats * per_fat) * bytes_per_sector,
            root_bytes: root_entries * 32,
            root_cluster,
            data_offset: base + first_data * bytes_per_sector,
        })
    }

    fn cluster_offset(&self, cluster: u64) -> u64 {
        self.data_offset + (cluster - 2) * self.cluster_bytes
    }

    /// The FAT entry of `cluster` in the scanned `fat`, as a next cluster:
    /// `Ok(None)` at the end of a chain (free, bad, end-of-chain marks).
    fn next(&self, fat: &[u8], cluster: u64) -> Result<Option<u64>, String> {
        let at = match self.kind {
            Kind::Fat12 => cluster + cluster / 2,
            Kind::Fat16 => cluster * 2,
            Kind::Fat32 => cluster * 4,
        } as usize;
        let (value, bad) = match self.kind {
            Kind::Fat12 if at + 2 <= fat.len() => {
                let v = le16(fat, at);
                (if cluster & 1 == 0 { v & 0xFFF } else { v >> 4 }, 0xFF7)
            }
            Kind::Fat16 if at + 2 <= fat.len() => (le16(fat, at), 0xFFF7),
            Kind::Fat32 if at + 4 <= fat.len() => (le32(fat, at) & 0x0FFF_FFFF, 0x0FFF_FFF7),
            // Past the FAT: fatfs fails to read it, which is an error, not a panic.
            _ => return Ok(None),
        };
        match value {
            0 => Ok(None),
            v if v >= bad => Ok(None),
            v if (2..=self.max_cluster).contains(&v) => Ok(Some(v)),
            v => Err(format!(
                "FAT entry of cluster {cluster} points at cluster {v}, outside 2..={}",
                self.max_cluster
            )),
        }
    }
}

/// Checks the FAT volume at `offset` of `src` (boot sector `s`) as described
/// in the module documentation, directories down to [`LOADER_DEPTH`]; the
/// error says what is wrong.
pub fn check(src: &dyn ByteSource, offset: u64, s: &[u8; 512]) -> Result<(), String> {
    check_depth(src, offset, s, LOADER_DEPTH)
}

/// [`check`], with the entries of directories down to `depth` levels below
/// the root checked (the root's own entries are level 0).
pub fn check_depth(
    src: &dyn ByteSource,
    offset: u64,
    s: &[u8; 512],
    depth: u32,
) -> Result<(), String> {
    let g = Geometry::parse(s, offset)?;
    let entries = g.max_cluster + 1;
    let needed = match g.kind {
        Kind::Fat12 => (entries * 3).div_ceil(2) + 1,
        Kind::Fat16 => entries * 2,
        Kind::Fat32 => entries * 4,
    };
    let scan = needed.min(g.fat_bytes);
    if scan > MAX_FAT_SCAN {
        return Err(format!(
            "its FAT is {scan} bytes, more than the {MAX_FAT_SCAN} bytes checked"
        ));
    }
    // Only what the image holds: fatfs fails (an error) reading past its end.
    let scan = scan.min(src.len().saturating_sub(g.fat_offset));
    let mut fat = vec![0u8; scan as usize];
    src.read_raw(g.fat_offset, &mut fat)
        .map_err(|e| format!("cannot read its FAT at byte {}: {e}", g.fat_offset))?;
    for cluster in 2..=g.max_cluster {
        g.next(&fat, cluster)?;
    }
    let root = if g.kind == Kind::Fat32 {
        Dir::Chain(g.root_cluster)
    } else {
        Dir::Fixed(g.root_offset, g.root_bytes)
    };
    let mut walk = Walk {
        max_depth: depth,
        budget: MAX_DIR_SCAN,
        ancestors: Vec::new(),
    };
    check_dir(src, &g, &fat, root, 0, &mut walk)
}

/// The state of one check's directory walk.
struct Walk {
    max_depth: u32,
    /// Directory bytes left to read.
    budget: u64,
    /// First clusters of the directories being checked, root first (0 for
    /// a FAT12/16 root): a subdirectory naming one of them is a cycle.
    ancestors: Vec<u64>,
}

enum Dir {
    /// The FAT12/16 root directory: a fixed region.
    Fixed(u64, u64),
    /// A directory stored in a cluster chain from this cluster.
    Chain(u64),
}

/// Checks the first cluster of every entry of `dir`, and recurses into
/// subdirectories down to the walk's depth, refusing a subdirectory that is
/// one of its ancestors.
fn check_dir(
    src: &dyn ByteSource,
    g: &Geometry,
    fat: &[u8],
    dir: Dir,
    depth: u32,
    walk: &mut Walk,
) -> Result<(), String> {
    // The extents holding the directory, in order.
    let mut extents = Vec::new();
    let first = match dir {
        Dir::Fixed(at, len) => {
            extents.push((at, len));
            0
        }
        Dir::Chain(first) => {
            let mut cluster = first;
            loop {
                let walked = extents.len() as u64 + 1;
                if walked > g.max_cluster || walked * g.cluster_bytes > walk.budget {
                    return Err(format!(
                        "the directory chain through cluster {cluster} loops or is longer \
                         than bootstick reads"
                    ));
                }
                extents.push((g.cluster_offset(cluster), g.cluster_bytes));
                match g.next(fat, cluster)? {
                    Some(n) => cluster = n,
                    None => break,
                }
            }
            first
        }
    };
    let mut subdirs = Vec::new();
    'extents: for (at, len) in extents {
        if len > walk.budget {
            return Err("its directories are larger than bootstick reads".into());
        }
        walk.budget -= len;
        let mut buf = vec![0u8; len as usize];
        // fatfs stops at the end of the image as well; check what exists.
        let avail = src.len().saturating_sub(at).min(len) as usize;
        src.read_raw(at, &mut buf[..avail])
            .map_err(|e| format!("cannot read a directory at byte {at}: {e}"))?;
        for e in buf[..avail].chunks_exact(32) {
            match e[0] {
                0 => break 'extents,
                0xE5 => continue,
                _ => {}
            }
            let attr = e[11];
            if attr & 0x0F == 0x0F || attr & 0x08 != 0 {
                continue; // long-name part or volume label: never followed
            }
            let hi = if g.kind == Kind::Fat32 {
                le16(e, 20)
            } else {
                0
            };
            let cluster = hi << 16 | le16(e, 26);
            if cluster != 0 && !(2..=g.max_cluster).contains(&cluster) {
                return Err(format!(
                    "a directory entry at byte {} names cluster {cluster}, outside 2..={}",
                    at - g.base,
                    g.max_cluster
                ));
            }
            if attr & 0x10 != 0 && e[0] != b'.' && cluster != 0 && depth < walk.max_depth {
                subdirs.push(cluster);
            }
        }
    }
    walk.ancestors.push(first);
    for cluster in subdirs {
        // A FAT32 root is a chain too: its cluster is the first ancestor.
        let root_cluster = if g.kind == Kind::Fat32 {
            g.root_cluster
        } else {
            0
        };
        if cluster == first || walk.ancestors.contains(&cluster) || cluster == root_cluster {
            return Err(format!(
                "a subdirectory names cluster {cluster}, which holds one of its own parent \
                 directories (a directory cycle)"
            ));
        }
        check_dir(src, g, fat, Dir::Chain(cluster), depth + 1, walk)?;
    }
    walk.ancestors.pop();
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::image::{eltorito, partitions, Error};

    /// A system_area fuzz input (minimised): an MBR whose ESP has a
    /// directory entry naming cluster 1 (not a FAT entry, as the commit that
    /// added this test says), which made `fatfs` panic with "attempt to subtract with
    /// overflow" in `fatfs::fs::FileSystem::sector_from_cluster`.
    #[test]
    fn fuzz_regression_cluster_outside_the_volume_is_an_error() {
        let img =
            include_bytes!("../../tests/fixtures/fuzz-regressions/system_area-fat-cluster-1.bin");
        let img = img.to_vec();
        let area = partitions::read_system_area(&img).unwrap();
        let esps: Vec<_> = area
            .partitions(img.len() as u64)
            .into_iter()
            .filter(|p| p.esp)
            .collect();
        assert!(!esps.is_empty());
        for p in esps {
            match eltorito::efi_loaders(&img, p.offset, p.len) {
                Err(Error::Malformed { detail, .. }) => {
                    assert!(detail.contains("outside 2..="), "{detail}")
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
}
