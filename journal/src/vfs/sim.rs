//! [`SimFs`]: a deterministic in-memory disk for crash and fault tests.
//!
//! It logs every mutating operation ([`SimOp`]) in the order it happened, and which later sync
//! made it durable. From that log it can build the state a crash at any point could leave:
//! everything that was synced, plus any chosen subset (usually a prefix) of the operations that
//! were not, with the last kept write optionally torn (cut at any byte, the rest of its range left
//! old, zeroed or filled with garbage).
//!
//! Persistence model (deliberately pessimistic, after ALICE and CrashMonkey):
//! - a write or set_len is durable once `sync_data`/`sync_all` of the same inode follows it;
//! - a create, rename or remove is durable once `sync_dir` of the directory follows it;
//! - anything else may be lost, kept, or (when a crash state chooses so) kept out of order.
//!
//! Faults: [`SimFs::set_fault`] fails the Nth matching call, once or from then on, with any errno,
//! without performing it.

use super::{OpenMode, Vfs, VfsFile};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// One logged operation. Inodes are numbered in creation order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimOp {
    /// A new name bound to a new, empty inode.
    Create {
        /// Path of the new file.
        path: PathBuf,
        /// Its inode.
        ino: usize,
    },
    /// Bytes written.
    Write {
        /// Target inode.
        ino: usize,
        /// Byte offset.
        offset: u64,
        /// The bytes.
        data: Vec<u8>,
    },
    /// Truncate or extend.
    SetLen {
        /// Target inode.
        ino: usize,
        /// New length.
        len: u64,
    },
    /// A rename.
    Rename {
        /// Old path.
        from: PathBuf,
        /// New path.
        to: PathBuf,
    },
    /// An unlink.
    Remove {
        /// The path.
        path: PathBuf,
    },
    /// fdatasync/fsync of an inode.
    SyncData {
        /// The inode.
        ino: usize,
    },
    /// fsync of a directory.
    SyncDir {
        /// The directory.
        dir: PathBuf,
    },
}

/// Which calls a [`Fault`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultOps {
    /// Every mutating call (write, set_len, allocate, sync, create, rename, remove, sync_dir).
    Any,
    /// write_at, set_len, allocate.
    Write,
    /// sync_data, sync_all, sync_dir.
    Sync,
}

/// Fail the `nth` (1-based) matching call from now on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    /// Which calls count.
    pub ops: FaultOps,
    /// The matching call that fails first (1 = the next one).
    pub nth: u64,
    /// errno returned (e.g. `libc::EIO`, `libc::ENOSPC`).
    pub errno: i32,
    /// Fail every matching call after the first failure too.
    pub persistent: bool,
}

/// What fills the part of a torn write that did not reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TearFill {
    /// The bytes that were there before.
    Old,
    /// Zeros.
    Zeros,
    /// Pseudo-random bytes from this seed.
    Garbage(u64),
}

impl TearFill {
    /// One of the three fills, picked by a random `word` (which also seeds the garbage).
    pub fn pick(word: u64) -> TearFill {
        match word % 3 {
            0 => TearFill::Old,
            1 => TearFill::Zeros,
            _ => TearFill::Garbage(word),
        }
    }
}

/// The unit a disk writes atomically, for [`Tear::lost_sectors`].
pub const SIM_SECTOR: u64 = 512;

/// Tear one kept write: only its first `keep_bytes` bytes arrive, and of those, not the
/// 512-byte disk sectors [`Tear::lost_sectors`] names. A disk with a volatile cache may
/// persist the sectors of one write in any order, so a crash can keep a later sector
/// and lose an earlier one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tear {
    /// Index of the write in the op log.
    pub op: usize,
    /// Bytes of it that arrive.
    pub keep_bytes: usize,
    /// What the rest of its range holds.
    pub fill: TearFill,
    /// Bit `i` set: the `i`th disk sector the write touches ([`SIM_SECTOR`] bytes,
    /// aligned in the file, so the first may be partial) does not arrive either. Sectors
    /// past the 64th follow bit 63.
    pub lost_sectors: u64,
}

impl Tear {
    /// Only the first `keep_bytes` bytes of write `op` arrive.
    pub fn prefix(op: usize, keep_bytes: usize, fill: TearFill) -> Self {
        Tear {
            op,
            keep_bytes,
            fill,
            lost_sectors: 0,
        }
    }

