//! The operator commands through the built binary, on every backend this build opens:
//! fsck and repair, journal dump and replay, the single-object edits, export and import
//! (every backend into every other), and damaged inputs (journal, export file).

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

/// Every backend `os-tool` can open.
fn backends() -> Vec<&'static str> {
    ostore_tools::open::STORE_TYPES.to_vec()
}

fn store_of(ty: &str) -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().expect("tempdir");
    let d = t.path().join("store");
    ok(&d, &["--type", ty, "mkfs"]);
    (t, d)
}

const WORKLOAD: &str = r#"{"ops":[
  {"op":"mkcoll","cid":"1.0_head","bits":1},
  {"op":"mkcoll","cid":"1.1_head","bits":1},
  {"op":"write","cid":"1.0_head","oid":"alpha","offset":0,"data":"hello world"},
  {"op":"write","cid":"1.0_head","oid":"sparse","offset":1048576,"data":"tail"},
  {"op":"setattr","cid":"1.0_head","oid":"alpha","name":"_","value":"oi"},
  {"op":"setattr","cid":"1.0_head","oid":"alpha","name":"bin","value":{"hex":"00ff10"}},
  {"op":"omap_setheader","cid":"1.0_head","oid":"alpha","header":"hdr"},
  {"op":"omap_setkeys","cid":"1.0_head","oid":"alpha","keys":{"k1":"v1","k2":"v2"}},
  {"op":"touch","cid":"1.1_head","oid":"beta"}
]}"#;

fn populated(ty: &str) -> (tempfile::TempDir, PathBuf) {
    let (t, d) = store_of(ty);
    apply(&d, WORKLOAD);
    (t, d)
}

#[test]
fn fsck_is_clean_on_a_good_store_and_counts_what_it_saw() {
    for ty in backends() {
        let (_t, d) = populated(ty);
        for deep in [false, true] {
            let args: &[&str] = if deep { &["fsck", "--deep"] } else { &["fsck"] };
            let r = ok(&d, args).json();
            assert_eq!(r["clean"], true, "{ty}: {r}");
            assert_eq!(r["checked"]["objects"], 3, "{ty}: {r}");
            assert_eq!(r["checked"]["collections"], 2, "{ty}: {r}");
            if deep {
                assert_eq!(
                    r["checked"]["data_bytes_read"],
                    1048576 + 4 + 11,
                    "{ty}: {r}"
                );
            }
        }
        let r = ok(&d, &["repair"]).json();
        assert_eq!(r["clean"], true, "{ty}: {r}");
    }
}

