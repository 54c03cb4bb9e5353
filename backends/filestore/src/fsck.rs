//! FileStore's consistency check: the on-disk structure (collections, index directories,
//! file names, object numbers, stored ids, guards), and with `deep` every data checksum.
//! Findings go into an [`FsckReport`]: errors (the store is damaged), warnings (garbage
//! that costs space but loses nothing, such as kv data of a removed object), and counts
//! of what was looked at.

use std::collections::{BTreeSet, HashSet};
use std::fs::File;

use ostore_kv::{KeyRange, KvRead};
use ostore_os::store::FsckReport;
use ostore_os::ErrorKind;

use crate::index::{dir_path, parse_dir_name};
use crate::names::{self, Guard, Parsed};
use crate::xattr;
use crate::{
    read_onum, sys, Mounted, Onum, CSUM_EXTENT, K_ATTR, K_CSUM, K_HEADER, K_OMAP, K_REJECTED,
    K_STARTED, XA_BITS, XA_GUARD, XA_ONUM,
};

/// Verifies every data checksum of an object `size` bytes long; returns the extents
/// checked. Only the file's data segments (SEEK_DATA) are read: a hole reads as zeros,
/// so an extent inside one needs no read, only a check that its record, if any, is the
/// checksum of zeros. (Reading every byte took 38 s for a 4 GiB sparse object.)
fn verify_data(m: &Mounted, f: &File, onum: &Onum, size: u64) -> ostore_os::Result<u64> {
    let segments = crate::fsback::data_segments(f, 0, size).unwrap_or_else(|_| vec![(0, size)]);
    // Extent ranges [a, b) holding data, merged.
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    for (d, l) in segments {
        let (a, b) = (d / CSUM_EXTENT, (d + l).div_ceil(CSUM_EXTENT));
        match ranges.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => ranges.push((a, b)),
        }
    }
    let mut checked = 0;
    for &(a, b) in &ranges {
        let mut e = a;
        while e < b {
            let n = (b - e).min(16);
            let off = e * CSUM_EXTENT;
            let len = (n * CSUM_EXTENT).min(size.saturating_sub(off));
            if len > 0 {
                m.read_verified(f, onum, off, len)?;
            }
            checked += n;
            e += n;
        }
    }
    // The records of data extents were verified by the reads above; only the holes
    // between them (and past the last) are looked up again, each as one key range.
    let (_, hi) = crate::oprefix_range(K_CSUM, onum);
    let size_exts = size.div_ceil(CSUM_EXTENT);
    let mut gaps: Vec<(u64, u64)> = Vec::new();
    let mut from = 0;
    for &(a, b) in &ranges {
        if a > from {
            gaps.push((from, a));
        }
        from = b;
    }
    if from < size_exts {
        gaps.push((from, size_exts));
    }
    let key_at = |e: u64| match u32::try_from(e) {
        Ok(e) => crate::csum_key(onum, e),
        Err(_) => hi.clone(),
    };
    for (g0, g1) in gaps {
        let mut it =
            m.kv.iter(KeyRange::new(key_at(g0), key_at(g1)))
                .map_err(crate::kve)?;
        it.seek_to_first().map_err(crate::kve)?;
        while let Some((k, v)) = it.current() {
            let e = k
                .len()
                .checked_sub(4)
                .and_then(|i| k.get(i..))
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(u32::from_be_bytes)
                .ok_or_else(|| ostore_os::Error::corrupt("data checksum key is malformed"))?;
            let e = u64::from(e);
            if v != crate::zero_extent_crc().to_le_bytes() {
                return Err(ostore_os::Error::corrupt(format!(
                    "data checksum mismatch in extent {e} (bytes {}..{}): the file has a \
                     hole there, its record says data",
                    e * CSUM_EXTENT,
                    (e + 1) * CSUM_EXTENT
                )));
            }
            checked += 1;
            it.next().map_err(crate::kve)?;
        }
    }
    Ok(checked)
}

