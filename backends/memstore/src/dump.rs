//! The MemStore dump: the whole state in one file, `memstore.dump`, replaced
//! atomically on every umount (temp file, fsync, rename, directory fsync).
//!
//! Byte map (integers little-endian):
//! ```text
//! 0   4  magic "OSMD"
//! 4   1  struct_v = 1
//! 5   1  compat_v = 1
//! 6   2  reserved (0)
//! 8   .. body:
//!        u64 seq                       last transaction reflected
//!        u32 ncolls, then per collection:
//!          collection id (14 bytes, as in transactions), u32 bits, u64 nobjs, then per object:
//!            object id (as in transactions), u64 size,
//!            u64 npages, then per page: u64 page index, 4096 bytes
//!            u32 nattrs, then (str name, bytes value)
//!            bytes omap header
//!            u64 nkeys, then (bytes key, bytes value)
//! end-12  u64 body length
//! end-4   u32 CRC32C of every byte before it
//! ```
//! (`bytes`/`str` = u32 length + bytes.) The trailer carries the length so the file can
//! be streamed out without holding a second copy of the state in memory.

use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;

use ostore_journal::{OpenMode, Vfs, VfsFile};

use ostore_os::codec::{Decoder, Encoder};
use ostore_os::transaction::{decode_collection, decode_object, encode_collection, encode_object};
use ostore_os::{Error, Result};

use crate::pages::{Pages, PAGE};
use crate::{Collection, Object, State};

pub const FILE_NAME: &str = "memstore.dump";
const MAGIC: [u8; 4] = *b"OSMD";
const VERSION: u8 = 1;
const HEADER: usize = 8;
const TRAILER: usize = 12;

/// A writer that keeps a running CRC32C and length of what passes through.
struct CrcWriter<W: Write> {
    inner: W,
    crc: u32,
    len: u64,
}

impl<W: Write> CrcWriter<W> {
    fn put(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.crc = crc32c::crc32c_append(self.crc, b);
        self.len += b.len() as u64;
        self.inner.write_all(b)
    }
}

fn encode_object_body(e: &mut Encoder, oid: &ostore_os::ObjectId, o: &Object) {
    encode_object(e, oid);
    e.u64(o.size);
    e.u64(o.data.page_count() as u64);
    for (i, p) in o.data.iter() {
        e.u64(i);
        e.raw(p);
    }
    e.u32(o.attrs.len() as u32);
    for (k, v) in &o.attrs {
        e.str(k);
        e.bytes(v);
    }
    e.bytes(&o.omap_header);
    e.u64(o.omap.len() as u64);
    for (k, v) in &o.omap {
        e.bytes(k);
        e.bytes(v);
    }
}

/// Appends to a [`VfsFile`] at increasing offsets, so a `BufWriter` can stream into it.
struct VfsWriter {
    file: Box<dyn VfsFile>,
    off: u64,
}

impl Write for VfsWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.write_at(buf, self.off)?;
        self.off += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes `state` to `path` atomically.
pub fn write(vfs: &dyn Vfs, path: &Path, state: &State) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension("dump.tmp");
    let io =
        |e: std::io::Error, what: &str| Error::from(e).context(format!("{what} {}", tmp.display()));
    let f = vfs
        .open(&tmp, OpenMode::CreateTruncate)
        .map_err(|e| io(e, "creating"))?;
    let mut w = CrcWriter {
        inner: BufWriter::with_capacity(1 << 20, VfsWriter { file: f, off: 0 }),
        crc: 0,
        len: 0,
    };
    let mut head = Vec::with_capacity(HEADER);
    head.extend_from_slice(&MAGIC);
    head.extend_from_slice(&[VERSION, VERSION, 0, 0]);
    w.put(&head).map_err(|e| io(e, "writing"))?;
    let mut e = Encoder::new();
    e.u64(state.seq);
    e.u32(state.colls.len() as u32);
    for (cid, c) in &state.colls {
        encode_collection(&mut e, cid);
        e.u32(c.bits);
        e.u64(c.objects.len() as u64);
        for (oid, o) in &c.objects {
            encode_object_body(&mut e, oid, o);
            // Flush per object so memory stays bounded by the largest object.
            let chunk = std::mem::take(&mut e).into_inner();
            w.put(&chunk).map_err(|e| io(e, "writing"))?;
        }
        let chunk = std::mem::take(&mut e).into_inner();
        w.put(&chunk).map_err(|e| io(e, "writing"))?;
    }
    let chunk = e.into_inner();
    w.put(&chunk).map_err(|e| io(e, "writing"))?;
    let body_len = w.len - HEADER as u64;
    w.put(&body_len.to_le_bytes())
        .map_err(|e| io(e, "writing"))?;
    let crc = w.crc;
    let mut inner = w.inner;
    inner
        .write_all(&crc.to_le_bytes())
        .map_err(|e| io(e, "writing"))?;
    let f = inner
        .into_inner()
        .map_err(|e| io(e.into_error(), "writing"))?;
    f.file.sync_all().map_err(|e| io(e, "syncing"))?;
    drop(f);
    vfs.rename(&tmp, path)
        .map_err(|e| Error::from(e).context(format!("renaming onto {}", path.display())))?;
    vfs.sync_dir(dir)
        .map_err(|e| Error::from(e).context(format!("syncing directory {}", dir.display())))
}

