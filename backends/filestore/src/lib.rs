//! FileStore: every object is a file on a local filesystem, its attrs the file's xattrs,
//! its omap (and attrs too big for xattrs) in RocksDB, all committed through the shared
//! journal ([`JournaledStore`]) like Ceph's FileStore.
//!
//! What this crate owns:
//! - the on-disk layout under `<data>/` (see `docs/FORMATS.md`, "FileStore"): the
//!   `filestore.sb` superblock, `current/` with `commit_op_seq`, the RocksDB `kv/`,
//!   `tmp/`, and one directory per collection with a hashed sub-directory [`index`];
//! - object names as file names ([`names`]);
//! - the filesystem backends chosen by statfs magic ([`fsback`]: generic, XFS, btrfs,
//!   ZFS) and every ioctl behind them ([`sys`], the only `unsafe` in the crate);
//! - exactly-once replay: snapshot rollback where the filesystem has snapshots, else
//!   replay guards and transaction markers ([`apply`]);
//! - CRC32C checksums of object data per 64 KiB extent, verified on every read
//!   (a mismatch is `ErrorKind::Corrupt`, never wrong bytes), and [`FileBackend::fsck`].
//!
//! Concurrency: one lock; an apply holds it exclusively (so readers never see half a
//! transaction), reads share it.

pub mod apply;
pub mod fsback;
pub mod fsck;
pub mod index;
pub mod names;
pub mod stage;
pub mod sys;
pub mod testfs;
mod xattr;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};

use ostore_journal::{AtomicFileReader, AtomicFileWriter, Vfs};
use ostore_kv::{KeyValueDB, KvRead, RocksDb, RocksOptions, WriteBatch};
use ostore_os::journaling::{Backend, JournaledStore, JournalingOptions};
use ostore_os::store::{
    FsckReport, ObjectStat, OmapContents, OmapIterator, SnapshotOmapIterator, StoreStatfs,
};
use ostore_os::{
    CollectionId, Error, ErrorKind, ObjectId, OmapKey, Result, StateView, Transaction,
};

use crate::fsback::{BtrfsSnapshots, FsKind, FsOps, SnapshotOps, ZfsCommand, ZfsSnapshots};
use crate::index::{dir_path, CollIndex};
use crate::names::{Guard, Parsed, Pos};
use crate::stage::StageArea;

pub const STORE_TYPE: &str = "filestore";

/// Bytes of object data one checksum covers.
pub const CSUM_EXTENT: u64 = 64 << 10;

// xattr names (all in the `user.` namespace, which every Linux filesystem has).
pub(crate) const XA_ONUM: &[u8] = b"user.ostore.n";
pub(crate) const XA_OID: &[u8] = b"user.ostore.oid";
pub(crate) const XA_GUARD: &[u8] = b"user.ostore.g";
/// Position of the op that created this incarnation of the object.
pub(crate) const XA_BIRTH: &[u8] = b"user.ostore.b";
pub(crate) const XA_BITS: &[u8] = b"user.ostore.bits";
pub(crate) const XA_ATTR: &[u8] = b"user.ostore.a.";
/// Linux's limit on an xattr name.
const XATTR_NAME_MAX: usize = 255;

// kv key prefixes; object data keys continue with the 16-byte object number.
pub(crate) const K_OMAP: u8 = b'M';
pub(crate) const K_HEADER: u8 = b'H';
pub(crate) const K_ATTR: u8 = b'A';
pub(crate) const K_CSUM: u8 = b'C';
pub(crate) const K_OID: u8 = b'I';
pub(crate) const K_STARTED: u8 = b'S';
pub(crate) const K_REJECTED: u8 = b'R';
pub(crate) const K_EPOCH: &[u8] = b"E";

const SB_FILE: &str = "filestore.sb";
const SB_MAGIC: u32 = u32::from_le_bytes(*b"OSFS");
const SEQ_FILE: &str = "commit_op_seq";
const SEQ_MAGIC: u32 = u32::from_le_bytes(*b"OSCS");
/// 2: every `user.ostore.*` xattr carries a CRC32C trailer (see `xattr`).
const SB_VERSION: u32 = 2;

/// Tuning fixed at mkfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStoreOptions {
    /// A leaf directory of the hashed index splits when it holds more files than this
    /// (Ceph: 16 x split_multiple x merge_threshold = 320).
    pub split_threshold: u32,
    /// Use filesystem snapshots for checkpoints where the filesystem has them (btrfs;
    /// ZFS when `current/` is a dataset).
    pub snapshots: bool,
    /// Largest attr value kept in an xattr; `None`: the filesystem's default.
    pub inline_xattr_max: Option<u32>,
    /// Writes at least this long are staged (written once, then reflinked into place)
    /// instead of journaled, where reflink works; `None`: never. Read at every mount,
    /// not kept in the superblock.
    pub stage_min_bytes: Option<u64>,
}

impl Default for FileStoreOptions {
    fn default() -> Self {
        FileStoreOptions {
            split_threshold: 320,
            snapshots: true,
            inline_xattr_max: None,
            stage_min_bytes: Some(stage::STAGE_MIN_BYTES),
        }
    }
}

fn registry() -> &'static Mutex<HashMap<PathBuf, FileStoreOptions>> {
    static R: OnceLock<Mutex<HashMap<PathBuf, FileStoreOptions>>> = OnceLock::new();
    R.get_or_init(Default::default)
}

/// Sets the options the next mkfs of the store at `path` uses ([`Backend::open`] only
/// receives a path).
pub fn set_mkfs_options(path: &Path, opts: FileStoreOptions) {
    lock(registry()).insert(path.to_path_buf(), opts);
}

fn failpoints() -> &'static Mutex<HashMap<PathBuf, u64>> {
    static F: OnceLock<Mutex<HashMap<PathBuf, u64>>> = OnceLock::new();
    F.get_or_init(Default::default)
}

static FAILPOINTS_ARMED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Test hook: the store in `path` fails (as an I/O error would: fail-stop) before its
/// `ops`-th next op, leaving its files exactly as a crash at that op boundary would.
#[doc(hidden)]
pub fn fail_after_ops(path: &Path, ops: u64) {
    lock(failpoints()).insert(path.to_path_buf(), ops);
    FAILPOINTS_ARMED.store(true, std::sync::atomic::Ordering::SeqCst);
}

pub(crate) fn failpoint(path: &Path) -> Result<()> {
    if !FAILPOINTS_ARMED.load(std::sync::atomic::Ordering::Relaxed) {
        return Ok(());
    }
    let mut g = lock(failpoints());
    if let Some(n) = g.get_mut(path) {
        if *n == 0 {
            g.remove(path);
            return Err(Error::io("injected failure (test failpoint)"));
        }
        *n -= 1;
    }
    Ok(())
}

