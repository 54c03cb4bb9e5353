//! MemStore: every collection and object in memory, committed through the shared
//! journal, with the whole state dumped to `memstore.dump` at each checkpoint.
//!
//! [`MemBackend`] is the [`Backend`]; [`MemStore`] is it driven by the journaling layer
//! ([`JournaledStore`]), so a MemStore survives kill -9: mount loads the last dump and
//! replays the journal after the seq the dump records. Replay is exactly-once because
//! the dump and its seq are written in one atomic file.
//!
//! Each transaction applies atomically under the state lock (precheck, then ops).
//!
//! Object data lives in copy-on-write pages ([`pages`]), so clone and whole-object
//! moves (rename, split, merge) copy pointers, not bytes.

pub mod dump;
pub mod pages;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use ostore_journal::Vfs;
use ostore_os::journaling::{Backend, JournaledStore};
use ostore_os::store::{ObjectStat, OmapContents, OmapIterator, SnapshotOmapIterator, StoreStatfs};
use ostore_os::{
    precheck, CollectionId, Error, ErrorKind, ObjectId, OmapKey, Op, Result, StateView, Transaction,
};

use crate::pages::Pages;

pub const STORE_TYPE: &str = "memstore";
/// What `statfs` reports as the device size (Ceph's memstore_device_bytes idea).
pub const DEFAULT_DEVICE_BYTES: u64 = 16 << 30;

/// One object: its four parts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Object {
    pub size: u64,
    pub data: Pages,
    pub attrs: BTreeMap<String, Vec<u8>>,
    pub omap_header: Vec<u8>,
    pub omap: BTreeMap<OmapKey, Vec<u8>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Collection {
    pub bits: u32,
    pub objects: BTreeMap<ObjectId, Arc<Object>>,
}

/// Everything MemStore holds; also what the dump encodes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    /// Sequence number of the last transaction applied (or rejected) into this state.
    pub seq: u64,
    pub colls: BTreeMap<CollectionId, Collection>,
}

impl StateView for State {
    fn collection_exists(&self, cid: &CollectionId) -> Result<bool> {
        Ok(self.colls.contains_key(cid))
    }
    fn object_exists(&self, cid: &CollectionId, oid: &ObjectId) -> Result<bool> {
        Ok(self
            .colls
            .get(cid)
            .is_some_and(|c| c.objects.contains_key(oid)))
    }
    fn collection_objects(&self, cid: &CollectionId) -> Result<Vec<ObjectId>> {
        Ok(self
            .colls
            .get(cid)
            .map(|c| c.objects.keys().cloned().collect())
            .unwrap_or_default())
    }
}

impl State {
    fn coll_mut(&mut self, cid: &CollectionId) -> Result<&mut Collection> {
        // precheck guarantees existence; an error here is a bug, reported rather than panicking.
        self.colls
            .get_mut(cid)
            .ok_or_else(|| Error::failed(format!("collection {cid} vanished during apply")))
    }

    fn obj_mut(
        &mut self,
        cid: &CollectionId,
        oid: &ObjectId,
        create: bool,
    ) -> Result<Option<&mut Object>> {
        let c = self.coll_mut(cid)?;
        if create {
            Ok(Some(Arc::make_mut(
                c.objects.entry(oid.clone()).or_default(),
            )))
        } else {
            Ok(c.objects.get_mut(oid).map(Arc::make_mut))
        }
    }

