//! `cargo bench -p ostore-journal`: durable appends/s and MB/s at 4 KiB, 64 KiB and 1 MiB, at 1,
//! 4, 16 and 64 appenders, beside the raw pwrite + fdatasync loop (same sizes, same number of
//! independent writers) run in the same process, interleaved. Prints a markdown table of medians,
//! and the median (min-max) of each rep's journal / raw-log ratio: the two runs of a rep are
//! seconds apart, so that ratio moves less with this VM's disk than the ratio of medians.
//!
//! Environment: OSTORE_BENCH_SECS (default 2), OSTORE_BENCH_REPS (default 3),
//! OSTORE_BENCH_DIR (default: a directory under /var/tmp, on the root filesystem),
//! OSTORE_BENCH_FILTER (e.g. "4096x64" to run one cell), OSTORE_BENCH_INFLIGHT (journal
//! flushes in flight), OSTORE_BENCH_IO=uring|pwrite (io_uring where allowed, or pwrite + fdatasync),
//! OSTORE_BENCH_BLANKS=1 (also compare blank allocation methods), OSTORE_BENCH_DIRECT=<bytes>
//! (`JournalOptions::direct_below`: batches below that size are written with O_DIRECT,
//! larger ones through the page cache; 0 = never direct), OSTORE_BENCH_WAITERS=0 (waiters never
//! flush their own batch, `JournalOptions::waiters_flush` off), OSTORE_BENCH_INPLACE=<bytes>
//! (`JournalOptions::inplace_from`: entries with that much data or more are written in place
//! by their appenders; 18446744073709551615 = never). A third anchor, `raw-direct`, is
//! the log-shaped loop with O_DIRECT writes: the limit of the journal's own write path.
//! OSTORE_BENCH_INTERLEAVE=<ms> instead alternates the journal and `raw-log` in slices of
//! that many milliseconds on one open journal and one set of raw files,
//! OSTORE_BENCH_PAIRS (default 20) pairs per cell, and prints the ratio of the totals and
//! the median (min-max) of the pairs' ratios: both sides then see the same disk state,
//! which drifts on this VM by more than the differences measured. It also splits each
//! side's time per operation into write calls, `fdatasync` calls and the rest (with one
//! appender, the rest is the code around the calls: for the journal the CRC, locking and
//! bookkeeping), which the disk's drift moves much less than the ratio.
//! OSTORE_BENCH_VOLUME=<bytes> sets the journal's volume size (and so the raw-log files').
//! A value that does not parse stops the run with a message naming the variable.

use ostore_journal::bench::{
    config, run_interleaved, run_journal, run_raw, run_raw_direct, run_raw_log, BenchResult, Spread,
};
use ostore_journal::{BlankMethod, IoMode};
use std::time::Duration;

/// A numeric setting; an unparseable value stops the run with a message rather than
/// measuring something else than asked.
fn env(name: &str, default: u64) -> u64 {
    env_opt(name).unwrap_or(default)
}

/// A setting that must be one of `allowed`.
fn env_choice(name: &str, allowed: &[&str]) -> Option<String> {
    let v = std::env::var(name).ok()?;
    if !allowed.contains(&v.as_str()) {
        eprintln!("{name}={v:?} is not one of {allowed:?}");
        std::process::exit(2);
    }
    Some(v)
}

fn env_opt(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    match v.parse() {
        Ok(n) => Some(n),
        Err(e) => {
            eprintln!("{name}={v:?} is not a number of the expected kind: {e}");
            std::process::exit(2);
        }
    }
}

fn median(mut v: Vec<BenchResult>) -> (BenchResult, f64, f64) {
    v.sort_by(|a, b| a.ops_per_sec().total_cmp(&b.ops_per_sec()));
    let lo = v.first().map_or(0.0, |r| r.ops_per_sec());
    let hi = v.last().map_or(0.0, |r| r.ops_per_sec());
    (v[v.len() / 2], lo, hi)
}