/// Removes a store's data directory (any backend's). A FileStore on btrfs keeps its
/// checkpoints as read-only snapshots, which a recursive delete cannot empty: they are
/// destroyed first, and so is `current/` when it is a subvolume.
pub fn remove_store_dir(path: &Path) -> io::Result<()> {
    if let Ok(names) = BtrfsSnapshots.list(path) {
        for n in names {
            let _ = BtrfsSnapshots.destroy(path, &n);
        }
    }
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

/// FileStore: [`FileBackend`] committed through the shared journal.
pub type FileStore = JournaledStore<FileBackend>;

/// A FileStore in `path` with journal options `jopts` and mkfs options `fsopts`.
pub fn filestore(
    path: impl Into<PathBuf>,
    jopts: JournalingOptions,
    fsopts: FileStoreOptions,
) -> FileStore {
    let path = path.into();
    set_mkfs_options(&path, fsopts);
    JournaledStore::with_options(path, jopts)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Converts an I/O error with what was being done.
pub(crate) fn ioe(e: io::Error, what: impl std::fmt::Display) -> Error {
    Error::from(e).context(what)
}

pub(crate) fn kve(e: ostore_kv::Error) -> Error {
    match e {
        ostore_kv::Error::Corruption(m) => Error::corrupt(format!("kv: {m}")),
        ostore_kv::Error::InvalidArgument(m) => Error::invalid(format!("kv: {m}")),
        ostore_kv::Error::Poisoned(m) => Error::failed(format!("kv: {m}")),
        e => Error::io(format!("kv: {e}")),
    }
}

/// The filestore superblock (`filestore.sb`, an atomic file, magic `OSFS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Super {
    pub fs: FsKind,
    pub snapshots: bool,
    pub extent: u32,
    pub split_threshold: u32,
    pub inline_xattr_max: u32,
}

impl Super {
    /// u32 version, u8 fs kind, u8 snapshots, u16 0, u32 checksum extent,
    /// u32 split threshold, u32 inline xattr max (little-endian, 20 bytes).
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(20);
        b.extend_from_slice(&SB_VERSION.to_le_bytes());
        b.push(self.fs.code());
        b.push(u8::from(self.snapshots));
        b.extend_from_slice(&0u16.to_le_bytes());
        b.extend_from_slice(&self.extent.to_le_bytes());
        b.extend_from_slice(&self.split_threshold.to_le_bytes());
        b.extend_from_slice(&self.inline_xattr_max.to_le_bytes());
        b
    }
    pub fn decode(b: &[u8]) -> Result<Super> {
        let u = |o: usize| {
            let mut a = [0u8; 4];
            a.copy_from_slice(&b[o..o + 4]);
            u32::from_le_bytes(a)
        };
        if b.len() == 20 && u(0) == 1 {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "filestore superblock version 1: made by an older ostore whose xattrs \
                 carry no checksums; export the store with that version, mkfs, then import",
            ));
        }
        if b.len() != 20 || u(0) != SB_VERSION {
            return Err(Error::corrupt(
                "filestore superblock has a bad length or version",
            ));
        }
        let fs = FsKind::from_code(b[4])
            .ok_or_else(|| Error::corrupt("filestore superblock names an unknown filesystem"))?;
        if b[5] > 1 || u64::from(u(8)) != CSUM_EXTENT || u(12) == 0 {
            return Err(Error::corrupt(
                "filestore superblock fields are out of range",
            ));
        }
        Ok(Super {
            fs,
            snapshots: b[5] == 1,
            extent: u(8),
            split_threshold: u(12),
            inline_xattr_max: u(16),
        })
    }
}

/// The FileStore backend.
#[derive(Debug)]
pub struct FileBackend {
    data: PathBuf,
    vfs: Arc<dyn Vfs>,
    state: RwLock<Option<Mounted>>,
    /// The staging area and the staging threshold (`None`: writes are not staged),
    /// outside `state` so staging never waits for an apply.
    staging: RwLock<Option<Staging>>,
}

/// The staging area of a mounted store, and the staging threshold.
type Staging = (Arc<StageArea>, Option<u64>);

/// A mounted FileStore.
pub struct Mounted {
    pub(crate) data: PathBuf,
    pub(crate) current: PathBuf,
    pub(crate) vfs: Arc<dyn Vfs>,
    pub(crate) kv: RocksDb,
    pub(crate) fs: FsOps,
    pub(crate) snaps: Option<Box<dyn SnapshotOps>>,
    pub(crate) sb: Super,
    pub(crate) colls: BTreeMap<CollectionId, CollIndex>,
    pub(crate) list_cache: Mutex<HashMap<CollectionId, Arc<Vec<ObjectId>>>>,
    /// The seq of the last checkpoint.
    pub(crate) committed: u64,
    /// Mount epoch (kv key `E`, bumped by every mount) and object numbers handed out in
    /// it: together they make object numbers unique forever.
    pub(crate) epoch: u64,
    pub(crate) onum_counter: u64,
    /// Where staged writes are read from (`None` in mkfs).
    pub(crate) stage: Option<Arc<StageArea>>,
    /// (op index, staged id) of the staged writes of the transaction being applied.
    pub(crate) staged_now: Vec<(u32, u64)>,
    /// The mount's replay is running: extents may be half-updated by the crash, so a
    /// checksum that fails before a partial rewrite is not damage (see `damaged_edges`).
    pub(crate) in_replay: bool,
}

impl std::fmt::Debug for Mounted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mounted")
            .field("current", &self.current)
            .field("fs", &self.fs)
            .field("snapshots", &self.snaps.is_some())
            .field("committed", &self.committed)
            .finish_non_exhaustive()
    }
}

/// The 16-byte number an object's kv data is keyed by (mount epoch and a counter, both
/// big-endian u64), kept in its `user.ostore.n` xattr.
pub type Onum = [u8; 16];

pub(crate) fn okey(prefix: u8, onum: &Onum, rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(17 + rest.len());
    k.push(prefix);
    k.extend_from_slice(onum);
    k.extend_from_slice(rest);
    k
}

pub(crate) fn oprefix_range(prefix: u8, onum: &Onum) -> (Vec<u8>, Vec<u8>) {
    let start = okey(prefix, onum, &[]);
    let end = ostore_kv::prefix_successor(&start).unwrap_or_else(|| vec![0xff; 18]);
    (start, end)
}

pub(crate) fn csum_key(onum: &Onum, ext: u32) -> Vec<u8> {
    okey(K_CSUM, onum, &ext.to_be_bytes())
}

/// (offset, length) spans, overlapping or adjacent ones joined, as a map.
fn merge_spans(mut spans: Vec<(u64, u64)>) -> BTreeMap<u64, u64> {
    spans.sort_unstable();
    let mut out: BTreeMap<u64, u64> = BTreeMap::new();
    let mut cur: Option<(u64, u64)> = None;
    for (o, l) in spans.into_iter().filter(|s| s.1 > 0) {
        cur = match cur {
            Some((co, ce)) if o <= ce => Some((co, ce.max(o + l))),
            Some((co, ce)) => {
                out.insert(co, ce - co);
                Some((o, o + l))
            }
            None => Some((o, o + l)),
        };
    }
    if let Some((co, ce)) = cur {
        out.insert(co, ce - co);
    }
    out
}

