//! The filesystem backends behind one trait, chosen by statfs magic: what differs between
//! ext4 (and every other filesystem), XFS, btrfs and ZFS is how a file is cloned, how an
//! allocation hint is applied, and whether a checkpoint can be a snapshot.
//!
//! - [`FsKind::Generic`]: copies (sparse, by SEEK_DATA / SEEK_HOLE), FIEMAP for extent
//!   maps, syncfs for checkpoints.
//! - [`FsKind::Xfs`]: as generic, plus reflink clones (FICLONE / FICLONERANGE) when the
//!   filesystem has reflink, and SETALLOCHINT as the extent-size hint on files with no
//!   extents yet.
//! - [`FsKind::Btrfs`]: reflink clones; checkpoints are read-only snapshots of the
//!   `current` subvolume ([`BtrfsSnapshots`]).
//! - [`FsKind::Zfs`]: detected; snapshot checkpoints through the `zfs` command
//!   ([`ZfsSnapshots`] over a [`ZfsRunner`], faked in the unit tests since ZFS cannot be
//!   mounted here).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::sys;

/// Which filesystem `current/` lives on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsKind {
    Generic,
    Xfs,
    Btrfs,
    Zfs,
}

impl FsKind {
    pub fn from_magic(m: i64) -> FsKind {
        match m {
            sys::XFS_SUPER_MAGIC => FsKind::Xfs,
            sys::BTRFS_SUPER_MAGIC => FsKind::Btrfs,
            sys::ZFS_SUPER_MAGIC => FsKind::Zfs,
            _ => FsKind::Generic,
        }
    }
    pub fn detect(path: &Path) -> io::Result<(FsKind, u64)> {
        let d = sys::open_dir(path)?;
        let (m, bs) = sys::fs_magic(&d)?;
        Ok((FsKind::from_magic(m), bs))
    }
    pub fn code(self) -> u8 {
        match self {
            FsKind::Generic => 0,
            FsKind::Xfs => 1,
            FsKind::Btrfs => 2,
            FsKind::Zfs => 3,
        }
    }
    pub fn from_code(c: u8) -> Option<FsKind> {
        Some(match c {
            0 => FsKind::Generic,
            1 => FsKind::Xfs,
            2 => FsKind::Btrfs,
            3 => FsKind::Zfs,
            _ => return None,
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            FsKind::Generic => "generic",
            FsKind::Xfs => "xfs",
            FsKind::Btrfs => "btrfs",
            FsKind::Zfs => "zfs",
        }
    }
    /// Largest attr value kept inline in an xattr (bigger ones spill to the kv layer).
    /// ext4 holds about 4 KiB of xattrs per inode in all, XFS 64 KiB per value, btrfs
    /// what fits in a metadata leaf.
    pub fn inline_xattr_max(self) -> usize {
        match self {
            FsKind::Generic => 1024,
            FsKind::Xfs => 65536,
            FsKind::Btrfs => 8192,
            FsKind::Zfs => 8192,
        }
    }
}

/// The per-filesystem operations FileStore's apply path uses.
#[derive(Debug)]
pub struct FsOps {
    pub kind: FsKind,
    pub block_size: u64,
    /// Cleared at the first EOPNOTSUPP-like answer to a reflink, so later clones copy
    /// at once.
    reflink: AtomicBool,
}

/// How a clone was made (tests check that reflink really happened).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloneHow {
    Reflink,
    Copy,
}

const COPY_CHUNK: usize = 1 << 20;

impl FsOps {
    pub fn new(kind: FsKind, block_size: u64) -> FsOps {
        FsOps {
            kind,
            block_size: block_size.max(512),
            reflink: AtomicBool::new(matches!(kind, FsKind::Xfs | FsKind::Btrfs)),
        }
    }

    pub fn reflink_enabled(&self) -> bool {
        self.reflink.load(Ordering::Relaxed)
    }

    fn reflink_failed(&self, e: &io::Error) {
        if matches!(
            e.raw_os_error(),
            Some(libc::EOPNOTSUPP | libc::ENOTTY | libc::ENOSYS | libc::EXDEV)
        ) {
            self.reflink.store(false, Ordering::Relaxed);
        }
    }

