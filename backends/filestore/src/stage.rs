//! Staged large writes: the data of a write of at least [`STAGE_MIN_BYTES`] goes once to
//! disk, into a file of `<data>/staging/` that is synced (with its directory entry)
//! before the journal entry, which then carries only a reference to it
//! ([`ostore_os::journaling::Staged`]). Apply, and replay after a crash, link the staged
//! range into the object by reflink (FICLONERANGE), which is idempotent like a write,
//! so the data is never written a second time. Only where reflink works (XFS with
//! reflink, btrfs); elsewhere large writes stay in the journal.
//!
//! What this module owns: the staging directory, staged files and their lifetime. A
//! staged file is named by its slot (16 hex digits) and keeps that name for good: a
//! slot is in use from its stage until a checkpoint covers the transaction that linked
//! it (from then on replay never reads it again), then free, and the next stage
//! overwrites the free slot's file in place (up to [`POOL_FILES`] free slots of at most
//! [`POOL_FILE_MAX`] bytes are kept; others are removed). Reusing a file under its own
//! name makes a staged write one `fdatasync`: the name of a reused slot is already
//! durable, so neither a rename nor a directory fsync is needed (on btrfs a rename
//! followed by a directory fsync was a log-tree commit per staged write). Only a new
//! slot's file, and the directory once at mount (for names a killed process may have
//! left only in the page cache), are fsynced with their directory. Files found at
//! mount are needed only by the replay that follows, and become free slots at the
//! first checkpoint after it. The objects keep the old blocks of a reused file:
//! reflinked extents are copy-on-write. Staged data is written with `O_DIRECT` from a
//! reused aligned buffer where the filesystem allows it (then `fdatasync`): the
//! page-cache copy and the first touch of new cache pages were most of a staged write's
//! time, and only a replay reads the file again. The directory sits beside `current/`,
//! not in it, so a btrfs rollback of `current/` to its last snapshot keeps the staged
//! data the journal after that snapshot refers to.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use ostore_journal::aligned::{AlignedBuf, ALIGN};

use crate::fsback::read_full;

/// The staging directory, under the data directory.
pub const STAGE_DIR: &str = "staging";
/// The default smallest write that is staged rather than journaled: below it, the
/// second sync of a staged write (its file, then the journal) costs more than writing
/// the bytes twice.
pub const STAGE_MIN_BYTES: u64 = 1 << 20;
/// Released staged files kept for reuse.
pub const POOL_FILES: usize = 64;
/// Larger released files are removed rather than kept (a kept file may come to hold
/// the only reference to its blocks once the objects sharing them are gone: the pool
/// holds at most `POOL_FILES * POOL_FILE_MAX` = 256 MiB of such space).
pub const POOL_FILE_MAX: u64 = 4 << 20;

/// The staging directory of a mounted store.
#[derive(Debug)]
pub(crate) struct StageArea {
    dir: PathBuf,
    dir_file: File,
    slots: Mutex<Slots>,
    /// Aligned buffers for direct writes, kept so that a staged write does not fault in
    /// fresh pages (on this VM ~2.5 µs a page: 2.5 ms per 4 MiB).
    bufs: Mutex<Vec<AlignedBuf>>,
    /// Cleared once the filesystem refuses `O_DIRECT`; staged writes then go through
    /// the page cache.
    direct: AtomicBool,
}

/// Which slots are in use and which are free.
#[derive(Debug, Default)]
struct Slots {
    /// (seq, slot) of staged files linked by applied transactions not yet checkpointed.
    linked: Vec<(u64, u64)>,
    /// Slots found at mount: a replay may read them until the first checkpoint.
    leftovers: Vec<u64>,
    /// Slots whose file exists under a durable name and no replay needs.
    free: Vec<u64>,
    /// The next new slot.
    next: u64,
}

/// Aligned buffers kept for reuse by staged writes.
const BUFS_KEPT: usize = 8;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn parse_id(name: &str) -> Option<u64> {
    (name.len() == 16)
        .then(|| u64::from_str_radix(name, 16).ok())
        .flatten()
}

impl StageArea {
    /// Opens (making it if needed) the staging directory of the store in `data`.
    pub(crate) fn open(data: &Path) -> io::Result<StageArea> {
        let dir = data.join(STAGE_DIR);
        if !dir.exists() {
            std::fs::create_dir(&dir)?;
            crate::sys::open_dir(data)?.sync_all()?;
        }
        let mut leftovers = Vec::new();
        for e in std::fs::read_dir(&dir)? {
            let e = e?;
            let name = e.file_name();
            let name = name.to_str().unwrap_or("");
            match parse_id(name) {
                Some(id) => leftovers.push(id),
                // Kept for reuse by an older version (`f` + 16 hex digits): no journal
                // record names them.
                None if name.strip_prefix('f').and_then(parse_id).is_some() => {
                    std::fs::remove_file(e.path())?;
                }
                None => tracing::warn!(name, "unknown file in staging/"),
            }
        }
        let dir_file = crate::sys::open_dir(&dir)?;
        // Free slots are reused without a directory sync, so every name found here must
        // be durable (a killed process may have left one only in the page cache).
        dir_file.sync_all()?;
        let next = leftovers.iter().max().map_or(0, |k| k + 1);
        Ok(StageArea {
            dir_file,
            dir,
            slots: Mutex::new(Slots {
                leftovers,
                next,
                ..Slots::default()
            }),
            bufs: Mutex::new(Vec::new()),
            direct: AtomicBool::new(true),
        })
    }

