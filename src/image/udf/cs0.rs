//! OSTA Compressed Unicode (CS0, UDF 2.1.1): the encoding of every UDF name.
//!
//! The first byte is a compression ID: 8 means one byte per character
//! (Latin-1), 16 means big-endian UTF-16. UDF 2.50 adds 254 and 255, which
//! encode the same way as 8 and 16 (they only mark names of deleted entries
//! in some writers), so we accept them as 8 and 16.

use super::malformed;
use crate::image::Error;

/// Decodes a CS0 string (compression ID byte first) read from image byte `offset`.
pub(crate) fn decode(bytes: &[u8], offset: u64) -> Result<String, Error> {
    let Some((&cid, rest)) = bytes.split_first() else {
        return Ok(String::new());
    };
    match cid {
        8 | 254 => Ok(rest.iter().map(|&b| char::from(b)).collect()),
        16 | 255 => {
            if rest.len() % 2 != 0 {
                return Err(malformed(
                    offset,
                    format!("16-bit CS0 name has an odd length of {} bytes", rest.len()),
                ));
            }
            let units = rest
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]));
            Ok(char::decode_utf16(units)
                .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
                .collect())
        }
        other => Err(malformed(
            offset,
            format!("unknown CS0 compression ID {other} (expected 8 or 16)"),
        )),
    }
}

/// Decodes a fixed-size `dstring` field (ECMA-167 1/7.2.12: the last byte
/// holds the number of bytes used). Labels are not worth failing an image
/// over, so a malformed one reads as empty.
pub(crate) fn dstring(field: &[u8]) -> String {
    let Some((&used, body)) = field.split_last() else {
        return String::new();
    };
    let used = usize::from(used).min(body.len());
    decode(&body[..used], 0)
        .map(|s| s.trim_end_matches(['\0', ' ']).to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_8_and_16_bit_names() {
        assert_eq!(decode(b"\x08abc\xe9", 0).unwrap(), "abcé");
        assert_eq!(decode(b"\x10\x00a\x04\x10", 0).unwrap(), "aА");
        assert!(decode(b"\x10\x00", 0).is_err());
        assert!(decode(b"\x07a", 0).is_err());
        assert_eq!(decode(b"", 0).unwrap(), "");
    }

    #[test]
    fn dstring_uses_the_length_byte() {
        let mut f = [0u8; 32];
        f[..4].copy_from_slice(b"\x08WIN");
        f[31] = 4;
        assert_eq!(dstring(&f), "WIN");
        f[31] = 200;
        assert_eq!(dstring(&f), "WIN");
    }
}
