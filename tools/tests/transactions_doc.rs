//! Keeps docs/TRANSACTIONS.md honest: every JSON example in it must parse, and applied
//! in order to a fresh store through `os-tool apply`, each must have the outcome its
//! fence announces (`json`: applies; `json rejected=ERRNO`; `json invalid=ERRNO`;
//! `json object` / `json bytes`: parse as an object id / byte string).

mod common;

use std::collections::BTreeSet;

use common::{assert_fails, files, ok, run, state, store};
use ostore_os::json::{bytes_from_json, object_from_json, transactions_from_str};
use ostore_os::{CollectionId, OpCode};

const DOC: &str = include_str!("../../docs/TRANSACTIONS.md");

#[derive(Debug)]
struct Example {
    line: usize,
    info: String,
    body: String,
}

fn examples() -> Vec<Example> {
    let mut out = Vec::new();
    let mut cur: Option<Example> = None;
    for (i, l) in DOC.lines().enumerate() {
        match (&mut cur, l.strip_prefix("```")) {
            (None, Some(info)) if info.starts_with("json") => {
                cur = Some(Example {
                    line: i + 1,
                    info: info.trim().to_string(),
                    body: String::new(),
                })
            }
            (Some(_), Some("")) => out.push(cur.take().expect("open block")),
            (Some(e), _) => {
                e.body.push_str(l);
                e.body.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(cur.is_none(), "unterminated code block in TRANSACTIONS.md");
    out
}

#[test]
fn every_example_has_its_announced_outcome() {
    let exs = examples();
    assert!(exs.len() > 40, "found only {} examples", exs.len());
    let (_t, dir) = store();
    let mut applied_ops = BTreeSet::new();
    for ex in &exs {
        let what = format!("TRANSACTIONS.md:{} ({})", ex.line, ex.info);
        match ex.info.as_str() {
            "json object" => {
                let v: serde_json::Value = serde_json::from_str(&ex.body).expect(&what);
                object_from_json(&v, Some(&CollectionId::pg(1, 0))).expect(&what);
            }
            "json bytes" => {
                let v: serde_json::Value = serde_json::from_str(&ex.body).expect(&what);
                bytes_from_json(&v, "example").expect(&what);
            }
            "json" => {
                let txns = transactions_from_str(&ex.body)
                    .unwrap_or_else(|e| panic!("{what}: does not parse: {e}"));
                for t in &txns {
                    applied_ops.extend(t.ops().iter().map(|o| o.code()));
                }
                let r = run(
                    &["--data-path", dir.to_str().unwrap(), "apply", "-"],
                    Some(ex.body.as_bytes()),
                );
                assert_eq!(r.code, 0, "{what}: apply failed: {}", r.stderr);
            }
            info => {
                let (kind, name) = info
                    .strip_prefix("json ")
                    .and_then(|s| s.split_once('='))
                    .unwrap_or_else(|| panic!("{what}: unknown fence"));
                match kind {
                    "invalid" => {
                        let e = transactions_from_str(&ex.body)
                            .expect_err(&format!("{what}: parsed but should not"));
                        assert_eq!(e.kind().errno_name(), name, "{what}: {e}");
                    }
                    "rejected" => {
                        transactions_from_str(&ex.body)
                            .unwrap_or_else(|e| panic!("{what}: does not parse: {e}"));
                    }
                    _ => panic!("{what}: unknown fence"),
                }
                let before = (state(&dir), files(&dir));
                let r = run(
                    &["--data-path", dir.to_str().unwrap(), "apply", "-"],
                    Some(ex.body.as_bytes()),
                );
                assert_fails(&r, name, "", &what);
                assert_eq!(
                    (state(&dir), files(&dir)),
                    before,
                    "{what}: changed the store"
                );
            }
        }
    }
    let missing: Vec<&str> = OpCode::ALL
        .iter()
        .filter(|c| !applied_ops.contains(c))
        .map(|c| c.name())
        .collect();
    assert!(
        missing.is_empty(),
        "ops without an applied example: {missing:?}"
    );

    // The narrative the examples tell, checked at its end.
    let cs = ok(&dir, &["--format", "json", "list-collections"]).json();
    assert_eq!(cs, serde_json::json!(["1.0_head"]));
    let read = |o: &str| ok(&dir, &["read", "--collection", "1.0_head", o]).stdout;
    assert_eq!(read("rbd_data.1"), b"hello\0\0world");
    let mut two = vec![0u8; 105];
    two[..5].copy_from_slice(b"hello");
    two[100..].copy_from_slice(b"world");
    assert_eq!(read("rbd_data.2"), two);
    let omap = ok(&dir, &["omap", "--collection", "1.0_head", "rbd_data.1"]).json();
    assert_eq!(
        omap,
        serde_json::json!({"header": "v2", "keys": {"a": "1", "d": "4"}})
    );
    let attrs = ok(
        &dir,
        &["getattrs", "--collection", "1.0_head", "rbd_data.1"],
    )
    .json();
    assert_eq!(
        attrs,
        serde_json::json!({"_": "object_info", "snapset": {"hex": "0aff"}, "user.owner": "alice"})
    );
    let names: BTreeSet<String> = ok(&dir, &["list"])
        .out()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v[1]["oid"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(
        names,
        ["rbd_data.1", "rbd_data.2"]
            .map(String::from)
            .into_iter()
            .collect()
    );
}

#[test]
fn op_headings_name_the_op_and_its_ceph_code() {
    let mut seen = BTreeSet::new();
    for l in DOC.lines() {
        let Some(h) = l.strip_prefix("### ") else {
            continue;
        };
        let Some((name, code)) = h.split_once(" (") else {
            continue;
        };
        let Ok(code) = code.trim_end_matches(')').parse::<u32>() else {
            continue;
        };
        let op = OpCode::from_name(name).unwrap_or_else(|| panic!("heading {h:?}: no such op"));
        assert_eq!(op as u32, code, "heading {h:?}");
        seen.insert(op);
    }
    assert_eq!(seen.len(), OpCode::ALL.len(), "one heading per op");
}
