//! Applying transactions to files, and making their replay exactly-once in effect.
//!
//! With snapshot checkpoints (btrfs, ZFS) mount rolls `current/` back to the last
//! checkpoint, so replay starts from exactly that state and every op simply applies.
//!
//! Without snapshots (ext4, XFS) the files may hold any part of what was applied after
//! the last checkpoint, and replay re-applies all of it. Three mechanisms make that
//! converge to the state of a single apply:
//!
//! 1. **Transaction markers** in the kv layer, keyed by position (seq, transaction
//!    index): `S` = "passed the state checks and started", `R` = "rejected" (with its
//!    errno). A replayed transaction with `R` is rejected again without looking at the
//!    state; one with `S` skips the checks (the state may already hold its own effects
//!    or later ones, which could fool them) and applies in replay mode; one with
//!    neither is new and is checked as usual. `R` is written with a synced commit
//!    before anything later happens. `S` is synced when the transaction contains an op
//!    that can change a later check's outcome (remove, clone, rename, collection ops):
//!    RocksDB's WAL is sequential, so that sync also makes every earlier marker durable,
//!    and a lost unsynced `S` therefore implies no such op ran after it, so the checks
//!    see what they saw the first time.
//! 2. **Replay guards** (Ceph's `user.cephos.seq`): the position of the last
//!    non-idempotent op applied to an object (clone, clone_range, rename) or collection
//!    (mkcoll, split, merge), with an in-progress flag, in the `user.ostore.g` xattr of
//!    the file or directory. Setting one is a barrier: data fsync, kv sync, set, fsync
//!    (collection guards start with syncfs). In replay mode an op is skipped when its
//!    object's guard is at or past it, or any of its collections' guard is past it.
//! 3. **Idempotent op forms**: writes, zeroes, truncates, attrs and omap sets are
//!    re-applied as they are; object numbers and temp-file names derive from the op's
//!    position, so a redone op makes the same names; a rename whose destination says
//!    "done" removes a stale copy of its source (as Ceph's `out_rm_src`).

use std::cell::Cell;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use ostore_kv::{KeyValueDB, KvRead, WriteBatch};
use ostore_os::keys::object_key;
use ostore_os::transaction::COLL_HINT_EXPECTED_NUM_OBJECTS;
use ostore_os::{precheck, CollectionId, Error, ErrorKind, ObjectId, Op, Result, Transaction};

use crate::index::{dir_path, CollIndex};
use crate::names::{self, Guard, Pos};
use crate::xattr;
use crate::{
    attr_xattr_name, csum_key, extent_crc, fsback, ioe, kind_from_errno, kve, okey, open_ro,
    open_rw, oprefix_range, read_birth, read_guard, read_onum, sys, zero_extent_crc, Mounted, Onum,
    CSUM_EXTENT, K_ATTR, K_CSUM, K_HEADER, K_OID, K_OMAP, K_REJECTED, K_STARTED, XA_ATTR, XA_BIRTH,
    XA_BITS, XA_GUARD, XA_OID, XA_ONUM,
};

thread_local! {
    static TXN_INDEX: Cell<(u64, u32)> = const { Cell::new((0, 0)) };
}

/// The index of a transaction inside its journal entry. The driver applies the
/// transactions of one entry in order, one after the other, on one thread (an apply
/// worker, or the mounting thread during replay), so counting calls per seq on the
/// calling thread numbers them.
pub fn next_txn_index(seq: u64) -> u32 {
    TXN_INDEX.with(|c| {
        let (s, i) = c.get();
        let i = if s == seq { i + 1 } else { 0 };
        c.set((seq, i));
        i
    })
}

pub(crate) fn reset_txn_index() {
    TXN_INDEX.with(|c| c.set((0, 0)));
}

fn marker_key(p: u8, pos: Pos) -> Vec<u8> {
    let mut k = vec![p];
    k.extend_from_slice(&pos.seq.to_be_bytes());
    k.extend_from_slice(&pos.txn.to_be_bytes());
    k
}

/// Ops after which a replayed transaction's state checks could decide differently.
fn changes_later_checks(op: &Op) -> bool {
    matches!(
        op,
        Op::Remove { .. }
            | Op::Clone { .. }
            | Op::CloneRange { .. }
            | Op::CloneRange2 { .. }
            | Op::MkColl { .. }
            | Op::RmColl { .. }
            | Op::SplitCollection { .. }
            | Op::SplitCollection2 { .. }
            | Op::MergeCollection { .. }
            | Op::CollMoveRename { .. }
            | Op::TryRename { .. }
    )
}

fn is_rejection(k: ErrorKind) -> bool {
    matches!(
        k,
        ErrorKind::NotFound
            | ErrorKind::Exists
            | ErrorKind::NotEmpty
            | ErrorKind::NoData
            | ErrorKind::InvalidArgument
            | ErrorKind::TooBig
    )
}

fn spillable(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::E2BIG | libc::ENOSPC | libc::ERANGE | libc::EDQUOT)
    )
}

/// What a range of an object's file holds after an op, for its checksums.
#[derive(Debug)]
enum Content<'a> {
    /// Read it back from the file.
    Unknown,
    Zeroed,
    /// These bytes from the range's start; `before` holds edge extents as they were
    /// before the write (from [`Mounted::damaged_edges`]).
    Written {
        data: &'a [u8],
        before: Vec<(u64, Vec<u8>)>,
    },
}

/// What [`Mounted::damaged_edges`] read: each edge extent an op keeps in part, as its
/// bytes were before the op, and which of them already failed their checksum.
#[derive(Debug, Default)]
struct Edges {
    bad: Vec<u64>,
    before: Vec<(u64, Vec<u8>)>,
}

impl Mounted {
    /// A fresh object number: (mount epoch, counter). Never derived from the op's
    /// position: a replay that re-creates an object (a stale copy later removed again)
    /// must not share kv data with the object the first apply made, which may live on
    /// under another name.
    pub(crate) fn new_onum(&mut self) -> Onum {
        self.onum_counter += 1;
        let mut o = [0u8; 16];
        o[..8].copy_from_slice(&self.epoch.to_be_bytes());
        o[8..].copy_from_slice(&self.onum_counter.to_be_bytes());
        o
    }

    fn guarded(&self) -> bool {
        self.snaps.is_none()
    }

