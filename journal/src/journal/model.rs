//! Model checks of the group commit (`cargo test -p ostore-journal --features shuttle --lib
//! model`): the whole writer (appenders, the open batch, sealing, flush workers, completions
//! and callbacks, the blank maker, trim, shutdown, fail-stop) runs on the simulated disk
//! while shuttle chooses every interleaving of its threads, under thousands of random and PCT
//! schedules. A run fails on a deadlock or a lost wakeup (shuttle reports every thread
//! blocked), or on a broken promise:
//! - every append's wait returns, and so does every callback, exactly once; appends
//!   without a callback are waited on, polled until done, or dropped unwaited (their
//!   batches may be queued reserved for their waiters, see `WorkQueue::push_reserved`);
//! - callbacks run in journal order (positions increase), so per appender in append order;
//! - once a flush fails, no entry after the failed one is acknowledged (fsyncgate: the
//!   simulated fsync fails once and would then "succeed");
//! - after close and reopen, every acknowledged entry is replayed intact, in journal order,
//!   and nothing is replayed that was never appended (trim may drop entries before the
//!   volume it was given, never one at or after it).
use super::*;
use crate::scan::MetaAction;
use crate::vfs::{Fault, FaultOps, SimFs};
use shuttle::thread;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

const DIR: &str = "/j";

/// Tiny volumes, so a few entries already span sectors and volumes and rotate.
fn geo() -> Geometry {
    Geometry {
        sector_size: 512,
        volume_size: 8192,
        toc_len: 512,
    }
}

fn opts(background_blanks: bool) -> JournalOptions {
    JournalOptions {
        max_inflight: 2,
        // Small enough that appenders also wait for space behind busy workers.
        max_batch_bytes: 2048,
        blank_target: 1,
        max_blanks: 2,
        background_blanks,
        // Entries of more than two sectors of data are written partly in place by their
        // appenders, the rest copied into batches.
        inplace_from: 1024,
        ..JournalOptions::default()
    }
}

fn data(t: u64, i: u64) -> Vec<u8> {
    // Sizes from a few bytes to more than a volume.
    let len = [40usize, 1500, 9000][((t + i) % 3) as usize];
    (0..len).map(|k| (k as u64 ^ t << 4 ^ i) as u8).collect()
}

#[derive(Default)]
struct Replayed {
    entries: Vec<(Position, Vec<u8>, Vec<u8>)>,
}

impl ScanCallbacks for Replayed {
    fn meta(&mut self, pos: Position, meta: &[u8], _len: u64) -> MetaAction {
        self.entries.push((pos, meta.to_vec(), Vec::new()));
        MetaAction::ReadData
    }
    fn data(&mut self, chunk: &[u8], _last: bool) -> ControlFlow<()> {
        if let Some(e) = self.entries.last_mut() {
            e.2.extend_from_slice(chunk);
        }
        ControlFlow::Continue(())
    }
}

/// What the appenders saw: per (thread, i) its position and outcome, and the order in which
/// the callbacks ran.
#[derive(Default)]
struct Seen {
    outcome: BTreeMap<(u64, u64), (Position, bool)>,
    callbacks: Vec<((u64, u64), bool)>,
    /// Appends made with a callback.
    with_cb: std::collections::BTreeSet<(u64, u64)>,
    /// Appends whose handle was dropped unwaited, by id: their position.
    dropped: BTreeMap<(u64, u64), Position>,
}

struct Scenario {
    appenders: u64,
    per: u64,
    background_blanks: bool,
    trim: bool,
    close_early: bool,
    fault: Option<Fault>,
    /// Runs in which the fault fired (printed, so a fault that never fires shows).
    fired: AtomicUsize,
}

impl Scenario {
    fn new(appenders: u64, per: u64) -> Scenario {
        Scenario {
            appenders,
            per,
            background_blanks: false,
            trim: false,
            close_early: false,
            fault: None,
            fired: AtomicUsize::new(0),
        }
    }
}

