//! The journal writer: appends, group commit, volume rotation, TOC, trim, blank volumes.
//!
//! ## Group commit
//! Appenders copy their entry into the *open batch* under one lock, so journal order is the
//! order of `append` calls. Whenever fewer than `max_inflight` flushes are running, the open
//! batch is sealed and handed to an I/O worker, which writes it (one `pwrite` per range of a
//! volume it touches) and `fdatasync`s it. While all workers are busy, appends accumulate in the open
//! batch, so the batch size adapts to the load: one appender gets one write + sync per append,
//! 64 appenders get few syncs carrying many entries, with several in flight at once.
//!
//! A thread that waits on its handle ([`AppendHandle::wait`]) while the batch it sealed is
//! still queued takes that batch back and flushes it itself (`JournalOptions::waiters_flush`),
//! if the batch holds its entry alone and no other flush was in flight: one appender then
//! pays for the write and the sync, not also a wake-up of a worker and a wake-up back
//! (~0.15 ms of ~1.8 ms per 1 MiB append on this VM, BENCHMARKS.md). Such a batch of an
//! append without a callback is queued reserved for its appender
//! ([`WorkQueue::push_reserved`]), so no worker is woken for it or takes it: a worker
//! woken for it mostly got there first, leaving the waiter to sleep through the flush.
//! The workers get it after all when its handle is polled or dropped, at the next append
//! (whose entry completes after it), or at close. Under load the batches stay with the
//! workers: with 16-64 appenders, appenders flushing them cost 10-20% of the appends per
//! second. A waiter opens its own descriptors, as a worker does, and counts against
//! `max_inflight` like one.
//!
//! An entry with at least `JournalOptions::inplace_from` bytes of data (512 KiB by default,
//! see there) is not copied whole: the whole sectors its data fills are written by its appender, straight
//! from the caller's buffer with one `pwritev` of sector headers and data slices, after the
//! appender reserved them in the open batch and released the lock. The batch is not sealed
//! while such a write runs (its `writers` count); its flush writes the rest (batch header,
//! the partial first and last sectors, other entries) and syncs the whole. The bytes on disk
//! are those a copied entry would leave. This saves the appender's copy of the data (~0.14
//! ms per MiB on this VM), the one copy the page cache does not need; for 64 KiB entries the
//! two extra writes cost more than the copy (see `JournalOptions::inplace_from`;
//! BENCHMARKS.md, 2026-12-07).
//!
//! A batch is acknowledged (handles complete, callbacks run, in journal order) only once it and
//! every earlier batch are durable. Each worker opens its own descriptors, so an fdatasync error
//! is seen by the flush it concerns (Linux reports a writeback error once per open file).
//!
//! ## Fail-stop
//! The first failed write, fdatasync, rename or directory sync poisons the journal: every pending
//! and later append fails with [`Error::Poisoned`]; nothing is retried or written after it.
//! Reopen to recover by replay.
//!
//! ## Trim
//! [`Journal::trim_before`] recycles every volume numbered below a given volume. The caller knows
//! where each of its entries went (each append returns its [`Position`]); once its checkpoint
//! covers the entry at position P, everything in volumes below `P.volume` is obsolete. This keeps
//! the journal ignorant of the caller's sequence numbers. The TOC callback is for tools and for a
//! fast start of replay (e.g. the caller writes its highest seq per volume there), not needed to
//! trim. Trim never recycles a volume that is not yet entirely durable, nor the newest volume
//! (whose number carries the volume numbering across restarts), nor the volume where the batch
//! holding the first entries of `P.volume` begins (replay reads batches whole). After
//! `trim_before(v)`, replay delivers every entry whose header lies in volume `v` or later, and
//! possibly a few earlier ones, which the caller skips by its own sequence numbers.
//!
//! ## Restart
//! [`Journal::open`] replays every complete entry, then continues writing in place right after
//! the last valid batch. Whatever lies beyond (a torn batch, unacknowledged batches of in-flight
//! flushes) cannot be mistaken for new data later: new batches chain to the last valid one by
//! sequence number and header CRC, and a stale batch cannot. Every volume is fdatasynced at open,
//! so the replayed bytes (which a killed process may have left only in the page cache) are
//! durable before anything is built on them.

use crate::aligned::{AlignedBuf, ALIGN};
use crate::atomic::{AtomicFileReader, AtomicFileWriter};
use crate::error::{Error, Result};
use crate::format::batch::{self, BatchHeader};
use crate::format::entry::{self, EntryHeader};
use crate::format::info::{self, JournalInfo};
use crate::format::toc::{self, Toc};
use crate::format::volume::VolumeHeader;
use crate::format::{sector, Geometry, StreamPos};
use crate::scan::{
    list_volumes, parse_name, volume_path, MetaAction, Resume, ScanCallbacks, ScanOutcome, Scanner,
    VolStats,
};
use crate::sync::{
    relock, rewait, AtomicBool, AtomicU64, Builder, Condvar, JoinHandle, Mutex, MutexGuard,
    Ordering, WorkQueue,
};
use crate::vfs::{OpenMode, Vfs, VfsFile};
use crate::Position;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Instant;

/// How blank volumes are allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlankMethod {
    /// Write zeros over the whole file, then fdatasync. Later overwrites need no metadata
    /// commit; measured fastest here (see BENCHMARKS.md), and the default.
    Zeros,
    /// fallocate only: instant, but every later sync converts unwritten extents.
    Fallocate,
    /// fallocate, then write zeros.
    FallocateZeros,
}

/// How workers write and sync a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoMode {
    /// io_uring (write linked to fdatasync) when the kernel allows it and the files are real;
    /// else pwrite + fdatasync. Probed at runtime by every worker.
    Auto,
    /// Always pwrite + fdatasync. The default: on this machine (kernel 6.18, ext4) io_uring
    /// punts both the buffered write and the fdatasync to its worker threads, and the extra
    /// hand-offs made every size and concurrency slower (4 KiB x1: 3,751 vs 5,393 appends/s;
    /// BENCHMARKS.md, "The journal alone").
    Pwrite,
}

/// Called when a volume is closed; returns the user bytes of its TOC.
pub type TocFn = Box<dyn FnMut(&TocContext) -> Vec<u8> + Send>;

/// What the TOC callback is told about the volume being closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TocContext {
    /// The volume being closed.
    pub volume: u64,
    /// Stream bytes of the closing batch that continue in the next volume.
    pub spill_out: u64,
    /// Entries whose header starts in this volume.
    pub entries: u32,
}

