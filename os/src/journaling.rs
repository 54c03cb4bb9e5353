//! The journaling driver every backend commits through: global sequence numbers,
//! write-ahead journaling with group commit, ordered parallel apply, checkpoints that
//! trim the journal, exactly-once replay on mount, and fail-stop.
//!
//! A backend implements [`Backend`]: "apply this transaction at seq S", "make
//! yourself durable (checkpoint) at S", "what S are you durable at" (returned by
//! `mount`). [`JournaledStore`] turns it into an [`ObjectStore`].
//!
//! ## Life of a `queue_transactions` call
//! 1. Validate every transaction (state-free); on error nothing is queued.
//! 2. Under the submit lock: assign the next seq, append one journal entry (meta =
//!    `OSJ1` + seq, data = the encoded transactions). Journal order == seq order.
//! 3. When the journal reports the entry durable (group commit), `on_commit` fires
//!    and the entry joins its handle's apply queue.
//! 4. Apply workers drain handle queues: one handle's entries apply in seq order,
//!    different handles in parallel. `on_applied` fires with the outcome (a
//!    transaction rejected by the state checks reports its error there).
//!
//! ## Checkpoints
//! Time- or fill-driven. With `cp` = the highest durable seq, workers finish every
//! entry <= cp and hold entries > cp, so the backend's state is exactly "everything
//! through cp"; the backend makes that durable, cp is recorded in the `checkpoint`
//! file (atomic-file writer), then journal volumes holding only entries <= cp are
//! recycled. Submitters block (rather than fail) while the journal is over its size
//! budget, until a checkpoint frees space.
//!
//! ## Replay
//! Mount loads the backend (durable at S) and replays journal entries with seq > S in
//! order; they must be contiguous (S+1, S+2, ...), anything else is corruption. Entries
//! <= S are skipped, which with a backend that records S atomically with its state
//! makes replay exactly-once in effect; a rejected transaction is rejected again.
//!
//! ## Fail-stop
//! A journal write or fdatasync failure, or an apply failure (as opposed to a
//! rejection), puts the store in a failed state: every later call returns ESHUTDOWN and
//! nothing more is acknowledged. Remount recovers from the journal.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ostore_journal::failpoint;

use crate::sched::{self, Scheduler};
use crate::scrub::{self, Quarantine, ScrubOptions, ScrubStats};
use ostore_journal::{
    AtomicFileReader, AtomicFileWriter, Geometry, Journal, JournalOptions, MetaAction, Position,
    RealFs, ScanCallbacks, Vfs,
};

use crate::codec::{Decoder, Encoder};
use crate::error::{Error, ErrorKind, Result};
use crate::ids::{CollectionId, ObjectId};
use crate::store::{
    Completion, FsckReport, ObjectStat, ObjectStore, OmapContents, OmapIterator, StoreStatfs,
};
use crate::superblock::Superblock;
use crate::transaction::{OmapKey, Op, Transaction};
use crate::CollectionHandle;

/// What a backend implements; the driver provides journaling, ordering and replay.
/// Reads take the collection id; the driver checks mount state first.
pub trait Backend: Send + Sync + 'static {
    /// The name written in the superblock (`memstore`, `kvstore`, `filestore`).
    const STORE_TYPE: &'static str;
    /// A backend object for the store in `data_path` (nothing is read until `mount`).
    /// Backends whose files can live on a simulated disk do all their I/O through `vfs`.
    fn open(data_path: &Path, vfs: Arc<dyn Vfs>) -> Self
    where
        Self: Sized;
    /// Creates empty backend state in the data directory (which exists).
    fn mkfs(&self) -> Result<()>;
    /// Loads durable state; returns the seq it reflects (0 after mkfs).
    fn mount(&self) -> Result<u64>;
    /// Releases the backend (after a final checkpoint).
    fn umount(&self) -> Result<()>;
    /// Applies `txn` at `seq` atomically. `Ok(Err(e))`: rejected by the state checks,
    /// nothing changed. `Err(e)`: the backend could not apply (I/O): the store fails stop.
    fn apply(&self, seq: u64, txn: &Transaction) -> Result<Result<()>>;
    /// Writes at least this long are staged ([`Backend::stage`]) instead of journaled;
    /// `None` (the default): never. Asked once per `queue_transactions` call.
    fn stage_threshold(&self) -> Option<u64> {
        None
    }
    /// Puts a large write's data durably (synced, directory entry too) where apply and
    /// replay find it by the id returned, *before* its journal entry is written, so the
    /// journal carries only a reference ([`Staged`]). Never over live data: the data is
    /// linked in by [`Backend::apply_staged`], which is idempotent. Called without the
    /// submit lock, concurrently from many clients.
    fn stage(&self, _data: &[u8]) -> Result<u64> {
        Err(Error::new(
            ErrorKind::Unsupported,
            "this backend does not stage writes",
        ))
    }
    /// Reads staged data back, for replay; exactly `len` bytes or an error.
    fn read_staged(&self, _id: u64, _len: u64) -> Result<Vec<u8>> {
        Err(Error::new(
            ErrorKind::Unsupported,
            "this backend does not stage writes",
        ))
    }
    /// [`Backend::apply`] of a transaction some of whose writes were staged (`staged`:
    /// those of this transaction). The writes still carry their data, so a backend may
    /// ignore the staging and write it.
    fn apply_staged(&self, seq: u64, txn: &Transaction, _staged: &[Staged]) -> Result<Result<()>> {
        self.apply(seq, txn)
    }
    /// Called once the mount's replay is over, before any new transaction: until then
    /// the backend may meet state a crash left half-updated (and must not take it for
    /// damage).
    fn replay_finished(&self) {}
    /// Makes every applied transaction durable; `seq` is the last one applied.
    fn checkpoint(&self, seq: u64) -> Result<()>;
    /// Called first, with applies quiesced exactly at `seq`. A backend that captures
    /// here what [`Backend::checkpoint`] will make durable (a snapshot, a memtable
    /// switch) returns `true`, and applies resume while the checkpoint writes it out;
    /// `false` (the default) keeps applies held through the whole checkpoint.
    fn checkpoint_capture(&self, _seq: u64) -> Result<bool> {
        Ok(false)
    }
    /// Whether checkpoints should also run on a timer (every
    /// [`JournalingOptions::checkpoint_interval`]) rather than only when the journal
    /// fills. A backend whose checkpoint rewrites its whole state says no.
    fn periodic_checkpoints(&self) -> bool {
        true
    }
    /// Backend-specific consistency checks (see [`ObjectStore::fsck`]).
    fn fsck(&self, _deep: bool) -> Result<FsckReport> {
        Ok(FsckReport::default())
    }
    /// Repairs what can be repaired without losing committed data (see
    /// [`ObjectStore::repair`]); runs with applies quiesced, after a checkpoint.
    fn repair(&self) -> Result<FsckReport> {
        self.fsck(true)
    }
    /// Whether a checkpoint is a consistent snapshot of the applied state that mount
    /// rolls back to (MemStore's dump, btrfs/ZFS snapshots), which makes
    /// [`JournalMode::Parallel`] safe. In-place backends (RocksDB, files on XFS) say no.
    fn snapshot_checkpoints(&self) -> bool {
        false
    }

    fn statfs(&self) -> Result<StoreStatfs>;
    fn exists(&self, cid: &CollectionId, oid: &ObjectId) -> Result<bool>;
    fn stat(&self, cid: &CollectionId, oid: &ObjectId) -> Result<ObjectStat>;
    fn read(&self, cid: &CollectionId, oid: &ObjectId, off: u64, len: u64) -> Result<Vec<u8>>;
    fn fiemap(
        &self,
        cid: &CollectionId,
        oid: &ObjectId,
        off: u64,
        len: u64,
    ) -> Result<BTreeMap<u64, u64>>;
    fn getattr(&self, cid: &CollectionId, oid: &ObjectId, name: &str) -> Result<Vec<u8>>;
    fn getattrs(&self, cid: &CollectionId, oid: &ObjectId) -> Result<BTreeMap<String, Vec<u8>>>;
    fn list_collections(&self) -> Result<Vec<CollectionId>>;
    fn collection_exists(&self, cid: &CollectionId) -> Result<bool>;
    fn collection_empty(&self, cid: &CollectionId) -> Result<bool>;
    fn collection_bits(&self, cid: &CollectionId) -> Result<u32>;
    fn collection_list(
        &self,
        cid: &CollectionId,
        start: &ObjectId,
        end: &ObjectId,
        max: usize,
    ) -> Result<(Vec<ObjectId>, ObjectId)>;
    fn omap_get(&self, cid: &CollectionId, oid: &ObjectId) -> Result<OmapContents>;
    fn omap_get_header(&self, cid: &CollectionId, oid: &ObjectId) -> Result<Vec<u8>>;
    fn omap_get_keys(&self, cid: &CollectionId, oid: &ObjectId) -> Result<BTreeSet<OmapKey>>;
    fn omap_get_values(
        &self,
        cid: &CollectionId,
        oid: &ObjectId,
        keys: &BTreeSet<OmapKey>,
    ) -> Result<BTreeMap<OmapKey, Vec<u8>>>;
    fn omap_check_keys(
        &self,
        cid: &CollectionId,
        oid: &ObjectId,
        keys: &BTreeSet<OmapKey>,
    ) -> Result<BTreeSet<OmapKey>>;
    fn omap_iterator(
        &self,
        cid: &CollectionId,
        oid: &ObjectId,
    ) -> Result<Box<dyn OmapIterator + Send>>;
}

/// When a transaction is applied relative to its journal write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum JournalMode {
    /// Journal first, apply once durable (Ceph FileStore's default without snapshots).
    /// Works with every backend.
    #[default]
    WriteAhead,
    /// Journal and apply at once: a transaction may be readable before it is durable.
    /// Only for backends whose checkpoint is a consistent snapshot of the applied state
    /// ([`Backend::snapshot_checkpoints`]): a crash rolls back to the last snapshot and
    /// replays the journal from there, so an applied but never-journaled transaction
    /// cannot survive half-way. Lower commit latency: apply no longer waits for the sync.
    Parallel,
}

