//! Built layouts: filesystems and partition tables that bootstick makes
//! itself, for images whose byte copy cannot boot from a USB stick (Windows
//! installers above all). Every builder here compiles to the same
//! [`crate::plan::Plan`] as a raw copy: metadata as in-memory `Bytes`, file
//! contents as `Source` ranges of the image, so the write engine, the
//! verifier and progress never know a layout was built.

pub mod disk;
pub mod esp_entry;
pub mod exfat;
pub mod fat32;
pub mod from_iso;
pub mod partition;
pub mod wim;
