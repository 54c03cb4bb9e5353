//! Reading the journal back: the scanner (replay, `scan`) and the single-volume dump for tools.
//!
//! ## Where the journal ends: torn tail or corruption
//! The scanner follows the chain of batches (each batch header names its volume, offset,
//! sequence number and the CRC of the previous header). The first batch that is missing or does
//! not validate (sector header, batch header, entry header or CRC, volume header when crossing
//! volumes) is a *candidate end* at position P. Then it decides:
//!
//! - if any later batch header (anywhere after P, in this or a later volume, chained or not)
//!   validates and records a durable frontier beyond P, the batch at P had been made durable
//!   before that batch was written, so its damage is **corruption**: [`Error::Corrupt`] naming
//!   the volume and offset where validation failed;
//! - otherwise nothing proves P was ever durable: it is a **torn tail** and the journal ends
//!   cleanly at P. No entry of the batch at P is delivered (its entries were never acknowledged:
//!   a batch is acknowledged only after it and every earlier batch are durable).
//!
//! Because the writer keeps several flushes in flight, a crash can leave later batches intact
//! after a torn one; they were not acknowledged either and are ignored (they cannot chain to the
//! new batches written over P later, so they never resurface).
//!
//! The limit of this rule: damage to the last durable batches that no later batch confirms (the
//! tail written just before an idle period or a crash) looks like a torn tail. A clean
//! [`crate::Journal::close`] writes an empty batch confirming everything before it.
//!
//! Memory stays bounded for huge entries: a batch is validated completely before any of its
//! entries is delivered; batches up to [`KEEP_LIMIT`] bytes are kept in memory between the two
//! passes, larger ones are read twice and their data delivered in sector-sized chunks.

use crate::error::{Error, Result};
use crate::format::batch::{self, BatchHeader};
use crate::format::entry::{self, EntryHeader};
use crate::format::toc::Toc;
use crate::format::volume::{self, VolumeHeader};
use crate::format::{sector, Geometry, StreamPos};
use crate::vfs::{read_full_at, OpenMode, Vfs, VfsFile};
use crate::Position;
use std::collections::BTreeSet;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

/// Batches up to this many payload bytes are kept in memory between validation and delivery.
pub const KEEP_LIMIT: u64 = 16 << 20;
/// A batch header claiming more payload than this is refused (no real batch comes close).
const MAX_BATCH_PAYLOAD: u64 = 1 << 44;
/// Sectors read at once.
const CHUNK_SECTORS: u64 = 64;

/// What to do with an entry after seeing its metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaAction {
    /// Deliver the data through [`ScanCallbacks::data`].
    ReadData,
    /// Go on to the next entry.
    Skip,
    /// End the scan here.
    Stop,
}

/// Receives entries in journal order. Only complete, verified entries are delivered.
pub trait ScanCallbacks {
    /// An entry at `pos` with its metadata and the length of its data.
    fn meta(&mut self, pos: Position, meta: &[u8], data_len: u64) -> MetaAction;
    /// The data of the entry whose `meta` returned `ReadData`, in one or more chunks; `last` is
    /// true on the final chunk (which may be empty).
    fn data(&mut self, chunk: &[u8], last: bool) -> ControlFlow<()> {
        let _ = (chunk, last);
        ControlFlow::Continue(())
    }
    /// The scan is about to deliver entries from `volume` (called once per volume, in order).
    fn next_volume(&mut self, volume: u64) -> ControlFlow<()> {
        let _ = volume;
        ControlFlow::Continue(())
    }
    /// Asked, while a batch is validated, of an entry whose data fails its checksum (its
    /// headers and metadata are intact, so the batch's structure is sound): `true` (the
    /// default) if the data matters, which makes the entry end the scan like any damage;
    /// `false` if the caller will skip it anyway (a replay that a checkpoint already
    /// covers), so that bit rot in data nobody will read again does not cost the journal
    /// its tail. Tolerated entries are counted in [`ScanOutcome::damaged_skipped`] and
    /// their metadata must then get `Skip` from [`ScanCallbacks::meta`].
    fn data_needed(&mut self, pos: Position, meta: &[u8]) -> bool {
        let _ = (pos, meta);
        true
    }
}

/// Metadata longer than this is not kept for [`ScanCallbacks::data_needed`]; such an entry's
/// data is always needed.
const NEED_META_LIMIT: usize = 4096;

/// How the scanned range ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tail {
    /// Nothing was written where the next batch would go.
    Clean,
    /// Something unverifiable (a torn write at a crash) follows the last valid batch.
    Torn {
        /// Where validation failed.
        at: Position,
        /// What failed.
        reason: String,
    },
    /// The scan reached the `to` volume.
    Limit,
    /// A callback stopped the scan.
    Stopped,
}

/// Result of a scan.
#[derive(Debug, Clone)]
pub struct ScanOutcome {
    /// Entries delivered.
    pub entries: u64,
    /// Batches read.
    pub batches: u64,
    /// Where the next batch goes (just past the last valid batch).
    pub end: Position,
    /// Why the scan ended.
    pub tail: Tail,
    /// Entries whose data failed its checksum where [`ScanCallbacks::data_needed`] said it
    /// was not needed (their metadata was delivered, their data was not).
    pub damaged_skipped: u64,
    pub(crate) resume: Resume,
}

/// Per-volume counters for the TOC.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct VolStats {
    pub vol: u64,
    pub spill_in: u64,
    pub first_batch_seq: u64,
    pub entries: u32,
}

/// What the writer needs to continue after the last valid batch.
#[derive(Debug, Clone)]
pub(crate) struct Resume {
    pub end: StreamPos,
    pub next_seq: u64,
    pub prev_crc: u32,
    pub stats: VolStats,
    /// Spill-in of every volume whose header was read.
    pub spill_in: std::collections::BTreeMap<u64, u64>,
}

