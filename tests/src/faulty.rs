//! A store wrapper with one deliberate defect, to show that the suite and the model
//! notice defects (a suite that passes a broken store proves nothing).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use ostore_os::store::OmapContents;
use ostore_os::{
    CollectionHandle, CollectionId, Completion, ObjectId, ObjectStat, ObjectStore, OmapIterator,
    OmapKey, OpCode, Result, StoreStatfs, Transaction,
};

use crate::harness::StoreFactory;

#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// Silently drops every op with this code.
    DropOp(OpCode),
    /// `collection_list` never returns the last object of a collection.
    ListHidesLast,
}

pub struct Faulty {
    inner: Arc<dyn ObjectStore>,
    fault: Fault,
}

impl fmt::Debug for Faulty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Faulty({:?})", self.fault)
    }
}

/// A factory wrapping every store `inner` makes.
pub struct FaultyFactory<F> {
    pub inner: F,
    pub fault: Fault,
}

impl<F> fmt::Debug for FaultyFactory<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultyFactory({:?})", self.fault)
    }
}

impl<F: StoreFactory> StoreFactory for FaultyFactory<F> {
    fn name(&self) -> &str {
        "faulty"
    }
    fn create(&self, dir: &Path) -> Arc<dyn ObjectStore> {
        Arc::new(Faulty {
            inner: self.inner.create(dir),
            fault: self.fault,
        })
    }
}

impl ObjectStore for Faulty {
    fn store_type(&self) -> &'static str {
        self.inner.store_type()
    }
    fn mkfs(&self) -> Result<()> {
        self.inner.mkfs()
    }
    fn mount(&self) -> Result<()> {
        self.inner.mount()
    }
    fn umount(&self) -> Result<()> {
        self.inner.umount()
    }
    fn statfs(&self) -> Result<StoreStatfs> {
        self.inner.statfs()
    }
    fn create_new_collection(&self, cid: &CollectionId) -> Result<CollectionHandle> {
        self.inner.create_new_collection(cid)
    }
    fn open_collection(&self, cid: &CollectionId) -> Result<CollectionHandle> {
        self.inner.open_collection(cid)
    }
    fn queue_transactions(
        &self,
        ch: &CollectionHandle,
        txns: Vec<Transaction>,
        completion: Completion,
    ) -> Result<()> {
        let txns = match self.fault {
            Fault::DropOp(code) => txns
                .into_iter()
                .map(|t| {
                    Transaction::from_ops(
                        t.into_ops()
                            .into_iter()
                            .filter(|o| o.code() != code)
                            .collect(),
                    )
                })
                .collect(),
            Fault::ListHidesLast => txns,
        };
        self.inner.queue_transactions(ch, txns, completion)
    }
    fn exists(&self, ch: &CollectionHandle, oid: &ObjectId) -> Result<bool> {
        self.inner.exists(ch, oid)
    }
    fn stat(&self, ch: &CollectionHandle, oid: &ObjectId) -> Result<ObjectStat> {
        self.inner.stat(ch, oid)
    }
    fn read(&self, ch: &CollectionHandle, oid: &ObjectId, off: u64, len: u64) -> Result<Vec<u8>> {
        self.inner.read(ch, oid, off, len)
    }
    fn fiemap(
        &self,
        ch: &CollectionHandle,
        oid: &ObjectId,
        off: u64,
        len: u64,
    ) -> Result<BTreeMap<u64, u64>> {
        self.inner.fiemap(ch, oid, off, len)
    }
    fn getattr(&self, ch: &CollectionHandle, oid: &ObjectId, name: &str) -> Result<Vec<u8>> {
        self.inner.getattr(ch, oid, name)
    }
    fn getattrs(&self, ch: &CollectionHandle, oid: &ObjectId) -> Result<BTreeMap<String, Vec<u8>>> {
        self.inner.getattrs(ch, oid)
    }
    fn list_collections(&self) -> Result<Vec<CollectionId>> {
        self.inner.list_collections()
    }
    fn collection_exists(&self, cid: &CollectionId) -> Result<bool> {
        self.inner.collection_exists(cid)
    }
    fn collection_empty(&self, ch: &CollectionHandle) -> Result<bool> {
        self.inner.collection_empty(ch)
    }
    fn collection_bits(&self, ch: &CollectionHandle) -> Result<u32> {
        self.inner.collection_bits(ch)
    }
    fn collection_list(
        &self,
        ch: &CollectionHandle,
        start: &ObjectId,
        end: &ObjectId,
        max: usize,
    ) -> Result<(Vec<ObjectId>, ObjectId)> {
        let (mut objs, next) = self.inner.collection_list(ch, start, end, max)?;
        if matches!(self.fault, Fault::ListHidesLast) && next.is_max() {
            objs.pop();
        }
        Ok((objs, next))
    }
    fn omap_get(&self, ch: &CollectionHandle, oid: &ObjectId) -> Result<OmapContents> {
        self.inner.omap_get(ch, oid)
    }
    fn omap_get_header(&self, ch: &CollectionHandle, oid: &ObjectId) -> Result<Vec<u8>> {
        self.inner.omap_get_header(ch, oid)
    }
    fn omap_get_keys(&self, ch: &CollectionHandle, oid: &ObjectId) -> Result<BTreeSet<OmapKey>> {
        self.inner.omap_get_keys(ch, oid)
    }
    fn omap_get_values(
        &self,
        ch: &CollectionHandle,
        oid: &ObjectId,
        keys: &BTreeSet<OmapKey>,
    ) -> Result<BTreeMap<OmapKey, Vec<u8>>> {
        self.inner.omap_get_values(ch, oid, keys)
    }
    fn omap_check_keys(
        &self,
        ch: &CollectionHandle,
        oid: &ObjectId,
        keys: &BTreeSet<OmapKey>,
    ) -> Result<BTreeSet<OmapKey>> {
        self.inner.omap_check_keys(ch, oid, keys)
    }
    fn omap_iterator(
        &self,
        ch: &CollectionHandle,
        oid: &ObjectId,
    ) -> Result<Box<dyn OmapIterator + Send>> {
        self.inner.omap_iterator(ch, oid)
    }
}
