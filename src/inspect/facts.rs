//! Facts about an image's file tree that tell what kind of installer it is:
//! Windows media markers, Linux boot loaders, EFI loaders, files too large
//! for FAT32.
//!
//! Why a separate scan: the raw/layout decision only needs the system area,
//! but a user (and the layout builder, `layout::from_iso`) needs to know *why* an ISO that
//! is not hybrid still boots from a built layout, and whether FAT32 can hold
//! it. The walk is breadth-first, loop-safe, depth- and size-bounded, and
//! reads no file contents.

use crate::image::{Error, FileTree, NodeId, NodeKind, MAX_DEPTH};
use serde::Serialize;
use std::collections::{HashSet, VecDeque};

/// FAT32 cannot store a file of this size or more.
pub const FAT32_FILE_LIMIT: u64 = 1 << 32;

/// The most directory entries the scan visits; past it the scan stops and
/// says so (`Facts::walk_truncated`).
pub const MAX_SCAN_ENTRIES: usize = 500_000;

/// The most large files listed.
pub const MAX_LARGE_FILES: usize = 64;

/// A file of the tree, by path (as stored, `/`-separated) and size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TreeFile {
    pub path: String,
    pub size: u64,
}

/// Markers of Windows installation media (as Rufus looks for them).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Windows {
    /// `/bootmgr`: BIOS boot manager.
    pub bootmgr: bool,
    /// `/bootmgr.efi`.
    pub bootmgr_efi: bool,
    /// `/sources/install.wim`, `.esd` or `.swm`, with its size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub install_image: Option<TreeFile>,
    /// `/sources/boot.wim`.
    pub boot_wim: bool,
    /// `/efi/boot/bootx64.efi`.
    pub efi_bootx64: bool,
}

impl Windows {
    /// True when the tree looks like Windows setup media.
    pub fn is_windows(&self) -> bool {
        self.bootmgr || self.bootmgr_efi || (self.install_image.is_some() && self.boot_wim)
    }
}

/// Linux (and other free) boot loaders found in the tree.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Loaders {
    /// isolinux/syslinux configuration or binaries (paths found).
    pub syslinux: Vec<String>,
    /// GRUB: `boot/grub*/grub.cfg`, `boot/grub*/i386-pc`, `boot/grub*/x86_64-efi`.
    pub grub: Vec<String>,
}

/// What the tree scan found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Facts {
    pub windows: Windows,
    pub loaders: Loaders,
    /// `/EFI/BOOT/BOOT*.EFI` files of the tree (removable-media EFI loaders).
    pub efi_loaders: Vec<TreeFile>,
    /// Files of 4 GiB or more (FAT32 cannot hold them), at most 64 listed.
    pub large_files: Vec<TreeFile>,
    pub files: u64,
    pub directories: u64,
    /// Total bytes of all files.
    pub total_bytes: u64,
    /// The scan stopped early at [`MAX_SCAN_ENTRIES`].
    pub walk_truncated: bool,
}

/// Walks `tree` and collects the facts.
pub fn scan(tree: &dyn FileTree) -> Result<Facts, Error> {
    let mut f = Facts::default();
    let mut seen: HashSet<NodeId> = HashSet::new();
    let mut queue = VecDeque::from([(tree.root(), String::new(), 0usize)]);
    let mut visited = 0usize;
    while let Some((dir, path, depth)) = queue.pop_front() {
        // A directory reached twice (a loop, or two names for one directory)
        // is scanned once.
        if !seen.insert(dir) {
            continue;
        }
        if depth > MAX_DEPTH {
            return Err(Error::TooDeep {
                path,
                limit: MAX_DEPTH,
            });
        }
        for e in tree.read_dir(dir)? {
            visited += 1;
            if visited > MAX_SCAN_ENTRIES {
                f.walk_truncated = true;
                return Ok(f);
            }
            let child = format!("{path}/{}", e.name);
            let lower = child.to_ascii_lowercase();
            match e.kind {
                NodeKind::Dir => {
                    f.directories += 1;
                    note_dir(&mut f, &lower, &child);
                    queue.push_back((e.node, child, depth + 1));
                }
                NodeKind::File => {
                    f.files += 1;
                    f.total_bytes = f.total_bytes.saturating_add(e.size);
                    if e.size >= FAT32_FILE_LIMIT && f.large_files.len() < MAX_LARGE_FILES {
                        f.large_files.push(TreeFile {
                            path: child.clone(),
                            size: e.size,
                        });
                    }
                    note_file(&mut f, &lower, child, e.size);
                }
                NodeKind::Symlink(_) => {}
            }
        }
    }
    Ok(f)
}

