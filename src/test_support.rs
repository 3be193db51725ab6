//! Helpers for the library's own unit tests.
//!
//! The same skip rule as the integration tests' `tests/it/common`: a unit test
//! that cannot run here says so with a visible `SKIP:` line under plain
//! `cargo test`, and fails under `BOOTSTICK_REQUIRE_ALL=1` (what
//! `scripts/test.sh`, and so CI, sets), so a green strict run means every
//! test really ran. `tests/it/suite.rs` checks that no test skips any other way.

/// Skips `test` for `why`, or panics in strict mode.
pub fn skip(test: &str, why: &str) {
    if std::env::var_os("BOOTSTICK_REQUIRE_ALL").is_some_and(|v| v == "1") {
        panic!("{test}: {why} (BOOTSTICK_REQUIRE_ALL=1 forbids skipping)");
    }
    eprintln!("SKIP: {test}: {why}");
}
