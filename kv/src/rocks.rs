//! The RocksDB engine (cargo feature `rocksdb`): options, the translation of batches, reads and
//! iterators onto the `rocksdb` crate, and the mapping of RocksDB statuses onto [`Error`].
//!
//! The one `unsafe` block of the crate lives here: it lets a snapshot own the database it reads.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rocksdb::{
    BlockBasedOptions, Cache, DBCompressionType, DBRawIteratorWithThreadMode, DBRecoveryMode,
    ErrorKind, FlushOptions, Options, ReadOptions, SnapshotWithThreadMode, WriteOptions, DB,
};

use crate::batch::{BatchOp, WriteBatch};
use crate::error::{Error, Result, WriteGate};
use crate::range::KeyRange;
use crate::{KeyValueDB, KvIterator, KvRead, KvSnapshot};

/// Block compression for SST files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Lz4,
    Zstd,
}

/// How a [`RocksDb`] is opened. `Default` is the configuration the stores start from.
#[derive(Debug, Clone)]
pub struct RocksOptions {
    pub create_if_missing: bool,
    /// RocksDB's own write-ahead log. Off means the caller's journal is the only log: commits then
    /// live in memtables until [`KeyValueDB::flush`], and a synced commit is refused.
    pub wal: bool,
    /// Sync every commit, whatever the caller passes (for use without an outer journal).
    /// Requires `wal`.
    pub always_sync: bool,
    /// fsync instead of fdatasync, for filesystems where fdatasync is not enough.
    pub use_fsync: bool,
    pub block_cache_bytes: usize,
    /// Bloom filter bits per key; `None` turns filters off.
    pub bloom_bits_per_key: Option<f64>,
    /// Extra consistency checks at open and in the background; a failed check is an error.
    pub paranoid_checks: bool,
    /// Check block checksums on every read (gets, multi-gets and iterators), so corrupt blocks
    /// become [`Error::Corruption`] rather than wrong bytes.
    pub verify_checksums: bool,
    pub compression: Compression,
    pub write_buffer_bytes: usize,
    pub max_background_jobs: i32,
}

impl Default for RocksOptions {
    fn default() -> Self {
        Self {
            create_if_missing: true,
            wal: true,
            always_sync: false,
            use_fsync: false,
            block_cache_bytes: 64 << 20,
            bloom_bits_per_key: Some(10.0),
            paranoid_checks: true,
            verify_checksums: true,
            compression: Compression::Lz4,
            write_buffer_bytes: 64 << 20,
            // The project's machines have two cores.
            max_background_jobs: 2,
        }
    }
}

impl RocksOptions {
    fn to_rocksdb(&self) -> Result<Options> {
        // With the WAL off, RocksDB would otherwise flush memtables at close, which hides from
        // tests (and from the store) that only `flush` makes such writes durable; a crash does
        // not flush either. `avoid_flush_during_shutdown` has no setter in the crate, hence the
        // options string, applied first because it yields a fresh `Options`.
        let mut opts = Options::default()
            .get_options_from_string("avoid_flush_during_shutdown=true")
            .map_err(map_err)?;
        opts.create_if_missing(self.create_if_missing);
        opts.set_paranoid_checks(self.paranoid_checks);
        // RocksDB's default (point in time) ends WAL replay silently at the first damaged
        // record, dropping every later one, synced or not. Only a torn tail (records a
        // crash cut) may be dropped; damage before it is an error.
        opts.set_wal_recovery_mode(DBRecoveryMode::TolerateCorruptedTailRecords);
        opts.set_use_fsync(self.use_fsync);
        opts.set_write_buffer_size(self.write_buffer_bytes);
        opts.set_max_background_jobs(self.max_background_jobs);
        opts.set_compression_type(match self.compression {
            Compression::None => DBCompressionType::None,
            Compression::Lz4 => DBCompressionType::Lz4,
            Compression::Zstd => DBCompressionType::Zstd,
        });
        let mut table = BlockBasedOptions::default();
        let cache = Cache::new_lru_cache(self.block_cache_bytes);
        table.set_block_cache(&cache);
        if let Some(bits) = self.bloom_bits_per_key {
            table.set_bloom_filter(bits, false);
        }
        opts.set_block_based_table_factory(&table);
        Ok(opts)
    }
}

/// A RocksDB database. Clones are handles on the same open database, which closes when the last
/// handle and the last snapshot are dropped.
#[derive(Clone)]
pub struct RocksDb {
    inner: Arc<Inner>,
}

struct Inner {
    db: DB,
    opts: RocksOptions,
    path: PathBuf,
    gate: WriteGate,
}

impl fmt::Debug for RocksDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RocksDb")
            .field("path", &self.inner.path)
            .field("opts", &self.inner.opts)
            .field("poisoned", &self.inner.gate.is_poisoned())
            .finish()
    }
}

