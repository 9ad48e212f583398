//! Criterion benchmarks of the cryptographic core: `cargo bench -p qvm-core`.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use qvm_core::encoding::{Digest, Domain};
use qvm_core::field::Fp;
use qvm_core::prss::setup::deal_in_process;
use qvm_core::prss::{PrssContext, PrssParams, PrssSession};
use qvm_core::shamir::{Lagrange, ShamirParams, share};
use qvm_core::sign::SigningKey;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

const COMMITTEES: [(usize, usize); 3] = [(2, 3), (3, 5), (4, 7)];

fn field(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let (a, b) = (Fp::random(&mut rng), Fp::random(&mut rng));
    c.bench_function("field/mul", |bench| {
        bench.iter(|| black_box(a) * black_box(b))
    });
    c.bench_function("field/add", |bench| {
        bench.iter(|| black_box(a) + black_box(b))
    });
    c.bench_function("field/inverse", |bench| {
        bench.iter(|| black_box(a).inverse())
    });
    c.bench_function("field/sqrt-many-64", |bench| {
        let squares: Vec<Fp> = (1..=64u64).map(|i| (a * Fp::from(i)).square()).collect();
        bench.iter(|| {
            let mut v = squares.clone();
            qvm_core::field::sqrt_many(black_box(&mut v));
            v
        })
    });
    c.bench_function("field/sqrt", |bench| {
        bench.iter(|| black_box(a).square().sqrt())
    });
}

fn shamir(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let mut group = c.benchmark_group("shamir");
    for (k, n) in COMMITTEES {
        let params = ShamirParams::for_threshold(k, n).expect("valid");
        let id = format!("{k}-of-{n}");
        let secret = Fp::random(&mut rng);
        group.bench_function(BenchmarkId::new("share", &id), |b| {
            b.iter(|| share(black_box(secret), params, &mut rng))
        });
        let shares = share(secret, params, &mut rng);
        let lagrange = Lagrange::new();
        let quorum = &shares[..k];
        group.bench_function(BenchmarkId::new("reconstruct", &id), |b| {
            b.iter(|| lagrange.reconstruct(black_box(quorum), k - 1))
        });
    }
    group.finish();
}

fn prss(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let ctx = PrssContext {
        committee: Digest::from_bytes([1; 32]),
        session: Digest::from_bytes([2; 32]),
    };
    let mut group = c.benchmark_group("prss");
    for (k, n) in COMMITTEES {
        let params = PrssParams::new(n, k - 1).expect("valid");
        let rings = deal_in_process(&params, &mut rng).expect("setup");
        let session = rings[0].session(&ctx);
        let id = format!("{k}-of-{n}");
        let mut counter = 0u64;
        group.bench_function(BenchmarkId::new("random", &id), |b| {
            b.iter(|| {
                counter += 1;
                session.random(black_box(counter), 0)
            })
        });
        group.bench_function(BenchmarkId::new("zero", &id), |b| {
            b.iter(|| {
                counter += 1;
                session.zero(black_box(counter), 0)
            })
        });
        let vectors: [(&str, VectorFn); 2] = [
            ("random-vec-1024", PrssSession::random_vec),
            ("zero-vec-1024", PrssSession::zero_vec),
        ];
        for (name, vector) in vectors {
            group.bench_function(BenchmarkId::new(name, &id), |b| {
                b.iter(|| {
                    counter += 1;
                    vector(&session, black_box(counter), 1024)
                })
            });
        }
        group.bench_function(BenchmarkId::new("session-setup", &id), |b| {
            b.iter(|| rings[0].session(black_box(&ctx)))
        });
    }
    group.finish();
}

/// A PRSS function producing a vector of shares: (session, op counter, length).
type VectorFn = fn(&PrssSession, u64, u32) -> Vec<Fp>;

fn ecdsa(c: &mut Criterion) {
    const DOMAIN: Domain = Domain::new("qvm/bench/v1");
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    let sk = SigningKey::generate(&mut rng);
    let vk = sk.verifying_key();
    let msg = ("credit-score", 7u64, [3u8; 32]);
    let sig = sk.sign(DOMAIN, &msg).expect("sign");
    c.bench_function("ecdsa/sign", |b| {
        b.iter(|| sk.sign(DOMAIN, black_box(&msg)))
    });
    c.bench_function("ecdsa/verify", |b| {
        b.iter(|| vk.verify(DOMAIN, black_box(&msg), &sig))
    });
}

criterion_group!(benches, field, shamir, prss, ecdsa);
criterion_main!(benches);