    /// Makes `dst` (empty) a copy of the whole of `src`.
    pub fn clone_file(&self, dst: &File, src: &File) -> io::Result<CloneHow> {
        if self.reflink_enabled() {
            match sys::ficlone(dst, src) {
                Ok(()) => return Ok(CloneHow::Reflink),
                Err(e) if sys::is_unsupported(&e) => self.reflink_failed(&e),
                Err(e) => return Err(e),
            }
        }
        let len = src.metadata()?.len();
        copy_sparse(src, 0, len, dst, 0)?;
        dst.set_len(len)?;
        Ok(CloneHow::Copy)
    }

    /// Copies `[soff, soff+len)` of `src` over `[doff, doff+len)` of `dst` (whose other
    /// bytes stay); `dst` grows to at least `doff+len`. `src` and `dst` are different
    /// files. Holes in the source become holes (or zeros) in the destination.
    pub fn clone_range(
        &self,
        dst: &File,
        src: &File,
        soff: u64,
        len: u64,
        doff: u64,
    ) -> io::Result<CloneHow> {
        if len == 0 {
            return Ok(CloneHow::Copy);
        }
        let bs = self.block_size;
        if self.reflink_enabled() && soff.is_multiple_of(bs) && doff.is_multiple_of(bs) {
            let src_len = src.metadata()?.len();
            let dst_len = dst.metadata()?.len();
            // The kernel takes an unaligned length only when it runs to the source's
            // end and covers the destination's end as well.
            let ok_len = len.is_multiple_of(bs) || (soff + len == src_len && doff + len >= dst_len);
            if ok_len {
                match sys::ficlonerange(dst, src, soff, len, doff) {
                    Ok(()) => {
                        if dst.metadata()?.len() < doff + len {
                            dst.set_len(doff + len)?;
                        }
                        return Ok(CloneHow::Reflink);
                    }
                    Err(e) if sys::is_unsupported(&e) => self.reflink_failed(&e),
                    Err(e) => return Err(e),
                }
            }
        }
        let dst_len = dst.metadata()?.len();
        // Clear the destination range first, so the source's holes read as zeros.
        if doff < dst_len {
            zero_range(dst, doff, (doff + len).min(dst_len) - doff)?;
        }
        copy_sparse(src, soff, len, dst, doff)?;
        if dst.metadata()?.len() < doff + len {
            dst.set_len(doff + len)?;
        }
        Ok(CloneHow::Copy)
    }

    /// SETALLOCHINT: on XFS, the extent-size hint, only while the file has no extents
    /// (the kernel refuses it afterwards). Advisory everywhere: errors are ignored by
    /// the caller.
    pub fn set_alloc_hint(&self, f: &File, expected_write_size: u64) -> io::Result<bool> {
        if self.kind != FsKind::Xfs || expected_write_size == 0 {
            return Ok(false);
        }
        let mut x = sys::fsgetxattr(f)?;
        if x.nextents > 0 || f.metadata()?.len() > 0 {
            return Ok(false);
        }
        // A multiple of the block size, at most 1 MiB (Ceph's cap).
        let hint = (expected_write_size.min(1 << 20) / self.block_size) * self.block_size;
        if hint == 0 {
            return Ok(false);
        }
        x.xflags |= sys::FS_XFLAG_EXTSIZE;
        x.extsize = hint as u32;
        sys::fssetxattr(f, &x)?;
        Ok(true)
    }

    /// Extents holding data in `[off, end)`, as (offset, length), clipped to the range:
    /// FIEMAP, or SEEK_DATA / SEEK_HOLE where FIEMAP is missing, or the whole range.
    pub fn extents(&self, f: &File, off: u64, end: u64) -> io::Result<Vec<(u64, u64)>> {
        if off >= end {
            return Ok(Vec::new());
        }
        let raw: Vec<(u64, u64)> = match sys::fiemap(f, off, end - off) {
            Ok(m) => m.iter().map(|e| (e.logical, e.length)).collect(),
            Err(e) if sys::is_unsupported(&e) => match data_segments(f, off, end) {
                Ok(s) => s,
                Err(e) if sys::is_unsupported(&e) => vec![(off, end - off)],
                Err(e) => return Err(e),
            },
            Err(e) => return Err(e),
        };
        let mut out: Vec<(u64, u64)> = Vec::new();
        for (o, l) in raw {
            let s = o.max(off);
            let e = o.saturating_add(l).min(end);
            if s >= e {
                continue;
            }
            match out.last_mut() {
                Some(last) if last.0 + last.1 >= s => {
                    last.1 = last.1.max(e - last.0);
                }
                _ => out.push((s, e - s)),
            }
        }
        Ok(out)
    }
}

