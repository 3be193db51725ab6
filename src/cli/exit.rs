//! Exit codes: the contract scripts rely on, and the one place where each
//! library error type is mapped to one. Documented in `docs/cli.md`; a
//! code, once published, keeps its meaning.
//!
//! Every mapping below matches its error type exhaustively, without a
//! catch-all arm: a variant added to a library error does not compile until
//! someone decides which code it gets.

use bootstick::cancel::{Signal, TargetState};
use bootstick::layout::{disk, fat32, from_iso, partition};
use bootstick::plan::PlanError;
use bootstick::{boot_test, devices, health, image, job, station, trust, write};
use serde::Serialize;
use serde_json::{Map, Value};

/// How a `bootstick` run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// The job did what was asked.
    Ok = 0,
    /// A bug or an unexpected condition in bootstick itself.
    Internal = 1,
    /// The command line could not be understood (clap's own code).
    Usage = 2,
    /// The image or another input file is missing, unreadable or malformed.
    BadInput = 3,
    /// A safety rule refused the target (system disk, mounted, too small, …).
    Refused = 4,
    /// Writing to (or reading from) the target failed.
    WriteFailed = 5,
    /// The read-back found the target differs from what was meant.
    VerifyMismatch = 6,
    /// The user declined the confirmation, or none could be asked.
    Declined = 7,
    /// `verify`: the image's hash matches a checksum, but no trusted
    /// signature covers it (none found, or no `--key` given).
    ChecksumOnly = 10,
    /// `verify`: the image's hash differs from the one listed for it.
    Mismatch = 11,
    /// `verify`: checksum files exist, but none lists the image.
    NotListed = 12,
    /// `verify`: a signature is malformed or does not verify.
    BadSignature = 13,
    /// `verify`: signatures exist, but none by a key that was given.
    UnknownKey = 14,
    /// `verify`: the only signatures by given keys use SHA-1 or MD5.
    WeakSignature = 15,
    /// `verify`: the signing key has expired.
    ExpiredKey = 16,
    /// `verify`: the signing key is revoked.
    RevokedKey = 17,
    /// `verify`: nothing to check the image against.
    NoReference = 18,
    /// `write`: the image changed between the check and the write (with
    /// `--verify-source`: the streamed bytes hash differently from the
    /// checked ones), or while it was written (the read-back found the
    /// image's new contents where other bytes were sent, or the image got
    /// shorter).
    SourceChanged = 19,
    /// `boot-test`: under at least one firmware the medium does not boot
    /// (or it was skipped under every one asked for).
    NotBootable = 20,
    /// `boot-test`: nothing failed, but under at least one firmware the
    /// evidence decided nothing.
    BootUnknown = 21,
    /// `boot-test`: QEMU or the OVMF firmware is not installed.
    BootTestUnavailable = 22,
    /// `probe`: the stick stores less than it reports (`fake-capacity`).
    FakeCapacity = 23,
    /// `probe`: blocks fail among good ones (`bad-sectors`); `backup`: a
    /// sector could not be read (stopped there, or stored as zeros in an
    /// image that is therefore not complete).
    BadSectors = 24,
    /// `probe`: everything held, but slower than the limits (`slow`).
    Slow = 25,
    /// `station`: at least one stick failed (the others were written).
    SticksFailed = 26,
    /// `write URL`: the download failed: an HTTP error status, a web page
    /// instead of an image, TLS, a connection that broke and could not be
    /// resumed, or a file that changed on the server while downloaded.
    Download = 27,
    /// Stopped by `SIGHUP` (128 + 1, as a shell reports a job killed by it).
    HungUp = 129,
    /// Stopped by `SIGINT`, Ctrl-C (128 + 2).
    Interrupted = 130,
    /// Stopped by `SIGTERM` (128 + 15).
    Terminated = 143,
}

impl Exit {
    /// The code of a job stopped by `signal` (`None`: cancelled without
    /// one, reported as an interrupt).
    pub fn for_signal(signal: Option<Signal>) -> Exit {
        match signal {
            Some(Signal::Hangup) => Exit::HungUp,
            Some(Signal::Interrupt) | None => Exit::Interrupted,
            Some(Signal::Terminate) => Exit::Terminated,
        }
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(e as u8)
    }
}

