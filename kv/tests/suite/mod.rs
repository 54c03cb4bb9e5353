//! The engine-neutral conformance suite: every `KeyValueDB` engine must pass every case here.
//! Each case gets a fresh, empty database from the engine's factory.

#![allow(dead_code)] // each test binary uses a different part of the suite

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ostore_kv::{collect_range, Error, KeyRange, KeyValueDB, KvIterator, WriteBatch};

/// A fresh database plus whatever must live as long as it (a temporary directory).
pub struct Fresh {
    pub db: Arc<dyn KeyValueDB>,
    pub keep: Box<dyn std::any::Any>,
}

type Case = (&'static str, fn(&Arc<dyn KeyValueDB>));

pub const CASES: &[Case] = &[
    ("set_get_remove", set_get_remove),
    ("batch_applies_in_order", batch_applies_in_order),
    (
        "invalid_batch_applies_nothing",
        invalid_batch_applies_nothing,
    ),
    (
        "batches_are_atomic_to_readers",
        batches_are_atomic_to_readers,
    ),
    ("remove_range_is_half_open", remove_range_is_half_open),
    ("iterator_order_and_bounds", iterator_order_and_bounds),
    ("seek_is_lower_bound", seek_is_lower_bound),
    (
        "prefix_iteration_stops_at_prefix_end",
        prefix_iteration_stops_at_prefix_end,
    ),
    ("snapshot_isolation", snapshot_isolation),
    (
        "iterator_is_a_consistent_view",
        iterator_is_a_consistent_view,
    ),
    ("multi_get", multi_get),
    ("empty_keys_and_values", empty_keys_and_values),
    ("large_values", large_values),
    ("flush_keeps_contents", flush_keeps_contents),
];

/// Runs every case, each on a fresh database; the panic message names the failing case.
pub fn run<F: FnMut() -> Fresh>(mut factory: F) {
    for (name, case) in CASES {
        let fresh = factory();
        let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| case(&fresh.db)));
        if let Err(e) = res {
            eprintln!("kv suite case `{name}` failed");
            std::panic::resume_unwind(e);
        }
        drop(fresh);
    }
}

fn commit(db: &Arc<dyn KeyValueDB>, f: impl FnOnce(&mut WriteBatch)) {
    let mut b = WriteBatch::new();
    f(&mut b);
    db.commit(&b, false).expect("commit");
}

fn all(db: &Arc<dyn KeyValueDB>) -> Vec<(Vec<u8>, Vec<u8>)> {
    collect_range(&**db, KeyRange::all()).expect("scan")
}

fn keys_of(entries: &[(Vec<u8>, Vec<u8>)]) -> Vec<Vec<u8>> {
    entries.iter().map(|(k, _)| k.clone()).collect()
}

fn keys(list: &[&[u8]]) -> Vec<Vec<u8>> {
    list.iter().map(|k| k.to_vec()).collect()
}

fn set_get_remove(db: &Arc<dyn KeyValueDB>) {
    assert_eq!(db.get(b"a").unwrap(), None);
    commit(db, |b| {
        b.set(b"a".to_vec(), b"1".to_vec());
    });
    assert_eq!(db.get(b"a").unwrap().as_deref(), Some(&b"1"[..]));
    commit(db, |b| {
        b.set(b"a".to_vec(), b"2".to_vec());
    });
    assert_eq!(db.get(b"a").unwrap().as_deref(), Some(&b"2"[..]));
    commit(db, |b| {
        b.remove(b"a".to_vec()).remove(b"never-there".to_vec());
    });
    assert_eq!(db.get(b"a").unwrap(), None);
    // An empty batch, synced or not where the engine allows, is a no-op.
    db.commit(&WriteBatch::new(), false).unwrap();
    assert!(all(db).is_empty());
}

fn batch_applies_in_order(db: &Arc<dyn KeyValueDB>) {
    commit(db, |b| {
        b.set(b"k".to_vec(), b"first".to_vec())
            .remove(b"k".to_vec())
            .set(b"k".to_vec(), b"last".to_vec())
            .set(b"gone".to_vec(), b"x".to_vec())
            .remove_range(b"g".to_vec(), b"h".to_vec())
            .remove_range(b"m".to_vec(), b"n".to_vec())
            .set(b"m1".to_vec(), b"set after its range removal".to_vec());
    });
    assert_eq!(db.get(b"k").unwrap().as_deref(), Some(&b"last"[..]));
    assert_eq!(db.get(b"gone").unwrap(), None);
    assert_eq!(
        db.get(b"m1").unwrap().as_deref(),
        Some(&b"set after its range removal"[..])
    );
}

