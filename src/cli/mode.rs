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

/// The library's choice from `--raw` and `--table`.
pub fn choice(raw: bool, table: TableArg) -> Choice {
    Choice {
        raw,
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
