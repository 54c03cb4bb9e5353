//! The benchmark harness behind `os-bench` and `os-tool bench`: named workloads run
//! against a backend in a scratch directory, each beside the raw-disk (or raw-RocksDB,
//! or memory) anchor it should be compared with, measured in the same process.
//!
//! Every result carries ops/s, MB/s and commit latency percentiles from an HDR
//! histogram, and the ratio to its anchor. Workloads are closed loops of `clients`
//! threads, each waiting for its transaction's `on_commit` before the next, except
//! `osd-bench`, which copies Ceph's OSD `bench` command: one thread queues every write
//! without waiting and one final wait for all commits stops the clock.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use ostore_os::{
    CollectionHandle, CollectionId, Completion, Error, ObjectId, ObjectStore, Result, Transaction,
};
use serde::Serialize;

use crate::open::{self, StoreConfig};

/// The workloads, in the order `all` runs them.
pub const WORKLOADS: &[&str] = &[
    "small-overwrite",
    "rados-4k",
    "create-small",
    "large-write",
    "omap-heavy",
    "read-random",
    "clone-overwrite",
    "mixed",
    "osd-bench",
    "replay",
    "fsck",
    "journal",
    "rocksdb-sync",
];

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchOpts {
    /// Scratch directory; each run uses (and removes) a subdirectory.
    pub dir: PathBuf,
    pub backend: String,
    pub clients: usize,
    pub duration: Duration,
    pub seed: u64,
    /// Objects pre-created for overwrite and read workloads.
    pub objects: usize,
    /// Object size for overwrite and read workloads.
    pub object_size: u64,
    /// `replay`: bytes of journal to replay; `osd-bench`: bytes to write.
    pub total_bytes: u64,
    /// Block size for `osd-bench` (4 KiB into existing objects, or 4 MiB new objects).
    pub block_size: u64,
}

impl Default for BenchOpts {
    fn default() -> Self {
        BenchOpts {
            dir: std::env::temp_dir().join("ostore-bench"),
            backend: "memstore".into(),
            clients: 16,
            duration: Duration::from_secs(5),
            seed: 1,
            objects: 256,
            object_size: 4 << 20,
            total_bytes: 256 << 20,
            block_size: 4096,
        }
    }
}

/// One measured figure.
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    pub workload: String,
    pub backend: String,
    pub clients: usize,
    pub ops: u64,
    pub secs: f64,
    pub ops_per_sec: f64,
    pub mb_per_sec: f64,
    /// Commit (or read) latency percentiles in microseconds.
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    /// Whether the run timed its operations (the journal bench counts appends only): the
    /// table shows its percentiles only then. Not in the JSON, whose percentiles are 0
    /// for such a run.
    #[serde(skip)]
    pub latencies: bool,
    /// The anchor this result is compared with, its figure and our ratio to it.
    pub anchor: Option<String>,
    pub anchor_value: Option<f64>,
    pub ratio: Option<f64>,
    /// What the ratio compares (`ops/s` or `MB/s`).
    pub ratio_of: Option<String>,
    pub notes: BTreeMap<String, String>,
}

fn hist() -> Histogram<u64> {
    // 1 µs .. 100 s at 3 significant digits.
    Histogram::new_with_bounds(1, 100_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).expect("histogram"))
}

/// Counts and latencies from a run of client threads.
struct Tally {
    ops: u64,
    bytes: u64,
    secs: f64,
    hist: Histogram<u64>,
}

impl Tally {
    fn result(&self, workload: &str, backend: &str, clients: usize) -> BenchResult {
        let secs = self.secs.max(1e-9);
        BenchResult {
            workload: workload.into(),
            backend: backend.into(),
            clients,
            ops: self.ops,
            secs,
            ops_per_sec: self.ops as f64 / secs,
            mb_per_sec: self.bytes as f64 / secs / 1e6,
            p50_us: self.hist.value_at_quantile(0.5),
            p99_us: self.hist.value_at_quantile(0.99),
            p999_us: self.hist.value_at_quantile(0.999),
            latencies: !self.hist.is_empty(),
            anchor: None,
            anchor_value: None,
            ratio: None,
            ratio_of: None,
            notes: BTreeMap::new(),
        }
    }
}

/// Runs `clients` threads for `duration`; each calls `op(client, i)` in a loop, which
/// returns the bytes it moved; the call's wall time is its latency.
fn closed_loop(
    clients: usize,
    duration: Duration,
    op: impl Fn(usize, u64) -> Result<u64> + Sync,
) -> Result<Tally> {
    let stop = AtomicBool::new(false);
    let total = Mutex::new(Tally {
        ops: 0,
        bytes: 0,
        secs: 0.0,
        hist: hist(),
    });
    let start = Instant::now();
    std::thread::scope(|s| -> Result<()> {
        let hs: Vec<_> = (0..clients)
            .map(|c| {
                let (stop, op, total) = (&stop, &op, &total);
                s.spawn(move || -> Result<()> {
                    let mut h = hist();
                    let (mut ops, mut bytes) = (0u64, 0u64);
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let t = Instant::now();
                        bytes += op(c, i)?;
                        let _ = h.record(t.elapsed().as_micros().max(1) as u64);
                        ops += 1;
                        i += 1;
                    }
                    let mut tl = total.lock().map_err(|_| Error::failed("bench lock"))?;
                    tl.ops += ops;
                    tl.bytes += bytes;
                    let _ = tl.hist.add(&h);
                    Ok(())
                })
            })
            .collect();
        std::thread::sleep(duration);
        stop.store(true, Ordering::SeqCst);
        for h in hs {
            h.join()
                .map_err(|_| Error::failed("bench client panicked"))??;
        }
        Ok(())
    })?;
    let mut t = total
        .into_inner()
        .map_err(|_| Error::failed("bench lock"))?;
    t.secs = start.elapsed().as_secs_f64();
    Ok(t)
}

