//! Collection and object identifiers, their Ceph text forms and Ceph's total order.
//!
//! `CollectionId` follows Ceph's `coll_t` (`meta`, `1.2f_head`, `1.2fs3_TEMP`);
//! `ObjectId` follows `ghobject_t`, ordered by (max, shard, pool, bit-reversed hash,
//! namespace, key-or-name, name, snap, generation) so that listing and split/merge by
//! hash bits behave exactly as in Ceph.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::hash::object_hash;

/// A placement group id with its optional erasure-code shard (`spg_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PgId {
    pub pool: u64,
    pub seed: u32,
    /// `None` is Ceph's NO_SHARD.
    pub shard: Option<u8>,
}

impl PgId {
    pub fn new(pool: u64, seed: u32) -> PgId {
        PgId {
            pool,
            seed,
            shard: None,
        }
    }
}

impl fmt::Display for PgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:x}", self.pool, self.seed)?;
        if let Some(s) = self.shard {
            write!(f, "s{s}")?;
        }
        Ok(())
    }
}

impl FromStr for PgId {
    type Err = Error;
    fn from_str(s: &str) -> Result<PgId> {
        let bad = || Error::invalid(format!("bad pg id {s:?}: expected POOL.SEEDHEX[sSHARD]"));
        let (pool, rest) = s.split_once('.').ok_or_else(bad)?;
        // Only the canonical text (as Ceph prints it) is accepted, so text round-trips.
        if pool.is_empty()
            || !pool.bytes().all(|b| b.is_ascii_digit())
            || (pool.len() > 1 && pool.starts_with('0'))
        {
            return Err(bad());
        }
        let pool: u64 = pool.parse().map_err(|_| bad())?;
        let (seed, shard) = match rest.split_once('s') {
            Some((seed, shard)) => (seed, Some(shard)),
            None => (rest, None),
        };
        if seed.is_empty()
            || seed.len() > 8
            || !seed
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            || (seed.len() > 1 && seed.starts_with('0'))
        {
            return Err(bad());
        }
        let seed = u32::from_str_radix(seed, 16).map_err(|_| bad())?;
        let shard = match shard {
            None => None,
            Some(t) => {
                if t.is_empty()
                    || !t.bytes().all(|b| b.is_ascii_digit())
                    || (t.len() > 1 && t.starts_with('0'))
                {
                    return Err(bad());
                }
                let v: u8 = t.parse().map_err(|_| bad())?;
                if v > 127 {
                    return Err(bad());
                }
                Some(v)
            }
        };
        Ok(PgId { pool, seed, shard })
    }
}

/// A collection: the OSD's metadata collection, a PG's head collection or its temp collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CollectionId {
    Meta,
    Pg(PgId),
    Temp(PgId),
}

impl CollectionId {
    pub fn pg(pool: u64, seed: u32) -> CollectionId {
        CollectionId::Pg(PgId::new(pool, seed))
    }
    pub fn temp(pool: u64, seed: u32) -> CollectionId {
        CollectionId::Temp(PgId::new(pool, seed))
    }
    /// The pool objects of this collection default to (`-1` for `meta`, as Ceph's
    /// `hobject_t` in the meta collection).
    pub fn default_pool(&self) -> i64 {
        match self {
            CollectionId::Meta => -1,
            CollectionId::Pg(p) => i64::try_from(p.pool).unwrap_or(i64::MAX),
            // Ceph puts temp objects in pool -2 - pool so they never collide with head objects.
            CollectionId::Temp(p) => -2 - i64::try_from(p.pool).unwrap_or(i64::MAX - 2),
        }
    }
    pub fn pgid(&self) -> Option<PgId> {
        match self {
            CollectionId::Meta => None,
            CollectionId::Pg(p) | CollectionId::Temp(p) => Some(*p),
        }
    }
}

impl fmt::Display for CollectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CollectionId::Meta => f.write_str("meta"),
            CollectionId::Pg(p) => write!(f, "{p}_head"),
            CollectionId::Temp(p) => write!(f, "{p}_TEMP"),
        }
    }
}

impl FromStr for CollectionId {
    type Err = Error;
    fn from_str(s: &str) -> Result<CollectionId> {
        if s == "meta" {
            return Ok(CollectionId::Meta);
        }
        if let Some(p) = s.strip_suffix("_head") {
            return Ok(CollectionId::Pg(p.parse().map_err(|e: Error| {
                Error::invalid(format!("bad collection id {s:?}: {}", e.message()))
            })?));
        }
        if let Some(p) = s.strip_suffix("_TEMP") {
            return Ok(CollectionId::Temp(p.parse().map_err(|e: Error| {
                Error::invalid(format!("bad collection id {s:?}: {}", e.message()))
            })?));
        }
        Err(Error::invalid(format!(
            "bad collection id {s:?}: expected meta, POOL.SEED_head or POOL.SEED_TEMP"
        )))
    }
}

