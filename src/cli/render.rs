//! Rendering library events for people (an indicatif bar on a terminal, plain
//! lines otherwise) or for programs (`--json`: one JSON object per line on
//! stdout; the schema is documented in `docs/cli.md`).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use serde_json::Value;

use bootstick::cancel::Signal;
use bootstick::events::{Event, Observer, Phase};

use super::exit::{Exit, Failure};

/// At most one JSON progress line per phase this often.
const JSON_PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// Without a terminal (a pipe, a log, CI, systemd), one plain progress line
/// per phase this often, so a long write never looks frozen; overridden by
/// `BOOTSTICK_PROGRESS_INTERVAL` (seconds, docs/cli.md).
const PLAIN_PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// The interval of plain progress lines.
fn plain_progress_every() -> Duration {
    std::env::var("BOOTSTICK_PROGRESS_INTERVAL")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map_or(PLAIN_PROGRESS_EVERY, Duration::from_secs_f64)
}

/// The command this process runs, as its JSON lines and messages name it.
#[derive(Clone, Debug)]
pub struct Invocation {
    /// `write`, `verify`, …
    pub command: &'static str,
    /// `--json` was given.
    pub json: bool,
    /// The IMAGE argument, for the `start` line of a run that fails before
    /// the command wrote its own.
    pub image: Option<PathBuf>,
    /// The command has a target (`write`, `compare`): an interrupted run
    /// says what it left there (`target_state`).
    pub has_target: bool,
    /// What an interruption before any write leaves, for people ("nothing
    /// was written").
    pub untouched: &'static str,
}

static INVOCATION: OnceLock<Invocation> = OnceLock::new();

/// When the process started: every JSON line's `t` counts from here.
static CLOCK: OnceLock<Instant> = OnceLock::new();

/// The JSON lines printed so far. The contract (docs/cli.md): valid NDJSON
/// only, a `start` line first and exactly one `result` line, last. Lines
/// emitted before the first `start` (a source check's `phase`, `progress`
/// and `warning` lines, which run before the targets are known) are held
/// and printed right after it, keeping their `t`; nothing is printed after
/// the `result`.
struct Stream {
    started: bool,
    finished: bool,
    held: Vec<Value>,
}

static STREAM: Mutex<Stream> = Mutex::new(Stream {
    started: false,
    finished: false,
    held: Vec::new(),
});

/// Starts the clock of the JSON lines' `t`.
pub fn start_clock() {
    CLOCK.get_or_init(Instant::now);
}

/// Records what this process runs (after the command line is parsed).
pub fn begin(invocation: Invocation) {
    let _ = INVOCATION.set(invocation);
}

fn invocation() -> Option<&'static Invocation> {
    INVOCATION.get()
}

fn json_mode() -> bool {
    invocation().is_some_and(|i| i.json)
}

/// Seconds since [`start_clock`], to the millisecond.
fn now() -> f64 {
    let started = *CLOCK.get_or_init(Instant::now);
    (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0
}

/// Prints one line of the JSON stream (see [`Stream`]).
fn publish(mut v: Value) {
    if v.get("t").is_none() {
        insert(&mut v, "t", now());
    }
    let mut stream = STREAM.lock().unwrap_or_else(|e| e.into_inner());
    if stream.finished {
        return;
    }
    let event = v.get("event").and_then(Value::as_str).unwrap_or_default();
    let mut lines = Vec::new();
    match event {
        "start" => {
            lines.push(v);
            if !stream.started {
                stream.started = true;
                lines.append(&mut stream.held);
            }
        }
        "result" => {
            if !stream.started {
                stream.started = true;
                lines.push(minimal_start());
                lines.append(&mut stream.held);
            }
            stream.finished = true;
            lines.push(v);
        }
        _ if stream.started => lines.push(v),
        _ => stream.held.push(v),
    }
    let mut out = std::io::stdout().lock();
    for line in lines {
        // A closed pipe must not kill the job: the device write goes on.
        let _ = writeln!(out, "{line}");
    }
    let _ = out.flush();
}

/// The `start` line of a run that fails before its command announced
/// itself (a usage error, an unreadable image): the command and its image.
fn minimal_start() -> Value {
    let inv = invocation();
    MinimalStart {
        event: "start",
        command: inv.map(|i| i.command),
        image: inv.and_then(|i| i.image.as_deref()),
        t: now(),
    }
    .value()
}

/// The `start` line of a run that fails before its command announced
/// itself (docs/cli.md): `command` is `null` when none was recognised.
#[derive(Serialize)]
struct MinimalStart<'a> {
    event: &'static str,
    command: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<&'a std::path::Path>,
    t: f64,
}

