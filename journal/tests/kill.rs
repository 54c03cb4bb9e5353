//! Real-disk kill test: the test re-runs its own binary as a child that appends from several
//! threads and prints every acknowledgement; the parent SIGKILLs it at a random moment, then
//! scans and checks that every acknowledged entry is there, intact, and that each appender's
//! entries form a gap-free prefix. The next child continues the same journal.
//! Default 6 iterations; `OSTORE_HEAVY=1`: 60. Either way at most ~60 s.

mod common;

use common::{Collect, Rng};
use ostore_journal::{Geometry, IoMode, Journal, JournalOptions, RealFs, Vfs};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ENV_DIR: &str = "OSTORE_KILL_CHILD_DIR";
const ENV_INC: &str = "OSTORE_KILL_CHILD_INC";

fn payload(inc: u64, tid: u64, i: u64) -> Vec<u8> {
    let mut r = Rng(inc << 40 ^ tid << 20 ^ i);
    let len = r.below(if i.is_multiple_of(7) { 300_000 } else { 9000 }) as usize;
    (0..len).map(|_| r.next() as u8).collect()
}

fn meta(inc: u64, tid: u64, i: u64) -> Vec<u8> {
    [inc, tid, i].iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Odd incarnations write through io_uring (where the kernel allows it), even ones through
/// pwrite; two in four write every batch with `O_DIRECT`, the others only batches below
/// 64 KiB (the rest through the page cache); four in eight let waiters flush their own
/// batches; two in three write entries of 8 KiB or more in place from the appending
/// thread; so every flush path is killed mid-flight and continues the others' journal.
fn opts(inc: u64) -> JournalOptions {
    JournalOptions {
        max_inflight: 4,
        direct_below: if inc % 4 >= 2 { u64::MAX } else { 64 << 10 },
        waiters_flush: inc % 8 < 4,
        inplace_from: if inc % 3 == 2 { u64::MAX } else { 8 << 10 },
        io: if inc % 2 == 1 {
            IoMode::Auto
        } else {
            IoMode::Pwrite
        },
        ..JournalOptions::default()
    }
}

/// The child: append until killed.
#[test]
#[ignore = "run by kill_test_acknowledged_entries_survive_sigkill as a child process"]
fn kill_child() {
    let Ok(dir) = std::env::var(ENV_DIR) else {
        return;
    };
    let inc: u64 = std::env::var(ENV_INC).unwrap().parse().unwrap();
    let fs: Arc<dyn Vfs> = Arc::new(RealFs);
    let (j, _) = Journal::open(fs, Path::new(&dir), opts(inc), &mut Collect::default()).unwrap();
    let j = Arc::new(j);
    let ts: Vec<_> = (0..4u64)
        .map(|tid| {
            let j = j.clone();
            std::thread::spawn(move || {
                let start = Instant::now();
                let mut i = 0;
                while start.elapsed() < Duration::from_secs(20) {
                    let h = j.append(&meta(inc, tid, i), &payload(inc, tid, i)).unwrap();
                    h.wait().unwrap();
                    println!("ACK {inc} {tid} {i}");
                    i += 1;
                }
            })
        })
        .collect();
    for t in ts {
        t.join().unwrap();
    }
}

#[test]
fn kill_test_acknowledged_entries_survive_sigkill() {
    let heavy = std::env::var("OSTORE_HEAVY").is_ok_and(|v| v == "1");
    let iters = if heavy { 60 } else { 6 };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("journal");
    let geo = Geometry {
        sector_size: 4096,
        volume_size: 1 << 20,
        toc_len: 4096,
    };
    Journal::create(&RealFs, &dir, geo).unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = Rng(0x6b696c6c);
    let started = Instant::now();
    let mut acked: BTreeSet<(u64, u64, u64)> = BTreeSet::new();
    let mut total_recovered = 0;
    for inc in 0..iters {
        if started.elapsed() > Duration::from_secs(60) {
            break;
        }
        let mut child = Command::new(&exe)
            .args([
                "kill_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ENV_DIR, &dir)
            .env(ENV_INC, inc.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut v = Vec::new();
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let f: Vec<&str> = line.split_whitespace().collect();
                if f.len() == 4 && f[0] == "ACK" {
                    if let (Ok(a), Ok(b), Ok(c)) = (f[1].parse(), f[2].parse(), f[3].parse()) {
                        v.push((a, b, c));
                    }
                }
            }
            v
        });
        std::thread::sleep(Duration::from_millis(100 + rng.below(500)));
        child.kill().unwrap();
        child.wait().unwrap();
        acked.extend(reader.join().unwrap());

        let fs: Arc<dyn Vfs> = Arc::new(RealFs);
        let mut c = Collect::default();
        let (j, _) = Journal::open(fs, &dir, opts(0), &mut c)
            .unwrap_or_else(|e| panic!("iteration {inc}: open failed: {e}"));
        j.close().unwrap();
        let mut next: BTreeMap<(u64, u64), u64> = BTreeMap::new();
        let mut present = BTreeSet::new();
        for (pos, m, d) in &c.entries {
            assert_eq!(m.len(), 24, "{pos}");
            let f: Vec<u64> = m
                .chunks(8)
                .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
                .collect();
            let (ei, t, i) = (f[0], f[1], f[2]);
            let n = next.entry((ei, t)).or_insert(0);
            assert_eq!(
                i, *n,
                "iteration {inc}: appender ({ei},{t}) has a gap before {i}"
            );
            *n += 1;
            assert_eq!(
                d,
                &payload(ei, t, i),
                "iteration {inc}: entry ({ei},{t},{i}) damaged"
            );
            present.insert((ei, t, i));
        }
        let missing: Vec<_> = acked.difference(&present).collect();
        assert!(
            missing.is_empty(),
            "iteration {inc}: acknowledged but lost: {missing:?}"
        );
        total_recovered = c.entries.len();
    }
    assert!(!acked.is_empty(), "children acknowledged nothing");
    assert!(total_recovered >= acked.len());
}
