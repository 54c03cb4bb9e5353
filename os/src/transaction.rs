//! Transactions: ordered lists of ops with Ceph's op codes, their builders,
//! their validation, and their binary encoding.
//!
//! Encoding (inside a [`crate::codec`] frame with magic `OSTX`, version 1):
//! ```text
//! u32 ncolls, then ncolls collection ids   (interned: ops refer to them by index)
//! u32 nobjs,  then nobjs object ids        (interned likewise)
//! u32 nops,   then nops ops: u32 op code followed by that op's fields
//! ```
//! See `docs/FORMATS.md` for every field.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::codec::{frame_into, unframe, Decoder, Encoder};
use crate::error::{Error, Result};
use crate::ids::{CollectionId, ObjectId, PgId, Snap};
use crate::limits;

/// Omap keys are arbitrary bytes, ordered bytewise (as Ceph's std::string keys).
pub type OmapKey = Vec<u8>;

/// Op codes, with Ceph's numbers (src/os/Transaction.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u32)]
pub enum OpCode {
    Nop = 0,
    Create = 7,
    Touch = 9,
    Write = 10,
    Zero = 11,
    Truncate = 12,
    Remove = 13,
    SetAttr = 14,
    SetAttrs = 15,
    RmAttr = 16,
    Clone = 17,
    CloneRange = 18,
    MkColl = 20,
    RmColl = 21,
    RmAttrs = 28,
    CloneRange2 = 30,
    OmapClear = 31,
    OmapSetKeys = 32,
    OmapRmKeys = 33,
    OmapSetHeader = 34,
    SplitCollection = 35,
    SplitCollection2 = 36,
    OmapRmKeyRange = 37,
    CollMoveRename = 38,
    SetAllocHint = 39,
    CollHint = 40,
    TryRename = 41,
    CollSetBits = 42,
    MergeCollection = 43,
}

impl OpCode {
    pub const ALL: [OpCode; 29] = [
        OpCode::Nop,
        OpCode::Create,
        OpCode::Touch,
        OpCode::Write,
        OpCode::Zero,
        OpCode::Truncate,
        OpCode::Remove,
        OpCode::SetAttr,
        OpCode::SetAttrs,
        OpCode::RmAttr,
        OpCode::Clone,
        OpCode::CloneRange,
        OpCode::MkColl,
        OpCode::RmColl,
        OpCode::RmAttrs,
        OpCode::CloneRange2,
        OpCode::OmapClear,
        OpCode::OmapSetKeys,
        OpCode::OmapRmKeys,
        OpCode::OmapSetHeader,
        OpCode::SplitCollection,
        OpCode::SplitCollection2,
        OpCode::OmapRmKeyRange,
        OpCode::CollMoveRename,
        OpCode::SetAllocHint,
        OpCode::CollHint,
        OpCode::TryRename,
        OpCode::CollSetBits,
        OpCode::MergeCollection,
    ];

    pub fn from_u32(v: u32) -> Option<OpCode> {
        OpCode::ALL.iter().copied().find(|c| *c as u32 == v)
    }

    /// The name Ceph's `Transaction::dump` prints, used by the JSON form.
    pub fn name(self) -> &'static str {
        match self {
            OpCode::Nop => "nop",
            OpCode::Create => "create",
            OpCode::Touch => "touch",
            OpCode::Write => "write",
            OpCode::Zero => "zero",
            OpCode::Truncate => "truncate",
            OpCode::Remove => "remove",
            OpCode::SetAttr => "setattr",
            OpCode::SetAttrs => "setattrs",
            OpCode::RmAttr => "rmattr",
            OpCode::Clone => "clone",
            OpCode::CloneRange => "clonerange",
            OpCode::MkColl => "mkcoll",
            OpCode::RmColl => "rmcoll",
            OpCode::RmAttrs => "rmattrs",
            OpCode::CloneRange2 => "clonerange2",
            OpCode::OmapClear => "omap_clear",
            OpCode::OmapSetKeys => "omap_setkeys",
            OpCode::OmapRmKeys => "omap_rmkeys",
            OpCode::OmapSetHeader => "omap_setheader",
            OpCode::SplitCollection => "split_collection",
            OpCode::SplitCollection2 => "split_collection2",
            OpCode::OmapRmKeyRange => "omap_rmkeyrange",
            OpCode::CollMoveRename => "coll_move_rename",
            OpCode::SetAllocHint => "set_alloc_hint",
            OpCode::CollHint => "coll_hint",
            OpCode::TryRename => "try_rename",
            OpCode::CollSetBits => "coll_set_bits",
            OpCode::MergeCollection => "merge_collection",
        }
    }

    pub fn from_name(s: &str) -> Option<OpCode> {
        OpCode::ALL.iter().copied().find(|c| c.name() == s)
    }
}

/// Collection hint type 1 (Ceph's COLL_HINT_EXPECTED_NUM_OBJECTS): u32 pg_num, u64 objects.
pub const COLL_HINT_EXPECTED_NUM_OBJECTS: u32 = 1;