/// A `result` line of a run that ends outside a command's own rendering:
/// a usage error, a signal before the command cooperates, a command that
/// reported nothing itself.
#[derive(Serialize)]
struct BareResult<'a> {
    event: &'static str,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_code: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    interrupted: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    signal: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target_state: Option<&'static str>,
}

impl BareResult<'_> {
    fn ok() -> Self {
        BareResult {
            event: "result",
            ok: true,
            error: None,
            exit_code: None,
            interrupted: None,
            signal: None,
            target_state: None,
        }
    }
}

/// Serialises a line of the JSON stream.
fn to_line(v: &impl Serialize) -> Value {
    serde_json::to_value(v).unwrap_or_default()
}

impl MinimalStart<'_> {
    fn value(&self) -> Value {
        to_line(self)
    }
}

/// The `result` line of a failure: `ok: false`, `error` (with its causes,
/// each once), `exit_code`, and the failure's own fields.
fn failure_line(event: &'static str, f: &Failure) -> Value {
    /// A failed `result` or `target_result` line (docs/cli.md).
    #[derive(Serialize)]
    struct FailureLine<'a> {
        event: &'static str,
        ok: bool,
        error: String,
        exit_code: u8,
        /// The failure's own fields (`interrupted`, `signal`,
        /// `target_state`; `verify`'s report).
        #[serde(flatten)]
        fields: &'a serde_json::Map<String, Value>,
    }
    serde_json::to_value(FailureLine {
        event,
        ok: false,
        error: chain(&f.error),
        exit_code: f.exit as u8,
        fields: &f.fields,
    })
    .unwrap_or_default()
}

/// An error with its causes, each printed once (`what: why: root cause`).
pub fn chain(error: &anyhow::Error) -> String {
    bootstick::join_causes(error.chain().map(|e| e.to_string()))
}

/// Ends the run: reports a failure (JSON `result`, unless the command did;
/// and the message on stderr), and gives the exit code.
pub fn finish(outcome: Result<(), Failure>) -> Exit {
    match outcome {
        Ok(()) => {
            if json_mode() {
                // Every command reports its own success; this keeps the
                // contract should one not.
                publish(to_line(&BareResult::ok()));
            }
            Exit::Ok
        }
        Err(f) => {
            if json_mode() && !f.reported {
                publish(failure_line("result", &f));
            }
            super::signals::say(&format!("bootstick: error: {}", chain(&f.error)));
            f.exit
        }
    }
}

/// A usage error (exit 2) found by clap: its text goes to stderr as clap
/// prints it; with `--json` on the command line, stdout gets a `start`
/// line (with the command, when one was recognised) and the `result`.
pub fn usage_error(command: Option<&'static str>, json: bool, message: &str) {
    if !json {
        return;
    }
    begin(Invocation {
        command: command.unwrap_or_default(),
        json: true,
        image: None,
        has_target: false,
        untouched: "",
    });
    publish(
        MinimalStart {
            event: "start",
            command,
            image: None,
            t: now(),
        }
        .value(),
    );
    publish(to_line(&BareResult {
        error: Some(message),
        exit_code: Some(Exit::Usage as u8),
        ok: false,
        ..BareResult::ok()
    }));
}

/// Reports a termination signal that arrived before the command polls its
/// cancellation token (`signals`): nothing was written. The process exits
/// right after.
pub fn interrupted(signal: Signal) {
    let inv = invocation();
    let untouched = inv.map_or("", |i| i.untouched);
    let message = if untouched.is_empty() {
        format!("interrupted by {}", signal.name())
    } else {
        format!("interrupted by {}; {untouched}", signal.name())
    };
    if json_mode() {
        publish(to_line(&BareResult {
            ok: false,
            error: Some(&message),
            exit_code: Some(Exit::for_signal(Some(signal)) as u8),
            interrupted: Some(true),
            signal: Some(signal.name()),
            target_state: inv
                .is_some_and(|i| i.has_target)
                .then(|| bootstick::cancel::TargetState::Untouched.name()),
            ..BareResult::ok()
        }));
    }
    super::signals::say(&format!("bootstick: {message}"));
}

/// Renders events the way the user asked.
pub enum Renderer {
    Human(Human),
    Json(Json),
    /// A command that prints its own report for people (`verify`,
    /// `inspect`, `ls`, `list`): no progress, no summary.
    Plain,
}

impl Renderer {
    /// A JSON-lines renderer with `json`, else a human one.
    pub fn new(json: bool) -> Renderer {
        if json {
            Renderer::Json(Json::new())
        } else {
            Renderer::Human(Human::new())
        }
    }

