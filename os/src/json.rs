//! The JSON forms of object ids and transactions (documented with an example per op
//! in `docs/TRANSACTIONS.md`). JSON is for people and scripts; the journal stores the
//! binary encoding.
//!
//! Byte strings (data, attr values, omap keys and values) are written as a JSON string
//! when they are UTF-8 and as `{"hex": "..."}` otherwise; both forms are accepted.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

use crate::error::{Error, Result};
use crate::ids::{CollectionId, ObjectId, Snap, NO_GEN, NO_SHARD};
use crate::transaction::{Op, OpCode, Transaction, COLL_HINT_EXPECTED_NUM_OBJECTS};

fn bad(msg: impl Into<String>) -> Error {
    Error::invalid(msg)
}

// ---- bytes ----

pub fn bytes_to_json(b: &[u8]) -> Value {
    match std::str::from_utf8(b) {
        Ok(s) => Value::String(s.to_string()),
        Err(_) => json!({ "hex": hex(b) }),
    }
}

pub fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push_str(&format!("{x:02x}"));
    }
    s
}

pub fn unhex(s: &str) -> Result<Vec<u8>> {
    let s = s.trim();
    if !s.len().is_multiple_of(2) {
        return Err(bad(format!("hex string has odd length {}", s.len())));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            s.get(i..i + 2)
                .and_then(|p| u8::from_str_radix(p, 16).ok())
                .ok_or_else(|| bad(format!("bad hex digits at position {i}")))
        })
        .collect()
}

pub fn bytes_from_json(v: &Value, what: &str) -> Result<Vec<u8>> {
    match v {
        Value::String(s) => Ok(s.as_bytes().to_vec()),
        Value::Object(m) if m.len() == 1 && m.contains_key("hex") => match &m["hex"] {
            Value::String(h) => unhex(h).map_err(|e| e.context(what)),
            _ => Err(bad(format!("{what}: \"hex\" must be a string"))),
        },
        _ => Err(bad(format!(
            "{what}: expected a string or {{\"hex\": \"...\"}}"
        ))),
    }
}

// ---- ids ----

/// The JSON form of an object id, as ceph-objectstore-tool prints it.
pub fn object_to_json(o: &ObjectId) -> Value {
    json!({
        "oid": o.name,
        "key": o.key,
        "snapid": match o.snap {
            Snap::HEAD => json!(-2),
            Snap::SNAPDIR => json!(-1),
            Snap(n) => json!(n),
        },
        "hash": o.hash,
        "max": u8::from(o.max),
        "pool": o.pool,
        "namespace": o.namespace,
        "shard_id": o.shard,
        "generation": if o.generation == NO_GEN { json!(-1) } else { json!(o.generation) },
    })
}

fn int(v: &Value, what: &str) -> Result<i128> {
    v.as_i64()
        .map(i128::from)
        .or_else(|| v.as_u64().map(i128::from))
        .ok_or_else(|| bad(format!("{what} must be an integer, got {v}")))
}

fn u64_field(v: &Value, what: &str) -> Result<u64> {
    let n = int(v, what)?;
    u64::try_from(n).map_err(|_| bad(format!("{what} {n} is out of range")))
}

fn u32_field(v: &Value, what: &str) -> Result<u32> {
    let n = int(v, what)?;
    u32::try_from(n).map_err(|_| bad(format!("{what} {n} is out of range")))
}

fn str_field<'a>(v: &'a Value, what: &str) -> Result<&'a str> {
    v.as_str()
        .ok_or_else(|| bad(format!("{what} must be a string, got {v}")))
}

