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

use crate::cli::{
    ApplyArgs, Cli, Command, ExportArgs, GetValueArgs, GetattrArgs, ImportArgs, JournalCommand,
    KeyArgs, ListArgs, NameArgs, ObjectArgs, OmapArgs, ReadArgs, SetBytesArgs, SetHeaderArgs,
    SetKeyArgs, SetValueArgs, ValueSource,
};
use crate::open::{open_store, read_superblock, store_for_mkfs, Mounted, StoreConfig};
use crate::output::{self, Format, Progress};

/// Objects fetched per `collection_list` call: bounded so listing a huge collection
/// does not hold it all in memory.
const LIST_BATCH: usize = 1024;

pub fn run(cli: &Cli, out: &mut dyn Write) -> Result<()> {
    let data_path = cli
        .data_path
        .as_deref()
        .ok_or_else(|| Error::invalid("--data-path is required"))?;
    let cfg = StoreConfig {
        store_type: cli.store_type.clone(),
        data_path: data_path.to_path_buf(),
        journal_path: cli.journal_path.clone(),
    };
    let cfg = &cfg;
    let fmt = cli.format;
    match &cli.command {
        Command::Mkfs => mkfs(cfg, fmt, out),
        Command::Info => info(cfg, fmt, out),
        Command::Apply(a) => apply(cfg, a, fmt, out),
        Command::ListCollections => with_store(cfg, |s| list_collections(s, fmt, out)),
        Command::List(a) => {
            let plan = ListPlan::parse(a)?;
            with_store(cfg, |s| list(s, &plan, out))
        }
        Command::Stat(a) => {
            let (cid, oid) = resolve_object(a)?;
            with_store(cfg, |s| stat(s, &cid, &oid, fmt, out))
        }
        Command::Read(a) => {
            let (cid, oid) = resolve_object(&a.obj)?;
            with_store(cfg, |s| read(s, &cid, &oid, a, out))
        }
        Command::Getattr(a) => {
            let (cid, oid) = resolve_object(&a.obj)?;
            with_store(cfg, |s| getattr(s, &cid, &oid, a, fmt, out))
        }
        Command::Getattrs(a) => {
            let (cid, oid) = resolve_object(a)?;
            with_store(cfg, |s| getattrs(s, &cid, &oid, fmt, out))
        }
        Command::Omap(a) => {
            let (cid, oid) = resolve_object(&a.obj)?;
            let keys = omap_key_args(a)?;
            with_store(cfg, |s| omap(s, &cid, &oid, keys.as_ref(), fmt, out))
        }
        Command::Fsck(a) => fsck(cfg, a.deep, fmt, out),
        Command::Repair => repair(cfg, fmt, out),
        Command::Journal(JournalCommand::Dump(a)) => journal_dump(cfg, a.volume, a.ops, fmt, out),
        Command::Journal(JournalCommand::Replay) => journal_replay(cfg, fmt, out),
        Command::SetBytes(a) => set_bytes(cfg, a, fmt, out),
        Command::SetAttr(a) => set_attr(cfg, a, fmt, out),
        Command::RmAttr(a) => rm_attr(cfg, a, fmt, out),
        Command::ListOmap(a) => {
            let (cid, oid) = resolve_object(a)?;
            with_store(cfg, |s| list_omap(s, &cid, &oid, out))
        }
        Command::GetOmap(a) => get_omap(cfg, a, fmt, out),
        Command::SetOmap(a) => set_omap(cfg, a, fmt, out),
        Command::RmOmap(a) => rm_omap(cfg, a, fmt, out),
        Command::GetOmaphdr(a) => get_omaphdr(cfg, a, fmt, out),
        Command::SetOmaphdr(a) => set_omaphdr(cfg, a, fmt, out),
        Command::Remove(a) => remove(cfg, a, fmt, out),
        Command::Export(a) => export(cfg, a, fmt, out),
        Command::Import(a) => import(cfg, a, fmt, out),
        Command::Bench(a) => bench(cfg, a, fmt, out),
    }
}

