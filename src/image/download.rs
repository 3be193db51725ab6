//! Images downloaded over HTTP(S): `bootstick write https://…/x.iso TARGET`.
//!
//! # Why it is built this way
//!
//! - **A download is one more stream.** [`Download`] is a `Read` of the
//!   response body, handed to `image::pipe` as standard input is: the same
//!   magic-byte detection of compression, the same decoded head for the
//!   decision, the same write path (`write::write_piped`) with the boot
//!   area held back until the whole stream matched its digest. Nothing is
//!   stored on disk unless a copy is asked for ([`Save`]).
//! - **What is not an image is refused before anything is written.** A
//!   status other than 2xx is [`Error::Status`] (a 404 for the image; for a
//!   checksum file looked for beside it ([`Fetcher::fetch`]) a 4xx is simply
//!   "not there"); a web page (a `Content-Type: text/html`, or a body that
//!   starts like one: `<!DOCTYPE html`, `<html`) is [`Error::WebPage`],
//!   found while the response is opened, so before any target is chosen.
//! - **A dropped connection is resumed, only into the same entity.** After
//!   an error or an early end of the body, the request is made again with
//!   `Range: bytes=N-` and `If-Range` (the strong `ETag`, else
//!   `Last-Modified`), at most [`RESUMES`] times. The resumed part is taken
//!   only from a `206` whose `Content-Range` starts at `N` and names the
//!   same total length, and whose validator is the first response's; a
//!   `200` (the server's answer when `If-Range` no longer matches) or any
//!   other difference is [`Error::Changed`] or [`Error::CannotResume`], and
//!   the write fails with the target incomplete. Without a validator
//!   nothing can prove the rest belongs to the same file, so it is not
//!   resumed.
//! - **Errors pass through the stream as `io::Error`s** (the pipe and the
//!   engine read a `Read`): each one wraps a typed [`Error`], which
//!   [`cause`] finds again for the caller's exit code.
//! - **TLS is rustls with the system's roots** (`rustls-native-certs`,
//!   the files the distribution's `ca-certificates` maintains) plus any
//!   PEM file given ([`Options::ca_certs`], for a private CA); ureq, a
//!   blocking client, because the pipeline is threads and needs no async
//!   runtime (docs/decisions.md).

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};
use ureq::ResponseExt;

/// Redirects followed before giving up.
pub const MAX_REDIRECTS: u32 = 10;

/// Times a dropped connection is resumed in one download.
pub const RESUMES: u32 = 3;

/// How long one read (or the connection) may wait for the server.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Bytes of the body looked at to tell a web page from an image.
const SNIFF: usize = 512;

/// True when `path` is an `http://` or `https://` URL.
pub fn is_url(path: &Path) -> bool {
    path.to_str().is_some_and(|s| {
        let lower = s.get(..8).unwrap_or(s).to_ascii_lowercase();
        lower.starts_with("http://") || lower.starts_with("https://")
    })
}