    /// A JSON-lines renderer with `json`, else one that shows nothing (the
    /// command prints its report itself).
    pub fn report(json: bool) -> Renderer {
        if json {
            Renderer::Json(Json::new())
        } else {
            Renderer::Plain
        }
    }

    /// Announces the job (JSON `start` line; nothing for people, who typed it).
    pub fn start(&self, command: &str, fields: &impl Serialize) {
        if let Renderer::Json(j) = self {
            #[derive(Serialize)]
            struct Start<'a, F> {
                event: &'static str,
                command: &'a str,
                #[serde(flatten)]
                fields: F,
            }
            j.emit(to_line(&Start {
                event: "start",
                command,
                fields,
            }));
        }
    }

    /// A JSON line of a command's own `event` with `fields` (an object;
    /// the station's `arrived`, `skipped`, …); nothing for people.
    pub fn line(&self, event: &'static str, fields: &impl Serialize) {
        if let Renderer::Json(j) = self {
            j.emit(to_line(&Tagged { event, fields }));
        }
    }

    /// A report command's success: the JSON `result` line with `ok: true`
    /// and the report's fields (`fields` is an object).
    pub fn document(&self, fields: &impl Serialize) {
        if let Renderer::Json(j) = self {
            j.emit(to_line(&Outcome::result(true, fields)));
        }
    }

    /// Passes a command's outcome through, first reporting a failure as the
    /// `result` event (a success reports its own result, with its details;
    /// a failure already reported, as a multi-target job's is, is not
    /// reported again).
    pub fn failure(&self, result: Result<(), Failure>) -> Result<(), Failure> {
        if let (Err(f), Renderer::Json(j)) = (&result, self) {
            if !f.reported {
                j.emit(failure_line("result", f));
            }
        }
        result
    }

    /// A renderer for one target of a job writing several: JSON lines carry
    /// `"target": label`; people get a bar of their own labelled with it
    /// (all bars of the job drawn together by one `MultiProgress`), the
    /// label padded to `width` columns so every bar of the job starts in
    /// the same column (pass the longest label's width).
    pub fn for_target(&self, label: &str, width: usize) -> Renderer {
        match self {
            Renderer::Json(_) => Renderer::Json(Json {
                state: Mutex::default(),
                target: Some(label.to_owned()),
            }),
            Renderer::Human(h) => Renderer::Human(h.for_target(label, width)),
            Renderer::Plain => Renderer::Plain,
        }
    }

    /// Clears a bar still drawn, before the command prints its own summary.
    pub fn finish(&self) {
        if let Renderer::Human(h) = self {
            h.bar.finish_and_clear();
        }
    }

    /// Reports one target's outcome in a job writing several: a JSON
    /// `target_result` line (`ok`, and the result fields or `error`,
    /// `exit_code` and the failure's fields); for people the target's bar
    /// is cleared (the job's summary lists every target).
    pub fn target_result(&self, outcome: Result<&impl Serialize, &Failure>) {
        match self {
            Renderer::Json(j) => j.emit(match outcome {
                Ok(fields) => to_line(&Outcome {
                    event: "target_result",
                    ok: true,
                    fields,
                }),
                Err(f) => failure_line("target_result", f),
            }),
            Renderer::Human(h) => h.bar.finish_and_clear(),
            Renderer::Plain => {}
        }
    }

    /// The overall outcome of a job writing several targets: a JSON `result`
    /// line with `ok` and `fields`, or `summary` on stdout for people.
    pub fn overall(&self, ok: bool, fields: &impl Serialize, summary: &str) {
        match self {
            Renderer::Json(j) => j.emit(to_line(&Outcome::result(ok, fields))),
            Renderer::Human(h) => {
                h.bar.finish_and_clear();
                println!("{}", for_stdout(summary));
            }
            Renderer::Plain => println!("{summary}"),
        }
    }

    /// Reports the outcome: a JSON `result` line, or the human summary
    /// (`summary`, on stdout) / nothing on failure (main prints the error).
    pub fn result<F: Serialize>(&self, outcome: Result<(&F, String), &Failure>) {
        match self {
            Renderer::Json(j) => j.emit(match outcome {
                Ok((fields, _)) => to_line(&Outcome::result(true, fields)),
                Err(f) => failure_line("result", f),
            }),
            Renderer::Human(h) => {
                h.bar.finish_and_clear();
                if let Ok((_, summary)) = outcome {
                    println!("{}", for_stdout(&summary));
                }
            }
            Renderer::Plain => {
                if let Ok((_, summary)) = outcome {
                    println!("{summary}");
                }
            }
        }
    }
}

/// The `start` fields of a command that reads one image (`inspect`,
/// `verify`).
#[derive(Serialize)]
pub struct ImageStart<'a> {
    pub image: &'a std::path::Path,
}