pub(crate) fn zero_extent_crc() -> u32 {
    static Z: OnceLock<u32> = OnceLock::new();
    *Z.get_or_init(|| crc32c::crc32c(&vec![0u8; CSUM_EXTENT as usize]))
}

/// CRC32C of one extent's bytes, padded with zeros to the extent size.
pub(crate) fn extent_crc(bytes: &[u8]) -> u32 {
    static ZEROS: OnceLock<Vec<u8>> = OnceLock::new();
    let z = ZEROS.get_or_init(|| vec![0u8; CSUM_EXTENT as usize]);
    let c = crc32c::crc32c(bytes);
    let pad = (CSUM_EXTENT as usize).saturating_sub(bytes.len());
    crc32c::crc32c_append(c, &z[..pad])
}

pub(crate) fn open_rw(p: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new().read(true).write(true).open(p)
}

pub(crate) fn open_ro(p: &Path) -> io::Result<Option<File>> {
    match File::open(p) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

pub(crate) fn attr_xattr_name(name: &str) -> Option<Vec<u8>> {
    let mut n = XA_ATTR.to_vec();
    n.extend_from_slice(name.as_bytes());
    (n.len() <= XATTR_NAME_MAX).then_some(n)
}

pub(crate) fn read_guard(f: &File) -> Result<Option<Guard>> {
    match xattr::get(f, XA_GUARD).map_err(|e| ioe(e, "reading a replay guard"))? {
        None => Ok(None),
        Some(b) => Guard::decode(&b).map(Some),
    }
}

pub(crate) fn read_birth(f: &File) -> Result<Option<Pos>> {
    match xattr::get(f, XA_BIRTH).map_err(|e| ioe(e, "reading a birth position"))? {
        None => Ok(None),
        Some(b) => Pos::from_bytes(&b)
            .map(Some)
            .ok_or_else(|| Error::corrupt("birth xattr has the wrong length")),
    }
}

pub(crate) fn read_onum(f: &File) -> Result<Option<Onum>> {
    match xattr::get(f, XA_ONUM).map_err(|e| ioe(e, "reading an object number"))? {
        None => Ok(None),
        Some(b) if b.len() == 16 => {
            let mut o = [0u8; 16];
            o.copy_from_slice(&b);
            Ok(Some(o))
        }
        Some(_) => Err(Error::corrupt("object number xattr has the wrong length")),
    }
}

impl Mounted {
    pub(crate) fn coll_path(&self, cid: &CollectionId) -> PathBuf {
        self.current.join(cid.to_string())
    }

    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.current.join("tmp")
    }

    /// The file an object has (or would have) and whether it is long-named.
    pub(crate) fn obj_path(&self, cid: &CollectionId, oid: &ObjectId) -> Option<(PathBuf, bool)> {
        let idx = self.colls.get(cid)?;
        let (name, long) = names::file_name(oid);
        let dir = dir_path(&self.coll_path(cid), idx.leaf(oid.hash));
        Some((dir.join(name), long))
    }

    pub(crate) fn open_obj(&self, cid: &CollectionId, oid: &ObjectId) -> Result<Option<File>> {
        let Some((p, _)) = self.obj_path(cid, oid) else {
            return Ok(None);
        };
        open_ro(&p).map_err(|e| ioe(e, format!("opening {}", p.display())))
    }

    fn need_coll(&self, cid: &CollectionId) -> Result<&CollIndex> {
        self.colls
            .get(cid)
            .ok_or_else(|| Error::not_found(format!("collection {cid} does not exist")))
    }

    pub(crate) fn need_obj(&self, cid: &CollectionId, oid: &ObjectId) -> Result<File> {
        self.need_coll(cid)?;
        self.open_obj(cid, oid)?
            .ok_or_else(|| Error::not_found(format!("object {oid} does not exist in {cid}")))
    }

    pub(crate) fn onum_of(&self, f: &File) -> Result<Onum> {
        read_onum(f)?.ok_or_else(|| Error::corrupt("object file has no object number xattr"))
    }

    /// The ids of a collection, sorted (cached until the next membership change).
    pub(crate) fn list(&self, cid: &CollectionId) -> Result<Arc<Vec<ObjectId>>> {
        if let Some(v) = lock(&self.list_cache).get(cid) {
            return Ok(v.clone());
        }
        let idx = self.need_coll(cid)?;
        let root = self.coll_path(cid);
        let mut out = Vec::with_capacity(idx.total());
        for leaf in idx.leaves() {
            let dir = dir_path(&root, leaf);
            let rd = match std::fs::read_dir(&dir) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(ioe(e, format!("listing {}", dir.display()))),
            };
            for e in rd {
                let e = e.map_err(|e| ioe(e, format!("listing {}", dir.display())))?;
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    continue;
                }
                let name = e.file_name().to_string_lossy().into_owned();
                match names::parse(&name) {
                    Some(Parsed::Short(o)) => out.push(o),
                    Some(Parsed::Long { hash, digest }) => {
                        out.push(self.long_id(&e.path(), hash, digest)?)
                    }
                    None => {
                        return Err(Error::corrupt(format!(
                            "{} is not a FileStore object file",
                            e.path().display()
                        )))
                    }
                }
            }
        }
        out.sort();
        let v = Arc::new(out);
        lock(&self.list_cache).insert(*cid, v.clone());
        Ok(v)
    }

    /// The full id of a long-named file: its oid xattr, or the kv copy it points to.
    pub(crate) fn long_id(&self, path: &Path, hash: u32, digest: u128) -> Result<ObjectId> {
        let f = File::open(path).map_err(|e| ioe(e, format!("opening {}", path.display())))?;
        let x = xattr::get(&f, XA_OID).map_err(|e| ioe(e, "reading an oid xattr"))?;
        let bytes = match x {
            Some(b) if b != b"K" => b,
            _ => {
                let mut k = vec![K_OID];
                k.extend_from_slice(&digest.to_be_bytes());
                self.kv.get(&k).map_err(kve)?.ok_or_else(|| {
                    Error::corrupt(format!("{} has no stored object id", path.display()))
                })?
            }
        };
        names::decode_long(&bytes, hash, digest).map_err(|e| e.context(path.display().to_string()))
    }

    pub(crate) fn invalidate(&self, cid: &CollectionId) {
        lock(&self.list_cache).remove(cid);
    }

    pub(crate) fn bits_of(&self, cid: &CollectionId) -> Result<u32> {
        self.need_coll(cid)?;
        let d = sys::open_dir(&self.coll_path(cid)).map_err(|e| ioe(e, "opening a collection"))?;
        match xattr::get(&d, XA_BITS)
            .map_err(|e| ioe(e, format!("reading the bits of collection {cid}")))?
        {
            Some(b) if b.len() == 4 => {
                let mut a = [0u8; 4];
                a.copy_from_slice(&b);
                Ok(u32::from_le_bytes(a))
            }
            Some(_) => Err(Error::corrupt(format!("bits xattr of {cid} is malformed"))),
            None => Err(Error::corrupt(format!(
                "collection {cid} has no bits xattr"
            ))),
        }
    }

    /// Reads `[off, off+len)` (len 0: to the end), verifying every extent it touches.
    /// Refuses an object file cut short: it keeps the checksum records of the extents it
    /// lost (a truncate drops them with the bytes), and its size would otherwise be served
    /// as the object's.
    pub(crate) fn check_not_cut(&self, onum: &Onum, size: u64) -> Result<()> {
        let Ok(first) = u32::try_from(size.div_ceil(CSUM_EXTENT)) else {
            return Ok(());
        };
        let (_, end) = oprefix_range(K_CSUM, onum);
        let mut it = self
            .kv
            .iter(ostore_kv::KeyRange::new(csum_key(onum, first), end))
            .map_err(kve)?;
        it.seek_to_first().map_err(kve)?;
        match it.current() {
            None => Ok(()),
            Some(_) => Err(Error::corrupt(format!(
                "the object file is {size} bytes but has data checksums past that end: it was cut short"
            ))),
        }
    }

    pub(crate) fn read_verified(
        &self,
        f: &File,
        onum: &Onum,
        off: u64,
        len: u64,
    ) -> Result<Vec<u8>> {
        let size = f.metadata().map_err(|e| ioe(e, "stat"))?.len();
        if len == 0 || off.saturating_add(len) >= size {
            // The read reaches the end: make sure the end is the object's.
            self.check_not_cut(onum, size)?;
        }
        if off >= size {
            return Ok(Vec::new());
        }
        let n = if len == 0 {
            size - off
        } else {
            len.min(size - off)
        };
        let e0 = off / CSUM_EXTENT;
        let e1 = (off + n - 1) / CSUM_EXTENT;
        let start = e0 * CSUM_EXTENT;
        let stop = ((e1 + 1) * CSUM_EXTENT).min(size);
        let mut buf = vec![0u8; (stop - start) as usize];
        let got = fsback::read_full(f, &mut buf, start).map_err(|e| ioe(e, "read"))?;
        buf.truncate(got);
        let keys: Vec<Vec<u8>> = (e0..=e1).map(|e| csum_key(onum, e as u32)).collect();
        let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        let stored = self.kv.multi_get(&refs).map_err(kve)?;
        for (i, e) in (e0..=e1).enumerate() {
            let s = ((e - e0) * CSUM_EXTENT) as usize;
            let t = (s + CSUM_EXTENT as usize).min(buf.len());
            let chunk = buf.get(s..t).unwrap_or(&[]);
            let want = match &stored[i] {
                Some(v) if v.len() == 4 => {
                    let mut a = [0u8; 4];
                    a.copy_from_slice(v);
                    u32::from_le_bytes(a)
                }
                Some(_) => return Err(Error::corrupt("data checksum record is malformed")),
                None => zero_extent_crc(),
            };
            if extent_crc(chunk) != want {
                // No record means the extent was all zeros: bytes there mean the record
                // was lost, which is worth telling apart from damaged data.
                let what = match stored[i] {
                    Some(_) => "data checksum mismatch",
                    None => "no data checksum record (lost?) for non-zero bytes",
                };
                return Err(Error::corrupt(format!(
                    "{what} in extent {e} (bytes {}..{})",
                    e * CSUM_EXTENT,
                    (e + 1) * CSUM_EXTENT
                )));
            }
        }
        let a = (off - start) as usize;
        let b = (a + n as usize).min(buf.len());
        let mut out = buf[a.min(b)..b].to_vec();
        // A file shorter than its size would be an fs bug; never return short data.
        out.resize(n as usize, 0);
        Ok(out)
    }

    pub(crate) fn attrs_of(&self, f: &File, onum: &Onum) -> Result<BTreeMap<String, Vec<u8>>> {
        let mut out = BTreeMap::new();
        for n in sys::flistxattr(f).map_err(|e| ioe(e, "listing xattrs"))? {
            let Some(rest) = n.strip_prefix(XA_ATTR) else {
                continue;
            };
            let name = String::from_utf8(rest.to_vec())
                .map_err(|_| Error::corrupt("attr xattr name is not UTF-8"))?;
            if let Some(v) = xattr::get(f, &n).map_err(|e| ioe(e, "reading an xattr"))? {
                out.insert(name, v);
            }
        }
        let (s, e) = oprefix_range(K_ATTR, onum);
        for (k, v) in
            ostore_kv::collect_range(&self.kv, ostore_kv::KeyRange::new(s, e)).map_err(kve)?
        {
            let name = String::from_utf8(k[17..].to_vec())
                .map_err(|_| Error::corrupt("spilled attr name is not UTF-8"))?;
            out.entry(name).or_insert(v);
        }
        Ok(out)
    }

    pub(crate) fn omap_of(&self, onum: &Onum) -> Result<BTreeMap<OmapKey, Vec<u8>>> {
        let (s, e) = oprefix_range(K_OMAP, onum);
        Ok(
            ostore_kv::collect_range(&self.kv, ostore_kv::KeyRange::new(s, e))
                .map_err(kve)?
                .into_iter()
                .map(|(k, v)| (k[17..].to_vec(), v))
                .collect(),
        )
    }

    pub(crate) fn header_of(&self, onum: &Onum) -> Result<Vec<u8>> {
        Ok(self
            .kv
            .get(&okey(K_HEADER, onum, &[]))
            .map_err(kve)?
            .unwrap_or_default())
    }

    pub(crate) fn commit(&self, b: &WriteBatch, sync: bool) -> Result<()> {
        if b.is_empty() && !sync {
            return Ok(());
        }
        self.kv.commit(b, sync).map_err(kve)
    }

    fn write_seq(&self, seq: u64) -> Result<()> {
        AtomicFileWriter::new(&*self.vfs, self.current.join(SEQ_FILE), SEQ_MAGIC)
            .write(&seq.to_le_bytes())
            .map_err(|e| Error::io(format!("writing commit_op_seq: {e}")))
    }

    /// Removes temp files of ops at or before `seq` (their ops are durable).
    fn clean_tmp(&self, seq: u64) -> Result<()> {
        let t = self.tmp_dir();
        for e in std::fs::read_dir(&t).map_err(|e| ioe(e, "listing tmp"))? {
            let e = e.map_err(|e| ioe(e, "listing tmp"))?;
            let n = e.file_name().to_string_lossy().into_owned();
            let s = n.get(..16).and_then(|h| u64::from_str_radix(h, 16).ok());
            if s.is_none_or(|s| s <= seq) {
                let p = e.path();
                let r = if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
                r.map_err(|e| ioe(e, format!("removing {}", p.display())))?;
            }
        }
        Ok(())
    }

    fn drop_markers(&self, seq: u64) -> Result<()> {
        let mut b = WriteBatch::new();
        let end = (seq + 1).to_be_bytes();
        for p in [K_STARTED, K_REJECTED] {
            let mut e = vec![p];
            e.extend_from_slice(&end);
            b.remove_range(vec![p], e);
        }
        self.commit(&b, false)
    }

    /// Makes the kv state durable for a checkpoint: memtables go to SSTs (synced with
    /// the MANIFEST), so what a checkpoint covers never depends on RocksDB's WAL, whose
    /// tail RocksDB cannot tell from damage when it is cut or lost.
    fn kv_durable(&self) -> Result<()> {
        self.kv.flush_memtables().map_err(kve)
    }

    fn checkpoint(&mut self, seq: u64) -> Result<()> {
        if let Some(snaps) = &self.snaps {
            let name = fsback::snap_name(seq);
            if self.committed == seq && self.data.join(&name).exists() {
                return Ok(());
            }
            self.kv_durable()?;
            self.write_seq(seq)?;
            let have = snaps
                .list(&self.data)
                .map_err(|e| ioe(e, "listing snapshots"))?;
            if !have.contains(&name) {
                snaps
                    .snapshot(&self.data, &name)
                    .map_err(|e| ioe(e, format!("creating snapshot {name}")))?;
            }
            let mut all = snaps
                .list(&self.data)
                .map_err(|e| ioe(e, "listing snapshots"))?;
            all.sort();
            // Keep the last two (Ceph's filestore keeps two as well).
            while all.len() > 2 {
                let old = all.remove(0);
                snaps
                    .destroy(&self.data, &old)
                    .map_err(|e| ioe(e, format!("removing snapshot {old}")))?;
            }
        } else {
            let d = sys::open_dir(&self.current).map_err(|e| ioe(e, "opening current"))?;
            sys::syncfs(&d).map_err(|e| ioe(e, "syncfs"))?;
            self.kv_durable()?;
            self.write_seq(seq)?;
            self.drop_markers(seq)?;
            self.clean_tmp(seq)?;
        }
        self.committed = seq;
        Ok(())
    }
}

