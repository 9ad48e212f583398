//! Every example program's emitted component, run by K custodians under MPC (each in its
//! own component instance, rounds through the king), gives the evaluator's outputs, in
//! the rounds the cost model predicts, within the grant the cost model sizes.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use qvm_core::{Fp, PartyIndex, PartySet};
use qvm_lang::ast::Scalar;
use qvm_lang::cost::cost;
use qvm_lang::eval::evaluate;
use qvm_mpc::online::OpCost;
use qvm_mpc::pool::PoolKind;
use qvm_mpc::sim::Simulation;
use qvm_runtime::cluster::{self, ClusterRuntime};
use qvm_runtime::{Field, Runtime, RuntimeConfig, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn examples_under_mpc_match_the_evaluator() {
    let rt: Arc<ClusterRuntime> =
        Arc::new(Runtime::new(RuntimeConfig::default()).expect("runtime"));
    for (name, k, n) in [
        ("linear-score", 2, 2),
        ("credit-score", 2, 3),
        ("fraud-tree", 3, 5),
        ("risk-mlp", 2, 3),
    ] {
        let src = std::fs::read_to_string(format!(
            "{}/../../packages/{name}/{name}.qvm",
            env!("CARGO_MANIFEST_DIR")
        ))
        .expect("example");
        let ir = qvm_lang::compile_ir(&src).expect("compiles");
        let c = cost(&ir);
        // Inputs in the middle of their bounds; secrets spread over theirs.
        let mut fields = Vec::new();
        let mut scaled_inputs = HashMap::new();
        for p in &ir.inputs {
            let unit = if p.ty == Scalar::Fixed { 65536.0 } else { 1.0 };
            let reals: Vec<f64> = (0..p.len)
                .map(|i| {
                    ((p.range.lo + (p.range.hi - p.range.lo) * (i as i128 % 7 + 1) / 9) as f64
                        / unit)
                        .round()
                })
                .collect();
            scaled_inputs.insert(
                p.name.clone(),
                qvm_lang::eval::scale_values(&ir, p, &reals).expect("scales"),
            );
            fields.push(Field {
                name: p.name.clone(),
                value: Value::Reals(reals),
            });
        }
        let secrets = common::spread_secrets(&ir);
        let expected = evaluate(&ir, &scaled_inputs, &secrets).expect("evaluates");

        let mut sim = Simulation::new(k, n, 7).expect("sim");
        if c.multiplications > 0 {
            sim.offline(PoolKind::Triples, c.multiplications as u32)
                .expect("offline");
        }
        while sim.ledger().available(PoolKind::Bits) < c.random_bits {
            sim.offline(PoolKind::Bits, c.random_bits as u32 + 16)
                .expect("offline");
        }
        let shared: HashMap<String, Vec<qvm_mpc::SharedVec>> = secrets
            .iter()
            .map(|(s, v)| {
                (
                    s.clone(),
                    sim.share(
                        &v.iter()
                            .map(|x| Fp::from_i128(*x).expect("small"))
                            .collect::<Vec<_>>(),
                    )
                    .expect("share"),
                )
            })
            .collect();
        let members: PartySet = (1..=k)
            .map(|i| PartyIndex::new(i as u32).expect("index"))
            .collect();
        // Exactly the grant the cost model sizes: a component that used more would fail.
        let grant = OpCost {
            triples: c.multiplications,
            bits: c.random_bits,
            rounds: c.rounds,
            elements: c.elements_sent,
        };
        let (config, custodians, king) = sim.session(members, grant).expect("session").into_parts();
        let program = rt
            .load(&qvm_lang::emit::emit(&ir).expect("emits"))
            .expect("loads");
        let secrets_of = |p: PartyIndex| {
            shared
                .iter()
                .map(|(s, v)| (s.clone(), v[p.get() as usize - 1].clone()))
                .collect()
        };
        let outcome = cluster::run(
            Arc::clone(&rt),
            &program,
            config,
            custodians,
            king,
            secrets_of,
            fields,
        )
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(outcome.rounds, c.rounds, "{name}: rounds");
        for ((out_name, got), (_, want)) in outcome.outputs.iter().zip(&expected) {
            let node = ir
                .outputs
                .iter()
                .find(|(n, _)| n == out_name)
                .map(|(_, id)| &ir.nodes[*id])
                .expect("output");
            for (g, w) in got.iter().zip(want) {
                let diff = (g.to_i128() - w).abs();
                // Probabilistic truncation may round up where the evaluator rounds down; the
                // difference stays far below one unit of the output.
                let tolerance = if node.ty == Scalar::Bool || c.truncations == 0 {
                    0
                } else {
                    1i128 << node.scale.saturating_sub(4)
                };
                assert!(
                    diff <= tolerance,
                    "{name}.{out_name}: {} vs {w}",
                    g.to_i128()
                );
            }
        }
    }
}