/// Tuning of an open journal.
#[derive(Debug, Clone)]
pub struct JournalOptions {
    /// Flushes (write + fdatasync) in flight at once, each on its own worker thread.
    pub max_inflight: usize,
    /// Appenders wait when the open batch holds this many bytes and no flush slot is free.
    pub max_batch_bytes: u64,
    /// Blank volumes the background maker keeps ready.
    pub blank_target: usize,
    /// Recycled volumes kept as blanks beyond that; extra ones are deleted.
    pub max_blanks: usize,
    /// How new blanks are allocated.
    pub blank_method: BlankMethod,
    /// Write path.
    pub io: IoMode,
    /// Run the blank maker in a background thread (off: blanks are made when needed, which keeps
    /// the I/O of simulated-disk tests deterministic).
    pub background_blanks: bool,
    /// Batches of fewer bytes than this are written with `O_DIRECT` (where the filesystem
    /// allows it and the sector size is a multiple of [`ALIGN`]; the batch buffers are
    /// aligned, see [`crate::aligned`]), larger ones through the page cache; `fdatasync`
    /// follows every write either way. 0: never direct; `u64::MAX`: always. Why a size:
    /// on this VM small direct writes were faster by ratio (4 KiB entries at 4-16
    /// appenders, 10-25%), while batches of 64 KiB or more went 20-60% faster through the
    /// page cache on one instance of the VM and about as fast on another (BENCHMARKS.md,
    /// "Direct I/O for journal writes" and "Direct or page cache, by batch size"). The
    /// two paths use separate descriptors of the same file: ranges never
    /// overlap (every batch starts on a fresh sector), and an `fdatasync` on either
    /// descriptor reports a writeback error of the file.
    pub direct_below: u64,
    /// A thread waiting on an append that sealed a batch of its entry alone, while no other
    /// flush was in flight, flushes that batch itself if it is still queued, instead of
    /// waking a worker and being woken back (see the module docs). Completions it
    /// finishes, and the callbacks of `append_with` due then, run on that thread. For an
    /// `append` (no callback) no worker is woken for such a batch until its handle is
    /// polled or dropped, or another append or close comes: a handle kept unwaited and
    /// unpolled (e.g. `mem::forget`) with nothing appended after it leaves its entry
    /// unflushed until then.
    pub waiters_flush: bool,
    /// Entries with at least this many bytes of data have the whole sectors of their data
    /// written by the appending thread itself, straight from the caller's buffer (one
    /// `pwritev` of sector headers and data slices, into the page cache), rather than
    /// copied into the batch; the batch's flush then writes the rest and syncs it all. The
    /// bytes on disk are the same. `u64::MAX`: never. Default 512 KiB: the journal's own
    /// 1 MiB appends gained ~10% at one appender (the copy is ~0.14 ms per MiB here), and
    /// the stores' 4 MiB writes 10-40% at one client once their encoding stopped copying
    /// the data four times (before, glibc's heap trimming made those copies fault their
    /// pages in again without the batch buffer, and in place lost 30-40%); 64 KiB entries
    /// lost with it (two extra writes cost more than the copy). BENCHMARKS.md, 2026-12-07.
    pub inplace_from: u64,
}

impl Default for JournalOptions {
    fn default() -> Self {
        JournalOptions {
            max_inflight: 4,
            max_batch_bytes: 4 << 20,
            blank_target: 2,
            max_blanks: 4,
            blank_method: BlankMethod::Zeros,
            io: IoMode::Pwrite,
            background_blanks: true,
            direct_below: 64 << 10,
            waiters_flush: true,
            inplace_from: 512 << 10,
        }
    }
}

type Callback = Box<dyn FnOnce(Result<()>) + Send>;

#[derive(Default)]
struct CState {
    result: Option<Result<(), Arc<Error>>>,
    callbacks: Vec<Callback>,
    /// Threads blocked in [`AppendHandle::wait`]: a wake-up is a syscall, and mostly the
    /// waiter flushed its batch itself, so nobody waits.
    waiters: usize,
}

/// Calls to and time in the journal's file writes and syncs since open, added up over the
/// threads that made them ([`Journal::io_times`]). Writes are the batches' `pwrite`s and the
/// appenders' in-place `pwritev`s (a copy into the page cache, unless direct); syncs are the
/// `fdatasync`s. A batch written and synced by one io_uring submission counts as one sync
/// whose time includes its writes. The blank maker's and trim's I/O are not counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoTimes {
    /// Write calls.
    pub writes: u64,
    /// Nanoseconds in them.
    pub write_ns: u64,
    /// Sync calls (or io_uring write + sync submissions).
    pub syncs: u64,
    /// Nanoseconds in them.
    pub sync_ns: u64,
}

impl IoTimes {
    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &IoTimes) -> IoTimes {
        IoTimes {
            writes: self.writes.saturating_sub(earlier.writes),
            write_ns: self.write_ns.saturating_sub(earlier.write_ns),
            syncs: self.syncs.saturating_sub(earlier.syncs),
            sync_ns: self.sync_ns.saturating_sub(earlier.sync_ns),
        }
    }
}

/// Indexes of `Inner::io_counts`: a kind's calls, then its nanoseconds.
const IO_WRITES: usize = 0;
const IO_SYNCS: usize = 2;

/// Completion of one batch, shared by the handles of its entries.
#[derive(Default)]
struct Completion {
    state: Mutex<CState>,
    cv: Condvar,
}

impl std::fmt::Debug for Completion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Completion").finish_non_exhaustive()
    }
}

impl Completion {
    fn finish(&self, r: Result<(), Arc<Error>>) {
        let cbs = {
            let mut s = relock(&self.state);
            if s.result.is_some() {
                return;
            }
            s.result = Some(r.clone());
            if s.waiters > 0 {
                self.cv.notify_all();
            }
            std::mem::take(&mut s.callbacks)
        };
        for cb in cbs {
            cb(r.clone().map_err(Error::Poisoned));
        }
    }

    fn add_callback(&self, cb: Callback) {
        relock(&self.state).callbacks.push(cb);
    }
}

/// Reports when one append is durable.
#[derive(Clone)]
pub struct AppendHandle {
    completion: Arc<Completion>,
    position: Position,
    /// Set when the append sealed its batch: [`AppendHandle::wait`] may flush it itself.
    sealed: Option<Arc<SealedBy>>,
}

/// The batch an append sealed (see `JournalOptions::waiters_flush`). If it was queued
/// reserved for its appender, the workers get it once the handle is polled or dropped
/// (its last clone), or at the next append or close.
struct SealedBy {
    inner: Weak<Inner>,
    seq: u64,
}

impl SealedBy {
    /// Hand the batch to the workers if it is still reserved for this handle.
    fn release(&self) {
        if let Some(inner) = self.inner.upgrade() {
            inner.queue.release(|b| b.seq == self.seq);
        }
    }
}

impl Drop for SealedBy {
    fn drop(&mut self) {
        self.release();
    }
}

impl std::fmt::Debug for AppendHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppendHandle")
            .field("position", &self.position)
            .field("batch", &self.sealed.as_ref().map(|s| s.seq))
            .finish_non_exhaustive()
    }
}

impl AppendHandle {
    /// Where the entry's header was placed.
    pub fn position(&self) -> Position {
        self.position
    }

    /// Block until the entry and everything appended before it are durable, or the journal fails.
    pub fn wait(&self) -> Result<()> {
        let mut s = relock(&self.completion.state);
        if let Some(b) = self.sealed.as_ref().filter(|_| s.result.is_none()) {
            if let Some(inner) = b.inner.upgrade() {
                drop(s);
                inner.flush_queued(b.seq);
                s = relock(&self.completion.state);
            }
        }
        loop {
            if let Some(r) = &s.result {
                return r.clone().map_err(Error::Poisoned);
            }
            s.waiters += 1;
            s = rewait(&self.completion.cv, s);
            s.waiters -= 1;
        }
    }

    /// `None` while pending, else the outcome.
    pub fn poll(&self) -> Option<Result<()>> {
        let r = relock(&self.completion.state).result.clone();
        if r.is_none() {
            // A poller never flushes: let the workers have a batch reserved for this handle.
            if let Some(b) = &self.sealed {
                b.release();
            }
        }
        r.map(|r| r.map_err(Error::Poisoned))
    }
}

/// Bytes of one batch laid out in sectors of one volume.
#[derive(Debug)]
struct Seg {
    vol: u64,
    first_sector: u64,
    buf: AlignedBuf,
}

/// Whole sectors of a large entry's data that its appender writes itself (see
/// `JournalOptions::inplace_from`): `sectors` sectors of volume `vol` from `first_sector`,
/// carrying `data` (a range of the entry's data).
#[derive(Debug)]
struct Run {
    vol: u64,
    first_sector: u64,
    sectors: u64,
    data: std::ops::Range<usize>,
}

