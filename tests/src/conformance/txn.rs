//! Transactions: tolerated errors, atomicity, validation, callbacks, ordering,
//! concurrency.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use ostore_os::limits::MAX_OBJECT_SIZE;
use ostore_os::{CollectionId, Completion, ErrorKind, Result};

use super::{coll, oid, pattern, setup, txn};
use crate::harness::StoreFactory;
use crate::state::assert_kind;

pub fn tolerated_errors_inside_a_transaction(f: &dyn StoreFactory) {
    let s = setup(f);
    let c = coll();
    let (o, m) = (oid("exists"), oid("missing"));
    let mut t = txn();
    t.write(&c, &o, 0, b"old".to_vec());
    s.apply_ok(t);

    let mut t = txn();
    t.remove(&c, &m)
        .rmattr(&c, &o, "no such attr")
        .rmattr(&c, &m, "a")
        .truncate(&c, &m, 100)
        .setattr(&c, &m, "a", b"1".to_vec())
        .omap_setheader(&c, &m, b"h".to_vec())
        .collection_move_rename(&c, &m, &c, &oid("renamed"))
        .try_rename(&c, &m, &oid("renamed2"))
        .set_alloc_hint(&c, &m, 1, 1, 0)
        .write(&c, &o, 0, b"new".to_vec())
        .setattr(&c, &o, "a", b"applied".to_vec());
    s.apply_ok(t);
    assert_eq!(s.read_all(&c, &o), b"new");
    assert_eq!(s.store().getattr(&s.ch(&c), &o, "a").unwrap(), b"applied");
    assert_eq!(s.list(&c, 10), vec![o], "no skipped op created anything");
}

pub fn rejected_transaction_applies_nothing(f: &dyn StoreFactory) {
    let s = setup(f);
    let c = coll();
    let d = CollectionId::pg(1, 1);
    let (a, b) = (oid("a"), oid("b"));
    let mut t = txn();
    t.write(&c, &a, 0, b"original".to_vec())
        .setattr(&c, &a, "x", b"1".to_vec());
    s.apply_ok(t);
    let before = s.capture();

    let mut t = txn();
    t.write(&c, &a, 0, b"CHANGED!".to_vec())
        .setattr(&c, &a, "x", b"2".to_vec())
        .omap_setkeys(&c, &a, [(b"k".to_vec(), b"v".to_vec())].into())
        .touch(&c, &b)
        .create_collection(&c, 0);
    assert_kind(s.apply(t), ErrorKind::Exists, "mkcoll existing at the end");
    assert_eq!(s.capture(), before);

    let mut t = txn();
    t.remove(&c, &a).touch(&c, &b).remove_collection(&c);
    assert_kind(s.apply(t), ErrorKind::NotEmpty, "rmcoll with b left");
    assert_eq!(s.capture(), before);

    let mut t = txn();
    t.create_collection(&d, 0)
        .touch(&d, &b)
        .clone_obj(&d, &a, &b);
    assert_kind(
        s.apply(t),
        ErrorKind::NotFound,
        "clone of an object of another coll",
    );
    assert_eq!(s.capture(), before);
    assert!(!s.store().collection_exists(&d).unwrap());

    // The store still works after rejections.
    let mut t = txn();
    t.touch(&c, &b);
    s.apply_ok(t);
    assert!(s.exists(&c, &b));
}

