//! Criterion benchmarks of the MPC engine, all parties and the king in one process
//! (`cargo bench -p qvm-mpc`): online multiplications and LTZ per second, offline triples
//! and bits per second, for (K, N) = (2, 3) and (3, 5). Before timing, it prints each op's
//! rounds and bytes per custodian, read from the custodians' own counters.

use std::hint::black_box;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use qvm_core::{Fp, PartyIndex, PartySet};
use qvm_mpc::online::Op;
use qvm_mpc::pool::PoolKind;
use qvm_mpc::shares::SharedVec;
use qvm_mpc::sim::{OnlineSession, Simulation};

const COMMITTEES: [(usize, usize); 2] = [(2, 3), (3, 5)];

/// Shares of `len` values in [−2^30, 2^30).
fn inputs(sim: &mut Simulation, len: usize) -> Vec<SharedVec> {
    let values: Vec<Fp> = (0..len as i64)
        .map(|i| Fp::from((i * 7919) % (1 << 31) - (1 << 30)))
        .collect();
    sim.share(&values).expect("share")
}

fn quorum(k: usize) -> PartySet {
    PartySet::first(k as u8)
}

/// Ensures the pools hold what `op` needs, then opens a session granted exactly that.
fn prepare(sim: &mut Simulation, k: usize, op: &Op) -> OnlineSession {
    let cost = op.cost();
    let t_have = sim.ledger().available(PoolKind::Triples);
    if t_have < cost.triples {
        sim.offline(PoolKind::Triples, (cost.triples - t_have) as u32)
            .expect("offline");
    }
    while sim.ledger().available(PoolKind::Bits) < cost.bits {
        let missing = cost.bits - sim.ledger().available(PoolKind::Bits);
        sim.offline(PoolKind::Bits, missing as u32)
            .expect("offline");
    }
    sim.session(quorum(k), cost).expect("session")
}

fn run(session: &mut OnlineSession, make: &dyn Fn(PartyIndex) -> Op) {
    let out = session.batch(|p| vec![make(p)]).expect("batch");
    black_box(out);
}

fn report(label: &str, session: &OnlineSession, op: &Op) {
    let p1 = PartyIndex::new(1).expect("1");
    let c = session
        .custodian(p1)
        .expect("member")
        .stats()
        .get(op.kind());
    let n = op.len() as f64;
    println!(
        "{label}: rounds {} | per element: sent {:.0} B, received {:.0} B, triples {:.1}, bits {:.1}",
        c.rounds,
        c.bytes_sent() as f64 / n,
        c.bytes_received() as f64 / n,
        op.cost().triples as f64 / n,
        op.cost().bits as f64 / n
    );
}

fn online(c: &mut Criterion) {
    for (k, n) in COMMITTEES {
        let mut sim = Simulation::new(k, n, 1).expect("sim");
        let mut group = c.benchmark_group(format!("online-{k}-of-{n}"));
        group.sample_size(10);
        for len in [1usize, 100, 10_000] {
            let x = inputs(&mut sim, len);
            let make = |p: PartyIndex| {
                let s = &x[p.get() as usize - 1];
                Op::Mul {
                    x: s.clone(),
                    y: s.clone(),
                }
            };
            let mut session = prepare(&mut sim, k, &make(PartyIndex::new(1).expect("1")));
            run(&mut session, &make);
            report(
                &format!("{k}-of-{n} mul x{len}"),
                &session,
                &make(PartyIndex::new(1).expect("1")),
            );
            group.throughput(Throughput::Elements(len as u64));
            group.bench_function(BenchmarkId::new("mul", len), |b| {
                b.iter_batched(
                    || prepare(&mut sim, k, &make(PartyIndex::new(1).expect("1"))),
                    |mut s| run(&mut s, &make),
                    BatchSize::PerIteration,
                )
            });
        }
        for (len, kbits) in [(1000usize, 32u32), (10_000, 32), (10_000, 64)] {
            if n > 3 && len > 1000 {
                continue;
            }
            let x = inputs(&mut sim, len);
            let make = |p: PartyIndex| Op::Ltz {
                x: x[p.get() as usize - 1].clone(),
                k: kbits,
            };
            let mut session = prepare(&mut sim, k, &make(PartyIndex::new(1).expect("1")));
            run(&mut session, &make);
            report(
                &format!("{k}-of-{n} ltz k={kbits} x{len}"),
                &session,
                &make(PartyIndex::new(1).expect("1")),
            );
            group.throughput(Throughput::Elements(len as u64));
            group.bench_function(BenchmarkId::new(format!("ltz-k{kbits}"), len), |b| {
                b.iter_batched(
                    || prepare(&mut sim, k, &make(PartyIndex::new(1).expect("1"))),
                    |mut s| run(&mut s, &make),
                    BatchSize::PerIteration,
                )
            });
        }
        group.finish();
    }
}

fn offline(c: &mut Criterion) {
    for (k, n) in COMMITTEES {
        let mut sim = Simulation::new(k, n, 2).expect("sim");
        let mut group = c.benchmark_group(format!("offline-{k}-of-{n}"));
        group.sample_size(10);
        let count = 10_000u32;
        group.throughput(Throughput::Elements(count as u64));
        group.bench_function(BenchmarkId::new("triples", count), |b| {
            b.iter(|| sim.offline(PoolKind::Triples, count).expect("offline"))
        });
        group.bench_function(BenchmarkId::new("bits", count), |b| {
            b.iter(|| sim.offline(PoolKind::Bits, count).expect("offline"))
        });
        group.finish();
        let (stats, king) = sim.offline_stats();
        for (kind, c) in &stats.by_op {
            println!(
                "{k}-of-{n} offline {kind:?}: per item per custodian sent {:.0} B, received {:.0} B; rounds per batch {:.0} (king: {} rounds in all)",
                c.bytes_sent() as f64 / c.elements as f64,
                c.bytes_received() as f64 / c.elements as f64,
                c.rounds as f64 / c.ops as f64,
                king.rounds
            );
        }
    }
}

criterion_group!(benches, online, offline);
criterion_main!(benches);
