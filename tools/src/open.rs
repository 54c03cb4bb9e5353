//! Opening a data directory as a store. This module is the only place in the tools
//! that names backends: a new backend is added to [`STORE_TYPES`] and [`construct`],
//! nothing else.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ostore_memstore::MemStore;
use ostore_os::journaling::JournalingOptions;
use ostore_os::superblock::Superblock;
use ostore_os::{Error, ErrorKind, ObjectStore, Result};

/// Backends this build can open, in the order error messages list them.
pub const STORE_TYPES: &[&str] = &["memstore", "kvstore", "filestore"];

/// The backend `mkfs` formats when `--type` is omitted.
pub const DEFAULT_STORE_TYPE: &str = "memstore";

fn expected_types() -> String {
    match STORE_TYPES {
        [one] => (*one).to_string(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
        [] => "nothing (no backend compiled in)".to_string(),
    }
}

fn check_known(store_type: &str) -> Result<()> {
    if STORE_TYPES.contains(&store_type) {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "unknown --type {store_type}: expected {}",
            expected_types()
        )))
    }
}

/// Where a store is and what it is, from the global options.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// `--type`: checked against the superblock; mkfs's backend.
    pub store_type: Option<String>,
    pub data_path: PathBuf,
    /// `--journal-path`; `<data-path>/journal` when `None`.
    pub journal_path: Option<PathBuf>,
}

impl StoreConfig {
    pub fn journal_dir(&self) -> PathBuf {
        self.journal_path
            .clone()
            .unwrap_or_else(|| self.data_path.join("journal"))
    }

    pub fn options(&self) -> JournalingOptions {
        JournalingOptions {
            journal_path: self.journal_path.clone(),
            ..JournalingOptions::default()
        }
    }
}

fn construct(store_type: &str, cfg: &StoreConfig) -> Result<Arc<dyn ObjectStore>> {
    construct_with(store_type, cfg, cfg.options())
}

fn construct_with(
    store_type: &str,
    cfg: &StoreConfig,
    opts: JournalingOptions,
) -> Result<Arc<dyn ObjectStore>> {
    let data_path = &cfg.data_path;
    match store_type {
        "memstore" => Ok(Arc::new(MemStore::with_options(data_path, opts))),
        "kvstore" => Ok(Arc::new(ostore_kvstore::kvstore(
            data_path,
            opts,
            ostore_kvstore::KvStoreOptions::default(),
        ))),
        "filestore" => Ok(Arc::new(ostore_filestore::filestore(
            data_path,
            opts,
            ostore_filestore::FileStoreOptions::default(),
        ))),
        t => Err(Error::invalid(format!(
            "unknown --type {t}: expected {}",
            expected_types()
        ))),
    }
}

fn check_dir(data_path: &Path) -> Result<()> {
    match std::fs::metadata(data_path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(Error::invalid(format!(
            "data path {} is not a directory",
            data_path.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::not_found(format!(
            "data path {} does not exist",
            data_path.display()
        ))),
        Err(e) => Err(Error::from(e).context(format!("data path {}", data_path.display()))),
    }
}

/// A store to format at `data_path` (which need not exist yet). `store_type` defaults
/// to [`DEFAULT_STORE_TYPE`].
pub fn store_for_mkfs(cfg: &StoreConfig) -> Result<Arc<dyn ObjectStore>> {
    let data_path = &cfg.data_path;
    let t = cfg.store_type.as_deref().unwrap_or(DEFAULT_STORE_TYPE);
    check_known(t)?;
    // mkfs creates a missing directory, but a file in the way deserves a plainer
    // message than the backend's "creating ...: File exists".
    if data_path.exists() {
        check_dir(data_path)?;
    }
    construct(t, cfg)
}

/// Like [`store_for_mkfs`], with journaling options adjusted by `tune` (benchmarks).
pub fn store_for_mkfs_with(
    cfg: &StoreConfig,
    tune: impl FnOnce(&mut JournalingOptions),
) -> Result<Arc<dyn ObjectStore>> {
    let t = cfg.store_type.as_deref().unwrap_or(DEFAULT_STORE_TYPE);
    check_known(t)?;
    let mut o = cfg.options();
    tune(&mut o);
    construct_with(t, cfg, o)
}

/// Opens (without mounting) the formatted store at `data_path`. The type comes from the
/// superblock; a `store_type` given by the caller must match it, so a wrong `--type`
/// is refused here rather than by whatever the backend makes of a foreign directory.
pub fn open_store(cfg: &StoreConfig) -> Result<Arc<dyn ObjectStore>> {
    let store_type = cfg.store_type.as_deref();
    let data_path = &cfg.data_path;
    if let Some(t) = store_type {
        check_known(t)?;
    }
    let sb = read_superblock(data_path)?;
    if let Some(t) = store_type {
        if t != sb.store_type {
            return Err(Error::invalid(format!(
                "--type {t} does not match {}, which holds a {} store",
                data_path.display(),
                sb.store_type
            )));
        }
    }
    if !STORE_TYPES.contains(&sb.store_type.as_str()) {
        return Err(Error::new(
            ErrorKind::Unsupported,
            format!(
                "{} holds a {} store; this os-tool opens only {}",
                data_path.display(),
                sb.store_type,
                expected_types()
            ),
        ));
    }
    construct(&sb.store_type, cfg)
}

/// The superblock of the store at `data_path`, with ENOENT naming the path when the
/// directory is missing or was never formatted.
pub fn read_superblock(data_path: &Path) -> Result<Superblock> {
    check_dir(data_path)?;
    Superblock::read(data_path)
}

/// A mounted store that is unmounted when dropped, so an early return on an error
/// still leaves the data directory mountable. Call [`Mounted::umount`] on the success
/// path to see the unmount's own error.
pub struct Mounted {
    store: Arc<dyn ObjectStore>,
    mounted: bool,
}

impl fmt::Debug for Mounted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mounted")
            .field("store_type", &self.store.store_type())
            .field("mounted", &self.mounted)
            .finish()
    }
}

impl Mounted {
    pub fn mount(store: Arc<dyn ObjectStore>) -> Result<Mounted> {
        store.mount().map_err(|e| {
            if e.kind() == ostore_os::ErrorKind::ReadOnly {
                e.context(
                    "the store is on a read-only filesystem, and mounting it writes (its \
                     lock, the journal's replay and tail); to read it, copy the store \
                     (and its journal) to a writable filesystem",
                )
            } else {
                e
            }
        })?;
        Ok(Mounted {
            store,
            mounted: true,
        })
    }

    pub fn store(&self) -> &dyn ObjectStore {
        self.store.as_ref()
    }

    pub fn umount(mut self) -> Result<()> {
        self.mounted = false;
        self.store.umount()
    }

    /// Unmounts after `r`, the outcome of the work done while mounted. The work's error
    /// wins because it is the one the caller asked about; an unmount failure after it is
    /// appended so it is not lost.
    pub fn finish<T>(self, r: Result<T>) -> Result<T> {
        let u = self.umount();
        match (r, u) {
            (Ok(v), Ok(())) => Ok(v),
            (Ok(_), Err(e)) => Err(e.context("unmounting")),
            (Err(e), Ok(())) => Err(e),
            (Err(e), Err(u)) => {
                let kind = e.kind();
                Err(Error::new(
                    kind,
                    format!("{}; then unmounting failed too: {u}", e.message()),
                ))
            }
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if self.mounted {
            // Best effort: the error that caused the early return is already on its way.
            let _ = self.store.umount();
        }
    }
}
