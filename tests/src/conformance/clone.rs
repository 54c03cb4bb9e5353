//! CLONE, CLONERANGE, CLONERANGE2, COLL_MOVE_RENAME, TRY_RENAME.

use std::collections::BTreeMap;

use ostore_os::{CollectionId, ErrorKind, ObjectId, Op, Transaction};

use super::{coll, oid, pattern, setup, txn};
use crate::harness::{StoreFactory, TestStore};
use crate::state::{assert_kind, ObjectState};

fn object_state(s: &TestStore<'_>, c: &CollectionId, o: &ObjectId) -> ObjectState {
    let ch = s.ch(c);
    let (omap_header, omap) = s.store().omap_get(&ch, o).unwrap();
    ObjectState {
        data: s.read_all(c, o),
        attrs: s.store().getattrs(&ch, o).unwrap(),
        omap_header,
        omap,
    }
}

/// Writes all four parts of `o`.
fn fill(t: &mut Transaction, c: &CollectionId, o: &ObjectId, len: usize, seed: u8) {
    t.write(c, o, 0, pattern(len, seed))
        .setattr(c, o, &format!("attr{seed}"), vec![seed; 3])
        .setattr(c, o, "common", vec![seed])
        .omap_setheader(c, o, vec![seed; 5])
        .omap_setkeys(
            c,
            o,
            [
                (format!("key{seed}").into_bytes(), vec![seed]),
                (b"common".to_vec(), vec![seed, seed]),
            ]
            .into(),
        );
}

pub fn clone_test(f: &dyn StoreFactory) {
    let s = setup(f);
    let c = coll();
    let (src, dst, fresh) = (oid("src"), oid("dst"), oid("fresh"));
    let mut t = txn();
    fill(&mut t, &c, &src, 5000, 1);
    // The destination is bigger and has parts the source lacks: all must go.
    fill(&mut t, &c, &dst, 20_000, 2);
    s.apply_ok(t);
    let src_state = object_state(&s, &c, &src);

    let mut t = txn();
    t.clone_obj(&c, &src, &dst).clone_obj(&c, &src, &fresh);
    s.apply_ok(t);
    assert_eq!(object_state(&s, &c, &dst), src_state, "clone replaces dst");
    assert_eq!(s.size(&c, &dst), 5000);
    assert_eq!(object_state(&s, &c, &fresh), src_state, "clone creates dst");
    assert_eq!(object_state(&s, &c, &src), src_state, "clone keeps src");
}

pub fn clone_is_independent_of_source(f: &dyn StoreFactory) {
    let mut s = setup(f);
    let c = coll();
    let (src, dst) = (oid("src"), oid("dst"));
    let mut t = txn();
    fill(&mut t, &c, &src, 3 * 4096 + 7, 1);
    s.apply_ok(t);
    let original = object_state(&s, &c, &src);
    let mut t = txn();
    t.clone_obj(&c, &src, &dst);
    s.apply_ok(t);

    // Changing either side afterwards must not show through the other (copy-on-write
    // backends share storage here).
    let mut t = txn();
    t.write(&c, &src, 10, b"SRC".to_vec())
        .truncate(&c, &src, 4096)
        .setattr(&c, &src, "common", b"changed".to_vec())
        .omap_setkeys(&c, &src, [(b"new".to_vec(), b"x".to_vec())].into());
    s.apply_ok(t);
    assert_eq!(object_state(&s, &c, &dst), original);
    let src_now = object_state(&s, &c, &src);
    let mut t = txn();
    t.write(&c, &dst, 0, b"DST".to_vec())
        .omap_clear(&c, &dst)
        .rmattrs(&c, &dst);
    s.apply_ok(t);
    assert_eq!(object_state(&s, &c, &src), src_now);
    let mut exp = original.data.clone();
    exp[..3].copy_from_slice(b"DST");
    assert_eq!(s.read_all(&c, &dst), exp);
    s.remount();
    assert_eq!(object_state(&s, &c, &src), src_now);
    assert_eq!(s.read_all(&c, &dst), exp);
}

pub fn omap_clone_test(f: &dyn StoreFactory) {
    let s = setup(f);
    let c = coll();
    let (src, dst) = (oid("omap_src"), oid("omap_dst"));
    let keys: BTreeMap<Vec<u8>, Vec<u8>> = (0..100u32)
        .map(|i| {
            (
                format!("k{i:03}").into_bytes(),
                pattern(i as usize, i as u8),
            )
        })
        .collect();
    let mut t = txn();
    t.touch(&c, &src)
        .omap_setheader(&c, &src, b"the header".to_vec())
        .omap_setkeys(&c, &src, keys.clone())
        .touch(&c, &dst)
        .omap_setkeys(&c, &dst, [(b"stale".to_vec(), b"x".to_vec())].into());
    s.apply_ok(t);
    let mut t = txn();
    t.clone_obj(&c, &src, &dst);
    s.apply_ok(t);
    let ch = s.ch(&c);
    assert_eq!(
        s.store().omap_get(&ch, &dst).unwrap(),
        (b"the header".to_vec(), keys)
    );
}

