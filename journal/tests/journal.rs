//! Functional tests of the writer, scanner, trim, TOC, dump and fail-stop on the simulated disk.

mod common;

use common::*;
use ostore_journal::vfs::{read_full_at, Fault, FaultOps, SimOp};
use ostore_journal::{
    dump_volume, scan, volume_path, Error, Journal, JournalOptions, OpenMode, SimFs, Tail, Vfs,
};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

const DIR: &str = "/j";

fn setup() -> (SimFs, Arc<dyn Vfs>) {
    let fs = SimFs::new();
    Journal::create(&fs, Path::new(DIR), small_geo()).unwrap();
    let dynfs: Arc<dyn Vfs> = Arc::new(fs.clone());
    (fs, dynfs)
}

#[test]
fn roundtrip_spanning_sectors_and_volumes() {
    let (_fs, dfs) = setup();
    let (j, o, c) = open(dfs.clone(), Path::new(DIR), det_opts(2)).unwrap();
    assert_eq!(o.entries, 0);
    assert!(c.entries.is_empty());
    let mut want = Vec::new();
    let mut handles = Vec::new();
    for i in 0..60 {
        // Some entries are larger than a volume (8 KiB).
        let max = if i % 17 == 0 { 20_000 } else { 1500 };
        let (m, d) = entry(1, i, max);
        handles.push(j.append(&m, &d).unwrap());
        want.push((m, d));
    }
    for h in &handles {
        h.wait().unwrap();
    }
    let positions: Vec<_> = handles.iter().map(|h| h.position()).collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "positions increase"
    );
    assert!(j.volumes().len() > 5);
    j.close().unwrap();

    let (j, o, c) = open(dfs.clone(), Path::new(DIR), det_opts(2)).unwrap();
    assert_eq!(o.tail, Tail::Clean);
    let got = c.pairs();
    assert_eq!(got, want);
    let got_pos: Vec<_> = c.entries.iter().map(|e| e.0).collect();
    assert_eq!(got_pos, positions);
    assert!(c.volumes.windows(2).all(|w| w[1] == w[0] + 1));
    // Append after reopen and read everything back once more.
    let (m, d) = entry(1, 60, 100);
    j.append(&m, &d).unwrap().wait().unwrap();
    want.push((m, d));
    j.close().unwrap();
    let (j, _, c) = open(dfs, Path::new(DIR), det_opts(1)).unwrap();
    let got = c.pairs();
    assert_eq!(got, want);
    j.close().unwrap();
}

#[test]
fn concurrent_appenders_keep_per_thread_order() {
    let (_fs, dfs) = setup();
    let (j, _, _) = open(dfs.clone(), Path::new(DIR), det_opts(4)).unwrap();
    let j = Arc::new(j);
    let acked = Arc::new(AtomicU64::new(0));
    let mut ts = Vec::new();
    for t in 0..4u64 {
        let j = j.clone();
        let acked = acked.clone();
        ts.push(std::thread::spawn(move || {
            for i in 0..50u64 {
                let meta = [t.to_le_bytes(), i.to_le_bytes()].concat();
                let a = acked.clone();
                let h = j
                    .append_with(&meta, &vec![t as u8; (i * 13 % 700) as usize], move |r| {
                        r.unwrap();
                        a.fetch_add(1, Ordering::SeqCst);
                    })
                    .unwrap();
                if i % 10 == 0 {
                    h.wait().unwrap();
                }
            }
        }));
    }
    for t in ts {
        t.join().unwrap();
    }
    let j = Arc::try_unwrap(j).unwrap();
    j.close().unwrap();
    assert_eq!(acked.load(Ordering::SeqCst), 200);
    let (j, _, c) = open(dfs, Path::new(DIR), det_opts(1)).unwrap();
    assert_eq!(c.entries.len(), 200);
    let mut next = [0u64; 4];
    for (_, m, d) in &c.entries {
        let t = u64::from_le_bytes(m[..8].try_into().unwrap()) as usize;
        let i = u64::from_le_bytes(m[8..16].try_into().unwrap());
        assert_eq!(i, next[t], "thread {t} out of order");
        next[t] += 1;
        assert_eq!(d, &vec![t as u8; (i * 13 % 700) as usize]);
    }
    j.close().unwrap();
}

