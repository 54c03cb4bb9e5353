//! KeyValueStore on RocksDB: the conformance suite, the model test and the process-kill
//! test (RocksDB's WAL off, the default: the shared journal is the only log), the model
//! and kill tests again with the WAL on, and checks of what only KeyValueStore has
//! (strip checksums, record checks, orphan repair, split without data rewrites).

use std::sync::Arc;

use ostore_kv::{KeyValueDB, KvRead, RocksDb, RocksOptions, WriteBatch};
use ostore_kvstore::layout::{self, Header};
use ostore_kvstore::{kvstore, Engine, KvStoreOptions};
use ostore_os::journaling::JournalingOptions;
use ostore_os::{CollectionId, ErrorKind, ObjectId, ObjectStore, Transaction};

fn rocks(wal: bool) -> impl ostore_tests::StoreFactory {
    ostore_tests::factory(if wal { "kvstore-wal" } else { "kvstore" }, move |dir| {
        Arc::new(kvstore(
            dir,
            JournalingOptions::small(),
            KvStoreOptions {
                engine: Engine::RocksDb { wal },
                ..KvStoreOptions::default()
            },
        )) as Arc<dyn ObjectStore>
    })
}

ostore_tests::conformance_tests!(rocks(false));
ostore_tests::model_tests!(rocks(false));
ostore_tests::kill_tests!(rocks(false));
ostore_tests::failpoint_tests!(rocks(false));

mod wal_on {
    use super::*;
    ostore_tests::model_tests!(rocks(true));
    ostore_tests::kill_tests!(rocks(true));
}

fn setup(f: &dyn ostore_tests::StoreFactory) -> ostore_tests::TestStore<'_> {
    let s = ostore_tests::TestStore::new(f);
    s.mkcoll(&CollectionId::pg(1, 0), 0);
    s
}

/// Opens the umounted store's database directly.
fn open_db(dir: &std::path::Path) -> RocksDb {
    RocksDb::open(
        dir.join("db"),
        RocksOptions {
            create_if_missing: false,
            wal: false,
            ..RocksOptions::default()
        },
    )
    .unwrap()
}

fn header_of(db: &RocksDb, c: &CollectionId, o: &ObjectId) -> Header {
    Header::decode(
        &db.get(&layout::obj_key(c, o))
            .unwrap()
            .expect("object record"),
    )
    .unwrap()
}

/// Flips `mask` in byte `at` of strip `strip` of an object of the umounted store.
fn flip_strip_bits(
    dir: &std::path::Path,
    c: &CollectionId,
    o: &ObjectId,
    strip: u64,
    at: usize,
    mask: u8,
) {
    let db = open_db(dir);
    let h = header_of(&db, c, o);
    let k = layout::strip_key(h.nid, strip);
    let mut v = db.get(&k).unwrap().expect("the strip");
    v[at] ^= mask;
    let mut b = WriteBatch::new();
    b.set(k, v);
    db.commit(&b, false).unwrap();
    db.flush().unwrap();
}

#[test]
fn a_strip_whose_checksum_fails_is_corrupt_never_wrong_bytes() {
    let f = rocks(false);
    let mut s = setup(&f);
    let c = CollectionId::pg(1, 0);
    let o = ObjectId::new(1, "victim");
    let data: Vec<u8> = (0..40_000u32).map(|i| (i * 7 + 1) as u8).collect();
    let mut t = Transaction::new();
    t.write(&c, &o, 0, data.clone());
    s.apply_ok(t);
    assert!(s.store().fsck(true).unwrap().is_clean());
    s.umount();
    flip_strip_bits(s.path(), &c, &o, 2, 100, 0x04);
    s.mount();
    let ch = s.ch(&c);
    let e = s.store().read(&ch, &o, 0, 0).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    let e = s.store().read(&ch, &o, 8192 + 50, 100).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    // The other strips still read.
    assert_eq!(s.read(&c, &o, 0, 8192).unwrap(), data[..8192]);
    assert_eq!(s.read(&c, &o, 12288, 1000).unwrap(), data[12288..13288]);
    let r = s.store().fsck(true).unwrap();
    assert!(
        r.errors.iter().any(|e| e.contains("checksum")),
        "deep fsck missed the bad strip: {r:?}"
    );
    // The reads that failed quarantined the object: even a shallow fsck, which reads
    // no strips, reports it, and it stays reported after a restart.
    let quarantined = |s: &ostore_tests::TestStore<'_>| {
        let r = s.store().fsck(false).unwrap();
        r.errors
            .iter()
            .any(|e| e.contains("quarantined") && e.contains("victim"))
    };
    assert!(quarantined(&s));
    s.umount();
    s.mount();
    assert!(quarantined(&s));
    // Repair cannot mend the bytes (no replica), so the object stays quarantined...
    let r = s.store().repair().unwrap();
    assert!(
        r.errors.iter().any(|e| e.contains("still corrupt")),
        "{r:?}"
    );
    assert!(quarantined(&s));
    // ...until it is rewritten: then repair releases it and fsck is clean again.
    let mut t = Transaction::new();
    t.write(&c, &o, 0, data.clone());
    s.apply_ok(t);
    let r = s.store().repair().unwrap();
    assert!(r.repaired.iter().any(|e| e.contains("released")), "{r:?}");
    assert!(s.store().fsck(true).unwrap().is_clean());
}