impl RocksDb {
    /// Opens (or with `create_if_missing`, creates) the database in directory `path`.
    pub fn open(path: impl AsRef<Path>, opts: RocksOptions) -> Result<Self> {
        if opts.always_sync && !opts.wal {
            return Err(Error::InvalidArgument(
                "always_sync needs the WAL: without it a commit cannot be synced".into(),
            ));
        }
        let path = path.as_ref().to_path_buf();
        let db = DB::open(&opts.to_rocksdb()?, &path).map_err(|e| {
            let e = map_err(e);
            if opts.create_if_missing {
                return e;
            }
            // A database that must exist: a missing CURRENT or MANIFEST is damage to it,
            // not a bad argument or a failing disk; and every message names the database.
            let at = path.display();
            match e {
                Error::InvalidArgument(m) if m.contains("does not exist") => {
                    Error::Corruption(format!("the database in {at} is incomplete: {m}"))
                }
                Error::Io(m) if m.contains("No such file or directory") => {
                    Error::Corruption(format!("the database in {at} is incomplete: {m}"))
                }
                Error::Corruption(m) => Error::Corruption(format!("the database in {at}: {m}")),
                e => e,
            }
        })?;
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                opts,
                path,
                gate: WriteGate::default(),
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    pub fn options(&self) -> &RocksOptions {
        &self.inner.opts
    }

    /// Writes the memtables out to SST files and waits. `flush` already does this when the WAL is
    /// off; with the WAL on it is a way to bound the WAL (and recovery time) at checkpoints.
    pub fn flush_memtables(&self) -> Result<()> {
        let inner = &*self.inner;
        inner.gate.check()?;
        let mut fo = FlushOptions::default();
        fo.set_wait(true);
        inner
            .db
            .flush_opt(&fo)
            .map_err(|e| inner.gate.poison(map_err(e)))
    }

    /// A RocksDB property (for example `rocksdb.stats`), for tools and benchmarks.
    pub fn property(&self, name: &str) -> Result<Option<String>> {
        self.inner.db.property_value(name).map_err(map_err)
    }
}

impl Inner {
    fn read_opts(&self, range: Option<&KeyRange>) -> ReadOptions {
        let mut ro = ReadOptions::default();
        ro.set_verify_checksums(self.opts.verify_checksums);
        if let Some(range) = range {
            if let Some(l) = &range.lower {
                ro.set_iterate_lower_bound(l.clone());
            }
            if let Some(u) = &range.upper {
                ro.set_iterate_upper_bound(u.clone());
            }
        }
        ro
    }

    fn get(&self, key: &[u8], snap: Option<&Snap<'_>>) -> Result<Option<Vec<u8>>> {
        let mut ro = self.read_opts(None);
        if let Some(s) = snap {
            ro.set_snapshot(s);
        }
        self.db.get_opt(key, &ro).map_err(map_err)
    }

    fn multi_get(&self, keys: &[&[u8]], snap: Option<&Snap<'_>>) -> Result<Vec<Option<Vec<u8>>>> {
        let mut ro = self.read_opts(None);
        if let Some(s) = snap {
            ro.set_snapshot(s);
        }
        self.db
            .multi_get_opt(keys.iter(), &ro)
            .into_iter()
            .map(|r| r.map_err(map_err))
            .collect()
    }

    fn iter(&self, range: KeyRange, snap: Option<&Snap<'_>>) -> Box<dyn KvIterator + '_> {
        let mut ro = self.read_opts(Some(&range));
        if let Some(s) = snap {
            ro.set_snapshot(s);
        }
        Box::new(RocksIter {
            raw: self.db.raw_iterator_opt(ro),
            empty: range.is_empty(),
            range,
        })
    }
}

impl KvRead for RocksDb {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.inner.get(key, None)
    }

