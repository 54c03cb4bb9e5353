//! Volume header: sector 0 of each volume file, after the sector header.
//!
//! ```text
//! file offset 0   sector header (journal magic, volume number low bits)
//! 8   u32  magic "OSJV"
//! 12  u16  version (1)
//! 14  u16  reserved (0)
//! 16  u64  volume number
//! 24  u64  spill-in: stream bytes at the start of this volume that continue a batch begun in an
//!          earlier volume (may exceed the volume's capacity for a batch spanning several)
//! 32  u64  volume size
//! 40  u32  sector size
//! 44  u32  TOC length
//! 48  u32  CRC32C of file bytes 0..48
//! ```
//! The rest of sector 0 is zero. Written together with the first batch that touches the volume,
//! so a scan can start at any live volume: skip `spill_in` stream bytes, then batches follow.

use super::{check_crc, get_u16, get_u32, get_u64, sector, Geometry, Reject};

/// Bytes of sector 0 used (sector header included).
pub const LEN: usize = 52;
/// "OSJV".
pub const MAGIC: u32 = u32::from_le_bytes(*b"OSJV");
/// Current version.
pub const VERSION: u16 = 1;

/// A decoded volume header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VolumeHeader {
    /// Volume number.
    pub volume: u64,
    /// Stream bytes continuing a batch from earlier volumes.
    pub spill_in: u64,
    /// Geometry of the journal.
    pub geometry: Geometry,
}

impl VolumeHeader {
    /// Encode as the first [`LEN`] bytes of sector 0.
    pub fn encode(&self, magic: u32) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[0..8].copy_from_slice(&sector::encode(magic, self.volume));
        b[8..12].copy_from_slice(&MAGIC.to_le_bytes());
        b[12..14].copy_from_slice(&VERSION.to_le_bytes());
        b[16..24].copy_from_slice(&self.volume.to_le_bytes());
        b[24..32].copy_from_slice(&self.spill_in.to_le_bytes());
        b[32..40].copy_from_slice(&self.geometry.volume_size.to_le_bytes());
        b[40..44].copy_from_slice(&self.geometry.sector_size.to_le_bytes());
        b[44..48].copy_from_slice(&self.geometry.toc_len.to_le_bytes());
        let c = crc32c::crc32c(&b[..48]);
        b[48..52].copy_from_slice(&c.to_le_bytes());
        b
    }

    /// Decode sector 0 without knowing the journal magic (for tools); returns it too.
    pub fn decode_any(b: &[u8]) -> Result<(Self, u32), Reject> {
        let jm = get_u32(b, 0)?;
        let m = get_u32(b, 8)?;
        if m != MAGIC {
            return Err(Reject(format!("volume header magic {m:#010x}")));
        }
        check_crc(b, 48, "volume header")?;
        let version = get_u16(b, 12)?;
        if version != VERSION {
            return Err(Reject(format!("volume header version {version}")));
        }
        let h = VolumeHeader {
            volume: get_u64(b, 16)?,
            spill_in: get_u64(b, 24)?,
            geometry: Geometry {
                volume_size: get_u64(b, 32)?,
                sector_size: get_u32(b, 40)?,
                toc_len: get_u32(b, 44)?,
            },
        };
        h.geometry
            .validate()
            .map_err(|e| Reject(format!("volume header geometry: {e}")))?;
        sector::check(b, jm, h.volume)?;
        Ok((h, jm))
    }

    /// Decode sector 0 of volume `vol` of a journal with this magic and geometry.
    pub fn decode(b: &[u8], magic: u32, vol: u64, geo: &Geometry) -> Result<Self, Reject> {
        sector::check(b, magic, vol)?;
        let (h, _) = Self::decode_any(b)?;
        if h.volume != vol {
            return Err(Reject(format!("volume header names volume {}", h.volume)));
        }
        if h.geometry != *geo {
            return Err(Reject(
                "volume header geometry differs from the journal's".into(),
            ));
        }
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> VolumeHeader {
        VolumeHeader {
            volume: 12,
            spill_in: 1000,
            geometry: Geometry::default(),
        }
    }

    #[test]
    fn roundtrip() {
        let b = sample().encode(0x55aa);
        assert_eq!(
            VolumeHeader::decode(&b, 0x55aa, 12, &Geometry::default()).unwrap(),
            sample()
        );
        assert_eq!(VolumeHeader::decode_any(&b).unwrap(), (sample(), 0x55aa));
    }

    #[test]
    fn detects_corruption() {
        let g = Geometry::default();
        let b = sample().encode(0x55aa);
        for i in 0..LEN {
            for bit in 0..8 {
                let mut c = b;
                c[i] ^= 1 << bit;
                assert!(
                    VolumeHeader::decode(&c, 0x55aa, 12, &g).is_err(),
                    "byte {i} bit {bit}"
                );
            }
        }
        assert!(VolumeHeader::decode(&b, 0x55aa, 13, &g).is_err());
        assert!(VolumeHeader::decode(&b[..40], 0x55aa, 12, &g).is_err());
        assert!(VolumeHeader::decode(&[0u8; LEN], 0, 0, &g).is_err());
    }
}
