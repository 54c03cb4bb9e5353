//! On-disk formats of the journal, one module per format. `docs/FORMATS.md` describes every byte.
//!
//! All integers are little-endian and fixed width. Every decoder checks magic, version, lengths
//! and checksum before using a field, and returns a [`Reject`] instead of panicking.
//!
//! Geometry of a volume file (`sector_size` = S, `volume_size` = V, `toc_len` = T):
//! ```text
//! sector 0                  volume header           (written with the first batch touching it)
//! sectors 1 ..= D           data sectors            D = V/S - 1 - T/S
//! bytes V-T .. V            table of contents       (written with the batch that closes it)
//! ```
//! Every sector, including sector 0 and the TOC sectors, starts with an 8-byte sector header
//! (journal magic, low 32 bits of the volume number). The payloads of the data sectors of
//! consecutive volumes form one byte stream holding batches; a batch starts at a sector payload
//! start and is padded with zeros to the end of its last sector.

pub mod batch;
pub mod entry;
pub mod info;
pub mod sector;
pub mod toc;
pub mod volume;

use crate::error::{Error, Result};

/// Why a decoder refused some bytes. Turned into [`Error::Corrupt`] or a torn-tail decision by
/// the caller, who knows the position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject(pub String);

impl Reject {
    pub(crate) fn new(s: impl Into<String>) -> Self {
        Reject(s.into())
    }
}

/// Bytes that end before a field does: a file or record cut short.
fn truncated(have: usize, need: usize) -> Reject {
    Reject(format!(
        "truncated: {have} bytes where at least {need} are needed"
    ))
}

pub(crate) fn get_u16(b: &[u8], off: usize) -> Result<u16, Reject> {
    b.get(off..off + 2)
        .and_then(|s| s.try_into().ok())
        .map(u16::from_le_bytes)
        .ok_or_else(|| truncated(b.len(), off + 2))
}

pub(crate) fn get_u32(b: &[u8], off: usize) -> Result<u32, Reject> {
    b.get(off..off + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or_else(|| truncated(b.len(), off + 4))
}

pub(crate) fn get_u64(b: &[u8], off: usize) -> Result<u64, Reject> {
    b.get(off..off + 8)
        .and_then(|s| s.try_into().ok())
        .map(u64::from_le_bytes)
        .ok_or_else(|| truncated(b.len(), off + 8))
}

/// Check `crc32c(b[..n]) == u32 at b[n..n+4]`.
pub(crate) fn check_crc(b: &[u8], n: usize, what: &str) -> Result<(), Reject> {
    let body = b.get(..n).ok_or_else(|| truncated(b.len(), n + 4))?;
    let stored = get_u32(b, n)?;
    let actual = crc32c::crc32c(body);
    if stored == actual {
        Ok(())
    } else {
        Err(Reject(format!(
            "{what} checksum mismatch (stored {stored:#010x}, computed {actual:#010x})"
        )))
    }
}

/// Size of everything: sector size, volume size, TOC area length. Fixed at creation and stored in
/// the info file and in every volume header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Sector size S: a power of two, 512 ..= 65536.
    pub sector_size: u32,
    /// Volume file size V: a multiple of S.
    pub volume_size: u64,
    /// Bytes reserved for the TOC at the end of each volume: a multiple of S, at least S.
    pub toc_len: u32,
}

impl Default for Geometry {
    fn default() -> Self {
        Geometry {
            sector_size: 4096,
            volume_size: 64 << 20,
            toc_len: 64 << 10,
        }
    }
}

/// A place in the byte stream: volume number and offset within that volume's data stream
/// (`0 ..= capacity`). Internal; the public form is [`crate::Position`] (a file offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct StreamPos {
    pub vol: u64,
    pub soff: u64,
}

impl Geometry {
    /// Check the invariants documented on the fields.
    pub fn validate(&self) -> Result<()> {
        let s = u64::from(self.sector_size);
        let bad = |m: &str| Err(Error::InvalidConfig(m.to_owned()));
        if !self.sector_size.is_power_of_two() || !(512..=65536).contains(&self.sector_size) {
            return bad("sector size must be a power of two in 512..=65536");
        }
        if !self.volume_size.is_multiple_of(s)
            || !u64::from(self.toc_len).is_multiple_of(s)
            || self.toc_len == 0
        {
            return bad("volume size and TOC length must be non-zero multiples of the sector size");
        }
        if self.volume_size > 1 << 40 {
            return bad("volume size must be at most 1 TiB");
        }
        if self.volume_size / s < 3 + u64::from(self.toc_len) / s {
            return bad("volume must hold a header sector, two data sectors and the TOC");
        }
        Ok(())
    }