/// Parse `NNNNNNNNNN.vol` names.
pub(crate) fn parse_name(name: &str, ext: &str) -> Option<u64> {
    let stem = name.strip_suffix(ext)?;
    if stem.len() != 10 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// Path of volume `n`.
pub fn volume_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:010}.vol"))
}

/// Numbers of the `.vol` files in `dir`.
pub fn list_volumes(vfs: &dyn Vfs, dir: &Path) -> Result<BTreeSet<u64>> {
    let names = vfs.list_dir(dir).map_err(|e| Error::io("list", dir, e))?;
    Ok(names.iter().filter_map(|n| parse_name(n, ".vol")).collect())
}

enum Fail {
    Io(Error),
    Bad { at: Position, reason: String },
}

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        Fail::Io(e)
    }
}

enum SinkErr {
    Bad(String),
    Stop,
}

/// Events of the entry parser.
trait EntrySink {
    fn header(
        &mut self,
        h: &EntryHeader,
        raw: &[u8; entry::HEADER_LEN],
        off: u64,
    ) -> Result<(), SinkErr>;
    fn meta(&mut self, chunk: &[u8], last: bool) -> Result<(), SinkErr>;
    fn data(&mut self, chunk: &[u8], last: bool) -> Result<(), SinkErr>;
}

#[derive(Clone, Copy)]
enum PState {
    Header,
    Meta(u64),
    Data(u64),
}

/// Incremental parser of a batch payload (a sequence of entries) fed in arbitrary chunks.
struct Parser {
    state: PState,
    hbuf: [u8; entry::HEADER_LEN],
    have: usize,
    hdr: EntryHeader,
    consumed: u64,
    entry_start: u64,
}

impl Parser {
    fn new() -> Self {
        Parser {
            state: PState::Header,
            hbuf: [0; entry::HEADER_LEN],
            have: 0,
            hdr: EntryHeader::new(0, 0, 0, 0),
            consumed: 0,
            entry_start: 0,
        }
    }

    /// True between entries.
    fn at_boundary(&self) -> bool {
        matches!(self.state, PState::Header) && self.have == 0
    }

    /// Offset within the payload of the entry being parsed.
    fn entry_start(&self) -> u64 {
        self.entry_start
    }

    fn feed(&mut self, mut chunk: &[u8], sink: &mut dyn EntrySink) -> Result<(), SinkErr> {
        loop {
            match self.state {
                PState::Header => {
                    if chunk.is_empty() {
                        return Ok(());
                    }
                    if self.have == 0 {
                        self.entry_start = self.consumed;
                    }
                    let n = (entry::HEADER_LEN - self.have).min(chunk.len());
                    self.hbuf[self.have..self.have + n].copy_from_slice(&chunk[..n]);
                    self.have += n;
                    self.consumed += n as u64;
                    chunk = &chunk[n..];
                    if self.have == entry::HEADER_LEN {
                        self.have = 0;
                        let h = EntryHeader::decode(&self.hbuf).map_err(|r| SinkErr::Bad(r.0))?;
                        self.hdr = h;
                        sink.header(&h, &self.hbuf, self.entry_start)?;
                        self.state = PState::Meta(u64::from(h.meta_len));
                        if h.meta_len == 0 {
                            sink.meta(&[], true)?;
                            self.state = PState::Data(u64::from(h.data_len));
                            if h.data_len == 0 {
                                sink.data(&[], true)?;
                                self.state = PState::Header;
                            }
                        }
                    }
                }
                PState::Meta(left) | PState::Data(left) => {
                    if chunk.is_empty() {
                        return Ok(());
                    }
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(chunk.len());
                    let left = left - n as u64;
                    let last = left == 0;
                    self.consumed += n as u64;
                    if let PState::Meta(_) = self.state {
                        sink.meta(&chunk[..n], last)?;
                        self.state = PState::Meta(left);
                        if last {
                            self.state = PState::Data(u64::from(self.hdr.data_len));
                            if self.hdr.data_len == 0 {
                                sink.data(&[], true)?;
                                self.state = PState::Header;
                            }
                        }
                    } else {
                        sink.data(&chunk[..n], last)?;
                        self.state = if last {
                            PState::Header
                        } else {
                            PState::Data(left)
                        };
                    }
                    chunk = &chunk[n..];
                }
            }
        }
    }
}

/// Pass 1: checks every CRC and records entry boundaries.
struct Verify<'c> {
    meta_crc: u32,
    data_crc: u32,
    hdr: EntryHeader,
    entries: Vec<(u64, EntryHeader)>,
    entries_crc: u32,
    /// The current entry's metadata (up to [`NEED_META_LIMIT`]) and its position, to ask
    /// whether damaged data is needed.
    meta: Vec<u8>,
    pos: Position,
    /// Where the batch's payload starts, to name entry positions.
    geo: Geometry,
    payload_start: StreamPos,
    cb: &'c mut dyn ScanCallbacks,
    /// Entries of this batch whose damaged data the caller does not need.
    tolerated: Vec<Position>,
}

impl<'c> Verify<'c> {
    fn new(geo: Geometry, payload_start: StreamPos, cb: &'c mut dyn ScanCallbacks) -> Self {
        Verify {
            meta_crc: 0,
            data_crc: 0,
            hdr: EntryHeader::new(0, 0, 0, 0),
            entries: Vec::new(),
            entries_crc: 0,
            meta: Vec::new(),
            pos: Position::default(),
            geo,
            payload_start,
            cb,
            tolerated: Vec::new(),
        }
    }
}

/// Callbacks for a dump: every entry's data counts.
struct AllNeeded;

