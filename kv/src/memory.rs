//! The in-memory engine: a `BTreeMap` behind a lock, for fast tests of everything above the
//! trait. Nothing is durable; `sync` and `flush` only go through the fail-stop gate.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, Ordering};
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

#[derive(Debug, Default)]
struct Inner {
    map: RwLock<Arc<Map>>,
    gate: WriteGate,
    fail_next_sync: AtomicBool,
}

impl MemoryDb {
    pub fn new() -> Self {
        Self::default()
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
                    if start < end {
                        let doomed: Vec<Vec<u8>> = map
                            .range::<[u8], _>((
                                Bound::Included(start.as_slice()),
                                Bound::Excluded(end.as_slice()),
                            ))
                            .map(|(k, _)| k.clone())
                            .collect();
                        for k in doomed {
                            map.remove(&k);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        self.inner.gate.check()?;
        self.injected_failure()
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