/// What a job stopped by a signal (or a request) adds to its failed
/// `result`: `interrupted`, `signal` (null for a request) and, for a
/// command with a target, `target_state` (docs/cli.md).
#[derive(Serialize)]
pub struct Stopped {
    pub interrupted: bool,
    pub signal: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_state: Option<&'static str>,
}

impl Stopped {
    /// `state`: the name of the target's state (`cancel::TargetState` or
    /// a probe's `health::TargetState`).
    pub fn new(signal: Option<Signal>, state: Option<&'static str>) -> Self {
        Stopped {
            interrupted: true,
            signal: signal.map(Signal::name),
            target_state: state,
        }
    }
}

/// What a write that stopped early left on its target, as `write` and
/// the station's `target_result` both report it (docs/cli.md): stopped by
/// a signal (`interrupted`, `signal`, `target_state`), or failed part-way
/// (`target_state`, and `boot_area_zeroed` when a decoded image's
/// held-back first MiB was never written).
#[derive(Serialize)]
#[serde(untagged)]
pub enum Left {
    Stopped(Stopped),
    Failed {
        #[serde(skip_serializing_if = "Option::is_none")]
        target_state: Option<&'static str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        boot_area_zeroed: Option<bool>,
    },
}

/// The exit code of a write-engine failure and what it left on the
/// target: the one derivation `write` and `station` share.
pub fn write_left(e: &write::Error) -> (Exit, Left) {
    match e {
        write::Error::Cancelled { target } => {
            let signal = super::signals::token().signal();
            (
                Exit::for_signal(signal),
                Left::Stopped(Stopped::new(signal, Some(target.name()))),
            )
        }
        e => (
            write_error(e),
            Left::Failed {
                target_state: e.target_state().map(TargetState::name),
                // The first MiB was held back and is zeroed (no partition table).
                boot_area_zeroed: matches!(e, write::Error::HeldBack { .. }).then_some(true),
            },
        ),
    }
}

/// A failed command: the exit code it maps to and the error to show.
#[derive(Debug)]
pub struct Failure {
    pub exit: Exit,
    pub error: anyhow::Error,
    /// The command already reported this failure in its own `result` event
    /// (a multi-target `write`), so it is not reported again.
    pub reported: bool,
    /// Fields added to the JSON `result` line beside `error` and
    /// `exit_code` (an interrupted job's `interrupted`, `signal` and
    /// `target_state`; `verify`'s report).
    pub fields: Map<String, Value>,
}

impl Failure {
    pub fn new(exit: Exit, error: impl Into<anyhow::Error>) -> Self {
        Failure {
            exit,
            error: error.into(),
            reported: false,
            fields: Map::new(),
        }
    }

    /// Marks the failure as already reported by the command.
    pub fn reported(mut self) -> Self {
        self.reported = true;
        self
    }

    /// Adds the fields of `report` (a struct, or anything serialized as
    /// a JSON object) to the `result` line.
    pub fn with_fields(mut self, report: &impl Serialize) -> Self {
        if let Ok(Value::Object(m)) = serde_json::to_value(report) {
            self.fields.extend(m);
        }
        self
    }

    /// A job stopped by the termination signal `signal` (`None`: by the
    /// cancellation token without a signal), leaving its target in `state`
    /// (`None` for a command without a target).
    pub fn interrupted(
        signal: Option<Signal>,
        state: Option<TargetState>,
        error: anyhow::Error,
    ) -> Self {
        let name = signal.map(Signal::name);
        let error = error.context(format!("interrupted by {}", name.unwrap_or("a request")));
        Failure::new(Exit::for_signal(signal), error)
            .with_fields(&Stopped::new(signal, state.map(TargetState::name)))
    }

    /// A write-engine failure with its exit code; a cancelled job says it
    /// was interrupted, by which signal, and what it left on the target.
    pub fn write(e: write::Error) -> Self {
        let (code, left) = write_left(&e);
        let error = match &left {
            Left::Stopped(s) => anyhow::Error::new(e).context(format!(
                "interrupted by {}",
                s.signal.unwrap_or("a request")
            )),
            Left::Failed { .. } => anyhow::Error::new(e),
        };
        Failure::new(code, error).with_fields(&left)
    }
}