/// splitmix64, so a seed replays the same offsets.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Waits for one transaction's commit.
fn commit(s: &dyn ObjectStore, ch: &CollectionHandle, t: Transaction) -> Result<()> {
    let (tx, rx) = mpsc::sync_channel(1);
    s.queue_transactions(
        ch,
        vec![t],
        // A channel send is quick: it runs on the journal's thread, not the finisher.
        Completion::on_commit_inline(move |r| {
            let _ = tx.send(r);
        }),
    )?;
    rx.recv()
        .map_err(|_| Error::failed("commit callback dropped"))?
}

const PGS: u32 = 8;

fn pg(i: usize) -> CollectionId {
    CollectionId::pg(1, (i as u32) % PGS)
}

/// The store a benchmark formats: a backend name, `kvstore-wal` (KeyValueStore with
/// RocksDB's own WAL on as well as the journal, for the double-logging comparison), or
/// `filestore-nostage` (FileStore journaling every byte of large writes too, for the
/// staged-write comparison).
fn bench_store(
    backend: &str,
    dir: &Path,
    tune: impl FnOnce(&mut ostore_os::journaling::JournalingOptions),
) -> Result<Arc<dyn ObjectStore>> {
    if backend == "kvstore-wal" {
        let mut j = ostore_os::journaling::JournalingOptions::default();
        tune(&mut j);
        return Ok(Arc::new(ostore_kvstore::kvstore(
            dir,
            j,
            ostore_kvstore::KvStoreOptions {
                engine: ostore_kvstore::Engine::RocksDb { wal: true },
                ..ostore_kvstore::KvStoreOptions::default()
            },
        )));
    }
    if backend == "filestore-nostage" {
        let mut j = ostore_os::journaling::JournalingOptions::default();
        tune(&mut j);
        return Ok(Arc::new(ostore_filestore::filestore(
            dir,
            j,
            ostore_filestore::FileStoreOptions {
                stage_min_bytes: None,
                ..ostore_filestore::FileStoreOptions::default()
            },
        )));
    }
    let cfg = StoreConfig {
        store_type: Some(backend.to_string()),
        data_path: dir.to_path_buf(),
        journal_path: None,
    };
    open::store_for_mkfs_with(&cfg, tune)
}

/// A fresh formatted, mounted store of the chosen backend.
struct Scratch {
    store: Arc<dyn ObjectStore>,
    dir: PathBuf,
}

impl Scratch {
    fn new(o: &BenchOpts, name: &str) -> Result<Scratch> {
        let dir = o
            .dir
            .join(format!("{}-{name}-{}", o.backend, std::process::id()));
        let _ = ostore_filestore::remove_store_dir(&dir);
        let store = bench_store(&o.backend, &dir, |_| {})?;
        store.mkfs()?;
        store.mount()?;
        for p in 0..PGS {
            let c = CollectionId::pg(1, p);
            let ch = store.create_new_collection(&c)?;
            let mut t = Transaction::new();
            t.create_collection(&c, 3);
            store.apply_transaction(&ch, t)?;
        }
        Ok(Scratch { store, dir })
    }

    fn handles(&self) -> Result<Vec<CollectionHandle>> {
        (0..PGS as usize)
            .map(|p| self.store.open_collection(&pg(p)))
            .collect()
    }

    /// Objects `0..n` of `size` bytes, written (not sparse) in 1 MiB transactions.
    fn prefill(&self, n: usize, size: u64) -> Result<()> {
        let hs = self.handles()?;
        for i in 0..n {
            let c = pg(i);
            let o = obj(i);
            let mut off = 0;
            while off < size {
                let len = (size - off).min(1 << 20);
                let mut t = Transaction::new();
                t.write(&c, &o, off, vec![(i as u8) | 1; len as usize]);
                commit(&*self.store, &hs[i % PGS as usize], t)?;
                off += len;
            }
        }
        Ok(())
    }

    fn remove(self) -> Result<()> {
        let r = self.store.umount();
        let _ = ostore_filestore::remove_store_dir(&self.dir);
        r
    }
}

fn obj(i: usize) -> ObjectId {
    ObjectId::new(1, format!("rbd_data.bench.{i:016x}"))
}

/// Runs one workload; the anchor and ratio are filled in by [`run`].
fn workload(name: &str, o: &BenchOpts) -> Result<BenchResult> {
    let sc = Scratch::new(o, name)?;
    let r = workload_on(name, o, &sc);
    let rm = sc.remove();
    let r = r?;
    rm?;
    Ok(r)
}

