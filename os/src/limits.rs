//! The documented limits, and the state-free checks every transaction passes before
//! it is journaled. A transaction that fails on replay would wedge recovery, so
//! everything that can be checked without the store's state is checked here.
//!
//! | what | limit |
//! |---|---|
//! | object name, locator key | 1..=2048 bytes (name may be empty only for the min/max sentinels, which are never stored) |
//! | namespace | 0..=256 bytes |
//! | attr name | 1..=255 bytes, no NUL |
//! | attr value | 64 KiB |
//! | attrs set by one SETATTRS | 1 MiB in total |
//! | omap key | 1..=64 KiB (an empty key is allowed only as an RMKEYRANGE bound) |
//! | omap value, omap header | 16 MiB |
//! | object size (offset + length of any write, zero, truncate, clone range) | 4 GiB |
//! | one write | 1 GiB |
//! | encoded transaction | 1 GiB |
//! | collection bits, split bits | 0..=32 |
//! | names and keys | must not contain NUL |

use crate::error::{Error, ErrorKind, Result};
use crate::ids::{CollectionId, ObjectId, NO_SHARD};
use crate::transaction::Op;

pub const MAX_NAME_LEN: usize = 2048;
pub const MAX_NAMESPACE_LEN: usize = 256;
pub const MAX_ATTR_NAME_LEN: usize = 255;
pub const MAX_ATTR_VALUE_LEN: usize = 64 << 10;
pub const MAX_ATTRS_PER_OP_BYTES: usize = 1 << 20;
pub const MAX_OMAP_KEY_LEN: usize = 64 << 10;
pub const MAX_OMAP_VALUE_LEN: usize = 16 << 20;
pub const MAX_OBJECT_SIZE: u64 = 4 << 30;
pub const MAX_WRITE_LEN: usize = 1 << 30;
pub const MAX_TRANSACTION_BYTES: u64 = 1 << 30;
pub const MAX_COLLECTION_BITS: u32 = 32;

fn too_big(what: &str, len: usize, max: usize) -> Error {
    Error::too_big(format!("{what} is {len} bytes; the limit is {max}"))
}

/// Checks an object id that a transaction may store.
pub fn validate_object(oid: &ObjectId) -> Result<()> {
    if oid.max {
        return Err(Error::invalid("the max sentinel is not a storable object"));
    }
    // An empty name is a real object in Ceph (each PG's pgmeta object,
    // `ghobject_t::make_pgmeta`); only the min sentinel's form is not storable.
    if oid.name.is_empty() && oid.pool == i64::MIN {
        return Err(Error::invalid(
            "object name is empty in pool i64::MIN (the min sentinel)",
        ));
    }
    if oid.name.len() > MAX_NAME_LEN {
        return Err(too_big("object name", oid.name.len(), MAX_NAME_LEN));
    }
    if oid.key.len() > MAX_NAME_LEN {
        return Err(too_big("object locator key", oid.key.len(), MAX_NAME_LEN));
    }
    if oid.namespace.len() > MAX_NAMESPACE_LEN {
        return Err(too_big(
            "object namespace",
            oid.namespace.len(),
            MAX_NAMESPACE_LEN,
        ));
    }
    for (what, s) in [
        ("name", &oid.name),
        ("key", &oid.key),
        ("namespace", &oid.namespace),
    ] {
        if s.as_bytes().contains(&0) {
            return Err(Error::invalid(format!("object {what} contains a NUL byte")));
        }
    }
    if oid.shard < NO_SHARD {
        return Err(Error::invalid(format!(
            "object shard {} is negative",
            oid.shard
        )));
    }
    Ok(())
}

pub fn validate_attr_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::invalid("attr name is empty"));
    }
    if name.len() > MAX_ATTR_NAME_LEN {
        return Err(too_big("attr name", name.len(), MAX_ATTR_NAME_LEN));
    }
    if name.as_bytes().contains(&0) {
        return Err(Error::invalid("attr name contains a NUL byte"));
    }
    Ok(())
}

fn validate_attr(name: &str, value: &[u8]) -> Result<()> {
    validate_attr_name(name)?;
    if value.len() > MAX_ATTR_VALUE_LEN {
        return Err(too_big(
            &format!("value of attr {name:?}"),
            value.len(),
            MAX_ATTR_VALUE_LEN,
        ));
    }
    Ok(())
}

fn validate_omap_key(k: &[u8]) -> Result<()> {
    if k.is_empty() {
        return Err(Error::invalid("omap key is empty"));
    }
    if k.len() > MAX_OMAP_KEY_LEN {
        return Err(too_big("omap key", k.len(), MAX_OMAP_KEY_LEN));
    }
    Ok(())
}