/// Tuning of the journaling layer.
#[derive(Debug, Clone)]
pub struct JournalingOptions {
    /// Writeahead (default) or parallel.
    pub mode: JournalMode,
    /// Where the journal lives; `None` = `<data>/journal`.
    pub journal_path: Option<PathBuf>,
    /// Geometry used by mkfs.
    pub geometry: Geometry,
    pub journal: JournalOptions,
    /// Checkpoint at least this often while there is work.
    pub checkpoint_interval: Duration,
    /// Journal bytes (live volumes) that trigger a checkpoint.
    pub checkpoint_fill_bytes: u64,
    /// Journal bytes past which submitters wait for a checkpoint.
    pub max_journal_bytes: u64,
    /// Committed transactions not yet applied past which submitters wait (Ceph
    /// FileStore's `filestore_queue_max_ops`). A commit does not wait for its apply, so
    /// without this bound a slow apply falls behind without limit: KeyValueStore cloning
    /// 4 MiB objects under a RocksDB write stall was minutes behind its commits, and
    /// every read and the umount waited for all of it.
    pub max_unapplied: usize,
    /// Apply worker threads (handles apply in parallel across them).
    pub apply_threads: usize,
    /// The background scrubber (off by default).
    pub scrub: ScrubOptions,
}

impl Default for JournalingOptions {
    fn default() -> Self {
        JournalingOptions {
            mode: JournalMode::WriteAhead,
            journal_path: None,
            geometry: Geometry::default(),
            journal: JournalOptions::default(),
            checkpoint_interval: Duration::from_secs(5),
            checkpoint_fill_bytes: 512 << 20,
            max_journal_bytes: 1 << 30,
            max_unapplied: 1024,
            apply_threads: 2,
            scrub: ScrubOptions::default(),
        }
    }
}

impl JournalingOptions {
    /// The journal's options, with room to keep every volume a checkpoint recycles.
    /// A recycled volume deleted for want of room is one the blank maker zero-fills
    /// again before the next checkpoint: under a sustained write load that was a
    /// volume of zeros written and synced per volume of journal. Trim only moves
    /// volumes from live to blank and the maker adds one only when fewer than
    /// `blank_target` are ready, so with room for `max_journal_bytes` of blanks the
    /// journal's footprint (live + blank volumes) settles at its peak, like a
    /// preallocated ring of about `max_journal_bytes`, instead of being rewritten.
    pub fn journal_options(&self) -> JournalOptions {
        let vol = self.geometry.volume_size.max(1);
        let ring = usize::try_from(self.max_journal_bytes.div_ceil(vol)).unwrap_or(0);
        let mut j = self.journal.clone();
        j.max_blanks = j.max_blanks.max(ring.saturating_add(j.blank_target));
        j
    }

    /// Small volumes and budgets for tests that create many stores.
    pub fn small() -> JournalingOptions {
        JournalingOptions {
            geometry: Geometry {
                sector_size: 4096,
                volume_size: 1 << 20,
                toc_len: 4096,
            },
            journal: JournalOptions {
                blank_target: 1,
                max_blanks: 2,
                ..JournalOptions::default()
            },
            checkpoint_fill_bytes: 4 << 20,
            max_journal_bytes: 16 << 20,
            ..JournalingOptions::default()
        }
    }
}

/// Converts a journal error, keeping corruption and fail-stop distinguishable.
pub fn journal_error(e: ostore_journal::Error) -> Error {
    use ostore_journal::Error as J;
    let kind = match &e {
        J::Corrupt { .. } | J::BadFile { .. } | J::MissingVolume(_) => ErrorKind::Corrupt,
        J::Poisoned(_) | J::Closed => ErrorKind::Failed,
        J::TooLarge { .. } | J::TocTooLarge { .. } | J::AtomicTooLarge { .. } => ErrorKind::TooBig,
        J::InvalidConfig(_) => ErrorKind::InvalidArgument,
        J::AlreadyExists(_) => ErrorKind::Exists,
        J::NotFound(_) => ErrorKind::NotFound,
        J::Io { source, .. } => source
            .raw_os_error()
            .map_or(ErrorKind::Io, ErrorKind::from_errno),
    };
    Error::new(kind, format!("journal: {e}"))
}

const ENTRY_MAGIC: [u8; 4] = *b"OSJ1";
const CHECKPOINT_MAGIC: u32 = u32::from_le_bytes(*b"OSCP");
pub const CHECKPOINT_FILE: &str = "checkpoint";

fn entry_meta(seq: u64) -> [u8; 12] {
    let mut m = [0u8; 12];
    m[..4].copy_from_slice(&ENTRY_MAGIC);
    m[4..].copy_from_slice(&seq.to_le_bytes());
    m
}

/// Decodes an entry's metadata: its seq.
pub fn decode_entry_meta(meta: &[u8]) -> Result<u64> {
    if meta.len() != 12 || meta[..4] != ENTRY_MAGIC {
        return Err(Error::corrupt(
            "journal entry metadata is not an ostore transaction header",
        ));
    }
    let mut b = [0u8; 8];
    b.copy_from_slice(&meta[4..]);
    Ok(u64::from_le_bytes(b))
}

/// A write whose data the backend staged before journaling: op `op` of transaction
/// `txn` of the entry (an `Op::Write`, journaled with empty data), its `len` bytes in the
/// backend's staged object `id`, with CRC32C `crc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Staged {
    pub txn: u32,
    pub op: u32,
    pub id: u64,
    pub len: u64,
    pub crc: u32,
}

const STAGED_MAGIC: [u8; 4] = *b"OSG1";
/// Bytes of one encoded [`Staged`].
const STAGED_BYTES: usize = 28;

/// An entry's data: `u32` count, the encoded transactions, then, when some writes were
/// staged, `OSG1`, a `u32` count and the [`Staged`] records (docs/FORMATS.md).
fn encode_entry(txns: &[Transaction], staged: &[Staged]) -> Result<Vec<u8>> {
    let mut e = Encoder::new();
    e.u32(txns.len() as u32);
    for (i, t) in txns.iter().enumerate() {
        let mine: Vec<u32> = staged
            .iter()
            .filter(|s| s.txn == i as u32)
            .map(|s| s.op)
            .collect();
        let t = if mine.is_empty() {
            Cow::Borrowed(t)
        } else {
            Cow::Owned(stripped(t, &mine))
        };
        // Straight into the entry: a large write's data is copied once.
        e.bytes_with(|out| t.encode_into(out))?;
    }
    if !staged.is_empty() {
        e.raw(&STAGED_MAGIC);
        e.u32(staged.len() as u32);
        for s in staged {
            e.u32(s.txn);
            e.u32(s.op);
            e.u64(s.id);
            e.u64(s.len);
            e.u32(s.crc);
        }
    }
    Ok(e.into_inner())
}

/// `t` with the data of the writes at `ops` left out (it is staged).
fn stripped(t: &Transaction, ops: &[u32]) -> Transaction {
    let out = t
        .ops()
        .iter()
        .enumerate()
        .map(|(i, op)| {
            if ops.contains(&(i as u32)) {
                op.without_data()
            } else {
                op.clone()
            }
        })
        .collect();
    Transaction::from_ops(out)
}

/// Decodes an entry's data: the transactions of one `queue_transactions` call (staged
/// writes with empty data) and the staged writes.
pub fn decode_entry_staged(data: &[u8]) -> Result<(Vec<Transaction>, Vec<Staged>)> {
    let mut d = Decoder::new(data);
    let n = d.count(4, "transactions in entry")?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(Transaction::decode(d.bytes("transaction")?)?);
    }
    let mut staged: Vec<Staged> = Vec::new();
    if d.remaining() != 0 {
        if d.take(4, "staged-writes magic")? != STAGED_MAGIC {
            return Err(Error::corrupt(
                "trailing bytes after the transactions of a journal entry",
            ));
        }
        let k = d.count(STAGED_BYTES, "staged writes")?;
        for _ in 0..k {
            let s = Staged {
                txn: d.u32("staged txn")?,
                op: d.u32("staged op")?,
                id: d.u64("staged id")?,
                len: d.u64("staged len")?,
                crc: d.u32("staged crc")?,
            };
            let op = out
                .get(s.txn as usize)
                .and_then(|t| t.ops().get(s.op as usize));
            let fits = matches!(op, Some(Op::Write { off, data, .. })
                if data.is_empty()
                    && s.len > 0
                    && s.len <= crate::limits::MAX_WRITE_LEN as u64
                    && off.checked_add(s.len).is_some_and(|e| e <= crate::limits::MAX_OBJECT_SIZE));
            if !fits || staged.iter().any(|o| (o.txn, o.op) == (s.txn, s.op)) {
                return Err(Error::corrupt(format!(
                    "staged write record (transaction {}, op {}) names no empty write of the entry",
                    s.txn, s.op
                )));
            }
            staged.push(s);
        }
        if d.remaining() != 0 {
            return Err(Error::corrupt(
                "trailing bytes after the staged writes of a journal entry",
            ));
        }
    }
    Ok((out, staged))
}

/// Decodes an entry's data: its transactions (staged writes with empty data).
pub fn decode_entry(data: &[u8]) -> Result<Vec<Transaction>> {
    decode_entry_staged(data).map(|(t, _)| t)
}

/// What a checkpoint file records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CheckpointRecord {
    /// Every transaction up to this seq is durable in the backend.
    pub seq: u64,
    /// The journal volumes that must still exist: from the first one replay needs
    /// through the newest one at the checkpoint (`None` in the version-1 format, which
    /// recorded only the seq, and when the journal had no volume yet).
    pub volumes: Option<(u64, u64)>,
}

