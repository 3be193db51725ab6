//! bootstick's integration tests, one binary with a module per area.
//!
//! One binary instead of one per file: `tests/common` and the heavy
//! dependencies (pgp, ring, the compressors) are compiled and linked once, not
//! once per area, which is most of a rebuild's cost on two cores
//! (docs/testing.md has the figures). Run one area with
//! `cargo test --test it write::`, one test with its full path
//! (`cargo test --test it write::refuses_a_mounted_target`).
//!
//! Code shared with the fuzz targets lives in the `bootstick-testkit` crate
//! (`testkit/`); helpers only the tests use live in [`common`].

mod common;

mod authenticode;
mod bmap;
mod boot;
mod boot_test;
mod compressed;
mod contract;
mod devices;
mod download;
mod fanout;
mod fat32;
mod health;
mod inspect;
mod iso;
mod job;
mod layout;
mod mount;
mod partition;
mod station;
mod suite;
mod testbed;
mod trust;
mod udf;
mod wim;
mod write;