#[test]
fn callbacks_fire_in_journal_order() {
    let (_fs, dfs) = setup();
    let (j, _, _) = open(dfs, Path::new(DIR), det_opts(4)).unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut last = None;
    for i in 0..100u64 {
        let o = order.clone();
        last = Some(
            j.append_with(&i.to_le_bytes(), &[0; 100], move |r| {
                r.unwrap();
                o.lock().unwrap().push(i);
            })
            .unwrap(),
        );
    }
    last.unwrap().wait().unwrap();
    j.close().unwrap();
    assert_eq!(*order.lock().unwrap(), (0..100).collect::<Vec<_>>());
}

#[test]
fn trim_recycles_volumes_and_replay_starts_after() {
    let (fs, dfs) = setup();
    let (j, _, _) = open(dfs.clone(), Path::new(DIR), det_opts(2)).unwrap();
    let mut hs = Vec::new();
    for i in 0..40 {
        let (m, d) = entry(2, i, 1000);
        let h = j.append(&m, &d).unwrap();
        h.wait().unwrap();
        hs.push(h);
    }
    let before = j.volumes();
    let cut = hs[20].position();
    let trimmed = j.trim_before(cut.volume).unwrap();
    assert!(!trimmed.is_empty());
    assert_eq!(trimmed[..], before[..trimmed.len()]);
    // Either everything below the cut, or all but the volume where a spanning batch begins.
    assert!(
        trimmed.last().unwrap() + 2 >= cut.volume,
        "{trimmed:?} {cut:?}"
    );
    for v in &trimmed {
        assert!(!fs.exists(&volume_path(Path::new(DIR), *v)).unwrap());
    }
    // Recycled volumes are reused as blanks: keep appending past several volumes.
    for i in 40..80 {
        let (m, d) = entry(2, i, 1000);
        hs.push(j.append(&m, &d).unwrap());
    }
    hs.last().unwrap().wait().unwrap();
    j.close().unwrap();
    let (j, _, c) = open(dfs, Path::new(DIR), det_opts(1)).unwrap();
    let idx: Vec<u64> = c.entries.iter().map(|e| index_of(&e.1)).collect();
    // Replay starts at the first entry whose header is in the first live volume (or a
    // spanning one just before it is skipped), and is contiguous up to the end.
    assert!(idx[0] <= 20, "{idx:?}");
    assert_eq!(idx, (idx[0]..80).collect::<Vec<_>>());
    for (pos, m, d) in &c.entries {
        let i = index_of(m);
        assert_eq!((m.clone(), d.clone()), entry(2, i, 1000));
        assert_eq!(*pos, hs[i as usize].position());
    }
    j.close().unwrap();
}

