//! The checksummed form of every xattr FileStore keeps (`user.ostore.*`: object
//! number, birth, replay guard, long-name oid, inline attrs, a collection's bits): the
//! value followed by a CRC32C of the name and the value, so a value changed or cut
//! outside the store is an error (EUCLEAN) rather than an attr, an object number or a
//! split rule taken as it is.

use std::fs::File;
use std::io;

use crate::sys;

/// Bytes the checksum adds to each value.
pub(crate) const TRAILER: usize = 4;

fn crc(name: &[u8], value: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(name), value)
}

/// The stored form of `value` under `name`.
pub(crate) fn seal(name: &[u8], value: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(value.len() + TRAILER);
    v.extend_from_slice(value);
    v.extend_from_slice(&crc(name, value).to_le_bytes());
    v
}

/// The value inside a stored form, or an `InvalidData` error naming the xattr.
pub(crate) fn open(name: &[u8], mut stored: Vec<u8>) -> io::Result<Vec<u8>> {
    let bad = |why: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("xattr {} {why}", String::from_utf8_lossy(name)),
        )
    };
    let Some(n) = stored.len().checked_sub(TRAILER) else {
        return Err(bad("is shorter than its checksum"));
    };
    let want = u32::from_le_bytes([stored[n], stored[n + 1], stored[n + 2], stored[n + 3]]);
    stored.truncate(n);
    if crc(name, &stored) != want {
        return Err(bad("fails its checksum"));
    }
    Ok(stored)
}

/// Xattr `name` of an open file or directory, verified; `Ok(None)` when absent.
pub(crate) fn get(f: &File, name: &[u8]) -> io::Result<Option<Vec<u8>>> {
    sys::fgetxattr(f, name)?.map(|v| open(name, v)).transpose()
}

/// Sets xattr `name` to `value` with its checksum.
pub(crate) fn set(f: &File, name: &[u8], value: &[u8]) -> io::Result<()> {
    sys::fsetxattr(f, name, &seal(name, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_round_trip_and_every_damage_is_refused() {
        for (name, value) in [
            (&b"user.ostore.n"[..], &[7u8; 16][..]),
            (b"user.ostore.a._", b""),
            (b"user.ostore.bits", &[3, 0, 0, 0]),
        ] {
            let s = seal(name, value);
            assert_eq!(s.len(), value.len() + TRAILER);
            assert_eq!(open(name, s.clone()).unwrap(), value);
            // Every flipped bit, every cut, and the value under another name.
            for i in 0..s.len() * 8 {
                let mut d = s.clone();
                d[i / 8] ^= 1 << (i % 8);
                let e = open(name, d).unwrap_err();
                assert_eq!(e.kind(), io::ErrorKind::InvalidData);
            }
            for n in 0..s.len() {
                assert!(open(name, s[..n].to_vec()).is_err(), "cut to {n}");
            }
            assert!(open(b"user.ostore.other", s).is_err());
        }
        let e = open(b"user.ostore.g", vec![1, 2]).unwrap_err();
        assert!(e.to_string().contains("user.ostore.g is shorter"), "{e}");
    }
}