fn read_seq(vfs: &dyn Vfs, current: &Path) -> Result<u64> {
    match AtomicFileReader::new(vfs, current.join(SEQ_FILE), SEQ_MAGIC)
        .read()
        .map_err(|e| Error::corrupt(format!("reading commit_op_seq: {e}")))?
    {
        Some(b) if b.len() == 8 => {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b);
            Ok(u64::from_le_bytes(a))
        }
        Some(_) => Err(Error::corrupt("commit_op_seq has the wrong length")),
        None => Err(Error::corrupt(format!(
            "{} has no commit_op_seq",
            current.display()
        ))),
    }
}

/// `create` only at mkfs: a mount must never replace a damaged database with an empty one.
fn kv_options(create: bool) -> RocksOptions {
    RocksOptions {
        create_if_missing: create,
        // The journal is the log of record, but FileStore's own markers and guards need
        // RocksDB's WAL (synced where a barrier is needed), so it stays on.
        wal: true,
        block_cache_bytes: 8 << 20,
        write_buffer_bytes: 8 << 20,
        ..RocksOptions::default()
    }
}

fn snapshot_ops(sb: &Super) -> Option<Box<dyn SnapshotOps>> {
    if !sb.snapshots {
        return None;
    }
    match sb.fs {
        FsKind::Btrfs => Some(Box::new(BtrfsSnapshots)),
        FsKind::Zfs => Some(Box::new(ZfsSnapshots::new(ZfsCommand, None))),
        _ => None,
    }
}

