//! Every system call FileStore makes that std does not wrap: xattrs, FIEMAP, reflink
//! (FICLONE / FICLONERANGE), the XFS extent-size hint (FS_IOC_FSGETXATTR / FSSETXATTR),
//! btrfs subvolume and snapshot ioctls, syncfs, fstatfs, SEEK_DATA / SEEK_HOLE and hole
//! punching. This is the only module of the crate with `unsafe`; each block says why it
//! is sound. Everything returns `std::io::Result`, so callers decide what an errno means
//! (EOPNOTSUPP, EXDEV, EINVAL, ENOTTY are "unsupported here: fall back"; see
//! [`is_unsupported`]).

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// statfs magics of the filesystems FileStore tells apart.
pub const EXT4_SUPER_MAGIC: i64 = 0xEF53;
pub const XFS_SUPER_MAGIC: i64 = 0x5846_5342;
pub const BTRFS_SUPER_MAGIC: i64 = 0x9123_683E;
pub const ZFS_SUPER_MAGIC: i64 = 0x2FC1_2FC1;
pub const TMPFS_MAGIC: i64 = 0x0102_1994;

// ioctl numbers (asm-generic encoding: dir << 30 | size << 16 | type << 8 | nr).
const FS_IOC_FIEMAP: libc::c_ulong = 0xC020_660B; // _IOWR('f', 11, struct fiemap)
const FICLONE: libc::c_ulong = 0x4004_9409; // _IOW(0x94, 9, int)
const FICLONERANGE: libc::c_ulong = 0x4020_940D; // _IOW(0x94, 13, struct file_clone_range)
const FS_IOC_FSGETXATTR: libc::c_ulong = 0x801C_581F; // _IOR('X', 31, struct fsxattr)
const FS_IOC_FSSETXATTR: libc::c_ulong = 0x401C_5820; // _IOW('X', 32, struct fsxattr)
const BTRFS_IOC_SUBVOL_CREATE: libc::c_ulong = 0x5000_940E; // _IOW(0x94, 14, vol_args)
const BTRFS_IOC_SNAP_DESTROY: libc::c_ulong = 0x5000_940F; // _IOW(0x94, 15, vol_args)
const BTRFS_IOC_SNAP_CREATE_V2: libc::c_ulong = 0x5000_9417; // _IOW(0x94, 23, vol_args_v2)
const BTRFS_SUBVOL_RDONLY: u64 = 1 << 1;

/// FS_XFLAG_EXTSIZE: the file has an extent-size hint.
pub const FS_XFLAG_EXTSIZE: u32 = 0x0000_0800;

const FIEMAP_FLAG_SYNC: u32 = 0x1;
const FIEMAP_EXTENT_LAST: u32 = 0x1;
/// The extent is shared with another file (reflink).
pub const FIEMAP_EXTENT_SHARED: u32 = 0x2000;

/// Whether an errno means "this filesystem or kernel cannot do that": the caller falls
/// back to a plain copy (or skips an advisory step).
pub fn is_unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EOPNOTSUPP | libc::EXDEV | libc::EINVAL | libc::ENOTTY | libc::ENOSYS)
    )
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn cname(s: &[u8]) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// The value of xattr `name` of an open file or directory; `Ok(None)` when it is absent.
pub fn fgetxattr(f: &File, name: &[u8]) -> io::Result<Option<Vec<u8>>> {
    let n = cname(name)?;
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: `n` is a NUL-terminated string that outlives the call; `buf` is a
        // valid writable buffer of `buf.len()` bytes; the fd is open for the call.
        let r = unsafe {
            libc::fgetxattr(
                f.as_raw_fd(),
                n.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if r >= 0 {
            buf.truncate(r as usize);
            return Ok(Some(buf));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ENODATA) => return Ok(None),
            Some(libc::ERANGE) if buf.len() < (1 << 20) => {
                // Too small: ask for the size, then retry (it may grow in between).
                // SAFETY: a NULL buffer with size 0 asks only for the value's length.
                let need =
                    unsafe { libc::fgetxattr(f.as_raw_fd(), n.as_ptr(), std::ptr::null_mut(), 0) };
                if need < 0 {
                    return Err(io::Error::last_os_error());
                }
                buf.resize((need as usize).max(buf.len() * 2), 0);
            }
            _ => return Err(e),
        }
    }
}

