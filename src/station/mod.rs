//! A station: a lab mode that writes every stick plugged in
//! (`bootstick station IMAGE`, docs/station.md).
//!
//! ```text
//! Job (decided once) ─▶ Station::new ─ present disks ignored ─▶ Station::run
//!    watch: uevents + sysfs rescans ─▶ arrival ─ settle ─▶ rules::decide
//!    ─▶ Guarded::open (identity as recorded at arrival) ─▶ content::probe
//!    ─▶ rules::decide again, with the content ─▶ Job::prepare ─▶ Prepared::run
//!    (identity re-check before the first byte, write, sync, verify, eject)
//!    ─▶ log::Record ─▶ observer
//! ```
//!
//! Everything a stick goes through is the job API's (`crate::job`): the
//! same plan, the same identity check, the same engine as `write`. The
//! station adds which sticks (`rules`), when (`watch`), what is remembered
//! (a stick written is not written again when re-inserted, keyed by serial
//! and size) and the report (`log`).
//!
//! Each stick is its own job on its own thread (`Prepared::run`), reading
//! the image through the page cache like `job::run_all` does: there is no
//! shared single read of the source per batch yet (docs/station.md,
//! "Limits").

pub mod content;
pub mod log;
pub mod rules;
pub mod watch;

use std::collections::{BTreeMap, HashSet};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cancel::Cancel;
use crate::devices::{self, Disk, Guarded, ImageSite, Roots};
use crate::events::{self, Observer as JobObserver};
use crate::image::{ByteSource, ImageFile};
use crate::job::{self, Chosen, Job, RunOptions, Written};
use log::{Outcome, Record};
use rules::{Rules, Skip};
use watch::{Snapshot, Uevents};

/// Why the station stopped before its work was done.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Enumerating disks, or finding where the image lives, failed.
    #[error(transparent)]
    Device(#[from] devices::Error),
    /// The log could not be written: the station stopped taking sticks
    /// (a lab's record of what was written is part of the job).
    #[error(transparent)]
    Log(#[from] log::Error),
}

/// How a station runs.
pub struct Config {
    pub roots: Roots,
    pub rules: Rules,
    /// Disks attached when the station starts are candidates too.
    pub include_present: bool,
    /// A stick written already (same serial and size) is written again.
    pub rewrite: bool,
    /// Stop after this many sticks were written and verified.
    pub count: Option<u64>,
    /// Do not open the uevent socket: rescan sysfs only.
    pub poll: bool,
    /// How long a new disk is left alone before it is looked at: the
    /// kernel reads its partition table and udev makes its links meanwhile.
    pub settle: Duration,
    /// Verify, eject, and `cancel`: the token that aborts running jobs.
    pub run: RunOptions,
    /// Cancelled: take no new stick, let running ones finish.
    pub stop: Cancel,
    pub log: Option<log::Log>,
}

impl Config {
    pub fn new(roots: Roots, rules: Rules) -> Config {
        Config {
            roots,
            rules,
            include_present: false,
            rewrite: false,
            count: None,
            poll: false,
            settle: Duration::from_secs(1),
            run: RunOptions {
                verify: true,
                ..RunOptions::default()
            },
            stop: Cancel::new(),
            log: None,
        }
    }
}

/// How arrivals are noticed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "via", rename_all = "kebab-case")]
pub enum Watching {
    /// Kernel uevents, with sysfs rescans as a safety net.
    Uevents,
    /// Sysfs rescans only (asked for, or the socket could not be opened:
    /// `reason`).
    Polling { reason: Option<String> },
}

/// A disk attached when the station started, and what would be decided
/// for it (a stick it would take, or why not).
#[derive(Debug)]
pub struct Present {
    pub disk: Disk,
    pub decision: Result<(), Skip>,
}

/// What the station tells its observer.
#[derive(Debug)]
pub enum Event<'a> {
    /// A disk appeared; it is looked at once it has settled.
    Arrived { disk: &'a Disk },
    /// A disk the rules refused (also logged).
    Skipped { disk: &'a Disk, reason: &'a Skip },
    /// A stick is being written (its identity is the one recorded here).
    Writing { disk: &'a Disk },
    /// A stick's job reported progress.
    Progress {
        disk: &'a Disk,
        event: &'a events::Event,
    },
    /// A stick is finished with (also logged). `error` is the job's, when
    /// it failed.
    Finished {
        disk: &'a Disk,
        record: &'a Record,
        error: Option<&'a job::Error>,
    },
    /// A disk went away.
    Removed { name: &'a str },
    /// No new stick is taken any more (`count` reached or `stop`).
    Stopping { why: StopReason },
}

/// Why the station stopped taking sticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StopReason {
    Count,
    Stopped,
    Log,
}

/// Receives the station's events, from the station's thread and from the
/// sticks' (progress).
pub trait Observer: Sync {
    fn station(&self, event: &Event);
}

impl<F: Fn(&Event) + Sync> Observer for F {
    fn station(&self, event: &Event) {
        self(event)
    }
}

/// The counts when the station ends.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    pub done: u64,
    pub failed: u64,
    pub incomplete: u64,
    pub skipped: u64,
    /// Failed and incomplete sticks: device and error.
    pub failures: Vec<(String, String)>,
    pub stopped: Option<StopReason>,
}

impl Summary {
    /// True when no stick failed or was left incomplete.
    pub fn ok(&self) -> bool {
        self.failed == 0 && self.incomplete == 0
    }
}

/// A station ready to run: the image decided, the disks present recorded.
pub struct Station<'j> {
    job: &'j Job,
    config: Config,
    site: ImageSite,
    present: Snapshot,
    uevents: Option<Uevents>,
    watching: Watching,
    /// Appended to from the station's thread only; a Mutex because the
    /// station is shared with the sticks' threads.
    log: Mutex<Option<log::Log>>,
}

