//! The test-bed guest: a small Linux VM (QEMU, TCG unless KVM really works)
//! with emulated USB sticks, in which the freshly built `bootstick` runs.
//!
//! Loop devices are not USB sticks: their sysfs looks different, they never
//! vanish and never fail. Inside this guest bootstick faces what users' sticks
//! look like to Linux — `usb-storage` SCSI disks behind an xHCI controller,
//! removable, with vendor/model/serial, `/dev/disk/by-id` links made by the
//! real udev — plus a virtio disk (ext4, mounted) standing in for the system
//! disk. The host side can inject I/O errors (`blkdebug`) and unplug sticks
//! (QMP `device_del`).
//!
//! Pieces, all built at test time and cached under `target/fixtures/`:
//! - the kernel: Debian's `linux-image-<abi>-amd64` (the dependency of
//!   `linux-image-amd64`), fetched with `apt-get download`, unpacked with
//!   `dpkg-deb`. The bzImage's xz payload is decompressed to an ELF `vmlinux`
//!   that QEMU boots through its PVH entry point: decompressing xz under TCG
//!   costs ~6 s per boot. Only the modules the test-bed needs (and their
//!   dependencies, from `depmod`) are kept. Keyed by the package's SHA-256.
//! - the initramfs: busybox (static), udevd (`udevadm` and its libraries),
//!   util-linux `script` (a terminal for the picker; busybox has none), the
//!   `bootstick` binary under test (stripped, with its libraries), the modules
//!   and `/init`. Keyed by the hash of everything that goes in.
//! - per run: an ext4 image (made with `mkfs.ext4 -d`, never mounted on the
//!   host) holding the test's script `run.sh` and its files; the guest mounts
//!   it at `/mnt/sys` (and binds it on `/boot`, so it is a system disk the way
//!   an installed system's disk is) and runs the script there.
//!
//! The script's output goes to the second serial port between markers, with
//! its exit status; the kernel console (first port) is kept for diagnostics.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// Host programs the test-bed needs (Debian packages in `scripts/test.sh`).
pub const TOOLS: &[&str] = &[
    "qemu-system-x86_64",
    "apt-get",
    "apt-cache",
    "dpkg-deb",
    "depmod",
    "xz",
    "cpio",
    "busybox",
    "udevadm",
    "script",
    "mkfs.ext4",
    "strip",
    "ldd",
];

/// Marks the start of the script's output on the result port.
const BEGIN: &str = "@@BOOTSTICK-GUEST-BEGIN@@";
/// Followed by the script's exit status.
const END: &str = "@@BOOTSTICK-GUEST-END@@ ";

/// Modules the guest loads (with their dependencies): xHCI, USB mass storage
/// (BOT and UAS), SCSI disks and CD-ROMs, virtio disks, ext4 (with the
/// crc32c it asks the crypto API for). Part of the kernel cache's key.
const MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_blk",
    "xhci_pci",
    "usb_storage",
    "uas",
    "sd_mod",
    "sr_mod",
    "crc32c_generic",
    "ext4",
];

/// The kernel cache directory's suffix: which [`MODULES`] it was cut for.
fn modules_key() -> String {
    sha256_hex(MODULES.join(",").as_bytes())[..8].to_string()
}

/// udev rules that make `/dev/disk/by-id` (and nothing else).
const UDEV_RULES: &[&str] = &[
    "50-udev-default.rules",
    "60-block.rules",
    "60-persistent-storage.rules",
];

/// True when the test-bed can run here; otherwise skips (or fails in strict mode).
pub fn require(test: &str) -> bool {
    super::require_tools(test, TOOLS)
}

/// `target/fixtures`, where built fixtures are cached.
pub fn fixtures_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("CARGO_TARGET_TMPDIR has a parent")
        .join("fixtures");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn output(cmd: &mut Command) -> String {
    super::run(cmd)
}

/// A directory next to `dest` to build into, renamed onto `dest` when complete
/// so that concurrent test processes never see half-built fixtures.
fn build_dir(dest: &Path) -> PathBuf {
    let tmp = dest.with_extension(format!("tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    tmp
}

fn publish(tmp: &Path, dest: &Path) {
    if std::fs::rename(tmp, dest).is_err() {
        // Another process published the same content first.
        let _ = std::fs::remove_dir_all(tmp);
        assert!(dest.exists(), "cannot publish {}", dest.display());
    }
}

// ---------------------------------------------------------------- kernel

/// The guest kernel: an uncompressed ELF image and the modules to load, in
/// load order.
pub struct Kernel {
    pub release: String,
    pub vmlinux: PathBuf,
    pub modules: Vec<PathBuf>,
}

/// The cached kernel, built on first use.
pub fn kernel() -> &'static Kernel {
    static KERNEL: OnceLock<Kernel> = OnceLock::new();
    KERNEL.get_or_init(build_kernel)
}

/// `linux-image-<abi>-amd64`, the package `linux-image-amd64` depends on.
fn kernel_package() -> String {
    let deps = output(Command::new("apt-cache").args(["depends", "linux-image-amd64"]));
    deps.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| p.starts_with("linux-image-") && p.ends_with("-amd64"))
        .unwrap_or_else(|| panic!("no linux-image-*-amd64 dependency in:\n{deps}"))
        .to_string()
}

fn package_field(show: &str, field: &str) -> Option<String> {
    show.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}: ")))
        .map(|v| v.trim().to_string())
}

