//! A panic in an apply worker (a bug) fails the store stop; it never leaves the entry
//! counted as running, which hung every later wait and the umount itself. Alone in its
//! test binary: failpoints are process-wide.
//!
//! Found when a FileStore arithmetic overflow panicked an apply thread in a debug build:
//! the submitter got an error, then the umount waited forever for the entry to apply.

use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use ostore_journal::failpoint::{self, Action};
use ostore_journal::vfs::{SimFs, Vfs};
use ostore_memstore::MemStore;
use ostore_os::journaling::JournalingOptions;
use ostore_os::{CollectionId, ErrorKind, ObjectId, ObjectStore, Transaction};

/// Runs `f` on its own thread; fails the test if it does not end within a minute.
fn within_a_minute<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("{what} hung after an apply worker panicked"))
}

#[test]
fn a_panicking_apply_worker_fails_the_store_and_nothing_hangs() {
    const { assert!(failpoint::ENABLED, "the tests crate builds failpoints in") };
    let fs = Arc::new(SimFs::new());
    let vfs: Arc<dyn Vfs> = fs.clone();
    let s = Arc::new(MemStore::with_vfs(
        Path::new("/store"),
        JournalingOptions::small(),
        vfs.clone(),
    ));
    s.mkfs().unwrap();
    s.mount().unwrap();
    let c = CollectionId::pg(1, 0);
    let ch = s.create_new_collection(&c).unwrap();
    let mut t = Transaction::new();
    t.create_collection(&c, 0)
        .write(&c, &ObjectId::new(1, "before"), 0, vec![1; 5000]);
    s.apply_transaction(&ch, t).unwrap();

    failpoint::arm("apply.entry", 1, Action::Panic);
    let mut t = Transaction::new();
    t.write(&c, &ObjectId::new(1, "during"), 0, vec![2; 5000]);
    let (s2, ch2) = (s.clone(), ch.clone());
    let r = within_a_minute("the transaction", move || s2.apply_transaction(&ch2, t));
    failpoint::disarm_all();
    let e = r.expect_err("the entry whose apply panicked is not reported applied");
    assert_eq!(e.kind(), ErrorKind::Failed, "{e}");
    assert!(e.to_string().contains("panicked"), "{e}");

    // The store refuses new work, and every wait ends.
    let mut t = Transaction::new();
    t.write(&c, &ObjectId::new(1, "after"), 0, vec![3; 10]);
    let (s2, ch2) = (s.clone(), ch.clone());
    let e = within_a_minute("a later transaction", move || s2.apply_transaction(&ch2, t))
        .expect_err("a failed store takes no new transactions");
    assert_eq!(e.kind(), ErrorKind::Failed, "{e}");
    let s2 = s.clone();
    within_a_minute("umount", move || {
        let _ = s2.umount();
    });

    // The entry was durable before its apply panicked: a remount replays it.
    let s3 = MemStore::with_vfs(Path::new("/store"), JournalingOptions::small(), vfs);
    s3.mount().unwrap();
    let ch3 = s3.open_collection(&c).unwrap();
    assert_eq!(
        s3.read(&ch3, &ObjectId::new(1, "during"), 0, 0).unwrap(),
        vec![2; 5000]
    );
    assert_eq!(
        s3.read(&ch3, &ObjectId::new(1, "before"), 0, 0).unwrap(),
        vec![1; 5000]
    );
    s3.umount().unwrap();
}
