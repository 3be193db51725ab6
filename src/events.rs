//! Progress and status events.
//!
//! The library never prints. Long-running stages report what they are doing as
//! [`Event`]s to an [`Observer`]; the command-line front end renders them as an
//! indicatif progress bar or as newline-delimited JSON (`--json`, schema in
//! `docs/cli.md`). Observers must be cheap: the engine calls them from its hot
//! loop, and rate limiting (at most one JSON progress line every 250 ms) is the
//! renderer's job.

use serde::Serialize;

/// A stage of a job, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Checking the source image (checksums, signatures) before writing.
    Check,
    /// Streaming the plan onto the target.
    Write,
    /// Flushing the target's caches so the data is durable.
    Sync,
    /// Reading the target back and comparing it with the plan.
    Verify,
    /// Copying an image's files out into a directory (`extract`).
    Extract,
}

impl Phase {
    /// The lower-case name used in messages and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Check => "check",
            Phase::Write => "write",
            Phase::Sync => "sync",
            Phase::Verify => "verify",
            Phase::Extract => "extract",
        }
    }
}

/// Something worth telling the user while a job runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A phase begins; `total` is how many bytes it will process (0 when unknown).
    PhaseStarted { phase: Phase, total: u64 },
    /// `done` of the phase's `total` bytes are processed.
    Progress { phase: Phase, done: u64, total: u64 },
    /// The phase has finished successfully.
    PhaseFinished { phase: Phase },
    /// A condition the user should know about that does not stop the job
    /// (for example "O_DIRECT refused, falling back to buffered I/O").
    Warning(String),
}

/// Receives events from a running job.
pub trait Observer: Sync {
    fn event(&self, event: &Event);
}

/// An observer that ignores everything.
#[derive(Clone, Copy, Debug, Default)]
pub struct Silent;

impl Observer for Silent {
    fn event(&self, _: &Event) {}
}

/// Closures are observers, which keeps tests short.
impl<F: Fn(&Event) + Sync> Observer for F {
    fn event(&self, event: &Event) {
        self(event)
    }
}