pub fn clone_of_missing_object_rejects(f: &dyn StoreFactory) {
    let s = setup(f);
    let c = coll();
    let mut t = txn();
    t.write(&c, &oid("x"), 0, b"before".to_vec());
    s.apply_ok(t);
    let before = s.capture();
    let mut t = txn();
    t.write(&c, &oid("x"), 0, b"AFTER!".to_vec())
        .touch(&c, &oid("y"))
        .clone_obj(&c, &oid("missing"), &oid("z"));
    assert_kind(
        s.apply(t),
        ErrorKind::NotFound,
        "clone from a missing object",
    );
    assert_eq!(s.capture(), before);

    // A source removed earlier in the same transaction is missing too.
    let mut t = txn();
    t.remove(&c, &oid("x")).clone_obj(&c, &oid("x"), &oid("z"));
    assert_kind(
        s.apply(t),
        ErrorKind::NotFound,
        "clone from a removed object",
    );
    assert_eq!(s.capture(), before);

    // Clone onto itself is malformed.
    let mut t = txn();
    t.clone_obj(&c, &oid("x"), &oid("x"));
    assert_kind(
        s.store()
            .queue_transactions(&s.ch(&c), vec![t], Default::default()),
        ErrorKind::InvalidArgument,
        "clone onto itself",
    );
}

pub fn clone_range_test(f: &dyn StoreFactory) {
    let s = setup(f);
    let c = coll();
    let (src, dst) = (oid("src"), oid("dst"));
    let sdata = pattern(100, 1);
    let ddata = pattern(50, 2);
    let mut t = txn();
    t.write(&c, &src, 0, sdata.clone())
        .write(&c, &dst, 0, ddata.clone())
        .setattr(&c, &dst, "mine", b"kept".to_vec())
        .setattr(&c, &src, "theirs", b"not copied".to_vec())
        .omap_setkeys(&c, &src, [(b"k".to_vec(), b"v".to_vec())].into());
    s.apply_ok(t);

    let mut t = txn();
    t.clone_range(&c, &src, &dst, 10, 20, 40);
    s.apply_ok(t);
    let mut exp = ddata.clone();
    exp.resize(60, 0);
    exp[40..60].copy_from_slice(&sdata[10..30]);
    assert_eq!(s.read_all(&c, &dst), exp);

    // Inside the destination: size unchanged.
    let mut t = txn();
    t.clone_range(&c, &src, &dst, 0, 5, 1);
    s.apply_ok(t);
    exp[1..6].copy_from_slice(&sdata[..5]);
    assert_eq!(s.read_all(&c, &dst), exp);

    // Past the end: a zero gap, size = dst_off + len.
    let mut t = txn();
    t.clone_range(&c, &src, &dst, 90, 10, 200);
    s.apply_ok(t);
    exp.resize(200, 0);
    exp.extend(&sdata[90..100]);
    assert_eq!(s.read_all(&c, &dst), exp);

    // Into a new object.
    let fresh = oid("fresh");
    let mut t = txn();
    t.clone_range(&c, &src, &fresh, 0, 100, 4096);
    s.apply_ok(t);
    let mut fexp = vec![0u8; 4096];
    fexp.extend(&sdata);
    assert_eq!(s.read_all(&c, &fresh), fexp);

    let ch = s.ch(&c);
    assert_eq!(
        s.store().getattrs(&ch, &dst).unwrap(),
        [("mine".to_string(), b"kept".to_vec())].into(),
        "clone range copies data only"
    );
    assert!(s.store().omap_get(&ch, &fresh).unwrap().1.is_empty());
    assert_eq!(s.read_all(&c, &src), sdata);
}

pub fn clone_range_clipped_at_source_end(f: &dyn StoreFactory) {
    let s = setup(f);
    let c = coll();
    let src = oid("src");
    let sdata = pattern(100, 3);
    let mut t = txn();
    t.write(&c, &src, 0, sdata.clone());
    s.apply_ok(t);

    let (d1, d2) = (oid("d1"), oid("d2"));
    let mut t = txn();
    t.clone_range(&c, &src, &d1, 50, 100, 10)
        .clone_range(&c, &src, &d2, 150, 10, 0);
    s.apply_ok(t);
    let mut exp = vec![0u8; 10];
    exp.extend(&sdata[50..]);
    assert_eq!(s.read_all(&c, &d1), exp, "copy stops at the source's end");
    assert!(s.exists(&c, &d2), "the destination is created regardless");
    assert_eq!(s.size(&c, &d2), 0);
}

pub fn simple_clone_range_same_offset(f: &dyn StoreFactory) {
    let s = setup(f);
    let c = coll();
    let (src, dst) = (oid("src"), oid("dst"));
    let sdata = pattern(8192, 4);
    let mut t = txn();
    t.write(&c, &src, 0, sdata.clone())
        .write(&c, &dst, 0, vec![b'd'; 100]);
    s.apply_ok(t);
    let t = Transaction::from_ops(vec![Op::CloneRange {
        cid: c,
        src: src.clone(),
        dst: dst.clone(),
        off: 4000,
        len: 200,
    }]);
    s.apply_ok(t);
    let mut exp = vec![b'd'; 100];
    exp.resize(4000, 0);
    exp.extend(&sdata[4000..4200]);
    assert_eq!(s.read_all(&c, &dst), exp);
}

