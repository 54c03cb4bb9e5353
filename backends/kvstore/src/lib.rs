//! KeyValueStore: every collection, object strip, attr and omap entry is a record in a
//! key-value database (RocksDB, or the in-memory engine for fast tests), committed
//! through the shared journal ([`JournaledStore`]) like Ceph's KeyValueStore/KStore.
//!
//! What this crate owns:
//! - the key layout and record encodings ([`layout`], documented in docs/FORMATS.md);
//! - the translation of a transaction into one atomic batch ([`apply`], [`overlay`]);
//! - exactly-once replay: each transaction's batch carries a marker for its seq, so a
//!   replayed transaction whose batch reached the database is skipped; a checkpoint
//!   records its seq and drops the markers below it in one batch, then flushes;
//! - CRC32C per data strip, checked on every read: a mismatch is
//!   `ErrorKind::Corrupt`, never wrong bytes; [`KvBackend::fsck`] walks every record.
//!
//! Concurrency: applies are serialized (one batch at a time, so the overlay reads a
//! stable database); reads run in parallel and are excluded only while a batch commits,
//! so a read never sees half a transaction.

pub mod apply;
pub mod cache;
pub mod layout;
pub mod overlay;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use ostore_journal::{AtomicFileReader, AtomicFileWriter, Vfs};
use ostore_kv::{
    KeyRange, KeyValueDB, KvRead, MemoryDb, RocksDb, RocksOptions, SaveImage, WriteBatch,
};
use ostore_os::journaling::{Backend, JournaledStore, JournalingOptions};
use ostore_os::store::{
    FsckReport, ObjectStat, OmapContents, OmapIterator, SnapshotOmapIterator, StoreStatfs,
};
use ostore_os::{precheck, CollectionId, Error, ErrorKind, ObjectId, OmapKey, Result, Transaction};

use crate::apply::{Applier, DbView};
use crate::cache::{Cached, MetaCache, META_CACHE_ENTRIES};
use crate::layout::{Header, StoreRecord, P_ATTR, P_DATA, P_OMAP};
use crate::overlay::Overlay;

pub const STORE_TYPE: &str = "kvstore";
/// Default strip size (Ceph KeyValueStore's default, 4 KiB).
pub const DEFAULT_STRIP_SIZE: u32 = 4096;

const CONF_FILE: &str = "kvstore.conf";
const CONF_MAGIC: u32 = u32::from_le_bytes(*b"OSKV");
const CONF_VERSION: u32 = 1;
const DB_DIR: &str = "db";
/// The in-memory engine's image (see `ostore_kv::encode_image`).
const MEMDB_FILE: &str = "memdb";
const MEMDB_MAGIC: u32 = u32::from_le_bytes(*b"OSMD");
const MEMDB_AUTOSAVE: u64 = 4;
/// The image holds the whole database, far beyond the small files atomic files are for.
const MEMDB_MAX: u64 = 1 << 36;

/// Which key-value engine holds the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// RocksDB in `<data>/db`. `wal`: keep RocksDB's own WAL on (every commit logged
    /// twice, cheap checkpoints) or off (the shared journal is the only log; a
    /// checkpoint flushes memtables).
    RocksDb { wal: bool },
    /// The in-memory engine, its whole image saved as `<data>/memdb` (an atomic file
    /// through the store's I/O layer) at every checkpoint and after every 4th commit
    /// (as RocksDB flushes memtables on its own): commits not saved are rebuilt by
    /// replay, as with RocksDB's WAL off. For fast tests, and for the simulated disk's
    /// crash and fault tests; every save rewrites the whole image.
    Memory,
}

/// Choices fixed at mkfs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvStoreOptions {
    pub engine: Engine,
    /// Bytes per data strip: a power of two in [512, 1 MiB].
    pub strip_size: u32,
}

impl Default for KvStoreOptions {
    fn default() -> Self {
        KvStoreOptions {
            // The journal already made each transaction durable; see BENCHMARKS.md for
            // why the double log is off by default.
            engine: Engine::RocksDb { wal: false },
            strip_size: DEFAULT_STRIP_SIZE,
        }
    }
}

