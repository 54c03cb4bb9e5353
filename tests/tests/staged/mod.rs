//! Staged large writes (FileStore on a filesystem with reflink): the data goes to disk
//! once, into `staging/`, the journal carries only a reference, apply and replay
//! reflink it into place. Shared by the XFS and btrfs test binaries (each calls these
//! with its own mounted filesystem as the temp dir).

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::Path;

use ostore_filestore::{filestore, FileStoreOptions};
use ostore_journal::{MetaAction, Position, RealFs, ScanCallbacks};
use ostore_os::journaling::{decode_entry_staged, JournalingOptions};
use ostore_os::{CollectionId, ErrorKind, ObjectId, ObjectStore, Transaction};

/// The staged-write tests, each run when `$available` (the filesystem could be had).
macro_rules! staged_tests {
    ($available:expr) => {
        staged_tests!(
            $available;
            large_writes_go_to_disk_once,
            replay_relinks_staged_writes,
            a_damaged_staged_file_fails_replay,
            staging_off_journals_everything
        );
    };
    ($available:expr; $($name:ident),*) => {$(
        #[test]
        fn $name() {
            if $available {
                staged::$name();
            }
        }
    )*};
}

pub fn manual_checkpoints() -> JournalingOptions {
    let mut jo = JournalingOptions::small();
    jo.checkpoint_interval = std::time::Duration::from_secs(3600);
    jo.checkpoint_fill_bytes = 1 << 40;
    jo.max_journal_bytes = 1 << 40;
    jo
}

/// Journal entries' data bytes, and staged records, over the whole journal.
#[derive(Default)]
struct Sizes {
    data: u64,
    staged: u64,
    staged_bytes: u64,
    buf: Vec<u8>,
}

impl ScanCallbacks for Sizes {
    fn meta(&mut self, _: Position, _: &[u8], len: u64) -> MetaAction {
        self.data += len;
        self.buf.clear();
        MetaAction::ReadData
    }
    fn data(&mut self, chunk: &[u8], last: bool) -> ControlFlow<()> {
        self.buf.extend_from_slice(chunk);
        if last {
            let (_, st) = decode_entry_staged(&self.buf).expect("entry decodes");
            self.staged += st.len() as u64;
            self.staged_bytes += st.iter().map(|s| s.len).sum::<u64>();
        }
        ControlFlow::Continue(())
    }
}

fn journal_sizes(store_dir: &Path) -> Sizes {
    let mut s = Sizes::default();
    ostore_journal::scan::scan(&RealFs::new(), &store_dir.join("journal"), 0, None, &mut s)
        .expect("journal scans");
    s
}

/// (bytes in shared extents, bytes in all extents) of a file, by fiemap.
pub fn shared_extents(path: &Path) -> (u64, u64) {
    let f = std::fs::File::open(path).unwrap();
    let len = f.metadata().unwrap().len();
    let m = ostore_filestore::sys::fiemap(&f, 0, len).unwrap();
    let total: u64 = m.iter().map(|e| e.length).sum();
    let shared: u64 = m
        .iter()
        .filter(|e| e.flags & ostore_filestore::sys::FIEMAP_EXTENT_SHARED != 0)
        .map(|e| e.length)
        .sum();
    (shared, total)
}

/// Names of the files in `staging/`: staged files, in use or kept for reuse.
fn staging_names(store_dir: &Path) -> std::collections::BTreeSet<std::ffi::OsString> {
    std::fs::read_dir(store_dir.join("staging"))
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default()
}

fn staged_files(store_dir: &Path) -> usize {
    staging_names(store_dir).len()
}

fn pattern(len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt) ^ (i >> 12) as u8)
        .collect()
}

