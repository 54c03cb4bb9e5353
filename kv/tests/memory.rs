//! The shared suite on the in-memory engine, plus its fail-stop behaviour.

mod suite;

use std::sync::Arc;

use ostore_kv::{Error, KeyValueDB, KvRead, MemoryDb, WriteBatch};

#[test]
fn memory_engine_passes_suite() {
    suite::run(|| suite::Fresh {
        db: Arc::new(MemoryDb::new()),
        keep: Box::new(()),
    });
}

#[test]
fn failed_sync_poisons_writes_but_not_reads() {
    let db = MemoryDb::new();
    let mut b = WriteBatch::new();
    b.set(b"before".to_vec(), b"1".to_vec());
    db.commit(&b, true).unwrap();

    db.inject_sync_failure();
    let mut b = WriteBatch::new();
    b.set(b"during".to_vec(), b"2".to_vec());
    assert!(matches!(db.commit(&b, true), Err(Error::Io(_))));
    assert!(db.is_poisoned());

    // No retry succeeds, synced or not, and flush refuses too; the failed batch is not visible.
    let mut b = WriteBatch::new();
    b.set(b"after".to_vec(), b"3".to_vec());
    assert!(matches!(db.commit(&b, true), Err(Error::Poisoned(_))));
    assert!(matches!(db.commit(&b, false), Err(Error::Poisoned(_))));
    assert!(matches!(db.flush(), Err(Error::Poisoned(_))));
    assert_eq!(db.get(b"during").unwrap(), None);
    assert_eq!(db.get(b"after").unwrap(), None);
    assert_eq!(db.get(b"before").unwrap(), Some(b"1".to_vec()));
    // Other handles on the same database are poisoned too.
    assert!(db.clone().is_poisoned());
}

#[test]
fn failed_flush_poisons() {
    let db = MemoryDb::new();
    db.inject_sync_failure();
    assert!(matches!(db.flush(), Err(Error::Io(_))));
    let mut b = WriteBatch::new();
    b.set(b"k".to_vec(), b"v".to_vec());
    assert!(matches!(db.commit(&b, false), Err(Error::Poisoned(_))));
}

#[test]
fn usable_as_shared_trait_object() {
    fn assert_send_sync<T: Send + Sync + ?Sized>() {}
    assert_send_sync::<dyn KeyValueDB>();
    let db: Arc<dyn KeyValueDB> = Arc::new(MemoryDb::new());
    let snap = db.snapshot().unwrap();
    drop(db);
    // The snapshot keeps its view alive on its own.
    assert_eq!(snap.get(b"x").unwrap(), None);
}