/// One operation. Field names follow Ceph's `Transaction` methods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Nop,
    /// Ceph leaves CREATE on an existing object undefined; here it behaves as TOUCH.
    Create {
        cid: CollectionId,
        oid: ObjectId,
    },
    Touch {
        cid: CollectionId,
        oid: ObjectId,
    },
    Write {
        cid: CollectionId,
        oid: ObjectId,
        off: u64,
        data: Vec<u8>,
        fadvise: u32,
    },
    Zero {
        cid: CollectionId,
        oid: ObjectId,
        off: u64,
        len: u64,
    },
    Truncate {
        cid: CollectionId,
        oid: ObjectId,
        size: u64,
    },
    Remove {
        cid: CollectionId,
        oid: ObjectId,
    },
    SetAttr {
        cid: CollectionId,
        oid: ObjectId,
        name: String,
        value: Vec<u8>,
    },
    SetAttrs {
        cid: CollectionId,
        oid: ObjectId,
        attrs: BTreeMap<String, Vec<u8>>,
    },
    RmAttr {
        cid: CollectionId,
        oid: ObjectId,
        name: String,
    },
    RmAttrs {
        cid: CollectionId,
        oid: ObjectId,
    },
    Clone {
        cid: CollectionId,
        src: ObjectId,
        dst: ObjectId,
    },
    /// Same offset in source and destination.
    CloneRange {
        cid: CollectionId,
        src: ObjectId,
        dst: ObjectId,
        off: u64,
        len: u64,
    },
    CloneRange2 {
        cid: CollectionId,
        src: ObjectId,
        dst: ObjectId,
        src_off: u64,
        len: u64,
        dst_off: u64,
    },
    MkColl {
        cid: CollectionId,
        bits: u32,
    },
    RmColl {
        cid: CollectionId,
    },
    OmapClear {
        cid: CollectionId,
        oid: ObjectId,
    },
    OmapSetKeys {
        cid: CollectionId,
        oid: ObjectId,
        keys: BTreeMap<OmapKey, Vec<u8>>,
    },
    OmapRmKeys {
        cid: CollectionId,
        oid: ObjectId,
        keys: BTreeSet<OmapKey>,
    },
    OmapSetHeader {
        cid: CollectionId,
        oid: ObjectId,
        header: Vec<u8>,
    },
    /// Removes keys in [first, last).
    OmapRmKeyRange {
        cid: CollectionId,
        oid: ObjectId,
        first: OmapKey,
        last: OmapKey,
    },
    /// The legacy form: creates `dest`, then splits into it.
    SplitCollection {
        cid: CollectionId,
        bits: u32,
        rem: u32,
        dest: CollectionId,
    },
    /// `dest` must already exist.
    SplitCollection2 {
        cid: CollectionId,
        bits: u32,
        rem: u32,
        dest: CollectionId,
    },
    MergeCollection {
        cid: CollectionId,
        dest: CollectionId,
        bits: u32,
    },
    CollMoveRename {
        old_cid: CollectionId,
        old_oid: ObjectId,
        new_cid: CollectionId,
        new_oid: ObjectId,
    },
    TryRename {
        cid: CollectionId,
        old_oid: ObjectId,
        new_oid: ObjectId,
    },
    SetAllocHint {
        cid: CollectionId,
        oid: ObjectId,
        expected_object_size: u64,
        expected_write_size: u64,
        flags: u32,
    },
    CollHint {
        cid: CollectionId,
        hint_type: u32,
        hint: Vec<u8>,
    },
    CollSetBits {
        cid: CollectionId,
        bits: u32,
    },
}

impl Op {
    pub fn code(&self) -> OpCode {
        match self {
            Op::Nop => OpCode::Nop,
            Op::Create { .. } => OpCode::Create,
            Op::Touch { .. } => OpCode::Touch,
            Op::Write { .. } => OpCode::Write,
            Op::Zero { .. } => OpCode::Zero,
            Op::Truncate { .. } => OpCode::Truncate,
            Op::Remove { .. } => OpCode::Remove,
            Op::SetAttr { .. } => OpCode::SetAttr,
            Op::SetAttrs { .. } => OpCode::SetAttrs,
            Op::RmAttr { .. } => OpCode::RmAttr,
            Op::RmAttrs { .. } => OpCode::RmAttrs,
            Op::Clone { .. } => OpCode::Clone,
            Op::CloneRange { .. } => OpCode::CloneRange,
            Op::CloneRange2 { .. } => OpCode::CloneRange2,
            Op::MkColl { .. } => OpCode::MkColl,
            Op::RmColl { .. } => OpCode::RmColl,
            Op::OmapClear { .. } => OpCode::OmapClear,
            Op::OmapSetKeys { .. } => OpCode::OmapSetKeys,
            Op::OmapRmKeys { .. } => OpCode::OmapRmKeys,
            Op::OmapSetHeader { .. } => OpCode::OmapSetHeader,
            Op::OmapRmKeyRange { .. } => OpCode::OmapRmKeyRange,
            Op::SplitCollection { .. } => OpCode::SplitCollection,
            Op::SplitCollection2 { .. } => OpCode::SplitCollection2,
            Op::MergeCollection { .. } => OpCode::MergeCollection,
            Op::CollMoveRename { .. } => OpCode::CollMoveRename,
            Op::TryRename { .. } => OpCode::TryRename,
            Op::SetAllocHint { .. } => OpCode::SetAllocHint,
            Op::CollHint { .. } => OpCode::CollHint,
            Op::CollSetBits { .. } => OpCode::CollSetBits,
        }
    }

    /// Every collection the op names (the first is the one it acts in).
    /// The op with a write's data left out (other ops as they are): for callers that
    /// need the op's ids and shape but not its bytes.
    pub fn without_data(&self) -> Op {
        match self {
            Op::Write {
                cid,
                oid,
                off,
                fadvise,
                ..
            } => Op::Write {
                cid: *cid,
                oid: oid.clone(),
                off: *off,
                data: Vec::new(),
                fadvise: *fadvise,
            },
            op => op.clone(),
        }
    }

