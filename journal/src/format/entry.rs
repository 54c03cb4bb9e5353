//! Entry header: precedes each entry's metadata and data inside a batch.
//!
//! ```text
//! 0   u32  metadata length (<= 2^31)
//! 4   u32  data length (<= 2^31)
//! 8   u32  CRC32C of the metadata
//! 12  u32  CRC32C of the data
//! 16  u32  CRC32C of bytes 0..16
//! 20  metadata, then data (not aligned; may cross sectors and volumes)
//! ```
//! The entry has no magic or version of its own: it only exists inside a batch, whose header
//! carries both and binds the entry headers through its `entries_crc`.

use super::{check_crc, get_u32, Reject};

/// Bytes of the entry header.
pub const HEADER_LEN: usize = 20;
/// Largest metadata or data of one entry.
pub const MAX_LEN: u64 = 1 << 31;

/// A decoded entry header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryHeader {
    /// Metadata length.
    pub meta_len: u32,
    /// Data length.
    pub data_len: u32,
    /// CRC32C of the metadata.
    pub meta_crc: u32,
    /// CRC32C of the data.
    pub data_crc: u32,
}

impl EntryHeader {
    /// Build the header for `meta` and `data` whose CRCs are already known.
    pub fn new(meta_len: u32, data_len: u32, meta_crc: u32, data_crc: u32) -> Self {
        EntryHeader {
            meta_len,
            data_len,
            meta_crc,
            data_crc,
        }
    }

    /// Total stream bytes of the entry.
    pub fn total_len(&self) -> u64 {
        HEADER_LEN as u64 + u64::from(self.meta_len) + u64::from(self.data_len)
    }

    /// Encode.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&self.meta_len.to_le_bytes());
        b[4..8].copy_from_slice(&self.data_len.to_le_bytes());
        b[8..12].copy_from_slice(&self.meta_crc.to_le_bytes());
        b[12..16].copy_from_slice(&self.data_crc.to_le_bytes());
        let c = crc32c::crc32c(&b[..16]);
        b[16..20].copy_from_slice(&c.to_le_bytes());
        b
    }

    /// Decode and validate.
    pub fn decode(b: &[u8]) -> Result<Self, Reject> {
        check_crc(b, 16, "entry header")?;
        let h = EntryHeader {
            meta_len: get_u32(b, 0)?,
            data_len: get_u32(b, 4)?,
            meta_crc: get_u32(b, 8)?,
            data_crc: get_u32(b, 12)?,
        };
        if u64::from(h.meta_len) > MAX_LEN || u64::from(h.data_len) > MAX_LEN {
            return Err(Reject::new("entry length over 2^31"));
        }
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let h = EntryHeader::new(3, 1 << 31, 0x1234, 0xffff_ffff);
        assert_eq!(EntryHeader::decode(&h.encode()).unwrap(), h);
        assert_eq!(h.total_len(), 20 + 3 + (1 << 31));
    }

    #[test]
    fn detects_corruption() {
        let b = EntryHeader::new(3, 4, 5, 6).encode();
        for i in 0..HEADER_LEN {
            for bit in 0..8 {
                let mut c = b;
                c[i] ^= 1 << bit;
                assert!(EntryHeader::decode(&c).is_err(), "byte {i} bit {bit}");
            }
        }
        assert!(EntryHeader::decode(&b[..19]).is_err());
        // Valid checksum over an impossible length.
        let mut c = EntryHeader::new((1 << 31) + 1, 0, 0, 0).encode();
        assert!(EntryHeader::decode(&c).is_err());
        c[0] = 0;
        assert!(EntryHeader::decode(&c).is_err());
    }
}