/// Data segments of `f` in `[off, end)` by SEEK_DATA / SEEK_HOLE.
pub fn data_segments(f: &File, off: u64, end: u64) -> io::Result<Vec<(u64, u64)>> {
    let mut out = Vec::new();
    let mut pos = off;
    while pos < end {
        let Some(d) = sys::seek_data_hole(f, pos, true)? else {
            break;
        };
        if d >= end {
            break;
        }
        let h = sys::seek_data_hole(f, d, false)?.unwrap_or(end).min(end);
        if h <= d {
            break;
        }
        out.push((d, h - d));
        pos = h;
    }
    Ok(out)
}

/// Copies only the data segments of `[soff, soff+len)` of `src` to `doff` of `dst`.
pub fn copy_sparse(src: &File, soff: u64, len: u64, dst: &File, doff: u64) -> io::Result<()> {
    let end = soff + len;
    let segs = match data_segments(src, soff, end) {
        Ok(s) => s,
        Err(e) if sys::is_unsupported(&e) => vec![(soff, len)],
        Err(e) => return Err(e),
    };
    let mut buf = vec![0u8; COPY_CHUNK.min(len as usize).max(1)];
    for (s, l) in segs {
        let mut done = 0u64;
        while done < l {
            let n = (l - done).min(buf.len() as u64) as usize;
            let got = read_full(src, &mut buf[..n], s + done)?;
            if got == 0 {
                break;
            }
            dst.write_all_at(&buf[..got], doff + (s - soff) + done)?;
            done += got as u64;
        }
    }
    Ok(())
}