    /// Applies one transaction at `pos` (op index 0).
    pub(crate) fn apply_txn(&mut self, pos: Pos, t: &Transaction) -> Result<Result<()>> {
        let guarded = self.guarded();
        let mut replay = false;
        if guarded {
            if let Some(v) = self.kv.get(&marker_key(K_REJECTED, pos)).map_err(kve)? {
                let errno = v
                    .get(..4)
                    .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .unwrap_or(5);
                let msg = String::from_utf8_lossy(v.get(4..).unwrap_or(&[])).into_owned();
                return Ok(Err(Error::new(kind_from_errno(errno), msg)));
            }
            replay = self
                .kv
                .get(&marker_key(K_STARTED, pos))
                .map_err(kve)?
                .is_some();
        }
        if !replay {
            match precheck(t, &*self) {
                Ok(()) => {}
                Err(e) if is_rejection(e.kind()) => {
                    if guarded {
                        let mut v = e.kind().errno().to_le_bytes().to_vec();
                        v.extend_from_slice(e.message().as_bytes());
                        let mut b = WriteBatch::new();
                        b.set(marker_key(K_REJECTED, pos), v);
                        self.commit(&b, true)?;
                    }
                    return Ok(Err(e));
                }
                Err(e) => return Err(e),
            }
            if guarded {
                let mut b = WriteBatch::new();
                b.set(marker_key(K_STARTED, pos), Vec::new());
                self.commit(&b, t.ops().iter().any(changes_later_checks))?;
            }
        }
        for (i, op) in t.ops().iter().enumerate() {
            let p = Pos {
                op: i as u32,
                ..pos
            };
            crate::failpoint(&self.data)?;
            self.apply_op(p, op, replay)
                .map_err(|e| e.context(format!("seq {} op {i} ({})", pos.seq, op.code().name())))?;
        }
        Ok(Ok(()))
    }

    fn coll_guard(&self, cid: &CollectionId) -> Result<Option<Guard>> {
        if !self.colls.contains_key(cid) {
            return Ok(None);
        }
        let d = sys::open_dir(&self.coll_path(cid)).map_err(|e| ioe(e, "opening a collection"))?;
        read_guard(&d)
    }

    fn obj_guard(&self, cid: &CollectionId, oid: &ObjectId) -> Result<Option<Guard>> {
        match self.open_obj(cid, oid)? {
            Some(f) => read_guard(&f),
            None => Ok(None),
        }
    }

    /// Replay: whether the object's guard says this op is already in it.
    fn obj_done(&self, replay: bool, cid: &CollectionId, oid: &ObjectId, pos: Pos) -> Result<bool> {
        if !replay {
            return Ok(false);
        }
        let Some(f) = self.open_obj(cid, oid)? else {
            return Ok(false);
        };
        if read_guard(&f)?.is_some_and(|g| g.covers(pos)) {
            return Ok(true);
        }
        // An object born after this op is a later incarnation: the op acted on an
        // earlier one (or on nothing), never on this (DBObjectMap's header spos rule).
        Ok(read_birth(&f)?.is_some_and(|b| b > pos))
    }

    /// Replay: whether the object now at this name was made after `pos` (a later
    /// guarded op, or a later creation), so an op at `pos` never acted on it.
    fn obj_later(&self, cid: &CollectionId, oid: &ObjectId, pos: Pos) -> Result<bool> {
        let Some(f) = self.open_obj(cid, oid)? else {
            return Ok(false);
        };
        Ok(
            read_guard(&f)?.is_some_and(|g| g.pos > pos)
                || read_birth(&f)?.is_some_and(|b| b > pos),
        )
    }

    /// The guard barrier: everything done to `f` (data, and the kv layer) is durable,
    /// then the guard is, so a later op can never be durable without it.
    fn set_guard(&self, f: &File, dirs: &[PathBuf], pos: Pos, in_progress: bool) -> Result<()> {
        if !self.guarded() {
            return Ok(());
        }
        f.sync_all().map_err(|e| ioe(e, "fsync before a guard"))?;
        self.kv.flush().map_err(kve)?;
        for d in dirs {
            sys::open_dir(d)
                .and_then(|d| d.sync_all())
                .map_err(|e| ioe(e, format!("fsync {}", d.display())))?;
        }
        crate::failpoint(&self.data)?;
        xattr::set(f, XA_GUARD, &Guard { pos, in_progress }.encode())
            .map_err(|e| ioe(e, "setting a replay guard"))?;
        f.sync_all().map_err(|e| ioe(e, "fsync after a guard"))
    }

    /// A collection guard, after a syncfs barrier when `barrier`.
    fn set_coll_guard(
        &self,
        cid: &CollectionId,
        pos: Pos,
        in_progress: bool,
        barrier: bool,
    ) -> Result<()> {
        if !self.guarded() || !self.colls.contains_key(cid) {
            return Ok(());
        }
        let d = sys::open_dir(&self.coll_path(cid)).map_err(|e| ioe(e, "opening a collection"))?;
        if barrier {
            sys::syncfs(&d).map_err(|e| ioe(e, "syncfs"))?;
            self.kv.flush().map_err(kve)?;
        }
        crate::failpoint(&self.data)?;
        xattr::set(&d, XA_GUARD, &Guard { pos, in_progress }.encode())
            .map_err(|e| ioe(e, "setting a collection guard"))?;
        d.sync_all().map_err(|e| ioe(e, "fsync a collection"))
    }

    fn set_bits(&self, cid: &CollectionId, bits: u32) -> Result<()> {
        let d = sys::open_dir(&self.coll_path(cid)).map_err(|e| ioe(e, "opening a collection"))?;
        xattr::set(&d, XA_BITS, &bits.to_le_bytes()).map_err(|e| ioe(e, "setting bits"))
    }

    fn barrier(&self) -> Result<()> {
        if !self.guarded() {
            return Ok(());
        }
        let d = sys::open_dir(&self.current).map_err(|e| ioe(e, "opening current"))?;
        sys::syncfs(&d).map_err(|e| ioe(e, "syncfs"))?;
        self.kv.flush().map_err(kve)
    }

    /// The leaf directory a new object with `hash` goes in, splitting a full leaf first.
    fn room_for(&mut self, cid: &CollectionId, hash: u32) -> Result<PathBuf> {
        let root = self.coll_path(cid);
        let thr = self.sb.split_threshold as usize;
        let idx = self
            .colls
            .get_mut(cid)
            .ok_or_else(|| Error::failed(format!("collection {cid} vanished during apply")))?;
        let leaf = idx.leaf(hash);
        if idx.counts.get(&leaf).copied().unwrap_or(0) >= thr {
            idx.split(&root, leaf)
                .map_err(|e| ioe(e, format!("splitting a directory of {cid}")))?;
        }
        Ok(dir_path(&root, idx.leaf(hash)))
    }

    fn count(&mut self, cid: &CollectionId, hash: u32, delta: isize) {
        if let Some(idx) = self.colls.get_mut(cid) {
            let leaf = idx.leaf(hash);
            let c = idx.counts.entry(leaf).or_default();
            *c = c.saturating_add_signed(delta);
        }
        self.invalidate(cid);
    }

    fn set_oid(&self, f: &File, oid: &ObjectId) -> Result<()> {
        let bytes = object_key(oid);
        match xattr::set(f, XA_OID, &bytes) {
            Ok(()) => Ok(()),
            Err(e) if spillable(&e) => {
                // Too big for this filesystem's xattrs (ext4): keep it in the kv layer,
                // keyed by the digest in the file name.
                let mut k = vec![K_OID];
                k.extend_from_slice(&names::digest(&bytes).to_be_bytes());
                let mut b = WriteBatch::new();
                b.set(k, bytes);
                self.commit(&b, false)?;
                xattr::set(f, XA_OID, b"K").map_err(|e| ioe(e, "setting the oid xattr"))
            }
            Err(e) => Err(ioe(e, "setting the oid xattr")),
        }
    }

