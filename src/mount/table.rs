//! The inode table of a mounted image: the whole file tree, walked once
//! at mount time through [`tree::walk`], so a tree that loops or nests too
//! deep is refused before anything is mounted (as `ls -R` and `extract`
//! refuse it), and every later kernel request is a lookup in memory.
//!
//! The table holds names, kinds, sizes and where each file's bytes lie
//! (its [`FileData`] runs), never file contents: an installer image has a
//! few thousand entries, so this stays a few hundred KiB.

use crate::image::tree::{safe_component, walk};
use crate::image::{Error, FileData, FileTree, Meta, NodeKind};
use std::collections::HashSet;

/// The root directory's inode number (FUSE's `FUSE_ROOT_ID`).
pub const ROOT: u64 = 1;

/// What an inode is.
#[derive(Debug)]
pub enum Content {
    /// A directory and its entries' inode numbers, in image order.
    Dir(Vec<u64>),
    /// A file and where its bytes lie; `None` when the reader cannot say
    /// (a zisofs-compressed or interleaved file, an extent outside the
    /// image: [`Problem::Unreadable`] says why): reading it fails with `EIO`.
    File(Option<FileData>),
    /// A symbolic link and its target, as stored.
    Symlink(String),
}

/// One entry of the mounted tree.
#[derive(Debug)]
pub struct Inode {
    /// The directory holding it (the root is its own parent).
    pub parent: u64,
    /// Its name in that directory (empty for the root).
    pub name: String,
    /// File size in bytes (0 for directories and links).
    pub size: u64,
    /// Mode and time as the image records them (none for the root).
    pub meta: Meta,
    pub content: Content,
}

/// Why an entry of the image is not shown, or shown but unreadable.
#[derive(Debug)]
pub enum Problem {
    /// The name cannot be one path component (`/`, NUL, `.`, `..`, empty,
    /// over 255 bytes: [`safe_component`]); the entry and everything below
    /// it are hidden.
    Hidden { path: String, error: Error },
    /// A second entry with the same name in one directory: only the first
    /// is shown, as `extract` keeps only the first.
    Duplicate { path: String },
    /// The file is listed, but its bytes cannot be read.
    Unreadable { path: String, error: Error },
}

/// Every inode of a mounted tree, inode number `n` at index `n - 1`.
#[derive(Debug)]
pub struct Table {
    inodes: Vec<Inode>,
}

impl Table {
    /// Walks `tree` into a table. Fails when the walk does (a loop, too
    /// deep, a malformed or unreadable directory); entries that cannot be
    /// shown safely are left out and listed in the returned problems.
    pub fn build(tree: &dyn FileTree) -> Result<(Table, Vec<Problem>), Error> {
        let mut inodes = vec![Inode {
            parent: ROOT,
            name: String::new(),
            size: 0,
            meta: Meta::default(),
            content: Content::Dir(Vec::new()),
        }];
        let mut problems = Vec::new();
        let mut names: HashSet<(u64, String)> = HashSet::new();
        // `parents[d - 1]` is the inode of the directory whose entries are
        // at depth `d`: the walk is depth first, parents before children.
        let mut parents = vec![ROOT];
        walk::<Error>(tree, tree.root(), |v| {
            parents.truncate(v.depth);
            let parent = parents[v.depth - 1];
            if let Err(error) = safe_component(&v.entry.name) {
                problems.push(Problem::Hidden {
                    path: v.path.to_owned(),
                    error,
                });
                return Ok(false);
            }
            if !names.insert((parent, v.entry.name.clone())) {
                problems.push(Problem::Duplicate {
                    path: v.path.to_owned(),
                });
                return Ok(false);
            }
            let ino = inodes.len() as u64 + 1;
            let content = match &v.entry.kind {
                NodeKind::Dir => Content::Dir(Vec::new()),
                NodeKind::Symlink(target) => Content::Symlink(target.clone()),
                NodeKind::File => match tree.file_data(v.entry.node) {
                    Ok(data) => Content::File(Some(data)),
                    Err(error) => {
                        problems.push(Problem::Unreadable {
                            path: v.path.to_owned(),
                            error,
                        });
                        Content::File(None)
                    }
                },
            };
            let is_dir = matches!(content, Content::Dir(_));
            inodes.push(Inode {
                parent,
                name: v.entry.name.clone(),
                size: v.entry.size,
                meta: v.entry.meta,
                content,
            });
            if let Content::Dir(children) = &mut inodes[(parent - 1) as usize].content {
                children.push(ino);
            }
            if is_dir {
                parents.push(ino);
            }
            Ok(is_dir)
        })?;
        Ok((Table { inodes }, problems))
    }

    /// The inode numbered `ino`.
    pub fn get(&self, ino: u64) -> Option<&Inode> {
        let i = usize::try_from(ino.checked_sub(1)?).ok()?;
        self.inodes.get(i)
    }

