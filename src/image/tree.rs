//! Using a [`FileTree`] safely: turning image names into host path
//! components, looking paths up, walking the whole tree with loop and depth
//! detection, and streaming a file's bytes with bounded memory.
//!
//! These work the same over every reader (ISO 9660 views, UDF), so the
//! checks that keep hostile images from escaping a directory or looping
//! forever live here once.

use crate::image::MAX_DEPTH;
use crate::image::{ByteSource, DirEntry, Error, FileData, FileTree, NodeId, NodeKind, Run};
use std::collections::HashSet;
use std::io;
use std::sync::Arc;

/// Linux's `NAME_MAX`: longer components cannot be created anyway.
const NAME_MAX: usize = 255;

/// Checks that an image name can be used as ONE component of a host path
/// without escaping the directory it is joined to, and returns it.
///
/// Refused, and why:
/// - `""` — joining an empty component names the parent directory itself;
/// - `"."`, `".."` — the directory itself and its parent: `..` is the classic
///   way out of an extraction directory;
/// - anything containing `/` — a separator would make one image name several
///   host components (`../../etc/passwd`, or an absolute path);
/// - anything containing NUL — the kernel would cut the name there, so the
///   file created would not be the one checked;
/// - names longer than 255 bytes — the host cannot create them, and failing
///   now names the culprit.
///
/// Backslashes, control characters and leading dashes are allowed: on Linux
/// they are ordinary name bytes and cannot change where a file lands.
pub fn safe_component(name: &str) -> Result<&str, Error> {
    let why = if name.is_empty() {
        "it is empty"
    } else if name == "." || name == ".." {
        "it names the current or parent directory"
    } else if name.contains('/') {
        "it contains '/', which would make it several path components"
    } else if name.contains('\0') {
        "it contains a NUL byte, which would truncate it"
    } else if name.len() > NAME_MAX {
        "it is longer than 255 bytes"
    } else {
        return Ok(name);
    };
    Err(Error::UnsafeName {
        name: name.to_owned(),
        why,
    })
}

/// What a path names inside the tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    pub node: NodeId,
    pub kind: NodeKind,
    pub size: u64,
}

/// Finds `path` (components separated by `/`; empty components and `.` are
/// ignored, `..` is refused) in the tree. Symbolic links are not followed.
pub fn lookup(tree: &dyn FileTree, path: &str) -> Result<Found, Error> {
    let mut cur = Found {
        node: tree.root(),
        kind: NodeKind::Dir,
        size: 0,
    };
    let mut walked = String::new();
    for comp in path.split('/').filter(|c| !c.is_empty() && *c != ".") {
        if comp == ".." {
            return Err(Error::UnsafeName {
                name: path.to_owned(),
                why: "paths inside the image may not use '..'",
            });
        }
        if cur.kind != NodeKind::Dir {
            return Err(Error::WrongKind {
                path: if walked.is_empty() {
                    "/".into()
                } else {
                    walked
                },
                expected: "directory",
            });
        }
        walked.push('/');
        walked.push_str(comp);
        let entry = tree
            .read_dir(cur.node)?
            .into_iter()
            .find(|e| e.name == comp)
            .ok_or_else(|| Error::NotFound {
                path: walked.clone(),
            })?;
        cur = Found {
            node: entry.node,
            kind: entry.kind,
            size: entry.size,
        };
    }
    Ok(cur)
}

/// One entry met by [`walk`].
#[derive(Debug)]
pub struct Visit<'a> {
    /// Path relative to the walk's start, components joined with `/`.
    pub path: &'a str,
    /// 1 for the start directory's own entries.
    pub depth: usize,
    pub entry: &'a DirEntry,
}

