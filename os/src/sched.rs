//! The apply scheduler: one FIFO per collection handle (a [`Sequencer`]) of journaled
//! entries waiting to apply, drained in seq order by a pool of workers, and the cut a
//! checkpoint takes across all of them (everything at or below the cut applied, nothing
//! above it running).
//!
//! It owns only ordering and waiting; applying, journaling and callbacks stay with the
//! journaling driver. Its locks come from [`crate::sync`], so under the `shuttle`
//! feature the model tests at the bottom explore thread interleavings of submitters,
//! workers, a checkpointer, a reader and a failure, and fail on any deadlock.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use crate::sync::{AtomicBool, Condvar, Mutex, MutexGuard, Ordering};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking user callback must not wedge the store.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One entry waiting to apply.
#[derive(Debug)]
pub(crate) struct Pending<P> {
    pub(crate) seq: u64,
    pub(crate) payload: P,
}

#[derive(Debug)]
struct SeqQueue<P> {
    q: VecDeque<Pending<P>>,
    /// Handed to a worker (or parked): at most one worker drains a sequencer.
    scheduled: bool,
    /// Highest seq queued here.
    queued: u64,
    /// Highest seq of this handle applied.
    applied: u64,
}

/// Per-handle sequencer: a FIFO of entries waiting to apply, in seq order.
#[derive(Debug)]
pub(crate) struct Sequencer<P> {
    queue: Mutex<SeqQueue<P>>,
    /// Signalled when `applied` advances, and after every finished entry.
    applied_cv: Condvar,
}

impl<P> Default for Sequencer<P> {
    fn default() -> Self {
        Sequencer {
            queue: Mutex::new(SeqQueue {
                q: VecDeque::new(),
                scheduled: false,
                queued: 0,
                applied: 0,
            }),
            applied_cv: Condvar::new(),
        }
    }
}

#[derive(Debug)]
struct State<P> {
    /// Workers may not start entries above this (a checkpoint is cutting).
    hold_above: Option<u64>,
    /// Queued entries not applied yet.
    unapplied: BTreeSet<u64>,
    running: usize,
    /// Highest seq made durable by the journal (delivered in order).
    durable: u64,
    /// Highest seq queued for apply (== `durable` in writeahead mode; in parallel mode
    /// entries are queued before they are durable).
    queued_max: u64,
    /// Highest seq a checkpoint covered.
    checkpointed: u64,
    /// Sequencers whose next entry is above `hold_above`: set aside (still marked
    /// scheduled) until the hold is released, so no worker sits blocked on them while
    /// another sequencer still has entries below the cut.
    parked: Vec<Arc<Sequencer<P>>>,
}

/// The shared apply state of a mounted store.
#[derive(Debug)]
pub(crate) struct Scheduler<P> {
    state: Mutex<State<P>>,
    cv: Condvar,
    /// Submitters waiting for the apply backlog to shrink: woken one per applied entry
    /// (on `cv`, every apply woke every waiting submitter: with 64 clients the apply
    /// threads spent half their time in futex wake-ups).
    backlog_cv: Condvar,
    /// Set once by [`Scheduler::fail`]; every wait gives up when it is.
    failed: AtomicBool,
}

impl<P> Scheduler<P> {
    /// A scheduler whose journal is durable and queued through `last`, with the backend
    /// checkpointed at `checkpointed`.
    pub(crate) fn new(last: u64, checkpointed: u64) -> Self {
        Scheduler {
            state: Mutex::new(State {
                hold_above: None,
                unapplied: BTreeSet::new(),
                running: 0,
                durable: last,
                queued_max: last,
                checkpointed,
                parked: Vec::new(),
            }),
            cv: Condvar::new(),
            backlog_cv: Condvar::new(),
            failed: AtomicBool::new(false),
        }
    }