/// Parses an object id: a plain name (pool taken from `cid`, hash computed) or the
/// JSON object form, whose omitted fields default likewise.
pub fn object_from_json(v: &Value, cid: Option<&CollectionId>) -> Result<ObjectId> {
    let default_pool = cid.map_or(-1, CollectionId::default_pool);
    match v {
        Value::String(name) => Ok(ObjectId::new(default_pool, name.clone())),
        Value::Object(m) => {
            for k in m.keys() {
                if ![
                    "oid",
                    "name",
                    "key",
                    "snapid",
                    "hash",
                    "max",
                    "pool",
                    "namespace",
                    "shard_id",
                    "generation",
                ]
                .contains(&k.as_str())
                {
                    return Err(bad(format!("object id: unknown field {k:?}")));
                }
            }
            let max = match m.get("max") {
                None => false,
                Some(Value::Bool(b)) => *b,
                Some(x) => int(x, "object max")? != 0,
            };
            if max {
                return Ok(ObjectId::max_sentinel());
            }
            let name = match (m.get("oid"), m.get("name")) {
                (Some(n), None) | (None, Some(n)) => str_field(n, "object oid")?.to_string(),
                (Some(_), Some(_)) => {
                    return Err(bad("object id: give \"oid\" or \"name\", not both"))
                }
                (None, None) => return Err(bad("object id: missing \"oid\"")),
            };
            let mut o = ObjectId::new(default_pool, name);
            if let Some(p) = m.get("pool") {
                let p = int(p, "object pool")?;
                o.pool =
                    i64::try_from(p).map_err(|_| bad(format!("object pool {p} out of range")))?;
            }
            if let Some(ns) = m.get("namespace") {
                o = o.with_namespace(str_field(ns, "object namespace")?);
            }
            if let Some(k) = m.get("key") {
                o = o.with_key(str_field(k, "object key")?);
            }
            if let Some(h) = m.get("hash") {
                o.hash = u32_field(h, "object hash")?;
            }
            if let Some(s) = m.get("snapid") {
                o.snap = match s {
                    Value::String(t) if t == "head" => Snap::HEAD,
                    Value::String(t) if t == "snapdir" => Snap::SNAPDIR,
                    _ => match int(s, "object snapid")? {
                        -2 => Snap::HEAD,
                        -1 => Snap::SNAPDIR,
                        n if n >= 0 && n <= i128::from(u64::MAX) => Snap(n as u64),
                        n => return Err(bad(format!("object snapid {n} out of range"))),
                    },
                };
            }
            if let Some(s) = m.get("shard_id") {
                let s = int(s, "object shard_id")?;
                o.shard = match s {
                    -1 => NO_SHARD,
                    0..=127 => s as i8,
                    _ => return Err(bad(format!("object shard_id {s} out of range"))),
                };
            }
            if let Some(g) = m.get("generation") {
                o.generation = match int(g, "object generation")? {
                    -1 => NO_GEN,
                    n if n >= 0 && n <= i128::from(u64::MAX) => n as u64,
                    n => return Err(bad(format!("object generation {n} out of range"))),
                };
            }
            Ok(o)
        }
        _ => Err(bad(format!(
            "object id must be a name or an object, got {v}"
        ))),
    }
}

/// Parses an object id given on a command line: JSON (an object or a quoted string) or
/// a bare name.
pub fn object_from_arg(s: &str, cid: Option<&CollectionId>) -> Result<ObjectId> {
    let t = s.trim_start();
    if t.starts_with('{') || t.starts_with('"') {
        let v: Value =
            parse_strict(s).map_err(|e| bad(format!("object id is not valid JSON: {e}")))?;
        object_from_json(&v, cid)
    } else if t.starts_with('[') {
        // The `list` output form: ["1.0_head", {...}].
        let v: Value =
            parse_strict(s).map_err(|e| bad(format!("object id is not valid JSON: {e}")))?;
        match v.as_array().map(Vec::as_slice) {
            Some([c, o]) => {
                let text = str_field(c, "collection")?;
                // ceph-objectstore-tool prints the PG id ("1.0") where we print "1.0_head".
                let c: CollectionId = match text.parse() {
                    Ok(c) => c,
                    Err(e) => text
                        .parse::<crate::ids::PgId>()
                        .map(CollectionId::Pg)
                        .map_err(|_| e)?,
                };
                object_from_json(o, Some(&c))
            }
            _ => Err(bad("object id array must be [collection, object]")),
        }
    } else {
        Ok(ObjectId::new(cid.map_or(-1, CollectionId::default_pool), s))
    }
}

pub fn collection_from_json(v: &Value, what: &str) -> Result<CollectionId> {
    str_field(v, what)?
        .parse()
        .map_err(|e: Error| e.context(what))
}

// ---- transactions ----

/// The JSON form of a transaction: `{"ops": [...]}`.
pub fn transaction_to_json(t: &Transaction) -> Value {
    json!({ "ops": t.ops().iter().map(op_to_json).collect::<Vec<_>>() })
}

fn keys_to_json(keys: &BTreeMap<Vec<u8>, Vec<u8>>) -> Value {
    if keys.keys().all(|k| std::str::from_utf8(k).is_ok()) {
        let mut m = Map::new();
        for (k, v) in keys {
            m.insert(String::from_utf8_lossy(k).into_owned(), bytes_to_json(v));
        }
        Value::Object(m)
    } else {
        Value::Array(
            keys.iter()
                .map(|(k, v)| json!({"key": bytes_to_json(k), "value": bytes_to_json(v)}))
                .collect(),
        )
    }
}