fn invalid_batch_applies_nothing(db: &Arc<dyn KeyValueDB>) {
    commit(db, |b| {
        b.set(b"keep".to_vec(), b"old".to_vec());
    });
    let mut b = WriteBatch::new();
    b.set(b"keep".to_vec(), b"new".to_vec())
        .set(b"other".to_vec(), b"x".to_vec())
        .remove_range(b"z".to_vec(), b"a".to_vec());
    let err = db.commit(&b, false).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    assert_eq!(db.get(b"keep").unwrap().as_deref(), Some(&b"old"[..]));
    assert_eq!(db.get(b"other").unwrap(), None);
    // A rejected batch is the caller's bug, not a storage failure: writes go on.
    assert!(!db.is_poisoned());
    commit(db, |b| {
        b.set(b"after".to_vec(), b"ok".to_vec());
    });
    assert!(db.get(b"after").unwrap().is_some());
}

/// A writer sets every key of a group to the same generation in one batch; concurrent readers
/// must never see two generations in one consistent view.
fn batches_are_atomic_to_readers(db: &Arc<dyn KeyValueDB>) {
    const KEYS: usize = 16;
    const ROUNDS: u64 = 300;
    let key = |i: usize| format!("atomic/{i:02}").into_bytes();
    let write_gen = |g: u64| {
        let mut b = WriteBatch::new();
        for i in 0..KEYS {
            b.set(key(i), g.to_le_bytes().to_vec());
        }
        // Deleting and re-adding a marker inside the batch must never be seen half done.
        b.remove(b"atomic/marker".to_vec());
        b.set(b"atomic/marker".to_vec(), g.to_le_bytes().to_vec());
        db.commit(&b, false).unwrap();
    };
    write_gen(0);
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let db = Arc::clone(db);
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let mut views = 0u64;
            while !done.load(Ordering::SeqCst) || views < 10 {
                let snap = db.snapshot().unwrap();
                let entries = collect_range(&*snap, KeyRange::prefix(b"atomic/")).unwrap();
                assert_eq!(entries.len(), KEYS + 1, "a view lost keys");
                let first = &entries[0].1;
                assert!(
                    entries.iter().all(|(_, v)| v == first),
                    "a view mixed generations"
                );
                let got: Vec<Vec<u8>> = (0..KEYS).map(key).collect();
                let refs: Vec<&[u8]> = got.iter().map(|k| k.as_slice()).collect();
                let vals = snap.multi_get(&refs).unwrap();
                assert!(vals.iter().all(|v| v.as_ref() == Some(first)));
                views += 1;
            }
            views
        })
    };
    for g in 1..=ROUNDS {
        write_gen(g);
    }
    done.store(true, Ordering::SeqCst);
    let views = reader.join().expect("reader saw a torn batch");
    assert!(views >= 10);
    let last = ROUNDS.to_le_bytes().to_vec();
    assert!(all(db).iter().all(|(_, v)| *v == last));
}

fn remove_range_is_half_open(db: &Arc<dyn KeyValueDB>) {
    let initial: &[&[u8]] = &[b"a", b"b", b"b\0", b"ba", b"bz\xff", b"c", b"c\0", b"d"];
    commit(db, |b| {
        for k in initial {
            b.set(k.to_vec(), b"v".to_vec());
        }
    });
    commit(db, |b| {
        b.remove_range(b"b".to_vec(), b"c".to_vec());
    });
    assert_eq!(keys_of(&all(db)), keys(&[b"a", b"c", b"c\0", b"d"]));
    // [x, x) is empty; a range with nothing in it is fine.
    commit(db, |b| {
        b.remove_range(b"c".to_vec(), b"c".to_vec())
            .remove_range(b"x".to_vec(), b"y".to_vec());
    });
    assert_eq!(keys_of(&all(db)), keys(&[b"a", b"c", b"c\0", b"d"]));
    // The empty key is the lowest key and can start a range.
    commit(db, |b| {
        b.set(Vec::new(), b"e".to_vec());
        b.remove_range(Vec::new(), b"c\0".to_vec());
    });
    assert_eq!(keys_of(&all(db)), keys(&[b"c\0", b"d"]));
    commit(db, |b| {
        b.remove_range(Vec::new(), vec![0xff; 8]);
    });
    assert!(all(db).is_empty());
}

