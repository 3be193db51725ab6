//! Images that arrive as a stream: standard input (`-`) or a FIFO
//! (`curl … | bootstick write - /dev/sdX`, `<(curl …)`, `mkfifo`).
//!
//! # Why it is built this way
//!
//! - **A stream is read once.** Nothing can be read twice, so everything a
//!   file gets before the write (a source check's pass, the decision's
//!   random reads, naming the first differing byte after a failed read-back)
//!   is either done on the bytes as they pass or done on a bounded **head**:
//!   the first [`WINDOW`] decoded bytes, read when the pipe is opened and
//!   kept in memory, so the decision (`job::decide`) can read the partition
//!   tables and ISO 9660 descriptors, and then replayed as the stream's
//!   first bytes. A read beyond the head is refused as
//!   [`super::Error::BeyondWindow`], which the deciding readers take as
//!   an unreadable structure (a problem, not the decision), as for the
//!   window of a compressed file.
//! - **Compressed pipes are recognised by their magic bytes**, as files
//!   are ([`super::compressed::detect`]), and decoded on the fly; a zip
//!   archive is refused ([`Error::Zip`]): its central directory is at its
//!   end, so choosing its member needs the whole file.
//! - **Both streams are hashed in the one pass.** The compressed bytes as
//!   read from the first one ([`PipeStream::raw_digests`], hashed on the
//!   reading thread, so the algorithms are given when the pipe is opened) and
//!   the decoded bytes as written (by the write engine), so a digest given
//!   for either is enforced (`docs/trust.md`).
//! - **An empty stream is refused before anything is written** (a `curl`
//!   that failed writes nothing to its pipe), and a corrupt compressed head
//!   too: both happen while the head is read.

use std::fs::File;
use std::io::{self, Cursor, Read};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rustix::fs::FileType;

use super::compressed::{self, Decoder, Format, MAGIC_LEN, UNKNOWN_LEN};
use super::ByteSource;
use crate::hash::{Digest, HashAlgorithm, Hasher};

/// Decoded bytes read ahead when a pipe is opened, for deciding how to
/// write it ([`Pipe::window`]): the MBR, GPT, ISO 9660 volume descriptors,
/// boot catalog and root directory of the images bootstick writes sit in
/// their first MiBs. Kept in memory until they are written.
pub const WINDOW: usize = 4 << 20;

/// How long a FIFO given as the image may have no writer before it is
/// refused: long enough for a producer started beside bootstick (`mkfifo
/// f; xz -dc x.xz > f & bootstick write f …`) to open it.
pub const WRITER_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The path that names standard input.
pub const STDIN: &str = "-";

/// Why a stream cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open {}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A FIFO that nothing opened for writing within [`WRITER_WAIT`].
    #[error("{} is a FIFO (named pipe) that nothing writes to (none opened it for writing within {} s), not a regular file or block device: start the program that writes to it first", path.display(), WRITER_WAIT.as_secs())]
    NoWriter { path: PathBuf },
    /// Standard input is a terminal: nothing is being piped in.
    #[error("standard input is a terminal, not a pipe: pipe an image in (curl URL | bootstick write - TARGET)")]
    Terminal,
    /// The stream ended before its first byte.
    #[error("the input stream {} is empty (0 bytes arrived): the program writing to it failed or wrote nothing; nothing was written", name(path))]
    Empty { path: PathBuf },
    /// A compressed stream decodes to nothing.
    #[error(
        "the {format} stream {} decompresses to nothing (0 bytes); nothing was written",
        name(path)
    )]
    EmptyDecoded { path: PathBuf, format: Format },
    /// Reading the stream failed.
    #[error("reading the input stream {} failed at byte {offset}", name(path))]
    Read {
        path: PathBuf,
        offset: u64,
        #[source]
        source: io::Error,
    },
    /// The compressed head could not be decoded; nothing was written.
    #[error(
        "cannot decompress the input stream {}; nothing was written",
        name(path)
    )]
    Decode {
        path: PathBuf,
        #[source]
        source: compressed::Error,
    },
    /// A zip archive arrived on a pipe.
    #[error("the input stream {} is a zip archive, whose member list is at its end: a zip cannot be written from a pipe; save it to a file first", name(path))]
    Zip { path: PathBuf },
}

/// How messages name a stream: `standard input` for `-`.
fn name(path: &Path) -> String {
    if path == Path::new(STDIN) {
        "(standard input)".to_string()
    } else {
        path.display().to_string()
    }
}

/// True when `path` names a stream rather than a file: `-` (standard
/// input) or a FIFO (which is also what `/dev/stdin` and `<(…)` name when
/// they are pipes).
pub fn is_stream(path: &Path) -> bool {
    path == Path::new(STDIN)
        || rustix::fs::stat(path)
            .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Fifo)
}