/// Library errors whose code follows from the error alone convert with
/// `?`; the mapping stays in this module's `*_error` functions.
macro_rules! failure_from {
    ($($ty:ty => $code:ident),* $(,)?) => {$(
        impl From<$ty> for Failure {
            fn from(e: $ty) -> Self {
                Failure::new($code(&e), e)
            }
        }
    )*};
}

failure_from! {
    image::Error => image_error,
    bootstick::mount::Error => mount_error,
    station::Error => station_error,
}

impl From<write::Error> for Failure {
    fn from(e: write::Error) -> Self {
        Failure::write(e)
    }
}

impl From<health::Error> for Failure {
    fn from(e: health::Error) -> Self {
        Failure::probe(e)
    }
}

impl Failure {
    /// A probe that stopped without a verdict; a cancelled one says by
    /// which signal and what it left on the target.
    pub fn probe(e: health::Error) -> Self {
        let code = probe_error(&e);
        match e {
            health::Error::Cancelled { state } => {
                let signal = super::signals::token().signal();
                let name = signal.map(bootstick::cancel::Signal::name);
                let error = anyhow::Error::new(e)
                    .context(format!("interrupted by {}", name.unwrap_or("a request")));
                Failure::new(code, error).with_fields(&Stopped::new(signal, Some(state.name())))
            }
            e => Failure::new(code, e),
        }
    }
}

/// The code of a probe's verdict (docs/cli.md, docs/health.md).
pub fn probe_verdict(v: health::Verdict) -> Exit {
    use health::Verdict as V;
    match v {
        V::Genuine | V::Readable => Exit::Ok,
        V::FakeCapacity => Exit::FakeCapacity,
        V::BadSectors => Exit::BadSectors,
        V::Slow => Exit::Slow,
    }
}

/// The code of an error that stopped a format.
pub fn format_error(e: &health::format::Error) -> Exit {
    use health::format::Error as E;
    match e {
        E::BadLabel { .. } | E::BadExfatLabel { .. } => Exit::Usage,
        E::SectorSize { .. } => Exit::Refused,
        E::Layout { source, .. } => match source {
            disk::Error::Fat32 { .. } => Exit::Refused,
            disk::Error::Exfat {
                source: bootstick::layout::exfat::Error::BadLabel { .. },
                ..
            } => Exit::Usage,
            disk::Error::Exfat { .. } => Exit::Refused,
            disk::Error::Partition(p) => partition_error(p),
            disk::Error::Plan(p) => plan_error(p),
        },
        E::Plan(p) => plan_error(p),
        E::Device(d) => device_error(d),
        E::Write(w) => write_error(w),
    }
}

/// The code of an error that stopped a backup (FILE is then as it was).
pub fn backup_error(e: &health::backup::Error) -> Exit {
    use health::backup::Error as E;
    match e {
        E::Job(j) => job_error(j),
        E::Device(d) => device_error(d),
        E::OnSource { .. } | E::SameFile { .. } => Exit::Refused,
        E::NoPartitions { .. } | E::PartitionTable { .. } => Exit::BadInput,
        E::Open { .. } | E::Read { .. } | E::Output { .. } => Exit::WriteFailed,
        E::Unreadable { .. } => Exit::BadSectors,
        E::Volume {
            source: image::Error::Io { .. },
            ..
        } => Exit::WriteFailed,
        E::Volume { .. } => Exit::BadInput,
        E::NotProven { .. } => Exit::VerifyMismatch,
        E::Cancelled { .. } => Exit::for_signal(super::signals::token().signal()),
    }
}

/// The code of an error that stopped a probe before its verdict.
pub fn probe_error(e: &health::Error) -> Exit {
    use health::Error as E;
    match e {
        E::Open { .. } | E::Device { .. } => Exit::WriteFailed,
        E::TooSmall { .. } | E::IdentityChanged(_) => Exit::Refused,
        E::Cancelled { .. } => Exit::for_signal(super::signals::token().signal()),
    }
}