fn note_dir(f: &mut Facts, lower: &str, path: &str) {
    let grub_dir = lower.strip_prefix("/boot/grub").is_some_and(|rest| {
        let rest = rest.trim_start_matches('2');
        rest == "/i386-pc" || rest == "/x86_64-efi"
    });
    if grub_dir {
        f.loaders.grub.push(path.to_owned());
    }
}

fn note_file(f: &mut Facts, lower: &str, path: String, size: u64) {
    let name = lower.rsplit('/').next().unwrap_or("");
    let parent = &lower[..lower.len() - name.len()];
    match lower {
        "/bootmgr" => f.windows.bootmgr = true,
        "/bootmgr.efi" => f.windows.bootmgr_efi = true,
        "/sources/boot.wim" => f.windows.boot_wim = true,
        "/sources/install.wim" | "/sources/install.esd" | "/sources/install.swm" => {
            f.windows.install_image = Some(TreeFile {
                path: path.clone(),
                size,
            })
        }
        "/efi/boot/bootx64.efi" => f.windows.efi_bootx64 = true,
        _ => {}
    }
    if parent == "/efi/boot/" && name.starts_with("boot") && name.ends_with(".efi") {
        f.efi_loaders.push(TreeFile {
            path: path.clone(),
            size,
        });
    }
    if matches!(
        name,
        "isolinux.bin" | "isolinux.cfg" | "syslinux.cfg" | "ldlinux.sys" | "ldlinux.c32"
    ) {
        f.loaders.syslinux.push(path.clone());
    }
    let in_grub = parent.starts_with("/boot/grub") || parent.starts_with("/efi/boot/");
    if (in_grub && name == "grub.cfg")
        || (parent == "/efi/boot/" && name.starts_with("grub") && name.ends_with(".efi"))
    {
        f.loaders.grub.push(path);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::image::{DirEntry, FileData, FsKind, Run};

    /// A file tree in memory: `(path, size)` for files, paths ending in `/`
    /// for directories. Parents are created as needed.
    pub(crate) struct FakeTree {
        // (parent, entry)
        entries: Vec<(NodeId, DirEntry)>,
        label: String,
    }

    impl FakeTree {
        pub(crate) fn new(label: &str, files: &[(&str, u64)]) -> Self {
            let mut t = FakeTree {
                entries: Vec::new(),
                label: label.into(),
            };
            for (path, size) in files {
                let mut parent = NodeId(0);
                let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
                for (i, part) in parts.iter().enumerate() {
                    let last = i + 1 == parts.len();
                    let is_dir = !last || path.ends_with('/');
                    let existing = t
                        .entries
                        .iter()
                        .find(|(p, e)| *p == parent && e.name == *part)
                        .map(|(_, e)| e.node);
                    parent = match existing {
                        Some(n) => n,
                        None => {
                            let node = NodeId(t.entries.len() as u64 + 1);
                            t.entries.push((
                                parent,
                                DirEntry {
                                    name: (*part).into(),
                                    kind: if is_dir {
                                        NodeKind::Dir
                                    } else {
                                        NodeKind::File
                                    },
                                    size: if is_dir { 0 } else { *size },
                                    node,
                                    meta: Default::default(),
                                },
                            ));
                            node
                        }
                    };
                }
            }
            t
        }
    }

    impl FileTree for FakeTree {
        fn kind(&self) -> FsKind {
            FsKind::Udf
        }
        fn label(&self) -> &str {
            &self.label
        }
        fn root(&self) -> NodeId {
            NodeId(0)
        }
        fn read_dir(&self, dir: NodeId) -> Result<Vec<crate::image::DirEntry>, Error> {
            Ok(self
                .entries
                .iter()
                .filter(|(p, _)| *p == dir)
                .map(|(_, e)| e.clone())
                .collect())
        }
        fn file_data(&self, file: NodeId) -> Result<FileData, Error> {
            let e = &self.entries[file.0 as usize - 1].1;
            // Pretend file n lives at block 100 + n.
            Ok(FileData {
                size: e.size,
                runs: vec![Run::Data {
                    offset: (100 + file.0) * 2048,
                    len: e.size,
                }],
            })
        }
    }

    #[test]
    fn windows_media() {
        let t = FakeTree::new(
            "CCCOMA_X64FRE_EN-US_DV9",
            &[
                ("bootmgr", 400_000),
                ("bootmgr.efi", 2_000_000),
                ("boot/etfsboot.com", 4096),
                ("efi/boot/bootx64.efi", 2_500_000),
                ("efi/microsoft/boot/efisys.bin", 1_474_560),
                ("sources/boot.wim", 600_000_000),
                ("sources/install.wim", 5_000_000_000),
                ("setup.exe", 100_000),
            ],
        );
        let f = scan(&t).unwrap();
        assert!(f.windows.is_windows());
        assert!(f.windows.bootmgr && f.windows.bootmgr_efi && f.windows.boot_wim);
        assert!(f.windows.efi_bootx64);
        assert_eq!(
            f.windows.install_image,
            Some(TreeFile {
                path: "/sources/install.wim".into(),
                size: 5_000_000_000
            })
        );
        assert_eq!(f.large_files.len(), 1);
        assert_eq!(f.efi_loaders.len(), 1);
        assert!(f.loaders.grub.is_empty() && f.loaders.syslinux.is_empty());
        assert_eq!(f.files, 8);
        assert_eq!(f.directories, 6);
    }

    #[test]
    fn linux_loaders() {
        let t = FakeTree::new(
            "Debian",
            &[
                ("isolinux/isolinux.bin", 40_000),
                ("isolinux/isolinux.cfg", 300),
                ("boot/grub/grub.cfg", 1000),
                ("boot/grub/i386-pc/", 0),
                ("EFI/boot/bootx64.efi", 900_000),
                ("EFI/boot/grubx64.efi", 2_000_000),
                ("install.amd/vmlinuz", 6_000_000),
            ],
        );
        let f = scan(&t).unwrap();
        assert!(!f.windows.is_windows());
        assert_eq!(
            f.loaders.syslinux,
            vec!["/isolinux/isolinux.bin", "/isolinux/isolinux.cfg"]
        );
        let mut grub = f.loaders.grub.clone();
        grub.sort();
        assert_eq!(
            grub,
            vec![
                "/EFI/boot/grubx64.efi",
                "/boot/grub/grub.cfg",
                "/boot/grub/i386-pc"
            ]
        );
        assert_eq!(f.efi_loaders[0].path, "/EFI/boot/bootx64.efi");
        assert!(f.large_files.is_empty());
    }

    /// A directory that contains itself: scanned once, no hang.
    struct LoopTree;
    impl FileTree for LoopTree {
        fn kind(&self) -> FsKind {
            FsKind::Iso9660
        }
        fn label(&self) -> &str {
            ""
        }
        fn root(&self) -> NodeId {
            NodeId(0)
        }
        fn read_dir(&self, _: NodeId) -> Result<Vec<DirEntry>, Error> {
            Ok(vec![DirEntry {
                name: "again".into(),
                kind: NodeKind::Dir,
                size: 0,
                node: NodeId(0),
                meta: Default::default(),
            }])
        }
        fn file_data(&self, _: NodeId) -> Result<FileData, Error> {
            Ok(FileData::default())
        }
    }

    /// A bootable no-emulation EFI entry whose catalog says one sector.
    fn efi_entry(index: usize, load_rba: u32) -> crate::image::eltorito::BootEntry {
        crate::image::eltorito::BootEntry {
            index,
            platform: crate::image::eltorito::Platform::Efi,
            bootable: true,
            media: crate::image::eltorito::Media::NoEmulation,
            load_segment: 0,
            system_type: 0,
            sector_count: 1,
            load_rba,
        }
    }

    #[test]
    fn directory_loops_terminate() {
        let f = scan(&LoopTree).unwrap();
        assert_eq!((f.files, f.directories), (0, 1));
        let entry = efi_entry(0, 20);
        let img = vec![0u8; 64 * 2048];
        let r = crate::image::eltorito::resolve_size(&img, &entry, Some(&LoopTree), &[]).unwrap();
        assert_eq!(r.len, 512);
    }

    #[test]
    fn boot_image_sized_from_the_tree() {
        let t = FakeTree::new("X", &[("boot/efi.img", 1_474_560), ("readme", 10)]);
        // FakeTree puts node n at block 100 + n: boot=1, efi.img=2.
        let entry = efi_entry(1, 102);
        let img = vec![0u8; 2048 * 2048];
        let r = crate::image::eltorito::resolve_size(&img, &entry, Some(&t), &[]).unwrap();
        assert_eq!(r.len, 1_474_560);
        assert_eq!(
            r.size_from,
            crate::image::eltorito::SizeSource::File {
                path: "/boot/efi.img".into()
            }
        );
    }
}