    pub(crate) fn path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id:016x}"))
    }

    /// Writes `data` to a staged file (a free slot's, else a new one) and makes it and
    /// its name durable.
    pub(crate) fn stage(&self, data: &[u8]) -> io::Result<u64> {
        let (id, reused) = {
            let mut s = lock(&self.slots);
            match s.free.pop() {
                Some(id) => (id, true),
                None => {
                    let id = s.next;
                    s.next = id
                        .checked_add(1)
                        .ok_or_else(|| io::Error::other("staged slot numbers are used up"))?;
                    (id, false)
                }
            }
        };
        let r = self.write_slot(id, reused, data);
        if r.is_err() && reused {
            // Its file may now hold anything; nothing names it, so it stays free.
            lock(&self.slots).free.push(id);
        }
        r.map(|()| id)
    }

    fn write_slot(&self, id: u64, reused: bool, data: &[u8]) -> io::Result<()> {
        let p = self.path(id);
        let open = |direct: bool| {
            let mut o = std::fs::OpenOptions::new();
            o.write(true).create(true);
            if direct {
                o.custom_flags(libc::O_DIRECT);
            }
            o.open(&p)
        };
        // Direct I/O: the page-cache copy and the first touch of new cache pages were
        // most of a staged write's time; the data is read again only by a replay.
        let mut wrote = false;
        let mut f = None;
        if self.direct.load(Ordering::Relaxed) {
            match open(true) {
                Ok(df) => {
                    let mut buf = lock(&self.bufs).pop().unwrap_or_default();
                    buf.resize(0, 0);
                    buf.extend_from_slice(data);
                    buf.resize(data.len().next_multiple_of(ALIGN), 0);
                    let r = df.write_all_at(&buf, 0);
                    let mut bufs = lock(&self.bufs);
                    if bufs.len() < BUFS_KEPT && buf.len() as u64 <= POOL_FILE_MAX {
                        bufs.push(buf);
                    }
                    drop(bufs);
                    match r {
                        Ok(()) => wrote = true,
                        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                            self.direct.store(false, Ordering::Relaxed);
                        }
                        Err(e) => return Err(e),
                    }
                    f = Some(df);
                }
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    self.direct.store(false, Ordering::Relaxed);
                }
                Err(e) => return Err(e),
            }
        }
        let f = match (wrote, f) {
            (true, Some(f)) => f,
            _ => {
                let f = open(false)?;
                f.write_all_at(data, 0)?;
                f
            }
        };
        // Padding to the block size, or a longer reused file, leaves bytes past the data.
        if f.metadata()?.len() != data.len() as u64 {
            f.set_len(data.len() as u64)?;
        }
        f.sync_data()?;
        if !reused {
            self.dir_file.sync_all()?;
        }
        Ok(())
    }

    /// Opens a staged file for reading.
    pub(crate) fn open_staged(&self, id: u64) -> io::Result<File> {
        File::open(self.path(id))
    }

    /// Reads a whole staged file, which must hold exactly `len` bytes.
    pub(crate) fn read(&self, id: u64, len: u64) -> io::Result<Vec<u8>> {
        let f = self.open_staged(id)?;
        let have = f.metadata()?.len();
        if have != len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "staged file {} holds {have} bytes, its journal record {len}",
                    self.path(id).display()
                ),
            ));
        }
        let n = usize::try_from(len).map_err(|_| io::Error::other("staged file too large"))?;
        let mut buf = vec![0u8; n];
        if read_full(&f, &mut buf, 0)? != n {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("staged file {} is short", self.path(id).display()),
            ));
        }
        Ok(buf)
    }

    /// Notes that the transaction at `seq` linked staged file `id`.
    pub(crate) fn linked(&self, seq: u64, id: u64) {
        lock(&self.slots).linked.push((seq, id));
    }

    /// After a durable checkpoint at `seq`: frees the slots no replay can read again
    /// (linked at or before `seq`, and every slot found at mount), keeping their files
    /// for reuse up to [`POOL_FILES`] of at most [`POOL_FILE_MAX`] bytes and removing
    /// the others.
    pub(crate) fn release(&self, seq: u64) -> io::Result<()> {
        let ids = {
            let mut s = lock(&self.slots);
            let mut ids = std::mem::take(&mut s.leftovers);
            s.linked.retain(|&(q, id)| {
                if q <= seq {
                    ids.push(id);
                }
                q > seq
            });
            ids
        };
        // Sizes are read without the lock: stages take it for every large write.
        let sizes: Vec<(u64, bool)> = ids
            .into_iter()
            .map(|id| {
                let small =
                    std::fs::metadata(self.path(id)).is_ok_and(|m| m.len() <= POOL_FILE_MAX);
                (id, small)
            })
            .collect();
        let mut remove = Vec::new();
        {
            let mut s = lock(&self.slots);
            for (id, small) in sizes {
                if small && s.free.len() < POOL_FILES {
                    s.free.push(id);
                } else {
                    remove.push(id);
                }
            }
        }
        // No sync: a removal lost in a crash leaves a file that the next mount finds
        // as a leftover, which no replay reads.
        for id in remove {
            match std::fs::remove_file(self.path(id)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Whether reflink works in `dir`: clones a one-block file into another.
pub(crate) fn reflink_works(dir: &Path, block: u64) -> bool {
    let probe = || -> io::Result<()> {
        let (a, b) = (dir.join(".probe.a"), dir.join(".probe.b"));
        let _ = std::fs::remove_file(&a);
        let _ = std::fs::remove_file(&b);
        let fa = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&a)?;
        fa.write_all_at(&vec![1u8; block as usize], 0)?;
        let fb = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&b)?;
        let r = crate::sys::ficlone(&fb, &fa);
        let _ = std::fs::remove_file(&a);
        let _ = std::fs::remove_file(&b);
        r
    };
    probe().is_ok()
}
