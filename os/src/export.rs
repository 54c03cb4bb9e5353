//! The export stream (`os-tool export` / `import`): collections and their objects (data, attrs, omap header, omap keys)
//! in one versioned, checksummed file that any backend can import, so an export from
//! FileStore imported into KeyValueStore gives the same objects.
//!
//! Byte map (integers little-endian):
//! ```text
//! header  8  magic "OSEXPORT"
//!         2  version (1)
//!         2  oldest version that can read it (1)
//!         4  reserved (0)
//!         4  CRC32C of the 16 bytes above
//! record  1  type
//!         4  payload length (at most 16 MiB)
//!         .. payload
//!         4  CRC32C of type, length and payload
//! ```
//! Record types and payloads (`bytes`/`str` = u32 length + bytes; ids as in transactions):
//! ```text
//! 1 collection   collection id, u32 bits
//! 2 object       collection id, object id, u64 size        (starts an object)
//! 3 data         u64 offset, bytes                          (extents holding data, in order)
//! 4 attrs        u32 n, n x (str name, bytes value)
//! 5 omap header  bytes
//! 6 omap keys    u32 n, n x (bytes key, bytes value)        (in key order, several records)
//! 7 object end   (empty)
//! 255 end        u64 collections, u64 objects, u64 records before it
//! ```
//! The end record is mandatory: a file without it is truncated. The reader checks every
//! CRC and the record grammar; import reads the whole file once to verify it before it
//! changes anything.

use std::io::{Read, Write};

use crate::codec::{Decoder, Encoder};
use crate::transaction::{decode_collection, decode_object, encode_collection, encode_object};
use crate::{CollectionId, Error, ObjectId, ObjectStore, OmapKey, Result, Transaction};

const MAGIC: &[u8; 8] = b"OSEXPORT";
const VERSION: u16 = 1;
const HEADER_LEN: usize = 20;
const MAX_PAYLOAD: usize = 16 << 20;
/// Data bytes per data record and per import transaction.
const CHUNK: u64 = 1 << 20;
/// Omap keys per omap record.
const KEYS_PER_RECORD: usize = 1024;

const T_COLLECTION: u8 = 1;
const T_OBJECT: u8 = 2;
const T_DATA: u8 = 3;
const T_ATTRS: u8 = 4;
const T_OMAP_HEADER: u8 = 5;
const T_OMAP_KEYS: u8 = 6;
const T_OBJECT_END: u8 = 7;
const T_END: u8 = 255;

/// What an export or import moved.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    pub collections: u64,
    pub objects: u64,
    pub data_bytes: u64,
    pub records: u64,
}

fn io_err(e: std::io::Error, what: &str) -> Error {
    Error::from(e).context(what.to_string())
}

struct RecordWriter<'a> {
    out: &'a mut dyn Write,
    records: u64,
}

impl RecordWriter<'_> {
    fn record(&mut self, ty: u8, payload: &[u8]) -> Result<()> {
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|l| (*l as usize) <= MAX_PAYLOAD)
            .ok_or_else(|| Error::too_big("export record over 16 MiB"))?;
        let mut head = [0u8; 5];
        head[0] = ty;
        head[1..].copy_from_slice(&len.to_le_bytes());
        let crc = crc32c::crc32c_append(crc32c::crc32c(&head), payload);
        self.out
            .write_all(&head)
            .map_err(|e| io_err(e, "writing the export"))?;
        self.out
            .write_all(payload)
            .map_err(|e| io_err(e, "writing the export"))?;
        self.out
            .write_all(&crc.to_le_bytes())
            .map_err(|e| io_err(e, "writing the export"))?;
        self.records += 1;
        Ok(())
    }
}