struct OpenBatch {
    start: StreamPos,
    cur: StreamPos,
    segs: Vec<Seg>,
    /// The next bytes start a new segment: sectors before them are written in place.
    gap: bool,
    /// Appenders writing runs of this batch right now: it is not sealed before they finish.
    writers: usize,
    /// Bytes written in place (whole sectors), for the choice of direct I/O.
    inplace_bytes: u64,
    payload_len: u64,
    entries: u32,
    entries_crc: u32,
    completion: Arc<Completion>,
}

impl OpenBatch {
    fn new(geo: &Geometry, magic: u32, start: StreamPos) -> Self {
        let mut b = OpenBatch {
            start,
            cur: start,
            segs: Vec::new(),
            gap: false,
            writers: 0,
            inplace_bytes: 0,
            payload_len: 0,
            entries: 0,
            entries_crc: 0,
            completion: Arc::new(Completion::default()),
        };
        b.put(geo, magic, &[0u8; batch::HEADER_LEN]);
        b
    }

    /// Start a segment at the current position.
    fn open_seg(&mut self, geo: &Geometry) {
        let first_sector = if self.cur.soff == 0 {
            0
        } else {
            1 + self.cur.soff / geo.payload()
        };
        let mut buf = AlignedBuf::default();
        if first_sector == 0 {
            // Sector 0 holds the volume header, filled in at seal time.
            buf.resize(geo.s() as usize, 0);
        }
        self.segs.push(Seg {
            vol: self.cur.vol,
            first_sector,
            buf,
        });
        self.gap = false;
    }

    /// Lay out `data` as [`OpenBatch::put`] does, except the whole sectors it fills: those
    /// are left out of the batch's buffers and returned, for the appender to write.
    fn put_inplace(&mut self, geo: &Geometry, magic: u32, data: &[u8]) -> Vec<Run> {
        let pl = geo.payload() as usize;
        let mut runs = Vec::new();
        let mut done = 0;
        while done < data.len() {
            let within = (self.cur.soff % pl as u64) as usize;
            let left = data.len() - done;
            if within != 0 || left < pl {
                let take = left.min(pl - within);
                self.put(geo, magic, &data[done..done + take]);
                done += take;
                continue;
            }
            let first_sector = 1 + self.cur.soff / pl as u64;
            let sectors = ((left / pl) as u64).min(geo.data_sectors() + 1 - first_sector);
            if self.cur.soff == 0 && self.segs.last().is_none_or(|g| g.vol != self.cur.vol) {
                // The volume header stays in the batch.
                self.open_seg(geo);
            }
            let len = sectors as usize * pl;
            runs.push(Run {
                vol: self.cur.vol,
                first_sector,
                sectors,
                data: done..done + len,
            });
            self.inplace_bytes += sectors * geo.s();
            self.cur = geo.advance(self.cur, len as u64);
            self.gap = true;
            done += len;
        }
        runs
    }

    /// Append stream bytes, laying them out in sectors (and volumes) as they go.
    fn put(&mut self, geo: &Geometry, magic: u32, mut bytes: &[u8]) {
        let s = geo.s() as usize;
        let pl = geo.payload();
        let hl = sector::HEADER_LEN;
        while !bytes.is_empty() {
            let idx = 1 + self.cur.soff / pl;
            let within = (self.cur.soff % pl) as usize;
            if self.gap || self.segs.last().is_none_or(|g| g.vol != self.cur.vol) {
                self.open_seg(geo);
            }
            let Some(seg) = self.segs.last_mut() else {
                return;
            };
            let at = (idx - seg.first_sector) as usize * s;
            if seg.buf.len() <= at {
                // A new sector. Bytes are appended rather than copied into a zeroed
                // buffer (zero-filling megabytes per batch showed in profiles); the last
                // sector is padded when the batch is sealed.
                seg.buf.resize(at, 0);
                seg.buf
                    .reserve(bytes.len() + (bytes.len() / pl as usize + 1) * hl);
                seg.buf.extend_from_slice(&sector::encode(magic, seg.vol));
            }
            let take = bytes.len().min(pl as usize - within);
            let dst = at + hl + within;
            if dst == seg.buf.len() {
                seg.buf.extend_from_slice(&bytes[..take]);
            } else {
                if seg.buf.len() < dst + take {
                    seg.buf.resize(dst + take, 0);
                }
                seg.buf[dst..dst + take].copy_from_slice(&bytes[..take]);
            }
            bytes = &bytes[take..];
            self.cur = geo.advance(self.cur, take as u64);
        }
    }
}

/// A sealed batch on its way to a worker.
#[derive(Debug)]
struct Sealed {
    seq: u64,
    writes: Vec<(u64, u64, AlignedBuf)>,
    syncs: Vec<u64>,
    /// Bytes of the batch its appenders wrote in place (already in the page cache).
    inplace: u64,
}

struct Pending {
    seq: u64,
    next: StreamPos,
    done: bool,
    completion: Arc<Completion>,
}

struct State {
    /// Threads waiting on `Inner::space` (see `Inner::wait_space`).
    space_waiters: usize,
    poisoned: Option<Arc<Error>>,
    closed: bool,
    open: Option<OpenBatch>,
    next_start: StreamPos,
    next_seq: u64,
    prev_crc: u32,
    inflight: usize,
    pending: VecDeque<Pending>,
    durable: StreamPos,
    live: BTreeSet<u64>,
    /// Spill-in of live volumes (from their headers), to find where batches start.
    spill: BTreeMap<u64, u64>,
    stats: BTreeMap<u64, VolStats>,
    toc_cb: Option<TocFn>,
    wrote: bool,
    /// Where sealed batches go; `None` once shut down.
    tx: Option<Arc<WorkQueue<Sealed>>>,
}

#[derive(Debug, Default)]
struct Blanks {
    ready: VecDeque<PathBuf>,
    next_no: u64,
    /// Blanks allocated from scratch (not recycled) since open: each one is a volume's
    /// worth of zeros written and synced.
    made: u64,
    stop: bool,
    failed: bool,
}

struct Inner {
    /// For handles that may flush their own batch; never keeps a closed journal alive.
    me: Weak<Inner>,
    vfs: Arc<dyn Vfs>,
    dir: PathBuf,
    geo: Geometry,
    magic: u32,
    opts: JournalOptions,
    state: Mutex<State>,
    /// Set with `State::poisoned`, so flush workers can check it per batch without
    /// taking the state lock the appenders contend for.
    failed: AtomicBool,
    space: Condvar,
    deliver: Mutex<()>,
    trim: Mutex<()>,
    blanks: Mutex<Blanks>,
    blank_cv: Condvar,
    /// The queue of sealed batches, for waiters that take their own batch back and
    /// handles that release the batch reserved for them.
    queue: Arc<WorkQueue<Sealed>>,
    /// Descriptor caches of threads that write outside the workers (waiters flushing their
    /// batch, appenders writing in place).
    files: FilePool,
    /// Batches flushed by their waiters since open.
    waiter_flushes: AtomicU64,
    /// Calls to and nanoseconds in writes and syncs since open (see [`IoTimes`]).
    io_counts: [AtomicU64; 4],
    /// `opts.direct_below`, or 0 when the sector size is not a multiple of [`ALIGN`]
    /// (direct writes would need an aligned bounce copy).
    direct_below: u64,
}

/// Open volume files of one flushing thread, by volume and direct-I/O mode.
type Files = HashMap<(u64, bool), Box<dyn VfsFile>>;

/// Close the descriptors of volumes more than two below `vol`: writes move forward through
/// the volumes, and a recycled volume's file is renamed away.
fn prune(files: &mut Files, vol: u64) {
    files.retain(|&(v, _), _| v + 2 >= vol);
}

