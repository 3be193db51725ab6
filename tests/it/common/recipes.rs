//! Fixture images built at test time from the shell recipes under
//! `tests/fixtures/<group>/<name>.sh`, with tools we did not write (xorriso,
//! genisoimage, grub-mkrescue, sgdisk, mkfs.fat, mtools).
//!
//! A recipe runs in a fresh scratch directory with `OUT` (the image to make)
//! and `RECIPES` (its directory, for `*.inc.sh` helpers) set. Results are
//! cached under `target/fixtures/<group>/`, keyed by the SHA-256 of the recipe
//! and of every `*.inc.sh` in its directory, so editing a recipe rebuilds it.
//! Builds go to a temporary name and are renamed into place, so tests running
//! in parallel never see half an image.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// Builds (or reuses) the image of recipe `tests/fixtures/<group>/<name>.sh`.
pub fn image(group: &str, name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(group);
    let script = dir.join(format!("{name}.sh"));
    let mut h = Sha256::new();
    h.update(std::fs::read(&script).unwrap_or_else(|e| panic!("{}: {e}", script.display())));
    let mut incs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".inc.sh"))
        .collect();
    incs.sort();
    for inc in incs {
        h.update(std::fs::read(inc).unwrap());
    }
    let key = hex::encode(&h.finalize()[..8]);
    let cache = target_dir().join("fixtures").join(group);
    std::fs::create_dir_all(&cache).unwrap();
    let out = cache.join(format!("{name}-{key}.img"));
    if out.exists() {
        return out;
    }
    let scratch = tempfile::tempdir_in(&cache).unwrap();
    let tmp_out = scratch.path().join("out.img");
    super::run(
        Command::new("bash")
            .arg("-euo")
            .arg("pipefail")
            .arg(&script)
            .env("OUT", &tmp_out)
            .env("RECIPES", &dir)
            .current_dir(scratch.path()),
    );
    std::fs::rename(&tmp_out, &out).unwrap();
    out
}
