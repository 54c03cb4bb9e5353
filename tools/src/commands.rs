//! What each `os-tool` command does against the store. Every command that touches
//! state parses and checks all of its input before mounting, and unmounts on every
//! path out, so bad input leaves the data directory exactly as it was.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::Path;

use ostore_os::json::{
    bytes_from_json, bytes_to_json, object_from_arg, object_from_json, transactions_from_str,
};
use ostore_os::limits::validate_object;
use ostore_os::{
    precheck, CollectionHandle, CollectionId, Error, ObjectId, ObjectStore, PgId, Result,
    StateView, Transaction,
};
use serde_json::{json, Value};

use crate::cli::{ApplyArgs, Cli, Command, GetattrArgs, ListArgs, ObjectArgs, OmapArgs, ReadArgs};
use crate::open::{open_store, read_superblock, store_for_mkfs, Mounted};
use crate::output::{self, Format};

/// Objects fetched per `collection_list` call: bounded so listing a huge collection
/// does not hold it all in memory.
const LIST_BATCH: usize = 1024;

pub fn run(cli: &Cli, out: &mut dyn Write) -> Result<()> {
    let data_path = cli
        .data_path
        .as_deref()
        .ok_or_else(|| Error::invalid("--data-path is required"))?;
    let ty = cli.store_type.as_deref();
    let fmt = cli.format;
    match &cli.command {
        Command::Mkfs => mkfs(ty, data_path, fmt, out),
        Command::Info => info(ty, data_path, fmt, out),
        Command::Apply(a) => apply(ty, data_path, a, fmt, out),
        Command::ListCollections => with_store(ty, data_path, |s| list_collections(s, fmt, out)),
        Command::List(a) => {
            let plan = ListPlan::parse(a)?;
            with_store(ty, data_path, |s| list(s, &plan, out))
        }
        Command::Stat(a) => {
            let (cid, oid) = resolve_object(a)?;
            with_store(ty, data_path, |s| stat(s, &cid, &oid, fmt, out))
        }
        Command::Read(a) => {
            let (cid, oid) = resolve_object(&a.obj)?;
            with_store(ty, data_path, |s| read(s, &cid, &oid, a, out))
        }
        Command::Getattr(a) => {
            let (cid, oid) = resolve_object(&a.obj)?;
            with_store(ty, data_path, |s| getattr(s, &cid, &oid, a, fmt, out))
        }
        Command::Getattrs(a) => {
            let (cid, oid) = resolve_object(a)?;
            with_store(ty, data_path, |s| getattrs(s, &cid, &oid, fmt, out))
        }
        Command::Omap(a) => {
            let (cid, oid) = resolve_object(&a.obj)?;
            let keys = omap_key_args(a)?;
            with_store(ty, data_path, |s| {
                omap(s, &cid, &oid, keys.as_ref(), fmt, out)
            })
        }
    }
}

fn with_store<T>(
    ty: Option<&str>,
    data_path: &Path,
    f: impl FnOnce(&dyn ObjectStore) -> Result<T>,
) -> Result<T> {
    let m = Mounted::mount(open_store(ty, data_path)?)?;
    let r = f(m.store());
    m.finish(r)
}

// ---- arguments ----

/// A collection argument: a collection id, or a bare pg id (`1.0`, as
/// ceph-objectstore-tool's `--pgid` takes) meaning that pg's head collection.
pub fn parse_collection(s: &str) -> Result<CollectionId> {
    match s.parse::<CollectionId>() {
        Ok(c) => Ok(c),
        Err(e) => match s.parse::<PgId>() {
            Ok(p) => Ok(CollectionId::Pg(p)),
            Err(_) => Err(e),
        },
    }
}