/// Why a download failed. Every variant names the URL it is about.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with a status other than 2xx.
    #[error("the server answered {status}{} for {url}", reason.as_ref().map(|r| format!(" {r}")).unwrap_or_default())]
    Status {
        url: String,
        status: u16,
        reason: Option<String>,
    },
    /// The URL returned an HTML page (by its `Content-Type` or its first
    /// bytes), not an image.
    #[error("the URL returned a web page, not an image ({why}): {url}")]
    WebPage { url: String, why: &'static str },
    /// The TLS handshake with `host` failed (an unknown issuer, an expired
    /// or mismatched certificate, …).
    #[error("TLS with {host} failed: {detail}")]
    Tls { host: String, detail: String },
    /// The server could not be reached or the exchange failed.
    #[error("cannot download {url}")]
    Connect {
        url: String,
        #[source]
        source: Box<ureq::Error>,
    },
    /// Not a URL ureq can request.
    #[error("{url} is not a valid http:// or https:// URL")]
    BadUrl { url: String },
    /// A resumed response names another total length than the first.
    #[error("the length of {url} changed while it was downloaded ({before} bytes, then {after}): the file on the server was replaced; nothing of the new one was written")]
    LengthChanged {
        url: String,
        before: u64,
        after: u64,
    },
    /// A resumed response is another entity (its `ETag` or
    /// `Last-Modified` differs, or the server sent the whole file again
    /// because `If-Range` no longer matched).
    #[error("{url} changed on the server while it was downloaded ({what}); the bytes after {offset} would belong to another file")]
    Changed {
        url: String,
        offset: u64,
        what: String,
    },
    /// The connection dropped at `offset` and cannot be resumed.
    #[error("the download of {url} broke off at byte {offset} and cannot be resumed: {why}")]
    CannotResume {
        url: String,
        offset: u64,
        why: String,
        #[source]
        source: Option<io::Error>,
    },
    /// The body goes on past its `Content-Length`.
    #[error("{url} sent more than the {len} bytes it announced")]
    TooLong { url: String, len: u64 },
    /// A small file (a checksum file, a signature) is larger than `cap`.
    #[error("{url} is larger than {cap} bytes, too large for a checksum or signature file")]
    TooLarge { url: String, cap: u64 },
    /// The CA certificate file cannot be read or holds no certificate.
    #[error("cannot use {} as CA certificates: {why}", path.display())]
    CaCert { path: PathBuf, why: String },
    /// The system's trusted roots cannot be loaded and none were given.
    #[error("no trusted root certificates for HTTPS ({why})")]
    NoRoots { why: String },
    /// The copy of the download cannot be kept.
    #[error("cannot save the download as {}", path.display())]
    Save {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The copy would replace a file that exists (and was not confirmed).
    #[error("{} exists; it is replaced only when confirmed", path.display())]
    SaveExists { path: PathBuf },
    /// The copy would replace something that is not a regular file.
    #[error("{} exists and is not a regular file: a download is saved only as a regular file", path.display())]
    SaveNotAFile { path: PathBuf },
}

/// The typed download error inside an `io::Error` read from a
/// [`Download`] (or from a pipe reading one).
pub fn cause(e: &io::Error) -> Option<&Error> {
    e.get_ref().and_then(|inner| inner.downcast_ref::<Error>())
}

/// How to download.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// PEM files of CA certificates trusted besides the system's roots.
    pub ca_certs: Vec<PathBuf>,
}

/// What the first response said about the entity: what a resumed part
/// must match.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Entity {
    /// The URL answered, after redirects.
    pub url: String,
    /// `Content-Length`: the body's length, when announced.
    pub length: Option<u64>,
    /// A strong `ETag` (weak ones cannot vouch for bytes).
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub content_type: Option<String>,
}

/// A download's counters, readable while and after it streams.
#[derive(Debug, Default)]
pub struct Stats {
    resumed: AtomicU32,
}

impl Stats {
    /// Connections resumed after a drop.
    pub fn resumed(&self) -> u32 {
        self.resumed.load(Ordering::Relaxed)
    }
}

/// An agent for `url`: redirects followed (bounded), statuses returned to
/// us rather than turned into errors, the system's roots plus `options`'
/// CA files for HTTPS.
fn agent(url: &str, options: &Options) -> Result<ureq::Agent, Error> {
    let mut config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(MAX_REDIRECTS)
        .max_redirects_will_error(true)
        .user_agent(concat!("bootstick/", env!("CARGO_PKG_VERSION")))
        .timeout_connect(Some(READ_TIMEOUT))
        .timeout_per_read(Some(READ_TIMEOUT));
    if url
        .get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
    {
        config = config.tls_config(
            TlsConfig::builder()
                .root_certs(RootCerts::Specific(Arc::new(roots(options)?)))
                .build(),
        );
    }
    Ok(config.build().into())
}