/// The code of a write-engine error.
pub fn write_error(e: &write::Error) -> Exit {
    use write::Error as E;
    match e {
        E::Plan(p) => plan_error(p),
        E::Internal(_) => Exit::Internal,
        // A busy disk is refused before this (devices::Error::Busy, from
        // the guarded open); the engine opens only files and disks handed
        // to it, so an open error here is the target failing.
        E::NotATarget { .. } | E::Refused(_) => Exit::Refused,
        E::OpenTarget { .. }
        | E::WriteTarget { .. }
        | E::Sync { .. }
        | E::Commit { .. }
        | E::ReadTarget { .. }
        | E::Disappeared { .. } => Exit::WriteFailed,
        E::ReadSource { .. } => Exit::BadInput,
        // The engine checked the image's length before the first write:
        // ending early later means it changed while it was written.
        E::SourceTruncated { .. }
        | E::SourceChanged { .. }
        | E::SourceChangedSinceCheck { .. }
        | E::SourceChangedDuringWrite { .. }
        | E::SourceModified { .. }
        | E::SourceModifiedBeforeWrite { .. } => Exit::SourceChanged,
        E::Mismatch { .. } | E::TargetShort { .. } => Exit::VerifyMismatch,
        E::Cancelled { .. } => Exit::for_signal(super::signals::token().signal()),
        E::Decode { source, .. } => compressed_error(source),
        // An image that does not match its block map is corrupt (or the
        // map is another image's), as a corrupt compressed stream.
        E::Bmap { .. } => Exit::BadInput,
        // Like an image larger than the device found before the write.
        E::ImageLargerThanTarget { .. } => Exit::Refused,
        E::HeldBack { source } => write_error(source),
        // A stream that cannot be read, or that ends early or late: bad
        // input; one whose digest differs: as a source check's mismatch.
        // A download that broke off or changed: its own code (27).
        E::StreamRead { source, .. } => {
            image::download::cause(source).map_or(Exit::BadInput, download_error)
        }
        E::StreamLength { .. } => Exit::BadInput,
        E::StreamDigest { .. } => Exit::Mismatch,
        E::StreamMismatch { .. } => Exit::VerifyMismatch,
    }
}

/// The code of a download's error: 27 for what the server or the network
/// did (a status, a web page, TLS, a connection broken for good, a file
/// that changed), bad input for a checksum file too large, usage for a
/// URL or `--save`/`--ca-cert` file that cannot be used.
pub fn download_error(e: &image::download::Error) -> Exit {
    use image::download::Error as E;
    match e {
        E::Status { .. }
        | E::WebPage { .. }
        | E::Tls { .. }
        | E::Connect { .. }
        | E::LengthChanged { .. }
        | E::Changed { .. }
        | E::CannotResume { .. }
        | E::TooLong { .. } => Exit::Download,
        E::TooLarge { .. } => Exit::BadInput,
        E::BadUrl { .. } | E::CaCert { .. } | E::SaveExists { .. } | E::SaveNotAFile { .. } => {
            Exit::Usage
        }
        E::NoRoots { .. } => Exit::BadInput,
        E::Save { .. } => Exit::WriteFailed,
    }
}

/// The code of an error sizing or decoding a compressed image: bad input,
/// except compressed bytes that are no longer the checked ones (19).
pub fn compressed_error(e: &image::compressed::Error) -> Exit {
    use image::compressed::Error as E;
    match e {
        E::Image(i) => image_error(i),
        E::Corrupt { .. }
        | E::Truncated { .. }
        | E::SizeMismatch { .. }
        | E::Malformed { .. }
        | E::Empty { .. } => Exit::BadInput,
        E::Setup { .. } => Exit::Internal,
        E::Zip(z) => archive_error(z),
    }
}

/// The code of a zip archive that gives no member to write: bad input,
/// but a member to be named (several images, a name not found) is a
/// usage error, and unreadable bytes are the image's.
pub fn archive_error(e: &image::archive::Error) -> Exit {
    use image::archive::Error as E;
    match e {
        E::Image(i) => image_error(i),
        E::Malformed(_) | E::NoImage { .. } | E::Encrypted { .. } | E::Unsupported { .. } => {
            Exit::BadInput
        }
        E::SeveralImages { .. } | E::NoSuchEntry { .. } => Exit::Usage,
    }
}

