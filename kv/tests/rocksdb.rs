//! The shared suite on RocksDB in several configurations, plus what only a disk engine has:
//! persistence across reopen and process abort, the WAL-off contract, and corruption detection.

#![cfg(feature = "rocksdb")]

mod suite;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use ostore_kv::{
    collect_range, Compression, Error, KeyRange, KeyValueDB, KvRead, RocksDb, RocksOptions,
    WriteBatch,
};
use tempfile::TempDir;

fn fresh(opts: RocksOptions) -> suite::Fresh {
    let dir = tempfile::tempdir().unwrap();
    let db = RocksDb::open(dir.path(), opts).unwrap();
    suite::Fresh {
        db: Arc::new(db),
        keep: Box::new(dir),
    }
}

#[test]
fn rocksdb_wal_on_passes_suite() {
    suite::run(|| fresh(RocksOptions::default()));
}

#[test]
fn rocksdb_wal_off_passes_suite() {
    suite::run(|| {
        fresh(RocksOptions {
            wal: false,
            ..RocksOptions::default()
        })
    });
}

#[test]
fn rocksdb_zstd_no_bloom_tiny_cache_passes_suite() {
    suite::run(|| {
        fresh(RocksOptions {
            compression: Compression::Zstd,
            bloom_bits_per_key: None,
            block_cache_bytes: 64 << 10,
            // Small memtables push the suite's data through SST files and compactions.
            write_buffer_bytes: 256 << 10,
            ..RocksOptions::default()
        })
    });
}

fn value_for(i: u32) -> Vec<u8> {
    let mut x = u64::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..200)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn key_for(i: u32) -> Vec<u8> {
    format!("key{i:06}").into_bytes()
}

fn write_keys(db: &RocksDb, range: std::ops::Range<u32>, sync: bool) {
    for chunk in range.collect::<Vec<_>>().chunks(50) {
        let mut b = WriteBatch::new();
        for &i in chunk {
            b.set(key_for(i), value_for(i));
        }
        db.commit(&b, sync).unwrap();
    }
}

/// Which of `range` are present, asserting that every present value is the right one.
fn present(db: &RocksDb, range: std::ops::Range<u32>) -> Vec<u32> {
    range
        .filter(|&i| match db.get(&key_for(i)).unwrap() {
            Some(v) => {
                assert_eq!(v, value_for(i), "wrong bytes for key {i}");
                true
            }
            None => false,
        })
        .collect()
}

#[test]
fn synced_commits_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let db = RocksDb::open(dir.path(), RocksOptions::default()).unwrap();
    write_keys(&db, 0..500, true);
    let mut b = WriteBatch::new();
    b.remove_range(key_for(100), key_for(200));
    db.commit(&b, true).unwrap();
    drop(db);
    let db = RocksDb::open(dir.path(), RocksOptions::default()).unwrap();
    let want: Vec<u32> = (0..100).chain(200..500).collect();
    assert_eq!(present(&db, 0..500), want);
}

