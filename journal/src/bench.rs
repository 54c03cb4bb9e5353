//! Benchmark workloads shared by `cargo bench -p ostore-journal` and `os-bench journal`:
//! durable appends at a given size and concurrency, and two raw anchors with the same sizes
//! and concurrency, each thread `pwrite` + `fdatasync` on its own pre-written file:
//! [`run_raw`] rewrites a small file (16 MiB at most, so its pages stay hot), and
//! [`run_raw_log`] writes sequentially through files as large together as one journal
//! volume, wrapping at the end, which is the access pattern of the journal itself. On this
//! machine's virtual disk the small rewrite loop syncs ~1.4x faster per MiB than the same
//! loop over 64 MiB (see BENCHMARKS.md), so the journal is compared with both.
//! All run on real files through [`RealFs`]; results are counts over a fixed wall time.

use crate::aligned::AlignedBuf;
use crate::error::{Error, Result};
use crate::format::Geometry;
use crate::journal::{Journal, JournalOptions};
use crate::scan::{MetaAction, ScanCallbacks};
use crate::vfs::{OpenMode, RealFs, Vfs, VfsFile};
use crate::Position;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One benchmark run.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Scratch directory (created; contents removed afterwards).
    pub dir: PathBuf,
    /// Bytes of data per append (the metadata is 16 more bytes).
    pub entry_size: usize,
    /// Concurrent appenders (threads), each waiting for durability before its next append.
    pub concurrency: usize,
    /// Measured time.
    pub duration: Duration,
    /// Journal tuning.
    pub options: JournalOptions,
    /// Journal geometry.
    pub geometry: Geometry,
}

/// What a run achieved.
#[derive(Debug, Clone, Copy)]
pub struct BenchResult {
    /// Durable appends (or raw write+sync pairs).
    pub ops: u64,
    /// Bytes of data made durable.
    pub bytes: u64,
    /// Measured seconds.
    pub secs: f64,
    /// Seconds in write calls, added up over threads (the journal's: [`Journal::io_times`]).
    pub write_secs: f64,
    /// Seconds in `fdatasync` calls, added up over threads.
    pub sync_secs: f64,
}

impl BenchResult {
    /// The runs taken as one: their operations, bytes and seconds added up.
    pub fn total<'a>(runs: impl IntoIterator<Item = &'a BenchResult>) -> BenchResult {
        runs.into_iter().fold(
            BenchResult {
                ops: 0,
                bytes: 0,
                secs: 0.0,
                write_secs: 0.0,
                sync_secs: 0.0,
            },
            |t, r| BenchResult {
                ops: t.ops + r.ops,
                bytes: t.bytes + r.bytes,
                secs: t.secs + r.secs,
                write_secs: t.write_secs + r.write_secs,
                sync_secs: t.sync_secs + r.sync_secs,
            },
        )
    }
    /// Operations per second.
    pub fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.secs
    }
    /// Megabytes (10^6) per second.
    pub fn mb_per_sec(&self) -> f64 {
        self.bytes as f64 / self.secs / 1e6
    }
    /// Microseconds per operation: of wall time, in writes, in `fdatasync`. With one thread
    /// the wall time less the other two is what the code around the calls costs.
    pub fn micros_per_op(&self) -> (f64, f64, f64) {
        let per = |secs: f64| secs * 1e6 / self.ops.max(1) as f64;
        (per(self.secs), per(self.write_secs), per(self.sync_secs))
    }
}

/// Median, least and greatest of some ratios.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    /// The middle value (the upper one of an even count).
    pub median: f64,
    /// The least value.
    pub min: f64,
    /// The greatest value.
    pub max: f64,
}

impl Spread {
    /// The spread of `a / b` in ops/s over runs taken side by side; `None` for no runs.
    /// A side that did nothing counts as a tiny rate rather than dividing by zero.
    pub fn of_ratios<'a>(
        runs: impl IntoIterator<Item = (&'a BenchResult, &'a BenchResult)>,
    ) -> Option<Spread> {
        let mut v: Vec<f64> = runs
            .into_iter()
            .map(|(a, b)| a.ops_per_sec() / b.ops_per_sec().max(1e-9))
            .collect();
        v.sort_by(f64::total_cmp);
        Some(Spread {
            median: v.get(v.len() / 2).copied()?,
            min: v[0],
            max: v[v.len() - 1],
        })
    }
}