#[test]
fn toc_is_written_and_dump_reads_it() {
    let (fs, dfs) = setup();
    let (j, _, _) = open(dfs.clone(), Path::new(DIR), det_opts(1)).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    j.set_toc_callback(Box::new(move |ctx| {
        s2.lock().unwrap().push(*ctx);
        format!("vol {}", ctx.volume).into_bytes()
    }));
    for i in 0..30 {
        let (m, d) = entry(3, i, 900);
        j.append(&m, &d).unwrap().wait().unwrap();
    }
    let vols = j.volumes();
    j.close().unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), vols.len() - 1, "every closed volume got a TOC");
    let mut entries_total = 0;
    for ctx in &seen {
        let d = dump_volume(&fs, &volume_path(Path::new(DIR), ctx.volume), None).unwrap();
        assert_eq!(d.volume, ctx.volume);
        assert!(d.header.is_ok());
        let toc = d.toc.unwrap().unwrap();
        assert_eq!(toc.user, format!("vol {}", ctx.volume).into_bytes());
        assert_eq!(toc.entries, ctx.entries);
        let in_vol: usize = d
            .batches
            .iter()
            .map(|b| {
                b.entries
                    .iter()
                    .filter(|e| e.position.volume == ctx.volume)
                    .count()
            })
            .sum();
        assert_eq!(in_vol as u32, toc.entries);
        assert!(d.batches.iter().all(|b| b.error.is_none()));
        entries_total += toc.entries;
    }
    assert!(entries_total > 0);
    // The newest volume has no TOC yet.
    let last = dump_volume(
        &fs,
        &volume_path(Path::new(DIR), *vols.last().unwrap()),
        None,
    )
    .unwrap();
    assert!(last.toc.unwrap().is_none());
}

