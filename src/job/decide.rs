//! The decision step: how an image is put on a stick (a byte-for-byte copy,
//! or a built FAT32 layout with its options), derived entirely from the
//! image so that `write`, `compare` and `inspect` cannot disagree.

use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use super::Error;
use crate::image::{self, ByteSource, FileTree};
use crate::inspect::{self, Code, Inspection, Mode};
use crate::layout::{disk, esp_entry, from_iso};

/// What the caller asks for on top of the image's own decision.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Choice {
    /// Copy the image byte for byte even when it needs a built layout.
    pub raw: bool,
    /// Build a layout even for an optical image whose inspection decides
    /// raw (an isohybrid ISO): the opposite override of `raw`, for a hybrid
    /// ISO whose byte copy cannot boot UEFI (its EFI image only in El
    /// Torito). Both at once is refused ([`Error::RawAndLayout`]); an image
    /// without an ISO 9660/UDF tree has no files to lay out
    /// ([`Error::LayoutOfNonOptical`]).
    pub layout: bool,
    /// The partition table of a built layout. `None`: the default (GPT).
    /// Naming one for an image copied byte for byte is refused
    /// ([`Error::TableForRaw`]), since it would be silently ignored.
    pub table: Option<disk::Table>,
}

/// Something the user should hear about the decision once the job started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// A non-hybrid ISO copied byte for byte because the caller asked
    /// ([`Choice::raw`]): it will likely not boot. `reasons` are the
    /// inspection's reasons for a layout.
    ForcedRaw { reasons: Vec<String> },
    /// Neither an ISO nor a disk image bootstick recognises: copied as it is.
    Unrecognised,
    /// A byte copy that boots under BIOS only: the image's EFI boot image
    /// is reachable only through El Torito (as from a CD), and the copy
    /// gets no ESP entry for it, so UEFI PCs will not boot the stick; a
    /// built layout ([`Choice::layout`]) would. Said before anything is
    /// written, as `inspect`'s `efi-only-in-el-torito` reason says it.
    /// `esp_entry_possible`: without [`Choice::raw`] the copy would get an
    /// ESP entry ([`Decided::esp_entry`]) and boot under UEFI as well;
    /// `compressed`: a layout is built only from the decompressed ISO.
    RawBiosOnly {
        esp_entry_possible: bool,
        compressed: bool,
    },
    /// A layout built because the caller asked ([`Choice::layout`]) of an
    /// image whose inspection decides raw. `bios_lost`: its byte copy
    /// would boot under BIOS (MBR boot code), the layout does not (no BIOS
    /// boot code in built layouts, docs/layout.md).
    ForcedLayout { bios_lost: bool },
    /// An isohybrid ISO without an MBR entry for its El Torito EFI image:
    /// the copy gets one ([`Decided::esp_entry`], `docs/layout.md`).
    EspEntryAdded(esp_entry::EspEntry),
    /// Every x64 UEFI loader the stick will boot from
    /// (`EFI/BOOT/BOOTX64.EFI`) lacks a valid Authenticode signature:
    /// the stick can boot only with Secure Boot turned off. Each loader's
    /// path and state (`unsigned`, `tampered`, …).
    SecureBootOff {
        loaders: Vec<(String, crate::trust::authenticode::State)>,
    },
}

/// How the image is put on a target.
#[derive(Clone, Debug)]
pub enum Method {
    /// Byte for byte.
    Raw,
    /// A built layout of the given table; `smallest` is the layout built
    /// for an image-file target (sized to fit), whose `min_size` is what a
    /// disk must hold. A disk of another size gets its own build of it.
    Layout {
        table: disk::Table,
        smallest: Box<from_iso::Layout>,
    },
}

/// The outcome of the decision step.
#[derive(Clone, Debug)]
pub struct Decided {
    /// The inspection's decision, as `bootstick inspect` reports it.
    pub decision: inspect::Decision,
    pub method: Method,
    pub notices: Vec<Notice>,
    /// A byte copy's partition-table change that exposes the El Torito EFI
    /// image to UEFI (never with [`Choice::raw`], which copies exact bytes).
    pub esp_entry: Option<esp_entry::EspEntry>,
}

impl Decided {
    /// The name of the method in JSON's `mode`: `raw` or `layout`.
    pub fn mode_name(&self) -> &'static str {
        match self.method {
            Method::Raw => "raw",
            Method::Layout { .. } => "layout",
        }
    }
}

/// The name of a partition table in output (`gpt`, `mbr`).
pub fn table_name(t: disk::Table) -> &'static str {
    match t {
        disk::Table::Gpt => "gpt",
        disk::Table::Mbr => "mbr",
    }
}

/// The `layout` object of `write`'s and `compare`'s JSON start line and of
/// `inspect --json` (docs/cli.md).
#[derive(Clone, Debug, Serialize)]
pub struct LayoutSummary<'a> {
    pub table: &'static str,
    pub filesystem: &'static str,
    pub label: &'a str,
    pub disk_bytes: u64,
    pub min_bytes: u64,
    pub files: usize,
    pub directories: usize,
    pub file_bytes: u64,
    pub added_loaders: &'a [from_iso::AddedLoader],
    pub added_files: &'a [from_iso::AddedFile],
    pub el_torito_conflicts: &'a [from_iso::Conflict],
    pub skipped_links: &'a [String],
    pub wim_parts: &'a [from_iso::WimPart],
}