pub fn op_to_json(op: &Op) -> Value {
    let mut m = Map::new();
    m.insert("op".into(), Value::String(op.code().name().into()));
    let mut put = |k: &str, v: Value| {
        m.insert(k.into(), v);
    };
    let c = |c: &CollectionId| Value::String(c.to_string());
    match op {
        Op::Nop => {}
        Op::Create { cid, oid }
        | Op::Touch { cid, oid }
        | Op::Remove { cid, oid }
        | Op::RmAttrs { cid, oid }
        | Op::OmapClear { cid, oid } => {
            put("cid", c(cid));
            put("oid", object_to_json(oid));
        }
        Op::Write {
            cid,
            oid,
            off,
            data,
            fadvise,
        } => {
            put("cid", c(cid));
            put("oid", object_to_json(oid));
            put("offset", json!(off));
            put("data", bytes_to_json(data));
            if *fadvise != 0 {
                put("fadvise_flags", json!(fadvise));
            }
        }
        Op::Zero { cid, oid, off, len } => {
            put("cid", c(cid));
            put("oid", object_to_json(oid));
            put("offset", json!(off));
            put("length", json!(len));
        }
        Op::Truncate { cid, oid, size } => {
            put("cid", c(cid));
            put("oid", object_to_json(oid));
            put("size", json!(size));
        }
        Op::SetAttr {
            cid,
            oid,
            name,
            value,
        } => {
            put("cid", c(cid));
            put("oid", object_to_json(oid));
            put("name", json!(name));
            put("value", bytes_to_json(value));
        }
        Op::SetAttrs { cid, oid, attrs } => {
            put("cid", c(cid));
            put("oid", object_to_json(oid));
            put(
                "attrs",
                Value::Object(
                    attrs
                        .iter()
                        .map(|(k, v)| (k.clone(), bytes_to_json(v)))
                        .collect(),
                ),
            );
        }
        Op::RmAttr { cid, oid, name } => {
            put("cid", c(cid));
            put("oid", object_to_json(oid));
            put("name", json!(name));
        }
        Op::Clone { cid, src, dst } => {
            put("cid", c(cid));
            put("src_oid", object_to_json(src));
            put("dst_oid", object_to_json(dst));
        }
        Op::CloneRange {
            cid,
            src,
            dst,
            off,
            len,
        } => {
            put("cid", c(cid));
            put("src_oid", object_to_json(src));
            put("dst_oid", object_to_json(dst));
            put("offset", json!(off));
            put("length", json!(len));
        }
        Op::CloneRange2 {
            cid,
            src,
            dst,
            src_off,
            len,
            dst_off,
        } => {
            put("cid", c(cid));
            put("src_oid", object_to_json(src));
            put("dst_oid", object_to_json(dst));
            put("src_offset", json!(src_off));
            put("length", json!(len));
            put("dst_offset", json!(dst_off));
        }
        Op::MkColl { cid, bits } | Op::CollSetBits { cid, bits } => {
            put("cid", c(cid));
            put("bits", json!(bits));
        }
        Op::RmColl { cid } => put("cid", c(cid)),
        Op::OmapSetKeys { cid, oid, keys } => {
            put("cid", c(cid));
            put("oid", object_to_json(oid));
            put("keys", keys_to_json(keys));
        }
        Op::OmapRmKeys { cid, oid, keys } => {
            put("cid", c(cid));
            put("oid", object_to_json(oid));
            put(
                "keys",
                Value::Array(keys.iter().map(|k| bytes_to_json(k)).collect()),
            );
        }
        Op::OmapSetHeader { cid, oid, header } => {
            put("cid", c(cid));
            put("oid", object_to_json(oid));
            put("header", bytes_to_json(header));
        }
        Op::OmapRmKeyRange {
            cid,
            oid,
            first,
            last,
        } => {
            put("cid", c(cid));
            put("oid", object_to_json(oid));
            put("first", bytes_to_json(first));
            put("last", bytes_to_json(last));
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
            put("cid", c(cid));
            put("bits", json!(bits));
            put("rem", json!(rem));
            put("dest", c(dest));
        }
        Op::MergeCollection { cid, dest, bits } => {
            put("cid", c(cid));
            put("dest", c(dest));
            put("bits", json!(bits));
        }
        Op::CollMoveRename {
            old_cid,
            old_oid,
            new_cid,
            new_oid,
        } => {
            put("old_cid", c(old_cid));
            put("old_oid", object_to_json(old_oid));
            put("new_cid", c(new_cid));
            put("new_oid", object_to_json(new_oid));
        }
        Op::TryRename {
            cid,
            old_oid,
            new_oid,
        } => {
            put("cid", c(cid));
            put("old_oid", object_to_json(old_oid));
            put("new_oid", object_to_json(new_oid));
        }
        Op::SetAllocHint {
            cid,
            oid,
            expected_object_size,
            expected_write_size,
            flags,
        } => {
            put("cid", c(cid));
            put("oid", object_to_json(oid));
            put("expected_object_size", json!(expected_object_size));
            put("expected_write_size", json!(expected_write_size));
            put("flags", json!(flags));
        }
        Op::CollHint {
            cid,
            hint_type,
            hint,
        } => {
            put("cid", c(cid));
            put("type", json!(hint_type));
            put("hint", bytes_to_json(hint));
        }
    }
    Value::Object(m)
}

