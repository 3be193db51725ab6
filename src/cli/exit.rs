//! Exit codes: the contract scripts rely on. Documented in `docs/cli.md`;
//! a code, once published, keeps its meaning.

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
    /// image's new contents where other bytes were sent).
    SourceChanged = 19,
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(e as u8)
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
}

impl Failure {
    pub fn new(exit: Exit, error: impl Into<anyhow::Error>) -> Self {
        Failure {
            exit,
            error: error.into(),
            reported: false,
        }
    }

    /// Marks the failure as already reported by the command.
    pub fn reported(mut self) -> Self {
        self.reported = true;
        self
    }
}