/// Writes `colls` (all collections when empty) of the mounted store to `out`.
/// `progress` is called with the objects exported so far.
pub fn export(
    s: &dyn ObjectStore,
    colls: &[CollectionId],
    out: &mut dyn Write,
    progress: &mut dyn FnMut(u64),
) -> Result<Counts> {
    let mut colls = if colls.is_empty() {
        s.list_collections()?
    } else {
        colls.to_vec()
    };
    colls.sort();
    // A collection named twice is exported once: its import refuses a repeat.
    colls.dedup();
    let mut head = Vec::with_capacity(HEADER_LEN);
    head.extend_from_slice(MAGIC);
    head.extend_from_slice(&VERSION.to_le_bytes());
    head.extend_from_slice(&VERSION.to_le_bytes());
    head.extend_from_slice(&[0; 4]);
    let crc = crc32c::crc32c(&head);
    head.extend_from_slice(&crc.to_le_bytes());
    out.write_all(&head)
        .map_err(|e| io_err(e, "writing the export"))?;
    let mut w = RecordWriter { out, records: 0 };
    let mut counts = Counts::default();
    for cid in &colls {
        let ch = s.open_collection(cid)?;
        let mut e = Encoder::new();
        encode_collection(&mut e, cid);
        e.u32(s.collection_bits(&ch)?);
        w.record(T_COLLECTION, &e.into_inner())?;
        counts.collections += 1;
        let end = ObjectId::max_sentinel();
        let mut pos = ObjectId::min();
        loop {
            let (objs, next) = s.collection_list(&ch, &pos, &end, 256)?;
            for oid in &objs {
                export_object(s, &ch, cid, oid, &mut w, &mut counts)?;
                progress(counts.objects);
            }
            if next.is_max() || objs.is_empty() || next == pos {
                break;
            }
            pos = next;
        }
    }
    let mut e = Encoder::new();
    e.u64(counts.collections);
    e.u64(counts.objects);
    e.u64(w.records);
    w.record(T_END, &e.into_inner())?;
    counts.records = w.records;
    w.out.flush().map_err(|e| io_err(e, "writing the export"))?;
    Ok(counts)
}

fn export_object(
    s: &dyn ObjectStore,
    ch: &crate::CollectionHandle,
    cid: &CollectionId,
    oid: &ObjectId,
    w: &mut RecordWriter<'_>,
    counts: &mut Counts,
) -> Result<()> {
    let size = s.stat(ch, oid)?.size;
    let mut e = Encoder::new();
    encode_collection(&mut e, cid);
    encode_object(&mut e, oid);
    e.u64(size);
    w.record(T_OBJECT, &e.into_inner())?;
    // Only extents holding data: a sparse object stays sparse in the file.
    for (off, len) in s.fiemap(ch, oid, 0, size.max(1))? {
        let end = (off + len).min(size);
        let mut at = off;
        while at < end {
            let n = (end - at).min(CHUNK);
            let data = s.read(ch, oid, at, n)?;
            if data.len() as u64 != n {
                return Err(Error::io(format!(
                    "{oid} in {cid}: read {} bytes at {at}, expected {n}",
                    data.len()
                )));
            }
            let mut e = Encoder::with_capacity(data.len() + 12);
            e.u64(at);
            e.bytes(&data);
            w.record(T_DATA, &e.into_inner())?;
            counts.data_bytes += n;
            at += n;
        }
    }
    let attrs = s.getattrs(ch, oid)?;
    let mut e = Encoder::new();
    e.u32(attrs.len() as u32);
    for (k, v) in &attrs {
        e.str(k);
        e.bytes(v);
    }
    w.record(T_ATTRS, &e.into_inner())?;
    let (header, keys) = s.omap_get(ch, oid)?;
    let mut e = Encoder::new();
    e.bytes(&header);
    w.record(T_OMAP_HEADER, &e.into_inner())?;
    let keys: Vec<(OmapKey, Vec<u8>)> = keys.into_iter().collect();
    for part in keys.chunks(KEYS_PER_RECORD) {
        let mut e = Encoder::new();
        e.u32(part.len() as u32);
        for (k, v) in part {
            e.bytes(k);
            e.bytes(v);
        }
        w.record(T_OMAP_KEYS, &e.into_inner())?;
    }
    w.record(T_OBJECT_END, &[])?;
    counts.objects += 1;
    Ok(())
}