    /// All of write `op` arrives except the sectors set in `lost_sectors`.
    pub fn scatter(op: usize, lost_sectors: u64, fill: TearFill) -> Self {
        Tear {
            op,
            keep_bytes: usize::MAX,
            fill,
            lost_sectors,
        }
    }

    /// A scatter tear of `write` losing the sectors a random `word` picks (at least one);
    /// `None` when the write touches a single sector (a prefix tear covers that).
    pub fn random_scatter(write: KeptWrite, word: u64, fill: TearFill) -> Option<Self> {
        let touched = sectors_touched(write.offset, write.len);
        (touched > 1).then(|| {
            let lost = word & (u64::MAX >> (64 - touched.min(64)));
            Tear::scatter(write.op, lost.max(1), fill)
        })
    }
}

/// A write a crash state keeps, which a [`Tear`] may cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeptWrite {
    /// Index in the op log.
    pub op: usize,
    /// File offset.
    pub offset: u64,
    /// Bytes written.
    pub len: usize,
}

/// The writes among the kept ops `keep` of `ops` that are at least `min_len` bytes long.
pub fn kept_writes(ops: &[SimOp], keep: &[usize], min_len: usize) -> Vec<KeptWrite> {
    keep.iter()
        .filter_map(|&op| match ops.get(op) {
            Some(SimOp::Write { offset, data, .. }) if data.len() >= min_len => Some(KeptWrite {
                op,
                offset: *offset,
                len: data.len(),
            }),
            _ => None,
        })
        .collect()
}

/// Every subset of `ops` (kept in their order), the empty one first: `2^len` of them,
/// so callers bound `len`. A crash may keep any subset of the unsynced operations.
pub fn every_subset(ops: &[usize]) -> impl Iterator<Item = Vec<usize>> + '_ {
    assert!(ops.len() < 32, "every_subset of {} ops", ops.len());
    (0u64..1 << ops.len()).map(move |mask| subset(ops, mask))
}

/// The subset of `ops` (kept in their order) that `mask` selects: op `i` when bit
/// `i % 64` is set. A random mask samples a random subset of any number of ops.
pub fn subset(ops: &[usize], mask: u64) -> Vec<usize> {
    ops.iter()
        .enumerate()
        .filter(|(i, _)| mask >> (i % 64) & 1 == 1)
        .map(|(_, &op)| op)
        .collect()
}

/// How many [`SIM_SECTOR`]s a write of `len` bytes at `offset` touches.
pub fn sectors_touched(offset: u64, len: usize) -> u64 {
    if len == 0 {
        return 0;
    }
    let end = offset + len as u64;
    end.div_ceil(SIM_SECTOR) - offset / SIM_SECTOR
}

#[derive(Debug, Default)]
struct State {
    inodes: Vec<Vec<u8>>,
    names: BTreeMap<PathBuf, usize>,
    dirs: BTreeSet<PathBuf>,
    log: Vec<SimOp>,
    fault: Option<Fault>,
    fault_seen: u64,
    fault_fired: bool,
    record: bool,
    /// How long `sync_data` takes before it makes the inode durable.
    sync_latency: std::time::Duration,
    /// Contents when the log started (a crash state's disk), which the log replays onto.
    base_inodes: Vec<Vec<u8>>,
    base_names: BTreeMap<PathBuf, usize>,
}

/// The simulated disk. Cloning gives another handle to the same disk.
#[derive(Debug, Clone)]
pub struct SimFs {
    state: Arc<Mutex<State>>,
}

impl Default for SimFs {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Debug)]
struct SimFile {
    state: Arc<Mutex<State>>,
    ino: usize,
    writable: bool,
}

/// A tiny deterministic generator (splitmix64) so tests and garbage fills replay from a seed.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub(crate) fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

fn parent(p: &Path) -> PathBuf {
    p.parent().map(Path::to_path_buf).unwrap_or_default()
}

fn not_found(p: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: not found", p.display()),
    )
}

