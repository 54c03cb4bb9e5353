//! Collections: create/remove, emptiness, bits, split and merge.

use std::collections::BTreeSet;

use ostore_os::{CollectionId, ErrorKind, ObjectId, Op, Transaction};

use super::{coll, oid, pattern, setup, txn};
use crate::harness::{StoreFactory, TestStore};
use crate::state::assert_kind;

pub fn simple_col(f: &dyn StoreFactory) {
    let s = TestStore::new(f);
    let c = coll();
    assert_eq!(s.store().list_collections().unwrap(), vec![]);
    assert!(!s.store().collection_exists(&c).unwrap());
    assert_kind(
        s.store().open_collection(&c),
        ErrorKind::NotFound,
        "open missing",
    );

    s.mkcoll(&c, 3);
    assert!(s.store().collection_exists(&c).unwrap());
    assert_eq!(s.store().list_collections().unwrap(), vec![c]);
    let ch = s.ch(&c);
    assert!(s.store().collection_empty(&ch).unwrap());
    assert_eq!(s.store().collection_bits(&ch).unwrap(), 3);

    let mut t = txn();
    t.remove_collection(&c);
    s.apply_ok(t);
    assert!(!s.store().collection_exists(&c).unwrap());
    assert_eq!(s.store().list_collections().unwrap(), vec![]);
    assert_kind(
        s.store().open_collection(&c),
        ErrorKind::NotFound,
        "open removed",
    );

    // A removed collection can be created again, empty.
    s.mkcoll(&c, 1);
    assert!(s.store().collection_empty(&s.ch(&c)).unwrap());
    assert_eq!(s.store().collection_bits(&s.ch(&c)).unwrap(), 1);
}

pub fn mkcoll_existing_is_eexist(f: &dyn StoreFactory) {
    let s = setup(f);
    let c = coll();
    let mut t = txn();
    t.touch(&c, &oid("a"));
    s.apply_ok(t);

    let mut t = txn();
    t.create_collection(&c, 5);
    assert_kind(
        s.apply(t),
        ErrorKind::Exists,
        "mkcoll of an existing collection",
    );
    assert_eq!(s.store().collection_bits(&s.ch(&c)).unwrap(), 0);
    assert!(s.exists(&c, &oid("a")), "the collection's objects survive");

    // Twice in one transaction: the second fails, so the first is not applied either.
    let d = CollectionId::pg(1, 1);
    let mut t = txn();
    t.create_collection(&d, 0).create_collection(&d, 0);
    assert_kind(s.apply(t), ErrorKind::Exists, "mkcoll twice in one txn");
    assert!(!s.store().collection_exists(&d).unwrap());
}

pub fn rmcoll_nonempty_is_enotempty(f: &dyn StoreFactory) {
    let s = setup(f);
    let c = coll();
    let mut t = txn();
    t.write(&c, &oid("a"), 0, b"data".to_vec());
    s.apply_ok(t);
    let before = s.capture();

    let mut t = txn();
    t.remove_collection(&c);
    assert_kind(
        s.apply(t),
        ErrorKind::NotEmpty,
        "rmcoll of a non-empty collection",
    );
    assert_eq!(s.capture(), before);
    assert_eq!(s.read_all(&c, &oid("a")), b"data");
}

pub fn rmcoll_after_removing_objects_in_same_txn(f: &dyn StoreFactory) {
    let s = setup(f);
    let c = coll();
    let mut t = txn();
    t.touch(&c, &oid("a")).touch(&c, &oid("b"));
    s.apply_ok(t);

    // The emptiness check sees the removals earlier in the same transaction.
    let mut t = txn();
    t.remove(&c, &oid("a"))
        .remove(&c, &oid("b"))
        .remove_collection(&c);
    s.apply_ok(t);
    assert!(!s.store().collection_exists(&c).unwrap());

    // And an object created earlier in the transaction makes it non-empty.
    s.mkcoll(&c, 0);
    let mut t = txn();
    t.touch(&c, &oid("x")).remove_collection(&c);
    assert_kind(s.apply(t), ErrorKind::NotEmpty, "touch then rmcoll");
    assert!(s.store().collection_exists(&c).unwrap());
    assert!(s.store().collection_empty(&s.ch(&c)).unwrap());
}