/// A line of a command's own `event` with its fields beside it.
#[derive(Serialize)]
struct Tagged<'a, F> {
    event: &'a str,
    #[serde(flatten)]
    fields: F,
}

/// A `result` or `target_result` line: `ok` and the outcome's fields.
#[derive(Serialize)]
struct Outcome<F> {
    event: &'static str,
    ok: bool,
    #[serde(flatten)]
    fields: F,
}

impl<F> Outcome<F> {
    fn result(ok: bool, fields: F) -> Self {
        Outcome {
            event: "result",
            ok,
            fields,
        }
    }
}

/// Adds `key` to the line `v` (an object), as the envelope does for `t`
/// and a multi-target job's `target`.
fn insert(v: &mut Value, key: &str, value: impl Into<Value>) {
    if let Value::Object(m) = v {
        m.insert(key.to_owned(), value.into());
    }
}

impl Observer for Renderer {
    fn event(&self, event: &Event) {
        match self {
            Renderer::Human(h) => h.event(event),
            Renderer::Json(j) => j.event(event),
            Renderer::Plain => {}
        }
    }
}

/// A progress bar on a terminal; plain phase lines on stderr otherwise.
pub struct Human {
    bar: ProgressBar,
    started: Mutex<Instant>,
    /// Draws the bars of a job's targets together; a single-target job
    /// uses `bar` alone and never draws through it.
    multi: MultiProgress,
    /// The target this bar belongs to, in a job writing several.
    label: Option<String>,
    /// No terminal: plain progress lines every `every` instead of a bar.
    plain: Option<Plain>,
    /// stderr is a terminal: bars are drawn.
    tty: bool,
}

/// Plain progress lines' state.
struct Plain {
    every: Duration,
    throttle: Mutex<Throttle>,
}

impl Plain {
    fn new() -> Plain {
        Plain {
            every: plain_progress_every(),
            throttle: Mutex::new(Throttle::default()),
        }
    }
}