impl KvStoreOptions {
    /// `kvstore.conf`: u32 version, u8 engine (0 rocksdb, 1 memory), u8 wal, u16 0,
    /// u32 strip size (little-endian, 12 bytes), inside an atomic file.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(12);
        b.extend_from_slice(&CONF_VERSION.to_le_bytes());
        let (engine, wal) = match self.engine {
            Engine::RocksDb { wal } => (0u8, u8::from(wal)),
            Engine::Memory => (1, 0),
        };
        b.push(engine);
        b.push(wal);
        b.extend_from_slice(&0u16.to_le_bytes());
        b.extend_from_slice(&self.strip_size.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Result<KvStoreOptions> {
        if b.len() != 12 {
            return Err(Error::corrupt(format!(
                "{CONF_FILE} holds {} bytes, expected 12",
                b.len()
            )));
        }
        let version = u32::from_le_bytes(b[0..4].try_into().expect("4 bytes"));
        if version != CONF_VERSION {
            return Err(Error::invalid(format!(
                "{CONF_FILE} has version {version}; this build reads version {CONF_VERSION}"
            )));
        }
        let engine = match (b[4], b[5]) {
            (0, w @ (0 | 1)) => Engine::RocksDb { wal: w == 1 },
            (1, 0) => Engine::Memory,
            (e, w) => {
                return Err(Error::corrupt(format!(
                    "{CONF_FILE} names engine {e} with wal flag {w}"
                )))
            }
        };
        let strip_size = u32::from_le_bytes(b[8..12].try_into().expect("4 bytes"));
        let o = KvStoreOptions { engine, strip_size };
        o.validate().map_err(|e| Error::corrupt(e.to_string()))?;
        Ok(o)
    }

    pub fn validate(&self) -> Result<()> {
        if !self.strip_size.is_power_of_two() || !(512..=(1 << 20)).contains(&self.strip_size) {
            return Err(Error::invalid(format!(
                "strip size {} is not a power of two in [512, 1048576]",
                self.strip_size
            )));
        }
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn mkfs_registry() -> &'static Mutex<HashMap<PathBuf, KvStoreOptions>> {
    static R: OnceLock<Mutex<HashMap<PathBuf, KvStoreOptions>>> = OnceLock::new();
    R.get_or_init(Default::default)
}

/// Sets the options the next mkfs of the store at `path` uses ([`Backend::open`] only
/// receives a path).
pub fn set_mkfs_options(path: &Path, opts: KvStoreOptions) {
    lock(mkfs_registry()).insert(path.to_path_buf(), opts);
}

pub(crate) fn kve(e: ostore_kv::Error) -> Error {
    match e {
        ostore_kv::Error::Corruption(m) => Error::corrupt(format!("kv: {m}")),
        ostore_kv::Error::InvalidArgument(m) => Error::invalid(format!("kv: {m}")),
        ostore_kv::Error::Poisoned(m) => Error::failed(format!("kv: {m}")),
        e => Error::io(format!("kv: {e}")),
    }
}

/// Copies the part of strip payload `p` (which starts at object offset `at`) that lies
/// in [off, end) into `out` (which holds [off, end)).
pub(crate) fn copy_strip(out: &mut [u8], off: u64, end: u64, at: u64, p: &[u8]) {
    let from = off.max(at);
    let to = end.min(at + p.len() as u64);
    if from < to {
        out[(from - off) as usize..(to - off) as usize]
            .copy_from_slice(&p[(from - at) as usize..(to - at) as usize]);
    }
}

/// KeyValueStore: [`KvBackend`] committed through the shared journal.
pub type KeyValueStore = JournaledStore<KvBackend>;

/// A KeyValueStore in `path` with journal options `jopts` and mkfs options `kvopts`.
pub fn kvstore(
    path: impl Into<PathBuf>,
    jopts: JournalingOptions,
    kvopts: KvStoreOptions,
) -> KeyValueStore {
    let path = path.into();
    set_mkfs_options(&path, kvopts);
    JournaledStore::with_options(path, jopts)
}

struct Mounted {
    db: Arc<dyn KeyValueDB>,
    strip_size: u32,
    /// Object headers and collection records (see [`cache`]).
    meta: MetaCache,
}

impl Mounted {
    /// The database with headers and collection records served from the cache; only
    /// under the apply lock or the commit lock (shared or exclusive).
    fn view(&self) -> Cached<'_> {
        Cached {
            db: &*self.db,
            cache: &self.meta,
        }
    }

    /// Commits an applied batch and brings the cache up to date, under the exclusive
    /// commit lock the caller holds.
    fn commit_noted(&self, b: &WriteBatch) -> Result<()> {
        match self.db.commit(b, false) {
            Ok(()) => {
                self.meta.note_batch(b);
                Ok(())
            }
            Err(e) => {
                // Whatever reached the database is unknown: forget everything.
                self.meta.clear();
                Err(kve(e))
            }
        }
    }
}

impl std::fmt::Debug for Mounted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mounted")
            .field("strip_size", &self.strip_size)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct ApplyState {
    next_nid: u64,
    /// Transactions applied (or skipped) per seq since mount, for entries not yet
    /// covered by a checkpoint.
    seen: HashMap<u64, u64>,
    /// The applied markers found at mount (seq -> transactions in the database): only
    /// replayed entries can have one, so applies never read markers from the database.
    found: HashMap<u64, u64>,
}

/// The key-value backend.
#[derive(Debug)]
pub struct KvBackend {
    path: PathBuf,
    vfs: Arc<dyn Vfs>,
    mounted: RwLock<Option<Arc<Mounted>>>,
    /// Held exclusively while a batch commits, shared by reads.
    commit: RwLock<()>,
    /// Serializes applies.
    applying: Mutex<ApplyState>,
    /// Strip checksum mismatches seen by reads since mount.
    csum_errors: AtomicU64,
}

impl KvBackend {
    fn conf_path(&self) -> PathBuf {
        self.path.join(CONF_FILE)
    }

