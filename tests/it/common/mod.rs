//! Helpers shared by the integration tests: locating the binary, skipping
//! (visibly) when a tool or privilege is missing, and loop devices that are
//! always detached.
//!
//! A test that needs something the machine lacks calls [`require_tools`] or
//! [`require_root`]. Under plain `cargo test` that prints a `SKIP:` line and
//! the test returns early; under `scripts/test.sh` (and so in CI) the variable
//! `BOOTSTICK_REQUIRE_ALL=1` is set and a missing prerequisite fails the test
//! instead, so CI can never go green by skipping.

#![allow(dead_code)]

pub mod fixtures;
pub mod qemu;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The `bootstick` binary built for this test run.
pub fn bootstick() -> Command {
    Command::new(env!("CARGO_BIN_EXE_bootstick"))
}

fn strict() -> bool {
    std::env::var_os("BOOTSTICK_REQUIRE_ALL").is_some_and(|v| v == "1")
}

/// Skips `test` for `why` (a visible `SKIP:` line), or panics under
/// `BOOTSTICK_REQUIRE_ALL=1`. Returns false, so `if !require_x() { return }`
/// reads naturally. Every skip goes through here (`tests/it/suite.rs` checks).
pub fn skip(test: &str, why: &str) -> bool {
    if strict() {
        panic!("{test}: {why} (BOOTSTICK_REQUIRE_ALL=1 forbids skipping; run scripts/test.sh to install it)");
    }
    eprintln!("SKIP: {test}: {why}");
    false
}

/// True when a program named `tool` is on PATH.
pub fn have_tool(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| {
            let p = dir.join(tool);
            p.is_file()
                && std::fs::metadata(&p)
                    .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0)
                    .unwrap_or(false)
        })
    })
}

/// True when every tool is installed; otherwise skips (or fails, in strict mode).
pub fn require_tools(test: &str, tools: &[&str]) -> bool {
    let missing: Vec<_> = tools.iter().filter(|t| !have_tool(t)).collect();
    if missing.is_empty() {
        true
    } else {
        skip(test, &format!("needs {missing:?} on PATH"))
    }
}

/// True when running as root (loop devices, mounts); otherwise skips.
pub fn require_root(test: &str) -> bool {
    if rustix::process::geteuid().is_root() {
        true
    } else {
        skip(test, "needs root (loop devices)")
    }
}

/// Runs a command, panicking with its output when it fails. Returns stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A loop device attached to a backing file; detached on drop. Only devices
/// this process attached are ever detached.
pub struct LoopDevice {
    path: PathBuf,
}

impl LoopDevice {
    /// Attaches `backing` to a free loop device.
    pub fn attach(backing: &Path) -> LoopDevice {
        let out = run(Command::new("losetup").args(["-f", "--show"]).arg(backing));
        LoopDevice {
            path: PathBuf::from(out.trim()),
        }
    }

