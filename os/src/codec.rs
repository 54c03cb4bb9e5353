//! Little-endian primitives for the project's hand-written binary formats, and the
//! versioned, checksummed frame every encoded structure sits in.
//!
//! Frame (all integers little-endian):
//! ```text
//! 0   4  magic            identifies the structure (e.g. "OSTX" for a transaction)
//! 4   1  struct_v         version of the encoder that wrote it
//! 5   1  compat_v         oldest decoder version that can read it
//! 6   2  reserved         zero
//! 8   4  payload length N
//! 12  N  payload
//! 12+N 4 CRC32C of bytes [0, 12+N)
//! ```
//! A decoder accepts any `struct_v` whose `compat_v` it understands and ignores payload
//! bytes past the fields it knows, so later versions can append fields (Ceph's
//! ENCODE_START/DECODE_START discipline).

use crate::error::{Error, Result};

/// Bytes of a frame's header: magic, struct and compat versions, two reserved bytes and
/// the payload length.
const FRAME_HEADER: usize = 12;
/// Bytes of frame overhead: header plus CRC trailer.
pub const FRAME_OVERHEAD: usize = FRAME_HEADER + 4;

/// Appends little-endian values to a buffer.
#[derive(Debug, Default)]
pub struct Encoder {
    buf: Vec<u8>,
}

impl Encoder {
    pub fn new() -> Encoder {
        Encoder { buf: Vec::new() }
    }
    pub fn with_capacity(n: usize) -> Encoder {
        Encoder {
            buf: Vec::with_capacity(n),
        }
    }
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub fn i8(&mut self, v: i8) {
        self.buf.push(v as u8);
    }
    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn bool(&mut self, v: bool) {
        self.buf.push(u8::from(v));
    }
    /// Length-prefixed (u32) bytes. Callers bound lengths by validation; a longer
    /// slice would be a bug, so it is clamped rather than silently wrapped.
    pub fn bytes(&mut self, v: &[u8]) {
        let r: Result<(), std::convert::Infallible> = self.bytes_with(|out| {
            out.extend_from_slice(v);
            Ok(())
        });
        let Ok(()) = r;
    }
    pub fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }
    pub fn raw(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }
    /// Length-prefixed (u32) bytes appended by `put`, which may fail.
    pub fn bytes_with<E>(
        &mut self,
        put: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<(), E> {
        let at = self.buf.len();
        self.u32(0);
        put(&mut self.buf)?;
        let n = self.buf.len() - at - 4;
        let n = u32::try_from(n).expect("encoded field over 4 GiB: validation missed it");
        self.buf[at..at + 4].copy_from_slice(&n.to_le_bytes());
        Ok(())
    }
    pub fn len(&self) -> usize {
        self.buf.len()
    }
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    pub fn into_inner(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads little-endian values from a slice; every read is bounds-checked and names
/// what it was reading when the input runs out.
#[derive(Debug, Clone)]
pub struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    pub fn new(buf: &'a [u8]) -> Decoder<'a> {
        Decoder { buf, pos: 0 }
    }
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    pub fn position(&self) -> usize {
        self.pos
    }
    pub fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(Error::corrupt(format!(
                "truncated input reading {what}: need {n} bytes at offset {}, have {}",
                self.pos,
                self.remaining()
            )));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
    pub fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.array::<1>(what)?[0])
    }
    pub fn i8(&mut self, what: &str) -> Result<i8> {
        Ok(self.array::<1>(what)?[0] as i8)
    }
    pub fn u16(&mut self, what: &str) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    pub fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    pub fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    pub fn i64(&mut self, what: &str) -> Result<i64> {
        Ok(i64::from_le_bytes(self.array(what)?))
    }
    pub fn bool(&mut self, what: &str) -> Result<bool> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(Error::corrupt(format!("bad boolean {v} in {what}"))),
        }
    }
    pub fn bytes(&mut self, what: &str) -> Result<&'a [u8]> {
        let n = self.u32(what)? as usize;
        self.take(n, what)
    }
    pub fn string(&mut self, what: &str) -> Result<String> {
        let b = self.bytes(what)?;
        String::from_utf8(b.to_vec()).map_err(|_| Error::corrupt(format!("{what} is not UTF-8")))
    }
    /// Reads a count of items that each take at least `min_item` bytes, refusing counts
    /// the remaining input cannot hold (so a corrupt count never drives a huge allocation).
    pub fn count(&mut self, min_item: usize, what: &str) -> Result<usize> {
        let n = self.u32(what)? as usize;
        if n.saturating_mul(min_item.max(1)) > self.remaining() {
            return Err(Error::corrupt(format!(
                "{what} count {n} exceeds the {} bytes left",
                self.remaining()
            )));
        }
        Ok(n)
    }
}