    /// The options this store was made with.
    pub fn options(&self) -> Result<KvStoreOptions> {
        let b = AtomicFileReader::new(&*self.vfs, self.conf_path(), CONF_MAGIC)
            .read()
            .map_err(|e| Error::corrupt(format!("{}: {e}", self.conf_path().display())))?
            .ok_or_else(|| {
                Error::not_found(format!("{} is missing", self.conf_path().display()))
            })?;
        KvStoreOptions::decode(&b)
    }

    fn open_db(&self, o: &KvStoreOptions, create: bool) -> Result<Arc<dyn KeyValueDB>> {
        match o.engine {
            Engine::Memory => {
                // The image lives in an atomic file of the store's I/O layer, so this
                // engine runs on the simulated disk too (and outlives its process).
                let path = self.path.join(MEMDB_FILE);
                let image = if create {
                    None
                } else {
                    let b = AtomicFileReader::new(&*self.vfs, &path, MEMDB_MAGIC)
                        .max_payload(MEMDB_MAX)
                        .read()
                        .map_err(|e| Error::corrupt(format!("{}: {e}", path.display())))?
                        .ok_or_else(|| {
                            Error::not_found(format!("{} is missing", path.display()))
                        })?;
                    Some(b)
                };
                let vfs = self.vfs.clone();
                let save: SaveImage = Box::new(move |b| {
                    AtomicFileWriter::new(&*vfs, &path, MEMDB_MAGIC)
                        .max_payload(MEMDB_MAX)
                        .write(b)
                        .map_err(|e| e.to_string())
                });
                // Saving every few commits on its own, as RocksDB flushes memtables,
                // puts applied transactions in the image ahead of the checkpoint, so
                // replay's applied markers are exercised as on RocksDB.
                Ok(Arc::new(
                    MemoryDb::persistent(image.as_deref(), save, MEMDB_AUTOSAVE).map_err(kve)?,
                ))
            }
            Engine::RocksDb { wal } => {
                let ro = RocksOptions {
                    create_if_missing: create,
                    wal,
                    ..RocksOptions::default()
                };
                Ok(Arc::new(
                    RocksDb::open(self.path.join(DB_DIR), ro).map_err(kve)?,
                ))
            }
        }
    }

    fn m(&self) -> Result<Arc<Mounted>> {
        self.mounted
            .read()
            .map_err(|_| Error::failed("kvstore lock poisoned"))?
            .clone()
            .ok_or_else(|| Error::not_mounted("kvstore backend is not mounted"))
    }

    fn read_guard(&self) -> Result<std::sync::RwLockReadGuard<'_, ()>> {
        self.commit
            .read()
            .map_err(|_| Error::failed("kvstore lock poisoned"))
    }

    /// Runs `f` on the mounted database with commits excluded.
    fn with<T>(&self, f: impl FnOnce(&Mounted) -> Result<T>) -> Result<T> {
        let m = self.m()?;
        let _g = self.read_guard()?;
        f(&m)
    }

    fn require_coll(db: &dyn KvRead, cid: &CollectionId) -> Result<u32> {
        match db.get(&layout::coll_key(cid)).map_err(kve)? {
            Some(v) => layout::decode_coll(&v).map_err(|e| e.context(format!("collection {cid}"))),
            None => Err(Error::not_found(format!("collection {cid} does not exist"))),
        }
    }

    fn header(db: &dyn KvRead, cid: &CollectionId, oid: &ObjectId) -> Result<Header> {
        Self::require_coll(db, cid)?;
        match db.get(&layout::obj_key(cid, oid)).map_err(kve)? {
            Some(v) => Header::decode(&v).map_err(|e| e.context(format!("object {oid} in {cid}"))),
            None => Err(Error::not_found(format!(
                "object {oid} does not exist in {cid}"
            ))),
        }
    }

    fn scan(db: &dyn KvRead, lo: Vec<u8>, hi: Vec<u8>) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        ostore_kv::collect_range(db, KeyRange::new(lo, hi)).map_err(kve)
    }

    fn check_strip<'a>(&self, v: &'a [u8], nid: u64, idx: u64) -> Result<&'a [u8]> {
        layout::decode_strip(v, nid, idx).inspect_err(|_| {
            self.csum_errors.fetch_add(1, Ordering::Relaxed);
        })
    }

    /// Strip checksum mismatches that reads have met since mount.
    pub fn checksum_errors(&self) -> u64 {
        self.csum_errors.load(Ordering::Relaxed)
    }

    fn omap_entries(db: &dyn KvRead, nid: u64) -> Result<BTreeMap<OmapKey, Vec<u8>>> {
        let (lo, hi) = layout::nid_range(P_OMAP, nid);
        Ok(Self::scan(db, lo, hi)?
            .into_iter()
            .map(|(k, v)| (k[9..].to_vec(), v))
            .collect())
    }
}

impl Backend for KvBackend {
    const STORE_TYPE: &'static str = STORE_TYPE;

    fn open(data_path: &Path, vfs: Arc<dyn Vfs>) -> KvBackend {
        KvBackend {
            path: data_path.to_path_buf(),
            vfs,
            mounted: RwLock::new(None),
            commit: RwLock::new(()),
            applying: Mutex::new(ApplyState::default()),
            csum_errors: AtomicU64::new(0),
        }
    }