#[test]
fn single_object_edits_round_trip_and_report_missing_things() {
    for ty in backends() {
        let (_t, d) = populated(ty);
        let c = ["--collection", "1.0_head"];
        let with = |extra: &[&str]| -> Vec<String> {
            let mut v: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
            v.splice(1..1, c.iter().map(|s| s.to_string()));
            v
        };
        let run_ok = |extra: &[&str]| {
            let v = with(extra);
            let refs: Vec<&str> = v.iter().map(String::as_str).collect();
            ok(&d, &refs)
        };
        run_ok(&["set-attr", "alpha", "user.x", "42"]);
        assert_eq!(run_ok(&["getattr", "alpha", "user.x"]).json(), "42");
        run_ok(&["set-attr", "alpha", "user.bin", r#"{"hex":"0001"}"#]);
        assert_eq!(
            run_ok(&["getattr", "alpha", "user.bin", "--raw"]).stdout,
            vec![0, 1]
        );
        run_ok(&["rm-attr", "alpha", "user.x"]);
        let v = with(&["rm-attr", "alpha", "user.x"]);
        let refs: Vec<&str> = v.iter().map(String::as_str).collect();
        fails(&d, &refs, None, "ENODATA", "user.x");

        run_ok(&["set-omap", "alpha", "k3", "v3"]);
        assert_eq!(run_ok(&["get-omap", "alpha", "k3"]).json(), "v3");
        let keys: Vec<String> = run_ok(&["list-omap", "alpha"])
            .out()
            .lines()
            .map(String::from)
            .collect();
        assert_eq!(keys, vec!["\"k1\"", "\"k2\"", "\"k3\""], "{ty}");
        run_ok(&["rm-omap", "alpha", "k1"]);
        let v = with(&["get-omap", "alpha", "k1"]);
        let refs: Vec<&str> = v.iter().map(String::as_str).collect();
        fails(&d, &refs, None, "ENOENT", "k1");
        assert_eq!(run_ok(&["get-omaphdr", "alpha"]).json(), "hdr");
        run_ok(&["set-omaphdr", "alpha", "new header"]);
        assert_eq!(
            run_ok(&["get-omaphdr", "alpha", "--raw"]).stdout,
            b"new header"
        );

        let v = with(&["set-bytes", "gamma"]);
        let refs: Vec<&str> = v.iter().map(String::as_str).collect();
        ok_in(&d, &refs, Some(b"fresh bytes"));
        assert_eq!(run_ok(&["read", "gamma"]).stdout, b"fresh bytes");
        let v = with(&["set-bytes", "gamma"]);
        let refs: Vec<&str> = v.iter().map(String::as_str).collect();
        ok_in(&d, &refs, Some(b"short"));
        assert_eq!(
            run_ok(&["read", "gamma"]).stdout,
            b"short",
            "set-bytes replaces, not overwrites"
        );

        run_ok(&["remove", "gamma"]);
        for cmd in [
            vec!["remove", "gamma"],
            vec!["set-attr", "gamma", "a", "b"],
            vec!["set-omap", "gamma", "a", "b"],
            vec!["stat", "gamma"],
        ] {
            let v = with(&cmd);
            let refs: Vec<&str> = v.iter().map(String::as_str).collect();
            fails(&d, &refs, None, "ENOENT", "gamma");
        }
        let r = ok(&d, &["fsck", "--deep"]).json();
        assert_eq!(r["clean"], true, "{ty}: {r}");
    }
}

#[test]
fn plain_format_and_journal_path() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("s");
    let j = t.path().join("elsewhere");
    let jp = j.to_str().unwrap();
    ok(&d, &["--journal-path", jp, "mkfs"]);
    assert!(
        j.join("journal.info").exists(),
        "the journal went to --journal-path"
    );
    assert!(!d.join("journal").exists());
    ok_in(
        &d,
        &["--journal-path", jp, "apply", "-"],
        Some(WORKLOAD.as_bytes()),
    );
    let plain = ok(&d, &["--journal-path", jp, "--format", "plain", "info"]).out();
    assert!(
        plain.lines().any(|l| l == "store_type: memstore"),
        "{plain}"
    );
    assert!(
        plain
            .lines()
            .any(|l| l.starts_with("journal.path: ") && l.ends_with("elsewhere")),
        "{plain}"
    );
    // Without the journal path the store is incomplete: mount fails clearly, changes nothing.
    let r = run(&["--data-path", d.to_str().unwrap(), "list"], None);
    assert_ne!(r.code, 0);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    ok(&d, &["--journal-path", jp, "list"]);
}

/// A MemStore left as a crash leaves it: transactions journaled, no checkpoint.
/// A store of type `ty` with `n` writes in its journal and no checkpoint after them.
fn crashed_store(ty: &str, n: usize) -> (tempfile::TempDir, PathBuf) {
    use ostore_os::{CollectionId, ObjectId, Transaction};
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("store");
    let cfg = ostore_tools::open::StoreConfig {
        store_type: Some(ty.to_string()),
        data_path: d.clone(),
        journal_path: None,
    };
    let s = ostore_tools::open::store_for_mkfs_with(&cfg, |j| {
        *j = ostore_os::journaling::JournalingOptions::small();
    })
    .unwrap();
    s.mkfs().unwrap();
    s.mount().unwrap();
    let c = CollectionId::pg(1, 0);
    let ch = s.create_new_collection(&c).unwrap();
    let mut tx = Transaction::new();
    tx.create_collection(&c, 0);
    s.apply_transaction(&ch, tx).unwrap();
    for i in 0..n {
        let mut tx = Transaction::new();
        tx.write(
            &c,
            &ObjectId::new(1, format!("o{i}")),
            0,
            vec![i as u8; 10_000],
        );
        s.apply_transaction(&ch, tx).unwrap();
    }
    drop(s); // no umount: nothing checkpointed
    (t, d)
}

fn batches(dump: &Value) -> Vec<(u64, u64)> {
    let mut v = Vec::new();
    for vol in dump["volumes"].as_array().unwrap() {
        for b in vol["batches"].as_array().unwrap() {
            let p = b["position"].as_str().unwrap();
            let (a, o) = p.split_once(':').unwrap();
            v.push((a.parse().unwrap(), o.parse().unwrap()));
        }
    }
    v
}

fn poke(d: &Path, vol: u64, off: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let p = d.join("journal").join(format!("{vol:010}.vol"));
    let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
    f.write_all_at(bytes, off).unwrap();
}

#[test]
fn journal_dump_shows_entries_and_replay_applies_them() {
    for ty in backends() {
        journal_dump_and_replay(ty);
    }
}

fn journal_dump_and_replay(ty: &str) {
    let (_t, d) = crashed_store(ty, 5);
    let dump = ok(&d, &["journal", "dump"]).json();
    let seqs: Vec<u64> = dump["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert!(seqs.ends_with(&[2, 3, 4, 5, 6]), "{ty}: {seqs:?}");
    assert_eq!(dump["tail"], "clean");
    let with_ops = ok(&d, &["journal", "dump", "--ops"]).json();
    let last = with_ops["entries"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["ops"][0][0]["op"], "write", "{last}");
    let r = ok(&d, &["journal", "replay"]).json();
    assert_eq!(
        r["replayed"]["replayed"].as_u64().unwrap(),
        seqs.len() as u64,
        "{r}"
    );
    // Replayed and checkpointed: a second replay finds nothing to do.
    let r = ok(&d, &["journal", "replay"]).json();
    assert_eq!(r["replayed"]["replayed"], 0, "{r}");
    assert_eq!(ok(&d, &["list"]).out().lines().count(), 5);
}

#[test]
fn torn_tail_mounts_and_is_reported() {
    for ty in backends() {
        torn_tail(ty);
    }
}

fn torn_tail(ty: &str) {
    let (_t, d) = crashed_store(ty, 4);
    let dump = ok(&d, &["journal", "dump"]).json();
    let b = batches(&dump);
    let &(vol, off) = b.last().unwrap();
    // The last batch never fully reached the disk: its first sector is garbage.
    poke(&d, vol, off, &[0x5a; 4096]);
    let r = ok(&d, &["fsck"]).json();
    assert_eq!(r["clean"], true, "{r}");
    assert!(
        r["mount"]["torn_tail"].is_string(),
        "the torn tail is reported: {r}"
    );
    // Everything before the torn batch is there.
    assert!(ok(&d, &["list"]).out().lines().count() >= 3);
}

#[test]
fn lost_or_cut_journal_volumes_refuse_to_mount() {
    for ty in backends() {
        lost_or_cut_volume(ty);
    }
}

/// A journal volume deleted from the directory, or cut short, is damage: the store
/// must refuse to mount rather than serve a state missing committed transactions (a
/// deleted volume leaves nothing for the scan to see; the checkpoint names the volumes
/// that must exist).
fn lost_or_cut_volume(ty: &str) {
    let (_t, d) = populated(ty);
    let vol = d.join("journal").join("0000000001.vol");
    assert!(
        vol.exists(),
        "the checkpointed store keeps its newest volume"
    );
    let pristine = d.with_extension("pristine");
    copy_tree(&d, &pristine);
    std::fs::remove_file(&vol).unwrap();
    let before = files(&d);
    let r = run(&["--data-path", d.to_str().unwrap(), "list"], None);
    assert_fails(
        &r,
        "EUCLEAN",
        "journal volume 1 is missing",
        "mount without volume 1",
    );
    assert_eq!(files(&d), before, "a refused mount changes nothing");
    // The dump shows what is there, then fails naming what is missing.
    let r = damaged_dump(&d);
    assert!(r.stderr.contains("volume 1 is missing"), "{}", r.stderr);
    // Cut short (volumes are written whole before they are used).
    std::fs::remove_dir_all(&d).unwrap();
    copy_tree(&pristine, &d);
    let f = std::fs::OpenOptions::new().write(true).open(&vol).unwrap();
    f.set_len(f.metadata().unwrap().len() / 2).unwrap();
    drop(f);
    let r = run(&["--data-path", d.to_str().unwrap(), "fsck"], None);
    assert_fails(&r, "EUCLEAN", "volume file is", "mount with a cut volume");
    // The whole journal directory gone: damage for the dump as for a mount.
    std::fs::remove_dir_all(d.join("journal")).unwrap();
    let r = damaged_dump(&d);
    assert!(r.stderr.contains("journal directory"), "{}", r.stderr);
    std::fs::remove_dir_all(&pristine).unwrap();
}

/// `journal dump` of the store in `d`, which must fail with EUCLEAN.
fn damaged_dump(d: &Path) -> Run {
    let r = run(
        &["--data-path", d.to_str().unwrap(), "journal", "dump"],
        None,
    );
    assert_eq!(r.code, errno("EUCLEAN"), "{}", r.stderr);
    r
}

fn copy_tree(from: &Path, to: &Path) {
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn interior_corruption_refuses_to_mount_but_dumps() {
    for ty in backends() {
        interior_corruption(ty);
    }
}

fn interior_corruption(ty: &str) {
    let (_t, d) = crashed_store(ty, 6);
    let dump = ok(&d, &["journal", "dump"]).json();
    let b = batches(&dump);
    assert!(b.len() >= 3, "{dump}");
    let (vol, off) = b[1];
    poke(&d, vol, off + 100, &[0xff, 0x00, 0xff]);
    let before = files(&d);
    let r = run(&["--data-path", d.to_str().unwrap(), "list"], None);
    assert_fails(
        &r,
        "EUCLEAN",
        &format!("{vol}"),
        "mount of a corrupt journal",
    );
    assert_eq!(files(&d), before, "a refused mount changes nothing");
    // The dump still shows what is readable, then fails naming the damage.
    let r = damaged_dump(&d);
    let v: Value = serde_json::from_slice(&r.stdout).unwrap();
    assert!(v["tail"]["damaged"].is_string(), "{v}");
    assert!(!v["volumes"].as_array().unwrap().is_empty());
    assert!(r.stderr.contains("damaged"), "{}", r.stderr);
}

#[test]
fn damaged_data_of_a_checkpointed_journal_entry_is_skipped() {
    for ty in backends() {
        damaged_checkpointed_entry(ty);
    }
}

/// Bit rot in an entry a checkpoint covers (its volume not recycled yet) touches nothing
/// replay needs: the store mounts, every object reads back, and the mount report counts
/// the damaged entry. The same damage before the checkpoint is refused.
fn damaged_checkpointed_entry(ty: &str) {
    let (_t, d) = crashed_store(ty, 6);
    let dump = ok(&d, &["journal", "dump"]).json();
    let b = batches(&dump);
    assert!(b.len() >= 4, "{dump}");
    let (vol, off) = b[2];
    // 3,000 bytes in: past the batch, entry and metadata headers, inside the 10,000
    // bytes of data of one write.
    let spare = d.with_file_name("spare");
    copy_tree(&d, &spare);
    poke(&spare, vol, off + 3000, &[0xa5]);
    let r = run(&["--data-path", spare.to_str().unwrap(), "list"], None);
    assert_fails(&r, "EUCLEAN", &format!("{vol}"), "damage replay needs");

    // Mount and unmount cleanly: a checkpoint now covers every entry.
    let r = ok(&d, &["fsck"]).json();
    assert_eq!(r["clean"], true, "{r}");
    assert_eq!(r["mount"]["damaged_checkpointed_entries"], 0, "{r}");
    poke(&d, vol, off + 3000, &[0xa5]);
    let dump = damaged_dump(&d);
    assert!(dump.stderr.contains("checksum"), "{}", dump.stderr);
    let r = ok(&d, &["fsck"]).json();
    assert_eq!(r["clean"], true, "{r}");
    assert_eq!(r["mount"]["damaged_checkpointed_entries"], 1, "{r}");
    assert_eq!(ok(&d, &["list"]).out().lines().count(), 6);
    for i in 0..6u8 {
        let got = ok(
            &d,
            &["--op", "get-bytes", "--pgid", "1.0", &format!("o{i}")],
        )
        .stdout;
        assert_eq!(got, vec![i; 10_000], "object o{i}");
    }
}

#[test]
fn export_import_between_every_pair_of_backends() {
    for from in backends() {
        let (_t, src) = populated(from);
        let want = state(&src);
        let e = src.parent().unwrap().join("all.export");
        let r = ok(&src, &["export", "--file", e.to_str().unwrap()]).json();
        assert_eq!(r["exported"]["objects"], 3, "{r}");
        for to in backends() {
            let (_t2, dst) = store_of(to);
            ok(&dst, &["import", "--file", e.to_str().unwrap()]);
            assert_eq!(state(&dst), want, "export from {from}, import into {to}");
            // Importing again would merge into existing collections: refused, unchanged.
            fails(
                &dst,
                &["import", "--file", e.to_str().unwrap()],
                None,
                "EEXIST",
                "1.0_head",
            );
            assert_eq!(state(&dst), want);
        }
        // One collection, through stdout and stdin.
        let one = ok(&src, &["export", "--collection", "1.1_head", "--file", "-"]).stdout;
        let (_t3, dst) = store_of(from);
        ok_in(&dst, &["import", "--file", "-"], Some(&one));
        assert_eq!(ok(&dst, &["list"]).out().lines().count(), 1);
    }
}

#[test]
fn damaged_export_files_are_refused_and_change_nothing() {
    let (_t, src) = populated("memstore");
    let e = src.parent().unwrap().join("x.export");
    ok(&src, &["export", "--file", e.to_str().unwrap()]);
    let good = std::fs::read(&e).unwrap();
    let (_t2, dst) = store_of("memstore");
    let before = state(&dst);
    let bad = src.parent().unwrap().join("bad.export");
    let mut cases: Vec<(String, Vec<u8>)> = vec![
        ("truncated".into(), good[..good.len() / 2].to_vec()),
        (
            "truncated by one byte".into(),
            good[..good.len() - 1].to_vec(),
        ),
        ("empty".into(), Vec::new()),
        ("not an export".into(), b"{\"ops\":[]}".to_vec()),
    ];
    for i in [3usize, 30, good.len() / 3, good.len() - 10] {
        let mut g = good.clone();
        g[i] ^= 0x10;
        cases.push((format!("bit flip at {i}"), g));
    }
    for (what, bytes) in cases {
        std::fs::write(&bad, &bytes).unwrap();
        let r = run(
            &[
                "--data-path",
                dst.to_str().unwrap(),
                "import",
                "--file",
                bad.to_str().unwrap(),
            ],
            None,
        );
        assert_fails(&r, "EUCLEAN", "export", &what);
        assert_eq!(state(&dst), before, "{what}: store unchanged");
    }
}

#[test]
fn info_and_bench_on_every_backend() {
    for ty in backends() {
        let (_t, d) = populated(ty);
        let i = ok(&d, &["info"]).json();
        assert_eq!(i["store_type"], ty, "{i}");
        assert!(i["committed_seq"].as_u64().is_some(), "{ty}: {i}");
        assert!(
            i["journal"]["volumes"].as_u64().unwrap_or(0) > 0,
            "{ty}: {i}"
        );
        // bench runs in scratch stores under --data-path, never in the store itself.
        let scratch = d.parent().unwrap().join("bench");
        let r = ok(
            &scratch,
            &[
                "--type",
                ty,
                "bench",
                "--workload",
                "create-small",
                "--clients",
                "2",
                "--duration",
                "1",
            ],
        )
        .json();
        let row = &r[0];
        assert_eq!(row["backend"], ty, "{r}");
        assert_eq!(row["workload"], "create-small", "{r}");
        assert!(row["ops"].as_u64().unwrap_or(0) > 0, "{ty}: {r}");
        assert!(row["ratio"].as_f64().is_some_and(|x| x > 0.0), "{ty}: {r}");
    }
}
