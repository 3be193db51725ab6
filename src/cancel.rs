//! Cancelling a running job.
//!
//! A [`Cancel`] token is shared between whoever may stop a job (the binary's
//! signal handling, a station's job controller, a test) and the job itself.
//! Long-running stages poll [`Cancel::is_cancelled`] between chunks and stop
//! with a typed error saying what state they left their target in; they
//! never stop in the middle of an I/O, so a cancelled job always leaves its
//! devices closed and unlocked by the usual destructors.
//!
//! The token records *why* it was cancelled (a [`Signal`], or a plain
//! request), so the caller can report it (`docs/cli.md`: exit 130, 143 or
//! 129, as a shell would).

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

/// A termination signal that cancelled a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Signal {
    /// `SIGINT`: Ctrl-C on a terminal.
    Interrupt,
    /// `SIGTERM`: `kill`, a service manager stopping the job.
    Terminate,
    /// `SIGHUP`: the terminal went away (ssh dropped, window closed).
    Hangup,
}

impl Signal {
    /// Every signal a job is cancelled by.
    pub const ALL: [Signal; 3] = [Signal::Interrupt, Signal::Terminate, Signal::Hangup];

    /// The signal's number.
    pub fn number(self) -> i32 {
        match self {
            Signal::Interrupt => libc::SIGINT,
            Signal::Terminate => libc::SIGTERM,
            Signal::Hangup => libc::SIGHUP,
        }
    }

    /// The signal's name (`SIGINT`).
    pub fn name(self) -> &'static str {
        match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
            Signal::Hangup => "SIGHUP",
        }
    }

    /// The signal with this number, if it is one of [`Signal::ALL`].
    pub fn from_number(n: i32) -> Option<Signal> {
        Signal::ALL.into_iter().find(|s| s.number() == n)
    }
}

/// Not cancelled.
const LIVE: u8 = 0;
/// Cancelled by [`Cancel::cancel`], not by a signal.
const REQUESTED: u8 = 1;
/// Cancelled by a signal: `SIGNALLED + index in Signal::ALL`.
const SIGNALLED: u8 = 2;

/// A cancellation token: cheap to clone (clones share one state) and to poll
/// (one atomic load), so the write engine checks it once per chunk.
///
/// [`Cancel::default`] is a token nobody else holds, so it is never
/// cancelled: jobs that cannot be stopped need not care.
#[derive(Clone, Debug, Default)]
pub struct Cancel {
    state: Arc<AtomicU8>,
}

impl Cancel {
    /// A new token, not cancelled.
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Asks every holder to stop. The first reason given is kept.
    pub fn cancel(&self) {
        let _ = self
            .state
            .compare_exchange(LIVE, REQUESTED, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// Asks every holder to stop because `signal` arrived. The first reason
    /// given is kept.
    pub fn cancel_by(&self, signal: Signal) {
        let index = Signal::ALL
            .iter()
            .position(|s| *s == signal)
            .expect("every signal is in Signal::ALL") as u8;
        let _ = self.state.compare_exchange(
            LIVE,
            SIGNALLED + index,
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
    }

    /// True once the job should stop.
    pub fn is_cancelled(&self) -> bool {
        self.state.load(Ordering::Relaxed) != LIVE
    }

    /// The signal that cancelled the job, if one did.
    pub fn signal(&self) -> Option<Signal> {
        match self.state.load(Ordering::SeqCst) {
            LIVE | REQUESTED => None,
            n => Signal::ALL.get(usize::from(n - SIGNALLED)).copied(),
        }
    }
}

/// What a cancelled job left on its target, so the user knows whether it
/// must be written again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetState {
    /// Nothing was written to the target.
    Untouched,
    /// Part of the plan was written: the target holds neither its old
    /// contents nor the image, and must be written again.
    Incomplete,
    /// Everything was written and flushed, but the read-back that proves it
    /// did not finish.
    WrittenNotVerified,
}

impl TargetState {
    /// The kebab-case name used in JSON (`incomplete`).
    pub fn name(self) -> &'static str {
        match self {
            TargetState::Untouched => "untouched",
            TargetState::Incomplete => "incomplete",
            TargetState::WrittenNotVerified => "written-not-verified",
        }
    }

    /// What the user should know about the target, as a sentence part.
    pub fn advice(self) -> &'static str {
        match self {
            TargetState::Untouched => "nothing was written to the target",
            TargetState::Incomplete => {
                "the target holds an incomplete image and must be written again"
            }
            TargetState::WrittenNotVerified => {
                "the image was written and flushed, but the read-back that proves it did not finish: the target is unverified"
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_token_is_live() {
        let c = Cancel::new();
        assert!(!c.is_cancelled());
        assert_eq!(c.signal(), None);
    }

    #[test]
    fn clones_share_the_state_and_the_first_reason_wins() {
        let c = Cancel::new();
        let seen_by_job = c.clone();
        c.cancel_by(Signal::Terminate);
        c.cancel_by(Signal::Interrupt);
        c.cancel();
        assert!(seen_by_job.is_cancelled());
        assert_eq!(seen_by_job.signal(), Some(Signal::Terminate));
    }

    #[test]
    fn a_plain_request_has_no_signal() {
        let c = Cancel::new();
        c.cancel();
        assert!(c.is_cancelled());
        assert_eq!(c.signal(), None);
    }

    #[test]
    fn signals_round_trip_through_their_numbers() {
        for s in Signal::ALL {
            assert_eq!(Signal::from_number(s.number()), Some(s));
        }
        assert_eq!(Signal::Interrupt.number(), 2);
        assert_eq!(Signal::Hangup.number(), 1);
        assert_eq!(Signal::Terminate.number(), 15);
        assert_eq!(Signal::from_number(9), None);
    }
}
