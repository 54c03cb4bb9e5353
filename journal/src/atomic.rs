//! Atomic small files (checkpoints, the journal info file): after a crash the file is either
//! entirely old or entirely new, never empty or partial.
//!
//! Protocol: write `name.tmp`, fsync it, rename over `name`, fsync the directory. A reader
//! validates the frame:
//! ```text
//! 0   u32  magic "OSAF"
//! 4   u16  version (1)
//! 6   u16  checksum kind (1 = CRC32C)
//! 8   u32  caller's magic (what the payload is)
//! 12  u32  reserved (0)
//! 16  u64  payload length n
//! 24  n    payload
//! 24+n u32 CRC32C of bytes 0..24+n
//! ```
//! CRC32C rather than CRC64: the files are small (well under the ~4 KiB where CRC32C's
//! Hamming distance starts to drop) and CRC32C is hardware-accelerated here.

use crate::error::{Error, Result};
use crate::format::{get_u16, get_u32, get_u64, Reject};
use crate::vfs::{read_full_at, OpenMode, Vfs};
use std::path::{Path, PathBuf};

/// "OSAF".
pub const MAGIC: u32 = u32::from_le_bytes(*b"OSAF");
/// Current version.
pub const VERSION: u16 = 1;
const CRC32C_KIND: u16 = 1;
const HEADER: usize = 24;
/// Largest payload accepted by the reader (the files are small by design).
pub const MAX_PAYLOAD: u64 = 64 << 20;

fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

fn dir_of(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

/// Encode a frame (exposed for the fuzz target and tests).
pub fn encode(user_magic: u32, payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(HEADER + payload.len() + 4);
    b.extend_from_slice(&MAGIC.to_le_bytes());
    b.extend_from_slice(&VERSION.to_le_bytes());
    b.extend_from_slice(&CRC32C_KIND.to_le_bytes());
    b.extend_from_slice(&user_magic.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    b.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    b.extend_from_slice(payload);
    let c = crc32c::crc32c(&b);
    b.extend_from_slice(&c.to_le_bytes());
    b
}

/// Decode a frame, checking everything.
pub fn decode(b: &[u8], user_magic: u32) -> Result<&[u8], Reject> {
    decode_max(b, user_magic, MAX_PAYLOAD)
}

fn decode_max(b: &[u8], user_magic: u32, max: u64) -> Result<&[u8], Reject> {
    let m = get_u32(b, 0)?;
    if m != MAGIC {
        return Err(Reject(format!("atomic file magic {m:#010x}")));
    }
    let v = get_u16(b, 4)?;
    if v != VERSION {
        return Err(Reject(format!("atomic file version {v}")));
    }
    let kind = get_u16(b, 6)?;
    if kind != CRC32C_KIND {
        return Err(Reject(format!("unknown checksum kind {kind}")));
    }
    let um = get_u32(b, 8)?;
    if um != user_magic {
        return Err(Reject(format!(
            "file holds {um:#010x}, expected {user_magic:#010x}"
        )));
    }
    let n = get_u64(b, 16)?;
    if n > max || b.len() as u64 != HEADER as u64 + n + 4 {
        return Err(Reject(format!(
            "payload length {n} does not match file length {}",
            b.len()
        )));
    }
    let n = n as usize;
    crate::format::check_crc(b, HEADER + n, "atomic file")?;
    Ok(&b[HEADER..HEADER + n])
}

/// Writes one atomic file.
#[derive(Debug)]
pub struct AtomicFileWriter<'a> {
    vfs: &'a dyn Vfs,
    path: PathBuf,
    magic: u32,
    max: u64,
}

impl<'a> AtomicFileWriter<'a> {
    /// A writer for `path` whose payload is identified by `magic`.
    pub fn new(vfs: &'a dyn Vfs, path: impl Into<PathBuf>, magic: u32) -> Self {
        AtomicFileWriter {
            vfs,
            path: path.into(),
            magic,
            max: MAX_PAYLOAD,
        }
    }

    /// Accept payloads up to `max` bytes instead of [`MAX_PAYLOAD`]; the reader must be
    /// given the same limit.
    pub fn max_payload(mut self, max: u64) -> Self {
        self.max = max;
        self
    }

    /// Replace the file's contents with `payload`, durably. On error the file holds either the
    /// old or the new contents (after a crash too); a stale `.tmp` may be left behind.
    pub fn write(&self, payload: &[u8]) -> Result<()> {
        // A file the reader would refuse is data lost: refuse it here, before writing.
        if payload.len() as u64 > self.max {
            return Err(Error::AtomicTooLarge {
                path: self.path.clone(),
                len: payload.len() as u64,
                max: self.max,
            });
        }
        let tmp = tmp_path(&self.path);
        let frame = encode(self.magic, payload);
        let f = self
            .vfs
            .open(&tmp, OpenMode::CreateTruncate)
            .map_err(|e| Error::io("create", &tmp, e))?;
        f.write_at(&frame, 0)
            .map_err(|e| Error::io("write", &tmp, e))?;
        f.sync_all().map_err(|e| Error::io("fsync", &tmp, e))?;
        drop(f);
        crate::failpoint::hit("atomic.before_rename")
            .map_err(|e| Error::io("rename", &self.path, e))?;
        self.vfs
            .rename(&tmp, &self.path)
            .map_err(|e| Error::io("rename", &self.path, e))?;
        let dir = dir_of(&self.path);
        crate::failpoint::hit("atomic.before_dir_sync")
            .map_err(|e| Error::io("fsync directory", &dir, e))?;
        self.vfs
            .sync_dir(&dir)
            .map_err(|e| Error::io("fsync directory", dir, e))
    }
}

/// Reads one atomic file.
#[derive(Debug)]
pub struct AtomicFileReader<'a> {
    vfs: &'a dyn Vfs,
    path: PathBuf,
    magic: u32,
    max: u64,
}