/// A complete cached kernel, newest first: once a kernel is cached the
/// test-bed sticks to it (apt is slow to ask, and a pinned guest kernel keeps
/// runs comparable). Delete `target/fixtures/guest-kernel-*` to move on.
fn cached_kernel() -> Option<PathBuf> {
    let mut dirs: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(fixtures_dir())
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().is_some_and(|n| {
                let n = n.to_string_lossy();
                n.starts_with("guest-kernel-") && n.ends_with(&format!("-{}", modules_key()))
            }) && p.join("modules.order").is_file()
        })
        .filter_map(|p| Some((p.metadata().ok()?.modified().ok()?, p)))
        .collect();
    dirs.sort();
    dirs.pop().map(|(_, p)| p)
}

fn build_kernel() -> Kernel {
    let dest = cached_kernel().unwrap_or_else(download_kernel);
    let release = std::fs::read_to_string(dest.join("release")).unwrap();
    let modules = std::fs::read_to_string(dest.join("modules.order"))
        .unwrap()
        .lines()
        .map(|n| dest.join(n))
        .collect();
    Kernel {
        release,
        vmlinux: dest.join("vmlinux"),
        modules,
    }
}

/// Fetches and unpacks the kernel package; returns the cache directory.
fn download_kernel() -> PathBuf {
    let pkg = kernel_package();
    let show = output(Command::new("apt-cache").args(["show", "--no-all-versions", &pkg]));
    let sha = package_field(&show, "SHA256")
        .unwrap_or_else(|| panic!("apt-cache show {pkg}: no SHA256 field"));
    let dest = fixtures_dir().join(format!("guest-kernel-{}-{}", &sha[..16], modules_key()));
    if !dest.join("modules.order").exists() {
        let tmp = build_dir(&dest);
        let dl = tmp.join("download");
        std::fs::create_dir_all(&dl).unwrap();
        output(
            Command::new("apt-get")
                .args(["download", "-q", &pkg])
                .current_dir(&dl),
        );
        let deb = std::fs::read_dir(&dl)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "deb"))
            .unwrap_or_else(|| panic!("apt-get download {pkg} left no .deb"));
        let got = sha256_hex(&std::fs::read(&deb).unwrap());
        assert_eq!(got, sha, "{} does not match apt's SHA256", deb.display());
        let root = tmp.join("root");
        output(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
        let release = std::fs::read_dir(root.join("lib/modules"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .next()
            .expect("the kernel package has lib/modules/<release>");
        // The .deb ships no modules.dep: depmod writes it at install time.
        output(Command::new("depmod").arg("-b").arg(&root).arg(&release));
        let moddir = root.join("lib/modules").join(&release);
        let order = module_closure(&std::fs::read_to_string(moddir.join("modules.dep")).unwrap());
        let mut names = String::new();
        for rel in &order {
            let name = Path::new(rel).file_name().unwrap();
            std::fs::copy(moddir.join(rel), tmp.join(name)).unwrap();
            names.push_str(&name.to_string_lossy());
            names.push('\n');
        }
        let vmlinuz = root.join("boot").join(format!("vmlinuz-{release}"));
        extract_vmlinux(&vmlinuz, &tmp.join("vmlinux"));
        std::fs::write(tmp.join("release"), &release).unwrap();
        std::fs::remove_dir_all(&root).unwrap();
        std::fs::remove_dir_all(&dl).unwrap();
        std::fs::write(tmp.join("modules.order"), names).unwrap();
        publish(&tmp, &dest);
    }
    dest
}

/// Module name as the kernel spells it (`xhci-pci.ko` → `xhci_pci`).
fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

/// The modules in [`MODULES`] and everything they depend on, each after its
/// dependencies, as paths relative to the modules directory.
fn module_closure(modules_dep: &str) -> Vec<String> {
    let mut deps = std::collections::HashMap::new();
    let mut by_name = std::collections::HashMap::new();
    for line in modules_dep.lines() {
        let Some((module, rest)) = line.split_once(':') else {
            continue;
        };
        by_name.insert(module_name(module), module.to_string());
        deps.insert(
            module.to_string(),
            rest.split_whitespace()
                .map(str::to_string)
                .collect::<Vec<_>>(),
        );
    }
    fn visit(
        m: &str,
        deps: &std::collections::HashMap<String, Vec<String>>,
        out: &mut Vec<String>,
    ) {
        if out.iter().any(|o| o == m) {
            return;
        }
        for d in deps.get(m).into_iter().flatten() {
            visit(d, deps, out);
        }
        out.push(m.to_string());
    }
    let mut out = Vec::new();
    for want in MODULES {
        let path = by_name
            .get(*want)
            .unwrap_or_else(|| panic!("module {want} is not in the kernel package"));
        visit(path, &deps, &mut out);
    }
    out
}

/// Decompresses the xz payload of a bzImage into an ELF `vmlinux`.
fn extract_vmlinux(bzimage: &Path, out: &Path) {
    let data = std::fs::read(bzimage).unwrap();
    let magic = b"\xfd7zXZ\x00";
    let at = data
        .windows(magic.len())
        .position(|w| w == magic)
        .unwrap_or_else(|| panic!("{}: no xz payload", bzimage.display()));
    let mut child = Command::new("xz")
        .args(["-dc", "--single-stream"])
        .stdin(Stdio::piped())
        .stdout(std::fs::File::create(out).unwrap())
        .spawn()
        .unwrap();
    let payload = data[at..].to_vec();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        // xz stops reading after the stream; the trailing bytes may hit EPIPE.
        let _ = stdin.write_all(&payload);
    });
    let status = child.wait().unwrap();
    writer.join().unwrap();
    assert!(
        status.success(),
        "xz could not unpack {}",
        bzimage.display()
    );
    let mut head = [0u8; 4];
    std::fs::File::open(out)
        .unwrap()
        .read_exact(&mut head)
        .unwrap();
    assert_eq!(&head, b"\x7fELF", "{} is not an ELF kernel", out.display());
}

