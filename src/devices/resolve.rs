//! Turning what the user typed as TARGET into a whole disk or an image file.
//!
//! TARGET may be a `/dev` node, any symlink to one (`/dev/disk/by-id/…`,
//! `/dev/disk/by-path/…`), a serial number or a by-id link name, or the path
//! of an image file to create. A partition is refused naming its disk, so the
//! user can correct `sdb1` to `sdb` knowingly rather than by guessing.

use super::enumerate::{build, Disk, Kind, State};
use super::sysfs::{Graph, Roots};
use super::Error;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

/// What a TARGET names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolved {
    /// A whole disk; `by_path` is false when it was found by serial number or
    /// by-id name rather than named by a path.
    Disk { disk: Box<Disk>, by_path: bool },
    /// A regular file (existing, or to be created): an image of a stick.
    File(PathBuf),
}

/// True when `s` can only be meant as a path (a new image file).
fn looks_like_path(s: &str) -> bool {
    s.contains('/') || s.contains('.')
}

/// Resolves `target` against the disks under `roots`.
pub fn resolve(roots: &Roots, target: &Path) -> Result<Resolved, Error> {
    let graph = Graph::read(roots)?;
    let state = State::read(roots)?;
    let disks = build(&graph, &state);
    let as_str = target.to_string_lossy();

    let meta = std::fs::metadata(target);
    let under_dev = target.starts_with("/dev") || target.starts_with(&roots.dev);
    let node = match &meta {
        Ok(m) if m.file_type().is_file() && !under_dev => {
            return Ok(Resolved::File(target.to_path_buf()))
        }
        // Also a regular file under /dev: left by a write to a disk that was
        // not there, never a target.
        Ok(m) if !m.file_type().is_block_device() => {
            return Err(Error::NotATarget {
                path: target.to_path_buf(),
            })
        }
        Ok(_) => graph.node_for_dev_path(target),
        Err(_) if under_dev => graph.node_for_dev_path(target),
        Err(_) => {
            if looks_like_path(&as_str) {
                return Ok(Resolved::File(target.to_path_buf()));
            }
            return by_serial(&graph, &disks, &as_str);
        }
    };
    let Some(node) = node else {
        // Never suggest a file under /dev: a missing /dev/sdz is a stick
        // that is not there (or a typo), not a file to create.
        if under_dev {
            return Err(Error::NoSuchDevice {
                path: target.to_path_buf(),
            });
        }
        return Err(Error::UnknownTarget {
            target: as_str.into_owned(),
            files: false,
        });
    };
    if let Some(disk) = named(&disks, &node) {
        return Ok(Resolved::Disk {
            disk: Box::new(disk.clone()),
            by_path: true,
        });
    }
    if let Some(parent) = graph.nodes.get(&node).and_then(|n| n.parent.clone()) {
        let disk = named(&disks, &parent);
        return Err(Error::Partition {
            path: target.to_path_buf(),
            partition: node,
            disk: disk.map_or_else(|| roots.dev.join(&parent), |d| d.path.clone()),
        });
    }
    Err(Error::NotWholeDisk {
        path: target.to_path_buf(),
        name: node,
    })
}

/// The disk whose kernel name is `name`. One function for both uses, so
/// that `.cargo/mutants.toml` can keep its `!=` mutant (any other disk of
/// the machine) from being run.
fn named<'d>(disks: &'d [Disk], name: &str) -> Option<&'d Disk> {
    disks.iter().find(|d| d.name == name)
}

/// A disk by serial number or by-id link name (exact match). Only ordinary
/// disks qualify: loop, ram and optical devices must be named by path.
fn by_serial(graph: &Graph, disks: &[Disk], s: &str) -> Result<Resolved, Error> {
    // Any of a disk's by-id names counts, not only the one `list` shows.
    let by_id_name = |d: &Disk| {
        graph
            .links
            .get(&d.name)
            .is_some_and(|ls| ls.iter().any(|(k, l)| k == "by-id" && l == s))
            || d.by_id
                .as_ref()
                .and_then(|p| p.file_name())
                .is_some_and(|n| n == s)
    };
    let hits: Vec<&Disk> = disks
        .iter()
        .filter(|d| d.kind == Kind::Disk)
        .filter(|d| d.serial.as_deref() == Some(s) || by_id_name(d))
        .collect();
    match hits.as_slice() {
        [] => Err(Error::UnknownTarget {
            target: s.into(),
            files: false,
        }),
        [d] => Ok(Resolved::Disk {
            disk: Box::new((*d).clone()),
            by_path: false,
        }),
        many => Err(Error::AmbiguousSerial {
            serial: s.into(),
            paths: many.iter().map(|d| d.path.clone()).collect(),
        }),
    }
}
