//! The in-memory engine: a `BTreeMap` behind a lock, for fast tests of everything above the
//! trait. By itself nothing is durable and `sync` and `flush` only go through the fail-stop
//! gate; [`MemoryDb::persistent`] gives it a durable image instead: every synced commit and
//! every flush hands the whole map, encoded ([`encode_image`]), to a save function (the
//! KeyValueStore writes it as an atomic file through its I/O layer, so the store runs on the
//! simulated disk and its crash states). Commits in between are lost by a crash, as
//! RocksDB's are with its WAL off.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::batch::{BatchOp, WriteBatch};
use crate::error::{Error, Result, WriteGate};
use crate::range::KeyRange;
use crate::{KeyValueDB, KvIterator, KvRead, KvSnapshot};

// Values are shared so that copying the map for copy-on-write costs keys and refcounts, not
// value bytes (8 MiB values are in the test suite).
type Map = BTreeMap<Vec<u8>, Arc<[u8]>>;

/// The in-memory engine. Clones are handles on the same database.
///
/// Snapshots and iterators hold an `Arc` of the map; a commit while one is alive copies the map
/// (copy-on-write), which is O(keys) but keeps reads lock-free and views exactly consistent.
#[derive(Debug, Clone, Default)]
pub struct MemoryDb {
    inner: Arc<Inner>,
}

/// Makes an encoded image durable (see [`MemoryDb::persistent`]); the error is reported as
/// an I/O failure, which poisons the database.
pub type SaveImage = Box<dyn Fn(&[u8]) -> std::result::Result<(), String> + Send + Sync>;

#[derive(Default)]
struct Inner {
    map: RwLock<Arc<Map>>,
    gate: WriteGate,
    fail_next_sync: AtomicBool,
    save: Option<SaveImage>,
    /// Held while an image is taken and saved, so two saves never land out of order (an
    /// older image over a newer, synced one).
    saving: std::sync::Mutex<()>,
    /// Also save after every this many commits (0: never), as RocksDB flushes a full
    /// memtable on its own: the durable image then runs ahead of the caller's flushes.
    autosave_every: u64,
    commits: AtomicU64,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("gate", &self.gate)
            .field("persistent", &self.save.is_some())
            .finish_non_exhaustive()
    }
}

const IMAGE_MAGIC: &[u8; 8] = b"OSMEMDB\0";
const IMAGE_VERSION: u32 = 1;

/// The image of a map: magic `OSMEMDB\0`, version (u32 LE), key count (u64 LE), then per key
/// in order: key length (u32 LE), key, value length (u32 LE), value. No checksum of its own:
/// the file that holds it carries one.
pub fn encode_image(map: &Map) -> Vec<u8> {
    let bytes: usize = map.iter().map(|(k, v)| 8 + k.len() + v.len()).sum();
    let mut b = Vec::with_capacity(20 + bytes);
    b.extend_from_slice(IMAGE_MAGIC);
    b.extend_from_slice(&IMAGE_VERSION.to_le_bytes());
    b.extend_from_slice(&(map.len() as u64).to_le_bytes());
    for (k, v) in map {
        b.extend_from_slice(&(k.len() as u32).to_le_bytes());
        b.extend_from_slice(k);
        b.extend_from_slice(&(v.len() as u32).to_le_bytes());
        b.extend_from_slice(v);
    }
    b
}

/// Decodes [`encode_image`]'s output; any inconsistency is [`Error::Corruption`].
pub fn decode_image(b: &[u8]) -> Result<Map> {
    let bad = |why: &str| Error::Corruption(format!("in-memory database image: {why}"));
    let mut r = b;
    let mut take = |n: usize, what: &str| -> Result<&[u8]> {
        if r.len() < n {
            return Err(bad(&format!("truncated in {what}")));
        }
        let (h, t) = r.split_at(n);
        r = t;
        Ok(h)
    };
    if take(8, "magic")? != IMAGE_MAGIC {
        return Err(bad("bad magic"));
    }
    let u32_at = |x: &[u8]| u32::from_le_bytes([x[0], x[1], x[2], x[3]]);
    let version = u32_at(take(4, "version")?);
    if version != IMAGE_VERSION {
        return Err(bad(&format!("unknown version {version}")));
    }
    let c = take(8, "count")?;
    let count = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
    let mut map = BTreeMap::new();
    for _ in 0..count {
        let kl = u32_at(take(4, "key length")?) as usize;
        let k = take(kl, "key")?.to_vec();
        let vl = u32_at(take(4, "value length")?) as usize;
        let v: Arc<[u8]> = Arc::from(take(vl, "value")?);
        if map
            .keys()
            .next_back()
            .is_some_and(|last: &Vec<u8>| *last >= k)
        {
            return Err(bad("keys out of order"));
        }
        map.insert(k, v);
    }
    if !r.is_empty() {
        return Err(bad("trailing bytes"));
    }
    Ok(map)
}