impl CheckpointRecord {
    /// The payload: `u64 seq` (version 1), or `u64 seq, u64 first volume, u64 newest
    /// volume` (version 2; docs/FORMATS.md).
    pub fn encode(&self) -> Vec<u8> {
        let mut b = self.seq.to_le_bytes().to_vec();
        if let Some((first, newest)) = self.volumes {
            b.extend_from_slice(&first.to_le_bytes());
            b.extend_from_slice(&newest.to_le_bytes());
        }
        b
    }

    pub fn decode(b: &[u8]) -> std::result::Result<CheckpointRecord, String> {
        let u = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i * 8..i * 8 + 8]);
            u64::from_le_bytes(a)
        };
        match b.len() {
            8 => Ok(CheckpointRecord {
                seq: u(0),
                volumes: None,
            }),
            24 if u(1) <= u(2) + 1 && u(2) > 0 => Ok(CheckpointRecord {
                seq: u(0),
                volumes: Some((u(1), u(2))),
            }),
            24 => Err(format!(
                "journal volumes {}..={} are not a range a checkpoint can need",
                u(1),
                u(2)
            )),
            n => Err(format!("{n} bytes of payload, expected 8 or 24")),
        }
    }
}

/// Reads the recorded checkpoint (seq 0 when none was ever written).
pub fn read_checkpoint_record(vfs: &dyn Vfs, data_path: &Path) -> Result<CheckpointRecord> {
    let p = data_path.join(CHECKPOINT_FILE);
    match AtomicFileReader::new(vfs, &p, CHECKPOINT_MAGIC)
        .read()
        .map_err(journal_error)?
    {
        None => Ok(CheckpointRecord::default()),
        Some(b) => CheckpointRecord::decode(&b)
            .map_err(|why| Error::corrupt(format!("{} is invalid: {why}", p.display()))),
    }
}

/// Reads the recorded checkpoint seq (0 when none was ever written).
pub fn read_checkpoint(vfs: &dyn Vfs, data_path: &Path) -> Result<u64> {
    read_checkpoint_record(vfs, data_path).map(|r| r.seq)
}

/// Refuses a journal that lost volumes a checkpoint says must exist: the oldest ones
/// (deleted from the directory, so the scan alone cannot see the loss) or the newest.
pub fn check_journal_volumes(vfs: &dyn Vfs, journal: &Path, rec: &CheckpointRecord) -> Result<()> {
    let Some((first, newest)) = rec.volumes else {
        return Ok(());
    };
    let live = match ostore_journal::list_volumes(vfs, journal) {
        Ok(l) => l,
        // No journal directory at all: every needed volume is missing.
        Err(ostore_journal::Error::Io { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            Default::default()
        }
        Err(e) => return Err(journal_error(e)),
    };
    let need = first.min(newest);
    let missing = (need..=newest).find(|v| !live.contains(v));
    match missing {
        None => Ok(()),
        Some(v) => Err(Error::corrupt(format!(
            "journal volume {} is missing from {}: the checkpoint at seq {} needs volumes {need} to {newest} (the directory holds {})",
            v,
            journal.display(),
            rec.seq,
            match (live.first(), live.last()) {
                (Some(a), Some(b)) => format!("volumes {a} to {b}"),
                _ => "no volume".to_string(),
            }
        ))),
    }
}

thread_local! {
    /// Set while an inline `on_commit` runs on a journal thread: a store call from
    /// there could wait for the very commit or apply that thread is delivering.
    static IN_INLINE_COMMIT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs an inline `on_commit` ([`Completion::commit_inline`]) on this journal thread.
/// A panic in it is contained like one on the finisher (the commit already happened).
fn run_inline_commit(cb: crate::store::Callback, r: Result<()>) {
    IN_INLINE_COMMIT.with(|f| f.set(true));
    run_contained(|| cb(r));
    IN_INLINE_COMMIT.with(|f| f.set(false));
}

/// Runs a caller's completion callback: one that panics must not take the later ones
/// (or the thread delivering them) with it.
fn run_contained(f: impl FnOnce()) {
    if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        tracing::error!(
            panic = panic_message(&*panic),
            "a completion callback panicked"
        );
    }
}

/// A callback run on the finisher thread.
type Task = Box<dyn FnOnce() + Send>;

/// What an entry carries to its apply.
struct Entry {
    txns: Vec<Transaction>,
    staged: Vec<Staged>,
    on_applied: Option<crate::store::Callback>,
}

type Sequencer = sched::Sequencer<Entry>;

struct Shared<B: Backend> {
    backend: B,
    data_path: PathBuf,
    vfs: Arc<dyn Vfs>,
    opts: JournalingOptions,
    failed: Mutex<Option<Error>>,
    sched: Scheduler<Entry>,
    /// Seq -> volume its entry starts in, for entries not yet checkpointed.
    volumes: Mutex<BTreeMap<u64, u64>>,
    /// Taken at shutdown, which disconnects the workers (they hold `Shared` too, so
    /// dropping `Shared` alone would never end them).
    work_tx: Mutex<Option<crossbeam_channel::Sender<Arc<Sequencer>>>>,
    finisher_tx: Mutex<Option<crossbeam_channel::Sender<Task>>>,
    ckpt_request: Mutex<bool>,
    ckpt_cv: Condvar,
    /// Serializes checkpoints.
    ckpt_lock: Mutex<()>,
    /// Objects whose checksums failed on a read or a scrub.
    quarantine: Quarantine,
    /// Bytes staged since the last checkpoint began. They count with the journal's
    /// volumes toward the checkpoint trigger and the submit throttle: staged files live
    /// until a checkpoint covers them, so without this a stream of large writes (which
    /// barely fill the journal) would pile them up until the timer fired.
    staged_pending: std::sync::atomic::AtomicU64,
    /// The volume the last checkpoint trimmed the journal up to. The journal trims no
    /// further than what it made durable, and in parallel mode a checkpoint can cover
    /// entries still being written: the rest of its trim is retried later (see
    /// [`Shared::retrim`]), or the volumes it left would stay live with no new
    /// checkpoint due, and a submitter throttled on them would wait forever.
    trim_target: std::sync::atomic::AtomicU64,
}

struct Running<B: Backend> {
    shared: Arc<Shared<B>>,
    journal: Arc<Journal>,
    /// Next seq to assign; held while appending so journal order == seq order.
    submit: Mutex<u64>,
    sequencers: Mutex<HashMap<CollectionId, Arc<Sequencer>>>,
    threads: Vec<JoinHandle<()>>,
    stop: Arc<Mutex<bool>>,
}

enum Mode<B: Backend> {
    Unmounted,
    Mounted(Box<Running<B>>),
}

/// An [`ObjectStore`] made of a [`Backend`] and the shared journal.
pub struct JournaledStore<B: Backend> {
    data_path: PathBuf,
    opts: JournalingOptions,
    vfs: Arc<dyn Vfs>,
    mode: RwLock<Mode<B>>,
    /// Held while mounted so two processes never serve the same store.
    lock_file: Mutex<Vec<std::fs::File>>,
    /// Whether mount takes the lock file (only on the real filesystem).
    lock_dir: bool,
    /// What the last mount found.
    last_report: Mutex<Option<MountReport>>,
}

impl<B: Backend> std::fmt::Debug for JournaledStore<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JournaledStore")
            .field("data_path", &self.data_path)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking user callback must not wedge the store.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<B: Backend> Shared<B> {
    fn check(&self) -> Result<()> {
        match &*lock(&self.failed) {
            Some(e) => Err(Error::failed(format!(
                "store failed and must be remounted: {e}"
            ))),
            None => Ok(()),
        }
    }

    fn fail(&self, e: &Error) {
        let mut f = lock(&self.failed);
        if f.is_none() {
            tracing::error!(error = %e, "store failing stop");
            *f = Some(e.clone());
        }
        drop(f);
        self.sched.fail();
    }

    fn finish(&self, f: Box<dyn FnOnce() + Send>) {
        let tx = lock(&self.finisher_tx).clone();
        match tx {
            Some(tx) => {
                if let Err(e) = tx.send(f) {
                    (e.into_inner())();
                }
            }
            // The finisher is gone only during shutdown; run inline rather than drop a callback.
            None => f(),
        }
    }

    /// Queues a journaled entry for apply on its handle (writeahead: once durable;
    /// parallel: as soon as it is appended).
    fn enqueue(&self, seq_q: &Arc<Sequencer>, seq: u64, e: Entry) {
        if self.sched.enqueue(seq_q, seq, e) {
            self.dispatch(seq_q.clone());
        }
    }

    /// Hands a sequencer to an apply worker; during shutdown (no workers), drains it
    /// on this thread.
    fn dispatch(&self, sq: Arc<Sequencer>) {
        let tx = lock(&self.work_tx).clone();
        match tx {
            Some(tx) => {
                if let Err(e) = tx.send(sq) {
                    self.drain(&e.into_inner());
                }
            }
            None => self.drain(&sq),
        }
    }

    /// Journal thread: entry `seq` is durable (or the journal failed). `p` is the entry
    /// still to apply (writeahead mode) or `None` (parallel mode: already queued).
    fn on_durable(
        &self,
        seq_q: &Arc<Sequencer>,
        seq: u64,
        p: Option<Entry>,
        on_commit: Option<crate::store::Callback>,
        inline: bool,
        r: Result<()>,
    ) {
        match r {
            Ok(()) => {
                self.sched.note_durable(seq);
                if p.is_some() {
                    self.sched.expect(seq_q, seq);
                }
                if let Some(cb) = on_commit {
                    if inline {
                        run_inline_commit(cb, Ok(()));
                    } else {
                        self.finish(Box::new(move || cb(Ok(()))));
                    }
                }
                // Holds open the window between the commit's callback and the queueing
                // of its apply, for the read-your-write test of inline commits.
                failpoint::pause("journaling.after_commit");
                if let Some(p) = p {
                    self.enqueue(seq_q, seq, p);
                }
            }
            Err(e) => {
                self.fail(&e);
                let e2 = e.clone();
                if let Some(cb) = on_commit {
                    self.finish(Box::new(move || cb(Err(e2))));
                }
                if let Some(cb) = p.and_then(|p| p.on_applied) {
                    self.finish(Box::new(move || cb(Err(e))));
                }
            }
        }
    }

    /// Apply worker: drains one sequencer in order.
    fn drain(&self, sq: &Arc<Sequencer>) {
        while let Some(p) = self.sched.next(sq) {
            // A panic while applying (a bug) must not leave the entry counted as running,
            // which would hang every later wait: it fails the store like an I/O error.
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.apply_entry(p.seq, &p.payload.txns, &p.payload.staged)
            }))
            .unwrap_or_else(|panic| {
                let e = Error::failed(format!(
                    "applying journal entry {} panicked: {}",
                    p.seq,
                    panic_message(&*panic)
                ));
                self.fail(&e);
                Err(e)
            });
            self.sched.finish(sq, p.seq);
            if let Some(cb) = p.payload.on_applied {
                self.finish(Box::new(move || cb(outcome)));
            }
        }
    }

    /// Applies one entry's transactions; returns what `on_applied` reports.
    fn apply_entry(&self, seq: u64, txns: &[Transaction], staged: &[Staged]) -> Result<()> {
        self.check()?;
        if let Err(e) = failpoint::hit("apply.entry") {
            let e = Error::from(e).context("applying a journal entry");
            self.fail(&e);
            return Err(e);
        }
        let mut outcome = Ok(());
        for (i, t) in txns.iter().enumerate() {
            match apply_one(&self.backend, seq, i, t, staged) {
                Ok(Ok(())) => {}
                Ok(Err(rejected)) => {
                    if outcome.is_ok() {
                        outcome = Err(rejected);
                    }
                }
                Err(e) => {
                    self.fail(&e);
                    return Err(e);
                }
            }
        }
        outcome
    }

    /// Stages the large writes of `txns` ([`Backend::stage`]) before they are journaled.
    /// A failure to stage is an I/O failure: the store fails stop (the staged files
    /// already written are never referenced and go at the next mount).
    fn stage(&self, txns: &[Transaction]) -> Result<Vec<Staged>> {
        let Some(min) = self.backend.stage_threshold() else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for (ti, t) in txns.iter().enumerate() {
            // A transaction too big to journal whole stays whole, so it is refused
            // exactly as on every other backend.
            if t.data_bytes() >= crate::limits::MAX_TRANSACTION_BYTES / 2 {
                continue;
            }
            for (oi, op) in t.ops().iter().enumerate() {
                let Op::Write { data, .. } = op else { continue };
                if (data.len() as u64) < min.max(1) {
                    continue;
                }
                let id = self.backend.stage(data).inspect_err(|e| self.fail(e))?;
                self.staged_pending
                    .fetch_add(data.len() as u64, std::sync::atomic::Ordering::Relaxed);
                out.push(Staged {
                    txn: ti as u32,
                    op: oi as u32,
                    id,
                    len: data.len() as u64,
                    crc: crc32c::crc32c(data),
                });
            }
        }
        Ok(out)
    }

    /// Makes the backend durable through the highest durable seq and trims the journal.
    fn checkpoint(&self, journal: &Journal) -> Result<u64> {
        let _serial = lock(&self.ckpt_lock);
        self.check()?;
        let Some(cp) = self.sched.hold() else {
            self.release_hold();
            return Err(self.check().err().unwrap_or_else(|| {
                Error::failed("checkpoint interrupted by a failure".to_string())
            }));
        };
        // Roughly what this checkpoint releases (a stage racing with it counts as
        // covered; the next checkpoint takes it).
        let staged = self
            .staged_pending
            .load(std::sync::atomic::Ordering::Relaxed);
        // A backend that captured the cut (MemStore clones its state) lets applies go on
        // while it makes the capture durable.
        let captured = self.backend.checkpoint_capture(cp);
        let released = matches!(captured, Ok(true));
        if released {
            self.release_hold();
        }
        let r = captured.and_then(|_| self.checkpoint_at(journal, cp));
        if r.is_ok() {
            self.sched.mark_checkpointed(cp);
            self.staged_pending
                .fetch_sub(staged, std::sync::atomic::Ordering::Relaxed);
        }
        self.release_hold();
        if let Err(e) = &r {
            self.fail(e);
        }
        r.map(|()| cp)
    }

    /// Lets applies above a checkpoint's cut go on, rescheduling parked sequencers.
    fn release_hold(&self) {
        for sq in self.sched.release() {
            self.dispatch(sq);
        }
    }

    fn checkpoint_at(&self, journal: &Journal, cp: u64) -> Result<()> {
        self.check()?;
        self.backend.checkpoint(cp)?;
        failpoint::hit("checkpoint.after_backend")?;
        let keep_from = {
            let mut v = lock(&self.volumes);
            let rest = v.split_off(&(cp + 1));
            *v = rest;
            // Submitters append and record under this lock, so every entry appended so
            // far is in the map: one that is not lies at or after the journal's end.
            // (Reading the end outside it once trimmed the volume of an entry appended
            // but not yet recorded, and replay met a gap in the seqs.)
            v.values()
                .next()
                .copied()
                .unwrap_or_else(|| journal.end_position().volume)
        };
        // Recorded with the seq, so a mount can tell volumes lost from the directory
        // (which no scan sees) from volumes trimmed.
        let newest = journal.volumes().last().copied();
        let record = CheckpointRecord {
            seq: cp,
            volumes: newest.map(|n| (keep_from, n)),
        };
        AtomicFileWriter::new(
            &*self.vfs,
            self.data_path.join(CHECKPOINT_FILE),
            CHECKPOINT_MAGIC,
        )
        .write(&record.encode())
        .map_err(journal_error)?;
        failpoint::hit("checkpoint.before_trim")?;
        self.trim_target
            .fetch_max(keep_from, std::sync::atomic::Ordering::SeqCst);
        journal.trim_before(keep_from).map_err(journal_error)?;
        tracing::debug!(seq = cp, keep_from, "checkpoint");
        Ok(())
    }

    /// Whether the last checkpoint's trim left volumes it meant to free.
    fn trim_behind(&self, journal: &Journal) -> bool {
        let target = self.trim_target.load(std::sync::atomic::Ordering::SeqCst);
        journal.volumes().first().is_some_and(|&v| v < target)
    }

    /// Finishes the trim of the last checkpoint, as far as the journal is durable now.
    fn retrim(&self, journal: &Journal) -> Result<()> {
        let _serial = lock(&self.ckpt_lock);
        self.check()?;
        let target = self.trim_target.load(std::sync::atomic::Ordering::SeqCst);
        journal.trim_before(target).map_err(journal_error)?;
        Ok(())
    }

    /// Bytes a checkpoint would free: live journal volumes and staged data.
    fn journal_bytes(&self, journal: &Journal) -> u64 {
        journal.volumes().len() as u64 * journal.geometry().volume_size
            + self
                .staged_pending
                .load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Replays journal entries after the backend's durable seq.
struct Replayer<'a, B: Backend> {
    backend: &'a B,
    after: u64,
    next: u64,
    want: Option<u64>,
    data: Vec<u8>,
    volumes: BTreeMap<u64, u64>,
    error: Option<Error>,
    replayed: u64,
    rejected: u64,
}