fn sample_keys() -> Vec<Vec<u8>> {
    // Bytewise order, including bytes that signed-char or UTF-8 comparisons would misplace.
    vec![
        vec![],
        vec![0x00],
        vec![0x00, 0x00],
        vec![0x01],
        b"a".to_vec(),
        b"a\x00".to_vec(),
        b"ab".to_vec(),
        b"b".to_vec(),
        vec![0x7f],
        vec![0x80],
        vec![0xc3, 0xa9],
        vec![0xff],
        vec![0xff, 0x00],
        vec![0xff, 0xff],
    ]
}

fn fill_sample(db: &Arc<dyn KeyValueDB>) -> Vec<Vec<u8>> {
    let sorted = sample_keys();
    commit(db, |b| {
        // Inserted out of order so the engine, not the insertion, must order them.
        for k in sorted.iter().rev() {
            let mut v = b"v:".to_vec();
            v.extend_from_slice(k);
            b.set(k.clone(), v);
        }
    });
    sorted
}

fn iterator_order_and_bounds(db: &Arc<dyn KeyValueDB>) {
    let sorted = fill_sample(db);
    let got = all(db);
    assert_eq!(keys_of(&got), sorted);
    for (k, v) in &got {
        assert_eq!(&v[2..], &k[..], "value belongs to another key");
    }
    let in_range = |lo: &[u8], hi: &[u8]| -> Vec<Vec<u8>> {
        keys_of(&collect_range(&**db, KeyRange::new(lo.to_vec(), hi.to_vec())).unwrap())
    };
    assert_eq!(in_range(b"a", b"b"), keys(&[b"a", b"a\0", b"ab"]));
    assert_eq!(in_range(b"a\x00", b"ab"), keys(&[b"a\0"]));
    assert_eq!(
        in_range(&[0x7f], &[0xff, 0x00]),
        keys(&[&[0x7f], &[0x80], &[0xc3, 0xa9], &[0xff]])
    );
    assert_eq!(in_range(b"", &[0x00, 0x00]), keys(&[b"", &[0x00]]));
    assert!(in_range(b"b", b"b").is_empty());
    assert!(
        in_range(b"b", b"a").is_empty(),
        "an inverted range is empty, not an error"
    );
    let upper_only = KeyRange {
        lower: None,
        upper: Some(vec![0x01]),
    };
    assert_eq!(
        keys_of(&collect_range(&**db, upper_only).unwrap()),
        keys(&[b"", &[0x00], &[0x00, 0x00]])
    );
    let lower_only = KeyRange {
        lower: Some(vec![0xff]),
        upper: None,
    };
    assert_eq!(
        keys_of(&collect_range(&**db, lower_only).unwrap()),
        keys(&[&[0xff], &[0xff, 0x00], &[0xff, 0xff]])
    );
    // next() at the end stays at the end.
    let mut it = db
        .iter(KeyRange::new(b"ab".to_vec(), b"b".to_vec()))
        .unwrap();
    assert!(!it.valid(), "a new iterator is unpositioned");
    it.seek_to_first().unwrap();
    assert_eq!(it.current().map(|(k, _)| k.to_vec()), Some(b"ab".to_vec()));
    it.next().unwrap();
    assert!(!it.valid());
    it.next().unwrap();
    assert!(!it.valid());
}

fn key_at(it: &dyn KvIterator) -> Option<Vec<u8>> {
    it.current().map(|(k, _)| k.to_vec())
}