/// The workload of the staged tests: large writes aligned and not, overwrites of
/// staged data by small and large writes, a clone of a staged object, and the model
/// of what each object must hold after it.
fn workload(c: &CollectionId) -> (Vec<Transaction>, BTreeMap<ObjectId, Vec<u8>>) {
    let mut model: BTreeMap<ObjectId, Vec<u8>> = BTreeMap::new();
    let mut txns = Vec::new();
    let put = |model: &mut BTreeMap<ObjectId, Vec<u8>>, o: &ObjectId, off: usize, d: &[u8]| {
        let v = model.entry(o.clone()).or_default();
        if v.len() < off + d.len() {
            v.resize(off + d.len(), 0);
        }
        v[off..off + d.len()].copy_from_slice(d);
    };
    let (a, b, u, k) = (
        ObjectId::new(1, "aligned"),
        ObjectId::new(1, "big-then-small"),
        ObjectId::new(1, "unaligned"),
        ObjectId::new(1, "clone-of-aligned"),
    );
    // 4 MiB at 0 of a new object: all of it linked.
    let d = pattern(4 << 20, 1);
    let mut t = Transaction::new();
    t.write(c, &a, 0, d.clone());
    put(&mut model, &a, 0, &d);
    txns.push(t);
    // 1 MiB + 100 bytes at a block-aligned offset inside data: the short tail is
    // written, the rest linked; then small writes over the staged range.
    let d = pattern(2 << 20, 2);
    let mut t = Transaction::new();
    t.write(c, &b, 0, d.clone());
    put(&mut model, &b, 0, &d);
    txns.push(t);
    let d = pattern((1 << 20) + 100, 3);
    let mut t = Transaction::new();
    t.write(c, &b, 64 << 10, d.clone())
        .setattr(c, &b, "k", b"v".to_vec());
    put(&mut model, &b, 64 << 10, &d);
    txns.push(t);
    let mut t = Transaction::new();
    t.write(c, &b, 100, vec![0xaa; 5000]);
    put(&mut model, &b, 100, &[0xaa; 5000]);
    txns.push(t);
    // An unaligned offset: written, not linked (still staged, still correct).
    let d = pattern((1 << 20) + 7, 4);
    let mut t = Transaction::new();
    t.touch(c, &u).write(c, &u, 4095, d.clone());
    put(&mut model, &u, 4095, &d);
    txns.push(t);
    // Two staged writes in one transaction, then a clone of the result.
    let (d1, d2) = (pattern(1 << 20, 5), pattern(3 << 20, 6));
    let mut t = Transaction::new();
    t.write(c, &a, 1 << 20, d1.clone())
        .write(c, &a, 2 << 20, d2.clone())
        .clone_obj(c, &a, &k);
    put(&mut model, &a, 1 << 20, &d1);
    put(&mut model, &a, 2 << 20, &d2);
    let whole = model[&a].clone();
    model.insert(k.clone(), whole);
    txns.push(t);
    (txns, model)
}

fn check(store: &dyn ObjectStore, c: &CollectionId, model: &BTreeMap<ObjectId, Vec<u8>>) {
    let ch = store.open_collection(c).unwrap();
    for (o, want) in model {
        let got = store.read(&ch, o, 0, 0).unwrap();
        assert!(
            got == *want,
            "{o}: {} bytes read, {} expected (first difference at {:?})",
            got.len(),
            want.len(),
            got.iter().zip(want).position(|(x, y)| x != y)
        );
    }
    let r = store.fsck(true).unwrap();
    assert!(r.is_clean(), "{r:?}");
}

fn mounted(dir: &Path, jo: &JournalingOptions) -> (ostore_filestore::FileStore, CollectionId) {
    mounted_with(dir, jo, FileStoreOptions::default())
}

fn mounted_with(
    dir: &Path,
    jo: &JournalingOptions,
    opts: FileStoreOptions,
) -> (ostore_filestore::FileStore, CollectionId) {
    let store = filestore(dir, jo.clone(), opts);
    let (c, _) = ostore_tests::harness::mkfs_mount_one_collection(&store);
    (store, c)
}