    /// Opens (creating if missing) an object; `None` when its collection is missing.
    fn ensure_obj(
        &mut self,
        cid: &CollectionId,
        oid: &ObjectId,
        pos: Pos,
    ) -> Result<Option<(File, Onum)>> {
        let Some((path, long)) = self.obj_path(cid, oid) else {
            return Ok(None);
        };
        match open_rw(&path) {
            Ok(f) => {
                let onum = match read_onum(&f)? {
                    Some(o) => o,
                    None => {
                        // Created but its number never set (a crash between the two):
                        // nothing in the kv layer can refer to it yet.
                        let o = self.new_onum();
                        xattr::set(&f, XA_ONUM, &o)
                            .map_err(|e| ioe(e, "setting an object number"))?;
                        o
                    }
                };
                if long
                    && xattr::get(&f, XA_OID)
                        .map_err(|e| ioe(e, "getxattr"))?
                        .is_none()
                {
                    self.set_oid(&f, oid)?;
                }
                return Ok(Some((f, onum)));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(ioe(e, format!("opening {}", path.display()))),
        }
        let dir = self.room_for(cid, oid.hash)?;
        let path = dir.join(names::file_name(oid).0);
        // Made whole in tmp/ and renamed into place, so a crash never leaves a file under
        // an object's name without its number and birth (replay would meet a nameless
        // object: "has no object number").
        let tp = self.tmp_path(pos, "create");
        let f = self.new_tmp(&tp)?;
        let onum = self.new_onum();
        xattr::set(&f, XA_ONUM, &onum).map_err(|e| ioe(e, "setting an object number"))?;
        xattr::set(&f, XA_BIRTH, &pos.bytes()).map_err(|e| ioe(e, "setting a birth"))?;
        if long {
            self.set_oid(&f, oid)?;
        }
        std::fs::rename(&tp, &path).map_err(|e| ioe(e, format!("creating {}", path.display())))?;
        self.count(cid, oid.hash, 1);
        Ok(Some((f, onum)))
    }

    fn open_existing(&self, cid: &CollectionId, oid: &ObjectId) -> Result<Option<(File, Onum)>> {
        let Some((p, _)) = self.obj_path(cid, oid) else {
            return Ok(None);
        };
        match open_rw(&p) {
            Ok(f) => {
                let onum = match read_onum(&f)? {
                    Some(o) => o,
                    None => {
                        return Err(Error::corrupt(format!(
                            "{} has no object number",
                            p.display()
                        )))
                    }
                };
                Ok(Some((f, onum)))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ioe(e, format!("opening {}", p.display()))),
        }
    }

    /// Recomputes the checksums of the extents `[start, end)` touches, knowing `now`
    /// what the range holds.
    fn update_csums(
        &self,
        f: &File,
        onum: &Onum,
        start: u64,
        end: u64,
        mut now: Content<'_>,
    ) -> Result<()> {
        if start >= end {
            return Ok(());
        }
        let size = f.metadata().map_err(|e| ioe(e, "stat"))?.len();
        let mut b = WriteBatch::new();
        let mut buf = Vec::new();
        for e in start / CSUM_EXTENT..=(end - 1) / CSUM_EXTENT {
            let s = e * CSUM_EXTENT;
            let t = s + CSUM_EXTENT;
            let key = csum_key(onum, e as u32);
            let whole = s >= start && t <= end && t <= size;
            let want = (size.saturating_sub(s)).min(CSUM_EXTENT) as usize;
            let known = match &now {
                Content::Written { before, .. } => before.iter().position(|(x, _)| *x == e),
                _ => None,
            };
            let crc = match (&mut now, known) {
                _ if s >= size => zero_extent_crc(),
                (Content::Zeroed, _) if whole => zero_extent_crc(),
                (Content::Written { data, .. }, _) if whole => {
                    extent_crc(&data[(s - start) as usize..(t - start) as usize])
                }
                (Content::Written { data, before }, Some(i)) => {
                    // The extent as `damaged_edges` read it just before this write, with
                    // the written bytes laid over it in place: no second read of 64 KiB
                    // per small write. (Bytes between the old end and the write read as
                    // zeros, as in the file.)
                    let ext = &mut before[i].1;
                    ext.resize(want, 0);
                    let (lo, hi) = (start.max(s), end.min(s + want as u64));
                    if lo < hi {
                        ext[(lo - s) as usize..(hi - s) as usize]
                            .copy_from_slice(&data[(lo - start) as usize..(hi - start) as usize]);
                    }
                    extent_crc(ext)
                }
                _ => {
                    buf.resize(want, 0);
                    let n =
                        fsback::read_full(f, &mut buf[..want], s).map_err(|e| ioe(e, "read"))?;
                    extent_crc(&buf[..n])
                }
            };
            if crc == zero_extent_crc() {
                b.remove(key);
            } else {
                b.set(key, crc.to_le_bytes().to_vec());
            }
        }
        self.commit(&b, false)
    }

    /// The extents an op is about to rewrite only in part ([start, end) of a file of the
    /// current size) whose bytes already fail their checksum. A partial rewrite
    /// recomputes the extent's checksum over the bytes it keeps, which would turn damage
    /// into a valid checksum; so these are checked first (not in replay, where an
    /// extent may be legitimately half-updated by the crash) and marked bad afterwards.
    fn damaged_edges(
        &self,
        replay: bool,
        f: &File,
        onum: &Onum,
        start: u64,
        end: u64,
    ) -> Result<Edges> {
        let mut out = Edges::default();
        if replay || self.in_replay {
            return Ok(out);
        }
        let size = f.metadata().map_err(|e| ioe(e, "stat"))?.len();
        if start >= end {
            return Ok(out);
        }
        // A truncate (end = MAX) keeps part of one extent only: the one it cuts into.
        let last = if end == u64::MAX { start } else { end - 1 };
        let mut edges = vec![start / CSUM_EXTENT, last / CSUM_EXTENT];
        edges.dedup();
        for e in edges {
            let s = e * CSUM_EXTENT;
            if start <= s && end >= s + CSUM_EXTENT {
                continue; // rewritten whole: nothing of it is kept
            }
            let mut buf = vec![0u8; CSUM_EXTENT as usize];
            // Checked even past the end of the file: a file cut short by damage still
            // has the checksums of what it lost, and the zeros a write past the end
            // fills in must not stand for those bytes.
            let t = (s + CSUM_EXTENT).min(size).max(s);
            let n = fsback::read_full(f, &mut buf[..(t - s) as usize], s)
                .map_err(|e| ioe(e, "read"))?;
            let want = match self.kv.get(&csum_key(onum, e as u32)).map_err(kve)? {
                Some(v) if v.len() == 4 => u32::from_le_bytes([v[0], v[1], v[2], v[3]]),
                Some(_) => return Err(Error::corrupt("data checksum record is malformed")),
                None => zero_extent_crc(),
            };
            if extent_crc(&buf[..n]) != want {
                out.bad.push(e);
            }
            buf.truncate(n);
            out.before.push((e, buf));
        }
        Ok(out)
    }

    /// After a partial rewrite of damaged extents: their checksums stay wrong (the
    /// complement of what the bytes give now), so reads and fsck keep reporting them
    /// until the extent is rewritten whole.
    fn keep_bad(&self, f: &File, onum: &Onum, bad: &[u64]) -> Result<()> {
        if bad.is_empty() {
            return Ok(());
        }
        let size = f.metadata().map_err(|e| ioe(e, "stat"))?.len();
        let mut b = WriteBatch::new();
        let mut buf = vec![0u8; CSUM_EXTENT as usize];
        for &e in bad {
            let s = e * CSUM_EXTENT;
            let want = size.saturating_sub(s).min(CSUM_EXTENT) as usize;
            let n = fsback::read_full(f, &mut buf[..want], s).map_err(|e| ioe(e, "read"))?;
            tracing::error!(
                extent = e,
                onum = ?onum,
                "a partial rewrite met an extent whose bytes fail their checksum; it stays bad"
            );
            b.set(
                csum_key(onum, e as u32),
                (!extent_crc(&buf[..n])).to_le_bytes().to_vec(),
            );
        }
        self.commit(&b, false)
    }

    fn drop_obj_kv(&self, b: &mut WriteBatch, onum: &Onum) {
        for p in [K_OMAP, K_ATTR, K_CSUM] {
            let (s, e) = oprefix_range(p, onum);
            b.remove_range(s, e);
        }
        b.remove(okey(K_HEADER, onum, &[]));
    }

    fn remove_obj(&mut self, cid: &CollectionId, oid: &ObjectId) -> Result<()> {
        let Some((p, _)) = self.obj_path(cid, oid) else {
            return Ok(());
        };
        let Some(f) = open_ro(&p).map_err(|e| ioe(e, "opening"))? else {
            return Ok(());
        };
        // kv first: a crash in between leaves the file, whose remove is replayed.
        if let Some(onum) = read_onum(&f)? {
            let mut b = WriteBatch::new();
            self.drop_obj_kv(&mut b, &onum);
            self.commit(&b, false)?;
        }
        drop(f);
        crate::failpoint(&self.data)?;
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(ioe(e, format!("removing {}", p.display()))),
        }
        self.count(cid, oid.hash, -1);
        Ok(())
    }

