//! `bootstick station IMAGE`: write every stick plugged in (a lab's
//! duplicator). Parses the rules, asks once, renders the station's events;
//! the watching, the rules and the writing are `bootstick::station`'s
//! (docs/station.md).

use std::collections::HashMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::advice;
use super::exit::{self, Exit, Failure, Left};
use super::mode::choice;
use super::render::{human_bytes, Renderer};
use bootstick::devices::{Disk, Roots};
use bootstick::events::{Event as JobEvent, Observer};
use bootstick::job;
use bootstick::station::log::{Log, Outcome};
use bootstick::station::rules::{self, Match, Rules};
use bootstick::station::{self, Config, Event, Station, Summary, Watching};
use bootstick::trust::Outcome as TrustOutcome;

/// Write every stick plugged in: a lab's duplicator.
///
/// Watches for disks that arrive (kernel uevents, and a sysfs rescan every
/// 1.5 s), and writes and verifies IMAGE onto each one the rules allow,
/// without asking again after the one confirmation up front. Only
/// removable or USB whole disks that pass every rule of `write` are
/// taken, and by default only when they hold nothing but ISO 9660, UDF,
/// FAT or exFAT and are at most --max-size: a backup drive plugged in by
/// mistake is skipped and logged, never written. Disks attached when the
/// station starts are ignored. Ctrl-C stops taking sticks and lets the
/// running ones finish; a second Ctrl-C aborts them.
///
/// Examples:
///   bootstick station debian.iso --log lab.ndjson
///   bootstick station image.iso --port 'pci-0000:00:14.0-usb-0:1.*' --log lab.ndjson --yes
///   bootstick station image.iso --match vendor=SanDisk,min-size=8G --count 20 --eject
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The image to write.
    pub image: PathBuf,
    /// Take only sticks on these ports: a glob over the stick's
    /// /dev/disk/by-path link (its name, or its whole path), e.g.
    /// 'pci-0000:00:14.0-usb-0:1.*' for every port of one hub. Repeatable.
    #[arg(long = "port", value_name = "PATTERN")]
    pub ports: Vec<String>,
    /// Take only sticks matching every field given:
    /// vendor=GLOB,model=GLOB,min-size=SIZE,max-size=SIZE (globs are
    /// case-insensitive; sizes as 8G, 16GB, 512MiB, or bytes).
    #[arg(long = "match", value_name = "SPEC", value_parser = parse_match)]
    pub matches: Vec<Match>,
    /// Skip disks larger than this (content guard): backup drives are
    /// larger than sticks.
    #[arg(long, value_name = "SIZE", default_value = "256G", value_parser = parse_size)]
    pub max_size: u64,
    /// Lift the content guard (file systems, LVM/LUKS/RAID signatures,
    /// --max-size). Never lifts the safety rules of `write`.
    #[arg(long)]
    pub take_any: bool,
    /// Also consider the disks attached when the station starts.
    #[arg(long)]
    pub include_present: bool,
    /// Write a stick again that this station already wrote (same serial
    /// and size), when it is plugged in again.
    #[arg(long)]
    pub rewrite: bool,
    /// Stop after this many sticks were written and verified.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Detach each stick once written and verified, so it can be pulled.
    #[arg(long)]
    pub eject: bool,
    /// Do not listen for kernel uevents: rescan sysfs only (as in
    /// containers, where no uevents arrive).
    #[arg(long)]
    pub poll: bool,
    /// Append one JSON record per stick to FILE (flushed per record).
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// Do not ask before starting: for unattended use.
    #[arg(short, long)]
    pub yes: bool,
    /// Print newline-delimited JSON events on stdout (docs/cli.md).
    #[arg(long)]
    pub json: bool,
    /// Copy the image byte for byte even when it needs a built layout.
    #[arg(long)]
    pub raw: bool,
    /// Build a FAT32 layout even of a hybrid ISO (as `write --layout`).
    #[arg(long, conflicts_with = "raw")]
    pub layout: bool,
    /// Partition table of a built layout.
    #[arg(long, value_enum, default_value = "gpt")]
    pub table: super::mode::TableArg,
    /// Check the image before starting, and refuse when the check fails or
    /// finds nothing to check against.
    #[arg(long)]
    pub verify_source: bool,
    /// Refuse an image no trusted signature covers.
    #[arg(long)]
    pub require_signature: bool,
    #[command(flatten)]
    pub references: super::references::References,
    /// Tests only: loop devices whose backing file is in DIR count as USB
    /// sticks (real sticks cannot be plugged in on demand).
    #[arg(long, hide = true, value_name = "DIR")]
    pub loop_backing_dir: Option<PathBuf>,
}

