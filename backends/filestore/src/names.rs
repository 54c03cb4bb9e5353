//! Object ids as file names, and the positions (seq, transaction, op) FileStore derives
//! names and numbers from.
//!
//! Short form (every field of the id, so listing needs no xattr):
//! ```text
//! HHHHHHHH_POOL_SHARD_SNAP_GEN_NS_KEY_NAME
//! ```
//! `HHHHHHHH` is the 32-bit hash in lower-case hex (it also picks the hashed
//! sub-directory), `POOL` signed decimal, `SHARD` `n` (none) or decimal, `SNAP` `h`
//! (head), `s` (snapdir) or hex, `GEN` `n` (none) or hex; `NS`, `KEY` (empty when it
//! equals the name) and `NAME` are escaped: `[A-Za-z0-9.+,=@-]` stay, every other byte
//! becomes `%XX` (so `_`, `/`, `%` and control bytes never appear raw, and a name can
//! never be `.`/`..` since the hash comes first).
//!
//! Long form, when the short form is over [`MAX_SHORT`] bytes:
//! ```text
//! HHHHHHHH_L_PREFIX_DIGEST
//! ```
//! `PREFIX` is the start of the escaped name (at most 64 bytes, cut at an escape
//! boundary, for humans), `DIGEST` 32 hex digits of the 128-bit FNV-1a hash of the id's
//! order-preserving key ([`ostore_os::keys::object_key`]). The full id is then in the
//! file's `user.ostore.oid` xattr (or in the kv layer when the filesystem cannot hold it).

use ostore_os::ids::{ObjectId, Snap, NO_GEN, NO_SHARD};
use ostore_os::keys::{decode_object_key, object_key};
use ostore_os::{Error, Result};

/// Longest short-form name (NAME_MAX is 255; some room is kept for temp suffixes).
pub const MAX_SHORT: usize = 240;
const PREFIX_LEN: usize = 64;

fn literal(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'+' | b',' | b'=' | b'@' | b'-')
}