impl<'a> AtomicFileReader<'a> {
    /// A reader for `path` expecting payload magic `magic`.
    pub fn new(vfs: &'a dyn Vfs, path: impl Into<PathBuf>, magic: u32) -> Self {
        AtomicFileReader {
            vfs,
            path: path.into(),
            magic,
            max: MAX_PAYLOAD,
        }
    }

    /// Accept payloads up to `max` bytes instead of [`MAX_PAYLOAD`].
    pub fn max_payload(mut self, max: u64) -> Self {
        self.max = max;
        self
    }

    /// The payload; `Ok(None)` if the file does not exist; `Err(BadFile)` if it fails validation.
    pub fn read(&self) -> Result<Option<Vec<u8>>> {
        let f = match self.vfs.open(&self.path, OpenMode::Read) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("open", &self.path, e)),
        };
        let len = f.len().map_err(|e| Error::io("stat", &self.path, e))?;
        if len > self.max.saturating_add(HEADER as u64 + 4) {
            return Err(Error::BadFile {
                path: self.path.clone(),
                reason: format!("{len} bytes is too large for an atomic file"),
            });
        }
        let mut buf = vec![0u8; len as usize];
        let n = read_full_at(&*f, &mut buf, 0).map_err(|e| Error::io("read", &self.path, e))?;
        buf.truncate(n);
        match decode_max(&buf, self.magic, self.max) {
            Ok(p) => Ok(Some(p.to_vec())),
            Err(r) => Err(Error::BadFile {
                path: self.path.clone(),
                reason: r.0,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfs::{every_subset, SimFs, Tear, TearFill};

    #[test]
    fn roundtrip() {
        for n in [0usize, 1, 100, 5000] {
            let p: Vec<u8> = (0..n).map(|i| (i * 7) as u8).collect();
            assert_eq!(decode(&encode(9, &p), 9).unwrap(), &p[..]);
        }
        let fs = SimFs::new();
        fs.create_dir_all(Path::new("/d")).unwrap();
        let path = Path::new("/d/ckpt");
        assert_eq!(AtomicFileReader::new(&fs, path, 9).read().unwrap(), None);
        AtomicFileWriter::new(&fs, path, 9).write(b"one").unwrap();
        AtomicFileWriter::new(&fs, path, 9).write(b"two!").unwrap();
        assert_eq!(
            AtomicFileReader::new(&fs, path, 9).read().unwrap().unwrap(),
            b"two!"
        );
        // The writer refuses what the reader would refuse, and leaves the file alone.
        let e = AtomicFileWriter::new(&fs, path, 9)
            .max_payload(4)
            .write(b"five!")
            .unwrap_err();
        assert!(
            matches!(e, Error::AtomicTooLarge { len: 5, max: 4, .. }),
            "{e}"
        );
        assert_eq!(
            AtomicFileReader::new(&fs, path, 9).read().unwrap().unwrap(),
            b"two!"
        );
        let big = vec![3u8; 100];
        AtomicFileWriter::new(&fs, path, 9)
            .max_payload(100)
            .write(&big)
            .unwrap();
        assert!(AtomicFileReader::new(&fs, path, 9)
            .max_payload(99)
            .read()
            .is_err());
        assert_eq!(
            AtomicFileReader::new(&fs, path, 9)
                .max_payload(100)
                .read()
                .unwrap()
                .unwrap(),
            big
        );
        assert!(AtomicFileReader::new(&fs, path, 8).read().is_err());
    }

    #[test]
    fn detects_corruption() {
        let b = encode(9, b"payload");
        for i in 0..b.len() {
            for bit in 0..8 {
                let mut c = b.clone();
                c[i] ^= 1 << bit;
                assert!(decode(&c, 9).is_err(), "byte {i} bit {bit}");
            }
        }
        for n in 0..b.len() {
            assert!(decode(&b[..n], 9).is_err(), "truncated to {n}");
        }
        let mut longer = b.clone();
        longer.push(0);
        assert!(decode(&longer, 9).is_err());
    }

    /// Every crash state of a replace is fully old or fully new.
    #[test]
    fn crash_during_replace_is_old_or_new() {
        let fs = SimFs::new();
        fs.create_dir_all(Path::new("/d")).unwrap();
        let path = Path::new("/d/ckpt");
        AtomicFileWriter::new(&fs, path, 9).write(b"old").unwrap();
        let start = fs.op_count();
        AtomicFileWriter::new(&fs, path, 9)
            .write(b"new contents")
            .unwrap();
        let end = fs.op_count();
        let mut states = 0;
        for at in start..=end {
            let un = fs.unsynced_at(at);
            for keep in every_subset(&un) {
                let mut tears = vec![None];
                for &op in &keep {
                    for fill in [TearFill::Old, TearFill::Zeros, TearFill::Garbage(at as u64)] {
                        for kb in [0, 1, 10, 30] {
                            tears.push(Some(Tear::prefix(op, kb, fill)));
                        }
                    }
                }
                for t in tears {
                    let c = fs.crash_state(at, &keep, t);
                    let got = AtomicFileReader::new(&c, path, 9).read().unwrap().unwrap();
                    assert!(got == b"old" || got == b"new contents", "{got:?}");
                    states += 1;
                }
            }
        }
        assert!(states > 20);
    }
}