impl<B: Backend> ScanCallbacks for Replayer<'_, B> {
    fn meta(&mut self, pos: Position, meta: &[u8], _len: u64) -> MetaAction {
        if self.error.is_some() {
            return MetaAction::Stop;
        }
        let seq = match decode_entry_meta(meta) {
            Ok(s) => s,
            Err(e) => {
                self.error = Some(e.context(format!("journal entry at {pos}")));
                return MetaAction::Stop;
            }
        };
        if seq <= self.after {
            return MetaAction::Skip;
        }
        if seq != self.next {
            self.error = Some(Error::corrupt(format!(
                "journal entry at {pos} has seq {seq}, expected {} (entries must be contiguous after checkpoint {})",
                self.next, self.after
            )));
            return MetaAction::Stop;
        }
        self.volumes.insert(seq, pos.volume);
        self.want = Some(seq);
        self.data.clear();
        MetaAction::ReadData
    }

    /// An entry the checkpoint covers is skipped, so a flipped bit in its data (bit rot
    /// in a volume not yet recycled) costs nothing; it is counted in the mount report.
    fn data_needed(&mut self, _pos: Position, meta: &[u8]) -> bool {
        decode_entry_meta(meta).map_or(true, |seq| seq > self.after)
    }

    fn data(&mut self, chunk: &[u8], last: bool) -> ControlFlow<()> {
        self.data.extend_from_slice(chunk);
        if !last {
            return ControlFlow::Continue(());
        }
        let Some(seq) = self.want.take() else {
            return ControlFlow::Continue(());
        };
        let r = decode_entry_staged(&self.data).and_then(|(txns, staged)| {
            let txns = load_staged(self.backend, txns, &staged)?;
            for (i, t) in txns.iter().enumerate() {
                if let Err(rej) = apply_one(self.backend, seq, i, t, &staged)? {
                    tracing::debug!(seq, error = %rej, "replayed transaction rejected again");
                    self.rejected += 1;
                }
            }
            Ok(())
        });
        match r {
            Ok(()) => {
                self.next = seq + 1;
                self.replayed += 1;
                ControlFlow::Continue(())
            }
            Err(e) => {
                self.error = Some(e.context(format!("replaying seq {seq}")));
                ControlFlow::Break(())
            }
        }
    }
}

