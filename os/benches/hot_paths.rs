//! `cargo bench -p ostore-os --bench hot_paths`: criterion micro-benchmarks of the CPU
//! work on every transaction's path: encoding and decoding Ceph's OSD write transaction
//! (4 KiB write + 2 setattrs + a 1 KiB omap log entry + omap_rmkeys), order-preserving
//! object keys, and CRC32C over a 4 KiB block and a 1 MiB entry.

use std::collections::{BTreeMap, BTreeSet};
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ostore_os::keys::object_key;
use ostore_os::{CollectionId, ObjectId, Transaction};

fn rados_4k() -> Transaction {
    let c = CollectionId::pg(1, 7);
    let o = ObjectId::new(1, "rbd_data.1234abcd.0000000000000042");
    let meta = ObjectId::new(1, "pglog_1.7").with_namespace("");
    let mut log = BTreeMap::new();
    log.insert(
        b"0000000042.00000000000000001234".to_vec(),
        vec![0x5a; 1024],
    );
    let mut rm = BTreeSet::new();
    rm.insert(b"0000000041.00000000000000001000".to_vec());
    let mut t = Transaction::new();
    t.write(&c, &o, 8192, vec![0xab; 4096])
        .setattr(&c, &o, "_", vec![1; 250])
        .setattr(&c, &o, "snapset", vec![2; 40])
        .omap_setkeys(&c, &meta, log)
        .omap_rmkeys(&c, &meta, rm);
    t
}

fn bench(c: &mut Criterion) {
    let t = rados_4k();
    let bytes = t.encode().expect("encode");
    let mut g = c.benchmark_group("transaction");
    g.throughput(Throughput::Elements(1));
    g.bench_function("encode rados-4k", |b| {
        b.iter(|| black_box(&t).encode().unwrap())
    });
    g.bench_function("decode rados-4k", |b| {
        b.iter(|| Transaction::decode(black_box(&bytes)).unwrap())
    });
    g.finish();

    let o = ObjectId::new(1, "rbd_data.1234abcd.0000000000000042")
        .with_namespace("ns")
        .with_key("locator");
    let mut g = c.benchmark_group("keys");
    g.throughput(Throughput::Elements(1));
    g.bench_function("object_key", |b| b.iter(|| object_key(black_box(&o))));
    g.finish();

    let mut g = c.benchmark_group("crc32c");
    for n in [4096usize, 1 << 20] {
        let buf = vec![0x3cu8; n];
        g.throughput(Throughput::Bytes(n as u64));
        g.bench_function(format!("{n} bytes"), |b| {
            b.iter(|| crc32c::crc32c(black_box(&buf)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
