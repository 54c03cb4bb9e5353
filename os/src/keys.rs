//! Order-preserving byte encodings of collection and object ids, for backends that keep
//! objects in an ordered key-value store: bytewise order of the encodings is exactly
//! [`CollectionId`]'s and [`ObjectId`]'s (Ceph's) order, so a `collection_list` is a
//! range scan and a split by hash bits is a walk over key ranges.
//!
//! Collection key (14 bytes, fixed):
//! ```text
//! u8     kind           0 meta, 1 pg, 2 temp
//! u64 BE pool
//! u32 BE seed
//! u8     shard          0 = none, 1 + shard otherwise
//! ```
//! Object key (variable):
//! ```text
//! u8     sentinel       0x01 an object, 0x02 the max sentinel (nothing follows it)
//! u8     shard ^ 0x80   signed order
//! u64 BE pool ^ 2^63    signed order
//! u32 BE reverse_bits(hash)
//! esc    namespace
//! esc    effective key  (the locator key, or the name when there is none)
//! esc    name
//! u64 BE snap
//! u64 BE generation
//! esc    key            (as stored: empty when equal to the name)
//! u32 BE hash           (redundant with the reversed hash; kept so decoding needs no math)
//! ```
//! `esc` is a string's bytes with 0x00 written as `00 FF`, then the terminator `00 01`,
//! so a string sorts before its extensions and bytes compare as the string does.

use crate::error::{Error, Result};
use crate::ids::{CollectionId, ObjectId, PgId, Snap};

/// Length of an encoded collection id.
pub const COLLECTION_KEY_LEN: usize = 14;

const OBJECT: u8 = 0x01;
const MAX: u8 = 0x02;

/// The collection's key.
pub fn collection_key(c: &CollectionId) -> [u8; COLLECTION_KEY_LEN] {
    let (kind, pg) = match c {
        CollectionId::Meta => (0u8, PgId::new(0, 0)),
        CollectionId::Pg(p) => (1, *p),
        CollectionId::Temp(p) => (2, *p),
    };
    let mut k = [0u8; COLLECTION_KEY_LEN];
    k[0] = kind;
    k[1..9].copy_from_slice(&pg.pool.to_be_bytes());
    k[9..13].copy_from_slice(&pg.seed.to_be_bytes());
    k[13] = pg.shard.map_or(0, |s| s.saturating_add(1));
    k
}

/// Decodes [`collection_key`]; the slice must hold exactly one key.
pub fn decode_collection_key(b: &[u8]) -> Result<CollectionId> {
    if b.len() != COLLECTION_KEY_LEN {
        return Err(Error::corrupt(format!(
            "collection key has {} bytes, expected {COLLECTION_KEY_LEN}",
            b.len()
        )));
    }
    let mut pool = [0u8; 8];
    pool.copy_from_slice(&b[1..9]);
    let mut seed = [0u8; 4];
    seed.copy_from_slice(&b[9..13]);
    let shard = match b[13] {
        0 => None,
        s => Some(s - 1),
    };
    let pg = PgId {
        pool: u64::from_be_bytes(pool),
        seed: u32::from_be_bytes(seed),
        shard,
    };
    match b[0] {
        0 if pg == PgId::new(0, 0) => Ok(CollectionId::Meta),
        1 => Ok(CollectionId::Pg(pg)),
        2 => Ok(CollectionId::Temp(pg)),
        k => Err(Error::corrupt(format!("bad collection key kind {k}"))),
    }
}

fn put_esc(out: &mut Vec<u8>, s: &str) {
    for &b in s.as_bytes() {
        if b == 0 {
            out.extend_from_slice(&[0, 0xFF]);
        } else {
            out.push(b);
        }
    }
    out.extend_from_slice(&[0, 1]);
}

/// Appends the object's key to `out`.
pub fn put_object_key(out: &mut Vec<u8>, o: &ObjectId) {
    if o.max {
        out.push(MAX);
        return;
    }
    out.push(OBJECT);
    out.push((o.shard as u8) ^ 0x80);
    out.extend_from_slice(&((o.pool as u64) ^ (1 << 63)).to_be_bytes());
    out.extend_from_slice(&o.hash.reverse_bits().to_be_bytes());
    put_esc(out, &o.namespace);
    put_esc(out, o.effective_key());
    put_esc(out, &o.name);
    out.extend_from_slice(&o.snap.0.to_be_bytes());
    out.extend_from_slice(&o.generation.to_be_bytes());
    put_esc(out, &o.key);
    out.extend_from_slice(&o.hash.to_be_bytes());
}

