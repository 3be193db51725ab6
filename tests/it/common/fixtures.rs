//! Fixture images built at test time by tools we did not write, cached under
//! `target/fixtures/` and keyed by their recipe, so a changed recipe rebuilds
//! and an unchanged one costs nothing. Built images are never committed.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// `target/fixtures`.
pub fn fixture_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = tmp.parent().unwrap_or(tmp).join("fixtures");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// What a fixture's bytes depend on besides its recipe: the source of the
/// test file that builds it (`caller`, relative to the crate), every helper
/// in `tests/it/common/`, and the installed packages (the builders' tool
/// versions). A change to any of them changes the key, so a cached fixture
/// can never outlive the code that built it; no version string is bumped by
/// hand.
fn builder_inputs(caller: &str) -> Vec<u8> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut h = Sha256::new();
    let read = |p: &Path| std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    h.update(read(&root.join(caller)));
    let mut common: Vec<PathBuf> = std::fs::read_dir(root.join("tests/it/common"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    common.sort();
    for p in common {
        h.update(p.to_string_lossy().as_bytes());
        h.update(read(&p));
    }
    // Debian's package database: any tool upgrade rebuilds the fixtures.
    if let Ok(status) = std::fs::read("/var/lib/dpkg/status") {
        h.update(status);
    }
    h.finalize().to_vec()
}

/// The cache key of a fixture: its recipe and its builder's inputs.
fn key(recipe: &str, caller: &str) -> String {
    let mut h = Sha256::new();
    h.update(recipe.as_bytes());
    h.update(builder_inputs(caller));
    hex::encode(&h.finalize()[..6])
}

/// Returns `target/fixtures/<name>-<key>.<ext>`, building it with
/// `build(path)` first if it does not exist (`path` may be made a file or a
/// directory). The key hashes `recipe` (tree contents, tool command lines)
/// and everything the builder's code depends on ([`builder_inputs`] of the
/// calling test file). Concurrent callers (threads or test binaries) wait
/// on a lock file, and a build that fails half-way leaves nothing behind.
#[track_caller]
pub fn cached(name: &str, ext: &str, recipe: &str, build: impl FnOnce(&Path)) -> PathBuf {
    let key = key(recipe, std::panic::Location::caller().file());
    let dir = fixture_dir();
    let path = dir.join(format!("{name}-{key}.{ext}"));
    let lock = std::fs::File::create(dir.join(format!("{name}-{key}.lock"))).unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).unwrap();
    if !path.exists() {
        let tmp = dir.join(format!("{name}-{key}.building.{ext}"));
        let _ = std::fs::remove_file(&tmp);
        let _ = std::fs::remove_dir_all(&tmp);
        build(&tmp);
        std::fs::rename(&tmp, &path).unwrap();
    }
    path
}
