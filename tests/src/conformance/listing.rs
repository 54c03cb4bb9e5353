//! collection_list: order, ranges, pagination.

use ostore_os::{ObjectId, Snap, NO_GEN, NO_SHARD};

use super::{coll, oid, pattern, setup, txn};
use crate::harness::{StoreFactory, TestStore};

/// An id with every ordering field explicit (hash included, so the order below is
/// fixed by hand, not by the hash function or by `Ord`).
#[allow(clippy::too_many_arguments)]
fn id(
    shard: i8,
    pool: i64,
    hash: u32,
    ns: &str,
    key: &str,
    name: &str,
    snap: Snap,
    generation: u64,
) -> ObjectId {
    ObjectId {
        max: false,
        shard,
        pool,
        hash,
        namespace: ns.into(),
        key: key.into(),
        name: name.into(),
        snap,
        generation,
    }
}

fn head(pool: i64, hash: u32, name: &str) -> ObjectId {
    id(NO_SHARD, pool, hash, "", "", name, Snap::HEAD, NO_GEN)
}

/// Creates every object (in a scrambled order, batched) with data naming it.
fn create_all(s: &TestStore<'_>, objs: &[ObjectId]) {
    let mut order: Vec<usize> = (0..objs.len()).collect();
    let mut rng = crate::rng::Rng::new(objs.len() as u64);
    rng.shuffle(&mut order);
    for chunk in order.chunks(40) {
        let mut t = txn();
        for &i in chunk {
            t.write(&coll(), &objs[i], 0, format!("{i}").into_bytes());
        }
        s.apply_ok(t);
    }
}

fn list_range(
    s: &TestStore<'_>,
    start: &ObjectId,
    end: &ObjectId,
    max: usize,
) -> (Vec<ObjectId>, ObjectId) {
    s.store()
        .collection_list(&s.ch(&coll()), start, end, max)
        .unwrap()
}

/// Everything in [start, end), page by page, following `next`.
fn list_paged(s: &TestStore<'_>, start: &ObjectId, end: &ObjectId, page: usize) -> Vec<ObjectId> {
    let mut out = Vec::new();
    let mut cur = start.clone();
    loop {
        let (objs, next) = list_range(s, &cur, end, page);
        assert!(objs.len() <= page);
        out.extend(objs);
        if next.is_max() {
            return out;
        }
        assert!(next < *end, "next {next} is past the end bound {end}");
        cur = next;
    }
}

fn sorted_objects(n: usize) -> Vec<ObjectId> {
    let mut v: Vec<ObjectId> = (0..n).map(|i| oid(&format!("list_{i}"))).collect();
    v.sort();
    v
}

pub fn simple_list_test(f: &dyn StoreFactory) {
    let s = setup(f);
    let all = sorted_objects(200);
    create_all(&s, &all);
    for page in [1, 2, 5, 50, 199, 200, 201, 1000] {
        assert_eq!(s.list(&coll(), page), all, "page size {page}");
    }
}

pub fn list_end_test(f: &dyn StoreFactory) {
    let s = setup(f);
    let all = sorted_objects(50);
    create_all(&s, &all);
    let min = ObjectId::min();
    // The end bound is exclusive, and an exhausted range reports MAX.
    let (objs, next) = list_range(&s, &min, &all[20], 100);
    assert_eq!(objs, all[..20]);
    assert!(next.is_max(), "next after an exhausted range: {next}");
    let (objs, next) = list_range(&s, &min, &all[20], 20);
    assert_eq!(objs, all[..20]);
    assert!(next.is_max());
    let (objs, next) = list_range(&s, &min, &all[20], 10);
    assert_eq!(objs, all[..10]);
    assert_eq!(next, all[10]);
    // Start == end is empty.
    let (objs, next) = list_range(&s, &all[5], &all[5], 10);
    assert!(objs.is_empty());
    assert!(next.is_max());
}