/// The parts of a pasted `list` line (`["1.0_head", {...}]`), if `arg` is one. Parsed
/// here rather than by `object_from_arg` so that a line from ceph-objectstore-tool
/// itself, which names the pg (`"1.0"`) rather than the collection, works too.
fn line_parts(arg: &str) -> Result<Option<(CollectionId, Value)>> {
    if !arg.trim_start().starts_with('[') {
        return Ok(None);
    }
    let v: Value = serde_json::from_str(arg)
        .map_err(|e| Error::invalid(format!("object id is not valid JSON: {e}")))?;
    match v {
        Value::Array(mut a) if a.len() == 2 && a[0].is_string() => {
            let o = a.pop().unwrap_or(Value::Null);
            let c = parse_collection(a[0].as_str().unwrap_or_default())?;
            Ok(Some((c, o)))
        }
        _ => Err(Error::invalid(
            "an object line must be [\"collection\", {object}], as `list` prints it",
        )),
    }
}

/// Resolves `--collection` and an object argument. The collection may come from either;
/// when both give one they must agree, because silently preferring one would read a
/// different object than the operator pasted.
fn resolve_in(collection: Option<&str>, obj: &str, what: &str) -> Result<(CollectionId, ObjectId)> {
    let given = collection
        .map(|c| parse_collection(c).map_err(|e| e.context("--collection")))
        .transpose()?;
    let line = line_parts(obj).map_err(|e| e.context(what))?;
    let cid = match (given, line.as_ref().map(|(c, _)| *c)) {
        (Some(g), Some(l)) if g != l => {
            return Err(Error::invalid(format!(
                "--collection {g} does not match collection {l} in the {what} line"
            )))
        }
        (Some(c), _) | (None, Some(c)) => c,
        (None, None) => {
            return Err(Error::invalid(format!(
                "--collection is required (or give the {what} as a line printed by `list`)"
            )))
        }
    };
    let oid = match &line {
        Some((_, o)) => object_from_json(o, Some(&cid)),
        None => object_from_arg(obj, Some(&cid)),
    }
    .map_err(|e| e.context(what))?;
    Ok((cid, oid))
}

fn resolve_object(a: &ObjectArgs) -> Result<(CollectionId, ObjectId)> {
    let (cid, oid) = resolve_in(a.collection.as_deref(), &a.object, "object")?;
    // A name the store could never hold is bad input, not a missing object.
    validate_object(&oid).map_err(|e| e.context(format!("bad object id {}", a.object)))?;
    Ok((cid, oid))
}

fn omap_key_args(a: &OmapArgs) -> Result<Option<BTreeSet<Vec<u8>>>> {
    if a.keys.is_empty() {
        return Ok(None);
    }
    a.keys
        .iter()
        .map(|k| {
            if k.trim_start().starts_with('{') {
                let v: Value = serde_json::from_str(k)
                    .map_err(|e| Error::invalid(format!("--key {k}: not valid JSON: {e}")))?;
                bytes_from_json(&v, "--key")
            } else {
                Ok(k.as_bytes().to_vec())
            }
        })
        .collect::<Result<BTreeSet<_>>>()
        .map(Some)
}

// ---- commands ----

fn superblock_json(data_path: &Path) -> Result<Value> {
    let sb = read_superblock(data_path)?;
    Ok(json!({
        "data_path": data_path.display().to_string(),
        "store_type": sb.store_type,
        "fsid": sb.fsid_string(),
        "created": sb.created,
        "created_utc": output::utc_timestamp(sb.created),
        "options": sb.options,
    }))
}

fn mkfs(ty: Option<&str>, data_path: &Path, fmt: Format, out: &mut dyn Write) -> Result<()> {
    store_for_mkfs(ty, data_path)?.mkfs()?;
    output::document(out, fmt, &superblock_json(data_path)?)
}

fn info(ty: Option<&str>, data_path: &Path, fmt: Format, out: &mut dyn Write) -> Result<()> {
    // Opening checks --type against the superblock; info needs no mount, so it still
    // works on a store whose data will not load.
    open_store(ty, data_path)?;
    output::document(out, fmt, &superblock_json(data_path)?)
}

fn list_collections(s: &dyn ObjectStore, fmt: Format, out: &mut dyn Write) -> Result<()> {
    let mut cs = s.list_collections()?;
    cs.sort();
    let v: Vec<String> = cs.iter().map(ToString::to_string).collect();
    output::document(out, fmt, &json!(v))
}

