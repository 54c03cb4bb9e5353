//! `ostore-journal`: the write-ahead journal every ostore backend commits through.
//!
//! What this crate owns:
//! - [`vfs`]: the narrow I/O trait all file access goes through, with [`RealFs`] and the
//!   simulated, crash-state-generating [`SimFs`];
//! - [`format`]: every on-disk format of the journal (sector, volume header, batch, entry, TOC,
//!   info file), documented byte by byte here and in `docs/FORMATS.md`;
//! - [`failpoint`]: named crash/error points for tests (the `failpoints` feature);
//! - [`atomic`]: atomic small files ([`AtomicFileWriter`], [`AtomicFileReader`]);
//! - [`scan`]: reading a journal back (replay, [`scan()`]) and [`dump_volume`] for tools;
//! - [`journal`]: the writer ([`Journal`]) with group commit, rotation, TOC, trim and blank
//!   volumes;
//! - [`bench`]: the journal and raw-loop benchmark workloads shared by `cargo bench` and
//!   `os-bench`.
//!
//! The journal knows nothing of transactions or sequence numbers: an entry is opaque metadata
//! plus opaque data; the caller keys its own records by the [`Position`] each append returns.
//!
//! Typical use:
//! ```
//! use ostore_journal::{Journal, JournalOptions, Geometry, MetaAction, Position, ScanCallbacks, SimFs, Vfs};
//! use std::{path::Path, sync::Arc};
//!
//! struct Replay(Vec<Vec<u8>>);
//! impl ScanCallbacks for Replay {
//!     fn meta(&mut self, _pos: Position, meta: &[u8], _len: u64) -> MetaAction {
//!         self.0.push(meta.to_vec());
//!         MetaAction::Skip
//!     }
//! }
//!
//! let fs: Arc<dyn Vfs> = Arc::new(SimFs::new());
//! let dir = Path::new("/j");
//! let geo = Geometry { sector_size: 512, volume_size: 16 << 10, toc_len: 512 };
//! Journal::create(&*fs, dir, geo).unwrap();
//! let (j, _) = Journal::open(fs.clone(), dir, JournalOptions::default(), &mut Replay(vec![])).unwrap();
//! j.append(b"seq=1", b"transaction bytes").unwrap().wait().unwrap();
//! j.close().unwrap();
//! let mut r = Replay(vec![]);
//! let (j, _) = Journal::open(fs, dir, JournalOptions::default(), &mut r).unwrap();
//! assert_eq!(r.0, vec![b"seq=1".to_vec()]);
//! j.close().unwrap();
//! ```

pub mod aligned;
pub mod atomic;
pub mod bench;
pub mod error;
pub mod failpoint;
pub mod format;
pub mod journal;
pub mod scan;
mod sync;
mod uring;
pub mod vfs;

pub use atomic::{AtomicFileReader, AtomicFileWriter};
pub use error::{Error, Result};
pub use format::Geometry;
pub use journal::{
    read_info, AppendHandle, BlankMethod, IoMode, IoTimes, Journal, JournalOptions, TocContext,
    TocFn,
};
pub use scan::{
    dump_volume, list_volumes, scan, volume_path, BatchDump, EntryDump, MetaAction, ScanCallbacks,
    ScanOutcome, Tail, VolumeDump,
};
pub use vfs::{OpenMode, RealFs, SimFs, Vfs, VfsFile};

/// Where an entry (or a batch) lies: a volume number and a byte offset in that volume's file.
/// Ordered as the journal is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position {
    /// Volume number.
    pub volume: u64,
    /// Byte offset within the volume file.
    pub offset: u64,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.volume, self.offset)
    }
}
