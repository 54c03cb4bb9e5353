//! The consistency checks every backend gets (`os-tool fsck`) through the ObjectStore API alone
//! (listing order and paging, stat against read, fiemap inside the size, attrs, omap
//! against its iterator), merged with the backend's own structural and checksum checks.

use std::collections::BTreeMap;

use crate::{CollectionHandle, CollectionId, FsckReport, ObjectId, ObjectStore, Result};

/// Objects per listing page: small enough that paging itself is exercised.
const PAGE: usize = 512;

/// Runs every check on a mounted store. `progress` gets the objects checked so far.
pub fn fsck(s: &dyn ObjectStore, deep: bool, progress: &mut dyn FnMut(u64)) -> Result<FsckReport> {
    let mut rep = FsckReport::default();
    let mut colls = s.list_collections()?;
    colls.sort();
    let mut objects = 0u64;
    for cid in &colls {
        rep.count("collections", 1);
        if !s.collection_exists(cid)? {
            rep.error(format!("collection {cid} is listed but does not exist"));
            continue;
        }
        let ch = s.open_collection(cid)?;
        let bits = s.collection_bits(&ch)?;
        let mut pos = ObjectId::min();
        let end = ObjectId::max_sentinel();
        let mut prev: Option<ObjectId> = None;
        let mut n = 0u64;
        loop {
            let (objs, next) = s.collection_list(&ch, &pos, &end, PAGE)?;
            for o in &objs {
                if prev.as_ref().is_some_and(|p| p >= o) {
                    rep.error(format!("{cid}: listing is out of order at {o}"));
                }
                if bits > 0 && cid.pgid().is_some_and(|pg| !o.matches(bits, pg.seed)) && !o.is_max()
                {
                    // Ceph keeps objects of a PG inside its hash range; a stray object
                    // is a warning (it stays readable), not an error.
                    rep.warn(format!(
                        "{cid}: object {o} has hash {:#010x}, outside the collection's {bits} bits",
                        o.hash
                    ));
                }
                check_object(s, &ch, cid, o, deep, &mut rep)?;
                prev = Some(o.clone());
                n += 1;
                objects += 1;
                progress(objects);
            }
            if next.is_max() {
                break;
            }
            if objs.is_empty() || next <= pos {
                rep.error(format!("{cid}: listing made no progress at {next}"));
                break;
            }
            if objs.last().is_some_and(|l| next <= *l) {
                rep.error(format!(
                    "{cid}: listing's next {next} is not after the page it ended"
                ));
                break;
            }
            pos = next;
        }
        let empty = s.collection_empty(&ch)?;
        if empty != (n == 0) {
            rep.error(format!(
                "{cid}: collection_empty says {empty} but the listing has {n} objects"
            ));
        }
    }
    rep.merge(s.fsck(deep)?);
    Ok(rep)
}

fn check_object(
    s: &dyn ObjectStore,
    ch: &CollectionHandle,
    cid: &CollectionId,
    o: &ObjectId,
    deep: bool,
    rep: &mut FsckReport,
) -> Result<()> {
    rep.count("objects", 1);
    let what = format!("{cid}/{o}");
    if !s.exists(ch, o)? {
        rep.error(format!("{what}: listed but does not exist"));
        return Ok(());
    }
    let st = match s.stat(ch, o) {
        Ok(st) => st,
        Err(e) => {
            rep.error(format!("{what}: stat failed: {e}"));
            return Ok(());
        }
    };
    match s.fiemap(ch, o, 0, st.size.max(1)) {
        Ok(map) => {
            let mut last_end = 0;
            for (off, len) in &map {
                if *off < last_end {
                    rep.error(format!(
                        "{what}: fiemap extent {off}+{len} overlaps the one before"
                    ));
                }
                last_end = off.saturating_add(*len);
            }
        }
        Err(e) => rep.error(format!("{what}: fiemap failed: {e}")),
    }
    if deep {
        match s.read(ch, o, 0, 0) {
            Ok(d) if d.len() as u64 == st.size => rep.count("data_bytes_read", st.size),
            Ok(d) => rep.error(format!(
                "{what}: read returned {} bytes but stat says {}",
                d.len(),
                st.size
            )),
            Err(e) => rep.error(format!("{what}: data unreadable: {e}")),
        }
    }
    if let Err(e) = s.getattrs(ch, o) {
        rep.error(format!("{what}: attrs unreadable: {e}"));
    }
    match s.omap_get(ch, o) {
        Ok((_, keys)) => {
            rep.count("omap_keys", keys.len() as u64);
            let mut it = s.omap_iterator(ch, o)?;
            it.seek_to_first()?;
            let mut walked = BTreeMap::new();
            while it.valid() {
                if let (Some(k), Some(v)) = (it.key(), it.value()) {
                    walked.insert(k.to_vec(), v.to_vec());
                }
                it.next()?;
            }
            if walked != keys {
                rep.error(format!(
                    "{what}: omap iterator shows {} keys, omap_get {}",
                    walked.len(),
                    keys.len()
                ));
            }
        }
        Err(e) => rep.error(format!("{what}: omap unreadable: {e}")),
    }
    Ok(())
}