    fn set_attr(&self, f: &File, onum: &Onum, name: &str, value: &[u8]) -> Result<()> {
        let mut b = WriteBatch::new();
        let kvk = okey(K_ATTR, onum, name.as_bytes());
        let inline =
            attr_xattr_name(name).filter(|_| value.len() <= self.sb.inline_xattr_max as usize);
        if let Some(x) = &inline {
            match xattr::set(f, x, value) {
                Ok(()) => {
                    b.remove(kvk);
                    return self.commit(&b, false);
                }
                Err(e) if spillable(&e) => {}
                Err(e) => return Err(ioe(e, "setxattr")),
            }
        }
        // Spill: the value lives in the kv layer; no xattr copy may shadow it.
        b.set(kvk, value.to_vec());
        self.commit(&b, false)?;
        if let Some(x) = attr_xattr_name(name) {
            sys::fremovexattr(f, &x).map_err(|e| ioe(e, "removexattr"))?;
        }
        Ok(())
    }

    fn rm_attr(&self, f: &File, onum: &Onum, name: &str) -> Result<()> {
        if let Some(x) = attr_xattr_name(name) {
            sys::fremovexattr(f, &x).map_err(|e| ioe(e, "removexattr"))?;
        }
        let mut b = WriteBatch::new();
        b.remove(okey(K_ATTR, onum, name.as_bytes()));
        self.commit(&b, false)
    }

    fn rm_attrs(&self, f: &File, onum: &Onum) -> Result<()> {
        for n in sys::flistxattr(f).map_err(|e| ioe(e, "listxattr"))? {
            if n.starts_with(XA_ATTR) {
                sys::fremovexattr(f, &n).map_err(|e| ioe(e, "removexattr"))?;
            }
        }
        let mut b = WriteBatch::new();
        let (s, e) = oprefix_range(K_ATTR, onum);
        b.remove_range(s, e);
        self.commit(&b, false)
    }

