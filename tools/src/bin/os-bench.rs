//! `os-bench`: runs named workloads against chosen backends, each beside its raw-disk
//! (or memory) anchor measured in the same process, and prints a table, optionally JSON
//! and an SVG chart. See BENCHMARKS.md for how the published figures were made.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use ostore_tools::bench::{self, BenchOpts, BenchResult};

#[derive(Debug, Parser)]
#[command(
    name = "os-bench",
    version,
    about = "Compare ostore backends on named workloads, beside the disk's own limits"
)]
struct Args {
    /// Backends, comma-separated (memstore, kvstore, filestore).
    #[arg(long, default_value = "memstore", value_delimiter = ',')]
    backend: Vec<String>,
    /// Workloads, comma-separated, or `all`.
    #[arg(long, default_value = "small-overwrite", value_delimiter = ',')]
    workload: Vec<String>,
    /// Concurrent clients, comma-separated (each value is a separate run; 1 to 1024).
    #[arg(long, default_value = "16", value_delimiter = ',',
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    clients: Vec<u16>,
    /// Seconds per closed-loop run.
    #[arg(long, default_value_t = 5)]
    duration: u64,
    /// Scratch directory on the filesystem under test.
    #[arg(long, default_value = "/var/tmp/ostore-bench")]
    dir: std::path::PathBuf,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Objects pre-written for overwrite and read workloads.
    #[arg(long, default_value_t = 256)]
    objects: usize,
    /// Size of those objects in bytes.
    #[arg(long, default_value_t = 4 << 20)]
    object_size: u64,
    /// Bytes written by osd-bench and replayed by replay.
    #[arg(long, default_value_t = 256 << 20)]
    total: u64,
    /// Block size of osd-bench and entry size of journal.
    #[arg(long, default_value_t = 4096)]
    block_size: u64,
    /// Repetitions of each run; the median (by ops/s) is reported.
    #[arg(long, default_value_t = 1)]
    reps: usize,
    /// Also write the results as JSON here.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// Also write an SVG chart here.
    #[arg(long)]
    svg: Option<std::path::PathBuf>,
}

fn main() -> ExitCode {
    let a = Args::parse();
    let workloads: Vec<String> = if a.workload.iter().any(|w| w == "all") {
        bench::WORKLOADS.iter().map(|s| s.to_string()).collect()
    } else {
        a.workload.clone()
    };
    let mut results: Vec<BenchResult> = Vec::new();
    let mut failed: Vec<String> = Vec::new();
    for w in &workloads {
        for b in &a.backend {
            for &c in &a.clients {
                let o = BenchOpts {
                    dir: a.dir.clone(),
                    backend: b.clone(),
                    clients: usize::from(c),
                    duration: Duration::from_secs(a.duration.max(1)),
                    seed: a.seed,
                    objects: a.objects,
                    object_size: a.object_size,
                    total_bytes: a.total,
                    block_size: a.block_size,
                };
                let mut reps = Vec::new();
                for rep in 0..a.reps.max(1) {
                    eprintln!(
                        "os-bench: {w} on {b} with {c} clients (run {}/{})",
                        rep + 1,
                        a.reps.max(1)
                    );
                    match bench::run(w, &o) {
                        Ok(r) => reps.push(r),
                        Err(e) => {
                            // The other runs go on: one failure must not throw away
                            // an `all` run's results; the exit status still says so.
                            let m = format!(
                                "{w} on {b} with {c} clients: {}: {e}",
                                e.kind().errno_name()
                            );
                            eprintln!("os-bench: {m}");
                            failed.push(m);
                            break;
                        }
                    }
                }
                if reps.is_empty() {
                    continue;
                }
                reps.sort_by(|x, y| x.ops_per_sec.total_cmp(&y.ops_per_sec));
                let lo = reps.first().map_or(0.0, |r| r.ops_per_sec);
                let hi = reps.last().map_or(0.0, |r| r.ops_per_sec);
                let mut med = reps.swap_remove(reps.len() / 2);
                if a.reps > 1 {
                    med.notes
                        .insert("ops_per_sec_range".into(), format!("{lo:.0}-{hi:.0}"));
                }
                results.push(med);
            }
        }
    }
    let m = bench::memcpy_bandwidth();
    print!("{}", bench::table(&results));
    println!(
        "\nmemcpy (1 MiB blocks, one thread): {:.0} MB/s",
        m.mb_per_sec
    );
    if let Some(p) = &a.json {
        let v = serde_json::json!({"results": results, "memcpy_mb_per_sec": m.mb_per_sec});
        if let Err(e) = std::fs::write(p, serde_json::to_string_pretty(&v).unwrap_or_default()) {
            eprintln!("os-bench: writing {}: {e}", p.display());
            return ExitCode::FAILURE;
        }
    }
    if let Some(p) = &a.svg {
        if let Err(e) = std::fs::write(p, bench::svg(&results)) {
            eprintln!("os-bench: writing {}: {e}", p.display());
            return ExitCode::FAILURE;
        }
    }
    if !failed.is_empty() {
        eprintln!("os-bench: {} run(s) failed:", failed.len());
        for m in &failed {
            eprintln!("  {m}");
        }
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
