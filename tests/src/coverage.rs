//! What the heavy tests covered, for CI's log: `cargo test` hides a passing test's
//! output, so each count goes to stderr and, when `OSTORE_COVERAGE` names a file, is
//! appended there; `scripts/test.sh` prints that file after the tests.

use std::io::Write as _;

/// Reports one line of coverage (crash states, injection points, iterations...).
pub fn report(line: &str) {
    eprintln!("{line}");
    let Some(path) = std::env::var_os("OSTORE_COVERAGE") else {
        return;
    };
    // One write of a whole line with O_APPEND: concurrent tests never interleave.
    let r = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()));
    if let Err(e) = r {
        eprintln!(
            "cannot append to OSTORE_COVERAGE {}: {e}",
            path.to_string_lossy()
        );
    }
}