// ---------------------------------------------------------------- initramfs

const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts
mount -t devpts -o ptmxmode=0666 devpts /dev/pts
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
for m in $(cat /lib/modules/load); do
  args=
  # usb-storage waits 1 s before scanning a new device by default.
  [ "$m" = usb-storage.ko ] && args=delay_use=0
  insmod /lib/modules/$m $args || echo "testbed init: insmod $m failed"
done
/lib/systemd/systemd-udevd --daemon --resolve-names=never
udevadm trigger --action=add --type=subsystems
udevadm trigger --action=add --type=devices
udevadm settle --timeout=60
want=$(sed -n 's/.*bootstick\.sticks=\([0-9]*\).*/\1/p' /proc/cmdline)
discs=$(sed -n 's/.*bootstick\.discs=\([0-9]*\).*/\1/p' /proc/cmdline)
i=0
while :; do
  n=0
  for d in /sys/block/sd*; do
    case "$(readlink -f $d)" in */usb*) n=$((n+1));; esac
  done
  c=0
  for d in /sys/block/sr*; do [ -e "$d" ] && c=$((c+1)); done
  [ "$n" -ge "${want:-0}" ] && [ "$c" -ge "${discs:-0}" ] && [ -e /dev/vda ] && break
  i=$((i+1))
  [ $i -ge 600 ] && { echo "testbed init: only $n of $want sticks and $c of $discs discs appeared"; break; }
  sleep 0.1
done
udevadm settle --timeout=60
mkdir -p /mnt/sys
mount -t ext4 /dev/vda /mnt/sys || echo "testbed init: cannot mount the system disk"
# Like an installed system's disk, it holds /boot (the root is the initramfs).
mkdir -p /boot
mount --bind /mnt/sys /boot
stty -F /dev/ttyS1 raw -echo
cd /mnt/sys
echo "@@BOOTSTICK-GUEST-BEGIN@@" > /dev/ttyS1
sh ./run.sh > /dev/ttyS1 2>&1 < /dev/null
echo "@@BOOTSTICK-GUEST-END@@ $?" > /dev/ttyS1
cd /
sync
umount /boot
umount /mnt/sys
poweroff -f
"#;

/// Shared libraries a dynamic executable needs (empty for static ones).
fn shared_libraries(exe: &Path) -> Vec<PathBuf> {
    let out = Command::new("ldd").arg(exe).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = match l.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next()?,
                None => l.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

fn which(tool: &str) -> PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{tool} not on PATH"))
}

/// Copies `src` to `root`+`dest` (absolute), creating directories.
fn install(root: &Path, src: &Path, dest: &Path) {
    let to = root.join(dest.strip_prefix("/").unwrap_or(dest));
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(src, &to).unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
}

/// The cached initramfs (uncompressed newc cpio) for this build of bootstick.
/// Adds `path`'s name, size and modification time to a fixture's cache
/// key: cheaper than hashing a ~50 MB debug binary, and changed by any
/// rebuild or package upgrade.
fn stamp(key: &mut Sha256, path: &Path) {
    let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mtime = meta
        .modified()
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    key.update(format!(
        "{}\0{}\0{}\n",
        path.display(),
        meta.len(),
        mtime.as_nanos()
    ));
}

pub fn initramfs() -> &'static PathBuf {
    static INITRAMFS: OnceLock<PathBuf> = OnceLock::new();
    INITRAMFS.get_or_init(build_initramfs)
}

