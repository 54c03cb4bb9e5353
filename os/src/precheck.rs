//! State-dependent checks: decides, before a backend touches anything, whether a
//! transaction applies or is rejected as a whole.
//!
//! Ceph aborts the OSD on the errors listed below; we instead reject the transaction
//! and leave the store unchanged. Because the decision depends only on the state the
//! transaction lands on, a replay makes the same decision, so first apply and replay
//! never diverge. Errors Ceph tolerates (ENOENT on an object, ENODATA) are not
//! reported here: the backend skips those ops.
//!
//! Rejected (fatal in Ceph):
//! - any op on a collection that does not exist at that point of the transaction (ENOENT)
//! - MKCOLL of an existing collection, SPLIT_COLLECTION into an existing one (EEXIST)
//! - RMCOLL of a non-empty collection (ENOTEMPTY)
//! - CLONE, CLONERANGE, CLONERANGE2 from a missing object (ENOENT)
//! - COLL_MOVE_RENAME / TRY_RENAME onto an existing object when the source exists (EEXIST)

use std::collections::{BTreeSet, HashMap};

use crate::error::{Error, Result};
use crate::ids::{CollectionId, ObjectId};
use crate::transaction::{Op, Transaction};

/// What the checks need to read from the store's current state.
pub trait StateView {
    fn collection_exists(&self, cid: &CollectionId) -> Result<bool>;
    fn object_exists(&self, cid: &CollectionId, oid: &ObjectId) -> Result<bool>;
    /// Every object of an existing collection (used only by RMCOLL, split and merge).
    fn collection_objects(&self, cid: &CollectionId) -> Result<Vec<ObjectId>>;
}

#[derive(Default)]
struct CollOverlay {
    exists: bool,
    /// Full membership, once an op needed it (rmcoll, split, merge, creation).
    members: Option<BTreeSet<ObjectId>>,
    added: BTreeSet<ObjectId>,
    removed: BTreeSet<ObjectId>,
}

struct Overlay<'a> {
    base: &'a dyn StateView,
    colls: HashMap<CollectionId, CollOverlay>,
}