    fn is_failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }

    /// The store failed: waits end, holds no longer park entries (workers drain what
    /// is queued, so every waiter on a sequencer is woken).
    pub(crate) fn fail(&self) {
        self.failed.store(true, Ordering::SeqCst);
        // Taking the lock orders this with a waiter that checked the flag and is about
        // to wait: without it the notification could fall between the two.
        drop(lock(&self.state));
        self.cv.notify_all();
        self.backlog_cv.notify_all();
    }

    /// The journal made everything through `seq` durable.
    pub(crate) fn note_durable(&self, seq: u64) {
        {
            let mut s = lock(&self.state);
            s.durable = s.durable.max(seq);
        }
        self.cv.notify_all();
    }

    /// Entry `seq` of `sq` is committed and about to be queued: a read on `sq` that
    /// starts from now on waits for it, so whoever hears of the commit first (an
    /// inline `on_commit` runs before the entry is queued) reads its own write.
    /// It counts toward the apply backlog from now on as well, so a submitter that
    /// heard of the commit sees it in [`Scheduler::wait_backlog`].
    pub(crate) fn expect(&self, sq: &Sequencer<P>, seq: u64) {
        lock(&self.state).unapplied.insert(seq);
        let mut q = lock(&sq.queue);
        q.queued = q.queued.max(seq);
    }

    /// Queues an entry on its sequencer; `true` when the caller must hand the
    /// sequencer to a worker (it was idle).
    #[must_use]
    pub(crate) fn enqueue(&self, sq: &Arc<Sequencer<P>>, seq: u64, payload: P) -> bool {
        {
            let mut s = lock(&self.state);
            s.queued_max = s.queued_max.max(seq);
            s.unapplied.insert(seq);
        }
        let mut q = lock(&sq.queue);
        q.queued = q.queued.max(seq);
        q.q.push_back(Pending { seq, payload });
        !std::mem::replace(&mut q.scheduled, true)
    }

    /// Worker: the next entry of `sq` to apply, or `None` when the worker must let go
    /// of it (empty, or parked behind a checkpoint's cut). Every `Some` must be
    /// followed by [`Scheduler::finish`].
    pub(crate) fn next(&self, sq: &Arc<Sequencer<P>>) -> Option<Pending<P>> {
        let p = {
            let mut q = lock(&sq.queue);
            match q.q.pop_front() {
                Some(p) => p,
                None => {
                    q.scheduled = false;
                    return None;
                }
            }
        };
        let mut s = lock(&self.state);
        if s.hold_above.is_some_and(|h| p.seq > h) && !self.is_failed() {
            // Waiting here could take the last free worker from a sequencer whose
            // entries the checkpoint is waiting for (a deadlock with few workers).
            lock(&sq.queue).q.push_front(p);
            s.parked.push(sq.clone());
            return None;
        }
        s.running += 1;
        Some(p)
    }

    /// Worker: entry `seq` of `sq` is done (applied, rejected, or abandoned because the
    /// store failed).
    pub(crate) fn finish(&self, sq: &Sequencer<P>, seq: u64) {
        {
            let mut s = lock(&self.state);
            s.running -= 1;
            s.unapplied.remove(&seq);
        }
        self.cv.notify_all();
        self.backlog_cv.notify_one();
        {
            let mut q = lock(&sq.queue);
            if !self.is_failed() {
                q.applied = seq;
            }
        }
        sq.applied_cv.notify_all();
    }

    /// Reader: waits until every entry queued on `sq` so far has applied (read your own
    /// committed writes). `false` when the store failed first.
    pub(crate) fn wait_applied(&self, sq: &Sequencer<P>) -> bool {
        let q = lock(&sq.queue);
        let target = q.queued;
        // `finish` wakes this for every entry, failed or not.
        self.wait_while(&sq.applied_cv, q, Duration::from_millis(20), |q| {
            q.applied < target
        })
        .is_some()
    }

    /// Waits on `cv` while `busy` holds, giving up (`None`) once the store failed. Every
    /// change a caller waits for notifies `cv` (the model tests check it: shuttle's
    /// timed waits never time out); `backstop` only bounds the cost of a missed one.
    fn wait_while<'a, T>(
        &self,
        cv: &Condvar,
        mut g: MutexGuard<'a, T>,
        backstop: Duration,
        busy: impl Fn(&T) -> bool,
    ) -> Option<MutexGuard<'a, T>> {
        while busy(&g) {
            if self.is_failed() {
                return None;
            }
            g = cv
                .wait_timeout(g, backstop)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        Some(g)
    }

    /// Checkpoint: cuts at the highest queued seq, holds everything above it, and waits
    /// until everything at or below it has applied and nothing runs. Returns the cut
    /// (`None` when the store failed while waiting). Must be followed by
    /// [`Scheduler::release`] in every case.
    pub(crate) fn hold(&self) -> Option<u64> {
        let mut s = lock(&self.state);
        let cp = s.queued_max;
        s.hold_above = Some(cp);
        self.wait_while(&self.cv, s, Duration::from_millis(50), |s| {
            s.running > 0 || s.unapplied.first().is_some_and(|x| *x <= cp)
        })
        .map(|_| cp)
    }

    /// Ends a hold; returns the sequencers parked behind it, which the caller must hand
    /// to workers again.
    #[must_use]
    pub(crate) fn release(&self) -> Vec<Arc<Sequencer<P>>> {
        let parked = {
            let mut s = lock(&self.state);
            s.hold_above = None;
            std::mem::take(&mut s.parked)
        };
        self.cv.notify_all();
        parked
    }

    /// A checkpoint at `cp` is durable.
    pub(crate) fn mark_checkpointed(&self, cp: u64) {
        let mut s = lock(&self.state);
        s.checkpointed = s.checkpointed.max(cp);
    }

    /// Whether anything was queued after the last checkpoint.
    pub(crate) fn checkpoint_due(&self) -> bool {
        let s = lock(&self.state);
        s.queued_max > s.checkpointed
    }

    /// Submitter: waits while `max` or more queued entries are not applied yet (the
    /// apply backlog). `false` when the store failed first.
    pub(crate) fn wait_backlog(&self, max: usize) -> bool {
        let s = lock(&self.state);
        let max = max.max(1);
        self.wait_while(&self.backlog_cv, s, Duration::from_millis(50), |s| {
            s.unapplied.len() >= max
        })
        .is_some()
    }

    /// Shutdown: waits until every seq below `next` is durable and applied. `false`
    /// when the store failed first.
    pub(crate) fn wait_idle(&self, next: u64) -> bool {
        let s = lock(&self.state);
        self.wait_while(&self.cv, s, Duration::from_millis(50), |s| {
            s.durable + 1 < next || s.running > 0 || !s.unapplied.is_empty()
        })
        .is_some()
    }
}