fn parse_match(s: &str) -> Result<Match, String> {
    Match::parse(s).map_err(|e| e.to_string())
}

fn parse_size(s: &str) -> Result<u64, String> {
    rules::parse_size(s).map_err(|e| e.to_string())
}

pub fn run(args: Args) -> Result<(), Failure> {
    let render = Renderer::new(args.json);
    render.failure(run_inner(&args, &render))
}

fn run_inner(args: &Args, render: &Renderer) -> Result<(), Failure> {
    let image = job::Image::open(&args.image).map_err(advice::failure)?;
    let req = super::references::request(args.image.clone(), &args.references)?;
    let policy = job::CheckPolicy {
        required: args.verify_source,
        require_signature: args.require_signature,
    };
    let checked = image
        .check_source(&req, policy, render)
        .map_err(advice::failure)?;
    if let Some(r) = checked
        .as_ref()
        .filter(|r| r.outcome == TrustOutcome::ChecksumOnly)
    {
        render.event(&JobEvent::Warning(format!(
            "source check: {}",
            super::references::failure_message(r)
        )));
    }
    let job = image
        .decide(checked, choice(args.raw, args.layout, args.table))
        .map_err(advice::failure)?;
    let rules = Rules {
        ports: args.ports.clone(),
        matches: args
            .matches
            .iter()
            .cloned()
            .fold(Match::default(), Match::and),
        max_size: args.max_size,
        take_any: args.take_any,
        loop_backing_dir: args
            .loop_backing_dir
            .as_ref()
            .map(|d| std::fs::canonicalize(d).unwrap_or_else(|_| d.clone())),
    };
    let log = match &args.log {
        Some(p) => Some(Log::open(p).map_err(|e| Failure::new(Exit::BadInput, e))?),
        None => None,
    };
    let mut config = Config::new(Roots::live(), rules);
    config.include_present = args.include_present;
    config.rewrite = args.rewrite;
    config.count = args.count;
    config.poll = args.poll;
    config.run.eject = args.device_eject();
    config.log = log;
    let station = Station::new(&job, config)?;
    let present = station.present();
    render.start(
        "station",
        &StationStart {
            image: &args.image,
            image_bytes: job.image_len(),
            needed_bytes: job.needed(),
            mode: mode_name(&job),
            rules: RulesLine::new(station.rules(), args),
            watching: station.watching(),
            present: present
                .iter()
                .map(|p| PresentLine {
                    disk: &p.disk,
                    ignored: !args.include_present,
                    take: p.decision.is_ok(),
                    skip: p.decision.as_ref().err(),
                })
                .collect(),
        },
    );
    if !args.json {
        eprint!(
            "{}",
            plan_text(&job, station.rules(), args, &station, &present)
        );
    }
    confirm(args.yes)?;
    // From here a first signal stops taking sticks, a second aborts the
    // running ones (cli::signals::drain).
    let stop = super::signals::drain();
    let abort = super::signals::token();
    let station = station.stopping_with(stop, abort.clone());
    let view = View {
        render,
        bars: Mutex::new(HashMap::new()),
        bell: std::io::stderr().is_terminal() && !args.json,
    };
    let summary = station.run(&view)?;
    finish(&summary, render, abort.signal())
}

impl Args {
    fn device_eject(&self) -> bool {
        self.eject
    }
}

fn mode_name(job: &job::Job) -> &'static str {
    match job.decided().method {
        job::Method::Raw => "raw",
        job::Method::Layout { .. } => "layout",
    }
}

/// The `start` line's `rules`: what the station takes (docs/cli.md).
#[derive(Serialize)]
struct RulesLine<'a> {
    ports: &'a [String],
    #[serde(rename = "match")]
    matches: &'a Match,
    max_size: u64,
    take_any: bool,
    include_present: bool,
    rewrite: bool,
    count: Option<u64>,
    eject: bool,
}

