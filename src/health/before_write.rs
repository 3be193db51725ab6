//! `write --probe`: the quick probe of every disk target, after the
//! targets are chosen, confirmed and opened and before a byte of the image
//! is written (docs/health.md). A stick that stores less than it reports
//! (`fake-capacity`) or has failing blocks (`bad-sectors`) is not written:
//! an image on it would be silently corrupt, which is exactly what users
//! of other writers blame the writer for. A `slow` stick is written, with
//! a warning: it holds data, only slowly.
//!
//! The probe writes its patterns through the same guarded descriptor the
//! write then uses (the disk stays open with `O_EXCL` and locked in
//! between) and zeroes the first and last MiB after itself; the write then
//! replaces everything the image covers. File targets are not probed.

use std::path::PathBuf;

use crate::cancel::Cancel;
use crate::events::{Event, Observer};
use crate::job::Chosen;

use super::probe::{self, Mode, Options, Report, Verdict};

/// Why the write did not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The probe itself could not run (or was interrupted).
    #[error("probing {} before writing failed", target.display())]
    Probe {
        target: PathBuf,
        #[source]
        source: probe::Error,
    },
    /// The probe found the stick unfit to hold the image.
    #[error("{} is {}: the image was not written", report.target.display(), verdict_name(report.verdict))]
    Unfit { report: Box<Report> },
}

fn verdict_name(v: Verdict) -> &'static str {
    match v {
        Verdict::FakeCapacity => "a fake-capacity stick (it stores less than it reports)",
        Verdict::BadSectors => "failing (bad sectors)",
        Verdict::Slow => "slow",
        Verdict::Genuine => "genuine",
        Verdict::Readable => "readable",
    }
}

/// Passes on warnings only: the probe's own phases would read as the
/// write's in the write's event stream.
struct WarningsOnly<'a>(&'a dyn Observer);

impl Observer for WarningsOnly<'_> {
    fn event(&self, event: &Event) {
        if matches!(event, Event::Warning(_)) {
            self.0.event(event);
        }
    }
}

/// Quick-probes every disk among `chosen`, in order, stopping at the first
/// that is unfit. Returns the reports of the disks probed.
pub fn probe_targets(
    chosen: &[Chosen],
    cancel: &Cancel,
    observer: &dyn Observer,
) -> Result<Vec<Report>, Error> {
    let mut reports = Vec::new();
    for c in chosen {
        let Chosen::Disk { disk, guard } = c else {
            continue;
        };
        let mut options = Options::new(Mode::Quick);
        options.cancel = cancel.clone();
        let report = probe::probe(&disk.path, Some(guard), &options, &WarningsOnly(observer))
            .map_err(|source| Error::Probe {
                target: disk.path.clone(),
                source,
            })?;
        match report.verdict {
            Verdict::FakeCapacity | Verdict::BadSectors => {
                return Err(Error::Unfit {
                    report: Box::new(report),
                })
            }
            Verdict::Slow => observer.event(&Event::Warning(format!(
                "{} is slow (the probe measured {} MB/s writing, {} MB/s reading): writing it anyway",
                disk.path.display(),
                mbs(report.write_bytes_per_second),
                mbs(report.read_bytes_per_second),
            ))),
            Verdict::Genuine | Verdict::Readable => {}
        }
        reports.push(report);
    }
    Ok(reports)
}

fn mbs(v: Option<u64>) -> String {
    v.map_or_else(|| "?".into(), |v| format!("{:.1}", v as f64 / 1e6))
}