/// What [`run_interleaved`] measured.
#[derive(Debug, Clone)]
pub struct Interleaved {
    /// Each pair's (journal, raw-log) slices, in the order run.
    pub pairs: Vec<(BenchResult, BenchResult)>,
    /// The journal's slices added up.
    pub journal: BenchResult,
    /// The raw-log slices added up.
    pub raw_log: BenchResult,
    /// The spread of the pairs' journal / raw-log ratios.
    pub per_pair: Spread,
}

impl Interleaved {
    fn new(pairs: Vec<(BenchResult, BenchResult)>) -> Result<Interleaved> {
        let per_pair = Spread::of_ratios(pairs.iter().map(|(j, l)| (j, l))).ok_or_else(no_pairs)?;
        Ok(Interleaved {
            journal: BenchResult::total(pairs.iter().map(|p| &p.0)),
            raw_log: BenchResult::total(pairs.iter().map(|p| &p.1)),
            per_pair,
            pairs,
        })
    }

    /// The journal's ops/s over the raw-log's, of the totals.
    pub fn ratio(&self) -> f64 {
        self.journal.ops_per_sec() / self.raw_log.ops_per_sec().max(1e-9)
    }
}

fn no_pairs() -> Error {
    Error::InvalidConfig("an interleaved run needs at least one pair".into())
}

struct Nothing;
impl ScanCallbacks for Nothing {
    fn meta(&mut self, _p: Position, _m: &[u8], _l: u64) -> MetaAction {
        MetaAction::Skip
    }
}

fn run_threads(
    n: usize,
    duration: Duration,
    entry_size: usize,
    body: impl Fn(usize, &AtomicBool, &AtomicU64) -> Result<()> + Sync,
) -> Result<BenchResult> {
    run_threads_until(n, entry_size, body, |elapsed| elapsed >= duration)
}

/// [`run_threads`] that stops when `done(elapsed)` says so (polled every 5 ms).
fn run_threads_until(
    n: usize,
    entry_size: usize,
    body: impl Fn(usize, &AtomicBool, &AtomicU64) -> Result<()> + Sync,
    mut done: impl FnMut(Duration) -> bool,
) -> Result<BenchResult> {
    let stop = AtomicBool::new(false);
    let count = AtomicU64::new(0);
    let start = Instant::now();
    let r: Result<()> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..n)
            .map(|t| {
                let (stop, count, body) = (&stop, &count, &body);
                s.spawn(move || body(t, stop, count))
            })
            .collect();
        while !done(start.elapsed()) && !hs.iter().all(|h| h.is_finished()) {
            std::thread::sleep(Duration::from_millis(5));
        }
        stop.store(true, Ordering::SeqCst);
        let mut r = Ok(());
        for h in hs {
            match h.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => r = Err(e),
                Err(_) => r = Err(Error::InvalidConfig("benchmark thread panicked".into())),
            }
        }
        r
    });
    r?;
    let ops = count.load(Ordering::SeqCst);
    Ok(BenchResult {
        ops,
        bytes: ops * entry_size as u64,
        secs: start.elapsed().as_secs_f64(),
        write_secs: 0.0,
        sync_secs: 0.0,
    })
}

/// A journal open for benchmarking: appenders wait for durability before their next
/// append; volumes are trimmed as a store's checkpoints would.
struct JournalBench<'a> {
    cfg: &'a BenchConfig,
    dir: PathBuf,
    j: Journal,
    data: Vec<u8>,
}

