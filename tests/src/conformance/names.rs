//! Object ids with awkward names, long names, and ids differing in one field.

use ostore_os::limits::{MAX_NAMESPACE_LEN, MAX_NAME_LEN};
use ostore_os::{ErrorKind, ObjectId, Snap};

use super::{coll, oid, setup, txn};
use crate::harness::{StoreFactory, TestStore};
use crate::state::assert_kind;

fn write_each(s: &TestStore<'_>, objs: &[ObjectId]) {
    for chunk in objs.chunks(16).enumerate() {
        let mut t = txn();
        for (j, o) in chunk.1.iter().enumerate() {
            let i = chunk.0 * 16 + j;
            t.write(&coll(), o, 0, format!("data {i}").into_bytes())
                .setattr(&coll(), o, "i", i.to_string().into_bytes())
                .omap_setkeys(&coll(), o, [(o.name.clone().into_bytes(), vec![1])].into());
        }
        s.apply_ok(t);
    }
}

fn check_each(s: &TestStore<'_>, objs: &[ObjectId]) {
    let mut sorted = objs.to_vec();
    sorted.sort();
    assert_eq!(s.list(&coll(), 10), sorted);
    let ch = s.ch(&coll());
    for (i, o) in objs.iter().enumerate() {
        assert_eq!(
            s.read_all(&coll(), o),
            format!("data {i}").into_bytes(),
            "{o}"
        );
        assert_eq!(
            s.store().getattr(&ch, o, "i").unwrap(),
            i.to_string().into_bytes()
        );
        assert!(s
            .store()
            .omap_get_keys(&ch, o)
            .unwrap()
            .contains(o.name.as_bytes()));
    }
}

