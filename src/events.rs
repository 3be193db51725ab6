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

/// How long one phase of a job took (a write's result lists them, so its
/// summary can say where the time went).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct PhaseTime {
    pub phase: Phase,
    /// Wall-clock seconds, to the millisecond.
    pub seconds: f64,
}

/// Passes every event on to `inner` and times each phase from its
/// `PhaseStarted` to its `PhaseFinished` (a phase that never finished is
/// not listed).
pub struct PhaseClock<'a> {
    inner: &'a dyn Observer,
    state: std::sync::Mutex<Clock>,
}

/// The phase running (since when) and the finished ones.
#[derive(Default)]
struct Clock {
    running: Option<(Phase, std::time::Instant)>,
    finished: Vec<PhaseTime>,
}

impl<'a> PhaseClock<'a> {
    pub fn new(inner: &'a dyn Observer) -> Self {
        PhaseClock {
            inner,
            state: std::sync::Mutex::default(),
        }
    }

    /// The finished phases, in the order they ran.
    pub fn times(&self) -> Vec<PhaseTime> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .finished
            .clone()
    }
}

impl Observer for PhaseClock<'_> {
    fn event(&self, event: &Event) {
        match *event {
            Event::PhaseStarted { phase, .. } => {
                self.state.lock().unwrap_or_else(|e| e.into_inner()).running =
                    Some((phase, std::time::Instant::now()));
            }
            Event::PhaseFinished { phase } => {
                let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                if let Some((started, at)) = state.running.take() {
                    if started == phase {
                        let secs = at.elapsed().as_secs_f64();
                        state.finished.push(PhaseTime {
                            phase,
                            seconds: (secs * 1000.0).round() / 1000.0,
                        });
                    }
                }
            }
            _ => {}
        }
        self.inner.event(event);
    }
}

/// Closures are observers, which keeps tests short.
impl<F: Fn(&Event) + Sync> Observer for F {
    fn event(&self, event: &Event) {
        self(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each finished phase is listed once, in order, and every event still
    /// reaches the inner observer; a phase that never finished is not.
    #[test]
    fn the_phase_clock_times_finished_phases_and_passes_everything_on() {
        let seen = std::sync::Mutex::new(Vec::new());
        let inner = |e: &Event| seen.lock().unwrap().push(e.clone());
        let clock = PhaseClock::new(&inner);
        let events = [
            Event::PhaseStarted {
                phase: Phase::Write,
                total: 10,
            },
            Event::Progress {
                phase: Phase::Write,
                done: 10,
                total: 10,
            },
            Event::PhaseFinished {
                phase: Phase::Write,
            },
            Event::PhaseStarted {
                phase: Phase::Sync,
                total: 0,
            },
            Event::PhaseFinished { phase: Phase::Sync },
            Event::PhaseStarted {
                phase: Phase::Verify,
                total: 10,
            },
        ];
        for e in &events {
            clock.event(e);
        }
        let phases: Vec<Phase> = clock.times().iter().map(|t| t.phase).collect();
        assert_eq!(phases, [Phase::Write, Phase::Sync]);
        assert!(clock.times().iter().all(|t| t.seconds >= 0.0));
        assert_eq!(*seen.lock().unwrap(), events);
    }
}