fn with_store<T>(cfg: &StoreConfig, f: impl FnOnce(&dyn ObjectStore) -> Result<T>) -> Result<T> {
    let m = Mounted::mount(open_store(cfg)?)?;
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
    let v: Value = ostore_os::json::parse_strict(arg)
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
                let v: Value = ostore_os::json::parse_strict(k)
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
        "journal_id": sb.journal_id.map(|m| format!("{m:#010x}")),
    }))
}

fn mkfs(cfg: &StoreConfig, fmt: Format, out: &mut dyn Write) -> Result<()> {
    store_for_mkfs(cfg)?.mkfs()?;
    output::document(out, fmt, &superblock_json(&cfg.data_path)?)
}

fn info(cfg: &StoreConfig, fmt: Format, out: &mut dyn Write) -> Result<()> {
    // Opening checks --type against the superblock; info needs no mount, so it still
    // works on a store whose data will not load.
    open_store(cfg)?;
    let mut v = superblock_json(&cfg.data_path)?;
    let vfs = ostore_journal::RealFs::new();
    v["committed_seq"] = match ostore_os::journaling::read_checkpoint(&vfs, &cfg.data_path) {
        Ok(s) => json!(s),
        Err(e) => json!({"error": e.to_string()}),
    };
    let jp = cfg.journal_dir();
    v["journal"] = match ostore_journal::read_info(&vfs, &jp) {
        Ok(i) => {
            let vols = ostore_journal::scan::list_volumes(&vfs, &jp).unwrap_or_default();
            json!({
                "path": jp.display().to_string(),
                "sector_size": i.geometry.sector_size,
                "volume_size": i.geometry.volume_size,
                "toc_len": i.geometry.toc_len,
                "volumes": vols.len(),
                "first_volume": vols.first(),
                "last_volume": vols.last(),
                "bytes": vols.len() as u64 * i.geometry.volume_size,
            })
        }
        Err(e) => json!({"path": jp.display().to_string(), "error": e.to_string()}),
    };
    v["data_bytes_on_disk"] = json!(dir_bytes(&cfg.data_path));
    output::document(out, fmt, &v)
}

/// Bytes of regular files under `dir` (what the store occupies).
fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(t) if t.is_file() => total += e.metadata().map(|m| m.len()).unwrap_or(0),
                _ => {}
            }
        }
    }
    total
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
                // The precheck decides on ids and existence only, so written bytes need not
                // be copied into the combined transaction (double the memory of a large file).
                .flat_map(|t| t.ops().iter().map(ostore_os::Op::without_data))
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