fn build_initramfs() -> PathBuf {
    let kernel = kernel();
    let bootstick = PathBuf::from(env!("CARGO_BIN_EXE_bootstick"));
    let busybox = std::fs::canonicalize(which("busybox")).unwrap();
    let udevadm = std::fs::canonicalize(which("udevadm")).unwrap();
    let script = std::fs::canonicalize(which("script")).unwrap();
    let rules_dir = ["/usr/lib/udev/rules.d", "/lib/udev/rules.d"]
        .iter()
        .map(PathBuf::from)
        .find(|d| d.join(UDEV_RULES[0]).exists())
        .expect("udev rules directory");
    let mut executables = vec![
        busybox.clone(),
        udevadm.clone(),
        script.clone(),
        bootstick.clone(),
    ];
    executables.sort();
    let mut libs: Vec<PathBuf> = executables
        .iter()
        .flat_map(|e| shared_libraries(e))
        .collect();
    libs.sort();
    libs.dedup();

    // The cache key: every file that goes into the archive, by path, size
    // and modification time (hashing the ~50 MB debug binary with an
    // unoptimised SHA-256 would cost seconds per test process), and /init.
    let mut key = Sha256::new();
    key.update(INIT.as_bytes());
    let mut inputs: Vec<PathBuf> = executables.clone();
    inputs.extend(libs.iter().cloned());
    inputs.extend(kernel.modules.iter().cloned());
    inputs.extend(UDEV_RULES.iter().map(|r| rules_dir.join(r)));
    for p in &inputs {
        stamp(&mut key, p);
    }
    let key = hex::encode(key.finalize());
    let dest = fixtures_dir().join(format!("guest-initramfs-{}", &key[..16]));
    let cpio = dest.join("initramfs.cpio");
    if cpio.exists() {
        return cpio;
    }
    let tmp = build_dir(&dest);
    let root = tmp.join("root");
    for d in ["proc", "sys", "dev", "run", "tmp", "mnt/sys", "etc", "root"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    install(&root, &busybox, Path::new("/bin/busybox"));
    install(&root, &udevadm, Path::new("/bin/udevadm"));
    install(&root, &script, Path::new("/bin/script"));
    std::fs::create_dir_all(root.join("lib/systemd")).unwrap();
    std::os::unix::fs::symlink("/bin/udevadm", root.join("lib/systemd/systemd-udevd")).unwrap();
    // Stripped: a debug build is mostly DWARF, which only slows the guest.
    output(
        Command::new("strip")
            .arg("-o")
            .arg(root.join("bin/bootstick"))
            .arg(&bootstick),
    );
    for lib in &libs {
        install(&root, lib, lib);
    }
    for r in UDEV_RULES {
        install(
            &root,
            &rules_dir.join(r),
            &Path::new("/lib/udev/rules.d").join(r),
        );
    }
    let mut load = String::new();
    for m in &kernel.modules {
        let name = m.file_name().unwrap();
        install(&root, m, &Path::new("/lib/modules").join(name));
        load.push_str(&name.to_string_lossy());
        load.push('\n');
    }
    std::fs::write(root.join("lib/modules/load"), load).unwrap();
    std::fs::write(root.join("init"), INIT).unwrap();
    std::fs::set_permissions(
        root.join("init"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let list = output(Command::new("find").arg(".").current_dir(&root));
    let mut entries: Vec<&str> = list.lines().collect();
    entries.sort();
    let mut child = super::spawn_with_input(
        Command::new("cpio")
            .args(["-o", "-H", "newc", "--quiet", "-R", "0:0"])
            .current_dir(&root)
            .stdout(std::fs::File::create(tmp.join("initramfs.cpio")).unwrap()),
        (entries.join("\n") + "\n").as_bytes(),
    );
    assert!(child.wait().unwrap().success(), "cpio failed");
    std::fs::remove_dir_all(&root).unwrap();
    publish(&tmp, &dest);
    remove_stale_initramfs(&dest);
    cpio
}

/// Every build of bootstick makes a new initramfs (~20 MB): drop those of
/// earlier builds that no run can still be using.
fn remove_stale_initramfs(current: &Path) {
    let Ok(entries) = std::fs::read_dir(fixtures_dir()) else {
        return;
    };
    for p in entries.filter_map(|e| e.ok().map(|e| e.path())) {
        let stale = p != current
            && p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("guest-initramfs-"))
            && p.metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > Duration::from_secs(3600));
        if stale {
            let _ = std::fs::remove_dir_all(&p);
        }
    }
}

// ---------------------------------------------------------------- accelerator

/// `kvm` only when a short guest boot under KVM really completes; `tcg`
/// otherwise. `BOOTSTICK_QEMU_ACCEL=tcg|kvm` overrides the probe.
pub fn accel() -> &'static str {
    static ACCEL: OnceLock<&'static str> = OnceLock::new();
    ACCEL.get_or_init(|| match std::env::var("BOOTSTICK_QEMU_ACCEL").as_deref() {
        Ok("kvm") => "kvm",
        Ok("tcg") => "tcg",
        _ => probe_kvm(),
    })
}

fn probe_kvm() -> &'static str {
    let usable = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    if !usable {
        return "tcg";
    }
    // Remember the verdict per host kernel: a broken KVM costs the timeout.
    let host = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cache = fixtures_dir().join(format!("guest-kvm-probe-{}", sha256_hex(host.as_bytes())));
    if let Ok(v) = std::fs::read_to_string(&cache) {
        return if v.trim() == "kvm" { "kvm" } else { "tcg" };
    }
    let mut g = Guest::new("true");
    g.accel = "kvm";
    g.timeout = Duration::from_secs(40);
    let verdict = match g.spawn().finish_within() {
        Some(o) if o.status == Some(0) => "kvm",
        _ => "tcg",
    };
    std::fs::write(&cache, verdict).unwrap();
    verdict
}

// ---------------------------------------------------------------- guests

/// Guests running at once in this process, and a wake-up for waiters.
static SLOTS: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());

/// At most two guests at once: TCG keeps one host core busy per guest.
fn slot() -> SlotGuard {
    let (m, cv) = &SLOTS;
    let mut busy = m.lock().unwrap_or_else(|e| e.into_inner());
    while *busy >= 2 {
        busy = cv.wait(busy).unwrap_or_else(|e| e.into_inner());
    }
    *busy += 1;
    SlotGuard
}

struct SlotGuard;

impl Drop for SlotGuard {
    fn drop(&mut self) {
        let (m, cv) = &SLOTS;
        *m.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        cv.notify_one();
    }
}

