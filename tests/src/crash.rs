//! Crash tests every backend runs: a real process killed with SIGKILL in the middle of a
//! concurrent workload ([`kill_test`]), and every crash state of small workloads on the
//! simulated disk ([`sim_crash_points`]), including crashes during the replay itself.
//!
//! Both check the same promise against the model ([`crate::model`]):
//! - every transaction whose `on_commit` fired is present after recovery;
//! - none is partially visible: the state of each client's collections equals the model
//!   after some prefix of that client's transactions, no shorter than what was committed;
//! - recovery itself can crash and be redone: mounting again gives the same state.
//!
//! Clients own disjoint collections, so each client's outcome depends only on its own
//! stream, which a seed regenerates in the parent ([`Stream`]).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use ostore_journal::vfs::{every_subset, kept_writes, subset, SimOp, Tear, TearFill};
use ostore_journal::{SimFs, Vfs};
use ostore_os::{CollectionId, Completion, ErrorKind, ObjectId, ObjectStore, OmapKey, Transaction};
use std::collections::BTreeMap;

use crate::harness::StoreFactory;
use crate::model::{Gen, Model};
use crate::rng::Rng;
use crate::state::{self, StoreState};

/// Concurrent clients in the kill test.
pub const CLIENTS: usize = 3;
/// Transactions a client keeps in flight (queued, commit not yet seen).
pub const WINDOW: usize = 4;
/// Transactions a kill-test child queues per client before it stops on its own.
const MAX_PER_CLIENT: usize = 3_000;

const ENV_CHILD: &str = "OSTORE_KILL_CHILD";
const ENV_LOG: &str = "OSTORE_KILL_LOG";
const ENV_SEED: &str = "OSTORE_KILL_SEED";
const ENV_MODE: &str = "OSTORE_KILL_MODE";

/// The collections client `k` owns: three PGs and a temp collection of its own pool, so
/// split and merge stay inside the client.
pub fn client_colls(k: usize) -> Vec<CollectionId> {
    let pool = 20 + k as u64;
    vec![
        CollectionId::pg(pool, 0),
        CollectionId::pg(pool, 1),
        CollectionId::pg(pool, 2),
        CollectionId::temp(pool, 0),
    ]
}

fn client_seed(seed: u64, k: usize) -> u64 {
    seed ^ (k as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// One client's deterministic stream of transactions, with the model state after each
/// prefix: `state(n)` is the state after the first `n` transactions.
#[derive(Debug)]
pub struct Stream {
    /// `None` for a scripted stream: its transactions are all given up front.
    gen: Option<Gen>,
    model: Model,
    txns: Vec<Transaction>,
    /// Whether each transaction passes state-free validation (an invalid one is refused
    /// by `queue_transactions` and never journaled).
    valid: Vec<bool>,
    states: Vec<StoreState>,
}

impl Stream {
    pub fn new(seed: u64, colls: Vec<CollectionId>) -> Stream {
        // Every stream starts with its first collection, so early transactions do something.
        let mut t = Transaction::new();
        t.create_collection(&colls[0], 0);
        let mut s = Stream::scripted(vec![t]);
        s.gen = Some(Gen::with_collections(seed, colls));
        s
    }

    /// A stream of exactly `txns`, with the model's state after each prefix.
    pub fn scripted(txns: Vec<Transaction>) -> Stream {
        let mut s = Stream {
            gen: None,
            model: Model::new(),
            txns: Vec::new(),
            valid: Vec::new(),
            states: vec![StoreState::new()],
        };
        for t in txns {
            s.push(t);
        }
        s
    }

    fn push(&mut self, t: Transaction) {
        let _ = self.model.apply(&t);
        self.valid.push(t.validate().is_ok());
        self.txns.push(t);
        self.states.push(self.model.state.clone());
    }

    fn ensure(&mut self, n: usize) {
        while self.txns.len() < n {
            let Some(gen) = self.gen.as_mut() else {
                panic!(
                    "scripted stream has {} transactions, {n} asked for",
                    self.txns.len()
                );
            };
            let t = gen.txn(&self.model);
            self.push(t);
        }
    }

    /// Transaction `i` (0-based).
    pub fn txn(&mut self, i: usize) -> Transaction {
        self.ensure(i + 1);
        self.txns[i].clone()
    }

    pub fn is_valid(&mut self, i: usize) -> bool {
        self.ensure(i + 1);
        self.valid[i]
    }

    /// The model state after the first `n` transactions.
    pub fn state(&mut self, n: usize) -> &StoreState {
        self.ensure(n);
        &self.states[n]
    }
}

/// The part of `st` in `colls`.
pub fn restrict(st: &StoreState, colls: &[CollectionId]) -> StoreState {
    st.iter()
        .filter(|(c, _)| colls.contains(c))
        .map(|(c, s)| (*c, s.clone()))
        .collect()
}

/// A counting semaphore for the in-flight window.
#[derive(Debug, Default)]
struct Window {
    n: Mutex<usize>,
    cv: Condvar,
}

impl Window {
    fn acquire(&self, max: usize) {
        let mut n = self.n.lock().unwrap();
        while *n >= max {
            n = self.cv.wait(n).unwrap();
        }
        *n += 1;
    }
    fn release(&self) {
        *self.n.lock().unwrap() -= 1;
        self.cv.notify_all();
    }
    fn drain(&self) {
        let mut n = self.n.lock().unwrap();
        while *n > 0 {
            n = self.cv.wait(n).unwrap();
        }
    }
}

/// The child side of [`kill_test`]: when this process was started as a kill-test child,
/// runs the workload (or only the recovery) and exits; otherwise returns.
fn maybe_child(factory: &dyn StoreFactory) {
    let Ok(dir) = std::env::var(ENV_CHILD) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let store = factory.create(&dir);
    if std::env::var(ENV_MODE).as_deref() == Ok("mkfs") {
        let code = match store.mkfs() {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("failpoint child: mkfs failed: {e}");
                4
            }
        };
        std::process::exit(code);
    }
    if let Err(e) = store.mount() {
        eprintln!("kill child: mount failed: {e}");
        std::process::exit(3);
    }
    if std::env::var(ENV_MODE).as_deref() == Ok("mount") {
        // Recovery only: the parent kills this process somewhere inside replay or the
        // checkpoint after it.
        let _ = store.umount();
        std::process::exit(0);
    }
    let seed: u64 = std::env::var(ENV_SEED)
        .ok()
        .and_then(|s| s.parse().ok())
        .expect("kill child: seed");
    let log = std::env::var(ENV_LOG).expect("kill child: log path");
    let log = Arc::new(Mutex::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("kill child: open log"),
    ));
    std::thread::scope(|s| {
        for k in 0..CLIENTS {
            let store = &store;
            let log = log.clone();
            s.spawn(move || {
                let colls = client_colls(k);
                let mut stream = Stream::new(client_seed(seed, k), colls.clone());
                let ch = store
                    .create_new_collection(&colls[0])
                    .expect("kill child: handle");
                let window = Arc::new(Window::default());
                for i in 0..MAX_PER_CLIENT {
                    let t = stream.txn(i);
                    window.acquire(WINDOW);
                    let (log, w) = (log.clone(), window.clone());
                    let done = Completion::on_commit(move |r| {
                        if r.is_ok() {
                            // One write(2) per line; the page cache survives SIGKILL.
                            let _ = log
                                .lock()
                                .unwrap()
                                .write_all(format!("{k} {i}\n").as_bytes());
                        }
                        w.release();
                    });
                    if store.queue_transactions(&ch, vec![t], done).is_err() {
                        // Refused by validation: never journaled; the callbacks were
                        // dropped with it.
                        window.release();
                    }
                }
                window.drain();
            });
        }
    });
    let _ = store.umount();
    std::process::exit(0);
}