/// The object's key on its own.
pub fn object_key(o: &ObjectId) -> Vec<u8> {
    let mut v = Vec::with_capacity(48 + o.name.len() * 2 + o.namespace.len() + o.key.len() * 2);
    put_object_key(&mut v, o);
    v
}

struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize, what: &str) -> Result<&[u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.b.len())
            .ok_or_else(|| Error::corrupt(format!("object key ends inside its {what}")))?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.take(1, what)?[0])
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4, what)?);
        Ok(u32::from_be_bytes(a))
    }
    fn u64(&mut self, what: &str) -> Result<u64> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8, what)?);
        Ok(u64::from_be_bytes(a))
    }
    fn esc(&mut self, what: &str) -> Result<String> {
        let mut out = Vec::new();
        loop {
            match self.u8(what)? {
                0 => match self.u8(what)? {
                    0xFF => out.push(0),
                    1 => break,
                    b => {
                        return Err(Error::corrupt(format!(
                            "bad escape 00 {b:02x} in the {what} of an object key"
                        )))
                    }
                },
                b => out.push(b),
            }
        }
        String::from_utf8(out)
            .map_err(|_| Error::corrupt(format!("the {what} of an object key is not UTF-8")))
    }
}

/// Decodes one object key at the start of `b`; returns the id and the bytes it used.
pub fn decode_object_key(b: &[u8]) -> Result<(ObjectId, usize)> {
    let mut c = Cursor { b, pos: 0 };
    match c.u8("sentinel")? {
        MAX => return Ok((ObjectId::max_sentinel(), 1)),
        OBJECT => {}
        x => return Err(Error::corrupt(format!("bad object key sentinel {x:#04x}"))),
    }
    let shard = (c.u8("shard")? ^ 0x80) as i8;
    let pool = (c.u64("pool")? ^ (1 << 63)) as i64;
    let rev = c.u32("hash")?;
    let namespace = c.esc("namespace")?;
    let effective = c.esc("locator")?;
    let name = c.esc("name")?;
    let snap = Snap(c.u64("snap")?);
    let generation = c.u64("generation")?;
    let key = c.esc("key")?;
    let hash = c.u32("hash")?;
    let o = ObjectId {
        max: false,
        shard,
        pool,
        hash,
        namespace,
        key,
        name,
        snap,
        generation,
    };
    if rev != hash.reverse_bits() || effective != o.effective_key() {
        return Err(Error::corrupt("object key fields disagree with each other"));
    }
    Ok((o, c.pos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_order_of_a_few_ids() {
        let mut ids = vec![
            ObjectId::min(),
            ObjectId::new(1, "a"),
            ObjectId::new(1, "a\0"),
            ObjectId::new(1, "ab"),
            ObjectId::new(-1, "a"),
            ObjectId::new(1, "a").with_namespace("ns"),
            ObjectId::new(1, "a").with_key("k"),
            ObjectId::new(1, "a").with_snap(Snap(3)),
            ObjectId::new(1, "a").with_shard(2).with_generation(7),
            ObjectId::new(1, "x").with_hash(0),
            ObjectId::new(1, "y").with_hash(u32::MAX),
            ObjectId::max_sentinel(),
        ];
        for o in &ids {
            let k = object_key(o);
            let (d, n) = decode_object_key(&k).unwrap();
            assert_eq!(&d, o);
            assert_eq!(n, k.len());
        }
        let mut by_key = ids.clone();
        by_key.sort_by_key(object_key);
        ids.sort();
        assert_eq!(ids, by_key);
    }

    #[test]
    fn collection_keys_round_trip_in_order() {
        let mut cs = vec![
            CollectionId::Meta,
            CollectionId::pg(1, 0),
            CollectionId::pg(1, 0x2f),
            CollectionId::pg(2, 0),
            CollectionId::temp(1, 0),
            CollectionId::Pg(PgId {
                pool: 1,
                seed: 0,
                shard: Some(3),
            }),
        ];
        for c in &cs {
            assert_eq!(&decode_collection_key(&collection_key(c)).unwrap(), c);
        }
        let mut by_key = cs.clone();
        by_key.sort_by_key(collection_key);
        cs.sort();
        assert_eq!(cs, by_key);
    }

    #[test]
    fn damaged_keys_are_errors() {
        let k = object_key(&ObjectId::new(1, "name").with_namespace("n"));
        for cut in 0..k.len() {
            assert!(decode_object_key(&k[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = k.clone();
        bad[0] = 7;
        assert!(decode_object_key(&bad).is_err());
        assert!(decode_collection_key(&[9; COLLECTION_KEY_LEN]).is_err());
        assert!(decode_collection_key(&[0; 3]).is_err());
    }
}