    fn mkfs(&self) -> Result<()> {
        let o = lock(mkfs_registry())
            .get(&self.path)
            .copied()
            .unwrap_or_default();
        o.validate()?;
        let db = self.open_db(&o, true)?;
        let mut b = WriteBatch::new();
        b.set(
            layout::K_SUPER.to_vec(),
            StoreRecord {
                strip_size: o.strip_size,
            }
            .encode(),
        );
        b.set(layout::K_CKPT.to_vec(), layout::encode_u64(0));
        b.set(layout::K_NID.to_vec(), layout::encode_u64(1));
        db.commit(&b, false).map_err(kve)?;
        db.flush().map_err(kve)?;
        drop(db);
        // Written last: a store without its conf file is detectably unformatted.
        AtomicFileWriter::new(&*self.vfs, self.conf_path(), CONF_MAGIC)
            .write(&o.encode())
            .map_err(|e| Error::io(format!("writing {CONF_FILE}: {e}")))?;
        Ok(())
    }

    fn mount(&self) -> Result<u64> {
        let o = self.options()?;
        let db = self.open_db(&o, false)?;
        let get = |k: &[u8], what: &str| -> Result<Vec<u8>> {
            db.get(k)
                .map_err(kve)?
                .ok_or_else(|| Error::corrupt(format!("the {what} record is missing")))
        };
        let sr = StoreRecord::decode(&get(layout::K_SUPER, "store")?)?;
        let ckpt = layout::decode_u64(&get(layout::K_CKPT, "checkpoint")?, "checkpoint")?;
        let nid = layout::decode_u64(&get(layout::K_NID, "next nid")?, "next nid")?;
        // Markers below the checkpoint were dropped with it: what is left is exactly
        // the entries replay may meet again.
        let mut found = HashMap::new();
        for (k, v) in Self::scan(&*db, vec![layout::P_APPLIED], vec![layout::P_APPLIED + 1])? {
            let seq = layout::applied_seq(&k)
                .ok_or_else(|| Error::corrupt("applied marker key has a bad length"))?;
            found.insert(seq, layout::decode_u64(&v, "applied marker")?);
        }
        *lock(&self.applying) = ApplyState {
            next_nid: nid,
            seen: HashMap::new(),
            found,
        };
        *self
            .mounted
            .write()
            .map_err(|_| Error::failed("kvstore lock poisoned"))? = Some(Arc::new(Mounted {
            db,
            strip_size: sr.strip_size,
            meta: MetaCache::new(META_CACHE_ENTRIES),
        }));
        Ok(ckpt)
    }

    fn umount(&self) -> Result<()> {
        *self
            .mounted
            .write()
            .map_err(|_| Error::failed("kvstore lock poisoned"))? = None;
        Ok(())
    }

    fn apply(&self, seq: u64, txn: &Transaction) -> Result<Result<()>> {
        let mut st = lock(&self.applying);
        let m = self.m()?;
        let view = m.view();
        let marker = layout::applied_key(seq);
        // One journal entry (one seq) may carry several transactions, applied in order:
        // this is the `index`-th of its seq since mount, and the marker counts how many
        // of them reached the database before.
        let index = *st.seen.get(&seq).unwrap_or(&0);
        let done = *st.found.get(&seq).unwrap_or(&0);
        st.seen.insert(seq, index + 1);
        if index < done {
            // Replay of a transaction whose batch already reached the database.
            return Ok(Ok(()));
        }
        let mut a = Applier {
            ov: Overlay::new(&view),
            strip_size: m.strip_size,
            next_nid: st.next_nid,
            nid_changed: false,
        };
        let verdict = precheck(txn, &DbView(&a.ov));
        if verdict.is_ok() {
            for (i, op) in txn.ops().iter().enumerate() {
                // Precheck passed, so a failure here (I/O, a corrupt record) would leave
                // a committed transaction unapplied: fail stop.
                // Damage found on the way keeps its kind: the store fails stop either
                // way, and whoever mounts it learns that it is damaged (EUCLEAN).
                a.apply_op(op).map_err(|e| match e.kind() {
                    ErrorKind::Corrupt => e.context(format!("op {i} ({})", op.code().name())),
                    _ => Error::failed(format!("op {i} ({}): {e}", op.code().name())),
                })?;
            }
        }
        if a.nid_changed {
            a.ov.set(layout::K_NID.to_vec(), layout::encode_u64(a.next_nid));
        }
        let nid = a.next_nid;
        let mut batch = match verdict {
            Ok(()) => a.ov.into_batch(),
            // A rejected transaction changes nothing but is marked, so replay skips it.
            Err(_) => WriteBatch::new(),
        };
        batch.set(marker, layout::encode_u64(index + 1));
        {
            let _w = self
                .commit
                .write()
                .map_err(|_| Error::failed("kvstore lock poisoned"))?;
            m.commit_noted(&batch)?;
        }
        if verdict.is_ok() {
            st.next_nid = nid;
        }
        Ok(verdict)
    }