/// Wraps `payload` in a frame with `magic` and versions.
pub fn frame(magic: [u8; 4], struct_v: u8, compat_v: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + FRAME_OVERHEAD);
    frame_into(&mut out, magic, struct_v, compat_v, payload.len(), |o| {
        o.extend_from_slice(payload)
    });
    out
}

/// [`frame`] appended to `out`, its payload of `len` bytes appended by `put`: a payload
/// assembled from pieces is copied once, straight into place.
pub fn frame_into(
    out: &mut Vec<u8>,
    magic: [u8; 4],
    struct_v: u8,
    compat_v: u8,
    len: usize,
    put: impl FnOnce(&mut Vec<u8>),
) {
    let start = out.len();
    out.reserve(len + FRAME_OVERHEAD);
    out.extend_from_slice(&magic);
    out.push(struct_v);
    out.push(compat_v);
    out.extend_from_slice(&[0, 0]);
    let n = u32::try_from(len).expect("frame payload over 4 GiB: validation missed it");
    out.extend_from_slice(&n.to_le_bytes());
    put(out);
    debug_assert_eq!(
        out.len() - start,
        FRAME_HEADER + len,
        "frame payload of the wrong length"
    );
    let crc = crc32c::crc32c(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// A checked frame: its version and its payload.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    pub struct_v: u8,
    pub payload: &'a [u8],
}

/// Checks magic, CRC and compat version of a frame and returns its payload.
/// `what` names the structure in errors; `my_v` is the newest version this decoder knows.
pub fn unframe<'a>(magic: [u8; 4], my_v: u8, buf: &'a [u8], what: &str) -> Result<Frame<'a>> {
    if buf.len() < FRAME_OVERHEAD {
        return Err(Error::corrupt(format!(
            "{what}: {} bytes is shorter than a frame header",
            buf.len()
        )));
    }
    if buf[0..4] != magic {
        return Err(Error::corrupt(format!(
            "{what}: bad magic {:02x?} (expected {:02x?})",
            &buf[0..4],
            magic
        )));
    }
    let n = u32::from_le_bytes([buf[8], buf[9], buf[10], buf[11]]) as usize;
    if buf.len() != n + FRAME_OVERHEAD {
        return Err(Error::corrupt(format!(
            "{what}: frame says {n} payload bytes but {} bytes follow the header",
            buf.len().saturating_sub(FRAME_OVERHEAD)
        )));
    }
    let (body, trailer) = buf.split_at(FRAME_HEADER + n);
    let want = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
    let got = crc32c::crc32c(body);
    if want != got {
        return Err(Error::corrupt(format!(
            "{what}: checksum mismatch (stored {want:08x}, computed {got:08x})"
        )));
    }
    let (struct_v, compat_v) = (buf[4], buf[5]);
    if compat_v > my_v {
        return Err(Error::new(
            crate::error::ErrorKind::Unsupported,
            format!("{what}: encoded as version {struct_v} needing a decoder >= {compat_v}; this build reads up to {my_v}"),
        ));
    }
    Ok(Frame {
        struct_v,
        payload: &buf[12..12 + n],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_round_trip_and_detects_corruption() {
        let f = frame(*b"TEST", 1, 1, b"hello");
        let got = unframe(*b"TEST", 1, &f, "test").unwrap();
        assert_eq!(got.payload, b"hello");
        for i in 0..f.len() {
            for bit in 0..8 {
                let mut g = f.clone();
                g[i] ^= 1 << bit;
                assert!(unframe(*b"TEST", 1, &g, "test").is_err(), "flip {i}:{bit}");
            }
        }
        assert!(unframe(*b"TEST", 1, &f[..f.len() - 1], "test").is_err());
        let newer = frame(*b"TEST", 3, 2, b"x");
        assert!(unframe(*b"TEST", 1, &newer, "test").is_err());
        let compatible = frame(*b"TEST", 3, 1, b"x");
        assert_eq!(
            unframe(*b"TEST", 1, &compatible, "test").unwrap().struct_v,
            3
        );
    }

    #[test]
    fn decoder_rejects_short_input_and_huge_counts() {
        let mut e = Encoder::new();
        e.u32(1_000_000);
        let b = e.into_inner();
        let mut d = Decoder::new(&b);
        assert!(d.count(8, "items").is_err());
        let mut d = Decoder::new(&[1, 2]);
        assert!(d.u32("x").is_err());
    }
}
