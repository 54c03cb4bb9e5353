//! Sector header: the first 8 bytes of every sector of a volume.
//!
//! ```text
//! 0  u32  journal magic (random per journal, from the info file; never 0)
//! 4  u32  low 32 bits of the volume number
//! ```
//! A sector whose header does not match was not written as part of this volume (a blank or
//! recycled sector, or a torn write). The header has no checksum of its own: the batch, entry,
//! volume-header and TOC checksums cover the bytes it frames.

use super::{get_u32, Reject};

/// Bytes of the sector header.
pub const HEADER_LEN: usize = 8;

/// Encode the header of a sector of volume `vol`.
pub fn encode(magic: u32, vol: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0..4].copy_from_slice(&magic.to_le_bytes());
    h[4..8].copy_from_slice(&(vol as u32).to_le_bytes());
    h
}

/// Check that `sector` starts with the header of volume `vol`.
pub fn check(sector: &[u8], magic: u32, vol: u64) -> Result<(), Reject> {
    let m = get_u32(sector, 0)?;
    if m != magic {
        return Err(Reject(format!(
            "sector magic {m:#010x} is not {magic:#010x}"
        )));
    }
    let v = get_u32(sector, 4)?;
    if v != vol as u32 {
        return Err(Reject(format!(
            "sector belongs to volume (low bits) {v}, not {}",
            vol as u32
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let h = encode(0xdead_beef, 0x1_0000_0007);
        check(&h, 0xdead_beef, 0x1_0000_0007).unwrap();
        check(&h, 0xdead_beef, 7).unwrap();
    }

    #[test]
    fn detects_corruption() {
        let h = encode(0xdead_beef, 5);
        assert!(check(&h, 0xdead_beee, 5).is_err());
        assert!(check(&h, 0xdead_beef, 6).is_err());
        assert!(check(&h[..7], 0xdead_beef, 5).is_err());
        assert!(check(&[0u8; 8], 0xdead_beef, 5).is_err());
        for i in 0..HEADER_LEN {
            let mut b = h;
            b[i] ^= 1;
            assert!(check(&b, 0xdead_beef, 5).is_err(), "flip in byte {i}");
        }
    }
}
