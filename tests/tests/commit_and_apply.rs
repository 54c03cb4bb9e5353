//! How commits and applies relate, with failpoints holding race windows open. Alone in
//! their test binary (failpoints are process-wide), and run one at a time.
//!
//! - Whoever hears of a commit reads its own write, also when `on_commit` runs inline
//!   on the journal's thread, before the entry is queued for apply. Found by `os-bench
//!   --workload read-random`: its prefill waited for inline commits, and the first read
//!   met ENOENT for the last object written.
//! - Commits run at most `max_unapplied` entries ahead of the applies. Found by
//!   `os-bench --workload clone-overwrite` on KeyValueStore: commits ran minutes ahead
//!   of a stalled apply.
//! - A checkpoint that covers entries the journal has not made durable yet (parallel
//!   mode applies before the sync) finishes its trim later. Found by CI: the limits
//!   test hung on its 16 MiB omap value, the submitter throttled on journal volumes
//!   that no checkpoint would free again.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ostore_journal::failpoint::{self, Action};
use ostore_journal::vfs::{SimFs, Vfs};
use ostore_memstore::MemStore;
use ostore_os::journaling::{JournalMode, JournalingOptions};
use ostore_os::{CollectionId, Completion, ObjectId, ObjectStore, Transaction};

/// One test at a time: they arm process-wide failpoints.
static SERIAL: Mutex<()> = Mutex::new(());

fn store(o: JournalingOptions) -> (Arc<MemStore>, CollectionId, ostore_os::CollectionHandle) {
    const { assert!(failpoint::ENABLED, "the tests crate builds failpoints in") };
    let vfs: Arc<dyn Vfs> = Arc::new(SimFs::new());
    let s = Arc::new(MemStore::with_vfs(Path::new("/store"), o, vfs));
    let (c, ch) = ostore_tests::harness::mkfs_mount_one_collection(&*s);
    (s, c, ch)
}

#[test]
fn a_read_after_an_inline_commit_sees_the_write() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (s, c, ch) = store(JournalingOptions::small());

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

#[test]
fn commits_wait_for_a_backlog_of_applies() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let max = 4;
    let (s, c, ch) = store(JournalingOptions {
        max_unapplied: max,
        ..JournalingOptions::small()
    });
    // The next apply sleeps 1.5 s; every later entry of the handle queues behind it.
    failpoint::arm("apply.entry", 1, Action::Pause(1500));
    let committed = Arc::new(AtomicUsize::new(0));
    let (s2, c2, ch2, n2) = (s.clone(), c, ch.clone(), committed.clone());
    let total = 3 * max;
    let submitter = std::thread::spawn(move || {
        for i in 0..total {
            let mut t = Transaction::new();
            t.write(&c2, &ObjectId::new(1, format!("o{i}")), 0, vec![1; 10]);
            let (tx, rx) = mpsc::channel();
            s2.queue_transactions(
                &ch2,
                vec![t],
                Completion::on_commit_inline(move |r| {
                    let _ = tx.send(r);
                }),
            )
            .unwrap();
            rx.recv().unwrap().unwrap();
            n2.fetch_add(1, Ordering::SeqCst);
        }
    });
    std::thread::sleep(Duration::from_millis(700));
    let ahead = committed.load(Ordering::SeqCst);
    assert!(
        ahead <= max,
        "{ahead} transactions committed while the first apply was stuck (max_unapplied {max})"
    );
    assert!(ahead >= 1, "the first transaction committed");
    submitter.join().unwrap();
    failpoint::disarm_all();
    assert_eq!(committed.load(Ordering::SeqCst), total);
    for i in 0..total {
        assert_eq!(
            s.read(&ch, &ObjectId::new(1, format!("o{i}")), 0, 0)
                .unwrap(),
            vec![1; 10]
        );
    }
    s.umount().unwrap();
}

#[test]
fn a_trim_cut_short_by_the_journal_is_finished_later() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let o = JournalingOptions {
        mode: JournalMode::Parallel,
        ..JournalingOptions::small()
    };
    let budget = o.max_journal_bytes;
    let (s, c, ch) = store(o);
    // The next journal flush waits 1.5 s before writing: the big entry is applied
    // (parallel mode) and a checkpoint covers it while none of it is durable, so that
    // checkpoint can trim nothing.
    failpoint::arm("journal.flush", 1, Action::Pause(1500));
    let mut t = Transaction::new();
    let big = budget as usize + (1 << 20);
    t.write(&c, &ObjectId::new(1, "big"), 0, vec![7; big]);
    let (tx, rx) = mpsc::channel();
    s.queue_transactions(
        &ch,
        vec![t],
        Completion::on_commit(move |r| {
            let _ = tx.send(r);
        }),
    )
    .unwrap();
    rx.recv_timeout(Duration::from_secs(60))
        .expect("commit of the big write")
        .unwrap();
    failpoint::disarm_all();
    // The journal now holds more than its budget: the next submitter waits for a
    // checkpoint to free volumes, which must come although nothing new was queued.
    let (s2, c2, ch2) = (s.clone(), c, ch.clone());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut t = Transaction::new();
        t.write(&c2, &ObjectId::new(1, "small"), 0, vec![1; 10]);
        let _ = tx.send(s2.apply_transaction(&ch2, t).map_err(|e| e.to_string()));
    });
    let r = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("a submit throttled on the journal budget returned within 30 s");
    assert_eq!(r, Ok(()));
    assert_eq!(
        s.read(&ch, &ObjectId::new(1, "small"), 0, 0).unwrap(),
        vec![1; 10]
    );
    assert_eq!(
        s.stat(&ch, &ObjectId::new(1, "big")).unwrap().size,
        big as u64
    );
    s.umount().unwrap();
}