/// Reads and verifies a dump. Any damage is an EUCLEAN error naming the file.
pub fn read(vfs: &dyn Vfs, path: &Path) -> Result<State> {
    let buf = ostore_os::superblock::read_file(vfs, path)
        .map_err(|e| Error::from(e).context(format!("reading {}", path.display())))?;
    decode(&buf).map_err(|e| e.context(path.display()))
}

pub fn decode(buf: &[u8]) -> Result<State> {
    if buf.len() < HEADER + TRAILER {
        return Err(Error::corrupt(format!(
            "dump is {} bytes, too short",
            buf.len()
        )));
    }
    if buf[0..4] != MAGIC {
        return Err(Error::corrupt("not a memstore dump (bad magic)"));
    }
    let n = buf.len();
    let crc_stored = u32::from_le_bytes([buf[n - 4], buf[n - 3], buf[n - 2], buf[n - 1]]);
    if crc32c::crc32c(&buf[..n - 4]) != crc_stored {
        return Err(Error::corrupt("dump checksum mismatch"));
    }
    if buf[5] > VERSION {
        return Err(Error::new(
            ostore_os::ErrorKind::Unsupported,
            format!(
                "dump needs a decoder of version >= {}; this build reads {VERSION}",
                buf[5]
            ),
        ));
    }
    let mut lenb = [0u8; 8];
    lenb.copy_from_slice(&buf[n - TRAILER..n - 4]);
    let body_len = u64::from_le_bytes(lenb);
    if body_len != (n - HEADER - TRAILER) as u64 {
        return Err(Error::corrupt(
            "dump length field disagrees with the file size",
        ));
    }
    let mut d = Decoder::new(&buf[HEADER..n - TRAILER]);
    let mut state = State {
        seq: d.u64("seq")?,
        ..Default::default()
    };
    let ncolls = d.count(26, "collections")?;
    for _ in 0..ncolls {
        let cid = decode_collection(&mut d)?;
        let bits = d.u32("collection bits")?;
        let nobjs = d.u64("object count")?;
        let mut c = Collection {
            bits,
            ..Default::default()
        };
        for _ in 0..nobjs {
            let oid = decode_object(&mut d)?;
            let mut o = Object {
                size: d.u64("object size")?,
                data: Pages::new(),
                ..Default::default()
            };
            let npages = d.u64("page count")?;
            if npages.saturating_mul(PAGE + 8) > d.remaining() as u64 {
                return Err(Error::corrupt(format!(
                    "page count {npages} exceeds the dump"
                )));
            }
            for _ in 0..npages {
                let index = d.u64("page index")?;
                let mut page = [0u8; PAGE as usize];
                page.copy_from_slice(d.take(PAGE as usize, "page")?);
                o.data.insert_page(index, page);
            }
            let nattrs = d.count(8, "attrs")?;
            for _ in 0..nattrs {
                let k = d.string("attr name")?;
                let v = d.bytes("attr value")?.to_vec();
                o.attrs.insert(k, v);
            }
            o.omap_header = d.bytes("omap header")?.to_vec();
            let nkeys = d.u64("omap key count")?;
            if nkeys.saturating_mul(8) > d.remaining() as u64 {
                return Err(Error::corrupt(format!(
                    "omap key count {nkeys} exceeds the dump"
                )));
            }
            for _ in 0..nkeys {
                let k = d.bytes("omap key")?.to_vec();
                let v = d.bytes("omap value")?.to_vec();
                o.omap.insert(k, v);
            }
            c.objects.insert(oid, Arc::new(o));
        }
        state.colls.insert(cid, c);
    }
    if d.remaining() != 0 {
        return Err(Error::corrupt(format!(
            "{} unexpected bytes after the dump body",
            d.remaining()
        )));
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ostore_os::{CollectionId, ObjectId, Transaction};

    fn sample() -> State {
        let mut s = State::default();
        let c = CollectionId::pg(1, 0);
        let o = ObjectId::new(1, "obj");
        let mut t = Transaction::new();
        t.create_collection(&c, 3)
            .write(&c, &o, 5000, vec![7u8; 9000])
            .setattr(&c, &o, "a", b"v".to_vec())
            .omap_setheader(&c, &o, b"h".to_vec())
            .omap_setkeys(&c, &o, [(b"k".to_vec(), b"v".to_vec())].into());
        s.apply(&t).unwrap();
        s.seq = 42;
        s
    }

    #[test]
    fn round_trip_and_every_flip_detected() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(FILE_NAME);
        let s = sample();
        let vfs = ostore_journal::RealFs::new();
        write(&vfs, &p, &s).unwrap();
        assert_eq!(read(&vfs, &p).unwrap(), s);
        let b = std::fs::read(&p).unwrap();
        for i in (0..b.len()).step_by(7) {
            let mut g = b.clone();
            g[i] ^= 0x40;
            assert!(decode(&g).is_err(), "flip at {i} undetected");
        }
        for cut in [0, 5, b.len() / 2, b.len() - 1] {
            assert!(decode(&b[..cut]).is_err());
        }
    }
}
