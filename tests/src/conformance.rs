//! The conformance suite: hand-written cases pinning Ceph's ObjectStore semantics
//! (ported from the intent of Ceph's src/test/objectstore/store_test.cc, and from
//! DESIGN.md "Transaction semantics" and os/src/precheck.rs where ostore departs).
//!
//! Every case is a `pub fn(&dyn StoreFactory)`; [`conformance_tests!`] expands to one
//! `#[test]` per case so each backend's test file is a single macro call:
//!
//! ```ignore
//! ostore_tests::conformance_tests!(ostore_tests::factory("memstore", |dir| {
//!     std::sync::Arc::new(ostore_memstore::MemStore::new(dir))
//! }));
//! ```

pub mod attrs;
pub mod clone;
pub mod collections;
pub mod data;
pub mod limits;
pub mod listing;
pub mod names;
pub mod omap;
pub mod remount;
pub mod txn;

use ostore_os::{CollectionId, ObjectId, Transaction};

use crate::harness::{StoreFactory, TestStore};

/// Expands to one `#[test]` per conformance case, each running against the factory
/// expression (evaluated afresh in every test).
#[macro_export]
macro_rules! conformance_tests {
    ($factory:expr) => {
        $crate::conformance_tests!(@each $factory;
            collections::simple_col,
            collections::mkcoll_existing_is_eexist,
            collections::rmcoll_nonempty_is_enotempty,
            collections::rmcoll_after_removing_objects_in_same_txn,
            collections::ops_on_missing_collection_are_enoent,
            collections::collection_empty_tracks_objects,
            collections::meta_and_temp_collections,
            collections::col_split,
            collections::col_split_moves_by_low_bits_repeatedly,
            collections::split_errors,
            collections::legacy_split_creates_destination,
            collections::merge_collection,
            collections::merge_errors,
            collections::coll_set_bits_and_hint,
            data::simple_object,
            data::create_on_existing_behaves_as_touch,
            data::small_block_writes,
            data::overwrite_keeps_the_rest,
            data::zero_length_write,
            data::zero_length_zero,
            data::zero_vs_object_size,
            data::zero_creates_missing_object,
            data::write_past_end_fills_with_zeros,
            data::read_semantics,
            data::missing_object_reads_are_enoent,
            data::truncate_test,
            data::truncate_then_extend_reads_zeros,
            data::sparse_reads_and_fiemap,
            data::big_object,
            data::remove_then_recreate_is_empty,
            data::set_alloc_hint_never_fails,
            attrs::simple_attr_test,
            attrs::xattr_test,
            attrs::attr_limits_are_validated,
            omap::omap_simple,
            omap::omap_test,
            omap::omap_get_values_and_check_keys,
            omap::omap_iterator,
            omap::omap_rm_key_range,
            omap::omap_clear_removes_header,
            omap::omap_ops_on_missing_object_are_skipped,
            clone::clone_test,
            clone::clone_is_independent_of_source,
            clone::omap_clone_test,
            clone::clone_of_missing_object_rejects,
            clone::clone_range_test,
            clone::clone_range_clipped_at_source_end,
            clone::simple_clone_range_same_offset,
            clone::clone_range_of_missing_object_rejects,
            clone::move_rename,
            clone::move_rename_across_collections,
            clone::move_rename_onto_existing_rejects,
            clone::try_rename,
            listing::simple_list_test,
            listing::list_end_test,
            listing::collection_list_start_end,
            listing::list_next_is_first_unreturned,
            listing::multipool_list_test,
            listing::sort_order_is_cephs,
            listing::hash_collision_test,
            listing::scrub_listing_with_shards_and_generations,
            listing::many_small_objects,
            names::unprintable_and_odd_names,
            names::long_names_up_to_the_limit,
            names::ids_differing_only_by_key_namespace_snap,
            names::invalid_ids_are_rejected,
            names::pgmeta_objects_have_empty_names,
            limits::every_limit_at_its_edges,
            limits::object_size_limit_at_its_edges,
            remount::remount_preserves_everything,
            remount::remount_keeps_removals,
            remount::remount_twice_with_writes_between,
            txn::tolerated_errors_inside_a_transaction,
            txn::rejected_transaction_applies_nothing,
            txn::validation_error_applies_nothing,
            txn::ops_apply_in_order_within_a_transaction,
            txn::callbacks_fire_exactly_once,
            txn::inline_commit_fires_in_order_and_refuses_store_calls,
            txn::callbacks_of_rejected_transaction_carry_the_error,
            txn::several_transactions_in_one_call,
            txn::per_handle_ordering,
            txn::concurrent_clients,
            txn::empty_transactions_complete,
            txn::lifecycle_errors,
        );
    };
    (@each $factory:expr; $($module:ident :: $case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                let factory = $factory;
                $crate::conformance::$module::$case(&factory);
            }
        )*
    };
}

/// The collection most cases work in.
pub fn coll() -> CollectionId {
    CollectionId::pg(1, 0)
}

/// A head object in [`coll`]'s pool.
pub fn oid(name: &str) -> ObjectId {
    ObjectId::new(1, name)
}

pub fn txn() -> Transaction {
    Transaction::new()
}

/// Deterministic bytes that are never all zero, distinct per `seed`, so misplaced or
/// zero-filled data never compares equal by accident.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            let v = (i as u32)
                .wrapping_mul(2_654_435_761)
                .wrapping_add(u32::from(seed) * 97);
            ((v >> 13) as u8) | 1
        })
        .collect()
}

/// A mounted store holding [`coll`] with 0 bits.
pub fn setup(f: &dyn StoreFactory) -> TestStore<'_> {
    let s = TestStore::new(f);
    s.mkcoll(&coll(), 0);
    s
}
