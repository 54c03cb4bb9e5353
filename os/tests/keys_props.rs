//! Property tests of the order-preserving key encodings: bytewise order of encoded ids
//! equals Ceph order, every id round-trips, and arbitrary bytes never panic the decoder.

use ostore_os::keys::{collection_key, decode_collection_key, decode_object_key, object_key};
use ostore_os::{CollectionId, ObjectId, PgId, Snap};
use proptest::prelude::*;

fn text() -> impl Strategy<Value = String> {
    // NULs, 0x01 and high bytes stress the escaping; short alphabets force shared prefixes.
    prop::collection::vec(
        prop_oneof![
            Just('\0'),
            Just('\u{1}'),
            Just('a'),
            Just('b'),
            Just('\u{ff}'),
            Just('~')
        ],
        0..6,
    )
    .prop_map(|v| v.into_iter().collect())
}

fn oid() -> impl Strategy<Value = ObjectId> {
    (
        text(),
        text(),
        text(),
        -2i64..3,
        prop_oneof![
            Just(Snap::HEAD),
            Just(Snap::SNAPDIR),
            (0u64..4).prop_map(Snap)
        ],
        -1i8..3,
        prop_oneof![Just(u64::MAX), 0u64..3],
        prop_oneof![
            Just(None),
            (0u32..4).prop_map(Some),
            any::<u32>().prop_map(Some)
        ],
    )
        .prop_map(|(n, ns, k, pool, snap, shard, gen, hash)| {
            let o = ObjectId::new(pool, n)
                .with_namespace(ns)
                .with_key(k)
                .with_snap(snap)
                .with_shard(shard)
                .with_generation(gen);
            match hash {
                Some(h) => o.with_hash(h),
                None => o,
            }
        })
}

fn cid() -> impl Strategy<Value = CollectionId> {
    prop_oneof![
        Just(CollectionId::Meta),
        (0u64..3, 0u32..3).prop_map(|(p, s)| CollectionId::pg(p, s)),
        (0u64..3, 0u32..3, prop::option::of(0u8..4)).prop_map(|(p, s, sh)| {
            CollectionId::Temp(PgId {
                pool: p,
                seed: s,
                shard: sh,
            })
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn object_key_order_is_ceph_order(a in oid(), b in oid()) {
        let (ka, kb) = (object_key(&a), object_key(&b));
        prop_assert_eq!(a.cmp(&b), ka.cmp(&kb), "{:?} vs {:?}", a, b);
    }

    #[test]
    fn object_keys_round_trip(a in oid(), tail in prop::collection::vec(any::<u8>(), 0..4)) {
        let mut k = object_key(&a);
        let n = k.len();
        k.extend(tail);
        let (d, used) = decode_object_key(&k).unwrap();
        prop_assert_eq!(d, a);
        prop_assert_eq!(used, n);
    }

    #[test]
    fn collection_key_order_and_round_trip(a in cid(), b in cid()) {
        prop_assert_eq!(a.cmp(&b), collection_key(&a).cmp(&collection_key(&b)));
        prop_assert_eq!(decode_collection_key(&collection_key(&a)).unwrap(), a);
    }

    #[test]
    fn arbitrary_bytes_never_panic(b in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = decode_object_key(&b);
        let _ = decode_collection_key(&b);
    }
}