fn workload_on(name: &str, o: &BenchOpts, sc: &Scratch) -> Result<BenchResult> {
    let s = &*sc.store;
    let hs = sc.handles()?;
    let blocks = (o.object_size / 4096).max(1);
    let objects = o.objects.max(o.clients).max(1);
    let tally = match name {
        "small-overwrite" => {
            sc.prefill(objects, o.object_size)?;
            closed_loop(o.clients, o.duration, |c, i| {
                let r = mix(o.seed ^ ((c as u64) << 40) ^ i);
                // Each client owns the objects congruent to it: overwrites of one object
                // by two clients at once would measure lock ordering, not the store.
                let k = (c + o.clients * (r as usize % (objects / o.clients).max(1))) % objects;
                let mut t = Transaction::new();
                t.write(
                    &pg(k),
                    &obj(k),
                    (r >> 20) % blocks * 4096,
                    vec![c as u8; 4096],
                );
                commit(s, &hs[k % PGS as usize], t)?;
                Ok(4096)
            })?
        }
        "rados-4k" => {
            sc.prefill(objects, o.object_size)?;
            let log_seq = AtomicU64::new(0);
            closed_loop(o.clients, o.duration, |c, i| {
                let r = mix(o.seed ^ ((c as u64) << 40) ^ i);
                let k = (c + o.clients * (r as usize % (objects / o.clients).max(1))) % objects;
                let cid = pg(k);
                let pgmeta = ObjectId::new(1, format!("pgmeta_{cid}"));
                let v = log_seq.fetch_add(1, Ordering::Relaxed);
                let mut t = Transaction::new();
                t.write(
                    &cid,
                    &obj(k),
                    (r >> 20) % blocks * 4096,
                    vec![c as u8; 4096],
                )
                .setattr(&cid, &obj(k), "_", vec![1u8; 256])
                .setattr(&cid, &obj(k), "snapset", vec![2u8; 32])
                .omap_setkeys(
                    &cid,
                    &pgmeta,
                    BTreeMap::from([
                        (b"_info".to_vec(), vec![3u8; 128]),
                        (format!("0000000001.{v:020}").into_bytes(), vec![4u8; 1024]),
                    ]),
                );
                if v >= 64 {
                    t.omap_rmkeys(
                        &cid,
                        &pgmeta,
                        [format!("0000000001.{:020}", v - 64).into_bytes()].into(),
                    );
                }
                commit(s, &hs[k % PGS as usize], t)?;
                Ok(4096)
            })?
        }
        "create-small" => closed_loop(o.clients, o.duration, |c, i| {
            let k = ((i as usize) << 8) | c;
            let cid = pg(k);
            let oid = ObjectId::new(1, format!("small.{c}.{i}"));
            let mut t = Transaction::new();
            t.touch(&cid, &oid)
                .write(&cid, &oid, 0, vec![7u8; 4096])
                .setattr(&cid, &oid, "_", vec![1u8; 256])
                .omap_setkeys(&cid, &oid, BTreeMap::from([(b"k".to_vec(), vec![2u8; 64])]));
            commit(s, &hs[k % PGS as usize], t)?;
            Ok(4096)
        })?,
        "large-write" => closed_loop(o.clients, o.duration, |c, i| {
            let k = ((i as usize) << 8) | c;
            let cid = pg(k);
            let oid = ObjectId::new(1, format!("large.{c}.{i}"));
            let mut t = Transaction::new();
            t.write(&cid, &oid, 0, vec![9u8; 4 << 20]);
            commit(s, &hs[k % PGS as usize], t)?;
            Ok(4 << 20)
        })?,
        "omap-heavy" => {
            // Objects accumulate 1,000+ keys: each transaction adds 100 keys of 128 B.
            closed_loop(o.clients, o.duration, |c, i| {
                let k = c % objects;
                let cid = pg(k);
                let oid = ObjectId::new(1, format!("omap.{c}.{}", i / 20));
                let keys: BTreeMap<Vec<u8>, Vec<u8>> = (0..100)
                    .map(|j| (format!("key.{i:08}.{j:04}").into_bytes(), vec![5u8; 128]))
                    .collect();
                let mut t = Transaction::new();
                // omap ops on a missing object are skipped (Ceph tolerates ENOENT):
                // create it first, or the workload would measure nothing but the journal.
                t.touch(&cid, &oid).omap_setkeys(&cid, &oid, keys);
                commit(s, &hs[k % PGS as usize], t)?;
                Ok(100 * 128)
            })?
        }
        "read-random" => {
            sc.prefill(objects, o.object_size)?;
            closed_loop(o.clients, o.duration, |c, i| {
                let r = mix(o.seed ^ ((c as u64) << 40) ^ i);
                let k = r as usize % objects;
                let d = s.read(
                    &hs[k % PGS as usize],
                    &obj(k),
                    (r >> 20) % blocks * 4096,
                    4096,
                )?;
                Ok(d.len() as u64)
            })?
        }
        "clone-overwrite" => {
            sc.prefill(o.clients, 4 << 20)?;
            closed_loop(o.clients, o.duration, |c, i| {
                let cid = pg(c);
                let clone = ObjectId::new(1, format!("clone.{c}.{i}"));
                let mut t = Transaction::new();
                t.clone_obj(&cid, &obj(c), &clone).write(
                    &cid,
                    &clone,
                    (i % 1024) * 4096,
                    vec![3u8; 4096],
                );
                if i > 0 {
                    t.remove(&cid, &ObjectId::new(1, format!("clone.{c}.{}", i - 1)));
                }
                commit(s, &hs[c % PGS as usize], t)?;
                Ok(4096)
            })?
        }
        "mixed" => {
            sc.prefill(objects, o.object_size)?;
            closed_loop(o.clients, o.duration, |c, i| {
                let r = mix(o.seed ^ ((c as u64) << 40) ^ i);
                let k = (c + o.clients * (r as usize % (objects / o.clients).max(1))) % objects;
                let h = &hs[k % PGS as usize];
                match r % 10 {
                    0..=4 => Ok(s.read(h, &obj(k), (r >> 20) % blocks * 4096, 4096)?.len() as u64),
                    5..=7 => {
                        let mut t = Transaction::new();
                        t.write(&pg(k), &obj(k), (r >> 20) % blocks * 4096, vec![1u8; 4096])
                            .setattr(&pg(k), &obj(k), "_", vec![1u8; 256]);
                        commit(s, h, t)?;
                        Ok(4096)
                    }
                    8 => {
                        s.getattr(h, &obj(k), "_").or_else(|e| {
                            if e.kind() == ostore_os::ErrorKind::NoData {
                                Ok(Vec::new())
                            } else {
                                Err(e)
                            }
                        })?;
                        Ok(0)
                    }
                    _ => {
                        let oid = ObjectId::new(1, format!("mixed.{c}.{i}"));
                        let mut t = Transaction::new();
                        t.write(&pg(k), &oid, 0, vec![2u8; 65536]);
                        commit(s, h, t)?;
                        Ok(65536)
                    }
                }
            })?
        }
        "osd-bench" => osd_bench(o, sc)?,
        "replay" => return replay(o, sc),
        "fsck" => return fsck_bench(o, sc),
        other => {
            return Err(Error::invalid(format!(
                "unknown workload {other}: expected one of {}",
                WORKLOADS.join(", ")
            )))
        }
    };
    Ok(tally.result(name, &o.backend, o.clients))
}

