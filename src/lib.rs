//! bootstick: turn installer images into USB sticks that boot.
//!
//! The library is a pipeline (see `docs/architecture.md`): an image is
//! inspected, compiled into a [`plan::Plan`], streamed onto a target by the
//! write engine and read back to prove the target holds exactly the plan.
//! Every stage reports progress as [`events::Event`]s and fails with a typed
//! error; only the binary turns those into text and exit codes.

pub mod devices;
pub mod events;
pub mod hash;
pub mod image;
pub mod inspect;
pub mod layout;
pub mod plan;
pub mod trust;
pub mod write;

#[cfg(test)]
mod test_support;
