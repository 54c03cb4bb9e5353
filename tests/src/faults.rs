//! I/O-error injection on the simulated disk (SQLite's fail-at-N loop): for every
//! mutating I/O call of a workload, fail that call (with EIO or ENOSPC, once or from
//! then on) and check the promises:
//! - the transaction in flight is not acknowledged as successful, and nothing after the
//!   failure is (the store fails stop; a failed fsync is never retried — fsyncgate);
//! - after a restart (the same disk, or only what was synced: a power cut), the store
//!   mounts and equals the model after a prefix no shorter than what was acknowledged;
//! - it makes progress again once the fault is gone.

use std::path::Path;
use std::sync::Arc;

use ostore_journal::vfs::{Fault, FaultOps};
use ostore_journal::{SimFs, Vfs};
use ostore_os::{ErrorKind, ObjectStore};

use crate::crash::{client_colls, restrict, SimStoreFactory, Stream};
use crate::state;

const DIR: &str = "/store";

/// What a fault run covered.
#[derive(Debug, Default, Clone, Copy)]
pub struct FaultStats {
    pub injection_points: usize,
    pub fired: usize,
    pub failed_stop: usize,
}

/// Runs the workload once; returns (acknowledged count, submitted count).
fn workload(
    f: &dyn SimStoreFactory,
    vfs: &Arc<dyn Vfs>,
    stream: &mut Stream,
    txns: usize,
    what: &dyn Fn() -> String,
) -> (usize, usize) {
    let colls = client_colls(0);
    let mut store = f.create(vfs.clone(), Path::new(DIR));
    if store.mount().is_err() {
        return (0, 0);
    }
    let mut acked = 0;
    let mut failed = false;
    let mut submitted = 0;
    for i in 0..txns {
        if i == txns / 2 && !failed {
            if store.umount().is_err() {
                failed = true;
            } else {
                store = f.create(vfs.clone(), Path::new(DIR));
                if store.mount().is_err() {
                    failed = true;
                }
            }
        }
        let t = stream.txn(i);
        submitted = i + 1;
        let r = store
            .create_new_collection(&colls[0])
            .and_then(|ch| store.apply_transaction(&ch, t));
        match r {
            Ok(()) => {
                assert!(
                    !failed,
                    "{}: transaction {i} acknowledged after the store failed",
                    what()
                );
                acked = i + 1;
            }
            Err(e) if is_failure(e.kind()) => failed = true,
            // A rejection (the model rejects it too; the state tests below check).
            Err(_) => {
                assert!(
                    !failed,
                    "{}: transaction {i} answered after the store failed",
                    what()
                );
                acked = i + 1;
            }
        }
    }
    if !failed {
        let _ = store.umount();
    }
    drop(store);
    (acked, submitted)
}

/// Errors that mean the store could not do its job (as opposed to a rejection).
fn is_failure(k: ErrorKind) -> bool {
    matches!(
        k,
        ErrorKind::Io
            | ErrorKind::Failed
            | ErrorKind::NoSpace
            | ErrorKind::Corrupt
            | ErrorKind::NotMounted
            | ErrorKind::Unsupported
    )
}

/// Mounts `fs` and checks it against the stream's prefixes `acked..=submitted`.
fn check_recovered(
    f: &dyn SimStoreFactory,
    fs: &SimFs,
    stream: &mut Stream,
    acked: usize,
    submitted: usize,
    what: &str,
) {
    let colls = client_colls(0);
    let store: Arc<dyn ObjectStore> = f.create(Arc::new(fs.clone()), Path::new(DIR));
    store
        .mount()
        .unwrap_or_else(|e| panic!("{what}: mount after the fault: {e}"));
    let st = state::capture(&*store).unwrap_or_else(|e| panic!("{what}: capture: {e}"));
    let mine = restrict(&st, &colls);
    if !(acked..=submitted).any(|n| *stream.state(n) == mine) {
        let d = state::diff(stream.state(acked), &mine).unwrap_or_default();
        panic!("{what}: state matches no prefix in {acked}..={submitted}:\n{d}");
    }
    // Progress resumes: a new transaction commits.
    let mut t = ostore_os::Transaction::new();
    if !store
        .collection_exists(&colls[0])
        .expect("collection_exists")
    {
        t.create_collection(&colls[0], 0);
    }
    t.touch(&colls[0], &ostore_os::ObjectId::new(20, "after-the-fault"));
    let ch = store.create_new_collection(&colls[0]).expect("handle");
    store
        .apply_transaction(&ch, t)
        .unwrap_or_else(|e| panic!("{what}: no progress after recovery: {e}"));
    store
        .umount()
        .unwrap_or_else(|e| panic!("{what}: umount: {e}"));
}

