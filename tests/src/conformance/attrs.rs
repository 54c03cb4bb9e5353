//! Extended attributes.

use std::collections::BTreeMap;

use ostore_os::limits::{MAX_ATTR_NAME_LEN, MAX_ATTR_VALUE_LEN};
use ostore_os::ErrorKind;

use super::{coll, oid, setup, txn};
use crate::harness::StoreFactory;
use crate::state::assert_kind;

fn attrs(pairs: &[(&str, &[u8])]) -> BTreeMap<String, Vec<u8>> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_vec()))
        .collect()
}

pub fn simple_attr_test(f: &dyn StoreFactory) {
    let s = setup(f);
    let (c, o) = (coll(), oid("attr object 1"));
    let mut t = txn();
    t.touch(&c, &o)
        .setattr(&c, &o, "foo", b"abc".to_vec())
        .setattr(&c, &o, "bar", b"def".to_vec())
        .setattr(&c, &o, "empty", Vec::new());
    s.apply_ok(t);
    let ch = s.ch(&c);
    let st = s.store();
    assert_eq!(st.getattr(&ch, &o, "foo").unwrap(), b"abc");
    assert_eq!(st.getattr(&ch, &o, "bar").unwrap(), b"def");
    assert_eq!(st.getattr(&ch, &o, "empty").unwrap(), b"");
    assert_eq!(
        st.getattrs(&ch, &o).unwrap(),
        attrs(&[("bar", b"def"), ("empty", b""), ("foo", b"abc")])
    );
    let mut t = txn();
    t.setattr(&c, &o, "foo", b"overwritten".to_vec());
    s.apply_ok(t);
    assert_eq!(st.getattr(&ch, &o, "foo").unwrap(), b"overwritten");
    // Attrs and data are independent.
    assert_eq!(s.size(&c, &o), 0);
}

pub fn xattr_test(f: &dyn StoreFactory) {
    let s = setup(f);
    let c = coll();
    let (o, missing) = (oid("xattr"), oid("nope"));
    let big = vec![0xabu8; 10_000];
    let mut t = txn();
    t.touch(&c, &o)
        .setattr(&c, &o, "attr1", big.clone())
        .setattr(&c, &o, "attr2", b"two".to_vec())
        .setattr(&c, &o, "attr3", b"three".to_vec())
        .setattr(&c, &o, "attr4", b"four".to_vec());
    s.apply_ok(t);
    let ch = s.ch(&c);
    let st = s.store();
    assert_eq!(st.getattr(&ch, &o, "attr1").unwrap(), big);
    assert_kind(
        st.getattr(&ch, &o, "attr9"),
        ErrorKind::NoData,
        "missing attr",
    );
    assert_kind(
        st.getattr(&ch, &missing, "attr1"),
        ErrorKind::NotFound,
        "missing obj",
    );

    let mut t = txn();
    t.rmattr(&c, &o, "attr2");
    s.apply_ok(t);
    assert_kind(
        st.getattr(&ch, &o, "attr2"),
        ErrorKind::NoData,
        "removed attr",
    );
    assert_eq!(st.getattrs(&ch, &o).unwrap().len(), 3);

    // SETATTRS overwrites the names it carries and keeps the others.
    let mut t = txn();
    t.setattrs(
        &c,
        &o,
        attrs(&[("attr3", b"THREE"), ("attr5", b"five"), ("attr6", b"")]),
    );
    s.apply_ok(t);
    let mut expect = attrs(&[
        ("attr3", b"THREE"),
        ("attr4", b"four"),
        ("attr5", b"five"),
        ("attr6", b""),
    ]);
    expect.insert("attr1".into(), big);
    assert_eq!(st.getattrs(&ch, &o).unwrap(), expect);

    let mut t = txn();
    t.rmattrs(&c, &o);
    s.apply_ok(t);
    assert!(st.getattrs(&ch, &o).unwrap().is_empty());
    assert_kind(
        st.getattr(&ch, &o, "attr1"),
        ErrorKind::NoData,
        "after rmattrs",
    );
    assert!(s.exists(&c, &o), "rmattrs keeps the object");

    // setattr on a missing object is skipped, not an error, and creates nothing.
    let mut t = txn();
    t.setattr(&c, &missing, "a", b"1".to_vec())
        .setattrs(&c, &missing, attrs(&[("b", b"2")]))
        .rmattrs(&c, &missing);
    s.apply_ok(t);
    assert!(!s.exists(&c, &missing));
}

pub fn attr_limits_are_validated(f: &dyn StoreFactory) {
    let s = setup(f);
    let c = coll();
    let o = oid("limits");
    let name_at_limit = "n".repeat(MAX_ATTR_NAME_LEN);
    let mut t = txn();
    t.touch(&c, &o)
        .setattr(&c, &o, "max", vec![7u8; MAX_ATTR_VALUE_LEN])
        .setattr(&c, &o, &name_at_limit, b"v".to_vec());
    s.apply_ok(t);
    let ch = s.ch(&c);
    assert_eq!(
        s.store().getattr(&ch, &o, "max").unwrap(),
        vec![7u8; MAX_ATTR_VALUE_LEN]
    );
    assert_eq!(s.store().getattr(&ch, &o, &name_at_limit).unwrap(), b"v");
    let before = s.capture();

    let bad: Vec<(ostore_os::Transaction, ErrorKind)> = vec![
        {
            let mut t = txn();
            t.write(&c, &o, 0, b"not applied".to_vec()).setattr(
                &c,
                &o,
                "big",
                vec![0u8; MAX_ATTR_VALUE_LEN + 1],
            );
            (t, ErrorKind::TooBig)
        },
        {
            let mut t = txn();
            t.touch(&c, &oid("other"))
                .setattr(&c, &o, "", b"v".to_vec());
            (t, ErrorKind::InvalidArgument)
        },
        {
            let mut t = txn();
            t.setattr(&c, &o, &"n".repeat(MAX_ATTR_NAME_LEN + 1), b"v".to_vec());
            (t, ErrorKind::TooBig)
        },
        {
            let mut t = txn();
            t.rmattr(&c, &o, "");
            (t, ErrorKind::InvalidArgument)
        },
    ];
    for (i, (t, kind)) in bad.into_iter().enumerate() {
        assert_kind(
            s.store()
                .queue_transactions(&ch, vec![t], Default::default()),
            kind,
            &format!("invalid attr case {i}"),
        );
    }
    assert_eq!(s.capture(), before);
}