pub fn ops_on_missing_collection_are_enoent(f: &dyn StoreFactory) {
    let s = setup(f);
    let c = coll();
    let missing = CollectionId::pg(7, 0);
    let before = s.capture();

    let cases: Vec<Transaction> = vec![
        {
            let mut t = txn();
            t.write(&missing, &oid("a"), 0, b"x".to_vec());
            t
        },
        {
            let mut t = txn();
            t.touch(&missing, &oid("a"));
            t
        },
        {
            let mut t = txn();
            t.remove_collection(&missing);
            t
        },
        {
            let mut t = txn();
            t.setattr(&missing, &oid("a"), "k", b"v".to_vec());
            t
        },
        {
            // The first op is fine; the second names a missing collection.
            let mut t = txn();
            t.touch(&c, &oid("b"))
                .omap_setheader(&missing, &oid("b"), b"h".to_vec());
            t
        },
        {
            let mut t = txn();
            t.touch(&c, &oid("c"))
                .collection_move_rename(&c, &oid("c"), &missing, &oid("c"));
            t
        },
        {
            let mut t = txn();
            t.collection_set_bits(&missing, 3);
            t
        },
    ];
    for (i, t) in cases.into_iter().enumerate() {
        assert_kind(s.apply(t), ErrorKind::NotFound, &format!("case {i}"));
        assert_eq!(s.capture(), before, "case {i} changed the store");
    }
}

pub fn collection_empty_tracks_objects(f: &dyn StoreFactory) {
    let s = setup(f);
    let c = coll();
    assert!(s.store().collection_empty(&s.ch(&c)).unwrap());
    let mut t = txn();
    t.touch(&c, &oid("a"));
    s.apply_ok(t);
    assert!(!s.store().collection_empty(&s.ch(&c)).unwrap());
    let mut t = txn();
    t.remove(&c, &oid("a"));
    s.apply_ok(t);
    assert!(s.store().collection_empty(&s.ch(&c)).unwrap());
}

pub fn meta_and_temp_collections(f: &dyn StoreFactory) {
    let s = TestStore::new(f);
    let meta = CollectionId::Meta;
    let pg = CollectionId::pg(3, 0x1f);
    let tmp = CollectionId::temp(3, 0x1f);
    for c in [&meta, &pg, &tmp] {
        s.mkcoll(c, 0);
    }
    let mo = ObjectId::in_collection(&meta, "osdmap.1");
    let po = ObjectId::in_collection(&pg, "rbd_data.1");
    let to = ObjectId::in_collection(&tmp, "temp_recovering");
    assert_eq!(mo.pool, -1);
    assert_eq!(to.pool, -5);
    let mut t = txn();
    t.write(&meta, &mo, 0, b"meta".to_vec())
        .write(&pg, &po, 0, b"head".to_vec())
        .write(&tmp, &to, 0, b"temp".to_vec());
    s.apply_ok(t);

    let got: BTreeSet<_> = s.store().list_collections().unwrap().into_iter().collect();
    assert_eq!(got, BTreeSet::from([meta, pg, tmp]));
    assert_eq!(s.list(&meta, 10), vec![mo.clone()]);
    assert_eq!(s.list(&pg, 10), vec![po.clone()]);
    assert_eq!(s.list(&tmp, 10), vec![to.clone()]);
    assert_eq!(s.read_all(&meta, &mo), b"meta");
    assert_eq!(s.read_all(&tmp, &to), b"temp");
    // Same id, other collection: not there.
    assert!(!s.exists(&pg, &mo));
}

/// Objects `0..n` named so their data can be checked after they move.
fn populate(s: &TestStore<'_>, c: &CollectionId, n: usize) -> Vec<ObjectId> {
    let mut all = Vec::new();
    for chunk in (0..n).collect::<Vec<_>>().chunks(25) {
        let mut t = txn();
        for &i in chunk {
            let o = oid(&format!("obj_{i}"));
            t.write(c, &o, 0, pattern(64 + i, i as u8))
                .setattr(c, &o, "i", i.to_string().into_bytes())
                .omap_setkeys(c, &o, [(b"k".to_vec(), vec![i as u8])].into());
            all.push(o);
        }
        s.apply_ok(t);
    }
    all
}

