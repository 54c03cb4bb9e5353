//! Crash tests on the simulated disk.
//!
//! For each seeded workload, every crash point (every prefix of the operation log), and at each
//! point every subset of the operations not yet synced (up to 8 of them; past that every prefix
//! and a sample), each also with one kept write torn: cut at a sector boundary, at a random byte,
//! or with a random set of its sectors lost (the rest old, zeros or garbage). After each crash:
//! - scanning succeeds (a crash alone never looks like corruption) and never panics;
//! - the entries recovered are a prefix of the journal, intact and in order;
//! - every append acknowledged before the crash point is among them;
//! - for a sample of states, a reopened journal appends after the recovered prefix, and a second
//!   crash of that run again recovers a prefix (stale batches beyond the first tail never resurface).
//!
//! `OSTORE_HEAVY=1` multiplies the number of workloads.

mod common;

use common::*;
use ostore_journal::vfs::{every_subset, kept_writes, subset, Tear, TearFill};
use ostore_journal::{scan, Journal, JournalOptions, Position, SimFs, Vfs};
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
    // Half the seeds have large entries' whole sectors written in place by their
    // appenders (separate writes of the same batch, so more subsets to lose).
    let opts = JournalOptions {
        inplace_from: if seed % 4 >= 2 { 2_000 } else { u64::MAX },
        ..det_opts(inflight)
    };
    let (j, _, _) = open(dfs, Path::new(DIR), opts).unwrap();
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

/// Unsynced ops a crash state keeps every subset of; past this, every prefix and a
/// seeded sample of other subsets.
const EVERY_SUBSET_UP_TO: usize = 8;

/// The subsets of the unsynced ops `un` tried at one crash point: all of them when
/// there are at most [`EVERY_SUBSET_UP_TO`], else every prefix and 64 random subsets.
fn keeps(un: &[usize], r: &mut Rng) -> Vec<Vec<usize>> {
    if un.len() <= EVERY_SUBSET_UP_TO {
        return every_subset(un).collect();
    }
    let mut out: Vec<Vec<usize>> = (0..=un.len()).map(|k| un[..k].to_vec()).collect();
    out.extend((0..64).map(|_| subset(un, r.next())));
    out
}

/// What [`crash_all_points`] covered.
#[derive(Default)]
struct Covered {
    states: usize,
    /// States keeping a subset of the unsynced ops that is not a prefix.
    non_prefix: usize,
    /// States with a write's sectors lost out of order.
    scattered: usize,
    /// The most unsynced ops at one crash point.
    max_unsynced: usize,
}

impl Covered {
    fn report(&self, what: &str) {
        coverage(&format!(
            "journal crash states, {what}: {} states ({} keeping a non-prefix subset of the unsynced writes, {} with sectors lost out of order; at most {} ops unsynced at once)",
            self.states, self.non_prefix, self.scattered, self.max_unsynced
        ));
    }
}

fn crash_all_points(seed: u64, threads: u64, inflight: usize, close: bool, cov: &mut Covered) {
    let w = run_workload(seed, threads, inflight, close);
    // A journal left unclosed keeps its threads: the log may grow past `end`, never
    // below it.
    let end = w.fs.op_count();
    let ops = w.fs.ops();
    let mut r = Rng(seed ^ 0x5eed);
    for at in w.base..=end {
        let un = w.fs.unsynced_at(at);
        cov.max_unsynced = cov.max_unsynced.max(un.len());
        for keep in keeps(&un, &mut r) {
            let prefix = un.starts_with(&keep);
            let mut variants = vec![None];
            // Tear one kept write (a random one: with several batches in flight, any of
            // them may be the one the power cut caught).
            let writes = kept_writes(&ops, &keep, 0);
            if !writes.is_empty() {
                let w = writes[r.below(writes.len() as u64) as usize];
                let fill = TearFill::pick(r.next());
                let sectors = w.len as u64 / 512;
                let cut_sector = (r.below(sectors.max(1)) * 512) as usize;
                let cut_byte = r.below(w.len.max(1) as u64) as usize;
                variants.push(Some(Tear::prefix(w.op, cut_sector, fill)));
                variants.push(Some(Tear::prefix(w.op, cut_byte, fill)));
                // The disk wrote the write's sectors in another order: some of them,
                // not only a prefix, never arrived.
                variants.extend(Tear::random_scatter(w, r.next(), fill).map(Some));
            }
            for t in variants {
                let what =
                    format!("seed {seed} threads {threads} at {at} keep {keep:?} tear {t:?}");
                let c = w.fs.crash_state(at, &keep, t);
                let n = check_state(&w, &c, at, &what);
                cov.states += 1;
                cov.non_prefix += usize::from(!prefix);
                cov.scattered += usize::from(t.is_some_and(|t| t.lost_sectors != 0));
                if r.below(12) == 0 {
                    check_continue(&w, c, n, r.next(), &what);
                }
            }
        }
    }
}

#[test]
fn crash_states_single_appender() {
    let n = if heavy() { 1000 } else { 100 };
    let mut cov = Covered::default();
    for seed in 0..n {
        crash_all_points(seed, 1, 1 + (seed % 3) as usize, seed % 2 == 0, &mut cov);
    }
    cov.report(&format!("{n} single-appender workloads"));
    assert!(cov.states > 1000, "{}", cov.states);
    assert!(cov.non_prefix > 0 && cov.scattered > 0);
}

#[test]
fn crash_states_concurrent_appenders() {
    let n = if heavy() { 400 } else { 40 };
    let mut cov = Covered::default();
    for seed in 1000..1000 + n {
        crash_all_points(seed, 3, 4, seed % 2 == 1, &mut cov);
    }
    cov.report(&format!(
        "{n} workloads of 3 appenders, 4 batches in flight"
    ));
    assert!(cov.states > 500, "{}", cov.states);
    // Several batches in flight leave several unsynced writes to choose among.
    assert!(cov.max_unsynced > 2 && cov.non_prefix > 0 && cov.scattered > 0);
}