    pub(crate) fn s(&self) -> u64 {
        u64::from(self.sector_size)
    }

    /// Payload bytes per sector.
    pub fn payload(&self) -> u64 {
        self.s() - sector::HEADER_LEN as u64
    }

    /// Data sectors per volume.
    pub fn data_sectors(&self) -> u64 {
        self.volume_size / self.s() - 1 - u64::from(self.toc_len) / self.s()
    }

    /// Stream bytes per volume.
    pub fn capacity(&self) -> u64 {
        self.data_sectors() * self.payload()
    }

    /// File offset of the TOC area.
    pub fn toc_offset(&self) -> u64 {
        self.volume_size - u64::from(self.toc_len)
    }

    /// File offset of a stream offset (`soff < capacity`).
    pub(crate) fn file_offset(&self, soff: u64) -> u64 {
        let sector = 1 + soff / self.payload();
        sector * self.s() + sector::HEADER_LEN as u64 + soff % self.payload()
    }

    /// Stream offset of a file offset inside a data sector payload.
    pub fn stream_offset(&self, file_off: u64) -> Option<u64> {
        let sector = file_off / self.s();
        let within = file_off % self.s();
        if sector == 0 || sector > self.data_sectors() || within < sector::HEADER_LEN as u64 {
            return None;
        }
        Some((sector - 1) * self.payload() + within - sector::HEADER_LEN as u64)
    }

    /// Move `n` stream bytes forward, crossing into later volumes as needed. A position at the
    /// very end of a volume is normalised to the start of the next one.
    pub(crate) fn advance(&self, p: StreamPos, n: u64) -> StreamPos {
        let cap = self.capacity();
        let total = p.soff + n;
        StreamPos {
            vol: p.vol + total / cap,
            soff: total % cap,
        }
    }

    /// Round up to the next sector payload start (where the next batch begins).
    pub(crate) fn align_up(&self, p: StreamPos) -> StreamPos {
        let pl = self.payload();
        let soff = p.soff.div_ceil(pl) * pl;
        self.advance(
            StreamPos {
                vol: p.vol,
                soff: 0,
            },
            soff,
        )
    }

    /// The public position of a stream position.
    pub(crate) fn position(&self, p: StreamPos) -> crate::Position {
        crate::Position {
            volume: p.vol,
            offset: self.file_offset(p.soff),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g() -> Geometry {
        Geometry {
            sector_size: 512,
            volume_size: 8192,
            toc_len: 1024,
        }
    }

    #[test]
    fn geometry_arithmetic() {
        let g = g();
        g.validate().unwrap();
        assert_eq!(g.data_sectors(), 16 - 1 - 2);
        assert_eq!(g.payload(), 504);
        assert_eq!(g.file_offset(0), 512 + 8);
        assert_eq!(g.file_offset(504), 1024 + 8);
        assert_eq!(g.stream_offset(1024 + 8 + 3), Some(507));
        assert_eq!(g.stream_offset(1024 + 3), None);
        assert_eq!(g.stream_offset(3), None);
        let p = g.advance(StreamPos { vol: 1, soff: 10 }, g.capacity());
        assert_eq!(p, StreamPos { vol: 2, soff: 10 });
        let a = g.align_up(StreamPos {
            vol: 1,
            soff: g.capacity() - 1,
        });
        assert_eq!(a, StreamPos { vol: 2, soff: 0 });
        assert_eq!(g.align_up(StreamPos { vol: 1, soff: 504 }).soff, 504);
        for i in 0..g.capacity() {
            assert_eq!(g.stream_offset(g.file_offset(i)), Some(i));
        }
    }

    #[test]
    fn geometry_rejects_bad_values() {
        let mut b = g();
        b.sector_size = 1000;
        assert!(b.validate().is_err());
        let mut b = g();
        b.volume_size = 8193;
        assert!(b.validate().is_err());
        let mut b = g();
        b.toc_len = 0;
        assert!(b.validate().is_err());
        let mut b = g();
        b.volume_size = 512 * 4;
        assert!(b.validate().is_err());
        Geometry::default().validate().unwrap();
    }
}