/// Per-client highest committed transaction count, read from a child's log.
fn read_log(path: &Path) -> Vec<Vec<usize>> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut out = vec![Vec::new(); CLIENTS];
    for line in text.lines() {
        let mut it = line.split(' ');
        let (Some(k), Some(i)) = (it.next(), it.next()) else {
            continue;
        };
        if let (Ok(k), Ok(i)) = (k.parse::<usize>(), i.parse::<usize>()) {
            if k < CLIENTS {
                out[k].push(i);
            }
        }
    }
    out
}

fn spawn_child(
    test_name: &str,
    dir: &Path,
    log: &Path,
    seed: u64,
    mode: &str,
    failpoints: Option<&str>,
) -> std::process::Child {
    let mut cmd = Command::new(std::env::current_exe().expect("test binary path"));
    match failpoints {
        Some(f) => cmd.env(ostore_journal::failpoint::ENV, f),
        None => cmd.env_remove(ostore_journal::failpoint::ENV),
    };
    cmd
        // --include-ignored: the child must run even when the parent test is ignored by
        // default (run with --ignored).
        .args([
            test_name,
            "--exact",
            "--include-ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(ENV_CHILD, dir)
        .env(ENV_LOG, log)
        .env(ENV_SEED, seed.to_string())
        .env(ENV_MODE, mode)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn kill-test child")
}

/// What a kill test covered.
#[derive(Debug, Default, Clone, Copy)]
pub struct KillStats {
    pub iterations: usize,
    pub killed: usize,
    pub replays_killed: usize,
    pub committed_checked: usize,
}

/// The process-kill test: `iterations` times, a child (this test binary re-run as
/// `test_name`) mounts a fresh store and runs [`CLIENTS`] concurrent clients, each logging
/// the transactions whose `on_commit` fired; the parent SIGKILLs it at a random moment
/// (every third time it also kills a second child in the middle of recovery), remounts,
/// and checks each client's collections against its stream. Call it from a `#[test]`
/// named `test_name`; the child side runs inside the same call.
///
/// `OSTORE_KILL_ITERS` and `OSTORE_KILL_SEED_BASE` override the count and the seed.
pub fn kill_test(factory: &dyn StoreFactory, test_name: &str, iterations: usize) -> KillStats {
    maybe_child(factory);
    let iterations = std::env::var("OSTORE_KILL_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(iterations);
    let base: u64 = std::env::var("OSTORE_KILL_SEED_BASE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x0c0f_fee0);
    let scratch = tempfile::Builder::new()
        .prefix(&format!("ostore-kill-{}-", factory.name()))
        .tempdir()
        .expect("scratch dir");
    let keep = std::env::var_os("OSTORE_KILL_KEEP").map(PathBuf::from);
    let mut stats = KillStats::default();
    let mut rng = Rng::new(base);
    for it in 0..iterations {
        let seed = base.wrapping_add(it as u64);
        let dir = scratch.path().join(format!("store{it}"));
        let log = scratch.path().join(format!("commits{it}.log"));
        let store = factory.create(&dir);
        store.mkfs().expect("mkfs");
        drop(store);
        let mut child = spawn_child(test_name, &dir, &log, seed, "work", None);
        std::thread::sleep(Duration::from_millis(rng.range(20, 300)));
        let finished = child.try_wait().expect("child status").is_some();
        if !finished {
            let _ = child.kill();
            stats.killed += 1;
        }
        let status = child.wait().expect("wait for child");
        if finished {
            assert!(
                status.success(),
                "iteration {it} (seed {seed}): child failed: {status}"
            );
        }
        if it % 3 == 1 {
            let mut r = spawn_child(test_name, &dir, &log, seed, "mount", None);
            std::thread::sleep(Duration::from_millis(rng.range(0, 40)));
            if r.try_wait().expect("child status").is_none() {
                let _ = r.kill();
                stats.replays_killed += 1;
            }
            let _ = r.wait();
        }
        // OSTORE_KILL_KEEP=DIR keeps a copy of the crashed store as recovery found it,
        // for a post-mortem of a failing iteration (replaying it is deterministic).
        let kept = keep.as_ref().map(|k| {
            let to = k.join(format!("store{it}-seed{seed}"));
            crate::harness::copy_tree(&dir, &to);
            to
        });
        let store = factory.create(&dir);
        store
            .mount()
            .unwrap_or_else(|e| panic!("iteration {it} (seed {seed}): mount after kill: {e}"));
        let actual = state::capture(&*store).expect("capture");
        store.umount().expect("umount");
        stats.committed_checked += check_recovered(
            &actual,
            &log,
            seed,
            &format!("iteration {it} (seed {seed})"),
        );
        stats.iterations += 1;
        if let Some(k) = kept {
            crate::harness::remove_tree(&k);
        }
        crate::harness::remove_tree(&dir);
        let _ = std::fs::remove_file(&log);
    }
    crate::coverage::report(&format!(
        "kill test on {}: {} iterations, {} killed mid-workload, {} killed mid-recovery, {} committed transactions verified",
        factory.name(),
        stats.iterations,
        stats.killed,
        stats.replays_killed,
        stats.committed_checked
    ));
    stats
}

/// Checks a recovered store's state against each client's stream: the transactions
/// whose `on_commit` fired (read from the child's `log`) are a prefix of the valid ones,
/// and each client's collections equal the model after some prefix at least that long.
/// Returns how many committed transactions it checked.
fn check_recovered(actual: &StoreState, log: &Path, seed: u64, label: &str) -> usize {
    let committed = read_log(log);
    let mut checked = 0;
    for (k, done) in committed.iter().enumerate() {
        let colls = client_colls(k);
        let mut stream = Stream::new(client_seed(seed, k), colls.clone());
        // on_commit fires in order: the committed transactions are a prefix of the
        // valid ones.
        let c = done.iter().map(|i| i + 1).max().unwrap_or(0);
        let mut sorted = done.clone();
        sorted.sort_unstable();
        let expect_done: Vec<usize> = (0..c).filter(|i| stream.is_valid(*i)).collect();
        assert_eq!(
            sorted, expect_done,
            "{label} client {k}: on_commit fired out of order or twice"
        );
        let mine = restrict(actual, &colls);
        let hi = (c + WINDOW * 4 + 8).min(MAX_PER_CLIENT + 1);
        let found = (c..=hi).find(|n| *stream.state(*n) == mine);
        if found.is_none() {
            let d = state::diff(stream.state(c), &mine).unwrap_or_default();
            panic!(
                "{label} client {k}: state after recovery matches no \
                 prefix of {c}..={hi} transactions (committed {c}); diff against {c}:\n{d}"
            );
        }
        checked += expect_done.len();
    }
    checked
}

/// What a failpoint test covered.
#[derive(Debug, Default, Clone)]
pub struct FailpointStats {
    /// Child processes run with a failpoint armed.
    pub runs: usize,
    /// Per failpoint, how many of its runs crashed there.
    pub fired: std::collections::BTreeMap<&'static str, usize>,
    /// Crashes in the middle of mkfs after which the directory read as unformatted.
    pub unformatted: usize,
    pub committed_checked: usize,
    /// Extra workload runs for points the normal budget did not reach.
    pub retries: usize,
}

/// Whether a failpoint child crashed at its failpoint (false: it finished, or the
/// parent killed it after `limit`).
fn wait_child(mut child: std::process::Child, limit: Duration) -> bool {
    use std::os::unix::process::ExitStatusExt as _;
    let start = std::time::Instant::now();
    loop {
        if let Some(st) = child.try_wait().expect("child status") {
            let aborted = st.signal() == Some(libc::SIGABRT);
            assert!(
                aborted || st.success(),
                "failpoint child failed without reaching its failpoint: {st}"
            );
            return aborted;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The failpoint crash test: for every named failpoint
/// ([`ostore_journal::failpoint::ALL`]) and each hit count in `hits`, a child process
/// crashes exactly there (`std::process::abort`), once during mkfs and once during the
/// kill test's concurrent workload (whose checkpoints, rotations and trims pass the
/// journal and checkpoint points), then a second child crashes at the same point during
/// recovery. After a crash in mkfs the directory is either detectably unformatted (mount
/// refuses it with NotFound, and a new mkfs succeeds) or a whole, empty store. After a
/// crash in the workload or recovery the state is checked as the kill test checks it.
/// Call it from a `#[test]` named `test_name`.
pub fn failpoint_test(factory: &dyn StoreFactory, test_name: &str, hits: &[u64]) -> FailpointStats {
    use ostore_journal::failpoint;
    maybe_child(factory);
    const {
        assert!(
            failpoint::ENABLED,
            "the tests crate must build ostore-journal with its failpoints feature"
        )
    };
    let scratch = tempfile::Builder::new()
        .prefix(&format!("ostore-fail-{}-", factory.name()))
        .tempdir()
        .expect("scratch dir");
    let mut stats = FailpointStats::default();
    let limit = Duration::from_secs(3);
    let mut it = 0u64;
    for &point in failpoint::ALL {
        for &n in hits {
            it += 1;
            let seed = 0xfa11_0000 + it;
            let spec = format!("{point}={n}");
            let label = format!("failpoint {spec} (seed {seed})");
            // 1. A crash during mkfs.
            let dir = scratch.path().join(format!("mkfs{it}"));
            let log = scratch.path().join(format!("mkfs{it}.log"));
            let fired = wait_child(
                spawn_child(test_name, &dir, &log, seed, "mkfs", Some(&spec)),
                limit,
            );
            stats.runs += 1;
            if fired {
                *stats.fired.entry(point).or_default() += 1;
            }
            let store = factory.create(&dir);
            match store.mount() {
                Ok(()) => {
                    let st = state::capture(&*store).expect("capture");
                    assert!(st.is_empty(), "{label}: a store after mkfs holds {st:?}");
                    store.umount().expect("umount");
                }
                Err(e) => {
                    assert!(fired, "{label}: mkfs finished but mount fails: {e}");
                    assert_eq!(
                        e.kind(),
                        ErrorKind::NotFound,
                        "{label}: a crash during mkfs must leave the directory unformatted, \
                         or formatted; mount said: {e}"
                    );
                    stats.unformatted += 1;
                    store
                        .mkfs()
                        .unwrap_or_else(|e| panic!("{label}: mkfs over a crashed mkfs: {e}"));
                    store
                        .mount()
                        .unwrap_or_else(|e| panic!("{label}: mount after re-mkfs: {e}"));
                    store.umount().expect("umount");
                }
            }
            crate::harness::remove_tree(&dir);
            // 2. A crash during the workload, then one during its recovery.
            work_crash(
                factory,
                test_name,
                &scratch,
                &mut stats,
                (point, n),
                it,
                limit,
            );
        }
    }
    // A point no run reached within the normal budget (a checkpoint whose syncfs waits
    // behind other tests' writes on a loaded machine): once more at its first hit, with
    // time to get there. The child ends by itself when its workload is done.
    for &point in failpoint::ALL {
        for _ in 0..RETRIES {
            if stats.fired.contains_key(point) {
                break;
            }
            it += 1;
            stats.retries += 1;
            work_crash(
                factory,
                test_name,
                &scratch,
                &mut stats,
                (point, 1),
                it,
                RETRY_LIMIT,
            );
        }
    }
    crate::coverage::report(&format!(
        "failpoint test on {}: {} runs ({} retries of points not reached in time), {} crashes in mkfs left it unformatted, {} committed transactions verified; crashes per failpoint: {:?}",
        factory.name(),
        stats.runs,
        stats.retries,
        stats.unformatted,
        stats.committed_checked,
        stats.fired
    ));
    stats
}

/// Attempts per failpoint that no run of the normal budget reached.
const RETRIES: usize = 3;
/// Time a retried child has to reach its failpoint.
const RETRY_LIMIT: Duration = Duration::from_secs(60);

/// A crash at the `n`-th hit of `point` during the concurrent workload of a new store,
/// then (when it fired) a crash at the same point during its recovery; then the
/// recovered state is checked as the kill test checks it.
fn work_crash(
    factory: &dyn StoreFactory,
    test_name: &str,
    scratch: &tempfile::TempDir,
    stats: &mut FailpointStats,
    (point, n): (&'static str, u64),
    it: u64,
    limit: Duration,
) {
    let seed = 0xfa11_0000 + it;
    let spec = format!("{point}={n}");
    let label = format!("failpoint {spec} (seed {seed})");
    let dir = scratch.path().join(format!("work{it}"));
    let log = scratch.path().join(format!("work{it}.log"));
    let store = factory.create(&dir);
    store.mkfs().expect("mkfs");
    drop(store);
    let fired = wait_child(
        spawn_child(test_name, &dir, &log, seed, "work", Some(&spec)),
        limit,
    );
    stats.runs += 1;
    if fired {
        *stats.fired.entry(point).or_default() += 1;
        let again = wait_child(
            spawn_child(
                test_name,
                &dir,
                &log,
                seed,
                "mount",
                Some(&format!("{point}=1")),
            ),
            limit,
        );
        stats.runs += 1;
        if again {
            *stats.fired.entry(point).or_default() += 1;
        }
    }
    let store = factory.create(&dir);
    store
        .mount()
        .unwrap_or_else(|e| panic!("{label}: mount after the crash: {e}"));
    let actual = state::capture(&*store).expect("capture");
    store.umount().expect("umount");
    stats.committed_checked += check_recovered(&actual, &log, seed, &label);
    crate::harness::remove_tree(&dir);
    let _ = std::fs::remove_file(&log);
}

/// The libtest name of a test from its `module_path!()`-based path: without the crate,
/// so a child started with `--exact` runs this test, also inside a module, and not a
/// same-named one with another factory.
pub fn test_name(path: &'static str) -> &'static str {
    path.split_once("::").map_or(path, |(_, rest)| rest)
}

/// Runs [`failpoint_test`] and requires every failpoint to have fired at least once.
/// `path` is the test's `concat!(module_path!(), "::", name)` (see [`test_name`]).
pub fn failpoint_recovery(factory: &dyn StoreFactory, path: &'static str) {
    let stats = failpoint_test(factory, test_name(path), &[1, 3]);
    for p in ostore_journal::failpoint::ALL {
        assert!(
            stats.fired.get(p).copied().unwrap_or(0) > 0,
            "failpoint {p} never fired: the test did not reach it ({stats:?})"
        );
    }
    assert!(
        stats.committed_checked > 0,
        "no transaction was ever checked"
    );
}

/// Expands to the failpoint crash test (`failpoint_recovery`) for one backend.
#[macro_export]
macro_rules! failpoint_tests {
    ($factory:expr) => {
        #[test]
        fn failpoint_recovery() {
            $crate::crash::failpoint_recovery(
                &$factory,
                concat!(module_path!(), "::failpoint_recovery"),
            );
        }
    };
    ($factory:expr, ignore = $why:literal) => {
        #[test]
        #[ignore = $why]
        fn failpoint_recovery() {
            $crate::crash::failpoint_recovery(
                &$factory,
                concat!(module_path!(), "::failpoint_recovery"),
            );
        }
    };
}

/// Journaling options for stores on the simulated disk: [`JournalingOptions::small`]
/// with blank volumes made on demand (which keeps the disk's log deterministic),
/// 128 KiB volumes, one flush and one apply thread. Every crash state rebuilds its disk
/// image from the log, and blank volumes are written whole: with 1 MiB volumes copying
/// them was most of the crash tests' time, and small volumes rotate (and span) more
/// often, which is more to test. The workloads run on it are serial (one client, each
/// transaction waited for), so they never have a second flush or apply to run; the
/// threads are spawned at every mount, and spawning the default six more was 40% of
/// the time of `sim_crash_small_workloads`.
pub fn sim_journaling_options() -> ostore_os::journaling::JournalingOptions {
    let mut o = ostore_os::journaling::JournalingOptions::small();
    o.journal.background_blanks = false;
    o.geometry.volume_size = 128 << 10;
    o.journal.max_inflight = 1;
    o.apply_threads = 1;
    o
}

/// Journaling options for the concurrent simulated-disk workloads
/// ([`sim_crash_concurrent`]): [`sim_journaling_options`] with four batches in flight,
/// so a crash finds several journal writes unsynced at once, in any subset of which
/// the disk may have kept.
pub fn sim_concurrent_journaling_options() -> ostore_os::journaling::JournalingOptions {
    let mut o = sim_journaling_options();
    o.journal.max_inflight = 4;
    o
}

/// Makes stores whose every file lives on a given [`Vfs`] (a simulated disk).
pub trait SimStoreFactory: Send + Sync {
    fn name(&self) -> &str;
    /// A store in `dir` on `vfs`, journaling with `opts` (the backend may change the
    /// mode, never the geometry or the concurrency).
    fn create_with(
        &self,
        vfs: Arc<dyn Vfs>,
        dir: &Path,
        opts: ostore_os::journaling::JournalingOptions,
    ) -> Arc<dyn ObjectStore>;
    /// A store journaling with [`sim_journaling_options`].
    fn create(&self, vfs: Arc<dyn Vfs>, dir: &Path) -> Arc<dyn ObjectStore> {
        self.create_with(vfs, dir, sim_journaling_options())
    }
}

/// A [`SimStoreFactory`] from a closure.
pub struct FnSimFactory<F> {
    name: String,
    f: F,
}

impl<F> std::fmt::Debug for FnSimFactory<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FnSimFactory({})", self.name)
    }
}

impl<F> SimStoreFactory for FnSimFactory<F>
where
    F: Fn(Arc<dyn Vfs>, &Path, ostore_os::journaling::JournalingOptions) -> Arc<dyn ObjectStore>
        + Send
        + Sync,
{
    fn name(&self) -> &str {
        &self.name
    }
    fn create_with(
        &self,
        vfs: Arc<dyn Vfs>,
        dir: &Path,
        opts: ostore_os::journaling::JournalingOptions,
    ) -> Arc<dyn ObjectStore> {
        (self.f)(vfs, dir, opts)
    }
}

pub fn sim_factory<F>(name: &str, f: F) -> FnSimFactory<F>
where
    F: Fn(Arc<dyn Vfs>, &Path, ostore_os::journaling::JournalingOptions) -> Arc<dyn ObjectStore>
        + Send
        + Sync,
{
    FnSimFactory {
        name: name.to_string(),
        f,
    }
}

/// What a simulated-disk crash run covered.
#[derive(Debug, Default, Clone, Copy)]
pub struct SimStats {
    pub workloads: usize,
    /// Distinct crash states mounted and checked.
    pub crash_states: usize,
    /// Crash states skipped because one with the same bytes and bounds was checked.
    pub duplicates: usize,
    /// Of the distinct crash states, those keeping a subset of the unsynced writes that
    /// is not a prefix of them.
    pub non_prefix: usize,
    /// Of the distinct crash states, those where a write lost sectors out of order.
    pub scattered: usize,
    /// Ops in the seeded random workloads (not counting the small scripted ones).
    pub ops: usize,
    pub unformatted: usize,
    pub recovery_crashes: usize,
}

impl SimStats {
    fn add(&mut self, o: &SimStats) {
        self.workloads += o.workloads;
        self.crash_states += o.crash_states;
        self.duplicates += o.duplicates;
        self.non_prefix += o.non_prefix;
        self.scattered += o.scattered;
        self.ops += o.ops;
        self.unformatted += o.unformatted;
        self.recovery_crashes += o.recovery_crashes;
    }
}

impl std::fmt::Display for SimStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} workloads, {} distinct crash states ({} unformatted; {} keeping a non-prefix subset of the unsynced writes; {} with a write's sectors lost out of order; {} duplicates skipped), {} crashes during recovery",
            self.workloads,
            self.crash_states,
            self.unformatted,
            self.non_prefix,
            self.scattered,
            self.duplicates,
            self.recovery_crashes
        )
    }
}

const SIM_DIR: &str = "/store";

/// Unsynced ops a crash point keeps every subset of; past this, every prefix (sampled
/// when there are many) and a seeded sample of other subsets.
const EVERY_SUBSET_UP_TO: usize = 8;

/// The crash states tried at one crash point: every subset of the unsynced operations
/// (each in log order; see [`EVERY_SUBSET_UP_TO`]), and for each subset that keeps a
/// write, that subset with one kept write torn: cut at a random byte, or with a random
/// set of its sectors lost (a disk's cache may write a request's sectors in any order).
/// The third item says whether the kept subset is not a prefix of the unsynced ops.
/// `ops` is the run's whole log ([`SimFs::ops`], copied once per run, not per point).
fn variants(
    ops: &[SimOp],
    unsynced: &[usize],
    rng: &mut Rng,
) -> Vec<(Vec<usize>, Option<Tear>, bool)> {
    let keeps: Vec<Vec<usize>> = if unsynced.len() <= EVERY_SUBSET_UP_TO {
        every_subset(unsynced).collect()
    } else {
        let n = unsynced.len();
        let mut lens = vec![0, n];
        lens.extend((0..6).map(|_| rng.index(n + 1)));
        lens.sort_unstable();
        lens.dedup();
        let mut v: Vec<Vec<usize>> = lens.iter().map(|&k| unsynced[..k].to_vec()).collect();
        v.extend((0..16).map(|_| subset(unsynced, rng.next_u64())));
        v
    };
    let mut out = Vec::new();
    for keep in keeps {
        let np = !unsynced.starts_with(&keep);
        out.push((keep.clone(), None, np));
        let writes = kept_writes(ops, &keep, 2);
        if writes.is_empty() {
            continue;
        }
        let w = writes[rng.index(writes.len())];
        let fill = TearFill::pick(rng.next_u64());
        // One tear per subset, of either kind: tears are sampled anyway, and two per
        // subset cost the exhaustive small-workload tier a quarter more time.
        let scatter = if rng.chance(1, 2) {
            Tear::random_scatter(w, rng.next_u64(), fill)
        } else {
            None
        };
        let tear = scatter
            .unwrap_or_else(|| Tear::prefix(w.op, rng.range(1, w.len as u64 - 1) as usize, fill));
        out.push((keep.clone(), Some(tear), np));
    }
    out
}

/// A store mounted on a crash image, and the state it shows.
type Recovered = (Arc<dyn ObjectStore>, StoreState);

/// Mounts a crash image; `Ok(None)` when it is detectably unformatted.
fn recover(
    f: &dyn SimStoreFactory,
    fs: &SimFs,
    opts: ostore_os::journaling::JournalingOptions,
) -> std::result::Result<Option<Recovered>, String> {
    let store = f.create_with(Arc::new(fs.clone()), Path::new(SIM_DIR), opts);
    match store.mount() {
        Ok(()) => {
            let st = state::capture(&*store).map_err(|e| format!("capture: {e}"))?;
            // A recovered store is also whole by its own deep check (every record,
            // reference and data checksum), not only equal to the model.
            let r = store.fsck(true).map_err(|e| format!("fsck: {e}"))?;
            if !r.is_clean() {
                return Err(format!("fsck after recovery is not clean: {r:?}"));
            }
            Ok(Some((store, st)))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("mount: {e}")),
    }
}

/// Every crash point of `workloads` small seeded workloads on the simulated disk: mkfs,
/// mount, `txns` transactions of one client (each waited for), a remount in the middle
/// (a checkpoint and a journal trim), and a final umount. At each crash point, each
/// variant of the unsynced writes is mounted:
/// - before mkfs completed: detectably unformatted (ENOENT) or an empty store;
/// - after: the state equals the model after some prefix no shorter than what was
///   acknowledged, and no longer than what was submitted.
///
/// For some of those recoveries, the recovery mount is itself crashed at a random point
/// of its own I/O and mounted again: the state must be the same.
pub fn sim_crash_points(
    f: &dyn SimStoreFactory,
    seed: u64,
    workloads: usize,
    min_ops: usize,
) -> SimStats {
    let mut stats = SimStats::default();
    let mut rng = Rng::new(seed ^ 0x51a1_c4a5);
    for w in 0..workloads {
        let wseed = seed.wrapping_add(w as u64);
        let colls = client_colls(0);
        let mut stream = Stream::new(wseed, colls.clone());
        // As many of the stream's transactions as hold `min_ops` ops.
        let mut txns = 0;
        let mut ops = 0;
        while ops < min_ops {
            ops += stream.txn(txns).ops().len();
            txns += 1;
        }
        stats.ops += ops;
        let label = format!("workload {w} (seed {wseed}, {txns} transactions, {ops} ops)");
        crash_workload(
            f,
            &label,
            &mut stream,
            &colls,
            txns,
            Shape {
                remount_before: txns / 2,
                after_mkfs: false,
                covered_before: None,
            },
            &mut rng,
            &mut stats,
        );
    }
    crate::coverage::report(&format!(
        "simulated-disk crash test on {}: {stats}; seeded workloads of {} ops in all",
        f.name(),
        stats.ops
    ));
    stats
}

/// Per client, per transaction: the op count before it was queued, and the op count
/// when its `on_commit` fired (if it did).
type ClientMarks = Vec<Vec<(usize, Option<usize>)>>;

/// Every crash point of `workloads` seeded concurrent workloads on the simulated disk:
/// [`CLIENTS`] clients, each on its own collections and thread, queue `per_client`
/// transactions each with up to [`WINDOW`] in flight, into a store journaling with
/// [`sim_concurrent_journaling_options`] (several batches written before the first is
/// synced). At every crash point every subset of the unsynced writes (bounded as
/// [`variants`] says) is mounted and, per client, the state must equal its stream after
/// some prefix between what it saw committed and what it had queued.
///
/// Threads make the order of the log differ from run to run; a failure prints the
/// seed, the crash point and the kept writes, and the log it came from is the run's own.
pub fn sim_crash_concurrent(
    f: &dyn SimStoreFactory,
    seed: u64,
    workloads: usize,
    per_client: usize,
) -> SimStats {
    let mut stats = SimStats::default();
    let mut max_unsynced = 0;
    let mut rng = Rng::new(seed ^ 0xc0c0_a11e);
    let opts = sim_concurrent_journaling_options();
    for w in 0..workloads {
        let wseed = seed.wrapping_add(w as u64);
        let fs = SimFs::new();
        let vfs: Arc<dyn Vfs> = Arc::new(fs.clone());
        let store = f.create_with(vfs.clone(), Path::new(SIM_DIR), opts.clone());
        store.mkfs().expect("mkfs");
        store.mount().expect("mount");
        // A flush that takes a while lets the other flush workers write meanwhile.
        fs.set_sync_latency(Duration::from_micros(300));
        let mut streams: Vec<Stream> = (0..CLIENTS)
            .map(|k| Stream::new(client_seed(wseed, k), client_colls(k)))
            .collect();
        // Generated up front: the model runs on this thread, not inside the workload.
        for s in &mut streams {
            s.ensure(per_client);
        }
        let marks: Arc<Mutex<ClientMarks>> =
            Arc::new(Mutex::new(vec![vec![(0, None); per_client]; CLIENTS]));
        let first = fs.op_count() + 1;
        std::thread::scope(|sc| {
            for (k, stream) in streams.iter().enumerate() {
                let (store, fs, marks) = (&store, &fs, &marks);
                sc.spawn(move || {
                    let ch = store
                        .create_new_collection(&client_colls(k)[0])
                        .expect("handle");
                    let window = Arc::new(Window::default());
                    for i in 0..per_client {
                        window.acquire(WINDOW);
                        marks.lock().unwrap()[k][i].0 = fs.op_count();
                        let (w2, m2, fs2) = (window.clone(), marks.clone(), fs.clone());
                        let done = Completion::on_commit(move |r| {
                            if r.is_ok() {
                                m2.lock().unwrap()[k][i].1 = Some(fs2.op_count());
                            }
                            w2.release();
                        });
                        let t = stream.txns[i].clone();
                        if store.queue_transactions(&ch, vec![t], done).is_err() {
                            // Refused by validation: never journaled.
                            window.release();
                        }
                    }
                    window.drain();
                });
            }
        });
        fs.set_sync_latency(Duration::ZERO);
        store.umount().expect("final umount");
        drop(store);
        let marks = marks.lock().unwrap().clone();
        let total = fs.op_count();
        let ops = fs.ops();
        let mut seen = std::collections::HashSet::new();
        for at in first..=total {
            // Per client: transactions that must be there, and that may be.
            let bounds: Vec<(usize, usize)> = marks
                .iter()
                .map(|m| {
                    let must = m
                        .iter()
                        .rposition(|(_, a)| a.is_some_and(|a| a <= at))
                        .map_or(0, |i| i + 1);
                    let may = m.iter().filter(|(s, _)| *s <= at).count();
                    (must, may)
                })
                .collect();
            let unsynced = fs.unsynced_at(at);
            max_unsynced = max_unsynced.max(unsynced.len());
            for (keep, tear, non_prefix) in variants(&ops, &unsynced, &mut rng) {
                let img = fs.crash_state(at, &keep, tear);
                if !seen.insert((img.fingerprint(), bounds.clone())) {
                    stats.duplicates += 1;
                    continue;
                }
                stats.non_prefix += usize::from(non_prefix);
                stats.scattered += usize::from(tear.is_some_and(|t| t.lost_sectors != 0));
                let what = || {
                    format!(
                        "concurrent workload {w} (seed {wseed}) crash at op {at}/{total} keeping {keep:?} tear {tear:?}"
                    )
                };
                check_crash_state(
                    f,
                    &img,
                    opts.clone(),
                    false,
                    &what,
                    &mut |st| {
                        for (k, &(must, may)) in bounds.iter().enumerate() {
                            let mine = restrict(st, &client_colls(k));
                            if !(must..=may).any(|n| streams[k].states[n] == mine) {
                                let d = state::diff(&streams[k].states[must], &mine)
                                    .unwrap_or_default();
                                return Err(format!(
                                    "client {k}: state matches no prefix in {must}..={may}:\n{d}"
                                ));
                            }
                        }
                        Ok(())
                    },
                    &mut rng,
                    &mut stats,
                );
            }
        }
        stats.workloads += 1;
        stats.ops += streams
            .iter()
            .map(|s| {
                s.txns[..per_client]
                    .iter()
                    .map(|t| t.ops().len())
                    .sum::<usize>()
            })
            .sum::<usize>();
    }
    crate::coverage::report(&format!(
        "simulated-disk crash test of concurrent workloads on {} ({CLIENTS} clients x {per_client} transactions, {WINDOW} in flight each, at most {max_unsynced} ops unsynced at once): {stats}",
        f.name()
    ));
    assert!(
        max_unsynced >= 2 && stats.non_prefix > 0,
        "the concurrent workloads never had several writes unsynced at once ({max_unsynced}): {stats}"
    );
    stats
}

/// One transaction per op kind, on the small world [`op_kind_setup`] builds in the first
/// client's collections: `c` holds object `a` (data, two attrs, an omap header and
/// keys), `b` does not exist, and collection `d` does not exist until an op makes it.
/// Ops whose preconditions fail are kept: a rejected transaction must change nothing,
/// after a crash too.
pub fn op_kinds() -> Vec<(&'static str, Transaction)> {
    let colls = client_colls(0);
    let (c, d) = (colls[0], colls[1]);
    let a = ObjectId::new(20, "a");
    let b = ObjectId::new(20, "b");
    let key = |k: &str| OmapKey::from(k.as_bytes().to_vec());
    let attrs: BTreeMap<String, Vec<u8>> =
        [("x".into(), b"1".to_vec()), ("k1".into(), b"new".to_vec())].into();
    let keys: BTreeMap<OmapKey, Vec<u8>> =
        [(key("m"), b"m".to_vec()), (key("z"), b"z".to_vec())].into();
    // One transaction built by the body, named.
    macro_rules! kind {
        ($name:literal, |$t:ident| $body:expr) => {{
            let mut $t = Transaction::new();
            $body;
            ($name, $t)
        }};
    }
    vec![
        kind!("nop", |t| t.nop()),
        kind!("touch", |t| t.touch(&c, &b)),
        kind!("create", |t| t.create(&c, &b)),
        kind!("write", |t| t.write(&c, &a, 4000, vec![7u8; 300])),
        kind!("write-new", |t| t.write(&c, &b, 0, vec![8u8; 5000])),
        kind!("zero", |t| t.zero(&c, &a, 10, 100)),
        kind!("truncate-down", |t| t.truncate(&c, &a, 5)),
        kind!("truncate-up", |t| t.truncate(&c, &a, 20_000)),
        kind!("remove", |t| t.remove(&c, &a)),
        kind!("setattr", |t| t.setattr(&c, &a, "k3", b"v3".to_vec())),
        kind!("setattrs", |t| t.setattrs(&c, &a, attrs.clone())),
        kind!("rmattr", |t| t.rmattr(&c, &a, "k1")),
        kind!("rmattrs", |t| t.rmattrs(&c, &a)),
        kind!("clone", |t| t.clone_obj(&c, &a, &b)),
        kind!("clone_range", |t| t.clone_range(&c, &a, &b, 0, 100, 50)),
        kind!("mkcoll", |t| t.create_collection(&d, 0)),
        kind!("rmcoll", |t| t.remove_collection(&d)),
        kind!("omap_clear", |t| t.omap_clear(&c, &a)),
        kind!("omap_setkeys", |t| t.omap_setkeys(&c, &a, keys.clone())),
        kind!("omap_rmkeys", |t| t.omap_rmkeys(&c, &a, [key("k")].into())),
        kind!("omap_setheader", |t| t.omap_setheader(
            &c,
            &a,
            b"hdr2".to_vec()
        )),
        kind!("omap_rmkeyrange", |t| t.omap_rmkeyrange(
            &c,
            &a,
            b"a".to_vec(),
            b"l".to_vec()
        )),
        kind!("split", |t| t
            .create_collection(&d, 1)
            .split_collection(&c, 1, 1, &d)),
        kind!("merge", |t| t.merge_collection(&d, &c, 0)),
        kind!("move_rename", |t| t
            .create_collection(&d, 0)
            .collection_move_rename(&c, &a, &d, &b)),
        kind!("try_rename", |t| t.try_rename(&c, &a, &b)),
        kind!("alloc_hint", |t| t.set_alloc_hint(&c, &a, 4 << 20, 4096, 0)),
        kind!("coll_hint", |t| t.collection_hint(&c, 1, b"hint".to_vec())),
        kind!("set_bits", |t| t.collection_set_bits(&c, 2)),
    ]
}

/// The transaction every small workload starts with (see [`op_kinds`]).
pub fn op_kind_setup() -> Transaction {
    let c = client_colls(0)[0];
    let a = ObjectId::new(20, "a");
    let mut t = Transaction::new();
    t.create_collection(&c, 0)
        .write(&c, &a, 0, vec![1u8; 6000])
        .setattr(&c, &a, "k1", b"v1".to_vec())
        .setattr(&c, &a, "k2", b"v2".to_vec())
        .omap_setheader(&c, &a, b"hdr".to_vec())
        .omap_setkeys(
            &c,
            &a,
            [(OmapKey::from(b"k".to_vec()), b"v".to_vec())]
                .into_iter()
                .collect(),
        );
    t
}

/// Every crash state of every one-op workload over all op kinds ([`op_kinds`]), of
/// `pairs` two-op and `triples` three-op workloads drawn from them (`usize::MAX`: every
/// one; otherwise a seeded sample), each after [`op_kind_setup`] and checked as
/// [`sim_crash_points`] checks its workloads. Returns the counts.
///
/// Workloads of two ops and more remount after their first op, so a three-op workload
/// runs exactly as its two-op prefix does until its third op starts; when every pair is
/// run, a triple checks only the crash points from there on (those before are the
/// pair's). Workloads run on every CPU, each with its own seeded generator, so the
/// result does not depend on the thread count.
pub fn sim_small_workloads(f: &dyn SimStoreFactory, pairs: usize, triples: usize) -> SimStats {
    let kinds = op_kinds();
    let n = kinds.len();
    let mut rng = Rng::new(0x0b5_3e9d);
    let mut seqs: Vec<Vec<usize>> = (0..n).map(|i| vec![i]).collect();
    if pairs == usize::MAX {
        seqs.extend((0..n * n).map(|k| vec![k / n, k % n]));
    } else {
        seqs.extend((0..pairs).map(|_| vec![rng.index(n), rng.index(n)]));
    }
    if triples == usize::MAX {
        seqs.extend((0..n * n * n).map(|k| vec![k / (n * n), k / n % n, k % n]));
    } else {
        seqs.extend((0..triples).map(|_| vec![rng.index(n), rng.index(n), rng.index(n)]));
    }
    let all_pairs = pairs == usize::MAX;
    let next = std::sync::atomic::AtomicUsize::new(0);
    let threads = std::thread::available_parallelism().map_or(1, |p| p.get().min(8));
    let run = || {
        let colls = client_colls(0);
        let mut stats = SimStats::default();
        loop {
            let w = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(seq) = seqs.get(w) else {
                return stats;
            };
            let mut txns = vec![op_kind_setup()];
            txns.extend(seq.iter().map(|&i| kinds[i].1.clone()));
            let names: Vec<&str> = seq.iter().map(|&i| kinds[i].0).collect();
            let mut stream = Stream::scripted(txns);
            let count = seq.len() + 1;
            let shape = Shape {
                remount_before: count.min(3) - 1,
                // mkfs is the same for every workload; `sim_crash_points` crashes it.
                after_mkfs: true,
                covered_before: (all_pairs && seq.len() == 3).then_some(3),
            };
            let mut wrng = Rng::new(0x0b5_3e9d ^ (w as u64).wrapping_mul(0x9e37_79b9));
            crash_workload(
                f,
                &format!("ops {names:?}"),
                &mut stream,
                &colls,
                count,
                shape,
                &mut wrng,
                &mut stats,
            );
        }
    };
    let stats = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..threads).map(|_| sc.spawn(run)).collect();
        let mut total = SimStats::default();
        for h in hs {
            let s = h.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
            total.add(&s);
        }
        total
    });
    crate::coverage::report(&format!(
        "simulated-disk crash test of small workloads over {n} op kinds on {} ({threads} threads): {stats}",
        f.name()
    ));
    stats
}

/// Where a workload remounts, and which of its crash points another run covers.
#[derive(Debug, Clone, Copy)]
struct Shape {
    /// The store is unmounted and mounted again before this transaction.
    remount_before: usize,
    /// Only crash points after mkfs completed.
    after_mkfs: bool,
    /// Crash points up to the start of this transaction are skipped: a workload that
    /// runs the same transactions the same way up to there (the same I/O, so the same
    /// crash states, under bounds at least as strict) already checked them.
    covered_before: Option<usize>,
}

/// Runs `txns` transactions of `stream` on a fresh simulated disk (with a remount where
/// `shape` says), then mounts every crash state of that run (see
/// [`sim_crash_points`]) that `shape` does not leave to another run.
#[allow(clippy::too_many_arguments)]
fn crash_workload(
    f: &dyn SimStoreFactory,
    label: &str,
    stream: &mut Stream,
    colls: &[CollectionId],
    txns: usize,
    shape: Shape,
    rng: &mut Rng,
    stats: &mut SimStats,
) {
    {
        let fs = SimFs::new();
        let vfs: Arc<dyn Vfs> = Arc::new(fs.clone());
        let store = f.create(vfs.clone(), Path::new(SIM_DIR));
        store.mkfs().expect("mkfs");
        let mkfs_done = fs.op_count();
        store.mount().expect("mount");
        let mut store = store;
        // (op index when submitted, op index when acknowledged) per transaction.
        let mut marks: Vec<(usize, usize)> = Vec::new();
        for i in 0..txns {
            if i == shape.remount_before {
                store.umount().expect("umount");
                store = f.create(vfs.clone(), Path::new(SIM_DIR));
                store.mount().expect("remount");
            }
            let t = stream.txn(i);
            let ch = store.create_new_collection(&colls[0]).expect("handle");
            let start = fs.op_count();
            let _ = store.apply_transaction(&ch, t);
            marks.push((start, fs.op_count()));
        }
        store.umount().expect("final umount");
        drop(store);
        let total = fs.op_count();
        let ops = fs.ops();
        let mut first = if shape.after_mkfs { mkfs_done + 1 } else { 0 };
        if let Some(t) = shape.covered_before {
            first = first.max(marks[t].0 + 1);
        }
        // Crash states already checked: the same bytes with the same bounds on what
        // may have survived must recover alike, so each is mounted once.
        let mut seen = std::collections::HashSet::new();
        for at in first..=total {
            let acked = marks.iter().filter(|(_, a)| *a <= at).count();
            let submitted = marks.iter().filter(|(s, _)| *s <= at).count();
            for (keep, tear, non_prefix) in variants(&ops, &fs.unsynced_at(at), rng) {
                let img = fs.crash_state(at, &keep, tear);
                if !seen.insert((img.fingerprint(), acked, submitted, at <= mkfs_done)) {
                    stats.duplicates += 1;
                    continue;
                }
                stats.non_prefix += usize::from(non_prefix);
                stats.scattered += usize::from(tear.is_some_and(|t| t.lost_sectors != 0));
                let what =
                    || format!("{label} crash at op {at}/{total} keeping {keep:?} tear {tear:?}");
                check_crash_state(
                    f,
                    &img,
                    sim_journaling_options(),
                    at <= mkfs_done,
                    &what,
                    &mut |st| {
                        let mine = restrict(st, colls);
                        if (acked..=submitted).any(|n| *stream.state(n) == mine) {
                            return Ok(());
                        }
                        let d = state::diff(stream.state(acked), &mine).unwrap_or_default();
                        Err(format!(
                            "state matches no prefix in {acked}..={submitted} (acknowledged {acked}):\n{d}"
                        ))
                    },
                    rng,
                    stats,
                );
            }
        }
        stats.workloads += 1;
    }
}

/// Mounts one crash state `img` (a store journaling with `opts`) and checks it: the
/// store reads as unformatted only if `may_be_unformatted`, else it mounts, deep-fscks
/// clean, and `check` accepts its state. One time in eight the recovery itself is
/// crashed at a random point of its own I/O, keeping a random subset of its unsynced
/// writes, and mounted again: the state must not change.
#[allow(clippy::too_many_arguments)]
fn check_crash_state(
    f: &dyn SimStoreFactory,
    img: &SimFs,
    opts: ostore_os::journaling::JournalingOptions,
    may_be_unformatted: bool,
    what: &dyn Fn() -> String,
    check: &mut dyn FnMut(&StoreState) -> Result<(), String>,
    rng: &mut Rng,
    stats: &mut SimStats,
) {
    // A pristine copy, for crashing the recovery below.
    let img_copy = img.crash_state(0, &[], None);
    stats.crash_states += 1;
    let got = recover(f, img, opts.clone()).unwrap_or_else(|e| panic!("{}: {e}", what()));
    let Some((rstore, st)) = got else {
        assert!(
            may_be_unformatted,
            "{}: formatted store reads as unformatted",
            what()
        );
        stats.unformatted += 1;
        return;
    };
    drop(rstore);
    if let Err(e) = check(&st) {
        panic!("{}: {e}", what());
    }
    if !rng.chance(1, 8) {
        return;
    }
    let probe = f.create_with(Arc::new(img_copy.clone()), Path::new(SIM_DIR), opts.clone());
    probe
        .mount()
        .unwrap_or_else(|e| panic!("{}: second mount: {e}", what()));
    drop(probe);
    let n2 = img_copy.op_count();
    let at2 = rng.index(n2 + 1);
    let unsynced = img_copy.unsynced_at(at2);
    let keep = subset(&unsynced, rng.next_u64());
    let img3 = img_copy.crash_state(at2, &keep, None);
    match recover(f, &img3, opts) {
        Ok(Some((_, st3))) => assert!(
            st3 == st,
            "{}: recovery crashed at its op {at2} gave another state:\n{}",
            what(),
            state::diff(&st, &st3).unwrap_or_default()
        ),
        Ok(None) => panic!("{}: recovery crash made the store unformatted", what()),
        Err(e) => panic!("{}: after a crash during recovery: {e}", what()),
    }
    stats.recovery_crashes += 1;
}

/// Expands to the kill test (`kill_recovery`, 200 iterations unless `OSTORE_KILL_ITERS`
/// says otherwise) for one backend.
/// The 200-iteration kill test as a `kill_recovery` test, for one factory.
/// `kill_tests!(factory, ignore = "why")` marks it `#[ignore]` (run it with
/// `cargo test -- --ignored`) for a backend with a known, not yet fixed, defect.
#[macro_export]
macro_rules! kill_tests {
    ($factory:expr) => {
        #[test]
        fn kill_recovery() {
            $crate::crash::kill_recovery(&$factory, concat!(module_path!(), "::kill_recovery"));
        }
    };
    ($factory:expr, ignore = $why:literal) => {
        #[test]
        #[ignore = $why]
        fn kill_recovery() {
            $crate::crash::kill_recovery(&$factory, concat!(module_path!(), "::kill_recovery"));
        }
    };
    ($factory:expr, iterations = $n:expr) => {
        #[test]
        fn kill_recovery() {
            $crate::crash::kill_recovery_n(
                &$factory,
                concat!(module_path!(), "::kill_recovery"),
                $n,
            );
        }
    };
}

/// The body of [`kill_tests!`]: 200 kills, and proof that the test checked something.
/// `path` names the calling test as in [`failpoint_recovery`].
pub fn kill_recovery(factory: &dyn StoreFactory, path: &'static str) {
    kill_recovery_n(factory, path, 200);
}

/// [`kill_recovery`] with `iterations` kills (unless `OSTORE_KILL_ITERS` says otherwise).
pub fn kill_recovery_n(factory: &dyn StoreFactory, path: &'static str, iterations: usize) {
    let stats = kill_test(factory, test_name(path), iterations);
    assert!(stats.iterations > 0);
    assert!(
        stats.committed_checked > 0,
        "no child ever committed a transaction: the test checked nothing"
    );
}

/// The simulated-disk crash tests for one factory: `sim_crash_points` (seeded random
/// workloads) and `sim_crash_small_workloads`: every one-, two- and three-op workload
/// over every op kind, or with `triples = N` every one- and two-op workload and a
/// seeded sample of N three-op ones (`OSTORE_HEAVY=all` runs every one there too).
#[macro_export]
macro_rules! sim_crash_tests {
    ($factory:expr) => {
        $crate::sim_crash_tests!($factory, triples = usize::MAX);
    };
    ($factory:expr, triples = $triples:expr) => {
        #[test]
        fn sim_crash_points() {
            let factory = $factory;
            let heavy = std::env::var("OSTORE_HEAVY").is_ok();
            // Seeded random workloads of at least 50 ops each.
            let w = if heavy { 200 } else { 16 };
            let stats = $crate::crash::sim_crash_points(&factory, 0x5eed, w, 50);
            assert!(stats.crash_states > 100 && stats.recovery_crashes > 0);
            assert!(stats.ops >= 50 * w);
        }

        #[test]
        fn sim_crash_concurrent() {
            let factory = $factory;
            let heavy = std::env::var("OSTORE_HEAVY").is_ok();
            let w = if heavy { 400 } else { 24 };
            let stats = $crate::crash::sim_crash_concurrent(&factory, 0xc0c0, w, 8);
            assert_eq!(stats.workloads, w);
            assert!(stats.non_prefix > 0 && stats.scattered > 0, "{stats}");
        }

        #[test]
        fn sim_crash_small_workloads() {
            let factory = $factory;
            let triples: usize = match std::env::var("OSTORE_HEAVY").as_deref() {
                Ok("all") => usize::MAX,
                _ => $triples,
            };
            let stats = $crate::crash::sim_small_workloads(&factory, usize::MAX, triples);
            let kinds = $crate::crash::op_kinds().len();
            let want = kinds + kinds * kinds + triples.min(kinds * kinds * kinds);
            assert_eq!(stats.workloads, want, "{stats}");
            assert!(stats.crash_states > stats.workloads * 10, "{stats}");
        }
    };
}

#[cfg(test)]
mod tests {
    #[test]
    fn test_names_drop_only_the_crate() {
        assert_eq!(
            super::test_name("kvstore::wal_on::kill_recovery"),
            "wal_on::kill_recovery"
        );
        assert_eq!(super::test_name("memstore::kill_recovery"), "kill_recovery");
    }
}
