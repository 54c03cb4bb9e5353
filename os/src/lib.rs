//! ostore's core vocabulary: the [`ObjectStore`] trait, collection and object ids in
//! Ceph's forms and order, transactions with Ceph's op codes and their binary and JSON
//! encodings, the documented limits, and the state checks every backend shares.
//!
//! This crate knows nothing of RocksDB or of any backend's files.

pub mod codec;
pub mod error;
pub mod export;
pub mod fsck;
pub mod hash;
pub mod ids;
pub mod journaling;
pub mod json;
pub mod keys;
pub mod limits;
pub mod precheck;
pub(crate) mod sched;
pub mod scrub;
pub mod store;
pub mod superblock;
pub(crate) mod sync;
pub mod transaction;

pub use error::{Error, ErrorKind, Result};
pub use ids::{CollectionId, ObjectId, PgId, Snap, NO_GEN, NO_SHARD};
pub use precheck::{precheck, StateView};
pub use store::{
    Callback, CollectionHandle, Completion, FsckReport, ObjectStat, ObjectStore, OmapIterator,
    SnapshotOmapIterator, StoreStatfs,
};
pub use transaction::{OmapKey, Op, OpCode, Transaction};