pub(crate) fn run(m: &Mounted, deep: bool) -> ostore_os::Result<FsckReport> {
    let mut r = FsckReport::default();
    let mut onums: HashSet<Onum> = HashSet::new();
    for (cid, idx) in &m.colls {
        r.count("collection_dirs", 1);
        let root = m.coll_path(cid);
        match sys::open_dir(&root) {
            Err(e) => {
                r.error(format!("{cid}: cannot open {}: {e}", root.display()));
                continue;
            }
            Ok(d) => {
                match xattr::get(&d, XA_BITS) {
                    Ok(Some(b)) if b.len() == 4 => {}
                    Ok(_) => r.error(format!("{cid}: bits xattr is missing or malformed")),
                    Err(e) => r.error(format!("{cid}: {e}")),
                }
                match xattr::get(&d, XA_GUARD) {
                    Ok(Some(g)) if Guard::decode(&g).is_err() => {
                        r.error(format!("{cid}: collection guard is malformed"))
                    }
                    Err(e) => r.error(format!("{cid}: {e}")),
                    Ok(_) => {}
                }
            }
        }
        let mut seen = BTreeSet::new();
        for leaf in idx.leaves() {
            let dir = dir_path(&root, leaf);
            r.count("directories", 1);
            let rd = match std::fs::read_dir(&dir) {
                Ok(x) => x,
                Err(e) => {
                    r.error(format!("{cid}: cannot list {}: {e}", dir.display()));
                    continue;
                }
            };
            let mut n_files = 0usize;
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    if parse_dir_name(&name).is_none() {
                        r.warn(format!("{cid}: stray directory {}", e.path().display()));
                    } else {
                        r.error(format!(
                            "{cid}: leaf {} has a sub-directory {name}",
                            dir.display()
                        ));
                    }
                    continue;
                }
                n_files += 1;
                let path = e.path();
                let oid = match names::parse(&name) {
                    Some(Parsed::Short(o)) => o,
                    Some(Parsed::Long { hash, digest }) => match m.long_id(&path, hash, digest) {
                        Ok(o) => o,
                        Err(err) => {
                            r.error(format!("{cid}: {}: {err}", path.display()));
                            continue;
                        }
                    },
                    None => {
                        r.error(format!("{cid}: {} is not an object file", path.display()));
                        continue;
                    }
                };
                r.count("object_files", 1);
                if idx.leaf(oid.hash) != leaf {
                    r.error(format!(
                        "{cid}: {oid} is in the wrong index directory {}",
                        dir.display()
                    ));
                }
                if !seen.insert(oid.clone()) {
                    r.error(format!("{cid}: {oid} has two files"));
                }
                let f = match File::open(&path) {
                    Ok(f) => f,
                    Err(err) => {
                        r.error(format!("{cid}: cannot open {}: {err}", path.display()));
                        continue;
                    }
                };
                let onum = match read_onum(&f) {
                    Ok(Some(o)) => o,
                    Ok(None) => {
                        r.error(format!("{cid}: {oid} has no object number"));
                        continue;
                    }
                    Err(err) => {
                        r.error(format!("{cid}: {oid}: {err}"));
                        continue;
                    }
                };
                if !onums.insert(onum) {
                    r.error(format!(
                        "{cid}: {oid} shares its object number with another object"
                    ));
                }
                match xattr::get(&f, XA_GUARD) {
                    Ok(Some(g)) if Guard::decode(&g).is_err() => {
                        r.error(format!("{cid}: {oid}: replay guard is malformed"))
                    }
                    Err(err) => r.error(format!("{cid}: {oid}: {err}")),
                    Ok(_) => {}
                }
                // Every other xattr of ours (inline attrs, birth, long-name oid) verifies.
                match sys::flistxattr(&f) {
                    Ok(names) => {
                        for n in names.iter().filter(|n| {
                            n.starts_with(b"user.ostore.") && ![XA_GUARD, XA_ONUM].contains(&&n[..])
                        }) {
                            r.count("xattrs_verified", 1);
                            if let Err(err) = xattr::get(&f, n) {
                                r.error(format!("{cid}: {oid}: {err}"));
                            }
                        }
                    }
                    Err(err) => r.error(format!("{cid}: {oid}: listing xattrs: {err}")),
                }
                let size = f.metadata().map(|md| md.len()).unwrap_or(0);
                // Checksums past the end: cut short, or a truncate that did not drop them.
                let mut it_ok = true;
                match m.check_not_cut(&onum, size) {
                    Ok(()) => {}
                    Err(err) if err.kind() == ErrorKind::Corrupt => {
                        r.error(format!("{cid}: {oid} has checksums past its end"))
                    }
                    Err(err) => {
                        it_ok = false;
                        r.error(format!("kv: {err}"));
                    }
                }
                if deep && it_ok {
                    match verify_data(m, &f, &onum, size) {
                        Ok(n) => r.count("extents_verified", n),
                        Err(err) if err.kind() == ErrorKind::Corrupt => {
                            r.error(format!("{cid}: {oid}: {err}"))
                        }
                        Err(err) => return Err(err),
                    }
                    r.count("bytes_verified", size);
                }
            }
            if idx.counts.get(&leaf).copied().unwrap_or(0) != n_files {
                r.warn(format!("{cid}: index count of {} is stale", dir.display()));
            }
        }
    }
    // kv data no object refers to: a crash between a remove's kv delete and its unlink
    // cannot leave it (the kv goes first), but a lost unsynced xattr can.
    for p in [K_OMAP, K_HEADER, K_ATTR, K_CSUM] {
        let mut it = m.kv.iter(KeyRange::prefix(&[p])).map_err(crate::kve)?;
        it.seek_to_first().map_err(crate::kve)?;
        let mut orphan: Option<Onum> = None;
        while let Some((k, _)) = it.current() {
            r.count("kv_keys", 1);
            if k.len() >= 17 {
                let mut o = [0u8; 16];
                o.copy_from_slice(&k[1..17]);
                if !onums.contains(&o) && orphan != Some(o) {
                    orphan = Some(o);
                    r.warn(format!(
                        "kv data of object number {} has no object (garbage)",
                        names::Pos::from_bytes(&o)
                            .map(|p| p.to_string())
                            .unwrap_or_default()
                    ));
                }
            } else {
                r.error("kv key too short for its prefix".to_string());
            }
            it.next().map_err(crate::kve)?;
        }
    }
    for p in [K_STARTED, K_REJECTED] {
        let mut it = m.kv.iter(KeyRange::prefix(&[p])).map_err(crate::kve)?;
        it.seek_to_first().map_err(crate::kve)?;
        while let Some((k, _)) = it.current() {
            r.count("markers", 1);
            let seq = k.get(1..9).map(|b| {
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                u64::from_be_bytes(a)
            });
            if seq.is_some_and(|s| s <= m.committed) && m.committed != u64::MAX {
                r.warn(format!(
                    "transaction marker for checkpointed seq {seq:?} left behind"
                ));
            }
            it.next().map_err(crate::kve)?;
        }
    }
    r.count("committed_seq", m.committed);
    Ok(r)
}