/// An emulated USB stick backed by a host image file.
#[derive(Clone, Debug)]
pub struct Stick {
    pub image: PathBuf,
    /// The USB serial number (shows up in `/dev/disk/by-id`).
    pub serial: String,
    /// A `blkdebug` rules file: inject errors between the stick and its image.
    pub blkdebug: Option<PathBuf>,
    /// Emulated logical sector size (512 when `None`).
    pub logical_block_size: Option<u32>,
    /// Cap reads from the stick at this many bytes per second (a QEMU
    /// `throttle` filter), to stretch a read-back without slowing the write.
    pub read_bytes_per_second: Option<u64>,
    /// Serve the stick from an NBD server on this Unix socket (QEMU's NBD
    /// client) instead of `image`: an `nbdkit` emulation of a misbehaving
    /// stick.
    pub nbd_socket: Option<PathBuf>,
}

impl Stick {
    pub fn new(image: &Path, serial: &str) -> Stick {
        Stick {
            image: image.to_path_buf(),
            serial: serial.to_string(),
            blkdebug: None,
            logical_block_size: None,
            read_bytes_per_second: None,
            nbd_socket: None,
        }
    }

    /// The by-id name udev gives the stick's whole disk in the guest.
    pub fn by_id(&self) -> String {
        format!("/dev/disk/by-id/usb-QEMU_QEMU_HARDDISK_{}-0:0", self.serial)
    }
}

/// A `blkdebug` rules file that fails every `iotype` ("read" or "write")
/// request touching 512-byte `sector` with EIO.
pub fn blkdebug_rules(dir: &std::path::Path, iotype: &str, sector: u64) -> std::path::PathBuf {
    let event = match iotype {
        "read" => "read_aio",
        "write" => "write_aio",
        other => panic!("iotype {other}"),
    };
    let p = dir.join(format!("blkdebug-{iotype}-{sector}.conf"));
    std::fs::write(
        &p,
        format!(
            "[inject-error]\nevent = \"{event}\"\niotype = \"{iotype}\"\nerrno = \"5\"\n\
             sector = \"{sector}\"\nonce = \"off\"\nimmediately = \"off\"\n"
        ),
    )
    .unwrap();
    p
}

/// An emulated optical drive (a USB CD/DVD drive: QEMU's `usb-bot` with a
/// `scsi-cd`) holding a disc whose bytes are a host image file; the guest
/// sees `/dev/srN` with 2048-byte sectors and the image's size as its
/// capacity.
#[derive(Clone, Debug)]
pub struct Disc {
    pub image: PathBuf,
    /// A `blkdebug` rules file: inject read errors on the disc (sectors in
    /// the rules count 512 bytes: LBA × 4).
    pub blkdebug: Option<PathBuf>,
}

/// One guest run: a script, files for the system disk, sticks.
pub struct Guest {
    script: String,
    files: Vec<(String, PathBuf)>,
    sparse: Vec<(String, u64)>,
    pub sticks: Vec<Stick>,
    pub discs: Vec<Disc>,
    pub timeout: Duration,
    accel: &'static str,
    /// The xHCI controller even without sticks at boot: sticks are
    /// hot-plugged later ([`Running::plug`]).
    hotplug: bool,
}

/// What a finished guest run reported.
#[derive(Debug)]
pub struct Outcome {
    /// The script's combined stdout and stderr.
    pub output: String,
    /// The script's exit status; `None` when the guest never reported one.
    pub status: Option<i32>,
    /// The kernel console, for diagnostics.
    pub console: String,
}

impl Outcome {
    /// Panics, showing everything, unless the script exited 0.
    pub fn assert_success(&self) -> &Self {
        assert_eq!(self.status, Some(0), "guest script failed:\n{self}");
        self
    }
}

impl Outcome {
    /// The lines a script printed after a line `@@ <name>` and before the next
    /// `@@ ` line: scripts mark the output of each command this way.
    pub fn section(&self, name: &str) -> String {
        let head = format!("@@ {name}");
        let mut lines = self.output.lines().skip_while(|l| l.trim_end() != head);
        assert!(lines.next().is_some(), "no `{head}` in the output:\n{self}");
        lines
            .take_while(|l| !l.starts_with("@@ "))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "status: {:?}\n--- script output ---\n{}\n--- guest console ---\n{}",
            self.status, self.output, self.console
        )
    }
}

impl Guest {
    /// A guest that runs `script` (POSIX sh, busybox) in `/mnt/sys`, the
    /// mounted system disk, with `bootstick` on PATH.
    pub fn new(script: &str) -> Guest {
        Guest {
            script: script.to_string(),
            files: Vec::new(),
            sparse: Vec::new(),
            sticks: Vec::new(),
            discs: Vec::new(),
            timeout: Duration::from_secs(180),
            accel: "",
            hotplug: false,
        }
    }

    /// Sticks (and other disks) will be hot-plugged while the guest runs
    /// ([`Running::plug`], [`Running::plug_virtio`]).
    pub fn hotplug(mut self) -> Guest {
        self.hotplug = true;
        self
    }

    /// Puts a host file on the guest's system disk as `/mnt/sys/<name>`.
    pub fn file(mut self, name: &str, host: &Path) -> Guest {
        self.files.push((name.to_string(), host.to_path_buf()));
        self
    }

    /// Puts a sparse file of `len` zero bytes on the system disk as
    /// `/mnt/sys/<name>`: a large image that costs no host disk space.
    pub fn sparse_file(mut self, name: &str, len: u64) -> Guest {
        self.sparse.push((name.to_string(), len));
        self
    }

    pub fn stick(mut self, stick: Stick) -> Guest {
        self.sticks.push(stick);
        self
    }

