//! The one narrow road to disk.
//!
//! Every byte the journal (and later the backends) reads or writes goes through [`Vfs`] and
//! [`VfsFile`], so tests can swap the real filesystem ([`RealFs`]) for a simulated disk
//! ([`SimFs`]) that records every write and every sync, injects failures, and produces the
//! states a crash could leave behind.
//!
//! The traits are object-safe (`Arc<dyn Vfs>`, `Box<dyn VfsFile>`) and use `std::io::Error`, so
//! a fault injector can return any errno. Opening the same path twice yields independent
//! handles: the journal relies on that to give each in-flight flush its own file description
//! (an fdatasync error is reported once per file description, see fsyncgate).

mod real;
mod sim;

use std::fmt;
use std::io;
use std::path::Path;

pub use real::RealFs;
pub use sim::{
    every_subset, kept_writes, sectors_touched, subset, Fault, FaultOps, KeptWrite, SimFs, SimOp,
    Tear, TearFill, SIM_SECTOR,
};

/// How to open a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Existing file, read only.
    Read,
    /// Existing file, read and write.
    ReadWrite,
    /// Existing file, read and write, bypassing the page cache (`O_DIRECT`) where the
    /// filesystem allows it, else as [`OpenMode::ReadWrite`]. Writes whose buffer
    /// address, offset and length are multiples of [`crate::aligned::ALIGN`] go straight
    /// to the device; others still work, through an aligned copy.
    ReadWriteDirect,
    /// Create; fail if it exists.
    CreateNew,
    /// Create, or truncate an existing file to zero length.
    CreateTruncate,
}

/// A filesystem namespace.
pub trait Vfs: Send + Sync + fmt::Debug {
    /// Open or create a file.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn VfsFile>>;
    /// Atomically rename, replacing `to` if it exists. Durable only after [`Vfs::sync_dir`].
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Remove a file. Durable only after [`Vfs::sync_dir`].
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Names (not paths) of the entries of a directory, in no particular order.
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Create a directory and its parents.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Make the directory's entries (creates, renames, removes) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Whether a file exists.
    fn exists(&self, path: &Path) -> io::Result<bool>;
}

/// An open file.
pub trait VfsFile: Send + Sync + fmt::Debug {
    /// Read up to `buf.len()` bytes at `offset`; returns the count (0 at or past the end).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Write all of `buf` at `offset`, extending the file if needed.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Write the concatenation of `bufs` at `offset` (one write as far as a crash is
    /// concerned: any part may be lost until synced). Real files gather them with
    /// `pwritev` instead of copying; the default copies them into one buffer.
    fn write_vectored_at(&self, bufs: &[&[u8]], offset: u64) -> io::Result<()> {
        self.write_at(&bufs.concat(), offset)
    }
    /// Current length.
    fn len(&self) -> io::Result<u64>;
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Truncate or extend (with zeros).
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Reserve space for `len` bytes without writing them (fallocate); extends the length.
    fn allocate(&self, len: u64) -> io::Result<()>;
    /// fdatasync: data and the metadata needed to read it back.
    fn sync_data(&self) -> io::Result<()>;
    /// fsync.
    fn sync_all(&self) -> io::Result<()>;
    /// The raw descriptor, for an io_uring path; `None` for simulated files.
    fn raw_fd(&self) -> Option<i32> {
        None
    }
}

/// Read until `buf` is full or the file ends; returns the number of bytes read.
pub fn read_full_at(file: &dyn VfsFile, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        let n = match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            break;
        }
        done += n;
    }
    Ok(done)
}
