//! A probe's report in words, and `write --probe`: shared by the `probe`
//! command and `write`, so neither command module imports the other.

use super::exit::{self, Failure};
use super::render::{human_bytes, Renderer};
use bootstick::health::{self, Report, Verdict};
use bootstick::job;

fn mb(s: Option<u64>) -> String {
    s.map_or_else(|| "-".into(), |s| format!("{:.1} MB/s", s as f64 / 1e6))
}

/// The report in words: the verdict, the evidence, what the stick holds.
pub fn describe(r: &Report) -> String {
    let size = |n: u64| format!("{} ({n} bytes)", human_bytes(n));
    let mut s = match r.verdict {
        Verdict::FakeCapacity => format!(
            "{}: FAKE CAPACITY: it reports {} but stores only {}: from offset {} ({}) on, {}",
            r.target.display(),
            size(r.reported_bytes),
            size(r.usable_bytes.unwrap_or(0)),
            r.fails_from.unwrap_or(0),
            human_bytes(r.fails_from.unwrap_or(0)),
            match r.fails_how {
                Some(health::probe::Failure::Wrapped) => {
                    "blocks return data written at lower offsets (it wraps)"
                }
                Some(health::probe::Failure::Dropped) => "what is written is lost",
                _ => "blocks fail",
            },
        ),
        Verdict::BadSectors => format!(
            "{}: BAD SECTORS: {} in {} range(s) failed: {}",
            r.target.display(),
            human_bytes(r.bad_bytes),
            r.bad_ranges.len() as u64 + r.bad_ranges_omitted,
            ranges(r)
        ),
        Verdict::Slow => format!(
            "{}: SLOW: every block tested held its data, but it writes at {} and reads at {}",
            r.target.display(),
            mb(r.write_bytes_per_second),
            mb(r.read_bytes_per_second)
        ),
        Verdict::Genuine => format!(
            "{}: genuine: every block tested over its {} held its own data",
            r.target.display(),
            size(r.reported_bytes)
        ),
        Verdict::Readable => format!(
            "{}: readable: all {} read without an error (a read alone cannot tell a fake stick)",
            r.target.display(),
            size(r.reported_bytes)
        ),
    };
    if r.verdict == Verdict::FakeCapacity && !r.bad_ranges.is_empty() {
        s += &format!("; also bad below that: {}", ranges(r));
    }
    s += &format!(
        ".\nwritten {}, read {}, write {}, read {}, {:.1} s. ",
        human_bytes(r.bytes_written),
        human_bytes(r.bytes_read),
        mb(r.write_bytes_per_second),
        mb(r.read_bytes_per_second),
        r.seconds
    );
    s += state(r.target_state);
    s
}

fn ranges(r: &Report) -> String {
    let mut v: Vec<String> = r
        .bad_ranges
        .iter()
        .take(8)
        .map(|g| format!("{}..{} ({})", g.start, g.end, failure_name(g.failure)))
        .collect();
    if r.bad_ranges.len() > 8 || r.bad_ranges_omitted > 0 {
        v.push("…".into());
    }
    v.join(", ")
}

fn failure_name(f: health::probe::Failure) -> &'static str {
    use health::probe::Failure as F;
    match f {
        F::WriteError => "write error",
        F::ReadError => "read error",
        F::Wrapped => "wrapped",
        F::Dropped => "dropped",
        F::Corrupt => "corrupt",
    }
}

/// What the target holds, for people.
pub fn state(s: health::TargetState) -> &'static str {
    match s {
        health::TargetState::Untouched => "Nothing was written.",
        health::TargetState::PatternsCleared => {
            "The stick now holds test patterns, its first and last MiB zeroed (no partition table): write an image or format it."
        }
        health::TargetState::Patterns => {
            "The stick holds test patterns; clearing its first and last MiB failed: write an image or format it."
        }
    }
}

/// `write --probe`: the quick probe of every disk target before the write
/// (`health::before_write`). An unfit stick ends the command with the
/// probe's exit code and report; the reports of the probed disks are
/// returned for the write's result.
pub fn before_write(chosen: &[job::Chosen], render: &Renderer) -> Result<Vec<Report>, Failure> {
    use bootstick::health::before_write::{probe_targets, Error};
    probe_targets(chosen, &super::signals::token(), render).map_err(|e| match e {
        Error::Probe { source, .. } => Failure::probe(source),
        Error::Unfit { report } => {
            let code = exit::probe_verdict(report.verdict);
            let text = format!(
                "{}\nThe image was not written (write --probe).",
                describe(&report)
            );
            Failure::new(code, anyhow::anyhow!("{text}")).with_fields(&*report)
        }
    })
}