    /// An optical drive with `disc` in it; the guest waits for its `srN`.
    pub fn disc(mut self, disc: Disc) -> Guest {
        self.discs.push(disc);
        self
    }

    /// Runs the guest to completion.
    pub fn run(self) -> Outcome {
        let running = self.spawn();
        let timeout = running.timeout;
        running
            .finish_within()
            .unwrap_or_else(|| panic!("the guest did not finish within {timeout:?}"))
    }

    /// Starts the guest; use [`Running`] to watch and steer it.
    pub fn spawn(self) -> Running {
        let accel = if self.accel.is_empty() {
            accel()
        } else {
            self.accel
        };
        let kernel = kernel();
        let initramfs = initramfs();
        let guard = slot();
        let dir = tempfile::Builder::new()
            .prefix("guest-")
            .tempdir_in(fixtures_dir())
            .unwrap();
        let disk = self.system_disk(dir.path());
        let console = dir.path().join("console.log");
        let out = dir.path().join("out.log");
        let qmp = dir.path().join("qmp.sock");
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args(["-nodefaults", "-no-user-config", "-display", "none"])
            .args(["-machine", &format!("pc,accel={accel}")])
            .args(["-m", "512", "-smp", "1", "-no-reboot"])
            .arg("-kernel")
            .arg(&kernel.vmlinux)
            .arg("-initrd")
            .arg(initramfs)
            .arg("-append")
            .arg(format!(
                // no_timer_check: on a loaded host a TCG guest can miss the
                // IO-APIC timer test and panic ("IO-APIC + timer doesn't work").
                "console=ttyS0 quiet loglevel=3 panic=-1 no_timer_check bootstick.sticks={} bootstick.discs={}",
                self.sticks.len(),
                self.discs.len()
            ))
            .arg("-serial")
            .arg(format!("file:{}", console.display()))
            .arg("-serial")
            .arg(format!("file:{}", out.display()))
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", qmp.display()))
            .arg("-drive")
            .arg(format!(
                "if=none,id=sysdisk,format=raw,file={}",
                disk.display()
            ))
            .args(["-device", "virtio-blk-pci,drive=sysdisk,serial=SYSTEMDISK"]);
        if !self.sticks.is_empty() || !self.discs.is_empty() || self.hotplug {
            cmd.args(["-device", "qemu-xhci,id=xhci"]);
        }
        for (i, d) in self.discs.iter().enumerate() {
            let file = match &d.blkdebug {
                None => format!("file.driver=file,file.filename={}", d.image.display()),
                Some(rules) => format!(
                    "file.driver=blkdebug,file.config={},file.image.driver=file,file.image.filename={}",
                    rules.display(),
                    d.image.display()
                ),
            };
            cmd.arg("-blockdev")
                .arg(format!("node-name=disc{i},driver=raw,{file}"));
            cmd.arg("-device")
                .arg(format!("usb-bot,bus=xhci.0,id=cdrom{i},serial=DISC{i}"));
            cmd.arg("-device")
                .arg(format!("scsi-cd,bus=cdrom{i}.0,lun=0,drive=disc{i}"));
        }
        for (i, s) in self.sticks.iter().enumerate() {
            // The raw node, or under a throttle filter the raw node as its
            // `file` child (every option prefixed with `file.`).
            let (top, p) = match s.read_bytes_per_second {
                None => (format!("node-name=drive{i},"), ""),
                Some(bps) => {
                    cmd.arg("-object")
                        .arg(format!("throttle-group,id=tg{i},x-bps-read={bps}"));
                    (
                        format!("driver=throttle,node-name=drive{i},throttle-group=tg{i},"),
                        "file.",
                    )
                }
            };
            let raw = match (&s.nbd_socket, &s.blkdebug) {
                (Some(sock), _) => format!(
                    "{p}driver=raw,{p}file.driver=nbd,{p}file.server.type=unix,{p}file.server.path={}",
                    sock.display()
                ),
                (None, None) => format!(
                    "{p}driver=raw,{p}file.driver=file,{p}file.filename={}",
                    s.image.display()
                ),
                (None, Some(rules)) => format!(
                    "{p}driver=raw,{p}file.driver=blkdebug,{p}file.config={},\
                     {p}file.image.driver=file,{p}file.image.filename={}",
                    rules.display(),
                    s.image.display()
                ),
            };
            let node = top + &raw;
            cmd.arg("-blockdev").arg(node);
            match s.logical_block_size {
                None => {
                    cmd.arg("-device").arg(format!(
                        "usb-storage,bus=xhci.0,id=stick{i},drive=drive{i},removable=on,serial={}",
                        s.serial
                    ));
                }
                // usb-storage does not pass a sector size on to its SCSI
                // disk; the bare transport (usb-bot, the same device to the
                // guest) with an explicit scsi-hd does.
                Some(n) => {
                    cmd.arg("-device").arg(format!(
                        "usb-bot,bus=xhci.0,id=stick{i},serial={}",
                        s.serial
                    ));
                    cmd.arg("-device").arg(format!(
                        "scsi-hd,bus=stick{i}.0,lun=0,drive=drive{i},removable=on,\
                         logical_block_size={n},physical_block_size={n}"
                    ));
                }
            }
        }
        cmd.stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.path().join("qemu.out")).unwrap())
            .stderr(std::fs::File::create(dir.path().join("qemu.err")).unwrap());
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        Running {
            child,
            dir,
            console,
            out,
            qmp,
            started: Instant::now(),
            timeout: self.timeout,
            _slot: guard,
        }
    }

    /// The ext4 image with `run.sh` and the test's files.
    fn system_disk(&self, dir: &Path) -> PathBuf {
        let content = dir.join("sysdisk");
        std::fs::create_dir_all(&content).unwrap();
        std::fs::write(content.join("run.sh"), &self.script).unwrap();
        let mut bytes = 0u64;
        for (name, host) in &self.files {
            let to = content.join(name);
            if std::fs::hard_link(host, &to).is_err() {
                std::fs::copy(host, &to).unwrap_or_else(|e| panic!("{}: {e}", host.display()));
            }
            bytes += std::fs::metadata(host).unwrap().len();
        }
        for (name, len) in &self.sparse {
            std::fs::File::create(content.join(name))
                .unwrap()
                .set_len(*len)
                .unwrap();
            bytes += 1 << 20; // metadata; mkfs.ext4 -d keeps the holes
        }
        let size = (bytes + bytes / 8 + (64 << 20)).div_ceil(1 << 20) << 20;
        let img = dir.join("sysdisk.img");
        std::fs::File::create(&img).unwrap().set_len(size).unwrap();
        output(
            Command::new("mkfs.ext4")
                .args(["-q", "-F", "-E", "root_owner=0:0", "-d"])
                .arg(&content)
                .arg(&img),
        );
        std::fs::remove_dir_all(&content).unwrap();
        img
    }
}