/// The system's trusted roots and the given CA files' certificates.
fn roots(options: &Options) -> Result<Vec<Certificate<'static>>, Error> {
    let native = rustls_native_certs::load_native_certs();
    let mut certs: Vec<Certificate<'static>> = native
        .certs
        .iter()
        .map(|c| Certificate::from_der(c.as_ref()).to_owned())
        .collect();
    for path in &options.ca_certs {
        let bad = |why: String| Error::CaCert {
            path: path.clone(),
            why,
        };
        let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        let before = certs.len();
        for item in ureq::tls::parse_pem(&pem) {
            if let PemItem::Certificate(c) = item.map_err(|e| bad(e.to_string()))? {
                certs.push(c.to_owned());
            }
        }
        if certs.len() == before {
            return Err(bad("no PEM certificate in it".into()));
        }
    }
    if certs.is_empty() {
        return Err(Error::NoRoots {
            why: native
                .errors
                .first()
                .map_or("the system has none installed".into(), |e| e.to_string()),
        });
    }
    Ok(certs)
}

/// The host of `url`, for messages.
fn host(url: &str) -> String {
    url.split_once("://")
        .map(|(_, rest)| rest)
        .unwrap_or(url)
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default()
        .to_string()
}

/// The typed error for a request to `url` that failed before a response.
fn request_error(url: &str, e: ureq::Error) -> Error {
    let text = e.to_string();
    let tls = matches!(e, ureq::Error::Rustls(_) | ureq::Error::Tls(_))
        || (matches!(e, ureq::Error::Io(_))
            && (text.contains("certificate") || text.contains("tls") || text.contains("TLS")));
    match e {
        _ if tls => Error::Tls {
            host: host(url),
            detail: text,
        },
        ureq::Error::BadUri(_) | ureq::Error::Http(_) => Error::BadUrl { url: url.into() },
        e => Error::Connect {
            url: url.into(),
            source: Box::new(e),
        },
    }
}

fn header(resp: &ureq::http::Response<ureq::Body>, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// A response whose status is not 2xx, as an error.
fn status_error(url: &str, resp: &ureq::http::Response<ureq::Body>) -> Error {
    Error::Status {
        url: url.into(),
        status: resp.status().as_u16(),
        reason: resp.status().canonical_reason().map(str::to_string),
    }
}

/// A `text/html` content type.
fn is_html_type(ct: &str) -> bool {
    let ct = ct.trim().to_ascii_lowercase();
    ct.starts_with("text/html") || ct.starts_with("application/xhtml")
}

/// A body that starts like an HTML page (after blanks and a UTF-8 BOM).
pub fn looks_like_html(head: &[u8]) -> bool {
    let head = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    let start = head
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(head.len());
    let rest = &head[start..];
    let lower: Vec<u8> = rest.iter().take(16).map(u8::to_ascii_lowercase).collect();
    lower.starts_with(b"<!doctype html") || lower.starts_with(b"<html")
}

/// A download being read: the response body, resumed after drops.
pub struct Download {
    agent: ureq::Agent,
    /// As given (messages name it).
    url: String,
    entity: Entity,
    body: Option<ureq::BodyReader<'static>>,
    /// The sniffed first bytes, handed out first.
    head: io::Cursor<Vec<u8>>,
    /// Body bytes read from the network so far (including `head`).
    pos: u64,
    stats: Arc<Stats>,
}

impl std::fmt::Debug for Download {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Download")
            .field("url", &self.url)
            .field("entity", &self.entity)
            .field("pos", &self.pos)
            .finish()
    }
}

impl Download {
    /// Requests `url` and checks the response is an image: a 2xx status,
    /// not a web page (by type, then by its first bytes, read now).
    pub fn open(url: &str, options: &Options) -> Result<Download, Error> {
        let agent = agent(url, options)?;
        let resp = agent.get(url).call().map_err(|e| request_error(url, e))?;
        if !resp.status().is_success() {
            return Err(status_error(url, &resp));
        }
        let content_type = header(&resp, "content-type");
        if content_type.as_deref().is_some_and(is_html_type) {
            return Err(Error::WebPage {
                url: url.into(),
                why: "its Content-Type is text/html",
            });
        }
        let entity = Entity {
            url: resp.get_uri().to_string(),
            length: header(&resp, "content-length").and_then(|l| l.trim().parse().ok()),
            etag: header(&resp, "etag").filter(|e| !e.starts_with("W/")),
            last_modified: header(&resp, "last-modified"),
            content_type,
        };
        let mut body = resp.into_body().into_reader();
        let mut head = Vec::with_capacity(SNIFF);
        // Errors here are a connection that broke before anything was
        // written: reported as such (no resume of a first read).
        (&mut body)
            .take(SNIFF as u64)
            .read_to_end(&mut head)
            .map_err(|source| Error::CannotResume {
                url: url.into(),
                offset: 0,
                why: "the connection failed while the first bytes were read".into(),
                source: Some(source),
            })?;
        if looks_like_html(&head) {
            return Err(Error::WebPage {
                url: url.into(),
                why: "its body starts as an HTML document",
            });
        }
        Ok(Download {
            agent,
            url: url.into(),
            entity,
            pos: head.len() as u64,
            head: io::Cursor::new(head),
            body: Some(body),
            stats: Arc::new(Stats::default()),
        })
    }