fn apply(cfg: &StoreConfig, a: &ApplyArgs, fmt: Format, out: &mut dyn Write) -> Result<()> {
    let text = read_input(a)?;
    // Parsing validates every transaction (names, sizes, bits), all before mounting.
    let txns = transactions_from_str(&text)?;
    let nops: usize = txns.iter().map(Transaction::len).sum();
    let ntx = txns.len();
    with_store(cfg, |s| {
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

// ---- checks ----

fn report_json(rep: &ostore_os::FsckReport, extra: Value) -> Value {
    let mut v = json!({
        "clean": rep.is_clean(),
        "errors": rep.errors,
        "warnings": rep.warnings,
        "checked": rep.checked,
    });
    if !rep.repaired.is_empty() {
        v["repaired"] = json!(rep.repaired);
    }
    if let (Value::Object(m), Value::Object(e)) = (&mut v, extra) {
        m.extend(e);
    }
    v
}

/// Prints the report, then fails with EUCLEAN when it holds errors, so scripts see a
/// non-zero exit and people see every finding.
fn finish_report(
    rep: &ostore_os::FsckReport,
    v: &Value,
    fmt: Format,
    out: &mut dyn Write,
) -> Result<()> {
    output::document(out, fmt, v)?;
    if rep.is_clean() {
        Ok(())
    } else {
        Err(Error::corrupt(format!(
            "fsck found {} error(s); the first: {}",
            rep.errors.len(),
            rep.errors[0]
        )))
    }
}

fn mount_json(s: &dyn ObjectStore) -> Value {
    s.mount_report()
        .map(|r| serde_json::to_value(r).unwrap_or(Value::Null))
        .unwrap_or(Value::Null)
}

fn fsck(cfg: &StoreConfig, deep: bool, fmt: Format, out: &mut dyn Write) -> Result<()> {
    let (rep, mount) = with_store(cfg, |s| {
        let mut p = Progress::new("fsck", "objects");
        let rep = ostore_os::fsck::fsck(s, deep, &mut |n| p.set(n))?;
        p.finish();
        Ok((rep, mount_json(s)))
    })?;
    let v = report_json(&rep, json!({"deep": deep, "mount": mount}));
    finish_report(&rep, &v, fmt, out)
}

fn repair(cfg: &StoreConfig, fmt: Format, out: &mut dyn Write) -> Result<()> {
    let (rep, mount) = with_store(cfg, |s| {
        let mut rep = s.repair()?;
        let repaired = std::mem::take(&mut rep.repaired);
        // Check again after the repair: what is left is what could not be repaired.
        let mut p = Progress::new("fsck", "objects");
        let mut after = ostore_os::fsck::fsck(s, true, &mut |n| p.set(n))?;
        p.finish();
        after.repaired = repaired;
        Ok((after, mount_json(s)))
    })?;
    let v = report_json(&rep, json!({"mount": mount}));
    finish_report(&rep, &v, fmt, out)
}

// ---- journal ----

fn journal_dump(
    cfg: &StoreConfig,
    volume: Option<u64>,
    ops: bool,
    fmt: Format,
    out: &mut dyn Write,
) -> Result<()> {
    // No mount, no superblock check beyond the directory: this must work on a store
    // that will not mount.
    let dir = cfg.journal_dir();
    let (doc, mut damage) = crate::journal_cmd::dump(&dir, volume, ops).map_err(|e| {
        // A formatted store without its journal is damaged, as mount reports it.
        let formatted = cfg
            .data_path
            .join(ostore_os::superblock::FILE_NAME)
            .exists();
        if e.kind() == ostore_os::ErrorKind::NotFound && formatted && !dir.exists() {
            ostore_os::Error::corrupt(format!(
                "the store is formatted but its journal directory {} is missing",
                dir.display()
            ))
        } else {
            e
        }
    })?;
    if damage.is_none() {
        // Volumes deleted from the directory leave nothing for the scan to see; the
        // checkpoint says which must exist.
        let vfs = ostore_journal::RealFs::new();
        damage = ostore_os::journaling::read_checkpoint_record(&vfs, &cfg.data_path)
            .and_then(|rec| {
                ostore_os::journaling::check_journal_volumes(&vfs, &cfg.journal_dir(), &rec)
            })
            .err();
    }
    output::document(out, fmt, &doc)?;
    match damage {
        None => Ok(()),
        Some(e) => Err(e.context("the journal is damaged (dumped up to the damage)")),
    }
}

fn journal_replay(cfg: &StoreConfig, fmt: Format, out: &mut dyn Write) -> Result<()> {
    let mut p = Progress::spinner("replaying the journal");
    let mount = with_store(cfg, |s| Ok(mount_json(s)))?;
    p.finish();
    // Unmounting checkpointed what was replayed, so the journal is now empty of it.
    output::document(out, fmt, &json!({"replayed": mount, "checkpointed": true}))
}

// ---- single-object edits ----

/// Reads a whole file, or stdin for `-`.
fn read_source(path: &str) -> Result<Vec<u8>> {
    if path == "-" {
        let mut b = Vec::new();
        std::io::stdin()
            .read_to_end(&mut b)
            .map_err(|e| Error::from(e).context("reading stdin"))?;
        Ok(b)
    } else {
        std::fs::read(path).map_err(|e| Error::from(e).context(format!("reading {path}")))
    }
}

/// A key or value given as text, or as a JSON bytes form (`{"hex": "..."}`).
fn text_or_bytes(s: &str, what: &str) -> Result<Vec<u8>> {
    if s.trim_start().starts_with('{') {
        let v: Value = ostore_os::json::parse_strict(s)
            .map_err(|e| Error::invalid(format!("{what} {s}: not valid JSON: {e}")))?;
        bytes_from_json(&v, what)
    } else {
        Ok(s.as_bytes().to_vec())
    }
}

fn value_of(v: &ValueSource) -> Result<Vec<u8>> {
    match (&v.value, &v.file) {
        (_, Some(f)) => read_source(f),
        (Some(s), None) => text_or_bytes(s, "VALUE"),
        (None, None) => Err(Error::invalid(
            "give the VALUE, or --file FILE (- for stdin)",
        )),
    }
}

/// Applies one transaction built for an existing object, after checking the object
/// exists (ENOENT otherwise, so an edit never creates an object by accident).
fn edit(
    cfg: &StoreConfig,
    a: &ObjectArgs,
    fmt: Format,
    out: &mut dyn Write,
    build: impl FnOnce(&CollectionId, &ObjectId) -> Result<Transaction>,
) -> Result<()> {
    let (cid, oid) = resolve_object(a)?;
    let t = build(&cid, &oid)?;
    t.validate()?;
    with_store(cfg, |s| {
        let ch = s.open_collection(&cid)?;
        if !s.exists(&ch, &oid)? {
            return Err(Error::not_found(format!(
                "object {} does not exist in {cid}",
                a.object
            )));
        }
        s.apply_transaction(&ch, t)
    })?;
    output::document(
        out,
        fmt,
        &json!({"collection": cid.to_string(), "object": ostore_os::json::object_to_json(&oid), "applied": true}),
    )
}

fn set_bytes(cfg: &StoreConfig, a: &SetBytesArgs, fmt: Format, out: &mut dyn Write) -> Result<()> {
    let data = read_source(&a.file)?;
    let (cid, oid) = resolve_object(&a.obj)?;
    // set-bytes creates the object if needed, as ceph-objectstore-tool's does.
    let mut t = Transaction::new();
    t.touch(&cid, &oid).truncate(&cid, &oid, 0);
    if !data.is_empty() {
        t.write(&cid, &oid, 0, data);
    }
    t.validate()?;
    with_store(cfg, |s| {
        let ch = s.open_collection(&cid)?;
        s.apply_transaction(&ch, t)
    })?;
    output::document(
        out,
        fmt,
        &json!({"collection": cid.to_string(), "applied": true}),
    )
}

fn set_attr(cfg: &StoreConfig, a: &SetValueArgs, fmt: Format, out: &mut dyn Write) -> Result<()> {
    let v = value_of(&a.value)?;
    edit(cfg, &a.obj, fmt, out, |c, o| {
        let mut t = Transaction::new();
        t.setattr(c, o, &a.name, v);
        Ok(t)
    })
}

fn rm_attr(cfg: &StoreConfig, a: &NameArgs, fmt: Format, out: &mut dyn Write) -> Result<()> {
    let (cid, oid) = resolve_object(&a.obj)?;
    // RMATTR of a missing attr is tolerated inside a transaction (ENODATA skipped);
    // an operator asking for it deserves the ENODATA.
    with_store(cfg, |s| {
        let ch = s.open_collection(&cid)?;
        s.getattr(&ch, &oid, &a.name).map(|_| ())
    })?;
    edit(cfg, &a.obj, fmt, out, |c, o| {
        let mut t = Transaction::new();
        t.rmattr(c, o, &a.name);
        Ok(t)
    })
}

fn list_omap(
    s: &dyn ObjectStore,
    cid: &CollectionId,
    oid: &ObjectId,
    out: &mut dyn Write,
) -> Result<()> {
    let ch = s.open_collection(cid)?;
    let mut it = s.omap_iterator(&ch, oid)?;
    it.seek_to_first()?;
    while it.valid() {
        if let Some(k) = it.key() {
            writeln!(out, "{}", bytes_to_json(k)).map_err(output::write_err)?;
        }
        it.next()?;
    }
    Ok(())
}

fn get_omap(cfg: &StoreConfig, a: &KeyArgs, fmt: Format, out: &mut dyn Write) -> Result<()> {
    let (cid, oid) = resolve_object(&a.obj)?;
    let key = text_or_bytes(&a.key, "KEY")?;
    let v = with_store(cfg, |s| {
        let ch = s.open_collection(&cid)?;
        let want: BTreeSet<Vec<u8>> = [key.clone()].into();
        s.omap_get_values(&ch, &oid, &want)?
            .remove(&key)
            .ok_or_else(|| {
                Error::not_found(format!("object {} has no omap key {}", a.obj.object, a.key))
            })
    })?;
    if a.raw {
        output::raw(out, &v)
    } else {
        output::document(out, fmt, &bytes_to_json(&v))
    }
}

fn set_omap(cfg: &StoreConfig, a: &SetKeyArgs, fmt: Format, out: &mut dyn Write) -> Result<()> {
    let key = text_or_bytes(&a.key, "KEY")?;
    let v = value_of(&a.value)?;
    edit(cfg, &a.obj, fmt, out, |c, o| {
        let mut t = Transaction::new();
        t.omap_setkeys(c, o, [(key, v)].into());
        Ok(t)
    })
}

fn rm_omap(cfg: &StoreConfig, a: &KeyArgs, fmt: Format, out: &mut dyn Write) -> Result<()> {
    let key = text_or_bytes(&a.key, "KEY")?;
    edit(cfg, &a.obj, fmt, out, |c, o| {
        let mut t = Transaction::new();
        t.omap_rmkeys(c, o, [key].into());
        Ok(t)
    })
}

fn get_omaphdr(
    cfg: &StoreConfig,
    a: &GetValueArgs,
    fmt: Format,
    out: &mut dyn Write,
) -> Result<()> {
    let (cid, oid) = resolve_object(&a.obj)?;
    let h = with_store(cfg, |s| {
        let ch = s.open_collection(&cid)?;
        s.omap_get_header(&ch, &oid)
    })?;
    if a.raw {
        output::raw(out, &h)
    } else {
        output::document(out, fmt, &bytes_to_json(&h))
    }
}

fn set_omaphdr(
    cfg: &StoreConfig,
    a: &SetHeaderArgs,
    fmt: Format,
    out: &mut dyn Write,
) -> Result<()> {
    let v = value_of(&a.value)?;
    edit(cfg, &a.obj, fmt, out, |c, o| {
        let mut t = Transaction::new();
        t.omap_setheader(c, o, v);
        Ok(t)
    })
}

fn remove(cfg: &StoreConfig, a: &ObjectArgs, fmt: Format, out: &mut dyn Write) -> Result<()> {
    edit(cfg, a, fmt, out, |c, o| {
        let mut t = Transaction::new();
        t.remove(c, o);
        Ok(t)
    })
}

// ---- export / import ----

fn export(cfg: &StoreConfig, a: &ExportArgs, fmt: Format, out: &mut dyn Write) -> Result<()> {
    let colls = a
        .collection
        .iter()
        .map(|c| parse_collection(c).map_err(|e| e.context("--collection")))
        .collect::<Result<Vec<_>>>()?;
    let to_stdout = a.file == "-";
    if !to_stdout && std::path::Path::new(&a.file).is_dir() {
        return Err(Error::invalid(format!(
            "--file {} is a directory; give the path of the export file",
            a.file
        )));
    }
    // Written beside the target and renamed into place, so a failed export never
    // leaves a file that looks complete.
    let tmp = format!("{}.partial", a.file);
    let counts = with_store(cfg, |s| {
        for c in &colls {
            if !s.collection_exists(c)? {
                return Err(Error::not_found(format!("collection {c} does not exist")));
            }
        }
        let mut p = Progress::new("export", "objects");
        let r = if to_stdout {
            let mut w = std::io::BufWriter::new(std::io::stdout().lock());
            ostore_os::export::export(s, &colls, &mut w, &mut |n| p.set(n))
        } else {
            let f = std::fs::File::create(&tmp)
                .map_err(|e| Error::from(e).context(format!("creating {tmp}")))?;
            let mut w = std::io::BufWriter::new(f);
            let r = ostore_os::export::export(s, &colls, &mut w, &mut |n| p.set(n));
            let f = w
                .into_inner()
                .map_err(|e| Error::from(e.into_error()).context(format!("writing {tmp}")))?;
            f.sync_all()
                .map_err(|e| Error::from(e).context(format!("syncing {tmp}")))?;
            r
        };
        p.finish();
        r
    });
    let counts = match counts {
        Ok(c) => c,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    if !to_stdout {
        std::fs::rename(&tmp, &a.file).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::from(e).context(format!("renaming {tmp} to {}", a.file))
        })?;
        // The report goes to stdout only when the export itself does not.
        output::document(out, fmt, &json!({"file": a.file, "exported": counts}))?;
    }
    Ok(())
}

fn import(cfg: &StoreConfig, a: &ImportArgs, fmt: Format, out: &mut dyn Write) -> Result<()> {
    // The whole file is verified before the store is touched, so a truncated or
    // damaged file changes nothing; stdin is spooled to a temp file to read it twice.
    let (path, _spool) = if a.file == "-" {
        let mut f = tempfile::NamedTempFile::new()
            .map_err(|e| Error::from(e).context("creating a spool file for stdin"))?;
        std::io::copy(&mut std::io::stdin().lock(), &mut f)
            .map_err(|e| Error::from(e).context("reading stdin"))?;
        (f.path().to_path_buf(), Some(f))
    } else {
        (std::path::PathBuf::from(&a.file), None)
    };
    let open = || {
        std::fs::File::open(&path)
            .map(std::io::BufReader::new)
            .map_err(|e| Error::from(e).context(format!("opening {}", path.display())))
    };
    let (counts, colls) =
        ostore_os::export::verify(&mut open()?).map_err(|e| e.context(a.file.clone()))?;
    let done = with_store(cfg, |s| {
        for c in &colls {
            if s.collection_exists(c)? {
                return Err(Error::exists(format!(
                    "collection {c} already exists in the store; import refuses to merge into it"
                )));
            }
        }
        let mut p = Progress::new("import", "objects");
        let r = ostore_os::export::import(s, &mut open()?, &mut |n| p.set(n));
        p.finish();
        r
    })?;
    debug_assert_eq!(done.objects, counts.objects);
    output::document(out, fmt, &json!({"file": a.file, "imported": done}))
}

// ---- bench ----

fn bench(
    cfg: &StoreConfig,
    a: &crate::cli::BenchArgs,
    fmt: Format,
    out: &mut dyn Write,
) -> Result<()> {
    let o = crate::bench::BenchOpts {
        dir: cfg.data_path.clone(),
        backend: cfg
            .store_type
            .clone()
            .unwrap_or_else(|| crate::open::DEFAULT_STORE_TYPE.to_string()),
        clients: usize::from(a.clients),
        duration: std::time::Duration::from_secs(a.duration.max(1)),
        ..crate::bench::BenchOpts::default()
    };
    let names: Vec<&str> = if a.workload == "all" {
        crate::bench::WORKLOADS.to_vec()
    } else {
        vec![a.workload.as_str()]
    };
    let mut results = Vec::new();
    for w in names {
        let mut p = Progress::spinner(&format!("{w} on {}", o.backend));
        let r = crate::bench::run(w, &o);
        p.finish();
        results.push(r?);
    }
    match fmt {
        Format::Plain => {
            write!(out, "{}", crate::bench::table(&results)).map_err(output::write_err)
        }
        _ => output::document(out, fmt, &json!(results)),
    }
}
