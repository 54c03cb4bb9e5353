//! Turning one transaction into one batch: every op reads and writes through the
//! [`Overlay`], so the batch holds the transaction's net effect and commits atomically
//! with the transaction's applied-seq marker.

use ostore_os::{CollectionId, Error, ObjectId, OmapKey, Op, Result, StateView};

use crate::layout::{self, Header, CSUM_CRC32C, NID_PREFIXES, P_ATTR, P_DATA, P_OMAP};
use crate::overlay::Overlay;

/// Reads the state as it was before the transaction (what `precheck` needs).
#[derive(Debug)]
pub struct DbView<'a>(pub &'a Overlay<'a>);

impl StateView for DbView<'_> {
    fn collection_exists(&self, cid: &CollectionId) -> Result<bool> {
        Ok(self.0.get(&layout::coll_key(cid))?.is_some())
    }
    fn object_exists(&self, cid: &CollectionId, oid: &ObjectId) -> Result<bool> {
        Ok(self.0.get(&layout::obj_key(cid, oid))?.is_some())
    }
    fn collection_objects(&self, cid: &CollectionId) -> Result<Vec<ObjectId>> {
        let p = layout::obj_prefix(cid);
        let hi = ostore_kv::prefix_successor(&p).expect("prefix is not all 0xff");
        self.0
            .scan(&p, &hi, usize::MAX)?
            .iter()
            .map(|(k, _)| layout::obj_of_key(k))
            .collect()
    }
}

#[derive(Debug)]
pub struct Applier<'a> {
    pub ov: Overlay<'a>,
    pub strip_size: u32,
    pub next_nid: u64,
    pub nid_changed: bool,
}

impl<'a> Applier<'a> {
    fn header(&self, cid: &CollectionId, oid: &ObjectId) -> Result<Option<Header>> {
        self.ov
            .get(&layout::obj_key(cid, oid))?
            .map(|v| Header::decode(&v).map_err(|e| e.context(format!("object {oid} in {cid}"))))
            .transpose()
    }

    fn put_header(&mut self, cid: &CollectionId, oid: &ObjectId, h: &Header) {
        self.ov.set(layout::obj_key(cid, oid), h.encode());
    }

    fn new_header(&mut self) -> Header {
        let nid = self.next_nid;
        self.next_nid += 1;
        self.nid_changed = true;
        Header {
            nid,
            size: 0,
            strip_size: self.strip_size,
            flags: 0,
            csum: CSUM_CRC32C,
        }
    }

    fn get_or_create(&mut self, cid: &CollectionId, oid: &ObjectId) -> Result<Header> {
        if let Some(h) = self.header(cid, oid)? {
            return Ok(h);
        }
        let h = self.new_header();
        self.put_header(cid, oid, &h);
        Ok(h)
    }

    fn purge_nid(&mut self, nid: u64) {
        for p in NID_PREFIXES {
            let (lo, hi) = layout::nid_range(p, nid);
            self.ov.remove_range(lo, hi);
        }
    }

    fn remove_object(&mut self, cid: &CollectionId, oid: &ObjectId) -> Result<()> {
        if let Some(h) = self.header(cid, oid)? {
            self.purge_nid(h.nid);
            self.ov.remove(layout::obj_key(cid, oid));
        }
        Ok(())
    }

    /// Places `h` at (cid, oid), dropping whatever object was there.
    fn install(&mut self, cid: &CollectionId, oid: &ObjectId, h: &Header) -> Result<()> {
        if let Some(old) = self.header(cid, oid)? {
            if old.nid != h.nid {
                self.purge_nid(old.nid);
            }
        }
        self.put_header(cid, oid, h);
        Ok(())
    }

    fn strip(&self, h: &Header, idx: u64) -> Result<Option<Vec<u8>>> {
        match self.ov.get(&layout::strip_key(h.nid, idx))? {
            None => Ok(None),
            Some(v) => Ok(Some(layout::decode_strip(&v, h.nid, idx)?.to_vec())),
        }
    }