/// Writes what of `data` arrives under `t`; what does not holds `t.fill`.
fn tear_into(buf: &mut Vec<u8>, offset: u64, data: &[u8], t: Tear) {
    let k = t.keep_bytes.min(data.len());
    let mut garbage = match t.fill {
        TearFill::Garbage(seed) => Some(Rng::new(seed)),
        _ => None,
    };
    // Walk the write in sector-aligned pieces, each arriving or not as a whole.
    let mut pos = 0usize;
    let mut sector = 0u32;
    while pos < data.len() {
        let at = offset + pos as u64;
        let piece = ((SIM_SECTOR - at % SIM_SECTOR) as usize).min(data.len() - pos);
        let lost_bit = t.lost_sectors >> sector.min(63) & 1 == 1;
        // A piece straddling the prefix cut arrives up to the cut.
        let arrives = if lost_bit {
            0
        } else {
            k.saturating_sub(pos).min(piece)
        };
        write_into(buf, at, &data[pos..pos + arrives]);
        let rest = piece - arrives;
        let rest_off = at + arrives as u64;
        match t.fill {
            TearFill::Old => {}
            TearFill::Zeros => write_into(buf, rest_off, &vec![0; rest]),
            TearFill::Garbage(_) => {
                let mut g = vec![0; rest];
                if let Some(r) = garbage.as_mut() {
                    r.fill(&mut g);
                }
                write_into(buf, rest_off, &g);
            }
        }
        pos += piece;
        sector += 1;
    }
}

fn write_into(buf: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let off = usize::try_from(offset).unwrap_or(usize::MAX);
    let end = off.saturating_add(data.len());
    if buf.len() < end {
        buf.resize(end, 0);
    }
    buf[off..end].copy_from_slice(data);
}

impl State {
    /// Count a call against the configured fault; `Err` means fail it without effect.
    fn check_fault(&mut self, kind: FaultOps) -> io::Result<()> {
        let Some(f) = self.fault else { return Ok(()) };
        if f.ops != FaultOps::Any && f.ops != kind {
            return Ok(());
        }
        if self.fault_fired {
            if f.persistent {
                return Err(io::Error::from_raw_os_error(f.errno));
            }
            return Ok(());
        }
        self.fault_seen += 1;
        if self.fault_seen >= f.nth {
            self.fault_fired = true;
            return Err(io::Error::from_raw_os_error(f.errno));
        }
        Ok(())
    }

    fn log(&mut self, op: SimOp) {
        if self.record {
            self.log.push(op);
        }
    }
}