/// Ceph's `ceph tell osd.N bench TOTAL BSIZE OBJSIZE NOBJ`: one thread queues one
/// single-write transaction per block without waiting; the last commit stops the clock.
/// With a block smaller than 4 MiB it writes at random aligned offsets of 100
/// pre-written 4 MiB objects, else whole new objects.
fn osd_bench(o: &BenchOpts, sc: &Scratch) -> Result<Tally> {
    let s = &*sc.store;
    let hs = sc.handles()?;
    let bs = o.block_size.max(4096);
    let small = bs < (4 << 20);
    if small {
        sc.prefill(100, 4 << 20)?;
    }
    let n = (o.total_bytes / bs).max(1);
    let (tx, rx) = mpsc::channel::<(Instant, Result<()>)>();
    let start = Instant::now();
    let mut h = hist();
    for i in 0..n {
        let r = mix(o.seed ^ i);
        let mut t = Transaction::new();
        let (k, oid, off) = if small {
            let k = (r % 100) as usize;
            (k, obj(k), (r >> 20) % ((4 << 20) / bs) * bs)
        } else {
            (i as usize, ObjectId::new(1, format!("osdbench.{i}")), 0)
        };
        t.write(&pg(k), &oid, off, vec![0xabu8; bs as usize]);
        let tx = tx.clone();
        let queued = Instant::now();
        s.queue_transactions(
            &hs[k % PGS as usize],
            vec![t],
            Completion::on_commit(move |r| {
                let _ = tx.send((queued, r));
            }),
        )?;
    }
    drop(tx);
    for _ in 0..n {
        let (queued, r) = rx
            .recv()
            .map_err(|_| Error::failed("commit callback dropped"))?;
        r?;
        let _ = h.record(queued.elapsed().as_micros().max(1) as u64);
    }
    Ok(Tally {
        ops: n,
        bytes: n * bs,
        secs: start.elapsed().as_secs_f64(),
        hist: h,
    })
}

/// Time to mount a store whose journal holds `total_bytes` of unapplied transactions,
/// left by a crash (the store is dropped without unmounting and without a checkpoint).
fn replay(o: &BenchOpts, sc: &Scratch) -> Result<BenchResult> {
    // Build the journal on a store that never checkpoints while it fills.
    let dir = sc.dir.join("replay");
    let store = bench_store(&o.backend, &dir, |j| {
        j.checkpoint_interval = Duration::from_secs(3600);
        j.checkpoint_fill_bytes = u64::MAX;
        j.max_journal_bytes = u64::MAX;
    })?;
    store.mkfs()?;
    store.mount()?;
    let c = CollectionId::pg(1, 0);
    let ch = store.create_new_collection(&c)?;
    let mut t = Transaction::new();
    t.create_collection(&c, 0);
    store.apply_transaction(&ch, t)?;
    let chunk = 1u64 << 20;
    let n = (o.total_bytes / chunk).max(1);
    let (tx, rx) = mpsc::channel();
    for i in 0..n {
        let mut t = Transaction::new();
        t.write(
            &c,
            &ObjectId::new(1, format!("replay.{}", i % 64)),
            (i / 64) * chunk,
            vec![1u8; chunk as usize],
        );
        let tx = tx.clone();
        store.queue_transactions(
            &ch,
            vec![t],
            Completion::on_commit(move |r| {
                let _ = tx.send(r);
            }),
        )?;
    }
    drop(tx);
    for _ in 0..n {
        rx.recv()
            .map_err(|_| Error::failed("commit callback dropped"))??;
    }
    // A crash: no umount, so nothing is checkpointed and the journal holds it all.
    drop(store);
    if let Some(keep) = std::env::var_os("OSTORE_BENCH_KEEP_REPLAY") {
        // For profiling the mount alone (`perf record os-tool ... journal replay`).
        let keep = Path::new(&keep);
        std::fs::rename(&dir, keep).map_err(|e| {
            Error::from(e).context(format!("keeping the store at {}", keep.display()))
        })?;
        eprintln!("os-bench: the crashed store is kept at {}", keep.display());
        return Err(Error::new(
            ostore_os::ErrorKind::NotFound,
            "replay not measured: OSTORE_BENCH_KEEP_REPLAY kept the store instead",
        ));
    }
    drop_caches();
    let store = bench_store(&o.backend, &dir, |_| {})?;
    let t0 = Instant::now();
    store.mount()?;
    let secs = t0.elapsed().as_secs_f64();
    let rep = store.mount_report();
    store.umount()?;
    let _ = ostore_filestore::remove_store_dir(&dir);
    let bytes = n * chunk;
    let mut r = Tally {
        ops: rep.as_ref().map_or(n, |r| r.replayed),
        bytes,
        secs,
        hist: hist(),
    }
    .result("replay", &o.backend, 1);
    r.notes.insert("journal_bytes".into(), bytes.to_string());
    r.notes.insert(
        "s_per_gb".into(),
        format!("{:.2}", secs / (bytes as f64 / 1e9)),
    );
    Ok(r)
}

