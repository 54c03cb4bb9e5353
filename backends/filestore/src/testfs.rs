//! Loop-mounted XFS and btrfs images for FileStore's tests: a sparse image file, `mkfs`,
//! `mount -o loop` on a fresh directory, and unmount (which also detaches the loop
//! device) plus removal when dropped or at process exit. Needs root and the mkfs tools;
//! [`LoopFs::new`] says why it cannot run otherwise, and callers skip loudly.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use crate::sys;

/// A mounted image.
#[derive(Debug)]
pub struct LoopFs {
    pub kind: String,
    pub image: PathBuf,
    pub mountpoint: PathBuf,
    mounted: bool,
}

fn run(cmd: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn have(tool: &str) -> bool {
    ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .any(|d| Path::new(d).join(tool).exists())
}

const PREFIX: &str = "ostore-loop-";

/// Unmounts leftovers of earlier test processes that died without cleaning up
/// (their pid is in the mountpoint's name).
fn reap_stale() {
    let Ok(m) = std::fs::read_to_string("/proc/self/mounts") else {
        return;
    };
    for l in m.lines() {
        let Some(mp) = l.split(' ').nth(1) else {
            continue;
        };
        let Some(name) = Path::new(mp)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
        else {
            continue;
        };
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let Some(pid) = rest.rsplit('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = run("umount", &[mp]);
            let _ = std::fs::remove_dir_all(Path::new(mp).parent().unwrap_or(Path::new(mp)));
        }
    }
}

impl LoopFs {
    /// Makes and mounts a `kind` ("xfs" or "btrfs") image of `size_mb` MiB in a fresh
    /// directory under the system temp dir. `Err` says why not (not root, no tools).
    pub fn new(kind: &str, size_mb: u64) -> Result<LoopFs, String> {
        if !sys::is_root() {
            return Err("not root (loop mounts need root)".into());
        }
        let mkfs = format!("mkfs.{kind}");
        for t in [mkfs.as_str(), "mount", "umount", "losetup"] {
            if !have(t) {
                return Err(format!("{t} is not installed"));
            }
        }
        reap_stale();
        static N: Mutex<u32> = Mutex::new(0);
        let n = {
            let mut g = N.lock().unwrap_or_else(|e| e.into_inner());
            *g += 1;
            *g
        };
        let base = std::env::temp_dir().join(format!("{PREFIX}{kind}{n}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let mnt = base.join(format!("{PREFIX}mnt{n}-{}", std::process::id()));
        std::fs::create_dir_all(&mnt).map_err(|e| format!("mkdir: {e}"))?;
        let image = base.join("image");
        let f = std::fs::File::create(&image).map_err(|e| format!("image: {e}"))?;
        f.set_len(size_mb << 20)
            .map_err(|e| format!("image: {e}"))?;
        drop(f);
        let img = image.to_string_lossy().into_owned();
        let mp = mnt.to_string_lossy().into_owned();
        match kind {
            "xfs" => run(&mkfs, &["-q", "-f", "-m", "reflink=1", &img])?,
            "btrfs" => run(&mkfs, &["-q", "-f", &img])?,
            _ => run(&mkfs, &["-q", &img])?,
        }
        run("mount", &["-o", "loop", &img, &mp])?;
        Ok(LoopFs {
            kind: kind.to_string(),
            image,
            mountpoint: mnt,
            mounted: true,
        })
    }

    /// Unmounts (detaching the loop device) and removes the image; idempotent.
    pub fn teardown(&mut self) {
        if self.mounted {
            let mp = self.mountpoint.to_string_lossy().into_owned();
            let mut ok = false;
            for _ in 0..20 {
                if run("umount", &[&mp]).is_ok() {
                    ok = true;
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            if !ok {
                let _ = run("umount", &["-l", &mp]);
            }
            self.mounted = false;
            // A loop device left by a lazy unmount is detached once it is released.
            let img = self.image.to_string_lossy().into_owned();
            if let Ok(o) = Command::new("losetup").args(["-j", &img]).output() {
                for l in String::from_utf8_lossy(&o.stdout).lines() {
                    if let Some(dev) = l.split(':').next() {
                        let _ = run("losetup", &["-d", dev]);
                    }
                }
            }
        }
        if let Some(base) = self.image.parent() {
            let _ = std::fs::remove_dir_all(base);
        }
    }

    /// Unmounts and mounts the image again (after an XFS forced shutdown: log recovery).
    pub fn remount(&mut self) -> Result<(), String> {
        let mp = self.mountpoint.to_string_lossy().into_owned();
        run("umount", &[&mp])?;
        self.mounted = false;
        let img = self.image.to_string_lossy().into_owned();
        run("mount", &["-o", "loop", &img, &mp])?;
        self.mounted = true;
        Ok(())
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        self.teardown();
    }
}

fn shared() -> &'static Mutex<Option<LoopFs>> {
    static S: OnceLock<Mutex<Option<LoopFs>>> = OnceLock::new();
    S.get_or_init(|| Mutex::new(None))
}

extern "C" fn cleanup_shared() {
    if let Some(m) = shared().lock().ok().as_mut().and_then(|g| g.as_mut()) {
        m.teardown();
    }
}

/// The one image per test process for `kind`, mounted on first use; the system temp
/// dir (`TMPDIR`) then points into it, so every scratch directory the shared suites
/// make lands on that filesystem. It is unmounted at process exit. Returns why not when
/// it cannot be had. A kill-test child (`OSTORE_KILL_CHILD`) uses its parent's mount.
pub fn shared_tmpdir(kind: &str, size_mb: u64) -> Result<PathBuf, String> {
    static INIT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    INIT.get_or_init(|| {
        if std::env::var_os("OSTORE_KILL_CHILD").is_some() {
            return Ok(std::env::temp_dir());
        }
        let fs = LoopFs::new(kind, size_mb)?;
        let tmp = fs.mountpoint.join("tmp");
        std::fs::create_dir_all(&tmp).map_err(|e| format!("mkdir: {e}"))?;
        *shared().lock().unwrap_or_else(|e| e.into_inner()) = Some(fs);
        sys::at_exit(cleanup_shared).map_err(|e| e.to_string())?;
        // Set once, before this test makes any scratch directory; every other test
        // waits on this initialisation first.
        std::env::set_var("TMPDIR", &tmp);
        Ok(tmp)
    })
    .clone()
}
