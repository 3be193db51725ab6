//! Rendering library events for people (an indicatif bar on a terminal, plain
//! lines otherwise) or for programs (`--json`: one JSON object per line on
//! stdout; the schema is documented in `docs/cli.md`).

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Value};

use bootstick::events::{Event, Observer, Phase};

use super::exit::Failure;

/// At most one JSON progress line per phase this often.
const JSON_PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// Renders events the way the user asked.
pub enum Renderer {
    Human(Human),
    Json(Json),
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

    /// Announces the job (JSON `start` line; nothing for people, who typed it).
    pub fn start(&self, command: &str, fields: Value) {
        if let Renderer::Json(j) = self {
            let mut v = json!({ "event": "start", "command": command });
            merge(&mut v, fields);
            j.emit(v);
        }
    }

    /// Passes a command's outcome through, first reporting a failure as the
    /// `result` event (a success reports its own result, with its details;
    /// a failure already reported, as a multi-target job's is, is not
    /// reported again).
    pub fn failure(&self, result: Result<(), Failure>) -> Result<(), Failure> {
        if let Err(f) = &result {
            if !f.reported {
                self.result(Err((&f.error, f.exit as u8)));
            }
        }
        result
    }

    /// A renderer for one target of a job writing several: JSON lines carry
    /// `"target": label`; people get a bar of their own labelled with it
    /// (all bars of the job drawn together by one `MultiProgress`).
    pub fn for_target(&self, label: &str) -> Renderer {
        match self {
            Renderer::Json(j) => Renderer::Json(Json {
                created: j.created,
                state: Mutex::default(),
                target: Some(label.to_owned()),
            }),
            Renderer::Human(h) => Renderer::Human(h.for_target(label)),
        }
    }

    /// Reports one target's outcome in a job writing several: a JSON
    /// `target_result` line (`ok`, and the result fields or `error` and
    /// `exit_code`); for people the target's bar is cleared (the job's
    /// summary lists every target).
    pub fn target_result(&self, outcome: Result<Value, (&anyhow::Error, u8)>) {
        match self {
            Renderer::Json(j) => j.emit(outcome_line("target_result", outcome)),
            Renderer::Human(h) => h.bar.finish_and_clear(),
        }
    }

    /// The overall outcome of a job writing several targets: a JSON `result`
    /// line with `ok` and `fields`, or `summary` on stdout for people.
    pub fn overall(&self, ok: bool, fields: Value, summary: &str) {
        match self {
            Renderer::Json(j) => {
                let mut v = json!({ "event": "result", "ok": ok });
                merge(&mut v, fields);
                j.emit(v);
            }
            Renderer::Human(h) => {
                h.bar.finish_and_clear();
                println!("{summary}");
            }
        }
    }

    /// Reports the outcome: a JSON `result` line, or the human summary
    /// (`summary`, on stdout) / nothing on failure (main prints the error).
    pub fn result(&self, outcome: Result<(Value, String), (&anyhow::Error, u8)>) {
        match self {
            Renderer::Json(j) => j.emit(outcome_line("result", outcome.map(|(f, _)| f))),
            Renderer::Human(h) => {
                h.bar.finish_and_clear();
                if let Ok((_, summary)) = outcome {
                    println!("{summary}");
                }
            }
        }
    }
}

/// A `result`-style line: `ok: true` with `fields`, or `ok: false` with
/// `error` and `exit_code`.
fn outcome_line(event: &str, outcome: Result<Value, (&anyhow::Error, u8)>) -> Value {
    match outcome {
        Ok(fields) => {
            let mut v = json!({ "event": event, "ok": true });
            merge(&mut v, fields);
            v
        }
        Err((error, code)) => json!({
            "event": event,
            "ok": false,
            "error": format!("{error:#}"),
            "exit_code": code,
        }),
    }
}

fn merge(into: &mut Value, fields: Value) {
    if let (Value::Object(a), Value::Object(b)) = (into, fields) {
        a.extend(b);
    }
}

impl Observer for Renderer {
    fn event(&self, event: &Event) {
        match self {
            Renderer::Human(h) => h.event(event),
            Renderer::Json(j) => j.event(event),
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
}

impl Human {
    fn new() -> Human {
        let tty = std::io::stderr().is_terminal();
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr_with_hz(8));
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(8));
        if !tty {
            bar.set_draw_target(ProgressDrawTarget::hidden());
            multi.set_draw_target(ProgressDrawTarget::hidden());
        }
        Human {
            bar,
            started: Mutex::new(Instant::now()),
            multi,
            label: None,
        }
    }