pub fn validation_error_applies_nothing(f: &dyn StoreFactory) {
    let s = setup(f);
    let c = coll();
    let o = oid("v");
    let mut t = txn();
    t.write(&c, &o, 0, b"kept".to_vec());
    s.apply_ok(t);
    let before = s.capture();
    let ch = s.ch(&c);
    let cases = vec![
        {
            let mut t = txn();
            t.write(&c, &o, 0, b"lost".to_vec())
                .write(&c, &o, MAX_OBJECT_SIZE, b"x".to_vec());
            (t, ErrorKind::FileTooBig)
        },
        {
            let mut t = txn();
            t.touch(&c, &oid("new"))
                .zero(&c, &o, MAX_OBJECT_SIZE - 1, 2);
            (t, ErrorKind::FileTooBig)
        },
        {
            let mut t = txn();
            t.touch(&c, &oid("new"))
                .omap_setkeys(&c, &o, [(Vec::new(), b"v".to_vec())].into());
            (t, ErrorKind::InvalidArgument)
        },
        {
            let mut t = txn();
            t.create_collection(&CollectionId::pg(1, 1), 33);
            (t, ErrorKind::InvalidArgument)
        },
        {
            let mut t = txn();
            t.touch(&c, &oid("new")).merge_collection(&c, &c, 0);
            (t, ErrorKind::InvalidArgument)
        },
    ];
    for (i, (t, kind)) in cases.into_iter().enumerate() {
        let (done, applied, committed) = Completion::channels();
        assert_kind(
            s.store().queue_transactions(&ch, vec![t.clone()], done),
            kind,
            &format!("case {i} via queue_transactions"),
        );
        // Nothing was queued, so no outcome can be a success.
        assert!(!matches!(applied.try_recv(), Ok(Ok(()))), "case {i}");
        assert!(!matches!(committed.try_recv(), Ok(Ok(()))), "case {i}");
        assert_kind(s.apply(t), kind, &format!("case {i} via apply_transaction"));
    }
    assert_eq!(s.capture(), before);
}

pub fn ops_apply_in_order_within_a_transaction(f: &dyn StoreFactory) {
    let s = setup(f);
    let c = coll();
    let (a, b, n) = (oid("a"), oid("b"), oid("n"));
    let mut t = txn();
    t.write(&c, &a, 0, b"first".to_vec())
        .remove(&c, &a)
        .write(&c, &a, 2, b"xy".to_vec())
        .clone_obj(&c, &a, &b)
        .write(&c, &a, 0, b"Z".to_vec())
        .setattr(&c, &b, "k", b"1".to_vec())
        .rmattrs(&c, &b)
        .setattr(&c, &b, "k2", b"2".to_vec())
        .omap_setkeys(&c, &b, [(b"gone".to_vec(), vec![])].into())
        .omap_clear(&c, &b)
        .omap_setkeys(&c, &b, [(b"kept".to_vec(), vec![])].into())
        .collection_move_rename(&c, &b, &c, &n)
        .write(&c, &b, 0, b"reborn".to_vec());
    s.apply_ok(t);
    let ch = s.ch(&c);
    assert_eq!(s.read_all(&c, &a), b"Z\0xy");
    assert_eq!(s.read_all(&c, &n), b"\0\0xy");
    assert_eq!(
        s.store().getattrs(&ch, &n).unwrap(),
        [("k2".to_string(), b"2".to_vec())].into()
    );
    assert_eq!(
        s.store().omap_get_keys(&ch, &n).unwrap(),
        [b"kept".to_vec()].into()
    );
    assert_eq!(s.read_all(&c, &b), b"reborn");
    assert!(s.store().getattrs(&ch, &b).unwrap().is_empty());
}

type Outcomes = Arc<Mutex<Vec<(usize, Result<()>)>>>;

/// A completion recording `(i, outcome)` of each callback, and signalling commit.
fn recording(
    i: usize,
    applied: &Outcomes,
    committed: &Outcomes,
    done: &mpsc::Sender<usize>,
) -> Completion {
    let (a, c, d) = (Arc::clone(applied), Arc::clone(committed), done.clone());
    Completion {
        on_applied: Some(Box::new(move |r| a.lock().unwrap().push((i, r)))),
        on_commit: Some(Box::new(move |r| {
            c.lock().unwrap().push((i, r));
            let _ = d.send(i);
        })),
        commit_inline: false,
    }
}