/// Applies transaction `i` of entry `seq`, telling the backend which of its writes
/// were staged.
fn apply_one<B: Backend>(
    b: &B,
    seq: u64,
    i: usize,
    t: &Transaction,
    staged: &[Staged],
) -> Result<Result<()>> {
    if staged.iter().any(|s| s.txn as usize == i) {
        let mine: Vec<Staged> = staged
            .iter()
            .filter(|s| s.txn as usize == i)
            .copied()
            .collect();
        b.apply_staged(seq, t, &mine)
    } else {
        b.apply(seq, t)
    }
}

/// Replay: puts the staged data back into the writes that left it out, each checked
/// against its recorded length and CRC32C (a mismatch is corruption, never wrong bytes).
fn load_staged<B: Backend>(
    b: &B,
    txns: Vec<Transaction>,
    staged: &[Staged],
) -> Result<Vec<Transaction>> {
    load_with(txns, staged, &mut |id, len| b.read_staged(id, len))
}

fn load_with(
    mut txns: Vec<Transaction>,
    staged: &[Staged],
    read: &mut dyn FnMut(u64, u64) -> Result<Vec<u8>>,
) -> Result<Vec<Transaction>> {
    for s in staged {
        let data = read(s.id, s.len)?;
        if data.len() as u64 != s.len || crc32c::crc32c(&data) != s.crc {
            return Err(Error::corrupt(format!(
                "staged write {:016x} ({} bytes) does not match its journal record",
                s.id, s.len
            )));
        }
        let t = &mut txns[s.txn as usize];
        let mut ops = std::mem::take(t).into_ops();
        if let Some(Op::Write { data: d, .. }) = ops.get_mut(s.op as usize) {
            *d = data;
        }
        *t = Transaction::from_ops(ops);
    }
    Ok(txns)
}

/// What a mount found.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct MountReport {
    pub checkpoint: u64,
    pub replayed: u64,
    pub rejected_on_replay: u64,
    pub torn_tail: Option<String>,
    pub next_seq: u64,
    /// Journal entries a checkpoint already covered whose data failed its checksum:
    /// skipped, as replay skips every covered entry (docs/RELIABILITY.md).
    #[serde(default)]
    pub damaged_checkpointed_entries: u64,
}

impl<B: Backend> JournaledStore<B> {
    /// A store on `data_path` with default options.
    pub fn new(data_path: impl Into<PathBuf>) -> JournaledStore<B> {
        JournaledStore::with_options(data_path, JournalingOptions::default())
    }

    pub fn with_options(
        data_path: impl Into<PathBuf>,
        opts: JournalingOptions,
    ) -> JournaledStore<B> {
        let mut s = JournaledStore::with_vfs(data_path, opts, Arc::new(RealFs::new()));
        s.lock_dir = true;
        s
    }

    /// A store whose every file (superblock, checkpoint, journal, and the backend's own
    /// files when it routes them through `vfs`) lives on `vfs`, e.g. a simulated disk in
    /// crash tests. No lock file is taken: `vfs` may not be a real filesystem.
    pub fn with_vfs(
        data_path: impl Into<PathBuf>,
        opts: JournalingOptions,
        vfs: Arc<dyn Vfs>,
    ) -> JournaledStore<B> {
        JournaledStore {
            data_path: data_path.into(),
            opts,
            vfs,
            mode: RwLock::new(Mode::Unmounted),
            lock_file: Mutex::new(Vec::new()),
            lock_dir: false,
            last_report: Mutex::new(None),
        }
    }

    /// Takes the exclusive lock on the data directory (like Ceph's fsid lock), so a
    /// second mount of the same store, in this process or another, fails with EBUSY-like
    /// EEXIST instead of silently racing.
    fn take_lock(&self) -> Result<()> {
        let p = self.data_path.join("lock");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(|e| Error::from(e).context(format!("opening {}", p.display())))?;
        let mut held = vec![lock_one(
            f,
            &p,
            &format!("store at {}", self.data_path.display()),
        )?];
        // A journal outside the data directory is locked too (its directory, so no
        // file is added to it): two stores given the same --journal-path would write
        // each other's entries and replay them into the wrong store.
        if self.opts.journal_path.is_some() {
            let jp = self.journal_path();
            let d = std::fs::File::open(&jp)
                .map_err(|e| Error::from(e).context(format!("opening {}", jp.display())))?;
            held.push(lock_one(d, &jp, &format!("journal at {}", jp.display()))?);
        }
        *lock(&self.lock_file) = held;
        Ok(())
    }

    pub fn data_path(&self) -> &Path {
        &self.data_path
    }

    pub fn journal_path(&self) -> PathBuf {
        self.opts
            .journal_path
            .clone()
            .unwrap_or_else(|| self.data_path.join("journal"))
    }