fn check_moved(s: &TestStore<'_>, c: &CollectionId, o: &ObjectId) {
    let i: usize = o.name["obj_".len()..].parse().unwrap();
    assert_eq!(s.read_all(c, o), pattern(64 + i, i as u8), "{o} data");
    let ch = s.ch(c);
    assert_eq!(
        s.store().getattr(&ch, o, "i").unwrap(),
        i.to_string().into_bytes()
    );
    assert_eq!(
        s.store().omap_get(&ch, o).unwrap().1,
        [(b"k".to_vec(), vec![i as u8])].into()
    );
}

pub fn col_split(f: &dyn StoreFactory) {
    let s = setup(f);
    let (c, d) = (coll(), CollectionId::pg(1, 1));
    s.mkcoll(&d, 1);
    let all = populate(&s, &c, 100);
    let expect_moved: Vec<_> = all.iter().filter(|o| o.hash & 1 == 1).cloned().collect();
    assert!(
        !expect_moved.is_empty() && expect_moved.len() < all.len(),
        "the names must hash to both halves"
    );

    let mut t = txn();
    t.split_collection(&c, 1, 1, &d);
    s.apply_ok(t);

    let in_c = s.list(&c, 13);
    let in_d = s.list(&d, 13);
    let mut expect_kept: Vec<_> = all.iter().filter(|o| o.hash & 1 == 0).cloned().collect();
    expect_kept.sort();
    let mut expect_moved = expect_moved;
    expect_moved.sort();
    assert_eq!(in_c, expect_kept);
    assert_eq!(in_d, expect_moved);
    for o in &in_c {
        check_moved(&s, &c, o);
    }
    for o in &in_d {
        check_moved(&s, &d, o);
        assert!(!s.exists(&c, o));
    }
    assert_eq!(s.store().collection_bits(&s.ch(&c)).unwrap(), 1);
    assert_eq!(s.store().collection_bits(&s.ch(&d)).unwrap(), 1);
}

pub fn col_split_moves_by_low_bits_repeatedly(f: &dyn StoreFactory) {
    let s = setup(f);
    let (c, d, e) = (coll(), CollectionId::pg(1, 1), CollectionId::pg(1, 2));
    s.mkcoll(&d, 1);
    s.mkcoll(&e, 2);
    let all = populate(&s, &c, 120);
    let mut t = txn();
    t.split_collection(&c, 1, 1, &d);
    s.apply_ok(t);
    let mut t = txn();
    t.split_collection(&c, 2, 2, &e);
    s.apply_ok(t);

    let low2 = |v: u32| -> Vec<ObjectId> {
        let mut x: Vec<_> = all.iter().filter(|o| o.hash & 3 == v).cloned().collect();
        x.sort();
        x
    };
    let mut odd: Vec<_> = all.iter().filter(|o| o.hash & 1 == 1).cloned().collect();
    odd.sort();
    assert_eq!(s.list(&c, 9), low2(0));
    assert_eq!(s.list(&d, 9), odd);
    assert_eq!(s.list(&e, 9), low2(2));
    assert_eq!(s.store().collection_bits(&s.ch(&c)).unwrap(), 2);
    assert_eq!(s.store().collection_bits(&s.ch(&e)).unwrap(), 2);
    assert_eq!(s.store().collection_bits(&s.ch(&d)).unwrap(), 1);
}

