//! Criterion benchmarks of the component host (`cargo bench -p qvm-runtime`): a run of an
//! empty program (new store, instantiate from `InstancePre` with the pooling allocator,
//! call `run`), host share-op calls on a 100-element vector, compiling a ~100 KiB
//! component, and loading it from the artifact cache.

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;

use common::{backend_with_w, component, module};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use qvm_runtime::{PlaintextBackend, Runtime, RuntimeConfig};

const EMPTY: &str = r#"
  (func (export "run") (param i32 i32) (result i32)
    (i32.store8 (i32.const 160) (i32.const 0))
    (i32.store (i32.const 164) (i32.const 0))
    (i32.store (i32.const 168) (i32.const 0))
    (i32.const 160))
"#;

/// `CALLS` times: h2 = add(h, h); drop(h2) — two host calls per iteration.
const CALLS: u32 = 1000;

fn add_loop() -> String {
    format!(
        r#"
  (func (export "run") (param i32 i32) (result i32)
    (local $i i32)
    (call $secret (i32.const 16) (i32.const 1) (i32.const 64))
    (loop $l
      (call $add (i32.load (i32.const 68)) (i32.load (i32.const 68)) (i32.const 96))
      (call $drop (i32.load (i32.const 100)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const {CALLS}))))
    (call $drop (i32.load (i32.const 68)))
    (i32.store8 (i32.const 160) (i32.const 0))
    (i32.store (i32.const 164) (i32.const 0))
    (i32.store (i32.const 168) (i32.const 0))
    (i32.const 160))
"#
    )
}

/// A component of about 100 KiB: many functions of integer arithmetic.
fn large() -> Vec<u8> {
    let mut body = String::from(EMPTY);
    for f in 0..470 {
        body.push_str(&format!(
            "(func $f{f} (export \"f{f}\") (param i64) (result i64) (local.get 0)"
        ));
        for k in 0..24 {
            body.push_str(&format!(
                " (i64.const {}) (i64.mul) (i64.const {}) (i64.add)",
                1_000_003 + f * 31 + k,
                7 + k
            ));
        }
        body.push_str(")\n");
    }
    component(&module(&body), None)
}

fn bench(c: &mut Criterion) {
    let tokio = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio");
    let rt: Runtime<PlaintextBackend> = Runtime::new(RuntimeConfig::default()).expect("runtime");
    let w: Vec<i64> = (0..100).collect();

    let empty = rt.load(&component(&module(EMPTY), None)).expect("load");
    c.bench_function("runtime/run-empty-program", |b| {
        b.iter(|| {
            tokio
                .block_on(rt.run(&empty, backend_with_w(&w), Vec::new()))
                .0
                .expect("run")
        })
    });

    let adds = rt
        .load(&component(&module(&add_loop()), None))
        .expect("load");
    let mut group = c.benchmark_group("runtime");
    group.throughput(Throughput::Elements(CALLS as u64));
    group.bench_function("host-add-100-elements-and-drop", |b| {
        b.iter(|| {
            tokio
                .block_on(rt.run(&adds, backend_with_w(&w), Vec::new()))
                .0
                .expect("run")
        })
    });
    group.finish();

    let bytes = large();
    println!("large component: {} bytes", bytes.len());
    let mut group = c.benchmark_group("compile");
    group.sample_size(10);
    group.bench_function("compile-100KiB-component", |b| {
        b.iter(|| rt.load(black_box(&bytes)).expect("load"))
    });
    let dir = std::env::temp_dir().join(format!("qvm-bench-cache-{}", std::process::id()));
    let cached: Runtime<PlaintextBackend> = Runtime::new(RuntimeConfig {
        cache_dir: Some(dir.clone()),
        ..RuntimeConfig::default()
    })
    .expect("runtime");
    cached.load(&bytes).expect("first load fills the cache");
    group.bench_function("load-100KiB-component-from-cache", |b| {
        b.iter(|| cached.load(black_box(&bytes)).expect("load"))
    });
    group.finish();
    let _ = std::fs::remove_dir_all(dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