    fn running(&self) -> Result<std::sync::RwLockReadGuard<'_, Mode<B>>> {
        if IN_INLINE_COMMIT.with(|f| f.get()) {
            return Err(Error::invalid(
                "store called from an inline on_commit callback (it runs on the journal's thread; use the finisher: commit_inline = false)",
            ));
        }
        let g = self
            .mode
            .read()
            .map_err(|_| Error::failed("store lock poisoned"))?;
        match &*g {
            Mode::Mounted(r) => {
                r.shared.check()?;
                Ok(g)
            }
            Mode::Unmounted => Err(Error::not_mounted(format!(
                "store at {} is not mounted",
                self.data_path.display()
            ))),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&Running<B>) -> Result<T>) -> Result<T> {
        let g = self.running()?;
        match &*g {
            Mode::Mounted(r) => f(r),
            Mode::Unmounted => Err(Error::not_mounted("store is not mounted")),
        }
    }

    fn backend_read<T>(&self, f: impl FnOnce(&B) -> Result<T>) -> Result<T> {
        self.with(|r| f(&r.shared.backend))
    }

    /// A read through a handle: first waits until every transaction of the handle that
    /// is already committed has been applied, so whoever saw `on_commit` reads its own
    /// write (FileStore flushed its sequencer before list and empty; we do it for all
    /// reads). Transactions still in flight to the journal are not waited for.
    fn handle_read<T>(&self, ch: &CollectionHandle, f: impl FnOnce(&B) -> Result<T>) -> Result<T> {
        self.handle_read_shared(ch, |sh| f(&sh.backend))
    }

    fn handle_read_shared<T>(
        &self,
        ch: &CollectionHandle,
        f: impl FnOnce(&Shared<B>) -> Result<T>,
    ) -> Result<T> {
        self.with(|r| {
            if let Some(sq) = ch.backend::<Sequencer>() {
                if !r.shared.sched.wait_applied(sq) {
                    r.shared.check()?;
                }
            }
            f(&r.shared)
        })
    }

    /// A read of one object: a checksum failure quarantines the object.
    fn obj_read<T>(
        &self,
        ch: &CollectionHandle,
        oid: &ObjectId,
        f: impl FnOnce(&B) -> Result<T>,
    ) -> Result<T> {
        self.handle_read_shared(ch, |sh| {
            let r = f(&sh.backend);
            if let Err(e) = &r {
                sh.note_corrupt(ch.cid(), oid, e);
            }
            r
        })
    }

    /// The scrubber's counters and the quarantine size (`None` when not mounted).
    pub fn scrub_stats(&self) -> Option<ScrubStats> {
        match &*self.mode.read().ok()? {
            Mode::Mounted(r) => Some(r.shared.quarantine.stats()),
            Mode::Unmounted => None,
        }
    }

    /// Mounts and reports what replay did.
    pub fn mount_report(&self) -> Result<MountReport> {
        let mut g = self
            .mode
            .write()
            .map_err(|_| Error::failed("store lock poisoned"))?;
        if let Mode::Mounted(_) = &*g {
            return Err(Error::not_mounted("store is already mounted"));
        }
        let sb = Superblock::read_expect(&*self.vfs, &self.data_path, B::STORE_TYPE)?;
        if let Some(id) = sb.journal_id {
            let jp = self.journal_path();
            // A missing or damaged info file is the journal's open to report.
            if let Ok(info) = ostore_journal::read_info(&*self.vfs, &jp) {
                if info.magic != id {
                    return Err(Error::invalid(format!(
                        "the journal in {} belongs to another store (journal id {:#010x}; \
                         this store's is {id:#010x}): wrong --journal-path?",
                        jp.display(),
                        info.magic
                    )));
                }
            }
        }
        if self.lock_dir {
            self.take_lock()?;
        }
        let r = self.mount_locked();
        if r.is_err() {
            lock(&self.lock_file).clear();
        }
        let (running, report) = r?;
        *g = Mode::Mounted(Box::new(running));
        tracing::info!(path = %self.data_path.display(), ?report, "mounted");
        *lock(&self.last_report) = Some(report.clone());
        Ok(report)
    }

    fn mount_locked(&self) -> Result<(Running<B>, MountReport)> {
        let backend = B::open(&self.data_path, self.vfs.clone());
        if self.opts.mode == JournalMode::Parallel && !backend.snapshot_checkpoints() {
            return Err(Error::invalid(format!(
                "the parallel journal mode needs snapshot checkpoints, which the {} backend \
                 does not have here; use writeahead",
                B::STORE_TYPE
            )));
        }
        let durable = backend.mount()?;
        let record = read_checkpoint_record(&*self.vfs, &self.data_path)?;
        let recorded = record.seq;
        check_journal_volumes(&*self.vfs, &self.journal_path(), &record)?;
        if recorded > durable {
            return Err(Error::corrupt(format!(
                "checkpoint file says seq {recorded} is durable but the {} backend holds only seq {durable}",
                B::STORE_TYPE
            )));
        }
        let mut rp = Replayer {
            backend: &backend,
            after: durable,
            next: durable + 1,
            want: None,
            data: Vec::new(),
            volumes: BTreeMap::new(),
            error: None,
            replayed: 0,
            rejected: 0,
        };
        let (journal, outcome) = Journal::open(
            self.vfs.clone(),
            &self.journal_path(),
            self.opts.journal_options(),
            &mut rp,
        )
        .map_err(journal_error)?;
        if let Some(e) = rp.error.take() {
            let _ = journal.close();
            return Err(e);
        }
        let torn_tail = match &outcome.tail {
            ostore_journal::Tail::Torn { at, reason } => {
                tracing::warn!(at = %at, reason, "journal ends in a torn write; it is ignored");
                Some(format!("{at}: {reason}"))
            }
            _ => None,
        };
        let report = MountReport {
            checkpoint: durable,
            replayed: rp.replayed,
            rejected_on_replay: rp.rejected,
            torn_tail,
            next_seq: rp.next,
            damaged_checkpointed_entries: outcome.damaged_skipped,
        };
        if outcome.damaged_skipped > 0 {
            tracing::warn!(
                entries = outcome.damaged_skipped,
                "journal entries below the checkpoint fail their data checksum; they were \
                 already applied and are skipped"
            );
        }
        let volumes = std::mem::take(&mut rp.volumes);
        let last = rp.next - 1;
        drop(rp);

        let quarantine = Quarantine::load(&*self.vfs, &self.data_path)?;
        let (work_tx, work_rx) = crossbeam_channel::unbounded::<Arc<Sequencer>>();
        let (fin_tx, fin_rx) = crossbeam_channel::unbounded::<Box<dyn FnOnce() + Send>>();
        let shared = Arc::new(Shared {
            backend,
            data_path: self.data_path.clone(),
            vfs: self.vfs.clone(),
            opts: self.opts.clone(),
            failed: Mutex::new(None),
            sched: Scheduler::new(last, durable),
            volumes: Mutex::new(volumes),
            work_tx: Mutex::new(Some(work_tx)),
            finisher_tx: Mutex::new(Some(fin_tx)),
            ckpt_request: Mutex::new(false),
            ckpt_cv: Condvar::new(),
            ckpt_lock: Mutex::new(()),
            quarantine,
            staged_pending: std::sync::atomic::AtomicU64::new(0),
            trim_target: std::sync::atomic::AtomicU64::new(0),
        });
        let journal = Arc::new(journal);
        let stop = Arc::new(Mutex::new(false));
        let mut threads = Vec::new();
        let spawn = |name: String, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name)
                .spawn(f)
                .map_err(|e| Error::from(e).context("spawning a store thread"))
        };
        for i in 0..self.opts.apply_threads.max(1) {
            let sh = shared.clone();
            let rx = work_rx.clone();
            threads.push(spawn(
                format!("ostore-apply-{i}"),
                Box::new(move || {
                    while let Ok(sq) = rx.recv() {
                        sh.drain(&sq);
                    }
                }),
            )?);
        }
        threads.push(spawn(
            "ostore-finisher".into(),
            Box::new(move || {
                while let Ok(f) = fin_rx.recv() {
                    run_contained(f);
                }
            }),
        )?);
        {
            let sh = shared.clone();
            let j = journal.clone();
            let stop = stop.clone();
            threads.push(spawn(
                "ostore-checkpoint".into(),
                Box::new(move || checkpoint_loop(&sh, &j, &stop)),
            )?);
        }
        if self.opts.scrub.bytes_per_sec > 0 {
            let sh = shared.clone();
            let stop = stop.clone();
            threads.push(spawn(
                "ostore-scrub".into(),
                Box::new(move || scrub_loop(&sh, &stop)),
            )?);
        }
        shared.backend.replay_finished();
        // Replayed state becomes the new base at once, so the journal can be trimmed.
        if report.replayed > 0 {
            shared.checkpoint(&journal)?;
        }
        Ok((
            Running {
                shared,
                journal,
                submit: Mutex::new(last + 1),
                sequencers: Mutex::new(HashMap::new()),
                threads,
                stop,
            },
            report,
        ))
    }

    /// Checkpoints now (tests and tools); returns the seq made durable.
    pub fn checkpoint_now(&self) -> Result<u64> {
        self.with(|r| r.shared.checkpoint(&r.journal))
    }

    /// Journal volumes allocated from scratch (zero-filled) since mount; the rest were
    /// recycled by checkpoints.
    pub fn journal_blanks_made(&self) -> Result<u64> {
        self.with(|r| Ok(r.journal.blanks_made()))
    }

    /// The seq the next transaction will get.
    pub fn next_seq(&self) -> Result<u64> {
        self.with(|r| Ok(*lock(&r.submit)))
    }

    fn sequencer(&self, r: &Running<B>, cid: &CollectionId) -> Arc<Sequencer> {
        lock(&r.sequencers).entry(*cid).or_default().clone()
    }

    fn handle(&self, r: &Running<B>, cid: &CollectionId) -> CollectionHandle {
        CollectionHandle::new(*cid, self.sequencer(r, cid))
    }

    fn shutdown(&self, r: Running<B>, checkpoint: bool) -> Result<()> {
        // Wait for every queued entry to apply, then make it durable.
        let mut result = Ok(());
        if checkpoint && r.shared.check().is_ok() {
            // Let appends in flight become durable and apply.
            let next = *lock(&r.submit);
            r.shared.sched.wait_idle(next);
            result = r.shared.checkpoint(&r.journal).map(|_| ());
        }
        {
            let _g = lock(&r.shared.ckpt_request);
            *lock(&r.stop) = true;
        }
        r.shared.ckpt_cv.notify_all();
        let Running {
            shared,
            journal,
            threads,
            ..
        } = r;
        match Arc::try_unwrap(journal) {
            Ok(j) => {
                if let Err(e) = j.close() {
                    if result.is_ok() {
                        result = Err(journal_error(e));
                    }
                }
            }
            Err(_) => tracing::warn!("journal still referenced at umount"),
        }
        let backend_result = shared.backend.umount();
        lock(&self.lock_file).clear();
        // Disconnecting the channels ends the workers and the finisher (after it ran what
        // was already queued).
        lock(&shared.work_tx).take();
        lock(&shared.finisher_tx).take();
        drop(shared);
        for t in threads {
            let _ = t.join();
        }
        result.and(backend_result)
    }
}

impl<B: Backend> Shared<B> {
    /// Quarantines `oid` when `e` is a checksum failure, and keeps the list on disk.
    fn note_corrupt(&self, cid: &CollectionId, oid: &ObjectId, e: &Error) {
        if !scrub::is_corruption(e) {
            return;
        }
        if self.quarantine.add(cid, oid, e.message()) {
            tracing::error!(%cid, %oid, error = %e, "object quarantined");
            if let Err(se) = self.quarantine.save(&*self.vfs, &self.data_path) {
                tracing::error!(error = %se, "saving the quarantine list");
            }
        }
    }

    /// Reads all of one object (data, attrs, omap header and keys); the bytes read.
    fn verify_object(&self, cid: &CollectionId, oid: &ObjectId) -> Result<u64> {
        const CHUNK: u64 = 1 << 20;
        let b = &self.backend;
        let size = b.stat(cid, oid)?.size;
        let mut off = 0;
        while off < size {
            let n = CHUNK.min(size - off);
            off += b.read(cid, oid, off, n)?.len().max(1) as u64;
        }
        let attrs: u64 = b
            .getattrs(cid, oid)?
            .iter()
            .map(|(k, v)| (k.len() + v.len()) as u64)
            .sum();
        let (header, entries) = b.omap_get(cid, oid)?;
        let om: u64 = header.len() as u64
            + entries
                .iter()
                .map(|(k, v)| (k.len() + v.len()) as u64)
                .sum::<u64>();
        Ok(size + attrs + om)
    }

    /// One pass over every object, quarantining each corrupt one.
    fn scrub_pass(&self, stop: &dyn Fn() -> bool) -> Result<()> {
        let rate = self.opts.scrub.bytes_per_sec;
        let start = Instant::now();
        let mut bytes = 0u64;
        let counters = &self.quarantine.counters;
        for cid in self.backend.list_collections()? {
            let mut pos = ObjectId::min();
            let end = ObjectId::max_sentinel();
            loop {
                self.check()?;
                // A collection removed while the scrubber walks it simply ends.
                let Ok((objs, next)) = self.backend.collection_list(&cid, &pos, &end, 256) else {
                    break;
                };
                for o in &objs {
                    match self.verify_object(&cid, o) {
                        Ok(n) => {
                            bytes += n;
                            counters
                                .bytes
                                .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                        }
                        Err(e) if scrub::is_corruption(&e) => self.note_corrupt(&cid, o, &e),
                        // Removed since it was listed.
                        Err(e) if e.kind() == ErrorKind::NotFound => {}
                        Err(e) => return Err(e),
                    }
                    counters
                        .objects
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if !scrub::pace(start, bytes, rate, stop) {
                        return Ok(());
                    }
                }
                if next.is_max() || objs.is_empty() || next <= pos {
                    break;
                }
                pos = next;
            }
        }
        counters
            .passes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
}

fn scrub_loop<B: Backend>(sh: &Arc<Shared<B>>, stop: &Arc<Mutex<bool>>) {
    let stopped = || *lock(stop);
    loop {
        if let Err(e) = sh.scrub_pass(&stopped) {
            // A failed store stops scrubbing; anything else is retried next pass.
            tracing::error!(error = %e, "scrub pass failed");
            if sh.check().is_err() {
                return;
            }
        }
        let rested = Instant::now();
        while rested.elapsed() < sh.opts.scrub.pass_interval {
            if stopped() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Takes the exclusive lock on `f` (at `p`), waiting a little for a forked child's
/// copy of the descriptor to go.
fn lock_one(f: std::fs::File, p: &Path, what: &str) -> Result<std::fs::File> {
    // A process that forks (to exec a helper) holds a copy of every descriptor until
    // its exec, and with it our lock: a short wait tells that apart from a real
    // second mount, which holds the lock for good.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match f.try_lock() {
            Ok(()) => return Ok(f),
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::exists(format!(
                    "{what} is already in use by another mount (lock held on {})",
                    p.display()
                )))
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(Error::from(e).context(format!("locking {}", p.display())))
            }
        }
    }
}

