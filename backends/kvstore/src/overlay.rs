//! The uncommitted writes of one transaction, layered over the database, so later ops of
//! the same transaction read what earlier ones wrote; at the end the overlay becomes
//! one atomic [`WriteBatch`].
//!
//! Range removes are kept as ranges (a removed object's strips are never read back one
//! by one): reads below a pending range delete see nothing, writes after it win.

use std::collections::BTreeMap;
use std::ops::Bound;

use ostore_kv::{KeyRange, KvRead, WriteBatch};
use ostore_os::Result;

use crate::kve;

pub struct Overlay<'a> {
    /// What the transaction started from.
    db: &'a dyn KvRead,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    ranges: Vec<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for Overlay<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Overlay")
            .field("writes", &self.writes.len())
            .field("ranges", &self.ranges.len())
            .finish_non_exhaustive()
    }
}

impl<'a> Overlay<'a> {
    pub fn new(db: &'a dyn KvRead) -> Self {
        Overlay {
            db,
            writes: BTreeMap::new(),
            ranges: Vec::new(),
        }
    }

    fn range_removed(&self, k: &[u8]) -> bool {
        self.ranges
            .iter()
            .any(|(lo, hi)| k >= lo.as_slice() && k < hi.as_slice())
    }

    pub fn get(&self, k: &[u8]) -> Result<Option<Vec<u8>>> {
        if let Some(v) = self.writes.get(k) {
            return Ok(v.clone());
        }
        if self.range_removed(k) {
            return Ok(None);
        }
        self.db.get(k).map_err(kve)
    }

    pub fn set(&mut self, k: Vec<u8>, v: Vec<u8>) {
        self.writes.insert(k, Some(v));
    }

    pub fn remove(&mut self, k: Vec<u8>) {
        self.writes.insert(k, None);
    }

    pub fn remove_range(&mut self, lo: Vec<u8>, hi: Vec<u8>) {
        if lo >= hi {
            return;
        }
        for k in ostore_kv::keys_in_range(&self.writes, &lo, &hi) {
            self.writes.remove(&k);
        }
        self.ranges.push((lo, hi));
    }

    /// Every live key and value in [lo, hi), in order, at most `limit` of them.
    pub fn scan(&self, lo: &[u8], hi: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        if lo >= hi || limit == 0 {
            return Ok(out);
        }
        let mut pending = self
            .writes
            .range::<[u8], _>((Bound::Included(lo), Bound::Excluded(hi)))
            .peekable();
        let mut it = self
            .db
            .iter(KeyRange::new(lo.to_vec(), hi.to_vec()))
            .map_err(kve)?;
        it.seek_to_first().map_err(kve)?;
        loop {
            if out.len() >= limit {
                break;
            }
            let db_cur = it.current().map(|(k, v)| (k.to_vec(), v.to_vec()));
            let take_pending = match (&db_cur, pending.peek()) {
                (None, None) => break,
                (None, Some(_)) => true,
                (Some(_), None) => false,
                (Some((dk, _)), Some((pk, _))) => pk.as_slice() <= dk.as_slice(),
            };
            if take_pending {
                let (pk, pv) = pending.next().expect("peeked");
                if let Some((dk, _)) = &db_cur {
                    if dk == pk {
                        it.next().map_err(kve)?;
                    }
                }
                if let Some(v) = pv {
                    out.push((pk.clone(), v.clone()));
                }
            } else {
                let (dk, dv) = db_cur.expect("checked");
                it.next().map_err(kve)?;
                if !self.range_removed(&dk) {
                    out.push((dk, dv));
                }
            }
        }
        Ok(out)
    }

    /// The batch that makes all of this durable: range removes first (later writes
    /// inside them were recorded after them), then point writes.
    pub fn into_batch(self) -> WriteBatch {
        let mut b = WriteBatch::new();
        for (lo, hi) in self.ranges {
            b.remove_range(lo, hi);
        }
        for (k, v) in self.writes {
            match v {
                Some(v) => b.set(k, v),
                None => b.remove(k),
            };
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ostore_kv::{KeyValueDB, MemoryDb};

    #[test]
    fn reads_see_earlier_writes_and_range_removes() {
        let db = MemoryDb::new();
        let mut b = WriteBatch::new();
        for k in [b"a1", b"a2", b"a3", b"b1"] {
            b.set(k.to_vec(), k.to_vec());
        }
        db.commit(&b, false).unwrap();
        let mut o = Overlay::new(&db);
        o.set(b"a25".to_vec(), b"x".to_vec());
        o.remove(b"a1".to_vec());
        assert_eq!(o.get(b"a1").unwrap(), None);
        assert_eq!(o.get(b"a2").unwrap(), Some(b"a2".to_vec()));
        let keys = |o: &Overlay<'_>| -> Vec<Vec<u8>> {
            o.scan(b"a", b"b", usize::MAX)
                .unwrap()
                .into_iter()
                .map(|(k, _)| k)
                .collect()
        };
        assert_eq!(
            keys(&o),
            vec![b"a2".to_vec(), b"a25".to_vec(), b"a3".to_vec()]
        );
        o.remove_range(b"a2".to_vec(), b"a3".to_vec());
        assert_eq!(keys(&o), vec![b"a3".to_vec()]);
        o.set(b"a2".to_vec(), b"new".to_vec());
        assert_eq!(o.get(b"a2").unwrap(), Some(b"new".to_vec()));
        assert_eq!(o.get(b"a25").unwrap(), None);
        assert_eq!(o.scan(b"a", b"z", 2).unwrap().len(), 2);
        let batch = o.into_batch();
        db.commit(&batch, false).unwrap();
        let all = ostore_kv::collect_range(&db, KeyRange::all()).unwrap();
        let ks: Vec<&[u8]> = all.iter().map(|(k, _)| k.as_slice()).collect();
        assert_eq!(ks, vec![&b"a2"[..], b"a3", b"b1"]);
        assert_eq!(db.get(b"a2").unwrap(), Some(b"new".to_vec()));
    }
}