/// One parsed record.
#[derive(Debug)]
enum Record {
    Collection(CollectionId, u32),
    Object(CollectionId, ObjectId, u64),
    Data(u64, Vec<u8>),
    Attrs(Vec<(String, Vec<u8>)>),
    OmapHeader(Vec<u8>),
    OmapKeys(Vec<(OmapKey, Vec<u8>)>),
    ObjectEnd,
    End {
        collections: u64,
        objects: u64,
        records: u64,
    },
}

/// Reads records, checking the header, every CRC and every payload's layout.
struct RecordReader<'a> {
    inp: &'a mut dyn Read,
    offset: u64,
    records: u64,
}

impl<'a> RecordReader<'a> {
    fn new(inp: &'a mut dyn Read) -> Result<RecordReader<'a>> {
        let mut head = [0u8; HEADER_LEN];
        read_exact(inp, &mut head, "the export header", 0)?;
        if &head[..8] != MAGIC {
            return Err(Error::corrupt("not an ostore export file (bad magic)"));
        }
        let crc = u32::from_le_bytes([head[16], head[17], head[18], head[19]]);
        if crc32c::crc32c(&head[..16]) != crc {
            return Err(Error::corrupt("export header checksum mismatch"));
        }
        let compat = u16::from_le_bytes([head[10], head[11]]);
        if compat > VERSION {
            return Err(Error::new(
                crate::ErrorKind::Unsupported,
                format!("export file needs version {compat} of the format; this os-tool reads {VERSION}"),
            ));
        }
        Ok(RecordReader {
            inp,
            offset: HEADER_LEN as u64,
            records: 0,
        })
    }

    fn next(&mut self) -> Result<Record> {
        let at = self.offset;
        let mut head = [0u8; 5];
        read_exact(self.inp, &mut head, "a record header", at)?;
        let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize;
        if len > MAX_PAYLOAD {
            return Err(Error::corrupt(format!(
                "export record at offset {at} claims {len} bytes (damaged length)"
            )));
        }
        let mut payload = vec![0u8; len];
        read_exact(self.inp, &mut payload, "a record", at)?;
        let mut c = [0u8; 4];
        read_exact(self.inp, &mut c, "a record checksum", at)?;
        if crc32c::crc32c_append(crc32c::crc32c(&head), &payload) != u32::from_le_bytes(c) {
            return Err(Error::corrupt(format!(
                "export record {} at offset {at}: checksum mismatch",
                self.records
            )));
        }
        self.offset += 9 + len as u64;
        self.records += 1;
        parse_record(head[0], &payload)
            .map_err(|e| e.context(format!("export record {} at offset {at}", self.records - 1)))
    }
}

fn read_exact(inp: &mut dyn Read, buf: &mut [u8], what: &str, at: u64) -> Result<()> {
    inp.read_exact(buf).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            Error::corrupt(format!(
                "export file is truncated: it ends inside {what} at offset {at}"
            ))
        } else {
            io_err(e, "reading the export")
        }
    })
}

