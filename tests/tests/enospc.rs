//! A real ENOSPC: a MemStore on a size-capped tmpfs is written until the filesystem is
//! full. The write that hits ENOSPC is not acknowledged, nothing after it is, and once the
//! tmpfs is grown (space freed) a remount recovers every acknowledged transaction and
//! makes progress again. Needs root (mount); says loudly when it skipped.

use std::process::Command;
use std::sync::Arc;

use ostore_os::journaling::JournalingOptions;
use ostore_os::{ErrorKind, ObjectId, ObjectStore, Transaction};

fn sh(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

struct Tmpfs(std::path::PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = sh(&["umount", "-l", self.0.to_str().unwrap_or("")]);
    }
}

#[test]
fn enospc_on_a_small_tmpfs_fails_stop_and_recovers() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let m = mnt.to_str().unwrap();
    if !root || !sh(&["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", m]) {
        eprintln!("SKIPPED: enospc test needs root and tmpfs mounts");
        return;
    }
    let _guard = Tmpfs(mnt.clone());
    let data = mnt.join("store");
    let make = || {
        Arc::new(ostore_memstore::MemStore::with_options(
            &data,
            JournalingOptions::small(),
        ))
    };
    let s = make();
    let (c, ch) = ostore_tests::harness::mkfs_mount_one_collection(&*s);
    let mut acked = 0usize;
    let mut failure = None;
    for i in 0..10_000usize {
        let mut t = Transaction::new();
        t.write(
            &c,
            &ObjectId::new(1, format!("o{i}")),
            0,
            vec![i as u8; 64 << 10],
        );
        match s.apply_transaction(&ch, t) {
            Ok(()) => {
                assert!(
                    failure.is_none(),
                    "transaction {i} acknowledged after {failure:?}"
                );
                acked = i + 1;
            }
            Err(e) => {
                assert!(
                    matches!(
                        e.kind(),
                        ErrorKind::NoSpace | ErrorKind::Failed | ErrorKind::Io
                    ),
                    "unexpected error {e}"
                );
                failure.get_or_insert(e);
                if i > acked + 3 {
                    break;
                }
            }
        }
    }
    let failure = failure.expect("6 MiB filled without ENOSPC");
    eprintln!("ENOSPC after {acked} acknowledged 64 KiB writes: {failure}");
    assert!(acked > 0, "nothing fit");
    drop(s);
    // Free space, then remount: every acknowledged write is there, and writes go on.
    assert!(
        sh(&["mount", "-o", "remount,size=64m", m]),
        "grow the tmpfs"
    );
    let s = make();
    s.mount().expect("remount after ENOSPC");
    let ch = s.open_collection(&c).unwrap();
    for i in 0..acked {
        let d = s
            .read(&ch, &ObjectId::new(1, format!("o{i}")), 0, 0)
            .unwrap();
        assert_eq!(d, vec![i as u8; 64 << 10], "acknowledged write {i}");
    }
    let mut t = Transaction::new();
    t.write(&c, &ObjectId::new(1, "after"), 0, b"progress".to_vec());
    s.apply_transaction(&ch, t)
        .expect("progress after space was freed");
    s.umount().unwrap();
}