    pub fn collections(&self) -> Vec<CollectionId> {
        match self {
            Op::Nop => vec![],
            Op::SplitCollection { cid, dest, .. }
            | Op::SplitCollection2 { cid, dest, .. }
            | Op::MergeCollection { cid, dest, .. } => vec![*cid, *dest],
            Op::CollMoveRename {
                old_cid, new_cid, ..
            } => vec![*old_cid, *new_cid],
            Op::Create { cid, .. }
            | Op::Touch { cid, .. }
            | Op::Write { cid, .. }
            | Op::Zero { cid, .. }
            | Op::Truncate { cid, .. }
            | Op::Remove { cid, .. }
            | Op::SetAttr { cid, .. }
            | Op::SetAttrs { cid, .. }
            | Op::RmAttr { cid, .. }
            | Op::RmAttrs { cid, .. }
            | Op::Clone { cid, .. }
            | Op::CloneRange { cid, .. }
            | Op::CloneRange2 { cid, .. }
            | Op::MkColl { cid, .. }
            | Op::RmColl { cid }
            | Op::OmapClear { cid, .. }
            | Op::OmapSetKeys { cid, .. }
            | Op::OmapRmKeys { cid, .. }
            | Op::OmapSetHeader { cid, .. }
            | Op::OmapRmKeyRange { cid, .. }
            | Op::TryRename { cid, .. }
            | Op::SetAllocHint { cid, .. }
            | Op::CollHint { cid, .. }
            | Op::CollSetBits { cid, .. } => vec![*cid],
        }
    }
}

/// An ordered list of ops applied atomically.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transaction {
    ops: Vec<Op>,
}

const TXN_MAGIC: [u8; 4] = *b"OSTX";
const TXN_VERSION: u8 = 1;

