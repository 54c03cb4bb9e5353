//! Property tests: every transaction round-trips through the binary and JSON forms,
//! and arbitrary bytes never make the decoder panic.

use std::collections::{BTreeMap, BTreeSet};

use ostore_os::json::{transaction_from_json, transaction_to_json};
use ostore_os::{CollectionId, ObjectId, Op, Snap, Transaction};
use proptest::prelude::*;

fn cid() -> impl Strategy<Value = CollectionId> {
    prop_oneof![
        Just(CollectionId::Meta),
        (0u64..1000, any::<u32>()).prop_map(|(p, s)| CollectionId::pg(p, s)),
        (0u64..1000, any::<u32>(), 0u8..128).prop_map(|(p, s, sh)| {
            let mut pg = ostore_os::PgId::new(p, s);
            pg.shard = Some(sh);
            CollectionId::Temp(pg)
        }),
    ]
}

fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_./\u{1}-\u{1f}é~]{1,24}"
}

fn oid() -> impl Strategy<Value = ObjectId> {
    (
        name(),
        "[a-z]{0,4}",
        "[a-z]{0,4}",
        any::<i64>(),
        prop_oneof![
            Just(Snap::HEAD),
            Just(Snap::SNAPDIR),
            any::<u32>().prop_map(|s| Snap(u64::from(s)))
        ],
        -1i8..5,
        any::<u64>(),
    )
        .prop_map(|(n, ns, k, pool, snap, shard, gen)| {
            ObjectId::new(pool, n)
                .with_namespace(ns)
                .with_key(k)
                .with_snap(snap)
                .with_shard(shard)
                .with_generation(gen)
        })
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..64)
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 1..16)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        Just(Op::Nop),
        (cid(), oid()).prop_map(|(cid, oid)| Op::Touch { cid, oid }),
        (cid(), oid()).prop_map(|(cid, oid)| Op::Create { cid, oid }),
        (cid(), oid(), 0u64..1 << 20, bytes(), any::<u32>()).prop_map(
            |(cid, oid, off, data, fadvise)| Op::Write {
                cid,
                oid,
                off,
                data,
                fadvise
            }
        ),
        (cid(), oid(), 0u64..1 << 20, 0u64..1 << 20).prop_map(|(cid, oid, off, len)| Op::Zero {
            cid,
            oid,
            off,
            len
        }),
        (cid(), oid(), 0u64..1 << 20).prop_map(|(cid, oid, size)| Op::Truncate { cid, oid, size }),
        (cid(), oid()).prop_map(|(cid, oid)| Op::Remove { cid, oid }),
        (cid(), oid(), "[a-z_]{1,8}", bytes()).prop_map(|(cid, oid, name, value)| Op::SetAttr {
            cid,
            oid,
            name,
            value
        }),
        (
            cid(),
            oid(),
            prop::collection::btree_map("[a-z_]{1,8}", bytes(), 0..4)
        )
            .prop_map(|(cid, oid, attrs)| Op::SetAttrs { cid, oid, attrs }),
        (cid(), oid(), "[a-z_]{1,8}").prop_map(|(cid, oid, name)| Op::RmAttr { cid, oid, name }),
        (cid(), oid()).prop_map(|(cid, oid)| Op::RmAttrs { cid, oid }),
        (cid(), oid(), oid())
            .prop_filter("distinct", |(_, a, b)| a != b)
            .prop_map(|(cid, src, dst)| Op::Clone { cid, src, dst }),
        (cid(), oid(), oid(), 0u64..1 << 20, 0u64..1 << 20).prop_map(
            |(cid, src, dst, off, len)| Op::CloneRange {
                cid,
                src,
                dst,
                off,
                len
            }
        ),
        (
            cid(),
            oid(),
            oid(),
            0u64..1 << 20,
            0u64..1 << 20,
            0u64..1 << 20
        )
            .prop_map(|(cid, src, dst, src_off, len, dst_off)| Op::CloneRange2 {
                cid,
                src,
                dst,
                src_off,
                len,
                dst_off
            }),
        (cid(), 0u32..=32).prop_map(|(cid, bits)| Op::MkColl { cid, bits }),
        cid().prop_map(|cid| Op::RmColl { cid }),
        (cid(), oid()).prop_map(|(cid, oid)| Op::OmapClear { cid, oid }),
        (
            cid(),
            oid(),
            prop::collection::btree_map(key(), bytes(), 0..4)
        )
            .prop_map(|(cid, oid, keys): (_, _, BTreeMap<_, _>)| Op::OmapSetKeys {
                cid,
                oid,
                keys
            }),
        (cid(), oid(), prop::collection::btree_set(key(), 0..4))
            .prop_map(|(cid, oid, keys): (_, _, BTreeSet<_>)| Op::OmapRmKeys { cid, oid, keys }),
        (cid(), oid(), bytes()).prop_map(|(cid, oid, header)| Op::OmapSetHeader {
            cid,
            oid,
            header
        }),
        (cid(), oid(), bytes(), bytes()).prop_map(|(cid, oid, first, last)| Op::OmapRmKeyRange {
            cid,
            oid,
            first,
            last
        }),
        (cid(), cid(), 1u32..8)
            .prop_filter("distinct", |(a, b, _)| a != b)
            .prop_map(|(cid, dest, bits)| Op::SplitCollection {
                cid,
                bits,
                rem: 0,
                dest
            }),
        (cid(), cid(), 1u32..8)
            .prop_filter("distinct", |(a, b, _)| a != b)
            .prop_map(|(cid, dest, bits)| Op::SplitCollection2 {
                cid,
                bits,
                rem: (1 << bits) - 1,
                dest
            }),
        (cid(), cid(), 0u32..8)
            .prop_filter("distinct", |(a, b, _)| a != b)
            .prop_map(|(cid, dest, bits)| Op::MergeCollection { cid, dest, bits }),
        (cid(), oid(), cid(), oid()).prop_map(|(old_cid, old_oid, new_cid, new_oid)| {
            Op::CollMoveRename {
                old_cid,
                old_oid,
                new_cid,
                new_oid,
            }
        }),
        (cid(), oid(), oid()).prop_map(|(cid, old_oid, new_oid)| Op::TryRename {
            cid,
            old_oid,
            new_oid
        }),
        (cid(), oid(), any::<u64>(), any::<u64>(), any::<u32>()).prop_map(
            |(cid, oid, a, b, flags)| Op::SetAllocHint {
                cid,
                oid,
                expected_object_size: a,
                expected_write_size: b,
                flags
            }
        ),
        (cid(), any::<u32>(), bytes()).prop_map(|(cid, hint_type, hint)| Op::CollHint {
            cid,
            hint_type,
            hint
        }),
        (cid(), 0u32..=32).prop_map(|(cid, bits)| Op::CollSetBits { cid, bits }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn binary_round_trip(ops in prop::collection::vec(op(), 0..12)) {
        let t = Transaction::from_ops(ops);
        let b = t.encode().unwrap();
        prop_assert_eq!(Transaction::decode(&b).unwrap(), t);
    }

    #[test]
    fn json_round_trip(ops in prop::collection::vec(op(), 0..12)) {
        let t = Transaction::from_ops(ops);
        prop_assert_eq!(transaction_from_json(&transaction_to_json(&t)).unwrap(), t);
    }

    #[test]
    fn decoder_never_panics_on_arbitrary_bytes(b in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = Transaction::decode(&b);
    }

    #[test]
    fn any_corrupted_byte_is_detected(ops in prop::collection::vec(op(), 1..6), at in any::<prop::sample::Index>(), x in 1u8..=255) {
        // One corrupted byte is a burst shorter than 32 bits, which CRC32C always detects.
        let mut b = Transaction::from_ops(ops).encode().unwrap();
        let i = at.index(b.len());
        b[i] ^= x;
        prop_assert!(Transaction::decode(&b).is_err());
    }

    #[test]
    fn object_order_is_cephs(a in oid(), b in oid()) {
        let ka = (a.shard, a.pool, a.hash.reverse_bits(), a.namespace.clone(), a.effective_key().to_string(), a.name.clone(), a.snap, a.generation);
        let kb = (b.shard, b.pool, b.hash.reverse_bits(), b.namespace.clone(), b.effective_key().to_string(), b.name.clone(), b.snap, b.generation);
        if ka != kb {
            prop_assert_eq!(a.cmp(&b), ka.cmp(&kb));
        }
    }
}
