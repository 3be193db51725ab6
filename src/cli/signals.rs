//! `SIGINT`, `SIGTERM` and `SIGHUP`: stop the job, say what it left behind.
//!
//! Handlers are installed first thing in `main` (signal-hook,
//! `docs/decisions.md`). What the first signal does depends on where the
//! command is:
//!
//! - Before the command reaches code that polls the cancellation token (the
//!   image check, inspection, the confirmation prompt, `verify`, `inspect`,
//!   `ls`), nothing has been written: the signal thread reports the
//!   interruption itself (JSON `result` with `interrupted`, or a line on
//!   stderr) and exits with 128 + the signal's number.
//! - Once the command has called [`cooperate`] (`write` after its targets
//!   are chosen, `compare` and `extract` before their loops), the signal
//!   only cancels the process-wide [`token`]: the engine stops between
//!   chunks, lets the I/O in flight finish, releases the device and returns
//!   `Cancelled` with the target's state, which the command reports.
//!
//! A second termination signal exits at once with the same 128 + number
//! code: from the signal thread when it is free (after removing the
//! temporary files of staged file targets), else from the signal handler
//! itself, so nothing can hold it up; a third always exits from the handler.
//! A command that drains (`station`, [`drain`]) takes two signals to stop
//! its jobs: the first only stops it taking new work.

use std::io::{IsTerminal, Write};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, OnceLock};

use bootstick::cancel::{Cancel, Signal};

/// The token every job of this process polls.
static TOKEN: OnceLock<Cancel> = OnceLock::new();

/// True once the command polls [`TOKEN`] and reports a cancellation itself.
/// The signal thread decides under this lock, so a command that starts
/// cooperating and a signal that arrives at the same time agree on who
/// reports.
static COOPERATIVE: Mutex<bool> = Mutex::new(false);

/// The cancellation token of this process's jobs.
pub fn token() -> Cancel {
    TOKEN.get_or_init(Cancel::new).clone()
}

/// From now on the command stops by itself when [`token`] is cancelled,
/// and reports it. If a signal already arrived, the signal thread is
/// exiting the process and this never returns.
pub fn cooperate() {
    *COOPERATIVE.lock().unwrap_or_else(|e| e.into_inner()) = true;
}

/// Cancelled by the first signal of a command that drains ([`drain`]).
static DRAIN: OnceLock<Cancel> = OnceLock::new();

/// Like [`cooperate`], for a command that winds down in two steps (the
/// station): the first signal only cancels the returned token (take no
/// new work, let running jobs finish), the second cancels [`token`] (the
/// running jobs stop between chunks and report what they left), a third
/// exits at once.
pub fn drain() -> Cancel {
    let d = DRAIN.get_or_init(Cancel::new).clone();
    cooperate();
    d
}

/// Installs the handlers; `report` tells the user about a signal that
/// arrived before the command cooperates (the process then exits).
pub fn install(report: fn(Signal)) -> std::io::Result<()> {
    let cancel = token();
    // Set by the signal thread once it has taken a signal and may block
    // (reporting to a full pipe) or is about to exit: from then on any
    // signal exits from the handler itself.
    let armed = Arc::new(AtomicBool::new(false));
    for s in Signal::ALL {
        // Registered first, so it runs first: exits once armed.
        signal_hook::flag::register_conditional_shutdown(
            s.number(),
            128 + s.number(),
            Arc::clone(&armed),
        )?;
    }
    let mut signals = signal_hook::iterator::Signals::new(Signal::ALL.map(Signal::number))?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let arm = || armed.store(true, std::sync::atomic::Ordering::SeqCst);
            let mut arriving = signals.forever().filter_map(Signal::from_number);
            let Some(signal) = arriving.next() else {
                return;
            };
            let cooperative = COOPERATIVE.lock().unwrap_or_else(|e| e.into_inner());
            if let (true, Some(drain)) = (*cooperative, DRAIN.get()) {
                // A station: the first signal stops taking sticks, the
                // second aborts the running ones (reported as incomplete),
                // a third exits at once.
                drain.cancel_by(signal);
                drop(cooperative);
                let Some(second) = arriving.next() else {
                    return;
                };
                cancel.cancel_by(second);
                if let Some(third) = arriving.next() {
                    arm();
                    bootstick::write::remove_staged_files();
                    std::process::exit(128 + third.number());
                }
                return;
            }
            cancel.cancel_by(signal);
            if !*cooperative {
                // Held until the process exits: a command that tries to
                // start cooperating now waits here instead. Armed first:
                // if `report` blocks (a full pipe), a second signal exits
                // from the handler. No destructor runs on exit: remove
                // the temporary files of staged file targets here.
                arm();
                bootstick::write::remove_staged_files();
                report(signal);
                std::process::exit(128 + signal.number());
            }
            drop(cooperative);
            // The job winds down by itself and this thread is free, so the
            // second signal comes here (the handler is not armed): remove
            // the staged files (exit runs no destructor) and exit. Armed
            // first, so a third signal exits at once whatever this does.
            if let Some(second) = arriving.next() {
                arm();
                bootstick::write::remove_staged_files();
                std::process::exit(128 + second.number());
            }
        })?;
    Ok(())
}

/// A line on stderr that survives a closed terminal (after `SIGHUP`
/// writing fails; `eprintln!` would panic).
pub fn say(line: &str) {
    let mut err = std::io::stderr().lock();
    // Start on a fresh line when a progress bar may be drawn.
    let fresh = if err.is_terminal() { "\n" } else { "" };
    let _ = writeln!(err, "{fresh}{line}");
}
