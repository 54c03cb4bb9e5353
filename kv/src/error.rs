//! The crate's one error type, and the fail-stop gate every engine puts in front of its writes.

use std::sync::OnceLock;

/// Everything that can go wrong in a [`KeyValueDB`](crate::KeyValueDB).
///
/// `Corruption` is kept apart from `Io` on purpose: an I/O error may be the device or a full disk,
/// while corruption means the bytes on disk failed a checksum or a structural check, and callers
/// (fsck, the auditor) react differently to the two.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Stored bytes failed a checksum or structural check; no data was returned for them.
    #[error("corruption: {0}")]
    Corruption(String),
    /// The engine could not read or write its files.
    #[error("I/O error: {0}")]
    Io(String),
    /// The caller asked for something malformed (for example a range whose start is above its
    /// end, or a synced commit on an engine whose WAL is off). Nothing was written.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// An earlier write or flush failed, so this handle accepts no more writes. Reopen to recover.
    #[error("database refuses writes after an earlier failure: {0}")]
    Poisoned(String),
    /// Any other engine status (busy, shutdown in progress, ...), with the engine's own message.
    #[error("engine error: {0}")]
    Engine(String),
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Fail-stop state shared by every handle on one open database.
///
/// After a failed write the engine cannot say which part reached the disk (an fsync error may have
/// dropped dirty pages), so retrying or writing on could make the durable image diverge from what
/// callers were told. The first failure is remembered and every later write is refused.
#[derive(Debug, Default)]
pub(crate) struct WriteGate {
    failure: OnceLock<String>,
}

impl WriteGate {
    pub(crate) fn check(&self) -> Result<()> {
        match self.failure.get() {
            Some(why) => Err(Error::Poisoned(why.clone())),
            None => Ok(()),
        }
    }

    /// Records `err` as the reason writes stop, unless a reason is already recorded, and returns
    /// `err` so call sites can `return Err(gate.poison(e))`.
    pub(crate) fn poison(&self, err: Error) -> Error {
        let _ = self.failure.set(err.to_string());
        err
    }

    pub(crate) fn is_poisoned(&self) -> bool {
        self.failure.get().is_some()
    }
}