impl Transaction {
    pub fn new() -> Transaction {
        Transaction { ops: Vec::new() }
    }
    pub fn from_ops(ops: Vec<Op>) -> Transaction {
        Transaction { ops }
    }
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }
    pub fn into_ops(self) -> Vec<Op> {
        self.ops
    }
    pub fn len(&self) -> usize {
        self.ops.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
    pub fn push(&mut self, op: Op) -> &mut Self {
        self.ops.push(op);
        self
    }
    /// Appends every op of `other` (Ceph's `append`).
    pub fn append(&mut self, other: Transaction) -> &mut Self {
        self.ops.extend(other.ops);
        self
    }

    /// Bytes of object data the transaction writes (for throttling and stats).
    pub fn data_bytes(&self) -> u64 {
        self.ops
            .iter()
            .map(|op| match op {
                Op::Write { data, .. } => data.len() as u64,
                _ => 0,
            })
            .sum()
    }

    // ---- builders, named after Ceph's Transaction methods ----

    pub fn nop(&mut self) -> &mut Self {
        self.push(Op::Nop)
    }
    pub fn create(&mut self, cid: &CollectionId, oid: &ObjectId) -> &mut Self {
        self.push(Op::Create {
            cid: *cid,
            oid: oid.clone(),
        })
    }
    pub fn touch(&mut self, cid: &CollectionId, oid: &ObjectId) -> &mut Self {
        self.push(Op::Touch {
            cid: *cid,
            oid: oid.clone(),
        })
    }
    pub fn write(
        &mut self,
        cid: &CollectionId,
        oid: &ObjectId,
        off: u64,
        data: impl Into<Vec<u8>>,
    ) -> &mut Self {
        self.push(Op::Write {
            cid: *cid,
            oid: oid.clone(),
            off,
            data: data.into(),
            fadvise: 0,
        })
    }
    pub fn zero(&mut self, cid: &CollectionId, oid: &ObjectId, off: u64, len: u64) -> &mut Self {
        self.push(Op::Zero {
            cid: *cid,
            oid: oid.clone(),
            off,
            len,
        })
    }
    pub fn truncate(&mut self, cid: &CollectionId, oid: &ObjectId, size: u64) -> &mut Self {
        self.push(Op::Truncate {
            cid: *cid,
            oid: oid.clone(),
            size,
        })
    }
    pub fn remove(&mut self, cid: &CollectionId, oid: &ObjectId) -> &mut Self {
        self.push(Op::Remove {
            cid: *cid,
            oid: oid.clone(),
        })
    }
    pub fn setattr(
        &mut self,
        cid: &CollectionId,
        oid: &ObjectId,
        name: &str,
        value: impl Into<Vec<u8>>,
    ) -> &mut Self {
        self.push(Op::SetAttr {
            cid: *cid,
            oid: oid.clone(),
            name: name.to_string(),
            value: value.into(),
        })
    }
    pub fn setattrs(
        &mut self,
        cid: &CollectionId,
        oid: &ObjectId,
        attrs: BTreeMap<String, Vec<u8>>,
    ) -> &mut Self {
        self.push(Op::SetAttrs {
            cid: *cid,
            oid: oid.clone(),
            attrs,
        })
    }
    pub fn rmattr(&mut self, cid: &CollectionId, oid: &ObjectId, name: &str) -> &mut Self {
        self.push(Op::RmAttr {
            cid: *cid,
            oid: oid.clone(),
            name: name.to_string(),
        })
    }
    pub fn rmattrs(&mut self, cid: &CollectionId, oid: &ObjectId) -> &mut Self {
        self.push(Op::RmAttrs {
            cid: *cid,
            oid: oid.clone(),
        })
    }
    pub fn clone_obj(&mut self, cid: &CollectionId, src: &ObjectId, dst: &ObjectId) -> &mut Self {
        self.push(Op::Clone {
            cid: *cid,
            src: src.clone(),
            dst: dst.clone(),
        })
    }
    pub fn clone_range(
        &mut self,
        cid: &CollectionId,
        src: &ObjectId,
        dst: &ObjectId,
        src_off: u64,
        len: u64,
        dst_off: u64,
    ) -> &mut Self {
        self.push(Op::CloneRange2 {
            cid: *cid,
            src: src.clone(),
            dst: dst.clone(),
            src_off,
            len,
            dst_off,
        })
    }
    pub fn create_collection(&mut self, cid: &CollectionId, bits: u32) -> &mut Self {
        self.push(Op::MkColl { cid: *cid, bits })
    }
    pub fn remove_collection(&mut self, cid: &CollectionId) -> &mut Self {
        self.push(Op::RmColl { cid: *cid })
    }
    pub fn omap_clear(&mut self, cid: &CollectionId, oid: &ObjectId) -> &mut Self {
        self.push(Op::OmapClear {
            cid: *cid,
            oid: oid.clone(),
        })
    }
    pub fn omap_setkeys(
        &mut self,
        cid: &CollectionId,
        oid: &ObjectId,
        keys: BTreeMap<OmapKey, Vec<u8>>,
    ) -> &mut Self {
        self.push(Op::OmapSetKeys {
            cid: *cid,
            oid: oid.clone(),
            keys,
        })
    }
    pub fn omap_rmkeys(
        &mut self,
        cid: &CollectionId,
        oid: &ObjectId,
        keys: BTreeSet<OmapKey>,
    ) -> &mut Self {
        self.push(Op::OmapRmKeys {
            cid: *cid,
            oid: oid.clone(),
            keys,
        })
    }
    pub fn omap_setheader(
        &mut self,
        cid: &CollectionId,
        oid: &ObjectId,
        header: impl Into<Vec<u8>>,
    ) -> &mut Self {
        self.push(Op::OmapSetHeader {
            cid: *cid,
            oid: oid.clone(),
            header: header.into(),
        })
    }
    pub fn omap_rmkeyrange(
        &mut self,
        cid: &CollectionId,
        oid: &ObjectId,
        first: impl Into<Vec<u8>>,
        last: impl Into<Vec<u8>>,
    ) -> &mut Self {
        self.push(Op::OmapRmKeyRange {
            cid: *cid,
            oid: oid.clone(),
            first: first.into(),
            last: last.into(),
        })
    }
    pub fn split_collection(
        &mut self,
        cid: &CollectionId,
        bits: u32,
        rem: u32,
        dest: &CollectionId,
    ) -> &mut Self {
        self.push(Op::SplitCollection2 {
            cid: *cid,
            bits,
            rem,
            dest: *dest,
        })
    }
    pub fn merge_collection(
        &mut self,
        cid: &CollectionId,
        dest: &CollectionId,
        bits: u32,
    ) -> &mut Self {
        self.push(Op::MergeCollection {
            cid: *cid,
            dest: *dest,
            bits,
        })
    }
    pub fn collection_move_rename(
        &mut self,
        old_cid: &CollectionId,
        old_oid: &ObjectId,
        new_cid: &CollectionId,
        new_oid: &ObjectId,
    ) -> &mut Self {
        self.push(Op::CollMoveRename {
            old_cid: *old_cid,
            old_oid: old_oid.clone(),
            new_cid: *new_cid,
            new_oid: new_oid.clone(),
        })
    }
    pub fn try_rename(
        &mut self,
        cid: &CollectionId,
        old_oid: &ObjectId,
        new_oid: &ObjectId,
    ) -> &mut Self {
        self.push(Op::TryRename {
            cid: *cid,
            old_oid: old_oid.clone(),
            new_oid: new_oid.clone(),
        })
    }
    pub fn set_alloc_hint(
        &mut self,
        cid: &CollectionId,
        oid: &ObjectId,
        expected_object_size: u64,
        expected_write_size: u64,
        flags: u32,
    ) -> &mut Self {
        self.push(Op::SetAllocHint {
            cid: *cid,
            oid: oid.clone(),
            expected_object_size,
            expected_write_size,
            flags,
        })
    }
    pub fn collection_hint(
        &mut self,
        cid: &CollectionId,
        hint_type: u32,
        hint: impl Into<Vec<u8>>,
    ) -> &mut Self {
        self.push(Op::CollHint {
            cid: *cid,
            hint_type,
            hint: hint.into(),
        })
    }
    pub fn collection_set_bits(&mut self, cid: &CollectionId, bits: u32) -> &mut Self {
        self.push(Op::CollSetBits { cid: *cid, bits })
    }

    /// Checks everything that does not depend on the store's state: names, sizes,
    /// offsets, bits. A transaction that passes can be journaled; see
    /// [`crate::limits`] for the numbers.
    pub fn validate(&self) -> Result<()> {
        for (i, op) in self.ops.iter().enumerate() {
            limits::validate_op(op)
                .map_err(|e| e.context(format!("op {i} ({})", op.code().name())))?;
        }
        Ok(())
    }

    /// Validates, then encodes into the framed binary form.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.encode_into(&mut out)?;
        Ok(out)
    }

    /// [`Transaction::encode`] appended to `out`, each byte of write data copied once
    /// (a 4 MiB write was copied four times into fresh buffers, whose page faults cost
    /// the stores' large writes, see BENCHMARKS.md).
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<()> {
        self.validate()?;
        let payload = encode_payload(&self.ops);
        let len = payload.len();
        if len as u64 > limits::MAX_TRANSACTION_BYTES {
            return Err(Error::too_big(format!(
                "transaction encodes to {len} bytes; the limit is {}",
                limits::MAX_TRANSACTION_BYTES
            )));
        }
        frame_into(out, TXN_MAGIC, TXN_VERSION, TXN_VERSION, len, |o| {
            payload.write_to(o)
        });
        Ok(())
    }

    /// Decodes a framed transaction. Any byte string gives a value or an error, never a
    /// panic; a decoded transaction is also validated.
    pub fn decode(buf: &[u8]) -> Result<Transaction> {
        let f = unframe(TXN_MAGIC, TXN_VERSION, buf, "transaction")?;
        let ops = decode_payload(f.payload).map_err(|e| e.context("transaction"))?;
        let t = Transaction { ops };
        t.validate()
            .map_err(|e| Error::corrupt(format!("decoded transaction is invalid: {e}")))?;
        Ok(t)
    }
}