impl FileBackend {
    fn read_state(&self) -> Result<RwLockReadGuard<'_, Option<Mounted>>> {
        self.state
            .read()
            .map_err(|_| Error::failed("filestore lock poisoned"))
    }

    fn staging_state(&self) -> Result<std::sync::RwLockWriteGuard<'_, Option<Staging>>> {
        self.staging
            .write()
            .map_err(|_| Error::failed("filestore lock poisoned"))
    }

    fn stage_area(&self) -> Result<Arc<StageArea>> {
        self.staging
            .read()
            .map_err(|_| Error::failed("filestore lock poisoned"))?
            .as_ref()
            .map(|(a, _)| a.clone())
            .ok_or_else(|| Error::not_mounted("filestore backend is not mounted"))
    }

    fn write_state(&self) -> Result<RwLockWriteGuard<'_, Option<Mounted>>> {
        self.state
            .write()
            .map_err(|_| Error::failed("filestore lock poisoned"))
    }

    fn with<T>(&self, f: impl FnOnce(&Mounted) -> Result<T>) -> Result<T> {
        let g = self.read_state()?;
        match &*g {
            Some(m) => f(m),
            None => Err(Error::not_mounted("filestore backend is not mounted")),
        }
    }

    fn with_obj<T>(
        &self,
        cid: &CollectionId,
        oid: &ObjectId,
        f: impl FnOnce(&Mounted, File, Onum) -> Result<T>,
    ) -> Result<T> {
        self.with(|m| {
            let file = m.need_obj(cid, oid)?;
            let onum = m
                .onum_of(&file)
                .map_err(|e| e.context(format!("{oid} in {cid}")))?;
            f(m, file, onum)
        })
    }

    /// The data directory.
    pub fn data_path(&self) -> &Path {
        &self.data
    }

    /// The superblock of the mounted store.
    pub fn superblock(&self) -> Result<Super> {
        self.with(|m| Ok(m.sb))
    }

    /// Where an object's file is (tests and tools inspect it).
    pub fn object_path(&self, cid: &CollectionId, oid: &ObjectId) -> Result<PathBuf> {
        self.with(|m| {
            m.need_obj(cid, oid)?;
            Ok(m.obj_path(cid, oid).map(|(p, _)| p).unwrap_or_default())
        })
    }

    /// Whether reflink clones are in use.
    pub fn reflink_enabled(&self) -> Result<bool> {
        self.with(|m| Ok(m.fs.reflink_enabled()))
    }

    /// Runs the consistency check (see [`fsck`]).
    pub fn fsck_report(&self, deep: bool) -> Result<FsckReport> {
        self.with(|m| fsck::run(m, deep))
    }
}

/// Finds an object's file in a store's data directory without mounting (read-only, for
/// tests and tools; long-named objects are found by their name digest only).
pub fn locate_object(data: &Path, cid: &CollectionId, oid: &ObjectId) -> Result<Option<PathBuf>> {
    let root = data.join("current").join(cid.to_string());
    if !root.exists() {
        return Ok(None);
    }
    let (name, _) = names::file_name(oid);
    let mut p = root;
    for i in 0..8 {
        let sub = p.join(format!("DIR_{:X}", (oid.hash >> (4 * i)) & 0xF));
        if sub.is_dir() {
            p = sub;
        } else {
            break;
        }
    }
    let f = p.join(name);
    Ok(f.exists().then_some(f))
}

impl StateView for Mounted {
    fn collection_exists(&self, cid: &CollectionId) -> Result<bool> {
        Ok(self.colls.contains_key(cid))
    }
    fn object_exists(&self, cid: &CollectionId, oid: &ObjectId) -> Result<bool> {
        match self.obj_path(cid, oid) {
            None => Ok(false),
            Some((p, _)) => Ok(p.exists()),
        }
    }
    fn collection_objects(&self, cid: &CollectionId) -> Result<Vec<ObjectId>> {
        if !self.colls.contains_key(cid) {
            return Ok(Vec::new());
        }
        Ok(self.list(cid)?.as_ref().clone())
    }
}

