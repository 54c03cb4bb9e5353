//! Table of contents: the last `toc_len` bytes of a volume, written when the volume is closed.
//!
//! The TOC area is made of sectors, each starting with the sector header; their payloads form a
//! small stream holding:
//! ```text
//! 0   u32  magic "OSJT"
//! 4   u16  version (1)
//! 6   u16  reserved (0)
//! 8   u64  volume number
//! 16  u64  spill-in (as in the volume header)
//! 24  u64  spill-out: stream bytes of the closing batch that continue in the next volume
//! 32  u64  sequence number of the first batch starting in this volume (0 if none)
//! 40  u64  sequence number of the closing batch (the last one touching this volume)
//! 48  u32  entries whose header starts in this volume
//! 52  u32  CRC32C of the closing batch header
//! 56  u32  user length n
//! 60  u32  CRC32C of bytes 0..60
//! 64  n    user bytes (from the `next_volume` callback)
//! 64+n u32 CRC32C of the user bytes
//! ```
//! The TOC is written in the same write as the batch that closes the volume, so it is only as
//! durable as that batch: check `closing_batch_crc` against the chain before trusting it.

use super::{check_crc, get_u16, get_u32, get_u64, sector, Geometry, Reject};

/// "OSJT".
pub const MAGIC: u32 = u32::from_le_bytes(*b"OSJT");
/// Current version.
pub const VERSION: u16 = 1;
const FIXED: usize = 64;

/// A decoded table of contents.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Toc {
    /// Volume number.
    pub volume: u64,
    /// Stream bytes continuing a batch from earlier volumes.
    pub spill_in: u64,
    /// Stream bytes of the closing batch continuing in the next volume.
    pub spill_out: u64,
    /// First batch starting in this volume (0 if none).
    pub first_batch_seq: u64,
    /// The closing batch.
    pub last_batch_seq: u64,
    /// Entries starting in this volume.
    pub entries: u32,
    /// CRC of the closing batch header.
    pub closing_batch_crc: u32,
    /// Bytes supplied by the `next_volume` callback.
    pub user: Vec<u8>,
}

/// Largest user payload a TOC area of this geometry holds.
pub fn max_user_len(geo: &Geometry) -> usize {
    let stream = (u64::from(geo.toc_len) / geo.s()) * geo.payload();
    usize::try_from(stream)
        .unwrap_or(usize::MAX)
        .saturating_sub(FIXED + 4)
}

impl Toc {
    /// Encode into a whole TOC area (`toc_len` bytes, sector headers included).
    pub fn encode(&self, magic: u32, geo: &Geometry) -> Result<Vec<u8>, Reject> {
        if self.user.len() > max_user_len(geo) {
            return Err(Reject::new("TOC user bytes too large"));
        }
        let mut s = Vec::with_capacity(FIXED + self.user.len() + 4);
        s.extend_from_slice(&MAGIC.to_le_bytes());
        s.extend_from_slice(&VERSION.to_le_bytes());
        s.extend_from_slice(&0u16.to_le_bytes());
        s.extend_from_slice(&self.volume.to_le_bytes());
        s.extend_from_slice(&self.spill_in.to_le_bytes());
        s.extend_from_slice(&self.spill_out.to_le_bytes());
        s.extend_from_slice(&self.first_batch_seq.to_le_bytes());
        s.extend_from_slice(&self.last_batch_seq.to_le_bytes());
        s.extend_from_slice(&self.entries.to_le_bytes());
        s.extend_from_slice(&self.closing_batch_crc.to_le_bytes());
        s.extend_from_slice(&(self.user.len() as u32).to_le_bytes());
        let c = crc32c::crc32c(&s);
        s.extend_from_slice(&c.to_le_bytes());
        s.extend_from_slice(&self.user);
        s.extend_from_slice(&crc32c::crc32c(&self.user).to_le_bytes());
        let pl = geo.payload() as usize;
        let mut area = vec![0u8; geo.toc_len as usize];
        for (i, sec) in area.chunks_mut(geo.sector_size as usize).enumerate() {
            sec[..sector::HEADER_LEN].copy_from_slice(&sector::encode(magic, self.volume));
            let from = i * pl;
            if from < s.len() {
                let n = pl.min(s.len() - from);
                sec[sector::HEADER_LEN..sector::HEADER_LEN + n].copy_from_slice(&s[from..from + n]);
            }
        }
        Ok(area)
    }