fn checkpoint_loop<B: Backend>(sh: &Arc<Shared<B>>, j: &Arc<Journal>, stop: &Arc<Mutex<bool>>) {
    let mut last = Instant::now();
    loop {
        {
            let mut req = lock(&sh.ckpt_request);
            // `stop` is set under this lock, so checking it here cannot miss the wakeup.
            if *lock(stop) {
                return;
            }
            if !*req {
                req = sh
                    .ckpt_cv
                    .wait_timeout(req, Duration::from_millis(200))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            if *lock(stop) {
                return;
            }
            let due = (last.elapsed() >= sh.opts.checkpoint_interval
                && sh.backend.periodic_checkpoints())
                || sh.journal_bytes(j) >= sh.opts.checkpoint_fill_bytes;
            if !*req && !due {
                continue;
            }
            *req = false;
        }
        let due = sh.sched.checkpoint_due();
        if !due && sh.trim_behind(j) && sh.check().is_ok() {
            if let Err(e) = sh.retrim(j) {
                tracing::error!(error = %e, "journal trim failed");
                sh.fail(&e);
            }
        } else if due && sh.check().is_ok() {
            let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sh.checkpoint(j)));
            match run {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "checkpoint failed"),
                // A hold left behind by a panic would stall every submitter: fail stop.
                Err(panic) => sh.fail(&Error::failed(format!(
                    "a checkpoint panicked: {}",
                    panic_message(&*panic)
                ))),
            }
        }
        last = Instant::now();
        sh.ckpt_cv.notify_all();
    }
}

impl<B: Backend> ObjectStore for JournaledStore<B> {
    fn store_type(&self) -> &'static str {
        B::STORE_TYPE
    }

    fn mkfs(&self) -> Result<()> {
        self.vfs.create_dir_all(&self.data_path).map_err(|e| {
            Error::from(e).context(format!("creating {}", self.data_path.display()))
        })?;
        let backend = B::open(&self.data_path, self.vfs.clone());
        match Superblock::read_vfs(&*self.vfs, &self.data_path) {
            Ok(sb) => {
                return Err(Error::exists(format!(
                    "{} already holds a {} store",
                    self.data_path.display(),
                    sb.store_type
                )))
            }
            // NotFound: nothing here was ever mounted (a directory that was reads as
            // damaged, see `used_store_traces`), at most an interrupted mkfs.
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let jp = self.journal_path();
        // The superblock read above judged the data directory and its own journal; a
        // journal elsewhere may be another store's (a wrong --journal-path).
        if self.opts.journal_path.is_some()
            && self.vfs.exists(&jp.join("journal.info")).unwrap_or(false)
        {
            return Err(Error::exists(format!(
                "{} already holds a journal: remove it first if it belongs to no store",
                jp.display()
            )));
        }
        backend.mkfs()?;
        failpoint::hit("mkfs.after_backend")?;
        if self.vfs.exists(&jp.join("journal.info")).unwrap_or(false) {
            // A journal left by an interrupted mkfs holds nothing committed: start over.
            for name in self.vfs.list_dir(&jp).unwrap_or_default() {
                let p = jp.join(&name);
                self.vfs.remove(&p).map_err(|e| {
                    Error::from(e)
                        .context(format!("removing {} left by an earlier mkfs", p.display()))
                })?;
            }
            self.vfs
                .sync_dir(&jp)
                .map_err(|e| Error::from(e).context(format!("syncing {}", jp.display())))?;
        }
        let info = Journal::create(&*self.vfs, &jp, self.opts.geometry).map_err(journal_error)?;
        failpoint::hit("mkfs.before_superblock")?;
        // The superblock last: until it exists the directory reads as unformatted.
        let mut sb = Superblock::new(B::STORE_TYPE)?;
        sb.journal_id = Some(info.magic);
        sb.write(&*self.vfs, &self.data_path)
    }

    fn mount(&self) -> Result<()> {
        self.mount_report().map(|_| ())
    }

    fn umount(&self) -> Result<()> {
        let mut g = self
            .mode
            .write()
            .map_err(|_| Error::failed("store lock poisoned"))?;
        match std::mem::replace(&mut *g, Mode::Unmounted) {
            Mode::Mounted(r) => self.shutdown(*r, true),
            Mode::Unmounted => Err(Error::not_mounted("store is not mounted")),
        }
    }

    fn statfs(&self) -> Result<StoreStatfs> {
        self.backend_read(|b| b.statfs())
    }

    fn create_new_collection(&self, cid: &CollectionId) -> Result<CollectionHandle> {
        self.with(|r| Ok(self.handle(r, cid)))
    }

    fn open_collection(&self, cid: &CollectionId) -> Result<CollectionHandle> {
        self.with(|r| {
            if !r.shared.backend.collection_exists(cid)? {
                return Err(Error::not_found(format!("collection {cid} does not exist")));
            }
            Ok(self.handle(r, cid))
        })
    }

    fn queue_transactions(
        &self,
        ch: &CollectionHandle,
        txns: Vec<Transaction>,
        completion: Completion,
    ) -> Result<()> {
        for (i, t) in txns.iter().enumerate() {
            t.validate()
                .map_err(|e| e.context(format!("transaction {i}")))?;
        }
        self.with(|r| {
            let sh = &r.shared;
            // Throttle instead of failing when the journal is over budget.
            while sh.journal_bytes(&r.journal) > sh.opts.max_journal_bytes {
                sh.check()?;
                *lock(&sh.ckpt_request) = true;
                sh.ckpt_cv.notify_all();
                let g = lock(&sh.ckpt_request);
                let _ = sh.ckpt_cv.wait_timeout(g, Duration::from_millis(100));
            }
            if !sh.sched.wait_backlog(sh.opts.max_unapplied) {
                sh.check()?;
            }
            let sq = match ch.backend::<Sequencer>() {
                Some(_) => self.sequencer(r, ch.cid()),
                None => return Err(Error::invalid("collection handle belongs to another store")),
            };
            let staged = sh.stage(&txns)?;
            let data = encode_entry(&txns, &staged)?;
            let Completion {
                on_applied,
                on_commit,
                commit_inline,
            } = completion;
            let mut next = lock(&r.submit);
            let seq = *next;
            let shared = sh.clone();
            let p = Entry {
                txns,
                staged,
                on_applied,
            };
            let sq2 = sq.clone();
            let parallel = sh.opts.mode == JournalMode::Parallel;
            // Writeahead: the entry applies once durable, from the journal's callback.
            // Parallel: it is queued for apply right after the append, below.
            let (to_apply, deferred) = if parallel {
                (Some(p), None)
            } else {
                (None, Some(p))
            };
            let cell = Arc::new(Mutex::new(Some((deferred, on_commit))));
            let cell2 = cell.clone();
            // Held from the append until the entry's volume is recorded: a checkpoint
            // must never see an appended entry missing from the map (see checkpoint_at).
            let mut volumes = lock(&sh.volumes);
            let h = r.journal.append_with(&entry_meta(seq), &data, move |res| {
                if let Some((p, oc)) = lock(&cell2).take() {
                    let r = res.map_err(journal_error);
                    shared.on_durable(&sq2, seq, p, oc, commit_inline, r);
                }
            });
            failpoint::pause("journaling.after_append");
            match h {
                Ok(h) => {
                    *next += 1;
                    volumes.insert(seq, h.position().volume);
                    drop(volumes);
                    if let Some(p) = to_apply {
                        sh.enqueue(&sq, seq, p);
                    }
                    Ok(())
                }
                Err(e) => {
                    drop(volumes);
                    let e = journal_error(e);
                    sh.fail(&e);
                    // Nothing was appended: report to the callbacks too, once.
                    if let Some((p, oc)) = lock(&cell).take() {
                        if let Some(cb) = oc {
                            cb(Err(e.clone()));
                        }
                        if let Some(cb) = p.or(to_apply).and_then(|p| p.on_applied) {
                            cb(Err(e.clone()));
                        }
                    }
                    Err(e)
                }
            }
        })
    }

    fn exists(&self, ch: &CollectionHandle, oid: &ObjectId) -> Result<bool> {
        self.handle_read(ch, |b| b.exists(ch.cid(), oid))
    }
    fn stat(&self, ch: &CollectionHandle, oid: &ObjectId) -> Result<ObjectStat> {
        self.obj_read(ch, oid, |b| b.stat(ch.cid(), oid))
    }
    fn read(&self, ch: &CollectionHandle, oid: &ObjectId, off: u64, len: u64) -> Result<Vec<u8>> {
        self.obj_read(ch, oid, |b| b.read(ch.cid(), oid, off, len))
    }
    fn fiemap(
        &self,
        ch: &CollectionHandle,
        oid: &ObjectId,
        off: u64,
        len: u64,
    ) -> Result<BTreeMap<u64, u64>> {
        self.obj_read(ch, oid, |b| b.fiemap(ch.cid(), oid, off, len))
    }
    fn getattr(&self, ch: &CollectionHandle, oid: &ObjectId, name: &str) -> Result<Vec<u8>> {
        self.obj_read(ch, oid, |b| b.getattr(ch.cid(), oid, name))
    }
    fn getattrs(&self, ch: &CollectionHandle, oid: &ObjectId) -> Result<BTreeMap<String, Vec<u8>>> {
        self.obj_read(ch, oid, |b| b.getattrs(ch.cid(), oid))
    }
    fn list_collections(&self) -> Result<Vec<CollectionId>> {
        self.backend_read(|b| b.list_collections())
    }
    fn collection_exists(&self, cid: &CollectionId) -> Result<bool> {
        self.backend_read(|b| b.collection_exists(cid))
    }
    fn collection_empty(&self, ch: &CollectionHandle) -> Result<bool> {
        self.handle_read(ch, |b| b.collection_empty(ch.cid()))
    }
    fn collection_bits(&self, ch: &CollectionHandle) -> Result<u32> {
        self.handle_read(ch, |b| b.collection_bits(ch.cid()))
    }
    fn collection_list(
        &self,
        ch: &CollectionHandle,
        start: &ObjectId,
        end: &ObjectId,
        max: usize,
    ) -> Result<(Vec<ObjectId>, ObjectId)> {
        self.handle_read(ch, |b| b.collection_list(ch.cid(), start, end, max))
    }
    fn omap_get(&self, ch: &CollectionHandle, oid: &ObjectId) -> Result<OmapContents> {
        self.obj_read(ch, oid, |b| b.omap_get(ch.cid(), oid))
    }
    fn omap_get_header(&self, ch: &CollectionHandle, oid: &ObjectId) -> Result<Vec<u8>> {
        self.obj_read(ch, oid, |b| b.omap_get_header(ch.cid(), oid))
    }
    fn omap_get_keys(&self, ch: &CollectionHandle, oid: &ObjectId) -> Result<BTreeSet<OmapKey>> {
        self.obj_read(ch, oid, |b| b.omap_get_keys(ch.cid(), oid))
    }
    fn omap_get_values(
        &self,
        ch: &CollectionHandle,
        oid: &ObjectId,
        keys: &BTreeSet<OmapKey>,
    ) -> Result<BTreeMap<OmapKey, Vec<u8>>> {
        self.obj_read(ch, oid, |b| b.omap_get_values(ch.cid(), oid, keys))
    }
    fn omap_check_keys(
        &self,
        ch: &CollectionHandle,
        oid: &ObjectId,
        keys: &BTreeSet<OmapKey>,
    ) -> Result<BTreeSet<OmapKey>> {
        self.obj_read(ch, oid, |b| b.omap_check_keys(ch.cid(), oid, keys))
    }
    fn omap_iterator(
        &self,
        ch: &CollectionHandle,
        oid: &ObjectId,
    ) -> Result<Box<dyn OmapIterator + Send>> {
        self.obj_read(ch, oid, |b| b.omap_iterator(ch.cid(), oid))
    }

    fn fsck(&self, deep: bool) -> Result<FsckReport> {
        self.with(|r| {
            let mut rep = r.shared.backend.fsck(deep)?;
            rep.checked
                .insert("journal_next_seq".into(), *lock(&r.submit));
            let q = r.shared.quarantine.entries();
            rep.checked.insert("quarantined".into(), q.len() as u64);
            for (c, o, why) in q {
                rep.error(format!(
                    "{c} {o}: quarantined (a checksum failed: {why}); `repair` releases it once it reads clean"
                ));
            }
            Ok(rep)
        })
    }

    fn mount_report(&self) -> Option<MountReport> {
        lock(&self.last_report).clone()
    }

    fn repair(&self) -> Result<FsckReport> {
        self.with(|r| {
            // Quiesce and make the applied state durable first, so a repair never races
            // an apply and never stands on state only the journal holds.
            r.shared.checkpoint(&r.journal)?;
            let mut rep = r.shared.backend.repair()?;
            let mut changed = false;
            for (c, o, why) in r.shared.quarantine.entries() {
                match r.shared.verify_object(&c, &o) {
                    Ok(_) => {
                        r.shared.quarantine.remove(&c, &o);
                        changed = true;
                        rep.repaired.push(format!(
                            "{c} {o}: reads clean now, released from quarantine"
                        ));
                    }
                    Err(e) if e.kind() == ErrorKind::NotFound => {
                        r.shared.quarantine.remove(&c, &o);
                        changed = true;
                        rep.repaired
                            .push(format!("{c} {o}: gone, released from quarantine"));
                    }
                    Err(e) => rep.error(format!(
                        "{c} {o}: still corrupt ({e}; first seen: {why}): rewrite or remove it"
                    )),
                }
            }
            if changed {
                r.shared
                    .quarantine
                    .save(&*r.shared.vfs, &r.shared.data_path)?;
            }
            Ok(rep)
        })
    }
}

