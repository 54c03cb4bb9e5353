//! `os-tool` end to end: the built binary on scratch stores. Every failure case checks
//! the script-facing contract (one stderr line `os-tool: ERRNO: ...`, exit code = errno
//! value) and that the store afterwards mounts and shows exactly the state it had.

mod common;

use std::path::Path;

use common::{apply, assert_fails, errno, fails, files, ok, ok_in, run, state, store};
use serde_json::{json, Value};

const WORKLOAD: &str = r#"[
 {"ops": [
   {"op": "mkcoll", "cid": "1.0_head"},
   {"op": "write", "cid": "1.0_head", "oid": "alpha", "offset": 0, "data": "0123456789"},
   {"op": "setattr", "cid": "1.0_head", "oid": "alpha", "name": "_", "value": "oi"},
   {"op": "setattrs", "cid": "1.0_head", "oid": "alpha", "attrs": {"bin": {"hex": "00ff"}}},
   {"op": "omap_setheader", "cid": "1.0_head", "oid": "alpha", "header": "hdr"},
   {"op": "omap_setkeys", "cid": "1.0_head", "oid": "alpha", "keys": {"k1": "v1", "k2": {"hex": "ff"}}}
 ]},
 {"ops": [
   {"op": "touch", "cid": "1.0_head", "oid": "beta"},
   {"op": "touch", "cid": "1.0_head", "oid": {"oid": "gamma", "namespace": "ns"}},
   {"op": "write", "cid": "1.0_head", "oid": "delta", "offset": 4, "data": "x"},
   {"op": "mkcoll", "cid": "2.0_head"},
   {"op": "touch", "cid": "2.0_head", "oid": "epsilon"}
 ]}
]"#;

fn loaded() -> (tempfile::TempDir, std::path::PathBuf) {
    let (t, d) = store();
    let r = ok_in(&d, &["apply", "-"], Some(WORKLOAD.as_bytes()));
    assert_eq!(
        r.json(),
        json!({"transactions": 2, "ops": 11, "applied": true})
    );
    (t, d)
}

fn lines(dir: &Path, args: &[&str]) -> Vec<String> {
    ok(dir, args).out().lines().map(String::from).collect()
}

fn oid_of(line: &str) -> String {
    let v: Value = serde_json::from_str(line).unwrap();
    v[1]["oid"].as_str().unwrap().to_string()
}

#[test]
fn mkfs_then_info_and_mkfs_twice_is_eexist() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("s");
    let made = ok(&d, &["mkfs"]).json();
    assert_eq!(made["store_type"], "memstore");
    let info = ok(&d, &["info"]).json();
    for k in [
        "store_type",
        "fsid",
        "created",
        "created_utc",
        "options",
        "data_path",
    ] {
        assert_eq!(info[k], made[k], "info shows the {k} mkfs wrote");
    }
    assert_eq!(
        info["committed_seq"], 0,
        "a fresh store has committed nothing"
    );
    assert!(
        info["journal"]["volume_size"].as_u64().unwrap() > 0,
        "{info}"
    );
    assert_eq!(info["fsid"].as_str().unwrap().len(), 36);
    assert!(info["created"].as_u64().unwrap() > 1_600_000_000);
    assert!(info["created_utc"].as_str().unwrap().ends_with('Z'));
    // The ceph-objectstore-tool spelling and --type checking.
    assert_eq!(
        ok(&d, &["--op", "dump-super", "--type", "memstore"]).json(),
        info
    );
    let before = files(&d);
    fails(
        &d,
        &["mkfs"],
        None,
        "EEXIST",
        "already holds a memstore store",
    );
    assert_eq!(files(&d), before);
    assert_eq!(state(&d), "[]\n", "a fresh store has no collections");
}

#[test]
fn format_json_prints_one_line() {
    let (_t, d) = store();
    let r = ok(&d, &["--format", "json", "info"]);
    assert_eq!(r.out().lines().count(), 1);
    let r = ok(&d, &["info", "--format", "json-pretty"]);
    assert!(r.out().lines().count() > 3);
}