pub fn collection_list_start_end(f: &dyn StoreFactory) {
    let s = setup(f);
    let all = sorted_objects(40);
    create_all(&s, &all);
    let max = ObjectId::max_sentinel();
    for i in (0..all.len()).step_by(7) {
        for j in (i..all.len()).step_by(9) {
            for page in [1, 4, 100] {
                assert_eq!(
                    list_paged(&s, &all[i], &all[j], page),
                    all[i..j],
                    "[{i}, {j}) pages of {page}"
                );
            }
        }
        assert_eq!(list_paged(&s, &all[i], &max, 3), all[i..]);
    }
    // Bounds that are not objects: the hash-range seeks Ceph's PG listing uses.
    let mid = &all[17];
    let start = ObjectId::min_for_hash(mid.pool, mid.hash);
    let got = list_paged(&s, &start, &max, 5);
    assert_eq!(got, all[17..], "seek to the start of a hash");
    let end = ObjectId::min_for_hash(all[30].pool, all[30].hash);
    assert_eq!(list_paged(&s, &start, &end, 5), all[17..30]);
}

pub fn list_next_is_first_unreturned(f: &dyn StoreFactory) {
    let s = setup(f);
    let (min, max) = (ObjectId::min(), ObjectId::max_sentinel());
    let (objs, next) = list_range(&s, &min, &max, 10);
    assert!(objs.is_empty() && next.is_max(), "empty collection");
    let all = sorted_objects(9);
    create_all(&s, &all);
    let (objs, next) = list_range(&s, &min, &max, 3);
    assert_eq!(objs, all[..3]);
    assert_eq!(next, all[3]);
    let (objs, next) = list_range(&s, &next, &max, 3);
    assert_eq!(objs, all[3..6]);
    assert_eq!(next, all[6]);
    // Exactly the remaining count: nothing is left, so MAX.
    let (objs, next) = list_range(&s, &next, &max, 3);
    assert_eq!(objs, all[6..]);
    assert!(next.is_max(), "next after the last page: {next}");
    // Starting past every object.
    let after = ObjectId {
        name: format!("{}~", all[8].name),
        ..all[8].clone()
    };
    let (objs, next) = list_range(&s, &after, &max, 3);
    assert!(objs.is_empty() && next.is_max());
}

pub fn multipool_list_test(f: &dyn StoreFactory) {
    let s = setup(f);
    let mut objs = Vec::new();
    for i in 0..20 {
        objs.push(ObjectId::new(1, format!("head_{i}")));
        objs.push(ObjectId::new(-3, format!("temp_{i}")));
        objs.push(ObjectId::new(i64::MIN + 1, format!("low_{i}")));
    }
    create_all(&s, &objs);
    let got = s.list(&coll(), 6);
    assert_eq!(got.len(), 60);
    // Signed pool order first, whatever the hashes.
    let pools: Vec<i64> = got.iter().map(|o| o.pool).collect();
    let mut expect_pools = vec![i64::MIN + 1; 20];
    expect_pools.extend([-3; 20]);
    expect_pools.extend([1; 20]);
    assert_eq!(pools, expect_pools);
    let mut sorted = objs.clone();
    sorted.sort();
    assert_eq!(got, sorted);
}

pub fn sort_order_is_cephs(f: &dyn StoreFactory) {
    let s = setup(f);
    let h = Snap::HEAD;
    // Ascending, as Ceph sorts ghobject_t: shard, pool, bit-reversed hash, namespace,
    // key-or-name, name, snap, generation.
    let expect = vec![
        head(-3, 0xffff_ffff, "p"),
        head(1, 0x8000_0000, "z"), // reversed: 0x00000001
        head(1, 0x0000_0002, "a"), // reversed: 0x40000000
        head(1, 0x0000_0001, "b"), // reversed: 0x80000000
        id(NO_SHARD, 1, 1, "", "", "c", Snap(1), NO_GEN),
        id(NO_SHARD, 1, 1, "", "", "c", Snap(5), NO_GEN),
        id(NO_SHARD, 1, 1, "", "", "c", h, 3),
        id(NO_SHARD, 1, 1, "", "", "c", h, NO_GEN),
        id(NO_SHARD, 1, 1, "", "", "c", Snap::SNAPDIR, NO_GEN),
        head(1, 1, "d"),
        id(NO_SHARD, 1, 1, "", "k", "a", h, NO_GEN), // key "k" sorts as "k"
        id(NO_SHARD, 1, 1, "", "k", "b", h, NO_GEN),
        head(1, 1, "m"),
        id(NO_SHARD, 1, 1, "ns1", "", "a", h, NO_GEN),
        id(NO_SHARD, 1, 1, "ns2", "", "a", h, NO_GEN),
        head(1, 0x0000_0003, "a"), // reversed: 0xc0000000
        head(2, 0, "q"),
        id(0, -1, 0xffff_ffff, "", "", "s0", h, NO_GEN),
        id(0, 5, 0, "", "", "s0b", h, NO_GEN),
        id(1, -5, 0, "", "", "s1", h, NO_GEN),
    ];
    create_all(&s, &expect);
    assert_eq!(s.list(&coll(), 4), expect);
    assert_eq!(s.list(&coll(), 100), expect);
}