    fn checkpoint(&self, seq: u64) -> Result<()> {
        let mut st = lock(&self.applying);
        st.seen.retain(|&s, _| s > seq);
        st.found.retain(|&s, _| s > seq);
        let m = self.m()?;
        let mut b = WriteBatch::new();
        b.set(layout::K_CKPT.to_vec(), layout::encode_u64(seq));
        // Every transaction up to `seq` is applied, so their markers are no longer needed.
        b.remove_range(layout::applied_key(0), layout::applied_key(seq + 1));
        m.commit_noted(&b)?;
        m.db.flush().map_err(kve)
    }

    fn fsck(&self, deep: bool) -> Result<FsckReport> {
        self.with(|m| fsck(&*m.db, deep))
    }

    fn repair(&self) -> Result<FsckReport> {
        let _a = lock(&self.applying);
        let m = self.m()?;
        let mut r = fsck(&*m.db, true)?;
        let mut b = WriteBatch::new();
        for nid in orphan_nids(&*m.db)? {
            for p in layout::NID_PREFIXES {
                let (lo, hi) = layout::nid_range(p, nid);
                b.remove_range(lo, hi);
            }
            r.repaired
                .push(format!("removed the records of orphan nid {nid}"));
        }
        if !b.is_empty() {
            let _w = self
                .commit
                .write()
                .map_err(|_| Error::failed("kvstore lock poisoned"))?;
            m.commit_noted(&b)?;
            m.db.flush().map_err(kve)?;
            r.errors.retain(|e| !e.contains("orphan"));
        }
        Ok(r)
    }

    fn statfs(&self) -> Result<StoreStatfs> {
        self.with(|m| {
            let db = &*m.db;
            let (total, available) = fs_space(&self.path)?;
            let mut st = StoreStatfs {
                total,
                available,
                ..Default::default()
            };
            let colls = Self::scan(db, vec![layout::P_COLL], vec![layout::P_COLL + 1])?;
            st.collections = colls.len() as u64;
            let mut it = db.iter(KeyRange::prefix(&[layout::P_OBJ])).map_err(kve)?;
            it.seek_to_first().map_err(kve)?;
            while it.valid() {
                st.objects += 1;
                it.next().map_err(kve)?;
            }
            let mut it = db.iter(KeyRange::prefix(&[P_DATA])).map_err(kve)?;
            it.seek_to_first().map_err(kve)?;
            while let Some((_, v)) = it.current() {
                st.data_stored += v.len().saturating_sub(4) as u64;
                it.next().map_err(kve)?;
            }
            Ok(st)
        })
    }

    fn exists(&self, cid: &CollectionId, oid: &ObjectId) -> Result<bool> {
        self.with(|m| {
            Self::require_coll(&m.view(), cid)?;
            Ok(m.view()
                .get(&layout::obj_key(cid, oid))
                .map_err(kve)?
                .is_some())
        })
    }

    fn stat(&self, cid: &CollectionId, oid: &ObjectId) -> Result<ObjectStat> {
        self.with(|m| {
            let h = Self::header(&m.view(), cid, oid)?;
            let (lo, hi) = layout::nid_range(P_DATA, h.nid);
            let mut it = m.db.iter(KeyRange::new(lo, hi)).map_err(kve)?;
            it.seek_to_first().map_err(kve)?;
            let mut strips = 0u64;
            while it.valid() {
                strips += 1;
                it.next().map_err(kve)?;
            }
            Ok(ObjectStat {
                size: h.size,
                allocated: strips * u64::from(h.strip_size),
            })
        })
    }

    fn read(&self, cid: &CollectionId, oid: &ObjectId, off: u64, len: u64) -> Result<Vec<u8>> {
        self.with(|m| {
            let h = Self::header(&m.view(), cid, oid)?;
            if off >= h.size {
                return Ok(Vec::new());
            }
            let avail = h.size - off;
            let n = if len == 0 { avail } else { len.min(avail) };
            let end = off + n;
            let s = u64::from(h.strip_size);
            let mut out = vec![0u8; n as usize];
            let first = off / s;
            let last = (end - 1) / s;
            if last - first < 16 {
                let keys: Vec<Vec<u8>> = (first..=last)
                    .map(|i| layout::strip_key(h.nid, i))
                    .collect();
                let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
                for (i, v) in m.db.multi_get(&refs).map_err(kve)?.into_iter().enumerate() {
                    if let Some(v) = v {
                        let idx = first + i as u64;
                        let p = self.check_strip(&v, h.nid, idx)?;
                        copy_strip(&mut out, off, end, idx * s, p);
                    }
                }
            } else {
                // Long reads: one ordered scan beats many point lookups.
                let range = KeyRange::new(
                    layout::strip_key(h.nid, first),
                    layout::strip_key(h.nid, last + 1),
                );
                let mut it = m.db.iter(range).map_err(kve)?;
                it.seek_to_first().map_err(kve)?;
                while let Some((k, v)) = it.current() {
                    let idx = layout::strip_of_key(k)?;
                    let p = self.check_strip(v, h.nid, idx)?;
                    copy_strip(&mut out, off, end, idx * s, p);
                    it.next().map_err(kve)?;
                }
            }
            Ok(out)
        })
    }