/// The compressed bytes as they pass: counted (for a decoder's error
/// offsets) and hashed (for a digest over the compressed file).
struct Tally {
    inner: Box<dyn Read + Send>,
    counter: Arc<AtomicU64>,
    hashers: Arc<Mutex<Vec<Hasher>>>,
}

impl Read for Tally {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter.fetch_add(n as u64, Ordering::Relaxed);
        if n > 0 {
            let mut hs = self.hashers.lock().unwrap_or_else(|p| p.into_inner());
            for h in hs.iter_mut() {
                h.update(&buf[..n]);
            }
        }
        Ok(n)
    }
}

/// The stream's bytes after its head: decoded, or as they are.
enum Body {
    Decoded(Decoder),
    Raw(Tally),
}

/// A stream, opened, its compression detected and its head read.
pub struct Pipe {
    path: PathBuf,
    format: Option<Format>,
    head: Vec<u8>,
    /// The stream ended inside the head.
    ended: bool,
    body: Body,
    counter: Arc<AtomicU64>,
    hashers: Arc<Mutex<Vec<Hasher>>>,
    algorithms: Vec<HashAlgorithm>,
    /// The stream's length, when the caller knows it.
    size: Option<u64>,
}

impl std::fmt::Debug for Pipe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipe")
            .field("path", &self.path)
            .field("format", &self.format)
            .field("head", &self.head.len())
            .field("ended", &self.ended)
            .finish()
    }
}

impl Pipe {
    /// Opens `path` as a stream: `-` is standard input (refused when it is
    /// a terminal), anything else is opened for reading, which for a FIFO
    /// waits until a writer opens it.
    pub fn open(path: &Path, algorithms: &[HashAlgorithm]) -> Result<Pipe, Error> {
        let file = if path == Path::new(STDIN) {
            let fd = io::stdin()
                .as_fd()
                .try_clone_to_owned()
                .map_err(|source| Error::Open {
                    path: path.to_owned(),
                    source,
                })?;
            if rustix::termios::isatty(&fd) {
                return Err(Error::Terminal);
            }
            File::from(fd)
        } else {
            return Pipe::open_fifo(path, algorithms);
        };
        Pipe::from_read(path, Box::new(file), algorithms)
    }