impl<'a> JournalBench<'a> {
    fn open(cfg: &'a BenchConfig) -> Result<Self> {
        let fs: Arc<dyn Vfs> = Arc::new(RealFs);
        let dir = cfg.dir.join("journal");
        let _ = std::fs::remove_dir_all(&dir);
        Journal::create(&*fs, &dir, cfg.geometry)?;
        let (j, _) = Journal::open(fs, &dir, cfg.options.clone(), &mut Nothing)?;
        // Let the blank maker finish before measuring: its zero-filling competes for the disk.
        let deadline = Instant::now() + Duration::from_secs(60);
        while j.blanks_ready() < cfg.options.blank_target.min(1) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        j.append(b"warmup", &[0u8; 4096])?.wait()?;
        let jb = JournalBench {
            cfg,
            dir,
            j,
            data: vec![0x5au8; cfg.entry_size],
        };
        jb.blanks_refilled();
        Ok(jb)
    }

    fn blanks_refilled(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.j.blanks_ready() < self.cfg.options.blank_target && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn run_until(&self, done: impl FnMut(Duration) -> bool) -> Result<BenchResult> {
        let appender = |t: usize, stop: &AtomicBool, count: &AtomicU64| -> Result<()> {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let meta = [t as u64, i].map(u64::to_le_bytes).concat();
                self.j.append(&meta, &self.data)?.wait()?;
                count.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
            Ok(())
        };
        let before = self.j.io_times();
        let mut r = run_threads_until(self.cfg.concurrency, self.cfg.entry_size, appender, done)?;
        let io = self.j.io_times().since(&before);
        r.write_secs = io.write_ns as f64 / 1e9;
        r.sync_secs = io.sync_ns as f64 / 1e9;
        Ok(r)
    }

    fn run_for(&self, d: Duration) -> Result<BenchResult> {
        self.run_until(|elapsed| elapsed >= d)
    }

    /// Warm up to the steady state before the clock starts: until the journal has moved
    /// through more volumes than the blank pool holds (so trimmed volumes come back as
    /// blanks faster than they are taken) or for at most the measured time. Without it
    /// the pool's first refills (a volume of zeros written and synced each, beside the
    /// journal's own writes) fell inside the measured seconds: 3 of them in a 2 s run of
    /// 1 MiB entries.
    fn warm_up(&self) -> Result<()> {
        let first = self.j.end_position().volume;
        let settled = first + self.cfg.options.max_blanks as u64 + 2;
        self.run_until(|elapsed| {
            elapsed >= self.cfg.duration || self.j.end_position().volume >= settled
        })?;
        self.blanks_refilled();
        Ok(())
    }

    /// Run `f` while a thread of its own trims volumes, as a store's checkpoints would: a
    /// trim's renames and directory syncs are not on an appender's path.
    fn trimming<R>(&self, f: impl FnOnce() -> Result<R>) -> Result<R> {
        let trimming = AtomicBool::new(true);
        let trimmer = || -> Result<()> {
            while trimming.load(Ordering::Relaxed) {
                let end = self.j.end_position().volume;
                self.j.trim_before(end.saturating_sub(1))?;
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(())
        };
        std::thread::scope(|s| {
            let t = s.spawn(trimmer);
            let r = f();
            trimming.store(false, Ordering::Relaxed);
            let t = t
                .join()
                .unwrap_or_else(|_| Err(Error::InvalidConfig("trim thread panicked".into())));
            r.and_then(|r| t.map(|()| r))
        })
    }

    fn close(self) -> Result<()> {
        self.j.close()?;
        let _ = std::fs::remove_dir_all(&self.dir);
        Ok(())
    }
}

/// Durable journal appends. Volumes are trimmed as the run goes, as checkpoints would.
pub fn run_journal(cfg: &BenchConfig) -> Result<BenchResult> {
    let jb = JournalBench::open(cfg)?;
    let r = jb.trimming(|| {
        jb.warm_up()?;
        jb.run_for(cfg.duration)
    });
    jb.close()?;
    r
}

/// The journal and the log-shaped raw anchor ([`run_raw_log`]) in `pairs` pairs of
/// alternating slices of `slice` each, on one open journal and one set of raw files:
/// within a pair both see the same state of the disk, which on a virtual disk drifts by
/// tens of percent over minutes, more than the difference measured. Which of the two runs
/// first alternates between pairs. `pairs` of 0 is refused.
pub fn run_interleaved(cfg: &BenchConfig, slice: Duration, pairs: usize) -> Result<Interleaved> {
    if pairs == 0 {
        return Err(no_pairs());
    }
    let raw = RawBench::open(cfg, "raw-log", log_slots(cfg), false)?;
    let jb = JournalBench::open(cfg)?;
    let r = jb.trimming(|| {
        jb.warm_up()?;
        (0..pairs)
            .map(|i| {
                if i % 2 == 0 {
                    let j = jb.run_for(slice)?;
                    Ok((j, raw.run_for(slice)?))
                } else {
                    let r = raw.run_for(slice)?;
                    Ok((jb.run_for(slice)?, r))
                }
            })
            .collect()
    });
    jb.close()?;
    Interleaved::new(r?)
}

/// The raw anchor: each thread overwrites its own pre-written file of at most 16 MiB,
/// `pwrite` + `fdatasync`.
pub fn run_raw(cfg: &BenchConfig) -> Result<BenchResult> {
    let slots = (16 << 20) / cfg.entry_size.max(1);
    RawBench::open(cfg, "raw", slots.clamp(4, 256) as u64, false)?.run_for(cfg.duration)
}

/// Entries per writer of the log-shaped loops: 1/N of a journal volume, at least 4.
fn log_slots(cfg: &BenchConfig) -> u64 {
    let per_writer = cfg.geometry.volume_size / cfg.concurrency.max(1) as u64;
    (per_writer / cfg.entry_size.max(1) as u64).max(4)
}

/// The log-shaped raw anchor: each of the N threads writes sequentially through its own
/// pre-written file of 1/N of a journal volume (at least 4 entries), wrapping at its end.
pub fn run_raw_log(cfg: &BenchConfig) -> Result<BenchResult> {
    RawBench::open(cfg, "raw-log", log_slots(cfg), false)?.run_for(cfg.duration)
}

/// [`run_raw_log`] with `O_DIRECT` writes from aligned buffers (then `fdatasync`), the
/// journal's own write path when direct I/O is on: the limit of that path.
pub fn run_raw_direct(cfg: &BenchConfig) -> Result<BenchResult> {
    RawBench::open(cfg, "raw-direct", log_slots(cfg), true)?.run_for(cfg.duration)
}

/// Pre-written files of a raw loop, one per thread, each written at `slots` entry-sized
/// places in turn; removed on drop.
struct RawBench<'a> {
    cfg: &'a BenchConfig,
    dir: PathBuf,
    slots: u64,
    files: Vec<(PathBuf, Box<dyn VfsFile>)>,
    /// Where each thread's next write goes, kept across runs so that slices of one
    /// interleaved run continue through the files as one run would.
    next: Vec<AtomicU64>,
    data: AlignedBuf,
}

impl<'a> RawBench<'a> {
    fn open(cfg: &'a BenchConfig, name: &str, slots: u64, direct: bool) -> Result<Self> {
        let fs = RealFs;
        let dir = cfg.dir.join(name);
        let _ = std::fs::remove_dir_all(&dir);
        fs.create_dir_all(&dir)
            .map_err(|e| Error::io("mkdir", &dir, e))?;
        let file_len = slots * cfg.entry_size as u64;
        let files = (0..cfg.concurrency)
            .map(|t| {
                let p = dir.join(format!("raw-{t}"));
                let f = fs
                    .open(&p, OpenMode::CreateTruncate)
                    .map_err(|e| Error::io("create", &p, e))?;
                let zeros = vec![0u8; 1 << 20];
                let mut off = 0;
                while off < file_len {
                    let n = zeros.len().min((file_len - off) as usize);
                    f.write_at(&zeros[..n], off)
                        .map_err(|e| Error::io("write", &p, e))?;
                    off += n as u64;
                }
                f.sync_all().map_err(|e| Error::io("fsync", &p, e))?;
                let f = if direct {
                    fs.open(&p, OpenMode::ReadWriteDirect)
                        .map_err(|e| Error::io("open", &p, e))?
                } else {
                    f
                };
                Ok((p, f))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(RawBench {
            cfg,
            dir,
            slots,
            files,
            next: (0..cfg.concurrency).map(|_| AtomicU64::new(0)).collect(),
            data: AlignedBuf::from_slice(&vec![0x5au8; cfg.entry_size]),
        })
    }

    fn run_for(&self, d: Duration) -> Result<BenchResult> {
        let size = self.cfg.entry_size;
        let (write_ns, sync_ns) = (AtomicU64::new(0), AtomicU64::new(0));
        let nanos = |t: Instant| u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let mut r = run_threads(self.cfg.concurrency, d, size, |t, stop, count| {
            let (p, f) = &self.files[t];
            while !stop.load(Ordering::Relaxed) {
                let i = self.next[t].fetch_add(1, Ordering::Relaxed);
                let off = (i % self.slots) * size as u64;
                let at = Instant::now();
                f.write_at(&self.data, off)
                    .map_err(|e| Error::io("write", p, e))?;
                let synced = Instant::now();
                write_ns.fetch_add(nanos(at), Ordering::Relaxed);
                f.sync_data().map_err(|e| Error::io("fdatasync", p, e))?;
                sync_ns.fetch_add(nanos(synced), Ordering::Relaxed);
                count.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        })?;
        r.write_secs = write_ns.into_inner() as f64 / 1e9;
        r.sync_secs = sync_ns.into_inner() as f64 / 1e9;
        Ok(r)
    }
}

impl Drop for RawBench<'_> {
    fn drop(&mut self) {
        self.files.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A default configuration in `dir`.
pub fn config(
    dir: &Path,
    entry_size: usize,
    concurrency: usize,
    duration: Duration,
) -> BenchConfig {
    BenchConfig {
        dir: dir.to_path_buf(),
        entry_size,
        concurrency,
        duration,
        options: JournalOptions::default(),
        geometry: Geometry::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(ops: u64, secs: f64) -> BenchResult {
        BenchResult {
            ops,
            bytes: ops * 10,
            secs,
            write_secs: secs / 4.0,
            sync_secs: secs / 2.0,
        }
    }

    #[test]
    fn totals_add_ops_bytes_and_seconds() {
        let t = BenchResult::total(&[run(10, 1.0), run(30, 3.0)]);
        assert_eq!((t.ops, t.bytes), (40, 400));
        assert!((t.secs - 4.0).abs() < 1e-12);
        assert!((t.write_secs - 1.0).abs() < 1e-12 && (t.sync_secs - 2.0).abs() < 1e-12);
        assert_eq!(BenchResult::total(&[]).ops, 0);
    }

    #[test]
    fn micros_per_op_split_wall_write_and_sync_time() {
        // 40 ops in 4 s: 100 ms each, a quarter of it writing and half syncing.
        let (wall, write, sync) = BenchResult::total(&[run(10, 1.0), run(30, 3.0)]).micros_per_op();
        assert!((wall - 100_000.0).abs() < 1e-6, "{wall}");
        assert!((write - 25_000.0).abs() < 1e-6, "{write}");
        assert!((sync - 50_000.0).abs() < 1e-6, "{sync}");
    }

    #[test]
    fn spread_of_ratios_picks_median_min_max() {
        let a = [run(10, 1.0), run(30, 1.0), run(20, 1.0)];
        let b = [run(10, 1.0), run(10, 1.0), run(10, 1.0)];
        let s = Spread::of_ratios(a.iter().zip(&b)).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(Spread::of_ratios(a.iter().zip(&[])), None);
    }

    #[test]
    fn interleaved_ratio_is_of_the_totals() {
        // Per pair 1.0 and 3.0, but the totals are 40 ops against 20 over the same time.
        let v = Interleaved::new(vec![
            (run(10, 1.0), run(10, 1.0)),
            (run(30, 1.0), run(10, 1.0)),
        ])
        .unwrap();
        assert_eq!((v.journal.ops, v.raw_log.ops), (40, 20));
        assert!((v.ratio() - 2.0).abs() < 1e-12);
        assert_eq!((v.per_pair.min, v.per_pair.max), (1.0, 3.0));
        assert!(Interleaved::new(Vec::new()).is_err());
    }
}
