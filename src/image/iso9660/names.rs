//! Turning stored identifiers into names: plain ISO 9660 (`NAME.EXT;1`) and
//! Joliet (UCS-2 big-endian).

/// Decodes big-endian UCS-2/UTF-16 (Joliet). Unpaired surrogates and an odd
/// trailing byte become U+FFFD rather than an error: a name with one bad
/// character is still worth listing.
pub(crate) fn ucs2(bytes: &[u8]) -> String {
    let units = bytes
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    char::decode_utf16(units)
        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect()
}

/// Removes the `;n` version suffix that ISO 9660 (and many Joliet writers)
/// append to file names.
pub(crate) fn strip_version(name: &str) -> &str {
    match name.rfind(';') {
        Some(i) if name[i + 1..].bytes().all(|b| b.is_ascii_digit()) => &name[..i],
        _ => name,
    }
}

/// A plain ISO 9660 file identifier as users know it: without the version
/// and without the dot ISO 9660 requires even when there is no extension
/// (`README.;1` is `README`), as Linux and 7-Zip show it.
pub(crate) fn plain(bytes: &[u8]) -> String {
    let raw = String::from_utf8_lossy(bytes);
    let name = strip_version(&raw);
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if trimmed.is_empty() {
        name.to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// A Joliet identifier: UCS-2, version suffix removed.
pub(crate) fn joliet(bytes: &[u8]) -> String {
    strip_version(&ucs2(bytes)).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names() {
        assert_eq!(plain(b"README.TXT;1"), "README.TXT");
        assert_eq!(plain(b"README.;1"), "README");
        assert_eq!(plain(b"DIR"), "DIR");
        assert_eq!(plain(b"A;B"), "A;B");
        assert_eq!(plain(b".;1"), ".");
    }

    #[test]
    fn joliet_names() {
        let mut b = Vec::new();
        for u in "é-x.txt;1".encode_utf16() {
            b.extend(u.to_be_bytes());
        }
        assert_eq!(joliet(&b), "é-x.txt");
        // A lone high surrogate is replaced, not an error.
        assert_eq!(ucs2(&[0xD8, 0x00, 0x00, 0x41]), "\u{FFFD}A");
        assert_eq!(ucs2(&[0x00, 0x41, 0x00]), "A\0");
    }
}