    /// What the server said about the file.
    pub fn entity(&self) -> &Entity {
        &self.entity
    }

    /// The counters, shared with whoever keeps them after the download is
    /// handed to the stream.
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// Requests the rest from byte `self.pos` and checks it continues the
    /// same entity; `why` is what broke the previous connection.
    fn resume(&mut self, why: Option<io::Error>) -> Result<(), Error> {
        let offset = self.pos;
        let cannot = |why: String, source: Option<io::Error>| Error::CannotResume {
            url: self.url.clone(),
            offset,
            why,
            source,
        };
        let validator = match (&self.entity.etag, &self.entity.last_modified) {
            (Some(e), _) => e.clone(),
            (None, Some(m)) => m.clone(),
            (None, None) => {
                return Err(cannot(
                    "the server gave no ETag or Last-Modified, so nothing proves a resumed part is the same file".into(),
                    why,
                ))
            }
        };
        if self.stats.resumed() >= RESUMES {
            return Err(cannot(format!("it broke off {} times", RESUMES + 1), why));
        }
        self.stats.resumed.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(200 * u64::from(self.stats.resumed())));
        let resp = match self
            .agent
            .get(&self.entity.url)
            .header("Range", format!("bytes={offset}-"))
            .header("If-Range", validator)
            .call()
        {
            Ok(r) => r,
            // Another try, within the bound, when the server is unreachable.
            Err(e) => return self.resume(Some(io::Error::other(request_error(&self.url, e)))),
        };
        let status = resp.status().as_u16();
        let etag = header(&resp, "etag").filter(|e| !e.starts_with("W/"));
        let modified = header(&resp, "last-modified");
        let changed = |what: String| Error::Changed {
            url: self.url.clone(),
            offset,
            what,
        };
        if let (Some(a), Some(b)) = (&self.entity.etag, &etag) {
            if a != b {
                return Err(changed(format!("its ETag was {a}, now {b}")));
            }
        }
        if self.entity.etag.is_none() {
            if let (Some(a), Some(b)) = (&self.entity.last_modified, &modified) {
                if a != b {
                    return Err(changed(format!("Last-Modified was {a}, now {b}")));
                }
            }
        }
        match status {
            206 => {}
            200 => {
                return Err(match self.entity.etag.is_some() && etag.is_some() {
                    // Same ETag, whole file again: the server ignores Range.
                    true => cannot("the server does not serve byte ranges".into(), why),
                    false => changed(
                        "the server sent the whole file again: If-Range no longer matches".into(),
                    ),
                });
            }
            _ if resp.status().is_success() => {
                return Err(cannot(
                    format!("the server answered {status} to a range request"),
                    why,
                ))
            }
            _ => return Err(status_error(&self.url, &resp)),
        }
        let range = header(&resp, "content-range").unwrap_or_default();
        let (start, total) = parse_content_range(&range).ok_or_else(|| {
            cannot(
                format!("its Content-Range {range:?} is not a byte range"),
                None,
            )
        })?;
        if let (Some(before), Some(after)) = (self.entity.length, total) {
            if before != after {
                return Err(Error::LengthChanged {
                    url: self.url.clone(),
                    before,
                    after,
                });
            }
        }
        if start != offset {
            return Err(cannot(
                format!("the server resumed at byte {start}, not {offset}"),
                None,
            ));
        }
        self.body = Some(resp.into_body().into_reader());
        Ok(())
    }
}