#[test]
fn workload_reads_back_through_every_command() {
    let (_t, d) = loaded();
    let cs = ok(&d, &["list-collections"]).json();
    assert_eq!(cs, json!(["1.0_head", "2.0_head"]));
    assert_eq!(ok(&d, &["--op", "list-pgs"]).json(), cs);

    let all = lines(&d, &["list"]);
    assert_eq!(all.len(), 5);
    // One compact JSON line each, ["cid", {object}], in collection then Ceph order.
    for l in &all {
        let v: Value = serde_json::from_str(l).unwrap();
        assert!(v[0].is_string() && v[1]["oid"].is_string(), "{l}");
        assert_eq!(v[1]["snapid"], -2);
        assert_eq!(v[1]["generation"], -1);
    }
    assert!(all[4].starts_with(r#"["2.0_head","#), "{}", all[4]);
    assert_eq!(oid_of(&all[4]), "epsilon");
    let in1 = lines(&d, &["list", "--collection", "1.0_head"]);
    assert_eq!(in1, all[..4]);
    let gamma = in1.iter().find(|l| oid_of(l) == "gamma").unwrap();
    let g: Value = serde_json::from_str(gamma).unwrap();
    assert_eq!(g[1]["namespace"], "ns");
    assert_eq!(g[1]["pool"], 1);

    let st = ok(&d, &["stat", "--collection", "1.0_head", "alpha"]).json();
    assert_eq!(st["size"], 10);
    assert_eq!(st["collection"], "1.0_head");
    assert_eq!(st["object"]["oid"], "alpha");
    let st = ok(&d, &["stat", "--collection", "1.0_head", "delta"]).json();
    assert_eq!(st["size"], 5);
    // The namespaced object needs its full id; a pasted list line is one.
    assert_eq!(ok(&d, &["stat", gamma]).json()["size"], 0);
    fails(
        &d,
        &["stat", "--collection", "1.0_head", "gamma"],
        None,
        "ENOENT",
        "gamma",
    );
    // A line as ceph-objectstore-tool itself prints it: pg id, duplicate "max", no
    // shard or generation.
    let ceph_line = r#"["1.0",{"oid":"alpha","key":"","snapid":-2,"hash":0,"max":0,"pool":1,"namespace":"","max":0}]"#;
    let ceph_line = ceph_line.replace("\"hash\":0", &format!("\"hash\":{}", st_hash(&d)));
    assert_eq!(ok(&d, &["stat", &ceph_line]).json()["size"], 10);
    let json_id = r#"{"oid": "gamma", "namespace": "ns"}"#;
    assert_eq!(
        ok(&d, &["stat", "--collection", "1.0_head", json_id]).json()["size"],
        0
    );

    let read = |args: &[&str]| {
        let mut a = vec!["read", "--collection", "1.0_head"];
        a.extend_from_slice(args);
        ok(&d, &a).stdout
    };
    assert_eq!(read(&["alpha"]), b"0123456789");
    assert_eq!(read(&["alpha", "--offset", "3", "--length", "4"]), b"3456");
    assert_eq!(read(&["alpha", "--offset", "8"]), b"89");
    assert_eq!(read(&["alpha", "--offset", "100"]), b"");
    assert_eq!(read(&["delta"]), b"\0\0\0\0x");
    // A pg id for --collection, and --pgid, as ceph-objectstore-tool takes them.
    assert_eq!(
        ok(&d, &["--op", "get-bytes", "--pgid", "1.0", "alpha"]).stdout,
        b"0123456789"
    );

    let ga = |args: &[&str]| {
        let mut a = vec!["getattr", "--collection", "1.0_head", "alpha"];
        a.extend_from_slice(args);
        ok(&d, &a)
    };
    assert_eq!(ga(&["_"]).json(), json!("oi"));
    assert_eq!(ga(&["bin"]).json(), json!({"hex": "00ff"}));
    assert_eq!(ga(&["bin", "--raw"]).stdout, [0x00, 0xff]);
    let attrs = ok(&d, &["getattrs", "--collection", "1.0_head", "alpha"]).json();
    assert_eq!(attrs, json!({"_": "oi", "bin": {"hex": "00ff"}}));
    assert_eq!(
        ok(&d, &["getattrs", "--collection", "1.0_head", "beta"]).json(),
        json!({})
    );

    let om = ok(&d, &["omap", "--collection", "1.0_head", "alpha"]).json();
    assert_eq!(
        om,
        json!({"header": "hdr", "keys": {"k1": "v1", "k2": {"hex": "ff"}}})
    );
    let om = ok(
        &d,
        &["omap", "--collection", "1.0_head", "alpha", "--key", "k2"],
    )
    .json();
    assert_eq!(om, json!({"header": "hdr", "keys": {"k2": {"hex": "ff"}}}));
    let om = ok(&d, &["omap", "--collection", "1.0_head", "beta"]).json();
    assert_eq!(om, json!({"header": "", "keys": {}}));
}

#[test]
fn list_paginates_with_start_after_end_and_max() {
    let (_t, d) = loaded();
    let all = lines(&d, &["list", "--collection", "1.0_head"]);
    assert_eq!(all.len(), 4);
    assert_eq!(
        lines(&d, &["list", "--collection", "1.0_head", "--max", "2"]),
        all[..2]
    );
    // --after the last line of a page gives the next page.
    let page2 = lines(
        &d,
        &[
            "list",
            "--collection",
            "1.0_head",
            "--max",
            "2",
            "--after",
            &all[1],
        ],
    );
    assert_eq!(page2, all[2..]);
    // --start is inclusive, --end exclusive, both Ceph's collection_list bounds.
    assert_eq!(
        lines(
            &d,
            &[
                "list",
                "--collection",
                "1.0_head",
                "--start",
                &all[1],
                "--end",
                &all[3]
            ]
        ),
        all[1..3]
    );
    assert_eq!(lines(&d, &["list", "--max", "0"]), Vec::<String>::new());
    // Without --collection, a pasted line resumes across collections.
    let every = lines(&d, &["list"]);
    assert_eq!(lines(&d, &["list", "--after", &every[3]]), every[4..]);
    assert_eq!(
        lines(&d, &["list", "--start", &every[2], "--max", "2"]),
        every[2..4]
    );
    // Pages of one walk the whole store.
    let mut walked = lines(&d, &["list", "--max", "1"]);
    loop {
        let next = lines(
            &d,
            &["list", "--max", "1", "--after", walked.last().unwrap()],
        );
        if next.is_empty() {
            break;
        }
        walked.extend(next);
    }
    assert_eq!(walked, every);
}

#[test]
fn op_alias_accepts_options_in_any_position() {
    let (_t, d) = loaded();
    let a = lines(&d, &["list", "--collection", "2.0_head"]);
    let dp = d.to_str().unwrap();
    let r = run(
        &[
            "--collection",
            "2.0_head",
            "--data-path",
            dp,
            "--op",
            "list",
        ],
        None,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.out().lines().map(String::from).collect::<Vec<_>>(), a);
    let r = run(
        &["--op=list", "--data-path", dp, "--collection", "2.0_head"],
        None,
    );
    assert_eq!(r.out().lines().map(String::from).collect::<Vec<_>>(), a);
}

#[test]
fn apply_reads_files_and_dry_run_changes_nothing() {
    let (t, d) = store();
    let f = t.path().join("w.json");
    std::fs::write(&f, WORKLOAD).unwrap();
    let dry = ok(&d, &["apply", "--dry-run", "--file", f.to_str().unwrap()]).json();
    assert_eq!(dry["applied"], false);
    assert_eq!(state(&d), "[]\n");
    ok(&d, &["apply", f.to_str().unwrap()]);
    let cs = ok(&d, &["list-collections"]).json();
    assert_eq!(cs, json!(["1.0_head", "2.0_head"]));
    // A bare array of ops is one transaction.
    apply(
        &d,
        r#"[{"op": "remove", "cid": "2.0_head", "oid": "epsilon"}, {"op": "rmcoll", "cid": "2.0_head"}]"#,
    );
    assert_eq!(ok(&d, &["list-collections"]).json(), json!(["1.0_head"]));
}

#[test]
fn tolerated_errors_apply_the_rest_of_the_transaction() {
    let (_t, d) = loaded();
    apply(
        &d,
        r#"{"ops": [
          {"op": "remove", "cid": "1.0_head", "oid": "nobody"},
          {"op": "rmattr", "cid": "1.0_head", "oid": "alpha", "name": "nothing"},
          {"op": "try_rename", "cid": "1.0_head", "old_oid": "nobody", "new_oid": "x"},
          {"op": "setattr", "cid": "1.0_head", "oid": "alpha", "name": "after", "value": "yes"}
        ]}"#,
    );
    let v = ok(
        &d,
        &["getattr", "--collection", "1.0_head", "alpha", "after"],
    )
    .json();
    assert_eq!(v, json!("yes"));
    fails(
        &d,
        &["stat", "--collection", "1.0_head", "x"],
        None,
        "ENOENT",
        "does not exist",
    );
}