impl SimFs {
    /// An empty disk that records operations.
    pub fn new() -> Self {
        SimFs {
            state: Arc::new(Mutex::new(State {
                record: true,
                ..State::default()
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not hide the disk from the assertions that follow.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Number of operations logged so far (a crash point is any value in `0..=op_count()`).
    pub fn op_count(&self) -> usize {
        self.lock().log.len()
    }

    /// A copy of the operation log.
    pub fn ops(&self) -> Vec<SimOp> {
        self.lock().log.clone()
    }

    /// Install (or clear) a fault. Counting starts now.
    pub fn set_fault(&self, fault: Option<Fault>) {
        let mut s = self.lock();
        s.fault = fault;
        s.fault_seen = 0;
        s.fault_fired = false;
    }

    /// Makes every later `sync_data` on this disk take `d` before it takes effect, as a
    /// real disk's flush does: other threads' writes pile up unsynced meanwhile (and
    /// this flush covers them). Crash states built from this disk sync at once again.
    pub fn set_sync_latency(&self, d: std::time::Duration) {
        self.lock().sync_latency = d;
    }

    /// Whether the installed fault has fired.
    pub fn fault_fired(&self) -> bool {
        self.lock().fault_fired
    }

    /// Current contents of a file, if the name exists.
    pub fn read_file(&self, path: &Path) -> Option<Vec<u8>> {
        let s = self.lock();
        s.names.get(path).map(|&i| s.inodes[i].clone())
    }

    /// Overwrite bytes of a file in place, outside the log (models media corruption).
    pub fn poke(&self, path: &Path, offset: u64, bytes: &[u8]) -> bool {
        let mut s = self.lock();
        let Some(&ino) = s.names.get(path) else {
            return false;
        };
        write_into(&mut s.inodes[ino], offset, bytes);
        true
    }

    /// XOR one byte of a file in place, outside the log.
    pub fn flip(&self, path: &Path, offset: u64, mask: u8) -> bool {
        let mut s = self.lock();
        let Some(&ino) = s.names.get(path) else {
            return false;
        };
        let Ok(off) = usize::try_from(offset) else {
            return false;
        };
        match s.inodes[ino].get_mut(off) {
            Some(b) => {
                *b ^= mask;
                true
            }
            None => false,
        }
    }

    /// A 64-bit digest of what the disk holds now (directories, names, file contents),
    /// so a crash test can tell crash states that leave the same bytes apart from new
    /// ones. Two CRC32Cs with different seeds: cheap enough per state, and a false match
    /// (which would skip one state) is a 2^-64 event.
    pub fn fingerprint(&self) -> u64 {
        let s = self.lock();
        let (mut a, mut b) = (0u32, 0x9e37_79b9u32);
        let mut add = |bytes: &[u8]| {
            let len = (bytes.len() as u64).to_le_bytes();
            a = crc32c::crc32c_append(crc32c::crc32c_append(a, &len), bytes);
            b = crc32c::crc32c_append(crc32c::crc32c_append(b, bytes), &len);
        };
        for d in &s.dirs {
            add(d.as_os_str().as_encoded_bytes());
        }
        for (path, &ino) in &s.names {
            add(path.as_os_str().as_encoded_bytes());
            add(s.inodes.get(ino).map_or(&[][..], Vec::as_slice));
        }
        (u64::from(a) << 32) | u64::from(b)
    }

    /// Paths of all files.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.lock().names.keys().cloned().collect()
    }

    /// For the ops in `0..at`, whether each is durable at a crash at `at`.
    fn durable_flags(log: &[SimOp], at: usize) -> Vec<bool> {
        let mut synced_inodes = HashSet::new();
        let mut synced_dirs = HashSet::new();
        let mut out = vec![false; at];
        for i in (0..at).rev() {
            out[i] = match &log[i] {
                SimOp::SyncData { ino } => {
                    synced_inodes.insert(*ino);
                    true
                }
                SimOp::SyncDir { dir } => {
                    synced_dirs.insert(dir.clone());
                    true
                }
                SimOp::Write { ino, .. } | SimOp::SetLen { ino, .. } => synced_inodes.contains(ino),
                SimOp::Create { path, .. } | SimOp::Remove { path } => {
                    synced_dirs.contains(&parent(path))
                }
                SimOp::Rename { from, to } => {
                    synced_dirs.contains(&parent(to)) && synced_dirs.contains(&parent(from))
                }
            };
        }
        out
    }

    /// Indices of the operations before `at` that a crash at `at` may lose, in log order.
    pub fn unsynced_at(&self, at: usize) -> Vec<usize> {
        let s = self.lock();
        let at = at.min(s.log.len());
        Self::durable_flags(&s.log, at)
            .iter()
            .enumerate()
            .filter(|(_, d)| !**d)
            .map(|(i, _)| i)
            .collect()
    }

    /// The disk after a crash at `at`: every durable op before `at`, plus the unsynced ops listed
    /// in `keep`, in log order, with `tear` applied. The result has an empty log (all durable)
    /// and records from then on.
    pub fn crash_state(&self, at: usize, keep: &[usize], tear: Option<Tear>) -> SimFs {
        let s = self.lock();
        let at = at.min(s.log.len());
        let durable = Self::durable_flags(&s.log, at);
        let keep: HashSet<usize> = keep.iter().copied().collect();
        let mut inodes = s.base_inodes.clone();
        let mut names = s.base_names.clone();
        for (i, op) in s.log[..at].iter().enumerate() {
            if let SimOp::Create { ino, .. } = op {
                if inodes.len() <= *ino {
                    inodes.resize(*ino + 1, Vec::new());
                }
            }
            if !(durable[i] || keep.contains(&i)) {
                continue;
            }
            match op {
                SimOp::Create { path, ino } => {
                    names.insert(path.clone(), *ino);
                }
                SimOp::Write { ino, offset, data } => {
                    if inodes.len() <= *ino {
                        inodes.resize(*ino + 1, Vec::new());
                    }
                    let buf = &mut inodes[*ino];
                    match tear {
                        Some(t) if t.op == i => tear_into(buf, *offset, data, t),
                        _ => write_into(buf, *offset, data),
                    }
                }
                SimOp::SetLen { ino, len } => {
                    if inodes.len() <= *ino {
                        inodes.resize(*ino + 1, Vec::new());
                    }
                    inodes[*ino].resize(usize::try_from(*len).unwrap_or(usize::MAX), 0);
                }
                SimOp::Rename { from, to } => {
                    if let Some(ino) = names.remove(from) {
                        names.insert(to.clone(), ino);
                    }
                }
                SimOp::Remove { path } => {
                    names.remove(path);
                }
                SimOp::SyncData { .. } | SimOp::SyncDir { .. } => {}
            }
        }
        SimFs {
            state: Arc::new(Mutex::new(State {
                base_inodes: inodes.clone(),
                base_names: names.clone(),
                inodes,
                names,
                dirs: s.dirs.clone(),
                record: true,
                ..State::default()
            })),
        }
    }
}

impl Vfs for SimFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn VfsFile>> {
        let mut s = self.lock();
        let existing = s.names.get(path).copied();
        let ino = match (mode, existing) {
            (OpenMode::Read | OpenMode::ReadWrite | OpenMode::ReadWriteDirect, Some(i)) => i,
            (OpenMode::Read | OpenMode::ReadWrite | OpenMode::ReadWriteDirect, None) => {
                return Err(not_found(path))
            }
            (OpenMode::CreateNew, Some(_)) => {
                return Err(io::Error::new(io::ErrorKind::AlreadyExists, "exists"))
            }
            (OpenMode::CreateTruncate, Some(i)) => {
                s.check_fault(FaultOps::Write)?;
                s.inodes[i].clear();
                s.log(SimOp::SetLen { ino: i, len: 0 });
                i
            }
            (OpenMode::CreateNew | OpenMode::CreateTruncate, None) => {
                if !s.dirs.contains(&parent(path)) {
                    return Err(not_found(&parent(path)));
                }
                s.check_fault(FaultOps::Any)?;
                let i = s.inodes.len();
                s.inodes.push(Vec::new());
                s.names.insert(path.to_path_buf(), i);
                s.log(SimOp::Create {
                    path: path.to_path_buf(),
                    ino: i,
                });
                i
            }
        };
        Ok(Box::new(SimFile {
            state: self.state.clone(),
            ino,
            writable: mode != OpenMode::Read,
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.lock();
        if !s.names.contains_key(from) {
            return Err(not_found(from));
        }
        s.check_fault(FaultOps::Any)?;
        if let Some(ino) = s.names.remove(from) {
            s.names.insert(to.to_path_buf(), ino);
        }
        s.log(SimOp::Rename {
            from: from.to_path_buf(),
            to: to.to_path_buf(),
        });
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut s = self.lock();
        if !s.names.contains_key(path) {
            return Err(not_found(path));
        }
        s.check_fault(FaultOps::Any)?;
        s.names.remove(path);
        s.log(SimOp::Remove {
            path: path.to_path_buf(),
        });
        Ok(())
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let s = self.lock();
        if !s.dirs.contains(dir) {
            return Err(not_found(dir));
        }
        Ok(s.names
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
            .collect())
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.lock();
        // Directories are modelled as always durable: the journal never depends on creating one.
        for a in dir.ancestors() {
            s.dirs.insert(a.to_path_buf());
        }
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.lock();
        if !s.dirs.contains(dir) {
            return Err(not_found(dir));
        }
        s.check_fault(FaultOps::Sync)?;
        s.log(SimOp::SyncDir {
            dir: dir.to_path_buf(),
        });
        Ok(())
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        let s = self.lock();
        Ok(s.names.contains_key(path) || s.dirs.contains(path))
    }
}

impl SimFile {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn check_writable(&self) -> io::Result<()> {
        if self.writable {
            Ok(())
        } else {
            Err(io::Error::from_raw_os_error(libc::EBADF))
        }
    }
}

impl VfsFile for SimFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let s = self.lock();
        let data = &s.inodes[self.ino];
        let Ok(off) = usize::try_from(offset) else {
            return Ok(0);
        };
        if off >= data.len() {
            return Ok(0);
        }
        let n = buf.len().min(data.len() - off);
        buf[..n].copy_from_slice(&data[off..off + n]);
        Ok(n)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.check_writable()?;
        let mut s = self.lock();
        s.check_fault(FaultOps::Write)?;
        write_into(&mut s.inodes[self.ino], offset, buf);
        let ino = self.ino;
        s.log(SimOp::Write {
            ino,
            offset,
            data: buf.to_vec(),
        });
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.lock().inodes[self.ino].len() as u64)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.check_writable()?;
        let mut s = self.lock();
        s.check_fault(FaultOps::Write)?;
        let l = usize::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
        s.inodes[self.ino].resize(l, 0);
        let ino = self.ino;
        s.log(SimOp::SetLen { ino, len });
        Ok(())
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        if self.len()? < len {
            self.set_len(len)?;
        }
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        // The flush takes a while (see `set_sync_latency`); it covers what was written
        // before it reached the disk, writes other threads issue meanwhile included.
        let latency = self.lock().sync_latency;
        if !latency.is_zero() {
            std::thread::sleep(latency);
        }
        let mut s = self.lock();
        s.check_fault(FaultOps::Sync)?;
        let ino = self.ino;
        s.log(SimOp::SyncData { ino });
        Ok(())
    }

    fn sync_all(&self) -> io::Result<()> {
        self.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    #[test]
    fn unsynced_writes_are_lost_synced_kept() {
        let fs = SimFs::new();
        fs.create_dir_all(&p("/d")).unwrap();
        let f = fs.open(&p("/d/a"), OpenMode::CreateNew).unwrap();
        fs.sync_dir(&p("/d")).unwrap();
        f.write_at(b"hello", 0).unwrap();
        f.sync_data().unwrap();
        f.write_at(b"HE", 0).unwrap();
        let at = fs.op_count();
        let un = fs.unsynced_at(at);
        assert_eq!(un.len(), 1);
        let lost = fs.crash_state(at, &[], None);
        assert_eq!(lost.read_file(&p("/d/a")).unwrap(), b"hello");
        let kept = fs.crash_state(at, &un, None);
        assert_eq!(kept.read_file(&p("/d/a")).unwrap(), b"HEllo");
        let torn = fs.crash_state(at, &un, Some(Tear::prefix(un[0], 1, TearFill::Zeros)));
        assert_eq!(torn.read_file(&p("/d/a")).unwrap(), b"H\0llo");
    }

    #[test]
    fn a_scattered_tear_loses_exactly_the_named_sectors() {
        let fs = SimFs::new();
        fs.create_dir_all(&p("/d")).unwrap();
        let f = fs.open(&p("/d/f"), OpenMode::CreateNew).unwrap();
        f.write_at(&vec![1u8; 2048], 0).unwrap();
        f.sync_data().unwrap();
        fs.sync_dir(&p("/d")).unwrap();
        let start = fs.op_count();
        // Starts mid-sector: touches sectors 0 (part), 1, 2 and 3 (part).
        f.write_at(&vec![2u8; 1400], 100).unwrap();
        assert_eq!(sectors_touched(100, 1400), 3);
        let w = start;
        let keep = [w];
        let old = |c: &SimFs| c.read_file(&p("/d/f")).unwrap();
        // Lose the middle sector only: the bytes before and after it are new.
        let c = fs.crash_state(w + 1, &keep, Some(Tear::scatter(w, 0b010, TearFill::Old)));
        let got = old(&c);
        assert!(got[..100].iter().all(|&b| b == 1));
        assert!(got[100..512].iter().all(|&b| b == 2));
        assert!(got[512..1024].iter().all(|&b| b == 1));
        assert!(got[1024..1500].iter().all(|&b| b == 2));
        assert!(got[1500..].iter().all(|&b| b == 1));
        // Zeros fill the lost sectors; a prefix cut and a lost sector combine.
        let t = Tear {
            op: w,
            keep_bytes: 1000,
            fill: TearFill::Zeros,
            lost_sectors: 0b001,
        };
        let got = old(&fs.crash_state(w + 1, &keep, Some(t)));
        assert!(got[100..512].iter().all(|&b| b == 0));
        assert!(got[512..1000 + 100].iter().all(|&b| b == 2));
        assert!(got[1100..1500].iter().all(|&b| b == 0));
        // No lost sector and the whole length: the write arrives whole.
        let got = old(&fs.crash_state(w + 1, &keep, Some(Tear::scatter(w, 0, TearFill::Zeros))));
        assert!(got[100..1500].iter().all(|&b| b == 2));
    }

    #[test]
    fn every_subset_is_listed_once_in_order() {
        let subsets: Vec<Vec<usize>> = every_subset(&[3, 5, 9]).collect();
        assert_eq!(subsets.len(), 8);
        assert_eq!(subsets[0], Vec::<usize>::new());
        let set: HashSet<Vec<usize>> = subsets.iter().cloned().collect();
        assert_eq!(set.len(), 8);
        assert!(subsets.iter().all(|s| s.windows(2).all(|w| w[0] < w[1])));
        assert!(set.contains(&vec![3, 9]) && set.contains(&vec![5]));
    }

    #[test]
    fn fingerprints_tell_states_apart() {
        let fs = SimFs::new();
        fs.create_dir_all(&p("/d")).unwrap();
        let f = fs.open(&p("/d/a"), OpenMode::CreateNew).unwrap();
        fs.sync_dir(&p("/d")).unwrap();
        f.write_at(b"hello", 0).unwrap();
        f.sync_data().unwrap();
        let before = fs.fingerprint();
        assert_eq!(
            fs.crash_state(fs.op_count(), &[], None).fingerprint(),
            before
        );
        // Same bytes under another name, other bytes, one byte more: all differ.
        let g = fs.open(&p("/d/b"), OpenMode::CreateNew).unwrap();
        let with_b = fs.fingerprint();
        assert_ne!(with_b, before);
        g.write_at(b"", 0).unwrap();
        assert_eq!(fs.fingerprint(), with_b);
        g.write_at(b"\0", 0).unwrap();
        assert_ne!(fs.fingerprint(), with_b);
        f.write_at(b"hellO", 0).unwrap();
        let changed = fs.fingerprint();
        f.write_at(b"hello", 0).unwrap();
        assert_ne!(changed, fs.fingerprint());
        // The unsynced writes are what a crash drops.
        let at = fs.op_count();
        assert_ne!(
            fs.crash_state(at, &[], None).fingerprint(),
            fs.fingerprint()
        );
    }

    #[test]
    fn names_need_dir_sync() {
        let fs = SimFs::new();
        fs.create_dir_all(&p("/d")).unwrap();
        let f = fs.open(&p("/d/a"), OpenMode::CreateNew).unwrap();
        f.write_at(b"x", 0).unwrap();
        f.sync_data().unwrap();
        fs.rename(&p("/d/a"), &p("/d/b")).unwrap();
        let at = fs.op_count();
        let c = fs.crash_state(at, &[], None);
        assert!(c.read_file(&p("/d/a")).is_none());
        assert!(c.read_file(&p("/d/b")).is_none());
        fs.sync_dir(&p("/d")).unwrap();
        let c = fs.crash_state(fs.op_count(), &[], None);
        assert_eq!(c.read_file(&p("/d/b")).unwrap(), b"x");
    }

    #[test]
    fn fault_fires_once_or_persistently() {
        let fs = SimFs::new();
        fs.create_dir_all(&p("/d")).unwrap();
        let f = fs.open(&p("/d/a"), OpenMode::CreateNew).unwrap();
        fs.set_fault(Some(Fault {
            ops: FaultOps::Sync,
            nth: 2,
            errno: libc::EIO,
            persistent: false,
        }));
        assert!(f.sync_data().is_ok());
        assert_eq!(f.sync_data().unwrap_err().raw_os_error(), Some(libc::EIO));
        assert!(f.sync_data().is_ok());
        fs.set_fault(Some(Fault {
            ops: FaultOps::Write,
            nth: 1,
            errno: libc::ENOSPC,
            persistent: true,
        }));
        assert!(f.write_at(b"a", 0).is_err());
        assert!(f.write_at(b"a", 0).is_err());
        assert!(f.sync_data().is_ok());
        assert_eq!(fs.read_file(&p("/d/a")).unwrap(), b"");
    }
}
