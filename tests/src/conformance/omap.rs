//! Omap: header, keys, values, iterators, ranges.

use std::collections::{BTreeMap, BTreeSet};

use ostore_os::{ErrorKind, OmapIterator};

use super::{coll, oid, setup, txn};
use crate::harness::StoreFactory;
use crate::state::assert_kind;

fn kv(pairs: &[(&[u8], &[u8])]) -> BTreeMap<Vec<u8>, Vec<u8>> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
        .collect()
}

fn keys(ks: &[&[u8]]) -> BTreeSet<Vec<u8>> {
    ks.iter().map(|k| k.to_vec()).collect()
}

pub fn omap_simple(f: &dyn StoreFactory) {
    let s = setup(f);
    let (c, o) = (coll(), oid("omap_obj"));
    let ch = s.ch(&c);
    let st = s.store();
    let mut t = txn();
    t.touch(&c, &o);
    s.apply_ok(t);
    assert_eq!(st.omap_get(&ch, &o).unwrap(), (vec![], BTreeMap::new()));
    assert_eq!(st.omap_get_header(&ch, &o).unwrap(), b"");

    let mut t = txn();
    t.omap_setkeys(&c, &o, kv(&[(b"foo", b"bar"), (b"baz", b"")]))
        .omap_setheader(&c, &o, b"my header".to_vec());
    s.apply_ok(t);
    assert_eq!(st.omap_get_header(&ch, &o).unwrap(), b"my header");
    assert_eq!(
        st.omap_get(&ch, &o).unwrap(),
        (
            b"my header".to_vec(),
            kv(&[(b"baz", b""), (b"foo", b"bar")])
        )
    );
    assert_eq!(st.omap_get_keys(&ch, &o).unwrap(), keys(&[b"baz", b"foo"]));

    // SETKEYS overwrites; RMKEYS of absent keys is fine.
    let mut t = txn();
    t.omap_setkeys(&c, &o, kv(&[(b"foo", b"BAR")]))
        .omap_rmkeys(&c, &o, keys(&[b"baz", b"absent"]));
    s.apply_ok(t);
    assert_eq!(st.omap_get(&ch, &o).unwrap().1, kv(&[(b"foo", b"BAR")]));
    // Omap is independent of data and attrs.
    assert_eq!(s.size(&c, &o), 0);
    assert!(st.getattrs(&ch, &o).unwrap().is_empty());
}

pub fn omap_test(f: &dyn StoreFactory) {
    let mut s = setup(f);
    let (c, o) = (coll(), oid("omap_many"));
    let mut expect = BTreeMap::new();
    let mut t = txn();
    t.touch(&c, &o);
    s.apply_ok(t);
    for round in 0..10u32 {
        let mut batch = BTreeMap::new();
        for i in 0..50u32 {
            let n = round * 50 + i;
            let k = format!("key_{:05}", (n * 7919) % 1000).into_bytes();
            let v = format!("value {n}").into_bytes();
            batch.insert(k.clone(), v.clone());
            expect.insert(k, v);
        }
        let mut t = txn();
        t.omap_setkeys(&c, &o, batch);
        s.apply_ok(t);
    }
    // Binary keys sort bytewise: 0x00 and 0xff included.
    let bin = kv(&[
        (b"\x00", b"nul"),
        (b"\xff\xff", b"high"),
        (b"key_\x01", b"ctl"),
    ]);
    expect.extend(bin.clone());
    let mut t = txn();
    t.omap_setkeys(&c, &o, bin);
    s.apply_ok(t);
    let rm: BTreeSet<Vec<u8>> = expect.keys().step_by(3).cloned().collect();
    for k in &rm {
        expect.remove(k);
    }
    let mut t = txn();
    t.omap_rmkeys(&c, &o, rm);
    s.apply_ok(t);

    let got = s.store().omap_get(&s.ch(&c), &o).unwrap().1;
    assert_eq!(got, expect);
    s.remount();
    assert_eq!(s.store().omap_get(&s.ch(&c), &o).unwrap().1, expect);
}

