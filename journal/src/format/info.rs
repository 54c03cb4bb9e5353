//! Journal info file (`journal.info`): the journal's geometry and magic, written once at creation
//! with the atomic-file writer (which adds the checksum, see [`crate::atomic`]).
//!
//! Payload of the atomic file (whose own user magic is also "OSJI"):
//! ```text
//! 0   u32  magic "OSJI"
//! 4   u16  version (1)
//! 6   u16  reserved (0)
//! 8   u32  journal magic (random, non-zero; starts every sector)
//! 12  u32  sector size
//! 16  u64  volume size
//! 24  u32  TOC length
//! 28  u32  reserved (0)
//! ```

use super::{get_u16, get_u32, get_u64, Geometry, Reject};

/// "OSJI".
pub const MAGIC: u32 = u32::from_le_bytes(*b"OSJI");
/// Current version.
pub const VERSION: u16 = 1;
/// Encoded length.
pub const LEN: usize = 32;
/// File name inside the journal directory.
pub const FILE_NAME: &str = "journal.info";

/// The decoded info file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalInfo {
    /// Magic at the start of every sector.
    pub magic: u32,
    /// Geometry.
    pub geometry: Geometry,
}

impl JournalInfo {
    /// Encode.
    pub fn encode(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        b[4..6].copy_from_slice(&VERSION.to_le_bytes());
        b[8..12].copy_from_slice(&self.magic.to_le_bytes());
        b[12..16].copy_from_slice(&self.geometry.sector_size.to_le_bytes());
        b[16..24].copy_from_slice(&self.geometry.volume_size.to_le_bytes());
        b[24..28].copy_from_slice(&self.geometry.toc_len.to_le_bytes());
        b
    }

    /// Decode and validate.
    pub fn decode(b: &[u8]) -> Result<Self, Reject> {
        if b.len() != LEN {
            return Err(Reject(format!("info is {} bytes, expected {LEN}", b.len())));
        }
        let m = get_u32(b, 0)?;
        if m != MAGIC {
            return Err(Reject(format!("info magic {m:#010x}")));
        }
        let v = get_u16(b, 4)?;
        if v != VERSION {
            return Err(Reject(format!("info version {v}")));
        }
        let i = JournalInfo {
            magic: get_u32(b, 8)?,
            geometry: Geometry {
                sector_size: get_u32(b, 12)?,
                volume_size: get_u64(b, 16)?,
                toc_len: get_u32(b, 24)?,
            },
        };
        if i.magic == 0 {
            return Err(Reject::new("journal magic is zero"));
        }
        i.geometry
            .validate()
            .map_err(|e| Reject(format!("info geometry: {e}")))?;
        Ok(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let i = JournalInfo {
            magic: 0x1234_5678,
            geometry: Geometry::default(),
        };
        assert_eq!(JournalInfo::decode(&i.encode()).unwrap(), i);
    }

    #[test]
    fn detects_corruption() {
        let i = JournalInfo {
            magic: 0x1234_5678,
            geometry: Geometry::default(),
        };
        let b = i.encode();
        assert!(JournalInfo::decode(&b[..31]).is_err());
        let mut z = b;
        z[8..12].fill(0);
        assert!(JournalInfo::decode(&z).is_err());
        for idx in [0, 4, 13, 16, 24] {
            let mut c = b;
            c[idx] ^= 0x40;
            assert!(JournalInfo::decode(&c).is_err(), "byte {idx}");
        }
        // Checksum-level corruption is the atomic file's job; see atomic.rs tests.
    }
}