impl ScanCallbacks for AllNeeded {
    fn meta(&mut self, _pos: Position, _meta: &[u8], _data_len: u64) -> MetaAction {
        MetaAction::Skip
    }
}

impl EntrySink for Verify<'_> {
    fn header(
        &mut self,
        h: &EntryHeader,
        raw: &[u8; entry::HEADER_LEN],
        off: u64,
    ) -> Result<(), SinkErr> {
        self.hdr = *h;
        self.meta_crc = 0;
        self.data_crc = 0;
        self.meta.clear();
        self.pos = self.geo.position(self.geo.advance(self.payload_start, off));
        self.entries.push((off, *h));
        self.entries_crc = crc32c::crc32c_append(self.entries_crc, raw);
        Ok(())
    }
    fn meta(&mut self, chunk: &[u8], last: bool) -> Result<(), SinkErr> {
        self.meta_crc = crc32c::crc32c_append(self.meta_crc, chunk);
        if self.hdr.meta_len as usize <= NEED_META_LIMIT {
            self.meta.extend_from_slice(chunk);
        }
        if last && self.meta_crc != self.hdr.meta_crc {
            return Err(SinkErr::Bad("entry metadata checksum mismatch".into()));
        }
        Ok(())
    }
    fn data(&mut self, chunk: &[u8], last: bool) -> Result<(), SinkErr> {
        self.data_crc = crc32c::crc32c_append(self.data_crc, chunk);
        if last && self.data_crc != self.hdr.data_crc {
            // The entry headers are bound by the batch header's CRC and the metadata by
            // its own, so only these data bytes are in doubt.
            let known = self.hdr.meta_len as usize <= NEED_META_LIMIT;
            if known && !self.cb.data_needed(self.pos, &self.meta) {
                self.tolerated.push(self.pos);
                return Ok(());
            }
            return Err(SinkErr::Bad("entry data checksum mismatch".into()));
        }
        Ok(())
    }
}

/// Pass 2: hands verified entries to the caller.
struct Deliver<'c> {
    cb: &'c mut dyn ScanCallbacks,
    geo: Geometry,
    payload_start: StreamPos,
    announced: Option<u64>,
    meta: Vec<u8>,
    pos: Position,
    data_len: u64,
    reading: bool,
    delivered: u64,
    /// Entries whose header starts in volume `.0`, the newest volume seen.
    counts: (u64, u32),
    /// Entries whose damaged data pass 1 tolerated; never delivered.
    tolerated: &'c [Position],
    /// A tolerated entry whose metadata the caller then asked data for.
    refused: Option<Position>,
}

impl EntrySink for Deliver<'_> {
    fn header(
        &mut self,
        h: &EntryHeader,
        _raw: &[u8; entry::HEADER_LEN],
        off: u64,
    ) -> Result<(), SinkErr> {
        let sp = self.geo.advance(self.payload_start, off);
        self.pos = self.geo.position(sp);
        if self.announced.is_none_or(|a| a < sp.vol) {
            let from = self.announced.map_or(sp.vol, |a| a + 1);
            for v in from..=sp.vol {
                if self.cb.next_volume(v).is_break() {
                    return Err(SinkErr::Stop);
                }
            }
            self.announced = Some(sp.vol);
        }
        if sp.vol == self.counts.0 {
            self.counts.1 = self.counts.1.saturating_add(1);
        } else if sp.vol > self.counts.0 {
            self.counts = (sp.vol, 1);
        }
        self.meta.clear();
        self.data_len = u64::from(h.data_len);
        self.reading = false;
        Ok(())
    }
    fn meta(&mut self, chunk: &[u8], last: bool) -> Result<(), SinkErr> {
        self.meta.extend_from_slice(chunk);
        if last {
            self.delivered += 1;
            match self.cb.meta(self.pos, &self.meta, self.data_len) {
                MetaAction::ReadData if self.tolerated.contains(&self.pos) => {
                    self.refused = Some(self.pos);
                    return Err(SinkErr::Stop);
                }
                MetaAction::ReadData => self.reading = true,
                MetaAction::Skip => self.reading = false,
                MetaAction::Stop => return Err(SinkErr::Stop),
            }
        }
        Ok(())
    }
    fn data(&mut self, chunk: &[u8], last: bool) -> Result<(), SinkErr> {
        if self.reading && self.cb.data(chunk, last).is_break() {
            return Err(SinkErr::Stop);
        }
        Ok(())
    }
}

struct BatchRead {
    /// Entries whose damaged data the caller said it does not need.
    tolerated: Vec<Position>,
    hdr: BatchHeader,
    crc: u32,
    payload_start: StreamPos,
    next: StreamPos,
    kept: Option<Vec<u8>>,
}

/// Reads volumes of one journal directory.
pub(crate) struct Scanner<'a> {
    vfs: &'a dyn Vfs,
    dir: PathBuf,
    geo: Geometry,
    magic: u32,
    volumes: BTreeSet<u64>,
    file: Option<(u64, Box<dyn VfsFile>)>,
    chunk: Option<(u64, u64, Vec<u8>)>,
    entered: Option<u64>,
    spill_in: std::collections::BTreeMap<u64, u64>,
}

impl<'a> Scanner<'a> {
    pub(crate) fn new(vfs: &'a dyn Vfs, dir: &Path, geo: Geometry, magic: u32) -> Result<Self> {
        let volumes = list_volumes(vfs, dir)?;
        // Volumes are made whole (a blank is written and synced before it is renamed into
        // place), so a shorter one was cut: damage, never a torn write to end cleanly at.
        for &v in &volumes {
            let path = volume_path(dir, v);
            let len = vfs
                .open(&path, OpenMode::Read)
                .and_then(|f| f.len())
                .map_err(|e| Error::io("stat", &path, e))?;
            if len != geo.volume_size {
                return Err(Error::Corrupt {
                    volume: v,
                    offset: len.min(geo.volume_size),
                    reason: format!(
                        "the volume file is {len} bytes, not the journal's volume size of {}",
                        geo.volume_size
                    ),
                });
            }
        }
        Ok(Scanner {
            vfs,
            dir: dir.to_path_buf(),
            geo,
            magic,
            volumes,
            file: None,
            chunk: None,
            entered: None,
            spill_in: std::collections::BTreeMap::new(),
        })
    }