fn parse_record(ty: u8, p: &[u8]) -> Result<Record> {
    let mut d = Decoder::new(p);
    let r = match ty {
        T_COLLECTION => Record::Collection(decode_collection(&mut d)?, d.u32("bits")?),
        T_OBJECT => {
            let c = decode_collection(&mut d)?;
            let o = decode_object(&mut d)?;
            Record::Object(c, o, d.u64("size")?)
        }
        T_DATA => Record::Data(d.u64("offset")?, d.bytes("data")?.to_vec()),
        T_ATTRS => {
            let n = d.count(8, "attrs")?;
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                v.push((d.string("attr name")?, d.bytes("attr value")?.to_vec()));
            }
            Record::Attrs(v)
        }
        T_OMAP_HEADER => Record::OmapHeader(d.bytes("omap header")?.to_vec()),
        T_OMAP_KEYS => {
            let n = d.count(8, "omap keys")?;
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                v.push((
                    d.bytes("omap key")?.to_vec(),
                    d.bytes("omap value")?.to_vec(),
                ));
            }
            Record::OmapKeys(v)
        }
        T_OBJECT_END => Record::ObjectEnd,
        T_END => Record::End {
            collections: d.u64("collection count")?,
            objects: d.u64("object count")?,
            records: d.u64("record count")?,
        },
        t => return Err(Error::corrupt(format!("unknown record type {t}"))),
    };
    if d.remaining() != 0 {
        return Err(Error::corrupt("trailing bytes in a record"));
    }
    Ok(r)
}

/// What an import does with each piece, in file order.
trait Sink {
    fn collection(&mut self, cid: &CollectionId, bits: u32) -> Result<()>;
    fn object(&mut self, cid: &CollectionId, oid: &ObjectId, size: u64) -> Result<()>;
    fn data(&mut self, off: u64, data: Vec<u8>) -> Result<()>;
    fn attrs(&mut self, attrs: Vec<(String, Vec<u8>)>) -> Result<()>;
    fn omap_header(&mut self, h: Vec<u8>) -> Result<()>;
    fn omap_keys(&mut self, keys: Vec<(OmapKey, Vec<u8>)>) -> Result<()>;
    fn object_end(&mut self) -> Result<()>;
}

/// Walks the whole stream, checking its grammar: collections before their objects,
/// object records in order and inside an object, data inside the object's size, and
/// the end record's counts.
fn walk(inp: &mut dyn Read, sink: &mut dyn Sink) -> Result<Counts> {
    let mut r = RecordReader::new(inp)?;
    let mut counts = Counts::default();
    let mut colls: Vec<CollectionId> = Vec::new();
    let mut in_object: Option<(ObjectId, u64)> = None;
    let mut last_obj: Option<(CollectionId, ObjectId)> = None;
    loop {
        let at = r.offset;
        let bad = |m: String| Error::corrupt(format!("export record at offset {at}: {m}"));
        match r.next()? {
            Record::Collection(c, bits) => {
                if in_object.is_some() || colls.last().is_some_and(|l| *l >= c) {
                    return Err(bad(format!("collection {c} out of order")));
                }
                colls.push(c);
                counts.collections += 1;
                sink.collection(&c, bits)?;
            }
            Record::Object(c, o, size) => {
                if in_object.is_some() || colls.last() != Some(&c) {
                    return Err(bad(format!("object {o} outside its collection {c}")));
                }
                if last_obj
                    .as_ref()
                    .is_some_and(|(lc, lo)| *lc == c && *lo >= o)
                {
                    return Err(bad(format!("object {o} out of order")));
                }
                crate::limits::validate_object(&o).map_err(|e| bad(e.to_string()))?;
                in_object = Some((o.clone(), size));
                last_obj = Some((c, o.clone()));
                sink.object(&c, &o, size)?;
            }
            Record::Data(off, data) => {
                let Some((o, size)) = &in_object else {
                    return Err(bad("data outside an object".into()));
                };
                if off.checked_add(data.len() as u64).is_none_or(|e| e > *size) {
                    return Err(bad(format!("data at {off} runs past the size of {o}")));
                }
                counts.data_bytes += data.len() as u64;
                sink.data(off, data)?;
            }
            Record::Attrs(a) => {
                if in_object.is_none() {
                    return Err(bad("attrs outside an object".into()));
                }
                sink.attrs(a)?;
            }
            Record::OmapHeader(h) => {
                if in_object.is_none() {
                    return Err(bad("omap header outside an object".into()));
                }
                sink.omap_header(h)?;
            }
            Record::OmapKeys(k) => {
                if in_object.is_none() {
                    return Err(bad("omap keys outside an object".into()));
                }
                sink.omap_keys(k)?;
            }
            Record::ObjectEnd => {
                if in_object.take().is_none() {
                    return Err(bad("object end without an object".into()));
                }
                counts.objects += 1;
                sink.object_end()?;
            }
            Record::End {
                collections,
                objects,
                records,
            } => {
                if in_object.is_some()
                    || collections != counts.collections
                    || objects != counts.objects
                    || records != r.records - 1
                {
                    return Err(bad(
                        "the end record does not match the file's contents".into()
                    ));
                }
                let mut extra = [0u8; 1];
                if r.inp
                    .read(&mut extra)
                    .map_err(|e| io_err(e, "reading the export"))?
                    != 0
                {
                    return Err(bad("bytes after the end record".into()));
                }
                counts.records = r.records;
                return Ok(counts);
            }
        }
    }
}