/// Field access for one op object, with errors naming the op and the field.
struct Fields<'a> {
    m: &'a Map<String, Value>,
    op: &'static str,
    used: BTreeSet<&'static str>,
}

impl<'a> Fields<'a> {
    fn opt(&mut self, k: &'static str) -> Option<&'a Value> {
        self.used.insert(k);
        self.m.get(k)
    }
    fn req(&mut self, k: &'static str) -> Result<&'a Value> {
        self.opt(k)
            .ok_or_else(|| bad(format!("{}: missing field {k:?}", self.op)))
    }
    fn cid(&mut self, k: &'static str) -> Result<CollectionId> {
        let v = self.req(k)?;
        collection_from_json(v, &format!("{}: {k}", self.op))
    }
    fn oid(&mut self, k: &'static str, cid: &CollectionId) -> Result<ObjectId> {
        let v = self.req(k)?;
        object_from_json(v, Some(cid)).map_err(|e| e.context(format!("{}: {k}", self.op)))
    }
    fn u64(&mut self, k: &'static str) -> Result<u64> {
        let v = self.req(k)?;
        u64_field(v, &format!("{}: {k}", self.op))
    }
    fn u64_or(&mut self, k: &'static str, d: u64) -> Result<u64> {
        match self.opt(k) {
            None => Ok(d),
            Some(v) => u64_field(v, &format!("{}: {k}", self.op)),
        }
    }
    fn u32(&mut self, k: &'static str) -> Result<u32> {
        let v = self.req(k)?;
        u32_field(v, &format!("{}: {k}", self.op))
    }
    fn u32_or(&mut self, k: &'static str, d: u32) -> Result<u32> {
        match self.opt(k) {
            None => Ok(d),
            Some(v) => u32_field(v, &format!("{}: {k}", self.op)),
        }
    }
    fn bytes(&mut self, k: &'static str) -> Result<Vec<u8>> {
        let v = self.req(k)?;
        bytes_from_json(v, &format!("{}: {k}", self.op))
    }
    fn string(&mut self, k: &'static str) -> Result<String> {
        let v = self.req(k)?;
        Ok(str_field(v, &format!("{}: {k}", self.op))?.to_string())
    }
    fn finish(&self) -> Result<()> {
        for k in self.m.keys() {
            if k != "op" && !self.used.contains(k.as_str()) {
                return Err(bad(format!("{}: unknown field {k:?}", self.op)));
            }
        }
        Ok(())
    }
}

pub fn op_from_json(v: &Value) -> Result<Op> {
    let m = v
        .as_object()
        .ok_or_else(|| bad(format!("an op must be a JSON object, got {v}")))?;
    let code = match m.get("op") {
        Some(Value::String(s)) => {
            OpCode::from_name(s).ok_or_else(|| bad(format!("unknown op {s:?}")))?
        }
        Some(n @ Value::Number(_)) => {
            let n = u32_field(n, "op")?;
            OpCode::from_u32(n).ok_or_else(|| bad(format!("unknown op code {n}")))?
        }
        Some(x) => return Err(bad(format!("\"op\" must be a name or a number, got {x}"))),
        None => return Err(bad("op object is missing \"op\"")),
    };
    let mut f = Fields {
        m,
        op: code.name(),
        used: BTreeSet::new(),
    };
    let op = match code {
        OpCode::Nop => Op::Nop,
        OpCode::Create | OpCode::Touch | OpCode::Remove | OpCode::RmAttrs | OpCode::OmapClear => {
            let cid = f.cid("cid")?;
            let oid = f.oid("oid", &cid)?;
            match code {
                OpCode::Create => Op::Create { cid, oid },
                OpCode::Touch => Op::Touch { cid, oid },
                OpCode::Remove => Op::Remove { cid, oid },
                OpCode::RmAttrs => Op::RmAttrs { cid, oid },
                _ => Op::OmapClear { cid, oid },
            }
        }
        OpCode::Write => {
            let cid = f.cid("cid")?;
            let oid = f.oid("oid", &cid)?;
            Op::Write {
                cid,
                oid,
                off: f.u64_or("offset", 0)?,
                data: f.bytes("data")?,
                fadvise: f.u32_or("fadvise_flags", 0)?,
            }
        }
        OpCode::Zero => {
            let cid = f.cid("cid")?;
            let oid = f.oid("oid", &cid)?;
            Op::Zero {
                cid,
                oid,
                off: f.u64("offset")?,
                len: f.u64("length")?,
            }
        }
        OpCode::Truncate => {
            let cid = f.cid("cid")?;
            let oid = f.oid("oid", &cid)?;
            Op::Truncate {
                cid,
                oid,
                size: f.u64("size")?,
            }
        }
        OpCode::SetAttr => {
            let cid = f.cid("cid")?;
            let oid = f.oid("oid", &cid)?;
            Op::SetAttr {
                cid,
                oid,
                name: f.string("name")?,
                value: f.bytes("value")?,
            }
        }
        OpCode::SetAttrs => {
            let cid = f.cid("cid")?;
            let oid = f.oid("oid", &cid)?;
            let a = f
                .req("attrs")?
                .as_object()
                .ok_or_else(|| bad("setattrs: \"attrs\" must be an object of name: value"))?;
            let mut attrs = BTreeMap::new();
            for (k, v) in a {
                attrs.insert(
                    k.clone(),
                    bytes_from_json(v, &format!("setattrs: attr {k:?}"))?,
                );
            }
            Op::SetAttrs { cid, oid, attrs }
        }
        OpCode::RmAttr => {
            let cid = f.cid("cid")?;
            let oid = f.oid("oid", &cid)?;
            Op::RmAttr {
                cid,
                oid,
                name: f.string("name")?,
            }
        }
        OpCode::Clone => {
            let cid = f.cid("cid")?;
            Op::Clone {
                cid,
                src: f.oid("src_oid", &cid)?,
                dst: f.oid("dst_oid", &cid)?,
            }
        }
        OpCode::CloneRange => {
            let cid = f.cid("cid")?;
            Op::CloneRange {
                cid,
                src: f.oid("src_oid", &cid)?,
                dst: f.oid("dst_oid", &cid)?,
                off: f.u64("offset")?,
                len: f.u64("length")?,
            }
        }
        OpCode::CloneRange2 => {
            let cid = f.cid("cid")?;
            Op::CloneRange2 {
                cid,
                src: f.oid("src_oid", &cid)?,
                dst: f.oid("dst_oid", &cid)?,
                src_off: f.u64("src_offset")?,
                len: f.u64("length")?,
                dst_off: f.u64("dst_offset")?,
            }
        }
        OpCode::MkColl => Op::MkColl {
            cid: f.cid("cid")?,
            bits: f.u32_or("bits", 0)?,
        },
        OpCode::CollSetBits => Op::CollSetBits {
            cid: f.cid("cid")?,
            bits: f.u32("bits")?,
        },
        OpCode::RmColl => Op::RmColl { cid: f.cid("cid")? },
        OpCode::OmapSetKeys => {
            let cid = f.cid("cid")?;
            let oid = f.oid("oid", &cid)?;
            let mut keys = BTreeMap::new();
            match f.req("keys")? {
                Value::Object(o) => {
                    for (k, v) in o {
                        keys.insert(
                            k.as_bytes().to_vec(),
                            bytes_from_json(v, &format!("omap_setkeys: key {k:?}"))?,
                        );
                    }
                }
                Value::Array(a) => {
                    for e in a {
                        let (k, v) = match e.as_object() {
                            Some(o) if o.len() == 2 && o.contains_key("key") && o.contains_key("value") => (&o["key"], &o["value"]),
                            _ => return Err(bad("omap_setkeys: array entries must be {\"key\": ..., \"value\": ...}")),
                        };
                        keys.insert(
                            bytes_from_json(k, "omap_setkeys: key")?,
                            bytes_from_json(v, "omap_setkeys: value")?,
                        );
                    }
                }
                x => {
                    return Err(bad(format!(
                        "omap_setkeys: \"keys\" must be an object or an array, got {x}"
                    )))
                }
            }
            Op::OmapSetKeys { cid, oid, keys }
        }
        OpCode::OmapRmKeys => {
            let cid = f.cid("cid")?;
            let oid = f.oid("oid", &cid)?;
            let a = f
                .req("keys")?
                .as_array()
                .ok_or_else(|| bad("omap_rmkeys: \"keys\" must be an array"))?;
            let keys = a
                .iter()
                .map(|k| bytes_from_json(k, "omap_rmkeys: key"))
                .collect::<Result<BTreeSet<_>>>()?;
            Op::OmapRmKeys { cid, oid, keys }
        }
        OpCode::OmapSetHeader => {
            let cid = f.cid("cid")?;
            let oid = f.oid("oid", &cid)?;
            Op::OmapSetHeader {
                cid,
                oid,
                header: f.bytes("header")?,
            }
        }
        OpCode::OmapRmKeyRange => {
            let cid = f.cid("cid")?;
            let oid = f.oid("oid", &cid)?;
            Op::OmapRmKeyRange {
                cid,
                oid,
                first: f.bytes("first")?,
                last: f.bytes("last")?,
            }
        }
        OpCode::SplitCollection | OpCode::SplitCollection2 => {
            let (cid, bits, rem, dest) =
                (f.cid("cid")?, f.u32("bits")?, f.u32("rem")?, f.cid("dest")?);
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
            cid: f.cid("cid")?,
            dest: f.cid("dest")?,
            bits: f.u32("bits")?,
        },
        OpCode::CollMoveRename => {
            let old_cid = f.cid("old_cid")?;
            let old_oid = f.oid("old_oid", &old_cid)?;
            let new_cid = f.cid("new_cid")?;
            let new_oid = f.oid("new_oid", &new_cid)?;
            Op::CollMoveRename {
                old_cid,
                old_oid,
                new_cid,
                new_oid,
            }
        }
        OpCode::TryRename => {
            let cid = f.cid("cid")?;
            Op::TryRename {
                cid,
                old_oid: f.oid("old_oid", &cid)?,
                new_oid: f.oid("new_oid", &cid)?,
            }
        }
        OpCode::SetAllocHint => {
            let cid = f.cid("cid")?;
            let oid = f.oid("oid", &cid)?;
            Op::SetAllocHint {
                cid,
                oid,
                expected_object_size: f.u64_or("expected_object_size", 0)?,
                expected_write_size: f.u64_or("expected_write_size", 0)?,
                flags: f.u32_or("flags", 0)?,
            }
        }
        OpCode::CollHint => {
            let cid = f.cid("cid")?;
            let hint_type = f.u32("type")?;
            let hint = match (f.opt("hint"), f.opt("pg_num"), f.opt("expected_num_objects")) {
                (Some(h), None, None) => bytes_from_json(h, "coll_hint: hint")?,
                (None, Some(p), Some(n)) if hint_type == COLL_HINT_EXPECTED_NUM_OBJECTS => {
                    let mut b = u32_field(p, "coll_hint: pg_num")?.to_le_bytes().to_vec();
                    b.extend_from_slice(&u64_field(n, "coll_hint: expected_num_objects")?.to_le_bytes());
                    b
                }
                (None, None, None) => Vec::new(),
                _ => return Err(bad("coll_hint: give \"hint\" bytes, or \"pg_num\" and \"expected_num_objects\" with type 1")),
            };
            Op::CollHint {
                cid,
                hint_type,
                hint,
            }
        }
    };
    f.finish()?;
    Ok(op)
}

/// Parses one transaction: `{"ops": [...]}` or a bare array of ops. The result is
/// validated.
pub fn transaction_from_json(v: &Value) -> Result<Transaction> {
    let ops = match v {
        Value::Array(a) => a,
        Value::Object(m) => {
            if let Some(k) = m.keys().find(|k| k.as_str() != "ops") {
                return Err(bad(format!(
                    "transaction: unknown field {k:?} (expected {{\"ops\": [...]}})"
                )));
            }
            m.get("ops")
                .and_then(Value::as_array)
                .ok_or_else(|| bad("transaction: missing \"ops\" array"))?
        }
        _ => {
            return Err(bad(
                "a transaction must be {\"ops\": [...]} or an array of ops",
            ))
        }
    };
    let mut t = Transaction::new();
    for (i, op) in ops.iter().enumerate() {
        t.push(op_from_json(op).map_err(|e| e.context(format!("op {i}")))?);
    }
    t.validate()?;
    Ok(t)
}

/// Parses JSON text, refusing an object that names a key twice (serde_json keeps the
/// last silently, so `{"offset": 0, "offset": 4096}` would write where the author did
/// not look). The error says which key.
pub fn parse_strict(s: &str) -> std::result::Result<Value, serde_json::Error> {
    serde_json::from_str::<Strict>(s).map(|v| v.0)
}

/// A [`Value`] built by a visitor that refuses duplicate keys.
struct Strict(Value);

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> std::result::Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> std::result::Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> std::result::Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> std::result::Result<Value, D::Error> {
        serde::Deserialize::deserialize(d).map(|v: Strict| v.0)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> std::result::Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(k) = map.next_key::<String>()? {
            let Strict(v) = map.next_value()?;
            // Ceph's own object JSON repeats `"max"` with the same value, and a pasted
            // `list` line must parse: only a repeat that disagrees is ambiguous.
            match out.get(&k) {
                Some(old) if *old != v => {
                    return Err(serde::de::Error::custom(format!(
                        "the key {k:?} appears twice in one object, with different values"
                    )));
                }
                _ => {
                    out.insert(k, v);
                }
            }
        }
        Ok(Value::Object(out))
    }
}

/// Parses a document holding one transaction or several: `{"ops": [...]}`, an array
/// of ops, or an array of `{"ops": [...]}` objects (applied in order).
pub fn transactions_from_str(s: &str) -> Result<Vec<Transaction>> {
    let v: Value =
        parse_strict(s).map_err(|e| bad(format!("transaction JSON is malformed: {e}")))?;
    match &v {
        Value::Array(a) if a.iter().any(|x| x.get("ops").is_some()) => a
            .iter()
            .enumerate()
            .map(|(i, x)| {
                transaction_from_json(x).map_err(|e| e.context(format!("transaction {i}")))
            })
            .collect(),
        _ => Ok(vec![transaction_from_json(&v)?]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_op_round_trips_through_json() {
        let c = CollectionId::pg(1, 2);
        let d = CollectionId::temp(1, 2);
        let o = ObjectId::in_collection(&c, "obj")
            .with_namespace("ns")
            .with_snap(Snap(4));
        let p = ObjectId::in_collection(&c, "p")
            .with_key("loc")
            .with_shard(2)
            .with_generation(9);
        let ops = vec![
            Op::Nop,
            Op::Create {
                cid: c,
                oid: o.clone(),
            },
            Op::Touch {
                cid: c,
                oid: o.clone(),
            },
            Op::Write {
                cid: c,
                oid: o.clone(),
                off: 5,
                data: vec![0xff, 0, 1],
                fadvise: 2,
            },
            Op::Zero {
                cid: c,
                oid: o.clone(),
                off: 1,
                len: 2,
            },
            Op::Truncate {
                cid: c,
                oid: o.clone(),
                size: 3,
            },
            Op::Remove {
                cid: c,
                oid: o.clone(),
            },
            Op::SetAttr {
                cid: c,
                oid: o.clone(),
                name: "_".into(),
                value: b"v".to_vec(),
            },
            Op::SetAttrs {
                cid: c,
                oid: o.clone(),
                attrs: [("a".to_string(), vec![0x80])].into(),
            },
            Op::RmAttr {
                cid: c,
                oid: o.clone(),
                name: "a".into(),
            },
            Op::RmAttrs {
                cid: c,
                oid: o.clone(),
            },
            Op::Clone {
                cid: c,
                src: o.clone(),
                dst: p.clone(),
            },
            Op::CloneRange {
                cid: c,
                src: o.clone(),
                dst: p.clone(),
                off: 1,
                len: 2,
            },
            Op::CloneRange2 {
                cid: c,
                src: o.clone(),
                dst: p.clone(),
                src_off: 1,
                len: 2,
                dst_off: 3,
            },
            Op::MkColl { cid: d, bits: 5 },
            Op::RmColl { cid: d },
            Op::OmapClear {
                cid: c,
                oid: o.clone(),
            },
            Op::OmapSetKeys {
                cid: c,
                oid: o.clone(),
                keys: [(vec![0x80, 1], b"x".to_vec())].into(),
            },
            Op::OmapSetKeys {
                cid: c,
                oid: o.clone(),
                keys: [(b"k".to_vec(), b"x".to_vec())].into(),
            },
            Op::OmapRmKeys {
                cid: c,
                oid: o.clone(),
                keys: [b"k".to_vec()].into(),
            },
            Op::OmapSetHeader {
                cid: c,
                oid: o.clone(),
                header: b"h".to_vec(),
            },
            Op::OmapRmKeyRange {
                cid: c,
                oid: o.clone(),
                first: b"a".to_vec(),
                last: b"b".to_vec(),
            },
            Op::SplitCollection {
                cid: c,
                bits: 3,
                rem: 2,
                dest: CollectionId::pg(1, 6),
            },
            Op::SplitCollection2 {
                cid: c,
                bits: 3,
                rem: 2,
                dest: CollectionId::pg(1, 6),
            },
            Op::MergeCollection {
                cid: CollectionId::pg(1, 6),
                dest: c,
                bits: 2,
            },
            Op::CollMoveRename {
                old_cid: c,
                old_oid: o.clone(),
                new_cid: d,
                new_oid: p.clone(),
            },
            Op::TryRename {
                cid: c,
                old_oid: o.clone(),
                new_oid: p.clone(),
            },
            Op::SetAllocHint {
                cid: c,
                oid: o.clone(),
                expected_object_size: 1,
                expected_write_size: 2,
                flags: 3,
            },
            Op::CollHint {
                cid: c,
                hint_type: 1,
                hint: vec![1, 2, 3],
            },
            Op::CollSetBits { cid: c, bits: 4 },
        ];
        let codes: BTreeSet<OpCode> = ops.iter().map(Op::code).collect();
        assert_eq!(codes.len(), OpCode::ALL.len(), "every op code is covered");
        let t = Transaction::from_ops(ops);
        let j = transaction_to_json(&t);
        let back = transaction_from_json(&j).unwrap();
        assert_eq!(back, t);
        let text = serde_json::to_string(&j).unwrap();
        assert_eq!(transactions_from_str(&text).unwrap(), vec![t]);
    }

    #[test]
    fn plain_names_take_the_collection_pool() {
        let t = transactions_from_str(r#"{"ops":[{"op":"touch","cid":"3.1_head","oid":"x"}]}"#)
            .unwrap();
        match &t[0].ops()[0] {
            Op::Touch { oid, .. } => assert_eq!(*oid, ObjectId::new(3, "x")),
            o => panic!("unexpected {o:?}"),
        }
    }

    #[test]
    fn bad_documents_name_the_problem() {
        for (doc, needle) in [
            ("{", "malformed"),
            (r#"{"ops":[{"op":"frobnicate"}]}"#, "unknown op"),
            (
                r#"{"ops":[{"op":"touch","cid":"1.0_head"}]}"#,
                "missing field \"oid\"",
            ),
            (
                r#"{"ops":[{"op":"touch","cid":"bogus","oid":"x"}]}"#,
                "bad collection id",
            ),
            (
                r#"{"ops":[{"op":"touch","cid":"1.0_head","oid":"x","extra":1}]}"#,
                "unknown field",
            ),
            (
                r#"{"ops":[{"op":"write","cid":"1.0_head","oid":"x","data":{"hex":"zz"}}]}"#,
                "hex",
            ),
            (
                r#"{"ops":[{"op":"zero","cid":"1.0_head","oid":"x","offset":-1,"length":1}]}"#,
                "out of range",
            ),
            (
                r#"{"ops":[{"op":"write","cid":"1.0_head","oid":"x","offset":0,"offset":4096,"data":"a"}]}"#,
                "the key \"offset\" appears twice",
            ),
            (
                r#"{"ops":[{"op":"touch","cid":"1.0_head","oid":{"name":"a","name":"b"}}]}"#,
                "the key \"name\" appears twice",
            ),
            (
                r#"{"ops":[],"ops":[{"op":"touch","cid":"1.0_head","oid":"x"}]}"#,
                "appears twice",
            ),
        ] {
            let e = transactions_from_str(doc).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument, "{doc}");
            assert!(e.to_string().contains(needle), "{doc}: {e}");
        }
    }

    #[test]
    fn strict_parsing_reads_what_serde_json_reads() {
        let doc = r#"{"a":[1,-2,18446744073709551615,-9223372036854775808,1.5e300,null,true,
            "s\u00e9",{"b":{}},[]],"c":"","d":{"a":1}}"#;
        let strict = parse_strict(doc).unwrap();
        assert_eq!(strict, serde_json::from_str::<Value>(doc).unwrap());
        // The same key in different objects is fine; only a repeat in one is refused.
        let e = parse_strict(r#"{"a":1,"b":{"a":2},"a":3}"#).unwrap_err();
        assert!(
            e.to_string().contains(r#"the key "a" appears twice"#),
            "{e}"
        );
        assert!(parse_strict("[[[[[[").is_err());
        let deep = "[".repeat(100_000);
        assert!(
            parse_strict(&deep).is_err(),
            "nesting is bounded, no stack overflow"
        );
    }

    #[test]
    fn object_ids_round_trip_through_json() {
        let o = ObjectId::new(7, "n")
            .with_namespace("ns")
            .with_key("k")
            .with_snap(Snap::SNAPDIR)
            .with_shard(1)
            .with_generation(3);
        assert_eq!(object_from_json(&object_to_json(&o), None).unwrap(), o);
        let line = serde_json::to_string(&json!(["7.0_head", object_to_json(&o)])).unwrap();
        assert_eq!(object_from_arg(&line, None).unwrap(), o);
        let ceph_line = serde_json::to_string(&json!(["7.0", {"oid": "n", "pool": 7}])).unwrap();
        assert_eq!(
            object_from_arg(&ceph_line, None).unwrap(),
            ObjectId::new(7, "n")
        );
        assert_eq!(
            object_from_arg("plain", Some(&CollectionId::pg(7, 0))).unwrap(),
            ObjectId::new(7, "plain")
        );
    }
}