/// Descriptor caches lent to threads for one write or flush each, so a thread that is not
/// a worker does not open its volume files anew every time.
#[derive(Default)]
struct FilePool(Mutex<Vec<Files>>);

impl FilePool {
    fn take(&self) -> Files {
        relock(&self.0).pop().unwrap_or_default()
    }

    fn give_back(&self, files: Files) {
        relock(&self.0).push(files);
    }

    fn clear(&self) {
        relock(&self.0).clear();
    }
}

/// An open journal. See the module docs.
pub struct Journal {
    inner: Arc<Inner>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("dir", &self.inner.dir)
            .field("geometry", &self.inner.geo)
            .finish_non_exhaustive()
    }
}

fn info_path(dir: &Path) -> PathBuf {
    dir.join(info::FILE_NAME)
}

fn blank_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:010}.bvl"))
}

/// Read and validate the info file of the journal in `dir`.
pub fn read_info(vfs: &dyn Vfs, dir: &Path) -> Result<JournalInfo> {
    let path = info_path(dir);
    let Some(bytes) = AtomicFileReader::new(vfs, &path, info::MAGIC).read()? else {
        // Volumes without their info file are a damaged journal, not an absent one.
        let volumes = crate::scan::list_volumes(vfs, dir).unwrap_or_default();
        if let Some(first) = volumes.first() {
            return Err(Error::BadFile {
                path,
                reason: format!(
                    "missing, while the directory holds {} journal volume(s) from {first:010}.vol",
                    volumes.len()
                ),
            });
        }
        return Err(Error::NotFound(dir.to_path_buf()));
    };
    JournalInfo::decode(&bytes).map_err(|r| Error::BadFile { path, reason: r.0 })
}

fn random_magic() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    let v = h.finish();
    let m = (v ^ (v >> 32)) as u32;
    if m == 0 {
        0x4f53_4a31
    } else {
        m
    }
}

/// Turns a `Stop` of the caller into "skip the rest": open must scan to the end regardless.
struct NoStop<'a> {
    inner: &'a mut dyn ScanCallbacks,
    stopped: bool,
}

impl ScanCallbacks for NoStop<'_> {
    fn meta(&mut self, pos: Position, meta: &[u8], data_len: u64) -> MetaAction {
        if self.stopped {
            return MetaAction::Skip;
        }
        match self.inner.meta(pos, meta, data_len) {
            MetaAction::Stop => {
                self.stopped = true;
                MetaAction::Skip
            }
            a => a,
        }
    }
    fn data(&mut self, chunk: &[u8], last: bool) -> ControlFlow<()> {
        if !self.stopped && self.inner.data(chunk, last).is_break() {
            self.stopped = true;
        }
        ControlFlow::Continue(())
    }
    fn next_volume(&mut self, volume: u64) -> ControlFlow<()> {
        if !self.stopped && self.inner.next_volume(volume).is_break() {
            self.stopped = true;
        }
        ControlFlow::Continue(())
    }
    fn data_needed(&mut self, pos: Position, meta: &[u8]) -> bool {
        self.inner.data_needed(pos, meta)
    }
}

impl Journal {
    /// Create an empty journal in `dir` (the directory is created if needed). Returns
    /// what its info file records, its sector magic included (a store keeps that as
    /// the journal's id).
    pub fn create(vfs: &dyn Vfs, dir: &Path, geometry: Geometry) -> Result<JournalInfo> {
        geometry.validate()?;
        vfs.create_dir_all(dir)
            .map_err(|e| Error::io("mkdir", dir, e))?;
        let path = info_path(dir);
        if vfs.exists(&path).map_err(|e| Error::io("stat", &path, e))? {
            return Err(Error::AlreadyExists(dir.to_path_buf()));
        }
        let info = JournalInfo {
            magic: random_magic(),
            geometry,
        };
        AtomicFileWriter::new(vfs, path, info::MAGIC).write(&info.encode())?;
        Ok(info)
    }

    /// Open the journal in `dir`: replay every complete entry into `replay` (a `Stop` there only
    /// stops delivery), then get ready to append after the last valid batch.
    pub fn open(
        vfs: Arc<dyn Vfs>,
        dir: &Path,
        opts: JournalOptions,
        replay: &mut dyn ScanCallbacks,
    ) -> Result<(Journal, ScanOutcome)> {
        if opts.max_inflight == 0 || opts.max_batch_bytes == 0 {
            return Err(Error::InvalidConfig(
                "max_inflight and max_batch_bytes must be positive".into(),
            ));
        }
        let info = read_info(&*vfs, dir)?;
        let geo = info.geometry;
        let names = vfs.list_dir(dir).map_err(|e| Error::io("list", dir, e))?;
        let mut blanks = Blanks::default();
        let mut blank_nos = Vec::new();
        for n in &names {
            if n.ends_with(".tmp") {
                let p = dir.join(n);
                vfs.remove(&p).map_err(|e| Error::io("remove", &p, e))?;
            } else if let Some(b) = parse_name(n, ".bvl") {
                blank_nos.push(b);
            }
        }
        blank_nos.sort_unstable();
        blanks.next_no = blank_nos.last().map_or(1, |b| b + 1);
        blanks.ready = blank_nos.iter().map(|&b| blank_path(dir, b)).collect();

        let mut scanner = Scanner::new(&*vfs, dir, geo, info.magic)?;
        let first = scanner.volumes().first().copied().unwrap_or(1);
        let live = scanner.volumes().clone();
        let mut ns = NoStop {
            inner: replay,
            stopped: false,
        };
        let outcome = scanner.run(first, None, &mut ns)?;
        drop(scanner);

        // What we just read may exist only in the page cache of a killed predecessor.
        for &v in &live {
            let p = volume_path(dir, v);
            let f = vfs
                .open(&p, OpenMode::ReadWrite)
                .map_err(|e| Error::io("open", &p, e))?;
            f.sync_data().map_err(|e| Error::io("fdatasync", &p, e))?;
        }
        vfs.sync_dir(dir)
            .map_err(|e| Error::io("fsync directory", dir, e))?;

        let Resume {
            end,
            next_seq,
            prev_crc,
            stats,
            spill_in,
        } = outcome.resume.clone();
        let tx = Arc::new(WorkQueue::new());
        let inner = Arc::new_cyclic(|me| Inner {
            me: me.clone(),
            vfs,
            dir: dir.to_path_buf(),
            geo,
            magic: info.magic,
            state: Mutex::new(State {
                space_waiters: 0,
                poisoned: None,
                closed: false,
                open: None,
                next_start: end,
                next_seq,
                prev_crc,
                inflight: 0,
                pending: VecDeque::new(),
                durable: end,
                live,
                spill: spill_in,
                stats: BTreeMap::from([(stats.vol, stats)]),
                toc_cb: None,
                wrote: false,
                tx: Some(tx.clone()),
            }),
            failed: AtomicBool::new(false),
            space: Condvar::new(),
            deliver: Mutex::new(()),
            trim: Mutex::new(()),
            blanks: Mutex::new(blanks),
            blank_cv: Condvar::new(),
            queue: tx.clone(),
            files: FilePool::default(),
            waiter_flushes: AtomicU64::new(0),
            io_counts: std::array::from_fn(|_| AtomicU64::new(0)),
            direct_below: if geo.s().is_multiple_of(ALIGN as u64) {
                opts.direct_below
            } else {
                0
            },
            opts,
        });
        let mut threads = Vec::new();
        for i in 0..inner.opts.max_inflight {
            let inn = inner.clone();
            let rx = tx.clone();
            threads.push(
                Builder::new()
                    .name(format!("journal-io-{i}"))
                    .spawn(move || inn.worker(rx))
                    .map_err(|e| Error::io("spawn", "journal-io", e))?,
            );
        }
        if inner.opts.background_blanks {
            let inn = inner.clone();
            threads.push(
                Builder::new()
                    .name("journal-blanks".into())
                    .spawn(move || inn.maker())
                    .map_err(|e| Error::io("spawn", "journal-blanks", e))?,
            );
        }
        Ok((
            Journal {
                inner,
                threads: Mutex::new(threads),
            },
            outcome,
        ))
    }

