//! `bootstick inspect IMAGE [--json]`: what the image holds (label, size,
//! filesystems, El Torito entries, partition tables) and whether it would be
//! written raw or through a built layout, with the reasons.

use super::exit::{Exit, Failure};
use super::render::human_bytes;
use bootstick::image::{partitions, ByteSource, ImageFile};
use bootstick::inspect::{self, Inspection};
use bootstick::job;
use bootstick::layout::disk::Table;
use serde::Serialize;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The image to inspect (ISO, disk image, …).
    pub image: PathBuf,
    /// Print the report as one JSON object on stdout (schema in docs/cli.md).
    #[arg(long)]
    pub json: bool,
    /// When IMAGE is a zip archive holding several images: the member to
    /// inspect (its name in the archive, or its last component). Without it
    /// the one disk image or ISO in the archive is taken.
    #[arg(long, value_name = "NAME")]
    pub entry: Option<String>,
}

/// The JSON document: the image path, then the inspection.
#[derive(Serialize)]
struct Report<'a> {
    image: &'a Path,
    /// The layout `write` would build (a `layout` decision only), or why
    /// it cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    layout: Option<Planned<'a>>,
    /// The MBR entry a byte copy gets for the El Torito EFI image
    /// (docs/layout.md, "UEFI for isohybrid ISOs"), or null.
    esp_entry: Option<bootstick::layout::esp_entry::EspEntry>,
    /// isomd5sum's MD5 in the primary volume descriptor (docs/trust.md).
    #[serde(skip_serializing_if = "Option::is_none")]
    implanted_md5: Option<bootstick::trust::isomd5::Implanted>,
    /// A compressed image: its format and sizes (inspected decompressed).
    #[serde(skip_serializing_if = "Option::is_none")]
    compressed: Option<job::CompressedSummary>,
    #[serde(flatten)]
    inspection: &'a Inspection,
}

/// The layout `write` would build, or why it cannot (docs/cli.md,
/// "inspect").
#[derive(Serialize)]
#[serde(untagged)]
enum Planned<'a> {
    Built(job::LayoutSummary<'a>),
    Refused { error: String, exit: u8 },
}

/// Opens the image at `path` (`image::input::open`: never blocking, a
/// regular file or block device that is not empty) as a byte source.
pub fn open_source(path: &Path) -> Result<Arc<dyn ByteSource>, Failure> {
    let file = ImageFile::open(path)?;
    Ok(Arc::new(file))
}

pub fn run(args: Args) -> Result<(), Failure> {
    let out = super::render::Renderer::report(args.json);
    out.start("inspect", &super::render::ImageStart { image: &args.image });
    let src = open_source(&args.image)?;
    // The image is opened once: everything below reads this descriptor.
    let implanted = bootstick::trust::isomd5::read_source(&*src);
    // A compressed image is inspected decompressed (docs/cli.md).
    let (src, compressed) = job::inspectable(src, &args.image, args.entry.as_deref())
        .map_err(super::advice::failure)?;
    let inspection = job::inspect_source(&src, &args.image).map_err(super::advice::failure)?;
    // The layout `write` would build for an image file target (docs/layout.md).
    let planned = (inspection.decision.mode == inspect::Mode::Layout).then(|| match &compressed {
        Some(c) => Err(job::Error::CompressedLayout {
            path: args.image.clone(),
            format: c.format(),
            asked: false,
            needed: true,
        }),
        None => job::build_layout(&src, &args.image, Table::Gpt, None),
    });
    // What `write` does to a byte copy's MBR (never for a compressed image).
    let esp_entry = match (&inspection.decision.mode, &compressed) {
        (inspect::Mode::Raw, None) => job::esp_entry_of(&src).map_err(super::advice::failure)?,
        _ => None,
    };
    if args.json {
        let doc = Report {
            image: &args.image,
            layout: planned.as_ref().map(|p| match p {
                Ok(l) => Planned::Built(job::LayoutSummary::of(l)),
                Err(e) => Planned::Refused {
                    error: bootstick::error_chain(e),
                    exit: super::exit::job_error(e) as u8,
                },
            }),
            esp_entry: esp_entry.clone(),
            implanted_md5: implanted,
            compressed: compressed
                .as_ref()
                .map(|c| job::CompressedSummary::of(c, Some(inspection.size))),
            inspection: &inspection,
        };
        out.document(&doc);
        Ok(())
    } else {
        let mut text = render(&args.image, &inspection);
        if let Some(c) = &compressed {
            let _ = writeln!(
                text,
                "compressed   {}, {} decompressed from {}{}",
                c.format(),
                human_size(inspection.size),
                human_size(c.compressed_len()),
                super::render::zip_member_line(c)
            );
        }
        if let Some(m) = &implanted {
            let _ = writeln!(
                text,
                "implanted md5 {} over the first {} bytes (isomd5sum; {} fragment sums; checked by `bootstick verify`)",
                m.md5, m.covered, m.fragment_count
            );
        }
        match &planned {
            Some(Ok(l)) => {
                let _ = writeln!(
                    text,
                    "layout       {}; at least {}",
                    super::render::layout_line(l),
                    human_size(l.min_size)
                );
            }
            Some(Err(e)) => {
                let _ = writeln!(
                    text,
                    "layout       cannot be built: {}",
                    bootstick::error_chain(e)
                );
            }
            None => {}
        }
        if let Some(e) = &esp_entry {
            let _ = writeln!(
                text,
                "esp entry    write adds one: {}",
                super::mode::esp_entry_text(e)
            );
        }
        emit(&text)
    }
}