/// What the station knows about a disk it has seen.
enum Slot {
    /// Arrived at this instant; looked at once settled.
    Settling(Instant),
    /// Attached at the start: ignored.
    Present,
    /// Decided (skipped, written, failed): left alone until removed.
    Handled,
    /// Being written.
    Busy,
}

impl<'j> Station<'j> {
    /// Records the disks attached now and opens the uevent socket (unless
    /// polling is asked for, or it cannot be opened).
    pub fn new(job: &'j Job, mut config: Config) -> Result<Station<'j>, Error> {
        let log = Mutex::new(config.log.take());
        let site = ImageSite::of(&config.roots, job.path())?;
        let (uevents, watching) = if config.poll {
            (None, Watching::Polling { reason: None })
        } else {
            match Uevents::open() {
                Ok(u) => (Some(u), Watching::Uevents),
                Err(e) => (
                    None,
                    Watching::Polling {
                        reason: Some(format!("cannot open the kernel's uevent socket: {e}")),
                    },
                ),
            }
        };
        // Opened before the snapshot: nothing arriving in between is missed.
        let present = Snapshot::take(&config.roots)?;
        Ok(Station {
            job,
            config,
            site,
            present,
            uevents,
            watching,
            log,
        })
    }

    /// Replaces the tokens that stop the station (`stop`: take no new
    /// stick) and abort its running sticks (`abort`), e.g. once the user
    /// confirmed and signals should mean "wind down".
    pub fn stopping_with(mut self, stop: Cancel, abort: Cancel) -> Station<'j> {
        self.config.stop = stop;
        self.config.run.cancel = abort;
        self
    }

    pub fn watching(&self) -> &Watching {
        &self.watching
    }

    pub fn rules(&self) -> &Rules {
        &self.config.rules
    }

