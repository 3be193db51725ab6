//! After writing: making the kernel see the new partition table, and waiting
//! until the partition device nodes exist, so the user (or the next command)
//! finds `/dev/sdb1` right away.
//!
//! `BLKRRPART` re-reads the whole table; it fails with `EBUSY` when a
//! partition is open (a desktop probing it). Then `BLKPG` is the fallback:
//! delete the partitions the kernel knows and add the ones the new table has,
//! one by one, as `partprobe` does. The same fallback covers kernels built
//! without the parser for the table's type, where `BLKRRPART` succeeds but
//! finds nothing.

use super::guard::Guarded;
use super::sysfs::attr_u64;
use super::Error;
use crate::image::partitions::read_system_area;
use crate::image::ImageFile;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How the kernel was told about the new table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Blkrrpart,
    Blkpg,
    /// The device has no partition support (a loop device without
    /// `--partscan`): nothing to re-read.
    Unsupported,
}

/// The outcome of [`Guarded::reread_partitions`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reread {
    pub method: Method,
    /// The partition device nodes that exist now.
    pub partitions: Vec<PathBuf>,
}

const BLKRRPART: libc::c_ulong = 0x125F;
const BLKPG: libc::c_ulong = 0x1269;
const BLKPG_ADD_PARTITION: libc::c_int = 1;
const BLKPG_DEL_PARTITION: libc::c_int = 2;

#[repr(C)]
struct BlkpgIoctlArg {
    op: libc::c_int,
    flags: libc::c_int,
    datalen: libc::c_int,
    data: *mut libc::c_void,
}

#[repr(C)]
struct BlkpgPartition {
    start: libc::c_longlong,
    length: libc::c_longlong,
    pno: libc::c_int,
    devname: [libc::c_char; 64],
    volname: [libc::c_char; 64],
}

/// How long partition nodes may take to appear in `/dev` (devtmpfs creates
/// them asynchronously).
const NODE_WAIT: Duration = Duration::from_secs(10);

/// A partition as (number, start byte, length in bytes).
type Part = (u32, u64, u64);

impl Guarded {
    fn ioctl_plain(&self, req: libc::c_ulong) -> std::io::Result<()> {
        // SAFETY: BLKRRPART takes no argument.
        let r = unsafe { libc::ioctl(self.file().as_raw_fd(), req, 0) };
        if r < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    fn blkpg(&self, op: libc::c_int, (pno, start, length): Part) -> std::io::Result<()> {
        let mut part = BlkpgPartition {
            start: start as libc::c_longlong,
            length: length as libc::c_longlong,
            pno: pno as libc::c_int,
            devname: [0; 64],
            volname: [0; 64],
        };
        let mut arg = BlkpgIoctlArg {
            op,
            flags: 0,
            datalen: std::mem::size_of::<BlkpgPartition>() as libc::c_int,
            data: (&mut part as *mut BlkpgPartition).cast(),
        };
        // SAFETY: `arg` points at a live, correctly laid out blkpg_partition.
        let r = unsafe { libc::ioctl(self.file().as_raw_fd(), BLKPG, &mut arg) };
        if r < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// The partitions the kernel currently knows for this disk (sysfs).
    fn kernel_partitions(&self) -> Vec<(String, Part)> {
        let dir = self.roots_sys().join("block").join(&self.identity().name);
        let mut v: Vec<(String, Part)> = std::fs::read_dir(&dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter_map(|e| {
                        let p = e.path();
                        let n = attr_u64(&p, "partition")?;
                        let start = attr_u64(&p, "start")? * 512;
                        let len = attr_u64(&p, "size")? * 512;
                        Some((
                            e.file_name().to_string_lossy().into_owned(),
                            (n as u32, start, len),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort_by_key(|(_, p)| p.0);
        v
    }

    /// The partitions of the table now on the disk, as the kernel would
    /// read them: GPT when there is one behind a protective MBR (or no MBR),
    /// else the MBR's primary entries.
    pub fn table_partitions(&self) -> Result<Vec<Part>, Error> {
        let reread = |e: crate::image::Error| Error::Reread {
            path: self.path().to_path_buf(),
            cause: std::io::Error::other(e.to_string()),
        };
        let src = ImageFile::open(self.path()).map_err(reread)?;
        let area = read_system_area(&src).map_err(reread)?;
        let mut out = Vec::new();
        let use_gpt = area.gpt.is_some() && area.mbr.as_ref().is_none_or(|m| m.is_protective());
        if use_gpt {
            if let Some(gpt) = &area.gpt {
                let bs = u64::from(gpt.block_size);
                for e in &gpt.entries {
                    if e.last_lba >= e.first_lba {
                        out.push((
                            e.index,
                            e.first_lba * bs,
                            (e.last_lba - e.first_lba + 1) * bs,
                        ));
                    }
                }
            }
        } else if let Some(mbr) = &area.mbr {
            for e in &mbr.entries {
                if e.sectors > 0 {
                    out.push((
                        u32::from(e.index),
                        u64::from(e.start_lba) * 512,
                        u64::from(e.sectors) * 512,
                    ));
                }
            }
        }
        Ok(out)
    }

    /// Brings the kernel's partitions in line with `table` using `BLKPG`:
    /// partitions that differ are deleted, missing ones added.
    pub fn blkpg_sync(&self) -> Result<(), Error> {
        let table = self.table_partitions()?;
        let err = |source| Error::Reread {
            path: self.path().to_path_buf(),
            cause: source,
        };
        let known = self.kernel_partitions();
        for (_, p) in &known {
            if !table.contains(p) {
                self.blkpg(BLKPG_DEL_PARTITION, *p).map_err(err)?;
            }
        }
        for p in &table {
            if !known.iter().any(|(_, k)| k == p) {
                self.blkpg(BLKPG_ADD_PARTITION, *p).map_err(err)?;
            }
        }
        Ok(())
    }

    /// Makes the kernel re-read the partition table (`BLKRRPART`, `BLKPG` as
    /// the fallback) and waits until every partition's `/dev` node exists.
    pub fn reread_partitions(&self) -> Result<Reread, Error> {
        let method = match self.ioctl_plain(BLKRRPART) {
            // A kernel without the parser for this table type (some are built
            // without MSDOS or EFI partition support) finds nothing: add the
            // partitions explicitly. When it found any, its view stands.
            Ok(())
                if self.kernel_partitions().is_empty() && !self.table_partitions()?.is_empty() =>
            {
                self.blkpg_sync()?;
                Method::Blkpg
            }
            Ok(()) => Method::Blkrrpart,
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                return Ok(Reread {
                    method: Method::Unsupported,
                    partitions: Vec::new(),
                })
            }
            Err(_) => {
                self.blkpg_sync()?;
                Method::Blkpg
            }
        };
        Ok(Reread {
            method,
            partitions: self.wait_for_nodes()?,
        })
    }

    /// Waits until every partition sysfs shows has its device node.
    pub fn wait_for_nodes(&self) -> Result<Vec<PathBuf>, Error> {
        let nodes: Vec<PathBuf> = self
            .kernel_partitions()
            .into_iter()
            .map(|(n, _)| self.roots_dev().join(n))
            .collect();
        let start = Instant::now();
        loop {
            let missing: Vec<&PathBuf> = nodes.iter().filter(|p| !p.exists()).collect();
            if missing.is_empty() {
                return Ok(nodes);
            }
            if start.elapsed() > NODE_WAIT {
                return Err(Error::Reread {
                    path: self.path().to_path_buf(),
                    cause: std::io::Error::other(format!(
                        "partition node {} did not appear",
                        missing[0].display()
                    )),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
