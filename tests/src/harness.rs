//! Store factories and a mounted store in a scratch directory.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use ostore_os::{CollectionHandle, CollectionId, ObjectId, ObjectStore, Result, Transaction};

use crate::state::{self, StoreState};

/// Makes store objects for a directory. Each call returns a fresh, unformatted,
/// unmounted store object; the suite runs mkfs and mount itself, and remounts by
/// umounting and mounting a new object made for the same directory.
pub trait StoreFactory: Send + Sync {
    fn name(&self) -> &str;
    fn create(&self, dir: &Path) -> Arc<dyn ObjectStore>;
}

/// A factory from a closure, so a backend's test file needs no type of its own.
pub struct FnFactory<F> {
    name: String,
    f: F,
}

impl<F> fmt::Debug for FnFactory<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FnFactory({})", self.name)
    }
}

impl<F> StoreFactory for FnFactory<F>
where
    F: Fn(&Path) -> Arc<dyn ObjectStore> + Send + Sync,
{
    fn name(&self) -> &str {
        &self.name
    }
    fn create(&self, dir: &Path) -> Arc<dyn ObjectStore> {
        (self.f)(dir)
    }
}

pub fn factory<F>(name: &str, f: F) -> FnFactory<F>
where
    F: Fn(&Path) -> Arc<dyn ObjectStore> + Send + Sync,
{
    FnFactory {
        name: name.to_string(),
        f,
    }
}

/// A formatted, mounted store in its own scratch directory; umounted on drop.
pub struct TestStore<'a> {
    factory: &'a dyn StoreFactory,
    dir: tempfile::TempDir,
    store: Arc<dyn ObjectStore>,
    mounted: bool,
}

impl fmt::Debug for TestStore<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "TestStore({} in {})",
            self.factory.name(),
            self.dir.path().display()
        )
    }
}

impl<'a> TestStore<'a> {
    pub fn new(factory: &'a dyn StoreFactory) -> TestStore<'a> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("ostore-{}-", factory.name()))
            .tempdir()
            .expect("create a scratch directory");
        let store = factory.create(dir.path());
        store.mkfs().expect("mkfs");
        store.mount().expect("mount");
        TestStore {
            factory,
            dir,
            store,
            mounted: true,
        }
    }

    pub fn store(&self) -> &dyn ObjectStore {
        &*self.store
    }

    pub fn store_arc(&self) -> Arc<dyn ObjectStore> {
        Arc::clone(&self.store)
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// umount, then mount a new store object on the same directory: only what the
    /// backend made durable survives. Handles taken before are stale afterwards.
    pub fn remount(&mut self) {
        self.store.umount().expect("umount");
        self.mounted = false;
        let store = self.factory.create(self.dir.path());
        store.mount().expect("mount after umount");
        self.store = store;
        self.mounted = true;
    }

    pub fn umount(&mut self) {
        self.store.umount().expect("umount");
        self.mounted = false;
    }

    /// Like [`TestStore::umount`], returning the error (a failed store refuses to
    /// umount cleanly); the store counts as umounted either way.
    pub fn try_umount(&mut self) -> Result<()> {
        self.mounted = false;
        self.store.umount()
    }

    /// Mounts a new store object on the directory (after [`TestStore::umount`]).
    pub fn mount(&mut self) {
        self.try_mount().expect("mount");
    }

    /// Like [`TestStore::mount`], returning the error when the store refuses to mount.
    pub fn try_mount(&mut self) -> Result<()> {
        let store = self.factory.create(self.dir.path());
        store.mount()?;
        self.store = store;
        self.mounted = true;
        Ok(())
    }

    /// A handle for an existing collection.
    #[track_caller]
    pub fn ch(&self, cid: &CollectionId) -> CollectionHandle {
        self.store
            .open_collection(cid)
            .unwrap_or_else(|e| panic!("open_collection({cid}): {e}"))
    }

    /// The handle a transaction acting first in `cid` is queued on: the collection's
    /// own, or a new-collection handle when it does not exist yet (as Ceph's OSD does
    /// before MKCOLL).
    pub fn handle_for(&self, cid: &CollectionId) -> Result<CollectionHandle> {
        if self.store.collection_exists(cid)? {
            self.store.open_collection(cid)
        } else {
            self.store.create_new_collection(cid)
        }
    }

    /// Applies a transaction on the handle of its first op's collection.
    pub fn apply(&self, txn: Transaction) -> Result<()> {
        let cid = txn
            .ops()
            .iter()
            .flat_map(|op| op.collections())
            .next()
            .unwrap_or(CollectionId::Meta);
        let ch = self.handle_for(&cid)?;
        self.store.apply_transaction(&ch, txn)
    }

    #[track_caller]
    pub fn apply_ok(&self, txn: Transaction) {
        if let Err(e) = self.apply(txn) {
            panic!("transaction failed: {e}");
        }
    }

    #[track_caller]
    pub fn mkcoll(&self, cid: &CollectionId, bits: u32) {
        let mut t = Transaction::new();
        t.create_collection(cid, bits);
        self.apply_ok(t);
    }

    pub fn read(&self, cid: &CollectionId, oid: &ObjectId, off: u64, len: u64) -> Result<Vec<u8>> {
        self.store.read(&self.ch(cid), oid, off, len)
    }

    #[track_caller]
    pub fn read_all(&self, cid: &CollectionId, oid: &ObjectId) -> Vec<u8> {
        self.read(cid, oid, 0, 0)
            .unwrap_or_else(|e| panic!("read {oid}: {e}"))
    }

    #[track_caller]
    pub fn size(&self, cid: &CollectionId, oid: &ObjectId) -> u64 {
        self.store
            .stat(&self.ch(cid), oid)
            .unwrap_or_else(|e| panic!("stat {oid}: {e}"))
            .size
    }

    #[track_caller]
    pub fn exists(&self, cid: &CollectionId, oid: &ObjectId) -> bool {
        self.store
            .exists(&self.ch(cid), oid)
            .unwrap_or_else(|e| panic!("exists {oid}: {e}"))
    }

    /// The whole collection, listed in pages of `page`.
    #[track_caller]
    pub fn list(&self, cid: &CollectionId, page: usize) -> Vec<ObjectId> {
        state::list_all(self.store(), &self.ch(cid), page)
            .unwrap_or_else(|e| panic!("list {cid}: {e}"))
    }

    #[track_caller]
    pub fn capture(&self) -> StoreState {
        state::capture(self.store()).unwrap_or_else(|e| panic!("capture state: {e}"))
    }
}