    /// Set the callback that supplies TOC user bytes when a volume is closed. It runs under the
    /// journal's lock: it must be quick and must not call into the journal.
    pub fn set_toc_callback(&self, cb: TocFn) {
        relock(&self.inner.state).toc_cb = Some(cb);
    }

    /// Append one entry. Entries appended by one thread land in call order; across threads, in
    /// the order the calls took the journal lock. The handle reports durability.
    pub fn append(&self, meta: &[u8], data: &[u8]) -> Result<AppendHandle> {
        self.inner.append(meta, data, None)
    }

    /// Append and call `on_durable` (from a journal thread, in journal order) once the entry is
    /// durable or the journal has failed. The callback must not block on the journal.
    pub fn append_with(
        &self,
        meta: &[u8],
        data: &[u8],
        on_durable: impl FnOnce(Result<()>) + Send + 'static,
    ) -> Result<AppendHandle> {
        self.inner.append(meta, data, Some(Box::new(on_durable)))
    }

    /// Recycle every volume numbered below `volume` (see the module docs). Returns the volumes
    /// recycled.
    pub fn trim_before(&self, volume: u64) -> Result<Vec<u64>> {
        self.inner.trim_before(volume)
    }

    /// Numbers of the live volumes.
    pub fn volumes(&self) -> Vec<u64> {
        relock(&self.inner.state).live.iter().copied().collect()
    }

    /// Where the next batch will be written.
    pub fn end_position(&self) -> Position {
        let st = relock(&self.inner.state);
        self.inner.geo.position(st.next_start)
    }

    /// The journal's geometry.
    pub fn geometry(&self) -> Geometry {
        self.inner.geo
    }

    /// Blank volumes ready for use.
    pub fn blanks_ready(&self) -> usize {
        relock(&self.inner.blanks).ready.len()
    }

    /// Blank volumes allocated from scratch since open (rather than recycled by trim).
    pub fn blanks_made(&self) -> u64 {
        relock(&self.inner.blanks).made
    }

    /// Batches flushed by a thread waiting on its own append rather than by a worker, since
    /// open (see `JournalOptions::waiters_flush`).
    pub fn waiter_flushes(&self) -> u64 {
        self.inner.waiter_flushes.load(Ordering::Relaxed)
    }

    /// Calls to and time in the journal's writes and syncs since open, added up over its
    /// threads: with the wall time per append it tells what the device costs (the syncs)
    /// from what the journal adds around them.
    pub fn io_times(&self) -> IoTimes {
        let c = |i: usize| self.inner.io_counts[i].load(Ordering::Relaxed);
        IoTimes {
            writes: c(IO_WRITES),
            write_ns: c(IO_WRITES + 1),
            syncs: c(IO_SYNCS),
            sync_ns: c(IO_SYNCS + 1),
        }
    }

    /// The error that poisoned the journal, if any.
    pub fn poisoned(&self) -> Option<Arc<Error>> {
        relock(&self.inner.state).poisoned.clone()
    }

    /// Flush what is pending, write a batch confirming everything before it (so damage to the
    /// last batches is later reported as corruption, not taken for a torn tail), stop the threads.
    pub fn close(self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&self) -> Result<()> {
        let r = self.inner.drain_and_confirm();
        {
            let mut st = relock(&self.inner.state);
            st.closed = true;
            if let Some(q) = st.tx.take() {
                q.close();
            }
        }
        {
            let mut b = relock(&self.inner.blanks);
            b.stop = true;
            self.inner.blank_cv.notify_all();
        }
        let threads = std::mem::take(&mut *relock(&self.threads));
        for t in threads {
            // A worker only panics on a bug; the journal is closing either way.
            let _ = t.join();
        }
        // Close the descriptors a waiter opened to flush its own batch.
        self.inner.files.clear();
        r
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        if !relock(&self.threads).is_empty() {
            if let Err(e) = self.shutdown() {
                tracing::warn!("journal closed with error: {e}");
            }
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        relock(&self.state)
    }

    /// Wait for room in the open batch or for flushes to finish (`space`), counted so
    /// that [`Inner::notify_space`] makes no syscall when nobody waits.
    fn wait_space<'a>(&self, mut st: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        st.space_waiters += 1;
        st = rewait(&self.space, st);
        st.space_waiters -= 1;
        st
    }

    /// Wake the threads in [`Inner::wait_space`], if any. Called with the state lock held.
    fn notify_space(&self, st: &State) {
        if st.space_waiters > 0 {
            self.space.notify_all();
        }
    }

    fn append(&self, meta: &[u8], data: &[u8], cb: Option<Callback>) -> Result<AppendHandle> {
        for (what, len) in [("metadata", meta.len()), ("data", data.len())] {
            if len as u64 > entry::MAX_LEN {
                return Err(Error::TooLarge {
                    what,
                    len: len as u64,
                    max: entry::MAX_LEN,
                });
            }
        }
        let hdr = EntryHeader::new(
            meta.len() as u32,
            data.len() as u32,
            crc32c::crc32c(meta),
            crc32c::crc32c(data),
        )
        .encode();
        let mut st = self.lock();
        loop {
            // This entry completes after a reserved batch, and may wait for room it
            // frees: let the workers have it.
            self.queue.release_all();
            if let Some(p) = &st.poisoned {
                return Err(Error::Poisoned(p.clone()));
            }
            if st.closed {
                return Err(Error::Closed);
            }
            let full = st
                .open
                .as_ref()
                .is_some_and(|b| b.payload_len >= self.opts.max_batch_bytes)
                && !self.sealable(&st);
            if !full {
                break;
            }
            st = self.wait_space(st);
        }
        let start = st.next_start;
        let b = st
            .open
            .get_or_insert_with(|| OpenBatch::new(&self.geo, self.magic, start));
        let pos = b.cur;
        b.put(&self.geo, self.magic, &hdr);
        b.put(&self.geo, self.magic, meta);
        let runs = if data.len() as u64 >= self.opts.inplace_from {
            b.put_inplace(&self.geo, self.magic, data)
        } else {
            b.put(&self.geo, self.magic, data);
            Vec::new()
        };
        if !runs.is_empty() {
            b.writers += 1;
        }
        b.payload_len += entry::HEADER_LEN as u64 + meta.len() as u64 + data.len() as u64;
        b.entries += 1;
        b.entries_crc = crc32c::crc32c_append(b.entries_crc, &hdr);
        let no_callback = cb.is_none();
        if let Some(cb) = cb {
            b.completion.add_callback(cb);
        }
        let completion = b.completion.clone();
        let e = st.stats.entry(pos.vol).or_insert(VolStats {
            vol: pos.vol,
            ..VolStats::default()
        });
        e.entries = e.entries.saturating_add(1);
        if !runs.is_empty() {
            st = self.write_runs(st, &runs, data)?;
        }
        let mut sealed = None;
        if self.sealable(&st) {
            // Only when nothing else is in flight: with 16-64 appenders, appenders flushing
            // even single-entry batches cost 10-20% of the appends per second.
            let alone = st.inflight == 0
                && st.open.as_ref().is_some_and(|b| b.entries == 1)
                && self.opts.waiters_flush;
            let seq = st.next_seq;
            // Without a callback the entry's durability is seen through the handle only,
            // so the batch is reserved for it: its thread flushes it in `wait`, sparing a
            // worker's wake-up that mostly came first and left the waiter only waiting.
            let failed = self.seal(&mut st, alone && no_callback);
            if failed.is_empty() && st.next_seq == seq + 1 && alone {
                sealed = Some(Arc::new(SealedBy {
                    inner: self.me.clone(),
                    seq,
                }));
            }
            self.finish_locked(st, Vec::new(), failed);
        }
        Ok(AppendHandle {
            completion,
            position: self.geo.position(pos),
            sealed,
        })
    }