impl Human {
    fn new() -> Human {
        let tty = std::io::stderr().is_terminal();
        // Drawn only while a phase runs (`shown`): an idle bar would be
        // drawn in indicatif's default style, a stray full-width bar above
        // a warning or the confirmation.
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::hidden());
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(8));
        if !tty {
            multi.set_draw_target(ProgressDrawTarget::hidden());
        }
        Human {
            bar,
            started: Mutex::new(Instant::now()),
            multi,
            label: None,
            plain: (!tty).then(Plain::new),
            tty,
        }
    }

    fn for_target(&self, label: &str, width: usize) -> Human {
        // The job's own bar is not drawn once its targets have theirs (and
        // is wiped if a phase before the targets' drew it).
        self.bar.finish_and_clear();
        self.bar.set_draw_target(ProgressDrawTarget::hidden());
        // Until its first phase starts, the bar shows only its target.
        let bar = ProgressBar::hidden()
            .with_style(ProgressStyle::with_template("{msg}").expect("valid template"))
            .with_message(bar_label(label, width));
        Human {
            bar: self.multi.add(bar),
            started: Mutex::new(Instant::now()),
            multi: self.multi.clone(),
            label: Some(label.to_owned()),
            plain: self.plain.as_ref().map(|_| Plain::new()),
            tty: self.tty,
        }
    }

    /// `template` with the target's label in front, in a multi-target job.
    fn style(&self, template: &str) -> ProgressStyle {
        let template = match self.label {
            Some(_) => format!("{{msg}} {template}"),
            None => template.to_owned(),
        };
        ProgressStyle::with_template(&template).expect("valid template")
    }

    /// The byte bar's template, fitted to the terminal's width less this
    /// target's label ([`bar_template`]).
    fn bytes_template(&self) -> String {
        let label = self.bar.message().chars().count();
        let used = if self.label.is_some() { label + 1 } else { 0 };
        bar_template(stderr_columns().saturating_sub(used))
    }

    /// `line` after the target's label, in a multi-target job.
    fn labelled(&self, line: String) -> String {
        match &self.label {
            Some(l) => format!("{l}: {line}"),
            None => line,
        }
    }

    fn event(&self, event: &Event) {
        match *event {
            Event::PhaseStarted { phase, total } => {
                let now = Instant::now();
                *self.started.lock().unwrap_or_else(|e| e.into_inner()) = now;
                if let Some(plain) = &self.plain {
                    // The phase line is this phase's first line: the next
                    // is due one interval later.
                    plain
                        .throttle
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .start(now);
                    let line = match total {
                        0 => format!("{:>7}: started", phase.name()),
                        t => format!("{:>7}: started, {}", phase.name(), human_bytes(t)),
                    };
                    eprintln!("{}", self.labelled(line));
                }
                // Styled before it is reset: reset() draws.
                if total == 0 {
                    self.bar
                        .set_style(self.style("{prefix:>7.bold.cyan} {spinner} {elapsed}"));
                } else {
                    self.bar.disable_steady_tick();
                    self.bar.set_style(
                        self.style(&self.bytes_template())
                            .progress_chars("=> ")
                            .with_key("eta_clock", eta_clock),
                    );
                }
                self.bar.set_length(total);
                self.bar.set_prefix(phase.name());
                if self.tty && self.label.is_none() {
                    self.bar
                        .set_draw_target(ProgressDrawTarget::stderr_with_hz(8));
                }
                self.bar.reset();
                if total == 0 {
                    self.bar.enable_steady_tick(Duration::from_millis(120));
                }
            }
            Event::Progress { phase, done, total } => {
                self.bar.set_position(done);
                if let Some(plain) = &self.plain {
                    let now = Instant::now();
                    let due = plain
                        .throttle
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .due(now, plain.every);
                    if due {
                        let started = *self.started.lock().unwrap_or_else(|e| e.into_inner());
                        let secs = now.saturating_duration_since(started).as_secs_f64();
                        let line = progress_line(phase, done, total, secs);
                        eprintln!("{}", self.labelled(line));
                    }
                }
            }
            Event::PhaseFinished { phase } => {
                let secs = self
                    .started
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .elapsed()
                    .as_secs_f64();
                let total = self.bar.length().unwrap_or(0);
                let line = if total > 0 {
                    format!(
                        "{:>7}: {} in {secs:.1} s ({}/s)",
                        phase.name(),
                        human_bytes(total),
                        human_bytes((total as f64 / secs.max(1e-6)) as u64)
                    )
                } else {
                    format!("{:>7}: done in {secs:.1} s", phase.name())
                };
                self.bar.disable_steady_tick();
                let line = self.labelled(line);
                if self.label.is_some() {
                    // Until the next phase: what this target finished
                    // (beside the bars of targets still at it), not an
                    // empty bar.
                    self.bar.set_style(self.style("{prefix:>7.bold.cyan} done"));
                    self.bar.set_length(0);
                    self.bar.set_position(0);
                    self.bar.suspend(|| eprintln!("{line}"));
                } else {
                    // Not drawn again until the next phase.
                    self.bar.finish_and_clear();
                    self.bar.set_draw_target(ProgressDrawTarget::hidden());
                    eprintln!("{line}");
                }
            }
            Event::Warning(ref w) => {
                let mut w = format!("warning: {}", self.labelled(w.clone()));
                if self.tty {
                    w = fit(&w, stderr_columns(), "         ");
                }
                self.bar.suspend(|| eprintln!("{w}"))
            }
        }
    }
}

/// `text` wrapped at word boundaries to `columns` (less one: a line that
/// fills the last column wraps on some terminals), continuation lines
/// after `indent`, so a long warning or summary does not break mid-word.
fn fit(text: &str, columns: usize, indent: &str) -> String {
    let options = textwrap::Options::new(columns.saturating_sub(1).max(20))
        .subsequent_indent(indent)
        .break_words(false);
    text.lines()
        .map(|l| textwrap::fill(l, &options))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A summary for stdout: fitted to the terminal when stdout is one
/// (a pipe gets it on one line, for scripts).
fn for_stdout(summary: &str) -> String {
    if std::io::stdout().is_terminal() {
        fit(summary, super::disks::width(), "")
    } else {
        summary.to_owned()
    }
}

/// A message for stderr (a question, a notice): fitted to the terminal
/// when stderr is one.
pub fn for_stderr(text: &str) -> String {
    if std::io::stderr().is_terminal() {
        fit(text, stderr_columns(), "")
    } else {
        text.to_owned()
    }
}

/// The bar's `{eta_clock}`: when the phase has more than a minute left,
/// the local time it should end, ` (14:03)`; nothing before that.
fn eta_clock(state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write) {
    let left = state.eta();
    if left < Duration::from_secs(60) {
        return;
    }
    let at = std::time::SystemTime::now() + left;
    if let Some((h, m)) = local_hour_minute(at) {
        let _ = write!(w, " ({h:02}:{m:02})");
    }
}

/// The local wall-clock hour and minute of `at` (`localtime_r`, so the
/// machine's time zone, as `date` shows it).
fn local_hour_minute(at: std::time::SystemTime) -> Option<(i32, i32)> {
    let secs = at.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    let t = libc::time_t::try_from(secs).ok()?;
    // SAFETY: localtime_r writes only into `tm`, which we own; a zeroed
    // `libc::tm` is a valid value of that plain C struct.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    extern "C" {
        // POSIX; the libc crate does not declare it.
        fn tzset();
    }
    // SAFETY: tzset takes no arguments; it (re)reads TZ, which
    // localtime_r alone need not do.
    unsafe { tzset() };
    let ok = unsafe { !libc::localtime_r(&t, &mut tm).is_null() };
    ok.then_some((tm.tm_hour, tm.tm_min))
}

