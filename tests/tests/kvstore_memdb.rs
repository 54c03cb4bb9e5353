//! KeyValueStore on the in-memory engine: the conformance suite and the model test run
//! in seconds, so the store's logic is checked apart from RocksDB. (The process-kill
//! test needs a database that outlives its process: it runs on RocksDB only.)

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

ostore_tests::conformance_tests!(memdb());
ostore_tests::model_tests!(memdb());