impl MemoryDb {
    pub fn new() -> Self {
        Self::default()
    }

    /// A database starting from `image` (an [`encode_image`] output; `None`: empty) that
    /// hands its whole image to `save` on every synced commit, every flush, and after
    /// every `autosave_every`-th commit (0: never).
    pub fn persistent(image: Option<&[u8]>, save: SaveImage, autosave_every: u64) -> Result<Self> {
        let map = image.map(decode_image).transpose()?.unwrap_or_default();
        Ok(MemoryDb {
            inner: Arc::new(Inner {
                map: RwLock::new(Arc::new(map)),
                save: Some(save),
                autosave_every,
                ..Inner::default()
            }),
        })
    }

    /// Makes the current map durable, if this database is persistent. A failure poisons it.
    fn save(&self) -> Result<()> {
        let Some(save) = &self.inner.save else {
            return Ok(());
        };
        let _one = self.inner.saving.lock().unwrap_or_else(|e| e.into_inner());
        let image = encode_image(&self.view());
        save(&image).map_err(|e| self.inner.gate.poison(Error::Io(e)))
    }

    /// Fault injection for tests: the next synced commit or flush fails as a failed fsync would,
    /// without applying its batch, and poisons the handle.
    pub fn inject_sync_failure(&self) {
        self.inner.fail_next_sync.store(true, Ordering::SeqCst);
    }

    fn view(&self) -> Arc<Map> {
        // A poisoned lock only means a panic elsewhere while holding it; the map itself is
        // always whole because commits mutate it only after validation, without panicking paths.
        Arc::clone(&self.inner.map.read().unwrap_or_else(|e| e.into_inner()))
    }

    fn injected_failure(&self) -> Result<()> {
        if self.inner.fail_next_sync.swap(false, Ordering::SeqCst) {
            return Err(self
                .inner
                .gate
                .poison(Error::Io("injected sync failure".into())));
        }
        Ok(())
    }
}

impl KvRead for MemoryDb {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        get_in(&self.view(), key)
    }

    fn multi_get(&self, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>> {
        let map = self.view();
        keys.iter().map(|k| get_in(&map, k)).collect()
    }

    fn iter(&self, range: KeyRange) -> Result<Box<dyn KvIterator + '_>> {
        Ok(Box::new(MemIter::new(self.view(), range)))
    }
}

impl KeyValueDB for MemoryDb {
    fn commit(&self, batch: &WriteBatch, sync: bool) -> Result<()> {
        self.inner.gate.check()?;
        batch.validate()?;
        if sync {
            self.injected_failure()?;
        }
        let mut guard = self.inner.map.write().unwrap_or_else(|e| e.into_inner());
        let map = Arc::make_mut(&mut guard);
        for op in batch.ops() {
            match op {
                BatchOp::Set { key, value } => {
                    map.insert(key.clone(), Arc::from(value.as_slice()));
                }
                BatchOp::Remove { key } => {
                    map.remove(key);
                }
                BatchOp::RemoveRange { start, end } => {
                    for k in crate::keys_in_range(map, start, end) {
                        map.remove(&k);
                    }
                }
            }
        }
        drop(guard);
        let n = self.inner.commits.fetch_add(1, Ordering::SeqCst) + 1;
        let auto = self.inner.autosave_every > 0 && n.is_multiple_of(self.inner.autosave_every);
        if sync || auto {
            self.save()?;
        }
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        self.inner.gate.check()?;
        self.injected_failure()?;
        self.save()
    }

    fn snapshot(&self) -> Result<Arc<dyn KvSnapshot>> {
        Ok(Arc::new(MemSnapshot { map: self.view() }))
    }

    fn is_poisoned(&self) -> bool {
        self.inner.gate.is_poisoned()
    }
}

fn get_in(map: &Map, key: &[u8]) -> Result<Option<Vec<u8>>> {
    Ok(map.get(key).map(|v| v.to_vec()))
}

#[derive(Debug)]
struct MemSnapshot {
    map: Arc<Map>,
}

impl KvRead for MemSnapshot {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        get_in(&self.map, key)
    }

    fn multi_get(&self, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>> {
        keys.iter().map(|k| get_in(&self.map, k)).collect()
    }

    fn iter(&self, range: KeyRange) -> Result<Box<dyn KvIterator + '_>> {
        Ok(Box::new(MemIter::new(Arc::clone(&self.map), range)))
    }
}

