//! The KeyValueStore's key layout and record encodings (docs/FORMATS.md, "KeyValueStore").
//!
//! Every key starts with a one-byte prefix. Objects are named by collection key + object
//! key ([`ostore_os::keys`]), whose byte order is Ceph's object order, so a
//! `collection_list` is one range scan. Everything else an object owns (data strips,
//! attrs, omap header, omap keys) is keyed by the object's *nid*, a number never reused,
//! so a rename, move, split or merge rewrites one small header record and no data, and
//! removing an object is four range deletes.
//!
//! ```text
//! S "super"                      store record: strip size, format version
//! S "ckpt"                       seq of the last checkpoint (everything <= it applied)
//! S "nid"                        next nid to hand out
//! T u64 BE seq                   how many of the entry's transactions are applied (in their batch)
//! C collkey(14)                  collection record: bits
//! O collkey(14) objkey           object header: nid, size, strip size, flags, csum scheme
//! D nid(8 BE) strip(8 BE)        one data strip: u32 crc32c, then up to strip-size bytes
//! A nid(8 BE) name               one attr value
//! H nid(8 BE)                    omap header
//! M nid(8 BE) key                one omap value
//! ```
//! Every record value (not strip payloads, attrs or omap values, which are user bytes)
//! is `u8 version, fields..., u32 crc32c` (little-endian) so a flipped bit in a record is
//! a typed error, never a wrong size or a wrong nid.

use ostore_os::keys::{collection_key, object_key, put_object_key, COLLECTION_KEY_LEN};
use ostore_os::{CollectionId, Error, ObjectId, Result};

pub const P_SUPER: u8 = b'S';
pub const P_APPLIED: u8 = b'T';
pub const P_COLL: u8 = b'C';
pub const P_OBJ: u8 = b'O';
pub const P_DATA: u8 = b'D';
pub const P_ATTR: u8 = b'A';
pub const P_OMAP_HDR: u8 = b'H';
pub const P_OMAP: u8 = b'M';

pub const K_SUPER: &[u8] = b"Ssuper";
pub const K_CKPT: &[u8] = b"Sckpt";
pub const K_NID: &[u8] = b"Snid";

/// The prefixes that hold per-nid keys.
pub const NID_PREFIXES: [u8; 4] = [P_DATA, P_ATTR, P_OMAP_HDR, P_OMAP];

const RECORD_VERSION: u8 = 1;

/// Checksum scheme of an object's strips.
pub const CSUM_CRC32C: u8 = 1;

fn seal(mut b: Vec<u8>) -> Vec<u8> {
    let c = crc32c::crc32c(&b);
    b.extend_from_slice(&c.to_le_bytes());
    b
}

/// Checks version and trailer; returns the fields between them.
fn open<'a>(b: &'a [u8], what: &str) -> Result<&'a [u8]> {
    if b.len() < 5 {
        return Err(Error::corrupt(format!(
            "{what} record has {} bytes",
            b.len()
        )));
    }
    let (body, crc) = b.split_at(b.len() - 4);
    let want = u32::from_le_bytes(crc.try_into().expect("4 bytes"));
    if crc32c::crc32c(body) != want {
        return Err(Error::corrupt(format!("{what} record fails its checksum")));
    }
    if body[0] != RECORD_VERSION {
        return Err(Error::corrupt(format!(
            "{what} record has version {}, this build reads {RECORD_VERSION}",
            body[0]
        )));
    }
    Ok(&body[1..])
}

fn u64_at(b: &[u8], at: usize, what: &str) -> Result<u64> {
    b.get(at..at + 8)
        .map(|s| u64::from_le_bytes(s.try_into().expect("8 bytes")))
        .ok_or_else(|| Error::corrupt(format!("{what} record is short")))
}

fn u32_at(b: &[u8], at: usize, what: &str) -> Result<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes(s.try_into().expect("4 bytes")))
        .ok_or_else(|| Error::corrupt(format!("{what} record is short")))
}

/// A u64 record (checkpoint seq, next nid).
pub fn encode_u64(v: u64) -> Vec<u8> {
    let mut b = vec![RECORD_VERSION];
    b.extend_from_slice(&v.to_le_bytes());
    seal(b)
}

pub fn decode_u64(b: &[u8], what: &str) -> Result<u64> {
    let f = open(b, what)?;
    if f.len() != 8 {
        return Err(Error::corrupt(format!("{what} record has a bad length")));
    }
    u64_at(f, 0, what)
}

/// The store record, written at mkfs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreRecord {
    pub strip_size: u32,
}

