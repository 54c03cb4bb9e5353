//! Object data: write, zero, truncate, reads, holes, sizes.

use ostore_os::{ErrorKind, Op, Transaction};

use super::{coll, oid, pattern, setup, txn};
use crate::harness::StoreFactory;
use crate::state::assert_kind;

pub fn simple_object(f: &dyn StoreFactory) {
    let s = setup(f);
    let (c, o) = (coll(), oid("Object 1"));
    assert!(!s.exists(&c, &o));
    let mut t = txn();
    t.touch(&c, &o);
    s.apply_ok(t);
    assert!(s.exists(&c, &o));
    assert_eq!(s.size(&c, &o), 0);
    assert_eq!(s.read_all(&c, &o), b"");

    let mut t = txn();
    t.write(&c, &o, 0, b"abcde".to_vec());
    s.apply_ok(t);
    assert_eq!(s.read_all(&c, &o), b"abcde");
    assert_eq!(s.size(&c, &o), 5);
    // Touch of an existing object changes nothing.
    let mut t = txn();
    t.touch(&c, &o);
    s.apply_ok(t);
    assert_eq!(s.read_all(&c, &o), b"abcde");

    let mut t = txn();
    t.remove(&c, &o);
    s.apply_ok(t);
    assert!(!s.exists(&c, &o));
    assert_kind(
        s.store().stat(&s.ch(&c), &o),
        ErrorKind::NotFound,
        "stat removed",
    );
}

pub fn create_on_existing_behaves_as_touch(f: &dyn StoreFactory) {
    let s = setup(f);
    let (c, o) = (coll(), oid("o"));
    let mut t = txn();
    t.create(&c, &o);
    s.apply_ok(t);
    assert_eq!(s.size(&c, &o), 0);
    let mut t = txn();
    t.write(&c, &o, 0, b"keep".to_vec()).create(&c, &o);
    s.apply_ok(t);
    assert_eq!(s.read_all(&c, &o), b"keep");
}

pub fn small_block_writes(f: &dyn StoreFactory) {
    let s = setup(f);
    let (c, o) = (coll(), oid("foo"));
    let (a, b, cc, d) = (
        pattern(4096, 1),
        pattern(4096, 2),
        pattern(4096, 3),
        pattern(4096, 4),
    );
    let mut t = txn();
    t.write(&c, &o, 0, a.clone());
    s.apply_ok(t);
    let mut exp = a.clone();
    assert_eq!(s.read_all(&c, &o), exp);

    let mut t = txn();
    t.write(&c, &o, 8192, b.clone());
    s.apply_ok(t);
    exp.extend(vec![0u8; 4096]);
    exp.extend(&b);
    assert_eq!(s.read_all(&c, &o), exp);

    let mut t = txn();
    t.write(&c, &o, 4096, cc.clone());
    s.apply_ok(t);
    exp[4096..8192].copy_from_slice(&cc);
    assert_eq!(s.read_all(&c, &o), exp);

    let mut t = txn();
    t.write(&c, &o, 4096, d.clone());
    s.apply_ok(t);
    exp[4096..8192].copy_from_slice(&d);
    assert_eq!(s.read_all(&c, &o), exp);
    assert_eq!(s.size(&c, &o), 12288);

    // Unaligned small writes straddling block boundaries.
    let mut t = txn();
    t.write(&c, &o, 4090, b"0123456789AB".to_vec())
        .write(&c, &o, 12287, b"xyz".to_vec());
    s.apply_ok(t);
    exp[4090..4102].copy_from_slice(b"0123456789AB");
    exp.truncate(12287);
    exp.extend(b"xyz");
    assert_eq!(s.read_all(&c, &o), exp);
    assert_eq!(s.size(&c, &o), 12290);
}

pub fn overwrite_keeps_the_rest(f: &dyn StoreFactory) {
    let s = setup(f);
    let (c, o) = (coll(), oid("o"));
    let mut t = txn();
    t.write(&c, &o, 0, b"aaaaaaaaaa".to_vec());
    s.apply_ok(t);
    let mut t = txn();
    t.write(&c, &o, 3, b"BB".to_vec());
    s.apply_ok(t);
    assert_eq!(s.read_all(&c, &o), b"aaaBBaaaaa");
    let mut t = txn();
    t.write(&c, &o, 8, b"CCCC".to_vec());
    s.apply_ok(t);
    assert_eq!(s.read_all(&c, &o), b"aaaBBaaaCCCC");
}

