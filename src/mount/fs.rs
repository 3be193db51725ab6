//! The FUSE request handlers over a [`Table`]: lookups, attributes,
//! directory listings, links and reads; every request that would change
//! anything is `EROFS`.
//!
//! The mount is also made with `ro`, so the kernel refuses writes itself
//! before asking us; the handlers below say `EROFS` too, so the answer
//! does not depend on the kernel's checks.

use super::table::{Content, Inode, Table, ROOT};
use crate::events::{Event, Observer};
use crate::image::tree::read_at;
use crate::image::ByteSource;
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenAccMode, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow,
    WriteFlags,
};
use std::ffi::OsStr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The image never changes under the mount: the kernel may cache
/// attributes and entries for as long as it likes.
const TTL: Duration = Duration::from_secs(3600);

/// The largest read the kernel asks for is 128 KiB (`max_read`); a bigger
/// request is clamped, so one read never allocates more than this.
const MAX_READ: usize = 1 << 20;

/// The file system handed to `fuser`.
pub struct ImageFs {
    pub(super) table: Table,
    pub(super) src: Arc<dyn ByteSource>,
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) observer: Arc<dyn Observer + Send + Sync>,
}

impl ImageFs {
    /// The path of `ino` from the root, for warnings.
    fn path(&self, mut ino: u64) -> String {
        let mut parts = Vec::new();
        while ino != ROOT {
            let Some(i) = self.table.get(ino) else { break };
            parts.push(i.name.as_str());
            ino = i.parent;
        }
        parts.reverse();
        format!("/{}", parts.join("/"))
    }

    fn attr(&self, ino: u64, inode: &Inode) -> FileAttr {
        // Without a recorded mode (Joliet, plain ISO 9660, UDF): readable
        // by everyone, directories searchable. Links are always 0777.
        let (kind, default_perm, nlink) = match inode.content {
            Content::Dir(_) => (FileType::Directory, 0o555, 2),
            Content::File(_) => (FileType::RegularFile, 0o444, 1),
            Content::Symlink(_) => (FileType::Symlink, 0o777, 1),
        };
        let perm = match (&inode.content, inode.meta.mode) {
            (Content::Symlink(_), _) | (_, None) => default_perm,
            (_, Some(mode)) => (mode & 0o7777) as u16,
        };
        let size = match &inode.content {
            Content::Symlink(t) => t.len() as u64,
            _ => inode.size,
        };
        let time = match inode.meta.mtime {
            Some(s) if s >= 0 => UNIX_EPOCH + Duration::from_secs(s.unsigned_abs()),
            Some(s) => UNIX_EPOCH - Duration::from_secs(s.unsigned_abs()),
            None => UNIX_EPOCH,
        };
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: time,
            mtime: time,
            ctime: time,
            crtime: time,
            kind,
            perm,
            nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: 2048,
            flags: 0,
        }
    }
}

impl Filesystem for ImageFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let Some(dir) = self.table.get(parent.0) else {
            return reply.error(Errno::ENOENT);
        };
        if !matches!(dir.content, Content::Dir(_)) {
            return reply.error(Errno::ENOTDIR);
        }
        let found = name
            .to_str()
            .and_then(|n| self.table.child(parent.0, n))
            .and_then(|ino| Some((ino, self.table.get(ino)?)));
        match found {
            Some((ino, inode)) => reply.entry(&TTL, &self.attr(ino, inode), Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.table.get(ino.0) {
            Some(inode) => reply.attr(&TTL, &self.attr(ino.0, inode)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.table.get(ino.0).map(|i| &i.content) {
            Some(Content::Symlink(target)) => reply.data(target.as_bytes()),
            Some(_) => reply.error(Errno::EINVAL),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if !matches!(flags.acc_mode(), OpenAccMode::O_RDONLY) || flags.0 & libc::O_TRUNC != 0 {
            return reply.error(Errno::EROFS);
        }
        match self.table.get(ino.0).map(|i| &i.content) {
            // The image does not change: the kernel may keep pages cached
            // across opens.
            Some(Content::File(_)) => reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE),
            Some(Content::Dir(_)) => reply.error(Errno::EISDIR),
            Some(Content::Symlink(_)) => reply.error(Errno::ELOOP),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let Some(inode) = self.table.get(ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        let data = match &inode.content {
            Content::File(Some(data)) => data,
            Content::File(None) => return reply.error(Errno::EIO),
            Content::Dir(_) => return reply.error(Errno::EISDIR),
            Content::Symlink(_) => return reply.error(Errno::EINVAL),
        };
        let left = data.size.saturating_sub(offset);
        let len = (size as usize).min(MAX_READ).min(left as usize);
        let mut buf = vec![0u8; len];
        match read_at(&*self.src, data, offset, &mut buf) {
            Ok(n) => reply.data(&buf[..n]),
            Err(e) => {
                // A damaged or truncated image: this file fails, the
                // others still read.
                self.observer.event(&Event::Warning(format!(
                    "reading {} failed: {}",
                    self.path(ino.0),
                    crate::error_chain(&e)
                )));
                reply.error(Errno::EIO)
            }
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.table.get(ino.0).map(|i| &i.content) {
            Some(Content::Dir(_)) => reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE),
            Some(_) => reply.error(Errno::ENOTDIR),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let Some(inode) = self.table.get(ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        let Content::Dir(children) = &inode.content else {
            return reply.error(Errno::ENOTDIR);
        };
        let dots = [
            (ino.0, FileType::Directory, OsStr::new(".")),
            (inode.parent, FileType::Directory, OsStr::new("..")),
        ];
        let entries = dots.into_iter().chain(children.iter().filter_map(|&c| {
            let child = self.table.get(c)?;
            let kind = match child.content {
                Content::Dir(_) => FileType::Directory,
                Content::File(_) => FileType::RegularFile,
                Content::Symlink(_) => FileType::Symlink,
            };
            Some((c, kind, OsStr::new(child.name.as_str())))
        }));
        // `offset` is the index after the last entry the kernel already has.
        for (i, (ino, kind, name)) in entries.enumerate().skip(offset as usize) {
            if reply.add(INodeNo(ino), i as u64 + 1, kind, name) {
                break;
            }
        }
        reply.ok()
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let blocks = self.src.len().div_ceil(2048);
        reply.statfs(blocks, 0, 0, self.table.len() as u64, 0, 2048, 255, 2048)
    }

    fn access(&self, _req: &Request, ino: INodeNo, mask: fuser::AccessFlags, reply: ReplyEmpty) {
        if self.table.get(ino.0).is_none() {
            return reply.error(Errno::ENOENT);
        }
        if mask.contains(fuser::AccessFlags::W_OK) {
            return reply.error(Errno::EROFS);
        }
        reply.ok()
    }

    fn getxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _size: u32,
        reply: ReplyXattr,
    ) {
        reply.error(Errno::NO_XATTR)
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, size: u32, reply: ReplyXattr) {
        if size == 0 {
            reply.size(0)
        } else {
            reply.data(&[])
        }
    }

    // Everything below would change the tree: refused.

    fn setattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        _size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        reply.error(Errno::EROFS)
    }

    fn mknod(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS)
    }

    fn mkdir(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS)
    }

    fn unlink(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS)
    }

    fn rmdir(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS)
    }

    fn symlink(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _link_name: &OsStr,
        _target: &Path,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS)
    }

    fn rename(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _newparent: INodeNo,
        _newname: &OsStr,
        _flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS)
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS)
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        reply.error(Errno::EROFS)
    }

    fn create(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        reply.error(Errno::EROFS)
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS)
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS)
    }
}