/// A guest that is running.
pub struct Running {
    child: Child,
    dir: tempfile::TempDir,
    console: PathBuf,
    out: PathBuf,
    qmp: PathBuf,
    started: Instant,
    pub timeout: Duration,
    _slot: SlotGuard,
}

impl Running {
    fn read(path: &Path) -> String {
        String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).replace('\r', "")
    }

    /// The script's output so far.
    pub fn output_so_far(&self) -> String {
        let all = Self::read(&self.out);
        match all.split_once(BEGIN) {
            Some((_, after)) => after.trim_start_matches('\n').to_string(),
            None => String::new(),
        }
    }

    /// Waits until the script has printed `needle`; false if the guest ended
    /// or the run's timeout passed first.
    pub fn wait_for_output(&mut self, needle: &str) -> bool {
        self.wait_for_line(|l| l.contains(needle)).is_some()
    }

    /// Waits until the script has printed a whole line for which `wanted`
    /// holds, and returns it; `None` if the guest ended or the run's timeout
    /// passed first.
    pub fn wait_for_line(&mut self, wanted: impl Fn(&str) -> bool) -> Option<String> {
        loop {
            let ended =
                self.started.elapsed() > self.timeout || self.child.try_wait().unwrap().is_some();
            let out = self.output_so_far();
            // Only lines ended by a newline: the last one may still be growing.
            let complete = out.rsplit_once('\n').map_or("", |(whole, _)| whole);
            if let Some(l) = complete.lines().find(|l| wanted(l)) {
                return Some(l.to_string());
            }
            if ended {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends one QMP command (`execute` with `arguments`) and returns the reply.
    pub fn qmp(&self, execute: &str, arguments: serde_json::Value) -> serde_json::Value {
        let stream = UnixStream::connect(&self.qmp)
            .unwrap_or_else(|e| panic!("QMP {}: {e}", self.qmp.display()));
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        let mut line = String::new();
        reader.read_line(&mut line).unwrap(); // greeting
        let mut send = |cmd: serde_json::Value| -> serde_json::Value {
            writeln!(writer, "{cmd}").unwrap();
            loop {
                let mut line = String::new();
                assert!(reader.read_line(&mut line).unwrap() > 0, "QMP closed");
                let v: serde_json::Value = serde_json::from_str(&line).unwrap();
                if v.get("return").is_some() || v.get("error").is_some() {
                    return v;
                }
            }
        };
        send(serde_json::json!({"execute": "qmp_capabilities"}));
        send(serde_json::json!({"execute": execute, "arguments": arguments}))
    }

    /// The block node of a hot-plugged disk backed by `image` (through
    /// `blkdebug` when `rules` is given), named `node`.
    fn add_node(&self, node: &str, image: &Path, rules: Option<&Path>) {
        let file = serde_json::json!({"driver": "file", "filename": image});
        let file = match rules {
            None => file,
            Some(r) => serde_json::json!({"driver": "blkdebug", "config": r, "image": file}),
        };
        let reply = self.qmp(
            "blockdev-add",
            serde_json::json!({"driver": "raw", "node-name": node, "file": file}),
        );
        assert!(
            reply.get("return").is_some(),
            "blockdev-add {node}: {reply}"
        );
    }

    /// Hot-plugs `stick` as a USB stick with QMP `device_add` (its block
    /// node `<id>-node` added first): device `id`, for [`Running::unplug`].
    pub fn plug(&self, stick: &Stick, id: &str) {
        let node = format!("{id}-node");
        self.add_node(&node, &stick.image, stick.blkdebug.as_deref());
        self.replug(id, &stick.serial);
    }

    /// Plugs the device `id` in again after [`Running::unplug`]: the same
    /// block node, the same serial (the same stick re-inserted).
    pub fn replug(&self, id: &str, serial: &str) {
        let reply = self.qmp(
            "device_add",
            serde_json::json!({"driver": "usb-storage", "bus": "xhci.0", "id": id,
                "drive": format!("{id}-node"), "removable": true, "serial": serial}),
        );
        assert!(reply.get("return").is_some(), "device_add {id}: {reply}");
    }

    /// Hot-plugs a virtio disk (not USB) backed by `image`: device `id`.
    pub fn plug_virtio(&self, image: &Path, id: &str, serial: &str) {
        let node = format!("{id}-node");
        self.add_node(&node, image, None);
        let reply = self.qmp(
            "device_add",
            serde_json::json!({"driver": "virtio-blk-pci", "id": id, "drive": node, "serial": serial}),
        );
        assert!(reply.get("return").is_some(), "device_add {id}: {reply}");
    }

    /// Unplugs the device `id` (QMP `device_del`; the guest sees it go a
    /// moment later).
    pub fn unplug(&self, id: &str) {
        let reply = self.qmp("device_del", serde_json::json!({"id": id}));
        assert!(reply.get("return").is_some(), "device_del {id}: {reply}");
    }

    /// Waits for the guest to power off; `None` (after killing it) when the
    /// timeout passes first.
    pub fn finish_within(mut self) -> Option<Outcome> {
        let exited = loop {
            if self.child.try_wait().unwrap().is_some() {
                break true;
            }
            if self.started.elapsed() > self.timeout {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break false;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let all = Self::read(&self.out);
        let console = Self::read(&self.console) + &Self::read(&self.dir.path().join("qemu.err"));
        let (output, status) = match all.split_once(BEGIN) {
            None => (String::new(), None),
            Some((_, after)) => {
                let after = after.trim_start_matches('\n');
                match after.rsplit_once(END) {
                    Some((out, st)) => (out.to_string(), st.trim().parse().ok()),
                    None => (after.to_string(), None),
                }
            }
        };
        let outcome = Outcome {
            output,
            status,
            console,
        };
        if exited {
            Some(outcome)
        } else {
            eprintln!("guest timed out:\n{outcome}");
            None
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------- nested QEMU

/// The wrapper the guest runs as `qemu-system-x86_64`: the bundled binary
/// through the bundled dynamic loader and libraries, its firmware and
/// accelerator module from the bundle.
const QEMU_WRAPPER: &str = r#"#!/bin/sh
d=/tmp/q
export QEMU_MODULE_DIR=$d/mod
exec $d/lib/ld-linux-x86-64.so.2 --library-path $d/lib $d/qemu-system-x86_64 -L $d/share "$@"
"#;

/// QEMU for the guest itself, so bootstick's boot test runs inside it
/// (nested, TCG in TCG): the host's `qemu-system-x86_64`, the shared
/// libraries `ldd` names, its TCG accelerator module (a loadable module in
/// Debian's build) and its firmware files (SeaBIOS, VGA BIOS, option ROMs),
/// packed under `q/` in a tar archive, with `q/bin/qemu-system-x86_64`
/// the wrapper. The guest unpacks it into `/tmp` (`tar xf … -C /tmp`) and
/// puts `/tmp/q/bin` first on PATH. Cached per QEMU build.
pub fn qemu_bundle() -> PathBuf {
    static BUNDLE: OnceLock<PathBuf> = OnceLock::new();
    BUNDLE.get_or_init(build_qemu_bundle).clone()
}

fn build_qemu_bundle() -> PathBuf {
    let qemu = std::fs::canonicalize(which("qemu-system-x86_64")).unwrap();
    let libs = shared_libraries(&qemu);
    let module = [
        "/usr/lib/x86_64-linux-gnu/qemu",
        "/usr/lib/qemu",
        "/usr/lib64/qemu",
    ]
    .iter()
    .map(|d| Path::new(d).join("accel-tcg-x86_64.so"))
    .find(|p| p.is_file());
    let data_dirs = ["/usr/share/qemu", "/usr/share/seabios"];
    let mut key = Sha256::new();
    key.update(QEMU_WRAPPER.as_bytes());
    stamp(&mut key, &qemu);
    let key = hex::encode(key.finalize());
    let dest = fixtures_dir().join(format!("guest-qemu-{}", &key[..16]));
    let tar = dest.join("qemu.tar");
    if tar.exists() {
        return tar;
    }
    let tmp = build_dir(&dest);
    let root = tmp.join("q");
    for d in ["lib", "mod", "share", "bin"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy(&qemu, root.join("qemu-system-x86_64")).unwrap();
    for lib in &libs {
        // By the name the loader asks for (ld-linux-x86-64.so.2, …), with
        // the bytes of what it links to.
        std::fs::copy(lib, root.join("lib").join(lib.file_name().unwrap())).unwrap();
    }
    if let Some(m) = &module {
        std::fs::copy(m, root.join("mod").join(m.file_name().unwrap())).unwrap();
    }
    for dir in data_dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in entries.flatten() {
            // Files only (links followed; dangling ones skipped): the
            // keymaps and firmware descriptors are not needed headless.
            if std::fs::metadata(e.path()).is_ok_and(|m| m.is_file()) {
                std::fs::copy(e.path(), root.join("share").join(e.file_name())).unwrap();
            }
        }
    }
    let wrapper = root.join("bin/qemu-system-x86_64");
    std::fs::write(&wrapper, QEMU_WRAPPER).unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    output(
        Command::new("tar")
            .arg("cf")
            .arg(tmp.join("qemu.tar"))
            .arg("-C")
            .arg(&tmp)
            .arg("q"),
    );
    std::fs::remove_dir_all(&root).unwrap();
    publish(&tmp, &dest);
    tar
}
