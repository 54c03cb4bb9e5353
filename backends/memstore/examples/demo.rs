//! The README's first command: format a MemStore in a temporary directory (or the
//! directory given as the first argument), apply a small OSD-like workload, remount,
//! read everything back, check it, and fsck it.
//!
//! `cargo run --release -p ostore-memstore --example demo [DIR]`

use std::collections::BTreeMap;
use std::sync::Arc;

use ostore_memstore::MemStore;
use ostore_os::{CollectionId, ObjectId, ObjectStore, Result, Transaction};

fn main() {
    if let Err(e) = run() {
        eprintln!("demo: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let dir = match std::env::args().nth(1) {
        Some(d) => std::path::PathBuf::from(d),
        None => std::env::temp_dir().join(format!("ostore-demo-{}", std::process::id())),
    };
    let _ = std::fs::remove_dir_all(&dir);
    let store: Arc<dyn ObjectStore> = Arc::new(MemStore::new(&dir));
    store.mkfs()?;
    store.mount()?;
    println!("mkfs + mount: memstore in {}", dir.display());

    // Four PGs of pool 1, each with 64 objects written the way an OSD writes them:
    // data, the object-info attrs, and a pg-log entry in omap.
    let pgs: Vec<CollectionId> = (0..4).map(|s| CollectionId::pg(1, s)).collect();
    for cid in &pgs {
        let ch = store.create_new_collection(cid)?;
        let mut t = Transaction::new();
        t.create_collection(cid, 2);
        store.apply_transaction(&ch, t)?;
    }
    let mut expected = 0u64;
    for i in 0..256u32 {
        let name = format!("rbd_data.demo.{i:016x}");
        let oid = ObjectId::new(1, &name);
        let cid = &pgs[(oid.hash & 3) as usize];
        let ch = store.open_collection(cid)?;
        let data: Vec<u8> = (0..4096u32).map(|b| (b ^ i) as u8).collect();
        let mut t = Transaction::new();
        t.write(cid, &oid, 0, data)
            .setattr(cid, &oid, "_", format!("oi:{name}").into_bytes())
            .setattr(cid, &oid, "snapset", b"head".to_vec())
            .omap_setkeys(
                cid,
                &oid,
                BTreeMap::from([(
                    format!("0000000001.{i:020}").into_bytes(),
                    b"log entry".to_vec(),
                )]),
            );
        store.apply_transaction(&ch, t)?;
        expected += 4096;
    }
    // A clone, a split and a rename, as recovery and PG splits do.
    let src = ObjectId::new(1, "rbd_data.demo.0000000000000000");
    let src_cid = pgs[(src.hash & 3) as usize];
    let ch = store.open_collection(&src_cid)?;
    let snap = src.clone().with_snap(ostore_os::Snap(1));
    let mut t = Transaction::new();
    t.clone_obj(&src_cid, &src, &snap);
    store.apply_transaction(&ch, t)?;

    let split_to = CollectionId::pg(1, 4);
    let ch0 = store.open_collection(&pgs[0])?;
    let mut t = Transaction::new();
    t.create_collection(&split_to, 3)
        .split_collection(&pgs[0], 3, 4, &split_to);
    store.apply_transaction(&ch0, t)?;

    let st = store.statfs()?;
    println!(
        "applied 256 object writes, 1 clone, 1 split: {} objects in {} collections, {} data bytes",
        st.objects, st.collections, st.data_stored
    );

    store.umount()?;
    let store: Arc<dyn ObjectStore> = Arc::new(MemStore::new(&dir));
    store.mount()?;
    println!("umount + mount: state reloaded from the dump");

    // Read everything back and verify it: every object sits in the PG its hash
    // selects, its data and attrs are intact, and the listing is in Ceph order.
    let mut seen = 0u64;
    let mut objects = 0;
    for cid in store.list_collections()? {
        let ch = store.open_collection(&cid)?;
        let bits = store.collection_bits(&ch)?;
        let (list, next) =
            store.collection_list(&ch, &ObjectId::min(), &ObjectId::max_sentinel(), usize::MAX)?;
        assert!(next.is_max());
        assert!(
            list.windows(2).all(|w| w[0] < w[1]),
            "listing out of order in {cid}"
        );
        for oid in &list {
            let seed = cid.pgid().map(|p| p.seed).unwrap_or(0);
            if !oid.matches(bits, seed) {
                return Err(ostore_os::Error::corrupt(format!(
                    "{oid} is in {cid} but its hash belongs elsewhere"
                )));
            }
            let data = store.read(&ch, oid, 0, 0)?;
            let i: u32 =
                u32::from_str_radix(oid.name.rsplit('.').next().unwrap_or("0"), 16).unwrap_or(0);
            let want: Vec<u8> = (0..4096u32).map(|b| (b ^ i) as u8).collect();
            if data != want {
                return Err(ostore_os::Error::corrupt(format!(
                    "{oid}: data differs after remount"
                )));
            }
            let oi = store.getattr(&ch, oid, "_")?;
            if oi != format!("oi:{}", oid.name).into_bytes() {
                return Err(ostore_os::Error::corrupt(format!(
                    "{oid}: attr differs after remount"
                )));
            }
            seen += data.len() as u64;
            objects += 1;
        }
    }
    if objects != 257 || seen != expected + 4096 {
        return Err(ostore_os::Error::corrupt(format!(
            "expected 257 objects, found {objects}"
        )));
    }
    println!(
        "verified {objects} objects ({seen} bytes): data, attrs, placement and order all correct"
    );
    // The same check `os-tool fsck --deep` runs.
    let rep = ostore_os::fsck::fsck(&*store, true, &mut |_| {})?;
    if !rep.is_clean() {
        return Err(ostore_os::Error::corrupt(format!("fsck: {:?}", rep.errors)));
    }
    println!("fsck --deep: clean ({:?})", rep.checked);
    store.umount()?;
    std::fs::remove_dir_all(&dir).ok();
    println!("ok");
    Ok(())
}
