//! Quarantine and scrub: what a journaled store does with objects whose checksums
//! failed, and the background scrubber that looks for them.
//!
//! Every read of an object (data, attrs, omap) that a backend reports as
//! [`ErrorKind::Corrupt`] quarantines the object: it is added to the store's quarantine
//! list, which is kept in the data directory (file `quarantine`, written atomically) so
//! it survives restarts, and counted. `fsck` reports every quarantined object as an
//! error; `repair` re-verifies each one and releases those that read clean again (the
//! object was rewritten or removed since). Reads of a quarantined object still go to
//! the backend: a checksum failure is returned as an error, never as data, so nothing
//! wrong is ever served either way.
//!
//! The scrubber (like Swift's object auditor) is a background thread that walks every
//! collection and object and reads all of it, at a configured byte rate
//! ([`ScrubOptions`]); off unless configured.
//!
//! File format (`quarantine`): a [`crate::codec`] frame, magic `OSQU`, version 1;
//! payload `u32 n`, then `n` × (collection, object, `str` reason), the collection and
//! object in the transaction encoding.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use ostore_journal::Vfs;

use crate::codec::{frame, unframe, Decoder, Encoder};
use crate::error::{Error, ErrorKind, Result};
use crate::ids::{CollectionId, ObjectId};
use crate::superblock::{read_file, write_file_atomic};
use crate::transaction::{decode_collection, decode_object, encode_collection, encode_object};

const MAGIC: [u8; 4] = *b"OSQU";
const VERSION: u8 = 1;
/// The quarantine list's file in the data directory.
pub const FILE_NAME: &str = "quarantine";

/// How the background scrubber runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScrubOptions {
    /// Bytes read per second, at most (0: no scrubber).
    pub bytes_per_sec: u64,
    /// Pause between two passes over the whole store.
    pub pass_interval: Duration,
}

impl Default for ScrubOptions {
    fn default() -> ScrubOptions {
        ScrubOptions {
            bytes_per_sec: 0,
            pass_interval: Duration::from_secs(24 * 3600),
        }
    }
}

/// Counters of the scrubber and of checksum failures seen by reads.
#[derive(Debug, Default)]
pub struct ScrubCounters {
    pub passes: AtomicU64,
    pub objects: AtomicU64,
    pub bytes: AtomicU64,
    /// Checksum failures seen, by the scrubber or by client reads.
    pub checksum_errors: AtomicU64,
}

/// A snapshot of [`ScrubCounters`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ScrubStats {
    pub passes: u64,
    pub objects: u64,
    pub bytes: u64,
    pub checksum_errors: u64,
    pub quarantined: u64,
}