    /// Applies one op whose fatal errors precheck has already ruled out; tolerated
    /// conditions (missing object, missing attr) skip the op, as in Ceph.
    fn apply_op(&mut self, op: &Op) -> Result<()> {
        match op {
            Op::Nop | Op::SetAllocHint { .. } | Op::CollHint { .. } => {}
            Op::Create { cid, oid } | Op::Touch { cid, oid } => {
                self.obj_mut(cid, oid, true)?;
            }
            Op::Write {
                cid,
                oid,
                off,
                data,
                ..
            } => {
                if let Some(o) = self.obj_mut(cid, oid, true)? {
                    if !data.is_empty() {
                        o.data.write(*off, data);
                        o.size = o.size.max(off + data.len() as u64);
                    }
                }
            }
            Op::Zero { cid, oid, off, len } => {
                if let Some(o) = self.obj_mut(cid, oid, true)? {
                    if *len > 0 {
                        o.data.zero(*off, *len);
                        o.size = o.size.max(off + len);
                    }
                }
            }
            Op::Truncate { cid, oid, size } => {
                if let Some(o) = self.obj_mut(cid, oid, false)? {
                    if *size < o.size {
                        o.data.truncate(*size);
                    }
                    o.size = *size;
                }
            }
            Op::Remove { cid, oid } => {
                self.coll_mut(cid)?.objects.remove(oid);
            }
            Op::SetAttr {
                cid,
                oid,
                name,
                value,
            } => {
                if let Some(o) = self.obj_mut(cid, oid, false)? {
                    o.attrs.insert(name.clone(), value.clone());
                }
            }
            Op::SetAttrs { cid, oid, attrs } => {
                if let Some(o) = self.obj_mut(cid, oid, false)? {
                    for (k, v) in attrs {
                        o.attrs.insert(k.clone(), v.clone());
                    }
                }
            }
            Op::RmAttr { cid, oid, name } => {
                if let Some(o) = self.obj_mut(cid, oid, false)? {
                    o.attrs.remove(name);
                }
            }
            Op::RmAttrs { cid, oid } => {
                if let Some(o) = self.obj_mut(cid, oid, false)? {
                    o.attrs.clear();
                }
            }
            Op::Clone { cid, src, dst } => {
                let c = self.coll_mut(cid)?;
                let s = c
                    .objects
                    .get(src)
                    .cloned()
                    .ok_or_else(|| Error::failed("clone source vanished"))?;
                // A whole-object clone shares everything copy-on-write.
                c.objects.insert(dst.clone(), s);
            }
            Op::CloneRange {
                cid,
                src,
                dst,
                off,
                len,
            } => self.clone_range(cid, src, dst, *off, *len, *off)?,
            Op::CloneRange2 {
                cid,
                src,
                dst,
                src_off,
                len,
                dst_off,
            } => self.clone_range(cid, src, dst, *src_off, *len, *dst_off)?,
            Op::MkColl { cid, bits } => {
                self.colls.insert(
                    *cid,
                    Collection {
                        bits: *bits,
                        objects: BTreeMap::new(),
                    },
                );
            }
            Op::RmColl { cid } => {
                self.colls.remove(cid);
            }
            Op::OmapClear { cid, oid } => {
                if let Some(o) = self.obj_mut(cid, oid, false)? {
                    o.omap.clear();
                    o.omap_header.clear();
                }
            }
            Op::OmapSetKeys { cid, oid, keys } => {
                if let Some(o) = self.obj_mut(cid, oid, false)? {
                    for (k, v) in keys {
                        o.omap.insert(k.clone(), v.clone());
                    }
                }
            }
            Op::OmapRmKeys { cid, oid, keys } => {
                if let Some(o) = self.obj_mut(cid, oid, false)? {
                    for k in keys {
                        o.omap.remove(k);
                    }
                }
            }
            Op::OmapSetHeader { cid, oid, header } => {
                if let Some(o) = self.obj_mut(cid, oid, false)? {
                    o.omap_header = header.clone();
                }
            }
            Op::OmapRmKeyRange {
                cid,
                oid,
                first,
                last,
            } => {
                if let Some(o) = self.obj_mut(cid, oid, false)? {
                    if first < last {
                        let doomed: Vec<OmapKey> = o
                            .omap
                            .range(first.clone()..last.clone())
                            .map(|(k, _)| k.clone())
                            .collect();
                        for k in doomed {
                            o.omap.remove(&k);
                        }
                    }
                }
            }
            Op::SplitCollection {
                cid,
                bits,
                rem,
                dest,
            }
            | Op::SplitCollection2 {
                cid,
                bits,
                rem,
                dest,
            } => {
                if matches!(op, Op::SplitCollection { .. }) {
                    self.colls.insert(
                        *dest,
                        Collection {
                            bits: *bits,
                            objects: BTreeMap::new(),
                        },
                    );
                }
                let src = self.coll_mut(cid)?;
                let moving: Vec<ObjectId> = src
                    .objects
                    .keys()
                    .filter(|o| o.matches(*bits, *rem))
                    .cloned()
                    .collect();
                let mut moved = Vec::with_capacity(moving.len());
                for o in moving {
                    if let Some(obj) = src.objects.remove(&o) {
                        moved.push((o, obj));
                    }
                }
                src.bits = *bits;
                let d = self.coll_mut(dest)?;
                d.objects.extend(moved);
                d.bits = *bits;
            }
            Op::MergeCollection { cid, dest, bits } => {
                let src = self
                    .colls
                    .remove(cid)
                    .ok_or_else(|| Error::failed("merge source vanished"))?;
                let d = self.coll_mut(dest)?;
                d.objects.extend(src.objects);
                d.bits = *bits;
            }
            Op::CollMoveRename {
                old_cid,
                old_oid,
                new_cid,
                new_oid,
            } => self.rename(old_cid, old_oid, new_cid, new_oid)?,
            Op::TryRename {
                cid,
                old_oid,
                new_oid,
            } => self.rename(cid, old_oid, cid, new_oid)?,
            Op::CollSetBits { cid, bits } => self.coll_mut(cid)?.bits = *bits,
        }
        Ok(())
    }