/// The code of a job error: each library error it wraps by that error's own
/// map; the job's own refusals as documented in docs/cli.md.
pub fn job_error(e: &job::Error) -> Exit {
    use job::Error as E;
    match e {
        E::Image(i) => image_error(i),
        E::Device(d) => device_error(d),
        E::Write(w) => write_error(w),
        E::Trust(t) => trust_error(t),
        E::Inspect { source, .. } => inspect_error(source),
        E::Layout { source, .. } => layout_error(source),
        E::Truncated { .. } => Exit::BadInput,
        E::TableForRaw { .. } | E::RawAndLayout => Exit::Usage,
        E::LayoutOfNonOptical { .. } => Exit::BadInput,
        E::SourceCheck { report, .. } => outcome(report.outcome),
        E::Declined { .. } => Exit::Declined,
        E::NamedTwice { .. } | E::NotADisk { .. } => Exit::Refused,
        // The first refused target's code, in argument order.
        E::Refused { refused, .. } => refused
            .first()
            .map_or(Exit::Refused, |r| job_error(&r.error)),
        E::Duplicate(_) | E::Panicked => Exit::Internal,
        E::Compressed { source, .. } => compressed_error(source),
        E::CompressedLayout { .. } => Exit::BadInput,
        E::EntryForNonArchive { .. } => Exit::Usage,
        E::Stream(p) => match p {
            image::pipe::Error::Terminal => Exit::Usage,
            image::pipe::Error::Decode { source, .. } => compressed_error(source),
            image::pipe::Error::Open { .. }
            | image::pipe::Error::Empty { .. }
            | image::pipe::Error::NoWriter { .. }
            | image::pipe::Error::EmptyDecoded { .. }
            | image::pipe::Error::Read { .. }
            | image::pipe::Error::Zip { .. } => Exit::BadInput,
        },
        E::Download(d) => download_error(d),
        E::SaveIsTarget { .. } => Exit::Usage,
        E::StreamCheck { .. } | E::StreamToSeveral { .. } => Exit::Usage,
        E::StreamLayout { .. } => Exit::BadInput,
        E::Bmap { .. } | E::BmapNotByteCopy { .. } => Exit::BadInput,
        E::StreamTaken => Exit::Internal,
    }
}

/// The code of a plan error.
/// A station that could not run: its disks could not be enumerated, or
/// its log could not be written (an output file: bad input, as an
/// unwritable `extract` directory).
pub fn station_error(e: &station::Error) -> Exit {
    match e {
        station::Error::Device(d) => device_error(d),
        station::Error::Log(_) => Exit::BadInput,
    }
}

pub fn plan_error(e: &PlanError) -> Exit {
    use PlanError as E;
    match e {
        E::TooLarge { .. } => Exit::Refused,
        E::SourceTooShort { .. } => Exit::BadInput,
        E::Overlap { .. } | E::Overflow { .. } => Exit::Internal,
    }
}

/// The code of a device error.
pub fn device_error(e: &devices::Error) -> Exit {
    use devices::Error as E;
    match e {
        E::UnknownTarget { .. }
        | E::NoSuchDevice { .. }
        | E::NoDirectory { .. }
        | E::FileTarget { .. }
        | E::Image { .. } => Exit::BadInput,
        E::Sysfs { .. } => Exit::Internal,
        E::Open { .. } | E::Reread { .. } | E::Eject { .. } | E::NotDetachable { .. } => {
            Exit::WriteFailed
        }
        // A forced loop backing file refused by the loop device's own rule.
        E::BackingInUse { rule, .. } => device_error(rule),
        E::AmbiguousSerial { .. }
        | E::ReadOnlyFilesystem { .. }
        | E::NotWritable { .. }
        | E::ImageIsTarget { .. }
        | E::ImageOnTarget { .. }
        | E::BacksLoop { .. }
        | E::NotATarget { .. }
        | E::Partition { .. }
        | E::NotWholeDisk { .. }
        | E::SystemDisk { .. }
        | E::ReadOnly { .. }
        | E::NotRemovable { .. }
        | E::Swap { .. }
        | E::Held { .. }
        | E::Mounted { .. }
        | E::TooSmall { .. }
        | E::Busy { .. }
        | E::Locked { .. }
        | E::IdentityChanged(_)
        | E::Unmount { .. } => Exit::Refused,
    }
}