    fn apply_op(&mut self, pos: Pos, op: &Op, replay: bool) -> Result<()> {
        // Split and merge judge their collections' guards themselves.
        let coll_op = matches!(
            op,
            Op::SplitCollection { .. }
                | Op::SplitCollection2 { .. }
                | Op::MergeCollection { .. }
                | Op::CollMoveRename { .. }
                | Op::TryRename { .. }
        );
        if replay && !coll_op {
            for c in op.collections() {
                if self.coll_guard(&c)?.is_some_and(|g| g.pos > pos) {
                    return Ok(());
                }
            }
        }
        match op {
            Op::Nop => {}
            Op::CollHint {
                cid,
                hint_type,
                hint,
            } => {
                if *hint_type == COLL_HINT_EXPECTED_NUM_OBJECTS
                    && hint.len() >= 12
                    && self.colls.contains_key(cid)
                {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(&hint[4..12]);
                    let objs = u64::from_le_bytes(a);
                    let thr = u64::from(self.sb.split_threshold);
                    let mut depth = 0u8;
                    let mut leaves = 1u64;
                    // At most two levels (256 leaves) from a hint.
                    while depth < 2 && leaves * thr < objs {
                        depth += 1;
                        leaves *= 16;
                    }
                    if depth > 0 {
                        let root = self.coll_path(cid);
                        if let Some(idx) = self.colls.get_mut(cid) {
                            idx.presplit(&root, depth)
                                .map_err(|e| ioe(e, "pre-splitting"))?;
                        }
                    }
                }
            }
            Op::SetAllocHint {
                cid,
                oid,
                expected_write_size,
                ..
            } => {
                // Advisory: errors are ignored, as in Ceph.
                if let Ok(Some((f, _))) = self.open_existing(cid, oid) {
                    if let Err(e) = self.fs.set_alloc_hint(&f, *expected_write_size) {
                        tracing::debug!(error = %e, "alloc hint not applied");
                    }
                }
            }
            Op::Create { cid, oid } | Op::Touch { cid, oid } => {
                if !self.obj_done(replay, cid, oid, pos)? {
                    self.ensure_obj(cid, oid, pos)?;
                }
            }
            Op::Write {
                cid,
                oid,
                off,
                data,
                ..
            } => {
                if self.obj_done(replay, cid, oid, pos)? {
                    return Ok(());
                }
                if let Some((f, onum)) = self.ensure_obj(cid, oid, pos)? {
                    if !data.is_empty() {
                        let end = off + data.len() as u64;
                        let edges = self.damaged_edges(replay, &f, &onum, *off, end)?;
                        let staged = self.staged_now.iter().find(|s| s.0 == pos.op);
                        match staged.zip(self.stage.as_ref()) {
                            Some(((_, id), area)) => self.link_staged(&f, area, *id, *off, data)?,
                            None => f.write_all_at(data, *off).map_err(|e| ioe(e, "write"))?,
                        }
                        self.update_csums(
                            &f,
                            &onum,
                            *off,
                            end,
                            Content::Written {
                                data,
                                before: edges.before,
                            },
                        )?;
                        self.keep_bad(&f, &onum, &edges.bad)?;
                    }
                }
            }
            Op::Zero { cid, oid, off, len } => {
                if self.obj_done(replay, cid, oid, pos)? {
                    return Ok(());
                }
                if let Some((f, onum)) = self.ensure_obj(cid, oid, pos)? {
                    if *len > 0 {
                        let size = f.metadata().map_err(|e| ioe(e, "stat"))?.len();
                        let end = off + len;
                        let bad = self.damaged_edges(replay, &f, &onum, *off, end)?.bad;
                        if *off < size {
                            fsback::zero_range(&f, *off, end.min(size) - off)
                                .map_err(|e| ioe(e, "zero"))?;
                        }
                        if end > size {
                            f.set_len(end).map_err(|e| ioe(e, "truncate"))?;
                        }
                        self.update_csums(&f, &onum, *off, end, Content::Zeroed)?;
                        self.keep_bad(&f, &onum, &bad)?;
                    }
                }
            }
            Op::Truncate { cid, oid, size } => {
                if self.obj_done(replay, cid, oid, pos)? {
                    return Ok(());
                }
                if let Some((f, onum)) = self.open_existing(cid, oid)? {
                    // A cut inside an extent keeps part of it: check that part first.
                    let bad = self.damaged_edges(replay, &f, &onum, *size, u64::MAX)?.bad;
                    f.set_len(*size).map_err(|e| ioe(e, "truncate"))?;
                    // Whatever the size was: a redo after a crash between the two
                    // steps finds the file already cut, and its checksums still old.
                    let first_dead = size.div_ceil(CSUM_EXTENT);
                    let mut b = WriteBatch::new();
                    let (_, e) = oprefix_range(K_CSUM, &onum);
                    b.remove_range(csum_key(&onum, first_dead as u32), e);
                    self.commit(&b, false)?;
                    if size % CSUM_EXTENT != 0 {
                        self.update_csums(&f, &onum, *size - 1, *size, Content::Unknown)?;
                    }
                    self.keep_bad(&f, &onum, &bad)?;
                }
            }
            Op::Remove { cid, oid } => {
                if !self.obj_done(replay, cid, oid, pos)? {
                    self.remove_obj(cid, oid)?;
                }
            }
            Op::SetAttr {
                cid,
                oid,
                name,
                value,
            } => {
                if self.obj_done(replay, cid, oid, pos)? {
                    return Ok(());
                }
                if let Some((f, onum)) = self.open_existing(cid, oid)? {
                    self.set_attr(&f, &onum, name, value)?;
                }
            }
            Op::SetAttrs { cid, oid, attrs } => {
                if self.obj_done(replay, cid, oid, pos)? {
                    return Ok(());
                }
                if let Some((f, onum)) = self.open_existing(cid, oid)? {
                    for (k, v) in attrs {
                        self.set_attr(&f, &onum, k, v)?;
                    }
                }
            }
            Op::RmAttr { cid, oid, name } => {
                if self.obj_done(replay, cid, oid, pos)? {
                    return Ok(());
                }
                if let Some((f, onum)) = self.open_existing(cid, oid)? {
                    self.rm_attr(&f, &onum, name)?;
                }
            }
            Op::RmAttrs { cid, oid } => {
                if self.obj_done(replay, cid, oid, pos)? {
                    return Ok(());
                }
                if let Some((f, onum)) = self.open_existing(cid, oid)? {
                    self.rm_attrs(&f, &onum)?;
                }
            }
            Op::OmapClear { cid, oid }
            | Op::OmapSetKeys { cid, oid, .. }
            | Op::OmapRmKeys { cid, oid, .. }
            | Op::OmapSetHeader { cid, oid, .. }
            | Op::OmapRmKeyRange { cid, oid, .. } => {
                if self.obj_done(replay, cid, oid, pos)? {
                    return Ok(());
                }
                let Some((_, onum)) = self.open_existing(cid, oid)? else {
                    return Ok(());
                };
                let mut b = WriteBatch::new();
                match op {
                    Op::OmapClear { .. } => {
                        let (s, e) = oprefix_range(K_OMAP, &onum);
                        b.remove_range(s, e);
                        b.remove(okey(K_HEADER, &onum, &[]));
                    }
                    Op::OmapSetKeys { keys, .. } => {
                        for (k, v) in keys {
                            b.set(okey(K_OMAP, &onum, k), v.clone());
                        }
                    }
                    Op::OmapRmKeys { keys, .. } => {
                        for k in keys {
                            b.remove(okey(K_OMAP, &onum, k));
                        }
                    }
                    Op::OmapSetHeader { header, .. } => {
                        b.set(okey(K_HEADER, &onum, &[]), header.clone());
                    }
                    Op::OmapRmKeyRange { first, last, .. } if first < last => {
                        b.remove_range(okey(K_OMAP, &onum, first), okey(K_OMAP, &onum, last));
                    }
                    _ => {}
                }
                self.commit(&b, false)?;
            }
            Op::Clone { cid, src, dst } => self.clone_obj(pos, replay, cid, src, dst)?,
            Op::CloneRange {
                cid,
                src,
                dst,
                off,
                len,
            } => self.clone_range(pos, replay, cid, src, dst, *off, *len, *off)?,
            Op::CloneRange2 {
                cid,
                src,
                dst,
                src_off,
                len,
                dst_off,
            } => self.clone_range(pos, replay, cid, src, dst, *src_off, *len, *dst_off)?,
            Op::MkColl { cid, bits } => self.mkcoll(pos, replay, cid, *bits, false)?,
            Op::RmColl { cid } => self.rmcoll(cid)?,
            Op::CollSetBits { cid, bits } => {
                if self.colls.contains_key(cid) {
                    self.set_bits(cid, *bits)?;
                }
            }
            Op::SplitCollection {
                cid,
                bits,
                rem,
                dest,
            } => self.split(pos, replay, cid, *bits, *rem, dest, true)?,
            Op::SplitCollection2 {
                cid,
                bits,
                rem,
                dest,
            } => self.split(pos, replay, cid, *bits, *rem, dest, false)?,
            Op::MergeCollection { cid, dest, bits } => self.merge(pos, replay, cid, dest, *bits)?,
            Op::CollMoveRename {
                old_cid,
                old_oid,
                new_cid,
                new_oid,
            } => self.rename(pos, replay, old_cid, old_oid, new_cid, new_oid)?,
            Op::TryRename {
                cid,
                old_oid,
                new_oid,
            } => self.rename(pos, replay, cid, old_oid, cid, new_oid)?,
        }
        Ok(())
    }

