//! The superblock every store writes at mkfs: which backend formatted the directory,
//! its fsid, and backend options. `os-tool` reads it to detect `--type`.
//!
//! Stored as the file `superblock` in the data directory, in a [`crate::codec`] frame
//! with magic `OSSB`, version 1; payload:
//! ```text
//! str  store_type          "memstore" | "kvstore" | "filestore"
//! [16] fsid                random at mkfs
//! u64  created             seconds since the Unix epoch
//! u32  nopts, then nopts (str key, str value)   backend options, e.g. strip size
//! u32  journal id          version 2 only: the magic of the journal mkfs made
//! ```
//! Version 2 (compat 1) adds the journal id, so a store never mounts another store's
//! journal (a wrong `--journal-path`); a version-1 superblock (no id) is still read.
//! (`str` = u32 length + UTF-8 bytes.)

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use ostore_journal::vfs::read_full_at;
use ostore_journal::{OpenMode, RealFs, Vfs};

use crate::codec::{frame, unframe, Decoder, Encoder};
use crate::error::{Error, ErrorKind, Result};

const MAGIC: [u8; 4] = *b"OSSB";
const VERSION: u8 = 2;
pub const FILE_NAME: &str = "superblock";

/// What shows that a directory holds a store that was mounted: a checkpoint file or
/// journal volumes in `journal`. mkfs writes neither (the first mount does), so a
/// directory without a superblock but with these lost its superblock after holding
/// committed data, while an interrupted mkfs leaves none of them. Mount calls the
/// first damaged (not unformatted) and mkfs refuses it: a lost superblock must never
/// lead an operator to format over a store.
pub fn used_store_traces(vfs: &dyn Vfs, dir: &Path, journal: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if vfs
        .exists(&dir.join(crate::journaling::CHECKPOINT_FILE))
        .unwrap_or(false)
    {
        out.push("a checkpoint file".to_string());
    }
    if let Ok(v) = ostore_journal::list_volumes(vfs, journal) {
        if !v.is_empty() {
            out.push(format!(
                "{} journal volumes in {}",
                v.len(),
                journal.display()
            ));
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superblock {
    pub store_type: String,
    pub fsid: [u8; 16],
    pub created: u64,
    pub options: BTreeMap<String, String>,
    /// The sector magic of the journal made with the store (`None`: formatted before
    /// superblocks recorded it).
    pub journal_id: Option<u32>,
}

impl Superblock {
    pub fn new(store_type: &str) -> Result<Superblock> {
        let mut fsid = [0u8; 16];
        fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut fsid))
            .map_err(|e| Error::from(e).context("reading /dev/urandom for the fsid"))?;
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Ok(Superblock {
            store_type: store_type.to_string(),
            fsid,
            created,
            options: BTreeMap::new(),
            journal_id: None,
        })
    }

    pub fn fsid_string(&self) -> String {
        let h = crate::json::hex(&self.fsid);
        format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::new();
        e.str(&self.store_type);
        e.raw(&self.fsid);
        e.u64(self.created);
        e.u32(self.options.len() as u32);
        for (k, v) in &self.options {
            e.str(k);
            e.str(v);
        }
        match self.journal_id {
            Some(id) => {
                e.u32(id);
                frame(MAGIC, VERSION, 1, &e.into_inner())
            }
            None => frame(MAGIC, 1, 1, &e.into_inner()),
        }
    }

    pub fn decode(buf: &[u8]) -> Result<Superblock> {
        let f = unframe(MAGIC, VERSION, buf, "superblock")?;
        let mut d = Decoder::new(f.payload);
        let store_type = d.string("store type")?;
        let mut fsid = [0u8; 16];
        fsid.copy_from_slice(d.take(16, "fsid")?);
        let created = d.u64("creation time")?;
        let n = d.count(8, "options")?;
        let mut options = BTreeMap::new();
        for _ in 0..n {
            let k = d.string("option name")?;
            let v = d.string("option value")?;
            options.insert(k, v);
        }
        let journal_id = if f.struct_v >= 2 {
            Some(d.u32("journal id")?)
        } else {
            None
        };
        Ok(Superblock {
            store_type,
            fsid,
            created,
            options,
            journal_id,
        })
    }

    pub fn path(dir: &Path) -> PathBuf {
        dir.join(FILE_NAME)
    }

    /// Reads the superblock of the store in `dir` from the real filesystem.
    pub fn read(dir: &Path) -> Result<Superblock> {
        Superblock::read_vfs(&RealFs::new(), dir)
    }

    /// Reads the superblock of the store in `dir`. ENOENT when there is none (the
    /// directory was never formatted); EUCLEAN when it is damaged.
    pub fn read_vfs(vfs: &dyn Vfs, dir: &Path) -> Result<Superblock> {
        let p = Superblock::path(dir);
        let buf = read_file(vfs, &p).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                let traces = used_store_traces(vfs, dir, &dir.join("journal"));
                if traces.is_empty() {
                    Error::not_found(format!(
                        "{} has no superblock: not a formatted store (run mkfs)",
                        dir.display()
                    ))
                } else {
                    Error::corrupt(format!(
                        "{} has lost its superblock but holds a store that was mounted ({}): \
                         restore the superblock; mkfs would discard the store",
                        dir.display(),
                        traces.join(", ")
                    ))
                }
            } else {
                Error::from(e).context(format!("reading {}", p.display()))
            }
        })?;
        Superblock::decode(&buf).map_err(|e| e.context(p.display()))
    }

    /// Writes atomically (temp file, fsync, rename, directory fsync).
    pub fn write(&self, vfs: &dyn Vfs, dir: &Path) -> Result<()> {
        write_file_atomic(vfs, &Superblock::path(dir), &self.encode())
    }

    /// Reads the superblock and checks it was written by `store_type`.
    pub fn read_expect(vfs: &dyn Vfs, dir: &Path, store_type: &str) -> Result<Superblock> {
        let sb = Superblock::read_vfs(vfs, dir)?;
        if sb.store_type != store_type {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "{} holds a {} store, not a {store_type}",
                    dir.display(),
                    sb.store_type
                ),
            ));
        }
        Ok(sb)
    }
}

