//! A checkpoint racing with a submitter between its journal append and the record of
//! the entry's volume. Alone in its test binary: failpoints are process-wide, so a
//! pause armed here must not land in another test.
//!
//! Found by MemStore's parallel-mode kill test (2026-12-04, seed 202374940: "journal
//! entry at 5:32848 has seq 1168, expected 1166"): the checkpoint took the journal's end
//! as the first volume to keep while an entry appended before that end was not yet
//! recorded, so the trim recycled that entry's volume and replay met a gap.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ostore_journal::failpoint::{self, Action};
use ostore_journal::vfs::{SimFs, Vfs};
use ostore_memstore::MemStore;
use ostore_os::journaling::{JournalMode, JournalingOptions};
use ostore_os::{Completion, ObjectId, ObjectStore, Transaction};

fn opts() -> JournalingOptions {
    let mut o = JournalingOptions::small();
    o.mode = JournalMode::Parallel;
    o.journal.background_blanks = false;
    // Only the test checkpoints.
    o.checkpoint_interval = Duration::from_secs(3600);
    o.checkpoint_fill_bytes = 1 << 40;
    o.max_journal_bytes = 1 << 40;
    o
}

fn store(vfs: Arc<dyn Vfs>) -> MemStore {
    MemStore::with_vfs(Path::new("/store"), opts(), vfs)
}

#[test]
fn a_checkpoint_never_trims_an_entry_appended_but_not_yet_recorded() {
    const { assert!(failpoint::ENABLED, "the tests crate builds failpoints in") };
    let fs = Arc::new(SimFs::new());
    let vfs: Arc<dyn Vfs> = fs.clone();
    let s = store(vfs);
    let (c, ch) = ostore_tests::harness::mkfs_mount_one_collection(&s);
    let volume = opts().geometry.volume_size as usize;
    // Small entries first, then one bigger than a volume: once appended, the journal's
    // end is at least one volume past the volume the big entry starts in.
    for i in 0..5u8 {
        let mut t = Transaction::new();
        t.write(
            &c,
            &ObjectId::new(1, format!("small{i}")),
            0,
            vec![i; 10_000],
        );
        s.apply_transaction(&ch, t).unwrap();
    }
    let big = ObjectId::new(1, "big");
    let data: Vec<u8> = (0..volume + 300_000).map(|i| (i % 251) as u8).collect();
    let mut t = Transaction::new();
    t.write(&c, &big, 0, data.clone());
    // The submitter stops for a while right after its append; the checkpoint runs then.
    failpoint::arm("journaling.after_append", 1, Action::Pause(400));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|sc| {
        sc.spawn(|| {
            let done = Completion::on_commit(move |r| tx.send(r).unwrap());
            s.queue_transactions(&ch, vec![t], done).unwrap();
        });
        std::thread::sleep(Duration::from_millis(100));
        let cp = s.checkpoint_now().unwrap();
        assert!(cp >= 6, "the checkpoint covers the small writes: {cp}");
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("on_commit")
        .expect("committed");
    failpoint::disarm_all();
    // A power cut now (everything written survives): the big write was acknowledged,
    // so recovery must find it.
    let all = fs.unsynced_at(fs.op_count());
    let img: Arc<dyn Vfs> = Arc::new(fs.crash_state(fs.op_count(), &all, None));
    let s2 = store(img);
    s2.mount()
        .expect("recovery after a checkpoint that raced with an append");
    let ch2 = s2.open_collection(&c).unwrap();
    assert_eq!(s2.read(&ch2, &big, 0, 0).unwrap(), data);
    assert_eq!(
        s2.read(&ch2, &ObjectId::new(1, "small4"), 0, 0).unwrap(),
        vec![4; 10_000]
    );
    s2.umount().unwrap();
    drop(s);
}