pub fn split_errors(f: &dyn StoreFactory) {
    let s = setup(f);
    let c = coll();
    populate(&s, &c, 10);
    let before = s.capture();
    let missing = CollectionId::pg(1, 1);

    let mut t = txn();
    t.split_collection(&c, 1, 1, &missing);
    assert_kind(
        s.apply(t),
        ErrorKind::NotFound,
        "split2 into a missing collection",
    );
    let mut t = txn();
    t.split_collection(&missing, 1, 1, &c);
    assert_kind(
        s.apply(t),
        ErrorKind::NotFound,
        "split2 from a missing collection",
    );
    assert_eq!(s.capture(), before);

    // State-free checks: refused by queue_transactions itself.
    let ch = s.ch(&c);
    let mut t = txn();
    t.split_collection(&c, 1, 2, &CollectionId::pg(1, 3));
    assert_kind(
        s.store()
            .queue_transactions(&ch, vec![t], Default::default()),
        ErrorKind::InvalidArgument,
        "remainder wider than bits",
    );
    let mut t = txn();
    t.split_collection(&c, 1, 1, &c);
    assert_kind(
        s.store()
            .queue_transactions(&ch, vec![t], Default::default()),
        ErrorKind::InvalidArgument,
        "split into itself",
    );
    assert_eq!(s.capture(), before);
}

pub fn legacy_split_creates_destination(f: &dyn StoreFactory) {
    let s = setup(f);
    let (c, d) = (coll(), CollectionId::pg(1, 1));
    let all = populate(&s, &c, 40);
    let op = |dest: CollectionId| {
        Transaction::from_ops(vec![Op::SplitCollection {
            cid: c,
            bits: 1,
            rem: 1,
            dest,
        }])
    };
    s.apply_ok(op(d));
    assert!(s.store().collection_exists(&d).unwrap());
    let mut moved: Vec<_> = all.iter().filter(|o| o.hash & 1 == 1).cloned().collect();
    moved.sort();
    assert_eq!(s.list(&d, 100), moved);
    assert_eq!(s.store().collection_bits(&s.ch(&d)).unwrap(), 1);

    // The legacy form creates its destination, so an existing one is EEXIST.
    let before = s.capture();
    assert_kind(
        s.apply(op(d)),
        ErrorKind::Exists,
        "legacy split into existing",
    );
    assert_eq!(s.capture(), before);
}

pub fn merge_collection(f: &dyn StoreFactory) {
    let s = setup(f);
    let (c, d) = (coll(), CollectionId::pg(1, 1));
    s.mkcoll(&d, 1);
    let all = populate(&s, &c, 60);
    let mut t = txn();
    t.split_collection(&c, 1, 1, &d);
    s.apply_ok(t);
    assert!(!s.list(&d, 100).is_empty());

    let mut t = txn();
    t.merge_collection(&d, &c, 0);
    s.apply_ok(t);
    assert!(
        !s.store().collection_exists(&d).unwrap(),
        "merge removes the source"
    );
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(s.list(&c, 11), sorted);
    for o in &sorted {
        check_moved(&s, &c, o);
    }
    assert_eq!(s.store().collection_bits(&s.ch(&c)).unwrap(), 0);
}

pub fn merge_errors(f: &dyn StoreFactory) {
    let s = setup(f);
    let c = coll();
    populate(&s, &c, 5);
    let before = s.capture();
    let missing = CollectionId::pg(1, 1);
    let mut t = txn();
    t.merge_collection(&c, &missing, 0);
    assert_kind(
        s.apply(t),
        ErrorKind::NotFound,
        "merge into a missing collection",
    );
    let mut t = txn();
    t.merge_collection(&missing, &c, 0);
    assert_kind(
        s.apply(t),
        ErrorKind::NotFound,
        "merge from a missing collection",
    );
    assert_eq!(s.capture(), before);
}

pub fn coll_set_bits_and_hint(f: &dyn StoreFactory) {
    let mut s = setup(f);
    let c = coll();
    let mut hint = 8u32.to_le_bytes().to_vec();
    hint.extend_from_slice(&1000u64.to_le_bytes());
    let mut t = txn();
    t.collection_set_bits(&c, 5)
        .collection_hint(&c, 1, hint)
        .collection_hint(&c, 99, b"ignored".to_vec());
    s.apply_ok(t);
    assert_eq!(s.store().collection_bits(&s.ch(&c)).unwrap(), 5);
    assert!(s.store().collection_empty(&s.ch(&c)).unwrap());
    s.remount();
    assert_eq!(s.store().collection_bits(&s.ch(&c)).unwrap(), 5);
}