fn validate_extent(what: &str, off: u64, len: u64) -> Result<()> {
    match off.checked_add(len) {
        Some(end) if end <= MAX_OBJECT_SIZE => Ok(()),
        _ => Err(Error::new(
            ErrorKind::FileTooBig,
            format!("{what} {off}~{len} ends past the maximum object size {MAX_OBJECT_SIZE}"),
        )),
    }
}

fn validate_bits(what: &str, bits: u32) -> Result<()> {
    if bits > MAX_COLLECTION_BITS {
        return Err(Error::invalid(format!(
            "{what} {bits} is over {MAX_COLLECTION_BITS}"
        )));
    }
    Ok(())
}

fn validate_collection(_cid: &CollectionId) -> Result<()> {
    // Every CollectionId value has a valid text form; nothing more to check statically.
    Ok(())
}

/// The state-free checks for one op.
pub fn validate_op(op: &Op) -> Result<()> {
    for c in op.collections() {
        validate_collection(&c)?;
    }
    match op {
        Op::Nop => Ok(()),
        Op::Create { oid, .. }
        | Op::Touch { oid, .. }
        | Op::Remove { oid, .. }
        | Op::RmAttrs { oid, .. }
        | Op::OmapClear { oid, .. } => validate_object(oid),
        Op::Write { oid, off, data, .. } => {
            validate_object(oid)?;
            if data.len() > MAX_WRITE_LEN {
                return Err(too_big("write", data.len(), MAX_WRITE_LEN));
            }
            validate_extent("write", *off, data.len() as u64)
        }
        Op::Zero { oid, off, len, .. } => {
            validate_object(oid)?;
            validate_extent("zero", *off, *len)
        }
        Op::Truncate { oid, size, .. } => {
            validate_object(oid)?;
            validate_extent("truncate", *size, 0)
        }
        Op::SetAttr {
            oid, name, value, ..
        } => {
            validate_object(oid)?;
            validate_attr(name, value)
        }
        Op::SetAttrs { oid, attrs, .. } => {
            validate_object(oid)?;
            let mut total = 0usize;
            for (k, v) in attrs {
                validate_attr(k, v)?;
                total += k.len() + v.len();
            }
            if total > MAX_ATTRS_PER_OP_BYTES {
                return Err(too_big("attr set", total, MAX_ATTRS_PER_OP_BYTES));
            }
            Ok(())
        }
        Op::RmAttr { oid, name, .. } => {
            validate_object(oid)?;
            validate_attr_name(name)
        }
        Op::Clone { src, dst, .. } => {
            validate_object(src)?;
            validate_object(dst)?;
            if src == dst {
                return Err(Error::invalid(
                    "clone source and destination are the same object",
                ));
            }
            Ok(())
        }
        Op::CloneRange {
            src, dst, off, len, ..
        } => {
            validate_object(src)?;
            validate_object(dst)?;
            validate_extent("clone range", *off, *len)
        }
        Op::CloneRange2 {
            src,
            dst,
            src_off,
            len,
            dst_off,
            ..
        } => {
            validate_object(src)?;
            validate_object(dst)?;
            validate_extent("clone range source", *src_off, *len)?;
            validate_extent("clone range destination", *dst_off, *len)
        }
        Op::MkColl { bits, .. } | Op::CollSetBits { bits, .. } => {
            validate_bits("collection bits", *bits)
        }
        Op::RmColl { .. } => Ok(()),
        Op::OmapSetKeys { oid, keys, .. } => {
            validate_object(oid)?;
            for (k, v) in keys {
                validate_omap_key(k)?;
                if v.len() > MAX_OMAP_VALUE_LEN {
                    return Err(too_big("omap value", v.len(), MAX_OMAP_VALUE_LEN));
                }
            }
            Ok(())
        }
        Op::OmapRmKeys { oid, keys, .. } => {
            validate_object(oid)?;
            keys.iter().try_for_each(|k| validate_omap_key(k))
        }
        Op::OmapSetHeader { oid, header, .. } => {
            validate_object(oid)?;
            if header.len() > MAX_OMAP_VALUE_LEN {
                return Err(too_big("omap header", header.len(), MAX_OMAP_VALUE_LEN));
            }
            Ok(())
        }
        Op::OmapRmKeyRange {
            oid, first, last, ..
        } => {
            validate_object(oid)?;
            for k in [first, last] {
                if k.len() > MAX_OMAP_KEY_LEN {
                    return Err(too_big("omap range bound", k.len(), MAX_OMAP_KEY_LEN));
                }
            }
            Ok(())
        }
        Op::SplitCollection {
            cid,
            bits,
            rem,
            dest,
        }
        | Op::SplitCollection2 {
            cid,
            bits,
            rem,
            dest,
        } => {
            validate_bits("split bits", *bits)?;
            if *bits < 32 && u64::from(*rem) >= (1u64 << bits) {
                return Err(Error::invalid(format!(
                    "split remainder {rem:#x} does not fit in {bits} bits"
                )));
            }
            if cid == dest {
                return Err(Error::invalid(
                    "split source and destination are the same collection",
                ));
            }
            Ok(())
        }
        Op::MergeCollection { cid, dest, bits } => {
            validate_bits("merge bits", *bits)?;
            if cid == dest {
                return Err(Error::invalid(
                    "merge source and destination are the same collection",
                ));
            }
            Ok(())
        }
        Op::CollMoveRename {
            old_oid, new_oid, ..
        }
        | Op::TryRename {
            old_oid, new_oid, ..
        } => {
            validate_object(old_oid)?;
            validate_object(new_oid)
        }
        Op::SetAllocHint { oid, .. } => validate_object(oid),
        Op::CollHint { hint, .. } => {
            if hint.len() > MAX_ATTR_VALUE_LEN {
                return Err(too_big("collection hint", hint.len(), MAX_ATTR_VALUE_LEN));
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(limit - 1, accepted)`, `(limit, accepted)`, `(limit + 1, refused)`.
    fn edges<T: Copy + std::ops::Add<Output = T> + std::ops::Sub<Output = T> + From<u8>>(
        limit: T,
    ) -> [(T, bool); 3] {
        let one = T::from(1);
        [(limit - one, true), (limit, true), (limit + one, false)]
    }

    #[test]
    fn limits_at_minus_one_limit_and_plus_one() {
        let c = CollectionId::pg(1, 0);
        for (len, ok) in edges(MAX_NAME_LEN) {
            let o = ObjectId::new(1, "n".repeat(len));
            assert_eq!(
                validate_op(&Op::Touch { cid: c, oid: o }).is_ok(),
                ok,
                "name len {len}"
            );
        }
        let o = ObjectId::new(1, "o");
        for (len, ok) in edges(MAX_ATTR_VALUE_LEN) {
            let op = Op::SetAttr {
                cid: c,
                oid: o.clone(),
                name: "a".into(),
                value: vec![0; len],
            };
            assert_eq!(validate_op(&op).is_ok(), ok, "attr len {len}");
        }
        for (len, ok) in edges(MAX_ATTR_NAME_LEN) {
            let op = Op::RmAttr {
                cid: c,
                oid: o.clone(),
                name: "a".repeat(len),
            };
            assert_eq!(validate_op(&op).is_ok(), ok, "attr name len {len}");
        }
        for (size, ok) in edges(MAX_OBJECT_SIZE) {
            let op = Op::Truncate {
                cid: c,
                oid: o.clone(),
                size,
            };
            assert_eq!(validate_op(&op).is_ok(), ok, "truncate {size}");
        }
        let op = Op::Zero {
            cid: c,
            oid: o.clone(),
            off: u64::MAX,
            len: 2,
        };
        assert_eq!(validate_op(&op).unwrap_err().kind(), ErrorKind::FileTooBig);
    }

    /// One write at 1 GiB - 1, 1 GiB and 1 GiB + 1 bytes (zeroed buffers the allocator
    /// maps lazily, so this costs address space, not memory).
    #[test]
    fn one_write_at_its_limit() {
        let c = CollectionId::pg(1, 0);
        for (len, ok) in edges(MAX_WRITE_LEN) {
            let op = Op::Write {
                cid: c,
                oid: ObjectId::new(1, "o"),
                off: 0,
                data: vec![0; len],
                fadvise: 0,
            };
            match validate_op(&op) {
                Ok(()) => assert!(ok, "write of {len} accepted"),
                Err(e) => {
                    assert!(!ok, "write of {len}: {e}");
                    assert_eq!(e.kind(), ErrorKind::TooBig, "{e}");
                }
            }
        }
    }

    #[test]
    fn bad_names_are_rejected() {
        let c = CollectionId::pg(1, 0);
        for o in [
            ObjectId::min(),
            ObjectId::new(i64::MIN, ""),
            ObjectId::new(1, "a\0b"),
            ObjectId::max_sentinel(),
        ] {
            assert_eq!(
                validate_op(&Op::Touch { cid: c, oid: o })
                    .unwrap_err()
                    .kind(),
                ErrorKind::InvalidArgument
            );
        }
        let o = ObjectId::new(1, "o");
        let op = Op::Clone {
            cid: c,
            src: o.clone(),
            dst: o,
        };
        assert!(validate_op(&op).is_err());
        let op = Op::SplitCollection2 {
            cid: c,
            bits: 2,
            rem: 4,
            dest: CollectionId::pg(1, 4),
        };
        assert!(validate_op(&op).is_err());
    }
}
