//! How an OSD-like process embeds ostore: one store shared through `Arc`, several PG
//! collections, client threads that queue transactions and wait for `on_commit` before
//! acknowledging, reads issued only after `on_applied`, and a clean shutdown.
//!
//! ```sh
//! cargo run --release -p ostore-tools --example mini_osd -- [DIR] [CLIENTS] [OPS_PER_CLIENT]
//! ```
//! With no DIR it uses a fresh temporary directory. Every backend plugs in the same way:
//! only the line that constructs the store changes.

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Instant;

use ostore_os::{CollectionId, Completion, ObjectId, ObjectStore, Result, Transaction};

/// Placement groups of pool 1 this "OSD" hosts.
const PGS: u32 = 8;
/// Transactions a client keeps in flight before it waits for a commit.
const IN_FLIGHT: usize = 16;

fn main() {
    if let Err(e) = run() {
        eprintln!("mini_osd: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::env::temp_dir().join(format!("ostore-mini-osd-{}", std::process::id()))
        });
    let clients: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(4);
    let per_client: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(500);
    let _ = std::fs::remove_dir_all(&dir);

    // The only backend-specific line.
    let store: Arc<dyn ObjectStore> = Arc::new(ostore_memstore::MemStore::new(&dir));
    store.mkfs()?;
    store.mount()?;
    println!(
        "mounted a {} store in {}",
        store.store_type(),
        dir.display()
    );

    // Create the PGs: Ceph's OSD asks for a handle first, then queues the MKCOLL on it.
    let pgs: Vec<CollectionId> = (0..PGS).map(|s| CollectionId::pg(1, s)).collect();
    for cid in &pgs {
        let ch = store.create_new_collection(cid)?;
        let mut t = Transaction::new();
        t.create_collection(cid, 3);
        store.apply_transaction(&ch, t)?;
    }

    let start = Instant::now();
    let results: Vec<Result<usize>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                let store = store.clone();
                let pgs = pgs.clone();
                s.spawn(move || client(&*store, &pgs, c, per_client))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("client thread"))
            .collect()
    });
    let mut committed = 0;
    for r in results {
        committed += r?;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{clients} clients committed {committed} transactions in {secs:.2} s ({:.0} txn/s)",
        committed as f64 / secs
    );

    // Clean shutdown makes everything durable; a remount finds it all.
    store.umount()?;
    let store: Arc<dyn ObjectStore> = Arc::new(ostore_memstore::MemStore::new(&dir));
    store.mount()?;
    let mut objects = 0;
    for cid in &pgs {
        let ch = store.open_collection(cid)?;
        let (objs, _) =
            store.collection_list(&ch, &ObjectId::min(), &ObjectId::max_sentinel(), usize::MAX)?;
        objects += objs.len();
    }
    println!("after remount: {objects} objects in {} PGs", pgs.len());
    store.umount()?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// One client: writes objects the way an OSD does (data, object-info attr, pg-log entry
/// in the PG's meta object), waits for commits in windows, and reads back after apply.
fn client(store: &dyn ObjectStore, pgs: &[CollectionId], c: usize, n: usize) -> Result<usize> {
    let (commit_tx, commit_rx) = mpsc::channel::<Result<()>>();
    let mut in_flight = 0;
    let mut committed = 0;
    let mut last_applied = None;
    for i in 0..n {
        let oid = ObjectId::new(1, format!("rbd_data.client{c}.{:016x}", i % 64));
        let cid = &pgs[(oid.hash % PGS) as usize];
        let ch = store.open_collection(cid)?;
        let pglog = ObjectId::new(1, format!("pglog_{cid}"));
        let mut t = Transaction::new();
        t.write(
            cid,
            &oid,
            ((i / 64) * 4096) as u64,
            vec![(c + i) as u8; 4096],
        )
        .setattr(cid, &oid, "_", format!("v{i}").into_bytes())
        .omap_setkeys(
            cid,
            &pglog,
            BTreeMap::from([(format!("{c:04}.{i:012}").into_bytes(), vec![1u8; 128])]),
        );
        let tx = commit_tx.clone();
        let (atx, arx) = mpsc::channel();
        let done = Completion {
            // Readable from here on: the OSD may serve reads of this object.
            on_applied: Some(Box::new(move |r| {
                let _ = atx.send(r);
            })),
            // Durable: the OSD may acknowledge the client.
            on_commit: Some(Box::new(move |r| {
                let _ = tx.send(r);
            })),
            // A channel send: quick, so it may run on the journal's thread.
            commit_inline: true,
        };
        store.queue_transactions(&ch, vec![t], done)?;
        last_applied = Some((ch, oid, i, arx));
        in_flight += 1;
        if in_flight == IN_FLIGHT {
            commit_rx.recv().expect("commit callback")?;
            in_flight -= 1;
            committed += 1;
        }
    }
    for _ in 0..in_flight {
        commit_rx.recv().expect("commit callback")?;
        committed += 1;
    }
    // Read-after-apply of the last object this client wrote.
    if let Some((ch, oid, i, arx)) = last_applied {
        arx.recv().expect("applied callback")?;
        let v = store.getattr(&ch, &oid, "_")?;
        assert_eq!(v, format!("v{i}").into_bytes(), "read after on_applied");
    }
    Ok(committed)
}