#[cfg(all(test, feature = "shuttle"))]
mod model {
    //! Model checks of the scheduler (run with `cargo test -p ostore-os --features
    //! shuttle --lib sched`): shuttle runs the same small system under thousands of
    //! random and PCT schedules. Each run fails on a deadlock (every thread blocked), a
    //! lost wakeup (which shows as one: shuttle's timed waits never time out), or a
    //! broken promise:
    //! - every queued entry applies exactly once, in seq order per sequencer;
    //! - while a checkpoint holds its cut, nothing applies, and everything at or below
    //!   the cut has applied;
    //! - a reader that returns saw every entry queued before it on its handle applied;
    //! - after a failure every wait (hold, reader, shutdown) returns, also one for an
    //!   entry the journal never made durable.
    use super::*;
    use shuttle::sync::mpsc::{channel, Sender};
    use shuttle::thread;

    type Sq = Arc<Sequencer<u64>>;

    struct World {
        sched: Scheduler<u64>,
        seqs: Vec<Sq>,
        /// Next seq; held while queueing, so per-sequencer order == seq order.
        submit: Mutex<u64>,
        work: Mutex<Option<Sender<Sq>>>,
        /// The journal failed an append; later submits are refused.
        journal_failed: Mutex<bool>,
        /// Seqs queued, per sequencer.
        submitted: Mutex<Vec<Vec<u64>>>,
        /// Seqs applied, per sequencer, in apply order.
        applied: Mutex<Vec<Vec<u64>>>,
        /// (a checkpoint's cut is being taken, entries applying right now)
        cut: Mutex<(bool, usize)>,
    }

