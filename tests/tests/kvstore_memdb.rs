//! KeyValueStore on the in-memory engine: the conformance suite and the model test run
//! in seconds, so the store's logic is checked apart from RocksDB. The engine keeps its
//! image in an atomic file of the store's I/O layer, so the same store also runs on the
//! simulated disk: every crash state of its workloads, and an I/O error at every call.

use std::sync::Arc;

use ostore_kvstore::{kvstore, Engine, KvStoreOptions};
use ostore_os::journaling::JournalingOptions;
use ostore_os::ObjectStore;

fn memdb() -> impl ostore_tests::StoreFactory {
    ostore_tests::factory("kvstore-memdb", |dir| {
        Arc::new(kvstore(
            dir,
            JournalingOptions::small(),
            KvStoreOptions {
                engine: Engine::Memory,
                // Small strips, so objects of the suite span many of them.
                strip_size: 512,
            },
        )) as Arc<dyn ObjectStore>
    })
}

fn memdb_on_sim() -> impl ostore_tests::crash::SimStoreFactory {
    ostore_tests::crash::sim_factory("kvstore-memdb", |vfs, dir, opts| {
        ostore_kvstore::set_mkfs_options(
            dir,
            KvStoreOptions {
                engine: Engine::Memory,
                strip_size: 512,
            },
        );
        Arc::new(ostore_kvstore::KeyValueStore::with_vfs(dir, opts, vfs)) as Arc<dyn ObjectStore>
    })
}

ostore_tests::conformance_tests!(memdb());
ostore_tests::model_tests!(memdb());
// Every one- and two-op workload and 2,000 of the 24,389 three-op ones (`OSTORE_HEAVY=all`:
// all of them). MemStore (tests/tests/memstore.rs) runs every three-op workload through the
// same journaling and checkpoint code; here they took ~7 of CI's ~42 minutes (2026-12-07).
ostore_tests::sim_crash_tests!(memdb_on_sim(), triples = 2_000);
ostore_tests::fault_tests!(memdb_on_sim());