/// Checks a whole export stream without a store.
pub fn verify(inp: &mut dyn Read) -> Result<(Counts, Vec<CollectionId>)> {
    struct Colls(Vec<CollectionId>);
    impl Sink for Colls {
        fn collection(&mut self, cid: &CollectionId, _bits: u32) -> Result<()> {
            self.0.push(*cid);
            Ok(())
        }
        fn object(&mut self, _c: &CollectionId, _o: &ObjectId, _s: u64) -> Result<()> {
            Ok(())
        }
        fn data(&mut self, _off: u64, _d: Vec<u8>) -> Result<()> {
            Ok(())
        }
        fn attrs(&mut self, _a: Vec<(String, Vec<u8>)>) -> Result<()> {
            Ok(())
        }
        fn omap_header(&mut self, _h: Vec<u8>) -> Result<()> {
            Ok(())
        }
        fn omap_keys(&mut self, _k: Vec<(OmapKey, Vec<u8>)>) -> Result<()> {
            Ok(())
        }
        fn object_end(&mut self) -> Result<()> {
            Ok(())
        }
    }
    let mut c = Colls(Vec::new());
    let counts = walk(inp, &mut c)?;
    Ok((counts, c.0))
}

/// Applies a stream to a mounted store: one MKCOLL per collection, then per object a
/// transaction that creates it with its attrs and omap, and further transactions for
/// its data in chunks. Call [`verify`] on the same bytes first.
pub fn import(
    s: &dyn ObjectStore,
    inp: &mut dyn Read,
    progress: &mut dyn FnMut(u64),
) -> Result<Counts> {
    struct Apply<'a> {
        s: &'a dyn ObjectStore,
        progress: &'a mut dyn FnMut(u64),
        cur: Option<(CollectionId, ObjectId)>,
        txn: Transaction,
        pending_bytes: u64,
        objects: u64,
    }
    impl Apply<'_> {
        fn flush(&mut self) -> Result<()> {
            if self.txn.is_empty() {
                return Ok(());
            }
            let Some((cid, _)) = &self.cur else {
                return Ok(());
            };
            let ch = self.s.open_collection(cid)?;
            let t = std::mem::take(&mut self.txn);
            self.pending_bytes = 0;
            self.s.apply_transaction(&ch, t)
        }
        fn cur(&self) -> Result<(CollectionId, ObjectId)> {
            self.cur
                .clone()
                .ok_or_else(|| Error::corrupt("export record outside an object"))
        }
    }
    impl Sink for Apply<'_> {
        fn collection(&mut self, cid: &CollectionId, bits: u32) -> Result<()> {
            let ch = self.s.create_new_collection(cid)?;
            let mut t = Transaction::new();
            t.create_collection(cid, bits);
            self.s.apply_transaction(&ch, t)
        }
        fn object(&mut self, cid: &CollectionId, oid: &ObjectId, size: u64) -> Result<()> {
            self.cur = Some((*cid, oid.clone()));
            self.txn.touch(cid, oid);
            if size > 0 {
                self.txn.truncate(cid, oid, size);
            }
            Ok(())
        }
        fn data(&mut self, off: u64, data: Vec<u8>) -> Result<()> {
            let (c, o) = self.cur()?;
            self.pending_bytes += data.len() as u64;
            self.txn.write(&c, &o, off, data);
            if self.pending_bytes >= 4 * CHUNK {
                self.flush()?;
            }
            Ok(())
        }
        fn attrs(&mut self, attrs: Vec<(String, Vec<u8>)>) -> Result<()> {
            let (c, o) = self.cur()?;
            if !attrs.is_empty() {
                self.txn.setattrs(&c, &o, attrs.into_iter().collect());
            }
            Ok(())
        }
        fn omap_header(&mut self, h: Vec<u8>) -> Result<()> {
            let (c, o) = self.cur()?;
            if !h.is_empty() {
                self.txn.omap_setheader(&c, &o, h);
            }
            Ok(())
        }
        fn omap_keys(&mut self, keys: Vec<(OmapKey, Vec<u8>)>) -> Result<()> {
            let (c, o) = self.cur()?;
            self.txn.omap_setkeys(&c, &o, keys.into_iter().collect());
            Ok(())
        }
        fn object_end(&mut self) -> Result<()> {
            self.flush()?;
            self.objects += 1;
            (self.progress)(self.objects);
            self.cur = None;
            Ok(())
        }
    }
    let mut a = Apply {
        s,
        progress,
        cur: None,
        txn: Transaction::new(),
        pending_bytes: 0,
        objects: 0,
    };
    walk(inp, &mut a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(ty: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut w = RecordWriter {
            out: &mut out,
            records: 0,
        };
        w.record(ty, payload).unwrap();
        out
    }

    fn header() -> Vec<u8> {
        let mut head = Vec::new();
        head.extend_from_slice(MAGIC);
        head.extend_from_slice(&VERSION.to_le_bytes());
        head.extend_from_slice(&VERSION.to_le_bytes());
        head.extend_from_slice(&[0; 4]);
        let crc = crc32c::crc32c(&head);
        head.extend_from_slice(&crc.to_le_bytes());
        head
    }

    fn sample() -> Vec<u8> {
        let mut f = header();
        let c = CollectionId::pg(1, 0);
        let o = ObjectId::new(1, "x");
        let mut e = Encoder::new();
        encode_collection(&mut e, &c);
        e.u32(3);
        f.extend(record(T_COLLECTION, &e.into_inner()));
        let mut e = Encoder::new();
        encode_collection(&mut e, &c);
        encode_object(&mut e, &o);
        e.u64(10);
        f.extend(record(T_OBJECT, &e.into_inner()));
        let mut e = Encoder::new();
        e.u64(2);
        e.bytes(b"abc");
        f.extend(record(T_DATA, &e.into_inner()));
        f.extend(record(T_OBJECT_END, &[]));
        let mut e = Encoder::new();
        e.u64(1);
        e.u64(1);
        e.u64(4);
        f.extend(record(T_END, &e.into_inner()));
        f
    }

    #[test]
    fn round_trip_verifies_and_every_flip_or_cut_is_caught() {
        let f = sample();
        let (counts, colls) = verify(&mut &f[..]).unwrap();
        assert_eq!(counts.objects, 1);
        assert_eq!(counts.data_bytes, 3);
        assert_eq!(colls, vec![CollectionId::pg(1, 0)]);
        for i in 0..f.len() {
            for bit in [0x01u8, 0x80] {
                let mut g = f.clone();
                g[i] ^= bit;
                assert!(
                    verify(&mut &g[..]).is_err(),
                    "flip {bit:#x} at {i} undetected"
                );
            }
        }
        for cut in 0..f.len() {
            let e = verify(&mut &f[..cut]).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::Corrupt, "cut at {cut}: {e}");
        }
        let mut longer = f.clone();
        longer.push(0);
        assert!(verify(&mut &longer[..]).is_err());
    }
}