fn esc(out: &mut String, s: &str) {
    for &b in s.as_bytes() {
        if literal(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

fn unesc(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else if literal(b[i]) {
            out.push(b[i]);
            i += 1;
        } else {
            return None;
        }
    }
    String::from_utf8(out).ok()
}

/// 128-bit FNV-1a: stable across Rust releases and platforms (unlike std's hasher).
pub fn digest(b: &[u8]) -> u128 {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013B;
    let mut h = OFFSET;
    for &x in b {
        h ^= u128::from(x);
        h = h.wrapping_mul(PRIME);
    }
    h
}

/// The file name of an object, and whether it is the long (hashed) form.
pub fn file_name(o: &ObjectId) -> (String, bool) {
    let mut s = format!("{:08x}_{}_", o.hash, o.pool);
    if o.shard == NO_SHARD {
        s.push('n');
    } else {
        s.push_str(&o.shard.to_string());
    }
    s.push('_');
    match o.snap {
        Snap::HEAD => s.push('h'),
        Snap::SNAPDIR => s.push('s'),
        Snap(n) => s.push_str(&format!("{n:x}")),
    }
    s.push('_');
    if o.generation == NO_GEN {
        s.push('n');
    } else {
        s.push_str(&format!("{:x}", o.generation));
    }
    s.push('_');
    esc(&mut s, &o.namespace);
    s.push('_');
    esc(&mut s, &o.key);
    s.push('_');
    esc(&mut s, &o.name);
    if s.len() <= MAX_SHORT {
        return (s, false);
    }
    let mut name = String::new();
    esc(&mut name, &o.name);
    let mut cut = name.len().min(PREFIX_LEN);
    // Never cut inside a %XX escape.
    while cut > 0
        && name.as_bytes()[..cut]
            .iter()
            .rev()
            .take(2)
            .any(|b| *b == b'%')
    {
        cut -= 1;
    }
    (
        format!(
            "{:08x}_L_{}_{:032x}",
            o.hash,
            &name[..cut],
            digest(&object_key(o))
        ),
        true,
    )
}

/// What a file name says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Short(ObjectId),
    /// Long form: the hash, and the digest the full id must have.
    Long {
        hash: u32,
        digest: u128,
    },
}

/// The hash a file name starts with (it picks the hashed sub-directory).
pub fn name_hash(name: &str) -> Option<u32> {
    let h = name.get(..8)?;
    if name.as_bytes().get(8) != Some(&b'_') || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(h, 16).ok()
}

/// Parses an object file name; `None` for anything FileStore did not write.
pub fn parse(name: &str) -> Option<Parsed> {
    let hash = name_hash(name)?;
    let f: Vec<&str> = name.split('_').collect();
    if f.len() == 4 && f[1] == "L" {
        if f[3].len() != 32 {
            return None;
        }
        let digest = u128::from_str_radix(f[3], 16).ok()?;
        return Some(Parsed::Long { hash, digest });
    }
    if f.len() != 8 || name.len() > MAX_SHORT {
        return None;
    }
    let pool: i64 = f[1].parse().ok()?;
    let shard = if f[2] == "n" {
        NO_SHARD
    } else {
        f[2].parse().ok()?
    };
    let snap = match f[3] {
        "h" => Snap::HEAD,
        "s" => Snap::SNAPDIR,
        x => Snap(u64::from_str_radix(x, 16).ok()?),
    };
    let generation = if f[4] == "n" {
        NO_GEN
    } else {
        u64::from_str_radix(f[4], 16).ok()?
    };
    let o = ObjectId {
        max: false,
        shard,
        pool,
        hash,
        namespace: unesc(f[5])?,
        key: unesc(f[6])?,
        name: unesc(f[7])?,
        snap,
        generation,
    };
    // Only the canonical spelling is ours (so every id has exactly one file name).
    if file_name(&o) != (name.to_string(), false) {
        return None;
    }
    Some(Parsed::Short(o))
}

/// The id a long-form file holds in its oid xattr (or the kv layer); checked against
/// the digest in its name.
pub fn decode_long(bytes: &[u8], hash: u32, want: u128) -> Result<ObjectId> {
    let (o, n) = decode_object_key(bytes)?;
    if n != bytes.len() || o.max || o.hash != hash || digest(bytes) != want {
        return Err(Error::corrupt(
            "the stored id of a long-named object does not match its file name",
        ));
    }
    Ok(o)
}

/// Where an op is in the journal: the position FileStore derives object numbers,
/// temp-file names and replay guards from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Pos {
    pub seq: u64,
    pub txn: u32,
    pub op: u32,
}

impl Pos {
    /// 16 bytes, big-endian, so byte order is position order.
    pub fn bytes(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.seq.to_be_bytes());
        b[8..12].copy_from_slice(&self.txn.to_be_bytes());
        b[12..].copy_from_slice(&self.op.to_be_bytes());
        b
    }
    pub fn from_bytes(b: &[u8]) -> Option<Pos> {
        if b.len() != 16 {
            return None;
        }
        let mut s = [0u8; 8];
        s.copy_from_slice(&b[..8]);
        let mut t = [0u8; 4];
        t.copy_from_slice(&b[8..12]);
        let mut o = [0u8; 4];
        o.copy_from_slice(&b[12..]);
        Some(Pos {
            seq: u64::from_be_bytes(s),
            txn: u32::from_be_bytes(t),
            op: u32::from_be_bytes(o),
        })
    }
    /// A file-name-safe form (temp files).
    pub fn tag(&self) -> String {
        format!("{:016x}.{:x}.{:x}", self.seq, self.txn, self.op)
    }
}

impl std::fmt::Display for Pos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.seq, self.txn, self.op)
    }
}