// ---- encoding ----

struct Interner<'a> {
    colls: Vec<CollectionId>,
    coll_ix: HashMap<CollectionId, u32>,
    objs: Vec<&'a ObjectId>,
    obj_ix: HashMap<&'a ObjectId, u32>,
}

impl<'a> Interner<'a> {
    fn coll(&mut self, c: &CollectionId) -> u32 {
        if let Some(i) = self.coll_ix.get(c) {
            return *i;
        }
        let i = self.colls.len() as u32;
        self.colls.push(*c);
        self.coll_ix.insert(*c, i);
        i
    }
    fn obj(&mut self, o: &'a ObjectId) -> u32 {
        if let Some(i) = self.obj_ix.get(o) {
            return *i;
        }
        let i = self.objs.len() as u32;
        self.objs.push(o);
        self.obj_ix.insert(o, i);
        i
    }
}

pub fn encode_collection(e: &mut Encoder, c: &CollectionId) {
    let (kind, pg) = match c {
        CollectionId::Meta => (0u8, PgId::new(0, 0)),
        CollectionId::Pg(p) => (1, *p),
        CollectionId::Temp(p) => (2, *p),
    };
    e.u8(kind);
    e.u64(pg.pool);
    e.u32(pg.seed);
    e.i8(pg.shard.map_or(-1, |s| s as i8));
}

pub fn decode_collection(d: &mut Decoder<'_>) -> Result<CollectionId> {
    let kind = d.u8("collection type")?;
    let pool = d.u64("collection pool")?;
    let seed = d.u32("collection seed")?;
    let shard = d.i8("collection shard")?;
    let shard = match shard {
        -1 => None,
        s if s >= 0 => Some(s as u8),
        s => return Err(Error::corrupt(format!("bad collection shard {s}"))),
    };
    let pg = PgId { pool, seed, shard };
    match kind {
        0 if pool == 0 && seed == 0 && shard.is_none() => Ok(CollectionId::Meta),
        1 => Ok(CollectionId::Pg(pg)),
        2 => Ok(CollectionId::Temp(pg)),
        k => Err(Error::corrupt(format!("bad collection type {k}"))),
    }
}

const COLLECTION_BYTES: usize = 14;
const OBJECT_MIN_BYTES: usize = 1 + 1 + 8 + 4 + 4 * 3 + 8 + 8;

pub fn encode_object(e: &mut Encoder, o: &ObjectId) {
    e.bool(o.max);
    e.i8(o.shard);
    e.i64(o.pool);
    e.u32(o.hash);
    e.str(&o.namespace);
    e.str(&o.key);
    e.str(&o.name);
    e.u64(o.snap.0);
    e.u64(o.generation);
}

pub fn decode_object(d: &mut Decoder<'_>) -> Result<ObjectId> {
    Ok(ObjectId {
        max: d.bool("object max flag")?,
        shard: d.i8("object shard")?,
        pool: d.i64("object pool")?,
        hash: d.u32("object hash")?,
        namespace: d.string("object namespace")?,
        key: d.string("object key")?,
        name: d.string("object name")?,
        snap: Snap(d.u64("object snap")?),
        generation: d.u64("object generation")?,
    })
}

/// An encoded payload whose write data is still the ops': [`Payload::write_to`] copies
/// it once, into place.
struct Payload<'a> {
    /// The collection and object tables.
    tables: Vec<u8>,
    /// The ops, less the data of writes.
    body: Vec<u8>,
    /// Where each write's data goes in `body` (after its length), in order.
    holes: Vec<(usize, &'a [u8])>,
}

impl Payload<'_> {
    fn len(&self) -> usize {
        let data: usize = self.holes.iter().map(|h| h.1.len()).sum();
        self.tables.len() + self.body.len() + data
    }

    fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.tables);
        let mut at = 0;
        for &(pos, data) in &self.holes {
            out.extend_from_slice(&self.body[at..pos]);
            out.extend_from_slice(data);
            at = pos;
        }
        out.extend_from_slice(&self.body[at..]);
    }
}