impl KvSnapshot for MemSnapshot {}

struct MemIter {
    map: Arc<Map>,
    range: KeyRange,
    current: Option<(Vec<u8>, Arc<[u8]>)>,
}

impl MemIter {
    fn new(map: Arc<Map>, range: KeyRange) -> Self {
        Self {
            map,
            range,
            current: None,
        }
    }

    fn position(&mut self, start: Bound<&[u8]>) {
        let upper = self.range.upper.as_deref();
        // BTreeMap::range panics on an inverted range, so rule that out here.
        let empty = match (start, upper) {
            (_, None) | (Bound::Unbounded, _) => false,
            (Bound::Included(s), Some(u)) | (Bound::Excluded(s), Some(u)) => s >= u,
        };
        self.current = if empty {
            None
        } else {
            let end = upper.map_or(Bound::Unbounded, Bound::Excluded);
            self.map
                .range::<[u8], _>((start, end))
                .next()
                .map(|(k, v)| (k.clone(), Arc::clone(v)))
        };
    }
}

impl KvIterator for MemIter {
    fn seek_to_first(&mut self) -> Result<()> {
        let lower = self.range.lower.clone();
        self.position(lower.as_deref().map_or(Bound::Unbounded, Bound::Included));
        Ok(())
    }

    fn seek(&mut self, key: &[u8]) -> Result<()> {
        let key = self.range.clamp_seek(key).to_vec();
        self.position(Bound::Included(&key));
        Ok(())
    }

    fn next(&mut self) -> Result<()> {
        if let Some((key, _)) = self.current.take() {
            self.position(Bound::Excluded(&key));
        }
        Ok(())
    }

    fn current(&self) -> Option<(&[u8], &[u8])> {
        self.current.as_ref().map(|(k, v)| (k.as_slice(), &**v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn sample() -> Map {
        let mut m = Map::new();
        m.insert(Vec::new(), Arc::from(&b""[..]));
        m.insert(b"a".to_vec(), Arc::from(&b"1"[..]));
        m.insert(vec![0xff; 300], Arc::from(vec![7u8; 70_000].as_slice()));
        m
    }

    #[test]
    fn image_round_trips_and_rejects_damage() {
        let m = sample();
        let img = encode_image(&m);
        assert_eq!(decode_image(&img).unwrap(), m);
        assert_eq!(
            decode_image(&encode_image(&Map::new())).unwrap(),
            Map::new()
        );
        // Every truncation and a flipped magic, version or length is refused, never
        // decoded into a different map.
        for n in 0..img.len() {
            assert!(decode_image(&img[..n]).is_err(), "truncated at {n}");
        }
        for at in [0, 8, 12, 20, 24] {
            let mut b = img.clone();
            b[at] ^= 0x40;
            assert!(
                decode_image(&b).map_or(true, |d| d != m),
                "flip at {at} decoded silently"
            );
        }
        let mut long = img.clone();
        long.push(0);
        assert!(matches!(decode_image(&long), Err(Error::Corruption(_))));
    }

    #[test]
    fn a_persistent_db_saves_on_sync_and_flush_and_fails_stop() {
        let saved: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let fail = Arc::new(AtomicBool::new(false));
        let (s, f) = (saved.clone(), fail.clone());
        let db = MemoryDb::persistent(
            None,
            Box::new(move |b| {
                if f.load(Ordering::SeqCst) {
                    return Err("disk full".into());
                }
                s.lock().unwrap().push(b.to_vec());
                Ok(())
            }),
            3,
        )
        .unwrap();
        let mut b = WriteBatch::new();
        b.set(b"k".to_vec(), b"v".to_vec());
        db.commit(&b, false).unwrap();
        assert!(saved.lock().unwrap().is_empty(), "unsynced commit saved");
        db.flush().unwrap();
        let img = saved.lock().unwrap().last().cloned().unwrap();
        let reopened = MemoryDb::persistent(Some(&img), Box::new(|_| Ok(())), 0).unwrap();
        assert_eq!(reopened.get(b"k").unwrap(), Some(b"v".to_vec()));
        let mut b = WriteBatch::new();
        b.remove(b"k".to_vec());
        db.commit(&b, true).unwrap();
        assert_eq!(saved.lock().unwrap().len(), 2, "synced commit not saved");
        // The third commit saves on its own (autosave every 3).
        db.commit(&WriteBatch::new(), false).unwrap();
        assert_eq!(saved.lock().unwrap().len(), 3, "autosave did not run");
        fail.store(true, Ordering::SeqCst);
        assert!(db.flush().is_err());
        assert!(db.is_poisoned());
        assert!(db.commit(&WriteBatch::new(), false).is_err());
    }
}