    pub(crate) fn volumes(&self) -> &BTreeSet<u64> {
        &self.volumes
    }

    fn pos(&self, vol: u64, off: u64) -> Position {
        Position {
            volume: vol,
            offset: off,
        }
    }

    /// Copy sector `idx` of `vol` into `out`; false if the file is too short to hold it.
    fn read_sector(&mut self, vol: u64, idx: u64, out: &mut [u8]) -> Result<bool> {
        let s = self.geo.s();
        let hit = matches!(&self.chunk, Some((v, first, buf)) if *v == vol && idx >= *first && (idx - *first + 1) * s <= buf.len() as u64);
        if !hit {
            if self.file.as_ref().is_none_or(|(v, _)| *v != vol) {
                let path = volume_path(&self.dir, vol);
                let f = self
                    .vfs
                    .open(&path, OpenMode::Read)
                    .map_err(|e| Error::io("open", &path, e))?;
                self.file = Some((vol, f));
            }
            let total = self.geo.volume_size / s;
            let n = CHUNK_SECTORS.min(total.saturating_sub(idx));
            let mut buf = vec![0u8; (n * s) as usize];
            if let Some((_, f)) = &self.file {
                let got = read_full_at(&**f, &mut buf, idx * s)
                    .map_err(|e| Error::io("read", volume_path(&self.dir, vol), e))?;
                buf.truncate(got - got % s as usize);
            }
            self.chunk = Some((vol, idx, buf));
        }
        if let Some((_, first, buf)) = &self.chunk {
            let start = ((idx - first) * s) as usize;
            if let Some(src) = buf.get(start..start + s as usize) {
                out.copy_from_slice(src);
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Validate the header of `vol`; `expect_spill` of `None` accepts any spill-in.
    fn enter_volume(&mut self, vol: u64, expect_spill: Option<u64>) -> Result<VolumeHeader, Fail> {
        let at0 = self.pos(vol, 0);
        if !self.volumes.contains(&vol) {
            return Err(Fail::Bad {
                at: at0,
                reason: format!("volume {vol} does not exist"),
            });
        }
        let mut sec = vec![0u8; self.geo.sector_size as usize];
        if !self.read_sector(vol, 0, &mut sec)? {
            return Err(Fail::Bad {
                at: at0,
                reason: "volume file is empty".into(),
            });
        }
        let h = VolumeHeader::decode(&sec, self.magic, vol, &self.geo).map_err(|r| Fail::Bad {
            at: at0,
            reason: format!("volume header: {}", r.0),
        })?;
        if let Some(e) = expect_spill {
            if h.spill_in != e {
                return Err(Fail::Bad {
                    at: self.pos(vol, 24),
                    reason: format!(
                        "volume header spill-in {} where {e} was expected",
                        h.spill_in
                    ),
                });
            }
        }
        self.entered = Some(vol);
        self.spill_in.insert(vol, h.spill_in);
        Ok(h)
    }

    /// Stream bytes from `from` to `to`.
    fn dist(&self, from: StreamPos, to: StreamPos) -> u64 {
        let cap = self.geo.capacity();
        (to.vol * cap + to.soff).saturating_sub(from.vol * cap + from.soff)
    }

    /// Enter every volume up to `cur.vol` not yet entered, expecting the spill that reaches `cur`.
    fn ensure_entered(&mut self, cur: StreamPos) -> Result<(), Fail> {
        let mut v = self.entered.map_or(cur.vol, |e| e + 1);
        while v <= cur.vol {
            let spill = self.dist(StreamPos { vol: v, soff: 0 }, cur);
            self.enter_volume(v, Some(spill))?;
            v += 1;
        }
        Ok(())
    }

    /// Feed `n` stream bytes starting at `start` to `sink`, validating every sector header and
    /// the header of every volume entered; `batch_end` gives the expected spill-in.
    fn read_stream(
        &mut self,
        start: StreamPos,
        n: u64,
        batch_end: StreamPos,
        sink: &mut dyn FnMut(&[u8]) -> Result<(), Fail>,
    ) -> Result<(), Fail> {
        let pl = self.geo.payload();
        let s = self.geo.s();
        let hl = sector::HEADER_LEN as u64;
        let mut sec = vec![0u8; s as usize];
        let mut cur = start;
        let mut left = n;
        while left > 0 {
            if self.entered.is_some_and(|e| e < cur.vol) {
                let spill = self.dist(
                    StreamPos {
                        vol: cur.vol,
                        soff: 0,
                    },
                    batch_end,
                );
                self.enter_volume(cur.vol, Some(spill))?;
            }
            let idx = 1 + cur.soff / pl;
            let within = cur.soff % pl;
            let at = self.pos(cur.vol, idx * s);
            if !self.read_sector(cur.vol, idx, &mut sec)? {
                return Err(Fail::Bad {
                    at,
                    reason: "sector beyond the end of the volume file".into(),
                });
            }
            sector::check(&sec, self.magic, cur.vol).map_err(|r| Fail::Bad { at, reason: r.0 })?;
            let take = left.min(pl - within);
            let from = (hl + within) as usize;
            sink(&sec[from..from + take as usize])?;
            left -= take;
            cur = self.geo.advance(cur, take);
        }
        Ok(())
    }

    fn read_batch(
        &mut self,
        at: StreamPos,
        expect: Option<(u64, u32)>,
        cb: &mut dyn ScanCallbacks,
    ) -> Result<BatchRead, Fail> {
        let s = self.geo.s();
        let pl = self.geo.payload();
        let idx = 1 + at.soff / pl;
        let sec_at = self.pos(at.vol, idx * s);
        let hdr_pos = self.geo.position(at);
        let mut sec = vec![0u8; s as usize];
        if !self.read_sector(at.vol, idx, &mut sec)? {
            return Err(Fail::Bad {
                at: sec_at,
                reason: "sector beyond the end of the volume file".into(),
            });
        }
        sector::check(&sec, self.magic, at.vol).map_err(|r| Fail::Bad {
            at: sec_at,
            reason: r.0,
        })?;
        let hl = sector::HEADER_LEN;
        let bad = |reason: String| Fail::Bad {
            at: hdr_pos,
            reason,
        };
        let (hdr, crc) =
            BatchHeader::decode(&sec[hl..hl + batch::HEADER_LEN]).map_err(|r| bad(r.0))?;
        if hdr.volume != at.vol || hdr.offset != hdr_pos.offset {
            return Err(bad(format!(
                "batch header written for volume {} offset {}",
                hdr.volume, hdr.offset
            )));
        }
        if let Some((seq, prev)) = expect {
            if hdr.seq != seq || hdr.prev_crc != prev {
                return Err(bad(format!(
                    "batch {} (prev {:#010x}) does not follow batch {} ({prev:#010x})",
                    hdr.seq,
                    hdr.prev_crc,
                    seq.wrapping_sub(1)
                )));
            }
        }
        if hdr.payload_len > MAX_BATCH_PAYLOAD
            || u64::from(hdr.entries) * entry::HEADER_LEN as u64 > hdr.payload_len
        {
            return Err(bad(format!(
                "batch payload {} bytes for {} entries",
                hdr.payload_len, hdr.entries
            )));
        }
        let payload_start = self.geo.advance(at, batch::HEADER_LEN as u64);
        let end = self.geo.advance(payload_start, hdr.payload_len);
        let keep = hdr.payload_len <= KEEP_LIMIT;
        let mut kept = Vec::new();
        if keep {
            kept.reserve(hdr.payload_len as usize);
        }
        let mut parser = Parser::new();
        let mut verify = Verify::new(self.geo, payload_start, cb);
        let geo = self.geo;
        let parse_fail = |p: &Parser, reason: String| Fail::Bad {
            at: geo.position(geo.advance(payload_start, p.entry_start())),
            reason,
        };
        let mut sink_err: Option<Fail> = None;
        let r = self.read_stream(payload_start, hdr.payload_len, end, &mut |chunk| {
            if keep {
                kept.extend_from_slice(chunk);
            }
            match parser.feed(chunk, &mut verify) {
                Ok(()) => Ok(()),
                Err(SinkErr::Bad(reason)) => {
                    sink_err = Some(parse_fail(&parser, reason));
                    Err(Fail::Bad {
                        at: hdr_pos,
                        reason: String::new(),
                    })
                }
                Err(SinkErr::Stop) => Ok(()),
            }
        });
        if let Some(f) = sink_err {
            return Err(f);
        }
        r?;
        if !parser.at_boundary() {
            return Err(parse_fail(
                &parser,
                "batch payload ends inside an entry".into(),
            ));
        }
        if verify.entries.len() as u64 != u64::from(hdr.entries) {
            return Err(bad(format!(
                "batch holds {} entries, header says {}",
                verify.entries.len(),
                hdr.entries
            )));
        }
        if verify.entries_crc != hdr.entries_crc {
            return Err(bad("entry headers do not match the batch header".into()));
        }
        Ok(BatchRead {
            tolerated: verify.tolerated,
            hdr,
            crc,
            payload_start,
            next: self.geo.align_up(end),
            kept: keep.then_some(kept),
        })
    }

    /// Is there a valid batch header after `start` recording a durable frontier beyond it?
    fn find_evidence(&mut self, start: StreamPos) -> Result<Option<BatchHeader>> {
        let p = self.geo.position(start);
        let s = self.geo.s();
        let pl = self.geo.payload();
        let hl = sector::HEADER_LEN;
        let mut sec = vec![0u8; s as usize];
        let vols: Vec<u64> = self.volumes.range(start.vol..).copied().collect();
        for v in vols {
            let first = if v == start.vol {
                2 + start.soff / pl
            } else {
                1
            };
            for idx in first..=self.geo.data_sectors() {
                if !self.read_sector(v, idx, &mut sec)? {
                    break;
                }
                if sector::check(&sec, self.magic, v).is_err() {
                    continue;
                }
                let Ok((h, _)) = BatchHeader::decode(&sec[hl..hl + batch::HEADER_LEN]) else {
                    continue;
                };
                if h.volume == v
                    && h.offset == idx * s + hl as u64
                    && h.synced() > (p.volume, p.offset)
                {
                    return Ok(Some(h));
                }
            }
        }
        Ok(None)
    }

    fn decide(&mut self, start: StreamPos, at: Position, reason: String) -> Result<Tail> {
        if let Some(h) = self.find_evidence(start)? {
            return Err(Error::Corrupt {
                volume: at.volume,
                offset: at.offset,
                reason: format!(
                    "{reason} (batch {} at volume {} offset {} records everything before volume {} offset {} as durable)",
                    h.seq, h.volume, h.offset, h.synced_volume, h.synced_offset
                ),
            });
        }
        let first = self.geo.position(start);
        let sector_start = first.offset - first.offset % self.geo.s();
        let unwritten =
            at == Position {
                volume: start.vol,
                offset: sector_start,
            } || (start.soff == 0
                && at
                    == Position {
                        volume: start.vol,
                        offset: 0,
                    });
        if unwritten {
            Ok(Tail::Clean)
        } else {
            Ok(Tail::Torn { at, reason })
        }
    }

    /// Scan batches starting in volumes `[from, to)`.
    pub(crate) fn run(
        &mut self,
        from: u64,
        to: Option<u64>,
        cb: &mut dyn ScanCallbacks,
    ) -> Result<ScanOutcome> {
        let mut out = ScanOutcome {
            entries: 0,
            batches: 0,
            end: Position::default(),
            tail: Tail::Clean,
            damaged_skipped: 0,
            resume: Resume {
                end: StreamPos { vol: from, soff: 0 },
                next_seq: 1,
                prev_crc: 0,
                stats: VolStats {
                    vol: from,
                    ..VolStats::default()
                },
                spill_in: std::collections::BTreeMap::new(),
            },
        };
        let Some(&first) = self.volumes.range(from..).next() else {
            let vol = self
                .volumes
                .last()
                .map_or(from.max(1), |l| (l + 1).max(from));
            out.resume.end = StreamPos { vol, soff: 0 };
            out.resume.stats.vol = vol;
            out.end = self.geo.position(out.resume.end);
            return Ok(out);
        };
        let mut cur = StreamPos {
            vol: first,
            soff: 0,
        };
        let mut expect: Option<(u64, u32)> = None;
        let mut announced: Option<u64> = None;
        let mut counts: (u64, u32) = (0, 0);
        let mut first_seq: (u64, u64) = (0, 0);
        let tail = 'scan: {
            match self.enter_volume(first, None) {
                Ok(h) => {
                    // The spilled batch may cross further volumes; their spill-in is counted to
                    // its (unaligned) end, the next batch starts at the following sector.
                    let spill_end = self.geo.advance(cur, h.spill_in);
                    if let Err(f) = self.ensure_entered(spill_end) {
                        match f {
                            Fail::Io(e) => return Err(e),
                            Fail::Bad { at, reason } => {
                                break 'scan self.decide(cur, at, reason)?
                            }
                        }
                    }
                    cur = self.geo.align_up(spill_end);
                }
                Err(Fail::Io(e)) => return Err(e),
                Err(Fail::Bad { at, reason }) => break 'scan self.decide(cur, at, reason)?,
            }
            loop {
                if to.is_some_and(|t| cur.vol >= t) {
                    break 'scan Tail::Limit;
                }
                if let Err(f) = self.ensure_entered(cur) {
                    match f {
                        Fail::Io(e) => return Err(e),
                        Fail::Bad { at, reason } => break 'scan self.decide(cur, at, reason)?,
                    }
                }
                let b = match self.read_batch(cur, expect, &mut *cb) {
                    Ok(b) => b,
                    Err(Fail::Io(e)) => return Err(e),
                    Err(Fail::Bad { at, reason }) => break 'scan self.decide(cur, at, reason)?,
                };
                if first_seq.0 != cur.vol {
                    first_seq = (cur.vol, b.hdr.seq);
                }
                let mut deliver = Deliver {
                    cb: &mut *cb,
                    geo: self.geo,
                    payload_start: b.payload_start,
                    announced,
                    meta: Vec::new(),
                    pos: Position::default(),
                    data_len: 0,
                    reading: false,
                    delivered: 0,
                    counts,
                    tolerated: &b.tolerated,
                    refused: None,
                };
                let mut parser = Parser::new();
                let stopped = match &b.kept {
                    Some(bytes) => matches!(parser.feed(bytes, &mut deliver), Err(SinkErr::Stop)),
                    None => {
                        let mut stop = false;
                        let end = self.geo.advance(b.payload_start, b.hdr.payload_len);
                        // Pass 1 validated the volume headers; do not enter them again.
                        let saved = self.entered;
                        self.entered = None;
                        let r =
                            self.read_stream(b.payload_start, b.hdr.payload_len, end, &mut |c| {
                                match parser.feed(c, &mut deliver) {
                                    Err(SinkErr::Stop) => {
                                        stop = true;
                                        Err(Fail::Bad {
                                            at: Position::default(),
                                            reason: String::new(),
                                        })
                                    }
                                    _ => Ok(()),
                                }
                            });
                        self.entered = saved;
                        match r {
                            Err(Fail::Io(e)) => return Err(e),
                            Err(Fail::Bad { at, reason }) if !stop => {
                                return Err(Error::Corrupt {
                                    volume: at.volume,
                                    offset: at.offset,
                                    reason: format!(
                                        "changed between validation and delivery: {reason}"
                                    ),
                                })
                            }
                            _ => {}
                        }
                        stop
                    }
                };
                if let Some(at) = deliver.refused {
                    return Err(Error::Corrupt {
                        volume: at.volume,
                        offset: at.offset,
                        reason: "entry data checksum mismatch (the scan was told the data was \
                                 not needed, then asked for it)"
                            .into(),
                    });
                }
                out.damaged_skipped += b.tolerated.len() as u64;
                announced = deliver.announced;
                counts = deliver.counts;
                out.entries += deliver.delivered;
                out.batches += 1;
                if stopped {
                    break 'scan Tail::Stopped;
                }
                expect = Some((b.hdr.seq + 1, b.crc));
                cur = b.next;
            }
        };
        out.tail = tail;
        if let Some((seq, crc)) = expect {
            out.resume.next_seq = seq;
            out.resume.prev_crc = crc;
        }
        out.resume.end = cur;
        out.resume.stats = VolStats {
            vol: cur.vol,
            spill_in: if cur.soff == 0 {
                0
            } else {
                self.spill_in.get(&cur.vol).copied().unwrap_or(0)
            },
            first_batch_seq: if first_seq.0 == cur.vol {
                first_seq.1
            } else {
                0
            },
            entries: if counts.0 == cur.vol { counts.1 } else { 0 },
        };
        out.resume.spill_in = self.spill_in.clone();
        out.end = self.geo.position(cur);
        Ok(out)
    }
}

/// Scan the journal in `dir`: deliver every complete entry of batches starting in volumes
/// `[from, to)` (`to = None`: to the end) in order. A torn tail ends the scan cleanly
/// ([`Tail::Torn`]); damage before the end is [`Error::Corrupt`].
pub fn scan(
    vfs: &dyn Vfs,
    dir: &Path,
    from: u64,
    to: Option<u64>,
    cb: &mut dyn ScanCallbacks,
) -> Result<ScanOutcome> {
    let info = crate::journal::read_info(vfs, dir)?;
    Scanner::new(vfs, dir, info.geometry, info.magic)?.run(from, to, cb)
}

/// One entry seen by [`dump_volume`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryDump {
    /// Position of the entry header.
    pub position: Position,
    /// Metadata length.
    pub meta_len: u32,
    /// Data length.
    pub data_len: u32,
}

/// One batch header found by [`dump_volume`].
#[derive(Debug, Clone)]
pub struct BatchDump {
    /// Position of the batch header.
    pub position: Position,
    /// The header.
    pub header: BatchHeader,
    /// Entries parsed (those whose header lies in this volume).
    pub entries: Vec<EntryDump>,
    /// The batch continues into the next volume (only the part in this volume was checked).
    pub continues: bool,
    /// What failed while checking the part in this volume, if anything.
    pub error: Option<String>,
}

/// What [`dump_volume`] found in one volume file.
#[derive(Debug, Clone)]
pub struct VolumeDump {
    /// Volume number (from the header, else from the file name).
    pub volume: u64,
    /// The volume header, or why it failed.
    pub header: Result<VolumeHeader, String>,
    /// Journal magic used.
    pub magic: u32,
    /// Geometry used.
    pub geometry: Geometry,
    /// Data sectors whose sector header belongs to this volume.
    pub own_sectors: u64,
    /// Data sectors that do not (blank, stale or damaged).
    pub other_sectors: u64,
    /// Every valid batch header found at a sector start, in file order.
    pub batches: Vec<BatchDump>,
    /// The TOC (`Ok(None)`: not written).
    pub toc: Result<Option<Toc>, String>,
}

/// Inspect one volume file on its own, even in a journal too damaged to mount. Magic and
/// geometry come from `hint`, else from the volume header.
pub fn dump_volume(
    vfs: &dyn Vfs,
    path: &Path,
    hint: Option<(Geometry, u32)>,
) -> Result<VolumeDump> {
    let f = vfs
        .open(path, OpenMode::Read)
        .map_err(|e| Error::io("open", path, e))?;
    let mut s0 = vec![0u8; volume::LEN];
    let n = read_full_at(&*f, &mut s0, 0).map_err(|e| Error::io("read", path, e))?;
    s0.truncate(n);
    let decoded = VolumeHeader::decode_any(&s0);
    let name_vol = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| parse_name(n, ".vol"));
    let (geo, magic) = match (hint, &decoded) {
        (Some(h), _) => h,
        (None, Ok((h, m))) => (h.geometry, *m),
        (None, Err(r)) => {
            return Err(Error::BadFile {
                path: path.to_path_buf(),
                reason: format!("{}; pass the geometry and magic explicitly", r.0),
            })
        }
    };
    geo.validate()?;
    let volume = match (&decoded, name_vol) {
        (Ok((h, _)), _) => h.volume,
        (Err(_), Some(v)) => v,
        (Err(r), None) => {
            return Err(Error::BadFile {
                path: path.to_path_buf(),
                reason: format!("{}; volume number unknown", r.0),
            })
        }
    };
    let header = match decoded {
        Ok((h, m)) if m == magic && h.geometry == geo => Ok(h),
        Ok(_) => Err("volume header belongs to another journal or geometry".to_owned()),
        Err(r) => Err(r.0),
    };
    let dir = path.parent().unwrap_or(Path::new("")).to_path_buf();
    let single = DumpVfs {
        inner: vfs,
        path: path.to_path_buf(),
        dir: dir.clone(),
        canonical: volume_path(&dir, volume),
    };
    let mut sc = Scanner::new(&single, &dir, geo, magic)?;
    sc.volumes = BTreeSet::from([volume]);
    let mut out = VolumeDump {
        volume,
        header,
        magic,
        geometry: geo,
        own_sectors: 0,
        other_sectors: 0,
        batches: Vec::new(),
        toc: Ok(None),
    };
    let s = geo.s();
    let hl = sector::HEADER_LEN;
    let mut sec = vec![0u8; s as usize];
    for idx in 1..=geo.data_sectors() {
        if !sc.read_sector(volume, idx, &mut sec)? {
            out.other_sectors += geo.data_sectors() - idx + 1;
            break;
        }
        if sector::check(&sec, magic, volume).is_err() {
            out.other_sectors += 1;
            continue;
        }
        out.own_sectors += 1;
        let Ok((h, _)) = BatchHeader::decode(&sec[hl..hl + batch::HEADER_LEN]) else {
            continue;
        };
        if h.volume != volume || h.offset != idx * s + hl as u64 {
            continue;
        }
        let at = StreamPos {
            vol: volume,
            soff: (idx - 1) * geo.payload(),
        };
        let payload_start = geo.advance(at, batch::HEADER_LEN as u64);
        let in_vol = geo.capacity() - payload_start.soff.min(geo.capacity());
        let continues = payload_start.vol != volume || h.payload_len > in_vol;
        let n = if payload_start.vol != volume {
            0
        } else {
            h.payload_len.min(in_vol)
        };
        let mut parser = Parser::new();
        let mut all_needed = AllNeeded;
        let mut verify = Verify::new(geo, payload_start, &mut all_needed);
        let mut err = None;
        sc.entered = Some(volume);
        let r = sc.read_stream(payload_start, n, payload_start, &mut |c| match parser
            .feed(c, &mut verify)
        {
            Err(SinkErr::Bad(reason)) => {
                err = Some(reason);
                Err(Fail::Bad {
                    at: Position::default(),
                    reason: String::new(),
                })
            }
            _ => Ok(()),
        });
        match r {
            Err(Fail::Io(e)) => return Err(e),
            Err(Fail::Bad { at, reason }) if err.is_none() => {
                err = Some(format!("at offset {}: {reason}", at.offset));
            }
            _ => {}
        }
        if err.is_none() && !continues {
            if verify.entries.len() as u64 != u64::from(h.entries) {
                err = Some("entry count differs from the header".into());
            } else if verify.entries_crc != h.entries_crc {
                err = Some("entry headers do not match the batch header".into());
            }
        }
        out.batches.push(BatchDump {
            position: geo.position(at),
            header: h,
            entries: verify
                .entries
                .iter()
                .map(|(off, eh)| EntryDump {
                    position: geo.position(geo.advance(payload_start, *off)),
                    meta_len: eh.meta_len,
                    data_len: eh.data_len,
                })
                .collect(),
            continues,
            error: err,
        });
    }
    let mut area = vec![0u8; geo.toc_len as usize];
    let got =
        read_full_at(&*f, &mut area, geo.toc_offset()).map_err(|e| Error::io("read", path, e))?;
    area.truncate(got);
    out.toc = Toc::decode(&area, magic, volume, &geo).map_err(|r| r.0);
    Ok(out)
}