/// The code of an error building a FAT32 layout of a non-hybrid ISO.
pub fn layout_error(e: &from_iso::Error) -> Exit {
    use from_iso::Error as E;
    match e {
        E::FileTooLarge { .. } | E::TargetTooSmall { .. } => Exit::Refused,
        E::Image(i) => image_error(i),
        E::ElToritoTree {
            source: bootstick::image::eltorito::TreeError::Image(i),
            ..
        } => image_error(i),
        E::ElToritoTree { .. } => Exit::BadInput,
        E::NoEfiLoader | E::LoaderTooLarge { .. } | E::Loader { .. } | E::Wim { .. } => {
            Exit::BadInput
        }
        E::Disk(d) => match d {
            disk::Error::Partition(p) => partition_error(p),
            disk::Error::Plan(p) => plan_error(p),
            disk::Error::Fat32 { source, .. } => fat32_error(source),
            // The ISO layout never makes an exFAT volume.
            disk::Error::Exfat { .. } => Exit::Internal,
        },
    }
}

/// A partition table the layout computed itself is invalid: a bug.
fn partition_error(e: &partition::Error) -> Exit {
    use partition::Error as E;
    match e {
        E::Unaligned { .. }
        | E::Empty { .. }
        | E::OutOfRange { .. }
        | E::Overlap { .. }
        | E::TooMany { .. }
        | E::MbrLimit { .. }
        | E::NameTooLong { .. }
        | E::Plan(_) => Exit::Internal,
    }
}

/// The FAT32 volume cannot hold the ISO's files as they are (bad input), or
/// the builder computed an invalid volume or plan (a bug).
fn fat32_error(e: &fat32::Error) -> Exit {
    use fat32::Error as E;
    match e {
        E::Plan(_) | E::BadClusterSize { .. } => Exit::Internal,
        E::InvalidName { .. }
        | E::DuplicateName { .. }
        | E::FileTooLarge { .. }
        | E::FileDataMismatch { .. }
        | E::DirectoryTooLarge { .. }
        | E::TooDeep { .. }
        | E::ClusterCount { .. }
        | E::TooLarge { .. }
        | E::VolumeFull { .. } => Exit::BadInput,
    }
}

/// The code of a failed extraction (the interruption is the signal's).
pub fn extract_error(e: &bootstick::extract::Error) -> Exit {
    use bootstick::extract::Error as E;
    match e {
        E::NotEmpty { .. } => Exit::Refused,
        E::Image(i) => image_error(i),
        E::Host { .. } => Exit::WriteFailed,
        E::Interrupted { .. } => Exit::for_signal(super::signals::token().signal()),
    }
}

/// The code of an error reading an image: bad input (the image, or the path
/// given for it, is at fault), except bytes that are no longer those of the
/// image's source check (19, docs/trust.md).
pub fn image_error(e: &image::Error) -> Exit {
    use image::Error as E;
    match e {
        E::ChangedSinceCheck { .. } => Exit::SourceChanged,
        E::NotAnImage { .. }
        | E::Empty { .. }
        | E::Open { .. }
        | E::Io { .. }
        | E::OutOfBounds { .. }
        | E::BeyondWindow { .. }
        | E::Malformed { .. }
        | E::TooLarge { .. }
        | E::Loop { .. }
        | E::TooDeep { .. }
        | E::UnsafeName { .. }
        | E::NotFound { .. }
        | E::WrongKind { .. }
        | E::NoFilesystem
        | E::FsAbsent { .. } => Exit::BadInput,
    }
}

/// The code of a `mount` or `umount` error.
pub fn mount_error(e: &bootstick::mount::Error) -> Exit {
    use bootstick::mount::Error as E;
    match e {
        E::Image(i) => image_error(i),
        // DIR names no directory, or nothing to unmount.
        E::NotADirectory { .. } | E::NotMounted { .. } => Exit::BadInput,
        // bootstick unmounts only its own mounts, and never a busy one.
        E::NotOurs { .. } | E::Busy { .. } => Exit::Refused,
        E::Mount { .. } | E::Session { .. } | E::Unmount { .. } => Exit::WriteFailed,
        E::MountInfo(_) => Exit::Internal,
    }
}

/// The code of an error inspecting an image.
pub fn inspect_error(e: &bootstick::inspect::Error) -> Exit {
    match e {
        bootstick::inspect::Error::Image(i) => image_error(i),
    }
}

/// The code of an error that stopped a source check before it reached an
/// outcome (an unreadable checksum, signature or key file): bad input.
pub fn trust_error(e: &trust::Error) -> Exit {
    use trust::Error as E;
    match e {
        E::Io { .. } | E::TooLarge { .. } | E::NotText { .. } | E::NotAFile { .. } | E::Key(_) => {
            Exit::BadInput
        }
    }
}