/// Drops the page cache (root only), so replay reads the disk; best effort.
fn drop_caches() {
    let _ = std::process::Command::new("sync").status();
    let _ = std::fs::write("/proc/sys/vm/drop_caches", "3");
}

/// fsck time of a store of `objects` small objects, scaled to seconds per million.
fn fsck_bench(o: &BenchOpts, sc: &Scratch) -> Result<BenchResult> {
    let s = &*sc.store;
    let hs = sc.handles()?;
    let n = o.objects.max(1000);
    for i in (0..n).step_by(100) {
        let k = i / 100;
        let cid = pg(k);
        let mut t = Transaction::new();
        for j in i..(i + 100).min(n) {
            let oid = ObjectId::new(1, format!("fsck.{j}"));
            t.write(&cid, &oid, 0, vec![1u8; 512])
                .setattr(&cid, &oid, "_", vec![2u8; 64]);
        }
        commit(s, &hs[k % PGS as usize], t)?;
    }
    let t0 = Instant::now();
    let rep = ostore_os::fsck::fsck(s, false, &mut |_| {})?;
    let secs = t0.elapsed().as_secs_f64();
    if !rep.is_clean() {
        return Err(Error::corrupt(format!(
            "fsck found errors: {:?}",
            rep.errors
        )));
    }
    let mut r = Tally {
        ops: n as u64,
        bytes: n as u64 * 512,
        secs,
        hist: hist(),
    }
    .result("fsck", &o.backend, 1);
    r.notes.insert(
        "s_per_million_objects".into(),
        format!("{:.1}", secs * 1e6 / n as f64),
    );
    Ok(r)
}

// ---------------------------------------------------------------- anchors

/// Most bytes the raw write anchor prefills, over all its writers' files.
const RAW_FOOTPRINT: u64 = 1 << 30;

/// Removes a scratch directory when dropped.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl RemoveOnDrop {
    /// A fresh scratch directory `dir/<name>-<pid>` for a raw anchor, removed however
    /// the anchor returns (a failed prefill once left 52 GiB behind).
    fn scratch(dir: &Path, name: &str) -> Result<RemoveOnDrop> {
        let d = dir.join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d)
            .map_err(|e| Error::from(e).context(format!("creating {}", d.display())))?;
        Ok(RemoveOnDrop(d))
    }

    /// An empty file `name` in the scratch directory, open for reading and writing.
    fn create_file(&self, name: &str) -> Result<std::fs::File> {
        let p = self.0.join(name);
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&p)
            .map_err(|e| Error::from(e).context(format!("creating {}", p.display())))
    }
}

/// The raw anchor for durable writes: `clients` threads, each `pwrite` + `fdatasync` of
/// `size` bytes at rotating aligned offsets, on its own pre-written file (`shared` =
/// false) or all on one file.
pub fn raw_sync_writes(
    dir: &Path,
    size: usize,
    clients: usize,
    shared: bool,
    duration: Duration,
) -> Result<BenchResult> {
    use std::os::unix::fs::FileExt;
    let scratch = RemoveOnDrop::scratch(dir, "raw")?;
    let nfiles = if shared { 1 } else { clients };
    // Up to 256 rotating slots per writer, within RAW_FOOTPRINT in all: 64 writers of
    // 4 MiB with 256 slots each once prefilled 64 GiB and filled the disk.
    let slots = (RAW_FOOTPRINT / (size.max(1) as u64 * clients.max(1) as u64)).clamp(1, 256);
    let per_file = slots * size as u64;
    let files = (0..nfiles)
        .map(|f| {
            let file = scratch.create_file(&format!("f{f}"))?;
            let len = if shared {
                per_file * clients as u64
            } else {
                per_file
            };
            let zeros = vec![0u8; 1 << 20];
            let mut off = 0;
            while off < len {
                let n = zeros.len().min((len - off) as usize);
                file.write_all_at(&zeros[..n], off).map_err(Error::from)?;
                off += n as u64;
            }
            file.sync_all().map_err(Error::from)?;
            Ok(file)
        })
        .collect::<Result<Vec<_>>>()?;
    let data = vec![0x5au8; size];
    let t = closed_loop(clients, duration, |c, i| {
        let (f, base) = if shared {
            (&files[0], c as u64 * per_file)
        } else {
            (&files[c], 0)
        };
        f.write_all_at(&data, base + (i % slots) * size as u64)
            .map_err(Error::from)?;
        f.sync_data().map_err(Error::from)?;
        Ok(size as u64)
    });
    Ok(t?.result(
        if shared {
            "raw-shared-file"
        } else {
            "raw-independent"
        },
        "raw",
        clients,
    ))
}

/// The raw anchor for large writes, as the issue defines it: sequential write +
/// `fdatasync` bandwidth of the filesystem. Each client appends `size` bytes at a time
/// to its own file, syncing each, and starts the file over (truncated to nothing) when
/// it reaches its share of [`RAW_FOOTPRINT`], so every write lands in blocks the
/// filesystem allocates for it, as a large write to a new object does. The overwrite
/// loop of [`raw_sync_writes`] rewrites blocks allocated (and cached) long before.
pub fn raw_seq_writes(
    dir: &Path,
    size: usize,
    clients: usize,
    duration: Duration,
) -> Result<BenchResult> {
    use std::os::unix::fs::FileExt;
    let scratch = RemoveOnDrop::scratch(dir, "raw-seq")?;
    let slots = (RAW_FOOTPRINT / (size.max(1) as u64 * clients.max(1) as u64)).clamp(1, 256);
    let files = (0..clients)
        .map(|f| scratch.create_file(&format!("s{f}")))
        .collect::<Result<Vec<_>>>()?;
    let data = vec![0x5au8; size];
    let t = closed_loop(clients, duration, |c, i| {
        let f = &files[c];
        let slot = i % slots;
        if slot == 0 && i > 0 {
            f.set_len(0).map_err(Error::from)?;
        }
        f.write_all_at(&data, slot * size as u64)
            .map_err(Error::from)?;
        f.sync_data().map_err(Error::from)?;
        Ok(size as u64)
    });
    Ok(t?.result("raw-seqwrite", "raw", clients))
}