impl<'a> RulesLine<'a> {
    fn new(r: &'a Rules, args: &Args) -> Self {
        RulesLine {
            ports: &r.ports,
            matches: &r.matches,
            max_size: r.max_size,
            take_any: r.take_any,
            include_present: args.include_present,
            rewrite: args.rewrite,
            count: args.count,
            eject: args.eject,
        }
    }
}

fn disk_line(d: &Disk) -> String {
    let what: Vec<String> = [d.vendor.clone(), d.model.clone()]
        .into_iter()
        .flatten()
        .collect();
    let mut s = format!(
        "{} ({}, {}",
        d.path.display(),
        if what.is_empty() {
            "unknown model".to_owned()
        } else {
            what.join(" ")
        },
        human_bytes(d.size_bytes)
    );
    if let Some(serial) = &d.serial {
        s.push_str(&format!(", serial {serial}"));
    }
    if let Some(p) = &d.by_path {
        s.push_str(&format!(
            ", port {}",
            p.file_name().unwrap_or_default().to_string_lossy()
        ));
    }
    s.push(')');
    s
}

/// What the one confirmation shows: the image, every rule, what is attached.
fn plan_text(
    job: &job::Job,
    r: &Rules,
    args: &Args,
    station: &Station,
    present: &[station::Present],
) -> String {
    let mut t = format!(
        "bootstick station: {} ({}, {}) will be written to every stick that arrives and is:\n",
        args.image.display(),
        human_bytes(job.image_len()),
        if mode_name(job) == "raw" {
            "byte for byte"
        } else {
            "a built layout"
        }
    );
    t.push_str(&format!(
        "  - a removable or USB whole disk, never a system disk, read-only, mounted, swap or held, of at least {}\n",
        human_bytes(job.needed())
    ));
    if r.ports.is_empty() {
        t.push_str("  - on any port\n");
    } else {
        t.push_str(&format!(
            "  - on a port matching {}\n",
            r.ports.join(" or ")
        ));
    }
    let m = &r.matches;
    let mut fields = Vec::new();
    if let Some(v) = &m.vendor {
        fields.push(format!("vendor {v}"));
    }
    if let Some(v) = &m.model {
        fields.push(format!("model {v}"));
    }
    if let Some(v) = m.min_size {
        fields.push(format!("at least {v} bytes"));
    }
    if let Some(v) = m.max_size {
        fields.push(format!("at most {v} bytes"));
    }
    if !fields.is_empty() {
        t.push_str(&format!("  - matching {}\n", fields.join(", ")));
    }
    if r.take_any {
        t.push_str("  - whatever it holds (--take-any: the content guard is off)\n");
    } else {
        t.push_str(&format!(
            "  - holding nothing but ISO 9660, UDF, FAT or exFAT (no other file system, no LVM, LUKS or RAID signature), at most {} bytes\n",
            r.max_size
        ));
    }
    if !args.rewrite {
        t.push_str("  - not already written by this station (same serial and size)\n");
    }
    t.push_str(&format!(
        "Each is written, verified by reading it back{}, then \"done — remove it\".{}\n",
        if args.eject { " and ejected" } else { "" },
        match args.count {
            Some(n) => format!(" Stops after {n} good sticks."),
            None => String::new(),
        }
    ));
    t.push_str(&match station.watching() {
        Watching::Uevents => "Watching: kernel uevents, and sysfs every 1.5 s.\n".to_owned(),
        Watching::Polling { reason: None } => "Watching: sysfs every 1.5 s (--poll).\n".to_owned(),
        Watching::Polling { reason: Some(r) } => format!("Watching: sysfs every 1.5 s ({r}).\n"),
    });
    if present.is_empty() {
        t.push_str("No stick is attached now.\n");
    } else {
        t.push_str(if args.include_present {
            "Attached now (considered: --include-present):\n"
        } else {
            "Attached now and ignored (plug them in again, or --include-present):\n"
        });
        for p in present {
            let verdict = match &p.decision {
                Ok(()) => "would be taken".to_owned(),
                Err(e) => format!("not taken: {e}"),
            };
            t.push_str(&format!("  {} — {verdict}\n", disk_line(&p.disk)));
        }
    }
    t
}