impl Drop for TestStore<'_> {
    fn drop(&mut self) {
        if self.mounted {
            // Errors here would mask the failure that is unwinding, if any.
            let _ = self.store.umount();
        }
        remove_tree(self.dir.path());
    }
}

/// Removes a store's directory, including read-only btrfs snapshots (FileStore's
/// checkpoints on btrfs), which a plain recursive delete cannot empty: each is made
/// writable first. Best effort: a leftover directory costs space, not correctness.
pub fn remove_tree(path: &Path) {
    if std::fs::remove_dir_all(path).is_ok() || !path.exists() {
        return;
    }
    let mut stack = vec![path.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                let p = e.path();
                // Inode 256 is the root of a btrfs subvolume or snapshot.
                let subvol = e
                    .metadata()
                    .is_ok_and(|m| std::os::unix::fs::MetadataExt::ino(&m) == 256);
                if subvol {
                    let _ = std::process::Command::new("btrfs")
                        .args(["property", "set", "-ts"])
                        .arg(&p)
                        .args(["ro", "false"])
                        .stderr(std::process::Stdio::null())
                        .stdout(std::process::Stdio::null())
                        .status();
                }
                stack.push(p);
            }
        }
    }
    let _ = std::fs::remove_dir_all(path);
}

/// `cp -a from to`: a whole store directory copied as it is (sparse files, xattrs).
pub fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("cp");
    assert!(st.success(), "copying {} failed", from.display());
}

/// Formats and mounts `s`, and creates collection `pg(1, 0)` in it: the start of the
/// tests that drive one store by hand (failpoint and fault tests).
pub fn mkfs_mount_one_collection(s: &dyn ObjectStore) -> (CollectionId, CollectionHandle) {
    s.mkfs().unwrap();
    s.mount().unwrap();
    let c = CollectionId::pg(1, 0);
    let ch = s.create_new_collection(&c).unwrap();
    let mut t = Transaction::new();
    t.create_collection(&c, 0);
    s.apply_transaction(&ch, t).unwrap();
    (c, ch)
}