/// Visits every entry below directory `start`, depth first, parents before
/// children, in directory order. `f` returns whether to descend into a
/// directory entry.
///
/// Fails with [`Error::Loop`] when a directory is reached a second time (its
/// node was already visited: a directory pointing at itself or an ancestor,
/// or two records sharing one extent, which would make the walk exponential)
/// and [`Error::TooDeep`] below [`MAX_DEPTH`] levels.
pub fn walk<E: From<Error>>(
    tree: &dyn FileTree,
    start: NodeId,
    mut f: impl FnMut(&Visit<'_>) -> Result<bool, E>,
) -> Result<(), E> {
    struct Level {
        entries: std::vec::IntoIter<DirEntry>,
        prefix: String,
    }
    let mut visited = HashSet::from([start]);
    let mut stack = vec![Level {
        entries: tree.read_dir(start)?.into_iter(),
        prefix: String::new(),
    }];
    while let Some(level) = stack.last_mut() {
        let Some(entry) = level.entries.next() else {
            stack.pop();
            continue;
        };
        let path = if level.prefix.is_empty() {
            entry.name.clone()
        } else {
            format!("{}/{}", level.prefix, entry.name)
        };
        let depth = stack.len();
        let descend = f(&Visit {
            path: &path,
            depth,
            entry: &entry,
        })?;
        if entry.kind == NodeKind::Dir && descend {
            if !visited.insert(entry.node) {
                return Err(Error::Loop { path }.into());
            }
            if depth >= MAX_DEPTH {
                return Err(Error::TooDeep {
                    path,
                    limit: MAX_DEPTH,
                }
                .into());
            }
            let entries = tree.read_dir(entry.node)?.into_iter();
            stack.push(Level {
                entries,
                prefix: path,
            });
        }
    }
    Ok(())
}

/// Reads a file's bytes from the image, run by run, as an [`io::Read`]: the
/// caller chooses the buffer, so memory stays bounded whatever the file size.
/// Image errors surface as [`io::Error`]s wrapping the [`Error`].
pub struct FileReader {
    src: Arc<dyn ByteSource>,
    runs: std::vec::IntoIter<Run>,
    current: Option<Run>,
    /// Bytes of `current` already read.
    done: u64,
}

impl FileReader {
    pub fn new(src: Arc<dyn ByteSource>, data: FileData) -> Self {
        FileReader {
            src,
            runs: data.runs.into_iter(),
            current: None,
            done: 0,
        }
    }
}

impl io::Read for FileReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let run = match self.current {
                Some(r) if self.done < r.len() => r,
                _ => match self.runs.next() {
                    Some(r) => {
                        self.current = Some(r);
                        self.done = 0;
                        continue;
                    }
                    None => return Ok(0),
                },
            };
            if buf.is_empty() {
                return Ok(0);
            }
            let n = (run.len() - self.done).min(buf.len() as u64) as usize;
            match run {
                Run::Zeros { .. } => buf[..n].fill(0),
                Run::Data { offset, .. } => self
                    .src
                    .read_exact_at(offset + self.done, &mut buf[..n], "file data")
                    .map_err(io::Error::other)?,
            }
            self.done += n as u64;
            return Ok(n);
        }
    }
}