    impl World {
        fn dispatch(&self, sq: Sq) {
            if let Some(tx) = &*lock(&self.work) {
                tx.send(sq).expect("workers alive while the world is");
            }
        }

        fn drain(&self, sq: &Sq) {
            while let Some(p) = self.sched.next(sq) {
                if !self.sched.is_failed() {
                    {
                        let mut c = lock(&self.cut);
                        assert!(!c.0, "seq {} applying during a checkpoint's cut", p.seq);
                        c.1 += 1;
                    }
                    let k = p.payload as usize;
                    lock(&self.applied)[k].push(p.seq);
                    thread::yield_now();
                    lock(&self.cut).1 -= 1;
                }
                self.sched.finish(sq, p.seq);
            }
        }

        fn submit(&self, k: usize) {
            let mut next = lock(&self.submit);
            if *lock(&self.journal_failed) {
                // The journal is poisoned: nothing more is appended.
                return;
            }
            let seq = *next;
            *next += 1;
            lock(&self.submitted)[k].push(seq);
            let go = self.sched.enqueue(&self.seqs[k], seq, k as u64);
            drop(next);
            self.sched.note_durable(seq);
            if go {
                self.dispatch(self.seqs[k].clone());
            }
        }

        fn checkpoint(&self) {
            if let Some(cp) = self.sched.hold() {
                let mut c = lock(&self.cut);
                assert_eq!(c.1, 0, "an entry was applying when the hold returned");
                let applied = lock(&self.applied);
                for s in 1..=cp {
                    assert!(
                        applied.iter().any(|v| v.contains(&s)) || self.sched.is_failed(),
                        "seq {s} <= cut {cp} not applied when the hold returned"
                    );
                }
                drop(applied);
                c.0 = true;
                drop(c);
                thread::yield_now();
                lock(&self.cut).0 = false;
                self.sched.mark_checkpointed(cp);
            }
            for sq in self.sched.release() {
                self.dispatch(sq);
            }
        }
    }