/// Sets xattr `name` (creating or replacing it).
pub fn fsetxattr(f: &File, name: &[u8], value: &[u8]) -> io::Result<()> {
    let n = cname(name)?;
    // SAFETY: `n` is NUL-terminated; `value` is a valid readable slice for the call.
    cvt(unsafe {
        libc::fsetxattr(
            f.as_raw_fd(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    })
    .map(|_| ())
}

/// Removes xattr `name`; absent is not an error.
pub fn fremovexattr(f: &File, name: &[u8]) -> io::Result<()> {
    let n = cname(name)?;
    // SAFETY: `n` is a NUL-terminated string valid for the call.
    match cvt(unsafe { libc::fremovexattr(f.as_raw_fd(), n.as_ptr()) }) {
        Ok(_) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENODATA) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Names of every xattr of an open file.
pub fn flistxattr(f: &File) -> io::Result<Vec<Vec<u8>>> {
    let mut buf = vec![0u8; 1024];
    let n = loop {
        // SAFETY: `buf` is a valid writable buffer of `buf.len()` bytes.
        let r = unsafe { libc::flistxattr(f.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if r >= 0 {
            break r as usize;
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ERANGE) && buf.len() < (16 << 20) {
            let l = buf.len() * 4;
            buf.resize(l, 0);
            continue;
        }
        return Err(e);
    };
    Ok(buf[..n]
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(<[u8]>::to_vec)
        .collect())
}

/// syncfs(2): makes the whole filesystem holding `f` durable.
pub fn syncfs(f: &File) -> io::Result<()> {
    // SAFETY: plain syscall on an open fd.
    cvt(unsafe { libc::syncfs(f.as_raw_fd()) }).map(|_| ())
}

/// The filesystem magic (`f_type` of fstatfs) and the block size.
pub fn fs_magic(f: &File) -> io::Result<(i64, u64)> {
    // SAFETY: statfs is plain old data; all-zero is a valid value.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid, writable statfs for the call.
    cvt(unsafe { libc::fstatfs(f.as_raw_fd(), &mut st) })?;
    Ok((st.f_type as i64, st.f_bsize as u64))
}

/// Total and available bytes of the filesystem holding `f`.
pub fn fs_space(f: &File) -> io::Result<(u64, u64)> {
    // SAFETY: statvfs is plain old data; all-zero is a valid value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid, writable statvfs for the call.
    cvt(unsafe { libc::fstatvfs(f.as_raw_fd(), &mut st) })?;
    let frsize = st.f_frsize as u64;
    Ok((st.f_blocks as u64 * frsize, st.f_bavail as u64 * frsize))
}

/// lseek(SEEK_DATA) / lseek(SEEK_HOLE): the next data (or hole) offset at or after `off`;
/// `Ok(None)` when there is none (ENXIO).
pub fn seek_data_hole(f: &File, off: u64, data: bool) -> io::Result<Option<u64>> {
    let whence = if data {
        libc::SEEK_DATA
    } else {
        libc::SEEK_HOLE
    };
    let off = i64::try_from(off).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: plain syscall; moving the file offset is harmless (all our I/O is
    // positional).
    let r = unsafe { libc::lseek(f.as_raw_fd(), off, whence) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENXIO) {
            return Ok(None);
        }
        return Err(e);
    }
    Ok(Some(r as u64))
}

/// Punches a hole over `[off, off+len)` without changing the size.
pub fn punch_hole(f: &File, off: u64, len: u64) -> io::Result<()> {
    let (o, l) = match (i64::try_from(off), i64::try_from(len)) {
        (Ok(o), Ok(l)) => (o, l),
        _ => return Err(io::Error::from_raw_os_error(libc::EINVAL)),
    };
    // SAFETY: plain syscall on an open fd.
    cvt(unsafe {
        libc::fallocate(
            f.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            o,
            l,
        )
    })
    .map(|_| ())
}

#[repr(C)]
#[derive(Clone, Copy)]
struct FiemapHeader {
    fm_start: u64,
    fm_length: u64,
    fm_flags: u32,
    fm_mapped_extents: u32,
    fm_extent_count: u32,
    fm_reserved: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct FiemapExtentRaw {
    fe_logical: u64,
    fe_physical: u64,
    fe_length: u64,
    fe_reserved64: [u64; 2],
    fe_flags: u32,
    fe_reserved: [u32; 3],
}

/// One extent FIEMAP reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FiemapExtent {
    pub logical: u64,
    pub physical: u64,
    pub length: u64,
    pub flags: u32,
}

const FIEMAP_BATCH: usize = 64;

#[repr(C)]
struct FiemapBuf {
    h: FiemapHeader,
    e: [FiemapExtentRaw; FIEMAP_BATCH],
}

/// FS_IOC_FIEMAP over `[off, off+len)` (with FIEMAP_FLAG_SYNC, so delayed allocations
/// are reported too).
pub fn fiemap(f: &File, off: u64, len: u64) -> io::Result<Vec<FiemapExtent>> {
    let mut out = Vec::new();
    let end = off.saturating_add(len);
    let mut start = off;
    while start < end {
        let mut b = FiemapBuf {
            h: FiemapHeader {
                fm_start: start,
                fm_length: end - start,
                fm_flags: FIEMAP_FLAG_SYNC,
                fm_mapped_extents: 0,
                fm_extent_count: FIEMAP_BATCH as u32,
                fm_reserved: 0,
            },
            e: [FiemapExtentRaw::default(); FIEMAP_BATCH],
        };
        // SAFETY: `b` is a struct fiemap header followed by room for exactly
        // `fm_extent_count` extents, as the ioctl requires; it lives across the call.
        cvt(unsafe { libc::ioctl(f.as_raw_fd(), FS_IOC_FIEMAP as _, &mut b as *mut FiemapBuf) })?;
        let n = (b.h.fm_mapped_extents as usize).min(FIEMAP_BATCH);
        if n == 0 {
            break;
        }
        let mut last = false;
        for e in &b.e[..n] {
            out.push(FiemapExtent {
                logical: e.fe_logical,
                physical: e.fe_physical,
                length: e.fe_length,
                flags: e.fe_flags,
            });
            last |= e.fe_flags & FIEMAP_EXTENT_LAST != 0;
        }
        let l = &b.e[n - 1];
        let next = l.fe_logical.saturating_add(l.fe_length);
        if last || next <= start {
            break;
        }
        start = next;
    }
    Ok(out)
}

/// FICLONE: makes `dst` share all of `src`'s extents (reflink).
pub fn ficlone(dst: &File, src: &File) -> io::Result<()> {
    // SAFETY: the argument is the source fd by value, as the ioctl takes it.
    cvt(unsafe { libc::ioctl(dst.as_raw_fd(), FICLONE as _, src.as_raw_fd()) }).map(|_| ())
}

#[repr(C)]
struct FileCloneRange {
    src_fd: i64,
    src_offset: u64,
    src_length: u64,
    dest_offset: u64,
}

/// FICLONERANGE: reflinks `[soff, soff+len)` of `src` to `doff` of `dst` (offsets and
/// length block-aligned, except a length reaching the source's end).
pub fn ficlonerange(dst: &File, src: &File, soff: u64, len: u64, doff: u64) -> io::Result<()> {
    let a = FileCloneRange {
        src_fd: i64::from(src.as_raw_fd()),
        src_offset: soff,
        src_length: len,
        dest_offset: doff,
    };
    // SAFETY: `a` is a valid struct file_clone_range living across the call.
    cvt(unsafe {
        libc::ioctl(
            dst.as_raw_fd(),
            FICLONERANGE as _,
            &a as *const FileCloneRange,
        )
    })
    .map(|_| ())
}

/// struct fsxattr (FS_IOC_FSGETXATTR).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct FsXattr {
    pub xflags: u32,
    pub extsize: u32,
    pub nextents: u32,
    pub projid: u32,
    pub cowextsize: u32,
    pub pad: [u8; 8],
}

pub fn fsgetxattr(f: &File) -> io::Result<FsXattr> {
    let mut x = FsXattr::default();
    // SAFETY: `x` is a valid, writable struct fsxattr for the call.
    cvt(unsafe {
        libc::ioctl(
            f.as_raw_fd(),
            FS_IOC_FSGETXATTR as _,
            &mut x as *mut FsXattr,
        )
    })?;
    Ok(x)
}

pub fn fssetxattr(f: &File, x: &FsXattr) -> io::Result<()> {
    // SAFETY: `x` is a valid struct fsxattr living across the call.
    cvt(unsafe { libc::ioctl(f.as_raw_fd(), FS_IOC_FSSETXATTR as _, x as *const FsXattr) })
        .map(|_| ())
}

#[repr(C)]
struct BtrfsVolArgs {
    fd: i64,
    name: [u8; 4088],
}

#[repr(C)]
struct BtrfsVolArgsV2 {
    fd: i64,
    transid: u64,
    flags: u64,
    unused: [u64; 4],
    name: [u8; 4040],
}

fn put_name(dst: &mut [u8], name: &Path) -> io::Result<()> {
    let b = name.as_os_str().as_bytes();
    if b.is_empty() || b.len() >= dst.len() || b.contains(&b'/') || b.contains(&0) {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    dst[..b.len()].copy_from_slice(b);
    Ok(())
}

/// BTRFS_IOC_SUBVOL_CREATE: a new, empty subvolume `name` inside directory `parent`.
pub fn btrfs_subvol_create(parent: &File, name: &Path) -> io::Result<()> {
    let mut a = BtrfsVolArgs {
        fd: 0,
        name: [0; 4088],
    };
    put_name(&mut a.name, name)?;
    // SAFETY: `a` is a valid struct btrfs_ioctl_vol_args living across the call.
    cvt(unsafe {
        libc::ioctl(
            parent.as_raw_fd(),
            BTRFS_IOC_SUBVOL_CREATE as _,
            &a as *const BtrfsVolArgs,
        )
    })
    .map(|_| ())
}

/// BTRFS_IOC_SNAP_CREATE_V2: snapshot of subvolume `src` as `name` inside `parent`.
pub fn btrfs_snap_create(parent: &File, src: &File, name: &Path, readonly: bool) -> io::Result<()> {
    let mut a = BtrfsVolArgsV2 {
        fd: i64::from(src.as_raw_fd()),
        transid: 0,
        flags: if readonly { BTRFS_SUBVOL_RDONLY } else { 0 },
        unused: [0; 4],
        name: [0; 4040],
    };
    put_name(&mut a.name, name)?;
    // SAFETY: `a` is a valid struct btrfs_ioctl_vol_args_v2 living across the call.
    cvt(unsafe {
        libc::ioctl(
            parent.as_raw_fd(),
            BTRFS_IOC_SNAP_CREATE_V2 as _,
            &a as *const BtrfsVolArgsV2,
        )
    })
    .map(|_| ())
}

/// BTRFS_IOC_SNAP_DESTROY: deletes subvolume (or snapshot) `name` inside `parent`.
pub fn btrfs_subvol_destroy(parent: &File, name: &Path) -> io::Result<()> {
    let mut a = BtrfsVolArgs {
        fd: 0,
        name: [0; 4088],
    };
    put_name(&mut a.name, name)?;
    // SAFETY: `a` is a valid struct btrfs_ioctl_vol_args living across the call.
    cvt(unsafe {
        libc::ioctl(
            parent.as_raw_fd(),
            BTRFS_IOC_SNAP_DESTROY as _,
            &a as *const BtrfsVolArgs,
        )
    })
    .map(|_| ())
}

/// Whether `path` is the root of a btrfs subvolume (its inode number is 256).
pub fn is_btrfs_subvolume(path: &Path) -> io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path)?;
    Ok(m.is_dir() && m.ino() == 256)
}

/// Opens a directory for the fd-based calls above.
pub fn open_dir(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(path)
}

/// Whether the process runs as root (loop mounts in the tests need it).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Registers `f` to run at normal process exit (the tests' loop-mount cleanup).
pub fn at_exit(f: extern "C" fn()) -> io::Result<()> {
    // SAFETY: `f` is a plain `extern "C" fn()` that lives for the whole program.
    if unsafe { libc::atexit(f) } != 0 {
        return Err(io::Error::other("atexit failed"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xattrs_round_trip_on_the_work_filesystem() {
        let d = tempfile::tempdir().unwrap();
        let f = File::create(d.path().join("f")).unwrap();
        assert_eq!(fgetxattr(&f, b"user.t").unwrap(), None);
        let big = vec![7u8; 1000];
        fsetxattr(&f, b"user.t", &big).unwrap();
        assert_eq!(fgetxattr(&f, b"user.t").unwrap(), Some(big));
        assert!(flistxattr(&f).unwrap().contains(&b"user.t".to_vec()));
        fremovexattr(&f, b"user.t").unwrap();
        fremovexattr(&f, b"user.t").unwrap();
        assert_eq!(fgetxattr(&f, b"user.t").unwrap(), None);
    }

    #[test]
    fn seek_data_and_fiemap_see_a_hole() {
        use std::os::unix::fs::FileExt;
        let d = tempfile::tempdir().unwrap();
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(d.path().join("f"))
            .unwrap();
        f.write_all_at(&[1; 4096], 0).unwrap();
        f.write_all_at(&[2; 4096], 1 << 20).unwrap();
        assert_eq!(seek_data_hole(&f, 0, false).unwrap(), Some(4096));
        assert_eq!(seek_data_hole(&f, 4096, true).unwrap(), Some(1 << 20));
        let m = fiemap(&f, 0, 2 << 20).unwrap();
        assert!(m
            .iter()
            .all(|e| e.logical >= 1 << 20 || e.logical + e.length <= 4096 * 4));
        assert!(!m.is_empty());
    }
}