/// Lets the scanner read a volume file under any name (a copy, a renamed file) by mapping the
/// canonical `NNNNNNNNNN.vol` path to it.
#[derive(Debug)]
struct DumpVfs<'a> {
    inner: &'a dyn Vfs,
    path: PathBuf,
    dir: PathBuf,
    canonical: PathBuf,
}

impl Vfs for DumpVfs<'_> {
    fn open(&self, path: &Path, mode: OpenMode) -> std::io::Result<Box<dyn VfsFile>> {
        if path == self.canonical {
            self.inner.open(&self.path, mode)
        } else {
            self.inner.open(path, mode)
        }
    }
    fn rename(&self, _from: &Path, _to: &Path) -> std::io::Result<()> {
        Err(std::io::Error::from_raw_os_error(libc::EROFS))
    }
    fn remove(&self, _path: &Path) -> std::io::Result<()> {
        Err(std::io::Error::from_raw_os_error(libc::EROFS))
    }
    fn list_dir(&self, dir: &Path) -> std::io::Result<Vec<String>> {
        if dir == self.dir {
            Ok(self
                .canonical
                .file_name()
                .and_then(|n| n.to_str())
                .map(|n| vec![n.to_owned()])
                .unwrap_or_default())
        } else {
            self.inner.list_dir(dir)
        }
    }
    fn create_dir_all(&self, _dir: &Path) -> std::io::Result<()> {
        Err(std::io::Error::from_raw_os_error(libc::EROFS))
    }
    fn sync_dir(&self, _dir: &Path) -> std::io::Result<()> {
        Ok(())
    }
    fn exists(&self, path: &Path) -> std::io::Result<bool> {
        self.inner.exists(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Collect(Vec<(Vec<u8>, Vec<u8>)>);
    impl EntrySink for Collect {
        fn header(&mut self, _h: &EntryHeader, _r: &[u8; 20], _o: u64) -> Result<(), SinkErr> {
            self.0.push((Vec::new(), Vec::new()));
            Ok(())
        }
        fn meta(&mut self, c: &[u8], _l: bool) -> Result<(), SinkErr> {
            if let Some(last) = self.0.last_mut() {
                last.0.extend_from_slice(c);
            }
            Ok(())
        }
        fn data(&mut self, c: &[u8], _l: bool) -> Result<(), SinkErr> {
            if let Some(last) = self.0.last_mut() {
                last.1.extend_from_slice(c);
            }
            Ok(())
        }
    }

    fn encode_entry(meta: &[u8], data: &[u8]) -> Vec<u8> {
        let h = EntryHeader::new(
            meta.len() as u32,
            data.len() as u32,
            crc32c::crc32c(meta),
            crc32c::crc32c(data),
        );
        let mut v = h.encode().to_vec();
        v.extend_from_slice(meta);
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn parser_handles_any_chunking() {
        let entries: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (b"m1".to_vec(), b"data one".to_vec()),
            (Vec::new(), Vec::new()),
            (b"meta".to_vec(), Vec::new()),
            (Vec::new(), vec![7; 300]),
        ];
        let mut bytes = Vec::new();
        for (m, d) in &entries {
            bytes.extend(encode_entry(m, d));
        }
        for chunk in [1, 2, 3, 7, 19, 20, 21, 1000] {
            let mut p = Parser::new();
            let mut c = Collect(Vec::new());
            for piece in bytes.chunks(chunk) {
                assert!(p.feed(piece, &mut c).is_ok());
            }
            assert!(p.at_boundary());
            assert_eq!(c.0, entries, "chunk size {chunk}");
        }
    }

    #[test]
    fn names() {
        assert_eq!(parse_name("0000000012.vol", ".vol"), Some(12));
        assert_eq!(parse_name("000000012.vol", ".vol"), None);
        assert_eq!(parse_name("00000000a2.vol", ".vol"), None);
        assert_eq!(parse_name("0000000012.bvl", ".vol"), None);
    }
}