pub fn omap_get_values_and_check_keys(f: &dyn StoreFactory) {
    let s = setup(f);
    let (c, o) = (coll(), oid("omap_values"));
    let mut t = txn();
    t.touch(&c, &o)
        .omap_setkeys(&c, &o, kv(&[(b"a", b"1"), (b"b", b"2"), (b"c", b"3")]));
    s.apply_ok(t);
    let ch = s.ch(&c);
    let st = s.store();
    let ask = keys(&[b"a", b"c", b"zz", b""]);
    assert_eq!(
        st.omap_get_values(&ch, &o, &ask).unwrap(),
        kv(&[(b"a", b"1"), (b"c", b"3")])
    );
    assert_eq!(
        st.omap_check_keys(&ch, &o, &ask).unwrap(),
        keys(&[b"a", b"c"])
    );
    assert!(st
        .omap_get_values(&ch, &o, &BTreeSet::new())
        .unwrap()
        .is_empty());
}

/// Walks an iterator from its position to the end.
fn drain(it: &mut dyn OmapIterator) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    while it.valid() {
        out.push((it.key().unwrap().to_vec(), it.value().unwrap().to_vec()));
        it.next().unwrap();
    }
    out
}

pub fn omap_iterator(f: &dyn StoreFactory) {
    let s = setup(f);
    let c = coll();
    let (o, empty) = (oid("omap_iter"), oid("omap_empty"));
    let data = kv(&[(b"b", b"B"), (b"d", b"D"), (b"f", b"F"), (b"f\x00", b"F0")]);
    let mut t = txn();
    t.touch(&c, &o)
        .touch(&c, &empty)
        .omap_setheader(&c, &o, b"header-not-a-key".to_vec())
        .omap_setkeys(&c, &o, data.clone());
    s.apply_ok(t);
    let ch = s.ch(&c);
    let pairs = |ks: &[&[u8]]| -> Vec<(Vec<u8>, Vec<u8>)> {
        ks.iter().map(|k| (k.to_vec(), data[*k].clone())).collect()
    };

    let mut it = s.store().omap_iterator(&ch, &o).unwrap();
    it.seek_to_first().unwrap();
    assert_eq!(drain(&mut *it), pairs(&[b"b", b"d", b"f", b"f\x00"]));
    assert!(!it.valid());
    assert_eq!(it.key(), None);

    it.lower_bound(b"d").unwrap();
    assert_eq!(
        drain(&mut *it),
        pairs(&[b"d", b"f", b"f\x00"]),
        "lower_bound on a key"
    );
    it.lower_bound(b"c").unwrap();
    assert_eq!(it.key(), Some(&b"d"[..]), "lower_bound between keys");
    it.lower_bound(b"").unwrap();
    assert_eq!(it.key(), Some(&b"b"[..]));
    it.lower_bound(b"g").unwrap();
    assert!(!it.valid(), "lower_bound past the last key");

    it.upper_bound(b"d").unwrap();
    assert_eq!(
        drain(&mut *it),
        pairs(&[b"f", b"f\x00"]),
        "upper_bound on a key"
    );
    it.upper_bound(b"f").unwrap();
    assert_eq!(
        it.key(),
        Some(&b"f\x00"[..]),
        "upper_bound is strictly greater"
    );
    it.upper_bound(b"a").unwrap();
    assert_eq!(it.key(), Some(&b"b"[..]));
    assert_eq!(it.value(), Some(&b"B"[..]));
    it.upper_bound(b"f\x00").unwrap();
    assert!(!it.valid());
    // Repositioning after reaching the end works.
    it.seek_to_first().unwrap();
    assert_eq!(it.key(), Some(&b"b"[..]));

    let mut it = s.store().omap_iterator(&ch, &empty).unwrap();
    it.seek_to_first().unwrap();
    assert!(!it.valid(), "an empty omap has no keys");
    it.lower_bound(b"").unwrap();
    assert!(!it.valid());
}