impl Overlay<'_> {
    fn coll(&mut self, cid: &CollectionId) -> Result<&mut CollOverlay> {
        if !self.colls.contains_key(cid) {
            let exists = self.base.collection_exists(cid)?;
            self.colls.insert(
                *cid,
                CollOverlay {
                    exists,
                    ..Default::default()
                },
            );
        }
        Ok(self.colls.get_mut(cid).expect("inserted above"))
    }

    fn require(&mut self, cid: &CollectionId) -> Result<()> {
        if self.coll(cid)?.exists {
            Ok(())
        } else {
            Err(Error::not_found(format!("collection {cid} does not exist")))
        }
    }

    fn exists(&mut self, cid: &CollectionId, oid: &ObjectId) -> Result<bool> {
        let base = self.base;
        let c = self.coll(cid)?;
        if !c.exists {
            return Ok(false);
        }
        if let Some(m) = &c.members {
            return Ok(m.contains(oid));
        }
        if c.added.contains(oid) {
            return Ok(true);
        }
        if c.removed.contains(oid) {
            return Ok(false);
        }
        base.object_exists(cid, oid)
    }

    fn members(&mut self, cid: &CollectionId) -> Result<&mut BTreeSet<ObjectId>> {
        let base = self.base;
        let c = self.coll(cid)?;
        if c.members.is_none() {
            let mut m: BTreeSet<ObjectId> = if c.exists {
                base.collection_objects(cid)?.into_iter().collect()
            } else {
                BTreeSet::new()
            };
            for o in &c.removed {
                m.remove(o);
            }
            m.extend(c.added.iter().cloned());
            c.members = Some(m);
        }
        Ok(c.members.as_mut().expect("materialized above"))
    }

    fn add(&mut self, cid: &CollectionId, oid: &ObjectId) -> Result<()> {
        let c = self.coll(cid)?;
        match &mut c.members {
            Some(m) => {
                m.insert(oid.clone());
            }
            None => {
                c.removed.remove(oid);
                c.added.insert(oid.clone());
            }
        }
        Ok(())
    }

    fn remove(&mut self, cid: &CollectionId, oid: &ObjectId) -> Result<()> {
        let c = self.coll(cid)?;
        match &mut c.members {
            Some(m) => {
                m.remove(oid);
            }
            None => {
                c.added.remove(oid);
                c.removed.insert(oid.clone());
            }
        }
        Ok(())
    }

    fn create_coll(&mut self, cid: &CollectionId) -> Result<()> {
        let c = self.coll(cid)?;
        if c.exists {
            return Err(Error::exists(format!("collection {cid} already exists")));
        }
        *c = CollOverlay {
            exists: true,
            members: Some(BTreeSet::new()),
            ..Default::default()
        };
        Ok(())
    }

    fn drop_coll(&mut self, cid: &CollectionId) -> Result<()> {
        let c = self.coll(cid)?;
        *c = CollOverlay {
            exists: false,
            members: Some(BTreeSet::new()),
            ..Default::default()
        };
        Ok(())
    }

    fn op(&mut self, op: &Op) -> Result<()> {
        match op {
            Op::Nop => Ok(()),
            Op::Create { cid, oid }
            | Op::Touch { cid, oid }
            | Op::Write { cid, oid, .. }
            | Op::Zero { cid, oid, .. } => {
                self.require(cid)?;
                self.add(cid, oid)
            }
            Op::Truncate { cid, .. }
            | Op::SetAttr { cid, .. }
            | Op::SetAttrs { cid, .. }
            | Op::RmAttr { cid, .. }
            | Op::RmAttrs { cid, .. }
            | Op::OmapClear { cid, .. }
            | Op::OmapSetKeys { cid, .. }
            | Op::OmapRmKeys { cid, .. }
            | Op::OmapSetHeader { cid, .. }
            | Op::OmapRmKeyRange { cid, .. }
            | Op::SetAllocHint { cid, .. }
            | Op::CollHint { cid, .. }
            | Op::CollSetBits { cid, .. } => self.require(cid),
            Op::Remove { cid, oid } => {
                self.require(cid)?;
                self.remove(cid, oid)
            }
            Op::Clone { cid, src, dst }
            | Op::CloneRange { cid, src, dst, .. }
            | Op::CloneRange2 { cid, src, dst, .. } => {
                self.require(cid)?;
                if !self.exists(cid, src)? {
                    return Err(Error::not_found(format!(
                        "clone source {src} does not exist in {cid}"
                    )));
                }
                self.add(cid, dst)
            }
            Op::MkColl { cid, .. } => self.create_coll(cid),
            Op::RmColl { cid } => {
                self.require(cid)?;
                if !self.members(cid)?.is_empty() {
                    return Err(Error::not_empty(format!("collection {cid} is not empty")));
                }
                self.drop_coll(cid)
            }
            Op::SplitCollection {
                cid,
                bits,
                rem,
                dest,
            }
            | Op::SplitCollection2 {
                cid,
                bits,
                rem,
                dest,
            } => {
                self.require(cid)?;
                if matches!(op, Op::SplitCollection { .. }) {
                    self.create_coll(dest)?;
                } else {
                    self.require(dest)?;
                }
                let src = self.members(cid)?;
                let moved: Vec<ObjectId> = src
                    .iter()
                    .filter(|o| o.matches(*bits, *rem))
                    .cloned()
                    .collect();
                for o in &moved {
                    src.remove(o);
                }
                self.members(dest)?.extend(moved);
                Ok(())
            }
            Op::MergeCollection { cid, dest, .. } => {
                self.require(cid)?;
                self.require(dest)?;
                let moved = std::mem::take(self.members(cid)?);
                self.members(dest)?.extend(moved);
                self.drop_coll(cid)
            }
            Op::CollMoveRename {
                old_cid,
                old_oid,
                new_cid,
                new_oid,
            } => self.rename(old_cid, old_oid, new_cid, new_oid),
            Op::TryRename {
                cid,
                old_oid,
                new_oid,
            } => self.rename(cid, old_oid, cid, new_oid),
        }
    }

    fn rename(
        &mut self,
        oc: &CollectionId,
        oo: &ObjectId,
        nc: &CollectionId,
        no: &ObjectId,
    ) -> Result<()> {
        self.require(oc)?;
        self.require(nc)?;
        if !self.exists(oc, oo)? {
            // Ceph tolerates a missing source (and TRY_RENAME exists for exactly this).
            return Ok(());
        }
        if self.exists(nc, no)? {
            return Err(Error::exists(format!(
                "rename destination {no} already exists in {nc}"
            )));
        }
        self.remove(oc, oo)?;
        self.add(nc, no)
    }
}

/// Decides whether `txn` applies to the state `view` shows. `Err` names the op that
/// would have failed; the transaction must then be skipped entirely.
pub fn precheck(txn: &Transaction, view: &dyn StateView) -> Result<()> {
    let mut ov = Overlay {
        base: view,
        colls: HashMap::new(),
    };
    for (i, op) in txn.ops().iter().enumerate() {
        ov.op(op)
            .map_err(|e| e.context(format!("op {i} ({})", op.code().name())))?;
    }
    Ok(())
}