pub fn clone_range_of_missing_object_rejects(f: &dyn StoreFactory) {
    let s = setup(f);
    let c = coll();
    let mut t = txn();
    t.touch(&c, &oid("dst"));
    s.apply_ok(t);
    let before = s.capture();
    let mut t = txn();
    t.write(&c, &oid("dst"), 0, b"x".to_vec()).clone_range(
        &c,
        &oid("missing"),
        &oid("dst"),
        0,
        10,
        0,
    );
    assert_kind(s.apply(t), ErrorKind::NotFound, "clonerange2 from missing");
    let t = Transaction::from_ops(vec![Op::CloneRange {
        cid: c,
        src: oid("missing"),
        dst: oid("new"),
        off: 0,
        len: 1,
    }]);
    assert_kind(s.apply(t), ErrorKind::NotFound, "clonerange from missing");
    assert_eq!(s.capture(), before);
}

fn full_object(t: &mut Transaction, c: &CollectionId, o: &ObjectId) {
    fill(t, c, o, 9000, 7);
}

pub fn move_rename(f: &dyn StoreFactory) {
    let s = setup(f);
    let c = coll();
    let (a, b) = (oid("a"), oid("b"));
    let mut t = txn();
    full_object(&mut t, &c, &a);
    s.apply_ok(t);
    let st = object_state(&s, &c, &a);
    let mut t = txn();
    t.collection_move_rename(&c, &a, &c, &b);
    s.apply_ok(t);
    assert!(!s.exists(&c, &a));
    assert_eq!(object_state(&s, &c, &b), st);
    assert_eq!(s.list(&c, 10), vec![b.clone()]);

    // Renaming to a name the transaction just freed works; a missing source is skipped.
    let mut t = txn();
    t.collection_move_rename(&c, &b, &c, &a)
        .collection_move_rename(&c, &oid("ghost"), &c, &oid("ghost2"));
    s.apply_ok(t);
    assert_eq!(object_state(&s, &c, &a), st);
    assert!(!s.exists(&c, &b));
    assert!(!s.exists(&c, &oid("ghost2")));
}

pub fn move_rename_across_collections(f: &dyn StoreFactory) {
    let s = setup(f);
    let (c, d) = (coll(), CollectionId::pg(1, 1));
    s.mkcoll(&d, 0);
    let (a, b) = (oid("a"), oid("b"));
    let mut t = txn();
    full_object(&mut t, &c, &a);
    s.apply_ok(t);
    let st = object_state(&s, &c, &a);
    let mut t = txn();
    t.collection_move_rename(&c, &a, &d, &b);
    s.apply_ok(t);
    assert!(s.store().collection_empty(&s.ch(&c)).unwrap());
    assert_eq!(object_state(&s, &d, &b), st);
}

pub fn move_rename_onto_existing_rejects(f: &dyn StoreFactory) {
    let s = setup(f);
    let c = coll();
    let (a, b) = (oid("a"), oid("b"));
    let mut t = txn();
    t.write(&c, &a, 0, b"aaa".to_vec())
        .write(&c, &b, 0, b"bbb".to_vec());
    s.apply_ok(t);
    let before = s.capture();
    let mut t = txn();
    t.write(&c, &a, 0, b"AAA".to_vec())
        .collection_move_rename(&c, &a, &c, &b);
    assert_kind(
        s.apply(t),
        ErrorKind::Exists,
        "rename onto an existing object",
    );
    assert_eq!(s.capture(), before);
    // Onto itself: the destination exists.
    let mut t = txn();
    t.collection_move_rename(&c, &a, &c, &a);
    assert_kind(s.apply(t), ErrorKind::Exists, "rename onto itself");
    assert_eq!(s.capture(), before);
}

pub fn try_rename(f: &dyn StoreFactory) {
    let s = setup(f);
    let c = coll();
    let (a, b, x) = (oid("a"), oid("b"), oid("x"));
    let mut t = txn();
    t.try_rename(&c, &a, &b);
    s.apply_ok(t);
    assert!(!s.exists(&c, &a) && !s.exists(&c, &b), "no-op when missing");

    let mut t = txn();
    t.write(&c, &a, 0, b"payload".to_vec())
        .setattr(&c, &a, "k", b"v".to_vec())
        .omap_setheader(&c, &a, b"h".to_vec());
    s.apply_ok(t);
    let st = object_state(&s, &c, &a);
    let mut t = txn();
    t.try_rename(&c, &a, &b);
    s.apply_ok(t);
    assert!(!s.exists(&c, &a));
    assert_eq!(object_state(&s, &c, &b), st);

    let mut t = txn();
    t.touch(&c, &x);
    s.apply_ok(t);
    let before = s.capture();
    let mut t = txn();
    t.try_rename(&c, &b, &x);
    assert_kind(
        s.apply(t),
        ErrorKind::Exists,
        "try_rename onto an existing object",
    );
    assert_eq!(s.capture(), before);
}