pub fn callbacks_fire_exactly_once(f: &dyn StoreFactory) {
    let mut s = setup(f);
    let c = coll();
    let ch = s.ch(&c);
    let (applied, committed): (Outcomes, Outcomes) = Default::default();
    let (tx, rx) = mpsc::channel();
    let n = 20;
    for i in 0..n {
        let mut t = txn();
        t.write(&c, &oid(&format!("o{i}")), 0, vec![i as u8]);
        s.store()
            .queue_transactions(&ch, vec![t], recording(i, &applied, &committed, &tx))
            .unwrap();
    }
    let mut seen: Vec<usize> = (0..n).map(|_| rx.recv().unwrap()).collect();
    seen.sort();
    assert_eq!(seen, (0..n).collect::<Vec<_>>());
    // A later transaction on the same handle, then umount: anything still pending from
    // the first batch would have fired by now.
    let mut t = txn();
    t.touch(&c, &oid("barrier"));
    s.apply_ok(t);
    s.umount();
    for (what, v) in [("applied", &applied), ("committed", &committed)] {
        let mut v = v.lock().unwrap().clone();
        v.sort_by_key(|(i, _)| *i);
        let expect: Vec<(usize, Result<()>)> = (0..n).map(|i| (i, Ok(()))).collect();
        assert_eq!(v, expect, "{what} callbacks");
    }
}

/// `commit_inline`: the callback runs on the journal's thread, once per transaction, in
/// submission order, and a store call from there fails EINVAL instead of deadlocking on
/// the commit or apply that thread is delivering.
pub fn inline_commit_fires_in_order_and_refuses_store_calls(f: &dyn StoreFactory) {
    let s = setup(f);
    let c = coll();
    let ch = s.ch(&c);
    let (tx, rx) = mpsc::channel();
    let n = 30;
    let mut got = Vec::new();
    for i in 0..n {
        let mut t = txn();
        t.write(&c, &oid(&format!("o{i}")), 0, vec![i as u8]);
        let (tx, store, ch2) = (tx.clone(), s.store_arc(), ch.clone());
        let done = Completion::on_commit_inline(move |r| {
            let call = store.exists(&ch2, &oid("o0")).map_err(|e| e.kind());
            let _ = tx.send((i, r, call, std::thread::current().name().map(String::from)));
        });
        s.store().queue_transactions(&ch, vec![t], done).unwrap();
        // Every other one waited for at once: whoever heard of the commit reads its
        // own write, though the callback ran before the entry was queued for apply.
        if i % 2 == 1 {
            got.push(rx.recv().unwrap());
            got.push(rx.recv().unwrap());
            for j in [i - 1, i] {
                let r = s.store().read(&ch, &oid(&format!("o{j}")), 0, 1);
                assert_eq!(
                    r.map_err(|e| e.kind()),
                    Ok(vec![j as u8]),
                    "read after commit of o{j}"
                );
            }
        }
    }
    let order: Vec<usize> = got.iter().map(|g| g.0).collect();
    assert_eq!(order, (0..n).collect::<Vec<_>>(), "commit order");
    for (i, r, call, thread) in &got {
        assert_eq!(r, &Ok(()), "transaction {i}");
        assert_eq!(
            call,
            &Err(ErrorKind::InvalidArgument),
            "store call from transaction {i}'s callback"
        );
        assert_ne!(
            thread.as_deref(),
            Some("ostore-finisher"),
            "transaction {i}"
        );
    }
    // The store is still fine, and its calls work again on this thread.
    assert!(s.store().exists(&ch, &oid(&format!("o{}", n - 1))).unwrap());
    assert!(rx.try_recv().is_err(), "a callback fired twice");
}

pub fn callbacks_of_rejected_transaction_carry_the_error(f: &dyn StoreFactory) {
    let s = setup(f);
    let c = coll();
    let ch = s.ch(&c);
    let (applied, committed): (Outcomes, Outcomes) = Default::default();
    let (tx, rx) = mpsc::channel();
    let mut t = txn();
    t.touch(&c, &oid("x")).create_collection(&c, 0);
    s.store()
        .queue_transactions(&ch, vec![t], recording(0, &applied, &committed, &tx))
        .unwrap();
    assert_eq!(rx.recv().unwrap(), 0);
    let mut t = txn();
    t.touch(&c, &oid("barrier"));
    s.apply_ok(t);
    // The rejection is the apply outcome; on_commit only says the entry is durable
    // (it was journaled before the state it lands on was known, as in Ceph's
    // writeahead mode), and replay rejects it again.
    for (v, want) in [(&applied, Err(ErrorKind::Exists)), (&committed, Ok(()))] {
        let v = v.lock().unwrap();
        assert_eq!(v.len(), 1, "exactly one callback: {v:?}");
        assert_eq!(v[0].0, 0);
        assert_eq!(v[0].1.as_ref().map(|_| ()).map_err(|e| e.kind()), want);
    }
    assert!(!s.exists(&c, &oid("x")));
}