fn main() {
    // `cargo test --benches` runs this binary with --bench absent; do nothing then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let secs = env("OSTORE_BENCH_SECS", 2);
    let reps = env("OSTORE_BENCH_REPS", 3).max(1);
    let inflight = env("OSTORE_BENCH_INFLIGHT", 0) as usize;
    let filter = std::env::var("OSTORE_BENCH_FILTER").ok();
    let sizes = [4096usize, 65536, 1 << 20];
    let concs = [1usize, 4, 16, 64];
    if let Some(f) = &filter {
        if !sizes
            .iter()
            .any(|s| concs.iter().any(|c| *f == format!("{s}x{c}")))
        {
            eprintln!("OSTORE_BENCH_FILTER={f:?} names no cell (SIZExAPPENDERS, e.g. 4096x64)");
            std::process::exit(2);
        }
    }
    let uring = env_choice("OSTORE_BENCH_IO", &["pwrite", "uring"]).is_some_and(|v| v == "uring");
    let base = std::env::var("OSTORE_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| {
            std::path::PathBuf::from(format!("/var/tmp/ostore-bench-{}", std::process::id()))
        });
    std::fs::create_dir_all(&base).expect("bench dir");
    let dur = Duration::from_secs(secs);
    let direct = env_opt("OSTORE_BENCH_DIRECT");
    let inplace = env_opt("OSTORE_BENCH_INPLACE");
    let waiters = env_choice("OSTORE_BENCH_WAITERS", &["0", "1"]).map(|v| v == "1");
    let volume = env_opt("OSTORE_BENCH_VOLUME");
    let interleave = env_opt("OSTORE_BENCH_INTERLEAVE").map(Duration::from_millis);
    let pairs = env("OSTORE_BENCH_PAIRS", 20).max(1) as usize;
    if interleave.is_some() {
        println!("| entry | appenders | pairs x slice | journal appends/s | raw-log ops/s | journal / raw-log, totals | journal / raw-log, per pair | journal µs/op: wall, write, fdatasync | raw-log µs/op: wall, write, fdatasync |");
        println!("|---|---|---|---|---|---|---|---|---|");
    } else {
        println!("| entry | appenders | journal appends/s (min–max) | journal MB/s | raw ops/s (min–max) | raw MB/s | journal / raw | raw-log ops/s (min–max) | journal / raw-log | raw-direct ops/s (min–max) | journal / raw-direct | journal / raw-log, per rep |");
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    }
    for size in sizes {
        for conc in concs {
            if filter
                .as_ref()
                .is_some_and(|f| *f != format!("{size}x{conc}"))
            {
                continue;
            }
            let mut cfg = config(&base, size, conc, dur);
            if inflight > 0 {
                cfg.options.max_inflight = inflight;
            }
            if uring {
                cfg.options.io = IoMode::Auto;
            }
            if let Some(d) = direct {
                cfg.options.direct_below = d;
            }
            if let Some(n) = inplace {
                cfg.options.inplace_from = n;
            }
            if let Some(w) = waiters {
                cfg.options.waiters_flush = w;
            }
            if let Some(v) = volume {
                cfg.geometry.volume_size = v;
            }
            let label = match size {
                4096 => "4 KiB",
                65536 => "64 KiB",
                _ => "1 MiB",
            };
            if let Some(slice) = interleave {
                let v = run_interleaved(&cfg, slice, pairs).expect("interleaved run");
                let p = v.per_pair;
                let (jw, jwr, js) = v.journal.micros_per_op();
                let (lw, lwr, ls) = v.raw_log.micros_per_op();
                println!(
                    "| {label} | {conc} | {pairs} x {} ms | {:.0} | {:.0} | {:.3} | {:.3} ({:.2}–{:.2}) | {jw:.0}, {jwr:.0}, {js:.0} | {lw:.0}, {lwr:.0}, {ls:.0} |",
                    slice.as_millis(),
                    v.journal.ops_per_sec(),
                    v.raw_log.ops_per_sec(),
                    v.ratio(),
                    p.median,
                    p.min,
                    p.max,
                );
                continue;
            }
            let (mut js, mut rs, mut ls, mut ds) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for _ in 0..reps {
                js.push(run_journal(&cfg).expect("journal run"));
                rs.push(run_raw(&cfg).expect("raw run"));
                ls.push(run_raw_log(&cfg).expect("raw log run"));
                ds.push(run_raw_direct(&cfg).expect("raw direct run"));
            }
            // The journal and raw-log runs of one rep are next to each other in time, so
            // their ratio is less moved by the disk's drift than the ratio of medians.
            let per_rep = Spread::of_ratios(js.iter().zip(&ls)).expect("at least one rep");
            let (j, jlo, jhi) = median(js);
            let (r, rlo, rhi) = median(rs);
            let (l, llo, lhi) = median(ls);
            let (d, dlo, dhi) = median(ds);
            println!(
                "| {label} | {conc} | {:.0} ({jlo:.0}–{jhi:.0}) | {:.1} | {:.0} ({rlo:.0}–{rhi:.0}) | {:.1} | {:.2} | {:.0} ({llo:.0}–{lhi:.0}) | {:.2} | {:.0} ({dlo:.0}–{dhi:.0}) | {:.2} | {:.2} ({:.2}–{:.2}) |",
                j.ops_per_sec(),
                j.mb_per_sec(),
                r.ops_per_sec(),
                r.mb_per_sec(),
                j.ops_per_sec() / r.ops_per_sec(),
                l.ops_per_sec(),
                j.ops_per_sec() / l.ops_per_sec(),
                d.ops_per_sec(),
                j.ops_per_sec() / d.ops_per_sec(),
                per_rep.median,
                per_rep.min,
                per_rep.max,
            );
        }
    }
    if env("OSTORE_BENCH_BLANKS", 0) == 1 {
        println!();
        println!("| blank method | appenders | 4 KiB appends/s (min–max) |");
        println!("|---|---|---|");
        for method in [
            BlankMethod::Zeros,
            BlankMethod::Fallocate,
            BlankMethod::FallocateZeros,
        ] {
            for conc in [1usize, 16] {
                let mut cfg = config(&base, 4096, conc, dur);
                cfg.options.blank_method = method;
                let v: Vec<_> = (0..reps)
                    .map(|_| run_journal(&cfg).expect("journal run"))
                    .collect();
                let (m, lo, hi) = median(v);
                println!(
                    "| {method:?} | {conc} | {:.0} ({lo:.0}–{hi:.0}) |",
                    m.ops_per_sec()
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(&base);
}