fn run(sc: &Scenario) {
    let fs = SimFs::new();
    Journal::create(&fs, Path::new(DIR), geo()).unwrap();
    let vfs: Arc<dyn Vfs> = Arc::new(fs.clone());
    let (j, _) = Journal::open(
        vfs.clone(),
        Path::new(DIR),
        opts(sc.background_blanks),
        &mut Replayed::default(),
    )
    .unwrap();
    fs.set_fault(sc.fault);
    let j = Arc::new(j);
    let seen = Arc::new(std::sync::Mutex::new(Seen::default()));
    let trimmed = Arc::new(std::sync::Mutex::new(0u64));
    let mut ts = Vec::new();
    for t in 0..sc.appenders {
        let (j, seen) = (j.clone(), seen.clone());
        let per = sc.per;
        ts.push(thread::spawn(move || {
            for i in 0..per {
                // 0: a callback and a wait; 1: a wait; 2: polled until done; 3: dropped.
                let mode = (t + i) % 4;
                let r = if mode == 0 {
                    let s2 = seen.clone();
                    seen.lock().unwrap().with_cb.insert((t, i));
                    j.append_with(&[t as u8, i as u8], &data(t, i), move |r| {
                        s2.lock().unwrap().callbacks.push(((t, i), r.is_ok()));
                    })
                } else {
                    j.append(&[t as u8, i as u8], &data(t, i))
                };
                let h = match r {
                    Ok(h) => h,
                    // Closed or poisoned: refused before anything was journaled.
                    Err(Error::Closed | Error::Poisoned(_)) => return,
                    Err(e) => panic!("append: {e}"),
                };
                if mode == 3 {
                    seen.lock().unwrap().dropped.insert((t, i), h.position());
                    continue;
                }
                if mode == 2 {
                    while h.poll().is_none() {
                        thread::yield_now();
                    }
                }
                let ok = h.wait().is_ok();
                assert_eq!(
                    h.poll().map(|r| r.is_ok()),
                    Some(ok),
                    "poll disagrees with wait"
                );
                seen.lock()
                    .unwrap()
                    .outcome
                    .insert((t, i), (h.position(), ok));
                if !ok {
                    return;
                }
            }
        }));
    }
    if sc.trim {
        let (j, trimmed) = (j.clone(), trimmed.clone());
        ts.push(thread::spawn(move || {
            for _ in 0..2 {
                let v = j.end_position().volume;
                if j.trim_before(v).is_ok() {
                    let mut g = trimmed.lock().unwrap();
                    *g = (*g).max(v);
                }
                thread::yield_now();
            }
        }));
    }
    if sc.close_early {
        let j = j.clone();
        ts.push(thread::spawn(move || {
            thread::yield_now();
            let _ = j.shutdown();
        }));
    }
    for t in ts {
        t.join().unwrap();
    }
    let closed = j.shutdown();
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    let failed = sc.fault.is_some_and(|_| fs.fault_fired());
    if failed {
        sc.fired.fetch_add(1, Ordering::Relaxed);
    }
    assert!(
        closed.is_ok() || failed || sc.close_early,
        "close: {closed:?}"
    );

    // Every callback ran once, in journal order, and agrees with its wait.
    let mut once = BTreeMap::new();
    for (id, ok) in &seen.callbacks {
        assert!(
            once.insert(*id, *ok).is_none(),
            "callback of {id:?} ran twice"
        );
    }
    for (id, (_, ok)) in &seen.outcome {
        if seen.with_cb.contains(id) {
            assert_eq!(once.get(id), Some(ok), "callback of {id:?} vs its wait");
        }
    }
    assert!(once.keys().all(|id| seen.with_cb.contains(id)));
    let cb_pos: Vec<Position> = seen
        .callbacks
        .iter()
        .filter_map(|(id, _)| seen.outcome.get(id).map(|o| o.0))
        .collect();
    assert!(
        cb_pos.windows(2).all(|w| w[0] < w[1]),
        "callbacks out of journal order: {:?}",
        seen.callbacks
    );
    // Acknowledged entries form a prefix of journal order.
    let mut by_pos: Vec<_> = seen
        .outcome
        .iter()
        .map(|(id, (p, ok))| (*p, *id, *ok))
        .collect();
    by_pos.sort();
    if let Some(first_bad) = by_pos.iter().position(|e| !e.2) {
        assert!(
            by_pos[first_bad..].iter().all(|e| !e.2),
            "an entry after a failed one was acknowledged: {by_pos:?}"
        );
    }
    assert!(failed || sc.close_early || by_pos.iter().all(|e| e.2));

    // Reopen (the fault was one-shot and has fired, or is cleared) and replay.
    fs.set_fault(None);
    drop(j);
    let mut rep = Replayed::default();
    let (j2, _) = Journal::open(vfs, Path::new(DIR), opts(false), &mut rep).unwrap();
    let floor = *trimmed.lock().unwrap();
    let replayed: BTreeMap<Position, (u64, u64)> = rep
        .entries
        .iter()
        .map(|(p, m, d)| {
            let id = (u64::from(m[0]), u64::from(m[1]));
            assert_eq!(*d, data(id.0, id.1), "entry {id:?} replayed damaged");
            (*p, id)
        })
        .collect();
    assert!(rep.entries.windows(2).all(|w| w[0].0 < w[1].0));
    for (p, id, ok) in &by_pos {
        if *ok && p.volume >= floor {
            assert_eq!(replayed.get(p), Some(id), "acknowledged {id:?} at {p} lost");
        }
    }
    // An unwaited entry is durable once a later one of its thread is, or after a clean
    // close (which flushes a batch reserved for a handle that was dropped).
    for (&(t, i), p) in &seen.dropped {
        let later_ok = seen
            .outcome
            .range((t, i)..(t + 1, 0))
            .any(|(_, (_, ok))| *ok);
        if (later_ok || !(failed || sc.close_early)) && p.volume >= floor {
            assert_eq!(
                replayed.get(p),
                Some(&(t, i)),
                "unwaited {t}/{i} at {p} lost"
            );
        }
    }
    for (p, id) in &replayed {
        let at = seen
            .outcome
            .get(id)
            .map(|o| o.0)
            .or(seen.dropped.get(id).copied());
        assert!(
            at.is_none_or(|q| q == *p),
            "replayed {id:?} at {p}, appended elsewhere"
        );
        // An entry whose append was refused, or that was never tried, cannot appear.
        assert!(
            at.is_some() || sc.close_early,
            "replayed {id:?}, never appended"
        );
    }
    j2.close().unwrap();
}

