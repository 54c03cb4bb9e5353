//! Helpers shared by the integration tests.
#![allow(dead_code)]

use ostore_journal::{
    Geometry, Journal, JournalOptions, MetaAction, Position, ScanCallbacks, ScanOutcome, Vfs,
};
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;

/// Tiny geometry so entries span sectors and volumes quickly.
pub fn small_geo() -> Geometry {
    Geometry {
        sector_size: 512,
        volume_size: 8192,
        toc_len: 512,
    }
}

/// Deterministic options (no background threads besides the I/O workers).
pub fn det_opts(inflight: usize) -> JournalOptions {
    JournalOptions {
        max_inflight: inflight,
        max_batch_bytes: 16 << 10,
        blank_target: 1,
        max_blanks: 2,
        background_blanks: false,
        ..JournalOptions::default()
    }
}

/// Collects every entry.
#[derive(Default, Debug)]
pub struct Collect {
    pub entries: Vec<(Position, Vec<u8>, Vec<u8>)>,
    pub volumes: Vec<u64>,
}

impl Collect {
    /// (meta, data) of every entry, in order.
    pub fn pairs(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.entries
            .iter()
            .map(|(_, m, d)| (m.clone(), d.clone()))
            .collect()
    }
}

impl ScanCallbacks for Collect {
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
    fn next_volume(&mut self, v: u64) -> ControlFlow<()> {
        self.volumes.push(v);
        ControlFlow::Continue(())
    }
}

pub fn open(
    fs: Arc<dyn Vfs>,
    dir: &Path,
    opts: JournalOptions,
) -> ostore_journal::Result<(Journal, ScanOutcome, Collect)> {
    let mut c = Collect::default();
    let (j, o) = Journal::open(fs, dir, opts, &mut c)?;
    Ok((j, o, c))
}

/// splitmix64
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

/// Entry `i` of a workload: meta carries the index, data is derived from it.
pub fn entry(seed: u64, i: u64, max_data: u64) -> (Vec<u8>, Vec<u8>) {
    let mut r = Rng(seed ^ i.wrapping_mul(0x1234_5678_9abc_def1));
    let len = r.below(max_data + 1) as usize;
    let mut meta = i.to_le_bytes().to_vec();
    meta.extend_from_slice(&seed.to_le_bytes());
    let data: Vec<u8> = (0..len).map(|k| (r.next() as u8) ^ (k as u8)).collect();
    (meta, data)
}

pub fn index_of(meta: &[u8]) -> u64 {
    u64::from_le_bytes(meta[..8].try_into().unwrap())
}

/// Prints what a heavy test covered and appends it to the file `OSTORE_COVERAGE` names:
/// cargo hides a passing test's output, and CI's log shows that file.
pub fn coverage(line: &str) {
    eprintln!("{line}");
    if let Some(p) = std::env::var_os("OSTORE_COVERAGE") {
        use std::io::Write as _;
        let r = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()));
        assert!(r.is_ok(), "appending to OSTORE_COVERAGE: {r:?}");
    }
}