/// Asks once (on a terminal), or goes ahead with `--yes`; without a
/// terminal and without `--yes`, refuses (exit 7), as `write` does.
fn confirm(yes: bool) -> Result<(), Failure> {
    if yes {
        return Ok(());
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(Failure::new(
            Exit::Declined,
            anyhow::anyhow!(
                "the station writes sticks without asking again, and there is no terminal to confirm it; add --yes"
            ),
        ));
    }
    eprint!("Write every stick that arrives and passes these rules? [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    let _ = stdin.lock().read_line(&mut answer);
    if matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
        Ok(())
    } else {
        Err(Failure::new(
            Exit::Declined,
            anyhow::anyhow!("not confirmed; nothing was written"),
        ))
    }
}

/// Renders the station's events: JSON lines, or plain lines on stderr
/// with a progress bar per stick being written on a terminal.
struct View<'a> {
    render: &'a Renderer,
    /// The renderer of each stick being written, by kernel name.
    bars: Mutex<HashMap<String, Arc<Renderer>>>,
    bell: bool,
}

/// The width the station pads device names to in front of their bars,
/// so sticks that arrive later line up with those already drawn
/// (`/dev/sdaa` is the longest name of the first 702 SCSI disks).
const STATION_LABEL: usize = "/dev/sdaa".len();

impl View<'_> {
    fn say(&self, line: String) {
        if matches!(self.render, Renderer::Human(_)) {
            super::signals::say(&line);
        }
    }

    fn bar(&self, d: &Disk) -> Arc<Renderer> {
        let mut bars = self.bars.lock().unwrap_or_else(|e| e.into_inner());
        bars.entry(d.name.clone())
            .or_insert_with(|| {
                Arc::new(
                    self.render
                        .for_target(&d.path.display().to_string(), STATION_LABEL),
                )
            })
            .clone()
    }
}

impl station::Observer for View<'_> {
    fn station(&self, e: &Event) {
        match e {
            Event::Arrived { disk } => {
                self.render.line("arrived", &DiskLine::of(disk));
                self.say(format!("{}: arrived: {}", disk.name, disk_line(disk)));
            }
            Event::Skipped { disk, reason } => {
                self.render.line(
                    "skipped",
                    &SkippedLine {
                        target: &disk.path,
                        rule: reason.rule(),
                        reason: reason.to_string(),
                        detail: reason,
                        disk,
                    },
                );
                self.say(format!("{}: skipped: {reason}", disk.name));
            }
            Event::Writing { disk } => {
                self.render.line("writing", &DiskLine::of(disk));
                self.say(format!("{}: writing {}", disk.name, disk_line(disk)));
                let _ = self.bar(disk);
            }
            Event::Progress { disk, event } => self.bar(disk).event(event),
            Event::Finished {
                disk,
                record,
                error,
            } => {
                let bar = self
                    .bars
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&disk.name);
                let bar = bar.unwrap_or_else(|| {
                    Arc::new(
                        self.render
                            .for_target(&disk.path.display().to_string(), STATION_LABEL),
                    )
                });
                match error {
                    None => {
                        bar.target_result(Ok(&RecordLine {
                            record,
                            stopped: None,
                        }));
                        let bell = if self.bell { "\x07" } else { "" };
                        self.say(format!(
                            "{}: done — remove it ({} in {:.1} s, {} MB/s, verified){bell}",
                            disk.name,
                            human_bytes(record.bytes),
                            record.seconds,
                            record.mb_per_s
                        ));
                    }
                    Some(err) => {
                        // What a stopped or part-written job left, as
                        // `write` reports it.
                        let (code, stopped) = match err {
                            job::Error::Write(w) => {
                                let (code, left) = exit::write_left(w);
                                (code, Some(left))
                            }
                            e => (exit::job_error(e), None),
                        };
                        let left = RecordLine { record, stopped };
                        let f =
                            Failure::new(code, anyhow::anyhow!("{}", bootstick::error_chain(*err)))
                                .with_fields(&left);
                        bar.target_result(Err::<&(), _>(&f));
                        let what = if record.result == Outcome::Incomplete {
                            "INCOMPLETE"
                        } else {
                            "FAILED"
                        };
                        self.say(format!(
                            "{}: {what}: {}",
                            disk.name,
                            record.error.as_deref().unwrap_or_default()
                        ));
                    }
                }
            }
            Event::Removed { name } => {
                self.render.line("removed", &RemovedLine { device: name });
                self.say(format!("{name}: removed"));
            }
            Event::Stopping { why } => {
                self.render.line("stopping", &StoppingLine { why });
                self.say(match why {
                    station::StopReason::Count => {
                        "station: the count is reached; finishing the sticks being written".into()
                    }
                    station::StopReason::Stopped => {
                        "station: stopping: no new stick is taken; the sticks being written finish (Ctrl-C again aborts them)".into()
                    }
                    station::StopReason::Log => {
                        "station: the log cannot be written; no new stick is taken".into()
                    }
                });
            }
        }
    }
}