/// Reads up to `buf.len()` bytes of a file at byte `pos` of its contents,
/// for random access (a mounted file is read at any offset, in any order).
/// Returns how many bytes were read: fewer than asked only at the end of the
/// file. A run lying outside the image fails with the [`ByteSource`]'s
/// bounds error, never a short read.
pub fn read_at(
    src: &dyn ByteSource,
    data: &FileData,
    mut pos: u64,
    buf: &mut [u8],
) -> Result<usize, Error> {
    let mut filled = 0;
    let mut start = 0u64;
    for run in &data.runs {
        if filled == buf.len() {
            break;
        }
        let end = start + run.len();
        if pos < end {
            let within = pos - start;
            let n = (run.len() - within).min((buf.len() - filled) as u64) as usize;
            let out = &mut buf[filled..filled + n];
            match *run {
                Run::Zeros { .. } => out.fill(0),
                Run::Data { offset, .. } => src.read_exact_at(offset + within, out, "file data")?,
            }
            filled += n;
            pos += n as u64;
        }
        start = end;
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn safe_components() {
        for bad in ["", ".", "..", "a/b", "/", "../x", "a\0b", &"x".repeat(256)] {
            assert!(safe_component(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["a", "...", "a b", "-rf", "a\\b", "ünï", &"x".repeat(255)] {
            assert_eq!(safe_component(good).unwrap(), good);
        }
    }

    #[test]
    fn reader_concatenates_runs() {
        let img: Arc<dyn ByteSource> = Arc::new((0u8..100).collect::<Vec<u8>>());
        let data = FileData {
            size: 25,
            runs: vec![
                Run::Data {
                    offset: 90,
                    len: 10,
                },
                Run::Zeros { len: 5 },
                Run::Data { offset: 0, len: 10 },
            ],
        };
        let mut out = Vec::new();
        FileReader::new(img.clone(), data)
            .read_to_end(&mut out)
            .unwrap();
        let mut want: Vec<u8> = (90..100).collect();
        want.extend([0; 5]);
        want.extend(0..10);
        assert_eq!(out, want);
        let past = FileData {
            size: 10,
            runs: vec![Run::Data {
                offset: 95,
                len: 10,
            }],
        };
        assert!(FileReader::new(img, past).read_to_end(&mut out).is_err());
    }

    #[test]
    fn read_at_reads_any_offset_across_runs() {
        let img: Arc<dyn ByteSource> = Arc::new((0u8..100).collect::<Vec<u8>>());
        let data = FileData {
            size: 25,
            runs: vec![
                Run::Data {
                    offset: 90,
                    len: 10,
                },
                Run::Zeros { len: 5 },
                Run::Data { offset: 0, len: 10 },
            ],
        };
        let mut whole = Vec::new();
        FileReader::new(img.clone(), data.clone())
            .read_to_end(&mut whole)
            .unwrap();
        for pos in 0..=26u64 {
            for len in [0usize, 1, 3, 7, 30] {
                let mut buf = vec![0xAA; len];
                let n = read_at(&*img, &data, pos, &mut buf).unwrap();
                let want = &whole[(pos as usize).min(25)..(pos as usize + len).min(25)];
                assert_eq!(&buf[..n], want, "pos {pos} len {len}");
            }
        }
        let past = FileData {
            size: 10,
            runs: vec![Run::Data {
                offset: 95,
                len: 10,
            }],
        };
        assert!(read_at(&*img, &past, 0, &mut [0; 4]).is_ok());
        assert!(matches!(
            read_at(&*img, &past, 3, &mut [0; 4]),
            Err(Error::OutOfBounds { .. })
        ));
    }

    /// A tree whose only directory contains itself.
    struct SelfLoop;
    impl FileTree for SelfLoop {
        fn kind(&self) -> crate::image::FsKind {
            crate::image::FsKind::Iso9660
        }
        fn label(&self) -> &str {
            ""
        }
        fn root(&self) -> NodeId {
            NodeId(1)
        }
        fn read_dir(&self, _: NodeId) -> Result<Vec<DirEntry>, Error> {
            Ok(vec![DirEntry {
                name: "again".into(),
                kind: NodeKind::Dir,
                size: 0,
                node: NodeId(1),
                meta: Default::default(),
            }])
        }
        fn file_data(&self, _: NodeId) -> Result<FileData, Error> {
            Ok(FileData::default())
        }
    }

    /// A chain of distinct directories deeper than the limit.
    struct Deep;
    impl FileTree for Deep {
        fn kind(&self) -> crate::image::FsKind {
            crate::image::FsKind::Iso9660
        }
        fn label(&self) -> &str {
            ""
        }
        fn root(&self) -> NodeId {
            NodeId(0)
        }
        fn read_dir(&self, d: NodeId) -> Result<Vec<DirEntry>, Error> {
            Ok(vec![DirEntry {
                name: "d".into(),
                kind: NodeKind::Dir,
                size: 0,
                node: NodeId(d.0 + 1),
                meta: Default::default(),
            }])
        }
        fn file_data(&self, _: NodeId) -> Result<FileData, Error> {
            Ok(FileData::default())
        }
    }

    #[test]
    fn walk_detects_loops_and_depth() {
        let r = walk::<Error>(&SelfLoop, NodeId(1), |_| Ok(true));
        assert!(
            matches!(r, Err(Error::Loop { ref path }) if path == "again"),
            "{r:?}"
        );
        let r = walk::<Error>(&Deep, NodeId(0), |_| Ok(true));
        assert!(
            matches!(
                r,
                Err(Error::TooDeep {
                    limit: MAX_DEPTH,
                    ..
                })
            ),
            "{r:?}"
        );
        // Not descending is always safe.
        walk::<Error>(&SelfLoop, NodeId(1), |_| Ok(false)).unwrap();
        assert!(lookup(&Deep, "d/d/d/x").is_err());
        assert_eq!(lookup(&Deep, "d/./d").unwrap().node, NodeId(2));
        assert!(lookup(&Deep, "d/../d").is_err());
    }
}
