//! MemStore in the parallel journal mode (journal and apply at once; its dump is a
//! snapshot checkpoint): the conformance suite, the model test, and both crash tests.

use std::sync::Arc;

use ostore_os::journaling::{JournalMode, JournalingOptions};

fn opts() -> JournalingOptions {
    JournalingOptions {
        mode: JournalMode::Parallel,
        ..JournalingOptions::small()
    }
}

fn memstore() -> impl ostore_tests::StoreFactory {
    ostore_tests::factory("memstore-parallel", |dir| {
        Arc::new(ostore_memstore::MemStore::with_options(dir, opts()))
            as Arc<dyn ostore_os::ObjectStore>
    })
}

fn memstore_on_sim() -> impl ostore_tests::crash::SimStoreFactory {
    ostore_tests::crash::sim_factory("memstore-parallel", |vfs, dir| {
        let mut o = opts();
        o.journal.background_blanks = false;
        Arc::new(ostore_memstore::MemStore::with_vfs(dir, o, vfs))
            as Arc<dyn ostore_os::ObjectStore>
    })
}

ostore_tests::conformance_tests!(memstore());
ostore_tests::model_tests!(memstore());
// Open defect, seen once (2026-12-04 full run, iteration 60 of 200, seed 202374940):
// after a SIGKILL in parallel mode, mount refused the store: "journal entry at 5:32848
// has seq 1168, expected 1166 (entries must be contiguous after checkpoint 1165)".
// Not yet diagnosed (no acknowledged data is known lost: mount fails stop). On demand
// until found: `cargo test --test memstore_parallel -- --ignored kill_recovery`.
ostore_tests::kill_tests!(
    memstore(),
    ignore = "open defect: parallel-mode replay once met a seq gap after SIGKILL (see comment)"
);
ostore_tests::sim_crash_tests!(memstore_on_sim());