pub fn unprintable_and_odd_names(f: &dyn StoreFactory) {
    let mut s = setup(f);
    let mut names: Vec<String> = (1u8..0x20).map(|b| (b as char).to_string()).collect();
    names.extend(
        [
            "/",
            "a/b",
            "/leading",
            "trailing/",
            ".",
            "..",
            "...",
            "\\",
            "~",
            "#",
            "!",
            "%2F",
            "%",
            "_",
            "__",
            "_head",
            "_TEMP",
            " ",
            "a b",
            "a\x01b",
            "a\x1fb",
            "\x7f",
            "ünïcödé",
            "日本語",
            "A",
            "a",
            "meta",
            "1.0_head",
            "#MAX#",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    let mut objs: Vec<ObjectId> = names.iter().map(|n| oid(n)).collect();
    objs.push(oid("x").with_namespace("ns/with/slash"));
    objs.push(oid("x").with_namespace("\x01"));
    objs.push(oid("x").with_key("key/.."));
    objs.push(oid("x").with_key("\x02"));
    write_each(&s, &objs);
    check_each(&s, &objs);
    s.remount();
    check_each(&s, &objs);
}

pub fn long_names_up_to_the_limit(f: &dyn StoreFactory) {
    let mut s = setup(f);
    let long = |c: char, last: char| {
        let mut n: String = std::iter::repeat_n(c, MAX_NAME_LEN - 1).collect();
        n.push(last);
        n
    };
    let objs = vec![
        oid(&long('a', 'a')),
        oid(&long('a', 'b')),
        oid(&long('/', '.')),
        oid(&long('b', 'b')).with_namespace("n".repeat(MAX_NAMESPACE_LEN)),
        oid("short").with_key(long('k', 'k')),
        oid(&long('\x01', '\x02')),
    ];
    write_each(&s, &objs);
    check_each(&s, &objs);
    s.remount();
    check_each(&s, &objs);

    let ch = s.ch(&coll());
    let before = s.capture();
    for (i, bad) in [
        oid(&"a".repeat(MAX_NAME_LEN + 1)),
        oid("x").with_namespace("n".repeat(MAX_NAMESPACE_LEN + 1)),
        oid("x").with_key("k".repeat(MAX_NAME_LEN + 1)),
    ]
    .into_iter()
    .enumerate()
    {
        let mut t = txn();
        t.touch(&coll(), &oid("fine")).touch(&coll(), &bad);
        assert_kind(
            s.store()
                .queue_transactions(&ch, vec![t], Default::default()),
            ErrorKind::TooBig,
            &format!("over-long id {i}"),
        );
    }
    assert_eq!(s.capture(), before);
}

pub fn ids_differing_only_by_key_namespace_snap(f: &dyn StoreFactory) {
    let s = setup(f);
    let base = oid("same");
    let objs = vec![
        base.clone(),
        base.clone().with_key("k1"),
        base.clone().with_key("k2"),
        base.clone().with_namespace("n"),
        base.clone().with_namespace("n").with_key("k1"),
        base.clone().with_snap(Snap(1)),
        base.clone().with_snap(Snap(2)),
        base.clone().with_snap(Snap::SNAPDIR),
        base.clone().with_generation(1),
        base.clone().with_shard(0),
        base.clone().with_shard(1),
        ObjectId::new(2, "same"),
        base.clone().with_hash(base.hash ^ 1),
    ];
    write_each(&s, &objs);
    check_each(&s, &objs);
    // Removing one leaves its siblings alone.
    let mut t = txn();
    t.remove(&coll(), &objs[0]).truncate(&coll(), &objs[5], 1);
    s.apply_ok(t);
    assert!(!s.exists(&coll(), &objs[0]));
    for (i, o) in objs.iter().enumerate().skip(1) {
        let mut exp = format!("data {i}").into_bytes();
        if i == 5 {
            exp.truncate(1);
        }
        assert_eq!(s.read_all(&coll(), o), exp, "{o}");
    }
}

pub fn invalid_ids_are_rejected(f: &dyn StoreFactory) {
    let s = setup(f);
    let ch = s.ch(&coll());
    let before = s.capture();
    let bad = [
        (ObjectId::min(), ErrorKind::InvalidArgument),
        (oid("nul\0inside"), ErrorKind::InvalidArgument),
        (oid("x").with_namespace("n\0"), ErrorKind::InvalidArgument),
        (ObjectId::max_sentinel(), ErrorKind::InvalidArgument),
        (oid("x").with_shard(-2), ErrorKind::InvalidArgument),
    ];
    for (o, kind) in bad {
        let mut t = txn();
        t.touch(&coll(), &oid("fine"))
            .write(&coll(), &o, 0, b"x".to_vec());
        assert_kind(
            s.store()
                .queue_transactions(&ch, vec![t], Default::default()),
            kind,
            &format!("invalid id {o:?}"),
        );
    }
    assert_eq!(s.capture(), before);
}

/// Ceph keeps each PG's info and log in the omap of its pgmeta object: an empty name,
/// the PG's seed as hash, head (`ghobject_t::make_pgmeta`). It is an object like any
/// other: stored, listed in order, cloned, renamed, removed, kept across remounts.
pub fn pgmeta_objects_have_empty_names(f: &dyn StoreFactory) {
    let mut s = setup(f);
    let c = coll();
    let pgmeta = ObjectId::new(1, "").with_hash(0);
    let named = oid("a");
    let mut t = txn();
    t.touch(&c, &pgmeta)
        .omap_setheader(&c, &pgmeta, b"pg header".to_vec())
        .omap_setkeys(
            &c,
            &pgmeta,
            [
                (b"_info".to_vec(), b"info".to_vec()),
                (b"0000000001.00000000000000000001".to_vec(), b"log".to_vec()),
            ]
            .into(),
        )
        .setattr(&c, &pgmeta, "_", b"v".to_vec())
        .write(&c, &named, 0, b"named".to_vec());
    s.apply_ok(t);
    // Hash 0 sorts first in its pool; the empty name before any other at that hash.
    let other_at_zero = oid("b").with_hash(0);
    let mut t = txn();
    t.touch(&c, &other_at_zero);
    s.apply_ok(t);
    assert_eq!(s.list(&c, 10), vec![pgmeta.clone(), other_at_zero, named]);
    s.remount();
    let ch = s.ch(&c);
    assert_eq!(
        s.store().omap_get_header(&ch, &pgmeta).unwrap(),
        b"pg header"
    );
    assert_eq!(s.store().omap_get_keys(&ch, &pgmeta).unwrap().len(), 2);
    assert_eq!(s.store().getattr(&ch, &pgmeta, "_").unwrap(), b"v");
    assert_eq!(s.size(&c, &pgmeta), 0);
    // Clone it out, rename it, remove it: every path that names files or keys.
    let copy = oid("copy");
    let moved = ObjectId::new(1, "").with_hash(7);
    let mut t = txn();
    t.clone_obj(&c, &pgmeta, &copy)
        .collection_move_rename(&c, &pgmeta, &c, &moved);
    s.apply_ok(t);
    assert!(!s.exists(&c, &pgmeta));
    assert_eq!(s.store().omap_get_header(&ch, &copy).unwrap(), b"pg header");
    assert_eq!(s.store().omap_get_keys(&ch, &moved).unwrap().len(), 2);
    let mut t = txn();
    t.remove(&c, &moved);
    s.apply_ok(t);
    assert!(!s.exists(&c, &moved));
    s.remount();
    assert!(!s.exists(&c, &moved));
    assert!(s.exists(&c, &copy));
}