/// The code of an error that stopped a boot test.
pub fn boot_test_error(e: &boot_test::Error) -> Exit {
    use boot_test::Error as E;
    match e {
        E::QemuMissing { .. } | E::FirmwareMissing { .. } => Exit::BootTestUnavailable,
        E::Image(i) => image_error(i),
        E::Spawn { .. } | E::Io { .. } | E::Qmp { .. } | E::QemuFailed { .. } => Exit::Internal,
        E::Cancelled => Exit::for_signal(super::signals::token().signal()),
    }
}

/// The code of a boot test's verdicts: a medium that does not boot under
/// one firmware decides over one that could not be judged.
pub fn boot_verdicts(report: &boot_test::Report) -> Exit {
    use boot_test::Verdict as V;
    let any = |v: V| report.results.iter().any(|r| r.verdict == v);
    if any(V::DoesNotBoot) {
        Exit::NotBootable
    } else if any(V::Unknown) {
        Exit::BootUnknown
    } else if report.all_boot() {
        Exit::Ok
    } else {
        // Every firmware asked for was skipped: it boots nowhere asked.
        Exit::NotBootable
    }
}

/// The code of each `verify` outcome.
pub fn outcome(outcome: trust::Outcome) -> Exit {
    use trust::Outcome as O;
    match outcome {
        O::Verified => Exit::Ok,
        O::ChecksumOnly => Exit::ChecksumOnly,
        O::Mismatch => Exit::Mismatch,
        O::NotListed => Exit::NotListed,
        O::BadSignature => Exit::BadSignature,
        O::UnknownKey => Exit::UnknownKey,
        O::WeakSignature => Exit::WeakSignature,
        O::ExpiredKey => Exit::ExpiredKey,
        O::RevokedKey => Exit::RevokedKey,
        O::NoReference => Exit::NoReference,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The image getting shorter after the engine checked its length is
    /// the image changing during the write (docs/cli.md: 19), not bad
    /// input (3).
    #[test]
    fn an_image_truncated_during_the_write_is_source_changed() {
        assert_eq!(
            write_error(&write::Error::SourceTruncated { at: 4096 }),
            Exit::SourceChanged
        );
    }

    /// `boot-test`'s code (docs/cli.md): one firmware that does not boot
    /// decides (20) over one that decided nothing (21); every firmware
    /// booted is 0; nothing booted (all skipped) is 20.
    #[test]
    fn boot_verdicts_map_to_the_documented_codes() {
        use bootstick::boot_test::{Accel, Code, Firmware, FirmwareResult, Report, Verdict as V};
        let report = |verdicts: &[V]| Report {
            accel: Accel::Tcg,
            results: verdicts
                .iter()
                .map(|&verdict| FirmwareResult {
                    firmware: Firmware::Bios,
                    verdict,
                    reason: Code::KeptRunning,
                    message: String::new(),
                    evidence: Vec::new(),
                    loader_started_after: None,
                    seconds: 0.0,
                    screenshot: None,
                    screenshot_error: None,
                    console: String::new(),
                })
                .collect(),
        };
        for (verdicts, code) in [
            (&[V::Boots, V::Boots][..], Exit::Ok),
            (&[V::Boots, V::Skipped][..], Exit::Ok),
            (&[V::Boots, V::DoesNotBoot][..], Exit::NotBootable),
            (&[V::Unknown, V::DoesNotBoot][..], Exit::NotBootable),
            (&[V::Boots, V::Unknown][..], Exit::BootUnknown),
            (&[V::Skipped][..], Exit::NotBootable),
        ] {
            assert_eq!(boot_verdicts(&report(verdicts)), code, "{verdicts:?}");
        }
    }

    #[test]
    fn signals_map_to_the_shell_codes() {
        assert_eq!(Exit::for_signal(Some(Signal::Interrupt)) as u8, 130);
        assert_eq!(Exit::for_signal(Some(Signal::Terminate)) as u8, 143);
        assert_eq!(Exit::for_signal(Some(Signal::Hangup)) as u8, 129);
        for s in Signal::ALL {
            assert_eq!(Exit::for_signal(Some(s)) as i32, 128 + s.number());
        }
    }
}