pub fn zero_length_write(f: &dyn StoreFactory) {
    let s = setup(f);
    let c = coll();
    let (o, p) = (oid("foo"), oid("new"));
    let mut t = txn();
    t.touch(&c, &o);
    s.apply_ok(t);
    let mut t = txn();
    t.write(&c, &o, 1 << 20, Vec::new());
    s.apply_ok(t);
    assert_eq!(s.size(&c, &o), 0, "an empty write never changes the size");
    // Ceph's WRITE creates its object even when empty.
    let mut t = txn();
    t.write(&c, &p, 100, Vec::new());
    s.apply_ok(t);
    assert!(s.exists(&c, &p));
    assert_eq!(s.size(&c, &p), 0);
}

pub fn zero_length_zero(f: &dyn StoreFactory) {
    let s = setup(f);
    let (c, o) = (coll(), oid("foo"));
    let mut t = txn();
    t.touch(&c, &o);
    s.apply_ok(t);
    let mut t = txn();
    t.zero(&c, &o, 1 << 20, 0);
    s.apply_ok(t);
    assert_eq!(s.size(&c, &o), 0);
    let mut t = txn();
    t.write(&c, &o, 0, b"abc".to_vec()).zero(&c, &o, 10, 0);
    s.apply_ok(t);
    assert_eq!(s.size(&c, &o), 3);
}

pub fn zero_vs_object_size(f: &dyn StoreFactory) {
    let s = setup(f);
    let (c, o) = (coll(), oid("foo"));
    let mut t = txn();
    t.write(&c, &o, 0, b"abcde".to_vec());
    s.apply_ok(t);
    assert_eq!(s.size(&c, &o), 5);
    let mut t = txn();
    t.zero(&c, &o, 1, 2);
    s.apply_ok(t);
    assert_eq!(s.size(&c, &o), 5);
    assert_eq!(s.read_all(&c, &o), b"a\0\0de");
    let mut t = txn();
    t.zero(&c, &o, 3, 200);
    s.apply_ok(t);
    assert_eq!(s.size(&c, &o), 203);
    let mut t = txn();
    t.zero(&c, &o, 100_000, 200);
    s.apply_ok(t);
    assert_eq!(s.size(&c, &o), 100_200);
    let mut exp = b"a".to_vec();
    exp.resize(100_200, 0);
    assert_eq!(s.read_all(&c, &o), exp);
}

pub fn zero_creates_missing_object(f: &dyn StoreFactory) {
    let s = setup(f);
    let (c, o) = (coll(), oid("z"));
    let mut t = txn();
    t.zero(&c, &o, 10, 20);
    s.apply_ok(t);
    assert!(s.exists(&c, &o));
    assert_eq!(s.read_all(&c, &o), vec![0u8; 30]);
}

pub fn write_past_end_fills_with_zeros(f: &dyn StoreFactory) {
    let s = setup(f);
    let (c, o) = (coll(), oid("gap"));
    let mut t = txn();
    t.write(&c, &o, 100, b"xyz".to_vec());
    s.apply_ok(t);
    assert_eq!(s.size(&c, &o), 103);
    let mut exp = vec![0u8; 100];
    exp.extend(b"xyz");
    assert_eq!(s.read_all(&c, &o), exp);
    let mut t = txn();
    t.write(&c, &o, 70_000, b"q".to_vec());
    s.apply_ok(t);
    exp.resize(70_000, 0);
    exp.push(b'q');
    assert_eq!(s.read_all(&c, &o), exp);
}

pub fn read_semantics(f: &dyn StoreFactory) {
    let s = setup(f);
    let (c, o) = (coll(), oid("r"));
    let data = pattern(10_000, 9);
    let mut t = txn();
    t.write(&c, &o, 0, data.clone());
    s.apply_ok(t);
    let r = |off, len| s.read(&c, &o, off, len).unwrap();
    assert_eq!(r(0, 0), data, "read(0, 0) reads everything");
    assert_eq!(r(4000, 0), data[4000..], "len 0 reads to the end");
    assert_eq!(r(100, 50), data[100..150]);
    assert_eq!(r(9_990, 100), data[9_990..], "short read at the end");
    assert_eq!(r(10_000, 10), b"", "read at the end");
    assert_eq!(r(20_000, 10), b"", "read past the end");
    assert_eq!(r(20_000, 0), b"", "read(past end, 0)");
    assert_eq!(r(10_000, 0), b"", "read(end, 0)");
}

