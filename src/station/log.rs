//! The station's log: one NDJSON record per stick that arrived and was
//! considered (written, failed, skipped), appended and flushed to disk per
//! record, so a lab's log survives a crash or a pulled power cord up to the
//! last stick.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::devices::Disk;

/// How a stick ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Written and verified.
    Done,
    /// Writing, syncing or verifying failed (or the identity check).
    Failed,
    /// Stopped by the second signal: the stick holds an incomplete image.
    Incomplete,
    /// Not written: a rule refused it.
    Skipped,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::Failed => "failed",
            Outcome::Incomplete => "incomplete",
            Outcome::Skipped => "skipped",
        }
    }
}

/// One stick, as logged (docs/station.md, "The log").
#[derive(Clone, Debug, Serialize)]
pub struct Record {
    /// RFC 3339, UTC, when the stick was finished with.
    pub time: String,
    /// The kernel name when it arrived (`sdb`).
    pub device: String,
    pub by_path: Option<PathBuf>,
    pub by_id: Option<PathBuf>,
    pub serial: Option<String>,
    pub vendor: Option<String>,
    pub model: Option<String>,
    pub size: u64,
    /// The image's SHA-256 (hex), once known (the first write computes
    /// it; a source check vouched for it).
    pub image_sha256: Option<String>,
    pub bytes: u64,
    pub seconds: f64,
    /// Bytes written per second over the whole job (write, sync, verify),
    /// in MB/s (10^6).
    pub mb_per_s: f64,
    pub result: Outcome,
    /// Why it failed or was skipped.
    pub error: Option<String>,
    /// A skip's rule (`holds`, `port`, …).
    pub rule: Option<&'static str>,
}

impl Record {
    /// A record for `disk` with nothing written yet.
    pub fn new(disk: &Disk, result: Outcome) -> Record {
        Record {
            time: now_rfc3339(),
            device: disk.name.clone(),
            by_path: disk.by_path.clone(),
            by_id: disk.by_id.clone(),
            serial: disk.serial.clone(),
            vendor: disk.vendor.clone(),
            model: disk.model.clone(),
            size: disk.size_bytes,
            image_sha256: None,
            bytes: 0,
            seconds: 0.0,
            mb_per_s: 0.0,
            result,
            error: None,
            rule: None,
        }
    }

    /// Sets bytes and seconds, and the rate from them.
    pub fn timed(mut self, bytes: u64, seconds: f64) -> Record {
        self.bytes = bytes;
        self.seconds = (seconds * 1000.0).round() / 1000.0;
        self.mb_per_s = if seconds > 0.0 {
            ((bytes as f64 / seconds / 1e6) * 10.0).round() / 10.0
        } else {
            0.0
        };
        self
    }
}

/// The current time as `2026-12-07T15:04:05.123Z`.
pub fn now_rfc3339() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    chrono::DateTime::from_timestamp(now.as_secs() as i64, now.subsec_nanos())
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_default()
}

/// Why the log cannot be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the station log {}", path.display())]
pub struct Error {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// The log file, opened for appending.
#[derive(Debug)]
pub struct Log {
    path: PathBuf,
    file: File,
}

impl Log {
    /// Opens (creating) `path` for appending.
    pub fn open(path: &Path) -> Result<Log, Error> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| Error {
                path: path.into(),
                source,
            })?;
        Ok(Log {
            path: path.into(),
            file,
        })
    }

    /// Appends one record as one line (a single `write`, so records of
    /// several stations sharing a file never interleave) and flushes it
    /// to disk.
    pub fn append(&mut self, r: &Record) -> Result<(), Error> {
        let mut line = serde_json::to_vec(r).map_err(|e| Error {
            path: self.path.clone(),
            source: e.into(),
        })?;
        line.push(b'\n');
        let fail = |source| Error {
            path: self.path.clone(),
            source,
        };
        self.file.write_all(&line).map_err(fail)?;
        self.file.sync_data().map_err(fail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_append_one_line_each_with_every_field() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("lab.ndjson");
        std::fs::write(&path, b"{\"earlier\":true}\n").unwrap();
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sysfs/laptop");
        let disks = crate::devices::by_name(
            crate::devices::enumerate(&crate::devices::Roots::under(&root)).unwrap(),
        );
        let mut log = Log::open(&path).unwrap();
        let mut r = Record::new(&disks["sdb"], Outcome::Done).timed(8_000_000, 2.0);
        r.image_sha256 = Some("ab".repeat(32));
        log.append(&r).unwrap();
        let mut s = Record::new(&disks["sdc"], Outcome::Skipped);
        s.error = Some("holds ext4 data (at byte 1048576)".into());
        s.rule = Some("holds");
        log.append(&s).unwrap();
        drop(log);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["earlier"], true);
        let keys = [
            "time",
            "device",
            "by_path",
            "by_id",
            "serial",
            "vendor",
            "model",
            "size",
            "image_sha256",
            "bytes",
            "seconds",
            "mb_per_s",
            "result",
            "error",
            "rule",
        ];
        for l in &lines[1..] {
            let obj = l.as_object().unwrap();
            let mut have: Vec<&str> = obj.keys().map(String::as_str).collect();
            have.sort_unstable();
            let mut want = keys.to_vec();
            want.sort_unstable();
            assert_eq!(have, want);
        }
        assert_eq!(lines[1]["result"], "done");
        assert_eq!(lines[1]["mb_per_s"], 4.0);
        assert_eq!(lines[1]["bytes"], 8_000_000);
        assert_eq!(lines[1]["device"], "sdb");
        assert!(lines[1]["by_path"]
            .as_str()
            .unwrap()
            .contains("usb-0:1:1.0"));
        assert_eq!(lines[2]["result"], "skipped");
        assert_eq!(lines[2]["rule"], "holds");
        let t = lines[1]["time"].as_str().unwrap();
        assert!(
            t.len() == 24 && t.ends_with('Z') && &t[10..11] == "T",
            "{t}"
        );
    }
}