    /// `workers` apply threads, two submitters on two handles (3 entries each), a
    /// checkpointer (two cuts), a reader on handle 0, and a failure when `fail`.
    fn run(workers: usize, fail: bool) {
        let w = Arc::new(World {
            sched: Scheduler::new(0, 0),
            seqs: vec![Arc::default(), Arc::default()],
            submit: Mutex::new(1),
            work: Mutex::new(None),
            journal_failed: Mutex::new(false),
            submitted: Mutex::new(vec![Vec::new(), Vec::new()]),
            applied: Mutex::new(vec![Vec::new(), Vec::new()]),
            cut: Mutex::new((false, 0)),
        });
        let (tx, rx) = channel::<Sq>();
        *lock(&w.work) = Some(tx);
        let rx = Arc::new(Mutex::new(rx));
        let pool: Vec<_> = (0..workers)
            .map(|_| {
                let (w, rx) = (w.clone(), rx.clone());
                thread::spawn(move || loop {
                    let sq = match lock(&rx).recv() {
                        Ok(sq) => sq,
                        Err(_) => return,
                    };
                    w.drain(&sq);
                })
            })
            .collect();
        let mut others = Vec::new();
        for k in 0..2 {
            let w = w.clone();
            others.push(thread::spawn(move || {
                for _ in 0..3 {
                    w.submit(k);
                }
            }));
        }
        {
            let w = w.clone();
            others.push(thread::spawn(move || {
                w.checkpoint();
                w.checkpoint();
            }));
        }
        {
            let w = w.clone();
            others.push(thread::spawn(move || {
                let queued_before = lock(&w.seqs[0].queue).queued;
                if w.sched.wait_applied(&w.seqs[0]) {
                    let submitted = lock(&w.submitted)[0].clone();
                    let applied = lock(&w.applied);
                    for s in submitted.into_iter().filter(|s| *s <= queued_before) {
                        assert!(
                            applied[0].contains(&s),
                            "reader returned before seq {s} of its handle applied"
                        );
                    }
                }
            }));
        }
        if fail {
            // The journal takes a seq for an append, then fails it: that seq never
            // becomes durable, and only the failure can end a wait for it.
            let w = w.clone();
            others.push(thread::spawn(move || {
                {
                    let mut next = lock(&w.submit);
                    *next += 1;
                    *lock(&w.journal_failed) = true;
                }
                w.sched.fail();
            }));
        }
        {
            // Shutdown's wait, racing with the rest.
            let w = w.clone();
            others.push(thread::spawn(move || {
                let next = *lock(&w.submit);
                let idle = w.sched.wait_idle(next);
                assert!(idle || fail, "shutdown wait gave up without a failure");
            }));
        }
        for t in others {
            t.join().unwrap();
        }
        let next = *lock(&w.submit);
        let idle = w.sched.wait_idle(next);
        assert!(idle != fail, "shutdown wait: idle {idle}, failed {fail}");
        // Shutdown: the workers end when the channel does.
        drop(lock(&w.work).take());
        for t in pool {
            t.join().unwrap();
        }
        let applied = lock(&w.applied);
        for (k, v) in applied.iter().enumerate() {
            assert!(
                v.windows(2).all(|p| p[0] < p[1]),
                "handle {k} out of order: {v:?}"
            );
            if !fail {
                assert_eq!(v.len(), 3, "handle {k} applied {v:?}");
            }
        }
        for sq in &w.seqs {
            let q = lock(&sq.queue);
            assert!(q.q.is_empty() || fail, "entries left queued");
        }
    }

    /// Runs `f` under `n` random schedules and `n` PCT (depth 3) ones; prints the count.
    fn explore(name: &str, n: usize, f: impl Fn() + Send + Sync + 'static) {
        let f = Arc::new(f);
        let g = f.clone();
        shuttle::check_random(move || f(), n);
        shuttle::check_pct(move || g(), n, 3);
        eprintln!(
            "shuttle: {name}: {} schedules explored, no violation",
            2 * n
        );
    }

    #[test]
    fn one_worker_never_deadlocks_behind_a_cut() {
        explore("1 worker", 3_000, || run(1, false));
    }

    #[test]
    fn two_workers_keep_order_and_the_cut() {
        explore("2 workers", 3_000, || run(2, false));
    }

    #[test]
    fn failure_wakes_every_wait() {
        explore("failure, 1 worker", 2_000, || run(1, true));
        explore("failure, 2 workers", 2_000, || run(2, true));
    }

    /// The journal failed an append nothing else is waiting on: only the failure's
    /// wakeup can end the shutdown wait and a checkpoint's hold on it.
    #[test]
    fn a_failure_alone_ends_every_wait() {
        explore("failure alone", 2_000, || {
            let sched = Arc::new(Scheduler::<u64>::new(0, 0));
            let sq: Sq = Arc::default();
            // Seq 1 queued and never applied (its worker is stuck elsewhere), seq 2
            // never durable. (A reader on `sq` is woken by the worker finishing seq
            // 1 as failed; `run` covers that.)
            assert!(sched.enqueue(&sq, 1, 0));
            let waits: Vec<_> = (0..2)
                .map(|i| {
                    let sched = sched.clone();
                    thread::spawn(move || {
                        if i == 0 {
                            assert!(!sched.wait_idle(3));
                        } else {
                            assert!(sched.hold().is_none());
                        }
                    })
                })
                .collect();
            sched.fail();
            for t in waits {
                t.join().unwrap();
            }
        });
    }
}