    /// A staged write: reflinks the staged copy of `data` over `[off, off+len)` of `f`,
    /// so its bytes are not written again; what reflink cannot take (an unaligned
    /// offset, a tail short of a block that does not reach the end of the file) is
    /// written from `data`. Redone on replay, it leaves the same bytes.
    fn link_staged(
        &self,
        f: &File,
        area: &crate::stage::StageArea,
        id: u64,
        off: u64,
        data: &[u8],
    ) -> Result<()> {
        let bs = self.fs.block_size;
        let len = data.len() as u64;
        if !off.is_multiple_of(bs) {
            return f.write_all_at(data, off).map_err(|e| ioe(e, "write"));
        }
        let size = f.metadata().map_err(|e| ioe(e, "stat"))?.len();
        let whole = len.is_multiple_of(bs) || off + len >= size;
        let linked = if whole { len } else { len / bs * bs };
        if linked > 0 {
            let src = area.open_staged(id).map_err(|e| {
                ioe(
                    e,
                    format!("opening staged file {}", area.path(id).display()),
                )
            })?;
            self.fs
                .clone_range(f, &src, 0, linked, off)
                .map_err(|e| ioe(e, "linking a staged write"))?;
        }
        if linked < len {
            f.write_all_at(&data[linked as usize..], off + linked)
                .map_err(|e| ioe(e, "write"))?;
        }
        Ok(())
    }

    fn tmp_path(&self, pos: Pos, what: &str) -> PathBuf {
        self.tmp_dir().join(format!("{}.{what}", pos.tag()))
    }

