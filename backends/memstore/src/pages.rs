//! Sparse object data: fixed-size pages shared copy-on-write between clones, so a
//! clone costs one pointer per page and a later overwrite copies only the pages it
//! touches. Missing pages are holes and read as zeros.

use std::collections::BTreeMap;
use std::sync::Arc;

pub const PAGE: u64 = 4096;

type Page = Arc<[u8; PAGE as usize]>;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pages {
    pages: BTreeMap<u64, Page>,
}

impl Pages {
    pub fn new() -> Pages {
        Pages::default()
    }

    /// Bytes held in pages (holes excluded).
    pub fn allocated(&self) -> u64 {
        self.pages.len() as u64 * PAGE
    }

    pub fn page_count(&self) -> usize {
        self.pages.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = (u64, &[u8; PAGE as usize])> {
        self.pages.iter().map(|(i, p)| (*i, &**p))
    }

    pub fn insert_page(&mut self, index: u64, data: [u8; PAGE as usize]) {
        self.pages.insert(index, Arc::new(data));
    }

    fn page_mut(&mut self, index: u64) -> &mut [u8; PAGE as usize] {
        let p = self
            .pages
            .entry(index)
            .or_insert_with(|| Arc::new([0u8; PAGE as usize]));
        Arc::make_mut(p)
    }

    pub fn write(&mut self, off: u64, data: &[u8]) {
        let mut pos = off;
        let mut rest = data;
        while !rest.is_empty() {
            let index = pos / PAGE;
            let in_page = (pos % PAGE) as usize;
            let n = rest.len().min(PAGE as usize - in_page);
            self.page_mut(index)[in_page..in_page + n].copy_from_slice(&rest[..n]);
            pos += n as u64;
            rest = &rest[n..];
        }
    }

    /// Reads [off, off+len) into `out` (holes as zeros).
    pub fn read(&self, off: u64, len: u64) -> Vec<u8> {
        let mut out = vec![0u8; len as usize];
        if len == 0 {
            return out;
        }
        let first = off / PAGE;
        let last = (off + len - 1) / PAGE;
        for (&index, page) in self.pages.range(first..=last) {
            let page_start = index * PAGE;
            let from = off.max(page_start);
            let to = (off + len).min(page_start + PAGE);
            out[(from - off) as usize..(to - off) as usize]
                .copy_from_slice(&page[(from - page_start) as usize..(to - page_start) as usize]);
        }
        out
    }

    /// Makes [off, off+len) a hole: whole pages are dropped, partial ones zeroed.
    pub fn zero(&mut self, off: u64, len: u64) {
        if len == 0 {
            return;
        }
        let end = off + len;
        let first = off / PAGE;
        let last = (end - 1) / PAGE;
        let touched: Vec<u64> = self.pages.range(first..=last).map(|(i, _)| *i).collect();
        for index in touched {
            let page_start = index * PAGE;
            let from = off.max(page_start);
            let to = end.min(page_start + PAGE);
            if from == page_start && to == page_start + PAGE {
                self.pages.remove(&index);
            } else {
                self.page_mut(index)[(from - page_start) as usize..(to - page_start) as usize]
                    .fill(0);
            }
        }
    }

    /// Drops everything at or past `size` (the partial last page is zeroed past
    /// `size`, so a later extension reads zeros there).
    pub fn truncate(&mut self, size: u64) {
        let keep = size.div_ceil(PAGE);
        let _ = self.pages.split_off(&keep);
        if !size.is_multiple_of(PAGE) {
            let index = size / PAGE;
            if self.pages.contains_key(&index) {
                self.page_mut(index)[(size % PAGE) as usize..].fill(0);
            }
        }
    }

    /// Copies [src_off, src_off+len) of `src` to `dst_off`, sharing whole pages when
    /// the ranges are page-aligned and keeping holes as holes.
    pub fn copy_from(&mut self, src: &Pages, src_off: u64, len: u64, dst_off: u64) {
        if len == 0 {
            return;
        }
        let aligned = src_off.is_multiple_of(PAGE) && dst_off.is_multiple_of(PAGE);
        // Copy through a snapshot of the source pages: `src` may be `self`'s former state.
        let snapshot: Vec<(u64, Page)> = src
            .pages
            .range(src_off / PAGE..=(src_off + len - 1) / PAGE)
            .map(|(i, p)| (*i, p.clone()))
            .collect();
        self.zero(dst_off, len);
        for (index, page) in snapshot {
            let page_start = index * PAGE;
            let from = src_off.max(page_start);
            let to = (src_off + len).min(page_start + PAGE);
            let dst = dst_off + (from - src_off);
            if aligned && from == page_start && to == page_start + PAGE {
                self.pages.insert(dst / PAGE, page);
            } else {
                self.write(
                    dst,
                    &page[(from - page_start) as usize..(to - page_start) as usize],
                );
            }
        }
    }

    /// Extents holding data within [off, end), merged, as (offset, length).
    pub fn extents(&self, off: u64, end: u64) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        if end <= off {
            return out;
        }
        for (&index, _) in self.pages.range(off / PAGE..=(end - 1) / PAGE) {
            let from = off.max(index * PAGE);
            let to = end.min(index * PAGE + PAGE);
            match out.last_mut() {
                Some((o, l)) if *o + *l == from => *l += to - from,
                _ => out.push((from, to - from)),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_read_zero_truncate() {
        let mut p = Pages::new();
        p.write(4090, b"0123456789");
        assert_eq!(p.read(4090, 10), b"0123456789");
        assert_eq!(p.read(4000, 5), vec![0; 5]);
        p.zero(4092, 2);
        assert_eq!(p.read(4090, 10), b"01\x00\x00456789");
        p.truncate(4095);
        assert_eq!(p.read(4090, 10), b"01\x00\x004\0\0\0\0\0");
        assert_eq!(p.page_count(), 1);
        p.zero(0, 8192);
        assert_eq!(p.page_count(), 0);
    }

    #[test]
    fn copy_shares_aligned_pages_and_keeps_holes() {
        let mut a = Pages::new();
        a.write(0, &[1; 4096]);
        a.write(3 * 4096, &[3; 10]);
        let mut b = Pages::new();
        b.write(0, &[9; 20000]);
        b.copy_from(&a, 0, 4 * 4096, 4096);
        assert_eq!(b.read(4096, 4096), vec![1; 4096]);
        assert_eq!(b.read(2 * 4096, 4096), vec![0; 4096]);
        assert_eq!(b.read(4 * 4096, 10), vec![3; 10]);
        assert_eq!(b.read(0, 4096), vec![9; 4096]);
        assert_eq!(
            b.extents(0, 5 * 4096),
            vec![(0, 2 * 4096), (4 * 4096, 4096)]
        );
        let mut c = Pages::new();
        c.copy_from(&a, 3 * 4096 + 2, 5, 1);
        assert_eq!(c.read(0, 7), vec![0, 3, 3, 3, 3, 3, 0]);
    }
}
