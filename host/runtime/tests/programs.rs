//! A program's outputs through the plaintext backend, and through the MPC backend with
//! every custodian of the session set running its own instance concurrently, rounds going
//! through a king task over channels: the two agree.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use common::{SQUARE, backend_with_w, component, module, plaintext_runtime};
use qvm_core::{Fp, PartyIndex, PartySet};
use qvm_mpc::online::{Op, OpCost};
use qvm_mpc::pool::PoolKind;
use qvm_mpc::sim::Simulation;
use qvm_runtime::cluster::{self, ClusterRuntime};
use qvm_runtime::{Runtime, RuntimeConfig, RuntimeError};

#[tokio::test]
async fn square_through_the_plaintext_backend() {
    let rt = plaintext_runtime(RuntimeConfig::default());
    let program = rt.load(&component(&module(SQUARE), None)).expect("loads");
    let w = [3i64, -2, 0, 1 << 20];
    let (result, _) = rt.run(&program, backend_with_w(&w), Vec::new()).await;
    let outputs = result.expect("runs");
    assert_eq!(outputs.len(), 1);
    assert_eq!(outputs[0].0, "y");
    let expected: Vec<Fp> = w.iter().map(|v| Fp::from(v * v + v)).collect();
    assert_eq!(outputs[0].1.as_slice(), &expected[..]);
}

#[tokio::test]
async fn a_missing_secret_is_the_programs_error() {
    let rt = plaintext_runtime(RuntimeConfig::default());
    let program = rt.load(&component(&module(SQUARE), None)).expect("loads");
    let backend = qvm_runtime::PlaintextBackend::new(HashMap::new(), 0);
    let (result, _) = rt.run(&program, backend, Vec::new()).await;
    assert!(
        matches!(&result, Err(RuntimeError::Program(m)) if m.contains("UnknownSecret")),
        "{result:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn square_under_mpc_equals_plaintext() -> qvm_mpc::Result<()> {
    let w: Vec<i64> = vec![3, -2, 0, 1 << 20, -(1 << 30)];
    // A 2-of-3 committee; all three custodians serve (one redundant share checked).
    let mut sim = Simulation::new(2, 3, 99)?;
    sim.offline(PoolKind::Triples, 64)?;
    let shares = sim.share(&w.iter().map(|v| Fp::from(*v)).collect::<Vec<_>>())?;
    let probe = qvm_mpc::SharedVec::new(vec![Fp::ZERO; w.len()]);
    let cost: OpCost = Op::Mul {
        x: probe.clone(),
        y: probe,
    }
    .cost();
    let members = PartySet::first(3);
    let (config, custodians, king) = sim.session(members, cost)?.into_parts();
    let rt: Arc<ClusterRuntime> =
        Arc::new(Runtime::new(RuntimeConfig::default()).expect("runtime"));
    let program = rt.load(&component(&module(SQUARE), None)).expect("loads");
    let secrets =
        |p: PartyIndex| HashMap::from([("w".to_string(), shares[p.get() as usize - 1].clone())]);
    let outcome = cluster::run(rt, &program, config, custodians, king, secrets, Vec::new())
        .await
        .expect("cluster run");
    assert_eq!(outcome.rounds, 1);
    let revealed = Some(outcome.outputs[0].1.clone());

    let rt_plain = plaintext_runtime(RuntimeConfig::default());
    let plain = rt_plain
        .load(&component(&module(SQUARE), None))
        .expect("loads");
    let (expected, _) = rt_plain.run(&plain, backend_with_w(&w), Vec::new()).await;
    assert_eq!(
        revealed,
        Some(expected.expect("plain run")[0].1.as_slice().to_vec())
    );
    Ok(())
}

#[tokio::test]
async fn compiled_components_are_cached_on_disk() {
    let dir = std::env::temp_dir().join(format!("qvm-cache-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = RuntimeConfig {
        cache_dir: Some(dir.clone()),
        ..RuntimeConfig::default()
    };
    let bytes = component(&module(SQUARE), None);
    let files = |d: &std::path::Path| -> usize {
        fn walk(d: &std::path::Path) -> usize {
            std::fs::read_dir(d)
                .map(|entries| {
                    entries
                        .flatten()
                        .map(|e| match e.path() {
                            p if p.is_dir() => walk(&p),
                            // The cache's worker keeps usage statistics beside the
                            // artifacts and takes a cleanup lock file, in the
                            // background: those are not artifacts.
                            p if p.extension().is_some_and(|x| x == "stats") => 0,
                            p if p
                                .file_name()
                                .is_some_and(|n| n.to_string_lossy().contains(".wip")) =>
                            {
                                0
                            }
                            _ => 1,
                        })
                        .sum()
                })
                .unwrap_or(0)
        }
        walk(d)
    };
    {
        let rt = plaintext_runtime(config.clone());
        rt.load(&bytes).expect("compiles");
    }
    let after_first = files(&dir);
    assert!(after_first > 0, "the first load writes an artifact");
    // A new engine with the same configuration loads from the cache and runs the program.
    let rt = plaintext_runtime(config);
    let program = rt.load(&bytes).expect("loads from cache");
    assert_eq!(
        files(&dir),
        after_first,
        "no new artifact for the same component and settings"
    );
    let (result, _) = rt.run(&program, backend_with_w(&[2]), Vec::new()).await;
    assert_eq!(result.expect("runs")[0].1.as_slice(), &[Fp::from(6u64)]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn inputs_run_in_one_instance_equal_separate_runs() {
    let rt = plaintext_runtime(RuntimeConfig::default());
    let program = rt.load(&component(&module(SQUARE), None)).expect("loads");
    let ws: [&[i64]; 4] = [&[3, -2], &[0], &[1 << 20, 5, -7], &[-1]];
    let items = ws.iter().map(|w| (backend_with_w(w), Vec::new())).collect();
    let ran = rt
        .run_each(&program, items)
        .await
        .expect("every input runs");
    assert_eq!(ran.len(), ws.len());
    for (w, (outputs, _)) in ws.iter().zip(&ran) {
        let (alone, _) = rt.run(&program, backend_with_w(w), Vec::new()).await;
        assert_eq!(outputs, &alone.expect("runs alone"));
    }
    assert!(
        rt.run_each(&program, Vec::new())
            .await
            .expect("none")
            .is_empty()
    );
}

#[tokio::test]
async fn one_instance_stops_at_the_first_failing_input() {
    let rt = plaintext_runtime(RuntimeConfig::default());
    let program = rt.load(&component(&module(SQUARE), None)).expect("loads");
    let missing = qvm_runtime::PlaintextBackend::new(HashMap::new(), 0);
    let items = vec![
        (backend_with_w(&[1]), Vec::new()),
        (missing, Vec::new()),
        (backend_with_w(&[2]), Vec::new()),
    ];
    let failure = rt
        .run_each(&program, items)
        .await
        .expect_err("input 1 fails");
    assert_eq!(failure.index, 1);
    assert!(
        matches!(&failure.error, RuntimeError::Program(m) if m.contains("UnknownSecret")),
        "{failure:?}"
    );
}
