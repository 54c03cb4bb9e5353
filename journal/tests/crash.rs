//! Crash tests on the simulated disk.
//!
//! For each seeded workload, every crash point (every prefix of the operation log), and at each
//! point every prefix of the operations not yet synced, some with the last kept write torn (cut at
//! a sector boundary or at a random byte; the rest old, zeros or garbage). After each crash:
//! - scanning succeeds (a crash alone never looks like corruption) and never panics;
//! - the entries recovered are a prefix of the journal, intact and in order;
//! - every append acknowledged before the crash point is among them;
//! - for a sample of states, a reopened journal appends after the recovered prefix, and a second
//!   crash of that run again recovers a prefix (stale batches beyond the first tail never resurface).
//!
//! `OSTORE_HEAVY=1` multiplies the number of workloads.

mod common;

use common::*;
use ostore_journal::vfs::{Tear, TearFill};
use ostore_journal::{scan, Journal, Position, SimFs, Vfs};
use std::path::Path;
use std::sync::{Arc, Mutex};

const DIR: &str = "/j";

struct Workload {
    fs: SimFs,
    base: usize,
    /// Entries in journal order: (position, meta, data).
    order: Vec<(Position, Vec<u8>, Vec<u8>)>,
    /// For each entry in journal order, the op count when its ack was delivered (if it was).
    acked_at: Vec<Option<usize>>,
}

fn heavy() -> bool {
    std::env::var("OSTORE_HEAVY").is_ok_and(|v| v == "1")
}

/// One acknowledged-or-not append: where it went, its meta and its data.
type Appended = (Position, Vec<u8>, Vec<u8>);

fn run_workload(seed: u64, threads: u64, inflight: usize, close: bool) -> Workload {
    let fs = SimFs::new();
    Journal::create(&fs, Path::new(DIR), small_geo()).unwrap();
    let dfs: Arc<dyn Vfs> = Arc::new(fs.clone());
    let (j, _, _) = open(dfs, Path::new(DIR), det_opts(inflight)).unwrap();
    let base = fs.op_count();
    let j = Arc::new(j);
    let acks: Arc<Mutex<Vec<(Position, usize)>>> = Arc::default();
    let appended: Arc<Mutex<Vec<Appended>>> = Arc::default();
    let mut ts = Vec::new();
    for t in 0..threads {
        let j = j.clone();
        let fs = fs.clone();
        let acks = acks.clone();
        let appended = appended.clone();
        ts.push(std::thread::spawn(move || {
            let mut r = Rng(seed * 31 + t);
            let n = 6 + r.below(10);
            for i in 0..n {
                let big = r.below(8) == 0;
                let (m, d) = entry(seed, t * 1000 + i, if big { 12_000 } else { 1_200 });
                let fs2 = fs.clone();
                let acks2 = acks.clone();
                let h = j
                    .append_with(&m, &d, move |res| {
                        if res.is_ok() {
                            let at = fs2.op_count();
                            acks2.lock().unwrap().push((Position::default(), at));
                        }
                    })
                    .unwrap();
                appended.lock().unwrap().push((h.position(), m, d));
                // Record the position with the ack time once the handle resolves.
                if r.below(3) == 0 {
                    h.wait().unwrap();
                    let at = fs.op_count();
                    acks.lock().unwrap().push((h.position(), at));
                }
            }
        }));
    }
    for t in ts {
        t.join().unwrap();
    }
    let j = Arc::try_unwrap(j).unwrap();
    if close {
        j.close().unwrap();
    } else {
        // Leave the tail unconfirmed: crash points cover everything up to here.
        std::mem::forget(j);
    }
    let mut order = appended.lock().unwrap().clone();
    order.sort_by_key(|e| e.0);
    // Acks delivered through callbacks don't know their position; those through wait() do.
    // Use the wait() ones (a strict subset), which is what the caller could rely on.
    let acks = acks.lock().unwrap().clone();
    let acked_at = order
        .iter()
        .map(|(p, _, _)| {
            acks.iter()
                .filter(|(ap, _)| ap == p)
                .map(|(_, at)| *at)
                .min()
        })
        .collect();
    Workload {
        fs,
        base,
        order,
        acked_at,
    }
}

/// Check the scan of `fs` against the workload at crash point `at`; returns entries recovered.
fn check_state(w: &Workload, fs: &SimFs, at: usize, what: &str) -> usize {
    let mut c = Collect::default();
    let r = scan(fs, Path::new(DIR), 0, None, &mut c);
    let o = r.unwrap_or_else(|e| panic!("{what}: crash state reported {e}"));
    assert_eq!(o.entries as usize, c.entries.len());
    let n = c.entries.len();
    assert!(n <= w.order.len(), "{what}: more entries than appended");
    for (k, (got, want)) in c.entries.iter().zip(&w.order).enumerate() {
        assert_eq!(got, want, "{what}: entry {k} differs");
    }
    let must = w
        .acked_at
        .iter()
        .rposition(|a| a.is_some_and(|a| a <= at))
        .map_or(0, |i| i + 1);
    assert!(
        n >= must,
        "{what}: recovered {n} entries, {must} were acknowledged"
    );
    n
}

