//! `ostore-kv` owns the ordered key-value layer under the KV-backed stores: the [`KeyValueDB`]
//! trait (reads, iterators, atomic batches, durability, snapshots), its error type, and two
//! engines — RocksDB ([`RocksDb`], cargo feature `rocksdb`, on by default) and an in-memory
//! engine ([`MemoryDb`]) for fast tests.
//!
//! Keys are opaque bytes compared bytewise; this crate knows nothing of objects or collections
//! (the stores encode those into order-preserving keys).
//!
//! Durability contract: a commit with `sync = true` returns only once the batch is durable; other
//! commits become durable at the next synced commit or at [`KeyValueDB::flush`]. Any failed write
//! or flush poisons the handle ([`Error::Poisoned`]) — the caller reopens to recover.

mod batch;
mod error;
mod memory;
mod range;
#[cfg(feature = "rocksdb")]
mod rocks;

use std::sync::Arc;

pub use batch::{BatchOp, WriteBatch};
pub use error::{Error, Result};
pub use memory::{decode_image, encode_image, MemoryDb, SaveImage};
pub use range::{keys_in_range, prefix_successor, KeyRange};
#[cfg(feature = "rocksdb")]
pub use rocks::{Compression, RocksDb, RocksOptions};

/// A forward cursor over a [`KeyRange`] of a consistent view.
///
/// A new cursor is unpositioned: call [`seek_to_first`](Self::seek_to_first) or
/// [`seek`](Self::seek) first. Positioning calls return the engine's error (for example
/// [`Error::Corruption`]) instead of quietly ending the iteration early, so a scan that stops
/// without an error really reached the end of its range.
pub trait KvIterator {
    /// Moves to the first key of the range.
    fn seek_to_first(&mut self) -> Result<()>;
    /// Moves to the first key `>= key` (lower_bound), never below the range's lower bound.
    fn seek(&mut self, key: &[u8]) -> Result<()>;
    /// Moves to the following key; a no-op on an exhausted cursor.
    fn next(&mut self) -> Result<()>;
    /// The current key and value, or `None` once the range is exhausted (or before positioning).
    fn current(&self) -> Option<(&[u8], &[u8])>;

    fn valid(&self) -> bool {
        self.current().is_some()
    }

    /// Moves to the first key `> key` (upper_bound, as Ceph's omap iterators have it).
    fn seek_past(&mut self, key: &[u8]) -> Result<()> {
        self.seek(key)?;
        if self.current().is_some_and(|(k, _)| k == key) {
            self.next()?;
        }
        Ok(())
    }
}

/// Reads shared by a live database and by a [`KvSnapshot`].
pub trait KvRead: Send + Sync {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// One result per key, in the order given. Fails as a whole if any lookup fails, so a caller
    /// never mistakes an unreadable key for a missing one.
    fn multi_get(&self, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>>;

    /// A cursor over `range`, reading one consistent view taken now (later writes are invisible
    /// to it). It borrows `self`; take a [`KvSnapshot`] to keep a view beyond that.
    fn iter(&self, range: KeyRange) -> Result<Box<dyn KvIterator + '_>>;

    /// A cursor over the keys that start with `prefix`.
    fn prefix_iter(&self, prefix: &[u8]) -> Result<Box<dyn KvIterator + '_>> {
        self.iter(KeyRange::prefix(prefix))
    }
}

/// A read-only view of the database as it was when the snapshot was taken. It keeps the engine's
/// resources alive on its own, so it may outlive the handle it came from.
pub trait KvSnapshot: KvRead + std::fmt::Debug {}

/// An ordered, transactional key-value database. Object-safe: stores hold `Arc<dyn KeyValueDB>`.
pub trait KeyValueDB: KvRead + std::fmt::Debug {
    /// Applies `batch` atomically: after a crash either all of it or none of it is visible. With
    /// `sync` the batch is durable on return. An empty batch is a no-op (and with `sync`, still
    /// makes earlier commits durable).
    fn commit(&self, batch: &WriteBatch, sync: bool) -> Result<()>;

    /// Makes every commit so far durable, whatever the WAL setting; used at checkpoints.
    fn flush(&self) -> Result<()>;

    /// A consistent read view as of now.
    fn snapshot(&self) -> Result<Arc<dyn KvSnapshot>>;

    /// True once a write or flush has failed and the handle refuses writes.
    fn is_poisoned(&self) -> bool;
}

/// Reads every remaining entry of `range` in order; a convenience for small ranges and tests.
pub fn collect_range(
    db: &(impl KvRead + ?Sized),
    range: KeyRange,
) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut it = db.iter(range)?;
    it.seek_to_first()?;
    let mut out = Vec::new();
    while let Some((k, v)) = it.current() {
        out.push((k.to_vec(), v.to_vec()));
        it.next()?;
    }
    Ok(out)
}
