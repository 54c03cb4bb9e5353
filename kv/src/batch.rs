//! The engine-neutral write batch: an ordered list of set / remove / remove-range operations that
//! an engine applies all-or-nothing.

use crate::error::{Error, Result};

/// One operation in a [`WriteBatch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchOp {
    /// Set `key` to `value`, replacing any previous value.
    Set { key: Vec<u8>, value: Vec<u8> },
    /// Remove `key`; removing a missing key is not an error.
    Remove { key: Vec<u8> },
    /// Remove every key `k` with `start <= k < end` (bytewise). `start == end` removes nothing.
    RemoveRange { start: Vec<u8>, end: Vec<u8> },
}

/// An atomic group of writes, applied in order by [`KeyValueDB::commit`](crate::KeyValueDB::commit).
///
/// The batch is engine-neutral (plain owned bytes) so that stores can build it without knowing the
/// engine and so that the trait stays object-safe; engines translate it at commit time, which for
/// RocksDB costs one extra copy of each key and value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteBatch {
    ops: Vec<BatchOp>,
    payload_bytes: usize,
}

impl WriteBatch {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> &mut Self {
        let (key, value) = (key.into(), value.into());
        self.payload_bytes += key.len() + value.len();
        self.ops.push(BatchOp::Set { key, value });
        self
    }

    pub fn remove(&mut self, key: impl Into<Vec<u8>>) -> &mut Self {
        let key = key.into();
        self.payload_bytes += key.len();
        self.ops.push(BatchOp::Remove { key });
        self
    }

    /// Removes `[start, end)`. A range with `start > end` makes the whole commit fail with
    /// [`Error::InvalidArgument`] rather than silently doing nothing, because it is always a
    /// caller bug.
    pub fn remove_range(
        &mut self,
        start: impl Into<Vec<u8>>,
        end: impl Into<Vec<u8>>,
    ) -> &mut Self {
        let (start, end) = (start.into(), end.into());
        self.payload_bytes += start.len() + end.len();
        self.ops.push(BatchOp::RemoveRange { start, end });
        self
    }

    pub fn ops(&self) -> &[BatchOp] {
        &self.ops
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Sum of key and value lengths, for callers that bound batch sizes.
    pub fn payload_bytes(&self) -> usize {
        self.payload_bytes
    }

    /// Checks what can be checked before anything is written, so a bad batch never poisons the
    /// database and never half-applies.
    pub(crate) fn validate(&self) -> Result<()> {
        for (i, op) in self.ops.iter().enumerate() {
            if let BatchOp::RemoveRange { start, end } = op {
                if start > end {
                    return Err(Error::InvalidArgument(format!(
                        "op {i}: remove_range start is above end"
                    )));
                }
            }
        }
        Ok(())
    }
}