/// The summary, and the exit code: 0 when no stick failed, else the
/// signal's code when a second signal aborted sticks, else 26.
fn finish(
    s: &Summary,
    render: &Renderer,
    aborted_by: Option<bootstick::cancel::Signal>,
) -> Result<(), Failure> {
    let mut text = format!(
        "Station: {} written and verified, {} failed, {} incomplete, {} skipped.",
        s.done, s.failed, s.incomplete, s.skipped
    );
    for (dev, err) in &s.failures {
        text.push_str(&format!("\n  FAILED {dev}: {err}"));
    }
    let mut fields = SummaryLine {
        done: s.done,
        failed: s.failed,
        incomplete: s.incomplete,
        skipped: s.skipped,
        failures: s
            .failures
            .iter()
            .map(|(target, error)| FailureEntry { target, error })
            .collect(),
        stopped: s.stopped,
        error: None,
        exit_code: None,
        interrupted: None,
        signal: None,
    };
    if s.ok() {
        render.overall(true, &fields, &text);
        return Ok(());
    }
    let code = if s.incomplete > 0 {
        Exit::for_signal(aborted_by)
    } else {
        Exit::SticksFailed
    };
    let first = s.failures.first().cloned().unwrap_or_default();
    let error = anyhow::anyhow!(
        "{} of {} sticks failed or are incomplete; first: {}: {}",
        s.failed + s.incomplete,
        s.done + s.failed + s.incomplete,
        first.0,
        first.1
    );
    fields.error = Some(super::render::chain(&error));
    fields.exit_code = Some(code as u8);
    if s.incomplete > 0 {
        fields.interrupted = Some(true);
        fields.signal = aborted_by.map(|sig| sig.name());
    }
    render.overall(false, &fields, &text);
    Err(Failure::new(code, error).reported())
}

// ---- The JSON lines (docs/cli.md, "station"): one struct per event.

/// The `start` line.
#[derive(Serialize)]
struct StationStart<'a> {
    image: &'a std::path::Path,
    image_bytes: u64,
    needed_bytes: u64,
    mode: &'static str,
    rules: RulesLine<'a>,
    watching: &'a Watching,
    present: Vec<PresentLine<'a>>,
}

/// A disk present when the station started, and what would be done with it.
#[derive(Serialize)]
struct PresentLine<'a> {
    disk: &'a Disk,
    ignored: bool,
    take: bool,
    skip: Option<&'a rules::Skip>,
}

/// `arrived` and `writing`: the disk and its path.
#[derive(Serialize)]
struct DiskLine<'a> {
    target: &'a std::path::Path,
    disk: &'a Disk,
}

impl<'a> DiskLine<'a> {
    fn of(disk: &'a Disk) -> Self {
        DiskLine {
            target: &disk.path,
            disk,
        }
    }
}

/// `skipped`: which rule, in words and typed.
#[derive(Serialize)]
struct SkippedLine<'a> {
    target: &'a std::path::Path,
    rule: &'static str,
    reason: String,
    detail: &'a rules::Skip,
    disk: &'a Disk,
}

/// A stick's `target_result` fields: its log record, and what a failed
/// one left.
#[derive(Serialize)]
struct RecordLine<'a> {
    record: &'a bootstick::station::log::Record,
    #[serde(flatten)]
    stopped: Option<Left>,
}

#[derive(Serialize)]
struct RemovedLine<'a> {
    device: &'a str,
}

#[derive(Serialize)]
struct StoppingLine<'a> {
    why: &'a station::StopReason,
}

/// The overall `result`.
#[derive(Serialize)]
struct SummaryLine<'a> {
    done: u64,
    failed: u64,
    incomplete: u64,
    skipped: u64,
    failures: Vec<FailureEntry<'a>>,
    stopped: Option<station::StopReason>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_code: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    interrupted: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    signal: Option<&'static str>,
}

#[derive(Serialize)]
struct FailureEntry<'a> {
    target: &'a str,
    error: &'a str,
}