    /// Opens a FIFO (or whatever `path` is) for reading without blocking,
    /// and waits up to [`WRITER_WAIT`] for a writer: a FIFO nobody writes
    /// to is refused ([`Error::NoWriter`]) instead of waiting forever
    /// (docs/cli.md, "IMAGE: what every command accepts").
    fn open_fifo(path: &Path, algorithms: &[HashAlgorithm]) -> Result<Pipe, Error> {
        use std::os::unix::fs::OpenOptionsExt;
        let open_err = |source| Error::Open {
            path: path.to_owned(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(path)
            .map_err(open_err)?;
        let deadline = std::time::Instant::now() + WRITER_WAIT;
        let mut first = Vec::new();
        loop {
            let mut byte = [0u8; 1];
            match file.read(&mut byte) {
                // Data: a writer is there (the byte is the stream's first).
                Ok(1) => {
                    first.push(byte[0]);
                    break;
                }
                // A writer is connected but has not written yet.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // No writer (yet).
                Ok(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Ok(_) => {
                    return Err(Error::NoWriter {
                        path: path.to_owned(),
                    })
                }
                Err(source) => {
                    return Err(Error::Read {
                        path: path.to_owned(),
                        offset: 0,
                        source,
                    })
                }
            }
        }
        let flags = rustix::fs::fcntl_getfl(&file).map_err(|e| open_err(e.into()))?;
        rustix::fs::fcntl_setfl(&file, flags - rustix::fs::OFlags::NONBLOCK)
            .map_err(|e| open_err(e.into()))?;
        Pipe::from_read(path, Box::new(Cursor::new(first).chain(file)), algorithms)
    }

    /// `reader` as a stream named `path` (for messages): detects its
    /// compression and reads its head. A compressed stream's compressed
    /// bytes are hashed with each of `algorithms` as they are read
    /// ([`PipeStream::raw_digests`]; from the first byte, so before the
    /// head is read); an uncompressed stream's digest is the write
    /// engine's of the bytes written.
    pub fn from_read(
        path: &Path,
        mut reader: Box<dyn Read + Send>,
        algorithms: &[HashAlgorithm],
    ) -> Result<Pipe, Error> {
        let path = path.to_owned();
        let mut magic = Vec::with_capacity(MAGIC_LEN);
        (&mut reader)
            .take(MAGIC_LEN as u64)
            .read_to_end(&mut magic)
            .map_err(|source| Error::Read {
                path: path.clone(),
                offset: 0,
                source,
            })?;
        if magic.is_empty() {
            return Err(Error::Empty { path });
        }
        let format = compressed::detect(&magic);
        if format == Some(Format::Zip) {
            return Err(Error::Zip { path });
        }
        let counter = Arc::new(AtomicU64::new(0));
        let mut algs: Vec<HashAlgorithm> = Vec::new();
        for a in algorithms {
            if format.is_some() && !algs.contains(a) {
                algs.push(*a);
            }
        }
        let hashers = Arc::new(Mutex::new(algs.iter().map(|a| a.hasher()).collect()));
        let tally = Tally {
            inner: Box::new(Cursor::new(magic).chain(reader)),
            counter: counter.clone(),
            hashers: hashers.clone(),
        };
        let body = match format {
            Some(f) => Body::Decoded(
                Decoder::from_read(Box::new(tally), f, counter.clone()).map_err(|source| {
                    Error::Decode {
                        path: path.clone(),
                        source,
                    }
                })?,
            ),
            None => Body::Raw(tally),
        };
        let mut pipe = Pipe {
            path,
            format,
            head: Vec::new(),
            ended: false,
            body,
            counter,
            hashers,
            algorithms: algs,
            size: None,
        };
        let mut head = vec![0u8; WINDOW];
        let n = pipe.body_read(&mut head).map_err(|e| match e {
            StreamError::Decode(source) => Error::Decode {
                path: pipe.path.clone(),
                source,
            },
            StreamError::Read { offset, source } => Error::Read {
                path: pipe.path.clone(),
                offset,
                source,
            },
        })?;
        head.truncate(n);
        pipe.ended = n < WINDOW;
        if n == 0 {
            // Only a decoder can turn bytes into nothing.
            return Err(Error::EmptyDecoded {
                path: pipe.path,
                format: format.expect("a raw stream had its first bytes"),
            });
        }
        pipe.head = head;
        Ok(pipe)
    }

    /// Fills `buf` from the body; fewer bytes only at its end.
    fn body_read(&mut self, buf: &mut [u8]) -> Result<usize, StreamError> {
        match &mut self.body {
            Body::Decoded(d) => d.read_full(buf).map_err(StreamError::Decode),
            Body::Raw(t) => read_raw_full(t, buf),
        }
    }

    /// The path it was opened from (`-`: standard input).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its compression, detected from its first bytes.
    pub fn format(&self) -> Option<Format> {
        self.format
    }

    /// The length the caller says the (decoded) stream has: it is then
    /// checked against the target before writing, counted down in the
    /// progress, and a stream that ends before it or goes on past it fails
    /// (`write::Error::StreamLength`). Without it, only the stream's end
    /// says where the image ends.
    pub fn with_size(self, size: Option<u64>) -> Pipe {
        Pipe { size, ..self }
    }

    /// The length given with [`Pipe::with_size`], or the stream's length
    /// when it ended inside its head.
    pub fn size(&self) -> Option<u64> {
        self.size.or(self.ended.then_some(self.head.len() as u64))
    }

    /// The head, for deciding how to write the stream: reads past it fail
    /// with [`super::Error::BeyondWindow`]. Its length is the stream's when
    /// known ([`Pipe::size`]), else [`UNKNOWN_LEN`].
    pub fn window(&self) -> Arc<dyn ByteSource> {
        Arc::new(Head {
            bytes: self.head.clone(),
            len: self.size().unwrap_or(UNKNOWN_LEN),
        })
    }

    /// The stream for the write engine, its head first.
    pub fn into_stream(self) -> PipeStream {
        PipeStream {
            head: Cursor::new(self.head),
            ended: self.ended,
            pos: 0,
            body: self.body,
            counter: self.counter,
            hashers: self.hashers,
            format: self.format,
            size: self.size,
            path: self.path,
            algorithms: self.algorithms,
        }
    }
}

/// Why reading a stream failed.
#[derive(Debug)]
pub enum StreamError {
    /// The decoder refused the compressed stream (or it ended early).
    Decode(compressed::Error),
    /// Reading the pipe failed at compressed byte `offset`.
    Read { offset: u64, source: io::Error },
}

/// A stream being written: its head, then the rest as it arrives.
pub struct PipeStream {
    head: Cursor<Vec<u8>>,
    ended: bool,
    /// Decoded bytes handed out.
    pos: u64,
    body: Body,
    counter: Arc<AtomicU64>,
    hashers: Arc<Mutex<Vec<Hasher>>>,
    format: Option<Format>,
    size: Option<u64>,
    path: PathBuf,
    algorithms: Vec<HashAlgorithm>,
}

impl PipeStream {
    /// Fills `buf` with the next (decoded) bytes; fewer only at the end of
    /// the stream (0: it ended).
    pub fn read_full(&mut self, buf: &mut [u8]) -> Result<usize, StreamError> {
        let mut done = self.head.read(buf).expect("reading memory");
        if done < buf.len() && !self.ended {
            done += match &mut self.body {
                Body::Decoded(d) => d.read_full(&mut buf[done..]).map_err(StreamError::Decode)?,
                Body::Raw(t) => read_raw_full(t, &mut buf[done..])?,
            };
        }
        self.pos += done as u64;
        Ok(done)
    }

    /// Decoded bytes handed out so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Compressed bytes read from the pipe so far.
    pub fn compressed_bytes(&self) -> u64 {
        self.counter.load(Ordering::Relaxed)
    }

    pub fn format(&self) -> Option<Format> {
        self.format
    }

    /// The length given with [`Pipe::with_size`], or known from the head.
    pub fn size(&self) -> Option<u64> {
        self.size
            .or(self.ended.then_some(self.head.get_ref().len() as u64))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The digests of the compressed bytes read, for the algorithms given
    /// to [`Pipe::from_read`] (empty for an uncompressed stream).
    /// Complete once the stream ended.
    pub fn raw_digests(&self) -> Vec<Digest> {
        let hs = self.hashers.lock().unwrap_or_else(|p| p.into_inner());
        debug_assert_eq!(hs.len(), self.algorithms.len());
        hs.iter().map(|h| h.clone().finish()).collect()
    }
}

fn read_raw_full(t: &mut Tally, buf: &mut [u8]) -> Result<usize, StreamError> {
    let mut done = 0;
    while done < buf.len() {
        match t.read(&mut buf[done..]) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(StreamError::Read {
                    offset: t.counter.load(Ordering::Relaxed),
                    source,
                })
            }
        }
    }
    Ok(done)
}

/// A stream's head as a [`ByteSource`] for the deciding readers.
struct Head {
    bytes: Vec<u8>,
    len: u64,
}

impl ByteSource for Head {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_raw(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let end = offset as usize + buf.len();
        match self.bytes.get(offset as usize..end) {
            Some(b) => {
                buf.copy_from_slice(b);
                Ok(())
            }
            None => Err(io::Error::other("beyond the stream's head")),
        }
    }

    fn read_exact_at(
        &self,
        offset: u64,
        buf: &mut [u8],
        what: &'static str,
    ) -> Result<(), super::Error> {
        let len = buf.len() as u64;
        let end = offset.checked_add(len);
        if end.is_none_or(|e| e > self.len) {
            return Err(super::Error::OutOfBounds {
                what,
                offset,
                len,
                image_len: self.len,
            });
        }
        if end.is_none_or(|e| e > self.bytes.len() as u64) {
            return Err(super::Error::BeyondWindow {
                what,
                offset,
                window: self.bytes.len() as u64,
            });
        }
        self.read_raw(offset, buf)
            .map_err(|source| super::Error::Io { offset, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipe(bytes: Vec<u8>) -> Result<Pipe, Error> {
        Pipe::from_read(Path::new("-"), Box::new(Cursor::new(bytes)), &[])
    }

    fn drain(mut s: PipeStream, chunk: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; chunk];
        loop {
            let n = s.read_full(&mut buf).unwrap();
            out.extend_from_slice(&buf[..n]);
            if n < chunk {
                return out;
            }
        }
    }

    #[test]
    fn the_head_is_replayed_before_the_rest() {
        let data: Vec<u8> = (0..(WINDOW + 12345)).map(|i| (i * 7 % 251) as u8).collect();
        let p = pipe(data.clone()).unwrap();
        assert_eq!(p.format(), None);
        assert_eq!(p.size(), None, "the stream goes on past the head");
        assert_eq!(drain(p.into_stream(), 1 << 20), data);
        let short = pipe(data[..1000].to_vec()).unwrap();
        assert_eq!(short.size(), Some(1000));
        assert_eq!(drain(short.into_stream(), 4096), data[..1000]);
    }

    #[test]
    fn an_empty_stream_is_refused_at_open() {
        assert!(matches!(pipe(Vec::new()), Err(Error::Empty { .. })));
    }

    #[test]
    fn a_zip_on_a_pipe_is_refused() {
        assert!(matches!(
            pipe(b"PK\x03\x04rest of it".to_vec()),
            Err(Error::Zip { .. })
        ));
    }

    #[test]
    fn the_window_refuses_reads_past_the_head() {
        let p = pipe(vec![7u8; WINDOW + 10]).unwrap();
        let w = p.window();
        let mut b = [0u8; 16];
        w.read_exact_at(WINDOW as u64 - 16, &mut b, "t").unwrap();
        assert!(matches!(
            w.read_exact_at(WINDOW as u64 - 8, &mut b, "t"),
            Err(super::super::Error::BeyondWindow { .. })
        ));
    }
}