/// The widest a target's label is drawn in front of its bar; a longer one
/// (a `/dev/disk/by-id/…` path) keeps its end, where names differ.
const LABEL_MAX: usize = 24;

/// `label` padded (or shortened from the front, with `…`) to `width`
/// columns, at most [`LABEL_MAX`].
fn bar_label(label: &str, width: usize) -> String {
    let width = width.clamp(1, LABEL_MAX);
    let chars: Vec<char> = label.chars().collect();
    if chars.len() <= width {
        return format!("{label:<width$}");
    }
    let tail: String = chars[chars.len() - (width - 1)..].iter().collect();
    format!("…{tail}")
}

/// The columns stderr's terminal has (bars are drawn only on one), else
/// `$COLUMNS`, else 80.
fn stderr_columns() -> usize {
    let stderr = std::io::stderr();
    if let Ok(ws) = rustix::termios::tcgetwinsize(&stderr) {
        if ws.ws_col > 0 {
            return ws.ws_col.into();
        }
    }
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(80)
}

/// A byte phase's bar template that fits `columns` (one column is kept
/// free: a line that fills the last column wraps on some terminals).
/// The bar takes what the fields leave, 10 to 50 columns; below that the
/// sizes and speed give way to a percentage.
fn bar_template(columns: usize) -> String {
    // "  write [" "] " "1.00 GiB/ 2.00 GiB" " " "  12.3 MiB/s" "  ETA 12m"
    // " (14:03)"
    const FIELDS: usize = 7 + 2 + 2 + 21 + 1 + 12 + 6 + 3 + 8;
    let room = columns.saturating_sub(1);
    match room.checked_sub(FIELDS) {
        Some(bar) if bar >= 10 => format!(
            "{{prefix:>7.bold.cyan}} [{{bar:{}.green}}] {{bytes:>10}}/{{total_bytes:10}} {{binary_bytes_per_sec:>12}}  ETA {{eta}}{{eta_clock}}",
            bar.min(50)
        ),
        // "  write [" "] " "100%" "  ETA 12m" " (14:03)"
        _ => format!(
            "{{prefix:>7.bold.cyan}} [{{bar:{}.green}}] {{percent:>3}}%  ETA {{eta}}{{eta_clock}}",
            room.saturating_sub(7 + 2 + 2 + 4 + 6 + 3 + 8).clamp(4, 50)
        ),
    }
}

/// Newline-delimited JSON on stdout. Every line carries `t`, the seconds
/// since the command started.
pub struct Json {
    state: Mutex<JsonState>,
    /// Added to every line as `target`, in a job writing several targets.
    target: Option<String>,
}

#[derive(Default)]
struct JsonState {
    phase_start: Option<Instant>,
    progress: Throttle,
    last_done: u64,
}

/// Lets a progress line through at most once per `every`: the first one of
/// a phase at once, then only when `every` has passed since the last one
/// let through. The clock is the caller's (`now`), so the rule is tested
/// with made-up instants instead of by timing a real write.
#[derive(Default)]
struct Throttle {
    last: Option<Instant>,
}

impl Throttle {
    fn due(&mut self, now: Instant, every: Duration) -> bool {
        let due = self
            .last
            .is_none_or(|t| now.saturating_duration_since(t) >= every);
        if due {
            self.last = Some(now);
        }
        due
    }

    /// A new phase: its first line is due at once.
    fn reset(&mut self) {
        self.last = None;
    }

    /// A new phase whose first line was just printed (at `now`).
    fn start(&mut self, now: Instant) {
        self.last = Some(now);
    }
}

/// A plain progress line: `  write: 412.0 MiB of 1.0 GiB (40%), 31.2 MiB/s,
/// ETA 20 s`; the speed is the average since the phase began, the ETA what
/// is left at that speed.
fn progress_line(phase: Phase, done: u64, total: u64, secs: f64) -> String {
    let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
    let mut line = format!("{:>7}: {}", phase.name(), human_bytes(done));
    if total > 0 {
        let pct = (done as f64 * 100.0 / total as f64).floor().min(100.0);
        line += &format!(" of {} ({pct:.0}%)", human_bytes(total));
    }
    line += &format!(", {}/s", human_bytes(rate as u64));
    if total > done && rate > 0.0 {
        line += &format!(", ETA {}", duration((total - done) as f64 / rate));
    }
    line
}