    /// The sticks attached now (kind and bus of a stick), with the decision
    /// the rules make from what is enumerated (without reading them).
    pub fn present(&self) -> Vec<Present> {
        self.present
            .disks
            .values()
            .filter(|(_, d)| rules::is_stick(d, &self.config.rules))
            .map(|(_, d)| Present {
                disk: d.clone(),
                decision: self.decide_listed(d),
            })
            .collect()
    }

    fn decide_listed(&self, d: &Disk) -> Result<(), Skip> {
        self.site
            .check_disk(d)
            .map_err(|error| Skip::Unsafe { error })?;
        rules::decide(
            d,
            &content::Content::default(),
            &self.config.rules,
            self.job.needed(),
        )
    }

    /// Watches and writes until stopped (`config.stop`), `config.count`
    /// good sticks, or a log failure; running sticks always finish (or
    /// are aborted through `config.run.cancel`) before this returns.
    pub fn run(mut self, observer: &dyn Observer) -> Result<Summary, Error> {
        let mut slots: BTreeMap<String, Slot> = BTreeMap::new();
        let mut arrival: BTreeMap<String, Disk> = BTreeMap::new();
        for (name, (_, d)) in &self.present.disks {
            if self.config.include_present && rules::is_stick(d, &self.config.rules) {
                slots.insert(name.clone(), Slot::Settling(Instant::now()));
            } else {
                slots.insert(name.clone(), Slot::Present);
            }
        }
        let mut known = std::mem::take(&mut self.present);
        let mut written: HashSet<(String, u64)> = HashSet::new();
        let digest: Mutex<Option<String>> = Mutex::new(
            self.job
                .checked()
                .and_then(|r| r.checked_sha256.as_ref())
                .map(|d| d.to_hex()),
        );
        let mut summary = Summary::default();
        let mut log_error: Option<log::Error> = None;
        let mut in_flight = 0u64;
        let mut last_scan = Instant::now();
        let (tx, rx) = mpsc::channel::<(Disk, Result<Written, job::Error>)>();
        let me = &self;
        let digest = &digest;
        std::thread::scope(|s| -> Result<(), Error> {
            loop {
                let good = summary.done;
                let count_reached = me.config.count.is_some_and(|n| good >= n);
                if summary.stopped.is_none() {
                    let why = if me.config.stop.is_cancelled() {
                        Some(StopReason::Stopped)
                    } else if count_reached {
                        Some(StopReason::Count)
                    } else if log_error.is_some() {
                        Some(StopReason::Log)
                    } else {
                        None
                    };
                    if let Some(why) = why {
                        summary.stopped = Some(why);
                        observer.station(&Event::Stopping { why });
                    }
                }
                if summary.stopped.is_some() && in_flight == 0 {
                    return Ok(());
                }
                let tick = Duration::from_millis(200);
                let changed = match &me.uevents {
                    Some(u) => u.wait(tick).unwrap_or_else(|_| {
                        std::thread::sleep(tick);
                        false
                    }),
                    None => {
                        std::thread::sleep(tick);
                        false
                    }
                };
                // Finished sticks.
                while let Ok((disk, outcome)) = rx.try_recv() {
                    in_flight -= 1;
                    let record = me.record_of(&disk, &outcome, digest);
                    match record.result {
                        Outcome::Done => {
                            summary.done += 1;
                            if let Some(serial) = &disk.serial {
                                written.insert((serial.clone(), disk.size_bytes));
                            }
                        }
                        Outcome::Failed | Outcome::Incomplete => {
                            if record.result == Outcome::Failed {
                                summary.failed += 1;
                            } else {
                                summary.incomplete += 1;
                            }
                            summary.failures.push((
                                disk.path.display().to_string(),
                                record.error.clone().unwrap_or_default(),
                            ));
                        }
                        Outcome::Skipped => summary.skipped += 1,
                    }
                    me.log(&record, &mut log_error);
                    if let Some(slot) = slots.get_mut(&disk.name) {
                        *slot = Slot::Handled;
                    }
                    observer.station(&Event::Finished {
                        disk: &disk,
                        record: &record,
                        error: outcome.as_ref().err(),
                    });
                }
                if changed || last_scan.elapsed() >= watch::RESCAN {
                    last_scan = Instant::now();
                    let now = Snapshot::take(&me.config.roots)?;
                    let diff = known.diff(&now);
                    for name in &diff.removed {
                        // A disk being written stays busy until its job
                        // ends (it fails alone, reported then).
                        if !matches!(slots.get(name), Some(Slot::Busy)) {
                            if let Some(slot) = slots.remove(name) {
                                arrival.remove(name);
                                if !matches!(slot, Slot::Present) || known.disks.contains_key(name)
                                {
                                    observer.station(&Event::Removed { name });
                                }
                            }
                        }
                    }
                    for name in &diff.arrived {
                        if matches!(slots.get(name), Some(Slot::Busy)) {
                            continue;
                        }
                        let Some((_, d)) = now.disks.get(name) else {
                            continue;
                        };
                        if !rules::is_stick(d, &me.config.rules) && d.kind != devices::Kind::Disk {
                            // Loop, ram, optical devices: never sticks, not reported.
                            slots.insert(name.clone(), Slot::Handled);
                            continue;
                        }
                        slots.insert(name.clone(), Slot::Settling(Instant::now()));
                        observer.station(&Event::Arrived { disk: d });
                    }
                    known = now;
                }
                if summary.stopped.is_some() {
                    continue;
                }
                // Settled arrivals: decide, and take or skip.
                let ready: Vec<String> = slots
                    .iter()
                    .filter_map(|(n, s)| match s {
                        Slot::Settling(t) if me.settled(n, *t, &known) => Some(n.clone()),
                        _ => None,
                    })
                    .collect();
                // The facts as they are now (udev has just finished with
                // them), for the arrival the last rescan saw.
                let fresh = if ready.is_empty() {
                    None
                } else {
                    Some(Snapshot::take(&me.config.roots)?)
                };
                for name in ready {
                    if me
                        .config
                        .count
                        .is_some_and(|n| summary.done + in_flight >= n)
                    {
                        break;
                    }
                    let now = fresh.as_ref().and_then(|f| f.disks.get(&name));
                    let Some((_, disk)) = now
                        .filter(|(k, _)| known.disks.get(&name).is_some_and(|(seen, _)| seen == k))
                    else {
                        // Gone or replaced meanwhile: the next rescan says.
                        continue;
                    };
                    let disk = disk.clone();
                    match me.take(&disk, &written) {
                        Err(reason) => {
                            summary.skipped += 1;
                            let mut r = Record::new(&disk, Outcome::Skipped);
                            r.error = Some(reason.to_string());
                            r.rule = Some(reason.rule());
                            r.image_sha256 =
                                digest.lock().unwrap_or_else(|e| e.into_inner()).clone();
                            me.log(&r, &mut log_error);
                            observer.station(&Event::Skipped {
                                disk: &disk,
                                reason: &reason,
                            });
                            slots.insert(name, Slot::Handled);
                        }
                        Ok(chosen) => {
                            observer.station(&Event::Writing { disk: &disk });
                            slots.insert(name.clone(), Slot::Busy);
                            arrival.insert(name, disk.clone());
                            in_flight += 1;
                            let tx = tx.clone();
                            s.spawn(move || {
                                let outcome = me.write_one(chosen, &disk, digest, observer);
                                let _ = tx.send((disk, outcome));
                            });
                        }
                    }
                }
            }
        })?;
        match log_error {
            Some(e) => Err(Error::Log(e)),
            None => Ok(summary),
        }
    }