    fn new_tmp(&self, p: &Path) -> Result<File> {
        // A leftover of an interrupted attempt may carry xattrs: start from nothing.
        match std::fs::remove_file(p) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(ioe(e, format!("removing {}", p.display()))),
        }
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(p)
            .map_err(|e| ioe(e, format!("creating {}", p.display())))
    }

    /// CLONE: a complete copy of `src` (data by reflink where possible, attrs, omap,
    /// checksums) is built in a temp file, guarded, then renamed over `dst`.
    fn clone_obj(
        &mut self,
        pos: Pos,
        replay: bool,
        cid: &CollectionId,
        src: &ObjectId,
        dst: &ObjectId,
    ) -> Result<()> {
        if self.obj_done(replay, cid, dst, pos)? || src == dst {
            return Ok(());
        }
        let Some((sf, sonum)) = self.open_existing(cid, src)? else {
            return Ok(());
        };
        let tp = self.tmp_path(pos, "clone");
        let t = self.new_tmp(&tp)?;
        self.fs
            .clone_file(&t, &sf)
            .map_err(|e| ioe(e, "cloning data"))?;
        for n in sys::flistxattr(&sf).map_err(|e| ioe(e, "listxattr"))? {
            if n.starts_with(XA_ATTR) {
                // Copied as stored: a damaged value stays detectably damaged.
                if let Some(v) = sys::fgetxattr(&sf, &n).map_err(|e| ioe(e, "getxattr"))? {
                    sys::fsetxattr(&t, &n, &v).map_err(|e| ioe(e, "setxattr"))?;
                }
            }
        }
        let nonum = self.new_onum();
        xattr::set(&t, XA_ONUM, &nonum).map_err(|e| ioe(e, "setting an object number"))?;
        xattr::set(&t, XA_BIRTH, &pos.bytes()).map_err(|e| ioe(e, "setting a birth"))?;
        let (_, long) = names::file_name(dst);
        if long {
            self.set_oid(&t, dst)?;
        }
        let mut b = WriteBatch::new();
        self.drop_obj_kv(&mut b, &nonum);
        let old = self.open_existing(cid, dst)?.map(|(_, o)| o);
        if let Some(o) = old.filter(|o| *o != nonum) {
            self.drop_obj_kv(&mut b, &o);
        }
        for p in [K_OMAP, K_ATTR, K_CSUM] {
            let (s, e) = oprefix_range(p, &sonum);
            for (k, v) in
                ostore_kv::collect_range(&self.kv, ostore_kv::KeyRange::new(s, e)).map_err(kve)?
            {
                b.set(okey(p, &nonum, &k[17..]), v);
            }
        }
        if let Some(h) = self.kv.get(&okey(K_HEADER, &sonum, &[])).map_err(kve)? {
            b.set(okey(K_HEADER, &nonum, &[]), h);
        }
        self.commit(&b, false)?;
        self.set_guard(&t, &[self.tmp_dir()], pos, false)?;
        drop(t);
        let dir = if old.is_some() {
            self.obj_path(cid, dst)
                .map(|(p, _)| p.parent().map(Path::to_path_buf).unwrap_or_default())
        } else {
            Some(self.room_for(cid, dst.hash)?)
        };
        let Some(dir) = dir else {
            return Ok(());
        };
        let dp = dir.join(names::file_name(dst).0);
        crate::failpoint(&self.data)?;
        std::fs::rename(&tp, &dp)
            .map_err(|e| ioe(e, format!("renaming a clone to {}", dp.display())))?;
        if self.guarded() {
            sys::open_dir(&dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| ioe(e, "fsync a directory"))?;
        }
        if old.is_none() {
            self.count(cid, dst.hash, 1);
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn clone_range(
        &mut self,
        pos: Pos,
        replay: bool,
        cid: &CollectionId,
        src: &ObjectId,
        dst: &ObjectId,
        soff: u64,
        len: u64,
        doff: u64,
    ) -> Result<()> {
        let mut resume = false;
        if replay {
            // Done, or the destination is a later incarnation (born after this op: what
            // this op wrote into went with an earlier one), as for every other op.
            if self.obj_done(true, cid, dst, pos)? {
                return Ok(());
            }
            let g = self.obj_guard(cid, dst)?;
            resume = g
                == Some(Guard {
                    pos,
                    in_progress: true,
                });
        }
        let sf = self.open_existing(cid, src)?;
        if sf.is_none() && !resume {
            return Ok(());
        }
        // Ceph's MemStore (our reference): the destination exists afterwards even when
        // nothing is copied.
        let Some((df, donum)) = self.ensure_obj(cid, dst, pos)? else {
            return Ok(());
        };
        if src == dst {
            // Source and destination overlap: go through a temp copy, guarded as in
            // progress, so a redo never reads bytes the first attempt already changed.
            let tp = self.tmp_path(pos, "range");
            let (t, clen) = if resume {
                let t = match open_rw(&tp) {
                    Ok(t) => t,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        return Err(Error::corrupt(
                            "clone_range in progress but its temp copy is gone",
                        ))
                    }
                    Err(e) => return Err(ioe(e, "opening a temp copy")),
                };
                let l = t
                    .metadata()
                    .map_err(|e| ioe(e, "stat"))?
                    .len()
                    .saturating_sub(soff);
                (t, l)
            } else {
                let size = df.metadata().map_err(|e| ioe(e, "stat"))?.len();
                let clen = len.min(size.saturating_sub(soff));
                if clen == 0 {
                    // Nothing to copy, but the op happened: a replay must not copy bytes
                    // a later write put past the source's end.
                    return self.set_guard(&df, &[], pos, false);
                }
                let t = self.new_tmp(&tp)?;
                self.fs
                    .clone_range(&t, &df, soff, clen, soff)
                    .map_err(|e| ioe(e, "copying a range"))?;
                t.sync_all().map_err(|e| ioe(e, "fsync"))?;
                self.set_guard(&df, &[self.tmp_dir()], pos, true)?;
                (t, clen)
            };
            self.fs
                .clone_range(&df, &t, soff, clen, doff)
                .map_err(|e| ioe(e, "copying a range"))?;
            self.update_csums(&df, &donum, doff, doff + clen, Content::Unknown)?;
            self.set_guard(&df, &[], pos, false)?;
            drop(t);
            let _ = std::fs::remove_file(&tp);
            return Ok(());
        }
        let Some((sf, _)) = sf else {
            return Ok(());
        };
        let size = sf.metadata().map_err(|e| ioe(e, "stat"))?.len();
        let clen = len.min(size.saturating_sub(soff));
        if clen == 0 {
            return self.set_guard(&df, &[], pos, false);
        }
        self.fs
            .clone_range(&df, &sf, soff, clen, doff)
            .map_err(|e| ioe(e, "copying a range"))?;
        self.update_csums(&df, &donum, doff, doff + clen, Content::Unknown)?;
        self.set_guard(&df, &[], pos, false)
    }

    /// Moves one object's file (its id may change) and updates the indexes. Returns
    /// the destination path, or `None` when the source is missing.
    fn move_file(
        &mut self,
        oc: &CollectionId,
        oo: &ObjectId,
        nc: &CollectionId,
        no: &ObjectId,
    ) -> Result<Option<PathBuf>> {
        let dst_existed = self.obj_path(nc, no).is_some_and(|(p, _)| p.exists());
        let dir = if dst_existed {
            self.obj_path(nc, no)
                .and_then(|(p, _)| p.parent().map(Path::to_path_buf))
        } else {
            if !self.colls.contains_key(nc) {
                return Ok(None);
            }
            Some(self.room_for(nc, no.hash)?)
        };
        // A split of the destination's leaf may have moved the source: look it up now.
        let Some((sp, _)) = self.obj_path(oc, oo) else {
            return Ok(None);
        };
        let Some(dir) = dir else {
            return Ok(None);
        };
        let Some(sf) = open_ro(&sp).map_err(|e| ioe(e, "opening"))? else {
            return Ok(None);
        };
        if oo != no {
            let (_, long) = names::file_name(no);
            if long {
                self.set_oid(&sf, no)?;
                if self.guarded() {
                    sf.sync_all().map_err(|e| ioe(e, "fsync"))?;
                }
            } else if names::file_name(oo).1 {
                sys::fremovexattr(&sf, XA_OID).map_err(|e| ioe(e, "removexattr"))?;
            }
        }
        drop(sf);
        let dp = dir.join(names::file_name(no).0);
        crate::failpoint(&self.data)?;
        std::fs::rename(&sp, &dp).map_err(|e| ioe(e, format!("renaming to {}", dp.display())))?;
        self.count(oc, oo.hash, -1);
        if !dst_existed {
            self.count(nc, no.hash, 1);
        } else {
            self.invalidate(nc);
        }
        Ok(Some(dp))
    }

    fn rename(
        &mut self,
        pos: Pos,
        replay: bool,
        oc: &CollectionId,
        oo: &ObjectId,
        nc: &CollectionId,
        no: &ObjectId,
    ) -> Result<()> {
        if oc == nc && oo == no {
            return Ok(());
        }
        if replay {
            let later = |m: &Self, c: &CollectionId| -> Result<bool> {
                Ok(m.coll_guard(c)?.is_some_and(|g| g.pos > pos))
            };
            let src_later = later(self, oc)? || self.obj_later(oc, oo, pos)?;
            // The first apply found the destination collection (its checks passed), so
            // one that is missing now was removed by a later op: the move was done.
            let done = !self.colls.contains_key(nc)
                || later(self, nc)?
                || self.obj_guard(nc, no)?.is_some_and(|g| g.covers(pos));
            if done {
                // Done before the crash; a copy of the source made by replaying earlier
                // ops must go (Ceph's out_rm_src), unless it is a later incarnation.
                if !src_later {
                    self.remove_obj(oc, oo)?;
                }
                return Ok(());
            }
            if src_later {
                // The source is a later incarnation: what this op moved, if anything,
                // is gone; never move the later one.
                return Ok(());
            }
        }
        if replay {
            if let Some(f) = self.open_obj(nc, no)? {
                if read_guard(&f)?
                    == Some(Guard {
                        pos,
                        in_progress: true,
                    })
                {
                    // Moved, but not yet marked complete; a source made again by
                    // replaying earlier ops must go, as above.
                    drop(f);
                    if !self.obj_later(oc, oo, pos)? {
                        self.remove_obj(oc, oo)?;
                    }
                    let f = self.open_existing(nc, no)?.map(|(f, _)| f);
                    if let Some(f) = f {
                        self.set_guard(&f, &[], pos, false)?;
                    }
                    return Ok(());
                }
            }
        }
        if self.guarded() {
            // Mark the source before it moves, so once it is at its new name it can
            // never pass for an object older than this op.
            if let Some((f, _)) = self.open_existing(oc, oo)? {
                xattr::set(
                    &f,
                    XA_GUARD,
                    &Guard {
                        pos,
                        in_progress: true,
                    }
                    .encode(),
                )
                .map_err(|e| ioe(e, "setting a replay guard"))?;
                f.sync_all().map_err(|e| ioe(e, "fsync"))?;
            }
        }
        let Some(dp) = self.move_file(oc, oo, nc, no)? else {
            return Ok(());
        };
        if self.guarded() {
            let mut dirs = vec![dp.parent().map(Path::to_path_buf).unwrap_or_default()];
            if let Some((sp, _)) = self.obj_path(oc, oo) {
                dirs.push(sp.parent().map(Path::to_path_buf).unwrap_or_default());
            }
            let f = open_rw(&dp).map_err(|e| ioe(e, "opening a renamed object"))?;
            self.set_guard(&f, &dirs, pos, false)?;
        }
        Ok(())
    }

    fn mkcoll(
        &mut self,
        pos: Pos,
        replay: bool,
        cid: &CollectionId,
        bits: u32,
        in_progress: bool,
    ) -> Result<()> {
        if self.colls.contains_key(cid) {
            if replay && !self.coll_guard(cid)?.is_some_and(|g| g.covers(pos)) {
                self.set_bits(cid, bits)?;
                self.set_coll_guard(cid, pos, in_progress, false)?;
            }
            return Ok(());
        }
        let tp = self.tmp_path(pos, "mkcoll");
        if tp.exists() {
            std::fs::remove_dir_all(&tp).map_err(|e| ioe(e, "removing a temp dir"))?;
        }
        std::fs::create_dir(&tp).map_err(|e| ioe(e, "creating a collection"))?;
        let d = sys::open_dir(&tp).map_err(|e| ioe(e, "opening a collection"))?;
        xattr::set(&d, XA_BITS, &bits.to_le_bytes()).map_err(|e| ioe(e, "setting bits"))?;
        if self.guarded() {
            xattr::set(&d, XA_GUARD, &Guard { pos, in_progress }.encode())
                .map_err(|e| ioe(e, "setting a collection guard"))?;
            d.sync_all().map_err(|e| ioe(e, "fsync"))?;
        }
        drop(d);
        let cp = self.coll_path(cid);
        std::fs::rename(&tp, &cp).map_err(|e| ioe(e, format!("creating {}", cp.display())))?;
        if self.guarded() {
            sys::open_dir(&self.current)
                .and_then(|d| d.sync_all())
                .map_err(|e| ioe(e, "fsync current"))?;
        }
        let mut idx = CollIndex::default();
        idx.counts.insert((0, 0), 0);
        self.colls.insert(*cid, idx);
        self.invalidate(cid);
        Ok(())
    }

    fn rmcoll(&mut self, cid: &CollectionId) -> Result<()> {
        if !self.colls.contains_key(cid) {
            return Ok(());
        }
        // Empty on a first apply (checked); on replay it may hold copies that earlier
        // replayed ops re-made, which were gone when this op first ran.
        let objs = self.list(cid)?;
        for o in objs.iter() {
            self.remove_obj(cid, o)?;
        }
        let cp = self.coll_path(cid);
        std::fs::remove_dir_all(&cp).map_err(|e| ioe(e, format!("removing {}", cp.display())))?;
        self.colls.remove(cid);
        self.invalidate(cid);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn split(
        &mut self,
        pos: Pos,
        replay: bool,
        cid: &CollectionId,
        bits: u32,
        rem: u32,
        dest: &CollectionId,
        legacy: bool,
    ) -> Result<()> {
        let mut resume = false;
        // The legacy split makes its destination, and later ops of the replay act on it
        // as they did the first time; when the split needs no redoing but the
        // destination is missing, a later op removed it (which the replay redoes too):
        // make it again, empty and guarded at this op.
        let remake_dest = |m: &mut Self| -> Result<()> {
            if legacy && !m.colls.contains_key(dest) {
                m.mkcoll(pos, true, dest, bits, false)?;
            }
            Ok(())
        };
        if replay {
            let gs = self.coll_guard(cid)?;
            // Done when either side says so (the source may be a copy re-made by
            // replaying earlier ops, whose own later removal is replayed too), or, for
            // split2, when the destination is gone: it existed at the first apply, and
            // a later op removed it with what this op moved into it.
            let src_covers = gs.is_some_and(|g| g.covers(pos));
            let done = src_covers
                || self.coll_guard(dest)?.is_some_and(|g| g.covers(pos))
                || (!legacy && !self.colls.contains_key(dest));
            if done {
                // A source whose guard is older than this op is one replay re-made (the
                // guard went with the removed directory), and replaying earlier ops
                // re-made in it the objects this split moved out. A matching object
                // neither born nor guarded after the split is such a copy and must go,
                // as a done rename drops its source: left, a later op could move or
                // read it as if it had been there. (With the guard intact, earlier
                // ops were skipped and matching objects came back by later ops.)
                if !src_covers && self.colls.contains_key(cid) {
                    for o in &self.matching(cid, bits, rem)? {
                        if !self.obj_later(cid, o, pos)? {
                            self.remove_obj(cid, o)?;
                        }
                    }
                }
                return remake_dest(self);
            }
            resume = gs
                == Some(Guard {
                    pos,
                    in_progress: true,
                });
        }
        if !self.colls.contains_key(cid) {
            return if replay { remake_dest(self) } else { Ok(()) };
        }
        self.split_now(pos, cid, bits, rem, dest, legacy, resume)
    }

    /// The objects of `cid` a split by (`bits`, `rem`) moves.
    fn matching(&self, cid: &CollectionId, bits: u32, rem: u32) -> Result<Vec<ObjectId>> {
        Ok(self
            .list(cid)?
            .iter()
            .filter(|o| o.matches(bits, rem))
            .cloned()
            .collect())
    }

    #[allow(clippy::too_many_arguments)]
    fn split_now(
        &mut self,
        pos: Pos,
        cid: &CollectionId,
        bits: u32,
        rem: u32,
        dest: &CollectionId,
        legacy: bool,
        resume: bool,
    ) -> Result<()> {
        if !resume {
            self.barrier()?;
        }
        if legacy {
            self.mkcoll(pos, true, dest, bits, true)?;
        } else if !self.colls.contains_key(dest) {
            return Ok(());
        }
        self.set_coll_guard(dest, pos, true, false)?;
        self.set_coll_guard(cid, pos, true, false)?;
        for o in &self.matching(cid, bits, rem)? {
            self.move_file(cid, o, dest, o)?;
        }
        self.set_bits(cid, bits)?;
        self.set_bits(dest, bits)?;
        self.barrier()?;
        self.set_coll_guard(cid, pos, false, false)?;
        self.set_coll_guard(dest, pos, false, false)
    }

    fn merge(
        &mut self,
        pos: Pos,
        replay: bool,
        cid: &CollectionId,
        dest: &CollectionId,
        bits: u32,
    ) -> Result<()> {
        let mut resume = false;
        let marked = Some(Guard {
            pos,
            in_progress: true,
        });
        if replay {
            let g = self.coll_guard(dest)?;
            resume = g == marked;
            let gs = self.coll_guard(cid)?;
            let later_src = gs.is_some_and(|g| g.pos > pos);
            if !resume && (g.is_some_and(|g| g.covers(pos)) || !self.colls.contains_key(dest)) {
                // Done before the crash (the destination says so, or is gone since).
                // A source that exists now was re-made by replaying earlier ops, unless
                // a later op made it: drop it.
                if self.colls.contains_key(cid) && !later_src {
                    self.rmcoll(cid)?;
                }
                return Ok(());
            }
            if later_src {
                return Ok(());
            }
            if resume && self.colls.contains_key(cid) && gs != marked {
                // The source is marked before the destination, so an unmarked source
                // beside a marked destination is one replay re-made after the first
                // apply had moved all of it and removed it: moving its re-made copies
                // would overwrite what the merge really moved.
                self.rmcoll(cid)?;
            }
        }
        if !self.colls.contains_key(dest) {
            return Ok(());
        }
        if !self.colls.contains_key(cid) && !resume {
            return Ok(());
        }
        if !resume {
            self.barrier()?;
        }
        // Source first: see the resume case above.
        if self.colls.contains_key(cid) {
            self.set_coll_guard(cid, pos, true, false)?;
        }
        self.set_coll_guard(dest, pos, true, false)?;
        if self.colls.contains_key(cid) {
            let all = self.list(cid)?;
            for o in all.iter() {
                self.move_file(cid, o, dest, o)?;
            }
            let cp = self.coll_path(cid);
            std::fs::remove_dir_all(&cp)
                .map_err(|e| ioe(e, format!("removing {}", cp.display())))?;
            self.colls.remove(cid);
            self.invalidate(cid);
        }
        self.set_bits(dest, bits)?;
        self.barrier()?;
        self.set_coll_guard(dest, pos, false, false)
    }
}