    /// The entry `name` of directory `dir`.
    pub fn child(&self, dir: u64, name: &str) -> Option<u64> {
        match &self.get(dir)?.content {
            Content::Dir(children) => children
                .iter()
                .copied()
                .find(|&c| self.get(c).is_some_and(|i| i.name == name)),
            _ => None,
        }
    }

    /// How many inodes the tree has (the root included).
    pub fn len(&self) -> usize {
        self.inodes.len()
    }

    /// Never true: the root is always there.
    pub fn is_empty(&self) -> bool {
        self.inodes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{DirEntry, FsKind, NodeId, Run};

    /// A tree given as (directory, entries) pairs; unknown directories are empty.
    struct Fake(Vec<(u64, Vec<DirEntry>)>);

    fn e(name: &str, kind: NodeKind, node: u64) -> DirEntry {
        DirEntry {
            name: name.into(),
            kind,
            size: node * 10,
            node: NodeId(node),
            meta: Default::default(),
        }
    }

    impl FileTree for Fake {
        fn kind(&self) -> FsKind {
            FsKind::RockRidge
        }
        fn label(&self) -> &str {
            ""
        }
        fn root(&self) -> NodeId {
            NodeId(0)
        }
        fn read_dir(&self, dir: NodeId) -> Result<Vec<DirEntry>, Error> {
            Ok(self
                .0
                .iter()
                .find(|(d, _)| *d == dir.0)
                .map(|(_, v)| v.clone())
                .unwrap_or_default())
        }
        fn file_data(&self, file: NodeId) -> Result<FileData, Error> {
            if file.0 == 99 {
                return Err(Error::Malformed {
                    format: "test",
                    offset: 7,
                    detail: "compressed".into(),
                });
            }
            Ok(FileData {
                size: file.0 * 10,
                runs: vec![Run::Data {
                    offset: 0,
                    len: file.0 * 10,
                }],
            })
        }
    }

    #[test]
    fn the_table_holds_the_tree_with_parents_and_hides_unsafe_names() {
        let tree = Fake(vec![
            (
                0,
                vec![
                    e("a", NodeKind::Dir, 1),
                    e("f", NodeKind::File, 2),
                    e("../etc", NodeKind::File, 3),
                    e("f", NodeKind::File, 4),
                    e("bad/dir", NodeKind::Dir, 5),
                    e("z", NodeKind::File, 99),
                ],
            ),
            (
                1,
                vec![
                    e("b", NodeKind::Dir, 6),
                    e("l", NodeKind::Symlink("../f".into()), 7),
                ],
            ),
            (6, vec![e("deep", NodeKind::File, 8)]),
            (5, vec![e("under-bad", NodeKind::File, 9)]),
        ]);
        let (t, problems) = Table::build(&tree).unwrap();
        let names = |d: u64| -> Vec<&str> {
            match &t.get(d).unwrap().content {
                Content::Dir(c) => c.iter().map(|&i| t.get(i).unwrap().name.as_str()).collect(),
                _ => panic!("not a dir"),
            }
        };
        assert_eq!(names(ROOT), ["a", "f", "z"]);
        let a = t.child(ROOT, "a").unwrap();
        assert_eq!(names(a), ["b", "l"]);
        let b = t.child(a, "b").unwrap();
        let deep = t.child(b, "deep").unwrap();
        assert_eq!(t.get(deep).unwrap().parent, b);
        assert_eq!(t.get(b).unwrap().parent, a);
        assert_eq!(t.get(a).unwrap().parent, ROOT);
        assert_eq!(t.get(t.child(ROOT, "f").unwrap()).unwrap().size, 20);
        assert!(matches!(
            t.get(t.child(a, "l").unwrap()).unwrap().content,
            Content::Symlink(ref s) if s == "../f"
        ));
        assert!(matches!(
            t.get(t.child(ROOT, "z").unwrap()).unwrap().content,
            Content::File(None)
        ));
        assert_eq!(t.len(), 7);
        assert!(t.get(0).is_none() && t.get(8).is_none());
        let paths: Vec<String> = problems
            .iter()
            .map(|p| match p {
                Problem::Hidden { path, .. } => format!("hidden {path}"),
                Problem::Duplicate { path } => format!("dup {path}"),
                Problem::Unreadable { path, .. } => format!("unreadable {path}"),
            })
            .collect();
        assert_eq!(
            paths,
            ["hidden ../etc", "dup f", "hidden bad/dir", "unreadable z"]
        );
    }

    #[test]
    fn a_looping_tree_is_refused() {
        let tree = Fake(vec![
            (0, vec![e("a", NodeKind::Dir, 1)]),
            (1, vec![e("up", NodeKind::Dir, 0)]),
        ]);
        assert!(matches!(Table::build(&tree), Err(Error::Loop { .. })));
    }
}