pub fn several_transactions_in_one_call(f: &dyn StoreFactory) {
    let s = setup(f);
    let c = coll();
    let ch = s.ch(&c);
    let o = oid("multi");
    let mut t1 = txn();
    t1.write(&c, &o, 0, b"one".to_vec());
    let mut t2 = txn();
    t2.write(&c, &o, 0, b"TWO".to_vec())
        .clone_obj(&c, &o, &oid("copy"));
    let mut t3 = txn();
    t3.write(&c, &o, 3, b"+3".to_vec());
    let (applied, committed): (Outcomes, Outcomes) = Default::default();
    let (tx, rx) = mpsc::channel();
    s.store()
        .queue_transactions(
            &ch,
            vec![t1, t2, t3],
            recording(7, &applied, &committed, &tx),
        )
        .unwrap();
    assert_eq!(rx.recv().unwrap(), 7);
    let mut t = txn();
    t.touch(&c, &oid("barrier"));
    s.apply_ok(t);
    assert_eq!(s.read_all(&c, &o), b"TWO+3");
    assert_eq!(s.read_all(&c, &oid("copy")), b"TWO");
    assert_eq!(applied.lock().unwrap().clone(), vec![(7, Ok(()))]);
    assert_eq!(committed.lock().unwrap().clone(), vec![(7, Ok(()))]);
}

pub fn per_handle_ordering(f: &dyn StoreFactory) {
    let s = setup(f);
    let c = coll();
    let ch = s.ch(&c);
    let (applied, committed): (Outcomes, Outcomes) = Default::default();
    let (tx, rx) = mpsc::channel();
    let n = 300usize;
    let chain = |i: usize| oid(&format!("chain_{i}"));
    for i in 0..n {
        let mut t = txn();
        // Each transaction depends on the previous one: out of order, the clone source
        // would be missing and the transaction rejected.
        if i > 0 {
            t.clone_obj(&c, &chain(i - 1), &chain(i));
        }
        t.write(
            &c,
            &chain(i),
            (i * 4) as u64,
            (i as u32).to_le_bytes().to_vec(),
        )
        .write(
            &c,
            &oid("log"),
            (i * 4) as u64,
            (i as u32).to_le_bytes().to_vec(),
        )
        .setattr(&c, &oid("log"), "last", i.to_string().into_bytes());
        s.store()
            .queue_transactions(&ch, vec![t], recording(i, &applied, &committed, &tx))
            .unwrap();
    }
    for _ in 0..n {
        rx.recv().unwrap();
    }
    let mut t = txn();
    t.touch(&c, &oid("barrier"));
    s.apply_ok(t);
    let expect: Vec<u8> = (0..n as u32).flat_map(|i| i.to_le_bytes()).collect();
    assert_eq!(s.read_all(&c, &oid("log")), expect);
    assert_eq!(s.read_all(&c, &chain(n - 1)), expect);
    assert_eq!(
        s.store().getattr(&ch, &oid("log"), "last").unwrap(),
        (n - 1).to_string().into_bytes()
    );
    let in_order: Vec<(usize, Result<()>)> = (0..n).map(|i| (i, Ok(()))).collect();
    assert_eq!(*applied.lock().unwrap(), in_order, "on_applied order");
    assert_eq!(*committed.lock().unwrap(), in_order, "on_commit order");
}

