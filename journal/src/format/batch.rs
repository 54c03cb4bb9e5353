//! Batch header: one per group-commit write, at the start of a sector payload.
//!
//! ```text
//! 0   u32  magic "OSJB"
//! 4   u16  version (1)
//! 6   u16  flags (0)
//! 8   u64  volume number holding this header
//! 16  u64  file offset of this header in that volume
//! 24  u64  batch sequence number (consecutive from 1 over the life of the journal)
//! 32  u64  payload length: stream bytes of the entries that follow
//! 40  u32  number of entries
//! 44  u32  CRC32C of the previous batch header (0 for the first batch)
//! 48  u64  durable frontier when this batch was sealed: volume ...
//! 56  u64  ... and file offset (the start of the first batch not yet known durable)
//! 64  u32  CRC32C over the concatenated entry headers of this batch
//! 68  u32  CRC32C of bytes 0..68
//! ```
//! `prev_crc` and `seq` chain batches so a stale batch left beyond a torn tail by an earlier run
//! is never mistaken for a continuation; `synced` lets the scanner prove that a damaged batch had
//! been durable (corruption) rather than torn at a crash.

use super::{check_crc, get_u16, get_u32, get_u64, Reject};

/// Bytes of the batch header.
pub const HEADER_LEN: usize = 72;
/// "OSJB".
pub const MAGIC: u32 = u32::from_le_bytes(*b"OSJB");
/// Current version.
pub const VERSION: u16 = 1;

/// A decoded batch header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Volume holding the header.
    pub volume: u64,
    /// File offset of the header.
    pub offset: u64,
    /// Batch sequence number.
    pub seq: u64,
    /// Stream bytes of entries after the header.
    pub payload_len: u64,
    /// Number of entries.
    pub entries: u32,
    /// CRC of the previous batch header.
    pub prev_crc: u32,
    /// Durable frontier at seal time: volume.
    pub synced_volume: u64,
    /// Durable frontier at seal time: file offset.
    pub synced_offset: u64,
    /// CRC32C over the entry headers.
    pub entries_crc: u32,
}

impl BatchHeader {
    /// Encode; returns the bytes and the header CRC (the next batch's `prev_crc`).
    pub fn encode(&self) -> ([u8; HEADER_LEN], u32) {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        b[4..6].copy_from_slice(&VERSION.to_le_bytes());
        b[8..16].copy_from_slice(&self.volume.to_le_bytes());
        b[16..24].copy_from_slice(&self.offset.to_le_bytes());
        b[24..32].copy_from_slice(&self.seq.to_le_bytes());
        b[32..40].copy_from_slice(&self.payload_len.to_le_bytes());
        b[40..44].copy_from_slice(&self.entries.to_le_bytes());
        b[44..48].copy_from_slice(&self.prev_crc.to_le_bytes());
        b[48..56].copy_from_slice(&self.synced_volume.to_le_bytes());
        b[56..64].copy_from_slice(&self.synced_offset.to_le_bytes());
        b[64..68].copy_from_slice(&self.entries_crc.to_le_bytes());
        let c = crc32c::crc32c(&b[..68]);
        b[68..72].copy_from_slice(&c.to_le_bytes());
        (b, c)
    }

    /// Decode and validate; returns the header and its CRC.
    pub fn decode(b: &[u8]) -> Result<(Self, u32), Reject> {
        let magic = get_u32(b, 0)?;
        if magic != MAGIC {
            return Err(Reject(format!("batch magic {magic:#010x}")));
        }
        check_crc(b, 68, "batch header")?;
        let version = get_u16(b, 4)?;
        if version != VERSION {
            return Err(Reject(format!("batch version {version}")));
        }
        let flags = get_u16(b, 6)?;
        if flags != 0 {
            return Err(Reject(format!("batch flags {flags:#06x}")));
        }
        let h = BatchHeader {
            volume: get_u64(b, 8)?,
            offset: get_u64(b, 16)?,
            seq: get_u64(b, 24)?,
            payload_len: get_u64(b, 32)?,
            entries: get_u32(b, 40)?,
            prev_crc: get_u32(b, 44)?,
            synced_volume: get_u64(b, 48)?,
            synced_offset: get_u64(b, 56)?,
            entries_crc: get_u32(b, 64)?,
        };
        Ok((h, get_u32(b, 68)?))
    }

    /// The durable frontier recorded in the header, as `(volume, offset)`.
    pub fn synced(&self) -> (u64, u64) {
        (self.synced_volume, self.synced_offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> BatchHeader {
        BatchHeader {
            volume: 7,
            offset: 4104,
            seq: 99,
            payload_len: 123_456,
            entries: 3,
            prev_crc: 0xabcd_ef01,
            synced_volume: 6,
            synced_offset: 8,
            entries_crc: 42,
        }
    }

    #[test]
    fn roundtrip() {
        let (b, c) = sample().encode();
        let (h, c2) = BatchHeader::decode(&b).unwrap();
        assert_eq!(h, sample());
        assert_eq!(c, c2);
        assert_eq!(h.synced(), (6, 8));
    }

    #[test]
    fn detects_corruption() {
        let (b, _) = sample().encode();
        for i in 0..HEADER_LEN {
            for bit in 0..8 {
                let mut c = b;
                c[i] ^= 1 << bit;
                assert!(BatchHeader::decode(&c).is_err(), "byte {i} bit {bit}");
            }
        }
        assert!(BatchHeader::decode(&b[..71]).is_err());
        assert!(BatchHeader::decode(&[0u8; 72]).is_err());
        // A future version with a valid checksum is refused, not misread.
        let mut c = b;
        c[4] = 2;
        let crc = crc32c::crc32c(&c[..68]);
        c[68..72].copy_from_slice(&crc.to_le_bytes());
        assert!(BatchHeader::decode(&c).unwrap_err().0.contains("version"));
    }
}
