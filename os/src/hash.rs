//! Ceph's object name hash (`ceph_str_hash_rjenkins`, Bob Jenkins' 1996 hash)
//! and the locator rule that decides what is hashed.
//!
//! Object order and collection split/merge both depend on these exact values,
//! so they are pinned by vectors taken from Ceph itself.

#[inline]
fn mix(a: &mut u32, b: &mut u32, c: &mut u32) {
    *a = a.wrapping_sub(*b).wrapping_sub(*c) ^ (*c >> 13);
    *b = b.wrapping_sub(*c).wrapping_sub(*a) ^ (*a << 8);
    *c = c.wrapping_sub(*a).wrapping_sub(*b) ^ (*b >> 13);
    *a = a.wrapping_sub(*b).wrapping_sub(*c) ^ (*c >> 12);
    *b = b.wrapping_sub(*c).wrapping_sub(*a) ^ (*a << 16);
    *c = c.wrapping_sub(*a).wrapping_sub(*b) ^ (*b >> 5);
    *a = a.wrapping_sub(*b).wrapping_sub(*c) ^ (*c >> 3);
    *b = b.wrapping_sub(*c).wrapping_sub(*a) ^ (*a << 10);
    *c = c.wrapping_sub(*a).wrapping_sub(*b) ^ (*b >> 15);
}

#[inline]
fn le32(k: &[u8]) -> u32 {
    let mut v = 0u32;
    for (i, b) in k.iter().take(4).enumerate() {
        v |= u32::from(*b) << (8 * i);
    }
    v
}

/// `ceph_str_hash_rjenkins`: the default object hash of Ceph pools.
pub fn rjenkins(data: &[u8]) -> u32 {
    let mut a: u32 = 0x9e37_79b9;
    let mut b: u32 = a;
    let mut c: u32 = 0;
    let mut k = data;
    while k.len() >= 12 {
        a = a.wrapping_add(le32(&k[0..4]));
        b = b.wrapping_add(le32(&k[4..8]));
        c = c.wrapping_add(le32(&k[8..12]));
        mix(&mut a, &mut b, &mut c);
        k = &k[12..];
    }
    // Ceph adds the length as a u32, so lengths past 4 GiB wrap exactly like the C code.
    c = c.wrapping_add(data.len() as u32);
    // The tail: a takes bytes 0..4, b bytes 4..8, c bytes 8..11 shifted by 8
    // (c's low byte is reserved for the length).
    for (i, byte) in k.iter().enumerate() {
        let v = u32::from(*byte);
        match i {
            0..=3 => a = a.wrapping_add(v << (8 * i)),
            4..=7 => b = b.wrapping_add(v << (8 * (i - 4))),
            _ => c = c.wrapping_add(v << (8 * (i - 7))),
        }
    }
    mix(&mut a, &mut b, &mut c);
    c
}

/// The hash Ceph gives an object: rjenkins of the locator key (the key if set,
/// else the name), prefixed by `namespace + 0x1f` when the namespace is not empty
/// (`pg_pool_t::hash_key`).
pub fn object_hash(namespace: &str, key: &str, name: &str) -> u32 {
    let locator = if key.is_empty() { name } else { key };
    if namespace.is_empty() {
        rjenkins(locator.as_bytes())
    } else {
        let mut buf = Vec::with_capacity(namespace.len() + 1 + locator.len());
        buf.extend_from_slice(namespace.as_bytes());
        buf.push(0x1f);
        buf.extend_from_slice(locator.as_bytes());
        rjenkins(&buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        assert_eq!(rjenkins(b""), 0xbd49_d10d);
        assert_eq!(rjenkins(b"a"), 0x29ee_c818);
        assert_eq!(rjenkins(b"foo"), 0x7fc1_f406);
        assert_eq!(rjenkins(b"0123456789ab"), 0x92f3_1ad0);
        assert_eq!(rjenkins(b"0123456789abc"), 0x88c1_bd29);
        assert_eq!(object_hash("ns1", "", "foo"), 0xf456_9544);
        assert_eq!(object_hash("", "foo", "obj_0"), 0x7fc1_f406);
    }
}