    fn fiemap(
        &self,
        cid: &CollectionId,
        oid: &ObjectId,
        off: u64,
        len: u64,
    ) -> Result<BTreeMap<u64, u64>> {
        self.with(|m| {
            let h = Self::header(&m.view(), cid, oid)?;
            let end = if len == 0 {
                h.size
            } else {
                off.saturating_add(len).min(h.size)
            };
            let mut out: Vec<(u64, u64)> = Vec::new();
            if end <= off {
                return Ok(BTreeMap::new());
            }
            let s = u64::from(h.strip_size);
            let range = KeyRange::new(
                layout::strip_key(h.nid, off / s),
                layout::strip_key(h.nid, (end - 1) / s + 1),
            );
            let mut it = m.db.iter(range).map_err(kve)?;
            it.seek_to_first().map_err(kve)?;
            while let Some((k, _)) = it.current() {
                let idx = layout::strip_of_key(k)?;
                let from = off.max(idx * s);
                let to = end.min(idx * s + s);
                match out.last_mut() {
                    Some((o, l)) if *o + *l == from => *l += to - from,
                    _ => out.push((from, to - from)),
                }
                it.next().map_err(kve)?;
            }
            Ok(out.into_iter().collect())
        })
    }

    fn getattr(&self, cid: &CollectionId, oid: &ObjectId, name: &str) -> Result<Vec<u8>> {
        self.with(|m| {
            let h = Self::header(&m.view(), cid, oid)?;
            m.db.get(&layout::attr_key(h.nid, name))
                .map_err(kve)?
                .ok_or_else(|| Error::no_data(format!("object {oid} has no attr {name:?}")))
        })
    }

    fn getattrs(&self, cid: &CollectionId, oid: &ObjectId) -> Result<BTreeMap<String, Vec<u8>>> {
        self.with(|m| {
            let h = Self::header(&m.view(), cid, oid)?;
            let (lo, hi) = layout::nid_range(P_ATTR, h.nid);
            Self::scan(&*m.db, lo, hi)?
                .into_iter()
                .map(|(k, v)| {
                    let name = String::from_utf8(k[9..].to_vec()).map_err(|_| {
                        Error::corrupt(format!("object {oid} has an attr name that is not UTF-8"))
                    })?;
                    Ok((name, v))
                })
                .collect()
        })
    }

    fn list_collections(&self) -> Result<Vec<CollectionId>> {
        self.with(|m| {
            Self::scan(&*m.db, vec![layout::P_COLL], vec![layout::P_COLL + 1])?
                .iter()
                .map(|(k, _)| ostore_os::keys::decode_collection_key(&k[1..]))
                .collect()
        })
    }

    fn collection_exists(&self, cid: &CollectionId) -> Result<bool> {
        self.with(|m| Ok(m.view().get(&layout::coll_key(cid)).map_err(kve)?.is_some()))
    }

    fn collection_empty(&self, cid: &CollectionId) -> Result<bool> {
        self.with(|m| {
            Self::require_coll(&m.view(), cid)?;
            let mut it =
                m.db.iter(KeyRange::prefix(&layout::obj_prefix(cid)))
                    .map_err(kve)?;
            it.seek_to_first().map_err(kve)?;
            Ok(!it.valid())
        })
    }

    fn collection_bits(&self, cid: &CollectionId) -> Result<u32> {
        self.with(|m| Self::require_coll(&m.view(), cid))
    }

    fn collection_list(
        &self,
        cid: &CollectionId,
        start: &ObjectId,
        end: &ObjectId,
        max: usize,
    ) -> Result<(Vec<ObjectId>, ObjectId)> {
        self.with(|m| {
            Self::require_coll(&m.view(), cid)?;
            let mut out = Vec::new();
            if start >= end {
                return Ok((out, ObjectId::max_sentinel()));
            }
            let (lo, hi) = layout::obj_range(cid, start, end);
            let mut it = m.db.iter(KeyRange::new(lo, hi)).map_err(kve)?;
            it.seek_to_first().map_err(kve)?;
            while let Some((k, _)) = it.current() {
                let oid = layout::obj_of_key(k)?;
                if out.len() >= max {
                    return Ok((out, oid));
                }
                out.push(oid);
                it.next().map_err(kve)?;
            }
            Ok((out, ObjectId::max_sentinel()))
        })
    }

    fn omap_get(&self, cid: &CollectionId, oid: &ObjectId) -> Result<OmapContents> {
        self.with(|m| {
            let h = Self::header(&m.view(), cid, oid)?;
            let hdr =
                m.db.get(&layout::omap_hdr_key(h.nid))
                    .map_err(kve)?
                    .unwrap_or_default();
            Ok((hdr, Self::omap_entries(&*m.db, h.nid)?))
        })
    }

    fn omap_get_header(&self, cid: &CollectionId, oid: &ObjectId) -> Result<Vec<u8>> {
        self.with(|m| {
            let h = Self::header(&m.view(), cid, oid)?;
            Ok(m.db
                .get(&layout::omap_hdr_key(h.nid))
                .map_err(kve)?
                .unwrap_or_default())
        })
    }