/// `bytes START-END/TOTAL` → (START, TOTAL; `None` for `*`).
fn parse_content_range(s: &str) -> Option<(u64, Option<u64>)> {
    let rest = s.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let (start, end) = range.split_once('-')?;
    let start: u64 = start.trim().parse().ok()?;
    let end: u64 = end.trim().parse().ok()?;
    if end < start {
        return None;
    }
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    Some((start, total))
}

impl Read for Download {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.head.read(buf)?;
        if n > 0 || buf.is_empty() {
            return Ok(n);
        }
        loop {
            let Some(body) = self.body.as_mut() else {
                return Ok(0);
            };
            let broke = match body.read(buf) {
                Ok(0) => match self.entity.length {
                    Some(len) if self.pos < len => None,
                    _ => {
                        self.body = None;
                        return Ok(0);
                    }
                },
                Ok(n) => {
                    self.pos += n as u64;
                    if let Some(len) = self.entity.length.filter(|&l| self.pos > l) {
                        return Err(io::Error::other(Error::TooLong {
                            url: self.url.clone(),
                            len,
                        }));
                    }
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Some(e),
            };
            self.body = None;
            self.resume(broke).map_err(io::Error::other)?;
        }
    }
}

/// Splits a download's URL into its directory (with its last `/`) and its
/// file name as written in the URL and decoded (`%20` → ` `); the query
/// and fragment are dropped (they are not part of the name checksum files
/// list). `None` when the URL has no file name.
pub fn split_url(url: &str) -> Option<(String, String)> {
    let end = url.find(['?', '#']).unwrap_or(url.len());
    let path = &url[..end];
    let (scheme, rest) = path.split_once("://")?;
    let slash = rest.rfind('/')?;
    let name = &rest[slash + 1..];
    if name.is_empty() {
        return None;
    }
    Some((
        format!("{scheme}://{}", &rest[..=slash]),
        percent_decode(name)?,
    ))
}

