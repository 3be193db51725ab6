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

/// Returns `target/fixtures/<name>-<hash of recipe>.<ext>`, building it with
/// `build(path)` first if it does not exist. `recipe` must describe
/// everything the build depends on (tree contents, tool command lines).
/// Concurrent callers (threads or test binaries) wait on a lock file, and a
/// build that fails half-way leaves nothing behind.
pub fn cached(name: &str, ext: &str, recipe: &str, build: impl FnOnce(&Path)) -> PathBuf {
    let hash = Sha256::digest(recipe.as_bytes());
    let key: String = hash[..6].iter().map(|b| format!("{b:02x}")).collect();
    let dir = fixture_dir();
    let path = dir.join(format!("{name}-{key}.{ext}"));
    let lock = std::fs::File::create(dir.join(format!("{name}-{key}.lock"))).unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).unwrap();
    if !path.exists() {
        let tmp = dir.join(format!("{name}-{key}.building.{ext}"));
        let _ = std::fs::remove_file(&tmp);
        build(&tmp);
        std::fs::rename(&tmp, &path).unwrap();
    }
    path
}