    fn clone_range(
        &mut self,
        cid: &CollectionId,
        src: &ObjectId,
        dst: &ObjectId,
        src_off: u64,
        len: u64,
        dst_off: u64,
    ) -> Result<()> {
        let c = self.coll_mut(cid)?;
        let s = c
            .objects
            .get(src)
            .cloned()
            .ok_or_else(|| Error::failed("clone_range source vanished"))?;
        let d = Arc::make_mut(c.objects.entry(dst.clone()).or_default());
        // Ceph's MemStore: nothing past the source's end is copied, and the length is
        // clipped to it.
        if src_off >= s.size {
            return Ok(());
        }
        let len = len.min(s.size - src_off);
        if len == 0 {
            return Ok(());
        }
        d.data.copy_from(&s.data, src_off, len, dst_off);
        d.size = d.size.max(dst_off + len);
        Ok(())
    }

    fn rename(
        &mut self,
        oc: &CollectionId,
        oo: &ObjectId,
        nc: &CollectionId,
        no: &ObjectId,
    ) -> Result<()> {
        let Some(obj) = self.coll_mut(oc)?.objects.remove(oo) else {
            return Ok(());
        };
        self.coll_mut(nc)?.objects.insert(no.clone(), obj);
        Ok(())
    }

    /// Applies a whole transaction atomically: precheck first, then the ops.
    pub fn apply(&mut self, t: &Transaction) -> Result<()> {
        precheck(t, self)?;
        for (i, op) in t.ops().iter().enumerate() {
            self.apply_op(op)
                .map_err(|e| e.context(format!("op {i} ({})", op.code().name())))?;
        }
        Ok(())
    }
}

/// The in-memory backend: all state behind one lock, dumped at checkpoints.
#[derive(Debug)]
pub struct MemBackend {
    path: PathBuf,
    vfs: Arc<dyn Vfs>,
    state: RwLock<State>,
    /// Seq of the last dump written, so an idle checkpoint writes nothing.
    dumped: Mutex<Option<u64>>,
    /// The state captured at the checkpoint cut, waiting to be dumped.
    captured: Mutex<Option<State>>,
}

impl MemBackend {
    fn dump_path(&self) -> PathBuf {
        self.path.join(dump::FILE_NAME)
    }

    fn read_state(&self) -> Result<RwLockReadGuard<'_, State>> {
        self.state
            .read()
            .map_err(|_| Error::failed("memstore state lock poisoned"))
    }

    fn write_state(&self) -> Result<RwLockWriteGuard<'_, State>> {
        self.state
            .write()
            .map_err(|_| Error::failed("memstore state lock poisoned"))
    }

    fn with_collection<T>(
        &self,
        cid: &CollectionId,
        f: impl FnOnce(&Collection) -> Result<T>,
    ) -> Result<T> {
        let s = self.read_state()?;
        let c = s
            .colls
            .get(cid)
            .ok_or_else(|| Error::not_found(format!("collection {cid} does not exist")))?;
        f(c)
    }

    fn with_object<T>(
        &self,
        cid: &CollectionId,
        oid: &ObjectId,
        f: impl FnOnce(&Object) -> Result<T>,
    ) -> Result<T> {
        self.with_collection(cid, |c| {
            let o = c
                .objects
                .get(oid)
                .ok_or_else(|| Error::not_found(format!("object {oid} does not exist in {cid}")))?;
            f(o)
        })
    }

    /// A copy of the whole state (tests and tools compare stores with it).
    pub fn snapshot(&self) -> Result<State> {
        Ok(self.read_state()?.clone())
    }
}

