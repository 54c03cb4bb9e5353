//! The one error type of the object store API.
//!
//! Callers match on [`ErrorKind`], which mirrors the errno values Ceph's
//! ObjectStore returns, so code ported from Ceph keeps its error handling.

use std::fmt;

/// Errno-like classification of an [`Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// ENOENT: the object or collection does not exist.
    NotFound,
    /// ENODATA: the object exists but the attribute does not.
    NoData,
    /// ENOTEMPTY: the collection still holds objects.
    NotEmpty,
    /// EEXIST: the collection or object already exists.
    Exists,
    /// EINVAL: malformed argument, id, name or transaction.
    InvalidArgument,
    /// E2BIG / ERANGE: a name, key, value or total exceeds a documented limit.
    TooBig,
    /// EFBIG: an offset or length beyond the maximum object size.
    FileTooBig,
    /// ENOSPC: the store or its journal is out of space.
    NoSpace,
    /// EIO: an I/O error, or a checksum mismatch on stored bytes.
    Io,
    /// EUCLEAN-like: stored bytes failed to decode or verify.
    Corrupt,
    /// ESHUTDOWN: the store failed stop after an unrecoverable error; remount to recover.
    Failed,
    /// ENOTCONN-like: the store is not mounted (or already mounted).
    NotMounted,
    /// EOPNOTSUPP: the backend does not implement this.
    Unsupported,
    /// EROFS: the store's filesystem is mounted read-only (mounting the store writes:
    /// the journal, replay, the lock).
    ReadOnly,
    /// EACCES: the process may not read or write a file of the store.
    PermissionDenied,
}

impl ErrorKind {
    /// The errno name scripts match on (`ENOENT`, `ENODATA`, ...).
    pub fn errno_name(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "ENOENT",
            ErrorKind::NoData => "ENODATA",
            ErrorKind::NotEmpty => "ENOTEMPTY",
            ErrorKind::Exists => "EEXIST",
            ErrorKind::InvalidArgument => "EINVAL",
            ErrorKind::TooBig => "E2BIG",
            ErrorKind::FileTooBig => "EFBIG",
            ErrorKind::NoSpace => "ENOSPC",
            ErrorKind::Io => "EIO",
            ErrorKind::Corrupt => "EUCLEAN",
            ErrorKind::Failed => "ESHUTDOWN",
            ErrorKind::NotMounted => "ENOTCONN",
            ErrorKind::Unsupported => "EOPNOTSUPP",
            ErrorKind::ReadOnly => "EROFS",
            ErrorKind::PermissionDenied => "EACCES",
        }
    }

    /// The positive Linux errno value.
    pub fn errno(self) -> i32 {
        match self {
            ErrorKind::NotFound => 2,
            ErrorKind::NoData => 61,
            ErrorKind::NotEmpty => 39,
            ErrorKind::Exists => 17,
            ErrorKind::InvalidArgument => 22,
            ErrorKind::TooBig => 7,
            ErrorKind::FileTooBig => 27,
            ErrorKind::NoSpace => 28,
            ErrorKind::Io => 5,
            ErrorKind::Corrupt => 117,
            ErrorKind::Failed => 108,
            ErrorKind::NotMounted => 107,
            ErrorKind::Unsupported => 95,
            ErrorKind::ReadOnly => 30,
            ErrorKind::PermissionDenied => 13,
        }
    }

    /// Maps an OS errno to a kind (unknown values become [`ErrorKind::Io`]).
    pub fn from_errno(errno: i32) -> ErrorKind {
        match errno {
            2 => ErrorKind::NotFound,
            61 => ErrorKind::NoData,
            39 => ErrorKind::NotEmpty,
            17 => ErrorKind::Exists,
            22 => ErrorKind::InvalidArgument,
            7 | 34 => ErrorKind::TooBig,
            27 => ErrorKind::FileTooBig,
            28 | 122 => ErrorKind::NoSpace,
            95 => ErrorKind::Unsupported,
            30 => ErrorKind::ReadOnly,
            1 | 13 => ErrorKind::PermissionDenied,
            _ => ErrorKind::Io,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.errno_name())
    }
}

/// An error from the object store: a kind callers match on and a message for humans.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {msg}")]
pub struct Error {
    kind: ErrorKind,
    msg: String,
}

impl Error {
    pub fn new(kind: ErrorKind, msg: impl Into<String>) -> Error {
        Error {
            kind,
            msg: msg.into(),
        }
    }
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    pub fn message(&self) -> &str {
        &self.msg
    }
    /// Prefixes the message with context, keeping the kind.
    pub fn context(self, what: impl fmt::Display) -> Error {
        Error {
            kind: self.kind,
            msg: format!("{what}: {}", self.msg),
        }
    }

    pub fn not_found(msg: impl Into<String>) -> Error {
        Error::new(ErrorKind::NotFound, msg)
    }
    pub fn no_data(msg: impl Into<String>) -> Error {
        Error::new(ErrorKind::NoData, msg)
    }
    pub fn invalid(msg: impl Into<String>) -> Error {
        Error::new(ErrorKind::InvalidArgument, msg)
    }
    pub fn exists(msg: impl Into<String>) -> Error {
        Error::new(ErrorKind::Exists, msg)
    }
    pub fn not_empty(msg: impl Into<String>) -> Error {
        Error::new(ErrorKind::NotEmpty, msg)
    }
    pub fn too_big(msg: impl Into<String>) -> Error {
        Error::new(ErrorKind::TooBig, msg)
    }
    pub fn corrupt(msg: impl Into<String>) -> Error {
        Error::new(ErrorKind::Corrupt, msg)
    }
    pub fn io(msg: impl Into<String>) -> Error {
        Error::new(ErrorKind::Io, msg)
    }
    pub fn failed(msg: impl Into<String>) -> Error {
        Error::new(ErrorKind::Failed, msg)
    }
    pub fn not_mounted(msg: impl Into<String>) -> Error {
        Error::new(ErrorKind::NotMounted, msg)
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        let kind = match e.raw_os_error() {
            Some(n) => ErrorKind::from_errno(n),
            None => match e.kind() {
                std::io::ErrorKind::NotFound => ErrorKind::NotFound,
                std::io::ErrorKind::AlreadyExists => ErrorKind::Exists,
                std::io::ErrorKind::InvalidInput => ErrorKind::InvalidArgument,
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof => {
                    ErrorKind::Corrupt
                }
                _ => ErrorKind::Io,
            },
        };
        Error::new(kind, e.to_string())
    }
}

/// Result alias used across the API.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_names_round_trip_through_errno_values() {
        for k in [
            ErrorKind::NotFound,
            ErrorKind::NoData,
            ErrorKind::NotEmpty,
            ErrorKind::Exists,
            ErrorKind::InvalidArgument,
            ErrorKind::FileTooBig,
            ErrorKind::NoSpace,
            ErrorKind::Unsupported,
            ErrorKind::ReadOnly,
            ErrorKind::PermissionDenied,
        ] {
            assert_eq!(ErrorKind::from_errno(k.errno()), k, "{k}");
        }
        let e = Error::not_found("object foo").context("read");
        assert_eq!(e.to_string(), "ENOENT: read: object foo");
        assert_eq!(e.kind(), ErrorKind::NotFound);
    }

    #[test]
    fn io_errors_keep_their_errno() {
        let e: Error = std::io::Error::from_raw_os_error(28).into();
        assert_eq!(e.kind(), ErrorKind::NoSpace);
        let e: Error = std::io::Error::from_raw_os_error(5).into();
        assert_eq!(e.kind(), ErrorKind::Io);
    }
}