fn scrubbing(bytes_per_sec: u64) -> impl ostore_tests::StoreFactory {
    ostore_tests::factory("kvstore-scrub", move |dir| {
        let mut j = JournalingOptions::small();
        j.scrub = ostore_os::scrub::ScrubOptions {
            bytes_per_sec,
            pass_interval: std::time::Duration::from_millis(100),
        };
        Arc::new(kvstore(dir, j, KvStoreOptions::default())) as Arc<dyn ObjectStore>
    })
}

#[test]
fn the_scrubber_finds_and_quarantines_a_bad_strip_nobody_reads() {
    let f = scrubbing(64 << 20);
    let mut s = setup(&f);
    let c = CollectionId::pg(1, 0);
    for i in 0..20 {
        let mut t = Transaction::new();
        t.write(
            &c,
            &ObjectId::new(1, format!("o{i}")),
            0,
            vec![i as u8; 20_000],
        );
        s.apply_ok(t);
    }
    let victim = ObjectId::new(1, "o13");
    s.umount();
    flip_strip_bits(s.path(), &c, &victim, 1, 7, 0x80);
    s.mount();
    // No client reads anything: only the scrubber can find it. Wait for it (bounded).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let report = loop {
        let r = s.store().fsck(false).unwrap();
        if r.checked.get("quarantined").copied().unwrap_or(0) > 0 {
            break r;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the scrubber never quarantined the damaged object: {r:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(report.checked["quarantined"], 1, "{report:?}");
    assert!(
        report
            .errors
            .iter()
            .any(|e| e.contains("o13") && e.contains("quarantined")),
        "{report:?}"
    );
    // Only the damaged object: every other one reads back intact.
    for i in (0..20).filter(|i| *i != 13) {
        let o = ObjectId::new(1, format!("o{i}"));
        assert_eq!(s.read(&c, &o, 0, 0).unwrap(), vec![i as u8; 20_000]);
    }
}

#[test]
fn flipped_bytes_in_the_database_files_are_detected() {
    let f = rocks(false);
    let mut s = setup(&f);
    let c = CollectionId::pg(1, 0);
    let mut objs = Vec::new();
    for i in 0..64 {
        let o = ObjectId::new(1, format!("o{i}"));
        let mut t = Transaction::new();
        let data: Vec<u8> = (0..9000u32).map(|j| (i * 31 + j) as u8).collect();
        t.write(&c, &o, 0, data.clone())
            .setattr(&c, &o, "a", vec![i as u8; 100]);
        s.apply_ok(t);
        objs.push((o, data));
    }
    s.umount();
    let ssts: Vec<_> = std::fs::read_dir(s.path().join("db"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "sst"))
        .collect();
    assert!(!ssts.is_empty(), "umount left no table file to damage");
    let mut detected = 0;
    let mut trials = 0;
    for (n, at) in [(0usize, 200u64), (0, 4000), (0, 20_000)] {
        let p = &ssts[n % ssts.len()];
        let len = std::fs::metadata(p).unwrap().len();
        if at >= len / 2 {
            continue;
        }
        trials += 1;
        let mut bytes = std::fs::read(p).unwrap();
        bytes[at as usize] ^= 0x20;
        std::fs::write(p, &bytes).unwrap();
        // Either mount refuses, or every read is right or an error, and fsck --deep
        // reports it.
        let r = s.try_mount();
        let mut saw = r.is_err();
        if r.is_ok() {
            let ch = s.ch(&c);
            for (o, data) in &objs {
                match s.store().read(&ch, o, 0, 0) {
                    Ok(got) => assert_eq!(&got, data, "wrong bytes read back for {o}"),
                    Err(_) => saw = true,
                }
            }
            match s.store().fsck(true) {
                Ok(rep) => saw |= !rep.is_clean(),
                Err(_) => saw = true,
            }
            let _ = s.try_umount();
        }
        if saw {
            detected += 1;
        }
        bytes[at as usize] ^= 0x20;
        std::fs::write(p, &bytes).unwrap();
    }
    assert!(trials > 0);
    assert_eq!(detected, trials, "a flip inside a table went unnoticed");
    s.mount();
    // Reads of the damaged tables may have quarantined objects; with the bytes mended,
    // repair finds them clean and releases them.
    let r = s.store().repair().unwrap();
    assert!(r.errors.is_empty(), "{r:?}");
    let r = s.store().fsck(true).unwrap();
    assert!(r.is_clean(), "{r:?}");
}

#[test]
fn split_and_merge_move_headers_not_data() {
    let f = rocks(false);
    let mut s = setup(&f);
    let c = CollectionId::pg(1, 0);
    let d = CollectionId::pg(1, 1);
    let mut t = Transaction::new();
    let mut objs = Vec::new();
    for i in 0..50 {
        let o = ObjectId::new(1, format!("obj{i}"));
        t.write(&c, &o, 0, vec![i as u8; 5000]);
        objs.push(o);
    }
    s.apply_ok(t);
    s.umount();
    let nids: Vec<u64> = {
        let db = open_db(s.path());
        objs.iter().map(|o| header_of(&db, &c, o).nid).collect()
    };
    s.mount();
    let mut t = Transaction::new();
    t.create_collection(&d, 1).split_collection(&c, 1, 1, &d);
    s.apply_ok(t);
    s.umount();
    {
        let db = open_db(s.path());
        let mut moved = 0;
        for (o, nid) in objs.iter().zip(&nids) {
            let cid = if o.matches(1, 1) {
                moved += 1;
                d
            } else {
                c
            };
            assert_eq!(header_of(&db, &cid, o).nid, *nid, "{o} got new data");
        }
        assert!(moved > 0 && moved < objs.len());
    }
    s.mount();
    let mut t = Transaction::new();
    t.merge_collection(&d, &c, 0);
    s.apply_ok(t);
    for (i, o) in objs.iter().enumerate() {
        assert_eq!(s.read_all(&c, o), vec![i as u8; 5000]);
    }
    assert!(s.store().fsck(true).unwrap().is_clean());
}

#[test]
fn orphan_records_are_found_and_repaired() {
    let f = rocks(false);
    let mut s = setup(&f);
    let c = CollectionId::pg(1, 0);
    let o = ObjectId::new(1, "keep");
    let mut t = Transaction::new();
    t.write(&c, &o, 0, b"kept".to_vec());
    s.apply_ok(t);
    s.umount();
    {
        let db = open_db(s.path());
        let mut b = WriteBatch::new();
        b.set(layout::strip_key(999_999, 0), layout::encode_strip(b"lost"));
        b.set(layout::attr_key(999_999, "x"), b"y".to_vec());
        db.commit(&b, false).unwrap();
        db.flush().unwrap();
    }
    s.mount();
    let r = s.store().fsck(false).unwrap();
    assert!(
        r.errors.iter().any(|e| e.contains("orphan nid 999999")),
        "{r:?}"
    );
    let r = s.store().repair().unwrap();
    assert!(!r.repaired.is_empty(), "{r:?}");
    assert!(s.store().fsck(true).unwrap().is_clean());
    assert_eq!(s.read_all(&c, &o), b"kept");
    s.remount();
    assert!(s.store().fsck(true).unwrap().is_clean());
}

#[test]
fn strip_size_is_chosen_at_mkfs_and_kept() {
    let f = ostore_tests::factory("kvstore-64k", |dir| {
        Arc::new(kvstore(
            dir,
            JournalingOptions::small(),
            KvStoreOptions {
                strip_size: 65536,
                ..KvStoreOptions::default()
            },
        )) as Arc<dyn ObjectStore>
    });
    let mut s = setup(&f);
    let c = CollectionId::pg(1, 0);
    let o = ObjectId::new(1, "big-strips");
    let mut t = Transaction::new();
    t.write(&c, &o, 70_000, b"tail".to_vec());
    s.apply_ok(t);
    s.remount();
    let ext = s.store().fiemap(&s.ch(&c), &o, 0, 0).unwrap();
    // One 64 KiB strip holds offset 70,000; the first strip is a hole.
    assert_eq!(ext.into_iter().collect::<Vec<_>>(), vec![(65536, 4468)]);
    assert_eq!(s.read(&c, &o, 69_998, 10).unwrap(), b"\0\0tail");
    s.umount();
    let db = open_db(s.path());
    assert_eq!(header_of(&db, &c, &o).strip_size, 65536);
}

#[test]
fn a_bad_strip_size_is_refused_at_mkfs() {
    let dir = tempfile::tempdir().unwrap();
    let st = kvstore(
        dir.path(),
        JournalingOptions::small(),
        KvStoreOptions {
            strip_size: 3000,
            ..KvStoreOptions::default()
        },
    );
    let e = st.mkfs().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert!(e.to_string().contains("strip size 3000"), "{e}");
}