/// `%XX` escapes undone; `None` when they do not decode to UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A file name as a URL path segment: bytes outside the unreserved set
/// escaped.
pub fn percent_encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for &c in name.as_bytes() {
        if c.is_ascii_alphanumeric() || b"-._~+".contains(&c) {
            out.push(c as char);
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
    out
}

/// Fetches small files (checksum files, signatures) over one agent, so
/// the probes beside a download reuse their connection.
pub struct Fetcher {
    agent: ureq::Agent,
}

impl Fetcher {
    /// A fetcher for URLs like `url` (its scheme decides whether TLS roots
    /// are loaded).
    pub fn new(url: &str, options: &Options) -> Result<Fetcher, Error> {
        Ok(Fetcher {
            agent: agent(url, options)?,
        })
    }

    /// The file at `url`, at most `cap` bytes: `None` when the server has
    /// none there (any 4xx: a 404 is the usual "not found", some servers
    /// answer 403 instead) or answers with a web page (a server that
    /// answers every path with its home page). A 5xx is an error: the
    /// file may exist.
    pub fn fetch(&self, url: &str, cap: u64) -> Result<Option<Vec<u8>>, Error> {
        let resp = self
            .agent
            .get(url)
            .call()
            .map_err(|e| request_error(url, e))?;
        if resp.status().is_client_error() {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(status_error(url, &resp));
        }
        if header(&resp, "content-type").is_some_and(|t| is_html_type(&t)) {
            return Ok(None);
        }
        let mut bytes = Vec::new();
        resp.into_body()
            .into_reader()
            .take(cap + 1)
            .read_to_end(&mut bytes)
            .map_err(|source| Error::CannotResume {
                url: url.into(),
                offset: bytes.len() as u64,
                why: "the connection failed".into(),
                source: Some(source),
            })?;
        if bytes.len() as u64 > cap {
            return Err(Error::TooLarge {
                url: url.into(),
                cap,
            });
        }
        if looks_like_html(&bytes) {
            return Ok(None);
        }
        Ok(Some(bytes))
    }

    /// The file names a directory's index page lists (`dir_url` ends in
    /// `/`): what Apache's, nginx's and lighttpd's autoindex, and most
    /// mirrors, serve for a directory. `None` when the server lists
    /// nothing there (a status other than 2xx, or not an HTML page): most
    /// servers do not, and the caller then asks for each name it knows.
    pub fn index(&self, dir_url: &str) -> Result<Option<Vec<String>>, Error> {
        let resp = self
            .agent
            .get(dir_url)
            .call()
            .map_err(|e| request_error(dir_url, e))?;
        if !resp.status().is_success() {
            return Ok(None);
        }
        let html_type = header(&resp, "content-type").is_some_and(|t| is_html_type(&t));
        let mut bytes = Vec::new();
        resp.into_body()
            .into_reader()
            .take(INDEX_CAP)
            .read_to_end(&mut bytes)
            .map_err(|source| Error::CannotResume {
                url: dir_url.into(),
                offset: bytes.len() as u64,
                why: "the connection failed".into(),
                source: Some(source),
            })?;
        if !html_type && !looks_like_html(&bytes) {
            return Ok(None);
        }
        Ok(Some(index_names(&String::from_utf8_lossy(&bytes))))
    }
}

/// The most of a directory's index page read (a mirror's directory of a
/// few hundred files is well under it).
const INDEX_CAP: u64 = 4 << 20;

/// The names of the files an index page links to in its own directory:
/// every `href` that is a plain relative name (no `/`, `?`, `#` or scheme,
/// not starting with `.`), entities and `%XX` escapes undone, in order,
/// each once.
pub fn index_names(html: &str) -> Vec<String> {
    let lower = html.to_ascii_lowercase();
    let mut names: Vec<String> = Vec::new();
    let mut at = 0;
    while let Some(i) = lower[at..].find("href") {
        let start = at + i + 4;
        at = start;
        let rest = html[start..].trim_start();
        let Some(rest) = rest.strip_prefix('=') else {
            continue;
        };
        let rest = rest.trim_start();
        let (quote, body) = match rest.chars().next() {
            Some(q @ ('"' | '\'')) => (q, &rest[1..]),
            _ => continue,
        };
        let Some(end) = body.find(quote) else {
            continue;
        };
        let raw = body[..end].replace("&amp;", "&");
        if raw.is_empty() || raw.starts_with('.') || raw.contains(['/', '?', '#', ':']) {
            continue;
        }
        if let Some(name) = percent_decode(&raw) {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names
}

/// Where a copy of the download goes (`--save FILE`): written beside FILE
/// as it streams, renamed over FILE only once the job succeeded
/// ([`Save::keep`]); dropped otherwise, so a FILE is only ever a whole,
/// checked download.
#[derive(Debug)]
pub struct Save {
    path: PathBuf,
    staged: tempfile::NamedTempFile,
}

impl Save {
    /// Stages a copy for `path`. An existing `path` is refused unless
    /// `replace`, and anything but a regular file always.
    pub fn create(path: &Path, replace: bool) -> Result<Save, Error> {
        let fail = |source| Error::Save {
            path: path.to_path_buf(),
            source,
        };
        match std::fs::symlink_metadata(path) {
            Ok(m) if !m.file_type().is_file() => {
                return Err(Error::SaveNotAFile {
                    path: path.to_path_buf(),
                })
            }
            Ok(_) if !replace => {
                return Err(Error::SaveExists {
                    path: path.to_path_buf(),
                })
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(fail(e)),
        }
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let name = path.file_name().map_or_else(
            || ".bootstick-download".into(),
            |n| format!(".{}.", n.to_string_lossy()),
        );
        let staged = tempfile::Builder::new()
            .prefix(&name)
            .suffix(".part")
            .tempfile_in(dir)
            .map_err(fail)?;
        Ok(Save {
            path: path.to_path_buf(),
            staged,
        })
    }

    /// FILE as given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The staged copy being written (where FILE's bytes are until kept).
    pub fn staged(&self) -> &Path {
        self.staged.path()
    }

    /// `reader`, every byte read also written to the staged copy.
    pub fn tee(&self, reader: Box<dyn Read + Send>) -> Result<Box<dyn Read + Send>, Error> {
        let file = self
            .staged
            .as_file()
            .try_clone()
            .map_err(|source| Error::Save {
                path: self.path.clone(),
                source,
            })?;
        Ok(Box::new(Tee {
            inner: reader,
            file,
            path: self.path.clone(),
        }))
    }

    /// Flushes the staged copy and renames it to FILE.
    pub fn keep(self) -> Result<PathBuf, Error> {
        let fail = |source| Error::Save {
            path: self.path.clone(),
            source,
        };
        self.staged.as_file().sync_all().map_err(fail)?;
        let path = self.path.clone();
        self.staged.persist(&path).map_err(|e| Error::Save {
            path: path.clone(),
            source: e.error,
        })?;
        Ok(path)
    }
}

/// A reader whose bytes are copied to a file as they pass.
struct Tee {
    inner: Box<dyn Read + Send>,
    file: File,
    path: PathBuf,
}

impl Read for Tee {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.file.write_all(&buf[..n]).map_err(|source| {
            io::Error::other(Error::Save {
                path: self.path.clone(),
                source,
            })
        })?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_told_from_paths() {
        assert!(is_url(Path::new("https://example.org/x.iso")));
        assert!(is_url(Path::new("HTTP://example.org/x.iso")));
        assert!(!is_url(Path::new("./https:/x.iso")));
        assert!(!is_url(Path::new("-")));
        assert!(!is_url(Path::new("ftp://example.org/x.iso")));
    }

    #[test]
    fn web_pages_are_recognised_by_their_start() {
        assert!(looks_like_html(b"<!DOCTYPE html><html>"));
        assert!(looks_like_html(b"\xEF\xBB\xBF\n  <HTML lang=en>"));
        assert!(looks_like_html(b"<!doctype HTML>"));
        assert!(!looks_like_html(b"\x00\x00\x00\x00<html>"));
        assert!(!looks_like_html(b"CD001"));
        assert!(!looks_like_html(b""));
    }

    #[test]
    fn content_ranges_are_parsed_strictly() {
        assert_eq!(
            parse_content_range("bytes 100-199/200"),
            Some((100, Some(200)))
        );
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, None)));
        assert_eq!(parse_content_range("bytes 9-5/20"), None);
        assert_eq!(parse_content_range("items 1-2/3"), None);
        assert_eq!(parse_content_range("bytes */200"), None);
    }

    #[test]
    fn a_url_splits_into_its_directory_and_name() {
        assert_eq!(
            split_url("https://h.example/pub/x%20y.iso?token=1#f"),
            Some(("https://h.example/pub/".into(), "x y.iso".into()))
        );
        assert_eq!(split_url("http://h/"), None);
        assert_eq!(split_url("http://h/%zz"), None);
        assert_eq!(percent_encode("x y.iso"), "x%20y.iso");
    }

    #[test]
    fn an_index_page_gives_the_names_of_its_files() {
        let page = r#"<html><body><a href="?C=N;O=D">Name</a>
            <a href="/pub/">Parent Directory</a> <a href="../">up</a>
            <A HREF="Fedora-Server-43-x86_64-CHECKSUM">x</A>
            <a href = 'disk%20one.img.xz'>disk one</a>
            <a href="https://elsewhere.example/x.iso">x</a>
            <a href="a&amp;b.sha256">a</a><a href="Fedora-Server-43-x86_64-CHECKSUM">again</a>
            <a href=unquoted.iso>no</a>"#;
        assert_eq!(
            index_names(page),
            [
                "Fedora-Server-43-x86_64-CHECKSUM",
                "disk one.img.xz",
                "a&b.sha256"
            ]
        );
    }

    #[test]
    fn the_host_is_named() {
        assert_eq!(
            host("https://mirror.example:8443/a/b.iso"),
            "mirror.example:8443"
        );
        assert_eq!(host("http://h?x"), "h");
    }
}