fn stat(
    s: &dyn ObjectStore,
    cid: &CollectionId,
    oid: &ObjectId,
    fmt: Format,
    out: &mut dyn Write,
) -> Result<()> {
    let ch = s.open_collection(cid)?;
    let st = s.stat(&ch, oid)?;
    output::document(
        out,
        fmt,
        &json!({
            "collection": cid.to_string(),
            "object": ostore_os::json::object_to_json(oid),
            "size": st.size,
            "allocated": st.allocated,
        }),
    )
}

fn read(
    s: &dyn ObjectStore,
    cid: &CollectionId,
    oid: &ObjectId,
    a: &ReadArgs,
    out: &mut dyn Write,
) -> Result<()> {
    let ch = s.open_collection(cid)?;
    let data = s.read(&ch, oid, a.offset, a.length)?;
    output::raw(out, &data)
}

fn getattr(
    s: &dyn ObjectStore,
    cid: &CollectionId,
    oid: &ObjectId,
    a: &GetattrArgs,
    fmt: Format,
    out: &mut dyn Write,
) -> Result<()> {
    let ch = s.open_collection(cid)?;
    let v = s.getattr(&ch, oid, &a.name)?;
    if a.raw {
        output::raw(out, &v)
    } else {
        output::document(out, fmt, &bytes_to_json(&v))
    }
}

fn getattrs(
    s: &dyn ObjectStore,
    cid: &CollectionId,
    oid: &ObjectId,
    fmt: Format,
    out: &mut dyn Write,
) -> Result<()> {
    let ch = s.open_collection(cid)?;
    let attrs = s.getattrs(&ch, oid)?;
    let m: serde_json::Map<String, Value> = attrs
        .iter()
        .map(|(k, v)| (k.clone(), bytes_to_json(v)))
        .collect();
    output::document(out, fmt, &Value::Object(m))
}

fn omap(
    s: &dyn ObjectStore,
    cid: &CollectionId,
    oid: &ObjectId,
    only: Option<&BTreeSet<Vec<u8>>>,
    fmt: Format,
    out: &mut dyn Write,
) -> Result<()> {
    let ch = s.open_collection(cid)?;
    let (header, keys) = match only {
        None => s.omap_get(&ch, oid)?,
        Some(want) => {
            let got = s.omap_get_values(&ch, oid, want)?;
            if let Some(missing) = want.iter().find(|k| !got.contains_key(*k)) {
                return Err(Error::not_found(format!(
                    "object {} in {cid} has no omap key {}",
                    oid.name,
                    bytes_to_json(missing)
                )));
            }
            (s.omap_get_header(&ch, oid)?, got)
        }
    };
    output::document(
        out,
        fmt,
        &json!({
            "header": bytes_to_json(&header),
            "keys": output::omap_keys_json(keys.iter()),
        }),
    )
}

// ---- list ----

/// Where `list` starts: an object in a given collection, inclusive or not.
#[derive(Debug)]
struct ListStart {
    cid: CollectionId,
    oid: ObjectId,
    exclusive: bool,
}

#[derive(Debug)]
struct ListPlan {
    collection: Option<CollectionId>,
    start: Option<ListStart>,
    end: Option<ObjectId>,
    max: usize,
}

impl ListPlan {
    fn parse(a: &ListArgs) -> Result<ListPlan> {
        let collection = a
            .collection
            .as_deref()
            .map(|c| parse_collection(c).map_err(|e| e.context("--collection")))
            .transpose()?;
        let start = match (&a.start, &a.after) {
            (Some(s), _) => Some((s, "--start", false)),
            (None, Some(s)) => Some((s, "--after", true)),
            (None, None) => None,
        }
        .map(|(s, what, exclusive)| {
            resolve_in(a.collection.as_deref(), s, what).map(|(cid, oid)| ListStart {
                cid,
                oid,
                exclusive,
            })
        })
        .transpose()?;
        let end = match &a.end {
            None => None,
            Some(e) => {
                let Some(c) = a.collection.as_deref() else {
                    return Err(Error::invalid("--end needs --collection"));
                };
                Some(resolve_in(Some(c), e, "--end")?.1)
            }
        };
        Ok(ListPlan {
            collection,
            start,
            end,
            max: a.max.unwrap_or(usize::MAX),
        })
    }
}