impl<'a> LayoutSummary<'a> {
    pub fn of(l: &'a from_iso::Layout) -> LayoutSummary<'a> {
        LayoutSummary {
            table: table_name(l.table),
            filesystem: "fat32",
            label: &l.label,
            disk_bytes: l.disk_size,
            min_bytes: l.min_size,
            files: l.files,
            directories: l.dirs,
            file_bytes: l.file_bytes,
            added_loaders: &l.added_loaders,
            added_files: &l.added_files,
            el_torito_conflicts: &l.el_torito_conflicts,
            skipped_links: &l.skipped_links,
            wim_parts: &l.wim_parts,
        }
    }
}

/// A tree opened for inspection, and the damaged tree passed over for it.
type Opened = (Option<Box<dyn FileTree>>, Option<image::open::Skipped>);

/// The image's file tree (UDF preferred, then Rock Ridge, Joliet, ISO 9660,
/// as `image::open` decides; past a damaged UDF to the ISO 9660 side, which
/// is then reported), `None` when the image has no filesystem we read (a
/// disk image), or the reason the tree could not be read.
fn open_tree(src: &Arc<dyn ByteSource>) -> Result<Opened, image::Error> {
    match image::open::open_tree_or_fallback(src.clone()) {
        Ok(f) => Ok((Some(f.tree), f.skipped)),
        Err(image::Error::NoFilesystem) => Ok((None, None)),
        Err(e) => Err(e),
    }
}

/// Inspects the image `src` (opened from `path`), reading its file tree
/// when it has one. A damaged tree does not stop the inspection: the boot
/// structures still decide, and the damage is reported as a problem.
pub fn inspect_source(src: &Arc<dyn ByteSource>, path: &Path) -> Result<Inspection, Error> {
    let (tree, tree_problem) = match open_tree(src) {
        Ok((t, skipped)) => (
            t,
            skipped.map(|s| format!("file tree: {}", crate::error_chain(&s))),
        ),
        Err(e) => (None, Some(format!("file tree: {}", crate::error_chain(&e)))),
    };
    let mut inspection =
        inspect::inspect(&**src, tree.as_deref()).map_err(|source| Error::Inspect {
            path: path.to_path_buf(),
            source,
        })?;
    inspection.problems.extend(tree_problem);
    Ok(inspection)
}

/// [`Notice::SecureBootOff`] when the x64 loaders the stick boots from
/// (a layout: the tree's, else the El Torito images' it copies; a byte
/// copy: its ESPs', and the El Torito image an added ESP entry exposes)
/// all lack a valid signature. Loaders whose signature could not be
/// checked say nothing.
fn secure_boot_off(
    loaders: &[inspect::LoaderSignature],
    layout: bool,
    esp_added: bool,
) -> Option<Notice> {
    use crate::trust::authenticode::State;
    let x64 = |l: &&inspect::LoaderSignature| {
        l.path
            .to_ascii_uppercase()
            .ends_with("/EFI/BOOT/BOOTX64.EFI")
    };
    let from = |prefix: &str| -> Vec<&inspect::LoaderSignature> {
        loaders
            .iter()
            .filter(x64)
            .filter(|l| l.location.starts_with(prefix))
            .collect()
    };
    let used: Vec<&inspect::LoaderSignature> = if layout {
        let tree = from("tree");
        if tree.is_empty() {
            from("el-torito")
        } else {
            tree
        }
    } else {
        let mut v = from("partition");
        if esp_added {
            v.extend(from("el-torito"));
        }
        v
    };
    let states: Vec<(String, State)> = used
        .iter()
        .filter_map(|l| Some((l.path.clone(), l.authenticode.as_ref()?.state)))
        .collect();
    (!states.is_empty() && states.iter().all(|(_, s)| *s != State::Valid))
        .then_some(Notice::SecureBootOff { loaders: states })
}

/// The ESP entry a byte copy of `src` gets (`layout::esp_entry`), read
/// with the image's file tree when it has one; for `write`, `compare` and
/// `inspect` alike.
pub fn esp_entry_of(src: &Arc<dyn ByteSource>) -> Result<Option<esp_entry::EspEntry>, Error> {
    let tree = open_tree(src).ok().and_then(|(t, _)| t);
    Ok(esp_entry::find(&**src, tree.as_deref())?)
}

/// Builds the FAT32 layout of a non-hybrid ISO (docs/layout.md), read from
/// `src` (the image opened from `path`), for a target of `target_size`
/// bytes (`None`: an image file, sized to fit). Its dates come from the
/// image (`from_iso::image_mtime`), so the plan is a pure function of the
/// image, the size and the table.
pub fn build_layout(
    src: &Arc<dyn ByteSource>,
    path: &Path,
    table: disk::Table,
    target_size: Option<u64>,
) -> Result<from_iso::Layout, Error> {
    let fail = |source: from_iso::Error| Error::Layout {
        path: path.to_path_buf(),
        source,
    };
    let tree = image::open::open_tree(src.clone()).map_err(|e| fail(e.into()))?;
    let options = from_iso::Options {
        table,
        target_size,
        mtime: from_iso::image_mtime(&**src).map_err(fail)?,
        wim_split: from_iso::WimSplit::default(),
    };
    from_iso::build(src, &*tree, &options).map_err(fail)
}

/// Decides how the image `src` (opened from `path`) is written: an image
/// that needs a built layout gets one unless `choice.raw`; an optical
/// image decided raw gets one with `choice.layout`; a truncated
/// image is refused (its partitions or files would run off the end of what
/// was written, no override); a table named for a byte copy is refused.
pub fn decide(src: &Arc<dyn ByteSource>, path: &Path, choice: Choice) -> Result<Decided, Error> {
    decide_as(src, path, choice, None)
}

/// How an image decided by [`decide_as`] is written: as a stream, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Streamed {
    /// A compressed file, decoded on the fly.
    Compressed(crate::image::compressed::Format),
    /// A stream read once (`image::pipe`), compressed or not.
    Pipe(Option<crate::image::compressed::Format>),
}