pub fn missing_object_reads_are_enoent(f: &dyn StoreFactory) {
    let s = setup(f);
    let (c, o) = (coll(), oid("missing"));
    let st = s.store();
    let ch = s.ch(&c);
    assert!(!st.exists(&ch, &o).unwrap());
    assert_kind(st.stat(&ch, &o), ErrorKind::NotFound, "stat");
    assert_kind(st.read(&ch, &o, 0, 0), ErrorKind::NotFound, "read");
    assert_kind(st.fiemap(&ch, &o, 0, 0), ErrorKind::NotFound, "fiemap");
    assert_kind(st.getattr(&ch, &o, "a"), ErrorKind::NotFound, "getattr");
    assert_kind(st.getattrs(&ch, &o), ErrorKind::NotFound, "getattrs");
    assert_kind(st.omap_get(&ch, &o), ErrorKind::NotFound, "omap_get");
    assert_kind(st.omap_get_header(&ch, &o), ErrorKind::NotFound, "header");
    assert_kind(st.omap_get_keys(&ch, &o), ErrorKind::NotFound, "keys");
    let keys = [b"k".to_vec()].into();
    assert_kind(
        st.omap_get_values(&ch, &o, &keys),
        ErrorKind::NotFound,
        "values",
    );
    assert_kind(
        st.omap_check_keys(&ch, &o, &keys),
        ErrorKind::NotFound,
        "check_keys",
    );
    assert_kind(
        st.omap_iterator(&ch, &o).map(|_| ()),
        ErrorKind::NotFound,
        "omap_iterator",
    );
}

pub fn truncate_test(f: &dyn StoreFactory) {
    let s = setup(f);
    let (c, o) = (coll(), oid("t"));
    let data = pattern(100, 5);
    let mut t = txn();
    t.write(&c, &o, 0, data.clone());
    s.apply_ok(t);
    let mut t = txn();
    t.truncate(&c, &o, 50);
    s.apply_ok(t);
    assert_eq!(s.read_all(&c, &o), data[..50]);
    let mut t = txn();
    t.truncate(&c, &o, 200);
    s.apply_ok(t);
    let mut exp = data[..50].to_vec();
    exp.resize(200, 0);
    assert_eq!(s.read_all(&c, &o), exp, "truncate up zero-extends");
    let mut t = txn();
    t.truncate(&c, &o, 0);
    s.apply_ok(t);
    assert_eq!(s.size(&c, &o), 0);
    let mut t = txn();
    t.write(&c, &o, 10, b"x".to_vec());
    s.apply_ok(t);
    let mut exp = vec![0u8; 10];
    exp.push(b'x');
    assert_eq!(s.read_all(&c, &o), exp, "old bytes never come back");
}

pub fn truncate_then_extend_reads_zeros(f: &dyn StoreFactory) {
    let s = setup(f);
    let (c, o) = (coll(), oid("t"));
    let data = pattern(3 * 4096 + 100, 7);
    let mut t = txn();
    t.write(&c, &o, 0, data.clone());
    s.apply_ok(t);
    // Shrink to the middle of a block and grow again in the same and in later
    // transactions: stale bytes beyond the cut must read as zeros.
    let mut t = txn();
    t.truncate(&c, &o, 10).truncate(&c, &o, 5000);
    s.apply_ok(t);
    let mut exp = data[..10].to_vec();
    exp.resize(5000, 0);
    assert_eq!(s.read_all(&c, &o), exp);
    let mut t = txn();
    t.truncate(&c, &o, 4097);
    s.apply_ok(t);
    let mut t = txn();
    t.zero(&c, &o, 0, 0)
        .write(&c, &o, 3 * 4096 + 99, b"z".to_vec());
    s.apply_ok(t);
    exp.truncate(4097);
    exp.resize(3 * 4096 + 99, 0);
    exp.push(b'z');
    assert_eq!(s.read_all(&c, &o), exp);
}

