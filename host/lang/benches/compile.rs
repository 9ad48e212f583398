//! Criterion benchmark of the compiler (`cargo bench -p qvm-lang`): source to component
//! (parse, check, range analysis, emission, component encoding) for the four examples and
//! a generated 1 000-feature linear program. Prints each example's cost.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};

fn compile(src: &str) -> Vec<u8> {
    let ir = qvm_lang::compile_ir(src).expect("compiles");
    qvm_lang::emit::emit(&ir).expect("emits")
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("compile");
    for name in ["linear-score", "credit-score", "fraud-tree", "risk-mlp"] {
        let src = std::fs::read_to_string(format!(
            "{}/../../packages/{name}/{name}.qvm",
            env!("CARGO_MANIFEST_DIR")
        ))
        .expect("example");
        let ir = qvm_lang::compile_ir(&src).expect("compiles");
        let cost = qvm_lang::cost::cost(&ir);
        println!(
            "{name}: {:?}, rounds {}, multiplications {}, comparisons {}, truncations {}, bytes/custodian {}, component {} bytes",
            cost.class,
            cost.rounds,
            cost.multiplications,
            cost.comparisons,
            cost.truncations,
            cost.bytes_per_custodian,
            compile(&src).len()
        );
        group.bench_function(name, |b| b.iter(|| compile(black_box(&src))));
    }
    let linear = "program wide(scale = 16)\ninput features: fixed[1000] in [-1000.0, 1000.0]\n\
                  secret weights: fixed[1000] in [-10.0, 10.0]\nsecret bias: fixed in [-100.0, 100.0]\n\
                  output score = dot(weights, features) + bias\n";
    println!("linear-1000: component {} bytes", compile(linear).len());
    group.bench_function("linear-1000-features", |b| {
        b.iter(|| compile(black_box(linear)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
