//! Bit flips in a closed journal: every flip is either harmless (the same entries come back:
//! padding, TOC area, blank space, the trailing confirmation batch) or reported as
//! `Error::Corrupt` naming a volume and offset. Never fewer or different entries, never a panic.
//! Every bit of every volume of three small journals (~8 s in a debug build).

mod common;

use common::*;
use ostore_journal::{scan, Error, Journal, SimFs, Tail, Vfs};
use std::path::Path;
use std::sync::Arc;

const DIR: &str = "/j";

/// (meta, data) of each entry appended.
type Entries = Vec<(Vec<u8>, Vec<u8>)>;

fn build(seed: u64, n: u64, wait_each: bool) -> (SimFs, Entries) {
    let fs = SimFs::new();
    Journal::create(&fs, Path::new(DIR), small_geo()).unwrap();
    let dfs: Arc<dyn Vfs> = Arc::new(fs.clone());
    let (j, _, _) = open(dfs, Path::new(DIR), det_opts(2)).unwrap();
    let mut want = Vec::new();
    let mut last = None;
    for i in 0..n {
        let (m, d) = entry(seed, i, if i % 5 == 4 { 9000 } else { 700 });
        let h = j.append(&m, &d).unwrap();
        if wait_each {
            h.wait().unwrap();
        }
        last = Some(h);
        want.push((m, d));
    }
    last.unwrap().wait().unwrap();
    j.close().unwrap();
    (fs, want)
}

fn flips(seed: u64, n: u64, wait_each: bool) -> (u64, u64) {
    let (fs, want) = build(seed, n, wait_each);
    let mut c = Collect::default();
    let o = scan(&fs, Path::new(DIR), 0, None, &mut c).unwrap();
    assert_eq!(o.tail, Tail::Clean);
    let got: Vec<_> = c
        .entries
        .iter()
        .map(|e| (e.1.clone(), e.2.clone()))
        .collect();
    assert_eq!(got, want);
    let (mut harmless, mut detected) = (0, 0);
    let vols: Vec<_> = fs
        .paths()
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "vol"))
        .collect();
    for path in vols {
        let len = fs.read_file(&path).unwrap().len() as u64;
        let step = 1;
        let bits: &[u8] = &[1, 2, 4, 8, 16, 32, 64, 128];
        let mut off = 0;
        while off < len {
            for &mask in bits {
                assert!(fs.flip(&path, off, mask));
                let mut c = Collect::default();
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    scan(&fs, Path::new(DIR), 0, None, &mut c)
                }));
                assert!(fs.flip(&path, off, mask));
                let what = format!("{} offset {off} mask {mask:#x}", path.display());
                match r.unwrap_or_else(|_| panic!("{what}: scan panicked")) {
                    Ok(_) => {
                        let got: Vec<_> = c
                            .entries
                            .iter()
                            .map(|e| (e.1.clone(), e.2.clone()))
                            .collect();
                        assert_eq!(got, want, "{what}: silently different result");
                        harmless += 1;
                    }
                    Err(Error::Corrupt { volume, offset, .. }) => {
                        assert!(volume >= 1 && offset < small_geo().volume_size, "{what}");
                        detected += 1;
                    }
                    Err(e) => panic!("{what}: unexpected error {e}"),
                }
            }
            off += step;
        }
    }
    (harmless, detected)
}

#[test]
fn every_flip_is_detected_or_harmless() {
    let mut total = (0, 0);
    for (seed, n, wait) in [(1, 12, true), (2, 25, false), (3, 6, true)] {
        let (h, d) = flips(seed, n, wait);
        total.0 += h;
        total.1 += d;
    }
    let line = format!(
        "journal bit flips: {} flips, {} detected as corruption, {} harmless (padding, blank space, TOC area)",
        total.0 + total.1,
        total.1,
        total.0
    );
    coverage(&line);
    // Most written bytes are covered by a checksum; only padding, blank and TOC bytes are free.
    assert!(total.1 > total.0 / 4, "{total:?}");
}

/// A closed journal with one bit flipped in the data of its first entry.
fn first_entry_data_flipped() -> (SimFs, Entries) {
    let (fs, want) = build(7, 12, true);
    let path = ostore_journal::volume_path(Path::new(DIR), 1);
    // Sector 1 holds the batch header (72 bytes), the entry header (20) and its metadata.
    let off = 512 + 8 + 72 + 20 + 16 + 3;
    fs.flip(&path, off, 0x80);
    (fs, want)
}

