//! [`Vfs`] over the real filesystem.

use super::{OpenMode, Vfs, VfsFile};
use crate::aligned::{direct_ok, AlignedBuf, ALIGN};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;

/// The real filesystem (std + a few libc calls).
#[derive(Debug, Default, Clone, Copy)]
pub struct RealFs;

impl RealFs {
    /// A handle to the real filesystem.
    pub fn new() -> Self {
        RealFs
    }
}

#[derive(Debug)]
struct RealFile {
    file: File,
    /// Opened with `O_DIRECT`: unaligned writes go through an aligned copy.
    direct: bool,
}

impl Vfs for RealFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn VfsFile>> {
        let mut o = OpenOptions::new();
        match mode {
            OpenMode::Read => o.read(true),
            OpenMode::ReadWrite => o.read(true).write(true),
            OpenMode::ReadWriteDirect => o.read(true).write(true).custom_flags(libc::O_DIRECT),
            OpenMode::CreateNew => o.read(true).write(true).create_new(true),
            OpenMode::CreateTruncate => o.read(true).write(true).create(true).truncate(true),
        };
        match o.open(path) {
            Ok(file) => Ok(Box::new(RealFile {
                file,
                direct: mode == OpenMode::ReadWriteDirect,
            })),
            // A filesystem without direct I/O refuses the flag: use the page cache.
            Err(e)
                if mode == OpenMode::ReadWriteDirect && e.raw_os_error() == Some(libc::EINVAL) =>
            {
                self.open(path, OpenMode::ReadWrite)
            }
            Err(e) => Err(e),
        }
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for e in fs::read_dir(dir)? {
            let e = e?;
            if let Some(name) = e.file_name().to_str() {
                out.push(name.to_owned());
            }
        }
        Ok(out)
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        path.try_exists()
    }
}