    fn omap_get_keys(&self, cid: &CollectionId, oid: &ObjectId) -> Result<BTreeSet<OmapKey>> {
        self.with(|m| {
            let h = Self::header(&m.view(), cid, oid)?;
            let (lo, hi) = layout::nid_range(P_OMAP, h.nid);
            let mut it = m.db.iter(KeyRange::new(lo, hi)).map_err(kve)?;
            it.seek_to_first().map_err(kve)?;
            let mut out = BTreeSet::new();
            while let Some((k, _)) = it.current() {
                out.insert(k[9..].to_vec());
                it.next().map_err(kve)?;
            }
            Ok(out)
        })
    }

    fn omap_get_values(
        &self,
        cid: &CollectionId,
        oid: &ObjectId,
        keys: &BTreeSet<OmapKey>,
    ) -> Result<BTreeMap<OmapKey, Vec<u8>>> {
        self.with(|m| {
            let h = Self::header(&m.view(), cid, oid)?;
            let ks: Vec<Vec<u8>> = keys.iter().map(|k| layout::omap_key(h.nid, k)).collect();
            let refs: Vec<&[u8]> = ks.iter().map(|k| k.as_slice()).collect();
            Ok(keys
                .iter()
                .zip(m.db.multi_get(&refs).map_err(kve)?)
                .filter_map(|(k, v)| v.map(|v| (k.clone(), v)))
                .collect())
        })
    }

    fn omap_check_keys(
        &self,
        cid: &CollectionId,
        oid: &ObjectId,
        keys: &BTreeSet<OmapKey>,
    ) -> Result<BTreeSet<OmapKey>> {
        Ok(self.omap_get_values(cid, oid, keys)?.into_keys().collect())
    }

    fn omap_iterator(
        &self,
        cid: &CollectionId,
        oid: &ObjectId,
    ) -> Result<Box<dyn OmapIterator + Send>> {
        self.with(|m| {
            let h = Self::header(&m.view(), cid, oid)?;
            let entries = Self::omap_entries(&*m.db, h.nid)?.into_iter().collect();
            Ok(Box::new(SnapshotOmapIterator::new(entries)) as Box<dyn OmapIterator + Send>)
        })
    }
}

/// Total and available bytes of the filesystem holding `path`.
fn fs_space(path: &Path) -> Result<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::invalid("data path contains a NUL byte"))?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a NUL-terminated path and `st` points to writable memory the size
    // of a statvfs, which the call fills when it returns 0.
    let r = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if r != 0 {
        return Err(Error::from(std::io::Error::last_os_error()).context("statvfs"));
    }
    // SAFETY: statvfs returned 0, so it initialized `st`.
    let st = unsafe { st.assume_init() };
    let f = st.f_frsize;
    Ok((st.f_blocks * f, st.f_bavail * f))
}

/// Nids that own records but no object header points at.
fn orphan_nids(db: &dyn KvRead) -> Result<BTreeSet<u64>> {
    let live = live_nids(db, &mut FsckReport::default())?;
    let mut out = BTreeSet::new();
    for p in layout::NID_PREFIXES {
        let mut it = db.iter(KeyRange::prefix(&[p])).map_err(kve)?;
        it.seek_to_first().map_err(kve)?;
        while let Some((k, _)) = it.current() {
            let nid = layout::nid_of_key(k)?;
            if !live.contains_key(&nid) {
                out.insert(nid);
            }
            // Skip the rest of this nid's keys.
            it.seek(&layout::nid_prefix(p, nid + 1)).map_err(kve)?;
        }
    }
    Ok(out)
}

/// Every object header, by nid; findings go into `r`.
fn live_nids(db: &dyn KvRead, r: &mut FsckReport) -> Result<BTreeMap<u64, (String, Header)>> {
    let colls: BTreeSet<Vec<u8>> =
        KvBackend::scan(db, vec![layout::P_COLL], vec![layout::P_COLL + 1])?
            .into_iter()
            .map(|(k, v)| {
                if let Err(e) = layout::decode_coll(&v) {
                    r.error(format!("collection record {:02x?}: {e}", &k[1..]));
                }
                k[1..].to_vec()
            })
            .collect();
    r.count("collection_records", colls.len() as u64);
    let mut live: BTreeMap<u64, (String, Header)> = BTreeMap::new();
    let mut it = db.iter(KeyRange::prefix(&[layout::P_OBJ])).map_err(kve)?;
    it.seek_to_first().map_err(kve)?;
    while let Some((k, v)) = it.current() {
        r.count("object_records", 1);
        let name = match (layout::coll_of_obj_key(k), layout::obj_of_key(k)) {
            (Ok(c), Ok(o)) => {
                if !colls.contains(ostore_os::keys::collection_key(&c).as_slice()) {
                    r.error(format!(
                        "object {o} is in collection {c}, which does not exist"
                    ));
                }
                format!("{o} in {c}")
            }
            (Err(e), _) | (_, Err(e)) => {
                r.error(format!("object key {k:02x?} does not decode: {e}"));
                format!("{k:02x?}")
            }
        };
        match Header::decode(v) {
            Ok(h) => {
                if let Some((other, _)) = live.get(&h.nid) {
                    r.error(format!("objects {other} and {name} share nid {}", h.nid));
                }
                live.insert(h.nid, (name, h));
            }
            Err(e) => r.error(format!("object {name}: {e}")),
        }
        it.next().map_err(kve)?;
    }
    Ok(live)
}

