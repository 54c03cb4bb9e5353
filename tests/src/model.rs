//! A plain in-memory model of the ObjectStore semantics, and a seeded random driver
//! that applies the same transactions to a store and to the model and compares the
//! full observable state after every step.
//!
//! The model is written from DESIGN.md "Transaction semantics", os/src/precheck.rs's
//! list of rejections and Ceph's MemStore, and shares no code with any backend: it
//! only uses the id, op and limit vocabulary of `ostore-os`.
//!
//! Replay a failure with `OSTORE_MODEL_SEED=<seed> OSTORE_MODEL_STEPS=<n>`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use ostore_os::limits::{
    MAX_ATTR_NAME_LEN, MAX_ATTR_VALUE_LEN, MAX_COLLECTION_BITS, MAX_OBJECT_SIZE,
};
use ostore_os::{CollectionId, ErrorKind, ObjectId, Op, OpCode, Snap, Transaction};

use crate::harness::{StoreFactory, TestStore};
use crate::rng::Rng;
use crate::state::{self, CollectionState, ObjectState, StoreState};

/// The model: the state a correct store shows.
#[derive(Debug, Clone, Default)]
pub struct Model {
    pub state: StoreState,
}

type R = std::result::Result<(), ErrorKind>;

fn write_at(data: &mut Vec<u8>, off: u64, bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    let off = off as usize;
    let end = off + bytes.len();
    if data.len() < end {
        data.resize(end, 0);
    }
    data[off..end].copy_from_slice(bytes);
}

fn fits(off: u64, len: u64) -> R {
    match off.checked_add(len) {
        Some(e) if e <= MAX_OBJECT_SIZE => Ok(()),
        _ => Err(ErrorKind::FileTooBig),
    }
}

fn check_oid(o: &ObjectId) -> R {
    if o.max || (o.name.is_empty() && o.pool == i64::MIN) || o.name.contains('\0') {
        return Err(ErrorKind::InvalidArgument);
    }
    Ok(())
}

fn check_attr(name: &str, value: Option<&[u8]>) -> R {
    if name.is_empty() {
        return Err(ErrorKind::InvalidArgument);
    }
    if name.len() > MAX_ATTR_NAME_LEN || value.is_some_and(|v| v.len() > MAX_ATTR_VALUE_LEN) {
        return Err(ErrorKind::TooBig);
    }
    Ok(())
}

/// The state-free checks for the malformed ops the generator makes (the full rules
/// live in os/src/limits.rs; the model only needs the ones it exercises).
fn validate_op(op: &Op) -> R {
    match op {
        Op::Write { oid, off, data, .. } => {
            check_oid(oid)?;
            fits(*off, data.len() as u64)
        }
        Op::Zero { oid, off, len, .. } => {
            check_oid(oid)?;
            fits(*off, *len)
        }
        Op::Truncate { oid, size, .. } => {
            check_oid(oid)?;
            fits(*size, 0)
        }
        Op::SetAttr {
            oid, name, value, ..
        } => {
            check_oid(oid)?;
            check_attr(name, Some(value))
        }
        Op::SetAttrs { oid, attrs, .. } => {
            check_oid(oid)?;
            attrs.iter().try_for_each(|(k, v)| check_attr(k, Some(v)))
        }
        Op::RmAttr { oid, name, .. } => {
            check_oid(oid)?;
            check_attr(name, None)
        }
        Op::Clone { src, dst, .. } => {
            check_oid(src)?;
            check_oid(dst)?;
            if src == dst {
                return Err(ErrorKind::InvalidArgument);
            }
            Ok(())
        }
        Op::OmapSetKeys { oid, keys, .. } => {
            check_oid(oid)?;
            if keys.keys().any(|k| k.is_empty()) {
                return Err(ErrorKind::InvalidArgument);
            }
            Ok(())
        }
        Op::MkColl { bits, .. } | Op::CollSetBits { bits, .. } if *bits > MAX_COLLECTION_BITS => {
            Err(ErrorKind::InvalidArgument)
        }
        Op::SplitCollection2 {
            cid,
            bits,
            rem,
            dest,
        }
        | Op::SplitCollection {
            cid,
            bits,
            rem,
            dest,
        } => {
            if cid == dest || *bits > MAX_COLLECTION_BITS || (*bits < 32 && *rem >> bits != 0) {
                return Err(ErrorKind::InvalidArgument);
            }
            Ok(())
        }
        Op::MergeCollection { cid, dest, .. } if cid == dest => Err(ErrorKind::InvalidArgument),
        Op::Touch { oid, .. } | Op::Create { oid, .. } | Op::Remove { oid, .. } => check_oid(oid),
        _ => Ok(()),
    }
}

fn coll<'a>(
    st: &'a mut StoreState,
    cid: &CollectionId,
) -> Result<&'a mut CollectionState, ErrorKind> {
    st.get_mut(cid).ok_or(ErrorKind::NotFound)
}

