//! Running the built `os-tool` on scratch stores, and reading a store's whole state
//! back through the CLI alone (so the tests check what a script would see).

#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_os-tool");

#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Run {
    pub fn out(&self) -> String {
        String::from_utf8(self.stdout.clone()).expect("stdout is UTF-8")
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {}", self.out()))
    }
}

/// Runs `os-tool args...`, feeding `stdin` when given.
pub fn run(args: &[&str], stdin: Option<&[u8]>) -> Run {
    let mut c = Command::new(BIN);
    c.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn os-tool");
    if let Some(input) = stdin {
        let mut si = child.stdin.take().expect("stdin");
        // A tool that fails before reading may close stdin early; that is its answer.
        let _ = si.write_all(input);
    }
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().expect("wait for os-tool");
    Run {
        code: status.code().expect("os-tool exited by a signal"),
        stdout,
        stderr: String::from_utf8(stderr).expect("stderr is UTF-8"),
    }
}

/// `os-tool --data-path DIR args...`, which must succeed.
pub fn ok(dir: &Path, args: &[&str]) -> Run {
    ok_in(dir, args, None)
}

pub fn ok_in(dir: &Path, args: &[&str], stdin: Option<&[u8]>) -> Run {
    let r = run(&with_path(dir, args), stdin);
    assert_eq!(r.code, 0, "os-tool {args:?} failed: {}", r.stderr);
    assert!(
        r.stderr.is_empty(),
        "os-tool {args:?} wrote to stderr: {}",
        r.stderr
    );
    r
}

fn with_path<'a>(dir: &'a Path, args: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["--data-path", dir.to_str().expect("utf-8 temp path")];
    v.extend_from_slice(args);
    v
}

/// Errno values of the names the tool reports.
pub fn errno(name: &str) -> i32 {
    match name {
        "EIO" => 5,
        "ENOENT" => 2,
        "E2BIG" => 7,
        "EACCES" => 13,
        "EROFS" => 30,
        "EEXIST" => 17,
        "EINVAL" => 22,
        "EFBIG" => 27,
        "ENOTEMPTY" => 39,
        "ENODATA" => 61,
        "EOPNOTSUPP" => 95,
        "EUCLEAN" => 117,
        other => panic!("test does not know errno {other}"),
    }
}

/// Checks a failure: non-zero exit equal to the errno value, and exactly one stderr
/// line `os-tool: ERRNO: ...` that contains `needle`.
pub fn assert_fails(r: &Run, name: &str, needle: &str, what: &str) {
    assert_eq!(
        r.code,
        errno(name),
        "{what}: exit code (stderr: {})",
        r.stderr
    );
    assert_eq!(
        r.stderr.lines().count(),
        1,
        "{what}: one line: {:?}",
        r.stderr
    );
    let prefix = format!("os-tool: {name}: ");
    assert!(r.stderr.starts_with(&prefix), "{what}: {:?}", r.stderr);
    assert!(
        r.stderr.contains(needle),
        "{what}: {:?} lacks {needle:?}",
        r.stderr
    );
    assert!(
        r.stdout.is_empty(),
        "{what}: wrote to stdout: {:?}",
        r.stdout
    );
}

pub fn fails(dir: &Path, args: &[&str], stdin: Option<&[u8]>, name: &str, needle: &str) -> Run {
    let r = run(&with_path(dir, args), stdin);
    assert_fails(&r, name, needle, &format!("{args:?}"));
    r
}

/// A fresh formatted store in a temp dir.
pub fn store() -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().expect("tempdir");
    let d = t.path().join("store");
    ok(&d, &["mkfs"]);
    (t, d)
}

/// Applies a JSON document through stdin, which must succeed.
pub fn apply(dir: &Path, doc: &str) {
    ok_in(dir, &["apply", "-"], Some(doc.as_bytes()));
}

/// Everything observable through the CLI: collections, and per object (addressed by its
/// pasted `list` line) stat, data, attrs and omap.
pub fn state(dir: &Path) -> String {
    let mut s = String::new();
    let colls = ok(dir, &["--format", "json", "list-collections"]).out();
    s.push_str(&colls);
    for line in ok(dir, &["list"]).out().lines() {
        s.push_str(line);
        s.push('\n');
        // Allocation is each backend's own business (pages, strips, filesystem
        // blocks); size is the object's.
        let mut st: serde_json::Value =
            serde_json::from_str(&ok(dir, &["--format", "json", "stat", line]).out())
                .expect("stat prints JSON");
        if let Some(m) = st.as_object_mut() {
            m.remove("allocated");
        }
        s.push_str(&format!("{st}\n"));
        let data = ok(dir, &["read", line]).stdout;
        s.push_str(&format!("data {data:?}\n"));
        s.push_str(&ok(dir, &["--format", "json", "getattrs", line]).out());
        s.push_str(&ok(dir, &["--format", "json", "omap", line]).out());
    }
    s
}

/// Every file of the data directory, byte for byte.
pub fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut m = BTreeMap::new();
    for e in std::fs::read_dir(dir).expect("read data dir") {
        let e = e.expect("dir entry");
        if e.file_type().expect("file type").is_file() {
            m.insert(
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).expect("read file"),
            );
        }
    }
    m
}