/// Checks every record; `deep` also reads and verifies every data strip.
fn fsck(db: &dyn KvRead, deep: bool) -> Result<FsckReport> {
    let mut r = FsckReport::default();
    for (k, what) in [
        (layout::K_SUPER, "store"),
        (layout::K_CKPT, "checkpoint"),
        (layout::K_NID, "next nid"),
    ] {
        match db.get(k).map_err(kve)? {
            None => r.error(format!("the {what} record is missing")),
            Some(v) => {
                let ok = match what {
                    "store" => StoreRecord::decode(&v).map(|_| ()),
                    _ => layout::decode_u64(&v, what).map(|_| ()),
                };
                if let Err(e) = ok {
                    r.error(e.to_string());
                }
            }
        }
    }
    let next_nid = db
        .get(layout::K_NID)
        .map_err(kve)?
        .and_then(|v| layout::decode_u64(&v, "next nid").ok());
    let live = live_nids(db, &mut r)?;
    if let (Some(n), Some((&max, _))) = (next_nid, live.iter().next_back()) {
        if max >= n {
            r.error(format!("nid {max} is in use but the next nid is {n}"));
        }
    }
    // Strips: every key belongs to a live object, lies inside its size, and (deep) its
    // checksum holds.
    let mut it = db.iter(KeyRange::prefix(&[P_DATA])).map_err(kve)?;
    it.seek_to_first().map_err(kve)?;
    while let Some((k, v)) = it.current() {
        r.count("strip_records", 1);
        match (layout::nid_of_key(k), layout::strip_of_key(k)) {
            (Ok(nid), Ok(idx)) => match live.get(&nid) {
                None => r.error(format!("data strip {idx} belongs to orphan nid {nid}")),
                Some((name, h)) => {
                    let s = u64::from(h.strip_size);
                    let plen = v.len().saturating_sub(4) as u64;
                    if idx * s + plen > h.size.max(idx * s) || plen > s {
                        r.error(format!(
                            "object {name}: strip {idx} ({plen} bytes) lies past its size {}",
                            h.size
                        ));
                    }
                    if deep {
                        r.count("strips_verified", 1);
                        r.count("strip_bytes_verified", plen);
                        if let Err(e) = layout::decode_strip(v, nid, idx) {
                            r.error(format!("object {name}: {e}"));
                        }
                    }
                }
            },
            _ => r.error(format!("data key {k:02x?} has a bad shape")),
        }
        it.next().map_err(kve)?;
    }
    for (p, what) in [
        (P_ATTR, "attr"),
        (layout::P_OMAP_HDR, "omap_header"),
        (P_OMAP, "omap_key"),
    ] {
        let mut it = db.iter(KeyRange::prefix(&[p])).map_err(kve)?;
        it.seek_to_first().map_err(kve)?;
        while let Some((k, _)) = it.current() {
            r.count(&format!("{what}_records"), 1);
            match layout::nid_of_key(k) {
                Ok(nid) if live.contains_key(&nid) => {}
                Ok(nid) => r.error(format!(
                    "{} record belongs to orphan nid {nid}",
                    what.replace('_', " ")
                )),
                Err(e) => r.error(format!("{what} key {k:02x?}: {e}")),
            }
            it.next().map_err(kve)?;
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ostore_os::ErrorKind;

    #[test]
    fn conf_round_trips_and_rejects_bad_values() {
        for o in [
            KvStoreOptions::default(),
            KvStoreOptions {
                engine: Engine::RocksDb { wal: true },
                strip_size: 65536,
            },
            KvStoreOptions {
                engine: Engine::Memory,
                strip_size: 512,
            },
        ] {
            assert_eq!(KvStoreOptions::decode(&o.encode()).unwrap(), o);
        }
        let good = KvStoreOptions::default().encode();
        for n in 0..good.len() {
            assert!(KvStoreOptions::decode(&good[..n]).is_err());
        }
        let mut bad = good.clone();
        bad[4] = 9;
        assert!(KvStoreOptions::decode(&bad).is_err());
        let mut bad = good.clone();
        bad[8..12].copy_from_slice(&3000u32.to_le_bytes());
        assert!(KvStoreOptions::decode(&bad).is_err());
        let mut bad = good;
        bad[0] = 2;
        assert_eq!(
            KvStoreOptions::decode(&bad).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
    }

    #[test]
    fn copy_strip_clips_to_the_window() {
        let mut out = vec![0u8; 10];
        copy_strip(&mut out, 100, 110, 95, b"abcdefghij");
        assert_eq!(&out[..5], b"fghij");
        assert_eq!(&out[5..], &[0; 5]);
        let mut out = vec![0u8; 4];
        copy_strip(&mut out, 0, 4, 8, b"zz");
        assert_eq!(out, vec![0; 4]);
    }
}