    /// Decode a TOC area of volume `vol`. `Ok(None)` when the area was never written for this
    /// volume (its first sector header does not match); `Err` when it was but does not validate.
    pub fn decode(
        area: &[u8],
        magic: u32,
        vol: u64,
        geo: &Geometry,
    ) -> Result<Option<Toc>, Reject> {
        let ss = geo.sector_size as usize;
        if area.len() < ss || sector::check(area, magic, vol).is_err() {
            return Ok(None);
        }
        let mut s = Vec::with_capacity(area.len());
        for sec in area.chunks(ss) {
            if sec.len() < ss {
                break;
            }
            sector::check(sec, magic, vol)?;
            s.extend_from_slice(&sec[sector::HEADER_LEN..]);
        }
        let m = get_u32(&s, 0)?;
        if m != MAGIC {
            return Err(Reject(format!("TOC magic {m:#010x}")));
        }
        check_crc(&s, 60, "TOC header")?;
        let version = get_u16(&s, 4)?;
        if version != VERSION {
            return Err(Reject(format!("TOC version {version}")));
        }
        let user_len = get_u32(&s, 56)? as usize;
        if user_len > max_user_len(geo) {
            return Err(Reject::new("TOC user length too large"));
        }
        let user = s
            .get(FIXED..FIXED + user_len)
            .ok_or_else(|| Reject::new("TOC user bytes truncated"))?;
        check_crc(&s[FIXED..], user_len, "TOC user bytes")?;
        let t = Toc {
            volume: get_u64(&s, 8)?,
            spill_in: get_u64(&s, 16)?,
            spill_out: get_u64(&s, 24)?,
            first_batch_seq: get_u64(&s, 32)?,
            last_batch_seq: get_u64(&s, 40)?,
            entries: get_u32(&s, 48)?,
            closing_batch_crc: get_u32(&s, 52)?,
            user: user.to_vec(),
        };
        if t.volume != vol {
            return Err(Reject(format!("TOC names volume {}", t.volume)));
        }
        Ok(Some(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geo() -> Geometry {
        Geometry {
            sector_size: 512,
            volume_size: 8192,
            toc_len: 1024,
        }
    }

    fn sample(user: usize) -> Toc {
        Toc {
            volume: 3,
            spill_in: 10,
            spill_out: 20,
            first_batch_seq: 5,
            last_batch_seq: 9,
            entries: 17,
            closing_batch_crc: 0xfeed,
            user: (0..user).map(|i| i as u8).collect(),
        }
    }

    #[test]
    fn roundtrip() {
        let g = geo();
        for n in [0, 1, 500, max_user_len(&g)] {
            let a = sample(n).encode(77, &g).unwrap();
            assert_eq!(a.len(), 1024);
            assert_eq!(Toc::decode(&a, 77, 3, &g).unwrap(), Some(sample(n)));
        }
        assert!(sample(max_user_len(&g) + 1).encode(77, &g).is_err());
        assert_eq!(Toc::decode(&[0u8; 1024], 77, 3, &g).unwrap(), None);
    }

    #[test]
    fn detects_corruption() {
        let g = geo();
        let a = sample(600).encode(77, &g).unwrap();
        // Every byte that carries information (sector headers of the second sector, TOC fields,
        // user bytes, checksums) is covered; only padding after the trailing CRC is free.
        let used = 8 + 64 + 600 + 4 + 8;
        for i in 0..used {
            let mut c = a.clone();
            c[i] ^= 0x10;
            let r = Toc::decode(&c, 77, 3, &g);
            if i < 8 {
                // The first sector header decides "never written".
                assert_eq!(r, Ok(None), "byte {i}");
            } else {
                assert!(r.is_err(), "byte {i}: {r:?}");
            }
        }
        assert!(Toc::decode(&a, 77, 4, &g).unwrap().is_none());
    }
}