/// Large writes are staged: the journal holds references, not their bytes; the
/// objects share their extents with the staged files until a checkpoint removes them;
/// everything reads back, through a clean umount and mount too.
pub fn large_writes_go_to_disk_once() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("store");
    let jo = manual_checkpoints();
    let (store, c) = mounted(&dir, &jo);
    let (txns, model) = workload(&c);
    let ch = store.open_collection(&c).unwrap();
    let data: u64 = txns.iter().map(|t| t.data_bytes()).sum();
    for t in txns {
        store.apply_transaction(&ch, t).unwrap();
    }
    check(&store, &c, &model);
    let j = journal_sizes(&dir);
    assert_eq!(j.staged, 6, "every write of 1 MiB or more is staged");
    assert!(j.staged_bytes >= 12 << 20);
    assert!(
        j.data < data / 50,
        "the journal holds {} bytes for {data} bytes written",
        j.data
    );
    assert_eq!(staged_files(&dir), 6);
    // Staged 2 MiB at 0, then 1 MiB + 100 at 64 KiB, then 5,000 bytes at 100 (which
    // unshares the first block): most of it still shares extents with staged files.
    let p = ostore_filestore::locate_object(&dir, &c, &ObjectId::new(1, "big-then-small"))
        .unwrap()
        .unwrap();
    let (shared, total) = shared_extents(&p);
    assert!(
        total >= 2 << 20 && shared >= 3 << 19,
        "staged data not reflinked: {shared} of {total} bytes shared"
    );
    store.checkpoint_now().unwrap();
    assert_eq!(staged_files(&dir), 6, "released files are kept");
    check(&store, &c, &model);
    // A reused file: overwritten in place under its own name (no new file), the
    // objects that share its old blocks keep their bytes (copy-on-write).
    // (A checkpoint that did not release them would leave nothing to reuse: the write
    // would make a seventh file.)
    let before = staging_names(&dir);
    let mut t = Transaction::new();
    let o = ObjectId::new(1, "reuser");
    t.write(&c, &o, 0, pattern(1 << 20, 77));
    store.apply_transaction(&ch, t).unwrap();
    assert_eq!(
        staging_names(&dir),
        before,
        "a reused slot keeps its file's name"
    );
    assert!(
        before
            .iter()
            .any(|n| std::fs::read(dir.join("staging").join(n)).unwrap() == pattern(1 << 20, 77)),
        "the reused file holds the new write"
    );
    let mut model = model;
    model.insert(o, pattern(1 << 20, 77));
    check(&store, &c, &model);
    store.checkpoint_now().unwrap();
    check(&store, &c, &model);
    store.umount().unwrap();
    let store = filestore(&dir, jo, FileStoreOptions::default());
    store.mount().unwrap();
    check(&store, &c, &model);
    store.umount().unwrap();
}

/// A crash before any checkpoint: replay reads every staged file back, checks it
/// against its journal record and links it again, over whatever the first apply left.
/// Then the staged files go at the first checkpoint.
pub fn replay_relinks_staged_writes() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("store");
    let jo = manual_checkpoints();
    let (store, c) = mounted(&dir, &jo);
    let (txns, model) = workload(&c);
    let ch = store.open_collection(&c).unwrap();
    for t in txns {
        store.apply_transaction(&ch, t).unwrap();
    }
    drop(store);
    assert_eq!(staged_files(&dir), 6);
    let store = filestore(&dir, jo.clone(), FileStoreOptions::default());
    let rep = store.mount_report().unwrap();
    assert!(rep.replayed >= 6, "{rep:?}");
    check(&store, &c, &model);
    // Mount's checkpoint freed them for reuse: a write after it makes no new file.
    let before = staging_names(&dir);
    let mut t = Transaction::new();
    t.write(&c, &ObjectId::new(1, "after"), 0, pattern(1 << 20, 5));
    store
        .apply_transaction(&store.open_collection(&c).unwrap(), t)
        .unwrap();
    assert_eq!(staging_names(&dir), before);
    let mut model = model;
    model.insert(ObjectId::new(1, "after"), pattern(1 << 20, 5));
    store.umount().unwrap();
    // Replay from an older state: the same, twice over.
    let store = filestore(&dir, jo, FileStoreOptions::default());
    store.mount().unwrap();
    check(&store, &c, &model);
    store.umount().unwrap();
}