    fn multi_get(&self, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>> {
        self.inner.multi_get(keys, None)
    }

    fn iter(&self, range: KeyRange) -> Result<Box<dyn KvIterator + '_>> {
        Ok(self.inner.iter(range, None))
    }
}

impl KeyValueDB for RocksDb {
    fn commit(&self, batch: &WriteBatch, sync: bool) -> Result<()> {
        let inner = &*self.inner;
        inner.gate.check()?;
        batch.validate()?;
        let sync = sync || inner.opts.always_sync;
        if sync && !inner.opts.wal {
            return Err(Error::InvalidArgument(
                "synced commit with the WAL off; use flush() to make writes durable".into(),
            ));
        }
        if batch.is_empty() {
            // An empty RocksDB batch may skip the WAL entirely, so sync it explicitly.
            return match sync {
                true => inner
                    .db
                    .flush_wal(true)
                    .map_err(|e| inner.gate.poison(map_err(e))),
                false => Ok(()),
            };
        }
        let mut wb = rocksdb::WriteBatch::default();
        for op in batch.ops() {
            match op {
                BatchOp::Set { key, value } => wb.put(key, value),
                BatchOp::Remove { key } => wb.delete(key),
                // Empty ranges are skipped: RocksDB versions differ on whether they are an error.
                BatchOp::RemoveRange { start, end } if start < end => wb.delete_range(start, end),
                BatchOp::RemoveRange { .. } => {}
            }
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(sync);
        wo.disable_wal(!inner.opts.wal);
        inner
            .db
            .write_opt(wb, &wo)
            .map_err(|e| inner.gate.poison(map_err(e)))
    }

    fn flush(&self) -> Result<()> {
        let inner = &*self.inner;
        if !inner.opts.wal {
            // Flush jobs sync the new SST files and the MANIFEST before `wait` returns.
            return self.flush_memtables();
        }
        inner.gate.check()?;
        // Everything committed is in the WAL already; syncing it is all durability needs and is
        // far cheaper than writing memtables out.
        inner
            .db
            .flush_wal(true)
            .map_err(|e| inner.gate.poison(map_err(e)))
    }

    fn snapshot(&self) -> Result<Arc<dyn KvSnapshot>> {
        let inner = Arc::clone(&self.inner);
        let snap = inner.db.snapshot();
        // SAFETY: the snapshot borrows `inner.db`, which lives inside the `Arc<Inner>` stored in
        // the same `RocksSnapshot`. The heap allocation does not move, and field order makes
        // `snap` drop (releasing the RocksDB snapshot) before that `Arc`, so the borrow never
        // outlives the database. Nothing hands out the `'static` reference itself.
        let snap = unsafe { std::mem::transmute::<Snap<'_>, Snap<'static>>(snap) };
        Ok(Arc::new(RocksSnapshot { snap, inner }))
    }

    fn is_poisoned(&self) -> bool {
        self.inner.gate.is_poisoned()
    }
}

type Snap<'a> = SnapshotWithThreadMode<'a, DB>;

struct RocksSnapshot {
    // Must stay declared before `inner`: see the SAFETY note in `RocksDb::snapshot`.
    snap: Snap<'static>,
    inner: Arc<Inner>,
}

impl fmt::Debug for RocksSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RocksSnapshot")
            .field("path", &self.inner.path)
            .field("sequence", &self.snap.sequence_number())
            .finish()
    }
}

impl KvRead for RocksSnapshot {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.inner.get(key, Some(&self.snap))
    }

    fn multi_get(&self, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>> {
        self.inner.multi_get(keys, Some(&self.snap))
    }

    fn iter(&self, range: KeyRange) -> Result<Box<dyn KvIterator + '_>> {
        Ok(self.inner.iter(range, Some(&self.snap)))
    }
}

impl KvSnapshot for RocksSnapshot {}

struct RocksIter<'a> {
    raw: DBRawIteratorWithThreadMode<'a, DB>,
    range: KeyRange,
    // RocksDB's behaviour with lower >= upper bounds is not specified; never position such a one.
    empty: bool,
}

impl RocksIter<'_> {
    /// An invalid iterator is either at the end or failed; only `status` tells which.
    fn settle(&self) -> Result<()> {
        if self.raw.valid() {
            Ok(())
        } else {
            self.raw.status().map_err(map_err)
        }
    }
}

impl KvIterator for RocksIter<'_> {
    fn seek_to_first(&mut self) -> Result<()> {
        if self.empty {
            return Ok(());
        }
        self.raw.seek_to_first();
        self.settle()
    }

    fn seek(&mut self, key: &[u8]) -> Result<()> {
        if self.empty {
            return Ok(());
        }
        self.raw.seek(self.range.clamp_seek(key));
        self.settle()
    }

    fn next(&mut self) -> Result<()> {
        if !self.raw.valid() {
            return Ok(());
        }
        self.raw.next();
        self.settle()
    }

    fn current(&self) -> Option<(&[u8], &[u8])> {
        self.raw.item()
    }
}

fn map_err(e: rocksdb::Error) -> Error {
    let kind = e.kind();
    let msg = e.into_string();
    // RocksDB's status text starts with its code's name, which our variant already says.
    let msg = ["Corruption: ", "IO error: ", "Invalid argument: "]
        .iter()
        .find_map(|p| msg.strip_prefix(p))
        .map(str::to_string)
        .unwrap_or(msg);
    match kind {
        ErrorKind::Corruption => Error::Corruption(msg),
        ErrorKind::IOError => Error::Io(msg),
        ErrorKind::InvalidArgument => Error::InvalidArgument(msg),
        _ => Error::Engine(msg),
    }
}