/// A snapshot id; `HEAD` (Ceph's CEPH_NOSNAP) and `SNAPDIR` are the two largest values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Snap(pub u64);

impl Snap {
    pub const HEAD: Snap = Snap(u64::MAX - 1);
    pub const SNAPDIR: Snap = Snap(u64::MAX);
    /// Ceph's signed rendering: -2 for head, -1 for snapdir.
    pub fn as_ceph_i64(self) -> i64 {
        self.0 as i64
    }
}

impl fmt::Display for Snap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Snap::HEAD => f.write_str("head"),
            Snap::SNAPDIR => f.write_str("snapdir"),
            Snap(n) => write!(f, "{n:x}"),
        }
    }
}

/// Ceph's NO_GEN: the generation of every object that is not an EC rollback copy.
pub const NO_GEN: u64 = u64::MAX;
/// Ceph's NO_SHARD.
pub const NO_SHARD: i8 = -1;

/// An object id (`ghobject_t`).
///
/// Build ids with [`ObjectId::new`] and the `with_*` methods, which keep `hash` equal
/// to Ceph's hash of the locator; set `hash` directly only to mirror Ceph ids that
/// carry an explicit hash.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectId {
    /// The sentinel that sorts after every object.
    pub max: bool,
    pub shard: i8,
    pub pool: i64,
    pub hash: u32,
    pub namespace: String,
    /// Locator key; empty means "the name". Kept empty when equal to the name, as Ceph does.
    pub key: String,
    pub name: String,
    pub snap: Snap,
    pub generation: u64,
}

impl ObjectId {
    /// A head object in `pool` with the default (rjenkins) hash.
    pub fn new(pool: i64, name: impl Into<String>) -> ObjectId {
        let name = name.into();
        ObjectId {
            max: false,
            shard: NO_SHARD,
            pool,
            hash: object_hash("", "", &name),
            namespace: String::new(),
            key: String::new(),
            name,
            snap: Snap::HEAD,
            generation: NO_GEN,
        }
    }

    /// An object named `name` in collection `cid`'s default pool.
    pub fn in_collection(cid: &CollectionId, name: impl Into<String>) -> ObjectId {
        ObjectId::new(cid.default_pool(), name)
    }

    pub fn with_namespace(mut self, ns: impl Into<String>) -> ObjectId {
        self.namespace = ns.into();
        self.rehash();
        self
    }
    pub fn with_key(mut self, key: impl Into<String>) -> ObjectId {
        let key = key.into();
        self.key = if key == self.name { String::new() } else { key };
        self.rehash();
        self
    }
    pub fn with_snap(mut self, snap: Snap) -> ObjectId {
        self.snap = snap;
        self
    }
    pub fn with_generation(mut self, gen: u64) -> ObjectId {
        self.generation = gen;
        self
    }
    pub fn with_shard(mut self, shard: i8) -> ObjectId {
        self.shard = shard;
        self
    }
    /// Overrides the hash (Ceph lets callers pick it, e.g. for hash-collision tests).
    pub fn with_hash(mut self, hash: u32) -> ObjectId {
        self.hash = hash;
        self
    }

    /// Recomputes the hash from namespace, key and name.
    pub fn rehash(&mut self) {
        self.hash = object_hash(&self.namespace, &self.key, &self.name);
    }

    /// The smallest id (Ceph's default-constructed ghobject_t).
    pub fn min() -> ObjectId {
        ObjectId {
            max: false,
            shard: NO_SHARD,
            pool: i64::MIN,
            hash: 0,
            namespace: String::new(),
            key: String::new(),
            name: String::new(),
            snap: Snap(0),
            generation: 0,
        }
    }
    /// The sentinel that sorts after every object.
    pub fn max_sentinel() -> ObjectId {
        ObjectId {
            max: true,
            ..ObjectId::min()
        }
    }
    pub fn is_max(&self) -> bool {
        self.max
    }
    pub fn is_min(&self) -> bool {
        *self == ObjectId::min()
    }

    /// The first id of the hash range a PG owns at `bits` bits (used to seek listings).
    pub fn min_for_hash(pool: i64, hash: u32) -> ObjectId {
        ObjectId {
            pool,
            hash,
            ..ObjectId::min()
        }
    }