    /// Settled: `settle` has passed since it arrived and, where udev runs,
    /// udev has recorded it with its `/dev/disk` links, or 10 s have passed
    /// (udev is slow on a loaded machine; a disk without links is taken then).
    fn settled(&self, name: &str, since: Instant, known: &Snapshot) -> bool {
        let waited = since.elapsed();
        if waited < self.config.settle {
            return false;
        }
        let udev = &self.config.roots.udev_data;
        if !udev.is_dir() || waited >= Duration::from_secs(10) {
            return true;
        }
        // Its database entry with its /dev/disk links (`S:` lines).
        known
            .disks
            .get(name)
            .and_then(|(_, d)| d.dev)
            .is_none_or(|dev| {
                std::fs::read_to_string(udev.join(format!("b{}:{}", dev.major, dev.minor)))
                    .is_ok_and(|db| db.lines().any(|l| l.starts_with("S:")))
            })
    }

    /// Applies every rule to `disk` as enumerated now (its identity as
    /// recorded at arrival), opens it guarded, reads what it holds and
    /// applies the content rule: the stick to write, or why not.
    fn take(&self, disk: &Disk, written: &HashSet<(String, u64)>) -> Result<Chosen, Skip> {
        // First: a stick written here holds the image, which the content
        // guard need not judge.
        if let (false, Some(serial)) = (self.config.rewrite, &disk.serial) {
            if written.contains(&(serial.clone(), disk.size_bytes)) {
                return Err(Skip::AlreadyWritten {
                    serial: serial.clone(),
                    size: disk.size_bytes,
                });
            }
        }
        self.decide_listed(disk)?;
        // O_EXCL + flock from here: what is read next cannot change under us.
        let guard =
            Guarded::open(&self.config.roots, disk).map_err(|error| Skip::Unsafe { error })?;
        let read = guard
            .try_clone()
            .map(|f| ImageFile::from_file(f, disk.size_bytes))
            .map_err(|error| Skip::Unsafe { error })?;
        let found = content::probe(&read as &dyn ByteSource).map_err(|cause| Skip::Unsafe {
            error: devices::Error::Open {
                path: disk.path.clone(),
                cause,
            },
        })?;
        rules::decide(disk, &found, &self.config.rules, self.job.needed())?;
        Ok(Chosen::Disk {
            disk: Box::new(disk.clone()),
            guard: Box::new(guard),
        })
    }