impl VfsFile for RealFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        if !self.direct || direct_ok(buf, offset) || buf.is_empty() {
            return self.file.read_at(buf, offset);
        }
        // Through an aligned copy of the enclosing aligned range.
        let a = ALIGN as u64;
        let start = offset / a * a;
        let end = (offset + buf.len() as u64).div_ceil(a) * a;
        let mut tmp = AlignedBuf::with_capacity((end - start) as usize);
        tmp.resize((end - start) as usize, 0);
        let got = self.file.read_at(&mut tmp, start)?;
        let skip = (offset - start) as usize;
        let n = got.saturating_sub(skip).min(buf.len());
        buf[..n].copy_from_slice(&tmp[skip..skip + n]);
        Ok(n)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        if !self.direct || direct_ok(buf, offset) {
            return self.file.write_all_at(buf, offset);
        }
        if !offset.is_multiple_of(ALIGN as u64) || !buf.len().is_multiple_of(ALIGN) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "direct write of {} bytes at offset {offset}: not a multiple of {ALIGN}",
                    buf.len()
                ),
            ));
        }
        self.file.write_all_at(&AlignedBuf::from_slice(buf), offset)
    }

    fn write_vectored_at(&self, bufs: &[&[u8]], mut offset: u64) -> io::Result<()> {
        if self.direct {
            // Direct I/O wants every segment aligned: one aligned copy instead.
            return self.write_at(&bufs.concat(), offset);
        }
        let mut slices: Vec<io::IoSlice<'_>> = bufs
            .iter()
            .filter(|b| !b.is_empty())
            .map(|b| io::IoSlice::new(b))
            .collect();
        let mut rest = &mut slices[..];
        while !rest.is_empty() {
            // IOV_MAX on Linux.
            let n = rest.len().min(1024);
            let off = libc::off_t::try_from(offset)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))?;
            // SAFETY: `IoSlice` is ABI-compatible with `iovec` on Unix; the `n` slices
            // borrow live buffers for the duration of the call, and the descriptor is
            // owned by `self.file`.
            let rc = unsafe {
                libc::pwritev(
                    self.file.as_raw_fd(),
                    rest.as_ptr().cast::<libc::iovec>(),
                    n as libc::c_int,
                    off,
                )
            };
            if rc < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if rc == 0 {
                return Err(io::Error::from(io::ErrorKind::WriteZero));
            }
            offset += rc as u64;
            io::IoSlice::advance_slices(&mut rest, rc as usize);
        }
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        let len = libc::off_t::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "length too large"))?;
        // SAFETY: fallocate only reads its integer arguments; the descriptor is owned by
        // `self.file` and stays open for the duration of the call.
        let rc = unsafe { libc::fallocate(self.file.as_raw_fd(), 0, 0, len) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn sync_all(&self) -> io::Result<()> {
        self.file.sync_all()
    }

    fn raw_fd(&self) -> Option<i32> {
        Some(self.file.as_raw_fd())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfs::read_full_at;

    #[test]
    fn direct_files_take_aligned_and_unaligned_buffers() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let fs = RealFs::new();
        let f = fs.open(&p, OpenMode::CreateNew).unwrap();
        f.write_at(&vec![1u8; 4 * ALIGN], 0).unwrap();
        drop(f);
        let f = fs.open(&p, OpenMode::ReadWriteDirect).unwrap();
        let aligned = AlignedBuf::from_slice(&vec![2u8; ALIGN]);
        f.write_at(&aligned, ALIGN as u64).unwrap();
        // An unaligned buffer of aligned length at an aligned offset: copied, written.
        let v = vec![3u8; ALIGN + 1];
        f.write_at(&v[1..], 2 * ALIGN as u64).unwrap();
        f.sync_data().unwrap();
        // Unaligned offsets or lengths are refused, not half written.
        let e = f.write_at(&aligned[..100], 0).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
        // Unaligned reads work, also across the end of the file.
        let mut got = vec![0u8; 10];
        assert_eq!(f.read_at(&mut got, ALIGN as u64 - 5).unwrap(), 10);
        assert_eq!(got, [1, 1, 1, 1, 1, 2, 2, 2, 2, 2]);
        let mut tail = vec![0u8; 100];
        assert_eq!(f.read_at(&mut tail, 4 * ALIGN as u64 - 30).unwrap(), 30);
        assert!(tail[..30].iter().all(|&b| b == 1));
        drop(f);
        let all = std::fs::read(&p).unwrap();
        assert!(all[..ALIGN].iter().all(|&b| b == 1));
        assert!(all[ALIGN..2 * ALIGN].iter().all(|&b| b == 2));
        assert!(all[2 * ALIGN..3 * ALIGN].iter().all(|&b| b == 3));
        assert!(all[3 * ALIGN..].iter().all(|&b| b == 1));
    }

    #[test]
    fn vectored_writes_land_in_order_past_iov_max() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let fs = RealFs::new();
        // 3,000 pieces of 1-7 bytes (more than one pwritev takes), also through a direct
        // descriptor, which copies them into one aligned buffer.
        let pieces: Vec<Vec<u8>> = (0..3000u32)
            .map(|i| vec![(i % 251) as u8; 1 + (i % 7) as usize])
            .collect();
        let want: Vec<u8> = pieces.concat();
        let refs: Vec<&[u8]> = pieces.iter().map(|v| &v[..]).collect();
        let f = fs.open(&p, OpenMode::CreateNew).unwrap();
        f.write_vectored_at(&refs, 100).unwrap();
        f.write_vectored_at(&[], 0).unwrap();
        let mut got = vec![0u8; want.len()];
        assert_eq!(read_full_at(&*f, &mut got, 100).unwrap(), want.len());
        assert_eq!(got, want);
        let aligned: Vec<Vec<u8>> = vec![vec![9u8; 100], vec![], vec![8u8; 2 * ALIGN - 100]];
        let refs: Vec<&[u8]> = aligned.iter().map(|v| &v[..]).collect();
        drop(f);
        let f = fs.open(&p, OpenMode::ReadWriteDirect).unwrap();
        f.write_vectored_at(&refs, ALIGN as u64).unwrap();
        let mut got = vec![0u8; 2 * ALIGN];
        assert_eq!(
            read_full_at(&*f, &mut got, ALIGN as u64).unwrap(),
            2 * ALIGN
        );
        assert_eq!(got, aligned.concat());
    }
}