    /// Key compared second to last in Ceph order: `key` if set, else `name`.
    pub fn effective_key(&self) -> &str {
        if self.key.is_empty() {
            &self.name
        } else {
            &self.key
        }
    }

    /// Ceph's `get_bitwise_key`: the bit-reversed hash, with max above every hash.
    pub fn bitwise_key(&self) -> u64 {
        if self.max {
            1 << 32
        } else {
            u64::from(self.hash.reverse_bits())
        }
    }

    /// Whether the low `bits` bits of the hash equal `rem` (Ceph's `hobject_t::match`).
    pub fn matches(&self, bits: u32, rem: u32) -> bool {
        let mask = if bits >= 32 {
            u32::MAX
        } else {
            (1u32 << bits) - 1
        };
        (self.hash & mask) == (rem & mask)
    }
}

impl Ord for ObjectId {
    fn cmp(&self, o: &ObjectId) -> Ordering {
        self.max
            .cmp(&o.max)
            .then(self.shard.cmp(&o.shard))
            .then(self.pool.cmp(&o.pool))
            .then(self.bitwise_key().cmp(&o.bitwise_key()))
            .then_with(|| self.namespace.cmp(&o.namespace))
            .then_with(|| self.effective_key().cmp(o.effective_key()))
            .then_with(|| self.name.cmp(&o.name))
            .then(self.snap.cmp(&o.snap))
            .then(self.generation.cmp(&o.generation))
            // Ceph treats key == name and an empty key as the same id; ids built
            // through `with_key` normalize that, and this keeps Ord consistent with Eq
            // for ids that were not.
            .then_with(|| self.key.cmp(&o.key))
            .then(self.hash.cmp(&o.hash))
    }
}

impl PartialOrd for ObjectId {
    fn partial_cmp(&self, o: &ObjectId) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

impl fmt::Display for ObjectId {
    /// A compact human form (`#pool:hash:ns:key:name:snap#`, as Ceph prints ghobjects);
    /// the JSON form is the one to paste back into tools.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.max {
            return f.write_str("#MAX#");
        }
        write!(f, "#")?;
        if self.shard != NO_SHARD {
            write!(f, "{}#", self.shard)?;
        }
        write!(
            f,
            "{}:{:08x}:{}:{}:{}:{}",
            self.pool,
            self.hash.reverse_bits(),
            self.namespace.escape_debug(),
            self.key.escape_debug(),
            self.name.escape_debug(),
            self.snap
        )?;
        if self.generation != NO_GEN {
            write!(f, ":{:x}", self.generation)?;
        }
        write!(f, "#")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collection_text_forms_round_trip() {
        for s in [
            "meta",
            "1.2f_head",
            "1.2f_TEMP",
            "0.0_head",
            "12.ffffffffs3_head",
        ] {
            let c: CollectionId = s.parse().unwrap();
            assert_eq!(c.to_string(), s);
        }
        let c: CollectionId = "3.a_head".parse().unwrap();
        assert_eq!(c, CollectionId::pg(3, 10));
        for bad in [
            "",
            "meta2",
            "1_head",
            "x.1_head",
            "1.g_head",
            "1.2",
            "1.2_tmp",
            "1.2s_head",
            "1.2s300_head",
            "-1.2_head",
            "1.123456789_head",
        ] {
            assert!(bad.parse::<CollectionId>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn order_is_by_reversed_hash_first() {
        let a = ObjectId::new(1, "a").with_hash(0x1);
        let b = ObjectId::new(1, "b").with_hash(0x8000_0000);
        // 0x1 reversed is 0x80000000, larger than 0x8000_0000 reversed (0x1).
        assert!(b < a);
        assert!(a < ObjectId::max_sentinel());
        assert!(ObjectId::min() < b);
        let neg = ObjectId::new(-1, "a");
        assert!(neg < a);
    }

    #[test]
    fn key_equal_to_name_is_normalized() {
        let a = ObjectId::new(1, "x").with_key("x");
        assert_eq!(a, ObjectId::new(1, "x"));
    }

    #[test]
    fn snap_order_puts_head_before_snapdir() {
        let h = ObjectId::new(1, "a");
        let s = ObjectId::new(1, "a").with_snap(Snap(5));
        let d = ObjectId::new(1, "a").with_snap(Snap::SNAPDIR);
        assert!(s < h && h < d);
    }

    #[test]
    fn matches_low_bits() {
        let o = ObjectId::new(1, "x").with_hash(0b1011);
        assert!(o.matches(2, 0b11));
        assert!(o.matches(4, 0b1011));
        assert!(!o.matches(3, 0b001));
        assert!(o.matches(0, 0));
        assert!(o.matches(32, 0b1011));
    }
}
