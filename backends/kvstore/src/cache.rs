//! A cache of the small records every operation looks up first: object headers
//! (`P_OBJ`) and collection records (`P_COLL`), present or known absent. Without it a
//! 4 KiB overwrite read the same header from RocksDB three times (the state checks,
//! the op, the collection), and a read twice; Ceph's BlueStore keeps its onodes in a
//! cache for the same reason.
//!
//! Coherence rests on the store's two locks: only applies write these records, and
//! they are serialized and commit under the exclusive commit lock, while reads run
//! under the shared one. So a value read from the database and filled in here is the
//! committed one as long as the filler holds either lock, and [`MetaCache::note_batch`],
//! called under the exclusive lock after a batch commits, is the only other change.
//! A failed commit clears the cache (the store fails stop anyway).

use std::collections::BTreeMap;
use std::sync::Mutex;

use ostore_kv::{keys_in_range, BatchOp, KeyRange, KvIterator, KvRead, WriteBatch};

use crate::layout::{P_COLL, P_OBJ};

/// Entries kept (an entry is an object key of ~40-100 bytes and a 30-byte header):
/// a few MiB, enough for the hot objects of a placement group's worth of clients.
pub const META_CACHE_ENTRIES: usize = 1 << 16;

fn cacheable(k: &[u8]) -> bool {
    matches!(k.first(), Some(&P_OBJ) | Some(&P_COLL))
}

#[derive(Debug)]
pub struct MetaCache {
    cap: usize,
    map: Mutex<BTreeMap<Vec<u8>, Option<Vec<u8>>>>,
}

impl MetaCache {
    pub fn new(cap: usize) -> Self {
        MetaCache {
            cap: cap.max(1),
            map: Mutex::new(BTreeMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Vec<u8>, Option<Vec<u8>>>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `Some(value or None)` on a hit.
    fn lookup(&self, k: &[u8]) -> Option<Option<Vec<u8>>> {
        self.lock().get(k).cloned()
    }

    fn insert(
        map: &mut BTreeMap<Vec<u8>, Option<Vec<u8>>>,
        cap: usize,
        k: Vec<u8>,
        v: Option<Vec<u8>>,
    ) {
        if map.len() >= cap && !map.contains_key(&k) {
            // Not LRU: dropping the lowest key is O(log n) and keeps the cache bounded;
            // a miss only costs the database lookup the cache saves.
            map.pop_first();
        }
        map.insert(k, v);
    }

    fn fill(&self, k: &[u8], v: &Option<Vec<u8>>) {
        Self::insert(&mut self.lock(), self.cap, k.to_vec(), v.clone());
    }

    /// Brings the cache up to date with a batch that just committed.
    pub fn note_batch(&self, b: &WriteBatch) {
        let mut map = self.lock();
        for op in b.ops() {
            match op {
                BatchOp::Set { key, value } if cacheable(key) => {
                    Self::insert(&mut map, self.cap, key.clone(), Some(value.clone()));
                }
                BatchOp::Remove { key } if cacheable(key) => {
                    Self::insert(&mut map, self.cap, key.clone(), None);
                }
                BatchOp::RemoveRange { start, end } => {
                    for k in keys_in_range(&map, start, end) {
                        // Known absent now.
                        map.insert(k, None);
                    }
                }
                _ => {}
            }
        }
    }

    pub fn clear(&self) {
        self.lock().clear();
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The database seen through the cache: point lookups of headers and collection
/// records are served from it (and fill it); everything else goes to the database.
/// Only for callers holding the apply lock or the shared commit lock (module docs).
pub struct Cached<'a> {
    pub db: &'a dyn KvRead,
    pub cache: &'a MetaCache,
}

impl std::fmt::Debug for Cached<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cached")
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

impl KvRead for Cached<'_> {
    fn get(&self, key: &[u8]) -> ostore_kv::Result<Option<Vec<u8>>> {
        if !cacheable(key) {
            return self.db.get(key);
        }
        if let Some(hit) = self.cache.lookup(key) {
            return Ok(hit);
        }
        let v = self.db.get(key)?;
        self.cache.fill(key, &v);
        Ok(v)
    }

    fn multi_get(&self, keys: &[&[u8]]) -> ostore_kv::Result<Vec<Option<Vec<u8>>>> {
        self.db.multi_get(keys)
    }

    fn iter(&self, range: KeyRange) -> ostore_kv::Result<Box<dyn KvIterator + '_>> {
        self.db.iter(range)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ostore_kv::{KeyValueDB, MemoryDb};

    fn commit(db: &MemoryDb, c: &MetaCache, b: &WriteBatch) {
        db.commit(b, false).unwrap();
        c.note_batch(b);
    }

    #[test]
    fn serves_what_the_database_holds_after_every_kind_of_change() {
        let db = MemoryDb::new();
        let c = MetaCache::new(8);
        let view = Cached { db: &db, cache: &c };
        let (o1, o2, d1) = (b"Oa1".to_vec(), b"Oa2".to_vec(), b"Da1".to_vec());
        assert_eq!(view.get(&o1).unwrap(), None);
        // The absence is cached, and a set that commits replaces it.
        assert_eq!(c.len(), 1);
        let mut b = WriteBatch::new();
        b.set(o1.clone(), b"h1".to_vec())
            .set(o2.clone(), b"h2".to_vec())
            .set(d1.clone(), b"data".to_vec());
        commit(&db, &c, &b);
        assert_eq!(view.get(&o1).unwrap(), Some(b"h1".to_vec()));
        assert_eq!(view.get(&d1).unwrap(), Some(b"data".to_vec()));
        // Data records are never cached.
        assert_eq!(c.len(), 2);
        let mut b = WriteBatch::new();
        b.remove(o1.clone());
        commit(&db, &c, &b);
        assert_eq!(view.get(&o1).unwrap(), None);
        let mut b = WriteBatch::new();
        b.remove_range(b"O".to_vec(), b"P".to_vec());
        commit(&db, &c, &b);
        assert_eq!(view.get(&o2).unwrap(), None);
        // Set after a range remove in the same batch wins, as in the database.
        let mut b = WriteBatch::new();
        b.remove_range(b"O".to_vec(), b"P".to_vec())
            .set(o2.clone(), b"h2b".to_vec());
        commit(&db, &c, &b);
        assert_eq!(view.get(&o2).unwrap(), db.get(&o2).unwrap());
        assert_eq!(view.get(&o2).unwrap(), Some(b"h2b".to_vec()));
    }

    #[test]
    fn stays_within_its_capacity() {
        let db = MemoryDb::new();
        let c = MetaCache::new(4);
        let view = Cached { db: &db, cache: &c };
        let mut b = WriteBatch::new();
        for i in 0..10u8 {
            b.set(vec![P_OBJ, i], vec![i]);
        }
        commit(&db, &c, &b);
        assert_eq!(c.len(), 4);
        for i in 0..10u8 {
            assert_eq!(view.get(&[P_OBJ, i]).unwrap(), Some(vec![i]));
            assert!(c.len() <= 4);
        }
        c.clear();
        assert!(c.is_empty());
    }
}