fn encode_payload(ops: &[Op]) -> Payload<'_> {
    let mut it = Interner {
        colls: Vec::new(),
        coll_ix: HashMap::new(),
        objs: Vec::new(),
        obj_ix: HashMap::new(),
    };
    let mut body = Encoder::with_capacity(64 + ops.len() * 32);
    let mut holes = Vec::new();
    body.u32(ops.len() as u32);
    for op in ops {
        body.u32(op.code() as u32);
        match op {
            Op::Nop => {}
            Op::Create { cid, oid }
            | Op::Touch { cid, oid }
            | Op::Remove { cid, oid }
            | Op::RmAttrs { cid, oid }
            | Op::OmapClear { cid, oid } => {
                body.u32(it.coll(cid));
                body.u32(it.obj(oid));
            }
            Op::Write {
                cid,
                oid,
                off,
                data,
                fadvise,
            } => {
                body.u32(it.coll(cid));
                body.u32(it.obj(oid));
                body.u64(*off);
                body.u32(*fadvise);
                let n = u32::try_from(data.len()).expect("write over 4 GiB: validation missed it");
                body.u32(n);
                holes.push((body.len(), data.as_slice()));
            }
            Op::Zero { cid, oid, off, len } => {
                body.u32(it.coll(cid));
                body.u32(it.obj(oid));
                body.u64(*off);
                body.u64(*len);
            }
            Op::Truncate { cid, oid, size } => {
                body.u32(it.coll(cid));
                body.u32(it.obj(oid));
                body.u64(*size);
            }
            Op::SetAttr {
                cid,
                oid,
                name,
                value,
            } => {
                body.u32(it.coll(cid));
                body.u32(it.obj(oid));
                body.str(name);
                body.bytes(value);
            }
            Op::SetAttrs { cid, oid, attrs } => {
                body.u32(it.coll(cid));
                body.u32(it.obj(oid));
                body.u32(attrs.len() as u32);
                for (k, v) in attrs {
                    body.str(k);
                    body.bytes(v);
                }
            }
            Op::RmAttr { cid, oid, name } => {
                body.u32(it.coll(cid));
                body.u32(it.obj(oid));
                body.str(name);
            }
            Op::Clone { cid, src, dst } => {
                body.u32(it.coll(cid));
                body.u32(it.obj(src));
                body.u32(it.obj(dst));
            }
            Op::CloneRange {
                cid,
                src,
                dst,
                off,
                len,
            } => {
                body.u32(it.coll(cid));
                body.u32(it.obj(src));
                body.u32(it.obj(dst));
                body.u64(*off);
                body.u64(*len);
            }
            Op::CloneRange2 {
                cid,
                src,
                dst,
                src_off,
                len,
                dst_off,
            } => {
                body.u32(it.coll(cid));
                body.u32(it.obj(src));
                body.u32(it.obj(dst));
                body.u64(*src_off);
                body.u64(*len);
                body.u64(*dst_off);
            }
            Op::MkColl { cid, bits } | Op::CollSetBits { cid, bits } => {
                body.u32(it.coll(cid));
                body.u32(*bits);
            }
            Op::RmColl { cid } => body.u32(it.coll(cid)),
            Op::OmapSetKeys { cid, oid, keys } => {
                body.u32(it.coll(cid));
                body.u32(it.obj(oid));
                body.u32(keys.len() as u32);
                for (k, v) in keys {
                    body.bytes(k);
                    body.bytes(v);
                }
            }
            Op::OmapRmKeys { cid, oid, keys } => {
                body.u32(it.coll(cid));
                body.u32(it.obj(oid));
                body.u32(keys.len() as u32);
                for k in keys {
                    body.bytes(k);
                }
            }
            Op::OmapSetHeader { cid, oid, header } => {
                body.u32(it.coll(cid));
                body.u32(it.obj(oid));
                body.bytes(header);
            }
            Op::OmapRmKeyRange {
                cid,
                oid,
                first,
                last,
            } => {
                body.u32(it.coll(cid));
                body.u32(it.obj(oid));
                body.bytes(first);
                body.bytes(last);
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
                body.u32(it.coll(cid));
                body.u32(*bits);
                body.u32(*rem);
                body.u32(it.coll(dest));
            }
            Op::MergeCollection { cid, dest, bits } => {
                body.u32(it.coll(cid));
                body.u32(it.coll(dest));
                body.u32(*bits);
            }
            Op::CollMoveRename {
                old_cid,
                old_oid,
                new_cid,
                new_oid,
            } => {
                body.u32(it.coll(old_cid));
                body.u32(it.obj(old_oid));
                body.u32(it.coll(new_cid));
                body.u32(it.obj(new_oid));
            }
            Op::TryRename {
                cid,
                old_oid,
                new_oid,
            } => {
                body.u32(it.coll(cid));
                body.u32(it.obj(old_oid));
                body.u32(it.obj(new_oid));
            }
            Op::SetAllocHint {
                cid,
                oid,
                expected_object_size,
                expected_write_size,
                flags,
            } => {
                body.u32(it.coll(cid));
                body.u32(it.obj(oid));
                body.u64(*expected_object_size);
                body.u64(*expected_write_size);
                body.u32(*flags);
            }
            Op::CollHint {
                cid,
                hint_type,
                hint,
            } => {
                body.u32(it.coll(cid));
                body.u32(*hint_type);
                body.bytes(hint);
            }
        }
    }
    let mut e = Encoder::with_capacity(it.colls.len() * COLLECTION_BYTES + it.objs.len() * 64 + 8);
    e.u32(it.colls.len() as u32);
    for c in &it.colls {
        encode_collection(&mut e, c);
    }
    e.u32(it.objs.len() as u32);
    for o in &it.objs {
        encode_object(&mut e, o);
    }
    Payload {
        tables: e.into_inner(),
        body: body.into_inner(),
        holes,
    }
}