/// A replay guard: the position of the last non-idempotent op applied to an object or
/// collection, and whether it is still in progress (Ceph's `user.cephos.seq`).
///
/// Encoding (18 bytes): `u8` version 1, `u64 BE` seq, `u32 BE` txn, `u32 BE` op,
/// `u8` in_progress (0 or 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Guard {
    pub pos: Pos,
    pub in_progress: bool,
}

impl Guard {
    pub fn encode(&self) -> [u8; 18] {
        let mut b = [0u8; 18];
        b[0] = 1;
        b[1..17].copy_from_slice(&self.pos.bytes());
        b[17] = u8::from(self.in_progress);
        b
    }
    pub fn decode(b: &[u8]) -> Result<Guard> {
        if b.len() != 18 || b[0] != 1 || b[17] > 1 {
            return Err(Error::corrupt(format!(
                "replay guard xattr is malformed ({} bytes)",
                b.len()
            )));
        }
        let pos = Pos::from_bytes(&b[1..17])
            .ok_or_else(|| Error::corrupt("replay guard position is malformed"))?;
        Ok(Guard {
            pos,
            in_progress: b[17] == 1,
        })
    }
    /// Whether an op at `p` was already done (Ceph's `_check_replay_guard` returning 0):
    /// the guard is past it, or at it and complete.
    pub fn covers(&self, p: Pos) -> bool {
        self.pos > p || (self.pos == p && !self.in_progress)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let ids = vec![
            ObjectId::new(1, "a"),
            ObjectId::new(-3, "a_b/c%d..")
                .with_namespace("n_s")
                .with_key("k k"),
            ObjectId::new(1, ".").with_snap(Snap(0x1f)),
            ObjectId::new(1, "..")
                .with_snap(Snap::SNAPDIR)
                .with_shard(3)
                .with_generation(9),
            ObjectId::new(1, "\u{1}ünï").with_hash(0),
            ObjectId::new(i64::MIN, "x").with_hash(u32::MAX),
        ];
        for o in ids {
            let (n, long) = file_name(&o);
            assert!(!long);
            assert!(!n.contains('/') && n.len() <= 255, "{n}");
            assert_eq!(parse(&n), Some(Parsed::Short(o.clone())), "{n}");
            assert_eq!(name_hash(&n), Some(o.hash));
        }
    }

    #[test]
    fn long_names_are_hashed() {
        let o = ObjectId::new(1, "%".repeat(2048));
        let (n, long) = file_name(&o);
        assert!(long && n.len() < 200, "{n}");
        let Some(Parsed::Long { hash, digest: d }) = parse(&n) else {
            panic!("{n}")
        };
        let k = object_key(&o);
        assert_eq!(decode_long(&k, hash, d).unwrap(), o);
        let other = object_key(&ObjectId::new(1, "b".repeat(2048)));
        assert!(decode_long(&other, hash, d).is_err());
        assert!(decode_long(&k[..k.len() - 1], hash, d).is_err());
    }

    #[test]
    fn foreign_names_are_refused() {
        for n in [
            "",
            "DIR_0",
            "xyz",
            "0000000g_1_n_h_n___a",
            "00000000_1_n_h_n___a_b",
            "00000000_01_n_h_n___a",
            "00000000_1_n_h_n___a%2",
            "00000000_L_x_123",
        ] {
            assert_eq!(parse(n), None, "{n:?}");
        }
    }

    #[test]
    fn guards_round_trip_and_reject_garbage() {
        let g = Guard {
            pos: Pos {
                seq: 7,
                txn: 1,
                op: 3,
            },
            in_progress: true,
        };
        assert_eq!(Guard::decode(&g.encode()).unwrap(), g);
        let mut b = g.encode();
        b[17] = 2;
        assert!(Guard::decode(&b).is_err());
        assert!(Guard::decode(&b[..5]).is_err());
        assert!(!g.covers(g.pos));
        assert!(g.covers(Pos { seq: 6, ..g.pos }));
        let done = Guard {
            in_progress: false,
            ..g
        };
        assert!(done.covers(done.pos));
    }
}
