//! Ceph's object hash against values taken from Ceph 16.2 itself.

use ostore_os::hash::object_hash;
use serde_json::Value;

#[test]
fn rjenkins_matches_ceph() {
    let text = include_str!("data/ceph-hash-vectors.json");
    let v: Value = serde_json::from_str(text).unwrap();
    let vectors = v.as_array().unwrap();
    assert!(vectors.len() >= 40);
    for e in vectors {
        let name = e["name"].as_str().unwrap();
        let ns = e.get("nspace").and_then(Value::as_str).unwrap_or("");
        let key = e.get("key").and_then(Value::as_str).unwrap_or("");
        let want = e["hash"].as_u64().unwrap() as u32;
        assert_eq!(
            object_hash(ns, key, name),
            want,
            "name={name:?} ns={ns:?} key={key:?}"
        );
    }
}
