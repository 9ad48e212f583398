//! Cluster tests: the coordinator and N custodians as separate processes on loopback,
//! started by `qvm cluster up`, driven through the `qvm` binary as an operator and a
//! client would.

mod support;

use support::{Cluster, assert_matches, inputs, program};

#[test]
fn local_and_interactive_programs_match_the_evaluator() {
    for (k, n) in [(2u8, 3u8), (3, 5)] {
        let cluster = Cluster::up(k, n);
        for name in ["linear-score", "credit-score"] {
            cluster.deploy(name);
            let (ir, secrets) = program(name);
            for variant in 0..2 {
                let (args, scaled) = inputs(&ir, variant);
                let want = qvm_lang::eval::evaluate(&ir, &scaled, &secrets).expect("evaluates");
                let (code, out) = cluster.eval(&ir.name, &args);
                assert_eq!(code, 0, "({k},{n}) {name}: {out}{}", cluster.logs());
                assert_matches(&ir, &out, &want);
            }
        }
    }
}