impl Backend for MemBackend {
    const STORE_TYPE: &'static str = STORE_TYPE;

    fn open(data_path: &Path, vfs: Arc<dyn Vfs>) -> MemBackend {
        MemBackend {
            path: data_path.to_path_buf(),
            vfs,
            state: RwLock::new(State::default()),
            dumped: Mutex::new(None),
            captured: Mutex::new(None),
        }
    }

    fn mkfs(&self) -> Result<()> {
        dump::write(&*self.vfs, &self.dump_path(), &State::default())
    }

    fn mount(&self) -> Result<u64> {
        let state = dump::read(&*self.vfs, &self.dump_path())?;
        let seq = state.seq;
        *self.write_state()? = state;
        *self
            .dumped
            .lock()
            .map_err(|_| Error::failed("memstore lock poisoned"))? = Some(seq);
        Ok(seq)
    }

    fn umount(&self) -> Result<()> {
        Ok(())
    }

    fn apply(&self, seq: u64, txn: &Transaction) -> Result<Result<()>> {
        let mut s = self.write_state()?;
        let r = s.apply(txn);
        s.seq = s.seq.max(seq);
        match r {
            Ok(()) => Ok(Ok(())),
            // An apply that broke after precheck passed would leave a half-applied
            // transaction: that is a failure, not a rejection.
            Err(e) if e.kind() == ErrorKind::Failed => Err(e),
            Err(e) => Ok(Err(e)),
        }
    }

    fn checkpoint_capture(&self, seq: u64) -> Result<bool> {
        // Cloning shares every object (Arc) and page (copy-on-write), so this is a
        // pointer walk, and applies can resume while the copy is dumped.
        let mut snap = self.read_state()?.clone();
        snap.seq = snap.seq.max(seq);
        *self
            .captured
            .lock()
            .map_err(|_| Error::failed("memstore lock poisoned"))? = Some(snap);
        Ok(true)
    }

    fn checkpoint(&self, seq: u64) -> Result<()> {
        let mut dumped = self
            .dumped
            .lock()
            .map_err(|_| Error::failed("memstore lock poisoned"))?;
        let captured = self
            .captured
            .lock()
            .map_err(|_| Error::failed("memstore lock poisoned"))?
            .take();
        let snap = match captured {
            Some(s) => s,
            None => {
                let mut s = self.read_state()?.clone();
                s.seq = s.seq.max(seq);
                s
            }
        };
        if *dumped == Some(snap.seq) {
            return Ok(());
        }
        dump::write(&*self.vfs, &self.dump_path(), &snap)?;
        *dumped = Some(snap.seq);
        Ok(())
    }

    /// Its checkpoint rewrites the whole state, so it runs only when the journal needs
    /// the space, not on a timer.
    fn periodic_checkpoints(&self) -> bool {
        false
    }

    /// The dump is a consistent image of the applied state, written whole.
    fn snapshot_checkpoints(&self) -> bool {
        true
    }

    fn statfs(&self) -> Result<StoreStatfs> {
        let s = self.read_state()?;
        let mut st = StoreStatfs {
            total: DEFAULT_DEVICE_BYTES,
            collections: s.colls.len() as u64,
            ..Default::default()
        };
        for c in s.colls.values() {
            st.objects += c.objects.len() as u64;
            st.data_stored += c.objects.values().map(|o| o.data.allocated()).sum::<u64>();
        }
        st.available = st.total.saturating_sub(st.data_stored);
        Ok(st)
    }

    fn exists(&self, cid: &CollectionId, oid: &ObjectId) -> Result<bool> {
        self.with_collection(cid, |c| Ok(c.objects.contains_key(oid)))
    }

    fn stat(&self, cid: &CollectionId, oid: &ObjectId) -> Result<ObjectStat> {
        self.with_object(cid, oid, |o| {
            Ok(ObjectStat {
                size: o.size,
                allocated: o.data.allocated(),
            })
        })
    }

    fn read(&self, cid: &CollectionId, oid: &ObjectId, off: u64, len: u64) -> Result<Vec<u8>> {
        self.with_object(cid, oid, |o| {
            if off >= o.size {
                return Ok(Vec::new());
            }
            let avail = o.size - off;
            let n = if len == 0 { avail } else { len.min(avail) };
            Ok(o.data.read(off, n))
        })
    }

