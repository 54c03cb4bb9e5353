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
use crate::vfs::{OpenMode, RealFs, Vfs};
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
}

impl BenchResult {
    /// Operations per second.
    pub fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.secs
    }
    /// Megabytes (10^6) per second.
    pub fn mb_per_sec(&self) -> f64 {
        self.bytes as f64 / self.secs / 1e6
    }
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
    })
}

/// Durable journal appends. Volumes are trimmed as the run goes, as checkpoints would.
pub fn run_journal(cfg: &BenchConfig) -> Result<BenchResult> {
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
    while j.blanks_ready() < cfg.options.blank_target && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let data = vec![0x5au8; cfg.entry_size];
    let appender = |t: usize, stop: &AtomicBool, count: &AtomicU64| -> Result<()> {
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let meta = [t as u64, i].map(u64::to_le_bytes).concat();
            let h = j.append(&meta, &data)?;
            h.wait()?;
            count.fetch_add(1, Ordering::Relaxed);
            i += 1;
        }
        Ok(())
    };
    // Volumes are trimmed as a store's checkpoints would, from a thread of its own: a
    // trim's renames and directory syncs are not on an appender's path.
    let trimming = AtomicBool::new(true);
    let trimmer = || -> Result<()> {
        while trimming.load(Ordering::Relaxed) {
            let end = j.end_position().volume;
            j.trim_before(end.saturating_sub(1))?;
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    };
    // Warm up to the steady state before the clock starts: until the journal has moved
    // through more volumes than the blank pool holds (so trimmed volumes come back as
    // blanks faster than they are taken) or for at most the measured time. Without it
    // the pool's first refills (a volume of zeros written and synced each, beside the
    // journal's own writes) fell inside the measured seconds: 3 of them in a 2 s run of
    // 1 MiB entries.
    let measure = || -> Result<BenchResult> {
        let first = j.end_position().volume;
        let settled = first + cfg.options.max_blanks as u64 + 2;
        run_threads_until(cfg.concurrency, cfg.entry_size, appender, |elapsed| {
            elapsed >= cfg.duration || j.end_position().volume >= settled
        })?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while j.blanks_ready() < cfg.options.blank_target && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        run_threads(cfg.concurrency, cfg.duration, cfg.entry_size, appender)
    };
    let r = std::thread::scope(|s| {
        let t = s.spawn(trimmer);
        let r = measure();
        trimming.store(false, Ordering::Relaxed);
        let t = t
            .join()
            .unwrap_or_else(|_| Err(Error::InvalidConfig("trim thread panicked".into())));
        r.and_then(|r| t.map(|()| r))
    });
    j.close()?;
    let _ = std::fs::remove_dir_all(&dir);
    r
}

/// The raw anchor: each thread overwrites its own pre-written file of at most 16 MiB,
/// `pwrite` + `fdatasync`.
pub fn run_raw(cfg: &BenchConfig) -> Result<BenchResult> {
    let slots = (16 << 20) / cfg.entry_size.max(1);
    raw_loop(cfg, "raw", slots.clamp(4, 256) as u64, false)
}

/// The log-shaped raw anchor: each of the N threads writes sequentially through its own
/// pre-written file of 1/N of a journal volume (at least 4 entries), wrapping at its end.
pub fn run_raw_log(cfg: &BenchConfig) -> Result<BenchResult> {
    let per_writer = cfg.geometry.volume_size / cfg.concurrency.max(1) as u64;
    let slots = per_writer / cfg.entry_size.max(1) as u64;
    raw_loop(cfg, "raw-log", slots.max(4), false)
}

/// [`run_raw_log`] with `O_DIRECT` writes from aligned buffers (then `fdatasync`), the
/// journal's own write path when direct I/O is on: the limit of that path.
pub fn run_raw_direct(cfg: &BenchConfig) -> Result<BenchResult> {
    let per_writer = cfg.geometry.volume_size / cfg.concurrency.max(1) as u64;
    let slots = per_writer / cfg.entry_size.max(1) as u64;
    raw_loop(cfg, "raw-direct", slots.max(4), true)
}

fn raw_loop(cfg: &BenchConfig, name: &str, slots: u64, direct: bool) -> Result<BenchResult> {
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
    let data = AlignedBuf::from_slice(&vec![0x5au8; cfg.entry_size]);
    let r = run_threads(
        cfg.concurrency,
        cfg.duration,
        cfg.entry_size,
        |t, stop, count| {
            let (p, f) = &files[t];
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let off = (i % slots) * cfg.entry_size as u64;
                f.write_at(&data, off)
                    .map_err(|e| Error::io("write", p, e))?;
                f.sync_data().map_err(|e| Error::io("fdatasync", p, e))?;
                count.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
            Ok(())
        },
    );
    drop(files);
    let _ = std::fs::remove_dir_all(&dir);
    r
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
