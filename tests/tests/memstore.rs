//! The conformance suite and the model test against MemStore.

use std::sync::Arc;

use ostore_os::journaling::JournalingOptions;

fn memstore() -> impl ostore_tests::StoreFactory {
    ostore_tests::factory("memstore", |dir| {
        Arc::new(ostore_memstore::MemStore::with_options(
            dir,
            JournalingOptions::small(),
        )) as Arc<dyn ostore_os::ObjectStore>
    })
}

fn memstore_on_sim() -> impl ostore_tests::crash::SimStoreFactory {
    ostore_tests::crash::sim_factory("memstore", |vfs, dir, opts| {
        Arc::new(ostore_memstore::MemStore::with_vfs(dir, opts, vfs))
            as Arc<dyn ostore_os::ObjectStore>
    })
}

ostore_tests::conformance_tests!(memstore());
ostore_tests::model_tests!(memstore());
ostore_tests::kill_tests!(memstore());
ostore_tests::failpoint_tests!(memstore());
ostore_tests::sim_crash_tests!(memstore_on_sim());
ostore_tests::fault_tests!(memstore_on_sim());

// The suite must be able to fail: each deliberate defect below is caught.

fn faulty(fault: ostore_tests::faulty::Fault) -> impl ostore_tests::StoreFactory {
    ostore_tests::faulty::FaultyFactory {
        inner: memstore(),
        fault,
    }
}

#[test]
#[should_panic(expected = "model divergence")]
fn model_catches_a_dropped_omap_rmkeyrange() {
    let f = faulty(ostore_tests::faulty::Fault::DropOp(
        ostore_os::OpCode::OmapRmKeyRange,
    ));
    ostore_tests::model::run(&f, 1, 3_000);
}

#[test]
#[should_panic(expected = "model divergence")]
fn model_catches_a_dropped_coll_set_bits() {
    let f = faulty(ostore_tests::faulty::Fault::DropOp(
        ostore_os::OpCode::CollSetBits,
    ));
    ostore_tests::model::run(&f, 2, 3_000);
}

#[test]
#[should_panic]
fn conformance_catches_a_dropped_clone_range() {
    let f = faulty(ostore_tests::faulty::Fault::DropOp(
        ostore_os::OpCode::CloneRange2,
    ));
    ostore_tests::conformance::clone::clone_range_test(&f);
}

#[test]
#[should_panic]
fn conformance_catches_a_listing_that_hides_an_object() {
    let f = faulty(ostore_tests::faulty::Fault::ListHidesLast);
    ostore_tests::conformance::listing::sort_order_is_cephs(&f);
}

/// A sustained write load runs on recycled journal volumes: the volumes a checkpoint
/// frees are kept as blanks (up to the journal's byte budget) instead of deleted, so
/// the journal zero-fills a new volume only while it grows to its peak, never once per
/// volume written.
#[test]
fn checkpoints_recycle_journal_volumes_instead_of_zero_filling_new_ones() {
    use ostore_os::{ObjectId, ObjectStore, Transaction};
    let tmp = tempfile::tempdir().unwrap();
    let mut opts = JournalingOptions::small();
    // Made on demand, so every blank made is counted when the rotation needs it.
    opts.journal.background_blanks = false;
    let vol = opts.geometry.volume_size;
    let ring = opts.max_journal_bytes / vol + opts.journal.blank_target as u64;
    let store = ostore_memstore::MemStore::with_options(tmp.path().join("s"), opts);
    let (c, ch) = ostore_tests::harness::mkfs_mount_one_collection(&store);
    let chunk = 64 << 10;
    let total = 6 * ring * vol;
    let mut written = 0u64;
    let mut i = 0u64;
    while written < total {
        let mut t = Transaction::new();
        let o = ObjectId::new(1, format!("obj{}", i % 8));
        t.write(&c, &o, (i % 16) * chunk, vec![i as u8; chunk as usize]);
        store.apply_transaction(&ch, t).unwrap();
        written += chunk;
        i += 1;
    }
    let made = store.journal_blanks_made().unwrap();
    store.umount().unwrap();
    let volumes_written = written / vol;
    assert!(
        made <= ring + 2,
        "{made} journal volumes zero-filled for {volumes_written} volumes written \
         (budget {ring})"
    );
}

/// Two stores given the same journal directory (a wrong `--journal-path`) would write
/// each other's entries and replay them into the wrong store: the second mount is
/// refused while the first holds the journal. Found by probing os-tool.
#[test]
fn a_journal_directory_serves_one_mount_at_a_time() {
    use ostore_os::ObjectStore;
    let t = tempfile::tempdir().unwrap();
    let opts = JournalingOptions {
        journal_path: Some(t.path().join("shared-journal")),
        ..JournalingOptions::small()
    };
    let a = ostore_memstore::MemStore::with_options(t.path().join("a"), opts.clone());
    a.mkfs().unwrap();
    a.mount().unwrap();
    let b = ostore_memstore::MemStore::with_options(t.path().join("b"), opts.clone());
    let e = b.mkfs().unwrap_err();
    assert_eq!(e.kind(), ostore_os::ErrorKind::Exists, "{e}");
    // b formatted with its own journal, then mounted on a's: refused while a is up.
    let own =
        ostore_memstore::MemStore::with_options(t.path().join("b"), JournalingOptions::small());
    own.mkfs().unwrap();
    // Its superblock names its own journal: refused for that, whoever holds a's.
    let e = b.mount().unwrap_err();
    assert_eq!(e.kind(), ostore_os::ErrorKind::InvalidArgument, "{e}");
    assert!(e.to_string().contains("belongs to another store"), "{e}");
    // A superblock from before journal ids (version 1) cannot tell: the lock refuses.
    let dir = t.path().join("b");
    let mut sb = ostore_os::superblock::Superblock::read(&dir).unwrap();
    sb.journal_id = None;
    sb.write(&ostore_journal::RealFs::new(), &dir).unwrap();
    let e = b.mount().unwrap_err();
    assert_eq!(e.kind(), ostore_os::ErrorKind::Exists, "{e}");
    assert!(e.to_string().contains("already in use"), "{e}");
    a.umount().unwrap();
}