impl Backend for FileBackend {
    const STORE_TYPE: &'static str = STORE_TYPE;

    fn open(data_path: &Path, vfs: Arc<dyn Vfs>) -> FileBackend {
        FileBackend {
            data: data_path.to_path_buf(),
            vfs,
            state: RwLock::new(None),
            staging: RwLock::new(None),
        }
    }

    fn mkfs(&self) -> Result<()> {
        let opts = lock(registry())
            .get(&self.data)
            .cloned()
            .unwrap_or_default();
        let (fs, _) = FsKind::detect(&self.data).map_err(|e| ioe(e, "statfs of the data dir"))?;
        let current = self.data.join("current");
        // An interrupted earlier mkfs left nothing committed: start over.
        for n in ["current", "current.new"] {
            let p = self.data.join(n);
            if p.exists() {
                if sys::is_btrfs_subvolume(&p).unwrap_or(false) {
                    let d = sys::open_dir(&self.data).map_err(|e| ioe(e, "opening data dir"))?;
                    sys::btrfs_subvol_destroy(&d, Path::new(n))
                        .map_err(|e| ioe(e, format!("removing {n}")))?;
                } else if fs != FsKind::Zfs || n != "current" {
                    std::fs::remove_dir_all(&p).map_err(|e| ioe(e, format!("removing {n}")))?;
                }
            }
        }
        for e in std::fs::read_dir(&self.data).map_err(|e| ioe(e, "listing data dir"))? {
            let e = e.map_err(|e| ioe(e, "listing data dir"))?;
            let n = e.file_name().to_string_lossy().into_owned();
            if fsback::snap_seq(&n).is_some() {
                let d = sys::open_dir(&self.data).map_err(|e| ioe(e, "opening data dir"))?;
                sys::btrfs_subvol_destroy(&d, Path::new(&n))
                    .or_else(|_| std::fs::remove_dir_all(e.path()))
                    .map_err(|e| ioe(e, format!("removing {n}")))?;
            }
        }
        let mut snapshots = opts.snapshots && matches!(fs, FsKind::Btrfs | FsKind::Zfs);
        let sb0 = Super {
            fs,
            snapshots,
            extent: CSUM_EXTENT as u32,
            split_threshold: opts.split_threshold.max(1),
            inline_xattr_max: opts
                .inline_xattr_max
                .unwrap_or(fs.inline_xattr_max() as u32),
        };
        if let Some(s) = snapshot_ops(&sb0) {
            if let Err(e) = s.create_current(&self.data) {
                if fs == FsKind::Zfs {
                    tracing::warn!(error = %e, "ZFS without a dataset at current/: no snapshot checkpoints");
                    snapshots = false;
                } else {
                    return Err(ioe(e, "creating the current subvolume"));
                }
            }
        }
        if !current.exists() {
            std::fs::create_dir(&current).map_err(|e| ioe(e, "creating current"))?;
        }
        std::fs::create_dir_all(current.join("tmp")).map_err(|e| ioe(e, "creating tmp"))?;
        let kv = RocksDb::open(current.join("kv"), kv_options(true)).map_err(kve)?;
        kv.flush().map_err(kve)?;
        drop(kv);
        let sb = Super { snapshots, ..sb0 };
        let m = Mounted {
            data: self.data.clone(),
            current: current.clone(),
            vfs: self.vfs.clone(),
            kv: RocksDb::open(current.join("kv"), kv_options(true)).map_err(kve)?,
            fs: FsOps::new(fs, 4096),
            snaps: snapshot_ops(&sb),
            sb,
            colls: BTreeMap::new(),
            list_cache: Mutex::new(HashMap::new()),
            committed: u64::MAX,
            epoch: 0,
            onum_counter: 0,
            stage: None,
            staged_now: Vec::new(),
            in_replay: false,
        };
        let mut m = m;
        m.write_seq(0)?;
        let d = sys::open_dir(&current).map_err(|e| ioe(e, "opening current"))?;
        sys::syncfs(&d).map_err(|e| ioe(e, "syncfs"))?;
        if m.snaps.is_some() {
            m.checkpoint(0)?;
        }
        drop(m);
        // The superblock last: until it exists, mount refuses the directory.
        AtomicFileWriter::new(&*self.vfs, self.data.join(SB_FILE), SB_MAGIC)
            .write(&sb.encode())
            .map_err(|e| Error::io(format!("writing {SB_FILE}: {e}")))
    }