/// [`decide`], for the bytes of an image written as a stream (`streamed`,
/// when given: `src` is then its decoded bytes, or their head): one that
/// needs a built layout is refused with [`Error::CompressedLayout`] or
/// [`Error::StreamLayout`] unless a byte copy is asked for, as a layout
/// reads the ISO's files in any order, which a stream cannot give.
pub fn decide_as(
    src: &Arc<dyn ByteSource>,
    path: &Path,
    choice: Choice,
    streamed: Option<Streamed>,
) -> Result<Decided, Error> {
    let inspection = inspect_source(src, path)?;
    if let Some(t) = inspection.truncated {
        return Err(Error::Truncated {
            path: path.to_path_buf(),
            truncation: t,
        });
    }
    let decision = inspection.decision;
    if choice.raw && choice.layout {
        return Err(Error::RawAndLayout);
    }
    let has = |code: Code| decision.reasons.iter().any(|r| r.code == code);
    let mut notices = Vec::new();
    let layout = match decision.mode {
        Mode::Layout if !choice.raw => true,
        Mode::Layout => {
            notices.push(Notice::ForcedRaw {
                reasons: decision.reasons.iter().map(|r| r.message.clone()).collect(),
            });
            false
        }
        Mode::Raw if choice.layout => {
            // Only an ISO 9660/UDF image has files to lay out: a disk
            // image's partitions are copied, never re-packed.
            if has(Code::DiskImage) || has(Code::Unrecognised) {
                return Err(Error::LayoutOfNonOptical {
                    path: path.to_path_buf(),
                });
            }
            notices.push(Notice::ForcedLayout {
                bios_lost: has(Code::BiosBootCode),
            });
            true
        }
        Mode::Raw => {
            if has(Code::Unrecognised) {
                notices.push(Notice::Unrecognised);
            }
            false
        }
    };
    match (layout, streamed) {
        (true, Some(Streamed::Compressed(format))) => {
            return Err(Error::CompressedLayout {
                path: path.to_path_buf(),
                format,
                asked: choice.layout,
                needed: decision.mode == Mode::Layout,
            })
        }
        (true, Some(Streamed::Pipe(_))) => {
            return Err(Error::StreamLayout {
                path: path.to_path_buf(),
            })
        }
        _ => {}
    }
    if !layout && choice.table.is_some_and(|t| t != disk::Table::Gpt) {
        return Err(Error::TableForRaw { forced: choice.raw });
    }
    let method = if layout {
        let table = choice.table.unwrap_or(disk::Table::Gpt);
        Method::Layout {
            table,
            smallest: Box::new(build_layout(src, path, table, None)?),
        }
    } else {
        Method::Raw
    };
    // A streamed image is written as it streams, which is not patched.
    let esp_entry = if layout || choice.raw || streamed.is_some() {
        None
    } else {
        esp_entry_of(src)?
    };
    if let Some(e) = &esp_entry {
        notices.push(Notice::EspEntryAdded(e.clone()));
    }
    // A byte copy whose only EFI path is El Torito, and no entry added for
    // it: BIOS boots it, UEFI PCs will not (inspect's reason, said before
    // the write so the user can choose the layout instead).
    if !layout && esp_entry.is_none() && has(Code::EfiOnlyInElTorito) {
        notices.push(Notice::RawBiosOnly {
            esp_entry_possible: choice.raw && streamed.is_none() && esp_entry_of(src)?.is_some(),
            compressed: streamed.is_some(),
        });
    }
    notices.extend(secure_boot_off(
        &inspection.uefi_loaders,
        layout,
        esp_entry.is_some(),
    ));
    Ok(Decided {
        decision,
        method,
        notices,
        esp_entry,
    })
}
