//! One QEMU guest: its command line, its captured consoles, its QMP socket
//! (the shutdown event, `screendump`), and the KVM probe.
//!
//! The medium is attached the way a USB stick is (`usb-storage` behind
//! `qemu-xhci`), opened **read-only** (`readonly=on`: QEMU opens the file
//! or device `O_RDONLY`, so even a QEMU bug cannot write it) with
//! `snapshot=on` (the guest's writes land in a temporary overlay in the
//! guest's private directory, so a loader that writes sees its writes).
//! No network (`-nic none`), 512 MiB of memory, `-no-reboot` (a reset ends
//! QEMU instead of booting again, so a reset is seen), and the process is
//! killed by its PID when the [`Machine`] is dropped.

use super::firmware::OvmfFiles;
use super::{Error, Firmware};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// The accelerator a guest runs under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// QEMU's emulator: works everywhere, slowly.
    Tcg,
    /// Hardware virtualisation, only where [`probe_kvm`] saw it work.
    Kvm,
}

impl Accel {
    pub fn name(self) -> &'static str {
        match self {
            Accel::Tcg => "tcg",
            Accel::Kvm => "kvm",
        }
    }
}

/// What to start.
#[derive(Clone, Debug)]
pub struct Spec<'a> {
    pub qemu: &'a Path,
    pub firmware: Firmware,
    /// OVMF's files (UEFI firmwares only).
    pub ovmf: Option<&'a OvmfFiles>,
    /// The medium to attach as a USB stick (none for the KVM probe).
    pub medium: Option<&'a Path>,
    pub accel: Accel,
    pub memory_mib: u32,
}

/// The arguments for `spec`, with its files in `dir` (the VARS copy must
/// already be there as `OVMF_VARS.fd`).
pub fn args(spec: &Spec, dir: &Path) -> Vec<String> {
    let p = |name: &str| dir.join(name).display().to_string();
    let mut a: Vec<String> = [
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
        "-nic",
        "none",
        "-device",
        "VGA",
    ]
    .map(String::from)
    .to_vec();
    a.extend(["-m".into(), spec.memory_mib.to_string()]);
    a.extend(["-accel".into(), spec.accel.name().into()]);
    if spec.firmware == Firmware::UefiSecureBoot {
        // Secure Boot's variables are protected by SMM: OVMF's .ms build
        // refuses to run without it.
        a.extend(["-machine".into(), "q35,smm=on".into()]);
        a.extend([
            "-global".into(),
            "driver=cfi.pflash01,property=secure,value=on".into(),
        ]);
    }
    a.extend(["-serial".into(), format!("file:{}", p("serial.log"))]);
    a.extend([
        "-chardev".into(),
        format!("file,id=fwlog,path={}", p("firmware.log")),
        "-device".into(),
        "isa-debugcon,iobase=0x402,chardev=fwlog".into(),
    ]);
    a.extend([
        "-qmp".into(),
        // wait=on: QEMU starts the guest only once QMP is connected, so
        // no event (a fast guest's SHUTDOWN) happens before it.
        format!("unix:{},server=on,wait=on", p("qmp.sock")),
    ]);
    // "Triple fault" is logged under cpu_reset.
    a.extend(["-d".into(), "cpu_reset".into(), "-D".into(), p("qemu.log")]);
    if let Some(ovmf) = spec.ovmf {
        a.extend([
            "-drive".into(),
            format!(
                "if=pflash,format=raw,unit=0,readonly=on,file={}",
                escape(&ovmf.code)
            ),
            "-drive".into(),
            format!(
                "if=pflash,format=raw,unit=1,file={}",
                escape(&dir.join("OVMF_VARS.fd"))
            ),
        ]);
    }
    if let Some(medium) = spec.medium {
        a.extend([
            "-drive".into(),
            format!(
                "file={},format=raw,if=none,id=stick,readonly=on,snapshot=on",
                escape(medium)
            ),
            "-device".into(),
            "qemu-xhci,id=xhci".into(),
            "-device".into(),
            "usb-storage,bus=xhci.0,drive=stick,removable=on".into(),
        ]);
    }
    a
}

/// QEMU's option syntax separates with `,`; a `,` in a path is doubled.
fn escape(path: &Path) -> String {
    path.display().to_string().replace(',', ",,")
}

/// A running guest. Dropping it kills QEMU (by the PID started here).
pub struct Machine {
    child: Child,
    dir: tempfile::TempDir,
    qmp: Option<Qmp>,
    pub started: Instant,
}