pub fn concurrent_clients(f: &dyn StoreFactory) {
    let s = setup(f);
    let clients = 4usize;
    let per_client = 150usize;
    let cids: Vec<CollectionId> = (0..clients as u32)
        .map(|k| CollectionId::pg(2, k))
        .collect();
    for c in &cids {
        s.mkcoll(c, 0);
    }
    std::thread::scope(|scope| {
        for (k, c) in cids.iter().enumerate() {
            let s = &s;
            scope.spawn(move || {
                let ch = s.ch(c);
                let st = s.store();
                let (applied, committed): (Outcomes, Outcomes) = Default::default();
                let (tx, rx) = mpsc::channel();
                for i in 0..per_client {
                    let o = ostore_os::ObjectId::new(2, format!("c{k}_o{}", i % 10));
                    let mut t = txn();
                    t.write(c, &o, (i / 10 * 8) as u64, pattern(8, (k * 31 + i) as u8))
                        .setattr(c, &o, "last", i.to_string().into_bytes())
                        .omap_setkeys(c, &o, [(i.to_be_bytes().to_vec(), vec![k as u8])].into());
                    st.queue_transactions(&ch, vec![t], recording(i, &applied, &committed, &tx))
                        .unwrap();
                    if i % 25 == 0 {
                        // Reads interleaved with queued writes see applied state only:
                        // the recorded "last" never runs ahead of what was queued.
                        if let Ok(v) = st.getattr(&ch, &o, "last") {
                            let seen: usize = String::from_utf8(v).unwrap().parse().unwrap();
                            assert!(seen <= i);
                        }
                    }
                }
                for _ in 0..per_client {
                    rx.recv().unwrap();
                }
                let ok = committed.lock().unwrap().iter().all(|(_, r)| r.is_ok());
                assert!(ok, "client {k}: a transaction failed");
            });
        }
    });
    for (k, c) in cids.iter().enumerate() {
        let ch = s.ch(c);
        let objs = s.list(c, 4);
        assert_eq!(objs.len(), 10, "client {k}");
        for j in 0..10usize {
            let o = ostore_os::ObjectId::new(2, format!("c{k}_o{j}"));
            let mut exp = Vec::new();
            let mut keys = std::collections::BTreeMap::new();
            for i in (j..per_client).step_by(10) {
                exp.extend(pattern(8, (k * 31 + i) as u8));
                keys.insert(i.to_be_bytes().to_vec(), vec![k as u8]);
            }
            assert_eq!(s.read_all(c, &o), exp, "{o}");
            let last = (j..per_client).step_by(10).next_back().unwrap();
            assert_eq!(
                s.store().getattr(&ch, &o, "last").unwrap(),
                last.to_string().into_bytes()
            );
            assert_eq!(s.store().omap_get(&ch, &o).unwrap().1, keys);
        }
    }
}

pub fn empty_transactions_complete(f: &dyn StoreFactory) {
    let s = setup(f);
    let ch = s.ch(&coll());
    let (done, applied, committed) = Completion::channels();
    s.store().queue_transactions(&ch, vec![], done).unwrap();
    assert_eq!(applied.recv().unwrap(), Ok(()));
    assert_eq!(committed.recv().unwrap(), Ok(()));
    s.apply_ok(txn());
    let mut t = txn();
    t.nop();
    s.apply_ok(t);
    assert!(s.store().collection_empty(&ch).unwrap());
}

pub fn lifecycle_errors(f: &dyn StoreFactory) {
    let mut s = setup(f);
    let ch = s.ch(&coll());
    assert_kind(s.store().mkfs(), ErrorKind::Exists, "mkfs over a store");
    assert_kind(s.store().mount(), ErrorKind::NotMounted, "mount twice");
    let store = s.store_arc();
    s.umount();
    assert_kind(
        store.read(&ch, &oid("a"), 0, 0),
        ErrorKind::NotMounted,
        "read",
    );
    assert_kind(store.list_collections(), ErrorKind::NotMounted, "list");
    let mut t = txn();
    t.touch(&coll(), &oid("a"));
    assert_kind(
        store.apply_transaction(&ch, t),
        ErrorKind::NotMounted,
        "queue after umount",
    );
    assert_kind(store.umount(), ErrorKind::NotMounted, "umount twice");
    let fresh = f.create(s.path());
    assert_kind(
        fresh.mkfs(),
        ErrorKind::Exists,
        "mkfs over an unmounted store",
    );
    let empty = tempfile::tempdir().unwrap();
    assert!(f.create(empty.path()).mount().is_err(), "mount before mkfs");
    fresh.mount().unwrap();
    assert!(fresh.collection_exists(&coll()).unwrap());
    fresh.umount().unwrap();
}
