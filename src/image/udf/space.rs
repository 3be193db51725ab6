//! Partition address spaces: turning a (partition reference, logical block)
//! address into image bytes.
//!
//! A type-1 partition is a contiguous run of sectors, so a block maps to
//! `start + lbn × block`. A metadata partition (UDF 2.50+) is a virtual space
//! whose blocks are the bytes of the *metadata file*, itself a file in the
//! physical partition; we keep that file's runs and map through them. Every
//! mapping is checked against the partition's and the image's size.

use std::sync::Arc;

use super::malformed;
use crate::image::{ByteSource, Error, Run};

/// One partition map of the logical volume, resolved.
#[derive(Clone, Debug)]
pub(crate) enum Part {
    /// A type-1 map: `blocks` blocks starting at image byte `start`.
    Physical { start: u64, blocks: u64 },
    /// A metadata partition: its blocks are the bytes of the metadata file,
    /// laid out as these runs (each a whole number of blocks); `starts[i]` is
    /// where run `i` begins in the file, so a block is found by binary search
    /// (a hostile metadata file may have hundreds of thousands of runs).
    Metadata { runs: Vec<Run>, starts: Vec<u64> },
}

/// The partitions of a logical volume and how to read blocks from them.
#[derive(Clone)]
pub(crate) struct Space {
    pub src: Arc<dyn ByteSource>,
    pub block: u64,
    pub parts: Vec<Part>,
}

impl Part {
    /// A metadata partition laid out as `runs`.
    pub fn metadata(runs: Vec<Run>) -> Part {
        let mut starts = Vec::with_capacity(runs.len());
        let mut pos = 0u64;
        for r in &runs {
            starts.push(pos);
            pos += r.len();
        }
        Part::Metadata { runs, starts }
    }
}

impl Space {
    /// Where the `len` bytes starting at block `lbn` of partition `part` lie
    /// in the image, as data runs (more than one when a metadata partition's
    /// file is fragmented).
    pub fn map(&self, part: u16, lbn: u32, len: u64) -> Result<Vec<Run>, Error> {
        let p = self.parts.get(usize::from(part)).ok_or_else(|| {
            malformed(
                0,
                format!(
                    "an address names partition reference {part}, but the volume has only {} partition maps",
                    self.parts.len()
                ),
            )
        })?;
        let start_byte = u64::from(lbn) * self.block;
        let mut out = Vec::new();
        match p {
            Part::Physical { start, blocks } => {
                let end = start_byte.saturating_add(len);
                if end > blocks * self.block {
                    return Err(malformed(
                        start.saturating_add(start_byte),
                        format!(
                            "an extent of {len} bytes at block {lbn} of partition {part} runs past the partition's end ({blocks} blocks)"
                        ),
                    ));
                }
                out.push(Run::Data {
                    offset: start + start_byte,
                    len,
                });
            }
            Part::Metadata { runs, starts } => {
                // Errors name where the metadata file's data starts: that is
                // the mapping that failed.
                let meta_at = match runs.first() {
                    Some(Run::Data { offset, .. }) => *offset,
                    _ => 0,
                };
                // Start at the run holding `start_byte`, then walk on.
                let first = starts
                    .partition_point(|&s| s <= start_byte)
                    .saturating_sub(1);
                let mut pos = starts.get(first).copied().unwrap_or(0);
                let mut want = start_byte;
                let mut left = len;
                for r in runs.iter().skip(first) {
                    if left == 0 {
                        break;
                    }
                    let rlen = r.len();
                    if want >= pos + rlen {
                        pos += rlen;
                        continue;
                    }
                    let inner = want - pos;
                    let take = (rlen - inner).min(left);
                    match *r {
                        Run::Data { offset, .. } => out.push(Run::Data {
                            offset: offset + inner,
                            len: take,
                        }),
                        Run::Zeros { .. } => {
                            return Err(malformed(
                                meta_at,
                                format!(
                                    "block {lbn} of the metadata partition lies in an unrecorded extent of the metadata file"
                                ),
                            ))
                        }
                    }
                    want += take;
                    left -= take;
                    pos += rlen;
                }
                if left > 0 {
                    return Err(malformed(
                        meta_at,
                        format!(
                            "an extent of {len} bytes at block {lbn} of the metadata partition runs past the metadata file's end ({pos} bytes)"
                        ),
                    ));
                }
            }
        }
        for r in &out {
            if let Run::Data { offset, len } = *r {
                if offset.checked_add(len).is_none_or(|e| e > self.src.len()) {
                    return Err(Error::OutOfBounds {
                        what: "UDF extent",
                        offset,
                        len,
                        image_len: self.src.len(),
                    });
                }
            }
        }
        Ok(out)
    }

    /// Reads the whole block `lbn` of partition `part`; returns it and its
    /// image byte offset.
    pub fn read_block(
        &self,
        part: u16,
        lbn: u32,
        what: &'static str,
    ) -> Result<(u64, Vec<u8>), Error> {
        let runs = self.map(part, lbn, self.block)?;
        let mut buf = Vec::with_capacity(self.block as usize);
        let mut first = None;
        for r in runs {
            if let Run::Data { offset, len } = r {
                first.get_or_insert(offset);
                let mut piece = vec![0; len as usize];
                self.src.read_exact_at(offset, &mut piece, what)?;
                buf.extend_from_slice(&piece);
            }
        }
        Ok((first.unwrap_or(0), buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space() -> Space {
        let runs = vec![
            Run::Data {
                offset: 0,
                len: 2048,
            },
            Run::Data {
                offset: 8192,
                len: 4096,
            },
            Run::Zeros { len: 2048 },
            Run::Data {
                offset: 4096,
                len: 2048,
            },
        ];
        Space {
            src: Arc::new(vec![0u8; 16384]),
            block: 2048,
            parts: vec![Part::metadata(runs)],
        }
    }

    #[test]
    fn metadata_blocks_map_through_the_metadata_file() {
        let s = space();
        assert_eq!(
            s.map(0, 0, 2048).unwrap(),
            [Run::Data {
                offset: 0,
                len: 2048
            }]
        );
        assert_eq!(
            s.map(0, 2, 2048).unwrap(),
            [Run::Data {
                offset: 10240,
                len: 2048
            }]
        );
        assert_eq!(
            s.map(0, 0, 6144).unwrap(),
            [
                Run::Data {
                    offset: 0,
                    len: 2048
                },
                Run::Data {
                    offset: 8192,
                    len: 4096
                }
            ]
        );
        assert_eq!(
            s.map(0, 4, 2048).unwrap(),
            [Run::Data {
                offset: 4096,
                len: 2048
            }]
        );
        // Unrecorded, past the end, unknown partition: typed errors.
        assert!(s.map(0, 3, 2048).is_err());
        assert!(s.map(0, 5, 2048).is_err());
        assert!(s.map(0, 4, 4096).is_err());
        assert!(s.map(1, 0, 2048).is_err());
    }
}
