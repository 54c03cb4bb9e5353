//! Commits per second of small synced batches on RocksDB, through `ostore-kv` and through the raw
//! `rocksdb` crate (the anchor: a `WriteBatch` written with `sync = true`), at 1 and 16 threads;
//! plus unsynced commits with the WAL off, the configuration where the store's journal is the
//! only log.
//!
//! `cargo run -p ostore-kv --example sync_commits -- [seconds-per-run] [dir]`
//!
//! Each batch is what a small object write costs the KV store: one 4 KiB strip and one 64-byte
//! header. Keys are spread by a per-thread counter so threads do not overwrite each other.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ostore_kv::{KeyValueDB, RocksDb, RocksOptions, WriteBatch};

fn batch_for(thread: usize, n: u64) -> (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>) {
    let strip_key = format!("D{thread:02}.{n:012}").into_bytes();
    let head_key = format!("O{thread:02}.{n:012}").into_bytes();
    (
        strip_key,
        vec![n as u8; 4096],
        head_key,
        vec![thread as u8; 64],
    )
}

fn run(threads: usize, secs: f64, op: Arc<dyn Fn(usize, u64) + Send + Sync>) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (stop, count, op) = (stop.clone(), count.clone(), op.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    op(t, n);
                    n += 1;
                    count.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    count.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let secs: f64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let base = args
        .get(2)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let scratch = tempfile::tempdir_in(base).unwrap();

    for threads in [1, 16] {
        let dir = scratch.path().join(format!("kv-sync-{threads}"));
        let db = Arc::new(RocksDb::open(&dir, RocksOptions::default()).unwrap());
        let rate = run(
            threads,
            secs,
            Arc::new(move |t, n| {
                let (k1, v1, k2, v2) = batch_for(t, n);
                let mut b = WriteBatch::new();
                b.set(k1, v1).set(k2, v2);
                db.commit(&b, true).unwrap();
            }),
        );
        println!(
            "ostore-kv RocksDb   WAL on  sync=true   threads={threads:2}  {rate:9.0} commits/s"
        );
    }

    for threads in [1, 16] {
        let dir = scratch.path().join(format!("raw-sync-{threads}"));
        let db = Arc::new(rocksdb::DB::open_default(&dir).unwrap());
        let rate = run(
            threads,
            secs,
            Arc::new(move |t, n| {
                let (k1, v1, k2, v2) = batch_for(t, n);
                let mut b = rocksdb::WriteBatch::default();
                b.put(k1, v1);
                b.put(k2, v2);
                let mut wo = rocksdb::WriteOptions::default();
                wo.set_sync(true);
                db.write_opt(b, &wo).unwrap();
            }),
        );
        println!(
            "raw rocksdb DB      WAL on  sync=true   threads={threads:2}  {rate:9.0} commits/s"
        );
    }

    for threads in [1, 16] {
        let dir = scratch.path().join(format!("kv-nowal-{threads}"));
        let opts = RocksOptions {
            wal: false,
            ..RocksOptions::default()
        };
        let db = Arc::new(RocksDb::open(&dir, opts).unwrap());
        let writer = db.clone();
        let rate = run(
            threads,
            secs,
            Arc::new(move |t, n| {
                let (k1, v1, k2, v2) = batch_for(t, n);
                let mut b = WriteBatch::new();
                b.set(k1, v1).set(k2, v2);
                writer.commit(&b, false).unwrap();
            }),
        );
        let t0 = Instant::now();
        db.flush().unwrap();
        let flush = t0.elapsed();
        println!(
            "ostore-kv RocksDb   WAL off sync=false  threads={threads:2}  {rate:9.0} commits/s  (final flush {:.0} ms)",
            flush.as_secs_f64() * 1e3
        );
    }
}