/// The object if it exists; ops on a missing object are skipped (Ceph tolerates ENOENT).
fn existing<'a>(
    st: &'a mut StoreState,
    cid: &CollectionId,
    oid: &ObjectId,
) -> Result<Option<&'a mut ObjectState>, ErrorKind> {
    Ok(coll(st, cid)?.objects.get_mut(oid))
}

fn created<'a>(
    st: &'a mut StoreState,
    cid: &CollectionId,
    oid: &ObjectId,
) -> Result<&'a mut ObjectState, ErrorKind> {
    Ok(coll(st, cid)?.objects.entry(oid.clone()).or_default())
}

fn clone_range(
    st: &mut StoreState,
    cid: &CollectionId,
    src: &ObjectId,
    dst: &ObjectId,
    src_off: u64,
    len: u64,
    dst_off: u64,
) -> R {
    let sdata = coll(st, cid)?
        .objects
        .get(src)
        .ok_or(ErrorKind::NotFound)?
        .data
        .clone();
    let d = created(st, cid, dst)?;
    // Clipped at the source's end, as Ceph's MemStore does.
    let size = sdata.len() as u64;
    if src_off < size {
        let n = len.min(size - src_off);
        write_at(
            &mut d.data,
            dst_off,
            &sdata[src_off as usize..(src_off + n) as usize],
        );
    }
    Ok(())
}

fn rename(
    st: &mut StoreState,
    oc: &CollectionId,
    oo: &ObjectId,
    nc: &CollectionId,
    no: &ObjectId,
) -> R {
    coll(st, oc)?;
    coll(st, nc)?;
    if !st[oc].objects.contains_key(oo) {
        return Ok(());
    }
    if st[nc].objects.contains_key(no) {
        return Err(ErrorKind::Exists);
    }
    let o = coll(st, oc)?.objects.remove(oo).expect("checked above");
    coll(st, nc)?.objects.insert(no.clone(), o);
    Ok(())
}

fn split(st: &mut StoreState, cid: &CollectionId, bits: u32, rem: u32, dest: &CollectionId) -> R {
    coll(st, dest)?;
    let src = coll(st, cid)?;
    let moving: Vec<ObjectId> = src
        .objects
        .keys()
        .filter(|o| o.matches(bits, rem))
        .cloned()
        .collect();
    let mut moved = Vec::new();
    for o in moving {
        let v = src.objects.remove(&o).expect("listed above");
        moved.push((o, v));
    }
    src.bits = bits;
    let d = coll(st, dest)?;
    d.objects.extend(moved);
    d.bits = bits;
    Ok(())
}

impl Model {
    pub fn new() -> Model {
        Model::default()
    }