/// The raw anchor for random reads: `pread` of 4 KiB at random aligned offsets of a
/// buffered, pre-written file as large as the workload's objects together.
pub fn raw_reads(
    dir: &Path,
    bytes: u64,
    clients: usize,
    duration: Duration,
    seed: u64,
) -> Result<BenchResult> {
    use std::os::unix::fs::FileExt;
    let p = dir.join(format!("raw-read-{}", std::process::id()));
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&p)
        .map_err(Error::from)?;
    let chunk = vec![1u8; 1 << 20];
    let mut off = 0;
    while off < bytes {
        f.write_all_at(&chunk, off).map_err(Error::from)?;
        off += chunk.len() as u64;
    }
    f.sync_all().map_err(Error::from)?;
    let blocks = (bytes / 4096).max(1);
    let t = closed_loop(clients, duration, |c, i| {
        let mut b = [0u8; 4096];
        let r = mix(seed ^ ((c as u64) << 40) ^ i);
        f.read_exact_at(&mut b, (r % blocks) * 4096)
            .map_err(Error::from)?;
        Ok(4096)
    });
    let _ = std::fs::remove_file(&p);
    Ok(t?.result("raw-pread", "raw", clients))
}

/// The raw anchor for replay: one sequential pass of 1 MiB `read`s over a file of
/// `bytes`, written and synced first, with the page cache dropped before the pass (as
/// the replay benchmark drops it before mounting), so it is the disk's sequential read
/// bandwidth when run as root.
pub fn raw_seq_read(dir: &Path, bytes: u64) -> Result<BenchResult> {
    use std::io::Read;
    let p = dir.join(format!("raw-seqread-{}", std::process::id()));
    let written = (|| -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(&p)?;
        let chunk = vec![1u8; 1 << 20];
        let mut off = 0;
        while off < bytes {
            f.write_all(&chunk)?;
            off += chunk.len() as u64;
        }
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&p);
        return Err(Error::from(e));
    }
    drop_caches();
    let t0 = Instant::now();
    let read = (|| -> std::io::Result<u64> {
        let mut f = std::fs::File::open(&p)?;
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                return Ok(total);
            }
            total += n as u64;
        }
    })();
    let secs = t0.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&p);
    let total = read.map_err(Error::from)?;
    Ok(Tally {
        ops: total >> 20,
        bytes: total,
        secs,
        hist: hist(),
    }
    .result("raw-seqread", "raw", 1))
}