#[test]
fn wal_off_flush_then_reopen_keeps_data() {
    let opts = RocksOptions {
        wal: false,
        ..RocksOptions::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let db = RocksDb::open(dir.path(), opts.clone()).unwrap();
    write_keys(&db, 0..300, false);
    db.flush().unwrap();
    write_keys(&db, 300..400, false);
    drop(db);
    let db = RocksDb::open(dir.path(), opts).unwrap();
    // Only flushed commits are durable with the WAL off; a close does not flush (as a crash
    // would not), which is what makes the store's journal replay necessary.
    assert_eq!(present(&db, 0..400), (0..300).collect::<Vec<_>>());
}

#[test]
fn wal_off_refuses_synced_commit_without_poisoning() {
    let dir = tempfile::tempdir().unwrap();
    let db = RocksDb::open(
        dir.path(),
        RocksOptions {
            wal: false,
            ..RocksOptions::default()
        },
    )
    .unwrap();
    let mut b = WriteBatch::new();
    b.set(b"k".to_vec(), b"v".to_vec());
    assert!(matches!(
        db.commit(&b, true),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(db.get(b"k").unwrap(), None);
    assert!(!db.is_poisoned());
    db.commit(&b, false).unwrap();
    assert_eq!(db.get(b"k").unwrap(), Some(b"v".to_vec()));

    let bad = RocksOptions {
        wal: false,
        always_sync: true,
        ..RocksOptions::default()
    };
    let other = tempfile::tempdir().unwrap();
    assert!(matches!(
        RocksDb::open(other.path(), bad),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn snapshot_outlives_every_handle() {
    let dir = tempfile::tempdir().unwrap();
    let db = RocksDb::open(dir.path(), RocksOptions::default()).unwrap();
    write_keys(&db, 0..10, false);
    let db: Arc<dyn KeyValueDB> = Arc::new(db);
    let snap = db.snapshot().unwrap();
    drop(db);
    let got = collect_range(&*snap, KeyRange::all()).unwrap();
    assert_eq!(got.len(), 10);
    assert_eq!(got[3], (key_for(3), value_for(3)));
    drop(snap);
    // Now everything is closed, so the directory can be opened again.
    let db = RocksDb::open(dir.path(), RocksOptions::default()).unwrap();
    assert_eq!(present(&db, 0..10).len(), 10);
}

#[test]
fn opening_twice_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let _db = RocksDb::open(dir.path(), RocksOptions::default()).unwrap();
    // The LOCK file is held: a second open must fail cleanly.
    let err = RocksDb::open(dir.path(), RocksOptions::default()).unwrap_err();
    assert!(matches!(err, Error::Io(_) | Error::Engine(_)), "{err:?}");
}

const CHILD_ENV: &str = "OSTORE_KV_ABORT_CHILD";

/// Re-runs this test binary as a child that writes and then aborts without closing the database,
/// so recovery runs on a database that was never shut down.
fn run_aborting_child(test_name: &str, dir: &Path) {
    let status = Command::new(std::env::current_exe().unwrap())
        .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir)
        .status()
        .unwrap();
    assert!(!status.success(), "the child was meant to abort");
}

#[test]
fn synced_commits_survive_process_abort() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        let db = RocksDb::open(&dir, RocksOptions::default()).unwrap();
        write_keys(&db, 0..400, true);
        std::process::abort();
    }
    let dir = tempfile::tempdir().unwrap();
    run_aborting_child("synced_commits_survive_process_abort", dir.path());
    let db = RocksDb::open(dir.path(), RocksOptions::default()).unwrap();
    assert_eq!(present(&db, 0..400), (0..400).collect::<Vec<_>>());
}

#[test]
fn wal_off_abort_keeps_exactly_the_flushed_commits() {
    let opts = RocksOptions {
        wal: false,
        ..RocksOptions::default()
    };
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        let db = RocksDb::open(&dir, opts).unwrap();
        write_keys(&db, 0..200, false);
        db.flush().unwrap();
        write_keys(&db, 200..300, false);
        std::process::abort();
    }
    let dir = tempfile::tempdir().unwrap();
    run_aborting_child(
        "wal_off_abort_keeps_exactly_the_flushed_commits",
        dir.path(),
    );
    let db = RocksDb::open(dir.path(), opts).unwrap();
    assert_eq!(present(&db, 0..300), (0..200).collect::<Vec<_>>());
}

// ---- corruption ----------------------------------------------------------------------------

const CORRUPT_KEYS: u32 = 2000;

/// A closed database whose data sits in one SST file, uncompressed so file offsets map onto
/// data blocks predictably.
fn pristine_sst_db() -> (TempDir, RocksOptions) {
    let opts = RocksOptions {
        compression: Compression::None,
        ..RocksOptions::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let db = RocksDb::open(dir.path(), opts.clone()).unwrap();
    write_keys(&db, 0..CORRUPT_KEYS, false);
    db.flush_memtables().unwrap();
    drop(db);
    (dir, opts)
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

fn only_sst(dir: &Path) -> std::path::PathBuf {
    let ssts: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sst"))
        .collect();
    assert_eq!(ssts.len(), 1, "expected one SST file: {ssts:?}");
    ssts.into_iter().next().unwrap()
}

/// How the damaged database answered: every answer was right or a Corruption error, and this
/// counts the Corruption errors.
#[derive(Debug, Default)]
struct Damage {
    open_failed: bool,
    get_errors: usize,
    multi_get_errors: usize,
    scan_error: bool,
    scanned: usize,
}

fn probe(dir: &Path, opts: RocksOptions) -> Damage {
    let mut d = Damage::default();
    let db = match RocksDb::open(dir, opts) {
        Ok(db) => db,
        Err(Error::Corruption(_)) => {
            d.open_failed = true;
            return d;
        }
        Err(e) => panic!("open failed with a non-corruption error: {e:?}"),
    };
    for i in 0..CORRUPT_KEYS {
        match db.get(&key_for(i)) {
            Ok(Some(v)) => assert_eq!(v, value_for(i), "wrong bytes for key {i}"),
            Ok(None) => panic!("key {i} silently missing"),
            Err(Error::Corruption(_)) => d.get_errors += 1,
            Err(e) => panic!("get {i}: non-corruption error {e:?}"),
        }
    }
    let keys: Vec<Vec<u8>> = (0..CORRUPT_KEYS).map(key_for).collect();
    let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
    match db.multi_get(&refs) {
        Ok(vals) => {
            for (i, v) in (0..CORRUPT_KEYS).zip(vals) {
                assert_eq!(v, Some(value_for(i)), "multi_get: wrong answer for key {i}");
            }
        }
        Err(Error::Corruption(_)) => d.multi_get_errors += 1,
        Err(e) => panic!("multi_get: non-corruption error {e:?}"),
    }
    let mut it = db.iter(KeyRange::all()).unwrap();
    let mut step = it.seek_to_first();
    loop {
        match step {
            Err(Error::Corruption(_)) => {
                d.scan_error = true;
                break;
            }
            Err(e) => panic!("scan: non-corruption error {e:?}"),
            Ok(()) => {}
        }
        let Some((k, v)) = it.current() else { break };
        let i = u32::try_from(d.scanned).unwrap();
        assert_eq!(k, key_for(i), "scan skipped or invented a key");
        assert_eq!(v, value_for(i), "scan: wrong bytes for key {i}");
        d.scanned += 1;
        step = it.next();
    }
    if !d.scan_error {
        assert_eq!(
            d.scanned, CORRUPT_KEYS as usize,
            "scan ended early without an error"
        );
    }
    d
}

fn flip(path: &Path, offset: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = usize::try_from(offset).unwrap();
    bytes[at] ^= 0x5a;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn flipped_sst_bytes_give_corruption_never_wrong_bytes() {
    let (pristine, opts) = pristine_sst_db();
    let len = std::fs::metadata(only_sst(pristine.path())).unwrap().len();
    assert!(len > 100_000, "SST smaller than planned: {len}");
    // Control: the undamaged copy reads back whole.
    let d = probe(pristine.path(), opts.clone());
    assert_eq!(d.scanned, CORRUPT_KEYS as usize);
    assert_eq!(d.get_errors + d.multi_get_errors, 0);

    // Data blocks (start, middle), then the index / filter / properties region, then the footer.
    for offset in [
        10,
        len / 4,
        len / 2,
        len - 3000,
        len - 200,
        len - 20,
        len - 1,
    ] {
        let copy = tempfile::tempdir().unwrap();
        copy_dir(pristine.path(), copy.path());
        flip(&only_sst(copy.path()), offset);
        let d = probe(copy.path(), opts.clone());
        eprintln!("flip at {offset} of {len}: {d:?}");
        assert!(
            d.open_failed || d.get_errors > 0 || d.scan_error,
            "flip at {offset} of {len} went unnoticed: {d:?}"
        );
    }
}