impl Machine {
    /// Starts QEMU for `spec` in a private temporary directory.
    pub fn start(spec: &Spec) -> Result<Machine, Error> {
        let dir = tempfile::Builder::new()
            .prefix("bootstick-boot-")
            .tempdir()
            .map_err(|source| Error::Io {
                what: "create a temporary directory for the guest",
                source,
            })?;
        if let Some(ovmf) = spec.ovmf {
            std::fs::copy(&ovmf.vars, dir.path().join("OVMF_VARS.fd")).map_err(|source| {
                Error::Io {
                    what: "copy OVMF's variable store",
                    source,
                }
            })?;
        }
        let stderr =
            std::fs::File::create(dir.path().join("qemu.stderr")).map_err(|source| Error::Io {
                what: "create QEMU's stderr file",
                source,
            })?;
        let child = Command::new(spec.qemu)
            .args(args(spec, dir.path()))
            // The snapshot overlay goes beside the logs, removed with them.
            .env("TMPDIR", dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|source| Error::Spawn {
                program: spec.qemu.to_owned(),
                source,
            })?;
        let mut m = Machine {
            child,
            dir,
            qmp: None,
            started: Instant::now(),
        };
        let socket = m.file("qmp.sock");
        while m.qmp.is_none() {
            if m.poll_exit()?.is_some() || m.started.elapsed() > Duration::from_secs(30) {
                return Err(Error::QemuFailed {
                    firmware: spec.firmware,
                    stderr: m.stderr().trim().to_owned(),
                });
            }
            m.qmp = Qmp::connect(&socket);
            if m.qmp.is_none() {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // The guest runs from here.
        m.started = Instant::now();
        Ok(m)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The text of one of the guest's captured files.
    pub fn read(&self, name: &str) -> String {
        let mut buf = Vec::new();
        if let Ok(mut f) = std::fs::File::open(self.file(name)) {
            let _ = f.read_to_end(&mut buf);
        }
        String::from_utf8_lossy(&buf).into_owned()
    }

    fn poll_exit(&mut self) -> Result<Option<std::process::ExitStatus>, Error> {
        self.child.try_wait().map_err(|source| Error::Io {
            what: "wait for QEMU",
            source,
        })
    }

    /// Whether QEMU ended (its exit status).
    pub fn poll(&mut self) -> Result<Option<std::process::ExitStatus>, Error> {
        self.poll_exit()
    }

    /// How the guest ended, after QEMU exited with `status`: the QMP
    /// `SHUTDOWN` event's reason, else QEMU's status and stderr.
    pub fn ended(&mut self, status: std::process::ExitStatus) -> super::evidence::Ended {
        use super::evidence::Ended;
        let reason = self.qmp.as_mut().and_then(Qmp::shutdown_reason);
        match reason.as_deref() {
            Some("guest-shutdown") => Ended::PoweredOff,
            Some("guest-reset") => Ended::Reset,
            other => Ended::Other(format!(
                "QEMU ended ({status}{}){}",
                other.map(|r| format!(", {r}")).unwrap_or_default(),
                match self.read("qemu.stderr").trim() {
                    "" => String::new(),
                    s => format!(": {s}"),
                }
            )),
        }
    }

    /// Saves the screen as a PNG at `to` (QMP `screendump`).
    pub fn screendump(&mut self, to: &Path) -> Result<(), Error> {
        let qmp = self.qmp.as_mut().ok_or_else(|| Error::Qmp {
            detail: "QEMU's QMP socket is not available".into(),
        })?;
        qmp.execute(
            "screendump",
            json!({ "filename": to, "format": "png" }),
            Duration::from_secs(10),
        )
        .map(drop)
    }

    /// QEMU's stderr, for an error message.
    pub fn stderr(&self) -> String {
        self.read("qemu.stderr")
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// A QMP connection: a reader thread collects events and hands command
/// replies over a channel.
struct Qmp {
    stream: UnixStream,
    events: Arc<Mutex<Vec<Value>>>,
    replies: mpsc::Receiver<Value>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Qmp {
    fn connect(socket: &Path) -> Option<Qmp> {
        let stream = UnixStream::connect(socket).ok()?;
        let events = Arc::new(Mutex::new(Vec::new()));
        let (tx, replies) = mpsc::channel();
        let reader = {
            let stream = stream.try_clone().ok()?;
            let events = events.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    let Ok(v) = serde_json::from_str::<Value>(&line) else {
                        continue;
                    };
                    if v.get("event").is_some() {
                        events.lock().unwrap_or_else(|e| e.into_inner()).push(v);
                    } else if v.get("return").is_some() || v.get("error").is_some() {
                        let _ = tx.send(v);
                    }
                }
            })
        };
        let mut qmp = Qmp {
            stream,
            events,
            replies,
            reader: Some(reader),
        };
        qmp.execute("qmp_capabilities", json!({}), Duration::from_secs(10))
            .ok()?;
        Some(qmp)
    }

    fn execute(&mut self, command: &str, arguments: Value, wait: Duration) -> Result<Value, Error> {
        let fail = |detail: String| Error::Qmp { detail };
        let line = json!({ "execute": command, "arguments": arguments }).to_string();
        self.stream
            .write_all(format!("{line}\n").as_bytes())
            .map_err(|e| fail(format!("{command}: {e}")))?;
        let reply = self
            .replies
            .recv_timeout(wait)
            .map_err(|_| fail(format!("{command}: no reply within {} s", wait.as_secs())))?;
        match reply.get("error") {
            Some(e) => Err(fail(format!("{command}: {e}"))),
            None => Ok(reply),
        }
    }

    /// The reason of the `SHUTDOWN` event, once QEMU closed the socket
    /// (it has exited: every event it sent has been read).
    fn shutdown_reason(&mut self) -> Option<String> {
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        events
            .iter()
            .find(|e| e["event"] == "SHUTDOWN")
            .and_then(|e| e["data"]["reason"].as_str().map(str::to_owned))
    }
}

/// Whether KVM really works here: boots OVMF (no disk) under `-accel kvm`
/// and waits up to 10 s for its boot manager's first line on the serial
/// console. The test machines have a `/dev/kvm` that is a broken nested
/// KVM: guests hang or stop with a KVM emulation error, and a 512-byte
/// real-mode boot sector sometimes runs, so only firmware reaching its
/// boot manager (long mode, DXE drivers) is evidence. TCG without
/// `/dev/kvm` read-write, without OVMF, or when the probe fails.
///
/// The verdict is cached in `cache` (a directory) per host kernel: a broken
/// KVM costs the 10 s once.
pub fn probe_kvm(qemu: &Path, ovmf: Option<&OvmfFiles>, cache: Option<&Path>) -> Accel {
    let usable = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    let Some(ovmf) = ovmf.filter(|_| usable) else {
        return Accel::Tcg;
    };
    use sha2::{Digest, Sha256};
    let host = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let key = hex::encode(&Sha256::digest(format!("{host}{}", qemu.display()).as_bytes())[..8]);
    let cached = cache.map(|c| c.join(format!("kvm-probe-{key}")));
    if let Some(v) = cached
        .as_ref()
        .and_then(|c| std::fs::read_to_string(c).ok())
    {
        return if v.trim() == "kvm" {
            Accel::Kvm
        } else {
            Accel::Tcg
        };
    }
    let works = (|| {
        let mut m = Machine::start(&Spec {
            qemu,
            firmware: Firmware::Uefi,
            ovmf: Some(ovmf),
            medium: None,
            accel: Accel::Kvm,
            memory_mib: 256,
        })
        .ok()?;
        while m.started.elapsed() < Duration::from_secs(10) {
            if m.read("serial.log").contains("BdsDxe:") {
                return Some(());
            }
            if m.poll().ok()?.is_some() {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    })()
    .is_some();
    if let Some(c) = &cached {
        if let Some(d) = c.parent() {
            let _ = std::fs::create_dir_all(d);
        }
        let _ = std::fs::write(c, if works { "kvm" } else { "tcg" });
    }
    if works {
        Accel::Kvm
    } else {
        Accel::Tcg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(firmware: Firmware, ovmf: Option<&OvmfFiles>) -> Vec<String> {
        args(
            &Spec {
                qemu: Path::new("qemu"),
                firmware,
                ovmf,
                medium: Some(Path::new("/dev/sd,b")),
                accel: Accel::Tcg,
                memory_mib: 512,
            },
            Path::new("/tmp/g"),
        )
    }

    #[test]
    fn the_stick_is_read_only_snapshot_usb_storage_without_network() {
        let a = spec(Firmware::Bios, None).join(" ");
        assert!(
            a.contains("file=/dev/sd,,b,format=raw,if=none,id=stick,readonly=on,snapshot=on"),
            "{a}"
        );
        assert!(a.contains(
            "-device qemu-xhci,id=xhci -device usb-storage,bus=xhci.0,drive=stick,removable=on"
        ));
        assert!(a.contains("-nodefaults") && a.contains("-nic none") && a.contains("-no-reboot"));
        assert!(!a.contains("pflash") && !a.contains("smm"), "{a}");
    }

    #[test]
    fn secure_boot_gets_smm_q35_and_a_private_vars_copy() {
        let ovmf = OvmfFiles {
            code: "/usr/share/OVMF/OVMF_CODE_4M.ms.fd".into(),
            vars: "/usr/share/OVMF/OVMF_VARS_4M.ms.fd".into(),
        };
        let a = spec(Firmware::UefiSecureBoot, Some(&ovmf)).join(" ");
        assert!(a.contains("-machine q35,smm=on"), "{a}");
        assert!(a.contains("-global driver=cfi.pflash01,property=secure,value=on"));
        assert!(a.contains("unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.ms.fd"));
        assert!(a.contains("unit=1,file=/tmp/g/OVMF_VARS.fd"), "{a}");
        let plain = spec(Firmware::Uefi, Some(&ovmf)).join(" ");
        assert!(!plain.contains("smm"), "{plain}");
    }
}