/// The raw RocksDB anchor: `clients` threads, each committing a one-key WriteBatch of a
/// `size`-byte value with sync=true (RocksDB's own group commit), on a fresh database in
/// the scratch directory. KeyValueStore's small transactions are compared with it.
pub fn raw_rocksdb_sync(
    dir: &Path,
    size: usize,
    clients: usize,
    duration: Duration,
) -> Result<BenchResult> {
    use ostore_kv::{KeyValueDB, RocksDb, RocksOptions, WriteBatch};
    let d = dir.join(format!("raw-rocksdb-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    let kve = |e: ostore_kv::Error| Error::io(format!("rocksdb: {e}"));
    let db = RocksDb::open(&d, RocksOptions::default()).map_err(kve)?;
    let value = vec![0x5au8; size];
    let t = closed_loop(clients, duration, |c, i| {
        let mut b = WriteBatch::new();
        b.set(
            format!("obj{c:04}.{:08}", i % 256).into_bytes(),
            value.clone(),
        );
        db.commit(&b, true).map_err(kve)?;
        Ok(size as u64)
    });
    drop(db);
    let _ = std::fs::remove_dir_all(&d);
    Ok(t?.result("raw-rocksdb-sync", "raw", clients))
}

/// Memory copy bandwidth in 1 MiB blocks over 256 MiB, one thread: MemStore's ceiling.
pub fn memcpy_bandwidth() -> BenchResult {
    let src = vec![1u8; 256 << 20];
    let mut dst = vec![0u8; 256 << 20];
    let t0 = Instant::now();
    let mut rounds = 0u64;
    while t0.elapsed() < Duration::from_millis(500) {
        for (d, s) in dst.chunks_mut(1 << 20).zip(src.chunks(1 << 20)) {
            d.copy_from_slice(s);
        }
        rounds += 1;
    }
    std::hint::black_box(&dst);
    let secs = t0.elapsed().as_secs_f64();
    Tally {
        ops: rounds * 256,
        bytes: rounds * (256 << 20),
        secs,
        hist: hist(),
    }
    .result("memcpy", "raw", 1)
}

/// Which anchor a workload is compared with, and on which figure.
fn anchor_for(workload: &str, o: &BenchOpts) -> Result<Option<(BenchResult, &'static str)>> {
    let d = o.duration.min(Duration::from_secs(5));
    Ok(match workload {
        "small-overwrite" | "rados-4k" | "create-small" | "clone-overwrite" | "omap-heavy"
        | "mixed" => Some((raw_sync_writes(&o.dir, 4096, o.clients, false, d)?, "ops/s")),
        "large-write" => Some((raw_seq_writes(&o.dir, 4 << 20, o.clients, d)?, "MB/s")),
        "osd-bench" => Some((
            raw_sync_writes(&o.dir, o.block_size.max(4096) as usize, 1, false, d)?,
            if o.block_size >= (1 << 20) {
                "MB/s"
            } else {
                "ops/s"
            },
        )),
        "replay" => Some((raw_seq_read(&o.dir, o.total_bytes.max(1 << 20))?, "MB/s")),
        "read-random" => Some((
            raw_reads(
                &o.dir,
                o.objects.max(o.clients) as u64 * o.object_size,
                o.clients,
                d,
                o.seed,
            )?,
            "ops/s",
        )),
        _ => None,
    })
}

/// The journal alone (`os-bench --workload journal`): durable appends of `block_size`
/// bytes by `clients` appenders, alternated every 250 ms with the log-shaped raw loop of
/// the same shape (`raw-log`: each writer `pwrite` + `fdatasync` sequentially through its
/// share of a journal volume), so both see the same state of the disk; the ratio is of
/// the totals.
fn journal_bench(o: &BenchOpts) -> Result<BenchResult> {
    use ostore_journal::bench::{config, run_interleaved};
    let cfg = config(&o.dir, o.block_size.max(1) as usize, o.clients, o.duration);
    let slice = Duration::from_millis(250);
    let pairs = (o.duration.as_millis() / (2 * slice.as_millis())).max(2) as usize;
    let v = run_interleaved(&cfg, slice, pairs).map_err(ostore_os::journaling::journal_error)?;
    let j = v.journal;
    let mut r = Tally {
        ops: j.ops,
        bytes: j.bytes,
        secs: j.secs,
        hist: hist(),
    }
    .result("journal", "journal", o.clients);
    r.anchor = Some(format!("raw-log interleaved x{}", o.clients));
    r.anchor_value = Some(v.raw_log.ops_per_sec());
    r.ratio = Some(v.ratio());
    r.ratio_of = Some("ops/s".into());
    r.notes
        .insert("entry_bytes".into(), o.block_size.to_string());
    r.notes.insert(
        "ratio_per_pair".into(),
        format!(
            "median {:.3} ({:.2}-{:.2}) of {pairs} pairs of {} ms slices",
            v.per_pair.median,
            v.per_pair.min,
            v.per_pair.max,
            slice.as_millis()
        ),
    );
    let us = |b: &ostore_journal::bench::BenchResult| {
        let (wall, write, sync) = b.micros_per_op();
        format!("{wall:.0} wall, {write:.0} in writes, {sync:.0} in fdatasync")
    };
    r.notes.insert("us_per_op_journal".into(), us(&v.journal));
    r.notes.insert("us_per_op_raw_log".into(), us(&v.raw_log));
    Ok(r)
}

/// Runs `workload` and its anchor, and fills in the ratio.
pub fn run(workload_name: &str, o: &BenchOpts) -> Result<BenchResult> {
    std::fs::create_dir_all(&o.dir)
        .map_err(|e| Error::from(e).context(format!("creating {}", o.dir.display())))?;
    if workload_name == "journal" {
        return journal_bench(o);
    }
    if workload_name == "memcpy" {
        return Ok(memcpy_bandwidth());
    }
    if workload_name == "rocksdb-sync" {
        return raw_rocksdb_sync(&o.dir, 4096, o.clients, o.duration);
    }
    let mut r = workload(workload_name, o)?;
    if o.backend.starts_with("kvstore")
        && matches!(
            workload_name,
            "small-overwrite" | "rados-4k" | "create-small"
        )
    {
        let d = o.duration.min(Duration::from_secs(5));
        let rdb = raw_rocksdb_sync(&o.dir, 4096, o.clients, d)?;
        r.notes.insert(
            "raw_rocksdb_sync_ops_per_sec".into(),
            format!("{:.0}", rdb.ops_per_sec),
        );
        r.notes.insert(
            "ratio_vs_rocksdb_sync".into(),
            format!("{:.2}", r.ops_per_sec / rdb.ops_per_sec.max(1e-9)),
        );
    }
    if workload_name == "large-write" {
        // The overwrite loop, anchor of large-write until 2026-12-06, kept beside the
        // sequential one so older figures stay comparable.
        let d = o.duration.min(Duration::from_secs(5));
        let ow = raw_sync_writes(&o.dir, 4 << 20, o.clients, false, d)?;
        r.notes.insert(
            "raw_overwrite_mb_per_sec".into(),
            format!("{:.0}", ow.mb_per_sec),
        );
        r.notes.insert(
            "ratio_vs_overwrite".into(),
            format!("{:.2}", r.mb_per_sec / ow.mb_per_sec.max(1e-9)),
        );
    }
    if let Some((a, of)) = anchor_for(workload_name, o)? {
        let (mine, theirs) = if of == "MB/s" {
            (r.mb_per_sec, a.mb_per_sec)
        } else {
            (r.ops_per_sec, a.ops_per_sec)
        };
        r.anchor = Some(format!("{} x{}", a.workload, a.clients));
        r.anchor_value = Some(theirs);
        r.ratio = (theirs > 0.0).then(|| mine / theirs);
        r.ratio_of = Some(of.into());
    }
    Ok(r)
}

// ---------------------------------------------------------------- reports

/// A markdown table of results.
pub fn table(rs: &[BenchResult]) -> String {
    let mut s = String::from(
        "| workload | backend | clients | ops/s | MB/s | p50 µs | p99 µs | p99.9 µs | anchor | anchor value | ratio |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rs {
        let lat = |v: u64| {
            if r.latencies {
                v.to_string()
            } else {
                "-".to_string()
            }
        };
        s.push_str(&format!(
            "| {} | {} | {} | {:.0} | {:.1} | {} | {} | {} | {} | {} | {} |\n",
            r.workload,
            r.backend,
            r.clients,
            r.ops_per_sec,
            r.mb_per_sec,
            lat(r.p50_us),
            lat(r.p99_us),
            lat(r.p999_us),
            r.anchor.as_deref().unwrap_or("-"),
            r.anchor_value.map_or("-".into(), |v| format!(
                "{v:.1} {}",
                r.ratio_of.as_deref().unwrap_or("")
            )),
            r.ratio.map_or("-".into(), |v| format!("{v:.2}")),
        ));
    }
    // Second anchors (raw RocksDB for kvstore, the overwrite loop for large-write) and the
    // journal's time per append split beside its anchor's.
    for r in rs {
        let extra: Vec<String> = r
            .notes
            .iter()
            .filter(|(k, _)| {
                k.starts_with("ratio_vs_") || k.starts_with("raw_") || k.starts_with("us_per_op")
            })
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        if !extra.is_empty() {
            s.push_str(&format!(
                "\n{} on {} x{}: {}",
                r.workload,
                r.backend,
                r.clients,
                extra.join(", ")
            ));
        }
    }
    if rs
        .iter()
        .any(|r| r.notes.keys().any(|k| k.starts_with("ratio_vs_")))
    {
        s.push('\n');
    }
    s
}

/// An SVG bar chart: one group per workload, one bar per backend (ops/s, log scale),
/// with the anchor as a tick.
pub fn svg(rs: &[BenchResult]) -> String {
    let mut workloads: Vec<&str> = Vec::new();
    let mut backends: Vec<&str> = Vec::new();
    for r in rs {
        if !workloads.contains(&r.workload.as_str()) {
            workloads.push(&r.workload);
        }
        if !backends.contains(&r.backend.as_str()) {
            backends.push(&r.backend);
        }
    }
    let colors = [
        "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#b07aa1",
    ];
    let (bar, gap, h, top) = (18.0, 24.0, 300.0, 30.0);
    let group = bar * backends.len().max(1) as f64 + gap;
    let width = 80.0 + group * workloads.len() as f64 + 160.0;
    let max = rs
        .iter()
        .map(|r| r.ops_per_sec.max(r.anchor_value.unwrap_or(0.0)))
        .fold(10.0, f64::max);
    let y = |v: f64| top + h - (v.max(1.0).log10() / max.log10()) * h;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{:.0}\" font-family=\"sans-serif\" font-size=\"11\">\n<text x=\"10\" y=\"18\" font-size=\"14\">ostore os-bench: ops/s per workload (log scale; black tick = anchor)</text>\n",
        top + h + 90.0
    );
    for (wi, w) in workloads.iter().enumerate() {
        let x0 = 60.0 + wi as f64 * group;
        for (bi, b) in backends.iter().enumerate() {
            if let Some(r) = rs.iter().find(|r| r.workload == *w && r.backend == *b) {
                let x = x0 + bi as f64 * bar;
                let yy = y(r.ops_per_sec);
                s.push_str(&format!(
                    "<rect x=\"{x:.1}\" y=\"{yy:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"><title>{w} {b}: {:.0} ops/s</title></rect>\n",
                    bar - 2.0,
                    top + h - yy,
                    colors[bi % colors.len()],
                    r.ops_per_sec
                ));
                if let Some(a) = r
                    .anchor_value
                    .filter(|_| r.ratio_of.as_deref() == Some("ops/s"))
                {
                    let ya = y(a);
                    s.push_str(&format!(
                        "<line x1=\"{x:.1}\" x2=\"{:.1}\" y1=\"{ya:.1}\" y2=\"{ya:.1}\" stroke=\"black\" stroke-width=\"2\"/>\n",
                        x + bar - 2.0
                    ));
                }
            }
        }
        s.push_str(&format!(
            "<text transform=\"translate({:.1},{:.1}) rotate(40)\">{w}</text>\n",
            x0,
            top + h + 12.0
        ));
    }
    for (bi, b) in backends.iter().enumerate() {
        let yy = top + 14.0 * bi as f64;
        s.push_str(&format!(
            "<rect x=\"{:.0}\" y=\"{yy:.0}\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{:.0}\" y=\"{:.0}\">{b}</text>\n",
            width - 140.0,
            colors[bi % colors.len()],
            width - 125.0,
            yy + 9.0
        ));
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_shows_latencies_only_where_recorded() {
        let mut h = hist();
        h.record(250).unwrap();
        let timed = Tally {
            ops: 1,
            bytes: 4096,
            secs: 1.0,
            hist: h,
        }
        .result("small-overwrite", "memstore", 1);
        let mut counted = Tally {
            ops: 1,
            bytes: 4096,
            secs: 1.0,
            hist: hist(),
        }
        .result("journal", "journal", 1);
        for k in ["us_per_op_journal", "us_per_op_raw_log"] {
            counted.notes.insert(k.into(), format!("{k} value"));
        }
        let t = table(&[timed, counted]);
        // The journal's time split is printed below the table, both sides of it.
        assert!(
            t.contains("journal on journal x1: us_per_op_journal us_per_op_journal value, us_per_op_raw_log us_per_op_raw_log value"),
            "{t}"
        );
        let rows: Vec<&str> = t.lines().filter(|l| l.starts_with("| ")).collect();
        assert_eq!(rows.len(), 3, "{t}");
        let cells =
            |row: &str| -> Vec<String> { row.split('|').map(|c| c.trim().to_string()).collect() };
        // Columns 6-8 are p50, p99, p99.9 (column 0 is before the first bar).
        assert_eq!(cells(rows[1])[6..9], ["250", "250", "250"], "{t}");
        assert_eq!(cells(rows[2])[6..9], ["-", "-", "-"], "{t}");
    }
}