/// A whole file's bytes, through `vfs`.
pub fn read_file(vfs: &dyn Vfs, path: &Path) -> std::io::Result<Vec<u8>> {
    let f = vfs.open(path, OpenMode::Read)?;
    let len = f.len()?;
    let len = usize::try_from(len)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "file too large"))?;
    let mut buf = vec![0u8; len];
    let n = read_full_at(&*f, &mut buf, 0)?;
    buf.truncate(n);
    Ok(buf)
}

/// Replaces `path` with `bytes` so that a crash leaves either the old or the new
/// file: write a temp file, fsync it, rename it over, fsync the directory.
pub fn write_file_atomic(vfs: &dyn Vfs, path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| Error::invalid(format!("{} is not a file path", path.display())))?;
    let tmp = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    let ctx =
        |e: std::io::Error, what: &str| Error::from(e).context(format!("{what} {}", tmp.display()));
    let f = vfs
        .open(&tmp, OpenMode::CreateTruncate)
        .map_err(|e| ctx(e, "creating"))?;
    f.write_at(bytes, 0).map_err(|e| ctx(e, "writing"))?;
    f.sync_all().map_err(|e| ctx(e, "syncing"))?;
    drop(f);
    ostore_journal::failpoint::hit("superblock.before_rename").map_err(|e| ctx(e, "renaming"))?;
    vfs.rename(&tmp, path)
        .map_err(|e| Error::from(e).context(format!("renaming onto {}", path.display())))?;
    vfs.sync_dir(dir)
        .map_err(|e| Error::from(e).context(format!("syncing directory {}", dir.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption() {
        let mut sb = Superblock::new("memstore").unwrap();
        sb.options.insert("strip_size".into(), "4096".into());
        let b = sb.encode();
        assert_eq!(Superblock::decode(&b).unwrap(), sb);
        for i in 0..b.len() {
            let mut g = b.clone();
            g[i] ^= 0x01;
            assert!(Superblock::decode(&g).is_err(), "flip at {i}");
        }
        assert_eq!(sb.fsid_string().len(), 36);
    }

    #[test]
    fn version_2_carries_the_journal_id_and_version_1_still_reads() {
        let mut sb = Superblock::new("kvstore").unwrap();
        let v1 = sb.encode();
        assert_eq!(v1[4], 1, "no journal id: written as version 1");
        sb.journal_id = Some(0xdead_beef);
        let v2 = sb.encode();
        assert_eq!((v2[4], v2[5]), (2, 1), "version 2, compat 1");
        assert_eq!(v2.len(), v1.len() + 4);
        assert_eq!(Superblock::decode(&v2).unwrap(), sb);
        let old = Superblock::decode(&v1).unwrap();
        assert_eq!(old.journal_id, None);
        assert_eq!(old.fsid, sb.fsid);
        for i in 0..v2.len() {
            let mut g = v2.clone();
            g[i] ^= 0x01;
            assert!(Superblock::decode(&g).is_err(), "flip at {i}");
        }
    }
}
