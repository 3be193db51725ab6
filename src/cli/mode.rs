//! How an image is written, as the command line says it (`--raw`,
//! `--table`, shared by `write` and `compare`), and the decision's notices
//! in words. Not a command.

use bootstick::job::{Choice, Notice};
use bootstick::layout::disk;

/// `--table` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TableArg {
    Gpt,
    Mbr,
}

impl TableArg {
    pub fn table(self) -> disk::Table {
        match self {
            TableArg::Gpt => disk::Table::Gpt,
            TableArg::Mbr => disk::Table::Mbr,
        }
    }
}

/// The library's choice from `--raw`, `--layout` and `--table`.
pub fn choice(raw: bool, layout: bool, table: TableArg) -> Choice {
    Choice {
        raw,
        layout,
        table: Some(table.table()),
    }
}

/// The warning events for what the decision wants the user to know.
pub fn notice_text(n: &Notice, image: &std::path::Path) -> String {
    match n {
        Notice::ForcedRaw { reasons } => format!(
            "{} is not a hybrid ISO; copying it byte for byte as asked (--raw): the stick will likely not boot{}",
            image.display(),
            reasons
                .iter()
                .map(|r| format!("\n  - {r}"))
                .collect::<String>()
        ),
        Notice::Unrecognised => format!(
            "{} is neither an ISO nor a disk image bootstick recognises; copying it byte for byte as given",
            image.display()
        ),
        Notice::SecureBootOff { loaders } => format!(
            "{}: the stick can boot only with Secure Boot turned off: its UEFI loader {} (`bootstick inspect` shows the signatures)",
            image.display(),
            loaders
                .iter()
                .map(|(path, state)| format!(
                    "{path} is {}",
                    match state {
                        bootstick::trust::authenticode::State::Unsigned => "not signed",
                        bootstick::trust::authenticode::State::Tampered =>
                            "tampered (changed after it was signed)",
                        bootstick::trust::authenticode::State::BadSignature =>
                            "signed, but the signature does not verify",
                        bootstick::trust::authenticode::State::Unreadable =>
                            "signed unreadably",
                        bootstick::trust::authenticode::State::Valid => "validly signed",
                    }
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Notice::RawBiosOnly {
            esp_entry_possible,
            compressed,
        } => format!(
            "{}: a byte copy of it boots under BIOS only: its EFI boot image is reachable only through El Torito (as from a CD), and UEFI PCs boot a USB stick only from a FAT partition{}; {}",
            image.display(),
            if *esp_entry_possible {
                " (without --raw, write would add a partition entry for it)"
            } else {
                ""
            },
            if *compressed {
                "to boot under UEFI, decompress it and write it with --layout (a built FAT32 layout, UEFI only)"
            } else {
                "--layout builds a FAT32 layout instead, which boots under UEFI (but not BIOS)"
            }
        ),
        Notice::ForcedLayout { bios_lost } => format!(
            "{}: building a FAT32 layout of its files as asked (--layout){}",
            image.display(),
            if *bios_lost {
                ": the stick will boot under UEFI only; a byte copy (without --layout) would boot under BIOS too"
            } else {
                ""
            }
        ),
        Notice::EspEntryAdded(e) => format!(
            "{}: {} (--raw copies the exact bytes instead)",
            image.display(),
            esp_entry_text(e)
        ),
    }
}

/// The partition-table change of `layout::esp_entry`, in words.
pub fn esp_entry_text(e: &bootstick::layout::esp_entry::EspEntry) -> String {
    format!(
        "its MBR has no entry for the El Torito EFI image{}, so UEFI could not boot a byte copy; \
         the copy's MBR entry {} (type {:#04x}{}, over the whole image) becomes type 0x00 with the same \
         range, and entry {} (type 0xef, EFI system partition) covers the EFI image \
         (sectors {}..{}); every other byte is the image's",
        e.efi_image
            .as_deref()
            .map(|p| format!(" {p}"))
            .unwrap_or_default(),
        e.hidden_entry,
        e.hidden_type,
        if e.hidden_active { ", active: kept" } else { "" },
        e.esp_entry,
        e.esp_start_lba,
        u64::from(e.esp_start_lba) + u64::from(e.esp_sectors),
    )
}