/// `45 s`, `3 min 05 s`, `1 h 02 min`.
fn duration(secs: f64) -> String {
    let s = secs.ceil() as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {:02} s", s / 60, s % 60),
        _ => format!("{} h {:02} min", s / 3600, s % 3600 / 60),
    }
}

/// The progress lines of the JSON stream, one variant per `event` (the
/// table in docs/cli.md, checked against real output by `tests/it/contract.rs`).
/// `t`, and `target` in a multi-target job, are added to each.
#[derive(Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum Line<'a> {
    /// A phase begins; `total` bytes (0 when not byte-counted, as `sync`).
    Phase { phase: &'static str, total: u64 },
    /// At most every [`JSON_PROGRESS_EVERY`] per phase.
    Progress {
        phase: &'static str,
        done: u64,
        total: u64,
        /// The average since the phase began.
        bytes_per_second: u64,
    },
    /// A phase ended successfully.
    PhaseDone {
        phase: &'static str,
        bytes: u64,
        seconds: f64,
    },
    /// Worth knowing, does not stop the job.
    Warning { message: &'a str },
}

impl Line<'_> {
    fn value(&self) -> Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

impl Json {
    fn new() -> Json {
        Json {
            state: Mutex::default(),
            target: None,
        }
    }

    fn emit(&self, mut v: Value) {
        insert(&mut v, "t", now());
        if let Some(target) = &self.target {
            insert(&mut v, "target", target.as_str());
        }
        publish(v);
    }

    fn progress_line(phase: Phase, done: u64, total: u64, started: Option<Instant>) -> Value {
        let secs = started.map_or(0.0, |s| s.elapsed().as_secs_f64());
        let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
        Line::Progress {
            phase: phase.name(),
            done,
            total,
            bytes_per_second: rate.round() as u64,
        }
        .value()
    }

    fn event(&self, event: &Event) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match *event {
            Event::PhaseStarted { phase, total } => {
                st.phase_start = Some(Instant::now());
                st.progress.reset();
                st.last_done = 0;
                self.emit(
                    Line::Phase {
                        phase: phase.name(),
                        total,
                    }
                    .value(),
                );
            }
            Event::Progress { phase, done, total } => {
                st.last_done = done;
                if st.progress.due(Instant::now(), JSON_PROGRESS_EVERY) {
                    self.emit(Json::progress_line(phase, done, total, st.phase_start));
                }
            }
            Event::PhaseFinished { phase } => {
                let secs = st.phase_start.map_or(0.0, |s| s.elapsed().as_secs_f64());
                self.emit(
                    Line::PhaseDone {
                        phase: phase.name(),
                        bytes: st.last_done,
                        seconds: (secs * 1000.0).round() / 1000.0,
                    }
                    .value(),
                );
            }
            Event::Warning(ref message) => {
                self.emit(Line::Warning { message }.value());
            }
        }
    }
}

/// `1.5 GiB`-style sizes: binary units, one decimal (`bytesize`'s IEC
/// display), bytes below 1 KiB as `123 B`.
pub fn human_bytes(n: u64) -> String {
    bytesize::ByteSize::b(n).display().iec().to_string()
}