#[test]
fn toc_too_large_poisons() {
    let (_fs, dfs) = setup();
    let (j, _, _) = open(dfs, Path::new(DIR), det_opts(1)).unwrap();
    j.set_toc_callback(Box::new(|_| vec![0; 100_000]));
    let mut err = None;
    for i in 0..30 {
        let (m, d) = entry(3, i, 900);
        match j.append(&m, &d).and_then(|h| h.wait()) {
            Ok(()) => {}
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    let e = err.expect("TOC overflow must fail");
    assert!(
        matches!(e, Error::Poisoned(ref inner) if matches!(**inner, Error::TocTooLarge { .. })),
        "{e}"
    );
    assert!(j.append(b"x", b"y").is_err());
    assert!(j.close().is_err());
}

#[test]
fn fsync_failure_poisons_and_nothing_after_is_acknowledged() {
    for nth in 1..6 {
        let (fs, dfs) = setup();
        let (j, _, _) = open(dfs.clone(), Path::new(DIR), det_opts(3)).unwrap();
        let ok: Vec<u64> = (0..5)
            .inspect(|&i| {
                let (m, d) = entry(4, i, 300);
                j.append(&m, &d).unwrap().wait().unwrap();
            })
            .collect();
        fs.set_fault(Some(Fault {
            ops: FaultOps::Sync,
            nth,
            errno: libc::EIO,
            persistent: false,
        }));
        let mut hs = Vec::new();
        for i in 5..40 {
            let (m, d) = entry(4, i, 300);
            match j.append(&m, &d) {
                Ok(h) => hs.push((i, h)),
                Err(e) => assert!(matches!(e, Error::Poisoned(_))),
            }
        }
        let mut acked = ok.clone();
        let mut failed_seen = false;
        for (i, h) in &hs {
            match h.wait() {
                Ok(()) => {
                    assert!(!failed_seen, "an ack after a failure (nth {nth})");
                    acked.push(*i);
                }
                Err(e) => {
                    failed_seen = true;
                    assert!(matches!(e, Error::Poisoned(_)));
                }
            }
        }
        assert!(fs.fault_fired());
        assert!(failed_seen, "nth {nth}");
        assert!(j.poisoned().is_some());
        assert!(j.append(b"m", b"d").is_err());
        // The fault was one-shot: a retried fsync would now "succeed"; the journal must not
        // retry, nor start a flush after the failure. Flushes already in flight on the
        // other two workers may still finish (none of them is acknowledged: checked
        // above): each at most a write per volume it spans, a TOC write and a fdatasync
        // per volume, so at most 6 operations with these tiny volumes. Close writes no
        // confirming batch.
        let ops_after = fs.op_count();
        assert!(j.close().is_err());
        let extra = fs.op_count() - ops_after;
        assert!(
            extra <= 2 * 6,
            "{extra} operations after poisoning (nth {nth}): more than the flushes in flight"
        );
        fs.set_fault(None);
        let (j, _, c) = open(dfs, Path::new(DIR), det_opts(1)).unwrap();
        let got: Vec<u64> = c.entries.iter().map(|e| index_of(&e.1)).collect();
        assert!(got.len() >= acked.len());
        assert_eq!(&got[..acked.len()], &acked[..]);
        j.close().unwrap();
    }
}

#[test]
fn write_failure_enospc_poisons() {
    let (fs, dfs) = setup();
    let (j, _, _) = open(dfs, Path::new(DIR), det_opts(2)).unwrap();
    j.append(b"a", b"b").unwrap().wait().unwrap();
    fs.set_fault(Some(Fault {
        ops: FaultOps::Write,
        nth: 1,
        errno: libc::ENOSPC,
        persistent: true,
    }));
    let e = j.append(b"c", &[1; 5000]).unwrap().wait().unwrap_err();
    assert!(format!("{e}").contains("No space"), "{e}");
    assert!(j.append(b"d", b"e").is_err());
}

#[test]
fn scan_range_and_stop() {
    let (_fs, dfs) = setup();
    let (j, _, _) = open(dfs.clone(), Path::new(DIR), det_opts(1)).unwrap();
    let mut hs = Vec::new();
    for i in 0..40 {
        let (m, d) = entry(5, i, 700);
        let h = j.append(&m, &d).unwrap();
        h.wait().unwrap();
        hs.push(h);
    }
    j.close().unwrap();
    let v = hs[20].position().volume;
    let mut c = Collect::default();
    let o = scan(&*dfs, Path::new(DIR), v, Some(v + 1), &mut c).unwrap();
    assert_eq!(o.tail, Tail::Limit);
    assert!(!c.entries.is_empty());
    assert!(c.entries.iter().all(|e| e.0.volume >= v));
    assert!(c.entries.iter().any(|e| index_of(&e.1) == 20));
    for (_, m, d) in &c.entries {
        assert_eq!((m.clone(), d.clone()), entry(5, index_of(m), 700));
    }
    struct StopAt(u64, u64);
    impl ostore_journal::ScanCallbacks for StopAt {
        fn meta(
            &mut self,
            _p: ostore_journal::Position,
            _m: &[u8],
            _l: u64,
        ) -> ostore_journal::MetaAction {
            self.1 += 1;
            if self.1 == self.0 {
                ostore_journal::MetaAction::Stop
            } else {
                ostore_journal::MetaAction::Skip
            }
        }
    }
    let mut s = StopAt(7, 0);
    let o = scan(&*dfs, Path::new(DIR), 0, None, &mut s).unwrap();
    assert_eq!(o.tail, Tail::Stopped);
    assert_eq!(s.1, 7);
}

#[test]
fn open_rejects_bad_info_and_create_twice() {
    let (fs, _dfs) = setup();
    assert!(matches!(
        Journal::create(&fs, Path::new(DIR), small_geo()),
        Err(Error::AlreadyExists(_))
    ));
    let dfs: Arc<dyn Vfs> = Arc::new(fs.clone());
    assert!(matches!(
        open(dfs.clone(), Path::new("/nope"), JournalOptions::default()),
        Err(Error::NotFound(_))
    ));
    fs.flip(&Path::new(DIR).join("journal.info"), 30, 1);
    assert!(matches!(
        open(dfs, Path::new(DIR), JournalOptions::default()),
        Err(Error::BadFile { .. })
    ));
}

#[test]
fn too_large_entry_is_refused_before_journaling() {
    // Only the length check is exercised; no 2 GiB buffer is allocated.
    let (_fs, dfs) = setup();
    let (j, _, _) = open(dfs, Path::new(DIR), det_opts(1)).unwrap();
    assert_eq!(j.end_position().volume, 1);
    j.close().unwrap();
}

/// On a real filesystem, small batches go out with `O_DIRECT` and large ones through the
/// page cache, on two descriptors of the same volume files; everything reads back, in
/// order, after a reopen.
#[test]
fn direct_and_page_cache_batches_share_volumes() {
    use ostore_journal::{Geometry, RealFs};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("j");
    let fs: Arc<dyn Vfs> = Arc::new(RealFs);
    let geo = Geometry {
        sector_size: 4096,
        volume_size: 1 << 20,
        toc_len: 4096,
    };
    Journal::create(&*fs, &dir, geo).unwrap();
    let opts = JournalOptions {
        direct_below: 16 << 10,
        ..JournalOptions::default()
    };
    let (j, _, _) = open(fs.clone(), &dir, opts.clone()).unwrap();
    let mut want = Vec::new();
    for i in 0..60 {
        // Alternating runs of small and large entries, some larger than a volume.
        let max = if (i / 3) % 2 == 0 { 3_000 } else { 1_500_000 };
        let (m, d) = entry(11, i, max);
        let h = j.append(&m, &d).unwrap();
        if i % 2 == 0 {
            h.wait().unwrap();
        }
        want.push((m, d));
    }
    j.close().unwrap();
    let (j, o, c) = open(fs, &dir, opts).unwrap();
    assert_eq!(o.tail, Tail::Clean);
    let got = c.pairs();
    assert_eq!(got.len(), want.len());
    assert!(got == want, "entries differ after reopen");
    j.close().unwrap();
}

/// The I/O counters see each append's write and sync, and an in-place entry's own write.
#[test]
fn io_times_count_writes_and_syncs() {
    let (_fs, dfs) = setup();
    let opts = JournalOptions {
        inplace_from: 8192,
        ..det_opts(2)
    };
    let (j, _, _) = open(dfs, Path::new(DIR), opts).unwrap();
    let before = j.io_times();
    for i in 0..20 {
        let (m, d) = entry(1, i, 3000);
        j.append(&m, &d).unwrap().wait().unwrap();
    }
    let small = j.io_times().since(&before);
    // Every append waited, so each one was a batch of its own: a write and a sync at least.
    assert!(small.writes >= 20 && small.syncs >= 20, "{small:?}");
    assert!(small.write_ns > 0 && small.sync_ns > 0, "{small:?}");
    let (m, d) = entry(1, 20, 40_000);
    j.append(&m, &d).unwrap().wait().unwrap();
    let large = j.io_times().since(&before).since(&small);
    // The appender's run of whole sectors, then the batch's partial sectors.
    assert!(large.writes >= 2 && large.syncs >= 1, "{large:?}");
    assert_eq!(j.io_times().since(&j.io_times()), Default::default());
    j.close().unwrap();
}

/// A waiter whose batch is still queued flushes it itself; the journal reads back the same,
/// and a sync failure met by a waiter poisons the journal as one met by a worker does.
#[test]
fn waiters_flush_their_own_batches() {
    for waiters_flush in [true, false] {
        let (_fs, dfs) = setup();
        let opts = JournalOptions {
            waiters_flush,
            ..det_opts(2)
        };
        let (j, _, _) = open(dfs.clone(), Path::new(DIR), opts.clone()).unwrap();
        let mut want = Vec::new();
        for i in 0..100 {
            let (m, d) = entry(7, i, 3000);
            j.append(&m, &d).unwrap().wait().unwrap();
            want.push((m, d));
        }
        let by_waiters = j.waiter_flushes();
        if waiters_flush {
            // Each append seals its own batch (nothing else is in flight), queued reserved
            // for its appender: each is flushed by its waiter.
            assert_eq!(by_waiters, 100, "batches flushed by their waiters");
        } else {
            assert_eq!(by_waiters, 0);
        }
        j.close().unwrap();
        let (j, _, c) = open(dfs, Path::new(DIR), opts).unwrap();
        assert_eq!(c.pairs(), want);
        j.close().unwrap();
    }

    // The first fdatasync fails: the append's wait reports the poisoning, met by the
    // waiter itself, which flushed its reserved batch.
    let mut met_by_waiter = 0;
    for i in 0..20 {
        let (fs, dfs) = setup();
        let (j, _, _) = open(dfs, Path::new(DIR), det_opts(2)).unwrap();
        // The first append makes the first volume (with a sync of its own); fail the
        // second append's flush.
        j.append(b"first", b"x").unwrap().wait().unwrap();
        let before = j.waiter_flushes();
        fs.set_fault(Some(Fault {
            ops: FaultOps::Sync,
            nth: 1,
            errno: libc::EIO,
            persistent: false,
        }));
        let (m, d) = entry(8, i, 300);
        let e = j.append(&m, &d).unwrap().wait().unwrap_err();
        assert!(matches!(e, Error::Poisoned(_)), "{e}");
        assert!(fs.fault_fired());
        met_by_waiter += j.waiter_flushes() - before;
        assert!(j.append(b"m", b"d").is_err());
        assert!(j.close().is_err());
    }
    assert_eq!(
        met_by_waiter, 20,
        "failing flushes run on the waiting thread"
    );
}

/// A batch queued reserved for its waiter still reaches the disk when nobody waits for it:
/// its handle dropped, or polled, or a later append's wait.
#[test]
fn held_batches_reach_the_workers() {
    let syncs = |fs: &SimFs| {
        fs.ops()
            .iter()
            .filter(|o| matches!(o, SimOp::SyncData { .. }))
            .count()
    };
    // Eventually, or fail: a reserved batch nobody releases would never be synced.
    let synced_after = |fs: &SimFs, n: usize| {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while syncs(fs) <= n && std::time::Instant::now() < until {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        syncs(fs) > n
    };
    let (fs, dfs) = setup();
    let (j, _, _) = open(dfs.clone(), Path::new(DIR), det_opts(2)).unwrap();
    j.append(b"first", b"x").unwrap().wait().unwrap();
    let mut want = vec![(b"first".to_vec(), b"x".to_vec())];

    // Dropped: the workers get it.
    let n = syncs(&fs);
    drop(j.append(b"dropped", b"1").unwrap());
    want.push((b"dropped".to_vec(), b"1".to_vec()));
    assert!(
        synced_after(&fs, n),
        "a dropped handle's batch was never synced"
    );

    // Polled: the workers get it, and the poll sees it done.
    let h = j.append(b"polled", b"2").unwrap();
    want.push((b"polled".to_vec(), b"2".to_vec()));
    let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while h.poll().is_none() && std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert!(
        matches!(h.poll(), Some(Ok(()))),
        "a polled append never completed"
    );

    // Kept unwaited while a later append of the same thread is waited on: the later one
    // completes only after it, so its append hands it to the workers.
    let kept = j.append(b"kept", b"3").unwrap();
    let later = j.append(b"later", b"4").unwrap();
    want.push((b"kept".to_vec(), b"3".to_vec()));
    want.push((b"later".to_vec(), b"4".to_vec()));
    later.wait().unwrap();
    assert!(matches!(kept.poll(), Some(Ok(()))));
    // A clone dropped does not give the batch away; the last one does.
    let h = j.append(b"cloned", b"5").unwrap();
    want.push((b"cloned".to_vec(), b"5".to_vec()));
    let n = syncs(&fs);
    drop(h.clone());
    h.wait().unwrap();
    assert!(syncs(&fs) > n);
    // Held at close: close flushes it.
    std::mem::forget(j.append(b"forgotten", b"6").unwrap());
    want.push((b"forgotten".to_vec(), b"6".to_vec()));
    j.close().unwrap();
    let (j, _, c) = open(dfs, Path::new(DIR), det_opts(2)).unwrap();
    assert_eq!(c.pairs(), want);
    j.close().unwrap();
}

/// Every file of `dir` on `fs`, by name.
fn files_of(fs: &SimFs, dir: &str) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    for name in fs.list_dir(Path::new(dir)).unwrap() {
        let p = Path::new(dir).join(&name);
        let f = fs.open(&p, OpenMode::Read).unwrap();
        let mut b = vec![0u8; f.len().unwrap() as usize];
        assert_eq!(read_full_at(&*f, &mut b, 0).unwrap(), b.len());
        out.insert(name, b);
    }
    out
}

/// Entries whose whole data sectors their appenders write in place leave the same bytes on
/// disk as entries copied into their batches (the format does not change), and read back.
#[test]
fn inplace_writes_leave_the_same_bytes() {
    let copied = SimFs::new();
    Journal::create(&copied, Path::new(DIR), small_geo()).unwrap();
    // The same journal (same magic) on a second disk.
    let inplace = SimFs::new();
    inplace.create_dir_all(Path::new(DIR)).unwrap();
    for (name, bytes) in files_of(&copied, DIR) {
        let f = inplace
            .open(&Path::new(DIR).join(name), OpenMode::CreateNew)
            .unwrap();
        f.write_at(&bytes, 0).unwrap();
        f.sync_all().unwrap();
    }
    inplace.sync_dir(Path::new(DIR)).unwrap();
    let run = |fs: &SimFs, inplace_from: u64| {
        let dfs: Arc<dyn Vfs> = Arc::new(fs.clone());
        let opts = JournalOptions {
            inplace_from,
            ..det_opts(2)
        };
        let (j, _, _) = open(dfs.clone(), Path::new(DIR), opts.clone()).unwrap();
        let mut want = Vec::new();
        for i in 0..41u64 {
            // Up to ~3 volumes (7 KiB of stream each), starting anywhere in a sector; the
            // last one across ~40 volumes, in runs of whole volumes.
            let len = if i == 40 {
                300_000
            } else {
                [10, 600, 3_000, 20_000][i as usize % 4]
            };
            let (m, d) = entry(9, i, len);
            j.append(&m, &d).unwrap().wait().unwrap();
            want.push((m, d));
        }
        j.close().unwrap();
        let (j, _, c) = open(dfs, Path::new(DIR), opts).unwrap();
        assert_eq!(c.pairs(), want, "inplace_from {inplace_from}");
        j.close().unwrap();
        let writes = fs
            .ops()
            .iter()
            .filter(|o| matches!(o, SimOp::Write { .. }))
            .count();
        (files_of(fs, DIR), writes)
    };
    let (a, writes_a) = run(&copied, u64::MAX);
    let (b, writes_b) = run(&inplace, 600);
    // The in-place runs are writes of their own.
    assert!(writes_b > writes_a, "{writes_b} writes against {writes_a}");
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (name, bytes) in &a {
        assert!(bytes == &b[name], "{name} differs");
    }
}

/// A failed in-place write fails the append and poisons the journal; nothing of it is
/// acknowledged, and what was acknowledged before is replayed.
#[test]
fn inplace_write_failure_poisons() {
    let (fs, dfs) = setup();
    let opts = JournalOptions {
        inplace_from: 1000,
        ..det_opts(2)
    };
    let (j, _, _) = open(dfs.clone(), Path::new(DIR), opts.clone()).unwrap();
    j.append(b"a", b"b").unwrap().wait().unwrap();
    fs.set_fault(Some(Fault {
        ops: FaultOps::Write,
        nth: 1,
        errno: libc::EIO,
        persistent: false,
    }));
    // Fits in the first volume: its first write is the appender's own.
    let e = j.append(b"big", &[7u8; 3000]).unwrap_err();
    assert!(matches!(e, Error::Poisoned(_)), "{e}");
    assert!(fs.fault_fired());
    assert!(j.append(b"c", b"d").is_err());
    assert!(j.close().is_err());
    let (j, _, c) = open(dfs, Path::new(DIR), opts).unwrap();
    assert_eq!(c.pairs(), vec![(b"a".to_vec(), b"b".to_vec())]);
    j.close().unwrap();
}