/// The text of a caught panic's payload (what `panic!` was given, when it was a string).
fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

impl<B: Backend> Drop for JournaledStore<B> {
    fn drop(&mut self) {
        // A store dropped while mounted stops its threads without a checkpoint: what is
        // durable is in the journal, exactly as after a crash.
        if let Ok(g) = self.mode.get_mut() {
            if let Mode::Mounted(r) = std::mem::replace(g, Mode::Unmounted) {
                let _ = self.shutdown(*r, false);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Vec<Transaction> {
        let c = CollectionId::pg(1, 0);
        let (a, b) = (ObjectId::new(1, "a"), ObjectId::new(1, "b"));
        let mut t0 = Transaction::new();
        t0.touch(&c, &a).write(&c, &a, 4096, vec![7; 3000]);
        let mut t1 = Transaction::new();
        t1.write(&c, &b, 0, vec![1; 5000])
            .setattr(&c, &b, "k", b"v".to_vec())
            .write(&c, &a, 0, vec![2; 6000]);
        vec![t0, t1]
    }

    fn staged() -> Vec<Staged> {
        vec![
            Staged {
                txn: 1,
                op: 0,
                id: 0x1_0000_0001,
                len: 5000,
                crc: crc32c::crc32c(&[1; 5000]),
            },
            Staged {
                txn: 1,
                op: 2,
                id: 0x1_0000_0002,
                len: 6000,
                crc: crc32c::crc32c(&[2; 6000]),
            },
        ]
    }

    #[test]
    fn checkpoint_records_round_trip_and_refuse_damage() {
        for r in [
            CheckpointRecord {
                seq: 0,
                volumes: None,
            },
            CheckpointRecord {
                seq: 77,
                volumes: None,
            },
            CheckpointRecord {
                seq: 77,
                volumes: Some((3, 5)),
            },
            CheckpointRecord {
                seq: u64::MAX,
                volumes: Some((6, 5)),
            },
        ] {
            let b = r.encode();
            assert_eq!(b.len(), if r.volumes.is_some() { 24 } else { 8 });
            assert_eq!(CheckpointRecord::decode(&b).unwrap(), r);
        }
        // Version 1 (the seq alone) still reads.
        assert_eq!(
            CheckpointRecord::decode(&9u64.to_le_bytes()).unwrap(),
            CheckpointRecord {
                seq: 9,
                volumes: None
            }
        );
        let v2 = |a: u64, b: u64, c: u64| [a, b, c].map(u64::to_le_bytes).concat();
        for bad in [
            vec![],
            vec![0; 7],
            vec![0; 16],
            vec![0; 25],
            v2(1, 9, 5), // first volume past the newest + 1
            v2(1, 0, 0), // no newest volume
        ] {
            assert!(CheckpointRecord::decode(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn entries_round_trip_with_and_without_staged_writes() {
        let txns = entry();
        let plain = encode_entry(&txns, &[]).unwrap();
        let (t, s) = decode_entry_staged(&plain).unwrap();
        assert_eq!((t, s), (txns.clone(), vec![]));
        let with = encode_entry(&txns, &staged()).unwrap();
        // Journal entries are on disk: these bytes must never change.
        let sum = |b: &[u8]| (b.len(), crc32c::crc32c(b));
        assert_eq!(
            (sum(&plain), sum(&with)),
            ((14_343, 2_559_050_439), (3_407, 850_674_792))
        );
        assert!(
            with.len() < plain.len() - 10_000,
            "staged data left in the entry"
        );
        let (t, s) = decode_entry_staged(&with).unwrap();
        assert_eq!(s, staged());
        assert_eq!(t[0], txns[0]);
        assert_eq!(t[1].ops()[1], txns[1].ops()[1]);
        assert!(matches!(&t[1].ops()[0], Op::Write { data, off: 0, .. } if data.is_empty()));
        // Replay puts the data back.
        let back = load_with(t.clone(), &s, &mut |id, len| {
            Ok(vec![if id == 0x1_0000_0001 { 1 } else { 2 }; len as usize])
        })
        .unwrap();
        assert_eq!(back, txns);
        let bad = load_with(t, &s, &mut |_, len| Ok(vec![9; len as usize]));
        assert_eq!(bad.unwrap_err().kind(), ErrorKind::Corrupt);
    }

    #[test]
    fn damaged_staged_records_are_corrupt() {
        let txns = entry();
        let good = encode_entry(&txns, &staged()).unwrap();
        let recs = good.len() - 2 * STAGED_BYTES;
        let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
        let mut m = good.clone();
        m[recs - 8] ^= 1; // the magic
        cases.push(("magic", m));
        let mut m = good.clone();
        m[recs + 4] = 1; // op 1 is a setattr, not a write
        cases.push(("not a write", m));
        let mut m = good.clone();
        m[recs + STAGED_BYTES + 4] = 0; // the same op twice
        cases.push(("duplicate", m));
        let mut m = good.clone();
        m[recs..recs + 4].copy_from_slice(&9u32.to_le_bytes());
        cases.push(("no such transaction", m));
        let mut m = good.clone();
        m[recs + 16..recs + 24].copy_from_slice(&0u64.to_le_bytes());
        cases.push(("zero length", m));
        let mut m = good.clone();
        m.push(0);
        cases.push(("trailing", m));
        cases.push(("truncated", good[..good.len() - 3].to_vec()));
        // A staged record must name a write journaled without its data.
        let mut full = encode_entry(&txns, &[]).unwrap();
        full.extend_from_slice(&good[recs - 8..]);
        cases.push(("write with data", full));
        for (what, b) in cases {
            let e = decode_entry_staged(&b).expect_err(what);
            assert_eq!(e.kind(), ErrorKind::Corrupt, "{what}: {e}");
        }
    }
}
