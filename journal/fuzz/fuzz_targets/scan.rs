//! Fuzz the scanner and every decoder: arbitrary bytes are decoded directly, then written over a
//! valid small journal (at an offset chosen by the input) which is scanned and dumped. Nothing
//! may panic; a scan either succeeds or returns an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ostore_journal::format::{batch, entry, info, toc, volume, Geometry};
use ostore_journal::{
    atomic, dump_volume, scan, Journal, JournalOptions, MetaAction, Position, ScanCallbacks,
    SimFs, Vfs,
};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

const DIR: &str = "/j";

fn geo() -> Geometry {
    Geometry {
        sector_size: 512,
        volume_size: 8192,
        toc_len: 512,
    }
}

struct Skip;
impl ScanCallbacks for Skip {
    fn meta(&mut self, _p: Position, _m: &[u8], _l: u64) -> MetaAction {
        MetaAction::ReadData
    }
}

/// Files of a valid journal with a few entries spanning volumes.
fn base() -> &'static Vec<(PathBuf, Vec<u8>)> {
    static BASE: OnceLock<Vec<(PathBuf, Vec<u8>)>> = OnceLock::new();
    BASE.get_or_init(|| {
        let fs = SimFs::new();
        Journal::create(&fs, Path::new(DIR), geo()).unwrap();
        let dfs: Arc<dyn Vfs> = Arc::new(fs.clone());
        let opts = JournalOptions {
            max_inflight: 1,
            background_blanks: false,
            ..JournalOptions::default()
        };
        let (j, _) = Journal::open(dfs, Path::new(DIR), opts, &mut Skip).unwrap();
        for i in 0..12u32 {
            let data = vec![i as u8; (i as usize * 977) % 5000];
            j.append(&i.to_le_bytes(), &data).unwrap().wait().unwrap();
        }
        j.close().unwrap();
        fs.paths()
            .into_iter()
            .map(|p| {
                let b = fs.read_file(&p).unwrap();
                (p, b)
            })
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let g = geo();
    let _ = batch::BatchHeader::decode(data);
    let _ = entry::EntryHeader::decode(data);
    let _ = volume::VolumeHeader::decode_any(data);
    let _ = toc::Toc::decode(data, 0x1234_5678, 1, &g);
    let _ = info::JournalInfo::decode(data);
    let _ = atomic::decode(data, info::MAGIC);

    if data.len() < 3 {
        return;
    }
    let files = base();
    let vols: Vec<&(PathBuf, Vec<u8>)> = files
        .iter()
        .filter(|(p, _)| p.extension().is_some_and(|e| e == "vol"))
        .collect();
    if vols.is_empty() {
        return;
    }
    let fs = SimFs::new();
    fs.create_dir_all(Path::new(DIR)).unwrap();
    for (p, b) in files {
        let f = fs.open(p, ostore_journal::OpenMode::CreateNew).unwrap();
        f.write_at(b, 0).unwrap();
    }
    let target = &vols[data[0] as usize % vols.len()].0;
    let off = u64::from(u16::from_le_bytes([data[1], data[2]])) % g.volume_size;
    fs.poke(target, off, &data[3..]);
    let _ = scan(&fs, Path::new(DIR), 0, None, &mut Skip);
    let _ = dump_volume(&fs, target, None);
});