/// The fail-at-N loop over one seeded workload of `txns` transactions.
pub fn io_error_points(f: &dyn SimStoreFactory, seed: u64, txns: usize) -> FaultStats {
    let colls = client_colls(0);
    // A clean run counts the mutating calls after mkfs.
    let fs = SimFs::new();
    let vfs: Arc<dyn Vfs> = Arc::new(fs.clone());
    f.create(vfs.clone(), Path::new(DIR)).mkfs().expect("mkfs");
    let base = fs.op_count();
    let mut stream = Stream::new(seed, colls.clone());
    let (acked, _) = workload(f, &vfs, &mut stream, txns, &|| "clean run".into());
    assert_eq!(acked, txns, "the clean run must acknowledge everything");
    let calls = fs.op_count() - base;
    let mut stats = FaultStats::default();
    for nth in 1..=calls as u64 {
        for persistent in [false, true] {
            let errno = if nth % 3 == 0 {
                libc::ENOSPC
            } else {
                libc::EIO
            };
            let fs = SimFs::new();
            let vfs: Arc<dyn Vfs> = Arc::new(fs.clone());
            f.create(vfs.clone(), Path::new(DIR)).mkfs().expect("mkfs");
            fs.set_fault(Some(Fault {
                ops: FaultOps::Any,
                nth,
                errno,
                persistent,
            }));
            let what = || {
                format!("seed {seed}: call {nth}/{calls} fails with errno {errno} (persistent {persistent})")
            };
            let mut stream = Stream::new(seed, colls.clone());
            let (acked, submitted) = workload(f, &vfs, &mut stream, txns, &what);
            stats.injection_points += 1;
            if !fs.fault_fired() {
                continue;
            }
            stats.fired += 1;
            if acked < submitted {
                stats.failed_stop += 1;
            }
            fs.set_fault(None);
            // A restart on the same disk, and a power cut (only synced data survives).
            let power_cut = fs.crash_state(fs.op_count(), &[], None);
            check_recovered(
                f,
                &fs,
                &mut stream,
                acked,
                submitted,
                &format!("{} (restart)", what()),
            );
            check_recovered(
                f,
                &power_cut,
                &mut stream,
                acked,
                submitted,
                &format!("{} (power cut)", what()),
            );
        }
    }
    crate::coverage::report(&format!(
        "I/O-error injection on {}: {} injection points over {calls} calls, {} fired, {} made the store fail stop",
        f.name(),
        stats.injection_points,
        stats.fired,
        stats.failed_stop
    ));
    stats
}

/// Expands to the I/O-error injection test for one backend on the simulated disk.
#[macro_export]
macro_rules! fault_tests {
    ($factory:expr) => {
        #[test]
        fn io_error_at_every_call() {
            let factory = $factory;
            let heavy = std::env::var("OSTORE_HEAVY").is_ok();
            let seeds: &[u64] = if heavy {
                &[1, 2, 3, 4, 5, 6, 7, 8]
            } else {
                &[1, 2]
            };
            for &seed in seeds {
                let stats = $crate::faults::io_error_points(&factory, seed, 8);
                assert!(stats.fired > 0 && stats.failed_stop > 0, "{stats:?}");
            }
        }
    };
}