    fn op(st: &mut StoreState, op: &Op) -> R {
        match op {
            Op::Nop => Ok(()),
            Op::Create { cid, oid } | Op::Touch { cid, oid } => created(st, cid, oid).map(|_| ()),
            Op::Write {
                cid,
                oid,
                off,
                data,
                ..
            } => {
                write_at(&mut created(st, cid, oid)?.data, *off, data);
                Ok(())
            }
            Op::Zero { cid, oid, off, len } => {
                let o = created(st, cid, oid)?;
                if *len > 0 {
                    let end = (off + len) as usize;
                    if o.data.len() < end {
                        o.data.resize(end, 0);
                    }
                    o.data[*off as usize..end].fill(0);
                }
                Ok(())
            }
            Op::Truncate { cid, oid, size } => {
                if let Some(o) = existing(st, cid, oid)? {
                    o.data.resize(*size as usize, 0);
                }
                Ok(())
            }
            Op::Remove { cid, oid } => {
                coll(st, cid)?.objects.remove(oid);
                Ok(())
            }
            Op::SetAttr {
                cid,
                oid,
                name,
                value,
            } => {
                if let Some(o) = existing(st, cid, oid)? {
                    o.attrs.insert(name.clone(), value.clone());
                }
                Ok(())
            }
            Op::SetAttrs { cid, oid, attrs } => {
                if let Some(o) = existing(st, cid, oid)? {
                    o.attrs
                        .extend(attrs.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
                Ok(())
            }
            Op::RmAttr { cid, oid, name } => {
                if let Some(o) = existing(st, cid, oid)? {
                    o.attrs.remove(name);
                }
                Ok(())
            }
            Op::RmAttrs { cid, oid } => {
                if let Some(o) = existing(st, cid, oid)? {
                    o.attrs.clear();
                }
                Ok(())
            }
            Op::Clone { cid, src, dst } => {
                let c = coll(st, cid)?;
                let s = c.objects.get(src).ok_or(ErrorKind::NotFound)?.clone();
                c.objects.insert(dst.clone(), s);
                Ok(())
            }
            Op::CloneRange {
                cid,
                src,
                dst,
                off,
                len,
            } => clone_range(st, cid, src, dst, *off, *len, *off),
            Op::CloneRange2 {
                cid,
                src,
                dst,
                src_off,
                len,
                dst_off,
            } => clone_range(st, cid, src, dst, *src_off, *len, *dst_off),
            Op::MkColl { cid, bits } => {
                if st.contains_key(cid) {
                    return Err(ErrorKind::Exists);
                }
                st.insert(
                    *cid,
                    CollectionState {
                        bits: *bits,
                        objects: BTreeMap::new(),
                    },
                );
                Ok(())
            }
            Op::RmColl { cid } => {
                if !coll(st, cid)?.objects.is_empty() {
                    return Err(ErrorKind::NotEmpty);
                }
                st.remove(cid);
                Ok(())
            }
            Op::OmapClear { cid, oid } => {
                if let Some(o) = existing(st, cid, oid)? {
                    o.omap.clear();
                    o.omap_header.clear();
                }
                Ok(())
            }
            Op::OmapSetKeys { cid, oid, keys } => {
                if let Some(o) = existing(st, cid, oid)? {
                    o.omap
                        .extend(keys.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
                Ok(())
            }
            Op::OmapRmKeys { cid, oid, keys } => {
                if let Some(o) = existing(st, cid, oid)? {
                    for k in keys {
                        o.omap.remove(k);
                    }
                }
                Ok(())
            }
            Op::OmapSetHeader { cid, oid, header } => {
                if let Some(o) = existing(st, cid, oid)? {
                    o.omap_header = header.clone();
                }
                Ok(())
            }
            Op::OmapRmKeyRange {
                cid,
                oid,
                first,
                last,
            } => {
                if let Some(o) = existing(st, cid, oid)? {
                    o.omap.retain(|k, _| k < first || k >= last);
                }
                Ok(())
            }
            Op::SplitCollection {
                cid,
                bits,
                rem,
                dest,
            } => {
                coll(st, cid)?;
                Model::op(
                    st,
                    &Op::MkColl {
                        cid: *dest,
                        bits: *bits,
                    },
                )?;
                split(st, cid, *bits, *rem, dest)
            }
            Op::SplitCollection2 {
                cid,
                bits,
                rem,
                dest,
            } => split(st, cid, *bits, *rem, dest),
            Op::MergeCollection { cid, dest, bits } => {
                coll(st, cid)?;
                coll(st, dest)?;
                let src = st.remove(cid).expect("checked above");
                let d = coll(st, dest)?;
                d.objects.extend(src.objects);
                d.bits = *bits;
                Ok(())
            }
            Op::CollMoveRename {
                old_cid,
                old_oid,
                new_cid,
                new_oid,
            } => rename(st, old_cid, old_oid, new_cid, new_oid),
            Op::TryRename {
                cid,
                old_oid,
                new_oid,
            } => rename(st, cid, old_oid, cid, new_oid),
            Op::SetAllocHint { cid, .. } | Op::CollHint { cid, .. } => coll(st, cid).map(|_| ()),
            Op::CollSetBits { cid, bits } => {
                coll(st, cid)?.bits = *bits;
                Ok(())
            }
        }
    }

    /// Applies `t` all or nothing; on error the model is unchanged.
    pub fn apply(&mut self, t: &Transaction) -> R {
        t.ops().iter().try_for_each(validate_op)?;
        let mut st = self.state.clone();
        for op in t.ops() {
            Model::op(&mut st, op)?;
        }
        self.state = st;
        Ok(())
    }
}

// ---------------------------------------------------------------- generator

const COLLS: [CollectionId; 5] = [
    CollectionId::Pg(ostore_os::PgId {
        pool: 1,
        seed: 0,
        shard: None,
    }),
    CollectionId::Pg(ostore_os::PgId {
        pool: 1,
        seed: 1,
        shard: None,
    }),
    CollectionId::Pg(ostore_os::PgId {
        pool: 1,
        seed: 2,
        shard: None,
    }),
    CollectionId::Temp(ostore_os::PgId {
        pool: 1,
        seed: 0,
        shard: None,
    }),
    CollectionId::Meta,
];

/// The ids the generator draws from: plain names, namespaces, locator keys, snaps,
/// shards, generations and a few forced hash collisions.
fn object_pool() -> Vec<ObjectId> {
    let mut v = Vec::new();
    for i in 0..14 {
        v.push(ObjectId::new(1, format!("obj{i}")));
    }
    v.push(ObjectId::new(1, "obj1").with_namespace("ns"));
    v.push(ObjectId::new(1, "obj2").with_key("locator"));
    v.push(ObjectId::new(1, "obj3").with_snap(Snap(7)));
    v.push(ObjectId::new(1, "obj3").with_snap(Snap::SNAPDIR));
    v.push(ObjectId::new(1, "obj4").with_shard(0).with_generation(3));
    v.push(ObjectId::new(-3, "tmp\x01/.."));
    for i in 0..4 {
        v.push(ObjectId::new(1, format!("collide{i}")).with_hash(0x0bad_cafe));
    }
    v
}

/// The seeded transaction generator: draws transactions against the model's state, over
/// a fixed set of collections.
#[derive(Debug)]
pub struct Gen {
    rng: Rng,
    colls: Vec<CollectionId>,
    objs: Vec<ObjectId>,
    omap_keys: Vec<Vec<u8>>,
    attr_names: Vec<String>,
}

impl Gen {
    /// A generator over the model test's default collections.
    pub fn new(seed: u64) -> Gen {
        Gen::with_collections(seed, COLLS.to_vec())
    }

    /// A generator that only ever names `colls` (several generators with disjoint sets
    /// never touch each other's objects, so each stream's outcome is its own).
    pub fn with_collections(seed: u64, colls: Vec<CollectionId>) -> Gen {
        let mut omap_keys: Vec<Vec<u8>> = (0..12u8).map(|i| vec![b'k', b'0' + i]).collect();
        omap_keys.extend([vec![0], vec![0xff, 0xff], b"k".to_vec(), b"k5\x00".to_vec()]);
        Gen {
            rng: Rng::new(seed),
            colls,
            objs: object_pool(),
            omap_keys,
            attr_names: ["a", "b", "c", "_", "snapset", "\x01"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }

    fn existing_colls(st: &StoreState) -> Vec<CollectionId> {
        st.keys().copied().collect()
    }

    fn any_coll(&mut self, st: &StoreState) -> CollectionId {
        let ex = Gen::existing_colls(st);
        if !ex.is_empty() && self.rng.chance(19, 20) {
            *self.rng.pick(&ex)
        } else {
            *self.rng.pick(&self.colls)
        }
    }

    /// An object of `cid`, or (sometimes) any id, which may be missing.
    fn some_obj(&mut self, st: &StoreState, cid: &CollectionId) -> ObjectId {
        let present: Vec<&ObjectId> = st
            .get(cid)
            .map(|c| c.objects.keys().collect())
            .unwrap_or_default();
        if !present.is_empty() && self.rng.chance(4, 5) {
            (*self.rng.pick(&present)).clone()
        } else {
            self.rng.pick(&self.objs).clone()
        }
    }

    /// An id that exists in no collection (when the pool has one left), else any
    /// creatable id: rename targets, mostly free.
    fn fresh(&mut self, st: &StoreState, cid: &CollectionId) -> Option<ObjectId> {
        if self.rng.chance(6, 7) {
            let free: Vec<&ObjectId> = self
                .objs
                .iter()
                .filter(|o| !st.values().any(|c| c.objects.contains_key(*o)))
                .collect();
            if !free.is_empty() {
                return Some((*self.rng.pick(&free)).clone());
            }
        }
        self.creatable(st, cid)
    }

    /// A source object: nearly always one that exists.
    fn source(&mut self, st: &StoreState, cid: &CollectionId) -> ObjectId {
        let present: Vec<&ObjectId> = st
            .get(cid)
            .map(|c| c.objects.keys().collect())
            .unwrap_or_default();
        if !present.is_empty() && self.rng.chance(19, 20) {
            (*self.rng.pick(&present)).clone()
        } else {
            self.rng.pick(&self.objs).clone()
        }
    }

    /// An id that may be created in `cid` without existing in another collection, so
    /// split and merge never meet two objects with one id (what happens then is not
    /// specified; see the report).
    fn creatable(&mut self, st: &StoreState, cid: &CollectionId) -> Option<ObjectId> {
        for _ in 0..8 {
            let o = self.some_obj(st, cid);
            let elsewhere = st
                .iter()
                .any(|(c, cs)| c != cid && cs.objects.contains_key(&o));
            if !elsewhere {
                return Some(o);
            }
        }
        None
    }

    fn data(&mut self) -> Vec<u8> {
        let len = match self.rng.below(10) {
            0 => 0,
            1..=5 => self.rng.range(1, 300),
            6..=8 => self.rng.range(300, 5000),
            _ => self.rng.range(5000, 20_000),
        } as usize;
        // Runs of one byte value, with the odd zero run: holes and data look alike.
        let mut v = Vec::with_capacity(len);
        while v.len() < len {
            let run = self.rng.range(1, 600) as usize;
            let b = if self.rng.chance(1, 6) {
                0
            } else {
                self.rng.next_u64() as u8
            };
            v.extend(std::iter::repeat_n(b, run.min(len - v.len())));
        }
        v
    }

    fn offset(&mut self, size: u64) -> u64 {
        match self.rng.below(6) {
            0 => 0,
            1 | 2 => self.rng.below(size + 1),
            3 => size,
            4 => self.rng.below(16) * 4096,
            _ => self.rng.below(70_000),
        }
    }

    fn size_of(st: &StoreState, cid: &CollectionId, o: &ObjectId) -> u64 {
        st.get(cid)
            .and_then(|c| c.objects.get(o))
            .map_or(0, |o| o.data.len() as u64)
    }

    fn key(&mut self) -> Vec<u8> {
        self.rng.pick(&self.omap_keys).clone()
    }

    fn value(&mut self) -> Vec<u8> {
        let n = self.rng.below(40) as usize;
        self.rng.bytes(n)
    }

    fn attr_name(&mut self) -> String {
        self.rng.pick(&self.attr_names).clone()
    }

    /// One op against the (scratch) state `st`, or `None` when the dice found nothing
    /// sensible to do.
    fn op(&mut self, st: &StoreState) -> Option<Op> {
        let cid = self.any_coll(st);
        let w = self.rng.below(100);
        let op = match w {
            0..=13 => {
                let oid = self.creatable(st, &cid)?;
                let off = self.offset(Gen::size_of(st, &cid, &oid));
                Op::Write {
                    cid,
                    oid,
                    off,
                    data: self.data(),
                    fadvise: 0,
                }
            }
            14..=17 => {
                let oid = self.creatable(st, &cid)?;
                let off = self.offset(Gen::size_of(st, &cid, &oid));
                let len = if self.rng.chance(1, 5) {
                    0
                } else {
                    self.rng.range(1, 10_000)
                };
                Op::Zero { cid, oid, off, len }
            }
            18..=22 => {
                let oid = self.some_obj(st, &cid);
                let size = Gen::size_of(st, &cid, &oid);
                let size = match self.rng.below(4) {
                    0 => 0,
                    1 => self.rng.below(size + 1),
                    2 => size + self.rng.below(5000),
                    _ => self.rng.below(100_000),
                };
                Op::Truncate { cid, oid, size }
            }
            23..=26 => {
                let oid = self.creatable(st, &cid)?;
                if self.rng.chance(1, 4) {
                    Op::Create { cid, oid }
                } else {
                    Op::Touch { cid, oid }
                }
            }
            27..=31 => Op::Remove {
                cid,
                oid: self.some_obj(st, &cid),
            },
            32..=37 => Op::SetAttr {
                cid,
                oid: self.some_obj(st, &cid),
                name: self.attr_name(),
                value: self.value(),
            },
            38..=40 => {
                let n = self.rng.range(1, 4);
                let attrs = (0..n).map(|_| (self.attr_name(), self.value())).collect();
                Op::SetAttrs {
                    cid,
                    oid: self.some_obj(st, &cid),
                    attrs,
                }
            }
            41..=44 => Op::RmAttr {
                cid,
                oid: self.some_obj(st, &cid),
                name: self.attr_name(),
            },
            45 => Op::RmAttrs {
                cid,
                oid: self.some_obj(st, &cid),
            },
            46..=49 => {
                let src = self.source(st, &cid);
                let dst = self.creatable(st, &cid)?;
                if src == dst {
                    return None;
                }
                Op::Clone { cid, src, dst }
            }
            50..=53 => {
                let src = self.source(st, &cid);
                let dst = self.creatable(st, &cid)?;
                // Same-object ranges are not specified (Ceph never issues them).
                if src == dst {
                    return None;
                }
                let ssize = Gen::size_of(st, &cid, &src);
                let src_off = self.offset(ssize);
                let len = self.rng.range(1, 12_000);
                let dst_off = self.offset(Gen::size_of(st, &cid, &dst));
                if self.rng.chance(1, 5) {
                    Op::CloneRange {
                        cid,
                        src,
                        dst,
                        off: src_off,
                        len,
                    }
                } else {
                    Op::CloneRange2 {
                        cid,
                        src,
                        dst,
                        src_off,
                        len,
                        dst_off,
                    }
                }
            }
            54..=60 => {
                let n = self.rng.range(1, 6);
                let keys = (0..n).map(|_| (self.key(), self.value())).collect();
                Op::OmapSetKeys {
                    cid,
                    oid: self.some_obj(st, &cid),
                    keys,
                }
            }
            61..=63 => {
                let n = self.rng.range(1, 4);
                let keys: BTreeSet<Vec<u8>> = (0..n).map(|_| self.key()).collect();
                Op::OmapRmKeys {
                    cid,
                    oid: self.some_obj(st, &cid),
                    keys,
                }
            }
            64..=66 => Op::OmapSetHeader {
                cid,
                oid: self.some_obj(st, &cid),
                header: self.value(),
            },
            67..=68 => Op::OmapClear {
                cid,
                oid: self.some_obj(st, &cid),
            },
            69..=71 => {
                let (mut a, mut b) = (self.key(), self.key());
                if self.rng.chance(1, 6) {
                    a.clear();
                }
                if a > b {
                    std::mem::swap(&mut a, &mut b);
                }
                Op::OmapRmKeyRange {
                    cid,
                    oid: self.some_obj(st, &cid),
                    first: a,
                    last: b,
                }
            }
            72..=74 => {
                // Mostly new collections; sometimes an existing one (EEXIST).
                let missing: Vec<CollectionId> = self
                    .colls
                    .iter()
                    .filter(|c| !st.contains_key(c))
                    .copied()
                    .collect();
                let cid = if !missing.is_empty() && self.rng.chance(9, 10) {
                    *self.rng.pick(&missing)
                } else {
                    cid
                };
                Op::MkColl {
                    cid,
                    bits: self.rng.below(6) as u32,
                }
            }
            75..=76 => {
                // Mostly on empty collections, so it mostly succeeds.
                let empty = st.get(&cid).is_none_or(|c| c.objects.is_empty());
                if !empty && self.rng.chance(2, 3) {
                    return None;
                }
                Op::RmColl { cid }
            }
            77..=78 => {
                let dest = *self.rng.pick(&self.colls);
                let bits = self.rng.range(0, 3) as u32;
                let rem = self.rng.below(1 << bits) as u32;
                if dest == cid {
                    return None;
                }
                if st.contains_key(&dest) || self.rng.chance(1, 10) {
                    Op::SplitCollection2 {
                        cid,
                        bits,
                        rem,
                        dest,
                    }
                } else {
                    Op::SplitCollection {
                        cid,
                        bits,
                        rem,
                        dest,
                    }
                }
            }
            79..=80 => {
                let dest = self.any_coll(st);
                if dest == cid {
                    return None;
                }
                Op::MergeCollection {
                    cid,
                    dest,
                    bits: self.rng.below(4) as u32,
                }
            }
            81..=84 => {
                let new_cid = if self.rng.chance(1, 3) {
                    self.any_coll(st)
                } else {
                    cid
                };
                let old_oid = self.source(st, &cid);
                let new_oid = self.fresh(st, &new_cid)?;
                // Moving an id between collections keeps it unique.
                if new_cid != cid && new_oid != old_oid && st.contains_key(&cid) {
                    let clash = st.iter().any(|(c, cs)| {
                        *c != new_cid && *c != cid && cs.objects.contains_key(&new_oid)
                    });
                    if clash {
                        return None;
                    }
                }
                Op::CollMoveRename {
                    old_cid: cid,
                    old_oid,
                    new_cid,
                    new_oid,
                }
            }
            85..=87 => Op::TryRename {
                cid,
                old_oid: self.some_obj(st, &cid),
                new_oid: self.fresh(st, &cid)?,
            },
            88..=89 => Op::SetAllocHint {
                cid,
                oid: self.some_obj(st, &cid),
                expected_object_size: self.rng.below(1 << 23),
                expected_write_size: self.rng.below(1 << 20),
                flags: self.rng.next_u64() as u32,
            },
            90 => Op::CollHint {
                cid,
                hint_type: self.rng.below(3) as u32,
                hint: self.rng.bytes(12),
            },
            91..=92 => Op::CollSetBits {
                cid,
                bits: self.rng.below(8) as u32,
            },
            93 => Op::Nop,
            _ => {
                // Empty a collection and remove it, so RMCOLL also succeeds.
                let objs: Vec<ObjectId> = st
                    .get(&cid)
                    .map(|c| c.objects.keys().cloned().collect())
                    .unwrap_or_default();
                if objs.len() > 4 {
                    return None;
                }
                return objs
                    .first()
                    .map(|o| Op::Remove {
                        cid,
                        oid: o.clone(),
                    })
                    .or(Some(Op::RmColl { cid }));
            }
        };
        Some(op)
    }

    /// A malformed op that validation must refuse.
    fn invalid_op(&mut self) -> Op {
        let cid = self.colls[0];
        let oid = self.objs[0].clone();
        match self.rng.below(6) {
            0 => Op::SetAttr {
                cid,
                oid,
                name: String::new(),
                value: vec![1],
            },
            1 => Op::SetAttr {
                cid,
                oid,
                name: "big".into(),
                value: vec![0; MAX_ATTR_VALUE_LEN + 1],
            },
            2 => Op::Clone {
                cid,
                src: oid.clone(),
                dst: oid,
            },
            3 => Op::OmapSetKeys {
                cid,
                oid,
                keys: [(Vec::new(), vec![1])].into(),
            },
            4 => Op::Write {
                cid,
                oid,
                off: MAX_OBJECT_SIZE,
                data: vec![1],
                fadvise: 0,
            },
            _ => Op::Touch {
                cid,
                oid: ObjectId::new(1, "nul\0inside"),
            },
        }
    }

    /// A transaction of 1..=6 ops, generated against a scratch copy of the model so
    /// later ops see earlier ones. It stops after an op the model rejects.
    pub fn txn(&mut self, model: &Model) -> Transaction {
        let mut scratch = model.state.clone();
        let mut ops = Vec::new();
        let n = self.rng.range(1, 6);
        while (ops.len() as u64) < n {
            let Some(op) = self.op(&scratch) else {
                continue;
            };
            let fatal = Model::op(&mut scratch, &op).is_err();
            ops.push(op);
            if fatal {
                break;
            }
        }
        if self.rng.chance(1, 100) {
            let at = self.rng.index(ops.len() + 1);
            ops.insert(at, self.invalid_op());
        }
        Transaction::from_ops(ops)
    }
}

// ---------------------------------------------------------------- driver

fn describe(t: &Transaction) -> String {
    let mut s = String::new();
    for op in t.ops() {
        let mut d = format!("{op:?}");
        if d.len() > 300 {
            d.truncate(300);
            d.push_str("...");
        }
        s.push_str("    ");
        s.push_str(&d);
        s.push('\n');
    }
    s
}

/// Spot checks of read paths the state capture does not use: partial reads, missing
/// attrs, omap values and iterators, ranged listings.
fn probe(store: &TestStore<'_>, model: &Model, rng: &mut Rng, gen: &mut Gen) -> Result<(), String> {
    let st = store.store();
    let colls: Vec<_> = model.state.keys().copied().collect();
    if colls.is_empty() {
        return Ok(());
    }
    let cid = *rng.pick(&colls);
    let cs = &model.state[&cid];
    let ch = st
        .open_collection(&cid)
        .map_err(|e| format!("open {cid}: {e}"))?;
    let oid = rng.pick(&gen.objs).clone();
    match cs.objects.get(&oid) {
        None => {
            if !matches!(st.stat(&ch, &oid), Err(e) if e.kind() == ErrorKind::NotFound) {
                return Err(format!("stat of missing {oid} is not ENOENT"));
            }
            if !matches!(st.getattr(&ch, &oid, "a"), Err(e) if e.kind() == ErrorKind::NotFound) {
                return Err(format!("getattr of missing {oid} is not ENOENT"));
            }
        }
        Some(o) => {
            let size = o.data.len() as u64;
            let off = rng.below(size + 100);
            let len = rng.below(10_000);
            let got = st.read(&ch, &oid, off, len).map_err(|e| e.to_string())?;
            let s = (off.min(size)) as usize;
            let e = if len == 0 {
                size
            } else {
                (off + len).min(size)
            } as usize;
            let e = e.max(s);
            if got != o.data[s..e] {
                return Err(format!("read({off}, {len}) of {oid} differs"));
            }
            let name = gen.attr_name();
            let r = st.getattr(&ch, &oid, &name);
            match (o.attrs.get(&name), r) {
                (Some(v), Ok(g)) if *v == g => {}
                (None, Err(e)) if e.kind() == ErrorKind::NoData => {}
                (m, r) => return Err(format!("getattr {oid} {name:?}: model {m:?}, store {r:?}")),
            }
            let ask: BTreeSet<Vec<u8>> = (0..3).map(|_| gen.key()).collect();
            let vals = st
                .omap_get_values(&ch, &oid, &ask)
                .map_err(|e| e.to_string())?;
            let want: BTreeMap<_, _> = o
                .omap
                .iter()
                .filter(|(k, _)| ask.contains(*k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if vals != want {
                return Err(format!("omap_get_values {oid}: {vals:?} vs {want:?}"));
            }
            let present = st
                .omap_check_keys(&ch, &oid, &ask)
                .map_err(|e| e.to_string())?;
            if present != want.keys().cloned().collect::<BTreeSet<_>>() {
                return Err(format!("omap_check_keys {oid}"));
            }
            let mut it = st.omap_iterator(&ch, &oid).map_err(|e| e.to_string())?;
            let k = gen.key();
            let upper = rng.chance(1, 2);
            if upper {
                it.upper_bound(&k).map_err(|e| e.to_string())?;
            } else {
                it.lower_bound(&k).map_err(|e| e.to_string())?;
            }
            let mut got = Vec::new();
            while it.valid() && got.len() < 4 {
                got.push((it.key().unwrap().to_vec(), it.value().unwrap().to_vec()));
                it.next().map_err(|e| e.to_string())?;
            }
            let want: Vec<_> = o
                .omap
                .iter()
                .filter(|(x, _)| if upper { **x > k } else { **x >= k })
                .take(4)
                .map(|(a, b)| (a.clone(), b.clone()))
                .collect();
            if got != want {
                return Err(format!("omap iterator {oid} from {k:?} (upper={upper})"));
            }
        }
    }
    // A ranged, capped listing.
    let objs: Vec<&ObjectId> = cs.objects.keys().collect();
    let mut bound = || {
        if objs.is_empty() || rng.chance(1, 4) {
            gen.objs[rng.index(gen.objs.len())].clone()
        } else {
            (*objs[rng.index(objs.len())]).clone()
        }
    };
    let (mut a, mut b) = (bound(), bound());
    if a > b {
        std::mem::swap(&mut a, &mut b);
    }
    if rng.chance(1, 5) {
        b = ObjectId::max_sentinel();
    }
    let max = rng.range(1, 8) as usize;
    let (got, next) = st
        .collection_list(&ch, &a, &b, max)
        .map_err(|e| e.to_string())?;
    let in_range: Vec<ObjectId> = cs
        .objects
        .keys()
        .filter(|o| **o >= a && **o < b)
        .cloned()
        .collect();
    let want: Vec<ObjectId> = in_range.iter().take(max).cloned().collect();
    let want_next = in_range
        .get(max)
        .cloned()
        .unwrap_or_else(ObjectId::max_sentinel);
    if got != want || next != want_next {
        return Err(format!(
            "collection_list({a}, {b}, {max}) in {cid}: got {} objects next {next}, want {} next {want_next}",
            got.len(),
            want.len()
        ));
    }
    Ok(())
}

/// Seed and step count from `OSTORE_MODEL_SEED` / `OSTORE_MODEL_STEPS`, else the defaults.
pub fn params(default_seed: u64, default_steps: usize) -> (u64, usize) {
    let seed = std::env::var("OSTORE_MODEL_SEED")
        .ok()
        .and_then(|s| {
            let s = s.trim();
            match s.strip_prefix("0x") {
                Some(h) => u64::from_str_radix(h, 16).ok(),
                None => s.parse().ok(),
            }
        })
        .unwrap_or(default_seed);
    let steps = std::env::var("OSTORE_MODEL_STEPS")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(default_steps);
    (seed, steps)
}

/// Op-kind counts of a run, to show (and test) that every kind was exercised.
#[derive(Debug, Default, Clone)]
pub struct RunStats {
    pub applied: usize,
    pub rejected: usize,
    pub invalid: usize,
    pub remounts: usize,
    pub ops: BTreeMap<OpCode, usize>,
    pub rejections: BTreeMap<String, usize>,
}

/// Runs `steps` random steps against a fresh store from `factory`, comparing with the
/// model after each. Panics with the seed, the step and a diff on the first divergence.
pub fn run(factory: &dyn StoreFactory, seed: u64, steps: usize) -> RunStats {
    eprintln!(
        "model test on {}: seed={seed:#x} steps={steps} (replay: OSTORE_MODEL_SEED={seed:#x} OSTORE_MODEL_STEPS={steps})",
        factory.name()
    );
    let mut store = TestStore::new(factory);
    let mut model = Model::new();
    let mut gen = Gen::new(seed);
    let mut probe_rng = Rng::new(seed ^ 0x05ee_d0f9_e0be);
    let mut stats = RunStats::default();
    let mut recent: VecDeque<String> = VecDeque::new();
    let fail = |step: usize, what: String, recent: &VecDeque<String>| -> ! {
        let history: String = recent.iter().cloned().collect();
        panic!(
            "model divergence on {} at step {step} (seed {seed:#x}; replay with \
             OSTORE_MODEL_SEED={seed:#x} OSTORE_MODEL_STEPS={}):\n{what}\nrecent steps:\n{history}",
            factory.name(),
            step + 1
        )
    };
    // Start with two collections so early steps do something.
    for cid in &COLLS[..2] {
        let mut t = Transaction::new();
        t.create_collection(cid, 0);
        model.apply(&t).expect("model mkcoll");
        store.apply_ok(t);
    }
    for step in 0..steps {
        if gen.rng.chance(1, 150) {
            store.remount();
            stats.remounts += 1;
            recent.push_back(format!("  step {step}: remount\n"));
        } else {
            let t = gen.txn(&model);
            for op in t.ops() {
                *stats.ops.entry(op.code()).or_default() += 1;
            }
            let expect = model.apply(&t);
            let got = store.apply(t.clone()).map_err(|e| e.kind());
            recent.push_back(format!(
                "  step {step}: expect {expect:?}, store {got:?}\n{}",
                describe(&t)
            ));
            if recent.len() > 6 {
                recent.pop_front();
            }
            match expect {
                Ok(()) => stats.applied += 1,
                Err(ErrorKind::InvalidArgument | ErrorKind::TooBig | ErrorKind::FileTooBig) => {
                    stats.invalid += 1
                }
                Err(k) => {
                    stats.rejected += 1;
                    // The generator ends a transaction at its first fatal op.
                    let last = t.ops().last().map_or("none", |o| o.code().name());
                    *stats
                        .rejections
                        .entry(format!("{k} at {last}"))
                        .or_default() += 1;
                }
            }
            if expect != got {
                fail(
                    step,
                    format!("outcome: model {expect:?}, store {got:?}"),
                    &recent,
                );
            }
        }
        let actual = match state::capture(store.store()) {
            Ok(s) => s,
            Err(e) => fail(step, format!("capture failed: {e}"), &recent),
        };
        if let Some(d) = state::diff(&model.state, &actual) {
            fail(
                step,
                format!("state differs (model vs store):\n{d}"),
                &recent,
            );
        }
        if step % 7 == 0 {
            if let Err(e) = probe(&store, &model, &mut probe_rng, &mut gen) {
                fail(step, format!("probe: {e}"), &recent);
            }
        }
    }
    crate::coverage::report(&format!(
        "model test on {}: {} applied, {} rejected, {} invalid, {} remounts",
        factory.name(),
        stats.applied,
        stats.rejected,
        stats.invalid,
        stats.remounts
    ));
    eprintln!("rejections by kind and op: {:?}", stats.rejections);
    stats
}

/// Every op kind the generator must produce in a long enough run.
pub const COVERED_OPS: &[OpCode] = &OpCode::ALL;

/// Expands to the model tests for one backend: a long run from the environment's seed
/// (or a fixed default) and a second fixed seed.
#[macro_export]
macro_rules! model_tests {
    ($factory:expr) => {
        #[test]
        fn model_random_transactions() {
            let factory = $factory;
            let (seed, steps) = $crate::model::params(0x05_7013e, 10_000);
            let stats = $crate::model::run(&factory, seed, steps);
            if steps >= 10_000 {
                for code in $crate::model::COVERED_OPS {
                    assert!(
                        stats.ops.get(code).copied().unwrap_or(0) > 0,
                        "op {code:?} never generated"
                    );
                }
                assert!(stats.rejected > 0 && stats.invalid > 0 && stats.remounts > 0);
            }
        }

        #[test]
        fn model_random_transactions_second_seed() {
            let factory = $factory;
            $crate::model::run(&factory, 0xdead_beef_0bad_f00d, 2_000);
        }
    };
}
