//! The observable state of a store, read through the public API only, in a form the
//! model produces too, so "store == model" and "nothing changed" are one `==`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use ostore_os::{CollectionId, ErrorKind, ObjectId, ObjectStore, OmapKey, Result};

/// Everything a client can observe about one object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectState {
    pub data: Vec<u8>,
    pub attrs: BTreeMap<String, Vec<u8>>,
    pub omap_header: Vec<u8>,
    pub omap: BTreeMap<OmapKey, Vec<u8>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CollectionState {
    pub bits: u32,
    pub objects: BTreeMap<ObjectId, ObjectState>,
}

pub type StoreState = BTreeMap<CollectionId, CollectionState>;

/// Page size used when walking a collection, small enough that paging is exercised on
/// every capture.
const LIST_PAGE: usize = 7;

/// Lists a whole collection page by page, checking the paging contract on the way:
/// pages are sorted, continue exactly at `next`, and the walk ends with the max
/// sentinel.
pub fn list_all(
    store: &dyn ObjectStore,
    ch: &ostore_os::CollectionHandle,
    page: usize,
) -> Result<Vec<ObjectId>> {
    let mut out: Vec<ObjectId> = Vec::new();
    let mut start = ObjectId::min();
    let end = ObjectId::max_sentinel();
    loop {
        let (objs, next) = store.collection_list(ch, &start, &end, page)?;
        assert!(
            objs.len() <= page,
            "collection_list returned {} objects for max {page}",
            objs.len()
        );
        for o in &objs {
            assert!(
                *o >= start,
                "collection_list returned {o} before start {start}"
            );
            if let Some(last) = out.last() {
                assert!(last < o, "collection_list out of order: {last} then {o}");
            }
            out.push(o.clone());
        }
        if next.is_max() {
            return Ok(out);
        }
        assert_eq!(
            objs.len(),
            page,
            "collection_list stopped early ({} < {page}) without returning MAX as next",
            objs.len()
        );
        if let Some(last) = out.last() {
            assert!(
                *last < next,
                "next {next} does not follow the last object {last}"
            );
        }
        start = next;
    }
}

/// Captures every collection, its bits, and every object's four parts.
pub fn capture(store: &dyn ObjectStore) -> Result<StoreState> {
    let mut st = StoreState::new();
    let mut cids = store.list_collections()?;
    cids.sort();
    for cid in cids {
        assert!(
            store.collection_exists(&cid)?,
            "{cid} listed but not existing"
        );
        let ch = store.open_collection(&cid)?;
        let bits = store.collection_bits(&ch)?;
        let oids = list_all(store, &ch, LIST_PAGE)?;
        assert_eq!(
            store.collection_empty(&ch)?,
            oids.is_empty(),
            "collection_empty disagrees with collection_list in {cid}"
        );
        let mut objects = BTreeMap::new();
        for oid in oids {
            assert!(store.exists(&ch, &oid)?, "{oid} listed but not existing");
            let st = store.stat(&ch, &oid)?;
            let data = store.read(&ch, &oid, 0, 0)?;
            assert_eq!(
                st.size,
                data.len() as u64,
                "stat size and read(0, 0) length disagree for {oid}"
            );
            let attrs = store.getattrs(&ch, &oid)?;
            let (omap_header, omap) = store.omap_get(&ch, &oid)?;
            objects.insert(
                oid,
                ObjectState {
                    data,
                    attrs,
                    omap_header,
                    omap,
                },
            );
        }
        st.insert(cid, CollectionState { bits, objects });
    }
    Ok(st)
}

fn show(b: &[u8]) -> String {
    const MAX: usize = 48;
    let s: String = b.iter().take(MAX).map(|c| format!("{c:02x}")).collect();
    if b.len() > MAX {
        format!("{s}...({} bytes)", b.len())
    } else {
        format!("{s} ({} bytes)", b.len())
    }
}

fn first_diff(a: &[u8], b: &[u8]) -> String {
    match a.iter().zip(b).position(|(x, y)| x != y) {
        Some(i) => format!(
            "first difference at byte {i}: {:#04x} vs {:#04x}; lengths {} vs {}",
            a[i],
            b[i],
            a.len(),
            b.len()
        ),
        None => format!("lengths {} vs {}", a.len(), b.len()),
    }
}

/// A readable description of how two states differ (`None` when equal); `a` is the
/// expectation, `b` the store.
pub fn diff(a: &StoreState, b: &StoreState) -> Option<String> {
    if a == b {
        return None;
    }
    let mut out = String::new();
    for cid in a
        .keys()
        .chain(b.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        let (ca, cb) = match (a.get(cid), b.get(cid)) {
            (Some(ca), Some(cb)) => (ca, cb),
            (x, y) => {
                let _ = writeln!(
                    out,
                    "collection {cid}: expected exists={}, store exists={}",
                    x.is_some(),
                    y.is_some()
                );
                continue;
            }
        };
        if ca.bits != cb.bits {
            let _ = writeln!(out, "collection {cid}: bits {} vs {}", ca.bits, cb.bits);
        }
        let keys: std::collections::BTreeSet<_> =
            ca.objects.keys().chain(cb.objects.keys()).collect();
        for oid in keys {
            match (ca.objects.get(oid), cb.objects.get(oid)) {
                (Some(x), Some(y)) if x == y => {}
                (Some(x), Some(y)) => {
                    if x.data != y.data {
                        let _ = writeln!(
                            out,
                            "{cid} {oid}: data differs ({})",
                            first_diff(&x.data, &y.data)
                        );
                    }
                    if x.attrs != y.attrs {
                        let _ = writeln!(out, "{cid} {oid}: attrs {:?} vs {:?}", x.attrs, y.attrs);
                    }
                    if x.omap_header != y.omap_header {
                        let _ = writeln!(
                            out,
                            "{cid} {oid}: omap header {} vs {}",
                            show(&x.omap_header),
                            show(&y.omap_header)
                        );
                    }
                    if x.omap != y.omap {
                        let only_a: Vec<_> = x
                            .omap
                            .iter()
                            .filter(|(k, v)| y.omap.get(*k) != Some(*v))
                            .map(|(k, _)| show(k))
                            .collect();
                        let only_b: Vec<_> = y
                            .omap
                            .iter()
                            .filter(|(k, v)| x.omap.get(*k) != Some(*v))
                            .map(|(k, _)| show(k))
                            .collect();
                        let _ = writeln!(
                            out,
                            "{cid} {oid}: omap differs; expected-only {only_a:?}, store-only {only_b:?}"
                        );
                    }
                }
                (x, y) => {
                    let _ = writeln!(
                        out,
                        "{cid} {oid}: expected exists={}, store exists={}",
                        x.is_some(),
                        y.is_some()
                    );
                }
            }
        }
    }
    Some(out)
}

/// Asserts the error kind of a result, with the message on mismatch.
#[track_caller]
pub fn assert_kind<T: std::fmt::Debug>(r: Result<T>, kind: ErrorKind, what: &str) {
    match r {
        Err(e) if e.kind() == kind => {}
        other => panic!("{what}: expected {kind}, got {other:?}"),
    }
}