pub fn sparse_reads_and_fiemap(f: &dyn StoreFactory) {
    let s = setup(f);
    let (c, o) = (coll(), oid("sparse"));
    let a = pattern(4096, 1);
    let b = pattern(4096, 2);
    let mut t = txn();
    t.write(&c, &o, 0, a.clone())
        .write(&c, &o, 1 << 20, b.clone());
    s.apply_ok(t);
    let size = (1 << 20) + 4096;
    assert_eq!(s.size(&c, &o), size);
    assert_eq!(s.read(&c, &o, 4096, 8192).unwrap(), vec![0u8; 8192], "hole");
    assert_eq!(s.read(&c, &o, (1 << 20) - 10, 20).unwrap()[..10], [0u8; 10]);
    let all = s.read_all(&c, &o);

    for (off, len) in [
        (0u64, 0u64),
        (0, size),
        (100, 5000),
        ((1 << 20) - 1, 2),
        (2000, 1 << 19),
    ] {
        let m = s.store().fiemap(&s.ch(&c), &o, off, len).unwrap();
        let end = if len == 0 {
            size
        } else {
            (off + len).min(size)
        };
        let mut covered = vec![false; size as usize];
        let mut prev_end = 0u64;
        for (&eo, &el) in &m {
            assert!(el > 0, "empty extent {eo}~0");
            assert!(eo >= prev_end, "overlapping extents at {eo}");
            assert!(eo + el <= size, "extent {eo}~{el} past the object's end");
            prev_end = eo + el;
            for x in eo..eo + el {
                covered[x as usize] = true;
            }
        }
        for x in off..end {
            assert!(
                covered[x as usize] || all[x as usize] == 0,
                "fiemap({off}, {len}) misses data at {x}: {m:?}"
            );
        }
    }
}

pub fn big_object(f: &dyn StoreFactory) {
    let mut s = setup(f);
    let (c, o) = (coll(), oid("big"));
    const MIB: usize = 1 << 20;
    for i in 0..8 {
        let mut t = txn();
        t.write(&c, &o, (i * MIB) as u64, pattern(MIB, i as u8));
        s.apply_ok(t);
    }
    let check = |s: &crate::harness::TestStore<'_>| {
        assert_eq!(s.size(&c, &o), 8 * MIB as u64);
        for i in 0..8 {
            let got = s.read(&c, &o, (i * MIB) as u64, MIB as u64).unwrap();
            assert!(got == pattern(MIB, i as u8), "MiB {i} differs");
        }
        let got = s.read(&c, &o, (3 * MIB - 5) as u64, 10).unwrap();
        assert_eq!(got[..5], pattern(MIB, 2)[MIB - 5..]);
        assert_eq!(got[5..], pattern(MIB, 3)[..5]);
    };
    check(&s);
    s.remount();
    check(&s);
}

pub fn remove_then_recreate_is_empty(f: &dyn StoreFactory) {
    let s = setup(f);
    let (c, o) = (coll(), oid("phoenix"));
    let mut t = txn();
    t.write(&c, &o, 0, b"old".to_vec())
        .setattr(&c, &o, "a", b"1".to_vec())
        .omap_setheader(&c, &o, b"h".to_vec())
        .omap_setkeys(&c, &o, [(b"k".to_vec(), b"v".to_vec())].into());
    s.apply_ok(t);
    let mut t = txn();
    t.remove(&c, &o).touch(&c, &o);
    s.apply_ok(t);
    let ch = s.ch(&c);
    assert_eq!(s.size(&c, &o), 0);
    assert!(s.store().getattrs(&ch, &o).unwrap().is_empty());
    assert_eq!(s.store().omap_get(&ch, &o).unwrap(), (vec![], [].into()));
}

pub fn set_alloc_hint_never_fails(f: &dyn StoreFactory) {
    let s = setup(f);
    let c = coll();
    let (o, missing) = (oid("hinted"), oid("never-created"));
    let mut t = txn();
    t.write(&c, &o, 0, b"abc".to_vec())
        .set_alloc_hint(&c, &o, 4 << 20, 4 << 20, 0)
        .set_alloc_hint(&c, &missing, 0, 0, u32::MAX);
    s.apply_ok(t);
    assert_eq!(s.read_all(&c, &o), b"abc");
    assert!(!s.exists(&c, &missing), "a hint does not create its object");
    let mut t = Transaction::from_ops(vec![Op::SetAllocHint {
        cid: c,
        oid: missing.clone(),
        expected_object_size: u64::MAX,
        expected_write_size: u64::MAX,
        flags: 0,
    }]);
    t.touch(&c, &o);
    s.apply_ok(t);
    assert!(!s.exists(&c, &missing));
}