    fn mount(&self) -> Result<u64> {
        apply::reset_txn_index();
        let sbb = AtomicFileReader::new(&*self.vfs, self.data.join(SB_FILE), SB_MAGIC)
            .read()
            .map_err(|e| Error::corrupt(format!("reading {SB_FILE}: {e}")))?
            .ok_or_else(|| Error::not_found(format!("{} has no {SB_FILE}", self.data.display())))?;
        let sb = Super::decode(&sbb)?;
        let current = self.data.join("current");
        let snaps = snapshot_ops(&sb);
        if let Some(s) = &snaps {
            // Roll back to the newest complete snapshot: the applied state of the last
            // checkpoint, exactly; the journal replays everything after it.
            let all = s
                .list(&self.data)
                .map_err(|e| ioe(e, "listing snapshots"))?;
            let newest = all
                .iter()
                .filter_map(|n| fsback::snap_seq(n).map(|q| (q, n.clone())))
                .max()
                .ok_or_else(|| {
                    Error::corrupt("snapshot checkpoints are on but there is no snapshot")
                })?;
            s.rollback(&self.data, &newest.1)
                .map_err(|e| ioe(e, format!("rolling back to {}", newest.1)))?;
        }
        let committed = read_seq(&*self.vfs, &current)?;
        let (kind, bs) = FsKind::detect(&current).map_err(|e| ioe(e, "statfs of current"))?;
        if kind != sb.fs {
            tracing::warn!(
                was = sb.fs.name(),
                now = kind.name(),
                "filesystem kind changed since mkfs"
            );
        }
        let kv = RocksDb::open(current.join("kv"), kv_options(false)).map_err(kve)?;
        let epoch = match kv.get(K_EPOCH).map_err(kve)? {
            None => 0,
            Some(b) if b.len() == 8 => {
                let mut a = [0u8; 8];
                a.copy_from_slice(&b);
                u64::from_le_bytes(a)
            }
            Some(_) => return Err(Error::corrupt("mount epoch record is malformed")),
        } + 1;
        let mut eb = WriteBatch::new();
        eb.set(K_EPOCH.to_vec(), epoch.to_le_bytes().to_vec());
        kv.commit(&eb, true).map_err(kve)?;
        // Into an SST at once: object numbers must never repeat, even if the WAL that
        // holds the new epoch is lost or cut later.
        kv.flush_memtables().map_err(kve)?;
        let mut colls = BTreeMap::new();
        for e in std::fs::read_dir(&current).map_err(|e| ioe(e, "listing current"))? {
            let e = e.map_err(|e| ioe(e, "listing current"))?;
            if !e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                continue;
            }
            let n = e.file_name().to_string_lossy().into_owned();
            if let Ok(cid) = n.parse::<CollectionId>() {
                let idx = CollIndex::load(&e.path())
                    .map_err(|e| ioe(e, format!("loading the index of {n}")))?;
                colls.insert(cid, idx);
            }
        }
        std::fs::create_dir_all(current.join("tmp")).map_err(|e| ioe(e, "creating tmp"))?;
        let fs = FsOps::new(sb.fs, bs);
        let area = Arc::new(StageArea::open(&self.data).map_err(|e| ioe(e, "opening staging/"))?);
        let stage_min = lock(registry())
            .get(&self.data)
            .cloned()
            .unwrap_or_default()
            .stage_min_bytes
            .filter(|_| {
                fs.reflink_enabled() && stage::reflink_works(&self.data.join(stage::STAGE_DIR), bs)
            });
        let m = Mounted {
            data: self.data.clone(),
            current,
            vfs: self.vfs.clone(),
            kv,
            fs,
            snaps,
            sb,
            colls,
            list_cache: Mutex::new(HashMap::new()),
            committed,
            epoch,
            onum_counter: 0,
            stage: Some(area.clone()),
            staged_now: Vec::new(),
            in_replay: true,
        };
        if m.snaps.is_none() {
            m.clean_tmp(committed)?;
            m.drop_markers(committed)?;
        } else {
            m.clean_tmp(u64::MAX)?;
        }
        *self.write_state()? = Some(m);
        *self.staging_state()? = Some((area, stage_min));
        Ok(committed)
    }

    fn replay_finished(&self) {
        if let Ok(mut g) = self.write_state() {
            if let Some(m) = g.as_mut() {
                m.in_replay = false;
            }
        }
    }

    fn umount(&self) -> Result<()> {
        self.staging_state()?.take();
        let m = self.write_state()?.take();
        if let Some(m) = m {
            m.kv.flush().map_err(kve)?;
        }
        Ok(())
    }

    fn apply(&self, seq: u64, txn: &Transaction) -> Result<Result<()>> {
        self.apply_staged(seq, txn, &[])
    }

    fn checkpoint(&self, seq: u64) -> Result<()> {
        let mut g = self.write_state()?;
        let m = g
            .as_mut()
            .ok_or_else(|| Error::not_mounted("filestore backend is not mounted"))?;
        m.checkpoint(seq)?;
        if let Some(a) = &m.stage {
            a.release(seq)
                .map_err(|e| ioe(e, "removing staged files a checkpoint covers"))?;
        }
        Ok(())
    }

    fn stage_threshold(&self) -> Option<u64> {
        self.staging.read().ok()?.as_ref()?.1
    }

    fn stage(&self, data: &[u8]) -> Result<u64> {
        self.stage_area()?
            .stage(data)
            .map_err(|e| ioe(e, "staging a large write"))
    }

    fn read_staged(&self, id: u64, len: u64) -> Result<Vec<u8>> {
        let area = self.stage_area()?;
        area.read(id, len).map_err(|e| {
            let what = format!("staged file {}", area.path(id).display());
            match e.kind() {
                // The journal names it, so it must be there, whole.
                io::ErrorKind::NotFound
                | io::ErrorKind::InvalidData
                | io::ErrorKind::UnexpectedEof => Error::corrupt(format!("{what}: {e}")),
                _ => ioe(e, what),
            }
        })
    }

    fn apply_staged(
        &self,
        seq: u64,
        txn: &Transaction,
        staged: &[ostore_os::journaling::Staged],
    ) -> Result<Result<()>> {
        let tidx = apply::next_txn_index(seq);
        let mut g = self.write_state()?;
        let m = g
            .as_mut()
            .ok_or_else(|| Error::not_mounted("filestore backend is not mounted"))?;
        m.staged_now = staged.iter().map(|s| (s.op, s.id)).collect();
        let r = m.apply_txn(
            Pos {
                seq,
                txn: tidx,
                op: 0,
            },
            txn,
        );
        m.staged_now.clear();
        if let Some(a) = &m.stage {
            for s in staged {
                a.linked(seq, s.id);
            }
        }
        r
    }

    fn fsck(&self, deep: bool) -> Result<FsckReport> {
        self.fsck_report(deep)
    }

    fn snapshot_checkpoints(&self) -> bool {
        // Decided by the superblock; before mount, by what mkfs would choose.
        if let Ok(g) = self.read_state() {
            if let Some(m) = &*g {
                return m.snaps.is_some();
            }
        }
        AtomicFileReader::new(&*self.vfs, self.data.join(SB_FILE), SB_MAGIC)
            .read()
            .ok()
            .flatten()
            .and_then(|b| Super::decode(&b).ok())
            .is_some_and(|sb| snapshot_ops(&sb).is_some())
    }

    fn statfs(&self) -> Result<StoreStatfs> {
        self.with(|m| {
            let d = sys::open_dir(&m.current).map_err(|e| ioe(e, "opening current"))?;
            let (total, available) = sys::fs_space(&d).map_err(|e| ioe(e, "statvfs"))?;
            let mut st = StoreStatfs {
                total,
                available,
                collections: m.colls.len() as u64,
                ..Default::default()
            };
            for cid in m.colls.keys() {
                for o in m.list(cid)?.iter() {
                    st.objects += 1;
                    if let Some(f) = m.open_obj(cid, o)? {
                        let md = f.metadata().map_err(|e| ioe(e, "stat"))?;
                        st.data_stored += (md.blocks() * 512).min(md.len());
                    }
                }
            }
            Ok(st)
        })
    }

    fn exists(&self, cid: &CollectionId, oid: &ObjectId) -> Result<bool> {
        self.with(|m| {
            m.need_coll(cid)?;
            Ok(m.open_obj(cid, oid)?.is_some())
        })
    }

    fn stat(&self, cid: &CollectionId, oid: &ObjectId) -> Result<ObjectStat> {
        self.with_obj(cid, oid, |m, f, onum| {
            let md = f.metadata().map_err(|e| ioe(e, "stat"))?;
            m.check_not_cut(&onum, md.len())
                .map_err(|e| e.context(format!("stat of {oid} in {cid}")))?;
            Ok(ObjectStat {
                size: md.len(),
                allocated: md.blocks() * 512,
            })
        })
    }

    fn read(&self, cid: &CollectionId, oid: &ObjectId, off: u64, len: u64) -> Result<Vec<u8>> {
        self.with_obj(cid, oid, |m, f, onum| {
            m.read_verified(&f, &onum, off, len)
                .map_err(|e| e.context(format!("reading {oid} in {cid}")))
        })
    }

    fn fiemap(
        &self,
        cid: &CollectionId,
        oid: &ObjectId,
        off: u64,
        len: u64,
    ) -> Result<BTreeMap<u64, u64>> {
        self.with_obj(cid, oid, |m, f, onum| {
            let size = f.metadata().map_err(|e| ioe(e, "stat"))?.len();
            let end = if len == 0 {
                size
            } else {
                off.saturating_add(len).min(size)
            };
            let mut spans = m.fs.extents(&f, off, end).map_err(|e| ioe(e, "fiemap"))?;
            // An extent whose checksum says it holds data counts as data even where the
            // file has a hole: a hole punched behind the store's back must be read (and
            // fail its checksum), never skipped as zeros by export or a copy.
            let (ks, ke) = oprefix_range(K_CSUM, &onum);
            for (k, _) in
                ostore_kv::collect_range(&m.kv, ostore_kv::KeyRange::new(ks, ke)).map_err(kve)?
            {
                let Some(b) = k.get(17..21) else { continue };
                let s = u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]])) * CSUM_EXTENT;
                let (a, z) = (s.max(off), (s + CSUM_EXTENT).min(end));
                if a < z {
                    spans.push((a, z - a));
                }
            }
            Ok(merge_spans(spans))
        })
    }

    fn getattr(&self, cid: &CollectionId, oid: &ObjectId, name: &str) -> Result<Vec<u8>> {
        self.with_obj(cid, oid, |m, f, onum| {
            if let Some(x) = attr_xattr_name(name) {
                if let Some(v) = xattr::get(&f, &x).map_err(|e| ioe(e, "getxattr"))? {
                    return Ok(v);
                }
            }
            m.kv.get(&okey(K_ATTR, &onum, name.as_bytes()))
                .map_err(kve)?
                .ok_or_else(|| Error::no_data(format!("object {oid} has no attr {name:?}")))
        })
    }

    fn getattrs(&self, cid: &CollectionId, oid: &ObjectId) -> Result<BTreeMap<String, Vec<u8>>> {
        self.with_obj(cid, oid, |m, f, onum| m.attrs_of(&f, &onum))
    }

    fn list_collections(&self) -> Result<Vec<CollectionId>> {
        self.with(|m| Ok(m.colls.keys().copied().collect()))
    }

    fn collection_exists(&self, cid: &CollectionId) -> Result<bool> {
        self.with(|m| Ok(m.colls.contains_key(cid)))
    }

    fn collection_empty(&self, cid: &CollectionId) -> Result<bool> {
        self.with(|m| Ok(m.need_coll(cid)?.total() == 0))
    }

    fn collection_bits(&self, cid: &CollectionId) -> Result<u32> {
        self.with(|m| m.bits_of(cid))
    }

    fn collection_list(
        &self,
        cid: &CollectionId,
        start: &ObjectId,
        end: &ObjectId,
        max: usize,
    ) -> Result<(Vec<ObjectId>, ObjectId)> {
        self.with(|m| {
            let all = m.list(cid)?;
            if start >= end {
                return Ok((Vec::new(), ObjectId::max_sentinel()));
            }
            let from = all.partition_point(|o| o < start);
            let mut out = Vec::new();
            for o in &all[from..] {
                if o >= end {
                    break;
                }
                if out.len() >= max {
                    return Ok((out, o.clone()));
                }
                out.push(o.clone());
            }
            Ok((out, ObjectId::max_sentinel()))
        })
    }

    fn omap_get(&self, cid: &CollectionId, oid: &ObjectId) -> Result<OmapContents> {
        self.with_obj(cid, oid, |m, _, onum| {
            Ok((m.header_of(&onum)?, m.omap_of(&onum)?))
        })
    }

    fn omap_get_header(&self, cid: &CollectionId, oid: &ObjectId) -> Result<Vec<u8>> {
        self.with_obj(cid, oid, |m, _, onum| m.header_of(&onum))
    }

    fn omap_get_keys(&self, cid: &CollectionId, oid: &ObjectId) -> Result<BTreeSet<OmapKey>> {
        self.with_obj(cid, oid, |m, _, onum| {
            Ok(m.omap_of(&onum)?.into_keys().collect())
        })
    }

    fn omap_get_values(
        &self,
        cid: &CollectionId,
        oid: &ObjectId,
        keys: &BTreeSet<OmapKey>,
    ) -> Result<BTreeMap<OmapKey, Vec<u8>>> {
        self.with_obj(cid, oid, |m, _, onum| {
            let ks: Vec<Vec<u8>> = keys.iter().map(|k| okey(K_OMAP, &onum, k)).collect();
            let refs: Vec<&[u8]> = ks.iter().map(Vec::as_slice).collect();
            let vals = m.kv.multi_get(&refs).map_err(kve)?;
            Ok(keys
                .iter()
                .zip(vals)
                .filter_map(|(k, v)| v.map(|v| (k.clone(), v)))
                .collect())
        })
    }

    fn omap_check_keys(
        &self,
        cid: &CollectionId,
        oid: &ObjectId,
        keys: &BTreeSet<OmapKey>,
    ) -> Result<BTreeSet<OmapKey>> {
        Ok(self.omap_get_values(cid, oid, keys)?.into_keys().collect())
    }

    fn omap_iterator(
        &self,
        cid: &CollectionId,
        oid: &ObjectId,
    ) -> Result<Box<dyn OmapIterator + Send>> {
        self.with_obj(cid, oid, |m, _, onum| {
            let entries = m.omap_of(&onum)?.into_iter().collect();
            Ok(Box::new(SnapshotOmapIterator::new(entries)) as Box<dyn OmapIterator + Send>)
        })
    }
}