    /// Attaches `backing` with extra `losetup` options (e.g.
    /// `["--sector-size", "4096"]` for a 4Kn device).
    pub fn attach_with(backing: &Path, options: &[&str]) -> LoopDevice {
        let out = run(Command::new("losetup")
            .args(options)
            .args(["-f", "--show"])
            .arg(backing));
        LoopDevice {
            path: PathBuf::from(out.trim()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for LoopDevice {
    /// Unmounts what is still mounted from the device first (deepest
    /// first), so that a test failing between its `mount` and bootstick's
    /// unmount (or a mutant making it fail there) leaves no mounted loop
    /// device and no undeletable temporary directory behind.
    fn drop(&mut self) {
        if let Ok(o) = Command::new("findmnt")
            .args(["-n", "-l", "-o", "TARGET", "--source"])
            .arg(&self.path)
            .output()
        {
            let mut points: Vec<String> = String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(str::to_string)
                .collect();
            points.sort_by_key(|p| std::cmp::Reverse(p.len()));
            for p in points {
                let _ = Command::new("umount").arg(&p).status();
            }
        }
        let _ = Command::new("losetup").arg("-d").arg(&self.path).status();
    }
}

/// A file of `len` bytes of deterministic, non-compressible data.
pub fn pseudo_random_file(path: &Path, len: u64, seed: u64) {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut left = len;
    while left > 0 {
        // xorshift64*: fast, and good enough to defeat compression and dedup.
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let v = x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
        let n = left.min(8) as usize;
        f.write_all(&v[..n]).unwrap();
        left -= n as u64;
    }
    f.flush().unwrap();
}
pub mod guest;
pub mod recipes;

/// Inverts the byte at `at` of `path` (a file or a device node, written
/// through the page cache as another program would) and flushes it.
pub fn flip_byte(path: &Path, at: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[!b[0]], at).unwrap();
    f.sync_all().unwrap();
}

/// A `len`-byte image partitioned by `sfdisk` from `script` (the oracle for
/// the table).
pub fn sfdisk_image(path: &Path, len: u64, script: &str) {
    std::fs::File::create(path).unwrap().set_len(len).unwrap();
    let mut child = spawn_with_input(
        Command::new("sfdisk")
            .arg("-q")
            .arg(path)
            .stdout(std::process::Stdio::null()),
        script.as_bytes(),
    );
    assert!(child.wait().unwrap().success());
}

/// Spawns `cmd` with `input` on its standard input, which is then closed.
pub fn spawn_with_input(cmd: &mut Command, input: &[u8]) -> std::process::Child {
    use std::io::Write;
    let mut child = cmd.stdin(std::process::Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child
}

/// The JSON lines a `--json` command printed on stdout, parsed and checked
/// against the contract every `--json` run keeps (docs/cli.md, "JSON
/// output"): valid NDJSON only, each line an object with `event` and `t`;
/// the first line is a `start` with `command`; the last line, and only the
/// last, is the `result`, with `ok`, and with `ok: false` an `error` and an
/// `exit_code`.
pub fn json_lines(stdout: &[u8]) -> Vec<serde_json::Value> {
    let text = String::from_utf8_lossy(stdout);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {l:?}\nstdout:\n{text}"))
        })
        .collect();
    assert!(!lines.is_empty(), "a --json run printed nothing");
    for l in &lines {
        assert!(
            l.is_object() && l["event"].is_string() && l["t"].is_number(),
            "every line is an object with `event` and `t`: {l}\nstdout:\n{text}"
        );
    }
    assert_eq!(
        lines[0]["event"], "start",
        "the first line is `start`:\n{text}"
    );
    assert!(
        lines[0].get("command").is_some(),
        "`start` names the command:\n{text}"
    );
    let results = lines.iter().filter(|l| l["event"] == "result").count();
    assert_eq!(results, 1, "exactly one `result` line:\n{text}");
    let last = lines.last().unwrap();
    assert_eq!(
        last["event"], "result",
        "the last line is `result`:\n{text}"
    );
    assert!(last["ok"].is_boolean(), "`result` has `ok`:\n{text}");
    if last["ok"] == false {
        assert!(
            last["error"].is_string() && last["exit_code"].is_u64(),
            "a failed `result` has `error` and `exit_code`:\n{text}"
        );
    }
    lines
}

/// The `result` line of a `--json` run of a report command (`verify`,
/// `inspect`, `ls`, `list`), which carries the report's fields; the whole
/// output is checked as [`json_lines`] checks it.
pub fn json_result(stdout: &[u8]) -> serde_json::Value {
    json_lines(stdout).pop().unwrap()
}

/// Runs `bootstick write` on a pseudo-terminal (util-linux `script`), typing
/// `answer`. Returns the exit code and everything shown.
pub fn write_on_terminal(args: &str, answer: &str) -> (Option<i32>, String) {
    let cmd = format!("{} write {args}", env!("CARGO_BIN_EXE_bootstick"));
    let o = spawn_with_input(
        Command::new("script")
            .args(["-q", "-e", "-c", &cmd, "/dev/null"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped()),
        answer.as_bytes(),
    )
    .wait_with_output()
    .unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
    )
}

/// Runs `bootstick ARGS` in a detached tmux session of `columns` × 24 (its
/// own server socket, so no other tmux is touched) and returns every
/// distinct screen `tmux capture-pane` showed while it ran, polled every
/// 40 ms: what a person at a terminal that size saw, drawn by a terminal
/// emulator that is not ours. With `answer` `(prompt, keys)`, `keys` and
/// Enter are typed once a screen shows `prompt`.
pub fn screens_on_tmux(args: &str, columns: u16, answer: Option<(&str, &str)>) -> Vec<String> {
    let cmd = format!("{} {args}", env!("CARGO_BIN_EXE_bootstick"));
    tmux_screens(&cmd, columns, answer, false)
}

/// Runs the shell command `cmd` as [`screens_on_tmux`] runs bootstick;
/// with `colours`, the screens keep their SGR escapes (`capture-pane -e`).
pub fn tmux_screens(
    cmd: &str,
    columns: u16,
    answer: Option<(&str, &str)>,
    colours: bool,
) -> Vec<String> {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::{Duration, Instant};
    static N: AtomicU32 = AtomicU32::new(0);
    let socket = format!(
        "bootstick-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let tmux = |a: &[&str]| {
        Command::new("tmux")
            .arg("-L")
            .arg(&socket)
            .args(a)
            .output()
            .unwrap()
    };
    let cols = columns.to_string();
    // The pause keeps the last screen up before tmux marks the pane dead
    // (its "Pane is dead" line scrolls the screen by one).
    let cmd = format!("{cmd}; sleep 0.5");
    let o = tmux(&[
        "new-session",
        "-d",
        "-s",
        "t",
        "-x",
        &cols,
        "-y",
        "24",
        &cmd,
    ]);
    assert!(o.status.success(), "tmux: {o:?}");
    // The pane stays after the command ends, so its last screen is read too.
    let _ = tmux(&["set-option", "-t", "t", "remain-on-exit", "on"]);
    let capture: &[&str] = if colours {
        &["capture-pane", "-e", "-p", "-t", "t"]
    } else {
        &["capture-pane", "-p", "-t", "t"]
    };
    let mut screens: Vec<String> = Vec::new();
    let started = Instant::now();
    loop {
        // Whether it had ended before this screen was read: then the
        // screen is its last.
        let dead = tmux(&["display-message", "-p", "-t", "t", "#{pane_dead}"]);
        let ended = String::from_utf8_lossy(&dead.stdout).trim() == "1";
        let shot = tmux(capture);
        if !shot.status.success() {
            break;
        }
        let screen = String::from_utf8_lossy(&shot.stdout).into_owned();
        if let Some((prompt, keys)) = answer {
            if screen.contains(prompt) && !screens.iter().any(|s| s.contains(prompt)) {
                let _ = tmux(&["send-keys", "-t", "t", keys, "Enter"]);
            }
        }
        if screens.last() != Some(&screen) {
            screens.push(screen);
        }
        if ended {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{cmd}: still running after 120 s"
        );
        std::thread::sleep(Duration::from_millis(40));
    }
    let _ = tmux(&["kill-server"]);
    screens
}

/// Runs `bootstick write --yes --json [extra] IMAGE TARGET` with no input:
/// its output and its JSON lines (checked as [`json_lines`] checks them).
pub fn write_json(
    image: &Path,
    target: &Path,
    extra: &[&str],
) -> (std::process::Output, Vec<serde_json::Value>) {
    let out = bootstick()
        .args(["write", "--yes", "--json"])
        .args(extra)
        .arg(image)
        .arg(target)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let lines = json_lines(&out.stdout);
    (out, lines)
}

/// A finished command's stderr, as text.
pub fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `screen` without its SGR escapes (`ESC [ … m`), as people read it.
pub fn plain_screen(screen: &str) -> String {
    let mut out = String::with_capacity(screen.len());
    let mut chars = screen.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // ESC [ parameters, up to the final letter.
            for e in chars.by_ref() {
                if e.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Runs `bootstick write --yes --json ARGS... IMAGE TARGET`, calling `act`
/// once with the first JSON line of the write phase (`"phase": "write"`)
/// while the write goes on, and returns the exit code and every JSON line.
/// For tests of an image that changes during a write.
#[allow(dead_code)]
pub fn write_changing_image(
    image: &Path,
    target: &Path,
    args: &[&str],
    act: impl FnOnce(&serde_json::Value),
) -> (Option<i32>, Vec<serde_json::Value>) {
    use std::io::BufRead;
    let mut child = bootstick()
        .args(["write", "--yes", "--json"])
        .args(args)
        .arg(image)
        .arg(target)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut act = Some(act);
    let mut events = Vec::new();
    for line in std::io::BufReader::new(stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        if v["event"] == "phase" && v["phase"] == "write" {
            if let Some(a) = act.take() {
                a(&v);
            }
        }
        events.push(v);
    }
    let status = child.wait().unwrap();
    assert!(act.is_none(), "the write phase never started: {events:#?}");
    (status.code(), events)
}
