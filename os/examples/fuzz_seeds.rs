//! Writes the seed corpora of the fuzz targets: one binary encoding and one JSON
//! document per op kind. `cargo run -p ostore-os --example fuzz_seeds -- fuzz/corpus`

use ostore_os::json::transaction_to_json;
use ostore_os::{CollectionId, ObjectId, Transaction};

type Builder<'a> = Box<dyn Fn(&mut Transaction) + 'a>;

fn main() {
    let out = std::path::PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "fuzz/corpus".into()),
    );
    let c = CollectionId::pg(1, 2);
    let d = CollectionId::pg(1, 6);
    let a = ObjectId::in_collection(&c, "a");
    let b = ObjectId::in_collection(&c, "b")
        .with_namespace("ns")
        .with_key("k");
    let mut all = Vec::new();
    let mut t = Transaction::new();
    t.create_collection(&c, 2);
    all.push(t);
    let build: Vec<Builder<'_>> = vec![
        Box::new(|t| {
            t.nop();
        }),
        Box::new(|t| {
            t.create(&c, &a);
        }),
        Box::new(|t| {
            t.touch(&c, &a);
        }),
        Box::new(|t| {
            t.write(&c, &a, 3, b"xyz".to_vec());
        }),
        Box::new(|t| {
            t.zero(&c, &a, 10, 5);
        }),
        Box::new(|t| {
            t.truncate(&c, &a, 7);
        }),
        Box::new(|t| {
            t.remove(&c, &a);
        }),
        Box::new(|t| {
            t.setattr(&c, &a, "_", b"v".to_vec());
        }),
        Box::new(|t| {
            t.setattrs(&c, &a, [("x".to_string(), vec![0x80u8])].into());
        }),
        Box::new(|t| {
            t.rmattr(&c, &a, "_");
        }),
        Box::new(|t| {
            t.rmattrs(&c, &a);
        }),
        Box::new(|t| {
            t.clone_obj(&c, &a, &b);
        }),
        Box::new(|t| {
            t.push(ostore_os::Op::CloneRange {
                cid: c,
                src: a.clone(),
                dst: b.clone(),
                off: 1,
                len: 2,
            });
        }),
        Box::new(|t| {
            t.clone_range(&c, &a, &b, 1, 2, 3);
        }),
        Box::new(|t| {
            t.remove_collection(&d);
        }),
        Box::new(|t| {
            t.omap_clear(&c, &a);
        }),
        Box::new(|t| {
            t.omap_setkeys(&c, &b, [(b"k1".to_vec(), b"v1".to_vec())].into());
        }),
        Box::new(|t| {
            t.omap_rmkeys(&c, &b, [b"k1".to_vec()].into());
        }),
        Box::new(|t| {
            t.omap_setheader(&c, &b, b"h".to_vec());
        }),
        Box::new(|t| {
            t.omap_rmkeyrange(&c, &b, b"a".to_vec(), b"z".to_vec());
        }),
        Box::new(|t| {
            t.push(ostore_os::Op::SplitCollection {
                cid: c,
                bits: 3,
                rem: 2,
                dest: d,
            });
        }),
        Box::new(|t| {
            t.split_collection(&c, 3, 2, &d);
        }),
        Box::new(|t| {
            t.merge_collection(&d, &c, 2);
        }),
        Box::new(|t| {
            t.collection_move_rename(&c, &a, &d, &b);
        }),
        Box::new(|t| {
            t.try_rename(&c, &a, &b);
        }),
        Box::new(|t| {
            t.set_alloc_hint(&c, &a, 4 << 20, 4096, 0);
        }),
        Box::new(|t| {
            t.collection_hint(&c, 1, vec![1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]);
        }),
        Box::new(|t| {
            t.collection_set_bits(&c, 4);
        }),
    ];
    for f in &build {
        let mut t = Transaction::new();
        f(&mut t);
        all.push(t);
    }
    for dir in ["transaction_decode", "transaction_json"] {
        std::fs::create_dir_all(out.join(dir)).expect("create corpus dir");
    }
    for (i, t) in all.iter().enumerate() {
        let op = t.ops().first().map_or("empty", |o| o.code().name());
        std::fs::write(
            out.join("transaction_decode").join(format!("{i:02}-{op}")),
            t.encode().expect("valid"),
        )
        .expect("write seed");
        let j = serde_json::to_string_pretty(&transaction_to_json(t)).expect("json");
        std::fs::write(
            out.join("transaction_json")
                .join(format!("{i:02}-{op}.json")),
            j,
        )
        .expect("write seed");
    }
    println!(
        "wrote {} seeds per target under {}",
        all.len(),
        out.display()
    );
}