/// Maps an error kind to the errno stored in a rejection marker and back.
pub(crate) fn kind_from_errno(e: i32) -> ErrorKind {
    ErrorKind::from_errno(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn superblock_round_trip_and_corruption() {
        let sb = Super {
            fs: FsKind::Xfs,
            snapshots: false,
            extent: CSUM_EXTENT as u32,
            split_threshold: 320,
            inline_xattr_max: 65536,
        };
        assert_eq!(Super::decode(&sb.encode()).unwrap(), sb);
        let b = sb.encode();
        for n in 0..b.len() {
            assert!(Super::decode(&b[..n]).is_err());
        }
        let mut bad = b.clone();
        bad[4] = 9;
        assert!(Super::decode(&bad).is_err());
    }

    #[test]
    fn spans_merge_when_they_touch_or_overlap() {
        let m = merge_spans(vec![(10, 5), (0, 4), (4, 2), (12, 10), (30, 0), (40, 1)]);
        assert_eq!(
            m.into_iter().collect::<Vec<_>>(),
            vec![(0, 6), (10, 12), (40, 1)]
        );
        assert!(merge_spans(Vec::new()).is_empty());
    }

    #[test]
    fn extent_crc_pads_with_zeros() {
        assert_eq!(extent_crc(&[]), zero_extent_crc());
        assert_eq!(extent_crc(&[0; 100]), zero_extent_crc());
        assert_ne!(extent_crc(&[1]), zero_extent_crc());
    }
}