impl StoreRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![RECORD_VERSION];
        b.extend_from_slice(&self.strip_size.to_le_bytes());
        seal(b)
    }
    pub fn decode(b: &[u8]) -> Result<StoreRecord> {
        let f = open(b, "store")?;
        if f.len() != 4 {
            return Err(Error::corrupt("store record has a bad length"));
        }
        let strip_size = u32_at(f, 0, "store")?;
        if !strip_size.is_power_of_two() || !(512..=(1 << 20)).contains(&strip_size) {
            return Err(Error::corrupt(format!(
                "store record names strip size {strip_size}"
            )));
        }
        Ok(StoreRecord { strip_size })
    }
}

/// A collection record.
pub fn encode_coll(bits: u32) -> Vec<u8> {
    let mut b = vec![RECORD_VERSION];
    b.extend_from_slice(&bits.to_le_bytes());
    seal(b)
}

pub fn decode_coll(b: &[u8]) -> Result<u32> {
    let f = open(b, "collection")?;
    if f.len() != 4 {
        return Err(Error::corrupt("collection record has a bad length"));
    }
    u32_at(f, 0, "collection")
}

/// An object header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub nid: u64,
    pub size: u64,
    pub strip_size: u32,
    pub flags: u32,
    pub csum: u8,
}

impl Header {
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(30);
        b.push(RECORD_VERSION);
        b.extend_from_slice(&self.nid.to_le_bytes());
        b.extend_from_slice(&self.size.to_le_bytes());
        b.extend_from_slice(&self.strip_size.to_le_bytes());
        b.extend_from_slice(&self.flags.to_le_bytes());
        b.push(self.csum);
        seal(b)
    }

    pub fn decode(b: &[u8]) -> Result<Header> {
        let f = open(b, "object header")?;
        if f.len() != 25 {
            return Err(Error::corrupt("object header record has a bad length"));
        }
        let h = Header {
            nid: u64_at(f, 0, "object header")?,
            size: u64_at(f, 8, "object header")?,
            strip_size: u32_at(f, 16, "object header")?,
            flags: u32_at(f, 20, "object header")?,
            csum: f[24],
        };
        if !h.strip_size.is_power_of_two() || h.strip_size < 512 || h.csum != CSUM_CRC32C {
            return Err(Error::corrupt(format!(
                "object header names strip size {} and checksum scheme {}",
                h.strip_size, h.csum
            )));
        }
        Ok(h)
    }
}

/// A strip value: crc32c of the payload, then the payload.
pub fn encode_strip(payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(payload.len() + 4);
    b.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    b.extend_from_slice(payload);
    b
}

/// The payload of a strip value, checked.
pub fn decode_strip(v: &[u8], nid: u64, strip: u64) -> Result<&[u8]> {
    if v.len() < 4 {
        return Err(Error::corrupt(format!(
            "data strip {strip} of nid {nid} has {} bytes",
            v.len()
        )));
    }
    let (crc, payload) = v.split_at(4);
    if crc32c::crc32c(payload) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
        return Err(Error::corrupt(format!(
            "data strip {strip} of nid {nid} fails its checksum"
        )));
    }
    Ok(payload)
}

pub fn applied_key(seq: u64) -> Vec<u8> {
    let mut k = vec![P_APPLIED];
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The seq of an [`applied_key`]; `None` for a key of another shape.
pub fn applied_seq(k: &[u8]) -> Option<u64> {
    match k {
        [P_APPLIED, rest @ ..] => rest.try_into().ok().map(u64::from_be_bytes),
        _ => None,
    }
}

pub fn coll_key(c: &CollectionId) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + COLLECTION_KEY_LEN);
    k.push(P_COLL);
    k.extend_from_slice(&collection_key(c));
    k
}

/// The prefix of every object header key of a collection.
pub fn obj_prefix(c: &CollectionId) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + COLLECTION_KEY_LEN);
    k.push(P_OBJ);
    k.extend_from_slice(&collection_key(c));
    k
}

pub fn obj_key(c: &CollectionId, o: &ObjectId) -> Vec<u8> {
    let mut k = obj_prefix(c);
    put_object_key(&mut k, o);
    k
}

/// The object id in an object header key.
pub fn obj_of_key(k: &[u8]) -> Result<ObjectId> {
    let tail = k
        .get(1 + COLLECTION_KEY_LEN..)
        .ok_or_else(|| Error::corrupt("object key is short"))?;
    let (o, n) = ostore_os::keys::decode_object_key(tail)?;
    if n != tail.len() {
        return Err(Error::corrupt("object key has trailing bytes"));
    }
    Ok(o)
}

/// The collection in an object header key.
pub fn coll_of_obj_key(k: &[u8]) -> Result<CollectionId> {
    let ck = k
        .get(1..1 + COLLECTION_KEY_LEN)
        .ok_or_else(|| Error::corrupt("object key is short"))?;
    ostore_os::keys::decode_collection_key(ck)
}

