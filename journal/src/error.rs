//! The crate's single error type.
//!
//! Corruption is always reported with the volume and byte offset where it was detected so an
//! operator can find it with `os-tool journal dump`. A torn tail is not an error: it ends the
//! journal cleanly (see [`crate::scan`]).

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every error the journal can return.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system call failed.
    #[error("I/O error during {op} on {path}: {source}")]
    Io {
        /// The operation that failed (`write`, `fdatasync`, `rename`, ...).
        op: &'static str,
        /// The file or directory it was applied to.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// Bytes before the end of the journal failed validation. Never returned for a torn tail.
    #[error("journal corrupt in volume {volume} at offset {offset}: {reason}")]
    Corrupt {
        /// Volume number (the `NNNNNNNNNN` of `NNNNNNNNNN.vol`).
        volume: u64,
        /// Byte offset within that volume file where the damage was detected.
        offset: u64,
        /// What failed.
        reason: String,
    },

    /// A small metadata file (info file, atomic file) failed validation.
    #[error("{path} is invalid: {reason}")]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },

    /// An earlier write or fdatasync failed; the journal refuses all further work (fail-stop).
    /// Reopen the journal to recover by replay.
    #[error("journal is poisoned by an earlier failure: {0}")]
    Poisoned(#[source] Arc<Error>),

    /// A volume in the middle of the live range is missing.
    #[error("volume {0} is missing from the journal directory")]
    MissingVolume(u64),

    /// Metadata or data exceed the 2^31-byte limit of one entry.
    #[error("entry too large: {what} is {len} bytes, the limit is {max}")]
    TooLarge {
        /// `metadata` or `data`.
        what: &'static str,
        /// Its length.
        len: u64,
        /// The limit.
        max: u64,
    },

    /// An atomic file's payload exceeds the limit its reader would accept; nothing was written.
    #[error("atomic file {path}: a payload of {len} bytes exceeds its limit of {max}")]
    AtomicTooLarge {
        /// The file.
        path: PathBuf,
        /// The payload's length.
        len: u64,
        /// The limit.
        max: u64,
    },

    /// The table-of-contents callback returned more bytes than fit in the TOC area.
    #[error("table of contents is {len} bytes, at most {max} fit")]
    TocTooLarge {
        /// Bytes returned by the callback.
        len: usize,
        /// Bytes available for user data in the TOC area.
        max: usize,
    },

    /// Options or geometry are not usable.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),

    /// `create` found an existing journal.
    #[error("a journal already exists at {0}")]
    AlreadyExists(PathBuf),

    /// `open` found no journal info file.
    #[error("no journal at {0}")]
    NotFound(PathBuf),

    /// The journal was closed.
    #[error("journal is closed")]
    Closed,
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// True for [`Error::Corrupt`] (and a poisoning caused by it).
    pub fn is_corruption(&self) -> bool {
        match self {
            Error::Corrupt { .. } => true,
            Error::Poisoned(inner) => inner.is_corruption(),
            _ => false,
        }
    }
}