fn list(s: &dyn ObjectStore, plan: &ListPlan, out: &mut dyn Write) -> Result<()> {
    let colls = match plan.collection {
        Some(c) => vec![c],
        None => {
            let mut cs = s.list_collections()?;
            cs.sort();
            cs
        }
    };
    let mut remaining = plan.max;
    let mut lines = Vec::new();
    for cid in colls {
        // A start line from another collection resumes a listing of every collection:
        // the ones before it are done, the ones after it start from the beginning.
        let (from, skip) = match &plan.start {
            Some(st) if st.cid == cid => (st.oid.clone(), st.exclusive.then(|| st.oid.clone())),
            Some(st) if cid < st.cid => continue,
            _ => (ObjectId::min(), None),
        };
        let end = plan.end.clone().unwrap_or_else(ObjectId::max_sentinel);
        let ch = s.open_collection(&cid)?;
        let mut pos = from;
        while remaining > 0 {
            // One extra when skipping the --after object, so a page still holds --max.
            let want = remaining.min(LIST_BATCH) + usize::from(skip.is_some());
            let (objs, next) = s.collection_list(&ch, &pos, &end, want)?;
            for o in &objs {
                if remaining == 0 {
                    break;
                }
                if skip.as_ref() == Some(o) {
                    continue;
                }
                lines.push(output::list_line(&cid, o));
                remaining -= 1;
            }
            write_lines(out, &mut lines)?;
            // `next == pos` without progress would loop forever on a faulty backend.
            if next.is_max() || next >= end || objs.is_empty() || next == pos {
                break;
            }
            pos = next;
        }
        if remaining == 0 {
            break;
        }
    }
    Ok(())
}

fn write_lines(out: &mut dyn Write, lines: &mut Vec<String>) -> Result<()> {
    for l in lines.drain(..) {
        writeln!(out, "{l}").map_err(output::write_err)?;
    }
    Ok(())
}

// ---- apply ----

fn read_input(a: &ApplyArgs) -> Result<String> {
    let src = a.file.as_deref().or(a.input.as_deref()).ok_or_else(|| {
        Error::invalid("apply needs the transactions: --file FILE, or - to read stdin")
    })?;
    let bytes = if src == "-" {
        let mut b = Vec::new();
        std::io::stdin()
            .read_to_end(&mut b)
            .map_err(|e| Error::from(e).context("reading stdin"))?;
        b
    } else {
        std::fs::read(src).map_err(|e| Error::from(e).context(format!("reading {src}")))?
    };
    String::from_utf8(bytes).map_err(|e| {
        Error::invalid(format!(
            "transaction input is not UTF-8 (byte {})",
            e.utf8_error().valid_up_to()
        ))
    })
}

/// The store's state as the shared precheck sees it.
struct StoreView<'a>(&'a dyn ObjectStore);

impl StateView for StoreView<'_> {
    fn collection_exists(&self, cid: &CollectionId) -> Result<bool> {
        self.0.collection_exists(cid)
    }
    fn object_exists(&self, cid: &CollectionId, oid: &ObjectId) -> Result<bool> {
        if !self.0.collection_exists(cid)? {
            return Ok(false);
        }
        let ch = self.0.open_collection(cid)?;
        self.0.exists(&ch, oid)
    }
    fn collection_objects(&self, cid: &CollectionId) -> Result<Vec<ObjectId>> {
        let ch = self.0.open_collection(cid)?;
        let end = ObjectId::max_sentinel();
        let mut pos = ObjectId::min();
        let mut all = Vec::new();
        loop {
            let (objs, next) = self.0.collection_list(&ch, &pos, &end, LIST_BATCH)?;
            let done = next.is_max() || objs.is_empty() || next == pos;
            all.extend(objs);
            if done {
                return Ok(all);
            }
            pos = next;
        }
    }
}

