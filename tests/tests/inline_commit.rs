//! Whoever hears of a commit reads its own write, also when `on_commit` runs inline on
//! the journal's thread, before the entry is queued for apply. Alone in its test
//! binary: failpoints are process-wide.
//!
//! Found by `os-bench --workload read-random`: its prefill waited for inline commits,
//! and the first read met ENOENT for the last object written.

use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use ostore_journal::failpoint::{self, Action};
use ostore_journal::vfs::{SimFs, Vfs};
use ostore_memstore::MemStore;
use ostore_os::journaling::JournalingOptions;
use ostore_os::{CollectionId, Completion, ObjectId, ObjectStore, Transaction};

#[test]
fn a_read_after_an_inline_commit_sees_the_write() {
    const { assert!(failpoint::ENABLED, "the tests crate builds failpoints in") };
    let vfs: Arc<dyn Vfs> = Arc::new(SimFs::new());
    let s = MemStore::with_vfs(Path::new("/store"), JournalingOptions::small(), vfs);
    s.mkfs().unwrap();
    s.mount().unwrap();
    let c = CollectionId::pg(1, 0);
    let ch = s.create_new_collection(&c).unwrap();
    let mut t = Transaction::new();
    t.create_collection(&c, 0);
    s.apply_transaction(&ch, t).unwrap();

    for i in 0..3u8 {
        // The journal thread sleeps between the callback and queueing the apply.
        failpoint::arm("journaling.after_commit", 1, Action::Pause(300));
        let o = ObjectId::new(1, format!("o{i}"));
        let mut t = Transaction::new();
        t.write(&c, &o, 0, vec![i; 100]);
        let (tx, rx) = mpsc::channel();
        let done = Completion::on_commit_inline(move |r| {
            let _ = tx.send(r);
        });
        s.queue_transactions(&ch, vec![t], done).unwrap();
        rx.recv_timeout(Duration::from_secs(60))
            .expect("commit callback")
            .unwrap();
        let r = s.read(&ch, &o, 0, 0).map_err(|e| e.to_string());
        assert_eq!(r, Ok(vec![i; 100]), "read of o{i} right after its commit");
    }
    failpoint::disarm_all();
    s.umount().unwrap();
}