    /// Write the appender's in-place runs (see `JournalOptions::inplace_from`) with the
    /// state lock released, then take it back. The open batch is not sealed meanwhile (its
    /// `writers` count holds it). A failure poisons the journal.
    fn write_runs<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        runs: &[Run],
        data: &[u8],
    ) -> Result<MutexGuard<'a, State>> {
        // The volumes must exist before their sectors are written.
        let mut r = runs
            .iter()
            .try_for_each(|run| self.ensure_live(&mut st, run.vol));
        if r.is_ok() {
            drop(st);
            r = self.write_runs_unlocked(runs, data);
            st = self.lock();
        }
        if let Some(b) = st.open.as_mut() {
            b.writers -= 1;
        }
        // A drain, or appenders held by a full batch, wait for the writers to finish.
        self.notify_space(&st);
        if let Err(e) = r {
            return Err(self.fail(st, e));
        }
        if let Some(p) = &st.poisoned {
            return Err(Error::Poisoned(p.clone()));
        }
        Ok(st)
    }

    /// Run `f`, one I/O call of kind `kind` (`IO_WRITES` or `IO_SYNCS`), counting it and
    /// its time for [`Journal::io_times`].
    fn timed<T>(&self, kind: usize, f: impl FnOnce() -> T) -> T {
        let t = Instant::now();
        let r = f();
        let ns = u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.io_counts[kind].fetch_add(1, Ordering::Relaxed);
        self.io_counts[kind + 1].fetch_add(ns, Ordering::Relaxed);
        r
    }

    fn write_runs_unlocked(&self, runs: &[Run], data: &[u8]) -> Result<()> {
        self.check_failed()?;
        let mut files = self.files.take();
        let r = self.write_runs_with(&mut files, runs, data);
        self.files.give_back(files);
        r
    }

    fn write_runs_with(&self, files: &mut Files, runs: &[Run], data: &[u8]) -> Result<()> {
        let s = self.geo.s();
        let pl = self.geo.payload() as usize;
        for run in runs {
            let hdr = sector::encode(self.magic, run.vol);
            let mut iov: Vec<&[u8]> = Vec::with_capacity(2 * run.sectors as usize);
            for chunk in data[run.data.clone()].chunks(pl) {
                iov.push(&hdr);
                iov.push(chunk);
            }
            prune(files, run.vol);
            let f = self.file(files, run.vol, false)?;
            self.timed(IO_WRITES, || {
                f.write_vectored_at(&iov, run.first_sector * s)
            })
            .map_err(|e| Error::io("write", volume_path(&self.dir, run.vol), e))?;
        }
        Ok(())
    }

    /// Seal the open batch and send it to a worker (`reserve`: queue it reserved for its
    /// appender, see the module docs). On failure the journal is poisoned and the
    /// completions to fail are returned.
    fn seal(&self, st: &mut State, reserve: bool) -> Vec<(Arc<Completion>, Arc<Error>)> {
        match self.try_seal(st, reserve) {
            Ok(()) => Vec::new(),
            Err(e) => self.poison(st, e),
        }
    }

    /// Whether the open batch can be sealed now: a worker is free and no appender is still
    /// writing sectors of it in place (the last one seals it, then signals `space`).
    fn sealable(&self, st: &State) -> bool {
        st.inflight < self.opts.max_inflight && st.open.as_ref().is_some_and(|b| b.writers == 0)
    }

    fn try_seal(&self, st: &mut State, reserve: bool) -> Result<()> {
        if !self.sealable(st) {
            return Ok(());
        }
        let Some(mut b) = st.open.take() else {
            return Ok(());
        };
        let geo = &self.geo;
        let s = geo.s() as usize;
        let hl = sector::HEADER_LEN;
        let seq = st.next_seq;
        // Put the completion back in `pending` first so a failure below fails this batch too.
        st.pending.push_back(Pending {
            seq,
            next: b.start,
            done: false,
            completion: b.completion.clone(),
        });
        let hdr = BatchHeader {
            volume: b.start.vol,
            offset: geo.file_offset(b.start.soff),
            seq,
            payload_len: b.payload_len,
            entries: b.entries,
            prev_crc: st.prev_crc,
            synced_volume: st.durable.vol,
            synced_offset: geo.file_offset(st.durable.soff),
            entries_crc: b.entries_crc,
        };
        let (hbytes, hcrc) = hdr.encode();
        let end = b.cur;
        let next = geo.align_up(end);
        let cap = geo.capacity();
        let dist =
            |from: StreamPos| (end.vol * cap + end.soff).saturating_sub(from.vol * cap + from.soff);
        {
            let Some(seg0) = b.segs.first_mut() else {
                return Err(Error::InvalidConfig("empty batch layout".into()));
            };
            let at = (1 + b.start.soff / geo.payload() - seg0.first_sector) as usize * s + hl;
            seg0.buf[at..at + batch::HEADER_LEN].copy_from_slice(&hbytes);
        }
        let e = st.stats.entry(b.start.vol).or_insert(VolStats {
            vol: b.start.vol,
            ..VolStats::default()
        });
        if e.first_batch_seq == 0 {
            e.first_batch_seq = seq;
        }
        let mut writes = Vec::new();
        let mut syncs = Vec::new();
        for seg in &mut b.segs {
            // Whole sectors only: the tail of the last one is zeros.
            let whole = seg.buf.len().div_ceil(s) * s;
            seg.buf.resize(whole, 0);
        }
        for seg in &mut b.segs {
            if seg.first_sector == 0 {
                let spill_in = if seg.vol == b.start.vol {
                    0
                } else {
                    dist(StreamPos {
                        vol: seg.vol,
                        soff: 0,
                    })
                };
                let vh = VolumeHeader {
                    volume: seg.vol,
                    spill_in,
                    geometry: *geo,
                };
                seg.buf[..crate::format::volume::LEN].copy_from_slice(&vh.encode(self.magic));
                let e = st.stats.entry(seg.vol).or_insert(VolStats {
                    vol: seg.vol,
                    ..VolStats::default()
                });
                e.spill_in = spill_in;
                st.spill.insert(seg.vol, spill_in);
            }
        }
        // Volumes this batch closes: every one it touched before the one the next batch starts in.
        let closes: Vec<u64> = (b.start.vol..next.vol).collect();
        let mut tocs = Vec::new();
        for &v in &closes {
            let spill_out = if end.vol > v {
                dist(StreamPos {
                    vol: v + 1,
                    soff: 0,
                })
            } else {
                0
            };
            let stats = st.stats.remove(&v).unwrap_or(VolStats {
                vol: v,
                ..VolStats::default()
            });
            let ctx = TocContext {
                volume: v,
                spill_out,
                entries: stats.entries,
            };
            let user = st.toc_cb.as_mut().map(|cb| cb(&ctx)).unwrap_or_default();
            let max = toc::max_user_len(geo);
            if user.len() > max {
                return Err(Error::TocTooLarge {
                    len: user.len(),
                    max,
                });
            }
            let t = Toc {
                volume: v,
                spill_in: stats.spill_in,
                spill_out,
                first_batch_seq: stats.first_batch_seq,
                last_batch_seq: seq,
                entries: stats.entries,
                closing_batch_crc: hcrc,
                user,
            };
            let area = t
                .encode(self.magic, geo)
                .map_err(|r| Error::InvalidConfig(r.0))?;
            tocs.push((v, geo.toc_offset(), AlignedBuf::from_slice(&area)));
        }
        for seg in &b.segs {
            self.ensure_live(st, seg.vol)?;
        }
        let inplace = b.inplace_bytes;
        for seg in b.segs {
            // A volume holds several segments when runs were written in place between them.
            if syncs.last() != Some(&seg.vol) {
                syncs.push(seg.vol);
            }
            writes.push((seg.vol, seg.first_sector * s as u64, seg.buf));
        }
        writes.extend(tocs);
        if let Some(p) = st.pending.back_mut() {
            p.next = next;
        }
        st.inflight += 1;
        st.next_seq += 1;
        st.prev_crc = hcrc;
        st.next_start = next;
        st.wrote = b.entries > 0;
        let Some(tx) = &st.tx else {
            return Err(Error::Closed);
        };
        let sealed = Sealed {
            seq,
            writes,
            syncs,
            inplace,
        };
        if reserve {
            tx.push_reserved(sealed)
        } else {
            tx.push(sealed)
        }
        .map_err(|_| Error::Closed)
    }

    /// Make volume `v` live (see `activate`) unless it already is.
    fn ensure_live(&self, st: &mut State, v: u64) -> Result<()> {
        if !st.live.contains(&v) {
            self.activate(v)?;
            st.live.insert(v);
        }
        Ok(())
    }

    /// Poison the journal with `e` (failing every pending append) and return the error for
    /// the caller that met it.
    fn fail(&self, mut st: MutexGuard<'_, State>, e: Error) -> Error {
        let failed = self.poison(&mut st, e);
        let p = st.poisoned.clone();
        self.finish_locked(st, Vec::new(), failed);
        p.map_or(Error::Closed, Error::Poisoned)
    }

    /// Make `v.vol` exist: reuse a leftover file of that number or rename a blank to it.
    fn activate(&self, v: u64) -> Result<()> {
        let path = volume_path(&self.dir, v);
        if self
            .vfs
            .exists(&path)
            .map_err(|e| Error::io("stat", &path, e))?
        {
            return Ok(());
        }
        let blank = self.take_blank()?;
        crate::failpoint::hit("journal.rotate").map_err(|e| Error::io("rename", &path, e))?;
        self.vfs
            .rename(&blank, &path)
            .map_err(|e| Error::io("rename", &path, e))?;
        self.vfs
            .sync_dir(&self.dir)
            .map_err(|e| Error::io("fsync directory", &self.dir, e))
    }

    fn take_blank(&self) -> Result<PathBuf> {
        let n = {
            let mut b = relock(&self.blanks);
            if let Some(p) = b.ready.pop_front() {
                self.blank_cv.notify_all();
                return Ok(p);
            }
            b.next_no += 1;
            b.next_no - 1
        };
        self.make_blank(n)
    }

    fn make_blank(&self, n: u64) -> Result<PathBuf> {
        let path = blank_path(&self.dir, n);
        let mut tmp = path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let f = self
            .vfs
            .open(&tmp, OpenMode::CreateTruncate)
            .map_err(|e| Error::io("create", &tmp, e))?;
        let size = self.geo.volume_size;
        let zeros = |f: &dyn VfsFile| -> Result<()> {
            let chunk = vec![0u8; (1 << 20).min(size as usize)];
            let mut off = 0;
            while off < size {
                let n = chunk.len().min((size - off) as usize);
                f.write_at(&chunk[..n], off)
                    .map_err(|e| Error::io("write", &tmp, e))?;
                off += n as u64;
            }
            Ok(())
        };
        match self.opts.blank_method {
            BlankMethod::Zeros => zeros(&*f)?,
            BlankMethod::Fallocate | BlankMethod::FallocateZeros => {
                if f.allocate(size).is_err() {
                    f.set_len(size)
                        .map_err(|e| Error::io("truncate", &tmp, e))?;
                }
                if self.opts.blank_method == BlankMethod::FallocateZeros {
                    zeros(&*f)?;
                }
            }
        }
        f.sync_data().map_err(|e| Error::io("fdatasync", &tmp, e))?;
        self.vfs
            .rename(&tmp, &path)
            .map_err(|e| Error::io("rename", &path, e))?;
        relock(&self.blanks).made += 1;
        Ok(path)
    }

    fn maker(&self) {
        loop {
            let n = {
                let mut b = relock(&self.blanks);
                while !b.stop && !b.failed && b.ready.len() >= self.opts.blank_target {
                    b = rewait(&self.blank_cv, b);
                }
                if b.stop || b.failed {
                    return;
                }
                b.next_no += 1;
                b.next_no - 1
            };
            let r = self.make_blank(n);
            let mut b = relock(&self.blanks);
            match r {
                Ok(p) => b.ready.push_back(p),
                Err(e) => {
                    // The writer makes blanks itself when none is ready, and fails there.
                    tracing::warn!("blank volume maker stopped: {e}");
                    b.failed = true;
                }
            }
            self.blank_cv.notify_all();
        }
    }

    /// Poison the journal (first error wins); return every completion to fail.
    fn poison(&self, st: &mut State, e: Error) -> Vec<(Arc<Completion>, Arc<Error>)> {
        let err = match &st.poisoned {
            Some(p) => p.clone(),
            None => {
                tracing::error!("journal poisoned: {e}");
                let p = Arc::new(e);
                st.poisoned = Some(p.clone());
                self.failed.store(true, Ordering::SeqCst);
                p
            }
        };
        let mut out: Vec<_> = st
            .pending
            .drain(..)
            .map(|p| (p.completion, err.clone()))
            .collect();
        if let Some(b) = st.open.take() {
            out.push((b.completion, err.clone()));
        }
        self.notify_space(st);
        out
    }

    /// Release the state lock and run completions in journal order.
    fn finish_locked(
        &self,
        st: MutexGuard<'_, State>,
        ok: Vec<Arc<Completion>>,
        failed: Vec<(Arc<Completion>, Arc<Error>)>,
    ) {
        if ok.is_empty() && failed.is_empty() {
            drop(st);
            return;
        }
        // Taking `deliver` before releasing the state lock orders deliveries like completions.
        let g = relock(&self.deliver);
        drop(st);
        for c in ok {
            c.finish(Ok(()));
        }
        for (c, e) in failed {
            c.finish(Err(e));
        }
        drop(g);
    }

    /// Flush batch `seq` in the calling thread if it is still queued (see the module docs);
    /// otherwise it is, or was, a worker's.
    fn flush_queued(&self, seq: u64) {
        let Some(s) = self.queue.take(|b| b.seq == seq) else {
            return;
        };
        let mut files = self.files.take();
        let r = self.write_batch(&mut files, None, s.writes, &s.syncs, s.inplace);
        self.files.give_back(files);
        self.waiter_flushes.fetch_add(1, Ordering::Relaxed);
        self.complete(s.seq, r);
    }

    fn worker(&self, rx: Arc<WorkQueue<Sealed>>) {
        let mut files = Files::new();
        let mut ring = match self.opts.io {
            IoMode::Auto => crate::uring::Uring::new(),
            IoMode::Pwrite => None,
        };
        while let Some(s) = rx.pop() {
            let r = self.write_batch(&mut files, ring.as_mut(), s.writes, &s.syncs, s.inplace);
            self.complete(s.seq, r);
        }
    }

    /// `Err(Poisoned)` once the journal failed; the state lock only on that rare path.
    fn check_failed(&self) -> Result<()> {
        if !self.failed.load(Ordering::SeqCst) {
            return Ok(());
        }
        match &self.lock().poisoned {
            Some(p) => Err(Error::Poisoned(p.clone())),
            None => Ok(()),
        }
    }

    fn write_batch(
        &self,
        files: &mut Files,
        ring: Option<&mut crate::uring::Uring>,
        writes: Vec<(u64, u64, AlignedBuf)>,
        syncs: &[u64],
        inplace: u64,
    ) -> Result<()> {
        self.check_failed()?;
        crate::failpoint::pause("journal.flush");
        if let Some(&min) = syncs.first() {
            prune(files, min);
        }
        let total: u64 = writes.iter().map(|w| w.2.len() as u64).sum();
        let direct = total.saturating_add(inplace) < self.direct_below;
        for (vol, _, _) in &writes {
            self.file(files, *vol, direct)?;
        }
        let max_len = writes.iter().map(|w| w.2.len()).max().unwrap_or(0);
        let fd = |v: &u64| files.get(&(*v, direct)).and_then(|f| f.raw_fd());
        if let Some(ring) = ring {
            let fds: Option<Vec<i32>> = syncs.iter().map(fd).collect();
            let wfds: Option<Vec<i32>> = writes.iter().map(|w| fd(&w.0)).collect();
            if let (Some(sfds), Some(wfds)) = (fds, wfds) {
                if crate::uring::Uring::fits(writes.len(), syncs.len(), max_len) {
                    let what = volume_path(&self.dir, syncs.first().copied().unwrap_or(0));
                    let chain = writes
                        .into_iter()
                        .zip(wfds)
                        .map(|((_, off, buf), fd)| (fd, off, buf))
                        .collect();
                    return self
                        .timed(IO_SYNCS, || ring.write_and_sync(chain, &sfds))
                        .map_err(|e| Error::io("io_uring write+fdatasync", what, e));
                }
            }
        }
        for (vol, off, buf) in &writes {
            let f = self.file(files, *vol, direct)?;
            self.timed(IO_WRITES, || f.write_at(buf, *off))
                .map_err(|e| Error::io("write", volume_path(&self.dir, *vol), e))?;
        }
        // A flush that fails elsewhere meanwhile poisons the journal: no point syncing.
        self.check_failed()?;
        for vol in syncs {
            let f = self.file(files, *vol, direct)?;
            self.timed(IO_SYNCS, || f.sync_data())
                .map_err(|e| Error::io("fdatasync", volume_path(&self.dir, *vol), e))?;
        }
        Ok(())
    }

    fn file<'f>(&self, files: &'f mut Files, vol: u64, direct: bool) -> Result<&'f dyn VfsFile> {
        let f = match files.entry((vol, direct)) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let p = volume_path(&self.dir, vol);
                let mode = if direct {
                    OpenMode::ReadWriteDirect
                } else {
                    OpenMode::ReadWrite
                };
                let f = self
                    .vfs
                    .open(&p, mode)
                    .map_err(|e| Error::io("open", &p, e))?;
                e.insert(f)
            }
        };
        Ok(&**f)
    }

    fn complete(&self, seq: u64, r: Result<()>) {
        let mut st = self.lock();
        st.inflight = st.inflight.saturating_sub(1);
        let mut ok = Vec::new();
        let mut failed = Vec::new();
        match r {
            Err(e) => failed = self.poison(&mut st, e),
            Ok(()) if st.poisoned.is_none() => {
                let front = st.pending.front().map_or(seq, |p| p.seq);
                if let Some(p) = st.pending.get_mut((seq - front) as usize) {
                    p.done = true;
                }
                while st.pending.front().is_some_and(|p| p.done) {
                    if let Some(p) = st.pending.pop_front() {
                        st.durable = p.next;
                        ok.push(p.completion);
                    }
                }
            }
            Ok(()) => {}
        }
        if st.poisoned.is_none() && self.sealable(&st) {
            failed.extend(self.seal(&mut st, false));
        }
        self.notify_space(&st);
        self.finish_locked(st, ok, failed);
    }

    /// Seal what is open, wait for every flush, then confirm the tail with an empty batch.
    fn drain_and_confirm(&self) -> Result<()> {
        let mut st = self.lock();
        if st.tx.is_none() {
            return st
                .poisoned
                .clone()
                .map_or(Ok(()), |p| Err(Error::Poisoned(p)));
        }
        let mut confirmed = false;
        loop {
            self.queue.release_all();
            if let Some(p) = &st.poisoned {
                return Err(Error::Poisoned(p.clone()));
            }
            if st.open.is_some() {
                if self.sealable(&st) {
                    let failed = self.seal(&mut st, false);
                    if !failed.is_empty() {
                        self.finish_locked(st, Vec::new(), failed);
                        st = self.lock();
                    }
                    continue;
                }
            } else if st.inflight == 0 {
                if st.wrote && !confirmed {
                    confirmed = true;
                    let start = st.next_start;
                    st.open = Some(OpenBatch::new(&self.geo, self.magic, start));
                    continue;
                }
                return Ok(());
            }
            st = self.wait_space(st);
        }
    }

    fn trim_before(&self, volume: u64) -> Result<Vec<u64>> {
        let _serial = relock(&self.trim);
        let victims: Vec<u64> = {
            let mut st = self.lock();
            if let Some(p) = &st.poisoned {
                return Err(Error::Poisoned(p.clone()));
            }
            let newest = st.live.last().copied().unwrap_or(0);
            let oldest = st.live.first().copied().unwrap_or(0);
            let mut limit = volume.min(st.durable.vol).min(newest);
            // Keep the volume where the batch holding the first entries of `limit` begins:
            // replay reads whole batches from their start.
            while limit > oldest {
                let sp = st.spill.get(&limit).copied().unwrap_or(0);
                let first_start = self.geo.align_up(self.geo.advance(
                    StreamPos {
                        vol: limit,
                        soff: 0,
                    },
                    sp,
                ));
                if first_start.vol == limit {
                    break;
                }
                limit -= 1;
            }
            let v: Vec<u64> = st.live.range(..limit).copied().collect();
            for x in &v {
                st.live.remove(x);
                st.stats.remove(x);
                st.spill.remove(x);
            }
            v
        };
        for &v in &victims {
            let from = volume_path(&self.dir, v);
            let r = (|| -> Result<()> {
                crate::failpoint::hit("journal.trim").map_err(|e| Error::io("rename", &from, e))?;
                let mut b = relock(&self.blanks);
                if b.ready.len() < self.opts.max_blanks {
                    let to = blank_path(&self.dir, b.next_no);
                    b.next_no += 1;
                    self.vfs
                        .rename(&from, &to)
                        .map_err(|e| Error::io("rename", &from, e))?;
                    b.ready.push_back(to);
                    self.blank_cv.notify_all();
                } else {
                    drop(b);
                    self.vfs
                        .remove(&from)
                        .map_err(|e| Error::io("remove", &from, e))?;
                }
                // One directory sync per volume keeps the live volumes a contiguous range
                // after a crash at any point of the trim.
                self.vfs
                    .sync_dir(&self.dir)
                    .map_err(|e| Error::io("fsync directory", &self.dir, e))
            })();
            if let Err(e) = r {
                return Err(self.fail(self.lock(), e));
            }
        }
        Ok(victims)
    }
}

/// Every live volume number of the journal in `dir`.
pub fn journal_volumes(vfs: &dyn Vfs, dir: &Path) -> Result<BTreeSet<u64>> {
    list_volumes(vfs, dir)
}

#[cfg(all(test, feature = "shuttle"))]
mod model;