pub fn hash_collision_test(f: &dyn StoreFactory) {
    let mut s = setup(f);
    let hash = 0x5a5a_5a5a;
    let mut objs = Vec::new();
    for i in 0..240 {
        let ns = ["", "n1", "n2"][i % 3];
        let key = ["", "kx"][(i / 3) % 2];
        let snap = [Snap(1), Snap(0x10), Snap::HEAD][(i / 6) % 3];
        objs.push(id(
            NO_SHARD,
            1,
            hash,
            ns,
            key,
            &format!("obj_{}", i / 18),
            snap,
            NO_GEN,
        ));
    }
    // Neighbours on either side of the colliding hash.
    objs.push(head(1, hash ^ 0x8000_0000, "neighbour_hi"));
    objs.push(head(1, hash ^ 0x1, "neighbour_lo"));
    objs.sort();
    objs.dedup();
    create_all(&s, &objs);
    for page in [1, 3, 7, 50, 1000] {
        assert_eq!(s.list(&coll(), page), objs, "pages of {page}");
    }
    // Resuming from any listed object includes it.
    for i in [0, 1, 100, objs.len() - 1] {
        let got = list_paged(&s, &objs[i], &ObjectId::max_sentinel(), 11);
        assert_eq!(got, objs[i..]);
    }
    s.remount();
    assert_eq!(s.list(&coll(), 13), objs);
    for (i, o) in objs.iter().enumerate().step_by(17) {
        assert!(s.exists(&coll(), o), "object {i} {o}");
    }
}

pub fn scrub_listing_with_shards_and_generations(f: &dyn StoreFactory) {
    let s = setup(f);
    let mut objs = Vec::new();
    for i in 0..10 {
        let name = format!("scrub_{i}");
        let base = ObjectId::new(1, name.clone());
        objs.push(base.clone());
        objs.push(base.clone().with_shard(0).with_generation(1));
        objs.push(base.clone().with_shard(0).with_generation(2));
        objs.push(base.clone().with_shard(0));
        objs.push(base.clone().with_shard(2).with_generation(7));
        objs.push(ObjectId::new(-3, format!("temp_{i}")).with_shard(0));
        objs.push(base.with_snap(Snap(3)));
    }
    create_all(&s, &objs);
    let got = s.list(&coll(), 9);
    let mut sorted = objs.clone();
    sorted.sort();
    assert_eq!(got, sorted);
    // Shards partition the listing.
    let shards: Vec<i8> = got.iter().map(|o| o.shard).collect();
    let mut expect_shards = vec![NO_SHARD; 20];
    expect_shards.extend([0; 40]);
    expect_shards.extend([2; 10]);
    assert_eq!(shards, expect_shards);
    // Each id's data is its own.
    for (i, o) in objs.iter().enumerate() {
        assert_eq!(s.read_all(&coll(), o), format!("{i}").into_bytes(), "{o}");
    }
}

pub fn many_small_objects(f: &dyn StoreFactory) {
    let mut s = setup(f);
    let n = 600;
    let objs: Vec<ObjectId> = (0..n).map(|i| oid(&format!("small_{i:04}"))).collect();
    for chunk in (0..n).collect::<Vec<_>>().chunks(30) {
        let mut t = txn();
        for &i in chunk {
            t.write(&coll(), &objs[i], 0, pattern(1 + i % 97, i as u8));
        }
        s.apply_ok(t);
    }
    let mut sorted = objs.clone();
    sorted.sort();
    assert_eq!(s.list(&coll(), 64), sorted);
    s.remount();
    assert_eq!(s.list(&coll(), 100), sorted);
    for (i, o) in objs.iter().enumerate() {
        assert_eq!(s.read_all(&coll(), o), pattern(1 + i % 97, i as u8));
    }
}
