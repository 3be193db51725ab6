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
}

impl Failure {
    pub fn new(exit: Exit, error: impl Into<anyhow::Error>) -> Self {
        Failure {
            exit,
            error: error.into(),
        }
    }
}
