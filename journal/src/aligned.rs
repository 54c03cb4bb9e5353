//! Byte buffers whose first byte is aligned for direct I/O.
//!
//! The journal writes its small batches with `O_DIRECT` (`JournalOptions::direct_below`)
//! and FileStore stages large writes that way: a buffered `pwrite` of 1 MiB spends most
//! of its time copying into the page cache (`copy_folio_from_iter`), and on some disks
//! `O_DIRECT` + `fdatasync` completes 1.2-1.4x more 1 MiB writes per second than the
//! buffered loop (fio, BENCHMARKS.md; on others it is slower). Direct I/O needs the
//! buffer's address, the file offset and the length aligned; this type keeps the
//! address aligned without `unsafe`: it over-allocates a `Vec<u8>` and starts the
//! buffer at the first aligned byte, and never lets the `Vec` reallocate on its own.

use std::ops::{Deref, DerefMut};

/// Alignment of buffer addresses, offsets and lengths for direct I/O: 4 KiB covers the
/// logical block size of every common device.
pub const ALIGN: usize = 4096;

/// A growable byte buffer whose start is [`ALIGN`]-aligned.
#[derive(Default)]
pub struct AlignedBuf {
    raw: Vec<u8>,
    pad: usize,
}

impl std::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AlignedBuf({} bytes)", self.len())
    }
}

impl AlignedBuf {
    /// An empty buffer with room for `cap` bytes before it must move.
    pub fn with_capacity(cap: usize) -> AlignedBuf {
        let raw = Vec::with_capacity(cap.saturating_add(ALIGN));
        let addr = raw.as_ptr() as usize;
        let pad = (ALIGN - addr % ALIGN) % ALIGN;
        let mut b = AlignedBuf { raw, pad };
        b.raw.resize(pad, 0);
        b
    }

    /// A copy of `bytes`, aligned.
    pub fn from_slice(bytes: &[u8]) -> AlignedBuf {
        let mut b = AlignedBuf::with_capacity(bytes.len());
        b.extend_from_slice(bytes);
        b
    }

    /// Makes room for `extra` more bytes; moves (keeping the alignment) when needed.
    pub fn reserve(&mut self, extra: usize) {
        if self.raw.capacity() == 0 {
            *self = AlignedBuf::with_capacity(extra);
            return;
        }
        if self.raw.len().saturating_add(extra) <= self.raw.capacity() {
            return;
        }
        let len = self.len();
        let mut grown = AlignedBuf::with_capacity(len.saturating_add(extra).max(len * 2));
        grown.raw.extend_from_slice(&self.raw[self.pad..]);
        *self = grown;
    }

    /// Appends `bytes`.
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.reserve(bytes.len());
        self.raw.extend_from_slice(bytes);
    }

    /// Grows (filling with `value`) or shrinks to `len` bytes.
    pub fn resize(&mut self, len: usize, value: u8) {
        self.reserve(len.saturating_sub(self.len()));
        self.raw.resize(self.pad + len, value);
    }

    /// Whether the start is aligned (always, unless the buffer is empty and unallocated).
    pub fn is_aligned(&self) -> bool {
        (self.as_ptr() as usize).is_multiple_of(ALIGN)
    }
}

impl Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.raw.get(self.pad..).unwrap_or_default()
    }
}

impl DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        let pad = self.pad;
        self.raw.get_mut(pad..).unwrap_or_default()
    }
}

/// Whether a write of `buf` at `offset` meets direct I/O's alignment.
pub fn direct_ok(buf: &[u8], offset: u64) -> bool {
    (buf.as_ptr() as usize).is_multiple_of(ALIGN)
        && offset.is_multiple_of(ALIGN as u64)
        && buf.len().is_multiple_of(ALIGN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_aligned_while_it_grows() {
        let mut b = AlignedBuf::with_capacity(10);
        assert!(b.is_aligned());
        let mut model = Vec::new();
        for i in 0..2000u32 {
            let chunk: Vec<u8> = (0..(i % 700) as u8).map(|x| x ^ i as u8).collect();
            b.extend_from_slice(&chunk);
            model.extend_from_slice(&chunk);
            assert!(b.is_aligned(), "after {i} appends");
            if i % 97 == 0 {
                let n = model.len() + (i as usize % 5000);
                b.resize(n, 7);
                model.resize(n, 7);
            }
            if i % 331 == 0 {
                let n = model.len() / 2;
                b.resize(n, 0);
                model.truncate(n);
            }
        }
        assert_eq!(&b[..], &model[..]);
        b[3] = 99;
        assert_eq!(b[3], 99);
        let c = AlignedBuf::from_slice(&model);
        assert!(c.is_aligned() && direct_ok(&c[..model.len() / ALIGN * ALIGN], 8192));
        assert_eq!(&c[..], &model[..]);
        assert!(AlignedBuf::default().is_empty());
        let mut d = AlignedBuf::default();
        d.extend_from_slice(b"abc");
        assert!(d.is_aligned());
        assert_eq!(&d[..], b"abc");
    }

    #[test]
    fn direct_alignment_rules() {
        let b = AlignedBuf::from_slice(&[0u8; 2 * ALIGN]);
        assert!(direct_ok(&b, 0));
        assert!(direct_ok(&b, 3 * ALIGN as u64));
        assert!(!direct_ok(&b, 512));
        assert!(!direct_ok(&b[..ALIGN + 1], 0));
        assert!(!direct_ok(&b[1..ALIGN + 1], 0));
    }
}