    fn write(&mut self, h: &mut Header, off: u64, data: &[u8]) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let s = u64::from(h.strip_size);
        let end = off + data.len() as u64;
        let mut pos = off;
        while pos < end {
            let idx = pos / s;
            let within = (pos - idx * s) as usize;
            let n = (s - within as u64).min(end - pos) as usize;
            let src = &data[(pos - off) as usize..(pos - off) as usize + n];
            let payload = if within == 0 && n as u64 == s {
                src.to_vec()
            } else {
                let mut cur = self.strip(h, idx)?.unwrap_or_default();
                if cur.len() < within + n {
                    cur.resize(within + n, 0);
                }
                cur[within..within + n].copy_from_slice(src);
                cur
            };
            self.ov.set(
                layout::strip_key(h.nid, idx),
                layout::encode_strip(&payload),
            );
            pos += n as u64;
        }
        h.size = h.size.max(end);
        Ok(())
    }

    fn zero(&mut self, h: &mut Header, off: u64, len: u64) -> Result<()> {
        if len == 0 {
            return Ok(());
        }
        let s = u64::from(h.strip_size);
        let end = off + len;
        // Whole strips become holes in one range delete; the edges are rewritten.
        let first_full = off.div_ceil(s);
        let end_full = end / s;
        if first_full < end_full {
            self.ov.remove_range(
                layout::strip_key(h.nid, first_full),
                layout::strip_key(h.nid, end_full),
            );
        }
        let mut edges = vec![(off, end.min(first_full * s))];
        if end_full >= first_full {
            edges.push(((end_full * s).max(off), end));
        }
        for (from, to) in edges {
            if from >= to {
                continue;
            }
            let idx = from / s;
            if let Some(mut cur) = self.strip(h, idx)? {
                let a = (from - idx * s) as usize;
                let b = ((to - idx * s) as usize).min(cur.len());
                if a < b {
                    cur[a..b].fill(0);
                    self.ov
                        .set(layout::strip_key(h.nid, idx), layout::encode_strip(&cur));
                }
            }
        }
        h.size = h.size.max(end);
        Ok(())
    }

    fn truncate(&mut self, h: &mut Header, size: u64) -> Result<()> {
        if size < h.size {
            let s = u64::from(h.strip_size);
            let keep = size.div_ceil(s);
            self.ov.remove_range(
                layout::strip_key(h.nid, keep),
                layout::nid_prefix(P_DATA, h.nid + 1),
            );
            if !size.is_multiple_of(s) {
                let idx = size / s;
                if let Some(mut cur) = self.strip(h, idx)? {
                    let within = (size % s) as usize;
                    if cur.len() > within {
                        cur.truncate(within);
                        self.ov
                            .set(layout::strip_key(h.nid, idx), layout::encode_strip(&cur));
                    }
                }
            }
        }
        h.size = size;
        Ok(())
    }

    /// `len` bytes from `off` of the object as this transaction sees it.
    fn read(&self, h: &Header, off: u64, len: u64) -> Result<Vec<u8>> {
        let s = u64::from(h.strip_size);
        let mut out = vec![0u8; len as usize];
        if len == 0 {
            return Ok(out);
        }
        let end = off + len;
        for idx in off / s..=(end - 1) / s {
            if let Some(p) = self.strip(h, idx)? {
                crate::copy_strip(&mut out, off, end, idx * s, &p);
            }
        }
        Ok(out)
    }

    /// Copies every key of `from` under prefix `p` to `to`.
    fn copy_keys(&mut self, p: u8, from: u64, to: u64) -> Result<()> {
        let (lo, hi) = layout::nid_range(p, from);
        for (k, v) in self.ov.scan(&lo, &hi, usize::MAX)? {
            let mut nk = layout::nid_prefix(p, to);
            nk.extend_from_slice(&k[9..]);
            self.ov.set(nk, v);
        }
        Ok(())
    }

    fn clone(&mut self, cid: &CollectionId, src: &ObjectId, dst: &ObjectId) -> Result<()> {
        let Some(s) = self.header(cid, src)? else {
            return Err(Error::failed(format!("clone source {src} vanished")));
        };
        if src == dst {
            return Ok(());
        }
        let mut d = self.new_header();
        d.size = s.size;
        d.strip_size = s.strip_size;
        // Strip values carry only a checksum of their payload, so they copy verbatim.
        for p in NID_PREFIXES {
            self.copy_keys(p, s.nid, d.nid)?;
        }
        self.install(cid, dst, &d)
    }

    #[allow(clippy::too_many_arguments)]
    fn clone_range(
        &mut self,
        cid: &CollectionId,
        src: &ObjectId,
        dst: &ObjectId,
        src_off: u64,
        len: u64,
        dst_off: u64,
    ) -> Result<()> {
        let Some(s) = self.header(cid, src)? else {
            return Err(Error::failed(format!("clone_range source {src} vanished")));
        };
        let mut d = self.get_or_create(cid, dst)?;
        // As Ceph's MemStore: nothing past the source's end is copied.
        if src_off >= s.size {
            return Ok(());
        }
        let len = len.min(s.size - src_off);
        if len == 0 {
            return Ok(());
        }
        let data = self.read(&s, src_off, len)?;
        // The source header may be the destination's (src == dst): re-read it.
        if src == dst {
            d = self.header(cid, dst)?.unwrap_or(d);
        }
        self.write(&mut d, dst_off, &data)?;
        self.put_header(cid, dst, &d);
        Ok(())
    }

    fn rename(
        &mut self,
        oc: &CollectionId,
        oo: &ObjectId,
        nc: &CollectionId,
        no: &ObjectId,
    ) -> Result<()> {
        let Some(h) = self.header(oc, oo)? else {
            return Ok(());
        };
        if oc == nc && oo == no {
            return Ok(());
        }
        self.ov.remove(layout::obj_key(oc, oo));
        self.install(nc, no, &h)
    }

    fn objects_of(&self, cid: &CollectionId) -> Result<Vec<(ObjectId, Vec<u8>)>> {
        let p = layout::obj_prefix(cid);
        let hi = ostore_kv::prefix_successor(&p).expect("prefix is not all 0xff");
        self.ov
            .scan(&p, &hi, usize::MAX)?
            .into_iter()
            .map(|(k, v)| Ok((layout::obj_of_key(&k)?, v)))
            .collect()
    }

    /// Moves header records only: data, attrs and omap stay under their nids.
    fn move_objects(
        &mut self,
        from: &CollectionId,
        to: &CollectionId,
        pick: impl Fn(&ObjectId) -> bool,
    ) -> Result<()> {
        for (oid, v) in self.objects_of(from)? {
            if pick(&oid) {
                self.ov.remove(layout::obj_key(from, &oid));
                let h = Header::decode(&v)?;
                self.install(to, &oid, &h)?;
            }
        }
        Ok(())
    }

    fn set_bits(&mut self, cid: &CollectionId, bits: u32) {
        self.ov
            .set(layout::coll_key(cid), layout::encode_coll(bits));
    }

    /// Applies one op whose fatal errors precheck has ruled out; ops on a missing object
    /// that do not create it are skipped, as in Ceph.
    pub fn apply_op(&mut self, op: &Op) -> Result<()> {
        match op {
            Op::Nop | Op::SetAllocHint { .. } | Op::CollHint { .. } => {}
            Op::Create { cid, oid } | Op::Touch { cid, oid } => {
                self.get_or_create(cid, oid)?;
            }
            Op::Write {
                cid,
                oid,
                off,
                data,
                ..
            } => {
                let mut h = self.get_or_create(cid, oid)?;
                if !data.is_empty() {
                    self.write(&mut h, *off, data)?;
                    self.put_header(cid, oid, &h);
                }
            }
            Op::Zero { cid, oid, off, len } => {
                let mut h = self.get_or_create(cid, oid)?;
                if *len > 0 {
                    self.zero(&mut h, *off, *len)?;
                    self.put_header(cid, oid, &h);
                }
            }
            Op::Truncate { cid, oid, size } => {
                if let Some(mut h) = self.header(cid, oid)? {
                    self.truncate(&mut h, *size)?;
                    self.put_header(cid, oid, &h);
                }
            }
            Op::Remove { cid, oid } => self.remove_object(cid, oid)?,
            Op::SetAttr {
                cid,
                oid,
                name,
                value,
            } => {
                if let Some(h) = self.header(cid, oid)? {
                    self.ov.set(layout::attr_key(h.nid, name), value.clone());
                }
            }
            Op::SetAttrs { cid, oid, attrs } => {
                if let Some(h) = self.header(cid, oid)? {
                    for (k, v) in attrs {
                        self.ov.set(layout::attr_key(h.nid, k), v.clone());
                    }
                }
            }
            Op::RmAttr { cid, oid, name } => {
                if let Some(h) = self.header(cid, oid)? {
                    self.ov.remove(layout::attr_key(h.nid, name));
                }
            }
            Op::RmAttrs { cid, oid } => {
                if let Some(h) = self.header(cid, oid)? {
                    let (lo, hi) = layout::nid_range(P_ATTR, h.nid);
                    self.ov.remove_range(lo, hi);
                }
            }
            Op::Clone { cid, src, dst } => self.clone(cid, src, dst)?,
            Op::CloneRange {
                cid,
                src,
                dst,
                off,
                len,
            } => self.clone_range(cid, src, dst, *off, *len, *off)?,
            Op::CloneRange2 {
                cid,
                src,
                dst,
                src_off,
                len,
                dst_off,
            } => self.clone_range(cid, src, dst, *src_off, *len, *dst_off)?,
            Op::MkColl { cid, bits } => self.set_bits(cid, *bits),
            Op::RmColl { cid } => {
                for (oid, _) in self.objects_of(cid)? {
                    self.remove_object(cid, &oid)?;
                }
                self.ov.remove(layout::coll_key(cid));
            }
            Op::OmapClear { cid, oid } => {
                if let Some(h) = self.header(cid, oid)? {
                    let (lo, hi) = layout::nid_range(P_OMAP, h.nid);
                    self.ov.remove_range(lo, hi);
                    self.ov.remove(layout::omap_hdr_key(h.nid));
                }
            }
            Op::OmapSetKeys { cid, oid, keys } => {
                if let Some(h) = self.header(cid, oid)? {
                    for (k, v) in keys {
                        self.ov.set(layout::omap_key(h.nid, k), v.clone());
                    }
                }
            }
            Op::OmapRmKeys { cid, oid, keys } => {
                if let Some(h) = self.header(cid, oid)? {
                    for k in keys {
                        self.ov.remove(layout::omap_key(h.nid, k));
                    }
                }
            }
            Op::OmapSetHeader { cid, oid, header } => {
                if let Some(h) = self.header(cid, oid)? {
                    self.ov.set(layout::omap_hdr_key(h.nid), header.clone());
                }
            }
            Op::OmapRmKeyRange {
                cid,
                oid,
                first,
                last,
            } => {
                if let Some(h) = self.header(cid, oid)? {
                    if first < last {
                        let lo: &OmapKey = first;
                        self.ov.remove_range(
                            layout::omap_key(h.nid, lo),
                            layout::omap_key(h.nid, last),
                        );
                    }
                }
            }
            Op::SplitCollection {
                cid,
                bits,
                rem,
                dest,
            }
            | Op::SplitCollection2 {
                cid,
                bits,
                rem,
                dest,
            } => {
                let (bits, rem) = (*bits, *rem);
                self.move_objects(cid, dest, |o| o.matches(bits, rem))?;
                self.set_bits(cid, bits);
                self.set_bits(dest, bits);
            }
            Op::MergeCollection { cid, dest, bits } => {
                self.move_objects(cid, dest, |_| true)?;
                self.ov.remove(layout::coll_key(cid));
                self.set_bits(dest, *bits);
            }
            Op::CollMoveRename {
                old_cid,
                old_oid,
                new_cid,
                new_oid,
            } => self.rename(old_cid, old_oid, new_cid, new_oid)?,
            Op::TryRename {
                cid,
                old_oid,
                new_oid,
            } => self.rename(cid, old_oid, cid, new_oid)?,
            Op::CollSetBits { cid, bits } => self.set_bits(cid, *bits),
        }
        Ok(())
    }
}