/// A staged file that is damaged, short or gone when replay needs it: mount fails with
/// a corruption error naming it, and never applies wrong bytes.
pub fn a_damaged_staged_file_fails_replay() {
    for damage in ["flip", "truncate", "remove"] {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("store");
        let jo = manual_checkpoints();
        let (store, c) = mounted(&dir, &jo);
        let ch = store.open_collection(&c).unwrap();
        let mut t = Transaction::new();
        t.write(&c, &ObjectId::new(1, "x"), 0, pattern(1 << 20, 9));
        store.apply_transaction(&ch, t).unwrap();
        drop(store);
        let f = std::fs::read_dir(dir.join("staging"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        match damage {
            "flip" => {
                let mut b = std::fs::read(&f).unwrap();
                b[12345] ^= 0x10;
                std::fs::write(&f, b).unwrap();
            }
            "truncate" => {
                std::fs::File::options()
                    .write(true)
                    .open(&f)
                    .unwrap()
                    .set_len(4096)
                    .unwrap();
            }
            _ => std::fs::remove_file(&f).unwrap(),
        }
        let store = filestore(&dir, jo, FileStoreOptions::default());
        let e = store.mount().expect_err(damage);
        assert_eq!(e.kind(), ErrorKind::Corrupt, "{damage}: {e}");
        assert!(e.to_string().contains("staged"), "{damage}: {e}");
    }
}

/// Without staging (`stage_min_bytes: None`) the same workload journals every byte
/// and reads back the same.
pub fn staging_off_journals_everything() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("store");
    let jo = manual_checkpoints();
    let opts = FileStoreOptions {
        stage_min_bytes: None,
        ..FileStoreOptions::default()
    };
    let (store, c) = mounted_with(&dir, &jo, opts);
    let ch = store.open_collection(&c).unwrap();
    let (txns, model) = workload(&c);
    let data: u64 = txns.iter().map(|t| t.data_bytes()).sum();
    for t in txns {
        store.apply_transaction(&ch, t).unwrap();
    }
    check(&store, &c, &model);
    let j = journal_sizes(&dir);
    assert_eq!(j.staged, 0);
    assert!(j.data >= data, "{} journaled for {data}", j.data);
    assert_eq!(staged_files(&dir), 0);
    store.umount().unwrap();
}

/// A seeded stream of transactions over a few objects: large writes (staged) at
/// aligned and unaligned offsets mixed with small writes and truncates, with the
/// model of each object after every prefix. Only the XFS binary uses it (its power
/// cut is `xfs_io -x -c shutdown`).
#[allow(dead_code)]
pub struct LargeStream {
    pub c: CollectionId,
    pub txns: Vec<Transaction>,
    /// `states[k]`: every object after the first `k` transactions.
    pub states: Vec<BTreeMap<ObjectId, Vec<u8>>>,
}

#[allow(dead_code)]
impl LargeStream {
    pub fn new(seed: u64, n: usize) -> LargeStream {
        let c = CollectionId::pg(1, 0);
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut next = move |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        let mut model: BTreeMap<ObjectId, Vec<u8>> = BTreeMap::new();
        let mut states = vec![model.clone()];
        let mut txns = Vec::new();
        for i in 0..n {
            let o = ObjectId::new(1, format!("obj{}", next(4)));
            let mut t = Transaction::new();
            let v = model.entry(o.clone()).or_default();
            match next(10) {
                0..=5 => {
                    let len = (1 << 20)
                        + next(3 << 20) as usize / 4096 * 4096
                        + if next(3) == 0 { next(4096) as usize } else { 0 };
                    let off = next(4) as usize * (1 << 20)
                        + if next(4) == 0 { next(4096) as usize } else { 0 };
                    let d = pattern(len, i as u8);
                    t.write(&c, &o, off as u64, d.clone());
                    if v.len() < off + len {
                        v.resize(off + len, 0);
                    }
                    v[off..off + len].copy_from_slice(&d);
                }
                6..=8 => {
                    let off = next(6 << 20) as usize;
                    let d = vec![i as u8 ^ 0x5a; 1 + next(9000) as usize];
                    t.write(&c, &o, off as u64, d.clone());
                    if v.len() < off + d.len() {
                        v.resize(off + d.len(), 0);
                    }
                    v[off..off + d.len()].copy_from_slice(&d);
                }
                _ => {
                    let size = next(5 << 20) as usize;
                    t.touch(&c, &o).truncate(&c, &o, size as u64);
                    v.resize(size, 0);
                }
            }
            txns.push(t);
            states.push(model.clone());
        }
        LargeStream { c, txns, states }
    }

    /// Whether the store's objects equal the model after `k` transactions.
    pub fn matches(&self, store: &dyn ObjectStore, k: usize) -> bool {
        let ch = store.open_collection(&self.c).unwrap();
        let listed = store
            .collection_list(&ch, &ObjectId::min(), &ObjectId::max_sentinel(), usize::MAX)
            .unwrap()
            .0;
        let want = &self.states[k];
        listed.len() == want.len()
            && want
                .iter()
                .all(|(o, d)| store.read(&ch, o, 0, 0).is_ok_and(|got| got == *d))
    }
}