fn decode_payload(buf: &[u8]) -> Result<Vec<Op>> {
    let mut d = Decoder::new(buf);
    let ncolls = d.count(COLLECTION_BYTES, "collection table")?;
    let mut colls = Vec::with_capacity(ncolls);
    for _ in 0..ncolls {
        colls.push(decode_collection(&mut d)?);
    }
    let nobjs = d.count(OBJECT_MIN_BYTES, "object table")?;
    let mut objs = Vec::with_capacity(nobjs);
    for _ in 0..nobjs {
        objs.push(decode_object(&mut d)?);
    }
    let cref = |d: &mut Decoder<'_>| -> Result<CollectionId> {
        let i = d.u32("collection index")? as usize;
        colls.get(i).copied().ok_or_else(|| {
            Error::corrupt(format!(
                "collection index {i} out of range ({} collections)",
                colls.len()
            ))
        })
    };
    let oref = |d: &mut Decoder<'_>| -> Result<ObjectId> {
        let i = d.u32("object index")? as usize;
        objs.get(i).cloned().ok_or_else(|| {
            Error::corrupt(format!(
                "object index {i} out of range ({} objects)",
                objs.len()
            ))
        })
    };
    let nops = d.count(4, "op list")?;
    let mut ops = Vec::with_capacity(nops);
    for n in 0..nops {
        let raw = d.u32("op code")?;
        let code = OpCode::from_u32(raw)
            .ok_or_else(|| Error::corrupt(format!("op {n}: unknown op code {raw}")))?;
        let op = match code {
            OpCode::Nop => Op::Nop,
            OpCode::Create => Op::Create {
                cid: cref(&mut d)?,
                oid: oref(&mut d)?,
            },
            OpCode::Touch => Op::Touch {
                cid: cref(&mut d)?,
                oid: oref(&mut d)?,
            },
            OpCode::Remove => Op::Remove {
                cid: cref(&mut d)?,
                oid: oref(&mut d)?,
            },
            OpCode::RmAttrs => Op::RmAttrs {
                cid: cref(&mut d)?,
                oid: oref(&mut d)?,
            },
            OpCode::OmapClear => Op::OmapClear {
                cid: cref(&mut d)?,
                oid: oref(&mut d)?,
            },
            OpCode::Write => {
                let cid = cref(&mut d)?;
                let oid = oref(&mut d)?;
                let off = d.u64("write offset")?;
                let fadvise = d.u32("write fadvise flags")?;
                let data = d.bytes("write data")?.to_vec();
                Op::Write {
                    cid,
                    oid,
                    off,
                    data,
                    fadvise,
                }
            }
            OpCode::Zero => Op::Zero {
                cid: cref(&mut d)?,
                oid: oref(&mut d)?,
                off: d.u64("zero offset")?,
                len: d.u64("zero length")?,
            },
            OpCode::Truncate => Op::Truncate {
                cid: cref(&mut d)?,
                oid: oref(&mut d)?,
                size: d.u64("truncate size")?,
            },
            OpCode::SetAttr => Op::SetAttr {
                cid: cref(&mut d)?,
                oid: oref(&mut d)?,
                name: d.string("attr name")?,
                value: d.bytes("attr value")?.to_vec(),
            },
            OpCode::SetAttrs => {
                let cid = cref(&mut d)?;
                let oid = oref(&mut d)?;
                let n = d.count(8, "attr set")?;
                let mut attrs = BTreeMap::new();
                for _ in 0..n {
                    let k = d.string("attr name")?;
                    let v = d.bytes("attr value")?.to_vec();
                    attrs.insert(k, v);
                }
                Op::SetAttrs { cid, oid, attrs }
            }
            OpCode::RmAttr => Op::RmAttr {
                cid: cref(&mut d)?,
                oid: oref(&mut d)?,
                name: d.string("attr name")?,
            },
            OpCode::Clone => Op::Clone {
                cid: cref(&mut d)?,
                src: oref(&mut d)?,
                dst: oref(&mut d)?,
            },
            OpCode::CloneRange => Op::CloneRange {
                cid: cref(&mut d)?,
                src: oref(&mut d)?,
                dst: oref(&mut d)?,
                off: d.u64("clone offset")?,
                len: d.u64("clone length")?,
            },
            OpCode::CloneRange2 => Op::CloneRange2 {
                cid: cref(&mut d)?,
                src: oref(&mut d)?,
                dst: oref(&mut d)?,
                src_off: d.u64("clone source offset")?,
                len: d.u64("clone length")?,
                dst_off: d.u64("clone destination offset")?,
            },
            OpCode::MkColl => Op::MkColl {
                cid: cref(&mut d)?,
                bits: d.u32("collection bits")?,
            },
            OpCode::CollSetBits => Op::CollSetBits {
                cid: cref(&mut d)?,
                bits: d.u32("collection bits")?,
            },
            OpCode::RmColl => Op::RmColl { cid: cref(&mut d)? },
            OpCode::OmapSetKeys => {
                let cid = cref(&mut d)?;
                let oid = oref(&mut d)?;
                let n = d.count(8, "omap key set")?;
                let mut keys = BTreeMap::new();
                for _ in 0..n {
                    let k = d.bytes("omap key")?.to_vec();
                    let v = d.bytes("omap value")?.to_vec();
                    keys.insert(k, v);
                }
                Op::OmapSetKeys { cid, oid, keys }
            }
            OpCode::OmapRmKeys => {
                let cid = cref(&mut d)?;
                let oid = oref(&mut d)?;
                let n = d.count(4, "omap key list")?;
                let mut keys = BTreeSet::new();
                for _ in 0..n {
                    keys.insert(d.bytes("omap key")?.to_vec());
                }
                Op::OmapRmKeys { cid, oid, keys }
            }
            OpCode::OmapSetHeader => Op::OmapSetHeader {
                cid: cref(&mut d)?,
                oid: oref(&mut d)?,
                header: d.bytes("omap header")?.to_vec(),
            },
            OpCode::OmapRmKeyRange => Op::OmapRmKeyRange {
                cid: cref(&mut d)?,
                oid: oref(&mut d)?,
                first: d.bytes("omap range start")?.to_vec(),
                last: d.bytes("omap range end")?.to_vec(),
            },
            OpCode::SplitCollection | OpCode::SplitCollection2 => {
                let cid = cref(&mut d)?;
                let bits = d.u32("split bits")?;
                let rem = d.u32("split remainder")?;
                let dest = cref(&mut d)?;
                if code == OpCode::SplitCollection {
                    Op::SplitCollection {
                        cid,
                        bits,
                        rem,
                        dest,
                    }
                } else {
                    Op::SplitCollection2 {
                        cid,
                        bits,
                        rem,
                        dest,
                    }
                }
            }
            OpCode::MergeCollection => Op::MergeCollection {
                cid: cref(&mut d)?,
                dest: cref(&mut d)?,
                bits: d.u32("merge bits")?,
            },
            OpCode::CollMoveRename => Op::CollMoveRename {
                old_cid: cref(&mut d)?,
                old_oid: oref(&mut d)?,
                new_cid: cref(&mut d)?,
                new_oid: oref(&mut d)?,
            },
            OpCode::TryRename => Op::TryRename {
                cid: cref(&mut d)?,
                old_oid: oref(&mut d)?,
                new_oid: oref(&mut d)?,
            },
            OpCode::SetAllocHint => Op::SetAllocHint {
                cid: cref(&mut d)?,
                oid: oref(&mut d)?,
                expected_object_size: d.u64("expected object size")?,
                expected_write_size: d.u64("expected write size")?,
                flags: d.u32("alloc hint flags")?,
            },
            OpCode::CollHint => Op::CollHint {
                cid: cref(&mut d)?,
                hint_type: d.u32("hint type")?,
                hint: d.bytes("hint")?.to_vec(),
            },
        };
        ops.push(op);
    }
    // Bytes after the ops belong to a newer compatible encoder: ignored by design.
    Ok(ops)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Transaction {
        let c = CollectionId::pg(1, 2);
        let d = CollectionId::pg(1, 6);
        let a = ObjectId::in_collection(&c, "a");
        let b = ObjectId::in_collection(&c, "b")
            .with_namespace("ns")
            .with_key("k");
        let mut t = Transaction::new();
        t.create_collection(&c, 2)
            .touch(&c, &a)
            .write(&c, &a, 3, b"xyz".to_vec())
            .zero(&c, &a, 10, 5)
            .truncate(&c, &a, 7)
            .setattr(&c, &a, "_", b"v".to_vec())
            .clone_obj(&c, &a, &b)
            .omap_setkeys(&c, &b, [(b"k1".to_vec(), b"v1".to_vec())].into())
            .omap_rmkeyrange(&c, &b, b"a".to_vec(), b"z".to_vec())
            .split_collection(&c, 3, 2, &d)
            .set_alloc_hint(&c, &a, 4 << 20, 4096, 0)
            .collection_hint(&c, 1, vec![1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]);
        t
    }

    /// The encoding is on disk (journal entries): these bytes must never change.
    #[test]
    fn encoding_is_stable() {
        let mut t = sample();
        let c = CollectionId::pg(1, 2);
        let big: Vec<u8> = (0..70_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        t.write(&c, &ObjectId::in_collection(&c, "big"), 1 << 20, big)
            .write(&c, &ObjectId::in_collection(&c, "a"), 0, Vec::new());
        let b = t.encode().unwrap();
        assert_eq!((b.len(), crc32c::crc32c(&b)), (70_517, 1_214_729_159));
    }

    #[test]
    fn encode_decode_round_trip() {
        let t = sample();
        let b = t.encode().unwrap();
        assert_eq!(Transaction::decode(&b).unwrap(), t);
    }

    #[test]
    fn every_truncation_and_bit_flip_is_rejected_without_panicking() {
        let b = sample().encode().unwrap();
        for n in 0..b.len() {
            assert!(Transaction::decode(&b[..n]).is_err());
        }
        for i in 0..b.len() {
            let mut g = b.clone();
            g[i] ^= 0x10;
            assert!(Transaction::decode(&g).is_err(), "flip at {i} accepted");
        }
    }

    #[test]
    fn op_codes_keep_ceph_numbers() {
        assert_eq!(OpCode::Write as u32, 10);
        assert_eq!(OpCode::CloneRange2 as u32, 30);
        assert_eq!(OpCode::MergeCollection as u32, 43);
        for c in OpCode::ALL {
            assert_eq!(OpCode::from_u32(c as u32), Some(c));
            assert_eq!(OpCode::from_name(c.name()), Some(c));
        }
        assert_eq!(OpCode::from_u32(8), None);
    }
}