/// Writes to stdout; a closed pipe (`| head`) is not an error worth a panic.
fn emit(text: &str) -> Result<(), Failure> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Failure::new(Exit::Internal, e))
        }
        _ => Ok(()),
    }
}

/// A size for people, with the exact byte count beside it once rounded.
fn human_size(n: u64) -> String {
    if n < 1024 {
        human_bytes(n)
    } else {
        format!("{} ({n} bytes)", human_bytes(n))
    }
}

fn names<T: Serialize>(items: &[T]) -> String {
    items
        .iter()
        .map(|k| {
            serde_json::to_value(k)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn label_of<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

/// The human-readable report.
fn render(path: &Path, i: &Inspection) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "image        {}", path.display());
    let _ = writeln!(o, "size         {}", human_size(i.size));
    if let Some(l) = &i.label {
        let _ = writeln!(o, "label        {l}");
    }
    let fs = if i.filesystems.is_empty() {
        "none".to_owned()
    } else {
        names(&i.filesystems)
    };
    let _ = writeln!(o, "filesystems  {fs}");
    if let Some(t) = i.tree {
        let _ = writeln!(o, "tree read as {}", label_of(&t));
    }
    match &i.el_torito {
        None => {
            let _ = writeln!(o, "El Torito    none");
        }
        Some(et) => {
            let _ = writeln!(
                o,
                "El Torito    catalog at block {}, {} boot image(s)",
                et.catalog_lba,
                et.images.len()
            );
            for b in &et.images {
                let e = &b.image.entry;
                let _ = writeln!(
                    o,
                    "  #{} {:<6} {:<13} {} block {} count {} -> {} at byte {} (size from {}{})",
                    e.index,
                    label_of(&e.platform),
                    label_of(&e.media),
                    if e.bootable {
                        "bootable"
                    } else {
                        "not-bootable"
                    },
                    e.load_rba,
                    e.sector_count,
                    b.image.len,
                    b.image.offset,
                    size_from(&b.image.size_from),
                    if b.image.truncated { ", truncated" } else { "" }
                );
                if let Some(l) = &b.efi_loaders {
                    let _ = writeln!(o, "      EFI loaders: {}", loaders(l));
                }
                if let Some(err) = &b.error {
                    let _ = writeln!(o, "      not a FAT image: {err}");
                }
            }
        }
    }
    let p = &i.partitions;
    match &p.mbr {
        None => {
            let _ = writeln!(o, "MBR          none");
        }
        Some(m) => {
            let _ = writeln!(
                o,
                "MBR          boot code {}, {}{} entr{}{}",
                if m.boot_code { "present" } else { "absent" },
                if m.is_protective() {
                    "protective, "
                } else {
                    ""
                },
                m.entries.len(),
                if m.entries.len() == 1 { "y" } else { "ies" },
                if m.logical.is_empty() {
                    String::new()
                } else {
                    format!(", {} logical", m.logical.len())
                }
            );
            for e in &m.entries {
                let _ = writeln!(
                    o,
                    "  {} type {:#04x}{}{} start {} sectors {}",
                    e.index,
                    e.kind,
                    if partitions::is_extended(e.kind) {
                        " extended"
                    } else {
                        ""
                    },
                    if e.active { " active" } else { "" },
                    e.start_lba,
                    e.sectors
                );
            }
            for e in &m.logical {
                let _ = writeln!(
                    o,
                    "  {} type {:#04x} logical{} start {} sectors {} (EBR at {})",
                    e.index,
                    e.kind,
                    if e.active { " active" } else { "" },
                    e.start_lba,
                    e.sectors,
                    e.ebr_lba
                );
            }
        }
    }
    if let Some(g) = &p.gpt {
        let _ = writeln!(
            o,
            "GPT          {}-byte blocks, disk {}, backup {}",
            g.block_size,
            g.disk_guid,
            match &g.backup {
                partitions::BackupState::Valid => "valid".to_owned(),
                partitions::BackupState::OutsideImage => "outside the image".to_owned(),
                partitions::BackupState::Invalid(why) => format!("invalid ({why})"),
            }
        );
        for e in &g.entries {
            let _ = writeln!(
                o,
                "  {} {:?} {} blocks {}..={}",
                e.index,
                e.name,
                e.type_name
                    .map(str::to_owned)
                    .unwrap_or_else(|| e.type_guid.to_string()),
                e.first_lba,
                e.last_lba
            );
        }
    }
    if let Some(a) = &p.apm {
        let _ = writeln!(o, "APM          {}-byte blocks", a.block_size);
        for e in &a.entries {
            let _ = writeln!(
                o,
                "  {} {:?} {} start {} blocks {}",
                e.index, e.name, e.kind, e.start_block, e.blocks
            );
        }
    }
    for esp in &p.esps {
        let _ = writeln!(
            o,
            "ESP          {} partition {} at byte {}: {}",
            esp.partition.table.name(),
            esp.partition.index,
            esp.partition.offset,
            match &esp.error {
                Some(e) => format!("unreadable ({e})"),
                None => loaders(&esp.loaders),
            }
        );
    }
    if let Some(f) = &i.facts {
        let _ = writeln!(
            o,
            "tree         {} files, {} directories, {}",
            f.files,
            f.directories,
            human_size(f.total_bytes)
        );
        if f.windows.is_windows() {
            let mut w = vec![];
            if f.windows.bootmgr {
                w.push("bootmgr".to_owned());
            }
            if f.windows.bootmgr_efi {
                w.push("bootmgr.efi".to_owned());
            }
            if let Some(img) = &f.windows.install_image {
                w.push(format!("{} ({})", img.path, human_size(img.size)));
            }
            let _ = writeln!(o, "Windows      {}", w.join(", "));
        }
        if !f.loaders.syslinux.is_empty() {
            let _ = writeln!(o, "syslinux     {}", f.loaders.syslinux.join(", "));
        }
        if !f.loaders.grub.is_empty() {
            let _ = writeln!(o, "GRUB         {}", f.loaders.grub.join(", "));
        }
        let efi: Vec<&str> = f.efi_loaders.iter().map(|l| l.path.as_str()).collect();
        let _ = writeln!(
            o,
            "EFI in tree  {}",
            if efi.is_empty() {
                "none".to_owned()
            } else {
                efi.join(", ")
            }
        );
        for l in &f.large_files {
            let _ = writeln!(o, "over 4 GiB   {} ({})", l.path, human_size(l.size));
        }
        if f.walk_truncated {
            let _ = writeln!(o, "tree         (scan stopped early: too many entries)");
        }
    }
    for p in &i.problems {
        let _ = writeln!(o, "problem      {p}");
    }
    let _ = writeln!(o, "decision     {}", i.decision.mode.name());
    for r in &i.decision.reasons {
        let _ = writeln!(o, "  - {}: {}", label_of(&r.code), r.message);
    }
    for l in &i.uefi_loaders {
        let _ = writeln!(
            o,
            "signature    {} {}: {}",
            l.location,
            l.path,
            signature_text(l)
        );
    }
    o
}

fn loaders(l: &[bootstick::image::eltorito::FatFile]) -> String {
    if l.is_empty() {
        "no /EFI/BOOT/BOOT*.EFI".to_owned()
    } else {
        l.iter()
            .map(|f| format!("{} ({} bytes)", f.path, f.size))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn size_from(s: &bootstick::image::eltorito::SizeSource) -> String {
    use bootstick::image::eltorito::SizeSource;
    match s {
        SizeSource::File { path } => format!("file {path}"),
        SizeSource::Partition { table, index } => {
            format!("{} partition {index}", table.name())
        }
        SizeSource::FatBootSector => "FAT boot sector".into(),
        SizeSource::FloppyMedia => "floppy media type".into(),
        SizeSource::Catalog => "catalog count".into(),
    }
}

/// A loader's Authenticode findings in words.
fn signature_text(l: &inspect::LoaderSignature) -> String {
    use bootstick::trust::authenticode::State;
    let Some(r) = &l.authenticode else {
        return format!(
            "not checked: {}",
            l.error.as_deref().unwrap_or("unreadable")
        );
    };
    let state = |s: State| match s {
        State::Unsigned => "unsigned (Secure Boot firmware refuses it)",
        State::Valid => "valid",
        State::Tampered => "TAMPERED (changed after it was signed)",
        State::BadSignature => "bad signature",
        State::Unreadable => "unreadable signature",
    };
    let mut out = state(r.state).to_owned();
    for s in &r.signatures {
        out.push_str(&format!("\n               - {}", state(s.state)));
        if let Some(a) = s.digest_algorithm {
            out.push_str(&format!(" {a}"));
        }
        if let Some(signer) = &s.signer {
            out.push_str(&format!(", signed by {}", signer.subject));
        }
        if !s.issuer_chain.is_empty() {
            out.push_str(&format!(", issued by {}", s.issuer_chain.join(" <- ")));
        }
        if let Some(d) = &s.detail {
            out.push_str(&format!(" ({d})"));
        }
    }
    if !r.sbat.is_empty() {
        out.push_str(&format!(
            "\n               SBAT {}",
            r.sbat
                .iter()
                .map(|e| format!("{},{}", e.component, e.generation))
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    out
}