/// One bad-input case: arguments after `--data-path DIR`, stdin, the errno and a
/// phrase the message must contain.
struct Bad {
    args: &'static [&'static str],
    stdin: Option<&'static str>,
    errno: &'static str,
    needle: &'static str,
}

const fn bad(
    args: &'static [&'static str],
    stdin: Option<&'static str>,
    errno: &'static str,
    needle: &'static str,
) -> Bad {
    Bad {
        args,
        stdin,
        errno,
        needle,
    }
}

const APPLY: &[&str] = &["apply", "-"];

#[test]
fn bad_input_is_one_line_with_errno_and_changes_nothing() {
    let (_t, d) = loaded();
    let long_value = format!(
        r#"{{"ops": [{{"op": "setattr", "cid": "1.0_head", "oid": "alpha", "name": "big", "value": "{}"}}]}}"#,
        "v".repeat(70_000)
    );
    let long_value: &'static str = Box::leak(long_value.into_boxed_str());
    let cases = [
        // Malformed or invalid transactions: rejected before mounting.
        bad(APPLY, Some("{\"ops\": [ "), "EINVAL", "malformed"),
        bad(APPLY, Some(""), "EINVAL", "malformed"),
        bad(
            APPLY,
            Some(r#"{"ops": [{"op": "frobnicate"}]}"#),
            "EINVAL",
            "unknown op \"frobnicate\"",
        ),
        bad(
            APPLY,
            Some(r#"{"ops": [{"op": 99}]}"#),
            "EINVAL",
            "unknown op code 99",
        ),
        bad(
            APPLY,
            Some(r#"{"ops": [{"op": "touch", "cid": "1.0_head"}]}"#),
            "EINVAL",
            "missing field \"oid\"",
        ),
        bad(
            APPLY,
            Some(r#"{"ops": [{"op": "touch", "cid": "1.0_head", "oid": {"oid": 5}}]}"#),
            "EINVAL",
            "object oid must be a string",
        ),
        bad(
            APPLY,
            Some(r#"{"ops": [{"op": "touch", "cid": "1.0_head", "oid": "nul\u0000inside"}]}"#),
            "EINVAL",
            "NUL byte",
        ),
        bad(
            APPLY,
            Some(r#"{"ops": [{"op": "touch", "cid": "nope", "oid": "x"}]}"#),
            "EINVAL",
            "bad collection id",
        ),
        bad(APPLY, Some(long_value), "E2BIG", "the limit is 65536"),
        bad(
            APPLY,
            Some(
                r#"{"ops": [{"op": "truncate", "cid": "1.0_head", "oid": "alpha", "size": 5000000000}]}"#,
            ),
            "EFBIG",
            "maximum object size",
        ),
        // The second transaction is invalid, so the first is not applied either.
        bad(
            APPLY,
            Some(
                r#"[{"ops": [{"op": "remove", "cid": "1.0_head", "oid": "alpha"}]}, {"ops": [{"op": "nop", "x": 1}]}]"#,
            ),
            "EINVAL",
            "transaction 1",
        ),
        // Rejected by the store's state.
        bad(
            APPLY,
            Some(r#"{"ops": [{"op": "rmcoll", "cid": "1.0_head"}]}"#),
            "ENOTEMPTY",
            "collection 1.0_head is not empty",
        ),
        bad(
            APPLY,
            Some(r#"{"ops": [{"op": "mkcoll", "cid": "2.0_head"}]}"#),
            "EEXIST",
            "collection 2.0_head already exists",
        ),
        bad(
            APPLY,
            Some(
                r#"{"ops": [{"op": "clone", "cid": "1.0_head", "src_oid": "ghost", "dst_oid": "copy"}]}"#,
            ),
            "ENOENT",
            "clone source",
        ),
        bad(
            APPLY,
            Some(r#"{"ops": [{"op": "touch", "cid": "7.0_head", "oid": "x"}]}"#),
            "ENOENT",
            "collection 7.0_head does not exist",
        ),
        bad(
            APPLY,
            Some(
                r#"{"ops": [{"op": "try_rename", "cid": "1.0_head", "old_oid": "alpha", "new_oid": "beta"}]}"#,
            ),
            "EEXIST",
            "already exists",
        ),
        // Rejected atomically: the remove before the failing op does not happen.
        bad(
            APPLY,
            Some(
                r#"{"ops": [{"op": "remove", "cid": "1.0_head", "oid": "alpha"}, {"op": "mkcoll", "cid": "1.0_head"}]}"#,
            ),
            "EEXIST",
            "op 1 (mkcoll)",
        ),
        // ... and across the transactions of one file.
        bad(
            APPLY,
            Some(
                r#"[{"ops": [{"op": "remove", "cid": "1.0_head", "oid": "beta"}]}, {"ops": [{"op": "rmcoll", "cid": "2.0_head"}]}]"#,
            ),
            "ENOTEMPTY",
            "transaction 1 rejected: op 0 (rmcoll)",
        ),
        bad(
            &["apply", "--file", "/nonexistent/w.json"],
            None,
            "ENOENT",
            "/nonexistent/w.json",
        ),
        bad(&["apply"], None, "EINVAL", "--file"),
        // Reads of what is not there.
        bad(
            &["stat", "--collection", "1.0_head", "ghost"],
            None,
            "ENOENT",
            "ghost",
        ),
        bad(
            &["read", "--collection", "1.0_head", "ghost"],
            None,
            "ENOENT",
            "ghost",
        ),
        bad(
            &["getattr", "--collection", "1.0_head", "alpha", "nope"],
            None,
            "ENODATA",
            "nope",
        ),
        bad(
            &["getattr", "--collection", "1.0_head", "ghost", "_"],
            None,
            "ENOENT",
            "ghost",
        ),
        bad(
            &["getattrs", "--collection", "1.0_head", "ghost"],
            None,
            "ENOENT",
            "ghost",
        ),
        bad(
            &["omap", "--collection", "1.0_head", "ghost"],
            None,
            "ENOENT",
            "ghost",
        ),
        bad(
            &["omap", "--collection", "1.0_head", "alpha", "--key", "zz"],
            None,
            "ENOENT",
            "zz",
        ),
        bad(
            &["stat", "--collection", "9.0_head", "alpha"],
            None,
            "ENOENT",
            "collection 9.0_head does not exist",
        ),
        bad(
            &["list", "--collection", "9.0_head"],
            None,
            "ENOENT",
            "collection 9.0_head does not exist",
        ),
        // Bad ids and arguments.
        bad(
            &["stat", "--collection", "1.0_hd", "alpha"],
            None,
            "EINVAL",
            "bad collection id",
        ),
        bad(
            &["stat", "--collection", "1.0_head", "{\"oid\": 5}"],
            None,
            "EINVAL",
            "object oid must be a string",
        ),
        bad(
            &["stat", "--collection", "1.0_head", "{not json"],
            None,
            "EINVAL",
            "not valid JSON",
        ),
        bad(
            &["stat", "--collection", "1.0_head", "[\"1.0_head\"]"],
            None,
            "EINVAL",
            "[\"collection\", {object}]",
        ),
        bad(
            &[
                "stat",
                "--collection",
                "2.0_head",
                "[\"1.0_head\", {\"oid\": \"alpha\"}]",
            ],
            None,
            "EINVAL",
            "does not match",
        ),
        bad(
            &["stat", "alpha"],
            None,
            "EINVAL",
            "--collection is required",
        ),
        bad(
            &["list", "--end", "x"],
            None,
            "EINVAL",
            "--end needs --collection",
        ),
        bad(
            &["list", "--start", "x"],
            None,
            "EINVAL",
            "--collection is required",
        ),
        bad(
            &[
                "read",
                "--collection",
                "1.0_head",
                "alpha",
                "--offset",
                "-1",
            ],
            None,
            "EINVAL",
            "--offset",
        ),
        bad(&["frobnicate"], None, "EINVAL", "frobnicate"),
        bad(&["--format", "yaml", "info"], None, "EINVAL", "yaml"),
        bad(
            &["list", "--start", "a", "--after", "b"],
            None,
            "EINVAL",
            "cannot be used with",
        ),
        bad(&[], None, "EINVAL", "subcommand"),
        // Wrong --type.
        bad(
            &["--type", "bluestore", "list"],
            None,
            "EINVAL",
            "unknown --type bluestore: expected memstore",
        ),
        bad(
            &["--type", "bluestore", "info"],
            None,
            "EINVAL",
            "unknown --type bluestore: expected memstore",
        ),
    ];
    let before = state(&d);
    let before_files = files(&d);
    for c in &cases {
        let what = format!("{:?}", c.args);
        fails(&d, c.args, c.stdin.map(str::as_bytes), c.errno, c.needle);
        // Byte-identical files: a failed command must not even rewrite the dump.
        assert_eq!(files(&d), before_files, "{what} changed the data directory");
    }
    assert_eq!(state(&d), before, "the store shows the same state");
}

#[test]
fn unformatted_or_missing_data_path_is_enoent_and_creates_nothing() {
    let t = tempfile::tempdir().unwrap();
    let empty = t.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let missing = t.path().join("missing");
    for cmd in [&["info"][..], &["list"], &["list-collections"], APPLY] {
        let input = Some(&br#"{"ops": [{"op": "nop"}]}"#[..]);
        let r = run(
            &[&["--data-path", empty.to_str().unwrap()][..], cmd].concat(),
            input,
        );
        assert_fails(
            &r,
            "ENOENT",
            "not a formatted store (run mkfs)",
            &format!("{cmd:?}"),
        );
        let r = run(
            &[&["--data-path", missing.to_str().unwrap()][..], cmd].concat(),
            input,
        );
        assert_fails(&r, "ENOENT", "does not exist", &format!("{cmd:?}"));
    }
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);
    assert!(!missing.exists());
    let file = t.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    fails(&file, &["info"], None, "EINVAL", "not a directory");
    fails(&file, &["mkfs"], None, "EINVAL", "not a directory");
    assert_eq!(std::fs::read(&file).unwrap(), b"x");
    let r = run(&["info"], None);
    assert_fails(&r, "EINVAL", "--data-path is required", "no --data-path");
    fails(
        &empty,
        &["--type", "nope", "mkfs"],
        None,
        "EINVAL",
        "unknown --type nope: expected memstore",
    );
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);
}

#[test]
fn a_store_of_another_type_is_refused_by_name() {
    let (_t, d) = store();
    // A superblock naming a backend this build does not have (as a store from a later
    // release might): the type is named, nothing is opened.
    let mut sb = ostore_os::superblock::Superblock::read(&d).unwrap();
    sb.store_type = "bluestore".into();
    sb.write(&ostore_journal::RealFs::new(), &d).unwrap();
    let before = files(&d);
    fails(&d, &["list"], None, "EOPNOTSUPP", "holds a bluestore store");
    fails(
        &d,
        &["--type", "memstore", "list"],
        None,
        "EINVAL",
        "--type memstore does not match",
    );
    assert_eq!(files(&d), before);
}

#[test]
fn help_and_version_exit_zero() {
    let r = run(&["--help"], None);
    assert_eq!(r.code, 0);
    assert!(r.out().contains("list-collections"));
    let r = run(&["apply", "--help"], None);
    assert_eq!(r.code, 0);
    assert!(r.out().contains("--dry-run"));
    assert_eq!(run(&["--version"], None).code, 0);
}

#[test]
fn exit_codes_are_errno_values() {
    assert_eq!(errno("ENOENT"), 2);
    let (_t, d) = store();
    let r = run(
        &[
            "--data-path",
            d.to_str().unwrap(),
            "stat",
            "--collection",
            "1.0_head",
            "x",
        ],
        None,
    );
    assert_eq!(r.code, 2);
}

#[test]
fn later_transactions_see_earlier_ones_and_rejections_name_the_culprit() {
    let (_t, d) = loaded();
    // Each transaction depends on the one before: checked as a sequence, it passes.
    apply(
        &d,
        r#"[
          {"ops": [{"op": "mkcoll", "cid": "3.0_head"}]},
          {"ops": [{"op": "touch", "cid": "3.0_head", "oid": "o"}]},
          {"ops": [{"op": "remove", "cid": "3.0_head", "oid": "o"}, {"op": "rmcoll", "cid": "3.0_head"}]}
        ]"#,
    );
    assert_eq!(
        ok(&d, &["list-collections"]).json(),
        json!(["1.0_head", "2.0_head"])
    );
    let before = (state(&d), files(&d));
    let doc = r#"[
      {"ops": [{"op": "mkcoll", "cid": "3.0_head"}]},
      {"ops": [{"op": "touch", "cid": "3.0_head", "oid": "o"}]},
      {"ops": [{"op": "nop"}]},
      {"ops": [{"op": "nop"}, {"op": "rmcoll", "cid": "3.0_head"}]},
      {"ops": [{"op": "nop"}]}
    ]"#;
    fails(
        &d,
        APPLY,
        Some(doc.as_bytes()),
        "ENOTEMPTY",
        "transaction 3 rejected: op 1 (rmcoll): collection 3.0_head is not empty",
    );
    assert_eq!((state(&d), files(&d)), before);
}

fn st_hash(d: &Path) -> u64 {
    ok(d, &["stat", "--collection", "1.0_head", "alpha"]).json()["object"]["hash"]
        .as_u64()
        .unwrap()
}

/// Found by probing os-tool as a careless operator would (2026-12-06): each of these once
/// discarded committed data or wrote a backup that could not be restored.
#[test]
fn a_lost_superblock_is_damage_and_mkfs_refuses_to_format_over_it() {
    for ty in ["memstore", "kvstore", "filestore"] {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join(ty);
        ok(&d, &["--type", ty, "mkfs"]);
        apply(&d, WORKLOAD);
        let before = state(&d);
        let backup = std::fs::read(d.join("superblock")).unwrap();
        std::fs::remove_file(d.join("superblock")).unwrap();
        for args in [&["list"][..], &["--type", ty, "fsck"][..]] {
            fails(&d, args, None, "EUCLEAN", "lost its superblock");
        }
        fails(
            &d,
            &["--type", ty, "mkfs"],
            None,
            "EUCLEAN",
            "mkfs would discard the store",
        );
        // Another store's superblock does not fit: its journal id is not this journal's.
        let other = t.path().join("other");
        ok(&other, &["--type", ty, "mkfs"]);
        std::fs::copy(other.join("superblock"), d.join("superblock")).unwrap();
        fails(&d, &["list"], None, "EINVAL", "belongs to another store");
        // Nothing was discarded: with the superblock back, every object reads as before.
        std::fs::write(d.join("superblock"), &backup).unwrap();
        assert_eq!(state(&d), before, "{ty}: the store survived mkfs's refusal");
    }
}

#[test]
fn a_journal_path_of_another_store_is_refused() {
    let (t, victim) = loaded();
    let before = state(&victim);
    let jp = victim.join("journal");
    let other = t.path().join("other");
    fails(
        &other,
        &["--journal-path", jp.to_str().unwrap(), "mkfs"],
        None,
        "EEXIST",
        "already holds a journal",
    );
    assert_eq!(state(&victim), before, "the victim's journal is intact");
    // A store with its own journal, mounted on another store's journal: refused by the
    // journal id its superblock records, before anything is replayed or written.
    ok(&other, &["mkfs"]);
    let before_other = state(&other);
    let files_before = files(&victim);
    for cmd in [&["list"][..], &["fsck"]] {
        let mut args = vec!["--journal-path", jp.to_str().unwrap()];
        args.extend_from_slice(cmd);
        fails(&other, &args, None, "EINVAL", "belongs to another store");
    }
    assert_eq!(
        files(&victim),
        files_before,
        "the victim's files are untouched"
    );
    assert_eq!(state(&victim), before);
    assert_eq!(state(&other), before_other);
    let id = ok(&other, &["info"]).json()["journal_id"].clone();
    assert!(id.as_str().is_some_and(|s| s.starts_with("0x")), "{id}");
}

#[test]
fn export_names_a_collection_once_and_never_leaves_a_partial_file() {
    let (t, d) = loaded();
    let f = t.path().join("twice.exp");
    let fs = f.to_str().unwrap();
    let r = ok(
        &d,
        &[
            "export",
            "--collection",
            "1.0_head",
            "--collection",
            "1.0_head",
            "--file",
            fs,
        ],
    );
    assert_eq!(r.json()["exported"]["collections"], 1);
    let n = t.path().join("new");
    ok(&n, &["mkfs"]);
    ok(&n, &["import", "--file", fs]);
    let dir = t.path().join("adir");
    std::fs::create_dir(&dir).unwrap();
    fails(
        &d,
        &["export", "--file", dir.to_str().unwrap()],
        None,
        "EINVAL",
        "is a directory",
    );
    assert!(!t.path().join("adir.partial").exists());
}

#[test]
fn journal_dump_of_a_volume_that_is_not_there_is_enoent() {
    let (_t, d) = loaded();
    fails(
        &d,
        &["journal", "dump", "--volume", "999"],
        None,
        "ENOENT",
        "has no volume 999",
    );
}

/// A bind mount of `from` at `at`, read-only; unmounted on drop.
struct ReadOnlyView(std::path::PathBuf);

impl ReadOnlyView {
    fn new(from: &Path, at: &Path) -> Option<ReadOnlyView> {
        std::fs::create_dir_all(at).unwrap();
        let sh = |args: &[&str]| {
            std::process::Command::new("mount")
                .args(args)
                .status()
                .is_ok_and(|s| s.success())
        };
        if !sh(&["--bind", from.to_str().unwrap(), at.to_str().unwrap()]) {
            return None;
        }
        let v = ReadOnlyView(at.to_path_buf());
        assert!(
            sh(&["-o", "remount,ro,bind", at.to_str().unwrap()]),
            "remount read-only"
        );
        Some(v)
    }
}

impl Drop for ReadOnlyView {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// A store on a read-only filesystem: every command that mounts it says EROFS and why
/// (not EIO), and changes nothing; `info` (no mount) still reads it.
#[test]
fn a_store_on_a_read_only_filesystem_is_erofs() {
    for ty in ["memstore", "kvstore", "filestore"] {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("rw").join("store");
        ok(&d, &["--type", ty, "mkfs"]);
        apply(
            &d,
            r#"[{"op":"mkcoll","cid":"1.0_head"},
                {"op":"write","cid":"1.0_head","oid":"a","offset":0,"data":"hello"}]"#,
        );
        let Some(_view) = ReadOnlyView::new(&t.path().join("rw"), &t.path().join("ro")) else {
            eprintln!("SKIPPED a_store_on_a_read_only_filesystem_is_erofs: bind mounts need root");
            return;
        };
        let ro = t.path().join("ro").join("store");
        let before = files(&ro);
        for args in [
            &["list"][..],
            &["fsck"],
            &["--op", "get-bytes", "--pgid", "1.0", "a"],
        ] {
            let mut a = vec!["--data-path", ro.to_str().unwrap()];
            a.extend_from_slice(args);
            let r = run(&a, None);
            assert_fails(
                &r,
                "EROFS",
                "read-only filesystem",
                &format!("{ty} {args:?}"),
            );
        }
        assert_eq!(files(&ro), before, "{ty}: nothing changed");
        assert_eq!(ok(&ro, &["info"]).json()["store_type"], ty);
    }
}