/// The quarantine list of one store.
#[derive(Debug, Default)]
pub struct Quarantine {
    list: Mutex<BTreeMap<(CollectionId, ObjectId), String>>,
    pub counters: ScrubCounters,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Quarantine {
    /// Reads the list kept in `dir` (empty when there is none).
    pub fn load(vfs: &dyn Vfs, dir: &Path) -> Result<Quarantine> {
        let q = Quarantine::default();
        let path = dir.join(FILE_NAME);
        let buf = match read_file(vfs, &path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(q),
            Err(e) => return Err(Error::from(e).context(format!("reading {}", path.display()))),
        };
        *lock(&q.list) = decode(&buf).map_err(|e| e.context(format!("{}", path.display())))?;
        Ok(q)
    }

    /// Adds an object; returns whether it was new. The caller persists the list.
    pub fn add(&self, cid: &CollectionId, oid: &ObjectId, reason: &str) -> bool {
        self.counters
            .checksum_errors
            .fetch_add(1, Ordering::Relaxed);
        lock(&self.list)
            .insert((*cid, oid.clone()), reason.to_string())
            .is_none()
    }

    pub fn remove(&self, cid: &CollectionId, oid: &ObjectId) -> bool {
        lock(&self.list).remove(&(*cid, oid.clone())).is_some()
    }

    pub fn entries(&self) -> Vec<(CollectionId, ObjectId, String)> {
        lock(&self.list)
            .iter()
            .map(|((c, o), r)| (*c, o.clone(), r.clone()))
            .collect()
    }

    pub fn len(&self) -> usize {
        lock(&self.list).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes the list to `dir` atomically.
    pub fn save(&self, vfs: &dyn Vfs, dir: &Path) -> Result<()> {
        let bytes = encode(&lock(&self.list));
        write_file_atomic(vfs, &dir.join(FILE_NAME), &bytes)
    }

    pub fn stats(&self) -> ScrubStats {
        let c = &self.counters;
        ScrubStats {
            passes: c.passes.load(Ordering::Relaxed),
            objects: c.objects.load(Ordering::Relaxed),
            bytes: c.bytes.load(Ordering::Relaxed),
            checksum_errors: c.checksum_errors.load(Ordering::Relaxed),
            quarantined: self.len() as u64,
        }
    }
}

fn encode(list: &BTreeMap<(CollectionId, ObjectId), String>) -> Vec<u8> {
    let mut e = Encoder::new();
    e.u32(list.len() as u32);
    for ((c, o), r) in list {
        encode_collection(&mut e, c);
        encode_object(&mut e, o);
        e.str(r);
    }
    frame(MAGIC, VERSION, VERSION, &e.into_inner())
}

fn decode(buf: &[u8]) -> Result<BTreeMap<(CollectionId, ObjectId), String>> {
    let f = unframe(MAGIC, VERSION, buf, "quarantine list")?;
    let mut d = Decoder::new(f.payload);
    let n = d.count(8, "quarantine entries")?;
    let mut out = BTreeMap::new();
    for _ in 0..n {
        let c = decode_collection(&mut d)?;
        let o = decode_object(&mut d)?;
        let r = d.string("quarantine reason")?;
        out.insert((c, o), r);
    }
    if d.remaining() != 0 {
        return Err(Error::corrupt(format!(
            "quarantine list has {} trailing bytes",
            d.remaining()
        )));
    }
    Ok(out)
}

/// Whether an error is a checksum failure that quarantines the object it was about.
pub fn is_corruption(e: &Error) -> bool {
    e.kind() == ErrorKind::Corrupt
}

/// Sleeps so that `bytes` read since `start` keep under `rate` bytes/s, waking early
/// when `stop` says so. Returns false when stopped.
pub fn pace(start: std::time::Instant, bytes: u64, rate: u64, stop: &dyn Fn() -> bool) -> bool {
    if rate == 0 {
        return !stop();
    }
    let due = Duration::from_secs_f64(bytes as f64 / rate as f64);
    loop {
        if stop() {
            return false;
        }
        let el = start.elapsed();
        if el >= due {
            return true;
        }
        std::thread::sleep((due - el).min(Duration::from_millis(50)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::PgId;

    fn sample() -> BTreeMap<(CollectionId, ObjectId), String> {
        let mut m = BTreeMap::new();
        m.insert(
            (CollectionId::pg(1, 2), ObjectId::new(1, "a/b\0c")),
            "strip 3 checksum".to_string(),
        );
        m.insert(
            (CollectionId::Temp(PgId::new(4, 5)), ObjectId::new(4, "")),
            String::new(),
        );
        m
    }

    #[test]
    fn the_list_round_trips() {
        let m = sample();
        assert_eq!(decode(&encode(&m)).unwrap(), m);
        assert!(decode(&encode(&BTreeMap::new())).unwrap().is_empty());
    }

    #[test]
    fn every_flipped_bit_is_refused() {
        let buf = encode(&sample());
        for i in 0..buf.len() * 8 {
            let mut b = buf.clone();
            b[i / 8] ^= 1 << (i % 8);
            assert!(decode(&b).is_err(), "flip of bit {i} accepted");
        }
        for n in 0..buf.len() {
            assert!(decode(&buf[..n]).is_err(), "truncation to {n} accepted");
        }
    }
}