fn seek_is_lower_bound(db: &Arc<dyn KeyValueDB>) {
    fill_sample(db);
    let mut it = db.iter(KeyRange::new(b"a".to_vec(), vec![0xff])).unwrap();
    it.seek(b"a\x00").unwrap();
    assert_eq!(key_at(&*it), Some(b"a\0".to_vec()), "exact match");
    it.seek(b"aa").unwrap();
    assert_eq!(key_at(&*it), Some(b"ab".to_vec()), "next key up");
    it.seek(b"\x00").unwrap();
    assert_eq!(
        key_at(&*it),
        Some(b"a".to_vec()),
        "clamped to the lower bound"
    );
    it.seek(&[0xfe]).unwrap();
    assert_eq!(key_at(&*it), None, "the upper bound is exclusive");
    it.seek(&[0xff, 0xff]).unwrap();
    assert_eq!(key_at(&*it), None, "past the upper bound");
    // seeking backwards works after reaching the end
    it.seek(b"b").unwrap();
    assert_eq!(key_at(&*it), Some(b"b".to_vec()));
    it.seek_past(b"b").unwrap();
    assert_eq!(
        key_at(&*it),
        Some(vec![0x7f]),
        "upper_bound skips the exact key"
    );
    it.seek_past(b"aa").unwrap();
    assert_eq!(
        key_at(&*it),
        Some(b"ab".to_vec()),
        "upper_bound of a missing key"
    );
    let mut whole = db.iter(KeyRange::all()).unwrap();
    whole.seek(b"").unwrap();
    assert_eq!(key_at(&*whole), Some(vec![]));
    whole.seek_past(b"").unwrap();
    assert_eq!(key_at(&*whole), Some(vec![0x00]));
}

fn prefix_iteration_stops_at_prefix_end(db: &Arc<dyn KeyValueDB>) {
    let present: &[&[u8]] = &[
        b"a",
        b"ab",
        b"ab\0",
        b"abc",
        b"ab\xff",
        b"ab\xff\xff",
        b"ac",
        b"b",
        b"\xff",
        b"\xff\x01",
        b"\xff\xff",
    ];
    commit(db, |b| {
        for k in present {
            b.set(k.to_vec(), b"v".to_vec());
        }
    });
    let with_prefix = |p: &[u8]| -> Vec<Vec<u8>> {
        let mut it = db.prefix_iter(p).unwrap();
        it.seek_to_first().unwrap();
        let mut out = Vec::new();
        while let Some((k, _)) = it.current() {
            out.push(k.to_vec());
            it.next().unwrap();
        }
        out
    };
    assert_eq!(
        with_prefix(b"ab"),
        keys(&[b"ab", b"ab\0", b"abc", b"ab\xff", b"ab\xff\xff"])
    );
    assert_eq!(with_prefix(b"ab\xff"), keys(&[b"ab\xff", b"ab\xff\xff"]));
    assert_eq!(
        with_prefix(b"\xff"),
        keys(&[b"\xff", b"\xff\x01", b"\xff\xff"])
    );
    assert_eq!(with_prefix(b"abd"), Vec::<Vec<u8>>::new());
    assert_eq!(with_prefix(b"").len(), present.len());
    // A seek inside a prefix iterator cannot escape the prefix either way.
    let mut it = db.prefix_iter(b"ab").unwrap();
    it.seek(b"a").unwrap();
    assert_eq!(key_at(&*it), Some(b"ab".to_vec()));
    it.seek(b"ac").unwrap();
    assert_eq!(key_at(&*it), None);
}