/// One line describing a layout, for people.
pub fn layout_line(l: &bootstick::layout::from_iso::Layout) -> String {
    format!(
        "{} + FAT32 \"{}\", {} files in {} directories{}{}",
        bootstick::job::table_name(l.table).to_uppercase(),
        l.label,
        l.files,
        l.dirs,
        if l.added_loaders.is_empty() {
            String::new()
        } else {
            format!(
                "; EFI loader {} from the El Torito image{}{}",
                l.added_loaders
                    .iter()
                    .map(|a| a.path.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                match l.added_files.len() - l.added_loaders.len() {
                    0 => String::new(),
                    n => format!(" with {n} more files from it"),
                },
                match l.el_torito_conflicts.len() {
                    0 => String::new(),
                    n => format!(
                        " ({n} of its paths were on the stick already and kept: {})",
                        l.el_torito_conflicts
                            .iter()
                            .map(|c| c.path.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                }
            )
        },
        if l.wim_parts.is_empty() {
            String::new()
        } else {
            format!(
                "; sources/install.wim split into {} .swm parts",
                l.wim_parts.len()
            )
        }
    )
}

/// What of a zip archive was written and what ignored, for a summary
/// (empty for other images).
pub fn zip_member_line(c: &bootstick::image::compressed::Compressed) -> String {
    let Some(m) = c.zip_member() else {
        return String::new();
    };
    let ignored: Vec<&str> = m.ignored().iter().map(|e| e.name.as_str()).collect();
    format!(
        ", entry {}{}",
        m.chosen().name,
        if ignored.is_empty() {
            String::new()
        } else {
            format!(" (ignored: {})", ignored.join(", "))
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ETA's wall-clock time is the local time `date` shows for the
    /// same instant (the machine's time zone, through `TZ` too).
    #[test]
    fn the_eta_clock_is_local_time_as_date_shows_it() {
        let at = std::time::UNIX_EPOCH + Duration::from_secs(1_765_000_000);
        for tz in ["UTC", "America/New_York", "Asia/Kolkata"] {
            std::env::set_var("TZ", tz);
            let (h, m) = local_hour_minute(at).unwrap();
            let out = std::process::Command::new("date")
                .args(["-d", "@1765000000", "+%H:%M"])
                .env("TZ", tz)
                .output()
                .unwrap();
            let date = String::from_utf8(out.stdout).unwrap();
            assert_eq!(format!("{h:02}:{m:02}"), date.trim(), "TZ={tz}");
        }
        std::env::remove_var("TZ");
    }

    /// A byte bar's fixed fields plus its bar leave the last column free
    /// at every width from 40 to 250 columns.
    #[test]
    fn the_bar_template_leaves_the_last_column_free() {
        for columns in 40..=250usize {
            let t = bar_template(columns);
            let bar: usize = t
                .split("{bar:")
                .nth(1)
                .and_then(|r| r.split('.').next())
                .and_then(|n| n.parse().ok())
                .unwrap();
            let fields = if t.contains("{bytes") { 54 + 8 } else { 24 + 8 };
            assert!(bar + fields < columns, "{columns}: {t}");
        }
    }

    /// The JSON progress throttle, on an injected clock: the first line of
    /// a phase passes, lines closer than the interval are held back, one
    /// at exactly the interval passes, and a new phase starts over. (This
    /// used to be checked by timing a real write and comparing rounded
    /// float seconds, which a loaded machine could make flaky.)
    #[test]
    fn sizes_are_binary_with_one_decimal() {
        for (n, text) in [
            (0, "0 B"),
            (1023, "1023 B"),
            (1024, "1.0 KiB"),
            (5 * 1024 * 1024 + 123, "5.0 MiB"),
            (1536 << 20, "1.5 GiB"),
            (1000 << 30, "1000.0 GiB"),
        ] {
            assert_eq!(human_bytes(n), text, "{n}");
        }
    }

    #[test]
    fn plain_progress_lines_say_bytes_share_speed_and_eta() {
        let mib = 1 << 20;
        assert_eq!(
            progress_line(Phase::Write, 412 * mib, 1024 * mib, 10.0),
            "  write: 412.0 MiB of 1.0 GiB (40%), 41.2 MiB/s, ETA 15 s"
        );
        // Done: no ETA. Not byte-counted (a pipe without --size): no share.
        assert_eq!(
            progress_line(Phase::Verify, 8 * mib, 8 * mib, 2.0),
            " verify: 8.0 MiB of 8.0 MiB (100%), 4.0 MiB/s"
        );
        assert_eq!(
            progress_line(Phase::Write, 60 * mib, 0, 2.0),
            "  write: 60.0 MiB, 30.0 MiB/s"
        );
        assert_eq!(duration(0.2), "1 s");
        assert_eq!(duration(185.0), "3 min 05 s");
        assert_eq!(duration(3725.0), "1 h 02 min");
    }

    /// A phase's first plain line is the phase line; progress lines follow
    /// one interval apart.
    #[test]
    fn a_started_phase_holds_its_first_progress_line_for_one_interval() {
        let every = Duration::from_secs(5);
        let t0 = Instant::now();
        let mut th = Throttle::default();
        th.start(t0);
        assert!(!th.due(t0 + Duration::from_millis(4999), every));
        assert!(th.due(t0 + every, every));
    }

    #[test]
    fn progress_lines_are_throttled_per_phase() {
        let every = Duration::from_millis(250);
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut th = Throttle::default();
        assert!(th.due(at(0), every));
        assert!(!th.due(at(1), every));
        assert!(!th.due(at(249), every));
        assert!(th.due(at(250), every));
        assert!(!th.due(at(499), every));
        assert!(th.due(at(900), every));
        // Held-back lines do not move the clock: 250 ms after 900 passes.
        assert!(!th.due(at(1000), every));
        assert!(th.due(at(1150), every));
        th.reset();
        assert!(th.due(at(1151), every));
        // A clock that goes backwards never lets a burst through.
        assert!(!th.due(at(1100), every));
    }
}