pub fn omap_rm_key_range(f: &dyn StoreFactory) {
    let s = setup(f);
    let (c, o) = (coll(), oid("omap_range"));
    let all: Vec<&[u8]> = vec![b"a", b"b", b"ba", b"bb", b"c", b"d", b"e"];
    let full: BTreeMap<Vec<u8>, Vec<u8>> = all.iter().map(|k| (k.to_vec(), k.to_vec())).collect();
    let ch = s.ch(&c);
    let check = |first: &[u8], last: &[u8], expect: &[&[u8]]| {
        let mut t = txn();
        t.touch(&c, &o)
            .omap_clear(&c, &o)
            .omap_setkeys(&c, &o, full.clone())
            .omap_setheader(&c, &o, b"hdr".to_vec())
            .omap_rmkeyrange(&c, &o, first.to_vec(), last.to_vec());
        s.apply_ok(t);
        let got = s.store().omap_get(&ch, &o).unwrap();
        let exp: BTreeMap<_, _> = expect.iter().map(|k| (k.to_vec(), k.to_vec())).collect();
        assert_eq!(got.1, exp, "rmkeyrange [{first:?}, {last:?})");
        assert_eq!(got.0, b"hdr", "rmkeyrange keeps the header");
    };
    check(b"b", b"c", &[b"a", b"c", b"d", b"e"]);
    check(b"b", b"bb", &[b"a", b"bb", b"c", b"d", b"e"]);
    check(b"a", b"a", &all);
    check(b"", b"c", &[b"c", b"d", b"e"]);
    check(b"bz", b"zz", &[b"a", b"b", b"ba", b"bb"]);
    check(b"0", b"1", &all);
    // An inverted range is empty.
    check(b"d", b"b", &all);
}

pub fn omap_clear_removes_header(f: &dyn StoreFactory) {
    let s = setup(f);
    let (c, o) = (coll(), oid("omap_clear"));
    let mut t = txn();
    t.write(&c, &o, 0, b"data".to_vec())
        .setattr(&c, &o, "a", b"1".to_vec())
        .omap_setheader(&c, &o, b"header".to_vec())
        .omap_setkeys(&c, &o, kv(&[(b"k1", b"v1"), (b"k2", b"v2")]));
    s.apply_ok(t);
    let mut t = txn();
    t.omap_clear(&c, &o);
    s.apply_ok(t);
    let ch = s.ch(&c);
    assert_eq!(
        s.store().omap_get(&ch, &o).unwrap(),
        (vec![], BTreeMap::new())
    );
    assert_eq!(s.store().omap_get_header(&ch, &o).unwrap(), b"");
    assert_eq!(s.read_all(&c, &o), b"data", "omap_clear keeps data");
    assert_eq!(s.store().getattr(&ch, &o, "a").unwrap(), b"1", "and attrs");
}

pub fn omap_ops_on_missing_object_are_skipped(f: &dyn StoreFactory) {
    let s = setup(f);
    let c = coll();
    let (missing, other) = (oid("missing"), oid("other"));
    let mut t = txn();
    t.omap_setkeys(&c, &missing, kv(&[(b"k", b"v")]))
        .omap_setheader(&c, &missing, b"h".to_vec())
        .omap_rmkeys(&c, &missing, keys(&[b"k"]))
        .omap_rmkeyrange(&c, &missing, b"a".to_vec(), b"z".to_vec())
        .omap_clear(&c, &missing)
        .touch(&c, &other);
    s.apply_ok(t);
    assert!(!s.exists(&c, &missing), "omap ops do not create objects");
    assert!(s.exists(&c, &other), "the rest of the transaction applied");
    assert_kind(
        s.store().omap_get(&s.ch(&c), &missing),
        ErrorKind::NotFound,
        "omap_get of the missing object",
    );
}