fn snapshot_isolation(db: &Arc<dyn KeyValueDB>) {
    commit(db, |b| {
        b.set(b"a".to_vec(), b"1".to_vec())
            .set(b"c".to_vec(), b"3".to_vec())
            .set(b"r1".to_vec(), b"x".to_vec())
            .set(b"r2".to_vec(), b"y".to_vec());
    });
    let snap = db.snapshot().unwrap();
    commit(db, |b| {
        b.set(b"a".to_vec(), b"changed".to_vec())
            .set(b"b".to_vec(), b"new".to_vec())
            .remove(b"c".to_vec())
            .remove_range(b"r".to_vec(), b"s".to_vec());
    });
    db.flush().unwrap();
    assert_eq!(snap.get(b"a").unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(snap.get(b"b").unwrap(), None);
    assert_eq!(snap.get(b"c").unwrap().as_deref(), Some(&b"3"[..]));
    assert_eq!(
        snap.multi_get(&[b"a", b"b", b"r2"]).unwrap(),
        vec![Some(b"1".to_vec()), None, Some(b"y".to_vec())]
    );
    let seen = collect_range(&*snap, KeyRange::all()).unwrap();
    assert_eq!(keys_of(&seen), keys(&[b"a", b"c", b"r1", b"r2"]));
    // The live database sees the new state.
    assert_eq!(keys_of(&all(db)), keys(&[b"a", b"b"]));
    assert_eq!(db.get(b"a").unwrap().as_deref(), Some(&b"changed"[..]));
    // A second snapshot sees the second state, and the first is unchanged by it.
    let snap2 = db.snapshot().unwrap();
    assert_eq!(snap2.get(b"b").unwrap().as_deref(), Some(&b"new"[..]));
    assert_eq!(snap.get(b"b").unwrap(), None);
}

fn iterator_is_a_consistent_view(db: &Arc<dyn KeyValueDB>) {
    commit(db, |b| {
        for i in 0..10u8 {
            b.set(vec![b'k', i], vec![i]);
        }
    });
    let mut it = db.iter(KeyRange::prefix(b"k")).unwrap();
    it.seek_to_first().unwrap();
    it.next().unwrap();
    commit(db, |b| {
        b.remove(vec![b'k', 5]).set(vec![b'k', 20], vec![20]);
    });
    let mut seen = Vec::new();
    while let Some((k, _)) = it.current() {
        seen.push(k[1]);
        it.next().unwrap();
    }
    assert_eq!(seen, (1..10).collect::<Vec<u8>>());
}

fn multi_get(db: &Arc<dyn KeyValueDB>) {
    commit(db, |b| {
        b.set(b"x".to_vec(), b"1".to_vec())
            .set(b"y".to_vec(), b"2".to_vec());
    });
    assert_eq!(
        db.multi_get(&[b"y", b"missing", b"x", b"y"]).unwrap(),
        vec![
            Some(b"2".to_vec()),
            None,
            Some(b"1".to_vec()),
            Some(b"2".to_vec())
        ]
    );
    assert!(db.multi_get(&[]).unwrap().is_empty());
}

fn empty_keys_and_values(db: &Arc<dyn KeyValueDB>) {
    commit(db, |b| {
        b.set(Vec::new(), b"for the empty key".to_vec())
            .set(b"k".to_vec(), Vec::new());
    });
    assert_eq!(
        db.get(b"").unwrap().as_deref(),
        Some(&b"for the empty key"[..])
    );
    assert_eq!(
        db.get(b"k").unwrap(),
        Some(Vec::new()),
        "an empty value is not a missing one"
    );
    assert_eq!(
        all(db),
        vec![
            (vec![], b"for the empty key".to_vec()),
            (b"k".to_vec(), vec![])
        ]
    );
    commit(db, |b| {
        b.remove(Vec::new());
    });
    assert_eq!(db.get(b"").unwrap(), None);
    assert_eq!(
        db.multi_get(&[b"", b"k"]).unwrap(),
        vec![None, Some(vec![])]
    );
}

fn large_values(db: &Arc<dyn KeyValueDB>) {
    const LEN: usize = 8 << 20;
    // Not compressible and not periodic with any small period, so misplaced bytes show.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let big: Vec<u8> = (0..LEN)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    commit(db, |b| {
        b.set(b"big".to_vec(), big.clone())
            .set(b"small".to_vec(), b"s".to_vec());
    });
    assert!(db.get(b"big").unwrap().as_deref() == Some(&big[..]));
    db.flush().unwrap();
    assert!(
        db.get(b"big").unwrap().as_deref() == Some(&big[..]),
        "after flush"
    );
    let mut it = db.iter(KeyRange::all()).unwrap();
    it.seek(b"big").unwrap();
    let (k, v) = it.current().expect("big is there");
    assert_eq!(k, b"big");
    assert!(v == &big[..]);
}

fn flush_keeps_contents(db: &Arc<dyn KeyValueDB>) {
    for round in 0..3u8 {
        commit(db, |b| {
            for i in 0..100u8 {
                b.set(vec![i], vec![round, i]);
            }
            b.remove(vec![round]);
        });
        db.flush().unwrap();
    }
    let got = all(db);
    assert_eq!(
        got.len(),
        99,
        "only key 2, removed in the last round, is missing"
    );
    assert!(got.iter().all(|(k, v)| *v == vec![2, k[0]]));
    assert!(!db.is_poisoned());
}