/// Reads until `buf` is full or the file ends.
pub fn read_full(f: &File, buf: &mut [u8], off: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match f.read_at(&mut buf[done..], off + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Zeroes `[off, off+len)` inside the file (which is not extended): a punched hole, or
/// written zeros where punching is unsupported.
pub fn zero_range(f: &File, off: u64, len: u64) -> io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    match sys::punch_hole(f, off, len) {
        Ok(()) => Ok(()),
        Err(e) if sys::is_unsupported(&e) => {
            let z = vec![0u8; COPY_CHUNK.min(len as usize)];
            let mut done = 0u64;
            while done < len {
                let n = (len - done).min(z.len() as u64) as usize;
                f.write_all_at(&z[..n], off + done)?;
                done += n as u64;
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Checkpoints as filesystem snapshots of `<data>/current` (btrfs, ZFS). Snapshot names
/// are `snap_<seq as 20 digits>`, so name order is seq order.
pub trait SnapshotOps: Send + Sync + std::fmt::Debug {
    /// Makes `<data>/current` a snapshot-able unit (a btrfs subvolume) at mkfs.
    fn create_current(&self, data: &Path) -> io::Result<()>;
    /// Snapshots `current` as `name`.
    fn snapshot(&self, data: &Path, name: &str) -> io::Result<()>;
    fn destroy(&self, data: &Path, name: &str) -> io::Result<()>;
    /// Makes `current` exactly snapshot `name` again.
    fn rollback(&self, data: &Path, name: &str) -> io::Result<()>;
    /// Every snapshot name.
    fn list(&self, data: &Path) -> io::Result<Vec<String>>;
}

pub fn snap_name(seq: u64) -> String {
    format!("snap_{seq:020}")
}

pub fn snap_seq(name: &str) -> Option<u64> {
    let d = name.strip_prefix("snap_")?;
    if d.len() != 20 || !d.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    d.parse().ok()
}

/// btrfs: `current` is a subvolume; snapshots are read-only subvolumes beside it.
#[derive(Debug, Default)]
pub struct BtrfsSnapshots;

impl SnapshotOps for BtrfsSnapshots {
    fn create_current(&self, data: &Path) -> io::Result<()> {
        let d = sys::open_dir(data)?;
        sys::btrfs_subvol_create(&d, Path::new("current"))?;
        d.sync_all()
    }
    fn snapshot(&self, data: &Path, name: &str) -> io::Result<()> {
        let d = sys::open_dir(data)?;
        let cur = sys::open_dir(&data.join("current"))?;
        sys::btrfs_snap_create(&d, &cur, Path::new(name), true)?;
        // The snapshot is part of the transaction the ioctl commits; syncfs makes sure
        // it (and the directory entry) is on disk before the checkpoint is recorded.
        sys::syncfs(&d)
    }
    fn destroy(&self, data: &Path, name: &str) -> io::Result<()> {
        let d = sys::open_dir(data)?;
        match sys::btrfs_subvol_destroy(&d, Path::new(name)) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            r => r,
        }
    }
    fn rollback(&self, data: &Path, name: &str) -> io::Result<()> {
        // Build the new `current` beside the old one, then swap by rename, so a crash
        // at any point leaves either the old current, or none (mount rolls back again).
        let d = sys::open_dir(data)?;
        let new = Path::new("current.new");
        if data.join(new).exists() {
            sys::btrfs_subvol_destroy(&d, new)?;
        }
        let snap = sys::open_dir(&data.join(name))?;
        sys::btrfs_snap_create(&d, &snap, new, false)?;
        if data.join("current").exists() {
            if sys::is_btrfs_subvolume(&data.join("current"))? {
                sys::btrfs_subvol_destroy(&d, Path::new("current"))?;
            } else {
                std::fs::remove_dir_all(data.join("current"))?;
            }
        }
        std::fs::rename(data.join(new), data.join("current"))?;
        sys::syncfs(&d)
    }
    fn list(&self, data: &Path) -> io::Result<Vec<String>> {
        list_snap_dirs(data)
    }
}

fn list_snap_dirs(data: &Path) -> io::Result<Vec<String>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(data)? {
        let n = e?.file_name().to_string_lossy().into_owned();
        if snap_seq(&n).is_some() {
            v.push(n);
        }
    }
    v.sort();
    Ok(v)
}

/// Runs the `zfs` command (a trait so the tests can fake it).
pub trait ZfsRunner: Send + Sync + std::fmt::Debug {
    fn run(&self, args: &[&str]) -> io::Result<String>;
}

/// The real `zfs` binary.
#[derive(Debug, Default)]
pub struct ZfsCommand;

impl ZfsRunner for ZfsCommand {
    fn run(&self, args: &[&str]) -> io::Result<String> {
        let out = std::process::Command::new("zfs").args(args).output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "zfs {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// ZFS: `current` must be the mountpoint of its own dataset (made by the operator, e.g.
/// `zfs create -o mountpoint=<data>/current pool/osd0`); snapshots are
/// `<dataset>@snap_<seq>` and rollback is `zfs rollback -r`.
#[derive(Debug)]
pub struct ZfsSnapshots<R: ZfsRunner> {
    pub runner: R,
    /// The dataset, found from the mount table (or given).
    pub dataset: Mutex<Option<String>>,
}

impl<R: ZfsRunner> ZfsSnapshots<R> {
    pub fn new(runner: R, dataset: Option<String>) -> Self {
        ZfsSnapshots {
            runner,
            dataset: Mutex::new(dataset),
        }
    }

    fn dataset(&self, data: &Path) -> io::Result<String> {
        let mut g = self.dataset.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(d) = &*g {
            return Ok(d.clone());
        }
        let d = zfs_dataset_at(&data.join("current"))?;
        *g = Some(d.clone());
        Ok(d)
    }
}

/// The ZFS dataset mounted exactly at `path`, from /proc/self/mounts.
pub fn zfs_dataset_at(path: &Path) -> io::Result<String> {
    let want: PathBuf = path.canonicalize()?;
    let mounts = std::fs::read_to_string("/proc/self/mounts")?;
    for l in mounts.lines() {
        let f: Vec<&str> = l.split(' ').collect();
        if f.len() >= 3 && f[2] == "zfs" && Path::new(f[1]) == want {
            return Ok(f[0].to_string());
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} is not the mountpoint of a ZFS dataset", want.display()),
    ))
}

impl<R: ZfsRunner> SnapshotOps for ZfsSnapshots<R> {
    fn create_current(&self, data: &Path) -> io::Result<()> {
        // The dataset exists already; just check it is there.
        self.dataset(data).map(|_| ())
    }
    fn snapshot(&self, data: &Path, name: &str) -> io::Result<()> {
        let ds = self.dataset(data)?;
        self.runner
            .run(&["snapshot", &format!("{ds}@{name}")])
            .map(|_| ())
    }
    fn destroy(&self, data: &Path, name: &str) -> io::Result<()> {
        let ds = self.dataset(data)?;
        self.runner
            .run(&["destroy", &format!("{ds}@{name}")])
            .map(|_| ())
    }
    fn rollback(&self, data: &Path, name: &str) -> io::Result<()> {
        let ds = self.dataset(data)?;
        self.runner
            .run(&["rollback", "-r", &format!("{ds}@{name}")])
            .map(|_| ())
    }
    fn list(&self, data: &Path) -> io::Result<Vec<String>> {
        let ds = self.dataset(data)?;
        let out = self
            .runner
            .run(&["list", "-H", "-t", "snapshot", "-o", "name", "-d", "1", &ds])?;
        let mut v: Vec<String> = out
            .lines()
            .filter_map(|l| l.trim().strip_prefix(&format!("{ds}@")).map(str::to_string))
            .filter(|n| snap_seq(n).is_some())
            .collect();
        v.sort();
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake `zfs`: keeps snapshots as copies of a tiny "dataset" (a map of files).
    #[derive(Debug, Default)]
    struct FakeZfs {
        log: Mutex<Vec<String>>,
        snaps: Mutex<Vec<String>>,
    }

    impl ZfsRunner for FakeZfs {
        fn run(&self, args: &[&str]) -> io::Result<String> {
            self.log.lock().unwrap().push(args.join(" "));
            let mut s = self.snaps.lock().unwrap();
            match args {
                ["snapshot", n] => {
                    s.push(n.to_string());
                    Ok(String::new())
                }
                ["destroy", n] => {
                    s.retain(|x| x != n);
                    Ok(String::new())
                }
                ["rollback", "-r", n] => {
                    let i = s
                        .iter()
                        .position(|x| x == n)
                        .ok_or_else(|| io::Error::other("no such snapshot"))?;
                    s.truncate(i + 1);
                    Ok(String::new())
                }
                ["list", ..] => Ok(s.iter().map(|x| format!("{x}\n")).collect()),
                _ => Err(io::Error::other("unknown zfs command")),
            }
        }
    }

    #[test]
    fn zfs_snapshot_checkpoints_through_the_fake() {
        let z = ZfsSnapshots::new(FakeZfs::default(), Some("tank/osd0".into()));
        let data = Path::new("/nonexistent");
        z.create_current(data).unwrap();
        for seq in [0u64, 5, 9] {
            z.snapshot(data, &snap_name(seq)).unwrap();
        }
        assert_eq!(
            z.list(data).unwrap(),
            vec![snap_name(0), snap_name(5), snap_name(9)]
        );
        z.destroy(data, &snap_name(0)).unwrap();
        z.rollback(data, &snap_name(5)).unwrap();
        assert_eq!(z.list(data).unwrap(), vec![snap_name(5)]);
        let log = z.runner.log.lock().unwrap().clone();
        assert!(log.contains(&"rollback -r tank/osd0@snap_00000000000000000005".to_string()));
        assert!(z.rollback(data, &snap_name(7)).is_err());
    }

    #[test]
    fn magic_picks_the_backend() {
        assert_eq!(FsKind::from_magic(sys::XFS_SUPER_MAGIC), FsKind::Xfs);
        assert_eq!(FsKind::from_magic(sys::BTRFS_SUPER_MAGIC), FsKind::Btrfs);
        assert_eq!(FsKind::from_magic(sys::ZFS_SUPER_MAGIC), FsKind::Zfs);
        assert_eq!(FsKind::from_magic(sys::EXT4_SUPER_MAGIC), FsKind::Generic);
        for k in [FsKind::Generic, FsKind::Xfs, FsKind::Btrfs, FsKind::Zfs] {
            assert_eq!(FsKind::from_code(k.code()), Some(k));
        }
        assert_eq!(snap_seq(&snap_name(42)), Some(42));
        assert_eq!(snap_seq("snap_1"), None);
    }

    #[test]
    fn generic_clone_range_copies_holes_as_zeros() {
        let d = tempfile::tempdir().unwrap();
        let open = |n: &str| {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(d.path().join(n))
                .unwrap()
        };
        let (s, t) = (open("s"), open("t"));
        s.write_all_at(&[1; 100], 0).unwrap();
        s.write_all_at(&[2; 100], 200_000).unwrap();
        t.write_all_at(&[9; 300_000], 0).unwrap();
        let ops = FsOps::new(FsKind::Generic, 4096);
        ops.clone_range(&t, &s, 0, 200_100, 10).unwrap();
        let mut b = vec![0u8; 300_000];
        read_full(&t, &mut b, 0).unwrap();
        assert_eq!(b[..10], [9; 10]);
        assert_eq!(b[10..110], [1; 100]);
        assert!(b[110..200_010].iter().all(|x| *x == 0));
        assert_eq!(b[200_010..200_110], [2; 100]);
        assert_eq!(b[200_110..], vec![9u8; 300_000 - 200_110][..]);
    }
}