/// Checks the whole file against the store's state before anything is applied, so a
/// file is all-or-nothing: the transactions are checked as one sequence of ops, which
/// the precheck decides exactly as it would decide them one after another.
fn precheck_all(s: &dyn ObjectStore, txns: &[Transaction]) -> Result<()> {
    let view = StoreView(s);
    let prefix = |n: usize| {
        Transaction::from_ops(
            txns[..n]
                .iter()
                .flat_map(|t| t.ops().iter().map(without_data))
                .collect(),
        )
    };
    let Err(e) = precheck(&prefix(txns.len()), &view) else {
        return Ok(());
    };
    if txns.len() == 1 {
        return Err(renumber(e, 0, 0, txns[0].len()));
    }
    // Only on failure: find which transaction it was, for a message that points at it.
    // A prefix that fails makes every longer one fail, so the first failing prefix can
    // be found by bisection (`lo` passes, `hi` fails).
    let (mut lo, mut hi) = (0, txns.len());
    let mut err = e;
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        match precheck(&prefix(mid), &view) {
            Ok(()) => lo = mid,
            Err(e) => {
                hi = mid;
                err = e;
            }
        }
    }
    let offset = txns[..lo].iter().map(Transaction::len).sum();
    Err(renumber(err, lo, offset, txns[lo].len()))
}

/// The precheck decides on ids and existence only, so written bytes need not be copied
/// into the combined transaction (which would double the memory of a large file).
fn without_data(op: &ostore_os::Op) -> ostore_os::Op {
    match op {
        ostore_os::Op::Write {
            cid,
            oid,
            off,
            fadvise,
            ..
        } => ostore_os::Op::Write {
            cid: *cid,
            oid: oid.clone(),
            off: *off,
            data: Vec::new(),
            fadvise: *fadvise,
        },
        op => op.clone(),
    }
}

/// Rewrites precheck's "op N (name): ..." (N counted over the whole file) as
/// "transaction K: op J (name): ..." (J counted within transaction K).
fn renumber(e: Error, k: usize, offset: usize, len: usize) -> Error {
    for j in 0..len {
        let tag = format!("op {} (", offset + j);
        if let Some(rest) = e.message().strip_prefix(&tag) {
            return Error::new(
                e.kind(),
                format!("transaction {k} rejected: op {j} ({rest}"),
            );
        }
    }
    e.context(format!("transaction {k} rejected"))
}

/// The handle a transaction is queued on: its first collection, as Ceph's OSD queues a
/// PG's transactions on that PG's collection.
fn handle_for(s: &dyn ObjectStore, t: &Transaction) -> Result<CollectionHandle> {
    let cid = t
        .ops()
        .iter()
        .flat_map(|op| op.collections())
        .next()
        .unwrap_or(CollectionId::Meta);
    if s.collection_exists(&cid)? {
        s.open_collection(&cid)
    } else {
        s.create_new_collection(&cid)
    }
}

fn apply(
    ty: Option<&str>,
    data_path: &Path,
    a: &ApplyArgs,
    fmt: Format,
    out: &mut dyn Write,
) -> Result<()> {
    let text = read_input(a)?;
    // Parsing validates every transaction (names, sizes, bits), all before mounting.
    let txns = transactions_from_str(&text)?;
    let nops: usize = txns.iter().map(Transaction::len).sum();
    let ntx = txns.len();
    with_store(ty, data_path, |s| {
        precheck_all(s, &txns)?;
        if !a.dry_run {
            for (k, t) in txns.into_iter().enumerate() {
                let ch = handle_for(s, &t)?;
                s.apply_transaction(&ch, t).map_err(|e| {
                    e.context(format!(
                        "transaction {k} rejected by the store ({k} applied before it)"
                    ))
                })?;
            }
        }
        Ok(())
    })?;
    output::document(
        out,
        fmt,
        &json!({
            "transactions": ntx,
            "ops": nops,
            "applied": !a.dry_run,
        }),
    )
}