    fn fiemap(
        &self,
        cid: &CollectionId,
        oid: &ObjectId,
        off: u64,
        len: u64,
    ) -> Result<BTreeMap<u64, u64>> {
        self.with_object(cid, oid, |o| {
            let end = if len == 0 {
                o.size
            } else {
                off.saturating_add(len).min(o.size)
            };
            Ok(o.data.extents(off, end).into_iter().collect())
        })
    }

    fn getattr(&self, cid: &CollectionId, oid: &ObjectId, name: &str) -> Result<Vec<u8>> {
        self.with_object(cid, oid, |o| {
            o.attrs
                .get(name)
                .cloned()
                .ok_or_else(|| Error::no_data(format!("object {oid} has no attr {name:?}")))
        })
    }

    fn getattrs(&self, cid: &CollectionId, oid: &ObjectId) -> Result<BTreeMap<String, Vec<u8>>> {
        self.with_object(cid, oid, |o| Ok(o.attrs.clone()))
    }

    fn list_collections(&self) -> Result<Vec<CollectionId>> {
        Ok(self.read_state()?.colls.keys().copied().collect())
    }

    fn collection_exists(&self, cid: &CollectionId) -> Result<bool> {
        Ok(self.read_state()?.colls.contains_key(cid))
    }

    fn collection_empty(&self, cid: &CollectionId) -> Result<bool> {
        self.with_collection(cid, |c| Ok(c.objects.is_empty()))
    }

    fn collection_bits(&self, cid: &CollectionId) -> Result<u32> {
        self.with_collection(cid, |c| Ok(c.bits))
    }

    fn collection_list(
        &self,
        cid: &CollectionId,
        start: &ObjectId,
        end: &ObjectId,
        max: usize,
    ) -> Result<(Vec<ObjectId>, ObjectId)> {
        self.with_collection(cid, |c| {
            let mut out = Vec::new();
            if start >= end {
                return Ok((out, ObjectId::max_sentinel()));
            }
            for oid in c.objects.range(start.clone()..end.clone()).map(|(k, _)| k) {
                if out.len() >= max {
                    return Ok((out, oid.clone()));
                }
                out.push(oid.clone());
            }
            Ok((out, ObjectId::max_sentinel()))
        })
    }

    fn omap_get(&self, cid: &CollectionId, oid: &ObjectId) -> Result<OmapContents> {
        self.with_object(cid, oid, |o| Ok((o.omap_header.clone(), o.omap.clone())))
    }

    fn omap_get_header(&self, cid: &CollectionId, oid: &ObjectId) -> Result<Vec<u8>> {
        self.with_object(cid, oid, |o| Ok(o.omap_header.clone()))
    }

    fn omap_get_keys(&self, cid: &CollectionId, oid: &ObjectId) -> Result<BTreeSet<OmapKey>> {
        self.with_object(cid, oid, |o| Ok(o.omap.keys().cloned().collect()))
    }

    fn omap_get_values(
        &self,
        cid: &CollectionId,
        oid: &ObjectId,
        keys: &BTreeSet<OmapKey>,
    ) -> Result<BTreeMap<OmapKey, Vec<u8>>> {
        self.with_object(cid, oid, |o| {
            Ok(keys
                .iter()
                .filter_map(|k| o.omap.get(k).map(|v| (k.clone(), v.clone())))
                .collect())
        })
    }

    fn omap_check_keys(
        &self,
        cid: &CollectionId,
        oid: &ObjectId,
        keys: &BTreeSet<OmapKey>,
    ) -> Result<BTreeSet<OmapKey>> {
        self.with_object(cid, oid, |o| {
            Ok(keys
                .iter()
                .filter(|k| o.omap.contains_key(*k))
                .cloned()
                .collect())
        })
    }

    fn omap_iterator(
        &self,
        cid: &CollectionId,
        oid: &ObjectId,
    ) -> Result<Box<dyn OmapIterator + Send>> {
        self.with_object(cid, oid, |o| {
            let entries = o.omap.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            Ok(Box::new(SnapshotOmapIterator::new(entries)) as Box<dyn OmapIterator + Send>)
        })
    }
}

/// MemStore: [`MemBackend`] committed through the shared journal.
/// `MemStore::new(data_path)` or `MemStore::with_options(data_path, opts)`.
pub type MemStore = JournaledStore<MemBackend>;
