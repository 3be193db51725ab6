//! `bootstick ls IMAGE [PATH] [--recursive] [--json] [--fs KIND]`: list a
//! directory (or show one entry) of an image's file tree without extracting.

use super::exit::{Exit, Failure};
use super::fs_choice::{open_image, printable, FsChoice};
use bootstick::image::tree::{lookup, walk};
use bootstick::image::{DirEntry, Error, NodeKind};
use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The image (ISO 9660, UDF).
    pub image: PathBuf,
    /// A path inside the image (default: the root). A file shows just itself.
    #[arg(default_value = "/")]
    pub path: String,
    /// List every entry below PATH, not just its direct entries.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Print one JSON object (schema in docs/cli.md).
    #[arg(long)]
    pub json: bool,
    /// Read this file tree instead of the preferred one (udf > rock-ridge > joliet > iso9660).
    #[arg(long, value_enum)]
    pub fs: Option<FsChoice>,
}

#[derive(Serialize)]
struct Entry {
    /// Path relative to the image root, without a leading '/'.
    path: String,
    #[serde(rename = "type")]
    kind: &'static str,
    size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<String>,
}

#[derive(Serialize)]
struct Listing<'a> {
    fs: String,
    label: &'a str,
    path: String,
    entries: Vec<Entry>,
}

/// `path` joined under `prefix` (either may be empty).
fn join(prefix: &str, path: &str) -> String {
    match (prefix.is_empty(), path.is_empty()) {
        (true, _) => path.to_owned(),
        (false, true) => prefix.to_owned(),
        (false, false) => format!("{prefix}/{path}"),
    }
}

fn entry(path: String, e: &DirEntry) -> Entry {
    let (kind, target) = match &e.kind {
        NodeKind::Dir => ("dir", None),
        NodeKind::File => ("file", None),
        NodeKind::Symlink(t) => ("symlink", Some(t.clone())),
    };
    Entry {
        path,
        kind,
        size: e.size,
        target,
    }
}

pub fn run(args: Args) -> Result<(), Failure> {
    let out = super::render::Renderer::report(args.json);
    out.start(
        "ls",
        &LsStart {
            image: &args.image,
            path: &args.path,
        },
    );
    let (_src, tree) = open_image(&args.image, args.fs)?;
    let bad = |e: Error| {
        Failure::new(
            super::exit::image_error(&e),
            anyhow::Error::new(e).context(format!("cannot list {}", args.image.display())),
        )
    };
    let prefix: String = args
        .path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect::<Vec<_>>()
        .join("/");
    let found = lookup(&*tree, &args.path).map_err(bad)?;
    let mut entries = Vec::new();
    if found.kind != NodeKind::Dir {
        let name = prefix.rsplit('/').next().unwrap_or_default().to_owned();
        entries.push(entry(
            prefix.clone(),
            &DirEntry {
                name,
                kind: found.kind.clone(),
                size: found.size,
                node: found.node,
                meta: Default::default(),
            },
        ));
    } else if args.recursive {
        walk::<Error>(&*tree, found.node, |v| {
            entries.push(entry(join(&prefix, v.path), v.entry));
            Ok(true)
        })
        .map_err(bad)?;
    } else {
        for e in tree.read_dir(found.node).map_err(bad)? {
            entries.push(entry(join(&prefix, &e.name), &e));
        }
    }
    let text = if args.json {
        let doc = Listing {
            fs: tree.kind().to_string(),
            label: tree.label(),
            path: format!("/{prefix}"),
            entries,
        };
        out.document(&doc);
        return Ok(());
    } else {
        let mut s = String::new();
        for e in &entries {
            let kind = match e.kind {
                "dir" => 'd',
                "symlink" => 'l',
                _ => '-',
            };
            // A plain listing shows names, like ls; the others show paths.
            let shown = if args.recursive || found.kind != NodeKind::Dir {
                e.path.as_str()
            } else {
                e.path[prefix.len()..].trim_start_matches('/')
            };
            s.push_str(&format!("{kind} {:>14} {}", e.size, printable(shown)));
            if let Some(t) = &e.target {
                s.push_str(&format!(" -> {}", printable(t)));
            }
            s.push('\n');
        }
        s
    };
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Failure::new(Exit::Internal, e))
        }
        _ => Ok(()),
    }
}

/// The `start` line of `ls`.
#[derive(serde::Serialize)]
struct LsStart<'a, P: serde::Serialize> {
    image: &'a std::path::Path,
    path: &'a P,
}