#[test]
fn interior_corruption_names_volume_and_offset() {
    let (fs, _) = first_entry_data_flipped();
    let mut c = Collect::default();
    match scan(&fs, Path::new(DIR), 0, None, &mut c) {
        Err(Error::Corrupt {
            volume,
            offset,
            reason,
        }) => {
            assert_eq!(volume, 1);
            assert_eq!(offset, 512 + 8 + 72, "the damaged entry");
            assert!(reason.contains("checksum"), "{reason}");
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    assert!(
        c.entries.is_empty(),
        "nothing from the damaged batch is delivered"
    );
    // Opening refuses too.
    let dfs: Arc<dyn Vfs> = Arc::new(fs.clone());
    assert!(open(dfs, Path::new(DIR), det_opts(1))
        .unwrap_err()
        .is_corruption());
}

/// Skips the first `covered` entries (as a replay after a checkpoint does) and says their
/// data is not needed; collects the rest.
struct After {
    covered: usize,
    seen: usize,
    asked: Vec<ostore_journal::Position>,
    greedy: bool,
    rest: Collect,
}

impl After {
    fn new(greedy: bool) -> After {
        After {
            covered: 1,
            seen: 0,
            asked: Vec::new(),
            greedy,
            rest: Collect::default(),
        }
    }
}

impl ostore_journal::ScanCallbacks for After {
    fn meta(
        &mut self,
        pos: ostore_journal::Position,
        meta: &[u8],
        len: u64,
    ) -> ostore_journal::MetaAction {
        self.seen += 1;
        if self.seen <= self.covered && !self.greedy {
            return ostore_journal::MetaAction::Skip;
        }
        self.rest.meta(pos, meta, len)
    }
    fn data(&mut self, chunk: &[u8], last: bool) -> std::ops::ControlFlow<()> {
        self.rest.data(chunk, last)
    }
    fn data_needed(&mut self, pos: ostore_journal::Position, _meta: &[u8]) -> bool {
        self.asked.push(pos);
        false
    }
}

#[test]
fn damaged_data_the_caller_does_not_need_is_skipped_not_fatal() {
    let (fs, want) = first_entry_data_flipped();
    let mut cb = After::new(false);
    let o = scan(&fs, Path::new(DIR), 0, None, &mut cb).unwrap();
    assert_eq!(o.tail, Tail::Clean);
    assert_eq!(o.damaged_skipped, 1);
    assert_eq!(
        cb.asked,
        vec![ostore_journal::Position {
            volume: 1,
            offset: 512 + 8 + 72
        }],
        "asked once, about the damaged entry only"
    );
    let got: Vec<_> = cb
        .rest
        .entries
        .iter()
        .map(|e| (e.1.clone(), e.2.clone()))
        .collect();
    assert_eq!(got, want[1..], "every other entry intact and in order");

    // A caller that says "not needed" and then asks for the data anyway gets an error,
    // never the damaged bytes.
    let mut cb = After::new(true);
    match scan(&fs, Path::new(DIR), 0, None, &mut cb) {
        Err(Error::Corrupt { volume: 1, .. }) => {}
        other => panic!("expected corruption, got {other:?}"),
    }
    assert!(cb.rest.entries.iter().all(|e| e.2.is_empty()));

    // The journal opens with such a caller and appends after its end.
    let dfs: Arc<dyn Vfs> = Arc::new(fs.clone());
    let mut cb = After::new(false);
    let (j, o) = Journal::open(dfs, Path::new(DIR), det_opts(1), &mut cb).unwrap();
    assert_eq!(o.damaged_skipped, 1);
    let (m, d) = entry(7, 99, 300);
    j.append(&m, &d).unwrap().wait().unwrap();
    j.close().unwrap();
    let mut cb = After::new(false);
    scan(&fs, Path::new(DIR), 0, None, &mut cb).unwrap();
    assert_eq!(cb.rest.entries.last().map(|e| e.2.clone()), Some(d));
    assert_eq!(cb.rest.entries.len(), want.len());
}
