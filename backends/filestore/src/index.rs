//! The hashed directory index of one collection: where an object's file lives.
//!
//! A collection directory starts as one leaf. A leaf that grows past the split
//! threshold becomes an inner directory with sixteen children `DIR_0` .. `DIR_F`, one per
//! value of the next nibble of the object hash, lowest nibble first (Ceph's HashIndex
//! order, so a PG's objects, which share their low hash bits, stay together). A
//! directory is inner exactly when it holds `DIR_` children; object files found in an
//! inner directory (a split interrupted by a crash) are pushed down at mount.
//!
//! The structure is loaded at mount into memory (which directories are inner, how many
//! files each leaf holds), so resolving a path costs no system call. Splits move at
//! most `threshold` files, inside the apply of the op that made the leaf too big.

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};

use crate::names;

/// A directory of the index: how many nibbles deep, and the hash bits it owns.
pub type DirKey = (u8, u32);

const MAX_DEPTH: u8 = 8;

fn mask(depth: u8) -> u32 {
    if depth >= 8 {
        u32::MAX
    } else {
        (1u32 << (4 * depth)) - 1
    }
}

/// The path of index directory `(depth, prefix)` under the collection root.
pub fn dir_path(root: &Path, key: DirKey) -> PathBuf {
    let mut p = root.to_path_buf();
    for i in 0..key.0 {
        p.push(format!("DIR_{:X}", (key.1 >> (4 * i)) & 0xF));
    }
    p
}

/// `DIR_X` -> nibble X.
pub fn parse_dir_name(n: &str) -> Option<u32> {
    let x = n.strip_prefix("DIR_")?;
    if x.len() != 1 {
        return None;
    }
    let v = u32::from_str_radix(x, 16).ok()?;
    (x.bytes()
        .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase()))
    .then_some(v)
}

#[derive(Debug, Default, Clone)]
pub struct CollIndex {
    pub inner: HashSet<DirKey>,
    /// Files per leaf (leaves with no files may be missing).
    pub counts: HashMap<DirKey, usize>,
}

impl CollIndex {
    /// The leaf an object with `hash` belongs in.
    pub fn leaf(&self, hash: u32) -> DirKey {
        let mut d = 0u8;
        while d < MAX_DEPTH && self.inner.contains(&(d, hash & mask(d))) {
            d += 1;
        }
        (d, hash & mask(d))
    }

    pub fn leaves(&self) -> Vec<DirKey> {
        let mut out = Vec::new();
        let mut stack = vec![(0u8, 0u32)];
        while let Some(k) = stack.pop() {
            if self.inner.contains(&k) {
                for n in 0..16u32 {
                    stack.push((k.0 + 1, k.1 | (n << (4 * k.0))));
                }
            } else {
                out.push(k);
            }
        }
        out
    }

    pub fn total(&self) -> usize {
        self.counts.values().sum()
    }

    /// Loads the index of the collection at `root`, pushing down object files left in
    /// inner directories by an interrupted split.
    pub fn load(root: &Path) -> io::Result<CollIndex> {
        let mut idx = CollIndex::default();
        let mut misplaced: Vec<PathBuf> = Vec::new();
        let mut stack = vec![(0u8, 0u32)];
        while let Some(k) = stack.pop() {
            let dir = dir_path(root, k);
            let mut files = Vec::new();
            let mut children = Vec::new();
            for e in std::fs::read_dir(&dir)? {
                let e = e?;
                let n = e.file_name().to_string_lossy().into_owned();
                if e.file_type()?.is_dir() {
                    if let Some(x) = parse_dir_name(&n) {
                        children.push(x);
                    }
                } else {
                    files.push(e.path());
                }
            }
            if children.is_empty() || k.0 >= MAX_DEPTH {
                idx.counts.insert(k, files.len());
            } else {
                idx.inner.insert(k);
                for n in 0..16u32 {
                    let c = (k.0 + 1, k.1 | (n << (4 * k.0)));
                    let p = dir_path(root, c);
                    if !children.contains(&n) {
                        std::fs::create_dir_all(&p)?;
                    }
                    stack.push(c);
                }
                misplaced.extend(files);
            }
        }
        for f in misplaced {
            let Some(name) = f.file_name().map(|n| n.to_string_lossy().into_owned()) else {
                continue;
            };
            let Some(h) = names::name_hash(&name) else {
                continue;
            };
            let leaf = idx.leaf(h);
            std::fs::rename(&f, dir_path(root, leaf).join(&name))?;
            *idx.counts.entry(leaf).or_default() += 1;
        }
        Ok(idx)
    }

    /// Splits leaf `k` into sixteen children, moving its files down.
    pub fn split(&mut self, root: &Path, k: DirKey) -> io::Result<()> {
        if k.0 >= MAX_DEPTH || self.inner.contains(&k) {
            return Ok(());
        }
        let dir = dir_path(root, k);
        for n in 0..16u32 {
            match std::fs::create_dir(dir_path(root, (k.0 + 1, k.1 | (n << (4 * k.0))))) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
        self.inner.insert(k);
        self.counts.remove(&k);
        for e in std::fs::read_dir(&dir)? {
            let e = e?;
            if e.file_type()?.is_dir() {
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(h) = names::name_hash(&name) else {
                continue;
            };
            let leaf = self.leaf(h);
            std::fs::rename(e.path(), dir_path(root, leaf).join(&name))?;
            *self.counts.entry(leaf).or_default() += 1;
        }
        Ok(())
    }

    /// Makes the index at least `depth` levels deep everywhere (a COLL_HINT pre-split,
    /// like Ceph's, so a collection expected to grow never splits under load).
    pub fn presplit(&mut self, root: &Path, depth: u8) -> io::Result<()> {
        let depth = depth.min(MAX_DEPTH);
        loop {
            let shallow: Vec<DirKey> = self.leaves().into_iter().filter(|k| k.0 < depth).collect();
            if shallow.is_empty() {
                return Ok(());
            }
            for k in shallow {
                self.split(root, k)?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_and_reload_find_every_file() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        let mut idx = CollIndex::default();
        let hashes: Vec<u32> = (0..200u32).map(|i| i.wrapping_mul(0x9E37_79B9)).collect();
        for h in &hashes {
            let leaf = idx.leaf(*h);
            std::fs::write(dir_path(root, leaf).join(format!("{h:08x}_x")), b"").unwrap();
            *idx.counts.entry(leaf).or_default() += 1;
            if idx.counts[&leaf] > 8 {
                idx.split(root, leaf).unwrap();
            }
        }
        assert!(idx.inner.len() > 1);
        assert_eq!(idx.total(), 200);
        // An interrupted split: a file left in an inner directory.
        std::fs::write(root.join("0000abcd_x"), b"").unwrap();
        let re = CollIndex::load(root).unwrap();
        assert_eq!(re.total(), 201);
        assert_eq!(re.inner, idx.inner);
        for h in hashes.iter().chain([0xabcdu32].iter()) {
            assert!(dir_path(root, re.leaf(*h))
                .join(format!("{h:08x}_x"))
                .exists());
        }
        assert_eq!(parse_dir_name("DIR_A"), Some(10));
        assert_eq!(parse_dir_name("DIR_a"), None);
    }
}