    /// Writes one stick (on its own thread): the job API's prepare and run,
    /// with the image's SHA-256 computed by the first write that has none.
    fn write_one(
        &self,
        chosen: Chosen,
        disk: &Disk,
        digest: &Mutex<Option<String>>,
        observer: &dyn Observer,
    ) -> Result<Written, job::Error> {
        let prepared = self.job.prepare(chosen)?;
        let mut options = self.config.run.clone();
        options.digest = digest.lock().unwrap_or_else(|e| e.into_inner()).is_none();
        let progress = |e: &events::Event| observer.station(&Event::Progress { disk, event: e });
        let written = prepared.run(&options, &progress as &dyn JobObserver)?;
        if let Some(d) = &written.source_digest {
            digest
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert_with(|| d.hex.clone());
        }
        Ok(written)
    }

    fn record_of(
        &self,
        disk: &Disk,
        outcome: &Result<Written, job::Error>,
        digest: &Mutex<Option<String>>,
    ) -> Record {
        let sha = digest.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut r = match outcome {
            Ok(w) => Record::new(disk, Outcome::Done).timed(w.bytes_written, w.elapsed),
            Err(e) => {
                let cancelled =
                    matches!(e, job::Error::Write(crate::write::Error::Cancelled { .. }));
                let mut r = Record::new(
                    disk,
                    if cancelled {
                        Outcome::Incomplete
                    } else {
                        Outcome::Failed
                    },
                );
                r.error = Some(crate::error_chain(e));
                r
            }
        };
        r.image_sha256 = sha;
        r
    }

    fn log(&self, r: &Record, error: &mut Option<log::Error>) {
        if error.is_some() {
            return;
        }
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(l) = log.as_mut() {
            if let Err(e) = l.append(r) {
                *error = Some(e);
            }
        }
    }
}