/// Runs `sc` under `n` random and `n` PCT (depth 3) schedules; prints the count.
fn explore(name: &str, n: usize, sc: Scenario) {
    let sc = Arc::new(sc);
    let s2 = sc.clone();
    let s3 = sc.clone();
    shuttle::check_random(move || run(&sc), n);
    shuttle::check_pct(move || run(&s2), n, 3);
    let fired = s3.fired.load(Ordering::Relaxed);
    eprintln!(
        "shuttle: journal {name}: {} schedules explored, fault fired in {fired}, no violation",
        2 * n
    );
}

#[test]
fn appenders_batches_and_workers() {
    explore("3 appenders, 2 workers", 1_000, Scenario::new(3, 2));
}

#[test]
fn trim_and_the_blank_maker_race_appenders() {
    explore(
        "trim + blank maker",
        1_000,
        Scenario {
            background_blanks: true,
            trim: true,
            ..Scenario::new(2, 3)
        },
    );
}

#[test]
fn shutdown_races_appenders() {
    explore(
        "shutdown during appends",
        1_000,
        Scenario {
            background_blanks: true,
            close_early: true,
            ..Scenario::new(2, 2)
        },
    );
}

#[test]
fn a_failed_flush_acknowledges_nothing_after_it() {
    for nth in 1..=3 {
        explore(
            &format!("fdatasync #{nth} fails once"),
            500,
            Scenario {
                fault: Some(Fault {
                    ops: FaultOps::Sync,
                    nth,
                    errno: libc::EIO,
                    persistent: false,
                }),
                ..Scenario::new(3, 2)
            },
        );
    }
}
