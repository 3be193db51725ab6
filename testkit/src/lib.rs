//! Code shared by bootstick's integration tests (`tests/it`) and its fuzz
//! targets (`fuzz/`), so both run exactly the same bodies without `#[path]`
//! includes of test files.
//!
//! - [`iso_fuzz`]: the body of the `iso9660` fuzz target, which the normal
//!   suite also runs over its seeds and regressions.
//! - [`udf_build`]: an in-memory UDF image builder for hostile-image tests and
//!   the `udf` fuzz target's structure-aware inputs.
//!
//! A dev-dependency of `bootstick` that itself depends on `bootstick`: Cargo
//! builds the library once and links both into the test binary, so the types
//! here are the library's own.

pub mod iso_fuzz;
pub mod udf_build;