/// The key range of the objects of `c` from `start` (inclusive) to `end` (exclusive).
pub fn obj_range(c: &CollectionId, start: &ObjectId, end: &ObjectId) -> (Vec<u8>, Vec<u8>) {
    let mut lo = obj_prefix(c);
    lo.extend_from_slice(&object_key(start));
    let mut hi = obj_prefix(c);
    hi.extend_from_slice(&object_key(end));
    (lo, hi)
}

pub fn nid_prefix(p: u8, nid: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(9);
    k.push(p);
    k.extend_from_slice(&nid.to_be_bytes());
    k
}

/// The range holding every key of `nid` under prefix `p`.
pub fn nid_range(p: u8, nid: u64) -> (Vec<u8>, Vec<u8>) {
    (nid_prefix(p, nid), nid_prefix(p, nid + 1))
}

pub fn strip_key(nid: u64, strip: u64) -> Vec<u8> {
    let mut k = nid_prefix(P_DATA, nid);
    k.extend_from_slice(&strip.to_be_bytes());
    k
}

/// The strip index in a strip key.
pub fn strip_of_key(k: &[u8]) -> Result<u64> {
    k.get(9..17)
        .filter(|_| k.len() == 17)
        .map(|s| u64::from_be_bytes(s.try_into().expect("8 bytes")))
        .ok_or_else(|| Error::corrupt("data key has a bad length"))
}

/// The nid in any per-nid key.
pub fn nid_of_key(k: &[u8]) -> Result<u64> {
    k.get(1..9)
        .map(|s| u64::from_be_bytes(s.try_into().expect("8 bytes")))
        .ok_or_else(|| Error::corrupt("per-object key is short"))
}

pub fn attr_key(nid: u64, name: &str) -> Vec<u8> {
    let mut k = nid_prefix(P_ATTR, nid);
    k.extend_from_slice(name.as_bytes());
    k
}

pub fn omap_hdr_key(nid: u64) -> Vec<u8> {
    nid_prefix(P_OMAP_HDR, nid)
}

pub fn omap_key(nid: u64, key: &[u8]) -> Vec<u8> {
    let mut k = nid_prefix(P_OMAP, nid);
    k.extend_from_slice(key);
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_every_flip_is_caught() {
        let h = Header {
            nid: 77,
            size: 1 << 40,
            strip_size: 4096,
            flags: 0,
            csum: CSUM_CRC32C,
        };
        let records: Vec<Vec<u8>> = vec![
            h.encode(),
            encode_coll(5),
            encode_u64(123),
            StoreRecord { strip_size: 8192 }.encode(),
        ];
        assert_eq!(Header::decode(&records[0]).unwrap(), h);
        assert_eq!(decode_coll(&records[1]).unwrap(), 5);
        assert_eq!(decode_u64(&records[2], "x").unwrap(), 123);
        assert_eq!(StoreRecord::decode(&records[3]).unwrap().strip_size, 8192);
        for (i, r) in records.iter().enumerate() {
            for bit in 0..r.len() * 8 {
                let mut b = r.clone();
                b[bit / 8] ^= 1 << (bit % 8);
                let bad = match i {
                    0 => Header::decode(&b).is_err(),
                    1 => decode_coll(&b).is_err(),
                    2 => decode_u64(&b, "x").is_err(),
                    _ => StoreRecord::decode(&b).is_err(),
                };
                assert!(bad, "record {i} bit {bit} flip not caught");
            }
            for n in 0..r.len() {
                assert!(Header::decode(&r[..n]).is_err());
            }
        }
    }

    #[test]
    fn strips_check_their_payload() {
        let v = encode_strip(b"hello");
        assert_eq!(decode_strip(&v, 1, 2).unwrap(), b"hello");
        for bit in 0..v.len() * 8 {
            let mut b = v.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(decode_strip(&b, 1, 2).is_err());
        }
        assert!(decode_strip(&v[..3], 1, 2).is_err());
    }

    #[test]
    fn applied_keys_round_trip() {
        for seq in [0u64, 1, 1 << 40, u64::MAX] {
            assert_eq!(applied_seq(&applied_key(seq)), Some(seq));
        }
        assert_eq!(applied_seq(&applied_key(7)[..8]), None);
        assert_eq!(applied_seq(&[P_DATA; 9]), None);
    }

    #[test]
    fn per_nid_keys_stay_inside_their_range() {
        let (lo, hi) = nid_range(P_DATA, 9);
        for s in [0u64, 1, u64::MAX] {
            let k = strip_key(9, s);
            assert!(k >= lo && k < hi);
            assert_eq!(strip_of_key(&k).unwrap(), s);
            assert_eq!(nid_of_key(&k).unwrap(), 9);
        }
        let (lo, hi) = nid_range(P_OMAP, 9);
        let k = omap_key(9, &[0xff; 40]);
        assert!(k >= lo && k < hi);
    }
}
