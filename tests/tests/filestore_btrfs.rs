//! FileStore on a loop-mounted btrfs image (made once for this test binary and removed
//! at its exit): `current/` is a subvolume and every checkpoint a read-only snapshot,
//! mount rolls back to the newest. The conformance suite, the model test and the
//! process-kill test, plus snapshot rollback and reflink. Needs root and btrfs-progs;
//! without them every test prints SKIPPED and passes.

use std::sync::Arc;

use ostore_filestore::{filestore, sys, testfs, FileStoreOptions};
use ostore_os::journaling::JournalingOptions;
use ostore_os::{CollectionId, ObjectId, ObjectStore, Transaction};

const IMAGE_MB: u64 = 4096;

fn opts() -> FileStoreOptions {
    FileStoreOptions {
        split_threshold: 32,
        ..FileStoreOptions::default()
    }
}

fn btrfs_factory() -> Option<impl ostore_tests::StoreFactory> {
    match testfs::shared_tmpdir("btrfs", IMAGE_MB) {
        Ok(_) => Some(ostore_tests::factory("filestore-btrfs", |dir| {
            Arc::new(filestore(dir, JournalingOptions::small(), opts())) as Arc<dyn ObjectStore>
        })),
        Err(why) => {
            eprintln!(
                "*** SKIPPED: FileStore on btrfs needs a loop-mounted btrfs image: {why} ***"
            );
            None
        }
    }
}

macro_rules! btrfs {
    () => {
        match btrfs_factory() {
            Some(f) => f,
            None => return,
        }
    };
}

ostore_tests::conformance_tests!(btrfs!());
ostore_tests::model_tests!(btrfs!());
ostore_tests::kill_tests!(btrfs!());

#[macro_use]
mod staged;
staged_tests!(btrfs_factory().is_some());

fn snapshots(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("snap_"))
        .collect();
    v.sort();
    v
}

/// Checkpoints are snapshots (the last two kept); after a crash, mount rolls
/// `current/` back to the newest one and replays the journal after it: whatever was
/// applied to `current/` after the snapshot (here, a file planted there) is gone, and
/// every committed transaction is back.
#[test]
fn snapshot_rollback_after_a_crash() {
    let _f = btrfs!();
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("store");
    let mut jo = JournalingOptions::small();
    jo.checkpoint_interval = std::time::Duration::from_secs(3600);
    let c = CollectionId::pg(1, 0);
    let store = filestore(&dir, jo.clone(), opts());
    store.mkfs().unwrap();
    store.mount().unwrap();
    assert!(sys::is_btrfs_subvolume(&dir.join("current")).unwrap());
    let ch = store.create_new_collection(&c).unwrap();
    let mut t = Transaction::new();
    t.create_collection(&c, 0);
    store.apply_transaction(&ch, t).unwrap();
    for i in 0..3 {
        let mut t = Transaction::new();
        t.write(&c, &ObjectId::new(1, format!("o{i}")), 0, vec![i + 1; 5000]);
        store.apply_transaction(&ch, t).unwrap();
        store.checkpoint_now().unwrap();
    }
    assert_eq!(snapshots(&dir).len(), 2, "{:?}", snapshots(&dir));
    let mut t = Transaction::new();
    t.write(&c, &ObjectId::new(1, "after"), 0, b"journal only".to_vec())
        .remove(&c, &ObjectId::new(1, "o0"));
    store.apply_transaction(&ch, t).unwrap();
    // Something applied to current/ after the snapshot that the journal knows nothing of.
    std::fs::write(dir.join("current").join("planted"), b"x").unwrap();
    drop(store);
    let store = filestore(&dir, jo, opts());
    let rep = store.mount_report().unwrap();
    assert!(rep.replayed >= 1, "{rep:?}");
    assert!(
        !dir.join("current").join("planted").exists(),
        "not rolled back"
    );
    let ch = store.open_collection(&c).unwrap();
    assert!(!store.exists(&ch, &ObjectId::new(1, "o0")).unwrap());
    assert_eq!(
        store.read(&ch, &ObjectId::new(1, "o2"), 0, 0).unwrap(),
        vec![3; 5000]
    );
    assert_eq!(
        store.read(&ch, &ObjectId::new(1, "after"), 0, 0).unwrap(),
        b"journal only"
    );
    assert!(store.fsck(true).unwrap().is_clean());
    store.umount().unwrap();
    assert!(snapshots(&dir).len() <= 2);
}

#[test]
fn reflink_clone_shares_extents() {
    let f = btrfs!();
    let s = ostore_tests::TestStore::new(&f);
    let c = CollectionId::pg(1, 0);
    s.mkcoll(&c, 0);
    let (a, b) = (ObjectId::new(1, "src"), ObjectId::new(1, "dst"));
    let data: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 241) as u8 + 1).collect();
    let mut t = Transaction::new();
    t.write(&c, &a, 0, data.clone());
    s.apply_ok(t);
    let mut t = Transaction::new();
    t.clone_obj(&c, &a, &b);
    s.apply_ok(t);
    assert_eq!(s.read_all(&c, &b), data);
    let p = ostore_filestore::locate_object(s.path(), &c, &b)
        .unwrap()
        .unwrap();
    let f = std::fs::File::open(&p).unwrap();
    let m = sys::fiemap(&f, 0, 1 << 20).unwrap();
    let shared: u64 = m
        .iter()
        .filter(|e| e.flags & sys::FIEMAP_EXTENT_SHARED != 0)
        .map(|e| e.length)
        .sum();
    assert!(shared >= 1 << 20, "clone not reflinked: {m:?}");
}
