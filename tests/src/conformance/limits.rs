//! Every documented limit (`ostore_os::limits`) tried at limit-1, limit and limit+1: the
//! first two are stored and read back exactly (also after a remount), the third is
//! refused before it is journaled with a typed error and changes nothing. The three
//! backends run the same table, so they agree by construction of the test.

use std::collections::{BTreeMap, BTreeSet};

use ostore_os::limits::{
    MAX_ATTR_NAME_LEN, MAX_ATTR_VALUE_LEN, MAX_COLLECTION_BITS, MAX_NAMESPACE_LEN, MAX_NAME_LEN,
    MAX_OBJECT_SIZE, MAX_OMAP_KEY_LEN, MAX_OMAP_VALUE_LEN,
};
use ostore_os::{CollectionId, ErrorKind, ObjectId, Transaction};

use super::{coll, oid, pattern, setup, txn};
use crate::harness::{StoreFactory, TestStore};
use crate::state::assert_kind;

/// Checks that what a transaction stored at a length reads back exactly.
type Check = Box<dyn Fn(&TestStore<'_>, u64)>;

/// One limit: how to build a transaction at a length, and how to check it read back.
struct Edge {
    what: &'static str,
    limit: u64,
    over: ErrorKind,
    make: Box<dyn Fn(u64) -> Transaction>,
    check: Check,
}

fn name_obj(n: u64) -> ObjectId {
    oid(&"n".repeat(n as usize))
}
fn ns_obj(n: u64) -> ObjectId {
    oid("ns").with_namespace("s".repeat(n as usize))
}
fn key_obj(n: u64) -> ObjectId {
    oid("keyed").with_key("k".repeat(n as usize))
}

fn edges() -> Vec<Edge> {
    let c = coll();
    let mut v: Vec<Edge> = Vec::new();
    for (what, limit, obj) in [
        ("object name", MAX_NAME_LEN, name_obj as fn(u64) -> ObjectId),
        ("namespace", MAX_NAMESPACE_LEN, ns_obj),
        ("locator key", MAX_NAME_LEN, key_obj),
    ] {
        v.push(Edge {
            what,
            limit: limit as u64,
            over: ErrorKind::TooBig,
            make: Box::new(move |n| {
                let mut t = txn();
                t.write(&c, &obj(n), 0, pattern(100, n as u8));
                t
            }),
            check: Box::new(move |s, n| {
                assert_eq!(s.read_all(&c, &obj(n)), pattern(100, n as u8), "{what} {n}");
            }),
        });
    }
    v.push(Edge {
        what: "attr name",
        limit: MAX_ATTR_NAME_LEN as u64,
        over: ErrorKind::TooBig,
        make: Box::new(move |n| {
            let mut t = txn();
            t.touch(&c, &oid("attrs")).setattr(
                &c,
                &oid("attrs"),
                &"a".repeat(n as usize),
                b"v".to_vec(),
            );
            t
        }),
        check: Box::new(move |s, n| {
            let ch = s.ch(&c);
            let got = s
                .store()
                .getattr(&ch, &oid("attrs"), &"a".repeat(n as usize))
                .unwrap();
            assert_eq!(got, b"v", "attr name {n}");
        }),
    });
    v.push(Edge {
        what: "attr value",
        limit: MAX_ATTR_VALUE_LEN as u64,
        over: ErrorKind::TooBig,
        make: Box::new(move |n| {
            let mut t = txn();
            t.touch(&c, &oid("attrs")).setattr(
                &c,
                &oid("attrs"),
                &format!("v{n}"),
                pattern(n as usize, 3),
            );
            t
        }),
        check: Box::new(move |s, n| {
            let ch = s.ch(&c);
            let got = s
                .store()
                .getattr(&ch, &oid("attrs"), &format!("v{n}"))
                .unwrap();
            assert!(got == pattern(n as usize, 3), "attr value of {n} bytes");
        }),
    });
    v.push(Edge {
        what: "omap key",
        limit: MAX_OMAP_KEY_LEN as u64,
        over: ErrorKind::TooBig,
        make: Box::new(move |n| {
            let mut t = txn();
            let mut m = BTreeMap::new();
            m.insert(pattern(n as usize, 5), b"val".to_vec());
            t.touch(&c, &oid("omap")).omap_setkeys(&c, &oid("omap"), m);
            t
        }),
        check: Box::new(move |s, n| {
            let ch = s.ch(&c);
            let k: BTreeSet<Vec<u8>> = [pattern(n as usize, 5)].into_iter().collect();
            let got = s.store().omap_get_values(&ch, &oid("omap"), &k).unwrap();
            assert_eq!(got.len(), 1, "omap key of {n} bytes");
            assert_eq!(got.values().next().unwrap(), b"val");
        }),
    });
    v.push(Edge {
        what: "omap value",
        limit: MAX_OMAP_VALUE_LEN as u64,
        over: ErrorKind::TooBig,
        make: Box::new(move |n| {
            let mut t = txn();
            let mut m = BTreeMap::new();
            m.insert(format!("v{n}").into_bytes(), pattern(n as usize, 6));
            t.touch(&c, &oid("omapv"))
                .omap_setkeys(&c, &oid("omapv"), m);
            t
        }),
        check: Box::new(move |s, n| {
            let ch = s.ch(&c);
            let k: BTreeSet<Vec<u8>> = [format!("v{n}").into_bytes()].into_iter().collect();
            let got = s.store().omap_get_values(&ch, &oid("omapv"), &k).unwrap();
            assert!(
                got.values().next() == Some(&pattern(n as usize, 6)),
                "omap value of {n} bytes"
            );
        }),
    });
    v.push(Edge {
        what: "omap header",
        limit: MAX_OMAP_VALUE_LEN as u64,
        over: ErrorKind::TooBig,
        make: Box::new(move |n| {
            let mut t = txn();
            let o = oid(&format!("omaph{n}"));
            t.touch(&c, &o)
                .omap_setheader(&c, &o, pattern(n as usize, 7));
            t
        }),
        check: Box::new(move |s, n| {
            let ch = s.ch(&c);
            let got = s
                .store()
                .omap_get_header(&ch, &oid(&format!("omaph{n}")))
                .unwrap();
            assert!(got == pattern(n as usize, 7), "omap header of {n} bytes");
        }),
    });
    v.push(Edge {
        what: "collection bits",
        limit: u64::from(MAX_COLLECTION_BITS),
        over: ErrorKind::InvalidArgument,
        make: Box::new(|n| {
            let mut t = txn();
            t.create_collection(&CollectionId::pg(9, n as u32), n as u32);
            t
        }),
        check: Box::new(|s, n| {
            let ch = s.ch(&CollectionId::pg(9, n as u32));
            assert_eq!(s.store().collection_bits(&ch).unwrap(), n as u32);
        }),
    });
    v
}

pub fn every_limit_at_its_edges(f: &dyn StoreFactory) {
    let mut s = setup(f);
    let ch = s.ch(&coll());
    let table = edges();
    let mut tried = 0;
    for e in &table {
        for n in [e.limit - 1, e.limit] {
            s.apply((e.make)(n))
                .unwrap_or_else(|err| panic!("{} at {n} (limit {}): {err}", e.what, e.limit));
            (e.check)(&s, n);
            tried += 1;
        }
        let before = s.capture();
        assert_kind(
            s.store()
                .queue_transactions(&ch, vec![(e.make)(e.limit + 1)], Default::default()),
            e.over,
            &format!("{} at limit+1 ({})", e.what, e.limit + 1),
        );
        assert!(
            s.capture() == before,
            "{} at limit+1 changed the store",
            e.what
        );
        tried += 1;
    }
    // Everything stored at the edges survives a remount byte for byte.
    s.remount();
    for e in &table {
        for n in [e.limit - 1, e.limit] {
            (e.check)(&s, n);
        }
    }
    eprintln!("limits: {} edges of {} limits tried", tried, table.len());
}

/// The object size limit (4 GiB) through sparse writes and truncates, which stay cheap:
/// an end offset of limit-1 and limit is stored, limit+1 refused.
pub fn object_size_limit_at_its_edges(f: &dyn StoreFactory) {
    let mut s = setup(f);
    let c = coll();
    let ch = s.ch(&c);
    for (i, end) in [MAX_OBJECT_SIZE - 1, MAX_OBJECT_SIZE]
        .into_iter()
        .enumerate()
    {
        let o = oid(&format!("w{i}"));
        let mut t = txn();
        t.write(&c, &o, end - 1, vec![0xa5]);
        s.apply_ok(t);
        assert_eq!(s.size(&c, &o), end);
        assert_eq!(s.read(&c, &o, end - 1, 1).unwrap(), vec![0xa5]);
        let o = oid(&format!("t{i}"));
        let mut t = txn();
        t.truncate(&c, &o, end);
        // Truncate needs the object: make it first.
        let mut mk = txn();
        mk.touch(&c, &o);
        s.apply_ok(mk);
        s.apply_ok(t);
        assert_eq!(s.size(&c, &o), end);
    }
    for (what, t) in [
        ("write ending at limit+1", {
            let mut t = txn();
            t.write(&c, &oid("over"), MAX_OBJECT_SIZE, vec![1]);
            t
        }),
        ("truncate to limit+1", {
            let mut t = txn();
            t.truncate(&c, &oid("t0"), MAX_OBJECT_SIZE + 1);
            t
        }),
        ("zero ending at limit+1", {
            let mut t = txn();
            t.zero(&c, &oid("t0"), MAX_OBJECT_SIZE - 1, 2);
            t
        }),
    ] {
        assert_kind(
            s.store()
                .queue_transactions(&ch, vec![t], Default::default()),
            ErrorKind::FileTooBig,
            what,
        );
    }
    assert!(!s.exists(&c, &oid("over")));
    assert_eq!(s.size(&c, &oid("t0")), MAX_OBJECT_SIZE - 1);
    s.remount();
    assert_eq!(s.size(&c, &oid("w1")), MAX_OBJECT_SIZE);
    assert_eq!(
        s.read(&c, &oid("w1"), MAX_OBJECT_SIZE - 1, 1).unwrap(),
        vec![0xa5]
    );
    // Remove the huge sparse objects so the harness's checks never read 4 GiB.
    let mut t = txn();
    for n in ["w0", "w1", "t0", "t1"] {
        t.remove(&c, &oid(n));
    }
    s.apply_ok(t);
}