/// Reopen a crash state, append more, crash again anywhere; the result must still be a prefix.
fn check_continue(w: &Workload, fs: SimFs, recovered: usize, seed: u64, what: &str) {
    let dfs: Arc<dyn Vfs> = Arc::new(fs.clone());
    let (j, _, c) = open(dfs, Path::new(DIR), det_opts(2)).unwrap();
    assert_eq!(c.entries.len(), recovered, "{what}: open and scan disagree");
    let base = fs.op_count();
    let mut extra = Vec::new();
    for i in 0..3 {
        let (m, d) = entry(seed ^ 0xabc, 900_000 + i, 3000);
        let h = j.append(&m, &d).unwrap();
        if i == 1 {
            h.wait().unwrap();
        }
        extra.push((h.position(), m, d, h));
    }
    let acked_at_1 = fs.op_count();
    extra[2].3.wait().unwrap();
    let all_acked = fs.op_count();
    j.close().unwrap();
    let mut want: Vec<(Position, Vec<u8>, Vec<u8>)> = w.order[..recovered].to_vec();
    want.extend(extra.iter().map(|(p, m, d, _)| (*p, m.clone(), d.clone())));
    let mut r = Rng(seed);
    let end = fs.op_count();
    for _ in 0..4 {
        let at = base + r.below((end - base + 1) as u64) as usize;
        let un = fs.unsynced_at(at);
        let k = r.below(un.len() as u64 + 1) as usize;
        let c2 = fs.crash_state(at, &un[..k], None);
        let mut c = Collect::default();
        scan(&c2, Path::new(DIR), 0, None, &mut c)
            .unwrap_or_else(|e| panic!("{what}: second crash at {at}: {e}"));
        assert!(c.entries.len() <= want.len());
        for (g, wnt) in c.entries.iter().zip(&want) {
            assert_eq!(
                g, wnt,
                "{what}: second crash at {at} recovered a stale entry"
            );
        }
        let must = if at >= all_acked {
            want.len()
        } else if at >= acked_at_1 {
            recovered + 2
        } else {
            recovered
        };
        assert!(
            c.entries.len() >= must,
            "{what}: second crash lost acknowledged entries"
        );
    }
}

fn crash_all_points(seed: u64, threads: u64, inflight: usize, close: bool) -> usize {
    let w = run_workload(seed, threads, inflight, close);
    let end = w.fs.op_count();
    let mut r = Rng(seed ^ 0x5eed);
    let mut states = 0;
    for at in w.base..=end {
        let un = w.fs.unsynced_at(at);
        for k in 0..=un.len() {
            let keep = &un[..k];
            let mut variants = vec![None];
            if let Some(&last) = keep.last() {
                if let ostore_journal::vfs::SimOp::Write { data, .. } = &w.fs.ops()[last] {
                    let len = data.len() as u64;
                    let fill = match r.below(3) {
                        0 => TearFill::Old,
                        1 => TearFill::Zeros,
                        _ => TearFill::Garbage(r.next()),
                    };
                    let sectors = len / 512;
                    let cut_sector = (r.below(sectors.max(1)) * 512) as usize;
                    let cut_byte = r.below(len.max(1)) as usize;
                    variants.push(Some(Tear {
                        op: last,
                        keep_bytes: cut_sector,
                        fill,
                    }));
                    variants.push(Some(Tear {
                        op: last,
                        keep_bytes: cut_byte,
                        fill,
                    }));
                }
            }
            for t in variants {
                let what = format!("seed {seed} threads {threads} at {at} keep {k} tear {t:?}");
                let c = w.fs.crash_state(at, keep, t);
                let n = check_state(&w, &c, at, &what);
                states += 1;
                if r.below(12) == 0 {
                    check_continue(&w, c, n, r.next(), &what);
                }
            }
        }
    }
    states
}

#[test]
fn crash_states_single_appender() {
    let n = if heavy() { 300 } else { 30 };
    let mut states = 0;
    for seed in 0..n {
        states += crash_all_points(seed, 1, 1 + (seed % 3) as usize, seed % 2 == 0);
    }
    assert!(states > 1000, "{states}");
}

#[test]
fn crash_states_concurrent_appenders() {
    let n = if heavy() { 200 } else { 10 };
    let mut states = 0;
    for seed in 1000..1000 + n {
        states += crash_all_points(seed, 3, 4, seed % 2 == 1);
    }
    assert!(states > 500, "{states}");
}
