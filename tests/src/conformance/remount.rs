//! What survives umount + mount.

use ostore_os::{CollectionId, Snap};

use super::{coll, oid, pattern, txn};
use crate::harness::{StoreFactory, TestStore};

/// Several collections and objects with every kind of content, including holes,
/// empty objects, empty collections, clones and non-default bits.
fn build(s: &TestStore<'_>) {
    let (c, d, e) = (coll(), CollectionId::pg(1, 1), CollectionId::Meta);
    s.mkcoll(&c, 0);
    s.mkcoll(&d, 3);
    s.mkcoll(&e, 0);
    s.mkcoll(&CollectionId::temp(1, 0), 0);
    let mut t = txn();
    t.collection_set_bits(&c, 5)
        .write(&c, &oid("sparse"), 0, pattern(100, 1))
        .write(&c, &oid("sparse"), 1 << 20, pattern(100, 2))
        .touch(&c, &oid("empty"))
        .setattr(&c, &oid("empty"), "only_attr", b"".to_vec())
        .write(&c, &oid("full"), 0, pattern(70_000, 3))
        .setattr(&c, &oid("full"), "a", b"1".to_vec())
        .setattr(&c, &oid("full"), "b", vec![0xff; 5000])
        .omap_setheader(&c, &oid("full"), b"header".to_vec())
        .omap_setkeys(
            &c,
            &oid("full"),
            (0..200u32)
                .map(|i| (i.to_be_bytes().to_vec(), pattern(i as usize % 40, i as u8)))
                .collect(),
        )
        .clone_obj(&c, &oid("full"), &oid("full_clone"))
        .write(&c, &oid("full_clone"), 5, b"diverged".to_vec())
        .write(&d, &oid("in_d").with_snap(Snap(4)), 0, b"snap".to_vec())
        .write(&e, &oid("meta_obj").with_namespace("ns"), 0, b"m".to_vec());
    s.apply_ok(t);
}

pub fn remount_preserves_everything(f: &dyn StoreFactory) {
    let mut s = TestStore::new(f);
    build(&s);
    let before = s.capture();
    assert_eq!(before.len(), 4);
    s.remount();
    assert_eq!(s.capture(), before);
    assert_eq!(s.size(&coll(), &oid("sparse")), (1 << 20) + 100);
    assert_eq!(s.store().collection_bits(&s.ch(&coll())).unwrap(), 5);
}

pub fn remount_keeps_removals(f: &dyn StoreFactory) {
    let mut s = TestStore::new(f);
    build(&s);
    let c = coll();
    let mut t = txn();
    t.remove(&c, &oid("sparse"))
        .rmattr(&c, &oid("full"), "a")
        .omap_rmkeyrange(
            &c,
            &oid("full"),
            10u32.to_be_bytes().to_vec(),
            150u32.to_be_bytes().to_vec(),
        )
        .truncate(&c, &oid("full_clone"), 3)
        .remove(&CollectionId::pg(1, 1), &oid("in_d").with_snap(Snap(4)))
        .remove_collection(&CollectionId::pg(1, 1))
        .remove_collection(&CollectionId::temp(1, 0));
    s.apply_ok(t);
    let before = s.capture();
    assert_eq!(before.len(), 2);
    s.remount();
    assert_eq!(s.capture(), before);
    assert!(!s.exists(&c, &oid("sparse")));
}

pub fn remount_twice_with_writes_between(f: &dyn StoreFactory) {
    let mut s = TestStore::new(f);
    build(&s);
    s.remount();
    let c = coll();
    let mut t = txn();
    t.write(
        &c,
        &oid("after"),
        0,
        b"written after the first remount".to_vec(),
    )
    .omap_setkeys(
        &c,
        &oid("full"),
        [(b"late".to_vec(), b"key".to_vec())].into(),
    )
    .collection_set_bits(&c, 6);
    s.apply_ok(t);
    let before = s.capture();
    s.remount();
    assert_eq!(s.capture(), before);
    s.remount();
    assert_eq!(s.capture(), before);
    assert_eq!(
        s.read_all(&c, &oid("after")),
        b"written after the first remount"
    );
}