    fn for_target(&self, label: &str) -> Human {
        // The job's own bar is not drawn once its targets have theirs.
        self.bar.set_draw_target(ProgressDrawTarget::hidden());
        // Until its first phase starts, the bar shows only its target.
        let bar = ProgressBar::hidden()
            .with_style(ProgressStyle::with_template("{msg}").expect("valid template"))
            .with_message(label.to_owned());
        Human {
            bar: self.multi.add(bar),
            started: Mutex::new(Instant::now()),
            multi: self.multi.clone(),
            label: Some(label.to_owned()),
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
                *self.started.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
                self.bar.reset();
                if total == 0 {
                    self.bar
                        .set_style(self.style("{prefix:>7.bold.cyan} {spinner} {elapsed}"));
                    self.bar.enable_steady_tick(Duration::from_millis(120));
                } else {
                    self.bar.disable_steady_tick();
                    self.bar.set_style(
                        self.style(
                            "{prefix:>7.bold.cyan} [{bar:32.green}] {bytes:>10}/{total_bytes:10} {binary_bytes_per_sec:>12}  ETA {eta}",
                        )
                        .progress_chars("=> "),
                    );
                }
                self.bar.set_length(total);
                self.bar.set_prefix(phase.name());
            }
            Event::Progress { done, .. } => self.bar.set_position(done),
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
                self.bar.set_length(0);
                self.bar.set_position(0);
                let line = self.labelled(line);
                self.bar.suspend(|| eprintln!("{line}"));
            }
            Event::Warning(ref w) => {
                let w = self.labelled(w.clone());
                self.bar.suspend(|| eprintln!("warning: {w}"))
            }
        }
    }
}

/// Newline-delimited JSON on stdout. Every line carries `t`, the seconds
/// since the command started.
pub struct Json {
    created: Instant,
    state: Mutex<JsonState>,
    /// Added to every line as `target`, in a job writing several targets.
    target: Option<String>,
}

#[derive(Default)]
struct JsonState {
    phase_start: Option<Instant>,
    last_progress: Option<Instant>,
    last_done: u64,
    last_total: u64,
    phase: Option<Phase>,
}

impl Json {
    fn new() -> Json {
        Json {
            created: Instant::now(),
            state: Mutex::default(),
            target: None,
        }
    }

    fn emit(&self, mut v: Value) {
        let t = (self.created.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
        merge(&mut v, json!({ "t": t }));
        if let Some(target) = &self.target {
            merge(&mut v, json!({ "target": target }));
        }
        let mut out = std::io::stdout().lock();
        // A closed pipe must not kill the job: the device write goes on.
        let _ = writeln!(out, "{v}");
        let _ = out.flush();
    }

    fn progress_line(phase: Phase, done: u64, total: u64, started: Option<Instant>) -> Value {
        let secs = started.map_or(0.0, |s| s.elapsed().as_secs_f64());
        let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
        json!({
            "event": "progress",
            "phase": phase.name(),
            "done": done,
            "total": total,
            "bytes_per_second": rate.round() as u64,
        })
    }

    fn event(&self, event: &Event) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match *event {
            Event::PhaseStarted { phase, total } => {
                st.phase = Some(phase);
                st.phase_start = Some(Instant::now());
                st.last_progress = None;
                st.last_done = 0;
                st.last_total = total;
                self.emit(json!({ "event": "phase", "phase": phase.name(), "total": total }));
            }
            Event::Progress { phase, done, total } => {
                let due = st
                    .last_progress
                    .is_none_or(|t| t.elapsed() >= JSON_PROGRESS_EVERY);
                st.last_done = done;
                st.last_total = total;
                if due {
                    st.last_progress = Some(Instant::now());
                    self.emit(Json::progress_line(phase, done, total, st.phase_start));
                }
            }
            Event::PhaseFinished { phase } => {
                let secs = st.phase_start.map_or(0.0, |s| s.elapsed().as_secs_f64());
                self.emit(json!({
                    "event": "phase_done",
                    "phase": phase.name(),
                    "bytes": st.last_done,
                    "seconds": (secs * 1000.0).round() / 1000.0,
                }));
                st.phase = None;
            }
            Event::Warning(ref message) => {
                self.emit(json!({ "event": "warning", "message": message }));
            }
        }
    }
}

/// `1.5 GiB`-style sizes.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
